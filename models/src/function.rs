//! The seam adapter: any [`DeviceModel`] becomes a [`PciFunction`] whose BARs are
//! [`RegisterIo`], so the same drivers that run on VFIO run on the model.

use std::sync::{Arc, Mutex, MutexGuard};

use passthru_core::mmio::{FunctionError, IrqKind, PciFunction, PortalError, RegisterIo};

use crate::config::ConfigSpace;
use crate::irq::MsiSink;

/// Width of an MMIO access in bytes (1, 2, 4 or 8).
pub type Width = u8;

/// The PCI-level state every model has: configuration space and interrupt sink.
#[derive(Debug)]
pub struct PciState {
    config: Mutex<ConfigSpace>,
    /// Interrupts raised by the model.
    pub msi: Arc<MsiSink>,
}

impl PciState {
    /// State with the given configuration space and `vectors` interrupt vectors.
    pub fn new(config: ConfigSpace, vectors: u32) -> Self {
        Self {
            config: Mutex::new(config),
            msi: Arc::new(MsiSink::new(vectors)),
        }
    }

    /// Lock the configuration space.
    pub fn config(&self) -> MutexGuard<'_, ConfigSpace> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// COMMAND.bus_master: a model must not DMA while it is clear.
    pub fn bus_master(&self) -> bool {
        self.config().bus_master()
    }

    /// Raise interrupt `vector` towards the sink.
    pub fn raise(&self, vector: u32) {
        self.msi.raise(vector);
    }
}

/// A software device: registers per BAR, 64-byte portal writes, reset.
///
/// The adapter ([`ModelBar`]) answers for every model while COMMAND.memory is clear: reads return
/// all ones (master abort) and writes and portal submissions are dropped, as on a PCI bus.
///
/// Accesses must never panic and never touch host memory outside the model's own state and what
/// its [`crate::iommu::Iommu`] translates.
pub trait DeviceModel: Send + Sync + 'static {
    /// Short name for messages (`"dsa-model"`).
    fn name(&self) -> &'static str;
    /// Configuration space and interrupt sink.
    fn pci(&self) -> &PciState;
    /// Length of memory BAR `index`, or `None` if absent.
    fn bar_len(&self, index: u8) -> Option<usize>;
    /// A register read of `width` bytes at `offset` of BAR `bar` (offset in range and aligned).
    fn mmio_read(&self, bar: u8, offset: usize, width: Width) -> u64;
    /// A register write of `width` bytes at `offset` of BAR `bar` (offset in range and aligned).
    fn mmio_write(&self, bar: u8, offset: usize, width: Width, value: u64);
    /// A 64-byte atomic write (MOVDIR64B) at `offset` of BAR `bar`. Default: the BAR has no
    /// portals, the write is treated as unsupported.
    fn portal_write(&self, bar: u8, offset: usize, data: &[u8; 64]) -> Result<(), PortalError> {
        let _ = (bar, offset, data);
        Err(PortalError::Unsupported)
    }
    /// Function-level reset: every register back to its reset value.
    fn reset(&self);
}

/// A model seen as a PCI function (cheap to clone: it is an `Arc`).
pub struct ModelFunction<M: DeviceModel> {
    model: Arc<M>,
}

impl<M: DeviceModel> Clone for ModelFunction<M> {
    fn clone(&self) -> Self {
        Self {
            model: Arc::clone(&self.model),
        }
    }
}

impl<M: DeviceModel> std::fmt::Debug for ModelFunction<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFunction")
            .field("model", &self.model.name())
            .finish()
    }
}

impl<M: DeviceModel> ModelFunction<M> {
    /// Wrap a model.
    pub fn new(model: Arc<M>) -> Self {
        Self { model }
    }

    /// The model itself (for error injection and inspection).
    pub fn model(&self) -> &Arc<M> {
        &self.model
    }

    /// The model's interrupt sink.
    pub fn msi(&self) -> &Arc<MsiSink> {
        &self.model.pci().msi
    }
}

/// One BAR of a model.
pub struct ModelBar<M: DeviceModel> {
    model: Arc<M>,
    index: u8,
    len: usize,
}

impl<M: DeviceModel> Clone for ModelBar<M> {
    fn clone(&self) -> Self {
        Self {
            model: Arc::clone(&self.model),
            index: self.index,
            len: self.len,
        }
    }
}

impl<M: DeviceModel> std::fmt::Debug for ModelBar<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ModelBar({} BAR{}, {:#x})",
            self.model.name(),
            self.index,
            self.len
        )
    }
}

impl<M: DeviceModel> ModelBar<M> {
    fn ok(&self, offset: usize, width: usize) -> bool {
        offset.is_multiple_of(width) && offset.checked_add(width).is_some_and(|e| e <= self.len)
    }
    /// COMMAND.memory: with memory decode off the function does not claim the access, so a
    /// read completes as a master abort (all ones) and a write goes nowhere.
    fn decodes(&self) -> bool {
        self.model.pci().config().memory_enabled()
    }
    fn read(&self, offset: usize, width: Width) -> Option<u64> {
        (self.ok(offset, usize::from(width)) && self.decodes())
            .then(|| self.model.mmio_read(self.index, offset, width))
    }
    fn write(&self, offset: usize, width: Width, value: u64) {
        if self.ok(offset, usize::from(width)) && self.decodes() {
            self.model.mmio_write(self.index, offset, width, value);
        }
    }
}

impl<M: DeviceModel> RegisterIo for ModelBar<M> {
    fn len(&self) -> usize {
        self.len
    }
    fn read8(&self, offset: usize) -> u8 {
        self.read(offset, 1).map_or(u8::MAX, |v| v as u8)
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read(offset, 2).map_or(u16::MAX, |v| v as u16)
    }
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset, 4).map_or(u32::MAX, |v| v as u32)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.read(offset, 8).unwrap_or(u64::MAX)
    }
    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, 1, value.into())
    }
    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, 2, value.into())
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, 4, value.into())
    }
    fn write64(&self, offset: usize, value: u64) {
        self.write(offset, 8, value)
    }
    fn submit64(&self, offset: usize, descriptor: &[u8; 64]) -> Result<(), PortalError> {
        if !offset.is_multiple_of(64) {
            return Err(PortalError::Misaligned { offset });
        }
        if offset.checked_add(64).is_none_or(|e| e > self.len) {
            return Err(PortalError::OutOfRange {
                offset,
                len: self.len,
            });
        }
        if !self.decodes() {
            // Posted write to an address nobody claims: dropped, as on a real bus.
            return Ok(());
        }
        self.model.portal_write(self.index, offset, descriptor)
    }
}

impl<M: DeviceModel> PciFunction for ModelFunction<M> {
    type Bar = ModelBar<M>;

    fn bar(&self, index: u8) -> Result<Self::Bar, FunctionError> {
        let len = self
            .model
            .bar_len(index)
            .ok_or(FunctionError::NoSuchBar(index))?;
        Ok(ModelBar {
            model: Arc::clone(&self.model),
            index,
            len,
        })
    }

    fn config_read8(&self, offset: u16) -> Result<u8, FunctionError> {
        check_cfg(offset, 1)?;
        Ok(self.model.pci().config().read8(offset.into()))
    }
    fn config_read16(&self, offset: u16) -> Result<u16, FunctionError> {
        check_cfg(offset, 2)?;
        Ok(self.model.pci().config().read16(offset.into()))
    }
    fn config_read32(&self, offset: u16) -> Result<u32, FunctionError> {
        check_cfg(offset, 4)?;
        Ok(self.model.pci().config().read32(offset.into()))
    }
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), FunctionError> {
        check_cfg(offset, 1)?;
        self.model
            .pci()
            .config()
            .write(offset.into(), 1, value.into());
        Ok(())
    }
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), FunctionError> {
        check_cfg(offset, 2)?;
        self.model
            .pci()
            .config()
            .write(offset.into(), 2, value.into());
        Ok(())
    }
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), FunctionError> {
        check_cfg(offset, 4)?;
        self.model.pci().config().write(offset.into(), 4, value);
        Ok(())
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        if self.model.pci().msi.enable(kind, first, count) {
            Ok(())
        } else {
            Err(FunctionError::Os {
                op: "irq_enable (vector range beyond the model's vectors)",
                errno: 22,
            })
        }
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        self.model.pci().msi.disable(kind);
        Ok(())
    }
    fn reset(&self) -> Result<(), FunctionError> {
        self.model.reset();
        Ok(())
    }
    /// The interrupt hook on the model's MSI sink: waits (condition variable) for a delivered
    /// raise of `vector` and takes the count, like a VFIO eventfd.
    fn irq_wait(&self, kind: IrqKind, vector: u32, timeout_ns: u64) -> Result<u64, FunctionError> {
        let msi = &self.model.pci().msi;
        if !msi.is_enabled(kind, vector) {
            return Err(FunctionError::NoSuchVector { kind, vector });
        }
        Ok(msi.wait_take(vector, std::time::Duration::from_nanos(timeout_ns)))
    }
}

fn check_cfg(offset: u16, width: u16) -> Result<(), FunctionError> {
    if !offset.is_multiple_of(width)
        || usize::from(offset) + usize::from(width) > crate::config::CONFIG_SIZE
    {
        return Err(FunctionError::ConfigOutOfRange { offset });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Scratch {
        pci: PciState,
        reg: AtomicU64,
        portal: Mutex<Vec<(usize, [u8; 64])>>,
    }
    impl DeviceModel for Scratch {
        fn name(&self) -> &'static str {
            "scratch"
        }
        fn pci(&self) -> &PciState {
            &self.pci
        }
        fn bar_len(&self, index: u8) -> Option<usize> {
            (index == 0).then_some(0x1000)
        }
        fn mmio_read(&self, _bar: u8, offset: usize, _width: Width) -> u64 {
            if offset == 8 {
                self.reg.load(Ordering::SeqCst)
            } else {
                0
            }
        }
        fn mmio_write(&self, _bar: u8, offset: usize, _width: Width, value: u64) {
            if offset == 8 {
                self.reg.store(value, Ordering::SeqCst);
                self.pci.raise(0);
            }
        }
        fn portal_write(
            &self,
            _bar: u8,
            offset: usize,
            data: &[u8; 64],
        ) -> Result<(), PortalError> {
            self.portal.lock().unwrap().push((offset, *data));
            Ok(())
        }
        fn reset(&self) {
            self.reg.store(0, Ordering::SeqCst);
        }
    }

    #[test]
    fn adapter_routes_registers_config_irqs_and_portals() {
        let m = Arc::new(Scratch {
            pci: PciState::new(ConfigSpace::new(0x1234, 0x5678, 0xff0000, 1), 2),
            reg: AtomicU64::new(0),
            portal: Mutex::new(Vec::new()),
        });
        let f = ModelFunction::new(Arc::clone(&m));
        assert_eq!(f.config_read16(0).unwrap(), 0x1234);
        assert_eq!(f.config_read32(0).unwrap(), 0x5678_1234);
        assert!(f.config_read32(2).is_err(), "misaligned config access");
        assert!(f.config_read8(4096).is_err());
        assert!(matches!(f.bar(1), Err(FunctionError::NoSuchBar(1))));
        let bar = f.bar(0).unwrap();
        // Memory decode off (COMMAND = 0 at power-on): master abort, writes and portals dropped.
        bar.write64(8, 0xdead);
        assert_eq!(bar.read64(8), u64::MAX);
        assert_eq!(bar.read8(8), u8::MAX);
        bar.submit64(0, &[1; 64]).unwrap();
        assert!(m.portal.lock().unwrap().is_empty());
        assert_eq!(m.reg.load(Ordering::SeqCst), 0);
        f.config_write16(0x04, 0x2).unwrap();
        bar.write64(8, 0xdead);
        assert_eq!(bar.read64(8), 0xdead);
        assert_eq!(bar.read32(0x1000), u32::MAX, "out of range reads all ones");
        assert_eq!(f.msi().take(0), 0, "not enabled: not delivered");
        f.irq_enable(IrqKind::MsiX, 0, 2).unwrap();
        assert!(f.irq_enable(IrqKind::MsiX, 0, 3).is_err());
        bar.write64(8, 1);
        assert_eq!(f.msi().take(0), 1);
        bar.submit64(0x40, &[7; 64]).unwrap();
        assert!(bar.submit64(0x41, &[7; 64]).is_err());
        assert!(bar.submit64(0xfc0 + 64, &[7; 64]).is_err());
        assert_eq!(m.portal.lock().unwrap().len(), 1);
        f.reset().unwrap();
        assert_eq!(bar.read64(8), 0);
    }
}
