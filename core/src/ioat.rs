//! Intel Crystal Beach DMA (I/OAT v3.x, CBDMA, "QuickData", Linux driver `ioatdma`): PCI ids,
//! global and per-channel registers, CHANERR, the 64-byte descriptor and its builders.
//!
//! Facts come from Linux `drivers/dma/ioat/registers.h`,
//! `hw.h`, `dma.c`, `init.c`; SPDK `ioat_spec.h`; DPDK `ioat_hw_defs.h`). Where sources disagree
//! the Linux value is used and the disagreement is written down next to it.
//!
//! # Layout
//!
//! * BAR0 holds the global registers ([`CHANCNT`] … [`CHWPREFLMT`]) and, at
//!   [`channel_base`]`(n)` = `0x80 × (n + 1)`, one 0x80-byte register block per channel
//!   ([`chan`]).
//! * PCI configuration space holds [`DMACTRL`], [`DMAUNCERRSTS`], [`CHANERR_INT`] and
//!   [`CHANERRMSK_INT`].
//! * Descriptors ([`Descriptor`]) are 64 bytes, 64-byte aligned, linked by their `next` field.
//!
//! # Decoding
//!
//! Every register value type keeps the raw bits: unknown enum values are returned as the raw
//! number (`TryFrom` errors carry it), and flag words built with `from_bits_retain` keep bits this
//! module has no name for. Nothing here panics on any input.
//!
//! # Example
//!
//! A copy descriptor that links to itself (executed as many times as DMACOUNT says) and asks for
//! a completion write-back, and Linux's NULL interrupt descriptor:
//!
//! ```
//! use passthru_core::ioat::{ChanState, ChanSts, DescFlags, Descriptor, Opcode};
//!
//! let at = 0x10_0000; // the descriptor's own IOVA
//! let copy = Descriptor::copy(0x20_0000, 0x30_0000, 4096)
//!     .with_next(at)
//!     .with_completion_write();
//! let bytes = copy.to_bytes();
//! assert_eq!(&bytes[0..4], &4096u32.to_le_bytes());
//! assert_eq!(copy.control().op(), Ok(Opcode::Copy));
//! assert_eq!(Descriptor::from_bytes(&bytes), copy);
//!
//! let irq = Descriptor::null_interrupt();
//! assert!(irq.control().flags().contains(DescFlags::NULL | DescFlags::INT_EN));
//!
//! // What the channel writes back at CHANCMP after it:
//! let wb = ChanSts(at | 1);
//! assert_eq!(wb.state(), Ok(ChanState::Done));
//! assert_eq!(wb.completed_address(), at);
//! ```

use core::fmt;

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---------------------------------------------------------------------------------------------
// PCI identity
// ---------------------------------------------------------------------------------------------

/// PCI ids of CBDMA / I/OAT functions (vendor [`ids::VENDOR_INTEL`]).
pub mod ids {
    /// Intel's PCI vendor id.
    pub const VENDOR_INTEL: u16 = 0x8086;

    /// Skylake-SP (I/OAT v3.2/3.3; one channel per PCI function). The only id upstream's VFIO
    /// selftest driver binds.
    pub const SKX: u16 = 0x2021;
    /// Ice Lake-SP (I/OAT v3.4).
    pub const ICX: u16 = 0x0B00;

    /// Legacy I/OAT v1/v2 "IOAT" (not bound by today's Linux driver, which needs CBVER ≥ 0x30).
    pub const LEGACY_IOAT: u16 = 0x1A38;
    /// Legacy "CNB".
    pub const LEGACY_CNB: u16 = 0x360B;
    /// Legacy "SCNB".
    pub const LEGACY_SCNB: u16 = 0x65FF;
    /// Legacy "SNB" (Seaburg / 5400 chipset, not Sandy Bridge).
    pub const LEGACY_SNB: u16 = 0x402F;
    /// Every legacy (pre-v3) id.
    pub const LEGACY: [u16; 4] = [LEGACY_IOAT, LEGACY_CNB, LEGACY_SCNB, LEGACY_SNB];

    /// Tylersburg (v3.0), TBG0..TBG7 in that order.
    pub const TBG: [u16; 8] = [
        0x3430, 0x3431, 0x3432, 0x3433, 0x3429, 0x342A, 0x342B, 0x342C,
    ];
    /// Jasper Forest (v3.2), JSF0..JSF9.
    pub const JSF: [u16; 10] = [
        0x3710, 0x3711, 0x3712, 0x3713, 0x3714, 0x3715, 0x3716, 0x3717, 0x3718, 0x3719,
    ];
    /// Sandy Bridge-EP (v3.2), SNB0..SNB9.
    pub const SNB_EP: [u16; 10] = [
        0x3C20, 0x3C21, 0x3C22, 0x3C23, 0x3C24, 0x3C25, 0x3C26, 0x3C27, 0x3C2E, 0x3C2F,
    ];
    /// Ivy Bridge-EP (v3.2), IVB0..IVB9.
    pub const IVB_EP: [u16; 10] = [
        0x0E20, 0x0E21, 0x0E22, 0x0E23, 0x0E24, 0x0E25, 0x0E26, 0x0E27, 0x0E2E, 0x0E2F,
    ];
    /// Haswell-EP (v3.2), HSW0..HSW9.
    pub const HSW_EP: [u16; 10] = [
        0x2F20, 0x2F21, 0x2F22, 0x2F23, 0x2F24, 0x2F25, 0x2F26, 0x2F27, 0x2F2E, 0x2F2F,
    ];
    /// Broadwell-EP (v3.2), BDX0..BDX9.
    pub const BDX_EP: [u16; 10] = [
        0x6F20, 0x6F21, 0x6F22, 0x6F23, 0x6F24, 0x6F25, 0x6F26, 0x6F27, 0x6F2E, 0x6F2F,
    ];
    /// Avoton / BWD (v3.3), BWD0..BWD3.
    pub const BWD: [u16; 4] = [0x0C50, 0x0C51, 0x0C52, 0x0C53];
    /// Broadwell-DE (v3.3, same silicon as BWD), BDXDE0..BDXDE3.
    pub const BDX_DE: [u16; 4] = [0x6F50, 0x6F51, 0x6F52, 0x6F53];
}

/// The platform a CBDMA device id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Platform {
    /// Pre-v3 I/OAT (v1/v2): listed in `pci_ids.h`, not driven by anyone any more.
    Legacy,
    /// Tylersburg, v3.0.
    Tylersburg,
    /// Jasper Forest, v3.2.
    JasperForest,
    /// Sandy Bridge-EP, v3.2.
    SandyBridgeEp,
    /// Ivy Bridge-EP, v3.2.
    IvyBridgeEp,
    /// Haswell-EP, v3.2.
    HaswellEp,
    /// Broadwell-EP, v3.2.
    BroadwellEp,
    /// Avoton (BWD), v3.3.
    Avoton,
    /// Broadwell-DE, v3.3.
    BroadwellDe,
    /// Skylake-SP, v3.2/3.3 (Linux treats it as 3.2 whatever CBVER says).
    Skylake,
    /// Ice Lake-SP, v3.4.
    IceLake,
}

impl Platform {
    /// The platform of Intel device id `device`, or `None` if it is not a CBDMA id.
    pub const fn from_device_id(device: u16) -> Option<Self> {
        const fn contains(list: &[u16], id: u16) -> bool {
            let mut i = 0;
            while i < list.len() {
                if list[i] == id {
                    return true;
                }
                i += 1;
            }
            false
        }
        Some(match device {
            ids::SKX => Self::Skylake,
            ids::ICX => Self::IceLake,
            d if contains(&ids::LEGACY, d) => Self::Legacy,
            d if contains(&ids::TBG, d) => Self::Tylersburg,
            d if contains(&ids::JSF, d) => Self::JasperForest,
            d if contains(&ids::SNB_EP, d) => Self::SandyBridgeEp,
            d if contains(&ids::IVB_EP, d) => Self::IvyBridgeEp,
            d if contains(&ids::HSW_EP, d) => Self::HaswellEp,
            d if contains(&ids::BDX_EP, d) => Self::BroadwellEp,
            d if contains(&ids::BWD, d) => Self::Avoton,
            d if contains(&ids::BDX_DE, d) => Self::BroadwellDe,
            _ => return None,
        })
    }

    /// True for the platforms today's Linux driver binds (v3.0 and later).
    pub const fn is_v3(self) -> bool {
        !matches!(self, Self::Legacy)
    }
}

// ---------------------------------------------------------------------------------------------
// BAR0 global registers
// ---------------------------------------------------------------------------------------------

/// BAR0 0x00, 8 bits: channel count ([`ChanCnt`]).
pub const CHANCNT: usize = 0x00;
/// BAR0 0x01, 8 bits: log2 of the largest transfer per descriptor ([`XferCap`]).
pub const XFERCAP: usize = 0x01;
/// BAR0 0x02, 8 bits: general control ([`GenCtrl`]).
pub const GENCTRL: usize = 0x02;
/// BAR0 0x03, 8 bits: interrupt control ([`IntrCtrl`]).
pub const INTRCTRL: usize = 0x03;
/// BAR0 0x04, 32 bits: channels needing attention in single-vector mode ([`AttnStatus`]).
pub const ATTNSTATUS: usize = 0x04;
/// BAR0 0x08, 8 bits: Crystal Beach version ([`CbVer`]).
pub const CBVER: usize = 0x08;
/// BAR0 0x0A, 16 bits: per-port offset.
pub const PERPORTOFFSET: usize = 0x0A;
/// BAR0 0x0C, 16 bits: interrupt coalescing delay ([`IntrDelay`]).
pub const INTRDELAY: usize = 0x0C;
/// BAR0 0x0E, 16 bits: device status ([`CsStatus`]).
pub const CSSTATUS: usize = 0x0E;
/// BAR0 0x10, 32 bits: DMA capabilities ([`DmaCapability`]).
pub const DMACAPABILITY: usize = 0x10;
/// BAR0 0x14, 16 bits: offset of the DCA register block in BAR0.
pub const DCAOFFSET: usize = 0x14;
/// BAR0 0x4C, 8 bits: channel write prefetch limit (v3.4 with descriptor prefetch).
pub const CHWPREFLMT: usize = 0x4C;
/// The value Linux writes to [`CHWPREFLMT`] on v3.4 parts with DPS (pending level 7, plus one).
pub const CHWPREFLMT_LINUX_VALUE: u8 = 8;

/// BWD / BDX-DE: BAR0 offset of the MSI-X table (it must be saved and restored across a channel
/// reset on those parts, an erratum Linux works around).
pub const BWD_MSIX_TABLE_OFFSET: usize = 0x1000;
/// BWD / BDX-DE: BAR0 offset of MSI-X table entry 0's message data.
pub const BWD_MSIX_ENTRY0_DATA_OFFSET: usize = 0x1008;
/// BWD / BDX-DE: BAR0 offset of the MSI-X pending-bit array.
pub const BWD_MSIX_PBA_OFFSET: usize = 0x1800;
/// The most channels Linux drives on one function.
pub const LINUX_MAX_CHANNELS: u8 = 4;

/// Size of one channel register block, and the offset of channel 0's block.
pub const CHANNEL_MMIO_SIZE: usize = 0x80;
/// The largest channel count the 5-bit [`ChanCnt`] field can express.
pub const MAX_CHANNELS: u8 = 0x1F;

/// BAR0 offset of channel `n`'s register block: `0x80 × (n + 1)`.
pub const fn channel_base(n: u8) -> usize {
    CHANNEL_MMIO_SIZE * (n as usize + 1)
}

/// [`CHANCNT`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChanCnt(pub u8);

impl ChanCnt {
    /// Number of channels (bits 4:0). SKX/ICX expose one per PCI function.
    pub const fn count(self) -> u8 {
        self.0 & 0x1F
    }
}

/// [`XFERCAP`] value: log2 of the largest transfer one descriptor may carry.
///
/// `0` is special. Linux names it `IOAT_XFERCAP_32GB` (0 means 32 GiB, i.e. 2^35 bytes), and this
/// type follows Linux. SPDK's `ioat_spec.h` comment says 0 means 4 GiB instead, and SPDK also
/// calls 1..=11 invalid (the smallest real value is 12 = 4 KiB). Neither claim is confirmed by a
/// primary Intel document (only the Linux driver and SPDK state it). Note that a descriptor's size field has 32
/// bits, so a driver still cannot put more than `u32::MAX` bytes in one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct XferCap(pub u8);

impl XferCap {
    /// Linux's name for the value 0: 32 GiB.
    pub const XFERCAP_32GB: u8 = 0;
    /// The smallest value SPDK considers valid (4 KiB).
    pub const SPDK_MIN_VALID: u8 = 12;

    /// The 5-bit log2 field (bits 4:0).
    pub const fn log2(self) -> u8 {
        self.0 & 0x1F
    }

    /// Largest bytes per descriptor: `2^log2`, with 0 meaning 32 GiB (Linux).
    pub const fn max_bytes(self) -> u64 {
        match self.log2() {
            0 => 1 << 35,
            n => 1 << n,
        }
    }

    /// True if SPDK would reject this value (1..=11).
    pub const fn spdk_invalid(self) -> bool {
        let n = self.log2();
        n != 0 && n < Self::SPDK_MIN_VALID
    }
}

bitflags! {
    /// [`GENCTRL`] bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct GenCtrl: u8 {
        /// Bit 0: debug enable.
        const DEBUG_EN = 1 << 0;
    }
}

bitflags! {
    /// [`INTRCTRL`] bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct IntrCtrl: u8 {
        /// Bit 0: master interrupt enable.
        const MASTER_INT_EN = 1 << 0;
        /// Bit 1 (RO): interrupt status (ATTNSTATUS or a channel interrupt pending).
        const INT_STATUS = 1 << 1;
        /// Bit 2 (RO): INT = status AND master enable.
        const INT = 1 << 2;
        /// Bit 3: MSI-X vector control: one vector per channel (vector n = channel n).
        const MSIX_VECTOR_CONTROL = 1 << 3;
    }
}

impl IntrCtrl {
    /// The value Linux writes: MSI-X per-channel vectors plus master enable (0x09).
    pub const LINUX_MSIX: Self = Self::MSIX_VECTOR_CONTROL.union(Self::MASTER_INT_EN);
}

/// [`ATTNSTATUS`] value: bit n set = channel n needs attention (single-vector MSI/INTx mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttnStatus(pub u32);

impl AttnStatus {
    /// True if channel `n` (0..32) needs attention; false for `n ≥ 32`.
    pub const fn channel(self, n: u8) -> bool {
        n < 32 && self.0 & (1 << n) != 0
    }
    /// The value with channel `n`'s bit set (unchanged for `n ≥ 32`).
    pub const fn with_channel(self, n: u8) -> Self {
        if n < 32 {
            Self(self.0 | (1 << n))
        } else {
            self
        }
    }
}

/// [`CBVER`] value: Crystal Beach version, major in bits 7:4 and minor in bits 3:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CbVer(pub u8);

impl CbVer {
    /// I/OAT v1.2.
    pub const V1_2: Self = Self(0x12);
    /// I/OAT v2.0.
    pub const V2_0: Self = Self(0x20);
    /// CB 3.0 (Tylersburg).
    pub const V3_0: Self = Self(0x30);
    /// CB 3.2.
    pub const V3_2: Self = Self(0x32);
    /// CB 3.3.
    pub const V3_3: Self = Self(0x33);
    /// CB 3.4 (Ice Lake).
    pub const V3_4: Self = Self(0x34);

    /// Major version (bits 7:4).
    pub const fn major(self) -> u8 {
        self.0 >> 4
    }
    /// Minor version (bits 3:0).
    pub const fn minor(self) -> u8 {
        self.0 & 0xF
    }
    /// True if today's Linux driver would drive it (CBVER ≥ 0x30).
    pub const fn is_v3(self) -> bool {
        self.0 >= 0x30
    }
}

impl fmt::Display for CbVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// [`INTRDELAY`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IntrDelay(pub u16);

impl IntrDelay {
    /// Mask of the delay field (bits 13:0).
    pub const DELAY_MASK: u16 = 0x3FFF;
    /// Bit 15 (RO): interrupt coalescing supported.
    pub const COALESCE_SUPPORTED: u16 = 1 << 15;

    /// Interrupt coalescing delay in microseconds (bits 13:0).
    pub const fn delay_us(self) -> u16 {
        self.0 & Self::DELAY_MASK
    }
    /// Bit 15: the device supports coalescing.
    pub const fn coalesce_supported(self) -> bool {
        self.0 & Self::COALESCE_SUPPORTED != 0
    }
    /// The value with the delay field set to `us` (truncated to 14 bits), other bits kept.
    pub const fn with_delay_us(self, us: u16) -> Self {
        Self((self.0 & !Self::DELAY_MASK) | (us & Self::DELAY_MASK))
    }
}

bitflags! {
    /// [`CSSTATUS`] (device status) bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CsStatus: u16 {
        /// Bit 0: degraded mode.
        const DEGRADED = 1 << 0;
        /// Bit 1: MMIO restricted.
        const MMIO_RESTRICTED = 1 << 1;
        /// Bit 2: memory bypass.
        const MEMORY_BYPASS = 1 << 2;
        /// Bit 3: address remapping.
        const ADDRESS_REMAP = 1 << 3;
    }
}

bitflags! {
    /// [`DMACAPABILITY`] bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DmaCapability: u32 {
        /// Bit 0: page break.
        const PAGE_BREAK = 1 << 0;
        /// Bit 1: CRC generation.
        const CRC = 1 << 1;
        /// Bit 2: skip marker.
        const SKIP_MARKER = 1 << 2;
        /// Bit 4: direct cache access.
        const DCA = 1 << 4;
        /// Bit 5: CRC with move.
        const CRC_MOVE = 1 << 5;
        /// Bit 6: block fill (opcode 0x01).
        const FILL = 1 << 6;
        /// Bit 7: APIC.
        const APIC = 1 << 7;
        /// Bit 8: XOR.
        const XOR = 1 << 8;
        /// Bit 9: P+Q.
        const PQ = 1 << 9;
        /// Bit 10: DMA with DIF (SPDK/DPDK name).
        const DMA_DIF = 1 << 10;
        /// Bit 13: descriptor write-back error status (DWBES).
        const DWBES = 1 << 13;
        /// Bit 17: RAID with 16 sources (super-extended descriptors).
        const RAID16SS = 1 << 17;
        /// Bit 23: descriptor prefetch (DPS, v3.4).
        const DPS = 1 << 23;
    }
}

// ---------------------------------------------------------------------------------------------
// PCI configuration-space registers
// ---------------------------------------------------------------------------------------------

/// PCI config 0x48, 32 bits: DMA control on old parts (bit 0 DMA enable, bit 1 MSI enable).
pub const DMACTRL: u16 = 0x48;
/// [`DMACTRL`] bit 0: DMA enable.
pub const DMACTRL_DMA_EN: u32 = 1 << 0;
/// [`DMACTRL`] bit 1: MSI enable.
pub const DMACTRL_MSI_EN: u32 = 1 << 1;
/// PCI config 0x148, 32 bits: DMA uncorrectable error status (RW1C).
pub const DMAUNCERRSTS: u16 = 0x148;
/// The value Linux writes to [`DMAUNCERRSTS`] for the Tylersburg-0 parity erratum.
pub const DMAUNCERRSTS_TBG0_ERRATA: u32 = 0x10;
/// PCI config 0x180, 32 bits: internal channel error (RW1C; cleared by reset for CBVER < 3.3).
pub const CHANERR_INT: u16 = 0x180;
/// PCI config 0x184, 32 bits: internal channel error mask.
pub const CHANERRMSK_INT: u16 = 0x184;
/// The value Linux once wrote to [`CHANERRMSK_INT`] on v3.0 parts.
pub const CHANERRMSK_INT_V3_0_LINUX: u32 = 0x3E07;

// ---------------------------------------------------------------------------------------------
// Channel registers
// ---------------------------------------------------------------------------------------------

/// Per-channel register offsets, relative to [`channel_base`] (v2 and later unless noted).
pub mod chan {
    /// 16 bits: channel control ([`super::ChanCtrl`]).
    pub const CHANCTRL: usize = 0x00;
    /// 16 bits: DMA compatibility ([`super::DmaComp`]).
    pub const DMA_COMP: usize = 0x02;
    /// 8 bits: channel command ([`super::ChanCmd`]).
    pub const CHANCMD: usize = 0x04;
    /// 16 bits: descriptor doorbell: total descriptors made available since CHAINADDR was
    /// written (wraps mod 2^16).
    pub const DMACOUNT: usize = 0x06;
    /// 64 bits: channel status ([`super::ChanSts`]).
    pub const CHANSTS: usize = 0x08;
    /// 32 bits: low half of [`CHANSTS`].
    pub const CHANSTS_LOW: usize = 0x08;
    /// 32 bits: high half of [`CHANSTS`].
    pub const CHANSTS_HIGH: usize = 0x0C;
    /// 64 bits: address of the first descriptor of the chain (64-byte aligned).
    pub const CHAINADDR: usize = 0x10;
    /// 32 bits: low half of [`CHAINADDR`] (Linux writes low first, then high).
    pub const CHAINADDR_LOW: usize = 0x10;
    /// 32 bits: high half of [`CHAINADDR`].
    pub const CHAINADDR_HIGH: usize = 0x14;
    /// 64 bits: address of the 8-byte completion write-back area (8-byte aligned).
    pub const CHANCMP: usize = 0x18;
    /// 32 bits: low half of [`CHANCMP`].
    pub const CHANCMP_LOW: usize = 0x18;
    /// 32 bits: high half of [`CHANCMP`].
    pub const CHANCMP_HIGH: usize = 0x1C;
    /// 64 bits (RO): current descriptor address.
    pub const CDAR: usize = 0x20;
    /// 32 bits: channel error ([`super::ChanErr`], RW1C).
    pub const CHANERR: usize = 0x28;
    /// 32 bits: channel error mask (1 = do not report that [`super::ChanErr`] bit).
    pub const CHANERR_MASK: usize = 0x2C;
    /// 32 bits: DCA control ([`super::DcaCtrl`]).
    pub const DCACTRL: usize = 0x30;
    /// 16 bits (v3.4 with DPS): descriptor ring size control ([`super::DrsCtl`]).
    pub const DRSCTL: usize = 0xB6;
    /// 8 bits: LTR software select (0 active, 1 idle).
    pub const LTR_SWSEL: usize = 0xBC;
    /// 32 bits: LTR active latency.
    pub const LTR_ACTIVE: usize = 0xC0;
    /// 32 bits: LTR idle latency.
    pub const LTR_IDLE: usize = 0xC4;

    /// I/OAT v1 offset of CHANSTS (64 bits).
    pub const V1_CHANSTS: usize = 0x04;
    /// I/OAT v1 offset of CHAINADDR (64 bits).
    pub const V1_CHAINADDR: usize = 0x0C;
    /// I/OAT v1 offset of CHANCMD (8 bits).
    pub const V1_CHANCMD: usize = 0x14;

    /// [`LTR_SWSEL`] value selecting the active latency.
    pub const LTR_SWSEL_ACTIVE: u8 = 0;
    /// [`LTR_SWSEL`] value selecting the idle latency.
    pub const LTR_SWSEL_IDLE: u8 = 1;
    /// The value Linux writes to [`LTR_ACTIVE`]: 0 µs, 1 µs scale, snoop requirement.
    pub const LTR_ACTIVE_LINUX_VALUE: u32 = 0x8800;
    /// The value Linux writes to [`LTR_IDLE`]: 600 µs.
    pub const LTR_IDLE_LINUX_VALUE: u32 = 0x8A58;
}

bitflags! {
    /// [`chan::CHANCTRL`] flag bits. The channel priority (bits 15:12) is read with
    /// [`ChanCtrl::priority`]; build values with `from_bits_retain` to keep it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ChanCtrl: u16 {
        /// Bit 0: interrupt re-arm (one-shot: the channel disarms after raising its interrupt).
        const INT_REARM = 1 << 0;
        /// Bit 2: write the completion area on error too (state HALTED).
        const ERR_COMPLETION_EN = 1 << 2;
        /// Bit 3: abort (halt) on any error.
        const ANY_ERR_ABORT_EN = 1 << 3;
        /// Bit 4: interrupt on error.
        const ERR_INT_EN = 1 << 4;
        /// Bit 5: descriptor-address snoop control.
        const DESCRIPTOR_ADDR_SNOOP = 1 << 5;
        /// Bit 8: channel in use.
        const IN_USE = 1 << 8;
        /// Bit 9: completion-write DCA enable (v3).
        const COMPL_DCA_EN = 1 << 9;
    }
}

impl ChanCtrl {
    /// Mask of the channel priority field (bits 15:12).
    pub const PRIORITY_MASK: u16 = 0xF000;
    /// Linux's "run" value 0x001D: re-arm, error completion, abort on error, error interrupt.
    pub const RUN: Self = Self::INT_REARM
        .union(Self::ERR_COMPLETION_EN)
        .union(Self::ANY_ERR_ABORT_EN)
        .union(Self::ERR_INT_EN);

    /// Channel priority (bits 15:12).
    pub const fn priority(self) -> u8 {
        ((self.bits() & Self::PRIORITY_MASK) >> 12) as u8
    }
    /// The value with the priority field set to `p` (truncated to 4 bits).
    pub const fn with_priority(self, p: u8) -> Self {
        Self::from_bits_retain((self.bits() & !Self::PRIORITY_MASK) | (((p as u16) & 0xF) << 12))
    }
}

bitflags! {
    /// [`chan::DMA_COMP`] bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DmaComp: u16 {
        /// Bit 0: compatible with I/OAT v1.
        const V1 = 1 << 0;
        /// Bit 1: compatible with I/OAT v2.
        const V2 = 1 << 1;
    }
}

bitflags! {
    /// [`chan::CHANCMD`] bits (one command at a time).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ChanCmd: u8 {
        /// Bit 0: start.
        const START = 1 << 0;
        /// Bit 1: append (v1-style).
        const APPEND = 1 << 1;
        /// Bit 2: suspend.
        const SUSPEND = 1 << 2;
        /// Bit 3: abort.
        const ABORT = 1 << 3;
        /// Bit 4: resume.
        const RESUME = 1 << 4;
        /// Bit 5: reset (self-clearing: poll until it reads 0).
        const RESET = 1 << 5;
    }
}

/// The channel state in [`ChanSts`] bits 2:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ChanState {
    /// 0: processing descriptors.
    Active = 0,
    /// 1: idle, every descriptor made available is done ("DONE" in Linux).
    Done = 1,
    /// 2: suspended.
    Suspended = 2,
    /// 3: halted (after reset, or on an error with abort-on-error).
    Halted = 3,
    /// 4: armed: CHAINADDR written, waiting for the doorbell (SPDK/DPDK; Linux has no name).
    Armed = 4,
}

impl TryFrom<u8> for ChanState {
    /// The unknown value (5..=7, or anything above 7 if not masked).
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => Self::Active,
            1 => Self::Done,
            2 => Self::Suspended,
            3 => Self::Halted,
            4 => Self::Armed,
            other => return Err(other),
        })
    }
}

impl From<ChanState> for u8 {
    fn from(s: ChanState) -> u8 {
        s as u8
    }
}

/// [`chan::CHANSTS`] value, also the 8-byte completion write-back at CHANCMP.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(transparent)]
pub struct ChanSts(pub u64);

impl ChanSts {
    /// Mask of the state field (bits 2:0).
    pub const STATE_MASK: u64 = 0x7;
    /// Bit 3: unaffiliated error.
    pub const UNAFFILIATED_ERR: u64 = 1 << 3;
    /// Bit 4: soft error.
    pub const SOFT_ERR: u64 = 1 << 4;
    /// Mask of the completed-descriptor address (bits 63:6).
    pub const COMPLETED_ADDR_MASK: u64 = !0x3F;

    /// A value with completed-descriptor address `addr` (low 6 bits dropped) and `state`.
    pub const fn new(addr: u64, state: ChanState) -> Self {
        Self((addr & Self::COMPLETED_ADDR_MASK) | state as u64)
    }
    /// The raw state bits 2:0.
    pub const fn state_bits(self) -> u8 {
        (self.0 & Self::STATE_MASK) as u8
    }
    /// The decoded state; `Err(bits)` for the undefined values 5..=7.
    pub fn state(self) -> Result<ChanState, u8> {
        ChanState::try_from(self.state_bits())
    }
    /// True if the state is `s`.
    pub const fn is(self, s: ChanState) -> bool {
        self.state_bits() == s as u8
    }
    /// Bit 3: unaffiliated error.
    pub const fn unaffiliated_err(self) -> bool {
        self.0 & Self::UNAFFILIATED_ERR != 0
    }
    /// Bit 4: soft error.
    pub const fn soft_err(self) -> bool {
        self.0 & Self::SOFT_ERR != 0
    }
    /// Address of the last completed descriptor (bits 63:6, low bits zero).
    pub const fn completed_address(self) -> u64 {
        self.0 & Self::COMPLETED_ADDR_MASK
    }
}

impl fmt::Display for ChanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "ACTIVE",
            Self::Done => "DONE",
            Self::Suspended => "SUSPENDED",
            Self::Halted => "HALTED",
            Self::Armed => "ARMED",
        })
    }
}

impl fmt::Display for ChanSts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            Ok(s) => write!(f, "{s}")?,
            Err(v) => write!(f, "undefined state {v}")?,
        }
        write!(
            f,
            ", last completed descriptor {:#x}",
            self.completed_address()
        )?;
        if self.unaffiliated_err() {
            f.write_str(", unaffiliated error")?;
        }
        if self.soft_err() {
            f.write_str(", soft error")?;
        }
        Ok(())
    }
}

bitflags! {
    /// [`chan::CHANERR`] bits (RW1C), named and described as in Linux's table.
    ///
    /// DPDK names bit 8 "descriptor read error" and bit 10 "invalid length"; Linux (followed
    /// here) names them "read data error" and "descriptor control error", and its length error
    /// is bit 11.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ChanErr: u32 {
        /// Bit 0: source address error.
        const SRC_ADDR_ERR = 1 << 0;
        /// Bit 1: destination address error.
        const DEST_ADDR_ERR = 1 << 1;
        /// Bit 2: next-descriptor address error.
        const NEXT_ADDR_ERR = 1 << 2;
        /// Bit 3: next-descriptor alignment / descriptor error.
        const NEXT_DESC_ALIGN_ERR = 1 << 3;
        /// Bit 4: chain address value error.
        const CHAIN_ADDR_VALUE_ERR = 1 << 4;
        /// Bit 5: CHANCMD error.
        const CHANCMD_ERR = 1 << 5;
        /// Bit 6: chipset uncorrectable data-integrity error.
        const CHIPSET_UNCORRECTABLE_DATA_INTEGRITY_ERR = 1 << 6;
        /// Bit 7: DMA uncorrectable data-integrity error.
        const DMA_UNCORRECTABLE_DATA_INTEGRITY_ERR = 1 << 7;
        /// Bit 8: read data error (Linux recovers: abort + reset).
        const READ_DATA_ERR = 1 << 8;
        /// Bit 9: write data error (Linux recovers: abort + reset).
        const WRITE_DATA_ERR = 1 << 9;
        /// Bit 10: descriptor control error.
        const CONTROL_ERR = 1 << 10;
        /// Bit 11: descriptor transfer size (length) error.
        const LENGTH_ERR = 1 << 11;
        /// Bit 12: completion address error.
        const COMPLETION_ADDR_ERR = 1 << 12;
        /// Bit 13: interrupt configuration error.
        const INT_CONFIGURATION_ERR = 1 << 13;
        /// Bit 14: soft error (old parts); super-extended-descriptor address error on CB 3.3+.
        const SOFT_ERR = 1 << 14;
        /// Bit 15: unaffiliated error.
        const UNAFFILIATED_ERR = 1 << 15;
        /// Bit 16: CRC or XOR-P validate error (expected on an XOR_VAL / PQ_VAL mismatch).
        const XOR_P_OR_CRC_ERR = 1 << 16;
        /// Bit 17: XOR-Q validate error.
        const XOR_Q_ERR = 1 << 17;
        /// Bit 18: descriptor count error.
        const DESCRIPTOR_COUNT_ERR = 1 << 18;
        /// Bit 19: DIF all-F detect error.
        const DIF_ALL_F_DETECT_ERR = 1 << 19;
        /// Bit 20: DIF guard tag error.
        const GUARD_TAG_ERR = 1 << 20;
        /// Bit 21: DIF application tag error.
        const APPLICATION_TAG_ERR = 1 << 21;
        /// Bit 22: DIF reference tag error.
        const REFERENCE_TAG_ERR = 1 << 22;
        /// Bit 23: bundle bit error.
        const BUNDLE_BIT_ERR = 1 << 23;
        /// Bit 24: result DIF all-F detect error.
        const RESULT_DIF_ALL_F_DETECT_ERR = 1 << 24;
        /// Bit 25: result guard tag error.
        const RESULT_GUARD_TAG_ERR = 1 << 25;
        /// Bit 26: result application tag error.
        const RESULT_APPLICATION_TAG_ERR = 1 << 26;
        /// Bit 27: result reference tag error.
        const RESULT_REFERENCE_TAG_ERR = 1 << 27;
    }
}

impl ChanErr {
    /// Errors Linux treats as recoverable by abort + channel reset (read/write data errors).
    pub const RECOVERABLE: Self = Self::READ_DATA_ERR.union(Self::WRITE_DATA_ERR);
    /// Bits 31:28, which no source names.
    pub const UNDEFINED_MASK: u32 = 0xF000_0000;

    /// What CHANERR bit `bit` means (the meaning in Linux's table, in our words), or `None` for
    /// bits 28..=31 (and ≥ 32).
    pub const fn describe_bit(bit: u32) -> Option<&'static str> {
        Some(match bit {
            0 => "source address error",
            1 => "destination address error",
            2 => "next-descriptor address error",
            3 => "next-descriptor alignment / descriptor error",
            4 => "chain address value error",
            5 => "CHANCMD error",
            6 => "chipset uncorrectable data-integrity error",
            7 => "DMA uncorrectable data-integrity error",
            8 => "read data error",
            9 => "write data error",
            10 => "descriptor control error",
            11 => "descriptor transfer size error",
            12 => "completion address error",
            13 => "interrupt configuration error",
            14 => "soft error / super-extended-descriptor address error",
            15 => "unaffiliated error",
            16 => "CRC or XOR-P validate error",
            17 => "XOR-Q validate error",
            18 => "descriptor count error",
            19 => "DIF all-F detect error",
            20 => "guard tag error",
            21 => "application tag error",
            22 => "reference tag error",
            23 => "bundle bit error",
            24 => "result DIF all-F detect error",
            25 => "result guard tag error",
            26 => "result application tag error",
            27 => "result reference tag error",
            _ => return None,
        })
    }
}

/// Displays a raw CHANERR value bit by bit with Linux's descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChanErrDisplay(pub u32);

impl fmt::Display for ChanErrDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)?;
        let mut first = true;
        for bit in 0..32u32 {
            if self.0 & (1 << bit) == 0 {
                continue;
            }
            f.write_str(if first { " (" } else { ", " })?;
            first = false;
            match ChanErr::describe_bit(bit) {
                Some(d) => f.write_str(d)?,
                None => write!(f, "undefined bit {bit}")?,
            }
        }
        if !first {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// [`chan::DCACTRL`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DcaCtrl(pub u32);

impl DcaCtrl {
    /// Linux's value: 0xFFFFFFFF, "any CPU".
    pub const ANY_CPU: Self = Self(0xFFFF_FFFF);
    /// Bit 16: completion-write DCA enable.
    pub const COMPLETION_DCA_EN: u32 = 1 << 16;

    /// Target APIC id (bits 15:0).
    pub const fn target_apic_id(self) -> u16 {
        self.0 as u16
    }
    /// Bit 16: completion-write DCA enable.
    pub const fn completion_dca(self) -> bool {
        self.0 & Self::COMPLETION_DCA_EN != 0
    }
}

/// [`chan::DRSCTL`] value (v3.4 descriptor prefetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DrsCtl(pub u16);

impl DrsCtl {
    /// Mask of the ring-size code (bits 3:0).
    pub const SIZE_MASK: u16 = 0xF;
    /// Bit 8: enable.
    pub const ENABLE: u16 = 1 << 8;
    /// Bit 9: auto-wrap.
    pub const AUTO_WRAP: u16 = 1 << 9;

    /// Ring-size code (bits 3:0).
    pub const fn size_code(self) -> u8 {
        (self.0 & Self::SIZE_MASK) as u8
    }
    /// Ring size in bytes: 4 KiB << code (0 = 4 KiB, 1 = 8 KiB, 9 = 2 MiB).
    pub const fn ring_bytes(self) -> u64 {
        4096u64 << self.size_code()
    }
    /// Bit 8: enabled.
    pub const fn enabled(self) -> bool {
        self.0 & Self::ENABLE != 0
    }
    /// Bit 9: auto-wrap.
    pub const fn auto_wrap(self) -> bool {
        self.0 & Self::AUTO_WRAP != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------

/// Descriptor opcode (control bits 31:24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Opcode {
    /// 0x00: copy (a NULL descriptor when control bit 5 is set).
    Copy = 0x00,
    /// 0x01: block fill with a 64-bit pattern.
    Fill = 0x01,
    /// 0x87: XOR.
    Xor = 0x87,
    /// 0x88: XOR validate.
    XorVal = 0x88,
    /// 0x89: P+Q.
    Pq = 0x89,
    /// 0x8A: P+Q validate.
    PqVal = 0x8A,
    /// 0x8B: P+Q update.
    PqUpdate = 0x8B,
    /// 0xA0: P+Q with 16 sources.
    Pq16 = 0xA0,
    /// 0xA1: P+Q validate with 16 sources.
    PqVal16 = 0xA1,
}

impl TryFrom<u8> for Opcode {
    /// The unknown opcode.
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0x00 => Self::Copy,
            0x01 => Self::Fill,
            0x87 => Self::Xor,
            0x88 => Self::XorVal,
            0x89 => Self::Pq,
            0x8A => Self::PqVal,
            0x8B => Self::PqUpdate,
            0xA0 => Self::Pq16,
            0xA1 => Self::PqVal16,
            other => return Err(other),
        })
    }
}

impl From<Opcode> for u8 {
    fn from(o: Opcode) -> u8 {
        o as u8
    }
}

bitflags! {
    /// Descriptor control flags (copy / NULL / fill form, bits 10:0). The opcode lives in bits
    /// 31:24 of the same dword; see [`DescControl`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DescFlags: u32 {
        /// Bit 0: raise the channel interrupt when this descriptor completes.
        const INT_EN = 1 << 0;
        /// Bit 1: source snoop disable.
        const SRC_SNOOP_DIS = 1 << 1;
        /// Bit 2: destination snoop disable.
        const DEST_SNOOP_DIS = 1 << 2;
        /// Bit 3: completion write (update the write-back at CHANCMP after this descriptor).
        const COMPL_WRITE = 1 << 3;
        /// Bit 4: fence (finish this and everything before it before starting the next).
        const FENCE = 1 << 4;
        /// Bit 5: NULL descriptor (no data movement).
        const NULL = 1 << 5;
        /// Bit 6: source page break.
        const SRC_PAGE_BREAK = 1 << 6;
        /// Bit 7: destination page break.
        const DEST_PAGE_BREAK = 1 << 7;
        /// Bit 8: bundle.
        const BUNDLE = 1 << 8;
        /// Bit 9: destination DCA.
        const DEST_DCA = 1 << 9;
        /// Bit 10: hint.
        const HINT = 1 << 10;
    }
}

/// The control dword (descriptor bytes 4..8): [`DescFlags`] in bits 10:0, reserved bits 23:11
/// (copy form), opcode in bits 31:24. XOR/P+Q descriptors reuse bits 7:5 and 23:11 for their
/// own fields, readable here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DescControl(pub u32);

impl DescControl {
    /// Mask of the copy-form reserved bits 23:11.
    pub const RESERVED_MASK: u32 = 0x00FF_F800;
    /// XOR/PQ: mask of the source-count field (bits 7:5).
    pub const SRC_CNT_MASK: u32 = 0x7 << 5;
    /// PQ: bit 11, P disable.
    pub const P_DISABLE: u32 = 1 << 11;
    /// PQ: bit 12, Q disable.
    pub const Q_DISABLE: u32 = 1 << 12;
    /// PQ: bit 15, write-back error status enable.
    pub const WB_ERR_STATUS_EN: u32 = 1 << 15;
    /// PQ: bit 16, "prl" enable.
    pub const PRL_EN: u32 = 1 << 16;
    /// PQ update: mask of the coefficient (bits 23:16).
    pub const COEF_MASK: u32 = 0xFF << 16;

    /// Control with `flags` and `op`.
    pub const fn new(flags: DescFlags, op: Opcode) -> Self {
        Self(flags.bits() | ((op as u32) << 24))
    }
    /// The flag bits 10:0 (other bits dropped).
    pub const fn flags(self) -> DescFlags {
        DescFlags::from_bits_truncate(self.0)
    }
    /// The raw opcode byte (bits 31:24).
    pub const fn op_bits(self) -> u8 {
        (self.0 >> 24) as u8
    }
    /// The decoded opcode; `Err(byte)` if unknown.
    pub fn op(self) -> Result<Opcode, u8> {
        Opcode::try_from(self.op_bits())
    }
    /// Copy-form reserved bits 23:11 (non-zero on a copy is a malformed descriptor).
    pub const fn reserved(self) -> u32 {
        self.0 & Self::RESERVED_MASK
    }
    /// XOR/PQ: the source-count field (bits 7:5) = source count − 2 (16-source PQ: − 9).
    pub const fn src_cnt_field(self) -> u8 {
        ((self.0 & Self::SRC_CNT_MASK) >> 5) as u8
    }
    /// PQ: bit 11, P disable.
    pub const fn p_disable(self) -> bool {
        self.0 & Self::P_DISABLE != 0
    }
    /// PQ: bit 12, Q disable.
    pub const fn q_disable(self) -> bool {
        self.0 & Self::Q_DISABLE != 0
    }
    /// PQ: bit 15, write-back error status enable.
    pub const fn wb_err_status_en(self) -> bool {
        self.0 & Self::WB_ERR_STATUS_EN != 0
    }
    /// PQ: bit 16, "prl" enable.
    pub const fn prl_en(self) -> bool {
        self.0 & Self::PRL_EN != 0
    }
    /// PQ update: the coefficient (bits 23:16).
    pub const fn pq_update_coef(self) -> u8 {
        ((self.0 & Self::COEF_MASK) >> 16) as u8
    }
}

/// P+Q validate result in descriptor dword 0 when DWBES is in use: bit 25 P mismatch.
pub const PQ_VAL_P_MISMATCH: u32 = 1 << 25;
/// P+Q validate result: bit 26 Q mismatch.
pub const PQ_VAL_Q_MISMATCH: u32 = 1 << 26;
/// P+Q validate result: bit 31 write-back valid.
pub const PQ_VAL_WB_VALID: u32 = 1 << 31;

/// Descriptor size in bytes (also its required alignment).
pub const DESCRIPTOR_SIZE: usize = 64;

/// A 64-byte CBDMA descriptor, copy / NULL / fill form (Linux `drivers/dma/ioat/hw.h`, `struct ioat_dma_descriptor`).
///
/// Byte layout: 0 `size`, 4 `ctl`, 8 `src_addr` (fill: the 64-bit pattern), 16 `dst_addr`,
/// 24 `next`, 32 reserved, 40 reserved (fill: next destination address), 48 `user1`,
/// 56 `user2` (driver-private). Little-endian, as the device reads it; build one with
/// [`Descriptor::copy`], [`Descriptor::fill`] or [`Descriptor::null_interrupt`] and store
/// [`Descriptor::to_bytes`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct Descriptor {
    /// Bytes 0..4: transfer size in bytes.
    pub size: u32,
    /// Bytes 4..8: control dword ([`DescControl`]).
    pub ctl: u32,
    /// Bytes 8..16: source address (fill: the 64-bit pattern).
    pub src_addr: u64,
    /// Bytes 16..24: destination address.
    pub dst_addr: u64,
    /// Bytes 24..32: address of the next descriptor.
    pub next: u64,
    /// Bytes 32..40: reserved (XOR/PQ: source 2).
    pub rsvd: u64,
    /// Bytes 40..48: reserved for copy; next destination address for fill.
    pub next_dst_addr: u64,
    /// Bytes 48..56: driver-private.
    pub user1: u64,
    /// Bytes 56..64: driver-private.
    pub user2: u64,
}

const _: () = {
    assert!(core::mem::size_of::<Descriptor>() == DESCRIPTOR_SIZE);
    assert!(core::mem::align_of::<Descriptor>() == DESCRIPTOR_SIZE);
    assert!(core::mem::offset_of!(Descriptor, size) == 0);
    assert!(core::mem::offset_of!(Descriptor, ctl) == 4);
    assert!(core::mem::offset_of!(Descriptor, src_addr) == 8);
    assert!(core::mem::offset_of!(Descriptor, dst_addr) == 16);
    assert!(core::mem::offset_of!(Descriptor, next) == 24);
    assert!(core::mem::offset_of!(Descriptor, rsvd) == 32);
    assert!(core::mem::offset_of!(Descriptor, next_dst_addr) == 40);
    assert!(core::mem::offset_of!(Descriptor, user1) == 48);
    assert!(core::mem::offset_of!(Descriptor, user2) == 56);
};

/// Byte offsets of the descriptor fields (for code that reads descriptors from DMA memory field
/// by field, such as a model).
pub mod desc_offset {
    /// `size`, u32.
    pub const SIZE: usize = 0;
    /// `ctl`, u32.
    pub const CTL: usize = 4;
    /// `src_addr` / fill pattern, u64.
    pub const SRC_ADDR: usize = 8;
    /// `dst_addr`, u64.
    pub const DST_ADDR: usize = 16;
    /// `next`, u64.
    pub const NEXT: usize = 24;
    /// Reserved, u64.
    pub const RSVD: usize = 32;
    /// `next_dst_addr` (fill), u64.
    pub const NEXT_DST_ADDR: usize = 40;
    /// `user1`, u64.
    pub const USER1: usize = 48;
    /// `user2`, u64.
    pub const USER2: usize = 56;
}

const _: () = {
    assert!(core::mem::offset_of!(Descriptor, size) == desc_offset::SIZE);
    assert!(core::mem::offset_of!(Descriptor, ctl) == desc_offset::CTL);
    assert!(core::mem::offset_of!(Descriptor, src_addr) == desc_offset::SRC_ADDR);
    assert!(core::mem::offset_of!(Descriptor, dst_addr) == desc_offset::DST_ADDR);
    assert!(core::mem::offset_of!(Descriptor, next) == desc_offset::NEXT);
    assert!(core::mem::offset_of!(Descriptor, rsvd) == desc_offset::RSVD);
    assert!(core::mem::offset_of!(Descriptor, next_dst_addr) == desc_offset::NEXT_DST_ADDR);
    assert!(core::mem::offset_of!(Descriptor, user1) == desc_offset::USER1);
    assert!(core::mem::offset_of!(Descriptor, user2) == desc_offset::USER2);
};

impl Descriptor {
    /// Size of the NULL descriptor Linux queues (CB 3.0 erratum: size 0 is an error; SPDK uses 8).
    pub const NULL_SIZE: u32 = 1;

    /// A copy of `size` bytes from `src` to `dst`: opcode 0x00, no flags, `next` = 0.
    pub const fn copy(src: u64, dst: u64, size: u32) -> Self {
        Self {
            size,
            ctl: DescControl::new(DescFlags::empty(), Opcode::Copy).0,
            src_addr: src,
            dst_addr: dst,
            next: 0,
            rsvd: 0,
            next_dst_addr: 0,
            user1: 0,
            user2: 0,
        }
    }

    /// A block fill of `size` bytes at `dst` with the 64-bit `pattern`: opcode 0x01.
    pub const fn fill(pattern: u64, dst: u64, size: u32) -> Self {
        let mut d = Self::copy(pattern, dst, size);
        d.ctl = DescControl::new(DescFlags::empty(), Opcode::Fill).0;
        d
    }

    /// Linux's interrupt trick: a NULL descriptor (opcode 0, no data moves) with interrupt
    /// enable and completion write, size [`Descriptor::NULL_SIZE`], source = destination = 0.
    pub const fn null_interrupt() -> Self {
        let mut d = Self::copy(0, 0, Self::NULL_SIZE);
        d.ctl = DescControl::new(
            DescFlags::NULL
                .union(DescFlags::INT_EN)
                .union(DescFlags::COMPL_WRITE),
            Opcode::Copy,
        )
        .0;
        d
    }

    /// The same descriptor linked to `next`.
    pub const fn with_next(mut self, next: u64) -> Self {
        self.next = next;
        self
    }

    /// The same descriptor with `flags` added.
    pub const fn with_flags(mut self, flags: DescFlags) -> Self {
        self.ctl |= flags.bits();
        self
    }

    /// The same descriptor with interrupt enable (control bit 0).
    pub const fn with_interrupt(self) -> Self {
        self.with_flags(DescFlags::INT_EN)
    }

    /// The same descriptor with completion write (control bit 3).
    pub const fn with_completion_write(self) -> Self {
        self.with_flags(DescFlags::COMPL_WRITE)
    }

    /// The same descriptor with fence (control bit 4).
    pub const fn with_fence(self) -> Self {
        self.with_flags(DescFlags::FENCE)
    }

    /// The control dword.
    pub const fn control(&self) -> DescControl {
        DescControl(self.ctl)
    }

    /// The 64 bytes the device reads (little-endian fields on the little-endian targets this
    /// crate supports).
    pub fn to_bytes(&self) -> [u8; DESCRIPTOR_SIZE] {
        zerocopy::transmute!(*self)
    }

    /// Decode 64 bytes (any values; nothing is rejected).
    pub fn from_bytes(bytes: &[u8; DESCRIPTOR_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// Values Linux writes to [`chan::CHANERR_MASK`] on BWD / BDX-DE parts with DWBES: mask the
/// XOR-P/CRC and XOR-Q validate errors (bits 16 and 17), whose result goes to the descriptor.
pub const CHANERR_MASK_DWBES_LINUX: u32 = (1 << 16) | (1 << 17);

/// Timing expectations of the drivers in the sources (the timeouts of Linux `drivers/dma/ioat/dma.c` and SPDK's `lib/ioat/ioat.c`).
pub mod timing {
    /// Linux: after the first doorbell CHANSTS must read ACTIVE or IDLE within ~20 µs (20 polls
    /// of 1 µs), or the channel is failed.
    pub const LINUX_START_US: u64 = 20;
    /// Linux: the reset bit must clear within 200 ms.
    pub const LINUX_RESET_MS: u64 = 200;
    /// Linux: a suspend must take effect within 100 ms.
    pub const LINUX_SUSPEND_MS: u64 = 100;
    /// Linux: the completion watchdog period; no progress over two periods resets the channel.
    pub const LINUX_COMPLETION_TIMER_MS: u64 = 200;
    /// SPDK: wait for IDLE after start, at most 10 ms.
    pub const SPDK_IDLE_MS: u64 = 10;
    /// SPDK: wait for a suspend, at most 20 ms.
    pub const SPDK_SUSPEND_MS: u64 = 20;
    /// Upstream VFIO selftest: reset polled every 1 ms, at most 5000 times.
    pub const SELFTEST_RESET_POLLS: u32 = 5000;
    /// DPDK: spin iterations waiting for ARMED after recovery.
    pub const DPDK_ARMED_SPINS: u32 = 200;
}

/// SPDK's NULL-descriptor size (Linux uses [`Descriptor::NULL_SIZE`] = 1).
pub const SPDK_NULL_SIZE: u32 = 8;

/// An XOR / XOR-validate descriptor (opcodes 0x87 / 0x88), 64 bytes: up to 5 sources here, more
/// in an [`XorExtDescriptor`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct XorDescriptor {
    /// Bytes 0..4: size.
    pub size: u32,
    /// Bytes 4..8: control ([`DescControl`]; source count − 2 in bits 7:5).
    pub ctl: u32,
    /// Bytes 8..16: source 1.
    pub src1: u64,
    /// Bytes 16..24: destination.
    pub dst: u64,
    /// Bytes 24..32: next descriptor.
    pub next: u64,
    /// Bytes 32..40: source 2.
    pub src2: u64,
    /// Bytes 40..48: source 3.
    pub src3: u64,
    /// Bytes 48..56: source 4.
    pub src4: u64,
    /// Bytes 56..64: source 5.
    pub src5: u64,
}

/// The extended (second) XOR descriptor: sources 6–8 and the next link.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct XorExtDescriptor {
    /// Bytes 0..8: source 6.
    pub src6: u64,
    /// Bytes 8..16: source 7.
    pub src7: u64,
    /// Bytes 16..24: source 8.
    pub src8: u64,
    /// Bytes 24..32: next descriptor.
    pub next: u64,
    /// Bytes 32..64: reserved.
    pub rsvd: [u64; 4],
}

/// A P+Q descriptor (opcodes 0x89 / 0x8A / 0x8B, and 0xA0 / 0xA1 with a super-extended block).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct PqDescriptor {
    /// Bytes 0..4: size (P+Q validate with DWBES: the result bits [`PQ_VAL_P_MISMATCH`] …).
    pub size: u32,
    /// Bytes 4..8: control ([`DescControl`]).
    pub ctl: u32,
    /// Bytes 8..16: source 1.
    pub src1: u64,
    /// Bytes 16..24: P destination.
    pub p_dst: u64,
    /// Bytes 24..32: next descriptor.
    pub next: u64,
    /// Bytes 32..40: source 2.
    pub src2: u64,
    /// Bytes 40..48: source 3, or the super-extended descriptor address (16-source ops).
    pub src3_or_sed: u64,
    /// Bytes 48..56: coefficients for sources 1–8, one byte each.
    pub coef: [u8; 8],
    /// Bytes 56..64: Q destination.
    pub q_dst: u64,
}

/// The extended (second) P+Q descriptor: sources 4–6, next link, sources 7–8.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct PqExtDescriptor {
    /// Bytes 0..8: source 4.
    pub src4: u64,
    /// Bytes 8..16: source 5.
    pub src5: u64,
    /// Bytes 16..24: source 6.
    pub src6: u64,
    /// Bytes 24..32: next descriptor.
    pub next: u64,
    /// Bytes 32..40: source 7.
    pub src7: u64,
    /// Bytes 40..48: source 8.
    pub src8: u64,
    /// Bytes 48..64: reserved.
    pub rsvd: [u64; 2],
}

/// The 128-byte super-extended descriptor of 16-source P+Q: coefficients 9–16, then sources
/// 3–16. The sheet gives only that order; the packing below (coefficients at 0, sources from 8,
/// the last 8 bytes unused) is our inference (tag \[I\] in the sheet).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C, align(64))]
pub struct PqSuperExtDescriptor {
    /// Bytes 0..8: coefficients for sources 9–16.
    pub coef: [u8; 8],
    /// Bytes 8..120: sources 3–16.
    pub src: [u64; 14],
    /// Bytes 120..128: unused.
    pub rsvd: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<XorDescriptor>() == 64);
    assert!(offset_of!(XorDescriptor, src1) == 8);
    assert!(offset_of!(XorDescriptor, dst) == 16);
    assert!(offset_of!(XorDescriptor, next) == 24);
    assert!(offset_of!(XorDescriptor, src2) == 32);
    assert!(offset_of!(XorDescriptor, src3) == 40);
    assert!(offset_of!(XorDescriptor, src4) == 48);
    assert!(offset_of!(XorDescriptor, src5) == 56);
    assert!(size_of::<XorExtDescriptor>() == 64);
    assert!(offset_of!(XorExtDescriptor, src6) == 0);
    assert!(offset_of!(XorExtDescriptor, src8) == 16);
    assert!(offset_of!(XorExtDescriptor, next) == 24);
    assert!(size_of::<PqDescriptor>() == 64);
    assert!(offset_of!(PqDescriptor, p_dst) == 16);
    assert!(offset_of!(PqDescriptor, next) == 24);
    assert!(offset_of!(PqDescriptor, src2) == 32);
    assert!(offset_of!(PqDescriptor, src3_or_sed) == 40);
    assert!(offset_of!(PqDescriptor, coef) == 48);
    assert!(offset_of!(PqDescriptor, q_dst) == 56);
    assert!(size_of::<PqExtDescriptor>() == 64);
    assert!(offset_of!(PqExtDescriptor, src4) == 0);
    assert!(offset_of!(PqExtDescriptor, src6) == 16);
    assert!(offset_of!(PqExtDescriptor, next) == 24);
    assert!(offset_of!(PqExtDescriptor, src7) == 32);
    assert!(offset_of!(PqExtDescriptor, src8) == 40);
    assert!(size_of::<PqSuperExtDescriptor>() == 128);
    assert!(offset_of!(PqSuperExtDescriptor, src) == 8);
};

#[cfg(test)]
mod tests;
