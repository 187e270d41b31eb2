//! The QEMU rig: runs the project's test programs against the real Linux VFIO/IOMMUFD stack in
//! a TCG guest (`passthru test --qemu`).
//!
//! Steps: get the guest kernels (the LTS 6.12 and the newest 7.x Debian sources, built with the
//! rig's fragment and cached; or the user's `--kernel` / `--kernel-src`), build every `passthru`
//! binary statically for musl, and for each kernel boot twice (`-m 2G`, then `-m 4G` with a
//! boot-time 1 GiB page for the 1G hugetlb variants) with an initramfs holding the programs and
//! a plan ([`plan`]). The serial logs (kept in `<target>/rig/`) are parsed ([`serial`]), judged
//! ([`report`]) and printed as a kernel × program × mode × device table.
//!
//! The shell pieces live in `tests/vm/` and work on their own too (see `tests/vm/README.md`).

pub mod kconfig;
pub mod plan;
pub mod progress;
pub mod report;
pub mod serial;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plan::Boot;
use report::{HostOutcome, Verdict};

/// Options of `passthru test --qemu`.
#[derive(Debug, Clone, Default)]
pub struct RigOptions {
    /// `--kernel PATH/bzImage`: test only this kernel instead of the built matrix.
    pub kernel: Option<PathBuf>,
    /// `--kernel-config PATH/.config`: check it for the rig's required options first.
    pub kernel_config: Option<PathBuf>,
    /// `--kernel-src DIR`: merge the rig's fragment into DIR's config, build it, test it.
    pub kernel_src: Option<PathBuf>,
    /// Wall-clock limit of one QEMU boot; `None`: the sum of the plan's per-program limits
    /// plus two minutes, at most 30 minutes.
    pub boot_timeout: Option<Duration>,
    /// Where logs, plans and initramfs images go (default `<target dir>/rig`).
    pub out_dir: Option<PathBuf>,
}

impl RigOptions {
    /// Parse the options of `passthru test --qemu`: `--kernel BZIMAGE`, `--kernel-config
    /// CONFIG`, `--kernel-src DIR`, `--timeout SECS` (one boot's wall-clock limit), `--out-dir
    /// DIR`. The error is a one-line message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut opts = RigOptions::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--kernel" => opts.kernel = Some(PathBuf::from(value()?)),
                "--kernel-config" => opts.kernel_config = Some(PathBuf::from(value()?)),
                "--kernel-src" => opts.kernel_src = Some(PathBuf::from(value()?)),
                "--out-dir" => opts.out_dir = Some(PathBuf::from(value()?)),
                "--timeout" => {
                    let v = value()?;
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("--timeout needs a positive number of seconds, not `{v}`"))?;
                    opts.boot_timeout = Some(Duration::from_secs(secs));
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` (--kernel, --kernel-config, --kernel-src, --timeout, --out-dir)"
                    ))
                }
            }
        }
        if opts.kernel.is_some() && opts.kernel_src.is_some() {
            return Err("give either --kernel or --kernel-src, not both".into());
        }
        Ok(opts)
    }
}

/// Upper bound of the default boot timeout (a full cached matrix boot takes ~30-40 s).
const MAX_DEFAULT_BOOT_SECS: u64 = 1800;

/// A guest kernel to test.
#[derive(Debug, Clone)]
struct Kernel {
    /// Table label (the version).
    label: String,
    bzimage: PathBuf,
}

/// A rig infrastructure error (not a test failure).
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// A helper command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// Exit status or spawn error.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel configuration lacks required options.
    #[error("kernel config {0} lacks required options (listed above)")]
    KernelConfig(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RigError + '_ {
    move |source| RigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `tests/` of the source tree this binary was built from.
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn vm_dir() -> PathBuf {
    crate_dir().join("vm")
}

fn workspace_dir() -> PathBuf {
    crate_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(crate_dir)
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// Runs a command with stderr passed through; returns its stdout's last non-empty line.
pub(crate) fn run_last_line(what: &str, cmd: &mut Command) -> Result<String, RigError> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| RigError::Command {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(RigError::Command {
            what: what.to_string(),
            detail: out.status.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string())
}

/// The version string a bzImage carries (setup header field `kernel_version` at 0x20e points
/// to a NUL-terminated string, offset by 0x200).
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    let ptr = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    let start = ptr.checked_add(0x200)?;
    let bytes = image.get(start..)?;
    let end = bytes.iter().position(|b| *b == 0)?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// Checks a user's `.config`; prints every problem with why it matters. Returns whether all
/// required options are present.
fn check_user_config(path: &Path, kernel_version: Option<&str>) -> Result<bool, RigError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let reqs = kconfig::parse_table(kconfig::REQUIRED_TSV).map_err(|e| RigError::Command {
        what: "parsing required.tsv".into(),
        detail: e.to_string(),
    })?;
    let version = kconfig::config_version(&text)
        .or_else(|| kernel_version.and_then(kconfig::parse_version))
        .unwrap_or((7, 0, 0));
    let problems = kconfig::check(&text, version, &reqs);
    for p in &problems {
        eprintln!("rig: {}: {p}", path.display());
    }
    if problems.iter().any(|p| p.found == "=m") {
        eprintln!(
            "rig: the rig's initramfs carries no kernel modules: options found =m must be =y"
        );
    }
    if problems.is_empty() {
        eprintln!(
            "rig: {}: all {} required options present (kernel {}.{}.{})",
            path.display(),
            reqs.iter().filter(|r| kconfig::applies(r, version)).count(),
            version.0,
            version.1,
            version.2
        );
    }
    Ok(problems.is_empty())
}

fn kernels(opts: &RigOptions) -> Result<Vec<Kernel>, RigError> {
    if let Some(image) = &opts.kernel {
        let bytes = fs::read(image).map_err(io_err(image))?;
        let label = bzimage_version(&bytes).unwrap_or_else(|| "user-kernel".into());
        if let Some(cfg) = &opts.kernel_config {
            if !check_user_config(cfg, Some(&label))? {
                return Err(RigError::KernelConfig(cfg.clone()));
            }
        }
        return Ok(vec![Kernel {
            label,
            bzimage: image.clone(),
        }]);
    }
    if let Some(src) = &opts.kernel_src {
        let dir = run_last_line(
            "build-kernel.sh --in-tree",
            Command::new(vm_dir().join("build-kernel.sh"))
                .arg("--in-tree")
                .arg(src),
        )?;
        let bzimage = PathBuf::from(dir).join("bzImage");
        let bytes = fs::read(&bzimage).map_err(io_err(&bzimage))?;
        let label = bzimage_version(&bytes).unwrap_or_else(|| "kernel-src".into());
        return Ok(vec![Kernel { label, bzimage }]);
    }
    let mut out = Vec::new();
    for which in ["lts", "newest"] {
        let t = Instant::now();
        let tarball = run_last_line(
            &format!("fetch-kernel-source.sh {which}"),
            Command::new(vm_dir().join("fetch-kernel-source.sh")).arg(which),
        )?;
        let dir = PathBuf::from(run_last_line(
            &format!("build-kernel.sh {tarball}"),
            Command::new(vm_dir().join("build-kernel.sh")).arg(&tarball),
        )?);
        let version_file = dir.join("version");
        let label = fs::read_to_string(&version_file)
            .map_err(io_err(&version_file))?
            .trim()
            .to_string();
        eprintln!(
            "rig: kernel {label} ({which}) ready in {:.1} s: {}",
            t.elapsed().as_secs_f64(),
            dir.display()
        );
        out.push(Kernel {
            label,
            bzimage: dir.join("bzImage"),
        });
    }
    Ok(out)
}

/// Host tools the rig runs, each with the Debian package that provides it.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86 (bookworm-backports)"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("file", "file"),
    ("xz", "xz-utils"),
];

pub(crate) fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn missing_tools() -> Vec<&'static (&'static str, &'static str)> {
    HOST_TOOLS.iter().filter(|(t, _)| !on_path(t)).collect()
}

/// Make sure the host can run the rig: the tools above (installed with `tests/vm/install-deps.sh`
/// when missing and running as root) and the musl target for the static test programs. A tool
/// still missing afterwards is an error naming it and its package.
fn preflight() -> Result<(), RigError> {
    let missing = missing_tools();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let root = nix::unistd::geteuid().is_root();
        if root {
            eprintln!(
                "rig: missing {}; running tests/vm/install-deps.sh",
                names.join(", ")
            );
            run_last_line(
                "tests/vm/install-deps.sh",
                &mut Command::new(vm_dir().join("install-deps.sh")),
            )?;
        }
        let still = missing_tools();
        if !still.is_empty() {
            let list: Vec<String> = still
                .iter()
                .map(|(t, pkg)| format!("{t} (package {pkg})"))
                .collect();
            return Err(RigError::Command {
                what: "host preflight".into(),
                detail: format!(
                    "missing {}; run `sudo tests/vm/install-deps.sh`",
                    list.join(", ")
                ),
            });
        }
    }
    let rustup = Command::new("rustup")
        .args(["target", "add", "x86_64-unknown-linux-musl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(rustup, Ok(s) if s.success()) {
        eprintln!(
            "rig: could not run `rustup target add x86_64-unknown-linux-musl`; \
             the static build below needs that target"
        );
    }
    Ok(())
}

/// Builds every binary of the `passthru` crate statically (musl) and returns their paths (also
/// used by `passthru lava run`).
pub(crate) fn build_programs() -> Result<Vec<PathBuf>, RigError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_dir())
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "passthru",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| RigError::Command {
            what: "cargo build (musl)".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(RigError::Command {
            what: "cargo build --release --target x86_64-unknown-linux-musl -p passthru --bins"
                .into(),
            detail: out.status.to_string(),
        });
    }
    Ok(executables_from_cargo_json(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Extracts `"executable":"PATH"` of compiler artifacts from cargo's JSON messages.
pub fn executables_from_cargo_json(json: &str) -> Vec<PathBuf> {
    const KEY: &str = "\"executable\":\"";
    let mut out = Vec::new();
    for line in json.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        if let Some(i) = line.find(KEY) {
            let rest = &line[i + KEY.len()..];
            if let Some(end) = rest.find('"') {
                out.push(PathBuf::from(&rest[..end]));
            }
        }
    }
    out
}

/// Boots one kernel once; returns its verdicts and benchmark figures.
fn boot(
    opts: &RigOptions,
    out_dir: &Path,
    kernel: &Kernel,
    boot: Boot,
    programs: &[PathBuf],
    built: &BTreeSet<String>,
) -> Result<(Vec<Verdict>, Vec<report::BenchRow>), RigError> {
    let (entries, missing) = plan::boot_matrix(built, boot);
    let dir = out_dir.join(format!("{}-{}", kernel.label, boot.variant()));
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let plan_path = dir.join("plan");
    // `passthru` always goes in: /init binds the devices with `passthru setup`.
    let strict_setup = built.contains("passthru");
    fs::write(&plan_path, plan::render(&entries, strict_setup)).map_err(io_err(&plan_path))?;
    let initrd = dir.join("initrd.cpio.gz");
    let mut wanted: BTreeSet<&str> = entries.iter().map(|e| e.program.as_str()).collect();
    wanted.insert("passthru");
    let chosen: Vec<&PathBuf> = programs
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| wanted.contains(n))
        })
        .collect();
    run_last_line(
        "mkinitramfs.sh",
        Command::new(vm_dir().join("mkinitramfs.sh"))
            .arg(&initrd)
            .arg(&plan_path)
            .args(chosen),
    )?;
    let log_path = out_dir.join(format!("{}-{}.serial.log", kernel.label, boot.variant()));
    let err_path = out_dir.join(format!(
        "{}-{}.qemu-stderr.log",
        kernel.label,
        boot.variant()
    ));
    let timeout = opts.boot_timeout.unwrap_or_else(|| {
        let sum: u64 = entries.iter().map(|e| u64::from(e.timeout_s)).sum();
        Duration::from_secs((120 + sum).min(MAX_DEFAULT_BOOT_SECS))
    });
    let log_file = fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let err_file = fs::File::create(&err_path).map_err(io_err(&err_path))?;
    eprintln!(
        "rig: booting {} ({}), {} runs, serial log {}",
        kernel.label,
        boot.variant(),
        entries.len(),
        log_path.display()
    );
    let t = Instant::now();
    let spawn_err = |e: std::io::Error| RigError::Command {
        what: "run-qemu.sh".into(),
        detail: e.to_string(),
    };
    let mut child = Command::new(vm_dir().join("run-qemu.sh"))
        .arg(&kernel.bzimage)
        .arg(&initrd)
        .arg(boot.variant())
        .env("TIMEOUT", timeout.as_secs().to_string())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(spawn_err)?;
    // Each program × device result as the guest reports it; periodic lines off a terminal.
    let quiet = {
        use std::io::IsTerminal;
        (!std::io::stderr().is_terminal()).then_some(progress::QUIET_INTERVAL)
    };
    let status = progress::follow(
        &mut child,
        &log_path,
        progress::Progress::new(
            format!("{} ({})", kernel.label, boot.variant()),
            entries.len(),
        ),
        quiet,
        &mut |line| eprintln!("{line}"),
    )
    .map_err(spawn_err)?;
    let code = status.code();
    // run-qemu.sh runs QEMU under `timeout -k 10`: 124 (137 after the SIGKILL) means the limit
    // was hit; no exit code at all means a signal killed the wrapper itself.
    let host = HostOutcome {
        timed_out: matches!(code, Some(124) | Some(137) | None),
        qemu_status: code,
    };
    eprintln!(
        "rig: {} ({}) finished in {:.1} s (exit {:?})",
        kernel.label,
        boot.variant(),
        t.elapsed().as_secs_f64(),
        code
    );
    let text = fs::read(&log_path).map_err(io_err(&log_path))?;
    let log = serial::parse_boot_log(&String::from_utf8_lossy(&text));
    let mut verdicts = report::judge_boot(&kernel.label, boot.variant(), &log, host);
    if boot == Boot::Normal {
        for m in missing {
            verdicts.push(report::not_built(&kernel.label, &m));
        }
    }
    Ok((verdicts, report::bench_rows(&kernel.label, &log)))
}

fn run(opts: &RigOptions) -> Result<i32, RigError> {
    let started = Instant::now();
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("rig"));
    fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    if opts.kernel.is_none() {
        if let Some(cfg) = &opts.kernel_config {
            // --kernel-config alone: only the check.
            return Ok(if check_user_config(cfg, None)? { 0 } else { 1 });
        }
    }
    preflight()?;
    let kernels = kernels(opts)?;
    let t = Instant::now();
    let programs = build_programs()?;
    let built: BTreeSet<String> = programs
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    eprintln!(
        "rig: built {} static programs in {:.1} s: {}",
        built.len(),
        t.elapsed().as_secs_f64(),
        built.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    let mut verdicts = Vec::new();
    let mut bench = Vec::new();
    for kernel in &kernels {
        for b in Boot::ALL {
            let (v, rows) = boot(opts, &out_dir, kernel, b, &programs, &built)?;
            verdicts.extend(v);
            bench.extend(rows);
        }
    }
    // The benchmark section follows the verdict table (figures, never verdicts).
    let table = report::render(&verdicts) + &report::render_bench(&bench);
    print!("{table}");
    let results = out_dir.join("results.txt");
    fs::write(&results, &table).map_err(io_err(&results))?;
    eprintln!(
        "rig: total {:.1} s; table saved in {}",
        started.elapsed().as_secs_f64(),
        results.display()
    );
    let t = report::totals(&verdicts);
    Ok(if t.fail == 0 && t.pass > 0 { 0 } else { 1 })
}

/// Runs the rig; returns the process exit code: 0 all passed, 1 a test, boot or config check
/// failed, 2 the rig itself could not run (missing tools, build failure, ...).
pub fn run_rig(opts: RigOptions) -> i32 {
    match run(&opts) {
        Ok(code) => code,
        Err(RigError::KernelConfig(path)) => {
            eprintln!(
                "rig: kernel config {} lacks required options",
                path.display()
            );
            1
        }
        Err(e) => {
            eprintln!("rig: error: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn qemu_options_parse_and_reject_bad_input() {
        let o = RigOptions::parse(&strings(&[
            "--kernel",
            "/k/bzImage",
            "--kernel-config",
            "/k/.config",
            "--timeout",
            "90",
        ]))
        .unwrap();
        assert_eq!(o.kernel.as_deref(), Some(Path::new("/k/bzImage")));
        assert_eq!(o.kernel_config.as_deref(), Some(Path::new("/k/.config")));
        assert_eq!(o.boot_timeout, Some(Duration::from_secs(90)));
        assert!(RigOptions::parse(&[]).unwrap().kernel.is_none());
        let e = RigOptions::parse(&strings(&["--kernel"])).unwrap_err();
        assert!(e.contains("--kernel needs a value"), "{e}");
        let e = RigOptions::parse(&strings(&["--timeout", "0"])).unwrap_err();
        assert!(e.contains("positive"), "{e}");
        // --kernel-config alone only checks that config.
        assert!(RigOptions::parse(&strings(&["--kernel-config", "x"])).is_ok());
        let e = RigOptions::parse(&strings(&["--kernel", "a", "--kernel-src", "b"])).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = RigOptions::parse(&strings(&["--bogus"])).unwrap_err();
        assert!(e.contains("unknown option `--bogus`"), "{e}");
    }

    #[test]
    fn cargo_json_executables() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"passthru"},"executable":"/t/x86_64-unknown-linux-musl/release/passthru","fresh":true}
{"reason":"compiler-artifact","target":{"name":"passthru_core"},"executable":null,"fresh":true}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executables_from_cargo_json(json),
            [PathBuf::from(
                "/t/x86_64-unknown-linux-musl/release/passthru"
            )]
        );
    }

    #[test]
    fn bzimage_version_from_setup_header() {
        let mut image = vec![0u8; 0x400];
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let s = b"6.12.117 (root@host) #1 SMP\0";
        image[0x300..0x300 + s.len()].copy_from_slice(s);
        assert_eq!(bzimage_version(&image).as_deref(), Some("6.12.117"));
        assert_eq!(bzimage_version(&image[..0x100]), None);
    }
}
