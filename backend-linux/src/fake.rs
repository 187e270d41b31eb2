//! A test double for [`Sys`]: a small simulated VFIO/IOMMUFD kernel with errno injection.
//!
//! It models just enough of the uAPI to drive every code path: container and iommufd fds (API
//! version, extensions, SET_IOMMU, IOVA ranges, map/unmap with overflow checks), group fds
//! (viability, SET_CONTAINER, GET_DEVICE_FD with VF token parsing), device fds (info, regions
//! with capability chains, IRQ info, SET_IRQS with eventfds, reset, VF token feature, cdev
//! bind/attach/detach), eventfds, sysfs links and directories. Memory mappings are real
//! anonymous mappings so BAR windows and buffers can be accessed.

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use iommufd_bindings as ifd;
use vfio_bindings::bindings::vfio as vb;

use crate::iova::IovaRange;
use crate::sys::{
    nr, read_plain, write_plain, Errno, IoctlArg, MapKind, MmapRequest, RealSys, Sys,
};

pub(crate) const BDF: &str = "0000:00:04.0";
pub(crate) const GROUP: u32 = 7;
pub(crate) const PAGE: u64 = 4096;

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Container,
    Iommufd,
    Group,
    Device { cdev: bool },
    Eventfd,
    Memfd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// Which mmaps an injected failure applies to.
pub(crate) type MapPredicate = fn(&MapKind) -> bool;

#[derive(Debug)]
pub(crate) struct State {
    pub next_fd: RawFd,
    pub fds: HashMap<RawFd, Node>,
    pub closed: Vec<RawFd>,
    /// Every ioctl request, in order, with the fd kind.
    pub log: Vec<(String, u64)>,
    /// Fail the next ioctl with this request number.
    pub fail_ioctl: HashMap<u64, Errno>,
    /// Fail open of this path.
    pub fail_open: HashMap<PathBuf, Errno>,
    /// Paths that exist as device nodes.
    pub nodes: HashSet<PathBuf>,
    pub links: HashMap<PathBuf, PathBuf>,
    pub dirs: HashMap<PathBuf, Vec<String>>,
    pub exists: HashSet<PathBuf>,
    /// Every sysfs-style lookup (`readlink`, `read_dir`, `exists`), in order, with its path.
    pub lookups: Vec<(&'static str, PathBuf)>,
    pub api_version: i32,
    pub extensions: HashSet<u32>,
    pub iommu_set: Option<u32>,
    pub set_iommu_busy: bool,
    pub group_viable: bool,
    pub group_container: Option<RawFd>,
    pub ranges: Vec<IovaRange>,
    /// Extra ranges appear after the first IOVA_RANGES probe (to exercise the retry).
    pub ranges_grow_once: Option<IovaRange>,
    pub mappings: Vec<Mapping>,
    pub overflow_errno: Errno,
    pub next_ioas: u32,
    pub device_flags: u32,
    /// Device-info capabilities: (id, version, payload after the 8-byte header, next offset
    /// override). `next: None` chains to the following entry.
    pub device_caps: Vec<(u16, u16, Vec<u8>, Option<u32>)>,
    pub config: Vec<u8>,
    pub bar_sizes: [u64; 6],
    pub bar0_sparse: bool,
    pub irq_counts: [u32; 3],
    pub irq_fds: HashMap<(u32, u32), RawFd>,
    pub set_irqs_log: Vec<(u32, u32, u32, u32, Vec<RawFd>)>,
    pub eventfds: HashMap<RawFd, u64>,
    pub resets: u32,
    pub pf_token: Option<[u8; 16]>,
    /// A VF token the device requires to open (SR-IOV VF).
    pub required_token: Option<[u8; 16]>,
    pub bound: bool,
    pub attached: Option<u32>,
    pub mmap_fail: Option<(MapPredicate, Errno)>,
    /// Fail device (shared) mmaps of exactly this length.
    pub mmap_fail_len: Option<(usize, Errno)>,
    /// BAR contents reached through pread/pwrite, by file offset (unwritten bytes read 0).
    pub bar_data: HashMap<u64, u8>,
    /// Every BAR pread/pwrite: (write, file offset, length).
    pub bar_rw: Vec<(bool, u64, usize)>,
    pub mmaps: Vec<(usize, usize, MmapRequest)>,
    /// Every munmap, in order.
    pub munmaps: Vec<(usize, usize)>,
    pub device_names_requested: Vec<String>,
}

impl Default for State {
    fn default() -> Self {
        let mut config = vec![0u8; 256];
        config[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x11e8u16.to_le_bytes());
        let dev = PathBuf::from(format!("/sys/bus/pci/devices/{BDF}"));
        let mut links = HashMap::new();
        links.insert(
            dev.join("driver"),
            PathBuf::from("../../../bus/pci/drivers/vfio-pci"),
        );
        links.insert(
            dev.join("iommu_group"),
            PathBuf::from(format!("../../../kernel/iommu_groups/{GROUP}")),
        );
        let mut dirs = HashMap::new();
        dirs.insert(dev.join("vfio-dev"), vec!["vfio3".to_string()]);
        dirs.insert(
            PathBuf::from(format!("/sys/kernel/iommu_groups/{GROUP}/devices")),
            vec![BDF.to_string()],
        );
        let mut exists = HashSet::new();
        exists.insert(dev);
        let nodes = [
            "/dev/vfio/vfio".to_string(),
            "/dev/iommu".to_string(),
            format!("/dev/vfio/{GROUP}"),
            "/dev/vfio/devices/vfio3".to_string(),
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        State {
            next_fd: 100,
            fds: HashMap::new(),
            closed: vec![],
            log: vec![],
            fail_ioctl: HashMap::new(),
            fail_open: HashMap::new(),
            nodes,
            lookups: vec![],
            links,
            dirs,
            exists,
            api_version: 0,
            extensions: [
                vb::VFIO_TYPE1_IOMMU,
                vb::VFIO_TYPE1v2_IOMMU,
                vb::VFIO_UNMAP_ALL,
            ]
            .into_iter()
            .collect(),
            iommu_set: None,
            set_iommu_busy: false,
            group_viable: true,
            group_container: None,
            ranges: vec![
                IovaRange::new(0, 0xfedf_ffff),
                IovaRange::new(0xfef0_0000, 0xffff_ffff_ffff),
            ],
            ranges_grow_once: None,
            mappings: vec![],
            overflow_errno: Errno::EOVERFLOW,
            next_ioas: 1,
            device_flags: vb::VFIO_DEVICE_FLAGS_PCI | vb::VFIO_DEVICE_FLAGS_RESET,
            device_caps: vec![],
            config,
            bar_sizes: [0x1_0000, 0, 0x20_0000, 0, 0, 0],
            bar0_sparse: true,
            irq_counts: [1, 8, 16],
            irq_fds: HashMap::new(),
            set_irqs_log: vec![],
            eventfds: HashMap::new(),
            resets: 0,
            pf_token: None,
            required_token: None,
            bound: false,
            attached: None,
            mmap_fail: None,
            mmap_fail_len: None,
            bar_data: HashMap::new(),
            bar_rw: vec![],
            mmaps: vec![],
            munmaps: vec![],
            device_names_requested: vec![],
        }
    }
}

/// The double. Cheap to clone (shares state).
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeSys {
    pub st: Arc<Mutex<State>>,
}

impl FakeSys {
    pub fn new() -> (FakeSys, Arc<dyn Sys>) {
        let f = FakeSys::default();
        let s: Arc<dyn Sys> = Arc::new(f.clone());
        (f, s)
    }
    pub fn st(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap()
    }
    pub fn fail_next(&self, request: u64, e: Errno) {
        self.st().fail_ioctl.insert(request, e);
    }
    pub fn requests(&self) -> Vec<u64> {
        self.st().log.iter().map(|(_, r)| *r).collect()
    }
    pub fn open_fd_count(&self) -> usize {
        self.st().fds.len()
    }
}

const REGION_INFO: usize = 32;

fn range_of(m: &Mapping) -> (u64, u64) {
    (m.iova, m.iova + m.size - 1)
}

impl State {
    fn map(&mut self, vaddr: u64, iova: u64, size: u64) -> Result<i32, Errno> {
        if size == 0 || !iova.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(size - 1).ok_or(self.overflow_errno)?;
        if !self
            .ranges
            .iter()
            .any(|r| iova >= r.start && last <= r.last)
        {
            return Err(Errno::EINVAL);
        }
        if self.mappings.iter().any(|m| {
            let (s, l) = range_of(m);
            iova <= l && s <= last
        }) {
            return Err(Errno::EEXIST);
        }
        self.mappings.push(Mapping { vaddr, iova, size });
        Ok(0)
    }

    fn unmap(&mut self, iova: u64, size: u64, all: bool) -> Result<u64, Errno> {
        if all {
            let n = self.mappings.iter().map(|m| m.size).sum();
            self.mappings.clear();
            return Ok(n);
        }
        if size == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(size - 1).ok_or(self.overflow_errno)?;
        let mut n = 0;
        self.mappings.retain(|m| {
            let (s, l) = range_of(m);
            if s >= iova && l <= last {
                n += m.size;
                false
            } else {
                true
            }
        });
        Ok(n)
    }

    fn region(&self, index: u32, buf: &mut [u8]) -> Result<i32, Errno> {
        let hdr: vb::vfio_region_info = read_plain(buf, 0).ok_or(Errno::EFAULT)?;
        let mut out = vb::vfio_region_info {
            argsz: REGION_INFO as u32,
            index,
            ..Default::default()
        };
        out.offset = (index as u64) << 40;
        match index {
            0..=5 => {
                out.size = self.bar_sizes[index as usize];
                if out.size > 0 {
                    out.flags = vb::VFIO_REGION_INFO_FLAG_READ
                        | vb::VFIO_REGION_INFO_FLAG_WRITE
                        | vb::VFIO_REGION_INFO_FLAG_MMAP;
                }
                if index == 0 && self.bar0_sparse {
                    // Caps: sparse mmap (2 areas) then MSI-X mappable.
                    let need = REGION_INFO + 16 + 32 + 8;
                    out.flags |= vb::VFIO_REGION_INFO_FLAG_CAPS;
                    out.argsz = need as u32;
                    if (hdr.argsz as usize) >= need && buf.len() >= need {
                        out.cap_offset = REGION_INFO as u32;
                        let h = vb::vfio_info_cap_header {
                            id: vb::VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16,
                            version: 1,
                            next: (REGION_INFO + 48) as u32,
                        };
                        write_plain(buf, REGION_INFO, &h);
                        write_plain(buf, REGION_INFO + 8, &2u32);
                        write_plain(buf, REGION_INFO + 16, &0u64);
                        write_plain(buf, REGION_INFO + 24, &0x3000u64);
                        write_plain(buf, REGION_INFO + 32, &0x4000u64);
                        write_plain(buf, REGION_INFO + 40, &0xc000u64);
                        let h2 = vb::vfio_info_cap_header {
                            id: vb::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE as u16,
                            version: 1,
                            next: 0,
                        };
                        write_plain(buf, REGION_INFO + 48, &h2);
                    }
                }
            }
            7 => {
                out.size = self.config.len() as u64;
                out.flags = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;
            }
            _ => {}
        }
        write_plain(buf, 0, &out);
        Ok(0)
    }

    fn set_irqs(&mut self, buf: &[u8]) -> Result<i32, Errno> {
        let flags: u32 = read_plain(buf, 4).ok_or(Errno::EFAULT)?;
        let index: u32 = read_plain(buf, 8).ok_or(Errno::EFAULT)?;
        let start: u32 = read_plain(buf, 12).ok_or(Errno::EFAULT)?;
        let count: u32 = read_plain(buf, 16).ok_or(Errno::EFAULT)?;
        let max = *self.irq_counts.get(index as usize).ok_or(Errno::EINVAL)?;
        let mut fds = vec![];
        if flags & vb::VFIO_IRQ_SET_DATA_EVENTFD != 0 {
            if start + count > max {
                return Err(Errno::EINVAL);
            }
            for i in 0..count as usize {
                let fd: i32 = read_plain(buf, 20 + 4 * i).ok_or(Errno::EFAULT)?;
                fds.push(fd);
                if fd >= 0 {
                    self.irq_fds.insert((index, start + i as u32), fd);
                } else {
                    self.irq_fds.remove(&(index, start + i as u32));
                }
            }
        } else if flags & vb::VFIO_IRQ_SET_DATA_NONE != 0
            && flags & vb::VFIO_IRQ_SET_ACTION_TRIGGER != 0
        {
            if count == 0 {
                self.irq_fds.retain(|(i, _), _| *i != index);
            } else {
                for v in start..start + count {
                    let fd = *self.irq_fds.get(&(index, v)).ok_or(Errno::EINVAL)?;
                    *self.eventfds.entry(fd).or_default() += 1;
                }
            }
        }
        self.set_irqs_log.push((flags, index, start, count, fds));
        Ok(0)
    }

    fn device_ioctl(&mut self, cdev: bool, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        if cdev && !self.bound && request != nr::VFIO_DEVICE_BIND_IOMMUFD {
            return Err(Errno::EINVAL);
        }
        match (request, arg) {
            (nr::VFIO_DEVICE_GET_INFO, IoctlArg::Buf(b)) => {
                let hdr: vb::vfio_device_info = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                let need = 24
                    + self
                        .device_caps
                        .iter()
                        .map(|c| 8 + c.2.len())
                        .sum::<usize>();
                let mut di = vb::vfio_device_info {
                    argsz: need as u32,
                    flags: self.device_flags,
                    num_regions: 9,
                    num_irqs: 5,
                    cap_offset: 0,
                    pad: 0,
                };
                if !self.device_caps.is_empty() {
                    di.flags |= vb::VFIO_DEVICE_FLAGS_CAPS;
                    if hdr.argsz as usize >= need && b.len() >= need {
                        di.cap_offset = 24;
                        let mut off = 24;
                        let n = self.device_caps.len();
                        for (i, (id, version, payload, next)) in self.device_caps.iter().enumerate()
                        {
                            let end = off + 8 + payload.len();
                            let h = vb::vfio_info_cap_header {
                                id: *id,
                                version: *version,
                                next: next.unwrap_or(if i + 1 == n { 0 } else { end as u32 }),
                            };
                            write_plain(b, off, &h);
                            b[off + 8..end].copy_from_slice(payload);
                            off = end;
                        }
                    }
                }
                write_plain(b, 0, &di);
                Ok(0)
            }
            (nr::VFIO_DEVICE_GET_REGION_INFO, IoctlArg::Buf(b)) => {
                let idx: u32 = read_plain(b, 8).ok_or(Errno::EFAULT)?;
                self.region(idx, b)
            }
            (nr::VFIO_DEVICE_GET_IRQ_INFO, IoctlArg::Buf(b)) => {
                let idx: u32 = read_plain(b, 8).ok_or(Errno::EFAULT)?;
                let count = *self.irq_counts.get(idx as usize).unwrap_or(&0);
                let flags = vb::VFIO_IRQ_INFO_EVENTFD
                    | if idx == 0 {
                        vb::VFIO_IRQ_INFO_MASKABLE | vb::VFIO_IRQ_INFO_AUTOMASKED
                    } else {
                        vb::VFIO_IRQ_INFO_NORESIZE
                    };
                write_plain(b, 4, &flags);
                write_plain(b, 12, &count);
                Ok(0)
            }
            (nr::VFIO_DEVICE_SET_IRQS, IoctlArg::Buf(b)) => self.set_irqs(b),
            (nr::VFIO_DEVICE_RESET, IoctlArg::None) => {
                if self.device_flags & vb::VFIO_DEVICE_FLAGS_RESET == 0 {
                    return Err(Errno::EINVAL);
                }
                self.resets += 1;
                self.irq_fds.clear();
                Ok(0)
            }
            (nr::VFIO_DEVICE_FEATURE, IoctlArg::Buf(b)) => {
                let flags: u32 = read_plain(b, 4).ok_or(Errno::EFAULT)?;
                if flags != vb::VFIO_DEVICE_FEATURE_SET | vb::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN
                    || b.len() != 24
                {
                    return Err(Errno::EINVAL);
                }
                let mut t = [0u8; 16];
                t.copy_from_slice(&b[8..24]);
                self.pf_token = Some(t);
                Ok(0)
            }
            (nr::VFIO_DEVICE_BIND_IOMMUFD, IoctlArg::Buf(b)) => {
                if !cdev {
                    return Err(Errno::ENOTTY);
                }
                let bind: vb::vfio_device_bind_iommufd = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                if bind.iommufd < 0 {
                    return Err(Errno::EBADF);
                }
                if self.bound {
                    return Err(Errno::EBUSY);
                }
                let token = if bind.flags & vb::VFIO_DEVICE_BIND_FLAG_TOKEN != 0 {
                    let mut t = [0u8; 16];
                    // SAFETY: the code under test passes a pointer to 16 live bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bind.token_uuid_ptr as *const u8,
                            t.as_mut_ptr(),
                            16,
                        )
                    };
                    Some(t)
                } else {
                    None
                };
                if self.required_token.is_some() && token != self.required_token {
                    return Err(Errno::EACCES);
                }
                self.bound = true;
                write_plain(b, 12, &42u32);
                Ok(0)
            }
            (nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, IoctlArg::Buf(b)) => {
                let pt: u32 = read_plain(b, 8).ok_or(Errno::EFAULT)?;
                if pt == 0 || pt >= self.next_ioas {
                    return Err(Errno::ENOENT);
                }
                self.attached = Some(pt);
                Ok(0)
            }
            (nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, IoctlArg::Buf(_)) => {
                self.attached.take().map(|_| 0).ok_or(Errno::EINVAL)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn container_ioctl(&mut self, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        match (request, arg) {
            (nr::VFIO_GET_API_VERSION, IoctlArg::None) => Ok(self.api_version),
            (nr::VFIO_CHECK_EXTENSION, IoctlArg::Value(v)) => {
                Ok(self.extensions.contains(&(v as u32)) as i32)
            }
            (nr::VFIO_SET_IOMMU, IoctlArg::Value(v)) => {
                if self.group_container.is_none() {
                    return Err(Errno::EINVAL);
                }
                // A legacy container with an IOMMU already set answers EINVAL
                // (vfio_ioctl_set_iommu); `set_iommu_busy` models a racing opener's EBUSY.
                if self.iommu_set.is_some() {
                    return Err(Errno::EINVAL);
                }
                if self.set_iommu_busy {
                    return Err(Errno::EBUSY);
                }
                self.iommu_set = Some(v as u32);
                Ok(0)
            }
            (nr::VFIO_IOMMU_GET_INFO, IoctlArg::Buf(b)) => {
                let need = 24 + 16 + 16 * self.ranges.len();
                let hdr: vb::vfio_iommu_type1_info = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                let mut info = vb::vfio_iommu_type1_info {
                    argsz: need as u32,
                    flags: vb::VFIO_IOMMU_INFO_PGSIZES | vb::VFIO_IOMMU_INFO_CAPS,
                    iova_pgsizes: 0x4020_1000,
                    cap_offset: 0,
                    pad: 0,
                };
                if hdr.argsz as usize >= need && b.len() >= need {
                    info.cap_offset = 24;
                    let h = vb::vfio_info_cap_header {
                        id: vb::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16,
                        version: 1,
                        next: 0,
                    };
                    write_plain(b, 24, &h);
                    write_plain(b, 32, &(self.ranges.len() as u32));
                    for (i, r) in self.ranges.iter().enumerate() {
                        write_plain(b, 40 + 16 * i, &r.start);
                        write_plain(b, 48 + 16 * i, &r.last);
                    }
                }
                write_plain(b, 0, &info);
                Ok(0)
            }
            (nr::VFIO_IOMMU_MAP_DMA, IoctlArg::Buf(b)) => {
                if self.iommu_set.is_none() {
                    return Err(Errno::EINVAL);
                }
                let m: vb::vfio_iommu_type1_dma_map = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                if m.flags != vb::VFIO_DMA_MAP_FLAG_READ | vb::VFIO_DMA_MAP_FLAG_WRITE {
                    return Err(Errno::EINVAL);
                }
                self.map(m.vaddr, m.iova, m.size)
            }
            (nr::VFIO_IOMMU_UNMAP_DMA, IoctlArg::Buf(b)) => {
                let flags: u32 = read_plain(b, 4).ok_or(Errno::EFAULT)?;
                let iova: u64 = read_plain(b, 8).ok_or(Errno::EFAULT)?;
                let size: u64 = read_plain(b, 16).ok_or(Errno::EFAULT)?;
                let all = flags & vb::VFIO_DMA_UNMAP_FLAG_ALL != 0;
                if all && (iova != 0 || size != 0) {
                    return Err(Errno::EINVAL);
                }
                let n = self.unmap(iova, size, all)?;
                write_plain(b, 16, &n);
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn iommufd_ioctl(&mut self, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        match (request, arg) {
            (nr::IOMMU_IOAS_ALLOC, IoctlArg::Buf(b)) => {
                let id = self.next_ioas;
                self.next_ioas += 1;
                write_plain(b, 8, &id);
                Ok(0)
            }
            (nr::IOMMU_DESTROY, IoctlArg::Buf(_)) => Ok(0),
            (nr::IOMMU_IOAS_IOVA_RANGES, IoctlArg::Buf(b)) => {
                let mut q: ifd::iommu_ioas_iova_ranges = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                let cap = q.num_iovas as usize;
                let n = self.ranges.len();
                if cap >= n {
                    for (i, r) in self.ranges.iter().enumerate() {
                        let rr = ifd::iommu_iova_range {
                            start: r.start,
                            last: r.last,
                        };
                        // SAFETY: the code under test passes an array of num_iovas ranges.
                        unsafe {
                            std::ptr::write_unaligned(
                                (q.allowed_iovas as *mut ifd::iommu_iova_range).add(i),
                                rr,
                            )
                        };
                    }
                }
                q.num_iovas = n as u32;
                q.out_iova_alignment = PAGE;
                write_plain(b, 0, &q);
                if let Some(extra) = self.ranges_grow_once.take() {
                    self.ranges.push(extra);
                }
                if cap < n {
                    return Err(Errno::EMSGSIZE);
                }
                Ok(0)
            }
            (nr::IOMMU_IOAS_MAP, IoctlArg::Buf(b)) => {
                let m: ifd::iommu_ioas_map = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                if m.ioas_id == 0 || m.ioas_id >= self.next_ioas {
                    return Err(Errno::ENOENT);
                }
                self.map(m.user_va, m.iova, m.length)
            }
            (nr::IOMMU_IOAS_UNMAP, IoctlArg::Buf(b)) => {
                let u: ifd::iommu_ioas_unmap = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                let all = u.iova == 0 && u.length == u64::MAX;
                let n = self.unmap(u.iova, u.length, all)?;
                if n == 0 {
                    return Err(Errno::ENOENT);
                }
                write_plain(b, 16, &n);
                Ok(0)
            }
            // The compat layer answers the container ioctls too.
            (r, a) => self.container_ioctl(r, a),
        }
    }

    fn group_ioctl(&mut self, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        match (request, arg) {
            (nr::VFIO_GROUP_GET_STATUS, IoctlArg::Buf(b)) => {
                let mut flags = 0;
                if self.group_viable {
                    flags |= vb::VFIO_GROUP_FLAGS_VIABLE;
                }
                if self.group_container.is_some() {
                    flags |= vb::VFIO_GROUP_FLAGS_CONTAINER_SET;
                }
                write_plain(b, 4, &flags);
                Ok(0)
            }
            (nr::VFIO_GROUP_SET_CONTAINER, IoctlArg::Buf(b)) => {
                let fd: i32 = read_plain(b, 0).ok_or(Errno::EFAULT)?;
                if !matches!(
                    self.fds.get(&fd),
                    Some(Node::Container) | Some(Node::Iommufd)
                ) {
                    return Err(Errno::EBADF);
                }
                if self.group_container.is_some() {
                    return Err(Errno::EBUSY);
                }
                self.group_container = Some(fd);
                Ok(0)
            }
            (nr::VFIO_GROUP_GET_DEVICE_FD, IoctlArg::Buf(b)) => {
                if self.iommu_set.is_none() {
                    return Err(Errno::EINVAL);
                }
                let end = b.iter().position(|&c| c == 0).ok_or(Errno::EINVAL)?;
                let name = String::from_utf8_lossy(&b[..end]).into_owned();
                self.device_names_requested.push(name.clone());
                let mut parts = name.split(' ');
                let bdf = parts.next().unwrap_or_default().to_string();
                let token = parts
                    .next()
                    .and_then(|t| t.strip_prefix("vf_token="))
                    .and_then(|t| t.parse::<crate::VfToken>().ok())
                    .map(|t| t.0);
                if bdf != BDF {
                    return Err(Errno::ENODEV);
                }
                if self.required_token.is_some() && token != self.required_token {
                    return Err(Errno::EACCES);
                }
                Ok(self.new_fd(Node::Device { cdev: false }))
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// For a pread/pwrite of a BAR region (index 0–5 at `index << 40`): the byte count.
    fn bar_access(&self, fd: RawFd, offset: u64, len: usize) -> Result<Option<usize>, Errno> {
        let index = (offset >> 40) as usize;
        let Some(&size) = self.bar_sizes.get(index) else {
            return Ok(None);
        };
        if !matches!(self.fds.get(&fd), Some(Node::Device { .. })) {
            return Err(Errno::EBADF);
        }
        let off = offset & ((1 << 40) - 1);
        Ok(Some((len as u64).min(size.saturating_sub(off)) as usize))
    }

    fn new_fd(&mut self, node: Node) -> RawFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, node);
        fd
    }
}

// SAFETY: the fake hands out fresh fake descriptor numbers and its `close` only forgets the
// number it is given; no real descriptor is ever touched.
unsafe impl Sys for FakeSys {
    fn open(&self, path: &Path, _nonblock: bool) -> Result<RawFd, Errno> {
        let mut st = self.st();
        if let Some(e) = st.fail_open.get(path) {
            return Err(*e);
        }
        if !st.nodes.contains(path) {
            return Err(Errno::ENOENT);
        }
        let p = path.to_string_lossy();
        let node = if p == "/dev/vfio/vfio" {
            Node::Container
        } else if p == "/dev/iommu" {
            Node::Iommufd
        } else if let Some(dev) = p.strip_prefix("/dev/vfio/devices/") {
            let _ = dev;
            Node::Device { cdev: true }
        } else if let Some(g) = p.strip_prefix("/dev/vfio/") {
            if st.fds.values().any(|n| matches!(n, Node::Group)) {
                return Err(Errno::EBUSY);
            }
            g.parse::<u32>().map_err(|_| Errno::ENOENT)?;
            Node::Group
        } else {
            return Err(Errno::ENOENT);
        };
        Ok(st.new_fd(node))
    }

    unsafe fn close(&self, fd: RawFd) {
        let mut st = self.st();
        if let Some(node) = st.fds.remove(&fd) {
            if matches!(node, Node::Device { cdev: true, .. }) {
                st.bound = false;
                st.attached = None;
            }
            if matches!(node, Node::Group) {
                // The last group leaving returns a legacy container to its unset state and
                // drops its mappings; iommufd's compat container keeps its IOAS.
                if let Some(cfd) = st.group_container.take() {
                    if matches!(st.fds.get(&cfd), Some(Node::Container)) {
                        st.mappings.clear();
                    }
                    st.iommu_set = None;
                }
            }
        } else {
            panic!("double close or unknown fd {fd}");
        }
        st.eventfds.remove(&fd);
        st.closed.push(fd);
    }

    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: IoctlArg<'_>) -> Result<i32, Errno> {
        let mut st = self.st();
        let node = st.fds.get(&fd).cloned().ok_or(Errno::EBADF)?;
        st.log.push((format!("{node:?}"), request));
        if let Some(e) = st.fail_ioctl.remove(&request) {
            return Err(e);
        }
        match node {
            Node::Container => st.container_ioctl(request, arg),
            Node::Iommufd => st.iommufd_ioctl(request, arg),
            Node::Group => st.group_ioctl(request, arg),
            Node::Device { cdev, .. } => st.device_ioctl(cdev, request, arg),
            Node::Eventfd | Node::Memfd => Err(Errno::ENOTTY),
        }
    }

    unsafe fn mmap(&self, req: MmapRequest) -> Result<usize, Errno> {
        let mut st = self.st();
        if let Some((pred, e)) = st.mmap_fail {
            if pred(&req.kind) {
                return Err(e);
            }
        }
        // Device and memfd mappings become anonymous shared memory; hugetlb becomes plain
        // anonymous memory (the double does not need real hugepages).
        let kind = match req.kind {
            MapKind::Shared { fd, .. } => {
                if !st.fds.contains_key(&fd) {
                    return Err(Errno::EBADF);
                }
                if let Some((len, e)) = st.mmap_fail_len {
                    if len == req.len {
                        return Err(e);
                    }
                }
                MapKind::AnonymousShared
            }
            MapKind::Hugetlb2M | MapKind::Hugetlb1G => MapKind::AnonymousPrivate,
            k => k,
        };
        // SAFETY: forwarded caller contract (fixed targets are the caller's reservation).
        let addr = unsafe { RealSys.mmap(MmapRequest { kind, ..req }) }?;
        st.mmaps.push((addr, req.len, req));
        Ok(addr)
    }

    unsafe fn munmap(&self, addr: usize, len: usize) -> Result<(), Errno> {
        self.st().munmaps.push((addr, len));
        // SAFETY: forwarded caller contract.
        unsafe { RealSys.munmap(addr, len) }
    }

    fn madvise_hugepage(&self, _addr: usize, _len: usize) -> Result<(), Errno> {
        Ok(())
    }

    fn pread(&self, fd: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let mut st = self.st();
        if let Some(n) = st.bar_access(fd, offset, buf.len())? {
            st.bar_rw.push((false, offset, n));
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = st.bar_data.get(&(offset + i as u64)).copied().unwrap_or(0);
            }
            return Ok(n);
        }
        let off = offset.checked_sub(7 << 40).ok_or(Errno::EINVAL)? as usize;
        if !matches!(st.fds.get(&fd), Some(Node::Device { .. })) {
            return Err(Errno::EBADF);
        }
        let n = buf.len().min(st.config.len().saturating_sub(off));
        buf[..n].copy_from_slice(&st.config[off..off + n]);
        Ok(n)
    }

    fn pwrite(&self, fd: RawFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        let mut st = self.st();
        if let Some(n) = st.bar_access(fd, offset, buf.len())? {
            st.bar_rw.push((true, offset, n));
            for (i, b) in buf[..n].iter().enumerate() {
                st.bar_data.insert(offset + i as u64, *b);
            }
            return Ok(n);
        }
        let off = offset.checked_sub(7 << 40).ok_or(Errno::EINVAL)? as usize;
        if !matches!(st.fds.get(&fd), Some(Node::Device { .. })) {
            return Err(Errno::EBADF);
        }
        let n = buf.len().min(st.config.len().saturating_sub(off));
        st.config[off..off + n].copy_from_slice(&buf[..n]);
        Ok(n)
    }

    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut st = self.st();
        let c = st.eventfds.get_mut(&fd).ok_or(Errno::EBADF)?;
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        if *c == 0 {
            return Err(Errno::EAGAIN);
        }
        buf[..8].copy_from_slice(&c.to_ne_bytes());
        *c = 0;
        Ok(8)
    }

    fn write(&self, fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
        let mut st = self.st();
        let c = st.eventfds.get_mut(&fd).ok_or(Errno::EBADF)?;
        let v = u64::from_ne_bytes(buf.try_into().map_err(|_| Errno::EINVAL)?);
        *c += v;
        Ok(8)
    }

    fn poll_readable(&self, fd: RawFd, _timeout_ms: i32) -> Result<bool, Errno> {
        let st = self.st();
        Ok(*st.eventfds.get(&fd).ok_or(Errno::EBADF)? > 0)
    }

    fn eventfd(&self) -> Result<RawFd, Errno> {
        let mut st = self.st();
        let fd = st.new_fd(Node::Eventfd);
        st.eventfds.insert(fd, 0);
        Ok(fd)
    }

    fn memfd_create(&self, _name: &str) -> Result<RawFd, Errno> {
        Ok(self.st().new_fd(Node::Memfd))
    }

    fn ftruncate(&self, fd: RawFd, _len: u64) -> Result<(), Errno> {
        match self.st().fds.get(&fd) {
            Some(Node::Memfd) => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn readlink(&self, path: &Path) -> Result<PathBuf, Errno> {
        let mut st = self.st();
        st.lookups.push(("readlink", path.to_path_buf()));
        st.links.get(path).cloned().ok_or(Errno::ENOENT)
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<String>, Errno> {
        let mut st = self.st();
        st.lookups.push(("read_dir", path.to_path_buf()));
        st.dirs.get(path).cloned().ok_or(Errno::ENOENT)
    }

    fn exists(&self, path: &Path) -> bool {
        let mut st = self.st();
        st.lookups.push(("exists", path.to_path_buf()));
        st.exists.contains(path)
    }
}
