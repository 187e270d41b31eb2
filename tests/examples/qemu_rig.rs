//! Stand-alone entry to the QEMU rig until `passthru test --qemu` is wired in the CLI:
//! `cargo run -p passthru --example qemu_rig -- [--kernel BZIMAGE [--kernel-config CONFIG]]
//! [--kernel-src DIR] [--timeout SECS]`.
use std::path::PathBuf;
use std::time::Duration;

use passthru::rig::{run_rig, RigOptions};

fn main() {
    let mut opts = RigOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || match args.next() {
            Some(v) => v,
            None => {
                eprintln!("qemu_rig: {a} needs a value");
                std::process::exit(2);
            }
        };
        match a.as_str() {
            "--kernel" => opts.kernel = Some(PathBuf::from(value())),
            "--kernel-config" => opts.kernel_config = Some(PathBuf::from(value())),
            "--kernel-src" => opts.kernel_src = Some(PathBuf::from(value())),
            "--timeout" => match value().parse() {
                Ok(s) => opts.boot_timeout = Some(Duration::from_secs(s)),
                Err(_) => {
                    eprintln!("qemu_rig: --timeout needs seconds");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("qemu_rig: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    std::process::exit(run_rig(opts));
}
