//! Intel CBDMA / I/OAT v3 driver (one channel, descriptor ring, CHANSTS write-back).
//!
//! Parity with upstream's VFIO selftest driver (`tools/testing/selftests/vfio/lib/drivers/ioat/ioat.c`),
//! without its defects (unbounded CHANSTS polls, XFERCAP 0 read as 1 byte, DMAUNCERRSTS written
//! back to the CHANERR_INT offset):
//!
//! * **Match**: 8086:2021 (Skylake-SP) whose CBVER is 0x32 or 0x33, exactly what upstream
//!   accepts. Other versions are refused on purpose: no 8086:2021 part with another version is
//!   known, v3.4 parts (Ice Lake, 8086:0B00) have a different id, and the only 0x34-reporting
//!   "2021" is an unmerged QEMU RFC model. Widening the match needs hardware to test on.
//! * **Channel 0 only**, at BAR0 + 0x80; every MSI-X vector the function has is connected, as
//!   upstream does (channel n raises vector n).
//! * **Copies**: one self-linked descriptor (its `next` is its own IOVA) executed `count` times
//!   by writing `count` to DMACOUNT after CHAINADDR (which resets the consumed count), so
//!   `max_memcpy_count` is 65535. Each execution writes the 8-byte CHANSTS value back to the
//!   completion slot named by CHANCMP.
//! * **send_msi**: a NULL descriptor with interrupt enable and completion write (Linux's
//!   interrupt trick) raises MSI-X vector 0 (channel 0's vector with INTRCTRL bit 3).
//!
//! Fixed against upstream: every poll of CHANSTS/CHANCMD is bounded and times out with the
//! register and the last value; DMAUNCERRSTS is cleared at its own offset (0x148), not written
//! to CHANERR_INT; XFERCAP 0 means 32 GiB (see [`passthru_core::ioat::XferCap`]); device faults
//! come back as [`DeviceError::IoatChannel`] with the raw CHANERR and CHANSTS; after a fault or a
//! timeout the channel is reset (Linux's error-recovery path: clear CHANERR, CHANERR_INT and
//! DMAUNCERRSTS, reset, restart from a rewritten CHAINADDR) so the next copy works.
//!
//! # DMA region layout ([`REGION_SIZE`] bytes, IOVA 64-byte aligned)
//!
//! | offset | size | content |
//! |---|---|---|
//! | [`layout::COPY_DESC`] | 64 | the self-linked copy descriptor |
//! | [`layout::NULL_DESC`] | 64 | the self-linked NULL + interrupt descriptor |
//! | [`layout::WRITEBACK`] | 64 | the completion write-back (8 bytes used; one cache line) |

use passthru_core::driver::{
    wait_interrupt, DeviceError, Driver, DriverError, InOrder, Limits, Match, WaitMode,
};
use passthru_core::ioat::{
    self, chan, ids, CbVer, ChanCmd, ChanCtrl, ChanState, ChanSts, Descriptor, IntrCtrl, XferCap,
};
use passthru_core::mmio::{poll, Clock, DmaRegion, IrqKind, PciFunction, RegisterIo};
use passthru_core::pci::{self, Command};

/// The driver's name, as in upstream's driver list.
pub const NAME: &str = "ioat";

/// CBVER values this driver accepts on 8086:2021 (upstream parity; see the module docs).
pub const SUPPORTED_CBVER: [u8; 2] = [0x32, 0x33];

/// The channel this driver uses.
pub const CHANNEL: u8 = 0;

/// The MSI-X vector [`Driver::send_msi`] fires: channel 0's vector.
pub const MSI_VECTOR: u16 = 0;

/// Largest `count` for one [`Driver::memcpy_start`]: DMACOUNT is 16 bits.
pub const MAX_MEMCPY_COUNT: u64 = 65535;

/// Largest size one descriptor can carry: its size field has 32 bits, whatever XFERCAP says.
pub const DESCRIPTOR_SIZE_LIMIT: u64 = u32::MAX as u64;

/// Offsets inside the driver's DMA region.
pub mod layout {
    /// The self-linked copy descriptor.
    pub const COPY_DESC: usize = 0;
    /// The self-linked NULL + interrupt descriptor.
    pub const NULL_DESC: usize = 64;
    /// The completion write-back slot (8 bytes used, a cache line reserved).
    pub const WRITEBACK: usize = 128;
}

/// Bytes of DMA memory the driver uses (exactly; see the layout table).
pub const REGION_SIZE: usize = 192;

/// How long a channel reset may take (Linux waits 200 ms).
pub const RESET_TIMEOUT_NS: u64 = 200_000_000;
/// How long a suspend may take (Linux waits 100 ms).
pub const SUSPEND_TIMEOUT_NS: u64 = 100_000_000;
/// How long [`Driver::send_msi`] waits for its NULL descriptor.
pub const SEND_MSI_TIMEOUT_NS: u64 = 1_000_000_000;
/// Pause between CHANSTS reads while waiting for copies.
pub const POLL_INTERVAL_NS: u64 = 1_000;
/// Pause between reads while waiting for a reset or suspend.
pub const COMMAND_POLL_INTERVAL_NS: u64 = 10_000;

const CHAN_BASE: usize = ioat::channel_base(CHANNEL);

/// CHANCTRL for every start: re-arm the interrupt, write the completion area on error, halt on
/// any error. No error interrupt: upstream's tests require that a faulting copy raises no MSI.
const START_CHANCTRL: ChanCtrl = ChanCtrl::INT_REARM
    .union(ChanCtrl::ERR_COMPLETION_EN)
    .union(ChanCtrl::ANY_ERR_ABORT_EN);

/// CHANCTRL for a start in [`WaitMode::Interrupt`]: as [`START_CHANCTRL`], plus an interrupt on
/// error, so a faulting copy wakes the waiter too (the copy descriptor carries interrupt enable).
const START_CHANCTRL_IRQ: ChanCtrl = START_CHANCTRL.union(ChanCtrl::ERR_INT_EN);

/// What is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Memcpy(WaitMode),
}

/// The CBDMA driver for one PCI function (see the module docs).
pub struct Ioat<'r, F: PciFunction, C: Clock> {
    function: F,
    bar: F::Bar,
    clock: C,
    region: DmaRegion<'r>,
    cbver: CbVer,
    xfercap: XferCap,
    limits: Limits,
    pending: Pending,
}

impl<F: PciFunction, C: Clock> core::fmt::Debug for Ioat<'_, F, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ioat")
            .field("cbver", &self.cbver)
            .field("xfercap", &self.xfercap)
            .field("limits", &self.limits)
            .field("region_iova", &self.region.iova())
            .field("pending", &self.pending)
            .finish()
    }
}

/// Device and version check shared by probe and init.
///
/// With `decode_off_ok` (probe, which must not change COMMAND), a CBVER of all ones — memory
/// decode off, the read was a master abort — is accepted on the ids alone; init checks again.
fn identify<F: PciFunction>(
    function: &F,
    decode_off_ok: bool,
) -> Result<(F::Bar, CbVer), DriverError> {
    let vendor = function.config_read16(pci::VENDOR_ID)?;
    let device = function.config_read16(pci::DEVICE_ID)?;
    if vendor != ids::VENDOR_INTEL || device != ids::SKX {
        return Err(DriverError::NoMatch { vendor, device });
    }
    let bar = function.bar(0)?;
    if bar.len() < CHAN_BASE + ioat::CHANNEL_MMIO_SIZE {
        return Err(DriverError::Unsupported {
            device: NAME,
            reason: "BAR0 is smaller than the global block plus channel 0",
        });
    }
    let cbver = CbVer(bar.read8(ioat::CBVER));
    if decode_off_ok && cbver.0 == u8::MAX {
        return Ok((bar, cbver));
    }
    if !SUPPORTED_CBVER.contains(&cbver.0) {
        return Err(DriverError::Unsupported {
            device: NAME,
            reason: "CBVER is not 0x32 or 0x33",
        });
    }
    Ok((bar, cbver))
}

impl<F: PciFunction, C: Clock> Ioat<'_, F, C> {
    /// The CBVER read at init.
    pub fn cbver(&self) -> CbVer {
        self.cbver
    }

    /// The XFERCAP read at init.
    pub fn xfercap(&self) -> XferCap {
        self.xfercap
    }

    /// The current CHANSTS register of channel 0 (diagnostics).
    pub fn chansts(&self) -> ChanSts {
        ChanSts(self.bar.read64(CHAN_BASE + chan::CHANSTS))
    }

    /// The completion write-back value in the DMA region (diagnostics).
    pub fn writeback(&self) -> Result<ChanSts, DriverError> {
        Ok(self.region.read(layout::WRITEBACK)?)
    }

    /// The current CHANERR register of channel 0 (diagnostics).
    pub fn chanerr(&self) -> u32 {
        self.bar.read32(CHAN_BASE + chan::CHANERR)
    }

    fn iova(&self, offset: usize) -> Result<u64, DriverError> {
        Ok(self.region.iova_at(offset)?)
    }

    fn write64_split(&self, reg: usize, value: u64) {
        // Linux's order: low dword, then high dword (one 64-bit write does not work on some
        // parts); the high write is what commits the value.
        self.bar.write32(CHAN_BASE + reg, value as u32);
        self.bar.write32(CHAN_BASE + reg + 4, (value >> 32) as u32);
    }

    fn chancmd(&self, cmd: ChanCmd) {
        self.bar.write8(CHAN_BASE + chan::CHANCMD, cmd.bits());
    }

    /// Clear every latched channel error: CHANERR_INT and DMAUNCERRSTS in config space, CHANERR
    /// in BAR0 (all RW1C, each written back at its own offset).
    fn clear_errors(&self) -> Result<(), DriverError> {
        let v = self.function.config_read32(ioat::CHANERR_INT)?;
        if v != 0 {
            self.function.config_write32(ioat::CHANERR_INT, v)?;
        }
        let v = self.function.config_read32(ioat::DMAUNCERRSTS)?;
        if v != 0 {
            self.function.config_write32(ioat::DMAUNCERRSTS, v)?;
        }
        let v = self.chanerr();
        if v != 0 {
            self.bar.write32(CHAN_BASE + chan::CHANERR, v);
        }
        Ok(())
    }

    fn timeout(register: &'static str, value: u64, waited_ns: u64) -> DriverError {
        DriverError::Timeout {
            device: NAME,
            register,
            value,
            waited_ns,
        }
    }

    /// Suspend the channel and wait (bounded) until it is SUSPENDED or HALTED.
    fn suspend(&self) -> Result<(), DriverError> {
        self.chancmd(ChanCmd::SUSPEND);
        poll(
            &self.clock,
            SUSPEND_TIMEOUT_NS,
            COMMAND_POLL_INTERVAL_NS,
            || self.chansts().0,
            |v| ChanSts(v).is(ChanState::Suspended) || ChanSts(v).is(ChanState::Halted),
        )
        .map(drop)
        .map_err(|t| Self::timeout("CHANSTS", t.last, t.waited_ns))
    }

    /// Linux's channel reset: quiesce, clear errors, CHANCMD = RESET, wait for the bit to clear
    /// and for CHANSTS to read HALTED. Every wait is bounded.
    fn reset_channel(&self) -> Result<(), DriverError> {
        let sts = self.chansts();
        if sts.is(ChanState::Active) || sts.is(ChanState::Done) {
            // A channel that will not suspend (wedged) is reset anyway; the reset is the cure.
            let _ = self.suspend();
        }
        self.clear_errors()?;
        self.chancmd(ChanCmd::RESET);
        poll(
            &self.clock,
            RESET_TIMEOUT_NS,
            COMMAND_POLL_INTERVAL_NS,
            || u64::from(self.bar.read8(CHAN_BASE + chan::CHANCMD)),
            |v| v & u64::from(ChanCmd::RESET.bits()) == 0,
        )
        .map_err(|t| Self::timeout("CHANCMD", t.last, t.waited_ns))?;
        poll(
            &self.clock,
            RESET_TIMEOUT_NS,
            COMMAND_POLL_INTERVAL_NS,
            || self.chansts().0,
            |v| ChanSts(v).is(ChanState::Halted),
        )
        .map_err(|t| Self::timeout("CHANSTS", t.last, t.waited_ns))?;
        Ok(())
    }

    /// Point the channel at `chain` and make `count` descriptors available, with CHANCTRL `ctrl`.
    fn kick(&self, chain: u64, count: u16, ctrl: ChanCtrl) -> Result<(), DriverError> {
        self.region.write(layout::WRITEBACK, &ChanSts(0))?;
        // Descriptor and write-back slot must be visible before the doorbell.
        passthru_core::arch::write_barrier();
        self.write64_split(chan::CHANCMP, self.iova(layout::WRITEBACK)?);
        self.write64_split(chan::CHAINADDR, chain);
        self.bar.write16(CHAN_BASE + chan::CHANCTRL, ctrl.bits());
        self.bar.write16(CHAN_BASE + chan::DMACOUNT, count);
        Ok(())
    }

    /// Wait until the chain started at `desc` is done: CHANSTS DONE and the write-back naming
    /// `desc`. On HALTED or timeout, decode, reset the channel and return the error.
    fn wait_done(&self, desc: u64, timeout_ns: u64) -> Result<(), DriverError> {
        let start = self.clock.now_ns();
        let r = poll(
            &self.clock,
            timeout_ns,
            POLL_INTERVAL_NS,
            || self.chansts().0,
            |v| {
                let s = ChanSts(v);
                v == u64::MAX || s.is(ChanState::Done) || s.is(ChanState::Halted)
            },
        );
        let sts = match r {
            Ok(v) if v == u64::MAX => {
                // All ones: the function stopped answering (surprise removal, reset in progress).
                return Err(DriverError::Device(DeviceError::Register {
                    device: NAME,
                    register: "CHANSTS",
                    value: v,
                }));
            }
            Ok(v) => ChanSts(v),
            Err(t) => {
                let err = Self::timeout("CHANSTS", t.last, t.waited_ns);
                let _ = self.reset_channel();
                return Err(err);
            }
        };
        if sts.is(ChanState::Halted) {
            let err = DeviceError::IoatChannel {
                chanerr: self.chanerr(),
                chansts: sts.0,
            };
            // Error recovery: the channel is reset; the caller's next copy starts afresh.
            let _ = self.reset_channel();
            return Err(DriverError::Device(err));
        }
        // DONE: the write-back must name our descriptor (it was zeroed before the doorbell), so a
        // stale DONE cannot pass for completion.
        let left = timeout_ns.saturating_sub(self.clock.now_ns().wrapping_sub(start));
        let wb = poll(
            &self.clock,
            left,
            POLL_INTERVAL_NS,
            || self.writeback().map_or(0, |w| w.0),
            |v| ChanSts(v).completed_address() == desc,
        );
        if let Err(t) = wb {
            let _ = self.reset_channel();
            return Err(Self::timeout("CHANCMP write-back", t.last, t.waited_ns));
        }
        passthru_core::arch::read_barrier();
        // Leave the channel suspended, ready for the next CHAINADDR (upstream does the same).
        if let Err(e) = self.suspend() {
            let _ = self.reset_channel();
            return Err(e);
        }
        Ok(())
    }
}

impl<'r, F: PciFunction, C: Clock> Driver<'r> for Ioat<'r, F, C> {
    type Function = F;
    type Clock = C;

    fn probe(function: &F) -> Option<Match> {
        let (_, _) = identify(function, true).ok()?;
        Some(Match {
            name: NAME,
            vendor: ids::VENDOR_INTEL,
            device: ids::SKX,
            region_size: REGION_SIZE,
        })
    }

    fn init(function: F, clock: C, region: DmaRegion<'r>) -> Result<Self, DriverError> {
        let (vendor, device) = pci::read_ids(&function)?;
        if vendor != ids::VENDOR_INTEL || device != ids::SKX {
            return Err(DriverError::NoMatch { vendor, device });
        }
        // Registers answer only with memory decode on.
        pci::update_command(
            &function,
            Command::MEMORY_SPACE | Command::BUS_MASTER | Command::INTX_DISABLE,
            Command::empty(),
        )?;
        let (bar, cbver) = identify(&function, false)?;
        if region.len() < REGION_SIZE {
            return Err(DriverError::RegionTooSmall {
                need: REGION_SIZE,
                have: region.len(),
            });
        }
        if !region.iova().is_multiple_of(64) {
            return Err(DriverError::Unsupported {
                device: NAME,
                reason: "the DMA region's IOVA is not 64-byte aligned (descriptors must be)",
            });
        }
        // Fails early (Dma::Misaligned) if the host mapping cannot hold an aligned u64.
        region.write_u64(layout::WRITEBACK, 0)?;

        // Like upstream, connect every MSI-X vector the function has (channel n uses vector n);
        // without a readable MSI-X capability, just vector 0.
        let vectors = match pci::MsiX::find(&function) {
            Ok(Some(m)) => u32::from(m.table_size()),
            _ => 1,
        };

        let chancnt = ioat::ChanCnt(bar.read8(ioat::CHANCNT));
        if chancnt.count() == 0 {
            return Err(DriverError::Unsupported {
                device: NAME,
                reason: "CHANCNT reports no channel",
            });
        }
        let xfercap = XferCap(bar.read8(ioat::XFERCAP));
        let limits = Limits {
            max_memcpy_size: xfercap.max_bytes().min(DESCRIPTOR_SIZE_LIMIT),
            max_memcpy_count: MAX_MEMCPY_COUNT,
            msi_vector: MSI_VECTOR,
        };
        let dev = Self {
            function,
            bar,
            clock,
            region,
            cbver,
            xfercap,
            limits,
            pending: Pending::None,
        };
        dev.reset_channel()?;
        dev.bar.write8(ioat::INTRCTRL, IntrCtrl::LINUX_MSIX.bits());
        dev.function.irq_enable(IrqKind::MsiX, 0, vectors)?;
        Ok(dev)
    }

    fn remove(self) -> Result<(), DriverError> {
        // Every step is attempted; the first error is reported.
        let reset = self.reset_channel();
        self.bar.write8(ioat::INTRCTRL, 0);
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
        if size > self.limits.max_memcpy_size || count == 0 || count > MAX_MEMCPY_COUNT {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits,
            });
        }
        let (Ok(size32), Ok(count16)) = (u32::try_from(size), u16::try_from(count)) else {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits,
            });
        };
        let at = self.iova(layout::COPY_DESC)?;
        let desc = Descriptor::copy(src, dst, size32)
            .with_next(at)
            .with_completion_write();
        let (desc, ctrl) = match mode {
            WaitMode::Poll => (desc, START_CHANCTRL),
            // The interrupt is armed once per start (CHANCTRL bit 0), so the self-linked
            // descriptor raises it once: at the first execution. `memcpy_wait` confirms the rest
            // from CHANSTS and the write-back.
            WaitMode::Interrupt => (desc.with_interrupt(), START_CHANCTRL_IRQ),
        };
        self.region.write(layout::COPY_DESC, &desc)?;
        self.kick(at, count16, ctrl)?;
        self.pending = Pending::Memcpy(mode);
        Ok(())
    }

    fn memcpy_wait(&mut self, _: InOrder, timeout_ns: u64) -> Result<(), DriverError> {
        let pending = core::mem::replace(&mut self.pending, Pending::None);
        let Pending::Memcpy(mode) = pending else {
            // Unreachable through CheckedDriver (the one state check); nothing to wait for.
            return Ok(());
        };
        let at = self.iova(layout::COPY_DESC)?;
        let start = self.clock.now_ns();
        if mode == WaitMode::Interrupt {
            let slept = wait_interrupt(
                &self.function,
                NAME,
                IrqKind::MsiX,
                u32::from(MSI_VECTOR),
                timeout_ns,
                || {
                    let s = self.chansts();
                    s.is(ChanState::Done) || s.is(ChanState::Halted)
                },
            );
            if let Err(e) = slept {
                // Finish the bookkeeping without waiting any longer: a finished chain is checked
                // and the channel suspended as usual, an unfinished one is reset.
                let _ = self.wait_done(at, 0);
                return Err(e);
            }
        }
        let left = timeout_ns.saturating_sub(self.clock.now_ns().wrapping_sub(start));
        self.wait_done(at, left)
    }

    fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
        let at = self.iova(layout::NULL_DESC)?;
        let desc = Descriptor::null_interrupt().with_next(at);
        self.region.write(layout::NULL_DESC, &desc)?;
        self.kick(at, 1, START_CHANCTRL)?;
        self.wait_done(at, SEND_MSI_TIMEOUT_NS)
    }
}
