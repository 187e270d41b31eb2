//! The 32-byte DSA completion record and its status codes.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Completion status codes (status byte bits 6:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum CompletionStatus {
    /// 0x00: not yet complete.
    None = 0x00,
    /// 0x01: success.
    Success = 0x01,
    /// 0x02: success with false predicate (check-result mismatch).
    SuccessPredicateFalse = 0x02,
    /// 0x03: page fault without block-on-fault (partial completion).
    PageFaultNoBof = 0x03,
    /// 0x04: page fault whose page request got an invalid response.
    PageFaultInvalidResponse = 0x04,
    /// 0x05: batch failed (a member did not succeed).
    BatchFail = 0x05,
    /// 0x06: page fault while reading the batch descriptor list.
    BatchPageFault = 0x06,
    /// 0x07: apply delta: offsets not increasing.
    DeltaOffsetOrder = 0x07,
    /// 0x08: apply delta: offset out of range.
    DeltaOffsetRange = 0x08,
    /// 0x09: DIF error.
    DifError = 0x09,
    /// 0x10: unsupported or invalid opcode.
    InvalidOpcode = 0x10,
    /// 0x11: invalid flags.
    InvalidFlags = 0x11,
    /// 0x12: non-zero reserved field.
    ReservedNonZero = 0x12,
    /// 0x13: transfer size out of range.
    InvalidTransferSize = 0x13,
    /// 0x14: batch descriptor count out of range.
    InvalidDescriptorCount = 0x14,
    /// 0x15: delta-record size out of range.
    DeltaSizeRange = 0x15,
    /// 0x16: overlapping buffers.
    OverlappingBuffers = 0x16,
    /// 0x17: dualcast destinations disagree in address bits 11:0.
    DualcastMisaligned = 0x17,
    /// 0x18: batch descriptor list not 64-byte aligned.
    DescriptorListMisaligned = 0x18,
    /// 0x19: invalid interrupt handle.
    InvalidIntHandle = 0x19,
    /// 0x1A: completion-record address translation fault (via SWERR / event log).
    CompletionRecordFault = 0x1a,
    /// 0x1B: completion-record address misaligned.
    CompletionRecordMisaligned = 0x1b,
    /// 0x1C: operand address misaligned.
    AddressMisaligned = 0x1c,
    /// 0x1D: privilege error.
    PrivilegeError = 0x1d,
    /// 0x1E: traffic-class configuration error.
    TrafficClassError = 0x1e,
    /// 0x1F: page fault on a drain readback address.
    DrainReadbackFault = 0x1f,
    /// 0x20: uncorrectable hardware error.
    HardwareError = 0x20,
    /// 0x21: hardware error on destination readback.
    ReadbackHardwareError = 0x21,
    /// 0x22: address translation failure.
    TranslationFailure = 0x22,
    /// 0x26: drain reported through the event log (DSA 2.0).
    DrainEventLog = 0x26,
    /// 0x27: batch member error reported through the event log (DSA 2.0).
    BatchEventLog = 0x27,
}

impl CompletionStatus {
    /// Every named status.
    pub const ALL: [CompletionStatus; 31] = [
        Self::None,
        Self::Success,
        Self::SuccessPredicateFalse,
        Self::PageFaultNoBof,
        Self::PageFaultInvalidResponse,
        Self::BatchFail,
        Self::BatchPageFault,
        Self::DeltaOffsetOrder,
        Self::DeltaOffsetRange,
        Self::DifError,
        Self::InvalidOpcode,
        Self::InvalidFlags,
        Self::ReservedNonZero,
        Self::InvalidTransferSize,
        Self::InvalidDescriptorCount,
        Self::DeltaSizeRange,
        Self::OverlappingBuffers,
        Self::DualcastMisaligned,
        Self::DescriptorListMisaligned,
        Self::InvalidIntHandle,
        Self::CompletionRecordFault,
        Self::CompletionRecordMisaligned,
        Self::AddressMisaligned,
        Self::PrivilegeError,
        Self::TrafficClassError,
        Self::DrainReadbackFault,
        Self::HardwareError,
        Self::ReadbackHardwareError,
        Self::TranslationFailure,
        Self::DrainEventLog,
        Self::BatchEventLog,
    ];
    /// Decode a 7-bit code; unnamed codes come back unchanged as the error.
    pub const fn from_raw(code: u8) -> Result<Self, u8> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == code {
                return Ok(Self::ALL[i]);
            }
            i += 1;
        }
        Err(code)
    }
    /// Is this a success code (0x01 or 0x02)?
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success | Self::SuccessPredicateFalse)
    }
    /// Codes for which status bit 7 reports the fault direction.
    pub const fn is_fault(self) -> bool {
        matches!(
            self,
            Self::PageFaultNoBof
                | Self::PageFaultInvalidResponse
                | Self::BatchPageFault
                | Self::DrainReadbackFault
                | Self::TranslationFailure
        )
    }
}

impl TryFrom<u8> for CompletionStatus {
    type Error = u8;
    fn try_from(code: u8) -> Result<Self, u8> {
        Self::from_raw(code)
    }
}

/// Status byte 0 of a completion record: code (6:0) and write-fault (7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatusByte(pub u8);

impl StatusByte {
    /// Bit 7: the page fault was a write.
    pub const WRITE_FAULT: u8 = 1 << 7;
    /// Build from a status and the write-fault bit.
    pub const fn new(status: CompletionStatus, write_fault: bool) -> Self {
        StatusByte(status as u8 | if write_fault { Self::WRITE_FAULT } else { 0 })
    }
    /// Raw 7-bit code.
    pub const fn code(self) -> u8 {
        self.0 & 0x7f
    }
    /// Decoded code; unnamed codes come back as the error.
    pub const fn status(self) -> Result<CompletionStatus, u8> {
        CompletionStatus::from_raw(self.code())
    }
    /// Bit 7: write fault.
    pub const fn write_fault(self) -> bool {
        self.0 & Self::WRITE_FAULT != 0
    }
    /// Non-zero: the device has written the record.
    pub const fn is_done(self) -> bool {
        self.0 != 0
    }
}

/// Fault-info byte 2: bit 0 fault address masked, bits 3:1 operand id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultInfo(pub u8);

impl FaultInfo {
    /// Bit 0: the fault address is masked.
    pub const fn address_masked(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bits 3:1: which operand faulted.
    pub const fn operand_id(self) -> u8 {
        (self.0 >> 1) & 7
    }
}

/// The 32-byte DSA completion record (32-byte aligned).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CompletionRecord {
    /// Byte 0: status ([`StatusByte`]).
    pub status: u8,
    /// Byte 1: result (compare: 0 equal / 1 different; MEMMOVE fault: direction; batch: 1 if a
    /// member failed).
    pub result: u8,
    /// Byte 2: fault info ([`FaultInfo`]).
    pub fault_info: u8,
    /// Byte 3: reserved.
    pub reserved: u8,
    /// Bytes 4..7: bytes completed (BATCH: descriptors completed).
    pub bytes_completed: U32,
    /// Bytes 8..15: fault address.
    pub fault_addr: U64,
    /// Bytes 16..31: operation-specific.
    pub op_specific: [u8; 16],
}

/// Size and alignment of a DSA completion record.
pub const COMPLETION_RECORD_SIZE: usize = 32;
/// Size and alignment of an IAA completion record.
pub const IAA_COMPLETION_RECORD_SIZE: usize = 64;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<CompletionRecord>() == COMPLETION_RECORD_SIZE);
    assert!(offset_of!(CompletionRecord, status) == 0);
    assert!(offset_of!(CompletionRecord, result) == 1);
    assert!(offset_of!(CompletionRecord, fault_info) == 2);
    assert!(offset_of!(CompletionRecord, reserved) == 3);
    assert!(offset_of!(CompletionRecord, bytes_completed) == 4);
    assert!(offset_of!(CompletionRecord, fault_addr) == 8);
    assert!(offset_of!(CompletionRecord, op_specific) == 16);
};

/// Offsets in the record's operation-specific area, relative to record byte 0.
pub mod op_offset {
    /// Invalid-flags bitmap (bits 23:0 of the dword) for status 0x11.
    pub const INVALID_FLAGS: usize = 16;
    /// Create delta: delta-record size (u32).
    pub const DELTA_RECORD_SIZE: usize = 16;
    /// CRC value (CRC-32C in the low 32 bits; 64-bit in the newest headers).
    pub const CRC_VALUE: usize = 16;
    /// DIF check: ref tag (u32).
    pub const DIF_CHK_REF_TAG: usize = 16;
    /// DIF check: app mask (u16).
    pub const DIF_CHK_APP_MASK: usize = 20;
    /// DIF check: app tag (u16).
    pub const DIF_CHK_APP_TAG: usize = 22;
    /// DIF insert / DIX generate: ref tag (u32).
    pub const DIF_INS_REF_TAG: usize = 24;
    /// DIF insert / DIX generate: app mask (u16).
    pub const DIF_INS_APP_MASK: usize = 28;
    /// DIF insert / DIX generate: app tag (u16).
    pub const DIF_INS_APP_TAG: usize = 30;
    /// DIF update: source ref tag.
    pub const DIF_UPD_SRC_REF_TAG: usize = 16;
    /// DIF update: source app mask.
    pub const DIF_UPD_SRC_APP_MASK: usize = 20;
    /// DIF update: source app tag.
    pub const DIF_UPD_SRC_APP_TAG: usize = 22;
    /// DIF update: destination ref tag.
    pub const DIF_UPD_DST_REF_TAG: usize = 24;
    /// DIF update: destination app mask.
    pub const DIF_UPD_DST_APP_MASK: usize = 28;
    /// DIF update: destination app tag.
    pub const DIF_UPD_DST_APP_TAG: usize = 30;
}

impl CompletionRecord {
    /// Decode 32 bytes (every bit pattern is valid).
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let mut r = Self::default();
        r.as_mut_bytes().copy_from_slice(b);
        r
    }
    /// The 32 bytes as the device writes them.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.as_bytes());
        out
    }
    /// The status byte.
    pub fn status_byte(&self) -> StatusByte {
        StatusByte(self.status)
    }
    /// The fault-info byte.
    pub fn fault_info(&self) -> FaultInfo {
        FaultInfo(self.fault_info)
    }
    fn op_u32(&self, off: usize) -> u32 {
        let i = off.saturating_sub(16);
        match self.op_specific.get(i..i + 4) {
            Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            None => 0,
        }
    }
    /// Invalid-flags bitmap (status 0x11).
    pub fn invalid_flags(&self) -> u32 {
        self.op_u32(op_offset::INVALID_FLAGS) & 0xff_ffff
    }
    /// CRC-32C value (CRC operations).
    pub fn crc32(&self) -> u32 {
        self.op_u32(op_offset::CRC_VALUE)
    }
    /// 64-bit CRC field (newest headers).
    pub fn crc64(&self) -> u64 {
        self.op_u32(op_offset::CRC_VALUE) as u64
            | (self.op_u32(op_offset::CRC_VALUE + 4) as u64) << 32
    }
    /// Delta-record size (create delta).
    pub fn delta_record_size(&self) -> u32 {
        self.op_u32(op_offset::DELTA_RECORD_SIZE)
    }
}

impl core::fmt::Display for StatusByte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.status() {
            Ok(s) => write!(f, "{s:?} ({:#04x})", self.0)?,
            Err(c) => write!(f, "unknown status {c:#04x}")?,
        }
        if self.write_fault() {
            f.write_str(", write fault")?;
        }
        Ok(())
    }
}
