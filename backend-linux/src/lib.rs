//! # passthru-linux
//!
//! The Linux backend: VFIO container/group and IOMMUFD cdev access to PCI functions bound to
//! `vfio-pci`, DMA mapping in all five upstream IOMMU modes, interrupts, sysfs and debugfs.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod bdf;
pub mod debugfs;
pub mod sysfs;
