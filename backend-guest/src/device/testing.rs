//! A VMM double for unit tests: records memory slots, MMIO handlers and MSI routes, and lets a
//! test play the guest (MMIO exits by GPA, loads/stores to installed memory, interrupt checks).
#![allow(dead_code)] // helpers shared by the model and VFIO tests; not every test uses each

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{GuestRamRange, MmioHandler, MsiMessage, SlotMemory, Vmm, VmmError};

pub(crate) struct Route {
    pub fd: OwnedFd,
    pub msi: MsiMessage,
}

#[derive(Default)]
struct State {
    mmio: BTreeMap<u64, (u64, Arc<dyn MmioHandler>)>,
    memory: BTreeMap<u32, (u64, Arc<dyn SlotMemory>)>,
    next_slot: u32,
    routes: BTreeMap<u32, Route>,
    next_gsi: u32,
    log: Vec<String>,
}

/// The fake VMM.
#[derive(Default)]
pub(crate) struct FakeVmm {
    st: Mutex<State>,
    ram: Vec<GuestRamRange>,
    /// Make the next `connect_msi` fail.
    pub fail_connect: Mutex<bool>,
}

impl FakeVmm {
    pub fn new() -> Self {
        Self {
            st: next_slot_start(),
            ..Self::default()
        }
    }

    pub fn with_ram(ram: Vec<GuestRamRange>) -> Self {
        Self { ram, ..Self::new() }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap()
    }

    fn handler(&self, gpa: u64) -> Option<(u64, Arc<dyn MmioHandler>)> {
        let st = self.st();
        let (&base, (len, h)) = st.mmio.range(..=gpa).next_back()?;
        (gpa < base + len).then(|| (gpa - base, Arc::clone(h)))
    }

    fn memory_at(&self, gpa: u64, len: usize) -> Option<*mut u8> {
        let st = self.st();
        st.memory.values().find_map(|(base, m)| {
            let off = gpa.checked_sub(*base)? as usize;
            (off + len <= m.len()).then(|| {
                // SAFETY: off + len is inside the memory (checked just above).
                unsafe { m.host_ptr().add(off) }
            })
        })
    }

    /// A guest store: memory if a slot covers it, else an MMIO exit. False if neither.
    pub fn guest_write(&self, vcpu: usize, gpa: u64, data: &[u8]) -> bool {
        if let Some(p) = self.memory_at(gpa, data.len()) {
            // SAFETY: p..p+len lies in installed guest memory (memory_at), which is kept alive
            // by the slot; raw copy, no reference into it.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
            return true;
        }
        match self.handler(gpa) {
            Some((off, h)) => {
                let _ = h.write(vcpu, off, data);
                true
            }
            None => false,
        }
    }

    /// A guest load, as [`FakeVmm::guest_write`].
    pub fn guest_read(&self, vcpu: usize, gpa: u64, data: &mut [u8]) -> bool {
        if let Some(p) = self.memory_at(gpa, data.len()) {
            // SAFETY: as in guest_write.
            unsafe { std::ptr::copy_nonoverlapping(p, data.as_mut_ptr(), data.len()) };
            return true;
        }
        match self.handler(gpa) {
            Some((off, h)) => {
                let _ = h.read(vcpu, off, data);
                true
            }
            None => false,
        }
    }

    pub fn read_u32(&self, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        assert!(self.guest_read(0, gpa, &mut b), "nothing at {gpa:#x}");
        u32::from_le_bytes(b)
    }

    pub fn write_u32(&self, gpa: u64, v: u32) {
        assert!(
            self.guest_write(0, gpa, &v.to_le_bytes()),
            "nothing at {gpa:#x}"
        );
    }

    pub fn read_u64(&self, gpa: u64) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.guest_read(0, gpa, &mut b), "nothing at {gpa:#x}");
        u64::from_le_bytes(b)
    }

    pub fn write_u64(&self, gpa: u64, v: u64) {
        assert!(
            self.guest_write(0, gpa, &v.to_le_bytes()),
            "nothing at {gpa:#x}"
        );
    }

    /// Installed memory slots as (gpa, len).
    pub fn slots(&self) -> Vec<(u64, usize)> {
        self.st()
            .memory
            .values()
            .map(|(g, m)| (*g, m.len()))
            .collect()
    }

    /// Registered MMIO ranges as (gpa, len).
    pub fn mmio_ranges(&self) -> Vec<(u64, u64)> {
        self.st().mmio.iter().map(|(g, (l, _))| (*g, *l)).collect()
    }

    /// Connected routes as (gsi, msi).
    pub fn routes(&self) -> Vec<(u32, MsiMessage)> {
        self.st().routes.iter().map(|(g, r)| (*g, r.msi)).collect()
    }

    /// The route delivering `vector` (from its MSI data).
    pub fn gsi_for_vector(&self, vector: u8) -> Option<u32> {
        self.routes()
            .into_iter()
            .find(|(_, m)| m.data & 0xff == u32::from(vector))
            .map(|(g, _)| g)
    }

    /// Interrupts signalled on `gsi` since the last call (what KVM would inject), 0 if none.
    pub fn take_interrupts(&self, gsi: u32) -> u64 {
        let st = self.st();
        let Some(r) = st.routes.get(&gsi) else {
            return 0;
        };
        let mut fds = [PollFd::new(r.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return 0,
        }
        let mut b = [0u8; 8];
        match nix::unistd::read(&r.fd, &mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    /// Every VMM call, in order.
    pub fn log(&self) -> Vec<String> {
        self.st().log.clone()
    }
}

fn next_slot_start() -> Mutex<State> {
    Mutex::new(State {
        next_slot: 10,
        next_gsi: 24,
        ..State::default()
    })
}

impl Vmm for FakeVmm {
    fn add_mmio(&self, gpa: u64, len: u64, handler: Arc<dyn MmioHandler>) -> Result<(), VmmError> {
        let mut st = self.st();
        st.log.push(format!("add_mmio {gpa:#x}+{len:#x}"));
        st.mmio.insert(gpa, (len, handler));
        Ok(())
    }

    fn remove_mmio(&self, gpa: u64) -> Result<(), VmmError> {
        let mut st = self.st();
        st.log.push(format!("remove_mmio {gpa:#x}"));
        st.mmio.remove(&gpa).map(|_| ()).ok_or(VmmError {
            op: "remove_mmio",
            reason: format!("nothing at {gpa:#x}"),
        })
    }

    fn add_memory(&self, gpa: u64, memory: Arc<dyn SlotMemory>) -> Result<u32, VmmError> {
        let mut st = self.st();
        let slot = st.next_slot;
        st.next_slot += 1;
        st.log.push(format!(
            "add_memory {gpa:#x}+{:#x} slot {slot}",
            memory.len()
        ));
        st.memory.insert(slot, (gpa, memory));
        Ok(slot)
    }

    fn remove_memory(&self, slot: u32) -> Result<(), VmmError> {
        let mut st = self.st();
        st.log.push(format!("remove_memory slot {slot}"));
        st.memory.remove(&slot).map(|_| ()).ok_or(VmmError {
            op: "remove_memory",
            reason: format!("no slot {slot}"),
        })
    }

    fn connect_msi(&self, fd: BorrowedFd<'_>, msi: MsiMessage) -> Result<u32, VmmError> {
        if std::mem::take(&mut *self.fail_connect.lock().unwrap()) {
            return Err(VmmError {
                op: "KVM_IRQFD",
                reason: "injected failure".into(),
            });
        }
        let fd = fd.try_clone_to_owned().map_err(|e| VmmError {
            op: "dup",
            reason: e.to_string(),
        })?;
        let mut st = self.st();
        let gsi = st.next_gsi;
        st.next_gsi += 1;
        st.log.push(format!(
            "connect_msi gsi {gsi} addr {:#x}:{:#x} data {:#x}",
            msi.address_hi, msi.address_lo, msi.data
        ));
        st.routes.insert(gsi, Route { fd, msi });
        Ok(gsi)
    }

    fn disconnect_msi(&self, _fd: BorrowedFd<'_>, gsi: u32) -> Result<(), VmmError> {
        let mut st = self.st();
        st.log.push(format!("disconnect_msi gsi {gsi}"));
        st.routes.remove(&gsi).map(|_| ()).ok_or(VmmError {
            op: "disconnect_msi",
            reason: format!("no gsi {gsi}"),
        })
    }

    fn guest_ram(&self) -> Vec<GuestRamRange> {
        self.ram.clone()
    }
}

/// The guest's view of a device, played on the host: config, interrupts and reset are
/// requests through [`super::Devices`]; BAR accesses are guest loads/stores at the BAR's GPA
/// (exits or memory, as the fake VMM has it); a 64-byte portal submission is eight 8-byte stores
/// in a scrambled order, as a guest without MOVDIR64B would produce them.
#[derive(Clone)]
pub(crate) struct ExitFunction {
    pub devices: Arc<super::Devices>,
    pub vmm: Arc<FakeVmm>,
    pub index: u8,
    pub target: super::request::MsiTarget,
    pub submissions: Arc<Mutex<u64>>,
}

impl ExitFunction {
    pub fn new(devices: Arc<super::Devices>, vmm: Arc<FakeVmm>, index: u8) -> Self {
        Self {
            devices,
            vmm,
            index,
            target: super::request::MsiTarget {
                dest_apic_id: 0,
                vector_base: 0x40,
            },
            submissions: Arc::new(Mutex::new(0)),
        }
    }

    fn call(
        &self,
        req: super::request::DeviceRequest,
    ) -> Result<super::request::Reply, passthru_core::mmio::FunctionError> {
        let op = req.op();
        self.devices
            .call(req, &*self.vmm)
            .map_err(|e| e.to_function_error(op))
    }
}

pub(crate) struct ExitBar {
    vmm: Arc<FakeVmm>,
    gpa: u64,
    len: usize,
    submissions: Arc<Mutex<u64>>,
}

macro_rules! exit_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, offset: usize) -> $t {
            let mut b = [0xffu8; std::mem::size_of::<$t>()];
            if offset + b.len() <= self.len {
                self.vmm.guest_read(0, self.gpa + offset as u64, &mut b);
            }
            <$t>::from_le_bytes(b)
        }
        fn $write(&self, offset: usize, value: $t) {
            if offset + std::mem::size_of::<$t>() <= self.len {
                self.vmm
                    .guest_write(0, self.gpa + offset as u64, &value.to_le_bytes());
            }
        }
    };
}

impl passthru_core::mmio::RegisterIo for ExitBar {
    fn len(&self) -> usize {
        self.len
    }
    exit_rw!(read8, write8, u8);
    exit_rw!(read16, write16, u16);
    exit_rw!(read32, write32, u32);
    exit_rw!(read64, write64, u64);
    fn submit64(
        &self,
        offset: usize,
        d: &[u8; 64],
    ) -> Result<(), passthru_core::mmio::PortalError> {
        let n = {
            let mut s = self.submissions.lock().unwrap();
            *s += 1;
            *s
        };
        // A different permutation of the eight pieces for every submission.
        let mut order: [usize; 8] = std::array::from_fn(|i| i);
        let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for i in (1..8).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for i in order {
            self.vmm
                .guest_write(0, self.gpa + (offset + 8 * i) as u64, &d[8 * i..8 * i + 8]);
        }
        Ok(())
    }
}

impl passthru_core::mmio::PciFunction for ExitFunction {
    type Bar = ExitBar;
    fn bar(&self, index: u8) -> Result<ExitBar, passthru_core::mmio::FunctionError> {
        let r = self.call(super::request::DeviceRequest::BarInfo {
            device: self.index,
            index,
        })?;
        Ok(ExitBar {
            vmm: Arc::clone(&self.vmm),
            gpa: r.value,
            len: r.extra as usize,
            submissions: Arc::clone(&self.submissions),
        })
    }
    fn config_read8(&self, offset: u16) -> Result<u8, passthru_core::mmio::FunctionError> {
        self.config_read(offset, 1).map(|v| v as u8)
    }
    fn config_read16(&self, offset: u16) -> Result<u16, passthru_core::mmio::FunctionError> {
        self.config_read(offset, 2).map(|v| v as u16)
    }
    fn config_read32(&self, offset: u16) -> Result<u32, passthru_core::mmio::FunctionError> {
        self.config_read(offset, 4)
    }
    fn config_write8(
        &self,
        offset: u16,
        value: u8,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.config_write(offset, 1, value.into())
    }
    fn config_write16(
        &self,
        offset: u16,
        value: u16,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.config_write(offset, 2, value.into())
    }
    fn config_write32(
        &self,
        offset: u16,
        value: u32,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.config_write(offset, 4, value)
    }
    fn irq_enable(
        &self,
        kind: passthru_core::mmio::IrqKind,
        first: u32,
        count: u32,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.call(super::request::DeviceRequest::IrqEnable {
            device: self.index,
            kind,
            first,
            count,
            target: self.target,
        })
        .map(|_| ())
    }
    fn irq_disable(
        &self,
        kind: passthru_core::mmio::IrqKind,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.call(super::request::DeviceRequest::IrqDisable {
            device: self.index,
            kind,
        })
        .map(|_| ())
    }
    fn reset(&self) -> Result<(), passthru_core::mmio::FunctionError> {
        self.call(super::request::DeviceRequest::Reset { device: self.index })
            .map(|_| ())
    }
}

impl ExitFunction {
    fn config_read(
        &self,
        offset: u16,
        width: u8,
    ) -> Result<u32, passthru_core::mmio::FunctionError> {
        self.call(super::request::DeviceRequest::ConfigRead {
            device: self.index,
            offset,
            width,
        })
        .map(|r| r.value as u32)
    }
    fn config_write(
        &self,
        offset: u16,
        width: u8,
        value: u32,
    ) -> Result<(), passthru_core::mmio::FunctionError> {
        self.call(super::request::DeviceRequest::ConfigWrite {
            device: self.index,
            offset,
            width,
            value,
        })
        .map(|_| ())
    }
}
