//! An arbitrary sequence of BAR0 register reads/writes (global and channel registers, 8/16/32/64
//! bit and split 32-bit halves), descriptor writes into a small mapped IOVA window, config-space
//! writes, steps and resets into the CBDMA model. The model must never panic; the channel state
//! must always decode.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use passthru_core::ioat::{self, chan, ChanErr, DescFlags, Descriptor};
use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};
use passthru_fuzz::{Bytes, WINDOW_IOVA, WINDOW_LEN};
use passthru_models::cbdma::{CbdmaConfig, CbdmaModel};
use passthru_models::exec::ExecMode;
use passthru_models::iommu::{HostMemory, Iommu};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = if b.u8() & 1 == 0 {
        ExecMode::Immediate
    } else {
        ExecMode::Manual
    };
    let channels = 1 + (b.u8() & 3);
    let iommu = Iommu::new();
    let model = CbdmaModel::new(
        Arc::clone(&iommu),
        CbdmaConfig {
            channels,
            xfercap: b.u8() % 32,
            mode,
            ..CbdmaConfig::default()
        },
    );
    let mem = HostMemory::pages(WINDOW_LEN).expect("host memory");
    iommu.map_all(WINDOW_IOVA, &mem).expect("map window");
    let f = model.function();
    f.config_write16(0x04, 0x0406).expect("command");
    let _ = f.irq_enable(IrqKind::MsiX, 0, u32::from(channels));
    let bar0 = f.bar(0).expect("bar0");

    let mut ops = 0;
    while !b.done() && ops < 256 {
        ops += 1;
        let ch = b.u8() % (channels + 1); // one past the last channel, too
        let base = ioat::channel_base(ch);
        match b.u8() % 11 {
            // Any register write in the first 0x300 bytes.
            0 | 1 => {
                let w = b.width();
                let off = usize::from(b.u16() % 0x300) & !(usize::from(w) - 1);
                let v = b.u64();
                match w {
                    1 => bar0.write8(off, v as u8),
                    2 => bar0.write16(off, v as u16),
                    4 => bar0.write32(off, v as u32),
                    _ => bar0.write64(off, v),
                }
            }
            2 => {
                let off = usize::from(b.u16());
                let _ = (
                    bar0.read8(off),
                    bar0.read16(off & !1),
                    bar0.read64(off & !7),
                );
            }
            // Channel commands.
            3 => bar0.write8(base + chan::CHANCMD, b.u8()),
            // CHAINADDR / CHANCMP: 64-bit or lo-then-hi.
            4 => {
                let reg = if b.u8() & 1 == 0 {
                    chan::CHAINADDR
                } else {
                    chan::CHANCMP
                };
                let a = b.iova();
                if b.u8() & 1 == 0 {
                    bar0.write64(base + reg, a);
                } else {
                    bar0.write32(base + reg, a as u32);
                    bar0.write32(base + reg + 4, (a >> 32) as u32);
                }
            }
            // Doorbell.
            // Doorbell: usually a few descriptors (a self-linked descriptor runs DMACOUNT times,
            // so large counts mostly buy slowness), sometimes any count.
            5 => {
                let v = if b.u8() & 7 == 0 {
                    b.u16()
                } else {
                    bar0.read16(base + chan::DMACOUNT)
                        .wrapping_add(u16::from(b.u8() & 0x1f))
                };
                bar0.write16(base + chan::DMACOUNT, v);
            }
            // CHANCTRL (re-arm etc.) and CHANERR (W1C).
            6 => {
                bar0.write16(base + chan::CHANCTRL, b.u16());
                bar0.write32(base + chan::CHANERR, b.u32());
            }
            // A descriptor into the window, aimed at the window.
            7 => {
                let slot = (usize::from(b.u8()) * 64) % WINDOW_LEN;
                let mut d = Descriptor::from_bytes(&b.array());
                if b.u8() & 3 != 0 {
                    d.src_addr = b.iova();
                    d.dst_addr = b.iova();
                    d.size = b.len32();
                    d.next = if b.u8() & 1 == 0 {
                        WINDOW_IOVA + slot as u64 // self-loop
                    } else {
                        b.iova()
                    };
                    d.ctl = (d.ctl & 0xff00_0000)
                        | (d.ctl & DescFlags::all().bits() & !DescFlags::NULL.bits());
                }
                let _ = mem.write(slot, &d.to_bytes());
            }
            // Raw bytes into the window.
            8 => {
                let at = usize::from(b.u16()) % WINDOW_LEN;
                let chunk: [u8; 32] = b.array();
                let n = chunk.len().min(WINDOW_LEN - at);
                let _ = mem.write(at, &chunk[..n]);
            }
            9 => {
                let off = u16::from(b.u8()) & !3;
                let _ = f.config_write32(off, b.u32());
                let _ = f.config_write32(0x180, b.u32());
            }
            _ => match b.u8() % 8 {
                0 => {
                    let _ = model.step();
                }
                1 => {
                    let _ = model.run_until_idle();
                }
                2 => {
                    let _ = f.reset();
                }
                3 => model.inject_chanerr_next(ch, ChanErr::from_bits_retain(b.u32())),
                4 => model.inject_drop_interrupts(ch, u32::from(b.u8() & 3)),
                5 => model.set_reset_delay_reads(u32::from(b.u8() & 7)),
                6 => {
                    let _ = iommu.unmap(WINDOW_IOVA + 0x1000, 0x1000);
                }
                _ => {
                    let _ = iommu.unmap_all();
                    let _ = iommu.map_all(WINDOW_IOVA, &mem);
                }
            },
        }
        for c in 0..channels {
            let _ = model.chansts(c).state();
            let _ = model.chanerr(c);
        }
    }
    let _ = model.run_until_idle();
});
