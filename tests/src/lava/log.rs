//! Reading LAVA's results: a `lava-run` log (its stderr), a lava-server job log (`output.yaml`,
//! the same records as a block sequence) or a lava-server results export (`/results/<job>/yaml`).
//!
//! In a log, every record is a flow mapping with `lvl` and `msg`. `lvl: results` records whose
//! `definition` is not `lava` are test cases (`case`, `result`, and `set` inside a test set);
//! `definition: lava` records are the dispatcher's own verdicts, among them one per test
//! definition run (named after the suite; `fail` when the run did not reach its end) and the
//! final `job` record. `lvl: target` records are the device's console, line by line: they carry
//! the `<LAVA_SIGNAL_...>` markers and the KTAP the programs printed, from which the KTAP plans
//! (`1..N`) are read. Failed test cases change neither `lava-run`'s exit code nor the job
//! verdict, so the cases must be read.

use std::collections::BTreeMap;

use super::flow::{self, Value};
use crate::rig::serial::{parse_boot_log, TestResult};

/// A test case's result as LAVA records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LavaResult {
    /// `pass`.
    Pass,
    /// `fail`.
    Fail,
    /// `skip`.
    Skip,
    /// `unknown` or anything else.
    Unknown,
}

impl LavaResult {
    /// From LAVA's result word.
    pub fn parse(word: &str) -> Self {
        match word {
            "pass" => LavaResult::Pass,
            "fail" => LavaResult::Fail,
            "skip" => LavaResult::Skip,
            _ => LavaResult::Unknown,
        }
    }
}

/// One test case LAVA recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LavaCase {
    /// Test suite: the definition's run name (`0_passthru-normal`).
    pub suite: String,
    /// Test set (`lava-test-set start NAME`), if any.
    pub set: Option<String>,
    /// Test case name.
    pub name: String,
    /// The result.
    pub result: LavaResult,
}

/// One dispatcher verdict (`definition: lava`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionVerdict {
    /// The action (`job`, `lava-test-shell`, a suite name, ...).
    pub name: String,
    /// `pass` or `fail`.
    pub result: String,
    /// `error_type: error_msg`, if given.
    pub error: Option<String>,
}

/// What the console showed for one test set: its KTAP plan and top-level results, read with
/// the rig's serial-log parser (so failure reasons are the same diagnostics the rig shows).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsoleRun {
    /// The KTAP plan count (`1..N`), if printed.
    pub plan: Option<usize>,
    /// Top-level KTAP results as printed (names, outcomes, SKIP and failure reasons).
    pub results: Vec<TestResult>,
    /// The console lines of the set.
    pub text: String,
}

/// Key of a console run: suite and set.
pub type SetKey = (String, String);

/// Everything read from one LAVA log or results export.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LavaLog {
    /// Test cases, in order.
    pub cases: Vec<LavaCase>,
    /// Dispatcher verdicts, in order.
    pub actions: Vec<ActionVerdict>,
    /// Whether the input had console records (a log, not a results export).
    pub has_console: bool,
    /// Suites whose run started on the console (`<LAVA_SIGNAL_STARTRUN suite uuid>`).
    pub started: Vec<String>,
    /// Test sets the runner announced (`# passthru-lava: planned SET`) per suite.
    pub planned: Vec<SetKey>,
    /// Suites whose runner printed its end line (`# passthru-lava: done`).
    pub done: Vec<String>,
    /// KTAP seen on the console per (suite, set).
    pub console: BTreeMap<SetKey, ConsoleRun>,
    /// `lvl: error` messages.
    pub errors: Vec<String>,
    /// Lines that were neither a record nor blank (a damaged file).
    pub unreadable: usize,
}

impl LavaLog {
    /// The final `job` verdict, if the log got that far.
    pub fn job(&self) -> Option<&ActionVerdict> {
        self.actions.iter().rev().find(|a| a.name == "job")
    }
}

/// Prefix of the lines `passthru lava cases` prints for the host-side check.
pub const MARK: &str = "# passthru-lava:";

fn result_record(log: &mut LavaLog, msg: &Value) {
    let definition = msg.get_str("definition").unwrap_or("");
    let Some(case) = msg.get_str("case") else {
        return;
    };
    let result = msg.get_str("result").unwrap_or("unknown");
    if definition == "lava" {
        let error = match (msg.get_str("error_type"), msg.get_str("error_msg")) {
            (Some(t), Some(m)) => Some(format!("{t}: {m}")),
            (None, Some(m)) => Some(m.to_string()),
            (Some(t), None) => Some(t.to_string()),
            (None, None) => msg
                .get("extra")
                .and_then(|e| e.get_str("fail"))
                .map(str::to_string),
        };
        log.actions.push(ActionVerdict {
            name: case.to_string(),
            result: result.to_string(),
            error,
        });
    } else {
        // Monitors keep the original name in extra.test_case_id; shell cases are verbatim.
        let name = msg
            .get("extra")
            .and_then(|e| e.get_str("test_case_id"))
            .unwrap_or(case);
        log.cases.push(LavaCase {
            suite: definition.to_string(),
            set: msg.get_str("set").map(str::to_string),
            name: name.to_string(),
            result: LavaResult::parse(result),
        });
    }
}

/// Console state while reading target lines.
#[derive(Default)]
struct Console {
    suite: Option<String>,
    set: Option<String>,
}

fn target_line(log: &mut LavaLog, con: &mut Console, text: &str) {
    for raw in text.split('\n') {
        let line = raw.trim_end_matches('\r');
        if let Some(i) = line.find("<LAVA_SIGNAL_") {
            let sig = line[i + "<LAVA_SIGNAL_".len()..].trim_end_matches('>');
            let words: Vec<&str> = sig.split_whitespace().collect();
            match words.as_slice() {
                ["STARTRUN", suite, ..] => {
                    con.suite = Some(suite.to_string());
                    con.set = None;
                    log.started.push(suite.to_string());
                }
                ["ENDRUN", ..] => {
                    con.suite = None;
                    con.set = None;
                }
                ["TESTSET", "START", name, ..] => con.set = Some(name.to_string()),
                ["TESTSET", "STOP", ..] => con.set = None,
                _ => {}
            }
            continue;
        }
        let suite = con.suite.clone().unwrap_or_default();
        if let Some(rest) = line.strip_prefix(MARK) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                ["planned", set, ..] => log.planned.push((suite, set.to_string())),
                ["done", ..] => log.done.push(suite),
                _ => {}
            }
            continue;
        }
        let Some(set) = con.set.clone() else {
            continue;
        };
        if line.starts_with("<LAVA_") || line.starts_with("+ lava-test-") {
            continue;
        }
        let run = log.console.entry((suite, set)).or_default();
        run.text.push_str(line);
        run.text.push('\n');
    }
}

/// Reads each set's console text with the rig's parser.
fn finish_console(log: &mut LavaLog) {
    for run in log.console.values_mut() {
        let parsed = parse_boot_log(&format!("=== RUN set - -\n{}", run.text));
        if let Some(r) = parsed.runs.into_iter().next() {
            run.plan = r.plan;
            run.results = r.results;
        }
    }
}

/// Reads a `lava-run` log or a lava-server job log.
fn parse_records(text: &str) -> LavaLog {
    let mut log = LavaLog::default();
    let mut con = Console::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = flow::parse(line) else {
            log.unreadable += 1;
            continue;
        };
        let Some(lvl) = v.get_str("lvl") else {
            log.unreadable += 1;
            continue;
        };
        match (lvl, v.get("msg")) {
            ("results", Some(msg)) => result_record(&mut log, msg),
            ("target", Some(Value::Str(s))) => {
                log.has_console = true;
                target_line(&mut log, &mut con, s);
            }
            ("error", Some(Value::Str(s))) => log.errors.push(s.clone()),
            _ => {}
        }
    }
    finish_console(&mut log);
    log
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else if v.starts_with('"') {
        flow::parse(v)
            .ok()
            .and_then(|x| x.as_str().map(str::to_string))
            .unwrap_or_else(|| v.trim_matches('"').to_string())
    } else {
        v.to_string()
    }
}

/// Reads a lava-server results export (`/results/<job>/yaml`, `lavacli results --yaml`): a
/// block sequence of mappings with `suite`, `name`, `result` and a `metadata` mapping (block or
/// flow) that holds `set` for cases inside a test set. Suites named `lava` hold the
/// dispatcher's verdicts.
fn parse_export(text: &str) -> LavaLog {
    let mut items: Vec<BTreeMap<String, String>> = Vec::new();
    let mut item_indent = 0;
    let mut parent: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line == "---" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut body = line.trim_start();
        if let Some(rest) = body.strip_prefix("- ") {
            items.push(BTreeMap::new());
            item_indent = indent + 2;
            parent = None;
            body = rest;
        } else if indent < item_indent || items.is_empty() {
            continue;
        }
        let Some(item) = items.last_mut() else {
            continue;
        };
        let Some((key, value)) = body.split_once(':') else {
            continue;
        };
        let key = key.trim().to_string();
        let nested = indent > item_indent && !line.trim_start().starts_with("- ");
        if nested {
            if let Some(p) = &parent {
                item.insert(format!("{p}.{key}"), unquote(value));
            }
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            parent = Some(key);
        } else if value.starts_with('{') {
            parent = None;
            if let Ok(Value::Map(m)) = flow::parse(value) {
                for (k, v) in m {
                    if let Value::Str(s) = v {
                        item.insert(format!("{key}.{k}"), s);
                    }
                }
            }
        } else {
            parent = None;
            item.insert(key, unquote(value));
        }
    }
    let mut log = LavaLog::default();
    for item in items {
        let (Some(suite), Some(name)) = (item.get("suite"), item.get("name")) else {
            log.unreadable += 1;
            continue;
        };
        let result = item.get("result").map(String::as_str).unwrap_or("unknown");
        if suite == "lava" {
            log.actions.push(ActionVerdict {
                name: name.clone(),
                result: result.to_string(),
                error: item
                    .get("metadata.error_msg")
                    .or_else(|| item.get("metadata.extra.fail"))
                    .cloned(),
            });
        } else {
            log.cases.push(LavaCase {
                suite: suite.clone(),
                set: item
                    .get("metadata.set")
                    .or_else(|| item.get("set"))
                    .filter(|s| !s.is_empty() && *s != "None")
                    .cloned(),
                name: name.clone(),
                result: LavaResult::parse(result),
            });
        }
    }
    log
}

/// Reads any of the three formats (told apart by their first record).
pub fn parse(text: &str) -> LavaLog {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != "---" && !l.starts_with('#'))
        .unwrap_or("");
    let body = first.strip_prefix("- ").unwrap_or(first);
    if body.starts_with('{') {
        parse_records(text)
    } else {
        parse_export(text)
    }
}
