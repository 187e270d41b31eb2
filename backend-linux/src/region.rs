//! Device regions: VFIO_DEVICE_GET_REGION_INFO with its capability chain (sparse mmap areas,
//! MSI-X mappable, region type) and BAR mmaps aligned to min(size, 1 GiB) with MADV_HUGEPAGE.

use std::os::fd::RawFd;
use std::sync::Arc;

use vfio_bindings::bindings::vfio as vb;

use crate::sys::{
    cap_chain, ioctl_plain, nr, read_plain, write_plain, Errno, IoctlArg, MapKind, MmapRequest,
    Prot, Sys,
};

/// One mmap-able area of a region with the sparse-mmap capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset within the region.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// What VFIO_DEVICE_GET_REGION_INFO says about one region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionInfo {
    /// Region index (BARs 0–5, ROM 6, config 7, VGA 8, then device specific).
    pub index: u32,
    /// VFIO_REGION_INFO_FLAG_* bits.
    pub flags: u32,
    /// Size in bytes (0 = unimplemented).
    pub size: u64,
    /// Offset of the region within the device fd.
    pub offset: u64,
    /// Sparse mmap areas, if the capability is present.
    pub sparse_areas: Option<Vec<SparseArea>>,
    /// The MSI-X table/PBA within this BAR may be mmapped (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE).
    pub msix_mappable: bool,
    /// (type, subtype) from VFIO_REGION_INFO_CAP_TYPE.
    pub region_type: Option<(u32, u32)>,
}

impl RegionInfo {
    /// Readable through pread / mmap.
    pub fn readable(&self) -> bool {
        self.flags & vb::VFIO_REGION_INFO_FLAG_READ != 0
    }
    /// Writable through pwrite / mmap.
    pub fn writable(&self) -> bool {
        self.flags & vb::VFIO_REGION_INFO_FLAG_WRITE != 0
    }
    /// mmap-able.
    pub fn mmappable(&self) -> bool {
        self.flags & vb::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// Upper bound on a region-info buffer the kernel may ask for (64 KiB).
const MAX_REGION_INFO: u32 = 1 << 16;

/// VFIO_DEVICE_GET_REGION_INFO for `index`, re-asking with the kernel's argsz when it has
/// capabilities, and decoding the capability chain.
pub fn get_region_info(sys: &dyn Sys, fd: RawFd, index: u32) -> Result<RegionInfo, Errno> {
    let base = std::mem::size_of::<vb::vfio_region_info>() as u32;
    let mut ri = vb::vfio_region_info {
        argsz: base,
        index,
        ..Default::default()
    };
    // SAFETY: a vfio_region_info of argsz bytes; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_GET_REGION_INFO, &mut ri) }?;
    let mut buf = Vec::new();
    if ri.flags & vb::VFIO_REGION_INFO_FLAG_CAPS != 0 && ri.argsz > base {
        let want = ri.argsz.min(MAX_REGION_INFO);
        buf = vec![0u8; want as usize];
        let hdr = vb::vfio_region_info {
            argsz: want,
            index,
            ..Default::default()
        };
        write_plain(&mut buf, 0, &hdr);
        // SAFETY: `buf` starts with a vfio_region_info whose argsz is buf.len(); no pointers.
        unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_GET_REGION_INFO, IoctlArg::Buf(&mut buf)) }?;
        if let Some(r) = read_plain::<vb::vfio_region_info>(&buf, 0) {
            ri = r;
        }
    }
    let mut info = RegionInfo {
        index,
        flags: ri.flags,
        size: ri.size,
        offset: ri.offset,
        ..Default::default()
    };
    if ri.flags & vb::VFIO_REGION_INFO_FLAG_CAPS != 0 && ri.cap_offset != 0 && !buf.is_empty() {
        parse_region_caps(&buf, ri.cap_offset, &mut info).map_err(|_| Errno::EPROTO)?;
    }
    Ok(info)
}

/// Decode the region capability chain in `buf` into `info`.
pub fn parse_region_caps(buf: &[u8], first: u32, info: &mut RegionInfo) -> Result<(), String> {
    let base = std::mem::size_of::<vb::vfio_region_info>();
    for cap in cap_chain(buf, first, base)? {
        match cap.id as u32 {
            vb::VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let n: u32 = read_plain(buf, cap.offset + 8)
                    .ok_or_else(|| "sparse mmap cap truncated".to_string())?;
                let mut areas = Vec::new();
                for i in 0..n as usize {
                    let a: vb::vfio_region_sparse_mmap_area =
                        read_plain(buf, cap.offset + 16 + i * 16)
                            .ok_or_else(|| format!("sparse area {i} of {n} beyond the buffer"))?;
                    areas.push(SparseArea {
                        offset: a.offset,
                        size: a.size,
                    });
                }
                info.sparse_areas = Some(areas);
            }
            vb::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => info.msix_mappable = true,
            vb::VFIO_REGION_INFO_CAP_TYPE => {
                let t: u32 = read_plain(buf, cap.offset + 8).ok_or("type cap truncated")?;
                let s: u32 = read_plain(buf, cap.offset + 12).ok_or("type cap truncated")?;
                info.region_type = Some((t, s));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An mmap owned by this crate; unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    sys: Arc<dyn Sys>,
    addr: usize,
    len: usize,
}

impl Mmap {
    /// Take ownership of a mapping.
    ///
    /// # Safety
    /// `addr..addr+len` must be a mapping that nothing else unmaps.
    pub unsafe fn from_raw(sys: Arc<dyn Sys>, addr: usize, len: usize) -> Self {
        Self { sys, addr, len }
    }
    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if zero-length (never, for mappings this crate makes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping (contract of from_raw / the constructors below) and it is
        // not used after drop.
        let _ = unsafe { self.sys.munmap(self.addr, self.len) };
    }
}

/// One gibibyte, the cap on BAR mapping alignment.
pub const GIB: u64 = 1 << 30;

/// Reserve `size` bytes (rounded up to whole pages) of PROT_NONE address space at an address
/// `a` with `a % align == skew` (upstream's `mmap_reserve`): over-reserve by `align`, then trim
/// the head and the tail. `align` must be a power of two, `skew < align` and page-aligned.
pub fn reserve_aligned(
    sys: &Arc<dyn Sys>,
    size: usize,
    align: usize,
    skew: usize,
) -> Result<Mmap, Errno> {
    if size == 0 || !align.is_power_of_two() || skew >= align {
        return Err(Errno::EINVAL);
    }
    // Work in whole pages: munmap of the trimmed tail needs a page-aligned address.
    let page = crate::memory::base_page_size() as usize;
    let size = size
        .checked_next_multiple_of(page)
        .ok_or(Errno::EOVERFLOW)?;
    if !skew.is_multiple_of(page) {
        return Err(Errno::EINVAL);
    }
    let total = size.checked_add(align).ok_or(Errno::EOVERFLOW)?;
    // SAFETY: a fresh PROT_NONE anonymous reservation, not MAP_FIXED.
    let base = unsafe {
        sys.mmap(MmapRequest {
            fixed: None,
            len: total,
            prot: Prot::NONE,
            kind: MapKind::AnonymousPrivate,
            populate: false,
        })
    }?;
    let mut start = (base + align - 1) & !(align - 1);
    start += skew;
    if start + size > base + total {
        start -= align;
    }
    let head = start - base;
    let tail = base + total - (start + size);
    if head > 0 {
        // SAFETY: the head is part of our own reservation and unused.
        unsafe { sys.munmap(base, head) }?;
    }
    if tail > 0 {
        // SAFETY: the tail is part of our own reservation and unused.
        unsafe { sys.munmap(start + size, tail) }?;
    }
    // SAFETY: start..start+size is what remains of our reservation.
    Ok(unsafe { Mmap::from_raw(sys.clone(), start, size) })
}

/// The alignment upstream (7.0+) uses for a BAR mapping: min(size rounded up to a power of two,
/// 1 GiB), at least one page.
pub fn bar_alignment(size: u64, page: u64) -> u64 {
    size.checked_next_power_of_two()
        .unwrap_or(GIB)
        .min(GIB)
        .max(page)
}

/// mmap region `info` of device `fd`, shared, at an address `a` with `a % align == skew`
/// (`align = bar_alignment(size)` and `skew = 0` for the normal case), with MADV_HUGEPAGE.
pub fn mmap_region(
    sys: &Arc<dyn Sys>,
    fd: RawFd,
    info: &RegionInfo,
    align: u64,
    skew: u64,
) -> Result<Mmap, Errno> {
    if info.size == 0 || !info.mmappable() {
        return Err(Errno::EINVAL);
    }
    let size = usize::try_from(info.size).map_err(|_| Errno::EOVERFLOW)?;
    let resv = reserve_aligned(sys, size, align as usize, skew as usize)?;
    // A sub-page BAR is mapped as one whole page (vfio-pci reserves the rest of the page).
    let size = resv.len();
    let prot = Prot {
        read: info.readable(),
        write: info.writable(),
    };
    // SAFETY: the fixed target is exactly our reservation `resv`, which is replaced.
    let addr = unsafe {
        sys.mmap(MmapRequest {
            fixed: Some(resv.addr()),
            len: size,
            prot,
            kind: MapKind::Shared {
                fd,
                offset: info.offset,
            },
            populate: false,
        })
    }?;
    // The reservation's ownership passes to the device mapping at the same address.
    std::mem::forget(resv);
    // SAFETY: `addr..addr+size` is the device mapping just made, owned by nobody else.
    let m = unsafe { Mmap::from_raw(sys.clone(), addr, size) };
    // Huge mappings are an optimisation (and needed for huge IOMMU pages on BAR DMA maps); a
    // kernel without THP refuses, which is fine.
    let _ = sys.madvise_hugepage(addr, size);
    Ok(m)
}
