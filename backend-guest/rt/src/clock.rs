//! A TSC clock (frequency from the host's `KVM_GET_TSC_KHZ`, in [`BootInfo::tsc_khz`]).
//!
//! [`BootInfo::tsc_khz`]: crate::abi::BootInfo::tsc_khz

/// Reads the TSC.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed at CPL0 (and CPL3 unless CR4.TSD).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds from TSC ticks at `tsc_khz`; 1 ns per tick if the frequency is unknown.
pub const fn ticks_to_ns(ticks: u64, tsc_khz: u32) -> u64 {
    if tsc_khz == 0 {
        return ticks;
    }
    ((ticks as u128 * 1_000_000) / tsc_khz as u128) as u64
}

/// Monotonic nanoseconds from the TSC.
pub fn now_ns() -> u64 {
    ticks_to_ns(rdtsc(), crate::boot_info().tsc_khz)
}

/// The guest's clock for drivers (`passthru_core::mmio::Clock`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TscClock;

impl passthru_core::mmio::Clock for TscClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_at_the_given_frequency() {
        assert_eq!(ticks_to_ns(2_000_000, 2_000_000), 1_000_000);
        assert_eq!(ticks_to_ns(3, 3_000_000), 1);
        assert_eq!(ticks_to_ns(u64::MAX, 1_000_000), u64::MAX);
        assert_eq!(ticks_to_ns(7, 0), 7);
    }
}
