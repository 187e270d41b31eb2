//! `vfio_dma_mapping_test`: see [`passthru::programs::vfio_dma_mapping_test`].
fn main() {
    passthru::programs::vfio_dma_mapping_test::main()
}
