//! The VFIO device cdev (`/dev/vfio/devices/vfioN`): discovery through sysfs, BIND_IOMMUFD
//! (optionally with a VF token), ATTACH_PT / DETACH_PT, and GET_INFO — as separate steps so
//! negative tests can drive them one by one (upstream's `vfio_iommufd_setup_test`).

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_bindings::bindings::vfio as vb;

use crate::bdf::Bdf;
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::group::{check_bound_to_vfio_at, lookup, sysfs_error, SYSFS_PCI_DEVICES};
use crate::sys::{ioctl_plain, nr, Errno, Sys, SysFd};
use crate::token::VfToken;

/// `/dev/vfio/devices/<vfioN>` for a device, found by scanning its sysfs `vfio-dev/` directory
/// for the first entry (in name order) whose name starts with `vfio`.
pub fn cdev_path(sys: &dyn Sys, bdf: Bdf) -> Result<PathBuf> {
    cdev_path_at(sys, bdf, &bdf.canonical_string())
}

/// [`cdev_path`] for an already parsed `b` (spelled `bdf` in errors).
fn cdev_path_at(sys: &dyn Sys, b: Bdf, bdf: &str) -> Result<PathBuf> {
    let name = lookup(sys)
        .vfio_cdev(b)
        .map_err(|e| sysfs_error(bdf, "read_dir vfio-dev", e))?;
    name.map(|n| Path::new("/dev/vfio/devices").join(n))
        .ok_or_else(|| Error::NodeMissing {
            path: Path::new(SYSFS_PCI_DEVICES)
                .join(b.to_string())
                .join("vfio-dev"),
            config: "CONFIG_VFIO_DEVICE_CDEV (and the device bound to vfio-pci)",
            bdf: Some(bdf.to_string()),
        })
}

/// An open device cdev, before or after binding.
#[derive(Debug)]
pub struct Cdev {
    fd: SysFd,
    bdf: String,
}

impl Cdev {
    /// Find and open the cdev of `bdf` (checks the device exists and is bound to vfio-pci).
    pub fn open(sys: Arc<dyn Sys>, b: Bdf) -> Result<Cdev> {
        let canonical = b.canonical_string();
        let bdf = canonical.as_str();
        check_bound_to_vfio_at(&*sys, b, bdf)?;
        let path = cdev_path_at(&*sys, b, bdf)?;
        let fd = SysFd::open(&sys, &path, false)
            .map_err(|e| Error::open_node(&path, "CONFIG_VFIO_DEVICE_CDEV", Some(bdf), e))?;
        Ok(Cdev { fd, bdf: canonical })
    }

    /// Adopt an already-open cdev fd (for example one preserved across a live update).
    pub fn from_fd(sys: Arc<dyn Sys>, bdf: Bdf, fd: OwnedFd) -> Cdev {
        Cdev {
            // SAFETY: `into_raw_fd` hands over the OwnedFd's ownership of an open fd.
            fd: unsafe { SysFd::from_raw(sys, fd.into_raw_fd()) },
            bdf: bdf.canonical_string(),
        }
    }

    /// The device.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// The cdev fd.
    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }

    /// Give up the fd (to a [`crate::VfioPciDevice`]).
    pub fn into_fd(self) -> SysFd {
        self.fd
    }

    /// VFIO_DEVICE_BIND_IOMMUFD to `iommufd` (any number, so negative tests can pass -2), with
    /// an optional VF token (VFIO_DEVICE_BIND_FLAG_TOKEN). Returns the devid or the errno.
    pub fn bind(&self, iommufd: RawFd, token: Option<&VfToken>) -> Result<u32, Errno> {
        let uuid = token.map(|t| *t.as_bytes());
        let mut b = vb::vfio_device_bind_iommufd {
            argsz: std::mem::size_of::<vb::vfio_device_bind_iommufd>() as u32,
            flags: if uuid.is_some() {
                vb::VFIO_DEVICE_BIND_FLAG_TOKEN
            } else {
                0
            },
            iommufd,
            out_devid: 0,
            token_uuid_ptr: uuid.as_ref().map_or(0, |u| u.as_ptr() as u64),
        };
        // SAFETY: a vfio_device_bind_iommufd; token_uuid_ptr is 0 or points at 16 bytes that
        // live until the call returns.
        unsafe {
            ioctl_plain(
                &**self.fd.sys(),
                self.fd.raw(),
                nr::VFIO_DEVICE_BIND_IOMMUFD,
                &mut b,
            )
        }?;
        Ok(b.out_devid)
    }

    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT to `pt_id` (an IOAS or HWPT id). Returns the kernel's output
    /// pt_id (the HWPT actually attached) or the errno.
    pub fn attach_pt(&self, pt_id: u32) -> Result<u32, Errno> {
        attach_pt(&**self.fd.sys(), self.fd.raw(), pt_id)
    }

    /// VFIO_DEVICE_DETACH_IOMMUFD_PT. Returns the errno on failure.
    pub fn detach_pt(&self) -> Result<(), Errno> {
        detach_pt(&**self.fd.sys(), self.fd.raw())
    }

    /// VFIO_DEVICE_GET_INFO (fails with an errno before a successful bind).
    pub fn get_info(&self) -> Result<DeviceInfo, Errno> {
        crate::device::device_get_info(&**self.fd.sys(), self.fd.raw())
    }
}

/// Open `/dev/iommu` without allocating anything (for step-by-step negative tests).
pub fn open_iommufd(sys: Arc<dyn Sys>) -> Result<SysFd> {
    let path = Path::new(crate::iommu::IOMMUFD_PATH);
    SysFd::open(&sys, path, false).map_err(|e| Error::open_node(path, "CONFIG_IOMMUFD", None, e))
}

/// VFIO_DEVICE_ATTACH_IOMMUFD_PT on a bound cdev fd; returns the output pt_id or the errno.
pub fn attach_pt(sys: &dyn Sys, fd: RawFd, pt_id: u32) -> Result<u32, Errno> {
    let mut a = vb::vfio_device_attach_iommufd_pt {
        argsz: std::mem::size_of::<vb::vfio_device_attach_iommufd_pt>() as u32,
        flags: 0,
        pt_id,
        pasid: 0,
    };
    // SAFETY: a vfio_device_attach_iommufd_pt; no pointers. (argsz 16 includes the 6.15+ pasid
    // field; older kernels only check argsz against their smaller minimum.)
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut a) }?;
    Ok(a.pt_id)
}

/// VFIO_DEVICE_DETACH_IOMMUFD_PT on a bound cdev fd.
pub fn detach_pt(sys: &dyn Sys, fd: RawFd) -> Result<(), Errno> {
    let mut d = vb::vfio_device_detach_iommufd_pt {
        argsz: std::mem::size_of::<vb::vfio_device_detach_iommufd_pt>() as u32,
        flags: 0,
        pasid: 0,
    };
    // SAFETY: a vfio_device_detach_iommufd_pt; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut d) }.map(|_| ())
}
