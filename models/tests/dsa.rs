//! The DSA model at register and descriptor level, against the facts of Linux
//! `drivers/dma/idxd/registers.h`, `include/uapi/linux/idxd.h` and the DSA specification.
//! Tests that (also) check behaviour the specification and the Linux driver leave open carry `modelling_choice` in
//! their names; the choices are listed in the `passthru_models::dsa` module docs.

use std::sync::Arc;

use passthru_core::idxd::regs::offset;
use passthru_core::idxd::{
    Batch, CacheFlush, CmdSts, Compare, ComparePattern, CompletionRecord, CompletionStatus,
    CopyCrc, CrcGen, Descriptor, DescriptorFlags, Drain, Dualcast, Fill, MemMove, Noop, ResetType,
    SwErr,
};
use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};
use passthru_models::dsa::{crc32c, DsaModel, DsaProfile, SWERR_SUBMISSION_DROPPED};
use passthru_models::exec::ExecMode;
use passthru_models::function::{ModelBar, ModelFunction};
use passthru_models::iommu::{HostMemory, Iommu};

const MEM: u64 = 0x10_0000;
const MEM_LEN: usize = 64 * 1024;
const CR: u64 = MEM; // completion record at the start
const A: u64 = MEM + 0x1000;
const B: u64 = MEM + 0x3000;
const C: u64 = MEM + 0x5000;
const UNMAPPED: u64 = 0x4000_0000;

const WQCFG: usize = 0x400;
const GRPCFG: usize = 0x300;

struct T {
    model: Arc<DsaModel>,
    f: ModelFunction<DsaModel>,
    bar0: ModelBar<DsaModel>,
    bar2: ModelBar<DsaModel>,
    mem: Arc<HostMemory>,
}

fn setup_profile(p: DsaProfile, mode: ExecMode) -> T {
    let iommu = Iommu::new();
    let model = DsaModel::with_profile(p, Arc::clone(&iommu), mode);
    let mem = HostMemory::pages(MEM_LEN).unwrap();
    iommu.map_all(MEM, &mem).unwrap();
    let f = model.function();
    f.config_write16(0x04, 0x0406).unwrap();
    f.irq_enable(IrqKind::MsiX, 0, p.msix_vectors()).unwrap();
    let bar0 = f.bar(0).unwrap();
    let bar2 = f.bar(2).unwrap();
    T {
        model,
        f,
        bar0,
        bar2,
        mem,
    }
}

fn setup() -> T {
    setup_profile(DsaProfile::SPR, ExecMode::Immediate)
}

impl T {
    /// Write CMD and poll CMDSTS until the command is no longer Active (threaded models delay
    /// commands); a command stuck Active (injected) is returned as read after 1 s.
    fn cmd(&self, v: u32) -> CmdSts {
        self.bar0.write32(offset::CMD, v);
        let start = std::time::Instant::now();
        loop {
            let s = CmdSts(self.bar0.read32(offset::CMDSTS));
            if !s.active() || start.elapsed() > std::time::Duration::from_secs(1) {
                return s;
            }
            std::thread::yield_now();
        }
    }
    fn err(&self, v: u32) -> u8 {
        self.cmd(v).error_code()
    }
    /// WQ 0: `size` entries, dedicated, priority 1, xfer shift 31, batch shift 10; group 0 =
    /// WQ 0 + engine 0.
    fn configure(&self, size: u32) {
        self.bar0.write32(WQCFG, size);
        self.bar0.write32(WQCFG + 8, 0x11);
        self.bar0.write32(WQCFG + 12, 31 | 10 << 5);
        self.bar0.write64(GRPCFG, 1);
        self.bar0.write64(GRPCFG + 32, 1);
    }
    fn enable(&self) {
        self.configure(16);
        assert_eq!(self.err(0x0010_0000), 0);
        assert_eq!(self.err(0x0060_0000), 0);
    }
    fn submit(&self, d: Descriptor) {
        self.bar2.submit64(0, &d.as_bytes()).unwrap();
    }
    fn record_at(&self, iova: u64) -> CompletionRecord {
        let mut b = [0u8; 32];
        self.mem.read((iova - MEM) as usize, &mut b).unwrap();
        CompletionRecord::from_bytes(&b)
    }
    fn record(&self) -> CompletionRecord {
        self.record_at(CR)
    }
    fn status(&self) -> u8 {
        self.record().status
    }
    fn write(&self, iova: u64, data: &[u8]) {
        self.mem.write((iova - MEM) as usize, data).unwrap();
    }
    fn read(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read((iova - MEM) as usize, &mut v).unwrap();
        v
    }
    fn clear_record(&self) {
        self.mem.fill((CR - MEM) as usize, 32, 0).unwrap();
    }
    fn swerr(&self) -> SwErr {
        SwErr([
            self.bar0.read64(0xc0),
            self.bar0.read64(0xc8),
            self.bar0.read64(0xd0),
            self.bar0.read64(0xd8),
        ])
    }
    fn msi(&self, v: u32) -> u64 {
        self.f.msi().take(v)
    }
}

// ------------------------------------------------------------------ registers

#[test]
fn spr_capabilities_and_reset_values() {
    let t = setup();
    let b = &t.bar0;
    assert_eq!(b.read32(0x00), 0x100);
    assert_eq!(b.read64(0x10), 0x40_915F_010F);
    assert_eq!(b.read64(0x20), 0x3F_0000_0008_0080);
    assert_eq!(b.read64(0x30), 0x36004);
    assert_eq!(b.read64(0x38), 4);
    assert_eq!(b.read64(0x40), 0x1_003F_03FF);
    assert_eq!((b.read64(0x48), b.read64(0x50), b.read64(0x58)), (0, 0, 0));
    assert_eq!(b.read64(0x60), 0x0000_0002_0004_0003);
    assert_eq!(b.read64(0x68), 0x10);
    // 32-bit halves and bytes agree with the 64-bit view.
    assert_eq!(b.read32(0x10), 0x915F_010F);
    assert_eq!(b.read32(0x14), 0x40);
    assert_eq!(b.read8(0x12), 0x5F);
    assert_eq!(b.read16(0x22), 0x0008);
    for off in [
        0x80, 0x88, 0x90, 0x98, 0xa8, 0xb0, 0xc0, 0xe0, 0xf0, 0x100, 0x180,
    ] {
        assert_eq!(b.read32(off), 0, "reset value at {off:#x}");
    }
    assert_eq!(t.bar2.read32(0), u32::MAX, "portal reads are all ones");
    assert_eq!(t.f.bar(0).unwrap().len(), 0x4000);
    assert_eq!(t.f.bar(2).unwrap().len(), 8 * 0x4000);
    assert!(t.f.bar(1).is_err());
}

#[test]
fn pci_identity_class_bars_msix() {
    let t = setup();
    assert_eq!(t.f.config_read32(0).unwrap(), 0x0b25_8086);
    assert_eq!(t.f.config_read32(0x08).unwrap() >> 8, 0x08_8000);
    assert_eq!(
        t.f.config_read32(0x10).unwrap() & 0xf,
        0xc,
        "BAR0 64-bit prefetchable"
    );
    assert_eq!(
        t.f.config_read32(0x18).unwrap() & 0xf,
        0xc,
        "BAR2 64-bit prefetchable"
    );
    // Walk to the MSI-X capability: 1 + 8 vectors.
    let mut p = t.f.config_read8(0x34).unwrap();
    let mut found = None;
    while p != 0 {
        if t.f.config_read8(u16::from(p)).unwrap() == 0x11 {
            found = Some(p);
        }
        p = t.f.config_read8(u16::from(p) + 1).unwrap();
    }
    let cap = u16::from(found.expect("MSI-X capability"));
    assert_eq!(t.f.config_read16(cap + 2).unwrap() & 0x7ff, 8);
}

#[test]
fn command_error_codes() {
    let t = setup();
    assert_eq!(t.err(0x0050_0000), 0, "RESET_DEVICE");
    assert_eq!(t.err(0x0020_0000), 0x31, "DISABLE_DEVICE while disabled");
    assert_eq!(t.err(0x0060_0000), 0x20, "ENABLE_WQ before ENABLE_DEVICE");
    t.configure(16);
    assert_eq!(t.err(0x0010_0000), 0);
    assert_eq!(t.bar0.read32(offset::GENSTS) & 3, 1);
    assert_eq!(t.err(0x0010_0000), 0x10, "ENABLE_DEVICE twice");
    assert_eq!(t.err(0x0060_0008), 0x02, "ENABLE_WQ beyond num_wqs");
    assert_eq!(t.err(0x0060_0001), 0x22, "ENABLE_WQ of a size-0 WQ");
    assert_eq!(t.err(0x0070_0001), 0x32, "DISABLE_WQ of a disabled WQ");
    assert_eq!(t.err(0x0060_0000), 0);
    assert_eq!(
        t.bar0.read32(WQCFG + 24) >> 30,
        1,
        "WQCFG dword 6 state = enabled"
    );
    assert_eq!(t.err(0x0060_0000), 0x21, "ENABLE_WQ twice");
    assert_eq!(t.err(0x0080_0001), 0, "DRAIN_WQ");
    assert_eq!(t.err(0x0090_0001), 0, "ABORT_WQ");
    assert_eq!(t.err(0x0070_0001), 0, "DISABLE_WQ");
    assert_eq!(t.bar0.read32(WQCFG + 24) >> 30, 0);
    assert_eq!(
        t.err(0x0070_0000 | 1 << 16 | 1),
        0x02,
        "block 1 = WQ 16: absent"
    );
    assert_eq!(t.err(0x0030_0000), 0, "DRAIN_ALL");
    assert_eq!(t.err(0x0040_0000), 0, "ABORT_ALL");
    assert_eq!(t.err(0x00b0_0000), 0, "DRAIN_PASID");
    assert_eq!(t.err(0x00c0_0000), 0, "ABORT_PASID");
    assert_eq!(t.err(0x0020_0000), 0, "DISABLE_DEVICE");
    assert_eq!(t.bar0.read32(offset::GENSTS) & 3, 0);
}

#[test]
fn unsupported_commands_give_0x01() {
    let t = setup();
    assert_eq!(t.err(0), 0x01, "code 0");
    assert_eq!(
        t.err(13 << 20 | 1),
        0x01,
        "REQUEST_INT_HANDLE without CMDCAP"
    );
    assert_eq!(t.err(15 << 20), 0x01, "DSA 2.0 command");
    assert_eq!(t.err(0x1f << 20), 0x01);
}

#[test]
fn request_int_handle_with_cmdcap_modelling_choice() {
    let mut p = DsaProfile::SPR;
    p.gencap |= 1 << 4;
    p.cmdcap = 0x1ffe | 1 << 13 | 1 << 14;
    let t = setup_profile(p, ExecMode::Immediate);
    assert_eq!(t.bar0.read32(offset::CMDCAP), 0x7ffe);
    assert_eq!(t.err(13 << 20), 0x41, "index 0 is invalid");
    assert_eq!(t.err(13 << 20 | 9), 0x41, "beyond the vectors");
    assert_eq!(t.err(13 << 20 | 1 << 16 | 1), 0x41, "no IMS in the model");
    let s = t.cmd(13 << 20 | 3);
    assert_eq!((s.error_code(), s.result()), (0, 3), "handle = index");
    assert_eq!(t.err(14 << 20 | 3), 0);
}

#[test]
fn enable_wq_validation_modelling_choice() {
    let t = setup();
    t.configure(16);
    t.bar0.write32(WQCFG + 8, 0x01); // priority 0
    assert_eq!(t.err(0x0010_0000), 0);
    assert_eq!(t.err(0x0060_0000), 0x23, "priority 0 (modelling choice)");
    t.bar0.write32(WQCFG + 8, 0x10); // shared, no PASID
    assert_eq!(t.err(0x0060_0000), 0x26);
    t.bar0.write32(WQCFG + 8, 0x11);
    t.bar0.write32(WQCFG + 12, 31 | 11 << 5);
    assert_eq!(t.err(0x0060_0000), 0x27, "batch shift above GENCAP");
    t.bar0.write32(WQCFG + 12, 31 | 10 << 5);
    assert_eq!(t.err(0x0060_0000), 0);
}

#[test]
fn enable_wq_profile_dependent_errors_modelling_choice() {
    let mut p = DsaProfile::SPR;
    p.gencap = (p.gencap & !(0x1f << 16) & !1) | 20 << 16; // 1 MiB transfers, no BOF
    p.wqcap &= !(1 << 49); // no dedicated mode
    let t = setup_profile(p, ExecMode::Immediate);
    t.configure(4);
    assert_eq!(t.err(0x0010_0000), 0);
    assert_eq!(t.err(0x0060_0000), 0x24, "dedicated mode unsupported");
    t.bar0.write32(WQCFG + 8, 0x10 | 1 << 28); // shared with PASID
    t.bar0.write32(WQCFG + 12, 21);
    assert_eq!(t.err(0x0060_0000), 0x28, "xfer shift above GENCAP");
    t.bar0.write32(WQCFG + 12, 20);
    t.bar0.write32(WQCFG + 8, 0x12 | 1 << 28);
    assert_eq!(t.err(0x0060_0000), 0x25, "block-on-fault unsupported");
}

#[test]
fn enable_device_validation_modelling_choice() {
    let t = setup();
    t.f.config_write16(0x04, 0x0002).unwrap();
    assert_eq!(t.err(0x0010_0000), 0x12, "bus master off");
    t.f.config_write16(0x04, 0x0006).unwrap();
    t.bar0.write32(WQCFG, 100);
    t.bar0.write32(WQCFG + 32, 100);
    assert_eq!(t.err(0x0010_0000), 0x14, "sizes above total");
    t.bar0.write32(WQCFG + 32, 0);
    assert_eq!(t.err(0x0010_0000), 0x15, "sized WQ in no group");
    t.bar0.write64(GRPCFG, 1);
    t.bar0.write64(GRPCFG + 32, 1);
    t.bar0.write64(GRPCFG + 64 + 32, 1);
    assert_eq!(t.err(0x0010_0000), 0x16, "engine in two groups");
    t.bar0.write64(GRPCFG + 64 + 32, 0);
    t.bar0.write64(GRPCFG + 64, 2);
    t.bar0.write32(WQCFG + 32, 1);
    assert_eq!(t.err(0x0010_0000), 0x17, "group with WQs and no engine");
    t.bar0.write64(GRPCFG + 64, 0);
    t.bar0.write32(WQCFG + 32, 0);
    t.bar0.write64(GRPCFG + 8, 1); // WQ 64: absent
    assert_eq!(t.err(0x0010_0000), 0x18);
    t.bar0.write64(GRPCFG + 8, 0);
    assert_eq!(t.err(0x0010_0000), 0);
}

#[test]
fn tables_are_locked_while_enabled_and_reset_restores_defaults() {
    let t = setup();
    t.bar0.write32(offset::GENCFG, 0xffff_ffff);
    assert_eq!(
        t.bar0.read32(offset::GENCFG),
        0x10ff,
        "rdbuf limit + user int en"
    );
    t.bar0.write32(offset::GENCTRL, 0xffff_ffff);
    assert_eq!(t.bar0.read32(offset::GENCTRL), 0x3);
    t.bar0.write32(0x200 + 8, 0xffff_ffff); // MSI-X perm entry 1
    assert_eq!(t.bar0.read32(0x208), 0xffff_f00c);
    assert_eq!(
        t.bar0.read32(0x20c),
        0,
        "high half of a perm slot is reserved"
    );
    t.enable();
    t.bar0.write32(WQCFG, 5);
    t.bar0.write64(GRPCFG + 40, 0x9);
    t.bar0.write32(offset::GENCFG, 0);
    assert_eq!(
        t.bar0.read32(WQCFG),
        16,
        "WQCFG locked while the WQ is enabled"
    );
    assert_eq!(t.bar0.read64(GRPCFG + 40), 0, "GRPCFG locked while enabled");
    assert_eq!(
        t.bar0.read32(offset::GENCFG),
        0x10ff,
        "GENCFG locked while enabled"
    );
    assert_eq!(t.err(0x0050_0000), 0);
    for off in [
        offset::GENCFG,
        offset::GENCTRL,
        offset::GENSTS,
        WQCFG,
        WQCFG + 8,
        0x208,
    ] {
        assert_eq!(t.bar0.read32(off), 0, "{off:#x} after RESET_DEVICE");
    }
    assert_eq!(t.bar0.read64(GRPCFG), 0);
}

#[test]
fn split_and_narrow_table_writes() {
    let t = setup();
    t.bar0.write32(GRPCFG + 32, 0x5);
    t.bar0.write32(GRPCFG + 36, 0x1);
    assert_eq!(t.bar0.read64(GRPCFG + 32), 0x1_0000_0005);
    t.bar0.write8(WQCFG + 1, 0x12);
    t.bar0.write16(WQCFG + 2, 0xffff);
    assert_eq!(
        t.bar0.read32(WQCFG),
        0x1200,
        "bits above 15 are not part of wq_size"
    );
    t.bar0.write32(WQCFG + 24, 0xffff_ffff);
    assert_eq!(
        t.bar0.read32(WQCFG + 24),
        1 << 29,
        "dword 6 is read-only (mode support)"
    );
}

#[test]
fn command_interrupt_and_intcause_rw1c() {
    let t = setup();
    assert_eq!(t.err(0x0050_0000), 0);
    assert_eq!(t.msi(0), 0, "no interrupt without CMD bit 31");
    assert_eq!(t.bar0.read32(offset::INTCAUSE), 0);
    assert_eq!(t.err(0x8050_0000), 0);
    assert_eq!(t.msi(0), 1, "vector 0 on completion with CMD bit 31");
    assert_eq!(t.bar0.read32(offset::INTCAUSE), 1 << 1);
    t.bar0.write32(offset::INTCAUSE, 1 << 1);
    assert_eq!(t.bar0.read32(offset::INTCAUSE), 0);
}

#[test]
fn cmd_while_active_latches_swerr_0x52_and_overflow() {
    let t = setup();
    t.model.set_command_stuck(true);
    assert!(t.cmd(0x0030_0000).active());
    t.bar0.write32(offset::GENCTRL, 1);
    t.bar0.write32(offset::CMD, 0x0030_0000);
    let s = t.swerr();
    assert!(s.valid() && !s.overflow());
    assert_eq!(s.error_code(), 0x52);
    assert_eq!(t.bar0.read32(offset::INTCAUSE) & 1, 1);
    assert_eq!(t.msi(0), 1, "GENCTRL bit 0: software error raises vector 0");
    t.bar0.write32(offset::CMD, 0x0030_0000);
    assert!(
        t.swerr().overflow(),
        "second error while valid sets overflow"
    );
    assert_eq!(t.swerr().error_code(), 0x52);
    t.bar0.write64(offset::SWERR, SwErr::ACK);
    assert!(!t.swerr().valid() && !t.swerr().overflow());
    t.model.set_command_stuck(false);
    assert!(!CmdSts(t.bar0.read32(offset::CMDSTS)).active());
}

#[test]
fn halt_injection_and_recovery_rules() {
    let t = setup();
    t.enable();
    t.bar0.write32(offset::GENCTRL, 0x2);
    t.model.inject_halt(ResetType::Flr);
    assert_eq!(t.bar0.read32(offset::GENSTS), 0b0111);
    assert_eq!(t.bar0.read32(offset::INTCAUSE) & (1 << 4), 1 << 4);
    assert_eq!(t.msi(0), 1);
    assert_eq!(
        t.err(0x0050_0000),
        0x03,
        "RESET_DEVICE cannot leave an FLR halt"
    );
    t.f.reset().unwrap();
    assert_eq!(
        t.f.config_read16(0x04).unwrap() & 0x6,
        0,
        "FLR clears COMMAND"
    );
    assert_eq!(
        t.bar0.read32(offset::GENSTS),
        u32::MAX,
        "memory decode off: BAR0 reads all ones (master abort)"
    );
    t.f.config_write16(0x04, 0x0406).unwrap();
    assert_eq!(t.bar0.read32(offset::GENSTS), 0);
    t.model.inject_halt(ResetType::Software);
    assert_eq!(
        t.err(0x0050_0000),
        0,
        "software reset type: RESET_DEVICE leaves halt"
    );
    assert_eq!(t.bar0.read32(offset::GENSTS), 0);
}

// ------------------------------------------------------------------ descriptors

#[test]
fn memmove_noop_drain_records() {
    let t = setup();
    t.enable();
    t.write(A, &[7u8; 256]);
    t.submit(MemMove::new(A, B, 256).completion(CR).build());
    assert_eq!(t.status(), 1);
    assert_eq!(t.read(B, 256), vec![7u8; 256]);
    for d in [Noop::new(), Noop::new().fence()] {
        t.clear_record();
        t.submit(d.completion(CR).build());
        assert_eq!(t.status(), 1);
    }
    t.clear_record();
    t.submit(Drain::new().completion(CR).build());
    assert_eq!(t.status(), 1);
    assert_eq!(t.model.stats().records, 4);
}

#[test]
fn fill_compare_and_pattern_modelling_choice() {
    let t = setup();
    t.enable();
    t.submit(
        Fill::new(0x0807_0605_0403_0201, A, 20)
            .completion(CR)
            .build(),
    );
    assert_eq!(t.status(), 1);
    assert_eq!(
        t.read(A, 21),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 0]
    );
    t.write(B, &t.read(A, 20));
    t.clear_record();
    t.submit(Compare::new(A, B, 20).completion(CR).build());
    let r = t.record();
    assert_eq!((r.status, r.result), (1, 0));
    t.write(B + 13, &[0xee]);
    t.clear_record();
    t.submit(Compare::new(A, B, 20).completion(CR).build());
    let r = t.record();
    assert_eq!((r.status, r.result), (1, 1));
    assert_eq!(
        r.bytes_completed.get(),
        13,
        "offset of the first difference (modelling choice)"
    );
    t.clear_record();
    t.submit(Compare::new(A, B, 20).expect(0).completion(CR).build());
    assert_eq!(
        t.status(),
        2,
        "check-result mismatch: success with false predicate"
    );
    t.clear_record();
    t.submit(Compare::new(A, B, 20).expect(1).completion(CR).build());
    assert_eq!(t.status(), 1);
    t.clear_record();
    t.submit(
        ComparePattern::new(A, 0x0807_0605_0403_0201, 16)
            .completion(CR)
            .build(),
    );
    assert_eq!((t.record().status, t.record().result), (1, 0));
    t.clear_record();
    t.submit(
        ComparePattern::new(A, 0x0807_0605_0403_0200, 16)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!((r.status, r.result, r.bytes_completed.get()), (1, 1, 0));
}

#[test]
fn dualcast_and_address_bits_rule() {
    let t = setup();
    t.enable();
    t.write(A, &[9u8; 64]);
    t.submit(
        Dualcast::new(A, B + 0x40, C + 0x40, 64)
            .completion(CR)
            .build(),
    );
    assert_eq!(t.status(), 1);
    assert_eq!(t.read(B + 0x40, 64), vec![9u8; 64]);
    assert_eq!(t.read(C + 0x40, 64), vec![9u8; 64]);
    t.clear_record();
    t.submit(Dualcast::new(A, B, C + 0x40, 64).completion(CR).build());
    assert_eq!(t.status(), 0x17);
}

#[test]
fn crc32c_castagnoli_check_value_modelling_choice() {
    // Standard CRC-32C check value; seed semantics are a modelling choice.
    assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
    assert_eq!(
        crc32c(crc32c(0, b"12345"), b"6789"),
        0xE306_9283,
        "seed chains"
    );
    let t = setup();
    t.enable();
    t.write(A, b"123456789");
    t.submit(CrcGen::new(A, 9).completion(CR).build());
    let r = t.record();
    assert_eq!((r.status, r.crc32()), (1, 0xE306_9283));
    t.write(A + 0x100, b"12345");
    t.write(A + 0x200, &crc32c(0, b"12345").to_le_bytes());
    t.clear_record();
    t.submit(
        CrcGen::new(A + 5, 4)
            .seed_from(A + 0x200)
            .completion(CR)
            .build(),
    );
    assert_eq!(t.record().crc32(), 0xE306_9283, "seed read from memory");
    t.clear_record();
    t.submit(
        CrcGen::new(A + 5, 4)
            .seed(crc32c(0, b"12345"))
            .completion(CR)
            .build(),
    );
    assert_eq!(t.record().crc32(), 0xE306_9283, "seed in the descriptor");
    t.clear_record();
    t.submit(CopyCrc::new(A, B, 9).completion(CR).build());
    assert_eq!((t.status(), t.record().crc32()), (1, 0xE306_9283));
    assert_eq!(t.read(B, 9), b"123456789");
}

#[test]
fn cache_flush_checks_translation_modelling_choice() {
    let t = setup();
    t.enable();
    t.submit(CacheFlush::new(A, 4096).completion(CR).build());
    assert_eq!(t.status(), 1);
    t.clear_record();
    t.submit(CacheFlush::new(UNMAPPED, 64).completion(CR).build());
    assert_eq!(t.status(), 0x03);
}

#[test]
fn page_faults_report_progress_and_direction() {
    let t = setup();
    t.enable();
    let end = MEM + MEM_LEN as u64;
    t.submit(MemMove::new(A, end - 100, 300).completion(CR).build());
    let r = t.record();
    assert_eq!(r.status, 0x83, "write fault: bit 7");
    assert_eq!((r.bytes_completed.get(), r.fault_addr.get()), (100, end));
    assert_eq!(r.result, 0, "ascending copy");
    t.clear_record();
    t.submit(MemMove::new(UNMAPPED, A, 300).completion(CR).build());
    let r = t.record();
    assert_eq!(
        (r.status, r.bytes_completed.get(), r.fault_addr.get()),
        (0x03, 0, UNMAPPED)
    );
}

#[test]
fn validation_errors_modelling_choice() {
    let t = setup();
    t.enable();
    let check = |d: Descriptor, want: u8| {
        t.clear_record();
        t.submit(d);
        assert_eq!(t.status(), want, "{:?}", d.opcode());
    };
    let mut bad_op = Noop::new().completion(CR).build();
    bad_op.flags_opcode = (bad_op.flags_opcode.get() | 0x0a << 24).into();
    check(bad_op, 0x10); // TRANSLATION_FETCH: not in the SPR OPCAP
    let d = Noop::new()
        .completion(CR)
        .flags(DescriptorFlags::from_bits_retain(1 << 6))
        .build();
    check(d, 0x11);
    assert_eq!(t.record().invalid_flags(), 1 << 6);
    check(
        MemMove::new(A, B, 8)
            .completion(CR)
            .flags(DescriptorFlags::BLOCK_ON_FAULT)
            .build(),
        0x11,
    );
    let mut rsv = Noop::new().completion(CR).build();
    rsv.reserved = 1.into();
    check(rsv, 0x12);
    check(MemMove::new(A, B, 0).completion(CR).build(), 0x13);
    check(MemMove::new(A, B, u32::MAX).completion(CR).build(), 0x13);
    check(Noop::new().completion(CR).interrupt(9).build(), 0x19);
    assert_eq!(t.msi(9), 0);
}

#[test]
fn size_zero_rejected_modelling_choice() {
    let t = setup();
    t.enable();
    t.submit(Fill::new(0, A, 0).completion(CR).build());
    assert_eq!(t.status(), CompletionStatus::InvalidTransferSize as u8);
}

#[test]
fn record_policy_crav_rcr() {
    let t = setup();
    t.enable();
    t.write(CR, &[0xaa; 32]);
    t.submit(MemMove::new(A, B, 8).completion_on_error(CR).build());
    assert_eq!(
        t.read(CR, 32),
        vec![0xaa; 32],
        "CRAV without RCR: no record on success"
    );
    t.clear_record();
    t.submit(MemMove::new(UNMAPPED, B, 8).completion_on_error(CR).build());
    assert_eq!(t.status(), 0x03, "CRAV without RCR: record on failure");
    assert!(!t.swerr().valid());
    // No record at all: success is silent, failure goes to SWERR.
    t.submit(MemMove::new(A, B, 8).build());
    assert!(!t.swerr().valid());
    t.submit(MemMove::new(UNMAPPED, B, 8).build());
    let s = t.swerr();
    assert!(s.valid() && s.desc_valid() && s.wq_index_valid());
    assert_eq!(
        (s.error_code(), s.operation(), s.fault_addr()),
        (0x03, 0x03, UNMAPPED)
    );
    t.bar0.write64(offset::SWERR, SwErr::ACK);
    t.submit(Noop::new().completion(CR + 8).build());
    assert_eq!(t.swerr().error_code(), 0x1b, "misaligned record");
    t.bar0.write64(offset::SWERR, SwErr::ACK);
    t.submit(Noop::new().completion(UNMAPPED).build());
    let s = t.swerr();
    assert_eq!(
        (s.error_code(), s.fault_addr()),
        (0x1a, UNMAPPED),
        "record write fault"
    );
}

#[test]
fn interrupts_by_handle_and_ims_portal_modelling_choice() {
    let t = setup();
    t.enable();
    t.submit(Noop::new().interrupt(3).build());
    assert_eq!((t.msi(3), t.msi(1), t.msi(0)), (1, 0, 0));
    t.submit(
        MemMove::new(UNMAPPED, A, 8)
            .completion(CR)
            .interrupt(1)
            .build(),
    );
    assert_eq!(t.msi(1), 1, "RCI fires on failure too, after the record");
    t.bar2
        .submit64(
            0x2000,
            &Noop::new().interrupt(1).completion(CR).build().as_bytes(),
        )
        .unwrap();
    assert_eq!(t.msi(1), 0, "IMS portal: no MSI-X (IMS not modelled)");
    t.bar2
        .submit64(0x1040, &Noop::new().interrupt(1).build().as_bytes())
        .unwrap();
    assert_eq!(t.msi(1), 1, "limited MSI-X portal, any 64-byte slot");
}

#[test]
fn batch_semantics_modelling_choice() {
    let t = setup();
    t.enable();
    let list = C;
    let rec1 = CR + 32;
    let members = [
        MemMove::new(A, B, 16).build(),
        MemMove::new(UNMAPPED, B, 16)
            .completion_on_error(rec1)
            .build(),
        Noop::new().build(),
        Noop::new().fence().build(),
        Noop::new().build(),
    ];
    for (i, m) in members.iter().enumerate() {
        t.write(list + 64 * i as u64, &m.as_bytes());
    }
    t.submit(Batch::new(list, 3).completion(CR).build());
    let r = t.record();
    assert_eq!((r.status, r.result, r.bytes_completed.get()), (0x05, 1, 3));
    assert_eq!(
        t.record_at(rec1).status,
        0x03,
        "failed member wrote its own record"
    );
    t.clear_record();
    t.submit(Batch::new(list, 5).completion(CR).build());
    assert_eq!(
        t.record().bytes_completed.get(),
        3,
        "fenced member after a failure abandons the rest (modelling choice)"
    );
    t.clear_record();
    t.submit(Batch::new(list + 128, 2).completion(CR).build());
    assert_eq!((t.status(), t.record().bytes_completed.get()), (1, 2));
    for (count, want) in [(1, 0x14), (1025, 0x14)] {
        t.clear_record();
        t.submit(Batch::new(list, count).completion(CR).build());
        assert_eq!(t.status(), want);
    }
    t.clear_record();
    t.submit(Batch::new(list + 32, 2).completion(CR).build());
    assert_eq!(t.status(), 0x18);
    t.clear_record();
    t.submit(
        Batch::new(MEM + MEM_LEN as u64 - 64, 2)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!((r.status, r.bytes_completed.get()), (0x06, 1));
    t.write(list, &Batch::new(list, 2).build().as_bytes());
    t.write(list + 64, &Noop::new().build().as_bytes());
    t.clear_record();
    t.submit(Batch::new(list, 2).completion(CR).build());
    assert_eq!(
        t.status(),
        0x05,
        "a batch inside a batch fails (modelling choice)"
    );
}

#[test]
fn injected_status_replaces_execution() {
    let t = setup();
    t.enable();
    t.write(A, &[1; 8]);
    t.model.inject_status(0x20);
    t.submit(MemMove::new(A, B, 8).completion(CR).build());
    assert_eq!(t.status(), 0x20);
    assert_eq!(t.read(B, 8), vec![0; 8], "nothing copied");
}

// ------------------------------------------------------------------ portals and modes

#[test]
fn dropped_submissions_set_swerr_modelling_choice() {
    let t = setup_profile(DsaProfile::SPR, ExecMode::Manual);
    let d = Noop::new().completion(CR).build();
    t.submit(d); // device disabled
    let s = t.swerr();
    assert!(s.valid() && s.wq_index_valid());
    assert_eq!(
        (s.error_code(), s.wq_index()),
        (SWERR_SUBMISSION_DROPPED, 0)
    );
    t.bar0.write64(offset::SWERR, SwErr::ACK);
    t.configure(2);
    assert_eq!(t.err(0x0010_0000), 0);
    assert_eq!(t.err(0x0060_0000), 0);
    t.submit(d);
    t.submit(d);
    assert_eq!(t.bar0.read32(WQCFG + 24) & 0xffff, 2, "occupancy");
    assert!(!t.swerr().valid());
    t.submit(d); // full
    assert_eq!(t.swerr().error_code(), SWERR_SUBMISSION_DROPPED);
    assert_eq!(t.model.stats().dropped, 2);
    t.bar0.write64(offset::SWERR, SwErr::ACK);
    t.bar2.submit64(0x4000, &d.as_bytes()).unwrap(); // WQ 1: disabled
    assert_eq!(t.swerr().wq_index(), 1);
    assert_eq!(t.model.run_until_idle(), 2);
    assert_eq!(t.status(), 1);
    assert!(
        t.bar2.submit64(0x20, &d.as_bytes()).is_err(),
        "misaligned portal write"
    );
}

#[test]
fn manual_mode_completes_only_on_step() {
    let t = setup_profile(DsaProfile::SPR, ExecMode::Manual);
    t.enable();
    t.submit(Noop::new().completion(CR).build());
    assert_eq!(t.status(), 0);
    assert!(t.model.step());
    assert_eq!(t.status(), 1);
    assert!(!t.model.step());
}

#[test]
fn stuck_engine_and_abort_wq_drops_without_records_modelling_choice() {
    let t = setup();
    t.enable();
    t.model.set_stuck(true);
    t.submit(Noop::new().completion(CR).build());
    assert_eq!((t.status(), t.model.occupancy(0)), (0, 1));
    assert_eq!(t.err(0x0090_0001), 0, "ABORT_WQ");
    assert_eq!(t.model.occupancy(0), 0);
    t.model.set_stuck(false);
    assert_eq!(t.status(), 0, "aborted descriptor never completes");
}

#[test]
fn bus_master_cleared_while_enabled_halts_with_flr() {
    let t = setup_profile(DsaProfile::SPR, ExecMode::Manual);
    t.enable();
    t.submit(Noop::new().completion(CR).build());
    t.f.config_write16(0x04, 0x0002).unwrap();
    t.model.step();
    assert_eq!(t.swerr().error_code(), 0x51);
    assert_eq!(
        t.bar0.read32(offset::GENSTS),
        0b0111,
        "HALT, reset type FLR"
    );
    assert_eq!(t.status(), 0);
}

#[test]
fn threaded_mode_completes_asynchronously() {
    let t = setup_profile(DsaProfile::SPR, ExecMode::Threaded);
    t.enable();
    t.write(A, &[5; 4096]);
    t.submit(MemMove::new(A, B, 4096).completion(CR).interrupt(1).build());
    assert_eq!(t.f.msi().wait_take(1, std::time::Duration::from_secs(2)), 1);
    assert_eq!(t.status(), 1);
    assert_eq!(t.read(B, 4096), vec![5; 4096]);
}

#[test]
fn record_fields_are_visible_before_the_status_byte() {
    // Threaded model, a page-faulting copy: whenever the poller sees the status byte, the fault
    // address and progress written before it must already be there.
    let t = setup_profile(DsaProfile::SPR, ExecMode::Threaded);
    t.enable();
    let region = t.mem.dma_region(MEM);
    let end = MEM + MEM_LEN as u64;
    for i in 0..200u64 {
        region.fill(0, 32, 0).unwrap();
        let done = 64 + i;
        t.submit(MemMove::new(A, end - done, 4096).completion(CR).build());
        let t0 = std::time::Instant::now();
        let status = loop {
            let s = region.read_u8(0).unwrap();
            if s != 0 || t0.elapsed() > std::time::Duration::from_secs(2) {
                break s;
            }
            std::hint::spin_loop();
        };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        assert_eq!(status, 0x83);
        let record: passthru_core::idxd::completion::CompletionRecord = region.read(0).unwrap();
        assert_eq!(record.status, 0x83);
        assert_eq!(record.bytes_completed.get(), done as u32);
        assert_eq!(record.fault_addr.get(), end);
    }
}

// ------------------------------------------------------------------ issue-12 strictness

/// Map `len` bytes of fresh memory at `iova` for `t`'s model; returns the memory.
fn map_extra(t: &T, iova: u64, len: usize) -> Arc<HostMemory> {
    let m = HostMemory::pages(len).unwrap();
    t.model.iommu().map_all(iova, &m).unwrap();
    m
}

#[test]
fn memmove_source_fault_reports_only_bytes_written() {
    // Source: one mapped page at 0x200000, then a hole. A 0x3000-byte copy faults reading
    // 0x201000; bytes_completed must be exactly what reached the destination, so resubmitting
    // from src/dst + bytes_completed leaves no hole.
    let t = setup();
    t.enable();
    let src = map_extra(&t, 0x20_0000, 0x1000);
    let dst = map_extra(&t, 0x40_0000, 0x3000);
    let pattern: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8 + 1).collect();
    src.write(0, &pattern[..0x1000]).unwrap();
    t.submit(
        MemMove::new(0x20_0000, 0x40_0000, 0x3000)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!(r.status, 0x03, "read fault: bit 7 clear");
    assert_eq!(r.result, 0, "ascending");
    assert_eq!(
        (r.bytes_completed.get(), r.fault_addr.get()),
        (0x1000, 0x20_1000)
    );
    let out = dst.to_vec();
    assert_eq!(&out[..0x1000], &pattern[..0x1000]);
    assert!(
        out[0x1000..].iter().all(|b| *b == 0),
        "no byte past bytes_completed was written"
    );
    // Software fixes the page and resubmits the remainder.
    let rest = map_extra(&t, 0x20_1000, 0x2000);
    rest.write(0, &pattern[0x1000..]).unwrap();
    let done = u64::from(r.bytes_completed.get());
    t.clear_record();
    t.submit(
        MemMove::new(0x20_0000 + done, 0x40_0000 + done, 0x3000 - done as u32)
            .completion(CR)
            .build(),
    );
    assert_eq!(t.status(), 1);
    assert_eq!(dst.to_vec(), pattern);
}

#[test]
fn overlapping_memmove_across_mappings_copies_descending_and_reports_it() {
    let t = setup();
    t.enable();
    // One 16 KiB buffer mapped as four separate 4 KiB mappings at 0x300000.
    let m = HostMemory::pages(0x4000).unwrap();
    for i in 0..4u64 {
        t.model
            .iommu()
            .map(
                0x30_0000 + i * 0x1000,
                &m,
                (i * 0x1000) as usize,
                0x1000,
                passthru_models::iommu::Perm::RW,
            )
            .unwrap();
    }
    let pattern: Vec<u8> = (0..0x4000u32).map(|i| (i * 13 + i / 256) as u8).collect();
    m.write(0, &pattern).unwrap();
    t.submit(
        MemMove::new(0x30_0000, 0x30_0800, 0x3000)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!((r.status, r.result), (1, 1), "success, copied descending");
    let out = m.to_vec();
    assert_eq!(&out[0x800..0x3800], &pattern[..0x3000], "memmove semantics");
    assert_eq!(&out[..0x800], &pattern[..0x800]);
    // Downwards overlap copies ascending (result 0).
    m.write(0, &pattern).unwrap();
    t.clear_record();
    t.submit(
        MemMove::new(0x30_0800, 0x30_0000, 0x3000)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!((r.status, r.result), (1, 0));
    assert_eq!(&m.to_vec()[..0x3000], &pattern[0x800..0x3800]);
    // Descending with a fault: bytes_completed counts the finished tail, result 1 tells
    // software to resubmit with only the size reduced.
    t.model.iommu().unmap(0x30_0000, 0x1000);
    m.write(0, &pattern).unwrap();
    t.clear_record();
    t.submit(
        MemMove::new(0x30_0000, 0x30_0800, 0x2000)
            .completion(CR)
            .build(),
    );
    let r = t.record();
    assert_eq!((r.status, r.result), (0x03, 1));
    assert_eq!(
        (r.bytes_completed.get(), r.fault_addr.get()),
        (0x1000, 0x30_0fff)
    );
    assert_eq!(&m.to_vec()[0x1800..0x2800], &pattern[0x1000..0x2000]);
}

fn enable_bof(t: &T) {
    t.configure(16);
    t.bar0.write32(WQCFG + 8, 0x13); // dedicated, block-on-fault, priority 1
    assert_eq!(t.err(0x0010_0000), 0);
    assert_eq!(t.err(0x0060_0000), 0);
}

#[test]
fn block_on_fault_waits_for_the_page_request_and_completes() {
    let t = setup();
    enable_bof(&t);
    let dst = map_extra(&t, 0x50_0000, 0x1000);
    let late = HostMemory::pages(0x1000).unwrap();
    let pattern: Vec<u8> = (0..0x2000u32).map(|i| (i % 241) as u8 + 1).collect();
    t.write(A, &pattern[..0x1000]);
    t.write(A + 0x1000, &pattern[0x1000..]);
    // The destination's second page is mapped only when the device asks for it.
    let iommu = Arc::clone(t.model.iommu());
    let page = Arc::clone(&late);
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    t.model
        .set_page_request_handler(Some(Box::new(move |iova, write| {
            log.lock().unwrap().push((iova, write));
            iommu.map_all(iova & !0xfff, &page).is_ok()
        })));
    t.submit(
        MemMove::new(A, 0x50_0000, 0x2000)
            .completion(CR)
            .flags(DescriptorFlags::BLOCK_ON_FAULT)
            .build(),
    );
    assert_eq!(t.status(), 1, "the fault was resolved, not reported");
    assert_eq!(*asked.lock().unwrap(), vec![(0x50_1000, true)]);
    assert_eq!(t.model.stats().page_requests, 1);
    assert_eq!(dst.to_vec(), pattern[..0x1000]);
    assert_eq!(late.to_vec(), pattern[0x1000..]);
}

#[test]
fn block_on_fault_with_invalid_response_completes_with_0x04() {
    let t = setup();
    enable_bof(&t);
    t.write(A, &[7; 0x100]);
    // No page-request service: the response is invalid.
    t.submit(
        MemMove::new(A, MEM + MEM_LEN as u64 - 0x80, 0x100)
            .completion(CR)
            .flags(DescriptorFlags::BLOCK_ON_FAULT)
            .build(),
    );
    let r = t.record();
    assert_eq!(r.status, 0x84, "0x04 with the write bit");
    assert_eq!(
        (r.bytes_completed.get(), r.fault_addr.get()),
        (0x80, MEM + MEM_LEN as u64)
    );
    assert_eq!(t.model.stats().page_requests, 1);
    // Without the descriptor flag the same fault is an ordinary 0x03, with no page request.
    t.clear_record();
    t.submit(
        MemMove::new(A, MEM + MEM_LEN as u64 - 0x80, 0x100)
            .completion(CR)
            .build(),
    );
    assert_eq!(t.status(), 0x83);
    assert_eq!(t.model.stats().page_requests, 1);
    // BOF applies to the other operations too (here FILL), re-run after a resolved request.
    t.clear_record();
    t.submit(
        Fill::new(0x55, 0x60_0000, 64)
            .completion(CR)
            .flags(DescriptorFlags::BLOCK_ON_FAULT)
            .build(),
    );
    assert_eq!(t.status(), 0x84);
}

#[test]
fn delayed_commands_stay_active_and_reset_shows_the_drain_state() {
    let t = setup();
    t.enable();
    t.model
        .set_command_delay(std::time::Duration::from_millis(20));
    t.bar0.write32(offset::CMD, 0x0050_0000); // RESET_DEVICE
    assert!(CmdSts(t.bar0.read32(offset::CMDSTS)).active());
    assert_eq!(
        t.bar0.read32(offset::GENSTS) & 3,
        2,
        "drain while resetting"
    );
    std::thread::sleep(std::time::Duration::from_millis(25));
    let s = CmdSts(t.bar0.read32(offset::CMDSTS));
    assert!(!s.active());
    assert_eq!(s.error_code(), 0);
    assert_eq!(t.bar0.read32(offset::GENSTS), 0);

    // A driver that writes the next command without polling CMDSTS gets SWERR 0x52 and its
    // second command is lost.
    t.configure(16);
    t.bar0.write32(offset::CMD, 0x0010_0000); // ENABLE_DEVICE
    t.bar0.write32(offset::CMD, 0x0060_0000); // ENABLE_WQ 0, too early
    std::thread::sleep(std::time::Duration::from_millis(25));
    assert!(!CmdSts(t.bar0.read32(offset::CMDSTS)).active());
    assert_eq!(t.swerr().error_code(), 0x52);
    assert_eq!(t.bar0.read32(offset::GENSTS) & 3, 1, "device enabled");
    assert_eq!(
        t.bar0.read32(WQCFG + 24) >> 30,
        0,
        "the WQ was never enabled"
    );
}

#[test]
fn threaded_model_delays_commands_by_default_and_interrupts_without_polling() {
    let t = setup_profile(DsaProfile::SPR, ExecMode::Threaded);
    assert!(t.model.command_delay() > std::time::Duration::ZERO);
    t.bar0.write32(offset::CMD, 0x8050_0000); // RESET_DEVICE with a completion interrupt
    assert!(CmdSts(t.bar0.read32(offset::CMDSTS)).active());
    // Like Linux, sleep on vector 0 without touching a register.
    let start = std::time::Instant::now();
    while t.f.msi().pending(0) == 0 && start.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    assert_eq!(t.msi(0), 1, "vector 0 fired for the completed command");
    assert!(!CmdSts(t.bar0.read32(offset::CMDSTS)).active());
    assert_eq!(t.bar0.read32(offset::INTCAUSE) & 2, 2);
}

#[test]
fn bar0_with_memory_decode_off_reads_all_ones() {
    let t = setup();
    t.enable();
    let commands = t.model.stats().commands;
    t.f.config_write16(0x04, 0x0404).unwrap(); // bus master, INTx disable; memory off
    assert_eq!(t.bar0.read32(offset::GENSTS), u32::MAX);
    assert_eq!(t.bar0.read64(offset::GENCAP), u64::MAX);
    assert_eq!(t.bar0.read32(offset::CMDSTS), u32::MAX);
    t.bar0.write32(offset::CMD, 0x0020_0000); // DISABLE_DEVICE: not claimed, dropped
    t.submit(MemMove::new(A, B, 8).completion(CR).build());
    assert_eq!(t.model.stats().commands, commands);
    assert_eq!(t.model.stats().accepted, 0, "portal write not claimed");
    t.f.config_write16(0x04, 0x0406).unwrap();
    assert_eq!(t.bar0.read32(offset::GENSTS) & 3, 1, "still enabled");
}
