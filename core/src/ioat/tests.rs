//! Layout and decode tests for the CBDMA module. Every expected number below is typed in from
//! Linux `drivers/dma/ioat/registers.h` and `hw.h` (groups B.1–B.7 of core/FACT_SHEET_COVERAGE.md,
//! and upstream's `tools/testing/selftests/vfio/lib/drivers/ioat/`), not computed from the
//! constants under test.

extern crate std;

use super::*;
use proptest::prelude::*;
use std::format;
use std::string::String;
use std::vec::Vec;

// ----- PCI identity (B.1) -------------------------------------------------------------------

#[test]
fn pci_ids_match_reference_table() {
    assert_eq!(ids::VENDOR_INTEL, 0x8086);
    assert_eq!(ids::SKX, 0x2021);
    assert_eq!(ids::ICX, 0x0B00);
    assert_eq!(ids::LEGACY, [0x1A38, 0x360B, 0x65FF, 0x402F]);
    assert_eq!(ids::LEGACY_IOAT, 0x1A38);
    assert_eq!(ids::LEGACY_CNB, 0x360B);
    assert_eq!(ids::LEGACY_SCNB, 0x65FF);
    assert_eq!(ids::LEGACY_SNB, 0x402F);
    assert_eq!(
        ids::TBG,
        [0x3430, 0x3431, 0x3432, 0x3433, 0x3429, 0x342A, 0x342B, 0x342C]
    );
    let run = |base: u16| -> Vec<u16> { (0..10).map(|i| base + i).collect() };
    assert_eq!(ids::JSF.to_vec(), run(0x3710));
    let ep = |hi: u16| -> Vec<u16> {
        let mut v: Vec<u16> = (0..8).map(|i| hi + i).collect();
        v.push(hi + 0xE);
        v.push(hi + 0xF);
        v
    };
    assert_eq!(ids::SNB_EP.to_vec(), ep(0x3C20));
    assert_eq!(ids::IVB_EP.to_vec(), ep(0x0E20));
    assert_eq!(ids::HSW_EP.to_vec(), ep(0x2F20));
    assert_eq!(ids::BDX_EP.to_vec(), ep(0x6F20));
    assert_eq!(ids::BWD, [0x0C50, 0x0C51, 0x0C52, 0x0C53]);
    assert_eq!(ids::BDX_DE, [0x6F50, 0x6F51, 0x6F52, 0x6F53]);
}

/// `pci::KNOWN_DEVICES` (written separately from the same sheet) agrees with this module: every
/// CBDMA id there is a CBDMA id here with the same legacy/v3 split, and the counts match.
#[test]
fn ids_agree_with_the_pci_device_table() {
    use crate::pci::{DeviceFamily, KNOWN_DEVICES};
    let mut n = 0;
    for d in KNOWN_DEVICES {
        let legacy = match d.family {
            DeviceFamily::Ioat => false,
            DeviceFamily::IoatLegacy => true,
            _ => {
                assert_eq!(
                    Platform::from_device_id(d.device).filter(|_| d.vendor == 0x8086),
                    None,
                    "{d:?}"
                );
                continue;
            }
        };
        n += 1;
        assert_eq!(d.vendor, ids::VENDOR_INTEL);
        let p = Platform::from_device_id(d.device).unwrap_or_else(|| panic!("{d:?}"));
        assert_eq!(p.is_v3(), !legacy, "{d:?}");
    }
    assert_eq!(n, 4 + 8 + 10 * 5 + 4 + 4 + 2);
    assert_eq!(crate::pci::DEVICE_IOAT_SKX, ids::SKX);
    assert_eq!(crate::pci::DEVICE_IOAT_ICX, ids::ICX);
}

#[test]
fn platform_lookup_for_every_id() {
    let table: &[(&[u16], Platform)] = &[
        (&ids::LEGACY, Platform::Legacy),
        (&ids::TBG, Platform::Tylersburg),
        (&ids::JSF, Platform::JasperForest),
        (&ids::SNB_EP, Platform::SandyBridgeEp),
        (&ids::IVB_EP, Platform::IvyBridgeEp),
        (&ids::HSW_EP, Platform::HaswellEp),
        (&ids::BDX_EP, Platform::BroadwellEp),
        (&ids::BWD, Platform::Avoton),
        (&ids::BDX_DE, Platform::BroadwellDe),
        (&[0x2021], Platform::Skylake),
        (&[0x0B00], Platform::IceLake),
    ];
    let mut seen = 0;
    for (list, p) in table {
        for id in *list {
            assert_eq!(Platform::from_device_id(*id), Some(*p), "{id:#06x}");
            assert_eq!(p.is_v3(), *p != Platform::Legacy);
            seen += 1;
        }
    }
    assert_eq!(seen, 4 + 8 + 10 * 5 + 4 + 4 + 2);
    // Unknown ids, including the DSA id and the next id after each range, are not CBDMA.
    for id in [
        0x0B25u16, 0x2020, 0x2022, 0x0B01, 0x3C28, 0x371A, 0x0000, 0xFFFF,
    ] {
        assert_eq!(Platform::from_device_id(id), None, "{id:#06x}");
    }
}

// ----- Global registers (B.2) ---------------------------------------------------------------

#[test]
fn global_register_offsets() {
    assert_eq!(CHANCNT, 0x00);
    assert_eq!(XFERCAP, 0x01);
    assert_eq!(GENCTRL, 0x02);
    assert_eq!(INTRCTRL, 0x03);
    assert_eq!(ATTNSTATUS, 0x04);
    assert_eq!(CBVER, 0x08);
    assert_eq!(PERPORTOFFSET, 0x0A);
    assert_eq!(INTRDELAY, 0x0C);
    assert_eq!(CSSTATUS, 0x0E);
    assert_eq!(DMACAPABILITY, 0x10);
    assert_eq!(DCAOFFSET, 0x14);
    assert_eq!(CHWPREFLMT, 0x4C);
    assert_eq!(CHWPREFLMT_LINUX_VALUE, 8);
    assert_eq!(CHANNEL_MMIO_SIZE, 0x80);
    assert_eq!(channel_base(0), 0x80);
    assert_eq!(channel_base(1), 0x100);
    assert_eq!(channel_base(3), 0x200);
    assert_eq!(channel_base(31), 0x1000);
    assert_eq!(BWD_MSIX_TABLE_OFFSET, 0x1000);
    assert_eq!(BWD_MSIX_ENTRY0_DATA_OFFSET, 0x1008);
    assert_eq!(BWD_MSIX_PBA_OFFSET, 0x1800);
    assert_eq!(LINUX_MAX_CHANNELS, 4);
}

#[test]
fn timing_and_misc_values() {
    assert_eq!(timing::LINUX_START_US, 20);
    assert_eq!(timing::LINUX_RESET_MS, 200);
    assert_eq!(timing::LINUX_SUSPEND_MS, 100);
    assert_eq!(timing::LINUX_COMPLETION_TIMER_MS, 200);
    assert_eq!(timing::SPDK_IDLE_MS, 10);
    assert_eq!(timing::SPDK_SUSPEND_MS, 20);
    assert_eq!(timing::SELFTEST_RESET_POLLS, 5000);
    assert_eq!(timing::DPDK_ARMED_SPINS, 200);
    assert_eq!(SPDK_NULL_SIZE, 8);
    assert_eq!(CHANERR_MASK_DWBES_LINUX, 0x30000);
    assert_eq!(
        CHANERR_MASK_DWBES_LINUX,
        (ChanErr::XOR_P_OR_CRC_ERR | ChanErr::XOR_Q_ERR).bits()
    );
}

#[test]
fn chancnt_is_five_bits() {
    assert_eq!(ChanCnt(0x01).count(), 1);
    assert_eq!(ChanCnt(0xE4).count(), 4);
    assert_eq!(ChanCnt(0xFF).count(), 31);
    assert_eq!(MAX_CHANNELS, 31);
}

#[test]
fn xfercap_zero_is_32_gib_as_linux_says() {
    assert_eq!(XferCap(0).max_bytes(), 32 * 1024 * 1024 * 1024);
    assert_eq!(XferCap::XFERCAP_32GB, 0);
    assert_eq!(XferCap(12).max_bytes(), 4096);
    assert_eq!(XferCap(15).max_bytes(), 32 * 1024);
    assert_eq!(XferCap(20).max_bytes(), 1 << 20);
    // Only bits 4:0 count.
    assert_eq!(XferCap(0xE0 | 20).log2(), 20);
    assert_eq!(XferCap(0xE0 | 20).max_bytes(), 1 << 20);
    assert_eq!(XferCap(0x20).max_bytes(), 32 * 1024 * 1024 * 1024);
    assert_eq!(XferCap(31).max_bytes(), 1 << 31);
}

#[test]
fn xfercap_spdk_invalid_range() {
    assert!(!XferCap(0).spdk_invalid());
    for n in 1..=11 {
        assert!(XferCap(n).spdk_invalid(), "{n}");
    }
    for n in 12..=31 {
        assert!(!XferCap(n).spdk_invalid(), "{n}");
    }
    assert_eq!(XferCap::SPDK_MIN_VALID, 12);
}

#[test]
fn genctrl_bits() {
    assert_eq!(GenCtrl::DEBUG_EN.bits(), 0x01);
    assert_eq!(GenCtrl::all().bits(), 0x01);
}

#[test]
fn intrctrl_bits() {
    assert_eq!(IntrCtrl::MASTER_INT_EN.bits(), 0x01);
    assert_eq!(IntrCtrl::INT_STATUS.bits(), 0x02);
    assert_eq!(IntrCtrl::INT.bits(), 0x04);
    assert_eq!(IntrCtrl::MSIX_VECTOR_CONTROL.bits(), 0x08);
    assert_eq!(IntrCtrl::LINUX_MSIX.bits(), 0x09);
    assert_eq!(IntrCtrl::all().bits(), 0x0F);
}

#[test]
fn attnstatus_channel_bits() {
    let a = AttnStatus(0b1010);
    assert!(!a.channel(0));
    assert!(a.channel(1));
    assert!(!a.channel(2));
    assert!(a.channel(3));
    assert!(!AttnStatus(u32::MAX).channel(32));
    assert_eq!(AttnStatus(0).with_channel(31).0, 0x8000_0000);
    assert_eq!(AttnStatus(0).with_channel(40).0, 0);
}

#[test]
fn cbver_values_and_fields() {
    assert_eq!(CbVer::V1_2.0, 0x12);
    assert_eq!(CbVer::V2_0.0, 0x20);
    assert_eq!(CbVer::V3_0.0, 0x30);
    assert_eq!(CbVer::V3_2.0, 0x32);
    assert_eq!(CbVer::V3_3.0, 0x33);
    assert_eq!(CbVer::V3_4.0, 0x34);
    assert_eq!(CbVer(0x33).major(), 3);
    assert_eq!(CbVer(0x33).minor(), 3);
    assert_eq!(format!("{}", CbVer(0x32)), "3.2");
    assert!(CbVer(0x30).is_v3());
    assert!(!CbVer(0x20).is_v3());
}

#[test]
fn intrdelay_fields() {
    let d = IntrDelay(0x8000 | 0x1234);
    assert!(d.coalesce_supported());
    assert_eq!(d.delay_us(), 0x1234);
    assert_eq!(IntrDelay(0x7FFF).delay_us(), 0x3FFF);
    assert!(!IntrDelay(0x7FFF).coalesce_supported());
    assert_eq!(IntrDelay(0x8000).with_delay_us(0xFFFF).0, 0xBFFF);
}

#[test]
fn csstatus_bits() {
    assert_eq!(CsStatus::DEGRADED.bits(), 1);
    assert_eq!(CsStatus::MMIO_RESTRICTED.bits(), 2);
    assert_eq!(CsStatus::MEMORY_BYPASS.bits(), 4);
    assert_eq!(CsStatus::ADDRESS_REMAP.bits(), 8);
}

#[test]
fn dmacapability_bits() {
    let expect: &[(DmaCapability, u32)] = &[
        (DmaCapability::PAGE_BREAK, 0),
        (DmaCapability::CRC, 1),
        (DmaCapability::SKIP_MARKER, 2),
        (DmaCapability::DCA, 4),
        (DmaCapability::CRC_MOVE, 5),
        (DmaCapability::FILL, 6),
        (DmaCapability::APIC, 7),
        (DmaCapability::XOR, 8),
        (DmaCapability::PQ, 9),
        (DmaCapability::DMA_DIF, 10),
        (DmaCapability::DWBES, 13),
        (DmaCapability::RAID16SS, 17),
        (DmaCapability::DPS, 23),
    ];
    for (f, bit) in expect {
        assert_eq!(f.bits(), 1 << bit, "{f:?}");
    }
    assert_eq!(DmaCapability::all().iter().count(), expect.len());
}

// ----- PCI config registers (B.3 end) -------------------------------------------------------

#[test]
fn pci_config_registers() {
    assert_eq!(DMACTRL, 0x48);
    assert_eq!(DMACTRL_DMA_EN, 1);
    assert_eq!(DMACTRL_MSI_EN, 2);
    assert_eq!(DMAUNCERRSTS, 0x148);
    assert_eq!(DMAUNCERRSTS_TBG0_ERRATA, 0x10);
    assert_eq!(CHANERR_INT, 0x180);
    assert_eq!(CHANERRMSK_INT, 0x184);
    assert_eq!(CHANERRMSK_INT_V3_0_LINUX, 0x3E07);
}

// ----- Channel registers (B.3) --------------------------------------------------------------

#[test]
fn channel_register_offsets() {
    assert_eq!(chan::CHANCTRL, 0x00);
    assert_eq!(chan::DMA_COMP, 0x02);
    assert_eq!(chan::CHANCMD, 0x04);
    assert_eq!(chan::DMACOUNT, 0x06);
    assert_eq!(chan::CHANSTS, 0x08);
    assert_eq!(chan::CHANSTS_LOW, 0x08);
    assert_eq!(chan::CHANSTS_HIGH, 0x0C);
    assert_eq!(chan::CHAINADDR, 0x10);
    assert_eq!(chan::CHAINADDR_LOW, 0x10);
    assert_eq!(chan::CHAINADDR_HIGH, 0x14);
    assert_eq!(chan::CHANCMP, 0x18);
    assert_eq!(chan::CHANCMP_LOW, 0x18);
    assert_eq!(chan::CHANCMP_HIGH, 0x1C);
    assert_eq!(chan::CDAR, 0x20);
    assert_eq!(chan::CHANERR, 0x28);
    assert_eq!(chan::CHANERR_MASK, 0x2C);
    assert_eq!(chan::DCACTRL, 0x30);
    assert_eq!(chan::DRSCTL, 0xB6);
    assert_eq!(chan::LTR_SWSEL, 0xBC);
    assert_eq!(chan::LTR_ACTIVE, 0xC0);
    assert_eq!(chan::LTR_IDLE, 0xC4);
    assert_eq!(chan::V1_CHANSTS, 0x04);
    assert_eq!(chan::V1_CHAINADDR, 0x0C);
    assert_eq!(chan::V1_CHANCMD, 0x14);
    assert_eq!(chan::LTR_SWSEL_ACTIVE, 0);
    assert_eq!(chan::LTR_SWSEL_IDLE, 1);
    assert_eq!(chan::LTR_ACTIVE_LINUX_VALUE, 0x8800);
    assert_eq!(chan::LTR_IDLE_LINUX_VALUE, 0x8A58);
}

#[test]
fn chanctrl_bits_and_priority() {
    assert_eq!(ChanCtrl::INT_REARM.bits(), 0x0001);
    assert_eq!(ChanCtrl::ERR_COMPLETION_EN.bits(), 0x0004);
    assert_eq!(ChanCtrl::ANY_ERR_ABORT_EN.bits(), 0x0008);
    assert_eq!(ChanCtrl::ERR_INT_EN.bits(), 0x0010);
    assert_eq!(ChanCtrl::DESCRIPTOR_ADDR_SNOOP.bits(), 0x0020);
    assert_eq!(ChanCtrl::IN_USE.bits(), 0x0100);
    assert_eq!(ChanCtrl::COMPL_DCA_EN.bits(), 0x0200);
    assert_eq!(ChanCtrl::RUN.bits(), 0x001D);
    assert_eq!(ChanCtrl::PRIORITY_MASK, 0xF000);
    assert_eq!(ChanCtrl::from_bits_retain(0xA01D).priority(), 0xA);
    let c = ChanCtrl::RUN.with_priority(0x1F);
    assert_eq!(c.bits(), 0xF01D);
    assert_eq!(c.priority(), 0xF);
}

#[test]
fn dma_comp_bits() {
    assert_eq!(DmaComp::V1.bits(), 1);
    assert_eq!(DmaComp::V2.bits(), 2);
}

#[test]
fn chancmd_bits() {
    assert_eq!(ChanCmd::START.bits(), 0x01);
    assert_eq!(ChanCmd::APPEND.bits(), 0x02);
    assert_eq!(ChanCmd::SUSPEND.bits(), 0x04);
    assert_eq!(ChanCmd::ABORT.bits(), 0x08);
    assert_eq!(ChanCmd::RESUME.bits(), 0x10);
    assert_eq!(ChanCmd::RESET.bits(), 0x20);
    assert_eq!(ChanCmd::all().bits(), 0x3F);
}

#[test]
fn chansts_states_and_fields() {
    assert_eq!(ChanState::try_from(0), Ok(ChanState::Active));
    assert_eq!(ChanState::try_from(1), Ok(ChanState::Done));
    assert_eq!(ChanState::try_from(2), Ok(ChanState::Suspended));
    assert_eq!(ChanState::try_from(3), Ok(ChanState::Halted));
    assert_eq!(ChanState::try_from(4), Ok(ChanState::Armed));
    for v in 5..=255u8 {
        assert_eq!(ChanState::try_from(v), Err(v));
    }
    let s = ChanSts(0x0000_0001_2345_6780 | 0x10 | 0x8 | 0x3);
    assert_eq!(s.state(), Ok(ChanState::Halted));
    assert!(s.is(ChanState::Halted));
    assert!(s.unaffiliated_err());
    assert!(s.soft_err());
    assert_eq!(s.completed_address(), 0x0000_0001_2345_6780 & !0x3F);
    assert_eq!(ChanSts(0x7).state(), Err(7));
    assert_eq!(ChanSts(0x5).state_bits(), 5);
    assert_eq!(ChanSts::STATE_MASK, 0x7);
    assert_eq!(ChanSts::UNAFFILIATED_ERR, 0x8);
    assert_eq!(ChanSts::SOFT_ERR, 0x10);
    assert_eq!(ChanSts::COMPLETED_ADDR_MASK, 0xFFFF_FFFF_FFFF_FFC0);
    assert_eq!(ChanSts::new(0x1000_0040, ChanState::Done).0, 0x1000_0041);
    assert_eq!(ChanSts::new(0x1000_007F, ChanState::Armed).0, 0x1000_0044);
}

#[test]
fn chansts_display() {
    assert_eq!(
        format!("{}", ChanSts(0x1000_0043)),
        "HALTED, last completed descriptor 0x10000040"
    );
    assert_eq!(
        format!("{}", ChanSts(0x1D)),
        "undefined state 5, last completed descriptor 0x0, unaffiliated error, soft error"
    );
    for (s, name) in [
        (ChanState::Active, "ACTIVE"),
        (ChanState::Done, "DONE"),
        (ChanState::Suspended, "SUSPENDED"),
        (ChanState::Halted, "HALTED"),
        (ChanState::Armed, "ARMED"),
    ] {
        assert_eq!(format!("{s}"), name);
    }
}

#[test]
fn chanerr_every_bit() {
    let expect: &[(ChanErr, u32)] = &[
        (ChanErr::SRC_ADDR_ERR, 0x1),
        (ChanErr::DEST_ADDR_ERR, 0x2),
        (ChanErr::NEXT_ADDR_ERR, 0x4),
        (ChanErr::NEXT_DESC_ALIGN_ERR, 0x8),
        (ChanErr::CHAIN_ADDR_VALUE_ERR, 0x10),
        (ChanErr::CHANCMD_ERR, 0x20),
        (ChanErr::CHIPSET_UNCORRECTABLE_DATA_INTEGRITY_ERR, 0x40),
        (ChanErr::DMA_UNCORRECTABLE_DATA_INTEGRITY_ERR, 0x80),
        (ChanErr::READ_DATA_ERR, 0x100),
        (ChanErr::WRITE_DATA_ERR, 0x200),
        (ChanErr::CONTROL_ERR, 0x400),
        (ChanErr::LENGTH_ERR, 0x800),
        (ChanErr::COMPLETION_ADDR_ERR, 0x1000),
        (ChanErr::INT_CONFIGURATION_ERR, 0x2000),
        (ChanErr::SOFT_ERR, 0x4000),
        (ChanErr::UNAFFILIATED_ERR, 0x8000),
        (ChanErr::XOR_P_OR_CRC_ERR, 0x10000),
        (ChanErr::XOR_Q_ERR, 0x20000),
        (ChanErr::DESCRIPTOR_COUNT_ERR, 0x40000),
        (ChanErr::DIF_ALL_F_DETECT_ERR, 1 << 19),
        (ChanErr::GUARD_TAG_ERR, 1 << 20),
        (ChanErr::APPLICATION_TAG_ERR, 1 << 21),
        (ChanErr::REFERENCE_TAG_ERR, 1 << 22),
        (ChanErr::BUNDLE_BIT_ERR, 1 << 23),
        (ChanErr::RESULT_DIF_ALL_F_DETECT_ERR, 1 << 24),
        (ChanErr::RESULT_GUARD_TAG_ERR, 1 << 25),
        (ChanErr::RESULT_APPLICATION_TAG_ERR, 1 << 26),
        (ChanErr::RESULT_REFERENCE_TAG_ERR, 1 << 27),
    ];
    assert_eq!(expect.len(), 28, "bits 0..=27 are named");
    for (i, (f, mask)) in expect.iter().enumerate() {
        assert_eq!(f.bits(), *mask, "{f:?}");
        assert_eq!(*mask, 1 << i);
        assert!(ChanErr::describe_bit(i as u32).is_some());
    }
    assert_eq!(ChanErr::all().bits(), 0x0FFF_FFFF);
    assert_eq!(ChanErr::UNDEFINED_MASK, 0xF000_0000);
    assert_eq!(ChanErr::RECOVERABLE.bits(), 0x300);
    for bit in 28..40 {
        assert_eq!(ChanErr::describe_bit(bit), None);
    }
}

#[test]
fn chanerr_display_names_bits() {
    let s = format!("{}", ChanErrDisplay(0x300));
    assert_eq!(s, "0x00000300 (read data error, write data error)");
    assert_eq!(format!("{}", ChanErrDisplay(0)), "0x00000000");
    let s = format!("{}", ChanErrDisplay(0x8000_0001));
    assert!(s.contains("source address error"), "{s}");
    assert!(s.contains("undefined bit 31"), "{s}");
}

#[test]
fn dcactrl_fields() {
    assert_eq!(DcaCtrl::ANY_CPU.0, 0xFFFF_FFFF);
    assert_eq!(DcaCtrl(0x1_0042).target_apic_id(), 0x42);
    assert!(DcaCtrl(0x1_0042).completion_dca());
    assert!(!DcaCtrl(0x0_0042).completion_dca());
    assert_eq!(DcaCtrl::COMPLETION_DCA_EN, 0x1_0000);
}

#[test]
fn drsctl_fields() {
    assert_eq!(DrsCtl(0).ring_bytes(), 4096);
    assert_eq!(DrsCtl(1).ring_bytes(), 8192);
    assert_eq!(DrsCtl(9).ring_bytes(), 2 * 1024 * 1024);
    let d = DrsCtl(0x0309);
    assert!(d.enabled());
    assert!(d.auto_wrap());
    assert_eq!(d.size_code(), 9);
    assert!(!DrsCtl(0x0009).enabled());
    assert_eq!(DrsCtl::ENABLE, 0x100);
    assert_eq!(DrsCtl::AUTO_WRAP, 0x200);
}

// ----- Descriptor (B.4) ---------------------------------------------------------------------

#[test]
fn descriptor_layout() {
    assert_eq!(core::mem::size_of::<Descriptor>(), 64);
    assert_eq!(core::mem::align_of::<Descriptor>(), 64);
    assert_eq!(DESCRIPTOR_SIZE, 64);
    assert_eq!(desc_offset::SIZE, 0);
    assert_eq!(desc_offset::CTL, 4);
    assert_eq!(desc_offset::SRC_ADDR, 8);
    assert_eq!(desc_offset::DST_ADDR, 16);
    assert_eq!(desc_offset::NEXT, 24);
    assert_eq!(desc_offset::RSVD, 32);
    assert_eq!(desc_offset::NEXT_DST_ADDR, 40);
    assert_eq!(desc_offset::USER1, 48);
    assert_eq!(desc_offset::USER2, 56);
}

#[test]
fn descriptor_fields_land_at_their_bytes() {
    let d = Descriptor {
        size: 0x0403_0201,
        ctl: 0x0807_0605,
        src_addr: 0x100F_0E0D_0C0B_0A09,
        dst_addr: 0x1817_1615_1413_1211,
        next: 0x201F_1E1D_1C1B_1A19,
        rsvd: 0x2827_2625_2423_2221,
        next_dst_addr: 0x302F_2E2D_2C2B_2A29,
        user1: 0x3837_3635_3433_3231,
        user2: 0x403F_3E3D_3C3B_3A39,
    };
    let b = d.to_bytes();
    for (i, byte) in b.iter().enumerate() {
        assert_eq!(*byte as usize, i + 1, "byte {i}");
    }
    assert_eq!(Descriptor::from_bytes(&b), d);
}

#[test]
fn opcodes() {
    let expect: &[(Opcode, u8)] = &[
        (Opcode::Copy, 0x00),
        (Opcode::Fill, 0x01),
        (Opcode::Xor, 0x87),
        (Opcode::XorVal, 0x88),
        (Opcode::Pq, 0x89),
        (Opcode::PqVal, 0x8A),
        (Opcode::PqUpdate, 0x8B),
        (Opcode::Pq16, 0xA0),
        (Opcode::PqVal16, 0xA1),
    ];
    for (op, v) in expect {
        assert_eq!(u8::from(*op), *v);
        assert_eq!(Opcode::try_from(*v), Ok(*op));
    }
    let known = expect.iter().map(|(_, v)| *v).collect::<Vec<_>>();
    for v in 0..=255u8 {
        if !known.contains(&v) {
            assert_eq!(Opcode::try_from(v), Err(v));
        }
    }
}

#[test]
fn control_flag_bits() {
    let expect: &[(DescFlags, u32)] = &[
        (DescFlags::INT_EN, 0),
        (DescFlags::SRC_SNOOP_DIS, 1),
        (DescFlags::DEST_SNOOP_DIS, 2),
        (DescFlags::COMPL_WRITE, 3),
        (DescFlags::FENCE, 4),
        (DescFlags::NULL, 5),
        (DescFlags::SRC_PAGE_BREAK, 6),
        (DescFlags::DEST_PAGE_BREAK, 7),
        (DescFlags::BUNDLE, 8),
        (DescFlags::DEST_DCA, 9),
        (DescFlags::HINT, 10),
    ];
    for (f, bit) in expect {
        assert_eq!(f.bits(), 1 << bit, "{f:?}");
    }
    assert_eq!(DescFlags::all().bits(), 0x7FF);
}

#[test]
fn control_dword_fields() {
    let c = DescControl(0x8900_0000 | (5 << 5) | (1 << 11) | (1 << 12) | (1 << 15) | (1 << 16));
    assert_eq!(c.op(), Ok(Opcode::Pq));
    assert_eq!(c.op_bits(), 0x89);
    assert_eq!(c.src_cnt_field(), 5);
    assert!(c.p_disable());
    assert!(c.q_disable());
    assert!(c.wb_err_status_en());
    assert!(c.prl_en());
    let u = DescControl(0x8B00_0000 | (0xC5 << 16));
    assert_eq!(u.op(), Ok(Opcode::PqUpdate));
    assert_eq!(u.pq_update_coef(), 0xC5);
    assert_eq!(DescControl::RESERVED_MASK, 0x00FF_F800);
    assert_eq!(DescControl(0x0000_0800).reserved(), 0x800);
    assert_eq!(DescControl(0x7700_0000).op(), Err(0x77));
    assert_eq!(DescControl(0xFFFF_FFFF).flags(), DescFlags::all());
    assert_eq!(PQ_VAL_P_MISMATCH, 1 << 25);
    assert_eq!(PQ_VAL_Q_MISMATCH, 1 << 26);
    assert_eq!(PQ_VAL_WB_VALID, 1 << 31);
}

/// Expected descriptor bytes from the B.4 table: size at 0, control at 4, source at 8,
/// destination at 16, next at 24, everything else zero.
fn table_bytes(size: u32, ctl: u32, src: u64, dst: u64, next: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..4].copy_from_slice(&size.to_le_bytes());
    b[4..8].copy_from_slice(&ctl.to_le_bytes());
    b[8..16].copy_from_slice(&src.to_le_bytes());
    b[16..24].copy_from_slice(&dst.to_le_bytes());
    b[24..32].copy_from_slice(&next.to_le_bytes());
    b
}

#[test]
fn copy_builder_bytes() {
    let d = Descriptor::copy(0x1122_3344_5566_7780, 0x99AA_BBCC_DDEE_FF00, 0x1000)
        .with_next(0xABC0)
        .with_completion_write();
    // Control: completion write = bit 3 → 0x8; opcode 0x00.
    assert_eq!(
        d.to_bytes(),
        table_bytes(
            0x1000,
            0x0000_0008,
            0x1122_3344_5566_7780,
            0x99AA_BBCC_DDEE_FF00,
            0xABC0
        )
    );
    let d = Descriptor::copy(1, 2, 3).with_interrupt().with_fence();
    // interrupt bit 0 + fence bit 4 = 0x11.
    assert_eq!(d.to_bytes(), table_bytes(3, 0x11, 1, 2, 0));
    let d = Descriptor::copy(1, 2, 3).with_flags(DescFlags::SRC_SNOOP_DIS | DescFlags::HINT);
    assert_eq!(d.to_bytes(), table_bytes(3, 0x402, 1, 2, 0));
}

#[test]
fn fill_builder_bytes() {
    let d = Descriptor::fill(0xDEAD_BEEF_CAFE_F00D, 0x4000, 256).with_next(0x8000);
    // Opcode 0x01 in bits 31:24; pattern at bytes 8..16.
    assert_eq!(
        d.to_bytes(),
        table_bytes(256, 0x0100_0000, 0xDEAD_BEEF_CAFE_F00D, 0x4000, 0x8000)
    );
    assert_eq!(d.control().op(), Ok(Opcode::Fill));
}

#[test]
fn null_interrupt_builder_bytes() {
    // NULL (bit 5) | interrupt (bit 0) | completion write (bit 3) = 0x29, opcode 0, size 1.
    let d = Descriptor::null_interrupt().with_next(0x40);
    assert_eq!(d.to_bytes(), table_bytes(1, 0x29, 0, 0, 0x40));
    assert_eq!(Descriptor::NULL_SIZE, 1);
    let f = d.control().flags();
    assert!(f.contains(DescFlags::NULL | DescFlags::INT_EN | DescFlags::COMPL_WRITE));
}

/// Every field of a RAID descriptor set to a distinct marker lands at its B.4 byte offset.
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

#[test]
fn xor_descriptor_layout() {
    let d = XorDescriptor {
        size: 0x11,
        ctl: 0x8700_0060,
        src1: 1,
        dst: 2,
        next: 3,
        src2: 4,
        src3: 5,
        src4: 6,
        src5: 7,
    };
    let b = zerocopy::IntoBytes::as_bytes(&d);
    assert_eq!(b.len(), 64);
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0x11);
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0x8700_0060);
    for (off, v) in [(8, 1), (16, 2), (24, 3), (32, 4), (40, 5), (48, 6), (56, 7)] {
        assert_eq!(u64_at(b, off), v, "offset {off}");
    }
    assert_eq!(DescControl(d.ctl).src_cnt_field(), 3, "5 sources - 2");
    let e = XorExtDescriptor {
        src6: 6,
        src7: 7,
        src8: 8,
        next: 9,
        rsvd: [0; 4],
    };
    let b = zerocopy::IntoBytes::as_bytes(&e);
    for (off, v) in [(0, 6), (8, 7), (16, 8), (24, 9), (32, 0)] {
        assert_eq!(u64_at(b, off), v, "offset {off}");
    }
}

#[test]
fn pq_descriptor_layout() {
    let d = PqDescriptor {
        size: 0x22,
        ctl: 0x8900_0000,
        src1: 1,
        p_dst: 2,
        next: 3,
        src2: 4,
        src3_or_sed: 5,
        coef: [1, 2, 3, 4, 5, 6, 7, 8],
        q_dst: 9,
    };
    let b = zerocopy::IntoBytes::as_bytes(&d);
    for (off, v) in [(8, 1), (16, 2), (24, 3), (32, 4), (40, 5), (56, 9)] {
        assert_eq!(u64_at(b, off), v, "offset {off}");
    }
    assert_eq!(&b[48..56], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let e = PqExtDescriptor {
        src4: 4,
        src5: 5,
        src6: 6,
        next: 7,
        src7: 8,
        src8: 9,
        rsvd: [0; 2],
    };
    let b = zerocopy::IntoBytes::as_bytes(&e);
    for (off, v) in [(0, 4), (8, 5), (16, 6), (24, 7), (32, 8), (40, 9)] {
        assert_eq!(u64_at(b, off), v, "offset {off}");
    }
    let mut s = PqSuperExtDescriptor {
        coef: [9, 10, 11, 12, 13, 14, 15, 16],
        ..Default::default()
    };
    s.src[0] = 3;
    s.src[13] = 16;
    let b = zerocopy::IntoBytes::as_bytes(&s);
    assert_eq!(b.len(), 128);
    assert_eq!(b[0], 9);
    assert_eq!(u64_at(b, 8), 3, "source 3 first (inferred packing)");
    assert_eq!(u64_at(b, 112), 16, "source 16 last");
}

// ----- Round trips ----------------------------------------------------------------------------

proptest! {
    #[test]
    fn descriptor_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 64)) {
        let mut b = [0u8; 64];
        b.copy_from_slice(&bytes);
        let d = Descriptor::from_bytes(&b);
        prop_assert_eq!(d.to_bytes(), b);
        prop_assert_eq!(Descriptor::from_bytes(&d.to_bytes()), d);
    }

    #[test]
    fn descriptor_struct_round_trip(size: u32, ctl: u32, src: u64, dst: u64, next: u64, u1: u64) {
        let d = Descriptor { size, ctl, src_addr: src, dst_addr: dst, next, user1: u1, ..Default::default() };
        let b = d.to_bytes();
        prop_assert_eq!(&b[..32], &table_bytes(size, ctl, src, dst, next)[..32]);
        prop_assert_eq!(Descriptor::from_bytes(&b), d);
    }

    #[test]
    fn control_round_trip(flags in 0u32..0x800, op in any::<u8>()) {
        let ctl = DescControl(flags | (u32::from(op) << 24));
        prop_assert_eq!(ctl.flags().bits(), flags);
        prop_assert_eq!(ctl.op_bits(), op);
        match ctl.op() {
            Ok(o) => {
                prop_assert_eq!(u8::from(o), op);
                prop_assert_eq!(DescControl::new(ctl.flags(), o), ctl);
            }
            Err(raw) => prop_assert_eq!(raw, op),
        }
    }

    #[test]
    fn chanstate_round_trip(v: u8) {
        match ChanState::try_from(v) {
            Ok(s) => prop_assert_eq!(u8::from(s), v),
            Err(raw) => { prop_assert_eq!(raw, v); prop_assert!(v > 4); }
        }
    }

    #[test]
    fn chansts_round_trip(addr: u64, state in 0u8..5) {
        let s = ChanState::try_from(state).unwrap();
        let v = ChanSts::new(addr, s);
        prop_assert_eq!(v.completed_address(), addr & !0x3F);
        prop_assert_eq!(v.state(), Ok(s));
        prop_assert!(!v.soft_err() && !v.unaffiliated_err());
        prop_assert_eq!(ChanSts::new(v.completed_address(), s), v);
    }

    #[test]
    fn chansts_decode_is_lossless(raw: u64) {
        let s = ChanSts(raw);
        let rebuilt = s.completed_address()
            | u64::from(s.state_bits())
            | if s.unaffiliated_err() { 0x8 } else { 0 }
            | if s.soft_err() { 0x10 } else { 0 }
            | (raw & 0x20);
        prop_assert_eq!(rebuilt, raw);
    }

    #[test]
    fn opcode_round_trip(v: u8) {
        if let Ok(o) = Opcode::try_from(v) {
            prop_assert_eq!(u8::from(o), v);
        }
    }

    #[test]
    fn chanerr_retains_every_bit(raw: u32) {
        let e = ChanErr::from_bits_retain(raw);
        prop_assert_eq!(e.bits(), raw);
        prop_assert_eq!(ChanErr::from_bits_truncate(raw).bits(), raw & 0x0FFF_FFFF);
        let shown: String = format!("{}", ChanErrDisplay(raw));
        prop_assert_eq!(shown.matches(", ").count() + usize::from(raw != 0), raw.count_ones() as usize);
    }

    #[test]
    fn chanctrl_priority_round_trip(bits: u16, p in 0u8..16) {
        let c = ChanCtrl::from_bits_retain(bits).with_priority(p);
        prop_assert_eq!(c.priority(), p);
        prop_assert_eq!(c.bits() & 0x0FFF, bits & 0x0FFF);
    }

    #[test]
    fn intrdelay_round_trip(bits: u16, us: u16) {
        let d = IntrDelay(bits).with_delay_us(us);
        prop_assert_eq!(d.delay_us(), us & 0x3FFF);
        prop_assert_eq!(d.coalesce_supported(), bits & 0x8000 != 0);
    }

    #[test]
    fn xfercap_is_total(raw: u8) {
        let x = XferCap(raw);
        let m = x.max_bytes();
        let shift = if raw & 0x1F == 0 { 35 } else { raw & 0x1F };
        prop_assert_eq!(m, 1u64 << shift);
    }

    #[test]
    fn flag_words_retain_unknown_bits(a: u8, b: u16, c: u32) {
        prop_assert_eq!(IntrCtrl::from_bits_retain(a).bits(), a);
        prop_assert_eq!(ChanCmd::from_bits_retain(a).bits(), a);
        prop_assert_eq!(CsStatus::from_bits_retain(b).bits(), b);
        prop_assert_eq!(DmaCapability::from_bits_retain(c).bits(), c);
    }
}
