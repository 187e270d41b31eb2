//! The models' view of memory: an IOVA translation table filled by the test, like an IOMMU.
//!
//! A model performs DMA only through [`Iommu::read`] / [`Iommu::write`]. An IOVA that is not
//! mapped (or mapped without the needed permission) produces a [`DmaFault`] carrying the
//! progress made before the fault, which each model turns into its device's documented error.
//!
//! Memory handed to models is [`HostMemory`]: page-aligned, zeroed, owned by an `Arc`, and kept
//! alive by every mapping of it. No Rust reference to DMA-visible memory is formed.
//!
//! # Why the model's DMA is sound although a driver polls the same memory
//!
//! In threaded mode a model's worker thread writes DMA memory (data, completion records,
//! write-backs) while the driver's thread polls it. A plain `ptr::copy` racing with the driver's
//! reads would be a data race, which Rust's memory model makes undefined behaviour. So every
//! model-side access to DMA-visible memory (and every test-side access through [`HostMemory`])
//! is an **atomic** access: `AtomicU64` for naturally aligned 8-byte words and `AtomicU8` for the
//! rest, with `Relaxed` ordering for data. Atomic accesses never race with each other, are never
//! torn below their width, and are never elided or merged by the compiler. Completion status
//! bytes are stored with `Release` ordering after a `Release` fence ([`Iommu::write_status_u8`]),
//! so a driver that observes the status (with a volatile read followed by an acquire fence, as
//! `passthru_core::arch::read_barrier` does) also observes the data written before it.
//!
//! The driver side uses volatile accesses, as it must for a real device, which is an agent
//! outside the Rust abstract machine. A model thread stands in for that device: its accesses are
//! word-atomic and ordered exactly as the device's, and the driver never forms references into
//! the memory, so the driver sees what it would see from hardware (any interleaving of whole
//! words, status last).

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
        // SAFETY: offset..offset+len is inside the allocation (checked); atomic stores only.
        unsafe { atomic::store(self.ptr.as_ptr().add(offset), src) };
        Ok(())
    }

    /// Copy from the memory at `offset` into `dst` (test checks; bounds-checked).
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), DmaFault> {
        self.check(offset, dst.len(), false)?;
        // SAFETY: offset..offset+len is inside the allocation (checked); atomic loads only.
        unsafe { atomic::load(self.ptr.as_ptr().add(offset), dst) };
        Ok(())
    }

    /// Set `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DmaFault> {
        self.check(offset, len, true)?;
        // SAFETY: offset..offset+len is inside the allocation (checked); atomic stores only.
        unsafe { atomic::fill(self.ptr.as_ptr().add(offset), len, &[value]) };
        Ok(())
    }

    /// Copy the whole memory into a vector (test checks).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        // SAFETY: reading the full allocation into a same-sized vector with atomic loads.
        unsafe { atomic::load(self.ptr.as_ptr(), &mut v) };
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

    /// Translate `iova` for an access of up to `len` bytes: the host pointer and how many bytes
    /// from there are contiguous and accessible (0 if `iova` itself is not).
    fn translate(map: &BTreeMap<u64, Mapping>, iova: u64, len: u64, write: bool) -> (*mut u8, u64) {
        let Some((&start, m)) = map.range(..=iova).next_back() else {
            return (std::ptr::null_mut(), 0);
        };
        let off_in = iova - start;
        if off_in >= m.len || (write && !m.perm.write) || (!write && !m.perm.read) {
            return (std::ptr::null_mut(), 0);
        }
        // SAFETY: m.offset + off_in < m.offset + m.len <= memory.len() (checked in `map`), so
        // the pointer is inside the allocation, which the mapping keeps alive.
        let p = unsafe { m.memory.as_ptr().add(m.offset + off_in as usize) };
        (p, (m.len - off_in).min(len))
    }

    /// How many bytes at the start of `iova..iova+len` are accessible.
    fn prefix(map: &BTreeMap<u64, Mapping>, iova: u64, len: u64, write: bool) -> u64 {
        let mut done = 0;
        while done < len {
            let Some(cur) = iova.checked_add(done) else {
                break;
            };
            let (_, n) = Self::translate(map, cur, len - done, write);
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// How many bytes at the end of `iova..iova+len` are accessible.
    fn suffix(map: &BTreeMap<u64, Mapping>, iova: u64, len: u64, write: bool) -> u64 {
        let mut done = 0u64;
        while done < len {
            let Some(last) = iova.checked_add(len - done - 1) else {
                // The top of the range wraps: nothing above it is accessible.
                break;
            };
            let Some((&start, m)) = map.range(..=last).next_back() else {
                break;
            };
            let ok = if write { m.perm.write } else { m.perm.read };
            if !ok || last - start >= m.len {
                break;
            }
            done += (last - start + 1).min(len - done);
        }
        done
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
            let (p, chunk) = Self::translate(&map, cur, len - done, write);
            if chunk == 0 {
                return Err(fault);
            }
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
        let len = dst.len();
        self.walk(iova, len as u64, false, |p, n, at| {
            // SAFETY: p..p+n is mapped host memory (walk); at + n <= len, so
            // base+at..base+at+n lies inside `dst`, which is exclusively borrowed here.
            let out = unsafe { std::slice::from_raw_parts_mut(base.add(at as usize), n) };
            // SAFETY: p..p+n is mapped, readable host memory kept alive by the mapping.
            unsafe { atomic::load(p, out) }
        })
    }

    /// Device write: copy `src` to `iova`. On a fault, bytes before it were written.
    pub fn write(&self, iova: u64, src: &[u8]) -> Result<(), DmaFault> {
        self.walk(iova, src.len() as u64, true, |p, n, at| {
            let at = at as usize;
            // SAFETY: p..p+n is mapped, writable host memory (walk).
            unsafe { atomic::store(p, &src[at..at + n]) }
        })
    }

    /// Device copy of `len` bytes from `src` to `dst` IOVA, in the direction that is safe for
    /// overlapping ranges (see [`Iommu::copy_directed`]).
    pub fn copy(&self, src: u64, dst: u64, len: u64) -> Result<(), DmaFault> {
        self.copy_directed(src, dst, len).1
    }

    /// Device memmove of `len` bytes from `src` to `dst` IOVA.
    ///
    /// When `dst` lies inside `src + 1 .. src + len` an ascending copy would overwrite source
    /// bytes before reading them, so the copy runs descending (from the end); otherwise it runs
    /// ascending. The direction is decided on IOVAs (what a device sees) and holds however many
    /// mappings the ranges span. Returns the direction (`true` = descending) and, on a fault,
    /// the fault: `done` counts only bytes actually written to the destination — the first
    /// `done` bytes when ascending, the last `done` bytes when descending — and `iova` is the
    /// first inaccessible address in copy order (a source fault wins when both sides fail at the
    /// same position, since the read comes first).
    pub fn copy_directed(&self, src: u64, dst: u64, len: u64) -> (bool, Result<(), DmaFault>) {
        let descending = dst > src && dst - src < len;
        (
            descending,
            self.copy_in_direction(src, dst, len, descending),
        )
    }

    /// Copy as [`Iommu::copy_directed`] does, in the given direction (`true` = descending: the
    /// last bytes first, and a fault's `done` counts bytes completed at the end of the range).
    pub fn copy_in_direction(
        &self,
        src: u64,
        dst: u64,
        len: u64,
        descending: bool,
    ) -> Result<(), DmaFault> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        if descending {
            let r = Self::suffix(&map, src, len, false);
            let w = Self::suffix(&map, dst, len, true);
            let k = r.min(w);
            Self::move_range(&map, src + (len - k), dst + (len - k), k, true);
            if k == len {
                return Ok(());
            }
            let (iova, write) = if r <= w {
                (src + (len - r - 1), false)
            } else {
                (dst + (len - w - 1), true)
            };
            Err(DmaFault {
                iova,
                done: k,
                write,
            })
        } else {
            let r = Self::prefix(&map, src, len, false);
            let w = Self::prefix(&map, dst, len, true);
            let k = r.min(w);
            Self::move_range(&map, src, dst, k, false);
            if k == len {
                return Ok(());
            }
            let (iova, write) = if r <= w {
                (src.wrapping_add(r), false)
            } else {
                (dst.wrapping_add(w), true)
            };
            Err(DmaFault {
                iova,
                done: k,
                write,
            })
        }
    }

    /// Move `len` accessible bytes (the caller checked) piece by piece, each piece contiguous on
    /// both sides, in ascending or descending order.
    fn move_range(map: &BTreeMap<u64, Mapping>, src: u64, dst: u64, len: u64, descending: bool) {
        let mut done = 0u64;
        while done < len {
            if descending {
                // The piece ending at the current top: find where its contiguous run starts.
                let top = len - done;
                let s_run = Self::run_below(map, src + top - 1, top, false);
                let d_run = Self::run_below(map, dst + top - 1, top, true);
                let n = s_run.min(d_run).min(top);
                if n == 0 {
                    return;
                }
                let (sp, _) = Self::translate(map, src + top - n, n, false);
                let (dp, _) = Self::translate(map, dst + top - n, n, true);
                // SAFETY: both pieces are mapped with the needed permission for n bytes.
                unsafe { atomic::move_bytes(sp, dp, n as usize, true) };
                done += n;
            } else {
                let (sp, sn) = Self::translate(map, src + done, len - done, false);
                let (dp, dn) = Self::translate(map, dst + done, len - done, true);
                let n = sn.min(dn);
                if n == 0 {
                    return;
                }
                // SAFETY: both pieces are mapped with the needed permission for n bytes.
                unsafe { atomic::move_bytes(sp, dp, n as usize, false) };
                done += n;
            }
        }
    }

    /// Bytes of the mapping containing `last` that lie at or below it (at most `max`).
    fn run_below(map: &BTreeMap<u64, Mapping>, last: u64, max: u64, write: bool) -> u64 {
        let Some((&start, m)) = map.range(..=last).next_back() else {
            return 0;
        };
        let ok = if write { m.perm.write } else { m.perm.read };
        if !ok || last - start >= m.len {
            return 0;
        }
        (last - start + 1).min(max)
    }

    /// Device fill of `len` bytes at `dst` with the repeating `pattern`.
    pub fn fill(&self, dst: u64, len: u64, pattern: &[u8]) -> Result<(), DmaFault> {
        if pattern.is_empty() {
            return Ok(());
        }
        self.walk(dst, len, true, |p, n, at| {
            let k = at as usize % pattern.len();
            let rotated: Vec<u8> = pattern[k..].iter().chain(&pattern[..k]).copied().collect();
            // SAFETY: p..p+n is mapped, writable host memory (walk).
            unsafe { atomic::fill(p, n, &rotated) };
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

    /// Write one byte at `iova` with release ordering, so that everything the model wrote
    /// earlier is visible before it (completion status bytes).
    pub fn write_status_u8(&self, iova: u64, value: u8) -> Result<(), DmaFault> {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.walk(iova, 1, true, |p, _, _| {
            // SAFETY: p is one mapped, writable byte (walk), accessed only atomically by models.
            unsafe { std::sync::atomic::AtomicU8::from_ptr(p) }
                .store(value, std::sync::atomic::Ordering::Release)
        })
    }
}

/// Word-atomic accesses to DMA-visible memory (see the module documentation).
mod atomic {
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

    /// Bytes moved per bounce step of [`move_bytes`].
    const BOUNCE: usize = 4096;

    /// Bytes before `p` reaches 8-byte alignment (at most `n`).
    fn head(p: usize, n: usize) -> usize {
        ((8 - p % 8) % 8).min(n)
    }

    /// Load `out.len()` bytes from `src` into `out`.
    ///
    /// # Safety
    /// `src..src + out.len()` must be valid for reads and accessed concurrently only atomically
    /// or by volatile driver accesses (never through references).
    pub(super) unsafe fn load(src: *const u8, out: &mut [u8]) {
        let n = out.len();
        let h = head(src as usize, n);
        for (i, o) in out[..h].iter_mut().enumerate() {
            // SAFETY: i < h <= n, inside the caller's range.
            *o = unsafe { AtomicU8::from_ptr(src.add(i) as *mut u8) }.load(Relaxed);
        }
        let words = (n - h) / 8;
        for (w, o) in out[h..h + 8 * words].chunks_exact_mut(8).enumerate() {
            // SAFETY: src + h is 8-byte aligned and the word lies inside the range.
            let v = unsafe { AtomicU64::from_ptr(src.add(h + 8 * w) as *mut u64) }.load(Relaxed);
            o.copy_from_slice(&v.to_ne_bytes());
        }
        for (i, o) in out.iter_mut().enumerate().skip(h + 8 * words) {
            // SAFETY: i < n, inside the caller's range.
            *o = unsafe { AtomicU8::from_ptr(src.add(i) as *mut u8) }.load(Relaxed);
        }
    }

    /// Store `data` at `dst`.
    ///
    /// # Safety
    /// `dst..dst + data.len()` must be valid for writes, with the same sharing rule as [`load`].
    pub(super) unsafe fn store(dst: *mut u8, data: &[u8]) {
        let n = data.len();
        let h = head(dst as usize, n);
        for (i, b) in data[..h].iter().enumerate() {
            // SAFETY: i < h <= n, inside the caller's range.
            unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(*b, Relaxed);
        }
        let words = (n - h) / 8;
        for (w, c) in data[h..h + 8 * words].chunks_exact(8).enumerate() {
            let mut v = [0u8; 8];
            v.copy_from_slice(c);
            // SAFETY: dst + h is 8-byte aligned and the word lies inside the range.
            unsafe { AtomicU64::from_ptr(dst.add(h + 8 * w) as *mut u64) }
                .store(u64::from_ne_bytes(v), Relaxed);
        }
        for (i, b) in data.iter().enumerate().skip(h + 8 * words) {
            // SAFETY: i < n, inside the caller's range.
            unsafe { AtomicU8::from_ptr(dst.add(i)) }.store(*b, Relaxed);
        }
    }

    /// Store `n` bytes of the repeating `pattern` (non-empty) at `dst`.
    ///
    /// # Safety
    /// As for [`store`] with `n` bytes.
    pub(super) unsafe fn fill(dst: *mut u8, n: usize, pattern: &[u8]) {
        let mut buf = [0u8; BOUNCE];
        let unit = pattern.len();
        // Whole pattern repetitions per bounce buffer keep the phase across steps.
        let step = (BOUNCE / unit).max(1) * unit;
        let step = step.min(BOUNCE);
        for (i, b) in buf[..step].iter_mut().enumerate() {
            *b = pattern[i % unit];
        }
        let mut done = 0;
        while done < n {
            let k = (n - done).min(step);
            // SAFETY: done + k <= n, inside the caller's range.
            unsafe { store(dst.add(done), &buf[..k]) };
            done += k;
        }
    }

    /// `move_bytes` for `src` and `dst` with the same alignment modulo 8.
    ///
    /// # Safety
    /// As for [`move_bytes`].
    unsafe fn move_words(src: *const u8, dst: *mut u8, n: usize, descending: bool) {
        let h = head(src as usize, n);
        let words = (n - h) / 8;
        let tail = h + 8 * words;
        let byte = |i: usize| {
            // SAFETY: callers pass i < n: inside both ranges.
            unsafe {
                let v = AtomicU8::from_ptr(src.add(i) as *mut u8).load(Relaxed);
                AtomicU8::from_ptr(dst.add(i)).store(v, Relaxed);
            }
        };
        let word = |k: usize| {
            let o = h + 8 * k;
            // SAFETY: k < words, so o + 8 <= n: inside both ranges; o is 8-byte aligned on
            // both sides (same alignment modulo 8, and h aligns src).
            unsafe {
                let v = AtomicU64::from_ptr(src.add(o) as *mut u64).load(Relaxed);
                AtomicU64::from_ptr(dst.add(o) as *mut u64).store(v, Relaxed);
            }
        };
        if descending {
            (tail..n).rev().for_each(byte);
            (0..words).rev().for_each(word);
            (0..h).rev().for_each(byte);
        } else {
            (0..h).for_each(byte);
            (0..words).for_each(word);
            (tail..n).for_each(byte);
        }
    }

    /// memmove `n` bytes from `src` to `dst` through a bounce buffer, stepping ascending or
    /// descending (the caller picks the direction that is safe for overlap).
    ///
    /// # Safety
    /// `src..src+n` valid for reads and `dst..dst+n` for writes, shared as for [`load`].
    pub(super) unsafe fn move_bytes(src: *const u8, dst: *mut u8, n: usize, descending: bool) {
        if (src as usize) % 8 == (dst as usize) % 8 {
            // Same alignment: word by word, no bounce. Each word is loaded before it is stored
            // and the walk runs in the caller's direction, which memmove needs for overlap.
            // SAFETY: forwarded caller contract.
            unsafe { move_words(src, dst, n, descending) };
            return;
        }
        let mut buf = [0u8; BOUNCE];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(BOUNCE);
            let at = if descending { n - done - k } else { done };
            // SAFETY: at + k <= n: inside both ranges. The whole step is loaded before it is
            // stored, so overlap within a step is harmless; the step order handles the rest.
            unsafe {
                load(src.add(at), &mut buf[..k]);
                store(dst.add(at), &buf[..k]);
            }
            done += k;
        }
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

    #[test]
    fn source_fault_reports_only_bytes_written_to_the_destination() {
        // Source: 0x1000 bytes mapped then a hole; the copy of 0x3000 bytes faults on the read
        // at 0x11000. Exactly 0x1000 bytes reached the destination and `done` says so, so a
        // resubmission from src + done leaves no hole.
        let src = HostMemory::pages(0x1000).unwrap();
        let dst = HostMemory::pages(0x3000).unwrap();
        let io = Iommu::new();
        io.map_all(0x10000, &src).unwrap();
        io.map_all(0x40000, &dst).unwrap();
        src.fill(0, 0x1000, 0x5a).unwrap();
        let (descending, r) = io.copy_directed(0x10000, 0x40000, 0x3000);
        assert!(!descending);
        let f = r.unwrap_err();
        assert_eq!((f.iova, f.done, f.write), (0x11000, 0x1000, false));
        let out = dst.to_vec();
        assert!(out[..0x1000].iter().all(|b| *b == 0x5a));
        assert!(
            out[0x1000..].iter().all(|b| *b == 0),
            "nothing beyond `done` was written"
        );
    }

    #[test]
    fn overlapping_copy_across_mappings_runs_descending_and_preserves_data() {
        // One buffer mapped as four separate 4 KiB mappings; copy 0x3000 bytes from IOVA
        // 0x20000 to 0x20800 (overlapping, dst above src): an ascending chunked copy would
        // overwrite source bytes before reading them.
        let mem = HostMemory::pages(0x4000).unwrap();
        let io = Iommu::new();
        for i in 0..4u64 {
            io.map(
                0x20000 + i * 0x1000,
                &mem,
                (i * 0x1000) as usize,
                0x1000,
                Perm::RW,
            )
            .unwrap();
        }
        let pattern: Vec<u8> = (0..0x4000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        mem.write(0, &pattern).unwrap();
        let (descending, r) = io.copy_directed(0x20000, 0x20800, 0x3000);
        r.unwrap();
        assert!(descending);
        let out = mem.to_vec();
        assert_eq!(&out[0x800..0x3800], &pattern[..0x3000]);
        assert_eq!(&out[..0x800], &pattern[..0x800]);
        // And downwards (dst below src) stays ascending and correct.
        mem.write(0, &pattern).unwrap();
        let (descending, r) = io.copy_directed(0x20800, 0x20000, 0x3000);
        r.unwrap();
        assert!(!descending);
        assert_eq!(&mem.to_vec()[..0x3000], &pattern[0x800..0x3800]);
    }

    #[test]
    fn descending_fault_reports_the_completed_tail() {
        // src 0x30000..0x33000 with its first page unmapped; dst = src + 0x800 (descending).
        let mem = HostMemory::pages(0x4000).unwrap();
        let io = Iommu::new();
        io.map(0x31000, &mem, 0x1000, 0x3000, Perm::RW).unwrap();
        let pattern: Vec<u8> = (0..0x4000u32).map(|i| (i % 253) as u8).collect();
        mem.write(0, &pattern).unwrap();
        let (descending, r) = io.copy_directed(0x30000, 0x30800, 0x2000);
        assert!(descending);
        let f = r.unwrap_err();
        // Source bytes 0x31000.. are readable: the top 0x1000 bytes of the source range
        // (0x31000..0x32000) were copied; the next lower byte 0x30fff faults.
        assert_eq!((f.iova, f.done, f.write), (0x30fff, 0x1000, false));
        let out = mem.to_vec();
        // dst tail 0x31800..0x32800 (memory 0x1800..0x2800) holds source 0x31000..0x32000.
        assert_eq!(&out[0x1800..0x2800], &pattern[0x1000..0x2000]);
    }

    #[test]
    fn memmove_matches_a_reference_for_every_alignment_and_overlap() {
        let mem = HostMemory::pages(0x4000).unwrap();
        let io = Iommu::new();
        io.map_all(0x10000, &mem).unwrap();
        let init: Vec<u8> = (0..0x4000u32).map(|i| (i * 31 + i / 97) as u8).collect();
        for (s, d) in [
            (0, 3),
            (3, 0),
            (5, 13),
            (13, 5),
            (8, 16),
            (16, 8),
            (1, 0x1001),
            (0x1001, 1),
        ] {
            for len in [0u64, 1, 7, 8, 9, 63, 64, 65, 4095, 4097, 9000] {
                mem.write(0, &init).unwrap();
                io.copy(0x10000 + s, 0x10000 + d, len).unwrap();
                let mut want = init.clone();
                want.copy_within(s as usize..(s + len) as usize, d as usize);
                assert!(mem.to_vec() == want, "src +{s} dst +{d} len {len}");
            }
        }
    }
}
