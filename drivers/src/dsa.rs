//! Intel DSA driver: one dedicated work queue, MEMMOVE (batched for `count > 1`), completion-
//! record polling, MSI-X vector 1 for `send_msi`.
//!
//! It follows the upstream VFIO selftest driver (`lib/drivers/dsa/dsa.c`) in what it does to the
//! device — WQ 0 dedicated and sized to the whole device, group 0 with engine 0, MEMMOVE for a
//! single copy and BATCH descriptors over one shared copy list for `count > 1`, interrupt handle
//! = MSI-X index, refuse devices that require interrupt handles — and deliberately differs where
//! upstream (`tools/testing/selftests/vfio/lib/drivers/dsa/dsa.c`) is defective:
//!
//! * every poll is bounded by a timeout and fails with the register and last value seen;
//! * SWERR is checked while polling, decoded into the error, and acknowledged (RW1C) so the next
//!   operation starts clean;
//! * `max_batches = min(WQCAP.total_wq_size, 32)` — each BATCH occupies one entry of the
//!   dedicated WQ, whose size is the device total — instead of upstream's over-wide shift
//!   `1 << (total_wq_size + 5)`; `max_copies_per_batch = min(2^GENCAP.max_batch_shift, 1024)`;
//!   a device whose batch limit is below 2 gets `max_memcpy_count = 1` (a batch needs ≥ 2), and
//!   with a batch limit of exactly 2 an odd count ends with one plain MEMMOVE;
//! * the WQCFG write loop stops at the 16 dwords of the 64-byte layout even if a device reports
//!   a larger stride;
//! * every batch has its own completion record (written only on error, except the last one), so
//!   an early failing batch cannot be hidden by a later success;
//! * `send_msi` is a NOOP with RCI and interrupt handle 1 (no memory traffic at all);
//! * the group flags get Linux's defaults: traffic classes TC-A = TC-B = 1 for VERSION ≤ 0x200
//!   (else TC-B = 1) and read buffers allowed = GRPCAP.total_rdbufs (see [`group_flags`]).
//!
//! Device ids: 8086:0b25 (Sapphire Rapids, as upstream) and the newer DSA ids 8086:11fb
//! (Granite Rapids-D) and 8086:1212 (Diamond Rapids). Nothing this driver touches differs on
//! them according to the DSA specification; they are still refused when they require interrupt handles.
//! IAA functions are not matched.

use core::fmt;

use passthru_core::driver::{
    wait_interrupt, DeviceError, Driver, DriverError, InOrder, Limits, Match, WaitMode,
};
use passthru_core::idxd::completion::CompletionRecord;
use passthru_core::idxd::regs::offset;
use passthru_core::idxd::tables::{GRPCFG_ENGINES, GRPCFG_FLAGS, GRPCFG_STRIDE, GRPCFG_WQS};
use passthru_core::idxd::{
    portal, Batch, CmdCap, CmdSts, Command, CompletionStatus, DeviceState, EngCap, GenCap, GenSts,
    GroupFlags, GrpCap, MemMove, Noop, Opcode, ResetType, SwErr, TableOffset, Version, WqCap,
    WqConfig, WqState, DEVICE_DSA_DMR, DEVICE_DSA_GNRD, DEVICE_DSA_SPR0, VENDOR_INTEL,
};
use passthru_core::mmio::{poll, Clock, DmaRegion, IrqKind, PciFunction, RegisterIo};
use passthru_core::pci::{DEVICE_ID, VENDOR_ID};

/// Driver name.
pub const NAME: &str = "dsa";

/// The work queue, group and engine this driver uses.
const WQ: u16 = 0;
/// The MSI-X vector (= interrupt handle) of WQ 0's completions.
pub const MSI_VECTOR: u16 = 1;

/// Most BATCH descriptors in flight (also bounded by the WQ size).
pub const MAX_BATCHES: u32 = 32;
/// Most copy descriptors in the shared batch list.
pub const MAX_COPIES_PER_BATCH: u32 = 1024;

/// Layout of the driver's DMA region (byte offsets from its start; needs a 64-byte aligned IOVA).
pub mod layout {
    use super::{MAX_BATCHES, MAX_COPIES_PER_BATCH};
    /// The shared copy list: `MAX_COPIES_PER_BATCH` descriptors of 64 bytes.
    pub const COPY_LIST: usize = 0;
    /// Completion record of a single copy (and error record of batch members).
    pub const COPY_RECORD: usize = COPY_LIST + MAX_COPIES_PER_BATCH as usize * 64;
    /// Completion record of `send_msi`'s NOOP.
    pub const MSI_RECORD: usize = COPY_RECORD + 32;
    /// One completion record per BATCH descriptor.
    pub const BATCH_RECORDS: usize = MSI_RECORD + 32;
    /// Total bytes needed.
    pub const REGION_SIZE: usize = BATCH_RECORDS + MAX_BATCHES as usize * 32;
}

/// Timeout of administrative commands and of `send_msi`'s completion (upstream: 5 s).
pub const COMMAND_TIMEOUT_NS: u64 = 5_000_000_000;
/// Poll interval for registers and completion records.
const POLL_INTERVAL_NS: u64 = 1_000;

/// What is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Single(WaitMode),
    Batches(u32, WaitMode),
}

/// Capabilities read at init.
#[derive(Debug, Clone, Copy)]
struct Caps {
    version: Version,
    gencap: GenCap,
    wqcap: WqCap,
    grpcap: GrpCap,
    engcap: EngCap,
    tables: TableOffset,
}

/// The DSA driver.
pub struct Dsa<'r, F: PciFunction, C: Clock> {
    function: F,
    clock: C,
    bar0: F::Bar,
    bar2: F::Bar,
    region: DmaRegion<'r>,
    caps: Caps,
    max_batches: u32,
    max_copies_per_batch: u32,
    limits: Limits,
    pending: Pending,
}

impl<F: PciFunction, C: Clock> fmt::Debug for Dsa<'_, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dsa")
            .field("version", &self.caps.version)
            .field("limits", &self.limits)
            .field("max_batches", &self.max_batches)
            .field("max_copies_per_batch", &self.max_copies_per_batch)
            .finish()
    }
}

/// Does the device require interrupt handles (GENCAP.cmd_cap and CMDCAP bit 13)?
fn requires_int_handles<B: RegisterIo>(bar0: &B) -> bool {
    GenCap(bar0.read64(offset::GENCAP)).cmd_cap()
        && CmdCap(bar0.read32(offset::CMDCAP)).requires_int_handles()
}

fn timeout(register: &'static str, value: u64, waited_ns: u64) -> DriverError {
    DriverError::Timeout {
        device: NAME,
        register,
        value,
        waited_ns,
    }
}

fn unsupported(reason: &'static str) -> DriverError {
    DriverError::Unsupported {
        device: NAME,
        reason,
    }
}

/// Split `count` copies into batches of at most `per_batch` (≥ 2): returns the size of the next
/// batch given `remaining`. A BATCH needs at least two descriptors, so when taking `per_batch`
/// would leave exactly one, one fewer is taken (upstream's rule). With `per_batch == 2` and an
/// odd count the last piece is a single copy, which the driver submits as a plain MEMMOVE.
pub const fn next_batch_len(remaining: u64, per_batch: u32) -> u32 {
    let per = per_batch as u64;
    if remaining <= per {
        return remaining as u32;
    }
    if remaining - per == 1 && per >= 3 {
        (per - 1) as u32
    } else {
        per as u32
    }
}

/// Number of batches [`next_batch_len`] produces for `count` copies.
pub const fn batches_needed(count: u64, per_batch: u32) -> u64 {
    let mut remaining = count;
    let mut n = 0;
    while remaining > 0 {
        let k = next_batch_len(remaining, per_batch) as u64;
        if k == 0 {
            break;
        }
        remaining -= k;
        n += 1;
    }
    n
}

impl<F: PciFunction, C: Clock> Dsa<'_, F, C> {
    fn iova(&self, off: usize) -> Result<u64, DriverError> {
        Ok(self.region.iova_at(off)?)
    }

    /// Read SWERR; if valid, acknowledge it and return it as an error.
    fn check_swerr(&self) -> Result<(), DriverError> {
        let q0 = self.bar0.read64(offset::SWERR);
        if !SwErr([q0, 0, 0, 0]).valid() {
            return Ok(());
        }
        let swerr = [
            q0,
            self.bar0.read64(offset::SWERR + 8),
            self.bar0.read64(offset::SWERR + 16),
            self.bar0.read64(offset::SWERR + 24),
        ];
        self.bar0.write64(offset::SWERR, SwErr::ACK);
        Err(DeviceError::DsaSoftwareError { swerr }.into())
    }

    /// Clear a stale SWERR without reporting it (used before starting fresh work).
    fn clear_swerr(&self) {
        let _ = self.check_swerr();
    }

    /// Run an administrative command and wait (bounded) for it; returns the CMDSTS result field.
    fn command(&self, command: Command, operand: u32) -> Result<u16, DriverError> {
        let bar = &self.bar0;
        command_on(bar, &self.clock, command, operand)
    }

    fn submit(&self, d: &passthru_core::idxd::Descriptor) -> Result<(), DriverError> {
        passthru_core::arch::write_barrier();
        let off = portal::portal_offset(WQ, portal::PortalKind::UnlimitedMsix);
        self.bar2.submit64(off, &d.as_bytes())?;
        Ok(())
    }

    /// Zero a completion record's 32 bytes.
    fn clear_record(&self, off: usize) -> Result<(), DriverError> {
        self.region.fill(off, 32, 0)?;
        Ok(())
    }

    /// Poll the status byte of the record at `off` until non-zero, for at most `timeout_ns` after
    /// clock time `start`. SWERR is checked on every empty poll; on timeout a halted device is
    /// reported as such, otherwise the last status byte is named.
    fn wait_record(&self, off: usize, start: u64, timeout_ns: u64) -> Result<u8, DriverError> {
        loop {
            let status = self.region.read_u8(off)?;
            if status != 0 {
                passthru_core::arch::read_barrier();
                return Ok(status);
            }
            self.check_swerr()?;
            let waited = self.clock.now_ns().wrapping_sub(start);
            if waited >= timeout_ns {
                let status = self.region.read_u8(off)?;
                if status != 0 {
                    passthru_core::arch::read_barrier();
                    return Ok(status);
                }
                let gensts = GenSts(self.bar0.read32(offset::GENSTS));
                if gensts.state() == DeviceState::Halted {
                    return Err(DeviceError::DsaHalted {
                        gensts: gensts.raw(),
                    }
                    .into());
                }
                return Err(timeout(
                    "completion record status",
                    u64::from(status),
                    waited,
                ));
            }
            self.clock.delay_ns(POLL_INTERVAL_NS);
        }
    }

    /// Decode the completion record at `off` (read after its non-zero status byte).
    fn record_error(&self, off: usize) -> Result<DeviceError, DriverError> {
        let record: CompletionRecord = self.region.read(off)?;
        Ok(DeviceError::DsaCompletion {
            status: record.status,
            result: record.result,
            bytes_completed: record.bytes_completed.get(),
            fault_addr: record.fault_addr.get(),
        })
    }

    /// After a timeout, abandon whatever is still queued so a late completion cannot be
    /// mistaken for the next operation's. Best effort: the device may be wedged.
    fn abandon(&mut self) {
        let _ = self.command(Command::AbortWq, passthru_core::idxd::wq_bitmap_operand(WQ));
        self.clear_swerr();
        self.pending = Pending::None;
    }

    /// Bring WQ 0 back after an error left it (or the device) disabled, e.g. another agent's
    /// DISABLE_WQ or a dropped submission. Best effort; a halted device needs `remove` + `init`.
    fn recover(&mut self) {
        self.clear_swerr();
        let gensts = GenSts(self.bar0.read32(offset::GENSTS));
        match gensts.state() {
            DeviceState::Disabled => {
                if self.configure().is_err() || self.command(Command::EnableDevice, 0).is_err() {
                    return;
                }
            }
            DeviceState::Enabled => {}
            DeviceState::Drain | DeviceState::Halted => return,
        }
        if self.wq_state() != WqState::Enabled {
            let _ = self.command(Command::EnableWq, u32::from(WQ));
        }
        self.clear_swerr();
    }

    fn wq_state(&self) -> WqState {
        let off = passthru_core::idxd::tables::wqcfg_dword_offset(
            self.caps.tables,
            self.caps.wqcap,
            usize::from(WQ),
            passthru_core::idxd::tables::WQCFG_STATUS_DWORD,
        );
        let status = self.bar0.read32(off);
        WqConfig::new()
            .with_dword(passthru_core::idxd::tables::WQCFG_STATUS_DWORD, status)
            .state()
    }

    fn configure(&mut self) -> Result<(), DriverError> {
        let caps = self.caps;
        let bar = &self.bar0;
        let wq_base = caps.tables.wqcfg_offset();
        let stride = caps.wqcap.wqcfg_stride();
        // Never write more than the 64-byte layout we know, whatever stride the device claims.
        let dwords = (stride / 4).min(passthru_core::idxd::tables::WQCFG_DWORDS);
        let mut wq0 = WqConfig::new()
            .with_wq_size(caps.wqcap.total_wq_size())
            .with_dedicated(true)
            .with_priority(1)
            .with_ats_disable(caps.wqcap.wq_ats_support())
            .with_max_xfer_shift(caps.gencap.max_xfer_shift())
            .with_max_batch_shift(caps.gencap.max_batch_shift());
        if caps.wqcap.op_config_support() {
            wq0 = wq0
                .with_op_allowed(Opcode::Noop as u8)
                .with_op_allowed(Opcode::Batch as u8)
                .with_op_allowed(Opcode::MemMove as u8);
        }
        for wq in 0..usize::from(caps.wqcap.num_wqs()) {
            let base = wq_base + wq * stride;
            if wq == usize::from(WQ) {
                for d in 0..dwords {
                    bar.write32(base + 4 * d, wq0.dword(d));
                }
            } else {
                // Other WQs: size 0, so ENABLE_DEVICE's size check only sees WQ 0.
                bar.write32(base, 0);
            }
        }
        let flags = group_flags(caps.version, caps.grpcap);
        let grp_base = caps.tables.grpcfg_offset();
        for g in 0..usize::from(caps.grpcap.num_groups()) {
            let base = grp_base + g * GRPCFG_STRIDE;
            let first = g == 0;
            for q in 0..4 {
                let wqs = if first && q == 0 { 1 << WQ } else { 0 };
                bar.write64(base + GRPCFG_WQS + 8 * q, wqs);
            }
            bar.write64(base + GRPCFG_ENGINES, u64::from(first));
            if first {
                bar.write64(base + GRPCFG_FLAGS, flags.raw());
            }
        }
        Ok(())
    }
}

/// GRPFLGCFG of group 0: Linux's defaults. Traffic classes TC-A = TC-B = 1 for VERSION ≤ 0x200
/// (else TC-B = 1), and read buffers allowed (bits 27:20) = GRPCAP.total_rdbufs. Zero is not a
/// valid read-buffers-allowed value (Linux's "Fix default allowed read buffers value in group"
/// patch; Linux and SPDK both write the total), and the upstream selftest leaves the register at
/// its reset value instead of writing zero there.
pub fn group_flags(version: Version, grpcap: GrpCap) -> GroupFlags {
    let tc = if version.default_tc_is_1_1() {
        GroupFlags::DEFAULT_V1
    } else {
        GroupFlags(0).with_tc_b(1)
    };
    tc.with_rdbufs_allowed(grpcap.total_rdbufs())
}

/// COMMAND |= memory space, bus master, INTx disable.
fn enable_pci_command<F: PciFunction>(function: &F) -> Result<(), DriverError> {
    use passthru_core::pci::Command as PciCommand;
    passthru_core::pci::update_command(
        function,
        PciCommand::MEMORY_SPACE | PciCommand::BUS_MASTER | PciCommand::INTX_DISABLE,
        PciCommand::empty(),
    )?;
    Ok(())
}

/// Write CMD and poll CMDSTS (bounded), checking SWERR; returns the result field.
fn command_on<B: RegisterIo, C: Clock>(
    bar: &B,
    clock: &C,
    command: Command,
    operand: u32,
) -> Result<u16, DriverError> {
    let active = |v: u64| !CmdSts(v as u32).active();
    // A command still running (e.g. left by a previous owner) must finish first.
    poll(
        clock,
        COMMAND_TIMEOUT_NS,
        POLL_INTERVAL_NS,
        || u64::from(bar.read32(offset::CMDSTS)),
        active,
    )
    .map_err(|t| timeout("CMDSTS", t.last, t.waited_ns))?;
    bar.write32(
        offset::CMD,
        passthru_core::idxd::Cmd::new(command, operand).raw(),
    );
    let sts = poll(
        clock,
        COMMAND_TIMEOUT_NS,
        POLL_INTERVAL_NS,
        || u64::from(bar.read32(offset::CMDSTS)),
        active,
    )
    .map_err(|t| timeout("CMDSTS", t.last, t.waited_ns))?;
    let sts = CmdSts(sts as u32);
    let q0 = bar.read64(offset::SWERR);
    if SwErr([q0, 0, 0, 0]).valid() {
        let swerr = [
            q0,
            bar.read64(offset::SWERR + 8),
            bar.read64(offset::SWERR + 16),
            bar.read64(offset::SWERR + 24),
        ];
        bar.write64(offset::SWERR, SwErr::ACK);
        return Err(DeviceError::DsaSoftwareError { swerr }.into());
    }
    if sts.error_code() != 0 {
        return Err(DeviceError::DsaCommand {
            command: command.code(),
            cmdsts: sts.raw(),
        }
        .into());
    }
    Ok(sts.result())
}

impl<'r, F: PciFunction, C: Clock> Driver<'r> for Dsa<'r, F, C> {
    type Function = F;
    type Clock = C;

    fn probe(function: &F) -> Option<Match> {
        let vendor = function.config_read16(VENDOR_ID).ok()?;
        let device = function.config_read16(DEVICE_ID).ok()?;
        if vendor != VENDOR_INTEL
            || !matches!(device, DEVICE_DSA_SPR0 | DEVICE_DSA_GNRD | DEVICE_DSA_DMR)
        {
            return None;
        }
        let bar0 = function.bar(passthru_core::idxd::BAR_CONTROL).ok()?;
        // All ones means memory decode is off (probe must not turn it on): init checks again.
        if bar0.read64(offset::GENCAP) != u64::MAX && requires_int_handles(&bar0) {
            return None;
        }
        Some(Match {
            name: NAME,
            vendor,
            device,
            region_size: layout::REGION_SIZE,
        })
    }

    fn init(function: F, clock: C, region: DmaRegion<'r>) -> Result<Self, DriverError> {
        if region.len() < layout::REGION_SIZE {
            return Err(DriverError::RegionTooSmall {
                need: layout::REGION_SIZE,
                have: region.len(),
            });
        }
        if !region.iova().is_multiple_of(64) {
            return Err(unsupported("driver region IOVA is not 64-byte aligned"));
        }
        enable_pci_command(&function)?;
        let bar0 = function.bar(passthru_core::idxd::BAR_CONTROL)?;
        let bar2 = function.bar(passthru_core::idxd::BAR_PORTALS)?;

        // A halted device needs the reset its GENSTS names before anything else.
        let gensts = GenSts(bar0.read32(offset::GENSTS));
        if gensts.state() == DeviceState::Halted {
            match gensts.reset_type() {
                ResetType::Software => {}
                ResetType::Flr => {
                    // FLR clears COMMAND too: set it again.
                    function.reset()?;
                    enable_pci_command(&function)?;
                }
                _ => {
                    return Err(DeviceError::DsaHalted {
                        gensts: gensts.raw(),
                    }
                    .into())
                }
            }
        }
        // Clear any error a previous owner left, then reset.
        let q0 = bar0.read64(offset::SWERR);
        if SwErr([q0, 0, 0, 0]).valid() {
            bar0.write64(offset::SWERR, SwErr::ACK);
        }
        command_on(&bar0, &clock, Command::ResetDevice, 0)?;
        let gensts = GenSts(bar0.read32(offset::GENSTS));
        if gensts.state() != DeviceState::Disabled {
            return Err(DeviceError::Register {
                device: NAME,
                register: "GENSTS",
                value: u64::from(gensts.raw()),
            }
            .into());
        }

        let caps = Caps {
            version: Version(bar0.read32(offset::VERSION)),
            gencap: GenCap(bar0.read64(offset::GENCAP)),
            wqcap: WqCap(bar0.read64(offset::WQCAP)),
            grpcap: GrpCap(bar0.read64(offset::GRPCAP)),
            engcap: EngCap(bar0.read64(offset::ENGCAP)),
            tables: TableOffset([
                bar0.read64(offset::TABLE_OFFSET),
                bar0.read64(offset::TABLE_OFFSET + 8),
            ]),
        };
        if requires_int_handles(&bar0) {
            return Err(unsupported(
                "device requires interrupt handles (CMDCAP REQUEST_INT_HANDLE)",
            ));
        }
        if !caps.gencap.config_support() {
            return Err(unsupported(
                "WQ/group configuration is read-only (GENCAP bit 31)",
            ));
        }
        if caps.wqcap.num_wqs() == 0 || caps.wqcap.total_wq_size() == 0 {
            return Err(unsupported("device has no work queue entries"));
        }
        if !caps.wqcap.dedicated_mode() {
            return Err(unsupported("device has no dedicated-WQ mode"));
        }
        if caps.grpcap.num_groups() == 0 || caps.engcap.num_engines() == 0 {
            return Err(unsupported("device has no group or no engine"));
        }
        let max_batches = u32::from(caps.wqcap.total_wq_size()).min(MAX_BATCHES);
        let max_copies_per_batch = caps.gencap.max_batch_size().min(MAX_COPIES_PER_BATCH);
        let max_memcpy_count = if max_copies_per_batch >= 2 {
            u64::from(max_batches) * u64::from(max_copies_per_batch)
        } else {
            1
        };
        // The descriptor's transfer-size field is 32 bits.
        let max_memcpy_size = caps.gencap.max_xfer_size().min(u64::from(u32::MAX));
        let limits = Limits {
            max_memcpy_size,
            max_memcpy_count,
            msi_vector: MSI_VECTOR,
        };

        let mut dsa = Dsa {
            function,
            clock,
            bar0,
            bar2,
            region,
            caps,
            max_batches,
            max_copies_per_batch,
            limits,
            pending: Pending::None,
        };
        dsa.configure()?;
        dsa.command(Command::EnableDevice, 0)?;
        let gensts = GenSts(dsa.bar0.read32(offset::GENSTS));
        if gensts.state() != DeviceState::Enabled {
            return Err(DeviceError::Register {
                device: NAME,
                register: "GENSTS",
                value: u64::from(gensts.raw()),
            }
            .into());
        }
        dsa.command(Command::EnableWq, u32::from(WQ))?;
        let state = dsa.wq_state();
        if state != WqState::Enabled {
            return Err(DeviceError::Register {
                device: NAME,
                register: "WQCFG[0].state",
                value: state as u64,
            }
            .into());
        }
        dsa.function
            .irq_enable(IrqKind::MsiX, u32::from(MSI_VECTOR), 1)?;
        Ok(dsa)
    }

    fn remove(self) -> Result<(), DriverError> {
        let reset = self.command(Command::ResetDevice, 0);
        let irq = self.function.irq_disable(IrqKind::MsiX);
        reset?;
        irq?;
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn memcpy_start(
        &mut self,
        _: InOrder,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError> {
        if size > self.limits.max_memcpy_size || count == 0 || count > self.limits.max_memcpy_count
        {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits,
            });
        }
        // Checked against max_memcpy_size ≤ u32::MAX above.
        let len = size as u32;
        self.clear_swerr();
        self.clear_record(layout::COPY_RECORD)?;
        if count == 1 {
            let mut d = MemMove::new(src, dst, len).completion(self.iova(layout::COPY_RECORD)?);
            if mode == WaitMode::Interrupt {
                d = d.interrupt(MSI_VECTOR);
            }
            self.submit(&d.build())?;
            self.pending = Pending::Single(mode);
            return Ok(());
        }
        let list = self.iova(layout::COPY_LIST)?;
        let copy_record = self.iova(layout::COPY_RECORD)?;
        let first = next_batch_len(count, self.max_copies_per_batch);
        // Members: written once, shared by every batch; a failing member writes COPY_RECORD.
        let member = MemMove::new(src, dst, len)
            .completion_on_error(copy_record)
            .build();
        for i in 0..first as usize {
            self.region.write(layout::COPY_LIST + i * 64, &member)?;
        }
        let batches = batches_needed(count, self.max_copies_per_batch);
        if batches > u64::from(self.max_batches) {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits,
            });
        }
        for b in 0..batches as usize {
            self.clear_record(layout::BATCH_RECORDS + b * 32)?;
        }
        let mut remaining = count;
        let mut b = 0usize;
        while remaining > 0 {
            let n = next_batch_len(remaining, self.max_copies_per_batch);
            remaining -= u64::from(n);
            let rec = self.iova(layout::BATCH_RECORDS + b * 32)?;
            // Every batch asks for its record: completion order across batches is not
            // documented (in-order completion on one engine is inferred, not stated), so
            // `memcpy_wait` waits for each record rather than trusting the last one.
            // In interrupt mode the last batch asks for the interrupt; `memcpy_wait` sleeps on it
            // and then confirms every record.
            let irq = mode == WaitMode::Interrupt && remaining == 0;
            let d = match (n == 1, irq) {
                (true, false) => MemMove::new(src, dst, len).completion(rec).build(),
                (true, true) => MemMove::new(src, dst, len)
                    .completion(rec)
                    .interrupt(MSI_VECTOR)
                    .build(),
                (false, false) => Batch::new(list, n).completion(rec).build(),
                (false, true) => Batch::new(list, n)
                    .completion(rec)
                    .interrupt(MSI_VECTOR)
                    .build(),
            };
            if let Err(e) = self.submit(&d) {
                // Batches already submitted may still run; abandon them so nothing completes
                // into records the next operation reuses.
                if b > 0 {
                    self.abandon();
                }
                return Err(e);
            }
            b += 1;
        }
        self.pending = Pending::Batches(b as u32, mode);
        Ok(())
    }

    fn memcpy_wait(&mut self, _: InOrder, timeout_ns: u64) -> Result<(), DriverError> {
        let start = self.clock.now_ns();
        let pending = core::mem::replace(&mut self.pending, Pending::None);
        let (mode, record) = match pending {
            // Unreachable through CheckedDriver (the one state check); nothing to wait for.
            Pending::None => return Ok(()),
            Pending::Single(mode) => (mode, layout::COPY_RECORD),
            Pending::Batches(n, mode) => {
                (mode, layout::BATCH_RECORDS + (n.max(1) as usize - 1) * 32)
            }
        };
        let slept = self.sleep_on_interrupt(mode, record, timeout_ns);
        // Without the interrupt, check the records without waiting any longer: whatever is not
        // done by now takes the timeout's abandon-and-recover path below.
        let budget = if slept.is_ok() { timeout_ns } else { 0 };
        let finished = match pending {
            Pending::Batches(n, _) => self.finish_batches(n, start, budget),
            _ => self.finish_single(start, budget),
        };
        match finished {
            Err(DriverError::Timeout { .. }) => {
                self.abandon();
                self.recover();
            }
            Err(DriverError::Device(DeviceError::DsaSoftwareError { .. })) => self.recover(),
            _ => {}
        }
        // A missing interrupt is the error to report; otherwise the records' verdict.
        slept.and(finished)
    }

    fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
        self.clear_swerr();
        self.clear_record(layout::MSI_RECORD)?;
        let d = Noop::new()
            .completion(self.iova(layout::MSI_RECORD)?)
            .interrupt(MSI_VECTOR)
            .build();
        self.submit(&d)?;
        let start = self.clock.now_ns();
        let status = match self.wait_record(layout::MSI_RECORD, start, COMMAND_TIMEOUT_NS) {
            Ok(s) => s,
            Err(e) => {
                match e {
                    DriverError::Timeout { .. } => {
                        self.abandon();
                        self.recover();
                    }
                    DriverError::Device(DeviceError::DsaSoftwareError { .. }) => self.recover(),
                    _ => {}
                }
                return Err(e);
            }
        };
        if status != CompletionStatus::Success as u8 {
            return Err(self.record_error(layout::MSI_RECORD)?.into());
        }
        Ok(())
    }
}

impl<F: PciFunction, C: Clock> Dsa<'_, F, C> {
    /// In [`WaitMode::Interrupt`], sleep until the completion interrupt of the descriptor whose
    /// record is at `record` arrives (the device raises it after writing that record).
    fn sleep_on_interrupt(
        &self,
        mode: WaitMode,
        record: usize,
        timeout_ns: u64,
    ) -> Result<(), DriverError> {
        if mode == WaitMode::Poll {
            return Ok(());
        }
        wait_interrupt(
            &self.function,
            NAME,
            IrqKind::MsiX,
            u32::from(MSI_VECTOR),
            timeout_ns,
            || self.region.read_u8(record).is_ok_and(|s| s != 0),
        )
        .map(drop)
    }

    fn finish_single(&mut self, start: u64, timeout_ns: u64) -> Result<(), DriverError> {
        let status = self.wait_record(layout::COPY_RECORD, start, timeout_ns)?;
        if status == CompletionStatus::Success as u8 {
            return Ok(());
        }
        Err(self.record_error(layout::COPY_RECORD)?.into())
    }

    fn finish_batches(&mut self, n: u32, start: u64, timeout_ns: u64) -> Result<(), DriverError> {
        if n == 0 {
            return Ok(());
        }
        // Wait for every batch's record (each one asked for it), so nothing is still running
        // when this returns; then decode the first failure.
        let mut failed = None;
        for b in 0..n as usize {
            let off = layout::BATCH_RECORDS + b * 32;
            let status = self.wait_record(off, start, timeout_ns)?;
            if status != CompletionStatus::Success as u8 && failed.is_none() {
                failed = Some(off);
            }
        }
        if let Some(off) = failed {
            // A failed member wrote its own record with the precise cause: prefer it.
            if self.region.read_u8(layout::COPY_RECORD)? != 0 {
                return Err(self.record_error(layout::COPY_RECORD)?.into());
            }
            return Err(self.record_error(off)?.into());
        }
        Ok(())
    }
}
