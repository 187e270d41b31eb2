//! Running a suite: selection, per-test threads with timeouts, KTAP reporting, exit codes.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::args::{self, Options, USAGE_OPTIONS};
use super::devices::{DeviceError, DeviceSource};
use super::ktap::{self, Verdict};
use super::rng;
use super::{
    Ctx, Fixture, Sink, Suite, TestError, DEFAULT_TIMEOUT, KSFT_FAIL, KSFT_PASS, KSFT_SKIP,
};

type CaseFn = dyn Fn(&Ctx) -> Result<(), Vec<TestError>> + Send + Sync;

/// One runnable test: a fixture × variant × test with the fixture's setup and teardown.
pub(crate) struct Case {
    pub(crate) fixture: Arc<str>,
    pub(crate) variant: Arc<str>,
    pub(crate) test: Arc<str>,
    timeout: Option<Duration>,
    run: Arc<CaseFn>,
}

impl Case {
    pub(crate) fn full_name(&self) -> String {
        args::full_name(&self.fixture, &self.variant, &self.test)
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Turns a typed fixture into type-erased cases, variants outer, tests inner (upstream order).
pub(crate) fn erase<V: Send + Sync + 'static, S: 'static>(fixture: Fixture<V, S>) -> Vec<Case> {
    let fixture_name: Arc<str> = fixture.name.into();
    let mut cases = Vec::new();
    for (variant_name, variant) in &fixture.variants {
        for test in &fixture.tests {
            let setup = fixture.setup.clone();
            let teardown = fixture.teardown.clone();
            let body = test.body.clone();
            let variant = variant.clone();
            let run = move |ctx: &Ctx| -> Result<(), Vec<TestError>> {
                let state = match catch_unwind(AssertUnwindSafe(|| setup(ctx, &variant))) {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(vec![e]),
                    Err(p) => {
                        return Err(vec![TestError::Fail(format!(
                            "setup panicked: {}",
                            panic_text(p.as_ref())
                        ))])
                    }
                };
                let mut state = state;
                let body_result =
                    match catch_unwind(AssertUnwindSafe(|| body(ctx, &variant, &mut state))) {
                        Ok(r) => r,
                        Err(p) => Err(TestError::Fail(format!(
                            "{}: Test terminated by panic: {}",
                            ctx.name(),
                            panic_text(p.as_ref())
                        ))),
                    };
                let teardown_result = match &teardown {
                    None => Ok(()),
                    Some(td) => match catch_unwind(AssertUnwindSafe(|| td(ctx, &variant, state))) {
                        Ok(r) => r,
                        Err(p) => Err(TestError::Fail(format!(
                            "teardown panicked: {}",
                            panic_text(p.as_ref())
                        ))),
                    },
                };
                let mut errors = Vec::new();
                if let Err(e) = body_result {
                    errors.push(e);
                }
                if let Err(e) = teardown_result {
                    // A skip from teardown is meaningless after the test ran; report it as a
                    // failure so it is not lost.
                    errors.push(match e {
                        TestError::Skip(r) => TestError::Fail(format!("teardown skipped: {r}")),
                        f => f,
                    });
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                }
            };
            cases.push(Case {
                fixture: fixture_name.clone(),
                variant: variant_name.as_str().into(),
                test: test.name.as_str().into(),
                timeout: test.timeout,
                run: Arc::new(run),
            });
        }
    }
    cases
}

/// Counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tests that passed.
    pub pass: usize,
    /// Tests that failed (including timeouts and panics).
    pub fail: usize,
    /// Tests that were skipped.
    pub skip: usize,
}

impl Totals {
    /// The kselftest exit code: 1 if anything failed, 0 if something passed, else 4 (all
    /// skipped, or nothing selected).
    pub fn exit_code(&self) -> i32 {
        if self.fail > 0 {
            KSFT_FAIL
        } else if self.pass > 0 {
            KSFT_PASS
        } else {
            KSFT_SKIP
        }
    }
}

/// The verdict for a case's errors, and the diagnostics to print.
fn judge(errors: &[TestError]) -> (Verdict, Vec<String>) {
    let mut diags = Vec::new();
    let mut failed = false;
    let mut skip_reason = None;
    for e in errors {
        match e {
            TestError::Fail(m) => {
                failed = true;
                diags.push(m.clone());
            }
            TestError::Skip(r) => {
                if skip_reason.is_none() {
                    skip_reason = Some(r.clone());
                }
            }
        }
    }
    let verdict = if failed {
        Verdict::Fail
    } else if let Some(r) = skip_reason {
        Verdict::Skip(r)
    } else {
        Verdict::Pass
    };
    (verdict, diags)
}

/// Runs one case in its own thread, waiting at most `timeout`.
fn run_case(case: &Case, ctx: Ctx, timeout: Duration) -> (Verdict, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    let run = case.run.clone();
    let thread_ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name(ctx.name().chars().take(15).collect())
        .spawn(move || {
            let result = run(&thread_ctx);
            // The receiver is gone only if the test timed out; nothing to report then.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return (
            Verdict::Fail,
            vec![format!("{}: cannot start test thread: {e}", ctx.name())],
        );
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => (Verdict::Pass, Vec::new()),
        Ok(Err(errors)) => judge(&errors),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            ctx.abandoned.store(true, Ordering::Release);
            (
                Verdict::Fail,
                vec![format!(
                    "{}: Test terminated by timeout ({} s)",
                    ctx.name(),
                    timeout.as_secs_f64()
                )],
            )
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => (
            Verdict::Fail,
            vec![format!("{}: test thread died without a result", ctx.name())],
        ),
    }
}

/// Prints upstream-style usage for a program that got no device.
fn no_device_usage(program: &str, err: &mut dyn std::io::Write) {
    let _ = writeln!(
        err,
        "Unable to determine which device to use, skipping test.\n\n\
         To pass the device address via environment variable:\n\n    \
         export VFIO_SELFTESTS_BDF=segment:bus:device.function\n    {program} [options]\n\n\
         To pass the device address(es) via the command line:\n\n    \
         {program} [options] segment:bus:device.function...\n\n\
         To offer a pool of devices to pick from:\n\n    \
         export VFIO_SELFTESTS_BDFS=\"0000:00:04.0 0000:00:05.0\"\n"
    );
}

pub(crate) fn run_suite(
    suite: &Suite,
    argv: &[String],
    source: &DeviceSource,
    out: Box<dyn std::io::Write + Send>,
    err: &mut dyn std::io::Write,
) -> i32 {
    let program = suite.program.as_str();
    let opts = match Options::parse(argv) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "{program}: {e}");
            return KSFT_FAIL;
        }
    };
    let sink: Sink = Arc::new(Mutex::new(out));
    if opts.help {
        let _ = writeln!(err, "Usage: {program} {USAGE_OPTIONS}");
        return KSFT_SKIP;
    }
    if opts.list {
        let mut text = String::new();
        for case in &suite.cases {
            text.push_str(&case.full_name());
            text.push('\n');
        }
        ktap::write(&sink, &text);
        // Upstream's harness exits KSFT_SKIP after listing, as after -h.
        return KSFT_SKIP;
    }
    if let Some(why) = args::empty_selection(&opts.filters, suite.case_keys()) {
        let _ = writeln!(err, "{program}: {why}");
        return KSFT_FAIL;
    }

    let devices = match source
        .candidates(&opts.bdfs)
        .and_then(|c| suite.selector.select(&c, &source.sysfs))
    {
        Ok(d) => d,
        Err(DeviceError::NoDevice) => {
            no_device_usage(program, err);
            return KSFT_SKIP;
        }
        Err(e @ (DeviceError::BadEnv { .. } | DeviceError::NoSuchDevice { .. })) => {
            let _ = writeln!(err, "{program}: {e}");
            return KSFT_FAIL;
        }
        Err(e @ DeviceError::NoMatch { .. }) => {
            let _ = writeln!(err, "{program}: {e}; skipping");
            return KSFT_SKIP;
        }
    };
    let devices: Arc<[passthru_linux::bdf::Bdf]> = devices.into();
    let mut note = None;
    if let Some(before) = &suite.before_all {
        match catch_unwind(AssertUnwindSafe(|| before(&devices))) {
            Ok(Ok(n)) => note = n,
            Ok(Err(TestError::Skip(reason))) => {
                let _ = writeln!(err, "{program}: {}", reason.trim_end());
                return KSFT_SKIP;
            }
            Ok(Err(TestError::Fail(msg))) => {
                let _ = writeln!(err, "{program}: {}", msg.trim_end());
                return KSFT_FAIL;
            }
            Err(p) => {
                let _ = writeln!(
                    err,
                    "{program}: one-time setup panicked: {}",
                    panic_text(p.as_ref())
                );
                return KSFT_FAIL;
            }
        }
    }

    let selected: Vec<&Case> = suite
        .cases
        .iter()
        .filter(|c| args::enabled(&opts.filters, &c.fixture, &c.variant, &c.test))
        .collect();
    let mut case_count = 0;
    let mut last: Option<(&str, &str)> = None;
    for c in &selected {
        let key = (&*c.fixture, &*c.variant);
        if last != Some(key) {
            case_count += 1;
            last = Some(key);
        }
    }
    let seed = opts.seed.unwrap_or_else(rng::random_seed);

    ktap::header(&sink, selected.len());
    ktap::diag(
        &sink,
        &format!(
            "Starting {} tests from {} test cases.",
            selected.len(),
            case_count
        ),
    );
    ktap::diag(&sink, &format!("seed: {seed}"));
    if !devices.is_empty() {
        let list: Vec<String> = devices.iter().map(|b| b.to_string()).collect();
        ktap::diag(&sink, &format!("devices: {}", list.join(" ")));
    }
    if let Some(n) = &note {
        ktap::diag(&sink, n);
    }

    let mut totals = Totals::default();
    for (i, case) in selected.iter().enumerate() {
        let name = case.full_name();
        let timeout = opts.timeout.or(case.timeout).unwrap_or(DEFAULT_TIMEOUT);
        let ctx = Ctx {
            fixture: case.fixture.clone(),
            variant: case.variant.clone(),
            test: case.test.clone(),
            full_name: name.as_str().into(),
            devices: devices.clone(),
            seed: rng::test_seed(seed, &name),
            timeout,
            sink: sink.clone(),
            abandoned: Arc::new(AtomicBool::new(false)),
        };
        ktap::write(&sink, &ktap::run_line(&name));
        let started = std::time::Instant::now();
        let (verdict, diags) = run_case(case, ctx, timeout);
        for d in &diags {
            ktap::diag(&sink, d);
        }
        if opts.debug {
            ktap::diag(
                &sink,
                &format!(
                    "debug: {name} took {:.3} ms",
                    started.elapsed().as_secs_f64() * 1e3
                ),
            );
        }
        match verdict {
            Verdict::Pass => totals.pass += 1,
            Verdict::Fail => totals.fail += 1,
            Verdict::Skip(_) => totals.skip += 1,
        }
        ktap::write(&sink, &ktap::result_text(i + 1, &name, &verdict));
    }
    ktap::write(
        &sink,
        &ktap::summary_text(totals.pass, totals.fail, totals.skip),
    );
    if let Some(after) = &suite.after_all {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| after(&devices))) {
            let _ = writeln!(
                err,
                "{program}: one-time teardown panicked: {}",
                panic_text(p.as_ref())
            );
            return KSFT_FAIL;
        }
    }
    totals.exit_code()
}
