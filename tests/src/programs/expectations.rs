//! What the programs expect from the kernel, in one documented place.
//!
//! Kernel-version-dependent facts live in [`passthru_linux::expectations`] (re-exported here):
//! the overflow errno (type1 returns EINVAL on 6.12 and EOVERFLOW from 6.18; IOMMUFD and the
//! compat modes always EOVERFLOW), whether the last page of the reported IOVA range maps
//! (compat modes on 6.12: EINVAL), MMIO DMA mapping per mode, huge IOMMU pages per mode, and
//! whether VFIO_DEVICE_BIND_IOMMUFD takes a VF token. This module adds the expectations that
//! do not depend on the kernel version. None of them loosens an assertion: each returns the
//! one outcome the kernel must produce.

pub use passthru_linux::expectations::*;
use passthru_linux::token::VfToken;

/// The VF token the SR-IOV test opens the PF with (named UUID_1 upstream; the value is ours).
pub const UUID_1: &str = "52ac9bff-3a88-4fbd-901a-0d767c3b6c97";
/// The other token (named UUID_2 upstream; the value is ours), used by `diff_uuid` and `override_token`.
pub const UUID_2: &str = "88594674-90a0-47a9-aea8-9d9b352ac08a";

/// Whether opening a VF succeeds: if and only if the VF user presents a token equal to the PF's
/// current token (the kernel's `vfio_pci_validate_vf_token`: no token, or another token, is
/// refused while the PF is bound to vfio-pci, open or not).
pub fn vf_open_succeeds(vf_token: Option<&VfToken>, pf_token: &VfToken) -> bool {
    vf_token == Some(pf_token)
}

/// How many MSI/MSI-X vectors the IRQ test enables at most (upstream's MAX_TEST_MSI, a cap
/// to avoid exhausting interrupt-remapping entries).
pub const MAX_TEST_MSI: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_differ() {
        let a: VfToken = UUID_1.parse().unwrap();
        let b: VfToken = UUID_2.parse().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string(), UUID_1);
    }

    #[test]
    fn vf_open_needs_the_current_pf_token() {
        let a: VfToken = UUID_1.parse().unwrap();
        let b: VfToken = UUID_2.parse().unwrap();
        assert!(vf_open_succeeds(Some(&a), &a));
        assert!(!vf_open_succeeds(Some(&b), &a));
        assert!(!vf_open_succeeds(None, &a));
        // After override_token the PF's token is UUID_2.
        assert!(vf_open_succeeds(Some(&b), &b));
        assert!(!vf_open_succeeds(Some(&a), &b));
    }
}
