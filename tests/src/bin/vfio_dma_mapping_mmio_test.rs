//! `vfio_dma_mapping_mmio_test`: see [`passthru::programs::vfio_dma_mapping_mmio_test`].
fn main() {
    passthru::programs::vfio_dma_mapping_mmio_test::main()
}
