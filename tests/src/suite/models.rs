//! The suite on the software models: dsa, ioat (CBDMA) and edu, each in the models' immediate
//! (synchronous) and threaded (asynchronous, like hardware) execution modes.
//!
//! Test names (stable; `passthru test` prints them as KTAP):
//!
//! | name | what |
//! |---|---|
//! | `dsa.<test>`, `ioat.<test>`, `edu.<test>` | the model in immediate mode |
//! | `dsa.threaded.<test>`, `ioat.threaded.<test>`, `edu.threaded.<test>` | the model in threaded mode |
//! | `dsa.irq.<test>`, `ioat.irq.<test>`, `edu.irq.<test>` | threaded mode, every memcpy waited for by interrupt (`WaitMode::Interrupt`; not upstream) |
//!
//! where `<test>` is one of upstream's seven (`init_remove`, `memcpy_success`,
//! `memcpy_from_unmapped_iova`, `memcpy_to_unmapped_iova`, `send_msi`, `mix_and_match`,
//! `memcpy_storm`). Filters work as in every harness program: `-f ioat`, `-v threaded`, `-v irq`,
//! `-t send_msi`, `-r dsa.threaded.mix_and_match`.
//!
//! Setup per test: the driver's region (its `Match::region_size`, page-rounded) and an 8 MiB
//! memcpy region (so the ioat model's 1 MiB `max_memcpy_size` makes ordinary copies four driver
//! copies, as upstream's 1 GiB region does on hardware) are mapped in the model IOMMU at fixed IOVAs above 4 GiB; a 1 GiB block is
//! never mapped; MSIs are observed on the model's `MsiSink`. The storm copies
//! [`DEFAULT_STORM_BYTES`] unless `$PASSTHRU_STORM_BYTES` says otherwise.

use std::sync::Arc;
use std::time::Duration;

use passthru_core::driver::{CheckedDriver, Driver, WaitMode};
use passthru_core::mmio::DmaRegion;
use passthru_drivers::dsa::Dsa;
use passthru_drivers::edu::Edu;
use passthru_drivers::ioat::Ioat;
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::dsa::DsaModel;
use passthru_models::edu::EduModel;
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::{HostMemory, Iommu, Perm};
use passthru_models::irq::MsiSink;
use passthru_models::StdClock;

use super::{case_timeout, DynEnv, Env, FaultPolicy, IommuFault, CASES};
use crate::harness::{DeviceSelector, DeviceSource, Fixture, Suite, TestError, TestResult};

/// IOVA of the driver's region.
pub const DRIVER_IOVA: u64 = 0x1_0000_0000;
/// IOVA of the memcpy region.
pub const MEMCPY_IOVA: u64 = 0x1_4000_0000;
/// Size of the memcpy region (upstream maps 1 GiB on hardware); copies are
/// `min(4 × max_memcpy_size, half of it)`.
pub const MEMCPY_BYTES: usize = 8 << 20;
/// An IOVA block (1 GiB) that is never mapped.
pub const UNMAPPED_IOVA: u64 = 0x2_0000_0000;
/// Storm total on the models unless `$PASSTHRU_STORM_BYTES` is set: small enough that
/// the whole `cargo test` stays fast in debug builds.
pub const DEFAULT_STORM_BYTES: u64 = 64 << 20;

/// The DSA driver on the DSA model.
pub type DsaOnModel = Dsa<'static, ModelFunction<DsaModel>, StdClock>;
/// The CBDMA driver on the CBDMA model.
pub type IoatOnModel = Ioat<'static, ModelFunction<CbdmaModel>, StdClock>;
/// The edu driver on the edu model.
pub type EduOnModel = Edu<ModelFunction<EduModel>, StdClock>;

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Intel DSA (Sapphire Rapids profile).
    Dsa,
    /// Intel CBDMA / I/OAT (SKX, CBVER 3.3).
    Ioat,
    /// QEMU edu.
    Edu,
}

impl ModelKind {
    /// All models, in `passthru test` order.
    pub const ALL: [ModelKind; 3] = [ModelKind::Dsa, ModelKind::Ioat, ModelKind::Edu];

    /// The fixture name (= the driver name).
    pub const fn name(self) -> &'static str {
        match self {
            ModelKind::Dsa => "dsa",
            ModelKind::Ioat => "ioat",
            ModelKind::Edu => "edu",
        }
    }
}

/// A driver on a model, with its memory and MSI sink.
pub struct ModelEnv<D: Driver<'static>> {
    // Field order is drop order: the driver goes before the memory it uses.
    driver: CheckedDriver<'static, D>,
    msi: Arc<MsiSink>,
    memcpy: Arc<HostMemory>,
    _driver_mem: Arc<HostMemory>,
    iommu: Arc<Iommu>,
    policy: FaultPolicy,
    faults: Option<Box<dyn Fn() -> Vec<IommuFault>>>,
    faults_seen: usize,
    storm_bytes: u64,
    msi_timeout: Duration,
    wait_mode: WaitMode,
}

/// Map the driver and memcpy regions and build the env around `function`.
fn build<D>(
    iommu: Arc<Iommu>,
    function: D::Function,
    msi: Arc<MsiSink>,
    policy: FaultPolicy,
    memcpy_bytes: usize,
) -> TestResult<ModelEnv<D>>
where
    D: Driver<'static, Clock = StdClock>,
    D::Function: Clone,
{
    let fail = |what: &str, e: &dyn std::fmt::Display| TestError::fail(format!("{what}: {e}"));
    let Some(matched) = D::probe(&function) else {
        return Err(TestError::fail("the driver does not match its model"));
    };
    let region_size = matched.region_size.max(4096).next_multiple_of(4096);
    let driver_mem = HostMemory::pages(region_size).map_err(|e| fail("driver region", &e))?;
    iommu
        .map(DRIVER_IOVA, &driver_mem, 0, region_size as u64, Perm::RW)
        .map_err(|e| fail("map driver region", &e))?;
    let memcpy = HostMemory::pages(memcpy_bytes).map_err(|e| fail("memcpy region", &e))?;
    iommu
        .map_all(MEMCPY_IOVA, &memcpy)
        .map_err(|e| fail("map memcpy region", &e))?;
    // SAFETY: driver_mem lives in the env as long as the driver (dropped after it), and the
    // driver's region never leaves the env.
    let region = unsafe { driver_mem.dma_region_unbounded(DRIVER_IOVA) };
    let mut driver = CheckedDriver::<D>::new(function, StdClock::new(), region)
        .map_err(|e| fail("probe", &e))?;
    driver.init().map_err(|e| fail("init", &e))?;
    Ok(ModelEnv {
        driver,
        msi,
        memcpy,
        _driver_mem: driver_mem,
        iommu,
        policy,
        faults: None,
        faults_seen: 0,
        storm_bytes: super::storm_bytes(DEFAULT_STORM_BYTES),
        msi_timeout: super::MSI_TIMEOUT,
        wait_mode: WaitMode::Poll,
    })
}

impl<D> ModelEnv<D>
where
    D: Driver<'static, Clock = StdClock>,
    D::Function: Clone,
{
    /// An environment for any driver `D` on a model `function` doing DMA through `iommu`,
    /// observing interrupts on `msi` (for drivers wrapping the passthru ones in tests).
    pub fn with_driver(
        iommu: Arc<Iommu>,
        function: D::Function,
        msi: Arc<MsiSink>,
        policy: FaultPolicy,
        memcpy_bytes: usize,
    ) -> TestResult<Self> {
        build(iommu, function, msi, policy, memcpy_bytes)
    }
}

impl ModelEnv<DsaOnModel> {
    /// The DSA driver on a fresh DSA model.
    pub fn dsa(mode: ExecMode) -> TestResult<(Self, Arc<DsaModel>)> {
        Self::dsa_with(mode, MEMCPY_BYTES)
    }

    /// [`ModelEnv::dsa`] with a memcpy region of `memcpy_bytes`.
    pub fn dsa_with(mode: ExecMode, memcpy_bytes: usize) -> TestResult<(Self, Arc<DsaModel>)> {
        let iommu = Iommu::new();
        let model = DsaModel::new(Arc::clone(&iommu), mode);
        let f = model.function();
        let msi = Arc::clone(f.msi());
        let env = build(iommu, f, msi, FaultPolicy::DeviceError, memcpy_bytes)?;
        Ok((env, model))
    }
}

impl ModelEnv<IoatOnModel> {
    /// The CBDMA driver on a fresh CBDMA model (default configuration: SKX, CBVER 3.3,
    /// XFERCAP 1 MiB).
    pub fn ioat(mode: ExecMode) -> TestResult<(Self, Arc<CbdmaModel>)> {
        Self::ioat_with(
            CbdmaConfig {
                mode,
                ..CbdmaConfig::default()
            },
            MEMCPY_BYTES,
        )
    }

    /// The CBDMA driver on a CBDMA model built from `config`, with a memcpy region of
    /// `memcpy_bytes`.
    pub fn ioat_with(
        config: CbdmaConfig,
        memcpy_bytes: usize,
    ) -> TestResult<(Self, Arc<CbdmaModel>)> {
        let iommu = Iommu::new();
        let model = CbdmaModel::new(Arc::clone(&iommu), config);
        let f = ModelFunction::new(Arc::clone(&model));
        let msi = Arc::clone(f.msi());
        let env = build(iommu, f, msi, FaultPolicy::DeviceError, memcpy_bytes)?;
        Ok((env, model))
    }
}

impl ModelEnv<EduOnModel> {
    /// The edu driver on a fresh edu model (DMA mask widened to 64 bits, as in the QEMU rig).
    pub fn edu(mode: ExecMode) -> TestResult<(Self, Arc<EduModel>)> {
        let iommu = Iommu::new();
        let model = EduModel::with_dma_mask(Arc::clone(&iommu), mode, u64::MAX);
        let f = model.function();
        let msi = Arc::clone(f.msi());
        let mut env = build(iommu, f, msi, FaultPolicy::Silent, MEMCPY_BYTES)?;
        let m = Arc::clone(&model);
        env.faults = Some(Box::new(move || {
            m.faults()
                .iter()
                .map(|f| IommuFault {
                    iova: f.iova,
                    write: f.write,
                })
                .collect()
        }));
        Ok((env, model))
    }
}

impl<D: Driver<'static>> ModelEnv<D> {
    /// The model IOMMU.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// The MSI sink.
    pub fn msi(&self) -> &Arc<MsiSink> {
        &self.msi
    }

    /// The memcpy memory.
    pub fn memcpy_memory(&self) -> &Arc<HostMemory> {
        &self.memcpy
    }

    /// Override how long `send_msi` waits.
    pub fn set_msi_timeout(&mut self, timeout: Duration) {
        self.msi_timeout = timeout;
    }

    /// Override the storm total.
    pub fn set_storm_bytes(&mut self, bytes: u64) {
        self.storm_bytes = bytes;
    }

    /// Make every memcpy of the suite wait as `mode` says.
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        self.wait_mode = mode;
    }
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> Env for ModelEnv<D> {
    type Driver = D;

    fn driver(&mut self) -> &mut CheckedDriver<'static, D> {
        &mut self.driver
    }

    fn driver_ref(&self) -> &CheckedDriver<'static, D> {
        &self.driver
    }

    fn memcpy_region(&self) -> DmaRegion<'_> {
        self.memcpy.dma_region(MEMCPY_IOVA)
    }

    fn unmapped_iova(&self) -> u64 {
        UNMAPPED_IOVA
    }

    fn msi_take(&self, vector: u16) -> TestResult<u64> {
        Ok(self.msi.take(u32::from(vector)))
    }

    fn msi_wait(&self, vector: u16, timeout: Duration) -> TestResult<u64> {
        Ok(self.msi.wait_take(u32::from(vector), timeout))
    }

    fn fault_policy(&self) -> FaultPolicy {
        self.policy
    }

    fn take_iommu_faults(&mut self) -> Option<Vec<IommuFault>> {
        let all = (self.faults.as_ref()?)();
        let new = all.get(self.faults_seen..).unwrap_or(&[]).to_vec();
        self.faults_seen = all.len();
        Some(new)
    }

    fn storm_bytes(&self) -> u64 {
        self.storm_bytes
    }

    fn msi_timeout(&self) -> Duration {
        self.msi_timeout
    }

    fn wait_mode(&self) -> WaitMode {
        self.wait_mode
    }
}

/// A fresh environment for `kind` in `mode`, type-erased.
pub fn env(kind: ModelKind, mode: ExecMode) -> TestResult<Box<dyn DynEnv>> {
    env_waiting(kind, mode, WaitMode::Poll)
}

/// [`env()`] whose copies wait as `wait` says.
pub fn env_waiting(kind: ModelKind, mode: ExecMode, wait: WaitMode) -> TestResult<Box<dyn DynEnv>> {
    fn with<D: Driver<'static>>(mut e: ModelEnv<D>, wait: WaitMode) -> ModelEnv<D> {
        e.set_wait_mode(wait);
        e
    }
    Ok(match kind {
        ModelKind::Dsa => Box::new(with(ModelEnv::dsa(mode)?.0, wait)),
        ModelKind::Ioat => Box::new(with(ModelEnv::ioat(mode)?.0, wait)),
        ModelKind::Edu => Box::new(with(ModelEnv::edu(mode)?.0, wait)),
    })
}

fn with_cases<V: Send + Sync + 'static>(
    mut f: Fixture<V, Box<dyn DynEnv>>,
) -> Fixture<V, Box<dyn DynEnv>> {
    for case in CASES {
        f = f.test_with_timeout(case.name(), case_timeout(case), move |ctx, _, env| {
            env.run_case(ctx, case)
        });
    }
    f.teardown(|_, _, mut env| env.finish())
}

/// The suite on the models: `dsa.*`, `dsa.threaded.*`, `dsa.irq.*`, and the same for `ioat` and
/// `edu`.
pub fn suite() -> Suite {
    let mut s = Suite::new("passthru test").devices(DeviceSelector::none());
    for kind in ModelKind::ALL {
        s = s.fixture(with_cases(Fixture::new(kind.name(), move |_| {
            env(kind, ExecMode::Immediate)
        })));
        s = s.fixture(with_cases(
            Fixture::with_setup(
                kind.name(),
                move |_, (mode, wait): &(ExecMode, WaitMode)| env_waiting(kind, *mode, *wait),
            )
            .variant("threaded", (ExecMode::Threaded, WaitMode::Poll))
            .variant("irq", (ExecMode::Threaded, WaitMode::Interrupt)),
        ));
    }
    s
}

/// `passthru test` without a device: run the suite on the models with the harness options in
/// `args` (filters, `-l`, `--seed`, `--timeout`); KTAP on stdout; returns the kselftest exit
/// code (0 all passed, 1 a failure, 4 all skipped).
pub fn run_models(args: &[String]) -> i32 {
    suite().run(
        args,
        &DeviceSource::default(),
        Box::new(std::io::stdout()),
        &mut std::io::stderr(),
    )
}
