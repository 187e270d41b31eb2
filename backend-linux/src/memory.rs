//! Memory for DMA: anonymous, hugetlb (2 MiB / 1 GiB) and memfd-backed buffers owning their
//! mmap, and [`DmaRegion`] views of them.

use std::ptr::NonNull;
use std::sync::Arc;

use passthru_core::mmio::DmaRegion;

use crate::error::{Error, Result};
use crate::region::Mmap;
use crate::sys::{Errno, MapKind, MmapRequest, Prot, RealSys, Sys, SysFd};

/// What backs a [`DmaBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backing {
    /// MAP_PRIVATE | MAP_ANONYMOUS (upstream's `anonymous` variant).
    Anonymous,
    /// MAP_SHARED | MAP_ANONYMOUS (upstream's driver-test regions).
    AnonymousShared,
    /// MAP_HUGETLB | MAP_HUGE_2MB (`anonymous_hugetlb_2mb`).
    Hugetlb2M,
    /// MAP_HUGETLB | MAP_HUGE_1GB (`anonymous_hugetlb_1gb`).
    Hugetlb1G,
    /// A memfd, MAP_SHARED (not upstream; the shmem variant reviewers asked for).
    Memfd,
}

impl Backing {
    /// All backings, in the order the mapping test enumerates them.
    pub const ALL: [Backing; 5] = [
        Backing::Anonymous,
        Backing::AnonymousShared,
        Backing::Hugetlb2M,
        Backing::Hugetlb1G,
        Backing::Memfd,
    ];

    /// The page size of this backing (the base page size for non-hugetlb ones).
    pub fn page_size(self) -> u64 {
        match self {
            Backing::Hugetlb2M => 2 << 20,
            Backing::Hugetlb1G => 1 << 30,
            _ => base_page_size(),
        }
    }

    /// A short name (`anonymous`, `anonymous_shared`, `anonymous_hugetlb_2mb`,
    /// `anonymous_hugetlb_1gb`, `memfd`).
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anonymous => "anonymous",
            Backing::AnonymousShared => "anonymous_shared",
            Backing::Hugetlb2M => "anonymous_hugetlb_2mb",
            Backing::Hugetlb1G => "anonymous_hugetlb_1gb",
            Backing::Memfd => "memfd",
        }
    }
}

/// The base page size (sysconf(_SC_PAGESIZE)).
pub fn base_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// A page-aligned buffer owning its mmap, for DMA.
///
/// Its memory is never exposed as Rust references: use [`DmaBuffer::region`] /
/// [`DmaBuffer::leak_region`] for volatile access.
#[derive(Debug)]
pub struct DmaBuffer {
    map: Mmap,
    backing: Backing,
    _memfd: Option<SysFd>,
}

impl DmaBuffer {
    /// Allocate `size` bytes (rounded up to the backing's page size; 0 means one page).
    pub fn new(backing: Backing, size: u64) -> Result<DmaBuffer> {
        Self::new_with(RealSys::shared(), backing, size)
    }

    /// Private anonymous memory.
    pub fn anonymous(size: u64) -> Result<DmaBuffer> {
        Self::new(Backing::Anonymous, size)
    }

    /// Shared anonymous memory.
    pub fn anonymous_shared(size: u64) -> Result<DmaBuffer> {
        Self::new(Backing::AnonymousShared, size)
    }

    /// 2 MiB hugetlb memory ([`Error::HugepagesUnavailable`] if none are reserved).
    pub fn hugetlb_2m(size: u64) -> Result<DmaBuffer> {
        Self::new(Backing::Hugetlb2M, size)
    }

    /// 1 GiB hugetlb memory ([`Error::HugepagesUnavailable`] if none are reserved).
    pub fn hugetlb_1g(size: u64) -> Result<DmaBuffer> {
        Self::new(Backing::Hugetlb1G, size)
    }

    /// memfd-backed shared memory.
    pub fn memfd(size: u64) -> Result<DmaBuffer> {
        Self::new(Backing::Memfd, size)
    }

    /// [`DmaBuffer::new`] with every page faulted in up front (MAP_POPULATE), for timing map
    /// costs without page-fault noise.
    pub fn new_populated(backing: Backing, size: u64) -> Result<DmaBuffer> {
        Self::create(RealSys::shared(), backing, size, true)
    }

    /// [`DmaBuffer::new`] through `sys`.
    pub fn new_with(sys: Arc<dyn Sys>, backing: Backing, size: u64) -> Result<DmaBuffer> {
        Self::create(sys, backing, size, false)
    }

    fn create(sys: Arc<dyn Sys>, backing: Backing, size: u64, populate: bool) -> Result<DmaBuffer> {
        let page = backing.page_size();
        let size = if size == 0 { page } else { size };
        let rounded = size
            .checked_add(page - 1)
            .map(|s| s & !(page - 1))
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| Error::InvalidArgument {
                who: "DmaBuffer".into(),
                reason: format!("size {size:#x} overflows"),
            })?;
        let mut memfd = None;
        let kind = match backing {
            Backing::Anonymous => MapKind::AnonymousPrivate,
            Backing::AnonymousShared => MapKind::AnonymousShared,
            Backing::Hugetlb2M => MapKind::Hugetlb2M,
            Backing::Hugetlb1G => MapKind::Hugetlb1G,
            Backing::Memfd => {
                let fd = SysFd::memfd(&sys, "passthru-dma")
                    .map_err(|e| Error::os("memfd", "memfd_create", e))?;
                sys.ftruncate(fd.raw(), rounded as u64)
                    .map_err(|e| Error::os("memfd", "ftruncate", e))?;
                let k = MapKind::Shared {
                    fd: fd.raw(),
                    offset: 0,
                };
                memfd = Some(fd);
                k
            }
        };
        // SAFETY: a fresh mapping chosen by the kernel (not MAP_FIXED).
        let addr = unsafe {
            sys.mmap(MmapRequest {
                fixed: None,
                len: rounded,
                prot: Prot::RW,
                kind,
                populate,
            })
        }
        .map_err(|errno| match (backing, errno) {
            (Backing::Hugetlb2M | Backing::Hugetlb1G, Errno::ENOMEM | Errno::EINVAL) => {
                Error::HugepagesUnavailable {
                    page_kib: page / 1024,
                    size: rounded as u64,
                    errno,
                }
            }
            _ => Error::os(backing.name(), "mmap", errno),
        })?;
        Ok(DmaBuffer {
            // SAFETY: the mapping was just created and belongs to this buffer alone.
            map: unsafe { Mmap::from_raw(sys, addr, rounded) },
            backing,
            _memfd: memfd,
        })
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.map.addr()
    }

    /// Start address as a pointer.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.addr() as *mut u8
    }

    /// Length in bytes (a multiple of the backing's page size).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The backing.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// A [`DmaRegion`] view of the whole buffer, as mapped at `iova`, borrowing the buffer.
    pub fn region(&self, iova: u64) -> DmaRegion<'_> {
        // SAFETY: the borrow keeps the buffer (and so its mapping) alive for the view's lifetime.
        unsafe { self.region_unbounded(iova) }
    }

    /// [`DmaBuffer::region`] for a caller-chosen lifetime, for holders that keep the buffer next
    /// to the driver using the region.
    ///
    /// # Safety
    /// The buffer must not be dropped during `'a`.
    pub unsafe fn region_unbounded<'a>(&self, iova: u64) -> DmaRegion<'a> {
        let ptr = NonNull::new(self.as_ptr()).unwrap_or(NonNull::dangling());
        // SAFETY: the buffer's memory is valid for volatile access while it lives and is never
        // referenced; the caller guarantees it lives for 'a.
        unsafe { DmaRegion::from_raw_parts(iova, ptr, self.len()) }
    }

    /// Leak the buffer and return a `'static` [`DmaRegion`] of it at `iova` (safe: the memory
    /// is never unmapped).
    pub fn leak_region(self, iova: u64) -> DmaRegion<'static> {
        // SAFETY: after `forget` nothing unmaps the memory, so the region stays valid forever.
        let r = unsafe { self.region_unbounded(iova) };
        std::mem::forget(self);
        r
    }
}
