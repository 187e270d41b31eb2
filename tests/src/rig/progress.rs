//! Live progress of a boot: while QEMU runs, the serial log is followed and each program ×
//! device result is printed as the guest reports it (`=== END PROG LABEL rc=N secs=S`), with
//! the program's KTAP totals. When stderr is not a terminal, a line every
//! [`QUIET_INTERVAL`] also says the boot is still running (a terminal sees the results as they
//! come, and QEMU's own boot is quick to show up there).
//!
//! Only reads the serial markers `tests/vm/init` writes (see [`super::serial`]); judging stays
//! with [`super::report`] after the boot.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// How often a "still running" line is printed when stderr is not a terminal.
pub const QUIET_INTERVAL: Duration = Duration::from_secs(30);

/// Turns serial-log lines into progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    /// `kernel (variant)` prefix of every line.
    what: String,
    /// Runs planned for this boot.
    planned: usize,
    /// Runs that reported an `=== END`.
    done: usize,
    /// The KTAP totals line of the current run, if seen.
    totals: Option<String>,
    /// Incomplete trailing line of the last chunk.
    partial: String,
}

impl Progress {
    /// Progress of `planned` runs of the boot described by `what` (e.g. `7.3 (normal)`).
    pub fn new(what: impl Into<String>, planned: usize) -> Self {
        Self {
            what: what.into(),
            planned,
            ..Self::default()
        }
    }

    /// Runs finished so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Feeds one serial-log line; returns the progress line to print, if any.
    pub fn line(&mut self, raw: &str) -> Option<String> {
        let line = raw.trim_end_matches(['\r', '\n']);
        if let Some(t) = line.trim_start().strip_prefix("# Totals: ") {
            self.totals = Some(t.to_string());
            return None;
        }
        let words: Vec<&str> = line.strip_prefix("=== ")?.split_whitespace().collect();
        let field = |key: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        match words.as_slice() {
            ["RUN", ..] => {
                self.totals = None;
                None
            }
            ["END", "DMESG", ..] => None,
            ["END", program, label, ..] => {
                self.done += 1;
                let rc: Option<i32> = field("rc").and_then(|v| v.parse().ok());
                let verdict = match rc {
                    Some(0) => "pass",
                    Some(4) => "skip",
                    _ => "FAIL",
                };
                let secs = field("secs").map_or(String::new(), |s| format!(", {s} s"));
                let totals = self
                    .totals
                    .take()
                    .map_or(String::new(), |t| format!(" [{t}]"));
                Some(format!(
                    "rig: {} [{}/{}] {program} on {label}: {verdict} (rc {}{secs}){totals}",
                    self.what,
                    self.done,
                    self.planned,
                    rc.map_or("?".into(), |c| c.to_string()),
                ))
            }
            ["RIG", "BOOT", ..] => Some(format!(
                "rig: {} guest up (kernel {})",
                self.what,
                field("kernel").unwrap_or("?")
            )),
            ["RIG", "ERROR", rest @ ..] => Some(format!(
                "rig: {} guest error: {}",
                self.what,
                rest.join(" ")
            )),
            ["RIG", "DONE", ..] => Some(format!(
                "rig: {} guest done ({} runs reported)",
                self.what, self.done
            )),
            _ => None,
        }
    }

    /// Feeds a chunk of the serial log (any split); returns the progress lines it completes.
    pub fn chunk(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.extend(self.line(&line));
        }
        out
    }
}

/// Waits for `child` (QEMU writing `log`), handing progress lines to `emit` as the log grows
/// (and, with `quiet_interval`, a "still running" line that often); returns the child's exit
/// status.
pub fn follow(
    child: &mut Child,
    log: &Path,
    mut progress: Progress,
    quiet_interval: Option<Duration>,
    emit: &mut dyn FnMut(String),
) -> std::io::Result<std::process::ExitStatus> {
    let started = Instant::now();
    let mut last_note = Instant::now();
    let mut offset = 0u64;
    loop {
        let exited = child.try_wait()?;
        if let Some(chunk) = read_from(log, &mut offset) {
            for p in progress.chunk(&chunk) {
                emit(p);
            }
        }
        if let Some(status) = exited {
            return Ok(status);
        }
        if quiet_interval.is_some_and(|i| last_note.elapsed() >= i) {
            last_note = Instant::now();
            emit(format!(
                "rig: {} still running: {} s, {}/{} runs reported",
                progress.what,
                started.elapsed().as_secs(),
                progress.done,
                progress.planned
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bytes appended to `path` since `offset` (advanced), as one chunk; empty if none or the
/// file cannot be read.
fn read_from(path: &Path, offset: &mut u64) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(*offset)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    *offset += buf.len() as u64;
    (!buf.is_empty()).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_result_is_reported_as_the_guest_prints_it() {
        let mut p = Progress::new("7.3 (normal)", 3);
        let log = "=== RIG BOOT kernel=7.3.4 uptime=1.0\r\n\
                   === RUN vfio_pci_device_test edu 0000:00:03.0\r\n\
                   TAP version 13\r\n1..2\r\nok 1 a\r\nok 2 b\r\n\
                   # Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0\r\n\
                   === END vfio_pci_device_test edu rc=0 secs=1.5\r\n\
                   === RUN vfio_pci_driver_test igb 0000:02:00.0\r\n\
                   === END vfio_pci_driver_test igb rc=4 secs=0.2\r\n\
                   === RUN vfio_dma_mapping_test edu 0000:00:03.0\r\n\
                   === END vfio_dma_mapping_test edu rc=1 secs=9\r\n\
                   === DMESG vfio_dma_mapping_test edu\r\n=== END DMESG\r\n\
                   === RIG DONE runs=3 errors=0\r\n";
        // Fed in awkward pieces, as a growing file is read.
        let mut lines = Vec::new();
        for piece in log.as_bytes().chunks(7) {
            lines.extend(p.chunk(piece));
        }
        assert_eq!(
            lines,
            [
                "rig: 7.3 (normal) guest up (kernel 7.3.4)",
                "rig: 7.3 (normal) [1/3] vfio_pci_device_test on edu: pass (rc 0, 1.5 s) \
                 [pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0]",
                "rig: 7.3 (normal) [2/3] vfio_pci_driver_test on igb: skip (rc 4, 0.2 s)",
                "rig: 7.3 (normal) [3/3] vfio_dma_mapping_test on edu: FAIL (rc 1, 9 s)",
                "rig: 7.3 (normal) guest done (3 runs reported)",
            ]
        );
        assert_eq!(p.done(), 3);
    }

    #[test]
    fn follow_reports_while_the_child_runs() {
        let dir = std::env::temp_dir().join(format!("passthru-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("serial.log");
        let script = format!(
            "echo '=== RUN p edu x' > {l}; sleep 1; echo '=== END p edu rc=0 secs=1' >> {l}",
            l = log.display()
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut seen: Vec<(String, Duration)> = Vec::new();
        let status = follow(
            &mut child,
            &log,
            Progress::new("k (v)", 1),
            Some(Duration::from_millis(300)),
            &mut |l| seen.push((l, started.elapsed())),
        )
        .unwrap();
        assert!(status.success());
        let results: Vec<&String> = seen
            .iter()
            .map(|(l, _)| l)
            .filter(|l| !l.contains("still running"))
            .collect();
        assert_eq!(results, ["rig: k (v) [1/1] p on edu: pass (rc 0, 1 s)"]);
        // While the child slept, periodic lines said it was still running.
        assert!(
            seen.iter()
                .any(|(l, _)| l.starts_with("rig: k (v) still running: ")
                    && l.ends_with("0/1 runs reported")),
            "{seen:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn kernel_build_reports_elapsed_time_and_objects_periodically() {
        let vm = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm");
        let build = std::fs::read_to_string(vm.join("build-kernel.sh")).unwrap();
        assert!(build.contains(". \"$(dirname \"$0\")/progress.sh\""));
        assert!(build.contains("with_progress \"building $kver\" \"$out/obj\""));
        let dir = std::env::temp_dir().join(format!("passthru-kbuild-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("obj/sub")).unwrap();
        let script = format!(
            ". {}; PROGRESS_EVERY=1 with_progress 'building 7.3.4' {d}/obj {d}/build.log \
             sh -c 'echo CC a; touch {d}/obj/a.o; sleep 1.5; touch {d}/obj/sub/b.o; sleep 1.5; exit 3'",
            vm.join("progress.sh").display(),
            d = dir.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "the build's status: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() >= 2, "a line per second off a terminal: {err}");
        assert!(
            lines[0].starts_with("build-kernel: building 7.3.4: 0m0")
                && lines[0].contains("s elapsed, "),
            "{err}"
        );
        assert!(
            lines.last().unwrap().ends_with(", 2 objects built"),
            "objects counted recursively: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("build.log")).unwrap(),
            "CC a\n",
            "make's output goes to the log, not the terminal"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
