//! The seam inside a guest: what `passthru-drivers` need, served by the VMM.
//!
//! * [`GuestFunction`]: a `PciFunction` whose configuration space, interrupt enable/disable,
//!   reset and BAR layout are host requests ([`super::request`]); interrupts are delivered to
//!   this guest as `MsiTarget::vector_base + device vector` on the chosen APIC.
//! * [`GuestBar`]: a BAR at its guest-physical address (identity-mapped), accessed with volatile
//!   loads and stores. A model BAR has no memory slot, so every access exits to the VMM; a
//!   passed-through BAR may be a memory slot over the device. A 64-byte portal submission is
//!   eight ascending 8-byte stores, which the VMM assembles into one descriptor (a guest here
//!   has no MOVDIR64B, and a 64-byte store to an exit-served BAR arrives in 8-byte pieces
//!   anyway).
//! * [`identity_memory`]: guest RAM as the `DmaMemory` that lends drivers their `DmaRegion`, at
//!   IOVA = GPA (the VMM maps the DMA window and guest RAM for the device at their GPAs).
//! * The interrupt-wait hook (`PciFunction::irq_wait`): `HLT` until the guest's handler has
//!   counted an interrupt on the vector's guest vector ([`irqs::wait`]).
//! * The clock is [`crate::clock::TscClock`].

use core::ptr::NonNull;

use passthru_core::mmio::{
    DmaMemory, FunctionError, IrqKind, PciFunction, PortalError, RegisterIo, VolatileBar,
};

use super::request::{decode_reply, DeviceRequest, MsiTarget, Reply, REPLY_WORDS};
use crate::ucall;

/// The host-request code of a device request (`ucall::host_request(DEVICE_REQUEST, words)`).
pub const DEVICE_REQUEST: u64 = super::request::DEVICE_REQUEST_CODE;

/// Send `req` to the VMM and decode the reply.
pub fn request(req: DeviceRequest) -> Result<Reply, FunctionError> {
    let op = req.op();
    let words = req.encode();
    match ucall::host_request(DEVICE_REQUEST, &words) {
        Ok(r) => {
            let mut w = [0u64; REPLY_WORDS];
            w.copy_from_slice(&r[..REPLY_WORDS]);
            decode_reply(w).map_err(|e| e.to_function_error(op))
        }
        // The VMM has no device handler, or it failed outright.
        Err(_) => Err(FunctionError::Unsupported(op.name())),
    }
}

/// A PCI function the VMM gives this guest (device `index` of the VMM's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFunction {
    index: u8,
    target: MsiTarget,
}

impl GuestFunction {
    /// Device `index`, its interrupts delivered per `target`.
    pub const fn new(index: u8, target: MsiTarget) -> Self {
        Self { index, target }
    }

    /// Where its interrupts go.
    pub fn target(&self) -> MsiTarget {
        self.target
    }

    /// The guest vector of device vector `v`.
    pub fn guest_vector(&self, v: u32) -> Option<u8> {
        self.target.guest_vector(v)
    }

    fn config_read(&self, offset: u16, width: u8) -> Result<u32, FunctionError> {
        request(DeviceRequest::ConfigRead {
            device: self.index,
            offset,
            width,
        })
        .map(|r| r.value as u32)
    }

    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), FunctionError> {
        request(DeviceRequest::ConfigWrite {
            device: self.index,
            offset,
            width,
            value,
        })
        .map(|_| ())
    }
}

impl PciFunction for GuestFunction {
    type Bar = GuestBar;

    fn bar(&self, index: u8) -> Result<GuestBar, FunctionError> {
        let r = request(DeviceRequest::BarInfo {
            device: self.index,
            index,
        })?;
        let len = usize::try_from(r.extra).map_err(|_| FunctionError::NoSuchBar(index))?;
        let end = r.value.checked_add(r.extra);
        // The runtime identity-maps the low 4 GiB only.
        if len == 0 || end.is_none_or(|e| e > crate::abi::IDENTITY_MAP_SIZE) {
            return Err(FunctionError::NoSuchBar(index));
        }
        let base = NonNull::new(r.value as *mut u8).ok_or(FunctionError::NoSuchBar(index))?;
        // SAFETY: the VMM placed the BAR at this GPA, which the runtime's page tables map 1:1
        // (checked above); it is MMIO (exits) or a memory slot over the device for the VM's
        // lifetime, and only ever accessed with volatile operations.
        let io = unsafe { VolatileBar::new(base, len) };
        Ok(GuestBar { io })
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        self.config_read(offset, 1).map(|v| v as u8)
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        self.config_read(offset, 2).map(|v| v as u16)
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        self.config_read(offset, 4)
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        self.config_write(offset, 1, value.into())
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        self.config_write(offset, 2, value.into())
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        self.config_write(offset, 4, value)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        request(DeviceRequest::IrqEnable {
            device: self.index,
            kind,
            first,
            count,
            target: self.target,
        })
        .map(|_| ())
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        request(DeviceRequest::IrqDisable {
            device: self.index,
            kind,
        })
        .map(|_| ())
    }
    fn reset(&self) -> Result<(), FunctionError> {
        request(DeviceRequest::Reset { device: self.index }).map(|_| ())
    }
    /// Blocks in `HLT` until this vCPU's handler has counted an interrupt on the guest vector
    /// of device vector `vector` (interrupts must be routed to this vCPU's APIC), then takes the
    /// pending ones ([`irqs::wait`]). Only vectors the target can route are known here; whether
    /// the device enabled the vector is the VMM's business.
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        if kind == IrqKind::Intx {
            return Err(FunctionError::Unsupported("INTx in a guest"));
        }
        let g = self
            .guest_vector(vector)
            .ok_or(FunctionError::NoSuchVector { kind, vector })?;
        Ok(irqs::wait(g, timeout_ns))
    }
}

/// A BAR at its guest-physical address (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct GuestBar {
    io: VolatileBar,
}

impl RegisterIo for GuestBar {
    fn len(&self) -> usize {
        self.io.len()
    }
    fn read8(&self, offset: usize) -> u8 {
        self.io.read8(offset)
    }
    fn read16(&self, offset: usize) -> u16 {
        self.io.read16(offset)
    }
    fn read32(&self, offset: usize) -> u32 {
        self.io.read32(offset)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.io.read64(offset)
    }
    fn write8(&self, offset: usize, value: u8) {
        self.io.write8(offset, value)
    }
    fn write16(&self, offset: usize, value: u16) {
        self.io.write16(offset, value)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.io.write32(offset, value)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.io.write64(offset, value)
    }
    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        if !offset.is_multiple_of(64) {
            return Err(PortalError::Misaligned { offset });
        }
        if offset.checked_add(64).is_none_or(|e| e > self.io.len()) {
            return Err(PortalError::OutOfRange {
                offset,
                len: self.io.len(),
            });
        }
        for (i, chunk) in descriptor.chunks_exact(8).enumerate() {
            let mut q = [0u8; 8];
            q.copy_from_slice(chunk);
            self.io.write64(offset + 8 * i, u64::from_le_bytes(q));
        }
        Ok(())
    }
}

/// Guest RAM at `gpa..gpa+len` as the `DmaMemory` that lends drivers their regions, seen by
/// the device at IOVA = GPA. `None` if the range leaves the identity map or starts at 0.
///
/// # Safety
/// The range must be guest RAM inside the identity map that the VMM mapped for the device at
/// IOVA = GPA, that stays mapped while the returned value lives, and that nothing else in the
/// guest uses or references meanwhile.
pub unsafe fn identity_memory(gpa: u64, len: usize) -> Option<DmaMemory> {
    let end = gpa.checked_add(len as u64)?;
    if end > crate::abi::IDENTITY_MAP_SIZE {
        return None;
    }
    let ptr = NonNull::new(gpa as *mut u8)?;
    // SAFETY: forwarded caller contract; GVA = GPA under the runtime's identity map.
    Some(unsafe { DmaMemory::new(gpa, ptr, len) })
}

/// Interrupts of a guest vector as a driver sees them: delivered (counted by the runtime's
/// stubs on this vCPU) and not yet taken. Taking never writes the stubs' counters; it moves a
/// per-vector mark, so the host's and the runtime's view of the counts stay intact.
pub mod irqs {
    use core::sync::atomic::{AtomicU64, Ordering};

    use x86_64::registers::model_specific::Msr;

    use crate::abi::APIC_MODE_X2APIC;
    use crate::percpu::this_cpu;

    static TAKEN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

    /// The vector the wait's wake-up timer fires on (counted like any other; never a device's).
    pub const WAKE_VECTOR: u8 = 0xfe;
    /// The longest single `HLT` of [`wait`] before it re-checks its deadline (APIC timer ticks;
    /// KVM's APIC timer runs at 1 GHz, so about 1 ms).
    pub const WAKE_TICKS: u32 = 1_000_000;

    const X2APIC_LVT_TIMER: u32 = 0x832;
    const X2APIC_TIMER_INITIAL: u32 = 0x838;
    const X2APIC_TIMER_DIVIDE: u32 = 0x83e;
    const XAPIC_LVT_TIMER: u64 = 0x320;
    const XAPIC_TIMER_INITIAL: u64 = 0x380;
    const XAPIC_TIMER_DIVIDE: u64 = 0x3e0;
    /// Divide configuration "divide by 1".
    const DIVIDE_BY_1: u32 = 0b1011;

    /// Interrupts on `vector` delivered to this vCPU and not yet taken.
    pub fn pending(vector: u8) -> u64 {
        crate::irq::count(vector).wrapping_sub(TAKEN[vector as usize].load(Ordering::Acquire))
    }

    /// Take (and return) the pending interrupts of `vector`.
    pub fn take(vector: u8) -> u64 {
        let c = crate::irq::count(vector);
        c.wrapping_sub(TAKEN[vector as usize].swap(c, Ordering::AcqRel))
    }

    fn timer(initial: u32) {
        // SAFETY: this vCPU's PerCpu block.
        let mode = unsafe { core::ptr::addr_of!((*this_cpu()).apic_mode).read_volatile() };
        let lvt = u64::from(WAKE_VECTOR); // one-shot, unmasked
        if mode == APIC_MODE_X2APIC {
            // SAFETY: x2APIC mode is on (the runtime's apic::enable); the LVT timer, divide and
            // initial-count MSRs are architectural and only arm this vCPU's own timer.
            unsafe {
                Msr::new(X2APIC_TIMER_DIVIDE).write(DIVIDE_BY_1.into());
                Msr::new(X2APIC_LVT_TIMER).write(lvt);
                Msr::new(X2APIC_TIMER_INITIAL).write(initial.into());
            }
        } else {
            let base = crate::apic::XAPIC_BASE;
            // SAFETY: the identity-mapped local APIC page (served by the in-kernel APIC); 32-bit
            // stores to the timer registers only arm this vCPU's own timer.
            unsafe {
                ((base + XAPIC_TIMER_DIVIDE) as *mut u32).write_volatile(DIVIDE_BY_1);
                ((base + XAPIC_LVT_TIMER) as *mut u32).write_volatile(lvt as u32);
                ((base + XAPIC_TIMER_INITIAL) as *mut u32).write_volatile(initial);
            }
        }
    }

    /// Block in `HLT` until `vector` has a pending interrupt or `timeout_ns` passes (the local
    /// APIC timer wakes the `HLT` about every millisecond to check the deadline), then take the
    /// pending interrupts and return how many there were (0: timeout). The APIC must be enabled
    /// (`apic::enable`); interrupts are enabled on return.
    pub fn wait(vector: u8, timeout_ns: u64) -> u64 {
        let start = crate::clock::now_ns();
        loop {
            crate::irq::disable();
            if pending(vector) != 0 {
                crate::irq::enable();
                break;
            }
            let waited = crate::clock::now_ns().wrapping_sub(start);
            if waited >= timeout_ns {
                crate::irq::enable();
                break;
            }
            let left = (timeout_ns - waited).min(u64::from(WAKE_TICKS)).max(1);
            timer(left as u32);
            // `sti; hlt` is atomic with respect to interrupts: the device's interrupt or the
            // timer's wakes it.
            x86_64::instructions::interrupts::enable_and_hlt();
        }
        timer(0);
        take(vector)
    }
}
