//! `vfio_pci_device_test`: config space, BARs, reset, and MSI/MSI-X (plus INTx, not upstream)
//! enable → trigger → disable (upstream `tools/testing/selftests/vfio/vfio_pci_device_test.c`).
//!
//! Fixtures: `vfio_pci_device_test` (default mode `iommufd`; tests `config_space_read_write`,
//! `validate_bars`, `reset`) and `vfio_pci_irq_test` (variants `msi`, `msix`, and our `intx`;
//! test `enable_trigger_disable`). The IRQ variants pick, from the devices given, the first
//! one that has the interrupt kind (so a pool can mix an MSI-only edu with an MSI-X igb).

use std::sync::Arc;

use passthru_core::mmio::IrqKind;
use passthru_linux::bdf::Bdf;
use passthru_linux::device::{PCI_COMMAND, PCI_COMMAND_MASTER};
use passthru_linux::irq::kind_name;
use passthru_linux::{Iommu, IommuMode, VfioPciDevice};

use super::expectations::MAX_TEST_MSI;
use super::util::{open_device, pick_device, sysfs, Classify};
use crate::harness::{Ctx, DeviceSelector, Fixture, Suite, TestError, TestResult};
use crate::{check, check_eq, check_ok, fail, skip};

/// The program name.
pub const PROGRAM: &str = "vfio_pci_device_test";

/// An open device and its IOMMU.
pub struct Open {
    /// The device's address.
    pub bdf: Bdf,
    /// The IOMMU (kept alive for the device).
    pub iommu: Arc<Iommu>,
    /// The device.
    pub device: VfioPciDevice,
}

fn open_default(ctx: &Ctx) -> TestResult<Open> {
    let bdf = ctx.bdf()?;
    let (iommu, device) = open_device(bdf, IommuMode::default())?;
    Ok(Open { bdf, iommu, device })
}

fn config_space_read_write(_ctx: &Ctx, _v: &(), st: &mut Open) -> TestResult {
    let (vendor, device) = sysfs()
        .vendor_device(st.bdf)
        .map_err(|e| TestError::fail(format!("{}: sysfs vendor/device: {e}", st.bdf)))?;
    let d = &st.device;
    check_eq!(d.config_readw(0x00).classify()?, vendor);
    check_eq!(d.config_readw(0x02).classify()?, device);
    let cmd = d.config_readw(PCI_COMMAND).classify()?;
    check_eq!(
        cmd & PCI_COMMAND_MASTER,
        0,
        "{}: PCI_COMMAND {cmd:#06x} has Bus Master set at open",
        st.bdf
    );
    d.config_writew(PCI_COMMAND, cmd | PCI_COMMAND_MASTER)
        .classify()?;
    let set = d.config_readw(PCI_COMMAND).classify()?;
    check_eq!(
        set & PCI_COMMAND_MASTER,
        PCI_COMMAND_MASTER,
        "PCI_COMMAND {set:#06x} after setting Bus Master"
    );
    d.config_writew(PCI_COMMAND, set & !PCI_COMMAND_MASTER)
        .classify()?;
    let clear = d.config_readw(PCI_COMMAND).classify()?;
    check_eq!(
        clear & PCI_COMMAND_MASTER,
        0,
        "PCI_COMMAND {clear:#06x} after clearing Bus Master"
    );
    Ok(())
}

fn validate_bars(ctx: &Ctx, _v: &(), st: &mut Open) -> TestResult {
    for i in 0..6u8 {
        let Some(bar) = st.device.bar_info(i) else {
            fail!("{}: BAR{i} missing from the device's BAR table", st.bdf);
        };
        if !bar.info.mmappable() {
            check!(
                bar.vaddr().is_none(),
                "BAR{i} is not mmap-able but is mapped at {:#x?}",
                bar.vaddr()
            );
            continue;
        }
        let vaddr = bar.vaddr();
        check!(
            vaddr.is_some(),
            "BAR{i} is mmap-able (size {:#x}) but not mapped: {}",
            bar.info.size,
            bar.unmapped_reason.as_deref().unwrap_or("no reason")
        );
        check!(bar.info.size > 0, "BAR{i} is mmap-able with size 0");
        check_eq!(bar.mapped_len().unwrap_or(0) as u64, bar.info.size);
        ctx.log(format!(
            "BAR{i}: size {:#x} mapped at {:#x}",
            bar.info.size,
            vaddr.unwrap_or(0)
        ));
    }
    Ok(())
}

fn reset(_ctx: &Ctx, _v: &(), st: &mut Open) -> TestResult {
    if !st.device.info().supports_reset() {
        skip!(
            "{}: VFIO_DEVICE_FLAGS_RESET is not set (no FLR/PM/bus reset; in QEMU put the \
             device behind a pcie-root-port)",
            st.bdf
        );
    }
    st.device.reset().classify()?;
    Ok(())
}

/// An IRQ-test variant: which interrupt kind.
#[derive(Debug, Clone, Copy)]
pub struct IrqVariant {
    /// MSI, MSI-X or INTx.
    pub kind: IrqKind,
}

/// How many vectors the test enables for a device with `count` vectors.
pub fn vectors_to_test(kind: IrqKind, count: u32) -> u32 {
    match kind {
        IrqKind::Intx => count.min(1),
        IrqKind::Msi | IrqKind::MsiX => count.min(MAX_TEST_MSI),
    }
}

fn irq_setup(ctx: &Ctx, v: &IrqVariant) -> TestResult<Open> {
    let what = format!("{} interrupts", kind_name(v.kind));
    pick_device(ctx, &what, |bdf| {
        let (iommu, device) = open_device(bdf, IommuMode::default())?;
        let count = device.irq_info(v.kind).count;
        if count == 0 {
            return Err(TestError::skip(format!(
                "device reports 0 {} vectors",
                kind_name(v.kind)
            )));
        }
        Ok(Open { bdf, iommu, device })
    })
}

fn enable_trigger_disable(ctx: &Ctx, v: &IrqVariant, st: &mut Open) -> TestResult {
    let d = &st.device;
    let info = d.irq_info(v.kind);
    let count = vectors_to_test(v.kind, info.count);
    if count == 0 {
        skip!("{}: no {} vectors", st.bdf, kind_name(v.kind));
    }
    ctx.log(format!(
        "{}: enabling {count} of {} {} vectors",
        st.bdf,
        info.count,
        kind_name(v.kind)
    ));
    d.irq_enable(v.kind, 0, count).classify()?;
    for vector in 0..count {
        let pending = check_ok!(d.irq_take(v.kind, vector));
        check!(
            pending.is_none(),
            "{} vector {vector} fired before any trigger (count {pending:?})",
            kind_name(v.kind)
        );
        d.irq_trigger(v.kind, vector).classify()?;
        let got = check_ok!(d.irq_take(v.kind, vector));
        check_eq!(
            got,
            Some(1),
            "{} vector {vector}: eventfd after one trigger",
            kind_name(v.kind)
        );
        if v.kind == IrqKind::Intx {
            // VFIO masks INTx when it signals; unmask so the line is usable again.
            d.intx_unmask().classify()?;
        }
    }
    d.irq_disable(v.kind).classify()?;
    check_eq!(d.irq_enabled_count(v.kind), 0);
    Ok(())
}

/// The program's suite.
pub fn suite() -> Suite {
    let device = Fixture::new("vfio_pci_device_test", open_default)
        .test("config_space_read_write", config_space_read_write)
        .test("validate_bars", validate_bars)
        .test("reset", reset);
    let irq = Fixture::with_setup("vfio_pci_irq_test", irq_setup)
        .variant("msi", IrqVariant { kind: IrqKind::Msi })
        .variant(
            "msix",
            IrqVariant {
                kind: IrqKind::MsiX,
            },
        )
        .variant(
            "intx",
            IrqVariant {
                kind: IrqKind::Intx,
            },
        )
        .test("enable_trigger_disable", enable_trigger_disable);
    Suite::new(PROGRAM)
        .devices(DeviceSelector::all().vfio_bound())
        .fixture(device)
        .fixture(irq)
}

/// Names this program adds beyond upstream's.
pub fn extra_names() -> Vec<String> {
    vec!["vfio_pci_irq_test.intx.enable_trigger_disable".into()]
}

/// Runs the program with the process's arguments and environment, and exits.
pub fn main() -> ! {
    suite().main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_caps() {
        assert_eq!(vectors_to_test(IrqKind::MsiX, 2048), 16);
        assert_eq!(vectors_to_test(IrqKind::MsiX, 5), 5);
        assert_eq!(vectors_to_test(IrqKind::Msi, 0), 0);
        assert_eq!(vectors_to_test(IrqKind::Intx, 1), 1);
    }
}
