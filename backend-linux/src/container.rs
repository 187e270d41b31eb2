//! The VFIO container fd (`/dev/vfio/vfio`, or `/dev/iommu` in iommufd's compatibility mode):
//! API version, extensions, SET_IOMMU, type1 IOVA ranges, DMA map and unmap.
//!
//! These are thin, errno-returning steps; [`crate::Iommu`] composes them and adds typed errors.

use std::os::fd::RawFd;

use vfio_bindings::bindings::vfio as vb;

use crate::iova::IovaRange;
use crate::sys::{cap_chain, ioctl_plain, nr, read_plain, write_plain, Errno, IoctlArg, Sys};

/// VFIO_GET_API_VERSION: the container's API version (0 today).
pub fn api_version(sys: &dyn Sys, fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: VFIO_GET_API_VERSION takes no argument.
    unsafe { sys.ioctl(fd, nr::VFIO_GET_API_VERSION, IoctlArg::None) }
}

/// VFIO_CHECK_EXTENSION: > 0 if `extension` (e.g. an IOMMU type) is supported.
pub fn check_extension(sys: &dyn Sys, fd: RawFd, extension: u32) -> Result<i32, Errno> {
    // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
    unsafe {
        sys.ioctl(
            fd,
            nr::VFIO_CHECK_EXTENSION,
            IoctlArg::Value(extension as u64),
        )
    }
}

/// VFIO_SET_IOMMU with `iommu_type` (VFIO_TYPE1_IOMMU or VFIO_TYPE1v2_IOMMU).
pub fn set_iommu(sys: &dyn Sys, fd: RawFd, iommu_type: u32) -> Result<(), Errno> {
    // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
    unsafe { sys.ioctl(fd, nr::VFIO_SET_IOMMU, IoctlArg::Value(iommu_type as u64)) }.map(|_| ())
}

/// The largest VFIO_IOMMU_GET_INFO buffer we accept from the kernel's argsz (1 MiB).
const MAX_INFO: u32 = 1 << 20;

/// VFIO_IOMMU_GET_INFO, sized by a first call, returning the whole info buffer.
pub fn iommu_info(sys: &dyn Sys, fd: RawFd) -> Result<Vec<u8>, Errno> {
    let base = std::mem::size_of::<vb::vfio_iommu_type1_info>() as u32;
    let mut info = vb::vfio_iommu_type1_info {
        argsz: base,
        ..Default::default()
    };
    // SAFETY: VFIO_IOMMU_GET_INFO takes a vfio_iommu_type1_info of argsz bytes; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_IOMMU_GET_INFO, &mut info) }?;
    let want = info.argsz.clamp(base, MAX_INFO);
    let mut buf = vec![0u8; want as usize];
    let first = vb::vfio_iommu_type1_info {
        argsz: want,
        ..Default::default()
    };
    write_plain(&mut buf, 0, &first);
    // SAFETY: `buf` holds a vfio_iommu_type1_info header with argsz = buf.len().
    unsafe { sys.ioctl(fd, nr::VFIO_IOMMU_GET_INFO, IoctlArg::Buf(&mut buf)) }?;
    Ok(buf)
}

/// Parse the IOVA ranges out of a VFIO_IOMMU_GET_INFO buffer (capability
/// VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE), converted to inclusive [`IovaRange`]s.
///
/// `Ok(None)`: the chain has no IOVA-range capability.
pub fn parse_iova_ranges(buf: &[u8]) -> Result<Option<Vec<IovaRange>>, String> {
    let base = std::mem::size_of::<vb::vfio_iommu_type1_info>();
    let info: vb::vfio_iommu_type1_info =
        read_plain(buf, 0).ok_or_else(|| "info buffer shorter than its header".to_string())?;
    if info.flags & vb::VFIO_IOMMU_INFO_CAPS == 0 || info.cap_offset == 0 {
        return Ok(None);
    }
    let caps = cap_chain(buf, info.cap_offset, base)?;
    let Some(cap) = caps
        .iter()
        .find(|c| c.id as u32 == vb::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
    else {
        return Ok(None);
    };
    // header (8) + nr_iovas (4) + reserved (4), then nr_iovas x {start, end}.
    let nr_iovas: u32 =
        read_plain(buf, cap.offset + 8).ok_or_else(|| "IOVA range cap truncated".to_string())?;
    let mut out = Vec::with_capacity((nr_iovas as usize).min(buf.len() / 16));
    for i in 0..nr_iovas as usize {
        let off = cap.offset + 16 + i * 16;
        let r: vb::vfio_iova_range = read_plain(buf, off)
            .ok_or_else(|| format!("IOVA range {i} of {nr_iovas} lies beyond the buffer"))?;
        out.push(IovaRange::new(r.start, r.end));
    }
    Ok(Some(out))
}

/// VFIO_IOMMU_MAP_DMA with READ|WRITE.
///
/// # Safety
/// `vaddr..vaddr+size` must stay valid memory that the device may read and write for as long as
/// the mapping exists (no Rust references into it).
pub unsafe fn map_dma(
    sys: &dyn Sys,
    fd: RawFd,
    vaddr: u64,
    iova: u64,
    size: u64,
) -> Result<(), Errno> {
    let mut map = vb::vfio_iommu_type1_dma_map {
        argsz: std::mem::size_of::<vb::vfio_iommu_type1_dma_map>() as u32,
        flags: vb::VFIO_DMA_MAP_FLAG_READ | vb::VFIO_DMA_MAP_FLAG_WRITE,
        vaddr,
        iova,
        size,
    };
    // SAFETY: a vfio_iommu_type1_dma_map; the caller vouches for vaddr..vaddr+size.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_IOMMU_MAP_DMA, &mut map) }.map(|_| ())
}

fn unmap_raw(sys: &dyn Sys, fd: RawFd, flags: u32, iova: u64, size: u64) -> Result<u64, Errno> {
    let mut unmap = vb::vfio_iommu_type1_dma_unmap {
        argsz: std::mem::size_of::<vb::vfio_iommu_type1_dma_unmap>() as u32,
        flags,
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: a vfio_iommu_type1_dma_unmap without a dirty bitmap (flags has no
    // GET_DIRTY_BITMAP), so it embeds no pointers and has no trailing data.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_IOMMU_UNMAP_DMA, &mut unmap) }?;
    // The kernel writes the number of bytes unmapped back into `size`.
    Ok(unmap.size)
}

/// VFIO_IOMMU_UNMAP_DMA of `iova..iova+size`; returns the bytes unmapped.
pub fn unmap_dma(sys: &dyn Sys, fd: RawFd, iova: u64, size: u64) -> Result<u64, Errno> {
    unmap_raw(sys, fd, 0, iova, size)
}

/// VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL (iova 0, size 0); returns the bytes
/// unmapped.
pub fn unmap_all(sys: &dyn Sys, fd: RawFd) -> Result<u64, Errno> {
    unmap_raw(sys, fd, vb::VFIO_DMA_UNMAP_FLAG_ALL, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_with_ranges(ranges: &[(u64, u64)], extra_cap_first: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 24 + 16 + 16 + ranges.len() * 16];
        let cap_off = if extra_cap_first { 24 + 16 } else { 24 };
        let info = vb::vfio_iommu_type1_info {
            argsz: buf.len() as u32,
            flags: vb::VFIO_IOMMU_INFO_CAPS | vb::VFIO_IOMMU_INFO_PGSIZES,
            iova_pgsizes: 0x4000_1000,
            cap_offset: if extra_cap_first { 24 } else { cap_off as u32 },
            pad: 0,
        };
        write_plain(&mut buf, 0, &info);
        if extra_cap_first {
            // A DMA_AVAIL capability (id 3) first, then the ranges.
            let h = vb::vfio_info_cap_header {
                id: vb::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL as u16,
                version: 1,
                next: cap_off as u32,
            };
            write_plain(&mut buf, 24, &h);
        }
        let h = vb::vfio_info_cap_header {
            id: vb::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16,
            version: 1,
            next: 0,
        };
        write_plain(&mut buf, cap_off, &h);
        write_plain(&mut buf, cap_off + 8, &(ranges.len() as u32));
        for (i, &(s, e)) in ranges.iter().enumerate() {
            write_plain(&mut buf, cap_off + 16 + i * 16, &s);
            write_plain(&mut buf, cap_off + 24 + i * 16, &e);
        }
        buf
    }

    #[test]
    fn parses_iova_range_cap_after_other_caps() {
        let buf = info_with_ranges(&[(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)], true);
        let r = parse_iova_ranges(&buf).unwrap().unwrap();
        assert_eq!(
            r,
            vec![
                IovaRange::new(0, 0xfedf_ffff),
                IovaRange::new(0xfef0_0000, 0xffff_ffff_ffff)
            ]
        );
    }

    #[test]
    fn truncated_range_array_is_malformed() {
        let mut buf = info_with_ranges(&[(0, 0xffff)], false);
        // Claim 5 ranges while only one fits.
        write_plain(&mut buf, 24 + 8, &5u32);
        assert!(parse_iova_ranges(&buf).unwrap_err().contains("beyond"));
    }

    #[test]
    fn no_caps_flag_means_no_ranges() {
        let mut buf = info_with_ranges(&[(0, 0xffff)], false);
        write_plain(&mut buf, 4, &vb::VFIO_IOMMU_INFO_PGSIZES);
        assert_eq!(parse_iova_ranges(&buf).unwrap(), None);
    }

    #[test]
    fn cyclic_chain_is_rejected() {
        let mut buf = info_with_ranges(&[(0, 0xffff)], true);
        // Make the IOVA cap point back at the first cap, and the first cap's id not match.
        let h = vb::vfio_info_cap_header {
            id: 99,
            version: 1,
            next: 24,
        };
        write_plain(&mut buf, 40, &h);
        assert!(parse_iova_ranges(&buf).is_err());
    }
}
