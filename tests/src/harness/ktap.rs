//! KTAP text, formatted as kselftest_harness.h prints it.

use std::io::Write;

use super::Sink;

fn emit(sink: &Sink, text: &str) {
    // A poisoned lock only means another thread panicked mid-write; keep reporting.
    let mut out = match sink.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    // Output errors (closed pipe) cannot be reported anywhere better; ignore them.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `TAP version 13` and the plan `1..N`.
pub(crate) fn header(sink: &Sink, planned: usize) {
    emit(sink, &format!("TAP version 13\n1..{planned}\n"));
}

/// One `# ` line per line of `msg` (an empty message prints a bare `#`).
pub(crate) fn diag(sink: &Sink, msg: &str) {
    emit(sink, &diag_text(msg));
}

/// The text a `# ` diagnostic of `msg` prints as.
pub fn diag_text(msg: &str) -> String {
    let mut text = String::new();
    let mut lines = msg.trim_end_matches('\n').split('\n').peekable();
    if lines.peek().is_none() {
        text.push_str("#\n");
    }
    for line in lines {
        if line.is_empty() {
            text.push_str("#\n");
        } else {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The final result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Skipped, with the reason.
    Skip(String),
}

/// `#  RUN           name ...`
pub fn run_line(name: &str) -> String {
    format!("#  RUN           {name} ...\n")
}

/// The `#      SKIP      reason` line (if skipped), the `OK`/`FAIL` line and the TAP result
/// line for test number `n`.
pub fn result_text(n: usize, name: &str, verdict: &Verdict) -> String {
    let mut text = String::new();
    match verdict {
        Verdict::Pass => {
            text.push_str(&format!("#            OK  {name}\nok {n} {name}\n"));
        }
        Verdict::Fail => {
            text.push_str(&format!("#          FAIL  {name}\nnot ok {n} {name}\n"));
        }
        Verdict::Skip(reason) => {
            let reason = one_line(reason);
            text.push_str(&format!(
                "#      SKIP      {reason}\n#            OK  {name}\nok {n} {name} # SKIP {reason}\n"
            ));
        }
    }
    text
}

/// The reason as one line (a TAP directive cannot span lines).
fn one_line(reason: &str) -> String {
    let joined: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if joined.is_empty() {
        "unknown".into()
    } else {
        joined.join(" ")
    }
}

/// `# PASSED: P / N tests passed.` (or `FAILED`) and
/// `# Totals: pass:X fail:Y xfail:0 xpass:0 skip:Z error:0`. As upstream, skipped tests count
/// as passed in the first line.
pub fn summary_text(pass: usize, fail: usize, skip: usize) -> String {
    let ran = pass + fail + skip;
    format!(
        "# {}: {} / {} tests passed.\n# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0\n",
        if fail > 0 { "FAILED" } else { "PASSED" },
        pass + skip,
        ran
    )
}

pub(crate) fn write(sink: &Sink, text: &str) {
    emit(sink, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_match_kselftest() {
        assert_eq!(
            result_text(1, "vfio_cdev.bind", &Verdict::Pass),
            "#            OK  vfio_cdev.bind\nok 1 vfio_cdev.bind\n"
        );
        assert_eq!(
            result_text(2, "f.v.t", &Verdict::Fail),
            "#          FAIL  f.v.t\nnot ok 2 f.v.t\n"
        );
        assert_eq!(
            result_text(3, "f.t", &Verdict::Skip("Device does not support reset\n".into())),
            "#      SKIP      Device does not support reset\n#            OK  f.t\nok 3 f.t # SKIP Device does not support reset\n"
        );
        assert_eq!(run_line("a.b"), "#  RUN           a.b ...\n");
    }

    #[test]
    fn skip_reason_is_one_line() {
        let t = result_text(1, "x.y", &Verdict::Skip("a\nb\n".into()));
        assert!(t.ends_with("ok 1 x.y # SKIP a b\n"), "{t}");
        let t = result_text(1, "x.y", &Verdict::Skip(String::new()));
        assert!(t.ends_with("# SKIP unknown\n"), "{t}");
    }

    #[test]
    fn summary_counts() {
        assert_eq!(
            summary_text(2, 1, 3),
            "# FAILED: 5 / 6 tests passed.\n# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:3 error:0\n"
        );
        assert!(summary_text(1, 0, 0).starts_with("# PASSED: 1 / 1 tests passed."));
    }

    #[test]
    fn diag_prefixes_every_line() {
        assert_eq!(diag_text("a\nb"), "# a\n# b\n");
        assert_eq!(diag_text("a\n\nb\n"), "# a\n#\n# b\n");
        assert_eq!(diag_text(""), "#\n");
    }
}
