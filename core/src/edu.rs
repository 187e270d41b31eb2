//! QEMU's `edu` educational PCI device (1234:11e8): BAR0 registers.
//!
//! Facts from QEMU's hw/misc/edu.c and docs/specs/edu.rst (verified on QEMU 10.0.2):
//!
//! * Conventional PCI (no PCIe capability, so no FLR and no PM), revision 0x10, class 0x00ff.
//!   One capability: MSI at 0x40, 64-bit, one vector, no per-vector masking. No MSI-X.
//! * BAR0 is 1 MiB of 32-bit non-prefetchable MMIO. Registers below 0x80 accept only 4-byte
//!   accesses; the DMA registers (0x80..0xa0) accept 4 or 8 bytes. Other sizes are ignored and
//!   read as all ones.
//! * One DMA at a time, ~100 ms (virtual time) each on QEMU; while it runs, writes to
//!   0x80..=0x98 are ignored. The device cannot report a failed DMA: an IOMMU fault is only
//!   visible to the IOMMU (and its fault log), the device carries on and clears the start bit.
//! * DMA addresses are ANDed with the device's `dma_mask` property, 28 bits by default
//!   ([`DEFAULT_DMA_MASK`]); the QEMU rig widens it to 64 bits.
//! * The device buffer range is only checked with a log message; a copy outside
//!   [`BUFFER`]..[`BUFFER_END`] overruns QEMU's own buffer. Never program one.

/// PCI vendor id (QEMU).
pub const VENDOR_ID: u16 = 0x1234;
/// PCI device id.
pub const DEVICE_ID: u16 = 0x11e8;
/// PCI revision id.
pub const REVISION: u8 = 0x10;
/// Size of BAR0.
pub const BAR0_SIZE: usize = 1 << 20;
/// Offset of the MSI capability in configuration space.
pub const MSI_CAP_OFFSET: u16 = 0x40;
/// The only MSI vector.
pub const MSI_VECTOR: u16 = 0;

/// Identification register (RO): `0xRRrr00ed`, major `RR`, minor `rr`.
pub const ID: usize = 0x00;
/// Liveness check (RW): reads back the bitwise NOT of the last value written.
pub const LIVENESS: usize = 0x04;
/// Factorial (RW): write n, wait for [`Status::COMPUTING`] to clear, read n!.
pub const FACTORIAL: usize = 0x08;
/// Status register (RW), see [`Status`].
pub const STATUS: usize = 0x20;
/// Interrupt status (RO): the causes raised and not yet acknowledged.
pub const IRQ_STATUS: usize = 0x24;
/// Interrupt raise (WO): `irq_status |= value`, then an MSI (if MSI is enabled) or INTx.
pub const IRQ_RAISE: usize = 0x60;
/// Interrupt acknowledge (WO): `irq_status &= !value`; INTx deasserts when it reaches 0.
pub const IRQ_ACK: usize = 0x64;
/// DMA source address (RW, 64-bit).
pub const DMA_SRC: usize = 0x80;
/// DMA destination address (RW, 64-bit).
pub const DMA_DST: usize = 0x88;
/// DMA byte count (RW, 64-bit).
pub const DMA_COUNT: usize = 0x90;
/// DMA command (RW, 64-bit), see [`DmaCommand`]. Writes without [`DmaCommand::START`] are
/// ignored.
pub const DMA_CMD: usize = 0x98;

/// Device-side address of the DMA buffer, as used in [`DMA_SRC`]/[`DMA_DST`].
pub const BUFFER: u64 = 0x40000;
/// Size of the DMA buffer.
pub const BUFFER_SIZE: u64 = 4096;
/// One past the last device-side buffer address.
pub const BUFFER_END: u64 = BUFFER + BUFFER_SIZE;

/// The default `dma_mask` property: DMA addresses are ANDed with it (28 bits).
pub const DEFAULT_DMA_MASK: u64 = (1 << 28) - 1;

/// Low byte of the identification register.
pub const ID_MAGIC: u32 = 0xed;
/// The identification value QEMU 10 reports (version 1.0).
pub const ID_VALUE: u32 = 0x0100_00ed;

/// Interrupt cause raised when a factorial finishes (with [`Status::IRQ_ON_FACTORIAL`]).
pub const IRQ_FACTORIAL: u32 = 0x0000_0001;
/// Interrupt cause raised when a DMA finishes (with [`DmaCommand::IRQ`]).
pub const IRQ_DMA: u32 = 0x0000_0100;

/// Time QEMU's edu takes per DMA (virtual clock), in nanoseconds.
pub const DMA_LATENCY_NS: u64 = 100_000_000;

/// Is `id` (the value of [`ID`]) an edu identification value?
pub const fn is_edu_id(id: u32) -> bool {
    id & 0xffff == ID_MAGIC
}

/// The status register (offset [`STATUS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status(pub u32);

impl Status {
    /// A factorial is being computed (RO).
    pub const COMPUTING: u32 = 1 << 0;
    /// Raise [`IRQ_FACTORIAL`] when the factorial finishes (RW).
    pub const IRQ_ON_FACTORIAL: u32 = 1 << 7;

    /// The computing bit.
    pub const fn computing(self) -> bool {
        self.0 & Self::COMPUTING != 0
    }
    /// The raise-on-factorial bit.
    pub const fn irq_on_factorial(self) -> bool {
        self.0 & Self::IRQ_ON_FACTORIAL != 0
    }
}

/// The DMA command register (offset [`DMA_CMD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DmaCommand(pub u64);

impl DmaCommand {
    /// Start the transfer; the device clears it when the transfer is done.
    pub const START: u64 = 1 << 0;
    /// Direction: clear = RAM to the device buffer, set = device buffer to RAM.
    pub const TO_RAM: u64 = 1 << 1;
    /// Raise [`IRQ_DMA`] when done.
    pub const IRQ: u64 = 1 << 2;

    /// A command copying RAM (at [`DMA_SRC`]) into the device buffer (at [`DMA_DST`]).
    pub const fn ram_to_buffer() -> Self {
        Self(Self::START)
    }
    /// A command copying the device buffer (at [`DMA_SRC`]) to RAM (at [`DMA_DST`]).
    pub const fn buffer_to_ram() -> Self {
        Self(Self::START | Self::TO_RAM)
    }
    /// The same command, raising an interrupt on completion.
    pub const fn with_irq(self) -> Self {
        Self(self.0 | Self::IRQ)
    }
    /// The transfer is still running.
    pub const fn running(self) -> bool {
        self.0 & Self::START != 0
    }
    /// The transfer goes from the device buffer to RAM.
    pub const fn to_ram(self) -> bool {
        self.0 & Self::TO_RAM != 0
    }
    /// The transfer raises an interrupt on completion.
    pub const fn irq(self) -> bool {
        self.0 & Self::IRQ != 0
    }
}

/// Is the device-side range `[addr, addr + len)` inside the DMA buffer?
pub const fn buffer_range_ok(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => addr >= BUFFER && end <= BUFFER_END,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_map_matches_qemu_rig_section_8() {
        assert_eq!(
            [ID, LIVENESS, FACTORIAL, STATUS, IRQ_STATUS, IRQ_RAISE, IRQ_ACK],
            [0x00, 0x04, 0x08, 0x20, 0x24, 0x60, 0x64]
        );
        assert_eq!(
            [DMA_SRC, DMA_DST, DMA_COUNT, DMA_CMD],
            [0x80, 0x88, 0x90, 0x98]
        );
        assert_eq!((BUFFER, BUFFER_SIZE, BUFFER_END), (0x40000, 4096, 0x41000));
        assert_eq!(DEFAULT_DMA_MASK, 0x0fff_ffff);
        assert_eq!(Status::IRQ_ON_FACTORIAL, 0x80);
        assert_eq!((IRQ_FACTORIAL, IRQ_DMA), (0x1, 0x100));
    }

    #[test]
    fn dma_commands_encode_direction_as_the_rig_saw() {
        // Verified on QEMU 10.0.2: RAM -> device used cmd=1, device -> RAM used cmd=3.
        assert_eq!(DmaCommand::ram_to_buffer().0, 1);
        assert_eq!(DmaCommand::buffer_to_ram().0, 3);
        assert_eq!(DmaCommand::buffer_to_ram().with_irq().0, 7);
        assert!(DmaCommand(7).irq() && DmaCommand(7).to_ram() && DmaCommand(7).running());
        assert!(!DmaCommand(6).running());
    }

    #[test]
    fn id_and_buffer_range_checks() {
        assert!(is_edu_id(ID_VALUE));
        assert!(!is_edu_id(u32::MAX));
        assert!(buffer_range_ok(BUFFER, BUFFER_SIZE));
        assert!(buffer_range_ok(BUFFER + 4095, 1));
        assert!(!buffer_range_ok(BUFFER + 1, BUFFER_SIZE));
        assert!(!buffer_range_ok(BUFFER - 1, 1));
        assert!(!buffer_range_ok(u64::MAX, 2));
    }
}
