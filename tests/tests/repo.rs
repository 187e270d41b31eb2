//! The repository stands alone: license files for the declared licenses, no placeholder
//! repository URL, README prerequisites matching the manifest, no citation of documents that
//! are not in the repository, and no declared-but-unused workspace dependency.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every text file of the repository (sources, docs, manifests, scripts), without build
/// output, VCS data and recorded serial logs.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "testdata" | "corpus" | "artifacts"
            ) {
                text_files(&path, out);
            }
        } else if ty.is_file()
            && (name.ends_with(".rs")
                || name.ends_with(".md")
                || name.ends_with(".toml")
                || name.ends_with(".sh")
                || name.ends_with(".config")
                || name.ends_with(".ld")
                || name == "init"
                || name == "run")
        {
            out.push(path);
        }
    }
}

#[test]
fn license_files_match_the_declared_licenses() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
    assert!(read("LICENSE-MIT").contains("Permission is hereby granted, free of charge"));
    assert!(read("LICENSE-APACHE").contains("Apache License\n                        Version 2.0"));
    assert!(
        !manifest.contains("example.invalid"),
        "a real repository URL or none"
    );
}

#[test]
fn readme_lists_the_prerequisites() {
    let manifest = read("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("workspace rust-version");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("Rust {msrv} or newer")),
        "MSRV {msrv}"
    );
    assert!(readme.contains(
        "rustup target add x86_64-unknown-none aarch64-unknown-none x86_64-unknown-linux-musl"
    ));
    assert!(
        readme.contains("sudo env \"PATH=$PATH\" cargo"),
        "root's PATH for sudo cargo"
    );
    assert!(
        !readme.contains("\nsudo cargo"),
        "a bare `sudo cargo` does not find rustup's cargo"
    );
}

#[test]
fn no_citation_of_documents_outside_the_repository() {
    // Documents the project was built from that are not shipped: a maintainer with only this
    // repository cannot follow a reference to them.
    let outside = [
        "DESIGN.md",
        "vfio-selftests.md",
        "dsa-cbdma.md",
        "qemu-rig.md",
        "kvm-host.md",
        "kvm-irq-test.md",
        "lava.md",
        "shared/reference",
    ];
    let mut files = Vec::new();
    text_files(&root(), &mut files);
    // The scan reaches every crate, the guest backend's runtime and image included.
    for f in [
        "backend-guest/src/lib.rs",
        "backend-guest/rt/src/lib.rs",
        "backend-guest/image/src/main.rs",
        "backend-guest/image/link.ld",
        ".ci/run",
    ] {
        assert!(files.contains(&root().join(f)), "{f} is not scanned");
    }
    let mut hits = Vec::new();
    for f in &files {
        if f.ends_with("tests/tests/repo.rs") {
            continue;
        }
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            // A bare section sign points into those documents too (§3.6, §A.5), unless the
            // line names the public specification it cites.
            let section = line.contains('§')
                && !["Specification", "spec ", "SDM", "PCIe", "PCI Local Bus"]
                    .iter()
                    .any(|s| line.contains(s));
            if section {
                hits.push(format!(
                    "{}:{}: cites a section (§) without naming a public source",
                    f.strip_prefix(root()).unwrap().display(),
                    i + 1
                ));
            }
            if let Some(doc) = outside.iter().find(|d| line.contains(**d)) {
                hits.push(format!(
                    "{}:{}: cites {doc}",
                    f.strip_prefix(root()).unwrap().display(),
                    i + 1
                ));
            }
        }
    }
    assert!(hits.is_empty(), "{}", hits.join("\n"));
}

#[test]
fn every_workspace_dependency_is_used() {
    let manifest = read("Cargo.toml");
    let deps: Vec<&str> = manifest
        .split("[workspace.dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("path ="))
        .filter_map(|l| l.split_once(" = ").map(|(n, _)| n.trim()))
        .collect();
    assert!(
        deps.contains(&"nix") && deps.contains(&"zerocopy"),
        "{deps:?}"
    );
    let members: Vec<String> = fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    for dep in deps {
        let used = members.iter().any(|m| {
            m.lines().any(|l| {
                l.starts_with(&format!("{dep}.workspace"))
                    || l.starts_with(&format!("{dep} = {{ workspace"))
            })
        });
        assert!(
            used,
            "workspace dependency {dep} is declared but no member uses it"
        );
    }
}

#[test]
fn ci_denies_rustdoc_warnings() {
    let ci = read(".ci/run");
    assert!(
        ci.contains("RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps"),
        "CI builds the docs with warnings denied (broken intra-doc links fail it)"
    );
}

#[test]
fn ci_builds_and_smoke_runs_every_fuzz_target() {
    let ci = read(".ci/run");
    assert!(
        ci.contains("rustup toolchain install nightly"),
        "CI installs nightly"
    );
    assert!(
        ci.contains("fuzz/smoke.sh"),
        "CI runs the fuzz smoke script"
    );
    let smoke = read("fuzz/smoke.sh");
    assert!(smoke.contains("cargo +nightly fuzz build"));
    // Every target is run: the script iterates `cargo fuzz list`, which lists every [[bin]].
    assert!(smoke.contains("for t in $(cargo +nightly fuzz list)"));
    let manifest = read("fuzz/Cargo.toml");
    let targets = manifest.matches("[[bin]]").count();
    assert!(targets >= 5, "{targets} fuzz targets");
    for line in manifest.lines().filter(|l| l.starts_with("path = ")) {
        let path = line.trim_start_matches("path = ").trim_matches('"');
        assert!(root().join("fuzz").join(path).is_file(), "{path}");
    }
}

#[test]
fn library_has_no_kselftest_vocabulary_or_cli_policy() {
    // Skip/fail policy, kernel-version expectations, `passthru setup` advice and the setup
    // state store belong to the `passthru` crate, not to the passthru-linux library.
    let mut files = Vec::new();
    text_files(&root().join("backend-linux/src"), &mut files);
    for f in files {
        if f.ends_with("tests.rs") || f.ends_with("fake.rs") {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        for needle in [
            "enum Outcome",
            "passthru setup",
            "passthru cleanup",
            "KSFT_",
            "StateStore",
            "expectations",
        ] {
            assert!(!text.contains(needle), "{}: {needle}", f.display());
        }
    }
    assert!(!root().join("backend-linux/src/expectations.rs").exists());
    assert!(root().join("tests/src/state.rs").is_file());
}

#[test]
fn library_open_functions_take_a_parsed_bdf() {
    // Parse, don't re-validate: the caller parses once; the open path never parses again.
    let device = read("backend-linux/src/device.rs");
    assert!(device.contains("pub fn open(bdf: Bdf, iommu: &Arc<Iommu>)"));
    assert!(device.contains("pub fn open_with_token(\n        b: Bdf,"));
    assert!(device.contains("pub fn from_cdev_fd(\n        b: Bdf,"));
    let group = read("backend-linux/src/group.rs");
    assert!(group.contains("pub fn group_setup(iommu: &Arc<Iommu>, bdf: Bdf)"));
    assert!(group.contains("pub fn check_bound_to_vfio(sys: &dyn Sys, bdf: Bdf)"));
    let cdev = read("backend-linux/src/cdev.rs");
    assert!(cdev.contains("pub fn open(sys: Arc<dyn Sys>, b: Bdf)"));
    assert!(cdev.contains("pub fn cdev_path(sys: &dyn Sys, bdf: Bdf)"));
    for (name, text) in [("device.rs", &device), ("cdev.rs", &cdev)] {
        assert!(
            !text.contains("parse_bdf(") && !text.contains("Bdf::parse("),
            "{name}"
        );
    }
    assert_eq!(
        group.matches("Bdf::parse(").count(),
        1,
        "only parse_bdf parses"
    );
}
