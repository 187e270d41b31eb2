//! The model backing played through the fake VMM: the real drivers run on an [`ExitFunction`]
//! (requests for config/IRQ/reset, guest loads/stores at the BAR GPAs, portal submissions as
//! eight scrambled 8-byte stores), so every register access and descriptor goes through the
//! exit path, the portal assembler and the model, and every DMA through the window at
//! IOVA = GPA.

use std::sync::Arc;

use passthru_core::driver::{CheckedDriver, DeviceError as DevErr, Driver, DriverError};
use passthru_core::mmio::{DmaRegion, IrqKind};
use passthru_drivers::dsa::Dsa;
use passthru_drivers::edu::Edu;
use passthru_drivers::ioat::Ioat;
use passthru_models::exec::ExecMode;
use passthru_models::function::DeviceModel;
use passthru_models::StdClock;

use super::super::request::{DeviceRequest, MsiTarget, ReplyError};
use super::super::testing::{ExitFunction, FakeVmm};
use super::super::{DeviceLayout, Devices, GuestDevice};
use super::ModelDevice;

const WINDOW: u64 = 4 << 20;
const SRC_OFF: usize = 1 << 20;
const DST_OFF: usize = 2 << 20;

struct Rig<M: DeviceModel> {
    dev: Arc<ModelDevice<M>>,
    vmm: Arc<FakeVmm>,
    f: ExitFunction,
}

fn rig<M: DeviceModel>(dev: ModelDevice<M>) -> Rig<M> {
    let dev = Arc::new(dev);
    let vmm = Arc::new(FakeVmm::new());
    let mut devices = Devices::new();
    let index = devices
        .push(Arc::clone(&dev) as Arc<dyn GuestDevice>)
        .unwrap();
    devices.attach_all(&*vmm).unwrap();
    let f = ExitFunction::new(Arc::new(devices), Arc::clone(&vmm), index);
    Rig { dev, vmm, f }
}

fn layout() -> DeviceLayout {
    DeviceLayout::standard(WINDOW)
}

impl<M: DeviceModel> Rig<M> {
    fn driver<'s, D>(&'s self) -> CheckedDriver<'s, D>
    where
        D: Driver<'s, Function = ExitFunction, Clock = StdClock>,
    {
        let window: DmaRegion<'s> = self.dev.dma_memory().dma_region(layout().dma_gpa);
        let region = window.subregion(0, SRC_OFF).unwrap();
        let mut d = CheckedDriver::<D>::new(self.f.clone(), StdClock::new(), region).unwrap();
        d.init().unwrap();
        d
    }

    fn src(&self) -> u64 {
        layout().dma_gpa + SRC_OFF as u64
    }

    fn dst(&self) -> u64 {
        layout().dma_gpa + DST_OFF as u64
    }

    /// Host side: fill src with a pattern from `seed`, dst with its complement.
    fn fill(&self, seed: u8, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        let mem = self.dev.dma_memory();
        mem.write(SRC_OFF, &data).unwrap();
        let inv: Vec<u8> = data.iter().map(|b| !b).collect();
        mem.write(DST_OFF, &inv).unwrap();
        data
    }

    fn dst_bytes(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.dev.dma_memory().read(DST_OFF, &mut v).unwrap();
        v
    }

    fn gsi(&self, device_vector: u16) -> u32 {
        self.vmm
            .gsi_for_vector(0x40 + device_vector as u8)
            .expect("the driver's vector is routed to guest vector 0x40 + v")
    }
}

fn copy_and_check<'r, M, D>(r: &Rig<M>, d: &mut CheckedDriver<'r, D>, rounds: u8)
where
    M: DeviceModel,
    D: Driver<'r, Function = ExitFunction, Clock = StdClock>,
{
    let size = d.limits().unwrap().max_memcpy_size.min(64 << 10);
    for seed in 1..=rounds {
        let data = r.fill(seed.wrapping_mul(37) | 1, size as usize);
        d.memcpy(r.src(), r.dst(), size, 5_000_000_000)
            .unwrap_or_else(|e| panic!("memcpy round {seed}: {e}"));
        assert!(
            r.dst_bytes(size as usize) == data,
            "round {seed}: dst != src"
        );
    }
}

fn send_msi_once<'r, M, D>(r: &Rig<M>, d: &mut CheckedDriver<'r, D>)
where
    M: DeviceModel,
    D: Driver<'r, Function = ExitFunction, Clock = StdClock>,
{
    let v = d.limits().unwrap().msi_vector;
    let gsi = r.gsi(v);
    assert_eq!(r.vmm.take_interrupts(gsi), 0, "nothing pending before");
    d.send_msi().unwrap();
    // Immediate mode: raised inside the store that asked for it.
    assert_eq!(r.vmm.take_interrupts(gsi), 1, "exactly one interrupt");
    assert_eq!(r.vmm.take_interrupts(gsi), 0, "and no second one");
    for (g, _) in r.vmm.routes() {
        assert_eq!(r.vmm.take_interrupts(g), 0, "no stray interrupt on GSI {g}");
    }
}

type GuestDsa<'a> = Dsa<'a, ExitFunction, StdClock>;
type GuestIoat<'a> = Ioat<'a, ExitFunction, StdClock>;
type GuestEdu = Edu<ExitFunction, StdClock>;

#[test]
fn dsa_driver_copies_through_exits_with_scrambled_portal_pieces() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestDsa<'_>>();
    let before = r.dev.model().stats().accepted;
    copy_and_check(&r, &mut d, 4);
    let p = r.dev.portal_stats(2).unwrap();
    let accepted = r.dev.model().stats().accepted - before;
    assert!(accepted >= 4, "the model accepted {accepted} descriptors");
    assert_eq!(
        p.submitted,
        *r.f.submissions.lock().unwrap(),
        "every guest submission became exactly one model submission"
    );
    assert_eq!(p.pieces, 8 * p.submitted);
    assert_eq!((p.torn_by_overlap, p.torn_by_read, p.bad_pieces), (0, 0, 0));
    assert_eq!(r.dev.mmio_stats(0).unwrap().bad_accesses, 0);
    assert_eq!(r.dev.model().stats().dropped, 0);
    let summary = r.dev.exit_summary();
    assert_eq!(summary.len(), 2);
    assert!(
        summary[1].starts_with("BAR2: ")
            && summary[1].contains(&format!(
                "portal: {} descriptors from {} pieces",
                p.submitted, p.pieces
            )),
        "{summary:?}"
    );
    d.remove().unwrap();
}

#[test]
fn dsa_threaded_model_completes_asynchronously_through_the_window() {
    let r = rig(ModelDevice::dsa(ExecMode::Threaded, layout()).unwrap());
    let mut d = r.driver::<GuestDsa<'_>>();
    copy_and_check(&r, &mut d, 3);
    d.remove().unwrap();
}

#[test]
fn dsa_copy_from_and_to_unmapped_iova_is_a_decoded_page_fault() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestDsa<'_>>();
    let bad = layout().unmapped_gpa;
    for (src, dst, write) in [(bad, r.dst(), false), (r.src(), bad, true)] {
        match d.memcpy(src, dst, 4096, 5_000_000_000) {
            Err(DriverError::Device(DevErr::DsaCompletion {
                status, fault_addr, ..
            })) => {
                assert_eq!(status & 0x7f, 0x03, "page fault status");
                assert_eq!(status & 0x80 != 0, write, "fault direction");
                assert!((bad..bad + 4096).contains(&fault_addr));
            }
            other => panic!("expected a DSA page fault, got {other:?}"),
        }
        copy_and_check(&r, &mut d, 1);
    }
    d.remove().unwrap();
}

#[test]
fn dsa_send_msi_reaches_its_route_exactly_once() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestDsa<'_>>();
    send_msi_once(&r, &mut d);
    d.remove().unwrap();
    assert!(r.vmm.routes().is_empty(), "remove disabled and unrouted");
}

#[test]
fn ioat_driver_copies_and_signals_through_exits() {
    let r = rig(ModelDevice::ioat(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestIoat<'_>>();
    copy_and_check(&r, &mut d, 3);
    let bad = layout().unmapped_gpa;
    assert!(matches!(
        d.memcpy(bad, r.dst(), 4096, 5_000_000_000),
        Err(DriverError::Device(DevErr::IoatChannel { .. }))
    ));
    copy_and_check(&r, &mut d, 1);
    send_msi_once(&r, &mut d);
    d.remove().unwrap();
}

#[test]
fn edu_driver_copies_and_signals_through_exits() {
    let r = rig(ModelDevice::edu(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestEdu>();
    copy_and_check(&r, &mut d, 3);
    send_msi_once(&r, &mut d);
    d.remove().unwrap();
}

#[test]
fn edu_threaded_send_msi_arrives_on_the_eventfd() {
    let r = rig(ModelDevice::edu(ExecMode::Threaded, layout()).unwrap());
    let mut d = r.driver::<GuestEdu>();
    let gsi = r.gsi(d.limits().unwrap().msi_vector);
    d.send_msi().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut n = 0;
    while n == 0 && std::time::Instant::now() < deadline {
        n = r.vmm.take_interrupts(gsi);
        std::thread::yield_now();
    }
    assert_eq!(n, 1);
    d.remove().unwrap();
}

#[test]
fn torn_portal_write_submits_nothing() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    let mut d = r.driver::<GuestDsa<'_>>();
    copy_and_check(&r, &mut d, 1);
    let portal = r.dev.bar_gpa(2).unwrap();
    let before = r.dev.model().stats();
    let p0 = r.dev.portal_stats(2).unwrap();
    // Seven pieces of a descriptor (opcode byte set to MEMMOVE in byte 3), a read, then the last
    // piece: nothing may reach the model.
    for i in 0..7u64 {
        r.vmm.write_u64(portal + 8 * i, 0x0300_0000 + i);
    }
    let v = r.vmm.read_u64(portal + 8);
    assert_eq!(v, u64::MAX, "the DSA model's portals read all ones");
    r.vmm.write_u64(portal + 56, 7);
    // And a descriptor torn by a restart at byte 0.
    for i in 0..4u64 {
        r.vmm.write_u64(portal + 0x40 + 8 * i, i);
    }
    r.vmm.write_u64(portal + 0x40, 0);
    let after = r.dev.model().stats();
    assert_eq!(
        (after.accepted, after.dropped),
        (before.accepted, before.dropped)
    );
    let p = r.dev.portal_stats(2).unwrap();
    assert_eq!(p.submitted, p0.submitted);
    assert_eq!(p.torn_by_read - p0.torn_by_read, 1);
    assert_eq!(p.torn_by_overlap - p0.torn_by_overlap, 1);
    // The stray pieces left pending (byte 56 of window 0, bytes 0..8 of window 0x40) would
    // merge with the next descriptor stored there in scrambled order; a read discards them, as
    // documented for the assembler. Then the driver works again.
    let _ = r.vmm.read_u64(portal);
    let _ = r.vmm.read_u64(portal + 0x40);
    assert_eq!(
        r.dev.portal_stats(2).unwrap().torn_by_read - p0.torn_by_read,
        3
    );
    copy_and_check(&r, &mut d, 1);
    d.remove().unwrap();
}

#[test]
fn model_msi_before_enable_is_not_delivered() {
    let r = rig(ModelDevice::edu(ExecMode::Immediate, layout()).unwrap());
    r.dev.model().pci().raise(0);
    assert!(r.vmm.routes().is_empty());
    let fd = r.dev.vector_eventfd(0).unwrap();
    assert!(
        fd.read().is_err(),
        "nothing was written to the eventfd (EAGAIN)"
    );
}

#[test]
fn requests_are_validated() {
    let r = rig(ModelDevice::edu(ExecMode::Immediate, layout()).unwrap());
    let dev = &r.f.devices;
    let vmm = &*r.vmm;
    let t = MsiTarget {
        dest_apic_id: 1,
        vector_base: 0x50,
    };
    assert_eq!(
        dev.call(
            DeviceRequest::BarInfo {
                device: 0,
                index: 1
            },
            vmm
        ),
        Err(ReplyError::NoSuchBar(1))
    );
    let b0 = dev
        .call(
            DeviceRequest::BarInfo {
                device: 0,
                index: 0,
            },
            vmm,
        )
        .unwrap();
    assert_eq!((b0.value, b0.extra), (layout().bar_base, 0x100000));
    let en = |kind, first, count, target| DeviceRequest::IrqEnable {
        device: 0,
        kind,
        first,
        count,
        target,
    };
    assert_eq!(
        dev.call(en(IrqKind::Intx, 0, 1, t), vmm),
        Err(ReplyError::Unsupported)
    );
    assert!(matches!(
        dev.call(en(IrqKind::Msi, 0, 2, t), vmm),
        Err(ReplyError::BadVector(_))
    ));
    let high = MsiTarget {
        dest_apic_id: 0,
        vector_base: 0xff,
    };
    assert_eq!(
        dev.call(en(IrqKind::Msi, 1, 0, high), vmm),
        Err(ReplyError::BadVector(1))
    );
    let low = MsiTarget {
        dest_apic_id: 0,
        vector_base: 3,
    };
    assert_eq!(
        dev.call(en(IrqKind::Msi, 0, 1, low), vmm),
        Err(ReplyError::BadVector(0))
    );
    assert_eq!(
        dev.call(DeviceRequest::Reset { device: 9 }, vmm),
        Err(ReplyError::NoSuchDevice(9))
    );
    assert_eq!(
        dev.call(
            DeviceRequest::ConfigRead {
                device: 0,
                offset: 4096,
                width: 4
            },
            vmm
        ),
        Err(ReplyError::ConfigOutOfRange(4096))
    );
    assert!(r.vmm.routes().is_empty(), "no refused request left a route");
    assert_eq!(
        decode(dev.handle([0xee, 0, 0, 0], vmm)),
        Err(ReplyError::Malformed)
    );
    // A valid enable routes to APIC 1, vector 0x50.
    dev.call(en(IrqKind::Msi, 0, 1, t), vmm).unwrap();
    let routes = r.vmm.routes();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        routes[0].1,
        super::super::MsiMessage::fixed(1, 0x50).unwrap()
    );
    dev.call(
        DeviceRequest::IrqDisable {
            device: 0,
            kind: IrqKind::Msi,
        },
        vmm,
    )
    .unwrap();
    assert!(r.vmm.routes().is_empty());
}

fn decode(w: [u64; 3]) -> Result<super::super::request::Reply, ReplyError> {
    super::super::request::decode_reply(w)
}

#[test]
fn failed_route_leaves_nothing_connected_or_enabled() {
    let r = rig(ModelDevice::ioat(ExecMode::Immediate, layout()).unwrap());
    *r.vmm.fail_connect.lock().unwrap() = true;
    let e =
        r.f.devices
            .call(
                DeviceRequest::IrqEnable {
                    device: 0,
                    kind: IrqKind::MsiX,
                    first: 0,
                    count: 1,
                    target: r.f.target,
                },
                &*r.vmm,
            )
            .unwrap_err();
    assert_eq!(e, ReplyError::Os(libc::EIO));
    assert!(r.vmm.routes().is_empty());
    assert_eq!(r.dev.model().pci().msi.enabled_kind(), None);
}

#[test]
fn config_space_is_the_models() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    use passthru_core::mmio::PciFunction;
    let id = r.f.config_read32(0).unwrap();
    assert_eq!(id & 0xffff, 0x8086);
    r.f.config_write16(4, 0x6).unwrap();
    assert_eq!(r.f.config_read16(4).unwrap() & 0x6, 0x6);
    assert!(r.dev.model().pci().bus_master());
}

#[test]
fn attach_and_detach_install_and_remove_everything() {
    let r = rig(ModelDevice::dsa(ExecMode::Immediate, layout()).unwrap());
    assert_eq!(r.vmm.slots(), vec![(layout().dma_gpa, WINDOW as usize)]);
    let mmio = r.vmm.mmio_ranges();
    assert_eq!(mmio.len(), 2, "BAR0 and BAR2 served from exits");
    assert!(mmio.iter().all(|&(g, _)| g >= layout().bar_base));
    let mut d = r.driver::<GuestDsa<'_>>();
    assert!(!r.vmm.routes().is_empty());
    copy_and_check(&r, &mut d, 1);
    d.remove().unwrap();
    assert!(r.vmm.routes().is_empty());
    // Detach with vectors still routed (a guest that exits without disabling them).
    r.f.devices
        .call(
            DeviceRequest::IrqEnable {
                device: 0,
                kind: IrqKind::MsiX,
                first: 0,
                count: 2,
                target: r.f.target,
            },
            &*r.vmm,
        )
        .unwrap();
    assert_eq!(r.vmm.routes().len(), 2);
    r.f.devices.detach_all(&*r.vmm);
    assert!(r.vmm.slots().is_empty());
    assert!(r.vmm.mmio_ranges().is_empty());
    assert!(r.vmm.routes().is_empty());
}

#[test]
fn dma_window_is_mapped_at_iova_equal_gpa() {
    let dev = ModelDevice::edu(ExecMode::Immediate, layout()).unwrap();
    let gpa = layout().dma_gpa;
    dev.iommu().write_u64(gpa + 0x18, 0x1122_3344).unwrap();
    let mut b = [0u8; 8];
    dev.dma_memory().read(0x18, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x1122_3344);
    assert!(
        dev.iommu().read_u64(gpa + WINDOW).is_err(),
        "nothing past the window"
    );
    assert!(dev.iommu().read_u64(layout().unmapped_gpa).is_err());
}

#[test]
fn bad_layouts_are_refused() {
    let mut l = layout();
    l.dma_len = 4097;
    assert!(ModelDevice::edu(ExecMode::Immediate, l).is_err());
    let mut l = layout();
    l.bar_limit = l.bar_base + 0x1000; // edu's BAR0 is 1 MiB
    assert!(ModelDevice::edu(ExecMode::Immediate, l).is_err());
}

#[test]
fn only_whole_pages_become_guest_memory() {
    use passthru_models::iommu::HostMemory;
    assert!(super::ModelMemory::new(HostMemory::pages(8192).unwrap()).is_some());
    assert!(super::ModelMemory::new(HostMemory::new(100, 64).unwrap()).is_none());
    assert!(super::ModelMemory::new(HostMemory::new(4096 + 64, 4096).unwrap()).is_none());
}
