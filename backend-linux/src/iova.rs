//! Usable IOVA ranges and a size-aligned IOVA allocator over them.
//!
//! Ranges are inclusive (`start..=last`), the way IOMMUFD reports them; type1 ranges are
//! converted on the way in. Upstream's allocator is a bump pointer without free; this one is a
//! first-fit free list (lowest address first, so it hands out the same IOVAs as upstream for a
//! sequence of allocations) and supports [`IovaAllocator::free`].

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One usable IOVA range, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub last: u64,
}

impl IovaRange {
    /// A range `start..=last`.
    pub const fn new(start: u64, last: u64) -> Self {
        Self { start, last }
    }
    /// Number of bytes, saturating at `u64::MAX` for the full 64-bit space.
    pub fn len(&self) -> u64 {
        (self.last - self.start).saturating_add(1)
    }
    /// Never true for a well-formed range (start <= last); kept for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.last < self.start
    }
    /// True if `iova..iova+size` lies inside this range.
    pub fn contains(&self, iova: u64, size: u64) -> bool {
        if size == 0 {
            return iova >= self.start && iova <= self.last;
        }
        match iova.checked_add(size - 1) {
            Some(end) => iova >= self.start && end <= self.last,
            None => false,
        }
    }
}

/// Sort `ranges` by start and check they are well formed (start <= last) and disjoint, as
/// upstream asserts after querying them.
pub fn normalize_ranges(who: &str, mut ranges: Vec<IovaRange>) -> Result<Vec<IovaRange>> {
    ranges.sort();
    for r in &ranges {
        if r.start > r.last {
            return Err(Error::Malformed {
                who: who.to_string(),
                what: "IOVA ranges",
                reason: format!("range {:#x}..={:#x} ends before it starts", r.start, r.last),
            });
        }
    }
    for w in ranges.windows(2) {
        if w[1].start <= w[0].last {
            return Err(Error::Malformed {
                who: who.to_string(),
                what: "IOVA ranges",
                reason: format!(
                    "ranges {:#x}..={:#x} and {:#x}..={:#x} overlap",
                    w[0].start, w[0].last, w[1].start, w[1].last
                ),
            });
        }
    }
    Ok(ranges)
}

/// A first-fit allocator of size-aligned IOVA blocks inside a set of ranges.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    ranges: Vec<IovaRange>,
    /// Free space: start -> last (inclusive), disjoint, non-adjacent.
    free: BTreeMap<u64, u64>,
    /// Allocated blocks: start -> size.
    allocated: BTreeMap<u64, u64>,
}

impl IovaAllocator {
    /// An allocator over `ranges` (sorted and validated first).
    pub fn new(ranges: Vec<IovaRange>) -> Result<Self> {
        let ranges = normalize_ranges("IOVA allocator", ranges)?;
        let mut free = BTreeMap::new();
        for r in &ranges {
            free.insert(r.start, r.last);
        }
        let mut a = Self {
            ranges,
            free,
            allocated: BTreeMap::new(),
        };
        a.coalesce_all();
        Ok(a)
    }

    /// The ranges this allocator serves.
    pub fn ranges(&self) -> &[IovaRange] {
        &self.ranges
    }

    /// Allocate `size` bytes aligned to `size`. `size` must be a non-zero power of two.
    pub fn alloc(&mut self, size: u64) -> Result<u64> {
        if size == 0 || !size.is_power_of_two() {
            return Err(Error::InvalidArgument {
                who: "IOVA allocator".into(),
                reason: format!("size {size:#x} is not a non-zero power of two"),
            });
        }
        let mut found = None;
        for (&start, &last) in &self.free {
            let Some(aligned) = align_up(start, size) else {
                continue;
            };
            let Some(end) = aligned.checked_add(size - 1) else {
                continue;
            };
            if aligned >= start && end <= last {
                found = Some((start, last, aligned, end));
                break;
            }
        }
        let (start, last, aligned, end) = found.ok_or(Error::IovaExhausted { size })?;
        self.free.remove(&start);
        if aligned > start {
            self.free.insert(start, aligned - 1);
        }
        if end < last {
            self.free.insert(end + 1, last);
        }
        self.allocated.insert(aligned, size);
        Ok(aligned)
    }

    /// Return a block obtained from [`IovaAllocator::alloc`].
    pub fn free(&mut self, iova: u64) -> Result<()> {
        let size = self.allocated.remove(&iova).ok_or(Error::InvalidArgument {
            who: "IOVA allocator".into(),
            reason: format!("{iova:#x} was not allocated (double free?)"),
        })?;
        let last = iova + (size - 1);
        self.free.insert(iova, last);
        self.coalesce_around(iova);
        Ok(())
    }

    /// Total free bytes (saturating).
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().fold(0u64, |acc, (&s, &l)| {
            acc.saturating_add((l - s).saturating_add(1))
        })
    }

    /// Number of live allocations.
    pub fn allocations(&self) -> usize {
        self.allocated.len()
    }

    fn coalesce_all(&mut self) {
        let old = std::mem::take(&mut self.free);
        let mut cur: Option<(u64, u64)> = None;
        for (s, l) in old {
            cur = match cur {
                Some((cs, cl)) if cl.checked_add(1) == Some(s) => Some((cs, l)),
                Some(c) => {
                    self.free.insert(c.0, c.1);
                    Some((s, l))
                }
                None => Some((s, l)),
            };
        }
        if let Some((s, l)) = cur {
            self.free.insert(s, l);
        }
    }

    fn coalesce_around(&mut self, start: u64) {
        let mut s = start;
        let mut l = self.free[&start];
        // Merge with the predecessor if it ends right before us.
        if let Some((&ps, &pl)) = self.free.range(..s).next_back() {
            if pl.checked_add(1) == Some(s) {
                self.free.remove(&s);
                s = ps;
                self.free.insert(s, l);
            }
        }
        // Merge with the successor if it starts right after us.
        if let Some(next) = l.checked_add(1) {
            if let Some(&nl) = self.free.get(&next) {
                self.free.remove(&next);
                l = nl;
                self.free.insert(s, l);
            }
        }
    }
}

fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const G: u64 = 1 << 30;
    const M2: u64 = 2 << 20;

    #[test]
    fn first_allocation_is_size_aligned_at_range_start() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(0x1000, 0xffff_ffff)]).unwrap();
        assert_eq!(a.alloc(0x1000).unwrap(), 0x1000);
        assert_eq!(a.alloc(M2).unwrap(), M2);
        assert_eq!(a.alloc(0x1000).unwrap(), 0x2000, "first fit reuses the gap");
    }

    #[test]
    fn skips_to_next_range_when_current_is_too_small() {
        let mut a = IovaAllocator::new(vec![
            IovaRange::new(0x10_0000_0000, 0x10_0000_0000 + G - 1),
            IovaRange::new(0, 0xfff_ffff),
        ])
        .unwrap();
        // The 256 MiB range cannot hold 1 GiB; the second one can.
        assert_eq!(a.alloc(G).unwrap(), 0x10_0000_0000);
        assert!(matches!(a.alloc(G), Err(Error::IovaExhausted { size }) if size == G));
        assert_eq!(a.alloc(M2).unwrap(), 0);
    }

    #[test]
    fn arm_reserved_window_is_avoided() {
        // [0x8000000, 0x8100000) reserved: ranges below and above it.
        let mut a = IovaAllocator::new(vec![
            IovaRange::new(0, 0x7ff_ffff),
            IovaRange::new(0x810_0000, 0xffff_ffff),
        ])
        .unwrap();
        let mut got = vec![];
        for _ in 0..64 {
            got.push(a.alloc(M2).unwrap());
        }
        for iova in got {
            assert!(!(iova < 0x810_0000 && iova + M2 > 0x800_0000), "{iova:#x}");
        }
    }

    #[test]
    fn rejects_non_power_of_two_and_zero() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(0, u64::MAX)]).unwrap();
        assert!(matches!(a.alloc(0), Err(Error::InvalidArgument { .. })));
        assert!(matches!(
            a.alloc(3 << 12),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn full_64bit_space_and_top_block_no_overflow() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(u64::MAX - 0xfff, u64::MAX)]).unwrap();
        assert_eq!(a.alloc(0x1000).unwrap(), u64::MAX - 0xfff);
        assert!(a.alloc(0x1000).is_err());
        a.free(u64::MAX - 0xfff).unwrap();
        assert_eq!(a.free_bytes(), 0x1000);
        let mut b = IovaAllocator::new(vec![IovaRange::new(0, u64::MAX)]).unwrap();
        assert_eq!(b.free_bytes(), u64::MAX);
        assert_eq!(b.alloc(1 << 63).unwrap(), 0);
        assert_eq!(b.alloc(1 << 63).unwrap(), 1 << 63);
        assert!(b.alloc(1).is_err());
    }

    #[test]
    fn free_coalesces_and_double_free_is_rejected() {
        let mut a = IovaAllocator::new(vec![IovaRange::new(0, 4 * M2 - 1)]).unwrap();
        let x: Vec<u64> = (0..4).map(|_| a.alloc(M2).unwrap()).collect();
        assert!(a.alloc(M2).is_err());
        a.free(x[1]).unwrap();
        a.free(x[2]).unwrap();
        assert!(a.free(x[2]).is_err(), "double free");
        assert!(a.free(0x1234).is_err(), "never allocated");
        // x[1] and x[2] merged: a 4 MiB aligned block is not available (x[1] = 2M is not
        // 4M-aligned), but two 2 MiB blocks are.
        assert!(a.alloc(2 * M2).is_err());
        a.free(x[0]).unwrap();
        assert_eq!(a.alloc(2 * M2).unwrap(), 0);
        assert_eq!(a.allocations(), 2);
    }

    #[test]
    fn malformed_ranges_are_rejected() {
        assert!(IovaAllocator::new(vec![IovaRange::new(10, 5)]).is_err());
        assert!(IovaAllocator::new(vec![IovaRange::new(0, 10), IovaRange::new(10, 20)]).is_err());
        // Adjacent ranges are fine and merge.
        let a = IovaAllocator::new(vec![IovaRange::new(0, 9), IovaRange::new(10, 19)]).unwrap();
        assert_eq!(a.free_bytes(), 20);
    }

    #[test]
    fn empty_ranges_exhaust_immediately() {
        let mut a = IovaAllocator::new(vec![]).unwrap();
        assert!(matches!(a.alloc(0x1000), Err(Error::IovaExhausted { .. })));
    }

    fn ranges_strategy() -> impl Strategy<Value = Vec<IovaRange>> {
        proptest::collection::vec((1u64..64, 1u64..64), 1..6).prop_map(|v| {
            // Build disjoint, non-adjacent ranges in 4K pages from (gap, length) pairs
            // (adjacent ranges merge; see malformed_ranges_are_rejected).
            let mut out = vec![];
            let mut cur = 0u64;
            for (gap, len) in v {
                let start = cur + gap * 0x1000;
                let last = start + len * 0x1000 - 1;
                out.push(IovaRange::new(start, last));
                cur = last + 1;
            }
            out
        })
    }

    proptest! {
        #[test]
        fn allocations_are_aligned_inside_ranges_and_disjoint(
            ranges in ranges_strategy(),
            ops in proptest::collection::vec((0u32..5, any::<bool>(), any::<prop::sample::Index>()), 1..80),
        ) {
            let mut a = IovaAllocator::new(ranges.clone()).unwrap();
            let total = a.free_bytes();
            let mut live: Vec<(u64, u64)> = vec![];
            for (shift, do_free, idx) in ops {
                if do_free && !live.is_empty() {
                    let i = idx.index(live.len());
                    let (iova, _) = live.swap_remove(i);
                    a.free(iova).unwrap();
                } else {
                    let size = 0x1000u64 << shift;
                    match a.alloc(size) {
                        Ok(iova) => {
                            prop_assert_eq!(iova % size, 0);
                            prop_assert!(ranges.iter().any(|r| r.contains(iova, size)));
                            for &(o, os) in &live {
                                prop_assert!(iova + size <= o || o + os <= iova, "overlap");
                            }
                            live.push((iova, size));
                        }
                        Err(Error::IovaExhausted { .. }) => {
                            // Exhaustion must be real: no aligned free slot exists.
                            let fits = ranges.iter().any(|r| {
                                let mut x = align_up(r.start, size).unwrap();
                                while r.contains(x, size) {
                                    if live.iter().all(|&(o, os)| x + size <= o || o + os <= x) {
                                        return true;
                                    }
                                    x += size;
                                }
                                false
                            });
                            prop_assert!(!fits, "allocator said exhausted but a slot exists");
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                let used: u64 = live.iter().map(|&(_, s)| s).sum();
                prop_assert_eq!(a.free_bytes() + used, total);
            }
            for (iova, _) in live {
                a.free(iova).unwrap();
            }
            prop_assert_eq!(a.free_bytes(), total);
            prop_assert_eq!(a.allocations(), 0);
        }
    }
}
