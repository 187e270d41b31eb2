//! ucalls: the guest's calls to the host, one 32-bit `out` to [`UCALL_PORT`] each, with the
//! arguments in this vCPU's [`Ucall`] block.

use core::fmt;

use crate::abi::{Ucall, UcallKind, UCALL_PORT, UCALL_TEXT_SIZE};
use crate::percpu::this_cpu;

fn block() -> *mut Ucall {
    // SAFETY: `this_cpu` is this vCPU's PerCpu block; only this vCPU writes its ucall block
    // (the host reads it while this vCPU is stopped in the `out` exit).
    unsafe { core::ptr::addr_of_mut!((*this_cpu()).ucall) }
}

fn set_args(args: &[u64]) {
    let b = block();
    for (i, a) in args.iter().enumerate().take(8) {
        // SAFETY: `b` is this vCPU's ucall block; `i < 8` stays inside `args`.
        unsafe { core::ptr::addr_of_mut!((*b).args[i]).write_volatile(*a) };
    }
}

/// Raw ucall: the host handles `kind` with the arguments already in the block.
#[inline]
pub fn raw(kind: UcallKind) {
    // SAFETY: an `out` to the ucall port exits to the host, which reads this vCPU's ucall block
    // and resumes the vCPU (or stops it for good). It touches no guest memory the compiler
    // knows about except through the volatile writes above, so no memory clobber is hidden.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") UCALL_PORT, in("eax") kind as u32,
                         options(nostack, preserves_flags))
    };
}

/// Stops this vCPU until the host resumes it; `value` tells the host which stage this is.
pub fn sync(value: u64) {
    set_args(&[value]);
    raw(UcallKind::Sync);
}

/// Prints a string on the host (no formatting in the guest: the host reads it in place).
pub fn print(s: &str) {
    set_args(&[s.as_ptr() as u64, s.len() as u64]);
    raw(UcallKind::Print);
}

/// Prints formatted text on the host (formatting runs in the guest: keep it off hot paths).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    write_text(args);
    set_args(&[0, 0]);
    raw(UcallKind::Print);
}

/// Prints formatted text on the host: `guest_print!("x = {}", x)`.
#[macro_export]
macro_rules! guest_print {
    ($($arg:tt)*) => { $crate::ucall::print_fmt(format_args!($($arg)*)) };
}

/// Tells the host this vCPU's main is done; the host does not resume it.
pub fn done() -> ! {
    raw(UcallKind::Done);
    halt_forever()
}

/// Sends a host request (`code` and up to 7 arguments) to the host's registered request
/// handler and returns its reply, or `Err(status)` ([`crate::abi::HOST_REQUEST_FAILED`], ...).
pub fn host_request(code: u64, args: &[u64]) -> Result<[u64; 4], u64> {
    let b = block();
    set_args(&[code]);
    for (i, a) in args.iter().enumerate().take(7) {
        // SAFETY: `b` is this vCPU's ucall block; `i + 1 < 8`.
        unsafe { core::ptr::addr_of_mut!((*b).args[i + 1]).write_volatile(*a) };
    }
    raw(UcallKind::HostRequest);
    // SAFETY: the host wrote the reply and status before resuming this vCPU.
    let (status, reply) = unsafe {
        (
            core::ptr::addr_of!((*b).status).read_volatile(),
            core::ptr::addr_of!((*b).reply).read_volatile(),
        )
    };
    if status == crate::abi::HOST_REQUEST_OK {
        Ok(reply)
    } else {
        Err(status)
    }
}

/// Disables interrupts and halts forever (the host has already been told why).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` stops this vCPU; nothing is left to run.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

struct TextWriter {
    len: usize,
}

impl fmt::Write for TextWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let b = block();
        for &byte in s.as_bytes() {
            if self.len >= UCALL_TEXT_SIZE {
                break;
            }
            // SAFETY: `self.len < UCALL_TEXT_SIZE` keeps the write inside `text`.
            unsafe { core::ptr::addr_of_mut!((*b).text[self.len]).write_volatile(byte) };
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats `args` into the ucall text buffer (truncated at [`UCALL_TEXT_SIZE`] bytes).
pub fn write_text(args: fmt::Arguments<'_>) {
    let mut w = TextWriter { len: 0 };
    let _ = fmt::write(&mut w, args);
    // SAFETY: this vCPU's ucall block.
    unsafe { core::ptr::addr_of_mut!((*block()).text_len).write_volatile(w.len as u64) };
}

fn clear_text() {
    // SAFETY: this vCPU's ucall block.
    unsafe { core::ptr::addr_of_mut!((*block()).text_len).write_volatile(0) };
}

/// Reports a failed assertion and stops this vCPU (used by [`crate::guest_assert!`]).
#[cold]
pub fn assert_failed(
    file: &'static str,
    line: u32,
    expr: &'static str,
    values: &[u64],
    message: Option<fmt::Arguments<'_>>,
) -> ! {
    match message {
        Some(m) => write_text(m),
        None => clear_text(),
    }
    let v0 = values.first().copied().unwrap_or(0);
    let v1 = values.get(1).copied().unwrap_or(0);
    set_args(&[
        file.as_ptr() as u64,
        file.len() as u64,
        line as u64,
        expr.as_ptr() as u64,
        expr.len() as u64,
        values.len().min(2) as u64,
        v0,
        v1,
    ]);
    raw(UcallKind::AssertFailed);
    halt_forever()
}

/// Asserts a condition in the guest; on failure the host's `run_until_done` returns an error
/// carrying file, line, the expression and the optional formatted message.
#[macro_export]
macro_rules! guest_assert {
    ($cond:expr $(,)?) => {
        if !$cond {
            $crate::ucall::assert_failed(file!(), line!(), stringify!($cond), &[], None)
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::ucall::assert_failed(file!(), line!(), stringify!($cond), &[],
                                         Some(format_args!($($arg)+)))
        }
    };
}

/// Asserts two `u64`-convertible values are equal; the host error shows both values.
#[macro_export]
macro_rules! guest_assert_eq {
    ($a:expr, $b:expr $(,)?) => {{
        let (a, b) = (($a) as u64, ($b) as u64);
        if a != b {
            $crate::ucall::assert_failed(
                file!(),
                line!(),
                concat!(stringify!($a), " == ", stringify!($b)),
                &[a, b],
                None,
            )
        }
    }};
}
