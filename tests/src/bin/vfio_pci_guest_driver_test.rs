//! `vfio_pci_guest_driver_test`: upstream's driver test cases run by the driver inside a KVM
//! guest, on the models (no device given) or on a VFIO device passed through. See
//! `passthru::suite::guest`.
//!
//! Usage: `vfio_pci_guest_driver_test [harness options] [BDF]` (or `$VFIO_SELFTESTS_BDF`, or
//! the pool `$VFIO_SELFTESTS_BDFS`). Without `/dev/kvm` every test is skipped (exit 4).

fn main() {
    passthru::suite::guest::main()
}
