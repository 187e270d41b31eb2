//! The passthrough backing on a device double: a BAR of host memory mapped whole (becomes a
//! memory slot), a BAR of registers served from exits (sparse-style), a portal BAR, real
//! eventfds per vector, and a recording IOMMU. The VFIO glue itself ([`VfioFunction`]) needs
//! `/dev/vfio` and runs in the QEMU rig.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::sys::eventfd::{EfdFlags, EventFd};
use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, PortalError, RegisterIo};
use passthru_models::iommu::HostMemory;

use super::super::model::ModelMemory;
use super::super::request::{DeviceRequest, MsiTarget, ReplyError};
use super::super::testing::FakeVmm;
use super::super::{DeviceLayout, Devices, GuestDevice, GuestRamRange, MsiMessage, SlotMemory};
use super::{dup_raw, DmaMapper, PassthroughDevice, PassthroughFunction};

#[derive(Default)]
struct Regs {
    bytes: Vec<u8>,
    portal: Vec<(usize, [u8; 64])>,
}

/// A register BAR: plain bytes, plus a log of portal submissions.
#[derive(Clone)]
struct RegBar(Arc<Mutex<Regs>>);

macro_rules! reg_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, o: usize) -> $t {
            const N: usize = std::mem::size_of::<$t>();
            let r = self.0.lock().unwrap();
            <$t>::from_le_bytes(r.bytes[o..o + N].try_into().unwrap())
        }
        fn $write(&self, o: usize, v: $t) {
            const N: usize = std::mem::size_of::<$t>();
            self.0.lock().unwrap().bytes[o..o + N].copy_from_slice(&v.to_le_bytes());
        }
    };
}

impl RegisterIo for RegBar {
    fn len(&self) -> usize {
        self.0.lock().unwrap().bytes.len()
    }
    reg_rw!(read8, write8, u8);
    reg_rw!(read16, write16, u16);
    reg_rw!(read32, write32, u32);
    reg_rw!(read64, write64, u64);
    fn submit64(&self, offset: usize, d: &[u8; 64]) -> Result<(), PortalError> {
        self.0.lock().unwrap().portal.push((offset, *d));
        Ok(())
    }
}

#[derive(Default)]
struct FnState {
    config: Vec<u8>,
    fds: Vec<(IrqKind, u32, EventFd)>,
    resets: u32,
    log: Vec<String>,
}

/// BAR0: 16 KiB of memory mapped whole. BAR2: 4 KiB of registers (exits). BAR3: 4 KiB of
/// registers, the portal BAR in tests that ask for one. 8 MSI-X vectors.
#[derive(Clone)]
struct FakeFunction {
    bar0: Arc<HostMemory>,
    bar2: RegBar,
    bar3: RegBar,
    st: Arc<Mutex<FnState>>,
}

impl FakeFunction {
    fn new() -> Self {
        let mut config = vec![0u8; 256];
        config[..4].copy_from_slice(&[0x86, 0x80, 0x34, 0x12]);
        let regs = || {
            RegBar(Arc::new(Mutex::new(Regs {
                bytes: vec![0; 4096],
                portal: Vec::new(),
            })))
        };
        Self {
            bar0: HostMemory::pages(16 << 10).unwrap(),
            bar2: regs(),
            bar3: regs(),
            st: Arc::new(Mutex::new(FnState {
                config,
                ..FnState::default()
            })),
        }
    }

    fn log(&self) -> Vec<String> {
        self.st.lock().unwrap().log.clone()
    }

    /// The device raises vector `v` of `kind`.
    fn fire(&self, kind: IrqKind, v: u32) {
        let st = self.st.lock().unwrap();
        let (_, _, fd) = st
            .fds
            .iter()
            .find(|(k, x, _)| *k == kind && *x == v)
            .expect("vector enabled");
        fd.write(1).unwrap();
    }
}

impl PciFunction for FakeFunction {
    type Bar = RegBar;
    fn bar(&self, index: u8) -> Result<RegBar, FunctionError> {
        match index {
            2 => Ok(self.bar2.clone()),
            3 => Ok(self.bar3.clone()),
            _ => Err(FunctionError::NoSuchBar(index)),
        }
    }
    fn config_read8(&self, o: u16) -> Result<u8, FunctionError> {
        Ok(self.st.lock().unwrap().config[o as usize])
    }
    fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
        Ok(u16::from(self.config_read8(o)?) | u16::from(self.config_read8(o + 1)?) << 8)
    }
    fn config_read32(&self, o: u16) -> Result<u32, FunctionError> {
        if o >= 256 {
            return Err(FunctionError::ConfigOutOfRange { offset: o });
        }
        Ok(u32::from(self.config_read16(o)?) | u32::from(self.config_read16(o + 2)?) << 16)
    }
    fn config_write8(&self, o: u16, v: u8) -> Result<(), FunctionError> {
        self.st.lock().unwrap().config[o as usize] = v;
        Ok(())
    }
    fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
        self.config_write8(o, v as u8)?;
        self.config_write8(o + 1, (v >> 8) as u8)
    }
    fn config_write32(&self, o: u16, v: u32) -> Result<(), FunctionError> {
        self.config_write16(o, v as u16)?;
        self.config_write16(o + 2, (v >> 16) as u16)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        let mut st = self.st.lock().unwrap();
        st.log.push(format!("irq_enable {kind:?} {first}+{count}"));
        if first + count > 8
            || st
                .fds
                .iter()
                .any(|(k, v, _)| *k == kind && (first..first + count).contains(v))
        {
            return Err(FunctionError::Os {
                op: "VFIO_DEVICE_SET_IRQS",
                errno: 22,
            });
        }
        for v in first..first + count {
            let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).unwrap();
            st.fds.push((kind, v, fd));
        }
        Ok(())
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        let mut st = self.st.lock().unwrap();
        st.log.push(format!("irq_disable {kind:?}"));
        st.fds.retain(|(k, _, _)| *k != kind);
        Ok(())
    }
    fn reset(&self) -> Result<(), FunctionError> {
        self.st.lock().unwrap().resets += 1;
        Ok(())
    }
}

impl PassthroughFunction for FakeFunction {
    fn name(&self) -> String {
        "0000:00:04.0".into()
    }
    fn bar_size(&self, index: u8) -> Option<u64> {
        match index {
            0 => Some(16 << 10),
            2 | 3 => Some(4096),
            _ => None,
        }
    }
    fn bar_memory(&self, index: u8) -> Option<Arc<dyn SlotMemory>> {
        (index == 0).then(|| Arc::new(ModelMemory::new(Arc::clone(&self.bar0)).unwrap()) as _)
    }
    fn irq_eventfd(&self, kind: IrqKind, vector: u32) -> Option<OwnedFd> {
        let st = self.st.lock().unwrap();
        st.fds
            .iter()
            .find(|(k, v, _)| *k == kind && *v == vector)
            .and_then(|(_, _, fd)| fd.as_fd().try_clone_to_owned().ok())
    }
}

#[derive(Default)]
struct FakeMapper {
    maps: Mutex<Vec<(usize, u64, u64)>>,
    unmaps: Mutex<Vec<(u64, u64)>>,
    fail_iova: Mutex<Option<u64>>,
}

impl DmaMapper for FakeMapper {
    unsafe fn map(&self, host: usize, iova: u64, len: u64) -> Result<(), String> {
        if *self.fail_iova.lock().unwrap() == Some(iova) {
            return Err("EFAULT".into());
        }
        self.maps.lock().unwrap().push((host, iova, len));
        Ok(())
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), String> {
        self.unmaps.lock().unwrap().push((iova, len));
        Ok(())
    }
}

const WINDOW: u64 = 1 << 20;
const RAM: GuestRamRange = GuestRamRange {
    gpa: 0,
    host: 0x7f00_0000_0000,
    len: 64 << 20,
};

struct Rig {
    f: FakeFunction,
    mapper: Arc<FakeMapper>,
    dev: Arc<PassthroughDevice<FakeFunction>>,
    devices: Devices,
    vmm: FakeVmm,
}

fn layout() -> DeviceLayout {
    DeviceLayout::standard(WINDOW)
}

fn rig_with(portal_bars: &[u8]) -> Rig {
    let f = FakeFunction::new();
    let mapper = Arc::new(FakeMapper::default());
    let dma = Arc::new(ModelMemory::new(HostMemory::pages(WINDOW as usize).unwrap()).unwrap());
    let dev = Arc::new(
        PassthroughDevice::new(
            f.clone(),
            Arc::clone(&mapper) as Arc<dyn DmaMapper>,
            portal_bars,
            layout(),
            dma,
        )
        .unwrap(),
    );
    let mut devices = Devices::new();
    devices
        .push(Arc::clone(&dev) as Arc<dyn GuestDevice>)
        .unwrap();
    let vmm = FakeVmm::with_ram(vec![RAM]);
    devices.attach_all(&vmm).unwrap();
    Rig {
        f,
        mapper,
        dev,
        devices,
        vmm,
    }
}

fn rig() -> Rig {
    rig_with(&[])
}

fn enable(first: u32, count: u32) -> DeviceRequest {
    DeviceRequest::IrqEnable {
        device: 0,
        kind: IrqKind::MsiX,
        first,
        count,
        target: MsiTarget {
            dest_apic_id: 3,
            vector_base: 0x60,
        },
    }
}

#[test]
fn attach_installs_window_and_mapped_bars_as_memory_and_maps_iova_equal_gpa() {
    let r = rig();
    let bar0 = r.dev.bar_gpa(0).unwrap();
    let mut slots = r.vmm.slots();
    slots.sort();
    assert_eq!(
        slots,
        vec![(layout().dma_gpa, WINDOW as usize), (bar0, 16 << 10)]
    );
    let bar2 = r.dev.bar_gpa(2).unwrap();
    let bar3 = r.dev.bar_gpa(3).unwrap();
    assert_eq!(r.vmm.mmio_ranges(), vec![(bar2, 4096), (bar3, 4096)]);
    let maps = r.mapper.maps.lock().unwrap().clone();
    assert_eq!(
        maps,
        vec![
            (
                r.dev.dma_memory().host_ptr() as usize,
                layout().dma_gpa,
                WINDOW
            ),
            (RAM.host, RAM.gpa, RAM.len),
        ],
        "DMA window and guest RAM at IOVA = GPA"
    );
}

#[test]
fn guest_stores_reach_bar_memory_directly_and_register_bars_through_exits() {
    let r = rig();
    let bar0 = r.dev.bar_gpa(0).unwrap();
    r.vmm.write_u64(bar0 + 0x100, 0xfeed_f00d);
    let mut b = [0u8; 8];
    r.f.bar0.read(0x100, &mut b).unwrap();
    assert_eq!(
        u64::from_le_bytes(b),
        0xfeed_f00d,
        "memory slot over the BAR"
    );
    let bar2 = r.dev.bar_gpa(2).unwrap();
    r.vmm.write_u32(bar2 + 0x10, 0xabcd);
    assert_eq!(r.f.bar2.read32(0x10), 0xabcd);
    r.f.bar2.write64(0x20, 0x1234_5678_9abc);
    assert_eq!(r.vmm.read_u64(bar2 + 0x20), 0x1234_5678_9abc);
    let s = r.dev.mmio_stats(2).unwrap();
    assert_eq!((s.reads, s.writes, s.bad_accesses), (1, 1, 0));
    assert_eq!(r.dev.mmio_stats(0), None, "BAR0 has no exits");
}

#[test]
fn portal_bar_is_served_from_exits_and_assembled() {
    let r = rig_with(&[3]);
    let bar3 = r.dev.bar_gpa(3).unwrap();
    let d: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x5a);
    for i in (0..8).rev() {
        r.vmm.guest_write(
            1,
            bar3 + 0x40 + 8 * i,
            &d[8 * i as usize..8 * i as usize + 8],
        );
    }
    assert_eq!(r.f.bar3.0.lock().unwrap().portal, vec![(0x40, d)]);
    assert_eq!(r.dev.mmio_stats(3).unwrap().portal_errors, 0);
    // A reset forgets a half-written descriptor.
    r.vmm.write_u64(bar3, 1);
    r.devices
        .call(DeviceRequest::Reset { device: 0 }, &r.vmm)
        .unwrap();
    assert_eq!(r.f.st.lock().unwrap().resets, 1);
    for i in 1..8 {
        r.vmm.write_u64(bar3 + 8 * i, 2);
    }
    assert_eq!(r.f.bar3.0.lock().unwrap().portal.len(), 1, "no torn submit");
}

#[test]
fn device_vectors_reach_their_guest_vectors_through_the_connected_eventfds() {
    let r = rig();
    r.devices.call(enable(0, 3), &r.vmm).unwrap();
    assert_eq!(r.f.log(), vec!["irq_enable MsiX 0+3"]);
    let routes = r.vmm.routes();
    assert_eq!(routes.len(), 3);
    for v in 0..3u32 {
        let msi = MsiMessage::fixed(3, 0x60 + v as u8).unwrap();
        assert!(
            routes.iter().any(|(_, m)| *m == msi),
            "vector {v} → {msi:?}"
        );
    }
    r.f.fire(IrqKind::MsiX, 1);
    r.f.fire(IrqKind::MsiX, 1);
    let g1 = r.vmm.gsi_for_vector(0x61).unwrap();
    let g0 = r.vmm.gsi_for_vector(0x60).unwrap();
    assert_eq!(
        r.vmm.take_interrupts(g1),
        2,
        "the device's own eventfd is the irqfd"
    );
    assert_eq!(r.vmm.take_interrupts(g0), 0);
    // More vectors join the existing routes (VFIO adds to an enabled index).
    r.devices.call(enable(3, 1), &r.vmm).unwrap();
    assert_eq!(r.vmm.routes().len(), 4);
    // VFIO refuses an enabled vector again: the error comes back and nothing changes.
    assert_eq!(
        r.devices.call(enable(0, 1), &r.vmm),
        Err(ReplyError::Os(22))
    );
    assert_eq!(r.vmm.routes().len(), 4);
}

#[test]
fn disable_disconnects_routes_before_the_device_closes_its_eventfds() {
    let r = rig();
    r.devices.call(enable(0, 2), &r.vmm).unwrap();
    r.devices
        .call(
            DeviceRequest::IrqDisable {
                device: 0,
                kind: IrqKind::MsiX,
            },
            &r.vmm,
        )
        .unwrap();
    assert!(r.vmm.routes().is_empty());
    let log = r.vmm.log();
    let last_disconnect = log.iter().rposition(|l| l.starts_with("disconnect_msi"));
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("disconnect_msi"))
            .count(),
        2
    );
    assert!(last_disconnect.is_some());
    assert_eq!(r.f.log().last().unwrap(), "irq_disable MsiX");
}

#[test]
fn failed_route_disables_the_vectors_again() {
    let r = rig();
    *r.vmm.fail_connect.lock().unwrap() = true;
    assert_eq!(
        r.devices.call(enable(0, 2), &r.vmm),
        Err(ReplyError::Os(libc::EIO))
    );
    assert!(r.vmm.routes().is_empty());
    assert_eq!(r.f.log(), vec!["irq_enable MsiX 0+2", "irq_disable MsiX"]);
}

#[test]
fn intx_and_unroutable_vectors_are_refused_before_touching_the_device() {
    let r = rig();
    let mut req = enable(0, 1);
    if let DeviceRequest::IrqEnable { kind, .. } = &mut req {
        *kind = IrqKind::Intx;
    }
    assert_eq!(r.devices.call(req, &r.vmm), Err(ReplyError::Unsupported));
    let high = DeviceRequest::IrqEnable {
        device: 0,
        kind: IrqKind::Msi,
        first: 0,
        count: 2,
        target: MsiTarget {
            dest_apic_id: 0,
            vector_base: 0xff,
        },
    };
    assert_eq!(r.devices.call(high, &r.vmm), Err(ReplyError::BadVector(1)));
    assert!(r.f.log().is_empty());
}

#[test]
fn config_bar_info_and_reset_go_to_the_device() {
    let r = rig();
    let c = |req| r.devices.call(req, &r.vmm);
    let id = c(DeviceRequest::ConfigRead {
        device: 0,
        offset: 0,
        width: 4,
    })
    .unwrap();
    assert_eq!(id.value, 0x1234_8086);
    c(DeviceRequest::ConfigWrite {
        device: 0,
        offset: 4,
        width: 2,
        value: 0x0406,
    })
    .unwrap();
    assert_eq!(r.f.config_read16(4).unwrap(), 0x0406);
    assert_eq!(
        c(DeviceRequest::ConfigRead {
            device: 0,
            offset: 256,
            width: 4
        }),
        Err(ReplyError::ConfigOutOfRange(256))
    );
    let b2 = c(DeviceRequest::BarInfo {
        device: 0,
        index: 2,
    })
    .unwrap();
    assert_eq!((b2.value, b2.extra), (r.dev.bar_gpa(2).unwrap(), 4096));
    assert_eq!(
        c(DeviceRequest::BarInfo {
            device: 0,
            index: 1
        }),
        Err(ReplyError::NoSuchBar(1))
    );
    c(DeviceRequest::Reset { device: 0 }).unwrap();
    assert_eq!(r.f.st.lock().unwrap().resets, 1);
}

#[test]
fn detach_undoes_everything_and_drop_unmaps_an_attached_device() {
    let r = rig();
    r.devices.call(enable(0, 2), &r.vmm).unwrap();
    r.devices.detach_all(&r.vmm);
    assert!(r.vmm.slots().is_empty());
    assert!(r.vmm.mmio_ranges().is_empty());
    assert!(r.vmm.routes().is_empty());
    let mut un = r.mapper.unmaps.lock().unwrap().clone();
    un.sort();
    assert_eq!(un, vec![(RAM.gpa, RAM.len), (layout().dma_gpa, WINDOW)]);

    let r2 = rig();
    let mapper = Arc::clone(&r2.mapper);
    drop(r2);
    assert_eq!(mapper.unmaps.lock().unwrap().len(), 2, "drop unmapped both");
}

#[test]
fn iommu_failure_fails_attach_naming_the_range() {
    let f = FakeFunction::new();
    let mapper = Arc::new(FakeMapper::default());
    *mapper.fail_iova.lock().unwrap() = Some(RAM.gpa);
    let dma = Arc::new(ModelMemory::new(HostMemory::pages(WINDOW as usize).unwrap()).unwrap());
    let dev = PassthroughDevice::new(f, mapper.clone(), &[], layout(), dma).unwrap();
    let vmm = FakeVmm::with_ram(vec![RAM]);
    let e = dev.attach(&vmm).unwrap_err().to_string();
    assert!(
        e.contains("IOMMU map") && e.contains("0x0+0x4000000"),
        "{e}"
    );
    dev.detach(&vmm);
    assert_eq!(
        mapper.unmaps.lock().unwrap().clone(),
        vec![(layout().dma_gpa, WINDOW)]
    );
    assert!(vmm.slots().is_empty());
}

#[test]
fn window_of_the_wrong_size_is_refused() {
    let dma = Arc::new(ModelMemory::new(HostMemory::pages(4096).unwrap()).unwrap());
    let e = PassthroughDevice::new(
        FakeFunction::new(),
        Arc::new(FakeMapper::default()),
        &[],
        layout(),
        dma,
    )
    .unwrap_err();
    assert!(e.to_string().contains("DMA window"), "{e}");
}

#[test]
fn dup_raw_shares_the_eventfd_and_refuses_bad_numbers() {
    let e = EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap();
    let d = dup_raw(e.as_raw_fd()).unwrap();
    assert_ne!(d.as_raw_fd(), e.as_raw_fd());
    nix::unistd::write(&d, &1u64.to_ne_bytes()).unwrap();
    assert_eq!(e.read().unwrap(), 1);
    assert!(dup_raw(-1).is_none());
}
