//! The CBDMA driver on the CBDMA model: upstream's `vfio_pci_driver_test` cases (init_remove,
//! memcpy_success, memcpy from/to an unmapped IOVA, send_msi, mix_and_match, memcpy_storm) plus
//! injected faults, each of which must come back decoded and leave the driver ready.

use std::sync::Arc;
use std::time::Duration;

use passthru_core::driver::{CheckedDriver, DeviceError, Driver, DriverError, DriverState};
use passthru_core::ioat::{self, ChanErr, ChanState, ChanSts};
use passthru_core::mmio::{DmaRegion, IrqKind, PciFunction};
use passthru_drivers::ioat::{Ioat, REGION_SIZE};
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::exec::ExecMode;
use passthru_models::function::ModelFunction;
use passthru_models::iommu::{HostMemory, Iommu};
use passthru_models::StdClock;

type Drv = Ioat<'static, ModelFunction<CbdmaModel>, StdClock>;

const REGION_IOVA: u64 = 0x1000_0000;
const BUF_IOVA: u64 = 0x2000_0000;
const BUF_SIZE: usize = 2 << 20;
/// Never mapped (upstream v2 used 8 GiB too).
const UNMAPPED_IOVA: u64 = 8 << 30;
const TIMEOUT_NS: u64 = 1_000_000_000;

struct Rig {
    model: Arc<CbdmaModel>,
    func: ModelFunction<CbdmaModel>,
    buf: Arc<HostMemory>,
    region: DmaRegion<'static>,
    // Kept alive for `region`.
    _region_mem: Arc<HostMemory>,
}

fn rig_with(config: CbdmaConfig) -> Rig {
    let iommu = Iommu::new();
    let region_mem = HostMemory::pages(4096).unwrap();
    let buf = HostMemory::pages(BUF_SIZE).unwrap();
    iommu.map_all(REGION_IOVA, &region_mem).unwrap();
    iommu.map_all(BUF_IOVA, &buf).unwrap();
    // SAFETY: `region_mem` lives in the rig as long as the region is used.
    let region = unsafe { region_mem.dma_region_unbounded(REGION_IOVA) };
    let model = CbdmaModel::new(iommu, config);
    let func = ModelFunction::new(Arc::clone(&model));
    Rig {
        model,
        func,
        buf,
        region,
        _region_mem: region_mem,
    }
}

fn rig(mode: ExecMode) -> Rig {
    rig_with(CbdmaConfig {
        mode,
        ..CbdmaConfig::default()
    })
}

impl Rig {
    fn checked(&self) -> CheckedDriver<'static, Drv> {
        CheckedDriver::new(self.func.clone(), StdClock::new(), self.region).unwrap()
    }

    /// Fill src with 'x', dst with 'y', copy, compare.
    fn good_copy(&self, d: &mut CheckedDriver<'static, Drv>, size: usize) {
        self.buf.fill(0, size, b'x').unwrap();
        self.buf.fill(size, size, b'y').unwrap();
        d.memcpy(BUF_IOVA, BUF_IOVA + size as u64, size as u64, TIMEOUT_NS)
            .unwrap();
        let v = self.buf.to_vec();
        assert!(v[..size].iter().all(|b| *b == b'x'));
        assert!(
            v[size..2 * size].iter().all(|b| *b == b'x'),
            "destination holds the source bytes"
        );
    }

    fn msi(&self) -> u64 {
        self.func.msi().take(0)
    }
}

fn copy_size(d: &CheckedDriver<'static, Drv>) -> usize {
    (d.limits().unwrap().max_memcpy_size as usize).min(BUF_SIZE / 2)
}

fn chanerr_of(e: DriverError) -> (u32, ChanSts) {
    match e {
        DriverError::Device(DeviceError::IoatChannel { chanerr, chansts }) => {
            (chanerr, ChanSts(chansts))
        }
        other => panic!("expected a decoded CBDMA channel error, got {other:?}"),
    }
}

// ----- probe, init, limits -------------------------------------------------------------------

#[test]
fn probe_matches_skx_with_cbver_0x32_and_0x33_only() {
    for (device_id, cbver, ok) in [
        (0x2021, 0x33, true),
        (0x2021, 0x32, true),
        (0x2021, 0x34, false),
        (0x2021, 0x30, false),
        (0x0B00, 0x34, false),
        (0x0B00, 0x33, false),
    ] {
        let r = rig_with(CbdmaConfig {
            device_id,
            cbver,
            ..CbdmaConfig::default()
        });
        // Memory decode off: CBVER reads all ones, so probe can only match on the ids (and must
        // not turn decode on); init enables decode and checks CBVER.
        assert_eq!(
            Drv::probe(&r.func).is_some(),
            device_id == 0x2021,
            "{device_id:#06x} with decode off"
        );
        r.func.config_write16(0x04, 0x0002).unwrap();
        let m = Drv::probe(&r.func);
        assert_eq!(m.is_some(), ok, "{device_id:#06x} CBVER {cbver:#x}");
        if let Some(m) = m {
            assert_eq!((m.name, m.vendor, m.device), ("ioat", 0x8086, 0x2021));
        }
        if !ok {
            assert!(Drv::init(r.func.clone(), StdClock::new(), r.region).is_err());
        }
    }
}

#[test]
fn region_size_is_reported_exactly_and_enforced() {
    let r = rig(ExecMode::Immediate);
    let m = Drv::probe(&r.func).unwrap();
    assert_eq!(m.region_size, REGION_SIZE);
    assert_eq!(REGION_SIZE, 192, "two descriptors and one write-back line");
    let small = r.region.subregion(0, REGION_SIZE - 1).unwrap();
    assert_eq!(
        Drv::init(r.func.clone(), StdClock::new(), small).unwrap_err(),
        DriverError::RegionTooSmall {
            need: REGION_SIZE,
            have: REGION_SIZE - 1
        }
    );
    let exact = r.region.subregion(0, REGION_SIZE).unwrap();
    let d = Drv::init(r.func.clone(), StdClock::new(), exact).unwrap();
    d.remove().unwrap();
    let misaligned = r.region.subregion(32, REGION_SIZE).unwrap();
    assert!(matches!(
        Drv::init(r.func.clone(), StdClock::new(), misaligned),
        Err(DriverError::Unsupported { device: "ioat", .. })
    ));
}

#[test]
fn limits_follow_xfercap_with_zero_meaning_32_gib() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    let l = d.init().unwrap();
    assert_eq!(l.max_memcpy_size, 1 << 20);
    assert_eq!(l.max_memcpy_count, 65535);
    assert_eq!(l.msi_vector, 0);
    d.remove().unwrap();

    // XFERCAP 0 is 32 GiB (not 2^0 = 1 byte as upstream computes); one descriptor still carries
    // at most u32::MAX bytes.
    let r = rig_with(CbdmaConfig {
        xfercap: 0,
        ..CbdmaConfig::default()
    });
    let mut d = r.checked();
    assert_eq!(d.init().unwrap().max_memcpy_size, u64::from(u32::MAX));
    r.good_copy(&mut d, 4096);
}

#[test]
fn init_programs_the_device() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    let cmd = r.func.config_read16(0x04).unwrap();
    assert_eq!(cmd & 0x0406, 0x0406, "memory, bus master, INTx disable");
    let bar = r.func.bar(0).unwrap();
    use passthru_core::mmio::RegisterIo;
    assert_eq!(bar.read8(ioat::INTRCTRL) & 0x09, 0x09);
    assert_eq!(r.func.msi().enabled_kind(), Some(IrqKind::MsiX));
    assert!(
        r.model.chansts(0).is(ChanState::Halted),
        "reset leaves HALTED"
    );
    d.remove().unwrap();
    assert_eq!(r.func.msi().enabled_kind(), None);
}

#[test]
fn init_clears_chanerr_int_and_dmauncerrsts_at_their_own_offsets() {
    let r = rig(ExecMode::Immediate);
    r.model.inject_chanerr_int(0x5);
    r.model.inject_dmauncerrsts(0x10);
    let mut d = r.checked();
    d.init().unwrap();
    assert_eq!(r.func.config_read32(ioat::CHANERR_INT).unwrap(), 0);
    assert_eq!(
        r.func.config_read32(ioat::DMAUNCERRSTS).unwrap(),
        0,
        "upstream wrote this value to CHANERR_INT instead"
    );
}

#[test]
fn init_remove_10_times() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    for _ in 0..10 {
        d.remove().unwrap();
        assert_eq!(d.state(), DriverState::Uninitialized);
        assert!(r.model.chansts(0).is(ChanState::Halted));
        d.init().unwrap();
        assert_eq!(d.state(), DriverState::Ready);
    }
    r.good_copy(&mut d, 4096);
}

#[test]
fn slow_reset_is_waited_for_and_a_stuck_reset_times_out() {
    let r = rig(ExecMode::Immediate);
    r.model.set_reset_delay_reads(50);
    let mut d = r.checked();
    d.init().unwrap();
    r.good_copy(&mut d, 4096);
    d.remove().unwrap();
    r.model.set_reset_delay_reads(u32::MAX);
    match d.init().unwrap_err() {
        DriverError::Timeout {
            device, register, ..
        } => assert_eq!((device, register), ("ioat", "CHANCMD")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn out_of_order_and_beyond_limits_are_refused() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    assert!(matches!(
        d.memcpy_wait(TIMEOUT_NS),
        Err(DriverError::OutOfOrder { .. })
    ));
    for (size, count) in [((1 << 20) + 1, 1), (8, 0), (8, 65536)] {
        assert!(matches!(
            d.memcpy_start(BUF_IOVA, BUF_IOVA + 4096, size, count),
            Err(DriverError::BeyondLimits { .. })
        ));
    }
}

// ----- upstream's test cases ----------------------------------------------------------------

fn memcpy_success(mode: ExecMode) {
    let r = rig(mode);
    let mut d = r.checked();
    d.init().unwrap();
    let size = copy_size(&d);
    assert_eq!(size, 1 << 20);
    r.good_copy(&mut d, size);
    assert_eq!(r.msi(), 0, "a memcpy raises no interrupt");
    // The completion write-back names the descriptor (region offset 0) with state DONE.
    let wb: ChanSts = r.region.read(128).unwrap();
    assert_eq!(wb, ChanSts(REGION_IOVA | 1));
    assert!(r.model.chansts(0).is(ChanState::Suspended));
}

#[test]
fn memcpy_success_immediate() {
    memcpy_success(ExecMode::Immediate);
}

#[test]
fn memcpy_success_threaded() {
    memcpy_success(ExecMode::Threaded);
}

fn unmapped(src_unmapped: bool, mode: ExecMode) {
    let r = rig(mode);
    let mut d = r.checked();
    d.init().unwrap();
    let (src, dst, bit) = if src_unmapped {
        (UNMAPPED_IOVA, BUF_IOVA, ChanErr::READ_DATA_ERR)
    } else {
        (BUF_IOVA, UNMAPPED_IOVA, ChanErr::WRITE_DATA_ERR)
    };
    let e = d.memcpy(src, dst, 4096, TIMEOUT_NS).unwrap_err();
    let (chanerr, chansts) = chanerr_of(e);
    assert_eq!(
        chanerr,
        bit.bits(),
        "modelling choice: bit 8/9 for IOMMU faults"
    );
    assert!(chansts.is(ChanState::Halted));
    assert_eq!(r.msi(), 0, "a faulting memcpy raises no interrupt");
    assert_eq!(r.model.chanerr(0), 0, "recovery cleared CHANERR");
    assert_eq!(d.state(), DriverState::Ready);
    r.good_copy(&mut d, 4096);
}

#[test]
fn memcpy_from_unmapped_iova_read_data_error_modelling_choice() {
    unmapped(true, ExecMode::Immediate);
}

#[test]
fn memcpy_to_unmapped_iova_write_data_error_modelling_choice() {
    unmapped(false, ExecMode::Immediate);
}

#[test]
fn memcpy_from_and_to_unmapped_iova_threaded_modelling_choice() {
    unmapped(true, ExecMode::Threaded);
    unmapped(false, ExecMode::Threaded);
}

fn send_msi(mode: ExecMode) {
    let r = rig(mode);
    let mut d = r.checked();
    d.init().unwrap();
    assert_eq!(r.msi(), 0);
    d.send_msi().unwrap();
    assert_eq!(r.func.msi().wait_take(0, Duration::from_secs(1)), 1);
    assert_eq!(r.func.msi().undelivered(0), 0);
    assert_eq!(r.func.msi().log(), vec![0]);
}

#[test]
fn send_msi_exactly_once_on_vector_0() {
    send_msi(ExecMode::Immediate);
}

#[test]
fn send_msi_threaded() {
    send_msi(ExecMode::Threaded);
}

#[test]
fn mix_and_match_10_times() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    let size = copy_size(&d);
    for i in 0..10 {
        r.good_copy(&mut d, size);
        let (src, dst) = if i % 2 == 0 {
            (UNMAPPED_IOVA, BUF_IOVA)
        } else {
            (BUF_IOVA, UNMAPPED_IOVA)
        };
        let e = d.memcpy(src, dst, size as u64, TIMEOUT_NS).unwrap_err();
        chanerr_of(e);
        assert_eq!(r.msi(), 0);
        d.send_msi().unwrap();
        assert_eq!(r.msi(), 1, "iteration {i}");
    }
}

#[test]
fn memcpy_storm_65535_copies() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    let l = d.init().unwrap();
    let size = 4096u64;
    let before = r.model.completed_descriptors(0);
    r.buf.fill(0, 4096, 0x5a).unwrap();
    d.memcpy_start(BUF_IOVA, BUF_IOVA + size, size, l.max_memcpy_count)
        .unwrap();
    d.memcpy_wait(10 * TIMEOUT_NS).unwrap();
    assert_eq!(r.model.completed_descriptors(0) - before, 65535);
    assert_eq!(r.msi(), 0);
    let v = r.buf.to_vec();
    assert!(v[4096..8192].iter().all(|b| *b == 0x5a));
    // CHAINADDR resets the consumed count: the next copy still works.
    r.good_copy(&mut d, 4096);
    assert_eq!(r.model.completed_descriptors(0) - before, 65536);
}

#[test]
fn memcpy_storm_threaded() {
    let r = rig(ExecMode::Threaded);
    let mut d = r.checked();
    d.init().unwrap();
    let before = r.model.completed_descriptors(0);
    d.memcpy_start(BUF_IOVA, BUF_IOVA + 8192, 8192, 5000)
        .unwrap();
    d.memcpy_wait(10 * TIMEOUT_NS).unwrap();
    assert_eq!(r.model.completed_descriptors(0) - before, 5000);
    assert_eq!(r.msi(), 0);
}

#[test]
fn count_copies_execute_count_times() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    for count in [1u64, 2, 7, 300] {
        let before = r.model.completed_descriptors(0);
        d.memcpy_start(BUF_IOVA, BUF_IOVA + 64, 64, count).unwrap();
        d.memcpy_wait(TIMEOUT_NS).unwrap();
        assert_eq!(r.model.completed_descriptors(0) - before, count);
    }
}

// ----- injected faults ----------------------------------------------------------------------

#[test]
fn every_injected_chanerr_bit_is_decoded_and_recovered() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    for bit in 0..28 {
        let e = ChanErr::from_bits_retain(1 << bit);
        r.model.inject_chanerr_next(0, e);
        let err = d
            .memcpy(BUF_IOVA, BUF_IOVA + 4096, 4096, TIMEOUT_NS)
            .unwrap_err();
        let (chanerr, chansts) = chanerr_of(err);
        assert_eq!(chanerr, 1 << bit, "bit {bit}");
        assert!(chansts.is(ChanState::Halted), "bit {bit}");
        assert_eq!(r.model.chanerr(0), 0, "bit {bit}: recovery cleared it");
        assert_eq!(r.msi(), 0, "bit {bit}: no interrupt");
        r.good_copy(&mut d, 4096);
    }
    // The decoded error names the bit when displayed.
    r.model.inject_chanerr_next(0, ChanErr::LENGTH_ERR);
    let err = d
        .memcpy(BUF_IOVA, BUF_IOVA + 64, 64, TIMEOUT_NS)
        .unwrap_err();
    assert!(
        format!("{err}").contains("CHANERR = 0x00000800 (descriptor transfer size error)"),
        "{err}"
    );
    // The failing descriptor was the first of a new chain: nothing of it completed, so the
    // status names no descriptor (not the previous chain's last one).
    assert!(
        format!("{err}").contains("(HALTED, last completed descriptor 0x0)"),
        "{err}"
    );
}

#[test]
fn injected_fault_during_send_msi_is_decoded_and_recovered() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    r.model.inject_chanerr_next(0, ChanErr::CONTROL_ERR);
    let (chanerr, _) = chanerr_of(d.send_msi().unwrap_err());
    assert_eq!(chanerr, ChanErr::CONTROL_ERR.bits());
    assert_eq!(r.msi(), 0);
    d.send_msi().unwrap();
    assert_eq!(r.msi(), 1);
}

#[test]
fn stuck_channel_times_out_then_recovers() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    r.model.inject_stuck(0, true);
    let err = d
        .memcpy(BUF_IOVA, BUF_IOVA + 4096, 4096, 5_000_000)
        .unwrap_err();
    match err {
        DriverError::Timeout {
            device,
            register,
            value,
            waited_ns,
        } => {
            assert_eq!((device, register), ("ioat", "CHANSTS"));
            assert!(ChanSts(value).is(ChanState::Active), "{value:#x}");
            assert!(waited_ns >= 5_000_000);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(d.state(), DriverState::Ready);
    r.good_copy(&mut d, 4096);
}

#[test]
fn dropped_interrupt_is_not_seen_and_the_next_one_is() {
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    r.model.inject_drop_interrupts(0, 1);
    d.send_msi().unwrap();
    assert_eq!(r.func.msi().wait_take(0, Duration::from_millis(5)), 0);
    d.send_msi().unwrap();
    assert_eq!(r.msi(), 1);
}

#[test]
fn unmapped_driver_region_is_reported_not_hung_modelling_choice() {
    // The driver region's descriptor lives in DMA memory the device cannot read: bit 2.
    let r = rig(ExecMode::Immediate);
    let mut d = r.checked();
    d.init().unwrap();
    r.model.iommu().unmap(REGION_IOVA, 4096);
    let (chanerr, _) = chanerr_of(
        d.memcpy(BUF_IOVA, BUF_IOVA + 64, 64, TIMEOUT_NS)
            .unwrap_err(),
    );
    assert_eq!(chanerr, ChanErr::NEXT_ADDR_ERR.bits());
}

// ----- random copies -------------------------------------------------------------------------

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

        /// Random sizes, offsets and counts: the destination always ends up equal to the source,
        /// bytes around it untouched.
        #[test]
        fn random_copies_land_exactly(
            size in 1usize..=65536,
            src_off in 0usize..65536,
            dst_gap in 0usize..4096,
            count in 1u64..4,
            seed: u8,
        ) {
            let r = rig(ExecMode::Immediate);
            let mut d = r.checked();
            d.init().unwrap();
            let pattern: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            r.buf.write(src_off, &pattern).unwrap();
            let dst_off = src_off + size + dst_gap;
            r.buf.fill(dst_off, size + 1, 0xEE).unwrap();
            d.memcpy_start(BUF_IOVA + src_off as u64, BUF_IOVA + dst_off as u64, size as u64, count).unwrap();
            d.memcpy_wait(TIMEOUT_NS).unwrap();
            let v = r.buf.to_vec();
            prop_assert_eq!(&v[dst_off..dst_off + size], &pattern[..]);
            prop_assert_eq!(v[dst_off + size], 0xEE);
            prop_assert_eq!(&v[src_off..src_off + size], &pattern[..]);
            prop_assert_eq!(r.msi(), 0);
        }
    }
}

// ----- a function that stops answering ---------------------------------------------------------

mod surprise_removal {
    use super::*;
    use passthru_core::mmio::{FunctionError, PortalError, RegisterIo};
    use passthru_models::function::ModelBar;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The model behind a switch: once `gone` is set, every BAR read returns all ones and writes
    /// are dropped, as after a surprise removal.
    #[derive(Clone)]
    struct Gone {
        inner: ModelFunction<CbdmaModel>,
        gone: Arc<AtomicBool>,
    }

    #[derive(Clone)]
    struct GoneBar {
        inner: ModelBar<CbdmaModel>,
        gone: Arc<AtomicBool>,
    }

    impl RegisterIo for GoneBar {
        fn len(&self) -> usize {
            self.inner.len()
        }
        fn read8(&self, o: usize) -> u8 {
            if self.gone.load(Ordering::SeqCst) {
                u8::MAX
            } else {
                self.inner.read8(o)
            }
        }
        fn read16(&self, o: usize) -> u16 {
            if self.gone.load(Ordering::SeqCst) {
                u16::MAX
            } else {
                self.inner.read16(o)
            }
        }
        fn read32(&self, o: usize) -> u32 {
            if self.gone.load(Ordering::SeqCst) {
                u32::MAX
            } else {
                self.inner.read32(o)
            }
        }
        fn read64(&self, o: usize) -> u64 {
            if self.gone.load(Ordering::SeqCst) {
                u64::MAX
            } else {
                self.inner.read64(o)
            }
        }
        fn write8(&self, o: usize, v: u8) {
            if !self.gone.load(Ordering::SeqCst) {
                self.inner.write8(o, v)
            }
        }
        fn write16(&self, o: usize, v: u16) {
            if !self.gone.load(Ordering::SeqCst) {
                self.inner.write16(o, v)
            }
        }
        fn write32(&self, o: usize, v: u32) {
            if !self.gone.load(Ordering::SeqCst) {
                self.inner.write32(o, v)
            }
        }
        fn write64(&self, o: usize, v: u64) {
            if !self.gone.load(Ordering::SeqCst) {
                self.inner.write64(o, v)
            }
        }
        fn submit64(&self, o: usize, d: &[u8; 64]) -> Result<(), PortalError> {
            self.inner.submit64(o, d)
        }
    }

    impl PciFunction for Gone {
        type Bar = GoneBar;
        fn bar(&self, i: u8) -> Result<GoneBar, FunctionError> {
            Ok(GoneBar {
                inner: self.inner.bar(i)?,
                gone: Arc::clone(&self.gone),
            })
        }
        fn config_read8(&self, o: u16) -> Result<u8, FunctionError> {
            self.inner.config_read8(o)
        }
        fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
            self.inner.config_read16(o)
        }
        fn config_read32(&self, o: u16) -> Result<u32, FunctionError> {
            self.inner.config_read32(o)
        }
        fn config_write8(&self, o: u16, v: u8) -> Result<(), FunctionError> {
            self.inner.config_write8(o, v)
        }
        fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
            self.inner.config_write16(o, v)
        }
        fn config_write32(&self, o: u16, v: u32) -> Result<(), FunctionError> {
            self.inner.config_write32(o, v)
        }
        fn irq_enable(&self, k: IrqKind, f: u32, c: u32) -> Result<(), FunctionError> {
            self.inner.irq_enable(k, f, c)
        }
        fn irq_disable(&self, k: IrqKind) -> Result<(), FunctionError> {
            self.inner.irq_disable(k)
        }
        fn reset(&self) -> Result<(), FunctionError> {
            self.inner.reset()
        }
    }

    #[test]
    fn all_ones_chansts_is_reported_not_waited_on() {
        let r = rig(ExecMode::Immediate);
        let gone = Arc::new(AtomicBool::new(false));
        let f = Gone {
            inner: r.func.clone(),
            gone: Arc::clone(&gone),
        };
        let mut d = CheckedDriver::<Ioat<_, _>>::new(f, StdClock::new(), r.region).unwrap();
        d.init().unwrap();
        gone.store(true, Ordering::SeqCst);
        d.memcpy_start(BUF_IOVA, BUF_IOVA + 64, 64, 1).unwrap();
        let t = std::time::Instant::now();
        let e = d.memcpy_wait(10 * TIMEOUT_NS).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "no long wait on a dead function"
        );
        assert_eq!(
            e,
            DriverError::Device(DeviceError::Register {
                device: "ioat",
                register: "CHANSTS",
                value: u64::MAX
            })
        );
        // Removing a dead function is bounded and says which register never settled.
        match d.remove().unwrap_err() {
            DriverError::Timeout {
                device,
                register,
                value,
                ..
            } => {
                assert_eq!((device, register, value), ("ioat", "CHANCMD", 0xFF));
            }
            e => panic!("{e:?}"),
        }
    }
}
