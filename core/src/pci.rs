//! PCI configuration space: offsets, COMMAND/STATUS bits, the capability walk, device ids.
//!
//! The walk works over any [`ConfigAccess`]: every [`PciFunction`] is one (a blanket impl), and
//! [`ConfigBytes`] wraps a recorded or modelled configuration space held in a byte slice.
//!
//! Configuration space is untrusted input (a device, a VMM or a fuzzer chooses it), so the walks
//! never panic, never read outside the space, and always terminate: a pointer into the header, a
//! repeated offset (a cycle) or more entries than can fit each end the walk with a typed
//! [`CapabilityError`].

use core::fmt;

use bitflags::bitflags;

use crate::mmio::{FunctionError, PciFunction};

// ---------------------------------------------------------------------------------------------
// Type 0 header offsets
// ---------------------------------------------------------------------------------------------

/// Offset of the 16-bit vendor id.
pub const VENDOR_ID: u16 = 0x00;
/// Offset of the 16-bit device id.
pub const DEVICE_ID: u16 = 0x02;
/// Offset of the 16-bit COMMAND register ([`Command`]).
pub const COMMAND: u16 = 0x04;
/// Offset of the 16-bit STATUS register ([`Status`]).
pub const STATUS: u16 = 0x06;
/// Offset of the 8-bit revision id.
pub const REVISION_ID: u16 = 0x08;
/// Offset of the 8-bit programming interface (low byte of the class code).
pub const CLASS_PROG_IF: u16 = 0x09;
/// Offset of the 8-bit sub-class.
pub const CLASS_SUB: u16 = 0x0a;
/// Offset of the 8-bit base class.
pub const CLASS_BASE: u16 = 0x0b;
/// Offset of the 8-bit cache line size.
pub const CACHE_LINE_SIZE: u16 = 0x0c;
/// Offset of the 8-bit latency timer.
pub const LATENCY_TIMER: u16 = 0x0d;
/// Offset of the 8-bit header type (bit 7: multi-function).
pub const HEADER_TYPE: u16 = 0x0e;
/// Offset of the 8-bit BIST register.
pub const BIST: u16 = 0x0f;
/// Offset of BAR0; BAR `n` is at `BAR0 + 4 * n` (type 0 header, n = 0..=5).
pub const BAR0: u16 = 0x10;
/// Number of BARs in a type 0 header.
pub const BAR_COUNT: u8 = 6;
/// Offset of the CardBus CIS pointer.
pub const CARDBUS_CIS: u16 = 0x28;
/// Offset of the 16-bit subsystem vendor id.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
/// Offset of the 16-bit subsystem id.
pub const SUBSYSTEM_ID: u16 = 0x2e;
/// Offset of the expansion ROM base address.
pub const ROM_ADDRESS: u16 = 0x30;
/// Offset of the 8-bit capabilities pointer (valid when [`Status::CAPABILITIES_LIST`] is set).
pub const CAPABILITIES_POINTER: u16 = 0x34;
/// Offset of the 8-bit interrupt line.
pub const INTERRUPT_LINE: u16 = 0x3c;
/// Offset of the 8-bit interrupt pin (0 none, 1 INTA# .. 4 INTD#).
pub const INTERRUPT_PIN: u16 = 0x3d;
/// Offset of the 8-bit MIN_GNT.
pub const MIN_GNT: u16 = 0x3e;
/// Offset of the 8-bit MAX_LAT.
pub const MAX_LAT: u16 = 0x3f;

/// Size of the type 0 header; standard capabilities live in `HEADER_SIZE..CONFIG_SPACE_SIZE`.
pub const HEADER_SIZE: u16 = 0x40;
/// Size of conventional PCI configuration space.
pub const CONFIG_SPACE_SIZE: u16 = 0x100;
/// Size of PCI Express extended configuration space.
pub const EXT_CONFIG_SPACE_SIZE: u16 = 0x1000;

/// Header type field (bits 6:0 of [`HEADER_TYPE`]) of an endpoint.
pub const HEADER_TYPE_NORMAL: u8 = 0x00;
/// Header type field of a PCI-to-PCI bridge.
pub const HEADER_TYPE_BRIDGE: u8 = 0x01;
/// Header type field of a CardBus bridge.
pub const HEADER_TYPE_CARDBUS: u8 = 0x02;
/// Multi-function bit of [`HEADER_TYPE`].
pub const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;

/// Offset of BAR `index` (0..=5) in a type 0 header, or `None` beyond BAR5.
pub const fn bar_offset(index: u8) -> Option<u16> {
    if index < BAR_COUNT {
        Some(BAR0 + 4 * index as u16)
    } else {
        None
    }
}

bitflags! {
    /// The COMMAND register (offset [`COMMAND`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Command: u16 {
        /// Respond to I/O space accesses.
        const IO_SPACE = 1 << 0;
        /// Respond to memory space accesses.
        const MEMORY_SPACE = 1 << 1;
        /// Bus master enable: the function may issue DMA (and MSI writes).
        const BUS_MASTER = 1 << 2;
        /// Special cycles (conventional PCI).
        const SPECIAL_CYCLES = 1 << 3;
        /// Memory write and invalidate enable.
        const MEMORY_WRITE_INVALIDATE = 1 << 4;
        /// VGA palette snoop.
        const VGA_PALETTE_SNOOP = 1 << 5;
        /// Parity error response.
        const PARITY_ERROR_RESPONSE = 1 << 6;
        /// IDSEL stepping / wait cycle control (hardwired 0 on PCIe).
        const WAIT_CYCLE = 1 << 7;
        /// SERR# enable.
        const SERR = 1 << 8;
        /// Fast back-to-back enable.
        const FAST_BACK_TO_BACK = 1 << 9;
        /// INTx emulation disable.
        const INTX_DISABLE = 1 << 10;
    }
}

bitflags! {
    /// The STATUS register (offset [`STATUS`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Status: u16 {
        /// Immediate readiness.
        const IMMEDIATE_READINESS = 1 << 0;
        /// INTx is asserted.
        const INTERRUPT = 1 << 3;
        /// The capabilities list at [`CAPABILITIES_POINTER`] is valid.
        const CAPABILITIES_LIST = 1 << 4;
        /// 66 MHz capable (conventional PCI).
        const MHZ_66 = 1 << 5;
        /// Fast back-to-back capable.
        const FAST_BACK_TO_BACK = 1 << 7;
        /// Master data parity error.
        const MASTER_DATA_PARITY_ERROR = 1 << 8;
        /// DEVSEL timing, low bit (bits 10:9).
        const DEVSEL_LOW = 1 << 9;
        /// DEVSEL timing, high bit.
        const DEVSEL_HIGH = 1 << 10;
        /// Signaled target abort.
        const SIGNALED_TARGET_ABORT = 1 << 11;
        /// Received target abort.
        const RECEIVED_TARGET_ABORT = 1 << 12;
        /// Received master abort.
        const RECEIVED_MASTER_ABORT = 1 << 13;
        /// Signaled system error.
        const SIGNALED_SYSTEM_ERROR = 1 << 14;
        /// Detected parity error.
        const DETECTED_PARITY_ERROR = 1 << 15;
    }
}

/// The 24-bit class code (offsets 0x09..=0x0b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassCode {
    /// Base class (0x02 network, 0x08 system peripheral, 0xff unassigned/other, ...).
    pub base: u8,
    /// Sub-class.
    pub sub: u8,
    /// Programming interface.
    pub prog_if: u8,
}

impl ClassCode {
    /// Split the dword at offset 0x08 (class code in bits 31:8, revision in bits 7:0).
    pub const fn from_class_revision(dword: u32) -> (Self, u8) {
        (
            Self {
                base: (dword >> 24) as u8,
                sub: (dword >> 16) as u8,
                prog_if: (dword >> 8) as u8,
            },
            dword as u8,
        )
    }

    /// The class code as the 24-bit number `base << 16 | sub << 8 | prog_if`.
    pub const fn as_u32(self) -> u32 {
        (self.base as u32) << 16 | (self.sub as u32) << 8 | self.prog_if as u32
    }
}

/// What the low dword of a BAR says about it (the address bits come from the same dword, and for
/// 64-bit BARs from the next one as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BarKind {
    /// An I/O-space BAR.
    Io,
    /// A 32-bit memory BAR.
    Memory32 {
        /// Prefetchable.
        prefetchable: bool,
    },
    /// A 64-bit memory BAR; it uses the next BAR slot for the upper address bits.
    Memory64 {
        /// Prefetchable.
        prefetchable: bool,
    },
    /// A memory BAR with the reserved type 0b11 (or the legacy below-1 MiB type 0b01).
    Reserved(u8),
}

impl BarKind {
    /// Decode the low dword of a BAR.
    pub const fn decode(low: u32) -> Self {
        if low & 1 != 0 {
            return Self::Io;
        }
        let prefetchable = low & (1 << 3) != 0;
        match (low >> 1) & 0b11 {
            0b00 => Self::Memory32 { prefetchable },
            0b10 => Self::Memory64 { prefetchable },
            t => Self::Reserved(t as u8),
        }
    }

    /// The address bits of a BAR's low dword (flags masked off).
    pub const fn address_bits(low: u32) -> u32 {
        if low & 1 != 0 {
            low & !0b11
        } else {
            low & !0b1111
        }
    }
}

/// A BAR as read from configuration space (no size: sizing needs writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarInfo {
    /// What kind of BAR.
    pub kind: BarKind,
    /// The address it holds (both dwords for a 64-bit BAR).
    pub address: u64,
}

/// Read BAR `index` of a type 0 header; a 64-bit BAR also reads the next slot. `Ok(None)` for
/// an index beyond BAR5, or a 64-bit BAR in BAR5 (no room for its upper half).
pub fn read_bar<A: ConfigAccess + ?Sized>(
    access: &A,
    index: u8,
) -> Result<Option<BarInfo>, FunctionError> {
    let Some(off) = bar_offset(index) else {
        return Ok(None);
    };
    let low = access.read32(off)?;
    let kind = BarKind::decode(low);
    let mut address = u64::from(BarKind::address_bits(low));
    if let BarKind::Memory64 { .. } = kind {
        let Some(high_off) = bar_offset(index + 1) else {
            return Ok(None);
        };
        address |= u64::from(access.read32(high_off)?) << 32;
    }
    Ok(Some(BarInfo { kind, address }))
}

// ---------------------------------------------------------------------------------------------
// Capability ids
// ---------------------------------------------------------------------------------------------

/// Standard capability ids (byte 0 of a capability in `0x40..0x100`).
pub mod cap_id {
    /// Power management.
    pub const POWER_MANAGEMENT: u8 = 0x01;
    /// AGP.
    pub const AGP: u8 = 0x02;
    /// Vital product data.
    pub const VPD: u8 = 0x03;
    /// Slot identification.
    pub const SLOT_ID: u8 = 0x04;
    /// Message signalled interrupts.
    pub const MSI: u8 = 0x05;
    /// CompactPCI hot swap.
    pub const CHSWP: u8 = 0x06;
    /// PCI-X.
    pub const PCIX: u8 = 0x07;
    /// HyperTransport.
    pub const HYPERTRANSPORT: u8 = 0x08;
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: u8 = 0x09;
    /// Debug port.
    pub const DEBUG_PORT: u8 = 0x0a;
    /// CompactPCI central resource control.
    pub const CCRC: u8 = 0x0b;
    /// PCI hot-plug.
    pub const HOTPLUG: u8 = 0x0c;
    /// Bridge subsystem vendor/device id.
    pub const BRIDGE_SUBSYSTEM: u8 = 0x0d;
    /// AGP 8x.
    pub const AGP3: u8 = 0x0e;
    /// Secure device.
    pub const SECURE: u8 = 0x0f;
    /// PCI Express.
    pub const PCI_EXPRESS: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
    /// SATA data/index configuration.
    pub const SATA: u8 = 0x12;
    /// Advanced features (conventional-PCI FLR).
    pub const ADVANCED_FEATURES: u8 = 0x13;
    /// Enhanced allocation.
    pub const ENHANCED_ALLOCATION: u8 = 0x14;
    /// Flattening portal bridge.
    pub const FPB: u8 = 0x15;
}

/// Extended capability ids (bits 15:0 of an extended capability header, at `0x100..0x1000`).
pub mod ext_cap_id {
    /// Advanced error reporting.
    pub const AER: u16 = 0x0001;
    /// Virtual channel.
    pub const VIRTUAL_CHANNEL: u16 = 0x0002;
    /// Device serial number.
    pub const DEVICE_SERIAL_NUMBER: u16 = 0x0003;
    /// Power budgeting.
    pub const POWER_BUDGETING: u16 = 0x0004;
    /// Root complex link declaration.
    pub const RC_LINK_DECLARATION: u16 = 0x0005;
    /// Vendor-specific extended capability.
    pub const VENDOR_SPECIFIC: u16 = 0x000b;
    /// Access control services.
    pub const ACS: u16 = 0x000d;
    /// Alternative routing-id interpretation.
    pub const ARI: u16 = 0x000e;
    /// Address translation services.
    pub const ATS: u16 = 0x000f;
    /// Single root I/O virtualisation.
    pub const SRIOV: u16 = 0x0010;
    /// Multicast.
    pub const MULTICAST: u16 = 0x0012;
    /// Page request interface.
    pub const PRI: u16 = 0x0013;
    /// Resizable BAR.
    pub const RESIZABLE_BAR: u16 = 0x0015;
    /// Latency tolerance reporting.
    pub const LTR: u16 = 0x0018;
    /// Secondary PCI Express.
    pub const SECONDARY_PCIE: u16 = 0x0019;
    /// Process address space id.
    pub const PASID: u16 = 0x001b;
    /// L1 PM substates.
    pub const L1_PM_SUBSTATES: u16 = 0x001e;
    /// Designated vendor-specific extended capability.
    pub const DVSEC: u16 = 0x0023;
    /// Data link feature.
    pub const DATA_LINK_FEATURE: u16 = 0x0025;
    /// Physical layer 16.0 GT/s.
    pub const PHYSICAL_LAYER_16GT: u16 = 0x0026;
}

// ---------------------------------------------------------------------------------------------
// Config access
// ---------------------------------------------------------------------------------------------

/// Read access to a configuration space, for the walks and decoders in this module.
///
/// Every [`PciFunction`] is one; [`ConfigBytes`] makes one out of a byte slice.
pub trait ConfigAccess {
    /// Read 8 bits at `offset`.
    fn read8(&self, offset: u16) -> Result<u8, FunctionError>;
    /// Read 16 bits (little endian) at `offset`.
    fn read16(&self, offset: u16) -> Result<u16, FunctionError>;
    /// Read 32 bits (little endian) at `offset`.
    fn read32(&self, offset: u16) -> Result<u32, FunctionError>;
}

impl<F: PciFunction> ConfigAccess for F {
    fn read8(&self, offset: u16) -> Result<u8, FunctionError> {
        self.config_read8(offset)
    }
    fn read16(&self, offset: u16) -> Result<u16, FunctionError> {
        self.config_read16(offset)
    }
    fn read32(&self, offset: u16) -> Result<u32, FunctionError> {
        self.config_read32(offset)
    }
}

/// A configuration space held in memory (a recorded dump, a model's register file), read
/// little endian. Reads past the end fail with [`FunctionError::ConfigOutOfRange`].
#[derive(Debug, Clone, Copy)]
pub struct ConfigBytes<'a>(pub &'a [u8]);

impl ConfigBytes<'_> {
    fn bytes<const N: usize>(&self, offset: u16) -> Result<[u8; N], FunctionError> {
        let start = offset as usize;
        self.0
            .get(start..start + N)
            .and_then(|s| s.try_into().ok())
            .ok_or(FunctionError::ConfigOutOfRange { offset })
    }
}

impl ConfigAccess for ConfigBytes<'_> {
    fn read8(&self, offset: u16) -> Result<u8, FunctionError> {
        Ok(u8::from_le_bytes(self.bytes::<1>(offset)?))
    }
    fn read16(&self, offset: u16) -> Result<u16, FunctionError> {
        Ok(u16::from_le_bytes(self.bytes::<2>(offset)?))
    }
    fn read32(&self, offset: u16) -> Result<u32, FunctionError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(offset)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Capability walks
// ---------------------------------------------------------------------------------------------

/// Why a capability walk or decode failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CapabilityError {
    /// Reading configuration space failed.
    Config(FunctionError),
    /// A next pointer points into the header (below 0x40, or below 0x100 for extended
    /// capabilities) or beyond the configuration space.
    BadPointer {
        /// Offset of the capability holding the pointer (0x34 for the list head).
        from: u16,
        /// The pointer value.
        to: u16,
    },
    /// The list visits `offset` a second time: a cycle.
    Loop {
        /// The offset seen twice.
        offset: u16,
    },
    /// More entries than can fit in the space (a defence in depth; [`CapabilityError::Loop`]
    /// normally fires first).
    TooManyCapabilities {
        /// The bound that was reached.
        limit: usize,
    },
    /// A capability was asked to decode as a kind it is not.
    WrongId {
        /// The capability offset.
        offset: u16,
        /// The id expected.
        expected: u16,
        /// The id found.
        found: u16,
    },
}

impl From<FunctionError> for CapabilityError {
    fn from(e: FunctionError) -> Self {
        Self::Config(e)
    }
}

impl core::error::Error for CapabilityError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "capability walk: {e}"),
            Self::BadPointer { from, to } => write!(
                f,
                "capability at {from:#x} points to {to:#x}, outside the capability area"
            ),
            Self::Loop { offset } => {
                write!(f, "capability list loops: offset {offset:#x} seen twice")
            }
            Self::TooManyCapabilities { limit } => {
                write!(f, "capability list longer than {limit} entries")
            }
            Self::WrongId {
                offset,
                expected,
                found,
            } => write!(
                f,
                "capability at {offset:#x} has id {found:#x}, expected {expected:#x}"
            ),
        }
    }
}

/// Most standard capabilities that fit: dword-aligned, in `0x40..0x100`.
pub const MAX_CAPABILITIES: usize = ((CONFIG_SPACE_SIZE - HEADER_SIZE) / 4) as usize;
/// Most extended capabilities that fit: dword-aligned, in `0x100..0x1000`.
pub const MAX_EXT_CAPABILITIES: usize = ((EXT_CONFIG_SPACE_SIZE - CONFIG_SPACE_SIZE) / 4) as usize;

/// One standard capability found by [`capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Capability {
    /// Capability id ([`cap_id`]).
    pub id: u8,
    /// Offset of the capability in configuration space.
    pub offset: u16,
}

/// One extended capability found by [`ext_capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ExtCapability {
    /// Capability id ([`ext_cap_id`]).
    pub id: u16,
    /// Capability version (header bits 19:16).
    pub version: u8,
    /// Offset of the capability in configuration space.
    pub offset: u16,
}

/// A set of dword slots already visited, for exact cycle detection without allocation.
#[derive(Debug, Clone)]
struct Visited {
    bits: [u64; EXT_CONFIG_SPACE_SIZE as usize / 4 / 64],
}

impl Visited {
    const fn new() -> Self {
        Self {
            bits: [0; EXT_CONFIG_SPACE_SIZE as usize / 4 / 64],
        }
    }

    /// Mark `offset` (dword aligned, below 0x1000); false if it was already marked.
    fn insert(&mut self, offset: u16) -> bool {
        let slot = (offset / 4) as usize;
        let (word, bit) = (slot / 64, slot % 64);
        let Some(w) = self.bits.get_mut(word) else {
            return false;
        };
        let fresh = *w & (1 << bit) == 0;
        *w |= 1 << bit;
        fresh
    }
}

/// Iterator over the standard capability list; see [`capabilities`].
#[derive(Debug, Clone)]
pub struct Capabilities<'a, A: ConfigAccess + ?Sized> {
    access: &'a A,
    /// Offset holding the next pointer to follow (0x34 first), or `None` when finished.
    next_from: Option<u16>,
    started: bool,
    steps: usize,
    visited: Visited,
}

/// Walk the standard capability list of `access`.
///
/// Yields each capability in list order, then ends; a fault yields one `Err` and then ends. A
/// function whose STATUS lacks [`Status::CAPABILITIES_LIST`] yields nothing.
pub fn capabilities<A: ConfigAccess + ?Sized>(access: &A) -> Capabilities<'_, A> {
    Capabilities {
        access,
        next_from: Some(CAPABILITIES_POINTER),
        started: false,
        steps: 0,
        visited: Visited::new(),
    }
}

impl<A: ConfigAccess + ?Sized> Capabilities<'_, A> {
    fn step(&mut self) -> Result<Option<Capability>, CapabilityError> {
        let Some(from) = self.next_from else {
            return Ok(None);
        };
        if !self.started {
            self.started = true;
            let status = Status::from_bits_retain(self.access.read16(STATUS)?);
            if !status.contains(Status::CAPABILITIES_LIST) {
                return Ok(None);
            }
        }
        // The bottom two bits of every pointer are reserved; software masks them.
        let ptr = self.access.read8(from)? & !0b11;
        if ptr == 0 {
            return Ok(None);
        }
        let offset = u16::from(ptr);
        if offset < HEADER_SIZE {
            return Err(CapabilityError::BadPointer { from, to: offset });
        }
        if !self.visited.insert(offset) {
            return Err(CapabilityError::Loop { offset });
        }
        self.steps += 1;
        if self.steps > MAX_CAPABILITIES {
            return Err(CapabilityError::TooManyCapabilities {
                limit: MAX_CAPABILITIES,
            });
        }
        let id = self.access.read8(offset)?;
        self.next_from = Some(offset + 1);
        Ok(Some(Capability { id, offset }))
    }
}

impl<A: ConfigAccess + ?Sized> Iterator for Capabilities<'_, A> {
    type Item = Result<Capability, CapabilityError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => {
                self.next_from = None;
                None
            }
            Err(e) => {
                self.next_from = None;
                Some(Err(e))
            }
        }
    }
}

/// The offset of the first standard capability with id `id`, `Ok(None)` if absent.
pub fn find_capability<A: ConfigAccess + ?Sized>(
    access: &A,
    id: u8,
) -> Result<Option<u16>, CapabilityError> {
    for cap in capabilities(access) {
        let cap = cap?;
        if cap.id == id {
            return Ok(Some(cap.offset));
        }
    }
    Ok(None)
}

/// Iterator over the extended capability list; see [`ext_capabilities`].
#[derive(Debug, Clone)]
pub struct ExtCapabilities<'a, A: ConfigAccess + ?Sized> {
    access: &'a A,
    /// Offset of the next header to read, with the offset that pointed to it, or `None`.
    next: Option<(u16, u16)>,
    steps: usize,
    visited: Visited,
}

/// Walk the PCI Express extended capability list (starting at 0x100).
///
/// A function without extended configuration space (reads of 0x100 fail with
/// [`FunctionError::ConfigOutOfRange`], or return 0 or all ones) yields nothing.
pub fn ext_capabilities<A: ConfigAccess + ?Sized>(access: &A) -> ExtCapabilities<'_, A> {
    ExtCapabilities {
        access,
        next: Some((CONFIG_SPACE_SIZE, CONFIG_SPACE_SIZE)),
        steps: 0,
        visited: Visited::new(),
    }
}

impl<A: ConfigAccess + ?Sized> ExtCapabilities<'_, A> {
    fn step(&mut self) -> Result<Option<ExtCapability>, CapabilityError> {
        let Some((offset, from)) = self.next else {
            return Ok(None);
        };
        if !(CONFIG_SPACE_SIZE..EXT_CONFIG_SPACE_SIZE).contains(&offset) {
            return Err(CapabilityError::BadPointer { from, to: offset });
        }
        let header = match self.access.read32(offset) {
            Ok(h) => h,
            Err(FunctionError::ConfigOutOfRange { .. }) if offset == CONFIG_SPACE_SIZE => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        if offset == CONFIG_SPACE_SIZE && (header == 0 || header == u32::MAX) {
            return Ok(None);
        }
        if !self.visited.insert(offset) {
            return Err(CapabilityError::Loop { offset });
        }
        self.steps += 1;
        if self.steps > MAX_EXT_CAPABILITIES {
            return Err(CapabilityError::TooManyCapabilities {
                limit: MAX_EXT_CAPABILITIES,
            });
        }
        // A pointer below 0x100 is reported by the next call, after this capability is yielded.
        let next = ((header >> 20) as u16) & !0b11;
        self.next = if next == 0 {
            None
        } else {
            Some((next, offset))
        };
        Ok(Some(ExtCapability {
            id: header as u16,
            version: ((header >> 16) & 0xf) as u8,
            offset,
        }))
    }
}

impl<A: ConfigAccess + ?Sized> Iterator for ExtCapabilities<'_, A> {
    type Item = Result<ExtCapability, CapabilityError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => {
                self.next = None;
                None
            }
            Err(e) => {
                self.next = None;
                Some(Err(e))
            }
        }
    }
}

/// The offset of the first extended capability with id `id`, `Ok(None)` if absent.
pub fn find_ext_capability<A: ConfigAccess + ?Sized>(
    access: &A,
    id: u16,
) -> Result<Option<u16>, CapabilityError> {
    for cap in ext_capabilities(access) {
        let cap = cap?;
        if cap.id == id {
            return Ok(Some(cap.offset));
        }
    }
    Ok(None)
}

fn expect_id<A: ConfigAccess + ?Sized>(
    access: &A,
    offset: u16,
    expected: u8,
) -> Result<(), CapabilityError> {
    let found = access.read8(offset)?;
    if found != expected {
        return Err(CapabilityError::WrongId {
            offset,
            expected: expected.into(),
            found: found.into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// MSI
// ---------------------------------------------------------------------------------------------

/// MSI capability register offsets (relative to the capability) and control bits.
pub mod msi {
    /// Message control (16 bits).
    pub const CONTROL: u16 = 0x02;
    /// Message address, low 32 bits.
    pub const ADDRESS_LO: u16 = 0x04;
    /// Message address, high 32 bits (64-bit capable functions only).
    pub const ADDRESS_HI: u16 = 0x08;
    /// Message data of a 32-bit capability.
    pub const DATA_32: u16 = 0x08;
    /// Message data of a 64-bit capability.
    pub const DATA_64: u16 = 0x0c;
    /// Mask bits of a 32-bit capability with per-vector masking.
    pub const MASK_32: u16 = 0x0c;
    /// Pending bits of a 32-bit capability with per-vector masking.
    pub const PENDING_32: u16 = 0x10;
    /// Mask bits of a 64-bit capability with per-vector masking.
    pub const MASK_64: u16 = 0x10;
    /// Pending bits of a 64-bit capability with per-vector masking.
    pub const PENDING_64: u16 = 0x14;

    /// Control: MSI enable.
    pub const CTRL_ENABLE: u16 = 1 << 0;
    /// Control: multiple message capable, log2 of the vectors requested (bits 3:1).
    pub const CTRL_MMC_SHIFT: u16 = 1;
    /// Control: multiple message enable, log2 of the vectors granted (bits 6:4).
    pub const CTRL_MME_SHIFT: u16 = 4;
    /// Control: 64-bit address capable.
    pub const CTRL_64BIT: u16 = 1 << 7;
    /// Control: per-vector masking capable.
    pub const CTRL_PER_VECTOR_MASK: u16 = 1 << 8;
}

/// A decoded MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Msi {
    /// Offset of the capability.
    pub offset: u16,
    /// The message control word.
    pub control: u16,
}

impl Msi {
    /// Decode the MSI capability at `offset` (its id must be [`cap_id::MSI`]).
    pub fn read<A: ConfigAccess + ?Sized>(
        access: &A,
        offset: u16,
    ) -> Result<Self, CapabilityError> {
        expect_id(access, offset, cap_id::MSI)?;
        let control = access.read16(offset + msi::CONTROL)?;
        Ok(Self { offset, control })
    }

    /// Find and decode the MSI capability, `Ok(None)` if the function has none.
    pub fn find<A: ConfigAccess + ?Sized>(access: &A) -> Result<Option<Self>, CapabilityError> {
        match find_capability(access, cap_id::MSI)? {
            Some(o) => Self::read(access, o).map(Some),
            None => Ok(None),
        }
    }

    /// MSI is enabled.
    pub const fn enabled(&self) -> bool {
        self.control & msi::CTRL_ENABLE != 0
    }
    /// Number of vectors the function requests (1, 2, 4, .., 32).
    pub const fn vectors_capable(&self) -> u32 {
        1 << min5((self.control >> msi::CTRL_MMC_SHIFT) & 0b111)
    }
    /// Number of vectors software enabled (1, 2, 4, .., 32).
    pub const fn vectors_enabled(&self) -> u32 {
        1 << min5((self.control >> msi::CTRL_MME_SHIFT) & 0b111)
    }
    /// The function can address 64 bits.
    pub const fn is_64bit(&self) -> bool {
        self.control & msi::CTRL_64BIT != 0
    }
    /// The function implements per-vector mask and pending bits.
    pub const fn per_vector_masking(&self) -> bool {
        self.control & msi::CTRL_PER_VECTOR_MASK != 0
    }
    /// Absolute offset of the message data register.
    pub const fn data_offset(&self) -> u16 {
        self.offset
            + if self.is_64bit() {
                msi::DATA_64
            } else {
                msi::DATA_32
            }
    }
    /// Absolute offset of the mask bits, if per-vector masking is implemented.
    pub const fn mask_offset(&self) -> Option<u16> {
        if !self.per_vector_masking() {
            return None;
        }
        Some(
            self.offset
                + if self.is_64bit() {
                    msi::MASK_64
                } else {
                    msi::MASK_32
                },
        )
    }
    /// Absolute offset of the pending bits, if per-vector masking is implemented.
    pub const fn pending_offset(&self) -> Option<u16> {
        match self.mask_offset() {
            Some(m) => Some(m + 4),
            None => None,
        }
    }
    /// Size of the capability structure in bytes.
    pub const fn size(&self) -> u16 {
        match (self.is_64bit(), self.per_vector_masking()) {
            (false, false) => 10,
            (true, false) => 14,
            (false, true) => 20,
            (true, true) => 24,
        }
    }
}

/// Encodings 6 and 7 of MMC/MME are reserved; clamp them to 32 vectors so shifts stay in range.
const fn min5(v: u16) -> u16 {
    if v > 5 {
        5
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------------
// MSI-X
// ---------------------------------------------------------------------------------------------

/// MSI-X capability register offsets (relative to the capability), control bits and table
/// layout.
pub mod msix {
    /// Message control (16 bits).
    pub const CONTROL: u16 = 0x02;
    /// Table offset and BIR (32 bits).
    pub const TABLE: u16 = 0x04;
    /// PBA offset and BIR (32 bits).
    pub const PBA: u16 = 0x08;

    /// Control: table size minus one (bits 10:0).
    pub const CTRL_TABLE_SIZE_MASK: u16 = 0x07ff;
    /// Control: function mask.
    pub const CTRL_FUNCTION_MASK: u16 = 1 << 14;
    /// Control: MSI-X enable.
    pub const CTRL_ENABLE: u16 = 1 << 15;
    /// Table/PBA dword: BAR indicator (bits 2:0).
    pub const BIR_MASK: u32 = 0b111;

    /// Bytes per table entry.
    pub const ENTRY_SIZE: usize = 16;
    /// Entry: message address low.
    pub const ENTRY_ADDRESS_LO: usize = 0x0;
    /// Entry: message address high.
    pub const ENTRY_ADDRESS_HI: usize = 0x4;
    /// Entry: message data.
    pub const ENTRY_DATA: usize = 0x8;
    /// Entry: vector control (bit 0 = masked).
    pub const ENTRY_VECTOR_CONTROL: usize = 0xc;
    /// Vector control: masked.
    pub const ENTRY_MASKED: u32 = 1 << 0;
}

/// Where an MSI-X structure lives: a BAR and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BarLocation {
    /// BAR indicator (0..=5 valid; 6 and 7 reserved).
    pub bir: u8,
    /// Byte offset within the BAR (8-byte aligned).
    pub offset: u32,
}

impl BarLocation {
    /// Decode a table or PBA dword.
    pub const fn decode(dword: u32) -> Self {
        Self {
            bir: (dword & msix::BIR_MASK) as u8,
            offset: dword & !msix::BIR_MASK,
        }
    }
}

/// A decoded MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsiX {
    /// Offset of the capability.
    pub offset: u16,
    /// The message control word.
    pub control: u16,
    /// Where the vector table is.
    pub table: BarLocation,
    /// Where the pending bit array is.
    pub pba: BarLocation,
}

impl MsiX {
    /// Decode the MSI-X capability at `offset` (its id must be [`cap_id::MSIX`]).
    pub fn read<A: ConfigAccess + ?Sized>(
        access: &A,
        offset: u16,
    ) -> Result<Self, CapabilityError> {
        expect_id(access, offset, cap_id::MSIX)?;
        Ok(Self {
            offset,
            control: access.read16(offset + msix::CONTROL)?,
            table: BarLocation::decode(access.read32(offset + msix::TABLE)?),
            pba: BarLocation::decode(access.read32(offset + msix::PBA)?),
        })
    }

    /// Find and decode the MSI-X capability, `Ok(None)` if the function has none.
    pub fn find<A: ConfigAccess + ?Sized>(access: &A) -> Result<Option<Self>, CapabilityError> {
        match find_capability(access, cap_id::MSIX)? {
            Some(o) => Self::read(access, o).map(Some),
            None => Ok(None),
        }
    }

    /// Number of table entries (1..=2048).
    pub const fn table_size(&self) -> u16 {
        (self.control & msix::CTRL_TABLE_SIZE_MASK) + 1
    }
    /// MSI-X is enabled.
    pub const fn enabled(&self) -> bool {
        self.control & msix::CTRL_ENABLE != 0
    }
    /// All vectors are masked by the function mask.
    pub const fn function_masked(&self) -> bool {
        self.control & msix::CTRL_FUNCTION_MASK != 0
    }
    /// Bytes of BAR space the table occupies.
    pub const fn table_bytes(&self) -> u32 {
        self.table_size() as u32 * msix::ENTRY_SIZE as u32
    }
    /// Bytes of BAR space the PBA occupies (one bit per vector, in whole qwords).
    pub const fn pba_bytes(&self) -> u32 {
        (self.table_size() as u32).div_ceil(64) * 8
    }
}

// ---------------------------------------------------------------------------------------------
// PCI Express capability
// ---------------------------------------------------------------------------------------------

/// PCI Express capability register offsets (relative to the capability) and bits.
pub mod pcie {
    /// PCI Express capabilities register (16 bits).
    pub const FLAGS: u16 = 0x02;
    /// Device capabilities (32 bits).
    pub const DEVCAP: u16 = 0x04;
    /// Device control (16 bits).
    pub const DEVCTL: u16 = 0x08;
    /// Device status (16 bits).
    pub const DEVSTA: u16 = 0x0a;
    /// Link capabilities (32 bits).
    pub const LNKCAP: u16 = 0x0c;
    /// Link control (16 bits).
    pub const LNKCTL: u16 = 0x10;
    /// Link status (16 bits).
    pub const LNKSTA: u16 = 0x12;
    /// Device capabilities 2 (32 bits, version 2 capabilities).
    pub const DEVCAP2: u16 = 0x24;
    /// Device control 2 (16 bits, version 2 capabilities).
    pub const DEVCTL2: u16 = 0x28;

    /// FLAGS: capability version (bits 3:0).
    pub const FLAGS_VERSION_MASK: u16 = 0x000f;
    /// FLAGS: device/port type (bits 7:4).
    pub const FLAGS_TYPE_SHIFT: u16 = 4;
    /// FLAGS: slot implemented.
    pub const FLAGS_SLOT: u16 = 1 << 8;
    /// FLAGS: interrupt message number (bits 13:9).
    pub const FLAGS_IRQ_SHIFT: u16 = 9;
    /// DEVCAP: max payload size supported (bits 2:0, 128 << n bytes).
    pub const DEVCAP_PAYLOAD_MASK: u32 = 0b111;
    /// DEVCAP: role-based error reporting.
    pub const DEVCAP_RBER: u32 = 1 << 15;
    /// DEVCAP: function level reset capable.
    pub const DEVCAP_FLR: u32 = 1 << 28;
    /// DEVCTL: initiate function level reset.
    pub const DEVCTL_BCR_FLR: u16 = 1 << 15;
    /// DEVSTA: transactions pending.
    pub const DEVSTA_TRPND: u16 = 1 << 5;
}

/// Device/port type of a PCI Express function (FLAGS bits 7:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortType {
    /// PCI Express endpoint.
    Endpoint,
    /// Legacy PCI Express endpoint.
    LegacyEndpoint,
    /// Root port of a root complex.
    RootPort,
    /// Upstream port of a switch.
    UpstreamPort,
    /// Downstream port of a switch.
    DownstreamPort,
    /// PCI Express to PCI/PCI-X bridge.
    PcieToPciBridge,
    /// PCI/PCI-X to PCI Express bridge.
    PciToPcieBridge,
    /// Root complex integrated endpoint.
    RcIntegratedEndpoint,
    /// Root complex event collector.
    RcEventCollector,
}

impl TryFrom<u8> for PortType {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0x0 => Self::Endpoint,
            0x1 => Self::LegacyEndpoint,
            0x4 => Self::RootPort,
            0x5 => Self::UpstreamPort,
            0x6 => Self::DownstreamPort,
            0x7 => Self::PcieToPciBridge,
            0x8 => Self::PciToPcieBridge,
            0x9 => Self::RcIntegratedEndpoint,
            0xa => Self::RcEventCollector,
            other => return Err(other),
        })
    }
}

impl From<PortType> for u8 {
    fn from(t: PortType) -> u8 {
        match t {
            PortType::Endpoint => 0x0,
            PortType::LegacyEndpoint => 0x1,
            PortType::RootPort => 0x4,
            PortType::UpstreamPort => 0x5,
            PortType::DownstreamPort => 0x6,
            PortType::PcieToPciBridge => 0x7,
            PortType::PciToPcieBridge => 0x8,
            PortType::RcIntegratedEndpoint => 0x9,
            PortType::RcEventCollector => 0xa,
        }
    }
}

/// A decoded PCI Express capability (the parts drivers and tests use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PciExpress {
    /// Offset of the capability.
    pub offset: u16,
    /// The PCI Express capabilities register.
    pub flags: u16,
    /// Device capabilities.
    pub devcap: u32,
}

impl PciExpress {
    /// Decode the PCI Express capability at `offset`.
    pub fn read<A: ConfigAccess + ?Sized>(
        access: &A,
        offset: u16,
    ) -> Result<Self, CapabilityError> {
        expect_id(access, offset, cap_id::PCI_EXPRESS)?;
        Ok(Self {
            offset,
            flags: access.read16(offset + pcie::FLAGS)?,
            devcap: access.read32(offset + pcie::DEVCAP)?,
        })
    }

    /// Find and decode the PCI Express capability, `Ok(None)` for conventional PCI.
    pub fn find<A: ConfigAccess + ?Sized>(access: &A) -> Result<Option<Self>, CapabilityError> {
        match find_capability(access, cap_id::PCI_EXPRESS)? {
            Some(o) => Self::read(access, o).map(Some),
            None => Ok(None),
        }
    }

    /// Capability version (1 or 2).
    pub const fn version(&self) -> u8 {
        (self.flags & pcie::FLAGS_VERSION_MASK) as u8
    }
    /// Raw device/port type field.
    pub const fn port_type_raw(&self) -> u8 {
        ((self.flags >> pcie::FLAGS_TYPE_SHIFT) & 0xf) as u8
    }
    /// Device/port type; `Err(raw)` for a reserved encoding.
    pub fn port_type(&self) -> Result<PortType, u8> {
        PortType::try_from(self.port_type_raw())
    }
    /// The function supports function level reset.
    pub const fn flr_capable(&self) -> bool {
        self.devcap & pcie::DEVCAP_FLR != 0
    }
    /// Max payload size supported, in bytes.
    pub const fn max_payload_supported(&self) -> u32 {
        let enc = self.devcap & pcie::DEVCAP_PAYLOAD_MASK;
        128 << if enc > 5 { 5 } else { enc }
    }
    /// Absolute offset of the device control register.
    pub const fn devctl_offset(&self) -> u16 {
        self.offset + pcie::DEVCTL
    }
    /// Absolute offset of the device status register.
    pub const fn devsta_offset(&self) -> u16 {
        self.offset + pcie::DEVSTA
    }
}

// ---------------------------------------------------------------------------------------------
// Power management capability
// ---------------------------------------------------------------------------------------------

/// Power management capability register offsets (relative to the capability) and bits.
pub mod pm {
    /// Power management capabilities (16 bits).
    pub const PMC: u16 = 0x02;
    /// Power management control/status (16 bits).
    pub const PMCSR: u16 = 0x04;

    /// PMC: version (bits 2:0).
    pub const PMC_VERSION_MASK: u16 = 0b111;
    /// PMC: PME clock.
    pub const PMC_PME_CLOCK: u16 = 1 << 3;
    /// PMC: device-specific initialisation needed.
    pub const PMC_DSI: u16 = 1 << 5;
    /// PMC: D1 supported.
    pub const PMC_D1: u16 = 1 << 9;
    /// PMC: D2 supported.
    pub const PMC_D2: u16 = 1 << 10;
    /// PMC: PME support mask (bits 15:11, one per D0, D1, D2, D3hot, D3cold).
    pub const PMC_PME_SHIFT: u16 = 11;
    /// PMCSR: power state (bits 1:0).
    pub const PMCSR_STATE_MASK: u16 = 0b11;
    /// PMCSR: no soft reset on D3hot to D0.
    pub const PMCSR_NO_SOFT_RESET: u16 = 1 << 3;
    /// PMCSR: PME enable.
    pub const PMCSR_PME_ENABLE: u16 = 1 << 8;
    /// PMCSR: PME status (write one to clear).
    pub const PMCSR_PME_STATUS: u16 = 1 << 15;
}

/// A decoded power management capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PowerManagement {
    /// Offset of the capability.
    pub offset: u16,
    /// The PMC register.
    pub pmc: u16,
    /// The PMCSR register at the time of reading.
    pub pmcsr: u16,
}

impl PowerManagement {
    /// Decode the power management capability at `offset`.
    pub fn read<A: ConfigAccess + ?Sized>(
        access: &A,
        offset: u16,
    ) -> Result<Self, CapabilityError> {
        expect_id(access, offset, cap_id::POWER_MANAGEMENT)?;
        Ok(Self {
            offset,
            pmc: access.read16(offset + pm::PMC)?,
            pmcsr: access.read16(offset + pm::PMCSR)?,
        })
    }

    /// Find and decode the power management capability, `Ok(None)` if absent.
    pub fn find<A: ConfigAccess + ?Sized>(access: &A) -> Result<Option<Self>, CapabilityError> {
        match find_capability(access, cap_id::POWER_MANAGEMENT)? {
            Some(o) => Self::read(access, o).map(Some),
            None => Ok(None),
        }
    }

    /// Specification version (PMC bits 2:0; 3 = PCI PM 1.2).
    pub const fn version(&self) -> u8 {
        (self.pmc & pm::PMC_VERSION_MASK) as u8
    }
    /// Device-specific initialisation is required.
    pub const fn dsi(&self) -> bool {
        self.pmc & pm::PMC_DSI != 0
    }
    /// Current power state, 0 = D0 .. 3 = D3hot.
    pub const fn power_state(&self) -> u8 {
        (self.pmcsr & pm::PMCSR_STATE_MASK) as u8
    }
    /// A D3hot to D0 transition does not reset the function (so it cannot serve as a reset).
    pub const fn no_soft_reset(&self) -> bool {
        self.pmcsr & pm::PMCSR_NO_SOFT_RESET != 0
    }
    /// Absolute offset of PMCSR.
    pub const fn pmcsr_offset(&self) -> u16 {
        self.offset + pm::PMCSR
    }
}

// ---------------------------------------------------------------------------------------------
// Supported devices
// ---------------------------------------------------------------------------------------------

/// Vendor id of Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// Vendor id QEMU uses for its own devices (edu).
pub const VENDOR_QEMU: u16 = 0x1234;

/// Device id of Intel DSA on Sapphire Rapids (Emerald Rapids presumably the same; unconfirmed).
pub const DEVICE_DSA_SPR: u16 = 0x0b25;
/// Device id of Intel DSA on Granite Rapids-D.
pub const DEVICE_DSA_GNRD: u16 = 0x11fb;
/// Device id of Intel DSA on Diamond Rapids.
pub const DEVICE_DSA_DMR: u16 = 0x1212;
/// Device id of Intel IAA (IAX) on Sapphire Rapids.
pub const DEVICE_IAX_SPR: u16 = 0x0cfe;
/// Device id of Intel IAA on Diamond Rapids.
pub const DEVICE_IAA_DMR: u16 = 0x1216;
/// Device id of Intel IAA on Panther Lake.
pub const DEVICE_IAA_PTL: u16 = 0xb02d;
/// Device id of Intel CBDMA on Skylake-SP.
pub const DEVICE_IOAT_SKX: u16 = 0x2021;
/// Device id of Intel CBDMA on Ice Lake-SP.
pub const DEVICE_IOAT_ICX: u16 = 0x0b00;
/// Device id of QEMU's edu device.
pub const DEVICE_EDU: u16 = 0x11e8;
/// Device id of the Intel 82576 (and QEMU's igb).
pub const DEVICE_IGB_82576: u16 = 0x10c9;
/// Device id of the Intel 82576 virtual function (and QEMU's igbvf).
pub const DEVICE_IGB_82576_VF: u16 = 0x10ca;
/// Device id of the Intel 82574L (QEMU's e1000e).
pub const DEVICE_E1000E_82574L: u16 = 0x10d3;

/// The family a supported device belongs to (which driver or test path handles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceFamily {
    /// Intel Data Streaming Accelerator.
    Dsa,
    /// Intel In-memory Analytics Accelerator (same idxd register interface; no memcpy driver).
    Iaa,
    /// Intel CBDMA / I/OAT v3.x.
    Ioat,
    /// Legacy I/OAT v1/v2 ids: recognised, but no driver (Linux's needs CBVER >= 0x30).
    IoatLegacy,
    /// QEMU edu.
    Edu,
    /// Intel 82576 / QEMU igb physical function.
    Igb,
    /// Intel 82576 virtual function.
    IgbVf,
    /// Intel 82574L / QEMU e1000e (interrupt tests only; no memcpy driver).
    E1000e,
}

/// A vendor/device pair passthru knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KnownDevice {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Family.
    pub family: DeviceFamily,
    /// Short platform or product name.
    pub name: &'static str,
}

const fn dev(vendor: u16, device: u16, family: DeviceFamily, name: &'static str) -> KnownDevice {
    KnownDevice {
        vendor,
        device,
        family,
        name,
    }
}

use DeviceFamily as F;

/// Every vendor/device pair [`supported_device`] recognises (Linux `include/linux/pci_ids.h`, `drivers/dma/ioat/hw.h`).
pub const KNOWN_DEVICES: &[KnownDevice] = &[
    dev(VENDOR_INTEL, DEVICE_DSA_SPR, F::Dsa, "DSA SPR"),
    dev(VENDOR_INTEL, DEVICE_DSA_GNRD, F::Dsa, "DSA GNR-D"),
    dev(VENDOR_INTEL, DEVICE_DSA_DMR, F::Dsa, "DSA DMR"),
    dev(VENDOR_INTEL, DEVICE_IAX_SPR, F::Iaa, "IAX SPR"),
    dev(VENDOR_INTEL, DEVICE_IAA_DMR, F::Iaa, "IAA DMR"),
    dev(VENDOR_INTEL, DEVICE_IAA_PTL, F::Iaa, "IAA PTL"),
    dev(VENDOR_INTEL, 0x1a38, F::IoatLegacy, "IOAT"),
    dev(VENDOR_INTEL, 0x360b, F::IoatLegacy, "IOAT CNB"),
    dev(VENDOR_INTEL, 0x65ff, F::IoatLegacy, "IOAT SCNB"),
    dev(VENDOR_INTEL, 0x402f, F::IoatLegacy, "IOAT SNB (5400)"),
    dev(VENDOR_INTEL, 0x3430, F::Ioat, "IOAT TBG0"),
    dev(VENDOR_INTEL, 0x3431, F::Ioat, "IOAT TBG1"),
    dev(VENDOR_INTEL, 0x3432, F::Ioat, "IOAT TBG2"),
    dev(VENDOR_INTEL, 0x3433, F::Ioat, "IOAT TBG3"),
    dev(VENDOR_INTEL, 0x3429, F::Ioat, "IOAT TBG4"),
    dev(VENDOR_INTEL, 0x342a, F::Ioat, "IOAT TBG5"),
    dev(VENDOR_INTEL, 0x342b, F::Ioat, "IOAT TBG6"),
    dev(VENDOR_INTEL, 0x342c, F::Ioat, "IOAT TBG7"),
    dev(VENDOR_INTEL, 0x3710, F::Ioat, "IOAT JSF0"),
    dev(VENDOR_INTEL, 0x3711, F::Ioat, "IOAT JSF1"),
    dev(VENDOR_INTEL, 0x3712, F::Ioat, "IOAT JSF2"),
    dev(VENDOR_INTEL, 0x3713, F::Ioat, "IOAT JSF3"),
    dev(VENDOR_INTEL, 0x3714, F::Ioat, "IOAT JSF4"),
    dev(VENDOR_INTEL, 0x3715, F::Ioat, "IOAT JSF5"),
    dev(VENDOR_INTEL, 0x3716, F::Ioat, "IOAT JSF6"),
    dev(VENDOR_INTEL, 0x3717, F::Ioat, "IOAT JSF7"),
    dev(VENDOR_INTEL, 0x3718, F::Ioat, "IOAT JSF8"),
    dev(VENDOR_INTEL, 0x3719, F::Ioat, "IOAT JSF9"),
    dev(VENDOR_INTEL, 0x3c20, F::Ioat, "IOAT SNB-EP0"),
    dev(VENDOR_INTEL, 0x3c21, F::Ioat, "IOAT SNB-EP1"),
    dev(VENDOR_INTEL, 0x3c22, F::Ioat, "IOAT SNB-EP2"),
    dev(VENDOR_INTEL, 0x3c23, F::Ioat, "IOAT SNB-EP3"),
    dev(VENDOR_INTEL, 0x3c24, F::Ioat, "IOAT SNB-EP4"),
    dev(VENDOR_INTEL, 0x3c25, F::Ioat, "IOAT SNB-EP5"),
    dev(VENDOR_INTEL, 0x3c26, F::Ioat, "IOAT SNB-EP6"),
    dev(VENDOR_INTEL, 0x3c27, F::Ioat, "IOAT SNB-EP7"),
    dev(VENDOR_INTEL, 0x3c2e, F::Ioat, "IOAT SNB-EP8"),
    dev(VENDOR_INTEL, 0x3c2f, F::Ioat, "IOAT SNB-EP9"),
    dev(VENDOR_INTEL, 0x0e20, F::Ioat, "IOAT IVB-EP0"),
    dev(VENDOR_INTEL, 0x0e21, F::Ioat, "IOAT IVB-EP1"),
    dev(VENDOR_INTEL, 0x0e22, F::Ioat, "IOAT IVB-EP2"),
    dev(VENDOR_INTEL, 0x0e23, F::Ioat, "IOAT IVB-EP3"),
    dev(VENDOR_INTEL, 0x0e24, F::Ioat, "IOAT IVB-EP4"),
    dev(VENDOR_INTEL, 0x0e25, F::Ioat, "IOAT IVB-EP5"),
    dev(VENDOR_INTEL, 0x0e26, F::Ioat, "IOAT IVB-EP6"),
    dev(VENDOR_INTEL, 0x0e27, F::Ioat, "IOAT IVB-EP7"),
    dev(VENDOR_INTEL, 0x0e2e, F::Ioat, "IOAT IVB-EP8"),
    dev(VENDOR_INTEL, 0x0e2f, F::Ioat, "IOAT IVB-EP9"),
    dev(VENDOR_INTEL, 0x2f20, F::Ioat, "IOAT HSW-EP0"),
    dev(VENDOR_INTEL, 0x2f21, F::Ioat, "IOAT HSW-EP1"),
    dev(VENDOR_INTEL, 0x2f22, F::Ioat, "IOAT HSW-EP2"),
    dev(VENDOR_INTEL, 0x2f23, F::Ioat, "IOAT HSW-EP3"),
    dev(VENDOR_INTEL, 0x2f24, F::Ioat, "IOAT HSW-EP4"),
    dev(VENDOR_INTEL, 0x2f25, F::Ioat, "IOAT HSW-EP5"),
    dev(VENDOR_INTEL, 0x2f26, F::Ioat, "IOAT HSW-EP6"),
    dev(VENDOR_INTEL, 0x2f27, F::Ioat, "IOAT HSW-EP7"),
    dev(VENDOR_INTEL, 0x2f2e, F::Ioat, "IOAT HSW-EP8"),
    dev(VENDOR_INTEL, 0x2f2f, F::Ioat, "IOAT HSW-EP9"),
    dev(VENDOR_INTEL, 0x6f20, F::Ioat, "IOAT BDX-EP0"),
    dev(VENDOR_INTEL, 0x6f21, F::Ioat, "IOAT BDX-EP1"),
    dev(VENDOR_INTEL, 0x6f22, F::Ioat, "IOAT BDX-EP2"),
    dev(VENDOR_INTEL, 0x6f23, F::Ioat, "IOAT BDX-EP3"),
    dev(VENDOR_INTEL, 0x6f24, F::Ioat, "IOAT BDX-EP4"),
    dev(VENDOR_INTEL, 0x6f25, F::Ioat, "IOAT BDX-EP5"),
    dev(VENDOR_INTEL, 0x6f26, F::Ioat, "IOAT BDX-EP6"),
    dev(VENDOR_INTEL, 0x6f27, F::Ioat, "IOAT BDX-EP7"),
    dev(VENDOR_INTEL, 0x6f2e, F::Ioat, "IOAT BDX-EP8"),
    dev(VENDOR_INTEL, 0x6f2f, F::Ioat, "IOAT BDX-EP9"),
    dev(VENDOR_INTEL, 0x0c50, F::Ioat, "IOAT BWD0"),
    dev(VENDOR_INTEL, 0x0c51, F::Ioat, "IOAT BWD1"),
    dev(VENDOR_INTEL, 0x0c52, F::Ioat, "IOAT BWD2"),
    dev(VENDOR_INTEL, 0x0c53, F::Ioat, "IOAT BWD3"),
    dev(VENDOR_INTEL, 0x6f50, F::Ioat, "IOAT BDX-DE0"),
    dev(VENDOR_INTEL, 0x6f51, F::Ioat, "IOAT BDX-DE1"),
    dev(VENDOR_INTEL, 0x6f52, F::Ioat, "IOAT BDX-DE2"),
    dev(VENDOR_INTEL, 0x6f53, F::Ioat, "IOAT BDX-DE3"),
    dev(VENDOR_INTEL, DEVICE_IOAT_SKX, F::Ioat, "IOAT SKX"),
    dev(VENDOR_INTEL, DEVICE_IOAT_ICX, F::Ioat, "IOAT ICX"),
    dev(VENDOR_QEMU, DEVICE_EDU, F::Edu, "QEMU edu"),
    dev(VENDOR_INTEL, DEVICE_IGB_82576, F::Igb, "82576 (igb)"),
    dev(
        VENDOR_INTEL,
        DEVICE_IGB_82576_VF,
        F::IgbVf,
        "82576 VF (igbvf)",
    ),
    dev(
        VENDOR_INTEL,
        DEVICE_E1000E_82574L,
        F::E1000e,
        "82574L (e1000e)",
    ),
];

/// Look up a vendor/device pair in [`KNOWN_DEVICES`].
pub fn supported_device(vendor: u16, device: u16) -> Option<KnownDevice> {
    KNOWN_DEVICES
        .iter()
        .find(|d| d.vendor == vendor && d.device == device)
        .copied()
}

/// Read-modify-write COMMAND: set the bits of `set`, then clear those of `clear` (upstream's
/// `vfio_pci_cmd_set`/`vfio_pci_cmd_clear`). Writes only if the value changes; returns the new
/// value.
pub fn update_command<F: PciFunction + ?Sized>(
    function: &F,
    set: Command,
    clear: Command,
) -> Result<Command, FunctionError> {
    let old = Command::from_bits_retain(function.config_read16(COMMAND)?);
    let new = (old | set) - clear;
    if new != old {
        function.config_write16(COMMAND, new.bits())?;
    }
    Ok(new)
}

/// Read the vendor and device ids of `access`.
pub fn read_ids<A: ConfigAccess + ?Sized>(access: &A) -> Result<(u16, u16), FunctionError> {
    Ok((access.read16(VENDOR_ID)?, access.read16(DEVICE_ID)?))
}

#[cfg(test)]
mod tests;
