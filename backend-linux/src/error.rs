//! Errors of the VFIO/IOMMUFD layer.
//!
//! Every message is one line that names the device (or file) and says how to fix the problem.
//! [`Error::is_environment`] tells an environment that lacks something (a kernel option,
//! hugepages, a device, a binding, a permission) from a kernel or device that misbehaved or an
//! invalid request; a test harness maps the first to SKIP and the rest to FAIL.

use std::path::PathBuf;

use crate::sys::Errno;

/// A failure of the VFIO/IOMMUFD layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BDF string is not `SSSS:BB:DD.F` (4+2+2+1 hex digits).
    #[error("invalid BDF {bdf:?}: expected segment:bus:device.function such as 0000:00:04.0")]
    InvalidBdf {
        /// The rejected string.
        bdf: String,
    },
    /// No such PCI device in sysfs.
    #[error("{bdf}: no such PCI device (/sys/bus/pci/devices/{bdf} is missing); check the BDF with lspci -D")]
    DeviceNotFound {
        /// The device.
        bdf: String,
    },
    /// The device is bound to another driver (or none).
    #[error("{bdf}: bound to {}, not vfio-pci; bind it first (echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/drivers_probe)", driver.as_deref().unwrap_or("no driver"))]
    NotBoundToVfio {
        /// The device.
        bdf: String,
        /// The current driver, if any.
        driver: Option<String>,
    },
    /// The device has no IOMMU group (no IOMMU enabled).
    #[error("{bdf}: no IOMMU group; enable the IOMMU (intel_iommu=on / amd_iommu=on, or -device intel-iommu in QEMU)")]
    NoIommuGroup {
        /// The device.
        bdf: String,
    },
    /// Another device of the IOMMU group is bound to a non-VFIO driver.
    #[error("{bdf}: IOMMU group {group} is not viable{}; bind every device of the group to vfio-pci (or unbind it)", match culprit { Some((d, drv)) => format!(" because {d} is bound to {}", drv.as_deref().unwrap_or("another driver")), None => String::new() })]
    GroupNotViable {
        /// The device.
        bdf: String,
        /// The group number.
        group: u32,
        /// The offending device and its driver, if found.
        culprit: Option<(String, Option<String>)>,
    },
    /// A device node is missing because the kernel lacks an option.
    #[error("{} is missing{}: build the kernel with {config}", path.display(), bdf.as_ref().map(|b| format!(" (needed by {b})")).unwrap_or_default())]
    NodeMissing {
        /// The missing node.
        path: PathBuf,
        /// The kernel option that provides it.
        config: &'static str,
        /// The device that needed it, if any.
        bdf: Option<String>,
    },
    /// The kernel refused access (EPERM/EACCES).
    #[error("{what}: permission denied ({errno}); run as root or give your user ownership of {}", path.display())]
    PermissionDenied {
        /// What was being opened or done.
        what: String,
        /// The file involved.
        path: PathBuf,
        /// EPERM or EACCES.
        errno: Errno,
    },
    /// No hugepages of the requested size are reserved.
    #[error("no free {page_kib} KiB hugepages for a {size:#x}-byte buffer ({errno}); reserve some in /sys/kernel/mm/hugepages/hugepages-{page_kib}kB/nr_hugepages")]
    HugepagesUnavailable {
        /// Hugepage size in KiB (2048 or 1048576).
        page_kib: u64,
        /// Requested buffer size.
        size: u64,
        /// The mmap error.
        errno: Errno,
    },
    /// A BAR cannot be mapped.
    #[error("{bdf}: BAR{bar} is not mmap-able ({reason}); use config/region reads or a device whose BAR supports mmap")]
    BarNotMappable {
        /// The device.
        bdf: String,
        /// BAR index.
        bar: u8,
        /// Why.
        reason: String,
    },
    /// An IOMMU mode name is not one of the five upstream names.
    #[error("unknown IOMMU mode {name:?}; valid modes: vfio_type1_iommu, vfio_type1v2_iommu, iommufd_compat_type1, iommufd_compat_type1v2, iommufd")]
    UnknownIommuMode {
        /// The rejected name.
        name: String,
    },
    /// VFIO_GET_API_VERSION returned an unexpected version.
    #[error("{}: VFIO API version {got}, expected 0; this kernel's VFIO uAPI is not supported", path.display())]
    ApiVersion {
        /// The container path.
        path: PathBuf,
        /// The version reported.
        got: i32,
    },
    /// The container does not support the requested IOMMU type.
    #[error("{}: VFIO_CHECK_EXTENSION says IOMMU type {iommu_type} is unsupported for {bdf}; enable CONFIG_VFIO_IOMMU_TYPE1 (or CONFIG_IOMMUFD for /dev/iommu)", path.display())]
    ExtensionUnsupported {
        /// The device.
        bdf: String,
        /// The container path.
        path: PathBuf,
        /// VFIO_TYPE1_IOMMU (1) or VFIO_TYPE1v2_IOMMU (3).
        iommu_type: u32,
    },
    /// An ioctl (or other system call) failed.
    #[error("{who}: {op} failed: {errno} ({})", errno.desc())]
    Os {
        /// The device BDF or file the call was made for.
        who: String,
        /// The operation, e.g. "VFIO_IOMMU_MAP_DMA".
        op: &'static str,
        /// The error number.
        errno: Errno,
    },
    /// A pread/pwrite transferred fewer bytes than asked.
    #[error("{bdf}: {op} at {offset:#x} transferred {done} of {want} bytes")]
    ShortTransfer {
        /// The device.
        bdf: String,
        /// "config read" or "config write".
        op: &'static str,
        /// Offset within the region.
        offset: u64,
        /// Bytes transferred.
        done: usize,
        /// Bytes asked.
        want: usize,
    },
    /// An argument was rejected before any system call.
    #[error("{who}: invalid argument: {reason}")]
    InvalidArgument {
        /// The device or object.
        who: String,
        /// What is wrong.
        reason: String,
    },
    /// The kernel returned malformed data (capability chain loop, bad ranges).
    #[error("{who}: malformed {what} from the kernel: {reason}")]
    Malformed {
        /// The device or file.
        who: String,
        /// Which structure.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The IOVA allocator has no room left.
    #[error("IOVA space exhausted: no free {size:#x}-byte block aligned to its size in the usable ranges; free mappings or use smaller buffers")]
    IovaExhausted {
        /// The requested size.
        size: u64,
    },
    /// No tracked mapping contains the host address.
    #[error(
        "host address {vaddr:#x} is not inside any DMA mapping of this IOMMU; map the buffer first"
    )]
    NotMapped {
        /// The host virtual address.
        vaddr: u64,
    },
    /// Waiting for an interrupt timed out.
    #[error("{bdf}: no {kind} interrupt on vector {vector} within {timeout_ms} ms; check that the device raised it (COMMAND.INTx disable / MSI-X enable / mask bits)")]
    IrqTimeout {
        /// The device.
        bdf: String,
        /// "INTx", "MSI" or "MSI-X".
        kind: &'static str,
        /// The vector.
        vector: u32,
        /// How long we waited.
        timeout_ms: u64,
    },
    /// The device does not support what was asked (reset, an IRQ kind, a vector count).
    #[error("{bdf}: {what} is not supported by this device or kernel; use a device and kernel that provide it")]
    Unsupported {
        /// The device.
        bdf: String,
        /// What is missing.
        what: String,
    },
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True if the environment lacks a prerequisite (a device, a binding, an IOMMU group, a
    /// device node, a permission, hugepages, a kernel feature); false if the kernel or device
    /// misbehaved or the request was invalid.
    pub fn is_environment(&self) -> bool {
        match self {
            Error::DeviceNotFound { .. }
            | Error::NotBoundToVfio { .. }
            | Error::NoIommuGroup { .. }
            | Error::GroupNotViable { .. }
            | Error::NodeMissing { .. }
            | Error::PermissionDenied { .. }
            | Error::HugepagesUnavailable { .. }
            | Error::BarNotMappable { .. }
            | Error::ExtensionUnsupported { .. }
            | Error::Unsupported { .. } => true,
            Error::InvalidBdf { .. }
            | Error::UnknownIommuMode { .. }
            | Error::ApiVersion { .. }
            | Error::Os { .. }
            | Error::ShortTransfer { .. }
            | Error::InvalidArgument { .. }
            | Error::Malformed { .. }
            | Error::IovaExhausted { .. }
            | Error::NotMapped { .. }
            | Error::IrqTimeout { .. } => false,
        }
    }

    /// The errno behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Os { errno, .. }
            | Error::PermissionDenied { errno, .. }
            | Error::HugepagesUnavailable { errno, .. } => Some(*errno),
            Error::NotMapped { .. } => Some(Errno::ENOENT),
            _ => None,
        }
    }

    /// Build an [`Error::Os`] for a failed system call other than an open. (EPERM/EACCES from
    /// an ioctl is the kernel refusing an operation, e.g. a VF-token mismatch, not missing
    /// privileges, so it stays a failure; opens go through [`Error::open_node`].)
    pub(crate) fn os(who: impl Into<String>, op: &'static str, errno: Errno) -> Error {
        Error::Os {
            who: who.into(),
            op,
            errno,
        }
    }

    /// Error for a failed open of a device node: missing node → [`Error::NodeMissing`] naming
    /// `config`, EPERM/EACCES → [`Error::PermissionDenied`], else [`Error::Os`].
    pub(crate) fn open_node(
        path: &std::path::Path,
        config: &'static str,
        bdf: Option<&str>,
        errno: Errno,
    ) -> Error {
        match errno {
            Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => Error::NodeMissing {
                path: path.to_path_buf(),
                config,
                bdf: bdf.map(str::to_string),
            },
            Errno::EPERM | Errno::EACCES => Error::PermissionDenied {
                what: match bdf {
                    Some(b) => format!("{b}: open {}", path.display()),
                    None => format!("open {}", path.display()),
                },
                path: path.to_path_buf(),
                errno,
            },
            _ => Error::Os {
                who: path.display().to_string(),
                op: "open",
                errno,
            },
        }
    }
}

impl From<Error> for passthru_core::mmio::FunctionError {
    fn from(e: Error) -> Self {
        passthru_core::mmio::FunctionError::Os {
            op: match &e {
                Error::Os { op, .. } => op,
                _ => "vfio",
            },
            errno: e.errno().map(|e| e as i32).unwrap_or(libc::EIO),
        }
    }
}
