//! The descriptor tables and page tables the host builds in guest memory, so the guest starts
//! in 64-bit mode with nothing to set up.

use passthru_guest_rt::abi::{
    ImageHeader, GDT_GPA, IDENTITY_MAP_SIZE, IDT_GPA, KERNEL_CS, PAGE_TABLES_GPA, STUB_STRIDE,
    TSS_GPA, TSS_STRIDE,
};
use x86_64::structures::gdt::{Descriptor, DescriptorFlags};
use x86_64::structures::idt::{Entry, HandlerFunc};
use x86_64::structures::paging::{PageTable, PageTableFlags as F};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PhysAddr, PrivilegeLevel, VirtAddr};

use std::sync::OnceLock;

use crate::error::Result;
use crate::memory::GuestMemory;

/// GPAs at and above this are mapped uncached (the MMIO window for device BARs: place BARs in
/// `MMIO_WINDOW_GPA..0xfec0_0000`); RAM must lie below it.
pub const MMIO_WINDOW_GPA: u64 = 0xc000_0000;

/// Writes the identity map of the low 4 GiB: PML4 → PDPT → 4 PDs of 2 MiB pages, with the
/// first 2 MiB split into 4 KiB pages so that page 0 can be left not present. Pages at and
/// above [`MMIO_WINDOW_GPA`] are uncached (PCD | PWT).
pub fn write_page_tables(mem: &GuestMemory) -> Result<u64> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    mem.write_bytes(PAGE_TABLES_GPA, BYTES.get_or_init(page_tables))?;
    Ok(PAGE_TABLES_GPA)
}

/// The page tables' bytes (7 pages from [`PAGE_TABLES_GPA`]), as [`write_page_tables`] writes.
pub fn page_tables() -> Vec<u8> {
    let pml4_gpa = PAGE_TABLES_GPA;
    let pdpt_gpa = pml4_gpa + 0x1000;
    let pd_gpa = pdpt_gpa + 0x1000;
    let nr_pds = IDENTITY_MAP_SIZE >> 30;
    let pt_gpa = pd_gpa + nr_pds * 0x1000;
    let rw = F::PRESENT | F::WRITABLE;
    let mut out = Vec::with_capacity(7 * 4096);

    let mut pml4 = PageTable::new();
    pml4[0].set_addr(PhysAddr::new(pdpt_gpa), rw);
    push_table(&mut out, &pml4);

    let mut pdpt = PageTable::new();
    for i in 0..nr_pds {
        pdpt[i as usize].set_addr(PhysAddr::new(pd_gpa + i * 0x1000), rw);
    }
    push_table(&mut out, &pdpt);

    for i in 0..nr_pds {
        let mut pd = PageTable::new();
        for j in 0..512u64 {
            let addr = (i << 30) | (j << 21);
            if addr == 0 {
                pd[0].set_addr(PhysAddr::new(pt_gpa), rw);
                continue;
            }
            let mut flags = rw | F::HUGE_PAGE;
            if addr >= MMIO_WINDOW_GPA {
                flags |= F::NO_CACHE | F::WRITE_THROUGH;
            }
            pd[j as usize].set_addr(PhysAddr::new(addr), flags);
        }
        push_table(&mut out, &pd);
    }

    let mut pt = PageTable::new();
    for k in 1..512u64 {
        pt[k as usize].set_addr(PhysAddr::new(k << 12), rw);
    }
    push_table(&mut out, &pt);
    out
}

fn push_table(out: &mut Vec<u8>, table: &PageTable) {
    for e in table.iter() {
        out.extend_from_slice(&(e.addr().as_u64() | e.flags().bits()).to_le_bytes());
    }
}

/// GDT entries: null, kernel code, kernel data, user data, user code, (reserved), then one
/// 16-byte TSS descriptor per vCPU. Returns the GDT limit.
pub fn write_gdt(mem: &GuestMemory, nr_vcpus: u32) -> Result<u16> {
    let mut entries: Vec<u64> = vec![0];
    for d in [
        Descriptor::kernel_code_segment(),
        Descriptor::kernel_data_segment(),
        Descriptor::user_data_segment(),
        Descriptor::user_code_segment(),
    ] {
        push_descriptor(&mut entries, d);
    }
    entries.push(0);
    for i in 0..nr_vcpus {
        let tss_gpa = TSS_GPA + i as u64 * TSS_STRIDE;
        entries.extend(tss_descriptor(tss_gpa));
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_bytes(GDT_GPA, &bytes)?;
    Ok((bytes.len() - 1) as u16)
}

/// A 64-bit TSS descriptor for a TSS at guest address `base` (Intel SDM Vol. 3A §8.2.3): limit
/// 103 (no I/O bitmap), type 9 (available 64-bit TSS), present, base split over both quadwords.
/// (`Descriptor::tss_segment*` take a host pointer and read through it, so they do not fit a
/// TSS that lives in guest memory.)
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = size_of::<TaskStateSegment>() as u64 - 1;
    let low = DescriptorFlags::PRESENT.bits()
        | limit
        | (base & 0xff_ffff) << 16
        | 0b1001 << 40
        | ((base >> 24) & 0xff) << 56;
    [low, base >> 32]
}

fn push_descriptor(entries: &mut Vec<u64>, d: Descriptor) {
    match d {
        Descriptor::UserSegment(v) => entries.push(v),
        Descriptor::SystemSegment(lo, hi) => entries.extend([lo, hi]),
    }
}

/// The raw `(low, high)` descriptor of a vCPU's TSS (for `KVM_SET_SREGS`'s TR).
pub fn tss_gpa(index: u32) -> u64 {
    TSS_GPA + index as u64 * TSS_STRIDE
}

/// Writes vCPU `index`'s TSS (RSP0 = its stack top, for a future CPL3 mode).
pub fn write_tss(mem: &GuestMemory, index: u32, stack_top: u64) -> Result<()> {
    let mut tss = TaskStateSegment::new();
    tss.privilege_stack_table[0] = VirtAddr::new(stack_top);
    // Layout (Intel SDM Vol. 3A, Figure 8-11): reserved u32, RSP0..2, reserved u64, IST1..7,
    // reserved u64, reserved u16, I/O map base u16; 104 bytes.
    let mut raw = [0u8; 104];
    raw[4..12].copy_from_slice(&tss.privilege_stack_table[0].as_u64().to_le_bytes());
    raw[102..104].copy_from_slice(&{ tss.iomap_base }.to_le_bytes());
    mem.write_bytes(tss_gpa(index), &raw)
}

/// Writes the IDT: exception stubs for 0–31 (NMI → the NMI stub), interrupt stubs for 32–255,
/// all interrupt gates (IF cleared on entry) at CPL0, DPL0, no IST.
pub fn write_idt(mem: &GuestMemory, header: &ImageHeader) -> Result<()> {
    mem.write_bytes(IDT_GPA, &idt_bytes(header))
}

/// The IDT's bytes for an image with `header` (256 gates of 16 bytes).
pub fn idt_bytes(header: &ImageHeader) -> Vec<u8> {
    let mut idt = [Entry::<HandlerFunc>::missing(); 256];
    for (v, e) in idt.iter_mut().enumerate() {
        let v = v as u64;
        let addr = match v {
            2 => header.nmi_stub,
            0..32 => header.exception_stubs + v * STUB_STRIDE,
            _ => header.irq_stubs + (v - 32) * STUB_STRIDE,
        };
        // SAFETY: `addr` is the guest address of the runtime's stub for this vector, which has
        // the interrupt-handler calling convention; the code selector read from the host's CS is
        // replaced right below with the guest's.
        unsafe {
            e.set_handler_addr(VirtAddr::new(addr)).set_code_selector(
                x86_64::structures::gdt::SegmentSelector::new(
                    KERNEL_CS >> 3,
                    PrivilegeLevel::Ring0,
                ),
            )
        };
    }
    // SAFETY: `Entry<HandlerFunc>` is `repr(C)` of integers only (u16, u16+u16, u16, u32, u32;
    // the PhantomData is zero-sized) with no padding, 16 bytes each, so its bytes can be read.
    let bytes = unsafe { std::slice::from_raw_parts(idt.as_ptr().cast::<u8>(), 256 * 16) };
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_covers_4g_with_page_0_absent_and_mmio_uncached() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let cr3 = write_page_tables(&mem).unwrap();
        let walk = |va: u64| -> Option<(u64, u64)> {
            let mut table = cr3;
            for (level, shift) in [(4, 39), (3, 30), (2, 21), (1, 12)] {
                let e: u64 = mem.read(table + ((va >> shift) & 511) * 8).unwrap();
                if e & 1 == 0 {
                    return None;
                }
                let addr = e & 0x000f_ffff_ffff_f000;
                if level == 2 && e & (1 << 7) != 0 {
                    return Some((addr | (va & 0x1f_ffff), e));
                }
                if level == 1 {
                    return Some((addr | (va & 0xfff), e));
                }
                table = addr;
            }
            None
        };
        assert_eq!(walk(0), None);
        assert_eq!(walk(0x1008).unwrap().0, 0x1008);
        assert_eq!(walk(0x20_0123).unwrap().0, 0x20_0123);
        let (pa, e) = walk(0xfee0_00b0).unwrap();
        assert_eq!(pa, 0xfee0_00b0);
        assert_ne!(e & (1 << 4), 0, "APIC page must be PCD");
        assert_eq!(walk(0x8000_0000).unwrap().1 & (1 << 4), 0);
        assert_eq!(walk(64 << 30), None);
    }

    #[test]
    fn gdt_has_long_mode_code_and_per_vcpu_tss() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let limit = write_gdt(&mem, 2).unwrap();
        assert_eq!(limit as usize + 1, 8 * (6 + 4));
        let cs: u64 = mem.read(GDT_GPA + KERNEL_CS as u64).unwrap();
        assert_ne!(cs & (1 << 53), 0, "L bit");
        assert_ne!(cs & (1 << 47), 0, "present");
        let tss1_lo: u64 = mem.read(GDT_GPA + 0x40).unwrap();
        let base = ((tss1_lo >> 16) & 0xff_ffff) | (((tss1_lo >> 56) & 0xff) << 24);
        assert_eq!(base, tss_gpa(1));
        assert_eq!((tss1_lo >> 40) & 0xf, 9, "available 64-bit TSS");
    }

    #[test]
    fn idt_gates_point_at_the_stubs() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let h = ImageHeader {
            magic: 0,
            exception_stubs: 0x20_1000,
            irq_stubs: 0x20_2000,
            nmi_stub: 0x20_3000,
            main_return: 0,
            mains_start: 0,
            mains_end: 0,
        };
        write_idt(&mem, &h).unwrap();
        let gate = |v: u64| -> (u64, u16, u8) {
            let lo: u64 = mem.read(IDT_GPA + v * 16).unwrap();
            let hi: u64 = mem.read(IDT_GPA + v * 16 + 8).unwrap();
            let off = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | ((hi & 0xffff_ffff) << 32);
            (off, (lo >> 16) as u16, (lo >> 40) as u8)
        };
        assert_eq!(gate(6), (0x20_1060, KERNEL_CS, 0x8e));
        assert_eq!(gate(2).0, 0x20_3000);
        assert_eq!(gate(32).0, 0x20_2000);
        assert_eq!(gate(255).0, 0x20_2000 + 223 * 16);
    }
}
