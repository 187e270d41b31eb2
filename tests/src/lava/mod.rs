//! `passthru lava`: run the suite through LAVA, the dispatcher KernelCI's labs use.
//!
//! ```text
//! passthru lava job [--kernel URL] [--initrd URL] [--device-file FILE] [--accel tcg|kvm|auto] [-o FILE]
//! passthru lava job --lab --device-type T --tags dsa,iommufd --devices BDF,... --kernel URL
//!                   --rootfs URL --repo URL [--revision REV] [--initrd URL] [--passthru-url URL] [-o FILE]
//! passthru lava run [--kernel BZIMAGE] [--rig-logs DIR] [--out-dir DIR] [--timeout SECS]
//! passthru lava results FILE [--rig-logs DIR --kernel LABEL]
//! passthru lava cases [--timeout SECS] [--runs RUNS] BDF...      (inside a LAVA test shell)
//! ```
//!
//! * `job` writes a LAVA job: for the rig's QEMU device ([`job::rig_job`], device file from
//!   `tests/vm/run-qemu.sh`), or for a lab's bare-metal x86 device type selected by tags
//!   ([`job::lab_job`]).
//! * `run` builds the rig's initramfs for the newest kernel (as `passthru test --qemu` does),
//!   validates and runs the rig job with `lava-run` (root; a missing tool is named with its
//!   Debian package, nothing is installed), reads the cases from its log, checks them against
//!   the KTAP plans ([`check::judge`]), optionally compares them by name with the rig's own run
//!   of that kernel ([`check::compare`]), prints the table and exits 0 or 1.
//! * `results` does the reading and checking for a saved `lava-run` log, a lava-server job log
//!   or a lava-server results export ([`log::parse`]).
//! * `cases` is the device side of the test definition ([`cases`]).

pub mod cases;
pub mod check;
pub mod flow;
pub mod job;
pub mod log;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::rig::plan::{Boot, PROGRAMS};
use crate::rig::report;
use crate::rig::{build_programs, on_path, run_last_line, target_dir, vm_dir};

const USAGE: &str = "\
usage: passthru lava COMMAND ...
  job [--kernel URL] [--initrd URL] [--device-file FILE] [--accel tcg|kvm|auto] [-o FILE]
                  the rig job (QEMU device file from tests/vm/run-qemu.sh; runs of the rig's plan)
  job --lab --device-type T --tags TAG,... --devices BDF,... --kernel URL --rootfs URL --repo URL
      [--revision REV] [--initrd URL] [--passthru-url URL] [-o FILE]
                  a job for a lab's bare-metal x86 hosts, chosen by LAVA device tags
  run [--kernel BZIMAGE] [--rig-logs DIR] [--out-dir DIR]
                  run the rig job with lava-run (root), check every case, exit 0/1
  results FILE [--rig-logs DIR --kernel LABEL]
                  read a saved lava-run log, lava-server job log or results export
  cases [--timeout SECS] [--runs RUNS] BDF...
                  inside a LAVA test shell: run the programs, one lava-test-case per KTAP case";

/// Host tools `passthru lava run` needs, with the Debian package of each.
const RUN_TOOLS: &[(&str, &str)] = &[
    (
        "lava-run",
        "lava-dispatcher (apt-get install --no-install-recommends lava-dispatcher)",
    ),
    ("qemu-system-x86_64", "qemu-system-x86 (bookworm-backports)"),
    ("cpio", "cpio"),
    ("busybox", "busybox-static"),
    ("file", "file"),
];

/// Entry point of `passthru lava ...`; returns the exit code.
pub fn lava_main(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("job") => cmd_job(rest),
        Some("run") => cmd_run(rest),
        Some("results") => cmd_results(rest),
        Some("cases") => cases::cases_main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        Some(other) => fail(format!("unknown command `{other}`\n{USAGE}")),
        None => fail(format!("missing command\n{USAGE}")),
    }
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("passthru: lava: {msg}");
    1
}

/// `--flag value` options of a subcommand; the positional words are returned separately.
struct Opts {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str], bare: &[&str]) -> Result<Self, String> {
        let mut o = Opts {
            pairs: Vec::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if with_value.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                o.pairs.push((a.clone(), v.clone()));
            } else if bare.contains(&a.as_str()) {
                o.flags.push(a.clone());
            } else if a.starts_with('-') {
                return Err(format!("unknown option `{a}`"));
            } else {
                o.positional.push(a.clone());
            }
        }
        Ok(o)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// The QEMU arguments of one boot, printed by `tests/vm/run-qemu.sh` (`PRINT_ARGS=1`).
/// `accel`: `None` lets the script choose (KVM on hosts with VMX/SVM, else TCG).
pub fn qemu_args(boot: Boot, accel: Option<&str>) -> Result<job::QemuArgs, String> {
    let mut cmd = Command::new("sh");
    cmd.arg(vm_dir().join("run-qemu.sh"))
        .args(["BZIMAGE", "INITRD", boot.variant()])
        .env("PRINT_ARGS", "1")
        .env_remove("APPEND")
        .env_remove("CPU")
        .stderr(Stdio::null());
    match accel {
        Some(a) => cmd.env("ACCEL", a),
        None => cmd.env_remove("ACCEL"),
    };
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run tests/vm/run-qemu.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tests/vm/run-qemu.sh PRINT_ARGS=1 failed: {}",
            out.status
        ));
    }
    job::split_qemu_args(&String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string())
}

/// Every program the rig knows, as if all were built (for jobs written without a build): the
/// upstream programs and the KVM guest programs (which need nested KVM in the rig guest).
pub(crate) fn all_built() -> BTreeSet<String> {
    PROGRAMS
        .iter()
        .chain(crate::rig::plan::GUEST_PROGRAMS.iter())
        .map(|p| p.to_string())
        .chain(["passthru".to_string()])
        .collect()
}

/// The rig job and its device file for the given kernel/initramfs URLs.
pub fn rig_job_files(
    kernel_url: &str,
    initrd_url: &str,
    accel: Option<&str>,
    built: &BTreeSet<String>,
    name: &str,
) -> Result<(String, String), String> {
    let normal = qemu_args(Boot::Normal, accel)?;
    let huge = qemu_args(Boot::Huge1G, accel)?;
    if normal.options != huge.options {
        return Err("run-qemu.sh's boots differ in more than memory and command line".into());
    }
    let note = match accel {
        Some(a) => format!("ACCEL={a}"),
        None => "accelerator chosen for this host".into(),
    };
    let device = job::device_file(&normal, &note);
    let job = job::rig_job(&job::RigJob {
        name: name.to_string(),
        kernel_url: kernel_url.to_string(),
        initrd_url: initrd_url.to_string(),
        device_memory: normal.memory.clone(),
        boots: vec![
            (
                Boot::Normal,
                normal.clone(),
                job::lava_entries(built, Boot::Normal),
            ),
            (Boot::Huge1G, huge, job::lava_entries(built, Boot::Huge1G)),
        ],
        program_timeout_s: 300,
    });
    Ok((device, job))
}

fn write_or_print(path: Option<&str>, text: &str) -> Result<(), String> {
    match path {
        Some(p) => fs::write(p, text).map_err(|e| format!("{p}: {e}")),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn cmd_job(args: &[String]) -> i32 {
    let o = match Opts::parse(
        args,
        &[
            "--kernel",
            "--initrd",
            "--device-file",
            "--accel",
            "-o",
            "--device-type",
            "--tags",
            "--devices",
            "--rootfs",
            "--repo",
            "--revision",
            "--passthru-url",
            "--name",
        ],
        &["--lab"],
    ) {
        Ok(o) => o,
        Err(e) => return fail(format!("job: {e}")),
    };
    if let Some(p) = o.positional.first() {
        return fail(format!("job: unexpected argument `{p}`"));
    }
    if o.has("--lab") {
        let need = |k: &str| {
            o.get(k)
                .map(str::to_string)
                .ok_or_else(|| format!("job --lab: {k} is required"))
        };
        let list = |k: &str| -> Vec<String> {
            o.get(k)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let lab = (|| -> Result<job::LabJob, String> {
            let devices = list("--devices");
            for d in &devices {
                crate::harness::Bdf::parse(d).map_err(|e| format!("job --lab: --devices: {e}"))?;
            }
            if devices.is_empty() {
                return Err("job --lab: --devices needs at least one BDF".into());
            }
            Ok(job::LabJob {
                name: o
                    .get("--name")
                    .unwrap_or("passthru VFIO/IOMMUFD")
                    .to_string(),
                device_type: need("--device-type")?,
                tags: list("--tags"),
                devices,
                kernel_url: need("--kernel")?,
                initrd_url: o.get("--initrd").unwrap_or("").to_string(),
                rootfs_url: need("--rootfs")?,
                repo_url: need("--repo")?,
                revision: o.get("--revision").unwrap_or("main").to_string(),
                passthru_url: o.get("--passthru-url").unwrap_or("").to_string(),
            })
        })();
        return match lab {
            Ok(l) => match write_or_print(o.get("-o"), &job::lab_job(&l)) {
                Ok(()) => 0,
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        };
    }
    let accel = match o.get("--accel").unwrap_or("tcg") {
        "auto" => None,
        a @ ("tcg" | "kvm") => Some(a),
        other => {
            return fail(format!(
                "job: --accel must be tcg, kvm or auto, not `{other}`"
            ))
        }
    };
    let kernel = o.get("--kernel").unwrap_or("file:///path/to/bzImage");
    let initrd = o
        .get("--initrd")
        .unwrap_or("file:///path/to/passthru-rig-initrd.cpio.gz");
    let (device, job) = match rig_job_files(kernel, initrd, accel, &all_built(), "passthru rig") {
        Ok(x) => x,
        Err(e) => return fail(format!("job: {e}")),
    };
    if let Some(p) = o.get("--device-file") {
        if let Err(e) = write_or_print(Some(p), &device) {
            return fail(e);
        }
    }
    match write_or_print(o.get("-o"), &job) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// The judged report of a log: table, notes, optional comparison. Returns (text, passed).
fn report_log(
    log: &log::LavaLog,
    expected: Option<&[log::SetKey]>,
    rig: Option<(&Path, &str)>,
) -> (String, bool) {
    let verdicts = check::judge(log, expected);
    let mut text = report::render(&verdicts);
    for n in check::notes(log) {
        text.push_str(&format!("NOTE: {n}\n"));
    }
    let t = report::totals(&verdicts);
    let mut ok = t.fail == 0 && t.pass > 0;
    if let Some((dir, kernel)) = rig {
        let lava = check::lava_cases(&verdicts);
        match check::rig_cases(dir, kernel) {
            Some(rig) => {
                let diffs = check::compare(&rig, &lava);
                text.push_str(&check::render_comparison(kernel, &rig, &lava, &diffs));
                ok &= diffs.is_empty() && !rig.is_empty();
            }
            None => {
                text.push_str(&format!(
                    "\nCOMPARISON: no rig serial log {}/{kernel}-*.serial.log\n",
                    dir.display()
                ));
                ok = false;
            }
        }
    }
    text.push_str(&format!(
        "LAVA RESULT: {}\n",
        if ok { "PASS" } else { "FAIL" }
    ));
    (text, ok)
}

fn cmd_results(args: &[String]) -> i32 {
    let o = match Opts::parse(args, &["--rig-logs", "--kernel"], &[]) {
        Ok(o) => o,
        Err(e) => return fail(format!("results: {e}")),
    };
    let [file] = o.positional.as_slice() else {
        return fail("results: give exactly one FILE (a lava-run log, job log or results export)");
    };
    let text = match fs::read(file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return fail(format!("results: {file}: {e}")),
    };
    let rig = match (o.get("--rig-logs"), o.get("--kernel")) {
        (Some(d), Some(k)) => Some((Path::new(d), k)),
        (None, None) => None,
        _ => return fail("results: --rig-logs and --kernel go together"),
    };
    let log = log::parse(&text);
    if log.cases.is_empty() && log.actions.is_empty() {
        return fail(format!("results: {file}: no LAVA results in it"));
    }
    let (report, ok) = report_log(&log, None, rig);
    print!("{report}");
    i32::from(!ok)
}

/// The newest 7.x kernel the rig uses (fetched and built only when not cached), as
/// `passthru test --qemu` gets it: (label, bzImage).
fn newest_kernel() -> Result<(String, PathBuf), String> {
    let tarball = run_last_line(
        "fetch-kernel-source.sh newest",
        Command::new(vm_dir().join("fetch-kernel-source.sh")).arg("newest"),
    )
    .map_err(|e| e.to_string())?;
    let dir = PathBuf::from(
        run_last_line(
            "build-kernel.sh",
            Command::new(vm_dir().join("build-kernel.sh")).arg(&tarball),
        )
        .map_err(|e| e.to_string())?,
    );
    let label = fs::read_to_string(dir.join("version"))
        .map_err(|e| format!("{}/version: {e}", dir.display()))?
        .trim()
        .to_string();
    Ok((label, dir.join("bzImage")))
}

fn missing_tools() -> Vec<String> {
    RUN_TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect()
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Runs `lava-run`; the log (its stderr) goes to `log_path`; one progress line per test set.
fn lava_run(
    job_id: u32,
    out_dir: &Path,
    device: &Path,
    dispatcher: &Path,
    job: &Path,
    log_path: &Path,
    validate: bool,
) -> Result<i32, String> {
    let mut cmd = Command::new("lava-run");
    cmd.arg("--job-id")
        .arg(job_id.to_string())
        .arg("--output-dir")
        .arg(out_dir)
        .arg("--device")
        .arg(device)
        .arg("--dispatcher")
        .arg(dispatcher);
    if validate {
        cmd.arg("--validate");
    }
    cmd.arg(job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start lava-run: {e}"))?;
    let mut file =
        fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cases = 0usize;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if validate {
                continue;
            }
            let Ok(v) = flow::parse(&line) else { continue };
            match (v.get_str("lvl"), v.get("msg")) {
                (Some("target"), Some(flow::Value::Str(s))) => {
                    if let Some(i) = s.find("<LAVA_SIGNAL_TESTSET START ") {
                        let set = s[i + 27..].trim_end_matches('>');
                        eprintln!("lava: {set} (cases so far: {cases})");
                    } else if let Some(i) = s.find("<LAVA_SIGNAL_STARTRUN ") {
                        eprintln!("lava: test run {}", s[i + 22..].trim_end_matches('>'));
                    }
                }
                (Some("results"), Some(m)) => {
                    if m.get_str("definition") != Some("lava") {
                        cases += 1;
                    } else if m.get_str("result") != Some("pass") {
                        eprintln!(
                            "lava: {} {}",
                            m.get_str("case").unwrap_or("?"),
                            m.get_str("result").unwrap_or("?")
                        );
                    }
                }
                (Some("error"), Some(flow::Value::Str(s))) => eprintln!("lava: error: {s}"),
                _ => {}
            }
        }
    }
    let status = child.wait().map_err(|e| format!("lava-run: {e}"))?;
    // `--validate` (and a crashed run) leave the job's scratch directory behind.
    let _ = fs::remove_dir_all(format!("/var/lib/lava/dispatcher/tmp/{job_id}"));
    Ok(status.code().unwrap_or(1))
}

fn cmd_run(args: &[String]) -> i32 {
    let o = match Opts::parse(args, &["--kernel", "--rig-logs", "--out-dir"], &[]) {
        Ok(o) => o,
        Err(e) => return fail(format!("run: {e}")),
    };
    if let Some(p) = o.positional.first() {
        return fail(format!("run: unexpected argument `{p}`"));
    }
    match run(&o) {
        Ok(code) => code,
        Err(e) => fail(format!("run: {e}")),
    }
}

fn run(o: &Opts) -> Result<i32, String> {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("lava-run runs jobs as root only: run `sudo passthru lava run`".into());
    }
    let missing = missing_tools();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} (nothing was installed)",
            missing.join(", ")
        ));
    }
    let (label, bzimage) = match o.get("--kernel") {
        Some(k) => {
            let p = PathBuf::from(k);
            let bytes = fs::read(&p).map_err(|e| format!("{k}: {e}"))?;
            let label = crate::rig::bzimage_version(&bytes).unwrap_or_else(|| "user-kernel".into());
            (label, p)
        }
        None => newest_kernel()?,
    };
    let bzimage = fs::canonicalize(&bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    eprintln!("lava: kernel {label}: {}", bzimage.display());
    let out_dir = o
        .get("--out-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("lava"));
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let out_dir = fs::canonicalize(&out_dir).map_err(|e| e.to_string())?;
    let programs = build_programs().map_err(|e| e.to_string())?;
    let built: BTreeSet<String> = programs
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    // One initramfs for both boots: busybox, the rig's /init (LAVA mode from the kernel
    // command line), the programs. The plan file is required by the packer, unused here.
    let plan = out_dir.join("plan");
    fs::write(
        &plan,
        "# LAVA mode (rig_lava=1): the test definition runs the programs\n",
    )
    .map_err(|e| e.to_string())?;
    let initrd = out_dir.join("initrd.cpio.gz");
    run_last_line(
        "mkinitramfs.sh",
        Command::new(vm_dir().join("mkinitramfs.sh"))
            .arg(&initrd)
            .arg(&plan)
            .args(&programs),
    )
    .map_err(|e| e.to_string())?;
    let (device, job) = rig_job_files(
        &file_url(&bzimage),
        &file_url(&initrd),
        None,
        &built,
        &format!("passthru rig {label}"),
    )?;
    let device_path = out_dir.join("device.yaml");
    let job_path = out_dir.join("job.yaml");
    let dispatcher_path = out_dir.join("dispatcher.yaml");
    // A host without a default IPv4 route needs the address spelled out.
    for (p, t) in [
        (&device_path, device.as_str()),
        (&job_path, job.as_str()),
        (&dispatcher_path, "dispatcher_ip: 127.0.0.1\n"),
    ] {
        fs::write(p, t).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let job_id = 100_000 + std::process::id();
    let validate_log = out_dir.join("validate.log");
    let rc = lava_run(
        job_id,
        &out_dir.join("validate"),
        &device_path,
        &dispatcher_path,
        &job_path,
        &validate_log,
        true,
    )?;
    let vlog = log::parse(&fs::read_to_string(&validate_log).unwrap_or_default());
    let valid = vlog
        .actions
        .iter()
        .any(|a| a.name == "validate" && a.result == "pass");
    eprintln!(
        "lava: lava-run --validate: {} (exit {rc}; log {})",
        if valid { "pass" } else { "FAIL" },
        validate_log.display()
    );
    if !valid || rc != 0 {
        return Err(format!(
            "the job does not validate: see {}",
            validate_log.display()
        ));
    }
    let log_path = out_dir.join("lava-run.log");
    let t = Instant::now();
    let rc = lava_run(
        job_id,
        &out_dir.join("output"),
        &device_path,
        &dispatcher_path,
        &job_path,
        &log_path,
        false,
    )?;
    eprintln!(
        "lava: lava-run exited {rc} after {:.0} s; log {}",
        t.elapsed().as_secs_f64(),
        log_path.display()
    );
    let text = fs::read(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log = log::parse(&String::from_utf8_lossy(&text));
    let expected: Vec<log::SetKey> = Boot::ALL
        .iter()
        .flat_map(|b| {
            job::lava_entries(&built, *b).into_iter().map(move |e| {
                let run = cases::parse_runs(&job::run_spec(&e))
                    .ok()
                    .and_then(|r| r.into_iter().next());
                (
                    format!("0_passthru-{}", b.variant()),
                    run.map(|r| r.set_name()).unwrap_or_default(),
                )
            })
        })
        .collect();
    let rig_dir = o.get("--rig-logs").map(PathBuf::from);
    let (report, ok) = report_log(
        &log,
        Some(&expected),
        rig_dir.as_deref().map(|d| (d, label.as_str())),
    );
    print!("{report}");
    let _ = fs::write(out_dir.join("results.txt"), &report);
    eprintln!(
        "lava: total {:.0} s; report saved in {}",
        started.elapsed().as_secs_f64(),
        out_dir.join("results.txt").display()
    );
    Ok(i32::from(!ok))
}
