//! An arbitrary sequence of BAR0 register reads/writes (any offset and width), DMA programming
//! aimed at a small mapped IOVA window, config-space writes, steps and resets into the QEMU edu
//! model. The model must never panic and its identification register must stay intact.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use passthru_core::edu as hw;
use passthru_core::mmio::{IrqKind, PciFunction, RegisterIo};
use passthru_fuzz::{Bytes, WINDOW_IOVA, WINDOW_LEN};
use passthru_models::edu::EduModel;
use passthru_models::exec::ExecMode;
use passthru_models::iommu::{HostMemory, Iommu};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mode = if b.u8() & 1 == 0 {
        ExecMode::Immediate
    } else {
        ExecMode::Manual
    };
    let iommu = Iommu::new();
    let model = EduModel::new(Arc::clone(&iommu), mode);
    let mem = HostMemory::pages(WINDOW_LEN).expect("host memory");
    iommu.map_all(WINDOW_IOVA, &mem).expect("map window");
    let f = model.function();
    f.config_write16(0x04, 0x0406).expect("command");
    let _ = f.irq_enable(IrqKind::Msi, 0, 1);
    let bar0 = f.bar(0).expect("bar0");

    let mut ops = 0;
    while !b.done() && ops < 256 {
        ops += 1;
        match b.u8() % 8 {
            0 | 1 => {
                let w = b.width();
                let off = usize::from(b.u16() % 0x200) & !(usize::from(w) - 1);
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
                    bar0.read32(off & !3),
                    bar0.read64(off & !7),
                    bar0.read8(off),
                );
            }
            // A DMA between the window and the device buffer, either direction.
            3 => {
                let to_ram = b.u8() & 1 != 0;
                let buf = hw::BUFFER + u64::from(b.u16()) % (hw::BUFFER_SIZE + 64);
                let ram = b.iova();
                let (src, dst) = if to_ram { (buf, ram) } else { (ram, buf) };
                bar0.write64(hw::DMA_SRC, src);
                bar0.write64(hw::DMA_DST, dst);
                bar0.write64(hw::DMA_COUNT, u64::from(b.len32()));
                let mut cmd = hw::DmaCommand::START;
                if to_ram {
                    cmd |= hw::DmaCommand::TO_RAM;
                }
                if b.u8() & 1 != 0 {
                    cmd |= hw::DmaCommand::IRQ;
                }
                bar0.write64(hw::DMA_CMD, cmd);
            }
            4 => {
                let at = usize::from(b.u16()) % WINDOW_LEN;
                let chunk: [u8; 32] = b.array();
                let n = chunk.len().min(WINDOW_LEN - at);
                let _ = mem.write(at, &chunk[..n]);
            }
            5 => {
                let off = u16::from(b.u8()) & !1;
                let _ = f.config_write16(off, b.u16());
            }
            6 => match b.u8() % 4 {
                0 => {
                    let _ = model.step();
                }
                1 => {
                    let _ = model.run_until_idle();
                }
                2 => {
                    let _ = f.reset();
                }
                _ => model.inject_stuck(b.u8() & 1 != 0),
            },
            _ => {
                if b.u8() & 1 == 0 {
                    let _ = iommu.unmap(WINDOW_IOVA, 0x1000);
                } else {
                    let _ = iommu.unmap_all();
                    let _ = iommu.map_all(WINDOW_IOVA, &mem);
                }
            }
        }
        // With memory decode on, the ID register never changes; with it off (a config write
        // may clear COMMAND.MEM), BAR0 reads are master aborts: all ones.
        let command = f.config_read16(0x04).expect("command");
        let want = if command & 0x2 != 0 {
            hw::ID_VALUE
        } else {
            u32::MAX
        };
        assert_eq!(bar0.read32(hw::ID), want, "ID register (COMMAND {command:#06x})");
    }
    model.inject_stuck(false);
    let _ = model.run_until_idle();
});
