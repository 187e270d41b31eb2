//! `vfio_pci_guest_driver_test` on the dsa, ioat and edu models: the seven upstream driver cases
//! run by the driver inside a KVM guest on this machine's `/dev/kvm`, in the models' immediate
//! and threaded execution modes and with copies waited for by interrupt, through the harness exactly as `passthru test` runs them. Each
//! `#[test]` runs one KTAP-named case and checks the harness reported it `ok` (or, on a machine
//! without `/dev/kvm`, `SKIP` naming it).

mod common;

use passthru::harness::{DeviceSource, KSFT_PASS, KSFT_SKIP};
use passthru::suite::guest::model_suite;

fn run_case(name: &str) {
    let (code, out, err) = model_suite().run_captured(&["-r", name], &DeviceSource::default());
    if passthru_guest::kvm_available().is_err() {
        assert_eq!(code, KSFT_SKIP, "{out}\n{err}");
        assert!(out.contains("# SKIP") && out.contains("/dev/kvm"), "{out}");
        return;
    }
    assert!(
        out.contains(&format!("ok 1 {name}\n")) && !out.contains("not ok") && !out.contains("SKIP"),
        "{name} did not pass:\n{out}\n{err}"
    );
    assert!(
        out.contains(&format!("# guest: {}: ", name.split('.').next().unwrap())),
        "the guest named its driver:\n{out}"
    );
    assert_eq!(code, KSFT_PASS, "{out}\n{err}");
}

common::driver_cases!(run_case);

#[test]
fn every_model_case_is_listed_with_upstream_names() {
    let names = model_suite().names();
    assert_eq!(names.len(), 63);
    for fixture in [
        "dsa",
        "dsa.threaded",
        "dsa.irq",
        "ioat",
        "ioat.threaded",
        "ioat.irq",
        "edu",
        "edu.threaded",
        "edu.irq",
    ] {
        for case in [
            "init_remove",
            "memcpy_success",
            "memcpy_from_unmapped_iova",
            "memcpy_to_unmapped_iova",
            "send_msi",
            "mix_and_match",
            "memcpy_storm",
        ] {
            let n = format!("{fixture}.{case}");
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }
    let dev = passthru::suite::guest::device_suite().names();
    assert_eq!(dev.len(), 35, "five IOMMU modes x seven cases");
    assert!(dev.contains(&"vfio_pci_guest_driver_test.iommufd.send_msi".to_string()));
}
