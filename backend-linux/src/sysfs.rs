//! PCI functions as sysfs shows them: listing, identity, binding to vfio-pci and back,
//! IOMMU groups and SR-IOV.
//!
//! Every path is taken relative to a configurable sysfs root (default `/sys`) and procfs root
//! (default `/proc`), so the whole module runs against a fake tree in unit tests. Every write
//! goes through [`Sysfs::write`], which reports it to an optional log sink first (the CLI prints
//! each write, as upstream's scripts echo theirs).
//!
//! The lookups the VFIO open path needs (does the function exist, its driver, its IOMMU group
//! and the group's members, its `vfio-dev/` cdev name, SR-IOV links) read links, directories and
//! existence through the [`Sys`] seam ([`Sysfs::with_sys`]; [`RealSys`] by default), so the
//! VFIO layer's unit tests drive this same code with their simulated kernel. Attribute files,
//! writes and path resolution use `std::fs` under the root.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bdf::Bdf;
use crate::sys::{Errno, RealSys, Sys};

/// The driver name of VFIO's PCI driver.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

/// True for `vfio-pci` and its variant drivers (`mlx5_vfio_pci`, `nvgrace-gpu-vfio-pci`, ...),
/// which all offer the VFIO device interface.
pub fn is_vfio_pci_driver(name: &str) -> bool {
    name == VFIO_PCI_DRIVER || name.ends_with("-vfio-pci") || name.ends_with("_vfio_pci")
}

/// An error from a sysfs or procfs access.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// Reading, writing or listing `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted ("read", "write", "list", "readlink", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file held text that could not be parsed.
    #[error("{path}: unexpected contents {contents:?} (expected {expected})")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held (trimmed).
        contents: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No PCI function with this address exists under the sysfs root.
    #[error("{bdf}: no such PCI function ({path} does not exist)")]
    NoSuchDevice {
        /// The address looked up.
        bdf: Bdf,
        /// The directory that is missing.
        path: PathBuf,
    },
    /// The device backs something in use on this host; binding it to vfio-pci would take it
    /// away. Use `force` to override.
    #[error("{bdf} is in use: {}; refusing to unbind it (use --force to override)", uses.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; "))]
    InUse {
        /// The device.
        bdf: Bdf,
        /// Every use found.
        uses: Vec<DeviceUse>,
    },
    /// The device is not SR-IOV capable (no `sriov_totalvfs`), or has no such VF.
    #[error("{bdf}: {what}")]
    Sriov {
        /// The device.
        bdf: Bdf,
        /// What is missing.
        what: String,
    },
    /// A driver needed for binding is not registered (module not loaded).
    #[error("driver {driver} is not loaded ({path} missing); try `modprobe {module}`")]
    DriverMissing {
        /// The driver name.
        driver: String,
        /// The sysfs directory that is missing.
        path: PathBuf,
        /// The module to load.
        module: String,
    },
    /// Binding finished but the device is not bound to the expected driver.
    #[error("{bdf}: expected driver {expected} after binding, found {found}")]
    BindFailed {
        /// The device.
        bdf: Bdf,
        /// The driver that should be bound.
        expected: String,
        /// What is bound instead (`none` if unbound).
        found: String,
    },
}

/// A write about to be made to sysfs, as reported to the log sink.
#[derive(Debug, Clone, Copy)]
pub struct SysfsWrite<'a> {
    /// The file written.
    pub path: &'a Path,
    /// The value written (without a trailing newline).
    pub value: &'a str,
}

impl fmt::Display for SysfsWrite<'_> {
    /// Formats as the equivalent shell command, e.g. `echo vfio-pci > /sys/.../driver_override`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "echo > {}", self.path.display())
        } else {
            write!(f, "echo {} > {}", self.value, self.path.display())
        }
    }
}

/// The callback that sees every sysfs write before it is made.
pub type WriteLog = Arc<dyn Fn(&SysfsWrite<'_>) + Send + Sync>;

/// Access to sysfs (and the few procfs files the in-use checks read) under configurable roots.
#[derive(Clone)]
pub struct Sysfs {
    root: PathBuf,
    proc_root: PathBuf,
    log: Option<WriteLog>,
    sys: Arc<dyn Sys>,
}

impl fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sysfs")
            .field("root", &self.root)
            .field("proc_root", &self.proc_root)
            .field("log", &self.log.is_some())
            .field("sys", &self.sys)
            .finish()
    }
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/sys")
    }
}

/// What sysfs says about one PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// 24-bit class code (base class, subclass, programming interface).
    pub class: u32,
    /// The bound driver's name, if any.
    pub driver: Option<String>,
    /// The `driver_override` value, if set.
    pub driver_override: Option<String>,
    /// The IOMMU group number, if the function is behind an IOMMU.
    pub iommu_group: Option<u32>,
    /// `sriov_totalvfs`, if the function is an SR-IOV physical function.
    pub sriov_totalvfs: Option<u32>,
    /// `sriov_numvfs`, if the function is an SR-IOV physical function.
    pub sriov_numvfs: Option<u32>,
    /// The physical function, if this is a virtual function.
    pub physfn: Option<Bdf>,
    /// The VFIO cdev name (`vfioN` under `vfio-dev/`), present while bound to vfio-pci with
    /// `CONFIG_VFIO_DEVICE_CDEV`.
    pub vfio_cdev: Option<String>,
}

impl PciFunction {
    /// True if the function is bound to `vfio-pci`.
    pub fn is_vfio_bound(&self) -> bool {
        self.driver.as_deref() == Some(VFIO_PCI_DRIVER)
    }

    /// True if the function can create virtual functions.
    pub fn is_sriov_pf(&self) -> bool {
        self.sriov_totalvfs.is_some_and(|n| n > 0)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SysfsError + 'a {
    move |source| SysfsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a file and trims surrounding whitespace.
fn read_trimmed(path: &Path) -> Result<String, SysfsError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(io_err("read", path))
}

/// Reads a file, returning `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, SysfsError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Parses `0x1234`-style or plain hex text.
fn parse_hex(path: &Path, text: &str, expected: &'static str) -> Result<u32, SysfsError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u32::from_str_radix(digits, 16).map_err(|_| SysfsError::Parse {
        path: path.to_path_buf(),
        contents: text.to_owned(),
        expected,
    })
}

fn parse_dec(path: &Path, text: &str, expected: &'static str) -> Result<u32, SysfsError> {
    text.parse().map_err(|_| SysfsError::Parse {
        path: path.to_path_buf(),
        contents: text.to_owned(),
        expected,
    })
}

/// An errno from the [`Sys`] seam as the `io::Error` a std::fs call would have returned.
fn errno_err(op: &'static str, path: &Path, e: Errno) -> SysfsError {
    SysfsError::Io {
        op,
        path: path.to_path_buf(),
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// The sysfs lookups that go through the [`Sys`] seam: one implementation for [`Sysfs`] and the
/// VFIO open path (which has only a `&dyn Sys`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub(crate) sys: &'a dyn Sys,
    pub(crate) root: &'a Path,
}

impl Lookup<'_> {
    pub(crate) fn device_dir(&self, bdf: Bdf) -> PathBuf {
        self.device_entry(bdf, None)
    }

    /// `<root>/bus/pci/devices/<bdf>[/<name>]`, built in one allocation.
    fn device_entry(&self, bdf: Bdf, name: Option<&str>) -> PathBuf {
        let root = self.root.as_os_str();
        let mut p = std::ffi::OsString::with_capacity(
            root.len() + "/bus/pci/devices/".len() + 13 + name.map_or(0, |n| n.len() + 1),
        );
        p.push(root);
        if !root.as_encoded_bytes().ends_with(b"/") {
            p.push("/");
        }
        p.push("bus/pci/devices/");
        let (name_buf, name_len) = bdf.canonical();
        p.push(std::str::from_utf8(&name_buf[..name_len]).unwrap_or_default());
        if let Some(n) = name {
            p.push("/");
            p.push(n);
        }
        PathBuf::from(p)
    }

    pub(crate) fn exists(&self, bdf: Bdf) -> bool {
        self.sys.exists(&self.device_dir(bdf))
    }

    fn existing_device_dir(&self, bdf: Bdf) -> Result<PathBuf, SysfsError> {
        let dir = self.device_dir(bdf);
        if self.sys.exists(&dir) {
            Ok(dir)
        } else {
            Err(SysfsError::NoSuchDevice { bdf, path: dir })
        }
    }

    /// The final component of a symlink's target, if the link exists.
    fn link_basename(&self, path: &Path) -> Result<Option<String>, SysfsError> {
        match self.sys.readlink(path) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno_err("readlink", path, e)),
        }
    }

    /// The sorted entry names of a directory, or `None` if it does not exist.
    fn list(&self, dir: &Path) -> Result<Option<Vec<String>>, SysfsError> {
        match self.sys.read_dir(dir) {
            Ok(mut names) => {
                names.sort();
                Ok(Some(names))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno_err("list", dir, e)),
        }
    }

    /// The BDF-named entries of a directory, sorted; `None` if it does not exist.
    fn list_bdfs(&self, dir: &Path) -> Result<Option<Vec<Bdf>>, SysfsError> {
        Ok(self.list(dir)?.map(|names| {
            let mut bdfs: Vec<Bdf> = names.iter().filter_map(|n| Bdf::parse(n).ok()).collect();
            bdfs.sort();
            bdfs
        }))
    }

    /// The basename of the link `name` in the device directory of `bdf` (`None` if the link is
    /// absent). The link is read first; the device directory's existence is checked only when
    /// that fails, to report a missing device as [`SysfsError::NoSuchDevice`] (the open path
    /// reads these links on every open, so the common case costs one readlink).
    fn device_link_basename(&self, bdf: Bdf, name: &str) -> Result<Option<String>, SysfsError> {
        self.device_link_basename_at(bdf, &self.device_entry(bdf, Some(name)))
    }

    fn device_link_basename_at(&self, bdf: Bdf, link: &Path) -> Result<Option<String>, SysfsError> {
        match self.sys.readlink(link) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) => {
                let dir = self.device_dir(bdf);
                if !self.sys.exists(&dir) {
                    Err(SysfsError::NoSuchDevice { bdf, path: dir })
                } else if e == Errno::ENOENT {
                    Ok(None)
                } else {
                    Err(errno_err("readlink", link, e))
                }
            }
        }
    }

    pub(crate) fn driver(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        self.device_link_basename(bdf, "driver")
    }

    pub(crate) fn iommu_group(&self, bdf: Bdf) -> Result<Option<u32>, SysfsError> {
        let link = self.device_entry(bdf, Some("iommu_group"));
        match self.device_link_basename_at(bdf, &link)? {
            None => Ok(None),
            Some(name) => parse_dec(&link, &name, "a decimal IOMMU group number").map(Some),
        }
    }

    pub(crate) fn iommu_group_members(&self, group: u32) -> Result<Vec<Bdf>, SysfsError> {
        let dir = self
            .root
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        self.list_bdfs(&dir)?
            .ok_or_else(|| errno_err("list", &dir, Errno::ENOENT))
    }

    pub(crate) fn vfio_cdev(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        // List first; the device directory's existence matters only when that fails.
        let dir = self.device_entry(bdf, Some("vfio-dev"));
        let names = match self.sys.read_dir(&dir) {
            Ok(mut names) => {
                names.sort();
                Some(names)
            }
            Err(e) => {
                let dev = self.device_dir(bdf);
                if !self.sys.exists(&dev) {
                    return Err(SysfsError::NoSuchDevice { bdf, path: dev });
                } else if e == Errno::ENOENT {
                    None
                } else {
                    return Err(errno_err("list", &dir, e));
                }
            }
        };
        Ok(names.and_then(|names| names.into_iter().find(|n| n.starts_with("vfio"))))
    }

    /// A link to a PCI function (`virtfnN`, `physfn`), parsed; `None` if the link is absent.
    fn function_link(&self, link: PathBuf) -> Result<Option<Bdf>, SysfsError> {
        match self.link_basename(&link)? {
            None => Ok(None),
            Some(name) => Bdf::parse(&name).map(Some).map_err(|_| SysfsError::Parse {
                path: link,
                contents: name,
                expected: "a link to a PCI function",
            }),
        }
    }
}

impl Sysfs {
    /// Sysfs at `root` (normally `/sys`), procfs at `/proc`, no write log.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc_root: PathBuf::from("/proc"),
            log: None,
            sys: RealSys::shared(),
        }
    }

    /// Reads links, directories and existence through `sys` instead of the real kernel (see
    /// the module documentation).
    pub fn with_sys(mut self, sys: Arc<dyn Sys>) -> Self {
        self.sys = sys;
        self
    }

    pub(crate) fn lookup(&self) -> Lookup<'_> {
        Lookup {
            sys: &*self.sys,
            root: &self.root,
        }
    }

    /// Uses `proc_root` instead of `/proc` for `/proc/mounts` and `/proc/swaps`.
    pub fn with_proc_root(mut self, proc_root: impl Into<PathBuf>) -> Self {
        self.proc_root = proc_root.into();
        self
    }

    /// Reports every write to `log` before making it.
    pub fn with_write_log(mut self, log: WriteLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The sysfs root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The procfs root.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// `<root>/bus/pci/devices`.
    pub fn pci_devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// `<root>/bus/pci/devices/<bdf>`.
    pub fn device_dir(&self, bdf: Bdf) -> PathBuf {
        self.lookup().device_dir(bdf)
    }

    /// `<root>/bus/pci/drivers/<driver>`.
    pub fn driver_dir(&self, driver: &str) -> PathBuf {
        self.root.join("bus/pci/drivers").join(driver)
    }

    /// The one function that writes to sysfs: reports the write to the log sink, then writes
    /// `value` (a newline is appended only if `value` is empty, to clear attributes such as
    /// `driver_override`).
    pub fn write(&self, path: &Path, value: &str) -> Result<(), SysfsError> {
        if let Some(log) = &self.log {
            log(&SysfsWrite { path, value });
        }
        let bytes: &[u8] = if value.is_empty() {
            b"\n"
        } else {
            value.as_bytes()
        };
        fs::write(path, bytes).map_err(io_err("write", path))
    }

    fn existing_device_dir(&self, bdf: Bdf) -> Result<PathBuf, SysfsError> {
        self.lookup().existing_device_dir(bdf)
    }

    /// True if a PCI function with this address exists.
    pub fn exists(&self, bdf: Bdf) -> bool {
        self.lookup().exists(bdf)
    }

    /// Every PCI function under the root, sorted by address. Entries whose names are not BDFs
    /// are ignored.
    pub fn list_bdfs(&self) -> Result<Vec<Bdf>, SysfsError> {
        Ok(self
            .lookup()
            .list_bdfs(&self.pci_devices_dir())?
            .unwrap_or_default())
    }

    /// Every PCI function under the root with its sysfs facts, sorted by address.
    pub fn list_functions(&self) -> Result<Vec<PciFunction>, SysfsError> {
        self.list_bdfs()?
            .into_iter()
            .map(|bdf| self.function(bdf))
            .collect()
    }

    /// The sysfs facts about one function.
    pub fn function(&self, bdf: Bdf) -> Result<PciFunction, SysfsError> {
        let (vendor, device) = self.vendor_device(bdf)?;
        Ok(PciFunction {
            bdf,
            vendor,
            device,
            class: self.class(bdf)?,
            driver: self.driver(bdf)?,
            driver_override: self.driver_override(bdf)?,
            iommu_group: self.iommu_group(bdf)?,
            sriov_totalvfs: self.sriov_totalvfs(bdf)?,
            sriov_numvfs: self.sriov_numvfs(bdf)?,
            physfn: self.physfn(bdf)?,
            vfio_cdev: self.vfio_cdev(bdf)?,
        })
    }

    /// The vendor and device ids from the `vendor` and `device` files.
    pub fn vendor_device(&self, bdf: Bdf) -> Result<(u16, u16), SysfsError> {
        let dir = self.existing_device_dir(bdf)?;
        let read_id = |name: &str| -> Result<u16, SysfsError> {
            let path = dir.join(name);
            let text = read_trimmed(&path)?;
            let value = parse_hex(&path, &text, "a 16-bit hex id")?;
            u16::try_from(value).map_err(|_| SysfsError::Parse {
                path: path.clone(),
                contents: text,
                expected: "a 16-bit hex id",
            })
        };
        Ok((read_id("vendor")?, read_id("device")?))
    }

    /// The 24-bit class code from the `class` file.
    pub fn class(&self, bdf: Bdf) -> Result<u32, SysfsError> {
        let path = self.existing_device_dir(bdf)?.join("class");
        let text = read_trimmed(&path)?;
        parse_hex(&path, &text, "a hex class code")
    }

    /// The bound driver's name (the basename of the `driver` link), or `None` if unbound.
    pub fn driver(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        self.lookup().driver(bdf)
    }

    /// The `driver_override` value, or `None` if unset (the kernel shows `(null)`) or the file
    /// does not exist.
    pub fn driver_override(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        let value = read_optional(&self.existing_device_dir(bdf)?.join("driver_override"))?;
        Ok(value.filter(|v| !v.is_empty() && v != "(null)"))
    }

    /// The IOMMU group number (basename of the `iommu_group` link), or `None` without an IOMMU.
    pub fn iommu_group(&self, bdf: Bdf) -> Result<Option<u32>, SysfsError> {
        self.lookup().iommu_group(bdf)
    }

    /// The functions in IOMMU group `group`, sorted (from `kernel/iommu_groups/<group>/devices`).
    pub fn iommu_group_members(&self, group: u32) -> Result<Vec<Bdf>, SysfsError> {
        self.lookup().iommu_group_members(group)
    }

    /// The name of the VFIO cdev (`vfioN`) under `vfio-dev/`, if any (the first in name order).
    pub fn vfio_cdev(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        self.lookup().vfio_cdev(bdf)
    }

    /// `sriov_totalvfs`, or `None` if the function is not an SR-IOV PF.
    pub fn sriov_totalvfs(&self, bdf: Bdf) -> Result<Option<u32>, SysfsError> {
        let path = self.existing_device_dir(bdf)?.join("sriov_totalvfs");
        read_optional(&path)?
            .map(|t| parse_dec(&path, &t, "a decimal VF count"))
            .transpose()
    }

    /// `sriov_numvfs`, or `None` if the function is not an SR-IOV PF.
    pub fn sriov_numvfs(&self, bdf: Bdf) -> Result<Option<u32>, SysfsError> {
        let path = self.existing_device_dir(bdf)?.join("sriov_numvfs");
        read_optional(&path)?
            .map(|t| parse_dec(&path, &t, "a decimal VF count"))
            .transpose()
    }

    /// Writes `sriov_numvfs` (the kernel requires going through 0 to change a non-zero count).
    pub fn set_sriov_numvfs(&self, bdf: Bdf, numvfs: u32) -> Result<(), SysfsError> {
        let path = self.existing_device_dir(bdf)?.join("sriov_numvfs");
        if !path.exists() {
            return Err(SysfsError::Sriov {
                bdf,
                what: "not an SR-IOV physical function (no sriov_numvfs)".into(),
            });
        }
        self.write(&path, &numvfs.to_string())
    }

    /// The address of VF `index` of physical function `pf` (the `virtfn<index>` link).
    pub fn vf_bdf(&self, pf: Bdf, index: u32) -> Result<Bdf, SysfsError> {
        let link = self.existing_device_dir(pf)?.join(format!("virtfn{index}"));
        let what = format!("no virtual function {index} ({} missing)", link.display());
        self.lookup()
            .function_link(link)?
            .ok_or(SysfsError::Sriov { bdf: pf, what })
    }

    /// The addresses of every VF of `pf`, in `virtfnN` order.
    pub fn vf_bdfs(&self, pf: Bdf) -> Result<Vec<Bdf>, SysfsError> {
        let mut vfs = Vec::new();
        for index in 0.. {
            let link = self.device_dir(pf).join(format!("virtfn{index}"));
            if self.sys.readlink(&link).is_err() {
                break;
            }
            vfs.push(self.vf_bdf(pf, index)?);
        }
        Ok(vfs)
    }

    /// The physical function of a VF (the `physfn` link), or `None` for a non-VF.
    pub fn physfn(&self, vf: Bdf) -> Result<Option<Bdf>, SysfsError> {
        let link = self.existing_device_dir(vf)?.join("physfn");
        self.lookup().function_link(link)
    }
}

/// Something on this host that depends on a PCI function and would break if it were unbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUse {
    /// A block device of the function (or a partition or device-mapper holder of one) is
    /// mounted.
    MountedFilesystem {
        /// The block device name (e.g. `nvme0n1p2`, `dm-0`).
        block: String,
        /// Where it is mounted.
        mount_point: String,
    },
    /// A block device of the function is active swap.
    Swap {
        /// The block device name.
        block: String,
    },
    /// A network interface of the function is up.
    NetworkUp {
        /// The interface name.
        interface: String,
    },
    /// A virtual function of this physical function is in use; setup would destroy it by
    /// writing `sriov_numvfs` = 0.
    VirtualFunction {
        /// The VF.
        vf: Bdf,
        /// How it is used.
        inner: Box<DeviceUse>,
    },
}

impl fmt::Display for DeviceUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MountedFilesystem { block, mount_point } => {
                write!(f, "block device {block} is mounted on {mount_point}")
            }
            Self::Swap { block } => write!(f, "block device {block} is active swap"),
            Self::NetworkUp { interface } => write!(f, "network interface {interface} is up"),
            Self::VirtualFunction { vf, inner } => write!(f, "virtual function {vf}: {inner}"),
        }
    }
}

/// The kernel's `MAJ:MIN` split of a `dev_t` (glibc encoding).
fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Undoes the octal escapes (`\040` for space, ...) of `/proc/mounts` fields.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A block device that belongs to the PCI function being checked.
#[derive(Debug, Clone)]
struct OwnedBlock {
    name: String,
    dev: Option<(u64, u64)>,
    dm_name: Option<String>,
}

impl Sysfs {
    fn canonical_device_dir(&self, bdf: Bdf) -> Result<PathBuf, SysfsError> {
        let dir = self.existing_device_dir(bdf)?;
        fs::canonicalize(&dir).map_err(io_err("resolve", &dir))
    }

    /// Lists the entries of a directory (sorted), or nothing if it does not exist.
    fn entries(dir: &Path) -> Result<Vec<String>, SysfsError> {
        let lookup = Lookup {
            sys: &RealSys,
            root: Path::new("/"),
        };
        Ok(lookup.list(dir)?.unwrap_or_default())
    }

    /// Block devices of the function: disks below its sysfs directory, their partitions, and
    /// (transitively) their holders such as device-mapper and md devices.
    fn owned_blocks(&self, device_real: &Path) -> Result<Vec<OwnedBlock>, SysfsError> {
        let block_root = self.root.join("block");
        let mut names: Vec<String> = Vec::new();
        let mut holder_dirs: Vec<PathBuf> = Vec::new();
        for disk in Self::entries(&block_root)? {
            let link = block_root.join(&disk);
            let Ok(real) = fs::canonicalize(&link) else {
                continue;
            };
            if !real.starts_with(device_real) {
                continue;
            }
            names.push(disk.clone());
            holder_dirs.push(link.join("holders"));
            for part in Self::entries(&link)? {
                if link.join(&part).join("partition").exists() {
                    names.push(part.clone());
                    holder_dirs.push(link.join(&part).join("holders"));
                }
            }
        }
        // Holders of holders (e.g. LVM on md on a partition), bounded by the number of block
        // devices.
        while let Some(dir) = holder_dirs.pop() {
            for holder in Self::entries(&dir)? {
                if !names.contains(&holder) {
                    holder_dirs.push(block_root.join(&holder).join("holders"));
                    names.push(holder);
                }
            }
        }
        let mut blocks = Vec::new();
        for name in names {
            // Partitions live under their disk; find the directory via /sys/class/block.
            let class_dir = self.root.join("class/block").join(&name);
            let dir = if class_dir.exists() {
                class_dir
            } else {
                block_root.join(&name)
            };
            let dev = read_optional(&dir.join("dev"))?.and_then(|t| {
                let (a, b) = t.split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            });
            let dm_name = read_optional(&dir.join("dm/name"))?;
            blocks.push(OwnedBlock { name, dev, dm_name });
        }
        Ok(blocks)
    }

    /// What on this host would break if the function were unbound from its driver: mounted
    /// filesystems and active swap on its block devices (`/proc/mounts`, `/proc/swaps`,
    /// `<sys>/block/*`), and network interfaces that are up (`<sys>/class/net/*/device`,
    /// `operstate`, `flags`).
    pub fn device_uses(&self, bdf: Bdf) -> Result<Vec<DeviceUse>, SysfsError> {
        let device_real = self.canonical_device_dir(bdf)?;
        let mut uses = Vec::new();

        let blocks = self.owned_blocks(&device_real)?;
        if !blocks.is_empty() {
            let find = |source: &str| -> Option<&OwnedBlock> {
                if let Some(alias) = source.strip_prefix("/dev/mapper/") {
                    return blocks.iter().find(|b| b.dm_name.as_deref() == Some(alias));
                }
                let base = source.strip_prefix("/dev/")?;
                blocks.iter().find(|b| b.name == base)
            };
            let mounts_path = self.proc_root.join("mounts");
            let mounts = read_optional(&mounts_path)?.unwrap_or_default();
            for line in mounts.lines() {
                let mut fields = line.split_whitespace();
                let (Some(source), Some(mount_point)) = (fields.next(), fields.next()) else {
                    continue;
                };
                let source = unescape_mount_field(source);
                let mount_point = unescape_mount_field(mount_point);
                let mut owner = find(&source).map(|b| b.name.clone());
                // `/dev/root` and similar aliases: compare the mounted device number. Only
                // for /dev sources, so a network filesystem is never stat'ed.
                if owner.is_none() && source.starts_with("/dev/") {
                    use std::os::unix::fs::MetadataExt;
                    if let Ok(meta) = fs::metadata(&mount_point) {
                        let dev = dev_major_minor(meta.dev());
                        owner = blocks
                            .iter()
                            .find(|b| b.dev == Some(dev))
                            .map(|b| b.name.clone());
                    }
                }
                if let Some(block) = owner {
                    uses.push(DeviceUse::MountedFilesystem { block, mount_point });
                }
            }
            let swaps = read_optional(&self.proc_root.join("swaps"))?.unwrap_or_default();
            for line in swaps.lines().skip(1) {
                if let Some(source) = line.split_whitespace().next() {
                    if let Some(b) = find(&unescape_mount_field(source)) {
                        uses.push(DeviceUse::Swap {
                            block: b.name.clone(),
                        });
                    }
                }
            }
        }

        let net_root = self.root.join("class/net");
        for iface in Self::entries(&net_root)? {
            let dir = net_root.join(&iface);
            let Ok(dev) = fs::canonicalize(dir.join("device")) else {
                continue;
            };
            // The link may point at a child of the PCI function (virtio-net: .../virtio1).
            if !dev.starts_with(&device_real) {
                continue;
            }
            let operstate = read_optional(&dir.join("operstate"))?.unwrap_or_default();
            let flags_path = dir.join("flags");
            let admin_up = match read_optional(&flags_path)? {
                Some(t) => parse_hex(&flags_path, &t, "hex interface flags")? & 0x1 != 0,
                None => false,
            };
            if operstate == "up" || admin_up {
                uses.push(DeviceUse::NetworkUp { interface: iface });
            }
        }

        // Setup disables SR-IOV, which removes the VFs: their uses count too. (A VF has no
        // VFs of its own, so this recursion is one level deep.)
        if self.sriov_numvfs(bdf)?.is_some_and(|n| n > 0) {
            for vf in self.vf_bdfs(bdf)? {
                if !self.exists(vf) {
                    continue;
                }
                for inner in self.device_uses(vf)? {
                    uses.push(DeviceUse::VirtualFunction {
                        vf,
                        inner: Box::new(inner),
                    });
                }
            }
        }
        Ok(uses)
    }
}

/// What binding to vfio-pci changes on a device: the values [`Sysfs::restore`] puts back. The
/// caller persists it before the first write ([`Sysfs::check_vfio_setup`] returns it), so a
/// crash or SIGINT at any point leaves enough to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedState {
    /// The driver bound before setup, if any.
    pub driver: Option<String>,
    /// The `driver_override` before setup, if set.
    pub driver_override: Option<String>,
    /// `sriov_numvfs` before setup, if the device is an SR-IOV PF.
    pub sriov_numvfs: Option<u32>,
}

impl Sysfs {
    /// Unbinds `bdf` from its driver, if bound.
    pub fn unbind(&self, bdf: Bdf) -> Result<(), SysfsError> {
        if let Some(driver) = self.driver(bdf)? {
            self.write(&self.driver_dir(&driver).join("unbind"), &bdf.to_string())?;
        }
        Ok(())
    }

    /// Binds `bdf` to `driver` (which must be registered).
    pub fn bind(&self, bdf: Bdf, driver: &str) -> Result<(), SysfsError> {
        let dir = self.driver_dir(driver);
        if !dir.is_dir() {
            return Err(SysfsError::DriverMissing {
                driver: driver.to_owned(),
                path: dir,
                module: driver.replace('-', "_"),
            });
        }
        self.write(&dir.join("bind"), &bdf.to_string())
    }

    /// Sets `driver_override` (`None` clears it).
    pub fn set_driver_override(&self, bdf: Bdf, driver: Option<&str>) -> Result<(), SysfsError> {
        let path = self.existing_device_dir(bdf)?.join("driver_override");
        self.write(&path, driver.unwrap_or(""))
    }

    /// Checks that `bdf` may be bound to vfio-pci and returns its current state, which the
    /// caller saves before calling [`Sysfs::bind_vfio`]. Writes nothing.
    ///
    /// Unless `force`, refuses a device that backs a mounted filesystem, active swap or an up
    /// network interface ([`SysfsError::InUse`] lists them); refuses if vfio-pci is not loaded.
    pub fn check_vfio_setup(&self, bdf: Bdf, force: bool) -> Result<SavedState, SysfsError> {
        let func = self.function(bdf)?;
        if !force {
            let uses = self.device_uses(bdf)?;
            if !uses.is_empty() {
                return Err(SysfsError::InUse { bdf, uses });
            }
        }
        let vfio_dir = self.driver_dir(VFIO_PCI_DRIVER);
        if !vfio_dir.is_dir() {
            return Err(SysfsError::DriverMissing {
                driver: VFIO_PCI_DRIVER.into(),
                path: vfio_dir,
                module: "vfio_pci".into(),
            });
        }
        Ok(SavedState {
            driver: func.driver,
            driver_override: func.driver_override,
            sriov_numvfs: func.sriov_numvfs,
        })
    }

    /// Binds `bdf` to vfio-pci the way upstream's `setup.sh` does: SR-IOV VFs are disabled
    /// (`sriov_numvfs` = 0), the current driver is unbound, `driver_override` is set to
    /// `vfio-pci` and the device is bound to vfio-pci. Steps already done are skipped, so an
    /// interrupted bind can be repeated. Save [`Sysfs::check_vfio_setup`]'s state first.
    pub fn bind_vfio(&self, bdf: Bdf) -> Result<(), SysfsError> {
        let func = self.function(bdf)?;
        if func.sriov_numvfs.is_some_and(|n| n > 0) {
            self.set_sriov_numvfs(bdf, 0)?;
        }
        if func.is_vfio_bound() {
            if func.driver_override.as_deref() != Some(VFIO_PCI_DRIVER) {
                self.set_driver_override(bdf, Some(VFIO_PCI_DRIVER))?;
            }
            return Ok(());
        }
        self.unbind(bdf)?;
        self.set_driver_override(bdf, Some(VFIO_PCI_DRIVER))?;
        self.bind(bdf, VFIO_PCI_DRIVER)?;
        let now = self.driver(bdf)?;
        if now.as_deref() != Some(VFIO_PCI_DRIVER) {
            return Err(SysfsError::BindFailed {
                bdf,
                expected: VFIO_PCI_DRIVER.into(),
                found: now.unwrap_or_else(|| "none".into()),
            });
        }
        Ok(())
    }

    /// Restores what [`Sysfs::bind_vfio`] changed to `saved`: unbinds from vfio-pci, restores
    /// `driver_override`, rebinds the saved driver and `sriov_numvfs`. Each step checks the
    /// current state first, so an interrupted restore can be repeated.
    pub fn restore(&self, bdf: Bdf, saved: &SavedState) -> Result<(), SysfsError> {
        let current = self.driver(bdf)?;
        if current.is_some() && current != saved.driver {
            self.unbind(bdf)?;
        }
        if self.driver_override(bdf)? != saved.driver_override {
            self.set_driver_override(bdf, saved.driver_override.as_deref())?;
        }
        if let Some(driver) = &saved.driver {
            if self.driver(bdf)?.as_ref() != Some(driver) {
                self.bind(bdf, driver)?;
            }
        }
        if let Some(n) = saved.sriov_numvfs {
            if self.sriov_numvfs(bdf)? != Some(n) {
                self.set_sriov_numvfs(bdf, n)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake sysfs/procfs tree in a temporary directory, shaped like the real one (devices
    //! under `devices/pci0000:00`, symlinks from `bus/pci/devices`), plus a write log that plays
    //! the kernel's part for `bind`/`unbind`.

    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    pub(crate) struct FakeTree {
        pub base: PathBuf,
    }

    impl Drop for FakeTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    impl FakeTree {
        pub(crate) fn new() -> Self {
            let base = std::env::temp_dir().join(format!(
                "passthru-fake-sysfs-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(base.join("sys/bus/pci/devices")).unwrap();
            fs::create_dir_all(base.join("sys/bus/pci/drivers")).unwrap();
            fs::create_dir_all(base.join("sys/devices/pci0000:00")).unwrap();
            fs::create_dir_all(base.join("proc")).unwrap();
            fs::write(base.join("proc/mounts"), "proc /proc proc rw 0 0\n").unwrap();
            fs::write(
                base.join("proc/swaps"),
                "Filename\tType\tSize\tUsed\tPriority\n",
            )
            .unwrap();
            Self { base }
        }

        pub(crate) fn sys(&self) -> PathBuf {
            self.base.join("sys")
        }

        pub(crate) fn dev_dir(&self, bdf: &str) -> PathBuf {
            self.sys().join("devices/pci0000:00").join(bdf)
        }

        pub(crate) fn add_driver(&self, name: &str) {
            fs::create_dir_all(self.sys().join("bus/pci/drivers").join(name)).unwrap();
        }

        pub(crate) fn add_device(
            &self,
            bdf: &str,
            vendor: u16,
            device: u16,
            class: u32,
            driver: Option<&str>,
        ) {
            let dir = self.dev_dir(bdf);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
            fs::write(dir.join("device"), format!("{device:#06x}\n")).unwrap();
            fs::write(dir.join("class"), format!("{class:#08x}\n")).unwrap();
            fs::write(dir.join("driver_override"), "(null)\n").unwrap();
            symlink(
                format!("../../../devices/pci0000:00/{bdf}"),
                self.sys().join("bus/pci/devices").join(bdf),
            )
            .unwrap();
            if let Some(d) = driver {
                self.add_driver(d);
                self.link_driver(bdf, d);
            }
        }

        pub(crate) fn link_driver(&self, bdf: &str, driver: &str) {
            let link = self.dev_dir(bdf).join("driver");
            let _ = fs::remove_file(&link);
            symlink(format!("../../../bus/pci/drivers/{driver}"), link).unwrap();
        }

        pub(crate) fn set_group(&self, bdf: &str, group: u32) {
            let gdir = self
                .sys()
                .join("kernel/iommu_groups")
                .join(group.to_string());
            fs::create_dir_all(gdir.join("devices")).unwrap();
            symlink(
                format!("../../../../devices/pci0000:00/{bdf}"),
                gdir.join("devices").join(bdf),
            )
            .unwrap();
            symlink(
                format!("../../../kernel/iommu_groups/{group}"),
                self.dev_dir(bdf).join("iommu_group"),
            )
            .unwrap();
        }

        /// A Sysfs on this tree whose write log records every write and emulates the kernel's
        /// bind/unbind and sriov_numvfs (creating/removing VFs is not emulated).
        pub(crate) fn sysfs(&self) -> (Sysfs, Arc<Mutex<Vec<String>>>) {
            let log = Arc::new(Mutex::new(Vec::new()));
            let log2 = log.clone();
            let sys = self.sys();
            let base = self.base.clone();
            let sink: WriteLog = Arc::new(move |w: &SysfsWrite<'_>| {
                let rel = w.path.strip_prefix(&base).unwrap_or(w.path);
                log2.lock()
                    .unwrap()
                    .push(format!("{} < {}", rel.display(), w.value));
                let name = w.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let driver = w
                    .path
                    .parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned();
                let dev = sys.join("devices/pci0000:00").join(w.value);
                match name {
                    "bind" if dev.is_dir() && !w.path.is_dir() => {
                        let _ = fs::remove_file(dev.join("driver"));
                        symlink(
                            format!("../../../bus/pci/drivers/{driver}"),
                            dev.join("driver"),
                        )
                        .unwrap();
                    }
                    "unbind" if dev.is_dir() => {
                        let _ = fs::remove_file(dev.join("driver"));
                    }
                    _ => {}
                }
            });
            (
                Sysfs::new(self.sys())
                    .with_proc_root(self.base.join("proc"))
                    .with_write_log(sink),
                log,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTree;
    use super::*;
    use std::os::unix::fs::symlink;

    fn b(s: &str) -> Bdf {
        Bdf::parse(s).unwrap()
    }

    fn sriov_tree() -> FakeTree {
        let t = FakeTree::new();
        t.add_device("0000:00:04.0", 0x8086, 0x10c9, 0x020000, Some("igb"));
        t.add_device("0000:00:05.0", 0x1234, 0x11e8, 0x00ff00, None);
        t.add_device("0000:01:10.0", 0x8086, 0x10ca, 0x020000, None);
        t.set_group("0000:00:04.0", 7);
        t.set_group("0000:00:05.0", 7);
        let pf = t.dev_dir("0000:00:04.0");
        fs::write(pf.join("sriov_totalvfs"), "7\n").unwrap();
        fs::write(pf.join("sriov_numvfs"), "1\n").unwrap();
        symlink("../0000:01:10.0", pf.join("virtfn0")).unwrap();
        symlink("../0000:00:04.0", t.dev_dir("0000:01:10.0").join("physfn")).unwrap();
        t.add_driver(VFIO_PCI_DRIVER);
        t
    }

    #[test]
    fn lists_functions_with_all_facts() {
        let t = sriov_tree();
        fs::create_dir_all(t.dev_dir("0000:00:05.0").join("vfio-dev/vfio3")).unwrap();
        let (sys, _) = t.sysfs();
        let all = sys.list_functions().unwrap();
        assert_eq!(
            all.iter().map(|f| f.bdf.to_string()).collect::<Vec<_>>(),
            ["0000:00:04.0", "0000:00:05.0", "0000:01:10.0"]
        );
        let pf = &all[0];
        assert_eq!((pf.vendor, pf.device, pf.class), (0x8086, 0x10c9, 0x020000));
        assert_eq!(pf.driver.as_deref(), Some("igb"));
        assert_eq!(pf.driver_override, None, "(null) reads as None");
        assert_eq!(pf.iommu_group, Some(7));
        assert_eq!((pf.sriov_totalvfs, pf.sriov_numvfs), (Some(7), Some(1)));
        assert!(pf.is_sriov_pf() && !pf.is_vfio_bound());
        assert_eq!(all[1].vfio_cdev.as_deref(), Some("vfio3"));
        assert_eq!(all[1].driver, None);
        assert_eq!(all[2].physfn, Some(b("0000:00:04.0")));
        assert_eq!(all[2].iommu_group, None);
        assert_eq!(
            sys.iommu_group_members(7).unwrap(),
            vec![b("0000:00:04.0"), b("0000:00:05.0")]
        );
    }

    #[test]
    fn sriov_helpers() {
        let t = sriov_tree();
        let (sys, log) = t.sysfs();
        let pf = b("0000:00:04.0");
        assert_eq!(sys.vf_bdf(pf, 0).unwrap(), b("0000:01:10.0"));
        assert_eq!(sys.vf_bdfs(pf).unwrap(), vec![b("0000:01:10.0")]);
        let err = sys.vf_bdf(pf, 1).unwrap_err();
        assert!(err.to_string().contains("no virtual function 1"), "{err}");
        sys.set_sriov_numvfs(pf, 0).unwrap();
        assert_eq!(sys.sriov_numvfs(pf).unwrap(), Some(0));
        assert_eq!(
            log.lock().unwrap().as_slice(),
            ["sys/bus/pci/devices/0000:00:04.0/sriov_numvfs < 0"]
        );
        let err = sys.set_sriov_numvfs(b("0000:00:05.0"), 1).unwrap_err();
        assert!(matches!(err, SysfsError::Sriov { .. }));
        assert!(sys.sriov_totalvfs(b("0000:00:05.0")).unwrap().is_none());
    }

    #[test]
    fn missing_device_and_bad_contents_are_typed_errors() {
        let t = sriov_tree();
        let (sys, _) = t.sysfs();
        assert!(matches!(
            sys.function(b("0000:09:00.0")),
            Err(SysfsError::NoSuchDevice { .. })
        ));
        fs::write(t.dev_dir("0000:00:05.0").join("vendor"), "zzzz\n").unwrap();
        let err = sys.vendor_device(b("0000:00:05.0")).unwrap_err();
        assert!(matches!(err, SysfsError::Parse { .. }), "{err}");
    }

    #[test]
    fn setup_then_cleanup_restores_exactly() {
        let t = sriov_tree();
        fs::write(t.dev_dir("0000:00:04.0").join("driver_override"), "igb\n").unwrap();
        let (sys, log) = t.sysfs();
        let pf = b("0000:00:04.0");

        let saved = sys.check_vfio_setup(pf, false).unwrap();
        assert_eq!(
            saved,
            SavedState {
                driver: Some("igb".into()),
                driver_override: Some("igb".into()),
                sriov_numvfs: Some(1),
            }
        );
        assert!(log.lock().unwrap().is_empty(), "the check writes nothing");
        sys.bind_vfio(pf).unwrap();
        assert_eq!(sys.driver(pf).unwrap().as_deref(), Some(VFIO_PCI_DRIVER));
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [
                "sys/bus/pci/devices/0000:00:04.0/sriov_numvfs < 0",
                "sys/bus/pci/drivers/igb/unbind < 0000:00:04.0",
                "sys/bus/pci/devices/0000:00:04.0/driver_override < vfio-pci",
                "sys/bus/pci/drivers/vfio-pci/bind < 0000:00:04.0",
            ]
        );
        // Binding again changes nothing.
        log.lock().unwrap().clear();
        sys.bind_vfio(pf).unwrap();
        assert!(log.lock().unwrap().is_empty());

        sys.restore(pf, &saved).unwrap();
        assert_eq!(sys.driver(pf).unwrap().as_deref(), Some("igb"));
        assert_eq!(sys.driver_override(pf).unwrap().as_deref(), Some("igb"));
        assert_eq!(sys.sriov_numvfs(pf).unwrap(), Some(1));
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [
                "sys/bus/pci/drivers/vfio-pci/unbind < 0000:00:04.0",
                "sys/bus/pci/devices/0000:00:04.0/driver_override < igb",
                "sys/bus/pci/drivers/igb/bind < 0000:00:04.0",
                "sys/bus/pci/devices/0000:00:04.0/sriov_numvfs < 1",
            ]
        );
    }

    #[test]
    fn interrupted_setup_is_restored_by_cleanup() {
        let t = sriov_tree();
        // Make the vfio-pci bind write fail (a directory cannot be written), as if the kernel
        // refused or the process died at that point.
        fs::create_dir_all(t.sys().join("bus/pci/drivers/vfio-pci/bind")).unwrap();
        let (sys, _) = t.sysfs();
        let dev = b("0000:00:04.0");
        let saved = sys.check_vfio_setup(dev, false).unwrap();
        let err = sys.bind_vfio(dev).unwrap_err();
        assert!(matches!(err, SysfsError::Io { op: "write", .. }), "{err}");
        assert_eq!(sys.driver(dev).unwrap(), None, "left unbound mid-way");
        sys.restore(dev, &saved).unwrap();
        assert_eq!(sys.driver(dev).unwrap().as_deref(), Some("igb"));
        assert_eq!(sys.driver_override(dev).unwrap(), None);
        assert_eq!(sys.sriov_numvfs(dev).unwrap(), Some(1));
    }

    #[test]
    fn unbound_device_stays_unbound_after_cleanup() {
        let t = sriov_tree();
        let (sys, _) = t.sysfs();
        let dev = b("0000:00:05.0");
        let saved = sys.check_vfio_setup(dev, false).unwrap();
        sys.bind_vfio(dev).unwrap();
        assert!(sys.function(dev).unwrap().is_vfio_bound());
        sys.restore(dev, &saved).unwrap();
        assert_eq!(sys.driver(dev).unwrap(), None);
        assert_eq!(sys.driver_override(dev).unwrap(), None);
    }

    #[test]
    fn setup_needs_vfio_pci_loaded() {
        let t = FakeTree::new();
        t.add_device("0000:00:05.0", 0x1234, 0x11e8, 0x00ff00, None);
        let (sys, log) = t.sysfs();
        let err = sys.check_vfio_setup(b("0000:00:05.0"), false).unwrap_err();
        assert!(err.to_string().contains("modprobe vfio_pci"), "{err}");
        assert!(log.lock().unwrap().is_empty());
    }

    fn disk_tree() -> FakeTree {
        let t = sriov_tree();
        t.add_device("0000:00:06.0", 0x1b36, 0x0010, 0x010802, Some("nvme"));
        // nvme0n1 with partitions p1 (mounted on /) and p2 (swap), p3 under dm-0 (mounted).
        let disk = t.dev_dir("0000:00:06.0").join("nvme/nvme0/nvme0n1");
        for (p, dev) in [
            ("nvme0n1p1", "259:1"),
            ("nvme0n1p2", "259:2"),
            ("nvme0n1p3", "259:3"),
        ] {
            fs::create_dir_all(disk.join(p).join("holders")).unwrap();
            fs::write(disk.join(p).join("partition"), "1\n").unwrap();
            fs::write(disk.join(p).join("dev"), format!("{dev}\n")).unwrap();
        }
        fs::create_dir_all(t.sys().join("block")).unwrap();
        fs::create_dir_all(t.sys().join("class/block")).unwrap();
        symlink(
            "../devices/pci0000:00/0000:00:06.0/nvme/nvme0/nvme0n1",
            t.sys().join("block/nvme0n1"),
        )
        .unwrap();
        for p in ["nvme0n1p1", "nvme0n1p2", "nvme0n1p3"] {
            symlink(
                format!("../../devices/pci0000:00/0000:00:06.0/nvme/nvme0/nvme0n1/{p}"),
                t.sys().join("class/block").join(p),
            )
            .unwrap();
        }
        let dm = t.sys().join("devices/virtual/block/dm-0");
        fs::create_dir_all(dm.join("dm")).unwrap();
        fs::create_dir_all(dm.join("holders")).unwrap();
        fs::write(dm.join("dm/name"), "vg-home\n").unwrap();
        symlink("../devices/virtual/block/dm-0", t.sys().join("block/dm-0")).unwrap();
        symlink(
            "../../../../../../../virtual/block/dm-0",
            disk.join("nvme0n1p3/holders/dm-0"),
        )
        .unwrap();
        // eth0 belongs to 0000:00:04.0.
        let net = t.dev_dir("0000:00:04.0").join("net/eth0");
        fs::create_dir_all(&net).unwrap();
        symlink("../../../0000:00:04.0", net.join("device")).unwrap();
        fs::write(net.join("operstate"), "down\n").unwrap();
        fs::write(net.join("flags"), "0x1003\n").unwrap();
        fs::create_dir_all(t.sys().join("class/net")).unwrap();
        symlink(
            "../../devices/pci0000:00/0000:00:04.0/net/eth0",
            t.sys().join("class/net/eth0"),
        )
        .unwrap();
        // A virtio-style interface whose device link points at a child of 0000:00:05.0.
        let child = t.dev_dir("0000:00:05.0").join("virtio1");
        let net1 = child.join("net/eth1");
        fs::create_dir_all(&net1).unwrap();
        symlink("../../../virtio1", net1.join("device")).unwrap();
        fs::write(net1.join("operstate"), "up\n").unwrap();
        fs::write(net1.join("flags"), "0x1002\n").unwrap();
        symlink(
            "../../devices/pci0000:00/0000:00:05.0/virtio1/net/eth1",
            t.sys().join("class/net/eth1"),
        )
        .unwrap();
        fs::write(
            t.base.join("proc/mounts"),
            "/dev/nvme0n1p1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n\
             /dev/mapper/vg-home /home\\040dir xfs rw 0 0\n\
             server:/x /mnt/nfs nfs rw 0 0\n",
        )
        .unwrap();
        fs::write(
            t.base.join("proc/swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p2 partition 100 0 -2\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn in_use_guard_names_every_use_and_force_overrides() {
        let t = disk_tree();
        let (sys, log) = t.sysfs();
        let nvme = b("0000:00:06.0");
        assert_eq!(
            sys.device_uses(nvme).unwrap(),
            vec![
                DeviceUse::MountedFilesystem {
                    block: "nvme0n1p1".into(),
                    mount_point: "/".into()
                },
                DeviceUse::MountedFilesystem {
                    block: "dm-0".into(),
                    mount_point: "/home dir".into()
                },
                DeviceUse::Swap {
                    block: "nvme0n1p2".into()
                },
            ]
        );
        let err = sys.check_vfio_setup(nvme, false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("block device nvme0n1p1 is mounted on /")
                && text.contains("nvme0n1p2 is active swap")
                && text.contains("--force"),
            "{text}"
        );
        assert!(
            log.lock().unwrap().is_empty(),
            "nothing written when refused"
        );

        let nic = b("0000:00:04.0");
        assert_eq!(
            sys.device_uses(nic).unwrap(),
            vec![DeviceUse::NetworkUp {
                interface: "eth0".into()
            }],
            "IFF_UP in flags counts even with operstate down"
        );
        assert_eq!(
            sys.device_uses(b("0000:00:05.0")).unwrap(),
            vec![DeviceUse::NetworkUp {
                interface: "eth1".into()
            }],
            "operstate up through a child device (virtio-net)"
        );
        assert!(sys.device_uses(b("0000:01:10.0")).unwrap().is_empty());

        // An up interface on the VF 0000:01:10.0 makes its PF in use (numvfs = 0 kills it).
        let vf_net = t.dev_dir("0000:01:10.0").join("net/eth2");
        fs::create_dir_all(&vf_net).unwrap();
        symlink("../../../0000:01:10.0", vf_net.join("device")).unwrap();
        fs::write(vf_net.join("operstate"), "up\n").unwrap();
        symlink(
            "../../devices/pci0000:00/0000:01:10.0/net/eth2",
            t.sys().join("class/net/eth2"),
        )
        .unwrap();
        let uses = sys.device_uses(nic).unwrap();
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert_eq!(
            uses[1].to_string(),
            "virtual function 0000:01:10.0: network interface eth2 is up"
        );
        assert!(matches!(
            sys.check_vfio_setup(nic, false),
            Err(SysfsError::InUse { .. })
        ));
        sys.check_vfio_setup(nic, true).unwrap();
        sys.bind_vfio(nic).unwrap();
        assert!(sys.function(nic).unwrap().is_vfio_bound());
    }

    #[test]
    fn mount_field_unescaping() {
        assert_eq!(unescape_mount_field("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mount_field("/x\\"), "/x\\");
        assert_eq!(unescape_mount_field("/x\\09"), "/x\\09");
        assert_eq!(dev_major_minor((259 << 8) | 3), (259, 3));
    }

    #[test]
    fn write_log_sees_echo_form() {
        let w = SysfsWrite {
            path: Path::new("/sys/x/driver_override"),
            value: "",
        };
        assert_eq!(w.to_string(), "echo > /sys/x/driver_override");
        let w = SysfsWrite {
            path: Path::new("/sys/x/bind"),
            value: "0000:00:04.0",
        };
        assert_eq!(w.to_string(), "echo 0000:00:04.0 > /sys/x/bind");
    }
}
