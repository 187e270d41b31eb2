//! The seam between drivers and backends, and a volatile-pointer implementation of it.
//!
//! A driver sees exactly four things:
//!
//! 1. [`RegisterIo`]: one BAR, read and written by byte offset at 8/16/32/64 bits, plus a 64-byte
//!    portal submission (MOVDIR64B on hardware, ENQCMD for shared work queues).
//! 2. [`PciFunction`]: configuration space, interrupt enable/disable, function reset, the BARs,
//!    and [`PciFunction::irq_wait`], the hook that lets a driver sleep until one of its
//!    interrupt vectors fires instead of polling.
//! 3. [`DmaRegion`]: memory lent by the caller for a lifetime, already mapped in the IOMMU at a
//!    known IOVA, with volatile typed (`zerocopy`) and bulk access. Its owner is either a
//!    backend's own buffer type or, for hosts without one, [`DmaMemory`].
//! 4. [`Clock`]: a monotonic clock and a delay, so every poll is bounded.
//!
//! # What a backend implements
//!
//! * [`RegisterIo`] per BAR ([`VolatileBar`] does it for any mapping: a VFIO `mmap`, a guest
//!   page-table mapping of a BAR's GPA, firmware's identity map; a VMM serving MMIO exits or a
//!   software model implements it by hand). Out-of-range or misaligned accesses never fault and
//!   never panic: reads return all ones and writes are dropped, which is what a PCIe master abort
//!   looks like to software.
//! * [`PciFunction`]: the config-space accessors, `irq_enable` / `irq_disable`, `reset`, `bar`,
//!   and, for interrupt-driven waits, `irq_wait` (its documentation lists the contract: a
//!   per-vector counter, block until it is non-zero or the timeout passes, swap it to zero,
//!   `Ok(0)` on timeout). Implementations in this workspace: VFIO eventfds with poll(2)
//!   (`passthru-linux`), the models' MSI sink (`passthru-models`), and the KVM guest runtime
//!   (`passthru_guest_rt::device::GuestFunction`), which halts until its interrupt handler's
//!   count for the vector moves.
//! * A [`DmaRegion`] the driver may keep for the lifetime `'r` of its type: lend it from the type
//!   that owns the memory (`fn region(&self) -> DmaRegion<'_>`, built with
//!   [`DmaRegion::from_raw_parts`]), or put the range in a [`DmaMemory`] and lend its
//!   [`DmaMemory::region`].
//! * A [`Clock`].
//!
//! Nothing here forms a Rust reference to device or DMA-visible memory.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use volatile::VolatilePtr;
use zerocopy::{FromBytes, Immutable, IntoBytes};

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

impl core::error::Error for PortalError {}

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

impl fmt::Display for IrqKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Intx => "INTx",
            Self::Msi => "MSI",
            Self::MsiX => "MSI-X",
        })
    }
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
    /// The interrupt vector does not exist or is not enabled.
    NoSuchVector {
        /// The interrupt mechanism.
        kind: IrqKind,
        /// The vector.
        vector: u32,
    },
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
            Self::NoSuchVector { kind, vector } => {
                write!(f, "{kind} vector {vector} does not exist or is not enabled")
            }
            Self::Os { op, errno } => write!(f, "{op} failed with errno {errno}"),
        }
    }
}

impl core::error::Error for FunctionError {}

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
    /// Block until interrupt `vector` of `kind` has fired at least once since the interrupts of
    /// that vector were last taken (by this call or by any other reader of the same counter), or
    /// until `timeout_ns` has passed. Takes every interrupt counted so far on that vector and
    /// returns how many there were; `Ok(0)` means the timeout passed with none.
    ///
    /// This is the hook that lets a driver sleep instead of polling (see
    /// [`crate::driver::WaitMode::Interrupt`]). What a backend implements:
    ///
    /// * a counter per enabled vector, incremented once per interrupt message delivered for it
    ///   (VFIO: the eventfd given to `VFIO_DEVICE_SET_IRQS`; a KVM guest: the count its interrupt
    ///   handler bumps before EOI; the models: their MSI sink);
    /// * this method: return at once if the counter is non-zero, otherwise block (poll(2) on the
    ///   eventfd, HLT until the handler's count moves, a condition variable) until it becomes
    ///   non-zero or `timeout_ns` passes; then swap the counter to zero and return the old value;
    /// * an error only when waiting is impossible: the vector is not enabled or does not exist
    ///   ([`FunctionError::NoSuchVector`]), or the OS refused ([`FunctionError::Os`]).
    ///
    /// A timeout is not an error here: the driver turns `Ok(0)` into
    /// [`crate::driver::DriverError::InterruptTimeout`], naming the vector. The default says
    /// [`FunctionError::Unsupported`].
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        let _ = (kind, vector, timeout_ns);
        Err(FunctionError::Unsupported("waiting for an interrupt"))
    }
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
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        (**self).irq_wait(kind, vector, timeout_ns)
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

impl fmt::Display for PollTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {} us (last value {:#x})",
            self.waited_ns / 1000,
            self.last
        )
    }
}

impl core::error::Error for PollTimeout {}

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

impl core::error::Error for DmaError {}

/// Memory a host owns for DMA: `len` bytes at host address `ptr`, mapped for the device at
/// `iova`. It lends [`DmaRegion`] views that cannot outlive it.
///
/// This is the owner for hosts without an allocator of their own (firmware, a KVM guest whose
/// RAM is identity-mapped): the `unsafe` constructor states the validity contract once, and every
/// view borrows from the owner, so the type system keeps views from outliving it. Hosts that own
/// memory in a richer type (an `mmap`ed buffer, a model's host memory) lend views directly with
/// [`DmaRegion::from_raw_parts`] from a method borrowing `&self`.
#[derive(Debug)]
pub struct DmaMemory {
    iova: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: DmaMemory describes an address range; it is only accessed through views, whose every
// access is a volatile raw-pointer access, as valid from one thread as from another. Validity is
// the contract of `DmaMemory::new`.
unsafe impl Send for DmaMemory {}
// SAFETY: as above; shared use only lends views.
unsafe impl Sync for DmaMemory {}

impl DmaMemory {
    /// Take charge of `len` bytes at `ptr`, mapped for the device at `iova`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for volatile reads and writes for as long as this value
    /// lives, and nothing may hold a Rust reference into it meanwhile (the device writes it at
    /// any time).
    pub unsafe fn new(iova: u64, ptr: NonNull<u8>, len: usize) -> Self {
        Self { iova, ptr, len }
    }

    /// A view of all of the memory, borrowing `self`.
    pub fn region(&self) -> DmaRegion<'_> {
        // SAFETY: the contract of `new` makes the range valid while `self` lives, and the view
        // borrows `self`.
        unsafe { DmaRegion::from_raw_parts(self.iova, self.ptr, self.len) }
    }

    /// Device-visible address of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A view of DMA memory lent to a driver for the lifetime `'a`: `len` bytes at a host address,
/// visible to the device at [`DmaRegion::iova`].
///
/// All accesses are volatile and bounds-checked; no Rust reference to the memory is ever formed,
/// because the device may write it at any time. Besides the fixed-width accessors there are
/// typed accessors ([`DmaRegion::read`] / [`DmaRegion::write`] of any `zerocopy` type) and bulk
/// ones ([`DmaRegion::copy_from_slice`], [`DmaRegion::copy_to_slice`], [`DmaRegion::fill`],
/// [`DmaRegion::first_difference`], [`DmaRegion::first_mismatch`]). Bulk accesses use one
/// volatile 64-bit access per naturally aligned 8-byte word and volatile byte accesses only for
/// an unaligned head and tail; the device may observe any split of a bulk access into such words.
/// The view is `Copy`; [`DmaRegion::subregion`] borrows from the same owner.
#[derive(Debug, Clone, Copy)]
pub struct DmaRegion<'a> {
    iova: u64,
    ptr: NonNull<u8>,
    len: usize,
    _owner: PhantomData<&'a UnsafeCell<[u8]>>,
}

// SAFETY: a DmaRegion is an address range; every access through it is a volatile raw-pointer
// access, which is as valid from one thread as from another (the device writes it concurrently
// anyway). Validity of the memory for 'a is the contract of its constructor.
unsafe impl Send for DmaRegion<'_> {}
// SAFETY: as above; shared use only performs volatile raw-pointer accesses.
unsafe impl Sync for DmaRegion<'_> {}

macro_rules! dma_rw {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Volatile read of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $read(&self, offset: usize) -> Result<$t, DmaError> {
            let p = self.checked::<$t>(offset)?;
            // SAFETY: `checked` proved the access lies inside the region and is aligned; the
            // region's memory is valid for reads for 'a (contract of the constructor).
            Ok(unsafe { VolatilePtr::new(p).read() })
        }
        #[doc = concat!("Volatile write of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $write(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            let p = self.checked::<$t>(offset)?;
            // SAFETY: `checked` proved the access lies inside the region and is aligned; the
            // region's memory is valid for writes for 'a (contract of the constructor).
            unsafe { VolatilePtr::new(p).write(value) };
            Ok(())
        }
    };
}

const WORD: usize = core::mem::size_of::<u64>();

impl<'a> DmaRegion<'a> {
    /// A view of `len` bytes at `ptr`, mapped for the device at `iova`, for the lifetime `'a`.
    /// Backends call this from a method of the type owning the memory, borrowing it for `'a`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for volatile reads and writes for all of `'a`, and nothing
    /// may hold a Rust reference into it during `'a`.
    pub unsafe fn from_raw_parts(iova: u64, ptr: NonNull<u8>, len: usize) -> Self {
        Self {
            iova,
            ptr,
            len,
            _owner: PhantomData,
        }
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

    /// Host address of the first byte (for diagnostics and for handing the range to an OS call;
    /// accessing memory through it is the caller's `unsafe` business).
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

    /// The part `offset..offset+len` as a view of its own, borrowing from the same owner.
    pub fn subregion(&self, offset: usize, len: usize) -> Result<DmaRegion<'a>, DmaError> {
        self.range(offset, len)?;
        Ok(DmaRegion {
            iova: self.iova + offset as u64,
            // SAFETY: `range` proved offset <= self.len, so the result stays within (or one past)
            // the same allocation and is non-null because the base is.
            ptr: unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset)) },
            len,
            _owner: PhantomData,
        })
    }

    dma_rw!(read_u8, write_u8, u8);
    dma_rw!(read_u16, write_u16, u16);
    dma_rw!(read_u32, write_u32, u32);
    dma_rw!(read_u64, write_u64, u64);

    /// Read a `T` at `offset` (any alignment) with bulk volatile reads. A record the device writes
    /// piecewise (a DSA completion record, a CBDMA write-back) should be read after the field that
    /// vouches for it, with a read barrier in between.
    pub fn read<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, DmaError> {
        let mut value = T::new_zeroed();
        self.copy_to_slice(offset, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Write `value` at `offset` (any alignment) with bulk volatile writes.
    pub fn write<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) -> Result<(), DmaError> {
        self.copy_from_slice(offset, value.as_bytes())
    }

    /// Copy `bytes` into the region at `offset`.
    pub fn copy_from_slice(&self, offset: usize, bytes: &[u8]) -> Result<(), DmaError> {
        self.range(offset, bytes.len())?;
        let (head, body, tail) = self.split(offset, bytes.len());
        for (i, b) in bytes[..head].iter().enumerate() {
            // SAFETY: `range` proved offset..offset+len is inside the region.
            unsafe { VolatilePtr::new(self.byte(offset + i)).write(*b) };
        }
        for (w, chunk) in bytes[head..head + body].chunks_exact(WORD).enumerate() {
            let mut word = [0u8; WORD];
            word.copy_from_slice(chunk);
            let p = self.byte(offset + head + w * WORD).cast::<u64>();
            // SAFETY: inside the region (checked) and 8-byte aligned (`split`).
            unsafe { VolatilePtr::new(p).write(u64::from_ne_bytes(word)) };
        }
        for (i, b) in bytes[head + body..].iter().enumerate() {
            // SAFETY: inside the region (checked).
            unsafe { VolatilePtr::new(self.byte(offset + head + body + i)).write(*b) };
        }
        debug_assert_eq!(head + body + tail, bytes.len());
        Ok(())
    }

    /// Copy from the region at `offset` into `out`.
    pub fn copy_to_slice(&self, offset: usize, out: &mut [u8]) -> Result<(), DmaError> {
        self.range(offset, out.len())?;
        let (head, body, _) = self.split(offset, out.len());
        let (out_head, rest) = out.split_at_mut(head);
        let (out_body, out_tail) = rest.split_at_mut(body);
        for (i, b) in out_head.iter_mut().enumerate() {
            // SAFETY: `range` proved offset..offset+len is inside the region.
            *b = unsafe { VolatilePtr::new(self.byte(offset + i)).read() };
        }
        for (w, chunk) in out_body.chunks_exact_mut(WORD).enumerate() {
            let p = self.byte(offset + head + w * WORD).cast::<u64>();
            // SAFETY: inside the region (checked) and 8-byte aligned (`split`).
            let word = unsafe { VolatilePtr::new(p).read() };
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        for (i, b) in out_tail.iter_mut().enumerate() {
            // SAFETY: inside the region (checked).
            *b = unsafe { VolatilePtr::new(self.byte(offset + head + body + i)).read() };
        }
        Ok(())
    }

    /// Set `len` bytes at `offset` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) -> Result<(), DmaError> {
        self.range(offset, len)?;
        let (head, body, tail) = self.split(offset, len);
        let word = u64::from_ne_bytes([value; WORD]);
        for i in (0..head).chain(head + body..head + body + tail) {
            // SAFETY: `range` proved offset..offset+len is inside the region.
            unsafe { VolatilePtr::new(self.byte(offset + i)).write(value) };
        }
        for w in 0..body / WORD {
            let p = self.byte(offset + head + w * WORD).cast::<u64>();
            // SAFETY: inside the region (checked) and 8-byte aligned (`split`).
            unsafe { VolatilePtr::new(p).write(word) };
        }
        Ok(())
    }

    /// The first index `i < len` where byte `a + i` differs from byte `b + i`, or `None` if the
    /// two ranges are equal. Reads both ranges in chunks through a small stack buffer.
    pub fn first_difference(
        &self,
        a: usize,
        b: usize,
        len: usize,
    ) -> Result<Option<usize>, DmaError> {
        self.range(a, len)?;
        self.range(b, len)?;
        let mut x = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = x.len().min(len - done);
            self.copy_to_slice(a + done, &mut x[..n])?;
            if let Some(i) = self.first_mismatch(b + done, &x[..n])? {
                return Ok(Some(done + i));
            }
            done += n;
        }
        Ok(None)
    }

    /// The first index `i` where byte `offset + i` of the region differs from `expected[i]`, or
    /// `None` if the region holds exactly `expected` there.
    pub fn first_mismatch(
        &self,
        offset: usize,
        expected: &[u8],
    ) -> Result<Option<usize>, DmaError> {
        self.range(offset, expected.len())?;
        let mut y = [0u8; 256];
        let mut done = 0;
        while done < expected.len() {
            let n = y.len().min(expected.len() - done);
            self.copy_to_slice(offset + done, &mut y[..n])?;
            if let Some(i) = y[..n]
                .iter()
                .zip(&expected[done..done + n])
                .position(|(p, q)| p != q)
            {
                return Ok(Some(done + i));
            }
            done += n;
        }
        Ok(None)
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

    /// Split `offset..offset+len` (in range) into an unaligned head, a body of whole aligned
    /// 8-byte words, and a tail: returns their lengths.
    fn split(&self, offset: usize, len: usize) -> (usize, usize, usize) {
        let addr = self.ptr.as_ptr() as usize + offset;
        let head = (addr.next_multiple_of(WORD) - addr).min(len);
        let body = (len - head) / WORD * WORD;
        (head, body, len - head - body)
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
        // SAFETY: `portal` checked that dst..dst+64 lies inside this BAR mapping, which
        // `VolatileBar::new`'s contract makes device memory never accessed through references.
        unsafe { crate::arch::movdir64b(dst, descriptor) }
    }

    fn enqcmd(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let dst = self.portal(offset)?;
        // SAFETY: as in `submit64`: an aligned 64-byte range inside the device mapping.
        unsafe { crate::arch::enqcmd(dst, descriptor) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

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
        // SAFETY: buf outlives `memory` and is not referenced while it lives.
        let memory = unsafe { DmaMemory::new(0x1000, ptr, 64) };
        let r = memory.region();
        assert_eq!((memory.iova(), memory.len()), (0x1000, 64));
        r.write_u64(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(r.read_u32(8).unwrap(), 0x5566_7788);
        assert_eq!(r.read_u8(15).unwrap(), 0x11);
        assert!(matches!(r.read_u64(60), Err(DmaError::OutOfBounds { .. })));
        assert!(matches!(r.read_u32(2), Err(DmaError::Misaligned { .. })));
        assert!(r.copy_from_slice(60, &[1, 2, 3, 4, 5]).is_err());
        let s = r.subregion(32, 32).unwrap();
        assert_eq!(s.iova(), 0x1020);
        s.fill(0, 32, 0xab).unwrap();
        assert_eq!(r.read_u8(63).unwrap(), 0xab);
        assert!(r.subregion(33, 32).is_err());
        assert_eq!(r.iova_at(64).unwrap(), 0x1040);
        assert!(r.iova_at(65).is_err());
        drop(buf);
    }

    /// A 24-byte record with mixed field widths, as a device might write it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
    #[repr(C)]
    struct Record {
        status: u8,
        result: u8,
        pad: u16,
        bytes: u32,
        addr: u64,
        tail: u64,
    }

    fn with_region(len: usize, f: impl FnOnce(DmaRegion<'_>)) {
        let mut buf = vec![0u64; len.div_ceil(8)];
        let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: buf outlives `memory` and is not referenced while it lives.
        let memory = unsafe { DmaMemory::new(0x4000, ptr, len) };
        f(memory.region());
        drop(buf);
    }

    #[test]
    fn typed_access_round_trips_at_any_offset() {
        with_region(256, |r| {
            let rec = Record {
                status: 0x81,
                result: 2,
                pad: 0x3344,
                bytes: 0x1122_3344,
                addr: 0xdead_beef_0000_1000,
                tail: u64::MAX - 7,
            };
            for off in [0, 1, 3, 8, 13, 64, 256 - 24] {
                r.fill(0, 256, 0x5a).unwrap();
                r.write(off, &rec).unwrap();
                assert_eq!(r.read::<Record>(off).unwrap(), rec, "offset {off}");
                // The bytes land exactly where the layout says, nothing around them moves.
                assert_eq!(r.read_u8(off).unwrap(), 0x81);
                let mut le = [0u8; 8];
                r.copy_to_slice(off + 8, &mut le).unwrap();
                assert_eq!(u64::from_ne_bytes(le), rec.addr);
                if off > 0 {
                    assert_eq!(r.read_u8(off - 1).unwrap(), 0x5a);
                }
                if off + 24 < 256 {
                    assert_eq!(r.read_u8(off + 24).unwrap(), 0x5a);
                }
            }
            assert!(matches!(
                r.read::<Record>(256 - 23),
                Err(DmaError::OutOfBounds { .. })
            ));
            assert!(r.write(usize::MAX, &rec).is_err());
        });
    }

    #[test]
    fn bulk_copies_match_a_reference_for_every_head_and_tail() {
        with_region(512, |r| {
            let pattern: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
            for off in 0..9 {
                for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 300] {
                    r.fill(0, 512, 0xee).unwrap();
                    r.copy_from_slice(off, &pattern[..len]).unwrap();
                    let mut all = vec![0u8; 512];
                    r.copy_to_slice(0, &mut all).unwrap();
                    let mut want = vec![0xeeu8; 512];
                    want[off..off + len].copy_from_slice(&pattern[..len]);
                    assert_eq!(all, want, "copy in at {off}+{len}");
                    let mut out = vec![0u8; len];
                    r.copy_to_slice(off, &mut out).unwrap();
                    assert_eq!(out, pattern[..len], "copy out at {off}+{len}");
                    assert_eq!(r.first_mismatch(off, &pattern[..len]).unwrap(), None);
                    r.fill(off + 1, len.saturating_sub(2), 0x11).unwrap();
                    for (i, b) in out.iter_mut().enumerate() {
                        if i >= 1 && i + 1 < len {
                            *b = 0x11;
                        }
                    }
                    let mut again = vec![0u8; len];
                    r.copy_to_slice(off, &mut again).unwrap();
                    assert_eq!(again, out, "fill at {}+{}", off + 1, len.saturating_sub(2));
                }
            }
            assert!(r.copy_from_slice(500, &pattern[..13]).is_err());
            let mut out = [0u8; 13];
            assert!(r.copy_to_slice(500, &mut out).is_err());
            assert!(r.fill(511, 2, 0).is_err());
        });
    }

    #[test]
    fn compare_finds_the_first_difference() {
        with_region(4096, |r| {
            let data: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
            r.copy_from_slice(3, &data).unwrap();
            r.copy_from_slice(2000, &data).unwrap();
            assert_eq!(r.first_difference(3, 2000, 1500).unwrap(), None);
            r.write_u8(2000 + 1234, 0xff).unwrap();
            assert_eq!(r.first_difference(3, 2000, 1500).unwrap(), Some(1234));
            assert_eq!(r.first_mismatch(2000, &data).unwrap(), Some(1234));
            assert_eq!(r.first_mismatch(3, &data[..1]).unwrap(), None);
            r.write_u8(3 + 300, 0xfe).unwrap();
            assert_eq!(r.first_difference(3, 2000, 1500).unwrap(), Some(300));
            assert!(r.first_difference(3, 3000, 1500).is_err());
            assert!(r.first_mismatch(4000, &data).is_err());
        });
    }

    #[test]
    fn subregions_share_the_owner_and_check_their_own_bounds() {
        with_region(128, |r| {
            let s = r.subregion(40, 24).unwrap();
            assert_eq!((s.iova(), s.len()), (0x4000 + 40, 24));
            s.copy_from_slice(0, &[9; 24]).unwrap();
            assert_eq!(r.first_mismatch(40, &[9; 24]).unwrap(), None);
            assert_eq!(r.read_u8(39).unwrap(), 0);
            assert_eq!(r.read_u8(64).unwrap(), 0);
            assert!(s.copy_from_slice(1, &[0; 24]).is_err());
            assert!(s.subregion(8, 17).is_err());
        });
    }

    #[test]
    fn errors_are_std_errors() {
        let e: &dyn core::error::Error = &DmaError::Misaligned {
            offset: 3,
            align: 8,
        };
        assert_eq!(
            std::format!("{e}"),
            "DMA region offset 0x3 is not 8-byte aligned"
        );
        let e: &dyn core::error::Error = &PortalError::Retry;
        assert!(e.source().is_none());
        let e: &dyn core::error::Error = &FunctionError::NoSuchVector {
            kind: IrqKind::MsiX,
            vector: 4,
        };
        assert_eq!(
            std::format!("{e}"),
            "MSI-X vector 4 does not exist or is not enabled"
        );
        let t: &dyn core::error::Error = &PollTimeout {
            last: 0x10,
            waited_ns: 3_000,
        };
        assert_eq!(
            std::format!("{t}"),
            "timed out after 3 us (last value 0x10)"
        );
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
