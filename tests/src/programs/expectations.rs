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
use passthru_linux::iommu::IommuMode;
use passthru_linux::sys::Errno;
use passthru_linux::token::VfToken;

/// Whether mapping the last page of the highest *reported* IOVA range must fail with EINVAL.
///
/// Before a device is attached, `/dev/iommu`'s compat container on 6.12 reports
/// 0..2^64−1 although the domain is 48-bit, and a map at the top fails with EINVAL
/// ([`last_reported_page_maps`]). With the device attached (as in the limit fixture), both
/// 6.12.117 and 7.3.4 report ranges ending at 0xffff_ffff_ffff in the QEMU rig and the map
/// succeeds, as in every other mode. So the refusal is expected exactly when the reported
/// range still ends at 2^64−1 on such a kernel; otherwise the map must succeed.
pub fn last_page_map_refused(mode: IommuMode, kernel: KernelVersion, reported_last: u64) -> bool {
    !last_reported_page_maps(mode, kernel) && reported_last == u64::MAX
}

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

/// Whether the VFIO cdev path enforces SR-IOV VF tokens (and accepts one on
/// VFIO_DEVICE_BIND_IOMMUFD). Measured in the QEMU rig: on 6.12.117 a VF binds through its
/// cdev *without* a token while its PF (bound to vfio-pci) has one set; 7.3.4 refuses it with
/// EACCES like the group path. The first release with the check is not confirmed; the
/// threshold is the helper's 7.0 assumption ([`cdev_bind_token_supported_assume_7_0`]).
pub fn cdev_enforces_vf_token_assume_7_0(kernel: KernelVersion) -> bool {
    cdev_bind_token_supported_assume_7_0(kernel)
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
        assert!(last_page_map_refused(c1, k612, u64::MAX));
        assert!(!last_page_map_refused(c1, k612, 0xffff_ffff_ffff));
        assert!(!last_page_map_refused(c1, k73, u64::MAX));
        assert!(!last_page_map_refused(
            IommuMode::VfioType1Iommu,
            k612,
            u64::MAX
        ));
        assert_eq!(
            unmap_of_unmapped_range(IommuMode::Iommufd),
            Err(Errno::ENOENT)
        );
        assert_eq!(unmap_of_unmapped_range(c1), Ok(0));
        assert_eq!(
            unmap_of_unmapped_range(IommuMode::IommufdCompatType1v2),
            Ok(0)
        );
        assert!(!cdev_enforces_vf_token_assume_7_0(k612));
        assert!(cdev_enforces_vf_token_assume_7_0(k73));
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
