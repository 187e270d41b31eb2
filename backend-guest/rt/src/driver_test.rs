//! The ABI of `vfio_pci_guest_driver_test`: the guest main, its boot arguments, the host
//! requests it makes, and the case numbers. Shared by the guest image and the host program.
//!
//! The guest runs one upstream driver test case on device 0 with the driver that probes first
//! (`dsa`, `ioat`, `igb`, `edu`). Bulk data never crosses into guest code: the guest asks the
//! host to fill the source ([`REQ_FILL`]) and to compare destination with source
//! ([`REQ_CHECK`]) in the shared DMA window, so each copy costs the guest a few exits.

/// The guest main's name.
pub const MAIN: &str = "driver_test";

/// Boot argument: the case ([`Case`] as `u64`).
pub const ARG_CASE: usize = 0;
/// Boot argument: GPA (= IOVA) of the DMA window.
pub const ARG_WINDOW: usize = 1;
/// Boot argument: length of the DMA window. The first half is the driver's region, the second
/// the memcpy region (source, then destination).
pub const ARG_WINDOW_LEN: usize = 2;
/// Boot argument: an IOVA block of at least the copy size that is never mapped.
pub const ARG_UNMAPPED: usize = 3;
/// Boot argument: total bytes `memcpy_storm` copies.
pub const ARG_STORM_BYTES: usize = 4;
/// Boot argument: the guest vector of device vector 0.
pub const ARG_VECTOR_BASE: usize = 5;
/// Boot argument: bits 7:0 what a faulting copy must return ([`POLICY_DEVICE_ERROR`], ...),
/// plus [`FLAG_WAIT_INTERRUPT`], plus the index of the vCPU that runs the case in bits 31:16
/// ([`RUNNER_SHIFT`]; every other vCPU returns at once).
pub const ARG_MODE: usize = 6;

/// Where [`ARG_MODE`] keeps the index of the vCPU that runs the case.
pub const RUNNER_SHIFT: u32 = 16;
/// Boot argument: seed for the data the host fills.
pub const ARG_SEED: usize = 7;

/// A faulting copy must come back as the device's decoded error naming the faulting side
/// (DSA page-fault completion, CBDMA CHANERR).
pub const POLICY_DEVICE_ERROR: u64 = 0;
/// A faulting copy succeeds as far as the driver can tell (edu cannot report DMA faults); the
/// host must have seen the IOMMU fault ([`REQ_FAULTS`]).
pub const POLICY_SILENT: u64 = 1;
/// Anything but a refused call (real devices: not all report); the outcome is printed.
pub const POLICY_ANY: u64 = 2;

/// [`ARG_MODE`] flag: every copy is waited for by its completion interrupt
/// (`WaitMode::Interrupt`: the driver sleeps in the guest's `HLT` wait), not by polling.
pub const FLAG_WAIT_INTERRUPT: u64 = 1 << 8;

/// Host request: fill `len` bytes at GPA `args[0]` (source) from seed `args[3]` and `len` bytes
/// at `args[1]` (destination) with a different pattern; `args[2]` = len.
pub const REQ_FILL: u64 = 0x11;
/// Host request: compare `args[2]` bytes at `args[0]` and `args[1]`; reply word 0 is
/// [`SAME`] or the first differing offset.
pub const REQ_CHECK: u64 = 0x12;
/// Host request: IOMMU faults recorded in `args[0]..args[0]+args[1]` with direction `args[2]`
/// (1 write, 0 read) since the last such request; reply word 0 is the count.
pub const REQ_FAULTS: u64 = 0x13;

/// [`REQ_CHECK`] reply: the ranges are equal.
pub const SAME: u64 = u64::MAX;

/// The seven upstream cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Case {
    /// 10 × remove + init.
    InitRemove = 1,
    /// One copy, checked; no MSI.
    MemcpySuccess = 2,
    /// A copy from an unmapped IOVA; then a good copy.
    MemcpyFromUnmappedIova = 3,
    /// A copy to an unmapped IOVA; then a good copy.
    MemcpyToUnmappedIova = 4,
    /// `send_msi` raises exactly one interrupt, counted by the guest's handler.
    SendMsi = 5,
    /// 10 × (good copy, faulting copy, MSI).
    MixAndMatch = 6,
    /// As many copies as one `memcpy_start` allows, up to the storm total.
    MemcpyStorm = 7,
}

impl Case {
    /// All cases in upstream order.
    pub const ALL: [Case; 7] = [
        Case::InitRemove,
        Case::MemcpySuccess,
        Case::MemcpyFromUnmappedIova,
        Case::MemcpyToUnmappedIova,
        Case::SendMsi,
        Case::MixAndMatch,
        Case::MemcpyStorm,
    ];

    /// Decode a boot argument.
    pub fn from_u64(v: u64) -> Option<Case> {
        Self::ALL.into_iter().find(|c| *c as u64 == v)
    }

    /// Upstream's test name.
    pub const fn name(self) -> &'static str {
        match self {
            Case::InitRemove => "init_remove",
            Case::MemcpySuccess => "memcpy_success",
            Case::MemcpyFromUnmappedIova => "memcpy_from_unmapped_iova",
            Case::MemcpyToUnmappedIova => "memcpy_to_unmapped_iova",
            Case::SendMsi => "send_msi",
            Case::MixAndMatch => "mix_and_match",
            Case::MemcpyStorm => "memcpy_storm",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_round_trip_and_carry_upstream_names() {
        for c in Case::ALL {
            assert_eq!(Case::from_u64(c as u64), Some(c));
        }
        assert_eq!(Case::from_u64(0), None);
        assert_eq!(Case::from_u64(8), None);
        assert_eq!(Case::MemcpyStorm.name(), "memcpy_storm");
    }
}
