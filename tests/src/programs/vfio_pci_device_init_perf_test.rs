//! `vfio_pci_device_init_perf_test`: open every given device in parallel, one thread per
//! device, all attached to one shared IOMMU, and report how long `VfioPciDevice::open` took
//! (upstream `tools/testing/selftests/vfio/vfio_pci_device_init_perf_test.c`). Like upstream it asserts nothing about the numbers; it
//! fails if any open fails and skips if the environment lacks something.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use passthru_linux::bdf::Bdf;
use passthru_linux::{Iommu, IommuMode, VfioPciDevice};

use super::util::Classify;
use crate::harness::{Ctx, DeviceSelector, Fixture, Suite, TestError, TestResult};

/// The program name.
pub const PROGRAM: &str = "vfio_pci_device_init_perf_test";

/// One device's timing: when its open started and ended.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Start of the open.
    pub start: Instant,
    /// End of the open.
    pub end: Instant,
}

/// Wall time (earliest start to latest end) and min / max / average per-device open time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Earliest start to latest end.
    pub wall: Duration,
    /// Fastest open.
    pub min: Duration,
    /// Slowest open.
    pub max: Duration,
    /// Mean open time.
    pub avg: Duration,
}

/// Summarizes the timings (`None` for an empty list).
pub fn summarize(t: &[Timing]) -> Option<Summary> {
    let first = t.iter().map(|x| x.start).min()?;
    let last = t.iter().map(|x| x.end).max()?;
    let each: Vec<Duration> = t.iter().map(|x| x.end - x.start).collect();
    let total: Duration = each.iter().sum();
    Some(Summary {
        wall: last - first,
        min: *each.iter().min()?,
        max: *each.iter().max()?,
        avg: total / each.len() as u32,
    })
}

fn init(ctx: &Ctx, mode: &IommuMode, iommu: &mut Arc<Iommu>) -> TestResult {
    let bdfs: Vec<Bdf> = ctx.bdfs().to_vec();
    let n = bdfs.len();
    let start = Arc::new(Barrier::new(n));
    let opened = Arc::new(Barrier::new(n));
    let handles: Vec<_> = bdfs
        .iter()
        .map(|&bdf| {
            let iommu = iommu.clone();
            let (start, opened) = (start.clone(), opened.clone());
            std::thread::spawn(move || -> TestResult<Timing> {
                start.wait();
                let t0 = Instant::now();
                let r = VfioPciDevice::open(bdf, &iommu);
                let t1 = Instant::now();
                // Every thread reaches the second barrier, even on failure, so none hangs.
                opened.wait();
                let dev = r.classify()?;
                drop(dev);
                Ok(Timing { start: t0, end: t1 })
            })
        })
        .collect();
    let mut timings = Vec::new();
    let mut errors = Vec::new();
    for (h, bdf) in handles.into_iter().zip(&bdfs) {
        match h.join() {
            Ok(Ok(t)) => timings.push(t),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(TestError::fail(format!("{bdf}: open thread panicked"))),
        }
    }
    if let Some(f) = errors.iter().find(|e| matches!(e, TestError::Fail(_))) {
        return Err(f.clone());
    }
    if let Some(s) = errors.into_iter().next() {
        return Err(s);
    }
    let Some(s) = summarize(&timings) else {
        return Err(TestError::skip("no device opened"));
    };
    ctx.log(format!(
        "{mode}: {n} device(s): wall {:.3} ms; per device min {:.3} ms, max {:.3} ms, avg {:.3} ms",
        s.wall.as_secs_f64() * 1e3,
        s.min.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3,
        s.avg.as_secs_f64() * 1e3
    ));
    Ok(())
}

/// The program's suite.
pub fn suite() -> Suite {
    let f = Fixture::with_setup("vfio_pci_device_init_perf_test", |ctx, mode: &IommuMode| {
        Iommu::open(*mode).classify_ctx(&format!("{}: open IOMMU ({mode})", ctx.bdf()?))
    })
    .variants(IommuMode::ALL.map(|m| (m.name(), m)))
    .test("init", init);
    Suite::new(PROGRAM)
        .devices(DeviceSelector::all().vfio_bound())
        .fixture(f)
}

/// Names this program adds beyond upstream's (none).
pub fn extra_names() -> Vec<String> {
    Vec::new()
}

/// Runs the program with the process's arguments and environment, and exits.
pub fn main() -> ! {
    suite().main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_overlapping_opens() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let t = [
            Timing {
                start: t0,
                end: t0 + ms(10),
            },
            Timing {
                start: t0 + ms(2),
                end: t0 + ms(32),
            },
        ];
        let s = summarize(&t).unwrap();
        assert_eq!(s.wall, ms(32));
        assert_eq!(s.min, ms(10));
        assert_eq!(s.max, ms(30));
        assert_eq!(s.avg, ms(20));
        assert!(summarize(&[]).is_none());
    }
}
