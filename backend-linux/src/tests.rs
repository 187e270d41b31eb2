//! Sequence and error-path tests against the simulated kernel in `fake.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, PortalError, RegisterIo};
use vfio_bindings::bindings::vfio as vb;

use crate::bdf::Bdf;
use crate::cdev::{cdev_path, open_iommufd, Cdev};
use crate::error::Error;
use crate::fake::{FakeSys, BDF, GROUP, PAGE};
use crate::group::{group_setup, parse_bdf};

/// The fake device as a parsed address.
fn dev_bdf() -> Bdf {
    Bdf::parse(BDF).unwrap()
}

fn b(s: &str) -> Bdf {
    Bdf::parse(s).unwrap()
}
use crate::iova::IovaRange;
use crate::memory::{Backing, DmaBuffer};
use crate::sys::{nr, Errno, MapKind};
use crate::{Iommu, IommuMode, VfToken, VfioPciDevice};

const TOKEN: &str = "4e9a0c3f-1d2b-4c5e-8f60-71a2b3c4d5e6";

fn open(mode: IommuMode) -> (FakeSys, Arc<Iommu>, VfioPciDevice) {
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, mode).unwrap();
    let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    (f, iommu, dev)
}

// ---------------------------------------------------------------- IommuMode

#[test]
fn iommu_mode_names_order_and_default() {
    let names: Vec<String> = IommuMode::ALL.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        names,
        [
            "vfio_type1_iommu",
            "vfio_type1v2_iommu",
            "iommufd_compat_type1",
            "iommufd_compat_type1v2",
            "iommufd"
        ]
    );
    assert_eq!(IommuMode::default(), IommuMode::Iommufd);
    for m in IommuMode::ALL {
        assert_eq!(m.name().parse::<IommuMode>().unwrap(), m);
    }
    assert_eq!(
        IommuMode::VfioType1Iommu.iommu_type(),
        Some(vb::VFIO_TYPE1_IOMMU)
    );
    assert_eq!(
        IommuMode::IommufdCompatType1v2.iommu_type(),
        Some(vb::VFIO_TYPE1v2_IOMMU)
    );
    assert_eq!(
        IommuMode::IommufdCompatType1.container_path(),
        Some("/dev/iommu")
    );
    assert_eq!(
        IommuMode::VfioType1v2Iommu.container_path(),
        Some("/dev/vfio/vfio")
    );
    assert_eq!(IommuMode::Iommufd.container_path(), None);
}

#[test]
fn unknown_mode_error_lists_valid_names_and_fails() {
    let e = "type1".parse::<IommuMode>().unwrap_err();
    let msg = e.to_string();
    for m in IommuMode::ALL {
        assert!(msg.contains(m.name()), "{msg}");
    }
    assert!(msg.contains("\"type1\""));
    assert!(!e.is_environment());
}

// ---------------------------------------------------------------- open sequences

#[test]
fn container_open_sequence_matches_upstream_order() {
    for mode in [IommuMode::VfioType1Iommu, IommuMode::IommufdCompatType1v2] {
        let (f, iommu, dev) = open(mode);
        let reqs = f.requests();
        let pos = |r| reqs.iter().position(|&x| x == r).unwrap();
        assert_eq!(reqs[0], nr::VFIO_GET_API_VERSION);
        assert!(pos(nr::VFIO_GROUP_GET_STATUS) < pos(nr::VFIO_GROUP_SET_CONTAINER));
        assert!(pos(nr::VFIO_GROUP_SET_CONTAINER) < pos(nr::VFIO_CHECK_EXTENSION));
        assert!(pos(nr::VFIO_CHECK_EXTENSION) < pos(nr::VFIO_SET_IOMMU));
        assert!(pos(nr::VFIO_SET_IOMMU) < pos(nr::VFIO_GROUP_GET_DEVICE_FD));
        assert!(pos(nr::VFIO_GROUP_GET_DEVICE_FD) < pos(nr::VFIO_DEVICE_GET_INFO));
        assert_eq!(f.st().iommu_set, mode.iommu_type());
        assert_eq!(f.st().device_names_requested, vec![BDF.to_string()]);
        assert_eq!(dev.group().unwrap().number(), GROUP);
        assert!(dev.devid().is_none());
        assert!(iommu.container_fd().is_some() && iommu.ioas_id().is_none());
    }
}

#[test]
fn iommufd_open_sequence_binds_and_attaches_to_the_ioas() {
    let (f, iommu, dev) = open(IommuMode::Iommufd);
    let reqs = f.requests();
    assert_eq!(
        &reqs[..4],
        &[
            nr::IOMMU_IOAS_ALLOC,
            nr::VFIO_DEVICE_BIND_IOMMUFD,
            nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            nr::VFIO_DEVICE_GET_INFO
        ]
    );
    assert_eq!(dev.devid(), Some(42));
    assert_eq!(f.st().attached, iommu.ioas_id());
    assert!(dev.group().is_none());
}

/// A successful open reads each sysfs entry it needs once and nothing else (the device-exists
/// check only runs when a lookup fails, to name the error): group path = the `driver` and
/// `iommu_group` links, cdev path = the `driver` link and the `vfio-dev` directory.
#[test]
fn successful_open_does_one_sysfs_lookup_per_entry_and_no_exists_checks() {
    let dir = PathBuf::from("/sys/bus/pci/devices").join(BDF);
    for (mode, second) in [
        (
            IommuMode::VfioType1v2Iommu,
            ("readlink", dir.join("iommu_group")),
        ),
        (
            IommuMode::IommufdCompatType1,
            ("readlink", dir.join("iommu_group")),
        ),
        (IommuMode::Iommufd, ("read_dir", dir.join("vfio-dev"))),
    ] {
        let (f, _iommu, _dev) = open(mode);
        assert_eq!(
            f.st().lookups,
            vec![("readlink", dir.join("driver")), second],
            "{mode}"
        );
    }
}

#[test]
fn missing_device_is_still_device_not_found_after_a_failed_lookup() {
    for mode in [IommuMode::VfioType1Iommu, IommuMode::Iommufd] {
        let (f, sys) = FakeSys::new();
        let dir = PathBuf::from("/sys/bus/pci/devices").join(BDF);
        {
            let mut st = f.st();
            st.exists.remove(&dir);
            st.links.retain(|p, _| !p.starts_with(&dir));
            st.dirs.retain(|p, _| !p.starts_with(&dir));
        }
        let iommu = Iommu::open_with(sys, mode).unwrap();
        let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
        assert!(matches!(e, Error::DeviceNotFound { .. }), "{mode}: {e:?}");
        assert!(f
            .st()
            .lookups
            .iter()
            .any(|(k, p)| *k == "exists" && *p == dir));
    }
}

#[test]
fn device_info_regions_and_irqs_are_read_at_open() {
    let (_f, _iommu, dev) = open(IommuMode::Iommufd);
    assert!(dev.info().supports_reset() && dev.info().is_pci());
    assert_eq!(dev.config_region().size, 256);
    let bar0 = dev.bar_info(0).unwrap();
    assert_eq!(bar0.info.size, 0x1_0000);
    assert!(bar0.info.msix_mappable);
    assert_eq!(bar0.info.sparse_areas.as_ref().unwrap().len(), 2);
    assert_eq!(bar0.info.sparse_areas.as_ref().unwrap()[1].offset, 0x4000);
    assert!(bar0.vaddr().is_some());
    let bar1 = dev.bar_info(1).unwrap();
    assert!(bar1.vaddr().is_none());
    assert!(bar1.unmapped_reason.as_deref().unwrap().contains("size 0"));
    assert_eq!(dev.irq_info(IrqKind::MsiX).count, 16);
    assert!(dev.irq_info(IrqKind::Intx).automasked());
    assert!(dev.irq_info(IrqKind::Msi).noresize());
}

#[test]
fn bar_mappings_are_size_aligned_and_usable_as_volatile_bars() {
    let (_f, _iommu, dev) = open(IommuMode::VfioType1v2Iommu);
    for (i, size) in [(0u8, 0x1_0000usize), (2, 0x20_0000)] {
        let b = dev.bar_info(i).unwrap();
        assert_eq!(b.vaddr().unwrap() % size, 0, "BAR{i} aligned to its size");
        assert_eq!(b.mapped_len(), Some(size));
    }
    let bar = PciFunction::bar(&dev, 2).unwrap();
    bar.write32(0x100, 0xdead_beef);
    assert_eq!(bar.read32(0x100), 0xdead_beef);
    assert_eq!(bar.len(), 0x20_0000);
    assert_eq!(
        PciFunction::bar(&dev, 1).unwrap_err(),
        FunctionError::NoSuchBar(1)
    );
    assert!(matches!(
        dev.bar_mapping(3),
        Err(Error::BarNotMappable { bar: 3, .. })
    ));
    assert!(dev.bar_mapping(9).is_err());
}

#[test]
fn device_info_capability_chain_is_decoded_on_demand() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    // No capabilities: one GET_INFO, nothing decoded.
    let before = f.requests().len();
    assert_eq!(
        dev.device_caps().unwrap(),
        crate::device::DeviceCaps::default()
    );
    assert_eq!(f.requests().len(), before + 1);
    // A zPCI capability (not decoded, but listed) followed by PCI atomic completer support.
    let atomic = vb::VFIO_PCI_ATOMIC_COMP32 | vb::VFIO_PCI_ATOMIC_COMP64;
    let mut payload = atomic.to_ne_bytes().to_vec();
    payload.extend_from_slice(&[0; 4]);
    f.st().device_caps = vec![
        (
            vb::VFIO_DEVICE_INFO_CAP_ZPCI_UTIL as u16,
            1,
            vec![0; 8],
            None,
        ),
        (
            vb::VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP as u16,
            1,
            payload,
            None,
        ),
    ];
    let caps = dev.device_caps().unwrap();
    assert_eq!(caps.pci_atomic_comp, Some(atomic));
    assert_eq!(
        caps.caps,
        vec![
            (vb::VFIO_DEVICE_INFO_CAP_ZPCI_UTIL as u16, 1),
            (vb::VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP as u16, 1)
        ]
    );
    // A chain that loops back to its first capability is malformed, not an endless walk.
    f.st().device_caps[1].3 = Some(24);
    let e = dev.device_caps().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Os {
                errno: Errno::EPROTO,
                ..
            }
        ),
        "{e}"
    );
    // A capability pointing into the fixed header, or past the buffer, is rejected too.
    let mut buf = vec![0u8; 40];
    assert!(crate::device::parse_device_caps(&buf, 8).is_err());
    assert!(crate::device::parse_device_caps(&buf, 36).is_err());
    // An atomic capability cut short by the buffer end.
    buf.truncate(36);
    crate::sys::write_plain(
        &mut buf,
        24,
        &vb::vfio_info_cap_header {
            id: vb::VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP as u16,
            version: 1,
            next: 0,
        },
    );
    assert!(crate::device::parse_device_caps(&buf, 24)
        .unwrap_err()
        .contains("truncated"));
}

#[test]
fn bar_can_be_remapped_misaligned() {
    let (_f, _iommu, dev) = open(IommuMode::Iommufd);
    let m = dev.mmap_bar_at(2, 1 << 30, PAGE).unwrap();
    assert_eq!(m.addr() % (1 << 30), PAGE as usize);
    assert_eq!(m.len(), 0x20_0000);
}

#[test]
fn bar_handles_keep_the_mapping_until_the_last_one_drops() {
    for mode in [IommuMode::VfioType1v2Iommu, IommuMode::Iommufd] {
        let (f, iommu, dev) = open(mode);
        let info = dev.bar_info(2).unwrap();
        let (addr, len) = (info.vaddr().unwrap(), info.mapped_len().unwrap());
        let bar0 = (
            dev.bar_info(0).unwrap().vaddr().unwrap(),
            dev.bar_info(0).unwrap().mapped_len().unwrap(),
        );
        let unmapped = |f: &FakeSys, a: usize| f.st().munmaps.iter().any(|&(x, _)| x == a);
        let bar = PciFunction::bar(&dev, 2).unwrap();
        let other = dev.bar_mapping(2).unwrap().clone();
        assert_eq!(bar.index(), 2);
        assert_eq!(bar.as_ptr() as usize, addr);
        assert_eq!(bar.handle_count(), 3, "device + two handles");
        bar.write32(0x40, 0x1234_5678);
        drop(dev);
        drop(iommu);
        // The device is gone, so its other BARs are unmapped, but BAR2 still is mapped.
        assert!(
            unmapped(&f, bar0.0),
            "{mode}: BAR0 unmapped with the device"
        );
        assert!(
            !unmapped(&f, addr),
            "{mode}: BAR2 unmapped under a live handle"
        );
        assert_eq!(other.read32(0x40), 0x1234_5678, "{mode}: still readable");
        assert_eq!(other.handle_count(), 2);
        drop(bar);
        assert!(!unmapped(&f, addr), "{mode}: one handle still lives");
        other.write32(0x44, 1);
        assert_eq!(other.read32(0x44), 1);
        drop(other);
        assert_eq!(
            f.st().munmaps.iter().filter(|&&(x, _)| x == addr).count(),
            1,
            "{mode}: unmapped exactly once, after the last handle"
        );
        assert!(f.st().munmaps.contains(&(addr, len)));
        assert!(f.st().munmaps.contains(&bar0));
    }
}

#[test]
fn dropping_device_and_iommu_closes_every_fd() {
    for mode in IommuMode::ALL {
        let (f, iommu, dev) = open(mode);
        dev.irq_enable(IrqKind::MsiX, 0, 4).unwrap();
        assert!(f.open_fd_count() >= 6);
        drop(dev);
        drop(iommu);
        assert_eq!(f.open_fd_count(), 0, "{mode}");
    }
}

// ---------------------------------------------------------------- error classification

#[test]
fn invalid_bdf_fails() {
    for bad in [
        "0000:00:04",
        "00:04.0",
        "0000:00:04.8",
        "0000:00:40.0",
        "000g:00:04.0",
        "",
    ] {
        let e = parse_bdf(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidBdf { .. }), "{bad}");
        assert!(!e.is_environment());
    }
    parse_bdf("0000:00:04.0").unwrap();
    parse_bdf("abcd:ef:1f.7").unwrap();
}

#[test]
fn short_bdf_fields_are_accepted_and_canonicalised() {
    for mode in [IommuMode::VfioType1v2Iommu, IommuMode::Iommufd] {
        let (f, sys) = FakeSys::new();
        let iommu = Iommu::open_with(sys, mode).unwrap();
        let dev = VfioPciDevice::open(b("0:0:4.0"), &iommu).unwrap();
        assert_eq!(dev.bdf(), BDF, "{mode}");
        if mode.uses_container() {
            assert_eq!(f.st().device_names_requested, vec![BDF.to_string()]);
        }
    }
}

#[test]
fn the_shared_sysfs_lookups_read_through_the_sys_seam() {
    use crate::bdf::Bdf;
    use crate::sysfs::Sysfs;
    let (f, sys) = FakeSys::new();
    let sysfs = Sysfs::new("/sys").with_sys(sys.clone());
    let bdf: Bdf = BDF.parse().unwrap();
    assert!(sysfs.exists(bdf));
    assert_eq!(sysfs.driver(bdf).unwrap().as_deref(), Some("vfio-pci"));
    assert_eq!(sysfs.iommu_group(bdf).unwrap(), Some(GROUP));
    assert_eq!(sysfs.iommu_group_members(GROUP).unwrap(), vec![bdf]);
    assert_eq!(sysfs.vfio_cdev(bdf).unwrap().as_deref(), Some("vfio3"));
    // The VFIO helpers answer from the same lookups.
    assert_eq!(
        crate::group::current_driver(&*sys, dev_bdf()).as_deref(),
        Some("vfio-pci")
    );
    assert_eq!(
        crate::group::iommu_group_number(&*sys, dev_bdf()).unwrap(),
        GROUP
    );
    // A group link that does not end in a number is malformed, not "no IOMMU".
    f.st().links.insert(
        PathBuf::from(format!("/sys/bus/pci/devices/{BDF}/iommu_group")),
        PathBuf::from("../../../kernel/iommu_groups/seven"),
    );
    assert!(matches!(
        crate::group::iommu_group_number(&*sys, dev_bdf()),
        Err(Error::Malformed { .. })
    ));
    // No link: no IOMMU group; no device: not found.
    f.st().links.remove(&PathBuf::from(format!(
        "/sys/bus/pci/devices/{BDF}/iommu_group"
    )));
    assert!(matches!(
        crate::group::iommu_group_number(&*sys, dev_bdf()),
        Err(Error::NoIommuGroup { .. })
    ));
    assert!(matches!(
        crate::group::iommu_group_number(&*sys, b("0000:00:05.0")),
        Err(Error::DeviceNotFound { .. })
    ));
}

#[test]
fn missing_device_is_a_skip_naming_the_bdf() {
    let (_f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    let e = VfioPciDevice::open(b("0000:00:05.0"), &iommu).unwrap_err();
    assert!(matches!(e, Error::DeviceNotFound { .. }));
    assert!(e.to_string().contains("0000:00:05.0"));
    assert!(e.is_environment());
}

#[test]
fn device_bound_elsewhere_names_the_driver() {
    let (f, sys) = FakeSys::new();
    f.st().links.insert(
        PathBuf::from(format!("/sys/bus/pci/devices/{BDF}/driver")),
        PathBuf::from("../../../bus/pci/drivers/e1000e"),
    );
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(matches!(e, Error::NotBoundToVfio { driver: Some(ref d), .. } if d == "e1000e"));
    assert!(e.to_string().contains("e1000e") && e.to_string().contains("vfio-pci"));
    assert!(e.is_environment());
    // Unbound entirely.
    f.st()
        .links
        .remove(&PathBuf::from(format!("/sys/bus/pci/devices/{BDF}/driver")));
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(e.to_string().contains("no driver"), "{e}");
}

#[test]
fn no_iommu_group_is_a_skip() {
    let (f, sys) = FakeSys::new();
    f.st().links.remove(&PathBuf::from(format!(
        "/sys/bus/pci/devices/{BDF}/iommu_group"
    )));
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(matches!(e, Error::NoIommuGroup { .. }), "{e}");
    assert!(e.to_string().contains("intel_iommu=on"));
    assert!(e.is_environment());
}

#[test]
fn non_viable_group_names_the_culprit() {
    let (f, sys) = FakeSys::new();
    {
        let mut st = f.st();
        st.group_viable = false;
        st.dirs.insert(
            PathBuf::from(format!("/sys/kernel/iommu_groups/{GROUP}/devices")),
            vec![BDF.to_string(), "0000:00:04.1".to_string()],
        );
        st.links.insert(
            PathBuf::from("/sys/bus/pci/devices/0000:00:04.1/driver"),
            PathBuf::from("../../../bus/pci/drivers/snd_hda_intel"),
        );
        st.exists
            .insert(PathBuf::from("/sys/bus/pci/devices/0000:00:04.1"));
    }
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::GroupNotViable { group: GROUP, .. }));
    assert!(
        msg.contains("0000:00:04.1") && msg.contains("snd_hda_intel"),
        "{msg}"
    );
    assert!(e.is_environment());
}

#[test]
fn missing_nodes_name_the_kernel_option() {
    let cases = [
        (
            IommuMode::VfioType1Iommu,
            "/dev/vfio/vfio",
            "CONFIG_VFIO_CONTAINER",
        ),
        (
            IommuMode::IommufdCompatType1,
            "/dev/iommu",
            "CONFIG_IOMMUFD",
        ),
        (IommuMode::Iommufd, "/dev/iommu", "CONFIG_IOMMUFD"),
    ];
    for (mode, path, config) in cases {
        let (f, sys) = FakeSys::new();
        f.st().nodes.remove(&PathBuf::from(path));
        let e = Iommu::open_with(sys, mode).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::NodeMissing { .. }), "{mode}: {e}");
        assert!(msg.contains(path) && msg.contains(config), "{msg}");
        assert!(e.is_environment());
    }
    // The cdev needs CONFIG_VFIO_DEVICE_CDEV: no vfio-dev directory.
    let (f, sys) = FakeSys::new();
    f.st().dirs.remove(&PathBuf::from(format!(
        "/sys/bus/pci/devices/{BDF}/vfio-dev"
    )));
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(e.to_string().contains("CONFIG_VFIO_DEVICE_CDEV"), "{e}");
    assert!(e.is_environment());
}

#[test]
fn eperm_says_root_or_group_ownership() {
    let (f, sys) = FakeSys::new();
    f.st()
        .fail_open
        .insert(PathBuf::from("/dev/vfio/vfio"), Errno::EPERM);
    let e = Iommu::open_with(sys.clone(), IommuMode::VfioType1Iommu).unwrap_err();
    assert!(matches!(
        e,
        Error::PermissionDenied {
            errno: Errno::EPERM,
            ..
        }
    ));
    assert!(e.to_string().contains("root"));
    assert!(e.is_environment());
    assert_eq!(e.errno(), Some(Errno::EPERM));
    // EACCES on the group node.
    f.st().fail_open.clear();
    f.st()
        .fail_open
        .insert(PathBuf::from(format!("/dev/vfio/{GROUP}")), Errno::EACCES);
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(
        e.to_string().contains(BDF) && e.to_string().contains("ownership"),
        "{e}"
    );
}

#[test]
fn hugepages_unavailable_is_a_typed_skip() {
    let (f, sys) = FakeSys::new();
    fn huge(k: &MapKind) -> bool {
        matches!(k, MapKind::Hugetlb2M | MapKind::Hugetlb1G)
    }
    f.st().mmap_fail = Some((huge, Errno::ENOMEM));
    for (b, kib) in [(Backing::Hugetlb2M, 2048), (Backing::Hugetlb1G, 1048576)] {
        let e = DmaBuffer::new_with(sys.clone(), b, 0).unwrap_err();
        assert!(
            matches!(e, Error::HugepagesUnavailable { page_kib, .. } if page_kib == kib),
            "{e}"
        );
        assert!(e.to_string().contains("nr_hugepages"));
        assert!(e.is_environment());
    }
    // Anonymous memory is unaffected; an ENOMEM there is a plain failure.
    DmaBuffer::new_with(sys.clone(), Backing::Anonymous, 1).unwrap();
    fn anon(k: &MapKind) -> bool {
        matches!(k, MapKind::AnonymousPrivate)
    }
    f.st().mmap_fail = Some((anon, Errno::ENOMEM));
    let e = DmaBuffer::new_with(sys, Backing::Anonymous, 1).unwrap_err();
    assert!(!e.is_environment());
}

#[test]
fn bar_not_mmapable_is_a_skip_with_reason() {
    let (f, sys) = FakeSys::new();
    fn dev_map(k: &MapKind) -> bool {
        matches!(k, MapKind::Shared { .. })
    }
    f.st().mmap_fail = Some((dev_map, Errno::EINVAL));
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    let e = dev.bar_mapping(0).unwrap_err();
    assert!(e.to_string().contains("BAR0") && e.to_string().contains("mmap failed"));
    // BAR0 has sparse areas, but mapping them fails the same way.
    assert!(e.to_string().contains("sparse fallback"), "{e}");
    assert!(e.is_environment());
}

#[test]
fn a_bar_that_cannot_be_mapped_whole_is_mapped_by_its_sparse_areas() {
    let (f, sys) = FakeSys::new();
    // The whole 64 KiB BAR0 refuses mmap (as a BAR holding an MSI-X table did before
    // VFIO_REGION_INFO_CAP_MSIX_MAPPABLE); its areas 0..0x3000 and 0x4000..0x10000 map.
    f.st().mmap_fail_len = Some((0x1_0000, Errno::EINVAL));
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    let info = dev.bar_info(0).unwrap();
    assert_eq!(info.vaddr(), None, "not wholly mapped");
    assert_eq!(
        info.sparse_areas_mapped(),
        Some(vec![(0, 0x3000), (0x4000, 0xc000)])
    );
    assert!(info.unmapped_reason.as_deref().unwrap().contains("sparse"));
    assert_eq!(dev.bar_info(2).unwrap().sparse_areas_mapped(), None);
    let bar = PciFunction::bar(&dev, 0).unwrap();
    assert!(bar.is_sparse() && bar.as_ptr().is_null());
    assert_eq!(bar.len(), 0x1_0000);
    // Inside the areas: direct access, no file I/O.
    bar.write32(0x100, 0x1111_2222);
    bar.write64(0x4008, 0x3333_4444_5555_6666);
    assert_eq!(bar.read32(0x100), 0x1111_2222);
    assert_eq!(bar.read64(0x4008), 0x3333_4444_5555_6666);
    assert!(f.st().bar_rw.is_empty());
    // In the hole (the MSI-X table page): pread/pwrite of the region, same width.
    bar.write32(0x3008, 0xdead_beef);
    bar.write16(0x3ffe, 0xabcd);
    assert_eq!(bar.read32(0x3008), 0xdead_beef);
    assert_eq!(bar.read8(0x3009), 0xbe);
    assert_eq!(bar.read16(0x3ffe), 0xabcd);
    assert_eq!(
        f.st().bar_rw,
        vec![
            (true, 0x3008, 4),
            (true, 0x3ffe, 2),
            (false, 0x3008, 4),
            (false, 0x3009, 1),
            (false, 0x3ffe, 2)
        ]
    );
    // The last word of an area is direct; misaligned or out-of-range accesses read all ones
    // (writes are dropped) without touching the file.
    bar.write64(0x2ff8, 7);
    assert_eq!(bar.read64(0x2ff8), 7);
    assert_eq!(bar.read32(0x3002), u32::MAX);
    assert_eq!(bar.read64(0x3ffc), u64::MAX);
    assert_eq!(bar.read32(0x1_0000), u32::MAX);
    bar.write32(0x1_0000, 5);
    bar.write32(0x3001, 5);
    assert_eq!(f.st().bar_rw.len(), 5);
    // Portals need a direct mapping.
    let d = [0u8; 64];
    assert_eq!(bar.submit64(0x3000, &d), Err(PortalError::Unsupported));
    assert_eq!(
        bar.submit64(0x3020, &d),
        Err(PortalError::Misaligned { offset: 0x3020 })
    );
    assert!(matches!(
        bar.submit64(0x1_0000, &d),
        Err(PortalError::OutOfRange { .. })
    ));
    // The handle keeps the device file (for the hole) and the area mappings alive.
    drop(dev);
    drop(iommu);
    assert_eq!(bar.read32(0x3008), 0xdead_beef);
    assert_eq!(bar.read32(0x100), 0x1111_2222);
    assert_eq!(f.open_fd_count(), 1, "only the device fd, held by the BAR");
    drop(bar);
    assert_eq!(f.open_fd_count(), 0);
}

#[test]
fn api_version_mismatch_and_missing_extension() {
    let (f, sys) = FakeSys::new();
    f.st().api_version = 1;
    let e = Iommu::open_with(sys.clone(), IommuMode::VfioType1Iommu).unwrap_err();
    assert!(matches!(e, Error::ApiVersion { got: 1, .. }));
    f.st().api_version = 0;
    f.st().extensions.remove(&vb::VFIO_TYPE1_IOMMU);
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(
        matches!(e, Error::ExtensionUnsupported { iommu_type: 1, .. }),
        "{e}"
    );
    assert!(e.is_environment());
}

#[test]
fn injected_enodev_and_einval_are_failures_naming_the_ioctl() {
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    f.fail_next(nr::VFIO_GROUP_GET_DEVICE_FD, Errno::ENODEV);
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENODEV));
    assert!(e.to_string().contains("VFIO_GROUP_GET_DEVICE_FD") && e.to_string().contains(BDF));
    assert!(!e.is_environment());
    f.fail_next(nr::VFIO_DEVICE_GET_INFO, Errno::EINVAL);
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
}

// ---------------------------------------------------------------- shared IOMMU, SET_IOMMU race

#[test]
fn set_iommu_ebusy_from_a_racing_opener_is_tolerated() {
    let (f, sys) = FakeSys::new();
    f.st().set_iommu_busy = true;
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err(); // GET_DEVICE_FD fails: nobody set the IOMMU
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    let _d = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    // A second SET_IOMMU would answer EINVAL (already set); ours is skipped.
    iommu.container_set_iommu().unwrap();
    f.fail_next(nr::VFIO_SET_IOMMU, Errno::ENODEV);
    iommu.container_set_iommu().unwrap();
    assert!(
        f.requests()
            .iter()
            .filter(|&&r| r == nr::VFIO_SET_IOMMU)
            .count()
            == 1
    );
}

#[test]
fn set_iommu_other_errors_fail() {
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    f.fail_next(nr::VFIO_SET_IOMMU, Errno::EPERM);
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Os {
                errno: Errno::EPERM,
                op: "VFIO_SET_IOMMU",
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_environment());
}

#[test]
fn two_devices_of_one_group_share_the_group_fd() {
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    let a = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    let g = group_setup(&iommu, dev_bdf()).unwrap();
    assert!(Arc::ptr_eq(&g, a.group().unwrap()));
    // The fake refuses a second open of the group node; reuse means no second open happened.
    let b = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    assert!(Arc::ptr_eq(a.group().unwrap(), b.group().unwrap()));
    drop((a, b, g));
    drop(iommu);
    assert_eq!(f.open_fd_count(), 0);
}

// ---------------------------------------------------------------- DMA mapping

#[test]
fn map_unmap_tracks_regions_and_translates() {
    for mode in IommuMode::ALL {
        let (f, iommu, _dev) = open(mode);
        let buf = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, 3 * PAGE).unwrap();
        let m = iommu.map_buffer(&buf, 0x10_0000).unwrap();
        assert_eq!(m.size, 3 * PAGE);
        assert_eq!(f.st().mappings.len(), 1);
        assert_eq!(f.st().mappings[0].vaddr, buf.addr() as u64);
        assert_eq!(iommu.hva_to_iova(buf.addr() as u64 + 5).unwrap(), 0x10_0005);
        let e = iommu.hva_to_iova(buf.addr() as u64 + 3 * PAGE).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        assert_eq!(iommu.unmap_mapping(&m).unwrap(), 3 * PAGE, "{mode}");
        assert!(iommu.mappings().is_empty());
        assert!(iommu.hva_to_iova(buf.addr() as u64).is_err());
    }
}

#[test]
fn unmap_all_reports_total_bytes_and_clears_tracking() {
    for mode in IommuMode::ALL {
        let (f, iommu, _dev) = open(mode);
        let a = DmaBuffer::new_with(iommu.sys().clone(), Backing::AnonymousShared, PAGE).unwrap();
        let b = DmaBuffer::new_with(iommu.sys().clone(), Backing::Memfd, 2 * PAGE).unwrap();
        iommu.map_buffer(&a, 0x1000).unwrap();
        iommu.map_buffer(&b, 0x20_0000).unwrap();
        assert_eq!(iommu.unmap_all().unwrap(), 3 * PAGE, "{mode}");
        assert!(iommu.mappings().is_empty());
        assert!(f.st().mappings.is_empty());
    }
}

#[test]
fn overflowing_map_returns_the_kernels_errno() {
    for (errno, mode) in [
        (Errno::EOVERFLOW, IommuMode::Iommufd),
        (Errno::EINVAL, IommuMode::VfioType1Iommu),
    ] {
        let (f, iommu, _dev) = open(mode);
        f.st().overflow_errno = errno;
        f.st().ranges = vec![IovaRange::new(0, u64::MAX)];
        let iova = !(PAGE - 1); // the last page of the 64-bit space
        let buf = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, 2 * PAGE).unwrap();
        // SAFETY: `buf` outlives the attempted mapping (which fails anyway).
        let r = unsafe { iommu.try_map(buf.addr() as u64, iova, 2 * PAGE) };
        assert_eq!(r.unwrap_err(), errno);
        assert_eq!(iommu.try_unmap(iova, 2 * PAGE).unwrap_err(), errno);
        assert!(iommu.mappings().is_empty(), "failed maps are not tracked");
        // SAFETY: as above.
        let e = unsafe { iommu.map(buf.addr() as u64, iova, 2 * PAGE) }.unwrap_err();
        assert_eq!(e.errno(), Some(errno));
        assert!(e.to_string().contains(if mode == IommuMode::Iommufd {
            "IOMMU_IOAS_MAP"
        } else {
            "VFIO_IOMMU_MAP_DMA"
        }));
    }
}

#[test]
fn failed_unmap_keeps_tracking() {
    let (f, iommu, _dev) = open(IommuMode::VfioType1v2Iommu);
    let buf = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, PAGE).unwrap();
    iommu.map_buffer(&buf, 0x4000).unwrap();
    f.fail_next(nr::VFIO_IOMMU_UNMAP_DMA, Errno::EBUSY);
    assert_eq!(iommu.try_unmap(0x4000, PAGE).unwrap_err(), Errno::EBUSY);
    assert_eq!(iommu.mappings().len(), 1);
    f.fail_next(nr::VFIO_IOMMU_UNMAP_DMA, Errno::EINVAL);
    assert!(iommu.unmap_all().is_err());
    assert_eq!(iommu.mappings().len(), 1);
}

// ---------------------------------------------------------------- IOVA ranges

#[test]
fn iova_ranges_type1_capability_chain() {
    for mode in [IommuMode::VfioType1Iommu, IommuMode::IommufdCompatType1] {
        let (_f, iommu, _dev) = open(mode);
        let r = iommu.iova_ranges().unwrap();
        assert_eq!(
            r,
            vec![
                IovaRange::new(0, 0xfedf_ffff),
                IovaRange::new(0xfef0_0000, 0xffff_ffff_ffff)
            ]
        );
        let mut a = iommu.iova_allocator().unwrap();
        assert_eq!(a.alloc(1 << 30).unwrap(), 0);
        assert_eq!(a.alloc(1 << 30).unwrap(), 1 << 30);
    }
}

#[test]
fn iova_ranges_iommufd_probe_then_read_with_retry() {
    let (f, iommu, _dev) = open(IommuMode::Iommufd);
    f.st().ranges_grow_once = Some(IovaRange::new(0x1_0000_0000_0000, 0x1_0000_ffff_ffff));
    let r = iommu.iova_ranges().unwrap();
    assert_eq!(r.len(), 3, "the grown range was picked up by the retry");
    let calls = f
        .requests()
        .iter()
        .filter(|&&x| x == nr::IOMMU_IOAS_IOVA_RANGES)
        .count();
    assert_eq!(calls, 3, "probe, EMSGSIZE read, final read");
}

#[test]
fn iova_ranges_errors() {
    let (f, iommu, _dev) = open(IommuMode::Iommufd);
    f.fail_next(nr::IOMMU_IOAS_IOVA_RANGES, Errno::ENOTTY);
    let e = iommu.iova_ranges().unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOTTY));
    // Overlapping ranges from the kernel are rejected.
    f.st().ranges = vec![IovaRange::new(0, 0x2000), IovaRange::new(0x1000, 0x3000)];
    assert!(matches!(iommu.iova_ranges(), Err(Error::Malformed { .. })));
    let (f, iommu, _dev) = open(IommuMode::VfioType1Iommu);
    f.fail_next(nr::VFIO_IOMMU_GET_INFO, Errno::EINVAL);
    assert_eq!(
        iommu.iova_ranges().unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
}

// ---------------------------------------------------------------- config space

#[test]
fn config_space_rw_and_command_bits() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    assert_eq!(dev.config_readw(0).unwrap(), 0x1234);
    assert_eq!(dev.config_readw(2).unwrap(), 0x11e8);
    assert_eq!(dev.config_readl(0).unwrap(), 0x11e8_1234);
    assert!(dev.matches(0x1234, 0x11e8).unwrap());
    assert_eq!(
        dev.command_set(crate::device::PCI_COMMAND_MASTER).unwrap() & 4,
        4
    );
    assert_eq!(f.st().config[4] & 4, 4);
    assert_eq!(
        dev.command_clear(crate::device::PCI_COMMAND_MASTER)
            .unwrap()
            & 4,
        0
    );
    assert_eq!(f.st().config[4] & 4, 0);
    dev.config_writeb(0x3c, 0xab).unwrap();
    assert_eq!(PciFunction::config_read8(&dev, 0x3c).unwrap(), 0xab);
    assert!(matches!(
        dev.config_readl(0xfe),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(
        PciFunction::config_read32(&dev, 0x100).unwrap_err(),
        FunctionError::ConfigOutOfRange { offset: 0x100 }
    );
}

#[test]
fn short_config_transfer_is_reported() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    f.st().config.truncate(0x40); // the region still claims 256 bytes
    let e = dev.config_readl(0x3e).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShortTransfer {
                done: 2,
                want: 4,
                ..
            }
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------- interrupts

#[test]
fn msix_enable_trigger_pending_disable() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::MsiX, 0, 4).unwrap();
    for v in 0..4 {
        assert!(!dev.irq_pending(IrqKind::MsiX, v).unwrap());
        dev.irq_trigger(IrqKind::MsiX, v).unwrap();
        assert_eq!(dev.irq_take(IrqKind::MsiX, v).unwrap(), Some(1));
        assert!(
            !dev.irq_pending(IrqKind::MsiX, v).unwrap(),
            "the read consumed it"
        );
    }
    dev.irq_trigger(IrqKind::MsiX, 2).unwrap();
    assert_eq!(
        dev.irq_wait(IrqKind::MsiX, 2, Duration::from_millis(10))
            .unwrap(),
        1
    );
    let e = dev
        .irq_wait(IrqKind::MsiX, 2, Duration::from_millis(1))
        .unwrap_err();
    assert!(matches!(e, Error::IrqTimeout { vector: 2, .. }));
    assert!(e.to_string().contains(BDF));
    let (flags, index, start, count, fds) = f.st().set_irqs_log[0].clone();
    assert_eq!(
        flags,
        vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER
    );
    assert_eq!(
        (index, start, count, fds.len()),
        (vb::VFIO_PCI_MSIX_IRQ_INDEX, 0, 4, 4)
    );
    dev.irq_disable(IrqKind::MsiX).unwrap();
    assert_eq!(dev.irq_enabled_count(IrqKind::MsiX), 0);
    assert!(dev.irq_take(IrqKind::MsiX, 0).is_err());
}

#[test]
fn seam_irq_wait_takes_eventfd_counts_and_maps_timeout_to_zero() {
    use passthru_core::mmio::{FunctionError, PciFunction};
    let (_f, _iommu, dev) = open(IommuMode::Iommufd);
    assert_eq!(
        PciFunction::irq_wait(&dev, IrqKind::MsiX, 1, 1_000_000),
        Err(FunctionError::NoSuchVector {
            kind: IrqKind::MsiX,
            vector: 1
        }),
        "no eventfd yet"
    );
    dev.irq_enable(IrqKind::MsiX, 0, 2).unwrap();
    dev.irq_trigger(IrqKind::MsiX, 1).unwrap();
    dev.irq_trigger(IrqKind::MsiX, 1).unwrap();
    assert_eq!(
        PciFunction::irq_wait(&dev, IrqKind::MsiX, 1, 10_000_000),
        Ok(2),
        "both interrupts taken in one read"
    );
    assert_eq!(
        PciFunction::irq_wait(&dev, IrqKind::MsiX, 1, 1_000_000),
        Ok(0),
        "nothing pending: the timeout is Ok(0), not an error"
    );
    assert_eq!(
        PciFunction::irq_wait(&dev, IrqKind::MsiX, 5, 1_000_000),
        Err(FunctionError::NoSuchVector {
            kind: IrqKind::MsiX,
            vector: 5
        })
    );
}

#[test]
fn disable_closes_only_the_given_index() {
    let (f, _iommu, dev) = open(IommuMode::VfioType1Iommu);
    dev.irq_enable(IrqKind::Msi, 0, 2).unwrap();
    dev.irq_enable(IrqKind::Intx, 0, 1).unwrap();
    let msi_fd = dev.irq_eventfd(IrqKind::Msi, 1).unwrap();
    let intx_fd = dev.irq_eventfd(IrqKind::Intx, 0).unwrap();
    dev.irq_disable(IrqKind::Intx).unwrap();
    assert!(f.st().closed.contains(&intx_fd));
    assert!(!f.st().closed.contains(&msi_fd));
    assert_eq!(dev.irq_eventfd(IrqKind::Msi, 1), Some(msi_fd));
    let last = f.st().set_irqs_log.last().cloned().unwrap();
    assert_eq!(
        (last.0, last.1, last.3),
        (
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            vb::VFIO_PCI_INTX_IRQ_INDEX,
            0
        )
    );
}

#[test]
fn enable_rejects_busy_slots_and_out_of_range() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::MsiX, 2, 2).unwrap();
    assert!(
        dev.irq_enable(IrqKind::MsiX, 3, 1).is_err(),
        "slot 3 in use"
    );
    assert!(
        dev.irq_enable(IrqKind::MsiX, 15, 2).is_err(),
        "beyond 16 vectors"
    );
    assert!(dev.irq_enable(IrqKind::Msi, 0, 0).is_err(), "count 0");
    let before = f.open_fd_count();
    f.fail_next(nr::VFIO_DEVICE_SET_IRQS, Errno::EINVAL);
    let e = dev.irq_enable(IrqKind::MsiX, 0, 2).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert_eq!(
        f.open_fd_count(),
        before,
        "eventfds of a failed enable are closed"
    );
    assert_eq!(dev.irq_eventfd(IrqKind::MsiX, 0), None);
}

#[test]
fn reenable_after_reset_keeps_eventfds() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::MsiX, 1, 3).unwrap();
    let fds: Vec<_> = (1..4)
        .map(|v| dev.irq_eventfd(IrqKind::MsiX, v).unwrap())
        .collect();
    dev.reset().unwrap();
    assert_eq!(f.st().resets, 1);
    assert!(
        dev.irq_trigger(IrqKind::MsiX, 1).is_err(),
        "reset tore the trigger down"
    );
    dev.irq_reenable(IrqKind::MsiX).unwrap();
    let log = f.st().set_irqs_log.clone();
    let (off, on) = (&log[log.len() - 2], &log[log.len() - 1]);
    assert_eq!(
        (off.0, off.3),
        (
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            0
        )
    );
    assert_eq!((on.2, on.3), (1, 3));
    assert_eq!(on.4, fds);
    dev.irq_trigger(IrqKind::MsiX, 3).unwrap();
    assert!(dev.irq_pending(IrqKind::MsiX, 3).unwrap());
}

#[test]
fn intx_unmask_request() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::Intx, 0, 1).unwrap();
    dev.intx_unmask().unwrap();
    let last = f.st().set_irqs_log.last().cloned().unwrap();
    assert_eq!(
        (last.0, last.1, last.2, last.3),
        (
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK,
            0,
            0,
            1
        )
    );
}

#[test]
fn pci_function_irq_and_reset_paths() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    PciFunction::irq_enable(&dev, IrqKind::Msi, 0, 1).unwrap();
    PciFunction::irq_disable(&dev, IrqKind::Msi).unwrap();
    PciFunction::reset(&dev).unwrap();
    f.st().device_flags &= !vb::VFIO_DEVICE_FLAGS_RESET;
    drop(dev);
    let (_f, sys) = (f.clone(), Arc::new(f.clone()) as Arc<dyn crate::sys::Sys>);
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    let e = dev.reset().unwrap_err();
    assert!(e.is_environment());
    assert_eq!(
        PciFunction::reset(&dev).unwrap_err(),
        FunctionError::Unsupported("VFIO_DEVICE_RESET")
    );
}

// ---------------------------------------------------------------- VF token and cdev steps

#[test]
fn vf_token_on_the_group_path_is_appended_to_the_name() {
    let token: VfToken = TOKEN.parse().unwrap();
    let (f, sys) = FakeSys::new();
    f.st().required_token = Some(token.0);
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    // A token mismatch is an ioctl EACCES: a failure, not a permission skip.
    assert!(
        matches!(
            e,
            Error::Os {
                errno: Errno::EACCES,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_environment());
    let g = group_setup(&iommu, dev_bdf()).unwrap();
    let wrong: VfToken = "00000000-0000-0000-0000-000000000001".parse().unwrap();
    assert_eq!(
        g.get_device_fd(BDF, Some(&wrong)).unwrap_err(),
        Errno::EACCES
    );
    let fd = g.get_device_fd(BDF, Some(&token)).unwrap();
    drop(fd);
    assert!(f
        .st()
        .device_names_requested
        .contains(&format!("{BDF} vf_token={TOKEN}")));
    let dev = VfioPciDevice::open_with_token(dev_bdf(), &iommu, Some(&token)).unwrap();
    drop(dev);
}

#[test]
fn vf_token_on_the_cdev_path_uses_the_bind_flag() {
    let token: VfToken = TOKEN.parse().unwrap();
    let (f, sys) = FakeSys::new();
    f.st().required_token = Some(token.0);
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    assert!(VfioPciDevice::open(dev_bdf(), &iommu).is_err());
    let dev = VfioPciDevice::open_with_token(dev_bdf(), &iommu, Some(&token)).unwrap();
    assert_eq!(dev.devid(), Some(42));
}

#[test]
fn set_vf_token_feature_payload() {
    let token: VfToken = TOKEN.parse().unwrap();
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.set_vf_token(&token).unwrap();
    assert_eq!(f.st().pf_token, Some(token.0));
    f.fail_next(nr::VFIO_DEVICE_FEATURE, Errno::EINVAL);
    assert_eq!(
        dev.set_vf_token(&token).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
}

#[test]
fn cdev_steps_for_the_iommufd_setup_test() {
    let (f, sys) = FakeSys::new();
    assert_eq!(
        cdev_path(&*sys, dev_bdf()).unwrap(),
        PathBuf::from("/dev/vfio/devices/vfio3")
    );
    let iommufd = open_iommufd(sys.clone()).unwrap();
    let cdev = Cdev::open(sys.clone(), dev_bdf()).unwrap();
    // get_info_without_bind_fails
    assert!(cdev.get_info().is_err());
    // bind_bad_iommufd_fails
    assert_eq!(cdev.bind(-2, None).unwrap_err(), Errno::EBADF);
    // bind, then get_info works
    assert_eq!(cdev.bind(iommufd.raw(), None).unwrap(), 42);
    assert!(cdev.get_info().unwrap().is_pci());
    // repeated_bind_fails
    assert!(cdev.bind(iommufd.raw(), None).is_err());
    // attach_invalid_pt_fails
    assert!(cdev.attach_pt(u32::MAX).is_err());
    // attach_detatch_pt
    let ioas = crate::iommufd::ioas_alloc(&*sys, iommufd.raw()).unwrap();
    assert_eq!(cdev.attach_pt(ioas).unwrap(), ioas);
    cdev.detach_pt().unwrap();
    assert_eq!(f.st().attached, None);
    drop(cdev);
    drop(iommufd);
    assert_eq!(f.open_fd_count(), 0);
}

#[test]
fn adopting_a_cdev_fd_binds_unless_already_bound() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys.clone(), IommuMode::Iommufd).unwrap();
    let raw = sys
        .open(std::path::Path::new("/dev/vfio/devices/vfio3"), false)
        .unwrap();
    // SAFETY: the fake's fd numbers are not real descriptors; OwnedFd is only used to carry the
    // number into the adopting constructor, which closes it through the fake.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    let dev = VfioPciDevice::from_cdev_fd(dev_bdf(), &iommu, owned, false).unwrap();
    assert_eq!(dev.devid(), Some(42));
    assert_eq!(f.st().attached, iommu.ioas_id());
    // Container modes refuse.
    let c = Iommu::open_with(sys.clone(), IommuMode::VfioType1Iommu).unwrap();
    let raw2 = sys
        .open(std::path::Path::new("/dev/vfio/devices/vfio3"), false)
        .unwrap();
    // SAFETY: as above.
    let owned2 = unsafe { OwnedFd::from_raw_fd(raw2) };
    let e = VfioPciDevice::from_cdev_fd(dev_bdf(), &c, owned2, true).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
}

// ---------------------------------------------------------------- memory

#[test]
fn dma_buffers_round_sizes_and_expose_regions() {
    let (_f, sys) = FakeSys::new();
    let b = DmaBuffer::new_with(sys.clone(), Backing::Anonymous, 0).unwrap();
    assert_eq!(b.len() as u64, crate::memory::base_page_size());
    let h = DmaBuffer::new_with(sys.clone(), Backing::Hugetlb2M, 1).unwrap();
    assert_eq!(h.len(), 2 << 20);
    assert_eq!(h.backing().name(), "anonymous_hugetlb_2mb");
    let m = DmaBuffer::new_with(sys, Backing::Memfd, 5000).unwrap();
    assert_eq!(m.len(), 8192);
    let r = m.region(0x8000);
    r.write_u32(4, 7).unwrap();
    assert_eq!(r.read_u32(4).unwrap(), 7);
    assert_eq!(r.iova_at(4).unwrap(), 0x8004);
    let leaked = DmaBuffer::anonymous(PAGE).unwrap().leak_region(0x1000);
    leaked.fill(0, PAGE as usize, 0x5a).unwrap();
    assert_eq!(leaked.read_u8(PAGE as usize - 1).unwrap(), 0x5a);
}

#[test]
fn unmap_of_a_covering_range_forgets_inner_mappings_only() {
    let (_f, iommu, _dev) = open(IommuMode::Iommufd);
    let a = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, PAGE).unwrap();
    let b = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, PAGE).unwrap();
    iommu.map_buffer(&a, 0x1000).unwrap();
    iommu.map_buffer(&b, 0x9000).unwrap();
    assert_eq!(iommu.unmap(0, 0x8000).unwrap(), PAGE);
    assert_eq!(iommu.mappings().len(), 1);
    assert_eq!(iommu.mappings()[0].iova, 0x9000);
}

#[test]
fn vfio_pci_variant_drivers_are_accepted() {
    assert!(crate::group::is_vfio_pci_driver("vfio-pci"));
    assert!(crate::group::is_vfio_pci_driver("mlx5_vfio_pci"));
    assert!(crate::group::is_vfio_pci_driver("nvgrace-gpu-vfio-pci"));
    assert!(!crate::group::is_vfio_pci_driver("igb"));
    assert!(!crate::group::is_vfio_pci_driver("vfio-pcie"));
}

#[test]
fn sub_page_bar_maps_one_page_but_exposes_its_size() {
    let (f, sys) = FakeSys::new();
    f.st().bar_sizes[4] = 0x100;
    let iommu = Iommu::open_with(sys, IommuMode::Iommufd).unwrap();
    let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
    let b = dev.bar_info(4).unwrap();
    assert_eq!(b.mapped_len(), Some(PAGE as usize));
    assert_eq!(b.vaddr().unwrap() % PAGE as usize, 0);
    assert_eq!(dev.bar_mapping(4).unwrap().len(), 0x100);
}

#[test]
fn handles_are_send_and_sync_for_parallel_init() {
    fn check<T: Send + Sync>() {}
    check::<Iommu>();
    check::<VfioPciDevice>();
    check::<DmaBuffer>();
    check::<crate::group::Group>();
}

#[test]
fn parallel_opens_on_one_container_share_the_group() {
    let (f, sys) = FakeSys::new();
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1v2Iommu).unwrap();
    let devs: Vec<VfioPciDevice> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| VfioPciDevice::open(dev_bdf(), &iommu).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for d in &devs[1..] {
        assert!(Arc::ptr_eq(d.group().unwrap(), devs[0].group().unwrap()));
    }
    assert_eq!(
        f.requests()
            .iter()
            .filter(|&&r| r == nr::VFIO_SET_IOMMU)
            .count(),
        1
    );
}

#[test]
fn bar_ranges_can_be_iommu_mapped_and_bounds_are_checked() {
    let (f, iommu, dev) = open(IommuMode::VfioType1v2Iommu);
    let m = iommu
        .try_map_bar(&dev, 2, 0, 0x20_0000, 0x4000_0000)
        .unwrap();
    assert_eq!(m.vaddr, dev.bar_info(2).unwrap().vaddr().unwrap() as u64);
    assert_eq!(f.st().mappings.len(), 1);
    assert_eq!(
        iommu
            .try_map_bar(&dev, 2, 0x1000, 0x20_0000, 0)
            .unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        iommu.try_map_bar(&dev, 1, 0, 0x1000, 0).unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        iommu.try_map_bar(&dev, 2, 0, 0, 0).unwrap_err(),
        Errno::EINVAL
    );
    let skewed = dev.mmap_bar_at(2, 1 << 30, PAGE).unwrap();
    let m2 = iommu.try_map_mmap(&skewed, 0, PAGE, 0x8000_0000).unwrap();
    assert_eq!(m2.vaddr % (1 << 30), PAGE);
}

// ---------------------------------------------------------------- the real kernel (no VFIO needed)

mod real {
    use super::*;
    use crate::irq::{eventfd_signal, eventfd_take, eventfd_wait};
    use crate::region::reserve_aligned;
    use crate::sys::{IoctlArg, RealSys, SysFd};

    #[test]
    fn eventfd_take_and_wait_on_a_real_eventfd() {
        let sys = RealSys::shared();
        let fd = SysFd::eventfd(&sys).unwrap();
        assert_eq!(eventfd_take(&*sys, fd.raw()).unwrap(), None);
        eventfd_signal(&*sys, fd.raw()).unwrap();
        eventfd_signal(&*sys, fd.raw()).unwrap();
        assert_eq!(eventfd_take(&*sys, fd.raw()).unwrap(), Some(2));
        let t = std::time::Instant::now();
        assert_eq!(
            eventfd_wait(&*sys, fd.raw(), Duration::from_millis(20)).unwrap(),
            None
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
        eventfd_signal(&*sys, fd.raw()).unwrap();
        assert_eq!(
            eventfd_wait(&*sys, fd.raw(), Duration::from_secs(1)).unwrap(),
            Some(1)
        );
    }

    #[test]
    fn ioctl_errno_passes_through() {
        let sys = RealSys::shared();
        let fd = SysFd::eventfd(&sys).unwrap();
        // SAFETY: VFIO_GET_API_VERSION takes no argument; an eventfd rejects it.
        let r = unsafe { sys.ioctl(fd.raw(), nr::VFIO_GET_API_VERSION, IoctlArg::None) };
        assert_eq!(r.unwrap_err(), Errno::ENOTTY);
    }

    #[test]
    fn reserve_aligned_honours_alignment_and_skew() {
        let sys = RealSys::shared();
        for (align, skew) in [
            (1usize << 30, 0usize),
            (1 << 30, PAGE as usize),
            (1 << 21, 0),
        ] {
            let r = reserve_aligned(&sys, 3 * PAGE as usize + 1, align, skew).unwrap();
            assert_eq!(r.addr() % align, skew);
            assert_eq!(r.len(), 4 * PAGE as usize, "rounded up to pages");
        }
        assert_eq!(
            reserve_aligned(&sys, 4096, 3, 0).unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(
            reserve_aligned(&sys, 4096, 4096, 4096).unwrap_err(),
            Errno::EINVAL
        );
    }

    #[test]
    fn memfd_and_shared_buffers_are_usable() {
        for b in [Backing::Memfd, Backing::AnonymousShared, Backing::Anonymous] {
            let buf = DmaBuffer::new(b, 3 * PAGE).unwrap();
            let r = buf.region(0);
            r.write_u64(8, 0x0123_4567_89ab_cdef).unwrap();
            assert_eq!(r.read_u64(8).unwrap(), 0x0123_4567_89ab_cdef);
            assert_eq!(buf.len(), 3 * PAGE as usize);
        }
    }

    #[test]
    fn vfio_container_node_decides_node_missing() {
        // Both kinds of host assert something: without the node the open is a NodeMissing
        // SKIP naming it; with it, whatever else happens (success, EPERM, no type1 support),
        // the error is never NodeMissing.
        let present = std::path::Path::new("/dev/vfio/vfio").exists();
        match Iommu::open(IommuMode::VfioType1Iommu) {
            Ok(_) => assert!(present, "opened a container that does not exist"),
            Err(e) if present => {
                assert!(!matches!(e, Error::NodeMissing { .. }), "{e}")
            }
            Err(e) => {
                assert!(matches!(e, Error::NodeMissing { .. }), "{e}");
                assert!(e.to_string().contains("/dev/vfio/vfio"), "{e}");
                assert!(e.is_environment());
            }
        }
    }
}

#[test]
fn populated_buffers_are_resident_and_plain_ones_are_not() {
    fn resident_pages(buf: &DmaBuffer) -> usize {
        let pages = buf.len() / PAGE as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is a live mapping owned by `buf`; `vec` has one byte per page.
        let r = unsafe { libc::mincore(buf.as_ptr().cast(), buf.len(), vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }
    let p = DmaBuffer::new_populated(Backing::AnonymousShared, 8 * PAGE).unwrap();
    assert_eq!(resident_pages(&p), 8);
    let q = DmaBuffer::new(Backing::Anonymous, 8 * PAGE).unwrap();
    assert_eq!(resident_pages(&q), 0);
}

#[test]
fn reenable_fills_gaps_with_minus_one() {
    let (f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::MsiX, 0, 1).unwrap();
    dev.irq_enable(IrqKind::MsiX, 2, 1).unwrap();
    let a = dev.irq_eventfd(IrqKind::MsiX, 0).unwrap();
    let c = dev.irq_eventfd(IrqKind::MsiX, 2).unwrap();
    dev.irq_reenable(IrqKind::MsiX).unwrap();
    let on = f.st().set_irqs_log.last().cloned().unwrap();
    assert_eq!((on.2, on.3), (0, 3));
    assert_eq!(on.4, vec![a, -1, c]);
    // Nothing held: no ioctl at all.
    let n = f.st().set_irqs_log.len();
    dev.irq_reenable(IrqKind::Msi).unwrap();
    assert_eq!(f.st().set_irqs_log.len(), n);
}

mod fuzz {
    use proptest::prelude::*;

    use crate::container::parse_iova_ranges;
    use crate::region::{parse_region_caps, RegionInfo};
    use crate::sys::cap_chain;

    proptest! {
        #[test]
        fn capability_parsers_never_panic_on_garbage(
            buf in proptest::collection::vec(any::<u8>(), 0..512),
            first in any::<u32>(),
        ) {
            if let Ok(caps) = cap_chain(&buf, first, 24) {
                // Every reported cap lies inside the buffer, after the header, with no repeats.
                for c in &caps {
                    prop_assert!(c.offset >= 24 && c.offset + 8 <= buf.len());
                }
                let mut offs: Vec<usize> = caps.iter().map(|c| c.offset).collect();
                offs.sort();
                offs.dedup();
                prop_assert_eq!(offs.len(), caps.len());
            }
            let _ = parse_iova_ranges(&buf);
            let mut info = RegionInfo::default();
            let _ = parse_region_caps(&buf, first, &mut info);
        }
    }
}

#[test]
fn group_busy_elsewhere_is_reported_with_the_node() {
    let (f, sys) = FakeSys::new();
    f.st()
        .fail_open
        .insert(PathBuf::from(format!("/dev/vfio/{GROUP}")), Errno::EBUSY);
    let iommu = Iommu::open_with(sys, IommuMode::VfioType1Iommu).unwrap();
    let e = VfioPciDevice::open(dev_bdf(), &iommu).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EBUSY));
    assert!(e.to_string().contains(&format!("/dev/vfio/{GROUP}")), "{e}");
}

#[test]
fn unbounded_wait_does_not_overflow() {
    let (_f, _iommu, dev) = open(IommuMode::Iommufd);
    dev.irq_enable(IrqKind::Msi, 0, 1).unwrap();
    dev.irq_trigger(IrqKind::Msi, 0).unwrap();
    assert_eq!(dev.irq_wait(IrqKind::Msi, 0, Duration::MAX).unwrap(), 1);
}

#[test]
fn device_level_detach_and_reattach() {
    let (f, iommu, dev) = open(IommuMode::Iommufd);
    dev.detach_pt().unwrap();
    assert_eq!(f.st().attached, None);
    assert_eq!(dev.detach_pt().unwrap_err(), Errno::EINVAL);
    let ioas = iommu.ioas_id().unwrap();
    assert_eq!(dev.attach_pt(ioas).unwrap(), ioas);
    assert_eq!(dev.attach_pt(u32::MAX).unwrap_err(), Errno::ENOENT);
    let (_f, _iommu, gdev) = open(IommuMode::VfioType1Iommu);
    // Not a cdev: the kernel refuses (the exact errno is the kernel's business).
    assert!(gdev.detach_pt().is_err());
}

#[test]
fn every_error_message_is_one_line_and_names_its_subject() {
    let bdf = || BDF.to_string();
    let cases: Vec<(Error, &str)> = vec![
        (Error::InvalidBdf { bdf: "x".into() }, "\"x\""),
        (Error::DeviceNotFound { bdf: bdf() }, BDF),
        (
            Error::NotBoundToVfio {
                bdf: bdf(),
                driver: Some("igb".into()),
            },
            "igb",
        ),
        (Error::NoIommuGroup { bdf: bdf() }, BDF),
        (
            Error::GroupNotViable {
                bdf: bdf(),
                group: 3,
                culprit: None,
            },
            "group 3",
        ),
        (
            Error::NodeMissing {
                path: "/dev/iommu".into(),
                config: "CONFIG_IOMMUFD",
                bdf: Some(bdf()),
            },
            BDF,
        ),
        (
            Error::PermissionDenied {
                what: format!("{BDF}: open"),
                path: "/dev/vfio/7".into(),
                errno: Errno::EPERM,
            },
            "/dev/vfio/7",
        ),
        (
            Error::HugepagesUnavailable {
                page_kib: 2048,
                size: 1 << 21,
                errno: Errno::ENOMEM,
            },
            "hugepages-2048kB",
        ),
        (
            Error::BarNotMappable {
                bdf: bdf(),
                bar: 2,
                reason: "r".into(),
            },
            "BAR2",
        ),
        (
            Error::UnknownIommuMode { name: "m".into() },
            "iommufd_compat_type1v2",
        ),
        (
            Error::ApiVersion {
                path: "/dev/vfio/vfio".into(),
                got: 9,
            },
            "/dev/vfio/vfio",
        ),
        (
            Error::ExtensionUnsupported {
                bdf: bdf(),
                path: "/dev/vfio/vfio".into(),
                iommu_type: 3,
            },
            "CONFIG_VFIO_IOMMU_TYPE1",
        ),
        (
            Error::Os {
                who: bdf(),
                op: "VFIO_DEVICE_RESET",
                errno: Errno::EIO,
            },
            "VFIO_DEVICE_RESET",
        ),
        (
            Error::ShortTransfer {
                bdf: bdf(),
                op: "config read",
                offset: 4,
                done: 1,
                want: 2,
            },
            BDF,
        ),
        (
            Error::InvalidArgument {
                who: bdf(),
                reason: "why".into(),
            },
            "why",
        ),
        (
            Error::Malformed {
                who: bdf(),
                what: "caps",
                reason: "loop".into(),
            },
            "loop",
        ),
        (Error::IovaExhausted { size: 4096 }, "0x1000"),
        (Error::NotMapped { vaddr: 0x1234 }, "0x1234"),
        (
            Error::IrqTimeout {
                bdf: bdf(),
                kind: "MSI-X",
                vector: 1,
                timeout_ms: 5,
            },
            "MSI-X",
        ),
        (
            Error::Unsupported {
                bdf: bdf(),
                what: "reset".into(),
            },
            "reset",
        ),
    ];
    for (e, needle) in cases {
        let m = e.to_string();
        assert!(!m.contains('\n'), "{m}");
        assert!(m.contains(needle), "{m:?} lacks {needle:?}");
        // Skip-class errors say how to fix the environment.
        if e.is_environment() {
            assert!(
                [
                    "bind",
                    "enable",
                    "build",
                    "run as root",
                    "reserve",
                    "use ",
                    "check",
                    "put it"
                ]
                .iter()
                .any(|w| m.contains(w)),
                "{m}"
            );
        }
    }
}

#[test]
fn last_group_leaving_resets_a_legacy_container() {
    for mode in [IommuMode::VfioType1Iommu, IommuMode::IommufdCompatType1v2] {
        let (f, sys) = FakeSys::new();
        let iommu = Iommu::open_with(sys, mode).unwrap();
        let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
        let buf = DmaBuffer::new_with(iommu.sys().clone(), Backing::Anonymous, PAGE).unwrap();
        iommu.map_buffer(&buf, 0x1000).unwrap();
        drop(dev);
        let legacy = mode == IommuMode::VfioType1Iommu;
        assert_eq!(iommu.mappings().is_empty(), legacy, "{mode}");
        assert_eq!(f.st().mappings.is_empty(), legacy, "{mode}");
        // Reopening sets the IOMMU again (the kernel forgot it) and mapping works.
        let dev = VfioPciDevice::open(dev_bdf(), &iommu).unwrap();
        let sets = f
            .requests()
            .iter()
            .filter(|&&r| r == nr::VFIO_SET_IOMMU)
            .count();
        assert_eq!(sets, 2, "{mode}");
        if legacy {
            iommu.map_buffer(&buf, 0x1000).unwrap();
        }
        assert_eq!(iommu.mappings().len(), 1);
        drop(dev);
    }
}

#[test]
fn bdf_display_is_the_canonical_spelling() {
    use crate::bdf::Bdf;
    for (segment, bus, device, function) in [
        (0u16, 0u8, 4u8, 0u8),
        (0xabcd, 0xff, 0x1f, 7),
        (0x0010, 0x0a, 0x00, 0x1f),
    ] {
        let b = Bdf {
            segment,
            bus,
            device,
            function,
        };
        let want = format!("{segment:04x}:{bus:02x}:{device:02x}.{function:x}");
        assert_eq!(b.to_string(), want);
        assert_eq!(b.canonical_string(), want);
    }
}

#[test]
fn sysfd_owns_only_what_its_sys_created_and_closes_it_once() {
    let (f, sys) = FakeSys::new();
    let before = f.open_fd_count();
    let a = crate::sys::SysFd::eventfd(&sys).unwrap();
    let b = crate::sys::SysFd::memfd(&sys, "t").unwrap();
    assert_ne!(a.raw(), b.raw());
    assert_eq!(f.open_fd_count(), before + 2);
    drop(a);
    assert_eq!(
        f.open_fd_count(),
        before + 1,
        "dropping closes exactly its own fd"
    );
    drop(b);
    assert_eq!(f.open_fd_count(), before);
}
