//! Parser for the guest's serial log: the rig's `=== ...` markers (written by `tests/vm/init`)
//! and the KTAP each program prints between them.
//!
//! The parser never fails: whatever the log holds (a truncated run, a panic, garbage) becomes
//! data that [`crate::rig::report`] turns into verdicts.

/// Outcome of one KTAP test case (or of a whole program judged by its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// `ok` (also `ok ... # XFAIL`, an expected failure, which kselftest counts as passing).
    Pass,
    /// `not ok`.
    Fail,
    /// `ok ... # SKIP reason`.
    Skip,
}

/// One top-level KTAP result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's description, upstream style `fixture.variant.test`.
    pub name: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// The directive's text (`# SKIP reason`, `# XFAIL reason`), if any.
    pub reason: Option<String>,
}

/// One program run framed by `=== RUN` / `=== END` markers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgramRun {
    /// Program name (file name in the guest's /bin).
    pub program: String,
    /// Device label from the plan (`edu`, `igb`, `all`, ...).
    pub label: String,
    /// The arguments as the guest printed them.
    pub args: String,
    /// Top-level KTAP results, in order.
    pub results: Vec<TestResult>,
    /// The KTAP plan count (`1..N`), if printed.
    pub plan: Option<usize>,
    /// The reason of a whole-program skip (`1..0 # SKIP reason`).
    pub skip_all: Option<String>,
    /// The last `# ...` diagnostic line (reason of last resort for skips and failures).
    pub last_diagnostic: Option<String>,
    /// The last non-empty output line of any kind (programs that print no KTAP).
    pub last_output: Option<String>,
    /// The first [`HEAD_LINES`] non-empty output lines (what a non-KTAP program announced, e.g.
    /// `irq_test`'s seed, GSI and vector).
    pub head: Vec<String>,
    /// The last [`TAIL_LINES`] non-empty output lines (why a non-KTAP program failed).
    pub tail: Vec<String>,
    /// Exit status from the `=== END` marker; `None` if the marker never came.
    pub rc: Option<i32>,
    /// Guest seconds the program took, from the `=== END` marker.
    pub secs: Option<f64>,
    /// Kernel log lines printed while the program ran.
    pub dmesg: Vec<String>,
    /// `# bench-map:` measurement lines the program printed (`passthru bench map`).
    pub bench: Vec<BenchRecord>,
}

/// How many leading output lines of a run [`ProgramRun::head`] keeps.
pub const HEAD_LINES: usize = 20;
/// How many trailing output lines of a run [`ProgramRun::tail`] keeps.
pub const TAIL_LINES: usize = 5;

/// What one `# bench-map:` line measured.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchKind {
    /// Map+unmap rate at a size: `lib` and `raw` in pairs per second.
    Map {
        /// Size token (`4k`, `2m`, `1g`).
        size: String,
    },
    /// Device open+setup: `lib` and `raw` in microseconds (fastest open).
    Open,
    /// Not measured.
    Skip {
        /// What was not measured (`map+unmap_1G`, `open+setup`).
        what: String,
        /// Why.
        reason: String,
    },
}

/// One machine-readable `passthru bench map` line (format: `crate::bench::map::machine_line`).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRecord {
    /// What was measured.
    pub kind: BenchKind,
    /// The device's BDF.
    pub device: String,
    /// IOMMU mode name.
    pub mode: String,
    /// Library figure (pairs/s for map, microseconds for open; 0 for skips).
    pub lib: f64,
    /// Raw-ioctl figure, same unit as `lib`.
    pub raw: f64,
    /// Library time / raw time.
    pub ratio: f64,
}

/// Parses one `# bench-map: kind=... ` line; `None` for any other line or a malformed one.
pub fn parse_bench_line(line: &str) -> Option<BenchRecord> {
    let rest = line
        .trim()
        .strip_prefix(crate::bench::map::MACHINE_PREFIX)?
        .trim();
    // `reason=` runs to the end of the line; everything before it is `key=value` words.
    let (head, reason) = match rest.find(" reason=") {
        Some(i) => (&rest[..i], Some(rest[i + " reason=".len()..].trim())),
        None => (rest, None),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let num = |key: &str| -> Option<f64> {
        field(&words, key)?
            .parse::<f64>()
            .ok()
            .filter(|v| !v.is_nan())
    };
    let device = field(&words, "device")?.to_string();
    let mode = field(&words, "mode")?.to_string();
    let (kind, lib, raw, ratio) = match field(&words, "kind")? {
        "map" => (
            BenchKind::Map {
                size: field(&words, "size")?.to_string(),
            },
            num("lib")?,
            num("raw")?,
            num("ratio")?,
        ),
        "open" => (
            BenchKind::Open,
            num("lib_us")?,
            num("raw_us")?,
            num("ratio")?,
        ),
        "skip" => (
            BenchKind::Skip {
                what: field(&words, "what")?.to_string(),
                reason: reason.unwrap_or("").to_string(),
            },
            0.0,
            0.0,
            0.0,
        ),
        _ => return None,
    };
    Some(BenchRecord {
        kind,
        device,
        mode,
        lib,
        raw,
        ratio,
    })
}

/// Everything the rig learned from one boot's serial log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootLog {
    /// `uname -r` of the guest, from `=== RIG BOOT`.
    pub kernel_release: Option<String>,
    /// Program runs, in order.
    pub runs: Vec<ProgramRun>,
    /// `=== RIG ERROR` texts.
    pub rig_errors: Vec<String>,
    /// `=== RIG NOTE` texts.
    pub notes: Vec<String>,
    /// `(runs, errors)` from the final `=== RIG DONE` line; `None` means the guest never got
    /// there (panic, hang, timeout or a crash of /init).
    pub done: Option<(u32, u32)>,
    /// The first kernel panic line, if the guest panicked.
    pub panic: Option<String>,
    /// Kernel warnings/BUGs printed on the console outside any program (during boot, before
    /// /init quiets the console).
    pub boot_trouble: Vec<String>,
}

/// Markers of kernel log lines that mean the kernel itself found a problem (WARN splats and
/// lockdep reports, BUG/soft-lockup, oopses, GPFs, hung tasks). Expected messages such as
/// DMAR faults from negative DMA tests are not among them.
const KERNEL_TROUBLE: [&str; 5] = [
    "WARNING:",
    "BUG:",
    "Oops:",
    "general protection fault",
    "INFO: task ",
];

/// Whether a kernel log line reports a kernel warning, bug or oops.
pub fn is_kernel_trouble(line: &str) -> bool {
    // Drop the `[    1.234567] ` timestamp, then look at the message's start.
    let msg = match line.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(_, m)| m),
        None => line,
    }
    .trim_start();
    let msg = msg.strip_prefix("watchdog: ").unwrap_or(msg);
    KERNEL_TROUBLE.iter().any(|m| msg.starts_with(m))
}

/// Parses a `key=value` field of a marker line.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Splits `description # DIRECTIVE reason` into the description and an outcome override.
fn split_directive(rest: &str) -> (String, Option<(String, String)>) {
    let (desc, directive) = match rest.find('#') {
        Some(i) => (rest[..i].trim(), Some(rest[i + 1..].trim())),
        None => (rest.trim(), None),
    };
    let directive = directive.map(|d| {
        let (word, reason) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        (word.to_ascii_uppercase(), reason.trim().to_string())
    });
    (desc.to_string(), directive)
}

/// Parses one top-level KTAP result line (`ok N desc # SKIP why`, `not ok N desc`).
pub fn parse_result_line(line: &str) -> Option<TestResult> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (num, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (desc, directive) = split_directive(rest);
    let name = if desc.is_empty() {
        format!("test {num}")
    } else {
        desc
    };
    let (outcome, reason) = match directive {
        Some((word, reason)) if word == "SKIP" => (Outcome::Skip, Some(reason)),
        Some((word, reason)) if word == "XFAIL" && ok => (Outcome::Pass, Some(reason)),
        Some((word, reason)) if word == "TODO" => (
            if ok { Outcome::Pass } else { Outcome::Skip },
            Some(format!("TODO {reason}")),
        ),
        _ => (if ok { Outcome::Pass } else { Outcome::Fail }, None),
    };
    Some(TestResult {
        name,
        outcome,
        reason,
    })
}

/// kselftest harness bookkeeping lines, which explain nothing about a failure.
fn is_harness_chatter(diag: &str) -> bool {
    [
        "RUN ",
        "OK ",
        "FAIL ",
        "SKIP ",
        "Starting ",
        "PASSED:",
        "FAILED:",
    ]
    .iter()
    .any(|p| diag.starts_with(p))
}

/// Where the parser is inside a boot log.
enum State {
    Outside,
    InRun,
    InDmesg,
}

/// Parses a whole serial log.
pub fn parse_boot_log(text: &str) -> BootLog {
    let mut log = BootLog::default();
    let mut state = State::Outside;
    // The last explanatory diagnostic since the previous result: a failure's reason.
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches(['\r', '\n']);
        if log.panic.is_none() && line.contains("Kernel panic - not syncing") {
            log.panic = Some(line.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("=== ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.first().copied() {
                Some("RUN") => {
                    log.runs.push(ProgramRun {
                        program: words.get(1).unwrap_or(&"?").to_string(),
                        label: words.get(2).unwrap_or(&"?").to_string(),
                        args: words.get(3..).map(|a| a.join(" ")).unwrap_or_default(),
                        ..ProgramRun::default()
                    });
                    state = State::InRun;
                    continue;
                }
                Some("END") if words.get(1) == Some(&"DMESG") => {
                    state = State::Outside;
                    continue;
                }
                Some("END") => {
                    if let Some(run) = log.runs.last_mut() {
                        run.rc = field(&words, "rc").and_then(|v| v.parse().ok());
                        run.secs = field(&words, "secs").and_then(|v| v.parse().ok());
                    }
                    state = State::Outside;
                    continue;
                }
                Some("DMESG") => {
                    state = State::InDmesg;
                    continue;
                }
                Some("RIG") => {
                    let text = words.get(2..).map(|a| a.join(" ")).unwrap_or_default();
                    match words.get(1).copied() {
                        Some("BOOT") => {
                            log.kernel_release = field(&words, "kernel").map(str::to_string);
                        }
                        Some("ERROR") => log.rig_errors.push(text),
                        Some("NOTE") => log.notes.push(text),
                        Some("DONE") => {
                            let runs = field(&words, "runs").and_then(|v| v.parse().ok());
                            let errors = field(&words, "errors").and_then(|v| v.parse().ok());
                            log.done = Some((runs.unwrap_or(0), errors.unwrap_or(0)));
                        }
                        _ => {}
                    }
                    state = State::Outside;
                    continue;
                }
                _ => {}
            }
        }
        match state {
            State::Outside => {
                if line.starts_with('[') && is_kernel_trouble(line) {
                    log.boot_trouble.push(line.trim().to_string());
                }
            }
            State::InDmesg => {
                if let Some(run) = log.runs.last_mut() {
                    run.dmesg.push(line.to_string());
                }
            }
            State::InRun => {
                let Some(run) = log.runs.last_mut() else {
                    continue;
                };
                let trimmed = line.trim();
                if !trimmed.is_empty() {
                    run.last_output = Some(trimmed.to_string());
                    if run.head.len() < HEAD_LINES {
                        run.head.push(trimmed.to_string());
                    }
                    if run.tail.len() == TAIL_LINES {
                        run.tail.remove(0);
                    }
                    run.tail.push(trimmed.to_string());
                }
                if let Some(b) = parse_bench_line(line) {
                    run.bench.push(b);
                    continue;
                }
                if let Some(mut result) = parse_result_line(line) {
                    if result.outcome == Outcome::Fail && result.reason.is_none() {
                        result.reason = pending.take();
                    }
                    pending = None;
                    run.results.push(result);
                } else if let Some(plan) = line.strip_prefix("1..") {
                    let (count, directive) = split_directive(plan);
                    run.plan = count.parse().ok();
                    if let Some((word, reason)) = directive {
                        if word == "SKIP" {
                            run.skip_all = Some(reason);
                        }
                    }
                } else if let Some(diag) = line.strip_prefix('#') {
                    let diag = diag.trim();
                    if !diag.is_empty() && !diag.starts_with("Totals:") {
                        run.last_diagnostic = Some(diag.to_string());
                        if !is_harness_chatter(diag) {
                            pending = Some(diag.to_string());
                        }
                    }
                }
            }
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_with_directives() {
        let r = parse_result_line("ok 3 fix.var.test # SKIP not enough hugepages").unwrap();
        assert_eq!(r.outcome, Outcome::Skip);
        assert_eq!(r.name, "fix.var.test");
        assert_eq!(r.reason.as_deref(), Some("not enough hugepages"));
        let r = parse_result_line("not ok 12 a.b.c").unwrap();
        assert_eq!((r.outcome, r.name.as_str()), (Outcome::Fail, "a.b.c"));
        let r = parse_result_line("ok 1 # SKIP no driver").unwrap();
        assert_eq!((r.outcome, r.name.as_str()), (Outcome::Skip, "test 1"));
        let r = parse_result_line("ok 2 x.y.z # XFAIL known").unwrap();
        assert_eq!(r.outcome, Outcome::Pass);
        assert!(parse_result_line("okay 1 x").is_none());
        assert!(parse_result_line("ok x y").is_none());
        assert!(parse_result_line("  ok 1 nested").is_none());
    }

    #[test]
    fn truncated_log_has_no_end_and_no_done() {
        let log = parse_boot_log(
            "=== RIG BOOT kernel=6.12.117 uptime=1.2\r\n=== RUN prog edu 0000:00:03.0\r\n\
             TAP version 13\r\n1..2\r\nok 1 a.b.c\r\n",
        );
        assert_eq!(log.kernel_release.as_deref(), Some("6.12.117"));
        assert_eq!(log.runs.len(), 1);
        assert_eq!(log.runs[0].rc, None);
        assert_eq!(log.runs[0].plan, Some(2));
        assert_eq!(log.runs[0].results.len(), 1);
        assert_eq!(log.runs[0].results[0].reason, None);
        assert_eq!(log.done, None);
    }

    #[test]
    fn failure_reason_is_the_last_explanatory_diagnostic() {
        let log = parse_boot_log(
            "=== RUN p edu x\n1..2\n#  RUN           a.b.c ...\n# file.rs:10: expected 0, got -12\n\
             #          FAIL  a.b.c\nnot ok 1 a.b.c\n#  RUN           a.b.d ...\n\
             #          FAIL  a.b.d\nnot ok 2 a.b.d\n",
        );
        let r = &log.runs[0].results;
        assert_eq!(
            r[0].reason.as_deref(),
            Some("file.rs:10: expected 0, got -12")
        );
        assert_eq!(
            r[1].reason, None,
            "no explanation was printed for the second failure"
        );
    }

    #[test]
    fn skip_all_plan_and_dmesg_section() {
        let log = parse_boot_log(
            "=== RUN p igb 0000:02:00.0\n1..0 # SKIP No driver found for device\n\
             === END p igb rc=4 secs=0.5\n=== DMESG p igb\n[ 1.0] WARNING: CPU: 0 PID: 1\n\
             === END DMESG\n=== RIG DONE runs=1 errors=0 uptime=3\n",
        );
        let run = &log.runs[0];
        assert_eq!(run.skip_all.as_deref(), Some("No driver found for device"));
        assert_eq!((run.rc, run.secs), (Some(4), Some(0.5)));
        assert_eq!(run.dmesg.len(), 1);
        assert!(is_kernel_trouble(&run.dmesg[0]));
        assert!(is_kernel_trouble(
            "[   9.1] WARNING: possible circular locking dependency detected"
        ));
        assert!(is_kernel_trouble(
            "[   9.2] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"
        ));
        assert!(!is_kernel_trouble(
            "[   3.2] DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x201000"
        ));
        assert!(!is_kernel_trouble(
            "[   3.3] pcieport 0000:00:04.0: unlocked secondary bus reset"
        ));
        assert_eq!(log.done, Some((1, 0)));
        assert!(log.boot_trouble.is_empty());
    }

    /// Synthesized in `passthru bench map`'s output format (human rows, machine lines, a header).
    const BENCH_SNIPPET: &str = "=== RUN passthru edu bench map --size 4k --iterations 200 0000:00:03.0\r\n\
# bench map: device 0000:00:03.0, 3 open(s) per mode and side (fastest kept), 4 round(s) (best kept), target ratio <= 1.05\r\n\
iommufd                  open+setup       lib        9.120 ms       raw        8.950 ms       ratio 1.019x ok\r\n\
# bench-map: kind=open device=0000:00:03.0 mode=iommufd lib_us=9120.0 raw_us=8950.0 ratio=1.019\r\n\
iommufd                  map+unmap    4K  lib       4110.2 pairs/s  raw       4420.7 pairs/s  ratio 1.076x over target\r\n\
# bench-map: kind=map device=0000:00:03.0 mode=iommufd size=4k lib=4110.2 raw=4420.7 ratio=1.076\r\n\
# bench-map: kind=skip device=0000:00:03.0 mode=vfio_type1_iommu what=map+unmap_1G reason=Hugetlb1G: no 1G hugepages reserved\r\n\
# bench-map: kind=bogus device=x mode=y\r\n\
=== END passthru edu rc=0 secs=12.5\r\n";

    #[test]
    fn bench_lines_are_collected_per_run() {
        let log = parse_boot_log(BENCH_SNIPPET);
        let run = &log.runs[0];
        assert_eq!(run.rc, Some(0));
        assert_eq!(run.bench.len(), 3, "{:#?}", run.bench);
        assert_eq!(run.bench[0].kind, BenchKind::Open);
        assert_eq!(run.bench[0].device, "0000:00:03.0");
        assert_eq!((run.bench[0].lib, run.bench[0].raw), (9120.0, 8950.0));
        assert_eq!(run.bench[1].kind, BenchKind::Map { size: "4k".into() });
        assert!((run.bench[1].ratio - 1.076).abs() < 1e-9);
        assert_eq!(
            run.bench[2].kind,
            BenchKind::Skip {
                what: "map+unmap_1G".into(),
                reason: "Hugetlb1G: no 1G hugepages reserved".into()
            }
        );
        // Bench lines are not KTAP: the run has no results and is judged by its exit code.
        assert!(run.results.is_empty() && run.plan.is_none());
    }

    #[test]
    fn bench_line_round_trips_the_benchmark_format() {
        use crate::bench::map::{machine_line, Row, SIZE_1G};
        use passthru_linux::bdf::Bdf;
        use passthru_linux::IommuMode;
        let bdf = Bdf::parse("0000:02:00.0").unwrap();
        let row = Row::Map {
            mode: IommuMode::VfioType1v2Iommu,
            size: SIZE_1G,
            lib: 3.5,
            raw: 3.0,
        };
        let rec = parse_bench_line(&machine_line(bdf, &row)).unwrap();
        assert_eq!(rec.mode, "vfio_type1v2_iommu");
        assert_eq!(rec.device, "0000:02:00.0");
        assert_eq!(rec.kind, BenchKind::Map { size: "1g".into() });
        assert_eq!((rec.lib, rec.raw), (3.5, 3.0));
        assert!((rec.ratio - 3.0 / 3.5).abs() < 1e-3);
        // Missing fields or numbers that are not numbers are rejected, not guessed.
        assert!(parse_bench_line("# bench-map: kind=open device=x mode=y lib_us=1").is_none());
        assert!(parse_bench_line(
            "# bench-map: kind=open device=x mode=y lib_us=a raw_us=1 ratio=1"
        )
        .is_none());
        assert!(parse_bench_line("# bench map: device 0000:00:03.0").is_none());
    }

    #[test]
    fn kernel_warning_during_boot_is_recorded() {
        let log = parse_boot_log(
            "[    0.5] ------------[ cut here ]------------\n\
             [    0.5] WARNING: CPU: 0 PID: 1 at drivers/iommu/intel/iommu.c:1 x+0x1/0x2\n\
             === RIG BOOT kernel=7.3.4 uptime=1\n",
        );
        assert_eq!(log.boot_trouble.len(), 1);
        assert!(log.boot_trouble[0].contains("intel/iommu.c"));
    }
}
