//! The models' view of memory: an IOVA translation table filled by the test, like an IOMMU.
//!
//! A model performs DMA only through [`Iommu::read`] / [`Iommu::write`]. An IOVA that is not
//! mapped (or mapped without the needed permission) produces a [`DmaFault`] carrying the
//! progress made before the fault, which each model turns into its device's documented error.
//!
//! Memory handed to models is [`HostMemory`]: page-aligned, zeroed, owned by an `Arc`, and kept
//! alive by every mapping of it. Copies use raw pointers only; no Rust reference to DMA-visible
//! memory is formed.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, RwLock};

use passthru_core::mmio::DmaRegion;

/// Page-aligned, zero-initialised host memory that can be mapped for a model's DMA.
#[derive(Debug)]
pub struct HostMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: HostMemory owns a heap allocation and only exposes raw pointers to it; accesses are
// raw-pointer copies or volatile accesses, valid from any thread.
unsafe impl Send for HostMemory {}
// SAFETY: as above; shared access never creates references into the allocation.
unsafe impl Sync for HostMemory {}

/// Why [`HostMemory`] could not be allocated.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// Size zero, or size/alignment not representable.
    #[error("invalid host memory size {size:#x} / alignment {align:#x}")]
    Invalid {
        /// Requested size.
        size: usize,
        /// Requested alignment.
        align: usize,
    },
    /// The allocator returned nothing.
    #[error("out of memory allocating {size:#x} bytes")]
    OutOfMemory {
        /// Requested size.
        size: usize,
    },
}

impl HostMemory {
    /// Allocate `size` zeroed bytes aligned to `align` (a power of two, at least 64).
    pub fn new(size: usize, align: usize) -> Result<Arc<Self>, AllocError> {
        let layout = Layout::from_size_align(size, align.max(64))
            .map_err(|_| AllocError::Invalid { size, align })?;
        if size == 0 {
            return Err(AllocError::Invalid { size, align });
        }
        // SAFETY: the layout has non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(AllocError::OutOfMemory { size })?;
        Ok(Arc::new(Self { ptr, layout }))
    }

    /// Allocate `size` zeroed bytes aligned to 4 KiB.
    pub fn pages(size: usize) -> Result<Arc<Self>, AllocError> {
        Self::new(size, 4096)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false: zero-sized memory cannot be allocated.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Host address of the first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// A [`DmaRegion`] over all of this memory, as a device sees it at `iova`, borrowing it.
    pub fn dma_region(&self, iova: u64) -> DmaRegion<'_> {
        // SAFETY: the allocation is valid for volatile reads and writes of `len` bytes while
        // self lives, which the borrow guarantees; no reference into it is ever formed.
        unsafe { DmaRegion::from_raw_parts(iova, self.ptr, self.len()) }
    }

    /// [`HostMemory::dma_region`] for a caller-chosen lifetime, for holders that keep the memory
    /// (an `Arc`) next to the driver using the region.
    ///
    /// # Safety
    /// The memory must stay alive (some `Arc` of it held) for all of `'a`.
    pub unsafe fn dma_region_unbounded<'a>(&self, iova: u64) -> DmaRegion<'a> {
        // SAFETY: valid while the allocation lives, which the caller guarantees for 'a.
        unsafe { DmaRegion::from_raw_parts(iova, self.ptr, self.len()) }
    }

    /// Copy `src` into the memory at `offset` (test setup; bounds-checked).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), DmaFault> {
        self.check(offset, src.len(), true)?;
        // SAFETY: offset..offset+len is inside the allocation (checked); raw copy, no references.
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
        Ok(())
    }

    /// Copy from the memory at `offset` into `dst` (test checks; bounds-checked).
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), DmaFault> {
        self.check(offset, dst.len(), false)?;
        // SAFETY: offset..offset+len is inside the allocation (checked); raw copy, no references.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Set `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DmaFault> {
        self.check(offset, len, true)?;
        // SAFETY: offset..offset+len is inside the allocation (checked).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), value, len) };
        Ok(())
    }

    /// Copy the whole memory into a vector (test checks).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        // SAFETY: reading the full allocation into a same-sized vector.
        unsafe { std::ptr::copy(self.ptr.as_ptr(), v.as_mut_ptr(), v.len()) };
        v
    }

    fn check(&self, offset: usize, len: usize, write: bool) -> Result<(), DmaFault> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(DmaFault {
                iova: offset as u64,
                done: 0,
                write,
            }),
        }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// The device may read.
    pub read: bool,
    /// The device may write.
    pub write: bool,
}

impl Perm {
    /// Read and write.
    pub const RW: Perm = Perm {
        read: true,
        write: true,
    };
    /// Read only.
    pub const RO: Perm = Perm {
        read: true,
        write: false,
    };
}

/// A DMA access hit an unmapped IOVA or lacked permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA {} fault at IOVA {iova:#x} after {done} bytes", if *write { "write" } else { "read" })]
pub struct DmaFault {
    /// The first IOVA that could not be accessed.
    pub iova: u64,
    /// Bytes transferred before the fault.
    pub done: u64,
    /// True for a write (device → memory), false for a read.
    pub write: bool,
}

/// Why a mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The range overlaps an existing mapping.
    #[error("IOVA range {iova:#x}+{len:#x} overlaps an existing mapping")]
    Overlap {
        /// Requested IOVA.
        iova: u64,
        /// Requested length.
        len: u64,
    },
    /// The range lies outside the backing memory, is empty, or wraps around.
    #[error("invalid mapping IOVA {iova:#x}+{len:#x} at memory offset {offset:#x}")]
    Invalid {
        /// Requested IOVA.
        iova: u64,
        /// Requested length.
        len: u64,
        /// Offset in the memory.
        offset: usize,
    },
}

#[derive(Debug, Clone)]
struct Mapping {
    len: u64,
    memory: Arc<HostMemory>,
    offset: usize,
    perm: Perm,
}

/// An IOVA → host memory translation table, shared by a test and its models.
#[derive(Debug, Default)]
pub struct Iommu {
    map: RwLock<BTreeMap<u64, Mapping>>,
}

impl Iommu {
    /// An empty table: every IOVA faults.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Map `len` bytes of `memory` starting at `offset` at `iova`.
    pub fn map(
        &self,
        iova: u64,
        memory: &Arc<HostMemory>,
        offset: usize,
        len: u64,
        perm: Perm,
    ) -> Result<(), MapError> {
        let invalid = MapError::Invalid { iova, len, offset };
        let end = iova.checked_add(len).ok_or(invalid)?;
        let mem_end = (offset as u64).checked_add(len).ok_or(invalid)?;
        if len == 0 || mem_end > memory.len() as u64 {
            return Err(invalid);
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some((&start, m)) = map.range(..end).next_back() {
            if start + m.len > iova {
                return Err(MapError::Overlap { iova, len });
            }
        }
        map.insert(
            iova,
            Mapping {
                len,
                memory: Arc::clone(memory),
                offset,
                perm,
            },
        );
        Ok(())
    }

    /// Map all of `memory` read-write at `iova` and return the [`DmaRegion`] a driver uses for it.
    ///
    /// The mapping keeps the memory alive, so the region stays valid until [`Iommu::unmap`] of it
    /// and the drop of the caller's `Arc`.
    pub fn map_all(&self, iova: u64, memory: &Arc<HostMemory>) -> Result<(), MapError> {
        self.map(iova, memory, 0, memory.len() as u64, Perm::RW)
    }

    /// Remove every mapping that starts inside `iova..iova+len`; returns bytes unmapped.
    pub fn unmap(&self, iova: u64, len: u64) -> u64 {
        let end = iova.saturating_add(len);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<u64> = map.range(iova..end).map(|(k, _)| *k).collect();
        keys.iter()
            .filter_map(|k| map.remove(k))
            .map(|m| m.len)
            .sum()
    }

    /// Remove every mapping; returns bytes unmapped.
    pub fn unmap_all(&self) -> u64 {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let n = map.values().map(|m| m.len).sum();
        map.clear();
        n
    }

    /// Walk `iova..iova+len` in contiguous translated chunks, calling `f(host_ptr, chunk_len)`.
    fn walk(
        &self,
        iova: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(*mut u8, usize, u64),
    ) -> Result<(), DmaFault> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut done = 0u64;
        while done < len {
            let cur = iova.wrapping_add(done);
            let fault = DmaFault {
                iova: cur,
                done,
                write,
            };
            if cur < iova {
                return Err(fault); // wrapped past the top of the address space
            }
            let Some((&start, m)) = map.range(..=cur).next_back() else {
                return Err(fault);
            };
            let off_in = cur - start;
            if off_in >= m.len || (write && !m.perm.write) || (!write && !m.perm.read) {
                return Err(fault);
            }
            let chunk = (m.len - off_in).min(len - done);
            // SAFETY: m.offset + off_in + chunk <= m.offset + m.len <= memory.len() (checked in
            // `map`), so the pointer is inside the allocation, which the mapping keeps alive.
            let p = unsafe { m.memory.as_ptr().add(m.offset + off_in as usize) };
            f(p, chunk as usize, done);
            done += chunk;
        }
        Ok(())
    }

    /// Check that `iova..iova+len` is fully accessible for reading (or writing) without moving
    /// data; on failure the fault tells how far it got.
    pub fn probe(&self, iova: u64, len: u64, write: bool) -> Result<(), DmaFault> {
        self.walk(iova, len, write, |_, _, _| {})
    }

    /// Device read: copy from `iova` into `dst`. On a fault, bytes before it were copied.
    pub fn read(&self, iova: u64, dst: &mut [u8]) -> Result<(), DmaFault> {
        let base = dst.as_mut_ptr();
        self.walk(iova, dst.len() as u64, false, |p, n, at| {
            // SAFETY: p..p+n is mapped host memory (walk); base+at..+n lies inside dst.
            unsafe { std::ptr::copy(p, base.add(at as usize), n) }
        })
    }

    /// Device write: copy `src` to `iova`. On a fault, bytes before it were written.
    pub fn write(&self, iova: u64, src: &[u8]) -> Result<(), DmaFault> {
        let base = src.as_ptr();
        self.walk(iova, src.len() as u64, true, |p, n, at| {
            // SAFETY: p..p+n is mapped host memory (walk); base+at..+n lies inside src.
            unsafe { std::ptr::copy(base.add(at as usize), p, n) }
        })
    }

    /// Device copy from `src` to `dst` IOVA, `len` bytes, through a bounce buffer of at most
    /// 64 KiB (so overlapping ranges behave like memmove chunk by chunk). Returns the progress on
    /// a fault; `DmaFault::write` tells which side faulted.
    pub fn copy(&self, src: u64, dst: u64, len: u64) -> Result<(), DmaFault> {
        // Fast path: both ranges translate to single contiguous chunks.
        if let (Some(s), Some(d)) = (
            self.contiguous(src, len, false),
            self.contiguous(dst, len, true),
        ) {
            // SAFETY: both ranges are mapped with the needed permission and lie inside their
            // allocations (contiguous); ptr::copy handles overlap.
            unsafe { std::ptr::copy(s, d, len as usize) };
            return Ok(());
        }
        let mut buf = vec![0u8; len.min(64 * 1024) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read(src + done, &mut buf[..n]).map_err(|f| DmaFault {
                done: done + f.done,
                ..f
            })?;
            self.write(dst + done, &buf[..n]).map_err(|f| DmaFault {
                done: done + f.done,
                ..f
            })?;
            done += n as u64;
        }
        Ok(())
    }

    /// Device fill of `len` bytes at `dst` with the repeating `pattern`.
    pub fn fill(&self, dst: u64, len: u64, pattern: &[u8]) -> Result<(), DmaFault> {
        if pattern.is_empty() {
            return Ok(());
        }
        self.walk(dst, len, true, |p, n, at| {
            for i in 0..n {
                let b = pattern[((at as usize) + i) % pattern.len()];
                // SAFETY: p..p+n is mapped, writable host memory (walk).
                unsafe { p.add(i).write_volatile(b) };
            }
        })
    }

    /// Read a little-endian u64 at `iova`.
    pub fn read_u64(&self, iova: u64) -> Result<u64, DmaFault> {
        let mut b = [0u8; 8];
        self.read(iova, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write a little-endian u64 at `iova`.
    pub fn write_u64(&self, iova: u64, value: u64) -> Result<(), DmaFault> {
        self.write(iova, &value.to_le_bytes())
    }

    /// Write one byte at `iova` with a release fence before it, so that everything the model
    /// wrote earlier is visible before it (completion status bytes).
    pub fn write_status_u8(&self, iova: u64, value: u8) -> Result<(), DmaFault> {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.walk(iova, 1, true, |p, _, _| {
            // SAFETY: p is one mapped, writable byte (walk).
            unsafe { p.write_volatile(value) }
        })
    }

    fn contiguous(&self, iova: u64, len: u64, write: bool) -> Option<*mut u8> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let (&start, m) = map.range(..=iova).next_back()?;
        let off = iova - start;
        let ok = if write { m.perm.write } else { m.perm.read };
        if !ok || off.checked_add(len)? > m.len {
            return None;
        }
        // SAFETY: off + len <= m.len, inside the allocation kept alive by the map.
        Some(unsafe { m.memory.as_ptr().add(m.offset + off as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_copy_fault_and_progress() {
        let mem = HostMemory::pages(3 * 4096).unwrap();
        let io = Iommu::new();
        io.map(0x10000, &mem, 0, 4096, Perm::RW).unwrap();
        io.map(0x11000, &mem, 4096, 4096, Perm::RO).unwrap();
        assert!(matches!(
            io.map(0x10800, &mem, 0, 16, Perm::RW),
            Err(MapError::Overlap { .. })
        ));
        mem.fill(0, 4096, 0xaa).unwrap();
        io.copy(0x10000, 0x10100, 16).unwrap();
        // write into read-only mapping faults with progress reported
        let f = io.write(0x10ff8, &[1u8; 16]).unwrap_err();
        assert_eq!(
            f,
            DmaFault {
                iova: 0x11000,
                done: 8,
                write: true
            }
        );
        let mut b = [0u8; 8];
        mem.read(4088, &mut b).unwrap();
        assert_eq!(b, [1; 8], "bytes before the fault were written");
        let f = io.read(0x12000, &mut b).unwrap_err();
        assert_eq!((f.iova, f.done, f.write), (0x12000, 0, false));
        assert_eq!(io.unmap(0x10000, 0x2000), 0x2000);
        assert!(io.read(0x10000, &mut b).is_err());
        assert!(io.map(u64::MAX - 10, &mem, 0, 100, Perm::RW).is_err());
    }

    #[test]
    fn copy_crossing_mappings_uses_bounce_path() {
        let a = HostMemory::pages(4096).unwrap();
        let b = HostMemory::pages(4096).unwrap();
        let io = Iommu::new();
        io.map_all(0x0, &a).unwrap();
        io.map_all(0x1000, &b).unwrap();
        a.fill(0, 4096, 7).unwrap();
        io.copy(0x800, 0x1800, 0x800).unwrap();
        let mut out = [0u8; 0x800];
        b.read(0x800, &mut out).unwrap();
        assert!(out.iter().all(|x| *x == 7));
        // spans both mappings as source
        io.copy(0x0f00, 0x1000, 0x200).unwrap();
        let f = io.copy(0x1f00, 0x0, 0x200).unwrap_err();
        assert_eq!((f.iova, f.write), (0x2000, false));
        io.fill(0x0, 6, &[1, 2, 3]).unwrap();
        let mut p = [0u8; 6];
        a.read(0, &mut p).unwrap();
        assert_eq!(p, [1, 2, 3, 1, 2, 3]);
    }
}
