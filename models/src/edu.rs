//! A model of QEMU's `edu` device (1234:11e8), as QEMU documents and implements it
//! (QEMU docs/specs/edu.rst, hw/misc/edu.c; register map verified against QEMU 10.0.2).
//!
//! What it does, as QEMU does:
//! * ID `0x010000ed`; liveness reads back the bitwise NOT of the last write; factorial with the
//!   COMPUTING status bit and an optional interrupt (cause 0x1) when done.
//! * Registers below 0x80 answer only 4-byte accesses, the DMA registers 4 or 8 bytes; other
//!   widths read all ones and writes are ignored. A 4-byte write to a DMA register replaces the
//!   whole register with the zero-extended value.
//! * Raise (0x60) ORs into irq_status and signals MSI vector 0 when MSI is enabled (otherwise
//!   asserts INTx); ack (0x64) clears bits and deasserts INTx at zero.
//! * One DMA at a time between RAM (through the IOVA table, the address ANDed with `dma_mask`,
//!   28 bits by default) and a 4 KiB buffer at device address 0x40000; writes to the DMA
//!   registers are ignored while one runs; the start bit clears when it is done, and cause 0x100
//!   is raised if the command asked for it. Writes to the command register without the start bit
//!   are ignored.
//! * No DMA while COMMAND.bus_master is clear (QEMU drops it; so does the model, see
//!   [`EduModel::dropped_dmas`]); an MSI is a DMA write too, so it is dropped as well.
//!
//! Where QEMU gives no answer the model chooses, and says so:
//! * **Unmapped IOVA** (the IOMMU refuses the access): the device cannot see or report it, so
//!   the DMA "completes" (start bit clears, interrupt raised if asked). A refused read leaves the
//!   buffer bytes from the fault onward unchanged; a refused write stores the bytes before the
//!   fault. Each fault is appended to [`EduModel::faults`], standing in for the IOMMU fault log.
//! * **Buffer range outside 0x40000..0x41000**: QEMU only logs and then overruns its own
//!   buffer. The model does not copy at all, records [`GuestError::BufferRange`], and completes.
//! * **Reset** (`PciFunction::reset`): edu has no FLR; the model resets its registers as a bus
//!   reset through a root port would (QEMU's edu has no FLR capability; a secondary bus reset
//!   resets it through `edu_reset`, hw/misc/edu.c).
//! * **Timing**: QEMU takes ~100 ms per DMA; the model takes no time (immediate mode), waits for
//!   an explicit step (manual mode), or completes on its worker thread (threaded mode).

use std::sync::{Arc, Mutex, MutexGuard};

use passthru_core::edu as hw;
use passthru_core::mmio::IrqKind;
use passthru_core::pci::{self, msi};

use crate::config::ConfigSpace;
use crate::exec::{Engine, ExecMode, Executor};
use crate::function::{DeviceModel, ModelFunction, PciState, Width};
use crate::iommu::{DmaFault, Iommu};

/// Something the guest did that QEMU would only log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// A DMA's device-buffer range lies outside 0x40000..0x41000.
    #[error("edu: DMA buffer range {addr:#x}+{len:#x} outside 0x40000..0x41000")]
    BufferRange {
        /// Device-side start address.
        addr: u64,
        /// Byte count.
        len: u64,
    },
    /// A RAM address was ANDed with `dma_mask` and changed.
    #[error("edu: DMA address {addr:#x} clamped to {clamped:#x} by dma_mask")]
    Clamped {
        /// Address programmed.
        addr: u64,
        /// Address used.
        clamped: u64,
    },
}

#[derive(Debug, Clone)]
struct Regs {
    liveness: u32,
    fact: u32,
    status: u32,
    irq_status: u32,
    src: u64,
    dst: u64,
    cnt: u64,
    cmd: u64,
    buffer: Box<[u8; hw::BUFFER_SIZE as usize]>,
    intx: bool,
}

impl Regs {
    fn new() -> Self {
        Self {
            liveness: 0,
            fact: 0,
            status: 0,
            irq_status: 0,
            src: 0,
            dst: 0,
            cnt: 0,
            cmd: 0,
            buffer: Box::new([0; hw::BUFFER_SIZE as usize]),
            intx: false,
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    faults: Vec<DmaFault>,
    guest_errors: Vec<GuestError>,
    dropped_dmas: u64,
    dropped_msis: u64,
    dmas: u64,
}

/// The edu model. Make one with [`EduModel::new`], drive it through [`EduModel::function`].
#[derive(Debug)]
pub struct EduModel {
    pci: PciState,
    iommu: Arc<Iommu>,
    exec: Executor,
    dma_mask: u64,
    regs: Mutex<Regs>,
    log: Mutex<Log>,
    stuck: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EduModel {
    /// An edu DMAing through `iommu`, with QEMU's default 28-bit `dma_mask`.
    pub fn new(iommu: Arc<Iommu>, mode: ExecMode) -> Arc<Self> {
        Self::with_dma_mask(iommu, mode, hw::DEFAULT_DMA_MASK)
    }

    /// An edu with `dma_mask` (QEMU's `-device edu,dma_mask=...`).
    pub fn with_dma_mask(iommu: Arc<Iommu>, mode: ExecMode, dma_mask: u64) -> Arc<Self> {
        let mut config = ConfigSpace::new(hw::VENDOR_ID, hw::DEVICE_ID, 0x00ff00, hw::REVISION);
        config.bar(0, hw::BAR0_SIZE as u64, false, 0xfea0_0000);
        // QEMU's default subsystem ids and INTA.
        config.set16(pci::SUBSYSTEM_VENDOR_ID.into(), 0x1af4);
        config.set16(pci::SUBSYSTEM_ID.into(), 0x1100);
        config.set16(pci::INTERRUPT_LINE.into(), 0x0100);
        let cap = config.add_msi(0);
        debug_assert_eq!(cap, usize::from(hw::MSI_CAP_OFFSET));
        let model = Arc::new(Self {
            pci: PciState::new(config, 1),
            iommu,
            exec: Executor::new(mode),
            dma_mask,
            regs: Mutex::new(Regs::new()),
            log: Mutex::new(Log::default()),
            stuck: Mutex::new(false),
        });
        model.exec.start(Arc::downgrade(&model));
        model
    }

    /// The model as a PCI function for drivers.
    pub fn function(self: &Arc<Self>) -> ModelFunction<Self> {
        ModelFunction::new(Arc::clone(self))
    }

    /// The IOVA table the model DMAs through.
    pub fn iommu(&self) -> &Arc<Iommu> {
        &self.iommu
    }

    /// The `dma_mask` in force.
    pub fn dma_mask(&self) -> u64 {
        self.dma_mask
    }

    /// Manual mode: run one pending unit of work (a factorial or a DMA).
    pub fn step(&self) -> bool {
        self.exec.step(self)
    }

    /// Manual mode: run all pending work.
    pub fn run_until_idle(&self) -> usize {
        self.exec.run_until_idle(self)
    }

    /// IOMMU faults the device's DMAs caused, oldest first.
    pub fn faults(&self) -> Vec<DmaFault> {
        lock(&self.log).faults.clone()
    }

    /// Guest errors QEMU would have logged, oldest first.
    pub fn guest_errors(&self) -> Vec<GuestError> {
        lock(&self.log).guest_errors.clone()
    }

    /// DMAs completed (including faulting ones).
    pub fn dmas(&self) -> u64 {
        lock(&self.log).dmas
    }

    /// DMAs dropped because bus mastering was off.
    pub fn dropped_dmas(&self) -> u64 {
        lock(&self.log).dropped_dmas
    }

    /// MSIs dropped because bus mastering was off.
    pub fn dropped_msis(&self) -> u64 {
        lock(&self.log).dropped_msis
    }

    /// The INTx line level.
    pub fn intx_asserted(&self) -> bool {
        lock(&self.regs).intx
    }

    /// A copy of the device buffer.
    pub fn buffer(&self) -> Vec<u8> {
        lock(&self.regs).buffer.to_vec()
    }

    /// Error injection: while set, a started DMA never completes (a wedged engine).
    pub fn inject_stuck(&self, stuck: bool) {
        *lock(&self.stuck) = stuck;
        if !stuck {
            self.exec.kick(self);
        }
    }

    fn msi_enabled(&self) -> bool {
        let config_bit = {
            let c = self.pci.config();
            c.read16(usize::from(hw::MSI_CAP_OFFSET + msi::CONTROL)) & msi::CTRL_ENABLE != 0
        };
        // With VFIO, enabling MSI through the seam sets the enable bit; the model's seam
        // adapter does not touch config space, so its sink state counts as well.
        config_bit || self.pci.msi.enabled_kind() == Some(IrqKind::Msi)
    }

    fn raise(&self, regs: &mut Regs, value: u32) {
        regs.irq_status |= value;
        if regs.irq_status == 0 {
            return;
        }
        if self.msi_enabled() {
            if self.pci.bus_master() {
                self.pci.raise(u32::from(hw::MSI_VECTOR));
            } else {
                lock(&self.log).dropped_msis += 1;
            }
        } else {
            regs.intx = true;
        }
    }

    fn lower(&self, regs: &mut Regs, value: u32) {
        regs.irq_status &= !value;
        if regs.irq_status == 0 && !self.msi_enabled() {
            regs.intx = false;
        }
    }

    fn clamp(&self, addr: u64) -> u64 {
        let clamped = addr & self.dma_mask;
        if clamped != addr {
            lock(&self.log)
                .guest_errors
                .push(GuestError::Clamped { addr, clamped });
        }
        clamped
    }

    /// Perform the DMA described by `regs` (the start bit is set).
    fn do_dma(&self, regs: &mut Regs) {
        let to_ram = hw::DmaCommand(regs.cmd).to_ram();
        let (dev_addr, ram_addr) = if to_ram {
            (regs.src, regs.dst)
        } else {
            (regs.dst, regs.src)
        };
        let len = regs.cnt;
        if !self.pci.bus_master() {
            lock(&self.log).dropped_dmas += 1;
        } else if !hw::buffer_range_ok(dev_addr, len) {
            lock(&self.log).guest_errors.push(GuestError::BufferRange {
                addr: dev_addr,
                len,
            });
        } else {
            let at = (dev_addr - hw::BUFFER) as usize;
            let range = at..at + len as usize;
            let ram = self.clamp(ram_addr);
            let result = if to_ram {
                self.iommu.write(ram, &regs.buffer[range])
            } else {
                self.iommu.read(ram, &mut regs.buffer[range])
            };
            if let Err(f) = result {
                lock(&self.log).faults.push(f);
            }
        }
        lock(&self.log).dmas += 1;
        regs.cmd &= !hw::DmaCommand::START;
        if regs.cmd & hw::DmaCommand::IRQ != 0 {
            self.raise(regs, hw::IRQ_DMA);
        }
    }
}

impl Engine for EduModel {
    fn run_pending(&self) -> bool {
        let mut regs = lock(&self.regs);
        if regs.status & hw::Status::COMPUTING != 0 {
            let mut n = regs.fact;
            let mut ret: u32 = 1;
            // QEMU multiplies n down to 1 in 32 bits. A product of 34 consecutive integers has
            // 2^32 as a factor, so once it wraps to 0 it stays 0: stop there (same result,
            // bounded time even for n = u32::MAX).
            while n > 0 && ret != 0 {
                ret = ret.wrapping_mul(n);
                n -= 1;
            }
            regs.fact = ret;
            regs.status &= !hw::Status::COMPUTING;
            if regs.status & hw::Status::IRQ_ON_FACTORIAL != 0 {
                self.raise(&mut regs, hw::IRQ_FACTORIAL);
            }
            return true;
        }
        if regs.cmd & hw::DmaCommand::START != 0 && !*lock(&self.stuck) {
            self.do_dma(&mut regs);
            return true;
        }
        false
    }
}

impl DeviceModel for EduModel {
    fn name(&self) -> &'static str {
        "edu-model"
    }

    fn pci(&self) -> &PciState {
        &self.pci
    }

    fn bar_len(&self, index: u8) -> Option<usize> {
        (index == 0).then_some(hw::BAR0_SIZE)
    }

    fn mmio_read(&self, bar: u8, offset: usize, width: Width) -> u64 {
        if bar != 0 || !width_ok(offset, width) {
            return u64::MAX;
        }
        let regs = lock(&self.regs);
        match offset {
            hw::ID => u64::from(hw::ID_VALUE),
            hw::LIVENESS => regs.liveness.into(),
            hw::FACTORIAL => regs.fact.into(),
            hw::STATUS => regs.status.into(),
            hw::IRQ_STATUS => regs.irq_status.into(),
            hw::DMA_SRC => truncate(regs.src, width),
            hw::DMA_DST => truncate(regs.dst, width),
            hw::DMA_COUNT => truncate(regs.cnt, width),
            hw::DMA_CMD => truncate(regs.cmd, width),
            _ => truncate(u64::MAX, width),
        }
    }

    fn mmio_write(&self, bar: u8, offset: usize, width: Width, value: u64) {
        if bar != 0 || !width_ok(offset, width) {
            return;
        }
        let value = truncate(value, width);
        let mut kick = false;
        {
            let mut regs = lock(&self.regs);
            let dma_running = regs.cmd & hw::DmaCommand::START != 0;
            match offset {
                hw::LIVENESS => regs.liveness = !(value as u32),
                // Ignored while a factorial is being computed.
                hw::FACTORIAL if regs.status & hw::Status::COMPUTING == 0 => {
                    regs.fact = value as u32;
                    regs.status |= hw::Status::COMPUTING;
                    kick = true;
                }
                hw::STATUS => {
                    if value as u32 & hw::Status::IRQ_ON_FACTORIAL != 0 {
                        regs.status |= hw::Status::IRQ_ON_FACTORIAL;
                    } else {
                        regs.status &= !hw::Status::IRQ_ON_FACTORIAL;
                    }
                }
                hw::IRQ_RAISE => self.raise(&mut regs, value as u32),
                hw::IRQ_ACK => self.lower(&mut regs, value as u32),
                hw::DMA_SRC if !dma_running => regs.src = value,
                hw::DMA_DST if !dma_running => regs.dst = value,
                hw::DMA_COUNT if !dma_running => regs.cnt = value,
                hw::DMA_CMD if !dma_running && value & hw::DmaCommand::START != 0 => {
                    regs.cmd = value;
                    kick = true;
                }
                _ => {}
            }
        }
        if kick {
            self.exec.kick(self);
        }
    }

    fn reset(&self) {
        *lock(&self.regs) = Regs::new();
    }
}

/// edu's access rules: 4 bytes below 0x80, 4 or 8 bytes from 0x80.
fn width_ok(offset: usize, width: Width) -> bool {
    if offset < 0x80 {
        width == 4
    } else {
        width == 4 || width == 8
    }
}

fn truncate(v: u64, width: Width) -> u64 {
    if width >= 8 {
        v
    } else {
        v & ((1u64 << (u32::from(width) * 8)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::{HostMemory, Perm};
    use passthru_core::mmio::{PciFunction, RegisterIo};
    use passthru_core::pci::{ConfigAccess, Msi};

    fn setup(mode: ExecMode) -> (Arc<EduModel>, Arc<HostMemory>) {
        let iommu = Iommu::new();
        let mem = HostMemory::pages(0x4000).unwrap();
        iommu.map(0x10000, &mem, 0, 0x4000, Perm::RW).unwrap();
        let m = EduModel::new(iommu, mode);
        // Memory decode on (without it BAR0 reads all ones); bus master stays off.
        m.function().config_write16(pci::COMMAND, 0x2).unwrap();
        (m, mem)
    }

    fn bus_master(m: &Arc<EduModel>) {
        m.function().config_write16(pci::COMMAND, 0x6).unwrap();
    }

    #[test]
    fn identity_liveness_factorial() {
        let (m, _) = setup(ExecMode::Immediate);
        let f = m.function();
        let bar = f.bar(0).unwrap();
        assert_eq!(bar.len(), 1 << 20);
        assert_eq!(bar.read32(hw::ID), 0x0100_00ed);
        bar.write32(hw::LIVENESS, 0x1234_5678);
        assert_eq!(bar.read32(hw::LIVENESS), 0xedcb_a987);
        bar.write32(hw::FACTORIAL, 10);
        assert_eq!(bar.read32(hw::STATUS) & 1, 0);
        assert_eq!(bar.read32(hw::FACTORIAL), 3_628_800);
        bar.write32(hw::FACTORIAL, 13);
        assert_eq!(
            bar.read32(hw::FACTORIAL),
            6_227_020_800u64 as u32,
            "wraps like QEMU's u32"
        );
        bar.write32(hw::FACTORIAL, u32::MAX);
        assert_eq!(bar.read32(hw::FACTORIAL), 0);
        // Wrong widths are ignored and read as all ones.
        assert_eq!(bar.read16(hw::ID), u16::MAX);
        assert_eq!(bar.read64(hw::ID), u64::MAX);
        bar.write16(hw::LIVENESS, 1);
        assert_eq!(bar.read32(hw::LIVENESS), 0xedcb_a987);
        assert_eq!(bar.read32(0x84), u32::MAX, "high half of a DMA register");
    }

    #[test]
    fn config_space_matches_qemu() {
        let (m, _) = setup(ExecMode::Immediate);
        let f = m.function();
        assert_eq!(pci::read_ids(&f).unwrap(), (0x1234, 0x11e8));
        assert_eq!(f.read32(0x08).unwrap(), 0x00ff_0010);
        assert_eq!(f.read8(pci::INTERRUPT_PIN).unwrap(), 1);
        let msi = Msi::find(&f).unwrap().unwrap();
        assert_eq!(msi.offset, 0x40);
        assert!(msi.is_64bit() && !msi.per_vector_masking());
        assert_eq!(msi.vectors_capable(), 1);
        assert_eq!(pci::MsiX::find(&f).unwrap(), None);
        assert_eq!(pci::PciExpress::find(&f).unwrap(), None);
        assert_eq!(
            pci::BarKind::decode(f.read32(pci::BAR0).unwrap()),
            pci::BarKind::Memory32 {
                prefetchable: false
            }
        );
    }

    #[test]
    fn factorial_interrupt_in_manual_mode() {
        let (m, _) = setup(ExecMode::Manual);
        let f = m.function();
        bus_master(&m);
        f.irq_enable(IrqKind::Msi, 0, 1).unwrap();
        let bar = f.bar(0).unwrap();
        bar.write32(hw::STATUS, hw::Status::IRQ_ON_FACTORIAL);
        bar.write32(hw::FACTORIAL, 5);
        assert_eq!(bar.read32(hw::STATUS) & 1, 1, "computing until stepped");
        bar.write32(hw::FACTORIAL, 7);
        assert!(m.step());
        assert_eq!(
            bar.read32(hw::FACTORIAL),
            120,
            "write while computing ignored"
        );
        assert_eq!(bar.read32(hw::IRQ_STATUS), hw::IRQ_FACTORIAL);
        assert_eq!(f.msi().take(0), 1);
        assert!(!m.step());
    }

    #[test]
    fn dma_round_trip_and_direction_bit() {
        let (m, mem) = setup(ExecMode::Immediate);
        let f = m.function();
        bus_master(&m);
        let bar = f.bar(0).unwrap();
        mem.fill(0, 4096, 0x5a).unwrap();
        bar.write64(hw::DMA_SRC, 0x10000);
        bar.write64(hw::DMA_DST, hw::BUFFER);
        bar.write64(hw::DMA_COUNT, 4096);
        bar.write64(hw::DMA_CMD, 1);
        assert_eq!(bar.read64(hw::DMA_CMD) & 1, 0);
        assert!(m.buffer().iter().all(|b| *b == 0x5a));
        bar.write64(hw::DMA_SRC, hw::BUFFER + 16);
        bar.write64(hw::DMA_DST, 0x11000);
        bar.write64(hw::DMA_COUNT, 32);
        bar.write64(hw::DMA_CMD, 3);
        let mut out = [0u8; 48];
        mem.read(0x1000, &mut out).unwrap();
        assert!(out[..32].iter().all(|b| *b == 0x5a));
        assert!(out[32..].iter().all(|b| *b == 0));
        assert_eq!(m.dmas(), 2);
        assert!(m.faults().is_empty());
    }

    #[test]
    fn registers_locked_while_dma_runs() {
        let (m, _) = setup(ExecMode::Manual);
        bus_master(&m);
        let bar = m.function().bar(0).unwrap();
        bar.write64(hw::DMA_SRC, 0x10000);
        bar.write64(hw::DMA_DST, hw::BUFFER);
        bar.write64(hw::DMA_COUNT, 8);
        bar.write64(hw::DMA_CMD, 2); // no start bit: ignored
        assert_eq!(bar.read64(hw::DMA_CMD), 0);
        bar.write64(hw::DMA_CMD, 1);
        bar.write64(hw::DMA_SRC, 0x20000);
        assert_eq!(bar.read64(hw::DMA_SRC), 0x10000, "ignored while running");
        bar.write32(hw::DMA_COUNT, 4);
        assert_eq!(bar.read64(hw::DMA_COUNT), 8);
        m.run_until_idle();
        bar.write32(hw::DMA_SRC, 0x30000);
        assert_eq!(bar.read64(hw::DMA_SRC), 0x30000);
        assert_eq!(bar.read32(hw::DMA_SRC), 0x30000);
    }

    #[test]
    fn unmapped_iova_completes_and_logs_a_fault_modelling_choice() {
        let (m, mem) = setup(ExecMode::Immediate);
        let f = m.function();
        bus_master(&m);
        f.irq_enable(IrqKind::Msi, 0, 1).unwrap();
        let bar = f.bar(0).unwrap();
        // Write crossing the end of the mapping: the first 8 bytes land, then the fault.
        bar.write64(hw::DMA_SRC, hw::BUFFER);
        bar.write64(hw::DMA_DST, 0x13ff8);
        bar.write64(hw::DMA_COUNT, 16);
        bar.write64(hw::DMA_CMD, 3 | 4);
        assert_eq!(bar.read64(hw::DMA_CMD) & 1, 0, "completes anyway");
        assert_eq!(
            m.faults(),
            vec![DmaFault {
                iova: 0x14000,
                done: 8,
                write: true
            }]
        );
        assert_eq!(f.msi().take(0), 1, "completion interrupt still raised");
        assert_eq!(bar.read32(hw::IRQ_STATUS), hw::IRQ_DMA);
        let _ = mem;
    }

    #[test]
    fn buffer_range_and_dma_mask_modelling_choice() {
        let (m, mem) = setup(ExecMode::Immediate);
        bus_master(&m);
        let bar = m.function().bar(0).unwrap();
        bar.write64(hw::DMA_SRC, 0x10000);
        bar.write64(hw::DMA_DST, hw::BUFFER + 4000);
        bar.write64(hw::DMA_COUNT, 200);
        bar.write64(hw::DMA_CMD, 1);
        assert_eq!(
            m.guest_errors(),
            vec![GuestError::BufferRange {
                addr: hw::BUFFER + 4000,
                len: 200
            }]
        );
        assert_eq!(bar.read64(hw::DMA_CMD) & 1, 0);
        // 28-bit mask: 0x1001_0000 becomes 0x10000 (mapped), as QEMU does.
        mem.fill(0, 8, 0x77).unwrap();
        bar.write64(hw::DMA_SRC, 0x1001_0000);
        bar.write64(hw::DMA_DST, hw::BUFFER);
        bar.write64(hw::DMA_COUNT, 8);
        bar.write64(hw::DMA_CMD, 1);
        assert_eq!(&m.buffer()[..8], &[0x77; 8]);
        assert!(m.guest_errors().contains(&GuestError::Clamped {
            addr: 0x1001_0000,
            clamped: 0x10000
        }));
    }

    #[test]
    fn no_bus_master_no_dma_no_msi() {
        let (m, mem) = setup(ExecMode::Immediate);
        let f = m.function();
        f.irq_enable(IrqKind::Msi, 0, 1).unwrap();
        let bar = f.bar(0).unwrap();
        mem.fill(0, 8, 1).unwrap();
        bar.write64(hw::DMA_SRC, 0x10000);
        bar.write64(hw::DMA_DST, hw::BUFFER);
        bar.write64(hw::DMA_COUNT, 8);
        bar.write64(hw::DMA_CMD, 1);
        assert_eq!(m.dropped_dmas(), 1);
        assert_eq!(&m.buffer()[..8], &[0; 8]);
        bar.write32(hw::IRQ_RAISE, 1);
        assert_eq!(f.msi().take(0), 0);
        assert_eq!(m.dropped_msis(), 1);
    }

    #[test]
    fn intx_without_msi() {
        let (m, _) = setup(ExecMode::Immediate);
        let bar = m.function().bar(0).unwrap();
        bar.write32(hw::IRQ_RAISE, 0x3);
        assert!(m.intx_asserted());
        bar.write32(hw::IRQ_ACK, 0x1);
        assert!(m.intx_asserted());
        bar.write32(hw::IRQ_ACK, 0x2);
        assert!(!m.intx_asserted());
    }

    #[test]
    fn stuck_injection_and_threaded_mode() {
        let (m, _) = setup(ExecMode::Threaded);
        bus_master(&m);
        let bar = m.function().bar(0).unwrap();
        m.inject_stuck(true);
        bar.write64(hw::DMA_SRC, 0x10000);
        bar.write64(hw::DMA_DST, hw::BUFFER);
        bar.write64(hw::DMA_COUNT, 64);
        bar.write64(hw::DMA_CMD, 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(bar.read64(hw::DMA_CMD) & 1, 1, "stuck");
        m.inject_stuck(false);
        let t = std::time::Instant::now();
        while bar.read64(hw::DMA_CMD) & 1 != 0 && t.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(bar.read64(hw::DMA_CMD) & 1, 0);
        f_reset_clears(&m);
    }

    fn f_reset_clears(m: &Arc<EduModel>) {
        let f = m.function();
        let bar = f.bar(0).unwrap();
        bar.write32(hw::LIVENESS, 0);
        f.reset().unwrap();
        assert_eq!(bar.read32(hw::LIVENESS), 0);
        assert_eq!(bar.read64(hw::DMA_SRC), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any sequence of register accesses (any offset, width and value) leaves the model
        /// consistent and never panics; the DMA engine always goes idle.
        #[test]
        fn arbitrary_register_traffic_never_panics(
            ops in proptest::collection::vec(
                (0usize..0x200, proptest::sample::select(vec![1u8, 2, 4, 8]), proptest::prelude::any::<u64>(), proptest::prelude::any::<bool>()),
                1..200,
            ),
        ) {
            let (m, _mem) = setup(ExecMode::Immediate);
            bus_master(&m);
            m.function().irq_enable(IrqKind::Msi, 0, 1).unwrap();
            for (offset, width, value, write) in ops {
                // Bias towards the interesting registers.
                let offset = if offset < 0x100 { offset & !3 } else { 0x80 + (offset & 0x18) };
                if write {
                    m.mmio_write(0, offset, width, value);
                } else {
                    let _ = m.mmio_read(0, offset, width);
                }
            }
            proptest::prop_assert_eq!(m.mmio_read(0, hw::DMA_CMD, 8) & 1, 0);
            proptest::prop_assert_eq!(m.mmio_read(0, hw::ID, 4), u64::from(hw::ID_VALUE));
        }
    }
}
