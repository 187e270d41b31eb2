//! PCI functions as sysfs shows them: listing, identity, driver binding with persisted state,
//! IOMMU groups and SR-IOV.
//!
//! Every path is taken relative to a configurable sysfs root (default `/sys`) and procfs root
//! (default `/proc`), so the whole module runs against a fake tree in unit tests. Every write
//! goes through [`Sysfs::write`], which reports it to an optional log sink first (the CLI prints
//! each write, as upstream's scripts echo theirs).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bdf::Bdf;

/// The driver name of VFIO's PCI driver.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

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
    /// `cleanup` was asked to restore a device that has no saved state.
    #[error("{bdf}: no saved state under {dir} (was it set up with `passthru setup`?)")]
    NotSetUp {
        /// The device.
        bdf: Bdf,
        /// The state directory that was searched.
        dir: PathBuf,
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
}

impl fmt::Debug for Sysfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sysfs")
            .field("root", &self.root)
            .field("proc_root", &self.proc_root)
            .field("log", &self.log.is_some())
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

/// The final component of a symlink's target, if the link exists.
fn link_basename(path: &Path) -> Result<Option<String>, SysfsError> {
    match fs::read_link(path) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("readlink", path)(e)),
    }
}

impl Sysfs {
    /// Sysfs at `root` (normally `/sys`), procfs at `/proc`, no write log.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc_root: PathBuf::from("/proc"),
            log: None,
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
        self.pci_devices_dir().join(bdf.to_string())
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
        let dir = self.device_dir(bdf);
        if dir.exists() {
            Ok(dir)
        } else {
            Err(SysfsError::NoSuchDevice { bdf, path: dir })
        }
    }

    /// True if a PCI function with this address exists.
    pub fn exists(&self, bdf: Bdf) -> bool {
        self.device_dir(bdf).exists()
    }

    /// Every PCI function under the root, sorted by address. Entries whose names are not BDFs
    /// are ignored.
    pub fn list_bdfs(&self) -> Result<Vec<Bdf>, SysfsError> {
        let dir = self.pci_devices_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut bdfs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Ok(bdf) = Bdf::parse(&entry.file_name().to_string_lossy()) {
                bdfs.push(bdf);
            }
        }
        bdfs.sort();
        Ok(bdfs)
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
        link_basename(&self.existing_device_dir(bdf)?.join("driver"))
    }

    /// The `driver_override` value, or `None` if unset (the kernel shows `(null)`) or the file
    /// does not exist.
    pub fn driver_override(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        let value = read_optional(&self.existing_device_dir(bdf)?.join("driver_override"))?;
        Ok(value.filter(|v| !v.is_empty() && v != "(null)"))
    }

    /// The IOMMU group number (basename of the `iommu_group` link), or `None` without an IOMMU.
    pub fn iommu_group(&self, bdf: Bdf) -> Result<Option<u32>, SysfsError> {
        let link = self.existing_device_dir(bdf)?.join("iommu_group");
        match link_basename(&link)? {
            None => Ok(None),
            Some(name) => parse_dec(&link, &name, "a decimal IOMMU group number").map(Some),
        }
    }

    /// The functions in IOMMU group `group`, sorted (from `kernel/iommu_groups/<group>/devices`).
    pub fn iommu_group_members(&self, group: u32) -> Result<Vec<Bdf>, SysfsError> {
        let dir = self
            .root
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices");
        let mut members = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Ok(bdf) = Bdf::parse(&entry.file_name().to_string_lossy()) {
                members.push(bdf);
            }
        }
        members.sort();
        Ok(members)
    }

    /// The name of the VFIO cdev (`vfioN`) under `vfio-dev/`, if any.
    pub fn vfio_cdev(&self, bdf: Bdf) -> Result<Option<String>, SysfsError> {
        let dir = self.existing_device_dir(bdf)?.join("vfio-dev");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        for entry in entries {
            let name = entry
                .map_err(io_err("list", &dir))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.starts_with("vfio") {
                return Ok(Some(name));
            }
        }
        Ok(None)
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
        let name = link_basename(&link)?.ok_or_else(|| SysfsError::Sriov {
            bdf: pf,
            what: format!("no virtual function {index} ({} missing)", link.display()),
        })?;
        Bdf::parse(&name).map_err(|_| SysfsError::Parse {
            path: link,
            contents: name,
            expected: "a link to a PCI function",
        })
    }

    /// The addresses of every VF of `pf`, in `virtfnN` order.
    pub fn vf_bdfs(&self, pf: Bdf) -> Result<Vec<Bdf>, SysfsError> {
        let mut vfs = Vec::new();
        for index in 0.. {
            let link = self.device_dir(pf).join(format!("virtfn{index}"));
            if fs::symlink_metadata(&link).is_err() {
                break;
            }
            vfs.push(self.vf_bdf(pf, index)?);
        }
        Ok(vfs)
    }

    /// The physical function of a VF (the `physfn` link), or `None` for a non-VF.
    pub fn physfn(&self, vf: Bdf) -> Result<Option<Bdf>, SysfsError> {
        let link = self.existing_device_dir(vf)?.join("physfn");
        match link_basename(&link)? {
            None => Ok(None),
            Some(name) => Bdf::parse(&name).map(Some).map_err(|_| SysfsError::Parse {
                path: link,
                contents: name,
                expected: "a link to a PCI function",
            }),
        }
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
}

impl fmt::Display for DeviceUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MountedFilesystem { block, mount_point } => {
                write!(f, "block device {block} is mounted on {mount_point}")
            }
            Self::Swap { block } => write!(f, "block device {block} is active swap"),
            Self::NetworkUp { interface } => write!(f, "network interface {interface} is up"),
        }
    }
}
