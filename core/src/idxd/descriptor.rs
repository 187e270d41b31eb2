//! The 64-byte work descriptor: opcodes, flags, layout and builders.
//!
//! ```
//! use passthru_core::idxd::{MemMove, Opcode, DescriptorFlags};
//! let d = MemMove::new(0x1000, 0x2000, 64).completion(0x3000).interrupt(1).build();
//! assert_eq!(d.opcode(), Ok(Opcode::MemMove));
//! assert!(d.flags().contains(DescriptorFlags::REQUEST_INTERRUPT));
//! assert_eq!(d.as_bytes()[7], 0x03);
//! ```

use bitflags::bitflags;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// DSA operation codes (descriptor byte 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Opcode {
    /// 0x00: no operation.
    Noop = 0x00,
    /// 0x01: batch (descriptor list).
    Batch = 0x01,
    /// 0x02: drain.
    Drain = 0x02,
    /// 0x03: memory move (copy).
    MemMove = 0x03,
    /// 0x04: memory fill.
    Fill = 0x04,
    /// 0x05: compare two buffers.
    Compare = 0x05,
    /// 0x06: compare a buffer with a pattern (COMPVAL).
    ComparePattern = 0x06,
    /// 0x07: create delta record.
    CreateDelta = 0x07,
    /// 0x08: apply delta record.
    ApplyDelta = 0x08,
    /// 0x09: copy to two destinations.
    Dualcast = 0x09,
    /// 0x0A: translation fetch (DSA 2.0).
    TranslationFetch = 0x0a,
    /// 0x10: CRC generate (CRC-32C).
    CrcGen = 0x10,
    /// 0x11: copy with CRC.
    CopyCrc = 0x11,
    /// 0x12: DIF check.
    DifCheck = 0x12,
    /// 0x13: DIF insert.
    DifInsert = 0x13,
    /// 0x14: DIF strip.
    DifStrip = 0x14,
    /// 0x15: DIF update.
    DifUpdate = 0x15,
    /// 0x17: DIX generate (DSA 2.0).
    DixGenerate = 0x17,
    /// 0x20: cache flush.
    CacheFlush = 0x20,
}

impl Opcode {
    /// Every DSA opcode.
    pub const ALL: [Opcode; 19] = [
        Opcode::Noop,
        Opcode::Batch,
        Opcode::Drain,
        Opcode::MemMove,
        Opcode::Fill,
        Opcode::Compare,
        Opcode::ComparePattern,
        Opcode::CreateDelta,
        Opcode::ApplyDelta,
        Opcode::Dualcast,
        Opcode::TranslationFetch,
        Opcode::CrcGen,
        Opcode::CopyCrc,
        Opcode::DifCheck,
        Opcode::DifInsert,
        Opcode::DifStrip,
        Opcode::DifUpdate,
        Opcode::DixGenerate,
        Opcode::CacheFlush,
    ];
    /// Decode; unknown opcodes come back unchanged as the error.
    pub const fn from_raw(op: u8) -> Result<Self, u8> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == op {
                return Ok(Self::ALL[i]);
            }
            i += 1;
        }
        Err(op)
    }
    /// Opcodes introduced with DSA 2.0.
    pub const fn is_dsa2(self) -> bool {
        matches!(self, Opcode::TranslationFetch | Opcode::DixGenerate)
    }
}

impl TryFrom<u8> for Opcode {
    type Error = u8;
    fn try_from(op: u8) -> Result<Self, u8> {
        Self::from_raw(op)
    }
}

/// IAA (In-memory Analytics Accelerator) operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum IaaOpcode {
    /// 0x00: no operation.
    Noop = 0x00,
    /// 0x02: drain.
    Drain = 0x02,
    /// 0x03: memory move.
    MemMove = 0x03,
    /// 0x42: decompress.
    Decompress = 0x42,
    /// 0x43: compress.
    Compress = 0x43,
    /// 0x44: CRC64.
    Crc64 = 0x44,
    /// 0x48: zero-decompress 32.
    ZeroDecompress32 = 0x48,
    /// 0x49: zero-decompress 16.
    ZeroDecompress16 = 0x49,
    /// 0x4C: zero-compress 32.
    ZeroCompress32 = 0x4c,
    /// 0x4D: zero-compress 16.
    ZeroCompress16 = 0x4d,
    /// 0x50: scan.
    Scan = 0x50,
    /// 0x51: set membership.
    SetMembership = 0x51,
    /// 0x52: extract.
    Extract = 0x52,
    /// 0x53: select.
    Select = 0x53,
    /// 0x54: RLE burst.
    RleBurst = 0x54,
    /// 0x55: find unique.
    FindUnique = 0x55,
    /// 0x56: expand.
    Expand = 0x56,
}

impl IaaOpcode {
    /// Every IAA opcode.
    pub const ALL: [IaaOpcode; 17] = [
        IaaOpcode::Noop,
        IaaOpcode::Drain,
        IaaOpcode::MemMove,
        IaaOpcode::Decompress,
        IaaOpcode::Compress,
        IaaOpcode::Crc64,
        IaaOpcode::ZeroDecompress32,
        IaaOpcode::ZeroDecompress16,
        IaaOpcode::ZeroCompress32,
        IaaOpcode::ZeroCompress16,
        IaaOpcode::Scan,
        IaaOpcode::SetMembership,
        IaaOpcode::Extract,
        IaaOpcode::Select,
        IaaOpcode::RleBurst,
        IaaOpcode::FindUnique,
        IaaOpcode::Expand,
    ];
    /// Decode; unknown opcodes come back unchanged as the error.
    pub const fn from_raw(op: u8) -> Result<Self, u8> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == op {
                return Ok(Self::ALL[i]);
            }
            i += 1;
        }
        Err(op)
    }
}

impl TryFrom<u8> for IaaOpcode {
    type Error = u8;
    fn try_from(op: u8) -> Result<Self, u8> {
        Self::from_raw(op)
    }
}

bitflags! {
    /// Descriptor flags (bits 23:0 of dword 1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct DescriptorFlags: u32 {
        /// Bit 0: fence (within a batch, wait for earlier members).
        const FENCE = 1 << 0;
        /// Bit 1: block on fault (needs WQCFG block-on-fault).
        const BLOCK_ON_FAULT = 1 << 1;
        /// Bit 2: completion record address valid (CRAV).
        const COMPLETION_ADDR_VALID = 1 << 2;
        /// Bit 3: request completion record (RCR).
        const REQUEST_COMPLETION = 1 << 3;
        /// Bit 4: request completion interrupt (RCI).
        const REQUEST_INTERRUPT = 1 << 4;
        /// Bit 5: completion-record steering-tag selector (CRSTS).
        const CR_STEERING_TAG = 1 << 5;
        /// Bit 7: check result (compare operations).
        const CHECK_RESULT = 1 << 7;
        /// Bit 8: cache control (destination writes allocate in cache; polarity unconfirmed).
        const CACHE_CONTROL = 1 << 8;
        /// Bit 9: address 1 traffic-class selector.
        const ADDR1_TC = 1 << 9;
        /// Bit 10: address 2 traffic-class selector.
        const ADDR2_TC = 1 << 10;
        /// Bit 11: address 3 traffic-class selector.
        const ADDR3_TC = 1 << 11;
        /// Bit 12: completion-record traffic-class selector.
        const CR_TC = 1 << 12;
        /// Bit 13: strict ordering.
        const STRICT_ORDERING = 1 << 13;
        /// Bit 14: destination readback.
        const DEST_READBACK = 1 << 14;
        /// Bit 15: destination steering-tag selector.
        const DEST_STEERING_TAG = 1 << 15;
        /// Bit 16: CRC operations read the seed from memory (IAA: read src2 as AECS).
        const READ_CRC_SEED = 1 << 16;
        /// Bit 17 (IAA): read src2 second.
        const IAA_SRC2_SECOND = 1 << 17;
        /// Bit 18 (IAA): write AECS (compress).
        const IAA_WRITE_AECS = 1 << 18;
        /// Bit 19 (IAA): AECS on overflow.
        const IAA_AECS_OVERFLOW = 1 << 19;
        /// Bit 20 (IAA): src2 steering tag.
        const IAA_SRC2_STEERING_TAG = 1 << 20;
        /// Bit 21 (IAA): CRC per RFC 3720.
        const IAA_CRC_RFC3720 = 1 << 21;
    }
}

/// The 64-byte work descriptor. Fields are little-endian; see the accessors for meanings.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Descriptor {
    /// Bytes 0..3: PASID (19:0) and privilege (31).
    pub pasid_priv: U32,
    /// Bytes 4..7: flags (23:0) and opcode (31:24).
    pub flags_opcode: U32,
    /// Bytes 8..15: completion record address.
    pub completion_addr: U64,
    /// Bytes 16..23: source / pattern / descriptor list / readback address 1.
    pub src: U64,
    /// Bytes 24..31: destination / source 2 / pattern / readback address 2.
    pub dst: U64,
    /// Bytes 32..35: transfer size / descriptor count.
    pub xfer_size: U32,
    /// Bytes 36..37: interrupt handle.
    pub int_handle: U16,
    /// Bytes 38..39: reserved (IAA compression flags).
    pub reserved: U16,
    /// Bytes 40..63: operation-specific.
    pub op_specific: [u8; 24],
}

/// Size of a descriptor in bytes.
pub const DESCRIPTOR_SIZE: usize = 64;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Descriptor>() == DESCRIPTOR_SIZE);
    assert!(offset_of!(Descriptor, pasid_priv) == 0);
    assert!(offset_of!(Descriptor, flags_opcode) == 4);
    assert!(offset_of!(Descriptor, completion_addr) == 8);
    assert!(offset_of!(Descriptor, src) == 16);
    assert!(offset_of!(Descriptor, dst) == 24);
    assert!(offset_of!(Descriptor, xfer_size) == 32);
    assert!(offset_of!(Descriptor, int_handle) == 36);
    assert!(offset_of!(Descriptor, reserved) == 38);
    assert!(offset_of!(Descriptor, op_specific) == 40);
};

/// Offsets in the operation-specific area, relative to descriptor byte 0.
pub mod op_offset {
    /// Compare / compare-pattern: expected result byte.
    pub const EXPECTED_RESULT: usize = 40;
    /// Create delta: delta-record address (8 bytes).
    pub const DELTA_ADDR: usize = 40;
    /// Create delta: max delta-record size (4 bytes).
    pub const DELTA_MAX_SIZE: usize = 48;
    /// Create delta: expected-result mask (1 byte).
    pub const DELTA_EXPECTED_MASK: usize = 56;
    /// Apply delta: delta-record size (4 bytes).
    pub const DELTA_SIZE: usize = 40;
    /// Dualcast: second destination (8 bytes).
    pub const DEST2: usize = 40;
    /// CRC generate / copy with CRC: seed (4 bytes).
    pub const CRC_SEED: usize = 40;
    /// CRC generate / copy with CRC: seed address (8 bytes, with READ_CRC_SEED).
    pub const CRC_SEED_ADDR: usize = 48;
    /// Fill (DSA 2.0 16-byte pattern): upper 8 pattern bytes.
    pub const FILL_PATTERN_HI: usize = 40;
    /// Translation fetch (DSA 2.0): region stride (4 bytes).
    pub const REGION_STRIDE: usize = 48;
    /// DIF check/strip/update: source DIF flags.
    pub const SRC_DIF_FLAGS: usize = 40;
    /// DIF insert / DIX generate / DIF update: destination DIF flags.
    pub const DST_DIF_FLAGS: usize = 41;
    /// DIF ops: DIF flags byte.
    pub const DIF_FLAGS: usize = 42;
    /// DIF check/strip: ref-tag seed (4 bytes); DIF update: source ref tag.
    pub const CHK_REF_TAG_SEED: usize = 48;
    /// DIF check/strip: app-tag mask (2 bytes); DIF update: source app mask.
    pub const CHK_APP_TAG_MASK: usize = 52;
    /// DIF check/strip: app-tag seed (2 bytes); DIF update: source app tag.
    pub const CHK_APP_TAG_SEED: usize = 54;
    /// DIF insert / DIX generate: ref-tag seed (4 bytes); DIF update: destination ref tag.
    pub const INS_REF_TAG_SEED: usize = 56;
    /// DIF insert / DIX generate: app-tag mask (2 bytes); DIF update: destination app mask.
    pub const INS_APP_TAG_MASK: usize = 60;
    /// DIF insert / DIX generate: app-tag seed (2 bytes); DIF update: destination app tag.
    pub const INS_APP_TAG_SEED: usize = 62;
}

/// DIF block sizes (low 2 bits of the DIF flags byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum DifBlockSize {
    /// 0: 512 bytes.
    B512 = 0,
    /// 1: 520 bytes.
    B520 = 1,
    /// 2: 4096 bytes.
    B4096 = 2,
    /// 3: 4104 bytes.
    B4104 = 3,
}

impl DifBlockSize {
    /// Decode the low 2 bits of a DIF flags byte.
    pub const fn from_flags(f: u8) -> Self {
        match f & 3 {
            0 => Self::B512,
            1 => Self::B520,
            2 => Self::B4096,
            _ => Self::B4104,
        }
    }
    /// The block size in bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            Self::B512 => 512,
            Self::B520 => 520,
            Self::B4096 => 4096,
            Self::B4104 => 4104,
        }
    }
}

/// DIF flags byte, bit 2: invert the CRC seed.
pub const DIF_INVERT_CRC_SEED: u8 = 1 << 2;
/// DIF flags byte, bit 3: invert the CRC result.
pub const DIF_INVERT_CRC_RESULT: u8 = 1 << 3;

bitflags! {
    /// Source DIF flags byte (DIF check / strip / update).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SrcDifFlags: u8 {
        /// Bit 0: enable all-F detect error.
        const ALL_F_DETECT_ERROR = 1 << 0;
        /// Bit 1: all-F detect.
        const ALL_F_DETECT = 1 << 1;
        /// Bit 2: app-tag all-F detect.
        const APP_TAG_ALL_F_DETECT = 1 << 2;
        /// Bit 3: app + ref tag all-F detect.
        const APP_AND_REF_ALL_F_DETECT = 1 << 3;
        /// Bit 4: app-tag type.
        const APP_TAG_TYPE = 1 << 4;
        /// Bit 5: guard check disable.
        const GUARD_CHECK_DISABLE = 1 << 5;
        /// Bit 6: ref-tag check disable.
        const REF_TAG_CHECK_DISABLE = 1 << 6;
        /// Bit 7: ref-tag type.
        const REF_TAG_TYPE = 1 << 7;
    }
}

impl Descriptor {
    /// Privilege bit in dword 0.
    pub const PRIV: u32 = 1 << 31;

    /// The 64 bytes as submitted to a portal.
    pub fn as_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(IntoBytes::as_bytes(self));
        out
    }
    /// Decode 64 bytes (every bit pattern is a valid `Descriptor`).
    pub fn from_bytes(b: &[u8; 64]) -> Self {
        let mut d = Self::default();
        d.as_mut_bytes().copy_from_slice(b);
        d
    }
    /// Bits 19:0 of dword 0: PASID.
    pub fn pasid(&self) -> u32 {
        self.pasid_priv.get() & 0xf_ffff
    }
    /// Bit 31 of dword 0: privileged (supervisor).
    pub fn privileged(&self) -> bool {
        self.pasid_priv.get() & Self::PRIV != 0
    }
    /// Bits 30:20 of dword 0 (reserved, must be 0).
    pub fn reserved_dword0(&self) -> u32 {
        (self.pasid_priv.get() >> 20) & 0x7ff
    }
    /// Raw opcode byte.
    pub fn opcode_raw(&self) -> u8 {
        (self.flags_opcode.get() >> 24) as u8
    }
    /// Decoded opcode; unknown opcodes come back as the error.
    pub fn opcode(&self) -> Result<Opcode, u8> {
        Opcode::from_raw(self.opcode_raw())
    }
    /// Raw flag bits 23:0.
    pub fn flags_raw(&self) -> u32 {
        self.flags_opcode.get() & 0xff_ffff
    }
    /// Flags (unknown bits retained).
    pub fn flags(&self) -> DescriptorFlags {
        DescriptorFlags::from_bits_retain(self.flags_raw())
    }
    /// Operation-specific byte at absolute descriptor offset `off` (40..64), else 0.
    pub fn op_byte(&self, off: usize) -> u8 {
        off.checked_sub(40)
            .and_then(|i| self.op_specific.get(i))
            .copied()
            .unwrap_or(0)
    }
    /// Little-endian u32 at absolute descriptor offset `off` in the operation-specific area.
    pub fn op_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.op_byte(off),
            self.op_byte(off + 1),
            self.op_byte(off + 2),
            self.op_byte(off + 3),
        ])
    }
    /// Little-endian u64 at absolute descriptor offset `off` in the operation-specific area.
    pub fn op_u64(&self, off: usize) -> u64 {
        self.op_u32(off) as u64 | (self.op_u32(off + 4) as u64) << 32
    }
    fn set_op(&mut self, off: usize, bytes: &[u8]) {
        if let Some(dst) = off
            .checked_sub(40)
            .and_then(|i| self.op_specific.get_mut(i..i + bytes.len()))
        {
            dst.copy_from_slice(bytes);
        }
    }
    fn set_flags(&mut self, f: DescriptorFlags) {
        let v = self.flags_opcode.get() | (f.bits() & 0xff_ffff);
        self.flags_opcode = U32::new(v);
    }
    fn clear_flags(&mut self, f: DescriptorFlags) {
        let v = self.flags_opcode.get() & !(f.bits() & 0xff_ffff);
        self.flags_opcode = U32::new(v);
    }
    fn with_opcode(op: Opcode) -> Self {
        Self {
            flags_opcode: U32::new((op as u32) << 24),
            pasid_priv: U32::new(Self::PRIV),
            ..Self::default()
        }
    }
}

macro_rules! common_builder_methods {
    () => {
        /// Write a completion record at `addr` (32-byte aligned) always: sets CRAV and RCR.
        pub fn completion(mut self, addr: u64) -> Self {
            self.0.completion_addr = U64::new(addr);
            self.0.set_flags(
                DescriptorFlags::COMPLETION_ADDR_VALID | DescriptorFlags::REQUEST_COMPLETION,
            );
            self
        }
        /// Write a completion record at `addr` only if the operation does not succeed: sets
        /// CRAV, clears RCR.
        pub fn completion_on_error(mut self, addr: u64) -> Self {
            self.0.completion_addr = U64::new(addr);
            self.0.set_flags(DescriptorFlags::COMPLETION_ADDR_VALID);
            self.0.clear_flags(DescriptorFlags::REQUEST_COMPLETION);
            self
        }
        /// Raise a completion interrupt with `handle` (MSI-X index when the device does not
        /// use handles): sets RCI.
        pub fn interrupt(mut self, handle: u16) -> Self {
            self.0.int_handle = U16::new(handle);
            self.0.set_flags(DescriptorFlags::REQUEST_INTERRUPT);
            self
        }
        /// Set the fence flag.
        pub fn fence(mut self) -> Self {
            self.0.set_flags(DescriptorFlags::FENCE);
            self
        }
        /// Set additional raw flags (bits above 23 are dropped).
        pub fn flags(mut self, f: DescriptorFlags) -> Self {
            self.0.set_flags(f);
            self
        }
        /// PASID and privilege (default: PASID 0, privileged, as the upstream selftest).
        pub fn pasid(mut self, pasid: u32, privileged: bool) -> Self {
            self.0.pasid_priv =
                U32::new((pasid & 0xf_ffff) | if privileged { Descriptor::PRIV } else { 0 });
            self
        }
        /// The finished descriptor.
        pub fn build(self) -> Descriptor {
            self.0
        }
    };
}

macro_rules! builder {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(Descriptor);
        impl $name {
            common_builder_methods!();
        }
    };
}

builder!(
    /// NOOP (0x00): completes without touching memory; useful to fence or to interrupt.
    Noop
);
builder!(
    /// BATCH (0x01): process `count` descriptors at `list` (64-byte aligned, 2 ≤ count).
    Batch
);
builder!(
    /// DRAIN (0x02): completes after all earlier descriptors of the WQ.
    Drain
);
builder!(
    /// MEMMOVE (0x03): copy `len` bytes from `src` to `dst`.
    MemMove
);
builder!(
    /// FILL (0x04): write an 8-byte `pattern` repeatedly over `len` bytes at `dst`.
    Fill
);
builder!(
    /// COMPARE (0x05): compare `len` bytes at `src1` and `src2`.
    Compare
);
builder!(
    /// COMPARE PATTERN (0x06): compare `len` bytes at `src` with an 8-byte `pattern`.
    ComparePattern
);
builder!(
    /// DUALCAST (0x09): copy `len` bytes from `src` to `dst1` and `dst2` (equal bits 11:0).
    Dualcast
);
builder!(
    /// CRC GENERATE (0x10): CRC-32C of `len` bytes at `src`.
    CrcGen
);
builder!(
    /// COPY WITH CRC (0x11): copy `len` bytes from `src` to `dst` and compute their CRC-32C.
    CopyCrc
);
builder!(
    /// CACHE FLUSH (0x20): flush `len` bytes at `dst` from the CPU caches.
    CacheFlush
);

impl Noop {
    /// A NOOP descriptor.
    pub fn new() -> Self {
        Self(Descriptor::with_opcode(Opcode::Noop))
    }
}
impl Default for Noop {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// A BATCH of `count` descriptors at IOVA `list`.
    pub fn new(list: u64, count: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::Batch);
        d.src = U64::new(list);
        d.xfer_size = U32::new(count);
        Self(d)
    }
}

impl Drain {
    /// A DRAIN descriptor.
    pub fn new() -> Self {
        Self(Descriptor::with_opcode(Opcode::Drain))
    }
    /// Readback addresses 1 and 2 (only meaningful with drain-readback support).
    pub fn readback(mut self, addr1: u64, addr2: u64) -> Self {
        self.0.src = U64::new(addr1);
        self.0.dst = U64::new(addr2);
        self
    }
}
impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl MemMove {
    /// Copy `len` bytes from `src` to `dst`.
    pub fn new(src: u64, dst: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::MemMove);
        d.src = U64::new(src);
        d.dst = U64::new(dst);
        d.xfer_size = U32::new(len);
        Self(d)
    }
    /// Set the cache-control flag (destination writes allocate in cache).
    pub fn cache_control(mut self) -> Self {
        self.0.set_flags(DescriptorFlags::CACHE_CONTROL);
        self
    }
}

impl Fill {
    /// Fill `len` bytes at `dst` with the 8-byte little-endian `pattern`.
    pub fn new(pattern: u64, dst: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::Fill);
        d.src = U64::new(pattern);
        d.dst = U64::new(dst);
        d.xfer_size = U32::new(len);
        Self(d)
    }
}

impl Compare {
    /// Compare `len` bytes at `src1` and `src2`.
    pub fn new(src1: u64, src2: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::Compare);
        d.src = U64::new(src1);
        d.dst = U64::new(src2);
        d.xfer_size = U32::new(len);
        Self(d)
    }
    /// Check the result against `expected` (0 equal, 1 different): sets CHECK_RESULT.
    pub fn expect(mut self, expected: u8) -> Self {
        self.0.set_flags(DescriptorFlags::CHECK_RESULT);
        self.0.set_op(op_offset::EXPECTED_RESULT, &[expected]);
        self
    }
}

impl ComparePattern {
    /// Compare `len` bytes at `src` with the 8-byte `pattern`.
    pub fn new(src: u64, pattern: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::ComparePattern);
        d.src = U64::new(src);
        d.dst = U64::new(pattern);
        d.xfer_size = U32::new(len);
        Self(d)
    }
    /// Check the result against `expected`: sets CHECK_RESULT.
    pub fn expect(mut self, expected: u8) -> Self {
        self.0.set_flags(DescriptorFlags::CHECK_RESULT);
        self.0.set_op(op_offset::EXPECTED_RESULT, &[expected]);
        self
    }
}

impl Dualcast {
    /// Copy `len` bytes from `src` to `dst1` and `dst2`.
    pub fn new(src: u64, dst1: u64, dst2: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::Dualcast);
        d.src = U64::new(src);
        d.dst = U64::new(dst1);
        d.xfer_size = U32::new(len);
        d.set_op(op_offset::DEST2, &dst2.to_le_bytes());
        Self(d)
    }
}

impl CrcGen {
    /// CRC-32C of `len` bytes at `src`, seed 0.
    pub fn new(src: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::CrcGen);
        d.src = U64::new(src);
        d.xfer_size = U32::new(len);
        Self(d)
    }
    /// The CRC seed.
    pub fn seed(mut self, seed: u32) -> Self {
        self.0.set_op(op_offset::CRC_SEED, &seed.to_le_bytes());
        self
    }
    /// Read the seed from memory at `addr`: sets READ_CRC_SEED.
    pub fn seed_from(mut self, addr: u64) -> Self {
        self.0.set_flags(DescriptorFlags::READ_CRC_SEED);
        self.0.set_op(op_offset::CRC_SEED_ADDR, &addr.to_le_bytes());
        self
    }
}

impl CopyCrc {
    /// Copy `len` bytes from `src` to `dst` and compute their CRC-32C, seed 0.
    pub fn new(src: u64, dst: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::CopyCrc);
        d.src = U64::new(src);
        d.dst = U64::new(dst);
        d.xfer_size = U32::new(len);
        Self(d)
    }
    /// The CRC seed.
    pub fn seed(mut self, seed: u32) -> Self {
        self.0.set_op(op_offset::CRC_SEED, &seed.to_le_bytes());
        self
    }
    /// Read the seed from memory at `addr`: sets READ_CRC_SEED.
    pub fn seed_from(mut self, addr: u64) -> Self {
        self.0.set_flags(DescriptorFlags::READ_CRC_SEED);
        self.0.set_op(op_offset::CRC_SEED_ADDR, &addr.to_le_bytes());
        self
    }
}

impl CacheFlush {
    /// Flush `len` bytes at `dst`.
    pub fn new(dst: u64, len: u32) -> Self {
        let mut d = Descriptor::with_opcode(Opcode::CacheFlush);
        d.dst = U64::new(dst);
        d.xfer_size = U32::new(len);
        Self(d)
    }
}
