//! Arbitrary bytes through every DSA decoder in `passthru_core::idxd`: the 64-byte descriptor,
//! the 32-byte completion record, and every register / table value type. Nothing may panic,
//! and every byte-level decode must round-trip.
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use passthru_core::idxd::descriptor::{DifBlockSize, SrcDifFlags};
use passthru_core::idxd::portal::{decode_portal, portal_offset};
use passthru_core::idxd::tables::{grpcfg_byte_offset, wqcfg_dword_offset};
use passthru_core::idxd::*;
use passthru_fuzz::Bytes;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mut s = String::new();

    // Descriptor: lossless decode, every accessor.
    let raw: [u8; 64] = b.array();
    let d = Descriptor::from_bytes(&raw);
    assert_eq!(d.as_bytes(), raw);
    let _ = (
        d.pasid(),
        d.privileged(),
        d.reserved_dword0(),
        d.flags_raw(),
    );
    match d.opcode() {
        Ok(op) => assert_eq!(op as u8, d.opcode_raw()),
        Err(code) => assert_eq!(code, d.opcode_raw()),
    }
    assert_eq!(d.flags().bits(), d.flags_raw());
    for off in 0..72 {
        let _ = (d.op_byte(off), d.op_u32(off), d.op_u64(off));
    }
    let _ = IaaOpcode::try_from(d.opcode_raw());
    let _ = DifBlockSize::from_flags(raw[42]).bytes();
    let _ = SrcDifFlags::from_bits_retain(raw[40]);

    // Completion record.
    let cr_raw: [u8; 32] = b.array();
    let cr = CompletionRecord::from_bytes(&cr_raw);
    assert_eq!(cr.to_bytes(), cr_raw);
    let sb = cr.status_byte();
    let _ = (sb.code(), sb.write_fault(), sb.is_done(), sb.status());
    if let Ok(st) = sb.status() {
        assert_eq!(st as u8, sb.code());
        let _ = (st.is_success(), st.is_fault());
    }
    let fi = cr.fault_info();
    let _ = (fi.address_masked(), fi.operand_id());
    let _ = (
        cr.invalid_flags(),
        cr.crc32(),
        cr.crc64(),
        cr.delta_record_size(),
    );
    let _ = write!(s, "{sb}");

    // Registers.
    let v = b.u64();
    let w = b.u64();
    let g = GenCap(v);
    let _ = (
        g.block_on_fault(),
        g.overlapping_copy(),
        g.cache_control_memory(),
        g.cache_control_cache(),
        g.cmd_cap(),
        g.inter_domain(),
        g.translation_fetch(),
        g.dest_readback(),
        g.drain_readback(),
        g.fill_16_byte(),
        g.crc64(),
        g.cr_fault_info(),
        g.evl_entry_size(),
        g.batch_continuation(),
        g.max_xfer_size(),
        g.max_batch_size(),
        g.ims_entries(),
        g.config_support(),
    );
    let wq = WqCap(w);
    let _ = (
        wq.total_wq_size(),
        wq.num_wqs(),
        wq.wqcfg_stride(),
        wq.shared_mode(),
        wq.dedicated_mode(),
        wq.wq_ats_support(),
        wq.priority_support(),
        wq.occupancy_support(),
        wq.occupancy_int_support(),
        wq.op_config_support(),
        wq.wq_prs_support(),
    );
    let gc = GrpCap(v);
    let _ = (
        gc.num_groups(),
        gc.total_rdbufs(),
        gc.rdbuf_ctrl(),
        gc.rdbuf_limit(),
        gc.progress_limit(),
    );
    let e = EngCap(w);
    let _ = (
        e.num_engines(),
        e.max_descs_in_progress(),
        e.max_batches_in_progress(),
    );
    let oc = OpCap([v, w, !v, !w]);
    for op in 0..=255u8 {
        let _ = oc.supports(op);
    }
    let t = TableOffset([v, w]);
    let _ = (
        t.grpcfg_offset(),
        t.wqcfg_offset(),
        t.msix_perm_offset(),
        t.ims_offset(),
        t.perfmon_offset(),
        t.inter_domain(),
    );
    let _ = wqcfg_dword_offset(t, wq, usize::from(wq.num_wqs()), 15);
    let _ = grpcfg_byte_offset(t, usize::from(gc.num_groups()), 63);
    let gcfg = GenCfg(v as u32);
    let _ = (gcfg.rdbuf_limit(), gcfg.user_int_en(), gcfg.evl_en());
    let _ = (
        GenCtrl::from_bits_retain(v as u32),
        IntCause::from_bits_retain(w as u32),
    );
    let gs = GenSts(v as u32);
    let _ = (gs.state(), gs.reset_type());
    let cmd = Cmd(w as u32);
    let _ = (cmd.operand(), cmd.code(), cmd.command(), cmd.int_req());
    let cs = CmdSts((w >> 32) as u32);
    let _ = (cs.error(), cs.result(), cs.active());
    let _ = write!(s, "{cs}");
    let cc = CmdCap(v as u32);
    for c in Command::ALL {
        let _ = cc.supports(c);
    }
    let _ = cc.requires_int_handles();
    let sw = SwErr([v, w, b.u64(), b.u64()]);
    let _ = (
        sw.valid(),
        sw.overflow(),
        sw.desc_valid(),
        sw.wq_index_valid(),
        sw.batch(),
        sw.fault_write(),
        sw.privileged(),
        sw.error(),
        sw.wq_index(),
        sw.operation(),
        sw.pasid(),
        sw.batch_index(),
        sw.invalid_flags(),
        sw.fault_addr(),
    );
    let _ = write!(s, "{sw}");
    let ec = EvlCfg([v, w]);
    let _ = (
        ec.pasid_en(),
        ec.privileged(),
        ec.base(),
        ec.size(),
        ec.pasid(),
    );
    let es = EvlStatus(v);
    let _ = (es.head(), es.tail(), es.int_pending());
    let pc = PerfCap(w);
    let _ = (
        pc.num_counters(),
        pc.counter_width(),
        pc.event_categories(),
        pc.global_event_categories(),
        pc.filters(),
        pc.counter_caps(),
        pc.writable_counters(),
        pc.counter_freeze(),
        pc.overflow_interrupt(),
    );
    let mp = MsixPerm(v as u32);
    let _ = (mp.ignore(), mp.pasid_en(), mp.pasid());

    // Tables: WQCFG from raw dwords, GRPCFG from raw bytes.
    let mut dw = [0u32; 16];
    for (i, x) in dw.iter_mut().enumerate() {
        *x = u32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]);
    }
    let c = WqConfig::from_dwords(dw);
    assert_eq!(c.dwords(), dw);
    let _ = (
        c.wq_size(),
        c.wq_threshold(),
        c.dedicated(),
        c.block_on_fault(),
        c.ats_disable(),
        c.prs_disable(),
        c.priority(),
        c.pasid(),
        c.pasid_en(),
        c.privileged(),
        c.max_xfer_shift(),
        c.max_batch_shift(),
        c.occupancy_int_handle(),
        c.occupancy_int_ims(),
        c.occupancy_limit_value(),
        c.occupancy_int_en(),
        c.occupancy(),
        c.occupancy_int_occurred(),
        c.mode_support(),
        c.state(),
    );
    for op in 0..=255u8 {
        let _ = c.op_allowed(op);
    }
    for i in 0..20 {
        let _ = c.dword(i);
    }
    let grp = GroupConfig::new()
        .with_wq(raw[0])
        .with_engine(raw[1])
        .with_flags(GroupFlags(v));
    let _ = (grp.has_wq(raw[2]), grp.has_engine(raw[3]));
    let f = grp.group_flags();
    let _ = (
        f.tc_a(),
        f.tc_b(),
        f.use_rdbuf_limit(),
        f.rdbufs_reserved(),
        f.rdbufs_allowed(),
        f.desc_progress_limit(),
        f.batch_progress_limit(),
    );

    // Portals.
    let off = (v as usize) & 0x3f_ffff;
    let p = decode_portal(off);
    assert_eq!(p.wq, off >> 14);
    assert_eq!(
        portal_offset(p.wq as u16, p.kind) + p.slot * 64 + (off & 63),
        off
    );
});
