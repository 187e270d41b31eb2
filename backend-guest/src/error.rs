//! The VMM's error type.

use std::time::Duration;

/// Everything that can go wrong creating, running or talking to a guest.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `/dev/kvm` cannot be opened (absent, or no permission): tests SKIP on this.
    #[error("KVM is not available: cannot open /dev/kvm: {0}")]
    KvmUnavailable(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The ioctl or step that failed.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The host's KVM lacks something the VMM needs.
    #[error("KVM lacks {0}")]
    MissingCapability(&'static str),
    /// A bad VM configuration or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The embedded guest image is malformed (a build problem).
    #[error("guest image: {0}")]
    Image(String),
    /// No guest main of that name is in the image.
    #[error("no guest main named {name:?} in the image (it has: {available})")]
    NoSuchMain {
        /// The requested name.
        name: String,
        /// The names the image has, comma-separated.
        available: String,
    },
    /// A guest-memory access outside RAM or misaligned.
    #[error("guest memory access of {len} bytes at GPA {gpa:#x} is outside RAM (0..{ram_size:#x}) or misaligned")]
    GuestMemory {
        /// Guest-physical address.
        gpa: u64,
        /// Access length.
        len: u64,
        /// Size of guest RAM.
        ram_size: u64,
    },
    /// A host-side OS call (mmap, eventfd, thread) failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `guest_assert!` failed in the guest.
    #[error(
        "guest assertion failed on vCPU {vcpu} at {file}:{line}: {expr}{}{}",
        fmt_values(values),
        fmt_message(message)
    )]
    GuestAssert {
        /// vCPU index.
        vcpu: usize,
        /// Source file of the assertion.
        file: String,
        /// Line of the assertion.
        line: u32,
        /// The asserted expression.
        expr: String,
        /// The compared values (for `guest_assert_eq!`: left, right).
        values: Vec<u64>,
        /// The formatted message, if any.
        message: Option<String>,
    },
    /// The guest took an exception it has no handler for.
    #[error("guest exception on vCPU {vcpu}: {name} (vector {vector}) at RIP {rip:#x}, error code {error_code:#x}, CR2 {cr2:#x}, RSP {rsp:#x}")]
    GuestException {
        /// vCPU index.
        vcpu: usize,
        /// Exception vector.
        vector: u8,
        /// Mnemonic (#UD, #PF, ...).
        name: &'static str,
        /// Error code (0 where the exception has none).
        error_code: u64,
        /// Faulting RIP.
        rip: u64,
        /// CR2 (the faulting address of a #PF).
        cr2: u64,
        /// Stack pointer at the exception.
        rsp: u64,
    },
    /// The guest panicked.
    #[error("guest panic on vCPU {vcpu} at {file}:{line}: {message}")]
    GuestPanic {
        /// vCPU index.
        vcpu: usize,
        /// The panic message.
        message: String,
        /// Source file.
        file: String,
        /// Line.
        line: u32,
    },
    /// The guest accessed MMIO that no handler serves (or the handler failed).
    #[error("vCPU {vcpu}: MMIO {} of {len} bytes at GPA {gpa:#x}: {reason}",
            if *write { "write" } else { "read" })]
    Mmio {
        /// vCPU index.
        vcpu: usize,
        /// Guest-physical address.
        gpa: u64,
        /// Access size.
        len: usize,
        /// Write (true) or read.
        write: bool,
        /// Why it failed.
        reason: String,
    },
    /// The vCPU exited for a reason the VMM does not handle.
    #[error("vCPU {vcpu}: unexpected exit {exit} (RIP {rip:#x})")]
    UnexpectedExit {
        /// vCPU index.
        vcpu: usize,
        /// The exit, as text.
        exit: String,
        /// The guest RIP, if it could be read.
        rip: u64,
    },
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited, with the state seen.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The VM is in the wrong state for the call.
    #[error("{0}")]
    State(&'static str),
}

fn fmt_values(values: &[u64]) -> String {
    match values {
        [] => String::new(),
        [a] => format!(" (value {a:#x})"),
        [a, b] => format!(" (left {a:#x} = {a}, right {b:#x} = {b})"),
        _ => format!(" (values {values:x?})"),
    }
}

fn fmt_message(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

/// The mnemonic of an exception vector.
pub fn exception_name(vector: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "coprocessor overrun",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "#HV",
        "#VC",
        "#SX",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Result alias.
pub type Result<T, E = VmError> = std::result::Result<T, E>;

pub(crate) fn kerr(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}
