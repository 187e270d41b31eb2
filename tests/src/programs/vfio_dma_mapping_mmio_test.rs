//! `vfio_dma_mapping_mmio_test`: IOMMU-map a device's BAR mmap (peer-to-peer style MMIO DMA
//! mapping) in every mode (upstream `tools/testing/selftests/vfio/vfio_dma_mapping_mmio_test.c`). type1 maps VM_PFNMAP memory;
//! the IOMMUFD modes refuse it (native IOMMUFD only maps MMIO through dma-buf), so there map
//! and unmap must both fail ([`super::expectations::mmio_dma_map_succeeds`]).
//!
//! Setup picks the largest mapped BAR that is readable and writable, on the first given device
//! that has one (SKIP if none).

use std::sync::Arc;

use passthru_linux::bdf::Bdf;
use passthru_linux::memory::base_page_size;
use passthru_linux::region::GIB;
use passthru_linux::{Iommu, IommuMode, IovaAllocator, VfioPciDevice};

use super::expectations::{mmio_dma_map_succeeds, unmap_of_unmapped_range};
use super::util::{errno_text, open_device, pick_device, pow2_at_least, Classify};
use crate::harness::{Ctx, DeviceSelector, Fixture, Suite, TestError, TestResult};
use crate::{check_eq, fail, skip};

/// The program name.
pub const PROGRAM: &str = "vfio_dma_mapping_mmio_test";

/// Per-test state.
pub struct MmioState {
    bdf: Bdf,
    iommu: Arc<Iommu>,
    device: VfioPciDevice,
    iovas: IovaAllocator,
    bar: u8,
    bar_vaddr: u64,
    bar_size: u64,
}

/// Picks the largest BAR among `(index, size, readable && writable, mapped)`; ties keep the
/// lowest index.
pub fn largest_rw_bar(bars: &[(u8, u64, bool, bool)]) -> Option<(u8, u64)> {
    bars.iter().filter(|b| b.2 && b.3 && b.1 > 0).fold(
        None,
        |best: Option<(u8, u64)>, b| match best {
            Some((_, s)) if s >= b.1 => best,
            _ => Some((b.0, b.1)),
        },
    )
}

fn setup(ctx: &Ctx, mode: &IommuMode) -> TestResult<MmioState> {
    pick_device(ctx, "a mapped read/write BAR", |bdf| {
        let (iommu, device) = open_device(bdf, *mode)?;
        let bars: Vec<(u8, u64, bool, bool)> = (0..6u8)
            .filter_map(|i| device.bar_info(i).map(|b| (i, b, b.vaddr().is_some())))
            .map(|(i, b, m)| (i, b.info.size, b.info.readable() && b.info.writable(), m))
            .collect();
        let Some((bar, bar_size)) = largest_rw_bar(&bars) else {
            return Err(TestError::skip(
                "no mmap-able BAR that is both readable and writable",
            ));
        };
        let bar_vaddr = device
            .bar_info(bar)
            .and_then(|b| b.vaddr())
            .ok_or_else(|| TestError::fail(format!("{bdf}: BAR{bar} lost its mapping")))?
            as u64;
        let iovas = iommu.iova_allocator().classify_ctx("IOVA ranges")?;
        ctx.log(format!(
            "{bdf}: BAR{bar} size {bar_size:#x} mapped at {bar_vaddr:#x}"
        ));
        Ok(MmioState {
            bdf,
            iommu,
            device,
            iovas,
            bar,
            bar_vaddr,
            bar_size,
        })
    })
}

/// Maps `vaddr..+size` (inside a BAR mapping) and unmaps it, checking the mode's expectation.
fn map_and_unmap(
    ctx: &Ctx,
    mode: IommuMode,
    st: &mut MmioState,
    vaddr: u64,
    size: u64,
) -> TestResult {
    let align = pow2_at_least(size)
        .ok_or_else(|| TestError::fail(format!("size {size:#x} has no power-of-two bound")))?;
    let iova = st.iovas.alloc(align).classify_ctx("IOVA allocation")?;
    // SAFETY: vaddr..+size lies in a live BAR mapping owned by the device or by the test; it
    // stays mapped until after the unmap below (or the IOMMU is dropped first in teardown).
    let mapped = unsafe { st.iommu.try_map(vaddr, iova, size) };
    let unmapped = st.iommu.try_unmap(iova, size);
    if mmio_dma_map_succeeds(mode) {
        if let Err(e) = mapped {
            fail!(
                "{}: {mode}: map of BAR{} vaddr {vaddr:#x} size {size:#x} at IOVA {iova:#x} \
                 failed: {} (type1 maps VM_PFNMAP memory)",
                st.bdf,
                st.bar,
                errno_text(e)
            );
        }
        match unmapped {
            Ok(n) => check_eq!(n, size),
            Err(e) => fail!("unmap IOVA {iova:#x}: {}", errno_text(e)),
        }
    } else {
        match mapped {
            Err(e) => ctx.log(format!(
                "{mode}: map refused as expected: {}",
                errno_text(e)
            )),
            Ok(_) => fail!(
                "{}: {mode}: map of BAR{} (MMIO) at IOVA {iova:#x} succeeded; IOMMUFD modes \
                 must refuse MMIO mappings",
                st.bdf,
                st.bar
            ),
        }
        let want = unmap_of_unmapped_range(mode);
        match (unmapped, want) {
            (Err(e), Err(w)) => {
                check_eq!(
                    e,
                    w,
                    "{mode}: unmap of never-mapped IOVA {iova:#x}: {}",
                    errno_text(e)
                );
            }
            (Ok(n), Ok(w)) => {
                check_eq!(
                    n,
                    w,
                    "{mode}: bytes unmapped at never-mapped IOVA {iova:#x}"
                );
            }
            (got, want) => fail!(
                "{mode}: unmap of never-mapped IOVA {iova:#x} returned {got:?}, expected {want:?}"
            ),
        }
        ctx.log(format!(
            "{mode}: unmap of the never-mapped IOVA returned {want:?} as expected"
        ));
    }
    Ok(())
}

fn map_full_bar(ctx: &Ctx, mode: &IommuMode, st: &mut MmioState) -> TestResult {
    let (vaddr, size) = (st.bar_vaddr, st.bar_size);
    map_and_unmap(ctx, *mode, st, vaddr, size)
}

fn map_partial_bar(ctx: &Ctx, mode: &IommuMode, st: &mut MmioState) -> TestResult {
    let page = base_page_size();
    if st.bar_size < 2 * page {
        skip!(
            "{}: BAR{} is {:#x} bytes, smaller than 2 pages",
            st.bdf,
            st.bar,
            st.bar_size
        );
    }
    let vaddr = st.bar_vaddr;
    map_and_unmap(ctx, *mode, st, vaddr, page)
}

/// The size mapped by `map_bar_misaligned`: the BAR, capped at 1 GiB.
pub fn misaligned_size(bar_size: u64) -> u64 {
    bar_size.min(GIB)
}

fn map_bar_misaligned(ctx: &Ctx, mode: &IommuMode, st: &mut MmioState) -> TestResult {
    let page = base_page_size();
    let map = st
        .device
        .mmap_bar_at(st.bar, GIB, page)
        .classify_ctx("re-mmap the BAR 1 GiB-aligned plus one page")?;
    let vaddr = map.addr() as u64;
    check_eq!(vaddr % GIB, page, "BAR re-mapped at {vaddr:#x}");
    let size = misaligned_size(st.bar_size);
    ctx.log(format!("BAR{} re-mapped at {vaddr:#x}", st.bar));
    let r = map_and_unmap(ctx, *mode, st, vaddr, size);
    drop(map);
    r
}

/// The program's suite.
pub fn suite() -> Suite {
    let f = Fixture::with_setup("vfio_dma_mapping_mmio_test", setup)
        .variants(IommuMode::ALL.map(|m| (m.name(), m)))
        .teardown(|_ctx, _mode, st: MmioState| {
            // Drop the IOMMU's mappings before the BAR mappings go away.
            let _ = st.iommu.try_unmap_all();
            drop(st.device);
            Ok(())
        })
        .test("map_full_bar", map_full_bar)
        .test("map_partial_bar", map_partial_bar)
        .test("map_bar_misaligned", map_bar_misaligned);
    Suite::new(PROGRAM)
        .devices(DeviceSelector::all().vfio_bound())
        .fixture(f)
}

/// Names this program adds beyond upstream's (none).
pub fn extra_names() -> Vec<String> {
    Vec::new()
}

/// Runs the program with the process's arguments and environment, and exits.
pub fn main() -> ! {
    suite().main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_choice() {
        let bars = [
            (0, 0x1000, true, true),
            (2, 0x10_0000, true, false), // not mapped
            (3, 0x4000, false, true),    // not writable
            (4, 0x8000, true, true),
        ];
        assert_eq!(largest_rw_bar(&bars), Some((4, 0x8000)));
        assert_eq!(largest_rw_bar(&[(1, 0x1000, false, true)]), None);
        assert_eq!(
            largest_rw_bar(&[(0, 0x1000, true, true), (1, 0x1000, true, true)]),
            Some((0, 0x1000))
        );
    }

    #[test]
    fn misaligned_cap() {
        assert_eq!(misaligned_size(0x1000), 0x1000);
        assert_eq!(misaligned_size(4 * GIB), GIB);
    }
}
