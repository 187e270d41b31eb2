//! A real PCI function passed through to a guest with VFIO (`passthru-linux`).
//!
//! * BARs: a BAR VFIO mapped whole becomes a memory slot at its guest-physical address, so guest
//!   loads and stores reach the device without exits. A BAR mapped only in parts (sparse mmap,
//!   e.g. around an MSI-X table) and a portal BAR (DSA BAR2) are served from MMIO exits through
//!   the BAR's `RegisterIo`: sparse areas by direct access, the rest by `pread`/`pwrite` of the
//!   VFIO region, portal stores assembled into 64-byte descriptors and submitted by the host
//!   (a guest store of 64 bytes is not atomic unless the guest has MOVDIR64B, which KVM does not
//!   offer everywhere).
//! * DMA: a DMA window (shared anonymous memory) installed as guest RAM at the layout's
//!   `dma_gpa`, and it plus the VMM's own guest RAM mapped in the device's IOMMU at IOVA = GPA.
//! * Interrupts: on the guest's `IrqEnable` request the vectors are enabled through VFIO (each
//!   gets an eventfd) and each eventfd is handed to [`Vmm::connect_msi`], a KVM irqfd: the
//!   device's interrupt reaches the guest without passing through the VMM (IRQ bypass; with
//!   VT-d posted interrupts or AMD AVIC, without a host interrupt either).
//! * Configuration space and reset go to VFIO.
//!
//! [`PassthroughFunction`] and [`DmaMapper`] are what this needs from the device and its IOMMU;
//! [`VfioFunction`] and `passthru_linux::Iommu` implement them.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use passthru_core::mmio::{IrqKind, PciFunction};
use passthru_linux::{DmaBuffer, Iommu, VfioBar, VfioPciDevice};

use super::request::{DeviceRequest, MsiTarget, Reply, ReplyError};
use super::{
    exit_bars_summary, lock, msi_messages, place_bars, serve_request, Backing, BarMmio,
    DeviceError, DeviceLayout, GuestDevice, MmioHandler, MmioStats, SlotMemory, Vmm,
};

/// What [`PassthroughDevice`] needs from a passed-through function beyond [`PciFunction`].
pub trait PassthroughFunction: PciFunction + Send + Sync + 'static {
    /// Name for messages (the BDF).
    fn name(&self) -> String;
    /// Size of memory BAR `index`, `None` if absent.
    fn bar_size(&self, index: u8) -> Option<u64>;
    /// The whole BAR as mapped host memory, if it is mapped whole (for a memory slot).
    fn bar_memory(&self, index: u8) -> Option<Arc<dyn SlotMemory>>;
    /// A new descriptor for the eventfd of enabled vector `vector` of `kind` (the caller owns
    /// it; it refers to the same eventfd).
    fn irq_eventfd(&self, kind: IrqKind, vector: u32) -> Option<OwnedFd>;
}

/// Maps host memory for the device at an IOVA.
pub trait DmaMapper: Send + Sync {
    /// Map `len` bytes at host address `host` to `iova`.
    ///
    /// # Safety
    /// `host..host+len` must stay valid memory the device may read and write until
    /// [`DmaMapper::unmap`] of it, with no Rust references into it.
    unsafe fn map(&self, host: usize, iova: u64, len: u64) -> Result<(), String>;
    /// Unmap `iova..iova+len`.
    fn unmap(&self, iova: u64, len: u64) -> Result<(), String>;
}

impl DmaMapper for Iommu {
    unsafe fn map(&self, host: usize, iova: u64, len: u64) -> Result<(), String> {
        // SAFETY: forwarded caller contract.
        unsafe { Iommu::map(self, host as u64, iova, len) }
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), String> {
        Iommu::unmap(self, iova, len)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A [`DmaBuffer`] as guest RAM.
#[derive(Debug)]
pub struct BufferMemory(pub DmaBuffer);

// SAFETY: a DmaBuffer is a page-aligned mmap of a page-multiple length owned by the buffer,
// unmapped only on drop, and never exposed as Rust references.
unsafe impl SlotMemory for BufferMemory {
    fn host_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A whole-BAR VFIO mapping as guest RAM (a memory slot over device memory).
#[derive(Debug)]
pub struct BarMemory {
    bar: VfioBar,
    len: usize,
}

// SAFETY: the VfioBar handle keeps the BAR's mmap alive (reference counted) for as long as this
// value lives; the mapping is page aligned and `len` is its page-rounded length, checked against
// the mapping in `VfioFunction::bar_memory`. BAR memory is only accessed through raw pointers.
unsafe impl SlotMemory for BarMemory {
    fn host_ptr(&self) -> *mut u8 {
        self.bar.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// A VFIO device shared between the backing and the rest of the program.
pub use passthru_linux::SharedVfioDevice as VfioFunction;

/// Duplicate a descriptor number with `F_DUPFD_CLOEXEC`.
fn dup_raw(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on any integer is memory-safe: it either fails (EBADF) or
    // returns a new descriptor.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: `new` is a descriptor fcntl just created for us; nothing else owns it.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

impl PassthroughFunction for VfioFunction {
    fn name(&self) -> String {
        self.0.bdf().to_string()
    }

    fn bar_size(&self, index: u8) -> Option<u64> {
        self.0
            .bar_info(index)
            .map(|b| b.info.size)
            .filter(|&s| s > 0)
    }

    fn bar_memory(&self, index: u8) -> Option<Arc<dyn SlotMemory>> {
        let info = self.0.bar_info(index)?;
        let (addr, len) = (info.vaddr()?, info.mapped_len()?);
        let bar = self.0.bar_mapping(index).ok()?;
        if bar.is_sparse() || bar.as_ptr() as usize != addr || !len.is_multiple_of(4096) {
            return None;
        }
        Some(Arc::new(BarMemory { bar, len }))
    }

    fn irq_eventfd(&self, kind: IrqKind, vector: u32) -> Option<OwnedFd> {
        // Duplicating the number (rather than borrowing it) keeps this sound even if another
        // holder of the device disables the vector concurrently: at worst the duplicate refers
        // to a closed-and-reused number, never to freed memory.
        dup_raw(self.0.irq_eventfd(kind, vector)?)
    }
}

#[derive(Debug, Default)]
struct Attached {
    mmio: Vec<u64>,
    slots: Vec<u32>,
    iommu: Vec<(u64, u64)>,
    routes: Vec<(OwnedFd, u32)>,
    kind: Option<IrqKind>,
}

/// A passed-through function in a guest (see the module documentation).
pub struct PassthroughDevice<F: PassthroughFunction> {
    function: F,
    mapper: Arc<dyn DmaMapper>,
    layout: DeviceLayout,
    bar_gpa: [Option<u64>; 6],
    exits: Vec<Arc<BarMmio<F::Bar>>>,
    dma: Arc<dyn SlotMemory>,
    attached: Mutex<Attached>,
}

impl<F: PassthroughFunction> std::fmt::Debug for PassthroughDevice<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassthroughDevice")
            .field("device", &self.function.name())
            .field("layout", &self.layout)
            .field("bar_gpa", &self.bar_gpa)
            .finish()
    }
}

impl<F> PassthroughDevice<F>
where
    F: PassthroughFunction,
    F::Bar: Send + Sync + 'static,
{
    /// Put `function` (DMA through `mapper`) in a guest at `layout`; `portal_bars` are always
    /// served from exits with 64-byte assembly. `dma` is the DMA window memory (its length must
    /// be `layout.dma_len`). Nothing touches the VM or the IOMMU until [`GuestDevice::attach`].
    pub fn new(
        function: F,
        mapper: Arc<dyn DmaMapper>,
        portal_bars: &[u8],
        layout: DeviceLayout,
        dma: Arc<dyn SlotMemory>,
    ) -> Result<Self, DeviceError> {
        let name = function.name();
        if dma.len() as u64 != layout.dma_len || !layout.dma_len.is_multiple_of(4096) {
            return Err(DeviceError::Layout {
                device: name,
                reason: format!(
                    "DMA window memory is {:#x} bytes, layout says {:#x} (a 4 KiB multiple)",
                    dma.len(),
                    layout.dma_len
                ),
            });
        }
        let sizes: [Option<u64>; 6] = std::array::from_fn(|i| function.bar_size(i as u8));
        let bar_gpa = place_bars(sizes, layout.bar_base, layout.bar_limit).map_err(|reason| {
            DeviceError::Layout {
                device: name.clone(),
                reason,
            }
        })?;
        let mut exits = Vec::new();
        for i in 0..6u8 {
            if bar_gpa[usize::from(i)].is_none() {
                continue;
            }
            let portal = portal_bars.contains(&i);
            if !portal && function.bar_memory(i).is_some() {
                continue;
            }
            if let Ok(io) = function.bar(i) {
                exits.push(Arc::new(BarMmio::new(io, i, portal)));
            }
        }
        Ok(Self {
            function,
            mapper,
            layout,
            bar_gpa,
            exits,
            dma,
            attached: Mutex::new(Attached::default()),
        })
    }

    /// The function.
    pub fn function(&self) -> &F {
        &self.function
    }

    /// The DMA window memory.
    pub fn dma_memory(&self) -> &Arc<dyn SlotMemory> {
        &self.dma
    }

    /// Guest-physical address of BAR `index`, if the guest gets it.
    pub fn bar_gpa(&self, index: u8) -> Option<u64> {
        let gpa = self.bar_gpa.get(usize::from(index)).copied().flatten()?;
        (self.exit_bar(index).is_some() || self.function.bar_memory(index).is_some()).then_some(gpa)
    }

    fn exit_bar(&self, index: u8) -> Option<&Arc<BarMmio<F::Bar>>> {
        self.exits.iter().find(|b| b.index() == index)
    }

    /// MMIO counters of BAR `index`, if it is served from exits.
    pub fn mmio_stats(&self, index: u8) -> Option<MmioStats> {
        self.exit_bar(index).map(|b| b.stats())
    }

    fn disconnect(&self, vmm: &dyn Vmm, st: &mut Attached) {
        for (fd, gsi) in st.routes.drain(..) {
            let _ = vmm.disconnect_msi(fd.as_fd(), gsi);
        }
        st.kind = None;
    }

    fn unmap_all(&self, st: &mut Attached) {
        for (iova, len) in st.iommu.drain(..) {
            let _ = self.mapper.unmap(iova, len);
        }
    }
}

impl<F> Backing for PassthroughDevice<F>
where
    F: PassthroughFunction,
    F::Bar: Send + Sync + 'static,
{
    type Function = F;
    type Bar = F::Bar;

    fn pci_function(&self) -> &F {
        &self.function
    }

    fn exit_bars(&self) -> &[Arc<BarMmio<F::Bar>>] {
        &self.exits
    }

    fn bar_info(&self, index: u8) -> Result<Reply, ReplyError> {
        let gpa = self.bar_gpa(index).ok_or(ReplyError::NoSuchBar(index))?;
        Ok(Reply {
            value: gpa,
            extra: self.function.bar_size(index).unwrap_or(0),
        })
    }

    fn irq_enable(
        &self,
        vmm: &dyn Vmm,
        kind: IrqKind,
        first: u32,
        count: u32,
        target: MsiTarget,
    ) -> Result<Reply, ReplyError> {
        if kind == IrqKind::Intx {
            return Err(ReplyError::Unsupported);
        }
        let end = first
            .checked_add(count)
            .filter(|_| count > 0)
            .ok_or(ReplyError::BadVector(first))?;
        let msgs = msi_messages(first, end, target)?;
        let mut st = lock(&self.attached);
        // VFIO adds vectors to those already enabled (and refuses ones that are): the new
        // routes join the existing ones of this kind.
        self.function
            .irq_enable(kind, first, count)
            .map_err(ReplyError::from_function_error)?;
        for (v, msg) in msgs {
            let connected = self
                .function
                .irq_eventfd(kind, v)
                .ok_or(ReplyError::Os(libc::ENOENT))
                .and_then(|fd| match vmm.connect_msi(fd.as_fd(), msg) {
                    Ok(gsi) => Ok((fd, gsi)),
                    Err(_) => Err(ReplyError::Os(libc::EIO)),
                });
            match connected {
                Ok(r) => st.routes.push(r),
                Err(e) => {
                    // Undo this request only: VFIO can disable just the whole index, so the
                    // earlier routes of the kind go too.
                    self.disconnect(vmm, &mut st);
                    let _ = self.function.irq_disable(kind);
                    return Err(e);
                }
            }
        }
        st.kind = Some(kind);
        Ok(Reply::default())
    }

    fn irq_disable(&self, vmm: &dyn Vmm, kind: IrqKind) -> Result<Reply, ReplyError> {
        let mut st = lock(&self.attached);
        if st.kind == Some(kind) {
            self.disconnect(vmm, &mut st);
        }
        self.function
            .irq_disable(kind)
            .map_err(ReplyError::from_function_error)?;
        Ok(Reply::default())
    }
}

impl<F> GuestDevice for PassthroughDevice<F>
where
    F: PassthroughFunction,
    F::Bar: Send + Sync + 'static,
{
    fn name(&self) -> String {
        self.function.name()
    }

    fn attach(&self, vmm: &dyn Vmm) -> Result<(), DeviceError> {
        let name = self.name();
        let vmm_err = |source| DeviceError::Vmm {
            device: name.clone(),
            source,
        };
        let mut st = lock(&self.attached);
        let slot = vmm
            .add_memory(self.layout.dma_gpa, Arc::clone(&self.dma))
            .map_err(vmm_err)?;
        st.slots.push(slot);
        // IOVA = GPA for the DMA window and for all of the VMM's guest RAM.
        let mut ranges = vec![(
            self.dma.host_ptr() as usize,
            self.layout.dma_gpa,
            self.layout.dma_len,
        )];
        ranges.extend(vmm.guest_ram().iter().map(|r| (r.host, r.gpa, r.len)));
        for (host, gpa, len) in ranges {
            // SAFETY: the DMA window is owned by self (and unmapped in detach / drop before it
            // goes); guest RAM is the VMM's, which outlives its devices (detach runs before the
            // VM's memory is freed). Neither is ever referenced by Rust code.
            unsafe { self.mapper.map(host, gpa, len) }.map_err(|reason| DeviceError::Host {
                device: name.clone(),
                op: "IOMMU map at IOVA = GPA",
                reason: format!("{gpa:#x}+{len:#x}: {reason}"),
            })?;
            st.iommu.push((gpa, len));
        }
        for i in 0..6u8 {
            let Some(gpa) = self.bar_gpa[usize::from(i)] else {
                continue;
            };
            if let Some(h) = self.exit_bar(i) {
                let len = (h.io_len() as u64).max(4096);
                vmm.add_mmio(gpa, len, Arc::clone(h) as Arc<dyn MmioHandler>)
                    .map_err(vmm_err)?;
                st.mmio.push(gpa);
            } else if let Some(mem) = self.function.bar_memory(i) {
                st.slots.push(vmm.add_memory(gpa, mem).map_err(vmm_err)?);
            }
        }
        Ok(())
    }

    fn request(&self, req: &DeviceRequest, vmm: &dyn Vmm) -> Result<Reply, ReplyError> {
        serve_request(self, req, vmm)
    }

    fn detach(&self, vmm: &dyn Vmm) {
        let mut st = lock(&self.attached);
        self.disconnect(vmm, &mut st);
        for gpa in st.mmio.drain(..) {
            let _ = vmm.remove_mmio(gpa);
        }
        for slot in st.slots.drain(..) {
            let _ = vmm.remove_memory(slot);
        }
        self.unmap_all(&mut st);
    }

    fn layout(&self) -> DeviceLayout {
        self.layout
    }

    fn dma_window(&self) -> Arc<dyn SlotMemory> {
        Arc::clone(&self.dma)
    }

    fn exit_summary(&self) -> Vec<String> {
        exit_bars_summary(&self.exits)
    }
}

impl<F: PassthroughFunction> Drop for PassthroughDevice<F> {
    fn drop(&mut self) {
        let st = self.attached.get_mut().unwrap_or_else(|e| e.into_inner());
        for (iova, len) in st.iommu.drain(..) {
            let _ = self.mapper.unmap(iova, len);
        }
    }
}

/// A VFIO device in a guest.
pub type VfioGuestDevice = PassthroughDevice<VfioFunction>;

impl PassthroughDevice<VfioFunction> {
    /// `device` (opened on `iommu`) in a guest at `layout`, with a fresh shared-anonymous DMA
    /// window. DSA's BAR2 (portals) is served from exits.
    pub fn vfio(
        device: Arc<VfioPciDevice>,
        iommu: Arc<Iommu>,
        layout: DeviceLayout,
    ) -> Result<Self, DeviceError> {
        let name = device.bdf().to_string();
        let dma = DmaBuffer::anonymous_shared(layout.dma_len).map_err(|e| DeviceError::Host {
            device: name,
            op: "DMA window",
            reason: e.to_string(),
        })?;
        let f = VfioFunction(device);
        let portal: &[u8] = match f
            .config_read16(passthru_core::pci::VENDOR_ID)
            .ok()
            .zip(f.config_read16(passthru_core::pci::DEVICE_ID).ok())
        {
            Some((v, d))
                if passthru_core::pci::supported_device(v, d)
                    .is_some_and(|k| k.family == passthru_core::pci::DeviceFamily::Dsa) =>
            {
                &[2]
            }
            _ => &[],
        };
        Self::new(f, iommu, portal, layout, Arc::new(BufferMemory(dma)))
    }
}

#[cfg(test)]
mod tests;
