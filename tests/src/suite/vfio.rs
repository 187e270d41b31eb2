//! The suite on a real device through VFIO: the kselftest program `vfio_pci_driver_test`.
//!
//! As upstream (`tools/testing/selftests/vfio/vfio_pci_driver_test.c`): `main` opens the device in the default IOMMU mode
//! (`iommufd`) and probes the drivers; with none it prints "No driver found for device" and exits
//! with `KSFT_SKIP` (4). The fixture `vfio_pci_driver_test` has the five IOMMU modes as variants
//! and the seven cases as tests, named exactly as upstream
//! (`vfio_pci_driver_test.<mode>.<test>`).
//!
//! Setup per test (upstream's, with these choices):
//!
//! * the device is opened in the variant's mode; the probe tries `dsa`, `ioat`, `igb`, `edu` in
//!   that order and **stops at the first match** (upstream lets the last match win);
//! * the driver region is `Match::region_size` rounded up to a power of two, at least 2 MiB;
//! * the memcpy region is 1 GiB, as upstream's (Linux 7.3): ordinary copies are
//!   `min(4 × max_memcpy_size, 512 MiB)`, split into `max_memcpy_size` chunks; each storm copy
//!   is `min(max_memcpy_size, 512 MiB)`;
//! * both are `MAP_SHARED | MAP_ANONYMOUS` buffers at IOVAs from the allocator; a further 1 GiB
//!   allocator block (2 MiB if the IOVA space is too small) is never mapped;
//! * MSIs are read from the eventfd of the driver's vector (`Limits::msi_vector`, MSI-X or MSI
//!   as the driver enabled it);
//! * `memcpy_storm` copies `$PASSTHRU_STORM_BYTES` in total, by default upstream's 250 GiB.
//!
//! Faulting copies follow upstream (the outcome is logged, not asserted: "not all devices
//! report"), but the driver must stay usable and the next copy must succeed.

use std::sync::Arc;
use std::time::Duration;

use passthru_core::driver::{CheckedDriver, Driver, DriverState, Match};
use passthru_core::mmio::{DmaRegion, IrqKind};
use passthru_drivers::dsa::Dsa;
use passthru_drivers::edu::Edu;
use passthru_drivers::igb::Igb;
use passthru_drivers::ioat::Ioat;
use passthru_linux::{DmaBuffer, Iommu, IommuMode, MonotonicClock, VfioPciDevice};

use super::{case_timeout, DynEnv, Env, FaultPolicy, CASES, UPSTREAM_STORM_BYTES};
use crate::harness::{Bdf, DeviceSelector, DeviceSource, Fixture, Suite, TestError, TestResult};

/// The program name.
pub const PROGRAM: &str = "vfio_pci_driver_test";

/// The smallest driver region (upstream's historical 2 MiB).
pub const MIN_DRIVER_REGION: u64 = 2 << 20;
/// Upstream's memcpy region.
pub const UPSTREAM_MEMCPY_REGION: u64 = 1 << 30;
/// The unmapped IOVA block (upstream: 1 GiB from the allocator).
pub const UNMAPPED_BLOCK: u64 = 1 << 30;

/// A shared handle to an open VFIO device, so a driver can own "the function" while the
/// environment still reads its eventfds.
pub use passthru_linux::SharedVfioDevice as SharedDevice;

/// The DSA driver over VFIO.
pub type VfioDsa = Dsa<'static, SharedDevice, MonotonicClock>;
/// The CBDMA driver over VFIO.
pub type VfioIoat = Ioat<'static, SharedDevice, MonotonicClock>;
/// The igb driver over VFIO.
pub type VfioIgb = Igb<'static, SharedDevice, MonotonicClock>;
/// The edu driver over VFIO.
pub type VfioEdu = Edu<SharedDevice, MonotonicClock>;

/// Which driver matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Intel DSA.
    Dsa,
    /// Intel CBDMA / I/OAT.
    Ioat,
    /// Intel 82576 / QEMU igb.
    Igb,
    /// QEMU edu.
    Edu,
}

/// Probe `dsa`, `ioat`, `igb`, `edu` in that order; the first match wins.
pub fn probe(dev: &SharedDevice) -> Option<(DriverKind, Match)> {
    if let Some(m) = VfioDsa::probe(dev) {
        return Some((DriverKind::Dsa, m));
    }
    if let Some(m) = VfioIoat::probe(dev) {
        return Some((DriverKind::Ioat, m));
    }
    if let Some(m) = VfioIgb::probe(dev) {
        return Some((DriverKind::Igb, m));
    }
    VfioEdu::probe(dev).map(|m| (DriverKind::Edu, m))
}

/// A driver on a VFIO device with upstream's fixture memory.
pub struct VfioEnv<D: Driver<'static, Function: Clone, Clock: Clone>> {
    // Field order is drop order: driver, then mappings/buffers, then device and IOMMU.
    driver: CheckedDriver<'static, D>,
    /// The memcpy region (a view of one of `_buffers`; lent out borrowing `self`).
    memcpy_region: DmaRegion<'static>,
    unmapped_iova: u64,
    mapped: Vec<(u64, u64)>,
    _buffers: Vec<DmaBuffer>,
    device: Arc<VfioPciDevice>,
    iommu: Arc<Iommu>,
    storm_bytes: u64,
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> Drop for VfioEnv<D> {
    fn drop(&mut self) {
        // Quiesce the device before its memory goes (the fixture teardown normally removed the
        // driver already; this covers setups and tests that failed half-way).
        if self.driver.state() == DriverState::Busy {
            let _ = self.driver.memcpy_wait(5_000_000_000);
        }
        if self.driver.state() == DriverState::Ready {
            let _ = self.driver.remove();
        }
        for (iova, size) in self.mapped.drain(..) {
            let _ = self.iommu.unmap(iova, size);
        }
    }
}

fn os(what: &str, e: impl std::fmt::Display) -> TestError {
    TestError::fail(format!("{what}: {e}"))
}

/// The memcpy region for a device whose copies are at most `max_memcpy_size`: upstream's 1 GiB,
/// or less where that changes nothing upstream would do. Upstream's copy sizes,
/// `min(4 x max_memcpy_size, region / 2)` and `min(max_memcpy_size, region / 2)` (see
/// [`super::copy_sizes`]), are the same in any region of at least `8 x max_memcpy_size`, so a
/// device with small copies (edu: 4 KiB, igb: one frame) maps 2 MiB instead of pinning 1 GiB
/// (about 5 s per test under an emulated IOMMU, for nothing). Devices with large copies (DSA,
/// CBDMA) get upstream's 1 GiB.
pub fn memcpy_region_bytes(max_memcpy_size: u64) -> u64 {
    let same_sizes = max_memcpy_size
        .saturating_mul(8)
        .checked_next_power_of_two()
        .unwrap_or(UPSTREAM_MEMCPY_REGION);
    same_sizes.clamp(MIN_DRIVER_REGION, UPSTREAM_MEMCPY_REGION)
}

fn region_bytes(min: u64, want: u64) -> u64 {
    want.max(min).checked_next_power_of_two().unwrap_or(want)
}

impl<D> VfioEnv<D>
where
    D: Driver<'static, Function = SharedDevice, Clock = MonotonicClock>,
{
    fn new(
        device: Arc<VfioPciDevice>,
        iommu: Arc<Iommu>,
        matched: Match,
        storm_bytes: u64,
    ) -> TestResult<Self> {
        let mut alloc = iommu.iova_allocator().map_err(|e| os("IOVA ranges", e))?;
        let mut buffers = Vec::new();
        let mut mapped = Vec::new();

        let drv_len = region_bytes(MIN_DRIVER_REGION, matched.region_size as u64);
        let drv_buf = DmaBuffer::anonymous_shared(drv_len).map_err(|e| os("driver region", e))?;
        let drv_iova = alloc
            .alloc(drv_len)
            .map_err(|e| os("IOVA for the driver region", e))?;
        iommu
            .map_buffer(&drv_buf, drv_iova)
            .map_err(|e| os("map driver region", e))?;
        mapped.push((drv_iova, drv_buf.len() as u64));
        // SAFETY: the buffer is kept in the env (dropped after the driver), and the region
        // never leaves the env.
        let drv_region = unsafe { drv_buf.region_unbounded(drv_iova) };
        buffers.push(drv_buf);

        let shared = SharedDevice(Arc::clone(&device));
        let mut driver = CheckedDriver::<D>::new(shared, MonotonicClock::new(), drv_region)
            .map_err(|e| os("probe", e))?;
        driver.init().map_err(|e| os("driver init", e))?;

        // Upstream (7.3): a 1 GiB memcpy region whatever the limits, so ordinary copies of
        // min(4 x max_memcpy_size, 512 MiB) are split into max_memcpy_size chunks.
        let memcpy_len = memcpy_region_bytes(
            driver
                .limits()
                .map_err(|e| os("driver limits", e))?
                .max_memcpy_size,
        );
        let setup = (|| -> TestResult<(DmaRegion<'static>, u64)> {
            let buf =
                DmaBuffer::anonymous_shared(memcpy_len).map_err(|e| os("memcpy region", e))?;
            let iova = alloc
                .alloc(memcpy_len)
                .map_err(|e| os("IOVA for the memcpy region", e))?;
            iommu
                .map_buffer(&buf, iova)
                .map_err(|e| os("map memcpy region", e))?;
            mapped.push((iova, buf.len() as u64));
            // SAFETY: the buffer is kept in the env for as long as the region is used; the env
            // lends it out only borrowing itself.
            let region = unsafe { buf.region_unbounded(iova) };
            buffers.push(buf);
            let unmapped = alloc
                .alloc(UNMAPPED_BLOCK)
                .or_else(|_| alloc.alloc(MIN_DRIVER_REGION))
                .map_err(|e| os("IOVA for the unmapped block", e))?;
            Ok((region, unmapped))
        })();
        let (memcpy_region, unmapped_iova) = match setup {
            Ok(v) => v,
            Err(e) => {
                let _ = driver.remove();
                return Err(e);
            }
        };
        Ok(Self {
            driver,
            memcpy_region,
            unmapped_iova,
            mapped,
            _buffers: buffers,
            device,
            iommu,
            storm_bytes,
        })
    }
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> VfioEnv<D> {
    fn irq_kind(&self, vector: u16) -> IrqKind {
        if self
            .device
            .irq_eventfd(IrqKind::MsiX, u32::from(vector))
            .is_some()
        {
            IrqKind::MsiX
        } else {
            IrqKind::Msi
        }
    }
}

impl<D: Driver<'static, Function: Clone, Clock: Clone>> Env for VfioEnv<D> {
    type Driver = D;

    fn driver(&mut self) -> &mut CheckedDriver<'static, D> {
        &mut self.driver
    }

    fn driver_ref(&self) -> &CheckedDriver<'static, D> {
        &self.driver
    }

    fn memcpy_region(&self) -> DmaRegion<'_> {
        self.memcpy_region
    }

    fn unmapped_iova(&self) -> u64 {
        self.unmapped_iova
    }

    fn msi_take(&self, vector: u16) -> TestResult<u64> {
        let kind = self.irq_kind(vector);
        let n = self
            .device
            .irq_take(kind, u32::from(vector))
            .map_err(|e| os("eventfd read", e))?;
        Ok(n.unwrap_or(0))
    }

    fn msi_wait(&self, vector: u16, timeout: Duration) -> TestResult<u64> {
        let kind = self.irq_kind(vector);
        self.device
            .irq_wait(kind, u32::from(vector), timeout)
            .map_err(|e| os("eventfd wait", e))
    }

    fn fault_policy(&self) -> FaultPolicy {
        FaultPolicy::Any
    }

    fn storm_bytes(&self) -> u64 {
        self.storm_bytes
    }
}

/// Open `bdf` in `mode`, probe, and build the environment for the matching driver.
pub fn env(bdf: Bdf, mode: IommuMode) -> TestResult<Box<dyn DynEnv>> {
    let name = bdf.to_string();
    let iommu = Iommu::open(mode).map_err(|e| os(mode.name(), e))?;
    let device = Arc::new(VfioPciDevice::open(bdf, &iommu).map_err(|e| os(&name, e))?);
    let Some((kind, matched)) = probe(&SharedDevice(Arc::clone(&device))) else {
        return Err(TestError::skip("No driver found for device"));
    };
    let storm = super::storm_bytes(UPSTREAM_STORM_BYTES);
    Ok(match kind {
        DriverKind::Dsa => Box::new(VfioEnv::<VfioDsa>::new(device, iommu, matched, storm)?),
        DriverKind::Ioat => Box::new(VfioEnv::<VfioIoat>::new(device, iommu, matched, storm)?),
        DriverKind::Igb => Box::new(VfioEnv::<VfioIgb>::new(device, iommu, matched, storm)?),
        DriverKind::Edu => Box::new(VfioEnv::<VfioEdu>::new(device, iommu, matched, storm)?),
    })
}

/// Which devices the program takes: the first candidate (BDF arguments, `$VFIO_SELFTESTS_BDF`,
/// then the pool) whose ids belong to a device family with a passthru memcpy driver. Others are
/// rejected with upstream's "No driver found for device" (and the program exits 4).
pub fn selector() -> DeviceSelector {
    DeviceSelector::matching("device with a passthru memcpy driver", |f| {
        use passthru_core::pci::DeviceFamily as F;
        match passthru_core::pci::supported_device(f.vendor, f.device) {
            Some(k) if matches!(k.family, F::Dsa | F::Ioat | F::Igb | F::Edu) => Ok(()),
            _ => Err(format!(
                "No driver found for device ({:04x}:{:04x})",
                f.vendor, f.device
            )),
        }
    })
    .vfio_bound()
}

/// Upstream's `main` before the harness: open the device in the default mode and probe.
/// `Ok(Some(name))` for a match, `Ok(None)` without one.
fn probe_default(bdf: Bdf) -> Result<Option<&'static str>, passthru_linux::Error> {
    let iommu = Iommu::open(IommuMode::default())?;
    let device = VfioPciDevice::open(bdf, &iommu)?;
    Ok(probe(&SharedDevice(Arc::new(device))).map(|(_, m)| m.name))
}

/// The program's suite: fixture `vfio_pci_driver_test`, the five IOMMU modes × seven cases,
/// with upstream's one-time probe ("No driver found for device" → exit 4).
pub fn suite() -> Suite {
    let mut f = Fixture::with_setup(PROGRAM, |ctx, mode: &IommuMode| env(ctx.bdf()?, *mode));
    for mode in IommuMode::ALL {
        f = f.variant(mode.name(), mode);
    }
    for case in CASES {
        f = f.test_with_timeout(case.name(), case_timeout(case), move |ctx, _, env| {
            env.run_case(ctx, case)
        });
    }
    let f = f.teardown(|_, _, mut env: Box<dyn DynEnv>| env.finish());
    Suite::new(PROGRAM)
        .devices(selector())
        .before_all(|bdfs| {
            let Some(&bdf) = bdfs.first() else {
                return Err(TestError::skip("no device given"));
            };
            match probe_default(bdf) {
                Ok(Some(name)) => Ok(Some(format!("{bdf}: Driver found: {name}"))),
                Ok(None) => Err(TestError::skip(format!(
                    "{bdf}: No driver found for device"
                ))),
                Err(e)
                    if crate::programs::util::outcome(&e)
                        == crate::programs::util::Outcome::Skip =>
                {
                    Err(TestError::skip(format!("{bdf}: {e}")))
                }
                Err(e) => Err(TestError::fail(format!("{bdf}: {e}"))),
            }
        })
        .fixture(f)
}

/// Run `vfio_pci_driver_test` with `args` (without the program name) and the device
/// environment; returns the exit code.
pub fn run(args: &[String], source: &DeviceSource) -> i32 {
    suite().run(
        args,
        source,
        Box::new(std::io::stdout()),
        &mut std::io::stderr(),
    )
}

/// The program's `main`: process arguments and environment, exit with the kselftest code.
pub fn main() -> ! {
    let args = crate::harness::process_args(PROGRAM);
    if let Err(e) = super::check_storm_env() {
        eprintln!("{PROGRAM}: {e}");
        std::process::exit(crate::harness::KSFT_FAIL);
    }
    std::process::exit(run(&args, &DeviceSource::from_env()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcpy_region_keeps_upstreams_copy_sizes_and_shrinks_only_for_small_copies() {
        for shift in 0..=40 {
            for max in [1u64 << shift, (1u64 << shift) + 1, (3u64 << shift) / 2] {
                let region = memcpy_region_bytes(max);
                assert!(
                    (MIN_DRIVER_REGION..=UPSTREAM_MEMCPY_REGION).contains(&region),
                    "{max:#x}: {region:#x}"
                );
                assert_eq!(
                    super::super::copy_sizes(max, region),
                    super::super::copy_sizes(max, UPSTREAM_MEMCPY_REGION),
                    "max_memcpy_size {max:#x}, region {region:#x}"
                );
            }
        }
        assert_eq!(memcpy_region_bytes(4096), MIN_DRIVER_REGION);
        assert_eq!(memcpy_region_bytes(1 << 31), UPSTREAM_MEMCPY_REGION);
        assert_eq!(memcpy_region_bytes(u64::MAX), UPSTREAM_MEMCPY_REGION);
    }
}
