//! `vfio_pci_device_test`: see [`passthru::programs::vfio_pci_device_test`].
fn main() {
    passthru::programs::vfio_pci_device_test::main()
}
