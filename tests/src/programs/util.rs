//! Helpers shared by the test programs: classifying library errors as SKIP or FAIL, opening a
//! device in a mode, picking a device with a capability from the pool, the running kernel.

use std::sync::Arc;

use super::expectations::KernelVersion;
use passthru_linux::bdf::Bdf;
use passthru_linux::sys::Errno;
use passthru_linux::sysfs::Sysfs;
use passthru_linux::{Error, Iommu, IommuMode, VfioPciDevice};

use crate::harness::{Ctx, TestError, TestResult};

/// Converts library results into test results: errors the library classifies as environment
/// problems ([`Error::is_environment`]: missing node, not bound to vfio-pci, EPERM, no hugepages...)
/// become SKIP with the library's one-line reason (which names the device and the fix); all
/// others become FAIL.
pub trait Classify<T> {
    /// Classify with no extra context.
    fn classify(self) -> TestResult<T>;
    /// Classify, prefixing the message with what was being done.
    fn classify_ctx(self, what: &str) -> TestResult<T>;
}

/// How a kselftest program reports a library error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The environment lacks a prerequisite: report SKIP (exit 4).
    Skip,
    /// Something that should work did not, or the input was invalid: report FAIL (exit 1).
    Fail,
}

/// The kselftest policy for a library error: SKIP when the environment lacks something
/// ([`Error::is_environment`]), else FAIL.
pub fn outcome(e: &Error) -> Outcome {
    if e.is_environment() {
        Outcome::Skip
    } else {
        Outcome::Fail
    }
}

/// The [`TestError`] for a library error (see [`Classify`]). A device not bound to vfio-pci
/// gets the `passthru setup` hint.
pub fn classify_error(e: &Error, what: Option<&str>) -> TestError {
    let mut text = match what {
        Some(w) => format!("{w}: {e}"),
        None => e.to_string(),
    };
    if let Error::NotBoundToVfio { bdf, .. } = e {
        text.push_str(&format!(" or run `passthru setup {bdf}`"));
    }
    match outcome(e) {
        Outcome::Skip => TestError::Skip(text),
        Outcome::Fail => TestError::Fail(text),
    }
}

impl<T> Classify<T> for Result<T, Error> {
    fn classify(self) -> TestResult<T> {
        self.map_err(|e| classify_error(&e, None))
    }
    fn classify_ctx(self, what: &str) -> TestResult<T> {
        self.map_err(|e| classify_error(&e, Some(what)))
    }
}

/// The running kernel's version (FAIL if uname's release cannot be parsed: the expectations
/// depend on it).
pub fn kernel() -> TestResult<KernelVersion> {
    KernelVersion::current()
        .ok_or_else(|| TestError::fail("cannot parse the running kernel's release (uname -r)"))
}

/// An IOMMU in `mode` with the device `bdf` attached: upstream's `iommu_init` followed by
/// `vfio_pci_device_init`.
pub fn open_device(bdf: Bdf, mode: IommuMode) -> TestResult<(Arc<Iommu>, VfioPciDevice)> {
    let iommu = Iommu::open(mode).classify_ctx(&format!("{bdf}: open IOMMU ({mode})"))?;
    let dev = VfioPciDevice::open(bdf, &iommu).classify()?;
    Ok((iommu, dev))
}

/// Picks the first device of the run (command line, `$VFIO_SELFTESTS_BDF`, then the pool
/// `$VFIO_SELFTESTS_BDFS`) for which `usable` returns `Ok`. `usable` may return a SKIP (the
/// device lacks the capability; the next one is tried) or a FAIL (returned at once). When no
/// device fits, the SKIP lists every device with its reason.
pub fn pick_device<T>(
    ctx: &Ctx,
    need: &str,
    mut usable: impl FnMut(Bdf) -> TestResult<T>,
) -> TestResult<T> {
    let mut reasons = Vec::new();
    for &bdf in ctx.bdfs() {
        match usable(bdf) {
            Ok(v) => return Ok(v),
            Err(TestError::Skip(r)) => reasons.push(format!("{bdf}: {r}")),
            Err(f @ TestError::Fail(_)) => return Err(f),
        }
    }
    if reasons.is_empty() {
        return Err(TestError::skip(format!("no device given; {need} needed")));
    }
    Err(TestError::skip(format!(
        "no device with {need} ({}); add one to $VFIO_SELFTESTS_BDFS",
        reasons.join("; ")
    )))
}

/// The errno an expected-to-fail call returned, as text for logs and messages.
pub fn errno_text(e: Errno) -> String {
    format!("{e} ({})", e.desc())
}

/// The default sysfs (`/sys`).
pub fn sysfs() -> Sysfs {
    Sysfs::default()
}

/// `n` as a power of two at least `n` (for allocator sizes); `None` on overflow.
pub fn pow2_at_least(n: u64) -> Option<u64> {
    n.max(1).checked_next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_and_fail_classification_follows_the_library() {
        let skip = Error::NotBoundToVfio {
            bdf: "0000:00:04.0".into(),
            driver: Some("igb".into()),
        };
        match classify_error(&skip, Some("open")) {
            TestError::Skip(r) => {
                assert!(r.starts_with("open: 0000:00:04.0: bound to igb"), "{r}");
                assert!(r.ends_with(" or run `passthru setup 0000:00:04.0`"), "{r}");
            }
            other => panic!("expected skip, got {other:?}"),
        }
        let fail = Error::Os {
            who: "0000:00:04.0".into(),
            op: "VFIO_IOMMU_MAP_DMA",
            errno: Errno::EFAULT,
        };
        assert!(
            matches!(classify_error(&fail, None), TestError::Fail(m) if m.contains("VFIO_IOMMU_MAP_DMA"))
        );
        assert_eq!(outcome(&skip), Outcome::Skip);
        assert_eq!(outcome(&fail), Outcome::Fail);
    }

    #[test]
    fn pow2_rounding() {
        assert_eq!(pow2_at_least(0), Some(1));
        assert_eq!(pow2_at_least(4096), Some(4096));
        assert_eq!(pow2_at_least(4097), Some(8192));
        assert_eq!(pow2_at_least(u64::MAX), None);
    }
}
