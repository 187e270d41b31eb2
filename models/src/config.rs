//! A model's PCI configuration space: 4 KiB of bytes with per-bit write masks, plus helpers to
//! lay out the header and capabilities the way real devices do.

use passthru_core::pci::{DEVICE_ID, VENDOR_ID};

/// Size of PCI Express configuration space.
pub const CONFIG_SIZE: usize = 4096;

/// Offset of the COMMAND register.
const COMMAND: usize = 0x04;
/// COMMAND bit 2: bus master enable.
const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// COMMAND bit 1: memory space enable.
const COMMAND_MEMORY: u16 = 1 << 1;

/// Configuration space contents and write semantics.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    /// Bits software may change.
    writable: [u8; CONFIG_SIZE],
    /// Bits that clear when written with 1.
    w1c: [u8; CONFIG_SIZE],
    /// Where the next capability goes (0x40 upward), and the last one's next pointer.
    next_cap: usize,
    last_cap_ptr: usize,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpace")
            .field(
                "vendor",
                &format_args!("{:#06x}", self.read16(VENDOR_ID as usize)),
            )
            .field(
                "device",
                &format_args!("{:#06x}", self.read16(DEVICE_ID as usize)),
            )
            .finish()
    }
}

impl ConfigSpace {
    /// A type-0 header for `vendor:device` with class code `class` (base<<16|sub<<8|prog-if),
    /// revision `revision`, COMMAND memory/bus-master/INTx-disable writable.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = Self {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
            w1c: [0; CONFIG_SIZE],
            next_cap: 0x40,
            last_cap_ptr: 0x34,
        };
        c.set16(VENDOR_ID as usize, vendor);
        c.set16(DEVICE_ID as usize, device);
        c.set32(0x08, (class << 8) | u32::from(revision));
        // COMMAND: I/O, memory, bus master, parity, SERR, INTx disable are writable.
        c.writable[COMMAND] = 0x47;
        c.writable[COMMAND + 1] = 0x05;
        // STATUS bit 4: capabilities list present (set once a capability is added); error bits
        // 15:11 and 8 are RW1C.
        c.w1c[0x07] = 0xf9;
        c
    }

    /// Declare memory BAR `index` of `size` bytes (a power of two), 64-bit prefetchable when
    /// `bits64`; `addr` is the initial address.
    pub fn bar(&mut self, index: usize, size: u64, bits64: bool, addr: u64) {
        let off = 0x10 + index * 4;
        let flags: u32 = if bits64 { 0x4 | 0x8 } else { 0 };
        let mask = !(size.max(16) - 1);
        self.set32(off, (addr as u32 & mask as u32) | flags);
        self.mask32(off, mask as u32);
        if bits64 {
            self.set32(off + 4, (addr >> 32) as u32);
            self.mask32(off + 4, (mask >> 32) as u32);
        }
    }

    /// Append a capability with id `id` and `len` bytes of body (after the 2-byte header);
    /// returns its offset. Body bytes start as zero and read-only; use [`ConfigSpace::set16`] /
    /// [`ConfigSpace::mask16`] to fill and open them.
    pub fn add_capability(&mut self, id: u8, len: usize) -> usize {
        let off = self.next_cap;
        self.bytes[self.last_cap_ptr] = off as u8;
        self.bytes[off] = id;
        self.bytes[off + 1] = 0;
        self.last_cap_ptr = off + 1;
        self.next_cap = (off + 2 + len + 3) & !3;
        self.bytes[0x06] |= 1 << 4;
        off
    }

    /// Add an MSI-X capability with `vectors` entries, table at BAR `table_bir` + `table_off`,
    /// PBA at BAR `pba_bir` + `pba_off`. Returns the capability offset.
    pub fn add_msix(
        &mut self,
        vectors: u16,
        table_bir: u8,
        table_off: u32,
        pba_bir: u8,
        pba_off: u32,
    ) -> usize {
        let off = self.add_capability(0x11, 10);
        self.set16(off + 2, vectors.saturating_sub(1) & 0x7ff);
        self.mask16(off + 2, 0xc000); // enable, function mask
        self.set32(off + 4, table_off | u32::from(table_bir));
        self.set32(off + 8, pba_off | u32::from(pba_bir));
        off
    }

    /// Add a 64-bit MSI capability with `vectors_log2` multiple-message capable. Returns its offset.
    pub fn add_msi(&mut self, vectors_log2: u8) -> usize {
        let off = self.add_capability(0x05, 12);
        self.set16(off + 2, (1 << 7) | (u16::from(vectors_log2 & 7) << 1));
        self.mask16(off + 2, 0x0071); // enable + multiple message enable
        self.mask32(off + 4, 0xffff_fffc);
        self.mask32(off + 8, 0xffff_ffff);
        self.mask16(off + 12, 0xffff);
        off
    }

    /// Add a PCI Express endpoint capability with FLR support. Returns its offset.
    pub fn add_pcie_endpoint(&mut self) -> usize {
        let off = self.add_capability(0x10, 0x3a);
        self.set16(off + 2, 0x0002); // version 2, endpoint
        self.set32(off + 4, 1 << 28); // DEVCAP: function-level reset capable
        self.mask16(off + 8, 0x7fff); // DEVCTL (bit 15 = initiate FLR handled by the function)
        off
    }

    /// Read a byte (offsets beyond 4 KiB read as all ones).
    pub fn read8(&self, off: usize) -> u8 {
        self.bytes.get(off).copied().unwrap_or(0xff)
    }

    /// Read 16 bits little-endian.
    pub fn read16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.read8(off), self.read8(off + 1)])
    }

    /// Read 32 bits little-endian.
    pub fn read32(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.read8(off),
            self.read8(off + 1),
            self.read8(off + 2),
            self.read8(off + 3),
        ])
    }

    /// A software write of `len` bytes of `value` at `off`, honouring write masks and RW1C bits.
    pub fn write(&mut self, off: usize, len: usize, value: u32) {
        for i in 0..len.min(4) {
            let Some(cur) = self.bytes.get(off + i).copied() else {
                return;
            };
            let v = (value >> (8 * i)) as u8;
            let w = self.writable[off + i];
            let c = self.w1c[off + i];
            self.bytes[off + i] = ((cur & !w) | (v & w)) & !(v & c);
        }
    }

    /// Set bytes directly (device side; ignores masks).
    pub fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Set 32 bits directly (device side).
    pub fn set32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Make the bits of `mask` at `off` (16 bits) software-writable.
    pub fn mask16(&mut self, off: usize, mask: u16) {
        for (i, b) in mask.to_le_bytes().iter().enumerate() {
            self.writable[off + i] |= b;
        }
    }

    /// Make the bits of `mask` at `off` (32 bits) software-writable.
    pub fn mask32(&mut self, off: usize, mask: u32) {
        for (i, b) in mask.to_le_bytes().iter().enumerate() {
            self.writable[off + i] |= b;
        }
    }

    /// Make the bits of `mask` at `off` (32 bits) write-1-to-clear.
    pub fn w1c32(&mut self, off: usize, mask: u32) {
        for (i, b) in mask.to_le_bytes().iter().enumerate() {
            self.w1c[off + i] |= b;
            self.writable[off + i] &= !b;
        }
    }

    /// COMMAND bit 2.
    pub fn bus_master(&self) -> bool {
        self.read16(COMMAND) & COMMAND_BUS_MASTER != 0
    }

    /// COMMAND bit 1.
    pub fn memory_enabled(&self) -> bool {
        self.read16(COMMAND) & COMMAND_MEMORY != 0
    }

    /// Offset of the first capability with `id`, walking at most 48 entries.
    pub fn find_capability(&self, id: u8) -> Option<usize> {
        let mut p = usize::from(self.read8(0x34) & 0xfc);
        for _ in 0..48 {
            if p < 0x40 {
                return None;
            }
            if self.read8(p) == id {
                return Some(p);
            }
            p = usize::from(self.read8(p + 1) & 0xfc);
        }
        None
    }

    /// True if the MSI-X capability has its enable bit set and function mask clear.
    pub fn msix_enabled(&self) -> bool {
        self.find_capability(0x11)
            .is_some_and(|c| self.read16(c + 2) & 0xc000 == 0x8000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_rw1c_and_capabilities() {
        let mut c = ConfigSpace::new(0x8086, 0x0b25, 0x088000, 0);
        c.bar(0, 0x10000, true, 0xfe00_0000);
        let msix = c.add_msix(9, 0, 0x600, 0, 0x700);
        let pcie = c.add_pcie_endpoint();
        assert_eq!(c.read16(0), 0x8086);
        assert_eq!(c.read32(8) >> 8, 0x088000);
        assert_eq!(c.find_capability(0x11), Some(msix));
        assert_eq!(c.find_capability(0x10), Some(pcie));
        assert_eq!(c.read16(msix + 2) & 0x7ff, 8);
        // BAR sizing: write all ones, read back the size mask
        c.write(0x10, 4, 0xffff_ffff);
        assert_eq!(c.read32(0x10), 0xffff_0000 | 0xc);
        // VENDOR is read-only
        c.write(0, 2, 0x1234);
        assert_eq!(c.read16(0), 0x8086);
        c.write(4, 2, 0x0006);
        assert!(c.bus_master() && c.memory_enabled());
        c.write(msix + 2, 2, 0x8000);
        assert!(c.msix_enabled());
        c.set16(0x06, 0x8010);
        c.write(0x06, 2, 0x8000);
        assert_eq!(
            c.read16(0x06),
            0x0010,
            "RW1C error bit cleared, cap bit kept"
        );
        assert_eq!(c.read8(5000), 0xff);
    }
}
