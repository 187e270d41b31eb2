//! The guest side of `vfio_pci_guest_driver_test`: one upstream driver test case, run by the
//! driver inside the guest on device 0 (see `passthru_guest_rt::driver_test` for the ABI).
//!
//! The guest does the driver's work (register accesses, descriptors, completion polling) and
//! counts interrupts in its own handler; the host fills and compares data in the shared DMA
//! window, so no guest instruction touches bulk data.

use passthru_core::driver::{
    CheckedDriver, DeviceError, Driver, DriverError, DriverState, WaitMode,
};
use passthru_core::mmio::{Clock, DmaRegion};
use passthru_drivers::dsa::Dsa;
use passthru_drivers::edu::Edu;
use passthru_drivers::igb::Igb;
use passthru_drivers::ioat::Ioat;
use passthru_guest_rt::clock::TscClock;
use passthru_guest_rt::device::guest::{identity_memory, irqs, GuestFunction};
use passthru_guest_rt::device::request::MsiTarget;
use passthru_guest_rt::driver_test::{self as abi, Case};
use passthru_guest_rt::{apic, boot_info, guest_main, guest_print, irq, ucall};

/// Fails the test with a formatted message (never returns).
macro_rules! fail {
    ($($arg:tt)+) => {
        ucall::assert_failed(file!(), line!(), "driver test", &[], Some(format_args!($($arg)+)))
    };
}

/// `init_remove` cycles and `mix_and_match` iterations (upstream: 10 each).
const CYCLES: u32 = 10;
/// How long `send_msi` waits for its interrupt.
const MSI_TIMEOUT_NS: u64 = 2_000_000_000;
/// After an interrupt, how long a second one is waited for (there must be none).
const SETTLE_NS: u64 = 5_000_000;
/// One ordinary copy.
const MEMCPY_TIMEOUT_NS: u64 = 5_000_000_000;

guest_main!(DRIVER_TEST, "driver_test", driver_test);

type G<'r, D> = CheckedDriver<'r, D>;

struct Setup {
    src: u64,
    dst: u64,
    size: u64,
    unmapped: u64,
    storm: u64,
    policy: u64,
    mode: WaitMode,
    vector: u8,
    seed: u64,
}

extern "C" fn driver_test(vcpu: u32) {
    let a = boot_info().args;
    if u64::from(vcpu) != (a[abi::ARG_MODE] >> abi::RUNNER_SHIFT) & 0xffff {
        return;
    }
    let Some(case) = Case::from_u64(a[abi::ARG_CASE]) else {
        fail!("unknown case {}", a[abi::ARG_CASE]);
    };
    apic::enable(apic::Mode::X2apic);
    irq::enable();
    let target = MsiTarget {
        dest_apic_id: apic::id(),
        vector_base: a[abi::ARG_VECTOR_BASE] as u8,
    };
    let f = GuestFunction::new(0, target);
    let (window, len) = (a[abi::ARG_WINDOW], a[abi::ARG_WINDOW_LEN] as usize);
    // SAFETY: the host installed the DMA window as guest RAM at this GPA, mapped it for the
    // device at IOVA = GPA for the whole run, and nothing else in the guest uses it.
    let Some(memory) = (unsafe { identity_memory(window, len) }) else {
        fail!("DMA window {window:#x}+{len:#x} outside the identity map");
    };
    let half = len / 2;
    let region = memory.region();
    let Ok(driver_region) = region.subregion(0, half) else {
        fail!("window too small");
    };
    if Dsa::<GuestFunction, TscClock>::probe(&f).is_some() {
        run::<Dsa<GuestFunction, TscClock>>(f, driver_region, case, &a, window, half);
    } else if Ioat::<GuestFunction, TscClock>::probe(&f).is_some() {
        run::<Ioat<GuestFunction, TscClock>>(f, driver_region, case, &a, window, half);
    } else if Igb::<GuestFunction, TscClock>::probe(&f).is_some() {
        run::<Igb<GuestFunction, TscClock>>(f, driver_region, case, &a, window, half);
    } else if Edu::<GuestFunction, TscClock>::probe(&f).is_some() {
        run::<Edu<GuestFunction, TscClock>>(f, driver_region, case, &a, window, half);
    } else {
        let id = passthru_core::mmio::PciFunction::config_read32(&f, 0).unwrap_or(u32::MAX);
        fail!(
            "No driver found for device {:04x}:{:04x}",
            id & 0xffff,
            id >> 16
        );
    }
}

fn run<'r, D>(
    f: GuestFunction,
    region: DmaRegion<'r>,
    case: Case,
    a: &[u64; 8],
    window: u64,
    half: usize,
) where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    let mut d = match G::<D>::new(f, TscClock, region) {
        Ok(d) => d,
        Err(e) => fail!("probe: {e}"),
    };
    let limits = match d.init() {
        Ok(l) => l,
        Err(e) => fail!("{}: init: {e}", d.matched().name),
    };
    guest_print!(
        "{}: {}{}",
        d.matched().name,
        case.name(),
        if a[abi::ARG_MODE] & abi::FLAG_WAIT_INTERRUPT != 0 {
            " (copies waited for by interrupt)"
        } else {
            ""
        }
    );
    let size = limits.max_memcpy_size.min(half as u64 / 2);
    let Some(vector) = f.guest_vector(u32::from(limits.msi_vector)) else {
        fail!("MSI vector {} cannot be routed", limits.msi_vector);
    };
    let t = Setup {
        src: window + half as u64,
        dst: window + half as u64 + size,
        size,
        unmapped: a[abi::ARG_UNMAPPED],
        storm: a[abi::ARG_STORM_BYTES],
        policy: a[abi::ARG_MODE] & 0xff,
        mode: if a[abi::ARG_MODE] & abi::FLAG_WAIT_INTERRUPT != 0 {
            WaitMode::Interrupt
        } else {
            WaitMode::Poll
        },
        vector,
        seed: a[abi::ARG_SEED],
    };
    match case {
        Case::InitRemove => init_remove(&mut d),
        Case::MemcpySuccess => good_memcpy(&mut d, &t, 0, "memcpy"),
        Case::MemcpyFromUnmappedIova => {
            faulting_memcpy(&mut d, &t, false, 0);
            good_memcpy(&mut d, &t, 1, "memcpy after the fault");
        }
        Case::MemcpyToUnmappedIova => {
            faulting_memcpy(&mut d, &t, true, 0);
            good_memcpy(&mut d, &t, 1, "memcpy after the fault");
        }
        Case::SendMsi => send_msi(&mut d, &t),
        Case::MixAndMatch => {
            for i in 0..CYCLES {
                good_memcpy(&mut d, &t, u64::from(i), "memcpy");
                faulting_memcpy(&mut d, &t, i % 2 == 1, u64::from(i));
                send_msi(&mut d, &t);
            }
        }
        Case::MemcpyStorm => storm(&mut d, &t),
    }
    if let Err(e) = d.remove() {
        fail!("remove: {e}");
    }
}

fn init_remove<'r, D>(d: &mut G<'r, D>)
where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    let Ok(before) = d.limits() else {
        fail!("limits");
    };
    for cycle in 0..CYCLES {
        if let Err(e) = d.remove() {
            fail!("remove (cycle {cycle}): {e}");
        }
        if d.state() != DriverState::Uninitialized {
            fail!("state after remove is {:?}", d.state());
        }
        match d.init() {
            Ok(l) if l == before => {}
            Ok(l) => {
                fail!("limits changed across remove/init (cycle {cycle}): {l:?} != {before:?}")
            }
            Err(e) => fail!("init (cycle {cycle}): {e}"),
        }
    }
}

fn host(code: u64, args: &[u64]) -> [u64; 4] {
    match ucall::host_request(code, args) {
        Ok(r) => r,
        Err(status) => fail!("host request {code:#x} failed with status {status}"),
    }
}

/// A different fill for every copy of a test (good copies even, faulting ones odd), so a device
/// that copies stale data is caught.
fn fill_seed(t: &Setup, n: u64) -> u64 {
    t.seed ^ n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Fails unless no interrupt is pending on the driver's MSI vector.
fn check_no_msi(t: &Setup, after: &str) {
    let n = irqs::pending(t.vector);
    if n != 0 {
        fail!(
            "{n} MSI(s) pending on guest vector {:#x} after {after}; none expected",
            t.vector
        );
    }
}

fn good_memcpy<'r, D>(d: &mut G<'r, D>, t: &Setup, round: u64, what: &str)
where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    host(
        abi::REQ_FILL,
        &[t.src, t.dst, t.size, fill_seed(t, 2 * round)],
    );
    if let Err(e) = d.memcpy_with(t.src, t.dst, t.size, MEMCPY_TIMEOUT_NS, t.mode) {
        fail!("{what}: {e}");
    }
    let diff = host(abi::REQ_CHECK, &[t.src, t.dst, t.size])[0];
    if diff != abi::SAME {
        fail!(
            "{what}: dst differs from src at byte {diff:#x} of {:#x} (src IOVA {:#x}, dst IOVA {:#x})",
            t.size,
            t.src,
            t.dst
        );
    }
    check_no_msi(t, what);
}

fn faulting_memcpy<'r, D>(d: &mut G<'r, D>, t: &Setup, write: bool, round: u64)
where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    host(
        abi::REQ_FILL,
        &[t.src, t.dst, t.size, fill_seed(t, 2 * round + 1)],
    );
    let (src, dst) = if write {
        (t.src, t.unmapped)
    } else {
        (t.unmapped, t.dst)
    };
    let r = d.memcpy_with(src, dst, t.size, MEMCPY_TIMEOUT_NS, t.mode);
    if d.state() != DriverState::Ready {
        fail!("driver state after a faulting memcpy is {:?}", d.state());
    }
    let side = if write { "to" } else { "from" };
    let name = d.matched().name;
    match t.policy {
        abi::POLICY_DEVICE_ERROR => match r {
            Ok(()) => fail!(
                "{name}: memcpy {side} unmapped IOVA {:#x} reported success",
                t.unmapped
            ),
            Err(e) => check_device_fault(name, &e, write, t),
        },
        abi::POLICY_SILENT => {
            if let Err(e) = r {
                fail!("{name}: faulting memcpy (this device cannot report DMA faults): {e}");
            }
            let n = host(abi::REQ_FAULTS, &[t.unmapped, t.size, u64::from(write)])[0];
            if n == 0 {
                fail!(
                    "no IOMMU {} fault in {:#x}+{:#x} recorded",
                    if write { "write" } else { "read" },
                    t.unmapped,
                    t.size
                );
            }
        }
        _ => match r {
            Ok(()) => guest_print!("{name}: faulting memcpy reported success"),
            Err(e @ DriverError::OutOfOrder { .. }) => fail!("faulting memcpy: {e}"),
            Err(e) => guest_print!("{name}: faulting memcpy reported: {e}"),
        },
    }
    if !write {
        let diff = host(abi::REQ_CHECK, &[t.src, t.dst, t.size])[0];
        if diff == abi::SAME {
            fail!("dst equals src after a copy from an unmapped source");
        }
    }
    check_no_msi(t, "faulting memcpy");
}

fn check_device_fault(name: &str, e: &DriverError, write: bool, t: &Setup) {
    match (name, e) {
        (
            "dsa",
            DriverError::Device(DeviceError::DsaCompletion {
                status, fault_addr, ..
            }),
        ) => {
            if status & 0x7f != 0x03 {
                fail!("dsa: completion status {status:#04x}, expected page fault (0x03): {e}");
            }
            if (status & 0x80 != 0) != write {
                fail!("dsa: fault direction in status {status:#04x} is wrong: {e}");
            }
            if !(t.unmapped..t.unmapped + t.size).contains(fault_addr) {
                fail!(
                    "dsa: fault address {fault_addr:#x} outside {:#x}+{:#x}",
                    t.unmapped,
                    t.size
                );
            }
        }
        ("ioat", DriverError::Device(DeviceError::IoatChannel { chanerr, .. })) => {
            use passthru_core::ioat::ChanErr;
            let c = ChanErr::from_bits_retain(*chanerr);
            let (want, other) = if write {
                (
                    ChanErr::WRITE_DATA_ERR | ChanErr::DEST_ADDR_ERR,
                    ChanErr::READ_DATA_ERR | ChanErr::SRC_ADDR_ERR,
                )
            } else {
                (
                    ChanErr::READ_DATA_ERR | ChanErr::SRC_ADDR_ERR,
                    ChanErr::WRITE_DATA_ERR | ChanErr::DEST_ADDR_ERR,
                )
            };
            if !c.intersects(want) || c.intersects(other) {
                fail!("ioat: CHANERR {chanerr:#010x} does not name the faulting side: {e}");
            }
        }
        _ => fail!("{name}: faulting memcpy returned {e}, not the device's decoded fault"),
    }
}

fn send_msi<'r, D>(d: &mut G<'r, D>, t: &Setup)
where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    check_no_msi(t, "before send_msi");
    if let Err(e) = d.send_msi() {
        fail!("send_msi: {e}");
    }
    // Block in HLT until the guest's handler counted it (or the timeout).
    let n = irqs::wait(t.vector, MSI_TIMEOUT_NS);
    if n == 0 {
        fail!(
            "send_msi: no interrupt on guest vector {:#x} within {} ms",
            t.vector,
            MSI_TIMEOUT_NS / 1_000_000
        );
    }
    TscClock.delay_ns(SETTLE_NS);
    let n = n + irqs::take(t.vector);
    if n != 1 {
        fail!(
            "send_msi: the guest's handler counted {n} interrupts on {:#x}, expected 1",
            t.vector
        );
    }
}

fn storm<'r, D>(d: &mut G<'r, D>, t: &Setup)
where
    D: Driver<'r, Function = GuestFunction, Clock = TscClock>,
{
    let Ok(limits) = d.limits() else {
        fail!("limits");
    };
    let count_ = (t.storm / t.size.max(1)).clamp(1, limits.max_memcpy_count.max(1));
    host(abi::REQ_FILL, &[t.src, t.dst, t.size, fill_seed(t, 0)]);
    if let Err(e) = d.memcpy_start_with(t.src, t.dst, t.size, count_, t.mode) {
        fail!("memcpy_start (storm, {count_} x {:#x}): {e}", t.size);
    }
    // Generous: 100 ms per copy, at least 10 s.
    let timeout = count_.saturating_mul(100_000_000).max(10_000_000_000);
    if let Err(e) = d.memcpy_wait(timeout) {
        fail!("memcpy_wait (storm, {count_} x {:#x}): {e}", t.size);
    }
    let diff = host(abi::REQ_CHECK, &[t.src, t.dst, t.size])[0];
    if diff != abi::SAME {
        fail!("storm: dst differs from src at byte {diff:#x}");
    }
    check_no_msi(t, "memcpy storm");
}
