//! [`VfioPciDevice`]: one PCI function opened through VFIO (group/container or cdev/iommufd),
//! with device, region and IRQ info, BAR mmaps, config-space access, reset and the VF token
//! feature. It implements [`PciFunction`] so every driver runs on it.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, VolatileBar};
use vfio_bindings::bindings::vfio as vb;

use crate::cdev::Cdev;
use crate::error::{Error, Result};
use crate::group::{group_setup, Group};
use crate::iommu::Iommu;
use crate::irq::{get_irq_info, slot, IrqInfo, IrqState};
use crate::memory::base_page_size;
use crate::region::{bar_alignment, get_region_info, mmap_region, Mmap, RegionInfo};
use crate::sys::{ioctl_plain, nr, write_plain, Errno, IoctlArg, Sys, SysFd};
use crate::token::VfToken;

/// PCI_COMMAND offset in configuration space.
pub const PCI_COMMAND: u16 = 0x04;
/// PCI_COMMAND_MASTER (bus master enable).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// PCI_COMMAND_MEMORY (memory space enable).
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// PCI_COMMAND_INTX_DISABLE.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// What VFIO_DEVICE_GET_INFO says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// VFIO_DEVICE_FLAGS_* bits.
    pub flags: u32,
    /// Number of regions (max index + 1).
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// VFIO_DEVICE_FLAGS_RESET: the device supports VFIO_DEVICE_RESET.
    pub fn supports_reset(&self) -> bool {
        self.flags & vb::VFIO_DEVICE_FLAGS_RESET != 0
    }
    /// VFIO_DEVICE_FLAGS_PCI.
    pub fn is_pci(&self) -> bool {
        self.flags & vb::VFIO_DEVICE_FLAGS_PCI != 0
    }
}

/// VFIO_DEVICE_GET_INFO.
pub fn device_get_info(sys: &dyn Sys, fd: RawFd) -> Result<DeviceInfo, Errno> {
    let mut di = vb::vfio_device_info {
        argsz: std::mem::size_of::<vb::vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: a vfio_device_info; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_GET_INFO, &mut di) }?;
    Ok(DeviceInfo {
        flags: di.flags,
        num_regions: di.num_regions,
        num_irqs: di.num_irqs,
    })
}

/// VFIO_DEVICE_FEATURE SET | PCI_VF_TOKEN with a 16-byte UUID (on a PF).
pub fn set_vf_token(sys: &dyn Sys, fd: RawFd, token: &VfToken) -> Result<(), Errno> {
    let mut buf = [0u8; 8 + 16];
    let argsz = buf.len() as u32;
    write_plain(&mut buf, 0, &argsz);
    write_plain(
        &mut buf,
        4,
        &(vb::VFIO_DEVICE_FEATURE_SET | vb::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN),
    );
    buf[8..].copy_from_slice(token.as_bytes());
    // SAFETY: a vfio_device_feature header followed by its 16-byte payload; no pointers.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_FEATURE, IoctlArg::Buf(&mut buf)) }.map(|_| ())
}

/// VFIO_DEVICE_RESET.
pub fn device_reset(sys: &dyn Sys, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_RESET, IoctlArg::None) }.map(|_| ())
}

/// One BAR: its region info and, if it could be mapped, the mapping.
#[derive(Debug)]
pub struct Bar {
    /// Region info.
    pub info: RegionInfo,
    map: Option<Mmap>,
    /// Why it is not mapped (not mmap-able, size 0, or the mmap errno).
    pub unmapped_reason: Option<String>,
}

impl Bar {
    /// The mapping address, if mapped.
    pub fn vaddr(&self) -> Option<usize> {
        self.map.as_ref().map(Mmap::addr)
    }
    /// The mapping length (the region size), if mapped.
    pub fn mapped_len(&self) -> Option<usize> {
        self.map.as_ref().map(Mmap::len)
    }
}

/// A PCI function opened through VFIO.
#[derive(Debug)]
pub struct VfioPciDevice {
    bdf: String,
    fd: SysFd,
    bars: Vec<Bar>,
    irq: Mutex<IrqState>,
    info: DeviceInfo,
    config: RegionInfo,
    irq_infos: [IrqInfo; 3],
    devid: Option<u32>,
    group: Option<Arc<Group>>,
    sys: Arc<dyn Sys>,
    iommu: Arc<Iommu>,
}

fn device_fd_error(bdf: &str, op: &'static str, e: Errno) -> Error {
    Error::os(bdf, op, e)
}

impl VfioPciDevice {
    /// Open `bdf` on `iommu` (upstream's `vfio_pci_device_init`): the group path in container
    /// modes, the cdev path in iommufd mode; then query info, map the BARs and read IRQ info.
    pub fn open(bdf: &str, iommu: &Arc<Iommu>) -> Result<VfioPciDevice> {
        Self::open_with_token(bdf, iommu, None)
    }

    /// [`VfioPciDevice::open`] with an optional VF token (group path: appended to the device
    /// name; cdev path: VFIO_DEVICE_BIND_FLAG_TOKEN).
    pub fn open_with_token(
        bdf: &str,
        iommu: &Arc<Iommu>,
        token: Option<&VfToken>,
    ) -> Result<VfioPciDevice> {
        if iommu.mode().uses_container() {
            let group = group_setup(iommu, bdf)?;
            let fd = group
                .get_device_fd(bdf, token)
                .map_err(|e| device_fd_error(bdf, "VFIO_GROUP_GET_DEVICE_FD", e))?;
            Self::setup(bdf, iommu, fd, Some(group), None)
        } else {
            let cdev = Cdev::open(iommu.sys().clone(), bdf)?;
            Self::from_cdev(bdf, iommu, cdev, token)
        }
    }

    /// Adopt an already-open cdev fd (upstream's `__vfio_pci_device_init(bdf, iommu, fd)`),
    /// binding and attaching it to `iommu`'s IOAS unless `already_bound`. Native iommufd only.
    pub fn from_cdev_fd(
        bdf: &str,
        iommu: &Arc<Iommu>,
        fd: OwnedFd,
        already_bound: bool,
    ) -> Result<VfioPciDevice> {
        // Take ownership through the Sys seam first, so every path closes the fd the same way.
        let cdev = Cdev::from_fd(iommu.sys().clone(), bdf, fd);
        if iommu.mode().uses_container() {
            return Err(Error::InvalidArgument {
                who: bdf.to_string(),
                reason: format!(
                    "adopting a cdev fd needs iommufd mode, not {}",
                    iommu.mode()
                ),
            });
        }
        if already_bound {
            return Self::setup(bdf, iommu, cdev.into_fd(), None, None);
        }
        Self::from_cdev(bdf, iommu, cdev, None)
    }

    fn from_cdev(
        bdf: &str,
        iommu: &Arc<Iommu>,
        cdev: Cdev,
        token: Option<&VfToken>,
    ) -> Result<VfioPciDevice> {
        let (Some(iommufd), Some(ioas)) = (iommu.iommufd(), iommu.ioas_id()) else {
            return Err(Error::InvalidArgument {
                who: bdf.to_string(),
                reason: "the cdev path needs an iommufd-mode Iommu".into(),
            });
        };
        let devid = cdev
            .bind(iommufd, token)
            .map_err(|e| device_fd_error(bdf, "VFIO_DEVICE_BIND_IOMMUFD", e))?;
        cdev.attach_pt(ioas)
            .map_err(|e| device_fd_error(bdf, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", e))?;
        Self::setup(bdf, iommu, cdev.into_fd(), None, Some(devid))
    }

    fn setup(
        bdf: &str,
        iommu: &Arc<Iommu>,
        fd: SysFd,
        group: Option<Arc<Group>>,
        devid: Option<u32>,
    ) -> Result<VfioPciDevice> {
        let sys = iommu.sys().clone();
        let raw = fd.raw();
        let info =
            device_get_info(&*sys, raw).map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_INFO", e))?;
        let config = get_region_info(&*sys, raw, vb::VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_REGION_INFO (config)", e))?;
        if config.mmappable() {
            return Err(Error::Malformed {
                who: bdf.to_string(),
                what: "config region info",
                reason: "the config region claims to be mmap-able".into(),
            });
        }
        let page = base_page_size();
        let mut bars = Vec::with_capacity(6);
        for i in 0..6u32 {
            let ri = get_region_info(&*sys, raw, vb::VFIO_PCI_BAR0_REGION_INDEX + i)
                .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_REGION_INFO (BAR)", e))?;
            let (map, why) = if ri.size == 0 {
                (None, Some("BAR is unimplemented (size 0)".to_string()))
            } else if !ri.mmappable() {
                (
                    None,
                    Some("region lacks VFIO_REGION_INFO_FLAG_MMAP".to_string()),
                )
            } else {
                match mmap_region(&sys, raw, &ri, bar_alignment(ri.size, page), 0) {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(format!("mmap failed: {e}"))),
                }
            };
            bars.push(Bar {
                info: ri,
                map,
                unmapped_reason: why,
            });
        }
        let mut irq_infos = [IrqInfo::default(); 3];
        for kind in [IrqKind::Intx, IrqKind::Msi, IrqKind::MsiX] {
            let idx = crate::irq::irq_index(kind);
            irq_infos[slot(kind)] = if idx < info.num_irqs {
                get_irq_info(&*sys, raw, idx)
                    .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_IRQ_INFO", e))?
            } else {
                IrqInfo {
                    index: idx,
                    ..Default::default()
                }
            };
        }
        Ok(VfioPciDevice {
            bdf: bdf.to_string(),
            fd,
            bars,
            irq: Mutex::new(IrqState::default()),
            info,
            config,
            irq_infos,
            devid,
            group,
            sys,
            iommu: iommu.clone(),
        })
    }

    /// The device's BDF.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// The IOMMU the device is attached to.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// The system-call seam.
    pub fn sys(&self) -> &Arc<dyn Sys> {
        &self.sys
    }

    /// The device fd.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.raw()
    }

    /// The group (container modes).
    pub fn group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }

    /// The iommufd device id from BIND (native iommufd mode).
    pub fn devid(&self) -> Option<u32> {
        self.devid
    }

    /// VFIO_DEVICE_GET_INFO as read at open.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The config-space region info.
    pub fn config_region(&self) -> &RegionInfo {
        &self.config
    }

    /// BAR `index` (0–5): region info and mapping.
    pub fn bar_info(&self, index: u8) -> Option<&Bar> {
        self.bars.get(index as usize)
    }

    /// Query any region's info afresh (e.g. ROM = 6, VGA = 8, device-specific ≥ 9).
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        get_region_info(&*self.sys, self.fd.raw(), index)
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_GET_REGION_INFO", e))
    }

    /// IRQ info of `kind` as read at open (count 0 = unsupported).
    pub fn irq_info(&self, kind: IrqKind) -> IrqInfo {
        self.irq_infos[slot(kind)]
    }

    pub(crate) fn irq_state(&self) -> MutexGuard<'_, IrqState> {
        self.irq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Map BAR `index` again at an address congruent to `skew` modulo `align` (for
    /// misaligned-mapping tests; upstream's `mmap_reserve` + MAP_FIXED).
    pub fn mmap_bar_at(&self, index: u8, align: u64, skew: u64) -> Result<Mmap> {
        let bar = self.bar_checked(index)?;
        mmap_region(&self.sys, self.fd.raw(), &bar.info, align, skew).map_err(|e| {
            Error::BarNotMappable {
                bdf: self.bdf.clone(),
                bar: index,
                reason: format!("mmap failed: {e}"),
            }
        })
    }

    fn bar_checked(&self, index: u8) -> Result<&Bar> {
        self.bars
            .get(index as usize)
            .ok_or_else(|| Error::InvalidArgument {
                who: self.bdf.clone(),
                reason: format!("BAR index {index} is not 0..=5"),
            })
    }

    /// A volatile register window over mapped BAR `index`.
    pub fn bar_mapping(&self, index: u8) -> Result<VolatileBar> {
        let bar = self.bar_checked(index)?;
        match &bar.map {
            Some(m) => {
                let base = std::ptr::NonNull::new(m.addr() as *mut u8).ok_or_else(|| {
                    Error::BarNotMappable {
                        bdf: self.bdf.clone(),
                        bar: index,
                        reason: "null mapping".into(),
                    }
                })?;
                // SAFETY: `m` is a live shared mapping of the BAR owned by this device; it
                // stays mapped until the device is dropped, and VolatileBar only performs
                // volatile accesses inside it. Callers must not use the bar after dropping the
                // device (as with any register window).
                Ok(unsafe { VolatileBar::new(base, m.len().min(bar.info.size as usize)) })
            }
            None => Err(Error::BarNotMappable {
                bdf: self.bdf.clone(),
                bar: index,
                reason: bar
                    .unmapped_reason
                    .clone()
                    .unwrap_or_else(|| "not mapped".into()),
            }),
        }
    }

    fn config_access(&self, write: bool, offset: u16, buf: &mut [u8]) -> Result<()> {
        let end = offset as u64 + buf.len() as u64;
        if end > self.config.size {
            return Err(Error::InvalidArgument {
                who: self.bdf.clone(),
                reason: format!(
                    "config access {offset:#x}+{} beyond the {:#x}-byte config space",
                    buf.len(),
                    self.config.size
                ),
            });
        }
        let pos = self.config.offset + offset as u64;
        let (op, r) = if write {
            ("config write", self.sys.pwrite(self.fd.raw(), buf, pos))
        } else {
            ("config read", self.sys.pread(self.fd.raw(), buf, pos))
        };
        let n = r.map_err(|e| {
            Error::os(
                &self.bdf,
                if write {
                    "pwrite config"
                } else {
                    "pread config"
                },
                e,
            )
        })?;
        if n != buf.len() {
            return Err(Error::ShortTransfer {
                bdf: self.bdf.clone(),
                op,
                offset: offset as u64,
                done: n,
                want: buf.len(),
            });
        }
        Ok(())
    }

    /// Read 8 bits of config space.
    pub fn config_readb(&self, offset: u16) -> Result<u8> {
        let mut b = [0u8; 1];
        self.config_access(false, offset, &mut b)?;
        Ok(b[0])
    }
    /// Read 16 bits of config space (little-endian).
    pub fn config_readw(&self, offset: u16) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_access(false, offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Read 32 bits of config space (little-endian).
    pub fn config_readl(&self, offset: u16) -> Result<u32> {
        let mut b = [0u8; 4];
        self.config_access(false, offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Write 8 bits of config space.
    pub fn config_writeb(&self, offset: u16, v: u8) -> Result<()> {
        self.config_access(true, offset, &mut [v])
    }
    /// Write 16 bits of config space (little-endian).
    pub fn config_writew(&self, offset: u16, v: u16) -> Result<()> {
        self.config_access(true, offset, &mut v.to_le_bytes())
    }
    /// Write 32 bits of config space (little-endian).
    pub fn config_writel(&self, offset: u16, v: u32) -> Result<()> {
        self.config_access(true, offset, &mut v.to_le_bytes())
    }

    /// Set bits in PCI_COMMAND (read-modify-write); returns the new value.
    pub fn command_set(&self, bits: u16) -> Result<u16> {
        let v = self.config_readw(PCI_COMMAND)? | bits;
        self.config_writew(PCI_COMMAND, v)?;
        Ok(v)
    }

    /// Clear bits in PCI_COMMAND (read-modify-write); returns the new value.
    pub fn command_clear(&self, bits: u16) -> Result<u16> {
        let v = self.config_readw(PCI_COMMAND)? & !bits;
        self.config_writew(PCI_COMMAND, v)?;
        Ok(v)
    }

    /// True if vendor and device ids match.
    pub fn matches(&self, vendor: u16, device: u16) -> Result<bool> {
        Ok(self.config_readw(0)? == vendor && self.config_readw(2)? == device)
    }

    /// VFIO_DEVICE_RESET ([`Error::Unsupported`] if the device lacks VFIO_DEVICE_FLAGS_RESET).
    pub fn reset(&self) -> Result<()> {
        if !self.info.supports_reset() {
            return Err(Error::Unsupported {
                bdf: self.bdf.clone(),
                what: "VFIO_DEVICE_RESET (no VFIO_DEVICE_FLAGS_RESET; put it behind a PCIe root port for a bus reset)".into(),
            });
        }
        device_reset(&*self.sys, self.fd.raw())
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_RESET", e))
    }

    /// Attach the (cdev-opened) device to another IOAS or HWPT (a replacement if attached).
    /// Returns the attached pt_id or the errno (the kernel refuses on group-opened devices).
    pub fn attach_pt(&self, pt_id: u32) -> Result<u32, Errno> {
        crate::cdev::attach_pt(&*self.sys, self.fd.raw(), pt_id)
    }

    /// Detach the (cdev-opened) device from its IOAS/HWPT (DMA is then blocked).
    pub fn detach_pt(&self) -> Result<(), Errno> {
        crate::cdev::detach_pt(&*self.sys, self.fd.raw())
    }

    /// Set the PF's VF token (VFIO_DEVICE_FEATURE SET | PCI_VF_TOKEN).
    pub fn set_vf_token(&self, token: &VfToken) -> Result<()> {
        set_vf_token(&*self.sys, self.fd.raw(), token)
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_FEATURE (PCI_VF_TOKEN)", e))
    }
}

impl Drop for VfioPciDevice {
    fn drop(&mut self) {
        // Disable interrupts we enabled before the eventfds close (best effort); BAR mappings,
        // the device fd, the group and the IOMMU are released by their own drops, in field order.
        for kind in [IrqKind::Intx, IrqKind::Msi, IrqKind::MsiX] {
            if self.irq_enabled_count(kind) > 0 {
                let _ = self.irq_disable(kind);
            }
        }
    }
}

fn fe(e: Error) -> FunctionError {
    e.into()
}

impl PciFunction for VfioPciDevice {
    type Bar = VolatileBar;

    fn bar(&self, index: u8) -> Result<VolatileBar, FunctionError> {
        self.bar_mapping(index)
            .map_err(|_| FunctionError::NoSuchBar(index))
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        self.config_readb(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        self.config_readw(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        self.config_readl(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        self.config_writeb(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        self.config_writew(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        self.config_writel(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        VfioPciDevice::irq_enable(self, kind, first, count).map_err(fe)
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        VfioPciDevice::irq_disable(self, kind).map_err(fe)
    }
    fn reset(&self) -> Result<(), FunctionError> {
        VfioPciDevice::reset(self).map_err(|e| match e {
            Error::Unsupported { .. } => FunctionError::Unsupported("VFIO_DEVICE_RESET"),
            e => fe(e),
        })
    }
}

fn cfg_err(offset: u16, e: Error) -> FunctionError {
    match e {
        Error::InvalidArgument { .. } => FunctionError::ConfigOutOfRange { offset },
        e => fe(e),
    }
}
