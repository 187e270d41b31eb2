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
        .filter(|v| v.program != CHECK && v.program != "passthru")
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
pub fn compare(
    rig: &BTreeMap<CaseKey, Outcome>,
    lava: &BTreeMap<CaseKey, Outcome>,
) -> Vec<String> {
    let show = |k: &CaseKey| format!("{} {} [{}] {}", k.0, k.1, k.2, k.3);
    let word = |o: &Outcome| format!("{o:?}").to_ascii_uppercase();
    let mut out = Vec::new();
    for (k, o) in rig {
        match lava.get(k) {
            None => out.push(format!(
                "{}: rig {}, missing in LAVA",
                show(k),
                word(o)
            )),
            Some(l) if l != o => out.push(format!(
                "{}: rig {}, LAVA {}",
                show(k),
                word(o),
                word(l)
            )),
            Some(_) => {}
        }
    }
    for (k, o) in lava {
        if !rig.contains_key(k) {
            out.push(format!("{}: LAVA {}, not in the rig's run", show(k), word(o)));
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
