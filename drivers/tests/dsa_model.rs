//! The DSA driver on the DSA model: upstream's `vfio_pci_driver_test` cases, injected faults and
//! recovery, and a random-MMIO/descriptor robustness property of the model.

use std::sync::Arc;

use passthru_core::driver::{CheckedDriver, DeviceError, Driver, DriverError};
use passthru_core::idxd::{CompletionStatus, ResetType, SwErr};
use passthru_core::mmio::PciFunction;
use passthru_drivers::dsa::{layout, Dsa, MSI_VECTOR};
use passthru_models::dsa::{DsaModel, SWERR_SUBMISSION_DROPPED};
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::{HostMemory, Iommu};
use passthru_models::StdClock;

type Drv<'r> = Dsa<'r, ModelFunction<DsaModel>, StdClock>;

const REGION_IOVA: u64 = 0x1000_0000;
const DATA_IOVA: u64 = 0x2000_0000;
/// Never mapped (upstream v2 used 8 GiB).
const UNMAPPED_IOVA: u64 = 0x2_0000_0000;
const DATA_LEN: usize = 1 << 20;
/// Copy size of the tests: half the data buffer.
const SIZE: u64 = (DATA_LEN / 2) as u64;
const SRC: u64 = DATA_IOVA;
const DST: u64 = DATA_IOVA + SIZE;
const TIMEOUT_NS: u64 = 2_000_000_000;
const SHORT_TIMEOUT_NS: u64 = 5_000_000;

struct Rig {
    model: Arc<DsaModel>,
    data: Arc<HostMemory>,
    _region: Arc<HostMemory>,
    drv: CheckedDriver<'static, Drv<'static>>,
}

fn rig_with(mode: ExecMode) -> Rig {
    let iommu = Iommu::new();
    let model = DsaModel::new(Arc::clone(&iommu), mode);
    let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    let data = HostMemory::pages(DATA_LEN).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    iommu.map_all(DATA_IOVA, &data).unwrap();
    // SAFETY: `region` is kept alive in the rig for as long as the driver uses it, and the test
    // never forms references into it.
    let dma = unsafe { region.dma_region_unbounded(REGION_IOVA) };
    let mut drv = CheckedDriver::<Drv>::new(model.function(), StdClock::new(), dma).unwrap();
    drv.init().unwrap();
    Rig {
        model,
        data,
        _region: region,
        drv,
    }
}

fn rig() -> Rig {
    rig_with(ExecMode::Immediate)
}

impl Rig {
    fn msi(&self, vector: u32) -> u64 {
        self.model.function().msi().take(vector)
    }
    fn fill(&self) {
        self.data.fill(0, DATA_LEN / 2, b'x').unwrap();
        self.data.fill(DATA_LEN / 2, DATA_LEN / 2, b'y').unwrap();
    }
    fn copied(&self) -> bool {
        let v = self.data.to_vec();
        v[..DATA_LEN / 2] == v[DATA_LEN / 2..]
    }
    fn memcpy_ok(&mut self) {
        self.fill();
        self.drv.memcpy(SRC, DST, SIZE, TIMEOUT_NS).unwrap();
        assert!(self.copied());
    }
}

fn completion_status(e: DriverError) -> (u8, u32, u64) {
    match e {
        DriverError::Device(DeviceError::DsaCompletion {
            status,
            bytes_completed,
            fault_addr,
            ..
        }) => (status, bytes_completed, fault_addr),
        other => panic!("expected a completion-record error, got {other:?}"),
    }
}

#[test]
fn probe_reports_exact_region_and_limits() {
    let r = rig();
    let m = r.drv.matched();
    assert_eq!((m.name, m.vendor, m.device), ("dsa", 0x8086, 0x0b25));
    assert_eq!(m.region_size, layout::REGION_SIZE);
    assert_eq!(layout::REGION_SIZE, 1024 * 64 + 32 + 32 + 32 * 32);
    let l = r.drv.limits().unwrap();
    // SPR: 2^31-byte transfers; min(128, 32) batches × min(2^10, 1024) copies.
    assert_eq!(l.max_memcpy_size, 1 << 31);
    assert_eq!(l.max_memcpy_count, 32 * 1024);
    assert_eq!(l.msi_vector, MSI_VECTOR);
    assert_eq!(MSI_VECTOR, 1);
}

#[test]
fn probe_refuses_other_ids_and_int_handle_devices() {
    let iommu = Iommu::new();
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.device_id = 0x0cfe; // IAA
    let m = DsaModel::with_profile(p, Arc::clone(&iommu), ExecMode::Immediate);
    assert!(Drv::probe(&m.function()).is_none());
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.gencap |= 1 << 4; // cmd_cap
    p.cmdcap = 1 << 13; // REQUEST_INT_HANDLE
    let m = DsaModel::with_profile(p, Arc::clone(&iommu), ExecMode::Immediate);
    // With memory decode off BAR0 reads all ones, so probe cannot see CMDCAP (init checks).
    m.function().config_write16(0x04, 0x2).unwrap();
    assert!(Drv::probe(&m.function()).is_none());
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.device_id = 0x11fb; // GNR-D: matched
    let m = DsaModel::with_profile(p, iommu, ExecMode::Immediate);
    assert_eq!(Drv::probe(&m.function()).map(|m| m.device), Some(0x11fb));
}

#[test]
fn init_remove_ten_times() {
    let mut r = rig();
    for _ in 0..10 {
        r.drv.remove().unwrap();
        assert_eq!(r.model.gensts().raw() & 3, 0, "remove resets the device");
        r.drv.init().unwrap();
        assert_eq!(r.model.gensts().raw() & 3, 1);
    }
    r.memcpy_ok();
}

#[test]
fn memcpy_success() {
    let mut r = rig();
    r.memcpy_ok();
    assert_eq!(r.msi(1), 0, "memcpy raises no interrupt");
    assert_eq!(r.msi(0), 0);
}

#[test]
fn memcpy_from_unmapped_iova() {
    let mut r = rig();
    r.fill();
    let e = r
        .drv
        .memcpy(UNMAPPED_IOVA, DST, SIZE, TIMEOUT_NS)
        .unwrap_err();
    let (status, done, addr) = completion_status(e);
    assert_eq!(
        status,
        CompletionStatus::PageFaultNoBof as u8,
        "read fault: bit 7 clear"
    );
    assert_eq!((done, addr), (0, UNMAPPED_IOVA));
    assert_eq!(r.msi(1), 0);
    r.memcpy_ok();
}

#[test]
fn memcpy_to_unmapped_iova() {
    let mut r = rig();
    r.fill();
    let e = r
        .drv
        .memcpy(SRC, UNMAPPED_IOVA, SIZE, TIMEOUT_NS)
        .unwrap_err();
    let (status, _, addr) = completion_status(e);
    assert_eq!(
        status,
        0x80 | CompletionStatus::PageFaultNoBof as u8,
        "write fault: bit 7"
    );
    assert_eq!(addr, UNMAPPED_IOVA);
    assert_eq!(r.msi(1), 0);
    r.memcpy_ok();
}

#[test]
fn memcpy_partially_unmapped_reports_progress() {
    let mut r = rig();
    // The last 4 KiB of the destination lie beyond the data mapping.
    let dst = DATA_IOVA + DATA_LEN as u64 - SIZE + 4096;
    let e = r.drv.memcpy(SRC, dst, SIZE, TIMEOUT_NS).unwrap_err();
    let (status, done, addr) = completion_status(e);
    assert_eq!(status, 0x83);
    assert_eq!(u64::from(done), SIZE - 4096);
    assert_eq!(addr, DATA_IOVA + DATA_LEN as u64);
    r.memcpy_ok();
}

#[test]
fn send_msi_fires_vector_1_once() {
    let mut r = rig();
    r.drv.send_msi().unwrap();
    assert_eq!(r.msi(1), 1);
    assert_eq!(r.msi(0), 0);
    r.drv.send_msi().unwrap();
    assert_eq!(r.msi(1), 1);
}

#[test]
fn mix_and_match_ten_times() {
    let mut r = rig();
    for _ in 0..10 {
        r.memcpy_ok();
        assert!(r.drv.memcpy(UNMAPPED_IOVA, DST, SIZE, TIMEOUT_NS).is_err());
        assert_eq!(r.msi(1), 0);
        r.drv.send_msi().unwrap();
        assert_eq!(r.msi(1), 1);
    }
}

#[test]
fn storm_at_max_count() {
    let mut r = rig();
    let count = r.drv.limits().unwrap().max_memcpy_count;
    r.fill();
    let before = r.model.stats();
    r.drv.memcpy_start(SRC, DST, 4096, count).unwrap();
    r.drv.memcpy_wait(TIMEOUT_NS).unwrap();
    let after = r.model.stats();
    assert_eq!(
        after.completed - before.completed,
        32,
        "32 BATCH descriptors"
    );
    assert_eq!(r.msi(1), 0);
    let v = r.data.to_vec();
    assert_eq!(&v[DATA_LEN / 2..DATA_LEN / 2 + 4096], &v[..4096]);
}

#[test]
fn storm_odd_count_never_builds_a_single_descriptor_batch() {
    let mut r = rig();
    // 1025 = 1023 + 2: a batch needs at least two descriptors.
    r.drv.memcpy_start(SRC, DST, 64, 1025).unwrap();
    r.drv.memcpy_wait(TIMEOUT_NS).unwrap();
    assert_eq!(passthru_drivers::dsa::next_batch_len(1025, 1024), 1023);
    assert_eq!(passthru_drivers::dsa::batches_needed(1025, 1024), 2);
    assert_eq!(passthru_drivers::dsa::batches_needed(32 * 1024, 1024), 32);
}

#[test]
fn threaded_model_memcpy_and_msi() {
    let mut r = rig_with(ExecMode::Threaded);
    r.memcpy_ok();
    r.drv.memcpy_start(SRC, DST, 4096, 100).unwrap();
    r.drv.memcpy_wait(TIMEOUT_NS).unwrap();
    r.drv.send_msi().unwrap();
    assert_eq!(
        r.model
            .function()
            .msi()
            .wait_take(1, std::time::Duration::from_secs(2)),
        1
    );
}

#[test]
fn injected_page_fault_status() {
    let mut r = rig();
    r.model.inject_status(0x83);
    let (status, ..) = completion_status(r.drv.memcpy(SRC, DST, SIZE, TIMEOUT_NS).unwrap_err());
    assert_eq!(status, 0x83);
    r.memcpy_ok();
}

#[test]
fn injected_batch_member_fault_reports_the_member_record() {
    let mut r = rig();
    r.model
        .inject_status(CompletionStatus::PageFaultNoBof as u8);
    r.drv.memcpy_start(SRC, DST, 64, 8).unwrap();
    let (status, ..) = completion_status(r.drv.memcpy_wait(TIMEOUT_NS).unwrap_err());
    assert_eq!(status, CompletionStatus::PageFaultNoBof as u8);
    r.memcpy_ok();
}

#[test]
fn injected_invalid_opcode() {
    let mut r = rig();
    r.model.inject_rewrite(|d| d[7] = 0x30);
    let (status, ..) = completion_status(r.drv.memcpy(SRC, DST, SIZE, TIMEOUT_NS).unwrap_err());
    assert_eq!(status, CompletionStatus::InvalidOpcode as u8);
    r.memcpy_ok();
}

#[test]
fn injected_transfer_size_error() {
    let mut r = rig();
    r.model
        .inject_rewrite(|d| d[32..36].copy_from_slice(&0xffff_ffffu32.to_le_bytes()));
    let (status, ..) = completion_status(r.drv.memcpy(SRC, DST, SIZE, TIMEOUT_NS).unwrap_err());
    assert_eq!(status, CompletionStatus::InvalidTransferSize as u8);
    r.memcpy_ok();
}

#[test]
fn disabled_wq_drops_with_swerr_modelling_choice() {
    let mut r = rig();
    r.model.inject_wq_disabled(0);
    let e = r.drv.memcpy(SRC, DST, SIZE, TIMEOUT_NS).unwrap_err();
    let DriverError::Device(DeviceError::DsaSoftwareError { swerr }) = e else {
        panic!("expected SWERR, got {e:?}");
    };
    let s = SwErr(swerr);
    assert!(s.valid() && s.wq_index_valid() && s.desc_valid());
    assert_eq!(s.error_code(), SWERR_SUBMISSION_DROPPED);
    assert_eq!((s.wq_index(), s.operation()), (0, 0x03));
    assert!(
        !r.model.swerr_value().valid(),
        "the driver acknowledged SWERR"
    );
    r.memcpy_ok();
}

#[test]
fn stuck_device_times_out_then_recovers() {
    let mut r = rig();
    r.model.set_stuck(true);
    r.drv.memcpy_start(SRC, DST, SIZE, 1).unwrap();
    let e = r.drv.memcpy_wait(SHORT_TIMEOUT_NS).unwrap_err();
    let DriverError::Timeout {
        device,
        register,
        value,
        waited_ns,
    } = e
    else {
        panic!("expected a timeout, got {e:?}");
    };
    assert_eq!(
        (device, register, value),
        ("dsa", "completion record status", 0)
    );
    assert!(waited_ns >= SHORT_TIMEOUT_NS);
    r.model.set_stuck(false);
    r.memcpy_ok();
}

#[test]
fn dropped_descriptor_times_out_then_recovers() {
    let mut r = rig();
    r.model.inject_drop(1);
    let e = r.drv.memcpy(SRC, DST, SIZE, SHORT_TIMEOUT_NS).unwrap_err();
    assert!(matches!(e, DriverError::Timeout { .. }), "{e:?}");
    r.memcpy_ok();
}

#[test]
fn halted_device_error_then_reinit_after_flr() {
    let mut r = rig();
    r.model.inject_halt(ResetType::Flr);
    let e = r.drv.memcpy(SRC, DST, SIZE, SHORT_TIMEOUT_NS).unwrap_err();
    assert!(matches!(e, DriverError::Device(_)), "{e:?}");
    r.drv.remove().ok();
    r.drv.init().unwrap();
    r.memcpy_ok();
}

/// Virtual time: `delay_ns` advances it instantly, so the driver's 5 s command timeout passes
/// in microseconds of real time.
#[derive(Clone, Default)]
struct VirtualClock(Arc<std::sync::atomic::AtomicU64>);

impl passthru_core::mmio::Clock for VirtualClock {
    fn now_ns(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
    fn delay_ns(&self, ns: u64) {
        self.0.fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
    }
}

type VDrv<'r> = Dsa<'r, ModelFunction<DsaModel>, VirtualClock>;

#[test]
fn stuck_command_unit_is_a_bounded_timeout() {
    let iommu = Iommu::new();
    let model = DsaModel::new(Arc::clone(&iommu), ExecMode::Immediate);
    let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    let dma = region.dma_region(REGION_IOVA);
    model.set_command_stuck(true);
    let clock = VirtualClock::default();
    let e = VDrv::init(model.function(), clock.clone(), dma).unwrap_err();
    let DriverError::Timeout {
        device,
        register,
        value,
        waited_ns,
    } = e
    else {
        panic!("expected a timeout, got {e:?}");
    };
    assert_eq!((device, register), ("dsa", "CMDSTS"));
    assert_eq!(value, 1 << 31, "CMDSTS still Active");
    assert!(waited_ns >= passthru_drivers::dsa::COMMAND_TIMEOUT_NS);
    model.set_command_stuck(false);
    let mut d = CheckedDriver::<VDrv>::new(model.function(), clock, dma).unwrap();
    d.init().unwrap();
    // send_msi on a stuck engine: bounded by the command timeout, then the device works again.
    model.set_stuck(true);
    let e = d.send_msi().unwrap_err();
    assert!(
        matches!(
            e,
            DriverError::Timeout {
                register: "completion record status",
                ..
            }
        ),
        "{e:?}"
    );
    model.set_stuck(false);
    d.send_msi().unwrap();
    assert_eq!(model.function().msi().take(1), 1);
    d.remove().unwrap();
}

#[test]
fn out_of_order_calls_are_refused() {
    let mut r = rig();
    assert!(matches!(
        r.drv.memcpy_wait(1),
        Err(DriverError::OutOfOrder { .. })
    ));
    assert!(matches!(r.drv.init(), Err(DriverError::OutOfOrder { .. })));
    assert!(matches!(
        r.drv.memcpy_start(SRC, DST, (1 << 31) + 1, 1),
        Err(DriverError::BeyondLimits { .. })
    ));
}

mod robustness {
    use super::*;
    use passthru_core::mmio::RegisterIo;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Mmio {
            off: usize,
            width: u8,
            value: u64,
        },
        Read {
            off: usize,
            width: u8,
        },
        Portal {
            wq: usize,
            page: usize,
            desc: [u8; 64],
        },
    }

    const MAPPED_IOVA: u64 = 0x4000_0000;

    fn addr() -> impl Strategy<Value = u64> {
        prop_oneof![
            (0u64..0x3000).prop_map(|o| MAPPED_IOVA - 0x1000 + o),
            any::<u64>(),
        ]
    }

    fn desc() -> impl Strategy<Value = [u8; 64]> {
        (
            prop_oneof![
                Just(0u8),
                Just(1),
                Just(2),
                Just(3),
                Just(4),
                Just(5),
                Just(6),
                Just(9),
                Just(0x10),
                Just(0x11),
                Just(0x20),
                any::<u8>()
            ],
            any::<u32>(),
            addr(),
            addr(),
            addr(),
            prop_oneof![0u32..0x2000, any::<u32>()],
            0u16..12,
            addr(),
        )
            .prop_map(|(op, flags, cr, src, dst, size, ih, extra)| {
                let mut d = [0u8; 64];
                d[3] = 0x80;
                d[4..7].copy_from_slice(&flags.to_le_bytes()[..3]);
                d[7] = op;
                d[8..16].copy_from_slice(&cr.to_le_bytes());
                d[16..24].copy_from_slice(&src.to_le_bytes());
                d[24..32].copy_from_slice(&dst.to_le_bytes());
                d[32..36].copy_from_slice(&size.to_le_bytes());
                d[36..38].copy_from_slice(&ih.to_le_bytes());
                d[40..48].copy_from_slice(&extra.to_le_bytes());
                d
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0usize..0x4000,
                prop_oneof![Just(1u8), Just(2), Just(4), Just(8)],
                any::<u64>()
            )
                .prop_map(|(off, width, value)| Op::Mmio { off, width, value }),
            (
                0usize..0x4000,
                prop_oneof![Just(1u8), Just(2), Just(4), Just(8)]
            )
                .prop_map(|(off, width)| Op::Read { off, width }),
            (0usize..9, 0usize..4, desc()).prop_map(|(wq, page, desc)| Op::Portal {
                wq,
                page,
                desc
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn random_mmio_and_descriptors_never_panic_or_escape(ops in proptest::collection::vec(op(), 1..60)) {
            let iommu = Iommu::new();
            let model = DsaModel::new(Arc::clone(&iommu), ExecMode::Immediate);
            // Three pages; only the middle one is mapped. Guard pages must stay untouched.
            let mem = HostMemory::pages(3 * 4096).unwrap();
            iommu.map(MAPPED_IOVA, &mem, 4096, 4096, passthru_models::iommu::Perm::RW).unwrap();
            let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
            iommu.map_all(REGION_IOVA, &region).unwrap();
            // Start from an initialised device so descriptors really execute.
            let dma = region.dma_region(REGION_IOVA);
            let drv = Drv::init(model.function(), StdClock::new(), dma).unwrap();
            let f = model.function();
            let bar0 = f.bar(0).unwrap();
            let bar2 = f.bar(2).unwrap();
            for op in ops {
                match op {
                    Op::Mmio { off, width, value } => match width {
                        1 => bar0.write8(off, value as u8),
                        2 => bar0.write16(off, value as u16),
                        4 => bar0.write32(off, value as u32),
                        _ => bar0.write64(off, value),
                    },
                    Op::Read { off, width } => {
                        let _ = match width {
                            1 => u64::from(bar0.read8(off)),
                            2 => u64::from(bar0.read16(off)),
                            4 => u64::from(bar0.read32(off)),
                            _ => bar0.read64(off),
                        };
                    }
                    Op::Portal { wq, page, desc } => {
                        let _ = bar2.submit64(wq * 0x4000 + page * 0x1000, &desc);
                    }
                }
            }
            let v = mem.to_vec();
            prop_assert!(v[..4096].iter().all(|&b| b == 0), "guard page below touched");
            prop_assert!(v[8192..].iter().all(|&b| b == 0), "guard page above touched");
            drop(drv);
        }
    }
}

fn init_on(
    p: passthru_models::dsa::DsaProfile,
) -> (
    Arc<DsaModel>,
    Arc<HostMemory>,
    Arc<HostMemory>,
    CheckedDriver<'static, Drv<'static>>,
) {
    let iommu = Iommu::new();
    let model = DsaModel::with_profile(p, Arc::clone(&iommu), ExecMode::Immediate);
    let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    let data = HostMemory::pages(DATA_LEN).unwrap();
    iommu.map_all(REGION_IOVA, &region).unwrap();
    iommu.map_all(DATA_IOVA, &data).unwrap();
    // SAFETY: the caller keeps `region` (returned with the driver) alive as long as the driver.
    let dma = unsafe { region.dma_region_unbounded(REGION_IOVA) };
    let mut d = CheckedDriver::new(model.function(), StdClock::new(), dma).unwrap();
    d.init().unwrap();
    (model, region, data, d)
}

#[test]
fn small_wq_bounds_max_batches() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.wqcap = (p.wqcap & !0xffff) | 4; // 4 WQ entries in total
    let (model, _region, _data, mut d) = init_on(p);
    assert_eq!(d.limits().unwrap().max_memcpy_count, 4 * 1024);
    assert_eq!(model.wq_config(0).unwrap().wq_size(), 4);
    d.memcpy_start(SRC, DST, 64, 4 * 1024).unwrap();
    d.memcpy_wait(TIMEOUT_NS).unwrap();
    assert_eq!(
        model.stats().dropped,
        0,
        "never more batches than WQ entries"
    );
}

#[test]
fn batch_shift_zero_limits_count_to_one() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.gencap &= !(0xf << 21); // max batch size 2^0 = 1: batching impossible
    let (_model, _region, _data, mut d) = init_on(p);
    assert_eq!(d.limits().unwrap().max_memcpy_count, 1);
    assert!(matches!(
        d.memcpy_start(SRC, DST, 64, 2),
        Err(DriverError::BeyondLimits { .. })
    ));
    d.memcpy_start(SRC, DST, 64, 1).unwrap();
    d.memcpy_wait(TIMEOUT_NS).unwrap();
}

#[test]
fn op_config_written_on_64_byte_wqcfg() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.wqcap |= 1 << 24 | 1 << 54; // 64-byte WQCFG with op-config
    let (model, _region, _data, mut d) = init_on(p);
    // NOOP (send_msi), BATCH, MEMMOVE.
    assert_eq!(model.wq_config(0).unwrap().dword(8), 0b1011);
    d.memcpy_start(SRC, DST, 64, 3).unwrap();
    d.memcpy_wait(TIMEOUT_NS).unwrap();
    d.send_msi().unwrap();
}

#[test]
fn oversized_wqcfg_stride_is_written_within_the_known_layout() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.wqcap |= 2 << 24; // 128-byte stride: only the 64-byte layout is written
    let (model, _region, _data, mut d) = init_on(p);
    // A driver using a 64-byte (or any wrong) stride writes WQ 1's dwords into bytes 64..127
    // of WQ 0's 128-byte entry; the model counts such writes.
    assert_eq!(
        model.stats().wqcfg_beyond_layout_writes,
        0,
        "wrong WQCFG stride"
    );
    let wq0 = model.wq_config(0).unwrap();
    assert_eq!(wq0.wq_size(), 128);
    assert!(wq0.dedicated() && wq0.priority() == 1);
    for wq in 1..8 {
        assert_eq!(model.wq_config(wq).unwrap().wq_size(), 0, "WQ {wq}");
    }
    d.memcpy_start(SRC, DST, 64, 1).unwrap();
    d.memcpy_wait(TIMEOUT_NS).unwrap();
    // The check can fail: a write where a stride-64 driver would put WQ 1 is counted.
    let bar0 = model.function().bar(0).unwrap();
    passthru_core::mmio::RegisterIo::write32(&bar0, 0x400 + 64, 0);
    assert_eq!(model.stats().wqcfg_beyond_layout_writes, 1);
}

#[test]
fn refuses_read_only_configuration() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.gencap &= !(1 << 31);
    let iommu = Iommu::new();
    let model = DsaModel::with_profile(p, Arc::clone(&iommu), ExecMode::Immediate);
    let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    let dma = region.dma_region(REGION_IOVA);
    let e = Drv::init(model.function(), StdClock::new(), dma).unwrap_err();
    assert!(
        matches!(e, DriverError::Unsupported { device: "dsa", .. }),
        "{e:?}"
    );
    let small = region.dma_region(REGION_IOVA).subregion(0, 4096).unwrap();
    let e = Drv::init(model.function(), StdClock::new(), small).unwrap_err();
    assert!(matches!(e, DriverError::RegionTooSmall { .. }), "{e:?}");
}

mod batching {
    use passthru_drivers::dsa::{batches_needed, next_batch_len};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batches_cover_count_with_at_least_two_each(count in 2u64..200_000, per in 2u32..=1024) {
            let mut remaining = count;
            let mut n = 0;
            while remaining > 0 {
                let k = u64::from(next_batch_len(remaining, per));
                // A lone descriptor only happens as the last one with per = 2 and an odd count
                // (the driver submits it as a plain MEMMOVE).
                let lone_ok = k == 1 && per == 2 && remaining == 1;
                prop_assert!((2..=u64::from(per)).contains(&k) || lone_ok, "batch of {k}");
                remaining -= k;
                n += 1;
            }
            prop_assert_eq!(n, batches_needed(count, per));
            // Never more pieces than ceil(count / per): count ≤ max_batches × per always fits.
            prop_assert_eq!(n, count.div_ceil(u64::from(per)));
        }
    }
}

#[test]
fn init_refuses_int_handle_devices_even_without_probe() {
    // Probe skips the handle check when BAR0 reads all ones (memory decode off), so init must
    // refuse such a device by itself.
    let iommu = Iommu::new();
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.gencap |= 1 << 4;
    p.cmdcap = 0x1ffe | 1 << 13;
    let m = DsaModel::with_profile(p, iommu, ExecMode::Immediate);
    let region = HostMemory::pages(layout::REGION_SIZE.next_multiple_of(4096)).unwrap();
    let dma = region.dma_region(REGION_IOVA);
    let e = Drv::init(m.function(), StdClock::new(), dma).unwrap_err();
    assert!(
        matches!(e, DriverError::Unsupported { device: "dsa", .. }),
        "{e:?}"
    );
}

#[test]
fn batch_size_two_odd_count_uses_a_trailing_memmove() {
    let mut p = passthru_models::dsa::DsaProfile::SPR;
    p.gencap = (p.gencap & !(0xf << 21)) | 1 << 21; // max batch size 2
    let (model, _region, data, mut d) = init_on(p);
    assert_eq!(d.limits().unwrap().max_memcpy_count, 32 * 2);
    data.fill(0, 64, 7).unwrap();
    d.memcpy_start(SRC, DST, 64, 5).unwrap();
    d.memcpy_wait(TIMEOUT_NS).unwrap();
    assert_eq!(model.stats().completed, 3, "BATCH(2), BATCH(2), MEMMOVE");
    let v = data.to_vec();
    assert_eq!(&v[DATA_LEN / 2..DATA_LEN / 2 + 64], &[7u8; 64][..]);
}
