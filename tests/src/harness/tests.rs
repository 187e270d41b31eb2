//! Tests of the harness as a whole: names, filtering, KTAP text, exit codes, timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::{check, check_eq, check_err, check_ok, fail, skip};

fn run(suite: &Suite, args: &[&str], source: &DeviceSource) -> (i32, String, String) {
    suite.run_captured(args, source)
}

fn with_device() -> DeviceSource {
    DeviceSource {
        env_bdf: Some("0000:00:04.0".into()),
        ..Default::default()
    }
}

struct Mode {
    expect: u32,
}

fn mixed_suite(teardowns: Arc<AtomicUsize>) -> Suite {
    let td = teardowns.clone();
    let modes = Fixture::with_setup("fx", |_ctx, m: &Mode| Ok(m.expect))
        .variant("one", Mode { expect: 1 })
        .variant("two", Mode { expect: 2 })
        .teardown(move |_ctx, _m, _s| {
            td.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .test("passes", |ctx, m, s| {
            check_eq!(*s, m.expect);
            check!(ctx.bdf()?.to_string() == "0000:00:04.0");
            Ok(())
        })
        .test("fails_on_two", |_ctx, m, _s| {
            check_eq!(m.expect, 1, "variant {}", m.expect);
            Ok(())
        });
    let plain = Fixture::stateless("vfio_pci_device_test")
        .test("reset", |_ctx, _, _| skip!("Device does not support reset"))
        .test("panics", |_ctx, _, _| panic!("boom"));
    Suite::new("prog").fixture(modes).fixture(plain)
}

#[test]
fn names_follow_upstream_ktap_naming() {
    let suite = mixed_suite(Arc::default());
    assert_eq!(
        suite.names(),
        [
            "fx.one.passes",
            "fx.one.fails_on_two",
            "fx.two.passes",
            "fx.two.fails_on_two",
            "vfio_pci_device_test.reset",
            "vfio_pci_device_test.panics",
        ]
    );
}

#[test]
fn full_run_prints_ktap_and_fails() {
    let teardowns = Arc::new(AtomicUsize::new(0));
    let suite = mixed_suite(teardowns.clone());
    let (code, out, _err) = run(&suite, &["--seed", "42"], &with_device());
    assert_eq!(code, KSFT_FAIL, "{out}");
    let expected_start = "TAP version 13\n1..6\n# Starting 6 tests from 3 test cases.\n# seed: 42\n# devices: 0000:00:04.0\n#  RUN           fx.one.passes ...\n#            OK  fx.one.passes\nok 1 fx.one.passes\n";
    assert!(out.starts_with(expected_start), "{out}");
    assert!(out.contains("ok 2 fx.one.fails_on_two\n"));
    assert!(out.contains("not ok 4 fx.two.fails_on_two\n"), "{out}");
    assert!(
        out.contains("tests.rs:") && out.contains("Expected m.expect (2) == 1 (1): variant 2"),
        "{out}"
    );
    assert!(out.contains("#      SKIP      Device does not support reset\n"));
    assert!(out.contains("ok 5 vfio_pci_device_test.reset # SKIP Device does not support reset\n"));
    assert!(out.contains("Test terminated by panic: boom"), "{out}");
    assert!(out.contains("not ok 6 vfio_pci_device_test.panics\n"));
    assert!(
        out.ends_with(
            "# FAILED: 4 / 6 tests passed.\n# Totals: pass:3 fail:2 xfail:0 xpass:0 skip:1 error:0\n"
        ),
        "{out}"
    );
    // Teardown ran for every fx test, including the failing one.
    assert_eq!(teardowns.load(Ordering::SeqCst), 4);
}

#[test]
fn filters_select_tests_and_exit_codes_follow_results() {
    let suite = mixed_suite(Arc::default());
    // Includes are OR-ed: variant "one" (both tests) plus every "passes" test.
    let (code, out, _) = run(&suite, &["-v", "one", "-t", "passes"], &with_device());
    assert_eq!(code, KSFT_PASS, "{out}");
    assert!(out.contains("1..3\n"), "{out}");
    assert!(out.contains("ok 3 fx.two.passes\n"), "{out}");
    let (code, out, _) = run(&suite, &["-r", "fx.two.passes"], &with_device());
    assert_eq!(code, KSFT_PASS);
    assert!(out.contains("1..1\n") && out.contains("ok 1 fx.two.passes\n"));
    let (code, out, _) = run(
        &suite,
        &["-r", "vfio_pci_device_test.reset"],
        &with_device(),
    );
    assert_eq!(code, KSFT_SKIP, "all skipped → 4: {out}");
    let (code, _, _) = run(&suite, &["-T", "fails_on_two", "-f", "fx"], &with_device());
    assert_eq!(code, KSFT_PASS);
    // A filter that selects nothing is bad input, named in one line (exit 1).
    let (code, out, err) = run(&suite, &["-r", "no.such.test"], &with_device());
    assert_eq!(code, KSFT_FAIL, "{out}");
    assert_eq!(
        err,
        "prog: filter -r no.such.test matches no test (list them with -l)\n"
    );
    let (code, _, err) = run(&suite, &["-v", "one", "-f", "nope"], &with_device());
    assert_eq!(code, KSFT_PASS, "-v one still selects: {err}");
    let (code, _, err) = run(
        &suite,
        &["-r", "fx.one.passes", "-T", "passes"],
        &with_device(),
    );
    assert_eq!(code, KSFT_PASS, "first match wins: {err}");
    let (code, _, err) = run(&suite, &["-T", "passes", "-t", "passes"], &with_device());
    assert_eq!(code, KSFT_FAIL);
    assert_eq!(
        err,
        "prog: filters -T passes -t passes select no test (list them with -l)\n"
    );
    // -d (debug, as upstream's harness) is accepted and prints each test's duration.
    let (code, out, _) = run(&suite, &["-d", "-r", "fx.one.passes"], &with_device());
    assert_eq!(code, KSFT_PASS);
    assert!(out.contains("# debug: fx.one.passes took "), "{out}");
}

#[test]
fn no_device_prints_usage_and_exits_4_bad_input_exits_1() {
    let suite = mixed_suite(Arc::default());
    let (code, out, err) = run(&suite, &[], &DeviceSource::default());
    assert_eq!(code, KSFT_SKIP);
    assert!(out.is_empty());
    assert!(err.contains("VFIO_SELFTESTS_BDF"), "{err}");
    let (code, _, err) = run(&suite, &["-x"], &with_device());
    assert_eq!(code, KSFT_FAIL);
    assert_eq!(err, "prog: unknown option -x\n");
    let bad_env = DeviceSource {
        env_bdf: Some("garbage".into()),
        ..Default::default()
    };
    let (code, _, err) = run(&suite, &[], &bad_env);
    assert_eq!(code, KSFT_FAIL);
    assert!(
        err.starts_with("prog: $VFIO_SELFTESTS_BDF: invalid BDF"),
        "{err}"
    );
    // Trailing BDFs override the environment.
    let suite2 = Suite::new("p").fixture(Fixture::stateless("g").test("t", |ctx, _, _| {
        check_eq!(ctx.bdf()?.to_string(), "0000:00:05.0");
        Ok(())
    }));
    let (code, out, _) = run(&suite2, &["0000:00:05.0"], &with_device());
    assert_eq!(code, KSFT_PASS, "{out}");
}

#[test]
fn list_needs_no_device() {
    let suite = mixed_suite(Arc::default());
    let (code, out, _) = run(&suite, &["-l"], &DeviceSource::default());
    assert_eq!(code, KSFT_SKIP, "-l exits 4 as upstream");
    assert!(!out.contains('#'), "names only: {out}");
    assert_eq!(out.lines().count(), 6);
    assert_eq!(out.lines().next(), Some("fx.one.passes"));
    let (code, out, err) = run(&suite, &["-h"], &DeviceSource::default());
    assert_eq!(code, KSFT_SKIP, "-h exits 4 as upstream");
    assert!(
        out.is_empty() && err.starts_with("Usage: prog [-h|-l|-d]"),
        "{err}"
    );
}

#[test]
fn timeout_reports_not_ok_and_continues() {
    let suite = Suite::new("p").fixture(
        Fixture::stateless("g")
            .test_with_timeout("slow", Duration::from_secs(100), |_, _, _| {
                std::thread::sleep(Duration::from_secs(3));
                Ok(())
            })
            .test("fast", |_, _, _| Ok(())),
    );
    let start = std::time::Instant::now();
    let (code, out, _) = run(&suite, &["--timeout", "1"], &with_device());
    assert!(start.elapsed() < Duration::from_millis(2500));
    assert_eq!(code, KSFT_FAIL);
    assert!(
        out.contains("# g.slow: Test terminated by timeout (1 s)\n"),
        "{out}"
    );
    assert!(out.contains("not ok 1 g.slow\n") && out.contains("ok 2 g.fast\n"));
}

#[test]
fn seed_is_reproducible_per_test() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let suite = Suite::new("p").fixture(Fixture::stateless("g").test("t", move |ctx, _, _| {
        s2.lock().unwrap().push(ctx.rng().next_u64());
        Ok(())
    }));
    run(&suite, &["--seed", "7"], &with_device());
    run(&suite, &["--seed", "7"], &with_device());
    let (_, out, _) = run(&suite, &[], &with_device());
    let v = seen.lock().unwrap();
    assert_eq!(v[0], v[1]);
    assert!(out.contains("# seed: "), "random seed is printed too");
}

#[test]
fn macros_produce_fail_with_location_and_values() {
    fn body() -> TestResult {
        let x: Result<u32, std::io::Error> = Ok(3);
        let v = check_ok!(x);
        check_eq!(v, 3);
        let e: Result<u32, &str> = Err("nope");
        let _ = check_err!(e);
        check_eq!(v + 1, 0x10, "extra {}", 1);
        Ok(())
    }
    let err = body().unwrap_err();
    let TestError::Fail(msg) = err else {
        panic!("expected Fail")
    };
    assert!(msg.contains("tests.rs:"), "{msg}");
    assert!(
        msg.ends_with("Expected v + 1 (4) == 0x10 (16 (hex 10)): extra 1"),
        "{msg}"
    );

    fn failing_ok() -> TestResult {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("disk on fire"));
        check_ok!(r, "while opening {}", "x");
        Ok(())
    }
    let TestError::Fail(msg) = failing_ok().unwrap_err() else {
        panic!()
    };
    assert!(
        msg.contains("r failed: disk on fire: while opening x"),
        "{msg}"
    );

    fn unexpected_ok() -> TestResult {
        let r: Result<u8, ()> = Ok(5);
        check_err!(r);
        Ok(())
    }
    let TestError::Fail(msg) = unexpected_ok().unwrap_err() else {
        panic!()
    };
    assert!(msg.contains("r succeeded (5) but must fail"), "{msg}");

    fn f() -> TestResult {
        fail!("bad {}", 1)
    }
    assert!(matches!(f(), Err(TestError::Fail(m)) if m.ends_with(": bad 1")));
    fn s() -> TestResult {
        skip!("no {}", "hugepages")
    }
    assert_eq!(s(), Err(TestError::Skip("no hugepages".into())));
    fn q() -> TestResult {
        std::fs::read("/nonexistent/passthru")?;
        Ok(())
    }
    assert!(matches!(q(), Err(TestError::Fail(m)) if m.contains("No such file")));
}

#[test]
fn setup_skip_and_teardown_failure() {
    let suite = Suite::new("p")
        .fixture(
            Fixture::new("needs", |_| -> TestResult<u8> { skip!("no hugepages") })
                .test("a", |_, _, _| Ok(())),
        )
        .fixture(
            Fixture::new("td", |_| Ok(1u8))
                .teardown(|_, _, _| fail!("leak"))
                .test("b", |_, _, _| Ok(())),
        );
    let (code, out, _) = run(&suite, &[], &with_device());
    assert_eq!(code, KSFT_FAIL);
    assert!(out.contains("ok 1 needs.a # SKIP no hugepages\n"), "{out}");
    assert!(
        out.contains("not ok 2 td.b\n") && out.contains(": leak"),
        "{out}"
    );
}

#[test]
fn selector_on_a_missing_device_exits_1_in_one_line() {
    let suite = Suite::new("p")
        .devices(DeviceSelector::matching("SR-IOV PF", |f| {
            if f.is_sriov_pf() {
                Ok(())
            } else {
                Err("no SR-IOV".into())
            }
        }))
        .fixture(Fixture::stateless("g").test("t", |_, _, _| Ok(())));
    let src = DeviceSource {
        env_bdf: Some("0000:00:04.0".into()),
        sysfs: passthru_linux::sysfs::Sysfs::new("/nonexistent-sysfs"),
        ..Default::default()
    };
    let (code, out, err) = run(&suite, &[], &src);
    assert_eq!(code, KSFT_FAIL, "a device that does not exist is bad input");
    assert!(out.is_empty());
    assert_eq!(
        err,
        "p: 0000:00:04.0: no such PCI function (/nonexistent-sysfs/bus/pci/devices/0000:00:04.0 does not exist)\n"
    );
}

#[test]
fn before_all_skip_or_fail_stops_the_program_and_after_all_runs() {
    let after = Arc::new(AtomicUsize::new(0));
    let a2 = after.clone();
    let ok = Suite::new("drv")
        .before_all(|bdfs| {
            check_eq!(bdfs.len(), 1);
            Ok(Some(format!("{}: Driver found: test", bdfs[0])))
        })
        .after_all(move |_| {
            a2.fetch_add(1, Ordering::SeqCst);
        })
        .fixture(Fixture::stateless("g").test("t", |_, _, _| Ok(())));
    let (code, out, _) = run(&ok, &[], &with_device());
    assert_eq!(code, KSFT_PASS);
    assert_eq!(after.load(Ordering::SeqCst), 1);
    // The one-time note is a diagnostic inside the KTAP document, after the header.
    assert!(out.starts_with("TAP version 13\n1..1\n"), "{out}");
    assert!(
        out.contains("\n# 0000:00:04.0: Driver found: test\n"),
        "{out}"
    );
    // -l does not run the hooks.
    run(&ok, &["-l"], &with_device());
    assert_eq!(after.load(Ordering::SeqCst), 1);

    let skip = Suite::new("drv")
        .before_all(|bdfs| skip!("No driver found for device {}", bdfs[0]))
        .fixture(Fixture::stateless("g").test("t", |_, _, _| Ok(())));
    let (code, out, err) = run(&skip, &[], &with_device());
    assert_eq!(code, KSFT_SKIP);
    assert!(out.is_empty());
    assert_eq!(err, "drv: No driver found for device 0000:00:04.0\n");

    let failing = Suite::new("drv")
        .before_all(|_| fail!("sriov_numvfs write failed"))
        .fixture(Fixture::stateless("g").test("t", |_, _, _| Ok(())));
    let (code, _, err) = run(&failing, &[], &with_device());
    assert_eq!(code, KSFT_FAIL);
    assert!(err.contains("sriov_numvfs write failed"), "{err}");
}

/// Upstream's KTAP names for three programs (upstream-test-names.tsv, Linux 7.3.4), rebuilt
/// from fixtures shaped like upstream's: the harness must produce exactly these strings.
#[test]
fn reproduces_upstream_names_for_fixture_shapes() {
    const MODES: [&str; 5] = [
        "vfio_type1_iommu",
        "vfio_type1v2_iommu",
        "iommufd_compat_type1",
        "iommufd_compat_type1v2",
        "iommufd",
    ];
    let mut mapping = Fixture::with_setup("vfio_dma_mapping_test", |_, _: &()| Ok(()));
    for mode in MODES {
        for source in [
            "anonymous",
            "anonymous_hugetlb_2mb",
            "anonymous_hugetlb_1gb",
        ] {
            mapping = mapping.variant(format!("{mode}_{source}"), ());
        }
    }
    let mapping = mapping.test("dma_map_unmap", |_, _, _| Ok(()));
    let limit = Fixture::with_setup("vfio_dma_map_limit_test", |_, _: &()| Ok(()))
        .variants(MODES.map(|m| (m, ())))
        .test("unmap_range", |_, _, _| Ok(()))
        .test("unmap_all", |_, _, _| Ok(()))
        .test("overflow", |_, _, _| Ok(()));
    let mut names = Suite::new("vfio_dma_mapping_test")
        .fixture(mapping)
        .fixture(limit)
        .names();
    names.sort();
    let upstream_dma: Vec<String> = {
        let mut v = Vec::new();
        for mode in MODES {
            for t in ["overflow", "unmap_all", "unmap_range"] {
                v.push(format!("vfio_dma_map_limit_test.{mode}.{t}"));
            }
            for s in [
                "anonymous",
                "anonymous_hugetlb_1gb",
                "anonymous_hugetlb_2mb",
            ] {
                v.push(format!("vfio_dma_mapping_test.{mode}_{s}.dma_map_unmap"));
            }
        }
        v.sort();
        v
    };
    assert_eq!(names.len(), 30);
    assert_eq!(names, upstream_dma);
    assert!(names.contains(
        &"vfio_dma_mapping_test.iommufd_compat_type1v2_anonymous_hugetlb_1gb.dma_map_unmap"
            .to_string()
    ));

    let cdev = Fixture::stateless("vfio_cdev")
        .test("bind", |_, _, _| Ok(()))
        .test("get_info_without_bind_fails", |_, _, _| Ok(()))
        .test("bind_bad_iommufd_fails", |_, _, _| Ok(()))
        .test("repeated_bind_fails", |_, _, _| Ok(()))
        .test("attach_detatch_pt", |_, _, _| Ok(()))
        .test("attach_invalid_pt_fails", |_, _, _| Ok(()));
    let names = Suite::new("vfio_iommufd_setup_test").fixture(cdev).names();
    assert_eq!(names[0], "vfio_cdev.bind");
    assert_eq!(names[4], "vfio_cdev.attach_detatch_pt");

    let device = Fixture::stateless("vfio_pci_device_test")
        .test("config_space_read_write", |_, _, _| Ok(()))
        .test("validate_bars", |_, _, _| Ok(()))
        .test("reset", |_, _, _| Ok(()));
    let irq = Fixture::with_setup("vfio_pci_irq_test", |_, _: &u32| Ok(()))
        .variant("msi", 1)
        .variant("msix", 2)
        .test("enable_trigger_disable", |_, _, _| Ok(()));
    let names = Suite::new("vfio_pci_device_test")
        .fixture(device)
        .fixture(irq)
        .names();
    assert_eq!(
        names,
        [
            "vfio_pci_device_test.config_space_read_write",
            "vfio_pci_device_test.validate_bars",
            "vfio_pci_device_test.reset",
            "vfio_pci_irq_test.msi.enable_trigger_disable",
            "vfio_pci_irq_test.msix.enable_trigger_disable",
        ]
    );
}
