//! # passthru-core
//!
//! Hardware facts and the driver seam for passthru, with no `std` and no allocation.
//!
//! * [`pci`]: configuration-space offsets and bits, the capability walk, supported device ids.
//! * [`mmio`]: the seam a driver sees ([`mmio::RegisterIo`], [`mmio::PciFunction`] with its
//!   interrupt-wait hook, [`mmio::DmaRegion`] lent by [`mmio::DmaMemory`] or a backend's buffer,
//!   [`mmio::Clock`]) and a volatile-pointer implementation for real mappings.
//! * [`arch`]: MOVDIR64B / ENQCMD / fences with run-time CPU feature detection.
//! * [`idxd`]: Intel Data Streaming Accelerator registers, descriptors and completion records.
//! * [`ioat`]: Intel Crystal Beach DMA (I/OAT v3) registers and descriptors.
//! * [`edu`]: QEMU's `edu` educational device.
//! * [`igb`]: Intel 82576 (and QEMU `igb`) registers and descriptors.
//! * [`driver`]: the driver contract, its checked state machine (the only way to call the
//!   state-dependent driver methods) and [`driver::WaitMode`] (poll or sleep on the interrupt).
//!
//! Every error type implements `core::error::Error` and `Display`.
//!
//! Nothing in this crate forms a Rust reference to device or DMA-visible memory: every access
//! goes through a raw pointer with a volatile read or write.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod arch;
pub mod driver;
pub mod edu;
pub mod idxd;
pub mod igb;
pub mod ioat;
pub mod mmio;
pub mod pci;
