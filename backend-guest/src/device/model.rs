//! A `passthru-models` device in a guest, served from MMIO exits.
//!
//! * BARs: placed in the layout's BAR area without memory slots; every guest access exits and is
//!   served by a [`BarMmio`] over the model's register file. DSA's BAR2 (the work-queue
//!   portals) assembles ≤ 8-byte store pieces into 64-byte descriptors first.
//! * DMA: a window of host memory ([`HostMemory`]) installed as guest RAM at the layout's
//!   `dma_gpa` and mapped in the model's IOVA table at the same address (IOVA = GPA). The guest
//!   lays descriptors and buffers there; the host fills and checks data through
//!   [`ModelDevice::dma_memory`] without guest work.
//! * Interrupts: one non-blocking eventfd per model vector. The model's MSI sink forwards every
//!   delivered raise to the vector's eventfd; on the guest's `IrqEnable` request each enabled
//!   vector's eventfd is connected to a guest vector with [`Vmm::connect_msi`] (a KVM irqfd).
//! * Configuration space, interrupt enable and reset are the model's, through requests.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use nix::sys::eventfd::{EfdFlags, EventFd};
use passthru_core::mmio::{IrqKind, PciFunction};
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::dsa::DsaModel;
use passthru_models::edu::EduModel;
use passthru_models::exec::ExecMode;
use passthru_models::function::{DeviceModel, ModelBar, ModelFunction};
use passthru_models::iommu::{HostMemory, Iommu};

use super::portal::PortalStats;
use super::request::{DeviceRequest, MsiTarget, Reply, ReplyError};
use super::{
    exit_bars_summary, lock, msi_messages, place_bars, serve_request, Backing, BarMmio,
    DeviceError, DeviceLayout, GuestDevice, MmioStats, SlotMemory, Vmm,
};

/// [`HostMemory`] as guest RAM (page-aligned, a whole number of pages).
#[derive(Debug, Clone)]
pub struct ModelMemory(Arc<HostMemory>);

impl ModelMemory {
    /// `memory` as guest RAM; `None` unless it starts on a 4 KiB boundary and is a multiple of
    /// 4 KiB long (what a memory slot needs; [`HostMemory::pages`] gives that).
    pub fn new(memory: Arc<HostMemory>) -> Option<Self> {
        let ok =
            (memory.as_ptr() as usize).is_multiple_of(4096) && memory.len().is_multiple_of(4096);
        ok.then_some(Self(memory))
    }

    /// The memory.
    pub fn memory(&self) -> &Arc<HostMemory> {
        &self.0
    }
}

// SAFETY: HostMemory is a zeroed heap allocation owned by the Arc this value holds, valid until
// the last Arc is dropped and only accessed through raw pointers; `new` checked that it is page
// aligned and a whole number of pages.
unsafe impl SlotMemory for ModelMemory {
    fn host_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug, Default)]
struct Attached {
    mmio: Vec<u64>,
    slot: Option<u32>,
    /// Connected vectors: (device vector, GSI).
    routes: Vec<(u32, u32)>,
    kind: Option<IrqKind>,
}

/// A model device in a guest (see the module documentation).
pub struct ModelDevice<M: DeviceModel> {
    function: ModelFunction<M>,
    iommu: Arc<Iommu>,
    layout: DeviceLayout,
    bar_gpa: [Option<u64>; 6],
    bars: Vec<Arc<BarMmio<ModelBar<M>>>>,
    dma: Arc<HostMemory>,
    eventfds: Arc<Vec<EventFd>>,
    attached: Mutex<Attached>,
}

impl<M: DeviceModel> std::fmt::Debug for ModelDevice<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDevice")
            .field("model", &self.function.model().name())
            .field("layout", &self.layout)
            .field("bar_gpa", &self.bar_gpa)
            .finish()
    }
}

fn host_err(device: &str, op: &'static str, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Host {
        device: device.to_string(),
        op,
        reason: e.to_string(),
    }
}

impl<M: DeviceModel> ModelDevice<M> {
    /// Put `model` (whose DMA goes through `iommu`) in a guest at `layout`; `portal_bars` are
    /// the BARs that take 64-byte descriptors. Allocates the DMA window and maps it in `iommu`
    /// at IOVA = `layout.dma_gpa`, and creates the vector eventfds. Nothing touches a VM until
    /// [`GuestDevice::attach`].
    pub fn new(
        model: Arc<M>,
        iommu: Arc<Iommu>,
        portal_bars: &[u8],
        layout: DeviceLayout,
    ) -> Result<Self, DeviceError> {
        let name = model.name();
        let function = ModelFunction::new(Arc::clone(&model));
        let sizes: [Option<u64>; 6] =
            std::array::from_fn(|i| model.bar_len(i as u8).map(|l| l as u64));
        let bar_gpa = place_bars(sizes, layout.bar_base, layout.bar_limit).map_err(|reason| {
            DeviceError::Layout {
                device: name.into(),
                reason,
            }
        })?;
        if layout.dma_len == 0 || !layout.dma_len.is_multiple_of(4096) {
            return Err(DeviceError::Layout {
                device: name.into(),
                reason: format!(
                    "DMA window length {:#x} is not a non-zero multiple of 4 KiB",
                    layout.dma_len
                ),
            });
        }
        let mut bars = Vec::new();
        for (i, gpa) in bar_gpa.iter().enumerate() {
            if gpa.is_none() {
                continue;
            }
            let io = function
                .bar(i as u8)
                .map_err(|e| host_err(name, "model BAR", e))?;
            let portal = portal_bars.contains(&(i as u8));
            bars.push(Arc::new(BarMmio::new(io, i as u8, portal)));
        }
        let dma = HostMemory::pages(layout.dma_len as usize)
            .map_err(|e| host_err(name, "DMA window", e))?;
        iommu
            .map_all(layout.dma_gpa, &dma)
            .map_err(|e| host_err(name, "map DMA window in the model IOMMU", e))?;
        let msi = Arc::clone(function.msi());
        let mut fds = Vec::new();
        for _ in 0..msi.vectors() {
            fds.push(
                EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| host_err(name, "eventfd", e))?,
            );
        }
        let eventfds = Arc::new(fds);
        let fwd = Arc::clone(&eventfds);
        msi.set_forward(Some(Arc::new(move |v| {
            if let Some(fd) = fwd.get(v as usize) {
                // An eventfd write fails only when the counter would overflow (2^64 - 2
                // pending raises); nothing to do about it in a forward.
                let _ = fd.write(1);
            }
        })));
        Ok(Self {
            function,
            iommu,
            layout,
            bar_gpa,
            bars,
            dma,
            eventfds,
            attached: Mutex::new(Attached::default()),
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<M> {
        self.function.model()
    }

    /// The model IOMMU (the DMA window is mapped there at IOVA = GPA).
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    fn window_memory(&self) -> ModelMemory {
        // `new` allocated it with HostMemory::pages and a 4 KiB-multiple length (checked).
        ModelMemory(Arc::clone(&self.dma))
    }

    /// The DMA window's memory, for host-side fills and checks.
    pub fn dma_memory(&self) -> &Arc<HostMemory> {
        &self.dma
    }

    /// Guest-physical address of BAR `index`.
    pub fn bar_gpa(&self, index: u8) -> Option<u64> {
        self.bar_gpa.get(usize::from(index)).copied().flatten()
    }

    fn bar(&self, index: u8) -> Option<&Arc<BarMmio<ModelBar<M>>>> {
        self.bars.iter().find(|b| b.index() == index)
    }

    /// MMIO counters of BAR `index`.
    pub fn mmio_stats(&self, index: u8) -> Option<MmioStats> {
        self.bar(index).map(|b| b.stats())
    }

    /// Portal assembly counters of BAR `index` (portal BARs only).
    pub fn portal_stats(&self, index: u8) -> Option<PortalStats> {
        self.bar(index).and_then(|b| b.portal_stats())
    }

    /// The eventfd of model vector `vector` (signalled on every delivered raise).
    pub fn vector_eventfd(&self, vector: u32) -> Option<&EventFd> {
        self.eventfds.get(vector as usize)
    }

    fn disconnect(&self, vmm: &dyn Vmm, st: &mut Attached) {
        for (v, gsi) in st.routes.drain(..) {
            if let Some(fd) = self.eventfds.get(v as usize) {
                let _ = vmm.disconnect_msi(fd.as_fd(), gsi);
            }
        }
        st.kind = None;
    }
}

impl<M: DeviceModel> Backing for ModelDevice<M> {
    type Function = ModelFunction<M>;
    type Bar = ModelBar<M>;

    fn pci_function(&self) -> &ModelFunction<M> {
        &self.function
    }

    fn exit_bars(&self) -> &[Arc<BarMmio<ModelBar<M>>>] {
        &self.bars
    }

    fn bar_info(&self, index: u8) -> Result<Reply, ReplyError> {
        let gpa = self.bar_gpa(index).ok_or(ReplyError::NoSuchBar(index))?;
        let len = self.function.model().bar_len(index).unwrap_or(0) as u64;
        Ok(Reply {
            value: gpa,
            extra: len,
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
            .filter(|&e| count > 0 && e as usize <= self.eventfds.len())
            .ok_or(ReplyError::BadVector(first.saturating_add(count)))?;
        let msgs = msi_messages(first, end, target)?;
        let mut st = lock(&self.attached);
        self.disconnect(vmm, &mut st);
        for (v, msg) in msgs {
            let fd = &self.eventfds[v as usize];
            // Drop raises from before this enable (none reach a disabled vector, but a
            // re-enable must not deliver an old one).
            let _ = fd.read();
            match vmm.connect_msi(fd.as_fd(), msg) {
                Ok(gsi) => st.routes.push((v, gsi)),
                Err(_) => {
                    self.disconnect(vmm, &mut st);
                    return Err(ReplyError::Os(libc::EIO));
                }
            }
        }
        if let Err(e) = self.function.irq_enable(kind, first, count) {
            self.disconnect(vmm, &mut st);
            return Err(ReplyError::from_function_error(e));
        }
        st.kind = Some(kind);
        Ok(Reply::default())
    }

    fn irq_disable(&self, vmm: &dyn Vmm, kind: IrqKind) -> Result<Reply, ReplyError> {
        self.function
            .irq_disable(kind)
            .map_err(ReplyError::from_function_error)?;
        let mut st = lock(&self.attached);
        if st.kind == Some(kind) {
            self.disconnect(vmm, &mut st);
        }
        Ok(Reply::default())
    }
}

impl<M: DeviceModel> GuestDevice for ModelDevice<M> {
    fn name(&self) -> String {
        self.function.model().name().to_string()
    }

    fn attach(&self, vmm: &dyn Vmm) -> Result<(), DeviceError> {
        let name = self.name();
        let vmm_err = |source| DeviceError::Vmm {
            device: name.clone(),
            source,
        };
        let mut st = lock(&self.attached);
        let slot = vmm
            .add_memory(self.layout.dma_gpa, Arc::new(self.window_memory()))
            .map_err(vmm_err)?;
        st.slot = Some(slot);
        for bar in &self.bars {
            let Some(gpa) = self.bar_gpa(bar.index()) else {
                continue;
            };
            let len = self
                .function
                .model()
                .bar_len(bar.index())
                .unwrap_or(0)
                .max(4096) as u64;
            vmm.add_mmio(gpa, len, Arc::clone(bar) as Arc<dyn super::MmioHandler>)
                .map_err(vmm_err)?;
            st.mmio.push(gpa);
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
        if let Some(slot) = st.slot.take() {
            let _ = vmm.remove_memory(slot);
        }
    }

    fn layout(&self) -> DeviceLayout {
        self.layout
    }

    fn dma_window(&self) -> Arc<dyn SlotMemory> {
        Arc::new(self.window_memory())
    }

    fn exit_summary(&self) -> Vec<String> {
        exit_bars_summary(&self.bars)
    }
}

impl<M: DeviceModel> Drop for ModelDevice<M> {
    fn drop(&mut self) {
        self.function.msi().set_forward(None);
        let _ = self.iommu.unmap(self.layout.dma_gpa, self.layout.dma_len);
    }
}

/// DSA model in a guest: BAR0 registers, BAR2 portals (assembled).
pub type DsaGuestDevice = ModelDevice<DsaModel>;
/// CBDMA model in a guest.
pub type IoatGuestDevice = ModelDevice<CbdmaModel>;
/// edu model in a guest.
pub type EduGuestDevice = ModelDevice<EduModel>;

impl ModelDevice<DsaModel> {
    /// A fresh DSA model (Sapphire Rapids profile) in `mode`, its BAR2 portals assembled.
    pub fn dsa(mode: ExecMode, layout: DeviceLayout) -> Result<Self, DeviceError> {
        let iommu = Iommu::new();
        let model = DsaModel::new(Arc::clone(&iommu), mode);
        Self::new(model, iommu, &[2], layout)
    }
}

impl ModelDevice<CbdmaModel> {
    /// A fresh CBDMA model (default configuration) in `mode`.
    pub fn ioat(mode: ExecMode, layout: DeviceLayout) -> Result<Self, DeviceError> {
        let iommu = Iommu::new();
        let model = CbdmaModel::new(
            Arc::clone(&iommu),
            CbdmaConfig {
                mode,
                ..CbdmaConfig::default()
            },
        );
        Self::new(model, iommu, &[], layout)
    }
}

impl ModelDevice<EduModel> {
    /// A fresh edu model in `mode`, DMA mask widened to 64 bits (the QEMU rig's edu has
    /// `dma_mask` raised too), so the DMA window may sit anywhere.
    pub fn edu(mode: ExecMode, layout: DeviceLayout) -> Result<Self, DeviceError> {
        let iommu = Iommu::new();
        let model = EduModel::with_dma_mask(Arc::clone(&iommu), mode, u64::MAX);
        Self::new(model, iommu, &[], layout)
    }
}

#[cfg(test)]
mod tests;
