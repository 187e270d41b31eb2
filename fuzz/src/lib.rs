//! Helpers shared by the fuzz targets: a byte reader that never fails (it yields zeros once the
//! input is used up) and the IOVA window the model targets map.
#![deny(missing_docs)]

/// IOVA of the small DMA window every model target maps.
pub const WINDOW_IOVA: u64 = 0x10_0000;
/// Length of that window (4 pages).
pub const WINDOW_LEN: usize = 0x4000;

/// Reads fuzzer bytes; past the end every read returns 0.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    /// True once every byte was consumed.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// Next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    /// Next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    /// Next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in a.iter_mut() {
            *b = self.u8();
        }
        a
    }
    /// An access width: 1, 2, 4 or 8.
    pub fn width(&mut self) -> u8 {
        1 << (self.u8() & 3)
    }
    /// An IOVA: usually inside the mapped window (any alignment), sometimes just past its
    /// edges, sometimes anything at all.
    pub fn iova(&mut self) -> u64 {
        match self.u8() & 7 {
            0 => self.u64(),
            1 => WINDOW_IOVA + WINDOW_LEN as u64 - u64::from(self.u8()),
            2 => WINDOW_IOVA.wrapping_sub(u64::from(self.u8())),
            _ => WINDOW_IOVA + u64::from(self.u16()) % WINDOW_LEN as u64,
        }
    }
    /// A length: usually small, sometimes anything.
    pub fn len32(&mut self) -> u32 {
        match self.u8() & 3 {
            0 => self.u32(),
            _ => u32::from(self.u16()) % (WINDOW_LEN as u32 + 64),
        }
    }
}
