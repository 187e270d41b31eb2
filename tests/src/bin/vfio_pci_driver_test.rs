//! `vfio_pci_driver_test`: upstream's driver test program (seven cases × five IOMMU modes) on a
//! real device through VFIO. See `passthru::suite::vfio` for the setup and naming.
//!
//! Usage: `vfio_pci_driver_test [harness options] [BDF]` (or `$VFIO_SELFTESTS_BDF`, or the pool
//! `$VFIO_SELFTESTS_BDFS`). `$PASSTHRU_STORM_BYTES` sets the storm's total (default 250 GiB).

fn main() {
    passthru::suite::vfio::main()
}
