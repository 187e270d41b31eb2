//! The VFIO group fd (`/dev/vfio/<group>`): viability, SET_CONTAINER, GET_DEVICE_FD.
//!
//! Also the sysfs checks the open path needs (device present, bound driver, IOMMU group and its
//! members), answered by the shared [`crate::sysfs`] lookups read through [`Sys`] (so the
//! simulated kernel of the unit tests serves them), with BDFs parsed by [`Bdf`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_bindings::bindings::vfio as vb;

use crate::bdf::Bdf;
use crate::error::{Error, Result};
use crate::iommu::Iommu;
use crate::sys::{ioctl_plain, nr, write_plain, Errno, IoctlArg, Sys, SysFd};
pub use crate::sysfs::is_vfio_pci_driver;
use crate::sysfs::{Lookup, SysfsError};
use crate::token::VfToken;

/// `/sys/bus/pci/devices`.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// The sysfs root the VFIO open path reads (through its [`Sys`]).
pub(crate) const SYSFS_ROOT: &str = "/sys";

pub(crate) fn lookup(sys: &dyn Sys) -> Lookup<'_> {
    Lookup {
        sys,
        root: Path::new(SYSFS_ROOT),
    }
}

/// Parse a BDF with [`Bdf::parse`] (`SSSS:BB:DD.F`, segment required; fields may be shorter,
/// as upstream accepts), as this layer's [`Error::InvalidBdf`]. The VFIO layer works with the
/// canonical spelling (`bdf.to_string()`, as sysfs names the device).
pub fn parse_bdf(bdf: &str) -> Result<Bdf> {
    Bdf::parse(bdf).map_err(|_| Error::InvalidBdf {
        bdf: bdf.to_string(),
    })
}

/// A sysfs lookup failure about `bdf` as this layer's error.
pub(crate) fn sysfs_error(bdf: &str, op: &'static str, e: SysfsError) -> Error {
    match e {
        SysfsError::NoSuchDevice { .. } => Error::DeviceNotFound {
            bdf: bdf.to_string(),
        },
        SysfsError::Io { source, .. } => Error::os(
            bdf,
            op,
            Errno::from_raw(source.raw_os_error().unwrap_or(libc::EIO)),
        ),
        SysfsError::Parse {
            path,
            contents,
            expected,
        } => Error::Malformed {
            who: bdf.to_string(),
            what: "sysfs entry",
            reason: format!("{}: {contents:?} is not {expected}", path.display()),
        },
        e => Error::Malformed {
            who: bdf.to_string(),
            what: "sysfs entry",
            reason: e.to_string(),
        },
    }
}

/// The driver a device is bound to (basename of its `driver` link), or `None` (also for a
/// malformed BDF or a missing device).
pub fn current_driver(sys: &dyn Sys, bdf: Bdf) -> Option<String> {
    lookup(sys).driver(bdf).ok().flatten()
}

/// Check the device exists and is bound to vfio-pci (or a vfio-pci variant driver).
pub fn check_bound_to_vfio(sys: &dyn Sys, bdf: Bdf) -> Result<()> {
    check_bound_to_vfio_at(sys, bdf, &bdf.canonical_string())
}

/// [`check_bound_to_vfio`] for an already parsed `b` (spelled `bdf` in errors).
pub(crate) fn check_bound_to_vfio_at(sys: &dyn Sys, b: Bdf, bdf: &str) -> Result<()> {
    match lookup(sys).driver(b) {
        Ok(Some(d)) if is_vfio_pci_driver(&d) => Ok(()),
        Ok(driver) => Err(Error::NotBoundToVfio {
            bdf: bdf.to_string(),
            driver,
        }),
        Err(e) => Err(sysfs_error(bdf, "readlink driver", e)),
    }
}

/// The IOMMU group number of a device (readlink of `iommu_group`).
pub fn iommu_group_number(sys: &dyn Sys, bdf: Bdf) -> Result<u32> {
    iommu_group_number_at(sys, bdf, &bdf.canonical_string())
}

/// [`iommu_group_number`] for an already parsed `b` (spelled `bdf` in errors).
fn iommu_group_number_at(sys: &dyn Sys, b: Bdf, bdf: &str) -> Result<u32> {
    match lookup(sys).iommu_group(b) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(Error::NoIommuGroup {
            bdf: bdf.to_string(),
        }),
        Err(SysfsError::Parse { path, contents, .. }) => Err(Error::Malformed {
            who: bdf.to_string(),
            what: "iommu_group link",
            reason: format!(
                "{} points at {contents:?}, not a group number",
                path.display()
            ),
        }),
        Err(e) => Err(sysfs_error(bdf, "readlink iommu_group", e)),
    }
}

/// The first device of `group` (other than `bdf`) not bound to vfio-pci (or a variant, or
/// `pcieport`), with its driver.
pub fn non_vfio_group_member(
    sys: &dyn Sys,
    group: u32,
    bdf: Bdf,
) -> Option<(String, Option<String>)> {
    let l = lookup(sys);
    let me = Some(bdf);
    l.iommu_group_members(group)
        .ok()?
        .into_iter()
        .find_map(|d| {
            if Some(d) == me {
                return None;
            }
            let drv = l.driver(d).ok().flatten();
            match drv.as_deref() {
                Some(n) if is_vfio_pci_driver(n) || n == "pcieport" => None,
                _ => Some((d.to_string(), drv)),
            }
        })
}

/// An open VFIO group attached to a container. Shared by the devices of the group.
#[derive(Debug)]
pub struct Group {
    /// Always `Some` until drop, which closes it under the container state lock.
    fd: Option<SysFd>,
    number: u32,
    iommu: Arc<Iommu>,
}

impl Group {
    /// The group number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The group fd.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd.as_ref().map_or(-1, SysFd::raw)
    }

    /// The IOMMU (container) this group is attached to.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// VFIO_GROUP_GET_STATUS flags (VFIO_GROUP_FLAGS_VIABLE, ..._CONTAINER_SET).
    pub fn status(&self) -> Result<u32, Errno> {
        group_status(&**self.iommu.sys(), self.fd())
    }

    /// VFIO_GROUP_GET_DEVICE_FD for `bdf`, with an optional VF token appended as
    /// `"<bdf> vf_token=<uuid>"`. Returns the errno on failure (upstream's
    /// `__vfio_pci_group_get_device_fd`), for negative tests.
    pub fn get_device_fd(&self, bdf: &str, token: Option<&VfToken>) -> Result<SysFd, Errno> {
        let sys = self.iommu.sys().clone();
        let mut name = match token {
            Some(t) => format!("{bdf} vf_token={t}").into_bytes(),
            None => {
                let mut v = Vec::with_capacity(bdf.len() + 1);
                v.extend_from_slice(bdf.as_bytes());
                v
            }
        };
        if name.contains(&0) {
            return Err(Errno::EINVAL);
        }
        name.push(0);
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a pointer to a NUL-terminated device name.
        let fd = unsafe {
            sys.ioctl(
                self.fd(),
                nr::VFIO_GROUP_GET_DEVICE_FD,
                IoctlArg::Buf(&mut name),
            )
        }?;
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD returns a new device fd owned by the caller.
        Ok(unsafe { SysFd::from_raw(sys, fd) })
    }
}

/// VFIO_GROUP_GET_STATUS on a group fd.
pub fn group_status(sys: &dyn Sys, fd: std::os::fd::RawFd) -> Result<u32, Errno> {
    let mut st = vb::vfio_group_status {
        argsz: std::mem::size_of::<vb::vfio_group_status>() as u32,
        flags: 0,
    };
    // SAFETY: a vfio_group_status; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_GROUP_GET_STATUS, &mut st) }?;
    Ok(st.flags)
}

/// Upstream's `vfio_pci_group_setup` plus the container's extension check and SET_IOMMU: open
/// `/dev/vfio/<group>` (or reuse the already-open group of this container), check it is viable,
/// attach it to the container, check the IOMMU type extension and set the IOMMU (tolerating a
/// racing opener's EBUSY).
pub fn group_setup(iommu: &Arc<Iommu>, bdf: Bdf) -> Result<Arc<Group>> {
    group_setup_at(iommu, bdf, &bdf.canonical_string())
}

/// [`group_setup`] for an already parsed `b` (spelled `bdf` in errors).
pub(crate) fn group_setup_at(iommu: &Arc<Iommu>, b: Bdf, bdf: &str) -> Result<Arc<Group>> {
    let sys = iommu.sys().clone();
    let Some(container_fd) = iommu.container_fd() else {
        return Err(Error::InvalidArgument {
            who: bdf.to_string(),
            reason: format!("group setup needs a container mode, not {}", iommu.mode()),
        });
    };
    check_bound_to_vfio_at(&*sys, b, bdf)?;
    let number = iommu_group_number_at(&*sys, b, bdf)?;
    // Held for the whole setup: a second opener of the same group waits and then reuses it.
    let _setup = iommu.container_setup_lock();
    {
        let state = iommu.container_state();
        if let Some(g) = state
            .as_ref()
            .and_then(|s| s.groups.get(&number))
            .and_then(|w| w.upgrade())
        {
            return Ok(g);
        }
    }
    let path = PathBuf::from(format!("/dev/vfio/{number}"));
    let fd = open_group_node(&sys, iommu, number, &path).map_err(|e| match e {
        Errno::EBUSY => Error::Os {
            who: format!("{bdf}: {}", path.display()),
            op: "open (group already open elsewhere)",
            errno: e,
        },
        e => Error::open_node(
            &path,
            "CONFIG_VFIO_GROUP (and vfio-pci bound)",
            Some(bdf),
            e,
        ),
    })?;
    let flags =
        group_status(&*sys, fd.raw()).map_err(|e| Error::os(bdf, "VFIO_GROUP_GET_STATUS", e))?;
    if flags & vb::VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(Error::GroupNotViable {
            bdf: bdf.to_string(),
            group: number,
            culprit: non_vfio_group_member(&*sys, number, b),
        });
    }
    // From SET_CONTAINER to the group's registration the state lock is held, so a concurrent
    // group close (which may return the container to its unset state) is ordered either wholly
    // before or wholly after, and the SET_IOMMU decision is never stale.
    let mut st = iommu
        .container_state()
        .ok_or_else(|| Error::InvalidArgument {
            who: bdf.to_string(),
            reason: "no container state".into(),
        })?;
    let mut arg = [0u8; 4];
    write_plain(&mut arg, 0, &container_fd);
    // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to an int holding the container fd.
    unsafe {
        sys.ioctl(
            fd.raw(),
            nr::VFIO_GROUP_SET_CONTAINER,
            IoctlArg::Buf(&mut arg),
        )
    }
    .map_err(|e| Error::os(bdf, "VFIO_GROUP_SET_CONTAINER", e))?;
    let ty = iommu.mode().iommu_type().unwrap_or(vb::VFIO_TYPE1v2_IOMMU);
    let ext = iommu
        .check_extension(ty)
        .map_err(|e| Error::os(bdf, "VFIO_CHECK_EXTENSION", e))?;
    if ext <= 0 {
        return Err(Error::ExtensionUnsupported {
            bdf: bdf.to_string(),
            path: PathBuf::from(iommu.mode().container_path().unwrap_or_default()),
            iommu_type: ty,
        });
    }
    iommu.set_iommu_locked(&mut st)?;
    let g = Arc::new(Group {
        fd: Some(fd),
        number,
        iommu: iommu.clone(),
    });
    st.live_groups += 1;
    st.groups.insert(number, Arc::downgrade(&g));
    Ok(g)
}

/// Open `/dev/vfio/<number>`. If the previous holder of this group in the same container is
/// being dropped right now (its registry entry is dead but its fd may not be closed yet), EBUSY
/// is retried for up to two seconds.
fn open_group_node(
    sys: &Arc<dyn Sys>,
    iommu: &Iommu,
    number: u32,
    path: &Path,
) -> Result<SysFd, Errno> {
    // The clock is read only once an EBUSY calls for a retry (the normal open never needs it).
    let mut deadline = None;
    loop {
        match SysFd::open(sys, path, false) {
            Err(Errno::EBUSY) => {
                let closing = iommu.container_state().is_some_and(|st| {
                    st.groups
                        .get(&number)
                        .is_some_and(|w| w.strong_count() == 0)
                });
                let now = std::time::Instant::now();
                let until = *deadline.get_or_insert(now + std::time::Duration::from_secs(2));
                if !closing || now >= until {
                    return Err(Errno::EBUSY);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            r => return r,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Close under the state lock so the container's bookkeeping changes atomically with the
        // kernel's (closing the last group unsets a legacy container's IOMMU).
        let st = self.iommu.container_state();
        drop(self.fd.take());
        if let Some(mut st) = st {
            if st
                .groups
                .get(&self.number)
                .is_some_and(|w| w.strong_count() == 0)
            {
                st.groups.remove(&self.number);
            }
            self.iommu.group_closed(&mut st);
        }
    }
}
