//! Command-line parsing for test programs: kselftest's filters plus `--seed` and `--timeout`,
//! and trailing BDFs.

use std::time::Duration;

use passthru_linux::bdf::{Bdf, BdfError};

/// One filter option. Filters are checked in command-line order and the first that matches a
/// test decides (include for lower-case options, exclude for upper-case); a test no filter
/// matches runs only if no include filter was given (kselftest semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `-f NAME`: include fixture.
    IncludeFixture(String),
    /// `-F NAME`: exclude fixture.
    ExcludeFixture(String),
    /// `-v NAME`: include variant.
    IncludeVariant(String),
    /// `-V NAME`: exclude variant.
    ExcludeVariant(String),
    /// `-t NAME`: include test.
    IncludeTest(String),
    /// `-T NAME`: exclude test.
    ExcludeTest(String),
    /// `-r fixture.variant.test` (or `fixture.test`): include exactly this test.
    Run(String),
}

impl Filter {
    fn is_include(&self) -> bool {
        matches!(
            self,
            Self::IncludeFixture(_) | Self::IncludeVariant(_) | Self::IncludeTest(_) | Self::Run(_)
        )
    }

    /// Whether this filter names the given test (regardless of include/exclude).
    fn matches(&self, fixture: &str, variant: &str, test: &str, full_name: &str) -> bool {
        match self {
            Self::IncludeFixture(n) | Self::ExcludeFixture(n) => n == fixture,
            Self::IncludeVariant(n) | Self::ExcludeVariant(n) => n == variant,
            Self::IncludeTest(n) | Self::ExcludeTest(n) => n == test,
            Self::Run(n) => n == full_name,
        }
    }
}

/// Decides whether a test runs under `filters` (see [`Filter`]).
pub fn enabled(filters: &[Filter], fixture: &str, variant: &str, test: &str) -> bool {
    let full = full_name(fixture, variant, test);
    for f in filters {
        if f.matches(fixture, variant, test, &full) {
            return f.is_include();
        }
    }
    !filters.iter().any(Filter::is_include)
}

/// The KTAP name: `fixture.variant.test`, or `fixture.test` when the variant is unnamed.
pub fn full_name(fixture: &str, variant: &str, test: &str) -> String {
    if variant.is_empty() {
        format!("{fixture}.{test}")
    } else {
        format!("{fixture}.{variant}.{test}")
    }
}

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `-l`: list the tests instead of running them.
    pub list: bool,
    /// `-h`: print usage.
    pub help: bool,
    /// `-d`: debug messages (upstream's `ksft_print_dbg_msg`): each test's duration and the
    /// devices it got, as `# debug:` lines.
    pub debug: bool,
    /// The filters, in order.
    pub filters: Vec<Filter>,
    /// `--seed N` (decimal or 0x-hex).
    pub seed: Option<u64>,
    /// `--timeout SECS`: overrides every test's timeout.
    pub timeout: Option<Duration>,
    /// BDF arguments, in order.
    pub bdfs: Vec<Bdf>,
}

/// A command-line error (reported on one line; the program exits with `KSFT_FAIL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An option that takes a value was last.
    #[error("option {0} needs a value")]
    MissingValue(String),
    /// An option the harness does not know.
    #[error("unknown option {0}")]
    UnknownOption(String),
    /// A number that does not parse.
    #[error("option {option}: {value:?} is not a valid {what}")]
    BadNumber {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// What was expected.
        what: &'static str,
    },
    /// A BDF-shaped argument that is not a valid address.
    #[error(transparent)]
    BadBdf(#[from] BdfError),
    /// A positional argument that is not a BDF.
    #[error("unexpected argument {0:?} (expected a BDF such as 0000:00:04.0)")]
    Unexpected(String),
    /// An argument that is not valid UTF-8 (shown with replacement characters).
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(String),
}

/// The process arguments as UTF-8 strings, or the first that is not
/// ([`ArgError::NotUtf8`]); `std::env::args` would panic on it.
pub fn utf8_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Vec<String>, ArgError> {
    args.into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|bad| ArgError::NotUtf8(bad.to_string_lossy().into_owned()))
        })
        .collect()
}

impl Filter {
    /// The filter as it was given on the command line, e.g. `-r fixture.variant.test`.
    pub fn option_text(&self) -> String {
        let (opt, name) = match self {
            Self::IncludeFixture(n) => ("-f", n),
            Self::ExcludeFixture(n) => ("-F", n),
            Self::IncludeVariant(n) => ("-v", n),
            Self::ExcludeVariant(n) => ("-V", n),
            Self::IncludeTest(n) => ("-t", n),
            Self::ExcludeTest(n) => ("-T", n),
            Self::Run(n) => ("-r", n),
        };
        format!("{opt} {name}")
    }
}

/// Why `filters` select nothing from the tests `(fixture, variant, test)`, naming the filter:
/// an include filter that matches no test at all, else the combination. `None` if something
/// is selected (or there are no tests and no filters).
pub fn empty_selection<'a>(
    filters: &[Filter],
    tests: impl Iterator<Item = (&'a str, &'a str, &'a str)> + Clone,
) -> Option<String> {
    if tests.clone().any(|(f, v, t)| enabled(filters, f, v, t)) {
        return None;
    }
    for filter in filters.iter().filter(|f| f.is_include()) {
        if !tests
            .clone()
            .any(|(f, v, t)| filter.matches(f, v, t, &full_name(f, v, t)))
        {
            return Some(format!(
                "filter {} matches no test (list them with -l)",
                filter.option_text()
            ));
        }
    }
    let all: Vec<String> = filters.iter().map(Filter::option_text).collect();
    Some(if all.is_empty() {
        "no tests".into()
    } else {
        format!(
            "filters {} select no test (list them with -l)",
            all.join(" ")
        )
    })
}

/// The usage text (options; the program name is prepended by the caller).
pub const USAGE_OPTIONS: &str = "\
[-h|-l|-d] [-t|-T|-v|-V|-f|-F|-r name]... [--seed N] [--timeout SECS] [BDF...]
\t-h             print help (exit 4, as upstream)
\t-l             list all tests (exit 4, as upstream)
\t-d             debug messages (each test's duration)
\t-t name        include test
\t-T name        exclude test
\t-v name        include variant
\t-V name        exclude variant
\t-f name        include fixture
\t-F name        exclude fixture
\t-r name        run specified test (fixture.variant.test)
\t--seed N       seed for random choices (default: random, always printed)
\t--timeout SECS override every test's timeout (default 30 s, some tests more)
\tBDF            segment:bus:device.function, e.g. 0000:00:04.0

Test filter options can be given several times; the first match decides.
Devices: BDF arguments, else $VFIO_SELFTESTS_BDF, else the pool $VFIO_SELFTESTS_BDFS
(space- or comma-separated).";

fn parse_u64(option: &str, value: &str, what: &'static str) -> Result<u64, ArgError> {
    let parsed = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| ArgError::BadNumber {
        option: option.to_owned(),
        value: value.to_owned(),
        what,
    })
}

impl Options {
    /// Parses arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Self, ArgError> {
        let mut opts = Options::default();
        let mut i = 0;
        let mut only_positional = false;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if only_positional || !arg.starts_with('-') || arg == "-" {
                if Bdf::looks_like_bdf(arg) {
                    opts.bdfs.push(Bdf::parse(arg)?);
                    continue;
                }
                return Err(ArgError::Unexpected(arg.clone()));
            }
            if arg == "--" {
                only_positional = true;
                continue;
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                let mut value = || -> Result<String, ArgError> {
                    if let Some(v) = inline.clone() {
                        return Ok(v);
                    }
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| ArgError::MissingValue(format!("--{name}")))?;
                    i += 1;
                    Ok(v)
                };
                match name {
                    "seed" => opts.seed = Some(parse_u64("--seed", &value()?, "seed")?),
                    "timeout" => {
                        let secs = parse_u64("--timeout", &value()?, "number of seconds")?;
                        if secs == 0 {
                            return Err(ArgError::BadNumber {
                                option: "--timeout".into(),
                                value: "0".into(),
                                what: "number of seconds (must be > 0)",
                            });
                        }
                        opts.timeout = Some(Duration::from_secs(secs));
                    }
                    "help" => opts.help = true,
                    "list" => opts.list = true,
                    "debug" => opts.debug = true,
                    _ => return Err(ArgError::UnknownOption(arg.clone())),
                }
                continue;
            }
            // Short options, getopt style: flags may be grouped (-lh), a value may be attached
            // (-vfoo) or the next argument.
            let chars: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                match c {
                    'l' => opts.list = true,
                    'h' => opts.help = true,
                    'd' => opts.debug = true,
                    'f' | 'F' | 'v' | 'V' | 't' | 'T' | 'r' => {
                        let value: String = if j < chars.len() {
                            let v = chars[j..].iter().collect();
                            j = chars.len();
                            v
                        } else {
                            let v = args
                                .get(i)
                                .cloned()
                                .ok_or_else(|| ArgError::MissingValue(format!("-{c}")))?;
                            i += 1;
                            v
                        };
                        opts.filters.push(match c {
                            'f' => Filter::IncludeFixture(value),
                            'F' => Filter::ExcludeFixture(value),
                            'v' => Filter::IncludeVariant(value),
                            'V' => Filter::ExcludeVariant(value),
                            't' => Filter::IncludeTest(value),
                            'T' => Filter::ExcludeTest(value),
                            _ => Filter::Run(value),
                        });
                    }
                    _ => return Err(ArgError::UnknownOption(format!("-{c}"))),
                }
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_filters_seed_timeout_and_bdfs() {
        let o = Options::parse(&s(&[
            "-v",
            "iommufd",
            "-rvfio_cdev.bind",
            "--seed",
            "0x10",
            "--timeout=5",
            "0000:00:04.0",
            "0000:00:05.0",
        ]))
        .unwrap();
        assert_eq!(
            o.filters,
            vec![
                Filter::IncludeVariant("iommufd".into()),
                Filter::Run("vfio_cdev.bind".into())
            ]
        );
        assert_eq!(o.seed, Some(16));
        assert_eq!(o.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            o.bdfs.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            ["0000:00:04.0", "0000:00:05.0"]
        );
        assert!(!o.list);
    }

    #[test]
    fn grouped_flags_and_errors() {
        let o = Options::parse(&s(&["-lh"])).unwrap();
        assert!(o.list && o.help);
        assert_eq!(
            Options::parse(&s(&["-v"])),
            Err(ArgError::MissingValue("-v".into()))
        );
        assert_eq!(
            Options::parse(&s(&["-x"])),
            Err(ArgError::UnknownOption("-x".into()))
        );
        assert!(matches!(
            Options::parse(&s(&["--seed", "abc"])),
            Err(ArgError::BadNumber { .. })
        ));
        assert!(matches!(
            Options::parse(&s(&["--timeout", "0"])),
            Err(ArgError::BadNumber { .. })
        ));
        assert_eq!(
            Options::parse(&s(&["foo"])),
            Err(ArgError::Unexpected("foo".into()))
        );
        assert!(matches!(
            Options::parse(&s(&["0000:00:20.0"])),
            Err(ArgError::BadBdf(BdfError::DeviceOutOfRange { .. }))
        ));
        assert_eq!(
            Options::parse(&s(&["--", "0000:00:04.0"]))
                .unwrap()
                .bdfs
                .len(),
            1
        );
    }

    #[test]
    fn names_with_and_without_variant() {
        assert_eq!(full_name("vfio_cdev", "", "bind"), "vfio_cdev.bind");
        assert_eq!(
            full_name("vfio_pci_irq_test", "msix", "enable_trigger_disable"),
            "vfio_pci_irq_test.msix.enable_trigger_disable"
        );
    }

    #[test]
    fn filter_semantics_match_kselftest() {
        let f = |v: &[Filter], fx: &str, var: &str, t: &str| enabled(v, fx, var, t);
        // No filters: everything.
        assert!(f(&[], "a", "x", "t1"));
        // Include variant only.
        let inc = [Filter::IncludeVariant("x".into())];
        assert!(f(&inc, "a", "x", "t1"));
        assert!(!f(&inc, "a", "y", "t1"));
        // Only exclusions: everything else runs.
        let exc = [Filter::ExcludeTest("t1".into())];
        assert!(!f(&exc, "a", "x", "t1"));
        assert!(f(&exc, "a", "x", "t2"));
        // First match wins: "-T foo -v bla" = variant bla without test foo.
        let both = [
            Filter::ExcludeTest("foo".into()),
            Filter::IncludeVariant("bla".into()),
        ];
        assert!(!f(&both, "a", "bla", "foo"));
        assert!(f(&both, "a", "bla", "bar"));
        assert!(!f(&both, "a", "other", "bar"));
        // -r matches the exact full name, with or without a variant.
        let r = [
            Filter::Run("vfio_cdev.bind".into()),
            Filter::Run("f.v.t".into()),
        ];
        assert!(f(&r, "vfio_cdev", "", "bind"));
        assert!(!f(&r, "vfio_cdev", "", "bind2"));
        assert!(f(&r, "f", "v", "t"));
        // -f with an unnamed variant: -v "" matches the unnamed variant like upstream.
        assert!(f(&[Filter::IncludeVariant(String::new())], "g", "", "t"));
    }
}
