//! A spec-faithful model of an Intel CBDMA (I/OAT v3.3) function: 8086:2021, CBVER 0x33, one
//! channel per function by default (facts from Linux `drivers/dma/ioat/registers.h`, `hw.h` and
//! `dma.c`, and SPDK's `include/spdk/ioat_spec.h`).
//!
//! # What it does
//!
//! * **Registers** (BAR0, 16 KiB): the global block and one 0x80-byte block per channel, with
//!   their widths, read-only / read-write / RW1C behaviour; any access width at any aligned
//!   offset works (a 32-bit write to the high half of a 64-bit register is a partial write).
//!   Unknown offsets read 0 and ignore writes.
//! * **Channel state machine**: reset → HALTED; CHAINADDR committed → ARMED with the consumed
//!   count back to 0; DMACOUNT ≠ consumed → ACTIVE; caught up → DONE (IDLE); SUSPEND from
//!   ACTIVE/DONE/ARMED → SUSPENDED; RESUME continues; ABORT → HALTED; an error with
//!   ANY_ERR_ABORT_EN → HALTED with CHANERR bits.
//! * **Descriptor walk**: follows `next` links (a self-linked descriptor is executed again and
//!   again) until consumed == DMACOUNT (mod 2^16); copy, fill and NULL descriptors.
//! * **Write-back**: after each descriptor with completion write, and on an error when
//!   ERR_COMPLETION_EN is set, the 8-byte CHANSTS value goes to CHANCMP; data is written first,
//!   then the write-back, then the interrupt.
//! * **Interrupts**: one-shot arming via CHANCTRL bit 0; a descriptor with interrupt enable (or an
//!   error with ERR_INT_EN) raises MSI-X vector *n* for channel *n* when INTRCTRL bit 3 is set;
//!   with only the master enable (bit 0) it sets ATTNSTATUS and raises vector 0.
//! * **Split writes**: CHAINADDR takes effect when its high dword (or the whole 64-bit register)
//!   is written, as Linux writes it low then high; a lone low-dword write only stores the bits.
//! * **Error injection**: force CHANERR bits on a channel's next descriptor, drop interrupts,
//!   wedge a channel (no progress, ignores SUSPEND/ABORT; RESET cures it), keep CHANCMD.RESET set
//!   for a number of reads, latch CHANERR_INT / DMAUNCERRSTS in configuration space.
//!
//! # Modelling choices (not confirmed by a primary source: neither the Linux driver nor SPDK says)
//!
//! * An unreadable source IOVA raises CHANERR bit 8 (read data error), an unwritable destination
//!   bit 9 (write data error), following the sheet's recommendation (Linux recovers those two);
//!   real hardware might report bits 0/1 instead.
//! * Unreadable descriptor → bit 2; misaligned CHAINADDR → bit 4; misaligned `next` → bit 3;
//!   unwritable CHANCMP → bit 12; size above 2^XFERCAP → bit 11; unknown or unadvertised opcode,
//!   or reserved control bits set → bit 10; SKX-style v1 commands (START/APPEND) or several
//!   command bits at once → bit 5, without changing state.
//! * Without ANY_ERR_ABORT_EN, data errors are latched and the channel moves on to the next
//!   descriptor; descriptor-fetch errors (bits 2, 3, 4) always halt.
//! * A CHANERR bit set in CHANERR_MASK is neither latched nor fatal: the descriptor counts as
//!   completed (its data movement may be partial).
//! * ATTNSTATUS is not cleared by reading; a channel's bit clears when it is re-armed.
//! * DMA needs COMMAND.bus_master: without it an ACTIVE channel makes no progress.
//! * The strict choices where drivers are known to go wrong: a channel RESET keeps CHANERR
//!   (software clears it by writing it back); a HALTED channel with unmasked CHANERR bits does not
//!   arm on a CHAINADDR write; committing CHAINADDR zeroes the completed-descriptor address in
//!   CHANSTS (nothing of the new chain has completed, so no write-back names the old chain);
//!   CHAINADDR written while ACTIVE is refused with CHANERR bit 4 and halts the channel; a
//!   CHANCMP that is not 8-byte aligned fails the write-back with CHANERR bit 12.
//! * With COMMAND.memory clear, BAR0 reads all ones and ignores writes (master abort; done by
//!   the [`crate::function::ModelBar`] adapter for every model).
//! * INTRDELAY's delay field is stored but interrupts are not coalesced (bit 15 reads 0).
//! * DMA_COMP reads 0x0002 (v2-compatible register layout).
//! * A zero-size copy or fill moves nothing and succeeds.

use std::sync::{Arc, Mutex, MutexGuard};

use passthru_core::ioat::{
    self, chan, ids, CbVer, ChanCmd, ChanCtrl, ChanErr, ChanState, ChanSts, DescControl, DescFlags,
    Descriptor, DmaCapability, DmaComp, IntrCtrl, Opcode, XferCap,
};

use crate::config::ConfigSpace;
use crate::exec::{Engine, ExecMode, Executor};
use crate::function::{DeviceModel, ModelFunction, PciState, Width};
use crate::iommu::Iommu;

/// Size of BAR0 (the global block, channel blocks, and the MSI-X table/PBA area).
pub const BAR0_SIZE: usize = 0x4000;
/// BAR0 offset of the MSI-X table (as in the QEMU RFC model; unverified on hardware).
pub const MSIX_TABLE_OFFSET: u32 = 0x2000;
/// BAR0 offset of the MSI-X PBA.
pub const MSIX_PBA_OFFSET: u32 = 0x3000;
/// The most channels this model offers (Linux drives at most 4).
pub const MAX_MODEL_CHANNELS: u8 = 4;
/// PCI class code: system peripheral, other.
pub const CLASS_CODE: u32 = 0x08_80_00;

/// How to build a [`CbdmaModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CbdmaConfig {
    /// PCI device id (default 0x2021, SKX).
    pub device_id: u16,
    /// CBVER (default 0x33).
    pub cbver: u8,
    /// XFERCAP (default 20: 1 MiB per descriptor).
    pub xfercap: u8,
    /// Number of channels, 1..=4 (default 1, as SKX has per function).
    pub channels: u8,
    /// DMACAPABILITY (default: block fill).
    pub dmacapability: u32,
    /// When descriptors execute.
    pub mode: ExecMode,
}

impl Default for CbdmaConfig {
    fn default() -> Self {
        Self {
            device_id: ids::SKX,
            cbver: CbVer::V3_3.0,
            xfercap: 20,
            channels: 1,
            dmacapability: DmaCapability::FILL.bits(),
            mode: ExecMode::Immediate,
        }
    }
}

/// One channel's registers and engine state.
#[derive(Debug, Clone, Default)]
struct Channel {
    chanctrl: u16,
    dmacount: u16,
    /// Descriptors processed since CHAINADDR was committed (mod 2^16).
    consumed: u16,
    chansts: u64,
    chainaddr: u64,
    chancmp: u64,
    cdar: u64,
    chanerr: u32,
    chanerr_mask: u32,
    dcactrl: u32,
    /// The next descriptor to fetch.
    next_desc: u64,
    /// The next fetch is the first one after CHAINADDR (alignment errors report bit 4).
    first_fetch: bool,
    /// Interrupt armed (CHANCTRL bit 0 written since the last interrupt).
    armed: bool,
    /// CHANCMD.RESET keeps reading 1 for this many more reads.
    reset_reads_left: u32,
    /// Injected: CHANERR bits forced on the next descriptor.
    inject_next: u32,
    /// Injected: the channel is wedged.
    stuck: bool,
    /// Statistics: descriptors completed successfully since model creation.
    completed_total: u64,
}

impl Channel {
    fn after_reset(&self) -> Self {
        Self {
            chansts: ChanSts::new(0, ChanState::Halted).0,
            completed_total: self.completed_total,
            ..Self::default()
        }
    }

    fn state(&self) -> u8 {
        ChanSts(self.chansts).state_bits()
    }

    fn set_state(&mut self, s: ChanState) {
        self.chansts = (self.chansts & !ChanSts::STATE_MASK) | s as u64;
    }

    fn is(&self, s: ChanState) -> bool {
        self.state() == s as u8
    }
}

#[derive(Debug, Clone)]
struct State {
    genctrl: u8,
    intrctrl: u8,
    attnstatus: u32,
    intrdelay: u16,
    channels: Vec<Channel>,
    /// Reset value of CHANCMD.RESET's read delay, applied on every reset command.
    reset_delay_reads: u32,
}

/// A register of BAR0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    ChanCnt,
    XferCap,
    GenCtrl,
    IntrCtrl,
    AttnStatus,
    CbVer,
    PerPortOffset,
    IntrDelay,
    CsStatus,
    DmaCapability,
    DcaOffset,
    Chan(u8, ChanReg),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChanReg {
    ChanCtrl,
    DmaComp,
    ChanCmd,
    DmaCount,
    ChanSts,
    ChainAddr,
    ChanCmp,
    Cdar,
    ChanErr,
    ChanErrMask,
    DcaCtrl,
}

/// The CBDMA model. Build it with [`CbdmaModel::new`] and wrap it in a
/// [`ModelFunction`] ([`CbdmaModel::function`]) to drive it.
#[derive(Debug)]
pub struct CbdmaModel {
    config: CbdmaConfig,
    pci: PciState,
    iommu: Arc<Iommu>,
    exec: Executor,
    state: Mutex<State>,
}

impl CbdmaModel {
    /// A model doing DMA through `iommu`.
    pub fn new(iommu: Arc<Iommu>, config: CbdmaConfig) -> Arc<Self> {
        let mut config = config;
        config.channels = config.channels.clamp(1, MAX_MODEL_CHANNELS);
        let mut cs = ConfigSpace::new(ids::VENDOR_INTEL, config.device_id, CLASS_CODE, 0);
        cs.bar(0, BAR0_SIZE as u64, true, 0xfe00_0000);
        cs.add_msix(
            u16::from(config.channels),
            0,
            MSIX_TABLE_OFFSET,
            0,
            MSIX_PBA_OFFSET,
        );
        cs.add_pcie_endpoint();
        cs.w1c32(usize::from(ioat::DMAUNCERRSTS), u32::MAX);
        cs.w1c32(usize::from(ioat::CHANERR_INT), u32::MAX);
        cs.mask32(usize::from(ioat::CHANERRMSK_INT), u32::MAX);
        let n = usize::from(config.channels);
        let model = Arc::new(Self {
            config,
            pci: PciState::new(cs, u32::from(config.channels)),
            iommu,
            exec: Executor::new(config.mode),
            state: Mutex::new(State {
                genctrl: 0,
                intrctrl: 0,
                attnstatus: 0,
                intrdelay: 0,
                channels: vec![Channel::default().after_reset(); n],
                reset_delay_reads: 0,
            }),
        });
        model.exec.start(Arc::downgrade(&model));
        model
    }

    /// A default model (8086:2021, CBVER 0x33, one channel) executing in `mode`.
    pub fn with_mode(iommu: Arc<Iommu>, mode: ExecMode) -> Arc<Self> {
        Self::new(
            iommu,
            CbdmaConfig {
                mode,
                ..CbdmaConfig::default()
            },
        )
    }

    /// The model as a PCI function for a driver.
    pub fn function(self: &Arc<Self>) -> ModelFunction<Self> {
        ModelFunction::new(Arc::clone(self))
    }

    /// The configuration the model was built with (channel count clamped to 1..=4).
    pub fn config(&self) -> CbdmaConfig {
        self.config
    }

    /// The IOVA table the model does DMA through.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Manual mode: execute one descriptor; false if nothing could run.
    pub fn step(&self) -> bool {
        self.exec.step(self)
    }

    /// Manual mode: execute until nothing can run (bounded); returns descriptors executed.
    pub fn run_until_idle(&self) -> usize {
        self.exec.run_until_idle(self)
    }

    // ----- error injection -----

    /// Force CHANERR `bits` on channel `ch`'s next descriptor (it fails before moving data).
    pub fn inject_chanerr_next(&self, ch: u8, bits: ChanErr) {
        if let Some(c) = self.lock().channels.get_mut(usize::from(ch)) {
            c.inject_next |= bits.bits();
        }
    }

    /// Wedge (or un-wedge) channel `ch`: it stops making progress and ignores SUSPEND and
    /// ABORT. A channel RESET (or function reset) clears it.
    pub fn inject_stuck(&self, ch: u8, stuck: bool) {
        if let Some(c) = self.lock().channels.get_mut(usize::from(ch)) {
            c.stuck = stuck;
        }
    }

    /// Silently drop the next `n` interrupts of channel `ch`'s vector.
    pub fn inject_drop_interrupts(&self, ch: u8, n: u32) {
        self.pci.msi.inject_drop(u32::from(ch), n);
    }

    /// Keep CHANCMD.RESET reading 1 for `reads` reads after each reset command.
    pub fn set_reset_delay_reads(&self, reads: u32) {
        self.lock().reset_delay_reads = reads;
    }

    /// Latch `bits` in the configuration-space CHANERR_INT register (0x180).
    pub fn inject_chanerr_int(&self, bits: u32) {
        let mut c = self.pci.config();
        let cur = c.read32(usize::from(ioat::CHANERR_INT));
        c.set32(usize::from(ioat::CHANERR_INT), cur | bits);
    }

    /// Latch `bits` in the configuration-space DMAUNCERRSTS register (0x148).
    pub fn inject_dmauncerrsts(&self, bits: u32) {
        let mut c = self.pci.config();
        let cur = c.read32(usize::from(ioat::DMAUNCERRSTS));
        c.set32(usize::from(ioat::DMAUNCERRSTS), cur | bits);
    }

    // ----- inspection -----

    /// Channel `ch`'s CHANSTS (0 if there is no such channel).
    pub fn chansts(&self, ch: u8) -> ChanSts {
        ChanSts(
            self.lock()
                .channels
                .get(usize::from(ch))
                .map_or(0, |c| c.chansts),
        )
    }

    /// Channel `ch`'s CHANERR (0 if there is no such channel).
    pub fn chanerr(&self, ch: u8) -> u32 {
        self.lock()
            .channels
            .get(usize::from(ch))
            .map_or(0, |c| c.chanerr)
    }

    /// Descriptors channel `ch` completed successfully since the model was built.
    pub fn completed_descriptors(&self, ch: u8) -> u64 {
        self.lock()
            .channels
            .get(usize::from(ch))
            .map_or(0, |c| c.completed_total)
    }

    // ----- register decode -----

    fn locate(&self, off: usize) -> Option<(Reg, usize, usize)> {
        let g = |r, start, size| Some((r, start, size));
        match off {
            0x00 => g(Reg::ChanCnt, 0x00, 1),
            0x01 => g(Reg::XferCap, 0x01, 1),
            0x02 => g(Reg::GenCtrl, 0x02, 1),
            0x03 => g(Reg::IntrCtrl, 0x03, 1),
            0x04..=0x07 => g(Reg::AttnStatus, 0x04, 4),
            0x08 => g(Reg::CbVer, 0x08, 1),
            0x0A..=0x0B => g(Reg::PerPortOffset, 0x0A, 2),
            0x0C..=0x0D => g(Reg::IntrDelay, 0x0C, 2),
            0x0E..=0x0F => g(Reg::CsStatus, 0x0E, 2),
            0x10..=0x13 => g(Reg::DmaCapability, 0x10, 4),
            0x14..=0x15 => g(Reg::DcaOffset, 0x14, 2),
            _ => {
                let n = off / ioat::CHANNEL_MMIO_SIZE;
                if n == 0 || n > usize::from(self.config.channels) {
                    return None;
                }
                let ch = (n - 1) as u8;
                let base = ioat::channel_base(ch);
                let rel = off - base;
                let (r, start, size) = match rel {
                    0x00..=0x01 => (ChanReg::ChanCtrl, chan::CHANCTRL, 2),
                    0x02..=0x03 => (ChanReg::DmaComp, chan::DMA_COMP, 2),
                    0x04 => (ChanReg::ChanCmd, chan::CHANCMD, 1),
                    0x06..=0x07 => (ChanReg::DmaCount, chan::DMACOUNT, 2),
                    0x08..=0x0F => (ChanReg::ChanSts, chan::CHANSTS, 8),
                    0x10..=0x17 => (ChanReg::ChainAddr, chan::CHAINADDR, 8),
                    0x18..=0x1F => (ChanReg::ChanCmp, chan::CHANCMP, 8),
                    0x20..=0x27 => (ChanReg::Cdar, chan::CDAR, 8),
                    0x28..=0x2B => (ChanReg::ChanErr, chan::CHANERR, 4),
                    0x2C..=0x2F => (ChanReg::ChanErrMask, chan::CHANERR_MASK, 4),
                    0x30..=0x33 => (ChanReg::DcaCtrl, chan::DCACTRL, 4),
                    _ => return None,
                };
                Some((Reg::Chan(ch, r), base + start, size))
            }
        }
    }

    fn read_reg(&self, st: &mut State, reg: Reg) -> u64 {
        let cfg = &self.config;
        match reg {
            Reg::ChanCnt => u64::from(cfg.channels),
            Reg::XferCap => u64::from(cfg.xfercap),
            Reg::GenCtrl => u64::from(st.genctrl),
            Reg::IntrCtrl => {
                let mut v = st.intrctrl;
                if st.attnstatus != 0 {
                    v |= IntrCtrl::INT_STATUS.bits();
                    if st.intrctrl & IntrCtrl::MASTER_INT_EN.bits() != 0 {
                        v |= IntrCtrl::INT.bits();
                    }
                }
                u64::from(v)
            }
            Reg::AttnStatus => u64::from(st.attnstatus),
            Reg::CbVer => u64::from(cfg.cbver),
            Reg::PerPortOffset | Reg::CsStatus | Reg::DcaOffset => 0,
            Reg::IntrDelay => u64::from(st.intrdelay),
            Reg::DmaCapability => u64::from(cfg.dmacapability),
            Reg::Chan(n, r) => {
                let Some(c) = st.channels.get_mut(usize::from(n)) else {
                    return 0;
                };
                match r {
                    ChanReg::ChanCtrl => u64::from(c.chanctrl),
                    ChanReg::DmaComp => u64::from(DmaComp::V2.bits()),
                    ChanReg::ChanCmd => {
                        if c.reset_reads_left > 0 {
                            c.reset_reads_left -= 1;
                            u64::from(ChanCmd::RESET.bits())
                        } else {
                            0
                        }
                    }
                    ChanReg::DmaCount => u64::from(c.dmacount),
                    ChanReg::ChanSts => c.chansts,
                    ChanReg::ChainAddr => c.chainaddr,
                    ChanReg::ChanCmp => c.chancmp,
                    ChanReg::Cdar => c.cdar,
                    ChanReg::ChanErr => u64::from(c.chanerr),
                    ChanReg::ChanErrMask => u64::from(c.chanerr_mask),
                    ChanReg::DcaCtrl => u64::from(c.dcactrl),
                }
            }
        }
    }

    /// Apply a write of `value` under byte `mask` (both in register position). Returns true if
    /// the engine should be kicked.
    fn write_reg(&self, st: &mut State, reg: Reg, value: u64, mask: u64) -> bool {
        let merge = |old: u64| (old & !mask) | (value & mask);
        match reg {
            Reg::GenCtrl => {
                st.genctrl = (merge(u64::from(st.genctrl)) as u8) & 0x01;
                false
            }
            Reg::IntrCtrl => {
                let writable = IntrCtrl::MASTER_INT_EN | IntrCtrl::MSIX_VECTOR_CONTROL;
                st.intrctrl = (merge(u64::from(st.intrctrl)) as u8) & writable.bits();
                false
            }
            Reg::IntrDelay => {
                st.intrdelay = (merge(u64::from(st.intrdelay)) as u16) & 0x3FFF;
                false
            }
            Reg::ChanCnt
            | Reg::XferCap
            | Reg::AttnStatus
            | Reg::CbVer
            | Reg::PerPortOffset
            | Reg::CsStatus
            | Reg::DmaCapability
            | Reg::DcaOffset => false,
            Reg::Chan(n, r) => {
                let reset_delay = st.reset_delay_reads;
                if r == ChanReg::ChanCtrl && mask & 1 != 0 && value & 1 != 0 {
                    // Re-arming acknowledges the channel's attention bit.
                    st.attnstatus &= !(1u32 << n);
                }
                let Some(c) = st.channels.get_mut(usize::from(n)) else {
                    return false;
                };
                match r {
                    ChanReg::ChanCtrl => {
                        c.chanctrl = merge(u64::from(c.chanctrl)) as u16;
                        if mask & 1 != 0 && value & 1 != 0 {
                            c.armed = true;
                        }
                        false
                    }
                    ChanReg::ChanCmd => {
                        let cmd = (value & mask) as u8;
                        self.command(c, cmd, reset_delay)
                    }
                    ChanReg::DmaCount => {
                        c.dmacount = merge(u64::from(c.dmacount)) as u16;
                        if (c.is(ChanState::Armed) || c.is(ChanState::Done))
                            && c.dmacount != c.consumed
                        {
                            c.set_state(ChanState::Active);
                        }
                        c.is(ChanState::Active)
                    }
                    ChanReg::ChainAddr => {
                        if c.is(ChanState::Active) {
                            // Moving the chain under a running channel (modelling choice): the
                            // write is refused, CHANERR bit 4 latched and the channel halts.
                            c.chanerr |= ChanErr::CHAIN_ADDR_VALUE_ERR.bits() & !c.chanerr_mask;
                            c.set_state(ChanState::Halted);
                            return false;
                        }
                        c.chainaddr = merge(c.chainaddr);
                        // The high dword (or a full 64-bit write) commits.
                        if mask & 0xFFFF_FFFF_0000_0000 != 0 {
                            if c.is(ChanState::Halted) && c.chanerr & !c.chanerr_mask != 0 {
                                // A halted channel with unacknowledged errors does not arm
                                // (modelling choice): software must clear CHANERR first.
                                return false;
                            }
                            c.next_desc = c.chainaddr;
                            c.first_fetch = true;
                            c.consumed = 0;
                            // A new chain: nothing of it has completed yet, so CHANSTS (and any
                            // error write-back) names no descriptor of the previous chain.
                            c.chansts = ChanSts::new(0, ChanState::Armed).0;
                            c.cdar = 0;
                        }
                        false
                    }
                    ChanReg::ChanCmp => {
                        c.chancmp = merge(c.chancmp);
                        false
                    }
                    ChanReg::ChanErr => {
                        c.chanerr &= !((value & mask) as u32);
                        false
                    }
                    ChanReg::ChanErrMask => {
                        c.chanerr_mask = merge(u64::from(c.chanerr_mask)) as u32;
                        false
                    }
                    ChanReg::DcaCtrl => {
                        c.dcactrl = merge(u64::from(c.dcactrl)) as u32;
                        false
                    }
                    ChanReg::DmaComp | ChanReg::ChanSts | ChanReg::Cdar => false,
                }
            }
        }
    }

    /// A CHANCMD write. Returns true if the engine should be kicked.
    fn command(&self, c: &mut Channel, cmd: u8, reset_delay: u32) -> bool {
        if cmd == 0 {
            return false;
        }
        let Some(cmd) = ChanCmd::from_bits(cmd).filter(|c| c.bits().count_ones() == 1) else {
            c.chanerr |= ChanErr::CHANCMD_ERR.bits() & !c.chanerr_mask;
            return false;
        };
        if cmd == ChanCmd::RESET {
            // CHANERR survives a channel reset (modelling choice; software clears it by writing
            // it back, as every reference driver does before resetting).
            let chanerr = c.chanerr;
            *c = c.after_reset();
            c.chanerr = chanerr;
            c.reset_reads_left = reset_delay;
            if self.config.cbver < CbVer::V3_3.0 {
                self.pci.config().set32(usize::from(ioat::CHANERR_INT), 0);
            }
            return false;
        }
        if c.stuck {
            return false;
        }
        if cmd == ChanCmd::SUSPEND {
            if c.is(ChanState::Active) || c.is(ChanState::Done) || c.is(ChanState::Armed) {
                c.set_state(ChanState::Suspended);
            }
            false
        } else if cmd == ChanCmd::ABORT {
            if !c.is(ChanState::Halted) {
                c.consumed = c.dmacount;
                c.set_state(ChanState::Halted);
            }
            false
        } else if cmd == ChanCmd::RESUME {
            if c.is(ChanState::Suspended) {
                if c.consumed != c.dmacount {
                    c.set_state(ChanState::Active);
                } else {
                    c.set_state(ChanState::Done);
                }
            }
            c.is(ChanState::Active)
        } else {
            // START / APPEND are I/OAT v1 commands.
            c.chanerr |= ChanErr::CHANCMD_ERR.bits() & !c.chanerr_mask;
            false
        }
    }

    fn access_read(&self, off: usize, width: usize) -> u64 {
        let mut st = self.lock();
        let mut out = 0u64;
        let mut i = 0;
        while i < width {
            let a = off + i;
            let Some((reg, start, size)) = self.locate(a) else {
                i += 1;
                continue;
            };
            let n = (start + size).min(off + width) - a;
            let v = self.read_reg(&mut st, reg);
            let shift = 8 * (a - start);
            let bytes = (v >> shift) & byte_mask(n);
            out |= bytes << (8 * i);
            i += n;
        }
        out
    }

    fn access_write(&self, off: usize, width: usize, value: u64) {
        let mut kick = false;
        {
            let mut st = self.lock();
            let mut i = 0;
            while i < width {
                let a = off + i;
                let Some((reg, start, size)) = self.locate(a) else {
                    i += 1;
                    continue;
                };
                let n = (start + size).min(off + width) - a;
                let shift = 8 * (a - start);
                let part = (value >> (8 * i)) & byte_mask(n);
                kick |= self.write_reg(&mut st, reg, part << shift, byte_mask(n) << shift);
                i += n;
            }
        }
        if kick {
            self.exec.kick(self);
        }
    }

    // ----- engine -----

    /// Raise channel `n`'s interrupt if it is armed (one-shot).
    fn interrupt(&self, st: &mut State, n: u8) {
        let Some(c) = st.channels.get_mut(usize::from(n)) else {
            return;
        };
        if !c.armed {
            return;
        }
        c.armed = false;
        let ctrl = IntrCtrl::from_bits_retain(st.intrctrl);
        if ctrl.contains(IntrCtrl::MSIX_VECTOR_CONTROL) {
            self.pci.raise(u32::from(n));
        } else {
            st.attnstatus |= 1 << n;
            if ctrl.contains(IntrCtrl::MASTER_INT_EN) {
                self.pci.raise(0);
            }
        }
    }

    /// Execute one descriptor on channel `n`; false if the channel cannot run.
    fn run_channel(&self, st: &mut State, n: u8) -> bool {
        let xfer_max = XferCap(self.config.xfercap).max_bytes();
        let caps = DmaCapability::from_bits_retain(self.config.dmacapability);
        let Some(c) = st.channels.get_mut(usize::from(n)) else {
            return false;
        };
        if !c.is(ChanState::Active) || c.stuck {
            return false;
        }
        if c.consumed == c.dmacount {
            c.set_state(ChanState::Done);
            return false;
        }
        let addr = c.next_desc;
        c.cdar = addr;
        let first = std::mem::replace(&mut c.first_fetch, false);
        let injected = std::mem::take(&mut c.inject_next);

        // Fetch.
        let fetched: Result<Descriptor, ChanErr> = if addr % 64 != 0 {
            Err(if first {
                ChanErr::CHAIN_ADDR_VALUE_ERR
            } else {
                ChanErr::NEXT_DESC_ALIGN_ERR
            })
        } else {
            let mut b = [0u8; 64];
            match self.iommu.read(addr, &mut b) {
                Ok(()) => Ok(Descriptor::from_bytes(&b)),
                Err(_) => Err(ChanErr::NEXT_ADDR_ERR),
            }
        };
        let desc = match fetched {
            Ok(d) => d,
            Err(e) => {
                // The descriptor itself is unusable: always halts.
                let e = e.bits() | injected;
                self.fail(st, n, e, true);
                return true;
            }
        };
        if injected != 0 {
            self.fail(st, n, injected, false);
            return true;
        }

        // Execute.
        let ctl = DescControl(desc.ctl);
        let flags = ctl.flags();
        let result: Result<(), ChanErr> = if ctl.reserved() != 0 {
            Err(ChanErr::CONTROL_ERR)
        } else {
            match ctl.op() {
                Ok(Opcode::Copy) if flags.contains(DescFlags::NULL) => Ok(()),
                Ok(Opcode::Copy) if u64::from(desc.size) > xfer_max => Err(ChanErr::LENGTH_ERR),
                Ok(Opcode::Copy) => self
                    .iommu
                    .copy(desc.src_addr, desc.dst_addr, u64::from(desc.size))
                    .map_err(|f| {
                        if f.write {
                            ChanErr::WRITE_DATA_ERR
                        } else {
                            ChanErr::READ_DATA_ERR
                        }
                    }),
                Ok(Opcode::Fill) if caps.contains(DmaCapability::FILL) => {
                    if u64::from(desc.size) > xfer_max {
                        Err(ChanErr::LENGTH_ERR)
                    } else {
                        self.iommu
                            .fill(
                                desc.dst_addr,
                                u64::from(desc.size),
                                &desc.src_addr.to_le_bytes(),
                            )
                            .map_err(|_| ChanErr::WRITE_DATA_ERR)
                    }
                }
                _ => Err(ChanErr::CONTROL_ERR),
            }
        };
        if let Err(e) = result {
            self.fail(st, n, e.bits(), false);
            return true;
        }
        self.complete(st, n, addr, &desc);
        true
    }

    /// Descriptor at `addr` moved its data: write back, count it, interrupt.
    fn complete(&self, st: &mut State, n: u8, addr: u64, desc: &Descriptor) {
        let flags = DescControl(desc.ctl).flags();
        let (consumed, sts, cmp) = {
            let Some(c) = st.channels.get(usize::from(n)) else {
                return;
            };
            let consumed = c.consumed.wrapping_add(1);
            let state = if consumed == c.dmacount {
                ChanState::Done
            } else {
                ChanState::Active
            };
            (consumed, ChanSts::new(addr, state).0, c.chancmp)
        };
        if flags.contains(DescFlags::COMPL_WRITE) {
            // Data first, then the write-back. CHANCMP must be 8-byte aligned.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            if !cmp.is_multiple_of(8) || self.iommu.write_u64(cmp, sts).is_err() {
                self.fail(st, n, ChanErr::COMPLETION_ADDR_ERR.bits(), false);
                return;
            }
        }
        let Some(c) = st.channels.get_mut(usize::from(n)) else {
            return;
        };
        c.consumed = consumed;
        c.completed_total += 1;
        c.next_desc = desc.next;
        c.chansts = sts;
        if flags.contains(DescFlags::INT_EN) {
            self.interrupt(st, n);
        }
    }

    /// The current descriptor failed with CHANERR `bits`.
    fn fail(&self, st: &mut State, n: u8, bits: u32, fetch_error: bool) {
        let Some(c) = st.channels.get_mut(usize::from(n)) else {
            return;
        };
        let reported = bits & !c.chanerr_mask;
        if reported == 0 && !fetch_error {
            // Masked: the descriptor counts as done; the channel carries on.
            c.consumed = c.consumed.wrapping_add(1);
            let addr = c.cdar;
            c.chansts = ChanSts::new(
                addr,
                if c.consumed == c.dmacount {
                    ChanState::Done
                } else {
                    ChanState::Active
                },
            )
            .0;
            // Without the descriptor (it may be what failed), follow the link if readable.
            c.next_desc = self
                .iommu
                .read_u64(addr.wrapping_add(ioat::desc_offset::NEXT as u64))
                .unwrap_or(addr);
            return;
        }
        c.chanerr |= reported;
        let ctrl = ChanCtrl::from_bits_retain(c.chanctrl);
        if !ctrl.contains(ChanCtrl::ANY_ERR_ABORT_EN) && !fetch_error {
            // Latched; move on to the next descriptor.
            c.consumed = c.consumed.wrapping_add(1);
            let addr = c.cdar;
            c.next_desc = self
                .iommu
                .read_u64(addr.wrapping_add(ioat::desc_offset::NEXT as u64))
                .unwrap_or(addr);
            if c.consumed == c.dmacount {
                c.set_state(ChanState::Done);
            }
            return;
        }
        // Halt; the write-back keeps the last good descriptor's address.
        c.set_state(ChanState::Halted);
        let sts = c.chansts;
        let cmp = c.chancmp;
        if ctrl.contains(ChanCtrl::ERR_COMPLETION_EN) && cmp.is_multiple_of(8) {
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // A failing write-back cannot be reported any further.
            let _ = self.iommu.write_u64(cmp, sts);
        }
        if ctrl.contains(ChanCtrl::ERR_INT_EN) {
            self.interrupt(st, n);
        }
    }
}

fn byte_mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

impl Engine for CbdmaModel {
    fn run_pending(&self) -> bool {
        if !self.pci.bus_master() {
            return false;
        }
        let mut st = self.lock();
        for n in 0..self.config.channels {
            if self.run_channel(&mut st, n) {
                return true;
            }
        }
        false
    }
}

impl DeviceModel for CbdmaModel {
    fn name(&self) -> &'static str {
        "cbdma-model"
    }

    fn pci(&self) -> &PciState {
        &self.pci
    }

    fn bar_len(&self, index: u8) -> Option<usize> {
        (index == 0).then_some(BAR0_SIZE)
    }

    fn mmio_read(&self, bar: u8, offset: usize, width: Width) -> u64 {
        if bar != 0 {
            return 0;
        }
        self.access_read(offset, usize::from(width).min(8))
    }

    fn mmio_write(&self, bar: u8, offset: usize, width: Width, value: u64) {
        if bar != 0 {
            return;
        }
        self.access_write(offset, usize::from(width).min(8), value);
    }

    fn reset(&self) {
        {
            let mut st = self.lock();
            st.genctrl = 0;
            st.intrctrl = 0;
            st.attnstatus = 0;
            st.intrdelay = 0;
            for c in st.channels.iter_mut() {
                *c = c.after_reset();
            }
        }
        let mut cs = self.pci.config();
        cs.set16(0x04, 0);
        cs.set32(usize::from(ioat::CHANERR_INT), 0);
        cs.set32(usize::from(ioat::DMAUNCERRSTS), 0);
        cs.set32(usize::from(ioat::CHANERRMSK_INT), 0);
    }
}

#[cfg(test)]
mod tests;
