//! The IOMMUFD fd (`/dev/iommu`, native mode): IOAS allocation, IOVA ranges, map and unmap.
//!
//! Thin, errno-returning steps; [`crate::Iommu`] composes them and adds typed errors.

use std::os::fd::RawFd;

use iommufd_bindings as ifd;

use crate::iova::IovaRange;
use crate::sys::{ioctl_plain, nr, read_plain, Errno, Sys};

/// IOMMU_IOAS_ALLOC: a new IOAS id.
pub fn ioas_alloc(sys: &dyn Sys, fd: RawFd) -> Result<u32, Errno> {
    let mut a = ifd::iommu_ioas_alloc {
        size: std::mem::size_of::<ifd::iommu_ioas_alloc>() as u32,
        ..Default::default()
    };
    // SAFETY: an iommu_ioas_alloc; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::IOMMU_IOAS_ALLOC, &mut a) }?;
    Ok(a.out_ioas_id)
}

/// IOMMU_DESTROY of an object id.
pub fn destroy(sys: &dyn Sys, fd: RawFd, id: u32) -> Result<(), Errno> {
    let mut d = ifd::iommu_destroy {
        size: std::mem::size_of::<ifd::iommu_destroy>() as u32,
        id,
    };
    // SAFETY: an iommu_destroy; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::IOMMU_DESTROY, &mut d) }.map(|_| ())
}

/// How many times the range query is retried if the ranges grow between probe and read.
const RANGE_RETRIES: usize = 4;

/// IOMMU_IOAS_IOVA_RANGES: probe with `num_iovas = 0` (the kernel answers EMSGSIZE and the
/// needed count), then read that many. Retries if the count grew in between.
///
/// Returns the ranges and `out_iova_alignment`.
pub fn iova_ranges(sys: &dyn Sys, fd: RawFd, ioas_id: u32) -> Result<(Vec<IovaRange>, u64), Errno> {
    let size = std::mem::size_of::<ifd::iommu_ioas_iova_ranges>() as u32;
    let mut q = ifd::iommu_ioas_iova_ranges {
        size,
        ioas_id,
        ..Default::default()
    };
    // SAFETY: num_iovas = 0 and allowed_iovas = 0: the kernel writes no array.
    match unsafe { ioctl_plain(sys, fd, nr::IOMMU_IOAS_IOVA_RANGES, &mut q) } {
        Ok(_) => return Ok((Vec::new(), q.out_iova_alignment)),
        Err(Errno::EMSGSIZE) => {}
        Err(e) => return Err(e),
    }
    for _ in 0..RANGE_RETRIES {
        let n = q.num_iovas as usize;
        let elem = std::mem::size_of::<ifd::iommu_iova_range>();
        let mut arr = vec![0u8; n * elem];
        q = ifd::iommu_ioas_iova_ranges {
            size,
            ioas_id,
            num_iovas: n as u32,
            __reserved: 0,
            allowed_iovas: arr.as_mut_ptr() as u64,
            out_iova_alignment: 0,
        };
        // SAFETY: allowed_iovas points at `arr`, which holds exactly num_iovas ranges and
        // outlives the call.
        match unsafe { ioctl_plain(sys, fd, nr::IOMMU_IOAS_IOVA_RANGES, &mut q) } {
            Ok(_) => {
                let got = (q.num_iovas as usize).min(n);
                let mut out = Vec::with_capacity(got);
                for i in 0..got {
                    if let Some(r) = read_plain::<ifd::iommu_iova_range>(&arr, i * elem) {
                        out.push(IovaRange::new(r.start, r.last));
                    }
                }
                return Ok((out, q.out_iova_alignment));
            }
            Err(Errno::EMSGSIZE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EMSGSIZE)
}

/// IOMMU_IOAS_MAP with FIXED_IOVA | READABLE | WRITEABLE.
///
/// # Safety
/// `vaddr..vaddr+len` must stay valid memory that the device may read and write for as long as
/// the mapping exists (no Rust references into it).
pub unsafe fn map(
    sys: &dyn Sys,
    fd: RawFd,
    ioas_id: u32,
    vaddr: u64,
    iova: u64,
    len: u64,
) -> Result<(), Errno> {
    let mut m = ifd::iommu_ioas_map {
        size: std::mem::size_of::<ifd::iommu_ioas_map>() as u32,
        flags: ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA
            | ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
            | ifd::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id,
        __reserved: 0,
        user_va: vaddr,
        length: len,
        iova,
    };
    // SAFETY: an iommu_ioas_map; the caller vouches for user_va..user_va+length.
    unsafe { ioctl_plain(sys, fd, nr::IOMMU_IOAS_MAP, &mut m) }.map(|_| ())
}

/// IOMMU_IOAS_UNMAP of `iova..iova+len`; returns the bytes unmapped (written back into length).
pub fn unmap(sys: &dyn Sys, fd: RawFd, ioas_id: u32, iova: u64, len: u64) -> Result<u64, Errno> {
    let mut u = ifd::iommu_ioas_unmap {
        size: std::mem::size_of::<ifd::iommu_ioas_unmap>() as u32,
        ioas_id,
        iova,
        length: len,
    };
    // SAFETY: an iommu_ioas_unmap; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::IOMMU_IOAS_UNMAP, &mut u) }?;
    Ok(u.length)
}

/// IOMMU_IOAS_UNMAP of everything (iova 0, length `u64::MAX`); returns the bytes unmapped.
pub fn unmap_all(sys: &dyn Sys, fd: RawFd, ioas_id: u32) -> Result<u64, Errno> {
    unmap(sys, fd, ioas_id, 0, u64::MAX)
}
