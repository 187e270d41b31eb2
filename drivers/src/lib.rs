//! # passthru-drivers
//!
//! Drivers for Intel DSA ([`dsa`]), Intel CBDMA ([`ioat`]), QEMU's edu ([`edu`]) and the Intel
//! 82576 / QEMU igb ([`igb`]), written once against the seam of `passthru-core` and run unchanged
//! on VFIO, in a KVM guest, on the software models, or in firmware. No `std`, no allocation.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod dsa;
pub mod edu;
pub mod igb;
pub mod ioat;
