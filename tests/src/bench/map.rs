//! `passthru bench map`: DMA map+unmap throughput and device open+setup time per IOMMU mode,
//! each measured through the library (`passthru-linux`) and through a raw-ioctl loop (direct
//! `libc::ioctl` with the same uAPI structs and the same calls, no library layers) in the same
//! run, interleaved in rounds (alternating which goes first) so drift affects both alike; each
//! side's figure is its best round (open+setup: its fastest open). The ratio library/raw is printed
//! for each row; the target is ≤ 1.05×.
//!
//! Sizes: 4 KiB (anonymous memory), 2 MiB and 1 GiB (hugetlb; a size whose hugepages are not
//! reserved is reported as SKIP with the fix). Map+unmap rates are pairs per second at one
//! fixed, size-aligned IOVA. Open+setup is `Iommu::open` + `VfioPciDevice::open` (container or
//! IOAS, group or cdev, bind/attach, device info, region info, BAR mmaps, IRQ info) versus the
//! same system calls issued by hand; teardown is not timed.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use iommufd_bindings as ifd;
use passthru_linux::bdf::Bdf;
use passthru_linux::memory::base_page_size;
use passthru_linux::sys::nr;
use passthru_linux::{Backing, DmaBuffer, Error, Iommu, IommuMode, VfioPciDevice};
use vfio_bindings::bindings::vfio as vb;

use crate::harness::{DeviceSource, KSFT_FAIL, KSFT_PASS, KSFT_SKIP};

/// The ratio (library time / raw time) the library should stay under.
pub const TARGET_RATIO: f64 = 1.05;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchMapOptions {
    /// The device (the first is used).
    pub bdfs: Vec<Bdf>,
    /// Modes to measure (default: all five, upstream order).
    pub modes: Vec<IommuMode>,
    /// Buffer sizes (default 4 KiB, 2 MiB, 1 GiB).
    pub sizes: Vec<u64>,
    /// Map+unmap pairs per size and side; `None` = a default per size (see
    /// [`default_iterations`]).
    pub iterations: Option<u32>,
    /// Device opens per mode and side.
    pub opens: u32,
    /// Rounds the iterations are split into, alternating library and raw.
    pub rounds: u32,
    /// Measure device open+setup (`--map-only` clears it).
    pub open: bool,
    /// Measure map+unmap (`--open-only` clears it).
    pub map: bool,
}

impl Default for BenchMapOptions {
    fn default() -> Self {
        Self {
            bdfs: Vec::new(),
            modes: IommuMode::ALL.to_vec(),
            sizes: vec![SIZE_4K, SIZE_2M, SIZE_1G],
            iterations: None,
            opens: 5,
            rounds: 10,
            open: true,
            map: true,
        }
    }
}

/// 4 KiB.
pub const SIZE_4K: u64 = 4 << 10;
/// 2 MiB.
pub const SIZE_2M: u64 = 2 << 20;
/// 1 GiB.
pub const SIZE_1G: u64 = 1 << 30;

/// Default map+unmap pairs for a size: a 1 GiB map pins 262144 pages (and in
/// `iommufd_compat_type1` writes as many PTEs), so big sizes get few iterations.
pub fn default_iterations(size: u64) -> u32 {
    match size {
        s if s >= SIZE_1G => 4,
        s if s >= SIZE_2M => 100,
        _ => 2000,
    }
}

/// The backing used for a size: hugetlb for 2 MiB and 1 GiB, anonymous otherwise.
pub fn backing_for(size: u64) -> Backing {
    match size {
        SIZE_1G => Backing::Hugetlb1G,
        SIZE_2M => Backing::Hugetlb2M,
        _ => Backing::Anonymous,
    }
}

/// Parses `4k`, `2m`, `1g` (any case) or a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let l = s.to_ascii_lowercase();
    let (num, mult) = match l.strip_suffix(['k', 'm', 'g']) {
        Some(n) => (
            n,
            match l.chars().last() {
                Some('k') => 1u64 << 10,
                Some('m') => 1 << 20,
                _ => 1 << 30,
            },
        ),
        None => (l.as_str(), 1),
    };
    let v: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    v.checked_mul(mult)
        .filter(|v| v.is_power_of_two())
        .ok_or_else(|| format!("size {s:?} must be a power of two"))
}

/// Usage text for `passthru bench map`.
pub const USAGE: &str = "\
passthru bench map [--mode NAME]... [--size 4k|2m|1g]... [--iterations N] [--opens N]
                   [--rounds N] [--open-only | --map-only] [BDF]
  Measures DMA map+unmap pairs/s and device open+setup time per IOMMU mode, through the
  library and through raw ioctls in the same run, and prints the ratio (target <= 1.05x).
  Each measurement is also printed as one machine-readable line:
    # bench-map: kind=map device=BDF mode=M size=4k lib=PAIRS/S raw=PAIRS/S ratio=X
    # bench-map: kind=open device=BDF mode=M lib_us=US raw_us=US ratio=X
    # bench-map: kind=skip device=BDF mode=M what=WHAT reason=TEXT...
  (ratio = library time / raw time; `what` uses `_` for spaces).
  The device comes from BDF, else $VFIO_SELFTESTS_BDF, else the pool $VFIO_SELFTESTS_BDFS;
  it must be bound to vfio-pci. Hugepage sizes need reserved hugepages.";

impl BenchMapOptions {
    /// Parses the arguments after `bench map` (BDFs may also come from `source`).
    pub fn parse(args: &[String], source: &DeviceSource) -> Result<Self, String> {
        let mut o = BenchMapOptions::default();
        let mut modes = Vec::new();
        let mut sizes = Vec::new();
        let mut cli_bdfs = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let number = |name: &str, v: String| -> Result<u32, String> {
                v.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{name}: {v:?} is not a positive number"))
            };
            match a.as_str() {
                "--mode" => {
                    let v = value(a)?;
                    modes.push(v.parse::<IommuMode>().map_err(|e| e.to_string())?);
                }
                "--size" => sizes.push(parse_size(&value(a)?)?),
                "--iterations" => o.iterations = Some(number(a, value(a)?)?),
                "--opens" => o.opens = number(a, value(a)?)?,
                "--rounds" => o.rounds = number(a, value(a)?)?,
                "--open-only" => o.map = false,
                "--map-only" => o.open = false,
                s if Bdf::looks_like_bdf(s) => {
                    cli_bdfs.push(Bdf::parse(s).map_err(|e| e.to_string())?)
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if !o.open && !o.map {
            return Err("--open-only and --map-only exclude each other".into());
        }
        if !modes.is_empty() {
            o.modes = modes;
        }
        if !sizes.is_empty() {
            o.sizes = sizes;
        }
        o.bdfs = source.candidates(&cli_bdfs).map_err(|e| e.to_string())?;
        Ok(o)
    }
}

/// One row of results.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// Map+unmap at a size: pairs per second, library and raw.
    Map {
        /// The mode.
        mode: IommuMode,
        /// The buffer size.
        size: u64,
        /// Library pairs/s.
        lib: f64,
        /// Raw pairs/s.
        raw: f64,
    },
    /// Device open+setup: fastest time, library and raw.
    Open {
        /// The mode.
        mode: IommuMode,
        /// Library, fastest open.
        lib: Duration,
        /// Raw, fastest open.
        raw: Duration,
    },
    /// Not measured, with the reason.
    Skip {
        /// The mode.
        mode: IommuMode,
        /// What was not measured.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Library time over raw time for rates (pairs/s): raw rate / library rate.
pub fn rate_ratio(lib: f64, raw: f64) -> f64 {
    if lib > 0.0 {
        raw / lib
    } else {
        f64::INFINITY
    }
}

fn size_name(size: u64) -> String {
    match size {
        s if s >= SIZE_1G && s % SIZE_1G == 0 => format!("{}G", s / SIZE_1G),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}M", s >> 20),
        s if s % 1024 == 0 => format!("{}K", s >> 10),
        s => format!("{s}B"),
    }
}

/// Lower-case size token of the machine-readable lines (`4k`, `2m`, `1g`, `512b`).
pub fn size_token(size: u64) -> String {
    size_name(size).to_ascii_lowercase()
}

/// Open+setup ratio: library time / raw time.
fn open_ratio(lib: Duration, raw: Duration) -> f64 {
    lib.as_secs_f64() / raw.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Prefix of the machine-readable lines (a KTAP diagnostic, so KTAP parsers ignore it).
pub const MACHINE_PREFIX: &str = "# bench-map:";

/// The machine-readable line of one measurement on device `bdf`: space-separated `key=value`
/// fields after [`MACHINE_PREFIX`], `kind` first. Values never hold spaces, except the `reason`
/// of a skip, which is always the last field and runs to the end of the line.
pub fn machine_line(bdf: Bdf, row: &Row) -> String {
    match row {
        Row::Map {
            mode,
            size,
            lib,
            raw,
        } => format!(
            "{MACHINE_PREFIX} kind=map device={bdf} mode={mode} size={} lib={lib:.1} raw={raw:.1} ratio={:.3}",
            size_token(*size),
            rate_ratio(*lib, *raw)
        ),
        Row::Open { mode, lib, raw } => format!(
            "{MACHINE_PREFIX} kind=open device={bdf} mode={mode} lib_us={:.1} raw_us={:.1} ratio={:.3}",
            lib.as_secs_f64() * 1e6,
            raw.as_secs_f64() * 1e6,
            open_ratio(*lib, *raw)
        ),
        Row::Skip { mode, what, reason } => format!(
            "{MACHINE_PREFIX} kind=skip device={bdf} mode={mode} what={} reason={}",
            what.replace(char::is_whitespace, "_"),
            reason.replace(['\r', '\n'], " ")
        ),
    }
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= TARGET_RATIO {
        "ok"
    } else {
        "over target"
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Map {
                mode,
                size,
                lib,
                raw,
            } => {
                let r = rate_ratio(*lib, *raw);
                write!(
                    f,
                    "{:<24} map+unmap {:>5}  lib {:>12.1} pairs/s  raw {:>12.1} pairs/s  ratio {r:.3}x {}",
                    mode.name(),
                    size_name(*size),
                    lib,
                    raw,
                    verdict(r)
                )
            }
            Row::Open { mode, lib, raw } => {
                let r = open_ratio(*lib, *raw);
                write!(
                    f,
                    "{:<24} open+setup       lib {:>12.3} ms       raw {:>12.3} ms       ratio {r:.3}x {}",
                    mode.name(),
                    lib.as_secs_f64() * 1e3,
                    raw.as_secs_f64() * 1e3,
                    verdict(r)
                )
            }
            Row::Skip { mode, what, reason } => {
                write!(f, "{:<24} {what}: SKIP {reason}", mode.name())
            }
        }
    }
}

/// Errors of the raw side.
#[derive(Debug)]
struct RawError {
    what: String,
    err: std::io::Error,
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raw {}: {}", self.what, self.err)
    }
}

fn raw_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RawError {
    let what = what.into();
    move |err| RawError { what, err }
}

/// The raw-ioctl side: the same system calls as the library, issued directly.
mod raw {
    use super::*;

    pub(super) fn open(path: &Path) -> std::io::Result<OwnedFd> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `c` is a NUL-terminated path; open has no other preconditions.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn check(ret: libc::c_int) -> std::io::Result<libc::c_int> {
        if ret < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// An ioctl whose argument is a plain value (no pointer).
    pub(super) fn ioctl_val(fd: RawFd, req: u64, arg: libc::c_ulong) -> std::io::Result<i32> {
        // SAFETY: requests used with this helper take an integer argument, not a pointer.
        check(unsafe { libc::ioctl(fd, req as _, arg) })
    }

    /// An ioctl whose argument points at `arg`.
    ///
    /// # Safety
    /// `T` must be the uAPI struct the request expects, and any pointers it embeds must be valid
    /// for the kernel to use.
    pub(super) unsafe fn ioctl_ptr<T>(fd: RawFd, req: u64, arg: *mut T) -> std::io::Result<i32> {
        // SAFETY: forwarded caller contract; `arg` points at a live `T`.
        check(unsafe { libc::ioctl(fd, req as _, arg) })
    }

    /// An open device and what holds it open (closed in reverse order of opening).
    pub(super) struct RawDevice {
        pub(super) maps: Vec<(usize, usize)>,
        pub(super) device: Option<OwnedFd>,
        pub(super) group: Option<OwnedFd>,
        pub(super) iommu: Option<OwnedFd>,
    }

    impl Drop for RawDevice {
        fn drop(&mut self) {
            for &(addr, len) in &self.maps {
                // SAFETY: these are BAR mappings made by `setup` and used by nobody else.
                unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            }
            self.device.take();
            self.group.take();
            self.iommu.take();
        }
    }

    fn bar_alignment(size: u64, page: u64) -> u64 {
        size.checked_next_power_of_two()
            .unwrap_or(SIZE_1G)
            .min(SIZE_1G)
            .max(page)
    }

    /// What the library does after it has a device fd: device info, config and BAR region
    /// info (re-asking when a region has capabilities), BAR mmaps at their alignment with
    /// MADV_HUGEPAGE, IRQ info for INTx/MSI/MSI-X.
    fn setup(dev: &mut RawDevice) -> Result<(), RawError> {
        let fd = dev.device.as_ref().map(AsRawFd::as_raw_fd).unwrap_or(-1);
        let mut info = vb::vfio_device_info {
            argsz: std::mem::size_of::<vb::vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: a vfio_device_info, no pointers.
        unsafe { ioctl_ptr(fd, nr::VFIO_DEVICE_GET_INFO, &mut info) }
            .map_err(raw_err("VFIO_DEVICE_GET_INFO"))?;
        let page = base_page_size();
        for index in [vb::VFIO_PCI_CONFIG_REGION_INDEX, 0, 1, 2, 3, 4, 5] {
            let base = std::mem::size_of::<vb::vfio_region_info>() as u32;
            let mut ri = vb::vfio_region_info {
                argsz: base,
                index,
                ..Default::default()
            };
            // SAFETY: a vfio_region_info of argsz bytes, no pointers.
            unsafe { ioctl_ptr(fd, nr::VFIO_DEVICE_GET_REGION_INFO, &mut ri) }
                .map_err(raw_err("VFIO_DEVICE_GET_REGION_INFO"))?;
            if ri.flags & vb::VFIO_REGION_INFO_FLAG_CAPS != 0 && ri.argsz > base {
                let mut buf = vec![0u64; (ri.argsz as usize).div_ceil(8)];
                let hdr = vb::vfio_region_info {
                    argsz: ri.argsz,
                    index,
                    ..Default::default()
                };
                // SAFETY: buf is 8-byte aligned and at least size_of::<vfio_region_info>().
                unsafe { std::ptr::write(buf.as_mut_ptr().cast::<vb::vfio_region_info>(), hdr) };
                // SAFETY: buf starts with a vfio_region_info whose argsz fits buf; no pointers.
                unsafe { ioctl_ptr(fd, nr::VFIO_DEVICE_GET_REGION_INFO, buf.as_mut_ptr()) }
                    .map_err(raw_err("VFIO_DEVICE_GET_REGION_INFO (caps)"))?;
            }
            let bar = index != vb::VFIO_PCI_CONFIG_REGION_INDEX;
            if bar && ri.size > 0 && ri.flags & vb::VFIO_REGION_INFO_FLAG_MMAP != 0 {
                let len = ri.size as usize;
                let align = bar_alignment(ri.size, page) as usize;
                // SAFETY: an anonymous PROT_NONE reservation at a kernel-chosen address.
                let base = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len + align,
                        libc::PROT_NONE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if base == libc::MAP_FAILED {
                    return Err(raw_err("mmap reserve")(std::io::Error::last_os_error()));
                }
                let b = base as usize;
                let start = (b + align - 1) & !(align - 1);
                let (head, tail) = (start - b, b + len + align - (start + len));
                // SAFETY: head and tail are unused parts of our own reservation.
                unsafe {
                    if head > 0 {
                        libc::munmap(base, head);
                    }
                    if tail > 0 {
                        libc::munmap((start + len) as *mut libc::c_void, tail);
                    }
                }
                let mut prot = 0;
                if ri.flags & vb::VFIO_REGION_INFO_FLAG_READ != 0 {
                    prot |= libc::PROT_READ;
                }
                if ri.flags & vb::VFIO_REGION_INFO_FLAG_WRITE != 0 {
                    prot |= libc::PROT_WRITE;
                }
                // SAFETY: MAP_FIXED over exactly our remaining reservation.
                let addr = unsafe {
                    libc::mmap(
                        start as *mut libc::c_void,
                        len,
                        prot,
                        libc::MAP_SHARED | libc::MAP_FIXED,
                        fd,
                        ri.offset as libc::off_t,
                    )
                };
                if addr == libc::MAP_FAILED {
                    let e = std::io::Error::last_os_error();
                    // SAFETY: the reservation is ours and unused.
                    unsafe { libc::munmap(start as *mut libc::c_void, len) };
                    return Err(raw_err("mmap BAR")(e));
                }
                // SAFETY: advice on our own mapping; failure is harmless.
                unsafe { libc::madvise(addr, len, libc::MADV_HUGEPAGE) };
                dev.maps.push((addr as usize, len));
            }
        }
        for index in [
            vb::VFIO_PCI_INTX_IRQ_INDEX,
            vb::VFIO_PCI_MSI_IRQ_INDEX,
            vb::VFIO_PCI_MSIX_IRQ_INDEX,
        ] {
            if index >= info.num_irqs {
                continue;
            }
            let mut irq = vb::vfio_irq_info {
                argsz: std::mem::size_of::<vb::vfio_irq_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: a vfio_irq_info, no pointers.
            unsafe { ioctl_ptr(fd, nr::VFIO_DEVICE_GET_IRQ_INFO, &mut irq) }
                .map_err(raw_err("VFIO_DEVICE_GET_IRQ_INFO"))?;
        }
        Ok(())
    }

    fn sysfs_dev(bdf: Bdf) -> std::path::PathBuf {
        Path::new("/sys/bus/pci/devices").join(bdf.to_string())
    }

    /// Opens `bdf` in `mode` with raw calls, like `Iommu::open` + `VfioPciDevice::open`.
    pub(super) fn open_device(bdf: Bdf, mode: IommuMode) -> Result<RawDevice, RawError> {
        let dir = sysfs_dev(bdf);
        // The library checks the binding first (a readlink).
        std::fs::read_link(dir.join("driver")).map_err(raw_err("readlink driver"))?;
        let mut dev = RawDevice {
            maps: Vec::new(),
            device: None,
            group: None,
            iommu: None,
        };
        match (mode.container_path(), mode.iommu_type()) {
            (Some(path), Some(ty)) => {
                let container = open(Path::new(path)).map_err(raw_err(path))?;
                let c = container.as_raw_fd();
                ioctl_val(c, nr::VFIO_GET_API_VERSION, 0)
                    .map_err(raw_err("VFIO_GET_API_VERSION"))?;
                dev.iommu = Some(container);
                let link = std::fs::read_link(dir.join("iommu_group"))
                    .map_err(raw_err("readlink iommu_group"))?;
                let n = link
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let group =
                    open(&Path::new("/dev/vfio").join(&n)).map_err(raw_err("open group"))?;
                let g = group.as_raw_fd();
                dev.group = Some(group);
                let mut st = vb::vfio_group_status {
                    argsz: std::mem::size_of::<vb::vfio_group_status>() as u32,
                    flags: 0,
                };
                // SAFETY: a vfio_group_status, no pointers.
                unsafe { ioctl_ptr(g, nr::VFIO_GROUP_GET_STATUS, &mut st) }
                    .map_err(raw_err("VFIO_GROUP_GET_STATUS"))?;
                let mut cfd: i32 = c;
                // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to the container fd.
                unsafe { ioctl_ptr(g, nr::VFIO_GROUP_SET_CONTAINER, &mut cfd) }
                    .map_err(raw_err("VFIO_GROUP_SET_CONTAINER"))?;
                ioctl_val(c, nr::VFIO_CHECK_EXTENSION, ty as libc::c_ulong)
                    .map_err(raw_err("VFIO_CHECK_EXTENSION"))?;
                ioctl_val(c, nr::VFIO_SET_IOMMU, ty as libc::c_ulong)
                    .map_err(raw_err("VFIO_SET_IOMMU"))?;
                let name = CString::new(bdf.to_string())
                    .map_err(|_| raw_err("BDF")(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
                // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a NUL-terminated device name.
                let fd =
                    unsafe { ioctl_ptr(g, nr::VFIO_GROUP_GET_DEVICE_FD, name.as_ptr().cast_mut()) }
                        .map_err(raw_err("VFIO_GROUP_GET_DEVICE_FD"))?;
                // SAFETY: the ioctl returned a new fd that we own.
                dev.device = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            _ => {
                let iommufd = open(Path::new("/dev/iommu")).map_err(raw_err("/dev/iommu"))?;
                let i = iommufd.as_raw_fd();
                dev.iommu = Some(iommufd);
                let mut alloc = ifd::iommu_ioas_alloc {
                    size: std::mem::size_of::<ifd::iommu_ioas_alloc>() as u32,
                    flags: 0,
                    out_ioas_id: 0,
                };
                // SAFETY: an iommu_ioas_alloc, no pointers.
                unsafe { ioctl_ptr(i, nr::IOMMU_IOAS_ALLOC, &mut alloc) }
                    .map_err(raw_err("IOMMU_IOAS_ALLOC"))?;
                let mut names: Vec<String> = std::fs::read_dir(dir.join("vfio-dev"))
                    .map_err(raw_err("read_dir vfio-dev"))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                let Some(cdev) = names.into_iter().find(|n| n.starts_with("vfio")) else {
                    return Err(raw_err("vfio-dev")(std::io::Error::from_raw_os_error(
                        libc::ENOENT,
                    )));
                };
                let device = open(&Path::new("/dev/vfio/devices").join(cdev))
                    .map_err(raw_err("open cdev"))?;
                let d = device.as_raw_fd();
                dev.device = Some(device);
                let mut bind = vb::vfio_device_bind_iommufd {
                    argsz: std::mem::size_of::<vb::vfio_device_bind_iommufd>() as u32,
                    iommufd: i,
                    ..Default::default()
                };
                // SAFETY: a vfio_device_bind_iommufd without a token pointer.
                unsafe { ioctl_ptr(d, nr::VFIO_DEVICE_BIND_IOMMUFD, &mut bind) }
                    .map_err(raw_err("VFIO_DEVICE_BIND_IOMMUFD"))?;
                let mut attach = vb::vfio_device_attach_iommufd_pt {
                    argsz: std::mem::size_of::<vb::vfio_device_attach_iommufd_pt>() as u32,
                    flags: 0,
                    pt_id: alloc.out_ioas_id,
                    pasid: 0,
                };
                // SAFETY: a vfio_device_attach_iommufd_pt, no pointers.
                unsafe { ioctl_ptr(d, nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach) }
                    .map_err(raw_err("VFIO_DEVICE_ATTACH_IOMMUFD_PT"))?;
            }
        }
        setup(&mut dev)?;
        Ok(dev)
    }

    /// `n` map+unmap pairs of `vaddr..+size` at `iova`, with the uAPI structs built once.
    pub(super) fn map_unmap_loop(
        iommu: &Iommu,
        vaddr: u64,
        iova: u64,
        size: u64,
        n: u32,
    ) -> Result<Duration, RawError> {
        let fd = iommu.fd();
        let t = Instant::now();
        match iommu.ioas_id() {
            None => {
                let mut map = vb::vfio_iommu_type1_dma_map {
                    argsz: std::mem::size_of::<vb::vfio_iommu_type1_dma_map>() as u32,
                    flags: vb::VFIO_DMA_MAP_FLAG_READ | vb::VFIO_DMA_MAP_FLAG_WRITE,
                    vaddr,
                    iova,
                    size,
                };
                for _ in 0..n {
                    let mut unmap = vb::vfio_iommu_type1_dma_unmap {
                        argsz: std::mem::size_of::<vb::vfio_iommu_type1_dma_unmap>() as u32,
                        flags: 0,
                        iova,
                        size,
                        ..Default::default()
                    };
                    // SAFETY: a vfio_iommu_type1_dma_map of a buffer the caller keeps alive.
                    unsafe { ioctl_ptr(fd, nr::VFIO_IOMMU_MAP_DMA, &mut map) }
                        .map_err(raw_err("VFIO_IOMMU_MAP_DMA"))?;
                    // SAFETY: an unmap without a dirty bitmap, so no pointers.
                    unsafe { ioctl_ptr(fd, nr::VFIO_IOMMU_UNMAP_DMA, &mut unmap) }
                        .map_err(raw_err("VFIO_IOMMU_UNMAP_DMA"))?;
                }
            }
            Some(ioas_id) => {
                let mut map = ifd::iommu_ioas_map {
                    size: std::mem::size_of::<ifd::iommu_ioas_map>() as u32,
                    flags: ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA
                        | ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
                        | ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id,
                    __reserved: 0,
                    user_va: vaddr,
                    length: size,
                    iova,
                };
                for _ in 0..n {
                    let mut unmap = ifd::iommu_ioas_unmap {
                        size: std::mem::size_of::<ifd::iommu_ioas_unmap>() as u32,
                        ioas_id,
                        iova,
                        length: size,
                    };
                    // SAFETY: an iommu_ioas_map of a buffer the caller keeps alive.
                    unsafe { ioctl_ptr(fd, nr::IOMMU_IOAS_MAP, &mut map) }
                        .map_err(raw_err("IOMMU_IOAS_MAP"))?;
                    // SAFETY: an iommu_ioas_unmap, no pointers.
                    unsafe { ioctl_ptr(fd, nr::IOMMU_IOAS_UNMAP, &mut unmap) }
                        .map_err(raw_err("IOMMU_IOAS_UNMAP"))?;
                }
            }
        }
        Ok(t.elapsed())
    }
}

/// Splits `n` into `rounds` near-equal parts (all parts sum to `n`).
pub fn split(n: u32, rounds: u32) -> Vec<u32> {
    let rounds = rounds.clamp(1, n.max(1));
    (0..rounds)
        .map(|i| n / rounds + u32::from(i < n % rounds))
        .collect()
}

/// A failure that ends the benchmark (as opposed to a SKIP row).
#[derive(Debug)]
struct Failed(String);

fn skip_or_fail(mode: IommuMode, what: &str, e: &Error) -> Result<Row, Failed> {
    if crate::programs::util::outcome(e) == crate::programs::util::Outcome::Skip {
        Ok(Row::Skip {
            mode,
            what: what.into(),
            reason: e.to_string(),
        })
    } else {
        Err(Failed(format!("{mode}: {what}: {e}")))
    }
}

fn time_lib_open(bdf: Bdf, mode: IommuMode) -> (Duration, Result<(), Error>) {
    let t = Instant::now();
    let r = Iommu::open(mode).and_then(|i| VfioPciDevice::open(bdf, &i));
    let d = t.elapsed();
    (d, r.map(drop))
}

fn time_raw_open(bdf: Bdf, mode: IommuMode) -> (Duration, Result<(), RawError>) {
    let t = Instant::now();
    let r = raw::open_device(bdf, mode);
    let d = t.elapsed();
    (d, r.map(drop))
}

/// Open+setup: the fastest of `opens` tries per side (the least disturbed), alternating which
/// side goes first.
fn bench_open(bdf: Bdf, mode: IommuMode, opts: &BenchMapOptions) -> Result<Row, Failed> {
    let mut lib = Duration::MAX;
    let mut raw_best = Duration::MAX;
    for i in 0..opts.opens {
        for lib_turn in [i % 2 == 0, i % 2 != 0] {
            if lib_turn {
                let (d, r) = time_lib_open(bdf, mode);
                if let Err(e) = r {
                    return skip_or_fail(mode, "open+setup", &e);
                }
                lib = lib.min(d);
            } else {
                let (d, r) = time_raw_open(bdf, mode);
                if let Err(e) = r {
                    return Err(Failed(format!("{mode}: open+setup: {e}")));
                }
                raw_best = raw_best.min(d);
            }
        }
    }
    Ok(Row::Open {
        mode,
        lib,
        raw: raw_best,
    })
}

/// The best (highest) rate among rounds: `pairs / time` per round.
pub fn best_rate(rounds: &[(u32, Duration)]) -> f64 {
    rounds
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, d)| f64::from(*n) / d.as_secs_f64().max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

fn bench_size(
    iommu: &Iommu,
    iova: u64,
    size: u64,
    mode: IommuMode,
    opts: &BenchMapOptions,
) -> Result<Row, Failed> {
    let what = format!("map+unmap {}", size_name(size));
    let buf = match DmaBuffer::new(backing_for(size), size) {
        Ok(b) => b,
        Err(e) => return skip_or_fail(mode, &what, &e),
    };
    let vaddr = buf.addr() as u64;
    let n = opts.iterations.unwrap_or_else(|| default_iterations(size));
    let mut lib_rounds = Vec::new();
    let mut raw_rounds = Vec::new();
    // Warm up both paths once (first-touch faults, page pinning caches).
    iommu
        .map_buffer(&buf, iova)
        .and_then(|_| iommu.unmap(iova, size))
        .map_err(|e| Failed(format!("{mode}: {what}: {e}")))?;
    raw::map_unmap_loop(iommu, vaddr, iova, size, 1)
        .map_err(|e| Failed(format!("{mode}: {what}: {e}")))?;
    // Rounds alternate which side goes first; each side's rate is its best round (the least
    // disturbed by the rest of the system).
    for (round, part) in split(n, opts.rounds).into_iter().enumerate() {
        for lib_turn in [round % 2 == 0, round % 2 != 0] {
            if lib_turn {
                let t = Instant::now();
                for _ in 0..part {
                    let r = iommu
                        .map_buffer(&buf, iova)
                        .and_then(|_| iommu.unmap(iova, size));
                    if let Err(e) = r {
                        return Err(Failed(format!("{mode}: {what}: {e}")));
                    }
                }
                lib_rounds.push((part, t.elapsed()));
            } else {
                let d = raw::map_unmap_loop(iommu, vaddr, iova, size, part)
                    .map_err(|e| Failed(format!("{mode}: {what}: {e}")))?;
                raw_rounds.push((part, d));
            }
        }
    }
    drop(buf);
    Ok(Row::Map {
        mode,
        size,
        lib: best_rate(&lib_rounds),
        raw: best_rate(&raw_rounds),
    })
}

fn bench_mode(bdf: Bdf, mode: IommuMode, opts: &BenchMapOptions) -> Result<Vec<Row>, Failed> {
    let mut rows = Vec::new();
    if opts.open {
        let row = bench_open(bdf, mode, opts)?;
        let skipped = matches!(row, Row::Skip { .. });
        rows.push(row);
        if skipped || !opts.map {
            return Ok(rows);
        }
    }
    let opened = Iommu::open(mode).and_then(|i| {
        let d = VfioPciDevice::open(bdf, &i)?;
        Ok((i, d))
    });
    let (iommu, _device) = match opened {
        Ok(x) => x,
        Err(e) => {
            rows.push(skip_or_fail(mode, "map+unmap", &e)?);
            return Ok(rows);
        }
    };
    let mut iovas = iommu
        .iova_allocator()
        .map_err(|e| Failed(format!("{mode}: IOVA ranges: {e}")))?;
    for &size in &opts.sizes {
        let iova = iovas
            .alloc(size)
            .map_err(|e| Failed(format!("{mode}: IOVA for {}: {e}", size_name(size))))?;
        rows.push(bench_size(&iommu, iova, size, mode, opts)?);
    }
    Ok(rows)
}

/// Runs the benchmark, printing one line per measurement on stdout; returns 0 if something was
/// measured, 4 if everything was skipped (or no device was given: usage on stderr), 1 on a
/// failure.
pub fn bench_map(opts: &BenchMapOptions) -> i32 {
    let Some(&bdf) = opts.bdfs.first() else {
        eprintln!("passthru bench map: no device given\n\n{USAGE}");
        return KSFT_SKIP;
    };
    let opens = if opts.open {
        format!("{} open(s) per mode and side (fastest kept)", opts.opens)
    } else {
        "no open+setup".to_string()
    };
    let rounds = if opts.map {
        format!("{} round(s) (best kept)", opts.rounds)
    } else {
        "no map+unmap".to_string()
    };
    println!("# bench map: device {bdf}, {opens}, {rounds}, target ratio <= {TARGET_RATIO}");
    let mut measured = 0;
    for &mode in &opts.modes {
        match bench_mode(bdf, mode, opts) {
            Ok(rows) => {
                for r in rows {
                    if !matches!(r, Row::Skip { .. }) {
                        measured += 1;
                    }
                    println!("{r}");
                    println!("{}", machine_line(bdf, &r));
                }
            }
            Err(Failed(m)) => {
                println!("# FAIL {m}");
                return KSFT_FAIL;
            }
        }
    }
    if measured > 0 {
        KSFT_PASS
    } else {
        KSFT_SKIP
    }
}

/// `passthru bench map ARGS...`: parses (devices from the arguments or the environment) and
/// runs [`bench_map`]. Bad arguments exit 1 with usage.
pub fn bench_map_main(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        return KSFT_SKIP;
    }
    match BenchMapOptions::parse(args, &DeviceSource::from_env()) {
        Ok(o) => bench_map(&o),
        Err(e) => {
            eprintln!("passthru bench map: {e} (usage: passthru bench map --help)");
            KSFT_FAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use passthru_linux::sysfs::Sysfs;

    fn src() -> DeviceSource {
        DeviceSource {
            env_bdf: None,
            env_pool: None,
            sysfs: Sysfs::new("/nonexistent"),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("3k").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(backing_for(SIZE_1G), Backing::Hugetlb1G);
        assert_eq!(backing_for(SIZE_2M), Backing::Hugetlb2M);
        assert_eq!(backing_for(SIZE_4K), Backing::Anonymous);
        assert_eq!(size_name(SIZE_4K), "4K");
        assert_eq!(size_name(SIZE_2M), "2M");
        assert_eq!(size_name(SIZE_1G), "1G");
    }

    #[test]
    fn options_parse() {
        let o = BenchMapOptions::parse(
            &s(&[
                "--mode",
                "iommufd",
                "--size",
                "2m",
                "--iterations",
                "10",
                "0000:00:04.0",
            ]),
            &src(),
        )
        .unwrap();
        assert_eq!(o.modes, vec![IommuMode::Iommufd]);
        assert_eq!(o.sizes, vec![SIZE_2M]);
        assert_eq!(o.iterations, Some(10));
        assert_eq!(o.bdfs.len(), 1);
        let d = BenchMapOptions::parse(&[], &src()).unwrap();
        assert_eq!(d.modes.len(), 5);
        assert_eq!(d.sizes, vec![SIZE_4K, SIZE_2M, SIZE_1G]);
        assert!(d.bdfs.is_empty());
        assert!(BenchMapOptions::parse(&s(&["--mode", "bogus"]), &src()).is_err());
        assert!(BenchMapOptions::parse(&s(&["--opens", "0"]), &src()).is_err());
    }

    #[test]
    fn no_device_is_exit_4() {
        assert_eq!(bench_map(&BenchMapOptions::default()), KSFT_SKIP);
    }

    #[test]
    fn rounds_split_evenly() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 5), vec![1, 1]);
        assert_eq!(split(0, 5), vec![0]);
        assert_eq!(split(2000, 5).iter().sum::<u32>(), 2000);
    }

    #[test]
    fn ratios_and_rows() {
        assert!((rate_ratio(1000.0, 1050.0) - 1.05).abs() < 1e-9);
        assert_eq!(verdict(1.04), "ok");
        assert_eq!(verdict(1.2), "over target");
        let r = Row::Map {
            mode: IommuMode::Iommufd,
            size: SIZE_4K,
            lib: 1000.0,
            raw: 1100.0,
        };
        let t = r.to_string();
        assert!(
            t.contains("iommufd") && t.contains("4K") && t.contains("1.100x over target"),
            "{t}"
        );
        let o = Row::Open {
            mode: IommuMode::VfioType1Iommu,
            lib: Duration::from_millis(2),
            raw: Duration::from_millis(2),
        };
        assert!(o.to_string().contains("1.000x ok"), "{o}");
    }

    #[test]
    fn machine_lines_carry_every_measurement() {
        let bdf = Bdf::parse("0000:00:03.0").unwrap();
        let m = Row::Map {
            mode: IommuMode::IommufdCompatType1v2,
            size: SIZE_2M,
            lib: 1000.0,
            raw: 1100.0,
        };
        assert_eq!(
            machine_line(bdf, &m),
            "# bench-map: kind=map device=0000:00:03.0 mode=iommufd_compat_type1v2 size=2m \
             lib=1000.0 raw=1100.0 ratio=1.100"
        );
        let o = Row::Open {
            mode: IommuMode::Iommufd,
            lib: Duration::from_micros(2500),
            raw: Duration::from_micros(2000),
        };
        assert_eq!(
            machine_line(bdf, &o),
            "# bench-map: kind=open device=0000:00:03.0 mode=iommufd lib_us=2500.0 \
             raw_us=2000.0 ratio=1.250"
        );
        let k = Row::Skip {
            mode: IommuMode::VfioType1Iommu,
            what: "map+unmap 1G".into(),
            reason: "no 1G hugepages\nreserved".into(),
        };
        assert_eq!(
            machine_line(bdf, &k),
            "# bench-map: kind=skip device=0000:00:03.0 mode=vfio_type1_iommu what=map+unmap_1G \
             reason=no 1G hugepages reserved"
        );
        assert_eq!(size_token(SIZE_1G), "1g");
        assert_eq!(size_token(SIZE_4K), "4k");
    }

    #[test]
    fn open_only_and_map_only() {
        let o = BenchMapOptions::parse(&s(&["--open-only"]), &src()).unwrap();
        assert!(o.open && !o.map);
        let o = BenchMapOptions::parse(&s(&["--map-only"]), &src()).unwrap();
        assert!(!o.open && o.map);
        let d = BenchMapOptions::parse(&[], &src()).unwrap();
        assert!(d.open && d.map);
        assert!(BenchMapOptions::parse(&s(&["--open-only", "--map-only"]), &src()).is_err());
    }

    #[test]
    fn best_rate_takes_the_fastest_round() {
        let ms = Duration::from_millis;
        let r = best_rate(&[(100, ms(100)), (100, ms(50)), (0, ms(1))]);
        assert!((r - 2000.0).abs() < 1e-6, "{r}");
        assert_eq!(best_rate(&[]), 0.0);
    }

    #[test]
    fn default_iterations_shrink_with_size() {
        assert!(default_iterations(SIZE_4K) > default_iterations(SIZE_2M));
        assert!(default_iterations(SIZE_2M) > default_iterations(SIZE_1G));
        assert!(default_iterations(SIZE_1G) >= 1);
    }
}
