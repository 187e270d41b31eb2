//! Linux 7.3 parity of the driver suite (`vfio_pci_driver_test.c`, `lib/vfio_pci_driver.c` of
//! 7.3): ordinary copies of `min(4 × max_memcpy_size, region / 2)` split into
//! `max_memcpy_size` chunks, the storm at `min(max_memcpy_size, region / 2)` per copy, and a
//! driver without `send_msi` skipping `send_msi` and the stray-MSI checks.

use std::sync::{Arc, Mutex};

use passthru::harness::{DeviceSelector, DeviceSource, Fixture, Suite, TestResult, KSFT_PASS};
use passthru::suite::models::{IoatOnModel, ModelEnv, MEMCPY_BYTES};
use passthru::suite::{copy_sizes, storm_cap_note, Case, DynEnv, FaultPolicy, CASES};
use passthru_core::driver::{Driver, DriverError, InOrder, Limits, Match, WaitMode};
use passthru_core::mmio::DmaRegion;
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::Iommu;
use passthru_models::StdClock;

/// Run `cases` on envs built by `setup`; returns (exit code, KTAP).
fn run(
    cases: &[Case],
    setup: impl Fn() -> TestResult<Box<dyn DynEnv>> + Send + Sync + 'static,
) -> (i32, String) {
    let mut fixture = Fixture::new("t", move |_| setup());
    for &case in cases {
        fixture = fixture.test(case.name(), move |ctx, _, env| env.run_case(ctx, case));
    }
    let fixture = fixture.teardown(|_, _, mut env| env.finish());
    let suite = Suite::new("t")
        .devices(DeviceSelector::none())
        .fixture(fixture);
    let (code, text, _) = suite.run_captured(&[], &DeviceSource::default());
    (code, text)
}

#[test]
fn copy_sizes_follow_upstream_7_3() {
    // DSA on a 1 GiB region: 512 MiB copies (4 × 2 GiB capped by half the region).
    assert_eq!(copy_sizes(1 << 31, 1 << 30), (512 << 20, 512 << 20));
    // CBDMA with XFERCAP 20: 4 MiB copies in four chunks; 1 MiB per storm copy.
    assert_eq!(copy_sizes(1 << 20, 1 << 30), (4 << 20, 1 << 20));
    // edu: 16 KiB copies, 4 KiB storm copies.
    assert_eq!(copy_sizes(4096, 1 << 30), (16 << 10, 4096));
}

#[test]
fn storm_cap_is_said_in_the_output() {
    let limits = Limits {
        max_memcpy_size: 4096,
        max_memcpy_count: 32,
        msi_vector: 0,
    };
    let note = storm_cap_note(64 << 20, 4096, 32, &limits).unwrap();
    assert!(
        note.contains("capped at 0x20000 of the 0x4000000 bytes requested"),
        "{note}"
    );
    assert!(note.contains("max_memcpy_count 32"), "{note}");
    assert_eq!(storm_cap_note(128 << 10, 4096, 32, &limits), None);
    // And the edu storm on the model prints it.
    let (code, out) = run(&[Case::MemcpyStorm], || {
        let (mut env, _) = ModelEnv::edu(ExecMode::Immediate)?;
        env.set_storm_bytes(64 << 20);
        Ok(Box::new(env))
    });
    assert_eq!(code, KSFT_PASS, "{out}");
    assert!(out.contains("# storm: capped at 0x20000"), "{out}");
}

#[test]
fn ordinary_copies_are_split_into_max_memcpy_size_chunks() {
    // ioat model: max_memcpy_size 1 MiB, memcpy region 8 MiB → a 4 MiB copy in 4 descriptors.
    assert_eq!(MEMCPY_BYTES, 8 << 20);
    type Seen = Option<(Arc<CbdmaModel>, u64)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let keep = Arc::clone(&seen);
    let (code, out) = run(&[Case::MemcpySuccess], move || {
        let (env, model) = ModelEnv::ioat(ExecMode::Immediate)?;
        let before = model.completed_descriptors(0);
        *keep.lock().unwrap() = Some((model, before));
        Ok(Box::new(env))
    });
    assert_eq!(code, KSFT_PASS, "{out}");
    let (model, before) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        model.completed_descriptors(0) - before,
        4,
        "four 1 MiB chunks"
    );
}

/// The ioat driver with `send_msi` hidden, like upstream's nv_falcon.
struct NoMsi(IoatOnModel);

impl Driver<'static> for NoMsi {
    type Function = ModelFunction<CbdmaModel>;
    type Clock = StdClock;
    const HAS_SEND_MSI: bool = false;

    fn probe(function: &Self::Function) -> Option<Match> {
        IoatOnModel::probe(function)
    }
    fn init(f: Self::Function, c: StdClock, r: DmaRegion<'static>) -> Result<Self, DriverError> {
        IoatOnModel::init(f, c, r).map(NoMsi)
    }
    fn remove(self) -> Result<(), DriverError> {
        self.0.remove()
    }
    fn limits(&self) -> Limits {
        self.0.limits()
    }
    fn memcpy_start(
        &mut self,
        token: InOrder,
        s: u64,
        d: u64,
        n: u64,
        c: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError> {
        self.0.memcpy_start(token, s, d, n, c, mode)
    }
    fn memcpy_wait(&mut self, token: InOrder, t: u64) -> Result<(), DriverError> {
        self.0.memcpy_wait(token, t)
    }
    fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
        panic!("send_msi called on a driver without it")
    }
}

#[test]
fn driver_without_send_msi_skips_send_msi_and_stray_msi_checks() {
    let (code, out) = run(&CASES, || {
        let iommu = Iommu::new();
        let model = CbdmaModel::new(
            Arc::clone(&iommu),
            CbdmaConfig {
                mode: ExecMode::Immediate,
                ..CbdmaConfig::default()
            },
        );
        let f = ModelFunction::new(Arc::clone(&model));
        let msi = Arc::clone(f.msi());
        let env = ModelEnv::<NoMsi>::with_driver(
            iommu,
            f,
            Arc::clone(&msi),
            FaultPolicy::DeviceError,
            MEMCPY_BYTES,
        )?;
        // A stray interrupt would fail every case of a driver with send_msi; without it
        // there is no MSI to check.
        msi.raise(0);
        Ok(Box::new(env))
    });
    assert_eq!(code, KSFT_PASS, "{out}");
    assert!(
        out.contains("ok 5 t.send_msi # SKIP ioat: the driver has no send_msi"),
        "{out}"
    );
    for (i, case) in CASES.iter().enumerate() {
        if *case != Case::SendMsi {
            assert!(
                out.contains(&format!("ok {} t.{}\n", i + 1, case.name())),
                "{}: {out}",
                case.name()
            );
        }
    }
}
