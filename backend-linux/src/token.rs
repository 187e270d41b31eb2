//! The SR-IOV VF token: a UUID shared between a PF's user and its VFs' users.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A VF token (UUID), 16 bytes in the order they are written in the string form, which is what
/// the kernel's `uuid_parse` produces and what VFIO_DEVICE_FEATURE_PCI_VF_TOKEN and the bind
/// token pointer expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VfToken(pub [u8; 16]);

impl VfToken {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl FromStr for VfToken {
    type Err = Error;
    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, either case).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument {
            who: "VF token".into(),
            reason: format!("{s:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
        };
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return Err(bad());
        }
        let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
        if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).map_err(|_| bad())?;
            *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(VfToken(out))
    }
}

impl fmt::Display for VfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let s = "4e9a0c3f-1d2b-4c5e-8f60-71a2b3c4d5e6";
        let t: VfToken = s.parse().unwrap();
        assert_eq!(t.0[0], 0x4e);
        assert_eq!(t.0[15], 0xe6);
        assert_eq!(t.to_string(), s);
        let upper: VfToken = s.to_uppercase().parse().unwrap();
        assert_eq!(upper, t);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "4e9a0c3f1d2b4c5e8f6071a2b3c4d5e6",
            "4e9a0c3f-1d2b-4c5e-8f60-71a2b3c4d5e",
            "4e9a0c3f-1d2b-4c5e-8f60-71a2b3c4d5eg",
            "4e9a0c3f-1d2b-4c5e-8f6071-a2b3c4d5e6",
            "+e9a0c3f-1d2b-4c5e-8f60-71a2b3c4d5e6",
        ] {
            assert!(s.parse::<VfToken>().is_err(), "{s:?}");
        }
    }
}
