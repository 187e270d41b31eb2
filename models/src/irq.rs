//! Interrupt delivery from models: an MSI/MSI-X sink that counts raises per vector, like the
//! eventfds VFIO attaches to a device's vectors.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use passthru_core::mmio::IrqKind;

#[derive(Debug, Default)]
struct State {
    kind: Option<IrqKind>,
    /// Enabled vector range `first..first+count`.
    first: u32,
    count: u32,
    /// Raises delivered and not yet taken, per vector.
    counts: Vec<u64>,
    /// Raises while the vector was not enabled (a real device would set the PBA bit / drop).
    undelivered: Vec<u64>,
    /// Injected: drop the next N raises of a vector.
    drop_next: Vec<u32>,
    /// Every raise delivered, in order (vector), for ordering checks.
    log: Vec<u32>,
}

/// Counts interrupts raised by a model, per vector.
///
/// A raise is *delivered* only to vectors enabled with [`MsiSink::enable`] (what
/// `PciFunction::irq_enable` does for a model); others are counted as undelivered.
#[derive(Debug)]
pub struct MsiSink {
    vectors: u32,
    state: Mutex<State>,
    cv: Condvar,
}

impl MsiSink {
    /// A sink for a function with `vectors` MSI/MSI-X vectors.
    pub fn new(vectors: u32) -> Self {
        let n = vectors as usize;
        Self {
            vectors,
            state: Mutex::new(State {
                counts: vec![0; n],
                undelivered: vec![0; n],
                drop_next: vec![0; n],
                ..State::default()
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of vectors the function has.
    pub fn vectors(&self) -> u32 {
        self.vectors
    }

    /// Connect vectors `first..first+count` of `kind`. Fails if the range exceeds the vectors.
    pub fn enable(&self, kind: IrqKind, first: u32, count: u32) -> bool {
        if first
            .checked_add(count)
            .is_none_or(|end| end > self.vectors)
        {
            return false;
        }
        let mut s = self.lock();
        s.kind = Some(kind);
        s.first = first;
        s.count = count;
        true
    }

    /// Disconnect `kind` (only if it is the enabled kind).
    pub fn disable(&self, kind: IrqKind) {
        let mut s = self.lock();
        if s.kind == Some(kind) {
            s.kind = None;
            s.count = 0;
        }
    }

    /// True if `vector` of `kind` is enabled (connected).
    pub fn is_enabled(&self, kind: IrqKind, vector: u32) -> bool {
        let s = self.lock();
        s.kind == Some(kind) && vector >= s.first && vector - s.first < s.count
    }

    /// The enabled kind, if any.
    pub fn enabled_kind(&self) -> Option<IrqKind> {
        self.lock().kind
    }

    /// Raise `vector` (called by models).
    pub fn raise(&self, vector: u32) {
        let mut s = self.lock();
        let v = vector as usize;
        if v >= s.counts.len() {
            return;
        }
        if s.drop_next[v] > 0 {
            s.drop_next[v] -= 1;
            return;
        }
        let enabled = s.kind.is_some() && vector >= s.first && vector - s.first < s.count;
        if enabled {
            s.counts[v] += 1;
            s.log.push(vector);
            self.cv.notify_all();
        } else {
            s.undelivered[v] += 1;
        }
    }

    /// Take (and reset) the count of delivered raises of `vector`, like an 8-byte eventfd read
    /// in non-blocking mode: 0 means nothing pending.
    pub fn take(&self, vector: u32) -> u64 {
        let mut s = self.lock();
        s.counts
            .get_mut(vector as usize)
            .map(std::mem::take)
            .unwrap_or(0)
    }

    /// Delivered, not yet taken raises of `vector`.
    pub fn pending(&self, vector: u32) -> u64 {
        self.lock()
            .counts
            .get(vector as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Raises of `vector` that arrived while it was not enabled.
    pub fn undelivered(&self, vector: u32) -> u64 {
        self.lock()
            .undelivered
            .get(vector as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Wait up to `timeout` for `vector` to have a delivered raise, then take the count.
    pub fn wait_take(&self, vector: u32, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            let n = s.counts.get(vector as usize).copied().unwrap_or(0);
            if n > 0 {
                s.counts[vector as usize] = 0;
                return n;
            }
            let now = Instant::now();
            if now >= deadline {
                return 0;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Error injection: silently drop the next `n` raises of `vector`.
    pub fn inject_drop(&self, vector: u32, n: u32) {
        if let Some(d) = self.lock().drop_next.get_mut(vector as usize) {
            *d += n;
        }
    }

    /// Every delivered raise so far, in order.
    pub fn log(&self) -> Vec<u32> {
        self.lock().log.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_only_when_enabled_and_drop_injection() {
        let s = MsiSink::new(4);
        s.raise(1);
        assert_eq!(s.take(1), 0);
        assert_eq!(s.undelivered(1), 1);
        assert!(s.enable(IrqKind::MsiX, 0, 4));
        assert!(!s.enable(IrqKind::MsiX, 2, 4));
        s.raise(1);
        s.raise(1);
        assert_eq!(s.pending(1), 2);
        assert_eq!(s.take(1), 2);
        assert_eq!(s.take(1), 0);
        s.inject_drop(0, 1);
        s.raise(0);
        assert_eq!(s.take(0), 0);
        s.raise(0);
        assert_eq!(s.wait_take(0, Duration::from_millis(10)), 1);
        assert_eq!(s.wait_take(0, Duration::from_millis(1)), 0);
        s.disable(IrqKind::Msi); // not the enabled kind: no effect
        s.raise(3);
        assert_eq!(s.take(3), 1);
        s.raise(99); // out of range: ignored, no panic
        assert_eq!(s.log(), vec![1, 1, 0, 3]);
    }
}
