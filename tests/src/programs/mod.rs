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
//!
//! `irq_test` (KVM's upstream interrupt test, in a passthru guest) is an upstream-format program
//! rather than a harness suite: see [`irq_test`]; `passthru test` runs it through
//! [`irq_test_suite`].

pub mod expectations;
pub mod irq_test;
pub mod proc_interrupts;
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

/// `irq_test` in eventfd mode (no device) as a harness suite for `passthru test`: upstream's
/// option sets `-v 2 -n -e` and `-x` with 200 IRQs each (a spinning vCPU on a loaded 2-core
/// host sees an interrupt only when it is scheduled, milliseconds apart), each one test, with
/// the run's seed; SKIP without `/dev/kvm`.
pub fn irq_test_suite() -> crate::harness::Suite {
    use crate::harness::{Fixture, Suite};
    let fixture = Fixture::with_setup("irq_test", |_, _: &&'static [&'static str]| Ok(()))
        .variants([
            ("v2_n_e", &["-v", "2", "-n", "-e", "-i", "200"][..]),
            ("x", &["-x", "-i", "200"][..]),
        ])
        .test("eventfd", |ctx, args, _| {
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            run_irq_test(ctx, argv)
        });
    Suite::new(irq_test::PROGRAM)
        .devices(crate::harness::DeviceSelector::none())
        .fixture(fixture)
}

/// `irq_test -d BDF` as a harness suite for `passthru test` on devices: the device's own MSI
/// (the passthru driver's `send_msi`) through its VFIO eventfd into a KVM irqfd, in each IOMMU
/// mode (`irq_test.<mode>.device_msi`), and with the vCPU blocked in `HLT`
/// (`irq_test.<mode>.device_msi_hlt`, the posted-interrupt wakeup path); 200 IRQs each, with
/// the run's seed; SKIP without `/dev/kvm`.
pub fn irq_test_device_suite() -> crate::harness::Suite {
    use crate::harness::{Fixture, Suite};
    use passthru_linux::IommuMode;
    let mut fixture = Fixture::with_setup("irq_test", |ctx, mode: &IommuMode| {
        Ok(vec![
            "-d".to_string(),
            ctx.bdf()?.to_string(),
            "-t".to_string(),
            mode.name().to_string(),
            "-i".to_string(),
            "200".to_string(),
        ])
    });
    for mode in IommuMode::ALL {
        fixture = fixture.variant(mode.name(), mode);
    }
    let fixture = fixture
        .test("device_msi", |ctx, _, argv: &mut Vec<String>| {
            run_irq_test(ctx, argv.clone())
        })
        .test("device_msi_hlt", |ctx, _, argv: &mut Vec<String>| {
            let mut argv = argv.clone();
            argv.push("-b".to_string());
            run_irq_test(ctx, argv)
        });
    Suite::new(irq_test::PROGRAM)
        .devices(crate::suite::vfio::selector())
        .fixture(fixture)
}

/// Runs `irq_test` with `argv` and the run's seed in this process: its output lines become the
/// test's log, exit 0 passes, 4 skips with its output as the reason, anything else fails with
/// its stderr.
fn run_irq_test(
    ctx: &crate::harness::Ctx,
    mut argv: Vec<String>,
) -> crate::harness::TestResult<()> {
    use crate::harness::TestError;
    passthru_guest::kvm_available().map_err(TestError::skip)?;
    argv.extend(["--seed".to_string(), ctx.seed().to_string()]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = irq_test::run(&argv, &mut out, &mut err);
    for line in String::from_utf8_lossy(&out).lines() {
        ctx.log(line);
    }
    match code {
        crate::harness::KSFT_PASS => Ok(()),
        crate::harness::KSFT_SKIP => Err(TestError::skip(
            String::from_utf8_lossy(&out).trim().to_string(),
        )),
        _ => Err(TestError::fail(format!(
            "irq_test {} exited {code}: {}",
            argv.join(" "),
            String::from_utf8_lossy(&err).trim()
        ))),
    }
}

/// Looks a program up by name.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests;
