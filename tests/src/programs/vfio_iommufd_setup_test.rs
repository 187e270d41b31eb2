//! `vfio_iommufd_setup_test`: the VFIO cdev ↔ IOMMUFD binding uAPI, step by step, on the raw
//! cdev (upstream `tools/testing/selftests/vfio/vfio_iommufd_setup_test.c`). Fixture `vfio_cdev` opens the device's cdev and
//! `/dev/iommu`; teardown closes both.
//!
//! Unlike upstream (no skip logic: a missing cdev is a failure), a missing node, a device not
//! bound to vfio-pci or EPERM reports SKIP with the fix.

use std::sync::Arc;

use passthru_linux::bdf::Bdf;
use passthru_linux::cdev::{open_iommufd, Cdev};
use passthru_linux::iommufd::ioas_alloc;
use passthru_linux::sys::{RealSys, Sys, SysFd};

use super::util::{errno_text, Classify};
use crate::harness::{Ctx, DeviceSelector, Fixture, Suite, TestResult};
use crate::{check, check_err, fail};

/// The program name.
pub const PROGRAM: &str = "vfio_iommufd_setup_test";

/// The fixture's state: the open cdev and iommufd.
pub struct CdevState {
    bdf: Bdf,
    sys: Arc<dyn Sys>,
    cdev: Cdev,
    iommufd: SysFd,
}

fn setup(ctx: &Ctx) -> TestResult<CdevState> {
    let bdf = ctx.bdf()?;
    let sys = RealSys::shared();
    let cdev = Cdev::open(sys.clone(), bdf).classify()?;
    let iommufd = open_iommufd(sys.clone()).classify_ctx(&bdf.to_string())?;
    Ok(CdevState {
        bdf,
        sys,
        cdev,
        iommufd,
    })
}

fn bind_ok(st: &CdevState) -> TestResult<u32> {
    match st.cdev.bind(st.iommufd.raw(), None) {
        Ok(devid) => Ok(devid),
        Err(e) => fail!(
            "{}: VFIO_DEVICE_BIND_IOMMUFD failed: {}",
            st.bdf,
            errno_text(e)
        ),
    }
}

fn bind(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    let devid = bind_ok(st)?;
    ctx.log(format!("bound, devid {devid}"));
    match st.cdev.get_info() {
        Ok(info) => check!(
            info.is_pci(),
            "device info flags {:#x} lack PCI",
            info.flags
        ),
        Err(e) => fail!("VFIO_DEVICE_GET_INFO after bind: {}", errno_text(e)),
    }
    Ok(())
}

fn get_info_without_bind_fails(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    let e = check_err!(st.cdev.get_info());
    ctx.log(format!(
        "VFIO_DEVICE_GET_INFO before bind: {}",
        errno_text(e)
    ));
    Ok(())
}

fn bind_bad_iommufd_fails(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    let e = check_err!(st.cdev.bind(-2, None));
    ctx.log(format!("bind to iommufd -2: {}", errno_text(e)));
    Ok(())
}

fn repeated_bind_fails(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    bind_ok(st)?;
    let e = check_err!(st.cdev.bind(st.iommufd.raw(), None));
    ctx.log(format!("second bind: {}", errno_text(e)));
    Ok(())
}

fn attach_detatch_pt(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    bind_ok(st)?;
    let ioas = match ioas_alloc(&*st.sys, st.iommufd.raw()) {
        Ok(id) => id,
        Err(e) => fail!("IOMMU_IOAS_ALLOC: {}", errno_text(e)),
    };
    match st.cdev.attach_pt(ioas) {
        Ok(pt) => ctx.log(format!("attached to IOAS {ioas} (pt_id now {pt})")),
        Err(e) => fail!("VFIO_DEVICE_ATTACH_IOMMUFD_PT({ioas}): {}", errno_text(e)),
    }
    if let Err(e) = st.cdev.detach_pt() {
        fail!("VFIO_DEVICE_DETACH_IOMMUFD_PT: {}", errno_text(e));
    }
    Ok(())
}

fn attach_invalid_pt_fails(ctx: &Ctx, _v: &(), st: &mut CdevState) -> TestResult {
    bind_ok(st)?;
    let e = check_err!(st.cdev.attach_pt(u32::MAX));
    ctx.log(format!("attach to pt_id UINT32_MAX: {}", errno_text(e)));
    Ok(())
}

/// The program's suite.
pub fn suite() -> Suite {
    let f = Fixture::new("vfio_cdev", setup)
        .teardown(|_ctx, _v, st: CdevState| {
            // Close the cdev first, then the iommufd (upstream's teardown order).
            drop(st.cdev);
            drop(st.iommufd);
            Ok(())
        })
        .test("bind", bind)
        .test("get_info_without_bind_fails", get_info_without_bind_fails)
        .test("bind_bad_iommufd_fails", bind_bad_iommufd_fails)
        .test("repeated_bind_fails", repeated_bind_fails)
        .test("attach_detatch_pt", attach_detatch_pt)
        .test("attach_invalid_pt_fails", attach_invalid_pt_fails);
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
