//! This vCPU's [`PerCpu`] block, reached through GS (the host set GS base to its GPA).

use crate::abi::PerCpu;

/// This vCPU's per-CPU block.
#[inline(always)]
pub fn this_cpu() -> *mut PerCpu {
    let p: u64;
    // SAFETY: the host sets GS base to this vCPU's PerCpu block, whose first field is its own
    // address; the load reads that field and touches nothing else.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags))
    };
    p as *mut PerCpu
}

/// This vCPU's index (0-based, creation order).
#[inline]
pub fn index() -> u32 {
    // SAFETY: `this_cpu` points at this vCPU's PerCpu block, valid for the guest's lifetime.
    unsafe { core::ptr::addr_of!((*this_cpu()).index).read_volatile() }
}

/// Marks this vCPU ready ([`PerCpu::ready`] = 1), the convention hosts wait on.
#[inline]
pub fn set_ready() {
    // SAFETY: as in `index`; the host only reads this field.
    unsafe { core::ptr::addr_of_mut!((*this_cpu()).ready).write_volatile(1) }
}
