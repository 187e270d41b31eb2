//! # passthru-models
//!
//! Software devices behind the same seam a real BAR offers: register I/O, 64-byte portal writes,
//! configuration space, MSI/MSI-X raise, with DMA through an IOVA translation table the test
//! fills. They let the drivers' whole test suite run on a machine without the hardware.
//!
//! Common pieces:
//! * [`iommu`]: [`iommu::HostMemory`] and the [`iommu::Iommu`] translation table (unmapped IOVA →
//!   [`iommu::DmaFault`]).
//! * [`irq`]: [`irq::MsiSink`], counting interrupts per vector like VFIO's eventfds.
//! * [`config`]: [`config::ConfigSpace`] with write masks and capability helpers.
//! * [`function`]: the [`function::DeviceModel`] trait and [`function::ModelFunction`], which
//!   makes a model a `PciFunction`.
//! * [`exec`]: [`exec::ExecMode`] (immediate, manual step, threaded) and [`exec::Executor`].
//! * [`StdClock`]: a `Clock` on `std::time::Instant`.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod cbdma;
pub mod config;
pub mod dsa;
pub mod edu;
pub mod exec;
pub mod function;
pub mod iommu;
pub mod irq;

use std::time::Instant;

/// A monotonic [`passthru_core::mmio::Clock`] on `std::time::Instant`; `delay_ns` sleeps for
/// long delays and spins for short ones.
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: Instant,
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl StdClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl passthru_core::mmio::Clock for StdClock {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
    fn delay_ns(&self, ns: u64) {
        if ns >= 50_000 {
            std::thread::sleep(std::time::Duration::from_nanos(ns));
        } else {
            let t = Instant::now();
            while (t.elapsed().as_nanos() as u64) < ns {
                std::hint::spin_loop();
            }
        }
    }
}
