//! `vfio_iommufd_setup_test`: see [`passthru::programs::vfio_iommufd_setup_test`].
fn main() {
    passthru::programs::vfio_iommufd_setup_test::main()
}
