//! Intel 82576 / QEMU igb driver (MAC loopback memcpy, MSI-X through EICS).
//!
//! A copy is a looped-back Ethernet frame, as upstream's igb selftest driver
//! (`tools/testing/selftests/vfio/lib/drivers/igb/`) does it: a transmit descriptor sends
//! `size` bytes from `src`, the MAC loops the frame back, and a receive descriptor lands it at
//! `dst`. The first bytes of `src` form the frame's Ethernet header; with promiscuous unicast and
//! multicast plus broadcast accept, any header is received. `size` must be 60..=1024.
//!
//! Region layout (`region_size` = 128 KiB, base 128-byte aligned): the 4096-entry transmit ring
//! at offset 0, the 4096-entry receive ring at offset 64 KiB. Each `memcpy_start` posts `count`
//! (≤ 4095, the ring size minus one) RX descriptors, then `count` TX descriptors, then bumps RDT
//! and TDT. `memcpy_wait` polls the descriptor-done bit of the last RX descriptor. With
//! `WaitMode::Interrupt` vector 0 stays unmasked during the copy, so RX queue 0's write-back
//! raises it once (EIAM masks it again); the wait sleeps on it and then checks the DD bit.
//!
//! Loopback: QEMU's igb loops frames back in the MAC (RCTL.LBM = MAC); the real 82576 uses the
//! PHY loopback set through MDIC. QEMU never sets EECD.AUTO_RD after a reset, so the driver uses
//! MAC loopback exactly when AUTO_RD stayed clear ([`Igb::mac_loopback`]), a heuristic that keeps
//! upstream's behaviour (MAC loopback on QEMU only) without a QEMU-specific id check.
//!
//! A copy that does not finish in time (a faulting DMA wedges the real 82576's descriptor engine)
//! is answered with a function reset, MSI-X re-enabled and the whole bring-up redone; the wait
//! then returns the timeout, naming the RX descriptor status it last saw.

use passthru_core::arch;
use passthru_core::driver::{
    wait_interrupt, DeviceError, Driver, DriverError, InOrder, Limits, Match, WaitMode,
};
use passthru_core::igb::{self as hw, AdvRxRead, AdvRxWriteback, AdvTxDataDescriptor};
use passthru_core::mmio::{poll, Clock, DmaError, DmaRegion, IrqKind, PciFunction, RegisterIo};
use passthru_core::pci::{self, Command};

/// Driver name.
pub const NAME: &str = "igb";
/// Descriptors per ring.
pub const RING_ENTRIES: usize = hw::MAX_RING_ENTRIES;
/// Bytes per ring.
pub const RING_BYTES: usize = RING_ENTRIES * hw::DESCRIPTOR_SIZE;
/// Offset of the TX ring in the driver region.
pub const TX_RING_OFFSET: usize = 0;
/// Offset of the RX ring in the driver region.
pub const RX_RING_OFFSET: usize = RING_BYTES;
/// DMA memory the driver needs.
pub const REGION_SIZE: usize = 2 * RING_BYTES;
/// Largest copy (upstream's limit).
pub const MAX_SIZE: u64 = 1024;
/// Largest count: the ring size minus one.
pub const MAX_COUNT: u64 = RING_ENTRIES as u64 - 1;
/// The MSI-X vector used for `send_msi`.
pub const MSI_VECTOR: u16 = 0;
/// Smallest register BAR accepted (covers GCR at 0x5b00).
pub const MIN_BAR_LEN: usize = 0x6000;

/// Wait after setting CTRL.RST before touching the device.
pub const RESET_DELAY_NS: u64 = 1_000_000;
/// How long to wait for EECD.AUTO_RD after a reset.
pub const AUTO_RD_TIMEOUT_NS: u64 = 20_000_000;
/// How long to wait for an MDIC transaction.
pub const MDIC_TIMEOUT_NS: u64 = 10_000_000;
/// Settle time after the autonegotiation kick.
pub const PHY_SETTLE_NS: u64 = 50_000_000;
/// Settle time after forcing the link.
pub const LINK_SETTLE_NS: u64 = 500_000_000;
/// How long to wait for the queues to report enabled.
pub const QUEUE_ENABLE_TIMEOUT_NS: u64 = 10_000_000;
/// Poll interval for descriptor write-back.
pub const WAIT_POLL_INTERVAL_NS: u64 = 1_000_000;
/// Poll interval for registers during bring-up.
pub const REG_POLL_INTERVAL_NS: u64 = 10_000;

fn timeout(register: &'static str, value: u64, waited_ns: u64) -> DriverError {
    DriverError::Timeout {
        device: NAME,
        register,
        value,
        waited_ns,
    }
}

/// An initialised 82576 / QEMU igb.
pub struct Igb<'r, F: PciFunction, C: Clock> {
    function: F,
    clock: C,
    region: DmaRegion<'r>,
    bar: F::Bar,
    tx_tail: usize,
    rx_tail: usize,
    /// Index of the last RX descriptor of the copies in flight, the copy size, and how the wait
    /// learns of completion.
    last_rx: Option<(usize, u16, WaitMode)>,
    mac_loopback: bool,
}

impl<F: PciFunction, C: Clock> core::fmt::Debug for Igb<'_, F, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Igb")
            .field("region_iova", &self.region.iova())
            .field("tx_tail", &self.tx_tail)
            .field("rx_tail", &self.rx_tail)
            .field("last_rx", &self.last_rx)
            .field("mac_loopback", &self.mac_loopback)
            .finish()
    }
}

impl<F: PciFunction, C: Clock> Igb<'_, F, C> {
    /// The register BAR handle.
    pub fn bar(&self) -> &F::Bar {
        &self.bar
    }

    /// True when the driver loops frames back in the MAC (QEMU), false for PHY loopback.
    pub fn mac_loopback(&self) -> bool {
        self.mac_loopback
    }

    fn read(&self, reg: usize) -> u32 {
        self.bar.read32(reg)
    }

    fn write(&self, reg: usize, value: u32) {
        self.bar.write32(reg, value);
    }

    fn poll_reg(
        &self,
        reg: usize,
        name: &'static str,
        timeout_ns: u64,
        done: impl Fn(u32) -> bool,
    ) -> Result<u32, DriverError> {
        poll(
            &self.clock,
            timeout_ns,
            REG_POLL_INTERVAL_NS,
            || u64::from(self.read(reg)),
            |v| done(v as u32),
        )
        .map(|v| v as u32)
        .map_err(|t| timeout(name, t.last, t.waited_ns))
    }

    /// Software reset; returns whether EECD.AUTO_RD was seen (real hardware).
    fn reset(&self) -> Result<bool, DriverError> {
        self.write(hw::CTRL, self.read(hw::CTRL) | hw::ctrl::RST);
        self.clock.delay_ns(RESET_DELAY_NS);
        let auto_rd = self
            .poll_reg(hw::EECD, "EECD", AUTO_RD_TIMEOUT_NS, |v| {
                v & hw::eecd::AUTO_RD != 0
            })
            .is_ok();
        if !auto_rd {
            // QEMU never sets AUTO_RD; accept a reset whose RST bit has cleared.
            let ctrl = self.read(hw::CTRL);
            if ctrl & hw::ctrl::RST != 0 {
                return Err(timeout("CTRL", ctrl.into(), AUTO_RD_TIMEOUT_NS));
            }
        }
        self.write(hw::IMC, u32::MAX);
        self.write(hw::EIMC, u32::MAX);
        Ok(auto_rd)
    }

    fn phy_write(&self, reg: u32, data: u16) -> Result<(), DriverError> {
        self.write(hw::MDIC, hw::mdic::write(reg, data));
        let v = self.poll_reg(hw::MDIC, "MDIC", MDIC_TIMEOUT_NS, |v| {
            v & hw::mdic::READY != 0
        })?;
        if v & hw::mdic::ERROR != 0 {
            return Err(DriverError::Device(DeviceError::Register {
                device: NAME,
                register: "MDIC",
                value: v.into(),
            }));
        }
        Ok(())
    }

    fn write_ring_base(&self, bal: usize, bah: usize, len: usize, iova: u64) {
        self.write(bal, iova as u32);
        self.write(bah, (iova >> 32) as u32);
        self.write(len, RING_BYTES as u32);
    }

    /// Bring-up after a reset (also reused after a function reset).
    fn hw_init(&mut self) -> Result<(), DriverError> {
        let ext = self.read(hw::CTRL_EXT);
        self.write(
            hw::CTRL_EXT,
            (ext | hw::ctrl_ext::DRV_LOAD) & !hw::ctrl_ext::LINK_MODE_MASK,
        );

        pci::update_command(
            &self.function,
            Command::MEMORY_SPACE | Command::BUS_MASTER,
            Command::empty(),
        )?;

        // PHY: kick autonegotiation (QEMU raises STATUS.LU on its completion), then internal
        // loopback at 1000 Mb/s full duplex, and force the MAC to match.
        self.phy_write(
            hw::phy::BMCR,
            hw::phy::BMCR_AUTONEG_ENABLE | hw::phy::BMCR_RESTART_AUTONEG,
        )?;
        self.clock.delay_ns(PHY_SETTLE_NS);
        self.phy_write(
            hw::phy::BMCR,
            hw::phy::BMCR_LOOPBACK | hw::phy::BMCR_SPEED_1000 | hw::phy::BMCR_FULL_DUPLEX,
        )?;
        let ctrl = self.read(hw::CTRL) & !(0b11 << 8);
        self.write(
            hw::CTRL,
            ctrl | hw::ctrl::SLU
                | hw::ctrl::FRCSPD
                | hw::ctrl::FRCDPX
                | hw::ctrl::SPEED_1000
                | hw::ctrl::FD,
        );
        self.clock.delay_ns(LINK_SETTLE_NS);

        self.write(hw::GCR, self.read(hw::GCR) & !hw::gcr::CMPL_TMOUT_RESEND);

        let tx_iova = self.region.iova_at(TX_RING_OFFSET)?;
        let rx_iova = self.region.iova_at(RX_RING_OFFSET)?;
        self.write_ring_base(hw::TDBAL0, hw::TDBAH0, hw::TDLEN0, tx_iova);
        self.write(hw::TDH0, 0);
        self.write(hw::TDT0, 0);
        self.write(hw::TXDCTL0, self.read(hw::TXDCTL0) | hw::dctl::ENABLE);

        self.write_ring_base(hw::RDBAL0, hw::RDBAH0, hw::RDLEN0, rx_iova);
        self.write(hw::RDH0, 0);
        self.write(hw::RDT0, 0);
        self.write(hw::SRRCTL0, hw::srrctl::DESCTYPE_ADV_ONEBUF);
        self.write(hw::RXDCTL0, self.read(hw::RXDCTL0) | hw::dctl::ENABLE);
        self.tx_tail = 0;
        self.rx_tail = 0;
        self.last_rx = None;

        let lbm = if self.mac_loopback {
            hw::rctl::LBM_MAC
        } else {
            0
        };
        self.write(
            hw::RCTL,
            hw::rctl::EN | hw::rctl::UPE | hw::rctl::MPE | hw::rctl::BAM | lbm | hw::rctl::SECRC,
        );
        self.write(hw::TCTL, hw::tctl::EN | hw::tctl::PSP);
        self.poll_reg(hw::TXDCTL0, "TXDCTL0", QUEUE_ENABLE_TIMEOUT_NS, |v| {
            v & hw::dctl::ENABLE != 0
        })?;
        self.poll_reg(hw::RXDCTL0, "RXDCTL0", QUEUE_ENABLE_TIMEOUT_NS, |v| {
            v & hw::dctl::ENABLE != 0
        })?;

        // MSI-X: RX queue 0 -> vector 0, auto-clear and auto-mask vector 0, unmask it.
        let v0 = hw::eicr_vector(MSI_VECTOR as u8);
        self.write(hw::GPIE, hw::gpie::MSIX_MODE | hw::gpie::EIAME);
        self.write(hw::EIAC, v0);
        self.write(hw::EIAM, v0);
        self.write(hw::IVAR0, hw::ivar::rx_queue0(MSI_VECTOR as u8));
        self.write(hw::EIMS, v0);
        Ok(())
    }

    fn bring_up(&mut self) -> Result<(), DriverError> {
        self.function.irq_enable(IrqKind::MsiX, 0, 1)?;
        let auto_rd = self.reset()?;
        self.mac_loopback = !auto_rd;
        self.hw_init()
    }

    /// The write-back descriptor at `index` (read after its DD bit).
    fn rx_writeback(&self, index: usize) -> Result<AdvRxWriteback, DmaError> {
        self.region
            .read(RX_RING_OFFSET + index * hw::DESCRIPTOR_SIZE)
    }

    fn rx_status(&self, index: usize) -> Result<u32, DmaError> {
        // status_error is bytes 8..12 of the write-back descriptor.
        self.region
            .read_u32(RX_RING_OFFSET + index * hw::DESCRIPTOR_SIZE + 8)
            .map(u32::from_le)
    }
}

impl<'r, F: PciFunction, C: Clock> Driver<'r> for Igb<'r, F, C> {
    type Function = F;
    type Clock = C;

    fn probe(function: &F) -> Option<Match> {
        let (vendor, device) = pci::read_ids(function).ok()?;
        (vendor == hw::VENDOR_ID && device == hw::DEVICE_ID).then_some(Match {
            name: NAME,
            vendor,
            device,
            region_size: REGION_SIZE,
        })
    }

    fn init(function: F, clock: C, region: DmaRegion<'r>) -> Result<Self, DriverError> {
        if region.len() < REGION_SIZE {
            return Err(DriverError::RegionTooSmall {
                need: REGION_SIZE,
                have: region.len(),
            });
        }
        if !region.iova().is_multiple_of(hw::RING_ALIGN as u64) {
            return Err(DmaError::Misaligned {
                offset: 0,
                align: hw::RING_ALIGN,
            }
            .into());
        }
        let bar = function.bar(hw::REGISTER_BAR)?;
        if bar.len() < MIN_BAR_LEN {
            return Err(DriverError::Device(DeviceError::Register {
                device: NAME,
                register: "BAR0 length",
                value: bar.len() as u64,
            }));
        }
        region.fill(0, REGION_SIZE, 0)?;
        let mut igb = Self {
            function,
            clock,
            region,
            bar,
            tx_tail: 0,
            rx_tail: 0,
            last_rx: None,
            mac_loopback: false,
        };
        igb.bring_up()?;
        Ok(igb)
    }

    fn remove(self) -> Result<(), DriverError> {
        // Stop both queues and all interrupts, then release MSI-X and bus mastering.
        self.write(hw::EIMC, u32::MAX);
        self.write(hw::IMC, u32::MAX);
        self.write(hw::RCTL, 0);
        self.write(hw::TCTL, 0);
        self.write(hw::RXDCTL0, self.read(hw::RXDCTL0) & !hw::dctl::ENABLE);
        self.write(hw::TXDCTL0, self.read(hw::TXDCTL0) & !hw::dctl::ENABLE);
        let ext = self.read(hw::CTRL_EXT);
        self.write(hw::CTRL_EXT, ext & !hw::ctrl_ext::DRV_LOAD);
        let irq = self.function.irq_disable(IrqKind::MsiX).map_err(Into::into);
        let master = pci::update_command(&self.function, Command::empty(), Command::BUS_MASTER);
        irq.and(master.map(|_| ()).map_err(Into::into))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_memcpy_size: MAX_SIZE,
            max_memcpy_count: MAX_COUNT,
            msi_vector: MSI_VECTOR,
        }
    }

    fn memcpy_start(
        &mut self,
        _: InOrder,
        src: u64,
        dst: u64,
        size: u64,
        count: u64,
        mode: WaitMode,
    ) -> Result<(), DriverError> {
        if size > MAX_SIZE || count == 0 || count > MAX_COUNT {
            return Err(DriverError::BeyondLimits {
                size,
                count,
                limits: self.limits(),
            });
        }
        if size < hw::MIN_FRAME_LEN {
            return Err(DriverError::Unsupported {
                device: NAME,
                reason: "igb copies are Ethernet frames of at least 60 bytes",
            });
        }
        let v0 = hw::eicr_vector(MSI_VECTOR as u8);
        match mode {
            // No interrupt may fire for a polled copy: mask vector 0 until the wait unmasks it.
            WaitMode::Poll => self.write(hw::EIMC, v0),
            // RX queue 0's write-back raises vector 0 once (EIAM masks it again when it fires).
            WaitMode::Interrupt => self.write(hw::EIMS, v0),
        }
        let len = size as u16;
        let mut last = self.rx_tail;
        for _ in 0..count {
            let rx = AdvRxRead::buffer(dst);
            self.region
                .write(RX_RING_OFFSET + self.rx_tail * hw::DESCRIPTOR_SIZE, &rx)?;
            let tx = AdvTxDataDescriptor::packet(src, len);
            self.region
                .write(TX_RING_OFFSET + self.tx_tail * hw::DESCRIPTOR_SIZE, &tx)?;
            last = self.rx_tail;
            self.rx_tail = (self.rx_tail + 1) % RING_ENTRIES;
            self.tx_tail = (self.tx_tail + 1) % RING_ENTRIES;
        }
        // The descriptors must be visible to the device before the tail writes.
        arch::write_barrier();
        self.write(hw::RDT0, self.rx_tail as u32);
        self.write(hw::TDT0, self.tx_tail as u32);
        self.last_rx = Some((last, len, mode));
        Ok(())
    }

    fn memcpy_wait(&mut self, _: InOrder, timeout_ns: u64) -> Result<(), DriverError> {
        let Some((last, len, mode)) = self.last_rx.take() else {
            // Unreachable through CheckedDriver (the one state check); nothing to wait for.
            return Ok(());
        };
        if mode == WaitMode::Poll {
            return self.finish_copies(last, len, timeout_ns);
        }
        let start = self.clock.now_ns();
        let slept = wait_interrupt(
            &self.function,
            NAME,
            IrqKind::MsiX,
            u32::from(MSI_VECTOR),
            timeout_ns,
            || {
                self.rx_status(last)
                    .is_ok_and(|s| s & hw::rxd::STAT_DD != 0)
            },
        );
        let left = timeout_ns.saturating_sub(self.clock.now_ns().wrapping_sub(start));
        match slept {
            Ok(_) => self.finish_copies(last, len, left),
            Err(e) => {
                // Finish without waiting longer (an unfinished copy takes the timeout's recovery
                // path), then report the missing interrupt.
                let _ = self.finish_copies(last, len, 0);
                Err(e)
            }
        }
    }

    fn send_msi(&mut self, _: InOrder) -> Result<(), DriverError> {
        // EIAM auto-masks vector 0 each time it fires, so unmask it before raising the cause.
        let v0 = hw::eicr_vector(MSI_VECTOR as u8);
        self.write(hw::EIMS, v0);
        self.write(hw::EICS, v0);
        Ok(())
    }
}

impl<F: PciFunction, C: Clock> Igb<'_, F, C> {
    /// Poll the DD bit of RX descriptor `last` for at most `timeout_ns`, then check the frame;
    /// clear EICR and unmask vector 0 again. A timeout resets and re-initialises the function.
    fn finish_copies(&mut self, last: usize, len: u16, timeout_ns: u64) -> Result<(), DriverError> {
        let mut dma_err = None;
        let r = poll(
            &self.clock,
            timeout_ns,
            WAIT_POLL_INTERVAL_NS,
            || match self.rx_status(last) {
                Ok(s) => u64::from(s),
                Err(e) => {
                    dma_err = Some(e);
                    u64::from(hw::rxd::STAT_DD)
                }
            },
            |v| v as u32 & hw::rxd::STAT_DD != 0,
        );
        if let Some(e) = dma_err {
            return Err(e.into());
        }
        match r {
            Ok(status) => {
                // The copied data is read only after the DD bit that vouches for it.
                arch::read_barrier();
                self.write(hw::EICR, u32::MAX);
                self.write(hw::EIMS, hw::eicr_vector(MSI_VECTOR as u8));
                if status as u32 & hw::rxd::ERR_RXE != 0 {
                    return Err(DriverError::Device(DeviceError::Register {
                        device: NAME,
                        register: "RX descriptor status_error",
                        value: status,
                    }));
                }
                // With SECRC the frame lands exactly as sent; any other length means the copy
                // was truncated or padded.
                let got = self.rx_writeback(last)?.length.get();
                if got != len {
                    return Err(DriverError::Device(DeviceError::Register {
                        device: NAME,
                        register: "RX descriptor length",
                        value: got.into(),
                    }));
                }
                Ok(())
            }
            Err(t) => {
                // The engine may be wedged: reset the function and bring it up again.
                let recovered = self
                    .function
                    .reset()
                    .map_err(DriverError::from)
                    .and_then(|()| {
                        self.region.fill(0, REGION_SIZE, 0)?;
                        self.bring_up()
                    });
                recovered?;
                Err(timeout(
                    "RX descriptor status_error (DD)",
                    t.last,
                    t.waited_ns,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
