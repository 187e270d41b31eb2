//! The `passthru` command: list PCI functions, bind them to vfio-pci and back, run programs on
//! them, and dispatch the test suites.
//!
//! ```text
//! passthru [--sysfs DIR] [--proc DIR] [--state-dir DIR] COMMAND ...
//!   list                      every PCI function: BDF, ids, class, driver, IOMMU group, VFIO, passthru driver
//!   setup [--force] BDF...    bind to vfio-pci, saving what to restore (refuses in-use devices unless --force)
//!   cleanup [BDF...]          restore what setup changed (all set-up devices without arguments)
//!   run -- PROG [ARGS...]     run PROG with every set-up BDF appended (exit 4 if none)
//!   test [--qemu] [OPTIONS] [BDF...]   run the test suites
//!   bench models | map [BDF] | guest   benchmarks (models vs host memcpy; map+unmap vs raw ioctls;
//!                             KVM guest boot and irqfd latency vs raw kvm-ioctls)
//!   lava job|run|results|cases  LAVA jobs, a local lava-run of the rig job, result checks
//! ```
//!
//! Exit codes follow kselftest: 0 success, 1 failure or bad input (one line on stderr), 4 skip
//! (nothing to run on).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use passthru::harness::{self, Bdf, DeviceSource, Suite, KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
use passthru::state::{self, SetupOutcome, StateError, StateStore};
use passthru::{programs, suite};
use passthru_linux::sysfs::{PciFunction, Sysfs, SysfsWrite, WriteLog, VFIO_PCI_DRIVER};

const USAGE: &str = "\
usage: passthru [--sysfs DIR] [--proc DIR] [--state-dir DIR] COMMAND ... | --version
  list                         every PCI function with ids, class, driver, IOMMU group, VFIO status
                               and the passthru driver that matches it
  setup [--force] BDF...       bind to vfio-pci (state saved in /run/passthru for root, else in
                               $XDG_RUNTIME_DIR/passthru);
                               refuses devices backing mounts, swap or up interfaces unless --force
  cleanup [BDF...]             restore what setup changed (every set-up device if none given)
  run -- PROG [ARGS...]        run PROG with every set-up BDF appended (exit 4 if none)
  test [--qemu] [-l] [-v V] [-r NAME] [--seed N] [--timeout S] [BDF...]
                               run the test suites on devices (BDFs, $VFIO_SELFTESTS_BDF[S],
                               else the set-up devices)
  bench models                 software-model memcpy bandwidth vs host memcpy, DSA batch prep cost
  bench map BDF [OPTIONS]      VFIO/IOMMUFD map+unmap and open+setup vs a raw-ioctl loop, per mode
  bench guest [--boots N] [--irqs N]
                               KVM guest boot and eventfd->irqfd->guest ISR latency vs raw kvm-ioctls
  lava job|run|results|cases   LAVA: write jobs, run the rig job with lava-run, check results
                               (`passthru lava --help`)";

/// A program `passthru test` runs: its name and the function building its suite.
type Program = (&'static str, fn() -> Suite);

/// The programs run on real devices: the six of `passthru::programs`, then
/// `vfio_pci_driver_test` and `vfio_pci_guest_driver_test` from `passthru::suite`, and
/// `irq_test -d` (the guest programs skip without `/dev/kvm`).
fn device_programs() -> Vec<Program> {
    programs::PROGRAMS
        .iter()
        .map(|p| (p.name, p.suite))
        .chain([
            (suite::vfio::PROGRAM, suite::vfio::suite as fn() -> Suite),
            (suite::guest::PROGRAM, suite::guest::device_suite),
            ("irq_test", programs::irq_test_device_suite),
        ])
        .collect()
}

/// What runs when no device is given (the default of `passthru test`): the upstream driver test
/// cases on the DSA, CBDMA and edu models, in this process and inside KVM guests, and `irq_test`
/// in eventfd mode (the guest programs skip without `/dev/kvm`).
const MODEL_PROGRAMS: [Program; 3] = [
    ("passthru models (dsa, ioat, edu)", suite::models::suite),
    (
        "vfio_pci_guest_driver_test (models in a KVM guest)",
        suite::guest::model_suite,
    ),
    ("irq_test (eventfd mode)", programs::irq_test_suite),
];

/// Global options and the roots everything works under.
struct Env {
    sysfs: Sysfs,
    /// `--state-dir`, else the default location (resolved when a command needs it).
    state_dir: Option<PathBuf>,
    source: DeviceSource,
}

impl Env {
    /// The setup state store.
    fn store(&self) -> Result<StateStore, StateError> {
        match &self.state_dir {
            Some(d) => Ok(StateStore::new(d)),
            None => StateStore::default_location(),
        }
    }
}

fn one_line_error(err: &mut dyn Write, msg: impl std::fmt::Display) -> i32 {
    let _ = writeln!(err, "passthru: {msg}");
    KSFT_FAIL
}

/// The passthru driver (or test family) that handles a vendor/device pair, if any, from
/// `passthru_core::pci::supported_device`: `family: product`, with a note for families that
/// have no memcpy driver.
fn passthru_match(vendor: u16, device: u16) -> Option<String> {
    use passthru_core::pci::DeviceFamily as F;
    let known = passthru_core::pci::supported_device(vendor, device)?;
    let family = match known.family {
        F::Dsa => "dsa",
        F::Iaa => "iaa (no memcpy driver)",
        F::Ioat => "ioat",
        F::IoatLegacy => "ioat-legacy (no driver)",
        F::Edu => "edu",
        F::Igb => "igb",
        F::IgbVf => "igbvf",
        F::E1000e => "e1000e (interrupt tests only)",
    };
    Some(format!("{family}: {}", known.name))
}

/// The VFIO column: bound to vfio-pci (with its cdev), set up by passthru, or neither.
fn vfio_status(f: &PciFunction, set_up: bool) -> String {
    let mut s = match (&f.vfio_cdev, f.is_vfio_bound()) {
        (Some(c), true) => format!("vfio-pci:{c}"),
        (None, true) => "vfio-pci".to_string(),
        _ => "-".to_string(),
    };
    if set_up {
        s.push_str(" (setup)");
    }
    s
}

fn list_table(
    functions: &[PciFunction],
    set_up: &[Bdf],
    matcher: fn(u16, u16) -> Option<String>,
) -> String {
    let header = [
        "BDF",
        "VENDOR:DEV",
        "CLASS",
        "DRIVER",
        "GROUP",
        "VFIO",
        "PASSTHRU",
    ];
    let mut rows: Vec<[String; 7]> = vec![header.map(String::from)];
    for f in functions {
        rows.push([
            f.bdf.to_string(),
            format!("{:04x}:{:04x}", f.vendor, f.device),
            format!("{:06x}", f.class),
            f.driver.clone().unwrap_or_else(|| "-".into()),
            f.iommu_group.map_or_else(|| "-".into(), |g| g.to_string()),
            vfio_status(f, set_up.contains(&f.bdf)),
            matcher(f.vendor, f.device).unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cmd_list(env: &Env, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if let Some(a) = args.first() {
        return one_line_error(err, format!("list: unexpected argument {a:?}"));
    }
    let bdfs = match env.sysfs.list_bdfs() {
        Ok(b) => b,
        Err(e) => return one_line_error(err, e),
    };
    // One unreadable function (permissions, hot-unplug) does not hide the others.
    let mut functions = Vec::new();
    for bdf in bdfs {
        match env.sysfs.function(bdf) {
            Ok(f) => functions.push(f),
            Err(e) => {
                let _ = writeln!(err, "passthru: list: {e}");
            }
        }
    }
    let set_up = match env.store() {
        Ok(store) => store.list(&env.sysfs).unwrap_or_else(|e| {
            let _ = writeln!(err, "passthru: list: {e}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    if functions.is_empty() {
        let _ = writeln!(
            out,
            "no PCI functions under {}",
            env.sysfs.pci_devices_dir().display()
        );
        return KSFT_PASS;
    }
    let _ = out.write_all(list_table(&functions, &set_up, passthru_match).as_bytes());
    KSFT_PASS
}

fn parse_bdfs(what: &str, args: &[String], err: &mut dyn Write) -> Result<Vec<Bdf>, i32> {
    let mut out = Vec::new();
    for a in args {
        match Bdf::parse(a) {
            Ok(b) => out.push(b),
            Err(e) => return Err(one_line_error(err, format!("{what}: {e}"))),
        }
    }
    Ok(out)
}

fn cmd_setup(env: &Env, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut force = false;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "--force" | "-f" => force = true,
            s if s.starts_with('-') => {
                return one_line_error(err, format!("setup: unknown option {s}"))
            }
            _ => rest.push(a.clone()),
        }
    }
    let bdfs = match parse_bdfs("setup", &rest, err) {
        Ok(b) => b,
        Err(code) => return code,
    };
    if bdfs.is_empty() {
        return one_line_error(err, "setup: give at least one BDF (e.g. 0000:00:04.0)");
    }
    let store = match env.store() {
        Ok(s) => s,
        Err(e) => return one_line_error(err, e),
    };
    let mut code = KSFT_PASS;
    let mut any_set_up = false;
    for bdf in bdfs {
        match state::setup(&env.sysfs, &store, bdf, force) {
            Ok(SetupOutcome::Bound(_)) => {
                any_set_up = true;
                let _ = writeln!(out, "{bdf}: bound to {VFIO_PCI_DRIVER}");
            }
            Ok(SetupOutcome::AlreadySetUp(_)) => {
                any_set_up = true;
                let _ = writeln!(
                    out,
                    "{bdf}: already set up; bound to {VFIO_PCI_DRIVER} (saved state kept)"
                );
            }
            Err(e) => code = one_line_error(err, e),
        }
    }
    if any_set_up {
        let _ = writeln!(
            out,
            "state: {} (restore with `passthru cleanup`)",
            store.dir().display()
        );
    }
    code
}

fn cmd_cleanup(env: &Env, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if let Some(a) = args.iter().find(|a| a.starts_with('-')) {
        return one_line_error(err, format!("cleanup: unknown option {a}"));
    }
    let mut bdfs = match parse_bdfs("cleanup", args, err) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let store = match env.store() {
        Ok(s) => s,
        Err(e) => return one_line_error(err, e),
    };
    if bdfs.is_empty() {
        bdfs = match store.list(&env.sysfs) {
            Ok(b) => b,
            Err(e) => return one_line_error(err, e),
        };
        if bdfs.is_empty() {
            let _ = writeln!(
                out,
                "nothing to clean up (no state under {})",
                store.dir().display()
            );
            return KSFT_PASS;
        }
    }
    let mut code = KSFT_PASS;
    for bdf in bdfs {
        match state::cleanup(&env.sysfs, &store, bdf) {
            Ok(saved) => {
                let _ = writeln!(
                    out,
                    "{bdf}: restored (driver {})",
                    saved.driver.as_deref().unwrap_or("none")
                );
            }
            Err(e) => code = one_line_error(err, e),
        }
    }
    code
}

fn cmd_run(env: &Env, args: &[String], err: &mut dyn Write) -> i32 {
    let args = match args.split_first() {
        Some((dd, rest)) if dd == "--" => rest,
        _ => args,
    };
    let Some((prog, prog_args)) = args.split_first() else {
        return one_line_error(err, "run: usage: passthru run -- PROG [ARGS...]");
    };
    let bdfs = match env.store().and_then(|s| s.list(&env.sysfs)) {
        Ok(b) => b,
        Err(e) => return one_line_error(err, format!("run: {e}")),
    };
    if bdfs.is_empty() {
        let _ = writeln!(
            err,
            "passthru: run: no devices are set up (use `passthru setup BDF...` first)"
        );
        return KSFT_SKIP;
    }
    let status = Command::new(prog)
        .args(prog_args)
        .args(bdfs.iter().map(|b| b.to_string()))
        .status();
    match status {
        Ok(s) => match s.code() {
            Some(c) => c,
            None => {
                use std::os::unix::process::ExitStatusExt;
                128 + s.signal().unwrap_or(0)
            }
        },
        Err(e) => one_line_error(err, format!("run: cannot start {prog}: {e}")),
    }
}

/// A writer several owners share: the CLI's stdout, which nested programs also write through.
#[derive(Clone)]
struct SharedOut(Arc<Mutex<dyn Write + Send>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        lock(&self.0).flush()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Indents every line by four spaces: a program's KTAP as a nested subtest of the stream.
struct Indent<W> {
    inner: W,
    at_line_start: bool,
}

impl<W: Write> Write for Indent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.at_line_start {
                self.inner.write_all(b"    ")?;
                self.at_line_start = false;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.inner.write_all(&rest[..=i])?;
                    self.at_line_start = true;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.inner.write_all(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The usage of `passthru test`.
fn test_usage() -> String {
    format!(
        "Usage: passthru test {}\n\
         Without a device: the driver suite on the DSA, CBDMA and edu models (one KTAP stream).\n\
         With devices (BDFs, $VFIO_SELFTESTS_BDF[S], else the set-up ones): the seven programs,\n\
         one KTAP stream with each program a nested subtest.\n\
         \x20      passthru test --qemu [--kernel bzImage [--kernel-config .config] | --kernel-src DIR]",
        harness::args::USAGE_OPTIONS.replace(" (exit 4, as upstream)", "")
    )
}

/// Runs several programs as one KTAP stream: `TAP version 13`, the plan `1..N`, then each
/// program's own KTAP indented as a nested subtest, followed by its result line (`ok`,
/// `not ok`, or `ok ... # SKIP reason` with the reason it gave on stderr).
fn run_programs(
    programs: Vec<(&'static str, Suite)>,
    opts: &harness::Options,
    args: &[String],
    source: &DeviceSource,
    out: &SharedOut,
    err: &mut dyn Write,
) -> i32 {
    let mut o = out.clone();
    let _ = writeln!(o, "TAP version 13\n1..{}", programs.len());
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for (i, (name, suite)) in programs.iter().enumerate() {
        let n = i + 1;
        if suite.selected_count(&opts.filters) == 0 {
            skip += 1;
            let _ = writeln!(o, "ok {n} {name} # SKIP no test selected by the filters");
            continue;
        }
        let _ = writeln!(o, "    # Subtest: {name}");
        let nested = Indent {
            inner: out.clone(),
            at_line_start: true,
        };
        let mut errors = Vec::new();
        let code = suite.run(args, source, Box::new(nested), &mut errors);
        let _ = err.write_all(&errors);
        let errors = String::from_utf8_lossy(&errors);
        let reason = errors
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| {
                let l = l.strip_prefix(&format!("{name}: ")).unwrap_or(l).trim();
                l.strip_suffix("; skipping").unwrap_or(l)
            })
            .unwrap_or("every test skipped")
            .to_owned();
        let _ = match code {
            KSFT_PASS => {
                pass += 1;
                writeln!(o, "ok {n} {name}")
            }
            KSFT_SKIP => {
                skip += 1;
                writeln!(o, "ok {n} {name} # SKIP {reason}")
            }
            _ => {
                fail += 1;
                writeln!(o, "not ok {n} {name}")
            }
        };
    }
    let _ = write!(o, "{}", harness::ktap::summary_text(pass, fail, skip));
    let _ = o.flush();
    combine_codes(pass, fail)
}

/// The exit code of several programs: any failure fails, else any pass passes, else
/// everything was skipped.
fn combine_codes(pass: usize, fail: usize) -> i32 {
    if fail > 0 {
        KSFT_FAIL
    } else if pass > 0 {
        KSFT_PASS
    } else {
        KSFT_SKIP
    }
}

fn cmd_test(env: &Env, args: &[String], out: &SharedOut, err: &mut dyn Write) -> i32 {
    let qemu = args.iter().any(|a| a == "--qemu");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--qemu").cloned().collect();
    if qemu {
        return match passthru::rig::RigOptions::parse(&rest) {
            Ok(opts) => passthru::rig::run_rig(opts),
            Err(e) => one_line_error(err, format!("test --qemu: {e}")),
        };
    }
    let opts = match harness::Options::parse(&rest) {
        Ok(o) => o,
        Err(e) => return one_line_error(err, format!("test: {e}")),
    };
    if opts.help {
        let _ = writeln!(out.clone(), "{}", test_usage());
        return KSFT_PASS;
    }
    if let Err(e) = suite::check_storm_env() {
        return one_line_error(err, format!("test: {e}"));
    }
    // Devices: BDF arguments, else the environment, else whatever `passthru setup` bound.
    let mut source = env.source.clone();
    if opts.bdfs.is_empty() && source.env_bdf.is_none() && source.env_pool.is_none() {
        let set_up = match env.store().and_then(|s| s.list(&env.sysfs)) {
            Ok(b) => b,
            Err(StateError::NoLocation) => Vec::new(),
            Err(e) => return one_line_error(err, format!("test: {e}")),
        };
        if !set_up.is_empty() {
            let pool: Vec<String> = set_up.iter().map(|b| b.to_string()).collect();
            source.env_pool = Some(pool.join(" "));
        }
    }
    let candidates = match source.candidates(&opts.bdfs) {
        Ok(c) => c,
        Err(e) => return one_line_error(err, format!("test: {e}")),
    };
    // A well-formed address that names nothing is bad input, said once (not once per program).
    if let Some(missing) = candidates.iter().find(|b| !source.sysfs.exists(**b)) {
        return one_line_error(
            err,
            format!(
                "test: {missing}: no such PCI function ({} does not exist)",
                source
                    .sysfs
                    .pci_devices_dir()
                    .join(missing.to_string())
                    .display()
            ),
        );
    }
    let programs: Vec<(&'static str, Suite)> = if candidates.is_empty() {
        MODEL_PROGRAMS
            .iter()
            .map(|(name, build)| (*name, build()))
            .collect()
    } else {
        device_programs()
            .into_iter()
            .map(|(name, build)| (name, build()))
            .collect()
    };
    let mut o = out.clone();
    if opts.list {
        for (_, suite) in &programs {
            for name in suite.names() {
                let _ = writeln!(o, "{name}");
            }
        }
        return KSFT_PASS;
    }
    let keys = programs.iter().flat_map(|(_, s)| s.case_keys());
    if let Some(why) = harness::args::empty_selection(&opts.filters, keys) {
        return one_line_error(err, format!("test: {why}"));
    }
    if candidates.is_empty() {
        let _ = writeln!(
            err,
            "passthru test: no device given: running the driver suites on the models and \
             irq_test in eventfd mode"
        );
    }
    run_programs(programs, &opts, &rest, &source, out, err)
}

fn cmd_bench(args: &[String], err: &mut dyn Write) -> i32 {
    match args.first().map(String::as_str) {
        Some("models") => suite::bench::bench_models(&args[1..]),
        Some("map") => passthru::bench::map::bench_map_main(&args[1..]),
        Some("guest") => passthru::bench::guest::bench_guest_main(&args[1..]),
        Some(other) => one_line_error(
            err,
            format!("bench: unknown benchmark `{other}` (available: models, map, guest)"),
        ),
        None => one_line_error(
            err,
            "bench: name a benchmark: `bench models` (software models vs host memcpy), \
             `bench map BDF` (VFIO/IOMMUFD map+unmap vs raw ioctls) or `bench guest` (KVM \
             guest boot and interrupt latency vs raw kvm-ioctls)",
        ),
    }
}

/// Parses global options and dispatches; returns the exit code.
fn run_cli(
    args: &[String],
    source: DeviceSource,
    echo: WriteLog,
    out: SharedOut,
    err: &mut dyn Write,
) -> i32 {
    let mut sys_root = PathBuf::from("/sys");
    let mut proc_root = PathBuf::from("/proc");
    let mut state_dir: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].as_str();
        let target = match opt {
            "--sysfs" => &mut sys_root,
            "--proc" => &mut proc_root,
            "--state-dir" => state_dir.get_or_insert_with(PathBuf::new),
            _ => break,
        };
        let Some(v) = args.get(i + 1) else {
            return one_line_error(err, format!("option {opt} needs a value"));
        };
        *target = PathBuf::from(v);
        i += 2;
    }
    let Some(cmd) = args.get(i) else {
        let _ = writeln!(err, "{USAGE}");
        return KSFT_FAIL;
    };
    let rest = &args[i + 1..];

    let sysfs = Sysfs::new(&sys_root)
        .with_proc_root(&proc_root)
        .with_write_log(echo);
    let mut source = source;
    source.sysfs = Sysfs::new(&sys_root).with_proc_root(&proc_root);
    let env = Env {
        sysfs,
        state_dir,
        source,
    };

    let mut o = out.clone();
    match cmd.as_str() {
        "list" => cmd_list(&env, rest, &mut o, err),
        "setup" => cmd_setup(&env, rest, &mut o, err),
        "cleanup" => cmd_cleanup(&env, rest, &mut o, err),
        "run" => cmd_run(&env, rest, err),
        "test" => cmd_test(&env, rest, &out, err),
        "bench" => cmd_bench(rest, err),
        "lava" => passthru::lava::lava_main(rest),
        "help" | "-h" | "--help" => {
            let _ = writeln!(o, "{USAGE}");
            KSFT_PASS
        }
        "version" | "-V" | "--version" => {
            let _ = writeln!(o, "passthru {}", env!("CARGO_PKG_VERSION"));
            KSFT_PASS
        }
        other => one_line_error(
            err,
            format!("unknown command {other:?} (see `passthru help`)"),
        ),
    }
}

fn main() {
    let args = passthru::harness::process_args("passthru");
    // Every sysfs write is printed as the equivalent shell command, as upstream's scripts do.
    let echo: WriteLog = Arc::new(|w: &SysfsWrite<'_>| {
        let _ = writeln!(std::io::stderr(), "+ {w}");
    });
    let code = run_cli(
        &args,
        DeviceSource::from_env(),
        echo,
        SharedOut(Arc::new(Mutex::new(std::io::stdout()))),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A minimal sysfs tree: 0000:00:04.0 (edu, unbound, group 3), 0000:00:05.0 (virtio, bound
    /// to vfio-pci with cdev vfio0), and a registered vfio-pci driver.
    struct Tree(PathBuf, Arc<std::sync::Mutex<Vec<String>>>);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    impl Tree {
        fn new() -> Self {
            let base = std::env::temp_dir().join(format!(
                "passthru-cli-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&base);
            let sys = base.join("sys");
            fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
            fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci")).unwrap();
            fs::create_dir_all(base.join("proc")).unwrap();
            fs::write(base.join("proc/mounts"), "").unwrap();
            for (bdf, vendor, device, class) in [
                ("0000:00:04.0", "0x1234", "0x11e8", "0x00ff00"),
                ("0000:00:05.0", "0x1af4", "0x1041", "0x020000"),
            ] {
                let dir = sys.join("devices/pci0000:00").join(bdf);
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("vendor"), vendor).unwrap();
                fs::write(dir.join("device"), device).unwrap();
                fs::write(dir.join("class"), class).unwrap();
                fs::write(dir.join("driver_override"), "(null)\n").unwrap();
                symlink(
                    format!("../../../devices/pci0000:00/{bdf}"),
                    sys.join("bus/pci/devices").join(bdf),
                )
                .unwrap();
            }
            let d4 = sys.join("devices/pci0000:00/0000:00:04.0");
            fs::create_dir_all(sys.join("kernel/iommu_groups/3/devices")).unwrap();
            symlink("../../../kernel/iommu_groups/3", d4.join("iommu_group")).unwrap();
            let d5 = sys.join("devices/pci0000:00/0000:00:05.0");
            symlink("../../../bus/pci/drivers/vfio-pci", d5.join("driver")).unwrap();
            fs::create_dir_all(d5.join("vfio-dev/vfio0")).unwrap();
            Tree(base, Arc::default())
        }

        fn cli(&self, args: &[&str]) -> (i32, String, String) {
            self.cli_with(args, DeviceSource::default())
        }

        fn cli_with(&self, args: &[&str], source: DeviceSource) -> (i32, String, String) {
            let mut full: Vec<String> = vec![
                "--sysfs".into(),
                self.0.join("sys").display().to_string(),
                "--proc".into(),
                self.0.join("proc").display().to_string(),
                "--state-dir".into(),
                self.0.join("state").display().to_string(),
            ];
            full.extend(args.iter().map(|s| s.to_string()));
            let out = Arc::new(Mutex::new(Vec::<u8>::new()));
            let mut err = Vec::new();
            let echoed = self.1.clone();
            let echo: WriteLog = Arc::new(move |w: &SysfsWrite<'_>| {
                echoed.lock().unwrap().push(w.to_string());
            });
            let code = run_cli(&full, source, echo, SharedOut(out.clone()), &mut err);
            let out = out.lock().unwrap().clone();
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        }

        fn store(&self) -> StateStore {
            StateStore::new(self.0.join("state"))
        }

        fn sysfs(&self) -> Sysfs {
            Sysfs::new(self.0.join("sys"))
        }
    }

    fn bdf(s: &str) -> Bdf {
        Bdf::parse(s).unwrap()
    }

    #[test]
    fn list_prints_table_with_vfio_status_and_matches() {
        let t = Tree::new();
        let (code, out, err) = t.cli(&["list"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("BDF") && lines[0].ends_with("PASSTHRU"));
        let edu: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            edu[..6],
            ["0000:00:04.0", "1234:11e8", "00ff00", "-", "3", "-"]
        );
        assert_eq!(edu[6], "edu:", "{out}");
        let virtio: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            virtio,
            [
                "0000:00:05.0",
                "1af4:1041",
                "020000",
                "vfio-pci",
                "-",
                "vfio-pci:vfio0",
                "-"
            ]
        );
        let (code, _, err) = t.cli(&["list", "extra"]);
        assert_eq!(code, KSFT_FAIL);
        assert_eq!(err.lines().count(), 1);
        // An unreadable function is reported and the others still listed.
        fs::write(
            t.0.join("sys/devices/pci0000:00/0000:00:04.0/vendor"),
            "garbage",
        )
        .unwrap();
        let (code, out, err) = t.cli(&["list"]);
        assert_eq!(code, KSFT_PASS);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(err.contains("0000:00:04.0/vendor"), "{err}");
    }

    #[test]
    fn table_marks_set_up_devices() {
        let f = PciFunction {
            bdf: bdf("0000:00:04.0"),
            vendor: 0x8086,
            device: 0x0b25,
            class: 0x088000,
            driver: Some("vfio-pci".into()),
            driver_override: Some("vfio-pci".into()),
            iommu_group: Some(12),
            sriov_totalvfs: None,
            sriov_numvfs: None,
            physfn: None,
            vfio_cdev: None,
        };
        let table = list_table(&[f], &[bdf("0000:00:04.0")], |_, _| Some("dsa".into()));
        let row = table.lines().nth(1).unwrap();
        assert!(
            row.contains("vfio-pci (setup)") && row.ends_with("dsa"),
            "{row}"
        );
        assert_eq!(
            passthru_match(0x8086, 0x0b25).as_deref(),
            Some("dsa: DSA SPR")
        );
        assert!(passthru_match(0x8086, 0x2021)
            .unwrap()
            .starts_with("ioat: "));
        assert_eq!(passthru_match(0x1af4, 0x1041), None);
    }

    #[test]
    fn bad_input_is_one_line_and_exit_1() {
        let t = Tree::new();
        for args in [
            &["setup"][..],
            &["setup", "00:04.0"],
            &["setup", "--bogus", "0000:00:04.0"],
            &["cleanup", "xyz"],
            &["frobnicate"],
            &["run"],
            &["test", "-x"],
        ] {
            let (code, _, err) = t.cli(args);
            assert_eq!(code, KSFT_FAIL, "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("passthru: "), "{err}");
        }
        let (code, _, err) = t.cli(&[]);
        assert_eq!(code, KSFT_FAIL);
        assert!(err.starts_with("usage: passthru"));
    }

    #[test]
    fn setup_and_cleanup_on_already_bound_device_restore_override() {
        let t = Tree::new();
        let dev = bdf("0000:00:05.0");
        let (code, out, err) = t.cli(&["setup", "0000:00:05.0"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        assert!(out.contains("0000:00:05.0: bound to vfio-pci"), "{out}");
        let dev_dir = t.0.join("sys/bus/pci/devices/0000:00:05.0");
        assert_eq!(
            t.1.lock().unwrap().as_slice(),
            [format!(
                "echo vfio-pci > {}/driver_override",
                dev_dir.display()
            )],
            "every sysfs write is echoed"
        );
        let sysfs = Sysfs::new(t.0.join("sys"));
        assert_eq!(
            sysfs.driver_override(dev).unwrap().as_deref(),
            Some("vfio-pci")
        );
        assert_eq!(t.store().list(&t.sysfs()).unwrap(), vec![dev]);
        let (_, out, _) = t.cli(&["list"]);
        assert!(out.contains("vfio-pci:vfio0 (setup)"), "{out}");
        let (code, out, err) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        assert!(
            out.contains("0000:00:05.0: restored (driver vfio-pci)"),
            "{out}"
        );
        assert_eq!(sysfs.driver_override(dev).unwrap(), None);
        assert!(t.store().list(&t.sysfs()).unwrap().is_empty());
        let (code, out, _) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS);
        assert!(out.starts_with("nothing to clean up"));
        let (code, _, err) = t.cli(&["cleanup", "0000:00:05.0"]);
        assert_eq!(code, KSFT_FAIL);
        assert!(err.contains("no saved state"), "{err}");
    }

    #[test]
    fn setup_reports_failed_bind_and_keeps_state_for_cleanup() {
        let t = Tree::new();
        // No kernel behind this tree: the bind write lands in a plain file and the device
        // stays unbound, which setup must notice.
        let (code, _, err) = t.cli(&["setup", "0000:00:04.0"]);
        assert_eq!(code, KSFT_FAIL);
        assert!(
            err.contains("expected driver vfio-pci after binding, found none"),
            "{err}"
        );
        assert_eq!(
            t.store().list(&t.sysfs()).unwrap(),
            vec![bdf("0000:00:04.0")]
        );
        let (code, _, err) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS, "{err}");
    }

    /// Writes `state/0000:00:05.0/{driver,driver_override}` by hand, as a planter would.
    fn plant(t: &Tree) -> PathBuf {
        let dev = t.0.join("state/0000:00:05.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("driver"), "vfio-pci").unwrap();
        fs::write(dev.join("driver_override"), "").unwrap();
        dev
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Every command that acts on saved state refuses it with one line naming `path` and
    /// `why`, and nothing is written to sysfs.
    fn assert_refused(t: &Tree, path: &Path, why: &str) {
        for args in [
            &["cleanup"][..],
            &["cleanup", "0000:00:05.0"],
            &["setup", "0000:00:05.0"],
            &["run", "--", "true"],
            &["test", "-l"],
        ] {
            let (code, _, err) = t.cli(args);
            assert_eq!(code, KSFT_FAIL, "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            let named = format!("{}: refusing to use setup state: {why}", path.display());
            assert!(err.contains(&named), "{args:?}: want {named:?} in {err:?}");
        }
        assert!(t.1.lock().unwrap().is_empty(), "nothing written to sysfs");
    }

    #[test]
    fn hand_written_state_in_a_private_directory_is_accepted() {
        // The control for the refusals below: the same planted files, properly owned.
        let t = Tree::new();
        plant(&t);
        let (code, out, err) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        assert!(out.contains("0000:00:05.0: restored"), "{out}");
    }

    #[test]
    fn planted_state_with_wrong_mode_or_symlinks_is_refused() {
        // The store itself world-writable.
        let t = Tree::new();
        plant(&t);
        chmod(&t.0.join("state"), 0o777);
        assert_refused(
            &t,
            &t.0.join("state"),
            "group- or world-writable (mode 0777)",
        );
        // A device directory group-writable.
        let t = Tree::new();
        let dev = plant(&t);
        chmod(&dev, 0o775);
        assert_refused(&t, &dev, "group- or world-writable (mode 0775)");
        // A file world-writable.
        let t = Tree::new();
        let dev = plant(&t);
        chmod(&dev.join("driver"), 0o666);
        assert_refused(
            &t,
            &dev.join("driver"),
            "group- or world-writable (mode 0666)",
        );
        // The store is a symlink (to a directory with valid-looking state).
        let t = Tree::new();
        plant(&t);
        fs::rename(t.0.join("state"), t.0.join("elsewhere")).unwrap();
        symlink(t.0.join("elsewhere"), t.0.join("state")).unwrap();
        assert_refused(&t, &t.0.join("state"), "is a symbolic link");
        // A device directory that is a symlink.
        let t = Tree::new();
        let dev = plant(&t);
        fs::rename(&dev, t.0.join("elsewhere")).unwrap();
        symlink(t.0.join("elsewhere"), &dev).unwrap();
        assert_refused(&t, &dev, "is a symbolic link");
        // A file that is a symlink.
        let t = Tree::new();
        let dev = plant(&t);
        fs::write(t.0.join("target"), "vfio-pci").unwrap();
        fs::remove_file(dev.join("driver")).unwrap();
        symlink(t.0.join("target"), dev.join("driver")).unwrap();
        assert_refused(&t, &dev.join("driver"), "is a symbolic link");
        // The store's parent writable by anyone (and not sticky): the store could be swapped.
        let t = Tree::new();
        plant(&t);
        chmod(&t.0, 0o777);
        assert_refused(
            &t,
            &t.0.join("state"),
            &format!(
                "its parent {} is writable by others and not sticky (mode 0777)",
                t.0.display()
            ),
        );
        chmod(&t.0, 0o755);
    }

    #[test]
    fn planted_state_with_bad_contents_is_refused() {
        let case = |mutate: &dyn Fn(&Path), path: &dyn Fn(&Path) -> PathBuf, why: &str| {
            let t = Tree::new();
            let dev = plant(&t);
            mutate(&dev);
            assert_refused(&t, &path(&dev), why);
        };
        let file = |name: &'static str| move |d: &Path| d.join(name);
        case(
            &|d| fs::write(d.join("driver"), "../../../../tmp/evil").unwrap(),
            &file("driver"),
            "\"../../../../tmp/evil\" is not a driver under",
        );
        case(
            &|d| fs::write(d.join("driver"), "igb").unwrap(),
            &file("driver"),
            "\"igb\" is not a driver under",
        );
        case(
            &|d| fs::write(d.join("driver_override"), "a b").unwrap(),
            &file("driver_override"),
            "\"a b\" is not a driver name",
        );
        case(
            &|d| fs::write(d.join("sriov_numvfs"), "4").unwrap(),
            &file("sriov_numvfs"),
            "0000:00:05.0 is not an SR-IOV physical function",
        );
        case(
            &|d| fs::write(d.join("sriov_numvfs"), "-1").unwrap(),
            &file("sriov_numvfs"),
            "\"-1\" is not a VF count",
        );
        case(
            &|d| fs::remove_file(d.join("driver_override")).unwrap(),
            &file("driver_override"),
            "missing",
        );
        case(
            &|d| fs::write(d.join("extra"), "").unwrap(),
            &file("extra"),
            "unexpected entry",
        );
        case(
            &|d| fs::rename(d, d.with_file_name("0000:00:09.0")).unwrap(),
            &|d| d.with_file_name("0000:00:09.0"),
            "no PCI function 0000:00:09.0 under",
        );
        case(
            &|d| fs::rename(d, d.with_file_name("evil")).unwrap(),
            &|d| d.with_file_name("evil"),
            "name is not a PCI address",
        );
    }

    #[test]
    fn state_owned_by_another_user_is_refused() {
        // A second account is not available in tests: the store is told to expect another
        // owner instead, which is what a planted directory looks like to the caller.
        let t = Tree::new();
        let dev = plant(&t);
        let me = nix::unistd::geteuid().as_raw();
        let store = t.store().with_owner(me + 1);
        let sysfs = Sysfs::new(t.0.join("sys"));
        let err = state::cleanup(&sysfs, &store, bdf("0000:00:05.0")).unwrap_err();
        assert!(
            err.to_string().ends_with(&format!(
                "refusing to use setup state: owned by uid {me}, not by uid {}",
                me + 1
            )),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with(&t.0.join("state").display().to_string()));
        let err = store.list(&sysfs).unwrap_err();
        assert!(matches!(err, StateError::Refused { .. }), "{err}");
        // Only the device directory foreign (possible only as root: chown it away).
        if me == 0 {
            std::os::unix::fs::chown(&dev, Some(65534), None).unwrap();
            assert_refused(&t, &dev, "owned by uid 65534, not by uid 0");
        }
    }

    #[test]
    fn state_is_created_private() {
        use std::os::unix::fs::MetadataExt;
        let t = Tree::new();
        let (code, _, err) = t.cli(&["setup", "0000:00:05.0"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&t.0.join("state")), 0o700);
        assert_eq!(mode(&t.0.join("state/0000:00:05.0")), 0o700);
        assert_eq!(mode(&t.0.join("state/0000:00:05.0/driver")), 0o600);
    }

    #[test]
    fn default_state_location_is_private_to_the_user() {
        let store = StateStore::default_location();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(store.unwrap().dir(), Path::new("/run/passthru"));
        } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
            assert_eq!(store.unwrap().dir(), Path::new(&x).join("passthru"));
        }
        assert!(!USAGE.contains("TMPDIR"));
    }

    #[test]
    fn run_appends_set_up_bdfs_and_propagates_exit_code() {
        let t = Tree::new();
        let (code, _, err) = t.cli(&["run", "--", "true"]);
        assert_eq!(code, KSFT_SKIP);
        assert!(err.contains("no devices are set up"));
        let store = t.store();
        store
            .save(bdf("0000:00:05.0"), &Default::default())
            .unwrap();
        store
            .save(bdf("0000:00:04.0"), &Default::default())
            .unwrap();
        let file = t.0.join("args.txt");
        let script = format!("echo \"$@\" > {}; exit 3", file.display());
        let (code, _, err) = t.cli(&["run", "--", "sh", "-c", &script, "sh", "first"]);
        assert_eq!(code, 3, "{err}");
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "first 0000:00:04.0 0000:00:05.0\n"
        );
        let (code, _, err) = t.cli(&["run", "--", "/nonexistent/prog"]);
        assert_eq!(code, KSFT_FAIL);
        assert!(err.contains("cannot start /nonexistent/prog"), "{err}");
    }

    #[test]
    fn test_dispatches_to_models_or_programs_and_bench_needs_a_name() {
        let t = Tree::new();
        // No device: the model suite (listing only, to stay fast).
        let (code, _, err) = t.cli(&["test", "-l"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        // A device that is not bound to vfio-pci: every program skips (kselftest exit 4).
        let (code, _, err) = t.cli(&["test", "0000:00:04.0"]);
        assert_eq!(code, KSFT_SKIP, "{err}");
        let src = DeviceSource {
            env_bdf: Some("bad".into()),
            ..Default::default()
        };
        let (code, _, err) = t.cli_with(&["test"], src);
        assert_eq!(code, KSFT_FAIL, "{err}");
        let (code, _, err) = t.cli(&["bench"]);
        assert_eq!(code, KSFT_FAIL);
        assert!(
            err.contains("bench models") && err.contains("bench map"),
            "{err}"
        );
        let (code, _, err) = t.cli(&["bench", "nope"]);
        assert_eq!(code, KSFT_FAIL);
        assert!(err.contains("unknown benchmark `nope`"), "{err}");
    }

    /// Checks the stream's shape; with perl's `prove` installed, also that TAP::Parser reads
    /// it without parse errors and finds one plan of `programs` tests.
    fn assert_one_tap_stream(out: &str, programs: usize) {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "TAP version 13", "{out}");
        assert_eq!(lines[1], format!("1..{programs}"), "{out}");
        let top: Vec<&&str> = lines.iter().filter(|l| !l.starts_with("    ")).collect();
        assert_eq!(
            top.iter().filter(|l| l.starts_with("1..")).count(),
            1,
            "{out}"
        );
        assert_eq!(
            top.iter().filter(|l| l.contains("TAP version")).count(),
            1,
            "{out}"
        );
        let results: Vec<&&&str> = top
            .iter()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .collect();
        assert_eq!(results.len(), programs, "{out}");
        let file = std::env::temp_dir().join(format!("passthru-stream-{}.tap", std::process::id()));
        fs::write(&file, out).unwrap();
        let prove = Command::new("prove")
            .args(["--verbose", "--exec", "cat"])
            .arg(&file)
            .output();
        let _ = fs::remove_file(&file);
        match prove {
            Ok(p) => {
                let text = String::from_utf8_lossy(&p.stdout).into_owned()
                    + &String::from_utf8_lossy(&p.stderr);
                assert!(!text.contains("Parse errors"), "{text}");
                assert!(text.contains(&format!("Tests={programs},")), "{text}");
            }
            Err(e) => eprintln!("prove not available ({e}); checked the stream's shape only"),
        }
    }

    #[test]
    fn test_with_devices_is_one_ktap_stream() {
        let t = Tree::new();
        // Every program skips (the device is not bound to vfio-pci).
        let (code, out, err) = t.cli(&["test", "0000:00:04.0"]);
        assert_eq!(code, KSFT_SKIP, "{err}");
        assert_one_tap_stream(&out, device_programs().len());
        assert!(
            out.contains("ok 6 vfio_pci_sriov_uapi_test # SKIP need 1 SR-IOV physical function"),
            "{out}"
        );
        // One program runs one test (nested, with its own version line and plan); the others
        // are skipped as not selected.
        let (_, out, err) = t.cli(&[
            "test",
            "-r",
            "vfio_pci_device_test.config_space_read_write",
            "0000:00:05.0",
        ]);
        assert_one_tap_stream(&out, device_programs().len());
        assert!(
            out.contains("\n    TAP version 13\n    1..1\n"),
            "{out}\n{err}"
        );
        assert!(
            out.contains("ok 1 vfio_dma_mapping_test # SKIP no test selected by the filters"),
            "{out}"
        );
        // Listing prints names only: no `#` line, no TAP.
        let (code, out, _) = t.cli(&["test", "-l", "0000:00:04.0"]);
        assert_eq!(code, KSFT_PASS);
        assert!(
            out.lines().all(|l| !l.starts_with('#') && l.contains('.')),
            "{out}"
        );
        assert!(out.contains("vfio_pci_device_test.config_space_read_write\n"));
        // Without devices: one stream of the model programs, nothing before its version line;
        // the filter selects only model tests.
        let (_, out, _) = t.cli(&["test", "-r", "dsa.memcpy_success"]);
        assert_one_tap_stream(&out, MODEL_PROGRAMS.len());
        assert!(out.contains("\n    TAP version 13\n    1..1\n"), "{out}");
        assert!(
            out.contains("ok 3 irq_test (eventfd mode) # SKIP no test selected by the filters"),
            "{out}"
        );
    }

    #[test]
    fn test_bad_input_is_one_line_once() {
        let t = Tree::new();
        for (args, want) in [
            (
                &["test", "0000:00:1f.7"][..],
                "passthru: test: 0000:00:1f.7: no such PCI function (",
            ),
            (
                &["test", "-r", "nope.test"],
                "passthru: test: filter -r nope.test matches no test",
            ),
            (
                &["test", "-f", "no_such_fixture", "0000:00:04.0"],
                "passthru: test: filter -f no_such_fixture matches no test",
            ),
            (
                &["test", "-v", "iommufd", "-T", "memcpy_success"],
                "passthru: test: filter -v iommufd matches no test",
            ),
        ] {
            let (code, out, err) = t.cli(args);
            assert_eq!(code, KSFT_FAIL, "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with(want), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
        }
        let (code, out, err) = t.cli(&["test", "--help"]);
        assert_eq!(code, KSFT_PASS);
        assert!(err.is_empty(), "{err}");
        assert!(out.starts_with("Usage: passthru test"), "{out}");
        assert!(!out.contains("TAP version"), "usage only: {out}");
        let (code, out, _) = t.cli(&["--version"]);
        assert_eq!(
            (code, out.as_str()),
            (
                KSFT_PASS,
                concat!("passthru ", env!("CARGO_PKG_VERSION"), "\n")
            )
        );
    }

    #[test]
    fn exit_codes_combine_like_kselftest() {
        assert_eq!(combine_codes(1, 0), KSFT_PASS);
        assert_eq!(combine_codes(0, 0), KSFT_SKIP);
        assert_eq!(combine_codes(1, 1), KSFT_FAIL);
    }

    #[test]
    fn sysfs_root_option_is_used() {
        let t = Tree::new();
        assert!(Path::new(&t.0)
            .join("sys/bus/pci/devices/0000:00:04.0")
            .exists());
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut err = Vec::new();
        let code = run_cli(
            &["--sysfs".into()],
            DeviceSource::default(),
            Arc::new(|_: &SysfsWrite<'_>| {}),
            SharedOut(out),
            &mut err,
        );
        assert_eq!(code, KSFT_FAIL);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "passthru: option --sysfs needs a value\n"
        );
    }
}
