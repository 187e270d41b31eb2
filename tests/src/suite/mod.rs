//! The upstream driver test suite (`vfio_pci_driver_test`), written once.
//!
//! The seven cases of upstream's `vfio_pci_driver_test` (`tools/testing/selftests/vfio/vfio_pci_driver_test.c`) are
//! generic over an [`Env`] — a device bound to a passthru driver, DMA memory with IOVAs, an IOVA
//! that is never mapped, and an MSI observer — and over the driver type. They run:
//!
//! * on the software models (dsa, ioat/CBDMA, edu) in `cargo test` and as `passthru test`
//!   ([`models`]);
//! * on real devices through VFIO as the kselftest program `vfio_pci_driver_test` ([`vfio`]).
//!
//! Assertions are upstream's, stricter where our drivers allow:
//!
//! * "no MSI pending" is checked after **every** memcpy, and before and after `send_msi`, which
//!   must deliver exactly one interrupt;
//! * a faulting memcpy must come back as the device's decoded error where the environment says so
//!   ([`FaultPolicy::DeviceError`]: DSA page-fault completion, CBDMA CHANERR read/write data
//!   error, with the faulting side checked), and the next memcpy must succeed and copy correctly;
//! * copies are verified with data that differs between iterations (a re-copy of identical
//!   buffers proves nothing), the storm's result is compared too, and `init_remove` checks the
//!   limits stay the same across cycles.
//!
//! `memcpy_storm` copies `PASSTHRU_STORM_BYTES` in total (see [`storm_bytes`]).

pub mod bench;
pub mod guest;
pub mod models;
pub mod vfio;

use std::time::{Duration, Instant};

use passthru_core::driver::{
    CheckedDriver, DeviceError, Driver, DriverError, DriverState, Limits, WaitMode,
};
use passthru_core::idxd::completion::{CompletionStatus, StatusByte};
use passthru_core::ioat::ChanErr;
use passthru_core::mmio::DmaRegion;

use crate::harness::{Ctx, Rng, TestError, TestResult};

/// The environment variable scaling `memcpy_storm`: total bytes copied (a plain number, or with a
/// `K`/`M`/`G`/`T` suffix meaning KiB/MiB/GiB/TiB). Upstream copies 250 GiB.
pub const ENV_STORM_BYTES: &str = "PASSTHRU_STORM_BYTES";

/// Upstream's storm total: 250 GiB.
pub const UPSTREAM_STORM_BYTES: u64 = 250 << 30;

/// `init_remove` cycles (upstream: 10).
pub const INIT_REMOVE_CYCLES: u32 = 10;

/// `mix_and_match` iterations (upstream: 10).
pub const MIX_AND_MATCH_ITERATIONS: u32 = 10;

/// How long `send_msi` waits for its interrupt by default.
pub const MSI_TIMEOUT: Duration = Duration::from_secs(5);

/// The seven cases, in upstream order; the names are upstream's test names.
pub const CASES: [Case; 7] = Case::ALL;

/// One upstream test case: the same type the guest program (`vfio_pci_guest_driver_test`)
/// passes to its guest, so every suite names and numbers the cases alike.
pub use passthru_guest::rt::driver_test::Case;

/// The per-test timeout of `case` (upstream: 30 s default, `memcpy_storm` 60 s).
pub const fn case_timeout(case: Case) -> Duration {
    match case {
        Case::MemcpyStorm => Duration::from_secs(60),
        _ => Duration::from_secs(30),
    }
}

/// Which side of a faulting copy is unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSide {
    /// The source (a DMA read faults).
    Source,
    /// The destination (a DMA write faults).
    Destination,
}

/// What a faulting memcpy must return in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPolicy {
    /// The driver's decoded device error naming the faulting side (models of dsa and ioat).
    DeviceError,
    /// Success: the device cannot see the fault (edu); the environment must observe the IOMMU
    /// fault itself ([`Env::take_iommu_faults`]).
    Silent,
    /// Anything but a refused call (upstream: "not all devices report"); the outcome is logged.
    Any,
}

/// A DMA fault as the IOMMU (or its model) recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IommuFault {
    /// The faulting IOVA.
    pub iova: u64,
    /// True for a DMA write.
    pub write: bool,
}

/// What the suite needs around a driver: the device and its driver, DMA memory, an unmapped
/// IOVA and an MSI observer. Implemented for the models and for VFIO.
pub trait Env {
    /// The driver type.
    type Driver: Driver<'static, Function: Clone, Clock: Clone>;

    /// The driver, initialised at setup.
    fn driver(&mut self) -> &mut CheckedDriver<'static, Self::Driver>;

    /// The driver, for reading.
    fn driver_ref(&self) -> &CheckedDriver<'static, Self::Driver>;

    /// The memcpy region: host memory mapped for the device at its IOVA (not the driver's own
    /// region), lent for as long as the environment is borrowed. The suite writes and compares
    /// it only while no copy is in flight.
    fn memcpy_region(&self) -> DmaRegion<'_>;

    /// An IOVA block of at least the memcpy size that is never mapped.
    fn unmapped_iova(&self) -> u64;

    /// Non-blocking: take the interrupts pending on `vector` (0 = nothing pending), like an
    /// 8-byte read of a non-blocking eventfd.
    fn msi_take(&self, vector: u16) -> TestResult<u64>;

    /// Wait up to `timeout` for an interrupt on `vector`, then take the count (0 on timeout).
    fn msi_wait(&self, vector: u16, timeout: Duration) -> TestResult<u64>;

    /// What a faulting memcpy must return here.
    fn fault_policy(&self) -> FaultPolicy;

    /// How every memcpy of the suite waits: [`WaitMode::Poll`] (upstream) or
    /// [`WaitMode::Interrupt`] (the wait sleeps on the completion interrupt and consumes it, so
    /// the "no MSI pending" checks hold in both modes).
    fn wait_mode(&self) -> WaitMode {
        WaitMode::Poll
    }

    /// The IOMMU faults recorded since the last call, if this environment can observe them.
    fn take_iommu_faults(&mut self) -> Option<Vec<IommuFault>> {
        None
    }

    /// The timeout for one ordinary memcpy, in nanoseconds.
    fn memcpy_timeout_ns(&self) -> u64 {
        5_000_000_000
    }

    /// How long `send_msi` waits for its interrupt.
    fn msi_timeout(&self) -> Duration {
        MSI_TIMEOUT
    }

    /// Total bytes `memcpy_storm` copies.
    fn storm_bytes(&self) -> u64;

    /// Rough lower bound of the device's copy bandwidth (bytes/s), to size the storm's wait.
    fn min_bandwidth(&self) -> u64 {
        200 << 20
    }
}

/// A type-erased environment: what a fixture keeps as its per-test state.
pub trait DynEnv {
    /// Run one case.
    fn run_case(&mut self, ctx: &Ctx, case: Case) -> TestResult;
    /// Remove the driver (the fixture teardown); an error fails the test.
    fn finish(&mut self) -> TestResult;
    /// The driver's name.
    fn driver_name(&self) -> &'static str;
}

impl<E: Env> DynEnv for E {
    fn run_case(&mut self, ctx: &Ctx, case: Case) -> TestResult {
        run_case(self, ctx, case)
    }

    fn finish(&mut self) -> TestResult {
        let d = self.driver();
        match d.state() {
            DriverState::Uninitialized => Ok(()),
            DriverState::Busy => {
                // A case that failed mid-copy: drain it so remove is allowed.
                let _ = d.memcpy_wait(5_000_000_000);
                d.remove().map_err(|e| drv_fail("remove", e))
            }
            DriverState::Ready => d.remove().map_err(|e| drv_fail("remove", e)),
        }
    }

    fn driver_name(&self) -> &'static str {
        self.driver_ref().matched().name
    }
}

fn drv_fail(op: &str, e: DriverError) -> TestError {
    TestError::fail(format!("{op} failed: {e}"))
}

/// Run `case` on `env`.
pub fn run_case<E: Env>(env: &mut E, ctx: &Ctx, case: Case) -> TestResult {
    let mut t = Setup::new(env)?;
    match case {
        Case::InitRemove => init_remove(env, &t),
        Case::MemcpySuccess => memcpy_success(env, ctx, &mut t),
        Case::MemcpyFromUnmappedIova => memcpy_unmapped(env, ctx, &mut t, FaultSide::Source),
        Case::MemcpyToUnmappedIova => memcpy_unmapped(env, ctx, &mut t, FaultSide::Destination),
        Case::SendMsi => send_msi(env, &t),
        Case::MixAndMatch => mix_and_match(env, ctx, &mut t),
        Case::MemcpyStorm => memcpy_storm(env, ctx, &t),
    }
}

/// The copy sizes of upstream's fixture (Linux 7.3 `vfio_pci_driver_test.c`): ordinary copies
/// use `min(4 × max_memcpy_size, region / 2)`, so they are split into several driver copies;
/// the storm uses `min(max_memcpy_size, region / 2)` per copy. Returns `(size, storm_size)`.
pub fn copy_sizes(max_memcpy_size: u64, region_len: u64) -> (u64, u64) {
    let half = region_len / 2;
    (
        max_memcpy_size.saturating_mul(4).min(half),
        max_memcpy_size.min(half),
    )
}

/// Copy `size` bytes as upstream's `vfio_pci_driver_memcpy()` does: in chunks of at most
/// `max_memcpy_size`, each started (count 1) and waited for before the next. Returns the number
/// of chunks; the first failing chunk's error ends the copy. Each chunk waits in `mode`.
pub fn chunked_memcpy<'r, D: Driver<'r, Function: Clone, Clock: Clone>>(
    driver: &mut CheckedDriver<'r, D>,
    src: u64,
    dst: u64,
    size: u64,
    timeout_ns: u64,
    mode: WaitMode,
) -> Result<u64, DriverError> {
    let chunk = driver.limits()?.max_memcpy_size.max(1);
    let mut done = 0u64;
    let mut chunks = 0;
    while done < size {
        let n = chunk.min(size - done);
        driver.memcpy_with(src + done, dst + done, n, timeout_ns, mode)?;
        done += n;
        chunks += 1;
    }
    Ok(chunks)
}

/// What upstream's fixture setup computes after driver init.
struct Setup {
    limits: Limits,
    /// Ordinary copies: `min(4 × max_memcpy_size, memcpy region / 2)` ([`copy_sizes`]).
    size: u64,
    /// One storm copy: `min(max_memcpy_size, memcpy region / 2)`.
    storm_size: u64,
    src: u64,
    dst: u64,
    /// Whether the driver has `send_msi` (without it the stray-MSI checks are skipped too).
    msi: bool,
}

impl Setup {
    fn new<E: Env>(env: &mut E) -> TestResult<Self> {
        let limits = env.driver().limits().map_err(|e| drv_fail("limits", e))?;
        let region = env.memcpy_region();
        let (size, storm_size) = copy_sizes(limits.max_memcpy_size, region.len() as u64);
        if size == 0 {
            return Err(TestError::fail(format!(
                "memcpy size is 0 (max_memcpy_size {:#x}, region {:#x})",
                limits.max_memcpy_size,
                region.len()
            )));
        }
        Ok(Self {
            limits,
            size,
            storm_size,
            src: region.iova(),
            dst: region.iova() + size,
            msi: env.driver_ref().has_send_msi(),
        })
    }

    fn src_off(&self) -> usize {
        0
    }

    fn dst_off(&self) -> usize {
        self.size as usize
    }

    /// Fill src with data derived from `rng` and dst with a different byte, so a successful
    /// copy is visible.
    fn fill(&self, region: DmaRegion<'_>, rng: &mut Rng) {
        let n = self.size as usize;
        if n <= 16 << 20 {
            let mut buf = vec![0u8; n];
            rng.fill(&mut buf);
            write_bytes(region, self.src_off(), &buf);
            // A dst byte never equal to src byte 0, so dst != src before the copy.
            let d = buf[0] ^ 0xa5;
            fill_bytes(region, self.dst_off(), n, d);
        } else {
            // Large (VFIO) regions: upstream's 'x' / 'y' fill plus random head and tail.
            fill_bytes(region, self.src_off(), n, b'x');
            fill_bytes(region, self.dst_off(), n, b'y');
            let mut head = [0u8; 4096];
            rng.fill(&mut head);
            write_bytes(region, self.src_off(), &head);
            rng.fill(&mut head);
            write_bytes(region, self.src_off() + n - head.len(), &head);
        }
    }

    /// The first offset where src and dst differ.
    fn first_difference(&self, region: DmaRegion<'_>) -> Option<usize> {
        first_difference(region, self.src_off(), self.dst_off(), self.size as usize)
    }

    fn check_copied(&self, region: DmaRegion<'_>) -> TestResult {
        self.check_copied_len(region, self.size)
    }

    /// Check the first `len` bytes of dst against src.
    fn check_copied_len(&self, region: DmaRegion<'_>, len: u64) -> TestResult {
        match first_difference(region, self.src_off(), self.dst_off(), len as usize) {
            None => Ok(()),
            Some(off) => Err(TestError::fail(format!(
                "dst differs from src at byte {off:#x} of {len:#x} (src IOVA {:#x}, dst IOVA {:#x})",
                self.src, self.dst
            ))),
        }
    }
}

// The suite's own offsets are derived from the region's length, so an out-of-range access is a
// suite bug: these panic with the region's error rather than report a test failure.

fn write_bytes(region: DmaRegion<'_>, off: usize, src: &[u8]) {
    if let Err(e) = region.copy_from_slice(off, src) {
        panic!("suite bug: memcpy region write: {e}");
    }
}

fn fill_bytes(region: DmaRegion<'_>, off: usize, len: usize, value: u8) {
    if let Err(e) = region.fill(off, len, value) {
        panic!("suite bug: memcpy region fill: {e}");
    }
}

fn first_difference(region: DmaRegion<'_>, a: usize, b: usize, len: usize) -> Option<usize> {
    match region.first_difference(a, b, len) {
        Ok(d) => d,
        Err(e) => panic!("suite bug: memcpy region compare: {e}"),
    }
}

fn check_no_msi<E: Env>(env: &E, vector: u16, after: &str) -> TestResult {
    if !env.driver_ref().has_send_msi() {
        // Upstream 7.3: without send_msi there is no MSI eventfd to check.
        return Ok(());
    }
    let n = env.msi_take(vector)?;
    if n != 0 {
        return Err(TestError::fail(format!(
            "{n} MSI(s) pending on vector {vector} after {after}; none expected"
        )));
    }
    Ok(())
}

/// A copy that must succeed, waited for in the environment's [`Env::wait_mode`].
fn good_memcpy<E: Env>(env: &mut E, t: &Setup, rng: &mut Rng, what: &str) -> TestResult {
    let mode = env.wait_mode();
    t.fill(env.memcpy_region(), rng);
    if t.first_difference(env.memcpy_region()).is_none() {
        return Err(TestError::fail("fill left src equal to dst"));
    }
    let timeout = env.memcpy_timeout_ns();
    chunked_memcpy(env.driver(), t.src, t.dst, t.size, timeout, mode)
        .map_err(|e| drv_fail(what, e))?;
    t.check_copied(env.memcpy_region())?;
    check_no_msi(env, t.limits.msi_vector, what)
}

fn init_remove<E: Env>(env: &mut E, t: &Setup) -> TestResult {
    for cycle in 0..INIT_REMOVE_CYCLES {
        let d = env.driver();
        d.remove()
            .map_err(|e| drv_fail(&format!("remove (cycle {cycle})"), e))?;
        if d.state() != DriverState::Uninitialized {
            return Err(TestError::fail(format!(
                "state after remove is {:?}",
                d.state()
            )));
        }
        let limits = d
            .init()
            .map_err(|e| drv_fail(&format!("init (cycle {cycle})"), e))?;
        if limits != t.limits {
            return Err(TestError::fail(format!(
                "limits changed across remove/init (cycle {cycle}): {limits:?} != {:?}",
                t.limits
            )));
        }
    }
    check_no_msi(env, t.limits.msi_vector, "init/remove cycles")
}

fn memcpy_success<E: Env>(env: &mut E, ctx: &Ctx, t: &mut Setup) -> TestResult {
    check_no_msi(env, t.limits.msi_vector, "setup")?;
    let mut rng = ctx.rng();
    good_memcpy(env, t, &mut rng, "memcpy")
}

/// Check the outcome of a faulting copy against the environment's policy.
fn check_fault<E: Env>(
    env: &mut E,
    ctx: &Ctx,
    t: &Setup,
    side: FaultSide,
    result: Result<(), DriverError>,
) -> TestResult {
    let unmapped = env.unmapped_iova();
    let name = env.driver().matched().name;
    match env.fault_policy() {
        FaultPolicy::Any => {
            match &result {
                Ok(()) => ctx.log(format!("{name}: faulting memcpy reported success")),
                Err(e) => ctx.log(format!("{name}: faulting memcpy reported: {e}")),
            }
            if let Err(e @ DriverError::OutOfOrder { .. }) = result {
                return Err(drv_fail("faulting memcpy", e));
            }
        }
        FaultPolicy::Silent => {
            if let Err(e) = result {
                return Err(drv_fail(
                    "faulting memcpy (this device cannot report DMA faults)",
                    e,
                ));
            }
            let Some(faults) = env.take_iommu_faults() else {
                return Err(TestError::fail(
                    "environment has FaultPolicy::Silent but cannot observe IOMMU faults",
                ));
            };
            let write = side == FaultSide::Destination;
            let hit = faults
                .iter()
                .any(|f| f.write == write && (unmapped..unmapped + t.size).contains(&f.iova));
            if !hit {
                return Err(TestError::fail(format!(
                    "no IOMMU {} fault in {unmapped:#x}+{:#x} recorded; faults: {faults:x?}",
                    if write { "write" } else { "read" },
                    t.size
                )));
            }
        }
        FaultPolicy::DeviceError => {
            let e = match result {
                Ok(()) => {
                    return Err(TestError::fail(format!(
                        "{name}: memcpy {} unmapped IOVA {unmapped:#x} reported success",
                        if side == FaultSide::Source {
                            "from"
                        } else {
                            "to"
                        }
                    )))
                }
                Err(e) => e,
            };
            check_device_fault(name, &e, side, unmapped, t.size)?;
            ctx.log(format!("{name}: faulting memcpy reported: {e}"));
        }
    }
    Ok(())
}

/// The decoded device error a faulting copy must produce on `driver`.
pub fn check_device_fault(
    driver: &str,
    e: &DriverError,
    side: FaultSide,
    unmapped: u64,
    size: u64,
) -> TestResult {
    let write = side == FaultSide::Destination;
    match (driver, e) {
        (
            "dsa",
            DriverError::Device(DeviceError::DsaCompletion {
                status, fault_addr, ..
            }),
        ) => {
            let s = StatusByte(*status);
            if s.status() != Ok(CompletionStatus::PageFaultNoBof) {
                return Err(TestError::fail(format!(
                    "dsa: completion status {status:#04x}, expected page fault (0x03): {e}"
                )));
            }
            if s.write_fault() != write {
                return Err(TestError::fail(format!(
                    "dsa: completion says {} fault, expected {}: {e}",
                    if s.write_fault() { "write" } else { "read" },
                    if write { "write" } else { "read" }
                )));
            }
            if !(unmapped..unmapped + size).contains(fault_addr) {
                return Err(TestError::fail(format!(
                    "dsa: fault address {fault_addr:#x} outside the unmapped block {unmapped:#x}+{size:#x}"
                )));
            }
            Ok(())
        }
        ("ioat", DriverError::Device(DeviceError::IoatChannel { chanerr, .. })) => {
            let c = ChanErr::from_bits_retain(*chanerr);
            // Which bit a real CBDMA sets for an IOMMU-refused read/write is not documented
            // (address error vs data error); accept either for the faulting side only.
            let want = if write {
                ChanErr::WRITE_DATA_ERR | ChanErr::DEST_ADDR_ERR
            } else {
                ChanErr::READ_DATA_ERR | ChanErr::SRC_ADDR_ERR
            };
            let other = if write {
                ChanErr::READ_DATA_ERR | ChanErr::SRC_ADDR_ERR
            } else {
                ChanErr::WRITE_DATA_ERR | ChanErr::DEST_ADDR_ERR
            };
            if !c.intersects(want) || c.intersects(other) {
                return Err(TestError::fail(format!(
                    "ioat: CHANERR {chanerr:#010x} does not name the faulting side ({}): {e}",
                    if write { "write" } else { "read" }
                )));
            }
            Ok(())
        }
        _ => Err(TestError::fail(format!(
            "{driver}: faulting memcpy returned {e}, not the device's decoded fault"
        ))),
    }
}

fn faulting_memcpy<E: Env>(env: &mut E, ctx: &Ctx, t: &Setup, side: FaultSide) -> TestResult {
    let unmapped = env.unmapped_iova();
    let (src, dst) = match side {
        FaultSide::Source => (unmapped, t.dst),
        FaultSide::Destination => (t.src, unmapped),
    };
    let timeout = env.memcpy_timeout_ns();
    let mode = env.wait_mode();
    let r = chunked_memcpy(env.driver(), src, dst, t.size, timeout, mode).map(|_| ());
    if env.driver().state() != DriverState::Ready {
        return Err(TestError::fail(format!(
            "driver state after a faulting memcpy is {:?}",
            env.driver().state()
        )));
    }
    check_fault(env, ctx, t, side, r)?;
    check_no_msi(env, t.limits.msi_vector, "faulting memcpy")
}

fn memcpy_unmapped<E: Env>(env: &mut E, ctx: &Ctx, t: &mut Setup, side: FaultSide) -> TestResult {
    let mut rng = ctx.rng();
    t.fill(env.memcpy_region(), &mut rng);
    check_no_msi(env, t.limits.msi_vector, "setup")?;
    faulting_memcpy(env, ctx, t, side)?;
    if side == FaultSide::Source && t.first_difference(env.memcpy_region()).is_none() {
        return Err(TestError::fail(
            "dst equals src after a copy from an unmapped source",
        ));
    }
    // Stricter than upstream: the device recovered and copies again.
    good_memcpy(env, t, &mut rng, "memcpy after the fault")
}

fn send_one_msi<E: Env>(env: &mut E, vector: u16) -> TestResult {
    check_no_msi(env, vector, "before send_msi")?;
    env.driver()
        .send_msi()
        .map_err(|e| drv_fail("send_msi", e))?;
    let timeout = env.msi_timeout();
    let n = env.msi_wait(vector, timeout)?;
    if n != 1 {
        return Err(TestError::fail(format!(
            "send_msi: read {n} interrupt(s) on vector {vector} within {timeout:?}, expected 1"
        )));
    }
    check_no_msi(env, vector, "send_msi (a second interrupt)")
}

fn send_msi<E: Env>(env: &mut E, t: &Setup) -> TestResult {
    if !t.msi {
        return Err(TestError::skip(format!(
            "{}: the driver has no send_msi",
            env.driver_ref().matched().name
        )));
    }
    send_one_msi(env, t.limits.msi_vector)
}

fn mix_and_match<E: Env>(env: &mut E, ctx: &Ctx, t: &mut Setup) -> TestResult {
    let mut rng = ctx.rng();
    for i in 0..MIX_AND_MATCH_ITERATIONS {
        let at = |e: TestError| match e {
            TestError::Fail(m) => TestError::Fail(format!("iteration {i}: {m}")),
            s => s,
        };
        good_memcpy(env, t, &mut rng, "memcpy").map_err(at)?;
        // Upstream faults on the source every time; alternate to cover both sides.
        let side = if i % 2 == 0 {
            FaultSide::Source
        } else {
            FaultSide::Destination
        };
        faulting_memcpy(env, ctx, t, side).map_err(at)?;
        if t.msi {
            send_one_msi(env, t.limits.msi_vector).map_err(at)?;
        }
    }
    Ok(())
}

/// Checks `$PASSTHRU_STORM_BYTES` before anything runs: unset is fine, anything
/// [`parse_bytes`] rejects (or zero) is bad input, reported in one line (exit 1) rather than
/// silently replaced by the default (on a device, upstream's 250 GiB).
pub fn check_storm_env() -> Result<(), String> {
    match std::env::var_os(ENV_STORM_BYTES) {
        None => Ok(()),
        Some(v) => match v.to_str().and_then(parse_bytes) {
            Some(n) if n > 0 => Ok(()),
            _ => Err(format!(
                "${ENV_STORM_BYTES}={:?} is not a byte count > 0 (e.g. 4096, 64M, 250G; suffixes K/M/G/T)",
                v.to_string_lossy()
            )),
        },
    }
}

/// The storm total: `$PASSTHRU_STORM_BYTES` if set and valid, else `default` (programs call
/// [`check_storm_env`] first, so an invalid value never gets here).
pub fn storm_bytes(default: u64) -> u64 {
    std::env::var(ENV_STORM_BYTES)
        .ok()
        .and_then(|v| parse_bytes(&v))
        .unwrap_or(default)
}

/// Parse `123`, `64K`, `16M`, `250G`, `1T` (binary multiples; an optional trailing `iB`/`B`).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        b'T' | b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// When the driver's limits copy less than the storm total: one line saying so and why.
pub fn storm_cap_note(total: u64, size: u64, count: u64, limits: &Limits) -> Option<String> {
    let bytes = count.saturating_mul(size);
    (bytes < total).then(|| {
        format!(
            "storm: capped at {bytes:#x} of the {total:#x} bytes requested: one memcpy_start \
             copies at most max_memcpy_count {} x min(max_memcpy_size {:#x}, region / 2)",
            limits.max_memcpy_count, limits.max_memcpy_size
        )
    })
}

/// `count = min(total / size, max_memcpy_count)`, at least 1.
pub fn storm_count(total: u64, size: u64, max_count: u64) -> u64 {
    (total / size.max(1)).min(max_count).max(1)
}

fn memcpy_storm<E: Env>(env: &mut E, ctx: &Ctx, t: &Setup) -> TestResult {
    let mut rng = ctx.rng();
    t.fill(env.memcpy_region(), &mut rng);
    let total = env.storm_bytes();
    let size = t.storm_size;
    let count = storm_count(total, size, t.limits.max_memcpy_count);
    let bytes = count.saturating_mul(size);
    // Generous: 4× the time at the environment's minimum bandwidth, at least 10 s.
    let timeout_ns = (bytes / env.min_bandwidth().max(1))
        .saturating_mul(4_000_000_000)
        .max(10_000_000_000);
    ctx.log(format!(
        "storm: {count} x {size:#x} bytes = {bytes:#x} bytes (total requested {total:#x})"
    ));
    if let Some(note) = storm_cap_note(total, size, count, &t.limits) {
        ctx.log(note);
    }
    let start = Instant::now();
    let mode = env.wait_mode();
    env.driver()
        .memcpy_start_with(t.src, t.dst, size, count, mode)
        .map_err(|e| drv_fail("memcpy_start (storm)", e))?;
    env.driver()
        .memcpy_wait(timeout_ns)
        .map_err(|e| drv_fail("memcpy_wait (storm)", e))?;
    let secs = start.elapsed().as_secs_f64();
    ctx.log(format!(
        "storm: {:.3} s, {:.2} GB/s",
        secs,
        bytes as f64 / secs.max(1e-9) / 1e9
    ));
    t.check_copied_len(env.memcpy_region(), size)?;
    check_no_msi(env, t.limits.msi_vector, "memcpy storm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bytes_suffixes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("64K"), Some(64 << 10));
        assert_eq!(parse_bytes("16MiB"), Some(16 << 20));
        assert_eq!(parse_bytes("250G"), Some(UPSTREAM_STORM_BYTES));
        assert_eq!(parse_bytes("1T"), Some(1 << 40));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }

    #[test]
    fn storm_count_is_bounded() {
        assert_eq!(storm_count(250 << 30, 1 << 20, 65535), 65535);
        assert_eq!(storm_count(64 << 20, 1 << 20, 65535), 64);
        assert_eq!(storm_count(1, 1 << 20, 65535), 1);
        assert_eq!(storm_count(1 << 30, 4096, 32), 32);
    }

    #[test]
    fn case_names_are_upstreams() {
        let names: Vec<_> = CASES.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "init_remove",
                "memcpy_success",
                "memcpy_from_unmapped_iova",
                "memcpy_to_unmapped_iova",
                "send_msi",
                "mix_and_match",
                "memcpy_storm"
            ]
        );
    }
}
