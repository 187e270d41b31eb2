//! The WQCFG and GRPCFG configuration tables in BAR0.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{bit, bits, set_bits, TableOffset, WqCap};

/// BAR0 offset of dword `dword` of WQ `wq`'s WQCFG entry:
/// `TABLE_OFFSET.wqcfg × 0x100 + wq × stride + 4 × dword`.
pub const fn wqcfg_dword_offset(table: TableOffset, cap: WqCap, wq: usize, dword: usize) -> usize {
    table.wqcfg_offset() + wq * cap.wqcfg_stride() + 4 * dword
}

/// BAR0 offset of byte `byte` of group `group`'s GRPCFG entry:
/// `TABLE_OFFSET.grpcfg × 0x100 + group × 64 + byte`.
pub const fn grpcfg_byte_offset(table: TableOffset, group: usize, byte: usize) -> usize {
    table.grpcfg_offset() + group * GRPCFG_STRIDE + byte
}

/// WQ state, WQCFG dword 6 bits 31:30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum WqState {
    /// 0: disabled.
    Disabled = 0,
    /// 1: enabled.
    Enabled = 1,
    /// 2: busy / transition in progress (seen in SPDK and a third-party header).
    Busy = 2,
    /// 3: reserved value.
    Reserved = 3,
}

/// One WQCFG entry, as the 64-byte layout (devices with a 32-byte stride use dwords 0..7 only).
///
/// Byte `4*d` holds dword `d`. Fields are little-endian.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct WqConfig {
    /// Dword 0: bits 15:0 WQ size.
    pub size: U32,
    /// Dword 1: bits 15:0 WQ threshold.
    pub threshold: U32,
    /// Dword 2: mode, BOF, ATS/PRS disable, priority, PASID, PASID enable, privilege.
    pub mode: U32,
    /// Dword 3: max transfer shift, max batch shift.
    pub limits: U32,
    /// Dword 4: occupancy-interrupt handle and table select.
    pub occupancy_int: U32,
    /// Dword 5: occupancy limit and occupancy-interrupt enable.
    pub occupancy_limit: U32,
    /// Dword 6: occupancy, occupancy-interrupt occurred, mode support, WQ state (RO).
    pub status: U32,
    /// Dword 7: reserved.
    pub reserved: U32,
    /// Dwords 8..15: allowed-opcode bitmap (op-config).
    pub op_config: [U32; 8],
}

/// Byte offset of dword 6 (the status dword) inside a WQCFG entry.
pub const WQCFG_STATUS_DWORD: usize = 6;
/// Number of dwords in the 64-byte WQCFG layout.
pub const WQCFG_DWORDS: usize = 16;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<WqConfig>() == 64);
    assert!(offset_of!(WqConfig, size) == 0);
    assert!(offset_of!(WqConfig, threshold) == 4);
    assert!(offset_of!(WqConfig, mode) == 8);
    assert!(offset_of!(WqConfig, limits) == 12);
    assert!(offset_of!(WqConfig, occupancy_int) == 16);
    assert!(offset_of!(WqConfig, occupancy_limit) == 20);
    assert!(offset_of!(WqConfig, status) == 24);
    assert!(offset_of!(WqConfig, reserved) == 28);
    assert!(offset_of!(WqConfig, op_config) == 32);
};

macro_rules! wq_field {
    ($get:ident, $set:ident, $dw:ident, $lo:expr, $w:expr, $t:ty, $doc:literal) => {
        #[doc = concat!($doc, " (read).")]
        pub fn $get(&self) -> $t {
            bits(self.$dw.get() as u64, $lo, $w) as $t
        }
        #[doc = concat!($doc, " (builder; excess bits dropped).")]
        pub fn $set(mut self, v: $t) -> Self {
            self.$dw = U32::new(set_bits(self.$dw.get() as u64, $lo, $w, v as u64) as u32);
            self
        }
    };
}

macro_rules! wq_flag {
    ($get:ident, $set:ident, $dw:ident, $bit:expr, $doc:literal) => {
        #[doc = concat!($doc, " (read).")]
        pub fn $get(&self) -> bool {
            bit(self.$dw.get() as u64, $bit)
        }
        #[doc = concat!($doc, " (builder).")]
        pub fn $set(mut self, v: bool) -> Self {
            self.$dw = U32::new(set_bits(self.$dw.get() as u64, $bit, 1, v as u64) as u32);
            self
        }
    };
}

impl WqConfig {
    /// An all-zero entry (disabled, size 0).
    pub fn new() -> Self {
        Self::default()
    }
    /// Build from 16 dwords.
    pub fn from_dwords(d: [u32; WQCFG_DWORDS]) -> Self {
        let mut c = Self::default();
        for (i, v) in d.iter().enumerate() {
            c = c.with_dword(i, *v);
        }
        c
    }
    /// Dword `i` (0..16); out-of-range indices read 0.
    pub fn dword(&self, i: usize) -> u32 {
        let b = self.as_bytes();
        match b.get(i * 4..i * 4 + 4) {
            Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            None => 0,
        }
    }
    /// Replace dword `i` (0..16); out-of-range indices are ignored.
    pub fn with_dword(mut self, i: usize, v: u32) -> Self {
        if let Some(s) = self.as_mut_bytes().get_mut(i * 4..i * 4 + 4) {
            s.copy_from_slice(&v.to_le_bytes());
        }
        self
    }
    /// All 16 dwords.
    pub fn dwords(&self) -> [u32; WQCFG_DWORDS] {
        let mut d = [0; WQCFG_DWORDS];
        for (i, v) in d.iter_mut().enumerate() {
            *v = self.dword(i);
        }
        d
    }

    wq_field!(
        wq_size,
        with_wq_size,
        size,
        0,
        16,
        u16,
        "Dword 0 bits 15:0: WQ size in entries"
    );
    wq_field!(
        wq_threshold,
        with_wq_threshold,
        threshold,
        0,
        16,
        u16,
        "Dword 1 bits 15:0: WQ threshold (limited-portal fill limit)"
    );
    wq_flag!(
        dedicated,
        with_dedicated,
        mode,
        0,
        "Dword 2 bit 0: mode, 1 = dedicated, 0 = shared"
    );
    wq_flag!(
        block_on_fault,
        with_block_on_fault,
        mode,
        1,
        "Dword 2 bit 1: block-on-fault enable"
    );
    wq_flag!(
        ats_disable,
        with_ats_disable,
        mode,
        2,
        "Dword 2 bit 2: WQ ATS disable"
    );
    wq_flag!(
        prs_disable,
        with_prs_disable,
        mode,
        3,
        "Dword 2 bit 3: WQ PRS disable (DSA 2.0)"
    );
    wq_field!(
        priority,
        with_priority,
        mode,
        4,
        4,
        u8,
        "Dword 2 bits 7:4: priority (1..15)"
    );
    wq_field!(
        pasid,
        with_pasid,
        mode,
        8,
        20,
        u32,
        "Dword 2 bits 27:8: PASID (dedicated WQ)"
    );
    wq_flag!(
        pasid_en,
        with_pasid_en,
        mode,
        28,
        "Dword 2 bit 28: PASID enable"
    );
    wq_flag!(
        privileged,
        with_privileged,
        mode,
        29,
        "Dword 2 bit 29: privileged (dedicated WQ)"
    );
    wq_field!(
        max_xfer_shift,
        with_max_xfer_shift,
        limits,
        0,
        5,
        u8,
        "Dword 3 bits 4:0: max transfer shift"
    );
    wq_field!(
        max_batch_shift,
        with_max_batch_shift,
        limits,
        5,
        4,
        u8,
        "Dword 3 bits 8:5: max batch shift"
    );
    wq_field!(
        occupancy_int_handle,
        with_occupancy_int_handle,
        occupancy_int,
        0,
        16,
        u16,
        "Dword 4 bits 15:0: occupancy-interrupt handle"
    );
    wq_flag!(
        occupancy_int_ims,
        with_occupancy_int_ims,
        occupancy_int,
        16,
        "Dword 4 bit 16: occupancy-interrupt table select (1 = IMS)"
    );
    wq_field!(
        occupancy_limit_value,
        with_occupancy_limit_value,
        occupancy_limit,
        0,
        16,
        u16,
        "Dword 5 bits 15:0: occupancy limit"
    );
    wq_flag!(
        occupancy_int_en,
        with_occupancy_int_en,
        occupancy_limit,
        16,
        "Dword 5 bit 16: occupancy-interrupt enable"
    );
    wq_field!(
        occupancy,
        with_occupancy,
        status,
        0,
        16,
        u16,
        "Dword 6 bits 15:0: occupancy (RO)"
    );
    wq_flag!(
        occupancy_int_occurred,
        with_occupancy_int_occurred,
        status,
        16,
        "Dword 6 bit 16: occupancy interrupt occurred"
    );
    wq_flag!(
        mode_support,
        with_mode_support,
        status,
        29,
        "Dword 6 bit 29: mode support (RO)"
    );

    /// Dword 6 bits 31:30: WQ state (RO).
    pub fn state(&self) -> WqState {
        match self.status.get() >> 30 {
            0 => WqState::Disabled,
            1 => WqState::Enabled,
            2 => WqState::Busy,
            _ => WqState::Reserved,
        }
    }
    /// Set the WQ state (for models).
    pub fn with_state(mut self, s: WqState) -> Self {
        self.status = U32::new(set_bits(self.status.get() as u64, 30, 2, s as u64) as u32);
        self
    }
    /// Is opcode `op` allowed by the op-config bitmap?
    pub fn op_allowed(&self, op: u8) -> bool {
        bit(
            self.op_config[(op / 32) as usize].get() as u64,
            (op % 32) as u32,
        )
    }
    /// Allow opcode `op` in the op-config bitmap.
    pub fn with_op_allowed(mut self, op: u8) -> Self {
        let i = (op / 32) as usize;
        self.op_config[i] = U32::new(self.op_config[i].get() | 1 << (op % 32));
        self
    }
}

/// Stride of a GRPCFG entry in bytes.
pub const GRPCFG_STRIDE: usize = 64;
/// Byte offset of the WQ bitmap inside a GRPCFG entry.
pub const GRPCFG_WQS: usize = 0;
/// Byte offset of the engine bitmap inside a GRPCFG entry.
pub const GRPCFG_ENGINES: usize = 32;
/// Byte offset of the flags inside a GRPCFG entry.
pub const GRPCFG_FLAGS: usize = 40;

/// GRPCFG flags (64-bit at +40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GroupFlags(pub u64);

impl GroupFlags {
    /// TC-A = 1, TC-B = 1: the default for VERSION ≤ 0x200.
    pub const DEFAULT_V1: GroupFlags = GroupFlags(0x9);
    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// Bits 2:0: traffic class A.
    pub const fn tc_a(self) -> u8 {
        bits(self.0, 0, 3) as u8
    }
    /// Bits 5:3: traffic class B.
    pub const fn tc_b(self) -> u8 {
        bits(self.0, 3, 3) as u8
    }
    /// Bit 7: use the global read-buffer limit.
    pub const fn use_rdbuf_limit(self) -> bool {
        bit(self.0, 7)
    }
    /// Bits 15:8: read buffers reserved.
    pub const fn rdbufs_reserved(self) -> u8 {
        bits(self.0, 8, 8) as u8
    }
    /// Bits 27:20: read buffers allowed.
    pub const fn rdbufs_allowed(self) -> u8 {
        bits(self.0, 20, 8) as u8
    }
    /// Bits 33:32: descriptor progress limit (0 none, 1 ½, 2 ¼, 3 ⅛).
    pub const fn desc_progress_limit(self) -> u8 {
        bits(self.0, 32, 2) as u8
    }
    /// Bits 37:36: batch progress limit.
    pub const fn batch_progress_limit(self) -> u8 {
        bits(self.0, 36, 2) as u8
    }
    /// Set TC-A.
    pub const fn with_tc_a(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 0, 3, v as u64))
    }
    /// Set TC-B.
    pub const fn with_tc_b(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 3, 3, v as u64))
    }
    /// Set the use-global-limit bit.
    pub const fn with_use_rdbuf_limit(self, v: bool) -> Self {
        GroupFlags(set_bits(self.0, 7, 1, v as u64))
    }
    /// Set read buffers reserved.
    pub const fn with_rdbufs_reserved(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 8, 8, v as u64))
    }
    /// Set read buffers allowed.
    pub const fn with_rdbufs_allowed(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 20, 8, v as u64))
    }
    /// Set the descriptor progress limit.
    pub const fn with_desc_progress_limit(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 32, 2, v as u64))
    }
    /// Set the batch progress limit.
    pub const fn with_batch_progress_limit(self, v: u8) -> Self {
        GroupFlags(set_bits(self.0, 36, 2, v as u64))
    }
}

/// One GRPCFG entry (64 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GroupConfig {
    /// Bytes 0..31: bitmap of WQs in the group (WQ n → qword n/64, bit n%64).
    pub wqs: [U64; 4],
    /// Bytes 32..39: bitmap of engines in the group.
    pub engines: U64,
    /// Bytes 40..47: [`GroupFlags`].
    pub flags: U64,
    /// Bytes 48..63: reserved.
    pub reserved: [U64; 2],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<GroupConfig>() == GRPCFG_STRIDE);
    assert!(offset_of!(GroupConfig, wqs) == GRPCFG_WQS);
    assert!(offset_of!(GroupConfig, engines) == GRPCFG_ENGINES);
    assert!(offset_of!(GroupConfig, flags) == GRPCFG_FLAGS);
    assert!(offset_of!(GroupConfig, reserved) == 48);
};

impl GroupConfig {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }
    /// Is WQ `wq` in the group? (`wq` < 256.)
    pub fn has_wq(&self, wq: u8) -> bool {
        bit(self.wqs[(wq / 64) as usize].get(), (wq % 64) as u32)
    }
    /// Add WQ `wq`.
    pub fn with_wq(mut self, wq: u8) -> Self {
        let i = (wq / 64) as usize;
        self.wqs[i] = U64::new(self.wqs[i].get() | 1 << (wq % 64));
        self
    }
    /// Is engine `e` (< 64) in the group?
    pub fn has_engine(&self, e: u8) -> bool {
        e < 64 && bit(self.engines.get(), e as u32)
    }
    /// Add engine `e` (< 64; larger values are ignored).
    pub fn with_engine(mut self, e: u8) -> Self {
        if e < 64 {
            self.engines = U64::new(self.engines.get() | 1 << e);
        }
        self
    }
    /// The flags.
    pub fn group_flags(&self) -> GroupFlags {
        GroupFlags(self.flags.get())
    }
    /// Set the flags.
    pub fn with_flags(mut self, f: GroupFlags) -> Self {
        self.flags = U64::new(f.0);
        self
    }
}
