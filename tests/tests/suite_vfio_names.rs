//! `vfio_pci_driver_test` lists exactly upstream's 35 test names (Linux 7.3.4 KTAP names, from
//! reference/upstream-test-names.tsv), and without a device it exits with KSFT_SKIP.

use passthru::harness::{DeviceSource, KSFT_SKIP};
use passthru::suite::vfio::{run, suite};

const UPSTREAM: &str = "
vfio_pci_driver_test.iommufd.init_remove
vfio_pci_driver_test.iommufd.memcpy_from_unmapped_iova
vfio_pci_driver_test.iommufd.memcpy_storm
vfio_pci_driver_test.iommufd.memcpy_success
vfio_pci_driver_test.iommufd.memcpy_to_unmapped_iova
vfio_pci_driver_test.iommufd.mix_and_match
vfio_pci_driver_test.iommufd.send_msi
vfio_pci_driver_test.iommufd_compat_type1.init_remove
vfio_pci_driver_test.iommufd_compat_type1.memcpy_from_unmapped_iova
vfio_pci_driver_test.iommufd_compat_type1.memcpy_storm
vfio_pci_driver_test.iommufd_compat_type1.memcpy_success
vfio_pci_driver_test.iommufd_compat_type1.memcpy_to_unmapped_iova
vfio_pci_driver_test.iommufd_compat_type1.mix_and_match
vfio_pci_driver_test.iommufd_compat_type1.send_msi
vfio_pci_driver_test.iommufd_compat_type1v2.init_remove
vfio_pci_driver_test.iommufd_compat_type1v2.memcpy_from_unmapped_iova
vfio_pci_driver_test.iommufd_compat_type1v2.memcpy_storm
vfio_pci_driver_test.iommufd_compat_type1v2.memcpy_success
vfio_pci_driver_test.iommufd_compat_type1v2.memcpy_to_unmapped_iova
vfio_pci_driver_test.iommufd_compat_type1v2.mix_and_match
vfio_pci_driver_test.iommufd_compat_type1v2.send_msi
vfio_pci_driver_test.vfio_type1_iommu.init_remove
vfio_pci_driver_test.vfio_type1_iommu.memcpy_from_unmapped_iova
vfio_pci_driver_test.vfio_type1_iommu.memcpy_storm
vfio_pci_driver_test.vfio_type1_iommu.memcpy_success
vfio_pci_driver_test.vfio_type1_iommu.memcpy_to_unmapped_iova
vfio_pci_driver_test.vfio_type1_iommu.mix_and_match
vfio_pci_driver_test.vfio_type1_iommu.send_msi
vfio_pci_driver_test.vfio_type1v2_iommu.init_remove
vfio_pci_driver_test.vfio_type1v2_iommu.memcpy_from_unmapped_iova
vfio_pci_driver_test.vfio_type1v2_iommu.memcpy_storm
vfio_pci_driver_test.vfio_type1v2_iommu.memcpy_success
vfio_pci_driver_test.vfio_type1v2_iommu.memcpy_to_unmapped_iova
vfio_pci_driver_test.vfio_type1v2_iommu.mix_and_match
vfio_pci_driver_test.vfio_type1v2_iommu.send_msi
";

#[test]
fn names_match_upstream() {
    let mut ours = suite().names();
    ours.sort();
    let mut theirs: Vec<String> = UPSTREAM
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    theirs.sort();
    assert_eq!(theirs.len(), 35);
    assert_eq!(ours, theirs);
}

#[test]
fn modes_are_in_upstream_order() {
    let names = suite().names();
    let modes: Vec<&str> = names
        .iter()
        .step_by(7)
        .map(|n| n.split('.').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        modes,
        [
            "vfio_type1_iommu",
            "vfio_type1v2_iommu",
            "iommufd_compat_type1",
            "iommufd_compat_type1v2",
            "iommufd"
        ]
    );
}

#[test]
fn no_device_skips() {
    assert_eq!(run(&[], &DeviceSource::default()), KSFT_SKIP);
}
