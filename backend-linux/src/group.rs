//! The VFIO group fd (`/dev/vfio/<group>`): viability, SET_CONTAINER, GET_DEVICE_FD.
//!
//! Also the small sysfs lookups the open path needs (IOMMU group number, current driver), done
//! through [`Sys`] so they are testable; the integrator may later route them through the shared
//! sysfs module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_bindings::bindings::vfio as vb;

use crate::error::{Error, Result};
use crate::iommu::Iommu;
use crate::sys::{ioctl_plain, nr, write_plain, Errno, IoctlArg, Sys, SysFd};
use crate::token::VfToken;

/// `/sys/bus/pci/devices`.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Check the shape of a BDF (`SSSS:BB:DD.F`, hex, segment required) without parsing it into a
/// type (the shared `Bdf` type lives elsewhere).
pub fn check_bdf(bdf: &str) -> Result<()> {
    let b = bdf.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    let ok = b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
        && u8::from_str_radix(&bdf[8..10], 16).is_ok_and(|d| d < 32);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBdf {
            bdf: bdf.to_string(),
        })
    }
}

fn device_dir(bdf: &str) -> PathBuf {
    Path::new(SYSFS_PCI_DEVICES).join(bdf)
}

/// The driver a device is bound to (basename of its `driver` link), or `None`.
pub fn current_driver(sys: &dyn Sys, bdf: &str) -> Option<String> {
    sys.readlink(&device_dir(bdf).join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// True for `vfio-pci` and its variant drivers (`mlx5_vfio_pci`, `nvgrace-gpu-vfio-pci`, ...).
pub fn is_vfio_pci_driver(name: &str) -> bool {
    name == "vfio-pci" || name.ends_with("-vfio-pci") || name.ends_with("_vfio_pci")
}

/// Check the device exists and is bound to vfio-pci (or a vfio-pci variant driver).
pub fn check_bound_to_vfio(sys: &dyn Sys, bdf: &str) -> Result<()> {
    check_bdf(bdf)?;
    if !sys.exists(&device_dir(bdf)) {
        return Err(Error::DeviceNotFound {
            bdf: bdf.to_string(),
        });
    }
    match current_driver(sys, bdf) {
        Some(d) if is_vfio_pci_driver(&d) => Ok(()),
        driver => Err(Error::NotBoundToVfio {
            bdf: bdf.to_string(),
            driver,
        }),
    }
}

/// The IOMMU group number of a device (readlink of `iommu_group`).
pub fn iommu_group_number(sys: &dyn Sys, bdf: &str) -> Result<u32> {
    let link = sys
        .readlink(&device_dir(bdf).join("iommu_group"))
        .map_err(|e| match e {
            Errno::ENOENT => Error::NoIommuGroup {
                bdf: bdf.to_string(),
            },
            e => Error::os(bdf, "readlink iommu_group", e),
        })?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Malformed {
            who: bdf.to_string(),
            what: "iommu_group link",
            reason: format!("{} does not end in a group number", link.display()),
        })
}

/// The first device of `group` (other than `bdf`) not bound to vfio-pci, with its driver.
pub fn non_vfio_group_member(
    sys: &dyn Sys,
    group: u32,
    bdf: &str,
) -> Option<(String, Option<String>)> {
    let dir = PathBuf::from(format!("/sys/kernel/iommu_groups/{group}/devices"));
    let mut members = sys.read_dir(&dir).ok()?;
    members.sort();
    members.into_iter().find_map(|d| {
        if d == bdf {
            return None;
        }
        let drv = current_driver(sys, &d);
        match drv.as_deref() {
            Some(n) if is_vfio_pci_driver(n) || n == "pcieport" => None,
            _ => Some((d, drv)),
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
            Some(t) => format!("{bdf} vf_token={t}"),
            None => bdf.to_string(),
        }
        .into_bytes();
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
        Ok(SysFd::new(sys, fd))
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
pub fn group_setup(iommu: &Arc<Iommu>, bdf: &str) -> Result<Arc<Group>> {
    let sys = iommu.sys().clone();
    let Some(container_fd) = iommu.container_fd() else {
        return Err(Error::InvalidArgument {
            who: bdf.to_string(),
            reason: format!("group setup needs a container mode, not {}", iommu.mode()),
        });
    };
    check_bound_to_vfio(&*sys, bdf)?;
    let number = iommu_group_number(&*sys, bdf)?;
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
    let raw = open_group_node(&*sys, iommu, number, &path).map_err(|e| match e {
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
    let fd = SysFd::new(sys.clone(), raw);
    let flags =
        group_status(&*sys, fd.raw()).map_err(|e| Error::os(bdf, "VFIO_GROUP_GET_STATUS", e))?;
    if flags & vb::VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(Error::GroupNotViable {
            bdf: bdf.to_string(),
            group: number,
            culprit: non_vfio_group_member(&*sys, number, bdf),
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
    sys: &dyn Sys,
    iommu: &Iommu,
    number: u32,
    path: &Path,
) -> Result<std::os::fd::RawFd, Errno> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sys.open(path, false) {
            Err(Errno::EBUSY) => {
                let closing = iommu.container_state().is_some_and(|st| {
                    st.groups
                        .get(&number)
                        .is_some_and(|w| w.strong_count() == 0)
                });
                if !closing || std::time::Instant::now() >= deadline {
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
