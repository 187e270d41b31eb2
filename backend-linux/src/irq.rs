//! Interrupts: VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS with eventfds (INTx, MSI, MSI-X),
//! software triggering, INTx unmask, re-enable after reset, and eventfd read helpers.
//!
//! Unlike upstream's `vfio_pci_irq_disable` (`tools/testing/selftests/vfio/lib/vfio_pci_device.c`), which closes the
//! eventfds of every index, disabling one index closes only that index's eventfds.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use passthru_core::mmio::IrqKind;
use vfio_bindings::bindings::vfio as vb;

use crate::device::VfioPciDevice;
use crate::error::{Error, Result};
use crate::sys::{ioctl_plain, nr, with_data, Errno, IoctlArg, Sys, SysFd};

/// VFIO IRQ index of an interrupt kind (VFIO_PCI_INTX/MSI/MSIX_IRQ_INDEX).
pub const fn irq_index(kind: IrqKind) -> u32 {
    match kind {
        IrqKind::Intx => vb::VFIO_PCI_INTX_IRQ_INDEX,
        IrqKind::Msi => vb::VFIO_PCI_MSI_IRQ_INDEX,
        IrqKind::MsiX => vb::VFIO_PCI_MSIX_IRQ_INDEX,
    }
}

/// A short name ("INTx", "MSI", "MSI-X").
pub const fn kind_name(kind: IrqKind) -> &'static str {
    match kind {
        IrqKind::Intx => "INTx",
        IrqKind::Msi => "MSI",
        IrqKind::MsiX => "MSI-X",
    }
}

pub(crate) const fn slot(kind: IrqKind) -> usize {
    match kind {
        IrqKind::Intx => 0,
        IrqKind::Msi => 1,
        IrqKind::MsiX => 2,
    }
}

/// What VFIO_DEVICE_GET_IRQ_INFO says about one IRQ index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrqInfo {
    /// The IRQ index.
    pub index: u32,
    /// VFIO_IRQ_INFO_* bits.
    pub flags: u32,
    /// Number of vectors (0 = unimplemented).
    pub count: u32,
}

impl IrqInfo {
    /// Supports eventfd signalling.
    pub fn eventfd(&self) -> bool {
        self.flags & vb::VFIO_IRQ_INFO_EVENTFD != 0
    }
    /// Supports MASK/UNMASK.
    pub fn maskable(&self) -> bool {
        self.flags & vb::VFIO_IRQ_INFO_MASKABLE != 0
    }
    /// Automatically masked after signalling (level-triggered INTx).
    pub fn automasked(&self) -> bool {
        self.flags & vb::VFIO_IRQ_INFO_AUTOMASKED != 0
    }
    /// Vectors cannot be added without disabling the index.
    pub fn noresize(&self) -> bool {
        self.flags & vb::VFIO_IRQ_INFO_NORESIZE != 0
    }
}

/// VFIO_DEVICE_GET_IRQ_INFO for `index`.
pub fn get_irq_info(sys: &dyn Sys, fd: RawFd, index: u32) -> Result<IrqInfo, Errno> {
    let mut ii = vb::vfio_irq_info {
        argsz: std::mem::size_of::<vb::vfio_irq_info>() as u32,
        flags: 0,
        index,
        count: 0,
    };
    // SAFETY: a vfio_irq_info; no pointers.
    unsafe { ioctl_plain(sys, fd, nr::VFIO_DEVICE_GET_IRQ_INFO, &mut ii) }?;
    Ok(IrqInfo {
        index,
        flags: ii.flags,
        count: ii.count,
    })
}

/// VFIO_DEVICE_SET_IRQS with `flags`, `index`, `start`, `count` and `data` (eventfds as
/// native-endian i32s, bools as u8s, or nothing).
pub fn set_irqs(
    sys: &dyn Sys,
    fd: RawFd,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[u8],
) -> Result<(), Errno> {
    let header = vb::vfio_irq_set {
        argsz: (std::mem::size_of::<vb::vfio_irq_set>() + data.len()) as u32,
        flags,
        index,
        start,
        count,
        ..Default::default()
    };
    let mut buf = with_data(&header, data);
    // SAFETY: a vfio_irq_set header followed by its data array; no pointers.
    unsafe { sys.ioctl(fd, nr::VFIO_DEVICE_SET_IRQS, IoctlArg::Buf(&mut buf)) }.map(|_| ())
}

fn fds_bytes(fds: &[RawFd]) -> Vec<u8> {
    fds.iter().flat_map(|f| f.to_ne_bytes()).collect()
}

/// Per-index eventfds of a device (slot = vector number; `None` = unused).
#[derive(Debug, Default)]
pub(crate) struct IrqState {
    pub(crate) fds: [Vec<Option<SysFd>>; 3],
}

/// Non-blocking check of an eventfd: if it is readable, read and return its counter.
pub fn eventfd_take(sys: &dyn Sys, fd: RawFd) -> Result<Option<u64>, Errno> {
    if !sys.poll_readable(fd, 0)? {
        return Ok(None);
    }
    eventfd_read(sys, fd).map(Some)
}

/// Wait up to `timeout` for an eventfd to become readable, then read its counter.
/// `Ok(None)` on timeout.
///
/// A timeout too large to represent waits forever. The eventfds this crate creates are
/// blocking (as upstream's are), so only one reader per eventfd should use these helpers.
pub fn eventfd_wait(sys: &dyn Sys, fd: RawFd, timeout: Duration) -> Result<Option<u64>, Errno> {
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return if sys.poll_readable(fd, -1)? {
            eventfd_read(sys, fd).map(Some)
        } else {
            Ok(None)
        };
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        if sys.poll_readable(fd, ms)? {
            return eventfd_read(sys, fd).map(Some);
        }
        if left.is_zero() || Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// Read the 8-byte counter of a readable eventfd (resetting it).
pub fn eventfd_read(sys: &dyn Sys, fd: RawFd) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    let n = sys.read(fd, &mut b)?;
    if n != 8 {
        return Err(Errno::EIO);
    }
    Ok(u64::from_ne_bytes(b))
}

/// Add 1 to an eventfd's counter (useful to fake an interrupt in tests).
pub fn eventfd_signal(sys: &dyn Sys, fd: RawFd) -> Result<(), Errno> {
    let n = sys.write(fd, &1u64.to_ne_bytes())?;
    if n != 8 {
        return Err(Errno::EIO);
    }
    Ok(())
}

impl VfioPciDevice {
    /// Enable `count` vectors of `kind` starting at `first`, each with a fresh eventfd
    /// (SET_IRQS DATA_EVENTFD | ACTION_TRIGGER). Every slot in the range must be unused and the
    /// range must fit the device's vector count.
    pub fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<()> {
        let info = self.irq_info(kind);
        let end = first.checked_add(count);
        if count == 0 || end.is_none_or(|e| e > info.count) {
            return Err(Error::InvalidArgument {
                who: self.bdf().to_string(),
                reason: format!(
                    "{} vectors {first}..{first}+{count} exceed the device's {} vectors",
                    kind_name(kind),
                    info.count
                ),
            });
        }
        let sys = self.sys().clone();
        let mut st = self.irq_state();
        let v = &mut st.fds[slot(kind)];
        let end = (first + count) as usize;
        if v.len() < end {
            v.resize_with(end, || None);
        }
        if let Some(busy) = (first as usize..end).find(|&i| v[i].is_some()) {
            return Err(Error::InvalidArgument {
                who: self.bdf().to_string(),
                reason: format!("{} vector {busy} is already enabled", kind_name(kind)),
            });
        }
        let mut new = Vec::with_capacity(count as usize);
        for _ in 0..count {
            new.push(SysFd::eventfd(&sys).map_err(|e| Error::os(self.bdf(), "eventfd", e))?);
        }
        let raws: Vec<RawFd> = new.iter().map(SysFd::raw).collect();
        set_irqs(
            &*sys,
            self.raw_fd(),
            vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index(kind),
            first,
            count,
            &fds_bytes(&raws),
        )
        .map_err(|e| Error::os(self.bdf(), "VFIO_DEVICE_SET_IRQS (enable)", e))?;
        for (i, fd) in new.into_iter().enumerate() {
            v[first as usize + i] = Some(fd);
        }
        Ok(())
    }

    /// Disable every vector of `kind` (SET_IRQS DATA_NONE | ACTION_TRIGGER, count 0) and close
    /// that index's eventfds only.
    pub fn irq_disable(&self, kind: IrqKind) -> Result<()> {
        self.irq_trigger_none(kind, "VFIO_DEVICE_SET_IRQS (disable)")?;
        self.irq_state().fds[slot(kind)].clear();
        Ok(())
    }

    /// SET_IRQS DATA_NONE | ACTION_TRIGGER with count 0: the kernel disables the whole index.
    fn irq_trigger_none(&self, kind: IrqKind, op: &'static str) -> Result<()> {
        set_irqs(
            &**self.sys(),
            self.raw_fd(),
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index(kind),
            0,
            0,
            &[],
        )
        .map_err(|e| Error::os(self.bdf(), op, e))
    }

    /// Re-arm `kind` after VFIO_DEVICE_RESET (a function reset clears the MSI/MSI-X enable bits
    /// behind VFIO's back), keeping the same user eventfds: the index is first disabled in the
    /// kernel (SET_IRQS DATA_NONE | TRIGGER, count 0) so the second call re-runs the full enable
    /// path, then every held eventfd is set again (DATA_EVENTFD | TRIGGER, -1 for gaps).
    pub fn irq_reenable(&self, kind: IrqKind) -> Result<()> {
        let st = self.irq_state();
        if st.fds[slot(kind)].iter().all(Option::is_none) {
            return Ok(());
        }
        self.irq_trigger_none(kind, "VFIO_DEVICE_SET_IRQS (re-enable: disable)")?;
        let v = &st.fds[slot(kind)];
        let Some(first) = v.iter().position(Option::is_some) else {
            return Ok(());
        };
        let last = v.iter().rposition(Option::is_some).unwrap_or(first);
        let raws: Vec<RawFd> = v[first..=last]
            .iter()
            .map(|f| f.as_ref().map_or(-1, SysFd::raw))
            .collect();
        set_irqs(
            &**self.sys(),
            self.raw_fd(),
            vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index(kind),
            first as u32,
            raws.len() as u32,
            &fds_bytes(&raws),
        )
        .map_err(|e| Error::os(self.bdf(), "VFIO_DEVICE_SET_IRQS (re-enable)", e))
    }

    /// Make VFIO signal vector `vector` of `kind` in software (SET_IRQS DATA_NONE |
    /// ACTION_TRIGGER, count 1).
    pub fn irq_trigger(&self, kind: IrqKind, vector: u32) -> Result<()> {
        set_irqs(
            &**self.sys(),
            self.raw_fd(),
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index(kind),
            vector,
            1,
            &[],
        )
        .map_err(|e| Error::os(self.bdf(), "VFIO_DEVICE_SET_IRQS (trigger)", e))
    }

    /// Unmask INTx after it fired (SET_IRQS DATA_NONE | ACTION_UNMASK on index 0).
    pub fn intx_unmask(&self) -> Result<()> {
        set_irqs(
            &**self.sys(),
            self.raw_fd(),
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK,
            vb::VFIO_PCI_INTX_IRQ_INDEX,
            0,
            1,
            &[],
        )
        .map_err(|e| Error::os(self.bdf(), "VFIO_DEVICE_SET_IRQS (INTx unmask)", e))
    }

    /// The eventfd of an enabled vector.
    pub fn irq_eventfd(&self, kind: IrqKind, vector: u32) -> Option<RawFd> {
        self.irq_state().fds[slot(kind)]
            .get(vector as usize)
            .and_then(|f| f.as_ref().map(SysFd::raw))
    }

    /// Number of vectors of `kind` we currently hold eventfds for.
    pub fn irq_enabled_count(&self, kind: IrqKind) -> usize {
        self.irq_state().fds[slot(kind)]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }

    fn vector_fd(&self, kind: IrqKind, vector: u32) -> Result<RawFd> {
        self.irq_eventfd(kind, vector)
            .ok_or_else(|| Error::InvalidArgument {
                who: self.bdf().to_string(),
                reason: format!("{} vector {vector} is not enabled", kind_name(kind)),
            })
    }

    /// Non-blocking: if vector `vector` of `kind` has fired, consume and return the count.
    pub fn irq_take(&self, kind: IrqKind, vector: u32) -> Result<Option<u64>> {
        let fd = self.vector_fd(kind, vector)?;
        eventfd_take(&**self.sys(), fd).map_err(|e| Error::os(self.bdf(), "eventfd read", e))
    }

    /// True if an interrupt is pending on the vector (consumes it, like upstream's read).
    pub fn irq_pending(&self, kind: IrqKind, vector: u32) -> Result<bool> {
        Ok(self.irq_take(kind, vector)?.is_some())
    }

    /// Wait up to `timeout` for the vector to fire; returns the eventfd count, or
    /// [`Error::IrqTimeout`].
    pub fn irq_wait(&self, kind: IrqKind, vector: u32, timeout: Duration) -> Result<u64> {
        let fd = self.vector_fd(kind, vector)?;
        eventfd_wait(&**self.sys(), fd, timeout)
            .map_err(|e| Error::os(self.bdf(), "eventfd poll", e))?
            .ok_or_else(|| Error::IrqTimeout {
                bdf: self.bdf().to_string(),
                kind: kind_name(kind),
                vector,
                timeout_ms: timeout.as_millis() as u64,
            })
    }
}
