//! Interrupts: enable/disable, per-vector counts (kept by the runtime's stubs), and waits.
//!
//! Every vector 32–255 has a stub that atomically increments this vCPU's
//! [`PerCpu::vector_counts`] entry and EOIs; the NMI stub increments entry 2. Waiting for an
//! interrupt is waiting for a count to move.
//!
//! [`PerCpu::vector_counts`]: crate::abi::PerCpu::vector_counts

use crate::percpu::this_cpu;

/// The NMI vector.
pub const NMI_VECTOR: u8 = 2;

/// Enables maskable interrupts (`sti`).
#[inline]
pub fn enable() {
    x86_64::instructions::interrupts::enable();
}

/// Disables maskable interrupts (`cli`).
#[inline]
pub fn disable() {
    x86_64::instructions::interrupts::disable();
}

/// How many interrupts with `vector` this vCPU has taken (since the host last cleared it).
#[inline]
pub fn count(vector: u8) -> u64 {
    // SAFETY: this vCPU's PerCpu block; the stubs and the host update the entry atomically
    // (lock inc / aligned 8-byte store), so a volatile aligned load sees a whole value.
    unsafe { core::ptr::addr_of!((*this_cpu()).vector_counts[vector as usize]).read_volatile() }
}

/// Blocks in `HLT` (interrupts enabled) until the count of `vector` differs from `seen`;
/// returns the new count. There is no guest-side timeout: the host's wait bounds it.
pub fn wait_hlt(vector: u8, seen: u64) -> u64 {
    loop {
        disable();
        let c = count(vector);
        if c != seen {
            enable();
            return c;
        }
        // `sti; hlt` is atomic with respect to interrupts: one arriving between the check and
        // the halt wakes the halt.
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Blocks in `HLT` until the count of `vector` differs from `seen` (returns the new count) or
/// `timeout_ns` of TSC time pass (returns `None`). A one-shot local-APIC timer
/// ([`crate::apic::arm_timer`], vector [`crate::apic::TIMER_VECTOR`]) wakes the halt at the
/// deadline, so the APIC must be enabled.
pub fn wait_hlt_timeout(vector: u8, seen: u64, timeout_ns: u64) -> Option<u64> {
    let start = crate::clock::now_ns();
    loop {
        disable();
        let c = count(vector);
        let elapsed = crate::clock::now_ns().wrapping_sub(start);
        if c != seen || elapsed >= timeout_ns {
            crate::apic::disarm_timer();
            enable();
            return (c != seen).then_some(c);
        }
        let left = (timeout_ns - elapsed).min(crate::apic::TIMER_MAX_TICKS as u64);
        crate::apic::arm_timer(left as u32);
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Spins (with `pause`) until the count of `vector` differs from `seen` or `timeout_ns` passes
/// on [`crate::clock`]; returns the new count, or `None` on timeout.
pub fn wait_spin(vector: u8, seen: u64, timeout_ns: u64) -> Option<u64> {
    let start = crate::clock::now_ns();
    loop {
        let c = count(vector);
        if c != seen {
            return Some(c);
        }
        if crate::clock::now_ns().wrapping_sub(start) > timeout_ns {
            return None;
        }
        core::hint::spin_loop();
    }
}
