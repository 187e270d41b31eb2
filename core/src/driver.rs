//! The driver contract and its checked state machine.
//!
//! Every driver (`dsa`, `ioat`, `edu`, `igb` in `passthru-drivers`) implements [`Driver`]. Users
//! drive it through [`CheckedDriver`], which enforces the order upstream's `vfio_pci_driver_*`
//! wrappers assert — `init` only when not initialised, every other call only when initialised,
//! `memcpy_wait` only while a copy is in flight, everything else only when none is — and returns
//! [`DriverError::OutOfOrder`] instead of aborting.
//!
//! That check exists once, here: the state-dependent driver methods ([`Driver::memcpy_start`],
//! [`Driver::memcpy_wait`], [`Driver::send_msi`]) take an [`InOrder`] token that only this module
//! can make, so no code outside `passthru-core` can call them except through a
//! [`CheckedDriver`], and every driver refuses a wait with nothing pending or a start while busy
//! the same way.
//!
//! A copy can complete by polling or by interrupt ([`WaitMode`]): with
//! [`WaitMode::Interrupt`] the driver asks the device for a completion interrupt and
//! `memcpy_wait` sleeps in [`PciFunction::irq_wait`] until it arrives, then confirms completion
//! from the device's own status; a missing interrupt is [`DriverError::InterruptTimeout`].

use core::fmt;

use crate::mmio::{Clock, DmaError, DmaRegion, FunctionError, IrqKind, PciFunction, PortalError};

/// What a driver can do on an initialised device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Largest `size` accepted by [`Driver::memcpy_start`], in bytes.
    pub max_memcpy_size: u64,
    /// Largest `count` accepted by [`Driver::memcpy_start`].
    pub max_memcpy_count: u64,
    /// The interrupt vector [`Driver::send_msi`] fires (an MSI-X or MSI table index).
    pub msi_vector: u16,
}

/// The result of a successful [`Driver::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Match {
    /// Driver name (`"dsa"`, `"ioat"`, `"edu"`, `"igb"`).
    pub name: &'static str,
    /// PCI vendor id of the matched function.
    pub vendor: u16,
    /// PCI device id of the matched function.
    pub device: u16,
    /// Bytes of DMA memory the driver needs for its descriptors and state.
    pub region_size: usize,
}

/// A fault reported by the device itself, carrying the device's own diagnostics (raw register or
/// record values; the device modules decode them for display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceError {
    /// A DSA completion record reported a non-success status.
    DsaCompletion {
        /// Completion status byte (bit 7 = fault on write).
        status: u8,
        /// Result byte.
        result: u8,
        /// Bytes completed before the fault.
        bytes_completed: u32,
        /// Faulting address, if any.
        fault_addr: u64,
    },
    /// A DSA software error (SWERR, four 64-bit words) was latched.
    DsaSoftwareError {
        /// SWERR words 0..3.
        swerr: [u64; 4],
    },
    /// A DSA administrative command failed (CMDSTS error code non-zero).
    DsaCommand {
        /// Command code written to CMD.
        command: u8,
        /// CMDSTS value read back.
        cmdsts: u32,
    },
    /// The DSA device halted (GENSTS state HALT).
    DsaHalted {
        /// GENSTS value.
        gensts: u32,
    },
    /// A CBDMA channel reported an error (CHANERR non-zero, usually HALTED).
    IoatChannel {
        /// CHANERR value.
        chanerr: u32,
        /// CHANSTS value.
        chansts: u64,
    },
    /// Another register of the named device holds a value the driver treats as a fault.
    Register {
        /// Device (driver) name.
        device: &'static str,
        /// Register name.
        register: &'static str,
        /// The value read.
        value: u64,
    },
}

/// Why a driver call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DriverError {
    /// The call is not allowed in the current state.
    OutOfOrder {
        /// The call that was refused.
        op: &'static str,
        /// The state the driver was in.
        state: DriverState,
    },
    /// No driver matches this function.
    NoMatch {
        /// Vendor id read from the function.
        vendor: u16,
        /// Device id read from the function.
        device: u16,
    },
    /// The function matches by id but cannot be driven (e.g. DSA requiring interrupt handles).
    Unsupported {
        /// Driver name.
        device: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The DMA region lent to the driver is too small.
    RegionTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// `size` or `count` exceeds [`Limits`].
    BeyondLimits {
        /// Requested size.
        size: u64,
        /// Requested count.
        count: u64,
        /// The driver's limits.
        limits: Limits,
    },
    /// A poll of a device register did not see the expected value in time.
    Timeout {
        /// Device (driver) name.
        device: &'static str,
        /// Register polled.
        register: &'static str,
        /// Last value read.
        value: u64,
        /// Time waited, in nanoseconds.
        waited_ns: u64,
    },
    /// A copy started with [`WaitMode::Interrupt`] raised no interrupt in time.
    InterruptTimeout {
        /// Device (driver) name.
        device: &'static str,
        /// The interrupt mechanism.
        kind: IrqKind,
        /// The vector waited on.
        vector: u32,
        /// Time waited, in nanoseconds.
        waited_ns: u64,
        /// Whether the device's own status showed the work finished (the interrupt was lost
        /// rather than the device being slow).
        completed: bool,
    },
    /// The device reported a fault.
    Device(DeviceError),
    /// The backend refused a PCI-function operation.
    Function(FunctionError),
    /// A portal submission failed.
    Portal(PortalError),
    /// The DMA region access was refused (a driver bug or a too-small region).
    Dma(DmaError),
}

impl From<FunctionError> for DriverError {
    fn from(e: FunctionError) -> Self {
        Self::Function(e)
    }
}
impl From<PortalError> for DriverError {
    fn from(e: PortalError) -> Self {
        Self::Portal(e)
    }
}
impl From<DmaError> for DriverError {
    fn from(e: DmaError) -> Self {
        Self::Dma(e)
    }
}
impl From<DeviceError> for DriverError {
    fn from(e: DeviceError) -> Self {
        Self::Device(e)
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DsaCompletion {
                status,
                result,
                bytes_completed,
                fault_addr,
            } => write!(
                f,
                "dsa: completion status {status:#04x} (result {result:#x}, {bytes_completed} bytes done, fault address {fault_addr:#x})"
            ),
            Self::DsaSoftwareError { swerr } => write!(
                f,
                "dsa: SWERR {:#018x} {:#018x} {:#018x} {:#018x}",
                swerr[0], swerr[1], swerr[2], swerr[3]
            ),
            Self::DsaCommand { command, cmdsts } => {
                write!(f, "dsa: command {command:#x} failed, CMDSTS = {cmdsts:#010x}")
            }
            Self::DsaHalted { gensts } => write!(f, "dsa: device halted, GENSTS = {gensts:#010x}"),
            Self::IoatChannel { chanerr, chansts } => write!(
                f,
                "ioat: channel error, CHANERR = {}, CHANSTS = {chansts:#018x} ({})",
                crate::ioat::ChanErrDisplay(*chanerr),
                crate::ioat::ChanSts(*chansts)
            ),
            Self::Register {
                device,
                register,
                value,
            } => write!(f, "{device}: {register} = {value:#x}"),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfOrder { op, state } => {
                write!(f, "driver call {op} is not allowed in state {state:?}")
            }
            Self::NoMatch { vendor, device } => {
                write!(f, "no passthru driver for {vendor:04x}:{device:04x}")
            }
            Self::Unsupported { device, reason } => write!(f, "{device}: unsupported: {reason}"),
            Self::RegionTooSmall { need, have } => write!(
                f,
                "driver DMA region too small: need {need:#x} bytes, have {have:#x}"
            ),
            Self::BeyondLimits {
                size,
                count,
                limits,
            } => write!(
                f,
                "memcpy size {size:#x} x {count} exceeds the driver limits (max size {:#x}, max count {})",
                limits.max_memcpy_size, limits.max_memcpy_count
            ),
            Self::Timeout {
                device,
                register,
                value,
                waited_ns,
            } => write!(
                f,
                "{device}: timed out after {} us waiting on {register} (last value {value:#x})",
                waited_ns / 1000
            ),
            Self::InterruptTimeout {
                device,
                kind,
                vector,
                waited_ns,
                completed,
            } => write!(
                f,
                "{device}: no {kind} vector {vector} interrupt within {} us ({})",
                waited_ns / 1000,
                if *completed {
                    "the device had finished the work: the interrupt was lost"
                } else {
                    "the device had not finished the work either"
                }
            ),
            Self::Device(e) => e.fmt(f),
            Self::Function(e) => e.fmt(f),
            Self::Portal(e) => e.fmt(f),
            Self::Dma(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DeviceError {}

impl core::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Device(e) => Some(e),
            Self::Function(e) => Some(e),
            Self::Portal(e) => Some(e),
            Self::Dma(e) => Some(e),
            _ => None,
        }
    }
}

/// How [`Driver::memcpy_wait`] learns that the copies finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WaitMode {
    /// Poll the device's completion status; the copy raises no interrupt (upstream's contract).
    #[default]
    Poll,
    /// Ask the device for one completion interrupt on [`Limits::msi_vector`] (edu: one per DMA)
    /// and sleep in [`PciFunction::irq_wait`] until it arrives, then confirm completion from the
    /// device's status (polling, bounded by the same timeout, whatever part of a multi-copy
    /// request the interrupt did not cover). The interrupt is consumed by the wait. No
    /// interrupt in time is [`DriverError::InterruptTimeout`].
    Interrupt,
}

/// Proof that a call to a state-dependent [`Driver`] method comes from [`CheckedDriver`]: only
/// this module can make one, so the one state check here covers every driver.
#[derive(Debug)]
pub struct InOrder {
    _private: (),
}

impl InOrder {
    const fn new() -> Self {
        Self { _private: () }
    }
}

/// Wait on `function`'s interrupt `vector` for at most `timeout_ns` ([`PciFunction::irq_wait`])
/// and return the number of interrupts taken; no interrupt in time is
/// [`DriverError::InterruptTimeout`], with `completed()` telling whether the device had finished
/// anyway. Drivers call this from [`Driver::memcpy_wait`] in [`WaitMode::Interrupt`].
pub fn wait_interrupt<F: PciFunction + ?Sized>(
    function: &F,
    device: &'static str,
    kind: IrqKind,
    vector: u32,
    timeout_ns: u64,
    completed: impl FnOnce() -> bool,
) -> Result<u64, DriverError> {
    match function.irq_wait(kind, vector, timeout_ns)? {
        0 => Err(DriverError::InterruptTimeout {
            device,
            kind,
            vector,
            waited_ns: timeout_ns,
            completed: completed(),
        }),
        n => Ok(n),
    }
}

/// A device driver, generic over the seam: it runs unchanged on VFIO, in a KVM guest, on a model.
///
/// `'r` is the lifetime of the [`DmaRegion`] the driver is lent at [`Driver::init`].
pub trait Driver<'r>: Sized {
    /// The PCI function this driver controls.
    type Function: PciFunction;
    /// The clock used for bounded polling.
    type Clock: Clock;

    /// Does this driver handle `function`? Reads ids (and whatever else it needs) from config
    /// space and registers; never changes device state.
    fn probe(function: &Self::Function) -> Option<Match>;

    /// Bring the device up, using `region` for descriptors and state.
    fn init(
        function: Self::Function,
        clock: Self::Clock,
        region: DmaRegion<'r>,
    ) -> Result<Self, DriverError>;

    /// Quiesce the device and release it (after this no DMA and no interrupt happens).
    fn remove(self) -> Result<(), DriverError>;

    /// The limits of this device as initialised.
    fn limits(&self) -> Limits;

    /// Start `count` copies of `[src, src+size)` to `[dst, dst+size)` (IOVAs). Returns at once.
    /// With [`WaitMode::Poll`] the copies raise no interrupt; with [`WaitMode::Interrupt`] they
    /// raise the completion interrupt [`Driver::memcpy_wait`] then sleeps on. Called only when
    /// nothing is in flight, with `size`/`count` within [`Driver::limits`] (checked by
    /// [`CheckedDriver`]).
    fn memcpy_start(
        &mut self,
        token: InOrder,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError>;

    /// Wait until the copies started by [`Driver::memcpy_start`] finish, at most `timeout_ns`, in
    /// the mode they were started with. Called only after a successful start. Device faults come
    /// back decoded; after an error the driver is ready for the next copy.
    fn memcpy_wait(&mut self, token: InOrder, timeout_ns: u64) -> Result<(), DriverError>;

    /// Make the device raise interrupt [`Limits::msi_vector`] exactly once. Called only when
    /// nothing is in flight.
    ///
    /// A driver whose device cannot be made to interrupt sets [`Driver::HAS_SEND_MSI`] to false
    /// and implements this as an error; it is then never called through [`CheckedDriver`].
    fn send_msi(&mut self, token: InOrder) -> Result<(), DriverError>;

    /// Whether [`Driver::send_msi`] exists (upstream's `send_msi` op became optional in Linux
    /// 7.3; test programs skip `send_msi` and the stray-MSI checks for drivers without it).
    const HAS_SEND_MSI: bool = true;
}

/// Where a [`CheckedDriver`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DriverState {
    /// Not initialised (before `init` or after `remove`).
    Uninitialized,
    /// Initialised, no copy in flight.
    Ready,
    /// A copy started and not yet waited for.
    Busy,
}

/// A driver wrapped in the upstream state machine, holding what it needs to re-initialise.
pub struct CheckedDriver<'r, D: Driver<'r>> {
    function: D::Function,
    clock: D::Clock,
    region: DmaRegion<'r>,
    matched: Match,
    driver: Option<D>,
    busy: bool,
}

impl<'r, D: Driver<'r>> fmt::Debug for CheckedDriver<'r, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedDriver")
            .field("driver", &self.matched.name)
            .field("state", &self.state())
            .field("region_iova", &self.region.iova())
            .finish()
    }
}

impl<'r, D: Driver<'r>> CheckedDriver<'r, D> {
    /// The driver, when initialised (for driver-specific diagnostics).
    pub fn driver(&self) -> Option<&D> {
        self.driver.as_ref()
    }

    /// The current state.
    pub fn state(&self) -> DriverState {
        match (&self.driver, self.busy) {
            (None, _) => DriverState::Uninitialized,
            (Some(_), false) => DriverState::Ready,
            (Some(_), true) => DriverState::Busy,
        }
    }

    fn refuse<T>(&self, op: &'static str) -> Result<T, DriverError> {
        Err(DriverError::OutOfOrder {
            op,
            state: self.state(),
        })
    }
}

impl<'r, D> CheckedDriver<'r, D>
where
    D: Driver<'r>,
    D::Function: Clone,
    D::Clock: Clone,
{
    /// Probe `function` and remember it; the driver is not initialised yet.
    pub fn new(
        function: D::Function,
        clock: D::Clock,
        region: DmaRegion<'r>,
    ) -> Result<Self, DriverError> {
        let Some(matched) = D::probe(&function) else {
            let vendor = function
                .config_read16(crate::pci::VENDOR_ID)
                .unwrap_or(0xffff);
            let device = function
                .config_read16(crate::pci::DEVICE_ID)
                .unwrap_or(0xffff);
            return Err(DriverError::NoMatch { vendor, device });
        };
        if region.len() < matched.region_size {
            return Err(DriverError::RegionTooSmall {
                need: matched.region_size,
                have: region.len(),
            });
        }
        Ok(Self {
            function,
            clock,
            region,
            matched,
            driver: None,
            busy: false,
        })
    }

    /// What probe found.
    pub fn matched(&self) -> Match {
        self.matched
    }

    /// Initialise the device; refused unless uninitialised.
    pub fn init(&mut self) -> Result<Limits, DriverError> {
        if self.driver.is_some() {
            return self.refuse("init");
        }
        let d = D::init(self.function.clone(), self.clock.clone(), self.region)?;
        let limits = d.limits();
        self.driver = Some(d);
        self.busy = false;
        Ok(limits)
    }

    /// Quiesce and release the device; refused unless ready.
    pub fn remove(&mut self) -> Result<(), DriverError> {
        if self.state() != DriverState::Ready {
            return self.refuse("remove");
        }
        match self.driver.take() {
            Some(d) => d.remove(),
            None => self.refuse("remove"),
        }
    }

    /// The limits; refused unless initialised.
    pub fn limits(&self) -> Result<Limits, DriverError> {
        match &self.driver {
            Some(d) => Ok(d.limits()),
            None => self.refuse("limits"),
        }
    }

    /// Start copies that complete by polling ([`WaitMode::Poll`]); refused unless ready, and
    /// beyond the limits.
    pub fn memcpy_start(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
    ) -> Result<(), DriverError> {
        self.memcpy_start_with(src, dst, size, count, WaitMode::Poll)
    }

    /// Start copies that complete as `mode` says; refused unless ready, and beyond the limits.
    pub fn memcpy_start_with(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError> {
        if self.state() != DriverState::Ready {
            return self.refuse("memcpy_start");
        }
        let Some(d) = self.driver.as_mut() else {
            return self.refuse("memcpy_start");
        };
        let limits = d.limits();
        if size > limits.max_memcpy_size || count > limits.max_memcpy_count || count == 0 {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits,
            });
        }
        d.memcpy_start(InOrder::new(), src, dst, size, count, mode)?;
        self.busy = true;
        Ok(())
    }

    /// Wait for the copies in flight; refused unless busy. Afterwards the driver is ready again,
    /// whatever the outcome.
    pub fn memcpy_wait(&mut self, timeout_ns: u64) -> Result<(), DriverError> {
        if self.state() != DriverState::Busy {
            return self.refuse("memcpy_wait");
        }
        let Some(d) = self.driver.as_mut() else {
            return self.refuse("memcpy_wait");
        };
        let r = d.memcpy_wait(InOrder::new(), timeout_ns);
        self.busy = false;
        r
    }

    /// One copy, started and waited for by polling.
    pub fn memcpy(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        timeout_ns: u64,
    ) -> Result<(), DriverError> {
        self.memcpy_with(src, dst, size, timeout_ns, WaitMode::Poll)
    }

    /// One copy, started and waited for as `mode` says.
    pub fn memcpy_with(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        timeout_ns: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError> {
        self.memcpy_start_with(src, dst, size, 1, mode)?;
        self.memcpy_wait(timeout_ns)
    }

    /// Whether the driver has `send_msi` ([`Driver::HAS_SEND_MSI`]).
    pub fn has_send_msi(&self) -> bool {
        D::HAS_SEND_MSI
    }

    /// Fire the driver's MSI once; refused unless ready, and refused with
    /// [`DriverError::Unsupported`] for a driver without `send_msi`.
    pub fn send_msi(&mut self) -> Result<(), DriverError> {
        if !D::HAS_SEND_MSI {
            return Err(DriverError::Unsupported {
                device: self.matched.name,
                reason: "the driver has no send_msi",
            });
        }
        if self.state() != DriverState::Ready {
            return self.refuse("send_msi");
        }
        match self.driver.as_mut() {
            Some(d) => d.send_msi(InOrder::new()),
            None => self.refuse("send_msi"),
        }
    }

    /// The PCI function.
    pub fn function(&self) -> &D::Function {
        &self.function
    }

    /// The driver's DMA region.
    pub fn region(&self) -> DmaRegion<'r> {
        self.region
    }
}

impl<'r, D: Driver<'r>> Drop for CheckedDriver<'r, D> {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            // Best effort on drop; the caller wanting the error calls `remove` itself.
            let _ = d.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::mmio::{DmaMemory, IrqKind, PortalError, RegisterIo};
    use core::cell::{Cell, RefCell};
    use core::ptr::NonNull;
    use std::rc::Rc;
    use std::vec;
    use std::vec::Vec;

    const LIMITS: Limits = Limits {
        max_memcpy_size: 4096,
        max_memcpy_count: 8,
        msi_vector: 3,
    };

    /// What the fake driver was asked to do, and how it should answer.
    #[derive(Default)]
    struct Script {
        calls: RefCell<Vec<&'static str>>,
        fail_init: Cell<bool>,
        fail_start: Cell<bool>,
        fail_wait: Cell<bool>,
        fail_remove: Cell<bool>,
        device_id: Cell<u16>,
        mode: Cell<Option<WaitMode>>,
        /// Interrupts the test double's `irq_wait` has "received" (taken by a wait).
        irqs: Cell<u64>,
        /// The (kind, vector, timeout) of every `irq_wait`.
        irq_waits: RefCell<Vec<(IrqKind, u32, u64)>>,
    }

    #[derive(Clone)]
    struct FakeFunction(Rc<Script>);

    struct NoBar;
    impl RegisterIo for NoBar {
        fn len(&self) -> usize {
            0
        }
        fn read8(&self, _: usize) -> u8 {
            u8::MAX
        }
        fn read16(&self, _: usize) -> u16 {
            u16::MAX
        }
        fn read32(&self, _: usize) -> u32 {
            u32::MAX
        }
        fn read64(&self, _: usize) -> u64 {
            u64::MAX
        }
        fn write8(&self, _: usize, _: u8) {}
        fn write16(&self, _: usize, _: u16) {}
        fn write32(&self, _: usize, _: u32) {}
        fn write64(&self, _: usize, _: u64) {}
        fn submit64(&self, _: usize, _: &[u8; 64]) -> Result<(), PortalError> {
            Err(PortalError::Unsupported)
        }
    }

    impl PciFunction for FakeFunction {
        type Bar = NoBar;
        fn bar(&self, index: u8) -> Result<NoBar, FunctionError> {
            Err(FunctionError::NoSuchBar(index))
        }
        fn config_read8(&self, _: u16) -> Result<u8, FunctionError> {
            Ok(0)
        }
        fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
            match offset {
                crate::pci::VENDOR_ID => Ok(0xabcd),
                crate::pci::DEVICE_ID => Ok(self.0.device_id.get()),
                _ => Ok(0),
            }
        }
        fn config_read32(&self, _: u16) -> Result<u32, FunctionError> {
            Ok(0)
        }
        fn config_write8(&self, _: u16, _: u8) -> Result<(), FunctionError> {
            Ok(())
        }
        fn config_write16(&self, _: u16, _: u16) -> Result<(), FunctionError> {
            Ok(())
        }
        fn config_write32(&self, _: u16, _: u32) -> Result<(), FunctionError> {
            Ok(())
        }
        fn irq_enable(&self, _: IrqKind, _: u32, _: u32) -> Result<(), FunctionError> {
            Ok(())
        }
        fn irq_disable(&self, _: IrqKind) -> Result<(), FunctionError> {
            Ok(())
        }
        fn reset(&self) -> Result<(), FunctionError> {
            Ok(())
        }
        /// The test double of the interrupt hook: takes the counted interrupts, none = timeout.
        fn irq_wait(
            &self,
            kind: IrqKind,
            vector: u32,
            timeout_ns: u64,
        ) -> Result<u64, FunctionError> {
            self.0
                .irq_waits
                .borrow_mut()
                .push((kind, vector, timeout_ns));
            if vector != 3 {
                return Err(FunctionError::NoSuchVector { kind, vector });
            }
            Ok(self.0.irqs.replace(0))
        }
    }

    #[derive(Clone)]
    struct FakeClock;
    impl Clock for FakeClock {
        fn now_ns(&self) -> u64 {
            0
        }
    }

    const FAKE_FAULT: DriverError = DriverError::Device(DeviceError::Register {
        device: "fake",
        register: "STATUS",
        value: 0xbad,
    });

    struct FakeDriver(FakeFunction);

    impl FakeDriver {
        fn call(&self, name: &'static str, fail: &Cell<bool>) -> Result<(), DriverError> {
            self.0 .0.calls.borrow_mut().push(name);
            if fail.get() {
                Err(FAKE_FAULT)
            } else {
                Ok(())
            }
        }
    }

    impl<'r> Driver<'r> for FakeDriver {
        type Function = FakeFunction;
        type Clock = FakeClock;

        fn probe(function: &FakeFunction) -> Option<Match> {
            (function.0.device_id.get() == 0x1234).then_some(Match {
                name: "fake",
                vendor: 0xabcd,
                device: 0x1234,
                region_size: 64,
            })
        }
        fn init(
            function: FakeFunction,
            _: FakeClock,
            _: DmaRegion<'r>,
        ) -> Result<Self, DriverError> {
            let d = FakeDriver(function);
            d.call("init", &d.0 .0.fail_init)?;
            Ok(d)
        }
        fn remove(self) -> Result<(), DriverError> {
            self.call("remove", &self.0 .0.fail_remove)
        }
        fn limits(&self) -> Limits {
            LIMITS
        }
        fn memcpy_start(
            &mut self,
            _: InOrder,
            _: u64,
            _: u64,
            _: u64,
            _: u64,
            mode: WaitMode,
        ) -> Result<(), DriverError> {
            self.0 .0.mode.set(Some(mode));
            self.call("memcpy_start", &self.0 .0.fail_start)
        }
        fn memcpy_wait(&mut self, _: InOrder, timeout_ns: u64) -> Result<(), DriverError> {
            self.call("memcpy_wait", &self.0 .0.fail_wait)?;
            if self.0 .0.mode.take() == Some(WaitMode::Interrupt) {
                // What a real driver does: sleep on the completion interrupt.
                wait_interrupt(&self.0, "fake", IrqKind::MsiX, 3, timeout_ns, || true)?;
            }
            Ok(())
        }
        fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
            self.call("send_msi", &Cell::new(false))
        }
    }

    struct Harness {
        script: Rc<Script>,
        memory: DmaMemory,
        _buf: Vec<u64>,
    }

    impl Harness {
        fn new() -> Self {
            let script = Rc::new(Script::default());
            script.device_id.set(0x1234);
            let mut buf = vec![0u64; 16];
            let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
            // SAFETY: `buf` lives in the harness as long as `memory` (the field after it drops
            // later), and nothing references it.
            let memory = unsafe { DmaMemory::new(0x1000, ptr, 128) };
            Self {
                script,
                memory,
                _buf: buf,
            }
        }
        fn region(&self) -> DmaRegion<'_> {
            self.memory.region()
        }
        fn checked(&self) -> CheckedDriver<'_, FakeDriver> {
            CheckedDriver::new(
                FakeFunction(Rc::clone(&self.script)),
                FakeClock,
                self.region(),
            )
            .unwrap()
        }
        fn calls(&self) -> Vec<&'static str> {
            self.script.calls.borrow().clone()
        }
    }

    fn out_of_order(op: &'static str, state: DriverState) -> DriverError {
        DriverError::OutOfOrder { op, state }
    }

    #[test]
    fn new_refuses_unknown_devices_and_small_regions() {
        let h = Harness::new();
        h.script.device_id.set(0x5678);
        let e = CheckedDriver::<FakeDriver>::new(
            FakeFunction(Rc::clone(&h.script)),
            FakeClock,
            h.region(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            DriverError::NoMatch {
                vendor: 0xabcd,
                device: 0x5678
            }
        );
        h.script.device_id.set(0x1234);
        let small = h.region().subregion(0, 32).unwrap();
        let e =
            CheckedDriver::<FakeDriver>::new(FakeFunction(Rc::clone(&h.script)), FakeClock, small)
                .unwrap_err();
        assert_eq!(e, DriverError::RegionTooSmall { need: 64, have: 32 });
        assert!(h.calls().is_empty(), "new only probes");
    }

    #[test]
    fn everything_but_init_is_refused_before_init() {
        let h = Harness::new();
        let mut d = h.checked();
        let u = DriverState::Uninitialized;
        assert_eq!(d.state(), u);
        assert_eq!(d.remove(), Err(out_of_order("remove", u)));
        assert_eq!(d.limits(), Err(out_of_order("limits", u)));
        assert_eq!(
            d.memcpy_start(0, 0, 1, 1),
            Err(out_of_order("memcpy_start", u))
        );
        assert_eq!(d.memcpy_wait(1), Err(out_of_order("memcpy_wait", u)));
        assert_eq!(d.memcpy(0, 0, 1, 1), Err(out_of_order("memcpy_start", u)));
        assert_eq!(d.send_msi(), Err(out_of_order("send_msi", u)));
        assert!(h.calls().is_empty(), "no refused call reached the driver");
    }

    #[test]
    fn ready_refuses_init_and_wait() {
        let h = Harness::new();
        let mut d = h.checked();
        assert_eq!(d.init(), Ok(LIMITS));
        let r = DriverState::Ready;
        assert_eq!(d.state(), r);
        assert_eq!(d.init(), Err(out_of_order("init", r)));
        assert_eq!(d.memcpy_wait(1), Err(out_of_order("memcpy_wait", r)));
        assert_eq!(d.limits(), Ok(LIMITS));
        d.send_msi().unwrap();
        assert_eq!(h.calls(), ["init", "send_msi"]);
    }

    #[test]
    fn busy_refuses_everything_but_wait() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        d.memcpy_start(0x10, 0x20, 64, 2).unwrap();
        let b = DriverState::Busy;
        assert_eq!(d.state(), b);
        assert_eq!(d.init(), Err(out_of_order("init", b)));
        assert_eq!(d.remove(), Err(out_of_order("remove", b)));
        assert_eq!(
            d.memcpy_start(0, 0, 1, 1),
            Err(out_of_order("memcpy_start", b))
        );
        assert_eq!(d.memcpy(0, 0, 1, 1), Err(out_of_order("memcpy_start", b)));
        assert_eq!(d.send_msi(), Err(out_of_order("send_msi", b)));
        // limits() is a query, not an operation on the device: allowed while busy.
        assert_eq!(d.limits(), Ok(LIMITS));
        d.memcpy_wait(1).unwrap();
        assert_eq!(d.state(), DriverState::Ready);
        assert_eq!(h.calls(), ["init", "memcpy_start", "memcpy_wait"]);
    }

    #[test]
    fn limits_are_enforced_before_the_driver_sees_the_call() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        for (size, count) in [(4097, 1), (64, 9), (64, 0), (u64::MAX, u64::MAX)] {
            assert_eq!(
                d.memcpy_start(0, 0, size, count),
                Err(DriverError::BeyondLimits {
                    size,
                    count,
                    limits: LIMITS
                })
            );
            assert_eq!(d.state(), DriverState::Ready);
        }
        assert_eq!(h.calls(), ["init"]);
        d.memcpy_start(0, 0, 4096, 8).unwrap();
        d.memcpy_wait(1).unwrap();
    }

    #[test]
    fn wait_error_returns_to_ready() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        h.script.fail_wait.set(true);
        assert_eq!(d.memcpy(1, 2, 3, 4), Err(FAKE_FAULT));
        assert_eq!(d.state(), DriverState::Ready);
        h.script.fail_wait.set(false);
        d.memcpy(1, 2, 3, 4).unwrap();
        d.send_msi().unwrap();
    }

    #[test]
    fn failed_start_stays_ready_and_failed_init_stays_uninitialized() {
        let h = Harness::new();
        let mut d = h.checked();
        h.script.fail_init.set(true);
        assert_eq!(d.init(), Err(FAKE_FAULT));
        assert_eq!(d.state(), DriverState::Uninitialized);
        h.script.fail_init.set(false);
        d.init().unwrap();
        h.script.fail_start.set(true);
        assert_eq!(d.memcpy_start(0, 0, 8, 1), Err(FAKE_FAULT));
        assert_eq!(d.state(), DriverState::Ready);
        assert_eq!(
            d.memcpy_wait(1),
            Err(out_of_order("memcpy_wait", DriverState::Ready))
        );
    }

    #[test]
    fn failed_remove_still_releases_the_driver() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        h.script.fail_remove.set(true);
        assert_eq!(d.remove(), Err(FAKE_FAULT));
        assert_eq!(d.state(), DriverState::Uninitialized);
        h.script.fail_remove.set(false);
        d.init().unwrap();
        d.remove().unwrap();
        assert_eq!(h.calls(), ["init", "remove", "init", "remove"]);
    }

    /// A driver without `send_msi` (like upstream's nv_falcon).
    struct NoMsiDriver(FakeDriver);

    impl<'r> Driver<'r> for NoMsiDriver {
        type Function = FakeFunction;
        type Clock = FakeClock;
        const HAS_SEND_MSI: bool = false;

        fn probe(function: &FakeFunction) -> Option<Match> {
            <FakeDriver as Driver<'r>>::probe(function)
        }
        fn init(f: FakeFunction, c: FakeClock, r: DmaRegion<'r>) -> Result<Self, DriverError> {
            FakeDriver::init(f, c, r).map(NoMsiDriver)
        }
        fn remove(self) -> Result<(), DriverError> {
            self.0.remove()
        }
        fn limits(&self) -> Limits {
            self.0.limits()
        }
        fn memcpy_start(
            &mut self,
            token: InOrder,
            s: u64,
            d: u64,
            n: u64,
            c: u64,
            mode: WaitMode,
        ) -> Result<(), DriverError> {
            self.0.memcpy_start(token, s, d, n, c, mode)
        }
        fn memcpy_wait(&mut self, token: InOrder, t: u64) -> Result<(), DriverError> {
            self.0.memcpy_wait(token, t)
        }
        fn send_msi(&mut self, token: InOrder) -> Result<(), DriverError> {
            self.0.send_msi(token)
        }
    }

    #[test]
    fn send_msi_of_a_driver_without_it_is_refused_and_never_called() {
        let h = Harness::new();
        let mut d: CheckedDriver<NoMsiDriver> =
            CheckedDriver::new(FakeFunction(Rc::clone(&h.script)), FakeClock, h.region()).unwrap();
        assert!(!d.has_send_msi());
        assert!(h.checked().has_send_msi());
        d.init().unwrap();
        assert!(matches!(
            d.send_msi(),
            Err(DriverError::Unsupported { device: "fake", .. })
        ));
        assert_eq!(h.calls(), vec!["init"]);
    }

    #[test]
    fn drop_removes_an_initialised_driver_only() {
        let h = Harness::new();
        drop(h.checked());
        assert!(h.calls().is_empty(), "never initialised: nothing to remove");
        let mut d = h.checked();
        d.init().unwrap();
        drop(d);
        assert_eq!(h.calls(), ["init", "remove"]);
        let mut d = h.checked();
        d.init().unwrap();
        d.memcpy_start(0, 0, 8, 1).unwrap();
        drop(d);
        assert_eq!(
            h.calls(),
            ["init", "remove", "init", "memcpy_start", "remove"],
            "a busy driver is removed on drop too"
        );
        let mut d = h.checked();
        d.init().unwrap();
        d.remove().unwrap();
        drop(d);
        assert_eq!(h.calls().iter().filter(|c| **c == "remove").count(), 3);
    }

    #[test]
    fn interrupt_mode_sleeps_in_the_function_hook() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        h.script.irqs.set(1);
        d.memcpy_with(0x10, 0x20, 64, 777, WaitMode::Interrupt)
            .unwrap();
        assert_eq!(h.script.irqs.get(), 0, "the wait took the interrupt");
        assert_eq!(
            *h.script.irq_waits.borrow(),
            [(IrqKind::MsiX, 3, 777)],
            "one wait, on the driver's vector, with the caller's timeout"
        );
        // Poll mode never touches the hook.
        d.memcpy(0x10, 0x20, 64, 1).unwrap();
        assert_eq!(h.script.irq_waits.borrow().len(), 1);
        assert_eq!(d.state(), DriverState::Ready);
    }

    #[test]
    fn interrupt_mode_times_out_with_a_clear_error() {
        let h = Harness::new();
        let mut d = h.checked();
        d.init().unwrap();
        let e = d
            .memcpy_with(0x10, 0x20, 64, 5_000, WaitMode::Interrupt)
            .unwrap_err();
        assert_eq!(
            e,
            DriverError::InterruptTimeout {
                device: "fake",
                kind: IrqKind::MsiX,
                vector: 3,
                waited_ns: 5_000,
                completed: true,
            }
        );
        let msg = std::format!("{e}");
        assert!(
            msg.contains("MSI-X vector 3") && msg.contains("lost"),
            "message names the vector and the diagnosis: {msg}"
        );
        assert_eq!(
            d.state(),
            DriverState::Ready,
            "a timed-out wait still ends the copy"
        );
        h.script.irqs.set(2);
        d.memcpy_with(0x10, 0x20, 64, 5_000, WaitMode::Interrupt)
            .unwrap();
    }

    #[test]
    fn irq_wait_defaults_to_unsupported_and_errors_are_std_errors() {
        let h = Harness::new();
        let f = NoIrqFunction(FakeFunction(Rc::clone(&h.script)));
        assert_eq!(
            f.irq_wait(IrqKind::Msi, 0, 1),
            Err(FunctionError::Unsupported("waiting for an interrupt"))
        );
        let e = wait_interrupt(&f, "fake", IrqKind::Msi, 0, 1, || false).unwrap_err();
        assert_eq!(
            e,
            DriverError::Function(FunctionError::Unsupported("waiting for an interrupt"))
        );
        let err: &dyn core::error::Error = &e;
        let source = err.source().expect("a wrapped error has a source");
        assert_eq!(
            std::format!("{source}"),
            "waiting for an interrupt is not supported by this backend"
        );
        let plain: &dyn core::error::Error = &FAKE_FAULT;
        assert!(
            plain.source().is_some(),
            "Device(..) exposes the device error"
        );
        let timeout: &dyn core::error::Error = &out_of_order("x", DriverState::Ready);
        assert!(timeout.source().is_none());
    }

    /// A function without the interrupt hook: every method but `irq_wait` forwarded.
    struct NoIrqFunction(FakeFunction);

    impl PciFunction for NoIrqFunction {
        type Bar = NoBar;
        fn bar(&self, index: u8) -> Result<NoBar, FunctionError> {
            self.0.bar(index)
        }
        fn config_read8(&self, o: u16) -> Result<u8, FunctionError> {
            self.0.config_read8(o)
        }
        fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
            self.0.config_read16(o)
        }
        fn config_read32(&self, o: u16) -> Result<u32, FunctionError> {
            self.0.config_read32(o)
        }
        fn config_write8(&self, o: u16, v: u8) -> Result<(), FunctionError> {
            self.0.config_write8(o, v)
        }
        fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
            self.0.config_write16(o, v)
        }
        fn config_write32(&self, o: u16, v: u32) -> Result<(), FunctionError> {
            self.0.config_write32(o, v)
        }
        fn irq_enable(&self, k: IrqKind, f: u32, c: u32) -> Result<(), FunctionError> {
            self.0.irq_enable(k, f, c)
        }
        fn irq_disable(&self, k: IrqKind) -> Result<(), FunctionError> {
            self.0.irq_disable(k)
        }
        fn reset(&self) -> Result<(), FunctionError> {
            self.0.reset()
        }
    }
}
