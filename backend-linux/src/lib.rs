//! # passthru-linux
//!
//! The Linux backend: VFIO container/group and IOMMUFD cdev access to PCI functions bound to
//! `vfio-pci`, DMA mapping in all five upstream IOMMU modes, interrupts, sysfs and debugfs.
//!
//! * [`IommuMode`], [`Iommu`]: the five modes; map/unmap/unmap-all, tracked mappings,
//!   hva→iova, IOVA ranges, [`IovaAllocator`].
//! * [`VfioPciDevice`]: open by group or cdev, region/BAR/IRQ info, BAR mmaps, config space,
//!   interrupts with eventfds, reset, VF token; implements `passthru_core::mmio::PciFunction`
//!   with reference-counted BAR handles ([`VfioBar`]) that keep their mapping alive; a BAR
//!   whose whole mmap fails is mapped by its sparse-mmap areas (the rest via pread/pwrite).
//!   [`VfioPciDevice::device_caps`] decodes the device-info capability chain.
//! * Step functions for negative tests: [`group::group_setup`], [`group::Group::get_device_fd`],
//!   [`cdev::Cdev`] (open, bind, attach, detach, get_info), [`Iommu::container_set_iommu`].
//! * [`DmaBuffer`] (anonymous, hugetlb, memfd), [`MonotonicClock`].
//! * Every system call goes through [`sys::Sys`], so error paths are unit-tested with injected
//!   errnos.
//!
//! ## Upstream libvfio → passthru-linux
//!
//! | upstream (tools/testing/selftests/vfio/lib) | here |
//! |---|---|
//! | `iommu_init(mode)` / `iommu_cleanup` | [`Iommu::open`], [`Iommu::open_named`] / drop |
//! | `vfio_pci_device_init(bdf, iommu)` / `_cleanup` | [`VfioPciDevice::open`] / drop |
//! | `__vfio_pci_device_init(bdf, iommu, fd)` | [`VfioPciDevice::from_cdev_fd`] |
//! | `vfio_pci_group_setup`, `vfio_container_set_iommu` | [`group::group_setup`], [`Iommu::container_set_iommu`] |
//! | `__vfio_pci_group_get_device_fd(dev, bdf, token)` | [`group::Group::get_device_fd`] (returns errno) |
//! | `vfio_pci_cdev_open`, `__vfio_device_bind_iommufd` | [`cdev::Cdev::open`], [`cdev::Cdev::bind`] (returns errno) |
//! | `vfio_pci_get_cdev_path` | [`cdev::cdev_path`] |
//! | `vfio_device_set_vf_token` | [`VfioPciDevice::set_vf_token`] |
//! | `__iommu_map` / `iommu_map` | [`Iommu::try_map`] / [`Iommu::map`], [`Iommu::map_buffer`], [`Iommu::try_map_bar`] |
//! | `__iommu_unmap(…, &unmapped)` / `__iommu_unmap_all` | [`Iommu::try_unmap`] / [`Iommu::try_unmap_all`] (return the byte count) |
//! | `__iommu_hva2iova` | [`Iommu::hva_to_iova`] ([`Error::NotMapped`] ≙ -ENOENT) |
//! | `iommu_iova_ranges` | [`Iommu::iova_ranges`] |
//! | `iova_allocator_*` | [`IovaAllocator`] (also frees) |
//! | `vfio_pci_config_read{b,w,l}` / `write{b,w,l}` | [`VfioPciDevice::config_readb`] … [`VfioPciDevice::config_writel`] |
//! | `vfio_pci_cmd_set/clear` | [`VfioPciDevice::command_set`] / [`VfioPciDevice::command_clear`] |
//! | `device->bars[i].vaddr` | [`VfioPciDevice::bar_info`], [`VfioPciDevice::bar_mapping`] |
//! | `mmap_reserve` | [`region::reserve_aligned`], [`VfioPciDevice::mmap_bar_at`] |
//! | `vfio_pci_irq_enable/disable/trigger`, `msix_reenable` | [`VfioPciDevice::irq_enable`], [`VfioPciDevice::irq_disable`] (this index only), [`VfioPciDevice::irq_trigger`], [`VfioPciDevice::irq_reenable`] |
//! | `msi_eventfds[i]`, `fcntl_set_nonblock` + read | [`VfioPciDevice::irq_eventfd`], [`VfioPciDevice::irq_take`], [`VfioPciDevice::irq_wait`] |
//! | `vfio_pci_device_reset` | [`VfioPciDevice::reset`] |
//! | INTx (absent upstream) | `IrqKind::Intx` + [`VfioPciDevice::intx_unmask`] |
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod bdf;
pub mod cdev;
pub mod clock;
pub mod container;
pub mod debugfs;
pub mod device;
pub mod error;
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
pub use device::{Bar, DeviceCaps, DeviceInfo, SharedVfioDevice, VfioBar, VfioPciDevice};
pub use error::{Error, Result};
pub use iommu::{DmaMapping, Iommu, IommuMode};
pub use iova::{IovaAllocator, IovaRange};
pub use irq::IrqInfo;
pub use memory::{Backing, DmaBuffer};
pub use passthru_core::mmio::IrqKind;
pub use region::RegionInfo;
pub use token::VfToken;
