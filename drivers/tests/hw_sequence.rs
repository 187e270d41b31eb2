//! Register-sequence tests: the DSA and CBDMA drivers run on their models behind a recording
//! `PciFunction`, and the exact register writes (offset, width, value, order) are compared with
//! values typed from Linux `drivers/dma/idxd/registers.h` and `drivers/dma/ioat/registers.h`
//! (groups A.4–A.14, B.3–B.7 of core/FACT_SHEET_COVERAGE.md) and the
//! upstream selftest drivers (`tools/testing/selftests/vfio/lib/drivers/{dsa,ioat}/`). The models answer the reads;
//! the expectations below never come from the drivers' or the models' own constants, so a wrong
//! assumption shared by a driver and its model still fails here.

use std::sync::{Arc, Mutex};

use passthru_core::driver::CheckedDriver;
use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, PortalError, RegisterIo};
use passthru_drivers::dsa::{self, Dsa};
use passthru_drivers::ioat::{self, Ioat};
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::dsa::DsaModel;
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::{HostMemory, Iommu};
use passthru_models::StdClock;

/// One recorded access.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// Config-space write: offset, width in bytes, value.
    CfgW(u16, u8, u32),
    /// Config-space read: offset, width in bytes, value.
    CfgR(u16, u8, u32),
    /// BAR read: bar, offset, width in bytes, value.
    R(u8, usize, u8, u64),
    /// BAR write: bar, offset, width in bytes, value.
    W(u8, usize, u8, u64),
    /// 64-byte portal submission: bar, offset, bytes.
    Submit(u8, usize, [u8; 64]),
    /// Interrupt enable: first vector, count.
    IrqOn(u32, u32),
    /// Interrupt disable.
    IrqOff,
    /// Function reset (FLR).
    Flr,
}

type Log = Arc<Mutex<Vec<Ev>>>;

#[derive(Clone)]
struct Rec<F> {
    inner: F,
    log: Log,
}

impl<F> Rec<F> {
    fn push(&self, e: Ev) {
        self.log.lock().unwrap().push(e);
    }
}

struct RecBar<B> {
    inner: B,
    index: u8,
    log: Log,
}

impl<B> RecBar<B> {
    fn push(&self, e: Ev) {
        self.log.lock().unwrap().push(e);
    }
}

impl<B: RegisterIo> RegisterIo for RecBar<B> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn read8(&self, offset: usize) -> u8 {
        let v = self.inner.read8(offset);
        self.push(Ev::R(self.index, offset, 1, v.into()));
        v
    }
    fn read16(&self, offset: usize) -> u16 {
        let v = self.inner.read16(offset);
        self.push(Ev::R(self.index, offset, 2, v.into()));
        v
    }
    fn read32(&self, offset: usize) -> u32 {
        let v = self.inner.read32(offset);
        self.push(Ev::R(self.index, offset, 4, v.into()));
        v
    }
    fn read64(&self, offset: usize) -> u64 {
        let v = self.inner.read64(offset);
        self.push(Ev::R(self.index, offset, 8, v));
        v
    }
    fn write8(&self, offset: usize, value: u8) {
        self.push(Ev::W(self.index, offset, 1, value.into()));
        self.inner.write8(offset, value)
    }
    fn write16(&self, offset: usize, value: u16) {
        self.push(Ev::W(self.index, offset, 2, value.into()));
        self.inner.write16(offset, value)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.push(Ev::W(self.index, offset, 4, value.into()));
        self.inner.write32(offset, value)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.push(Ev::W(self.index, offset, 8, value));
        self.inner.write64(offset, value)
    }
    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        self.push(Ev::Submit(self.index, offset, *descriptor));
        self.inner.submit64(offset, descriptor)
    }
}

impl<F: PciFunction> PciFunction for Rec<F> {
    type Bar = RecBar<F::Bar>;
    fn bar(&self, index: u8) -> Result<Self::Bar, FunctionError> {
        Ok(RecBar {
            inner: self.inner.bar(index)?,
            index,
            log: Arc::clone(&self.log),
        })
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        let v = self.inner.config_read8(offset)?;
        self.push(Ev::CfgR(offset, 1, v.into()));
        Ok(v)
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        let v = self.inner.config_read16(offset)?;
        self.push(Ev::CfgR(offset, 2, v.into()));
        Ok(v)
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        let v = self.inner.config_read32(offset)?;
        self.push(Ev::CfgR(offset, 4, v));
        Ok(v)
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        self.push(Ev::CfgW(offset, 1, value.into()));
        self.inner.config_write8(offset, value)
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        self.push(Ev::CfgW(offset, 2, value.into()));
        self.inner.config_write16(offset, value)
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        self.push(Ev::CfgW(offset, 4, value));
        self.inner.config_write32(offset, value)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        assert_eq!(kind, IrqKind::MsiX, "both drivers use MSI-X only");
        self.push(Ev::IrqOn(first, count));
        self.inner.irq_enable(kind, first, count)
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        self.push(Ev::IrqOff);
        self.inner.irq_disable(kind)
    }
    fn reset(&self) -> Result<(), FunctionError> {
        self.push(Ev::Flr);
        self.inner.reset()
    }
}

fn take(log: &Log) -> Vec<Ev> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// Everything but reads (the order of reads is polling detail; writes are the contract).
fn writes(evs: &[Ev]) -> Vec<Ev> {
    evs.iter()
        .filter(|e| !matches!(e, Ev::R(..) | Ev::CfgR(..)))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// DSA (groups A.x; model profile = the real SPR capability values of A.5)
// ---------------------------------------------------------------------------------------------

const REGION_IOVA: u64 = 0x1000_0000;
const DATA_IOVA: u64 = 0x2000_0000;
const DATA_LEN: usize = 1 << 16;

struct DsaRig {
    log: Log,
    model: Arc<DsaModel>,
    region: Arc<HostMemory>,
    data: Arc<HostMemory>,
    drv: CheckedDriver<'static, Dsa<'static, Rec<ModelFunction<DsaModel>>, StdClock>>,
}

fn dsa_rig() -> (DsaRig, Vec<Ev>) {
    let iommu = Iommu::new();
    let model = DsaModel::new(Arc::clone(&iommu), ExecMode::Immediate);
    let region = HostMemory::pages(dsa::layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    let data = HostMemory::pages(DATA_LEN).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    iommu.map_all(DATA_IOVA, &data).unwrap();
    // SAFETY: `region` stays alive in the rig while the driver uses it; the test reads it only
    // through HostMemory's copying accessors.
    let dma = unsafe { region.dma_region_unbounded(REGION_IOVA) };
    let log: Log = Arc::default();
    let f = Rec {
        inner: model.function(),
        log: Arc::clone(&log),
    };
    let mut drv = CheckedDriver::new(f, StdClock::new(), dma).unwrap();
    take(&log); // the probe's reads
    drv.init().unwrap();
    let init = take(&log);
    (
        DsaRig {
            log,
            model,
            region,
            data,
            drv,
        },
        init,
    )
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// SPR DSA bring-up, write by write (A.14 steps 1–10 with the SPR values of A.5:
/// WQCAP 0x3F000000080080 → 8 WQs, 128 entries, 32-byte WQCFG, ATS support; GENCAP
/// 0x40915F010F → max xfer shift 31, max batch shift 10; GRPCAP 0x36004 → 4 groups, 96 read
/// buffers; TABLE_OFFSET grpcfg 3 → 0x300, wqcfg 4 → 0x400).
#[test]
fn dsa_spr_bring_up_register_sequence() {
    let (_rig, init) = dsa_rig();
    let w = writes(&init);
    let mut want = Vec::new();
    // PCI COMMAND (0x04): memory space (bit 1) | bus master (bit 2) | INTx disable (bit 10).
    // The model's COMMAND starts at 0.
    want.push(Ev::CfgW(0x04, 2, 0x0406));
    // RESET_DEVICE: code 5 << 20.
    want.push(Ev::W(0, 0xA0, 4, 0x0050_0000));
    // WQCFG of WQ 0 at 0x400, 8 dwords (32-byte stride), 32-bit writes in dword order:
    // size 128; threshold 0; mode dedicated (bit 0) | ATS disable (bit 2, WQCAP bit 50 set) |
    // priority 1 (bits 7:4) = 0x15; max xfer 31 | max batch 10 << 5 = 0x15F (the real SPR WQ0
    // dword 3 in A.6); the rest 0.
    for (d, v) in [0x80u32, 0, 0x15, 0x15F, 0, 0, 0, 0]
        .into_iter()
        .enumerate()
    {
        want.push(Ev::W(0, 0x400 + 4 * d, 4, v.into()));
    }
    // WQs 1..7: size 0 (dword 0 only).
    for wq in 1..8 {
        want.push(Ev::W(0, 0x400 + 32 * wq, 4, 0));
    }
    // GRPCFG at 0x300, 64 bytes per group, 64-bit writes: WQ bitmap qwords 0..3, engine
    // bitmap, then (group 0 only) flags: TC-A = TC-B = 1 (VERSION 0x100 ≤ 0x200) and read
    // buffers allowed (bits 27:20) = GRPCAP total read buffers 96 = 0x60.
    for g in 0..4usize {
        let base = 0x300 + 64 * g;
        for q in 0..4 {
            let wqs = u64::from(g == 0 && q == 0);
            want.push(Ev::W(0, base + 8 * q, 8, wqs));
        }
        want.push(Ev::W(0, base + 32, 8, u64::from(g == 0)));
        if g == 0 {
            want.push(Ev::W(0, base + 40, 8, 0x0600_0009));
        }
    }
    // ENABLE_DEVICE (1 << 20), ENABLE_WQ (6 << 20 | WQ 0); no interrupt request (bit 31).
    want.push(Ev::W(0, 0xA0, 4, 0x0010_0000));
    want.push(Ev::W(0, 0xA0, 4, 0x0060_0000));
    // MSI-X vector 1 only (vector 0 is the misc vector; upstream dsa.c's MSI-X setup).
    want.push(Ev::IrqOn(1, 1));
    assert_eq!(w, want);

    // Every command waited for CMDSTS (0xA8, 32-bit) bit 31 to clear before the next CMD write.
    let mut saw_idle_since_cmd = true;
    for e in &init {
        match e {
            Ev::W(0, 0xA0, 4, _) => {
                assert!(
                    saw_idle_since_cmd,
                    "CMD written while the last was unchecked"
                );
                saw_idle_since_cmd = false;
            }
            Ev::R(0, 0xA8, 4, v) if v & (1 << 31) == 0 => saw_idle_since_cmd = true,
            Ev::R(0, 0xA8, w, _) => panic!("CMDSTS read with width {w}"),
            _ => {}
        }
    }
    assert!(saw_idle_since_cmd);
}

/// A single copy: one MEMMOVE through MOVDIR64B at BAR2 offset 0 (WQ 0, unlimited MSI-X
/// portal), priv = 1, PASID 0, flags CRAV | RCR = 0x0C, opcode 3 in byte 7, a zeroed 32-byte
/// aligned completion record, int_handle 0 (A.9, A.10, A.14 step 12, upstream dsa.c's memcpy).
#[test]
fn dsa_memmove_descriptor_fields() {
    let (mut rig, _) = dsa_rig();
    rig.data.fill(0, 256, 0x5a).unwrap();
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 256, 1)
        .unwrap();
    rig.drv.memcpy_wait(1_000_000_000).unwrap();
    let evs = take(&rig.log);
    let subs: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Submit(bar, off, d) => Some((*bar, *off, *d)),
            _ => None,
        })
        .collect();
    assert_eq!(subs.len(), 1);
    let (bar, off, d) = subs[0];
    assert_eq!((bar, off), (2, 0));
    assert_eq!(u32_at(&d, 0), 0x8000_0000, "PASID 0, privileged");
    assert_eq!(u32_at(&d, 4), 0x0300_000C, "MEMMOVE, CRAV | RCR");
    let cr = u64_at(&d, 8);
    assert_eq!(cr % 32, 0, "completion record 32-byte aligned");
    assert_eq!(u64_at(&d, 16), DATA_IOVA);
    assert_eq!(u64_at(&d, 24), DATA_IOVA + 4096);
    assert_eq!(u32_at(&d, 32), 256);
    assert_eq!(u16_at(&d, 36), 0, "no interrupt handle without RCI");
    assert!(d[38..].iter().all(|&b| b == 0), "reserved bytes zero");
    // The record the device wrote: status 1 (success) in byte 0.
    let mut rec = [0u8; 32];
    rig.region
        .read((cr - REGION_IOVA) as usize, &mut rec)
        .unwrap();
    assert_eq!(rec[0], 1);
    // No BAR0 write at all on the submission path (no doorbell register on DSA), apart from
    // a SWERR acknowledge, which needs SWERR valid and the model reports none.
    assert!(!evs.iter().any(|e| matches!(e, Ev::W(0, ..))));
}

/// `send_msi`: a descriptor with RCI (0x10) and interrupt handle 1 = MSI-X vector 1 (no
/// handles on SPR: CMDCAP absent), plus CRAV | RCR for the record the driver polls.
#[test]
fn dsa_send_msi_descriptor_requests_vector_1() {
    let (mut rig, _) = dsa_rig();
    rig.drv.send_msi().unwrap();
    let evs = take(&rig.log);
    let d = evs
        .iter()
        .find_map(|e| match e {
            Ev::Submit(2, 0, d) => Some(*d),
            _ => None,
        })
        .expect("one submission to WQ 0's portal");
    assert_eq!(u32_at(&d, 0), 0x8000_0000);
    assert_eq!(u32_at(&d, 4) & 0xff_ffff, 0x1C, "CRAV | RCR | RCI");
    assert_eq!(u64_at(&d, 8) % 32, 0);
    assert_eq!(u16_at(&d, 36), 1, "int_handle = MSI-X vector 1");
}

/// Batches (A.13, upstream dsa.c with count > 1): BATCH opcode 1 with a 64-byte aligned list and a count of
/// 2..=2^max_batch_shift; every batch but the last has CRAV only (record on error), the last
/// CRAV | RCR; the members are MEMMOVEs with CRAV and without RCR.
#[test]
fn dsa_batch_descriptor_fields() {
    let (mut rig, _) = dsa_rig();
    // 1024 copies per batch on SPR (2^10): 2050 copies = 1024 + 1024 + 2.
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 64, 2050)
        .unwrap();
    rig.drv.memcpy_wait(2_000_000_000).unwrap();
    let evs = take(&rig.log);
    let subs: Vec<[u8; 64]> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Submit(2, 0, d) => Some(*d),
            Ev::Submit(b, o, _) => panic!("submission to BAR{b} offset {o:#x}"),
            _ => None,
        })
        .collect();
    assert_eq!(subs.len(), 3);
    let counts: Vec<u32> = subs.iter().map(|d| u32_at(d, 32)).collect();
    assert_eq!(counts, [1024, 1024, 2]);
    let mut records = Vec::new();
    for (i, d) in subs.iter().enumerate() {
        assert_eq!(u32_at(d, 0), 0x8000_0000);
        // Every batch requests its record (CRAV | RCR): the driver waits for each one.
        let want = 0x0100_0000 | 0x0C;
        assert_eq!(u32_at(d, 4), want, "batch {i} opcode/flags");
        assert_eq!(u64_at(d, 8) % 32, 0);
        records.push(u64_at(d, 8));
        let list = u64_at(d, 16);
        assert_eq!(list % 64, 0, "batch list 64-byte aligned");
        // Members in DMA memory.
        let mut m = [0u8; 64];
        rig.region
            .read((list - REGION_IOVA) as usize, &mut m)
            .unwrap();
        assert_eq!(u32_at(&m, 0), 0x8000_0000);
        assert_eq!(u32_at(&m, 4), 0x0300_0004, "member: MEMMOVE, CRAV, no RCR");
        assert_eq!(u64_at(&m, 8) % 32, 0);
        assert_eq!(u32_at(&m, 32), 64);
    }
    records.sort_unstable();
    records.dedup();
    assert_eq!(records.len(), 3, "each batch has its own record");
}

/// A copy that never completes: after the timeout the driver abandons WQ 0 with ABORT_WQ,
/// whose operand is a WQ bitmap (bits 15:0) plus block (19:16), not a plain index (A.8):
/// CMD = 9 << 20 | 1 = 0x00900001. The wait first reads the record, never a register write.
#[test]
fn dsa_timeout_aborts_wq_with_bitmap_operand() {
    let (mut rig, _) = dsa_rig();
    rig.model.set_stuck(true);
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 64, 1)
        .unwrap();
    take(&rig.log);
    assert!(rig.drv.memcpy_wait(2_000_000).is_err());
    let w = writes(&take(&rig.log));
    let cmds: Vec<_> = w
        .iter()
        .filter_map(|e| match e {
            Ev::W(0, 0xA0, 4, v) => Some(*v),
            _ => None,
        })
        .collect();
    assert_eq!(cmds.first(), Some(&0x0090_0001), "{w:?}");
    rig.model.set_stuck(false);
}

/// SWERR (0xC0) is read as 64-bit qwords and acknowledged by writing 1s to its RW1C bits 1:0
/// (Valid, Overflow) of qword 0, a 64-bit write (A.5 SWERR).
#[test]
fn dsa_swerr_is_acknowledged_at_0xc0() {
    let (mut rig, _) = dsa_rig();
    // Valid (bit 0), error code 0x52 (bits 15:8).
    rig.model
        .inject_swerr(passthru_core::idxd::SwErr([0x5201, 0, 0, 0]));
    rig.model.set_stuck(true);
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 64, 1)
        .unwrap();
    let w = writes(&take(&rig.log));
    assert!(w.contains(&Ev::W(0, 0xC0, 8, 0x3)), "{w:?}");
    rig.model.set_stuck(false);
}

// ---------------------------------------------------------------------------------------------
// CBDMA (groups B.x; upstream lib/drivers/ioat/ioat.c). Channel 0 registers at BAR0 + 0x80.
// ---------------------------------------------------------------------------------------------

const CH: usize = 0x80;
const CHANCTRL: usize = CH;
const CHANCMD: usize = CH + 0x04;
const DMACOUNT: usize = CH + 0x06;
const CHANSTS: usize = CH + 0x08;
const CHAINADDR: usize = CH + 0x10;
const CHANCMP: usize = CH + 0x18;
const CHANERR: usize = CH + 0x28;
const INTRCTRL: usize = 0x03;

struct IoatRig {
    log: Log,
    model: Arc<CbdmaModel>,
    region: Arc<HostMemory>,
    drv: CheckedDriver<'static, Ioat<'static, Rec<ModelFunction<CbdmaModel>>, StdClock>>,
}

fn ioat_rig() -> (IoatRig, Vec<Ev>) {
    let iommu = Iommu::new();
    let region = HostMemory::pages(4096).unwrap();
    let buf = HostMemory::pages(1 << 16).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    iommu.map_all(DATA_IOVA, &buf).unwrap();
    // SAFETY: `region` stays alive in the rig while the driver uses it.
    let dma = unsafe { region.dma_region_unbounded(REGION_IOVA) };
    let model = CbdmaModel::new(iommu, CbdmaConfig::default());
    let log: Log = Arc::default();
    let f = Rec {
        inner: ModelFunction::new(Arc::clone(&model)),
        log: Arc::clone(&log),
    };
    let mut drv = CheckedDriver::new(f, StdClock::new(), dma).unwrap();
    take(&log); // the probe's reads
    drv.init().unwrap();
    let init = take(&log);
    (
        IoatRig {
            log,
            model,
            region,
            drv,
        },
        init,
    )
}

/// Bring-up: COMMAND = MEM | MASTER | INTx disable; channel reset = CHANCMD (8-bit, chan+0x04)
/// 0x20, polled until bit 5 reads 0, then CHANSTS (64-bit) HALTED (3); INTRCTRL (8-bit, 0x03)
/// with MSI-X vector control (bit 3) set; every MSI-X vector from 0 (B.7, upstream ioat.c's init).
#[test]
fn ioat_bring_up_register_sequence() {
    let (_rig, init) = ioat_rig();
    let w = writes(&init);
    assert_eq!(w.first(), Some(&Ev::CfgW(0x04, 2, 0x0406)));
    let bar_writes: Vec<_> = w.iter().filter(|e| matches!(e, Ev::W(..))).collect();
    assert_eq!(bar_writes[0], &Ev::W(0, CHANCMD, 1, 0x20), "reset first");
    let intr = bar_writes[1];
    assert!(
        matches!(intr, Ev::W(0, INTRCTRL, 1, v) if v & 0x08 != 0),
        "then INTRCTRL with MSI-X vector control: {intr:?}"
    );
    assert_eq!(bar_writes.len(), 2);
    assert!(matches!(w.last(), Some(Ev::IrqOn(0, n)) if *n >= 1));
    // After the reset write: CHANCMD polled as a byte until bit 5 clears, then CHANSTS read as
    // one 64-bit value until its state bits (2:0) are HALTED.
    let at = init
        .iter()
        .position(|e| *e == Ev::W(0, CHANCMD, 1, 0x20))
        .unwrap();
    let after = &init[at + 1..];
    let cmd_clear = after
        .iter()
        .position(|e| matches!(e, Ev::R(0, CHANCMD, 1, v) if v & 0x20 == 0))
        .expect("CHANCMD polled until the reset bit clears");
    assert!(after[cmd_clear + 1..]
        .iter()
        .any(|e| matches!(e, Ev::R(0, CHANSTS, 8, v) if v & 7 == 3)));
    for e in &init {
        if let Ev::R(0, CHANSTS, w, _) | Ev::R(0, CHANCMD, w, _) = e {
            assert!(
                matches!(e, Ev::R(0, CHANSTS, 8, _) | Ev::R(0, CHANCMD, 1, _)),
                "width {w}"
            );
        }
    }
}

/// A copy of `count`: descriptor {size, ctl = opcode 0 | completion write (bit 3), src, dst,
/// next = itself}, CHANCMP and CHAINADDR as low-then-high 32-bit writes (Linux's order),
/// CHANCTRL (16-bit) = re-arm | error completion | abort on error, DMACOUNT (16-bit) = count
/// as the last write (the doorbell), then SUSPEND (0x04) after DONE.
#[test]
fn ioat_copy_register_sequence() {
    let (mut rig, _) = ioat_rig();
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 512, 3)
        .unwrap();
    let start = take(&rig.log);
    let w: Vec<_> = writes(&start)
        .into_iter()
        .filter(|e| matches!(e, Ev::W(..)))
        .collect();
    let desc_iova = REGION_IOVA + ioat::layout::COPY_DESC as u64;
    let wb_iova = REGION_IOVA + ioat::layout::WRITEBACK as u64;
    assert_eq!(
        w,
        [
            Ev::W(0, CHANCMP, 4, wb_iova & 0xffff_ffff),
            Ev::W(0, CHANCMP + 4, 4, wb_iova >> 32),
            Ev::W(0, CHAINADDR, 4, desc_iova & 0xffff_ffff),
            Ev::W(0, CHAINADDR + 4, 4, desc_iova >> 32),
            Ev::W(0, CHANCTRL, 2, 0x000D),
            Ev::W(0, DMACOUNT, 2, 3),
        ]
    );
    let mut d = [0u8; 64];
    rig.region.read(ioat::layout::COPY_DESC, &mut d).unwrap();
    assert_eq!(u32_at(&d, 0), 512);
    assert_eq!(
        u32_at(&d, 4),
        0x0000_0008,
        "copy opcode 0, completion write"
    );
    assert_eq!(u64_at(&d, 8), DATA_IOVA);
    assert_eq!(u64_at(&d, 16), DATA_IOVA + 4096);
    assert_eq!(u64_at(&d, 24), desc_iova, "self-linked");
    assert_eq!(wb_iova % 8, 0, "write-back 8-byte aligned");
    rig.drv.memcpy_wait(1_000_000_000).unwrap();
    let wait = take(&rig.log);
    assert_eq!(
        writes(&wait)
            .into_iter()
            .filter(|e| matches!(e, Ev::W(..)))
            .collect::<Vec<_>>(),
        [Ev::W(0, CHANCMD, 1, 0x04)]
    );
    assert_eq!(rig.model.completed_descriptors(0), 3);
}

/// `send_msi`: the NULL descriptor of Linux's interrupt trick: ctl = NULL (bit 5) | completion
/// write (bit 3) | interrupt enable (bit 0), size 1 (CB 3.0 erratum: not 0), DMACOUNT 1.
#[test]
fn ioat_send_msi_null_descriptor() {
    let (mut rig, _) = ioat_rig();
    rig.drv.send_msi().unwrap();
    let evs = take(&rig.log);
    assert!(writes(&evs).contains(&Ev::W(0, DMACOUNT, 2, 1)));
    let mut d = [0u8; 64];
    rig.region.read(ioat::layout::NULL_DESC, &mut d).unwrap();
    assert_eq!(u32_at(&d, 0), 1);
    assert_eq!(u32_at(&d, 4), 0x0000_0029);
}

/// Error clearing (B.3; upstream ioat.c writes DMAUNCERRSTS back to the CHANERR_INT offset instead): CHANERR_INT (config 0x180) and CHANERR (chan+0x28) are
/// written back with the values read from them, and the DMAUNCERRSTS value (config 0x148)
/// never lands in CHANERR_INT (upstream's defect).
#[test]
fn ioat_error_clearing_offsets() {
    let (mut rig, _) = ioat_rig();
    rig.model.inject_chanerr_int(0x0000_0100);
    rig.model.inject_dmauncerrsts(0x0000_0010);
    rig.model
        .inject_chanerr_next(0, passthru_core::ioat::ChanErr::from_bits_retain(0x100));
    rig.drv
        .memcpy_start(DATA_IOVA, DATA_IOVA + 4096, 64, 1)
        .unwrap();
    assert!(rig.drv.memcpy_wait(1_000_000_000).is_err());
    let evs = take(&rig.log);
    let w = writes(&evs);
    assert!(w.contains(&Ev::CfgW(0x180, 4, 0x100)), "{w:?}");
    assert!(!w.contains(&Ev::CfgW(0x180, 4, 0x10)));
    assert!(w.contains(&Ev::W(0, CHANERR, 4, 0x100)));
    // The reset follows the clearing.
    let clear = w
        .iter()
        .position(|e| *e == Ev::W(0, CHANERR, 4, 0x100))
        .unwrap();
    let reset = w
        .iter()
        .position(|e| *e == Ev::W(0, CHANCMD, 1, 0x20))
        .unwrap();
    assert!(clear < reset);
}
