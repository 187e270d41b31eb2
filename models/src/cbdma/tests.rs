//! Register-level tests of the CBDMA model, driven through the same `RegisterIo` a driver uses.

use super::*;
use crate::function::ModelBar;
use crate::iommu::{HostMemory, Perm};
use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};
use proptest::prelude::*;

const MEM_IOVA: u64 = 0x10_0000;
const MEM_SIZE: usize = 64 * 1024;
const CMP: u64 = MEM_IOVA + 0xF000; // write-back slot
const C0: usize = 0x80; // channel 0 base

struct T {
    model: Arc<CbdmaModel>,
    f: ModelFunction<CbdmaModel>,
    bar: ModelBar<CbdmaModel>,
    mem: Arc<HostMemory>,
}

fn rig_cfg(cfg: CbdmaConfig) -> T {
    let iommu = Iommu::new();
    let mem = HostMemory::pages(MEM_SIZE).unwrap();
    iommu.map_all(MEM_IOVA, &mem).unwrap();
    let model = CbdmaModel::new(iommu, cfg);
    let f = ModelFunction::new(Arc::clone(&model));
    let bar = f.bar(0).unwrap();
    f.config_write16(0x04, 0x0006).unwrap(); // memory + bus master
    f.irq_enable(IrqKind::MsiX, 0, u32::from(cfg.channels.clamp(1, 4)))
        .unwrap();
    T { model, f, bar, mem }
}

fn rig() -> T {
    rig_cfg(CbdmaConfig::default())
}

fn manual() -> T {
    rig_cfg(CbdmaConfig {
        mode: ExecMode::Manual,
        ..CbdmaConfig::default()
    })
}

impl T {
    fn put(&self, off: usize, d: Descriptor) -> u64 {
        self.mem.write(off, &d.to_bytes()).unwrap();
        MEM_IOVA + off as u64
    }
    fn start(&self, chain: u64, ctrl: ChanCtrl, count: u16) {
        self.bar.write64(C0 + chan::CHANCMP, CMP);
        self.bar.write64(C0 + chan::CHAINADDR, chain);
        self.bar.write16(C0 + chan::CHANCTRL, ctrl.bits());
        self.bar.write16(C0 + chan::DMACOUNT, count);
    }
    /// What every reference driver does before reusing a channel: acknowledge CHANERR (a
    /// channel reset keeps it), then reset.
    fn ack_reset(&self) {
        self.bar.write32(C0 + chan::CHANERR, self.chanerr());
        self.bar.write8(C0 + chan::CHANCMD, ChanCmd::RESET.bits());
    }
    fn sts(&self) -> ChanSts {
        ChanSts(self.bar.read64(C0 + chan::CHANSTS))
    }
    fn chanerr(&self) -> u32 {
        self.bar.read32(C0 + chan::CHANERR)
    }
    fn wb(&self) -> u64 {
        let mut b = [0u8; 8];
        self.mem.read(0xF000, &mut b).unwrap();
        u64::from_le_bytes(b)
    }
    fn byte(&self, off: usize) -> u8 {
        let mut b = [0u8; 1];
        self.mem.read(off, &mut b).unwrap();
        b[0]
    }
}

const ABORT: ChanCtrl = ChanCtrl::INT_REARM
    .union(ChanCtrl::ERR_COMPLETION_EN)
    .union(ChanCtrl::ANY_ERR_ABORT_EN);

#[test]
fn identity_and_reset_values() {
    let t = rig();
    assert_eq!(t.f.config_read16(0).unwrap(), 0x8086);
    assert_eq!(t.f.config_read16(2).unwrap(), 0x2021);
    assert_eq!(t.f.config_read32(8).unwrap() >> 8, 0x088000);
    assert_eq!(t.bar.len(), 0x4000);
    assert_eq!(t.bar.read8(0x00), 1, "CHANCNT");
    assert_eq!(t.bar.read8(0x01), 20, "XFERCAP");
    assert_eq!(t.bar.read8(0x08), 0x33, "CBVER");
    assert_eq!(t.bar.read32(0x10), 1 << 6, "DMACAPABILITY: fill");
    assert_eq!(t.sts().state(), Ok(ChanState::Halted));
    assert_eq!(t.bar.read8(C0 + chan::CHANCMD), 0);
    assert_eq!(t.chanerr(), 0);
    assert_eq!(t.bar.read32(0x1000), 0, "unknown offsets read 0");
    t.bar.write32(0x1000, 0xffff_ffff);
    assert_eq!(t.bar.read32(0x1000), 0);
    // MSI-X capability with one vector (one channel).
    let cap = (0x40..0x100)
        .step_by(4)
        .find(|o| t.f.config_read8(*o as u16).unwrap() == 0x11)
        .unwrap();
    assert_eq!(t.f.config_read16(cap as u16 + 2).unwrap() & 0x7ff, 0);
}

#[test]
fn accesses_of_any_width_compose_registers() {
    let t = rig();
    t.bar.write8(0x03, 0x09);
    // CHANCNT | XFERCAP << 8 | GENCTRL << 16 | INTRCTRL << 24
    assert_eq!(t.bar.read32(0x00), 1 | (20 << 8) | (0x09 << 24));
    t.bar.write64(C0 + chan::CHANCMP, 0x1122_3344_5566_7788);
    assert_eq!(t.bar.read32(C0 + 0x1C), 0x1122_3344);
    assert_eq!(t.bar.read32(C0 + 0x18), 0x5566_7788);
    assert_eq!(t.bar.read16(C0 + 0x1A), 0x5566);
    t.bar.write32(C0 + 0x1C, 0xAABB_CCDD);
    assert_eq!(t.bar.read64(C0 + chan::CHANCMP), 0xAABB_CCDD_5566_7788);
    // Read-only registers ignore writes.
    t.bar.write8(0x08, 0x99);
    t.bar.write8(0x01, 0x00);
    t.bar.write64(C0 + chan::CHANSTS, 0);
    assert_eq!(t.bar.read8(0x08), 0x33);
    assert_eq!(t.bar.read8(0x01), 20);
    assert!(t.sts().is(ChanState::Halted));
    // GENCTRL: only the debug bit.
    t.bar.write8(0x02, 0xFF);
    assert_eq!(t.bar.read8(0x02), 0x01);
}

/// DMA_COMP's value and INTRDELAY's coalescing bit are not given by any source.
#[test]
fn dma_comp_and_intrdelay_values_modelling_choice() {
    let t = rig();
    assert_eq!(t.bar.read16(C0 + 0x02), 0x0002, "DMA_COMP: v2 layout");
    t.bar.write16(0x0C, 0xFFFF);
    assert_eq!(
        t.bar.read16(0x0C),
        0x3FFF,
        "delay writable, bit 15 (coalescing) reads 0"
    );
}

#[test]
fn chainaddr_split_write_commits_on_the_high_dword() {
    let t = rig();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 16),
    );
    t.bar.write32(C0 + chan::CHAINADDR_LOW, d as u32);
    assert!(
        t.sts().is(ChanState::Halted),
        "the low half alone commits nothing"
    );
    assert_eq!(t.bar.read32(C0 + chan::CHAINADDR_LOW), d as u32);
    t.bar.write32(C0 + chan::CHAINADDR_HIGH, (d >> 32) as u32);
    assert!(t.sts().is(ChanState::Armed));
    // A 64-bit write commits as well.
    t.ack_reset();
    t.bar.write64(C0 + chan::CHAINADDR, d);
    assert!(t.sts().is(ChanState::Armed));
    t.bar.write64(C0 + chan::CHANCMP, CMP);
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.sts().completed_address(), d);
}

#[test]
fn chain_follows_next_links_and_writes_back() {
    let t = rig();
    t.mem.fill(0x1000, 0x300, 0xAB).unwrap();
    let a = MEM_IOVA + 0x100;
    let b = MEM_IOVA + 0x140;
    let c = MEM_IOVA + 0x180;
    t.put(
        0x100,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 0x100)
            .with_next(b)
            .with_completion_write(),
    );
    t.put(
        0x140,
        Descriptor::copy(MEM_IOVA + 0x1100, MEM_IOVA + 0x2100, 0x100).with_next(c),
    );
    t.put(
        0x180,
        Descriptor::fill(0x0706_0504_0302_0100, MEM_IOVA + 0x3000, 0x20)
            .with_next(a)
            .with_completion_write(),
    );
    t.start(a, ABORT, 2);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.sts().completed_address(), b);
    assert_eq!(
        t.wb(),
        ChanSts::new(a, ChanState::Active).0,
        "only descriptors with completion write update the write-back"
    );
    assert_eq!(t.byte(0x2000), 0xAB);
    assert_eq!(t.byte(0x21FF), 0xAB);
    assert_eq!(t.byte(0x3000), 0, "third descriptor not yet made available");
    assert_eq!(t.bar.read64(C0 + chan::CDAR), b);
    t.bar.write16(C0 + chan::DMACOUNT, 3);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.wb(), ChanSts::new(c, ChanState::Done).0);
    for i in 0..0x20 {
        assert_eq!(t.byte(0x3000 + i), (i % 8) as u8, "fill pattern byte {i}");
    }
}

#[test]
fn dmacount_is_mod_2_16() {
    let t = rig();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 65535);
    assert_eq!(t.model.completed_descriptors(0), 65535);
    assert!(t.sts().is(ChanState::Done));
    t.bar.write16(C0 + chan::DMACOUNT, 2); // 65535 → 2 wraps: three more
    assert_eq!(t.model.completed_descriptors(0), 65538);
    assert!(t.sts().is(ChanState::Done));
}

#[test]
fn suspend_resume_and_abort_halts_in_manual_mode_modelling_choice() {
    let t = manual();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 5);
    assert!(t.sts().is(ChanState::Active), "nothing runs until stepped");
    assert!(t.model.step());
    assert!(t.model.step());
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::SUSPEND.bits());
    assert!(t.sts().is(ChanState::Suspended));
    assert!(!t.model.step(), "a suspended channel does not run");
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::RESUME.bits());
    assert!(t.sts().is(ChanState::Active));
    assert_eq!(t.model.run_until_idle(), 3);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.model.completed_descriptors(0), 5);
    // ABORT drops what is left and halts.
    t.bar.write64(C0 + chan::CHAINADDR, d);
    t.bar.write16(C0 + chan::DMACOUNT, 4);
    assert!(t.model.step());
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::ABORT.bits());
    assert!(t.sts().is(ChanState::Halted));
    assert!(!t.model.step());
    assert_eq!(t.model.completed_descriptors(0), 6);
}

#[test]
fn bad_commands_set_chancmd_error_modelling_choice_and_chanerr_is_rw1c() {
    let t = rig();
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::START.bits());
    assert_eq!(t.chanerr(), ChanErr::CHANCMD_ERR.bits());
    t.bar.write8(
        C0 + chan::CHANCMD,
        (ChanCmd::SUSPEND | ChanCmd::ABORT).bits(),
    );
    assert_eq!(t.chanerr(), ChanErr::CHANCMD_ERR.bits());
    assert!(t.sts().is(ChanState::Halted), "no state change");
    t.bar.write32(C0 + chan::CHANERR, 0);
    assert_eq!(
        t.chanerr(),
        ChanErr::CHANCMD_ERR.bits(),
        "writing 0 clears nothing"
    );
    t.bar
        .write32(C0 + chan::CHANERR, ChanErr::CHANCMD_ERR.bits());
    assert_eq!(t.chanerr(), 0);
}

#[test]
fn reset_delay_and_reset_effects() {
    let t = rig_cfg(CbdmaConfig {
        cbver: 0x32,
        ..CbdmaConfig::default()
    });
    t.model.set_reset_delay_reads(2);
    t.model.inject_chanerr_int(0x3);
    t.model.inject_stuck(0, true);
    t.ack_reset();
    assert_eq!(t.bar.read8(C0 + chan::CHANCMD), 0x20);
    assert_eq!(t.bar.read8(C0 + chan::CHANCMD), 0x20);
    assert_eq!(t.bar.read8(C0 + chan::CHANCMD), 0);
    assert_eq!(
        t.f.config_read32(ioat::CHANERR_INT).unwrap(),
        0,
        "CBVER < 3.3: reset clears CHANERR_INT"
    );
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 1);
    assert!(t.sts().is(ChanState::Done), "reset cleared the wedge");

    let t = rig();
    t.model.inject_chanerr_int(0x3);
    t.ack_reset();
    assert_eq!(
        t.f.config_read32(ioat::CHANERR_INT).unwrap(),
        3,
        "3.3: kept"
    );
    t.f.config_write32(ioat::CHANERR_INT, 1).unwrap();
    assert_eq!(t.f.config_read32(ioat::CHANERR_INT).unwrap(), 2, "RW1C");
}

fn fault_case(t: &T, d: Descriptor, expect: ChanErr) {
    t.ack_reset();
    let at = t.put(0x400, d.with_next(MEM_IOVA + 0x400));
    t.mem.write(0xF000, &[0xEE; 8]).unwrap();
    t.start(at, ABORT, 1);
    assert!(t.sts().is(ChanState::Halted), "{expect:?}");
    assert_eq!(t.chanerr(), expect.bits(), "{expect:?}");
    assert_eq!(
        t.wb(),
        ChanSts::new(0, ChanState::Halted).0,
        "error write-back: HALTED, nothing completed"
    );
}

#[test]
fn descriptor_faults_map_to_chanerr_bits_modelling_choice() {
    let t = rig();
    let unmapped = 0x8000_0000u64;
    let m = MEM_IOVA + 0x1000;
    fault_case(&t, Descriptor::copy(unmapped, m, 8), ChanErr::READ_DATA_ERR);
    fault_case(
        &t,
        Descriptor::copy(m, unmapped, 8),
        ChanErr::WRITE_DATA_ERR,
    );
    fault_case(
        &t,
        Descriptor::fill(0, unmapped, 8),
        ChanErr::WRITE_DATA_ERR,
    );
    fault_case(
        &t,
        Descriptor::copy(m, m + 0x100, (1 << 20) + 1),
        ChanErr::LENGTH_ERR,
    );
    fault_case(
        &t,
        Descriptor::fill(0, m, (1 << 20) + 1),
        ChanErr::LENGTH_ERR,
    );
    let mut bad_op = Descriptor::copy(m, m + 8, 8);
    bad_op.ctl = 0x7700_0000;
    fault_case(&t, bad_op, ChanErr::CONTROL_ERR);
    let mut xor = Descriptor::copy(m, m + 8, 8);
    xor.ctl = 0x8700_0000;
    fault_case(&t, xor, ChanErr::CONTROL_ERR);
    let mut rsvd = Descriptor::copy(m, m + 8, 8);
    rsvd.ctl |= 1 << 20;
    fault_case(&t, rsvd, ChanErr::CONTROL_ERR);
}

#[test]
fn unadvertised_fill_is_a_control_error_modelling_choice() {
    let t = rig_cfg(CbdmaConfig {
        dmacapability: 0,
        ..CbdmaConfig::default()
    });
    fault_case(
        &t,
        Descriptor::fill(0, MEM_IOVA + 0x1000, 8),
        ChanErr::CONTROL_ERR,
    );
}

#[test]
fn chain_faults_modelling_choice() {
    let t = rig();
    // Misaligned CHAINADDR → bit 4.
    t.start(MEM_IOVA + 8, ABORT, 1);
    assert_eq!(t.chanerr(), ChanErr::CHAIN_ADDR_VALUE_ERR.bits());
    assert!(t.sts().is(ChanState::Halted));
    // Misaligned next → bit 3, after the first descriptor completed.
    t.ack_reset();
    let a = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA + 0x48),
    );
    t.start(a, ABORT, 2);
    assert_eq!(t.chanerr(), ChanErr::NEXT_DESC_ALIGN_ERR.bits());
    assert_eq!(t.sts().completed_address(), a, "last good descriptor");
    assert_eq!(t.wb(), ChanSts::new(a, ChanState::Halted).0);
    // Unreadable descriptor → bit 2.
    t.ack_reset();
    t.start(0x4000_0000, ABORT, 1);
    assert_eq!(t.chanerr(), ChanErr::NEXT_ADDR_ERR.bits());
    // Unwritable completion address → bit 12.
    t.ack_reset();
    let a = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8)
            .with_next(MEM_IOVA)
            .with_completion_write(),
    );
    t.bar.write64(C0 + chan::CHAINADDR, a);
    t.bar.write64(C0 + chan::CHANCMP, 0x4000_0000);
    t.bar.write16(C0 + chan::CHANCTRL, ABORT.bits());
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert_eq!(t.chanerr(), ChanErr::COMPLETION_ADDR_ERR.bits());
    assert!(t.sts().is(ChanState::Halted));
}

#[test]
fn read_only_mapping_faults_the_write_side_modelling_choice() {
    let t = rig();
    let ro = HostMemory::pages(4096).unwrap();
    t.model
        .iommu()
        .map(0x9000_0000, &ro, 0, 4096, Perm::RO)
        .unwrap();
    fault_case(
        &t,
        Descriptor::copy(MEM_IOVA + 0x1000, 0x9000_0000, 8),
        ChanErr::WRITE_DATA_ERR,
    );
    // Reading from it is fine.
    t.ack_reset();
    let d = t.put(
        0,
        Descriptor::copy(0x9000_0000, MEM_IOVA + 0x1000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 1);
    assert!(t.sts().is(ChanState::Done));
}

#[test]
fn without_abort_on_error_data_errors_are_latched_and_the_chain_continues_modelling_choice() {
    let t = rig();
    let a = t.put(
        0,
        Descriptor::copy(0x8000_0000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA + 0x40),
    );
    t.put(
        0x40,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8)
            .with_next(MEM_IOVA)
            .with_completion_write(),
    );
    t.start(a, ChanCtrl::INT_REARM, 2);
    assert_eq!(t.chanerr(), ChanErr::READ_DATA_ERR.bits());
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.wb(), ChanSts::new(MEM_IOVA + 0x40, ChanState::Done).0);
}

#[test]
fn masked_errors_are_not_latched_modelling_choice() {
    let t = rig();
    t.bar
        .write32(C0 + chan::CHANERR_MASK, ChanErr::READ_DATA_ERR.bits());
    assert_eq!(t.bar.read32(C0 + chan::CHANERR_MASK), 0x100);
    let a = t.put(
        0,
        Descriptor::copy(0x8000_0000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(a, ABORT, 3);
    assert_eq!(t.chanerr(), 0);
    assert!(t.sts().is(ChanState::Done));
    // A masked completion-address error: the descriptor counts once, the chain goes on.
    t.ack_reset();
    t.bar
        .write32(C0 + chan::CHANERR_MASK, ChanErr::COMPLETION_ADDR_ERR.bits());
    let w = t.put(
        0x40,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8)
            .with_next(MEM_IOVA + 0x40)
            .with_completion_write(),
    );
    let before = t.model.completed_descriptors(0);
    t.bar.write64(C0 + chan::CHANCMP, 0x4000_0000);
    t.bar.write64(C0 + chan::CHAINADDR, w);
    t.bar.write16(C0 + chan::CHANCTRL, ABORT.bits());
    t.bar.write16(C0 + chan::DMACOUNT, 3);
    assert_eq!(t.chanerr(), 0);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.bar.read16(C0 + chan::DMACOUNT), 3);
    assert_eq!(
        t.model.completed_descriptors(0) - before,
        0,
        "no successful completion counted"
    );
    // An injected unmasked bit still halts.
    t.bar
        .write32(C0 + chan::CHANERR_MASK, ChanErr::READ_DATA_ERR.bits());
    t.model.inject_chanerr_next(0, ChanErr::LENGTH_ERR);
    t.bar.write64(C0 + chan::CHAINADDR, a);
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert_eq!(t.chanerr(), ChanErr::LENGTH_ERR.bits());
}

#[test]
fn interrupts_are_one_shot_and_per_channel_vector() {
    let t = rig();
    t.bar.write8(0x03, 0x08); // MSI-X vector control only, like upstream's selftest
    let n = t.put(0, Descriptor::null_interrupt().with_next(MEM_IOVA));
    t.start(n, ABORT, 2);
    assert_eq!(
        t.f.msi().take(0),
        1,
        "armed once: one interrupt for two descriptors"
    );
    assert_eq!(t.wb(), ChanSts::new(n, ChanState::Done).0);
    t.bar.write64(C0 + chan::CHAINADDR, n);
    t.bar.write16(C0 + chan::CHANCTRL, ABORT.bits());
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert_eq!(t.f.msi().take(0), 1, "re-armed");
    // Error interrupt only with ERR_INT_EN.
    t.model.inject_chanerr_next(0, ChanErr::LENGTH_ERR);
    t.start(n, ABORT, 1);
    assert_eq!(t.f.msi().take(0), 0);
    t.ack_reset();
    t.model.inject_chanerr_next(0, ChanErr::LENGTH_ERR);
    t.start(n, ChanCtrl::RUN, 1);
    assert_eq!(t.f.msi().take(0), 1);
}

#[test]
fn single_vector_mode_uses_attnstatus_cleared_on_rearm_modelling_choice() {
    let t = rig();
    t.bar.write8(0x03, IntrCtrl::MASTER_INT_EN.bits());
    let n = t.put(0, Descriptor::null_interrupt().with_next(MEM_IOVA));
    t.start(n, ABORT, 1);
    assert_eq!(t.bar.read32(0x04), 1, "ATTNSTATUS channel 0");
    assert_eq!(t.bar.read8(0x03), 0x01 | 0x02 | 0x04);
    assert_eq!(t.f.msi().take(0), 1);
    t.bar.write16(C0 + chan::CHANCTRL, ABORT.bits());
    assert_eq!(t.bar.read32(0x04), 0, "re-arming acknowledges");
    // Neither enable: attention only.
    t.bar.write8(0x03, 0);
    t.bar.write64(C0 + chan::CHAINADDR, n);
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert_eq!(t.bar.read32(0x04), 1);
    assert_eq!(t.bar.read8(0x03), 0x02);
    assert_eq!(t.f.msi().take(0), 0);
}

#[test]
fn second_channel_raises_vector_1() {
    let t = rig_cfg(CbdmaConfig {
        channels: 2,
        ..CbdmaConfig::default()
    });
    assert_eq!(t.bar.read8(0x00), 2);
    t.bar.write8(0x03, 0x09);
    let n = t.put(0, Descriptor::null_interrupt().with_next(MEM_IOVA));
    let c1 = 0x100;
    t.bar.write64(c1 + chan::CHANCMP, CMP);
    t.bar.write64(c1 + chan::CHAINADDR, n);
    t.bar.write16(c1 + chan::CHANCTRL, ABORT.bits());
    t.bar.write16(c1 + chan::DMACOUNT, 1);
    assert_eq!(t.f.msi().take(1), 1);
    assert_eq!(t.f.msi().take(0), 0);
    assert!(ChanSts(t.bar.read64(c1 + chan::CHANSTS)).is(ChanState::Done));
    assert!(t.sts().is(ChanState::Halted), "channel 0 untouched");
    assert_eq!(t.bar.read32(0x180), 0, "no third channel block");
}

#[test]
fn no_dma_progress_without_bus_master_modelling_choice() {
    let t = rig();
    t.f.config_write16(0x04, 0x0002).unwrap();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 1);
    assert!(
        t.sts().is(ChanState::Active),
        "no progress without bus master"
    );
    t.f.config_write16(0x04, 0x0006).unwrap();
    assert!(t.model.step());
    assert!(t.sts().is(ChanState::Done));
}

#[test]
fn function_reset_restores_defaults() {
    let t = rig();
    t.bar.write8(0x03, 0x09);
    t.model.inject_dmauncerrsts(0x10);
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 1);
    t.f.reset().unwrap();
    assert_eq!(t.f.config_read16(0x04).unwrap(), 0);
    assert_eq!(
        t.bar.read8(0x03),
        0xff,
        "memory decode off after FLR: master abort"
    );
    t.f.config_write16(0x04, 0x0002).unwrap();
    assert_eq!(t.bar.read8(0x03), 0);
    assert!(t.sts().is(ChanState::Halted));
    assert_eq!(t.bar.read64(C0 + chan::CHANCMP), 0);
    assert_eq!(t.f.config_read32(ioat::DMAUNCERRSTS).unwrap(), 0);
}

#[test]
fn restart_after_suspend_leaves_no_stale_completion_state() {
    let t = manual();
    let unmapped = 0x8000_0000u64;
    let d1 = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8)
            .with_next(MEM_IOVA)
            .with_completion_write(),
    );
    t.start(d1, ABORT, 3);
    assert!(t.model.step());
    assert_eq!(t.wb(), ChanSts::new(d1, ChanState::Active).0);
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::SUSPEND.bits());
    assert!(t.sts().is(ChanState::Suspended));
    // A new chain whose first descriptor faults.
    let d2 = t.put(
        0x400,
        Descriptor::copy(unmapped, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA + 0x400),
    );
    t.bar.write64(C0 + chan::CHAINADDR, d2);
    assert_eq!(
        t.sts().0,
        ChanSts::new(0, ChanState::Armed).0,
        "a new chain has completed nothing"
    );
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert!(t.model.step());
    assert!(t.sts().is(ChanState::Halted));
    assert_eq!(t.chanerr(), ChanErr::READ_DATA_ERR.bits());
    assert_eq!(
        t.wb(),
        ChanSts::new(0, ChanState::Halted).0,
        "the error write-back must not name the previous chain's descriptor"
    );
}

/// No source says whether a channel reset clears CHANERR or whether a halted channel with
/// CHANERR set arms; the model takes the strict reading of both, so a driver that forgets to
/// acknowledge CHANERR fails here as it may on hardware.
#[test]
fn channel_reset_keeps_chanerr_and_halted_channel_does_not_rearm_modelling_choice() {
    let t = rig();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.model.inject_chanerr_next(0, ChanErr::READ_DATA_ERR);
    t.start(d, ABORT, 1);
    assert!(t.sts().is(ChanState::Halted));
    t.bar.write8(C0 + chan::CHANCMD, ChanCmd::RESET.bits());
    assert_eq!(
        t.chanerr(),
        ChanErr::READ_DATA_ERR.bits(),
        "reset keeps CHANERR"
    );
    let before = t.model.completed_descriptors(0);
    t.start(d, ABORT, 1);
    assert!(
        t.sts().is(ChanState::Halted),
        "CHAINADDR does not arm a channel with CHANERR set"
    );
    assert_eq!(t.model.completed_descriptors(0), before, "nothing ran");
    // Acknowledging CHANERR lets the channel arm and run.
    t.bar.write32(C0 + chan::CHANERR, t.chanerr());
    t.start(d, ABORT, 1);
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.model.completed_descriptors(0), before + 1);
}

/// CHANCMP must be 8-byte aligned (SPDK's ioat_spec.h); which error a misaligned one gives is
/// not documented: the model fails the write-back with CHANERR bit 12.
#[test]
fn misaligned_chancmp_fails_the_write_back_modelling_choice() {
    let t = rig();
    t.mem.write(0xF000, &[0xEE; 16]).unwrap();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8)
            .with_next(MEM_IOVA)
            .with_completion_write(),
    );
    t.bar.write64(C0 + chan::CHANCMP, CMP + 4);
    t.bar.write64(C0 + chan::CHAINADDR, d);
    t.bar.write16(C0 + chan::CHANCTRL, ABORT.bits());
    t.bar.write16(C0 + chan::DMACOUNT, 1);
    assert!(t.sts().is(ChanState::Halted));
    assert_eq!(t.chanerr(), ChanErr::COMPLETION_ADDR_ERR.bits());
    let mut b = [0u8; 16];
    t.mem.read(0xF000, &mut b).unwrap();
    assert_eq!(b, [0xEE; 16], "nothing written at a misaligned CHANCMP");
}

/// Writing CHAINADDR while the channel is ACTIVE is a driver bug (it must suspend first);
/// hardware behaviour is undocumented, the model refuses the write with CHANERR bit 4 and halts.
#[test]
fn chainaddr_written_while_active_is_refused_modelling_choice() {
    let t = manual();
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 8).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 4);
    assert!(t.model.step());
    assert!(t.sts().is(ChanState::Active));
    t.bar.write64(C0 + chan::CHAINADDR, MEM_IOVA + 0x400);
    assert_eq!(t.chanerr(), ChanErr::CHAIN_ADDR_VALUE_ERR.bits());
    assert!(t.sts().is(ChanState::Halted));
    assert_eq!(t.bar.read64(C0 + chan::CHAINADDR), d, "write refused");
    assert!(!t.model.step());
    // The split (Linux) form is refused too: the low dword alone already is.
    let t = manual();
    t.start(d, ABORT, 4);
    t.bar.write32(C0 + chan::CHAINADDR, 0x400);
    assert_eq!(t.bar.read64(C0 + chan::CHAINADDR), d);
    assert!(t.sts().is(ChanState::Halted));
}

#[test]
fn threaded_mode_completes_asynchronously() {
    let t = rig_cfg(CbdmaConfig {
        mode: ExecMode::Threaded,
        ..CbdmaConfig::default()
    });
    let d = t.put(
        0,
        Descriptor::copy(MEM_IOVA + 0x1000, MEM_IOVA + 0x2000, 64).with_next(MEM_IOVA),
    );
    t.start(d, ABORT, 100);
    let start = std::time::Instant::now();
    while !t.sts().is(ChanState::Done) && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::yield_now();
    }
    assert!(t.sts().is(ChanState::Done));
    assert_eq!(t.model.completed_descriptors(0), 100);
}

// ----- fuzzing: random MMIO and random descriptors --------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Write {
        off: usize,
        width: u8,
        value: u64,
    },
    Read {
        off: usize,
        width: u8,
    },
    Desc {
        slot: usize,
        bytes: Vec<u8>,
    },
    Start {
        ch: usize,
        slot: u64,
        ctrl: u16,
        count: u16,
        cmp: u64,
    },
    Step(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let width = prop_oneof![Just(1u8), Just(2), Just(4), Just(8)];
    // Bias offsets towards the global block and the two channels' registers.
    let off = prop_oneof![
        0usize..0x20,
        0x80usize..0xB8,
        0x100usize..0x138,
        0usize..0x4000
    ];
    prop_oneof![
        (off.clone(), width.clone(), any::<u64>()).prop_map(|(o, w, v)| Op::Write {
            off: o & !(usize::from(w) - 1),
            width: w,
            value: v
        }),
        (off, width).prop_map(|(o, w)| Op::Read {
            off: o & !(usize::from(w) - 1),
            width: w
        }),
        (0usize..8, proptest::collection::vec(any::<u8>(), 64))
            .prop_map(|(slot, bytes)| Op::Desc { slot, bytes }),
        (
            0usize..2,
            0u64..10,
            any::<u16>(),
            any::<u16>(),
            any::<u64>()
        )
            .prop_map(|(ch, slot, ctrl, count, cmp)| Op::Start {
                ch,
                slot,
                ctrl,
                count,
                cmp
            }),
        any::<u8>().prop_map(Op::Step),
    ]
}

/// Shape random bytes into a descriptor that is often executable: addresses into the mapped
/// window, the guard pages or anywhere; `next` often another slot; copy/fill/NULL opcodes mostly.
fn steer(mut b: Vec<u8>) -> Vec<u8> {
    let pick = b[63];
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    for field in [8usize, 16] {
        let raw = u64_at(&b, field);
        let v = match pick % 3 {
            0 => MEM_IOVA + raw % (MEM_SIZE as u64),
            1 => MEM_IOVA - 4096 + raw % (MEM_SIZE as u64 + 8192),
            _ => raw,
        };
        b[field..field + 8].copy_from_slice(&v.to_le_bytes());
    }
    let raw_next = u64_at(&b, 24);
    let next = match (pick >> 2) % 4 {
        0..=2 => MEM_IOVA + (raw_next % 9) * 64, // slot 8 is never written: zeros
        _ => raw_next,
    };
    b[24..32].copy_from_slice(&next.to_le_bytes());
    let ctl = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let ctl = match (pick >> 4) % 4 {
        0 => ctl & 0x7FF,                 // copy (or NULL) with any flags
        1 => (ctl & 0x7FF) | 0x0100_0000, // fill
        2 => (ctl & 0x7FF) | (1 << 5),    // NULL
        _ => ctl,                         // anything
    };
    b[4..8].copy_from_slice(&ctl.to_le_bytes());
    // Keep sizes mostly small so execution stays fast.
    let size = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let size = if pick & 0x40 == 0 { size % 4096 } else { size };
    b[0..4].copy_from_slice(&size.to_le_bytes());
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn random_mmio_and_descriptors_never_panic_or_escape(ops in proptest::collection::vec(op(), 1..80)) {
        // Host memory: a guard page, the mapped window, a guard page. Only the window is mapped.
        let iommu = Iommu::new();
        let host = HostMemory::pages(MEM_SIZE + 2 * 4096).unwrap();
        host.fill(0, host.len(), 0xC3).unwrap();
        iommu.map(MEM_IOVA, &host, 4096, MEM_SIZE as u64, Perm::RW).unwrap();
        let model = CbdmaModel::new(iommu, CbdmaConfig { mode: ExecMode::Manual, channels: 2, ..CbdmaConfig::default() });
        let f = ModelFunction::new(Arc::clone(&model));
        f.config_write16(0x04, 0x0006).unwrap();
        f.irq_enable(IrqKind::MsiX, 0, 2).unwrap();
        let bar = f.bar(0).unwrap();
        for op in ops {
            match op {
                Op::Write { off, width, value } => match width {
                    1 => bar.write8(off, value as u8),
                    2 => bar.write16(off, value as u16),
                    4 => bar.write32(off, value as u32),
                    _ => bar.write64(off, value),
                },
                Op::Read { off, width } => {
                    let v = match width {
                        1 => u64::from(bar.read8(off)),
                        2 => u64::from(bar.read16(off)),
                        4 => u64::from(bar.read32(off)),
                        _ => bar.read64(off),
                    };
                    prop_assert!(width == 8 || v >> (8 * width) == 0);
                }
                Op::Desc { slot, bytes } => {
                    host.write(4096 + slot * 64, &steer(bytes)).unwrap();
                }
                Op::Start { ch, slot, ctrl, count, cmp } => {
                    let base = 0x80 * (ch + 1);
                    let cmp = if cmp & 1 == 0 { (MEM_IOVA + cmp % MEM_SIZE as u64) & !7 } else { cmp };
                    bar.write64(base + chan::CHANCMP, cmp);
                    bar.write32(base + chan::CHAINADDR_LOW, (MEM_IOVA + slot * 64) as u32);
                    bar.write32(base + chan::CHAINADDR_HIGH, ((MEM_IOVA + slot * 64) >> 32) as u32);
                    bar.write16(base + chan::CHANCTRL, ctrl);
                    bar.write16(base + chan::DMACOUNT, count);
                }
                Op::Step(n) => {
                    for _ in 0..n {
                        if !model.step() { break; }
                    }
                }
            }
            let s = model.chansts(0);
            prop_assert!(s.state().is_ok(), "state stays a defined value: {:#x}", s.0);
        }
        let v = host.to_vec();
        prop_assert!(v[..4096].iter().all(|b| *b == 0xC3), "guard page below untouched");
        prop_assert!(v[4096 + MEM_SIZE..].iter().all(|b| *b == 0xC3), "guard page above untouched");
    }
}
