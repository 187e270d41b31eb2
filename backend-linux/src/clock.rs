//! [`MonotonicClock`]: `passthru_core::mmio::Clock` on CLOCK_MONOTONIC.

use std::time::Duration;

use passthru_core::mmio::Clock;

/// CLOCK_MONOTONIC via clock_gettime; delays sleep for long waits and spin for short ones.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

/// Delays at least this long sleep instead of spinning (50 µs).
const SLEEP_THRESHOLD_NS: u64 = 50_000;

impl MonotonicClock {
    /// A clock.
    pub const fn new() -> Self {
        MonotonicClock
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    fn delay_ns(&self, ns: u64) {
        let start = self.now_ns();
        if ns >= SLEEP_THRESHOLD_NS {
            std::thread::sleep(Duration::from_nanos(ns));
        }
        while self.now_ns().wrapping_sub(start) < ns {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_delay_waits_at_least() {
        let c = MonotonicClock::new();
        let a = c.now_ns();
        c.delay_ns(200_000);
        let b = c.now_ns();
        assert!(b >= a + 200_000, "{a} -> {b}");
        c.delay_ns(1_000);
        assert!(c.now_ns() >= b + 1_000);
    }
}
