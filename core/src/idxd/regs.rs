//! BAR0 registers: offsets and typed values.
//!
//! Each register value is a `Copy` newtype over its raw bits with `const` accessors for its named
//! fields; pure flag words ([`GenCtrl`], [`IntCause`]) are `bitflags`. Decoding never panics and
//! never loses bits: `raw()` always returns what was read.

use bitflags::bitflags;

use super::{bit, bits, set_bits};

/// Byte offsets of the BAR0 registers.
pub mod offset {
    /// VERSION (32-bit, RO).
    pub const VERSION: usize = 0x00;
    /// GENCAP, general capabilities (64-bit, RO).
    pub const GENCAP: usize = 0x10;
    /// WQCAP, work-queue capabilities (64-bit, RO).
    pub const WQCAP: usize = 0x20;
    /// GRPCAP, group capabilities (64-bit, RO).
    pub const GRPCAP: usize = 0x30;
    /// ENGCAP, engine capabilities (64-bit, RO).
    pub const ENGCAP: usize = 0x38;
    /// OPCAP, supported-operations bitmap (256-bit, 0x40..0x5F, RO).
    pub const OPCAP: usize = 0x40;
    /// TABLE_OFFSET (128-bit, 0x60..0x6F, RO); each field × 0x100 is a BAR0 byte offset.
    pub const TABLE_OFFSET: usize = 0x60;
    /// GENCFG, general configuration (32-bit).
    pub const GENCFG: usize = 0x80;
    /// GENCTRL, general control (interrupt enables, 32-bit).
    pub const GENCTRL: usize = 0x88;
    /// GENSTS, general status (32-bit, RO).
    pub const GENSTS: usize = 0x90;
    /// INTCAUSE, interrupt cause (32-bit, RW1C).
    pub const INTCAUSE: usize = 0x98;
    /// CMD, administrative command (32-bit).
    pub const CMD: usize = 0xa0;
    /// CMDSTS, command status (32-bit, RO).
    pub const CMDSTS: usize = 0xa8;
    /// CMDCAP, supported commands (32-bit, RO; valid only when GENCAP bit 4 is set).
    pub const CMDCAP: usize = 0xb0;
    /// SWERR, software error (4 × 64-bit, 0xC0..0xDF).
    pub const SWERR: usize = 0xc0;
    /// EVLCFG, event-log configuration (128-bit, 0xE0..0xEF; DSA 2.0).
    pub const EVLCFG: usize = 0xe0;
    /// EVLSTATUS, event-log status (64-bit; DSA 2.0).
    pub const EVLSTATUS: usize = 0xf0;
    /// IAACAP, IAA capabilities (64-bit; IAA 2.0 and later only).
    pub const IAACAP: usize = 0x180;
}

/// Byte lengths of the multi-word registers.
pub mod len {
    /// OPCAP: 256 bits.
    pub const OPCAP: usize = 32;
    /// TABLE_OFFSET: 128 bits.
    pub const TABLE_OFFSET: usize = 16;
    /// SWERR: 4 × 64 bits.
    pub const SWERR: usize = 32;
    /// EVLCFG: 128 bits.
    pub const EVLCFG: usize = 16;
}

/// Unit of every TABLE_OFFSET field: a field value `n` means BAR0 byte offset `n * 0x100`.
pub const TABLE_OFFSET_UNIT: usize = 0x100;

/// VERSION register. Treated as an opaque number: only the values 0x100 (DSA 1.0, Sapphire
/// Rapids) and 0x200 (DSA 2.0) are documented; the bit layout is not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Version(pub u32);

impl Version {
    /// DSA 1.0 (Sapphire Rapids).
    pub const V1: Version = Version(0x100);
    /// DSA 2.0.
    pub const V2: Version = Version(0x200);
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Default group traffic classes are TC-A = TC-B = 1 up to and including 0x200.
    pub const fn default_tc_is_1_1(self) -> bool {
        self.0 <= 0x200
    }
}

/// GENCAP (0x10): general capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GenCap(pub u64);

impl GenCap {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bit 0: block-on-fault support.
    pub const fn block_on_fault(self) -> bool {
        bit(self.0, 0)
    }
    /// Bit 1: overlapping-copy support.
    pub const fn overlapping_copy(self) -> bool {
        bit(self.0, 1)
    }
    /// Bit 2: cache-control support, memory.
    pub const fn cache_control_memory(self) -> bool {
        bit(self.0, 2)
    }
    /// Bit 3: cache-control support, cache.
    pub const fn cache_control_cache(self) -> bool {
        bit(self.0, 3)
    }
    /// Bit 4: the CMDCAP register is present.
    pub const fn cmd_cap(self) -> bool {
        bit(self.0, 4)
    }
    /// Bit 6: inter-domain support (DSA 2.0, unconfirmed).
    pub const fn inter_domain(self) -> bool {
        bit(self.0, 6)
    }
    /// Bit 7: translation-fetch support (DSA 2.0, unconfirmed).
    pub const fn translation_fetch(self) -> bool {
        bit(self.0, 7)
    }
    /// Bit 8: destination-readback support.
    pub const fn dest_readback(self) -> bool {
        bit(self.0, 8)
    }
    /// Bit 9: drain-readback support.
    pub const fn drain_readback(self) -> bool {
        bit(self.0, 9)
    }
    /// Bit 10: 16-byte fill pattern support (DSA 2.0, unconfirmed).
    pub const fn fill_16_byte(self) -> bool {
        bit(self.0, 10)
    }
    /// Bit 11: CRC64 support (DSA 2.0, unconfirmed).
    pub const fn crc64(self) -> bool {
        bit(self.0, 11)
    }
    /// Bit 12: completion-record fault-info support (DSA 2.0, unconfirmed).
    pub const fn cr_fault_info(self) -> bool {
        bit(self.0, 12)
    }
    /// Bits 14:13: event-log support code (0 = no event log).
    pub const fn evl_support(self) -> u8 {
        bits(self.0, 13, 2) as u8
    }
    /// Event-log entry size in bytes (`32 << evl_support`), or `None` without an event log.
    pub const fn evl_entry_size(self) -> Option<u32> {
        match self.evl_support() {
            0 => None,
            n => Some(32 << n),
        }
    }
    /// Bit 15: batch-continuation support.
    pub const fn batch_continuation(self) -> bool {
        bit(self.0, 15)
    }
    /// Bits 20:16: maximum transfer size shift (max transfer = 2^value bytes).
    pub const fn max_xfer_shift(self) -> u8 {
        bits(self.0, 16, 5) as u8
    }
    /// Bits 24:21: maximum batch size shift (max descriptors per batch = 2^value).
    pub const fn max_batch_shift(self) -> u8 {
        bits(self.0, 21, 4) as u8
    }
    /// Bits 30:25: maximum IMS multiplier (IMS entries = value × 256).
    pub const fn max_ims_mult(self) -> u8 {
        bits(self.0, 25, 6) as u8
    }
    /// IMS table entries: `max_ims_mult × 256`.
    pub const fn ims_entries(self) -> u32 {
        self.max_ims_mult() as u32 * 256
    }
    /// Bit 31: configuration support (WQ/group configuration is software-writable).
    pub const fn config_support(self) -> bool {
        bit(self.0, 31)
    }
    /// Maximum bytes per descriptor (2^max_xfer_shift; at most 2^31, fits in u64).
    pub const fn max_xfer_size(self) -> u64 {
        1u64 << self.max_xfer_shift()
    }
    /// Maximum descriptors per batch (2^max_batch_shift; at most 2^15).
    pub const fn max_batch_size(self) -> u32 {
        1u32 << self.max_batch_shift()
    }
}

/// WQCAP (0x20): work-queue capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WqCap(pub u64);

impl WqCap {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bits 15:0: total WQ entries shared by all WQs.
    pub const fn total_wq_size(self) -> u16 {
        bits(self.0, 0, 16) as u16
    }
    /// Bits 23:16: number of WQs.
    pub const fn num_wqs(self) -> u8 {
        bits(self.0, 16, 8) as u8
    }
    /// Bits 27:24: WQCFG size code.
    pub const fn wqcfg_size(self) -> u8 {
        bits(self.0, 24, 4) as u8
    }
    /// WQCFG entry stride in bytes: `1 << (wqcfg_size + 5)` (32 B for code 0, 64 B for code 1).
    pub const fn wqcfg_stride(self) -> usize {
        1usize << (self.wqcfg_size() as u32 + 5)
    }
    /// Bit 48: shared-mode support.
    pub const fn shared_mode(self) -> bool {
        bit(self.0, 48)
    }
    /// Bit 49: dedicated-mode support.
    pub const fn dedicated_mode(self) -> bool {
        bit(self.0, 49)
    }
    /// Bit 50: per-WQ ATS-disable support.
    pub const fn wq_ats_support(self) -> bool {
        bit(self.0, 50)
    }
    /// Bit 51: WQ priority support.
    pub const fn priority_support(self) -> bool {
        bit(self.0, 51)
    }
    /// Bit 52: WQ occupancy support.
    pub const fn occupancy_support(self) -> bool {
        bit(self.0, 52)
    }
    /// Bit 53: WQ occupancy-interrupt support.
    pub const fn occupancy_int_support(self) -> bool {
        bit(self.0, 53)
    }
    /// Bit 54: per-WQ op-config support (allowed-opcode bitmap in WQCFG bytes 32..63).
    pub const fn op_config_support(self) -> bool {
        bit(self.0, 54)
    }
    /// Bit 55: per-WQ PRS-disable support.
    pub const fn wq_prs_support(self) -> bool {
        bit(self.0, 55)
    }
}

/// GRPCAP (0x30): group capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GrpCap(pub u64);

impl GrpCap {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bits 7:0: number of groups.
    pub const fn num_groups(self) -> u8 {
        bits(self.0, 0, 8) as u8
    }
    /// Bits 15:8: total read buffers (formerly "tokens").
    pub const fn total_rdbufs(self) -> u8 {
        bits(self.0, 8, 8) as u8
    }
    /// Bit 16: read-buffer control support.
    pub const fn rdbuf_ctrl(self) -> bool {
        bit(self.0, 16)
    }
    /// Bit 17: global read-buffer limit support.
    pub const fn rdbuf_limit(self) -> bool {
        bit(self.0, 17)
    }
    /// Bit 18: descriptor/batch progress-limit support.
    pub const fn progress_limit(self) -> bool {
        bit(self.0, 18)
    }
}

/// ENGCAP (0x38): engine capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EngCap(pub u64);

impl EngCap {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bits 7:0: number of engines.
    pub const fn num_engines(self) -> u8 {
        bits(self.0, 0, 8) as u8
    }
    /// Bits 15:8: max work descriptors in progress (DSA 2.0, unconfirmed bit positions).
    pub const fn max_descs_in_progress(self) -> u8 {
        bits(self.0, 8, 8) as u8
    }
    /// Bits 23:16: max batch descriptors in progress (DSA 2.0, unconfirmed bit positions).
    pub const fn max_batches_in_progress(self) -> u8 {
        bits(self.0, 16, 8) as u8
    }
}

/// OPCAP (0x40..0x5F): bit `n` set means opcode `n` is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OpCap(pub [u64; 4]);

impl OpCap {
    /// The raw qwords (qword 0 bit 0 = opcode 0).
    pub const fn raw(self) -> [u64; 4] {
        self.0
    }
    /// Is opcode `op` supported?
    pub const fn supports(self, op: u8) -> bool {
        bit(self.0[(op / 64) as usize], (op % 64) as u32)
    }
    /// The same bitmap with `op` marked supported.
    pub const fn with(mut self, op: u8) -> Self {
        self.0[(op / 64) as usize] |= 1 << (op % 64);
        self
    }
}

/// TABLE_OFFSET (0x60..0x6F): where the configuration tables live in BAR0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TableOffset(pub [u64; 2]);

impl TableOffset {
    /// The raw qwords.
    pub const fn raw(self) -> [u64; 2] {
        self.0
    }
    /// Build from the field values (in 0x100 units).
    pub const fn new(grpcfg: u16, wqcfg: u16, msix_perm: u16, ims: u16, perfmon: u16) -> Self {
        TableOffset([
            grpcfg as u64 | (wqcfg as u64) << 16 | (msix_perm as u64) << 32 | (ims as u64) << 48,
            perfmon as u64,
        ])
    }
    /// Bits 15:0: GRPCFG table (0x100 units).
    pub const fn grpcfg(self) -> u16 {
        bits(self.0[0], 0, 16) as u16
    }
    /// Bits 31:16: WQCFG table (0x100 units).
    pub const fn wqcfg(self) -> u16 {
        bits(self.0[0], 16, 16) as u16
    }
    /// Bits 47:32: MSI-X permission table (0x100 units).
    pub const fn msix_perm(self) -> u16 {
        bits(self.0[0], 32, 16) as u16
    }
    /// Bits 63:48: IMS table (0x100 units).
    pub const fn ims(self) -> u16 {
        bits(self.0[0], 48, 16) as u16
    }
    /// Bits 79:64: perfmon block (0x100 units).
    pub const fn perfmon(self) -> u16 {
        bits(self.0[1], 0, 16) as u16
    }
    /// Bits 95:80: inter-domain permission table (DSA 2.0, unconfirmed).
    pub const fn inter_domain(self) -> u16 {
        bits(self.0[1], 16, 16) as u16
    }
    /// BAR0 byte offset of the GRPCFG table.
    pub const fn grpcfg_offset(self) -> usize {
        self.grpcfg() as usize * super::TABLE_OFFSET_UNIT
    }
    /// BAR0 byte offset of the WQCFG table.
    pub const fn wqcfg_offset(self) -> usize {
        self.wqcfg() as usize * super::TABLE_OFFSET_UNIT
    }
    /// BAR0 byte offset of the MSI-X permission table.
    pub const fn msix_perm_offset(self) -> usize {
        self.msix_perm() as usize * super::TABLE_OFFSET_UNIT
    }
    /// BAR0 byte offset of the IMS table.
    pub const fn ims_offset(self) -> usize {
        self.ims() as usize * super::TABLE_OFFSET_UNIT
    }
    /// BAR0 byte offset of the perfmon block.
    pub const fn perfmon_offset(self) -> usize {
        self.perfmon() as usize * super::TABLE_OFFSET_UNIT
    }
}

/// GENCFG (0x80): general configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GenCfg(pub u32);

impl GenCfg {
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Bits 7:0: global read-buffer limit.
    pub const fn rdbuf_limit(self) -> u8 {
        bits(self.0 as u64, 0, 8) as u8
    }
    /// Bit 12: user-interrupt enable (completion interrupts for user-privilege descriptors).
    pub const fn user_int_en(self) -> bool {
        bit(self.0 as u64, 12)
    }
    /// Bit 13: event-log enable (DSA 2.0).
    pub const fn evl_en(self) -> bool {
        bit(self.0 as u64, 13)
    }
}

bitflags! {
    /// GENCTRL (0x88): interrupt enables for vector-0 causes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GenCtrl: u32 {
        /// Bit 0: software-error interrupt enable.
        const SOFTWARE_ERROR_INT = 1 << 0;
        /// Bit 1: halt-state interrupt enable.
        const HALT_INT = 1 << 1;
        /// Bit 2: event-log interrupt enable (DSA 2.0).
        const EVENT_LOG_INT = 1 << 2;
    }
}

bitflags! {
    /// INTCAUSE (0x98, RW1C): why vector 0 fired.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct IntCause: u32 {
        /// Bit 0: software error (SWERR valid).
        const SOFTWARE_ERROR = 1 << 0;
        /// Bit 1: administrative command completed (only when CMD bit 31 was set).
        const COMMAND_COMPLETED = 1 << 1;
        /// Bit 2: WQ occupancy below limit.
        const WQ_OCCUPANCY = 1 << 2;
        /// Bit 3: perfmon counter overflow.
        const PERFMON_OVERFLOW = 1 << 3;
        /// Bit 4: halt state entered.
        const HALT = 1 << 4;
        /// Bit 5: event log (DSA 2.0).
        const EVENT_LOG = 1 << 5;
        /// Bit 31: interrupt handles revoked.
        const HANDLES_REVOKED = 1 << 31;
    }
}

/// GENSTS bits 1:0: device state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DeviceState {
    /// 0: disabled.
    Disabled = 0,
    /// 1: enabled.
    Enabled = 1,
    /// 2: drain in progress.
    Drain = 2,
    /// 3: halted (see [`ResetType`]).
    Halted = 3,
}

/// GENSTS bits 3:2: the reset needed to leave the halt state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ResetType {
    /// 0: software reset (RESET_DEVICE command).
    Software = 0,
    /// 1: function-level reset.
    Flr = 1,
    /// 2: warm reset.
    Warm = 2,
    /// 3: cold reset.
    Cold = 3,
}

/// GENSTS (0x90): general status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GenSts(pub u32);

impl GenSts {
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Build from a state and reset type.
    pub const fn new(state: DeviceState, reset: ResetType) -> Self {
        GenSts(state as u32 | (reset as u32) << 2)
    }
    /// Bits 1:0: device state (every 2-bit value is named).
    pub const fn state(self) -> DeviceState {
        match self.0 & 3 {
            0 => DeviceState::Disabled,
            1 => DeviceState::Enabled,
            2 => DeviceState::Drain,
            _ => DeviceState::Halted,
        }
    }
    /// Bits 3:2: reset type required to leave HALT.
    pub const fn reset_type(self) -> ResetType {
        match (self.0 >> 2) & 3 {
            0 => ResetType::Software,
            1 => ResetType::Flr,
            2 => ResetType::Warm,
            _ => ResetType::Cold,
        }
    }
}

/// Administrative command codes (CMD bits 24:20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Command {
    /// 1: enable the device.
    EnableDevice = 1,
    /// 2: disable the device (drains outstanding work first).
    DisableDevice = 2,
    /// 3: drain all WQs.
    DrainAll = 3,
    /// 4: abort all WQs.
    AbortAll = 4,
    /// 5: reset the device to its defaults.
    ResetDevice = 5,
    /// 6: enable WQ (operand = WQ index).
    EnableWq = 6,
    /// 7: disable WQs (operand = [`wq_bitmap_operand`]).
    DisableWq = 7,
    /// 8: drain WQs (operand = [`wq_bitmap_operand`]).
    DrainWq = 8,
    /// 9: abort WQs (operand = [`wq_bitmap_operand`]).
    AbortWq = 9,
    /// 10: reset WQs (operand = [`wq_bitmap_operand`]).
    ResetWq = 10,
    /// 11: drain a PASID (operand = PASID).
    DrainPasid = 11,
    /// 12: abort a PASID (operand = PASID).
    AbortPasid = 12,
    /// 13: request an interrupt handle (operand = [`int_handle_operand`]); result = handle.
    RequestIntHandle = 13,
    /// 14: release an interrupt handle.
    ReleaseIntHandle = 14,
    /// 15: request inter-domain handle (DSA 2.0, unconfirmed).
    RequestInterDomainHandle = 15,
    /// 16: release inter-domain handle (DSA 2.0, unconfirmed).
    ReleaseInterDomainHandle = 16,
    /// 17: invalidate submitter bitmap cache (DSA 2.0, unconfirmed).
    InvalidateSubmitterBitmapCache = 17,
}

impl Command {
    /// Every command, in code order.
    pub const ALL: [Command; 17] = [
        Command::EnableDevice,
        Command::DisableDevice,
        Command::DrainAll,
        Command::AbortAll,
        Command::ResetDevice,
        Command::EnableWq,
        Command::DisableWq,
        Command::DrainWq,
        Command::AbortWq,
        Command::ResetWq,
        Command::DrainPasid,
        Command::AbortPasid,
        Command::RequestIntHandle,
        Command::ReleaseIntHandle,
        Command::RequestInterDomainHandle,
        Command::ReleaseInterDomainHandle,
        Command::InvalidateSubmitterBitmapCache,
    ];
    /// The command code.
    pub const fn code(self) -> u8 {
        self as u8
    }
    /// Decode a command code; unknown codes come back unchanged as the error.
    pub const fn from_raw(code: u8) -> Result<Self, u8> {
        if code >= 1 && code <= 17 {
            Ok(Self::ALL[code as usize - 1])
        } else {
            Err(code)
        }
    }
    /// Commands 15..17 are known only from third-party DSA 2.0 headers.
    pub const fn is_dsa2(self) -> bool {
        self as u8 >= 15
    }
}

impl TryFrom<u8> for Command {
    type Error = u8;
    fn try_from(code: u8) -> Result<Self, u8> {
        Self::from_raw(code)
    }
}

/// Operand of DISABLE/DRAIN/ABORT/RESET_WQ for one WQ: bits 15:0 a bitmap within a block of
/// 16 WQs, bits 19:16 the block.
pub const fn wq_bitmap_operand(wq: u16) -> u32 {
    (((wq / 16) as u32 & 0xf) << 16) | (1u32 << (wq % 16))
}

/// Operand of REQUEST_INT_HANDLE / RELEASE_INT_HANDLE: bits 15:0 index or handle, bit 16 IMS.
pub const fn int_handle_operand(index: u16, ims: bool) -> u32 {
    index as u32 | (ims as u32) << 16
}

/// CMD (0xA0): an administrative command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Cmd(pub u32);

impl Cmd {
    /// Bit 31: request completion interrupt (INTCAUSE bit 1 + vector 0).
    pub const INT_REQ: u32 = 1 << 31;
    /// Encode `command` with `operand` (only bits 19:0 kept), no completion interrupt.
    pub const fn new(command: Command, operand: u32) -> Self {
        Cmd((command as u32) << 20 | (operand & 0xf_ffff))
    }
    /// The same command with the completion interrupt requested.
    pub const fn with_interrupt(self) -> Self {
        Cmd(self.0 | Self::INT_REQ)
    }
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Bits 19:0: operand.
    pub const fn operand(self) -> u32 {
        self.0 & 0xf_ffff
    }
    /// Bits 24:20: raw command code.
    pub const fn code(self) -> u8 {
        ((self.0 >> 20) & 0x1f) as u8
    }
    /// The decoded command; unknown codes come back as the error.
    pub const fn command(self) -> Result<Command, u8> {
        Command::from_raw(self.code())
    }
    /// Bit 31: completion interrupt requested.
    pub const fn int_req(self) -> bool {
        self.0 & Self::INT_REQ != 0
    }
}

/// CMDSTS error codes (bits 7:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum CmdError {
    /// 0x00: success.
    Success = 0x00,
    /// 0x01: invalid or unsupported command.
    InvalidCommand = 0x01,
    /// 0x02: invalid WQ index.
    InvalidWqIndex = 0x02,
    /// 0x03: internal hardware error (also reported when halted).
    HardwareError = 0x03,
    /// 0x10: ENABLE_DEVICE: device already enabled.
    DeviceEnabled = 0x10,
    /// 0x11: ENABLE_DEVICE: configuration error.
    ConfigError = 0x11,
    /// 0x12: ENABLE_DEVICE: bus master not enabled.
    BusMasterDisabled = 0x12,
    /// 0x13: ENABLE_DEVICE: invalid PASID configuration.
    PasidConfig = 0x13,
    /// 0x14: ENABLE_DEVICE: WQ sizes out of range.
    WqSizeRange = 0x14,
    /// 0x15: ENABLE_DEVICE: group configuration error 1.
    GroupConfig1 = 0x15,
    /// 0x16: ENABLE_DEVICE: group configuration error 2.
    GroupConfig2 = 0x16,
    /// 0x17: ENABLE_DEVICE: group configuration error 3.
    GroupConfig3 = 0x17,
    /// 0x18: ENABLE_DEVICE: group configuration error 4.
    GroupConfig4 = 0x18,
    /// 0x20: ENABLE_WQ: device not enabled.
    WqDeviceNotEnabled = 0x20,
    /// 0x21: ENABLE_WQ: WQ already enabled.
    WqEnabled = 0x21,
    /// 0x22: ENABLE_WQ: WQ size error.
    WqSize = 0x22,
    /// 0x23: ENABLE_WQ: priority error.
    WqPriority = 0x23,
    /// 0x24: ENABLE_WQ: mode error.
    WqMode = 0x24,
    /// 0x25: ENABLE_WQ: block-on-fault error.
    WqBlockOnFault = 0x25,
    /// 0x26: ENABLE_WQ: PASID enable error.
    WqPasid = 0x26,
    /// 0x27: ENABLE_WQ: max batch size error.
    WqMaxBatch = 0x27,
    /// 0x28: ENABLE_WQ: max transfer size error.
    WqMaxXfer = 0x28,
    /// 0x31: DISABLE_DEVICE: device not enabled.
    DeviceNotEnabled = 0x31,
    /// 0x32: DISABLE/DRAIN/ABORT/RESET_WQ: WQ not enabled.
    WqNotEnabled = 0x32,
    /// 0x41: REQUEST_INT_HANDLE: invalid index.
    InvalidIntIndex = 0x41,
    /// 0x42: REQUEST_INT_HANDLE: no handle available.
    NoIntHandle = 0x42,
}

impl CmdError {
    /// Every named code.
    pub const ALL: [CmdError; 26] = [
        CmdError::Success,
        CmdError::InvalidCommand,
        CmdError::InvalidWqIndex,
        CmdError::HardwareError,
        CmdError::DeviceEnabled,
        CmdError::ConfigError,
        CmdError::BusMasterDisabled,
        CmdError::PasidConfig,
        CmdError::WqSizeRange,
        CmdError::GroupConfig1,
        CmdError::GroupConfig2,
        CmdError::GroupConfig3,
        CmdError::GroupConfig4,
        CmdError::WqDeviceNotEnabled,
        CmdError::WqEnabled,
        CmdError::WqSize,
        CmdError::WqPriority,
        CmdError::WqMode,
        CmdError::WqBlockOnFault,
        CmdError::WqPasid,
        CmdError::WqMaxBatch,
        CmdError::WqMaxXfer,
        CmdError::DeviceNotEnabled,
        CmdError::WqNotEnabled,
        CmdError::InvalidIntIndex,
        CmdError::NoIntHandle,
    ];
    /// Decode; unnamed codes come back unchanged as the error.
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
}

impl TryFrom<u8> for CmdError {
    type Error = u8;
    fn try_from(code: u8) -> Result<Self, u8> {
        Self::from_raw(code)
    }
}

/// CMDSTS (0xA8): command status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdSts(pub u32);

impl CmdSts {
    /// Bit 31: a command is in progress.
    pub const ACTIVE: u32 = 1 << 31;
    /// Build a finished status from an error code and a 16-bit result.
    pub const fn done(error: u8, result: u16) -> Self {
        CmdSts(error as u32 | (result as u32) << 8)
    }
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Bits 7:0: raw error code.
    pub const fn error_code(self) -> u8 {
        self.0 as u8
    }
    /// The decoded error code; unnamed codes come back as the error.
    pub const fn error(self) -> Result<CmdError, u8> {
        CmdError::from_raw(self.error_code())
    }
    /// Bits 23:8: result (e.g. an interrupt handle).
    pub const fn result(self) -> u16 {
        (self.0 >> 8) as u16
    }
    /// Bit 31: active.
    pub const fn active(self) -> bool {
        self.0 & Self::ACTIVE != 0
    }
}

/// CMDCAP (0xB0): bit `n` set means command `n` is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdCap(pub u32);

impl CmdCap {
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Is `command` supported?
    pub const fn supports(self, command: Command) -> bool {
        bit(self.0 as u64, command as u32)
    }
    /// Does the device require interrupt handles (REQUEST_INT_HANDLE, bit 13, supported)?
    pub const fn requires_int_handles(self) -> bool {
        self.supports(Command::RequestIntHandle)
    }
}

/// SWERR-only error codes (outside the completion-status code space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum SwErrOnlyCode {
    /// 0x51: PCI configuration error (e.g. bus master cleared while enabled).
    PciConfig = 0x51,
    /// 0x52: CMD written while a command was active.
    CommandWhileActive = 0x52,
}

/// The error field of SWERR: a completion status code or a SWERR-only code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SwErrCode {
    /// A code from the completion-status space.
    Status(super::CompletionStatus),
    /// A SWERR-only code.
    Only(SwErrOnlyCode),
}

impl SwErrCode {
    /// Decode; unnamed codes come back unchanged as the error.
    pub const fn from_raw(code: u8) -> Result<Self, u8> {
        match code {
            0x51 => Ok(SwErrCode::Only(SwErrOnlyCode::PciConfig)),
            0x52 => Ok(SwErrCode::Only(SwErrOnlyCode::CommandWhileActive)),
            c => match super::CompletionStatus::from_raw(c) {
                Ok(s) => Ok(SwErrCode::Status(s)),
                Err(e) => Err(e),
            },
        }
    }
    /// The raw code.
    pub const fn raw(self) -> u8 {
        match self {
            SwErrCode::Status(s) => s as u8,
            SwErrCode::Only(o) => o as u8,
        }
    }
}

/// SWERR (0xC0..0xDF): the latched software error, four qwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SwErr(pub [u64; 4]);

impl SwErr {
    /// Write this to qword 0 to acknowledge (RW1C bits 1:0, valid and overflow).
    pub const ACK: u64 = 0x3;
    /// The raw qwords.
    pub const fn raw(self) -> [u64; 4] {
        self.0
    }
    /// Q0 bit 0: valid.
    pub const fn valid(self) -> bool {
        bit(self.0[0], 0)
    }
    /// Q0 bit 1: overflow (another error happened while valid).
    pub const fn overflow(self) -> bool {
        bit(self.0[0], 1)
    }
    /// Q0 bit 2: descriptor valid (the descriptor fields are meaningful).
    pub const fn desc_valid(self) -> bool {
        bit(self.0[0], 2)
    }
    /// Q0 bit 3: WQ index valid.
    pub const fn wq_index_valid(self) -> bool {
        bit(self.0[0], 3)
    }
    /// Q0 bit 4: the error was in a batch member.
    pub const fn batch(self) -> bool {
        bit(self.0[0], 4)
    }
    /// Q0 bit 5: the fault was a write.
    pub const fn fault_write(self) -> bool {
        bit(self.0[0], 5)
    }
    /// Q0 bit 6: privilege of the faulting descriptor.
    pub const fn privileged(self) -> bool {
        bit(self.0[0], 6)
    }
    /// Q0 bits 15:8: raw error code.
    pub const fn error_code(self) -> u8 {
        bits(self.0[0], 8, 8) as u8
    }
    /// The decoded error code; unnamed codes come back as the error.
    pub const fn error(self) -> Result<SwErrCode, u8> {
        SwErrCode::from_raw(self.error_code())
    }
    /// Q0 bits 23:16: WQ index.
    pub const fn wq_index(self) -> u8 {
        bits(self.0[0], 16, 8) as u8
    }
    /// Q0 bits 39:32: operation (opcode).
    pub const fn operation(self) -> u8 {
        bits(self.0[0], 32, 8) as u8
    }
    /// Q0 bits 59:40: PASID.
    pub const fn pasid(self) -> u32 {
        bits(self.0[0], 40, 20) as u32
    }
    /// Q1 bits 15:0: index of the descriptor inside its batch.
    pub const fn batch_index(self) -> u16 {
        bits(self.0[1], 0, 16) as u16
    }
    /// Q1 bits 63:32: invalid-flags bitmap.
    pub const fn invalid_flags(self) -> u32 {
        bits(self.0[1], 32, 32) as u32
    }
    /// Q2: fault address.
    pub const fn fault_addr(self) -> u64 {
        self.0[2]
    }
    /// A new valid error with `code` (other fields zero).
    pub const fn new(code: u8) -> Self {
        SwErr([1 | (code as u64) << 8, 0, 0, 0])
    }
    /// Set the overflow bit.
    pub const fn with_overflow(mut self) -> Self {
        self.0[0] |= 1 << 1;
        self
    }
    /// Record the descriptor's opcode, PASID and privilege (sets descriptor-valid).
    pub const fn with_descriptor(mut self, opcode: u8, pasid: u32, privileged: bool) -> Self {
        self.0[0] |= 1 << 2;
        self.0[0] = set_bits(self.0[0], 32, 8, opcode as u64);
        self.0[0] = set_bits(self.0[0], 40, 20, pasid as u64);
        self.0[0] = set_bits(self.0[0], 6, 1, privileged as u64);
        self
    }
    /// Record the WQ index (sets WQ-index-valid).
    pub const fn with_wq(mut self, wq: u8) -> Self {
        self.0[0] |= 1 << 3;
        self.0[0] = set_bits(self.0[0], 16, 8, wq as u64);
        self
    }
    /// Mark as a batch-member error at `index`.
    pub const fn with_batch_index(mut self, index: u16) -> Self {
        self.0[0] |= 1 << 4;
        self.0[1] = set_bits(self.0[1], 0, 16, index as u64);
        self
    }
    /// Record a fault address and direction.
    pub const fn with_fault(mut self, addr: u64, write: bool) -> Self {
        self.0[0] = set_bits(self.0[0], 5, 1, write as u64);
        self.0[2] = addr;
        self
    }
    /// Record the invalid-flags bitmap.
    pub const fn with_invalid_flags(mut self, flags: u32) -> Self {
        self.0[1] = set_bits(self.0[1], 32, 32, flags as u64);
        self
    }
}

/// EVLCFG (0xE0..0xEF, DSA 2.0): event-log configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EvlCfg(pub [u64; 2]);

impl EvlCfg {
    /// The raw qwords.
    pub const fn raw(self) -> [u64; 2] {
        self.0
    }
    /// Q0 bit 0: PASID enable.
    pub const fn pasid_en(self) -> bool {
        bit(self.0[0], 0)
    }
    /// Q0 bit 1: privileged.
    pub const fn privileged(self) -> bool {
        bit(self.0[0], 1)
    }
    /// Q0 bits 63:12: log base address (4 KiB aligned).
    pub const fn base(self) -> u64 {
        self.0[0] & !0xfff
    }
    /// Q1 bits 15:0: size in entries (64..=65535).
    pub const fn size(self) -> u16 {
        bits(self.0[1], 0, 16) as u16
    }
    /// Q1 bits 35:16: PASID.
    pub const fn pasid(self) -> u32 {
        bits(self.0[1], 16, 20) as u32
    }
}

/// EVLSTATUS (0xF0, DSA 2.0): event-log head/tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EvlStatus(pub u64);

impl EvlStatus {
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bits 15:0: head (software writes).
    pub const fn head(self) -> u16 {
        bits(self.0, 0, 16) as u16
    }
    /// Bits 47:32: tail (device writes).
    pub const fn tail(self) -> u16 {
        bits(self.0, 32, 16) as u16
    }
    /// Bit 62: interrupt pending (RW1C through the upper dword).
    pub const fn int_pending(self) -> bool {
        bit(self.0, 62)
    }
}

/// Offsets inside the perfmon block (at [`TableOffset::perfmon_offset`]).
pub mod perfmon {
    /// PERFCAP, perfmon capabilities.
    pub const PERFCAP: usize = 0x00;
    /// PERFRST, reset.
    pub const PERFRST: usize = 0x10;
    /// PERFFRZ, freeze.
    pub const PERFFRZ: usize = 0x20;
    /// OVFSTATUS, overflow status.
    pub const OVFSTATUS: usize = 0x30;
    /// EVNTCAP, event capabilities.
    pub const EVNTCAP: usize = 0x80;
    /// CNTRCFG, counter configuration (8 bytes per counter).
    pub const CNTRCFG: usize = 0x100;
    /// CNTRDATA, counter data.
    pub const CNTRDATA: usize = 0x200;
    /// FLTCFG, filter configuration.
    pub const FLTCFG: usize = 0x300;
    /// CNTRCAP, counter capabilities.
    pub const CNTRCAP: usize = 0x800;
}

/// PERFCAP (perfmon block +0x00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PerfCap(pub u64);

impl PerfCap {
    /// Bits 5:0: number of counters.
    pub const fn num_counters(self) -> u8 {
        bits(self.0, 0, 6) as u8
    }
    /// Bits 15:8: counter width.
    pub const fn counter_width(self) -> u8 {
        bits(self.0, 8, 8) as u8
    }
    /// Bits 19:16: event categories.
    pub const fn event_categories(self) -> u8 {
        bits(self.0, 16, 4) as u8
    }
    /// Bits 35:20: global event categories.
    pub const fn global_event_categories(self) -> u16 {
        bits(self.0, 20, 16) as u16
    }
    /// Bits 43:36: filters.
    pub const fn filters(self) -> u8 {
        bits(self.0, 36, 8) as u8
    }
    /// Bit 52: per-counter capabilities.
    pub const fn counter_caps(self) -> bool {
        bit(self.0, 52)
    }
    /// Bit 53: writable counters.
    pub const fn writable_counters(self) -> bool {
        bit(self.0, 53)
    }
    /// Bit 54: counter freeze.
    pub const fn counter_freeze(self) -> bool {
        bit(self.0, 54)
    }
    /// Bit 55: overflow interrupt.
    pub const fn overflow_interrupt(self) -> bool {
        bit(self.0, 55)
    }
}

/// Stride of the MSI-X permission table: one 8-byte entry per vector (low 32 bits used).
pub const MSIX_PERM_STRIDE: usize = 8;

/// An MSI-X permission table entry (low 32 bits of each 8-byte slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsixPerm(pub u32);

impl MsixPerm {
    /// Build an entry.
    pub const fn new(ignore: bool, pasid_en: bool, pasid: u32) -> Self {
        MsixPerm((ignore as u32) << 2 | (pasid_en as u32) << 3 | (pasid & 0xf_ffff) << 12)
    }
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Bit 2: ignore.
    pub const fn ignore(self) -> bool {
        bit(self.0 as u64, 2)
    }
    /// Bit 3: PASID enable.
    pub const fn pasid_en(self) -> bool {
        bit(self.0 as u64, 3)
    }
    /// Bits 31:12: PASID.
    pub const fn pasid(self) -> u32 {
        self.0 >> 12
    }
}

/// Stride of the IMS table: 16-byte entries.
pub const IMS_ENTRY_SIZE: usize = 16;

/// One IMS entry (16 bytes: address low, address high, data, vector control).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct ImsEntry {
    /// +0: message address, low 32 bits.
    pub addr_lo: zerocopy::little_endian::U32,
    /// +4: message address, high 32 bits.
    pub addr_hi: zerocopy::little_endian::U32,
    /// +8: message data.
    pub data: zerocopy::little_endian::U32,
    /// +12: vector control (bit 0 = mask).
    pub ctrl: zerocopy::little_endian::U32,
}

impl ImsEntry {
    /// Vector control bit 0: masked.
    pub fn masked(&self) -> bool {
        self.ctrl.get() & 1 != 0
    }
}

const _: () = {
    assert!(core::mem::size_of::<ImsEntry>() == IMS_ENTRY_SIZE);
    assert!(core::mem::offset_of!(ImsEntry, ctrl) == 12);
};

impl core::fmt::Display for CmdSts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.active() {
            return write!(f, "CMDSTS {:#010x} (active)", self.0);
        }
        match self.error() {
            Ok(e) => write!(
                f,
                "CMDSTS {:#010x} ({e:?}, result {:#x})",
                self.0,
                self.result()
            ),
            Err(c) => write!(
                f,
                "CMDSTS {:#010x} (unknown error {c:#04x}, result {:#x})",
                self.0,
                self.result()
            ),
        }
    }
}

impl core::fmt::Display for SwErr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !self.valid() {
            return f.write_str("SWERR not valid");
        }
        match self.error() {
            Ok(SwErrCode::Status(s)) => write!(f, "SWERR {s:?} ({:#04x})", self.error_code())?,
            Ok(SwErrCode::Only(o)) => write!(f, "SWERR {o:?} ({:#04x})", self.error_code())?,
            Err(c) => write!(f, "SWERR code {c:#04x}")?,
        }
        if self.overflow() {
            f.write_str(", overflow")?;
        }
        if self.wq_index_valid() {
            write!(f, ", WQ {}", self.wq_index())?;
        }
        if self.desc_valid() {
            write!(
                f,
                ", opcode {:#04x}, PASID {:#x}, {}",
                self.operation(),
                self.pasid(),
                if self.privileged() {
                    "supervisor"
                } else {
                    "user"
                }
            )?;
        }
        if self.batch() {
            write!(f, ", batch member {}", self.batch_index())?;
        }
        if self.invalid_flags() != 0 {
            write!(f, ", invalid flags {:#x}", self.invalid_flags())?;
        }
        if self.fault_addr() != 0 {
            write!(
                f,
                ", {} fault at {:#x}",
                if self.fault_write() { "write" } else { "read" },
                self.fault_addr()
            )?;
        }
        Ok(())
    }
}
