//! The kselftest-compatible VFIO test programs (all but `vfio_pci_driver_test`, which lives
//! with the drivers' suite). Each module has `suite()` (the fixtures), `main()` (what the thin
//! binary in `src/bin/` calls) and `extra_names()` (tests we add beyond upstream's).
//!
//! | program | devices |
//! |---|---|
//! | `vfio_dma_mapping_test` | the first device (any vfio-pci device) |
//! | `vfio_pci_device_test` | the first device; the IRQ variants pick the first device with MSI / MSI-X / INTx |
//! | `vfio_iommufd_setup_test` | the first device (needs the VFIO cdev) |
//! | `vfio_pci_device_init_perf_test` | every device given |
//! | `vfio_dma_mapping_mmio_test` | the first device with a mmap-able read/write BAR |
//! | `vfio_pci_sriov_uapi_test` | the first SR-IOV physical function |

pub mod expectations;
pub mod util;

pub mod vfio_dma_mapping_mmio_test;
pub mod vfio_dma_mapping_test;
pub mod vfio_iommufd_setup_test;
pub mod vfio_pci_device_init_perf_test;
pub mod vfio_pci_device_test;
pub mod vfio_pci_sriov_uapi_test;

use crate::harness::Suite;

/// A program: its name, its suite, and the names it adds beyond upstream.
pub struct Program {
    /// The upstream program name.
    pub name: &'static str,
    /// Builds the suite.
    pub suite: fn() -> Suite,
    /// Test names that are not upstream's.
    pub extra_names: fn() -> Vec<String>,
    /// Runs it as a process (parses the command line, exits).
    pub main: fn() -> !,
}

/// The six programs in this module.
pub const PROGRAMS: [Program; 6] = [
    Program {
        name: vfio_dma_mapping_test::PROGRAM,
        suite: vfio_dma_mapping_test::suite,
        extra_names: vfio_dma_mapping_test::extra_names,
        main: vfio_dma_mapping_test::main,
    },
    Program {
        name: vfio_pci_device_test::PROGRAM,
        suite: vfio_pci_device_test::suite,
        extra_names: vfio_pci_device_test::extra_names,
        main: vfio_pci_device_test::main,
    },
    Program {
        name: vfio_iommufd_setup_test::PROGRAM,
        suite: vfio_iommufd_setup_test::suite,
        extra_names: vfio_iommufd_setup_test::extra_names,
        main: vfio_iommufd_setup_test::main,
    },
    Program {
        name: vfio_pci_device_init_perf_test::PROGRAM,
        suite: vfio_pci_device_init_perf_test::suite,
        extra_names: vfio_pci_device_init_perf_test::extra_names,
        main: vfio_pci_device_init_perf_test::main,
    },
    Program {
        name: vfio_dma_mapping_mmio_test::PROGRAM,
        suite: vfio_dma_mapping_mmio_test::suite,
        extra_names: vfio_dma_mapping_mmio_test::extra_names,
        main: vfio_dma_mapping_mmio_test::main,
    },
    Program {
        name: vfio_pci_sriov_uapi_test::PROGRAM,
        suite: vfio_pci_sriov_uapi_test::suite,
        extra_names: vfio_pci_sriov_uapi_test::extra_names,
        main: vfio_pci_sriov_uapi_test::main,
    },
];

/// Looks a program up by name.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests;
