//! `/proc/interrupts`: parsing, the rows `irq_test` reads as host-side evidence, and deltas.
//!
//! Format (Linux `fs/proc/interrupts.c`, `arch/x86/kernel/irq.c`): a header of `CPUn` columns,
//! then one row per IRQ or per architecture counter: `LABEL:` followed by one count per CPU
//! (a few rows such as `ERR:` and `MIS:` have a single count) and a free-text description.

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The label before the colon: an IRQ number (`"24"`) or a counter name (`"PIN"`).
    pub label: String,
    /// Per-CPU counts (as many as printed).
    pub counts: Vec<u64>,
    /// The rest of the line (chip, hwirq, handler names), whitespace-normalised.
    pub desc: String,
}

impl Row {
    /// Sum over CPUs.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The IRQ number, for numeric labels.
    pub fn irq(&self) -> Option<u32> {
        self.label.parse().ok()
    }
}

/// A parsed `/proc/interrupts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interrupts {
    /// Number of CPU columns in the header.
    pub cpus: usize,
    /// The rows, in file order.
    pub rows: Vec<Row>,
}

impl Interrupts {
    /// Parses the file's text; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut lines = text.lines();
        let cpus = lines
            .next()
            .map(|h| {
                h.split_whitespace()
                    .filter(|t| t.starts_with("CPU"))
                    .count()
            })
            .unwrap_or(0);
        let mut rows = Vec::new();
        for line in lines {
            let Some((label, rest)) = line.split_once(':') else {
                continue;
            };
            let label = label.trim();
            if label.is_empty() || label.contains(char::is_whitespace) {
                continue;
            }
            let mut counts = Vec::new();
            let mut tokens = rest.split_whitespace().peekable();
            while counts.len() < cpus.max(1) {
                match tokens.peek().and_then(|t| t.parse::<u64>().ok()) {
                    Some(v) => {
                        counts.push(v);
                        tokens.next();
                    }
                    None => break,
                }
            }
            rows.push(Row {
                label: label.to_string(),
                counts,
                desc: tokens.collect::<Vec<_>>().join(" "),
            });
        }
        Self { cpus, rows }
    }

    /// Reads and parses `/proc/interrupts`.
    pub fn read() -> std::io::Result<Self> {
        std::fs::read_to_string("/proc/interrupts").map(|t| Self::parse(&t))
    }

    /// The row labelled `label` (e.g. `"PIN"`).
    pub fn row(&self, label: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.label == label)
    }

    /// The row of IRQ `irq`.
    pub fn irq(&self, irq: u32) -> Option<&Row> {
        self.rows.iter().find(|r| r.irq() == Some(irq))
    }

    /// The row of a VFIO device's interrupt: its description names both `vfio-<kind>[<index>]`
    /// (kind `msix`, `msi` or `intx`) and the device's BDF.
    pub fn vfio_row(&self, kind: &str, index: u32, bdf: &str) -> Option<&Row> {
        let handler = format!("vfio-{kind}[{index}]");
        self.rows
            .iter()
            .find(|r| r.irq().is_some() && r.desc.contains(&handler) && r.desc.contains(bdf))
    }

    /// Rows of the AMD IOMMU's guest-virtual-APIC (GA) log interrupts (`AMD-Vi<n>-GA`).
    pub fn amd_ga_log_rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| {
            r.desc
                .split_whitespace()
                .any(|t| t.starts_with("AMD-Vi") && t.ends_with("-GA"))
        })
    }
}

/// Host-side evidence of how device interrupts were delivered, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The device's host IRQ (handled by the host: not posted), if known.
    pub device_irq: Option<u64>,
    /// Intel posted-interrupt notification events (`PIN:`), where the row exists.
    pub pin: Option<u64>,
    /// Intel posted-interrupt wakeup events (`PIW:`), where the row exists.
    pub piw: Option<u64>,
    /// AMD IOMMU GA-log interrupts, where such rows exist.
    pub amd_ga_log: Option<u64>,
}

impl Evidence {
    /// Collects the evidence from `ints` for host IRQ `device_irq`.
    pub fn collect(ints: &Interrupts, device_irq: Option<u32>) -> Self {
        let ga: Vec<u64> = ints.amd_ga_log_rows().map(Row::total).collect();
        Self {
            device_irq: device_irq.and_then(|i| ints.irq(i)).map(Row::total),
            pin: ints.row("PIN").map(Row::total),
            piw: ints.row("PIW").map(Row::total),
            amd_ga_log: (!ga.is_empty()).then(|| ga.iter().sum()),
        }
    }

    /// `after - self` for every counter present in both.
    pub fn delta(&self, after: &Self) -> Self {
        let d = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        Self {
            device_irq: d(self.device_irq, after.device_irq),
            pin: d(self.pin, after.pin),
            piw: d(self.piw, after.piw),
            amd_ga_log: d(self.amd_ga_log, after.amd_ga_log),
        }
    }

    /// One line: the counters present, e.g. `device IRQ +0, PIN +1000, PIW +0`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("device IRQ", self.device_irq),
            ("PIN", self.pin),
            ("PIW", self.piw),
            ("AMD-Vi GA log", self.amd_ga_log),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} +{v}"));
            }
        }
        if parts.is_empty() {
            "no counters available".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on an Intel host (abridged): a VFIO MSI-X vector and the posted-interrupt rows.
    const INTEL: &str = "\
            CPU0       CPU1       CPU2       CPU3
   0:         44          0          0          0  IR-IO-APIC    2-edge      timer
  24:          0          0          0          0  DMAR-MSI    0-edge      dmar0
 146:          0        137          0          2  IR-PCI-MSIX-0000:6a:01.0    0-edge      vfio-msix[0](0000:6a:01.0)
 147:          5          0          0          0  IR-PCI-MSIX-0000:6a:01.0    1-edge      vfio-msix[1](0000:6a:01.0)
 NMI:         12         13         11         10   Non-maskable interrupts
 PIN:          0       1000          3          0   Posted-interrupt notification event
 NPI:          0          0          0          0   Nested posted-interrupt event
 PIW:          0          7          0          0   Posted-interrupt wakeup event
 ERR:          0
 MIS:          0
";

    /// Recorded in the QEMU rig (AMD, 1 CPU, igb passed through, emulated intel-iommu).
    const RIG: &str = "\
           CPU0
  1:          9   IO-APIC   1-edge      i8042
 31:        200   PCI-MSIX-0000:00:03.0   0-edge      vfio-msix[0](0000:00:03.0)
 33:          4   AMD-Vi   0-edge      AMD-Vi0-GA
NMI:          0   Non-maskable interrupts
ERR:          0
";

    #[test]
    fn parses_header_rows_and_single_count_rows() {
        let i = Interrupts::parse(INTEL);
        assert_eq!(i.cpus, 4);
        let r = i.irq(146).unwrap();
        assert_eq!(r.counts, vec![0, 137, 0, 2]);
        assert_eq!(r.total(), 139);
        assert!(r
            .desc
            .starts_with("IR-PCI-MSIX-0000:6a:01.0 0-edge vfio-msix[0]"));
        assert_eq!(i.row("PIN").unwrap().total(), 1003);
        assert_eq!(i.row("ERR").unwrap().counts, vec![0]);
        assert_eq!(i.row("NMI").unwrap().desc, "Non-maskable interrupts");
    }

    #[test]
    fn finds_the_vfio_row_by_handler_and_bdf() {
        let i = Interrupts::parse(INTEL);
        assert_eq!(
            i.vfio_row("msix", 1, "0000:6a:01.0").unwrap().irq(),
            Some(147)
        );
        assert_eq!(
            i.vfio_row("msix", 0, "0000:6a:01.0").unwrap().irq(),
            Some(146)
        );
        assert!(i.vfio_row("msix", 0, "0000:00:03.0").is_none());
        assert!(i.vfio_row("msi", 0, "0000:6a:01.0").is_none());
        let r = Interrupts::parse(RIG);
        assert_eq!(
            r.vfio_row("msix", 0, "0000:00:03.0").unwrap().irq(),
            Some(31)
        );
    }

    #[test]
    fn evidence_has_only_the_counters_the_host_has_and_deltas_them() {
        let intel = Evidence::collect(&Interrupts::parse(INTEL), Some(146));
        assert_eq!(intel.device_irq, Some(139));
        assert_eq!(
            (intel.pin, intel.piw, intel.amd_ga_log),
            (Some(1003), Some(7), None)
        );
        let rig = Evidence::collect(&Interrupts::parse(RIG), Some(31));
        assert_eq!((rig.pin, rig.piw, rig.amd_ga_log), (None, None, Some(4)));
        let later = INTEL.replace("1000", "1500").replace(" 137 ", " 140 ");
        let d = intel.delta(&Evidence::collect(&Interrupts::parse(&later), Some(146)));
        assert_eq!(d.device_irq, Some(3));
        assert_eq!(d.pin, Some(500));
        assert_eq!(d.describe(), "device IRQ +3, PIN +500, PIW +0");
        assert_eq!(Evidence::default().describe(), "no counters available");
        let none = Evidence::collect(&Interrupts::parse(RIG), None);
        assert_eq!(none.device_irq, None);
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let i = Interrupts::parse("CPU0\nno colon here\n : 1\nfoo bar: 3\n  7:  x y\n");
        assert_eq!(i.rows.len(), 1);
        assert_eq!(i.rows[0].label, "7");
        assert!(i.rows[0].counts.is_empty());
        assert_eq!(Interrupts::parse(""), Interrupts::default());
    }
}
