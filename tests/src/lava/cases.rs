//! `passthru lava cases`: the part of the test definition that runs on the device. It runs each
//! program, passes its output through to the console, and turns every top-level KTAP case into
//! `lava-test-case <upstream name> --result pass|fail|skip` inside the test set
//! `<program>-<label>`, as soon as the case is printed (so a crash keeps the earlier results).
//! After each program the rig's own rules ([`crate::rig::report::judge_boot`]) add the
//! problems KTAP cannot show — fewer cases than the plan, an unexpected exit status, the
//! per-program timeout, a kernel WARNING/BUG/oops logged while the program ran (read from
//! `/dev/kmsg` without clearing it, when readable) — as failing cases with the rig's names
//! (`missing-results`, `exit-status`, `timeout`, `kernel-warning`, ...). Lines starting with [`MARK`] tell the host-side check which
//! sets to expect and that the runner finished.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::log::MARK;
use crate::rig::report::{judge_boot, HostOutcome};
use crate::rig::serial::{is_kernel_trouble, parse_boot_log, parse_result_line, Outcome};

/// One program run: device label, environment, program, arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Label for the test set (a device label or a BDF).
    pub label: String,
    /// `VAR=value` words.
    pub env: Vec<String>,
    /// Program name (looked up next to `passthru`, then on `PATH`).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
}

impl Run {
    /// The LAVA test set of this run: `<program>-<label>`, restricted to `[A-Za-z0-9._-]`.
    pub fn set_name(&self) -> String {
        format!("{}-{}", self.program, sanitize(&self.label))
    }
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The LAVA case name of a verdict name: upstream names unchanged; the rig's synthetic
/// `(missing results)` becomes `missing-results`; anything else outside `[A-Za-z0-9._-]`
/// becomes `-` (LAVA signals are split at spaces).
pub fn case_name(name: &str) -> String {
    let inner = name
        .strip_prefix('(')
        .and_then(|n| n.strip_suffix(')'))
        .unwrap_or(name);
    inner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The case names the runner adds for problems KTAP does not show (normalised rig names).
pub fn is_synthetic(case: &str) -> bool {
    matches!(
        case,
        "missing-results"
            | "exit-status"
            | "timeout"
            | "no-END-marker"
            | "not-in-initramfs"
            | "whole-program"
            | "kernel-warning"
    )
}

/// Why a `RUNS` value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RUNS entry {index} (`{entry}`): {what}")]
pub struct RunsError {
    /// 1-based entry number.
    pub index: usize,
    /// The entry.
    pub entry: String,
    /// What is wrong.
    pub what: &'static str,
}

/// Parses `RUNS`: `;`-separated `LABEL [VAR=value...] PROGRAM [ARG...]`.
pub fn parse_runs(spec: &str) -> Result<Vec<Run>, RunsError> {
    let mut out = Vec::new();
    for (i, entry) in spec.split(';').enumerate() {
        let words: Vec<&str> = entry.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let err = |what| RunsError {
            index: i + 1,
            entry: entry.trim().to_string(),
            what,
        };
        let label = words[0];
        let rest = &words[1..];
        let n_env = rest.iter().take_while(|w| w.contains('=')).count();
        let Some(program) = rest.get(n_env) else {
            return Err(err("no program"));
        };
        if program.contains('/') || program.starts_with('-') {
            return Err(err("the program must be a plain name"));
        }
        out.push(Run {
            label: label.to_string(),
            env: rest[..n_env].iter().map(|s| s.to_string()).collect(),
            program: program.to_string(),
            args: rest[n_env + 1..].iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(out)
}

/// The default runs: each of the seven programs on each device.
pub fn default_runs(bdfs: &[String]) -> Vec<Run> {
    let mut out = Vec::new();
    for program in crate::rig::plan::PROGRAMS {
        for bdf in bdfs {
            out.push(Run {
                label: bdf.clone(),
                env: Vec::new(),
                program: program.to_string(),
                args: vec![bdf.clone()],
            });
        }
    }
    out
}

/// One report to LAVA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `lava-test-set start NAME`.
    SetStart(String),
    /// `lava-test-set stop`.
    SetStop,
    /// `lava-test-case NAME --result RESULT`.
    Case(String, &'static str),
}

fn word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Skip => "skip",
    }
}

/// Exit status `timeout -s KILL` gives a killed program.
const KILLED: i32 = 137;

/// Runs one program under `timeout -s KILL`, streams its output (stderr merged) to `out`,
/// reports each KTAP case as it appears and the rig's synthetic verdicts at the end. Returns
/// the outcomes reported.
pub fn run_one(
    run: &Run,
    program_path: &Path,
    timeout_s: u32,
    out: &mut dyn Write,
    report: &mut dyn FnMut(Report),
) -> Vec<Outcome> {
    let set = run.set_name();
    report(Report::SetStart(set.clone()));
    let mut outcomes = Vec::new();
    let started = Instant::now();
    let mut text = format!(
        "=== RUN {} {} {}\n",
        run.program,
        run.label,
        run.args.join(" ")
    );
    let mut kmsg = open_kmsg();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec timeout -s KILL \"$@\" 2>&1")
        .arg("sh")
        .arg(timeout_s.to_string());
    if !run.env.is_empty() {
        cmd.arg("env").args(&run.env);
    }
    cmd.arg(program_path)
        .args(&run.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let rc = match cmd.spawn() {
        Ok(mut child) => {
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).split(b'\n') {
                    let Ok(line) = line else { break };
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches('\r');
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    text.push_str(line);
                    text.push('\n');
                    if let Some(r) = parse_result_line(line) {
                        outcomes.push(r.outcome);
                        report(Report::Case(case_name(&r.name), word(r.outcome)));
                    }
                }
            }
            match child.wait() {
                Ok(s) => s.code().unwrap_or(KILLED),
                Err(_) => KILLED,
            }
        }
        Err(e) => {
            let _ = writeln!(out, "# passthru lava cases: cannot start sh: {e}");
            127
        }
    };
    text.push_str(&format!(
        "=== END {} {} rc={rc} secs={:.1}\n",
        run.program,
        run.label,
        started.elapsed().as_secs_f64()
    ));
    // The kernel's messages while the program ran: a WARNING/BUG/oops fails the run, as in
    // the rig (which reads them with `dmesg -c`; here the ring buffer is left alone).
    if let Some(f) = kmsg.as_mut() {
        let lines = drain_kmsg(f);
        text.push_str(&format!("=== DMESG {} {}\n", run.program, run.label));
        for l in &lines {
            if is_kernel_trouble(l) {
                let _ = writeln!(out, "# passthru lava cases: kernel: {l}");
            }
            text.push_str(l);
            text.push('\n');
        }
        text.push_str("=== END DMESG\n");
    }
    text.push_str("=== RIG DONE runs=1 errors=0\n");
    let log = parse_boot_log(&text);
    let host = HostOutcome {
        timed_out: false,
        qemu_status: Some(0),
    };
    for v in judge_boot("-", "lava", &log, host) {
        if !v.name.starts_with('(') {
            continue; // KTAP cases were reported as they came
        }
        let _ = writeln!(
            out,
            "# passthru lava cases: {} {}: {}",
            v.name,
            word(v.outcome),
            v.reason.as_deref().unwrap_or("-")
        );
        outcomes.push(v.outcome);
        report(Report::Case(case_name(&v.name), word(v.outcome)));
    }
    report(Report::SetStop);
    outcomes
}

/// `/dev/kmsg` opened non-blocking and positioned after the last record, if readable (root).
fn open_kmsg() -> Option<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    f.seek(SeekFrom::End(0)).ok()?;
    Some(f)
}

/// The messages logged since the last read (one record per `read`, until `EAGAIN`).
fn drain_kmsg(f: &mut std::fs::File) -> Vec<String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(m) = kmsg_message(&String::from_utf8_lossy(&buf[..n])) {
                    out.push(m.to_string());
                }
            }
            // EPIPE: records were overwritten before we read them; keep reading.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
        if out.len() > 10_000 {
            break;
        }
    }
    out
}

/// The message of one `/dev/kmsg` record, `PRI,SEQ,USEC,FLAGS[,...];MESSAGE` followed by
/// ` KEY=VALUE` continuation lines (dropped).
pub fn kmsg_message(record: &str) -> Option<&str> {
    let (_, rest) = record.split_once(';')?;
    Some(rest.lines().next().unwrap_or("").trim_end())
}

/// Where a program is: next to the running `passthru` if it is there, else its name (`PATH`).
fn program_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Sends a report through LAVA's helpers, or prints the command when they are absent.
fn lava_report(r: Report, have_helpers: bool) {
    let args: Vec<String> = match &r {
        Report::SetStart(s) => vec!["lava-test-set".into(), "start".into(), s.clone()],
        Report::SetStop => vec!["lava-test-set".into(), "stop".into()],
        Report::Case(n, res) => vec![
            "lava-test-case".into(),
            n.clone(),
            "--result".into(),
            res.to_string(),
        ],
    };
    let _ = std::io::stdout().flush();
    if have_helpers {
        let status = Command::new(&args[0]).args(&args[1..]).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "passthru lava cases: `{}` failed: {status:?}",
                args.join(" ")
            );
        }
    } else {
        println!("{}", args.join(" "));
    }
}

/// `passthru lava cases [--timeout SECS] [--runs RUNS] BDF...`. Under LAVA (its helpers on
/// `PATH`) the exit code is 0 once everything ran: the verdicts are the reported cases, and a
/// non-zero status would stop the definition's `sh -e` script before its cleanup step.
/// By hand it prints the `lava-test-case` commands and exits like kselftest (1 on a failure,
/// 4 when everything skipped).
pub fn cases_main(args: &[String]) -> i32 {
    let mut timeout_s: u32 = 900;
    let mut runs_spec = String::new();
    let mut bdfs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout" => match it.next().and_then(|v| v.parse().ok()).filter(|v| *v > 0) {
                Some(v) => timeout_s = v,
                None => {
                    eprintln!("passthru: lava cases: --timeout needs a positive number of seconds");
                    return 1;
                }
            },
            "--runs" => match it.next() {
                Some(v) => runs_spec = v.clone(),
                None => {
                    eprintln!("passthru: lava cases: --runs needs a value");
                    return 1;
                }
            },
            s if s.starts_with('-') => {
                eprintln!("passthru: lava cases: unknown option {s}");
                return 1;
            }
            _ => bdfs.push(a.clone()),
        }
    }
    let runs = if runs_spec.trim().is_empty() {
        default_runs(&bdfs)
    } else {
        match parse_runs(&runs_spec) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("passthru: lava cases: {e}");
                return 1;
            }
        }
    };
    if runs.is_empty() {
        eprintln!("passthru: lava cases: nothing to run (give BDFs or --runs)");
        return 1;
    }
    let have_helpers = crate::rig::on_path("lava-test-case");
    let mut stdout = std::io::stdout();
    for r in &runs {
        let _ = writeln!(stdout, "{MARK} planned {}", r.set_name());
    }
    let mut all = Vec::new();
    for r in &runs {
        let path = program_path(&r.program);
        let mut report = |rep| lava_report(rep, have_helpers);
        all.extend(run_one(r, &path, timeout_s, &mut stdout, &mut report));
    }
    let _ = writeln!(stdout, "{MARK} done runs={}", runs.len());
    let _ = stdout.flush();
    if have_helpers {
        0
    } else if all.contains(&Outcome::Fail) {
        1
    } else if all.iter().all(|o| *o == Outcome::Skip) {
        4
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_spec_parses_env_program_and_args() {
        let runs = parse_runs(
            "all RIG_EXPECT_1G=1 rig_sanity 0000:00:03.0 0000:01:00.0; edu vfio_dma_mapping_test -V x 0000:00:03.0;;",
        )
        .unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].env, ["RIG_EXPECT_1G=1"]);
        assert_eq!(runs[0].program, "rig_sanity");
        assert_eq!(runs[0].args, ["0000:00:03.0", "0000:01:00.0"]);
        assert_eq!(runs[1].set_name(), "vfio_dma_mapping_test-edu");
        let e = parse_runs("edu A=1").unwrap_err();
        assert_eq!((e.index, e.what), (1, "no program"));
        assert!(parse_runs("edu /bin/sh").is_err());
        let d = default_runs(&["0000:6a:01.0".to_string()]);
        assert_eq!(d.len(), 7);
        assert_eq!(d[0].set_name(), "vfio_pci_device_test-0000_6a_01.0");
    }

    #[test]
    fn kmsg_records_give_their_message() {
        let m = kmsg_message(
            "4,1234,5678901,-;WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n SUBSYSTEM=pci\n",
        );
        assert_eq!(m, Some("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2"));
        assert!(is_kernel_trouble(m.unwrap()));
        assert_eq!(
            kmsg_message("6,1,2,-;vfio-pci 0000:00:03.0: enabling device"),
            Some("vfio-pci 0000:00:03.0: enabling device")
        );
        assert_eq!(kmsg_message("garbage"), None);
    }

    #[test]
    fn case_names_keep_upstream_names_and_map_synthetic_ones() {
        assert_eq!(
            case_name("vfio_dma_mapping_test.iommufd_anonymous.dma_map_unmap"),
            "vfio_dma_mapping_test.iommufd_anonymous.dma_map_unmap"
        );
        assert_eq!(case_name("(missing results)"), "missing-results");
        assert!(is_synthetic(&case_name("(exit status)")));
        assert!(is_synthetic(&case_name("(no END marker)")));
        assert_eq!(case_name("test 3"), "test-3");
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn run_script(body: &str, timeout_s: u32) -> (Vec<Report>, String) {
        let dir = std::env::temp_dir().join(format!(
            "passthru-lava-cases-{}-{}",
            std::process::id(),
            body.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = script(&dir, "prog", body);
        let run = Run {
            label: "edu".into(),
            env: vec!["X=1".into()],
            program: "prog".into(),
            args: vec!["0000:00:03.0".into()],
        };
        let mut reports = Vec::new();
        let mut out = Vec::new();
        run_one(&run, &p, timeout_s, &mut out, &mut |r| reports.push(r));
        let _ = std::fs::remove_dir_all(&dir);
        (reports, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn ktap_cases_become_lava_cases_in_order() {
        let (reports, out) = run_script(
            "echo 'TAP version 13'; echo '1..3'; echo \"ok 1 a.b.c # env X=$X arg $1\"; \
             echo 'not ok 2 a.b.d' >&2; echo 'ok 3 a.b.e # SKIP no hugepages'; exit 1",
            30,
        );
        assert_eq!(
            reports,
            [
                Report::SetStart("prog-edu".into()),
                Report::Case("a.b.c".into(), "pass"),
                Report::Case("a.b.d".into(), "fail"),
                Report::Case("a.b.e".into(), "skip"),
                Report::SetStop,
            ]
        );
        assert!(
            out.contains("ok 1 a.b.c # env X=1 arg 0000:00:03.0"),
            "{out}"
        );
        assert!(out.contains("not ok 2 a.b.d"), "stderr is merged: {out}");
    }

    #[test]
    fn short_plan_exit_status_and_timeout_add_failing_cases() {
        let (reports, _) = run_script("echo '1..2'; echo 'ok 1 a.b.c'", 30);
        assert!(reports.contains(&Report::Case("missing-results".into(), "fail")));
        let (reports, _) = run_script("echo hello; exit 3", 30);
        assert!(reports.contains(&Report::Case("exit-status".into(), "fail")));
        let (reports, _) = run_script("echo '1..0 # SKIP no device'; exit 4", 30);
        assert!(reports.contains(&Report::Case("whole-program".into(), "skip")));
        let (reports, out) = run_script("echo '1..2'; echo 'ok 1 a.b.c'; sleep 30", 1);
        assert!(
            reports.contains(&Report::Case("timeout".into(), "fail")),
            "{reports:?} {out}"
        );
    }
}
