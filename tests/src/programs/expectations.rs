//! What the programs expect from the kernel, in one documented place.
//!
//! Kernel-version-dependent facts live in [`passthru_linux::expectations`] (re-exported here):
//! the overflow errno (type1 returns EINVAL on 6.12 and EOVERFLOW from 6.18; IOMMUFD and the
//! compat modes always EOVERFLOW), whether the last page of the reported IOVA range maps, MMIO
//! DMA mapping per mode, huge IOMMU pages per mode, and whether the cdev path accepts and
//! enforces VF tokens (not on 6.12). This module adds the expectations that
//! do not depend on the kernel version. None of them loosens an assertion: each returns the
//! one outcome the kernel must produce.

pub use passthru_linux::expectations::*;
use passthru_linux::iommu::IommuMode;
use passthru_linux::sys::Errno;
use passthru_linux::token::VfToken;

/// What unmapping an IOVA range that was never mapped returns, in the modes where mapping a
/// BAR mmap is refused (the IOMMUFD modes; see [`mmio_dma_map_succeeds`]).
///
/// * native `iommufd`: IOMMU_IOAS_UNMAP fails with ENOENT;
/// * the compat modes keep type1's semantics: VFIO_IOMMU_UNMAP_DMA succeeds and reports 0
///   bytes unmapped.
///
/// Measured on 6.12.117 and 7.3.4 (QEMU rig, e1000e BAR0). Upstream's
/// `vfio_dma_mapping_mmio_test` asserts that the unmap *fails* in the compat modes too, which
/// these kernels do not do; we assert the measured, stricter fact (success with exactly 0
/// bytes, i.e. nothing was mapped).
pub fn unmap_of_unmapped_range(mode: IommuMode) -> Result<u64, Errno> {
    match mode {
        IommuMode::Iommufd => Err(Errno::ENOENT),
        _ => Ok(0),
    }
}

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
    fn kernel_dependent_tables() {
        let k612 = KernelVersion::new(6, 12);
        let k73 = KernelVersion::new(7, 3);
        let c1 = IommuMode::IommufdCompatType1;
        assert_eq!(
            unmap_of_unmapped_range(IommuMode::Iommufd),
            Err(Errno::ENOENT)
        );
        assert_eq!(unmap_of_unmapped_range(c1), Ok(0));
        assert_eq!(
            unmap_of_unmapped_range(IommuMode::IommufdCompatType1v2),
            Ok(0)
        );
        assert!(!cdev_bind_enforces_vf_token_assume_7_0(k612));
        assert!(cdev_bind_enforces_vf_token_assume_7_0(k73));
        // The 7.x rig had EOVERFLOW for type1 overflow, 6.12 EINVAL.
        assert_eq!(
            overflow_errno(IommuMode::VfioType1Iommu, k612),
            Errno::EINVAL
        );
        assert_eq!(
            overflow_errno(IommuMode::VfioType1Iommu, k73),
            Errno::EOVERFLOW
        );
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
