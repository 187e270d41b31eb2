//! The device host-request protocol: what a guest asks its VMM to do for one of its PCI
//! functions. A guest has no configuration-space window (no ECAM, no port 0xcf8), so config
//! accesses, interrupt enable/disable, reset and the BAR layout go to the VMM as requests; the
//! VMM serves them from the model or from the VFIO device.
//!
//! A request is four 64-bit words and a reply three, so both fit in registers or a small shared
//! buffer of whatever transport the VMM uses (a ucall). This file uses only `core`, so the no_std
//! guest runtime shares it verbatim.
//!
//! | word | bits | meaning |
//! |---|---|---|
//! | 0 | 7:0 | operation ([`DeviceOp`]) |
//! | 0 | 15:8 | device index (the VMM's numbering of the guest's functions) |
//! | 0 | 23:16 | access width in bytes (config accesses) |
//! | 0 | 31:24 | interrupt kind (0 INTx, 1 MSI, 2 MSI-X) or BAR index |
//! | 0 | 47:32 | configuration-space offset |
//! | 1 | 63:0 | value (config write) / first vector (IRQ enable) |
//! | 2 | 63:0 | vector count (IRQ enable) |
//! | 3 | 31:0 | destination APIC id (IRQ enable) |
//! | 3 | 39:32 | guest vector of device vector 0 (IRQ enable): device vector `v` arrives as guest vector `base + v` |
//!
//! A reply is `[status, value, extra]`: status 0 is success ([`Reply`]), anything else a
//! [`ReplyError`] code with its detail in `value`.

use passthru_core::mmio::{FunctionError, IrqKind};

/// The host-request code (`ucall::host_request(DEVICE_REQUEST_CODE, &request.encode())`) under
/// which a VMM serves device requests.
pub const DEVICE_REQUEST_CODE: u64 = 0x10;

/// Words in an encoded request.
pub const REQUEST_WORDS: usize = 4;
/// Words in an encoded reply.
pub const REPLY_WORDS: usize = 3;

/// The operation of a [`DeviceRequest`], as encoded in word 0 bits 7:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DeviceOp {
    /// Configuration-space read.
    ConfigRead = 1,
    /// Configuration-space write.
    ConfigWrite = 2,
    /// Where a BAR is in guest-physical space.
    BarInfo = 3,
    /// Enable interrupt vectors and route them to the guest.
    IrqEnable = 4,
    /// Disable every vector of one interrupt kind.
    IrqDisable = 5,
    /// Function reset.
    Reset = 6,
}

impl DeviceOp {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ConfigRead,
            2 => Self::ConfigWrite,
            3 => Self::BarInfo,
            4 => Self::IrqEnable,
            5 => Self::IrqDisable,
            6 => Self::Reset,
            _ => return None,
        })
    }

    /// What the operation is called in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConfigRead => "config read (host request)",
            Self::ConfigWrite => "config write (host request)",
            Self::BarInfo => "BAR info (host request)",
            Self::IrqEnable => "irq_enable (host request)",
            Self::IrqDisable => "irq_disable (host request)",
            Self::Reset => "reset (host request)",
        }
    }
}

/// Where the interrupts of a device go in the guest: fixed delivery, edge triggered, to one APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiTarget {
    /// Destination APIC id (x2APIC ids above 255 allowed).
    pub dest_apic_id: u32,
    /// The guest vector of device vector 0; device vector `v` is delivered as `vector_base + v`.
    pub vector_base: u8,
}

impl MsiTarget {
    /// The guest vector for device vector `v`, if it stays within 32..=255 (0..31 are
    /// exceptions).
    pub fn guest_vector(self, v: u32) -> Option<u8> {
        let g = u32::from(self.vector_base).checked_add(v)?;
        (32..=255).contains(&g).then_some(g as u8)
    }
}

/// One request from the guest about its device `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// Read `width` (1, 2 or 4) bytes of configuration space at `offset`.
    ConfigRead {
        /// Device index.
        device: u8,
        /// Offset.
        offset: u16,
        /// Width in bytes.
        width: u8,
    },
    /// Write `width` (1, 2 or 4) bytes of configuration space at `offset`.
    ConfigWrite {
        /// Device index.
        device: u8,
        /// Offset.
        offset: u16,
        /// Width in bytes.
        width: u8,
        /// Value (low `width` bytes).
        value: u32,
    },
    /// Guest-physical address (reply value) and length (reply extra) of memory BAR `index`.
    BarInfo {
        /// Device index.
        device: u8,
        /// BAR index 0..=5.
        index: u8,
    },
    /// Enable `count` vectors of `kind` from `first` and deliver them to `target`.
    IrqEnable {
        /// Device index.
        device: u8,
        /// MSI or MSI-X (INTx is not routed into guests here).
        kind: IrqKind,
        /// First vector.
        first: u32,
        /// Vector count.
        count: u32,
        /// Where they go.
        target: MsiTarget,
    },
    /// Disable every vector of `kind`.
    IrqDisable {
        /// Device index.
        device: u8,
        /// The kind.
        kind: IrqKind,
    },
    /// Function-level reset.
    Reset {
        /// Device index.
        device: u8,
    },
}

/// Why an encoded request could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Word 0 names no operation.
    UnknownOp(u8),
    /// An interrupt kind code other than 0, 1, 2.
    BadIrqKind(u8),
    /// A config access width other than 1, 2, 4.
    BadWidth(u8),
    /// A count or vector that does not fit.
    BadVector(u64),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownOp(op) => write!(f, "unknown device request operation {op}"),
            Self::BadIrqKind(k) => write!(f, "unknown interrupt kind code {k}"),
            Self::BadWidth(w) => write!(f, "config access width {w} is not 1, 2 or 4"),
            Self::BadVector(v) => write!(f, "vector number or count {v:#x} out of range"),
        }
    }
}

impl core::error::Error for DecodeError {}

fn kind_code(kind: IrqKind) -> u8 {
    match kind {
        IrqKind::Intx => 0,
        IrqKind::Msi => 1,
        IrqKind::MsiX => 2,
    }
}

fn kind_from(code: u8) -> Result<IrqKind, DecodeError> {
    Ok(match code {
        0 => IrqKind::Intx,
        1 => IrqKind::Msi,
        2 => IrqKind::MsiX,
        c => return Err(DecodeError::BadIrqKind(c)),
    })
}

fn width_ok(w: u8) -> Result<u8, DecodeError> {
    match w {
        1 | 2 | 4 => Ok(w),
        _ => Err(DecodeError::BadWidth(w)),
    }
}

fn word0(op: DeviceOp, device: u8, width: u8, sel: u8, offset: u16) -> u64 {
    op as u64
        | u64::from(device) << 8
        | u64::from(width) << 16
        | u64::from(sel) << 24
        | u64::from(offset) << 32
}

impl DeviceRequest {
    /// The operation.
    pub fn op(&self) -> DeviceOp {
        match self {
            Self::ConfigRead { .. } => DeviceOp::ConfigRead,
            Self::ConfigWrite { .. } => DeviceOp::ConfigWrite,
            Self::BarInfo { .. } => DeviceOp::BarInfo,
            Self::IrqEnable { .. } => DeviceOp::IrqEnable,
            Self::IrqDisable { .. } => DeviceOp::IrqDisable,
            Self::Reset { .. } => DeviceOp::Reset,
        }
    }

    /// The device index.
    pub fn device(&self) -> u8 {
        match *self {
            Self::ConfigRead { device, .. }
            | Self::ConfigWrite { device, .. }
            | Self::BarInfo { device, .. }
            | Self::IrqEnable { device, .. }
            | Self::IrqDisable { device, .. }
            | Self::Reset { device } => device,
        }
    }

    /// The wire form (see the module documentation).
    pub fn encode(&self) -> [u64; REQUEST_WORDS] {
        let op = self.op();
        match *self {
            Self::ConfigRead {
                device,
                offset,
                width,
            } => [word0(op, device, width, 0, offset), 0, 0, 0],
            Self::ConfigWrite {
                device,
                offset,
                width,
                value,
            } => [word0(op, device, width, 0, offset), value.into(), 0, 0],
            Self::BarInfo { device, index } => [word0(op, device, 0, index, 0), 0, 0, 0],
            Self::IrqEnable {
                device,
                kind,
                first,
                count,
                target,
            } => [
                word0(op, device, 0, kind_code(kind), 0),
                first.into(),
                count.into(),
                u64::from(target.dest_apic_id) | u64::from(target.vector_base) << 32,
            ],
            Self::IrqDisable { device, kind } => {
                [word0(op, device, 0, kind_code(kind), 0), 0, 0, 0]
            }
            Self::Reset { device } => [word0(op, device, 0, 0, 0), 0, 0, 0],
        }
    }

    /// Parse the wire form; never panics on any input.
    pub fn decode(w: [u64; REQUEST_WORDS]) -> Result<Self, DecodeError> {
        let op_code = w[0] as u8;
        let op = DeviceOp::from_u8(op_code).ok_or(DecodeError::UnknownOp(op_code))?;
        let device = (w[0] >> 8) as u8;
        let width = (w[0] >> 16) as u8;
        let sel = (w[0] >> 24) as u8;
        let offset = (w[0] >> 32) as u16;
        let u32_of = |v: u64| u32::try_from(v).map_err(|_| DecodeError::BadVector(v));
        Ok(match op {
            DeviceOp::ConfigRead => Self::ConfigRead {
                device,
                offset,
                width: width_ok(width)?,
            },
            DeviceOp::ConfigWrite => Self::ConfigWrite {
                device,
                offset,
                width: width_ok(width)?,
                value: w[1] as u32,
            },
            DeviceOp::BarInfo => Self::BarInfo { device, index: sel },
            DeviceOp::IrqEnable => Self::IrqEnable {
                device,
                kind: kind_from(sel)?,
                first: u32_of(w[1])?,
                count: u32_of(w[2])?,
                target: MsiTarget {
                    dest_apic_id: w[3] as u32,
                    vector_base: (w[3] >> 32) as u8,
                },
            },
            DeviceOp::IrqDisable => Self::IrqDisable {
                device,
                kind: kind_from(sel)?,
            },
            DeviceOp::Reset => Self::Reset { device },
        })
    }
}

/// A successful reply: a value and, for [`DeviceRequest::BarInfo`], the BAR length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reply {
    /// Config read value, or BAR guest-physical address.
    pub value: u64,
    /// BAR length.
    pub extra: u64,
}

/// Why the VMM refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The request words did not decode.
    Malformed,
    /// No device with that index.
    NoSuchDevice(u8),
    /// The BAR does not exist (or cannot be given to the guest).
    NoSuchBar(u8),
    /// Config offset/width out of range or misaligned.
    ConfigOutOfRange(u16),
    /// The backing does not offer this (e.g. INTx into a guest).
    Unsupported,
    /// The host OS refused; the errno.
    Os(i32),
    /// A vector that does not fit the target's vector range, or more vectors than the device has.
    BadVector(u32),
}

impl ReplyError {
    fn code(self) -> (u64, u64) {
        match self {
            Self::Malformed => (1, 0),
            Self::NoSuchDevice(d) => (2, d.into()),
            Self::NoSuchBar(b) => (3, b.into()),
            Self::ConfigOutOfRange(o) => (4, o.into()),
            Self::Unsupported => (5, 0),
            Self::Os(e) => (6, e as u32 as u64),
            Self::BadVector(v) => (7, v.into()),
        }
    }

    fn from_code(code: u64, v: u64) -> Self {
        match code {
            2 => Self::NoSuchDevice(v as u8),
            3 => Self::NoSuchBar(v as u8),
            4 => Self::ConfigOutOfRange(v as u16),
            5 => Self::Unsupported,
            6 => Self::Os(v as u32 as i32),
            7 => Self::BadVector(v as u32),
            _ => Self::Malformed,
        }
    }

    /// The seam's error for this refusal of an `op` request.
    pub fn to_function_error(self, op: DeviceOp) -> FunctionError {
        match self {
            Self::NoSuchBar(b) => FunctionError::NoSuchBar(b),
            Self::ConfigOutOfRange(offset) => FunctionError::ConfigOutOfRange { offset },
            Self::Unsupported => FunctionError::Unsupported(op.name()),
            Self::Os(errno) => FunctionError::Os {
                op: op.name(),
                errno,
            },
            // EINVAL / ENODEV: the request itself was wrong.
            Self::Malformed | Self::BadVector(_) => FunctionError::Os {
                op: op.name(),
                errno: 22,
            },
            Self::NoSuchDevice(_) => FunctionError::Os {
                op: op.name(),
                errno: 19,
            },
        }
    }

    /// The reply error for a seam error (host side).
    pub fn from_function_error(e: FunctionError) -> Self {
        match e {
            FunctionError::NoSuchBar(b) => Self::NoSuchBar(b),
            FunctionError::ConfigOutOfRange { offset } => Self::ConfigOutOfRange(offset),
            FunctionError::Unsupported(_) => Self::Unsupported,
            FunctionError::NoSuchVector { vector, .. } => Self::BadVector(vector),
            FunctionError::Os { errno, .. } => Self::Os(errno),
        }
    }
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed device request"),
            Self::NoSuchDevice(d) => write!(f, "no guest device {d}"),
            Self::NoSuchBar(b) => write!(f, "BAR{b} is absent or not given to the guest"),
            Self::ConfigOutOfRange(o) => write!(f, "config offset {o:#x} out of range"),
            Self::Unsupported => f.write_str("not supported by this device backing"),
            Self::Os(e) => write!(f, "host OS error {e}"),
            Self::BadVector(v) => write!(f, "vector {v} cannot be routed into the guest"),
        }
    }
}

impl core::error::Error for ReplyError {}

/// Encode a reply.
pub fn encode_reply(r: Result<Reply, ReplyError>) -> [u64; REPLY_WORDS] {
    match r {
        Ok(Reply { value, extra }) => [0, value, extra],
        Err(e) => {
            let (code, v) = e.code();
            [code, v, 0]
        }
    }
}

/// Decode a reply; never panics.
pub fn decode_reply(w: [u64; REPLY_WORDS]) -> Result<Reply, ReplyError> {
    match w[0] {
        0 => Ok(Reply {
            value: w[1],
            extra: w[2],
        }),
        code => Err(ReplyError::from_code(code, w[1])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips() {
        let target = MsiTarget {
            dest_apic_id: 0x1234_5678,
            vector_base: 0x40,
        };
        let all = [
            DeviceRequest::ConfigRead {
                device: 1,
                offset: 0xffe,
                width: 2,
            },
            DeviceRequest::ConfigWrite {
                device: 0,
                offset: 4,
                width: 4,
                value: 0xdead_beef,
            },
            DeviceRequest::BarInfo {
                device: 3,
                index: 5,
            },
            DeviceRequest::IrqEnable {
                device: 2,
                kind: IrqKind::MsiX,
                first: 1,
                count: 8,
                target,
            },
            DeviceRequest::IrqDisable {
                device: 0,
                kind: IrqKind::Msi,
            },
            DeviceRequest::Reset { device: 7 },
        ];
        for r in all {
            assert_eq!(DeviceRequest::decode(r.encode()), Ok(r), "{r:?}");
        }
    }

    #[test]
    fn bad_words_decode_to_errors_not_panics() {
        assert_eq!(
            DeviceRequest::decode([0, 0, 0, 0]),
            Err(DecodeError::UnknownOp(0))
        );
        assert_eq!(
            DeviceRequest::decode([0xff, 0, 0, 0]),
            Err(DecodeError::UnknownOp(0xff))
        );
        assert_eq!(
            DeviceRequest::decode([1 | 3 << 16, 0, 0, 0]),
            Err(DecodeError::BadWidth(3))
        );
        assert_eq!(
            DeviceRequest::decode([4 | 9 << 24, 0, 1, 0]),
            Err(DecodeError::BadIrqKind(9))
        );
        assert_eq!(
            DeviceRequest::decode([4 | 2 << 24, 1 << 40, 1, 0]),
            Err(DecodeError::BadVector(1 << 40))
        );
    }

    #[test]
    fn replies_round_trip_and_map_to_seam_errors() {
        let ok = Reply {
            value: 0xc000_0000,
            extra: 0x4000,
        };
        assert_eq!(decode_reply(encode_reply(Ok(ok))), Ok(ok));
        for e in [
            ReplyError::Malformed,
            ReplyError::NoSuchDevice(4),
            ReplyError::NoSuchBar(2),
            ReplyError::ConfigOutOfRange(0x1000),
            ReplyError::Unsupported,
            ReplyError::Os(-5i32.wrapping_neg()),
            ReplyError::BadVector(300),
        ] {
            assert_eq!(decode_reply(encode_reply(Err(e))), Err(e));
        }
        assert_eq!(
            ReplyError::Os(16).to_function_error(DeviceOp::Reset),
            FunctionError::Os {
                op: "reset (host request)",
                errno: 16
            }
        );
        assert_eq!(
            ReplyError::from_function_error(FunctionError::NoSuchBar(3)),
            ReplyError::NoSuchBar(3)
        );
    }

    #[test]
    fn guest_vectors_stay_out_of_the_exception_range() {
        let t = MsiTarget {
            dest_apic_id: 0,
            vector_base: 0xf0,
        };
        assert_eq!(t.guest_vector(0), Some(0xf0));
        assert_eq!(t.guest_vector(15), Some(0xff));
        assert_eq!(t.guest_vector(16), None);
        let low = MsiTarget {
            dest_apic_id: 0,
            vector_base: 0x10,
        };
        assert_eq!(low.guest_vector(0), None, "vector 0x10 is an exception");
        assert_eq!(low.guest_vector(0x10), Some(0x20));
    }
}
