//! The suite's assertions can fail: faults injected into the models (a copy that "succeeds"
//! without copying, a fault the device does not report, a lost or a spurious interrupt) must
//! make the matching upstream case fail with a message saying why.

use passthru::harness::{DeviceSelector, DeviceSource, Fixture, Suite, TestResult, KSFT_FAIL};
use passthru::suite::models::ModelEnv;
use passthru::suite::{Case, DynEnv};
use passthru_models::exec::ExecMode;

/// Run `case` once on the env built by `setup`; the case must fail with `why` in its output.
fn must_fail(
    case: Case,
    why: &str,
    setup: impl Fn() -> TestResult<Box<dyn DynEnv>> + Send + Sync + 'static,
) {
    let fixture = Fixture::new("negative", move |_| setup())
        .test(case.name(), move |ctx, _, env| env.run_case(ctx, case))
        .teardown(|_, _, mut env| env.finish());
    let suite = Suite::new("negative")
        .devices(DeviceSelector::none())
        .fixture(fixture);
    let (code, text, _) = suite.run_captured(&[], &DeviceSource::default());
    assert_eq!(
        code,
        KSFT_FAIL,
        "{} passed but must fail:\n{text}",
        case.name()
    );
    assert!(text.contains("not ok 1"), "{text}");
    assert!(text.contains(why), "expected {why:?} in:\n{text}");
}

#[test]
fn memcpy_that_does_not_copy_fails_memcpy_success() {
    must_fail(Case::MemcpySuccess, "dst differs from src", || {
        let (env, model) = ModelEnv::dsa(ExecMode::Immediate)?;
        model.inject_status(0x01); // report success without executing
        Ok(Box::new(env))
    });
}

#[test]
fn unreported_fault_fails_memcpy_from_unmapped_iova_on_dsa() {
    must_fail(Case::MemcpyFromUnmappedIova, "reported success", || {
        let (env, model) = ModelEnv::dsa(ExecMode::Threaded)?;
        model.inject_status(0x01);
        Ok(Box::new(env))
    });
}

#[test]
fn lost_interrupt_fails_send_msi() {
    must_fail(Case::SendMsi, "read 0 interrupt(s)", || {
        let (mut env, _model) = ModelEnv::ioat(ExecMode::Immediate)?;
        env.set_msi_timeout(std::time::Duration::from_millis(100));
        env.msi().inject_drop(0, 1);
        Ok(Box::new(env))
    });
}

#[test]
fn spurious_interrupt_fails_memcpy_success() {
    must_fail(Case::MemcpySuccess, "MSI(s) pending", || {
        let (env, _model) = ModelEnv::edu(ExecMode::Immediate)?;
        env.msi().raise(0);
        Ok(Box::new(env))
    });
}

#[test]
fn unlogged_fault_fails_edu_memcpy_to_unmapped_iova() {
    // The edu model records the IOMMU fault; map the "unmapped" block so no fault happens.
    must_fail(Case::MemcpyToUnmappedIova, "no IOMMU write fault", || {
        let (env, _model) = ModelEnv::edu(ExecMode::Immediate)?;
        let mem = passthru_models::iommu::HostMemory::pages(1 << 20)
            .map_err(|e| passthru::harness::TestError::fail(e.to_string()))?;
        env.iommu()
            .map_all(passthru::suite::models::UNMAPPED_IOVA, &mem)
            .map_err(|e| passthru::harness::TestError::fail(e.to_string()))?;
        Ok(Box::new(env))
    });
}
