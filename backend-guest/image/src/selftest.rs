//! Mains used by `passthru-guest`'s own tests (bring-up, ucalls, assertions, exceptions, APIC).

use passthru_guest_rt::abi::PerCpu;
use passthru_guest_rt::{apic, boot_info, guest_assert, guest_assert_eq, guest_main, guest_print};
use passthru_guest_rt::{percpu, ucall, user_area};

guest_main!(NOOP, "noop", noop);
extern "C" fn noop(_vcpu: u32) {}

guest_main!(UCALL, "ucall", ucalls);
/// PRINT (in place and formatted), SYNC 0x11 and 0x22, then DONE.
extern "C" fn ucalls(vcpu: u32) {
    ucall::print("hello from the guest");
    guest_print!("vcpu {} of {}", vcpu, boot_info().nr_vcpus);
    ucall::sync(0x11);
    ucall::sync(0x22);
}

guest_main!(ASSERT_EQ, "assert_eq", assert_eq);
/// Asserts `args[0] == 42`, then `args[1] == 0` with a formatted message.
extern "C" fn assert_eq(_vcpu: u32) {
    let args = boot_info().args;
    guest_assert_eq!(args[0], 42);
    guest_assert!(args[1] == 0, "args[1] was {}", args[1]);
}

guest_main!(UD2, "ud2", ud2);
/// Executes `ud2` (#UD, vector 6).
extern "C" fn ud2(_vcpu: u32) {
    // SAFETY: raises #UD on purpose; the runtime reports it and stops the vCPU.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
}

/// An address above the identity map (64 GiB): not present in the page tables.
pub const UNMAPPED_GPA: u64 = 64 << 30;

guest_main!(PAGE_FAULT, "page_fault", page_fault);
/// Reads [`UNMAPPED_GPA`] (#PF, vector 14, CR2 = the address).
extern "C" fn page_fault(_vcpu: u32) {
    // SAFETY: faults on purpose (the address is not mapped); the runtime reports the #PF.
    let v = unsafe { (UNMAPPED_GPA as *const u64).read_volatile() };
    guest_assert_eq!(v, 0);
}

guest_main!(PANIC, "panic", panic_main);
/// Panics with a formatted message.
extern "C" fn panic_main(_vcpu: u32) {
    panic!("boom {}", boot_info().args[0]);
}

guest_main!(APIC, "apic", apic_main);
/// Enables the APIC in mode `args[0]` (1 xAPIC, 2 x2APIC), stores its APIC id in user-area word
/// `vcpu`, and asserts it equals the vCPU's KVM id.
extern "C" fn apic_main(vcpu: u32) {
    let mode = if boot_info().args[0] == 2 {
        apic::Mode::X2apic
    } else {
        apic::Mode::Xapic
    };
    apic::enable(mode);
    let id = apic::id();
    if let Some(p) = user_area::<u64>(8 * vcpu as usize) {
        // SAFETY: an aligned in-bounds user-area word; the host reads it after DONE.
        unsafe { p.write_volatile(id as u64) };
    }
    let cpu: *mut PerCpu = percpu::this_cpu();
    // SAFETY: this vCPU's PerCpu block.
    let expected = unsafe { core::ptr::addr_of!((*cpu).vcpu_id).read_volatile() };
    let expected = if mode == apic::Mode::Xapic {
        expected & 0xff
    } else {
        expected
    };
    guest_assert_eq!(id, expected);
}

guest_main!(HOST_REQUEST, "host_request", host_request);
/// Sends host request `args[0]` with arguments 1, 2, 3; stores reply[0] in user-area word 0
/// (or the failure status | 1 << 63).
extern "C" fn host_request(_vcpu: u32) {
    let r = match ucall::host_request(boot_info().args[0], &[1, 2, 3]) {
        Ok(reply) => reply[0],
        Err(status) => status | 1 << 63,
    };
    if let Some(p) = user_area::<u64>(0) {
        // SAFETY: an aligned in-bounds user-area word.
        unsafe { p.write_volatile(r) };
    }
}
