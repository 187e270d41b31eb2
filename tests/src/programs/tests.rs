//! Device-free checks of every program: the `-l` names against upstream's list (a copy of
//! reference/upstream-test-names.tsv in tests/data), the no-device exit code, usage.

use std::collections::BTreeSet;

use super::PROGRAMS;
use crate::harness::{DeviceSource, KSFT_FAIL, KSFT_SKIP};
use passthru_linux::sysfs::Sysfs;

const UPSTREAM_TSV: &str = include_str!("../../data/upstream-test-names.tsv");

fn upstream_names(program: &str) -> BTreeSet<String> {
    UPSTREAM_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .filter(|(p, _)| *p == program)
        .map(|(_, n)| n.trim().to_string())
        .collect()
}

fn no_env() -> DeviceSource {
    DeviceSource {
        env_bdf: None,
        env_pool: None,
        sysfs: Sysfs::new("/nonexistent-sysfs"),
    }
}

fn run(p: &super::Program, args: &[&str]) -> (i32, String, String) {
    (p.suite)().run_captured(args, &no_env())
}

#[test]
fn upstream_list_has_six_programs_here_and_136_names() {
    let total: usize = PROGRAMS.iter().map(|p| upstream_names(p.name).len()).sum();
    // 141 upstream cases, 35 of them in vfio_pci_driver_test (not in this module).
    assert_eq!(total, 141 - upstream_names("vfio_pci_driver_test").len());
    assert_eq!(upstream_names("vfio_pci_driver_test").len(), 35);
    for p in &PROGRAMS {
        assert!(
            !upstream_names(p.name).is_empty(),
            "{} not in the tsv",
            p.name
        );
    }
}

#[test]
fn dash_l_lists_exactly_upstream_names_plus_declared_extras() {
    for p in &PROGRAMS {
        let (code, out, _) = run(p, &["-l"]);
        assert_eq!(code, KSFT_SKIP, "{}: -l exits 4 as upstream", p.name);
        let listed: Vec<String> = out.lines().map(str::to_string).collect();
        let set: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(set.len(), listed.len(), "{}: duplicate names", p.name);
        let upstream = upstream_names(p.name);
        let extras: BTreeSet<String> = (p.extra_names)().into_iter().collect();
        assert!(
            extras.is_disjoint(&upstream),
            "{}: an extra name shadows an upstream one",
            p.name
        );
        let missing: Vec<_> = upstream.difference(&set).collect();
        assert!(
            missing.is_empty(),
            "{}: missing upstream names {missing:?}",
            p.name
        );
        let unexpected: Vec<_> = set
            .difference(&upstream)
            .filter(|n| !extras.contains(*n))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: undeclared names {unexpected:?}",
            p.name
        );
        let absent: Vec<_> = extras.difference(&set).collect();
        assert!(
            absent.is_empty(),
            "{}: declared extras not listed {absent:?}",
            p.name
        );
    }
}

#[test]
fn no_device_prints_usage_and_exits_4() {
    for p in &PROGRAMS {
        let (code, out, err) = run(p, &[]);
        assert_eq!(code, KSFT_SKIP, "{}", p.name);
        assert!(
            out.is_empty(),
            "{}: printed KTAP without a device: {out}",
            p.name
        );
        assert!(
            err.contains("VFIO_SELFTESTS_BDF"),
            "{}: usage: {err}",
            p.name
        );
        assert!(
            err.contains(p.name),
            "{}: usage names the program: {err}",
            p.name
        );
    }
}

#[test]
fn variant_filter_selects_upstream_variants() {
    // -l ignores filters (as kselftest), so check the filter through the suite names instead:
    // every mode name is a variant of the mapping-limit fixture.
    let names = (super::vfio_dma_mapping_test::suite)().names();
    for mode in passthru_linux::IommuMode::ALL {
        let n = format!("vfio_dma_map_limit_test.{}.overflow", mode.name());
        assert!(names.contains(&n), "{n}");
    }
}

#[test]
fn sriov_program_skips_without_an_sriov_pf() {
    let p = super::program("vfio_pci_sriov_uapi_test").unwrap();
    let root = fake_sysfs("no-pf", "0000:00:04.0", Some("vfio-pci"), None);
    let (code, out, err) = run_with_sysfs(p, &root, &["0000:00:04.0"]);
    let _ = std::fs::remove_dir_all(root);
    assert_eq!(code, KSFT_SKIP);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("SR-IOV physical function"), "{err}");
}

#[test]
fn nonexistent_device_is_bad_input_said_once() {
    let p = super::program("vfio_pci_device_test").unwrap();
    let root = fake_sysfs("missing", "0000:00:04.0", Some("vfio-pci"), None);
    let (code, out, err) = run_with_sysfs(p, &root, &["0000:00:1f.7"]);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(code, KSFT_FAIL, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err.matches("0000:00:1f.7").count(),
        2,
        "BDF and its sysfs path: {err}"
    );
    assert!(
        err.starts_with("vfio_pci_device_test: 0000:00:1f.7: no such PCI function ("),
        "{err}"
    );
}

/// A fake sysfs with one PCI function, `driver` linked to `driver` (or unbound).
fn fake_sysfs(
    tag: &str,
    bdf: &str,
    driver: Option<&str>,
    totalvfs: Option<u32>,
) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("passthru-programs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dev = root.join("bus/pci/devices").join(bdf);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("vendor"), "0x8086\n").unwrap();
    std::fs::write(dev.join("device"), "0x10c9\n").unwrap();
    std::fs::write(dev.join("class"), "0x020000\n").unwrap();
    if let Some(d) = driver {
        let ddir = root.join("bus/pci/drivers").join(d);
        std::fs::create_dir_all(&ddir).unwrap();
        std::os::unix::fs::symlink(&ddir, dev.join("driver")).unwrap();
    }
    if let Some(n) = totalvfs {
        std::fs::write(dev.join("sriov_totalvfs"), format!("{n}\n")).unwrap();
        std::fs::write(dev.join("sriov_numvfs"), "0\n").unwrap();
    }
    root
}

fn run_with_sysfs(
    p: &super::Program,
    root: &std::path::Path,
    args: &[&str],
) -> (i32, String, String) {
    let src = DeviceSource {
        env_bdf: None,
        env_pool: None,
        sysfs: Sysfs::new(root),
    };
    (p.suite)().run_captured(args, &src)
}

#[test]
fn device_not_bound_to_vfio_pci_skips_naming_the_device_and_the_fix() {
    let bdf = "0000:00:04.0";
    let root = fake_sysfs("unbound", bdf, Some("igb"), Some(7));
    for p in &PROGRAMS {
        let (code, out, err) = run_with_sysfs(p, &root, &[bdf]);
        assert_eq!(code, KSFT_SKIP, "{}: {err}", p.name);
        assert!(out.is_empty(), "{}: {out}", p.name);
        assert!(
            err.contains(bdf) && err.contains("igb"),
            "{}: {err}",
            p.name
        );
        assert!(
            err.contains("passthru setup"),
            "{}: no fix named: {err}",
            p.name
        );
        assert_eq!(err.lines().count(), 1, "{}: one line: {err}", p.name);
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn sriov_program_takes_the_pf_from_the_pool() {
    let vf_less = "0000:00:04.0";
    let root = fake_sysfs("pool", vf_less, Some("vfio-pci"), None);
    // A second function, an SR-IOV PF bound to vfio-pci.
    let pf = "0000:00:05.0";
    let pf_root = fake_sysfs("pool-pf", pf, Some("vfio-pci"), Some(7));
    std::fs::rename(
        pf_root.join("bus/pci/devices").join(pf),
        root.join("bus/pci/devices").join(pf),
    )
    .unwrap();
    let sel = super::vfio_pci_sriov_uapi_test::suite();
    // -l does not select devices; a run of one test shows the selection (the test itself
    // cannot open VFIO on a fake sysfs; its verdict is not what this checks).
    let first = sel.names()[0].clone();
    let src = DeviceSource {
        env_bdf: None,
        env_pool: Some(format!("{vf_less},{pf}")),
        sysfs: Sysfs::new(&root),
    };
    let (_, text, _) = sel.run_captured(&["-r", &first], &src);
    assert!(text.contains("1..1\n"), "{text}");
    assert!(text.contains(&format!("# devices: {pf}")), "{text}");
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(pf_root);
}

#[test]
fn irq_test_device_suite_runs_device_msi_and_hlt_in_every_iommu_mode() {
    let names = super::irq_test_device_suite().names();
    for mode in passthru_linux::IommuMode::ALL {
        for test in ["device_msi", "device_msi_hlt"] {
            let want = format!("irq_test.{}.{test}", mode.name());
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
    assert_eq!(names.len(), 2 * passthru_linux::IommuMode::ALL.len());
}
