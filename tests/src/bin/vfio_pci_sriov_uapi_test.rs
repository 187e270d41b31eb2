//! `vfio_pci_sriov_uapi_test`: see [`passthru::programs::vfio_pci_sriov_uapi_test`].
fn main() {
    passthru::programs::vfio_pci_sriov_uapi_test::main()
}
