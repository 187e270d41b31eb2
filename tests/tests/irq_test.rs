//! `irq_test` as a process, in eventfd mode on this machine's /dev/kvm (exit 4 accepted, with
//! its SKIP line, where /dev/kvm is absent).

use std::process::Command;

fn irq_test(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_irq_test"))
        .args(args)
        .output()
        .expect("run irq_test");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks upstream's two output lines and returns (GSI, vector).
fn upstream_lines(out: &str, nr_irqs: u64) -> (u32, u32) {
    let mut lines = out.lines();
    let seed = lines.next().unwrap();
    assert!(seed.starts_with("Random seed: 0x"), "{out}");
    let inj = lines.next().unwrap();
    let rest = inj
        .strip_prefix("Injecting interrupts for GSI ")
        .unwrap_or_else(|| panic!("{out}"));
    let (gsi, rest) = rest.split_once(" (guest vector 0x").unwrap();
    let (vector, rest) = rest.split_once(") ").unwrap();
    assert_eq!(rest, format!("{nr_irqs} times"));
    let gsi: u32 = gsi.parse().unwrap();
    let vector = u32::from_str_radix(vector, 16).unwrap();
    assert!((24..=4095).contains(&gsi), "{gsi}");
    assert!((32..=255).contains(&vector), "{vector}");
    (gsi, vector)
}

fn skipped(code: i32, out: &str) -> bool {
    if code == 4 {
        assert!(out.contains("SKIP"), "{out}");
        eprintln!("SKIP: {out}");
        return true;
    }
    false
}

#[test]
fn v2_nmi_empty_routing_passes() {
    let (code, out, err) = irq_test(&["-v", "2", "-n", "-e", "-i", "50"]);
    if skipped(code, &out) {
        return;
    }
    assert_eq!(code, 0, "{out}{err}");
    upstream_lines(&out, 50);
    assert!(out.contains("# latency trigger -> guest handler"), "{out}");
}

#[test]
fn xapic_passes() {
    let (code, out, err) = irq_test(&["-x", "-i", "50"]);
    if skipped(code, &out) {
        return;
    }
    assert_eq!(code, 0, "{out}{err}");
    upstream_lines(&out, 50);
}

#[test]
fn hlt_blocked_vcpus_and_seed_reproduce_gsi_and_vector() {
    let (code, out, err) = irq_test(&["-b", "-v", "2", "-n", "-i", "20", "--seed", "0x1234"]);
    if skipped(code, &out) {
        return;
    }
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Random seed: 0x1234\n"), "{out}");
    let first = upstream_lines(&out, 20);
    let (code, out2, _) = irq_test(&["-x", "-i", "1", "--seed", "4660"]);
    assert_eq!(code, 0, "{out2}");
    assert_eq!(
        upstream_lines(&out2, 1),
        first,
        "same seed, same GSI and vector"
    );
}

#[test]
fn a_missed_interrupt_fails_naming_vcpu_gsi_vector_and_host_cpu() {
    // 1 µs is far below any delivery time: the first IRQ times out.
    let (code, out, err) = irq_test(&["-v", "2", "-i", "50", "--timeout", "0.000001"]);
    if skipped(code, &out) {
        return;
    }
    assert_eq!(code, 1, "{out}{err}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL: "))
        .unwrap_or_else(|| panic!("{out}"));
    for part in [
        "vCPU ",
        "GSI ",
        "vector 0x",
        "IRQ,",
        "empty routing before: no",
        "host CPU",
    ] {
        assert!(fail.contains(part), "{part:?} missing in {fail}");
    }
}

#[test]
fn help_and_bad_options_print_usage_and_exit_1() {
    for args in [&["-h"][..], &["-q"], &["-i"], &["-a"]] {
        let (code, out, err) = irq_test(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        if args != ["-a"] {
            assert!(out.starts_with("usage: irq_test"), "{args:?}: {out}");
        } else {
            assert!(err.contains("-a"), "{err}");
        }
    }
}
