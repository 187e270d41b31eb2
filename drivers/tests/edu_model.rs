//! The edu driver on the edu model: upstream's `vfio_pci_driver_test` cases (init_remove,
//! memcpy_success, memcpy_from/to_unmapped_iova, send_msi, mix_and_match, memcpy_storm) plus
//! recovery from an injected wedged DMA engine. Every case runs in the model's immediate
//! (synchronous) and threaded (asynchronous, like hardware) modes.

use std::sync::Arc;
use std::time::Duration;

use passthru_core::driver::{CheckedDriver, DeviceError, DriverError, DriverState};
use passthru_core::edu as hw;
use passthru_drivers::edu::{Edu, MAX_COUNT};
use passthru_models::edu::EduModel;
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::{HostMemory, Iommu, Perm};
use passthru_models::StdClock;

type Driver = CheckedDriver<'static, Edu<ModelFunction<EduModel>, StdClock>>;

/// IOVAs as an allocator would hand them out: above 4 GiB (edu's dma_mask widened, as in the
/// QEMU rig).
const DRIVER_IOVA: u64 = 0x1_0000_0000;
const MEMCPY_IOVA: u64 = 0x1_0020_0000;
const UNMAPPED_IOVA: u64 = 0x2_0000_0000;
const TIMEOUT_NS: u64 = 2_000_000_000;

struct Fixture {
    model: Arc<EduModel>,
    memcpy: Arc<HostMemory>,
    driver: Driver,
    size: u64,
    src: u64,
    dst: u64,
    _driver_mem: Arc<HostMemory>,
}

impl Fixture {
    fn new(mode: ExecMode) -> Self {
        let iommu = Iommu::new();
        let driver_mem = HostMemory::pages(4096).unwrap();
        iommu
            .map(DRIVER_IOVA, &driver_mem, 0, 4096, Perm::RW)
            .unwrap();
        let memcpy = HostMemory::pages(2 * 4096).unwrap();
        iommu.map_all(MEMCPY_IOVA, &memcpy).unwrap();
        let model = EduModel::with_dma_mask(iommu, mode, u64::MAX);
        // SAFETY: driver_mem lives in the fixture as long as the driver; nothing references it.
        let region = unsafe { driver_mem.dma_region_unbounded(DRIVER_IOVA) };
        let mut driver = Driver::new(model.function(), StdClock::new(), region).unwrap();
        assert_eq!(driver.matched().name, "edu");
        let limits = driver.init().unwrap();
        // upstream: size = min(max_memcpy_size, memcpy region / 2); src first, dst after it.
        let size = limits.max_memcpy_size.min(memcpy.len() as u64 / 2);
        Self {
            model,
            memcpy,
            driver,
            size,
            src: MEMCPY_IOVA,
            dst: MEMCPY_IOVA + size,
            _driver_mem: driver_mem,
        }
    }

    fn msi_count(&self) -> u64 {
        self.model.function().msi().take(0)
    }

    fn fill(&self) {
        self.memcpy.fill(0, self.size as usize, b'x').unwrap();
        self.memcpy
            .fill(self.size as usize, self.size as usize, b'y')
            .unwrap();
    }

    fn src_equals_dst(&self) -> bool {
        let mut a = vec![0u8; self.size as usize];
        let mut b = vec![0u8; self.size as usize];
        self.memcpy.read(0, &mut a).unwrap();
        self.memcpy.read(self.size as usize, &mut b).unwrap();
        a == b
    }
}

const MODES: [ExecMode; 2] = [ExecMode::Immediate, ExecMode::Threaded];

#[test]
fn init_remove() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        for _ in 0..10 {
            f.driver.remove().unwrap();
            assert_eq!(f.driver.state(), DriverState::Uninitialized);
            let limits = f.driver.init().unwrap();
            assert_eq!(limits.max_memcpy_size, 4096);
            assert_eq!(limits.max_memcpy_count, MAX_COUNT);
            assert_eq!(limits.msi_vector, 0);
        }
    }
}

#[test]
fn memcpy_success() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.fill();
        assert!(!f.src_equals_dst());
        f.driver.memcpy(f.src, f.dst, f.size, TIMEOUT_NS).unwrap();
        assert!(f.src_equals_dst(), "{mode:?}");
        assert_eq!(f.msi_count(), 0, "memcpy raised no interrupt");
        assert!(f.model.faults().is_empty());
        assert_eq!(f.model.dmas(), 2, "one copy = two edu DMAs");
    }
}

#[test]
fn memcpy_from_unmapped_iova() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.fill();
        // edu cannot detect the IOMMU refusing its read: the copy "succeeds" on the device side
        // and the fault is only visible in the IOMMU's log (here: the model's fault log).
        let r = f.driver.memcpy(UNMAPPED_IOVA, f.dst, f.size, TIMEOUT_NS);
        assert_eq!(r, Ok(()), "edu reports no DMA errors");
        let faults = f.model.faults();
        assert_eq!(faults.len(), 1);
        assert_eq!((faults[0].iova, faults[0].write), (UNMAPPED_IOVA, false));
        assert_eq!(f.msi_count(), 0);
        assert_eq!(f.driver.state(), DriverState::Ready);
    }
}

#[test]
fn memcpy_to_unmapped_iova() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.fill();
        let r = f.driver.memcpy(f.src, UNMAPPED_IOVA, f.size, TIMEOUT_NS);
        assert_eq!(r, Ok(()), "edu reports no DMA errors");
        let faults = f.model.faults();
        assert_eq!(faults.len(), 1);
        assert_eq!((faults[0].iova, faults[0].write), (UNMAPPED_IOVA, true));
        assert_eq!(f.msi_count(), 0);
        // Nothing landed in mapped memory.
        let mut b = vec![0u8; f.size as usize];
        f.memcpy.read(f.size as usize, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == b'y'));
    }
}

#[test]
fn send_msi() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.driver.send_msi().unwrap();
        let msi = f.model.function().msi().clone();
        assert_eq!(msi.wait_take(0, Duration::from_secs(2)), 1, "{mode:?}");
        assert_eq!(msi.take(0), 0, "exactly once");
        // The driver leaves no cause pending behind.
        let bar = passthru_core::mmio::PciFunction::bar(&f.model.function(), 0).unwrap();
        assert_eq!(
            passthru_core::mmio::RegisterIo::read32(&bar, hw::IRQ_STATUS),
            0
        );
    }
}

#[test]
fn mix_and_match() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        for i in 0..10 {
            f.fill();
            f.driver.memcpy(f.src, f.dst, f.size, TIMEOUT_NS).unwrap();
            assert!(f.src_equals_dst(), "iteration {i}");
            // A faulting copy; the return value is not asserted upstream either.
            let _ = f.driver.memcpy(f.src, UNMAPPED_IOVA, f.size, TIMEOUT_NS);
            assert_eq!(f.driver.state(), DriverState::Ready);
            f.driver.send_msi().unwrap();
            let msi = f.model.function().msi().clone();
            assert_eq!(msi.wait_take(0, Duration::from_secs(2)), 1, "iteration {i}");
        }
        assert_eq!(f.model.faults().len(), 10);
    }
}

#[test]
fn memcpy_storm() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.fill();
        let limits = f.driver.limits().unwrap();
        let count = (250u64 << 30).div_ceil(f.size).min(limits.max_memcpy_count);
        assert_eq!(count, MAX_COUNT);
        let before = f.model.dmas();
        f.driver.memcpy_start(f.src, f.dst, f.size, count).unwrap();
        assert_eq!(f.driver.state(), DriverState::Busy);
        f.driver.memcpy_wait(TIMEOUT_NS).unwrap();
        assert_eq!(f.model.dmas() - before, 2 * count);
        assert!(f.src_equals_dst());
        assert_eq!(f.msi_count(), 0);
    }
}

#[test]
fn limits_are_enforced() {
    let mut f = Fixture::new(ExecMode::Immediate);
    assert!(matches!(
        f.driver.memcpy_start(f.src, f.dst, 4097, 1),
        Err(DriverError::BeyondLimits { size: 4097, .. })
    ));
    assert!(matches!(
        f.driver.memcpy_start(f.src, f.dst, 64, MAX_COUNT + 1),
        Err(DriverError::BeyondLimits { .. })
    ));
    assert_eq!(f.driver.state(), DriverState::Ready);
}

#[test]
fn wedged_dma_engine_times_out_and_recovers() {
    for mode in MODES {
        let mut f = Fixture::new(mode);
        f.fill();
        f.model.inject_stuck(true);
        f.driver.memcpy_start(f.src, f.dst, f.size, 1).unwrap();
        let e = f.driver.memcpy_wait(20_000_000).unwrap_err();
        match e {
            DriverError::Timeout {
                device,
                register,
                value,
                waited_ns,
            } => {
                assert_eq!((device, register), ("edu", "DMA_CMD"));
                assert_eq!(value & 1, 1, "start bit still set");
                assert!(waited_ns >= 20_000_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.driver.state(), DriverState::Ready);
        // The engine is still busy: a new copy is refused rather than silently ignored.
        assert_eq!(
            f.driver.memcpy_start(f.src, f.dst, f.size, 1),
            Err(DriverError::Device(DeviceError::Register {
                device: "edu",
                register: "DMA_CMD",
                value: 1
            }))
        );
        f.model.inject_stuck(false);
        // Threaded mode: the worker finishes the old DMA asynchronously; give it time.
        let bar = passthru_core::mmio::PciFunction::bar(&f.model.function(), 0).unwrap();
        let t = std::time::Instant::now();
        while passthru_core::mmio::RegisterIo::read64(&bar, hw::DMA_CMD) & 1 != 0
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        f.driver.memcpy(f.src, f.dst, f.size, TIMEOUT_NS).unwrap();
        assert!(f.src_equals_dst());
    }
}

#[test]
fn dropping_an_initialised_driver_removes_it() {
    let iommu = Iommu::new();
    let mem = HostMemory::pages(4096).unwrap();
    let model = EduModel::new(iommu, ExecMode::Immediate);
    let region = mem.dma_region(0x1000);
    {
        let mut d =
            CheckedDriver::<Edu<_, StdClock>>::new(model.function(), StdClock::new(), region)
                .unwrap();
        d.init().unwrap();
        assert!(model.function().msi().enabled_kind().is_some());
    }
    // Dropping an initialised driver removed it: MSI released, bus mastering off.
    assert!(model.function().msi().enabled_kind().is_none());
    let cmd = passthru_core::mmio::PciFunction::config_read16(&model.function(), 4).unwrap();
    assert_eq!(cmd & 0x4, 0);
}

/// The model behind a function that can lie about one register or the capability list, to
/// exercise the driver's init checks.
mod tampered {
    use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, PortalError, RegisterIo};
    use passthru_models::edu::EduModel;
    use passthru_models::function::{ModelBar, ModelFunction};

    #[derive(Clone)]
    pub struct Tampered {
        pub inner: ModelFunction<EduModel>,
        /// Replace 32-bit reads of this BAR0 offset with this value.
        pub bar_read: Option<(usize, u32)>,
        /// Clear STATUS.capabilities_list.
        pub hide_capabilities: bool,
    }

    pub struct Bar(ModelBar<EduModel>, Option<(usize, u32)>);

    impl RegisterIo for Bar {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read8(&self, o: usize) -> u8 {
            self.0.read8(o)
        }
        fn read16(&self, o: usize) -> u16 {
            self.0.read16(o)
        }
        fn read32(&self, o: usize) -> u32 {
            match self.1 {
                Some((at, v)) if at == o => v,
                _ => self.0.read32(o),
            }
        }
        fn read64(&self, o: usize) -> u64 {
            self.0.read64(o)
        }
        fn write8(&self, o: usize, v: u8) {
            self.0.write8(o, v)
        }
        fn write16(&self, o: usize, v: u16) {
            self.0.write16(o, v)
        }
        fn write32(&self, o: usize, v: u32) {
            self.0.write32(o, v)
        }
        fn write64(&self, o: usize, v: u64) {
            self.0.write64(o, v)
        }
        fn submit64(&self, o: usize, d: &[u8; 64]) -> Result<(), PortalError> {
            self.0.submit64(o, d)
        }
    }

    impl PciFunction for Tampered {
        type Bar = Bar;
        fn bar(&self, i: u8) -> Result<Bar, FunctionError> {
            Ok(Bar(self.inner.bar(i)?, self.bar_read))
        }
        fn config_read8(&self, o: u16) -> Result<u8, FunctionError> {
            self.inner.config_read8(o)
        }
        fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
            let v = self.inner.config_read16(o)?;
            Ok(if o == 6 && self.hide_capabilities {
                v & !0x10
            } else {
                v
            })
        }
        fn config_read32(&self, o: u16) -> Result<u32, FunctionError> {
            self.inner.config_read32(o)
        }
        fn config_write8(&self, o: u16, v: u8) -> Result<(), FunctionError> {
            self.inner.config_write8(o, v)
        }
        fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
            self.inner.config_write16(o, v)
        }
        fn config_write32(&self, o: u16, v: u32) -> Result<(), FunctionError> {
            self.inner.config_write32(o, v)
        }
        fn irq_enable(&self, k: IrqKind, f: u32, c: u32) -> Result<(), FunctionError> {
            self.inner.irq_enable(k, f, c)
        }
        fn irq_disable(&self, k: IrqKind) -> Result<(), FunctionError> {
            self.inner.irq_disable(k)
        }
        fn reset(&self) -> Result<(), FunctionError> {
            self.inner.reset()
        }
    }
}

#[test]
fn init_checks_identity_liveness_and_msi() {
    use passthru_core::driver::Driver as _;
    use tampered::Tampered;

    let mem = HostMemory::pages(4096).unwrap();
    let model = EduModel::new(Iommu::new(), ExecMode::Immediate);
    let make = |bar_read, hide_capabilities| Tampered {
        inner: model.function(),
        bar_read,
        hide_capabilities,
    };
    let region = mem.dma_region(0x1000);
    let init = |f: Tampered| Edu::init(f, StdClock::new(), region).map(|_| ());

    assert!(Edu::<Tampered, StdClock>::probe(&make(None, false)).is_some());
    assert_eq!(
        init(make(Some((hw::ID, 0xffff_ffff)), false)),
        Err(DriverError::Device(DeviceError::Register {
            device: "edu",
            register: "ID",
            value: 0xffff_ffff
        }))
    );
    assert_eq!(
        init(make(Some((hw::LIVENESS, 0x1234_5678)), false)),
        Err(DriverError::Device(DeviceError::Register {
            device: "edu",
            register: "LIVENESS",
            value: 0x1234_5678
        }))
    );
    assert_eq!(
        init(make(None, true)),
        Err(DriverError::Unsupported {
            device: "edu",
            reason: "no MSI capability"
        })
    );
    assert_eq!(init(make(None, false)), Ok(()));
}
