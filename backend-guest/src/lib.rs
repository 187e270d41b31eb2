//! # passthru-guest
//!
//! A minimal KVM VMM for tiny test guests, and the embedded guest image it runs. The guest side
//! is the no_std runtime `passthru-guest-rt` (re-exported as [`rt`]) plus the guest mains in
//! `backend-guest/image`, built for `x86_64-unknown-none` by this crate's build script (which
//! needs `rustup target add x86_64-unknown-none`) and embedded here.
//!
//! ```no_run
//! use std::time::Duration;
//! use passthru_guest::{Vm, VmConfig};
//!
//! let mut vm = Vm::new(VmConfig::new("ucall").vcpus(2))?;
//! let report = vm.run_until_done(Duration::from_secs(5))?; // guest assertion → Err with its message
//! assert_eq!(report.syncs.len(), 4);
//! # Ok::<(), passthru_guest::VmError>(())
//! ```
//!
//! What the VMM does (everything through `kvm-ioctls`):
//! * **VM**: in-kernel irqchip (created before the vCPUs), `KVM_CAP_X2APIC_API` with 32-bit
//!   APIC ids and the broadcast quirk disabled, guest RAM in memslot 0 at GPA 0 ([`GuestMemory`]).
//! * **Start state**: the host writes the image, an identity map of the low 4 GiB, the GDT, the
//!   IDT and one TSS per vCPU into guest memory, and starts each vCPU (one host thread each) in
//!   64-bit mode through `KVM_SET_SREGS`/`KVM_SET_REGS` at the selected guest main, with its own
//!   stack and GS base. vCPUs after the first are made RUNNABLE with `KVM_SET_MP_STATE`. The
//!   guest runs no set-up code (see the runtime's docs for why).
//! * **ucall** over I/O port [`rt::abi::UCALL_PORT`]: SYNC ([`GuestEvent::Sync`], resumed by
//!   [`Vm::resume`]), PRINT ([`Vm::take_prints`]), DONE, assertion failures, exceptions and
//!   panics (as [`VmError::GuestAssert`], [`VmError::GuestException`], [`VmError::GuestPanic`]),
//!   and host requests ([`HostRequestHandler`]). [`Vm::run_until_done`] runs to completion.
//! * **Shared variables**: [`Vm::user_var`] / [`GuestMemory::shared`] give typed volatile
//!   access to guest memory with no exit; [`Vm::irq_count`] reads the guest's per-vCPU,
//!   per-vector interrupt counts.
//! * **Interrupts**: MSI GSI routes ([`MsiMessage`], x2APIC ids > 255 through `address_hi`,
//!   NMI delivery), [`Vm::set_gsi_routes`] (replace, re-route live, or empty), irqfds
//!   ([`Vm::assign_irqfd`], deassigned by [`IrqFd::deassign`] or drop), [`Vm::signal_msi`].
//!
//! Hooks for device backings (a model served from MMIO exits, or a VFIO device passed
//! through):
//! * [`Vm::add_mmio_handler`]: an [`MmioHandler`] for a GPA range with no memslot; every guest
//!   access there exits and is served on the vCPU's thread. Place BARs in the uncached MMIO
//!   window ([`tables::MMIO_WINDOW_GPA`]`..0xfec0_0000`).
//! * [`Vm::add_memslot`]: extra memslots (e.g. mmap'd VFIO BARs), kept alive with the VM.
//! * [`Vm::set_host_request_handler`]: serves `ucall::host_request(code, args)` from the guest
//!   (config-space access, MSI-X enable: the guest has no config-space window).
//! * [`GuestMemory::host_ptr`]: guest RAM for IOMMU mapping at IOVA = GPA; DMA-able free RAM
//!   starts at [`Vm::free_ram_start`].
//!
//! Every wait takes a timeout and fails with [`VmError::Timeout`] naming what it waited for.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod error;
pub mod image;
pub mod irq;
pub mod memory;
pub mod tables;
pub mod vm;

pub use error::{Result, VmError};
pub use irq::{GsiRoute, IrqFd, MsiMessage};
pub use memory::{GuestMemory, SharedVar};
pub use passthru_guest_rt as rt;
pub use vm::{
    GuestEvent, HandlerError, HostRequest, HostRequestHandler, MmioHandler, RunReport, Vm, VmConfig,
};

/// Whether `/dev/kvm` can be opened; tests and programs SKIP with this reason otherwise.
pub fn kvm_available() -> std::result::Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm cannot be opened ({e}); KVM guest tests need it"))
}
