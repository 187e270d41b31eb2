//! `vfio_pci_guest_driver_test`: upstream's driver test cases run **by the driver inside a KVM
//! guest** (nothing upstream has this program).
//!
//! Each test builds a one-vCPU guest whose device 0 is either a software model served from MMIO
//! exits (no device given) or a VFIO device passed through (BARs as memory slots, guest RAM
//! IOMMU-mapped at IOVA = GPA, MSI/MSI-X eventfds to KVM irqfds). The guest main
//! (`driver_test` in the guest image) probes `dsa`, `ioat`, `igb`, `edu` in that order, runs
//! one case with the driver and counts the device's interrupts in its own handler: `send_msi`
//! must arrive exactly once on the guest vector the VMM routed, and no copy may raise one. Data
//! is filled and compared by the host in the shared DMA window (the guest asks with host
//! requests), so guest code never touches bulk data.
//!
//! Names:
//!
//! | mode | names |
//! |---|---|
//! | no device | `dsa.<test>`, `ioat.<test>`, `edu.<test>` (models executing immediately), `dsa.threaded.<test>`, ... (models on their own thread, like hardware), `dsa.irq.<test>`, ... (threaded, every copy waited for by its completion interrupt: the driver sleeps in the guest's `HLT` wait; not upstream) |
//! | a device | `vfio_pci_guest_driver_test.<iommu mode>.<test>`, the five IOMMU modes |
//!
//! Faulting copies: on the DSA and CBDMA models the device's decoded error naming the faulting
//! side is required; on the edu model (which cannot report DMA faults) the copy must succeed
//! and the model's IOMMU must have recorded the fault; on real devices the outcome is printed
//! (upstream: not all devices report). `memcpy_storm` copies `$PASSTHRU_STORM_BYTES` in total
//! (default [`DEFAULT_STORM_BYTES`] on models, upstream's 250 GiB on devices; the count is
//! bounded by the driver's `max_memcpy_count` either way).
//!
//! Without a usable `/dev/kvm` every test is SKIP with the reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use passthru_core::driver::WaitMode;
use passthru_guest::device::kvm::KvmDeviceHost;
use passthru_guest::device::model::ModelDevice;
use passthru_guest::device::vfio::PassthroughDevice;
use passthru_guest::device::{
    slot_read, slot_write, DeviceLayout, Devices, GuestDevice, SlotMemory,
};
use passthru_guest::rt::driver_test::{self as abi, Case};
use passthru_guest::{HandlerError, HostRequest, HostRequestHandler, Vm, VmConfig, VmError};
use passthru_linux::{Iommu, IommuMode, VfioPciDevice};
use passthru_models::exec::ExecMode;

use super::models::ModelKind;
use crate::harness::{
    Bdf, DeviceSelector, DeviceSource, Fixture, Rng, Suite, TestError, TestResult,
};

/// The program name.
pub const PROGRAM: &str = "vfio_pci_guest_driver_test";

/// The DMA window: the first half is the driver's region, the second the memcpy region
/// (source, then destination), so a copy is at most 1 MiB.
pub const WINDOW_BYTES: u64 = 4 << 20;

/// The guest vector of device vector 0 (device vector `v` arrives as `0x40 + v`).
pub const VECTOR_BASE: u8 = 0x40;

/// Storm total on the models unless `$PASSTHRU_STORM_BYTES` says otherwise.
pub const DEFAULT_STORM_BYTES: u64 = 16 << 20;

/// The device of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A software model in an execution mode; copies waited for as `WaitMode` says.
    Model(ModelKind, ExecMode, WaitMode),
    /// A VFIO device opened in an IOMMU mode.
    Vfio(Bdf, IommuMode),
}

impl Target {
    fn wait_mode(self) -> WaitMode {
        match self {
            Target::Model(_, _, w) => w,
            Target::Vfio(..) => WaitMode::Poll,
        }
    }
}

/// Reports the IOMMU faults a model recorded so far, as (IOVA, write).
type FaultLog = Box<dyn Fn() -> Vec<(u64, bool)> + Send + Sync>;

/// The host side of the guest's data requests: fill and compare in the DMA window, and the
/// model's IOMMU faults.
struct DataHandler {
    window: Arc<dyn SlotMemory>,
    window_gpa: u64,
    faults: Option<FaultLog>,
    faults_seen: Mutex<usize>,
}

impl DataHandler {
    fn offset(&self, gpa: u64, len: u64) -> Result<usize, HandlerError> {
        gpa.checked_sub(self.window_gpa)
            .filter(|o| {
                o.checked_add(len)
                    .is_some_and(|e| e <= self.window.len() as u64)
            })
            .map(|o| o as usize)
            .ok_or_else(|| {
                HandlerError(format!(
                    "{gpa:#x}+{len:#x} is outside the DMA window {:#x}+{:#x}",
                    self.window_gpa,
                    self.window.len()
                ))
            })
    }
}

impl HostRequestHandler for DataHandler {
    fn handle(
        &self,
        request: &HostRequest,
        _memory: &passthru_guest::GuestMemory,
    ) -> Result<[u64; 4], HandlerError> {
        let a = request.args;
        let err = |e: String| HandlerError(e);
        match request.code {
            abi::REQ_FILL => {
                let (src, dst) = (self.offset(a[0], a[2])?, self.offset(a[1], a[2])?);
                let mut buf = vec![0u8; a[2] as usize];
                Rng::new(a[3]).fill(&mut buf);
                slot_write(&*self.window, src, &buf).map_err(err)?;
                // Every destination byte differs from its source byte.
                buf.iter_mut().for_each(|b| *b = !*b);
                slot_write(&*self.window, dst, &buf).map_err(err)?;
                Ok([0; 4])
            }
            abi::REQ_CHECK => {
                let (src, dst) = (self.offset(a[0], a[2])?, self.offset(a[1], a[2])?);
                let mut x = vec![0u8; a[2] as usize];
                let mut y = vec![0u8; a[2] as usize];
                slot_read(&*self.window, src, &mut x).map_err(err)?;
                slot_read(&*self.window, dst, &mut y).map_err(err)?;
                let diff = x.iter().zip(&y).position(|(p, q)| p != q);
                Ok([diff.map_or(abi::SAME, |d| d as u64), 0, 0, 0])
            }
            abi::REQ_FAULTS => {
                let Some(f) = &self.faults else {
                    return Err(HandlerError(
                        "this device's IOMMU faults cannot be observed".into(),
                    ));
                };
                let all = f();
                let mut seen = self.faults_seen.lock().unwrap_or_else(|e| e.into_inner());
                let new = all.get(*seen..).unwrap_or(&[]);
                let (start, len, write) = (a[0], a[1], a[2] != 0);
                let n = new
                    .iter()
                    .filter(|(iova, w)| {
                        *w == write && (start..start.saturating_add(len)).contains(iova)
                    })
                    .count();
                *seen = all.len();
                Ok([n as u64, 0, 0, 0])
            }
            code => Err(HandlerError(format!("unknown host request {code:#x}"))),
        }
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> TestError {
    TestError::fail(format!("{what}: {e}"))
}

/// The device for `target`, the fault policy, and the fault observer.
type Built = (Arc<dyn GuestDevice>, u64, Option<FaultLog>);

fn build(target: Target, layout: DeviceLayout) -> TestResult<Built> {
    let e = |x| fail("device setup", x);
    Ok(match target {
        Target::Model(ModelKind::Dsa, mode, _) => (
            Arc::new(ModelDevice::dsa(mode, layout).map_err(e)?),
            abi::POLICY_DEVICE_ERROR,
            None,
        ),
        Target::Model(ModelKind::Ioat, mode, _) => (
            Arc::new(ModelDevice::ioat(mode, layout).map_err(e)?),
            abi::POLICY_DEVICE_ERROR,
            None,
        ),
        Target::Model(ModelKind::Edu, mode, _) => {
            let dev = ModelDevice::edu(mode, layout).map_err(e)?;
            let model = Arc::clone(dev.model());
            (
                Arc::new(dev),
                abi::POLICY_SILENT,
                Some(Box::new(move || {
                    model.faults().iter().map(|f| (f.iova, f.write)).collect()
                })),
            )
        }
        Target::Vfio(bdf, mode) => {
            let name = bdf.to_string();
            let iommu = Iommu::open(mode).map_err(|x| {
                if x.is_environment() {
                    TestError::skip(format!("{mode}: {x}"))
                } else {
                    fail(mode.name(), x)
                }
            })?;
            let dev = VfioPciDevice::open(bdf, &iommu).map_err(|x| {
                if x.is_environment() {
                    TestError::skip(format!("{name}: {x}"))
                } else {
                    fail(&name, x)
                }
            })?;
            let g = PassthroughDevice::vfio(Arc::new(dev), iommu, layout).map_err(e)?;
            (Arc::new(g), abi::POLICY_ANY, None)
        }
    })
}

/// Run `case` in a fresh guest on `target`.
pub fn run_case(ctx: &crate::harness::Ctx, target: Target, case: Case, storm: u64) -> TestResult {
    passthru_guest::kvm_available().map_err(TestError::skip)?;
    let layout = DeviceLayout::standard(WINDOW_BYTES);
    let built = build(target, layout)?;
    let wait = target.wait_mode();
    let run = CaseRun {
        case,
        wait,
        seed: ctx.seed(),
        storm,
        apic_id: 0,
    };
    run_built(built, layout, run, &mut |l| ctx.log(l))
}

/// What one guest run does.
#[derive(Debug, Clone, Copy)]
struct CaseRun {
    case: Case,
    wait: WaitMode,
    seed: u64,
    storm: u64,
    /// The vCPU's KVM id (= its APIC id, where the device's interrupts are routed).
    apic_id: u32,
}

/// Run `case` in a fresh guest on an already built device (`(device, fault policy, fault
/// observer)`); guest prints go to `log`.
fn run_built(
    (dev, policy, faults): Built,
    layout: DeviceLayout,
    run: CaseRun,
    log: &mut dyn FnMut(String),
) -> TestResult {
    let CaseRun {
        case,
        wait,
        seed,
        storm,
        apic_id,
    } = run;
    let flags = match wait {
        WaitMode::Poll => 0,
        WaitMode::Interrupt => abi::FLAG_WAIT_INTERRUPT,
    };
    let handler = Arc::new(DataHandler {
        window: dev.dma_window(),
        window_gpa: layout.dma_gpa,
        faults,
        faults_seen: Mutex::new(0),
    });
    // KVM starts only vCPU id 0 as the boot CPU: a case on another APIC id runs on a second
    // vCPU while vCPU 0 returns at once.
    let (ids, runner): (&[u32], u64) = if apic_id == 0 {
        (&[0], 0)
    } else {
        (&[0, apic_id], 1)
    };
    let config = VmConfig::new(abi::MAIN)
        .vcpu_ids(ids)
        .echo_prints(false)
        .arg(abi::ARG_CASE, case as u64)
        .arg(abi::ARG_WINDOW, layout.dma_gpa)
        .arg(abi::ARG_WINDOW_LEN, layout.dma_len)
        .arg(abi::ARG_UNMAPPED, layout.unmapped_gpa)
        .arg(abi::ARG_STORM_BYTES, storm)
        .arg(abi::ARG_VECTOR_BASE, u64::from(VECTOR_BASE))
        .arg(abi::ARG_MODE, policy | flags | runner << abi::RUNNER_SHIFT)
        .arg(abi::ARG_SEED, seed);
    let mut vm = Vm::new(config).map_err(|e| match e {
        VmError::KvmUnavailable(_) | VmError::MissingCapability(_) => {
            TestError::skip(e.to_string())
        }
        e => fail("VM", e),
    })?;
    let mut devices = Devices::new();
    devices
        .push(Arc::clone(&dev))
        .map_err(|e| fail("device", e))?;
    let host = KvmDeviceHost::attach(&vm, devices, Some(handler as Arc<dyn HostRequestHandler>))
        .map_err(|e| fail("attach", e))?;
    // The guest's own deadline is the upstream per-test timeout; the harness allows more
    // (`with_cases`) so a guest timeout is reported as such.
    let r = vm.run_until_done(super::case_timeout(case));
    for (_, line) in vm.take_prints() {
        log(format!("guest: {line}"));
    }
    host.detach();
    if r.is_err() {
        // Where the guest's device accesses went, for the failure report.
        for line in dev.exit_summary() {
            log(format!("{}: {line}", dev.name()));
        }
    }
    r.map(|_| ()).map_err(|e| TestError::fail(e.to_string()))
}

fn with_cases<V: Send + Sync + 'static>(
    mut f: Fixture<V, Target>,
    storm: fn() -> u64,
) -> Fixture<V, Target> {
    for case in Case::ALL {
        let timeout = match case {
            Case::MemcpyStorm => Duration::from_secs(90),
            _ => Duration::from_secs(45),
        };
        f = f.test_with_timeout(case.name(), timeout, move |ctx, _, target| {
            run_case(ctx, *target, case, storm())
        });
    }
    f
}

fn model_storm() -> u64 {
    super::storm_bytes(DEFAULT_STORM_BYTES)
}

fn device_storm() -> u64 {
    super::storm_bytes(super::UPSTREAM_STORM_BYTES)
}

/// The suite on the models: `dsa.*`, `dsa.threaded.*`, `dsa.irq.*`, and the same for `ioat`
/// and `edu`.
pub fn model_suite() -> Suite {
    let mut s = Suite::new(PROGRAM).devices(DeviceSelector::none());
    for kind in ModelKind::ALL {
        s = s.fixture(with_cases(
            Fixture::new(kind.name(), move |_| {
                Ok(Target::Model(kind, ExecMode::Immediate, WaitMode::Poll))
            }),
            model_storm,
        ));
        s = s.fixture(with_cases(
            Fixture::with_setup(
                kind.name(),
                move |_, (exec, wait): &(ExecMode, WaitMode)| Ok(Target::Model(kind, *exec, *wait)),
            )
            .variant("threaded", (ExecMode::Threaded, WaitMode::Poll))
            .variant("irq", (ExecMode::Threaded, WaitMode::Interrupt)),
            model_storm,
        ));
    }
    s
}

/// The suite on a device: fixture `vfio_pci_guest_driver_test`, the five IOMMU modes × seven
/// cases.
pub fn device_suite() -> Suite {
    let mut f = Fixture::with_setup(PROGRAM, |ctx, mode: &IommuMode| {
        Ok(Target::Vfio(ctx.bdf()?, *mode))
    });
    for mode in IommuMode::ALL {
        f = f.variant(mode.name(), mode);
    }
    Suite::new(PROGRAM)
        .devices(super::vfio::selector())
        .before_all(|_| {
            passthru_guest::kvm_available()
                .map(|()| None)
                .map_err(TestError::skip)
        })
        .fixture(with_cases(f, device_storm))
}

/// Run the program with `args` (without the program name): on the devices the arguments or
/// environment name, else on the models. Returns the exit code.
pub fn run(args: &[String], source: &DeviceSource) -> i32 {
    let has_bdf = match crate::harness::Options::parse(args) {
        Ok(o) => source.candidates(&o.bdfs).is_ok_and(|c| !c.is_empty()),
        Err(_) => false,
    };
    let suite = if has_bdf {
        device_suite()
    } else {
        model_suite()
    };
    suite.run(
        args,
        source,
        Box::new(std::io::stdout()),
        &mut std::io::stderr(),
    )
}

/// The program's `main`.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(&args, &DeviceSource::from_env()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm() -> bool {
        match passthru_guest::kvm_available() {
            Ok(()) => true,
            Err(why) => {
                eprintln!("skipped: {why}");
                false
            }
        }
    }

    /// `r` must be a failure whose message contains every one of `needles`.
    fn assert_fails_with(r: TestResult, needles: &[&str]) {
        match r {
            Err(TestError::Fail(m)) => {
                assert!(needles.iter().all(|n| m.contains(n)), "{needles:?} in {m}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn run(built: Built, case: Case) -> (TestResult, Vec<String>) {
        let mut lines = Vec::new();
        let layout = DeviceLayout::standard(WINDOW_BYTES);
        let run = CaseRun {
            case,
            wait: WaitMode::Poll,
            seed: 1,
            storm: 1 << 20,
            apic_id: 0,
        };
        let r = run_built(built, layout, run, &mut |l| lines.push(l));
        (r, lines)
    }

    fn edu(mode: ExecMode) -> (Arc<ModelDevice<passthru_models::edu::EduModel>>, Built) {
        let dev = Arc::new(ModelDevice::edu(mode, DeviceLayout::standard(WINDOW_BYTES)).unwrap());
        let model = Arc::clone(dev.model());
        let faults: FaultLog =
            Box::new(move || model.faults().iter().map(|f| (f.iova, f.write)).collect());
        let built: Built = (
            Arc::clone(&dev) as Arc<dyn GuestDevice>,
            abi::POLICY_SILENT,
            Some(faults),
        );
        (dev, built)
    }

    #[test]
    fn a_dropped_msi_fails_send_msi_in_the_guest() {
        if !kvm() {
            return;
        }
        let (dev, built) = edu(ExecMode::Immediate);
        passthru_models::function::DeviceModel::pci(&**dev.model())
            .msi
            .inject_drop(0, 1);
        let (r, lines) = run(built, Case::SendMsi);
        assert_fails_with(r, &["send_msi: no interrupt on guest vector 0x40"]);
        // The failure report says where the guest's accesses went.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("edu-model: BAR0: ") && l.contains(" 0 bad accesses")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_dropped_completion_interrupt_fails_an_interrupt_waited_copy() {
        if !kvm() {
            return;
        }
        let (dev, built) = edu(ExecMode::Threaded);
        passthru_models::function::DeviceModel::pci(&**dev.model())
            .msi
            .inject_drop(0, 1);
        let mut lines = Vec::new();
        let layout = DeviceLayout::standard(WINDOW_BYTES);
        let run = CaseRun {
            case: Case::MemcpySuccess,
            wait: WaitMode::Interrupt,
            seed: 1,
            storm: 1 << 20,
            apic_id: 0,
        };
        let r = run_built(built, layout, run, &mut |l| lines.push(l));
        assert_fails_with(r, &["memcpy: ", "interrupt"]);
        assert_eq!(
            lines[0],
            "guest: edu: memcpy_success (copies waited for by interrupt)"
        );
    }

    #[test]
    fn interrupts_reach_a_vcpu_whose_x2apic_id_is_above_255() {
        if !kvm() {
            return;
        }
        // The route's destination needs address_hi (KVM's 32-bit x2APIC ids): the guest's
        // handler must still count send_msi exactly once, and interrupt-waited copies work.
        for kind in [ModelKind::Dsa, ModelKind::Ioat, ModelKind::Edu] {
            for (case, wait) in [
                (Case::SendMsi, WaitMode::Poll),
                (Case::MemcpySuccess, WaitMode::Interrupt),
            ] {
                let layout = DeviceLayout::standard(WINDOW_BYTES);
                let built = build(Target::Model(kind, ExecMode::Threaded, wait), layout).unwrap();
                let run = CaseRun {
                    case,
                    wait,
                    seed: 7,
                    storm: 1 << 20,
                    apic_id: 300,
                };
                let mut lines = Vec::new();
                run_built(built, layout, run, &mut |l| lines.push(l))
                    .unwrap_or_else(|e| panic!("{kind:?} {case:?}: {e:?} {lines:?}"));
            }
        }
    }

    #[test]
    fn an_unreported_fault_fails_the_device_error_policy() {
        if !kvm() {
            return;
        }
        // edu cannot report DMA faults: demanding the device's decoded error must fail.
        let (_dev, (d, _, f)) = edu(ExecMode::Immediate);
        let (r, _) = run((d, abi::POLICY_DEVICE_ERROR, f), Case::MemcpyToUnmappedIova);
        assert_fails_with(r, &["reported success"]);
    }

    #[test]
    fn a_silent_fault_needs_the_iommu_to_have_seen_it() {
        if !kvm() {
            return;
        }
        // Without the model's fault log, the silent policy cannot be satisfied.
        let (_dev, (d, p, _)) = edu(ExecMode::Immediate);
        let (r, _) = run((d, p, None), Case::MemcpyFromUnmappedIova);
        assert_fails_with(r, &["host request 0x13 failed"]);
    }

    #[test]
    fn the_guest_reports_its_driver_and_case() {
        if !kvm() {
            return;
        }
        let (_dev, built) = edu(ExecMode::Threaded);
        let (r, lines) = run(built, Case::MemcpySuccess);
        r.unwrap();
        assert_eq!(lines, vec!["guest: edu: memcpy_success".to_string()]);
    }

    #[test]
    fn a_window_request_outside_the_window_is_refused() {
        let h = DataHandler {
            window: Arc::new(
                passthru_guest::device::model::ModelMemory::new(
                    passthru_models::iommu::HostMemory::pages(8192).unwrap(),
                )
                .unwrap(),
            ),
            window_gpa: 0x8000_0000,
            faults: None,
            faults_seen: Mutex::new(0),
        };
        assert!(h.offset(0x8000_1000, 0x1000).is_ok());
        assert!(h.offset(0x8000_1000, 0x1001).is_err());
        assert!(h.offset(0x7fff_f000, 16).is_err());
        assert!(h.offset(u64::MAX, 2).is_err());
    }
}
