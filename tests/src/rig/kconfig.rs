//! The guest kernel's required options (`tests/vm/config/required.tsv`, shared with
//! `tests/vm/build-kernel.sh`) and the check of a user's `.config` against them.

use std::fmt;

/// The required-options table, compiled in so the check works from any directory.
pub const REQUIRED_TSV: &str = include_str!("../../vm/config/required.tsv");

/// What a required option must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// `=y`.
    BuiltIn,
    /// Unset or absent.
    Unset,
}

/// One row of `required.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `CONFIG_...`.
    pub option: String,
    /// Required state.
    pub want: Want,
    /// Kernel range where the option name exists: `all`, `<X.Y`, `>=X.Y`.
    pub kernels: String,
    /// Why the rig needs it.
    pub why: String,
}

/// A malformed line of the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("required.tsv line {line}: {what}")]
pub struct TableError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

/// Parses the table text.
pub fn parse_table(text: &str) -> Result<Vec<Requirement>, TableError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: &str| TableError {
            line: i + 1,
            what: what.to_string(),
        };
        let mut words = line.split_whitespace();
        let (Some(option), Some(want), Some(kernels)) = (words.next(), words.next(), words.next())
        else {
            return Err(err("expected: option value kernels why"));
        };
        let want = match want {
            "y" => Want::BuiltIn,
            "n" => Want::Unset,
            other => return Err(err(&format!("bad value {other:?}"))),
        };
        if kernels != "all" && parse_range(kernels).is_none() {
            return Err(err(&format!("bad kernels range {kernels:?}")));
        }
        out.push(Requirement {
            option: option.to_string(),
            want,
            kernels: kernels.to_string(),
            why: words.collect::<Vec<_>>().join(" "),
        });
    }
    Ok(out)
}

/// A kernel version as `(major, minor, patch)`.
pub type Version = (u32, u32, u32);

/// Parses `6.12.117`, `7.3`, `7.3.4-rc1+` (anything after the numbers is ignored).
pub fn parse_version(text: &str) -> Option<Version> {
    let mut nums = text
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn parse_range(range: &str) -> Option<(bool, Version)> {
    if let Some(v) = range.strip_prefix(">=") {
        Some((true, parse_version(v)?))
    } else {
        Some((false, parse_version(range.strip_prefix('<')?)?))
    }
}

/// Whether a requirement applies to kernel `version`.
pub fn applies(req: &Requirement, version: Version) -> bool {
    if req.kernels == "all" {
        return true;
    }
    match parse_range(&req.kernels) {
        Some((true, bound)) => version >= bound,
        Some((false, bound)) => version < bound,
        None => true,
    }
}

/// The kernel version a `.config` was generated for (its `# Linux/x86 X.Y.Z Kernel
/// Configuration` header).
pub fn config_version(config: &str) -> Option<Version> {
    config.lines().take(10).find_map(|l| {
        let rest = l.strip_prefix("# Linux/")?;
        let ver = rest.split_whitespace().nth(1)?;
        parse_version(ver)
    })
}

/// A requirement the checked `.config` does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The requirement.
    pub req: Requirement,
    /// What the `.config` says (`=m`, `not set`, `absent`).
    pub found: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.req.want {
            Want::BuiltIn => write!(
                f,
                "MISSING {}=y (found: {}): {}",
                self.req.option, self.found, self.req.why
            ),
            Want::Unset => write!(
                f,
                "FORBIDDEN {} (found: {}): {}",
                self.req.option, self.found, self.req.why
            ),
        }
    }
}

/// The value of `option` in a `.config`: `Some("y")`, `Some("m")`, `Some("not set")`, or
/// `None` when absent.
fn value_of<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        if let Some(v) = l.strip_prefix(option).and_then(|r| r.strip_prefix('=')) {
            Some(v.trim())
        } else if l.strip_prefix("# ").and_then(|r| r.strip_prefix(option)) == Some(" is not set") {
            Some("not set")
        } else {
            None
        }
    })
}

/// Checks a `.config` text for kernel `version` against `reqs`.
pub fn check(config: &str, version: Version, reqs: &[Requirement]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for req in reqs.iter().filter(|r| applies(r, version)) {
        let found = value_of(config, &req.option);
        let ok = match req.want {
            Want::BuiltIn => found == Some("y"),
            Want::Unset => !matches!(found, Some("y") | Some("m")),
        };
        if !ok {
            problems.push(Problem {
                req: req.clone(),
                found: match found {
                    Some("not set") => "not set".into(),
                    Some(v) => format!("={v}"),
                    None => "absent".into(),
                },
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs() -> Vec<Requirement> {
        parse_table(REQUIRED_TSV).expect("the shipped table parses")
    }

    #[test]
    fn shipped_table_has_the_key_options() {
        let r = reqs();
        for opt in [
            "CONFIG_IOMMUFD",
            "CONFIG_VFIO_DEVICE_CDEV",
            "CONFIG_VFIO_CONTAINER",
            "CONFIG_INTEL_IOMMU_DEBUGFS",
            "CONFIG_PCI_IOV",
        ] {
            assert!(
                r.iter().any(|q| q.option == opt && q.want == Want::BuiltIn),
                "{opt}"
            );
        }
        let forbidden = r
            .iter()
            .find(|q| q.option == "CONFIG_IOMMUFD_VFIO_CONTAINER")
            .unwrap();
        assert_eq!(forbidden.want, Want::Unset);
        assert!(r.iter().all(|q| !q.why.is_empty()));
    }

    #[test]
    fn version_ranges_select_sysctl_option() {
        let r = reqs();
        let sysctl = |v| {
            r.iter()
                .filter(|q| applies(q, v))
                .filter(|q| q.option.contains("SYSCTL"))
                .map(|q| q.option.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(sysctl((6, 12, 117)), ["CONFIG_PROC_SYSCTL"]);
        assert_eq!(sysctl((7, 3, 4)), ["CONFIG_SYSCTL"]);
        assert_eq!(sysctl((7, 0, 0)), ["CONFIG_SYSCTL"]);
    }

    #[test]
    fn debian_like_config_reports_missing_iommufd_and_modules() {
        let config = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.117 Kernel Configuration\n\
                      CONFIG_VFIO=m\n# CONFIG_IOMMUFD is not set\nCONFIG_VFIO_CONTAINER=y\n";
        let v = config_version(config).unwrap();
        assert_eq!(v, (6, 12, 117));
        let problems = check(config, v, &reqs());
        let find = |o: &str| problems.iter().find(|p| p.req.option == o);
        assert_eq!(find("CONFIG_VFIO").unwrap().found, "=m");
        assert_eq!(find("CONFIG_IOMMUFD").unwrap().found, "not set");
        assert_eq!(find("CONFIG_VFIO_DEVICE_CDEV").unwrap().found, "absent");
        assert!(find("CONFIG_VFIO_CONTAINER").is_none());
        assert!(
            find("CONFIG_IOMMUFD_VFIO_CONTAINER").is_none(),
            "absent is fine"
        );
        assert!(
            find("CONFIG_SYSCTL").is_none(),
            "7.x-only name not checked on 6.12"
        );
        let line = find("CONFIG_IOMMUFD").unwrap().to_string();
        assert!(line.starts_with("MISSING CONFIG_IOMMUFD=y (found: not set): /dev/iommu"));
    }

    #[test]
    fn forbidden_option_set_is_a_problem() {
        let config = "CONFIG_IOMMUFD_VFIO_CONTAINER=y\n";
        let problems = check(config, (7, 3, 4), &reqs());
        let p = problems
            .iter()
            .find(|p| p.req.option == "CONFIG_IOMMUFD_VFIO_CONTAINER")
            .unwrap();
        assert!(p.to_string().starts_with("FORBIDDEN"));
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(parse_table("CONFIG_X q all why").is_err());
        assert!(parse_table("CONFIG_X y <seven why").is_err());
        assert!(parse_table("CONFIG_X y").is_err());
        assert_eq!(parse_version("7.3.4-rc1+"), Some((7, 3, 4)));
        assert_eq!(parse_version("6.12"), Some((6, 12, 0)));
        assert_eq!(parse_version("x"), None);
    }
}
