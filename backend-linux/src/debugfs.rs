//! The Intel VT-d debugfs page-table dump: which page size the IOMMU used to map an IOVA.
//!
//! With `CONFIG_INTEL_IOMMU_DEBUGFS`, the kernel prints a device's DMA-remapping page table in
//! `/sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct`, one line per leaf:
//!
//! ```text
//! Device 0000:00:01.0 @0x1e6f000
//! IOVA_PFN          PML5E               PML4E               PDPE                PDE                 PTE
//! 0x0000000000200 | 0x0000000000000000  0x0000000001e70003  0x0000000001e0c003  0x0000000002000083
//! ```
//!
//! The first field is the IOVA's 4 KiB page frame number; then come the entries of the walk
//! from the top level down, stopping at the leaf (here a 2 MiB superpage in the PDE, bit 7
//! set). As upstream's `vfio_dma_mapping_test`, we split on spaces, tabs and `|`, read the page
//! frame number and up to five entries (PGD/PML5E, P4D/PML4E, PUD/PDPE, PMD/PDE, PTE; missing
//! ones are 0), and classify: PTE ≠ 0 → 4 KiB; PTE = 0 and PMD ≠ 0 → 2 MiB; PTE = PMD = 0 and
//! PUD ≠ 0 → 1 GiB. Lines that do not start with a hex number (headers) are ignored.
//!
//! Unlike upstream, a lookup finds the leaf whose range contains the IOVA (not only one that
//! starts at it), and a system where the walk cannot run returns
//! [`DebugfsError::Unsupported`] with the reason instead of silently passing.

use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::bdf::Bdf;

/// The granule of the dump's page frame numbers.
pub const VTD_PAGE_SIZE: u64 = 4096;

/// An IOMMU page (leaf) size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB (a PTE leaf).
    Size4K,
    /// 2 MiB (a PDE/PMD superpage).
    Size2M,
    /// 1 GiB (a PDPE/PUD superpage).
    Size1G,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 4 << 10,
            Self::Size2M => 2 << 20,
            Self::Size1G => 1 << 30,
        }
    }

    /// The size for a byte count, if it is one of the three.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            0x1000 => Some(Self::Size4K),
            0x20_0000 => Some(Self::Size2M),
            0x4000_0000 => Some(Self::Size1G),
            _ => None,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Size4K => "4K",
            Self::Size2M => "2M",
            Self::Size1G => "1G",
        })
    }
}

/// One leaf line of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The 4 KiB page frame number of the leaf's first IOVA.
    pub iova_pfn: u64,
    /// PML5E (PGD), PML4E (P4D), PDPE (PUD), PDE (PMD), PTE; 0 where the line stops early.
    pub entries: [u64; 5],
    /// The leaf size derived from the entries, or `None` if all of PUD, PMD and PTE are 0.
    pub size: Option<PageSize>,
}

impl Mapping {
    /// The PUD (PDPE) entry.
    pub fn pud(&self) -> u64 {
        self.entries[2]
    }
    /// The PMD (PDE) entry.
    pub fn pmd(&self) -> u64 {
        self.entries[3]
    }
    /// The PTE entry.
    pub fn pte(&self) -> u64 {
        self.entries[4]
    }

    /// The first IOVA the leaf maps.
    pub fn iova(&self) -> u64 {
        self.iova_pfn.wrapping_mul(VTD_PAGE_SIZE)
    }

    /// True if the leaf covers `iova`.
    pub fn contains(&self, iova: u64) -> bool {
        let len = self.size.map_or(VTD_PAGE_SIZE, PageSize::bytes);
        iova >= self.iova() && iova - self.iova() < len
    }
}

/// Classifies a leaf as upstream does (see the module documentation).
fn classify(entries: &[u64; 5]) -> Option<PageSize> {
    let [_, _, pud, pmd, pte] = *entries;
    if pte != 0 {
        Some(PageSize::Size4K)
    } else if pmd != 0 {
        Some(PageSize::Size2M)
    } else if pud != 0 {
        Some(PageSize::Size1G)
    } else {
        None
    }
}

fn parse_hex_token(t: &str) -> Option<u64> {
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}

/// Parses one line; `None` for headers and anything else that is not a leaf line.
pub fn parse_line(line: &str) -> Option<Mapping> {
    let mut tokens = line
        .split([' ', '\t', '|', '\n', '\r'])
        .filter(|t| !t.is_empty());
    let iova_pfn = parse_hex_token(tokens.next()?)?;
    let mut entries = [0u64; 5];
    for slot in entries.iter_mut() {
        match tokens.next() {
            Some(t) => *slot = parse_hex_token(t)?,
            None => break,
        }
    }
    Some(Mapping {
        iova_pfn,
        entries,
        size: classify(&entries),
    })
}

/// Every leaf line of a dump, in order.
pub fn parse_translation(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

/// The leaf covering `iova` in a dump, if any.
pub fn find_mapping(text: &str, iova: u64) -> Option<Mapping> {
    text.lines()
        .filter_map(parse_line)
        .find(|m| m.contains(iova))
}

/// Why a mapping size could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum DebugfsError {
    /// The check cannot run on this system (no debugfs, not an Intel IOMMU, no
    /// `CONFIG_INTEL_IOMMU_DEBUGFS`, no permission); the reason says which.
    #[error("IOMMU page-size check unsupported: {reason}")]
    Unsupported {
        /// Why.
        reason: String,
    },
    /// The dump exists but has no leaf covering the IOVA.
    #[error("{bdf}: IOVA {iova:#x} is not mapped in {path}")]
    NotMapped {
        /// The device.
        bdf: Bdf,
        /// The IOVA looked up.
        iova: u64,
        /// The dump file.
        path: PathBuf,
    },
    /// The leaf covering the IOVA has no non-zero PUD, PMD or PTE entry.
    #[error("{bdf}: IOVA {iova:#x}: leaf line has no PUD/PMD/PTE entry: {mapping:x?}")]
    NoLeaf {
        /// The device.
        bdf: Bdf,
        /// The IOVA looked up.
        iova: u64,
        /// The line found.
        mapping: Mapping,
    },
    /// Reading the dump failed.
    #[error("read {path}: {source}")]
    Io {
        /// The dump file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The Intel IOMMU debugfs directory, normally `/sys/kernel/debug/iommu/intel`.
#[derive(Debug, Clone)]
pub struct IntelIommuDebugfs {
    debugfs_root: PathBuf,
}

impl Default for IntelIommuDebugfs {
    fn default() -> Self {
        Self::new("/sys/kernel/debug")
    }
}

impl IntelIommuDebugfs {
    /// Uses debugfs mounted at `debugfs_root` (normally `/sys/kernel/debug`).
    pub fn new(debugfs_root: impl Into<PathBuf>) -> Self {
        Self {
            debugfs_root: debugfs_root.into(),
        }
    }

    /// `<debugfs>/iommu/intel/<bdf>/domain_translation_struct`.
    pub fn translation_path(&self, bdf: Bdf) -> PathBuf {
        self.debugfs_root
            .join("iommu/intel")
            .join(bdf.to_string())
            .join("domain_translation_struct")
    }

    /// Checks that the walk can run for `bdf`, explaining why not.
    pub fn check_supported(&self, bdf: Bdf) -> Result<(), DebugfsError> {
        let unsupported = |reason: String| Err(DebugfsError::Unsupported { reason });
        let iommu = self.debugfs_root.join("iommu");
        match fs::read_dir(&self.debugfs_root) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return unsupported(format!(
                    "{} is not readable (needs root)",
                    self.debugfs_root.display()
                ))
            }
            Err(_) => {
                return unsupported(format!(
                    "debugfs is not mounted at {}",
                    self.debugfs_root.display()
                ))
            }
            Ok(_) => {}
        }
        let intel = iommu.join("intel");
        if !intel.is_dir() {
            let found: Vec<String> = fs::read_dir(&iommu)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            return unsupported(if found.is_empty() {
                format!(
                    "{} missing: not an Intel VT-d IOMMU, or the kernel lacks CONFIG_INTEL_IOMMU_DEBUGFS \
                     (only the Intel page-table dump is understood)",
                    intel.display()
                )
            } else {
                format!(
                    "{} missing (found {}): only the Intel VT-d page-table dump is understood",
                    intel.display(),
                    found.join(", ")
                )
            });
        }
        let path = self.translation_path(bdf);
        if !path.exists() {
            return unsupported(format!(
                "{} missing: {bdf} has no DMA-remapping domain dump (not behind this IOMMU?)",
                path.display()
            ));
        }
        Ok(())
    }

    /// The raw dump for `bdf`.
    pub fn read_translation(&self, bdf: Bdf) -> Result<String, DebugfsError> {
        self.check_supported(bdf)?;
        let path = self.translation_path(bdf);
        fs::read_to_string(&path).map_err(|source| DebugfsError::Io { path, source })
    }

    /// The leaf covering `iova` in `bdf`'s page table.
    pub fn mapping(&self, bdf: Bdf, iova: u64) -> Result<Mapping, DebugfsError> {
        let text = self.read_translation(bdf)?;
        find_mapping(&text, iova).ok_or_else(|| DebugfsError::NotMapped {
            bdf,
            iova,
            path: self.translation_path(bdf),
        })
    }

    /// The IOMMU page size used to map `iova` for `bdf`.
    pub fn mapping_size(&self, bdf: Bdf, iova: u64) -> Result<PageSize, DebugfsError> {
        let mapping = self.mapping(bdf, iova)?;
        mapping
            .size
            .ok_or(DebugfsError::NoLeaf { bdf, iova, mapping })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on the QEMU rig (intel-iommu, 6.12): a 2 MiB hugetlb page at IOVA 0x200000.
    const DUMP_2M: &str = "Device 0000:00:01.0 @0x1e6f000\n\
IOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE\n\
0x0000000000200 |\t0x0000000000000000\t0x0000000001e70003\t0x0000000001e0c003\t0x0000000002000083\t\n";

    /// A 1 GiB leaf (PDPE with bit 7) at IOVA 0x40000000 and two 4 KiB leaves.
    const DUMP_MIXED: &str = "Device 0000:00:01.0 with pasid 0 @0x2000000\n\
IOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE\n\
0x0000000040000 |\t0x0000000000000000\t0x0000000001e70003\t0x0000000100000083\t\n\
0x0000000080000 |\t0x0000000000000000\t0x0000000001e70003\t0x0000000001e0d003\t0x0000000001e0e003\t0x0000000003000003\t\n\
0x0000000080001 |\t0x0000000000000000\t0x0000000001e70003\t0x0000000001e0d003\t0x0000000001e0e003\t0x0000000003001003\t\n";

    #[test]
    fn parses_2m_leaf_like_upstream() {
        let maps = parse_translation(DUMP_2M);
        assert_eq!(maps.len(), 1, "headers are skipped");
        let m = maps[0];
        assert_eq!(m.iova_pfn, 0x200);
        assert_eq!(m.pte(), 0);
        assert_eq!(m.pmd(), 0x2000083);
        assert_eq!(m.size, Some(PageSize::Size2M));
        assert_eq!(find_mapping(DUMP_2M, 0x200000).unwrap(), m);
        assert_eq!(
            find_mapping(DUMP_2M, 0x3ff000).unwrap(),
            m,
            "inside the leaf"
        );
        assert!(find_mapping(DUMP_2M, 0x400000).is_none());
        assert!(find_mapping(DUMP_2M, 0x1ff000).is_none());
    }

    #[test]
    fn classifies_1g_and_4k() {
        let m = find_mapping(DUMP_MIXED, 0x4000_0000).unwrap();
        assert_eq!(m.size, Some(PageSize::Size1G));
        assert_eq!(m.pud(), 0x1_0000_0083);
        let m = find_mapping(DUMP_MIXED, 0x8000_1000).unwrap();
        assert_eq!((m.iova_pfn, m.size), (0x80001, Some(PageSize::Size4K)));
        assert_eq!(m.pte(), 0x3001003);
        assert!(find_mapping(DUMP_MIXED, 0x8000_2000).is_none());
    }

    #[test]
    fn malformed_lines_are_not_leaves() {
        assert!(parse_line("IOVA_PFN PML5E").is_none());
        assert!(parse_line("").is_none());
        assert!(parse_line("0x10 | 0xzz").is_none());
        let m = parse_line("0x10 |").unwrap();
        assert_eq!(m.size, None);
    }

    #[test]
    fn page_size_bytes_round_trip() {
        for s in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(PageSize::from_bytes(s.bytes()), Some(s));
        }
        assert_eq!(PageSize::from_bytes(8192), None);
        assert_eq!(PageSize::Size2M.to_string(), "2M");
    }

    fn tmp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("passthru-debugfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn unsupported_reasons_and_lookup_on_fake_debugfs() {
        let bdf = Bdf::parse("0000:00:01.0").unwrap();
        let missing = IntelIommuDebugfs::new("/nonexistent/debug");
        let err = missing.mapping_size(bdf, 0).unwrap_err();
        assert!(err.to_string().contains("debugfs is not mounted"), "{err}");

        let root = tmp("amd");
        fs::create_dir_all(root.join("iommu/amd")).unwrap();
        let err = IntelIommuDebugfs::new(&root)
            .mapping_size(bdf, 0)
            .unwrap_err();
        assert!(
            matches!(&err, DebugfsError::Unsupported { reason } if reason.contains("found amd")),
            "{err}"
        );
        let _ = fs::remove_dir_all(&root);

        let root = tmp("intel");
        let dbg = IntelIommuDebugfs::new(&root);
        fs::create_dir_all(root.join("iommu/intel")).unwrap();
        assert!(matches!(
            dbg.mapping_size(bdf, 0),
            Err(DebugfsError::Unsupported { .. })
        ));
        let path = dbg.translation_path(bdf);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, DUMP_2M).unwrap();
        assert_eq!(dbg.mapping_size(bdf, 0x200000).unwrap(), PageSize::Size2M);
        let err = dbg.mapping_size(bdf, 0x600000).unwrap_err();
        assert!(matches!(
            err,
            DebugfsError::NotMapped { iova: 0x600000, .. }
        ));
        let _ = fs::remove_dir_all(&root);
    }
}
