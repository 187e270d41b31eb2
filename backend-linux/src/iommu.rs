//! [`IommuMode`] (the five upstream modes) and [`Iommu`]: one container or one IOMMUFD IOAS,
//! shareable by several devices, with DMA map/unmap, tracked regions, hva→iova translation,
//! IOVA ranges and an allocator over them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vfio_bindings::bindings::vfio as vb;

use crate::error::{Error, Result};
use crate::group::Group;
use crate::iova::{normalize_ranges, IovaAllocator, IovaRange};
use crate::memory::DmaBuffer;
use crate::sys::{Errno, RealSys, Sys, SysFd};
use crate::{container, iommufd};

/// `/dev/vfio/vfio`, the legacy VFIO container.
pub const VFIO_CONTAINER_PATH: &str = "/dev/vfio/vfio";
/// `/dev/iommu`, IOMMUFD (native, and the VFIO-container compatibility layer).
pub const IOMMUFD_PATH: &str = "/dev/iommu";

/// How devices are attached to the IOMMU: the five upstream modes, in upstream order (the order
/// of the fixture-variant generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IommuMode {
    /// `vfio_type1_iommu`: `/dev/vfio/vfio`, VFIO_TYPE1_IOMMU.
    VfioType1Iommu,
    /// `vfio_type1v2_iommu`: `/dev/vfio/vfio`, VFIO_TYPE1v2_IOMMU.
    VfioType1v2Iommu,
    /// `iommufd_compat_type1`: `/dev/iommu` as a container, VFIO_TYPE1_IOMMU.
    IommufdCompatType1,
    /// `iommufd_compat_type1v2`: `/dev/iommu` as a container, VFIO_TYPE1v2_IOMMU.
    IommufdCompatType1v2,
    /// `iommufd`: the device cdev bound to `/dev/iommu`, attached to an IOAS (the default).
    #[default]
    Iommufd,
}

impl IommuMode {
    /// All five modes in upstream order.
    pub const ALL: [IommuMode; 5] = [
        IommuMode::VfioType1Iommu,
        IommuMode::VfioType1v2Iommu,
        IommuMode::IommufdCompatType1,
        IommuMode::IommufdCompatType1v2,
        IommuMode::Iommufd,
    ];

    /// The upstream name, e.g. `"iommufd_compat_type1v2"`.
    pub const fn name(self) -> &'static str {
        match self {
            IommuMode::VfioType1Iommu => "vfio_type1_iommu",
            IommuMode::VfioType1v2Iommu => "vfio_type1v2_iommu",
            IommuMode::IommufdCompatType1 => "iommufd_compat_type1",
            IommuMode::IommufdCompatType1v2 => "iommufd_compat_type1v2",
            IommuMode::Iommufd => "iommufd",
        }
    }

    /// The container path for the group/container modes; `None` for native iommufd.
    pub const fn container_path(self) -> Option<&'static str> {
        match self {
            IommuMode::VfioType1Iommu | IommuMode::VfioType1v2Iommu => Some(VFIO_CONTAINER_PATH),
            IommuMode::IommufdCompatType1 | IommuMode::IommufdCompatType1v2 => Some(IOMMUFD_PATH),
            IommuMode::Iommufd => None,
        }
    }

    /// The VFIO IOMMU type for SET_IOMMU (1 = type1, 3 = type1v2); `None` for native iommufd.
    pub const fn iommu_type(self) -> Option<u32> {
        match self {
            IommuMode::VfioType1Iommu | IommuMode::IommufdCompatType1 => Some(vb::VFIO_TYPE1_IOMMU),
            IommuMode::VfioType1v2Iommu | IommuMode::IommufdCompatType1v2 => {
                Some(vb::VFIO_TYPE1v2_IOMMU)
            }
            IommuMode::Iommufd => None,
        }
    }

    /// True for the four group/container modes.
    pub const fn uses_container(self) -> bool {
        self.container_path().is_some()
    }

    /// True for the modes served by IOMMUFD (both compat modes and native).
    pub const fn is_iommufd(self) -> bool {
        matches!(
            self,
            IommuMode::IommufdCompatType1 | IommuMode::IommufdCompatType1v2 | IommuMode::Iommufd
        )
    }

    /// The kernel option that provides this mode's device node.
    pub const fn kernel_config(self) -> &'static str {
        match self {
            IommuMode::VfioType1Iommu | IommuMode::VfioType1v2Iommu => {
                "CONFIG_VFIO_CONTAINER (and CONFIG_VFIO_IOMMU_TYPE1)"
            }
            IommuMode::IommufdCompatType1 | IommuMode::IommufdCompatType1v2 => {
                "CONFIG_IOMMUFD (its VFIO compat ioctls; CONFIG_IOMMUFD_VFIO_CONTAINER would replace /dev/vfio/vfio)"
            }
            IommuMode::Iommufd => "CONFIG_IOMMUFD",
        }
    }
}

impl fmt::Display for IommuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IommuMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        IommuMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::UnknownIommuMode {
                name: s.to_string(),
            })
    }
}

/// One tracked DMA mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DmaMapping {
    /// Host virtual address of the first byte.
    pub vaddr: u64,
    /// Device-visible address of the first byte.
    pub iova: u64,
    /// Length in bytes.
    pub size: u64,
}

impl DmaMapping {
    /// The IOVA of host address `vaddr`, if this mapping contains it.
    pub fn translate(&self, vaddr: u64) -> Option<u64> {
        let off = vaddr.checked_sub(self.vaddr)?;
        (off < self.size).then(|| self.iova + off)
    }
}

#[derive(Debug, Default)]
pub(crate) struct ContainerState {
    /// SET_IOMMU done (by us or tolerated as already done by a racing opener). Cleared when
    /// the last group leaves: the kernel then returns the container to its unset state.
    pub(crate) iommu_set: bool,
    /// Groups currently attached to the container.
    pub(crate) live_groups: usize,
    /// Open groups by number, so two devices of one group share the group fd.
    pub(crate) groups: HashMap<u32, Weak<Group>>,
}

#[derive(Debug)]
pub(crate) enum Backend {
    Container {
        fd: SysFd,
        path: PathBuf,
        state: Mutex<ContainerState>,
        /// Serialises group setup, so two threads opening devices of one group share it.
        setup: Mutex<()>,
    },
    Iommufd {
        fd: SysFd,
        ioas_id: u32,
    },
}

/// One IOMMU address space: a VFIO container (four modes) or an IOMMUFD IOAS (native mode).
///
/// Shared by devices through `Arc<Iommu>`; all DMA mappings live here.
#[derive(Debug)]
pub struct Iommu {
    mode: IommuMode,
    sys: Arc<dyn Sys>,
    pub(crate) backend: Backend,
    regions: Mutex<Vec<DmaMapping>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Iommu {
    /// Open an IOMMU in `mode` on the real kernel.
    pub fn open(mode: IommuMode) -> Result<Arc<Iommu>> {
        Self::open_with(RealSys::shared(), mode)
    }

    /// Open by upstream mode name (`None` = the default, `iommufd`).
    pub fn open_named(name: Option<&str>) -> Result<Arc<Iommu>> {
        let mode = match name {
            Some(n) => n.parse()?,
            None => IommuMode::default(),
        };
        Self::open(mode)
    }

    /// Open an IOMMU in `mode` through `sys`.
    ///
    /// Container modes: open the container path and check VFIO_GET_API_VERSION == 0.
    /// Native iommufd: open `/dev/iommu` and allocate an IOAS.
    pub fn open_with(sys: Arc<dyn Sys>, mode: IommuMode) -> Result<Arc<Iommu>> {
        let backend = match mode.container_path() {
            Some(p) => {
                let path = PathBuf::from(p);
                let fd = SysFd::open(&sys, &path, false)
                    .map_err(|e| Error::open_node(&path, mode.kernel_config(), None, e))?;
                let v = container::api_version(&*sys, fd.raw())
                    .map_err(|e| Error::os(p, "VFIO_GET_API_VERSION", e))?;
                if v != vb::VFIO_API_VERSION as i32 {
                    return Err(Error::ApiVersion { path, got: v });
                }
                Backend::Container {
                    fd,
                    path,
                    state: Mutex::new(ContainerState::default()),
                    setup: Mutex::new(()),
                }
            }
            None => {
                let path = Path::new(IOMMUFD_PATH);
                let fd = SysFd::open(&sys, path, false)
                    .map_err(|e| Error::open_node(path, mode.kernel_config(), None, e))?;
                let ioas_id = iommufd::ioas_alloc(&*sys, fd.raw())
                    .map_err(|e| Error::os(IOMMUFD_PATH, "IOMMU_IOAS_ALLOC", e))?;
                Backend::Iommufd { fd, ioas_id }
            }
        };
        Ok(Arc::new(Iommu {
            mode,
            sys,
            backend,
            regions: Mutex::new(Vec::new()),
        }))
    }

    /// The mode.
    pub fn mode(&self) -> IommuMode {
        self.mode
    }

    /// The system-call seam.
    pub fn sys(&self) -> &Arc<dyn Sys> {
        &self.sys
    }

    /// The container fd (container modes) or the iommufd (native mode).
    pub fn fd(&self) -> std::os::fd::RawFd {
        match &self.backend {
            Backend::Container { fd, .. } | Backend::Iommufd { fd, .. } => fd.raw(),
        }
    }

    /// The container fd, in container modes.
    pub fn container_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.backend {
            Backend::Container { fd, .. } => Some(fd.raw()),
            Backend::Iommufd { .. } => None,
        }
    }

    /// The iommufd, in native iommufd mode.
    pub fn iommufd(&self) -> Option<std::os::fd::RawFd> {
        match &self.backend {
            Backend::Iommufd { fd, .. } => Some(fd.raw()),
            Backend::Container { .. } => None,
        }
    }

    /// The IOAS id, in native iommufd mode.
    pub fn ioas_id(&self) -> Option<u32> {
        match &self.backend {
            Backend::Iommufd { ioas_id, .. } => Some(*ioas_id),
            Backend::Container { .. } => None,
        }
    }

    fn who(&self) -> String {
        match &self.backend {
            Backend::Container { path, .. } => format!("{} ({})", path.display(), self.mode),
            Backend::Iommufd { ioas_id, .. } => format!("{IOMMUFD_PATH} (ioas {ioas_id})"),
        }
    }

    pub(crate) fn container_setup_lock(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.backend {
            Backend::Container { setup, .. } => Some(lock(setup)),
            Backend::Iommufd { .. } => None,
        }
    }

    pub(crate) fn container_state(&self) -> Option<MutexGuard<'_, ContainerState>> {
        match &self.backend {
            Backend::Container { state, .. } => Some(lock(state)),
            Backend::Iommufd { .. } => None,
        }
    }

    /// Map `size` bytes at host address `vaddr` to `iova` (read/write), returning the errno on
    /// failure (upstream's `__iommu_map`). The mapping is tracked on success.
    ///
    /// # Safety
    /// `vaddr..vaddr+size` must stay valid memory (or a BAR mapping) that the device may read
    /// and write for as long as the mapping exists, with no Rust references into it.
    pub unsafe fn try_map(&self, vaddr: u64, iova: u64, size: u64) -> Result<DmaMapping, Errno> {
        match &self.backend {
            // SAFETY: forwarded caller contract.
            Backend::Container { fd, .. } => unsafe {
                container::map_dma(&*self.sys, fd.raw(), vaddr, iova, size)
            },
            // SAFETY: forwarded caller contract.
            Backend::Iommufd { fd, ioas_id } => unsafe {
                iommufd::map(&*self.sys, fd.raw(), *ioas_id, vaddr, iova, size)
            },
        }?;
        let m = DmaMapping { vaddr, iova, size };
        lock(&self.regions).push(m);
        Ok(m)
    }

    /// [`Iommu::try_map`] with a typed error.
    ///
    /// # Safety
    /// As for [`Iommu::try_map`].
    pub unsafe fn map(&self, vaddr: u64, iova: u64, size: u64) -> Result<DmaMapping> {
        // SAFETY: forwarded caller contract.
        unsafe { self.try_map(vaddr, iova, size) }
            .map_err(|e| Error::os(self.who(), self.map_op(), e))
    }

    /// Map a whole [`DmaBuffer`] at `iova`.
    pub fn map_buffer(&self, buf: &DmaBuffer, iova: u64) -> Result<DmaMapping> {
        // SAFETY: the buffer is an mmap this crate owns and never exposes as Rust references
        // (only volatile access through DmaRegion). If it is dropped while mapped, the pages stay
        // pinned by the IOMMU, so device access cannot reach memory Rust reuses.
        unsafe { self.map(buf.addr() as u64, iova, buf.len() as u64) }
    }

    /// IOMMU-map `size` bytes at `offset` of mapped BAR `bar` of `dev` at `iova` (peer-to-peer /
    /// MMIO DMA mapping; type1 accepts VM_PFNMAP, the iommufd modes refuse). Returns the errno
    /// (EINVAL if the BAR is not mapped or the range is outside it).
    pub fn try_map_bar(
        &self,
        dev: &crate::VfioPciDevice,
        bar: u8,
        offset: u64,
        size: u64,
        iova: u64,
    ) -> Result<DmaMapping, Errno> {
        let b = dev.bar_info(bar).ok_or(Errno::EINVAL)?;
        let (Some(vaddr), Some(len)) = (b.vaddr(), b.mapped_len()) else {
            return Err(Errno::EINVAL);
        };
        self.try_map_mmap_range(vaddr, len, offset, size, iova)
    }

    /// IOMMU-map `size` bytes at `offset` of an [`crate::region::Mmap`] this crate made (a BAR
    /// mapping from [`crate::VfioPciDevice::mmap_bar_at`], typically) at `iova`.
    pub fn try_map_mmap(
        &self,
        map: &crate::region::Mmap,
        offset: u64,
        size: u64,
        iova: u64,
    ) -> Result<DmaMapping, Errno> {
        self.try_map_mmap_range(map.addr(), map.len(), offset, size, iova)
    }

    fn try_map_mmap_range(
        &self,
        addr: usize,
        len: usize,
        offset: u64,
        size: u64,
        iova: u64,
    ) -> Result<DmaMapping, Errno> {
        match offset.checked_add(size) {
            Some(end) if size > 0 && end <= len as u64 => {}
            _ => return Err(Errno::EINVAL),
        }
        // SAFETY: the range lies inside a mapping owned by this crate (a device BAR or a
        // reservation), which is only ever accessed with volatile operations; device access
        // through the IOMMU cannot invalidate Rust references because none exist.
        unsafe { self.try_map(addr as u64 + offset, iova, size) }
    }

    fn map_op(&self) -> &'static str {
        match self.backend {
            Backend::Container { .. } => "VFIO_IOMMU_MAP_DMA",
            Backend::Iommufd { .. } => "IOMMU_IOAS_MAP",
        }
    }

    fn unmap_op(&self) -> &'static str {
        match self.backend {
            Backend::Container { .. } => "VFIO_IOMMU_UNMAP_DMA",
            Backend::Iommufd { .. } => "IOMMU_IOAS_UNMAP",
        }
    }

    /// Unmap `iova..iova+size`, returning the kernel's unmapped byte count or its errno
    /// (upstream's `__iommu_unmap`). Tracked mappings wholly inside the range are forgotten on
    /// success.
    pub fn try_unmap(&self, iova: u64, size: u64) -> Result<u64, Errno> {
        let n = match &self.backend {
            Backend::Container { fd, .. } => container::unmap_dma(&*self.sys, fd.raw(), iova, size),
            Backend::Iommufd { fd, ioas_id } => {
                iommufd::unmap(&*self.sys, fd.raw(), *ioas_id, iova, size)
            }
        }?;
        // Forget tracked mappings that lie wholly inside the unmapped range (regions are
        // unmapped whole, as upstream does; a partial unmap leaves the mapping tracked).
        let last = iova.saturating_add(size.saturating_sub(1));
        lock(&self.regions).retain(|m| {
            let m_last = m.iova.saturating_add(m.size.saturating_sub(1));
            !(size > 0 && m.iova >= iova && m_last <= last)
        });
        Ok(n)
    }

    /// [`Iommu::try_unmap`] with a typed error.
    pub fn unmap(&self, iova: u64, size: u64) -> Result<u64> {
        self.try_unmap(iova, size)
            .map_err(|e| Error::os(self.who(), self.unmap_op(), e))
    }

    /// Unmap a tracked mapping.
    pub fn unmap_mapping(&self, m: &DmaMapping) -> Result<u64> {
        self.unmap(m.iova, m.size)
    }

    /// Unmap everything (type1 VFIO_DMA_UNMAP_FLAG_ALL / IOAS_UNMAP of 0..u64::MAX), returning
    /// the unmapped byte count or errno; the tracked list is emptied on success.
    pub fn try_unmap_all(&self) -> Result<u64, Errno> {
        let n = match &self.backend {
            Backend::Container { fd, .. } => container::unmap_all(&*self.sys, fd.raw()),
            Backend::Iommufd { fd, ioas_id } => iommufd::unmap_all(&*self.sys, fd.raw(), *ioas_id),
        }?;
        lock(&self.regions).clear();
        Ok(n)
    }

    /// [`Iommu::try_unmap_all`] with a typed error.
    pub fn unmap_all(&self) -> Result<u64> {
        self.try_unmap_all()
            .map_err(|e| Error::os(self.who(), self.unmap_op(), e))
    }

    /// A snapshot of the tracked mappings.
    pub fn mappings(&self) -> Vec<DmaMapping> {
        lock(&self.regions).clone()
    }

    /// Translate a host address inside a tracked mapping to its IOVA (upstream's
    /// `__iommu_hva2iova`; [`Error::NotMapped`] carries ENOENT).
    pub fn hva_to_iova(&self, vaddr: u64) -> Result<u64> {
        lock(&self.regions)
            .iter()
            .find_map(|m| m.translate(vaddr))
            .ok_or(Error::NotMapped { vaddr })
    }

    /// The usable IOVA ranges, sorted and validated. Query after every device is attached: the
    /// ranges can shrink as devices join.
    pub fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        let who = self.who();
        let ranges = match &self.backend {
            Backend::Container { fd, .. } => {
                let buf = container::iommu_info(&*self.sys, fd.raw())
                    .map_err(|e| Error::os(&who, "VFIO_IOMMU_GET_INFO", e))?;
                container::parse_iova_ranges(&buf)
                    .map_err(|reason| Error::Malformed {
                        who: who.clone(),
                        what: "VFIO_IOMMU_GET_INFO capability chain",
                        reason,
                    })?
                    .ok_or_else(|| Error::Unsupported {
                        bdf: who.clone(),
                        what:
                            "the type1 IOVA-range capability (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)"
                                .into(),
                    })?
            }
            Backend::Iommufd { fd, ioas_id } => {
                iommufd::iova_ranges(&*self.sys, fd.raw(), *ioas_id)
                    .map_err(|e| Error::os(&who, "IOMMU_IOAS_IOVA_RANGES", e))?
                    .0
            }
        };
        normalize_ranges(&who, ranges)
    }

    /// An allocator over [`Iommu::iova_ranges`].
    pub fn iova_allocator(&self) -> Result<IovaAllocator> {
        IovaAllocator::new(self.iova_ranges()?)
    }

    /// Set the container's IOMMU type once (container modes), tolerating EBUSY from a racing
    /// opener as upstream ≥ 6.19 does. No-op for native iommufd or if already set. Needs at
    /// least one group attached (the kernel refuses otherwise).
    pub fn container_set_iommu(&self) -> Result<()> {
        match self.container_state() {
            Some(mut st) => self.set_iommu_locked(&mut st),
            None => Ok(()),
        }
    }

    pub(crate) fn set_iommu_locked(&self, st: &mut ContainerState) -> Result<()> {
        let (Backend::Container { fd, .. }, Some(ty)) = (&self.backend, self.mode.iommu_type())
        else {
            return Ok(());
        };
        if st.iommu_set {
            return Ok(());
        }
        match container::set_iommu(&*self.sys, fd.raw(), ty) {
            Ok(()) | Err(Errno::EBUSY) => {
                st.iommu_set = true;
                Ok(())
            }
            Err(e) => Err(Error::os(self.who(), "VFIO_SET_IOMMU", e)),
        }
    }

    /// Book-keeping after a group fd was closed (called with the state lock held). When the
    /// last group leaves a legacy VFIO container the kernel releases its IOMMU and every DMA
    /// mapping, so SET_IOMMU is needed again and the tracked mappings are gone. (The iommufd
    /// compatibility container keeps its IOAS and mappings.)
    pub(crate) fn group_closed(&self, st: &mut ContainerState) {
        st.live_groups = st.live_groups.saturating_sub(1);
        if st.live_groups == 0 {
            st.iommu_set = false;
            if !self.mode.is_iommufd() {
                lock(&self.regions).clear();
            }
        }
    }

    /// VFIO_CHECK_EXTENSION on the container for this mode's IOMMU type (> 0 = supported).
    pub fn check_extension(&self, extension: u32) -> Result<i32, Errno> {
        match &self.backend {
            Backend::Container { fd, .. } => {
                container::check_extension(&*self.sys, fd.raw(), extension)
            }
            Backend::Iommufd { .. } => Err(Errno::ENOTTY),
        }
    }
}
