//! Intel Data Streaming Accelerator (driver name "idxd"): BAR0 registers, WQCFG/GRPCFG tables,
//! administrative commands, descriptors, completion records and descriptor builders.
//!
//! Layout facts come from Linux `drivers/dma/idxd/registers.h`, `include/uapi/linux/idxd.h` and
//! the Intel DSA Architecture Specification. Fields the sheet
//! attributes only to third-party DSA 2.0 headers are marked "DSA 2.0, unconfirmed".
//!
//! * [`regs`]: BAR0 register offsets and typed values (capabilities, configuration, status,
//!   commands, SWERR, event log, perfmon), the MSI-X permission and IMS entries.
//! * [`tables`]: the WQCFG and GRPCFG table entries.
//! * [`descriptor`]: opcodes, flags, the 64-byte work descriptor and its builders.
//! * [`completion`]: the 32-byte completion record and its status codes.
//! * [`portal`]: BAR2 work-queue portal offsets.

pub mod completion;
pub mod descriptor;
pub mod portal;
pub mod regs;
pub mod tables;

pub use completion::{CompletionRecord, CompletionStatus, FaultInfo, StatusByte};
pub use descriptor::{
    Batch, CacheFlush, Compare, ComparePattern, CopyCrc, CrcGen, Descriptor, DescriptorFlags,
    Drain, Dualcast, Fill, IaaOpcode, MemMove, Noop, Opcode,
};
pub use portal::{PortalKind, PORTAL_PAGE_SIZE, WQ_PORTAL_STRIDE};
pub use regs::*;
pub use tables::{GroupConfig, GroupFlags, WqConfig, WqState};

/// PCI vendor id of every DSA/IAA function (Intel; same as [`crate::pci::VENDOR_INTEL`]).
pub const VENDOR_INTEL: u16 = crate::pci::VENDOR_INTEL;
/// DSA on Sapphire Rapids (DSA 1.x; VERSION 0x100).
pub const DEVICE_DSA_SPR0: u16 = crate::pci::DEVICE_DSA_SPR;
/// DSA on Granite Rapids-D.
pub const DEVICE_DSA_GNRD: u16 = crate::pci::DEVICE_DSA_GNRD;
/// DSA on Diamond Rapids.
pub const DEVICE_DSA_DMR: u16 = crate::pci::DEVICE_DSA_DMR;
/// IAA (IAX) on Sapphire Rapids.
pub const DEVICE_IAX_SPR0: u16 = crate::pci::DEVICE_IAX_SPR;
/// IAA on Diamond Rapids.
pub const DEVICE_IAA_DMR: u16 = crate::pci::DEVICE_IAA_DMR;
/// IAA on Panther Lake (client).
pub const DEVICE_IAA_PTL: u16 = crate::pci::DEVICE_IAA_PTL;
/// PCI class code (base, sub-class) of DSA: 0x08 system peripheral, 0x80 other.
pub const PCI_CLASS: u16 = 0x0880;
/// BAR index of the MMIO control registers.
pub const BAR_CONTROL: u8 = 0;
/// BAR index of the work-queue portals.
pub const BAR_PORTALS: u8 = 2;
/// MSI-X vector of the "misc" interrupt (software errors, command completion, halt, ...).
pub const MISC_VECTOR: u16 = 0;
/// DVSEC id (DVSEC header 2 bits 15:0, vendor 0x8086) of Intel's Scalable IOV DVSEC, present in
/// DSA's extended configuration space; its capability dword bit 0 together with a non-zero
/// GENCAP max IMS multiplier means IMS is supported.
pub const DVSEC_ID_SCALABLE_IOV: u16 = 5;

/// Extract `width` bits of `value` starting at bit `lo`.
pub(crate) const fn bits(value: u64, lo: u32, width: u32) -> u64 {
    if width >= 64 {
        value >> lo
    } else {
        (value >> lo) & ((1u64 << width) - 1)
    }
}

/// Return `value` with `width` bits at `lo` replaced by `field` (excess bits of `field` dropped).
pub(crate) const fn set_bits(value: u64, lo: u32, width: u32, field: u64) -> u64 {
    let mask = if width >= 64 {
        u64::MAX
    } else {
        ((1u64 << width) - 1) << lo
    };
    (value & !mask) | ((field << lo) & mask)
}

/// Return bit `bit` of `value`.
pub(crate) const fn bit(value: u64, bit: u32) -> bool {
    (value >> bit) & 1 != 0
}

#[cfg(test)]
mod tests;
