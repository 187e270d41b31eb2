//! Device backings on a real VM (each SKIPs, printing why, where /dev/kvm is absent): the
//! model's MSI reaches the guest's interrupt handler through the eventfd → irqfd route that a
//! device request connected, is gone after disable, and attach refuses layouts the VM cannot
//! serve. The driver cases themselves run in the `passthru` crate's `suite_guest` tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use passthru_core::mmio::IrqKind;
use passthru_guest::device::kvm::KvmDeviceHost;
use passthru_guest::device::model::ModelDevice;
use passthru_guest::device::request::{DeviceRequest, MsiTarget};
use passthru_guest::device::{DeviceLayout, Devices, GuestDevice, Vmm};
use passthru_guest::{MsiMessage, Vm, VmConfig};
use passthru_models::exec::ExecMode;
use passthru_models::function::DeviceModel;

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

fn layout() -> DeviceLayout {
    DeviceLayout::standard(1 << 20)
}

#[test]
fn model_msi_reaches_the_guest_handler_through_the_connected_irqfd() {
    if !kvm() {
        return;
    }
    // irq_wait: x2APIC, spinning; ends when user word 0 is set.
    let mut vm = Vm::new(VmConfig::new("irq_wait").arg(0, 2).arg(1, 0)).unwrap();
    let dev = Arc::new(ModelDevice::edu(ExecMode::Immediate, layout()).unwrap());
    let mut devices = Devices::new();
    devices
        .push(Arc::clone(&dev) as Arc<dyn GuestDevice>)
        .unwrap();
    let host = KvmDeviceHost::attach(&vm, devices, None).unwrap();
    vm.start().unwrap();
    vm.wait_ready(T).unwrap();
    let enable = DeviceRequest::IrqEnable {
        device: 0,
        kind: IrqKind::Msi,
        first: 0,
        count: 1,
        target: MsiTarget {
            dest_apic_id: vm.vcpu_id(0).unwrap(),
            vector_base: 0x50,
        },
    };
    host.devices().call(enable, &*host).unwrap();
    assert_eq!(
        host.routes().iter().map(|(_, m)| *m).collect::<Vec<_>>(),
        vec![MsiMessage::fixed(0, 0x50).unwrap()]
    );
    dev.model().pci().raise(0);
    vm.wait_until("the guest to count vector 0x50", T, |vm| {
        Ok(vm.irq_count(0, 0x50)? >= 1)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(vm.irq_count(0, 0x50).unwrap(), 1, "exactly one interrupt");
    host.devices()
        .call(
            DeviceRequest::IrqDisable {
                device: 0,
                kind: IrqKind::Msi,
            },
            &*host,
        )
        .unwrap();
    assert!(host.routes().is_empty());
    dev.model().pci().raise(0);
    let until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < until {
        assert_eq!(
            vm.irq_count(0, 0x50).unwrap(),
            1,
            "no interrupt after disable"
        );
        std::thread::yield_now();
    }
    vm.user_var::<u64>(0).unwrap().write(1);
    vm.run_until_done(T).unwrap();
    host.detach();
}

#[test]
fn attach_refuses_bars_over_guest_ram_and_late_hooks_say_why() {
    if !kvm() {
        return;
    }
    let vm = Vm::new(VmConfig::new("noop")).unwrap();
    let mut bad = layout();
    bad.bar_base = 0x10_0000; // inside the default 16 MiB of RAM
    bad.bar_limit = 0x100_0000;
    let mut devices = Devices::new();
    devices
        .push(Arc::new(
            ModelDevice::edu(ExecMode::Immediate, bad).unwrap(),
        ))
        .unwrap();
    let e = KvmDeviceHost::attach(&vm, devices, None).unwrap_err();
    assert!(e.to_string().contains("overlaps guest RAM"), "{e}");

    let vm = Vm::new(VmConfig::new("noop")).unwrap();
    let host = KvmDeviceHost::attach(&vm, Devices::new(), None).unwrap();
    let dev = Arc::new(ModelDevice::edu(ExecMode::Immediate, layout()).unwrap());
    let e = dev.attach(&*host).unwrap_err();
    assert!(
        e.to_string().contains("installed by KvmDeviceHost::attach"),
        "{e}"
    );
    assert_eq!(host.guest_ram()[0].gpa, 0);
    assert_eq!(host.guest_ram()[0].len, vm.memory().size());
}
