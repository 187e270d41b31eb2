//! The seam between drivers and backends, and a volatile-pointer implementation of it.
//!
//! A driver sees exactly four things:
//!
//! 1. [`RegisterIo`]: one BAR, read and written by byte offset at 8/16/32/64 bits, plus a 64-byte
//!    portal submission (MOVDIR64B on hardware).
//! 2. [`PciFunction`]: configuration space, interrupt enable/disable, function reset, and the BARs.
//! 3. [`DmaRegion`]: memory lent by the caller, already mapped in the IOMMU at a known IOVA.
//! 4. [`Clock`]: a monotonic clock and a delay, so every poll is bounded.
//!
//! Out-of-range or misaligned register accesses never fault and never panic: reads return all
//! ones and writes are dropped, which is what a PCIe master abort looks like to software.

use core::fmt;
use core::ptr::NonNull;

use volatile::VolatilePtr;

/// Why a 64-byte portal submission did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortalError {
    /// The CPU (or the backend) cannot issue a 64-byte atomic store (no MOVDIR64B / ENQCMD).
    Unsupported,
    /// The portal offset is not 64-byte aligned.
    Misaligned {
        /// The offending offset.
        offset: usize,
    },
    /// The portal offset plus 64 lies beyond the BAR.
    OutOfRange {
        /// The offending offset.
        offset: usize,
        /// The BAR length.
        len: usize,
    },
    /// ENQCMD was refused by the device (ZF set): the shared work queue is full; retry later.
    Retry,
}

impl fmt::Display for PortalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str(
                "64-byte portal writes are not supported here (CPU lacks MOVDIR64B/ENQCMD)",
            ),
            Self::Misaligned { offset } => {
                write!(f, "portal offset {offset:#x} is not 64-byte aligned")
            }
            Self::OutOfRange { offset, len } => {
                write!(
                    f,
                    "portal offset {offset:#x} + 64 exceeds BAR length {len:#x}"
                )
            }
            Self::Retry => f.write_str("ENQCMD refused the descriptor (work queue full); retry"),
        }
    }
}

/// Register access to one BAR, by byte offset.
///
/// Implementations: [`VolatileBar`] (a real mapping), the software models, KVM MMIO exits.
pub trait RegisterIo {
    /// Length of the BAR in bytes.
    fn len(&self) -> usize;
    /// True if the BAR has length 0.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Read 8 bits at `offset`.
    fn read8(&self, offset: usize) -> u8;
    /// Read 16 bits at `offset`.
    fn read16(&self, offset: usize) -> u16;
    /// Read 32 bits at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Read 64 bits at `offset` (one access where the platform has it).
    fn read64(&self, offset: usize) -> u64;
    /// Write 8 bits at `offset`.
    fn write8(&self, offset: usize, value: u8);
    /// Write 16 bits at `offset`.
    fn write16(&self, offset: usize, value: u16);
    /// Write 32 bits at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// Write 64 bits at `offset`.
    fn write64(&self, offset: usize, value: u64);
    /// Submit one 64-byte descriptor as a single atomic store (MOVDIR64B) at `offset`.
    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError>;
    /// Submit one 64-byte descriptor with ENQCMD (shared work queues). The default says
    /// [`PortalError::Unsupported`].
    fn enqcmd(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let _ = (offset, descriptor);
        Err(PortalError::Unsupported)
    }
}

/// Which interrupt mechanism of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IrqKind {
    /// Legacy INTx.
    Intx,
    /// MSI.
    Msi,
    /// MSI-X.
    MsiX,
}

/// A failure of a PCI-function operation, reported by the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FunctionError {
    /// The BAR does not exist, is not memory, or is not mappable.
    NoSuchBar(u8),
    /// The configuration-space offset or width is out of range.
    ConfigOutOfRange {
        /// The offending offset.
        offset: u16,
    },
    /// The backend does not offer this operation.
    Unsupported(&'static str),
    /// The operating system refused; `errno` is its error number.
    Os {
        /// What was attempted.
        op: &'static str,
        /// The errno value.
        errno: i32,
    },
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchBar(i) => write!(f, "BAR{i} is absent or not mappable"),
            Self::ConfigOutOfRange { offset } => {
                write!(f, "config-space offset {offset:#x} is out of range")
            }
            Self::Unsupported(what) => write!(f, "{what} is not supported by this backend"),
            Self::Os { op, errno } => write!(f, "{op} failed with errno {errno}"),
        }
    }
}

/// Control of one PCI function: configuration space, interrupts, reset and BARs.
pub trait PciFunction {
    /// The BAR handle type.
    type Bar: RegisterIo;
    /// A handle to memory BAR `index` (0..=5).
    fn bar(&self, index: u8) -> Result<Self::Bar, FunctionError>;
    /// Read 8 bits of configuration space.
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError>;
    /// Read 16 bits of configuration space.
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError>;
    /// Read 32 bits of configuration space.
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError>;
    /// Write 8 bits of configuration space.
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError>;
    /// Write 16 bits of configuration space.
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError>;
    /// Write 32 bits of configuration space.
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError>;
    /// Enable `count` vectors of `kind` starting at `first`.
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError>;
    /// Disable every vector of `kind` (and only of `kind`).
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError>;
    /// Reset the function (FLR or the backend's equivalent).
    fn reset(&self) -> Result<(), FunctionError>;
}

impl<T: PciFunction + ?Sized> PciFunction for &T {
    type Bar = T::Bar;
    fn bar(&self, index: u8) -> Result<Self::Bar, FunctionError> {
        (**self).bar(index)
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        (**self).config_read8(offset)
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        (**self).config_read16(offset)
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        (**self).config_read32(offset)
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        (**self).config_write8(offset, value)
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        (**self).config_write16(offset, value)
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        (**self).config_write32(offset, value)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        (**self).irq_enable(kind, first, count)
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        (**self).irq_disable(kind)
    }
    fn reset(&self) -> Result<(), FunctionError> {
        (**self).reset()
    }
}

/// A monotonic clock and a delay, for bounded polling.
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed point; never decreases.
    fn now_ns(&self) -> u64;
    /// Wait at least `ns` nanoseconds. The default spins on [`Clock::now_ns`].
    fn delay_ns(&self, ns: u64) {
        let start = self.now_ns();
        while self.now_ns().wrapping_sub(start) < ns {
            core::hint::spin_loop();
        }
    }
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
    fn delay_ns(&self, ns: u64) {
        (**self).delay_ns(ns)
    }
}

/// The outcome of a poll that ran out of time: the last value seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PollTimeout {
    /// The last value the poll observed.
    pub last: u64,
    /// How long the poll waited, in nanoseconds.
    pub waited_ns: u64,
}

/// Poll `read` until `done(value)` holds or `timeout_ns` passes, sleeping `interval_ns` between
/// reads. Returns the final value, or the last value seen on timeout. The condition is always
/// evaluated once more after the deadline, so a slow host cannot turn success into a timeout.
pub fn poll<C: Clock + ?Sized>(
    clock: &C,
    timeout_ns: u64,
    interval_ns: u64,
    mut read: impl FnMut() -> u64,
    mut done: impl FnMut(u64) -> bool,
) -> Result<u64, PollTimeout> {
    let start = clock.now_ns();
    loop {
        let value = read();
        if done(value) {
            return Ok(value);
        }
        let waited = clock.now_ns().wrapping_sub(start);
        if waited >= timeout_ns {
            let value = read();
            if done(value) {
                return Ok(value);
            }
            return Err(PollTimeout {
                last: value,
                waited_ns: waited,
            });
        }
        if interval_ns == 0 {
            core::hint::spin_loop();
        } else {
            clock.delay_ns(interval_ns);
        }
    }
}

/// Why a [`DmaRegion`] access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DmaError {
    /// `offset + len` lies beyond the region.
    OutOfBounds {
        /// Requested offset.
        offset: usize,
        /// Requested length.
        len: usize,
        /// Region length.
        region_len: usize,
    },
    /// The offset is not aligned for the access width.
    Misaligned {
        /// Requested offset.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfBounds {
                offset,
                len,
                region_len,
            } => write!(
                f,
                "DMA region access {offset:#x}+{len:#x} exceeds region length {region_len:#x}"
            ),
            Self::Misaligned { offset, align } => {
                write!(
                    f,
                    "DMA region offset {offset:#x} is not {align}-byte aligned"
                )
            }
        }
    }
}

/// Memory lent to a driver: `len` bytes at host address `ptr`, visible to the device at `iova`.
///
/// All accesses are volatile and bounds-checked; no Rust reference to the memory is ever formed,
/// because the device may write it at any time.
#[derive(Debug, Clone, Copy)]
pub struct DmaRegion {
    iova: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a DmaRegion is an address range; every access through it is a volatile raw-pointer
// access, which is as valid from one thread as from another (the device writes it concurrently
// anyway). Validity of the memory is the contract of `DmaRegion::new`.
unsafe impl Send for DmaRegion {}
// SAFETY: as above; shared use only performs volatile raw-pointer accesses.
unsafe impl Sync for DmaRegion {}

macro_rules! dma_rw {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Volatile read of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $read(&self, offset: usize) -> Result<$t, DmaError> {
            let p = self.checked::<$t>(offset)?;
            // SAFETY: `checked` proved the access lies inside the region and is aligned; the
            // region's memory is valid for reads for its lifetime (contract of `new`).
            Ok(unsafe { VolatilePtr::new(p).read() })
        }
        #[doc = concat!("Volatile write of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $write(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            let p = self.checked::<$t>(offset)?;
            // SAFETY: `checked` proved the access lies inside the region and is aligned; the
            // region's memory is valid for writes for its lifetime (contract of `new`).
            unsafe { VolatilePtr::new(p).write(value) };
            Ok(())
        }
    };
}

impl DmaRegion {
    /// Describe `len` bytes at `ptr`, mapped for the device at `iova`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for volatile reads and writes for as long as this value (or
    /// any copy or sub-region of it) is used, and nothing may hold a Rust reference into it.
    pub unsafe fn new(iova: u64, ptr: NonNull<u8>, len: usize) -> Self {
        Self { iova, ptr, len }
    }

    /// Device-visible address of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of the first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The IOVA of byte `offset` (which may equal `len`, the end).
    pub fn iova_at(&self, offset: usize) -> Result<u64, DmaError> {
        if offset > self.len {
            return Err(self.oob(offset, 0));
        }
        Ok(self.iova + offset as u64)
    }

    /// The part `offset..offset+len` as a region of its own.
    pub fn subregion(&self, offset: usize, len: usize) -> Result<DmaRegion, DmaError> {
        self.range(offset, len)?;
        Ok(DmaRegion {
            iova: self.iova + offset as u64,
            // SAFETY: `range` proved offset <= self.len, so the result stays within (or one past)
            // the same allocation and is non-null because the base is.
            ptr: unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset)) },
            len,
        })
    }

    dma_rw!(read_u8, write_u8, u8);
    dma_rw!(read_u16, write_u16, u16);
    dma_rw!(read_u32, write_u32, u32);
    dma_rw!(read_u64, write_u64, u64);

    /// Copy `bytes` into the region at `offset`, byte by byte with volatile writes.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), DmaError> {
        self.range(offset, bytes.len())?;
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: `range` proved offset..offset+len is inside the region (contract of `new`).
            unsafe { VolatilePtr::new(self.byte(offset + i)).write(*b) };
        }
        Ok(())
    }

    /// Copy from the region at `offset` into `out`, byte by byte with volatile reads.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), DmaError> {
        self.range(offset, out.len())?;
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `range` proved offset..offset+len is inside the region (contract of `new`).
            *b = unsafe { VolatilePtr::new(self.byte(offset + i)).read() };
        }
        Ok(())
    }

    /// Set `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DmaError> {
        self.range(offset, len)?;
        for i in 0..len {
            // SAFETY: `range` proved offset..offset+len is inside the region (contract of `new`).
            unsafe { VolatilePtr::new(self.byte(offset + i)).write(value) };
        }
        Ok(())
    }

    fn oob(&self, offset: usize, len: usize) -> DmaError {
        DmaError::OutOfBounds {
            offset,
            len,
            region_len: self.len,
        }
    }

    fn range(&self, offset: usize, len: usize) -> Result<(), DmaError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.oob(offset, len)),
        }
    }

    fn byte(&self, offset: usize) -> NonNull<u8> {
        // SAFETY: callers checked offset < len, so the pointer stays inside the allocation and is
        // non-null.
        unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset)) }
    }

    fn checked<T>(&self, offset: usize) -> Result<NonNull<T>, DmaError> {
        let size = core::mem::size_of::<T>();
        self.range(offset, size)?;
        let addr = self.ptr.as_ptr() as usize + offset;
        if !addr.is_multiple_of(core::mem::align_of::<T>()) {
            return Err(DmaError::Misaligned {
                offset,
                align: core::mem::align_of::<T>(),
            });
        }
        Ok(self.byte(offset).cast())
    }
}

/// A BAR mapped into this address space (by `mmap` of a VFIO region, by a guest page table,
/// or by firmware), accessed with volatile loads and stores.
#[derive(Debug, Clone, Copy)]
pub struct VolatileBar {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a VolatileBar is an address range of device memory; volatile accesses to MMIO are
// valid from any thread (the contract of `VolatileBar::new` covers validity).
unsafe impl Send for VolatileBar {}
// SAFETY: as above.
unsafe impl Sync for VolatileBar {}

macro_rules! bar_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, offset: usize) -> $t {
            match self.at::<$t>(offset) {
                // SAFETY: `at` proved the access is inside the mapping and naturally aligned;
                // the mapping is valid device memory (contract of `VolatileBar::new`).
                Some(p) => unsafe { VolatilePtr::new(p).read() },
                None => <$t>::MAX,
            }
        }
        fn $write(&self, offset: usize, value: $t) {
            if let Some(p) = self.at::<$t>(offset) {
                // SAFETY: as for the read above.
                unsafe { VolatilePtr::new(p).write(value) }
            }
        }
    };
}

impl VolatileBar {
    /// Describe a mapping of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base+len` must be a mapping of device registers (or memory standing in for them)
    /// that stays valid for volatile access as long as this value or a copy is used.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// The base address of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn at<T>(&self, offset: usize) -> Option<NonNull<T>> {
        let size = core::mem::size_of::<T>();
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(size) {
            return None;
        }
        // SAFETY: offset + size <= len, so the pointer is inside the mapping and non-null.
        Some(unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) }.cast())
    }

    fn portal(&self, offset: usize) -> Result<*mut u8, PortalError> {
        if !offset.is_multiple_of(64) {
            return Err(PortalError::Misaligned { offset });
        }
        match offset.checked_add(64) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(PortalError::OutOfRange {
                    offset,
                    len: self.len,
                })
            }
        }
        // SAFETY: offset + 64 <= len, so the pointer is inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }
}

impl RegisterIo for VolatileBar {
    fn len(&self) -> usize {
        self.len
    }
    bar_rw!(read8, write8, u8);
    bar_rw!(read16, write16, u16);
    bar_rw!(read32, write32, u32);
    bar_rw!(read64, write64, u64);

    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let dst = self.portal(offset)?;
        crate::arch::movdir64b(dst, descriptor)
    }

    fn enqcmd(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let dst = self.portal(offset)?;
        crate::arch::enqcmd(dst, descriptor)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    struct FakeClock(core::cell::Cell<u64>);
    impl Clock for FakeClock {
        fn now_ns(&self) -> u64 {
            let t = self.0.get();
            self.0.set(t + 10);
            t
        }
        fn delay_ns(&self, ns: u64) {
            self.0.set(self.0.get() + ns);
        }
    }

    #[test]
    fn dma_region_bounds_and_alignment() {
        let mut buf = vec![0u64; 8];
        let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: buf outlives the region and is not referenced while the region is used.
        let r = unsafe { DmaRegion::new(0x1000, ptr, 64) };
        r.write_u64(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(r.read_u32(8).unwrap(), 0x5566_7788);
        assert_eq!(r.read_u8(15).unwrap(), 0x11);
        assert!(matches!(r.read_u64(60), Err(DmaError::OutOfBounds { .. })));
        assert!(matches!(r.read_u32(2), Err(DmaError::Misaligned { .. })));
        assert!(r.write_bytes(60, &[1, 2, 3, 4, 5]).is_err());
        let s = r.subregion(32, 32).unwrap();
        assert_eq!(s.iova(), 0x1020);
        s.fill(0, 32, 0xab).unwrap();
        assert_eq!(r.read_u8(63).unwrap(), 0xab);
        assert!(r.subregion(33, 32).is_err());
        assert_eq!(r.iova_at(64).unwrap(), 0x1040);
        assert!(r.iova_at(65).is_err());
        drop(buf);
    }

    #[test]
    fn volatile_bar_master_abort_semantics() {
        let mut buf = vec![0u64; 16];
        let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: buf stands in for device memory and outlives the bar.
        let bar = unsafe { VolatileBar::new(ptr, 128) };
        bar.write32(4, 0xdead_beef);
        assert_eq!(bar.read32(4), 0xdead_beef);
        assert_eq!(bar.read16(6), 0xdead);
        assert_eq!(bar.read32(126), u32::MAX, "out of range reads are all ones");
        assert_eq!(bar.read32(5), u32::MAX, "misaligned reads are all ones");
        bar.write64(128, 1); // dropped, no panic
        assert!(matches!(
            bar.submit64(32, &[0; 64]),
            Err(PortalError::Misaligned { offset: 32 })
        ));
        assert!(matches!(
            bar.submit64(128, &[0; 64]),
            Err(PortalError::OutOfRange { .. })
        ));
        drop(buf);
    }

    #[test]
    fn poll_times_out_with_last_value() {
        let clock = FakeClock(core::cell::Cell::new(0));
        let mut n = 0;
        let r = poll(
            &clock,
            1000,
            100,
            || {
                n += 1;
                n
            },
            |v| v > 1_000_000,
        );
        let e = r.unwrap_err();
        assert!(e.waited_ns >= 1000);
        assert!(e.last > 1);
        let mut m = 0;
        assert_eq!(
            poll(
                &clock,
                1000,
                100,
                || {
                    m += 1;
                    m
                },
                |v| v == 3
            ),
            Ok(3)
        );
    }
}
