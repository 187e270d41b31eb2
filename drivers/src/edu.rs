//! QEMU edu driver (4 KiB DMA buffer, MSI through the raise register).
//!
//! edu has one DMA engine that copies between RAM and a 4 KiB buffer inside the device, one
//! transfer at a time. A copy of `size` bytes from `src` to `dst` is therefore two DMAs:
//! `src` → device buffer, then device buffer → `dst`. `memcpy_start` programs the first DMA and
//! returns; `memcpy_wait` drives the rest (each completion starts the next transfer), so the
//! `count` copies of one call run back to back: 2 × `count` DMAs in total.
//!
//! Limits: `max_memcpy_size` = 4096 (the buffer), `max_memcpy_count` = [`MAX_COUNT`] (a choice of
//! this driver: QEMU's edu takes ~100 ms per DMA, so 32 copies take ~6.4 s, well inside
//! upstream's 60 s storm timeout), MSI vector 0. No DMA memory is needed (`region_size` 0).
//!
//! What edu cannot tell us: it has no error register. A DMA to or from an unmapped IOVA is
//! refused by the IOMMU (and shows up in the IOMMU's fault log), while the device clears its
//! start bit as if the copy had worked. So `memcpy_wait` succeeds for faulting copies; the test
//! programs detect them by comparing memory, exactly as upstream's driver test does ("not all
//! devices report"). The driver does detect a DMA engine that never finishes (a timeout naming
//! `DMA_CMD` and its last value), a device that is not edu or not alive (`ID`, `LIVENESS`), and
//! a DMA engine still busy from an earlier, timed-out copy.
//!
//! Addresses are ANDed with edu's `dma_mask` (28 bits by default, see
//! [`passthru_core::edu::DEFAULT_DMA_MASK`]); run QEMU with `-device edu,dma_mask=...` wide enough
//! for the IOVAs in use. The driver cannot read the mask, so it does not check.

use passthru_core::driver::{
    wait_interrupt, DeviceError, Driver, DriverError, InOrder, Limits, Match, WaitMode,
};
use passthru_core::edu::{self as hw, DmaCommand};
use passthru_core::mmio::{poll, Clock, DmaRegion, IrqKind, PciFunction, RegisterIo};
use passthru_core::pci::{self, CapabilityError, Command, Msi};

/// Driver name.
pub const NAME: &str = "edu";
/// Largest count accepted by `memcpy_start` (driver choice, see the module docs).
pub const MAX_COUNT: u64 = 32;
/// The raise-register cause bit `send_msi` uses (not one edu raises itself).
pub const SEND_MSI_CAUSE: u32 = 1 << 16;
/// Value written to the liveness register at init.
pub const LIVENESS_PATTERN: u32 = 0x1234_5678;
/// How long init and remove wait for a DMA left running by someone else.
pub const IDLE_TIMEOUT_NS: u64 = 1_000_000_000;
/// Interval between polls of the DMA command register.
pub const POLL_INTERVAL_NS: u64 = 20_000;
/// Time one copy takes on QEMU's edu (two DMAs of ~100 ms virtual time each): size
/// `memcpy_wait` timeouts from it when running on the QEMU rig.
pub const QEMU_NS_PER_COPY: u64 = 2 * hw::DMA_LATENCY_NS;
/// Smallest BAR0 the driver accepts (the register block).
pub const MIN_BAR_LEN: usize = 0x100;

/// Which DMA of the current copy is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `src` → device buffer.
    ToBuffer,
    /// Device buffer → `dst`.
    ToRam,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    src: u64,
    dst: u64,
    size: u64,
    /// Copies not yet finished, including the one running.
    remaining: u64,
    phase: Phase,
    /// Poll DMA_CMD, or ask every DMA for [`hw::IRQ_DMA`] and sleep on the MSI.
    mode: WaitMode,
}

/// An initialised edu device.
pub struct Edu<F: PciFunction, C: Clock> {
    function: F,
    clock: C,
    bar: F::Bar,
    job: Option<Job>,
}

fn register_fault(register: &'static str, value: u64) -> DriverError {
    DriverError::Device(DeviceError::Register {
        device: NAME,
        register,
        value,
    })
}

fn capability_fault(e: CapabilityError) -> DriverError {
    match e {
        CapabilityError::Config(f) => DriverError::Function(f),
        _ => DriverError::Unsupported {
            device: NAME,
            reason: "malformed capability list",
        },
    }
}

impl<F: PciFunction, C: Clock> core::fmt::Debug for Edu<F, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Edu").field("job", &self.job).finish()
    }
}

impl<F: PciFunction, C: Clock> Edu<F, C> {
    /// The BAR0 handle (for tests and diagnostics).
    pub fn bar(&self) -> &F::Bar {
        &self.bar
    }

    fn dma_cmd(&self) -> u64 {
        self.bar.read64(hw::DMA_CMD)
    }

    /// Wait until the DMA engine is idle, at most `timeout_ns`.
    fn wait_idle(&self, timeout_ns: u64) -> Result<(), DriverError> {
        poll(
            &self.clock,
            timeout_ns,
            POLL_INTERVAL_NS,
            || self.dma_cmd(),
            |v| !DmaCommand(v).running(),
        )
        .map(|_| ())
        .map_err(|t| DriverError::Timeout {
            device: NAME,
            register: "DMA_CMD",
            value: t.last,
            waited_ns: t.waited_ns,
        })
    }

    fn start_dma(&self, src: u64, dst: u64, size: u64, cmd: DmaCommand) {
        self.bar.write64(hw::DMA_SRC, src);
        self.bar.write64(hw::DMA_DST, dst);
        self.bar.write64(hw::DMA_COUNT, size);
        self.bar.write64(hw::DMA_CMD, cmd.0);
    }

    fn start_phase(&self, job: &Job) {
        let irq = |cmd: DmaCommand| match job.mode {
            WaitMode::Poll => cmd,
            WaitMode::Interrupt => cmd.with_irq(),
        };
        match job.phase {
            Phase::ToBuffer => self.start_dma(
                job.src,
                hw::BUFFER,
                job.size,
                irq(DmaCommand::ram_to_buffer()),
            ),
            Phase::ToRam => self.start_dma(
                hw::BUFFER,
                job.dst,
                job.size,
                irq(DmaCommand::buffer_to_ram()),
            ),
        }
    }

    /// [`WaitMode::Interrupt`]: sleep until the running DMA's MSI, then acknowledge its cause.
    fn sleep_on_dma_irq(&self, timeout_ns: u64) -> Result<(), DriverError> {
        let slept = wait_interrupt(
            &self.function,
            NAME,
            IrqKind::Msi,
            u32::from(hw::MSI_VECTOR),
            timeout_ns,
            || !DmaCommand(self.dma_cmd()).running(),
        );
        // Acknowledge the cause either way, so a lost MSI leaves no cause behind.
        self.bar.write32(hw::IRQ_ACK, hw::IRQ_DMA);
        slept.map(drop)
    }

    fn set_bus_master(&self, on: bool) -> Result<(), DriverError> {
        let (set, clear) = if on {
            (
                Command::MEMORY_SPACE | Command::BUS_MASTER,
                Command::empty(),
            )
        } else {
            (Command::empty(), Command::BUS_MASTER)
        };
        pci::update_command(&self.function, set, clear)?;
        Ok(())
    }
}

impl<'r, F: PciFunction, C: Clock> Driver<'r> for Edu<F, C> {
    type Function = F;
    type Clock = C;

    fn probe(function: &F) -> Option<Match> {
        let (vendor, device) = pci::read_ids(function).ok()?;
        (vendor == hw::VENDOR_ID && device == hw::DEVICE_ID).then_some(Match {
            name: NAME,
            vendor,
            device,
            region_size: 0,
        })
    }

    fn init(function: F, clock: C, _region: DmaRegion<'r>) -> Result<Self, DriverError> {
        // Registers answer only with memory decode on (otherwise reads are all ones).
        pci::update_command(&function, Command::MEMORY_SPACE, Command::empty())?;
        let bar = function.bar(0)?;
        if bar.len() < MIN_BAR_LEN {
            return Err(register_fault("BAR0 length", bar.len() as u64));
        }
        let id = bar.read32(hw::ID);
        if !hw::is_edu_id(id) {
            return Err(register_fault("ID", id.into()));
        }
        bar.write32(hw::LIVENESS, LIVENESS_PATTERN);
        let alive = bar.read32(hw::LIVENESS);
        if alive != !LIVENESS_PATTERN {
            return Err(register_fault("LIVENESS", alive.into()));
        }
        if Msi::find(&function).map_err(capability_fault)?.is_none() {
            return Err(DriverError::Unsupported {
                device: NAME,
                reason: "no MSI capability",
            });
        }
        let edu = Self {
            function,
            clock,
            bar,
            job: None,
        };
        // QEMU drops DMA unless bus mastering is on (pci_dma_rw checks the master enable bit).
        edu.set_bus_master(true)?;
        edu.wait_idle(IDLE_TIMEOUT_NS)?;
        edu.function.irq_enable(IrqKind::Msi, 0, 1)?;
        // Start with no cause pending.
        edu.bar.write32(hw::IRQ_ACK, u32::MAX);
        Ok(edu)
    }

    fn remove(self) -> Result<(), DriverError> {
        // Quiesce: let a running DMA finish, then stop DMA and interrupts. Every step runs even
        // if an earlier one failed; the first error is returned.
        let idle = self.wait_idle(IDLE_TIMEOUT_NS);
        self.bar.write32(hw::IRQ_ACK, u32::MAX);
        let irq = self.function.irq_disable(IrqKind::Msi).map_err(Into::into);
        let master = self.set_bus_master(false);
        idle.and(irq).and(master)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_memcpy_size: hw::BUFFER_SIZE,
            max_memcpy_count: MAX_COUNT,
            msi_vector: hw::MSI_VECTOR,
        }
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
        if size > hw::BUFFER_SIZE || count == 0 || count > MAX_COUNT {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits(),
            });
        }
        // A DMA left running by a timed-out copy would make edu ignore our register writes.
        let cmd = self.dma_cmd();
        if DmaCommand(cmd).running() {
            return Err(register_fault("DMA_CMD", cmd));
        }
        let job = Job {
            src,
            dst,
            size,
            remaining: count,
            phase: Phase::ToBuffer,
            mode,
        };
        self.start_phase(&job);
        self.job = Some(job);
        Ok(())
    }

    fn memcpy_wait(&mut self, _: InOrder, timeout_ns: u64) -> Result<(), DriverError> {
        let Some(mut job) = self.job.take() else {
            // Unreachable through CheckedDriver (the one state check); nothing to wait for.
            return Ok(());
        };
        let start = self.clock.now_ns();
        loop {
            let spent = self.clock.now_ns().wrapping_sub(start);
            let left = timeout_ns.saturating_sub(spent);
            if job.mode == WaitMode::Interrupt {
                self.sleep_on_dma_irq(left).map_err(|e| match e {
                    DriverError::InterruptTimeout {
                        device,
                        kind,
                        vector,
                        completed,
                        ..
                    } => DriverError::InterruptTimeout {
                        device,
                        kind,
                        vector,
                        waited_ns: self.clock.now_ns().wrapping_sub(start),
                        completed,
                    },
                    other => other,
                })?;
            }
            let spent = self.clock.now_ns().wrapping_sub(start);
            let left = timeout_ns.saturating_sub(spent);
            if let Err(e) = self.wait_idle(left) {
                return Err(match e {
                    DriverError::Timeout {
                        device,
                        register,
                        value,
                        ..
                    } => DriverError::Timeout {
                        device,
                        register,
                        value,
                        waited_ns: self.clock.now_ns().wrapping_sub(start),
                    },
                    other => other,
                });
            }
            match job.phase {
                Phase::ToBuffer => job.phase = Phase::ToRam,
                Phase::ToRam => {
                    job.remaining -= 1;
                    if job.remaining == 0 {
                        return Ok(());
                    }
                    job.phase = Phase::ToBuffer;
                }
            }
            self.start_phase(&job);
        }
    }

    fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
        // edu signals MSI vector 0 when a raise leaves irq_status non-zero; the ack clears the
        // cause again (with MSI enabled it does not retract anything already sent).
        self.bar.write32(hw::IRQ_RAISE, SEND_MSI_CAUSE);
        self.bar.write32(hw::IRQ_ACK, SEND_MSI_CAUSE);
        Ok(())
    }
}
