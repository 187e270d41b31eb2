//! Turning parsed serial logs into verdicts, and verdicts into the result table.
//!
//! Rules (each a way a run can fail even though QEMU exited 0):
//! * a guest panic, a missing `=== RIG DONE` line, a host-side timeout or a `=== RIG ERROR`
//!   fails the boot;
//! * a program without its `=== END` marker fails (the guest stopped inside it);
//! * a program killed by the guest-side timeout, or exiting with a code other than 0 or 4
//!   without reporting a failing test, fails;
//! * fewer KTAP results than its plan announced fails;
//! * a kernel warning/BUG/oops logged while a program ran fails that program;
//! * a program that prints no KTAP (upstream `irq_test`'s style) is judged by its exit code:
//!   0 pass, 4 skip with the reason of its `SKIP:` line, anything else fail with its last
//!   output lines;
//! * runs of one program with identical arguments including `--seed` must announce the same
//!   draws (`Random seed:` and `Injecting interrupts ...` lines), one [`CROSS_RUN`] verdict.
//!
//! Benchmark runs (`passthru bench ...`) are measurements, not tests: they add no PASS rows.
//! One that does not finish with exit 0 and at least one measurement is a rig error (exit 4,
//! everything skipped, is a SKIP); a kernel warning while it ran still fails. Their figures go
//! to a separate section ([`bench_rows`], [`render_bench`]); a ratio over the target is
//! flagged there and never fails the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::plan::{is_bench, mode_of, DEVICES};
use super::serial::{is_kernel_trouble, BenchKind, BootLog, Outcome, ProgramRun};
use crate::bench::map::TARGET_RATIO;

/// One judged test case (or a synthetic one for a program or boot problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Kernel label (its version).
    pub kernel: String,
    /// Program name, or `(boot normal)` / `(boot 1g)` for boot-level problems.
    pub program: String,
    /// IOMMU mode from the test name, or `-`.
    pub mode: String,
    /// Device label.
    pub device: String,
    /// Test name (`fixture.variant.test`) or a synthetic name.
    pub name: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// Skip reason or failure explanation.
    pub reason: Option<String>,
}

/// How the host saw the QEMU process end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostOutcome {
    /// The wall-clock timeout killed QEMU.
    pub timed_out: bool,
    /// QEMU's exit code (`None` if killed by a signal or never started).
    pub qemu_status: Option<i32>,
}

const KILLED_BY_TIMEOUT: i32 = 137;
const NOT_IN_INITRAMFS: i32 = 127;

fn program_verdicts(kernel: &str, run: &ProgramRun, out: &mut Vec<Verdict>) {
    let synth = |name: &str, outcome: Outcome, reason: String| Verdict {
        kernel: kernel.to_string(),
        program: run.program.clone(),
        mode: "-".into(),
        device: run.label.clone(),
        name: name.to_string(),
        outcome,
        reason: Some(reason),
    };
    for r in &run.results {
        out.push(Verdict {
            kernel: kernel.to_string(),
            program: run.program.clone(),
            mode: mode_of(&r.name).to_string(),
            device: run.label.clone(),
            name: r.name.clone(),
            outcome: r.outcome,
            reason: r.reason.clone(),
        });
    }
    let failed_test = run.results.iter().any(|r| r.outcome == Outcome::Fail);
    // A program that printed no KTAP (upstream `irq_test`'s style) explains itself in its last
    // lines, not in `#` diagnostics.
    let non_ktap = run.results.is_empty() && run.plan.is_none_or(|p| p == 0);
    let last_diag = if non_ktap && run.skip_all.is_none() {
        last_lines(run)
    } else {
        run.last_diagnostic
            .clone()
            .or_else(|| run.last_output.clone())
            .unwrap_or_else(|| "(no output)".into())
    };
    match run.rc {
        None => out.push(synth(
            "(no END marker)",
            Outcome::Fail,
            format!(
                "the guest stopped while {} was running (panic, hang or timeout)",
                run.program
            ),
        )),
        Some(KILLED_BY_TIMEOUT) => out.push(synth(
            "(timeout)",
            Outcome::Fail,
            format!("killed by the guest-side timeout; last output: {last_diag}"),
        )),
        Some(NOT_IN_INITRAMFS) => out.push(synth(
            "(not in initramfs)",
            Outcome::Fail,
            "the program is missing from the initramfs".into(),
        )),
        Some(rc) if rc != 0 && rc != 4 && !failed_test => out.push(synth(
            "(exit status)",
            Outcome::Fail,
            format!("exit code {rc} without a failing test; last output: {last_diag}"),
        )),
        _ => {}
    }
    if let (Some(plan), Some(rc)) = (run.plan, run.rc) {
        if run.results.len() < plan && rc != KILLED_BY_TIMEOUT {
            out.push(synth(
                "(missing results)",
                Outcome::Fail,
                format!(
                    "plan announced {plan} tests, {} reported",
                    run.results.len()
                ),
            ));
        }
    }
    if non_ktap {
        match run.rc {
            Some(0) => out.push(synth(
                "(exit status)",
                Outcome::Pass,
                "exit code 0 (no KTAP results)".into(),
            )),
            Some(4) => out.push(synth(
                "(whole program)",
                Outcome::Skip,
                run.skip_all
                    .clone()
                    .or_else(|| skip_line(run))
                    .unwrap_or_else(|| format!("exit code 4: {last_diag}")),
            )),
            _ => {}
        }
    }
    for line in run.dmesg.iter().filter(|l| is_kernel_trouble(l)) {
        out.push(synth(
            "(kernel warning)",
            Outcome::Fail,
            format!("kernel log while it ran: {}", line.trim()),
        ));
    }
}

/// The last output lines of a run, joined with ` | ` (one table line).
fn last_lines(run: &ProgramRun) -> String {
    if run.tail.is_empty() {
        "(no output)".into()
    } else {
        run.tail.join(" | ")
    }
}

/// The reason of a non-KTAP skip: the text after the last `SKIP:` line (upstream KVM selftests
/// and `irq_test` print `SKIP: reason`, kselftest `1..0 # SKIP reason`, handled as KTAP).
fn skip_line(run: &ProgramRun) -> Option<String> {
    run.tail.iter().rev().find_map(|l| {
        let rest = l.strip_prefix("SKIP")?;
        let reason = rest.trim_start_matches([':', ' ']).trim();
        (!reason.is_empty()).then(|| reason.to_string())
    })
}

/// The lines of a run that say what its random draws were: `Random seed: ...` and
/// `Injecting interrupts for GSI g (guest vector v) n times` (upstream `irq_test`'s output).
fn draws(run: &ProgramRun) -> Vec<&str> {
    run.head
        .iter()
        .filter(|l| l.starts_with("Random seed:") || l.starts_with("Injecting interrupts"))
        .map(String::as_str)
        .collect()
}

/// Program column of the checks across runs (left out of the LAVA comparison, which judges
/// runs one by one).
pub const CROSS_RUN: &str = "(cross-run)";

/// Reproducibility of `--seed`: runs of one program with identical arguments that include
/// `--seed` must announce identical draws (seed, GSI, vector). One verdict per such group of
/// two or more runs that all exited 0 (a failed run is judged on its own already).
fn seed_verdicts(kernel: &str, log: &BootLog, out: &mut Vec<Verdict>) {
    let mut groups: BTreeMap<(&str, &str), Vec<&ProgramRun>> = BTreeMap::new();
    for run in &log.runs {
        if run
            .args
            .split_whitespace()
            .any(|a| a == "--seed" || a.starts_with("--seed="))
        {
            groups
                .entry((run.program.as_str(), run.args.as_str()))
                .or_default()
                .push(run);
        }
    }
    for ((program, args), runs) in groups {
        if runs.len() < 2 || runs.iter().any(|r| r.rc != Some(0)) {
            continue;
        }
        let first = draws(runs[0]);
        let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
        let (outcome, reason) = if first.len() < 2 {
            (
                Outcome::Fail,
                format!(
                    "{program} {args} [{}] printed no `Random seed:` and `Injecting interrupts` lines",
                    labels[0]
                ),
            )
        } else if let Some(r) = runs[1..].iter().find(|r| draws(r) != first) {
            (
                Outcome::Fail,
                format!(
                    "same arguments `{args}`, different draws: [{}] {} vs [{}] {}",
                    labels[0],
                    first.join(" / "),
                    r.label,
                    draws(r).join(" / ")
                ),
            )
        } else {
            (
                Outcome::Pass,
                format!("[{}]: {}", labels.join(", "), first.join(" / ")),
            )
        };
        out.push(Verdict {
            kernel: kernel.to_string(),
            program: CROSS_RUN.into(),
            mode: "-".into(),
            device: program.to_string(),
            name: "(same --seed, same draws)".into(),
            outcome,
            reason: Some(reason),
        });
    }
}

/// Verdicts of a benchmark run: nothing when it measured something and exited 0, a rig error
/// when it did not run to completion, a SKIP when it measured nothing (exit 4); kernel warnings
/// while it ran fail as for any program.
fn bench_verdicts(kernel: &str, boot: &str, run: &ProgramRun, out: &mut Vec<Verdict>) {
    let measured = run
        .bench
        .iter()
        .any(|b| !matches!(b.kind, BenchKind::Skip { .. }));
    let last = run
        .last_output
        .clone()
        .unwrap_or_else(|| "(no output)".into());
    let what = format!("{} {} [{}]", run.program, run.args, run.label);
    let problem = match run.rc {
        Some(0) if measured => None,
        Some(0) => Some(format!("{what} exited 0 without a measurement")),
        Some(4) => {
            out.push(Verdict {
                kernel: kernel.to_string(),
                program: run.program.clone(),
                mode: "-".into(),
                device: run.label.clone(),
                name: "(bench skipped)".into(),
                outcome: Outcome::Skip,
                reason: Some(format!("{what}: nothing measured; last output: {last}")),
            });
            None
        }
        None => Some(format!("{what} never finished (no END marker)")),
        Some(rc) => Some(format!(
            "{what} failed with exit code {rc}; last output: {last}"
        )),
    };
    if let Some(reason) = problem {
        out.push(Verdict {
            kernel: kernel.to_string(),
            program: format!("(boot {boot})"),
            mode: "-".into(),
            device: run.label.clone(),
            name: "(rig error)".into(),
            outcome: Outcome::Fail,
            reason: Some(format!("benchmark: {reason}")),
        });
    }
    for line in run.dmesg.iter().filter(|l| is_kernel_trouble(l)) {
        out.push(Verdict {
            kernel: kernel.to_string(),
            program: run.program.clone(),
            mode: "-".into(),
            device: run.label.clone(),
            name: "(kernel warning)".into(),
            outcome: Outcome::Fail,
            reason: Some(format!("kernel log while it ran: {}", line.trim())),
        });
    }
}

/// Judges one boot's log. `boot` names the boot (`normal`, `1g`).
pub fn judge_boot(kernel: &str, boot: &str, log: &BootLog, host: HostOutcome) -> Vec<Verdict> {
    let mut out = Vec::new();
    for run in &log.runs {
        if is_bench(&run.program, &run.args) {
            bench_verdicts(kernel, boot, run, &mut out);
        } else {
            program_verdicts(kernel, run, &mut out);
        }
    }
    seed_verdicts(kernel, log, &mut out);
    let boot_fail = |name: &str, reason: String| Verdict {
        kernel: kernel.to_string(),
        program: format!("(boot {boot})"),
        mode: "-".into(),
        device: "-".into(),
        name: name.to_string(),
        outcome: Outcome::Fail,
        reason: Some(reason),
    };
    if let Some(panic) = &log.panic {
        out.push(boot_fail("(guest panic)", panic.clone()));
    }
    if host.timed_out {
        out.push(boot_fail(
            "(host timeout)",
            "QEMU was stopped by the wall-clock timeout (or killed by a signal)".into(),
        ));
    } else if let Some(status) = host.qemu_status.filter(|s| *s != 0) {
        out.push(boot_fail(
            "(qemu exit)",
            format!("QEMU exited with {status}"),
        ));
    }
    if log.done.is_none() {
        out.push(boot_fail(
            "(no RIG DONE)",
            "the guest never printed its final result line".into(),
        ));
    }
    for t in &log.boot_trouble {
        out.push(boot_fail("(kernel warning)", t.clone()));
    }
    for e in &log.rig_errors {
        out.push(boot_fail("(rig error)", e.clone()));
    }
    out
}

/// A verdict for a known program that was not built in this tree.
pub fn not_built(kernel: &str, program: &str) -> Verdict {
    Verdict {
        kernel: kernel.to_string(),
        program: program.to_string(),
        mode: "-".into(),
        device: "-".into(),
        name: "(not built)".into(),
        outcome: Outcome::Skip,
        reason: Some("no such binary in the passthru crate yet".into()),
    }
}

/// Counts per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Skipped.
    pub skip: usize,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Skip => self.skip += 1,
        }
    }
}

/// Totals over all verdicts.
pub fn totals(verdicts: &[Verdict]) -> Counts {
    let mut c = Counts::default();
    for v in verdicts {
        c.add(v.outcome);
    }
    c
}

/// Renders the kernel × program × mode × device table, then every skip with its reason, every
/// failure, and a final `RESULT:` line.
pub fn render(verdicts: &[Verdict]) -> String {
    type Key = (String, String, String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut rows: BTreeMap<Key, Counts> = BTreeMap::new();
    for v in verdicts {
        let key = (
            v.kernel.clone(),
            v.program.clone(),
            v.mode.clone(),
            v.device.clone(),
        );
        if !rows.contains_key(&key) {
            order.push(key.clone());
        }
        rows.entry(key).or_default().add(v.outcome);
    }
    let head = ["KERNEL", "PROGRAM", "MODE", "DEVICE"];
    let mut w = head.map(str::len);
    for (k, p, m, d) in &order {
        for (i, s) in [k, p, m, d].iter().enumerate() {
            w[i] = w[i].max(s.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>4}  {:>4}  {:>4}",
        head[0],
        head[1],
        head[2],
        head[3],
        "PASS",
        "FAIL",
        "SKIP",
        w0 = w[0],
        w1 = w[1],
        w2 = w[2],
        w3 = w[3]
    );
    for key in &order {
        let c = rows[key];
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>4}  {:>4}  {:>4}",
            key.0,
            key.1,
            key.2,
            key.3,
            c.pass,
            c.fail,
            c.skip,
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
    for (title, want) in [("SKIPPED", Outcome::Skip), ("FAILED", Outcome::Fail)] {
        let list: Vec<&Verdict> = verdicts.iter().filter(|v| v.outcome == want).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", list.len());
        for v in list {
            let _ = writeln!(
                out,
                "  {} {} [{}] {}: {}",
                v.kernel,
                v.program,
                v.device,
                v.name,
                v.reason.as_deref().unwrap_or("-")
            );
        }
    }
    let t = totals(verdicts);
    let _ = writeln!(
        out,
        "\nRESULT: {} pass={} fail={} skip={}",
        if t.fail == 0 && t.pass > 0 {
            "PASS"
        } else {
            "FAIL"
        },
        t.pass,
        t.fail,
        t.skip
    );
    out
}

/// One benchmark figure of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// Kernel label.
    pub kernel: String,
    /// Device label (from the topology; the BDF if unknown).
    pub device: String,
    /// IOMMU mode.
    pub mode: String,
    /// The measurement.
    pub kind: BenchKind,
    /// Library figure (pairs/s for map+unmap, µs for open+setup).
    pub lib: f64,
    /// Raw-ioctl figure, same unit.
    pub raw: f64,
    /// Library time / raw time.
    pub ratio: f64,
}

/// The benchmark figures of one boot's log.
pub fn bench_rows(kernel: &str, log: &BootLog) -> Vec<BenchRow> {
    let label = |bdf: &str| {
        DEVICES
            .iter()
            .find(|d| d.bdf == bdf)
            .map_or_else(|| bdf.to_string(), |d| d.label.to_string())
    };
    log.runs
        .iter()
        .flat_map(|r| &r.bench)
        .map(|b| BenchRow {
            kernel: kernel.to_string(),
            device: label(&b.device),
            mode: b.mode.clone(),
            kind: b.kind.clone(),
            lib: b.lib,
            raw: b.raw,
            ratio: b.ratio,
        })
        .collect()
}

/// Left-aligned text table with two-space gaps; columns listed in `right` are right-aligned.
fn table(head: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let heads: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&heads).chain(rows) {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right.contains(&i) {
                    format!("{c:>w$}", w = w[i])
                } else {
                    format!("{c:<w$}", w = w[i])
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

fn ratio_cell(ratio: f64) -> String {
    if ratio <= TARGET_RATIO {
        format!("{ratio:.3}x")
    } else {
        format!("{ratio:.3}x OVER")
    }
}

/// Renders the benchmarks section: kernel × mode × size → map+unmap pairs/s (library, raw,
/// ratio), kernel × device × mode → open+setup µs, and the skipped measurements. Ratios are
/// library time / raw time; those over the target are marked `OVER` (a flag, not a failure).
/// Empty when there are no rows.
pub fn render_bench(rows: &[BenchRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nBENCHMARKS (passthru bench map under TCG; ratio = library time / raw-ioctl time, \
         target <= {TARGET_RATIO}x; OVER is flagged, never a failure)\n"
    );
    let map: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            BenchKind::Map { size } => Some(vec![
                r.kernel.clone(),
                r.mode.clone(),
                size.clone(),
                r.device.clone(),
                format!("{:.1}", r.lib),
                format!("{:.1}", r.raw),
                ratio_cell(r.ratio),
            ]),
            _ => None,
        })
        .collect();
    if !map.is_empty() {
        out.push_str("map+unmap (pairs/s, best round):\n");
        out.push_str(&table(
            &["KERNEL", "MODE", "SIZE", "DEVICE", "LIB", "RAW", "RATIO"],
            &map,
            &[4, 5],
        ));
    }
    let open: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == BenchKind::Open)
        .map(|r| {
            vec![
                r.kernel.clone(),
                r.device.clone(),
                r.mode.clone(),
                format!("{:.1}", r.lib),
                format!("{:.1}", r.raw),
                ratio_cell(r.ratio),
            ]
        })
        .collect();
    if !open.is_empty() {
        out.push_str("open+setup (us, fastest open):\n");
        out.push_str(&table(
            &["KERNEL", "DEVICE", "MODE", "LIB_US", "RAW_US", "RATIO"],
            &open,
            &[3, 4],
        ));
    }
    let skips: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            BenchKind::Skip { what, reason } => Some(format!(
                "  {} {} [{}] {what}: SKIP {reason}",
                r.kernel, r.mode, r.device
            )),
            _ => None,
        })
        .collect();
    if !skips.is_empty() {
        let _ = writeln!(out, "not measured ({}):", skips.len());
        for s in skips {
            let _ = writeln!(out, "{s}");
        }
    }
    let measured = rows
        .iter()
        .filter(|r| !matches!(r.kind, BenchKind::Skip { .. }))
        .count();
    let over = rows
        .iter()
        .filter(|r| !matches!(r.kind, BenchKind::Skip { .. }) && r.ratio > TARGET_RATIO)
        .count();
    let _ = writeln!(
        out,
        "BENCH: {measured} measurement(s), {over} over the {TARGET_RATIO}x target"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rig::serial::parse_boot_log;

    const SANITY: &str = include_str!("testdata/sanity-6.12.log");
    const PANIC: &str = include_str!("testdata/panic-6.12.log");
    const PROGRAMS: &str = include_str!("testdata/programs-synthesized.log");
    const SETUP_LIST: &str = include_str!("testdata/setup-list-7.3.log");
    /// Real boots of the matrix (6 programs from the `programs` branch, 2026-11-25).
    const FULL_612: &str = include_str!("testdata/full-matrix-6.12-normal.log");
    const FULL_73_1G: &str = include_str!("testdata/full-matrix-7.3-1g.log");
    /// Benchmark runs: measured (one ratio over target), failed, all-skipped with a kernel
    /// warning, and cut off (no END).
    const BENCH: &str = include_str!("testdata/bench-synthesized.log");
    /// The benchmark runs of a real rig run on 6.12.117 (2026-11-25, other runs cut out).
    const BENCH_612: &str = include_str!("testdata/bench-6.12-normal.log");
    const BENCH_612_1G: &str = include_str!("testdata/bench-6.12-1g.log");

    /// `irq_test` runs (pass, SKIP: reason, failure, two seed pairs) and a guest driver test run.
    const GUEST: &str = include_str!("testdata/guest-programs-synthesized.log");

    /// The KVM guest program runs of a real rig run (6.12.118, nested KVM, 2026-12-03).
    const GUEST_612: &str = include_str!("testdata/guest-programs-6.12-normal.log");

    fn judge(text: &str) -> Vec<Verdict> {
        judge_boot(
            "6.12.117",
            "normal",
            &parse_boot_log(text),
            HostOutcome::default(),
        )
    }

    /// Whether the table has a row with exactly these cells (column widths vary).
    fn has_row(table: &str, cells: &[&str]) -> bool {
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
    }

    #[test]
    fn non_ktap_programs_are_judged_by_exit_code_with_their_own_words() {
        let v = judge_boot(
            "7.3.4",
            "normal",
            &parse_boot_log(GUEST),
            HostOutcome::default(),
        );
        let table = render(&v);
        let find = |device: &str| {
            v.iter()
                .find(|x| x.program == "irq_test" && x.device == device)
                .unwrap_or_else(|| panic!("no irq_test [{device}] verdict: {table}"))
        };
        // Exit 0: one PASS row per option set, named by its label.
        assert!(
            has_row(
                &table,
                &["7.3.4", "irq_test", "-", "eventfd", "1", "0", "0"]
            ),
            "{table}"
        );
        assert_eq!(find("eventfd").name, "(exit status)");
        // Exit 4: SKIP with the reason of the `SKIP:` line, not an earlier `#` line.
        let skip = find("igb-iommufd-posted");
        assert_eq!(skip.outcome, Outcome::Skip);
        assert_eq!(
            skip.reason.as_deref(),
            Some("no posted-interrupt support on this host (AMD without AVIC: kvm_amd avic=0)")
        );
        // Exit 1: FAIL carrying the last lines (the failure names vCPU, GSI, vector, NMI).
        let fail = find("eventfd-v2-nmi-empty-xapic");
        assert_eq!(
            (fail.outcome, fail.name.as_str()),
            (Outcome::Fail, "(exit status)")
        );
        let why = fail.reason.as_deref().unwrap();
        assert!(
            why.starts_with(
                "exit code 1 without a failing test; last output: Random seed: 0x99 | Injecting"
            ),
            "{why}"
        );
        assert!(
            why.contains("FAIL: IRQ 12/200: vCPU 0 (APIC id 0), NMI, GSI 300"),
            "{why}"
        );
        // Same arguments with --seed: same draws pass, different draws fail.
        let seeds: Vec<&Verdict> = v.iter().filter(|x| x.program == CROSS_RUN).collect();
        assert_eq!(seeds.len(), 2, "{seeds:#?}");
        let ok = seeds.iter().find(|x| x.outcome == Outcome::Pass).unwrap();
        assert_eq!(
            ok.reason.as_deref(),
            Some("[eventfd-seed-1, eventfd-seed-2]: Random seed: 0x5eed / Injecting interrupts for GSI 2001 (guest vector 0x9c) 100 times")
        );
        let bad = seeds.iter().find(|x| x.outcome == Outcome::Fail).unwrap();
        assert!(
            bad.reason.as_deref().unwrap().contains("GSI 40")
                && bad.reason.as_deref().unwrap().contains("[bad-seed-2]"),
            "{bad:?}"
        );
        // The guest driver test is KTAP: its modes come from the test names.
        for mode in ["iommufd", "vfio_type1_iommu"] {
            assert!(
                has_row(
                    &table,
                    &[
                        "7.3.4",
                        "vfio_pci_guest_driver_test",
                        mode,
                        "igb",
                        "2",
                        "0",
                        "0"
                    ]
                ),
                "{table}"
            );
        }
        let t = totals(&v);
        assert_eq!((t.pass, t.fail, t.skip), (1 + 4 + 4 + 1, 2, 1), "{table}");
    }

    #[test]
    fn recorded_guest_programs_on_6_12_under_nested_kvm() {
        let log = parse_boot_log(GUEST_612);
        assert!(log.notes.iter().any(|n| n.starts_with("/dev/kvm ready")
            && n.contains("kvm_amd: Nested Virtualization enabled")));
        let v = judge_boot("6.12.118", "normal", &log, HostOutcome::default());
        let table = render(&v);
        for (label, _) in crate::rig::plan::irq_test_runs() {
            let want = if label.ends_with("-posted") {
                ["0", "0", "1"]
            } else {
                ["1", "0", "0"]
            };
            let mut row = vec!["6.12.118", "irq_test", "-", label];
            row.extend(want);
            assert!(has_row(&table, &row), "{label}: {table}");
        }
        assert!(
            table.contains("irq_test [igb-iommufd-posted] (whole program): no posted-interrupt support on this host"),
            "{table}"
        );
        assert!(
            has_row(
                &table,
                &["6.12.118", CROSS_RUN, "-", "irq_test", "1", "0", "0"]
            ),
            "{table}"
        );
        for device in ["edu", "igb"] {
            for mode in crate::rig::plan::GUEST_MODES {
                assert!(
                    has_row(
                        &table,
                        &[
                            "6.12.118",
                            "vfio_pci_guest_driver_test",
                            mode,
                            device,
                            "7",
                            "0",
                            "0"
                        ]
                    ),
                    "{device} {mode}: {table}"
                );
            }
        }
        assert_eq!(totals(&v).fail, 0, "{table}");
    }

    #[test]
    fn a_missing_dev_kvm_fails_the_boot() {
        let text = "=== RIG BOOT kernel=6.12.118 uptime=1\n\
                    === RIG ERROR /dev/kvm is missing or does not open: the KVM guest programs cannot run (CPU flag: neither svm nor vmx; boot log: no kvm messages)\n\
                    === RUN irq_test eventfd\n\
                    SKIP: /dev/kvm: No such file or directory\n\
                    === END irq_test eventfd rc=4 secs=0.01\n\
                    === RIG DONE runs=1 errors=1\n";
        let v = judge(text);
        let table = render(&v);
        assert!(
            table.contains("(boot normal) [-] (rig error): /dev/kvm is missing"),
            "{table}"
        );
        assert!(
            table.contains(
                "irq_test [eventfd] (whole program): /dev/kvm: No such file or directory"
            ),
            "{table}"
        );
        assert!(
            table.ends_with("RESULT: FAIL pass=0 fail=1 skip=1\n"),
            "{table}"
        );
    }

    #[test]
    fn recorded_sanity_boot_passes() {
        let v = judge(SANITY);
        let t = totals(&v);
        assert_eq!((t.pass, t.fail, t.skip), (22, 0, 0), "{v:#?}");
        let table = render(&v);
        assert!(
            has_row(
                &table,
                &["6.12.117", "rig_sanity", "-", "all", "22", "0", "0"]
            ),
            "{table}"
        );
        assert!(table.ends_with("RESULT: PASS pass=22 fail=0 skip=0\n"));
    }

    #[test]
    fn recorded_boot_with_passthru_setup_and_list() {
        let log = parse_boot_log(SETUP_LIST);
        assert_eq!(log.kernel_release.as_deref(), Some("7.3.4"));
        assert!(log.rig_errors.is_empty());
        assert_eq!(log.runs.len(), 2);
        let list = &log.runs[1];
        assert_eq!((list.program.as_str(), list.rc), ("passthru", Some(0)));
        // `passthru list` prints a table, not KTAP: judged by its exit code.
        assert!(list.results.is_empty() && list.plan.is_none());
        let v = judge_boot("7.3.4", "normal", &log, HostOutcome::default());
        let table = render(&v);
        assert!(
            has_row(&table, &["7.3.4", "rig_sanity", "-", "all", "22", "0", "0"]),
            "{table}"
        );
        assert!(
            has_row(&table, &["7.3.4", "passthru", "-", "all", "1", "0", "0"]),
            "{table}"
        );
        assert!(table.ends_with("RESULT: PASS pass=23 fail=0 skip=0\n"));
    }

    #[test]
    fn recorded_full_matrix_boot_on_6_12() {
        let log = parse_boot_log(FULL_612);
        assert_eq!(log.done, Some((12, 0)));
        assert_eq!(log.runs.len(), 12);
        assert!(log.runs.iter().all(|r| r.rc == Some(0)));
        let v = judge_boot("6.12.117", "normal", &log, HostOutcome::default());
        let table = render(&v);
        for mode in crate::rig::plan::IOMMU_MODES {
            assert!(
                has_row(
                    &table,
                    &[
                        "6.12.117",
                        "vfio_dma_mapping_mmio_test",
                        mode,
                        "e1000e",
                        "3",
                        "0",
                        "0"
                    ]
                ),
                "{mode}: {table}"
            );
        }
        // 6.12 has no VF token on the cdev path: those 9 cases skip, with the reason listed.
        assert!(has_row(
            &table,
            &[
                "6.12.117",
                "vfio_pci_sriov_uapi_test",
                "iommufd",
                "igb",
                "0",
                "0",
                "9"
            ]
        ));
        assert!(table.contains(
            "[igb] vfio_pci_sriov_uapi_test.iommufd_null_uuid.override_token: 0000:02:10.0: kernel 6.12 has no VF-token support"
        ));
        let t = totals(&v);
        assert_eq!((t.fail, t.skip), (0, 12), "{table}");
        assert!(table.ends_with(&format!("RESULT: PASS pass={} fail=0 skip=12\n", t.pass)));
    }

    #[test]
    fn recorded_1g_boot_on_7_3_maps_1g_pages_in_every_mode() {
        let log = parse_boot_log(FULL_73_1G);
        assert!(log.notes.iter().any(|n| n == "hugepages 2M=32 1G=1"));
        let v = judge_boot("7.3.4", "1g", &log, HostOutcome::default());
        let table = render(&v);
        assert!(
            has_row(&table, &["7.3.4", "rig_sanity", "-", "all", "23", "0", "0"]),
            "{table}"
        );
        for mode in crate::rig::plan::IOMMU_MODES {
            assert!(
                has_row(
                    &table,
                    &["7.3.4", "vfio_dma_mapping_test", mode, "edu", "1", "0", "0"]
                ),
                "{mode}: {table}"
            );
        }
        assert_eq!(totals(&v).fail, 0);
    }

    #[test]
    fn benchmark_runs_are_measurements_not_tests() {
        let log = parse_boot_log(BENCH);
        let v = judge_boot("7.3.4", "normal", &log, HostOutcome::default());
        // The edu run measured and exited 0: no verdict at all, even with a ratio over target.
        assert!(v
            .iter()
            .all(|v| v.device != "edu" || v.name == "(rig error)"));
        let names: Vec<(&str, &str, &str)> = v
            .iter()
            .map(|v| (v.program.as_str(), v.device.as_str(), v.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("(boot normal)", "igb", "(rig error)"),
                ("passthru", "e1000e", "(bench skipped)"),
                ("passthru", "e1000e", "(kernel warning)"),
                ("(boot normal)", "edu", "(rig error)"),
                ("(boot normal)", "-", "(no RIG DONE)"),
            ]
        );
        assert!(v[0].reason.as_deref().unwrap().contains(
            "failed with exit code 1; last output: # FAIL vfio_type1_iommu: open+setup: raw open cdev"
        ));
        assert!(v[3].reason.as_deref().unwrap().contains("--size 1g"));
        assert!(v[3].reason.as_deref().unwrap().contains("never finished"));
        let t = totals(&v);
        assert_eq!((t.pass, t.fail, t.skip), (0, 4, 1));
    }

    #[test]
    fn benchmark_section_lists_figures_and_flags_ratios() {
        let log = parse_boot_log(BENCH);
        let rows = bench_rows("7.3.4", &log);
        assert_eq!(rows.len(), 6);
        let text = render_bench(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("BENCHMARKS "), "{text}");
        assert_eq!(lines[2], "map+unmap (pairs/s, best round):");
        assert!(has_row(
            &text,
            &["KERNEL", "MODE", "SIZE", "DEVICE", "LIB", "RAW", "RATIO"]
        ));
        assert!(
            has_row(
                &text,
                &["7.3.4", "iommufd", "4k", "edu", "4110.2", "4420.7", "1.076x", "OVER"]
            ),
            "{text}"
        );
        assert!(has_row(
            &text,
            &["7.3.4", "iommufd", "2m", "edu", "2500.0", "2510.0", "1.004x"]
        ));
        // Open+setup per device, labelled from the topology.
        assert!(has_row(
            &text,
            &["7.3.4", "edu", "iommufd", "9120.0", "8950.0", "1.019x"]
        ));
        assert!(has_row(
            &text,
            &["7.3.4", "igb", "iommufd", "12000.0", "11900.0", "1.008x"]
        ));
        assert!(text.contains("not measured (2):\n"));
        assert!(text.contains(
            "  7.3.4 vfio_type1_iommu [edu] open+setup: SKIP /dev/vfio/vfio: No such file or directory\n"
        ));
        assert!(text.ends_with("BENCH: 4 measurement(s), 1 over the 1.05x target\n"));
        // Map rows come before open rows, and the numeric columns are right-aligned.
        let map_at = text.find("map+unmap (").unwrap();
        let open_at = text.find("open+setup (").unwrap();
        assert!(map_at < open_at);
        let lib_col = |needle: &str| {
            let l = lines.iter().find(|l| l.contains(needle)).unwrap();
            l.find(needle).unwrap() + needle.len()
        };
        assert_eq!(lib_col(" 4110.2"), lib_col(" 2500.0"));
        assert_eq!(render_bench(&[]), "");
    }

    #[test]
    fn recorded_benchmark_boots_on_6_12() {
        let normal = parse_boot_log(BENCH_612);
        let huge = parse_boot_log(BENCH_612_1G);
        // Measurements only: no verdicts, not even passes.
        assert_eq!(
            judge_boot("6.12.117", "normal", &normal, HostOutcome::default()),
            []
        );
        assert_eq!(
            judge_boot("6.12.117", "1g", &huge, HostOutcome::default()),
            []
        );
        let mut rows = bench_rows("6.12.117", &normal);
        // edu: 5 modes x (open + 4k + 2m); igb and e1000e: 5 opens each.
        assert_eq!(rows.len(), 25);
        rows.extend(bench_rows("6.12.117", &huge));
        assert_eq!(rows.len(), 30);
        let text = render_bench(&rows);
        for mode in crate::rig::plan::IOMMU_MODES {
            for size in ["4k", "2m", "1g"] {
                let n = text
                    .lines()
                    .filter(|l| {
                        let c: Vec<&str> = l.split_whitespace().collect();
                        c.len() >= 4 && c[1] == mode && c[2] == size && c[3] == "edu"
                    })
                    .count();
                assert_eq!(n, 1, "{mode} {size}: {text}");
            }
            for dev in ["edu", "igb", "e1000e"] {
                assert!(
                    text.lines().any(|l| {
                        let c: Vec<&str> = l.split_whitespace().collect();
                        c.len() >= 6 && c[1] == dev && c[2] == mode
                    }),
                    "{dev} {mode}: {text}"
                );
            }
        }
        assert!(has_row(
            &text,
            &[
                "6.12.117",
                "iommufd_compat_type1",
                "1g",
                "edu",
                "2.9",
                "2.9",
                "0.981x"
            ]
        ));
        assert!(has_row(
            &text,
            &[
                "6.12.117",
                "edu",
                "iommufd_compat_type1v2",
                "1852.7",
                "1434.6",
                "1.291x",
                "OVER"
            ]
        ));
        assert!(
            text.ends_with("BENCH: 30 measurement(s), 5 over the 1.05x target\n"),
            "{text}"
        );
    }

    #[test]
    fn recorded_panic_boot_fails() {
        let log = parse_boot_log(PANIC);
        assert!(log
            .panic
            .as_deref()
            .unwrap()
            .contains("Attempted to kill init"));
        let v = judge_boot("6.12.117", "normal", &log, HostOutcome::default());
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["(guest panic)", "(no RIG DONE)"]);
        assert!(render(&v).contains("RESULT: FAIL pass=0 fail=2 skip=0"));
    }

    #[test]
    fn truncated_recorded_boot_fails_the_running_program() {
        // Cut the recorded sanity boot in the middle of its KTAP, as a hang or timeout would.
        let cut = SANITY.find("ok 12 ").unwrap();
        let log = parse_boot_log(&SANITY[..cut]);
        let host = HostOutcome {
            timed_out: true,
            qemu_status: None,
        };
        let v = judge_boot("6.12.117", "normal", &log, host);
        let fails: Vec<&str> = v
            .iter()
            .filter(|v| v.outcome == Outcome::Fail)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            fails,
            ["(no END marker)", "(host timeout)", "(no RIG DONE)"]
        );
        assert_eq!(totals(&v).pass, 11);
    }

    #[test]
    fn program_log_modes_skips_and_failures() {
        let v = judge(PROGRAMS);
        let table = render(&v);
        // Per-mode rows of a kselftest-style program.
        let row = |cells: &[&str]| has_row(&table, cells);
        assert!(
            row(&[
                "6.12.117",
                "vfio_dma_mapping_test",
                "vfio_type1_iommu",
                "edu",
                "2",
                "0",
                "1"
            ]),
            "{table}"
        );
        assert!(row(&[
            "6.12.117",
            "vfio_dma_mapping_test",
            "iommufd",
            "edu",
            "1",
            "1",
            "0"
        ]));
        assert!(table.contains(
            "[edu] vfio_dma_mapping_test.iommufd_anonymous_hugetlb_2mb.dma_map_unmap: vfio_dma_mapping_test.c:190:dma_map_unmap:Expected 0 (0) == rc (-12)"
        ));
        // Every skip reason is listed.
        assert!(table.contains(
            "6.12.117 vfio_dma_mapping_test [edu] vfio_dma_mapping_test.vfio_type1_iommu_anonymous_hugetlb_2mb.dma_map_unmap: Not enough hugepages"
        ));
        assert!(table
            .contains("vfio_pci_driver_test [igb] (whole program): No driver found for device"));
        // Exit code 1 with a reported failure adds nothing; exit 2 without one fails.
        assert!(table.contains("vfio_iommufd_setup_test [edu] (exit status): exit code 2"));
        assert!(
            table.contains("(kernel warning): kernel log while it ran: [   12.1] WARNING: CPU: 0")
        );
        assert!(table.contains(
            "vfio_pci_device_test [e1000e] (missing results): plan announced 3 tests, 2 reported"
        ));
        // A program without KTAP is judged by its exit code.
        assert!(row(&["6.12.117", "passthru", "-", "all", "1", "0", "0"]));
        assert!(
            table.ends_with("RESULT: FAIL pass=7 fail=4 skip=2\n"),
            "{table}"
        );
    }
}
