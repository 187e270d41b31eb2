//! The driver seam on every model (dsa, ioat/CBDMA, edu), in both execution modes:
//!
//! * interrupt-driven waits ([`WaitMode::Interrupt`]): the copy completes, its interrupt is
//!   consumed by the wait (none left pending), multi-copy requests work, a faulting copy still
//!   comes back as the device's error, and a dropped interrupt (the MSI sink's drop injection)
//!   is a clear [`DriverError::InterruptTimeout`] after which the driver works again;
//! * the one state check: `memcpy_wait` with nothing pending and `memcpy_start` while busy are
//!   refused the same way by every driver, without reaching the device.
//!
//! igb has no model; its misuse test is in `drivers/src/igb/tests.rs`.

use std::sync::Arc;

use passthru_core::driver::{CheckedDriver, Driver, DriverError, DriverState, WaitMode};
use passthru_core::mmio::IrqKind;
use passthru_drivers::dsa::Dsa;
use passthru_drivers::edu::Edu;
use passthru_drivers::ioat::Ioat;
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::dsa::DsaModel;
use passthru_models::edu::EduModel;
use passthru_models::exec::ExecMode;
use passthru_models::function::{DeviceModel, ModelFunction};
use passthru_models::iommu::{HostMemory, Iommu};
use passthru_models::irq::MsiSink;
use passthru_models::StdClock;

const REGION_IOVA: u64 = 0x1_0000_0000;
const DATA_IOVA: u64 = 0x1_4000_0000;
const DATA_LEN: usize = 64 << 10;
const UNMAPPED_IOVA: u64 = 0x2_0000_0000;
/// Copy size (edu's buffer is 4 KiB).
const SIZE: usize = 4096;
const SRC: usize = 0;
const DST: usize = 16 << 10;
/// A second destination, for the copy that must never happen.
const DST2: usize = 32 << 10;
const TIMEOUT_NS: u64 = 5_000_000_000;
/// How long a wait for a dropped interrupt lasts.
const SHORT_NS: u64 = 50_000_000;

type F<M> = ModelFunction<M>;

/// A driver on a model with its memory; fields drop in order (driver first).
struct Rig<D: Driver<'static>> {
    driver: CheckedDriver<'static, D>,
    msi: Arc<MsiSink>,
    data: Arc<HostMemory>,
    _region: Arc<HostMemory>,
    name: &'static str,
    kind: IrqKind,
    vector: u32,
}

fn rig<M, D>(iommu: Arc<Iommu>, function: F<M>, kind: IrqKind) -> Rig<D>
where
    M: DeviceModel,
    D: Driver<'static, Function = F<M>, Clock = StdClock>,
{
    let matched = D::probe(&function).expect("the driver matches its model");
    let region = HostMemory::pages(matched.region_size.max(1).next_multiple_of(4096)).unwrap();
    let data = HostMemory::pages(DATA_LEN).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    iommu.map_all(DATA_IOVA, &data).unwrap();
    let msi = Arc::clone(function.msi());
    // SAFETY: `region` is kept in the rig, which drops the driver first.
    let dma = unsafe { region.dma_region_unbounded(REGION_IOVA) };
    let mut driver = CheckedDriver::new(function, StdClock::new(), dma).unwrap();
    let limits = driver.init().unwrap();
    Rig {
        driver,
        msi,
        data,
        _region: region,
        name: matched.name,
        kind,
        vector: u32::from(limits.msi_vector),
    }
}

fn dsa(mode: ExecMode) -> Rig<Dsa<'static, F<DsaModel>, StdClock>> {
    let iommu = Iommu::new();
    let model = DsaModel::new(Arc::clone(&iommu), mode);
    rig(iommu, model.function(), IrqKind::MsiX)
}

fn ioat(mode: ExecMode) -> Rig<Ioat<'static, F<CbdmaModel>, StdClock>> {
    let iommu = Iommu::new();
    let model = CbdmaModel::new(
        Arc::clone(&iommu),
        CbdmaConfig {
            mode,
            ..CbdmaConfig::default()
        },
    );
    rig(iommu, model.function(), IrqKind::MsiX)
}

fn edu(mode: ExecMode) -> Rig<Edu<F<EduModel>, StdClock>> {
    let iommu = Iommu::new();
    let model = EduModel::with_dma_mask(Arc::clone(&iommu), mode, u64::MAX);
    rig(iommu, model.function(), IrqKind::Msi)
}

fn iova(off: usize) -> u64 {
    DATA_IOVA + off as u64
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> Rig<D> {
    /// Fill src with a pattern depending on `seed`, and `dst` with something else.
    fn prepare(&self, seed: u8, dst: usize) -> Vec<u8> {
        let src: Vec<u8> = (0..SIZE)
            .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
            .collect();
        self.data.write(SRC, &src).unwrap();
        self.data.fill(dst, SIZE, !src[0]).unwrap();
        src
    }

    fn at(&self, off: usize) -> Vec<u8> {
        let mut out = vec![0; SIZE];
        self.data.read(off, &mut out).unwrap();
        out
    }

    fn assert_no_msi(&self, after: &str) {
        assert_eq!(
            self.msi.take(self.vector),
            0,
            "{}: an interrupt is left pending after {after}",
            self.name
        );
    }

    fn interrupt_copy_consumes_its_interrupt(&mut self) {
        for seed in [3u8, 5] {
            let src = self.prepare(seed, DST);
            self.driver
                .memcpy_with(
                    iova(SRC),
                    iova(DST),
                    SIZE as u64,
                    TIMEOUT_NS,
                    WaitMode::Interrupt,
                )
                .unwrap_or_else(|e| panic!("{}: interrupt-mode memcpy: {e}", self.name));
            assert_eq!(self.at(DST), src, "{}: data copied", self.name);
            self.assert_no_msi("an interrupt-mode copy");
        }
        // Poll mode still raises nothing.
        let src = self.prepare(7, DST);
        self.driver
            .memcpy(iova(SRC), iova(DST), SIZE as u64, TIMEOUT_NS)
            .unwrap();
        assert_eq!(self.at(DST), src);
        self.assert_no_msi("a polled copy");
    }

    fn interrupt_multi_copy(&mut self, count: u64) {
        let src = self.prepare(9, DST);
        self.driver
            .memcpy_start_with(
                iova(SRC),
                iova(DST),
                SIZE as u64,
                count,
                WaitMode::Interrupt,
            )
            .unwrap();
        self.driver
            .memcpy_wait(TIMEOUT_NS)
            .unwrap_or_else(|e| panic!("{}: {count} interrupt-mode copies: {e}", self.name));
        assert_eq!(self.at(DST), src);
        self.assert_no_msi("interrupt-mode copies");
    }

    fn dropped_interrupt_times_out_clearly(&mut self) {
        let src = self.prepare(11, DST);
        self.msi.inject_drop(self.vector, 1);
        let e = self
            .driver
            .memcpy_with(
                iova(SRC),
                iova(DST),
                SIZE as u64,
                SHORT_NS,
                WaitMode::Interrupt,
            )
            .unwrap_err();
        let DriverError::InterruptTimeout {
            device,
            kind,
            vector,
            waited_ns,
            completed,
        } = e
        else {
            panic!("{}: expected an interrupt timeout, got {e:?}", self.name);
        };
        assert_eq!(
            (device, kind, vector, completed),
            (self.name, self.kind, self.vector, true),
            "{e:?}"
        );
        assert!(
            (SHORT_NS..SHORT_NS + 2_000_000_000).contains(&waited_ns),
            "{}: waited {waited_ns} ns for a {SHORT_NS} ns timeout",
            self.name
        );
        let msg = e.to_string();
        assert!(
            msg.contains(self.name) && msg.contains("lost"),
            "the message names the device and says the device finished: {msg}"
        );
        assert_eq!(self.driver.state(), DriverState::Ready);
        self.assert_no_msi("a dropped interrupt");
        if self.name != "edu" {
            // dsa and CBDMA copy in one operation: the data is there, only the MSI was lost.
            assert_eq!(self.at(DST), src);
        }
        // The driver works again, in both modes.
        self.interrupt_copy_consumes_its_interrupt();
    }

    fn faulting_interrupt_copy(&mut self) {
        self.prepare(13, DST);
        let r = self.driver.memcpy_with(
            UNMAPPED_IOVA,
            iova(DST),
            SIZE as u64,
            TIMEOUT_NS,
            WaitMode::Interrupt,
        );
        match (self.name, &r) {
            // edu cannot see the IOMMU's refusal: the DMA "completes" and interrupts.
            ("edu", Ok(())) => {}
            (_, Err(DriverError::Device(_))) => {}
            _ => panic!("{}: faulting interrupt-mode copy returned {r:?}", self.name),
        }
        self.assert_no_msi("a faulting interrupt-mode copy");
        self.interrupt_copy_consumes_its_interrupt();
    }

    fn misuse_is_refused_by_the_one_check(&mut self) {
        assert_eq!(
            self.driver.memcpy_wait(TIMEOUT_NS),
            Err(DriverError::OutOfOrder {
                op: "memcpy_wait",
                state: DriverState::Ready
            }),
            "{}: wait with nothing pending",
            self.name
        );
        let src = self.prepare(17, DST);
        self.data.fill(DST2, SIZE, 0xc3).unwrap();
        self.driver
            .memcpy_start(iova(SRC), iova(DST), SIZE as u64, 1)
            .unwrap();
        assert_eq!(
            self.driver
                .memcpy_start(iova(SRC), iova(DST2), SIZE as u64, 1),
            Err(DriverError::OutOfOrder {
                op: "memcpy_start",
                state: DriverState::Busy
            }),
            "{}: start while busy",
            self.name
        );
        assert_eq!(
            self.driver.send_msi(),
            Err(DriverError::OutOfOrder {
                op: "send_msi",
                state: DriverState::Busy
            })
        );
        self.driver.memcpy_wait(TIMEOUT_NS).unwrap();
        assert_eq!(self.at(DST), src, "{}: the first copy completed", self.name);
        assert_eq!(
            self.at(DST2),
            vec![0xc3; SIZE],
            "{}: the refused copy never reached the device",
            self.name
        );
        assert_eq!(
            self.driver.memcpy_wait(TIMEOUT_NS),
            Err(DriverError::OutOfOrder {
                op: "memcpy_wait",
                state: DriverState::Ready
            }),
            "{}: a second wait",
            self.name
        );
        self.assert_no_msi("refused calls");
    }
}

macro_rules! per_model {
    ($($name:ident => $body:expr;)*) => {
        mod dsa_model {
            use super::*;
            $(
                #[test]
                fn $name() {
                    for mode in [ExecMode::Immediate, ExecMode::Threaded] {
                        let mut r = dsa(mode);
                        let f: fn(&mut Rig<Dsa<'static, F<DsaModel>, StdClock>>) = $body;
                        f(&mut r);
                    }
                }
            )*
        }
        mod ioat_model {
            use super::*;
            $(
                #[test]
                fn $name() {
                    for mode in [ExecMode::Immediate, ExecMode::Threaded] {
                        let mut r = ioat(mode);
                        let f: fn(&mut Rig<Ioat<'static, F<CbdmaModel>, StdClock>>) = $body;
                        f(&mut r);
                    }
                }
            )*
        }
        mod edu_model {
            use super::*;
            $(
                #[test]
                fn $name() {
                    for mode in [ExecMode::Immediate, ExecMode::Threaded] {
                        let mut r = edu(mode);
                        let f: fn(&mut Rig<Edu<F<EduModel>, StdClock>>) = $body;
                        f(&mut r);
                    }
                }
            )*
        }
    };
}

per_model! {
    interrupt_wait_copies_and_consumes_the_interrupt => |r| r.interrupt_copy_consumes_its_interrupt();
    interrupt_wait_covers_multi_copy_requests => |r| r.interrupt_multi_copy(3);
    interrupt_wait_times_out_clearly_when_the_interrupt_is_dropped => |r| r.dropped_interrupt_times_out_clearly();
    interrupt_wait_reports_faulting_copies => |r| r.faulting_interrupt_copy();
    wait_without_copy_and_start_while_busy_are_refused => |r| r.misuse_is_refused_by_the_one_check();
}
