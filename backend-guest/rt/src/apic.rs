//! The local APIC: enable in x2APIC or xAPIC mode, APIC id, EOI.
//!
//! The interrupt stubs EOI by themselves, choosing the mode from [`PerCpu::apic_mode`]
//! (set by [`enable`]).
//!
//! [`PerCpu::apic_mode`]: crate::abi::PerCpu::apic_mode

use x86_64::registers::model_specific::Msr;

use crate::abi::{APIC_MODE_X2APIC, APIC_MODE_XAPIC};
use crate::percpu::this_cpu;

/// `IA32_APIC_BASE` MSR.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// `IA32_APIC_BASE` global enable bit.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// `IA32_APIC_BASE` x2APIC-mode bit.
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
/// Default xAPIC MMIO base (identity-mapped).
pub const XAPIC_BASE: u64 = 0xfee0_0000;
/// x2APIC MSR of the APIC id register.
pub const X2APIC_ID: u32 = 0x802;
/// x2APIC MSR of the EOI register.
pub const X2APIC_EOI: u32 = 0x80b;
/// x2APIC MSR of the spurious-interrupt vector register.
pub const X2APIC_SVR: u32 = 0x80f;
/// xAPIC offset of the APIC id register (id in bits 31:24).
pub const XAPIC_ID: u64 = 0x20;
/// xAPIC offset of the EOI register.
pub const XAPIC_EOI: u64 = 0xb0;
/// xAPIC offset of the spurious-interrupt vector register.
pub const XAPIC_SVR: u64 = 0xf0;
/// SVR: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;
/// The spurious vector the runtime programs.
pub const SPURIOUS_VECTOR: u32 = 0xff;

/// x2APIC MSR of the LVT timer register.
pub const X2APIC_LVT_TIMER: u32 = 0x832;
/// x2APIC MSR of the timer initial-count register.
pub const X2APIC_TIMER_INITIAL: u32 = 0x838;
/// x2APIC MSR of the timer divide-configuration register.
pub const X2APIC_TIMER_DIVIDE: u32 = 0x83e;
/// xAPIC offset of the LVT timer register.
pub const XAPIC_LVT_TIMER: u64 = 0x320;
/// xAPIC offset of the timer initial-count register.
pub const XAPIC_TIMER_INITIAL: u64 = 0x380;
/// xAPIC offset of the timer divide-configuration register.
pub const XAPIC_TIMER_DIVIDE: u64 = 0x3e0;
/// Divide configuration "divide by 1" (Intel SDM Vol. 3A §11.5.4).
pub const TIMER_DIVIDE_BY_1: u32 = 0b1011;
/// The vector of the runtime's one-shot timer ([`arm_timer`]); its count is kept like any
/// other vector's.
pub const TIMER_VECTOR: u8 = 0xee;
/// Largest one-shot timeout [`arm_timer`] takes, in timer ticks.
pub const TIMER_MAX_TICKS: u32 = u32::MAX;

/// APIC mode for [`enable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// xAPIC: registers at [`XAPIC_BASE`].
    Xapic,
    /// x2APIC: registers in MSRs 0x800–0x8ff.
    X2apic,
}

fn xapic_write(offset: u64, value: u32) {
    // SAFETY: the APIC page at XAPIC_BASE is identity-mapped and served by the in-kernel local
    // APIC; a 32-bit store to a register offset is the architectural access.
    unsafe { ((XAPIC_BASE + offset) as *mut u32).write_volatile(value) }
}

fn xapic_read(offset: u64) -> u32 {
    // SAFETY: as in `xapic_write`.
    unsafe { ((XAPIC_BASE + offset) as *const u32).read_volatile() }
}

/// Enables this vCPU's local APIC in `mode` (software-enabled, spurious vector 0xff) and tells
/// the interrupt stubs how to EOI.
pub fn enable(mode: Mode) {
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC; setting EN (and EXTD for
    // x2APIC, which CPUID offers) only changes the APIC mode.
    unsafe {
        let v = base.read();
        match mode {
            Mode::Xapic => base.write(v | APIC_BASE_ENABLE),
            Mode::X2apic => base.write(v | APIC_BASE_ENABLE | APIC_BASE_X2APIC),
        }
    }
    let apic_mode = match mode {
        Mode::Xapic => {
            xapic_write(XAPIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR);
            APIC_MODE_XAPIC
        }
        Mode::X2apic => {
            // SAFETY: x2APIC mode is enabled above; the SVR MSR is architectural.
            unsafe { Msr::new(X2APIC_SVR).write((SVR_ENABLE | SPURIOUS_VECTOR) as u64) };
            APIC_MODE_X2APIC
        }
    };
    // SAFETY: this vCPU's PerCpu block; the stubs read this field on this vCPU only.
    unsafe { core::ptr::addr_of_mut!((*this_cpu()).apic_mode).write_volatile(apic_mode) };
}

/// This vCPU's APIC id (full 32 bits in x2APIC mode, 8 bits in xAPIC mode).
pub fn id() -> u32 {
    // SAFETY: this vCPU's PerCpu block.
    let mode = unsafe { core::ptr::addr_of!((*this_cpu()).apic_mode).read_volatile() };
    if mode == APIC_MODE_X2APIC {
        // SAFETY: x2APIC mode is on, so the id MSR is readable.
        unsafe { Msr::new(X2APIC_ID).read() as u32 }
    } else {
        xapic_read(XAPIC_ID) >> 24
    }
}

/// Signals end of interrupt (the stubs already do this for every counted interrupt).
pub fn eoi() {
    // SAFETY: this vCPU's PerCpu block.
    let mode = unsafe { core::ptr::addr_of!((*this_cpu()).apic_mode).read_volatile() };
    if mode == APIC_MODE_X2APIC {
        // SAFETY: x2APIC mode is on; writing 0 to the EOI MSR is the architectural EOI.
        unsafe { Msr::new(X2APIC_EOI).write(0) };
    } else {
        xapic_write(XAPIC_EOI, 0);
    }
}

fn write_reg(x2: u32, x: u64, value: u32) {
    // SAFETY: this vCPU's PerCpu block.
    let mode = unsafe { core::ptr::addr_of!((*this_cpu()).apic_mode).read_volatile() };
    if mode == APIC_MODE_X2APIC {
        // SAFETY: x2APIC mode is on; `x2` is an architectural writable x2APIC register.
        unsafe { Msr::new(x2).write(value as u64) };
    } else {
        xapic_write(x, value);
    }
}

/// Arms the local APIC timer, one-shot, divide by 1, to raise [`TIMER_VECTOR`] after `ticks`
/// timer ticks (KVM's emulated APIC timer ticks at 1 GHz: a tick is a nanosecond). The APIC
/// must be enabled ([`enable`]).
pub fn arm_timer(ticks: u32) {
    write_reg(X2APIC_TIMER_DIVIDE, XAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write_reg(X2APIC_LVT_TIMER, XAPIC_LVT_TIMER, TIMER_VECTOR as u32);
    write_reg(X2APIC_TIMER_INITIAL, XAPIC_TIMER_INITIAL, ticks.max(1));
}

/// Stops the local APIC timer (initial count 0).
pub fn disarm_timer() {
    write_reg(X2APIC_TIMER_INITIAL, XAPIC_TIMER_INITIAL, 0);
}
