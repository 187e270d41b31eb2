//! # passthru-linux
//!
//! The Linux backend: VFIO container/group and IOMMUFD cdev access to PCI functions bound to
//! `vfio-pci`, DMA mapping in all five upstream IOMMU modes, interrupts, sysfs and debugfs.
//!
//! * [`IommuMode`], [`Iommu`]: the five modes; map/unmap/unmap-all, tracked mappings,
//!   hva→iova, IOVA ranges, [`IovaAllocator`].
//! * [`VfioPciDevice`]: open by group or cdev, region/BAR/IRQ info, BAR mmaps, config space,
//!   interrupts with eventfds, reset, VF token; implements `passthru_core::mmio::PciFunction`.
//! * Step functions for negative tests: [`group::group_setup`], [`group::Group::get_device_fd`],
//!   [`cdev::Cdev`] (open, bind, attach, detach, get_info), [`Iommu::container_set_iommu`].
//! * [`DmaBuffer`] (anonymous, hugetlb, memfd), [`MonotonicClock`], [`expectations`].
//! * Every system call goes through [`sys::Sys`], so error paths are unit-tested with injected
//!   errnos.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod bdf;
pub mod cdev;
pub mod clock;
pub mod container;
pub mod debugfs;
pub mod device;
pub mod error;
pub mod expectations;
pub mod group;
pub mod iommu;
pub mod iommufd;
pub mod iova;
pub mod irq;
pub mod memory;
pub mod region;
pub mod sys;
pub mod sysfs;
pub mod token;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use clock::MonotonicClock;
pub use device::{Bar, DeviceInfo, VfioPciDevice};
pub use error::{Error, Outcome, Result};
pub use iommu::{DmaMapping, Iommu, IommuMode};
pub use iova::{IovaAllocator, IovaRange};
pub use irq::IrqInfo;
pub use memory::{Backing, DmaBuffer};
pub use passthru_core::mmio::IrqKind;
pub use region::RegionInfo;
pub use token::VfToken;
