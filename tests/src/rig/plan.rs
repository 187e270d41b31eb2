//! The rig's device topology and test matrix, and the `/rig/plan` file the guest's `/init`
//! executes.
//!
//! The topology must agree with the QEMU command line in `tests/vm/run-qemu.sh`; the guest
//! checks every device's identity at its BDF before running anything (`=== RIG ERROR`
//! otherwise).

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// One emulated PCI function of the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Short name used in the result table.
    pub label: &'static str,
    /// Address as the guest sees it.
    pub bdf: &'static str,
    /// `vendor:device`, lower-case hex, as in sysfs.
    pub id: &'static str,
}

/// edu on the root bus: MSI + INTx, 4 KiB DMA engine, no reset method.
pub const EDU: Device = Device {
    label: "edu",
    bdf: "0000:00:03.0",
    id: "1234:11e8",
};
/// edu behind a pcie-root-port: same device, with a secondary bus reset.
pub const EDU_RP: Device = Device {
    label: "edu-rp",
    bdf: "0000:01:00.0",
    id: "1234:11e8",
};
/// igb (82576) behind a pcie-root-port: MSI-X, FLR, SR-IOV, upstream's memcpy driver.
pub const IGB: Device = Device {
    label: "igb",
    bdf: "0000:02:00.0",
    id: "8086:10c9",
};
/// e1000e on the root bus: MSI-X with 5 vectors, PM reset.
pub const E1000E: Device = Device {
    label: "e1000e",
    bdf: "0000:00:06.0",
    id: "8086:10d3",
};

/// Every device of the topology, in BDF-argument order.
pub const DEVICES: [Device; 4] = [EDU, EDU_RP, IGB, E1000E];

/// The five IOMMU modes, upstream names, longest first (so prefix matching is unambiguous).
pub const IOMMU_MODES: [&str; 5] = [
    "iommufd_compat_type1v2",
    "iommufd_compat_type1",
    "vfio_type1v2_iommu",
    "vfio_type1_iommu",
    "iommufd",
];

/// Which QEMU boot of a kernel an entry belongs to (`run-qemu.sh` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Boot {
    /// `-m 2G`: everything except the 1 GiB hugetlb variants.
    Normal,
    /// `-m 4G hugepagesz=1G hugepages=1`: the 1 GiB hugetlb variants.
    Huge1G,
}

impl Boot {
    /// Both boots, in run order.
    pub const ALL: [Boot; 2] = [Boot::Normal, Boot::Huge1G];

    /// The `run-qemu.sh` variant argument (also used in log file names).
    pub fn variant(self) -> &'static str {
        match self {
            Boot::Normal => "normal",
            Boot::Huge1G => "1g",
        }
    }
}

/// One program run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Program file name in the guest's /bin.
    pub program: String,
    /// Device label for the result table (`all` for multi-device runs).
    pub label: String,
    /// Guest-side wall-clock limit in seconds (the program is killed after it).
    pub timeout_s: u32,
    /// `VAR=value` pairs (no spaces).
    pub env: Vec<String>,
    /// Arguments (no spaces inside one argument).
    pub args: Vec<String>,
}

impl Entry {
    fn new(program: &str, label: &str, args: Vec<String>) -> Self {
        Self {
            program: program.to_string(),
            label: label.to_string(),
            timeout_s: 300,
            env: Vec::new(),
            args,
        }
    }
}

/// The guest-side self check of the rig (shipped as a script in the initramfs, not a cargo
/// binary).
pub const SANITY: &str = "rig_sanity";

/// The test programs the matrix knows, in run order, with the devices each runs on.
pub const PROGRAMS: [&str; 7] = [
    "vfio_pci_device_test",
    "vfio_dma_mapping_test",
    "vfio_dma_mapping_mmio_test",
    "vfio_iommufd_setup_test",
    "vfio_pci_driver_test",
    "vfio_pci_device_init_perf_test",
    "vfio_pci_sriov_uapi_test",
];

/// Guest-side limit of one benchmark run, in seconds.
pub const BENCH_TIMEOUT_S: u32 = 150;

/// Whether a plan entry (or a logged run: program and its arguments) is a benchmark: a
/// measurement, never a test verdict.
pub fn is_bench(program: &str, args: &str) -> bool {
    program == "passthru" && args.split_whitespace().next() == Some("bench")
}

/// The `passthru bench map` runs of a boot. Normal boot: map+unmap at 4 KiB and 2 MiB on edu
/// in all five modes with open+setup, then open+setup alone on igb and e1000e. 1G boot:
/// map+unmap at 1 GiB on edu (2 pairs per side: each pins a whole 1 GiB page). The 4 KiB and
/// 2 MiB counts are `bench map`'s defaults (2000 and 100 pairs per side in 10 rounds); in the
/// recorded TCG boots the normal boot's benchmarks take about 15 s, the 1G boot's about 11 s.
pub fn bench_entries(boot: Boot) -> Vec<Entry> {
    let bench = |label: &str, bdf: &str, opts: &[&str]| {
        let mut args: Vec<String> = ["bench", "map"].iter().map(|s| s.to_string()).collect();
        args.extend(opts.iter().map(|s| s.to_string()));
        args.push(bdf.to_string());
        Entry {
            timeout_s: BENCH_TIMEOUT_S,
            ..Entry::new("passthru", label, args)
        }
    };
    match boot {
        Boot::Normal => {
            let map = [
                "--size", "4k", "--size", "2m", "--rounds", "10", "--opens", "25",
            ];
            let open = ["--open-only", "--opens", "5"];
            vec![
                bench(EDU.label, EDU.bdf, &map),
                bench(IGB.label, IGB.bdf, &open),
                bench(E1000E.label, E1000E.bdf, &open),
            ]
        }
        Boot::Huge1G => {
            let map = [
                "--map-only",
                "--size",
                "1g",
                "--iterations",
                "2",
                "--rounds",
                "2",
            ];
            vec![bench(EDU.label, EDU.bdf, &map)]
        }
    }
}

fn one_gb_variants() -> Vec<String> {
    IOMMU_MODES
        .iter()
        .map(|m| format!("{m}_anonymous_hugetlb_1gb"))
        .collect()
}

/// The matrix for one boot, restricted to the programs in `built`. Returns the entries and
/// the known programs that were not built (reported, not run).
pub fn matrix(built: &BTreeSet<String>, boot: Boot) -> (Vec<Entry>, Vec<String>) {
    let all_bdfs: Vec<String> = DEVICES.iter().map(|d| d.bdf.to_string()).collect();
    let mut entries = vec![Entry::new(SANITY, "all", all_bdfs.clone())];
    let mut missing = Vec::new();
    if boot == Boot::Normal && built.contains("passthru") {
        entries.push(Entry::new("passthru", "all", vec!["list".into()]));
    }
    for program in PROGRAMS {
        if !built.contains(program) {
            missing.push(program.to_string());
            continue;
        }
        let on = |d: Device, extra: Vec<String>| {
            let mut args = extra;
            args.push(d.bdf.to_string());
            Entry::new(program, d.label, args)
        };
        match (boot, program) {
            (Boot::Normal, "vfio_pci_device_test") => {
                for d in DEVICES {
                    entries.push(on(d, vec![]));
                }
            }
            (Boot::Normal, "vfio_dma_mapping_test") => {
                // The 1 GiB variants need the 4G boot with a boot-time 1G page.
                let mut excl = Vec::new();
                for v in one_gb_variants() {
                    excl.push("-V".to_string());
                    excl.push(v);
                }
                entries.push(on(EDU, excl));
            }
            (Boot::Huge1G, "vfio_dma_mapping_test") => {
                let mut incl = Vec::new();
                for v in one_gb_variants() {
                    incl.push("-v".to_string());
                    incl.push(v);
                }
                entries.push(on(EDU, incl));
            }
            (Boot::Normal, "vfio_dma_mapping_mmio_test") => {
                entries.push(on(EDU, vec![]));
                entries.push(on(E1000E, vec![]));
            }
            (Boot::Normal, "vfio_iommufd_setup_test") => entries.push(on(EDU, vec![])),
            (Boot::Normal, "vfio_pci_driver_test") => {
                entries.push(on(EDU, vec![]));
                entries.push(on(IGB, vec![]));
            }
            (Boot::Normal, "vfio_pci_device_init_perf_test") => {
                entries.push(Entry::new(program, "all", all_bdfs.clone()));
            }
            (Boot::Normal, "vfio_pci_sriov_uapi_test") => entries.push(on(IGB, vec![])),
            _ => {}
        }
    }
    if built.contains("passthru") {
        entries.extend(bench_entries(boot));
    }
    (entries, missing)
}

/// The matrix of one boot as the guest runs it: [`matrix`], with the sanity check told to
/// expect a 1 GiB page in the 1G boot (`RIG_EXPECT_1G=1`). Used by the rig and by the LAVA job.
pub fn boot_matrix(built: &BTreeSet<String>, boot: Boot) -> (Vec<Entry>, Vec<String>) {
    let (mut entries, missing) = matrix(built, boot);
    if boot == Boot::Huge1G {
        if let Some(sanity) = entries.iter_mut().find(|e| e.program == SANITY) {
            sanity.env.push("RIG_EXPECT_1G=1".into());
        }
    }
    (entries, missing)
}

/// Renders the `/rig/plan` file for `tests/vm/init`. With `strict_setup` (the initramfs holds
/// `passthru`), a failing `passthru setup` is a rig error instead of a fallback to plain sysfs
/// writes.
pub fn render(entries: &[Entry], strict_setup: bool) -> String {
    let mut out = String::from("# generated by passthru's QEMU rig (tests/src/rig/plan.rs)\n");
    for d in DEVICES {
        let _ = writeln!(out, "dev|{}|{}|{}", d.label, d.bdf, d.id);
    }
    let bdfs: Vec<&str> = DEVICES.iter().map(|d| d.bdf).collect();
    let strict = if strict_setup { "|strict" } else { "" };
    let _ = writeln!(out, "bind|{}{strict}", bdfs.join(" "));
    for e in entries {
        let _ = writeln!(
            out,
            "run|{}|{}|{}|{}|{}",
            e.program,
            e.label,
            e.timeout_s,
            e.env.join(" "),
            e.args.join(" ")
        );
    }
    out
}

/// The IOMMU mode a `fixture.variant.test` name runs in, or `-` when the variant names none.
pub fn mode_of(test_name: &str) -> &'static str {
    let mut parts = test_name.split('.');
    let (Some(_fixture), Some(variant), Some(_test)) = (parts.next(), parts.next(), parts.next())
    else {
        return "-";
    };
    IOMMU_MODES
        .iter()
        .find(|m| {
            variant == **m
                || variant
                    .strip_prefix(**m)
                    .is_some_and(|rest| rest.starts_with('_'))
        })
        .copied()
        .unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_match_longest_prefix() {
        assert_eq!(
            mode_of("vfio_dma_mapping_test.iommufd_compat_type1_anonymous.dma_map_unmap"),
            "iommufd_compat_type1"
        );
        assert_eq!(
            mode_of(
                "vfio_dma_mapping_test.iommufd_compat_type1v2_anonymous_hugetlb_2mb.dma_map_unmap"
            ),
            "iommufd_compat_type1v2"
        );
        assert_eq!(mode_of("vfio_pci_driver_test.iommufd.send_msi"), "iommufd");
        assert_eq!(
            mode_of("vfio_pci_irq_test.msix.enable_trigger_disable"),
            "-"
        );
        assert_eq!(mode_of("vfio_cdev.bind"), "-");
        assert_eq!(mode_of("x.iommufdx.y"), "-");
    }

    #[test]
    fn plan_covers_built_programs_only() {
        let built: BTreeSet<String> = ["passthru", "vfio_pci_sriov_uapi_test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (entries, missing) = matrix(&built, Boot::Normal);
        let names: Vec<&str> = entries.iter().map(|e| e.program.as_str()).collect();
        assert_eq!(
            names,
            [
                SANITY,
                "passthru",
                "vfio_pci_sriov_uapi_test",
                "passthru",
                "passthru",
                "passthru"
            ]
        );
        assert_eq!(entries[2].args, [IGB.bdf]);
        assert_eq!(missing.len(), PROGRAMS.len() - 1);
        let (entries, _) = matrix(&built, Boot::Huge1G);
        let names: Vec<&str> = entries.iter().map(|e| e.program.as_str()).collect();
        assert_eq!(
            names,
            [SANITY, "passthru"],
            "only the sanity check and the 1G benchmark run in the 1G boot here"
        );
        let text = render(&entries, true);
        assert!(text.contains("bind|0000:00:03.0 0000:01:00.0 0000:02:00.0 0000:00:06.0|strict\n"));
        assert!(render(&entries, false).contains(" 0000:00:06.0\n"));
        assert!(text.contains("dev|igb|0000:02:00.0|8086:10c9\n"));
    }

    #[test]
    fn benchmarks_cover_modes_sizes_and_devices() {
        let normal = bench_entries(Boot::Normal);
        let line = |e: &Entry| e.args.join(" ");
        assert!(normal.iter().all(|e| is_bench(&e.program, &line(e))));
        let labels: Vec<&str> = normal.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["edu", "igb", "e1000e"]);
        // edu: 4k and 2m, no --mode (all five modes), open+setup included.
        let edu = line(&normal[0]);
        assert!(edu.contains("--size 4k --size 2m") && !edu.contains("--mode"));
        assert!(!edu.contains("-only"));
        assert!(edu.ends_with(EDU.bdf));
        for (e, d) in normal[1..].iter().zip([IGB, E1000E]) {
            assert!(line(e).contains("--open-only") && line(e).ends_with(d.bdf));
        }
        let huge = bench_entries(Boot::Huge1G);
        assert_eq!(huge.len(), 1);
        assert!(line(&huge[0]).contains("--map-only --size 1g"));
        // Arguments reach the guest through a space-separated plan field.
        for e in normal.iter().chain(&huge) {
            assert!(e.args.iter().all(|a| !a.contains(' ') && !a.contains('|')));
            assert_eq!(e.timeout_s, BENCH_TIMEOUT_S);
            let text = render(std::slice::from_ref(e), true);
            assert!(text.contains(&format!(
                "run|passthru|{}|{BENCH_TIMEOUT_S}||bench map ",
                e.label
            )));
        }
        assert!(!is_bench("passthru", "list"));
        assert!(!is_bench("vfio_pci_device_test", "bench"));
    }

    #[test]
    fn one_gb_variants_split_between_boots() {
        let built: BTreeSet<String> = ["vfio_dma_mapping_test".to_string()].into();
        let (normal, _) = matrix(&built, Boot::Normal);
        let (huge, _) = matrix(&built, Boot::Huge1G);
        let n = normal.iter().find(|e| e.program != SANITY).unwrap();
        let h = huge.iter().find(|e| e.program != SANITY).unwrap();
        assert_eq!(n.args.iter().filter(|a| *a == "-V").count(), 5);
        assert_eq!(h.args.iter().filter(|a| *a == "-v").count(), 5);
        assert_eq!(h.args.last().map(String::as_str), Some(EDU.bdf));
    }
}
