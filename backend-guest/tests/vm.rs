//! VM tests on the host's /dev/kvm (each SKIPs, printing why, where /dev/kvm is absent).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use passthru_guest::{GsiRoute, GuestEvent, MsiMessage, Vm, VmConfig, VmError};

const T: Duration = Duration::from_secs(10);

fn kvm() -> bool {
    match passthru_guest::kvm_available() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("SKIP: {reason}");
            false
        }
    }
}

#[test]
fn noop_main_runs_to_done_on_one_and_two_vcpus() {
    if !kvm() {
        return;
    }
    for n in [1, 2] {
        let mut vm = Vm::new(VmConfig::new("noop").vcpus(n)).unwrap();
        let r = vm.run_until_done(T).unwrap();
        assert!(r.syncs.is_empty());
    }
}

#[test]
fn ucall_print_sync_done() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("ucall").echo_prints(false)).unwrap();
    vm.start().unwrap();
    assert_eq!(
        vm.wait_event(T).unwrap(),
        GuestEvent::Sync {
            vcpu: 0,
            value: 0x11
        }
    );
    // While the vCPU is stopped in SYNC the prints before it have arrived.
    let prints = vm.take_prints();
    assert_eq!(
        prints,
        vec![
            (0, "hello from the guest".to_string()),
            (0, "vcpu 0 of 1".to_string())
        ]
    );
    vm.resume(0).unwrap();
    assert_eq!(
        vm.wait_event(T).unwrap(),
        GuestEvent::Sync {
            vcpu: 0,
            value: 0x22
        }
    );
    vm.resume(0).unwrap();
    assert_eq!(vm.wait_event(T).unwrap(), GuestEvent::Done { vcpu: 0 });
}

#[test]
fn run_until_done_resumes_syncs_of_every_vcpu() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("ucall").vcpus(2).echo_prints(false)).unwrap();
    let r = vm.run_until_done(T).unwrap();
    let mut syncs = r.syncs.clone();
    syncs.sort();
    assert_eq!(syncs, vec![(0, 0x11), (0, 0x22), (1, 0x11), (1, 0x22)]);
    let mut prints = vm.take_prints();
    prints.sort();
    assert!(prints.contains(&(1, "vcpu 1 of 2".to_string())));
}

#[test]
fn guest_assert_eq_becomes_a_host_error_with_values() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("assert_eq").arg(0, 41)).unwrap();
    let e = vm.run_until_done(T).unwrap_err();
    match &e {
        VmError::GuestAssert {
            vcpu,
            file,
            line,
            expr,
            values,
            message,
        } => {
            assert_eq!(*vcpu, 0);
            assert!(file.ends_with("selftest.rs"), "{file}");
            assert!(*line > 0);
            assert_eq!(expr, "args[0] == 42");
            assert_eq!(values, &vec![41, 42]);
            assert_eq!(message, &None);
        }
        other => panic!("expected GuestAssert, got {other}"),
    }
    assert!(e.to_string().contains("args[0] == 42"), "{e}");
}

#[test]
fn guest_assert_with_message_carries_the_formatted_text() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("assert_eq").arg(0, 42).arg(1, 7)).unwrap();
    match vm.run_until_done(T).unwrap_err() {
        VmError::GuestAssert {
            expr,
            message,
            values,
            ..
        } => {
            assert_eq!(expr, "args[1] == 0");
            assert_eq!(message.as_deref(), Some("args[1] was 7"));
            assert!(values.is_empty());
        }
        other => panic!("expected GuestAssert, got {other}"),
    }
}

#[test]
fn ud2_is_reported_with_vector_and_rip() {
    if !kvm() {
        return;
    }
    let main = passthru_guest::image::Image::embedded()
        .unwrap()
        .main("ud2")
        .unwrap();
    let mut vm = Vm::new(VmConfig::new("ud2")).unwrap();
    match vm.run_until_done(T).unwrap_err() {
        VmError::GuestException {
            vector, name, rip, ..
        } => {
            assert_eq!((vector, name), (6, "#UD"));
            // The ud2 is within the first few bytes of the main.
            assert!(
                (main..main + 16).contains(&rip),
                "rip {rip:#x} main {main:#x}"
            );
        }
        other => panic!("expected #UD, got {other}"),
    }
}

#[test]
fn page_fault_is_reported_with_cr2_and_error_code() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("page_fault")).unwrap();
    match vm.run_until_done(T).unwrap_err() {
        VmError::GuestException {
            vector,
            cr2,
            error_code,
            ..
        } => {
            assert_eq!(vector, 14);
            assert_eq!(cr2, 64 << 30);
            assert_eq!(error_code & 1, 0, "not-present fault");
            assert_eq!(error_code & 2, 0, "a read");
        }
        other => panic!("expected #PF, got {other}"),
    }
}

#[test]
fn guest_panic_is_reported_with_message() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("panic").arg(0, 7)).unwrap();
    match vm.run_until_done(T).unwrap_err() {
        VmError::GuestPanic { message, file, .. } => {
            assert_eq!(message, "boom 7");
            assert!(file.ends_with("selftest.rs"));
        }
        other => panic!("expected a panic, got {other}"),
    }
}

#[test]
fn unknown_main_is_a_typed_error() {
    match Vm::new(VmConfig::new("no_such_main")) {
        Err(VmError::NoSuchMain { available, .. }) => assert!(available.contains("noop")),
        Err(VmError::KvmUnavailable(_)) => {}
        other => panic!("expected NoSuchMain, got {other:?}"),
    }
}

#[test]
fn x2apic_and_xapic_ids_match_vcpu_ids() {
    if !kvm() {
        return;
    }
    for (mode, ids) in [(2u64, vec![0u32, 1]), (1, vec![0, 1])] {
        let mut vm = Vm::new(VmConfig::new("apic").vcpu_ids(&ids).arg(0, mode)).unwrap();
        vm.run_until_done(T).unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(vm.user_var::<u64>(8 * i as u64).unwrap().read(), *id as u64);
        }
    }
}

#[test]
fn host_request_reaches_the_handler_and_the_reply_the_guest() {
    if !kvm() {
        return;
    }
    struct Sum;
    impl passthru_guest::HostRequestHandler for Sum {
        fn handle(
            &self,
            r: &passthru_guest::HostRequest,
            _: &passthru_guest::GuestMemory,
        ) -> Result<[u64; 4], passthru_guest::HandlerError> {
            if r.code != 0x77 {
                return Err(passthru_guest::HandlerError(format!(
                    "unknown code {}",
                    r.code
                )));
            }
            Ok([r.args[0] + r.args[1] + r.args[2], 0, 0, 0])
        }
    }
    let mut vm = Vm::new(VmConfig::new("host_request").arg(0, 0x77)).unwrap();
    vm.set_host_request_handler(std::sync::Arc::new(Sum));
    vm.run_until_done(T).unwrap();
    assert_eq!(vm.user_var::<u64>(0).unwrap().read(), 6);
    // Without a handler the guest sees HOST_REQUEST_NO_HANDLER.
    let mut vm = Vm::new(VmConfig::new("host_request").arg(0, 0x77)).unwrap();
    vm.run_until_done(T).unwrap();
    assert_eq!(vm.user_var::<u64>(0).unwrap().read(), 1 | 1 << 63);
}

/// Starts `irq_wait` (args: APIC mode, hlt) and waits until every vCPU is ready.
fn irq_vm(n: u32, mode: u64, hlt: bool) -> Vm {
    let mut vm = Vm::new(
        VmConfig::new("irq_wait")
            .vcpus(n)
            .arg(0, mode)
            .arg(1, hlt as u64),
    )
    .unwrap();
    vm.start().unwrap();
    vm.wait_ready(T).unwrap();
    vm
}

fn finish(mut vm: Vm, vector: u8) {
    vm.user_var::<u64>(0).unwrap().write(1);
    // Wake HLT-blocked vCPUs.
    for i in 0..vm.nr_vcpus() {
        let id = vm.vcpu_id(i).unwrap();
        vm.signal_msi(&MsiMessage::fixed(id, vector).unwrap())
            .unwrap();
    }
    vm.run_until_done(T).unwrap();
}

fn wait_count(vm: &mut Vm, vcpu: usize, vector: u8, want: u64) {
    vm.wait_until(
        &format!("vCPU {vcpu} vector {vector} count {want}"),
        T,
        |vm| Ok(vm.irq_count(vcpu, vector)? >= want),
    )
    .unwrap();
    assert_eq!(vm.irq_count(vcpu, vector).unwrap(), want);
}

#[test]
fn signal_msi_reaches_only_the_addressed_vcpu_xapic_and_x2apic() {
    if !kvm() {
        return;
    }
    for mode in [1u64, 2] {
        let mut vm = irq_vm(2, mode, false);
        for (target, v) in [(1usize, 0x41u8), (0, 0x42)] {
            assert!(vm
                .signal_msi(&MsiMessage::fixed(target as u32, v).unwrap())
                .unwrap());
            wait_count(&mut vm, target, v, 1);
            assert_eq!(vm.irq_count(1 - target, v).unwrap(), 0, "mode {mode}");
        }
        finish(vm, 0x41);
    }
}

#[test]
fn nmi_msi_runs_the_nmi_handler() {
    if !kvm() {
        return;
    }
    let mut vm = irq_vm(2, 2, false);
    vm.signal_msi(&MsiMessage::nmi(1)).unwrap();
    wait_count(&mut vm, 1, 2, 1);
    assert_eq!(vm.irq_count(0, 2).unwrap(), 0);
    finish(vm, 0x40);
}

#[test]
fn irqfd_routes_reroutes_empties_and_deassigns() {
    if !kvm() {
        return;
    }
    let mut vm = irq_vm(2, 2, true);
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).unwrap();
    let gsi = 1000;
    let irqfd = vm.assign_irqfd(efd.as_fd(), gsi).unwrap();
    let route = |vcpu: u32, v: u8| GsiRoute {
        gsi,
        msi: MsiMessage::fixed(vcpu, v).unwrap(),
    };

    // Route to vCPU 0, then re-route live to vCPU 1 with another vector, then NMI.
    vm.set_gsi_routes(&[route(0, 0x50)]).unwrap();
    efd.write(1).unwrap();
    wait_count(&mut vm, 0, 0x50, 1);
    vm.set_gsi_routes(&[route(1, 0x51)]).unwrap();
    efd.write(1).unwrap();
    wait_count(&mut vm, 1, 0x51, 1);
    assert_eq!(vm.irq_count(0, 0x50).unwrap(), 1);
    vm.set_gsi_routes(&[GsiRoute {
        gsi,
        msi: MsiMessage::nmi(0),
    }])
    .unwrap();
    efd.write(1).unwrap();
    wait_count(&mut vm, 0, 2, 1);

    // Empty routing: the write goes nowhere.
    vm.set_gsi_routes(&[]).unwrap();
    efd.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for v in [0x50, 0x51, 2] {
        assert!(vm.irq_count(0, v).unwrap() <= 1 && vm.irq_count(1, v).unwrap() <= 1);
    }
    assert_eq!(vm.irq_count(1, 2).unwrap(), 0);
    // Routed again: delivery resumes.
    vm.set_gsi_routes(&[route(1, 0x51)]).unwrap();
    efd.write(1).unwrap();
    wait_count(&mut vm, 1, 0x51, 2);

    // Deassigned: no delivery after.
    irqfd.deassign().unwrap();
    efd.write(1).unwrap();
    let until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < until {
        assert_eq!(vm.irq_count(1, 0x51).unwrap(), 2);
    }
    finish(vm, 0x51);
}

#[test]
fn x2apic_id_above_255_is_reached_through_address_hi() {
    if !kvm() {
        return;
    }
    let ids = [0u32, 300];
    let mut vm = Vm::new(VmConfig::new("irq_wait").vcpu_ids(&ids).arg(0, 2)).unwrap();
    vm.start().unwrap();
    vm.wait_ready(T).unwrap();
    let m = MsiMessage::fixed(300, 0x60).unwrap();
    assert_eq!(m.address_hi, 0x100);
    vm.signal_msi(&m).unwrap();
    wait_count(&mut vm, 1, 0x60, 1);
    // 300 & 0xff = 44 is not vCPU 0's id either; vCPU 0 saw nothing.
    assert_eq!(vm.irq_count(0, 0x60).unwrap(), 0);
    finish(vm, 0x60);
}

#[test]
fn run_until_done_times_out_on_a_guest_that_never_finishes() {
    if !kvm() {
        return;
    }
    // irq_wait spins until the host sets the done word, which nobody does here. One vCPU runs
    // on the calling thread (watchdog), two on their own threads.
    for n in [1, 2] {
        let mut vm = Vm::new(VmConfig::new("irq_wait").vcpus(n).arg(0, 2)).unwrap();
        let t = Instant::now();
        match vm.run_until_done(Duration::from_millis(200)) {
            Err(VmError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(200)),
            other => panic!("{n} vCPUs: expected a timeout, got {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{n} vCPUs: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn guest_hlt_and_spin_waits_and_tsc_timeout() {
    if !kvm() {
        return;
    }
    let mut vm = Vm::new(VmConfig::new("waits")).unwrap();
    vm.start().unwrap();
    vm.wait_ready(T).unwrap();
    // The guest blocks in HLT until 0x44 comes.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        vm.user_var::<u64>(8).unwrap().read(),
        0,
        "HLT wait returned early"
    );
    vm.signal_msi(&MsiMessage::fixed(0, 0x44).unwrap()).unwrap();
    vm.wait_until("the HLT wait to return", T, |vm| {
        Ok(vm.user_var::<u64>(8)?.read() == 1)
    })
    .unwrap();
    vm.signal_msi(&MsiMessage::fixed(0, 0x45).unwrap()).unwrap();
    vm.run_until_done(T).unwrap();
    assert_eq!(vm.user_var::<u64>(16).unwrap().read(), 1);
    let waited = vm.user_var::<u64>(24).unwrap().read();
    assert!((1_000_000..2_000_000_000).contains(&waited), "{waited} ns");
}

#[test]
fn mmio_handler_serves_guest_accesses_and_unhandled_mmio_is_an_error() {
    if !kvm() {
        return;
    }
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Log(Mutex<Vec<(bool, u64, Vec<u8>)>>);
    impl passthru_guest::MmioHandler for Log {
        fn read(
            &self,
            _vcpu: usize,
            offset: u64,
            data: &mut [u8],
        ) -> Result<(), passthru_guest::HandlerError> {
            let v: u64 = 0x1122_3344_5566_7788 ^ offset;
            data.copy_from_slice(&v.to_le_bytes()[..data.len()]);
            self.0.lock().unwrap().push((false, offset, data.to_vec()));
            Ok(())
        }
        fn write(
            &self,
            _vcpu: usize,
            offset: u64,
            data: &[u8],
        ) -> Result<(), passthru_guest::HandlerError> {
            self.0.lock().unwrap().push((true, offset, data.to_vec()));
            Ok(())
        }
    }
    let bar = passthru_guest::tables::MMIO_WINDOW_GPA;
    let log = Arc::new(Log::default());
    let mut vm = Vm::new(VmConfig::new("mmio").arg(0, bar)).unwrap();
    vm.add_mmio_handler(bar, 0x1000, log.clone()).unwrap();
    assert!(
        vm.add_mmio_handler(bar + 0x800, 0x1000, log.clone())
            .is_err(),
        "overlap"
    );
    assert!(
        vm.add_mmio_handler(0x1000, 0x1000, log.clone()).is_err(),
        "RAM"
    );
    vm.run_until_done(T).unwrap();
    let got = log.0.lock().unwrap().clone();
    let v = 0x1122_3344_5566_7788u64;
    assert_eq!(
        got,
        vec![
            (false, 0, v.to_le_bytes()[..4].to_vec()),
            (true, 8, ((v as u32) as u64 + 1).to_le_bytes().to_vec()),
            (true, 3, vec![0x5a]),
            (false, 16, (v ^ 16).to_le_bytes()[..2].to_vec()),
        ]
    );
    assert_eq!(vm.user_var::<u64>(0).unwrap().read(), v as u32 as u64);
    assert_eq!(
        vm.user_var::<u64>(8).unwrap().read(),
        (v ^ 16) as u16 as u64
    );

    // No handler: the first access fails the run with the address.
    let mut vm = Vm::new(VmConfig::new("mmio").arg(0, bar)).unwrap();
    match vm.run_until_done(T).unwrap_err() {
        VmError::Mmio {
            gpa, len, write, ..
        } => assert_eq!((gpa, len, write), (bar, 4, false)),
        other => panic!("expected an MMIO error, got {other}"),
    }
}

#[test]
fn extra_memslot_is_guest_memory_the_host_sees() {
    if !kvm() {
        return;
    }
    let slot_gpa = 0xd000_0000;
    let backing = passthru_guest::GuestMemory::new(0x2000).unwrap();
    let host = backing.host_ptr();
    let mut vm = Vm::new(
        VmConfig::new("fill")
            .arg(0, slot_gpa)
            .arg(1, 0x200)
            .arg(2, 0xfeed),
    )
    .unwrap();
    // SAFETY: `backing` is a live 8 KiB mapping, moved into the VM as the keepalive.
    let slot = unsafe { vm.add_memslot(slot_gpa, host, 0x2000, Box::new(backing)) }.unwrap();
    assert!(slot >= 1);
    vm.run_until_done(T).unwrap();
    for i in [0usize, 0x1ff] {
        // SAFETY: the mapping lives in the VM (keepalive) until `vm` drops, after this read.
        let v = unsafe { (host.add(8 * i) as *const u64).read_volatile() };
        assert_eq!(v, 0xfeed, "word {i}");
    }
    // SAFETY: as above; word 0x200 starts the second (last) page, which the guest left alone.
    let untouched = unsafe { (host.add(8 * 0x200) as *const u64).read_volatile() };
    assert_eq!(untouched, 0);
}

#[test]
fn hlt_wait_with_timeout_wakes_on_the_apic_timer_or_the_interrupt() {
    if !kvm() {
        return;
    }
    for mode in [1u64, 2] {
        let mut vm = Vm::new(VmConfig::new("hlt_timeout").arg(0, mode)).unwrap();
        vm.start().unwrap();
        vm.wait_ready(T).unwrap();
        let waited = vm.user_var::<u64>(8).unwrap().read();
        assert!(
            (5_000_000..1_000_000_000).contains(&waited),
            "mode {mode}: {waited} ns"
        );
        vm.signal_msi(&MsiMessage::fixed(0, 0x44).unwrap()).unwrap();
        vm.run_until_done(T).unwrap();
        assert_eq!(vm.user_var::<u64>(16).unwrap().read(), 1, "mode {mode}");
    }
}
