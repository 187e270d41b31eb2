//! A software model of Intel DSA (8086:0b25 profile, Sapphire Rapids capability values).
//!
//! What it models (register and descriptor facts from Linux `drivers/dma/idxd/registers.h`,
//! `include/uapi/linux/idxd.h` and the Intel DSA Architecture Specification):
//!
//! * BAR0 registers with their widths and access types, readable and writable at 8/16/32/64 bits
//!   (64-bit accesses are split into two dword accesses, low first, so lo/hi split accesses behave
//!   the same). Unknown offsets read 0 and ignore writes.
//! * The administrative command state machine: CMDSTS Active/error/result, the documented error
//!   codes, INTCAUSE bit 1 and MSI-X vector 0 when CMD bit 31 asks for it, SWERR 0x52 when CMD is
//!   written while a command is active, 0x01 for unsupported commands. Commands stay Active for
//!   a configurable delay ([`DsaModel::set_command_delay`]; [`DEFAULT_THREADED_COMMAND_DELAY`] in
//!   threaded mode, so a driver that does not poll CMDSTS fails), with GENSTS in the drain state
//!   while a RESET_DEVICE runs; a delayed command with CMD bit 31 interrupts without any
//!   register access, as Linux's sleeping `idxd_cmd_exec` needs.
//! * With PCI memory decode off, BAR0 reads all ones and writes and portal submissions are
//!   dropped (master abort).
//! * WQCFG/GRPCFG tables (writable only while the WQ / device is disabled), validation at
//!   ENABLE_DEVICE and ENABLE_WQ, WQ state in WQCFG dword 6.
//! * Dedicated-WQ portal submission through BAR2 (WQ = offset >> 14, page = (offset >> 12) & 3).
//! * Execution of NOOP, DRAIN, BATCH, MEMMOVE, FILL, COMPARE, COMPARE_PATTERN, DUALCAST, CRCGEN,
//!   COPY_CRC and CACHE_FLUSH through the IOVA table; completion records written with the status
//!   byte last; RCI → MSI-X vector `int_handle`; errors without a usable record → SWERR
//!   (+ INTCAUSE bit 0, vector 0 if GENCTRL bit 0).
//! * Unmapped IOVA → status 0x03 (bit 7 for a write fault), bytes_completed and fault_addr;
//!   bytes_completed counts only bytes written to the destination, so resubmitting from
//!   `src/dst + bytes_completed` (or, after a descending copy, with the size reduced) leaves no
//!   hole.
//! * MEMMOVE copies in the direction that is safe for overlapping buffers (descending when the
//!   destination starts inside the source), however many mappings the buffers span, and reports
//!   the direction in the record's result byte (0 ascending, 1 descending); overlapping buffers
//!   without GENCAP bit 1 give 0x16.
//! * Block-on-fault (GENCAP bit 0, WQCFG bit and descriptor flag): a fault becomes a page request
//!   to the handler set with [`DsaModel::set_page_request_handler`]; if it maps the page the
//!   descriptor continues where it stopped, otherwise (or with no handler, as without a
//!   page-request service) it completes with 0x04 and the progress made.
//! * Error injection: force the next descriptor's status, rewrite the next descriptor, drop
//!   descriptors, stick the engine (never completes), stick the command unit, halt the device.
//!
//! Modelling choices where neither the DSA specification nor the Linux driver answers (each
//! also named in the tests):
//!
//! * A MOVDIR64B to a disabled WQ, a full WQ, a shared WQ, a nonexistent WQ, or while the device
//!   is not enabled is dropped and reported through SWERR with code
//!   [`SWERR_SUBMISSION_DROPPED`] (0x30), WQ index valid, descriptor fields filled in.
//! * Transfer size 0 is rejected with 0x13; priority 0 is rejected by ENABLE_WQ with 0x23.
//! * ENABLE_DEVICE group checks: a WQ with size > 0 in no group or in two groups → 0x15; an engine
//!   in two groups → 0x16; a group with WQs but no engine → 0x17; a group naming a WQ or engine the
//!   device does not have → 0x18.
//! * COMPARE / COMPARE_PATTERN: result 1 on mismatch with bytes_completed = offset of the first
//!   differing byte; with Check-Result, a result different from byte 40 gives status 0x02.
//! * CRC: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78); the descriptor seed is the CRC of
//!   the data before (so seed 0 gives the standard CRC-32C and chaining works): the register is
//!   initialised with `!seed` and the result is inverted. Whether hardware inverts is unconfirmed.
//! * BATCH: members run in order; after a failed member, members with the fence flag are
//!   abandoned and the batch stops; the batch status is 0x05 with result byte 1 if any member
//!   failed, and bytes_completed counts the members run. A member that is itself a BATCH gets 0x10.
//! * ABORT_WQ / ABORT_ALL / RESET_DEVICE drop queued descriptors without writing records.
//! * Validation order: opcode (0x10, against OPCAP), flags (0x11: bit 6, bits 17–23, and
//!   block-on-fault unless WQCFG enables it or on BATCH/DRAIN), reserved fields (0x12: dword 0
//!   bits 30:20, bytes 38–39), interrupt handle ≥ MSI-X vectors (0x19), transfer size (0x13), then
//!   batch count (0x14) and list alignment (0x18), dualcast address bits (0x17).
//! * CACHE_FLUSH checks that the range translates (0x03 otherwise); it moves no data.
//! * RCI fires after every completion that requested it, success or failure.
//! * The MEMMOVE result byte carries the direction in every record, not only on a page fault.
//! * After a resolved page request, operations other than MEMMOVE run again from the start
//!   (they are idempotent over their range); MEMMOVE resumes. At most
//!   [`MAX_PAGE_REQUESTS_PER_DESCRIPTOR`] page requests are made per descriptor.
//! * Without GENCAP.cmd_cap the supported commands are 1..12; with it, CMDCAP decides.
//!   REQUEST_INT_HANDLE returns handle = MSI-X index (1..vectors); IMS indices are refused (0x41).
//!   The DSA 2.0 commands 15..17 are unsupported (0x01).
//! * DRAIN_PASID / ABORT_PASID act on the WQs whose WQCFG has PASID enabled with that PASID.
//! * IMS portals (pages 2 and 3) accept descriptors but never raise an interrupt (no IMS model).
//! * Reads of BAR2 return all ones; the MSI-X table/PBA ranges of BAR0 read 0 (delivery is modelled
//!   by the [`crate::irq::MsiSink`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use passthru_core::idxd::regs::offset;
use passthru_core::idxd::tables::{GRPCFG_STRIDE, WQCFG_DWORDS};
use passthru_core::idxd::{
    portal, Cmd, CmdCap, CmdError, CmdSts, Command, CompletionStatus, Descriptor, DescriptorFlags,
    DeviceState, EngCap, GenCap, GenSts, GroupConfig, GrpCap, IntCause, Opcode, ResetType, SwErr,
    TableOffset, WqCap, WqConfig, WqState,
};
use passthru_core::mmio::PortalError;

use crate::config::ConfigSpace;
use crate::exec::{Engine, ExecMode, Executor};
use crate::function::{DeviceModel, ModelFunction, PciState, Width};
use crate::iommu::{DmaFault, Iommu};

/// SWERR code for a dropped portal submission (modelling choice; the real code is unknown).
pub const SWERR_SUBMISSION_DROPPED: u8 = 0x30;

/// BAR0 offset of the MSI-X table in this model (real hardware location unknown).
pub const MSIX_TABLE_OFFSET: u32 = 0x2000;
/// BAR0 offset of the MSI-X PBA in this model.
pub const MSIX_PBA_OFFSET: u32 = 0x3000;

/// How long an administrative command stays Active in [`ExecMode::Threaded`] unless
/// [`DsaModel::set_command_delay`] says otherwise (real hardware takes tens of µs to ms).
pub const DEFAULT_THREADED_COMMAND_DELAY: Duration = Duration::from_micros(20);

/// Page requests one block-on-fault descriptor may make before the model gives up with status
/// 0x04 (a handler that claims success without mapping the page would otherwise loop forever).
pub const MAX_PAGE_REQUESTS_PER_DESCRIPTOR: u32 = 64;

/// Answers a block-on-fault page request: `(iova, write)` of the faulting access; return true
/// once the page is mapped (the descriptor continues where it stopped), false for an invalid
/// response (the descriptor completes with status 0x04). It runs on the model's execution
/// thread with the model busy: it may change the [`Iommu`] but must not call the model.
pub type PageRequestHandler = Box<dyn FnMut(u64, bool) -> bool + Send>;

/// Capability values and sizes of a modelled DSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsaProfile {
    /// PCI device id.
    pub device_id: u16,
    /// VERSION.
    pub version: u32,
    /// GENCAP.
    pub gencap: u64,
    /// WQCAP.
    pub wqcap: u64,
    /// GRPCAP.
    pub grpcap: u64,
    /// ENGCAP.
    pub engcap: u64,
    /// OPCAP.
    pub opcap: [u64; 4],
    /// TABLE_OFFSET.
    pub table_offset: [u64; 2],
    /// CMDCAP (visible only when GENCAP bit 4 is set).
    pub cmdcap: u32,
    /// BAR0 length.
    pub bar0_len: usize,
}

impl DsaProfile {
    /// Sapphire Rapids values (group A.5 of core/FACT_SHEET_COVERAGE.md): VERSION 0x100, GENCAP 0x40915F010F,
    /// WQCAP 0x3F000000080080 (8 WQs, 128 entries, 32-byte WQCFG), GRPCAP 0x36004, ENGCAP 4,
    /// OPCAP qword 0 0x1003F03FF, TABLE_OFFSET grpcfg 3 / wqcfg 4 / msix_perm 2 / perfmon 0x10.
    pub const SPR: DsaProfile = DsaProfile {
        device_id: passthru_core::idxd::DEVICE_DSA_SPR0,
        version: 0x100,
        gencap: 0x40_915F_010F,
        wqcap: 0x3F_0000_0008_0080,
        grpcap: 0x36004,
        engcap: 4,
        opcap: [0x1_003F_03FF, 0, 0, 0],
        table_offset: TableOffset::new(3, 4, 2, 0, 0x10).raw(),
        cmdcap: 0,
        bar0_len: 0x4000,
    };

    fn gencap(&self) -> GenCap {
        GenCap(self.gencap)
    }
    fn wqcap(&self) -> WqCap {
        WqCap(self.wqcap)
    }
    fn tables(&self) -> TableOffset {
        TableOffset(self.table_offset)
    }
    fn num_wqs(&self) -> usize {
        usize::from(self.wqcap().num_wqs())
    }
    fn num_groups(&self) -> usize {
        usize::from(GrpCap(self.grpcap).num_groups())
    }
    fn num_engines(&self) -> usize {
        usize::from(EngCap(self.engcap).num_engines())
    }
    /// MSI-X vectors: vector 0 plus one per WQ.
    pub fn msix_vectors(&self) -> u32 {
        1 + self.num_wqs() as u32
    }
    /// BAR2 length: 16 KiB of portals per WQ.
    pub fn bar2_len(&self) -> usize {
        self.num_wqs().max(1) * portal::WQ_PORTAL_STRIDE
    }
}

impl Default for DsaProfile {
    fn default() -> Self {
        Self::SPR
    }
}

/// A rewrite applied to the next accepted descriptor (error injection).
pub type DescriptorRewrite = Box<dyn FnOnce(&mut [u8; 64]) + Send>;

#[derive(Default)]
struct Injection {
    /// Complete the next N descriptors with this status instead of executing them.
    force_status: VecDeque<u8>,
    /// Rewrite the next accepted descriptor.
    rewrite: Option<DescriptorRewrite>,
    /// Silently drop the next N portal submissions.
    drop: u32,
    /// The engine executes nothing.
    stuck: bool,
    /// Commands stay Active.
    command_stuck: bool,
}

#[derive(Clone, Copy)]
struct Queued {
    bytes: [u8; 64],
    ims: bool,
}

/// Counters for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DsaStats {
    /// Descriptors accepted into a WQ.
    pub accepted: u64,
    /// Descriptors dropped at the portal (with or without SWERR).
    pub dropped: u64,
    /// Top-level descriptors completed (any status).
    pub completed: u64,
    /// Completion records written.
    pub records: u64,
    /// Administrative commands executed.
    pub commands: u64,
    /// Block-on-fault page requests made.
    pub page_requests: u64,
    /// Writes that landed in a WQCFG entry beyond its 64-byte layout (only possible when
    /// WQCAP declares a larger stride): the signature of a driver using a wrong stride.
    pub wqcfg_beyond_layout_writes: u64,
}

struct State {
    gencfg: u32,
    genctrl: u32,
    gensts: GenSts,
    intcause: u32,
    cmd: u32,
    cmdsts: u32,
    swerr: [u64; 4],
    wqcfg: Vec<WqConfig>,
    grpcfg: Vec<GroupConfig>,
    msix_perm: Vec<u32>,
    queues: Vec<VecDeque<Queued>>,
    inj: Injection,
    stats: DsaStats,
    /// A command written to CMD that completes at this instant (delayed commands).
    pending_cmd: Option<Instant>,
}

impl State {
    fn new(p: &DsaProfile) -> Self {
        Self {
            gencfg: 0,
            genctrl: 0,
            gensts: GenSts(0),
            intcause: 0,
            cmd: 0,
            cmdsts: 0,
            swerr: [0; 4],
            wqcfg: vec![WqConfig::new(); p.num_wqs()],
            grpcfg: vec![GroupConfig::new(); p.num_groups()],
            msix_perm: vec![0; p.msix_vectors() as usize],
            queues: vec![VecDeque::new(); p.num_wqs()],
            inj: Injection::default(),
            stats: DsaStats::default(),
            pending_cmd: None,
        }
    }

    /// RESET_DEVICE / FLR: every RW register and table back to its default; queues dropped.
    fn reset_registers(&mut self, p: &DsaProfile) {
        let inj = std::mem::take(&mut self.inj);
        let stats = self.stats;
        let swerr = self.swerr;
        *self = State::new(p);
        self.inj = inj;
        self.stats = stats;
        self.swerr = swerr;
    }

    fn enabled(&self) -> bool {
        self.gensts.state() == DeviceState::Enabled
    }
}

/// The DSA model. Create it with [`DsaModel::new`]; drive it through [`DsaModel::function`].
pub struct DsaModel {
    profile: DsaProfile,
    pci: PciState,
    iommu: Arc<Iommu>,
    exec: Executor,
    state: Mutex<State>,
    /// Command completion delay in nanoseconds.
    command_delay_ns: AtomicU64,
    page_request: Mutex<Option<PageRequestHandler>>,
}

impl std::fmt::Debug for DsaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsaModel")
            .field(
                "device",
                &format_args!("8086:{:04x}", self.profile.device_id),
            )
            .field("mode", &self.exec.mode())
            .finish()
    }
}

/// How a descriptor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Outcome {
    /// Status byte (code | 0x80 for a write fault).
    status: u8,
    result: u8,
    bytes_completed: u32,
    fault_addr: u64,
    /// Bytes 16..31 of the record.
    op: [u8; 16],
}

impl Outcome {
    fn status(s: CompletionStatus) -> Self {
        Self {
            status: s as u8,
            ..Self::default()
        }
    }
    fn success() -> Self {
        Self::status(CompletionStatus::Success)
    }
    fn fault(f: DmaFault) -> Self {
        Self {
            status: CompletionStatus::PageFaultNoBof as u8 | if f.write { 0x80 } else { 0 },
            bytes_completed: u32::try_from(f.done).unwrap_or(u32::MAX),
            fault_addr: f.iova,
            ..Self::default()
        }
    }
    fn invalid_flags(bits: u32) -> Self {
        let mut o = Self::status(CompletionStatus::InvalidFlags);
        o.op[0..4].copy_from_slice(&(bits & 0xff_ffff).to_le_bytes());
        o
    }
    fn succeeded(&self) -> bool {
        matches!(
            CompletionStatus::from_raw(self.status & 0x7f),
            Ok(CompletionStatus::Success | CompletionStatus::SuccessPredicateFalse)
        )
    }
}

/// Flag bits a DSA descriptor may not set: bit 6, the IAA bits 17–21, bits 22–23.
const DSA_RESERVED_FLAGS: u32 = 1 << 6 | 0x1f << 17 | 0b11 << 22;

/// CRC-32C lookup table (reflected polynomial 0x82F63B78).
const CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continue a CRC-32C register over `data`.
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32C of `data` continuing from `seed` (the CRC of preceding data; 0 for none), as this
/// model computes CRCGEN / COPY_CRC (modelling choice, see the module docs).
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c_update(!seed, data)
}

/// Chunk size for streaming reads of guest memory.
const CHUNK: usize = 64 * 1024;

impl DsaModel {
    /// A Sapphire Rapids DSA doing DMA through `iommu`, executing in `mode`.
    pub fn new(iommu: Arc<Iommu>, mode: ExecMode) -> Arc<Self> {
        Self::with_profile(DsaProfile::SPR, iommu, mode)
    }

    /// A DSA with the given capability profile.
    pub fn with_profile(profile: DsaProfile, iommu: Arc<Iommu>, mode: ExecMode) -> Arc<Self> {
        let mut config = ConfigSpace::new(
            passthru_core::idxd::VENDOR_INTEL,
            profile.device_id,
            u32::from(passthru_core::idxd::PCI_CLASS) << 8,
            0,
        );
        config.bar(0, profile.bar0_len as u64, true, 0);
        config.bar(2, profile.bar2_len() as u64, true, 0);
        config.add_pcie_endpoint();
        config.add_msix(
            profile.msix_vectors() as u16,
            0,
            MSIX_TABLE_OFFSET,
            0,
            MSIX_PBA_OFFSET,
        );
        let model = Arc::new(Self {
            profile,
            pci: PciState::new(config, profile.msix_vectors()),
            iommu,
            exec: Executor::new(mode),
            state: Mutex::new(State::new(&profile)),
            command_delay_ns: AtomicU64::new(if mode == ExecMode::Threaded {
                DEFAULT_THREADED_COMMAND_DELAY.as_nanos() as u64
            } else {
                0
            }),
            page_request: Mutex::new(None),
        });
        model.exec.start(Arc::downgrade(&model));
        model
    }

    /// The model as a PCI function for drivers.
    pub fn function(self: &Arc<Self>) -> ModelFunction<Self> {
        ModelFunction::new(Arc::clone(self))
    }

    /// The capability profile.
    pub fn profile(&self) -> DsaProfile {
        self.profile
    }

    /// The IOVA table the model does DMA through.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// Lock the state, first completing a delayed command whose time has come (so every
    /// register access, submission and inspection sees it finished once it is due).
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.pending_cmd.is_some_and(|due| Instant::now() >= due) {
            st.pending_cmd = None;
            self.finish_command(&mut st);
        }
        st
    }

    /// Keep each administrative command Active for `delay` after the CMD write (0: commands
    /// complete inside the write). During a delayed RESET_DEVICE, GENSTS reads the drain state
    /// (2). Defaults: [`DEFAULT_THREADED_COMMAND_DELAY`] in threaded mode, 0 otherwise.
    pub fn set_command_delay(&self, delay: Duration) {
        self.command_delay_ns.store(
            u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The command completion delay.
    pub fn command_delay(&self) -> Duration {
        Duration::from_nanos(self.command_delay_ns.load(Ordering::Relaxed))
    }

    /// Answer block-on-fault page requests with `handler` (`None`: every page request gets an
    /// invalid response, as without a page-request service, so BOF faults complete with 0x04).
    pub fn set_page_request_handler(&self, handler: Option<PageRequestHandler>) {
        *self.page_request.lock().unwrap_or_else(|e| e.into_inner()) = handler;
    }

    // ------------------------------------------------------------ injection and inspection

    /// Complete the next descriptor (top level or batch member) with `status` instead of
    /// executing it. Calls queue up.
    pub fn inject_status(&self, status: u8) {
        self.lock().inj.force_status.push_back(status);
    }

    /// Rewrite the next descriptor accepted at a portal (e.g. corrupt its opcode or size).
    pub fn inject_rewrite(&self, f: impl FnOnce(&mut [u8; 64]) + Send + 'static) {
        self.lock().inj.rewrite = Some(Box::new(f));
    }

    /// Silently drop the next `n` portal submissions (no SWERR, no record).
    pub fn inject_drop(&self, n: u32) {
        self.lock().inj.drop = n;
    }

    /// Stick the engine: queued descriptors never complete until unstuck.
    pub fn set_stuck(&self, stuck: bool) {
        self.lock().inj.stuck = stuck;
        if !stuck {
            self.exec.kick(self);
        }
    }

    /// Stick the command unit: CMDSTS stays Active for every command written from now on.
    /// Unsticking completes the command left Active.
    pub fn set_command_stuck(&self, stuck: bool) {
        let mut st = self.lock();
        st.inj.command_stuck = stuck;
        if !stuck && CmdSts(st.cmdsts).active() && st.pending_cmd.is_none() {
            self.finish_command(&mut st);
        }
    }

    /// Halt the device with the given required reset (INTCAUSE bit 4, vector 0 if GENCTRL bit 1).
    pub fn inject_halt(&self, reset: ResetType) {
        let mut st = self.lock();
        self.halt(&mut st, reset);
    }

    /// Latch a software error as the device would (overflow if one is already valid).
    pub fn inject_swerr(&self, e: SwErr) {
        let mut st = self.lock();
        self.swerr(&mut st, e);
    }

    /// Disable `wq` behind the driver's back (as a DISABLE_WQ from another agent would).
    pub fn inject_wq_disabled(&self, wq: usize) {
        let mut st = self.lock();
        if let Some(c) = st.wqcfg.get_mut(wq) {
            *c = c.with_state(WqState::Disabled);
        }
        if let Some(q) = st.queues.get_mut(wq) {
            q.clear();
        }
    }

    /// Counters.
    pub fn stats(&self) -> DsaStats {
        self.lock().stats
    }

    /// Current SWERR.
    pub fn swerr_value(&self) -> SwErr {
        SwErr(self.lock().swerr)
    }

    /// Current GENSTS.
    pub fn gensts(&self) -> GenSts {
        self.lock().gensts
    }

    /// Current WQCFG entry of `wq`.
    pub fn wq_config(&self, wq: usize) -> Option<WqConfig> {
        let st = self.lock();
        st.wqcfg.get(wq).map(|c| self.wqcfg_view(&st, wq, *c))
    }

    /// Descriptors waiting in `wq`.
    pub fn occupancy(&self, wq: usize) -> usize {
        self.lock().queues.get(wq).map_or(0, VecDeque::len)
    }

    /// Manual mode: run one descriptor; returns whether one ran.
    pub fn step(&self) -> bool {
        self.exec.step(self)
    }

    /// Manual mode: run everything queued; returns how many ran.
    pub fn run_until_idle(&self) -> usize {
        self.exec.run_until_idle(self)
    }

    // ------------------------------------------------------------ error paths

    fn swerr(&self, st: &mut State, e: SwErr) {
        if SwErr(st.swerr).valid() {
            st.swerr[0] |= 1 << 1;
            return;
        }
        st.swerr = e.raw();
        st.intcause |= IntCause::SOFTWARE_ERROR.bits();
        if st.genctrl & passthru_core::idxd::GenCtrl::SOFTWARE_ERROR_INT.bits() != 0 {
            self.pci.raise(0);
        }
    }

    fn halt(&self, st: &mut State, reset: ResetType) {
        st.gensts = GenSts::new(DeviceState::Halted, reset);
        for q in &mut st.queues {
            q.clear();
        }
        for c in &mut st.wqcfg {
            *c = c.with_state(WqState::Disabled);
        }
        st.intcause |= IntCause::HALT.bits();
        if st.genctrl & passthru_core::idxd::GenCtrl::HALT_INT.bits() != 0 {
            self.pci.raise(0);
        }
    }

    // ------------------------------------------------------------ register file

    fn wqcfg_view(&self, st: &State, wq: usize, c: WqConfig) -> WqConfig {
        let occ = st.queues.get(wq).map_or(0, VecDeque::len) as u16;
        c.with_occupancy(occ)
            .with_mode_support(self.profile.wqcap().dedicated_mode())
    }

    fn read_dword(&self, st: &State, off: usize) -> u32 {
        let p = &self.profile;
        let lohi = |v: u64, base: usize| -> u32 {
            if off == base {
                v as u32
            } else {
                (v >> 32) as u32
            }
        };
        let t = p.tables();
        match off {
            0x00 => p.version,
            0x10 | 0x14 => lohi(p.gencap, offset::GENCAP),
            0x20 | 0x24 => lohi(p.wqcap, offset::WQCAP),
            0x30 | 0x34 => lohi(p.grpcap, offset::GRPCAP),
            0x38 | 0x3c => lohi(p.engcap, offset::ENGCAP),
            0x40..=0x5c => {
                let i = (off - offset::OPCAP) / 8;
                lohi(p.opcap[i], offset::OPCAP + 8 * i)
            }
            0x60..=0x6c => {
                let i = (off - offset::TABLE_OFFSET) / 8;
                lohi(p.table_offset[i], offset::TABLE_OFFSET + 8 * i)
            }
            0x80 => st.gencfg,
            0x88 => st.genctrl,
            0x90 => st.gensts.raw(),
            0x98 => st.intcause,
            0xa0 => st.cmd,
            0xa8 => st.cmdsts,
            0xb0 => {
                if p.gencap().cmd_cap() {
                    p.cmdcap
                } else {
                    0
                }
            }
            0xc0..=0xdc => {
                let i = (off - offset::SWERR) / 8;
                lohi(st.swerr[i], offset::SWERR + 8 * i)
            }
            _ => {
                if let Some((g, o)) =
                    table_index(off, t.grpcfg_offset(), GRPCFG_STRIDE, p.num_groups())
                {
                    return dword_of(st.grpcfg[g].as_bytes_le(), o);
                }
                let stride = p.wqcap().wqcfg_stride();
                if let Some((w, o)) = table_index(off, t.wqcfg_offset(), stride, p.num_wqs()) {
                    let d = o / 4;
                    return if d < WQCFG_DWORDS {
                        self.wqcfg_view(st, w, st.wqcfg[w]).dword(d)
                    } else {
                        0
                    };
                }
                if let Some((v, o)) =
                    table_index(off, t.msix_perm_offset(), 8, p.msix_vectors() as usize)
                {
                    return if o == 0 { st.msix_perm[v] } else { 0 };
                }
                0
            }
        }
    }

    fn write_dword(&self, st: &mut State, off: usize, value: u32) {
        let p = self.profile;
        let t = p.tables();
        let disabled = st.gensts.state() == DeviceState::Disabled;
        match off {
            0x80 => {
                // Writable only while the device is disabled [V]; no event log on this profile.
                if disabled {
                    let mask = 0xff
                        | 1 << 12
                        | if p.gencap().evl_support() != 0 {
                            1 << 13
                        } else {
                            0
                        };
                    st.gencfg = value & mask;
                }
            }
            0x88 => {
                let mask = 0x3
                    | if p.gencap().evl_support() != 0 {
                        0x4
                    } else {
                        0
                    };
                st.genctrl = value & mask;
            }
            0x98 => st.intcause &= !value,
            0xa0 => self.command(st, value),
            0xc0 => {
                // Valid and overflow are RW1C; the rest of SWERR is read-only.
                st.swerr[0] &= !u64::from(value & 0x3);
            }
            _ => {
                if let Some((g, o)) =
                    table_index(off, t.grpcfg_offset(), GRPCFG_STRIDE, p.num_groups())
                {
                    if disabled && o < 48 {
                        let mut b = st.grpcfg[g].as_bytes_le();
                        b[o..o + 4].copy_from_slice(&value.to_le_bytes());
                        st.grpcfg[g] = GroupConfig::from_le(b);
                    }
                    return;
                }
                let stride = p.wqcap().wqcfg_stride();
                if let Some((w, o)) = table_index(off, t.wqcfg_offset(), stride, p.num_wqs()) {
                    let d = o / 4;
                    if d >= WQCFG_DWORDS {
                        st.stats.wqcfg_beyond_layout_writes += 1;
                        return;
                    }
                    if st.wqcfg[w].state() != WqState::Disabled {
                        return;
                    }
                    let prs = if p.wqcap().wq_prs_support() {
                        1 << 3
                    } else {
                        0
                    };
                    let mask = match d {
                        0 | 1 => 0xffff,
                        2 => 0x3fff_fff7 | prs,
                        3 => 0x1ff,
                        4 | 5 => 0x1_ffff,
                        8..=15 if p.wqcap().op_config_support() => u32::MAX,
                        _ => 0,
                    };
                    if mask != 0 {
                        let cur = st.wqcfg[w].dword(d);
                        st.wqcfg[w] = st.wqcfg[w].with_dword(d, (cur & !mask) | (value & mask));
                    }
                    return;
                }
                if let Some((v, o)) =
                    table_index(off, t.msix_perm_offset(), 8, p.msix_vectors() as usize)
                {
                    if o == 0 {
                        st.msix_perm[v] = value & 0xffff_f00c;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ commands

    fn command(&self, st: &mut State, value: u32) {
        if CmdSts(st.cmdsts).active() {
            let e = SwErr::new(passthru_core::idxd::SwErrOnlyCode::CommandWhileActive as u8);
            self.swerr(st, e);
            return;
        }
        st.cmd = value;
        st.stats.commands += 1;
        if st.inj.command_stuck {
            st.cmdsts = CmdSts::ACTIVE;
            return;
        }
        let delay = self.command_delay();
        if delay.is_zero() {
            self.finish_command(st);
            return;
        }
        st.cmdsts = CmdSts::ACTIVE;
        if Cmd(value).command() == Ok(Command::ResetDevice)
            && st.gensts.state() != DeviceState::Halted
        {
            // The device drains while it resets [V].
            st.gensts = GenSts::new(DeviceState::Drain, st.gensts.reset_type());
        }
        let due = Instant::now() + delay;
        st.pending_cmd = Some(due);
        self.exec.wake_at(due);
    }

    /// Execute the command in CMD and publish its status (CMDSTS, INTCAUSE, vector 0).
    fn finish_command(&self, st: &mut State) {
        let cmd = Cmd(st.cmd);
        let (err, result) = self.execute_command(st, cmd);
        st.cmdsts = CmdSts::done(err as u8, result).raw();
        if cmd.int_req() {
            st.intcause |= IntCause::COMMAND_COMPLETED.bits();
            self.pci.raise(0);
        }
    }

    fn supported(&self, c: Command) -> bool {
        let p = &self.profile;
        if p.gencap().cmd_cap() {
            return CmdCap(p.cmdcap).supports(c);
        }
        // Without CMDCAP: the DSA 1.x commands 1..12; no interrupt handles, no DSA 2.0 commands.
        c.code() <= Command::AbortPasid.code()
    }

    /// WQ indices named by a DISABLE/DRAIN/ABORT/RESET_WQ operand.
    fn wq_set(operand: u32) -> impl Iterator<Item = usize> {
        let block = ((operand >> 16) & 0xf) as usize;
        (0..16usize)
            .filter(move |i| operand & (1 << i) != 0)
            .map(move |i| block * 16 + i)
    }

    fn execute_command(&self, st: &mut State, cmd: Cmd) -> (CmdError, u16) {
        let Ok(c) = cmd.command() else {
            return (CmdError::InvalidCommand, 0);
        };
        if !self.supported(c) {
            return (CmdError::InvalidCommand, 0);
        }
        let halted = st.gensts.state() == DeviceState::Halted;
        if halted && !(c == Command::ResetDevice && st.gensts.reset_type() == ResetType::Software) {
            return (CmdError::HardwareError, 0);
        }
        let nwq = self.profile.num_wqs();
        match c {
            Command::EnableDevice => (self.enable_device(st), 0),
            Command::DisableDevice => {
                if !st.enabled() {
                    return (CmdError::DeviceNotEnabled, 0);
                }
                self.drain(st, |_| true);
                for w in &mut st.wqcfg {
                    *w = w.with_state(WqState::Disabled);
                }
                st.gensts = GenSts::new(DeviceState::Disabled, ResetType::Software);
                (CmdError::Success, 0)
            }
            Command::DrainAll => {
                self.drain(st, |_| true);
                (CmdError::Success, 0)
            }
            Command::AbortAll => {
                st.queues.iter_mut().for_each(VecDeque::clear);
                (CmdError::Success, 0)
            }
            Command::ResetDevice => {
                st.reset_registers(&self.profile);
                (CmdError::Success, 0)
            }
            Command::EnableWq => (self.enable_wq(st, cmd.operand() as usize), 0),
            Command::DisableWq | Command::DrainWq | Command::AbortWq | Command::ResetWq => {
                let set: Vec<usize> = Self::wq_set(cmd.operand()).collect();
                if set.iter().any(|&w| w >= nwq) {
                    return (CmdError::InvalidWqIndex, 0);
                }
                if set.iter().any(|&w| st.wqcfg[w].state() != WqState::Enabled) {
                    return (CmdError::WqNotEnabled, 0);
                }
                for &w in &set {
                    match c {
                        Command::DisableWq => {
                            self.drain(st, |q| q == w);
                            st.wqcfg[w] = st.wqcfg[w].with_state(WqState::Disabled);
                        }
                        Command::DrainWq => self.drain(st, |q| q == w),
                        Command::AbortWq => st.queues[w].clear(),
                        _ => {
                            self.drain(st, |q| q == w);
                            st.wqcfg[w] = WqConfig::new();
                        }
                    }
                }
                (CmdError::Success, 0)
            }
            Command::DrainPasid | Command::AbortPasid => {
                let pasid = cmd.operand();
                let hit: Vec<usize> = (0..nwq)
                    .filter(|&w| st.wqcfg[w].pasid_en() && st.wqcfg[w].pasid() == pasid)
                    .collect();
                for w in hit {
                    if c == Command::DrainPasid {
                        self.drain(st, |q| q == w);
                    } else {
                        st.queues[w].clear();
                    }
                }
                (CmdError::Success, 0)
            }
            Command::RequestIntHandle => {
                let index = cmd.operand() & 0xffff;
                let ims = cmd.operand() & (1 << 16) != 0;
                if ims || index == 0 || index >= self.profile.msix_vectors() {
                    return (CmdError::InvalidIntIndex, 0);
                }
                // Handle = table index (modelling choice).
                (CmdError::Success, index as u16)
            }
            Command::ReleaseIntHandle => (CmdError::Success, 0),
            Command::RequestInterDomainHandle
            | Command::ReleaseInterDomainHandle
            | Command::InvalidateSubmitterBitmapCache => (CmdError::InvalidCommand, 0),
        }
    }

    fn enable_device(&self, st: &mut State) -> CmdError {
        let p = &self.profile;
        if st.enabled() {
            return CmdError::DeviceEnabled;
        }
        if !self.pci.bus_master() {
            return CmdError::BusMasterDisabled;
        }
        let total: u32 = st.wqcfg.iter().map(|w| u32::from(w.wq_size())).sum();
        if total > u32::from(p.wqcap().total_wq_size()) {
            return CmdError::WqSizeRange;
        }
        let nwq = p.num_wqs();
        let neng = p.num_engines();
        for g in &st.grpcfg {
            let bad_wq = (nwq..256).any(|w| g.has_wq(w as u8));
            let bad_eng = neng < 64 && g.engines.get() >> neng != 0;
            if bad_wq || bad_eng {
                return CmdError::GroupConfig4;
            }
        }
        for w in 0..nwq {
            let groups = st.grpcfg.iter().filter(|g| g.has_wq(w as u8)).count();
            if st.wqcfg[w].wq_size() > 0 && groups != 1 {
                return CmdError::GroupConfig1;
            }
        }
        for e in 0..neng.min(64) {
            if st.grpcfg.iter().filter(|g| g.has_engine(e as u8)).count() > 1 {
                return CmdError::GroupConfig2;
            }
        }
        for g in &st.grpcfg {
            let has_wq = g.wqs.iter().any(|q| q.get() != 0);
            if has_wq && g.engines.get() == 0 {
                return CmdError::GroupConfig3;
            }
        }
        st.gensts = GenSts::new(DeviceState::Enabled, ResetType::Software);
        CmdError::Success
    }

    fn enable_wq(&self, st: &mut State, wq: usize) -> CmdError {
        let p = &self.profile;
        if wq >= p.num_wqs() {
            return CmdError::InvalidWqIndex;
        }
        if !st.enabled() {
            return CmdError::WqDeviceNotEnabled;
        }
        let c = st.wqcfg[wq];
        if c.state() == WqState::Enabled {
            return CmdError::WqEnabled;
        }
        if c.wq_size() == 0 {
            return CmdError::WqSize;
        }
        if c.priority() == 0 {
            return CmdError::WqPriority;
        }
        let mode_ok = if c.dedicated() {
            p.wqcap().dedicated_mode()
        } else {
            p.wqcap().shared_mode()
        };
        if !mode_ok {
            return CmdError::WqMode;
        }
        if c.block_on_fault() && !p.gencap().block_on_fault() {
            return CmdError::WqBlockOnFault;
        }
        if !c.dedicated() && !c.pasid_en() {
            return CmdError::WqPasid;
        }
        if c.max_batch_shift() > p.gencap().max_batch_shift() {
            return CmdError::WqMaxBatch;
        }
        if c.max_xfer_shift() > p.gencap().max_xfer_shift() {
            return CmdError::WqMaxXfer;
        }
        st.wqcfg[wq] = c.with_state(WqState::Enabled);
        CmdError::Success
    }

    /// Run queued descriptors of the selected WQs to completion (unless the engine is stuck:
    /// then they are abandoned, so a drain never hangs the model).
    fn drain(&self, st: &mut State, select: impl Fn(usize) -> bool) {
        for w in 0..st.queues.len() {
            if !select(w) {
                continue;
            }
            while let Some(q) = st.queues[w].pop_front() {
                if st.inj.stuck {
                    continue;
                }
                self.execute_top(st, w, q);
            }
        }
    }

    // ------------------------------------------------------------ portals

    fn submit(&self, offset: usize, data: &[u8; 64]) {
        let mut st = self.lock();
        let a = portal::decode_portal(offset);
        if st.inj.drop > 0 {
            st.inj.drop -= 1;
            st.stats.dropped += 1;
            return;
        }
        let mut bytes = *data;
        let d = Descriptor::from_bytes(&bytes);
        let reject = |st: &mut State, wq: Option<usize>| {
            let mut e = SwErr::new(SWERR_SUBMISSION_DROPPED).with_descriptor(
                d.opcode_raw(),
                d.pasid(),
                d.privileged(),
            );
            if let Some(w) = wq {
                e = e.with_wq(w as u8);
            }
            st.stats.dropped += 1;
            self.swerr(st, e);
        };
        if a.wq >= self.profile.num_wqs() {
            reject(&mut st, None);
            return;
        }
        let c = st.wqcfg[a.wq];
        let full = st.queues[a.wq].len() >= usize::from(c.wq_size());
        if !st.enabled() || c.state() != WqState::Enabled || !c.dedicated() || full {
            reject(&mut st, Some(a.wq));
            return;
        }
        if let Some(f) = st.inj.rewrite.take() {
            f(&mut bytes);
        }
        st.queues[a.wq].push_back(Queued {
            bytes,
            ims: a.kind.ims(),
        });
        st.stats.accepted += 1;
        drop(st);
        self.exec.kick(self);
    }

    // ------------------------------------------------------------ execution

    /// Execute one top-level descriptor from WQ `wq` and report it.
    fn execute_top(&self, st: &mut State, wq: usize, q: Queued) {
        let d = Descriptor::from_bytes(&q.bytes);
        if !self.pci.bus_master() {
            // DMA with bus mastering off: PCI configuration error, halt needing FLR [V].
            let e =
                SwErr::new(passthru_core::idxd::SwErrOnlyCode::PciConfig as u8).with_wq(wq as u8);
            self.swerr(st, e);
            self.halt(st, ResetType::Flr);
            return;
        }
        let outcome = self.execute(st, wq, &d, false);
        self.complete(st, wq, &d, outcome, None, q.ims);
        st.stats.completed += 1;
    }

    /// Write the record (if the flags ask for it), or SWERR; then the interrupt.
    fn complete(
        &self,
        st: &mut State,
        wq: usize,
        d: &Descriptor,
        o: Outcome,
        batch_index: Option<u16>,
        ims: bool,
    ) {
        let flags = d.flags();
        let crav = flags.contains(DescriptorFlags::COMPLETION_ADDR_VALID);
        let rcr = flags.contains(DescriptorFlags::REQUEST_COMPLETION);
        let ok = o.succeeded();
        let swerr_for = |code: u8| {
            let mut e = SwErr::new(code)
                .with_descriptor(d.opcode_raw(), d.pasid(), d.privileged())
                .with_wq(wq as u8)
                .with_fault(o.fault_addr, o.status & 0x80 != 0);
            if let Some(i) = batch_index {
                e = e.with_batch_index(i);
            }
            if o.status & 0x7f == CompletionStatus::InvalidFlags as u8 {
                e = e.with_invalid_flags(u32::from_le_bytes([o.op[0], o.op[1], o.op[2], o.op[3]]));
            }
            e
        };
        if crav && (rcr || !ok) {
            let addr = d.completion_addr.get();
            if !addr.is_multiple_of(32) {
                let e = swerr_for(CompletionStatus::CompletionRecordMisaligned as u8);
                self.swerr(st, e);
            } else {
                let mut rec = [0u8; 32];
                rec[1] = o.result;
                rec[4..8].copy_from_slice(&o.bytes_completed.to_le_bytes());
                rec[8..16].copy_from_slice(&o.fault_addr.to_le_bytes());
                rec[16..32].copy_from_slice(&o.op);
                // Check the whole record first so a fault names the record address.
                let wrote = self
                    .iommu
                    .probe(addr, 32, true)
                    .and_then(|()| self.iommu.write(addr + 1, &rec[1..]))
                    .and_then(|()| self.iommu.write_status_u8(addr, o.status));
                match wrote {
                    Ok(()) => st.stats.records += 1,
                    Err(f) => {
                        let e = SwErr::new(CompletionStatus::CompletionRecordFault as u8)
                            .with_descriptor(d.opcode_raw(), d.pasid(), d.privileged())
                            .with_wq(wq as u8)
                            .with_fault(f.iova, true);
                        self.swerr(st, e);
                    }
                }
            }
        } else if !crav && !ok {
            let e = swerr_for(o.status & 0x7f);
            self.swerr(st, e);
        }
        if flags.contains(DescriptorFlags::REQUEST_INTERRUPT)
            && o.status & 0x7f != CompletionStatus::InvalidIntHandle as u8
            && !ims
        {
            self.pci.raise(u32::from(d.int_handle.get()));
        }
    }

    /// Validate and run one descriptor (a batch member when `in_batch`).
    fn execute(&self, st: &mut State, wq: usize, d: &Descriptor, in_batch: bool) -> Outcome {
        if let Some(s) = st.inj.force_status.pop_front() {
            return Outcome {
                status: s,
                ..Outcome::default()
            };
        }
        let p = &self.profile;
        let cfg = st.wqcfg[wq];
        let op = match d.opcode() {
            Ok(op) if OpCapOf(p.opcap).has(op as u8) => op,
            _ => return Outcome::status(CompletionStatus::InvalidOpcode),
        };
        if in_batch && op == Opcode::Batch {
            return Outcome::status(CompletionStatus::InvalidOpcode);
        }
        let flags = d.flags_raw();
        let mut bad = flags & DSA_RESERVED_FLAGS;
        if flags & DescriptorFlags::BLOCK_ON_FAULT.bits() != 0
            && (!cfg.block_on_fault() || matches!(op, Opcode::Batch | Opcode::Drain))
        {
            bad |= DescriptorFlags::BLOCK_ON_FAULT.bits();
        }
        if bad != 0 {
            return Outcome::invalid_flags(bad);
        }
        if d.reserved_dword0() != 0 || d.reserved.get() != 0 {
            return Outcome::status(CompletionStatus::ReservedNonZero);
        }
        if flags & DescriptorFlags::REQUEST_INTERRUPT.bits() != 0
            && u32::from(d.int_handle.get()) >= p.msix_vectors()
        {
            return Outcome::status(CompletionStatus::InvalidIntHandle);
        }
        let size = u64::from(d.xfer_size.get());
        let sized = !matches!(op, Opcode::Noop | Opcode::Drain | Opcode::Batch);
        if sized && (size == 0 || size > 1u64 << cfg.max_xfer_shift()) {
            return Outcome::status(CompletionStatus::InvalidTransferSize);
        }
        let src = d.src.get();
        let dst = d.dst.get();
        let bof = flags & DescriptorFlags::BLOCK_ON_FAULT.bits() != 0;
        if op == Opcode::MemMove {
            return self.memmove(st, src, dst, size, bof);
        }
        // Every other operation is idempotent over its range: after a resolved page request it
        // runs again from the start.
        let mut requests = 0;
        loop {
            let o = self.operate(st, wq, d, op, size);
            let fault = o.status & 0x7f == CompletionStatus::PageFaultNoBof as u8;
            if !bof || !fault {
                return o;
            }
            let f = DmaFault {
                iova: o.fault_addr,
                done: u64::from(o.bytes_completed),
                write: o.status & 0x80 != 0,
            };
            if !self.page_request(st, &f, &mut requests) {
                return Outcome {
                    status: CompletionStatus::PageFaultInvalidResponse as u8 | (o.status & 0x80),
                    ..o
                };
            }
        }
    }

    /// Ask the page-request handler to resolve `f`; false for an invalid response.
    fn page_request(&self, st: &mut State, f: &DmaFault, requests: &mut u32) -> bool {
        if *requests >= MAX_PAGE_REQUESTS_PER_DESCRIPTOR {
            return false;
        }
        *requests += 1;
        st.stats.page_requests += 1;
        let mut h = self.page_request.lock().unwrap_or_else(|e| e.into_inner());
        h.as_mut().is_some_and(|h| h(f.iova, f.write))
    }

    /// MEMMOVE: copy in the direction that is safe for overlap, report the direction in the
    /// result byte (0 ascending, 1 descending) and, on a fault, only the bytes written. With
    /// block-on-fault, a resolved page request continues the copy where it stopped.
    fn memmove(&self, st: &mut State, src: u64, dst: u64, size: u64, bof: bool) -> Outcome {
        let overlap = src < dst.saturating_add(size) && dst < src.saturating_add(size);
        if overlap && !self.profile.gencap().overlapping_copy() {
            return Outcome::status(CompletionStatus::OverlappingBuffers);
        }
        let descending = dst > src && dst - src < size;
        let mut done = 0u64;
        let mut requests = 0;
        loop {
            let r = if descending {
                self.iommu.copy_in_direction(src, dst, size - done, true)
            } else {
                self.iommu
                    .copy_in_direction(src + done, dst + done, size - done, false)
            };
            let mut o = match r {
                Ok(()) => Outcome::success(),
                Err(f) => {
                    let f = DmaFault {
                        done: done + f.done,
                        ..f
                    };
                    if bof && self.page_request(st, &f, &mut requests) {
                        done = f.done;
                        continue;
                    }
                    let mut o = Outcome::fault(f);
                    if bof {
                        o.status = CompletionStatus::PageFaultInvalidResponse as u8
                            | if f.write { 0x80 } else { 0 };
                    }
                    o
                }
            };
            o.result = u8::from(descending);
            return o;
        }
    }

    /// Run one non-MEMMOVE operation once.
    fn operate(&self, st: &mut State, wq: usize, d: &Descriptor, op: Opcode, size: u64) -> Outcome {
        let src = d.src.get();
        let dst = d.dst.get();
        match op {
            Opcode::Noop | Opcode::Drain => Outcome::success(),
            Opcode::Batch => self.batch(st, wq, d),
            Opcode::Fill => match self.iommu.fill(dst, size, &src.to_le_bytes()) {
                Ok(()) => Outcome::success(),
                Err(f) => Outcome::fault(f),
            },
            Opcode::Compare => {
                let r = self.compare(src, size, |at, buf| self.iommu.read(dst + at, buf));
                self.check_result(d, r)
            }
            Opcode::ComparePattern => {
                let pattern = dst.to_le_bytes();
                let r = self.compare(src, size, |at, buf| {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = pattern[(at as usize + i) % 8];
                    }
                    Ok(())
                });
                self.check_result(d, r)
            }
            Opcode::Dualcast => {
                let dst2 = d.op_u64(passthru_core::idxd::descriptor::op_offset::DEST2);
                if dst & 0xfff != dst2 & 0xfff {
                    return Outcome::status(CompletionStatus::DualcastMisaligned);
                }
                match self
                    .iommu
                    .copy(src, dst, size)
                    .and_then(|()| self.iommu.copy(src, dst2, size))
                {
                    Ok(()) => Outcome::success(),
                    Err(f) => Outcome::fault(f),
                }
            }
            Opcode::CrcGen | Opcode::CopyCrc => {
                let seed = if d.flags().contains(DescriptorFlags::READ_CRC_SEED) {
                    let addr = d.op_u64(passthru_core::idxd::descriptor::op_offset::CRC_SEED_ADDR);
                    let mut b = [0u8; 4];
                    if let Err(f) = self.iommu.read(addr, &mut b) {
                        return Outcome::fault(DmaFault { done: 0, ..f });
                    }
                    u32::from_le_bytes(b)
                } else {
                    d.op_u32(passthru_core::idxd::descriptor::op_offset::CRC_SEED)
                };
                let copy = op == Opcode::CopyCrc;
                match self.crc(src, dst, size, seed, copy) {
                    Ok(crc) => {
                        let mut o = Outcome::success();
                        o.op[0..4].copy_from_slice(&crc.to_le_bytes());
                        o
                    }
                    Err(f) => Outcome::fault(f),
                }
            }
            Opcode::CacheFlush => match self.iommu.probe(dst, size, false) {
                Ok(()) => Outcome::success(),
                Err(f) => Outcome::fault(f),
            },
            _ => Outcome::status(CompletionStatus::InvalidOpcode),
        }
    }

    /// Compare `size` bytes at `src` with what `other(offset, buf)` fills: `Ok(None)` equal,
    /// `Ok(Some(offset))` first difference.
    fn compare(
        &self,
        src: u64,
        size: u64,
        mut other: impl FnMut(u64, &mut [u8]) -> Result<(), DmaFault>,
    ) -> Result<Option<u64>, DmaFault> {
        let mut a = vec![0u8; (size as usize).min(CHUNK)];
        let mut b = a.clone();
        let mut done = 0u64;
        while done < size {
            let n = ((size - done) as usize).min(CHUNK);
            self.iommu
                .read(src + done, &mut a[..n])
                .map_err(|f| DmaFault {
                    done: done + f.done,
                    ..f
                })?;
            other(done, &mut b[..n]).map_err(|f| DmaFault {
                done: done + f.done,
                ..f
            })?;
            if let Some(i) = a[..n].iter().zip(&b[..n]).position(|(x, y)| x != y) {
                return Ok(Some(done + i as u64));
            }
            done += n as u64;
        }
        Ok(None)
    }

    fn check_result(&self, d: &Descriptor, r: Result<Option<u64>, DmaFault>) -> Outcome {
        match r {
            Err(f) => Outcome::fault(f),
            Ok(diff) => {
                let mut o = Outcome::success();
                if let Some(at) = diff {
                    o.result = 1;
                    o.bytes_completed = u32::try_from(at).unwrap_or(u32::MAX);
                }
                if d.flags().contains(DescriptorFlags::CHECK_RESULT)
                    && o.result
                        != d.op_byte(passthru_core::idxd::descriptor::op_offset::EXPECTED_RESULT)
                {
                    o.status = CompletionStatus::SuccessPredicateFalse as u8;
                }
                o
            }
        }
    }

    fn crc(&self, src: u64, dst: u64, size: u64, seed: u32, copy: bool) -> Result<u32, DmaFault> {
        let mut buf = vec![0u8; (size as usize).min(CHUNK)];
        let mut crc = !seed;
        let mut done = 0u64;
        while done < size {
            let n = ((size - done) as usize).min(CHUNK);
            self.iommu
                .read(src + done, &mut buf[..n])
                .map_err(|f| DmaFault {
                    done: done + f.done,
                    ..f
                })?;
            if copy {
                self.iommu
                    .write(dst + done, &buf[..n])
                    .map_err(|f| DmaFault {
                        done: done + f.done,
                        ..f
                    })?;
            }
            crc = crc32c_update(crc, &buf[..n]);
            done += n as u64;
        }
        Ok(!crc)
    }

    fn batch(&self, st: &mut State, wq: usize, d: &Descriptor) -> Outcome {
        let cfg = st.wqcfg[wq];
        let count = d.xfer_size.get();
        let list = d.src.get();
        if count < 2 || u64::from(count) > 1u64 << cfg.max_batch_shift() {
            return Outcome::status(CompletionStatus::InvalidDescriptorCount);
        }
        if !list.is_multiple_of(64) {
            return Outcome::status(CompletionStatus::DescriptorListMisaligned);
        }
        let mut failed = false;
        let mut done = 0u32;
        for i in 0..count {
            let mut b = [0u8; 64];
            let at = list + u64::from(i) * 64;
            if let Err(f) = self.iommu.read(at, &mut b) {
                return Outcome {
                    status: CompletionStatus::BatchPageFault as u8,
                    result: u8::from(failed),
                    bytes_completed: done,
                    fault_addr: f.iova,
                    ..Outcome::default()
                };
            }
            let m = Descriptor::from_bytes(&b);
            if failed && m.flags().contains(DescriptorFlags::FENCE) {
                break;
            }
            let o = self.execute(st, wq, &m, true);
            self.complete(st, wq, &m, o, Some(i as u16), false);
            done += 1;
            if !o.succeeded() {
                failed = true;
            }
        }
        Outcome {
            status: if failed {
                CompletionStatus::BatchFail as u8
            } else {
                CompletionStatus::Success as u8
            },
            result: u8::from(failed),
            bytes_completed: done,
            ..Outcome::default()
        }
    }
}

/// OPCAP lookup on the raw words.
struct OpCapOf([u64; 4]);
impl OpCapOf {
    fn has(&self, op: u8) -> bool {
        passthru_core::idxd::OpCap(self.0).supports(op)
    }
}

/// If `off` lies in a table at `base` of `n` entries of `stride` bytes: (entry, offset in entry).
fn table_index(off: usize, base: usize, stride: usize, n: usize) -> Option<(usize, usize)> {
    if base == 0 || off < base {
        return None;
    }
    let rel = off - base;
    let i = rel / stride;
    (i < n).then_some((i, rel % stride))
}

fn dword_of(b: [u8; 64], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

trait GroupBytes {
    fn as_bytes_le(&self) -> [u8; 64];
    fn from_le(b: [u8; 64]) -> Self;
}

impl GroupBytes for GroupConfig {
    fn as_bytes_le(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(zerocopy::IntoBytes::as_bytes(self));
        out
    }
    fn from_le(b: [u8; 64]) -> Self {
        zerocopy::FromBytes::read_from_bytes(&b[..]).unwrap_or_default()
    }
}

impl Engine for DsaModel {
    fn run_pending(&self) -> bool {
        let mut st = self.lock();
        if st.inj.stuck || st.gensts.state() != DeviceState::Enabled {
            return false;
        }
        let Some(w) = (0..st.queues.len()).find(|&w| !st.queues[w].is_empty()) else {
            return false;
        };
        let Some(q) = st.queues[w].pop_front() else {
            return false;
        };
        self.execute_top(&mut st, w, q);
        true
    }
}

impl DeviceModel for DsaModel {
    fn name(&self) -> &'static str {
        "dsa-model"
    }

    fn pci(&self) -> &PciState {
        &self.pci
    }

    fn bar_len(&self, index: u8) -> Option<usize> {
        match index {
            0 => Some(self.profile.bar0_len),
            2 => Some(self.profile.bar2_len()),
            _ => None,
        }
    }

    fn mmio_read(&self, bar: u8, offset: usize, width: Width) -> u64 {
        if bar != 0 {
            return u64::MAX >> (64 - 8 * u32::from(width.clamp(1, 8)));
        }
        let st = self.lock();
        let base = offset & !3;
        let lo = u64::from(self.read_dword(&st, base));
        let v = if width == 8 {
            lo | u64::from(self.read_dword(&st, base + 4)) << 32
        } else {
            lo >> (8 * (offset - base))
        };
        match width {
            1 => v & 0xff,
            2 => v & 0xffff,
            4 => v & 0xffff_ffff,
            _ => v,
        }
    }

    fn mmio_write(&self, bar: u8, offset: usize, width: Width, value: u64) {
        if bar != 0 {
            return;
        }
        let mut st = self.lock();
        let base = offset & !3;
        match width {
            8 => {
                self.write_dword(&mut st, base, value as u32);
                self.write_dword(&mut st, base + 4, (value >> 32) as u32);
            }
            4 => self.write_dword(&mut st, base, value as u32),
            _ => {
                // Narrow write: merge into the current dword (RW1C registers see only the written
                // bytes because the other bytes are written as zero there).
                let shift = 8 * (offset - base);
                let mask = if width == 1 { 0xffu32 } else { 0xffff } << shift;
                let merged = match base {
                    0x98 | 0xc0 => (value as u32) << shift & mask,
                    _ => (self.read_dword(&st, base) & !mask) | ((value as u32) << shift & mask),
                };
                self.write_dword(&mut st, base, merged);
            }
        }
        let run = st.enabled() && !st.inj.stuck && st.queues.iter().any(|q| !q.is_empty());
        drop(st);
        if run {
            self.exec.kick(self);
        }
    }

    fn portal_write(&self, bar: u8, offset: usize, data: &[u8; 64]) -> Result<(), PortalError> {
        if bar != 2 {
            return Err(PortalError::Unsupported);
        }
        self.submit(offset, data);
        Ok(())
    }

    fn reset(&self) {
        let mut st = self.lock();
        st.reset_registers(&self.profile);
        st.swerr = [0; 4];
        st.cmdsts = 0;
        drop(st);
        // FLR also clears COMMAND (memory decode, bus master).
        self.pci.config().write(0x04, 2, 0);
    }
}
