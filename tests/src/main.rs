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
//!   bench models | map [BDF]   benchmarks (models vs host memcpy; map+unmap vs raw ioctls)
//!   lava job|run|results|cases  LAVA jobs, a local lava-run of the rig job, result checks
//! ```
//!
//! Exit codes follow kselftest: 0 success, 1 failure or bad input (one line on stderr), 4 skip
//! (nothing to run on).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use passthru::harness::{self, Bdf, DeviceSource, Suite, KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
use passthru::{programs, suite};
use passthru_linux::sysfs::{
    PciFunction, SetupOutcome, StateStore, Sysfs, SysfsWrite, WriteLog, VFIO_PCI_DRIVER,
};

const USAGE: &str = "\
usage: passthru [--sysfs DIR] [--proc DIR] [--state-dir DIR] COMMAND ...
  list                         every PCI function with ids, class, driver, IOMMU group, VFIO status
                               and the passthru driver that matches it
  setup [--force] BDF...       bind to vfio-pci (state saved under $TMPDIR/passthru-devices);
                               refuses devices backing mounts, swap or up interfaces unless --force
  cleanup [BDF...]             restore what setup changed (every set-up device if none given)
  run -- PROG [ARGS...]        run PROG with every set-up BDF appended (exit 4 if none)
  test [--qemu] [-l] [-v V] [-r NAME] [--seed N] [--timeout S] [BDF...]
                               run the test suites on devices (BDFs, $VFIO_SELFTESTS_BDF[S],
                               else the set-up devices)
  bench models                 software-model memcpy bandwidth vs host memcpy, DSA batch prep cost
  bench map BDF [OPTIONS]      VFIO/IOMMUFD map+unmap and open+setup vs a raw-ioctl loop, per mode
  lava job|run|results|cases   LAVA: write jobs, run the rig job with lava-run, check results
                               (`passthru lava --help`)";

/// A program `passthru test` runs: its name and the function building its suite.
type Program = (&'static str, fn() -> Suite);

/// The seven kselftest programs run on real devices: the six of `passthru::programs`, then
/// `vfio_pci_driver_test` from `passthru::suite`.
fn device_programs() -> Vec<Program> {
    programs::PROGRAMS
        .iter()
        .map(|p| (p.name, p.suite))
        .chain([(suite::vfio::PROGRAM, suite::vfio::suite as fn() -> Suite)])
        .collect()
}

/// What runs when no device is given (the default of `passthru test`): the upstream driver test
/// cases on the DSA, CBDMA and edu models.
const MODEL_PROGRAM: Program = ("passthru models (dsa, ioat, edu)", suite::models::suite);

/// Global options and the roots everything works under.
struct Env {
    sysfs: Sysfs,
    store: StateStore,
    source: DeviceSource,
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
    let set_up = env.store.list().unwrap_or_default();
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
    let mut code = KSFT_PASS;
    let mut any_set_up = false;
    for bdf in bdfs {
        match env.sysfs.setup_vfio(&env.store, bdf, force) {
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
            env.store.dir().display()
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
    if bdfs.is_empty() {
        bdfs = match env.store.list() {
            Ok(b) => b,
            Err(e) => return one_line_error(err, e),
        };
        if bdfs.is_empty() {
            let _ = writeln!(
                out,
                "nothing to clean up (no state under {})",
                env.store.dir().display()
            );
            return KSFT_PASS;
        }
    }
    let mut code = KSFT_PASS;
    for bdf in bdfs {
        match env.sysfs.cleanup_vfio(&env.store, bdf) {
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
    let bdfs = match env.store.list() {
        Ok(b) => b,
        Err(e) => return one_line_error(err, e),
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

/// Combines the exit codes of several programs: any failure fails, else any pass passes, else
/// everything was skipped.
fn combine_codes(codes: &[i32]) -> i32 {
    if codes.iter().any(|&c| c != KSFT_PASS && c != KSFT_SKIP) {
        KSFT_FAIL
    } else if codes.contains(&KSFT_PASS) {
        KSFT_PASS
    } else {
        KSFT_SKIP
    }
}

fn run_programs(
    programs: &[Program],
    args: &[String],
    source: &DeviceSource,
    err: &mut dyn Write,
) -> i32 {
    let mut codes = Vec::new();
    for (name, build) in programs {
        let _ = std::io::stdout().flush();
        println!("# program: {name}");
        let suite = build();
        codes.push(suite.run(args, source, Box::new(std::io::stdout()), err));
    }
    combine_codes(&codes)
}

fn cmd_test(env: &Env, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
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
    // Devices: BDF arguments, else the environment, else whatever `passthru setup` bound.
    let mut source = env.source.clone();
    if opts.bdfs.is_empty() && source.env_bdf.is_none() && source.env_pool.is_none() {
        let set_up = env.store.list().unwrap_or_default();
        if !set_up.is_empty() {
            let pool: Vec<String> = set_up.iter().map(|b| b.to_string()).collect();
            source.env_pool = Some(pool.join(" "));
        }
    }
    let have_devices = match source.candidates(&opts.bdfs) {
        Ok(c) => !c.is_empty(),
        Err(e) => return one_line_error(err, format!("test: {e}")),
    };
    if have_devices {
        return run_programs(&device_programs(), &rest, &source, err);
    }
    let _ = writeln!(out, "# no device given: running the model suites");
    run_programs(&[MODEL_PROGRAM], &rest, &source, err)
}

fn cmd_bench(args: &[String], err: &mut dyn Write) -> i32 {
    match args.first().map(String::as_str) {
        Some("models") => suite::bench::bench_models(&args[1..]),
        Some("map") => passthru::bench::map::bench_map_main(&args[1..]),
        Some(other) => one_line_error(
            err,
            format!("bench: unknown benchmark `{other}` (available: models, map)"),
        ),
        None => one_line_error(
            err,
            "bench: name a benchmark: `bench models` (software models vs host memcpy) or \
             `bench map BDF` (VFIO/IOMMUFD map+unmap vs raw ioctls)",
        ),
    }
}

/// Parses global options and dispatches; returns the exit code.
fn run_cli(
    args: &[String],
    source: DeviceSource,
    echo: WriteLog,
    out: &mut dyn Write,
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
    let store = state_dir.map_or_else(StateStore::default_location, StateStore::new);
    let mut source = source;
    source.sysfs = Sysfs::new(&sys_root).with_proc_root(&proc_root);
    let env = Env {
        sysfs,
        store,
        source,
    };

    match cmd.as_str() {
        "list" => cmd_list(&env, rest, out, err),
        "setup" => cmd_setup(&env, rest, out, err),
        "cleanup" => cmd_cleanup(&env, rest, out, err),
        "run" => cmd_run(&env, rest, err),
        "test" => cmd_test(&env, rest, out, err),
        "bench" => cmd_bench(rest, err),
        "lava" => passthru::lava::lava_main(rest),
        "help" | "-h" | "--help" => {
            let _ = writeln!(out, "{USAGE}");
            KSFT_PASS
        }
        other => one_line_error(
            err,
            format!("unknown command {other:?} (see `passthru help`)"),
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Every sysfs write is printed as the equivalent shell command, as upstream's scripts do.
    let echo: WriteLog = Arc::new(|w: &SysfsWrite<'_>| {
        let _ = writeln!(std::io::stderr(), "+ {w}");
    });
    let code = run_cli(
        &args,
        DeviceSource::from_env(),
        echo,
        &mut std::io::stdout(),
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
            let mut out = Vec::new();
            let mut err = Vec::new();
            let echoed = self.1.clone();
            let echo: WriteLog = Arc::new(move |w: &SysfsWrite<'_>| {
                echoed.lock().unwrap().push(w.to_string());
            });
            let code = run_cli(&full, source, echo, &mut out, &mut err);
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        }

        fn store(&self) -> StateStore {
            StateStore::new(self.0.join("state"))
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
        assert_eq!(t.store().list().unwrap(), vec![dev]);
        let (_, out, _) = t.cli(&["list"]);
        assert!(out.contains("vfio-pci:vfio0 (setup)"), "{out}");
        let (code, out, err) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS, "{err}");
        assert!(
            out.contains("0000:00:05.0: restored (driver vfio-pci)"),
            "{out}"
        );
        assert_eq!(sysfs.driver_override(dev).unwrap(), None);
        assert!(t.store().list().unwrap().is_empty());
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
        assert_eq!(t.store().list().unwrap(), vec![bdf("0000:00:04.0")]);
        let (code, _, err) = t.cli(&["cleanup"]);
        assert_eq!(code, KSFT_PASS, "{err}");
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

    #[test]
    fn exit_codes_combine_like_kselftest() {
        assert_eq!(combine_codes(&[0, 4]), KSFT_PASS);
        assert_eq!(combine_codes(&[4, 4]), KSFT_SKIP);
        assert_eq!(combine_codes(&[]), KSFT_SKIP);
        assert_eq!(combine_codes(&[0, 1, 4]), KSFT_FAIL);
        assert_eq!(combine_codes(&[0, 130]), KSFT_FAIL);
    }

    #[test]
    fn sysfs_root_option_is_used() {
        let t = Tree::new();
        assert!(Path::new(&t.0)
            .join("sys/bus/pci/devices/0000:00:04.0")
            .exists());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run_cli(
            &["--sysfs".into()],
            DeviceSource::default(),
            Arc::new(|_: &SysfsWrite<'_>| {}),
            &mut out,
            &mut err,
        );
        assert_eq!(code, KSFT_FAIL);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "passthru: option --sysfs needs a value\n"
        );
    }
}
