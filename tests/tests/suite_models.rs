//! The upstream driver test suite (`vfio_pci_driver_test`'s seven cases) on the dsa, ioat and
//! edu models, in immediate and threaded execution modes, run through the harness exactly as
//! `passthru test` runs it. Each `#[test]` runs one KTAP-named case and checks the harness
//! reported it `ok`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use passthru::harness::{DeviceSource, KSFT_PASS, KSFT_SKIP};
use passthru::suite::models::suite;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run the harness with `args`; returns (exit code, KTAP output, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Capture::default();
    let mut err = Vec::new();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let code = suite().run(
        &args,
        &DeviceSource::default(),
        Box::new(out.clone()),
        &mut err,
    );
    let text = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    (code, text, String::from_utf8_lossy(&err).into_owned())
}

fn run_case(name: &str) {
    let (code, out, err) = run(&["-r", name]);
    assert!(
        out.contains(&format!("ok 1 {name}\n")) && !out.contains("not ok"),
        "{name} did not pass:\n{out}\n{err}"
    );
    assert_eq!(code, KSFT_PASS, "{out}\n{err}");
}

macro_rules! cases {
    ($($fn:ident => $name:literal),* $(,)?) => {
        $( #[test] fn $fn() { run_case($name); } )*
    };
}

cases! {
    dsa_init_remove => "dsa.init_remove",
    dsa_memcpy_success => "dsa.memcpy_success",
    dsa_memcpy_from_unmapped_iova => "dsa.memcpy_from_unmapped_iova",
    dsa_memcpy_to_unmapped_iova => "dsa.memcpy_to_unmapped_iova",
    dsa_send_msi => "dsa.send_msi",
    dsa_mix_and_match => "dsa.mix_and_match",
    dsa_memcpy_storm => "dsa.memcpy_storm",
    dsa_threaded_init_remove => "dsa.threaded.init_remove",
    dsa_threaded_memcpy_success => "dsa.threaded.memcpy_success",
    dsa_threaded_memcpy_from_unmapped_iova => "dsa.threaded.memcpy_from_unmapped_iova",
    dsa_threaded_memcpy_to_unmapped_iova => "dsa.threaded.memcpy_to_unmapped_iova",
    dsa_threaded_send_msi => "dsa.threaded.send_msi",
    dsa_threaded_mix_and_match => "dsa.threaded.mix_and_match",
    dsa_threaded_memcpy_storm => "dsa.threaded.memcpy_storm",
    ioat_init_remove => "ioat.init_remove",
    ioat_memcpy_success => "ioat.memcpy_success",
    ioat_memcpy_from_unmapped_iova => "ioat.memcpy_from_unmapped_iova",
    ioat_memcpy_to_unmapped_iova => "ioat.memcpy_to_unmapped_iova",
    ioat_send_msi => "ioat.send_msi",
    ioat_mix_and_match => "ioat.mix_and_match",
    ioat_memcpy_storm => "ioat.memcpy_storm",
    ioat_threaded_init_remove => "ioat.threaded.init_remove",
    ioat_threaded_memcpy_success => "ioat.threaded.memcpy_success",
    ioat_threaded_memcpy_from_unmapped_iova => "ioat.threaded.memcpy_from_unmapped_iova",
    ioat_threaded_memcpy_to_unmapped_iova => "ioat.threaded.memcpy_to_unmapped_iova",
    ioat_threaded_send_msi => "ioat.threaded.send_msi",
    ioat_threaded_mix_and_match => "ioat.threaded.mix_and_match",
    ioat_threaded_memcpy_storm => "ioat.threaded.memcpy_storm",
    edu_init_remove => "edu.init_remove",
    edu_memcpy_success => "edu.memcpy_success",
    edu_memcpy_from_unmapped_iova => "edu.memcpy_from_unmapped_iova",
    edu_memcpy_to_unmapped_iova => "edu.memcpy_to_unmapped_iova",
    edu_send_msi => "edu.send_msi",
    edu_mix_and_match => "edu.mix_and_match",
    edu_memcpy_storm => "edu.memcpy_storm",
    edu_threaded_init_remove => "edu.threaded.init_remove",
    edu_threaded_memcpy_success => "edu.threaded.memcpy_success",
    edu_threaded_memcpy_from_unmapped_iova => "edu.threaded.memcpy_from_unmapped_iova",
    edu_threaded_memcpy_to_unmapped_iova => "edu.threaded.memcpy_to_unmapped_iova",
    edu_threaded_send_msi => "edu.threaded.send_msi",
    edu_threaded_mix_and_match => "edu.threaded.mix_and_match",
    edu_threaded_memcpy_storm => "edu.threaded.memcpy_storm",
    // Every memcpy waited for by interrupt (not upstream).
    dsa_irq_init_remove => "dsa.irq.init_remove",
    dsa_irq_memcpy_success => "dsa.irq.memcpy_success",
    dsa_irq_memcpy_from_unmapped_iova => "dsa.irq.memcpy_from_unmapped_iova",
    dsa_irq_memcpy_to_unmapped_iova => "dsa.irq.memcpy_to_unmapped_iova",
    dsa_irq_send_msi => "dsa.irq.send_msi",
    dsa_irq_mix_and_match => "dsa.irq.mix_and_match",
    dsa_irq_memcpy_storm => "dsa.irq.memcpy_storm",
    ioat_irq_init_remove => "ioat.irq.init_remove",
    ioat_irq_memcpy_success => "ioat.irq.memcpy_success",
    ioat_irq_memcpy_from_unmapped_iova => "ioat.irq.memcpy_from_unmapped_iova",
    ioat_irq_memcpy_to_unmapped_iova => "ioat.irq.memcpy_to_unmapped_iova",
    ioat_irq_send_msi => "ioat.irq.send_msi",
    ioat_irq_mix_and_match => "ioat.irq.mix_and_match",
    ioat_irq_memcpy_storm => "ioat.irq.memcpy_storm",
    edu_irq_init_remove => "edu.irq.init_remove",
    edu_irq_memcpy_success => "edu.irq.memcpy_success",
    edu_irq_memcpy_from_unmapped_iova => "edu.irq.memcpy_from_unmapped_iova",
    edu_irq_memcpy_to_unmapped_iova => "edu.irq.memcpy_to_unmapped_iova",
    edu_irq_send_msi => "edu.irq.send_msi",
    edu_irq_mix_and_match => "edu.irq.mix_and_match",
    edu_irq_memcpy_storm => "edu.irq.memcpy_storm",
}

/// The listing has exactly 3 models × 3 variants (immediate, threaded, irq) × 7 cases, with
/// stable names, in order.
#[test]
fn listing_names_are_stable() {
    let names = suite().names();
    assert_eq!(names.len(), 63);
    assert_eq!(names[0], "dsa.init_remove");
    assert_eq!(names[7], "dsa.threaded.init_remove");
    assert_eq!(names[14], "dsa.irq.init_remove");
    assert_eq!(names[21], "ioat.init_remove");
    assert_eq!(names[62], "edu.irq.memcpy_storm");
    let (code, out, _) = run(&["-l"]);
    assert_eq!(code, KSFT_SKIP, "-l exits 4, as upstream's harness");
    for n in &names {
        assert!(out.contains(n.as_str()), "{n} missing from -l:\n{out}");
    }
}

/// Filters select (harness semantics), `--seed` is printed, the exit code is the harness's.
#[test]
fn filters_select_and_seed_is_printed() {
    let (code, out, err) = run(&[
        "-r",
        "dsa.threaded.send_msi",
        "-r",
        "edu.send_msi",
        "--seed",
        "7",
    ]);
    assert_eq!(code, KSFT_PASS, "{out}\n{err}");
    assert!(out.contains("1..2"), "{out}");
    assert!(out.contains("ok 1 dsa.threaded.send_msi"), "{out}");
    assert!(out.contains("ok 2 edu.send_msi"), "{out}");
    assert!(out.contains("seed: 7"), "{out}");
    let (code, out, _) = run(&["-f", "ioat", "-l"]);
    assert_eq!(code, KSFT_SKIP);
    assert_eq!(
        out.lines().filter(|l| l.contains("ioat.")).count(),
        21,
        "{out}"
    );
}
