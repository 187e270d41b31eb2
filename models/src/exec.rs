//! When a model does its work: inside the doorbell write, on an explicit step, or on a thread of
//! its own like real hardware.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// How a model executes submitted work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecMode {
    /// Deterministic: all pending work completes inside the MMIO/portal write that submitted it.
    #[default]
    Immediate,
    /// Deterministic: work waits until the test calls [`Executor::step`] or
    /// [`Executor::run_until_idle`].
    Manual,
    /// Asynchronous: a worker thread completes work after the doorbell, like hardware.
    Threaded,
}

/// The work side of a model: do some pending work.
pub trait Engine: Send + Sync + 'static {
    /// Do one unit of pending work; `false` when there was nothing to do (or the engine is
    /// stuck by injection).
    fn run_pending(&self) -> bool;
}

#[derive(Debug, Default)]
struct Signal {
    kicks: u64,
    stop: bool,
    /// Threaded mode: run the engine at this time even without a kick (delayed completions).
    wake_at: Option<Instant>,
}

/// Schedules an [`Engine`] according to an [`ExecMode`].
#[derive(Debug)]
pub struct Executor {
    mode: ExecMode,
    signal: Arc<(Mutex<Signal>, Condvar)>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Upper bound of work units one kick runs inline, so a self-feeding ring cannot hang a test.
const INLINE_LIMIT: usize = 1 << 22;

impl Executor {
    /// An executor in `mode`; call [`Executor::start`] once the engine exists.
    pub fn new(mode: ExecMode) -> Self {
        Self {
            mode,
            signal: Arc::new((Mutex::new(Signal::default()), Condvar::new())),
            worker: Mutex::new(None),
        }
    }

    /// The mode.
    pub fn mode(&self) -> ExecMode {
        self.mode
    }

    /// In threaded mode, start the worker for `engine` (held weakly: the worker ends when the
    /// model is dropped). Other modes: nothing.
    pub fn start<E: Engine>(&self, engine: Weak<E>) {
        if self.mode != ExecMode::Threaded {
            return;
        }
        let signal = Arc::clone(&self.signal);
        let handle = std::thread::Builder::new()
            .name("passthru-model".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*signal;
                    let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                    while s.kicks == 0 && !s.stop {
                        let now = Instant::now();
                        if s.wake_at.is_some_and(|t| t <= now) {
                            s.wake_at = None;
                            break;
                        }
                        let wait = s
                            .wake_at
                            .map_or(Duration::from_millis(50), |t| t - now)
                            .min(Duration::from_millis(50));
                        s = cv
                            .wait_timeout(s, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        if Weak::strong_count(&engine) == 0 {
                            return;
                        }
                    }
                    if s.stop {
                        return;
                    }
                    s.kicks = 0;
                }
                let Some(e) = engine.upgrade() else { return };
                while e.run_pending() {}
            });
        if let Ok(h) = handle {
            *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
    }

    /// Tell the executor there is new work (called from doorbell / portal writes).
    pub fn kick(&self, engine: &dyn Engine) {
        match self.mode {
            ExecMode::Immediate => {
                for _ in 0..INLINE_LIMIT {
                    if !engine.run_pending() {
                        break;
                    }
                }
            }
            ExecMode::Manual => {}
            ExecMode::Threaded => {
                let (m, cv) = &*self.signal;
                m.lock().unwrap_or_else(|e| e.into_inner()).kicks += 1;
                cv.notify_one();
            }
        }
    }

    /// Threaded mode: run the engine at `at` (or soon after) even if nothing kicks it; the
    /// earliest pending wake-up wins. Other modes: nothing (work there runs on access or step).
    pub fn wake_at(&self, at: Instant) {
        if self.mode != ExecMode::Threaded {
            return;
        }
        let (m, cv) = &*self.signal;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.wake_at = Some(s.wake_at.map_or(at, |t| t.min(at)));
        cv.notify_one();
    }

    /// Manual mode: run one unit of work; returns whether anything ran.
    pub fn step(&self, engine: &dyn Engine) -> bool {
        engine.run_pending()
    }

    /// Manual mode: run until nothing is pending (bounded); returns units run.
    pub fn run_until_idle(&self, engine: &dyn Engine) -> usize {
        let mut n = 0;
        while n < INLINE_LIMIT && engine.run_pending() {
            n += 1;
        }
        n
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let (m, cv) = &*self.signal;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
        if let Some(h) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counter {
        pending: AtomicU32,
        done: AtomicU32,
    }
    impl Engine for Counter {
        fn run_pending(&self) -> bool {
            let p = self.pending.load(Ordering::SeqCst);
            if p == 0 {
                return false;
            }
            self.pending.store(p - 1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            true
        }
    }

    fn counter(n: u32) -> Arc<Counter> {
        Arc::new(Counter {
            pending: AtomicU32::new(n),
            done: AtomicU32::new(0),
        })
    }

    #[test]
    fn immediate_manual_threaded() {
        let c = counter(3);
        Executor::new(ExecMode::Immediate).kick(&*c);
        assert_eq!(c.done.load(Ordering::SeqCst), 3);

        let c = counter(3);
        let x = Executor::new(ExecMode::Manual);
        x.kick(&*c);
        assert_eq!(c.done.load(Ordering::SeqCst), 0);
        assert!(x.step(&*c));
        assert_eq!(x.run_until_idle(&*c), 2);

        let c = counter(5);
        let x = Executor::new(ExecMode::Threaded);
        x.start(Arc::downgrade(&c));
        x.kick(&*c);
        let t = std::time::Instant::now();
        while c.done.load(Ordering::SeqCst) < 5 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(c.done.load(Ordering::SeqCst), 5);
    }
}
