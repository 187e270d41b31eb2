//! # passthru-drivers
//!
//! Drivers for Intel DSA ([`dsa`]), Intel CBDMA ([`ioat`]), QEMU's edu ([`edu`]) and the Intel
//! 82576 / QEMU igb ([`igb`]), written once against the seam of `passthru-core` and run unchanged
//! on VFIO, in a KVM guest, on the software models, or in firmware. No `std`, no allocation.
//! The backends in this workspace: `passthru-linux` (VFIO/IOMMUFD from userspace),
//! `passthru-models` (software DSA, CBDMA and edu), and `passthru-guest`, whose no_std runtime
//! (`passthru_guest_rt::device`) implements the seam inside a tiny KVM guest, where
//! `vfio_pci_guest_driver_test` runs these drivers unchanged.
//!
//! Use a driver through `passthru_core::driver::CheckedDriver`:
//!
//! ```ignore
//! let mut d = CheckedDriver::<Dsa<'_, _, _>>::new(function, clock, memory.region())?;
//! d.init()?;
//! d.memcpy(src, dst, 4096, 1_000_000_000)?;                        // polled
//! d.memcpy_with(src, dst, 4096, 1_000_000_000, WaitMode::Interrupt)?; // sleeps in irq_wait
//! d.remove()?;
//! ```
//!
//! A driver type carries the lifetime `'r` of the DMA region it was lent. Every driver
//! implements `WaitMode::Interrupt`: [`dsa`] sets RCI on the copy (or on the last batch), MSI-X
//! 1; [`ioat`] sets interrupt enable on the copy descriptor plus the channel's error interrupt,
//! MSI-X 0; [`edu`] asks every DMA for its interrupt, MSI 0; [`igb`] leaves RX queue 0's vector
//! unmasked, MSI-X 0. The wait then confirms completion from the device's own status.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod dsa;
pub mod edu;
pub mod igb;
pub mod ioat;
