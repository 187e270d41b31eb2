//! PCI addresses (`segment:bus:device.function`), parsed the way upstream's selftests accept them.
//!
//! Upstream accepts a string as a BDF when it consists of exactly four hex fields of at most
//! 4, 2, 2 and 2 digits, separated by `:`, `:` and `.`, with nothing left over. The segment is
//! required (`0000:00:04.0`, not `00:04.0`). We accept the same shapes and additionally reject
//! device numbers above 0x1f and function numbers above 7, which no PCI function can have.

use core::fmt;
use core::str::FromStr;

/// The address of one PCI function: segment (domain), bus, device and function numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (domain), 16 bits.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=0x1f.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

/// Why a string is not a BDF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BdfError {
    /// The string does not have the `SSSS:BB:DD.F` shape (field `field` is missing, empty,
    /// too long or not hex, or a separator is wrong, or text is left over).
    #[error("invalid BDF {input:?}: expected segment:bus:device.function (e.g. 0000:00:04.0), bad {field}")]
    Syntax {
        /// The rejected input.
        input: String,
        /// Which part is malformed: "segment", "bus", "device", "function" or "trailing text"
        /// (with a hint when the segment is missing).
        field: &'static str,
    },
    /// The device number is above 0x1f.
    #[error("invalid BDF {input:?}: device number {device:#x} is above 0x1f")]
    DeviceOutOfRange {
        /// The rejected input.
        input: String,
        /// The parsed device number.
        device: u8,
    },
    /// The function number is above 7.
    #[error("invalid BDF {input:?}: function number {function:#x} is above 7")]
    FunctionOutOfRange {
        /// The rejected input.
        input: String,
        /// The parsed function number.
        function: u8,
    },
}

impl Bdf {
    /// Builds a BDF from its parts, checking the device (≤ 0x1f) and function (≤ 7) ranges.
    pub fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device <= 0x1f && function <= 7).then_some(Self {
            segment,
            bus,
            device,
            function,
        })
    }

    /// Parses `segment:bus:device.function` (see the module documentation).
    pub fn parse(input: &str) -> Result<Self, BdfError> {
        let syntax = |field| BdfError::Syntax {
            input: input.to_owned(),
            field,
        };
        if input.matches(':').count() == 1 {
            return Err(syntax("segment (missing; write e.g. 0000:00:04.0)"));
        }
        let (segment, rest) = take_hex(input, 4).ok_or_else(|| syntax("segment"))?;
        let rest = rest.strip_prefix(':').ok_or_else(|| syntax("segment"))?;
        let (bus, rest) = take_hex(rest, 2).ok_or_else(|| syntax("bus"))?;
        let rest = rest.strip_prefix(':').ok_or_else(|| syntax("bus"))?;
        let (device, rest) = take_hex(rest, 2).ok_or_else(|| syntax("device"))?;
        let rest = rest.strip_prefix('.').ok_or_else(|| syntax("device"))?;
        let (function, rest) = take_hex(rest, 2).ok_or_else(|| syntax("function"))?;
        if !rest.is_empty() {
            return Err(syntax("trailing text"));
        }
        // The widths above bound the values: segment ≤ 0xffff, the others ≤ 0xff.
        let segment = u16::try_from(segment).map_err(|_| syntax("segment"))?;
        let bus = u8::try_from(bus).map_err(|_| syntax("bus"))?;
        let device = u8::try_from(device).map_err(|_| syntax("device"))?;
        let function = u8::try_from(function).map_err(|_| syntax("function"))?;
        if device > 0x1f {
            return Err(BdfError::DeviceOutOfRange {
                input: input.to_owned(),
                device,
            });
        }
        if function > 7 {
            return Err(BdfError::FunctionOutOfRange {
                input: input.to_owned(),
                function,
            });
        }
        Ok(Self {
            segment,
            bus,
            device,
            function,
        })
    }

    /// True if `input` has the shape upstream's `is_bdf()` accepts (used to tell trailing BDF
    /// arguments from other arguments). Out-of-range device/function numbers still count as
    /// BDF-shaped, so that `parse` can report them instead of treating them as other text.
    pub fn looks_like_bdf(input: &str) -> bool {
        !matches!(Self::parse(input), Err(BdfError::Syntax { .. }))
    }
}

/// Takes 1..=`max` leading hex digits of `s`; returns their value and the rest.
fn take_hex(s: &str, max: usize) -> Option<(u32, &str)> {
    let len = s
        .bytes()
        .take(max)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if len == 0 {
        return None;
    }
    let value = u32::from_str_radix(&s[..len], 16).ok()?;
    Some((value, &s[len..]))
}

impl fmt::Display for Bdf {
    /// The canonical sysfs spelling, e.g. `0000:00:04.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatted by hand (no integer-formatting machinery): the open path names devices
        // several times per open, and that path is benchmarked against raw ioctls.
        let (buf, len) = self.canonical();
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

impl Bdf {
    /// The canonical spelling as a `String` (what `to_string` gives, without the formatting
    /// machinery).
    pub(crate) fn canonical_string(&self) -> String {
        let (buf, len) = self.canonical();
        String::from(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

impl Bdf {
    /// The canonical spelling (`{:04x}:{:02x}:{:02x}.{:x}`) as ASCII bytes and their length.
    pub(crate) fn canonical(&self) -> ([u8; 13], usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut b = [0u8; 13];
        let s = self.segment;
        for (i, shift) in [12u32, 8, 4, 0].into_iter().enumerate() {
            b[i] = HEX[usize::from((s >> shift) & 0xf)];
        }
        b[4] = b':';
        b[5] = HEX[usize::from(self.bus >> 4)];
        b[6] = HEX[usize::from(self.bus & 0xf)];
        b[7] = b':';
        b[8] = HEX[usize::from(self.device >> 4)];
        b[9] = HEX[usize::from(self.device & 0xf)];
        b[10] = b'.';
        let f = self.function;
        if f >= 0x10 {
            b[11] = HEX[usize::from(f >> 4)];
            b[12] = HEX[usize::from(f & 0xf)];
            (b, 13)
        } else {
            b[11] = HEX[usize::from(f)];
            (b, 12)
        }
    }
}

impl FromStr for Bdf {
    type Err = BdfError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_canonical_form() {
        let b = Bdf::parse("0000:00:04.0").unwrap();
        assert_eq!(b, Bdf::new(0, 0, 4, 0).unwrap());
        let b = Bdf::parse("abcd:ef:1f.7").unwrap();
        assert_eq!(
            (b.segment, b.bus, b.device, b.function),
            (0xabcd, 0xef, 0x1f, 7)
        );
        assert_eq!(b.to_string(), "abcd:ef:1f.7");
    }

    #[test]
    fn accepts_short_fields_like_upstream_sscanf_widths() {
        // Upstream's "%4x:%2x:%2x.%2x" accepts fewer digits per field.
        assert_eq!(Bdf::parse("0:0:4.0").unwrap().to_string(), "0000:00:04.0");
        assert_eq!(Bdf::parse("1:2:3.04").unwrap().to_string(), "0001:02:03.4");
        assert_eq!(Bdf::parse("ABCD:EF:1F.7").unwrap().segment, 0xabcd);
    }

    #[test]
    fn requires_segment() {
        let err = Bdf::parse("00:04.0").unwrap_err();
        assert!(matches!(err, BdfError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("segment (missing"), "{err}");
    }

    #[test]
    fn rejects_trailing_and_overlong_text() {
        for bad in [
            "0000:00:04.0 ",
            "0000:00:04.0x",
            "00000:00:04.0",
            "0000:000:04.0",
            "0000:00:004.0",
            "0000:00:04.000",
            "",
            "0000:00:04",
            "0000-00:04.0",
            "g000:00:04.0",
            " 0000:00:04.0",
        ] {
            let err = Bdf::parse(bad).unwrap_err();
            assert!(matches!(err, BdfError::Syntax { .. }), "{bad:?}: {err}");
            assert!(!Bdf::looks_like_bdf(bad), "{bad:?}");
        }
    }

    #[test]
    fn range_errors_name_the_field() {
        let err = Bdf::parse("0000:00:20.0").unwrap_err();
        assert_eq!(
            err,
            BdfError::DeviceOutOfRange {
                input: "0000:00:20.0".into(),
                device: 0x20
            }
        );
        let err = Bdf::parse("0000:00:1f.8").unwrap_err();
        assert!(matches!(
            err,
            BdfError::FunctionOutOfRange { function: 8, .. }
        ));
        assert!(err.to_string().contains("function number 0x8"));
        assert!(Bdf::looks_like_bdf("0000:00:1f.8"));
    }

    #[test]
    fn new_checks_ranges() {
        assert!(Bdf::new(0, 0, 0x20, 0).is_none());
        assert!(Bdf::new(0, 0, 0, 8).is_none());
        assert!(Bdf::new(0xffff, 0xff, 0x1f, 7).is_some());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(seg in any::<u16>(), bus in any::<u8>(), dev in 0u8..0x20, func in 0u8..8) {
            let bdf = Bdf::new(seg, bus, dev, func).unwrap();
            let text = bdf.to_string();
            prop_assert_eq!(text.len(), 12);
            prop_assert_eq!(Bdf::parse(&text).unwrap(), bdf);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = Bdf::parse(&s);
        }
    }
}
