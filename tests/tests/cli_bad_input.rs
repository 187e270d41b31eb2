//! Bad input as users meet it, through the built binaries: one line on stderr, exit 1, never a
//! panic; the programs' harness options behave as upstream's kselftest harness.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

fn run(bin: &str, args: &[&OsStr], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("VFIO_SELFTESTS_BDF")
        .env_remove("VFIO_SELFTESTS_BDFS")
        .env_remove("PASSTHRU_STORM_BYTES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn os(args: &[&'static str]) -> Vec<&'static OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

fn one_line_exit_1(o: &Output, starts: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(starts), "want {starts:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const PASSTHRU: &str = env!("CARGO_BIN_EXE_passthru");
const DEVICE_TEST: &str = env!("CARGO_BIN_EXE_vfio_pci_device_test");
const DRIVER_TEST: &str = env!("CARGO_BIN_EXE_vfio_pci_driver_test");

#[test]
fn non_utf8_argument_is_one_line_not_a_panic() {
    let bad = OsStr::from_bytes(b"0000:00:04.\xff");
    let o = run(PASSTHRU, &[OsStr::new("test"), bad], &[]);
    one_line_exit_1(
        &o,
        "passthru: argument \"0000:00:04.\u{fffd}\" is not valid UTF-8",
    );
    let o = run(DEVICE_TEST, &[bad], &[]);
    one_line_exit_1(&o, "vfio_pci_device_test: argument ");
    let o = run(DRIVER_TEST, &[bad], &[]);
    one_line_exit_1(&o, "vfio_pci_driver_test: argument ");
}

#[test]
fn bad_storm_bytes_is_rejected() {
    for value in ["lots", "1.5G", "-5", "0", ""] {
        let o = run(
            PASSTHRU,
            &os(&["test", "-l"]),
            &[("PASSTHRU_STORM_BYTES", value)],
        );
        one_line_exit_1(&o, "passthru: test: $PASSTHRU_STORM_BYTES=");
        let o = run(DRIVER_TEST, &[], &[("PASSTHRU_STORM_BYTES", value)]);
        one_line_exit_1(&o, "vfio_pci_driver_test: $PASSTHRU_STORM_BYTES=");
    }
    // Valid values still work (listing runs nothing).
    let o = run(
        PASSTHRU,
        &os(&["test", "-l"]),
        &[("PASSTHRU_STORM_BYTES", "64M")],
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn bench_map_bad_argument_is_one_line() {
    let o = run(PASSTHRU, &os(&["bench", "map", "BAD"]), &[]);
    one_line_exit_1(&o, "passthru bench map: unknown argument \"BAD\"");
    let o = run(PASSTHRU, &os(&["bench", "models", "--bogus"]), &[]);
    one_line_exit_1(&o, "passthru bench models: unknown argument \"--bogus\"");
}

#[test]
fn programs_follow_upstream_harness_options() {
    // -l lists (names only, on stdout) and exits 4; -h prints usage on stderr and exits 4.
    let o = run(DEVICE_TEST, &os(&["-l"]), &[]);
    assert_eq!(o.status.code(), Some(4));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("vfio_pci_device_test."),
        "{out}"
    );
    assert!(!out.contains('#'), "{out}");
    let o = run(DEVICE_TEST, &os(&["-h"]), &[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("Usage: vfio_pci_device_test [-h|-l|-d]")
    );
    // -d is accepted (then: no device → usage, exit 4, as without -d).
    let o = run(DEVICE_TEST, &os(&["-d"]), &[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("VFIO_SELFTESTS_BDF"));
    let o = run(PASSTHRU, &os(&["--version"]), &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        concat!("passthru ", env!("CARGO_PKG_VERSION"), "\n")
    );
}
