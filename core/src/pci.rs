//! PCI configuration space: offsets, COMMAND/STATUS bits, the capability walk, device ids.

/// Offset of the 16-bit vendor id.
pub const VENDOR_ID: u16 = 0x00;
/// Offset of the 16-bit device id.
pub const DEVICE_ID: u16 = 0x02;
