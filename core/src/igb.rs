//! Intel 82576 Gigabit Ethernet (8086:10c9, also QEMU's `igb`): registers and descriptors used by
//! the loopback memcpy driver.
//!
//! Offsets are those of upstream's igb selftest driver (`tools/testing/selftests/vfio/lib/drivers/igb/`); bit positions and
//! descriptor layouts follow the 82576 datasheet as transcribed in Linux's igb headers
//! (`e1000_regs.h`, `e1000_defines.h`, `e1000_82575.h`) and QEMU's `hw/net/igb_regs.h`.
//! All registers are 32 bits wide and little endian.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// PCI vendor id.
pub const VENDOR_ID: u16 = 0x8086;
/// PCI device id of the 82576 physical function.
pub const DEVICE_ID: u16 = 0x10c9;
/// The register BAR.
pub const REGISTER_BAR: u8 = 0;

/// Device control.
pub const CTRL: usize = 0x0000;
/// Device status.
pub const STATUS: usize = 0x0008;
/// EEPROM/flash control.
pub const EECD: usize = 0x0010;
/// Extended device control.
pub const CTRL_EXT: usize = 0x0018;
/// MDI (PHY) control.
pub const MDIC: usize = 0x0020;
/// Interrupt mask clear (legacy causes).
pub const IMC: usize = 0x00d8;
/// Receive control.
pub const RCTL: usize = 0x0100;
/// Transmit control.
pub const TCTL: usize = 0x0400;
/// General purpose interrupt enable.
pub const GPIE: usize = 0x1514;
/// Extended interrupt cause set (write ones to raise).
pub const EICS: usize = 0x1520;
/// Extended interrupt mask set / read.
pub const EIMS: usize = 0x1524;
/// Extended interrupt mask clear.
pub const EIMC: usize = 0x1528;
/// Extended interrupt auto clear.
pub const EIAC: usize = 0x152c;
/// Extended interrupt auto mask enable.
pub const EIAM: usize = 0x1530;
/// Extended interrupt cause read (write ones to clear).
pub const EICR: usize = 0x1580;
/// Interrupt vector allocation, queues 0 and 8.
pub const IVAR0: usize = 0x1700;
/// PCIe general configuration.
pub const GCR: usize = 0x5b00;

/// Queue-0 receive descriptor base, low 32 bits.
pub const RDBAL0: usize = 0x2800;
/// Queue-0 receive descriptor base, high 32 bits.
pub const RDBAH0: usize = 0x2804;
/// Queue-0 receive ring length in bytes (multiple of 128).
pub const RDLEN0: usize = 0x2808;
/// Queue-0 split and replication receive control.
pub const SRRCTL0: usize = 0x280c;
/// Queue-0 receive head.
pub const RDH0: usize = 0x2810;
/// Queue-0 receive tail.
pub const RDT0: usize = 0x2818;
/// Queue-0 receive descriptor control.
pub const RXDCTL0: usize = 0x2828;
/// Queue-0 transmit descriptor base, low 32 bits.
pub const TDBAL0: usize = 0x3800;
/// Queue-0 transmit descriptor base, high 32 bits.
pub const TDBAH0: usize = 0x3804;
/// Queue-0 transmit ring length in bytes (multiple of 128).
pub const TDLEN0: usize = 0x3808;
/// Queue-0 transmit head.
pub const TDH0: usize = 0x3810;
/// Queue-0 transmit tail.
pub const TDT0: usize = 0x3818;
/// Queue-0 transmit descriptor control.
pub const TXDCTL0: usize = 0x3828;

/// CTRL bits.
pub mod ctrl {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Speed selection field: 1000 Mb/s (bits 9:8 = 0b10).
    pub const SPEED_1000: u32 = 0b10 << 8;
    /// Force speed.
    pub const FRCSPD: u32 = 1 << 11;
    /// Force duplex.
    pub const FRCDPX: u32 = 1 << 12;
    /// Device reset (self-clearing).
    pub const RST: u32 = 1 << 26;
}

/// STATUS bits.
pub mod status {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Link up.
    pub const LU: u32 = 1 << 1;
}

/// EECD bits.
pub mod eecd {
    /// NVM auto-read done (QEMU's igb never sets it).
    pub const AUTO_RD: u32 = 1 << 9;
}

/// CTRL_EXT bits.
pub mod ctrl_ext {
    /// Driver loaded.
    pub const DRV_LOAD: u32 = 1 << 28;
    /// Link mode field (bits 23:22); 0 = direct copper (internal PHY).
    pub const LINK_MODE_MASK: u32 = 0b11 << 22;
}

/// MDIC fields.
pub mod mdic {
    /// Data (bits 15:0).
    pub const DATA_MASK: u32 = 0xffff;
    /// PHY register address shift (bits 20:16).
    pub const REG_SHIFT: u32 = 16;
    /// PHY address shift (bits 25:21).
    pub const PHY_SHIFT: u32 = 21;
    /// Opcode: write.
    pub const OP_WRITE: u32 = 0b01 << 26;
    /// Opcode: read.
    pub const OP_READ: u32 = 0b10 << 26;
    /// Ready: the transaction completed.
    pub const READY: u32 = 1 << 28;
    /// Error: the PHY did not answer (read).
    pub const ERROR: u32 = 1 << 30;
    /// The internal PHY's address (QEMU answers only this one).
    pub const PHY_ADDRESS: u32 = 1;

    /// An MDIC write of `data` to PHY register `reg` of the internal PHY.
    pub const fn write(reg: u32, data: u16) -> u32 {
        OP_WRITE | (PHY_ADDRESS << PHY_SHIFT) | ((reg & 0x1f) << REG_SHIFT) | data as u32
    }
    /// An MDIC read of PHY register `reg` of the internal PHY.
    pub const fn read(reg: u32) -> u32 {
        OP_READ | (PHY_ADDRESS << PHY_SHIFT) | ((reg & 0x1f) << REG_SHIFT)
    }
}

/// PHY (MII) registers and bits reached through MDIC.
pub mod phy {
    /// Basic mode control register.
    pub const BMCR: u32 = 0x00;
    /// Basic mode status register.
    pub const BMSR: u32 = 0x01;
    /// BMCR: speed select, most significant bit (with LSB clear: 1000 Mb/s).
    pub const BMCR_SPEED_1000: u16 = 1 << 6;
    /// BMCR: full duplex.
    pub const BMCR_FULL_DUPLEX: u16 = 1 << 8;
    /// BMCR: restart auto-negotiation.
    pub const BMCR_RESTART_AUTONEG: u16 = 1 << 9;
    /// BMCR: auto-negotiation enable.
    pub const BMCR_AUTONEG_ENABLE: u16 = 1 << 12;
    /// BMCR: loopback.
    pub const BMCR_LOOPBACK: u16 = 1 << 14;
    /// BMCR: PHY reset.
    pub const BMCR_RESET: u16 = 1 << 15;
    /// BMSR: link status.
    pub const BMSR_LINK_STATUS: u16 = 1 << 2;
    /// BMSR: auto-negotiation complete.
    pub const BMSR_AUTONEG_COMPLETE: u16 = 1 << 5;
}

/// GCR bits.
pub mod gcr {
    /// Re-send a request on completion timeout (cleared so faulting DMAs do not retry forever).
    pub const CMPL_TMOUT_RESEND: u32 = 1 << 16;
}

/// RCTL bits.
pub mod rctl {
    /// Receiver enable.
    pub const EN: u32 = 1 << 1;
    /// Unicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    /// Multicast promiscuous.
    pub const MPE: u32 = 1 << 4;
    /// Loopback mode field (bits 7:6): MAC loopback (QEMU only; real 82576 uses PHY loopback).
    pub const LBM_MAC: u32 = 0b01 << 6;
    /// Loopback mode field mask.
    pub const LBM_MASK: u32 = 0b11 << 6;
    /// Broadcast accept.
    pub const BAM: u32 = 1 << 15;
    /// Strip the Ethernet CRC.
    pub const SECRC: u32 = 1 << 26;
}

/// TCTL bits.
pub mod tctl {
    /// Transmitter enable.
    pub const EN: u32 = 1 << 1;
    /// Pad short packets.
    pub const PSP: u32 = 1 << 3;
}

/// TXDCTL/RXDCTL bits.
pub mod dctl {
    /// Queue enable (also reads back as "enabled" once the queue is running).
    pub const ENABLE: u32 = 1 << 25;
}

/// SRRCTL bits.
pub mod srrctl {
    /// Packet buffer size in 1 KiB units (bits 6:0); 0 falls back to RCTL.BSIZE.
    pub const BSIZEPKT_MASK: u32 = 0x7f;
    /// Descriptor type field (bits 27:25).
    pub const DESCTYPE_MASK: u32 = 0b111 << 25;
    /// Descriptor type: advanced, one buffer.
    pub const DESCTYPE_ADV_ONEBUF: u32 = 0b001 << 25;
    /// Drop packets when no descriptor is available.
    pub const DROP_EN: u32 = 1 << 31;
}

/// GPIE bits.
pub mod gpie {
    /// Non-selective interrupt clear on read.
    pub const NSICR: u32 = 1 << 0;
    /// MSI-X mode.
    pub const MSIX_MODE: u32 = 1 << 4;
    /// Extended interrupt auto mask enable.
    pub const EIAME: u32 = 1 << 30;
    /// PBA support.
    pub const PBA: u32 = 1 << 31;
}

/// IVAR bits.
pub mod ivar {
    /// Entry valid (per byte of IVAR); vector number in bits 4:0 of the byte.
    pub const VALID: u32 = 0x80;
    /// IVAR0 byte 0: RX queue 0 -> `vector`.
    pub const fn rx_queue0(vector: u8) -> u32 {
        VALID | (vector as u32 & 0x1f)
    }
    /// IVAR0 byte 1: TX queue 0 -> `vector`.
    pub const fn tx_queue0(vector: u8) -> u32 {
        (VALID | (vector as u32 & 0x1f)) << 8
    }
}

/// EICR/EICS/EIMS bit of MSI-X vector `n` in MSI-X mode (0..=24).
pub const fn eicr_vector(n: u8) -> u32 {
    if n < 25 {
        1 << n
    } else {
        0
    }
}

/// Bytes per descriptor (legacy and advanced, TX and RX).
pub const DESCRIPTOR_SIZE: usize = 16;
/// Descriptor ring base and length alignment.
pub const RING_ALIGN: usize = 128;
/// Largest ring the 82576 supports (descriptors).
pub const MAX_RING_ENTRIES: usize = 4096;
/// Smallest Ethernet payload (a frame without the FCS is at least 60 bytes).
pub const MIN_FRAME_LEN: u64 = 60;

/// Advanced TX descriptor `cmd_type_len` fields.
pub mod txd {
    /// Data length (bits 15:0).
    pub const DTALEN_MASK: u32 = 0xffff;
    /// Descriptor type: advanced data.
    pub const DTYP_DATA: u32 = 0b0011 << 20;
    /// Descriptor type: advanced context.
    pub const DTYP_CTXT: u32 = 0b0010 << 20;
    /// Command: end of packet.
    pub const DCMD_EOP: u32 = 1 << 24;
    /// Command: insert FCS.
    pub const DCMD_IFCS: u32 = 1 << 25;
    /// Command: report status (write back DD).
    pub const DCMD_RS: u32 = 1 << 27;
    /// Command: descriptor extension (advanced format).
    pub const DCMD_DEXT: u32 = 1 << 29;
    /// `olinfo_status`: payload length shift (bits 31:14).
    pub const PAYLEN_SHIFT: u32 = 14;
    /// Write-back `status`: descriptor done.
    pub const STA_DD: u32 = 1 << 0;
}

/// Advanced RX descriptor write-back `status_error` bits.
pub mod rxd {
    /// Descriptor done.
    pub const STAT_DD: u32 = 1 << 0;
    /// End of packet.
    pub const STAT_EOP: u32 = 1 << 1;
    /// RX data error (CRC, symbol, sequence or length).
    pub const ERR_RXE: u32 = 1 << 31;
}

/// Advanced transmit data descriptor (read format), as the driver writes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AdvTxDataDescriptor {
    /// Buffer address (IOVA).
    pub buffer_addr: U64,
    /// DTALEN, DTYP, DCMD.
    pub cmd_type_len: U32,
    /// STA, IDX, POPTS, PAYLEN.
    pub olinfo_status: U32,
}

/// Advanced transmit descriptor, write-back format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AdvTxWriteback {
    /// Reserved.
    pub reserved: U64,
    /// Next sequence seed (IPsec).
    pub nxtseq_seed: U32,
    /// Status; bit 0 = descriptor done.
    pub status: U32,
}

/// Advanced receive descriptor, read format (as the driver posts it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AdvRxRead {
    /// Packet buffer address (IOVA).
    pub pkt_addr: U64,
    /// Header buffer address (IOVA); bit 0 overlaps DD of the write-back, so keep it clear.
    pub hdr_addr: U64,
}

/// Advanced receive descriptor, write-back format (as the device returns it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AdvRxWriteback {
    /// RSS type and packet type.
    pub pkt_info: U16,
    /// Header length and split-header bit.
    pub hdr_info: U16,
    /// RSS hash, or IP id and checksum.
    pub rss_hash: U32,
    /// Extended status and errors ([`rxd`]).
    pub status_error: U32,
    /// Packet length written to the buffer.
    pub length: U16,
    /// VLAN tag.
    pub vlan: U16,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<AdvTxDataDescriptor>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(AdvTxDataDescriptor, buffer_addr) == 0);
    assert!(offset_of!(AdvTxDataDescriptor, cmd_type_len) == 8);
    assert!(offset_of!(AdvTxDataDescriptor, olinfo_status) == 12);
    assert!(size_of::<AdvTxWriteback>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(AdvTxWriteback, nxtseq_seed) == 8);
    assert!(offset_of!(AdvTxWriteback, status) == 12);
    assert!(size_of::<AdvRxRead>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(AdvRxRead, pkt_addr) == 0);
    assert!(offset_of!(AdvRxRead, hdr_addr) == 8);
    assert!(size_of::<AdvRxWriteback>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(AdvRxWriteback, pkt_info) == 0);
    assert!(offset_of!(AdvRxWriteback, hdr_info) == 2);
    assert!(offset_of!(AdvRxWriteback, rss_hash) == 4);
    assert!(offset_of!(AdvRxWriteback, status_error) == 8);
    assert!(offset_of!(AdvRxWriteback, length) == 12);
    assert!(offset_of!(AdvRxWriteback, vlan) == 14);
};

impl AdvTxDataDescriptor {
    /// One-buffer, one-packet data descriptor sending `len` bytes at `addr`: DEXT, DTYP = data,
    /// IFCS, EOP and RS, with PAYLEN = `len`.
    pub fn packet(addr: u64, len: u16) -> Self {
        Self {
            buffer_addr: U64::new(addr),
            cmd_type_len: U32::new(
                u32::from(len)
                    | txd::DTYP_DATA
                    | txd::DCMD_DEXT
                    | txd::DCMD_IFCS
                    | txd::DCMD_EOP
                    | txd::DCMD_RS,
            ),
            olinfo_status: U32::new(u32::from(len) << txd::PAYLEN_SHIFT),
        }
    }

    /// Data length field.
    pub fn len(&self) -> u16 {
        (self.cmd_type_len.get() & txd::DTALEN_MASK) as u16
    }

    /// True if the data length is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AdvTxWriteback {
    /// The descriptor-done bit.
    pub fn done(&self) -> bool {
        self.status.get() & txd::STA_DD != 0
    }
}

impl AdvRxRead {
    /// A one-buffer receive descriptor for a packet buffer at `addr` (no header buffer).
    pub fn buffer(addr: u64) -> Self {
        Self {
            pkt_addr: U64::new(addr),
            hdr_addr: U64::new(0),
        }
    }
}

impl AdvRxWriteback {
    /// The descriptor-done bit.
    pub fn done(&self) -> bool {
        self.status_error.get() & rxd::STAT_DD != 0
    }
    /// The end-of-packet bit.
    pub fn end_of_packet(&self) -> bool {
        self.status_error.get() & rxd::STAT_EOP != 0
    }
    /// The RX data error bit.
    pub fn rx_error(&self) -> bool {
        self.status_error.get() & rxd::ERR_RXE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn queue0_offsets_match_the_reference() {
        assert_eq!(
            [TDBAL0, TDBAH0, TDLEN0, TDH0, TDT0, TXDCTL0],
            [0x3800, 0x3804, 0x3808, 0x3810, 0x3818, 0x3828]
        );
        assert_eq!(
            [RDBAL0, RDBAH0, RDLEN0, SRRCTL0, RDH0, RDT0, RXDCTL0],
            [0x2800, 0x2804, 0x2808, 0x280c, 0x2810, 0x2818, 0x2828]
        );
        assert_eq!(
            [CTRL, STATUS, EECD, CTRL_EXT, MDIC, IMC, RCTL, TCTL],
            [0x0, 0x8, 0x10, 0x18, 0x20, 0xd8, 0x100, 0x400]
        );
        assert_eq!(
            [GPIE, EICS, EIMS, EIMC, EIAC, EIAM, EICR, IVAR0],
            [0x1514, 0x1520, 0x1524, 0x1528, 0x152c, 0x1530, 0x1580, 0x1700]
        );
    }

    #[test]
    fn bit_values_match_linux_igb_headers() {
        assert_eq!(ctrl::RST, 0x0400_0000);
        assert_eq!(ctrl::SLU | ctrl::FRCSPD | ctrl::FRCDPX | ctrl::FD, 0x1841);
        assert_eq!(ctrl::SPEED_1000, 0x200);
        assert_eq!(eecd::AUTO_RD, 0x200);
        assert_eq!(ctrl_ext::DRV_LOAD, 0x1000_0000);
        assert_eq!(ctrl_ext::LINK_MODE_MASK, 0x00c0_0000);
        assert_eq!(mdic::READY, 0x1000_0000);
        assert_eq!(mdic::ERROR, 0x4000_0000);
        assert_eq!(mdic::write(phy::BMCR, 0x4140), 0x0420_4140);
        assert_eq!(mdic::read(phy::BMSR), 0x0821_0000);
        assert_eq!(
            rctl::EN | rctl::UPE | rctl::MPE | rctl::BAM | rctl::LBM_MAC | rctl::SECRC,
            0x0400_805a
        );
        assert_eq!(tctl::EN | tctl::PSP, 0xa);
        assert_eq!(dctl::ENABLE, 0x0200_0000);
        assert_eq!(srrctl::DESCTYPE_ADV_ONEBUF, 0x0200_0000);
        assert_eq!(gpie::MSIX_MODE | gpie::EIAME, 0x4000_0010);
        assert_eq!(ivar::rx_queue0(0), 0x80);
        assert_eq!(ivar::tx_queue0(1), 0x8100);
        assert_eq!(gcr::CMPL_TMOUT_RESEND, 0x0001_0000);
        assert_eq!(eicr_vector(0), 1);
        assert_eq!(eicr_vector(25), 0);
        assert_eq!(txd::DTYP_DATA, 0x0030_0000);
        assert_eq!(txd::DCMD_EOP, 0x0100_0000);
        assert_eq!(txd::DCMD_IFCS, 0x0200_0000);
        assert_eq!(txd::DCMD_RS, 0x0800_0000);
        assert_eq!(txd::DCMD_DEXT, 0x2000_0000);
    }

    #[test]
    fn tx_descriptor_bytes() {
        let d = AdvTxDataDescriptor::packet(0x1122_3344_5566_7788, 1024);
        assert_eq!(d.len(), 1024);
        let b = d.as_bytes();
        assert_eq!(&b[..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        // 1024 | DTYP_DATA | EOP | IFCS | RS | DEXT
        assert_eq!(&b[8..12], &0x2b30_0400u32.to_le_bytes());
        // PAYLEN = 1024 << 14
        assert_eq!(&b[12..16], &0x0100_0000u32.to_le_bytes());
    }

    #[test]
    fn rx_descriptor_formats() {
        let r = AdvRxRead::buffer(0xdead_b000);
        assert_eq!(&r.as_bytes()[..8], &0xdead_b000u64.to_le_bytes());
        assert_eq!(&r.as_bytes()[8..], &[0u8; 8]);
        let mut raw = [0u8; 16];
        raw[8..12].copy_from_slice(&(rxd::STAT_DD | rxd::STAT_EOP).to_le_bytes());
        raw[12..14].copy_from_slice(&60u16.to_le_bytes());
        let wb = AdvRxWriteback::read_from_bytes(&raw).unwrap();
        assert!(wb.done() && wb.end_of_packet() && !wb.rx_error());
        assert_eq!(wb.length.get(), 60);
        let tx = AdvTxWriteback::read_from_bytes(&{
            let mut t = [0u8; 16];
            t[12] = 1;
            t
        })
        .unwrap();
        assert!(tx.done());
    }
}
