//! Assembling 64-byte portal writes from the pieces a VMM sees.
//!
//! A DSA work-queue portal takes one 64-byte descriptor per atomic store (MOVDIR64B / ENQCMD).
//! A KVM guest without those instructions, or any guest whose store is emulated, reaches the VMM
//! as a sequence of MMIO exits of at most 8 bytes each: a `rep movsq` of 64 bytes gives eight
//! 8-byte exits, a 16-byte SSE store two. [`PortalAssembler`] collects the pieces by their offset
//! inside the 64-byte window and hands out one descriptor when all 64 bytes have arrived.
//!
//! Rules (each tested below):
//!
//! * pieces may come in any order; the descriptor is what the bytes say, by offset;
//! * pieces are tracked per (vCPU, window): two vCPUs storing to the same window interleave
//!   their exits, but each CPU's 64-byte store is atomic on hardware;
//! * a piece that rewrites a byte already received for the pending descriptor means a new
//!   descriptor started before the last one was complete: the partial one is discarded (never
//!   submitted) and the piece starts a new one;
//! * a read of a window with a partial descriptor discards it (a 64-byte store cannot be
//!   observed half-done, so software that reads in between is not doing a portal write);
//! * a piece longer than 8 bytes, empty, or crossing a 64-byte boundary is refused and
//!   discards the partial descriptors of the windows it touches.
//!
//! What cannot be detected: a new descriptor whose pieces exactly fill the bytes a torn one left
//! missing (e.g. the old one wrote bytes 8..64, the new one only bytes 0..8) is indistinguishable
//! from one descriptor written out of order; a guest that stores descriptors with ordinary
//! forward `rep movsq` never produces this.

use std::collections::HashMap;

/// Bytes in a portal descriptor.
pub const PORTAL_BYTES: usize = 64;

/// The largest piece the assembler accepts (one MMIO exit of a 64-bit store).
pub const MAX_PIECE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Partial {
    bytes: [u8; PORTAL_BYTES],
    /// Bit `i` set: byte `i` has arrived.
    mask: u64,
}

impl Partial {
    const EMPTY: Partial = Partial {
        bytes: [0; PORTAL_BYTES],
        mask: 0,
    };
}

/// Counters of what the assembler saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortalStats {
    /// Pieces accepted.
    pub pieces: u64,
    /// Descriptors completed and handed out.
    pub submitted: u64,
    /// Partial descriptors discarded because a piece rewrote bytes already received.
    pub torn_by_overlap: u64,
    /// Partial descriptors discarded because the window was read.
    pub torn_by_read: u64,
    /// Partial descriptors discarded by a refused piece.
    pub torn_by_bad_piece: u64,
    /// Pieces refused (empty, longer than 8 bytes, or crossing a 64-byte boundary).
    pub bad_pieces: u64,
}

/// One completed descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assembled {
    /// Offset of the 64-byte window in the BAR (a multiple of 64).
    pub window: u64,
    /// The descriptor bytes.
    pub bytes: [u8; PORTAL_BYTES],
}

/// Why a piece was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// Length 0 or above [`MAX_PIECE`].
    #[error("portal write piece of {len} bytes at {offset:#x}: pieces are 1..=8 bytes")]
    BadLength {
        /// Offset in the BAR.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// The piece crosses a 64-byte window boundary.
    #[error("portal write piece {offset:#x}+{len} crosses a 64-byte descriptor boundary")]
    Straddles {
        /// Offset in the BAR.
        offset: u64,
        /// Length.
        len: usize,
    },
}

/// Collects portal-write pieces into 64-byte descriptors (see the module documentation).
#[derive(Debug, Default)]
pub struct PortalAssembler {
    partial: HashMap<(usize, u64), Partial>,
    stats: PortalStats,
}

fn window_of(offset: u64) -> u64 {
    offset & !(PORTAL_BYTES as u64 - 1)
}

fn byte_mask(start: usize, len: usize) -> u64 {
    debug_assert!(start + len <= PORTAL_BYTES && len > 0);
    let ones = if len == 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    ones << start
}

impl PortalAssembler {
    /// An assembler with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it saw so far.
    pub fn stats(&self) -> PortalStats {
        self.stats
    }

    /// Number of (vCPU, window) pairs with a partial descriptor.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn discard_window(&mut self, window: u64) -> u64 {
        let before = self.partial.len();
        self.partial.retain(|&(_, w), _| w != window);
        (before - self.partial.len()) as u64
    }

    /// A store of `data` at BAR offset `offset` by vCPU `vcpu`. Returns the descriptor when this
    /// piece completed one.
    pub fn write(
        &mut self,
        vcpu: usize,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<Assembled>, PieceError> {
        let len = data.len();
        let window = window_of(offset);
        if len == 0 || len > MAX_PIECE {
            self.stats.bad_pieces += 1;
            self.stats.torn_by_bad_piece += self.discard_window(window);
            return Err(PieceError::BadLength { offset, len });
        }
        let start = (offset - window) as usize;
        if start + len > PORTAL_BYTES {
            self.stats.bad_pieces += 1;
            self.stats.torn_by_bad_piece += self.discard_window(window);
            self.stats.torn_by_bad_piece += self.discard_window(window + PORTAL_BYTES as u64);
            return Err(PieceError::Straddles { offset, len });
        }
        self.stats.pieces += 1;
        let mask = byte_mask(start, len);
        let p = self.partial.entry((vcpu, window)).or_insert(Partial::EMPTY);
        if p.mask & mask != 0 {
            // A new descriptor began before the previous one was complete.
            self.stats.torn_by_overlap += 1;
            *p = Partial::EMPTY;
        }
        p.bytes[start..start + len].copy_from_slice(data);
        p.mask |= mask;
        if p.mask != u64::MAX {
            return Ok(None);
        }
        let bytes = p.bytes;
        self.partial.remove(&(vcpu, window));
        self.stats.submitted += 1;
        Ok(Some(Assembled { window, bytes }))
    }

    /// A load of `len` bytes at BAR offset `offset`: discards partial descriptors of the windows
    /// it touches (from any vCPU).
    pub fn read(&mut self, offset: u64, len: usize) {
        let first = window_of(offset);
        let last = window_of(offset.saturating_add(len.max(1) as u64 - 1));
        let mut w = first;
        loop {
            self.stats.torn_by_read += self.discard_window(w);
            if w >= last {
                break;
            }
            w += PORTAL_BYTES as u64;
        }
    }

    /// Forget every partial descriptor (device reset). Not counted as torn.
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(seed: u8) -> [u8; 64] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    /// Feed `d` to window `window` as 8-byte pieces in the order given by `order`.
    fn feed(
        a: &mut PortalAssembler,
        vcpu: usize,
        window: u64,
        d: &[u8; 64],
        order: &[usize],
    ) -> Vec<Assembled> {
        let mut out = Vec::new();
        for &i in order {
            let off = window + 8 * i as u64;
            if let Some(x) = a.write(vcpu, off, &d[8 * i..8 * i + 8]).unwrap() {
                out.push(x);
            }
        }
        out
    }

    #[test]
    fn eight_pieces_in_order_make_one_descriptor() {
        let mut a = PortalAssembler::new();
        let d = descriptor(1);
        let got = feed(&mut a, 0, 0x1000, &d, &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            got,
            vec![Assembled {
                window: 0x1000,
                bytes: d
            }]
        );
        assert_eq!(a.pending(), 0);
        assert_eq!(a.stats().submitted, 1);
        assert_eq!(a.stats().pieces, 8);
    }

    #[test]
    fn any_piece_order_assembles_by_offset() {
        // Several permutations, including reversed (a backwards rep movsq).
        let orders: [[usize; 8]; 4] = [
            [7, 6, 5, 4, 3, 2, 1, 0],
            [3, 0, 7, 1, 6, 2, 5, 4],
            [1, 3, 5, 7, 0, 2, 4, 6],
            [4, 5, 6, 7, 0, 1, 2, 3],
        ];
        for (n, order) in orders.iter().enumerate() {
            let mut a = PortalAssembler::new();
            let d = descriptor(n as u8 + 2);
            let got = feed(&mut a, 0, 0x40 * n as u64, &d, order);
            assert_eq!(got.len(), 1, "order {order:?}");
            assert_eq!(got[0].bytes, d, "order {order:?}");
            assert_eq!(got[0].window, 0x40 * n as u64);
        }
    }

    #[test]
    fn mixed_piece_widths_assemble() {
        // 16-byte SSE stores arrive as 8-byte halves; narrower stores are pieces too.
        let mut a = PortalAssembler::new();
        let d = descriptor(9);
        let mut done = None;
        let cuts = [0, 4, 8, 10, 11, 16, 24, 32, 40, 48, 56, 60, 64];
        for w in cuts.windows(2) {
            let r = a.write(0, w[0] as u64, &d[w[0]..w[1]]).unwrap();
            if w[1] < 64 {
                assert_eq!(r, None, "incomplete after {}", w[1]);
            } else {
                done = r;
            }
        }
        assert_eq!(done.map(|x| x.bytes), Some(d));
    }

    #[test]
    fn partial_descriptor_is_never_submitted() {
        let mut a = PortalAssembler::new();
        let d = descriptor(3);
        let got = feed(&mut a, 0, 0, &d, &[0, 1, 2, 3, 4, 5, 6]);
        assert!(got.is_empty());
        assert_eq!(a.pending(), 1);
        assert_eq!(a.stats().submitted, 0);
    }

    #[test]
    fn new_descriptor_before_completion_discards_the_partial_one() {
        let mut a = PortalAssembler::new();
        let old = descriptor(4);
        let new = descriptor(5);
        assert!(feed(&mut a, 0, 0, &old, &[0, 1, 2]).is_empty());
        // The next descriptor starts at byte 0 again: the old three pieces must not leak into it.
        let got = feed(&mut a, 0, 0, &new, &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, new);
        assert_eq!(a.stats().torn_by_overlap, 1);
        assert_eq!(a.stats().submitted, 1);
    }

    #[test]
    fn duplicate_piece_restarts_and_needs_all_64_bytes_again() {
        let mut a = PortalAssembler::new();
        let d = descriptor(6);
        assert!(feed(&mut a, 0, 0, &d, &[0, 1, 2, 3, 4, 5, 6]).is_empty());
        // Piece 3 again (a retried store): restart from that piece only.
        assert!(feed(&mut a, 0, 0, &d, &[3]).is_empty());
        assert_eq!(a.stats().torn_by_overlap, 1);
        // Piece 7 alone does not complete it: 0..3 and 4..7 are gone.
        assert!(feed(&mut a, 0, 0, &d, &[7]).is_empty());
        let got = feed(&mut a, 0, 0, &d, &[0, 1, 2, 4, 5, 6]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, d);
    }

    #[test]
    fn overlapping_narrow_piece_is_a_duplicate_too() {
        let mut a = PortalAssembler::new();
        a.write(0, 0, &[1; 8]).unwrap();
        // 4 bytes inside the first 8: overlap.
        a.write(0, 4, &[2; 4]).unwrap();
        assert_eq!(a.stats().torn_by_overlap, 1);
    }

    #[test]
    fn read_in_between_discards_the_partial_descriptor() {
        let mut a = PortalAssembler::new();
        let d = descriptor(7);
        assert!(feed(&mut a, 0, 0x80, &d, &[0, 1, 2, 3]).is_empty());
        a.read(0x80 + 0x30, 4);
        assert_eq!(a.pending(), 0);
        assert_eq!(a.stats().torn_by_read, 1);
        // The rest alone never completes a descriptor.
        assert!(feed(&mut a, 0, 0x80, &d, &[4, 5, 6, 7]).is_empty());
        assert_eq!(a.stats().submitted, 0);
        // A read of another window leaves this one alone.
        a.read(0x1000, 8);
        assert_eq!(a.pending(), 1);
    }

    #[test]
    fn windows_and_vcpus_assemble_independently() {
        let mut a = PortalAssembler::new();
        let (d0, d1, d2) = (descriptor(10), descriptor(11), descriptor(12));
        let mut got = Vec::new();
        // Interleave: vCPU 0 window 0, vCPU 1 window 0, vCPU 0 window 0x40.
        for i in 0..8 {
            got.extend(feed(&mut a, 0, 0, &d0, &[i]));
            got.extend(feed(&mut a, 1, 0, &d1, &[7 - i]));
            got.extend(feed(&mut a, 0, 0x40, &d2, &[i]));
        }
        assert_eq!(got.len(), 3);
        assert!(got.contains(&Assembled {
            window: 0,
            bytes: d0
        }));
        assert!(got.contains(&Assembled {
            window: 0,
            bytes: d1
        }));
        assert!(got.contains(&Assembled {
            window: 0x40,
            bytes: d2
        }));
        assert_eq!(a.stats().torn_by_overlap, 0);
    }

    #[test]
    fn bad_pieces_are_refused_and_tear_what_they_touch() {
        let mut a = PortalAssembler::new();
        assert!(matches!(
            a.write(0, 0, &[0; 16]),
            Err(PieceError::BadLength { len: 16, .. })
        ));
        assert!(matches!(
            a.write(0, 0, &[]),
            Err(PieceError::BadLength { len: 0, .. })
        ));
        a.write(0, 0x40, &[1; 8]).unwrap();
        a.write(0, 0x80, &[1; 8]).unwrap();
        // Crosses 0x7f/0x80: refused, tears both windows.
        assert!(matches!(
            a.write(0, 0x7c, &[2; 8]),
            Err(PieceError::Straddles { offset: 0x7c, .. })
        ));
        assert_eq!(a.pending(), 0);
        let s = a.stats();
        assert_eq!((s.bad_pieces, s.torn_by_bad_piece), (3, 2));
    }

    #[test]
    fn clear_forgets_partials() {
        let mut a = PortalAssembler::new();
        a.write(0, 0, &[1; 8]).unwrap();
        a.clear();
        assert_eq!(a.pending(), 0);
        assert_eq!(a.stats().torn_by_overlap, 0);
    }
}
