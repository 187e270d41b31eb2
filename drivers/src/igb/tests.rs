//! The igb driver against a recording fake of its registers.
//!
//! The fake does what the driver relies on and no more: CTRL.RST self-clears (and, optionally,
//! EECD.AUTO_RD sets as on real hardware), MDIC transactions complete at once, queue enables read
//! back, and a TDT write loops each posted TX frame into the next posted RX buffer (DD|EOP and
//! the length written back), the way MAC loopback does. Memory is one vector standing for IOVA
//! space from [`IOVA_BASE`].

extern crate std;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use core::ptr::NonNull;

use passthru_core::driver::{CheckedDriver, Driver, DriverError, DriverState, WaitMode};
use passthru_core::igb as hw;
use passthru_core::mmio::{Clock, DmaRegion, FunctionError, IrqKind, PciFunction, RegisterIo};
use passthru_core::pci;

use super::*;

const IOVA_BASE: u64 = 0x10_0000;
const MEM: usize = REGION_SIZE + 0x4000;
const SRC: usize = REGION_SIZE;
const DST: usize = REGION_SIZE + 0x1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write(usize, u32),
    Config16(u16, u16),
    IrqEnable(IrqKind, u32, u32),
    IrqDisable(IrqKind),
    Reset,
}

#[derive(Default)]
struct Behaviour {
    auto_rd: bool,
    rst_sticks: bool,
    loopback: bool,
    /// Bytes the loopback adds to each frame (a CRC left in place).
    extra_len: usize,
    /// Interrupts of vector 0 to lose on the way (an interrupt-remapping fault, say).
    drop_interrupts: u32,
}

struct State {
    /// Vector 0 unmasked (EIMS bit 0 set, not since cleared by EIMC or auto-masked).
    vector0_unmasked: Cell<bool>,
    /// Vector 0 interrupts delivered and not yet taken by `irq_wait`.
    vector0_count: Cell<u64>,
    regs: RefCell<Vec<u32>>,
    log: RefCell<Vec<Op>>,
    config: RefCell<[u8; 256]>,
    behaviour: RefCell<Behaviour>,
    mem: RefCell<Vec<u64>>,
}

impl State {
    fn mem_ptr(&self) -> *mut u8 {
        self.mem.borrow_mut().as_mut_ptr().cast()
    }
    fn mem_read(&self, iova: u64, out: &mut [u8]) {
        let off = (iova - IOVA_BASE) as usize;
        let p = self.mem_ptr();
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: test memory, in bounds by construction of the test addresses.
            *b = unsafe { p.add(off + i).read_volatile() };
        }
    }
    fn mem_write(&self, iova: u64, data: &[u8]) {
        let off = (iova - IOVA_BASE) as usize;
        let p = self.mem_ptr();
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as above.
            unsafe { p.add(off + i).write_volatile(*b) };
        }
    }
    fn reg(&self, r: usize) -> u32 {
        self.regs.borrow()[r / 4]
    }
    /// A cause of vector 0: an MSI-X message if the vector is unmasked, auto-masked after it when
    /// EIAM says so (the 82576's extended interrupt auto-mask).
    fn interrupt(&self) {
        if !self.vector0_unmasked.get() {
            return;
        }
        if self.reg(hw::EIAM) & 1 != 0 {
            self.vector0_unmasked.set(false);
        }
        let mut b = self.behaviour.borrow_mut();
        if b.drop_interrupts > 0 {
            b.drop_interrupts -= 1;
            return;
        }
        self.vector0_count.set(self.vector0_count.get() + 1);
    }
    fn set(&self, r: usize, v: u32) {
        self.regs.borrow_mut()[r / 4] = v;
    }

    /// MAC loopback: every TX descriptor from TDH to TDT lands in the RX descriptor at RDH.
    fn transmit(&self) {
        if !self.behaviour.borrow().loopback {
            return;
        }
        let tx_base = u64::from(self.reg(hw::TDBAL0)) | u64::from(self.reg(hw::TDBAH0)) << 32;
        let rx_base = u64::from(self.reg(hw::RDBAL0)) | u64::from(self.reg(hw::RDBAH0)) << 32;
        let entries = (self.reg(hw::TDLEN0) as usize) / 16;
        while self.reg(hw::TDH0) != self.reg(hw::TDT0) && self.reg(hw::RDH0) != self.reg(hw::RDT0) {
            let t = self.reg(hw::TDH0) as u64;
            let r = self.reg(hw::RDH0) as u64;
            let mut d = [0u8; 16];
            self.mem_read(tx_base + t * 16, &mut d);
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let cmd = u32::from_le_bytes(d[8..12].try_into().unwrap());
            let len = (cmd & 0xffff) as usize;
            let mut frame = vec![0u8; len];
            self.mem_read(addr, &mut frame);
            let mut rd = [0u8; 16];
            self.mem_read(rx_base + r * 16, &mut rd);
            let buf = u64::from_le_bytes(rd[..8].try_into().unwrap());
            self.mem_write(buf, &frame);
            let mut wb = [0u8; 16];
            wb[8..12].copy_from_slice(&(hw::rxd::STAT_DD | hw::rxd::STAT_EOP).to_le_bytes());
            let extra = self.behaviour.borrow().extra_len;
            wb[12..14].copy_from_slice(&((len + extra) as u16).to_le_bytes());
            self.mem_write(rx_base + r * 16, &wb);
            let mut tw = [0u8; 16];
            tw[12] = 1;
            self.mem_write(tx_base + t * 16, &tw);
            self.set(hw::TDH0, ((t + 1) as usize % entries) as u32);
            self.set(hw::RDH0, ((r + 1) as usize % entries) as u32);
            self.interrupt();
        }
    }
}

#[derive(Clone)]
struct Fake(Rc<State>);

impl Fake {
    fn new(b: Behaviour) -> Self {
        let mut config = [0u8; 256];
        config[0..2].copy_from_slice(&hw::VENDOR_ID.to_le_bytes());
        config[2..4].copy_from_slice(&hw::DEVICE_ID.to_le_bytes());
        Fake(Rc::new(State {
            vector0_unmasked: Cell::new(false),
            vector0_count: Cell::new(0),
            regs: RefCell::new(vec![0; 0x8000 / 4]),
            log: RefCell::new(Vec::new()),
            config: RefCell::new(config),
            behaviour: RefCell::new(b),
            mem: RefCell::new(vec![0; MEM / 8]),
        }))
    }
    /// The fake's DMA memory, borrowing the fake.
    fn region(&self) -> DmaRegion<'_> {
        // SAFETY: the memory lives as long as the Rc, which `self` keeps alive for the borrow.
        unsafe { self.region_unbounded() }
    }

    /// The fake's DMA memory for a driver that holds a clone of this fake as its function.
    ///
    /// # Safety
    /// Some clone of this fake (an `Rc` of the memory) must live for all of `'a`.
    unsafe fn region_unbounded<'a>(&self) -> DmaRegion<'a> {
        let p = NonNull::new(self.0.mem_ptr()).unwrap();
        // SAFETY: the vector lives as long as the Rc (the caller's contract for 'a); no
        // references into it are formed while the driver runs.
        unsafe { DmaRegion::from_raw_parts(IOVA_BASE, p, MEM) }
    }
    fn writes(&self) -> Vec<(usize, u32)> {
        self.0
            .log
            .borrow()
            .iter()
            .filter_map(|o| match o {
                Op::Write(r, v) => Some((*r, *v)),
                _ => None,
            })
            .collect()
    }
    fn writes_to(&self, reg: usize) -> Vec<u32> {
        self.writes()
            .into_iter()
            .filter(|(r, _)| *r == reg)
            .map(|(_, v)| v)
            .collect()
    }
    fn position(&self, op: Op) -> usize {
        self.0
            .log
            .borrow()
            .iter()
            .position(|o| *o == op)
            .unwrap_or_else(|| panic!("{op:?} not in log"))
    }
    fn clear_log(&self) {
        self.0.log.borrow_mut().clear();
    }
}

impl RegisterIo for Fake {
    fn len(&self) -> usize {
        0x20000
    }
    fn read8(&self, _: usize) -> u8 {
        u8::MAX
    }
    fn read16(&self, _: usize) -> u16 {
        u16::MAX
    }
    fn read32(&self, offset: usize) -> u32 {
        self.0.reg(offset)
    }
    fn read64(&self, _: usize) -> u64 {
        u64::MAX
    }
    fn write8(&self, _: usize, _: u8) {}
    fn write16(&self, _: usize, _: u16) {}
    fn write32(&self, offset: usize, value: u32) {
        let s = &self.0;
        s.log.borrow_mut().push(Op::Write(offset, value));
        let b = s.behaviour.borrow();
        match offset {
            hw::CTRL => {
                let sticky = if b.rst_sticks {
                    value
                } else {
                    value & !hw::ctrl::RST
                };
                s.set(hw::CTRL, sticky);
                if value & hw::ctrl::RST != 0 && b.auto_rd {
                    s.set(hw::EECD, hw::eecd::AUTO_RD);
                }
            }
            hw::MDIC => s.set(hw::MDIC, value | hw::mdic::READY),
            hw::TXDCTL0 | hw::RXDCTL0 => s.set(offset, value),
            hw::TDT0 | hw::RDT0 => {
                s.set(offset, value);
                drop(b);
                s.transmit();
            }
            hw::EIMS if value & 1 != 0 => s.vector0_unmasked.set(true),
            hw::EIMC if value & 1 != 0 => s.vector0_unmasked.set(false),
            hw::EICS if value & 1 != 0 => {
                drop(b);
                s.interrupt();
            }
            _ => s.set(offset, value),
        }
    }
    fn write64(&self, _: usize, _: u64) {}
    fn submit64(&self, _: usize, _: &[u8; 64]) -> Result<(), passthru_core::mmio::PortalError> {
        Err(passthru_core::mmio::PortalError::Unsupported)
    }
}

impl PciFunction for Fake {
    type Bar = Fake;
    fn bar(&self, index: u8) -> Result<Fake, FunctionError> {
        if index == 0 {
            Ok(self.clone())
        } else {
            Err(FunctionError::NoSuchBar(index))
        }
    }
    fn config_read8(&self, o: u16) -> Result<u8, FunctionError> {
        Ok(self.0.config.borrow()[o as usize])
    }
    fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
        let c = self.0.config.borrow();
        Ok(u16::from_le_bytes([c[o as usize], c[o as usize + 1]]))
    }
    fn config_read32(&self, o: u16) -> Result<u32, FunctionError> {
        Ok(u32::from(self.config_read16(o)?) | u32::from(self.config_read16(o + 2)?) << 16)
    }
    fn config_write8(&self, o: u16, v: u8) -> Result<(), FunctionError> {
        self.0.config.borrow_mut()[o as usize] = v;
        Ok(())
    }
    fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
        self.0.log.borrow_mut().push(Op::Config16(o, v));
        self.0.config.borrow_mut()[o as usize..o as usize + 2].copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn config_write32(&self, o: u16, v: u32) -> Result<(), FunctionError> {
        self.config_write16(o, v as u16)?;
        self.config_write16(o + 2, (v >> 16) as u16)
    }
    fn irq_enable(&self, kind: IrqKind, first: u32, count: u32) -> Result<(), FunctionError> {
        self.0
            .log
            .borrow_mut()
            .push(Op::IrqEnable(kind, first, count));
        Ok(())
    }
    fn irq_disable(&self, kind: IrqKind) -> Result<(), FunctionError> {
        self.0.log.borrow_mut().push(Op::IrqDisable(kind));
        Ok(())
    }
    fn reset(&self) -> Result<(), FunctionError> {
        self.0.log.borrow_mut().push(Op::Reset);
        self.0.regs.borrow_mut().fill(0);
        self.0.vector0_unmasked.set(false);
        Ok(())
    }
    /// The test double of the interrupt hook: takes vector 0's count (no blocking: the fake
    /// delivers synchronously, so nothing can arrive later).
    fn irq_wait(&self, kind: IrqKind, vector: u32, _: u64) -> Result<u64, FunctionError> {
        if (kind, vector) != (IrqKind::MsiX, 0) {
            return Err(FunctionError::NoSuchVector { kind, vector });
        }
        Ok(self.0.vector0_count.replace(0))
    }
}

#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<u64>>);

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        let t = self.0.get();
        self.0.set(t + 1_000);
        t
    }
    fn delay_ns(&self, ns: u64) {
        self.0.set(self.0.get() + ns);
    }
}

type Checked = CheckedDriver<'static, Igb<'static, Fake, FakeClock>>;

fn init(b: Behaviour) -> (Fake, Checked) {
    let fake = Fake::new(b);
    // SAFETY: the driver owns a clone of the fake (its function), which keeps the memory alive
    // for as long as the driver exists.
    let region = unsafe { fake.region_unbounded() };
    let mut igb = Checked::new(fake.clone(), FakeClock::default(), region).unwrap();
    igb.init().unwrap();
    (fake, igb)
}

#[test]
fn probe_matches_only_82576() {
    let fake = Fake::new(Behaviour::default());
    let m = Igb::<Fake, FakeClock>::probe(&fake).unwrap();
    assert_eq!((m.name, m.vendor, m.device), ("igb", 0x8086, 0x10c9));
    assert_eq!(m.region_size, 128 * 1024);
    fake.config_write16(pci::DEVICE_ID, 0x10d3).unwrap();
    assert!(Igb::<Fake, FakeClock>::probe(&fake).is_none());
}

#[test]
fn init_follows_the_reference_sequence_on_qemu() {
    let (fake, igb) = init(Behaviour::default());
    assert!(
        igb.driver().unwrap().mac_loopback(),
        "no AUTO_RD: QEMU, so MAC loopback"
    );
    let w = fake.writes();
    // Reset first, then interrupts masked.
    assert_eq!(w[0], (hw::CTRL, hw::ctrl::RST));
    let pos = |reg: usize, v: u32| {
        w.iter()
            .position(|x| *x == (reg, v))
            .unwrap_or_else(|| panic!("write {reg:#x} = {v:#x} missing"))
    };
    let imc = pos(hw::IMC, u32::MAX);
    let ext = pos(hw::CTRL_EXT, hw::ctrl_ext::DRV_LOAD);
    let kick = pos(hw::MDIC, 0x0420_1200);
    let loopback = pos(hw::MDIC, 0x0420_4140);
    let force = pos(hw::CTRL, 0x1841 | hw::ctrl::SPEED_1000);
    let tdlen = pos(hw::TDLEN0, 65536);
    let rdlen = pos(hw::RDLEN0, 65536);
    let srrctl = pos(hw::SRRCTL0, hw::srrctl::DESCTYPE_ADV_ONEBUF);
    let rctl = pos(hw::RCTL, 0x0400_805a);
    let tctl = pos(hw::TCTL, 0xa);
    let gpie = pos(hw::GPIE, 0x4000_0010);
    let ivar = pos(hw::IVAR0, 0x80);
    let eims = pos(hw::EIMS, 1);
    assert!(imc < ext && ext < kick && kick < loopback && loopback < force);
    assert!(force < tdlen && tdlen < rdlen && rdlen < srrctl && srrctl < rctl);
    assert!(rctl < tctl && tctl < gpie && gpie < ivar && ivar < eims);
    assert_eq!(fake.writes_to(hw::EIAC), vec![1]);
    assert_eq!(fake.writes_to(hw::EIAM), vec![1]);
    assert_eq!(fake.writes_to(hw::TDBAL0), vec![IOVA_BASE as u32]);
    assert_eq!(fake.writes_to(hw::TDBAH0), vec![0]);
    assert_eq!(
        fake.writes_to(hw::RDBAL0),
        vec![(IOVA_BASE + RX_RING_OFFSET as u64) as u32]
    );
    assert_eq!(fake.0.reg(hw::TXDCTL0) & hw::dctl::ENABLE, hw::dctl::ENABLE);
    assert_eq!(fake.0.reg(hw::RXDCTL0) & hw::dctl::ENABLE, hw::dctl::ENABLE);
    // GCR completion-timeout resend cleared.
    assert_eq!(fake.0.reg(hw::GCR) & hw::gcr::CMPL_TMOUT_RESEND, 0);
    // MSI-X enabled before the device is touched; bus master on.
    assert_eq!(fake.position(Op::IrqEnable(IrqKind::MsiX, 0, 1)), 0);
    let cmd = fake.0.config.borrow()[4];
    assert_eq!(cmd & 0b110, 0b110);
    assert_eq!(
        igb.limits().unwrap(),
        Limits {
            max_memcpy_size: 1024,
            max_memcpy_count: 4095,
            msi_vector: 0
        }
    );
}

#[test]
fn real_hardware_uses_phy_loopback_only() {
    let (fake, igb) = init(Behaviour {
        auto_rd: true,
        ..Behaviour::default()
    });
    assert!(!igb.driver().unwrap().mac_loopback());
    assert_eq!(fake.writes_to(hw::RCTL), vec![0x0400_801a]);
}

#[test]
fn stuck_reset_times_out_naming_ctrl() {
    let fake = Fake::new(Behaviour {
        rst_sticks: true,
        ..Behaviour::default()
    });
    let e = Igb::init(fake.clone(), FakeClock::default(), fake.region()).unwrap_err();
    match e {
        DriverError::Timeout {
            device,
            register,
            value,
            ..
        } => {
            assert_eq!((device, register), ("igb", "CTRL"));
            assert_ne!(value as u32 & hw::ctrl::RST, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn small_or_misaligned_regions_are_refused() {
    let fake = Fake::new(Behaviour::default());
    let r = fake.region();
    let small = r.subregion(0, REGION_SIZE - 128).unwrap();
    assert!(matches!(
        Igb::init(fake.clone(), FakeClock::default(), small),
        Err(DriverError::RegionTooSmall { .. })
    ));
    let odd = r.subregion(64, REGION_SIZE).unwrap();
    assert!(matches!(
        Igb::init(fake.clone(), FakeClock::default(), odd),
        Err(DriverError::Dma(DmaError::Misaligned { align: 128, .. }))
    ));
}

#[test]
fn memcpy_posts_descriptors_and_copies_through_loopback() {
    let (fake, mut igb) = init(Behaviour {
        loopback: true,
        ..Behaviour::default()
    });
    let region = fake.region();
    let data: Vec<u8> = (0..100u8).collect();
    region.copy_from_slice(SRC, &data).unwrap();
    region.fill(DST, 100, 0xee).unwrap();
    fake.clear_log();
    let (src, dst) = (IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64);
    igb.memcpy_start(src, dst, 100, 3).unwrap();
    // Mask first, RX tail before TX tail.
    assert_eq!(
        fake.writes(),
        vec![(hw::EIMC, 1), (hw::RDT0, 3), (hw::TDT0, 3)]
    );
    // The TX descriptors as laid out in the ring (before the fake's write-back overwrote them
    // we cannot see them; check the RX ones' buffer and the TX write-back instead).
    igb.memcpy_wait(1_000_000_000).unwrap();
    let mut out = vec![0u8; 100];
    region.copy_to_slice(DST, &mut out).unwrap();
    assert_eq!(out, data);
    for i in 0..3 {
        let wb = region.read_u32(RX_RING_OFFSET + i * 16 + 8).unwrap();
        assert_eq!(wb, hw::rxd::STAT_DD | hw::rxd::STAT_EOP);
        assert_eq!(region.read_u16(RX_RING_OFFSET + i * 16 + 12).unwrap(), 100);
    }
    let w = fake.writes();
    assert_eq!(&w[w.len() - 2..], &[(hw::EICR, u32::MAX), (hw::EIMS, 1)]);
    // The next copy continues from index 3.
    igb.memcpy_start(src, dst, 60, 1).unwrap();
    assert_eq!(fake.writes_to(hw::RDT0).last(), Some(&4));
    igb.memcpy_wait(1_000_000_000).unwrap();
}

#[test]
fn tx_descriptor_layout_in_the_ring() {
    let (fake, mut igb) = init(Behaviour::default());
    let region = fake.region();
    igb.memcpy_start(0xaaaa_0000, 0xbbbb_0000, 1024, 2).unwrap();
    for i in 0..2 {
        let t = TX_RING_OFFSET + i * 16;
        assert_eq!(region.read_u64(t).unwrap(), 0xaaaa_0000);
        assert_eq!(region.read_u32(t + 8).unwrap(), 0x2b30_0400);
        assert_eq!(region.read_u32(t + 12).unwrap(), 1024 << 14);
        let r = RX_RING_OFFSET + i * 16;
        assert_eq!(region.read_u64(r).unwrap(), 0xbbbb_0000);
        assert_eq!(region.read_u64(r + 8).unwrap(), 0);
    }
}

#[test]
fn wait_timeout_resets_reinitialises_and_names_the_descriptor() {
    let (fake, mut igb) = init(Behaviour::default()); // no loopback: nothing completes
    igb.memcpy_start(IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64, 64, 2)
        .unwrap();
    fake.clear_log();
    let e = igb.memcpy_wait(200_000_000).unwrap_err();
    match e {
        DriverError::Timeout {
            device,
            register,
            value,
            waited_ns,
        } => {
            assert_eq!(device, "igb");
            assert!(register.contains("RX descriptor"));
            assert_eq!(value & u64::from(hw::rxd::STAT_DD), 0);
            assert!(waited_ns >= 200_000_000);
        }
        other => panic!("{other:?}"),
    }
    // FLR, MSI-X re-enabled, reset and bring-up again with fresh rings.
    let reset = fake.position(Op::Reset);
    let msix = fake.position(Op::IrqEnable(IrqKind::MsiX, 0, 1));
    assert!(reset < msix);
    assert!(fake.writes_to(hw::RCTL).contains(&0x0400_805a));
    assert_eq!(fake.writes_to(hw::TDT0), vec![0]);
    // The driver is usable again.
    fake.0.behaviour.borrow_mut().loopback = true;
    igb.memcpy_start(IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64, 64, 1)
        .unwrap();
    igb.memcpy_wait(1_000_000_000).unwrap();
}

#[test]
fn send_msi_unmasks_then_raises_vector_0() {
    let (fake, mut igb) = init(Behaviour::default());
    fake.clear_log();
    igb.send_msi().unwrap();
    igb.send_msi().unwrap();
    assert_eq!(
        fake.writes(),
        vec![(hw::EIMS, 1), (hw::EICS, 1), (hw::EIMS, 1), (hw::EICS, 1)]
    );
}

#[test]
fn limits_and_minimum_frame() {
    let (_fake, mut igb) = init(Behaviour::default());
    assert!(matches!(
        igb.memcpy_start(0, 0, 1025, 1),
        Err(DriverError::BeyondLimits { size: 1025, .. })
    ));
    assert!(matches!(
        igb.memcpy_start(0, 0, 64, 4096),
        Err(DriverError::BeyondLimits { count: 4096, .. })
    ));
    assert!(matches!(
        igb.memcpy_start(0, 0, 59, 1),
        Err(DriverError::Unsupported { device: "igb", .. })
    ));
}

#[test]
fn remove_quiesces() {
    let (fake, mut igb) = init(Behaviour::default());
    fake.clear_log();
    igb.remove().unwrap();
    assert_eq!(fake.writes_to(hw::RCTL), vec![0]);
    assert_eq!(fake.writes_to(hw::TCTL), vec![0]);
    assert_eq!(fake.writes_to(hw::EIMC), vec![u32::MAX]);
    assert_eq!(fake.0.reg(hw::TXDCTL0) & hw::dctl::ENABLE, 0);
    assert_eq!(fake.0.reg(hw::CTRL_EXT) & hw::ctrl_ext::DRV_LOAD, 0);
    fake.position(Op::IrqDisable(IrqKind::MsiX));
    assert_eq!(fake.0.config.borrow()[4] & 0b100, 0, "bus master off");
}

#[test]
fn checked_driver_full_cycle_with_loopback() {
    let fake = Fake::new(Behaviour {
        loopback: true,
        ..Behaviour::default()
    });
    let mut d = CheckedDriver::<Igb<Fake, FakeClock>>::new(
        fake.clone(),
        FakeClock::default(),
        fake.region(),
    )
    .unwrap();
    for _ in 0..3 {
        d.init().unwrap();
        assert_eq!(d.state(), DriverState::Ready);
        d.memcpy(
            IOVA_BASE + SRC as u64,
            IOVA_BASE + DST as u64,
            1024,
            1_000_000_000,
        )
        .unwrap();
        d.send_msi().unwrap();
        d.remove().unwrap();
    }
}

#[test]
fn wrong_received_length_is_reported() {
    let (fake, mut igb) = init(Behaviour {
        loopback: true,
        extra_len: 4,
        ..Behaviour::default()
    });
    igb.memcpy_start(IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64, 64, 1)
        .unwrap();
    assert_eq!(
        igb.memcpy_wait(1_000_000_000),
        Err(DriverError::Device(
            passthru_core::driver::DeviceError::Register {
                device: "igb",
                register: "RX descriptor length",
                value: 68
            }
        ))
    );
    fake.0.behaviour.borrow_mut().extra_len = 0;
    igb.memcpy_start(IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64, 64, 1)
        .unwrap();
    igb.memcpy_wait(1_000_000_000).unwrap();
}

#[test]
fn wait_without_copy_and_start_while_busy_are_refused() {
    let (fake, mut igb) = init(Behaviour {
        loopback: true,
        ..Behaviour::default()
    });
    assert_eq!(
        igb.memcpy_wait(1_000_000_000),
        Err(DriverError::OutOfOrder {
            op: "memcpy_wait",
            state: DriverState::Ready
        })
    );
    fake.clear_log();
    let (src, dst) = (IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64);
    igb.memcpy_start(src, dst, 64, 1).unwrap();
    assert_eq!(
        igb.memcpy_start(src, dst, 64, 2),
        Err(DriverError::OutOfOrder {
            op: "memcpy_start",
            state: DriverState::Busy
        })
    );
    assert_eq!(
        fake.writes_to(hw::RDT0),
        vec![1],
        "the refused start posted nothing"
    );
    igb.memcpy_wait(1_000_000_000).unwrap();
    assert_eq!(
        igb.memcpy_wait(1_000_000_000),
        Err(DriverError::OutOfOrder {
            op: "memcpy_wait",
            state: DriverState::Ready
        })
    );
}

#[test]
fn interrupt_wait_copies_and_consumes_the_interrupt() {
    let (fake, mut igb) = init(Behaviour {
        loopback: true,
        ..Behaviour::default()
    });
    let region = fake.region();
    let (src, dst) = (IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64);
    for (seed, count) in [(1u8, 1u64), (2, 3)] {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(seed)).collect();
        region.copy_from_slice(SRC, &data).unwrap();
        region.fill(DST, 100, 0xee).unwrap();
        fake.clear_log();
        igb.memcpy_start_with(src, dst, 100, count, WaitMode::Interrupt)
            .unwrap();
        // Unmask (not mask) before the tails: the RX write-back is to raise vector 0.
        assert_eq!(
            &fake.writes()[..3],
            &[
                (hw::EIMS, 1),
                (hw::RDT0, fake.0.reg(hw::RDT0)),
                (hw::TDT0, fake.0.reg(hw::TDT0))
            ]
        );
        igb.memcpy_wait(1_000_000_000).unwrap();
        assert_eq!(region.first_mismatch(DST, &data).unwrap(), None);
        assert_eq!(fake.0.vector0_count.get(), 0, "the wait took the interrupt");
    }
    // Polled copies still raise nothing.
    igb.memcpy(src, dst, 100, 1_000_000_000).unwrap();
    assert_eq!(fake.0.vector0_count.get(), 0);
}

#[test]
fn interrupt_wait_times_out_clearly_when_the_interrupt_is_dropped() {
    let (fake, mut igb) = init(Behaviour {
        loopback: true,
        drop_interrupts: 1,
        ..Behaviour::default()
    });
    let (src, dst) = (IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64);
    let e = igb
        .memcpy_with(src, dst, 64, 1_000_000, WaitMode::Interrupt)
        .unwrap_err();
    assert_eq!(
        e,
        DriverError::InterruptTimeout {
            device: "igb",
            kind: IrqKind::MsiX,
            vector: 0,
            waited_ns: 1_000_000,
            completed: true,
        }
    );
    assert_eq!(igb.state(), DriverState::Ready);
    // Completed copies need no recovery; the next interrupt-driven copy works.
    assert!(fake.0.log.borrow().iter().all(|o| *o != Op::Reset));
    igb.memcpy_with(src, dst, 64, 1_000_000, WaitMode::Interrupt)
        .unwrap();
}

#[test]
fn interrupt_wait_on_a_stuck_device_recovers_it() {
    let (fake, mut igb) = init(Behaviour::default()); // no loopback: nothing completes
    let (src, dst) = (IOVA_BASE + SRC as u64, IOVA_BASE + DST as u64);
    fake.clear_log();
    let e = igb
        .memcpy_with(src, dst, 64, 1_000_000, WaitMode::Interrupt)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DriverError::InterruptTimeout {
                device: "igb",
                completed: false,
                ..
            }
        ),
        "{e:?}"
    );
    fake.position(Op::Reset);
    fake.0.behaviour.borrow_mut().loopback = true;
    igb.memcpy_with(src, dst, 64, 1_000_000, WaitMode::Interrupt)
        .unwrap();
}
