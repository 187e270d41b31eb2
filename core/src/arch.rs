//! CPU-specific pieces: 64-byte portal stores (MOVDIR64B, ENQCMD) and memory barriers.
//!
//! On x86_64 the instructions are issued with `asm!` only after CPUID says the CPU has them;
//! elsewhere, and on CPUs without them, the functions return [`PortalError::Unsupported`].

use crate::mmio::PortalError;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::PortalError;
    use core::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const KNOWN: u8 = 1;
    const MOVDIR64B: u8 = 2;
    const ENQCMD: u8 = 4;

    static FEATURES: AtomicU8 = AtomicU8::new(UNKNOWN);

    fn features() -> u8 {
        let f = FEATURES.load(Ordering::Relaxed);
        if f != UNKNOWN {
            return f;
        }
        // CPUID leaf 7 sub-leaf 0, ECX bit 28 = MOVDIR64B, bit 29 = ENQCMD (Intel SDM vol. 2).
        let max_leaf = core::arch::x86_64::__cpuid(0).eax;
        let mut f = KNOWN;
        if max_leaf >= 7 {
            let ecx = core::arch::x86_64::__cpuid_count(7, 0).ecx;
            if ecx & (1 << 28) != 0 {
                f |= MOVDIR64B;
            }
            if ecx & (1 << 29) != 0 {
                f |= ENQCMD;
            }
        }
        FEATURES.store(f, Ordering::Relaxed);
        f
    }

    pub fn has_movdir64b() -> bool {
        features() & MOVDIR64B != 0
    }

    pub fn has_enqcmd() -> bool {
        features() & ENQCMD != 0
    }

    /// # Safety
    /// As for [`super::movdir64b`].
    pub unsafe fn movdir64b(dst: *mut u8, src: &[u8; 64]) -> Result<(), PortalError> {
        if !has_movdir64b() {
            return Err(PortalError::Unsupported);
        }
        if !(dst as usize).is_multiple_of(64) {
            return Err(PortalError::Misaligned {
                offset: dst as usize,
            });
        }
        // SAFETY: CPUID reported MOVDIR64B; `dst` is 64-byte aligned and, by this function's
        // contract, 64 bytes of a device portal mapping that nothing else treats as Rust memory;
        // `src` is a valid 64-byte buffer. The instruction reads src and writes dst only.
        unsafe {
            core::arch::asm!(
                "movdir64b {dst}, [{src}]",
                dst = in(reg) dst,
                src = in(reg) src.as_ptr(),
                options(nostack, preserves_flags)
            );
        }
        Ok(())
    }

    /// # Safety
    /// As for [`super::enqcmd`].
    pub unsafe fn enqcmd(dst: *mut u8, src: &[u8; 64]) -> Result<(), PortalError> {
        if !has_enqcmd() {
            return Err(PortalError::Unsupported);
        }
        if !(dst as usize).is_multiple_of(64) {
            return Err(PortalError::Misaligned {
                offset: dst as usize,
            });
        }
        let retry: u8;
        // SAFETY: CPUID reported ENQCMD; `dst` is an aligned address of a device portal mapping
        // (this function's contract), `src` a valid 64-byte buffer. ENQCMD sets ZF when the
        // device refuses the descriptor; `setz` captures it.
        unsafe {
            core::arch::asm!(
                "enqcmd {dst}, [{src}]",
                "setz {retry}",
                dst = in(reg) dst,
                src = in(reg) src.as_ptr(),
                retry = out(reg_byte) retry,
                options(nostack)
            );
        }
        if retry != 0 {
            Err(PortalError::Retry)
        } else {
            Ok(())
        }
    }

    pub fn write_barrier() {
        // SAFETY: SFENCE has no operands and only orders stores.
        unsafe { core::arch::asm!("sfence", options(nostack, preserves_flags)) }
    }
}

/// True if this CPU can issue MOVDIR64B (64-byte direct store) to a device portal.
pub fn has_movdir64b() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::has_movdir64b()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True if this CPU can issue ENQCMD (shared work queue submission).
pub fn has_enqcmd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::has_enqcmd()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Store 64 bytes from `src` to the device portal `dst` as one non-torn write (MOVDIR64B).
///
/// Safe code reaches this through [`crate::mmio::VolatileBar`], whose mapping proves the
/// portal. Returns [`PortalError::Unsupported`] when the CPU lacks the instruction and
/// [`PortalError::Misaligned`] when `dst` is not 64-byte aligned (nothing is written then).
///
/// Safe code cannot aim it at arbitrary memory:
///
/// ```compile_fail,E0133
/// let x = [0u8; 64];
/// // Would overwrite an immutable binding: calling movdir64b needs `unsafe`.
/// let _ = passthru_core::arch::movdir64b(x.as_ptr() as *mut u8, &[1; 64]);
/// ```
///
/// # Safety
/// `dst..dst + 64` must be valid for a 64-byte write and must not be memory that Rust code
/// accesses through references or non-volatile accesses (it must be a device portal or other
/// memory the caller owns exclusively for this store): the instruction writes all 64 bytes.
pub unsafe fn movdir64b(dst: *mut u8, src: &[u8; 64]) -> Result<(), PortalError> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded caller contract.
        unsafe { x86::movdir64b(dst, src) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dst, src);
        Err(PortalError::Unsupported)
    }
}

/// Submit 64 bytes to a shared work queue portal with ENQCMD; [`PortalError::Retry`] when the
/// device refuses (queue full).
///
/// # Safety
/// `dst` must be a 64-byte-aligned address inside a mapped device portal (ENQCMD is a
/// non-posted write of 64 bytes to it); as for [`movdir64b`], it must not be Rust-owned memory.
pub unsafe fn enqcmd(dst: *mut u8, src: &[u8; 64]) -> Result<(), PortalError> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: forwarded caller contract.
        unsafe { x86::enqcmd(dst, src) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dst, src);
        Err(PortalError::Unsupported)
    }
}

/// Order all earlier stores (to DMA memory) before later stores (to a doorbell or portal):
/// SFENCE on x86_64, `DSB SY` on aarch64.
pub fn write_barrier() {
    #[cfg(target_arch = "x86_64")]
    x86::write_barrier();
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Order a read of a device-written status (completion record, write-back) before reads of the
/// data it vouches for.
pub fn read_barrier() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::SY);
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
}

#[cfg(test)]
mod tests {
    #[test]
    fn portal_unsupported_is_an_error_not_ub() {
        let mut buf = [0u8; 128];
        let base = buf.as_mut_ptr();
        let aligned = ((base as usize + 63) & !63) as *mut u8;
        // SAFETY: aligned..aligned+64 lies inside `buf`, which is only read through raw
        // pointers until the store is done.
        let r = unsafe { super::movdir64b(aligned, &[0x5a; 64]) };
        if super::has_movdir64b() {
            assert_eq!(r, Ok(()));
            // SAFETY: aligned points inside buf.
            assert_eq!(unsafe { aligned.read_volatile() }, 0x5a);
        } else {
            assert_eq!(r, Err(crate::mmio::PortalError::Unsupported));
            assert!(buf.iter().all(|b| *b == 0));
        }
        if !super::has_enqcmd() {
            // SAFETY: without ENQCMD the call returns before issuing any store.
            let r = unsafe { super::enqcmd(aligned, &[0; 64]) };
            assert_eq!(r, Err(crate::mmio::PortalError::Unsupported));
        }
    }
}
