//! An independent walk through the hardware facts (Linux `drivers/dma/idxd/registers.h`, `include/uapi/linux/idxd.h`,
//! `drivers/dma/ioat/registers.h`, `hw.h`; grouped as A.1–B.7 in core/FACT_SHEET_COVERAGE.md), table by
//! table and row by row. Every expected number below was typed from those sources, never computed
//! with the code under test; each test names the group it checks. Where a fact is
//! inferred ([I]: no source states it) or comes only from third-party code such as SPDK ([Q]) the test says so in a comment.
//!
//! Coverage map and counts: `core/FACT_SHEET_COVERAGE.md`.

use passthru_core::idxd::completion::{
    op_offset as cr, COMPLETION_RECORD_SIZE, IAA_COMPLETION_RECORD_SIZE,
};
use passthru_core::idxd::descriptor::{
    op_offset as dop, DifBlockSize, SrcDifFlags, BATCH_LIST_ALIGN, BATCH_MIN_COUNT,
    DESCRIPTOR_SIZE, DIF_INVERT_CRC_RESULT, DIF_INVERT_CRC_SEED,
};
use passthru_core::idxd::portal::{decode_portal, portal_offset, PORTAL_SLOT};
use passthru_core::idxd::regs::{len, offset, perfmon};
use passthru_core::idxd::tables::{
    grpcfg_byte_offset, wqcfg_dword_offset, GRPCFG_ENGINES, GRPCFG_FLAGS, GRPCFG_STRIDE,
    GRPCFG_WQS, WQCFG_DWORDS, WQCFG_STATUS_DWORD,
};
use passthru_core::idxd::{self, *};
use passthru_core::ioat;
use passthru_core::pci::{self, BarKind, DeviceFamily};
use zerocopy::IntoBytes;

/// A bit accessor on a 64-bit register value.
type BitGetter = fn(u64) -> bool;

/// `(bit, accessor)` rows: assert each accessor sees exactly its documented bit.
fn single_bits_u64(name: &str, rows: &[(u32, BitGetter)]) {
    for (bit, get) in rows {
        assert!(get(1u64 << bit), "{name}: bit {bit} not seen");
        assert!(
            !get(!(1u64 << bit)),
            "{name}: accessor for bit {bit} sees other bits"
        );
    }
}

// =============================================================================================
// Part A — DSA
// =============================================================================================

/// A.1 PCI identity: ids, class, both BARs 64-bit prefetchable (low dword 0xC), IDs in
/// `pci::KNOWN_DEVICES` with the right family, DVSEC id 5.
#[test]
fn a1_pci_identity() {
    let rows: [(u16, u16, DeviceFamily); 6] = [
        (idxd::DEVICE_DSA_SPR0, 0x0B25, DeviceFamily::Dsa),
        (idxd::DEVICE_DSA_GNRD, 0x11FB, DeviceFamily::Dsa),
        (idxd::DEVICE_DSA_DMR, 0x1212, DeviceFamily::Dsa),
        (idxd::DEVICE_IAX_SPR0, 0x0CFE, DeviceFamily::Iaa),
        (idxd::DEVICE_IAA_DMR, 0x1216, DeviceFamily::Iaa),
        (idxd::DEVICE_IAA_PTL, 0xB02D, DeviceFamily::Iaa),
    ];
    for (got, want, family) in rows {
        assert_eq!(got, want);
        let known = pci::supported_device(0x8086, want).expect("id in pci::KNOWN_DEVICES");
        assert_eq!(known.family, family, "{want:#06x}");
    }
    assert_eq!(idxd::VENDOR_INTEL, 0x8086);
    assert_eq!(pci::VENDOR_INTEL, 0x8086);
    assert_eq!(pci::DEVICE_DSA_SPR, 0x0B25);
    assert_eq!(pci::DEVICE_DSA_GNRD, 0x11FB);
    assert_eq!(pci::DEVICE_DSA_DMR, 0x1212);
    assert_eq!(pci::DEVICE_IAX_SPR, 0x0CFE);
    assert_eq!(pci::DEVICE_IAA_DMR, 0x1216);
    assert_eq!(pci::DEVICE_IAA_PTL, 0xB02D);
    assert_eq!(idxd::PCI_CLASS, 0x0880);
    assert_eq!(
        BarKind::decode(0xC),
        BarKind::Memory64 { prefetchable: true }
    );
    assert_eq!(idxd::DVSEC_ID_SCALABLE_IOV, 5);
    // Extended capabilities present on DSA: ATS, PRI, PASID, DVSEC (PCIe spec ids).
    assert_eq!(pci::ext_cap_id::ATS, 0x000F);
    assert_eq!(pci::ext_cap_id::PRI, 0x0013);
    assert_eq!(pci::ext_cap_id::PASID, 0x001B);
    assert_eq!(pci::ext_cap_id::DVSEC, 0x0023);
}

/// A.2 BAR layout: BAR0 registers, BAR2 portals, 16 KiB per WQ, the four pages, 64-byte
/// slots, [V]'s decode rules; the real-SPR table offsets 0x200 / 0x300 / 0x400 / 0x1000.
#[test]
fn a2_bar_layout_and_portals() {
    assert_eq!(idxd::BAR_CONTROL, 0);
    assert_eq!(idxd::BAR_PORTALS, 2);
    assert_eq!(WQ_PORTAL_STRIDE, 0x4000);
    assert_eq!(PORTAL_PAGE_SIZE, 0x1000);
    assert_eq!(PORTAL_SLOT, 0x40);
    // Page table: (page, offset in WQ window, limited, IMS).
    let pages = [
        (PortalKind::UnlimitedMsix, 0x0000, false, false),
        (PortalKind::LimitedMsix, 0x1000, true, false),
        (PortalKind::UnlimitedIms, 0x2000, false, true),
        (PortalKind::LimitedIms, 0x3000, true, true),
    ];
    for (kind, off, limited, ims) in pages {
        assert_eq!(portal_offset(0, kind), off, "{kind:?}");
        assert_eq!(portal_offset(5, kind), 5 * 0x4000 + off, "{kind:?}");
        assert_eq!(kind.limited(), limited, "{kind:?}");
        assert_eq!(kind.ims(), ims, "{kind:?}");
        assert_eq!(PortalKind::from_page(off / 0x1000), kind);
    }
    // [V]: wq = offset >> 14, portal id = (offset & 0xFFF) >> 6.
    let a = decode_portal(0x1_F7C0);
    assert_eq!(
        (a.wq, a.kind, a.slot, a.aligned),
        (7, PortalKind::LimitedIms, 0x1F, true)
    );
    assert!(!decode_portal(0x1_F7C8).aligned);
    let spr = TableOffset::new(3, 4, 2, 0, 0x10);
    assert_eq!(spr.msix_perm_offset(), 0x200);
    assert_eq!(spr.grpcfg_offset(), 0x300);
    assert_eq!(spr.wqcfg_offset(), 0x400);
    assert_eq!(spr.perfmon_offset(), 0x1000);
}

/// A.3 interrupts: misc vector 0, RCI = flag bit 4, int_handle at bytes 36..37, CMDCAP bit 13,
/// status 0x19, INTCAUSE bit 31, MSI-X permission entry, IMS entry, PASID/priv in dword 0,
/// GENCFG bit 12.
#[test]
fn a3_interrupts_msix_perm_ims_pasid() {
    assert_eq!(idxd::MISC_VECTOR, 0);
    assert_eq!(DescriptorFlags::REQUEST_INTERRUPT.bits(), 1 << 4);
    let d = MemMove::new(0, 0, 8).interrupt(0xBEEF).build();
    assert_eq!(&d.as_bytes()[36..38], &[0xEF, 0xBE]);
    assert!(CmdCap(1 << 13).requires_int_handles());
    assert_eq!(CompletionStatus::InvalidIntHandle as u8, 0x19);
    assert_eq!(IntCause::HANDLES_REVOKED.bits(), 0x8000_0000);
    // MSI-X permission: 8-byte entries; bit 2 ignore, bit 3 PASID enable, 31:12 PASID; bits
    // 1:0 and 11:4 reserved.
    assert_eq!(MSIX_PERM_STRIDE, 8);
    assert_eq!(MsixPerm::new(true, false, 0).raw(), 0x0000_0004);
    assert_eq!(MsixPerm::new(false, true, 0).raw(), 0x0000_0008);
    assert_eq!(MsixPerm::new(false, false, 0xF_FFFF).raw(), 0xFFFF_F000);
    let reserved = MsixPerm(0x0000_0FF3);
    assert!(!reserved.ignore() && !reserved.pasid_en() && reserved.pasid() == 0);
    // IMS: 16-byte entries, +0 addr lo, +4 addr hi, +8 data, +12 vector control (bit 0 mask);
    // entries = max_ims_mult × 256.
    assert_eq!(IMS_ENTRY_SIZE, 16);
    let e = ImsEntry {
        addr_lo: 0xFEE0_0000.into(),
        addr_hi: 0x0000_0001.into(),
        data: 0x0000_4041.into(),
        ctrl: 0x0000_0001.into(),
    };
    assert_eq!(
        e.as_bytes(),
        &[
            0x00, 0x00, 0xE0, 0xFE, 0x01, 0x00, 0x00, 0x00, 0x41, 0x40, 0x00, 0x00, 0x01, 0x00,
            0x00, 0x00
        ]
    );
    assert!(e.masked());
    assert_eq!(GenCap(8 << 25).ims_entries(), 2048);
    assert_eq!(int_handle_operand(3, true), 0x0001_0003);
    // PASID: dword 0 bits 19:0, privilege bit 31.
    let d = Noop::new().pasid(0xF_FFFF, true).build();
    assert_eq!(&d.as_bytes()[0..4], &[0xFF, 0xFF, 0x0F, 0x80]);
    let d = Noop::new().pasid(0x1_2345, false).build();
    assert_eq!(&d.as_bytes()[0..4], &[0x45, 0x23, 0x01, 0x00]);
    assert!(GenCfg(0x1000).user_int_en());
}

/// A.4 BAR0 register map: every offset, the multi-word extents, the 0x100 table unit.
#[test]
fn a4_register_map() {
    let rows: [(&str, usize, usize); 18] = [
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
    for (name, got, want) in rows {
        assert_eq!(got, want, "{name}");
    }
    // 0x40–0x5F, 0x60–0x6F, 0xC0–0xDF, 0xE0–0xEF.
    assert_eq!(len::OPCAP, 0x20);
    assert_eq!(len::TABLE_OFFSET, 0x10);
    assert_eq!(len::SWERR, 0x20);
    assert_eq!(len::EVLCFG, 0x10);
    assert_eq!(TABLE_OFFSET_UNIT, 0x100);
    // VERSION: opaque; the documented values.
    assert_eq!(Version::V1.raw(), 0x100);
    assert_eq!(Version::V2.raw(), 0x200);
}

/// A.5 GENCAP: every bit/field row and the real SPR value 0x40915F010F.
#[test]
fn a5_gencap() {
    single_bits_u64(
        "GENCAP",
        &[
            (0, |v| GenCap(v).block_on_fault()),
            (1, |v| GenCap(v).overlapping_copy()),
            (2, |v| GenCap(v).cache_control_memory()),
            (3, |v| GenCap(v).cache_control_cache()),
            (4, |v| GenCap(v).cmd_cap()),
            (6, |v| GenCap(v).inter_domain()),      // [Q]
            (7, |v| GenCap(v).translation_fetch()), // [Q]
            (8, |v| GenCap(v).dest_readback()),
            (9, |v| GenCap(v).drain_readback()),
            (10, |v| GenCap(v).fill_16_byte()),  // [Q]
            (11, |v| GenCap(v).crc64()),         // [Q]
            (12, |v| GenCap(v).cr_fault_info()), // [Q]
            (15, |v| GenCap(v).batch_continuation()),
            (31, |v| GenCap(v).config_support()),
        ],
    );
    // 14:13 event log (entry = 32 << value), 20:16 max xfer shift, 24:21 max batch shift,
    // 30:25 max IMS multiplier.
    assert_eq!(GenCap(0x0000_6000).evl_support(), 3);
    assert_eq!(GenCap(0x0000_2000).evl_entry_size(), Some(64));
    assert_eq!(GenCap(0x0000_4000).evl_entry_size(), Some(128));
    assert_eq!(GenCap(0x0000_6000).evl_entry_size(), Some(256));
    assert_eq!(GenCap(0x001F_0000).max_xfer_shift(), 31);
    assert_eq!(GenCap(0x0020_0000).max_xfer_shift(), 0);
    assert_eq!(GenCap(0x01E0_0000).max_batch_shift(), 15);
    assert_eq!(GenCap(0x7E00_0000).max_ims_mult(), 63);
    let spr = GenCap(0x40_915F_010F);
    assert_eq!(
        (
            spr.block_on_fault(),
            spr.overlapping_copy(),
            spr.cache_control_memory(),
            spr.cache_control_cache(),
            spr.cmd_cap(),
            spr.dest_readback(),
            spr.config_support()
        ),
        (true, true, true, true, false, true, true)
    );
    assert_eq!(spr.max_xfer_size(), 0x8000_0000);
    assert_eq!(spr.max_batch_size(), 1024);
    assert_eq!(spr.max_ims_mult(), 8);
}

/// A.5 WQCAP rows and the real SPR value 0x3F000000080080.
#[test]
fn a5_wqcap() {
    let w = WqCap(0x0FAB_1234);
    assert_eq!(w.total_wq_size(), 0x1234);
    assert_eq!(w.num_wqs(), 0xAB);
    assert_eq!(w.wqcfg_size(), 0xF);
    assert_eq!(WqCap(0).wqcfg_stride(), 32);
    assert_eq!(WqCap(0x0100_0000).wqcfg_stride(), 64);
    single_bits_u64(
        "WQCAP",
        &[
            (48, |v| WqCap(v).shared_mode()),
            (49, |v| WqCap(v).dedicated_mode()),
            (50, |v| WqCap(v).wq_ats_support()),
            (51, |v| WqCap(v).priority_support()),
            (52, |v| WqCap(v).occupancy_support()),
            (53, |v| WqCap(v).occupancy_int_support()),
            (54, |v| WqCap(v).op_config_support()),
            (55, |v| WqCap(v).wq_prs_support()),
        ],
    );
    let spr = WqCap(0x3F_0000_0008_0080);
    assert_eq!(
        (spr.total_wq_size(), spr.num_wqs(), spr.wqcfg_stride()),
        (128, 8, 32)
    );
}

/// A.5 GRPCAP and ENGCAP rows, real SPR values 0x36004 and 4.
#[test]
fn a5_grpcap_engcap() {
    let g = GrpCap(0xABCD);
    assert_eq!((g.num_groups(), g.total_rdbufs()), (0xCD, 0xAB));
    single_bits_u64(
        "GRPCAP",
        &[
            (16, |v| GrpCap(v).rdbuf_ctrl()),
            (17, |v| GrpCap(v).rdbuf_limit()),
            (18, |v| GrpCap(v).progress_limit()),
        ],
    );
    let spr = GrpCap(0x36004);
    assert_eq!((spr.num_groups(), spr.total_rdbufs()), (4, 96));
    assert!(spr.rdbuf_ctrl() && spr.rdbuf_limit() && !spr.progress_limit());
    assert_eq!(EngCap(4).num_engines(), 4);
    // DSA 2.0 bit positions 15:8 / 23:16 are [Q] only.
    let e = EngCap(0x00C0_B0A0);
    assert_eq!(
        (
            e.num_engines(),
            e.max_descs_in_progress(),
            e.max_batches_in_progress()
        ),
        (0xA0, 0xB0, 0xC0)
    );
}

/// A.5 OPCAP: bit n = opcode n; SPR opcap[0] 0x1003F03FF = 0x00–0x09, 0x10–0x15, 0x20.
#[test]
fn a5_opcap() {
    let spr = OpCap([0x1_003F_03FF, 0, 0, 0]);
    let want: [u8; 17] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x10, 0x11, 0x12, 0x13, 0x14,
        0x15, 0x20,
    ];
    for op in 0..=255u8 {
        assert_eq!(spr.supports(op), want.contains(&op), "opcode {op:#04x}");
    }
    assert!(OpCap([0, 1, 0, 0]).supports(64));
    assert!(OpCap([0, 0, 0, 0x8000_0000_0000_0000]).supports(255));
}

/// A.5 TABLE_OFFSET rows (× 0x100).
#[test]
fn a5_table_offset() {
    let t = TableOffset([0x4444_3333_2222_1111, 0x0000_0000_6666_5555]);
    assert_eq!(t.grpcfg(), 0x1111);
    assert_eq!(t.wqcfg(), 0x2222);
    assert_eq!(t.msix_perm(), 0x3333);
    assert_eq!(t.ims(), 0x4444);
    assert_eq!(t.perfmon(), 0x5555);
    assert_eq!(t.inter_domain(), 0x6666); // DSA 2.0, [Q]
    assert_eq!(t.grpcfg_offset(), 0x11_1100);
    assert_eq!(t.ims_offset(), 0x44_4400);
    assert_eq!(
        TableOffset::new(3, 4, 2, 0, 0x10).raw(),
        [0x0000_0002_0004_0003, 0x0000_0000_0000_0010]
    );
}

/// A.5 GENCFG, GENCTRL, GENSTS, INTCAUSE.
#[test]
fn a5_gencfg_genctrl_gensts_intcause() {
    let g = GenCfg(0x0000_30FF);
    assert_eq!(g.rdbuf_limit(), 0xFF);
    assert!(g.user_int_en() && g.evl_en());
    assert!(!GenCfg(0xFFFF_CF00).user_int_en() && !GenCfg(0xFFFF_CF00).evl_en());
    assert_eq!(GenCtrl::SOFTWARE_ERROR_INT.bits(), 0x1);
    assert_eq!(GenCtrl::HALT_INT.bits(), 0x2);
    assert_eq!(GenCtrl::EVENT_LOG_INT.bits(), 0x4);
    let states = [
        (0, DeviceState::Disabled),
        (1, DeviceState::Enabled),
        (2, DeviceState::Drain),
        (3, DeviceState::Halted),
    ];
    for (v, s) in states {
        assert_eq!(GenSts(v).state(), s);
        assert_eq!(s as u32, v);
    }
    let resets = [
        (0x0, ResetType::Software),
        (0x4, ResetType::Flr),
        (0x8, ResetType::Warm),
        (0xC, ResetType::Cold),
    ];
    for (v, r) in resets {
        assert_eq!(GenSts(v | 3).reset_type(), r);
    }
    let causes = [
        (IntCause::SOFTWARE_ERROR, 0x0000_0001),
        (IntCause::COMMAND_COMPLETED, 0x0000_0002),
        (IntCause::WQ_OCCUPANCY, 0x0000_0004),
        (IntCause::PERFMON_OVERFLOW, 0x0000_0008),
        (IntCause::HALT, 0x0000_0010),
        (IntCause::EVENT_LOG, 0x0000_0020),
        (IntCause::HANDLES_REVOKED, 0x8000_0000),
    ];
    for (c, v) in causes {
        assert_eq!(c.bits(), v, "{c:?}");
    }
    // 30:6 reserved: nothing named there.
    assert_eq!(IntCause::all().bits() & 0x7FFF_FFC0, 0);
}

/// A.5 CMD / CMDSTS / CMDCAP, with the sheet's example register values.
#[test]
fn a5_cmd_cmdsts_cmdcap() {
    assert_eq!(Cmd::new(Command::ResetDevice, 0).raw(), 0x0050_0000);
    assert_eq!(Cmd::new(Command::EnableDevice, 0).raw(), 0x0010_0000);
    assert_eq!(Cmd::new(Command::EnableWq, 0).raw(), 0x0060_0000);
    assert_eq!(
        Cmd::new(Command::DisableWq, wq_bitmap_operand(0)).raw(),
        0x0070_0001
    );
    assert_eq!(Cmd::INT_REQ, 0x8000_0000);
    let c = Cmd(0x81AB_CDEF);
    assert_eq!((c.operand(), c.code(), c.int_req()), (0xB_CDEF, 0x1A, true));
    assert_eq!(Cmd::new(Command::EnableWq, 0xFFF_FFFF).raw(), 0x006F_FFFF);
    let s = CmdSts(0x8012_3456);
    assert_eq!(
        (s.error_code(), s.result(), s.active()),
        (0x56, 0x1234, true)
    );
    assert_eq!(CmdSts::ACTIVE, 0x8000_0000);
    // [V]: 0x1FFE = commands 1..12.
    let all = CmdCap(0x1FFE);
    for c in Command::ALL {
        assert_eq!(all.supports(c), c.code() <= 12, "{c:?}");
    }
}

/// A.5 SWERR: every row, ACK = 0x3, SWERR-only codes 0x51 / 0x52.
#[test]
fn a5_swerr() {
    type SwErrBit = fn(SwErr) -> bool;
    let bits: [(u32, SwErrBit); 7] = [
        (0, SwErr::valid),
        (1, SwErr::overflow),
        (2, SwErr::desc_valid),
        (3, SwErr::wq_index_valid),
        (4, SwErr::batch),
        (5, SwErr::fault_write),
        (6, SwErr::privileged),
    ];
    for (bit, get) in bits {
        assert!(get(SwErr([1 << bit, 0, 0, 0])), "bit {bit}");
        assert!(!get(SwErr([!(1u64 << bit), !0, !0, !0])), "bit {bit}");
    }
    let s = SwErr([
        0x0FED_CBAB_0022_1100,
        0xCAFE_F00D_0000_0777,
        0x1234_5678_9ABC_DEF0,
        0,
    ]);
    assert_eq!(s.error_code(), 0x11);
    assert_eq!(s.wq_index(), 0x22);
    assert_eq!(s.operation(), 0xAB);
    assert_eq!(s.pasid(), 0xFEDCB);
    assert_eq!(s.batch_index(), 0x0777);
    assert_eq!(s.invalid_flags(), 0xCAFE_F00D);
    assert_eq!(s.fault_addr(), 0x1234_5678_9ABC_DEF0);
    assert_eq!(SwErr::ACK, 0x3);
    assert_eq!(SwErrOnlyCode::PciConfig as u8, 0x51);
    assert_eq!(SwErrOnlyCode::CommandWhileActive as u8, 0x52);
    assert_eq!(SwErr::new(0x52).raw(), [0x5201, 0, 0, 0]);
}

/// A.5 EVLCFG / EVLSTATUS (DSA 2.0) and the perfmon block.
#[test]
fn a5_evl_and_perfmon() {
    let c = EvlCfg([0xABCD_E000 | 0x3, 0x0000_000F_FFFF_FFFF]);
    assert!(c.pasid_en() && c.privileged());
    assert_eq!(c.base(), 0xABCD_E000);
    assert_eq!((c.size(), c.pasid()), (0xFFFF, 0xF_FFFF));
    let s = EvlStatus(0x4000_BBBB_0000_AAAA);
    assert_eq!(
        (s.head(), s.tail(), s.int_pending()),
        (0xAAAA, 0xBBBB, true)
    );
    let rows = [
        (perfmon::PERFCAP, 0x00),
        (perfmon::PERFRST, 0x10),
        (perfmon::PERFFRZ, 0x20),
        (perfmon::OVFSTATUS, 0x30),
        (perfmon::EVNTCAP, 0x80),
        (perfmon::CNTRCFG, 0x100),
        (perfmon::CNTRDATA, 0x200),
        (perfmon::FLTCFG, 0x300),
        (perfmon::CNTRCAP, 0x800),
    ];
    for (got, want) in rows {
        assert_eq!(got, want);
    }
    // PERFCAP: 5:0 counters, 15:8 width, 19:16 event categories, 35:20 global categories,
    // 43:36 filters, 52..55 caps/writable/freeze/overflow-int.
    let p = PerfCap(0x00F0_0ABC_DEF5_3021);
    assert_eq!(p.num_counters(), 0x21);
    assert_eq!(p.counter_width(), 0x30);
    assert_eq!(p.event_categories(), 0x5);
    assert_eq!(p.global_event_categories(), 0xCDEF);
    assert_eq!(p.filters(), 0xAB);
    assert!(p.counter_caps() && p.writable_counters() && p.counter_freeze());
    assert!(p.overflow_interrupt());
}

/// A.6 WQCFG: address rule, every dword/bit row, the real SPR WQ0 dump.
#[test]
fn a6_wqcfg() {
    assert_eq!(WQCFG_DWORDS, 16);
    assert_eq!(WQCFG_STATUS_DWORD, 6);
    let spr = TableOffset::new(3, 4, 2, 0, 0x10);
    // base + n × stride + 4 × d.
    assert_eq!(wqcfg_dword_offset(spr, WqCap(0), 3, 2), 0x400 + 3 * 32 + 8);
    assert_eq!(
        wqcfg_dword_offset(spr, WqCap(0x0100_0000), 3, 9),
        0x400 + 3 * 64 + 36
    );
    let z = WqConfig::new();
    let rows: [(usize, u32, WqConfig); 19] = [
        (0, 0x0000_FFFF, z.with_wq_size(0xFFFF)),
        (1, 0x0000_FFFF, z.with_wq_threshold(0xFFFF)),
        (2, 0x0000_0001, z.with_dedicated(true)),
        (2, 0x0000_0002, z.with_block_on_fault(true)),
        (2, 0x0000_0004, z.with_ats_disable(true)),
        (2, 0x0000_0008, z.with_prs_disable(true)),
        (2, 0x0000_00F0, z.with_priority(15)),
        (2, 0x0FFF_FF00, z.with_pasid(0xF_FFFF)),
        (2, 0x1000_0000, z.with_pasid_en(true)),
        (2, 0x2000_0000, z.with_privileged(true)),
        (3, 0x0000_001F, z.with_max_xfer_shift(31)),
        (3, 0x0000_01E0, z.with_max_batch_shift(15)),
        (4, 0x0000_FFFF, z.with_occupancy_int_handle(0xFFFF)),
        (4, 0x0001_0000, z.with_occupancy_int_ims(true)),
        (5, 0x0000_FFFF, z.with_occupancy_limit_value(0xFFFF)),
        (5, 0x0001_0000, z.with_occupancy_int_en(true)),
        (6, 0x0000_FFFF, z.with_occupancy(0xFFFF)),
        (6, 0x0001_0000, z.with_occupancy_int_occurred(true)),
        (6, 0x2000_0000, z.with_mode_support(true)),
    ];
    for (dword, value, cfg) in rows {
        let mut want = [0u32; 16];
        want[dword] = value;
        assert_eq!(cfg.dwords(), want, "dword {dword} value {value:#x}");
    }
    for (raw, state) in [
        (0x0000_0000u32, WqState::Disabled),
        (0x4000_0000, WqState::Enabled),
        (0x8000_0000, WqState::Busy), // [S, Q]
    ] {
        assert_eq!(z.with_dword(6, raw).state(), state);
        assert_eq!(z.with_state(state).dword(6), raw);
    }
    // Op-config bitmap in dwords 8..15: opcode n → dword 8 + n / 32, bit n % 32.
    assert_eq!(
        z.with_op_allowed(0x03).with_op_allowed(0x01).dword(8),
        0x0000_000A
    );
    assert_eq!(z.with_op_allowed(0x20).dword(9), 0x0000_0001);
    // Real SPR WQ0: dword0 0x10, dword2 0x10000011, dword3 0x15F, dword6 0x40000000.
    let c = WqConfig::from_dwords([
        0x10,
        0,
        0x1000_0011,
        0x15F,
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
    assert!(c.dedicated() && c.pasid_en() && !c.privileged());
    assert_eq!((c.priority(), c.pasid()), (1, 0));
    assert_eq!((c.max_xfer_shift(), c.max_batch_shift()), (31, 10));
    assert_eq!(c.state(), WqState::Enabled);
}

/// A.7 GRPCFG: 64-byte entries, WQ bitmap at 0, engines at 32, flags at 40; every flag row;
/// the 0x9 default.
#[test]
fn a7_grpcfg() {
    assert_eq!(
        (GRPCFG_STRIDE, GRPCFG_WQS, GRPCFG_ENGINES, GRPCFG_FLAGS),
        (64, 0, 32, 40)
    );
    let spr = TableOffset::new(3, 4, 2, 0, 0x10);
    assert_eq!(grpcfg_byte_offset(spr, 2, 40), 0x300 + 128 + 40);
    let g = GroupConfig::new()
        .with_wq(130)
        .with_engine(63)
        .with_flags(GroupFlags(0x9));
    let b = g.as_bytes();
    assert_eq!(b.len(), 64);
    // WQ 130 → qword 2 bit 2 → byte 16, bit 2.
    let mut want = [0u8; 64];
    want[16] = 0x04;
    want[39] = 0x80; // engine 63
    want[40] = 0x09;
    assert_eq!(b, &want[..]);
    let rows: [(GroupFlags, u64); 7] = [
        (GroupFlags(0).with_tc_a(7), 0x0000_0000_0000_0007),
        (GroupFlags(0).with_tc_b(7), 0x0000_0000_0000_0038),
        (
            GroupFlags(0).with_use_rdbuf_limit(true),
            0x0000_0000_0000_0080,
        ),
        (
            GroupFlags(0).with_rdbufs_reserved(0xFF),
            0x0000_0000_0000_FF00,
        ),
        (
            GroupFlags(0).with_rdbufs_allowed(0xFF),
            0x0000_0000_0FF0_0000,
        ),
        (
            GroupFlags(0).with_desc_progress_limit(3),
            0x0000_0003_0000_0000,
        ),
        (
            GroupFlags(0).with_batch_progress_limit(3),
            0x0000_0030_0000_0000,
        ),
    ];
    for (f, v) in rows {
        assert_eq!(f.raw(), v);
    }
    assert_eq!(GroupFlags::DEFAULT_V1.raw(), 0x9);
    assert!(Version(0x200).default_tc_is_1_1() && !Version(0x201).default_tc_is_1_1());
}

/// A.8 administrative commands: codes and operand encodings.
#[test]
fn a8_commands() {
    let rows: [(Command, u8); 17] = [
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
        (Command::RequestInterDomainHandle, 15),       // [Q]
        (Command::ReleaseInterDomainHandle, 16),       // [Q]
        (Command::InvalidateSubmitterBitmapCache, 17), // [Q]
    ];
    for (c, code) in rows {
        assert_eq!(c as u8, code, "{c:?}");
        assert_eq!(Command::from_raw(code), Ok(c));
    }
    // DISABLE/DRAIN/ABORT/RESET_WQ: bits 15:0 bitmap within a block of 16, 19:16 block.
    assert_eq!(wq_bitmap_operand(0), 0x0_0001);
    assert_eq!(wq_bitmap_operand(15), 0x0_8000);
    assert_eq!(wq_bitmap_operand(16), 0x1_0001);
    assert_eq!(wq_bitmap_operand(255), 0xF_8000);
    // REQUEST/RELEASE_INT_HANDLE: bits 15:0 index/handle, bit 16 IMS.
    assert_eq!(int_handle_operand(0xFFFF, false), 0x0_FFFF);
    assert_eq!(int_handle_operand(1, true), 0x1_0001);
}

/// A.8 CMDSTS error codes, every row; nothing else decodes.
#[test]
fn a8_cmdsts_error_codes() {
    let rows: [(CmdError, u8); 26] = [
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
    for (e, code) in rows {
        assert_eq!(e as u8, code, "{e:?}");
    }
    for code in 0..=255u8 {
        let listed = rows.iter().any(|(_, c)| *c == code);
        assert_eq!(CmdError::from_raw(code).is_ok(), listed, "{code:#04x}");
    }
}

/// A.9 descriptor layout, byte by byte, through a builder with every common field set.
#[test]
fn a9_descriptor_layout() {
    assert_eq!(DESCRIPTOR_SIZE, 64);
    let d = MemMove::new(0x1817_1615_1413_1211, 0x201F_1E1D_1C1B_1A19, 0x2423_2221)
        .completion(0x100F_0E0D_0C0B_0A00)
        .interrupt(0x2625)
        .pasid(0x3_0201, true)
        .build();
    let mut want = [0u8; 64];
    want[0..4].copy_from_slice(&[0x01, 0x02, 0x03, 0x80]); // PASID 19:0, priv bit 31
    want[4..8].copy_from_slice(&[0x1C, 0x00, 0x00, 0x03]); // CRAV|RCR|RCI, opcode MEMMOVE
    want[8..16].copy_from_slice(&[0x00, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10]);
    want[16..24].copy_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
    want[24..32].copy_from_slice(&[0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]);
    want[32..36].copy_from_slice(&[0x21, 0x22, 0x23, 0x24]);
    want[36..38].copy_from_slice(&[0x25, 0x26]);
    assert_eq!(d.as_bytes(), want);
    // Reserved bits 30:20 of dword 0.
    let r = Descriptor::from_bytes(&{
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&[0x00, 0x00, 0xF0, 0x7F]);
        b
    });
    assert_eq!(
        (r.reserved_dword0(), r.pasid(), r.privileged()),
        (0x7FF, 0, false)
    );
    assert_eq!(BATCH_MIN_COUNT, 2);
    assert_eq!(BATCH_LIST_ALIGN, 64);
}

/// A.9 operation-specific area offsets, every row.
#[test]
fn a9_operation_specific_offsets() {
    let rows: [(&str, usize, usize); 20] = [
        ("compare expected result", dop::EXPECTED_RESULT, 40),
        ("create delta record address", dop::DELTA_ADDR, 40),
        ("create delta max size", dop::DELTA_MAX_SIZE, 48),
        ("create delta expected mask", dop::DELTA_EXPECTED_MASK, 56),
        ("apply delta size", dop::DELTA_SIZE, 40),
        ("dualcast dest2", dop::DEST2, 40),
        ("crc seed", dop::CRC_SEED, 40),
        ("crc seed address", dop::CRC_SEED_ADDR, 48),
        ("fill pattern upper", dop::FILL_PATTERN_HI, 40),
        ("translation fetch stride", dop::REGION_STRIDE, 48),
        ("dif src flags", dop::SRC_DIF_FLAGS, 40),
        ("dif dst flags", dop::DST_DIF_FLAGS, 41),
        ("dif flags", dop::DIF_FLAGS, 42),
        ("dif check ref tag seed", dop::CHK_REF_TAG_SEED, 48),
        ("dif check app mask", dop::CHK_APP_TAG_MASK, 52),
        ("dif check app seed", dop::CHK_APP_TAG_SEED, 54),
        ("dif insert ref tag seed", dop::INS_REF_TAG_SEED, 56),
        ("dif insert app mask", dop::INS_APP_TAG_MASK, 60),
        ("dif insert app seed", dop::INS_APP_TAG_SEED, 62),
        ("dif update dst app tag", dop::INS_APP_TAG_SEED, 62),
    ];
    for (name, got, want) in rows {
        assert_eq!(got, want, "{name}");
    }
    // Byte-level: dualcast dest2 at 40..48, CRC seed at 40..44, seed address at 48..56,
    // compare expected result at 40.
    let d = Dualcast::new(0, 0, 0x0807_0605_0403_0201, 8)
        .build()
        .as_bytes();
    assert_eq!(&d[40..48], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let c = CrcGen::new(0, 8)
        .seed(0xDDCC_BBAA)
        .seed_from(0x1122_3344_5566_7788)
        .build();
    let c = c.as_bytes();
    assert_eq!(&c[40..44], &[0xAA, 0xBB, 0xCC, 0xDD]);
    assert_eq!(
        &c[48..56],
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    assert_eq!(c[6], 0x01, "flag bit 16 read seed from memory");
    let e = Compare::new(0, 0, 8).expect(1).build().as_bytes();
    assert_eq!(
        (e[40], e[4]),
        (1, 0x80),
        "expected result, check-result flag bit 7"
    );
}

/// A.9 DIF flag bytes.
#[test]
fn a9_dif_flags() {
    let sizes = [(0u8, 512u32), (1, 520), (2, 4096), (3, 4104)];
    for (code, bytes) in sizes {
        assert_eq!(DifBlockSize::from_flags(code).bytes(), bytes);
    }
    assert_eq!(DIF_INVERT_CRC_SEED, 0x04);
    assert_eq!(DIF_INVERT_CRC_RESULT, 0x08);
    let src = [
        (SrcDifFlags::REF_TAG_TYPE, 0x80u8),
        (SrcDifFlags::REF_TAG_CHECK_DISABLE, 0x40),
        (SrcDifFlags::GUARD_CHECK_DISABLE, 0x20),
        (SrcDifFlags::APP_TAG_TYPE, 0x10),
        (SrcDifFlags::APP_AND_REF_ALL_F_DETECT, 0x08),
        (SrcDifFlags::APP_TAG_ALL_F_DETECT, 0x04),
        (SrcDifFlags::ALL_F_DETECT, 0x02),
        (SrcDifFlags::ALL_F_DETECT_ERROR, 0x01),
    ];
    for (f, m) in src {
        assert_eq!(f.bits(), m, "{f:?}");
    }
}

/// A.10 descriptor flags, every row; bit 6 and 23:22 reserved.
#[test]
fn a10_descriptor_flags() {
    let rows: [(DescriptorFlags, u32); 21] = [
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
    let mut union = 0;
    for (f, m) in rows {
        assert_eq!(f.bits(), m, "{f:?}");
        union |= m;
    }
    assert_eq!(DescriptorFlags::all().bits(), union);
    assert_eq!(union & 0xC0_0040, 0, "bit 6 and bits 23:22 are reserved");
    // CRAV = 1, RCR = 0: record only on failure.
    let d = Noop::new().completion_on_error(0x40).build();
    assert_eq!(d.as_bytes()[4], 0x04);
}

/// A.11 DSA and IAA opcodes, every row; nothing else decodes.
#[test]
fn a11_opcodes() {
    let dsa: [(Opcode, u8); 19] = [
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
        (Opcode::TranslationFetch, 0x0A),
        (Opcode::CrcGen, 0x10),
        (Opcode::CopyCrc, 0x11),
        (Opcode::DifCheck, 0x12),
        (Opcode::DifInsert, 0x13),
        (Opcode::DifStrip, 0x14),
        (Opcode::DifUpdate, 0x15),
        (Opcode::DixGenerate, 0x17),
        (Opcode::CacheFlush, 0x20),
    ];
    for code in 0..=255u8 {
        let row = dsa.iter().find(|(_, c)| *c == code);
        assert_eq!(
            Opcode::from_raw(code).ok(),
            row.map(|(o, _)| *o),
            "{code:#04x}"
        );
    }
    let iaa: [(IaaOpcode, u8); 17] = [
        (IaaOpcode::Noop, 0x00),
        (IaaOpcode::Drain, 0x02),
        (IaaOpcode::MemMove, 0x03),
        (IaaOpcode::Decompress, 0x42),
        (IaaOpcode::Compress, 0x43),
        (IaaOpcode::Crc64, 0x44),
        (IaaOpcode::ZeroDecompress32, 0x48),
        (IaaOpcode::ZeroDecompress16, 0x49),
        (IaaOpcode::ZeroCompress32, 0x4C),
        (IaaOpcode::ZeroCompress16, 0x4D),
        (IaaOpcode::Scan, 0x50),
        (IaaOpcode::SetMembership, 0x51),
        (IaaOpcode::Extract, 0x52),
        (IaaOpcode::Select, 0x53),
        (IaaOpcode::RleBurst, 0x54),
        (IaaOpcode::FindUnique, 0x55),
        (IaaOpcode::Expand, 0x56),
    ];
    for code in 0..=255u8 {
        let row = iaa.iter().find(|(_, c)| *c == code);
        assert_eq!(
            IaaOpcode::from_raw(code).ok(),
            row.map(|(o, _)| *o),
            "{code:#04x}"
        );
    }
    // Builders put the opcode in byte 7.
    let builders: [(Descriptor, u8); 11] = [
        (Noop::new().build(), 0x00),
        (Batch::new(0, 2).build(), 0x01),
        (Drain::new().build(), 0x02),
        (MemMove::new(0, 0, 1).build(), 0x03),
        (Fill::new(0, 0, 1).build(), 0x04),
        (Compare::new(0, 0, 1).build(), 0x05),
        (ComparePattern::new(0, 0, 1).build(), 0x06),
        (Dualcast::new(0, 0, 0, 1).build(), 0x09),
        (CrcGen::new(0, 1).build(), 0x10),
        (CopyCrc::new(0, 0, 1).build(), 0x11),
        (CacheFlush::new(0, 1).build(), 0x20),
    ];
    for (d, op) in builders {
        assert_eq!(d.as_bytes()[7], op);
    }
}

/// A.12 completion record layout, byte by byte.
#[test]
fn a12_completion_record_layout() {
    assert_eq!(COMPLETION_RECORD_SIZE, 32);
    assert_eq!(IAA_COMPLETION_RECORD_SIZE, 64);
    let b: [u8; 32] = [
        0x83, 0x01, 0x07, 0xEE, 0x44, 0x33, 0x22, 0x11, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
        0x01, 0xAA, 0xBB, 0xCC, 0xDD, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let r = CompletionRecord::from_bytes(&b);
    assert_eq!(r.status_byte().code(), 0x03);
    assert!(r.status_byte().write_fault());
    assert_eq!(r.result, 0x01);
    assert!(r.fault_info().address_masked());
    assert_eq!(r.fault_info().operand_id(), 3);
    assert_eq!(r.reserved, 0xEE);
    assert_eq!(r.bytes_completed.get(), 0x1122_3344);
    assert_eq!(r.fault_addr.get(), 0x0102_0304_0506_0708);
    assert_eq!(r.invalid_flags(), 0x00CC_BBAA);
    assert_eq!(r.crc32(), 0xDDCC_BBAA);
    assert_eq!(r.crc64(), 0x4433_2211_DDCC_BBAA);
    assert_eq!(r.delta_record_size(), 0xDDCC_BBAA);
    let rows = [
        (cr::INVALID_FLAGS, 16),
        (cr::DELTA_RECORD_SIZE, 16),
        (cr::CRC_VALUE, 16),
        (cr::DIF_CHK_REF_TAG, 16),
        (cr::DIF_CHK_APP_MASK, 20),
        (cr::DIF_CHK_APP_TAG, 22),
        (cr::DIF_INS_REF_TAG, 24),
        (cr::DIF_INS_APP_MASK, 28),
        (cr::DIF_INS_APP_TAG, 30),
        (cr::DIF_UPD_SRC_REF_TAG, 16),
        (cr::DIF_UPD_SRC_APP_MASK, 20),
        (cr::DIF_UPD_SRC_APP_TAG, 22),
        (cr::DIF_UPD_DST_REF_TAG, 24),
        (cr::DIF_UPD_DST_APP_MASK, 28),
        (cr::DIF_UPD_DST_APP_TAG, 30),
    ];
    for (got, want) in rows {
        assert_eq!(got, want);
    }
    assert_eq!(StatusByte::WRITE_FAULT, 0x80);
}

/// A.12 status codes, every row; nothing else decodes (0xFF is a software marker only).
#[test]
fn a12_status_codes() {
    let rows: [(CompletionStatus, u8); 31] = [
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
        (CompletionStatus::CompletionRecordFault, 0x1A),
        (CompletionStatus::CompletionRecordMisaligned, 0x1B),
        (CompletionStatus::AddressMisaligned, 0x1C),
        (CompletionStatus::PrivilegeError, 0x1D),
        (CompletionStatus::TrafficClassError, 0x1E),
        (CompletionStatus::DrainReadbackFault, 0x1F),
        (CompletionStatus::HardwareError, 0x20),
        (CompletionStatus::ReadbackHardwareError, 0x21),
        (CompletionStatus::TranslationFailure, 0x22),
        (CompletionStatus::DrainEventLog, 0x26),
        (CompletionStatus::BatchEventLog, 0x27),
    ];
    for code in 0..=255u8 {
        let row = rows.iter().find(|(_, c)| *c == code);
        assert_eq!(
            CompletionStatus::from_raw(code).ok(),
            row.map(|(s, _)| *s),
            "{code:#04x}"
        );
    }
    // Status byte: code in 6:0, write-fault in bit 7.
    assert_eq!(StatusByte(0x81).status(), Ok(CompletionStatus::Success));
    assert_eq!(
        StatusByte::new(CompletionStatus::PageFaultNoBof, true).0,
        0x83
    );
}

/// A.14 minimal bring-up: the literal register values of each step.
#[test]
fn a14_bringup_values() {
    // Step 3 RESET_DEVICE, step 9 ENABLE_DEVICE, step 10 ENABLE_WQ 0, step 13 DISABLE_WQ 0.
    assert_eq!(Cmd::new(Command::ResetDevice, 0).raw(), 0x0050_0000);
    assert_eq!(Cmd::new(Command::EnableDevice, 0).raw(), 0x0010_0000);
    assert_eq!(Cmd::new(Command::EnableWq, 0).raw(), 0x0060_0000);
    assert_eq!(
        Cmd::new(Command::DisableWq, wq_bitmap_operand(0)).raw(),
        0x0070_0001
    );
    // Step 11: (13 << 20) | 1.
    assert_eq!(
        Cmd::new(Command::RequestIntHandle, int_handle_operand(1, false)).raw(),
        0x00D0_0001
    );
    // Step 6: dword2 = 0x11 (dedicated, priority 1), + bit 2 ATS disable; dword3 31 | 10 << 5.
    let c = WqConfig::new().with_dedicated(true).with_priority(1);
    assert_eq!(c.dword(2), 0x11);
    assert_eq!(c.with_ats_disable(true).dword(2), 0x15);
    assert_eq!(
        WqConfig::new()
            .with_max_xfer_shift(31)
            .with_max_batch_shift(10)
            .dword(3),
        0x15F
    );
    // Step 7: flags 0x9 (TC-A = TC-B = 1).
    assert_eq!(GroupFlags(0).with_tc_a(1).with_tc_b(1).raw(), 0x9);
    // Step 8: GENCTRL = 0x3.
    assert_eq!(
        (GenCtrl::SOFTWARE_ERROR_INT | GenCtrl::HALT_INT).bits(),
        0x3
    );
    // Step 12: priv = 1, opcode 0x03, flags CRAV|RCR = 0x0C, + RCI 0x10, int_handle 1.
    let d = MemMove::new(0x1000, 0x2000, 8).completion(0x3000).build();
    assert_eq!(&d.as_bytes()[0..8], &[0, 0, 0, 0x80, 0x0C, 0, 0, 0x03]);
    let d = MemMove::new(0x1000, 0x2000, 8)
        .completion(0x3000)
        .interrupt(1)
        .build();
    assert_eq!(&d.as_bytes()[4..8], &[0x1C, 0, 0, 0x03]);
    assert_eq!(&d.as_bytes()[36..38], &[1, 0]);
}

// =============================================================================================
// Part B — CBDMA
// =============================================================================================

/// B.1 PCI ids, every row, as literal lists; each one is in `pci::KNOWN_DEVICES` with the
/// right family, and no SPR CBDMA id exists.
#[test]
fn b1_pci_ids() {
    use ioat::ids;
    assert_eq!(ids::VENDOR_INTEL, 0x8086);
    let legacy: [u16; 4] = [0x1A38, 0x360B, 0x65FF, 0x402F];
    let v3: [(&str, &[u16]); 10] = [
        (
            "TBG",
            &[
                0x3430, 0x3431, 0x3432, 0x3433, 0x3429, 0x342A, 0x342B, 0x342C,
            ],
        ),
        (
            "JSF",
            &[
                0x3710, 0x3711, 0x3712, 0x3713, 0x3714, 0x3715, 0x3716, 0x3717, 0x3718, 0x3719,
            ],
        ),
        (
            "SNB-EP",
            &[
                0x3C20, 0x3C21, 0x3C22, 0x3C23, 0x3C24, 0x3C25, 0x3C26, 0x3C27, 0x3C2E, 0x3C2F,
            ],
        ),
        (
            "IVB-EP",
            &[
                0x0E20, 0x0E21, 0x0E22, 0x0E23, 0x0E24, 0x0E25, 0x0E26, 0x0E27, 0x0E2E, 0x0E2F,
            ],
        ),
        (
            "HSW-EP",
            &[
                0x2F20, 0x2F21, 0x2F22, 0x2F23, 0x2F24, 0x2F25, 0x2F26, 0x2F27, 0x2F2E, 0x2F2F,
            ],
        ),
        (
            "BDX-EP",
            &[
                0x6F20, 0x6F21, 0x6F22, 0x6F23, 0x6F24, 0x6F25, 0x6F26, 0x6F27, 0x6F2E, 0x6F2F,
            ],
        ),
        ("BWD", &[0x0C50, 0x0C51, 0x0C52, 0x0C53]),
        ("BDX-DE", &[0x6F50, 0x6F51, 0x6F52, 0x6F53]),
        ("SKX", &[0x2021]),
        ("ICX", &[0x0B00]),
    ];
    assert_eq!(ids::LEGACY, legacy);
    assert_eq!(ids::TBG[..], *v3[0].1);
    assert_eq!(ids::JSF[..], *v3[1].1);
    assert_eq!(ids::SNB_EP[..], *v3[2].1);
    assert_eq!(ids::IVB_EP[..], *v3[3].1);
    assert_eq!(ids::HSW_EP[..], *v3[4].1);
    assert_eq!(ids::BDX_EP[..], *v3[5].1);
    assert_eq!(ids::BWD[..], *v3[6].1);
    assert_eq!(ids::BDX_DE[..], *v3[7].1);
    assert_eq!(ids::SKX, 0x2021);
    assert_eq!(ids::ICX, 0x0B00);
    assert_eq!(pci::DEVICE_IOAT_SKX, 0x2021);
    assert_eq!(pci::DEVICE_IOAT_ICX, 0x0B00);
    for id in legacy {
        let k = pci::supported_device(0x8086, id).expect("legacy id known");
        assert_eq!(k.family, DeviceFamily::IoatLegacy, "{id:#06x}");
        assert_eq!(
            ioat::Platform::from_device_id(id),
            Some(ioat::Platform::Legacy)
        );
    }
    let mut n = 0;
    for (name, list) in v3 {
        for &id in list {
            let k = pci::supported_device(0x8086, id).expect("v3 id known");
            assert_eq!(k.family, DeviceFamily::Ioat, "{name} {id:#06x}");
            let p = ioat::Platform::from_device_id(id).expect("platform");
            assert!(p.is_v3(), "{name} {id:#06x}");
            n += 1;
        }
    }
    assert_eq!(n, 8 + 10 + 10 + 10 + 10 + 10 + 4 + 4 + 1 + 1);
    let ioat_in_table = pci::KNOWN_DEVICES
        .iter()
        .filter(|d| matches!(d.family, DeviceFamily::Ioat | DeviceFamily::IoatLegacy))
        .count();
    assert_eq!(ioat_in_table, n + legacy.len());
    assert_eq!(
        ioat::Platform::from_device_id(0x2021),
        Some(ioat::Platform::Skylake)
    );
    assert_eq!(
        ioat::Platform::from_device_id(0x0B00),
        Some(ioat::Platform::IceLake)
    );
    // CBVER ≥ 0x30 for today's driver.
    assert!(ioat::CbVer(0x30).is_v3() && !ioat::CbVer(0x2F).is_v3());
}

/// B.2 global registers: offsets, fields, INTRCTRL, CBVER, INTRDELAY, CSSTATUS,
/// DMACAPABILITY, channel blocks, BWD MSI-X.
#[test]
fn b2_global_registers() {
    let rows: [(&str, usize, usize); 12] = [
        ("CHANCNT", ioat::CHANCNT, 0x00),
        ("XFERCAP", ioat::XFERCAP, 0x01),
        ("GENCTRL", ioat::GENCTRL, 0x02),
        ("INTRCTRL", ioat::INTRCTRL, 0x03),
        ("ATTNSTATUS", ioat::ATTNSTATUS, 0x04),
        ("CBVER", ioat::CBVER, 0x08),
        ("PERPORTOFFSET", ioat::PERPORTOFFSET, 0x0A),
        ("INTRDELAY", ioat::INTRDELAY, 0x0C),
        ("CSSTATUS", ioat::CSSTATUS, 0x0E),
        ("DMACAPABILITY", ioat::DMACAPABILITY, 0x10),
        ("DCAOFFSET", ioat::DCAOFFSET, 0x14),
        ("CHWPREFLMT", ioat::CHWPREFLMT, 0x4C),
    ];
    for (name, got, want) in rows {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(ioat::ChanCnt(0xFF).count(), 0x1F);
    assert_eq!(ioat::XferCap(0xF4).log2(), 0x14);
    assert_eq!(
        ioat::XferCap(0).max_bytes(),
        0x8_0000_0000,
        "0 = 32 GB per Linux"
    );
    assert_eq!(ioat::GenCtrl::DEBUG_EN.bits(), 0x1);
    let intr = [
        (ioat::IntrCtrl::MASTER_INT_EN, 0x1u8),
        (ioat::IntrCtrl::INT_STATUS, 0x2),
        (ioat::IntrCtrl::INT, 0x4),
        (ioat::IntrCtrl::MSIX_VECTOR_CONTROL, 0x8),
    ];
    for (f, m) in intr {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    assert_eq!(ioat::IntrCtrl::LINUX_MSIX.bits(), 0x09);
    assert!(ioat::AttnStatus(0x0000_0004).channel(2));
    let v = ioat::CbVer(0x34);
    assert_eq!((v.major(), v.minor()), (3, 4));
    for (c, raw) in [
        (ioat::CbVer::V3_0, 0x30u8),
        (ioat::CbVer::V3_2, 0x32),
        (ioat::CbVer::V3_3, 0x33),
        (ioat::CbVer::V3_4, 0x34),
    ] {
        assert_eq!(c.0, raw);
    }
    let d = ioat::IntrDelay(0xFFFF);
    assert_eq!((d.delay_us(), d.coalesce_supported()), (0x3FFF, true));
    assert!(!ioat::IntrDelay(0x7FFF).coalesce_supported());
    let cs = [
        (ioat::CsStatus::DEGRADED, 0x1u16),
        (ioat::CsStatus::MMIO_RESTRICTED, 0x2),
        (ioat::CsStatus::MEMORY_BYPASS, 0x4),
        (ioat::CsStatus::ADDRESS_REMAP, 0x8),
    ];
    for (f, m) in cs {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    use ioat::DmaCapability as C;
    let caps = [
        (C::PAGE_BREAK, 0x0000_0001u32),
        (C::CRC, 0x0000_0002),
        (C::SKIP_MARKER, 0x0000_0004),
        (C::DCA, 0x0000_0010),
        (C::CRC_MOVE, 0x0000_0020),
        (C::FILL, 0x0000_0040),
        (C::APIC, 0x0000_0080),
        (C::XOR, 0x0000_0100),
        (C::PQ, 0x0000_0200),
        (C::DMA_DIF, 0x0000_0400),
        (C::DWBES, 0x0000_2000),
        (C::RAID16SS, 0x0002_0000),
        (C::DPS, 0x0080_0000),
    ];
    for (f, m) in caps {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    // Channel n at 0x80 × (n + 1).
    assert_eq!(
        [
            ioat::channel_base(0),
            ioat::channel_base(1),
            ioat::channel_base(2),
            ioat::channel_base(3)
        ],
        [0x80, 0x100, 0x180, 0x200]
    );
    assert_eq!(ioat::CHANNEL_MMIO_SIZE, 0x80);
    assert_eq!(ioat::LINUX_MAX_CHANNELS, 4);
    assert_eq!(ioat::CHWPREFLMT_LINUX_VALUE, 8);
    assert_eq!(
        (
            ioat::BWD_MSIX_TABLE_OFFSET,
            ioat::BWD_MSIX_ENTRY0_DATA_OFFSET,
            ioat::BWD_MSIX_PBA_OFFSET
        ),
        (0x1000, 0x1008, 0x1800)
    );
}

/// B.3 channel registers for v2/v3 and the v1 offsets; LTR values; config-space registers.
#[test]
fn b3_channel_registers_and_config_space() {
    use ioat::chan;
    let rows: [(&str, usize, usize); 15] = [
        ("CHANCTRL", chan::CHANCTRL, 0x00),
        ("DMA_COMP", chan::DMA_COMP, 0x02),
        ("CHANCMD", chan::CHANCMD, 0x04),
        ("DMACOUNT", chan::DMACOUNT, 0x06),
        ("CHANSTS", chan::CHANSTS, 0x08),
        ("CHAINADDR", chan::CHAINADDR, 0x10),
        ("CHANCMP", chan::CHANCMP, 0x18),
        ("CDAR", chan::CDAR, 0x20),
        ("CHANERR", chan::CHANERR, 0x28),
        ("CHANERR_MASK", chan::CHANERR_MASK, 0x2C),
        ("DCACTRL", chan::DCACTRL, 0x30),
        ("DRSCTL", chan::DRSCTL, 0xB6),
        ("LTR_SWSEL", chan::LTR_SWSEL, 0xBC),
        ("LTR_ACTIVE", chan::LTR_ACTIVE, 0xC0),
        ("LTR_IDLE", chan::LTR_IDLE, 0xC4),
    ];
    for (name, got, want) in rows {
        assert_eq!(got, want, "{name}");
    }
    // Split halves (Linux writes low then high).
    assert_eq!((chan::CHAINADDR_LOW, chan::CHAINADDR_HIGH), (0x10, 0x14));
    assert_eq!((chan::CHANCMP_LOW, chan::CHANCMP_HIGH), (0x18, 0x1C));
    assert_eq!((chan::CHANSTS_LOW, chan::CHANSTS_HIGH), (0x08, 0x0C));
    // I/OAT v1 offsets.
    assert_eq!(
        (chan::V1_CHANSTS, chan::V1_CHAINADDR, chan::V1_CHANCMD),
        (0x04, 0x0C, 0x14)
    );
    assert_eq!((chan::LTR_SWSEL_ACTIVE, chan::LTR_SWSEL_IDLE), (0, 1));
    assert_eq!(
        (chan::LTR_ACTIVE_LINUX_VALUE, chan::LTR_IDLE_LINUX_VALUE),
        (0x8800, 0x8A58)
    );
    // CHANCTRL.
    use ioat::ChanCtrl as Ctl;
    let ctl = [
        (Ctl::INT_REARM, 0x0001u16),
        (Ctl::ERR_COMPLETION_EN, 0x0004),
        (Ctl::ANY_ERR_ABORT_EN, 0x0008),
        (Ctl::ERR_INT_EN, 0x0010),
        (Ctl::DESCRIPTOR_ADDR_SNOOP, 0x0020),
        (Ctl::IN_USE, 0x0100),
        (Ctl::COMPL_DCA_EN, 0x0200),
    ];
    for (f, m) in ctl {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    assert_eq!(Ctl::RUN.bits(), 0x001D);
    assert_eq!(Ctl::PRIORITY_MASK, 0xF000);
    assert_eq!(Ctl::from_bits_retain(0x7000).priority(), 7);
    assert_eq!(ioat::DmaComp::V1.bits(), 0x1);
    assert_eq!(ioat::DmaComp::V2.bits(), 0x2);
    // CHANCMD.
    use ioat::ChanCmd as Cmd;
    let cmd = [
        (Cmd::START, 0x01u8),
        (Cmd::APPEND, 0x02),
        (Cmd::SUSPEND, 0x04),
        (Cmd::ABORT, 0x08),
        (Cmd::RESUME, 0x10),
        (Cmd::RESET, 0x20),
    ];
    for (f, m) in cmd {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    // CHANSTS: 63:6 address, 2:0 state, bit 3 unaffiliated, bit 4 soft error.
    use ioat::{ChanState as S, ChanSts};
    for (raw, state) in [
        (0u8, S::Active),
        (1, S::Done),
        (2, S::Suspended),
        (3, S::Halted),
        (4, S::Armed),
    ] {
        assert_eq!(ChanSts(u64::from(raw)).state(), Ok(state));
    }
    let s = ChanSts(0xFFFF_FFFF_FFFF_FFDB);
    assert_eq!(s.completed_address(), 0xFFFF_FFFF_FFFF_FFC0);
    assert_eq!(s.state_bits(), 3);
    assert!(s.unaffiliated_err() && s.soft_err());
    // DCACTRL, DRSCTL.
    assert_eq!(ioat::DcaCtrl::ANY_CPU.0, 0xFFFF_FFFF);
    assert_eq!(ioat::DcaCtrl(0x0001_ABCD).target_apic_id(), 0xABCD);
    assert!(ioat::DcaCtrl(0x0001_0000).completion_dca());
    let drs = ioat::DrsCtl(0x0309);
    assert_eq!(
        (drs.size_code(), drs.enabled(), drs.auto_wrap()),
        (9, true, true)
    );
    assert_eq!(drs.ring_bytes(), 0x20_0000);
    // Configuration space.
    assert_eq!(ioat::DMACTRL, 0x48);
    assert_eq!((ioat::DMACTRL_DMA_EN, ioat::DMACTRL_MSI_EN), (0x1, 0x2));
    assert_eq!(ioat::DMAUNCERRSTS, 0x148);
    assert_eq!(ioat::DMAUNCERRSTS_TBG0_ERRATA, 0x10);
    assert_eq!(ioat::CHANERR_INT, 0x180);
    assert_eq!(ioat::CHANERRMSK_INT, 0x184);
    assert_eq!(ioat::CHANERRMSK_INT_V3_0_LINUX, 0x3E07);
    assert_eq!(ioat::CHANERR_MASK_DWBES_LINUX, 0x0003_0000);
}

/// B.4 descriptor: layout byte by byte, control bits, opcodes, XOR/PQ layouts and fields.
#[test]
fn b4_descriptor() {
    assert_eq!(ioat::DESCRIPTOR_SIZE, 64);
    let d = ioat::Descriptor::fill(0x100F_0E0D_0C0B_0A09, 0x1817_1615_1413_1211, 0x0403_0201)
        .with_next(0x201F_1E1D_1C1B_1A19);
    let b = d.to_bytes();
    let mut want = [0u8; 64];
    want[0..4].copy_from_slice(&[0x01, 0x02, 0x03, 0x04]); // size
    want[4..8].copy_from_slice(&[0x00, 0x00, 0x00, 0x01]); // control: opcode 0x01 in 31:24
                                                           // Pattern 8..16, destination 16..24, next 24..32: byte i holds i + 1.
    for (i, w) in want.iter_mut().enumerate().take(32).skip(8) {
        *w = (i + 1) as u8;
    }
    assert_eq!(b, want);
    use ioat::DescFlags as F;
    let ctl = [
        (F::INT_EN, 0x001u32),
        (F::SRC_SNOOP_DIS, 0x002),
        (F::DEST_SNOOP_DIS, 0x004),
        (F::COMPL_WRITE, 0x008),
        (F::FENCE, 0x010),
        (F::NULL, 0x020),
        (F::SRC_PAGE_BREAK, 0x040),
        (F::DEST_PAGE_BREAK, 0x080),
        (F::BUNDLE, 0x100),
        (F::DEST_DCA, 0x200),
        (F::HINT, 0x400),
    ];
    for (f, m) in ctl {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    assert_eq!(ioat::DescControl::RESERVED_MASK, 0x00FF_F800);
    use ioat::Opcode as O;
    let ops = [
        (O::Copy, 0x00u8),
        (O::Fill, 0x01),
        (O::Xor, 0x87),
        (O::XorVal, 0x88),
        (O::Pq, 0x89),
        (O::PqVal, 0x8A),
        (O::PqUpdate, 0x8B),
        (O::Pq16, 0xA0),
        (O::PqVal16, 0xA1),
    ];
    for code in 0..=255u8 {
        let row = ops.iter().find(|(_, c)| *c == code);
        assert_eq!(O::try_from(code).ok(), row.map(|(o, _)| *o), "{code:#04x}");
    }
    // XOR/PQ control: 7:5 source count − 2, 11 P disable, 12 Q disable, 15 WB error status,
    // 16 prl, 23:16 PQ-update coefficient; PQ_VAL result bits 25, 26, 31.
    let c = ioat::DescControl(0x0001_98A0);
    assert_eq!(c.src_cnt_field(), 5);
    assert!(c.p_disable() && c.q_disable() && c.wb_err_status_en() && c.prl_en());
    assert_eq!(ioat::DescControl(0x00AB_0000).pq_update_coef(), 0xAB);
    assert_eq!(
        (
            ioat::PQ_VAL_P_MISMATCH,
            ioat::PQ_VAL_Q_MISMATCH,
            ioat::PQ_VAL_WB_VALID
        ),
        (0x0200_0000, 0x0400_0000, 0x8000_0000)
    );
    // XOR: src1 @8, dst @16, next @24, src2..5 @32..56; ext: src6..8 @0..16, next @24.
    let x = ioat::XorDescriptor {
        src1: 0xA1,
        dst: 0xD0,
        next: 0xEE,
        src2: 0xA2,
        src3: 0xA3,
        src4: 0xA4,
        src5: 0xA5,
        ..Default::default()
    };
    let xb = x.as_bytes();
    for (off, v) in [
        (8, 0xA1),
        (16, 0xD0),
        (24, 0xEE),
        (32, 0xA2),
        (40, 0xA3),
        (48, 0xA4),
        (56, 0xA5),
    ] {
        assert_eq!(xb[off], v, "XOR byte {off}");
    }
    let xe = ioat::XorExtDescriptor {
        src6: 0xA6,
        src7: 0xA7,
        src8: 0xA8,
        next: 0xEE,
        ..Default::default()
    };
    let xeb = xe.as_bytes();
    for (off, v) in [(0, 0xA6), (8, 0xA7), (16, 0xA8), (24, 0xEE)] {
        assert_eq!(xeb[off], v, "XOR ext byte {off}");
    }
    // PQ: P dst @16, next @24, src2 @32, src3/SED @40, coefficients @48..56, Q dst @56;
    // ext: src4..6 @0..16, next @24, src7..8 @32..40.
    let p = ioat::PqDescriptor {
        src1: 0xA1,
        p_dst: 0xB0,
        next: 0xEE,
        src2: 0xA2,
        src3_or_sed: 0xA3,
        coef: [1, 2, 3, 4, 5, 6, 7, 8],
        q_dst: 0xC0,
        ..Default::default()
    };
    let pb = p.as_bytes();
    for (off, v) in [
        (8, 0xA1),
        (16, 0xB0),
        (24, 0xEE),
        (32, 0xA2),
        (40, 0xA3),
        (48, 1),
        (55, 8),
        (56, 0xC0),
    ] {
        assert_eq!(pb[off], v, "PQ byte {off}");
    }
    let pe = ioat::PqExtDescriptor {
        src4: 0xA4,
        src5: 0xA5,
        src6: 0xA6,
        next: 0xEE,
        src7: 0xA7,
        src8: 0xA8,
        ..Default::default()
    };
    let peb = pe.as_bytes();
    for (off, v) in [
        (0, 0xA4),
        (8, 0xA5),
        (16, 0xA6),
        (24, 0xEE),
        (32, 0xA7),
        (40, 0xA8),
    ] {
        assert_eq!(peb[off], v, "PQ ext byte {off}");
    }
    // Super-extended descriptor: 128 bytes; packing beyond "coefficients 9–16 then sources
    // 3–16" is an inference [I] (modelling choice).
    assert_eq!(core::mem::size_of::<ioat::PqSuperExtDescriptor>(), 128);
}

/// B.5 ring / NULL descriptor / interrupts: NULL = bits 5 | 0 | 3, size 1 (SPDK 8), INTRCTRL
/// 0x09, CHANCTRL re-arm 0x1D, write-back = CHANSTS format.
#[test]
fn b5_null_descriptor_and_interrupts() {
    let n = ioat::Descriptor::null_interrupt();
    let b = n.to_bytes();
    assert_eq!(&b[0..8], &[0x01, 0, 0, 0, 0x29, 0, 0, 0x00]);
    assert!(b[8..24].iter().all(|&x| x == 0), "src = dst = 0");
    assert_eq!(ioat::Descriptor::NULL_SIZE, 1);
    assert_eq!(ioat::SPDK_NULL_SIZE, 8);
    assert_eq!(ioat::IntrCtrl::LINUX_MSIX.bits(), 0x09);
    assert_eq!(
        ioat::IntrCtrl::MSIX_VECTOR_CONTROL.bits(),
        0x08,
        "[T] writes only 0x08"
    );
    assert_eq!(ioat::ChanCtrl::RUN.bits(), 0x1D);
    // Write-back of a completed descriptor at 0x1000 in state IDLE.
    assert_eq!(ioat::ChanSts::new(0x1000, ioat::ChanState::Done).0, 0x1001);
    assert_eq!(
        ioat::ChanSts::new(0x1000, ioat::ChanState::Halted).0,
        0x1003
    );
}

/// B.6 CHANERR, every row; bits 28..31 unnamed.
#[test]
fn b6_chanerr() {
    use ioat::ChanErr as E;
    let rows = [
        (E::SRC_ADDR_ERR, 0x0000_0001u32),
        (E::DEST_ADDR_ERR, 0x0000_0002),
        (E::NEXT_ADDR_ERR, 0x0000_0004),
        (E::NEXT_DESC_ALIGN_ERR, 0x0000_0008),
        (E::CHAIN_ADDR_VALUE_ERR, 0x0000_0010),
        (E::CHANCMD_ERR, 0x0000_0020),
        (E::CHIPSET_UNCORRECTABLE_DATA_INTEGRITY_ERR, 0x0000_0040),
        (E::DMA_UNCORRECTABLE_DATA_INTEGRITY_ERR, 0x0000_0080),
        (E::READ_DATA_ERR, 0x0000_0100),
        (E::WRITE_DATA_ERR, 0x0000_0200),
        (E::CONTROL_ERR, 0x0000_0400),
        (E::LENGTH_ERR, 0x0000_0800),
        (E::COMPLETION_ADDR_ERR, 0x0000_1000),
        (E::INT_CONFIGURATION_ERR, 0x0000_2000),
        (E::SOFT_ERR, 0x0000_4000),
        (E::UNAFFILIATED_ERR, 0x0000_8000),
        (E::XOR_P_OR_CRC_ERR, 0x0001_0000),
        (E::XOR_Q_ERR, 0x0002_0000),
        (E::DESCRIPTOR_COUNT_ERR, 0x0004_0000),
        (E::DIF_ALL_F_DETECT_ERR, 0x0008_0000),
        (E::GUARD_TAG_ERR, 0x0010_0000),
        (E::APPLICATION_TAG_ERR, 0x0020_0000),
        (E::REFERENCE_TAG_ERR, 0x0040_0000),
        (E::BUNDLE_BIT_ERR, 0x0080_0000),
        (E::RESULT_DIF_ALL_F_DETECT_ERR, 0x0100_0000),
        (E::RESULT_GUARD_TAG_ERR, 0x0200_0000),
        (E::RESULT_APPLICATION_TAG_ERR, 0x0400_0000),
        (E::RESULT_REFERENCE_TAG_ERR, 0x0800_0000),
    ];
    for (f, m) in rows {
        assert_eq!(f.bits(), m, "{f:?}");
    }
    assert_eq!(E::all().bits(), 0x0FFF_FFFF);
    // Linux's names win over DPDK's for bits 8, 10, 11.
    assert_eq!(E::describe_bit(8), Some("read data error"));
    assert_eq!(E::describe_bit(10), Some("descriptor control error"));
    assert_eq!(E::describe_bit(11), Some("descriptor transfer size error"));
    assert_eq!(E::RECOVERABLE.bits(), 0x300);
}

/// B.7 bring-up literals: suspend 0x04, reset 0x20, CHANCTRL 0x1D (SPDK/DPDK 0x08/0x0C),
/// INTRCTRL 0x09, DCACTRL 0xFFFFFFFF; reset leaves HALTED (3), CHAINADDR → ARMED (4); timing.
#[test]
fn b7_bringup_values() {
    assert_eq!(ioat::ChanCmd::SUSPEND.bits(), 0x04);
    assert_eq!(ioat::ChanCmd::RESET.bits(), 0x20);
    assert_eq!(ioat::ChanCtrl::RUN.bits(), 0x001D);
    assert_eq!(ioat::ChanCtrl::ANY_ERR_ABORT_EN.bits(), 0x0008);
    assert_eq!(
        (ioat::ChanCtrl::ANY_ERR_ABORT_EN | ioat::ChanCtrl::ERR_COMPLETION_EN).bits(),
        0x000C
    );
    assert_eq!(ioat::DcaCtrl::ANY_CPU.0, 0xFFFF_FFFF);
    assert_eq!(ioat::ChanState::Halted as u8, 3);
    assert_eq!(ioat::ChanState::Armed as u8, 4);
    assert_eq!(ioat::timing::LINUX_START_US, 20);
    assert_eq!(ioat::timing::LINUX_RESET_MS, 200);
    assert_eq!(ioat::timing::LINUX_SUSPEND_MS, 100);
    assert_eq!(ioat::timing::SPDK_SUSPEND_MS, 20);
    assert_eq!(ioat::timing::SPDK_IDLE_MS, 10);
    assert_eq!(ioat::timing::LINUX_COMPLETION_TIMER_MS, 200);
    assert_eq!(ioat::timing::DPDK_ARMED_SPINS, 200);
}
