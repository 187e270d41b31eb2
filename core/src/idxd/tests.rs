//! Layout, field, code and builder tests against Linux `drivers/dma/idxd/registers.h` and `include/uapi/linux/idxd.h`
//! (groups A.1–A.15 of core/FACT_SHEET_COVERAGE.md).
//! Expected values are written out by hand from the reference tables, never computed with the
//! code under test.

extern crate std;

use super::completion::{op_offset as cr_off, COMPLETION_RECORD_SIZE, IAA_COMPLETION_RECORD_SIZE};
use super::descriptor::{op_offset as d_off, DifBlockSize, SrcDifFlags, DESCRIPTOR_SIZE};
use super::portal::{decode_portal, portal_offset, PORTAL_SLOT};
use super::regs::{len, offset, perfmon};
use super::tables::{GRPCFG_ENGINES, GRPCFG_FLAGS, GRPCFG_STRIDE, GRPCFG_WQS, WQCFG_DWORDS};
use super::*;
use proptest::prelude::*;
use std::vec::Vec;
use zerocopy::IntoBytes;

// ---------------------------------------------------------------- PCI identity, BARs

#[test]
fn pci_identity_matches_reference() {
    assert_eq!(VENDOR_INTEL, 0x8086);
    assert_eq!(DEVICE_DSA_SPR0, 0x0b25);
    assert_eq!(DEVICE_DSA_GNRD, 0x11fb);
    assert_eq!(DEVICE_DSA_DMR, 0x1212);
    assert_eq!(DEVICE_IAX_SPR0, 0x0cfe);
    assert_eq!(DEVICE_IAA_DMR, 0x1216);
    assert_eq!(DEVICE_IAA_PTL, 0xb02d);
    assert_eq!(PCI_CLASS, 0x0880);
    assert_eq!(BAR_CONTROL, 0);
    assert_eq!(BAR_PORTALS, 2);
    assert_eq!(MISC_VECTOR, 0);
}

// ---------------------------------------------------------------- register offsets

#[test]
fn bar0_register_offsets_match_reference() {
    let expected: [(&str, usize, usize); 18] = [
        ("VERSION", offset::VERSION, 0x00),
        ("GENCAP", offset::GENCAP, 0x10),
        ("WQCAP", offset::WQCAP, 0x20),
        ("GRPCAP", offset::GRPCAP, 0x30),
        ("ENGCAP", offset::ENGCAP, 0x38),
        ("OPCAP", offset::OPCAP, 0x40),
        ("TABLE_OFFSET", offset::TABLE_OFFSET, 0x60),
        ("GENCFG", offset::GENCFG, 0x80),
        ("GENCTRL", offset::GENCTRL, 0x88),
        ("GENSTS", offset::GENSTS, 0x90),
        ("INTCAUSE", offset::INTCAUSE, 0x98),
        ("CMD", offset::CMD, 0xA0),
        ("CMDSTS", offset::CMDSTS, 0xA8),
        ("CMDCAP", offset::CMDCAP, 0xB0),
        ("SWERR", offset::SWERR, 0xC0),
        ("EVLCFG", offset::EVLCFG, 0xE0),
        ("EVLSTATUS", offset::EVLSTATUS, 0xF0),
        ("IAACAP", offset::IAACAP, 0x180),
    ];
    for (name, got, want) in expected {
        assert_eq!(got, want, "{name}");
    }
    // Multi-word extents: OPCAP 0x40..0x5F, TABLE_OFFSET 0x60..0x6F, SWERR 0xC0..0xDF,
    // EVLCFG 0xE0..0xEF.
    assert_eq!(offset::OPCAP + len::OPCAP - 1, 0x5F);
    assert_eq!(offset::TABLE_OFFSET + len::TABLE_OFFSET - 1, 0x6F);
    assert_eq!(offset::SWERR + len::SWERR - 1, 0xDF);
    assert_eq!(offset::EVLCFG + len::EVLCFG - 1, 0xEF);
    assert_eq!(TABLE_OFFSET_UNIT, 0x100);
}

#[test]
fn perfmon_offsets_match_reference() {
    assert_eq!(perfmon::PERFCAP, 0x00);
    assert_eq!(perfmon::PERFRST, 0x10);
    assert_eq!(perfmon::PERFFRZ, 0x20);
    assert_eq!(perfmon::OVFSTATUS, 0x30);
    assert_eq!(perfmon::EVNTCAP, 0x80);
    assert_eq!(perfmon::CNTRCFG, 0x100);
    assert_eq!(perfmon::CNTRDATA, 0x200);
    assert_eq!(perfmon::FLTCFG, 0x300);
    assert_eq!(perfmon::CNTRCAP, 0x800);
}

#[test]
fn perfcap_fields() {
    let p = PerfCap(0x3f | 0x30 << 8 | 0xa << 16 | 0xbeef << 20 | 0x5a << 36 | 0xf << 52);
    assert_eq!(p.num_counters(), 0x3f);
    assert_eq!(p.counter_width(), 0x30);
    assert_eq!(p.event_categories(), 0xa);
    assert_eq!(p.global_event_categories(), 0xbeef);
    assert_eq!(p.filters(), 0x5a);
    assert!(p.counter_caps() && p.writable_counters() && p.counter_freeze());
    assert!(p.overflow_interrupt());
    assert!(!PerfCap(0).overflow_interrupt());
}

// ---------------------------------------------------------------- VERSION, capabilities

#[test]
fn version_values() {
    assert_eq!(Version::V1.raw(), 0x100);
    assert_eq!(Version::V2.raw(), 0x200);
    assert!(Version(0x100).default_tc_is_1_1());
    assert!(Version(0x200).default_tc_is_1_1());
    assert!(!Version(0x300).default_tc_is_1_1());
}

#[test]
fn gencap_spr_value_decodes_as_documented() {
    // Real SPR: 0x40915F010F → BOF, overlap, both CC, dest-readback; xfer 2^31; batch 2^10;
    // IMS mult 8; config support; cmd_cap 0.
    let g = GenCap(0x40_915F_010F);
    assert!(g.block_on_fault());
    assert!(g.overlapping_copy());
    assert!(g.cache_control_memory());
    assert!(g.cache_control_cache());
    assert!(!g.cmd_cap());
    assert!(g.dest_readback());
    assert!(!g.drain_readback());
    assert_eq!(g.evl_support(), 0);
    assert_eq!(g.evl_entry_size(), None);
    assert!(!g.batch_continuation());
    assert_eq!(g.max_xfer_shift(), 31);
    assert_eq!(g.max_xfer_size(), 1 << 31);
    assert_eq!(g.max_batch_shift(), 10);
    assert_eq!(g.max_batch_size(), 1024);
    assert_eq!(g.max_ims_mult(), 8);
    assert!(g.config_support());
}

#[test]
fn gencap_every_field_at_its_bit() {
    let single = |b: u32| GenCap(1u64 << b);
    assert!(single(0).block_on_fault());
    assert!(single(1).overlapping_copy());
    assert!(single(2).cache_control_memory());
    assert!(single(3).cache_control_cache());
    assert!(single(4).cmd_cap());
    assert!(single(6).inter_domain());
    assert!(single(7).translation_fetch());
    assert!(single(8).dest_readback());
    assert!(single(9).drain_readback());
    assert!(single(10).fill_16_byte());
    assert!(single(11).crc64());
    assert!(single(12).cr_fault_info());
    assert_eq!(single(13).evl_support(), 1);
    assert_eq!(single(13).evl_entry_size(), Some(64));
    assert_eq!(single(14).evl_support(), 2);
    assert_eq!(single(14).evl_entry_size(), Some(128));
    assert!(single(15).batch_continuation());
    assert_eq!(GenCap(0x1f << 16).max_xfer_shift(), 31);
    assert_eq!(single(16).max_xfer_shift(), 1);
    assert_eq!(single(21).max_batch_shift(), 1);
    assert_eq!(GenCap(0xf << 21).max_batch_shift(), 15);
    assert_eq!(single(25).max_ims_mult(), 1);
    assert_eq!(GenCap(0x3f << 25).max_ims_mult(), 63);
    assert!(single(31).config_support());
    // Bits 63:32 are reserved: none of the accessors sees them.
    let hi = GenCap(0xffff_ffff_0000_0000);
    assert_eq!(hi.max_ims_mult(), 0);
    assert!(!hi.config_support());
}

#[test]
fn wqcap_spr_value_and_every_field() {
    let w = WqCap(0x3F_0000_0008_0080);
    assert_eq!(w.total_wq_size(), 128);
    assert_eq!(w.num_wqs(), 8);
    assert_eq!(w.wqcfg_size(), 0);
    assert_eq!(w.wqcfg_stride(), 32);
    assert!(w.shared_mode() && w.dedicated_mode() && w.wq_ats_support());
    assert!(w.priority_support() && w.occupancy_support() && w.occupancy_int_support());
    assert!(!w.op_config_support() && !w.wq_prs_support());
    assert_eq!(WqCap(1 << 24).wqcfg_stride(), 64);
    assert_eq!(WqCap(0xffff).total_wq_size(), 0xffff);
    assert_eq!(WqCap(0xff << 16).num_wqs(), 0xff);
    assert_eq!(WqCap(0xf << 24).wqcfg_size(), 0xf);
    assert!(WqCap(1 << 48).shared_mode());
    assert!(WqCap(1 << 49).dedicated_mode());
    assert!(WqCap(1 << 50).wq_ats_support());
    assert!(WqCap(1 << 51).priority_support());
    assert!(WqCap(1 << 52).occupancy_support());
    assert!(WqCap(1 << 53).occupancy_int_support());
    assert!(WqCap(1 << 54).op_config_support());
    assert!(WqCap(1 << 55).wq_prs_support());
}

#[test]
fn grpcap_spr_value_and_every_field() {
    let g = GrpCap(0x36004);
    assert_eq!(g.num_groups(), 4);
    assert_eq!(g.total_rdbufs(), 96);
    assert!(g.rdbuf_ctrl() && g.rdbuf_limit());
    assert!(!g.progress_limit());
    assert!(GrpCap(1 << 18).progress_limit());
    assert_eq!(GrpCap(0xff).num_groups(), 0xff);
}

#[test]
fn engcap_fields() {
    assert_eq!(EngCap(4).num_engines(), 4);
    let e = EngCap(0x12_3456);
    assert_eq!(e.num_engines(), 0x56);
    assert_eq!(e.max_descs_in_progress(), 0x34);
    assert_eq!(e.max_batches_in_progress(), 0x12);
}

#[test]
fn opcap_spr_value() {
    // SPR opcap[0] = 0x1003F03FF: opcodes 0x00–0x09, 0x10–0x15, 0x20.
    let o = OpCap([0x1_003F_03FF, 0, 0, 0]);
    let supported: Vec<u8> = (0..=255u8).filter(|&op| o.supports(op)).collect();
    let mut want: Vec<u8> = (0x00..=0x09).collect();
    want.extend(0x10..=0x15);
    want.push(0x20);
    assert_eq!(supported, want);
    assert!(OpCap([0, 0, 0, 1 << 63]).supports(255));
    assert_eq!(OpCap([0; 4]).with(0x20).raw(), [1 << 32, 0, 0, 0]);
    assert_eq!(OpCap([0; 4]).with(200).raw(), [0, 0, 0, 1 << 8]);
}

#[test]
fn table_offset_fields_and_spr_profile() {
    let t = TableOffset([0x0004_0003_0002_0001, 0x0006_0005]);
    assert_eq!(t.grpcfg(), 1);
    assert_eq!(t.wqcfg(), 2);
    assert_eq!(t.msix_perm(), 3);
    assert_eq!(t.ims(), 4);
    assert_eq!(t.perfmon(), 5);
    assert_eq!(t.inter_domain(), 6);
    // SPR: grpcfg 3 / wqcfg 4 / msix_perm 2 / perfmon 0x10 → 0x300, 0x400, 0x200, 0x1000.
    let spr = TableOffset::new(3, 4, 2, 0, 0x10);
    assert_eq!(spr.raw(), [0x0000_0002_0004_0003, 0x10]);
    assert_eq!(spr.grpcfg_offset(), 0x300);
    assert_eq!(spr.wqcfg_offset(), 0x400);
    assert_eq!(spr.msix_perm_offset(), 0x200);
    assert_eq!(spr.ims_offset(), 0);
    assert_eq!(spr.perfmon_offset(), 0x1000);
}

// ---------------------------------------------------------------- config / control / status

#[test]
fn gencfg_fields() {
    let g = GenCfg(0xab | 1 << 12 | 1 << 13);
    assert_eq!(g.rdbuf_limit(), 0xab);
    assert!(g.user_int_en());
    assert!(g.evl_en());
    assert!(!GenCfg(1 << 11).user_int_en());
}

#[test]
fn genctrl_bits() {
    assert_eq!(GenCtrl::SOFTWARE_ERROR_INT.bits(), 1);
    assert_eq!(GenCtrl::HALT_INT.bits(), 2);
    assert_eq!(GenCtrl::EVENT_LOG_INT.bits(), 4);
}

#[test]
fn intcause_bits() {
    assert_eq!(IntCause::SOFTWARE_ERROR.bits(), 1 << 0);
    assert_eq!(IntCause::COMMAND_COMPLETED.bits(), 1 << 1);
    assert_eq!(IntCause::WQ_OCCUPANCY.bits(), 1 << 2);
    assert_eq!(IntCause::PERFMON_OVERFLOW.bits(), 1 << 3);
    assert_eq!(IntCause::HALT.bits(), 1 << 4);
    assert_eq!(IntCause::EVENT_LOG.bits(), 1 << 5);
    assert_eq!(IntCause::HANDLES_REVOKED.bits(), 1 << 31);
}

#[test]
fn gensts_states_and_reset_types() {
    assert_eq!(GenSts(0).state(), DeviceState::Disabled);
    assert_eq!(GenSts(1).state(), DeviceState::Enabled);
    assert_eq!(GenSts(2).state(), DeviceState::Drain);
    assert_eq!(GenSts(3).state(), DeviceState::Halted);
    assert_eq!(GenSts(0 << 2).reset_type(), ResetType::Software);
    assert_eq!(GenSts(1 << 2).reset_type(), ResetType::Flr);
    assert_eq!(GenSts(2 << 2).reset_type(), ResetType::Warm);
    assert_eq!(GenSts(3 << 2).reset_type(), ResetType::Cold);
    assert_eq!(
        GenSts::new(DeviceState::Halted, ResetType::Flr).raw(),
        0b0111
    );
}

// ---------------------------------------------------------------- commands

#[test]
fn command_codes_match_reference() {
    let want: [(Command, u8); 17] = [
        (Command::EnableDevice, 1),
        (Command::DisableDevice, 2),
        (Command::DrainAll, 3),
        (Command::AbortAll, 4),
        (Command::ResetDevice, 5),
        (Command::EnableWq, 6),
        (Command::DisableWq, 7),
        (Command::DrainWq, 8),
        (Command::AbortWq, 9),
        (Command::ResetWq, 10),
        (Command::DrainPasid, 11),
        (Command::AbortPasid, 12),
        (Command::RequestIntHandle, 13),
        (Command::ReleaseIntHandle, 14),
        (Command::RequestInterDomainHandle, 15),
        (Command::ReleaseInterDomainHandle, 16),
        (Command::InvalidateSubmitterBitmapCache, 17),
    ];
    for (c, code) in want {
        assert_eq!(c.code(), code, "{c:?}");
        assert_eq!(Command::try_from(code), Ok(c));
        assert_eq!(c.is_dsa2(), code >= 15, "{c:?}");
    }
    assert_eq!(Command::try_from(0), Err(0));
    assert_eq!(Command::try_from(18), Err(18));
}

#[test]
fn cmd_register_examples_from_reference() {
    assert_eq!(Cmd::new(Command::ResetDevice, 0).raw(), 0x0050_0000);
    assert_eq!(Cmd::new(Command::EnableDevice, 0).raw(), 0x0010_0000);
    assert_eq!(Cmd::new(Command::EnableWq, 0).raw(), 0x0060_0000);
    assert_eq!(
        Cmd::new(Command::DisableWq, wq_bitmap_operand(0)).raw(),
        0x0070_0001
    );
    let c = Cmd::new(Command::RequestIntHandle, int_handle_operand(1, false)).with_interrupt();
    assert_eq!(c.raw(), 0x80d0_0001);
    assert!(c.int_req());
    assert_eq!(c.command(), Ok(Command::RequestIntHandle));
    assert_eq!(c.operand(), 1);
    assert_eq!(Cmd(0x1f << 20).command(), Err(0x1f));
    assert_eq!(wq_bitmap_operand(17), 0x1_0002);
    assert_eq!(int_handle_operand(5, true), 0x1_0005);
}

#[test]
fn cmdsts_fields() {
    let s = CmdSts(0x8000_0000);
    assert!(s.active());
    let s = CmdSts(0x00ab_cd21);
    assert!(!s.active());
    assert_eq!(s.error_code(), 0x21);
    assert_eq!(s.error(), Ok(CmdError::WqEnabled));
    assert_eq!(s.result(), 0xabcd);
    assert_eq!(CmdSts::done(0x41, 0x1234).raw(), 0x0012_3441);
}

#[test]
fn cmd_error_codes_match_reference() {
    let want: [(CmdError, u8); 26] = [
        (CmdError::Success, 0x00),
        (CmdError::InvalidCommand, 0x01),
        (CmdError::InvalidWqIndex, 0x02),
        (CmdError::HardwareError, 0x03),
        (CmdError::DeviceEnabled, 0x10),
        (CmdError::ConfigError, 0x11),
        (CmdError::BusMasterDisabled, 0x12),
        (CmdError::PasidConfig, 0x13),
        (CmdError::WqSizeRange, 0x14),
        (CmdError::GroupConfig1, 0x15),
        (CmdError::GroupConfig2, 0x16),
        (CmdError::GroupConfig3, 0x17),
        (CmdError::GroupConfig4, 0x18),
        (CmdError::WqDeviceNotEnabled, 0x20),
        (CmdError::WqEnabled, 0x21),
        (CmdError::WqSize, 0x22),
        (CmdError::WqPriority, 0x23),
        (CmdError::WqMode, 0x24),
        (CmdError::WqBlockOnFault, 0x25),
        (CmdError::WqPasid, 0x26),
        (CmdError::WqMaxBatch, 0x27),
        (CmdError::WqMaxXfer, 0x28),
        (CmdError::DeviceNotEnabled, 0x31),
        (CmdError::WqNotEnabled, 0x32),
        (CmdError::InvalidIntIndex, 0x41),
        (CmdError::NoIntHandle, 0x42),
    ];
    for (e, code) in want {
        assert_eq!(e as u8, code, "{e:?}");
        assert_eq!(CmdError::try_from(code), Ok(e));
    }
    let named = want.len();
    let decodable = (0..=255u8)
        .filter(|c| CmdError::from_raw(*c).is_ok())
        .count();
    assert_eq!(named, decodable, "no code outside the reference decodes");
}

#[test]
fn cmdcap_bits() {
    assert!(CmdCap(1 << 13).requires_int_handles());
    assert!(!CmdCap(0x1ffe).requires_int_handles());
    for c in Command::ALL {
        assert!(CmdCap(1 << c.code()).supports(c));
        assert!(!CmdCap(!(1 << c.code())).supports(c));
    }
}

// ---------------------------------------------------------------- SWERR

#[test]
fn swerr_fields_at_documented_bits() {
    let s = SwErr([
        1 | 1 << 1
            | 1 << 2
            | 1 << 3
            | 1 << 4
            | 1 << 5
            | 1 << 6
            | 0x52 << 8
            | 0x07 << 16
            | 0x03 << 32
            | 0xabcde << 40,
        0x1234 | 0xdead_beef << 32,
        0xfeed_f00d,
        0,
    ]);
    assert!(s.valid() && s.overflow() && s.desc_valid() && s.wq_index_valid());
    assert!(s.batch() && s.fault_write() && s.privileged());
    assert_eq!(s.error_code(), 0x52);
    assert_eq!(
        s.error(),
        Ok(SwErrCode::Only(SwErrOnlyCode::CommandWhileActive))
    );
    assert_eq!(s.wq_index(), 7);
    assert_eq!(s.operation(), 3);
    assert_eq!(s.pasid(), 0xabcde);
    assert_eq!(s.batch_index(), 0x1234);
    assert_eq!(s.invalid_flags(), 0xdead_beef);
    assert_eq!(s.fault_addr(), 0xfeed_f00d);
    assert_eq!(SwErr::ACK, 0x3);
    assert_eq!(SwErrOnlyCode::PciConfig as u8, 0x51);
    assert_eq!(
        SwErrCode::from_raw(0x03),
        Ok(SwErrCode::Status(CompletionStatus::PageFaultNoBof))
    );
    assert_eq!(SwErrCode::from_raw(0x50), Err(0x50));
}

#[test]
fn swerr_builders_set_the_same_bits() {
    let s = SwErr::new(0x10)
        .with_descriptor(0x55, 0x12345, true)
        .with_wq(2)
        .with_batch_index(9)
        .with_fault(0x1000, true)
        .with_invalid_flags(0x40)
        .with_overflow();
    assert_eq!(
        s.raw()[0],
        1 | 1 << 1
            | 1 << 2
            | 1 << 3
            | 1 << 4
            | 1 << 5
            | 1 << 6
            | 0x10 << 8
            | 2 << 16
            | 0x55 << 32
            | 0x12345 << 40
    );
    assert_eq!(s.raw()[1], 9 | 0x40 << 32);
    assert_eq!(s.raw()[2], 0x1000);
}

// ---------------------------------------------------------------- EVL, MSI-X perm, IMS

#[test]
fn evl_fields() {
    let c = EvlCfg([0x1234_5000 | 0b11, 64 | 0xabcde << 16]);
    assert!(c.pasid_en() && c.privileged());
    assert_eq!(c.base(), 0x1234_5000);
    assert_eq!(c.size(), 64);
    assert_eq!(c.pasid(), 0xabcde);
    let s = EvlStatus(0x12 | 0x34 << 32 | 1 << 62);
    assert_eq!(s.head(), 0x12);
    assert_eq!(s.tail(), 0x34);
    assert!(s.int_pending());
}

#[test]
fn msix_perm_entry_fields() {
    assert_eq!(MSIX_PERM_STRIDE, 8);
    let p = MsixPerm(1 << 2 | 1 << 3 | 0xfffff << 12);
    assert!(p.ignore() && p.pasid_en());
    assert_eq!(p.pasid(), 0xfffff);
    assert_eq!(MsixPerm::new(false, true, 5).raw(), 1 << 3 | 5 << 12);
}

#[test]
fn ims_entry_layout() {
    assert_eq!(IMS_ENTRY_SIZE, 16);
    let e = ImsEntry {
        addr_lo: 0x1111_1111.into(),
        addr_hi: 0x2222_2222.into(),
        data: 0x3333_3333.into(),
        ctrl: 1.into(),
    };
    assert!(e.masked());
    let b = e.as_bytes();
    assert_eq!(&b[0..4], &[0x11; 4]);
    assert_eq!(&b[4..8], &[0x22; 4]);
    assert_eq!(&b[8..12], &[0x33; 4]);
    assert_eq!(&b[12..16], &[1, 0, 0, 0]);
}

// ---------------------------------------------------------------- WQCFG / GRPCFG

#[test]
fn wqcfg_layout_and_spr_dump() {
    assert_eq!(core::mem::size_of::<WqConfig>(), 64);
    assert_eq!(WQCFG_DWORDS, 16);
    // Real SPR WQ0: dword0 0x10, dword2 0x10000011, dword3 0x15F, dword6 0x40000000.
    let c = WqConfig::from_dwords([
        0x10,
        0,
        0x1000_0011,
        0x15f,
        0,
        0,
        0x4000_0000,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    assert_eq!(c.wq_size(), 16);
    assert!(c.dedicated());
    assert_eq!(c.priority(), 1);
    assert!(c.pasid_en());
    assert_eq!(c.pasid(), 0);
    assert!(!c.privileged());
    assert_eq!(c.max_xfer_shift(), 31);
    assert_eq!(c.max_batch_shift(), 10);
    assert_eq!(c.state(), WqState::Enabled);
    let b = c.as_bytes();
    assert_eq!(&b[0..4], &[0x10, 0, 0, 0]);
    assert_eq!(&b[8..12], &[0x11, 0, 0, 0x10]);
    assert_eq!(&b[12..16], &[0x5f, 0x01, 0, 0]);
    assert_eq!(&b[24..28], &[0, 0, 0, 0x40]);
}

#[test]
fn wqcfg_every_field_at_its_bit() {
    let z = WqConfig::new();
    assert_eq!(z.with_wq_size(0xffff).dword(0), 0xffff);
    assert_eq!(z.with_wq_threshold(0xffff).dword(1), 0xffff);
    assert_eq!(z.with_dedicated(true).dword(2), 1 << 0);
    assert_eq!(z.with_block_on_fault(true).dword(2), 1 << 1);
    assert_eq!(z.with_ats_disable(true).dword(2), 1 << 2);
    assert_eq!(z.with_prs_disable(true).dword(2), 1 << 3);
    assert_eq!(z.with_priority(0xf).dword(2), 0xf << 4);
    assert_eq!(z.with_pasid(0xfffff).dword(2), 0xfffff << 8);
    assert_eq!(z.with_pasid_en(true).dword(2), 1 << 28);
    assert_eq!(z.with_privileged(true).dword(2), 1 << 29);
    assert_eq!(z.with_max_xfer_shift(0x1f).dword(3), 0x1f);
    assert_eq!(z.with_max_batch_shift(0xf).dword(3), 0xf << 5);
    assert_eq!(z.with_occupancy_int_handle(0xffff).dword(4), 0xffff);
    assert_eq!(z.with_occupancy_int_ims(true).dword(4), 1 << 16);
    assert_eq!(z.with_occupancy_limit_value(0xffff).dword(5), 0xffff);
    assert_eq!(z.with_occupancy_int_en(true).dword(5), 1 << 16);
    assert_eq!(z.with_occupancy(0xffff).dword(6), 0xffff);
    assert_eq!(z.with_occupancy_int_occurred(true).dword(6), 1 << 16);
    assert_eq!(z.with_mode_support(true).dword(6), 1 << 29);
    assert_eq!(z.with_state(WqState::Disabled).dword(6), 0);
    assert_eq!(z.with_state(WqState::Enabled).dword(6), 1 << 30);
    assert_eq!(z.with_state(WqState::Busy).dword(6), 2 << 30);
    // op_config: opcode n → dword 8 + n/32, bit n%32. Upstream writes MEMMOVE|BATCH = 0x0A.
    let o = z.with_op_allowed(3).with_op_allowed(1);
    assert_eq!(o.dword(8), 0x0a);
    assert!(o.op_allowed(3) && o.op_allowed(1) && !o.op_allowed(0));
    assert_eq!(z.with_op_allowed(0x20).dword(9), 1);
    assert_eq!(z.with_op_allowed(255).dword(15), 1 << 31);
    assert_eq!(z.dword(16), 0, "out-of-range dword reads 0");
    assert_eq!(z.with_dword(16, 5), z, "out-of-range dword write ignored");
}

#[test]
fn grpcfg_layout_and_flags() {
    assert_eq!(GRPCFG_STRIDE, 64);
    assert_eq!(GRPCFG_WQS, 0);
    assert_eq!(GRPCFG_ENGINES, 32);
    assert_eq!(GRPCFG_FLAGS, 40);
    let g = GroupConfig::new()
        .with_wq(0)
        .with_wq(65)
        .with_engine(0)
        .with_engine(3)
        .with_flags(GroupFlags::DEFAULT_V1);
    let b = g.as_bytes();
    assert_eq!(b[0], 1);
    assert_eq!(b[8], 2, "WQ 65 → qword 1 bit 1");
    assert_eq!(b[32], 0b1001);
    assert_eq!(b[40], 0x9);
    assert!(g.has_wq(65) && !g.has_wq(64));
    assert!(g.has_engine(3) && !g.has_engine(64));
    let f = GroupFlags(0)
        .with_tc_a(7)
        .with_tc_b(7)
        .with_use_rdbuf_limit(true)
        .with_rdbufs_reserved(0xff)
        .with_rdbufs_allowed(0xff)
        .with_desc_progress_limit(3)
        .with_batch_progress_limit(3);
    assert_eq!(
        f.raw(),
        0x7 | 0x7 << 3 | 1 << 7 | 0xff << 8 | 0xff << 20 | 3 << 32 | 3 << 36
    );
    assert_eq!(
        (f.tc_a(), f.tc_b(), f.rdbufs_reserved(), f.rdbufs_allowed()),
        (7, 7, 0xff, 0xff)
    );
    assert!(f.use_rdbuf_limit());
    assert_eq!((f.desc_progress_limit(), f.batch_progress_limit()), (3, 3));
    assert_eq!(
        (GroupFlags::DEFAULT_V1.tc_a(), GroupFlags::DEFAULT_V1.tc_b()),
        (1, 1)
    );
}

// ---------------------------------------------------------------- opcodes, flags

#[test]
fn dsa_opcodes_match_reference() {
    let want: [(Opcode, u8); 19] = [
        (Opcode::Noop, 0x00),
        (Opcode::Batch, 0x01),
        (Opcode::Drain, 0x02),
        (Opcode::MemMove, 0x03),
        (Opcode::Fill, 0x04),
        (Opcode::Compare, 0x05),
        (Opcode::ComparePattern, 0x06),
        (Opcode::CreateDelta, 0x07),
        (Opcode::ApplyDelta, 0x08),
        (Opcode::Dualcast, 0x09),
        (Opcode::TranslationFetch, 0x0a),
        (Opcode::CrcGen, 0x10),
        (Opcode::CopyCrc, 0x11),
        (Opcode::DifCheck, 0x12),
        (Opcode::DifInsert, 0x13),
        (Opcode::DifStrip, 0x14),
        (Opcode::DifUpdate, 0x15),
        (Opcode::DixGenerate, 0x17),
        (Opcode::CacheFlush, 0x20),
    ];
    for (o, code) in want {
        assert_eq!(o as u8, code, "{o:?}");
        assert_eq!(Opcode::try_from(code), Ok(o));
    }
    assert_eq!(
        (0..=255u8).filter(|c| Opcode::from_raw(*c).is_ok()).count(),
        want.len()
    );
    assert!(Opcode::TranslationFetch.is_dsa2() && Opcode::DixGenerate.is_dsa2());
    assert!(!Opcode::MemMove.is_dsa2());
}

#[test]
fn iaa_opcodes_match_reference() {
    let want: [(IaaOpcode, u8); 17] = [
        (IaaOpcode::Noop, 0x00),
        (IaaOpcode::Drain, 0x02),
        (IaaOpcode::MemMove, 0x03),
        (IaaOpcode::Decompress, 0x42),
        (IaaOpcode::Compress, 0x43),
        (IaaOpcode::Crc64, 0x44),
        (IaaOpcode::ZeroDecompress32, 0x48),
        (IaaOpcode::ZeroDecompress16, 0x49),
        (IaaOpcode::ZeroCompress32, 0x4c),
        (IaaOpcode::ZeroCompress16, 0x4d),
        (IaaOpcode::Scan, 0x50),
        (IaaOpcode::SetMembership, 0x51),
        (IaaOpcode::Extract, 0x52),
        (IaaOpcode::Select, 0x53),
        (IaaOpcode::RleBurst, 0x54),
        (IaaOpcode::FindUnique, 0x55),
        (IaaOpcode::Expand, 0x56),
    ];
    for (o, code) in want {
        assert_eq!(o as u8, code, "{o:?}");
        assert_eq!(IaaOpcode::try_from(code), Ok(o));
    }
    assert_eq!(IaaOpcode::try_from(0x01), Err(0x01), "IAA has no batch");
}

#[test]
fn descriptor_flags_match_reference() {
    let want: [(DescriptorFlags, u32); 21] = [
        (DescriptorFlags::FENCE, 0x000001),
        (DescriptorFlags::BLOCK_ON_FAULT, 0x000002),
        (DescriptorFlags::COMPLETION_ADDR_VALID, 0x000004),
        (DescriptorFlags::REQUEST_COMPLETION, 0x000008),
        (DescriptorFlags::REQUEST_INTERRUPT, 0x000010),
        (DescriptorFlags::CR_STEERING_TAG, 0x000020),
        (DescriptorFlags::CHECK_RESULT, 0x000080),
        (DescriptorFlags::CACHE_CONTROL, 0x000100),
        (DescriptorFlags::ADDR1_TC, 0x000200),
        (DescriptorFlags::ADDR2_TC, 0x000400),
        (DescriptorFlags::ADDR3_TC, 0x000800),
        (DescriptorFlags::CR_TC, 0x001000),
        (DescriptorFlags::STRICT_ORDERING, 0x002000),
        (DescriptorFlags::DEST_READBACK, 0x004000),
        (DescriptorFlags::DEST_STEERING_TAG, 0x008000),
        (DescriptorFlags::READ_CRC_SEED, 0x010000),
        (DescriptorFlags::IAA_SRC2_SECOND, 0x020000),
        (DescriptorFlags::IAA_WRITE_AECS, 0x040000),
        (DescriptorFlags::IAA_AECS_OVERFLOW, 0x080000),
        (DescriptorFlags::IAA_SRC2_STEERING_TAG, 0x100000),
        (DescriptorFlags::IAA_CRC_RFC3720, 0x200000),
    ];
    for (f, m) in want {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    // Bit 6 and bits 23:22 are reserved: no named flag covers them.
    assert_eq!(DescriptorFlags::all().bits() & (1 << 6 | 0b11 << 22), 0);
}

#[test]
fn dif_flag_bits() {
    assert_eq!(DifBlockSize::from_flags(0).bytes(), 512);
    assert_eq!(DifBlockSize::from_flags(1).bytes(), 520);
    assert_eq!(DifBlockSize::from_flags(2).bytes(), 4096);
    assert_eq!(DifBlockSize::from_flags(3).bytes(), 4104);
    assert_eq!(descriptor::DIF_INVERT_CRC_SEED, 1 << 2);
    assert_eq!(descriptor::DIF_INVERT_CRC_RESULT, 1 << 3);
    assert_eq!(SrcDifFlags::ALL_F_DETECT_ERROR.bits(), 1 << 0);
    assert_eq!(SrcDifFlags::ALL_F_DETECT.bits(), 1 << 1);
    assert_eq!(SrcDifFlags::APP_TAG_ALL_F_DETECT.bits(), 1 << 2);
    assert_eq!(SrcDifFlags::APP_AND_REF_ALL_F_DETECT.bits(), 1 << 3);
    assert_eq!(SrcDifFlags::APP_TAG_TYPE.bits(), 1 << 4);
    assert_eq!(SrcDifFlags::GUARD_CHECK_DISABLE.bits(), 1 << 5);
    assert_eq!(SrcDifFlags::REF_TAG_CHECK_DISABLE.bits(), 1 << 6);
    assert_eq!(SrcDifFlags::REF_TAG_TYPE.bits(), 1 << 7);
}

// ---------------------------------------------------------------- descriptor layout

#[test]
fn descriptor_layout_matches_reference() {
    assert_eq!(DESCRIPTOR_SIZE, 64);
    use core::mem::offset_of;
    assert_eq!(offset_of!(Descriptor, pasid_priv), 0);
    assert_eq!(offset_of!(Descriptor, flags_opcode), 4);
    assert_eq!(offset_of!(Descriptor, completion_addr), 8);
    assert_eq!(offset_of!(Descriptor, src), 16);
    assert_eq!(offset_of!(Descriptor, dst), 24);
    assert_eq!(offset_of!(Descriptor, xfer_size), 32);
    assert_eq!(offset_of!(Descriptor, int_handle), 36);
    assert_eq!(offset_of!(Descriptor, reserved), 38);
    assert_eq!(offset_of!(Descriptor, op_specific), 40);
    assert_eq!(d_off::EXPECTED_RESULT, 40);
    assert_eq!(d_off::DELTA_ADDR, 40);
    assert_eq!(d_off::DELTA_MAX_SIZE, 48);
    assert_eq!(d_off::DELTA_EXPECTED_MASK, 56);
    assert_eq!(d_off::DELTA_SIZE, 40);
    assert_eq!(d_off::DEST2, 40);
    assert_eq!(d_off::CRC_SEED, 40);
    assert_eq!(d_off::CRC_SEED_ADDR, 48);
    assert_eq!(d_off::FILL_PATTERN_HI, 40);
    assert_eq!(d_off::REGION_STRIDE, 48);
    assert_eq!(d_off::SRC_DIF_FLAGS, 40);
    assert_eq!(d_off::DST_DIF_FLAGS, 41);
    assert_eq!(d_off::DIF_FLAGS, 42);
    assert_eq!(d_off::CHK_REF_TAG_SEED, 48);
    assert_eq!(d_off::CHK_APP_TAG_MASK, 52);
    assert_eq!(d_off::CHK_APP_TAG_SEED, 54);
    assert_eq!(d_off::INS_REF_TAG_SEED, 56);
    assert_eq!(d_off::INS_APP_TAG_MASK, 60);
    assert_eq!(d_off::INS_APP_TAG_SEED, 62);
}

#[test]
fn descriptor_field_accessors() {
    let mut b = [0u8; 64];
    b[0..4].copy_from_slice(&[0x45, 0x23, 0xf1, 0x80]); // pasid 0x12345, reserved bit 20 set, priv
    b[4..8].copy_from_slice(&[0x1c, 0x00, 0x01, 0x03]); // flags CRAV|RCR|RCI|READ_CRC_SEED, MEMMOVE
    let d = Descriptor::from_bytes(&b);
    assert_eq!(d.pasid(), 0x12345);
    assert!(d.privileged());
    assert_eq!(d.reserved_dword0(), 0x00f);
    assert_eq!(d.opcode(), Ok(Opcode::MemMove));
    assert_eq!(d.flags_raw(), 0x01001c);
    assert_eq!(d.op_byte(39), 0);
    assert_eq!(d.op_byte(64), 0);
}

// ---------------------------------------------------------------- builders, byte-exact

/// Hand-assemble the expected bytes: dword0 priv, flags/opcode, and listed little-endian fields.
fn expect(opcode: u8, flags: u32, fields: &[(usize, &[u8])]) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[3] = 0x80; // priv = 1 (bit 31 of dword 0)
    b[4] = flags as u8;
    b[5] = (flags >> 8) as u8;
    b[6] = (flags >> 16) as u8;
    b[7] = opcode;
    for (off, bytes) in fields {
        b[*off..*off + bytes.len()].copy_from_slice(bytes);
    }
    b
}

#[test]
fn memmove_builder_matches_upstream_layout() {
    let d = MemMove::new(0x1122_3344_5566_7788, 0x0102_0304_0506_0708, 0x1000)
        .completion(0xaaaa_0000)
        .interrupt(1)
        .build();
    let want = expect(
        0x03,
        0x1c,
        &[
            (8, &[0x00, 0x00, 0xaa, 0xaa, 0, 0, 0, 0]),
            (16, &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]),
            (24, &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]),
            (32, &[0x00, 0x10, 0, 0]),
            (36, &[0x01, 0x00]),
        ],
    );
    assert_eq!(d.as_bytes(), want);
    // Upstream's plain copy: CRAV|RCR = 0x0C, no interrupt.
    let plain = MemMove::new(0x10, 0x20, 8).completion(0x40).build();
    assert_eq!(
        plain.as_bytes(),
        expect(
            0x03,
            0x0c,
            &[(8, &[0x40]), (16, &[0x10]), (24, &[0x20]), (32, &[8])]
        )
    );
    let cc = MemMove::new(0, 0, 1).cache_control().build();
    assert_eq!(cc.as_bytes(), expect(0x03, 0x100, &[(32, &[1])]));
}

#[test]
fn batch_builder_and_on_error_completion() {
    let d = Batch::new(0x4000, 32).completion_on_error(0x8000).build();
    assert_eq!(
        d.as_bytes(),
        expect(
            0x01,
            0x04,
            &[(8, &[0x00, 0x80]), (16, &[0x00, 0x40]), (32, &[32])]
        )
    );
    // completion() after completion_on_error() adds RCR back.
    let d = Batch::new(0x4000, 2)
        .completion_on_error(0x20)
        .completion(0x20)
        .build();
    assert_eq!(
        d.as_bytes(),
        expect(0x01, 0x0c, &[(8, &[0x20]), (16, &[0x00, 0x40]), (32, &[2])])
    );
}

#[test]
fn noop_drain_builders() {
    let n = Noop::new().completion(0x60).interrupt(1).build();
    assert_eq!(
        n.as_bytes(),
        expect(0x00, 0x1c, &[(8, &[0x60]), (36, &[1])])
    );
    let d = Drain::new().readback(0x100, 0x200).interrupt(3).build();
    assert_eq!(
        d.as_bytes(),
        expect(
            0x02,
            0x10,
            &[(16, &[0x00, 0x01]), (24, &[0x00, 0x02]), (36, &[3])]
        )
    );
    assert_eq!(Noop::default().build(), Noop::new().build());
    assert_eq!(Drain::default().build(), Drain::new().build());
}

#[test]
fn fill_compare_pattern_builders() {
    let f = Fill::new(0xdead_beef_cafe_f00d, 0x3000, 100)
        .fence()
        .build();
    assert_eq!(
        f.as_bytes(),
        expect(
            0x04,
            0x01,
            &[
                (16, &[0x0d, 0xf0, 0xfe, 0xca, 0xef, 0xbe, 0xad, 0xde]),
                (24, &[0x00, 0x30]),
                (32, &[100])
            ]
        )
    );
    let c = Compare::new(0x1000, 0x2000, 64).expect(1).build();
    assert_eq!(
        c.as_bytes(),
        expect(
            0x05,
            0x80,
            &[
                (16, &[0x00, 0x10]),
                (24, &[0x00, 0x20]),
                (32, &[64]),
                (40, &[1])
            ]
        )
    );
    let p = ComparePattern::new(0x1000, 0x0101_0101_0101_0101, 16).build();
    assert_eq!(
        p.as_bytes(),
        expect(0x06, 0, &[(16, &[0x00, 0x10]), (24, &[1; 8]), (32, &[16])])
    );
    let p = ComparePattern::new(0, 0, 8).expect(0).build();
    assert_eq!(p.as_bytes(), expect(0x06, 0x80, &[(32, &[8])]));
}

#[test]
fn dualcast_crc_flush_builders() {
    let d = Dualcast::new(0x1000, 0x2040, 0x5040, 256).build();
    assert_eq!(
        d.as_bytes(),
        expect(
            0x09,
            0,
            &[
                (16, &[0x00, 0x10]),
                (24, &[0x40, 0x20]),
                (32, &[0x00, 0x01]),
                (40, &[0x40, 0x50])
            ]
        )
    );
    let c = CrcGen::new(0x1000, 32).seed(0x1234_5678).build();
    assert_eq!(
        c.as_bytes(),
        expect(
            0x10,
            0,
            &[
                (16, &[0x00, 0x10]),
                (32, &[32]),
                (40, &[0x78, 0x56, 0x34, 0x12])
            ]
        )
    );
    let c = CrcGen::new(0, 1).seed_from(0x9000).build();
    assert_eq!(
        c.as_bytes(),
        expect(0x10, 0x10000, &[(32, &[1]), (48, &[0x00, 0x90])])
    );
    let c = CopyCrc::new(0x1000, 0x2000, 4)
        .seed(1)
        .seed_from(0x30)
        .build();
    assert_eq!(
        c.as_bytes(),
        expect(
            0x11,
            0x10000,
            &[
                (16, &[0x00, 0x10]),
                (24, &[0x00, 0x20]),
                (32, &[4]),
                (40, &[1]),
                (48, &[0x30])
            ]
        )
    );
    let f = CacheFlush::new(0x7000, 4096).build();
    assert_eq!(
        f.as_bytes(),
        expect(0x20, 0, &[(24, &[0x00, 0x70]), (32, &[0x00, 0x10])])
    );
}

#[test]
fn builder_pasid_and_flags() {
    let d = Noop::new()
        .pasid(0xfffff, false)
        .flags(DescriptorFlags::STRICT_ORDERING)
        .build();
    let mut want = [0u8; 64];
    want[0..3].copy_from_slice(&[0xff, 0xff, 0x0f]);
    want[5] = 0x20;
    assert_eq!(d.as_bytes(), want);
    // Flags above bit 23 cannot leak into the opcode byte.
    let d = Noop::new()
        .flags(DescriptorFlags::from_bits_retain(0xff00_0000))
        .build();
    assert_eq!(d.opcode(), Ok(Opcode::Noop));
}

// ---------------------------------------------------------------- completion record

#[test]
fn completion_record_layout() {
    use core::mem::offset_of;
    assert_eq!(COMPLETION_RECORD_SIZE, 32);
    assert_eq!(IAA_COMPLETION_RECORD_SIZE, 64);
    assert_eq!(offset_of!(CompletionRecord, status), 0);
    assert_eq!(offset_of!(CompletionRecord, result), 1);
    assert_eq!(offset_of!(CompletionRecord, fault_info), 2);
    assert_eq!(offset_of!(CompletionRecord, bytes_completed), 4);
    assert_eq!(offset_of!(CompletionRecord, fault_addr), 8);
    assert_eq!(offset_of!(CompletionRecord, op_specific), 16);
    assert_eq!(cr_off::INVALID_FLAGS, 16);
    assert_eq!(cr_off::DELTA_RECORD_SIZE, 16);
    assert_eq!(cr_off::CRC_VALUE, 16);
    assert_eq!(cr_off::DIF_CHK_REF_TAG, 16);
    assert_eq!(cr_off::DIF_CHK_APP_MASK, 20);
    assert_eq!(cr_off::DIF_CHK_APP_TAG, 22);
    assert_eq!(cr_off::DIF_INS_REF_TAG, 24);
    assert_eq!(cr_off::DIF_INS_APP_MASK, 28);
    assert_eq!(cr_off::DIF_INS_APP_TAG, 30);
    assert_eq!(cr_off::DIF_UPD_SRC_REF_TAG, 16);
    assert_eq!(cr_off::DIF_UPD_SRC_APP_MASK, 20);
    assert_eq!(cr_off::DIF_UPD_SRC_APP_TAG, 22);
    assert_eq!(cr_off::DIF_UPD_DST_REF_TAG, 24);
    assert_eq!(cr_off::DIF_UPD_DST_APP_MASK, 28);
    assert_eq!(cr_off::DIF_UPD_DST_APP_TAG, 30);
}

#[test]
fn completion_record_decode() {
    let mut b = [0u8; 32];
    b[0] = 0x83; // page fault, write
    b[1] = 1;
    b[2] = 0b0000_0101; // masked, operand 2
    b[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
    b[8..16].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    b[16..20].copy_from_slice(&0xff12_3456u32.to_le_bytes());
    b[20..24].copy_from_slice(&0x8765_4321u32.to_le_bytes());
    let r = CompletionRecord::from_bytes(&b);
    assert_eq!(
        r.status_byte().status(),
        Ok(CompletionStatus::PageFaultNoBof)
    );
    assert!(r.status_byte().write_fault());
    assert!(r.status_byte().is_done());
    assert_eq!(r.result, 1);
    assert!(r.fault_info().address_masked());
    assert_eq!(r.fault_info().operand_id(), 2);
    assert_eq!(r.bytes_completed.get(), 0x1000);
    assert_eq!(r.fault_addr.get(), 0xdead_0000);
    assert_eq!(r.invalid_flags(), 0x12_3456);
    assert_eq!(r.crc32(), 0xff12_3456);
    assert_eq!(r.crc64(), 0x8765_4321_ff12_3456);
    assert_eq!(r.delta_record_size(), 0xff12_3456);
    assert_eq!(r.to_bytes(), b);
    assert!(!StatusByte(0).is_done());
    assert_eq!(
        StatusByte::new(CompletionStatus::PageFaultNoBof, true).0,
        0x83
    );
}

#[test]
fn completion_status_codes_match_reference() {
    let want: [(CompletionStatus, u8); 31] = [
        (CompletionStatus::None, 0x00),
        (CompletionStatus::Success, 0x01),
        (CompletionStatus::SuccessPredicateFalse, 0x02),
        (CompletionStatus::PageFaultNoBof, 0x03),
        (CompletionStatus::PageFaultInvalidResponse, 0x04),
        (CompletionStatus::BatchFail, 0x05),
        (CompletionStatus::BatchPageFault, 0x06),
        (CompletionStatus::DeltaOffsetOrder, 0x07),
        (CompletionStatus::DeltaOffsetRange, 0x08),
        (CompletionStatus::DifError, 0x09),
        (CompletionStatus::InvalidOpcode, 0x10),
        (CompletionStatus::InvalidFlags, 0x11),
        (CompletionStatus::ReservedNonZero, 0x12),
        (CompletionStatus::InvalidTransferSize, 0x13),
        (CompletionStatus::InvalidDescriptorCount, 0x14),
        (CompletionStatus::DeltaSizeRange, 0x15),
        (CompletionStatus::OverlappingBuffers, 0x16),
        (CompletionStatus::DualcastMisaligned, 0x17),
        (CompletionStatus::DescriptorListMisaligned, 0x18),
        (CompletionStatus::InvalidIntHandle, 0x19),
        (CompletionStatus::CompletionRecordFault, 0x1a),
        (CompletionStatus::CompletionRecordMisaligned, 0x1b),
        (CompletionStatus::AddressMisaligned, 0x1c),
        (CompletionStatus::PrivilegeError, 0x1d),
        (CompletionStatus::TrafficClassError, 0x1e),
        (CompletionStatus::DrainReadbackFault, 0x1f),
        (CompletionStatus::HardwareError, 0x20),
        (CompletionStatus::ReadbackHardwareError, 0x21),
        (CompletionStatus::TranslationFailure, 0x22),
        (CompletionStatus::DrainEventLog, 0x26),
        (CompletionStatus::BatchEventLog, 0x27),
    ];
    for (s, code) in want {
        assert_eq!(s as u8, code, "{s:?}");
        assert_eq!(CompletionStatus::try_from(code), Ok(s));
    }
    assert_eq!(
        (0..=255u8)
            .filter(|c| CompletionStatus::from_raw(*c).is_ok())
            .count(),
        want.len()
    );
    assert!(CompletionStatus::Success.is_success());
    assert!(CompletionStatus::SuccessPredicateFalse.is_success());
    assert!(!CompletionStatus::PageFaultNoBof.is_success());
    assert!(CompletionStatus::PageFaultNoBof.is_fault());
}

// ---------------------------------------------------------------- portals

#[test]
fn portal_offsets_match_reference() {
    assert_eq!(WQ_PORTAL_STRIDE, 0x4000);
    assert_eq!(PORTAL_PAGE_SIZE, 0x1000);
    assert_eq!(PORTAL_SLOT, 0x40);
    assert_eq!(portal_offset(0, PortalKind::UnlimitedMsix), 0x0000);
    assert_eq!(portal_offset(0, PortalKind::LimitedMsix), 0x1000);
    assert_eq!(portal_offset(0, PortalKind::UnlimitedIms), 0x2000);
    assert_eq!(portal_offset(0, PortalKind::LimitedIms), 0x3000);
    assert_eq!(
        portal_offset(7, PortalKind::LimitedMsix),
        7 * 0x4000 + 0x1000
    );
    let a = decode_portal(0x4000 * 3 + 0x2000 + 0x40 * 5);
    assert_eq!(
        (a.wq, a.kind, a.slot, a.aligned),
        (3, PortalKind::UnlimitedIms, 5, true)
    );
    assert!(!decode_portal(0x20).aligned);
    assert!(PortalKind::LimitedIms.limited() && PortalKind::LimitedIms.ims());
    assert!(!PortalKind::UnlimitedMsix.limited() && !PortalKind::UnlimitedMsix.ims());
}

// ---------------------------------------------------------------- property tests

proptest! {
    #[test]
    fn command_decode_is_lossless(code in any::<u8>()) {
        match Command::try_from(code) {
            Ok(c) => prop_assert_eq!(c.code(), code),
            Err(e) => prop_assert_eq!(e, code),
        }
    }

    #[test]
    fn cmd_error_decode_is_lossless(code in any::<u8>()) {
        match CmdError::try_from(code) {
            Ok(c) => prop_assert_eq!(c as u8, code),
            Err(e) => prop_assert_eq!(e, code),
        }
    }

    #[test]
    fn opcode_decode_is_lossless(code in any::<u8>()) {
        match Opcode::try_from(code) {
            Ok(c) => prop_assert_eq!(c as u8, code),
            Err(e) => prop_assert_eq!(e, code),
        }
        match IaaOpcode::try_from(code) {
            Ok(c) => prop_assert_eq!(c as u8, code),
            Err(e) => prop_assert_eq!(e, code),
        }
    }

    #[test]
    fn status_decode_is_lossless(code in any::<u8>()) {
        match CompletionStatus::try_from(code) {
            Ok(c) => prop_assert_eq!(c as u8, code),
            Err(e) => prop_assert_eq!(e, code),
        }
        match SwErrCode::from_raw(code) {
            Ok(c) => prop_assert_eq!(c.raw(), code),
            Err(e) => prop_assert_eq!(e, code),
        }
        let s = StatusByte(code);
        prop_assert_eq!(s.code() | if s.write_fault() { 0x80 } else { 0 }, code);
    }

    #[test]
    fn cmd_encode_decode_round_trip(code in 1u8..=17, operand in any::<u32>(), irq in any::<bool>()) {
        let c = Command::from_raw(code).unwrap();
        let mut cmd = Cmd::new(c, operand);
        if irq { cmd = cmd.with_interrupt(); }
        prop_assert_eq!(cmd.command(), Ok(c));
        prop_assert_eq!(cmd.operand(), operand & 0xf_ffff);
        prop_assert_eq!(cmd.int_req(), irq);
        prop_assert_eq!(Cmd(cmd.raw()), cmd);
    }

    #[test]
    fn cmdsts_round_trip(err in any::<u8>(), result in any::<u16>()) {
        let s = CmdSts::done(err, result);
        prop_assert_eq!(s.error_code(), err);
        prop_assert_eq!(s.result(), result);
        prop_assert!(!s.active());
    }

    #[test]
    fn gensts_round_trip(raw in 0u32..16) {
        let g = GenSts(raw);
        prop_assert_eq!(GenSts::new(g.state(), g.reset_type()).raw(), raw);
    }

    #[test]
    fn descriptor_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>()), tail in proptest::array::uniform32(any::<u8>())) {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&bytes);
        b[32..].copy_from_slice(&tail);
        let d = Descriptor::from_bytes(&b);
        prop_assert_eq!(d.as_bytes(), b);
        // Decoding any field never panics and never loses information.
        let _ = (d.opcode(), d.flags(), d.pasid(), d.privileged(), d.reserved_dword0());
        prop_assert_eq!(d.flags().bits(), d.flags_raw());
        prop_assert_eq!(d.opcode_raw(), b[7]);
        for off in 0..80 { let _ = (d.op_byte(off), d.op_u32(off), d.op_u64(off)); }
    }

    #[test]
    fn completion_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
        let r = CompletionRecord::from_bytes(&bytes);
        prop_assert_eq!(r.to_bytes(), bytes);
        let _ = (r.status_byte().status(), r.fault_info().operand_id(), r.invalid_flags(), r.crc64());
    }

    #[test]
    fn wqcfg_dwords_round_trip(d in proptest::array::uniform16(any::<u32>())) {
        let c = WqConfig::from_dwords(d);
        prop_assert_eq!(c.dwords(), d);
        let _ = (c.state(), c.wq_size(), c.priority(), c.pasid(), c.max_xfer_shift());
        for op in 0..=255u8 { let _ = c.op_allowed(op); }
    }

    #[test]
    fn wqcfg_setters_round_trip(size in any::<u16>(), prio in 0u8..16, pasid in 0u32..(1 << 20),
                                 xfer in 0u8..32, batch in 0u8..16, ded in any::<bool>()) {
        let c = WqConfig::new().with_wq_size(size).with_priority(prio).with_pasid(pasid)
            .with_max_xfer_shift(xfer).with_max_batch_shift(batch).with_dedicated(ded);
        prop_assert_eq!((c.wq_size(), c.priority(), c.pasid()), (size, prio, pasid));
        prop_assert_eq!((c.max_xfer_shift(), c.max_batch_shift(), c.dedicated()), (xfer, batch, ded));
    }

    #[test]
    fn swerr_decode_never_panics(q in proptest::array::uniform4(any::<u64>())) {
        let s = SwErr(q);
        let _ = (s.error(), s.pasid(), s.operation(), s.batch_index(), s.invalid_flags());
        prop_assert_eq!(s.raw(), q);
    }

    #[test]
    fn msix_perm_round_trip(ignore in any::<bool>(), en in any::<bool>(), pasid in 0u32..(1 << 20)) {
        let p = MsixPerm::new(ignore, en, pasid);
        prop_assert_eq!((p.ignore(), p.pasid_en(), p.pasid()), (ignore, en, pasid));
    }

    #[test]
    fn table_offset_round_trip(g in any::<u16>(), w in any::<u16>(), m in any::<u16>(), i in any::<u16>(), p in any::<u16>()) {
        let t = TableOffset::new(g, w, m, i, p);
        prop_assert_eq!((t.grpcfg(), t.wqcfg(), t.msix_perm(), t.ims(), t.perfmon()), (g, w, m, i, p));
    }

    #[test]
    fn portal_round_trip(wq in 0u16..256, page in 0usize..4) {
        let kind = PortalKind::from_page(page);
        prop_assert_eq!(kind as usize, page);
        let a = decode_portal(portal_offset(wq, kind));
        prop_assert_eq!((a.wq, a.kind, a.slot, a.aligned), (wq as usize, kind, 0, true));
    }

    #[test]
    fn capability_decode_never_panics(v in any::<u64>(), w in any::<u64>()) {
        let g = GenCap(v);
        let _ = (g.max_xfer_size(), g.max_batch_size(), g.evl_entry_size());
        let c = WqCap(v);
        prop_assert!(c.wqcfg_stride() >= 32);
        let _ = (GrpCap(v).num_groups(), EngCap(v).num_engines(), OpCap([v, w, v, w]).supports(0xff));
        let _ = (GenSts(v as u32).state(), CmdSts(v as u32).error(), Cmd(v as u32).command());
        let _ = (EvlCfg([v, w]).pasid(), EvlStatus(v).tail(), PerfCap(v).filters());
    }
}

#[test]
fn display_decodes_names() {
    use std::format;
    let s = SwErr::new(0x03).with_wq(0).with_fault(0x1000, true);
    let text = format!("{s}");
    assert!(
        text.contains("PageFaultNoBof") && text.contains("WQ 0"),
        "{text}"
    );
    assert!(text.contains("write fault at 0x1000"), "{text}");
    assert_eq!(format!("{}", SwErr([0; 4])), "SWERR not valid");
    assert!(format!("{}", SwErr::new(0x52)).contains("CommandWhileActive"));
    assert!(format!("{}", CmdSts(0x22)).contains("WqSize"));
    assert!(format!("{}", CmdSts(1 << 31)).contains("active"));
    assert!(format!("{}", CmdSts(0x99)).contains("unknown"));
    assert_eq!(
        format!("{}", StatusByte(0x83)),
        "PageFaultNoBof (0x83), write fault"
    );
    assert_eq!(format!("{}", StatusByte(0x7f)), "unknown status 0x7f");
}

#[test]
fn table_address_helpers() {
    use super::tables::{grpcfg_byte_offset, wqcfg_dword_offset};
    let spr = TableOffset::new(3, 4, 2, 0, 0x10);
    // 32-byte WQCFG: WQ 2 dword 6 at 0x400 + 2*32 + 24.
    assert_eq!(wqcfg_dword_offset(spr, WqCap(0), 2, 6), 0x400 + 64 + 24);
    // 64-byte WQCFG (code 1): WQ 1 dword 8 at 0x400 + 64 + 32.
    assert_eq!(
        wqcfg_dword_offset(spr, WqCap(1 << 24), 1, 8),
        0x400 + 64 + 32
    );
    assert_eq!(grpcfg_byte_offset(spr, 1, GRPCFG_ENGINES), 0x300 + 64 + 32);
    assert_eq!(GenCap(0x40_915F_010F).ims_entries(), 2048);
}
