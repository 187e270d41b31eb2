//! # passthru-guest
//!
//! The KVM guest backend: run `passthru-drivers` inside a tiny KVM guest, against a software
//! model or a real device passed through with VFIO.
//!
//! * [`device`]: the devices a guest sees — a `passthru-models` device served from MMIO exits
//!   ([`device::model`]), a VFIO device passed through ([`device::vfio`]), the host-request
//!   protocol a guest uses for config space, interrupts and reset ([`device::request`]), and the
//!   [`device::Vmm`] hooks they need from the VMM.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod device;
