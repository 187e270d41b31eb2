//! # passthru-guest-rt
//!
//! The no_std runtime of passthru's tiny KVM test guests (`x86_64-unknown-none`), and the
//! host ↔ guest ABI ([`abi`]) that the host VMM (`passthru-guest`) shares.
//!
//! The host does all set-up: it loads the image, builds the page tables, GDT, IDT and one TSS
//! per vCPU in guest memory, and starts every vCPU directly in 64-bit mode at the chosen guest
//! main with its stack, its GS base (its [`abi::PerCpu`] block) and the tables loaded through
//! `KVM_SET_SREGS`. The guest executes no set-up code of its own. That matters on hosts where
//! guest kernel-mode code is emulated (each instruction then costs about half a microsecond):
//! an interrupt costs a dozen instructions of stub, a ucall one `out`.
//!
//! What a guest main finds here:
//! * [`ucall`]: `sync`, `print`, `done`, host requests; [`guest_assert!`] / [`guest_assert_eq!`]
//!   report file, line, expression and values to the host, which fails the test with them.
//! * [`apic`]: enable x2APIC or xAPIC, read the APIC id, EOI.
//! * [`irq`]: enable/disable interrupts, per-vector interrupt counts (kept by the stubs), waits
//!   that spin or block in `HLT` until a count moves (with a TSC timeout, or a one-shot APIC
//!   timer waking the `HLT`).
//! * [`clock`]: a TSC clock implementing `passthru_core::mmio::Clock`.
//! * [`device`]: PCI functions the VMM gives the guest — the request protocol shared with the
//!   host ([`device::request`]) and the seam the drivers run on inside the guest
//!   ([`device::guest`]: `GuestFunction`, BARs at their guest-physical address, DMA regions at
//!   IOVA = GPA), so `passthru-drivers` link in unchanged.
//! * [`driver_test`]: the ABI of `vfio_pci_guest_driver_test`'s guest main.
//! * [`guest_main!`]: registers an `extern "C" fn(u32)` under a name the host selects it by.
//! * Exceptions (vectors 0–31 except NMI) are reported to the host with vector, error code,
//!   RIP and CR2, and stop the vCPU; NMIs and interrupts 32–255 are counted per vCPU and vector.
//!
//! Privilege level: mains run at CPL0. On the measured host, exits cost about seven times more
//! from CPL3 (an `out` ucall 8–9 µs at CPL0 against ~60 µs at CPL3, an MMIO exit 10 µs against
//! ~65 µs, an irqfd round trip 19–52 µs against ~75 µs), `HLT` and the x2APIC MSRs are
//! CPL0-only, and the runtime's own paths are a few instructions each. Test guests are dominated
//! by exits (ucalls, device MMIO, interrupts), so CPL0 is the faster choice; bulk data checks
//! belong on the host, which sees guest memory directly. Tried here (2026-12, the PVM host): a
//! main entered at CPL3 through `iretq` with RFLAGS.IOPL = 3 faults with #GP on its first ucall
//! `out`, and the exception frame shows IOPL 0 — the host does not honour a guest IOPL, so
//! every ucall from CPL3 would also need a trap into CPL0 first. The GDT carries user segments
//! and each TSS an RSP0, so a CPL3 mode (ucalls through a DPL3 gate) can still be added
//! without changing the layout.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub mod device;
pub mod driver_test;

#[cfg(target_arch = "x86_64")]
pub mod apic;
#[cfg(target_arch = "x86_64")]
pub mod clock;
#[cfg(target_arch = "x86_64")]
mod entry;
#[cfg(target_arch = "x86_64")]
pub mod irq;
#[cfg(target_arch = "x86_64")]
pub mod percpu;
#[cfg(target_arch = "x86_64")]
pub mod ucall;

/// Registers a guest main: `guest_main!(NAME_STATIC, "name", function)` where `function` is
/// an `extern "C" fn(vcpu_index: u32)`. Every vCPU starts in the selected main; returning from
/// it sends DONE. Use it in the guest image crate (the entries live in the `passthru_mains`
/// link section, which the image's linker script collects).
#[macro_export]
macro_rules! guest_main {
    ($static_name:ident, $name:literal, $func:path) => {
        #[used]
        #[unsafe(link_section = "passthru_mains")]
        static $static_name: $crate::GuestMain = $crate::GuestMain {
            name: $name.as_ptr(),
            name_len: $name.len(),
            func: $func,
        };
    };
}

/// One registered guest main (see [`guest_main!`]); layout = [`abi::GuestMainEntry`].
#[repr(C)]
pub struct GuestMain {
    /// The name's bytes.
    pub name: *const u8,
    /// The name's length.
    pub name_len: usize,
    /// The function every vCPU runs.
    pub func: extern "C" fn(u32),
}

// SAFETY: a `GuestMain` is immutable and its pointer refers to a `'static` string literal.
unsafe impl Sync for GuestMain {}

/// The boot block the host filled in before starting the vCPUs.
pub fn boot_info() -> &'static abi::BootInfo {
    // SAFETY: the host writes the BootInfo at this fixed, identity-mapped GPA before any vCPU
    // runs and never writes it again, so a shared reference for the guest's lifetime is valid.
    // (Only meaningful inside a guest; on any other target this is never called.)
    unsafe { &*(abi::BOOT_INFO_GPA as *const abi::BootInfo) }
}

/// A pointer to `T` at `offset` in the user area ([`abi::USER_AREA_GPA`]), for test-defined
/// shared variables. Access it with `read_volatile` / `write_volatile` (the host writes it
/// concurrently), or with atomics. Returns `None` if `T` does not fit or is misaligned.
pub fn user_area<T>(offset: usize) -> Option<*mut T> {
    let size = core::mem::size_of::<T>();
    let gpa = abi::USER_AREA_GPA as usize + offset;
    if offset.checked_add(size)? > abi::USER_AREA_SIZE as usize
        || !gpa.is_multiple_of(core::mem::align_of::<T>())
    {
        return None;
    }
    Some(gpa as *mut T)
}
