//! Guest RAM: one anonymous shared mapping, GPA `0..size`, with bounds-checked volatile access.

use std::marker::PhantomData;
use std::ptr::NonNull;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Result, VmError};

/// Guest RAM, mapped in this process (`MAP_SHARED | MAP_ANONYMOUS`) and installed as memslot 0
/// at GPA 0. The guest writes it concurrently: every access here is a raw-pointer access, never
/// a Rust reference.
#[derive(Debug)]
pub struct GuestMemory {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access goes through raw pointers
// with explicit volatile or copy operations, so sharing the handle between threads is sound.
unsafe impl Send for GuestMemory {}
// SAFETY: as above.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Maps `size` bytes (a multiple of 4 KiB) of zeroed memory.
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(4096) {
            return Err(VmError::Config(format!(
                "guest RAM size {size:#x} is not a non-zero multiple of 4 KiB"
            )));
        }
        // SAFETY: an anonymous mapping at a kernel-chosen address touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VmError::Os {
                op: "mmap of guest RAM",
                source: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(VmError::State("mmap returned NULL"))?;
        Ok(Self { ptr, size })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// Host address of GPA 0, for installing the memslot and for mapping guest RAM in an IOMMU
    /// (IOVA = GPA). Valid while this `GuestMemory` lives; never turn it into a reference.
    pub fn host_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, gpa: u64, len: usize, align: usize) -> Result<*mut u8> {
        let end = gpa.checked_add(len as u64);
        if end.is_none_or(|e| e > self.size as u64) || !gpa.is_multiple_of(align as u64) {
            return Err(VmError::GuestMemory {
                gpa,
                len: len as u64,
                ram_size: self.size as u64,
            });
        }
        // SAFETY: `gpa + len <= size`, so the offset stays inside the mapping.
        Ok(unsafe { self.ptr.as_ptr().add(gpa as usize) })
    }

    /// Volatile read of a `T` at `gpa` (naturally aligned).
    pub fn read<T: FromBytes>(&self, gpa: u64) -> Result<T> {
        let p = self.check(gpa, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned (checked); any bit pattern is a valid T (FromBytes).
        Ok(unsafe { p.cast::<T>().read_volatile() })
    }

    /// Volatile write of `value` at `gpa` (naturally aligned).
    pub fn write<T: IntoBytes + Immutable>(&self, gpa: u64, value: T) -> Result<()> {
        let p = self.check(gpa, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned (checked); the mapping is writable.
        unsafe { p.cast::<T>().write_volatile(value) };
        Ok(())
    }

    /// Copies `buf.len()` bytes out of guest memory at `gpa`.
    pub fn read_bytes(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let p = self.check(gpa, buf.len(), 1)?;
        // SAFETY: the source range is inside the mapping (checked) and cannot overlap `buf`,
        // which is host memory outside it.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write_bytes(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let p = self.check(gpa, data.len(), 1)?;
        // SAFETY: the destination range is inside the mapping (checked) and cannot overlap
        // `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// A typed handle on a shared variable at `gpa` (naturally aligned, inside RAM): volatile
    /// reads and writes with no exit, for host ↔ guest communication on hot paths.
    pub fn shared<T: FromBytes + IntoBytes + Immutable + Copy>(
        &self,
        gpa: u64,
    ) -> Result<SharedVar<'_, T>> {
        let p = self.check(gpa, size_of::<T>(), align_of::<T>())?;
        Ok(SharedVar {
            ptr: p.cast::<T>(),
            gpa,
            _mem: PhantomData,
        })
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no pointer into it outlives
        // `self` (SharedVar borrows it, the VM's memslot is gone with the VM fd first).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

/// A typed variable in guest memory (see [`GuestMemory::shared`]). Aligned 1/2/4/8-byte
/// variables are read and written as single accesses, so they are atomic with respect to the
/// guest.
#[derive(Debug, Clone, Copy)]
pub struct SharedVar<'a, T> {
    ptr: *mut T,
    gpa: u64,
    _mem: PhantomData<&'a GuestMemory>,
}

// SAFETY: a SharedVar is a bounds-checked pointer into guest memory (itself Sync) used only
// with volatile accesses.
unsafe impl<T: Send> Send for SharedVar<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for SharedVar<'_, T> {}

impl<T: FromBytes + IntoBytes + Immutable + Copy> SharedVar<'_, T> {
    /// Volatile read.
    #[inline]
    pub fn read(&self) -> T {
        // SAFETY: checked in bounds and aligned at creation; the mapping outlives 'a.
        unsafe { self.ptr.read_volatile() }
    }

    /// Volatile write.
    #[inline]
    pub fn write(&self, value: T) {
        // SAFETY: as in `read`.
        unsafe { self.ptr.write_volatile(value) }
    }

    /// The variable's GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }
}
