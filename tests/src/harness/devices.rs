//! Which devices a test program runs on.
//!
//! Candidates come from the command line (trailing BDFs), else from `$VFIO_SELFTESTS_BDF`
//! followed by the pool `$VFIO_SELFTESTS_BDFS` (space- or comma-separated). A
//! [`DeviceSelector`] then keeps the candidates a program can use (for example "an SR-IOV
//! physical function" or "a device a passthru driver supports"), reading their facts from sysfs.

use std::fmt;
use std::sync::Arc;

use passthru_linux::bdf::{Bdf, BdfError};
use passthru_linux::sysfs::{PciFunction, Sysfs, SysfsError};

/// The environment variable upstream reads for the device under test.
pub const ENV_BDF: &str = "VFIO_SELFTESTS_BDF";
/// The device pool: several BDFs, space- or comma-separated.
pub const ENV_POOL: &str = "VFIO_SELFTESTS_BDFS";

/// Where candidate devices come from besides the command line, and the sysfs to inspect them.
#[derive(Debug, Clone, Default)]
pub struct DeviceSource {
    /// The value of `$VFIO_SELFTESTS_BDF`, if set.
    pub env_bdf: Option<String>,
    /// The value of `$VFIO_SELFTESTS_BDFS`, if set.
    pub env_pool: Option<String>,
    /// The sysfs used by selectors with a predicate.
    pub sysfs: Sysfs,
}

/// Why the candidate list could not be built, or no usable device was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// `$VFIO_SELFTESTS_BDF` or an entry of `$VFIO_SELFTESTS_BDFS` is not a BDF (a hard failure,
    /// as upstream).
    #[error("${var}: {source}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// The parse error.
        source: BdfError,
    },
    /// No device was given at all.
    #[error("no device given")]
    NoDevice,
    /// A well-formed address that names no PCI function: bad input (exit 1), not a skip.
    #[error("{detail}")]
    NoSuchDevice {
        /// The address.
        bdf: Bdf,
        /// The sysfs error naming the missing path.
        detail: String,
    },
    /// Devices were given but too few match the program's needs.
    #[error("need {wanted} {what}, found {found}{}", rejected_text(.rejected))]
    NoMatch {
        /// What the program needs.
        what: String,
        /// How many it needs at least.
        wanted: usize,
        /// How many matched.
        found: usize,
        /// Candidates that did not match, with the reason.
        rejected: Vec<(Bdf, String)>,
    },
}

fn rejected_text(rejected: &[(Bdf, String)]) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rejected.iter().map(|(b, r)| format!("{b}: {r}")).collect();
    format!(" (rejected: {})", parts.join("; "))
}

impl DeviceSource {
    /// Reads both variables from the process environment; sysfs at `/sys`.
    pub fn from_env() -> Self {
        Self {
            env_bdf: std::env::var(ENV_BDF).ok(),
            env_pool: std::env::var(ENV_POOL).ok(),
            sysfs: Sysfs::default(),
        }
    }

    /// The candidates: `cli` if non-empty, else `$VFIO_SELFTESTS_BDF` then the pool, without
    /// duplicates, in order.
    pub fn candidates(&self, cli: &[Bdf]) -> Result<Vec<Bdf>, DeviceError> {
        if !cli.is_empty() {
            return Ok(cli.to_vec());
        }
        let mut out = Vec::new();
        if let Some(v) = self.env_bdf.as_deref() {
            let bdf = Bdf::parse(v).map_err(|source| DeviceError::BadEnv {
                var: ENV_BDF,
                source,
            })?;
            out.push(bdf);
        }
        if let Some(pool) = self.env_pool.as_deref() {
            for item in pool
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
            {
                let bdf = Bdf::parse(item).map_err(|source| DeviceError::BadEnv {
                    var: ENV_POOL,
                    source,
                })?;
                if !out.contains(&bdf) {
                    out.push(bdf);
                }
            }
        }
        Ok(out)
    }
}

type Predicate = Arc<dyn Fn(&PciFunction) -> Result<(), String> + Send + Sync>;

/// Which and how many devices a program needs.
#[derive(Clone)]
pub struct DeviceSelector {
    what: String,
    min: usize,
    max: Option<usize>,
    predicate: Option<Predicate>,
}

impl fmt::Debug for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSelector")
            .field("what", &self.what)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

impl DeviceSelector {
    /// Exactly one device, the first candidate, unchecked (upstream's `vfio_selftests_get_bdf`).
    pub fn one() -> Self {
        Self {
            what: "device".into(),
            min: 1,
            max: Some(1),
            predicate: None,
        }
    }

    /// Every candidate, at least one (upstream's `vfio_selftests_get_bdfs`).
    pub fn all() -> Self {
        Self {
            what: "device(s)".into(),
            min: 1,
            max: None,
            predicate: None,
        }
    }

    /// No device required (suites on models); any given devices are passed through.
    pub fn none() -> Self {
        Self {
            what: "device(s)".into(),
            min: 0,
            max: None,
            predicate: None,
        }
    }

    /// One device satisfying `check`, which returns `Err(reason)` for an unusable device;
    /// `what` describes the need in messages (e.g. "SR-IOV physical function").
    pub fn matching(
        what: impl Into<String>,
        check: impl Fn(&PciFunction) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            what: what.into(),
            min: 1,
            max: Some(1),
            predicate: Some(Arc::new(check)),
        }
    }

    /// Adds a requirement: a device must also pass `check` (`Err(reason)` rejects it); `what`
    /// extends the description ("… and `what`").
    pub fn and(
        mut self,
        what: impl Into<String>,
        check: impl Fn(&PciFunction) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let what = what.into();
        self.what =
            if self.predicate.is_none() && (self.what == "device" || self.what == "device(s)") {
                what
            } else {
                format!("{} and {what}", self.what)
            };
        let check: Predicate = Arc::new(check);
        self.predicate = Some(match self.predicate.take() {
            None => check,
            Some(first) => Arc::new(move |f: &PciFunction| {
                first(f)?;
                check(f)
            }),
        });
        self
    }

    /// Requires the device to be bound to vfio-pci (what `passthru setup` does).
    pub fn vfio_bound(self) -> Self {
        self.and("device bound to vfio-pci", |f| {
            if f.is_vfio_bound() {
                Ok(())
            } else {
                Err(format!(
                    "bound to {}, not vfio-pci (run `passthru setup {}`)",
                    f.driver.as_deref().unwrap_or("no driver"),
                    f.bdf
                ))
            }
        })
    }

    /// Requires an SR-IOV physical function (`sriov_totalvfs` > 0).
    pub fn sriov_pf(self) -> Self {
        self.and("SR-IOV physical function", |f| {
            if f.is_sriov_pf() {
                Ok(())
            } else {
                Err("not an SR-IOV physical function (no sriov_totalvfs > 0)".into())
            }
        })
    }

    /// Requires a device a passthru memcpy driver supports by its ids (dsa, ioat, edu, igb
    /// families of `passthru_core::pci::supported_device`). The driver's own probe still
    /// decides at run time (e.g. a CBDMA version it rejects).
    pub fn memcpy_driver(self) -> Self {
        self.and("device with a passthru memcpy driver", |f| {
            use passthru_core::pci::DeviceFamily as F;
            match passthru_core::pci::supported_device(f.vendor, f.device) {
                Some(k) if matches!(k.family, F::Dsa | F::Ioat | F::Edu | F::Igb) => Ok(()),
                Some(k) => Err(format!("{} has no passthru memcpy driver", k.name)),
                None => Err(format!(
                    "{:04x}:{:04x} is not a device passthru drives",
                    f.vendor, f.device
                )),
            }
        })
    }

    /// Takes between `min` and `max` (inclusive; `None` = unbounded) matching devices.
    pub fn count(mut self, min: usize, max: Option<usize>) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// The minimum number of devices.
    pub fn min(&self) -> usize {
        self.min
    }

    /// Picks from `candidates`, in order. Devices whose sysfs facts cannot be read do not match.
    pub fn select(&self, candidates: &[Bdf], sysfs: &Sysfs) -> Result<Vec<Bdf>, DeviceError> {
        if candidates.is_empty() && self.min > 0 {
            return Err(DeviceError::NoDevice);
        }
        let mut chosen = Vec::new();
        let mut rejected = Vec::new();
        for &bdf in candidates {
            if self.max.is_some_and(|m| chosen.len() >= m) {
                break;
            }
            match &self.predicate {
                None => chosen.push(bdf),
                Some(check) => match sysfs.function(bdf) {
                    Ok(f) => match check(&f) {
                        Ok(()) => chosen.push(bdf),
                        Err(reason) => rejected.push((bdf, reason)),
                    },
                    Err(e @ SysfsError::NoSuchDevice { .. }) => {
                        return Err(DeviceError::NoSuchDevice {
                            bdf,
                            detail: e.to_string(),
                        })
                    }
                    Err(e) => rejected.push((bdf, e.to_string())),
                },
            }
        }
        if chosen.len() < self.min {
            return Err(DeviceError::NoMatch {
                what: self.what.clone(),
                wanted: self.min,
                found: chosen.len(),
                rejected,
            });
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bdf {
        Bdf::parse(s).unwrap()
    }

    #[test]
    fn cli_wins_then_env_then_pool() {
        let src = DeviceSource {
            env_bdf: Some("0000:00:01.0".into()),
            env_pool: Some("0000:00:02.0, 0000:00:01.0 0000:00:03.0".into()),
            sysfs: Sysfs::new("/nonexistent"),
        };
        assert_eq!(
            src.candidates(&[b("0000:00:09.0")]).unwrap(),
            vec![b("0000:00:09.0")]
        );
        assert_eq!(
            src.candidates(&[]).unwrap(),
            vec![b("0000:00:01.0"), b("0000:00:02.0"), b("0000:00:03.0")]
        );
    }

    #[test]
    fn bad_env_is_a_hard_error() {
        let src = DeviceSource {
            env_bdf: Some("00:04.0".into()),
            ..Default::default()
        };
        assert!(matches!(
            src.candidates(&[]),
            Err(DeviceError::BadEnv { var: ENV_BDF, .. })
        ));
        let src = DeviceSource {
            env_pool: Some("0000:00:04.0,zz".into()),
            ..Default::default()
        };
        assert!(matches!(
            src.candidates(&[]),
            Err(DeviceError::BadEnv { var: ENV_POOL, .. })
        ));
    }

    #[test]
    fn selector_counts() {
        let sys = Sysfs::new("/nonexistent");
        let c = [b("0000:00:01.0"), b("0000:00:02.0")];
        assert_eq!(DeviceSelector::one().select(&c, &sys).unwrap(), vec![c[0]]);
        assert_eq!(DeviceSelector::all().select(&c, &sys).unwrap(), c.to_vec());
        assert_eq!(
            DeviceSelector::one().select(&[], &sys),
            Err(DeviceError::NoDevice)
        );
        assert_eq!(DeviceSelector::none().select(&[], &sys).unwrap(), vec![]);
        let err = DeviceSelector::all()
            .count(3, None)
            .select(&c, &sys)
            .unwrap_err();
        assert!(matches!(
            err,
            DeviceError::NoMatch {
                wanted: 3,
                found: 2,
                ..
            }
        ));
    }

    fn function(bdf: &str, vendor: u16, device: u16, driver: Option<&str>) -> PciFunction {
        PciFunction {
            bdf: b(bdf),
            vendor,
            device,
            class: 0,
            driver: driver.map(String::from),
            driver_override: None,
            iommu_group: None,
            sriov_totalvfs: None,
            sriov_numvfs: None,
            physfn: None,
            vfio_cdev: None,
        }
    }

    #[test]
    fn requirement_helpers_combine() {
        let sel = DeviceSelector::one().vfio_bound().memcpy_driver();
        assert_eq!(
            sel.what,
            "device bound to vfio-pci and device with a passthru memcpy driver"
        );
        let check = sel.predicate.clone().unwrap();
        let edu_vfio = function("0000:00:04.0", 0x1234, 0x11e8, Some("vfio-pci"));
        assert_eq!(check(&edu_vfio), Ok(()));
        let edu_unbound = function("0000:00:04.0", 0x1234, 0x11e8, None);
        let reason = check(&edu_unbound).unwrap_err();
        assert!(
            reason.contains("bound to no driver, not vfio-pci"),
            "{reason}"
        );
        assert!(reason.contains("passthru setup 0000:00:04.0"), "{reason}");
        let virtio = function("0000:00:05.0", 0x1af4, 0x1041, Some("vfio-pci"));
        assert!(check(&virtio)
            .unwrap_err()
            .contains("not a device passthru drives"));
        let e1000e = function("0000:00:06.0", 0x8086, 0x10d3, Some("vfio-pci"));
        assert!(check(&e1000e)
            .unwrap_err()
            .contains("no passthru memcpy driver"));

        let pf = DeviceSelector::one().sriov_pf();
        let mut f = function("0000:00:04.0", 0x8086, 0x10c9, Some("igb"));
        assert!(pf.predicate.as_ref().unwrap()(&f).is_err());
        f.sriov_totalvfs = Some(7);
        assert_eq!(pf.predicate.as_ref().unwrap()(&f), Ok(()));
    }

    #[test]
    fn predicate_refuses_a_device_that_does_not_exist() {
        let sys = Sysfs::new("/nonexistent");
        let sel = DeviceSelector::matching("SR-IOV physical function", |f| {
            if f.is_sriov_pf() {
                Ok(())
            } else {
                Err("not SR-IOV".into())
            }
        });
        let err = sel.select(&[b("0000:00:01.0")], &sys).unwrap_err();
        assert!(
            matches!(err, DeviceError::NoSuchDevice { bdf, .. } if bdf == b("0000:00:01.0")),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "0000:00:01.0: no such PCI function (/nonexistent/bus/pci/devices/0000:00:01.0 does not exist)"
        );
    }
}
