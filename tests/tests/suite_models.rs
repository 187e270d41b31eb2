//! The upstream driver test suite (`vfio_pci_driver_test`'s seven cases) on the dsa, ioat and
//! edu models, in immediate and threaded execution modes, run through the harness exactly as
//! `passthru test` runs it. Each `#[test]` runs one KTAP-named case and checks the harness
//! reported it `ok`.

mod common;

use passthru::harness::{DeviceSource, KSFT_PASS, KSFT_SKIP};
use passthru::suite::models::suite;

/// Run the harness with `args`; returns (exit code, KTAP output, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    suite().run_captured(args, &DeviceSource::default())
}

fn run_case(name: &str) {
    let (code, out, err) = run(&["-r", name]);
    assert!(
        out.contains(&format!("ok 1 {name}\n")) && !out.contains("not ok"),
        "{name} did not pass:\n{out}\n{err}"
    );
    assert_eq!(code, KSFT_PASS, "{out}\n{err}");
}

common::driver_cases!(run_case);

/// The listing has exactly 3 models × 3 variants (immediate, threaded, irq) × 7 cases, with
/// stable names, in order.
#[test]
fn listing_names_are_stable() {
    let names = suite().names();
    assert_eq!(names.len(), 63);
    assert_eq!(names[0], "dsa.init_remove");
    assert_eq!(names[7], "dsa.threaded.init_remove");
    assert_eq!(names[14], "dsa.irq.init_remove");
    assert_eq!(names[21], "ioat.init_remove");
    assert_eq!(names[62], "edu.irq.memcpy_storm");
    let (code, out, _) = run(&["-l"]);
    assert_eq!(code, KSFT_SKIP, "-l exits 4, as upstream's harness");
    for n in &names {
        assert!(out.contains(n.as_str()), "{n} missing from -l:\n{out}");
    }
}

/// Filters select (harness semantics), `--seed` is printed, the exit code is the harness's.
#[test]
fn filters_select_and_seed_is_printed() {
    let (code, out, err) = run(&[
        "-r",
        "dsa.threaded.send_msi",
        "-r",
        "edu.send_msi",
        "--seed",
        "7",
    ]);
    assert_eq!(code, KSFT_PASS, "{out}\n{err}");
    assert!(out.contains("1..2"), "{out}");
    assert!(out.contains("ok 1 dsa.threaded.send_msi"), "{out}");
    assert!(out.contains("ok 2 edu.send_msi"), "{out}");
    assert!(out.contains("seed: 7"), "{out}");
    let (code, out, _) = run(&["-f", "ioat", "-l"]);
    assert_eq!(code, KSFT_SKIP);
    assert_eq!(
        out.lines().filter(|l| l.contains("ioat.")).count(),
        21,
        "{out}"
    );
}
