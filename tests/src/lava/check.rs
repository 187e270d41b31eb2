//! Judging a LAVA log: every recorded case becomes a rig-style verdict, and the ways a LAVA run
//! can lose results without failing (`lava-run` exits 0 and the job passes when cases fail or
//! never run) become failing verdicts:
//!
//! * no `job` verdict, or a failed one (the log is truncated, or the dispatcher gave up);
//! * a test definition run marked failed (its script stopped before the end: a test-action
//!   timeout after a silent gap, a guest that powered off or panicked);
//! * a test set the runner announced that recorded no case, or fewer cases than the KTAP plan
//!   the program printed (a missing case is a failure);
//! * a runner that never printed its end line;
//! * with `expected` (the job's own runs), a run the log never announced.
//!
//! [`compare`] then matches the cases by name against the rig's own serial logs of the same
//! kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use super::cases::{case_name, is_synthetic};
use super::log::{LavaLog, LavaResult, SetKey};
use crate::rig::plan::mode_of;
use crate::rig::report::{judge_boot, HostOutcome, Verdict};
use crate::rig::serial::{parse_boot_log, Outcome};

/// Program column of the checks' own verdicts.
pub const CHECK: &str = "(lava)";

/// The boot label of a suite: `0_passthru-normal` → `normal`; other suites keep their name
/// without the index (`0_smoke` → `smoke`).
pub fn boot_of(suite: &str) -> String {
    let rest = match suite.split_once('_') {
        Some((idx, rest)) if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => suite,
    };
    rest.strip_prefix("passthru-").unwrap_or(rest).to_string()
}

/// Program and device label of a test set `<program>-<label>`.
pub fn split_set(set: &str) -> (String, String) {
    match set.split_once('-') {
        Some((p, l)) => (p.to_string(), l.to_string()),
        None => (set.to_string(), "-".to_string()),
    }
}

fn check(boot: &str, program: &str, device: &str, name: &str, reason: String) -> Verdict {
    Verdict {
        kernel: boot.to_string(),
        program: program.to_string(),
        mode: "-".into(),
        device: device.to_string(),
        name: name.to_string(),
        outcome: Outcome::Fail,
        reason: Some(reason),
    }
}

/// Turns a LAVA log into verdicts (cases first, then the checks above). `expected`: the
/// (suite, set) pairs the job runs, when known.
pub fn judge(log: &LavaLog, expected: Option<&[SetKey]>) -> Vec<Verdict> {
    let mut out = Vec::new();
    let mut recorded: BTreeMap<SetKey, usize> = BTreeMap::new();
    for c in &log.cases {
        let boot = boot_of(&c.suite);
        let (program, device) = match &c.set {
            Some(s) => split_set(s),
            None => ("passthru".to_string(), "all".to_string()),
        };
        let console = c
            .set
            .as_ref()
            .and_then(|s| log.console.get(&(c.suite.clone(), s.clone())));
        let reason = console.and_then(|run| {
            if is_synthetic(&c.name) {
                // `# passthru lava cases: (missing results) fail: why`
                return run.text.lines().rev().find_map(|l| {
                    let rest = l.strip_prefix("# passthru lava cases: ")?;
                    let (name, tail) = rest.split_once(')')?;
                    (case_name(&format!("{name})")) == c.name)
                        .then(|| tail.split_once(": ").map(|(_, r)| r.to_string()))
                        .flatten()
                });
            }
            run.results
                .iter()
                .rev()
                .find(|r| case_name(&r.name) == c.name)
                .and_then(|r| r.reason.clone())
        });
        let (outcome, reason) = match c.result {
            LavaResult::Pass => (Outcome::Pass, reason),
            LavaResult::Skip => (Outcome::Skip, reason),
            LavaResult::Fail => (Outcome::Fail, reason),
            LavaResult::Unknown => (Outcome::Fail, Some("LAVA recorded `unknown`".into())),
        };
        if let Some(s) = &c.set {
            if !is_synthetic(&c.name) {
                *recorded.entry((c.suite.clone(), s.clone())).or_default() += 1;
            } else {
                recorded.entry((c.suite.clone(), s.clone())).or_default();
            }
        }
        out.push(Verdict {
            kernel: boot,
            program,
            mode: mode_of(&c.name).to_string(),
            device,
            name: c.name.clone(),
            outcome,
            reason,
        });
    }
    match log.job() {
        None => out.push(check(
            "-",
            CHECK,
            "-",
            "(job)",
            "no job verdict: the log ends before lava-run finished".into(),
        )),
        Some(j) if j.result != "pass" => out.push(check(
            "-",
            CHECK,
            "-",
            "(job)",
            format!(
                "job {}: {}",
                j.result,
                j.error.as_deref().unwrap_or("no error message")
            ),
        )),
        Some(_) => {}
    }
    let suites: BTreeSet<&str> = log
        .cases
        .iter()
        .map(|c| c.suite.as_str())
        .chain(log.started.iter().map(String::as_str))
        .collect();
    for a in &log.actions {
        if suites.contains(a.name.as_str()) && a.result != "pass" {
            out.push(check(
                &boot_of(&a.name),
                CHECK,
                "-",
                "(test run)",
                format!(
                    "the test definition run did not reach its end ({}){}",
                    a.result,
                    a.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    if log.has_console {
        for suite in &log.started {
            let announced = log.planned.iter().any(|(s, _)| s == suite);
            if announced && !log.done.contains(suite) {
                out.push(check(
                    &boot_of(suite),
                    CHECK,
                    "-",
                    "(runner)",
                    "`passthru lava cases` never printed its end line".into(),
                ));
            }
        }
        for key in &log.planned {
            let (program, device) = split_set(&key.1);
            let boot = boot_of(&key.0);
            let n = recorded.get(key).copied();
            let plan = log.console.get(key).and_then(|r| r.plan);
            match (n, plan) {
                (None, _) => out.push(check(
                    &boot,
                    &program,
                    &device,
                    "(not run)",
                    "announced by the runner, no case recorded".into(),
                )),
                (Some(n), Some(p)) if n < p => out.push(check(
                    &boot,
                    &program,
                    &device,
                    "(missing cases)",
                    format!("KTAP plan 1..{p}, LAVA recorded {n}"),
                )),
                _ => {}
            }
        }
    }
    if let Some(expected) = expected {
        // Suites are compared by boot label: LAVA numbers them per test action.
        let seen: BTreeSet<(String, &str)> = log
            .planned
            .iter()
            .chain(recorded.keys())
            .map(|(suite, set)| (boot_of(suite), set.as_str()))
            .collect();
        for key in expected {
            if !seen.contains(&(boot_of(&key.0), key.1.as_str())) {
                let (program, device) = split_set(&key.1);
                out.push(check(
                    &boot_of(&key.0),
                    &program,
                    &device,
                    "(not run)",
                    "in the job's runs, never announced on the console".into(),
                ));
            }
        }
    }
    out
}

/// Notes about what could not be checked (not failures).
pub fn notes(log: &LavaLog) -> Vec<String> {
    let mut n = Vec::new();
    if !log.has_console {
        n.push(
            "no console records (a results export): KTAP plans and unannounced runs not checked; \
             give the job log (`lavacli jobs logs --raw ID`) for the full check"
                .into(),
        );
    }
    if log.unreadable > 0 {
        n.push(format!("{} unreadable line(s) skipped", log.unreadable));
    }
    n
}

/// Key of a case for the comparison: boot, program, device, case name.
pub type CaseKey = (String, String, String, String);

/// The rig's verdicts of one kernel, from its serial logs `<dir>/<kernel>-<boot>.serial.log`:
/// test cases and per-program problems (benchmarks, `passthru list` and boot-level problems
/// are not LAVA cases). Returns `None` when no log of that kernel exists.
pub fn rig_cases(dir: &Path, kernel: &str) -> Option<BTreeMap<CaseKey, Outcome>> {
    let mut out = BTreeMap::new();
    let mut found = false;
    for boot in crate::rig::plan::Boot::ALL {
        let path = dir.join(format!("{kernel}-{}.serial.log", boot.variant()));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        found = true;
        let log = parse_boot_log(&String::from_utf8_lossy(&bytes));
        let host = HostOutcome {
            timed_out: false,
            qemu_status: Some(0),
        };
        for v in judge_boot(kernel, boot.variant(), &log, host) {
            if v.program.starts_with('(') || v.program == "passthru" {
                continue;
            }
            out.insert(
                (
                    boot.variant().to_string(),
                    v.program,
                    v.device,
                    case_name(&v.name),
                ),
                v.outcome,
            );
        }
    }
    found.then_some(out)
}

/// The LAVA verdicts that correspond to rig cases (inside a test set, not the checks).
pub fn lava_cases(verdicts: &[Verdict]) -> BTreeMap<CaseKey, Outcome> {
    verdicts
        .iter()
        .filter(|v| v.program != CHECK && v.program != "passthru" && !v.name.starts_with('('))
        .map(|v| {
            (
                (
                    v.kernel.clone(),
                    v.program.clone(),
                    v.device.clone(),
                    v.name.clone(),
                ),
                v.outcome,
            )
        })
        .collect()
}

/// Differences between the rig's cases and LAVA's, one line each (empty: identical).
pub fn compare(rig: &BTreeMap<CaseKey, Outcome>, lava: &BTreeMap<CaseKey, Outcome>) -> Vec<String> {
    let show = |k: &CaseKey| format!("{} {} [{}] {}", k.0, k.1, k.2, k.3);
    let word = |o: &Outcome| format!("{o:?}").to_ascii_uppercase();
    let mut out = Vec::new();
    for (k, o) in rig {
        match lava.get(k) {
            None => out.push(format!("{}: rig {}, missing in LAVA", show(k), word(o))),
            Some(l) if l != o => {
                out.push(format!("{}: rig {}, LAVA {}", show(k), word(o), word(l)))
            }
            Some(_) => {}
        }
    }
    for (k, o) in lava {
        if !rig.contains_key(k) {
            out.push(format!(
                "{}: LAVA {}, not in the rig's run",
                show(k),
                word(o)
            ));
        }
    }
    out
}

/// Counts per outcome, `pass=N fail=N skip=N`.
pub fn counts(cases: &BTreeMap<CaseKey, Outcome>) -> String {
    let n = |want: Outcome| cases.values().filter(|o| **o == want).count();
    format!(
        "pass={} fail={} skip={} (total {})",
        n(Outcome::Pass),
        n(Outcome::Fail),
        n(Outcome::Skip),
        cases.len()
    )
}

/// The comparison section of the report.
pub fn render_comparison(
    kernel: &str,
    rig: &BTreeMap<CaseKey, Outcome>,
    lava: &BTreeMap<CaseKey, Outcome>,
    diffs: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nCOMPARISON with the rig's own run of {kernel}:");
    let _ = writeln!(out, "  rig:  {}", counts(rig));
    let _ = writeln!(out, "  LAVA: {}", counts(lava));
    if diffs.is_empty() {
        let _ = writeln!(out, "  SAME: every case has the same result in both runs");
    } else {
        let _ = writeln!(out, "  DIFFERENT ({}):", diffs.len());
        for d in diffs {
            let _ = writeln!(out, "    {d}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lava::log::parse;

    const PASS: &str = include_str!("testdata/pass.log");
    const MIXED: &str = include_str!("testdata/mixed.log");
    const GAP: &str = include_str!("testdata/gap.log");
    const POWEROFF: &str = include_str!("testdata/poweroff.log");
    const TRUNCATED: &str = include_str!("testdata/truncated-file.log");
    const EXPORT: &str = include_str!("testdata/server-export.yaml");

    fn names(v: &[Verdict], outcome: Outcome) -> Vec<String> {
        v.iter()
            .filter(|x| x.outcome == outcome)
            .map(|x| format!("{} {} {}", x.program, x.device, x.name))
            .collect()
    }

    fn find<'a>(v: &'a [Verdict], name: &str) -> &'a Verdict {
        v.iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("no {name} in {v:#?}"))
    }

    #[test]
    fn recorded_pass_run_passes() {
        let log = parse(PASS);
        assert_eq!(log.job().unwrap().result, "pass");
        assert_eq!(log.unreadable, 0);
        assert_eq!(log.planned.len(), 2);
        let v = judge(&log, None);
        assert!(names(&v, Outcome::Fail).is_empty(), "{v:#?}");
        assert_eq!(
            names(&v, Outcome::Pass).len(),
            2 + 4,
            "setup, cleanup, 2x2 cases"
        );
        assert_eq!(
            names(&v, Outcome::Skip),
            [
                "fake_pass edu fake.iommufd.skip",
                "fake_pass igb fake.iommufd.skip"
            ]
        );
        assert_eq!(
            find(&v, "fake.iommufd.skip").reason.as_deref(),
            Some("no 1G hugepages reserved")
        );
        assert_eq!(v[1].kernel, "normal");
        assert_eq!(v[1].mode, "vfio_type1_iommu");
    }

    #[test]
    fn recorded_pass_fail_skip_and_short_plan() {
        let log = parse(MIXED);
        // lava-run passed the job although cases failed.
        assert_eq!(log.job().unwrap().result, "pass");
        let v = judge(&log, None);
        assert_eq!(
            names(&v, Outcome::Fail),
            [
                "fake_mixed edu fake.vfio_type1_iommu.fail",
                "fake_short igb missing-results",
                "fake_short igb (missing cases)"
            ]
        );
        assert_eq!(
            find(&v, "fake.vfio_type1_iommu.fail").reason.as_deref(),
            Some("fake.c:12: expected 0, got -22")
        );
        assert_eq!(
            find(&v, "missing-results").reason.as_deref(),
            Some("plan announced 3 tests, 1 reported")
        );
        assert_eq!(
            find(&v, "(missing cases)").reason.as_deref(),
            Some("KTAP plan 1..3, LAVA recorded 1")
        );
        // XFAIL counts as a pass, as in kselftest.
        assert_eq!(find(&v, "fake.iommufd.xfail").outcome, Outcome::Pass);
        assert_eq!(
            names(&v, Outcome::Skip),
            ["fake_mixed edu fake.iommufd.skip"]
        );
    }

    #[test]
    fn recorded_silent_gap_loses_the_rest_and_fails() {
        let log = parse(GAP);
        let v = judge(&log, None);
        let fails = names(&v, Outcome::Fail);
        assert!(fails.contains(&"(lava) - (job)".to_string()), "{fails:?}");
        assert!(find(&v, "(job)")
            .reason
            .as_deref()
            .unwrap()
            .contains("Test: lava-test-shell timed out after 60 seconds"));
        assert!(fails.contains(&"(lava) - (test run)".to_string()));
        assert!(fails.contains(&"(lava) - (runner)".to_string()));
        // fake_gap printed 1 of 3 cases before the gap; fake_short never ran.
        assert!(
            fails.contains(&"fake_gap edu (missing cases)".to_string()),
            "{fails:?}"
        );
        assert!(
            fails.contains(&"fake_short igb (not run)".to_string()),
            "{fails:?}"
        );
        assert_eq!(find(&v, "fake.iommufd.before_gap").outcome, Outcome::Pass);
    }

    #[test]
    fn recorded_guest_poweroff_truncates_the_run() {
        let log = parse(POWEROFF);
        let v = judge(&log, None);
        assert!(find(&v, "(job)")
            .reason
            .as_deref()
            .unwrap()
            .contains("Infrastructure: Connection closed"));
        let fails = names(&v, Outcome::Fail);
        assert!(
            fails.contains(&"fake_poweroff edu (missing cases)".to_string()),
            "{fails:?}"
        );
        assert!(
            fails.contains(&"fake_short igb (not run)".to_string()),
            "{fails:?}"
        );
        assert_eq!(
            find(&v, "fake.iommufd.before_poweroff").outcome,
            Outcome::Pass
        );
    }

    #[test]
    fn truncated_file_has_no_job_verdict() {
        let log = parse(TRUNCATED);
        assert!(log.job().is_none());
        let v = judge(&log, None);
        let fails = names(&v, Outcome::Fail);
        assert!(fails.contains(&"(lava) - (job)".to_string()), "{fails:?}");
        assert!(
            fails.contains(&"fake_short igb (not run)".to_string()),
            "{fails:?}"
        );
    }

    #[test]
    fn expected_runs_missing_from_the_log_fail() {
        let log = parse(PASS);
        let expected = vec![
            ("0_passthru-normal".to_string(), "fake_pass-edu".to_string()),
            ("1_passthru-normal".to_string(), "fake_pass-igb".to_string()),
            ("0_passthru-1g".to_string(), "fake_pass-edu".to_string()),
        ];
        let v = judge(&log, Some(&expected));
        assert_eq!(names(&v, Outcome::Fail), ["fake_pass edu (not run)"]);
        assert_eq!(find(&v, "(not run)").kernel, "1g");
    }

    #[test]
    fn results_export_is_read_without_console_checks() {
        let log = parse(EXPORT);
        assert!(!log.has_console);
        assert_eq!(log.cases.len(), 4);
        assert_eq!(log.cases[2].set.as_deref(), Some("fake_mixed-edu"));
        assert_eq!(log.cases[2].result, LavaResult::Fail);
        assert_eq!(log.job().unwrap().result, "pass");
        let v = judge(&log, None);
        assert_eq!(
            names(&v, Outcome::Fail),
            ["fake_mixed edu fake.vfio_type1_iommu.fail"]
        );
        assert_eq!(names(&v, Outcome::Pass).len(), 2);
        assert!(notes(&log)[0].contains("KTAP plans"));
    }

    #[test]
    fn comparison_with_the_rig_by_name_and_result() {
        let dir = std::env::temp_dir().join(format!("passthru-lava-cmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The rig's serial log of the same runs as pass.log (rig protocol, same KTAP).
        let ktap =
            "TAP version 13\n1..3\nok 1 fake.vfio_type1_iommu.pass\nok 2 fake.iommufd.pass\n\
                    ok 3 fake.iommufd.skip # SKIP no 1G hugepages reserved\n";
        let serial = format!(
            "=== RIG BOOT kernel=6.12.118 uptime=1\n=== RUN fake_pass edu 0000:00:03.0\n{ktap}\
             === END fake_pass edu rc=0 secs=1\n=== RUN fake_pass igb 0000:02:00.0\n{ktap}\
             === END fake_pass igb rc=0 secs=1\n=== RUN passthru all list\nBDF\n\
             === END passthru all rc=0 secs=1\n=== RIG DONE runs=3 errors=0\n"
        );
        std::fs::write(dir.join("6.12.118-normal.serial.log"), &serial).unwrap();
        let lava = lava_cases(&judge(&parse(PASS), None));
        let rig = rig_cases(&dir, "6.12.118").unwrap();
        assert_eq!(rig.len(), 6, "`passthru list` is not a LAVA case: {rig:#?}");
        assert!(
            compare(&rig, &lava).is_empty(),
            "{:?}",
            compare(&rig, &lava)
        );
        // One result different (edu), one case missing on the LAVA side (igb).
        let changed = serial
            .replacen("ok 2 fake.iommufd.pass", "not ok 2 fake.iommufd.pass", 1)
            .replacen(
                "=== END fake_pass igb",
                "ok 4 fake.iommufd.extra\n=== END fake_pass igb",
                1,
            );
        std::fs::write(dir.join("6.12.118-normal.serial.log"), changed).unwrap();
        let rig = rig_cases(&dir, "6.12.118").unwrap();
        let diffs = compare(&rig, &lava);
        assert_eq!(
            diffs,
            [
                "normal fake_pass [edu] fake.iommufd.pass: rig FAIL, LAVA PASS",
                "normal fake_pass [igb] fake.iommufd.extra: rig PASS, missing in LAVA",
            ]
        );
        assert!(rig_cases(&dir, "7.3.4").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
