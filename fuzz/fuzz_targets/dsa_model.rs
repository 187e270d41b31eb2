//! An arbitrary sequence of BAR0 register reads/writes, BAR2 portal submissions, config-space
//! writes, steps and resets into the DSA model, with a small mapped IOVA window so descriptors
//! really move data (and fault at the window's edges). The model must never panic, and some
//! invariants must hold throughout.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use passthru_core::idxd::regs::offset;
use passthru_core::idxd::{CmdSts, Descriptor, ResetType, SwErr};
use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};
use passthru_fuzz::{Bytes, WINDOW_IOVA, WINDOW_LEN};
use passthru_models::dsa::{DsaModel, DsaProfile};
use passthru_models::exec::ExecMode;
use passthru_models::iommu::{HostMemory, Iommu};

const WQCFG: usize = 0x400;
const GRPCFG: usize = 0x300;

/// A descriptor built from fuzzer bytes, with addresses biased into the window.
fn descriptor(b: &mut Bytes) -> [u8; 64] {
    let mut raw: [u8; 64] = b.array();
    if b.u8() & 3 != 0 {
        // Keep the opcode / flags / PASID dwords, aim the address fields at the window.
        let mut d = Descriptor::from_bytes(&raw);
        d.completion_addr = (b.iova() & !0x1f).into();
        d.src = b.iova().into();
        d.dst = b.iova().into();
        d.xfer_size = b.len32().into();
        d.int_handle = u16::from(b.u8() & 0xf).into();
        // The op-specific second destination / delta address, too.
        let a = b.iova().to_le_bytes();
        d.op_specific[..8].copy_from_slice(&a);
        raw = d.as_bytes();
    }
    raw
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = if b.u8() & 1 == 0 {
        ExecMode::Immediate
    } else {
        ExecMode::Manual
    };
    let p = DsaProfile::SPR;
    let iommu = Iommu::new();
    let model = DsaModel::with_profile(p, Arc::clone(&iommu), mode);
    let mem = HostMemory::pages(WINDOW_LEN).expect("host memory");
    iommu.map_all(WINDOW_IOVA, &mem).expect("map window");
    let f = model.function();
    f.config_write16(0x04, 0x0406).expect("command");
    f.irq_enable(IrqKind::MsiX, 0, p.msix_vectors())
        .expect("msix");
    let bar0 = f.bar(0).expect("bar0");
    let bar2 = f.bar(2).expect("bar2");

    let mut ops = 0;
    while !b.done() && ops < 256 {
        ops += 1;
        match b.u8() % 12 {
            // BAR0 write anywhere below 0x800 (registers and tables), any width.
            0 | 1 => {
                let w = b.width();
                let off = usize::from(b.u16() & 0x7ff) & !(usize::from(w) - 1);
                let v = b.u64();
                match w {
                    1 => bar0.write8(off, v as u8),
                    2 => bar0.write16(off, v as u16),
                    4 => bar0.write32(off, v as u32),
                    _ => bar0.write64(off, v),
                }
            }
            // BAR0 read anywhere (including out of range and unaligned: the bar checks).
            2 => {
                let off = usize::from(b.u16());
                let _ = (bar0.read32(off), bar0.read64(off & !7), bar0.read8(off));
            }
            // An administrative command.
            3 => {
                let code = u32::from(b.u8() % 20);
                let operand = u32::from(b.u16()) & 0xf_ffff;
                let irq = u32::from(b.u8() & 1) << 31;
                bar0.write32(offset::CMD, irq | code << 20 | operand);
                let _ = CmdSts(bar0.read32(offset::CMDSTS));
            }
            // Canned bring-up of WQ 0 / group 0 (so descriptors reach execution quickly).
            4 => {
                bar0.write32(WQCFG, u32::from(b.u8() % 40));
                bar0.write32(WQCFG + 8, 0x11 | u32::from(b.u8() & 2));
                bar0.write32(WQCFG + 12, 31 | 10 << 5);
                bar0.write64(GRPCFG, 1);
                bar0.write64(GRPCFG + 32, 1);
                bar0.write32(offset::CMD, 0x0010_0000);
                bar0.write32(offset::CMD, 0x0060_0000);
            }
            // Portal submission: mostly WQ 0 page 0, sometimes anywhere in BAR2.
            5..=7 => {
                let off = if b.u8() & 3 == 0 {
                    usize::from(b.u16()) * 8
                } else {
                    (usize::from(b.u8()) * 64) & 0xfff
                };
                let desc = descriptor(&mut b);
                let _ = bar2.submit64(off, &desc);
            }
            // Write fuzzer bytes into the window (batch lists, delta records, data).
            8 => {
                let at = usize::from(b.u16()) % WINDOW_LEN;
                let chunk: [u8; 64] = b.array();
                let n = chunk.len().min(WINDOW_LEN - at);
                let _ = mem.write(at, &chunk[..n]);
            }
            // Config-space write (COMMAND, MSI-X control, anything).
            9 => {
                let off = u16::from(b.u8()) & !1;
                let _ = f.config_write16(off, b.u16());
            }
            // Work, resets, injections.
            10 => match b.u8() % 8 {
                0 => {
                    let _ = model.step();
                }
                1 => {
                    let _ = model.run_until_idle();
                }
                2 => {
                    let _ = f.reset();
                }
                3 => model.inject_status(b.u8()),
                4 => model.inject_drop(u32::from(b.u8() & 3)),
                5 => model.inject_halt(match b.u8() & 3 {
                    0 => ResetType::Software,
                    1 => ResetType::Flr,
                    2 => ResetType::Warm,
                    _ => ResetType::Cold,
                }),
                6 => model.inject_swerr(SwErr::new(b.u8())),
                _ => model.inject_wq_disabled(usize::from(b.u8() & 7)),
            },
            // Unmap / remap part of the window.
            _ => {
                if b.u8() & 1 == 0 {
                    let _ = iommu.unmap(WINDOW_IOVA, 0x1000);
                } else {
                    let _ = iommu.unmap_all();
                    let _ = iommu.map_all(WINDOW_IOVA, &mem);
                }
            }
        }
        // Invariants: never more queued than the WQ can hold; GENSTS decodes.
        for wq in 0..8 {
            if let Some(c) = model.wq_config(wq) {
                assert!(
                    model.occupancy(wq) <= usize::from(c.wq_size()),
                    "WQ {wq} occupancy {} above its size {}",
                    model.occupancy(wq),
                    c.wq_size()
                );
            }
        }
        let _ = model.gensts().state();
    }
    let _ = model.run_until_idle();
    let _ = model.stats();
});
