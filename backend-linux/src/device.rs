//! [`VfioPciDevice`]: one PCI function opened through VFIO (group/container or cdev/iommufd),
//! with device, region and IRQ info, BAR mmaps, config-space access, reset and the VF token
//! feature. It implements [`PciFunction`] so every driver runs on it.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use passthru_core::mmio::{
    FunctionError, IrqKind, PciFunction, PortalError, RegisterIo, VolatileBar,
};
use vfio_bindings::bindings::vfio as vb;

use crate::bdf::Bdf;
use crate::cdev::Cdev;
use crate::error::{Error, Result};
use crate::group::{group_setup_at, Group};
use crate::iommu::Iommu;
use crate::irq::{get_irq_info, slot, IrqInfo, IrqState};
use crate::memory::base_page_size;
use crate::region::{bar_alignment, get_region_info, mmap_region, Mmap, RegionInfo};
use crate::sys::{
    cap_chain, ioctl_plain, nr, read_plain, with_data, write_plain, Errno, IoctlArg, Sys, SysFd,
};
use crate::token::VfToken;

/// PCI_COMMAND offset in configuration space.
pub const PCI_COMMAND: u16 = 0x04;
/// PCI_COMMAND_MASTER (bus master enable).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// PCI_COMMAND_MEMORY (memory space enable).
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// PCI_COMMAND_INTX_DISABLE.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// What VFIO_DEVICE_GET_INFO says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// VFIO_DEVICE_FLAGS_* bits.
    pub flags: u32,
    /// Number of regions (max index + 1).
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// VFIO_DEVICE_FLAGS_RESET: the device supports VFIO_DEVICE_RESET.
    pub fn supports_reset(&self) -> bool {
        self.flags & vb::VFIO_DEVICE_FLAGS_RESET != 0
    }
    /// VFIO_DEVICE_FLAGS_PCI.
    pub fn is_pci(&self) -> bool {
        self.flags & vb::VFIO_DEVICE_FLAGS_PCI != 0
    }
}

/// VFIO_DEVICE_GET_INFO.
pub fn device_get_info(sys: &dyn Sys, fd: RawFd) -> Result<DeviceInfo, Errno> {
    let mut di = vb::vfio_device_info {
        argsz: std::mem::size_of::<vb::vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: a vfio_device_info; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_GET_INFO, &mut di) }?;
    Ok(DeviceInfo {
        flags: di.flags,
        num_regions: di.num_regions,
        num_irqs: di.num_irqs,
    })
}

/// The capability chain of VFIO_DEVICE_GET_INFO (VFIO_DEVICE_FLAGS_CAPS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceCaps {
    /// VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP: the root port's AtomicOp completer support as
    /// VFIO_PCI_ATOMIC_COMP32 / _COMP64 / _COMP128 bits, if the capability is present.
    pub pci_atomic_comp: Option<u32>,
    /// Every capability of the chain as (id, version), in chain order, including those not
    /// decoded here (the s390 zPCI ones, VFIO_DEVICE_INFO_CAP_ZPCI_*).
    pub caps: Vec<(u16, u16)>,
}

/// Decode the device-info capability chain in `buf` (a vfio_device_info followed by its
/// capabilities) starting at `first`. The walk is bounded and rejects cycles, offsets into the
/// fixed header and capabilities that do not fit in the buffer.
pub fn parse_device_caps(buf: &[u8], first: u32) -> Result<DeviceCaps, String> {
    let base = std::mem::size_of::<vb::vfio_device_info>();
    let mut out = DeviceCaps::default();
    for cap in cap_chain(buf, first, base)? {
        out.caps.push((cap.id, cap.version));
        if cap.id as u32 == vb::VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP {
            let size = std::mem::size_of::<vb::vfio_device_info_cap_pci_atomic_comp>();
            let flags = buf
                .get(cap.offset..)
                .filter(|rest| rest.len() >= size)
                .and_then(|_| read_plain::<u32>(buf, cap.offset + 8))
                .ok_or_else(|| format!("PCI atomic capability at {:#x} truncated", cap.offset))?;
            out.pci_atomic_comp = Some(flags);
        }
    }
    Ok(out)
}

/// Upper bound on a device-info buffer the kernel may ask for (64 KiB).
const MAX_DEVICE_INFO: u32 = 1 << 16;

/// VFIO_DEVICE_GET_INFO with its capability chain: asks once with the bare structure and, if
/// the kernel reports capabilities (VFIO_DEVICE_FLAGS_CAPS and a larger argsz), again with a
/// buffer of the size it asked for (at most 64 KiB). A malformed chain is EPROTO.
pub fn device_get_info_caps(sys: &dyn Sys, fd: RawFd) -> Result<DeviceCaps, Errno> {
    let base = std::mem::size_of::<vb::vfio_device_info>() as u32;
    let mut di = vb::vfio_device_info {
        argsz: base,
        ..Default::default()
    };
    // SAFETY: a vfio_device_info; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_GET_INFO, &mut di) }?;
    if di.flags & vb::VFIO_DEVICE_FLAGS_CAPS == 0 || di.argsz <= base {
        return Ok(DeviceCaps::default());
    }
    let want = di.argsz.min(MAX_DEVICE_INFO);
    let mut buf = vec![0u8; want as usize];
    let hdr = vb::vfio_device_info {
        argsz: want,
        ..Default::default()
    };
    write_plain(&mut buf, 0, &hdr);
    // SAFETY: `buf` starts with a vfio_device_info whose argsz is buf.len(); no pointers.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_GET_INFO, IoctlArg::Buf(&mut buf)) }?;
    let di: vb::vfio_device_info = read_plain(&buf, 0).ok_or(Errno::EPROTO)?;
    if di.flags & vb::VFIO_DEVICE_FLAGS_CAPS == 0 || di.cap_offset == 0 {
        return Ok(DeviceCaps::default());
    }
    parse_device_caps(&buf, di.cap_offset).map_err(|_| Errno::EPROTO)
}

/// VFIO_DEVICE_FEATURE SET | PCI_VF_TOKEN with a 16-byte UUID (on a PF).
pub fn set_vf_token(sys: &dyn Sys, fd: RawFd, token: &VfToken) -> Result<(), Errno> {
    let payload = token.as_bytes();
    let header = vb::vfio_device_feature {
        argsz: (std::mem::size_of::<vb::vfio_device_feature>() + payload.len()) as u32,
        flags: vb::VFIO_DEVICE_FEATURE_SET | vb::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
        ..Default::default()
    };
    let mut buf = with_data(&header, payload);
    // SAFETY: a vfio_device_feature header followed by its 16-byte payload; no pointers.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_FEATURE, IoctlArg::Buf(&mut buf)) }.map(|_| ())
}

/// VFIO_DEVICE_RESET.
pub fn device_reset(sys: &dyn Sys, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_RESET, IoctlArg::None) }.map(|_| ())
}

/// One BAR: its region info and, if it could be mapped, the mapping.
#[derive(Debug)]
pub struct Bar {
    /// Region info.
    pub info: RegionInfo,
    map: Option<Arc<BarMapping>>,
    /// Why it is not (wholly) mapped: not mmap-able, size 0, or the mmap errno. For a BAR mapped
    /// only through its sparse-mmap areas ([`Bar::sparse_areas_mapped`]) this says so too.
    pub unmapped_reason: Option<String>,
}

impl Bar {
    /// The mapping address, if the whole BAR is mapped.
    ///
    /// A raw address: it stays mapped while the device, or any [`VfioBar`] of this BAR, is
    /// alive. Hold a [`VfioBar`] (from [`VfioPciDevice::bar_mapping`]) for as long as you use
    /// the address after the device may have been dropped.
    pub fn vaddr(&self) -> Option<usize> {
        self.map.as_ref().and_then(|m| m.whole).map(|(a, _)| a)
    }
    /// The mapping length (the region size, rounded up to a whole page), if the whole BAR is
    /// mapped.
    pub fn mapped_len(&self) -> Option<usize> {
        self.map.as_ref().and_then(|m| m.whole).map(|(_, l)| l)
    }
    /// The (offset, length) of each mapped sparse-mmap area, if the whole-BAR mmap failed and
    /// the BAR was mapped area by area instead (see [`VfioBar`]).
    pub fn sparse_areas_mapped(&self) -> Option<Vec<(usize, usize)>> {
        self.map
            .as_ref()
            .filter(|m| m.whole.is_none())
            .map(|m| m.windows.iter().map(|w| (w.offset, w.io.len())).collect())
    }
}

/// One directly mapped window of a BAR.
#[derive(Debug)]
struct Window {
    /// Offset of the window within the BAR.
    offset: usize,
    io: VolatileBar,
}

/// The device file and region offset, for BAR accesses outside every mapped window.
#[derive(Debug)]
struct RegionFile {
    fd: Arc<SysFd>,
    offset: u64,
    readable: bool,
    writable: bool,
}

/// One BAR's mmaps, shared by the device and every [`VfioBar`] handed out for it; unmapped when
/// the last of them is dropped.
#[derive(Debug)]
struct BarMapping {
    /// The register window: the region size (a sub-page BAR maps a whole page).
    len: usize,
    /// Directly mapped windows: the whole BAR, or its sparse-mmap areas.
    windows: Vec<Window>,
    /// Address and length of the whole-BAR mapping, if that is what `windows` holds.
    whole: Option<(usize, usize)>,
    /// pread/pwrite of the region for offsets outside `windows` (sparse case only).
    fallback: Option<RegionFile>,
    /// The mappings behind `windows`; the `VolatileBar`s above never outlive them (same owner).
    _maps: Vec<Mmap>,
}

impl BarMapping {
    fn whole(map: Mmap, size: u64) -> Option<BarMapping> {
        let base = std::ptr::NonNull::new(map.addr() as *mut u8)?;
        let len = usize::try_from(size).unwrap_or(usize::MAX).min(map.len());
        // SAFETY: `map` is a live shared mapping of the BAR of at least `len` bytes, owned by
        // the BarMapping that also owns this VolatileBar (which is never copied out of it), so
        // it stays mapped for as long as the VolatileBar can be used. Only volatile accesses.
        let io = unsafe { VolatileBar::new(base, len) };
        Some(BarMapping {
            len,
            whole: Some((map.addr(), map.len())),
            windows: vec![Window { offset: 0, io }],
            fallback: None,
            _maps: vec![map],
        })
    }

    /// Map every sparse-mmap area of `info` (page-aligned by the kernel); the rest of the BAR is
    /// reached through pread/pwrite of the region.
    fn sparse(
        sys: &Arc<dyn Sys>,
        fd: &Arc<SysFd>,
        info: &RegionInfo,
        areas: &[crate::region::SparseArea],
        page: u64,
    ) -> std::result::Result<BarMapping, String> {
        let len = usize::try_from(info.size).map_err(|_| "BAR too large".to_string())?;
        let mut windows = Vec::new();
        let mut maps = Vec::new();
        for a in areas.iter().filter(|a| a.size > 0) {
            let end = a.offset.checked_add(a.size).filter(|&e| e <= info.size);
            if end.is_none() {
                return Err(format!(
                    "sparse area {:#x}+{:#x} lies outside the {:#x}-byte BAR",
                    a.offset, a.size, info.size
                ));
            }
            let area = RegionInfo {
                offset: info.offset + a.offset,
                size: a.size,
                ..info.clone()
            };
            let m = mmap_region(sys, fd.raw(), &area, page, 0).map_err(|e| {
                format!(
                    "mmap of sparse area {:#x}+{:#x} failed: {e}",
                    a.offset, a.size
                )
            })?;
            let base = std::ptr::NonNull::new(m.addr() as *mut u8)
                .ok_or_else(|| "null mapping".to_string())?;
            // SAFETY: `m` is a live shared mapping of this area of at least `a.size` bytes,
            // owned (in `maps`) by the same BarMapping as this VolatileBar, which is never
            // copied out of it. Only volatile accesses.
            let io = unsafe { VolatileBar::new(base, (a.size as usize).min(m.len())) };
            windows.push(Window {
                offset: a.offset as usize,
                io,
            });
            maps.push(m);
        }
        Ok(BarMapping {
            len,
            windows,
            whole: None,
            fallback: Some(RegionFile {
                fd: fd.clone(),
                offset: info.offset,
                readable: info.readable(),
                writable: info.writable(),
            }),
            _maps: maps,
        })
    }

    /// The window holding `offset..offset+size` and the offset within it.
    fn window(&self, offset: usize, size: usize) -> Option<(&VolatileBar, usize)> {
        let end = offset.checked_add(size)?;
        self.windows.iter().find_map(|w| {
            let rel = offset.checked_sub(w.offset)?;
            (end - w.offset <= w.io.len()).then_some((&w.io, rel))
        })
    }

    /// The region-file offset for an access outside the windows, if allowed: inside the BAR
    /// and naturally aligned.
    fn file_pos(&self, offset: usize, size: usize) -> Option<(&RegionFile, u64)> {
        let f = self.fallback.as_ref()?;
        let end = offset.checked_add(size)?;
        (end <= self.len && offset.is_multiple_of(size)).then_some((f, f.offset + offset as u64))
    }

    fn pread<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let (f, pos) = self.file_pos(offset, N)?;
        let mut b = [0u8; N];
        let n = f.fd.sys().pread(f.fd.raw(), &mut b, pos).ok()?;
        (f.readable && n == N).then_some(b)
    }

    fn pwrite(&self, offset: usize, bytes: &[u8]) {
        if let Some((f, pos)) = self.file_pos(offset, bytes.len()) {
            if f.writable {
                // A failed write is dropped, like a write to a master-aborting address.
                let _ = f.fd.sys().pwrite(f.fd.raw(), bytes, pos);
            }
        }
    }
}

/// A handle to one mapped BAR: the [`PciFunction::Bar`] of [`VfioPciDevice`].
///
/// Cloning is cheap (a reference count). The mapping stays valid while any handle lives, even
/// after the device is dropped; the BAR is unmapped when the device and every handle are gone.
/// (The kernel keeps the device file referenced by the mapping meanwhile, so the VFIO device is
/// fully released only after the last handle drops.) Accesses are volatile, bounds-checked and
/// never panic: out-of-range or misaligned reads return all ones and such writes are dropped.
///
/// A BAR whose whole-BAR mmap failed but which has a sparse-mmap capability is mapped area by
/// area: accesses inside an area are direct volatile accesses, accesses elsewhere in the BAR go
/// through pread/pwrite of the VFIO region (one access of the same width; a failed read returns
/// all ones, a failed write is dropped), and a 64-byte portal submission outside the areas is
/// [`PortalError::Unsupported`] (it cannot be made atomic through the file).
#[derive(Debug, Clone)]
pub struct VfioBar {
    map: Arc<BarMapping>,
    index: u8,
}

macro_rules! vfio_bar_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, offset: usize) -> $t {
            const N: usize = std::mem::size_of::<$t>();
            match self.map.window(offset, N) {
                Some((io, rel)) => io.$read(rel),
                None => self
                    .map
                    .pread::<N>(offset)
                    .map_or(<$t>::MAX, <$t>::from_le_bytes),
            }
        }
        fn $write(&self, offset: usize, value: $t) {
            match self.map.window(offset, std::mem::size_of::<$t>()) {
                Some((io, rel)) => io.$write(rel, value),
                None => self.map.pwrite(offset, &value.to_le_bytes()),
            }
        }
    };
}

impl VfioBar {
    /// The BAR index (0–5).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The base address of the whole-BAR mapping, or null for a BAR mapped only through its
    /// sparse areas. A raw pointer: valid for volatile access while this handle (or a clone) is
    /// alive; never form references to it.
    pub fn as_ptr(&self) -> *mut u8 {
        match self.map.whole {
            Some(_) => self
                .map
                .windows
                .first()
                .map_or(std::ptr::null_mut(), |w| w.io.as_ptr()),
            None => std::ptr::null_mut(),
        }
    }

    /// True if only the sparse-mmap areas are mapped (the rest goes through pread/pwrite).
    pub fn is_sparse(&self) -> bool {
        self.map.whole.is_none()
    }

    /// How many handles (plus the device, while it lives) share this mapping.
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.map)
    }

    fn portal(&self, offset: usize) -> Result<(&VolatileBar, usize), PortalError> {
        if let Some(w) = self.map.window(offset, 64) {
            return Ok(w);
        }
        if !offset.is_multiple_of(64) {
            return Err(PortalError::Misaligned { offset });
        }
        match offset.checked_add(64) {
            Some(end) if end <= self.map.len => Err(PortalError::Unsupported),
            _ => Err(PortalError::OutOfRange {
                offset,
                len: self.map.len,
            }),
        }
    }
}

impl RegisterIo for VfioBar {
    fn len(&self) -> usize {
        self.map.len
    }
    vfio_bar_rw!(read8, write8, u8);
    vfio_bar_rw!(read16, write16, u16);
    vfio_bar_rw!(read32, write32, u32);
    vfio_bar_rw!(read64, write64, u64);
    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let (io, rel) = self.portal(offset)?;
        io.submit64(rel, descriptor)
    }
    fn enqcmd(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        let (io, rel) = self.portal(offset)?;
        io.enqcmd(rel, descriptor)
    }
}

/// A PCI function opened through VFIO.
#[derive(Debug)]
pub struct VfioPciDevice {
    bdf: String,
    /// Shared with sparsely mapped BARs, which reach the rest of the BAR through it.
    fd: Arc<SysFd>,
    bars: Vec<Bar>,
    irq: Mutex<IrqState>,
    info: DeviceInfo,
    config: RegionInfo,
    irq_infos: [IrqInfo; 3],
    devid: Option<u32>,
    group: Option<Arc<Group>>,
    sys: Arc<dyn Sys>,
    iommu: Arc<Iommu>,
}

fn device_fd_error(bdf: &str, op: &'static str, e: Errno) -> Error {
    Error::os(bdf, op, e)
}

impl VfioPciDevice {
    /// Open `bdf` on `iommu` (upstream's `vfio_pci_device_init`): the group path in container
    /// modes, the cdev path in iommufd mode; then query info, map the BARs and read IRQ info.
    /// The device keeps the canonical spelling of `bdf` (as sysfs and the kernel name it).
    pub fn open(bdf: Bdf, iommu: &Arc<Iommu>) -> Result<VfioPciDevice> {
        Self::open_with_token(bdf, iommu, None)
    }

    /// [`VfioPciDevice::open`] with an optional VF token (group path: appended to the device
    /// name; cdev path: VFIO_DEVICE_BIND_FLAG_TOKEN).
    pub fn open_with_token(
        b: Bdf,
        iommu: &Arc<Iommu>,
        token: Option<&VfToken>,
    ) -> Result<VfioPciDevice> {
        // Work with the canonical spelling, which is how sysfs and the kernel name the device.
        let canonical = b.canonical_string();
        let bdf = canonical.as_str();
        if iommu.mode().uses_container() {
            let group = group_setup_at(iommu, b, bdf)?;
            let fd = group
                .get_device_fd(bdf, token)
                .map_err(|e| device_fd_error(bdf, "VFIO_GROUP_GET_DEVICE_FD", e))?;
            Self::setup(bdf, iommu, fd, Some(group), None)
        } else {
            let cdev = Cdev::open(iommu.sys().clone(), b)?;
            Self::from_cdev(bdf, iommu, cdev, token)
        }
    }

    /// Adopt an already-open cdev fd (upstream's `__vfio_pci_device_init(bdf, iommu, fd)`),
    /// binding and attaching it to `iommu`'s IOAS unless `already_bound`. Native iommufd only.
    pub fn from_cdev_fd(
        b: Bdf,
        iommu: &Arc<Iommu>,
        fd: OwnedFd,
        already_bound: bool,
    ) -> Result<VfioPciDevice> {
        // Take ownership through the Sys seam first, so every path closes the fd the same way.
        let cdev = Cdev::from_fd(iommu.sys().clone(), b, fd);
        let canonical = b.canonical_string();
        let bdf = canonical.as_str();
        if iommu.mode().uses_container() {
            return Err(Error::InvalidArgument {
                who: bdf.to_string(),
                reason: format!(
                    "adopting a cdev fd needs iommufd mode, not {}",
                    iommu.mode()
                ),
            });
        }
        if already_bound {
            return Self::setup(bdf, iommu, cdev.into_fd(), None, None);
        }
        Self::from_cdev(bdf, iommu, cdev, None)
    }

    fn from_cdev(
        bdf: &str,
        iommu: &Arc<Iommu>,
        cdev: Cdev,
        token: Option<&VfToken>,
    ) -> Result<VfioPciDevice> {
        let (Some(iommufd), Some(ioas)) = (iommu.iommufd(), iommu.ioas_id()) else {
            return Err(Error::InvalidArgument {
                who: bdf.to_string(),
                reason: "the cdev path needs an iommufd-mode Iommu".into(),
            });
        };
        let devid = cdev
            .bind(iommufd, token)
            .map_err(|e| device_fd_error(bdf, "VFIO_DEVICE_BIND_IOMMUFD", e))?;
        cdev.attach_pt(ioas)
            .map_err(|e| device_fd_error(bdf, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", e))?;
        Self::setup(bdf, iommu, cdev.into_fd(), None, Some(devid))
    }

    fn setup(
        bdf: &str,
        iommu: &Arc<Iommu>,
        fd: SysFd,
        group: Option<Arc<Group>>,
        devid: Option<u32>,
    ) -> Result<VfioPciDevice> {
        let sys = iommu.sys().clone();
        let fd = Arc::new(fd);
        let raw = fd.raw();
        let info =
            device_get_info(&*sys, raw).map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_INFO", e))?;
        let config = get_region_info(&*sys, raw, vb::VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_REGION_INFO (config)", e))?;
        if config.mmappable() {
            return Err(Error::Malformed {
                who: bdf.to_string(),
                what: "config region info",
                reason: "the config region claims to be mmap-able".into(),
            });
        }
        let page = base_page_size();
        let mut bars = Vec::with_capacity(6);
        for i in 0..6u32 {
            let ri = get_region_info(&*sys, raw, vb::VFIO_PCI_BAR0_REGION_INDEX + i)
                .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_REGION_INFO (BAR)", e))?;
            let (map, why) = if ri.size == 0 {
                (None, Some("BAR is unimplemented (size 0)".to_string()))
            } else if !ri.mmappable() {
                (
                    None,
                    Some("region lacks VFIO_REGION_INFO_FLAG_MMAP".to_string()),
                )
            } else {
                match mmap_region(&sys, raw, &ri, bar_alignment(ri.size, page), 0) {
                    Ok(m) => match BarMapping::whole(m, ri.size) {
                        Some(b) => (Some(Arc::new(b)), None),
                        None => (None, Some("mmap returned a null mapping".to_string())),
                    },
                    Err(e) => match ri.sparse_areas.as_deref() {
                        Some(areas) if areas.iter().any(|a| a.size > 0) => {
                            match BarMapping::sparse(&sys, &fd, &ri, areas, page) {
                                Ok(b) => (
                                    Some(Arc::new(b)),
                                    Some(format!(
                                        "mmap failed: {e}; mapped its {} sparse-mmap areas \
                                         instead (the rest through pread/pwrite)",
                                        areas.len()
                                    )),
                                ),
                                Err(why) => (
                                    None,
                                    Some(format!("mmap failed: {e}; sparse fallback: {why}")),
                                ),
                            }
                        }
                        _ => (None, Some(format!("mmap failed: {e}"))),
                    },
                }
            };
            bars.push(Bar {
                info: ri,
                map,
                unmapped_reason: why,
            });
        }
        let mut irq_infos = [IrqInfo::default(); 3];
        for kind in [IrqKind::Intx, IrqKind::Msi, IrqKind::MsiX] {
            let idx = crate::irq::irq_index(kind);
            irq_infos[slot(kind)] = if idx < info.num_irqs {
                get_irq_info(&*sys, raw, idx)
                    .map_err(|e| Error::os(bdf, "VFIO_DEVICE_GET_IRQ_INFO", e))?
            } else {
                IrqInfo {
                    index: idx,
                    ..Default::default()
                }
            };
        }
        Ok(VfioPciDevice {
            bdf: bdf.to_string(),
            fd,
            bars,
            irq: Mutex::new(IrqState::default()),
            info,
            config,
            irq_infos,
            devid,
            group,
            sys,
            iommu: iommu.clone(),
        })
    }

    /// The device's BDF.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// The IOMMU the device is attached to.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// The system-call seam.
    pub fn sys(&self) -> &Arc<dyn Sys> {
        &self.sys
    }

    /// The device fd.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.raw()
    }

    /// The group (container modes).
    pub fn group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }

    /// The iommufd device id from BIND (native iommufd mode).
    pub fn devid(&self) -> Option<u32> {
        self.devid
    }

    /// VFIO_DEVICE_GET_INFO as read at open.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The VFIO_DEVICE_GET_INFO capability chain, queried afresh ([`device_get_info_caps`]).
    pub fn device_caps(&self) -> Result<DeviceCaps> {
        device_get_info_caps(&*self.sys, self.fd.raw())
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_GET_INFO (capabilities)", e))
    }

    /// The config-space region info.
    pub fn config_region(&self) -> &RegionInfo {
        &self.config
    }

    /// BAR `index` (0–5): region info and mapping.
    pub fn bar_info(&self, index: u8) -> Option<&Bar> {
        self.bars.get(index as usize)
    }

    /// Query any region's info afresh (e.g. ROM = 6, VGA = 8, device-specific ≥ 9).
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        get_region_info(&*self.sys, self.fd.raw(), index)
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_GET_REGION_INFO", e))
    }

    /// IRQ info of `kind` as read at open (count 0 = unsupported).
    pub fn irq_info(&self, kind: IrqKind) -> IrqInfo {
        self.irq_infos[slot(kind)]
    }

    pub(crate) fn irq_state(&self) -> MutexGuard<'_, IrqState> {
        self.irq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Map BAR `index` again at an address congruent to `skew` modulo `align` (for
    /// misaligned-mapping tests; upstream's `mmap_reserve` + MAP_FIXED).
    pub fn mmap_bar_at(&self, index: u8, align: u64, skew: u64) -> Result<Mmap> {
        let bar = self.bar_checked(index)?;
        mmap_region(&self.sys, self.fd.raw(), &bar.info, align, skew).map_err(|e| {
            Error::BarNotMappable {
                bdf: self.bdf.clone(),
                bar: index,
                reason: format!("mmap failed: {e}"),
            }
        })
    }

    fn bar_checked(&self, index: u8) -> Result<&Bar> {
        self.bars
            .get(index as usize)
            .ok_or_else(|| Error::InvalidArgument {
                who: self.bdf.clone(),
                reason: format!("BAR index {index} is not 0..=5"),
            })
    }

    /// A register handle for mapped BAR `index`. The handle keeps the mapping alive (see
    /// [`VfioBar`]), so it may outlive the device.
    pub fn bar_mapping(&self, index: u8) -> Result<VfioBar> {
        let bar = self.bar_checked(index)?;
        let not_mappable = |reason: String| Error::BarNotMappable {
            bdf: self.bdf.clone(),
            bar: index,
            reason,
        };
        match &bar.map {
            Some(m) => Ok(VfioBar {
                map: m.clone(),
                index,
            }),
            None => Err(not_mappable(
                bar.unmapped_reason
                    .clone()
                    .unwrap_or_else(|| "not mapped".into()),
            )),
        }
    }

    fn config_access(&self, write: bool, offset: u16, buf: &mut [u8]) -> Result<()> {
        let end = offset as u64 + buf.len() as u64;
        if end > self.config.size {
            return Err(Error::InvalidArgument {
                who: self.bdf.clone(),
                reason: format!(
                    "config access {offset:#x}+{} beyond the {:#x}-byte config space",
                    buf.len(),
                    self.config.size
                ),
            });
        }
        let pos = self.config.offset + offset as u64;
        let (op, r) = if write {
            ("config write", self.sys.pwrite(self.fd.raw(), buf, pos))
        } else {
            ("config read", self.sys.pread(self.fd.raw(), buf, pos))
        };
        let n = r.map_err(|e| {
            Error::os(
                &self.bdf,
                if write {
                    "pwrite config"
                } else {
                    "pread config"
                },
                e,
            )
        })?;
        if n != buf.len() {
            return Err(Error::ShortTransfer {
                bdf: self.bdf.clone(),
                op,
                offset: offset as u64,
                done: n,
                want: buf.len(),
            });
        }
        Ok(())
    }

    /// Read 8 bits of config space.
    pub fn config_readb(&self, offset: u16) -> Result<u8> {
        let mut b = [0u8; 1];
        self.config_access(false, offset, &mut b)?;
        Ok(b[0])
    }
    /// Read 16 bits of config space (little-endian).
    pub fn config_readw(&self, offset: u16) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_access(false, offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Read 32 bits of config space (little-endian).
    pub fn config_readl(&self, offset: u16) -> Result<u32> {
        let mut b = [0u8; 4];
        self.config_access(false, offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Write 8 bits of config space.
    pub fn config_writeb(&self, offset: u16, v: u8) -> Result<()> {
        self.config_access(true, offset, &mut [v])
    }
    /// Write 16 bits of config space (little-endian).
    pub fn config_writew(&self, offset: u16, v: u16) -> Result<()> {
        self.config_access(true, offset, &mut v.to_le_bytes())
    }
    /// Write 32 bits of config space (little-endian).
    pub fn config_writel(&self, offset: u16, v: u32) -> Result<()> {
        self.config_access(true, offset, &mut v.to_le_bytes())
    }

    /// Set bits in PCI_COMMAND (read-modify-write); returns the new value.
    pub fn command_set(&self, bits: u16) -> Result<u16> {
        let v = self.config_readw(PCI_COMMAND)? | bits;
        self.config_writew(PCI_COMMAND, v)?;
        Ok(v)
    }

    /// Clear bits in PCI_COMMAND (read-modify-write); returns the new value.
    pub fn command_clear(&self, bits: u16) -> Result<u16> {
        let v = self.config_readw(PCI_COMMAND)? & !bits;
        self.config_writew(PCI_COMMAND, v)?;
        Ok(v)
    }

    /// True if vendor and device ids match.
    pub fn matches(&self, vendor: u16, device: u16) -> Result<bool> {
        Ok(self.config_readw(0)? == vendor && self.config_readw(2)? == device)
    }

    /// VFIO_DEVICE_RESET ([`Error::Unsupported`] if the device lacks VFIO_DEVICE_FLAGS_RESET).
    pub fn reset(&self) -> Result<()> {
        if !self.info.supports_reset() {
            return Err(Error::Unsupported {
                bdf: self.bdf.clone(),
                what: "VFIO_DEVICE_RESET (no VFIO_DEVICE_FLAGS_RESET; put it behind a PCIe root port for a bus reset)".into(),
            });
        }
        device_reset(&*self.sys, self.fd.raw())
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_RESET", e))
    }

    /// Attach the (cdev-opened) device to another IOAS or HWPT (a replacement if attached).
    /// Returns the attached pt_id or the errno (the kernel refuses on group-opened devices).
    pub fn attach_pt(&self, pt_id: u32) -> Result<u32, Errno> {
        crate::cdev::attach_pt(&*self.sys, self.fd.raw(), pt_id)
    }

    /// Detach the (cdev-opened) device from its IOAS/HWPT (DMA is then blocked).
    pub fn detach_pt(&self) -> Result<(), Errno> {
        crate::cdev::detach_pt(&*self.sys, self.fd.raw())
    }

    /// Set the PF's VF token (VFIO_DEVICE_FEATURE SET | PCI_VF_TOKEN).
    pub fn set_vf_token(&self, token: &VfToken) -> Result<()> {
        set_vf_token(&*self.sys, self.fd.raw(), token)
            .map_err(|e| Error::os(&self.bdf, "VFIO_DEVICE_FEATURE (PCI_VF_TOKEN)", e))
    }
}

impl Drop for VfioPciDevice {
    fn drop(&mut self) {
        // Disable interrupts we enabled before the eventfds close (best effort); BAR mappings,
        // the device fd, the group and the IOMMU are released by their own drops, in field order.
        for kind in [IrqKind::Intx, IrqKind::Msi, IrqKind::MsiX] {
            if self.irq_enabled_count(kind) > 0 {
                let _ = self.irq_disable(kind);
            }
        }
    }
}

fn fe(e: Error) -> FunctionError {
    e.into()
}

impl PciFunction for VfioPciDevice {
    type Bar = VfioBar;

    fn bar(&self, index: u8) -> Result<VfioBar, FunctionError> {
        self.bar_mapping(index)
            .map_err(|_| FunctionError::NoSuchBar(index))
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        self.config_readb(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        self.config_readw(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        self.config_readl(offset).map_err(|e| cfg_err(offset, e))
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        self.config_writeb(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        self.config_writew(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        self.config_writel(offset, value)
            .map_err(|e| cfg_err(offset, e))
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        VfioPciDevice::irq_enable(self, kind, first, count).map_err(fe)
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        VfioPciDevice::irq_disable(self, kind).map_err(fe)
    }
    fn reset(&self) -> Result<(), FunctionError> {
        VfioPciDevice::reset(self).map_err(|e| match e {
            Error::Unsupported { .. } => FunctionError::Unsupported("VFIO_DEVICE_RESET"),
            e => fe(e),
        })
    }
    /// The vector's eventfd, waited on with poll(2) and read ([`VfioPciDevice::irq_wait`]); a
    /// timeout is `Ok(0)`, a vector without an eventfd [`FunctionError::NoSuchVector`].
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        match VfioPciDevice::irq_wait(
            self,
            kind,
            vector,
            std::time::Duration::from_nanos(timeout_ns),
        ) {
            Ok(n) => Ok(n),
            Err(Error::IrqTimeout { .. }) => Ok(0),
            Err(_) if self.irq_eventfd(kind, vector).is_none() => {
                Err(FunctionError::NoSuchVector { kind, vector })
            }
            Err(e) => Err(fe(e)),
        }
    }
}

/// A shared handle to an open device that is itself a [`PciFunction`]: a driver can own "the
/// function" while the rest of the program (a test environment, a VMM) still holds the device,
/// e.g. to read its eventfds. Every method forwards to [`VfioPciDevice`]'s.
#[derive(Debug, Clone)]
pub struct SharedVfioDevice(pub Arc<VfioPciDevice>);

impl PciFunction for SharedVfioDevice {
    type Bar = VfioBar;
    fn bar(&self, index: u8) -> Result<VfioBar, FunctionError> {
        PciFunction::bar(&*self.0, index)
    }
    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        PciFunction::config_read8(&*self.0, offset)
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        PciFunction::config_read16(&*self.0, offset)
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        PciFunction::config_read32(&*self.0, offset)
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        PciFunction::config_write8(&*self.0, offset, value)
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        PciFunction::config_write16(&*self.0, offset, value)
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        PciFunction::config_write32(&*self.0, offset, value)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        PciFunction::irq_enable(&*self.0, kind, first, count)
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        PciFunction::irq_disable(&*self.0, kind)
    }
    fn reset(&self) -> Result<(), FunctionError> {
        PciFunction::reset(&*self.0)
    }
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        PciFunction::irq_wait(&*self.0, kind, vector, timeout_ns)
    }
}

fn cfg_err(offset: u16, e: Error) -> FunctionError {
    match e {
        Error::InvalidArgument { .. } => FunctionError::ConfigOutOfRange { offset },
        e => fe(e),
    }
}
