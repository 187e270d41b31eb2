//! The narrow system-call seam.
//!
//! Every system call the VFIO/IOMMUFD layer makes (open, close, ioctl, mmap, munmap, madvise,
//! pread, pwrite, read, write, poll, eventfd, memfd, ftruncate, readlink, read_dir) goes through
//! the [`Sys`] trait. [`RealSys`] calls the kernel; the unit tests use a scripted double that
//! injects errnos, so every error path is exercised without `/dev/vfio`.
//!
//! File descriptors cross the seam as plain numbers ([`RawFd`]) and are owned by [`SysFd`], which
//! closes them through the same `Sys` when dropped. Ownership follows `std`'s `OwnedFd` rules:
//! a `SysFd` is made safely only from an fd its `Sys` just created ([`SysFd::open`],
//! [`SysFd::eventfd`], [`SysFd::memfd`]); adopting any other number is `unsafe`
//! ([`SysFd::from_raw`]), and so is [`Sys::close`]. Safe code therefore cannot close an fd it
//! does not own.
//!
//! ioctl arguments cross the seam as byte buffers ([`IoctlArg::Buf`]): the argument structure
//! serialised in native layout. Struct-to-bytes conversion is done by [`Plain`] helpers, which are
//! bounds-checked and alignment-agnostic (unaligned reads/writes), so parsing kernel-filled
//! capability chains never reads out of bounds.

use std::ffi::CString;
use std::fmt;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use nix::errno::Errno;

/// The argument of an ioctl.
#[derive(Debug)]
pub enum IoctlArg<'a> {
    /// No argument (the third ioctl parameter is 0).
    None,
    /// An integer passed by value (e.g. a container fd or an IOMMU type).
    Value(u64),
    /// A pointer to this buffer, holding the argument structure in native layout.
    Buf(&'a mut [u8]),
}

/// Memory protection for [`Sys::mmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prot {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
}

impl Prot {
    /// No access (address-space reservation).
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
    };
    /// Read and write.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
    };
    fn bits(self) -> i32 {
        let mut p = libc::PROT_NONE;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        p
    }
}

/// What a mapping is backed by, for [`Sys::mmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// Private anonymous memory.
    AnonymousPrivate,
    /// Shared anonymous memory.
    AnonymousShared,
    /// Private anonymous memory from the 2 MiB hugetlb pool.
    Hugetlb2M,
    /// Private anonymous memory from the 1 GiB hugetlb pool.
    Hugetlb1G,
    /// A shared mapping of a file descriptor at an offset (device regions, memfds).
    Shared {
        /// The file descriptor.
        fd: RawFd,
        /// Offset into the file.
        offset: u64,
    },
}

/// One mmap request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapRequest {
    /// `Some(addr)`: map exactly there (MAP_FIXED). `None`: the kernel chooses.
    pub fixed: Option<usize>,
    /// Length in bytes.
    pub len: usize,
    /// Protection.
    pub prot: Prot,
    /// Backing.
    pub kind: MapKind,
    /// Pre-fault the pages (MAP_POPULATE).
    pub populate: bool,
}

/// The system calls used by this crate. See the module documentation.
///
/// # Safety
/// Implementations must return from [`Sys::open`], [`Sys::eventfd`] and [`Sys::memfd_create`]
/// only descriptors that are new and owned by the caller (nothing else uses or closes them), and
/// [`Sys::close`] must close exactly the descriptor it is given. [`SysFd`]'s safe constructors
/// rely on this.
pub unsafe trait Sys: Send + Sync + fmt::Debug {
    /// open(2) with `O_RDWR | O_CLOEXEC` (plus `O_NONBLOCK` if asked). The caller owns the
    /// returned fd; prefer [`SysFd::open`], which takes that ownership.
    fn open(&self, path: &Path, nonblock: bool) -> Result<RawFd, Errno>;
    /// close(2).
    ///
    /// # Safety
    /// The caller must own `fd` and must not use it (or let anything else use it) afterwards,
    /// as for `std::os::fd::OwnedFd`'s drop.
    unsafe fn close(&self, fd: RawFd);
    /// ioctl(2). Returns the kernel's non-negative return value.
    ///
    /// # Safety
    /// `arg` must be the argument the kernel expects for `request` on `fd`. Any user addresses
    /// the argument structure embeds (DMA vaddr, token pointers, range arrays) must be valid for
    /// the access the kernel makes through them: for a DMA map, for device reads and writes for
    /// as long as the mapping exists.
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno>;
    /// mmap(2); returns the mapping address.
    ///
    /// # Safety
    /// With `fixed`, the target range must be a reservation owned by the caller (it is replaced).
    unsafe fn mmap(&self, req: MmapRequest) -> Result<usize, Errno>;
    /// munmap(2).
    ///
    /// # Safety
    /// `addr..addr+len` must be a mapping owned by the caller that nothing uses afterwards.
    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno>;
    /// madvise(2) with MADV_HUGEPAGE.
    fn madvise_hugepage(&self, addr: usize, len: usize) -> Result<(), Errno>;
    /// pread(2); returns the byte count.
    fn pread(&self, fd: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno>;
    /// pwrite(2); returns the byte count.
    fn pwrite(&self, fd: RawFd, buf: &[u8], offset: u64) -> Result<usize, Errno>;
    /// read(2); returns the byte count.
    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno>;
    /// write(2); returns the byte count.
    fn write(&self, fd: RawFd, buf: &[u8]) -> Result<usize, Errno>;
    /// poll(2) for POLLIN on one fd; true if readable within `timeout_ms` (-1: forever).
    fn poll_readable(&self, fd: RawFd, timeout_ms: i32) -> Result<bool, Errno>;
    /// eventfd(2) with initial value 0 and EFD_CLOEXEC (blocking reads).
    fn eventfd(&self) -> Result<RawFd, Errno>;
    /// memfd_create(2) with MFD_CLOEXEC.
    fn memfd_create(&self, name: &str) -> Result<RawFd, Errno>;
    /// ftruncate(2).
    fn ftruncate(&self, fd: RawFd, len: u64) -> Result<(), Errno>;
    /// readlink(2).
    fn readlink(&self, path: &Path) -> Result<PathBuf, Errno>;
    /// The entry names of a directory (without `.` and `..`), in no particular order.
    fn read_dir(&self, path: &Path) -> Result<Vec<String>, Errno>;
    /// Whether a path exists (stat succeeds).
    fn exists(&self, path: &Path) -> bool;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl RealSys {
    /// A shared handle to the real kernel, the default for every constructor.
    pub fn shared() -> Arc<dyn Sys> {
        Arc::new(RealSys)
    }
}

fn cpath(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn check(ret: libc::c_int) -> Result<i32, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

// SAFETY: open, eventfd and memfd_create return the kernel's new descriptors unchanged, and
// close closes exactly its argument.
unsafe impl Sys for RealSys {
    fn open(&self, path: &Path, nonblock: bool) -> Result<RawFd, Errno> {
        let c = cpath(path)?;
        let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
        if nonblock {
            flags |= libc::O_NONBLOCK;
        }
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::open(c.as_ptr(), flags) })
    }

    unsafe fn close(&self, fd: RawFd) {
        // SAFETY: the caller owns `fd` and never uses it again (this function's contract).
        unsafe { libc::close(fd) };
    }

    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        let ret = match arg {
            // SAFETY: the caller guarantees `request` takes no argument.
            IoctlArg::None => unsafe { libc::ioctl(fd, request as _, 0usize) },
            // SAFETY: the caller guarantees `request` takes an integer argument.
            IoctlArg::Value(v) => unsafe { libc::ioctl(fd, request as _, v as usize) },
            // SAFETY: the buffer is valid for its whole length; the caller guarantees it holds
            // the structure `request` expects and that embedded addresses are valid.
            IoctlArg::Buf(b) => unsafe { libc::ioctl(fd, request as _, b.as_mut_ptr()) },
        };
        check(ret)
    }

    unsafe fn mmap(&self, req: MmapRequest) -> Result<usize, Errno> {
        let mut flags = match req.kind {
            MapKind::AnonymousPrivate => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            MapKind::AnonymousShared => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            MapKind::Hugetlb2M => {
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB
            }
            MapKind::Hugetlb1G => {
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_1GB
            }
            MapKind::Shared { .. } => libc::MAP_SHARED,
        };
        if req.fixed.is_some() {
            flags |= libc::MAP_FIXED;
        }
        if req.populate {
            flags |= libc::MAP_POPULATE;
        }
        let (fd, off) = match req.kind {
            MapKind::Shared { fd, offset } => (fd, offset as libc::off_t),
            _ => (-1, 0),
        };
        let addr = req.fixed.unwrap_or(0) as *mut libc::c_void;
        // SAFETY: the caller guarantees that a fixed target is its own reservation; otherwise
        // the kernel picks fresh address space.
        let p = unsafe { libc::mmap(addr, req.len, req.prot.bits(), flags, fd, off) };
        if p == libc::MAP_FAILED {
            Err(Errno::last())
        } else {
            Ok(p as usize)
        }
    }

    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: the caller owns the mapping and no longer uses it.
        check(unsafe { libc::munmap(addr as *mut libc::c_void, len) }).map(|_| ())
    }

    fn madvise_hugepage(&self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: MADV_HUGEPAGE only changes the kernel's page-size policy for the range; it
        // does not change contents or validity of the memory.
        check(unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) })
            .map(|_| ())
    }

    fn pread(&self, fd: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for writes of its length.
        check_size(unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        })
    }

    fn pwrite(&self, fd: RawFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for reads of its length.
        check_size(unsafe {
            libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as libc::off_t)
        })
    }

    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for writes of its length.
        check_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    }

    fn write(&self, fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for reads of its length.
        check_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
    }

    fn poll_readable(&self, fd: RawFd, timeout_ms: i32) -> Result<bool, Errno> {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `p` is one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
            if r < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(e);
            }
            return Ok(r > 0 && (p.revents & libc::POLLIN) != 0);
        }
    }

    fn eventfd(&self) -> Result<RawFd, Errno> {
        // SAFETY: plain syscall without pointers.
        check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
    }

    fn memfd_create(&self, name: &str) -> Result<RawFd, Errno> {
        let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        check(unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) })
    }

    fn ftruncate(&self, fd: RawFd, len: u64) -> Result<(), Errno> {
        // SAFETY: plain syscall without pointers.
        check(unsafe { libc::ftruncate(fd, len as libc::off_t) }).map(|_| ())
    }

    fn readlink(&self, path: &Path) -> Result<PathBuf, Errno> {
        std::fs::read_link(path).map_err(io_errno)
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<String>, Errno> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path).map_err(io_errno)? {
            let e = e.map_err(io_errno)?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A file descriptor owned through a [`Sys`]; closed on drop.
///
/// Like `std::os::fd::OwnedFd`, it cannot be made from a bare number in safe code:
///
/// ```compile_fail,E0133
/// use passthru_linux::sys::{RealSys, SysFd};
/// // Would close stdin on drop: adopting a raw fd needs `unsafe`.
/// let _stdin = SysFd::from_raw(RealSys::shared(), 0);
/// ```
///
/// and its `Sys` can close a descriptor only in `unsafe` code:
///
/// ```compile_fail,E0133
/// use passthru_linux::sys::{RealSys, Sys};
/// RealSys.close(0);
/// ```
pub struct SysFd {
    sys: Arc<dyn Sys>,
    fd: RawFd,
}

impl fmt::Debug for SysFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SysFd({})", self.fd)
    }
}

impl SysFd {
    /// Take ownership of `fd` (it will be closed through `sys`).
    ///
    /// # Safety
    /// `fd` must be an open descriptor owned by the caller, which gives that ownership up: nothing
    /// else may close it or use it after this `SysFd` is dropped (as for
    /// `std::os::fd::FromRawFd::from_raw_fd`); and `sys` must be the seam it belongs to.
    pub unsafe fn from_raw(sys: Arc<dyn Sys>, fd: RawFd) -> Self {
        Self { sys, fd }
    }

    /// open(2) `path` through `sys` (see [`Sys::open`]) and own the new fd.
    pub fn open(sys: &Arc<dyn Sys>, path: &Path, nonblock: bool) -> Result<Self, Errno> {
        let fd = sys.open(path, nonblock)?;
        // SAFETY: a `Sys` returns only new descriptors owned by the caller (trait contract).
        Ok(unsafe { Self::from_raw(Arc::clone(sys), fd) })
    }

    /// A new eventfd (see [`Sys::eventfd`]), owned.
    pub fn eventfd(sys: &Arc<dyn Sys>) -> Result<Self, Errno> {
        let fd = sys.eventfd()?;
        // SAFETY: as in `open`.
        Ok(unsafe { Self::from_raw(Arc::clone(sys), fd) })
    }

    /// A new memfd (see [`Sys::memfd_create`]), owned.
    pub fn memfd(sys: &Arc<dyn Sys>, name: &str) -> Result<Self, Errno> {
        let fd = sys.memfd_create(name)?;
        // SAFETY: as in `open`.
        Ok(unsafe { Self::from_raw(Arc::clone(sys), fd) })
    }
    /// The descriptor number.
    pub fn raw(&self) -> RawFd {
        self.fd
    }
    /// The system-call seam this fd belongs to.
    pub fn sys(&self) -> &Arc<dyn Sys> {
        &self.sys
    }
}

impl Drop for SysFd {
    fn drop(&mut self) {
        // SAFETY: this SysFd owns the fd (constructor contracts) and is the last use of it.
        unsafe { self.sys.close(self.fd) };
    }
}

/// uAPI structures that may be copied to and from byte buffers, checked by `zerocopy`.
///
/// The bindings' structures cannot derive `zerocopy`'s traits (they are foreign types), so each
/// implementation names a local mirror, [`Plain::Bytes`], with the same fields in the same order,
/// deriving `IntoBytes` and `FromBytes` — which refuse to compile for a structure with padding or
/// with a field that is not plain data. Compile-time assertions check that the binding and its
/// mirror have the same size, alignment and field offsets, and the conversion into the binding
/// is an exhaustive struct expression (a field left out does not compile), so the binding is
/// exactly as plain as its mirror. Conversion is field by field: no `unsafe`.
///
/// A mirror with padding is refused at compile time:
///
/// ```compile_fail
/// #[repr(C)]
/// #[derive(zerocopy::IntoBytes, zerocopy::Immutable)]
/// struct Padded {
///     a: u8,
///     b: u32, // three padding bytes before it
/// }
/// ```
pub trait Plain: Default {
    /// The `zerocopy`-checked mirror (for integers, the integer itself).
    type Bytes: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable;
    /// The mirror of `self`.
    fn to_mirror(&self) -> Self::Bytes;
    /// The value of a mirror.
    fn from_mirror(m: Self::Bytes) -> Self;
}

macro_rules! plain_int {
    ($($t:ty),* $(,)?) => { $(
        impl Plain for $t {
            type Bytes = $t;
            fn to_mirror(&self) -> $t {
                *self
            }
            fn from_mirror(m: $t) -> $t {
                m
            }
        }
    )* };
}

plain_int!(u8, i32, u16, u32, u64);

/// `plain!(path::to::binding as Mirror { field: type, ... } $(+ flexible_array_field)?)`: a
/// `zerocopy` mirror of `binding` and its [`Plain`] implementation (see the trait docs). A
/// trailing `+ field` names a zero-sized flexible-array member, which the mirror leaves out.
macro_rules! plain {
    ($($b:ty as $m:ident { $($f:ident : $t:ty),* $(,)? } $(+ $flex:ident)?;)*) => { $(
        #[doc = concat!("`zerocopy` mirror of `", stringify!($b), "` (see [`Plain`]).")]
        #[repr(C)]
        #[derive(
            Debug, Clone, Copy, Default, zerocopy::FromBytes, zerocopy::IntoBytes,
            zerocopy::Immutable, zerocopy::KnownLayout,
        )]
        #[allow(missing_docs)]
        pub struct $m {
            $(pub $f: $t,)*
        }
        const _: () = {
            assert!(std::mem::size_of::<$b>() == std::mem::size_of::<$m>());
            assert!(std::mem::align_of::<$b>() == std::mem::align_of::<$m>());
            $(assert!(std::mem::offset_of!($b, $f) == std::mem::offset_of!($m, $f));)*
            $(assert!(std::mem::offset_of!($b, $flex) == std::mem::size_of::<$m>());)?
        };
        impl Plain for $b {
            type Bytes = $m;
            fn to_mirror(&self) -> $m {
                $m { $($f: self.$f,)* }
            }
            fn from_mirror(m: $m) -> Self {
                // Exhaustive: a binding field missing from the list fails to compile.
                Self { $($f: m.$f,)* $($flex: Default::default(),)? }
            }
        }
    )* };
}

use iommufd_bindings as ifd;
use vfio_bindings::bindings::vfio as vb;

/// `zerocopy` mirrors of the uAPI structures this crate passes to ioctls.
pub mod mirror {
    use super::{ifd, vb, Plain};

    plain! {
        vb::vfio_info_cap_header as VfioInfoCapHeader { id: u16, version: u16, next: u32 };
        vb::vfio_group_status as VfioGroupStatus { argsz: u32, flags: u32 };
        vb::vfio_device_info as VfioDeviceInfo {
            argsz: u32, flags: u32, num_regions: u32, num_irqs: u32, cap_offset: u32, pad: u32
        };
        vb::vfio_region_info as VfioRegionInfo {
            argsz: u32, flags: u32, index: u32, cap_offset: u32, size: u64, offset: u64
        };
        vb::vfio_region_sparse_mmap_area as VfioRegionSparseMmapArea { offset: u64, size: u64 };
        vb::vfio_irq_info as VfioIrqInfo { argsz: u32, flags: u32, index: u32, count: u32 };
        vb::vfio_irq_set as VfioIrqSet {
            argsz: u32, flags: u32, index: u32, start: u32, count: u32
        } + data;
        vb::vfio_device_feature as VfioDeviceFeature { argsz: u32, flags: u32 } + data;
        vb::vfio_device_attach_iommufd_pt as VfioDeviceAttachIommufdPt {
            argsz: u32, flags: u32, pt_id: u32, pasid: u32
        };
        vb::vfio_device_detach_iommufd_pt as VfioDeviceDetachIommufdPt {
            argsz: u32, flags: u32, pasid: u32
        };
        vb::vfio_device_bind_iommufd as VfioDeviceBindIommufd {
            argsz: u32, flags: u32, iommufd: i32, out_devid: u32, token_uuid_ptr: u64
        };
        vb::vfio_iommu_type1_info as VfioIommuType1Info {
            argsz: u32, flags: u32, iova_pgsizes: u64, cap_offset: u32, pad: u32
        };
        vb::vfio_iova_range as VfioIovaRange { start: u64, end: u64 };
        vb::vfio_iommu_type1_dma_map as VfioIommuType1DmaMap {
            argsz: u32, flags: u32, vaddr: u64, iova: u64, size: u64
        };
        vb::vfio_iommu_type1_dma_unmap as VfioIommuType1DmaUnmap {
            argsz: u32, flags: u32, iova: u64, size: u64
        } + data;
        ifd::iommu_ioas_alloc as IommuIoasAlloc { size: u32, flags: u32, out_ioas_id: u32 };
        ifd::iommu_ioas_iova_ranges as IommuIoasIovaRanges {
            size: u32, ioas_id: u32, num_iovas: u32, __reserved: u32, allowed_iovas: u64,
            out_iova_alignment: u64
        };
        ifd::iommu_iova_range as IommuIovaRange { start: u64, last: u64 };
        ifd::iommu_ioas_map as IommuIoasMap {
            size: u32, flags: u32, ioas_id: u32, __reserved: u32, user_va: u64, length: u64,
            iova: u64
        };
        ifd::iommu_ioas_unmap as IommuIoasUnmap { size: u32, ioas_id: u32, iova: u64, length: u64 };
        ifd::iommu_destroy as IommuDestroy { size: u32, id: u32 };
    }
}

/// Read a `T` at byte `offset` of `buf`, or `None` if it does not fit.
pub fn read_plain<T: Plain>(buf: &[u8], offset: usize) -> Option<T> {
    let bytes = buf.get(offset..)?;
    let (m, _) = <T::Bytes as zerocopy::FromBytes>::read_from_prefix(bytes).ok()?;
    Some(T::from_mirror(m))
}

/// Write `value` at byte `offset` of `buf`; false if it does not fit.
pub fn write_plain<T: Plain>(buf: &mut [u8], offset: usize, value: &T) -> bool {
    let Some(bytes) = buf.get_mut(offset..) else {
        return false;
    };
    zerocopy::IntoBytes::write_to_prefix(&value.to_mirror(), bytes).is_ok()
}

/// The bytes of a `Plain` value.
pub fn to_bytes<T: Plain>(value: &T) -> Vec<u8> {
    zerocopy::IntoBytes::as_bytes(&value.to_mirror()).to_vec()
}

/// A flexible-array uAPI structure (`vfio_irq_set`, `vfio_device_feature`,
/// `vfio_iommu_type1_dma_unmap`): `header` (its `argsz` set by the caller) followed by `data`.
pub fn with_data<T: Plain>(header: &T, data: &[u8]) -> Vec<u8> {
    let mut v = to_bytes(header);
    v.extend_from_slice(data);
    v
}

/// Run `f` with `value` serialised into a buffer, then decode the (possibly kernel-updated)
/// buffer back into `value`.
///
/// # Safety
/// As for [`Sys::ioctl`]: `request` must take a `T` and embedded addresses must be valid.
pub unsafe fn ioctl_plain<T: Plain>(
    sys: &dyn Sys,
    fd: RawFd,
    request: u64,
    value: &mut T,
) -> Result<i32, Errno> {
    // The uAPI structures passed this way are small: serialise them on the stack (the open path
    // makes a dozen such calls and is benchmarked against raw ioctls); larger ones use the heap.
    let size = std::mem::size_of::<T>();
    let mut stack = [0u8; 128];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if size <= stack.len() {
        &mut stack[..size]
    } else {
        heap.resize(size, 0);
        &mut heap
    };
    write_plain(buf, 0, value);
    // SAFETY: forwarded caller contract; `buf` holds a `T`.
    let r = unsafe { sys.ioctl(fd, request, IoctlArg::Buf(&mut *buf)) };
    if let Some(v) = read_plain::<T>(buf, 0) {
        *value = v;
    }
    r
}

/// One capability found in a VFIO info capability chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRef {
    /// Capability id.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Byte offset of the capability header in the info buffer.
    pub offset: usize,
}

/// Walk a VFIO capability chain in `buf` starting at `first` (0 = empty chain).
///
/// Offsets are relative to the start of the buffer; each must lie at or after `min_offset` (the
/// fixed part of the info structure) with its 8-byte header inside the buffer. The walk stops at
/// `next == 0` and fails on a cycle or an out-of-range offset: the number of steps is bounded by
/// the number of 8-byte slots in the buffer, so a malicious or corrupt chain cannot loop forever.
pub fn cap_chain(buf: &[u8], first: u32, min_offset: usize) -> Result<Vec<CapRef>, String> {
    let mut out = Vec::new();
    let mut off = first as usize;
    let bound = buf.len() / 8 + 1;
    while off != 0 {
        if out.len() >= bound {
            return Err(format!(
                "capability chain longer than {bound} entries (cycle?)"
            ));
        }
        if off < min_offset {
            return Err(format!(
                "capability offset {off:#x} points into the fixed header"
            ));
        }
        let hdr: vb::vfio_info_cap_header = read_plain(buf, off).ok_or_else(|| {
            format!(
                "capability offset {off:#x} beyond buffer of {:#x}",
                buf.len()
            )
        })?;
        if out.iter().any(|c: &CapRef| c.offset == off) {
            return Err(format!("capability chain revisits offset {off:#x}"));
        }
        out.push(CapRef {
            id: hdr.id,
            version: hdr.version,
            offset: off,
        });
        off = hdr.next as usize;
    }
    Ok(out)
}

/// ioctl request numbers, built the way the uapi headers build them: `_IO(';', n)`, i.e.
/// direction 0 and size 0, so the number is `(';' << 8) | n`.
///
/// VFIO numbers are `VFIO_BASE (100) + k` (include/uapi/linux/vfio.h); IOMMUFD numbers are
/// `IOMMUFD_CMD_BASE (0x80) + k` (include/uapi/linux/iommufd.h). Both use type `';'` (0x3b).
pub mod nr {
    /// `_IO(type, nr)`: no direction bits, no size bits.
    pub const fn io(ty: u8, nr: u32) -> u64 {
        ((ty as u64) << 8) | (nr as u64)
    }
    /// VFIO_TYPE, `';'`.
    pub const VFIO_TYPE: u8 = b';';
    /// VFIO_BASE.
    pub const VFIO_BASE: u32 = 100;
    const fn vfio(n: u32) -> u64 {
        io(VFIO_TYPE, VFIO_BASE + n)
    }
    /// VFIO_GET_API_VERSION, base + 0.
    pub const VFIO_GET_API_VERSION: u64 = vfio(0);
    /// VFIO_CHECK_EXTENSION, base + 1.
    pub const VFIO_CHECK_EXTENSION: u64 = vfio(1);
    /// VFIO_SET_IOMMU, base + 2.
    pub const VFIO_SET_IOMMU: u64 = vfio(2);
    /// VFIO_GROUP_GET_STATUS, base + 3.
    pub const VFIO_GROUP_GET_STATUS: u64 = vfio(3);
    /// VFIO_GROUP_SET_CONTAINER, base + 4.
    pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio(4);
    /// VFIO_GROUP_UNSET_CONTAINER, base + 5.
    pub const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio(5);
    /// VFIO_GROUP_GET_DEVICE_FD, base + 6.
    pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio(6);
    /// VFIO_DEVICE_GET_INFO, base + 7.
    pub const VFIO_DEVICE_GET_INFO: u64 = vfio(7);
    /// VFIO_DEVICE_GET_REGION_INFO, base + 8.
    pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio(8);
    /// VFIO_DEVICE_GET_IRQ_INFO, base + 9.
    pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio(9);
    /// VFIO_DEVICE_SET_IRQS, base + 10.
    pub const VFIO_DEVICE_SET_IRQS: u64 = vfio(10);
    /// VFIO_DEVICE_RESET, base + 11.
    pub const VFIO_DEVICE_RESET: u64 = vfio(11);
    /// VFIO_IOMMU_GET_INFO, base + 12 (container fd; shares the number with
    /// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on device fds).
    pub const VFIO_IOMMU_GET_INFO: u64 = vfio(12);
    /// VFIO_IOMMU_MAP_DMA, base + 13.
    pub const VFIO_IOMMU_MAP_DMA: u64 = vfio(13);
    /// VFIO_IOMMU_UNMAP_DMA, base + 14.
    pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio(14);
    /// VFIO_DEVICE_FEATURE, base + 17.
    pub const VFIO_DEVICE_FEATURE: u64 = vfio(17);
    /// VFIO_DEVICE_BIND_IOMMUFD, base + 18.
    pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio(18);
    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT, base + 19.
    pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = vfio(19);
    /// VFIO_DEVICE_DETACH_IOMMUFD_PT, base + 20.
    pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = vfio(20);

    /// IOMMUFD_TYPE, `';'`.
    pub const IOMMUFD_TYPE: u8 = b';';
    /// IOMMUFD_CMD_BASE.
    pub const IOMMUFD_CMD_BASE: u32 = 0x80;
    const fn iommufd(n: u32) -> u64 {
        io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + n)
    }
    /// IOMMU_DESTROY, 0x80.
    pub const IOMMU_DESTROY: u64 = iommufd(0);
    /// IOMMU_IOAS_ALLOC, 0x81.
    pub const IOMMU_IOAS_ALLOC: u64 = iommufd(1);
    /// IOMMU_IOAS_IOVA_RANGES, 0x84.
    pub const IOMMU_IOAS_IOVA_RANGES: u64 = iommufd(4);
    /// IOMMU_IOAS_MAP, 0x85.
    pub const IOMMU_IOAS_MAP: u64 = iommufd(5);
    /// IOMMU_IOAS_UNMAP, 0x86.
    pub const IOMMU_IOAS_UNMAP: u64 = iommufd(6);
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommufd_bindings as ifd;

    #[test]
    fn ioctl_numbers_match_uapi_values() {
        // Absolute values as the uapi macros expand them (';' = 0x3b, VFIO_BASE = 100 = 0x64).
        assert_eq!(nr::VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(nr::VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(nr::VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(nr::VFIO_GROUP_GET_STATUS, 0x3b67);
        assert_eq!(nr::VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(nr::VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(nr::VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(nr::VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(nr::VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
        assert_eq!(nr::VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(nr::VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(nr::VFIO_IOMMU_GET_INFO, 0x3b70);
        assert_eq!(nr::VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(nr::VFIO_IOMMU_UNMAP_DMA, 0x3b72);
        assert_eq!(nr::VFIO_DEVICE_FEATURE, 0x3b75);
        assert_eq!(nr::VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
        assert_eq!(nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
        assert_eq!(nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);
        assert_eq!(nr::IOMMU_DESTROY, 0x3b80);
        assert_eq!(nr::IOMMU_IOAS_ALLOC, 0x3b81);
        assert_eq!(nr::IOMMU_IOAS_IOVA_RANGES, 0x3b84);
        assert_eq!(nr::IOMMU_IOAS_MAP, 0x3b85);
        assert_eq!(nr::IOMMU_IOAS_UNMAP, 0x3b86);
    }

    #[test]
    fn ioctl_numbers_agree_with_bindings_constants() {
        assert_eq!(nr::VFIO_TYPE, vb::VFIO_TYPE);
        assert_eq!(nr::VFIO_BASE, vb::VFIO_BASE);
        assert_eq!(nr::IOMMUFD_TYPE, ifd::IOMMUFD_TYPE);
        assert_eq!(
            nr::IOMMU_IOAS_ALLOC & 0xff,
            ifd::IOMMUFD_CMD_IOAS_ALLOC as u64
        );
        assert_eq!(
            nr::IOMMU_IOAS_IOVA_RANGES & 0xff,
            ifd::IOMMUFD_CMD_IOAS_IOVA_RANGES as u64
        );
        assert_eq!(nr::IOMMU_IOAS_MAP & 0xff, ifd::IOMMUFD_CMD_IOAS_MAP as u64);
        assert_eq!(
            nr::IOMMU_IOAS_UNMAP & 0xff,
            ifd::IOMMUFD_CMD_IOAS_UNMAP as u64
        );
        assert_eq!(nr::IOMMU_DESTROY & 0xff, ifd::IOMMUFD_CMD_DESTROY as u64);
    }

    #[test]
    fn struct_sizes_match_uapi() {
        use std::mem::size_of;
        assert_eq!(size_of::<vb::vfio_group_status>(), 8);
        assert_eq!(size_of::<vb::vfio_device_info>(), 24);
        assert_eq!(size_of::<vb::vfio_region_info>(), 32);
        assert_eq!(size_of::<vb::vfio_irq_info>(), 16);
        assert_eq!(size_of::<vb::vfio_irq_set>(), 20);
        assert_eq!(size_of::<vb::vfio_iommu_type1_info>(), 24);
        assert_eq!(size_of::<vb::vfio_iommu_type1_dma_map>(), 32);
        assert_eq!(size_of::<vb::vfio_iommu_type1_dma_unmap>(), 24);
        assert_eq!(size_of::<vb::vfio_device_bind_iommufd>(), 24);
        assert_eq!(size_of::<vb::vfio_device_attach_iommufd_pt>(), 16);
        assert_eq!(size_of::<vb::vfio_device_feature>(), 8);
        assert_eq!(size_of::<ifd::iommu_ioas_alloc>(), 12);
        assert_eq!(size_of::<ifd::iommu_ioas_iova_ranges>(), 32);
        assert_eq!(size_of::<ifd::iommu_ioas_map>(), 40);
        assert_eq!(size_of::<ifd::iommu_ioas_unmap>(), 24);
    }

    #[test]
    fn plain_round_trip_and_bounds() {
        let mut buf = vec![0u8; 10];
        assert!(write_plain(&mut buf, 2, &0x1122_3344u32));
        assert_eq!(read_plain::<u32>(&buf, 2), Some(0x1122_3344));
        assert_eq!(read_plain::<u64>(&buf, 3), None);
        assert!(!write_plain(&mut buf, 7, &0u32));
        assert_eq!(read_plain::<u32>(&buf, usize::MAX), None);
    }

    #[test]
    fn flexible_structures_are_built_from_the_bindings() {
        let irq = vb::vfio_irq_set {
            argsz: 20 + 8,
            flags: vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            index: 2,
            start: 1,
            count: 2,
            ..Default::default()
        };
        let b = with_data(&irq, &[7, 0, 0, 0, 9, 0, 0, 0]);
        let words: Vec<u32> = b
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words, [28, 0x24, 2, 1, 2, 7, 9]);
        let back: vb::vfio_irq_set = read_plain(&b, 0).unwrap();
        assert_eq!((back.index, back.start, back.count), (2, 1, 2));

        let unmap = vb::vfio_iommu_type1_dma_unmap {
            argsz: 24,
            flags: 0,
            iova: 0x1000,
            size: 0x2000,
            ..Default::default()
        };
        let b = to_bytes(&unmap);
        assert_eq!(b.len(), 24);
        assert_eq!(read_plain::<u64>(&b, 16), Some(0x2000), "size at offset 16");

        let feat = vb::vfio_device_feature {
            argsz: 24,
            flags: vb::VFIO_DEVICE_FEATURE_SET | vb::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
            ..Default::default()
        };
        let b = with_data(&feat, &[0xab; 16]);
        assert_eq!(b.len(), 24);
        assert_eq!(read_plain::<u32>(&b, 0), Some(24));
        assert_eq!(&b[8..], &[0xab; 16]);
        assert!(!write_plain(&mut [0u8; 7], 0, &feat), "does not fit");
    }

    fn hdr(buf: &mut [u8], off: usize, id: u16, next: u32) {
        let h = vb::vfio_info_cap_header {
            id,
            version: 1,
            next,
        };
        assert!(write_plain(buf, off, &h));
    }

    #[test]
    fn cap_chain_walks_and_bounds() {
        let mut buf = vec![0u8; 64];
        hdr(&mut buf, 24, 1, 40);
        hdr(&mut buf, 40, 3, 0);
        let caps = cap_chain(&buf, 24, 24).unwrap();
        assert_eq!(
            caps.iter().map(|c| (c.id, c.offset)).collect::<Vec<_>>(),
            vec![(1, 24), (3, 40)]
        );
        assert!(cap_chain(&buf, 0, 24).unwrap().is_empty());
        // Cycle.
        hdr(&mut buf, 40, 3, 24);
        assert!(cap_chain(&buf, 24, 24).unwrap_err().contains("revisits"));
        // Out of range and into the header.
        assert!(cap_chain(&buf, 60, 24).is_err());
        assert!(cap_chain(&buf, 8, 24).is_err());
    }
}
