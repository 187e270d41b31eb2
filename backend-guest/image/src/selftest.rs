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

guest_main!(WAITS, "waits", waits);
/// The runtime's waits: x2APIC on, interrupts on, ready; block in HLT until vector 0x44
/// arrives (count → user word 1), spin until 0x45 arrives (count → user word 2), then a spin
/// wait for 0x46 must time out after 1 ms of TSC time (elapsed ns → user word 3).
extern "C" fn waits(_vcpu: u32) {
    use passthru_guest_rt::{clock, irq};
    apic::enable(apic::Mode::X2apic);
    irq::enable();
    percpu::set_ready();
    let put = |word: usize, v: u64| {
        if let Some(p) = user_area::<u64>(8 * word) {
            // SAFETY: an aligned in-bounds user-area word.
            unsafe { p.write_volatile(v) };
        }
    };
    put(1, irq::wait_hlt(0x44, 0));
    let got = irq::wait_spin(0x45, 0, 10_000_000_000);
    guest_assert!(got.is_some(), "vector 0x45 did not arrive within 10 s");
    put(2, got.unwrap_or(0));
    let t = clock::now_ns();
    let none = irq::wait_spin(0x46, 0, 1_000_000);
    let waited = clock::now_ns() - t;
    guest_assert!(none.is_none(), "vector 0x46 arrived: {:?}", none);
    guest_assert!(waited >= 1_000_000, "timed out after only {} ns", waited);
    put(3, waited);
}

guest_main!(MMIO, "mmio", mmio);
/// MMIO at GPA `args[0]`: a 4-byte read at +0 (value → user word 0), an 8-byte write of
/// `value + 1` at +8, a 1-byte write of 0x5a at +3, a 2-byte read at +16 (→ user word 1).
extern "C" fn mmio(_vcpu: u32) {
    let base = boot_info().args[0];
    // SAFETY: `base` is an MMIO range the host serves (no memslot): each access exits.
    unsafe {
        let v = ((base) as *const u32).read_volatile();
        ((base + 8) as *mut u64).write_volatile(v as u64 + 1);
        ((base + 3) as *mut u8).write_volatile(0x5a);
        let w = ((base + 16) as *const u16).read_volatile();
        if let (Some(a), Some(b)) = (user_area::<u64>(0), user_area::<u64>(8)) {
            a.write_volatile(v as u64);
            b.write_volatile(w as u64);
        }
    }
}

guest_main!(FILL, "fill", fill);
/// Writes `args[2]` to the `args[1]` u64 words from GPA `args[0]` (e.g. an extra memslot).
extern "C" fn fill(_vcpu: u32) {
    let args = boot_info().args;
    for i in 0..args[1] {
        // SAFETY: the host mapped `args[0]..+8*args[1]` for this test.
        unsafe { ((args[0] + 8 * i) as *mut u64).write_volatile(args[2]) };
    }
}

guest_main!(HLT_TIMEOUT, "hlt_timeout", hlt_timeout);
/// APIC mode `args[0]` (1 xAPIC, 2 x2APIC); a HLT wait for 0x44 with a 5 ms timeout must time
/// out (elapsed ns → user word 1); then ready, and a HLT wait with a 10 s timeout must see the
/// host's 0x44 (count → user word 2).
extern "C" fn hlt_timeout(_vcpu: u32) {
    use passthru_guest_rt::{clock, irq};
    apic::enable(if boot_info().args[0] == 1 {
        apic::Mode::Xapic
    } else {
        apic::Mode::X2apic
    });
    irq::enable();
    let put = |word: usize, v: u64| {
        if let Some(p) = user_area::<u64>(8 * word) {
            // SAFETY: an aligned in-bounds user-area word.
            unsafe { p.write_volatile(v) };
        }
    };
    let t = clock::now_ns();
    let r = irq::wait_hlt_timeout(0x44, 0, 5_000_000);
    let waited = clock::now_ns() - t;
    guest_assert!(r.is_none(), "0x44 arrived early: {:?}", r);
    guest_assert!(irq::count(apic::TIMER_VECTOR) >= 1, "the timer never fired");
    put(1, waited);
    percpu::set_ready();
    let r = irq::wait_hlt_timeout(0x44, 0, 10_000_000_000);
    put(2, r.unwrap_or(0));
}
