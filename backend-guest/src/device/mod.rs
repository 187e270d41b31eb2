//! PCI functions for a guest: a software model served from MMIO exits, or a real device passed
//! through with VFIO.
//!
//! A guest sees a device as BARs at guest-physical addresses, a DMA window of guest RAM that the
//! device reaches at IOVA = GPA, and MSI/MSI-X vectors delivered as guest interrupts. Everything
//! else (configuration space, interrupt enable, reset, where the BARs are) it asks the VMM for
//! with a [`request::DeviceRequest`], since a guest here has no configuration-space window.
//!
//! * [`model::ModelDevice`]: a `passthru-models` device (DSA, CBDMA, edu). Its BARs get no
//!   memory slot, so guest accesses exit to the VMM, which serves them from the model
//!   ([`BarMmio`]); DSA portal stores are assembled from their ≤ 8-byte pieces
//!   ([`portal::PortalAssembler`]) before the model sees one submission. The model DMAs into
//!   the DMA window through its IOVA table (the window is mapped there at IOVA = GPA); model MSIs
//!   are written to one eventfd per vector, which the VMM attaches to KVM irqfds.
//! * [`vfio::PassthroughDevice`]: a device opened with `passthru-linux`. Mapped BARs become
//!   memory slots (guest accesses reach the device without exits), other BARs are served from
//!   exits; the DMA window and the VMM's guest RAM are mapped in the device's IOMMU at
//!   IOVA = GPA; the device's MSI/MSI-X eventfds go to KVM irqfds (the IRQ bypass path, posted
//!   delivery where the hardware has it).
//!
//! What a device needs from the VMM is the [`Vmm`] trait: MMIO handlers for GPA ranges without
//! memory slots, extra memory slots, and MSI routes fed by eventfds. [`Devices`] dispatches the
//! guest's encoded requests to the right device.

pub mod kvm;
pub mod model;
pub mod portal;
pub mod vfio;

/// The device host-request protocol (shared with the guest runtime).
pub use passthru_guest_rt::device::request;

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};

pub use crate::irq::MsiMessage;
pub use crate::vm::{HandlerError, MmioHandler};

use portal::{PortalAssembler, PortalStats};
use request::{
    decode_reply, encode_reply, DeviceRequest, MsiTarget, Reply, ReplyError, REPLY_WORDS,
    REQUEST_WORDS,
};

/// Host memory that can back guest-physical memory (a memory slot).
///
/// # Safety
/// `host_ptr()..host_ptr()+len()` must be a page-aligned, page-multiple range of mapped memory
/// that stays valid for reads and writes for as long as the value lives, and nothing may hold a
/// Rust reference into it (the guest and devices write it at any time).
pub unsafe trait SlotMemory: Send + Sync {
    /// First byte.
    fn host_ptr(&self) -> *mut u8;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True if the length is 0.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A VMM operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VMM {op}: {reason}")]
pub struct VmmError {
    /// What was attempted (`"KVM_SET_USER_MEMORY_REGION"`, `"KVM_IRQFD"`, ...).
    pub op: &'static str,
    /// Why it failed.
    pub reason: String,
}

/// One range of the VMM's guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRamRange {
    /// Guest-physical address.
    pub gpa: u64,
    /// Host address of its first byte.
    pub host: usize,
    /// Length in bytes.
    pub len: u64,
}

/// What a device backing needs from the VMM.
///
/// Methods take `&self`: they are called from vCPU threads while serving a guest request.
pub trait Vmm {
    /// Serve `gpa..gpa+len` (which must have no memory slot) with `handler`.
    fn add_mmio(&self, gpa: u64, len: u64, handler: Arc<dyn MmioHandler>) -> Result<(), VmmError>;
    /// Stop serving the range registered at `gpa`.
    fn remove_mmio(&self, gpa: u64) -> Result<(), VmmError>;
    /// Install `memory` as guest RAM at `gpa`; the VMM keeps it alive while installed. Returns
    /// the slot.
    fn add_memory(&self, gpa: u64, memory: Arc<dyn SlotMemory>) -> Result<u32, VmmError>;
    /// Remove a slot added with [`Vmm::add_memory`].
    fn remove_memory(&self, slot: u32) -> Result<(), VmmError>;
    /// Deliver `msi` to the guest whenever `fd` (an eventfd) is signalled: a GSI route plus a
    /// KVM irqfd. Returns the GSI.
    fn connect_msi(&self, fd: BorrowedFd<'_>, msi: MsiMessage) -> Result<u32, VmmError>;
    /// Undo [`Vmm::connect_msi`].
    fn disconnect_msi(&self, fd: BorrowedFd<'_>, gsi: u32) -> Result<(), VmmError>;
    /// The VMM's own guest RAM (image, stacks, page tables), for IOMMU mapping at IOVA = GPA.
    fn guest_ram(&self) -> Vec<GuestRamRange>;
}

/// Where a device goes in guest-physical space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLayout {
    /// BARs are placed from here, each naturally aligned (as PCI address decoding requires).
    pub bar_base: u64,
    /// End (exclusive) of the BAR area.
    pub bar_limit: u64,
    /// The DMA window: guest RAM the device may access, at IOVA = GPA.
    pub dma_gpa: u64,
    /// Its length (a multiple of 4 KiB).
    pub dma_len: u64,
    /// A block of at least 1 GiB that is never mapped for the device (fault tests).
    pub unmapped_gpa: u64,
}

impl DeviceLayout {
    /// BARs at 3 GiB .. 3.5 GiB, a DMA window of `dma_len` at 2 GiB, nothing mapped at 16 GiB.
    pub const fn standard(dma_len: u64) -> Self {
        Self {
            bar_base: 0xc000_0000,
            bar_limit: 0xe000_0000,
            dma_gpa: 0x8000_0000,
            dma_len,
            unmapped_gpa: 0x4_0000_0000,
        }
    }
}

/// Why a device could not be set up for a guest.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// BARs do not fit the layout, or the DMA window is malformed.
    #[error("{device}: layout: {reason}")]
    Layout {
        /// The device.
        device: String,
        /// What does not fit.
        reason: String,
    },
    /// A host-side step failed (memory, IOMMU, eventfd, device).
    #[error("{device}: {op}: {reason}")]
    Host {
        /// The device.
        device: String,
        /// The step.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The VMM refused.
    #[error("{device}: {source}")]
    Vmm {
        /// The device.
        device: String,
        /// The VMM's error.
        source: VmmError,
    },
}

/// Place BARs of the given sizes (`None`: absent) from `base`, each at a multiple of its size
/// (at least 4 KiB, rounded up to a power of two), in index order, below `limit`.
pub fn place_bars(
    sizes: [Option<u64>; 6],
    base: u64,
    limit: u64,
) -> Result<[Option<u64>; 6], String> {
    let mut out = [None; 6];
    let mut next = base;
    for (i, size) in sizes.iter().enumerate() {
        let Some(size) = *size else { continue };
        if size == 0 {
            continue;
        }
        let align = size
            .max(4096)
            .checked_next_power_of_two()
            .ok_or_else(|| format!("BAR{i} size {size:#x} too large"))?;
        let at = next
            .checked_next_multiple_of(align)
            .ok_or_else(|| format!("BAR{i} does not fit"))?;
        let end = at
            .checked_add(align)
            .ok_or_else(|| format!("BAR{i} does not fit"))?;
        if end > limit {
            return Err(format!(
                "BAR{i} ({size:#x} bytes) does not fit below {limit:#x} (next free {at:#x})"
            ));
        }
        out[i] = Some(at);
        next = end;
    }
    Ok(out)
}

/// One device as a guest sees it, served by the VMM.
pub trait GuestDevice: Send + Sync {
    /// Name for messages (`"dsa-model"`, a BDF).
    fn name(&self) -> String;
    /// Install the device in the VM: DMA window, BARs, IOMMU mappings.
    fn attach(&self, vmm: &dyn Vmm) -> Result<(), DeviceError>;
    /// Serve one guest request.
    fn request(&self, req: &DeviceRequest, vmm: &dyn Vmm) -> Result<Reply, ReplyError>;
    /// Remove the device from the VM (interrupt routes, BARs, memory, IOMMU mappings).
    /// Best effort; called before the VM goes away.
    fn detach(&self, vmm: &dyn Vmm);
    /// The layout it was built with.
    fn layout(&self) -> DeviceLayout;
    /// The DMA window's memory (guest RAM at `layout().dma_gpa`), for host-side fills and
    /// checks ([`slot_read`], [`slot_write`]).
    fn dma_window(&self) -> Arc<dyn SlotMemory>;
    /// One line per BAR served from exits: accesses, bad accesses, portal assembly. Empty when
    /// no BAR exits (diagnostics for test logs).
    fn exit_summary(&self) -> Vec<String>;
}

/// The [`GuestDevice::exit_summary`] line of one BAR.
pub fn bar_summary(index: u8, m: MmioStats, p: Option<PortalStats>) -> String {
    let mut line = format!(
        "BAR{index}: {} reads, {} writes, {} bad accesses",
        m.reads, m.writes, m.bad_accesses
    );
    if let Some(p) = p {
        line.push_str(&format!(
            "; portal: {} descriptors from {} pieces, {} refused by the device, torn {} (overlap) {} (read) {} (bad piece)",
            p.submitted,
            p.pieces,
            m.portal_errors,
            p.torn_by_overlap,
            p.torn_by_read,
            p.torn_by_bad_piece
        ));
    }
    line
}

fn slot_range(mem: &dyn SlotMemory, offset: usize, len: usize) -> Result<*mut u8, String> {
    match offset.checked_add(len) {
        Some(end) if end <= mem.len() => {
            // SAFETY: offset + len <= mem.len(), so the pointer stays inside the memory.
            Ok(unsafe { mem.host_ptr().add(offset) })
        }
        _ => Err(format!(
            "{offset:#x}+{len:#x} is outside the {:#x}-byte memory",
            mem.len()
        )),
    }
}

/// Copy `dst.len()` bytes at `offset` of `mem` into `dst` (bounds-checked; the guest or the
/// device may write the memory concurrently, so the copy is of whatever is there).
pub fn slot_read(mem: &dyn SlotMemory, offset: usize, dst: &mut [u8]) -> Result<(), String> {
    let p = slot_range(mem, offset, dst.len())?;
    // SAFETY: p..p+len lies inside the memory (slot_range), valid while `mem` lives (SlotMemory
    // contract); a raw copy, no reference into it is formed.
    unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) };
    Ok(())
}

/// Copy `src` to `offset` of `mem` (bounds-checked).
pub fn slot_write(mem: &dyn SlotMemory, offset: usize, src: &[u8]) -> Result<(), String> {
    let p = slot_range(mem, offset, src.len())?;
    // SAFETY: as in slot_read.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
    Ok(())
}

/// The devices of one guest, indexed as the guest names them in requests.
#[derive(Default)]
pub struct Devices {
    devices: Vec<Arc<dyn GuestDevice>>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.devices.iter().map(|d| d.name()))
            .finish()
    }
}

impl Devices {
    /// No devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a device; returns its index (what the guest puts in requests). Requests carry an
    /// 8-bit index, so a 257th device is refused ([`DeviceError::Layout`]).
    pub fn push(&mut self, device: Arc<dyn GuestDevice>) -> Result<u8, DeviceError> {
        let index = u8::try_from(self.devices.len()).map_err(|_| DeviceError::Layout {
            device: device.name(),
            reason: format!(
                "{} devices already: guest requests name a device by an 8-bit index",
                self.devices.len()
            ),
        })?;
        self.devices.push(device);
        Ok(index)
    }

    /// Device `index`.
    pub fn get(&self, index: u8) -> Option<&Arc<dyn GuestDevice>> {
        self.devices.get(usize::from(index))
    }

    /// Attach every device.
    pub fn attach_all(&self, vmm: &dyn Vmm) -> Result<(), DeviceError> {
        for d in &self.devices {
            d.attach(vmm)?;
        }
        Ok(())
    }

    /// Detach every device (last first).
    pub fn detach_all(&self, vmm: &dyn Vmm) {
        for d in self.devices.iter().rev() {
            d.detach(vmm);
        }
    }

    /// Serve an encoded guest request; returns the encoded reply. Never panics.
    pub fn handle(&self, words: [u64; REQUEST_WORDS], vmm: &dyn Vmm) -> [u64; REPLY_WORDS] {
        let r = DeviceRequest::decode(words)
            .map_err(|_| ReplyError::Malformed)
            .and_then(|req| {
                let d = self
                    .get(req.device())
                    .ok_or(ReplyError::NoSuchDevice(req.device()))?;
                d.request(&req, vmm)
            });
        encode_reply(r)
    }

    /// Serve a request given as a value (host-side tests and tools).
    pub fn call(&self, req: DeviceRequest, vmm: &dyn Vmm) -> Result<Reply, ReplyError> {
        decode_reply(self.handle(req.encode(), vmm))
    }
}

/// Counters of a BAR served from MMIO exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmioStats {
    /// Loads served.
    pub reads: u64,
    /// Stores served.
    pub writes: u64,
    /// Accesses of a width the BAR cannot serve (not 1/2/4/8), or out of range.
    pub bad_accesses: u64,
    /// Portal submissions the device refused.
    pub portal_errors: u64,
}

/// A BAR served from MMIO exits through its [`RegisterIo`]: loads and stores of 1, 2, 4 and 8
/// bytes become register accesses of that width; on a portal BAR stores are pieces of 64-byte
/// descriptors, assembled and then submitted with [`RegisterIo::submit64`].
pub struct BarMmio<R> {
    io: R,
    index: u8,
    portal: Option<Mutex<PortalAssembler>>,
    stats: Mutex<MmioStats>,
}

impl<R> std::fmt::Debug for BarMmio<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarMmio")
            .field("index", &self.index)
            .field("portal", &self.portal.is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: RegisterIo> BarMmio<R> {
    /// Serve BAR `index` through `io`; `portal`: the BAR takes 64-byte descriptors.
    pub fn new(io: R, index: u8, portal: bool) -> Self {
        Self {
            io,
            index,
            portal: portal.then(|| Mutex::new(PortalAssembler::new())),
            stats: Mutex::new(MmioStats::default()),
        }
    }

    /// The BAR index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The BAR length.
    pub fn io_len(&self) -> usize {
        self.io.len()
    }

    /// Access counters.
    pub fn stats(&self) -> MmioStats {
        *lock(&self.stats)
    }

    /// Portal assembly counters (portal BARs only).
    pub fn portal_stats(&self) -> Option<PortalStats> {
        self.portal.as_ref().map(|p| lock(p).stats())
    }

    /// Forget partial portal descriptors (function reset).
    pub fn reset(&self) {
        if let Some(p) = &self.portal {
            lock(p).clear();
        }
    }

    fn in_range(&self, offset: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(offset).ok()?;
        off.checked_add(len)
            .is_some_and(|e| e <= self.io.len())
            .then_some(off)
    }
}

impl<R: RegisterIo + Send + Sync> MmioHandler for BarMmio<R> {
    fn read(&self, vcpu: usize, offset: u64, data: &mut [u8]) -> Result<(), HandlerError> {
        self.serve_read(vcpu, offset, data);
        Ok(())
    }

    fn write(&self, vcpu: usize, offset: u64, data: &[u8]) -> Result<(), HandlerError> {
        self.serve_write(vcpu, offset, data);
        Ok(())
    }
}

impl<R: RegisterIo + Send + Sync> BarMmio<R> {
    /// Serve a guest load (bad accesses read all ones and are counted, never an error: a
    /// master abort is what a real device gives).
    pub fn serve_read(&self, _vcpu: usize, offset: u64, data: &mut [u8]) {
        if let Some(p) = &self.portal {
            lock(p).read(offset, data.len());
        }
        let value = match (self.in_range(offset, data.len()), data.len()) {
            (Some(o), 1) => Some(u64::from(self.io.read8(o))),
            (Some(o), 2) => Some(u64::from(self.io.read16(o))),
            (Some(o), 4) => Some(u64::from(self.io.read32(o))),
            (Some(o), 8) => Some(self.io.read64(o)),
            _ => None,
        };
        let mut s = lock(&self.stats);
        s.reads += 1;
        match value {
            Some(v) => {
                let n = data.len();
                data.copy_from_slice(&v.to_le_bytes()[..n]);
            }
            None => {
                s.bad_accesses += 1;
                data.fill(0xff);
            }
        }
    }

    /// Serve a guest store (bad accesses are dropped and counted).
    pub fn serve_write(&self, vcpu: usize, offset: u64, data: &[u8]) {
        lock(&self.stats).writes += 1;
        let Some(o) = self.in_range(offset, data.len()) else {
            lock(&self.stats).bad_accesses += 1;
            return;
        };
        if let Some(p) = &self.portal {
            let done = lock(p).write(vcpu, offset, data);
            match done {
                Ok(None) => {}
                Ok(Some(d)) => {
                    if self.io.submit64(d.window as usize, &d.bytes).is_err() {
                        lock(&self.stats).portal_errors += 1;
                    }
                }
                Err(_) => lock(&self.stats).bad_accesses += 1,
            }
            return;
        }
        let mut b = [0u8; 8];
        match data.len() {
            1 | 2 | 4 | 8 => b[..data.len()].copy_from_slice(data),
            _ => {
                lock(&self.stats).bad_accesses += 1;
                return;
            }
        }
        let v = u64::from_le_bytes(b);
        match data.len() {
            1 => self.io.write8(o, v as u8),
            2 => self.io.write16(o, v as u16),
            4 => self.io.write32(o, v as u32),
            _ => self.io.write64(o, v),
        }
    }
}

/// What differs between the device backings ([`model::ModelDevice`],
/// [`vfio::PassthroughDevice`]); [`serve_request`] does the rest alike.
pub(crate) trait Backing {
    /// The function configuration space and reset go to.
    type Function: PciFunction;
    /// The register access of the BARs served from exits.
    type Bar: RegisterIo;
    /// The function.
    fn pci_function(&self) -> &Self::Function;
    /// The BARs served from exits (reset with the function).
    fn exit_bars(&self) -> &[Arc<BarMmio<Self::Bar>>];
    /// Serve [`DeviceRequest::BarInfo`].
    fn bar_info(&self, index: u8) -> Result<Reply, ReplyError>;
    /// Serve [`DeviceRequest::IrqEnable`].
    fn irq_enable(
        &self,
        vmm: &dyn Vmm,
        kind: IrqKind,
        first: u32,
        count: u32,
        target: MsiTarget,
    ) -> Result<Reply, ReplyError>;
    /// Serve [`DeviceRequest::IrqDisable`].
    fn irq_disable(&self, vmm: &dyn Vmm, kind: IrqKind) -> Result<Reply, ReplyError>;
}

/// [`GuestDevice::request`] of a [`Backing`]: configuration space through the function, reset
/// of the function and then of its exit-served BARs, the rest by the backing.
pub(crate) fn serve_request<B: Backing>(
    b: &B,
    req: &DeviceRequest,
    vmm: &dyn Vmm,
) -> Result<Reply, ReplyError> {
    match *req {
        DeviceRequest::ConfigRead { offset, width, .. } => {
            function_config_read(b.pci_function(), offset, width)
        }
        DeviceRequest::ConfigWrite {
            offset,
            width,
            value,
            ..
        } => function_config_write(b.pci_function(), offset, width, value),
        DeviceRequest::BarInfo { index, .. } => b.bar_info(index),
        DeviceRequest::IrqEnable {
            kind,
            first,
            count,
            target,
            ..
        } => b.irq_enable(vmm, kind, first, count, target),
        DeviceRequest::IrqDisable { kind, .. } => b.irq_disable(vmm, kind),
        DeviceRequest::Reset { .. } => {
            b.pci_function()
                .reset()
                .map_err(ReplyError::from_function_error)?;
            for bar in b.exit_bars() {
                bar.reset();
            }
            Ok(Reply::default())
        }
    }
}

/// [`GuestDevice::exit_summary`] of the BARs served from exits.
pub(crate) fn exit_bars_summary<R: RegisterIo>(bars: &[Arc<BarMmio<R>>]) -> Vec<String> {
    bars.iter()
        .map(|b| bar_summary(b.index(), b.stats(), b.portal_stats()))
        .collect()
}

/// The MSI messages of device vectors `first..end` aimed as `target` says; a vector the target
/// cannot route is [`ReplyError::BadVector`].
pub(crate) fn msi_messages(
    first: u32,
    end: u32,
    target: MsiTarget,
) -> Result<Vec<(u32, MsiMessage)>, ReplyError> {
    (first..end)
        .map(|v| {
            let g = target.guest_vector(v).ok_or(ReplyError::BadVector(v))?;
            let msg =
                MsiMessage::fixed(target.dest_apic_id, g).map_err(|_| ReplyError::BadVector(v))?;
            Ok((v, msg))
        })
        .collect()
}

/// Serve a config read request from a seam function.
pub(crate) fn function_config_read<F: PciFunction>(
    f: &F,
    offset: u16,
    width: u8,
) -> Result<Reply, ReplyError> {
    let v = match width {
        1 => f.config_read8(offset).map(u64::from),
        2 => f.config_read16(offset).map(u64::from),
        _ => f.config_read32(offset).map(u64::from),
    }
    .map_err(ReplyError::from_function_error)?;
    Ok(Reply { value: v, extra: 0 })
}

/// Serve a config write request from a seam function.
pub(crate) fn function_config_write<F: PciFunction>(
    f: &F,
    offset: u16,
    width: u8,
    value: u32,
) -> Result<Reply, ReplyError> {
    match width {
        1 => f.config_write8(offset, value as u8),
        2 => f.config_write16(offset, value as u16),
        _ => f.config_write32(offset, value),
    }
    .map_err(ReplyError::from_function_error)?;
    Ok(Reply::default())
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_257th_device_is_refused_not_aliased_to_index_0() {
        let layout = DeviceLayout::standard(1 << 20);
        let dev: Arc<dyn GuestDevice> = Arc::new(
            model::ModelDevice::edu(passthru_models::exec::ExecMode::Immediate, layout).unwrap(),
        );
        let mut devices = Devices::new();
        for i in 0..=255u8 {
            assert_eq!(devices.push(Arc::clone(&dev)).unwrap(), i);
        }
        let e = devices.push(dev).unwrap_err();
        assert!(e.to_string().contains("8-bit index"), "{e}");
        assert!(devices.get(255).is_some());
    }

    #[test]
    fn slot_access_is_bounds_checked() {
        let m = model::ModelMemory::new(passthru_models::iommu::HostMemory::pages(8192).unwrap())
            .unwrap();
        slot_write(&m, 8190, &[1, 2]).unwrap();
        let mut b = [0u8; 2];
        slot_read(&m, 8190, &mut b).unwrap();
        assert_eq!(b, [1, 2]);
        assert!(slot_write(&m, 8191, &[1, 2]).is_err());
        assert!(slot_read(&m, usize::MAX, &mut b).is_err());
    }

    #[test]
    fn bars_are_naturally_aligned_in_index_order() {
        let sizes = [Some(0x4000), None, Some(0x20000), None, Some(0x100), None];
        let at = place_bars(sizes, 0xc000_0000, 0xe000_0000).unwrap();
        assert_eq!(at[0], Some(0xc000_0000));
        assert_eq!(at[1], None);
        assert_eq!(
            at[2],
            Some(0xc002_0000),
            "128 KiB BAR at a 128 KiB boundary"
        );
        assert_eq!(at[4], Some(0xc004_0000), "tiny BAR takes a whole page");
        for (i, a) in at.iter().enumerate() {
            if let (Some(a), Some(s)) = (a, sizes[i]) {
                assert_eq!(a % s.max(4096), 0);
            }
        }
        assert!(place_bars([Some(1 << 30), None, None, None, None, None], 0, 1 << 29).is_err());
        assert!(place_bars([Some(u64::MAX), None, None, None, None, None], 0, u64::MAX).is_err());
    }
}
