//! The host ↔ guest ABI: guest-physical layout, the boot block, the per-vCPU block, the ucall
//! protocol and the image header.
//!
//! Both sides compile this module: the guest image (as part of the runtime) and the host VMM
//! (`passthru-guest`). Every structure is `#[repr(C)]` with fixed-size fields, and every offset
//! the assembly stubs use is asserted at compile time.
//!
//! Guest-physical memory is identity-mapped (GVA = GPA) for the low 4 GiB:
//!
//! | GPA | what |
//! |---|---|
//! | `0x0000_0000` | page 0: not present (null-pointer guard) |
//! | [`BOOT_INFO_GPA`] | [`BootInfo`] |
//! | [`IDT_GPA`] | the IDT (256 gates, built by the host) |
//! | [`PAGE_TABLES_GPA`] | PML4, PDPT, 4 PDs (2 MiB pages), 1 PT for the first 2 MiB |
//! | [`GDT_GPA`] | the GDT: null, kernel code/data, user data/code, one TSS descriptor per vCPU |
//! | [`TSS_GPA`] | one 64-bit TSS per vCPU ([`TSS_STRIDE`] bytes apart) |
//! | [`USER_AREA_GPA`] | [`USER_AREA_SIZE`] bytes of test-defined shared variables |
//! | [`PER_CPU_GPA`] | one [`PerCpu`] block per vCPU ([`PER_CPU_STRIDE`] apart; the vCPU's GS base) |
//! | [`IMAGE_GPA`] | the guest image (ELF segments), at most [`IMAGE_MAX`] bytes |
//! | [`STACKS_GPA`] | one stack per vCPU, [`STACK_SIZE`] bytes each |
//! | above the stacks, 2 MiB aligned | free RAM for tests (DMA regions, buffers) |
//! | `0xfee0_0000` | the local APIC page (served by the in-kernel irqchip, no memslot) |

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The I/O port a guest writes a [`UcallKind`] to (32-bit `out`); the arguments are in its
/// [`PerCpu::ucall`] block.
pub const UCALL_PORT: u16 = 0x1000;

/// Largest number of vCPUs a VM may have (bounded by the fixed GDT/TSS/per-CPU areas).
pub const MAX_VCPUS: usize = 256;

/// GPA of the [`BootInfo`] block.
pub const BOOT_INFO_GPA: u64 = 0x1000;
/// GPA of the IDT (256 × 16 bytes).
pub const IDT_GPA: u64 = 0x2000;
/// GPA of the page tables: PML4, PDPT, 4 page directories, 1 page table (7 pages).
pub const PAGE_TABLES_GPA: u64 = 0x3000;
/// GPA of the GDT.
pub const GDT_GPA: u64 = 0x10000;
/// GPA of the first vCPU's TSS.
pub const TSS_GPA: u64 = 0x12000;
/// Distance between two vCPUs' TSSs.
pub const TSS_STRIDE: u64 = 0x80;
/// GPA of the user area: test-defined shared variables (see [`USER_AREA_SIZE`]).
pub const USER_AREA_GPA: u64 = 0x20000;
/// Size of the user area.
pub const USER_AREA_SIZE: u64 = 0x10000;
/// GPA of vCPU 0's [`PerCpu`] block.
pub const PER_CPU_GPA: u64 = 0x10_0000;
/// Distance between two vCPUs' [`PerCpu`] blocks (= `size_of::<PerCpu>()`).
pub const PER_CPU_STRIDE: u64 = 0x1000;
/// GPA the guest image is linked at.
pub const IMAGE_GPA: u64 = 0x20_0000;
/// Largest guest image (all loadable segments, from [`IMAGE_GPA`]).
pub const IMAGE_MAX: u64 = 0x40_0000;
/// GPA of vCPU 0's stack (lowest address).
pub const STACKS_GPA: u64 = IMAGE_GPA + IMAGE_MAX;
/// Stack size of each vCPU.
pub const STACK_SIZE: u64 = 0x8000;
/// Size of the identity map built by the host (the low 4 GiB, 2 MiB pages except page 0).
pub const IDENTITY_MAP_SIZE: u64 = 4 << 30;

/// GDT selector of the kernel (CPL0) 64-bit code segment.
pub const KERNEL_CS: u16 = 0x08;
/// GDT selector of the kernel data segment.
pub const KERNEL_DS: u16 = 0x10;
/// GDT selector of the user (CPL3) data segment (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// GDT selector of the user (CPL3) 64-bit code segment (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// GDT selector of vCPU 0's TSS; vCPU `i` uses `TSS_SELECTOR_BASE + 16 * i`.
pub const TSS_SELECTOR_BASE: u16 = 0x30;

/// First guest-free GPA for a VM of `nr_vcpus` vCPUs: the end of the stacks, rounded up to 2 MiB.
pub const fn free_ram_start(nr_vcpus: u32) -> u64 {
    let end = STACKS_GPA + nr_vcpus as u64 * STACK_SIZE;
    (end + 0x1f_ffff) & !0x1f_ffff
}

/// GPA of vCPU `index`'s [`PerCpu`] block.
pub const fn per_cpu_gpa(index: u32) -> u64 {
    PER_CPU_GPA + index as u64 * PER_CPU_STRIDE
}

/// Magic value in [`BootInfo::magic`] (`"PTGUEST1"`).
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"PTGUEST1");
/// Magic value at the start of the image header (`"PTIMAGE1"`).
pub const IMAGE_MAGIC: u64 = u64::from_le_bytes(*b"PTIMAGE1");

/// Number of `u64` arguments the host passes to a guest main ([`BootInfo::args`]).
pub const NR_ARGS: usize = 8;

/// Written once by the host before any vCPU runs; read-only for the guest.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// Number of vCPUs.
    pub nr_vcpus: u32,
    /// TSC frequency in kHz (`KVM_GET_TSC_KHZ`), 0 if unknown.
    pub tsc_khz: u32,
    /// Guest RAM size in bytes (RAM is GPA `0..ram_size`).
    pub ram_size: u64,
    /// First GPA free for tests (see [`free_ram_start`]).
    pub free_ram_start: u64,
    /// Arguments for the guest main, chosen by the host test.
    pub args: [u64; NR_ARGS],
}

/// What a guest asks of the host with a ucall (the value written to [`UCALL_PORT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum UcallKind {
    /// Stop until the host resumes this vCPU; `args[0]` is a test-defined value.
    Sync = 1,
    /// Print `args[1]` bytes at GPA `args[0]`, or the [`Ucall::text`] if `args[0]` is 0.
    Print = 2,
    /// A `guest_assert!` failed: `args` = file GPA, file len, line, expression GPA, expression
    /// len, number of values (0–2), value 0, value 1; an optional message in [`Ucall::text`].
    AssertFailed = 3,
    /// The guest main returned.
    Done = 4,
    /// An unexpected CPU exception: `args` = vector, error code, RIP, CS, RFLAGS, RSP, CR2.
    Exception = 5,
    /// The guest panicked: message in [`Ucall::text`], `args` = file GPA, file len, line.
    Panic = 6,
    /// A request to the host's request handler: `args[0]` = code, `args[1..]` = arguments; the
    /// host writes [`Ucall::reply`] and [`Ucall::status`].
    HostRequest = 7,
}

impl UcallKind {
    /// Decodes the value a guest wrote to the ucall port.
    pub const fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Sync,
            2 => Self::Print,
            3 => Self::AssertFailed,
            4 => Self::Done,
            5 => Self::Exception,
            6 => Self::Panic,
            7 => Self::HostRequest,
            _ => return None,
        })
    }
}

/// Size of [`Ucall::text`].
pub const UCALL_TEXT_SIZE: usize = 512;

/// Status the host writes to [`Ucall::status`] after a [`UcallKind::HostRequest`].
pub const HOST_REQUEST_OK: u64 = 0;
/// [`Ucall::status`]: no host request handler is registered.
pub const HOST_REQUEST_NO_HANDLER: u64 = 1;
/// [`Ucall::status`]: the handler refused the request (its reason is printed on the host).
pub const HOST_REQUEST_FAILED: u64 = 2;

/// One vCPU's ucall argument block (inside its [`PerCpu`]).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Ucall {
    /// Arguments; meaning per [`UcallKind`].
    pub args: [u64; 8],
    /// Host → guest reply of a host request.
    pub reply: [u64; 4],
    /// Host → guest status of a host request ([`HOST_REQUEST_OK`], ...).
    pub status: u64,
    /// Number of valid bytes in `text`.
    pub text_len: u64,
    /// UTF-8 text (formatted assertion message, panic message, print).
    pub text: [u8; UCALL_TEXT_SIZE],
}

/// [`PerCpu::apic_mode`]: the local APIC is not enabled by the runtime.
pub const APIC_MODE_NONE: u32 = 0;
/// [`PerCpu::apic_mode`]: xAPIC (MMIO at 0xfee00000).
pub const APIC_MODE_XAPIC: u32 = 1;
/// [`PerCpu::apic_mode`]: x2APIC (MSRs).
pub const APIC_MODE_X2APIC: u32 = 2;

/// One vCPU's block; its GPA is the vCPU's GS base, so the guest reaches it with no lookup.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(4096))]
pub struct PerCpu {
    /// The block's own GPA (read with `mov reg, gs:[0]`).
    pub self_gpa: u64,
    /// vCPU index (0-based, in creation order).
    pub index: u32,
    /// The vCPU's KVM id, which is its initial APIC id.
    pub vcpu_id: u32,
    /// How the runtime EOIs interrupts ([`APIC_MODE_NONE`], ...); set by `apic::enable`.
    pub apic_mode: u32,
    /// Set to 1 by the guest when it is ready for interrupts (test convention).
    pub ready: u32,
    /// Reserved.
    pub _reserved: [u64; 5],
    /// The ucall argument block.
    pub ucall: Ucall,
    /// Reserved.
    pub _pad: [u8; PER_CPU_PAD],
    /// Interrupts taken per vector, incremented (atomically) by the runtime's stubs: 2 is NMI,
    /// 32..=255 are external interrupts. The host may clear an entry.
    pub vector_counts: [u64; 256],
}

const PER_CPU_PAD: usize = 2048 - 64 - core::mem::size_of::<Ucall>();

/// Offset of [`PerCpu::apic_mode`] (used by the interrupt stubs).
pub const PER_CPU_APIC_MODE_OFFSET: usize = core::mem::offset_of!(PerCpu, apic_mode);
/// Offset of [`PerCpu::vector_counts`] (used by the interrupt stubs).
pub const PER_CPU_COUNTS_OFFSET: usize = core::mem::offset_of!(PerCpu, vector_counts);
/// Offset of [`PerCpu::ucall`].
pub const PER_CPU_UCALL_OFFSET: usize = core::mem::offset_of!(PerCpu, ucall);

const _: () = assert!(core::mem::size_of::<PerCpu>() as u64 == PER_CPU_STRIDE);
const _: () = assert!(PER_CPU_COUNTS_OFFSET == 2048);
const _: () = assert!(PER_CPU_UCALL_OFFSET == 64);
const _: () = assert!(core::mem::size_of::<BootInfo>() <= 0x1000);
const _: () = assert!(TSS_GPA + MAX_VCPUS as u64 * TSS_STRIDE <= USER_AREA_GPA);
const _: () = assert!(GDT_GPA + 8 * (6 + 2 * MAX_VCPUS as u64) <= TSS_GPA);
const _: () = assert!(per_cpu_gpa(MAX_VCPUS as u32) <= IMAGE_GPA);
const _: () = assert!(PAGE_TABLES_GPA + 7 * 0x1000 <= GDT_GPA);

/// The image header, placed first in the image (at [`IMAGE_GPA`]) by the linker script. All
/// addresses are GPAs (= GVAs).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ImageHeader {
    /// [`IMAGE_MAGIC`].
    pub magic: u64,
    /// First exception stub (vector 0); stub `v` is at `exception_stubs + v * STUB_STRIDE`.
    pub exception_stubs: u64,
    /// First interrupt stub (vector 32); stub `v` is at `irq_stubs + (v - 32) * STUB_STRIDE`.
    pub irq_stubs: u64,
    /// The NMI (vector 2) handler.
    pub nmi_stub: u64,
    /// Where a guest main returns to (sends [`UcallKind::Done`]).
    pub main_return: u64,
    /// First [`GuestMainEntry`].
    pub mains_start: u64,
    /// End of the [`GuestMainEntry`] array.
    pub mains_end: u64,
}

/// Distance between two exception or interrupt stubs.
pub const STUB_STRIDE: u64 = 16;

/// A guest main as the host sees it in the image (`passthru_mains` section).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GuestMainEntry {
    /// GPA of the UTF-8 name.
    pub name: u64,
    /// Length of the name.
    pub name_len: u64,
    /// GPA of the `extern "C" fn(vcpu_index: u32)` to run.
    pub func: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_regions_do_not_overlap_and_free_ram_is_2m_aligned() {
        assert_eq!(free_ram_start(1), 0x80_0000);
        assert_eq!(free_ram_start(2), 0x80_0000);
        assert_eq!(free_ram_start(256) % 0x20_0000, 0);
        assert!(free_ram_start(256) >= STACKS_GPA + 256 * STACK_SIZE);
        assert_eq!(per_cpu_gpa(1) - per_cpu_gpa(0), PER_CPU_STRIDE);
    }

    #[test]
    fn ucall_kinds_round_trip() {
        for v in 1..=7 {
            assert_eq!(UcallKind::from_u32(v).map(|k| k as u32), Some(v));
        }
        assert_eq!(UcallKind::from_u32(0), None);
        assert_eq!(UcallKind::from_u32(8), None);
    }
}
