//! The device hooks ([`Vmm`]) on a [`Vm`], and the host-request handler that serves a guest's
//! device requests.
//!
//! [`KvmDeviceHost`] owns the VM's GSI routing table and the irqfds of the devices' vectors; it
//! is shared with the vCPU threads (it is the [`HostRequestHandler`]), so a guest's IRQ enable
//! is routed while the VM runs. BARs and memory slots are installed once, before the VM starts
//! ([`KvmDeviceHost::attach`]); the VM keeps them until it is dropped.
//!
//! GSIs are allocated from 24 upwards (below are the in-kernel irqchip's IOAPIC pins). Only this
//! host may set the VM's routing table while it is in use (a table replace drops every route).

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use super::request::{REPLY_WORDS, REQUEST_WORDS};
use super::{
    lock, DeviceError, Devices, GuestRamRange, MmioHandler, MsiMessage, SlotMemory, Vmm, VmmError,
};
use crate::irq::{routing_table, GsiRoute, IrqFd, MAX_GSI_ROUTES};
use crate::memory::GuestMemory;
use crate::vm::{HandlerError, HostRequest, HostRequestHandler, Vm};

/// First GSI handed out (0..23 are the IOAPIC's pins).
pub const FIRST_GSI: u32 = 24;

#[derive(Default)]
struct Routes {
    routes: BTreeMap<u32, (MsiMessage, IrqFd)>,
}

/// Interrupt routing for devices, and the [`HostRequestHandler`] for their requests.
pub struct KvmDeviceHost {
    vm: Arc<VmFd>,
    ram: GuestRamRange,
    devices: Devices,
    routes: Mutex<Routes>,
    /// Other host requests (a test's own), by code.
    other: Option<Arc<dyn HostRequestHandler>>,
}

impl std::fmt::Debug for KvmDeviceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmDeviceHost")
            .field("devices", &self.devices)
            .field("routes", &lock(&self.routes).routes.len())
            .finish()
    }
}

fn vmm_err(op: &'static str, e: impl std::fmt::Display) -> VmmError {
    VmmError {
        op,
        reason: e.to_string(),
    }
}

impl KvmDeviceHost {
    /// Attach `devices` to `vm` (memory slots, BAR handlers, IOMMU mappings) and register the
    /// result as the VM's host-request handler. Requests with another code than
    /// [`super::request::DEVICE_REQUEST_CODE`] go to `other` (a test's own handler), if any.
    /// Call before [`Vm::start`].
    pub fn attach(
        vm: &Vm,
        devices: Devices,
        other: Option<Arc<dyn HostRequestHandler>>,
    ) -> Result<Arc<Self>, DeviceError> {
        let mem = vm.memory();
        let host = Arc::new(Self {
            vm: vm.vm_fd_shared(),
            ram: GuestRamRange {
                gpa: 0,
                host: mem.host_ptr() as usize,
                len: mem.size(),
            },
            devices,
            routes: Mutex::new(Routes::default()),
            other,
        });
        let ctx = AttachCtx { vm, host: &host };
        if let Err(e) = host.devices.attach_all(&ctx) {
            host.devices.detach_all(&*host);
            return Err(e);
        }
        vm.set_host_request_handler(Arc::clone(&host) as Arc<dyn HostRequestHandler>);
        Ok(host)
    }

    /// The devices.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// The routes currently connected, as (GSI, message).
    pub fn routes(&self) -> Vec<(u32, MsiMessage)> {
        lock(&self.routes)
            .routes
            .iter()
            .map(|(g, (m, _))| (*g, *m))
            .collect()
    }

    /// Disconnect every device (interrupt routes, IOMMU mappings); call before dropping the VM.
    pub fn detach(&self) {
        self.devices.detach_all(self);
    }

    fn set_table(&self, r: &Routes, extra: Option<GsiRoute>) -> Result<(), VmmError> {
        let routes: Vec<GsiRoute> = r
            .routes
            .iter()
            .map(|(gsi, (msi, _))| GsiRoute {
                gsi: *gsi,
                msi: *msi,
            })
            .chain(extra)
            .collect();
        let table = routing_table(&routes).map_err(|e| vmm_err("KVM_SET_GSI_ROUTING", e))?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(|e| vmm_err("KVM_SET_GSI_ROUTING", e))
    }
}

impl Vmm for KvmDeviceHost {
    fn add_mmio(&self, gpa: u64, _: u64, _: Arc<dyn MmioHandler>) -> Result<(), VmmError> {
        Err(vmm_err(
            "add MMIO handler",
            format!("{gpa:#x}: BARs are installed by KvmDeviceHost::attach, before the VM runs"),
        ))
    }
    fn remove_mmio(&self, gpa: u64) -> Result<(), VmmError> {
        Err(vmm_err(
            "remove MMIO handler",
            format!("{gpa:#x}: the VM keeps its handlers until it is dropped"),
        ))
    }
    fn add_memory(&self, gpa: u64, _: Arc<dyn SlotMemory>) -> Result<u32, VmmError> {
        Err(vmm_err(
            "add memslot",
            format!("{gpa:#x}: memory is installed by KvmDeviceHost::attach"),
        ))
    }
    fn remove_memory(&self, slot: u32) -> Result<(), VmmError> {
        Err(vmm_err(
            "remove memslot",
            format!("slot {slot}: the VM keeps its memslots until it is dropped"),
        ))
    }

    fn connect_msi(&self, fd: BorrowedFd<'_>, msi: MsiMessage) -> Result<u32, VmmError> {
        let mut r = lock(&self.routes);
        let gsi = (FIRST_GSI..MAX_GSI_ROUTES)
            .find(|g| !r.routes.contains_key(g))
            .ok_or_else(|| vmm_err("allocate GSI", "every GSI is in use"))?;
        // Route first (a signal on an unrouted GSI would inject nothing), then bind.
        self.set_table(&r, Some(GsiRoute { gsi, msi }))?;
        match IrqFd::assign(Arc::clone(&self.vm), fd, gsi) {
            Ok(irqfd) => {
                r.routes.insert(gsi, (msi, irqfd));
                Ok(gsi)
            }
            Err(e) => {
                let _ = self.set_table(&r, None);
                Err(vmm_err("KVM_IRQFD", e))
            }
        }
    }

    fn disconnect_msi(&self, _fd: BorrowedFd<'_>, gsi: u32) -> Result<(), VmmError> {
        let mut r = lock(&self.routes);
        let (_, irqfd) = r
            .routes
            .remove(&gsi)
            .ok_or_else(|| vmm_err("disconnect MSI", format!("GSI {gsi} is not connected")))?;
        irqfd
            .deassign()
            .map_err(|e| vmm_err("KVM_IRQFD deassign", e))?;
        self.set_table(&r, None)
    }

    fn guest_ram(&self) -> Vec<GuestRamRange> {
        vec![self.ram]
    }
}

impl HostRequestHandler for KvmDeviceHost {
    fn handle(
        &self,
        request: &HostRequest,
        memory: &GuestMemory,
    ) -> Result<[u64; 4], HandlerError> {
        if request.code != super::request::DEVICE_REQUEST_CODE {
            return match &self.other {
                Some(h) => h.handle(request, memory),
                None => Err(HandlerError(format!(
                    "no handler for host request code {:#x}",
                    request.code
                ))),
            };
        }
        let mut words = [0u64; REQUEST_WORDS];
        words.copy_from_slice(&request.args[..REQUEST_WORDS]);
        let reply = self.devices.handle(words, self);
        let mut out = [0u64; 4];
        out[..REPLY_WORDS].copy_from_slice(&reply);
        Ok(out)
    }
}

/// The hooks while attaching: the VM's own methods for BARs and memory, the host for routes.
struct AttachCtx<'a> {
    vm: &'a Vm,
    host: &'a KvmDeviceHost,
}

impl Vmm for AttachCtx<'_> {
    fn add_mmio(&self, gpa: u64, len: u64, handler: Arc<dyn MmioHandler>) -> Result<(), VmmError> {
        self.vm
            .add_mmio_handler(gpa, len, handler)
            .map_err(|e| vmm_err("add MMIO handler", e))
    }
    fn remove_mmio(&self, gpa: u64) -> Result<(), VmmError> {
        self.host.remove_mmio(gpa)
    }
    fn add_memory(&self, gpa: u64, memory: Arc<dyn SlotMemory>) -> Result<u32, VmmError> {
        let (ptr, len) = (memory.host_ptr(), memory.len() as u64);
        // SAFETY: a SlotMemory is valid, page-aligned mapped memory for as long as the value
        // lives (its trait contract), never referenced by Rust code; the VM keeps `memory`
        // alive until after the memslot is gone.
        unsafe { self.vm.add_memslot(gpa, ptr, len, Box::new(memory)) }
            .map_err(|e| vmm_err("KVM_SET_USER_MEMORY_REGION", e))
    }
    fn remove_memory(&self, slot: u32) -> Result<(), VmmError> {
        self.host.remove_memory(slot)
    }
    fn connect_msi(&self, fd: BorrowedFd<'_>, msi: MsiMessage) -> Result<u32, VmmError> {
        self.host.connect_msi(fd, msi)
    }
    fn disconnect_msi(&self, fd: BorrowedFd<'_>, gsi: u32) -> Result<(), VmmError> {
        self.host.disconnect_msi(fd, gsi)
    }
    fn guest_ram(&self) -> Vec<GuestRamRange> {
        self.host.guest_ram()
    }
}
