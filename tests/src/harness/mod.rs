//! A small kselftest-compatible test harness.
//!
//! It reproduces what `tools/testing/selftests/kselftest_harness.h` gives upstream's VFIO
//! programs, so runners and habits keep working:
//!
//! * tests grouped as fixtures × variants × tests, named `fixture.variant.test` (or
//!   `fixture.test` for a fixture without variants), run in registration order;
//! * KTAP output (`TAP version 13`, `1..N`, `#  RUN ...`, `ok N name`, `not ok N name`,
//!   `ok N name # SKIP reason`, `# Totals: ...`);
//! * the filters `-f/-F fixture`, `-v/-V variant`, `-t/-T test`, `-r fixture.variant.test`
//!   (first match wins, as upstream), and `-l` to list;
//! * BDFs from trailing arguments or `$VFIO_SELFTESTS_BDF`; with none, usage on stderr and
//!   exit 4 (`KSFT_SKIP`);
//! * exit 0 when every test passed, 1 when any failed, 4 when all were skipped.
//!
//! Additions: a device pool (`$VFIO_SELFTESTS_BDFS`) with a [`DeviceSelector`] so a program
//! picks the devices it can use, `--seed N` (printed as `# seed: N` on every run, random by
//! default) and `--timeout SECS`.
//!
//! Upstream programs' one-time work in `main()` (e.g. "No driver found for device" → exit 4,
//! enabling a VF) goes in [`Suite::before_all`] / [`Suite::after_all`].
//!
//! A test body returns [`TestResult`]; use the `check_*!` macros, [`fail!`](crate::fail) and [`skip!`](crate::skip). Each
//! test (its fixture setup, body and teardown) runs in its own thread; a test that outlives its
//! timeout is reported `not ok` and abandoned (threads cannot be killed, so whatever it holds
//! stays held until the program exits).
//!
//! ```no_run
//! use passthru::harness::{Fixture, Suite, TestResult};
//! use passthru::{check_eq, skip};
//!
//! struct Mode { name: &'static str }
//! let fixture = Fixture::with_setup("vfio_example_test", |_ctx, mode: &Mode| Ok(mode.name.len()))
//!     .variant("iommufd", Mode { name: "iommufd" })
//!     .test("length", |_ctx, mode, len: &mut usize| -> TestResult {
//!         check_eq!(*len, mode.name.len());
//!         Ok(())
//!     });
//! Suite::new("vfio_example_test").fixture(fixture).main();
//! ```

#[doc(hidden)]
pub mod __macros;
pub mod args;
pub mod devices;
pub mod ktap;
pub mod rng;
mod run;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use args::{ArgError, Filter, Options};
pub use devices::{DeviceSelector, DeviceSource};
pub use passthru_linux::bdf::Bdf;
pub use rng::Rng;
pub use run::Totals;

/// kselftest exit code: every test passed.
pub const KSFT_PASS: i32 = 0;
/// kselftest exit code: a test failed (also used for bad command lines).
pub const KSFT_FAIL: i32 = 1;
/// kselftest exit code: everything was skipped (or there was nothing to test on).
pub const KSFT_SKIP: i32 = 4;

/// The default per-test timeout, as upstream's `TEST_TIMEOUT_DEFAULT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test did not pass.
///
/// Any `std::error::Error` converts into [`TestError::Fail`] with `?` (its message and source
/// chain), so library calls can be propagated directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestError {
    /// The test failed; the message says where and why (the `check_*!` macros include
    /// `file:line` and the observed values).
    Fail(String),
    /// The test cannot run here; the reason is printed after `# SKIP`.
    Skip(String),
}

impl TestError {
    /// A failure with this message.
    pub fn fail(msg: impl Into<String>) -> Self {
        Self::Fail(msg.into())
    }

    /// A skip with this reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fail(m) => write!(f, "FAIL: {m}"),
            Self::Skip(r) => write!(f, "SKIP: {r}"),
        }
    }
}

impl<E: std::error::Error> From<E> for TestError {
    fn from(e: E) -> Self {
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        Self::Fail(msg)
    }
}

/// What a test body, a fixture setup or a teardown returns.
pub type TestResult<T = ()> = Result<T, TestError>;

/// Where `# ` diagnostics go. Shared by the harness and every test thread.
pub(crate) type Sink = Arc<std::sync::Mutex<Box<dyn std::io::Write + Send>>>;

/// What a running test can see: its name, the devices, the seed, its timeout, and a log.
#[derive(Clone)]
pub struct Ctx {
    fixture: Arc<str>,
    variant: Arc<str>,
    test: Arc<str>,
    full_name: Arc<str>,
    devices: Arc<[Bdf]>,
    seed: u64,
    timeout: Duration,
    sink: Sink,
    abandoned: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("name", &self.full_name)
            .field("devices", &self.devices)
            .field("seed", &self.seed)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Ctx {
    /// The first selected device. Fails with Skip if the program was run without devices
    /// (only possible for suites built with [`DeviceSelector::none`]).
    pub fn bdf(&self) -> TestResult<Bdf> {
        self.devices
            .first()
            .copied()
            .ok_or_else(|| TestError::skip("no device given"))
    }

    /// Every selected device, in order (command line, then `$VFIO_SELFTESTS_BDF`, then pool).
    pub fn bdfs(&self) -> &[Bdf] {
        &self.devices
    }

    /// This test's seed: the run's seed mixed with the test's full name, so a test draws the
    /// same values for a given `--seed` whatever filters select it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A deterministic generator seeded with [`Ctx::seed`].
    pub fn rng(&self) -> Rng {
        Rng::new(self.seed)
    }

    /// The effective timeout for this test.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The full KTAP name, e.g. `vfio_dma_mapping_test.iommufd_anonymous.dma_map_unmap`.
    pub fn name(&self) -> &str {
        &self.full_name
    }

    /// The fixture name.
    pub fn fixture_name(&self) -> &str {
        &self.fixture
    }

    /// The variant name (empty for a fixture without variants).
    pub fn variant_name(&self) -> &str {
        &self.variant
    }

    /// The test name.
    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// Prints a `# `-prefixed diagnostic line (one per line of `msg`). Output from a test that
    /// has already timed out is dropped, so it cannot interleave with later tests.
    pub fn log(&self, msg: impl fmt::Display) {
        if self.abandoned.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        ktap::diag(&self.sink, &msg.to_string());
    }
}

type SetupFn<V, S> = dyn Fn(&Ctx, &V) -> TestResult<S> + Send + Sync;
type TeardownFn<V, S> = dyn Fn(&Ctx, &V, S) -> TestResult + Send + Sync;
type BodyFn<V, S> = dyn Fn(&Ctx, &V, &mut S) -> TestResult + Send + Sync;

struct TestCase<V, S> {
    name: String,
    timeout: Option<Duration>,
    body: Arc<BodyFn<V, S>>,
}

/// A fixture: a setup that builds per-test state `S` from a variant `V`, an optional teardown,
/// named variants and tests. Like `FIXTURE`/`FIXTURE_VARIANT_ADD`/`TEST_F` upstream: for each
/// variant, for each test, setup runs, then the test, then teardown (even if the test failed or
/// panicked, provided setup succeeded).
pub struct Fixture<V, S> {
    name: String,
    variants: Vec<(String, Arc<V>)>,
    implicit_variant: bool,
    setup: Arc<SetupFn<V, S>>,
    teardown: Option<Arc<TeardownFn<V, S>>>,
    tests: Vec<TestCase<V, S>>,
}

impl<S: 'static> Fixture<(), S> {
    /// A fixture without variants (tests are named `fixture.test`); `setup` builds the state.
    pub fn new(
        name: impl Into<String>,
        setup: impl Fn(&Ctx) -> TestResult<S> + Send + Sync + 'static,
    ) -> Self {
        let mut f = Fixture::with_setup(name, move |ctx, _: &()| setup(ctx));
        f.variants.push((String::new(), Arc::new(())));
        f.implicit_variant = true;
        f
    }
}

impl Fixture<(), ()> {
    /// A fixture without variants and without state; upstream's plain `TEST()` lives in the
    /// fixture `global`.
    pub fn stateless(name: impl Into<String>) -> Self {
        Fixture::new(name, |_| Ok(()))
    }
}

impl<V: Send + Sync + 'static, S: 'static> Fixture<V, S> {
    /// A fixture whose variants are added with [`Fixture::variant`]; `setup` builds the
    /// per-test state from the variant. A fixture with no variants added runs no tests.
    pub fn with_setup(
        name: impl Into<String>,
        setup: impl Fn(&Ctx, &V) -> TestResult<S> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            variants: Vec::new(),
            implicit_variant: false,
            setup: Arc::new(setup),
            teardown: None,
            tests: Vec::new(),
        }
    }

    /// Adds a variant (tests are then named `fixture.variant.test`). The first explicit
    /// variant replaces the implicit unnamed one of [`Fixture::new`].
    pub fn variant(mut self, name: impl Into<String>, variant: V) -> Self {
        if self.implicit_variant {
            self.variants.clear();
            self.implicit_variant = false;
        }
        self.variants.push((name.into(), Arc::new(variant)));
        self
    }

    /// Adds several variants.
    pub fn variants<N: Into<String>>(mut self, variants: impl IntoIterator<Item = (N, V)>) -> Self {
        for (name, v) in variants {
            self = self.variant(name, v);
        }
        self
    }

    /// Sets the teardown, which receives the state by value. A teardown error fails the test
    /// (unless the test already failed; both messages are printed).
    pub fn teardown(
        mut self,
        teardown: impl Fn(&Ctx, &V, S) -> TestResult + Send + Sync + 'static,
    ) -> Self {
        self.teardown = Some(Arc::new(teardown));
        self
    }

    /// Adds a test with the default timeout (`TEST_F`).
    pub fn test(
        mut self,
        name: impl Into<String>,
        body: impl Fn(&Ctx, &V, &mut S) -> TestResult + Send + Sync + 'static,
    ) -> Self {
        self.tests.push(TestCase {
            name: name.into(),
            timeout: None,
            body: Arc::new(body),
        });
        self
    }

    /// Adds a test with its own timeout (`TEST_F_TIMEOUT`). `--timeout` still overrides it.
    pub fn test_with_timeout(
        mut self,
        name: impl Into<String>,
        timeout: Duration,
        body: impl Fn(&Ctx, &V, &mut S) -> TestResult + Send + Sync + 'static,
    ) -> Self {
        self.tests.push(TestCase {
            name: name.into(),
            timeout: Some(timeout),
            body: Arc::new(body),
        });
        self
    }
}

/// A whole test program: its name, its fixtures in order, and which devices it needs.
pub struct Suite {
    program: String,
    cases: Vec<run::Case>,
    selector: DeviceSelector,
    before_all: Option<Box<GlobalFn>>,
    after_all: Option<Box<AfterFn>>,
}

type GlobalFn = dyn Fn(&[Bdf]) -> TestResult<Option<String>> + Send + Sync;
type AfterFn = dyn Fn(&[Bdf]) + Send + Sync;

impl Suite {
    /// A program named `program` (used in usage text), needing one device
    /// ([`DeviceSelector::one`]) unless [`Suite::devices`] says otherwise.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            cases: Vec::new(),
            selector: DeviceSelector::one(),
            before_all: None,
            after_all: None,
        }
    }

    /// Which devices the program runs on (see [`DeviceSelector`]).
    pub fn devices(mut self, selector: DeviceSelector) -> Self {
        self.selector = selector;
        self
    }

    /// One-time setup before any test, given the selected devices (what upstream programs do
    /// in `main()` before `test_harness_run`, e.g. "No driver found for device" or enabling a
    /// VF). `Err(Skip(reason))` prints `program: reason` on stderr and exits 4 without running
    /// tests; `Err(Fail(msg))` prints it and exits 1. `Ok(Some(note))` prints the note as a
    /// `# ` diagnostic after the KTAP header (never before `TAP version`). Not called for
    /// `-l`/`-h`.
    pub fn before_all(
        mut self,
        f: impl Fn(&[Bdf]) -> TestResult<Option<String>> + Send + Sync + 'static,
    ) -> Self {
        self.before_all = Some(Box::new(f));
        self
    }

    /// One-time teardown after the last test (only if [`Suite::before_all`] succeeded or was
    /// not set), e.g. resetting `sriov_numvfs`. Runs in the harness thread.
    pub fn after_all(mut self, f: impl Fn(&[Bdf]) + Send + Sync + 'static) -> Self {
        self.after_all = Some(Box::new(f));
        self
    }

    /// Appends a fixture's tests (all variants × tests, in order).
    pub fn fixture<V: Send + Sync + 'static, S: 'static>(mut self, fixture: Fixture<V, S>) -> Self {
        self.cases.extend(run::erase(fixture));
        self
    }

    /// The program name.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Every test name in run order, `fixture.variant.test`.
    pub fn names(&self) -> Vec<String> {
        self.cases.iter().map(|c| c.full_name()).collect()
    }

    /// `(fixture, variant, test)` of every test, in run order.
    pub fn case_keys(&self) -> impl Iterator<Item = (&str, &str, &str)> + Clone {
        self.cases
            .iter()
            .map(|c| (&*c.fixture, &*c.variant, &*c.test))
    }

    /// How many tests `filters` select.
    pub fn selected_count(&self, filters: &[Filter]) -> usize {
        self.case_keys()
            .filter(|(f, v, t)| args::enabled(filters, f, v, t))
            .count()
    }

    /// Parses the process's arguments and environment, runs, prints KTAP on stdout, and exits
    /// with the kselftest code.
    pub fn main(self) -> ! {
        let args = process_args(&self.program);
        let source = DeviceSource::from_env();
        let code = self.run(
            &args,
            &source,
            Box::new(std::io::stdout()),
            &mut std::io::stderr(),
        );
        std::process::exit(code)
    }

    /// Runs with explicit arguments (without the program name), device environment, KTAP sink
    /// and error stream; returns the exit code. This is what [`Suite::main`] calls and what the
    /// unit tests and the `passthru test` dispatcher use.
    pub fn run(
        &self,
        args: &[String],
        source: &DeviceSource,
        out: Box<dyn std::io::Write + Send>,
        err: &mut dyn std::io::Write,
    ) -> i32 {
        run::run_suite(self, args, source, out, err)
    }

    /// [`Suite::run`] with the KTAP and error streams captured: returns the exit code, the
    /// KTAP text and the error text (each decoded lossily as UTF-8). For programs and tests
    /// that inspect a run's output rather than print it.
    pub fn run_captured(&self, args: &[&str], source: &DeviceSource) -> (i32, String, String) {
        let out = SharedBuf::default();
        let mut err = Vec::new();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let code = self.run(&args, source, Box::new(out.clone()), &mut err);
        (code, out.text(), String::from_utf8_lossy(&err).into_owned())
    }
}

/// A `Write` whose bytes stay readable after the writer is boxed away (each test of a run
/// writes through its own clone).
#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// The process's arguments (without the program name) as UTF-8; a non-UTF-8 argument is bad
/// input: one line on stderr naming it, exit 1.
pub fn process_args(program: &str) -> Vec<String> {
    match args::utf8_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(KSFT_FAIL)
        }
    }
}

#[cfg(test)]
mod tests;
