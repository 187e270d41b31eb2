//! The guest side of `irq_test` (and of the interrupt tests): enable the APIC, enable
//! interrupts, report ready, and wait (spinning or in `HLT`) until the host sets the done word.
//! The runtime's stubs count every interrupt and NMI per vector in the vCPU's `PerCpu` block;
//! the host watches those counts.
//!
//! Arguments: `args[0]` APIC mode (1 xAPIC, 2 x2APIC), `args[1]` 1 = block in `HLT`.
//! User area word 0: done (non-zero ends the main).

use passthru_guest_rt::{apic, boot_info, irq, percpu, user_area};

/// User-area offset of the done word.
pub const DONE_OFFSET: usize = 0;

passthru_guest_rt::guest_main!(IRQ_WAIT, "irq_wait", irq_wait);

extern "C" fn irq_wait(_vcpu: u32) {
    let args = boot_info().args;
    apic::enable(if args[0] == 1 {
        apic::Mode::Xapic
    } else {
        apic::Mode::X2apic
    });
    let hlt = args[1] != 0;
    let done = user_area::<u64>(DONE_OFFSET).expect("word 0 of the user area");
    irq::enable();
    percpu::set_ready();
    loop {
        // SAFETY: an aligned user-area word the host writes.
        if unsafe { done.read_volatile() } != 0 {
            break;
        }
        if hlt {
            x86_64_hlt();
        } else {
            core::hint::spin_loop();
        }
    }
}

fn x86_64_hlt() {
    // SAFETY: interrupts are enabled, so an interrupt (the host's wake-up included) ends it.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
}
