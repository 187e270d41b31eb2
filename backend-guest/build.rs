//! Builds the guest image (`image/`, a freestanding `x86_64-unknown-none` ELF with the runtime,
//! the guest mains and the drivers) with a nested `cargo build`, and hands its path to the crate,
//! which embeds it with `include_bytes!`.
//!
//! The nested build gets a clean environment (no inherited rustflags, wrappers such as
//! clippy-driver, target or target-dir overrides), its own persistent target directory next to
//! the workspace's (so rebuilds are incremental), and the image crate's own `Cargo.lock`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let image_dir = manifest.join("image");
    let root = manifest
        .parent()
        .expect("backend-guest is inside the workspace");
    for p in [
        image_dir.join("src"),
        image_dir.join("Cargo.toml"),
        image_dir.join("Cargo.lock"),
        image_dir.join("link.ld"),
        image_dir.join("build.rs"),
        image_dir.join(".cargo/config.toml"),
        manifest.join("rt/src"),
        manifest.join("rt/Cargo.toml"),
        root.join("core/src"),
        root.join("core/Cargo.toml"),
        root.join("drivers/src"),
        root.join("drivers/Cargo.toml"),
        root.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    check_target_installed(Path::new(&rustc));

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("passthru-guest-image"),
        None => root.join("target").join("passthru-guest-image"),
    };
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&image_dir)
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_NAME",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "OUT_DIR",
        "RUSTC_LINKER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("passthru-guest: cannot run cargo to build the guest image: {e}")
    });
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!(
            "passthru-guest: building the guest image (backend-guest/image, target {GUEST_TARGET}) \
             failed; its cargo output is above"
        );
    }
    let elf = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("passthru-guest-image");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("passthru-guest-image.elf");
    std::fs::copy(&elf, &dest)
        .unwrap_or_else(|e| panic!("passthru-guest: cannot copy {}: {e}", elf.display()));
}

/// Fails the build with one clear message if the guest target's standard library is missing.
fn check_target_installed(rustc: &Path) {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        if !sysroot.join("lib/rustlib").join(GUEST_TARGET).exists() {
            panic!(
                "passthru-guest: the guest image needs the {GUEST_TARGET} target, which this \
                 toolchain ({}) lacks. Install it with: rustup target add {GUEST_TARGET}",
                sysroot.display()
            );
        }
    }
}
