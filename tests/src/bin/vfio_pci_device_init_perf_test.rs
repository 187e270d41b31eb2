//! `vfio_pci_device_init_perf_test`: see [`passthru::programs::vfio_pci_device_init_perf_test`].
fn main() {
    passthru::programs::vfio_pci_device_init_perf_test::main()
}
