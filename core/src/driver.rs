//! The driver contract and its checked state machine.
//!
//! Every driver (`dsa`, `ioat`, `edu`, `igb` in `passthru-drivers`) implements [`Driver`]. Test
//! programs use it through [`CheckedDriver`], which enforces the order upstream's
//! `vfio_pci_driver_*` wrappers assert — `init` only when not initialised, every other call only
//! when initialised, `memcpy_wait` only while a copy is in flight, everything else only when none
//! is — and returns [`DriverError::OutOfOrder`] instead of aborting.

use core::fmt;

use crate::mmio::{Clock, DmaError, DmaRegion, FunctionError, PciFunction, PortalError};

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
            Self::Device(e) => e.fmt(f),
            Self::Function(e) => e.fmt(f),
            Self::Portal(e) => e.fmt(f),
            Self::Dma(e) => e.fmt(f),
        }
    }
}

/// A device driver, generic over the seam: it runs unchanged on VFIO, in a KVM guest, on a model.
pub trait Driver: Sized {
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
        region: DmaRegion,
    ) -> Result<Self, DriverError>;

    /// Quiesce the device and release it (after this no DMA and no interrupt happens).
    fn remove(self) -> Result<(), DriverError>;

    /// The limits of this device as initialised.
    fn limits(&self) -> Limits;

    /// Start `count` copies of `[src, src+size)` to `[dst, dst+size)` (IOVAs). Returns at once and
    /// raises no interrupt.
    fn memcpy_start(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
    ) -> Result<(), DriverError>;

    /// Wait until the copies started by [`Driver::memcpy_start`] finish, at most `timeout_ns`.
    /// Device faults come back decoded; after an error the driver is ready for the next copy.
    fn memcpy_wait(&mut self, timeout_ns: u64) -> Result<(), DriverError>;

    /// Make the device raise interrupt [`Limits::msi_vector`] exactly once.
    fn send_msi(&mut self) -> Result<(), DriverError>;
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
pub struct CheckedDriver<D: Driver> {
    function: D::Function,
    clock: D::Clock,
    region: DmaRegion,
    matched: Match,
    driver: Option<D>,
    busy: bool,
}

impl<D: Driver> fmt::Debug for CheckedDriver<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedDriver")
            .field("driver", &self.matched.name)
            .field("state", &self.state())
            .field("region_iova", &self.region.iova())
            .finish()
    }
}

impl<D: Driver> CheckedDriver<D> {
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

impl<D> CheckedDriver<D>
where
    D: Driver,
    D::Function: Clone,
    D::Clock: Clone,
{
    /// Probe `function` and remember it; the driver is not initialised yet.
    pub fn new(
        function: D::Function,
        clock: D::Clock,
        region: DmaRegion,
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

    /// Start copies; refused unless ready, and beyond the limits.
    pub fn memcpy_start(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
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
        d.memcpy_start(src, dst, size, count)?;
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
        let r = d.memcpy_wait(timeout_ns);
        self.busy = false;
        r
    }

    /// One copy, started and waited for.
    pub fn memcpy(
        &mut self,
        src: u64,
        dst: u64,
        size: u64,
        timeout_ns: u64,
    ) -> Result<(), DriverError> {
        self.memcpy_start(src, dst, size, 1)?;
        self.memcpy_wait(timeout_ns)
    }

    /// Fire the driver's MSI once; refused unless ready.
    pub fn send_msi(&mut self) -> Result<(), DriverError> {
        if self.state() != DriverState::Ready {
            return self.refuse("send_msi");
        }
        match self.driver.as_mut() {
            Some(d) => d.send_msi(),
            None => self.refuse("send_msi"),
        }
    }

    /// The PCI function.
    pub fn function(&self) -> &D::Function {
        &self.function
    }

    /// The driver's DMA region.
    pub fn region(&self) -> DmaRegion {
        self.region
    }
}

impl<D: Driver> Drop for CheckedDriver<D> {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            // Best effort on drop; the caller wanting the error calls `remove` itself.
            let _ = d.remove();
        }
    }
}
