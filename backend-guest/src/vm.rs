//! The VM: creation, vCPU threads, ucall handling, events, handlers and interrupt plumbing.

use std::any::Any;
use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_dtable, kvm_enable_cap, kvm_mp_state, kvm_segment, kvm_userspace_memory_region, CpuId,
    KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_X2APIC_API, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE,
    KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK, KVM_X2APIC_API_USE_32BIT_IDS,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use passthru_guest_rt::abi::{
    self, BootInfo, Ucall, UcallKind, BOOT_INFO_GPA, BOOT_MAGIC, IDT_GPA, IMAGE_GPA, KERNEL_CS,
    KERNEL_DS, MAX_VCPUS, NR_ARGS, PER_CPU_COUNTS_OFFSET, PER_CPU_UCALL_OFFSET, STACKS_GPA,
    STACK_SIZE, TSS_SELECTOR_BASE, UCALL_PORT, USER_AREA_GPA, USER_AREA_SIZE,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{exception_name, kerr, Result, VmError};
use crate::image::Image;
use crate::irq::{routing_table, GsiRoute, IrqFd, MsiMessage};
use crate::memory::{GuestMemory, SharedVar};
use crate::tables::{self, MMIO_WINDOW_GPA};

/// Default guest RAM size.
pub const DEFAULT_RAM_SIZE: u64 = 16 << 20;

/// What to build: which guest main runs, on how many vCPUs, with how much RAM and which
/// arguments.
#[derive(Debug, Clone)]
pub struct VmConfig {
    main: String,
    vcpu_ids: Vec<u32>,
    ram_size: u64,
    args: [u64; NR_ARGS],
    echo_prints: bool,
}

impl VmConfig {
    /// One vCPU (id 0), [`DEFAULT_RAM_SIZE`] of RAM, running the guest main `main` (a name
    /// registered with `guest_main!` in the image).
    pub fn new(main: &str) -> Self {
        Self {
            main: main.to_string(),
            vcpu_ids: vec![0],
            ram_size: DEFAULT_RAM_SIZE,
            args: [0; NR_ARGS],
            echo_prints: true,
        }
    }

    /// `n` vCPUs with ids (= initial APIC ids) `0..n`.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpu_ids = (0..n).collect();
        self
    }

    /// vCPUs with the given KVM ids (= APIC ids), e.g. `[0, 300]` to test x2APIC ids > 255.
    pub fn vcpu_ids(mut self, ids: &[u32]) -> Self {
        self.vcpu_ids = ids.to_vec();
        self
    }

    /// Guest RAM size in bytes (a multiple of 2 MiB, below the MMIO window at 3 GiB).
    pub fn ram_size(mut self, bytes: u64) -> Self {
        self.ram_size = bytes;
        self
    }

    /// Sets argument `index` (< 8) of the guest main ([`BootInfo::args`]).
    pub fn arg(mut self, index: usize, value: u64) -> Self {
        if let Some(a) = self.args.get_mut(index) {
            *a = value;
        }
        self
    }

    /// Whether guest prints are echoed to stderr as they arrive (default true); they are kept
    /// for [`Vm::take_prints`] either way.
    pub fn echo_prints(mut self, echo: bool) -> Self {
        self.echo_prints = echo;
        self
    }
}

/// A handler's refusal, carried into [`VmError::Mmio`] or printed for a host request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// Serves guest MMIO to a GPA range that has no memslot (registered with
/// [`Vm::add_mmio_handler`]): every guest access there exits to the VMM, which calls the
/// handler on the accessing vCPU's thread. Accesses arrive as the CPU issued them, at most 8
/// bytes each (a 64-byte store arrives as eight 8-byte writes).
pub trait MmioHandler: Send + Sync {
    /// A read of `data.len()` bytes at `offset` from the range's base; fill `data`.
    fn read(&self, vcpu: usize, offset: u64, data: &mut [u8]) -> Result<(), HandlerError>;
    /// A write of `data` at `offset` from the range's base.
    fn write(&self, vcpu: usize, offset: u64, data: &[u8]) -> Result<(), HandlerError>;
}

/// A guest's request to the host (`ucall::host_request(code, args)` in the guest), e.g. a
/// config-space access or MSI-X enable that a device backing performs on the guest's behalf.
#[derive(Debug, Clone, Copy)]
pub struct HostRequest {
    /// The requesting vCPU's index.
    pub vcpu: usize,
    /// Request code (defined by the handler).
    pub code: u64,
    /// Arguments.
    pub args: [u64; 7],
}

/// Serves [`HostRequest`]s (registered with [`Vm::set_host_request_handler`]); called on the
/// requesting vCPU's thread while that vCPU is stopped. The reply reaches the guest as
/// `Ok([u64; 4])`; an error reaches it as status [`abi::HOST_REQUEST_FAILED`] and is printed.
pub trait HostRequestHandler: Send + Sync {
    /// Handles one request; `memory` is the guest's RAM.
    fn handle(&self, request: &HostRequest, memory: &GuestMemory)
        -> Result<[u64; 4], HandlerError>;
}

/// A stop reported by a vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEvent {
    /// The vCPU called `ucall::sync(value)` and waits for [`Vm::resume`].
    Sync {
        /// vCPU index.
        vcpu: usize,
        /// The value passed.
        value: u64,
    },
    /// The vCPU's main returned.
    Done {
        /// vCPU index.
        vcpu: usize,
    },
}

/// What [`Vm::run_until_done`] saw.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Every SYNC, in arrival order, as `(vcpu, value)` (each was resumed at once).
    pub syncs: Vec<(usize, u64)>,
}

struct MmioRange {
    base: u64,
    len: u64,
    handler: Arc<dyn MmioHandler>,
}

struct Shared {
    // Field order is drop order: the VM fd (and its memslots) goes before the memory they map.
    vm: Arc<VmFd>,
    mem: GuestMemory,
    keepalive: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
    stop: AtomicBool,
    mmio: RwLock<Vec<MmioRange>>,
    host_request: RwLock<Option<Arc<dyn HostRequestHandler>>>,
    prints: Mutex<Vec<(usize, String)>>,
    echo: bool,
}

enum Report {
    Sync(u64),
    Done,
    Failed(VmError),
}

struct VcpuThread {
    handle: Option<JoinHandle<()>>,
    finished: Arc<AtomicBool>,
    tid: Arc<std::sync::atomic::AtomicI32>,
    resume: mpsc::Sender<()>,
}

/// A running (or ready-to-run) guest. Dropping it stops every vCPU thread.
pub struct Vm {
    shared: Arc<Shared>,
    vcpu_ids: Vec<u32>,
    pending: Vec<VcpuFd>,
    threads: Vec<VcpuThread>,
    events_tx: Option<mpsc::Sender<(usize, Report)>>,
    events: mpsc::Receiver<(usize, Report)>,
    queued: VecDeque<GuestEvent>,
    done: Vec<bool>,
    next_slot: AtomicU32,
    tsc_khz: u32,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpu_ids", &self.vcpu_ids)
            .field("ram_size", &self.shared.mem.size())
            .field("started", &!self.threads.is_empty())
            .finish()
    }
}

/// The KVM vCPU state a guest starts in: long mode, the runtime's GDT/IDT/TSS, GS = PerCpu.
fn long_mode_sregs(vcpu: &VcpuFd, index: u32, cr3: u64, gdt_limit: u16) -> Result<()> {
    let mut s = vcpu.get_sregs().map_err(kerr("KVM_GET_SREGS"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: KERNEL_CS,
        type_: 11,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: KERNEL_DS,
        type_: 3,
        db: 1,
        l: 0,
        ..code
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.ss = data;
    s.gs = kvm_segment {
        base: abi::per_cpu_gpa(index),
        ..data
    };
    s.tr = kvm_segment {
        base: tables::tss_gpa(index),
        limit: 103,
        selector: TSS_SELECTOR_BASE + 16 * index as u16,
        type_: 11,
        s: 0,
        db: 0,
        l: 0,
        g: 0,
        ..code
    };
    s.gdt = kvm_dtable {
        base: abi::GDT_GPA,
        limit: gdt_limit,
        padding: [0; 3],
    };
    s.idt = kvm_dtable {
        base: IDT_GPA,
        limit: 256 * 16 - 1,
        padding: [0; 3],
    };
    // CR0: PE | MP | ET | NE | WP | AM | PG; CR4: PAE | OSFXSR | OSXMMEXCPT; EFER: LME | LMA.
    s.cr0 = 0x8005_0033;
    s.cr3 = cr3;
    s.cr4 = 0x620;
    s.efer = 0x500;
    vcpu.set_sregs(&s).map_err(kerr("KVM_SET_SREGS"))
}

fn supported_cpuid(kvm: &Kvm) -> Result<CpuId> {
    static CPUID: OnceLock<CpuId> = OnceLock::new();
    if let Some(c) = CPUID.get() {
        return Ok(c.clone());
    }
    let c = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kerr("KVM_GET_SUPPORTED_CPUID"))?;
    Ok(CPUID.get_or_init(|| c).clone())
}

/// A POSIX timer sending the kick signal to one thread (`SIGEV_THREAD_ID`): first after
/// `first`, then every `interval`; deleted on drop.
struct KickTimer(libc::timer_t);

impl KickTimer {
    fn new(tid: libc::pid_t, first: Duration, interval: Duration) -> Result<Self> {
        let ts = |d: Duration| libc::timespec {
            tv_sec: d.as_secs().try_into().unwrap_or(i32::MAX.into()),
            tv_nsec: d.subsec_nanos() as _,
        };
        // SAFETY: sigevent is a plain C struct for which all-zero is a valid value.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick_signal();
        sev.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `id` are valid for the call; the kernel writes the new timer's id.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) } != 0 {
            return Err(VmError::Os {
                op: "timer_create for the run deadline",
                source: std::io::Error::last_os_error(),
            });
        }
        let timer = Self(id);
        let spec = libc::itimerspec {
            it_interval: ts(interval),
            it_value: ts(first.max(Duration::from_nanos(1))),
        };
        // SAFETY: `id` is the timer created above; `spec` is valid for the call.
        if unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(VmError::Os {
                op: "timer_settime for the run deadline",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(timer)
    }
}

impl Drop for KickTimer {
    fn drop(&mut self) {
        // SAFETY: deletes the timer this value owns, once.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// The no-op handler of the signal that kicks a vCPU thread out of `KVM_RUN`.
extern "C" fn kick_handler(_: libc::c_int) {}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs a handler that does nothing (async-signal-safe) for a real-time
        // signal this crate reserves; no SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = kick_handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

impl Vm {
    /// Creates the VM: in-kernel irqchip, x2APIC API (32-bit ids, no broadcast quirk), RAM in
    /// memslot 0, the image, tables and per-vCPU blocks in guest memory, and every vCPU in
    /// 64-bit mode at the selected main (vCPUs after the first set RUNNABLE). Nothing runs
    /// until [`Vm::start`] or [`Vm::run_until_done`].
    pub fn new(config: VmConfig) -> Result<Self> {
        let n = config.vcpu_ids.len();
        if n == 0 || n > MAX_VCPUS {
            return Err(VmError::Config(format!(
                "{n} vCPUs requested (1..={MAX_VCPUS})"
            )));
        }
        let mut sorted = config.vcpu_ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != n {
            return Err(VmError::Config("duplicate vCPU ids".into()));
        }
        let n32 = n as u32;
        let free = abi::free_ram_start(n32);
        if !config.ram_size.is_multiple_of(2 << 20)
            || config.ram_size < free + (2 << 20)
            || config.ram_size > MMIO_WINDOW_GPA
        {
            return Err(VmError::Config(format!(
                "RAM size {:#x}: must be a multiple of 2 MiB in {:#x}..={MMIO_WINDOW_GPA:#x} for {n} vCPUs",
                config.ram_size,
                free + (2 << 20)
            )));
        }
        let image = Image::embedded()?;
        let entry = image.main(&config.main)?;

        let kvm = Kvm::new().map_err(VmError::KvmUnavailable)?;
        for (cap, name) in [
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
            (Cap::SignalMsi, "KVM_CAP_SIGNAL_MSI"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCapability(name));
            }
        }
        let x2apic_api = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;
        if (kvm.check_extension_raw(KVM_CAP_X2APIC_API.into()) as u32) & x2apic_api != x2apic_api {
            return Err(VmError::MissingCapability(
                "KVM_CAP_X2APIC_API with 32-bit ids and broadcast-quirk disable",
            ));
        }
        let vm = kvm.create_vm().map_err(kerr("KVM_CREATE_VM"))?;

        let mem = GuestMemory::new(config.ram_size as usize)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: config.ram_size,
            userspace_addr: mem.host_ptr() as u64,
        };
        // SAFETY: the region is `mem`'s mapping, which lives in `Shared` next to (and is
        // dropped after) the VM fd that references it.
        unsafe { vm.set_user_memory_region(region) }.map_err(kerr("KVM_SET_USER_MEMORY_REGION"))?;
        // The irqchip comes after the RAM memslot (still before the vCPUs): in the other order
        // KVM_SET_USER_MEMORY_REGION took 5–8 ms on the measured host, against ~0.2 ms for
        // the whole memslot → irqchip → vCPU sequence.
        create_irqchip(&kvm, &vm)?;
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_X2APIC_API,
            ..Default::default()
        };
        cap.args[0] = x2apic_api.into();
        vm.enable_cap(&cap)
            .map_err(kerr("KVM_ENABLE_CAP(X2APIC_API)"))?;

        mem.write_bytes(IMAGE_GPA, &image.bytes)?;
        let cr3 = tables::write_page_tables(&mem)?;
        let gdt_limit = tables::write_gdt(&mem, n32)?;
        static IDT: OnceLock<Vec<u8>> = OnceLock::new();
        mem.write_bytes(
            IDT_GPA,
            IDT.get_or_init(|| tables::idt_bytes(&image.header)),
        )?;

        let cpuid = supported_cpuid(&kvm)?;
        let mut vcpus = Vec::with_capacity(n);
        for (i, &id) in config.vcpu_ids.iter().enumerate() {
            let i32_ = i as u32;
            let stack_top = STACKS_GPA + (i as u64 + 1) * STACK_SIZE;
            tables::write_tss(&mem, i32_, stack_top)?;
            let pc = abi::per_cpu_gpa(i32_);
            mem.write(pc, pc)?;
            mem.write(pc + 8, i32_)?;
            mem.write(pc + 12, id)?;
            mem.write(stack_top - 8, image.header.main_return)?;

            let vcpu = vm.create_vcpu(id.into()).map_err(kerr("KVM_CREATE_VCPU"))?;
            let mut c = cpuid.clone();
            for e in c.as_mut_slice() {
                match e.function {
                    1 => e.ebx = (e.ebx & 0x00ff_ffff) | (id & 0xff) << 24,
                    0xb | 0x1f => e.edx = id,
                    _ => {}
                }
            }
            vcpu.set_cpuid2(&c).map_err(kerr("KVM_SET_CPUID2"))?;
            long_mode_sregs(&vcpu, i32_, cr3, gdt_limit)?;
            let regs = kvm_bindings::kvm_regs {
                rip: entry,
                rsp: stack_top - 8,
                rdi: i as u64,
                rflags: 2,
                ..Default::default()
            };
            vcpu.set_regs(&regs).map_err(kerr("KVM_SET_REGS"))?;
            if i > 0 {
                vcpu.set_mp_state(kvm_mp_state {
                    mp_state: KVM_MP_STATE_RUNNABLE,
                })
                .map_err(kerr("KVM_SET_MP_STATE"))?;
            }
            vcpus.push(vcpu);
        }
        static TSC_KHZ: OnceLock<u32> = OnceLock::new();
        let tsc_khz = *TSC_KHZ.get_or_init(|| vcpus[0].get_tsc_khz().unwrap_or(0));
        mem.write(
            BOOT_INFO_GPA,
            BootInfo {
                magic: BOOT_MAGIC,
                nr_vcpus: n32,
                tsc_khz,
                ram_size: config.ram_size,
                free_ram_start: free,
                args: config.args,
            },
        )?;

        let (tx, rx) = mpsc::channel();
        Ok(Self {
            shared: Arc::new(Shared {
                vm: Arc::new(vm),
                mem,
                keepalive: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
                mmio: RwLock::new(Vec::new()),
                host_request: RwLock::new(None),
                prints: Mutex::new(Vec::new()),
                echo: config.echo_prints,
            }),
            vcpu_ids: config.vcpu_ids,
            pending: vcpus,
            threads: Vec::new(),
            events_tx: Some(tx),
            events: rx,
            queued: VecDeque::new(),
            done: vec![false; n],
            next_slot: AtomicU32::new(1),
            tsc_khz,
        })
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestMemory {
        &self.shared.mem
    }

    /// The KVM VM fd (for ioctls this crate does not wrap).
    pub fn vm_fd(&self) -> &VmFd {
        &self.shared.vm
    }

    /// A shared handle on the VM fd, for device backings that route interrupts from vCPU
    /// threads while the VM runs.
    pub(crate) fn vm_fd_shared(&self) -> Arc<VmFd> {
        Arc::clone(&self.shared.vm)
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> usize {
        self.vcpu_ids.len()
    }

    /// KVM id (= initial APIC id) of vCPU `index`.
    pub fn vcpu_id(&self, index: usize) -> Option<u32> {
        self.vcpu_ids.get(index).copied()
    }

    /// The guest TSC frequency in kHz (0 if KVM did not say).
    pub fn tsc_khz(&self) -> u32 {
        self.tsc_khz
    }

    /// First guest RAM address free for tests (2 MiB aligned).
    pub fn free_ram_start(&self) -> u64 {
        abi::free_ram_start(self.vcpu_ids.len() as u32)
    }

    /// A typed shared variable at `offset` in the user area ([`abi::USER_AREA_GPA`]).
    pub fn user_var<T: FromBytes + IntoBytes + Immutable + Copy>(
        &self,
        offset: u64,
    ) -> Result<SharedVar<'_, T>> {
        if offset + size_of::<T>() as u64 > USER_AREA_SIZE {
            return Err(VmError::GuestMemory {
                gpa: USER_AREA_GPA + offset,
                len: size_of::<T>() as u64,
                ram_size: self.shared.mem.size(),
            });
        }
        self.shared.mem.shared(USER_AREA_GPA + offset)
    }

    fn vcpu_gpa(&self, index: usize) -> Result<u64> {
        if index >= self.vcpu_ids.len() {
            return Err(VmError::Config(format!(
                "vCPU index {index} out of range (VM has {})",
                self.vcpu_ids.len()
            )));
        }
        Ok(abi::per_cpu_gpa(index as u32))
    }

    /// The interrupt count of `vector` on vCPU `index` (kept by the guest's stubs; 2 = NMI).
    pub fn irq_count(&self, index: usize, vector: u8) -> Result<u64> {
        self.irq_counter(index, vector).map(|v| v.read())
    }

    /// A handle on that count, for hot loops (read and clear without re-checking bounds).
    pub fn irq_counter(&self, index: usize, vector: u8) -> Result<SharedVar<'_, u64>> {
        let gpa = self.vcpu_gpa(index)? + PER_CPU_COUNTS_OFFSET as u64 + 8 * vector as u64;
        self.shared.mem.shared(gpa)
    }

    /// Whether vCPU `index` has set its ready flag (`percpu::set_ready`).
    pub fn vcpu_ready(&self, index: usize) -> Result<bool> {
        let gpa = self.vcpu_gpa(index)? + std::mem::offset_of!(abi::PerCpu, ready) as u64;
        Ok(self.shared.mem.read::<u32>(gpa)? != 0)
    }

    /// Registers `handler` for guest MMIO to `gpa..gpa + len` (no memslot may cover it).
    pub fn add_mmio_handler(
        &self,
        gpa: u64,
        len: u64,
        handler: Arc<dyn MmioHandler>,
    ) -> Result<()> {
        let end = gpa
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or_else(|| VmError::Config(format!("bad MMIO range {gpa:#x}+{len:#x}")))?;
        if gpa < self.shared.mem.size() {
            return Err(VmError::Config(format!(
                "MMIO range {gpa:#x}..{end:#x} overlaps guest RAM"
            )));
        }
        let mut ranges = self.shared.mmio.write().expect("mmio lock");
        if let Some(r) = ranges.iter().find(|r| gpa < r.base + r.len && r.base < end) {
            return Err(VmError::Config(format!(
                "MMIO range {gpa:#x}..{end:#x} overlaps {:#x}..{:#x}",
                r.base,
                r.base + r.len
            )));
        }
        ranges.push(MmioRange {
            base: gpa,
            len,
            handler,
        });
        Ok(())
    }

    /// Sets (or replaces) the handler of the guest's host requests.
    pub fn set_host_request_handler(&self, handler: Arc<dyn HostRequestHandler>) {
        *self.shared.host_request.write().expect("handler lock") = Some(handler);
    }

    /// Installs `len` bytes of host memory at `host_addr` as a memslot at `gpa` (e.g. an
    /// mmap'd VFIO BAR, so guest accesses go straight to the device). `keepalive` is kept
    /// until the VM is dropped (after the memslot is gone): pass the owner of the mapping.
    /// Returns the slot number.
    ///
    /// # Safety
    /// `host_addr..host_addr + len` must be a mapping that stays valid until `keepalive` is
    /// dropped, and must not be memory this process uses as ordinary Rust objects (the guest
    /// writes it).
    pub unsafe fn add_memslot(
        &self,
        gpa: u64,
        host_addr: *mut u8,
        len: u64,
        keepalive: Box<dyn Any + Send + Sync>,
    ) -> Result<u32> {
        if !gpa.is_multiple_of(4096)
            || !len.is_multiple_of(4096)
            || len == 0
            || !(host_addr as u64).is_multiple_of(4096)
        {
            return Err(VmError::Config(format!(
                "memslot {gpa:#x}+{len:#x} at host {host_addr:p} is not page aligned"
            )));
        }
        if gpa < self.shared.mem.size() {
            return Err(VmError::Config(format!(
                "memslot at {gpa:#x} overlaps guest RAM"
            )));
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the caller guarantees the mapping outlives `keepalive`, which is stored in
        // `Shared` and dropped after the VM fd.
        unsafe { self.shared.vm.set_user_memory_region(region) }
            .map_err(kerr("KVM_SET_USER_MEMORY_REGION"))?;
        self.shared
            .keepalive
            .lock()
            .expect("keepalive lock")
            .push(keepalive);
        Ok(slot)
    }

    /// Replaces the whole GSI routing table with `routes` (empty: no routes at all, so irqfds
    /// and MSIs on those GSIs go nowhere). Safe while vCPUs run and irqfds are assigned.
    pub fn set_gsi_routes(&self, routes: &[GsiRoute]) -> Result<()> {
        let table = routing_table(routes)?;
        self.shared
            .vm
            .set_gsi_routing(&table)
            .map_err(kerr("KVM_SET_GSI_ROUTING"))
    }

    /// Binds eventfd `fd` to `gsi` (`KVM_IRQFD`); the returned [`IrqFd`] deassigns on drop.
    /// The eventfd is duplicated, so the caller keeps ownership of `fd`.
    pub fn assign_irqfd(&self, fd: BorrowedFd<'_>, gsi: u32) -> Result<IrqFd> {
        IrqFd::assign(self.shared.vm.clone(), fd, gsi)
    }

    /// Injects `msi` directly (`KVM_SIGNAL_MSI`). Returns false if KVM reports it was not
    /// delivered (e.g. the destination APIC is disabled).
    pub fn signal_msi(&self, msi: &MsiMessage) -> Result<bool> {
        let r = self
            .shared
            .vm
            .signal_msi(msi.kvm_msi())
            .map_err(kerr("KVM_SIGNAL_MSI"))?;
        Ok(r > 0)
    }

    /// Starts one thread per vCPU (idempotent).
    pub fn start(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        install_kick_handler();
        let tx = self
            .events_tx
            .take()
            .ok_or(VmError::State("VM already started"))?;
        for (index, vcpu) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            let shared = self.shared.clone();
            let tx = tx.clone();
            let finished = Arc::new(AtomicBool::new(false));
            let fin = finished.clone();
            let (resume_tx, resume_rx) = mpsc::channel();
            let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
            let tid2 = tid.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    tid2.store(nix::unistd::gettid().as_raw(), Ordering::Release);
                    let mut on_sync = |v: u64| {
                        if tx.send((index, Report::Sync(v))).is_err() {
                            return false;
                        }
                        loop {
                            if shared.stop.load(Ordering::Acquire) {
                                return false;
                            }
                            match resume_rx.recv_timeout(Duration::from_millis(20)) {
                                Ok(()) => return true,
                                Err(mpsc::RecvTimeoutError::Timeout) => {}
                                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                            }
                        }
                    };
                    let report = match run_vcpu(index, vcpu, &shared, &mut on_sync, None) {
                        Ok(Some(r)) => Some(r),
                        Ok(None) => None,
                        Err(e) => Some(Report::Failed(e)),
                    };
                    if let Some(r) = report {
                        let _ = tx.send((index, r));
                    }
                    fin.store(true, Ordering::Release);
                })
                .map_err(|source| VmError::Os {
                    op: "spawning a vCPU thread",
                    source,
                })?;
            self.threads.push(VcpuThread {
                handle: Some(handle),
                finished,
                tid,
                resume: resume_tx,
            });
        }
        Ok(())
    }

    /// Host thread id (pthread) of vCPU `index`'s thread, once started (for pinning it).
    pub fn vcpu_pthread(&self, index: usize) -> Option<libc::pthread_t> {
        self.threads
            .get(index)
            .and_then(|t| t.handle.as_ref())
            .map(pthread_of)
    }

    /// Linux thread id of vCPU `index`'s thread, once it has started running.
    pub fn vcpu_tid(&self, index: usize) -> Option<i32> {
        let t = self.threads.get(index)?.tid.load(Ordering::Acquire);
        (t != 0).then_some(t)
    }

    /// The host CPU vCPU `index`'s thread last ran on (`/proc/self/task/<tid>/stat` field 39).
    pub fn vcpu_host_cpu(&self, index: usize) -> Option<u32> {
        let tid = self.vcpu_tid(index)?;
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        // Fields after the parenthesised command name; "processor" is field 39 overall.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(36)?.parse().ok()
    }

    /// Pins vCPU `index`'s thread to host CPU `cpu` (`sched_setaffinity`).
    pub fn pin_vcpu(&self, index: usize, cpu: usize) -> Result<()> {
        let tid = self
            .vcpu_tid(index)
            .ok_or(VmError::State("pin of a vCPU whose thread is not running"))?;
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu)
            .map_err(|e| VmError::Config(format!("host CPU {cpu}: {e}")))?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).map_err(|e| {
            VmError::Os {
                op: "sched_setaffinity of a vCPU thread",
                source: e.into(),
            }
        })
    }

    /// Waits for the next SYNC or DONE. A guest failure (assertion, exception, panic, bad
    /// exit) is returned as the error; the other vCPUs keep running until [`Vm::stop`].
    pub fn wait_event(&mut self, timeout: Duration) -> Result<GuestEvent> {
        if let Some(e) = self.queued.pop_front() {
            return Ok(e);
        }
        if self.threads.is_empty() {
            return Err(VmError::State("VM not started"));
        }
        match self.events.recv_timeout(timeout) {
            Ok((vcpu, Report::Sync(value))) => Ok(GuestEvent::Sync { vcpu, value }),
            Ok((vcpu, Report::Done)) => {
                self.done[vcpu] = true;
                Ok(GuestEvent::Done { vcpu })
            }
            Ok((_, Report::Failed(e))) => Err(e),
            Err(_) => Err(VmError::Timeout {
                what: format!("a guest event (vCPUs done: {:?})", self.done),
                after: timeout,
            }),
        }
    }

    fn poll_event(&mut self) -> Result<()> {
        while let Ok((vcpu, r)) = self.events.try_recv() {
            match r {
                Report::Sync(value) => self.queued.push_back(GuestEvent::Sync { vcpu, value }),
                Report::Done => {
                    self.done[vcpu] = true;
                    self.queued.push_back(GuestEvent::Done { vcpu });
                }
                Report::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Resumes vCPU `index` after a SYNC.
    pub fn resume(&self, index: usize) -> Result<()> {
        let t = self
            .threads
            .get(index)
            .ok_or(VmError::State("resume of a vCPU that is not running"))?;
        t.resume
            .send(())
            .map_err(|_| VmError::State("resume of a vCPU whose thread has ended"))
    }

    /// Polls `cond` (on guest memory, no exits) until it holds or `timeout` passes, failing
    /// early if a vCPU reports a failure. `what` names the condition in the timeout error.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if cond(self)? {
                return Ok(());
            }
            self.poll_event()?;
            if start.elapsed() > timeout {
                return Err(VmError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                });
            }
            spins += 1;
            if spins > 1000 {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Waits until every vCPU has set its ready flag.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let n = self.nr_vcpus();
        self.wait_until("every vCPU to set its ready flag", timeout, |vm| {
            for i in 0..n {
                if !vm.vcpu_ready(i)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Starts the VM if needed and runs it until every vCPU's main has returned, resuming
    /// SYNCs at once. The first guest failure (assertion, exception, panic, unhandled exit)
    /// stops the VM and is returned with the guest's message.
    ///
    /// A one-vCPU VM that was not started runs its vCPU on the calling thread (no thread
    /// hand-offs; a watchdog thread enforces `timeout`).
    pub fn run_until_done(&mut self, timeout: Duration) -> Result<RunReport> {
        if self.pending.len() == 1 && self.threads.is_empty() {
            return self.run_inline(timeout);
        }
        self.start()?;
        let deadline = Instant::now() + timeout;
        let mut report = RunReport::default();
        while !self.done.iter().all(|d| *d) {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = match self.wait_event(left) {
                Ok(ev) => ev,
                Err(e) => {
                    self.stop();
                    return Err(match e {
                        VmError::Timeout { .. } => VmError::Timeout {
                            what: format!(
                                "every vCPU's guest main to finish (done: {:?})",
                                self.done
                            ),
                            after: timeout,
                        },
                        e => e,
                    });
                }
            };
            if let GuestEvent::Sync { vcpu, value } = ev {
                report.syncs.push((vcpu, value));
                self.resume(vcpu)?;
            }
        }
        self.stop();
        Ok(report)
    }

    fn run_inline(&mut self, timeout: Duration) -> Result<RunReport> {
        let vcpu = self
            .pending
            .pop()
            .ok_or(VmError::State("VM already started"))?;
        install_kick_handler();
        // The deadline: a POSIX timer signals this thread out of KVM_RUN at the timeout and
        // every millisecond after (covering a signal that lands just before KVM_RUN).
        let tid = nix::unistd::gettid().as_raw();
        let _timer = KickTimer::new(tid, timeout, Duration::from_millis(1))?;
        let deadline = Instant::now() + timeout;
        let mut report = RunReport::default();
        let mut on_sync = |v: u64| {
            report.syncs.push((0, v));
            true
        };
        match run_vcpu(0, vcpu, &self.shared, &mut on_sync, Some(deadline))? {
            Some(Report::Done) => {
                self.done[0] = true;
                Ok(report)
            }
            _ => Err(VmError::Timeout {
                what: "the guest main on vCPU 0 to finish".into(),
                after: timeout,
            }),
        }
    }

    /// Prints received so far, as `(vcpu, text)`, removing them.
    pub fn take_prints(&self) -> Vec<(usize, String)> {
        std::mem::take(&mut *self.shared.prints.lock().expect("prints lock"))
    }

    /// Stops every vCPU thread (signals them out of `KVM_RUN`) and joins them; a thread that
    /// does not stop within 2 s is left detached (it keeps the VM's memory alive).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(2);
        for (i, t) in self.threads.iter_mut().enumerate() {
            let Some(h) = t.handle.take() else { continue };
            if self.done.get(i).copied().unwrap_or(false) {
                // It reported DONE and is exiting by itself: join without kicking.
                let _ = h.join();
                continue;
            }
            while !t.finished.load(Ordering::Acquire) && Instant::now() < deadline {
                // SAFETY: the thread is alive (not finished, and its handle not yet joined),
                // so its pthread_t is valid; the signal's handler does nothing.
                unsafe { libc::pthread_kill(pthread_of(&h), kick_signal()) };
                std::thread::sleep(Duration::from_micros(200));
            }
            if t.finished.load(Ordering::Acquire) {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Outcome {
    Continue,
    Ucall(u32),
    Mmio {
        gpa: u64,
        len: usize,
        write: bool,
        reason: String,
    },
    Unexpected(String),
}

/// Runs a vCPU until DONE (`Some(Report::Done)`), a stop request (`None`) or a failure.
/// `on_sync` handles a SYNC and returns false if the vCPU should stop instead of resuming.
/// A `deadline` ends the run (`None`) once passed (checked when `KVM_RUN` is interrupted).
fn run_vcpu(
    index: usize,
    mut vcpu: VcpuFd,
    shared: &Shared,
    on_sync: &mut dyn FnMut(u64) -> bool,
    deadline: Option<Instant>,
) -> Result<Option<Report>> {
    loop {
        if shared.stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        let outcome = match vcpu.run() {
            Ok(VcpuExit::IoOut(UCALL_PORT, data)) if data.len() == 4 => {
                Outcome::Ucall(u32::from_le_bytes([data[0], data[1], data[2], data[3]]))
            }
            Ok(VcpuExit::MmioRead(gpa, data)) => mmio(shared, index, gpa, data, None),
            Ok(VcpuExit::MmioWrite(gpa, data)) => mmio(shared, index, gpa, &mut [], Some(data)),
            Ok(VcpuExit::Intr) => Outcome::Continue,
            Ok(other) => Outcome::Unexpected(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Outcome::Continue,
            Err(e) => return Err(kerr("KVM_RUN")(e)),
        };
        match outcome {
            Outcome::Continue => {}
            Outcome::Ucall(kind) => match ucall(index, kind, shared)? {
                UcallResult::Continue => {}
                UcallResult::Done => return Ok(Some(Report::Done)),
                UcallResult::Sync(v) => {
                    if !on_sync(v) {
                        return Ok(None);
                    }
                }
            },
            Outcome::Mmio {
                gpa,
                len,
                write,
                reason,
            } => {
                return Err(VmError::Mmio {
                    vcpu: index,
                    gpa,
                    len,
                    write,
                    reason,
                })
            }
            Outcome::Unexpected(exit) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                return Err(VmError::UnexpectedExit {
                    vcpu: index,
                    exit,
                    rip,
                });
            }
        }
    }
}

fn mmio(shared: &Shared, vcpu: usize, gpa: u64, read: &mut [u8], write: Option<&[u8]>) -> Outcome {
    let len = write.map_or(read.len(), |w| w.len());
    let handler = {
        let ranges = shared.mmio.read().expect("mmio lock");
        ranges
            .iter()
            .find(|r| gpa >= r.base && gpa + len as u64 <= r.base + r.len)
            .map(|r| (r.base, r.handler.clone()))
    };
    let Some((base, h)) = handler else {
        return Outcome::Mmio {
            gpa,
            len,
            write: write.is_some(),
            reason: "no memslot and no MMIO handler covers it".into(),
        };
    };
    let r = match write {
        Some(data) => h.write(vcpu, gpa - base, data),
        None => h.read(vcpu, gpa - base, read),
    };
    match r {
        Ok(()) => Outcome::Continue,
        Err(e) => Outcome::Mmio {
            gpa,
            len,
            write: write.is_some(),
            reason: e.0,
        },
    }
}

enum UcallResult {
    Continue,
    Sync(u64),
    Done,
}

fn guest_str(mem: &GuestMemory, gpa: u64, len: u64) -> String {
    let len = len.min(64 << 10) as usize;
    let mut buf = vec![0u8; len];
    match mem.read_bytes(gpa, &mut buf) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => format!("<bad guest string at {gpa:#x}+{len}>"),
    }
}

fn ucall(index: usize, kind: u32, shared: &Shared) -> Result<UcallResult> {
    let mem = &shared.mem;
    let block_gpa = abi::per_cpu_gpa(index as u32) + PER_CPU_UCALL_OFFSET as u64;
    let u: Ucall = mem.read(block_gpa)?;
    let text = || {
        let n = (u.text_len as usize).min(u.text.len());
        String::from_utf8_lossy(&u.text[..n]).into_owned()
    };
    let Some(kind) = UcallKind::from_u32(kind) else {
        return Err(VmError::UnexpectedExit {
            vcpu: index,
            exit: format!("ucall with unknown kind {kind}"),
            rip: 0,
        });
    };
    let a = u.args;
    match kind {
        UcallKind::Sync => Ok(UcallResult::Sync(a[0])),
        UcallKind::Done => Ok(UcallResult::Done),
        UcallKind::Print => {
            let s = if a[0] == 0 {
                text()
            } else {
                guest_str(mem, a[0], a[1])
            };
            if shared.echo {
                eprintln!("guest vcpu{index}: {s}");
            }
            shared.prints.lock().expect("prints lock").push((index, s));
            Ok(UcallResult::Continue)
        }
        UcallKind::AssertFailed => Err(VmError::GuestAssert {
            vcpu: index,
            file: guest_str(mem, a[0], a[1]),
            line: a[2] as u32,
            expr: guest_str(mem, a[3], a[4]),
            values: a[6..6 + (a[5].min(2) as usize)].to_vec(),
            message: (u.text_len > 0).then(text),
        }),
        UcallKind::Exception => Err(VmError::GuestException {
            vcpu: index,
            vector: a[0] as u8,
            name: exception_name(a[0] as u8),
            error_code: a[1],
            rip: a[2],
            cr2: a[6],
            rsp: a[5],
        }),
        UcallKind::Panic => Err(VmError::GuestPanic {
            vcpu: index,
            message: text(),
            file: guest_str(mem, a[0], a[1]),
            line: a[2] as u32,
        }),
        UcallKind::HostRequest => {
            let handler = shared.host_request.read().expect("handler lock").clone();
            let req = HostRequest {
                vcpu: index,
                code: a[0],
                args: [a[1], a[2], a[3], a[4], a[5], a[6], a[7]],
            };
            let (status, reply) = match handler {
                None => (abi::HOST_REQUEST_NO_HANDLER, [0; 4]),
                Some(h) => match h.handle(&req, mem) {
                    Ok(r) => (abi::HOST_REQUEST_OK, r),
                    Err(e) => {
                        eprintln!(
                            "passthru-guest: host request {:#x} from vCPU {index} failed: {e}",
                            req.code
                        );
                        (abi::HOST_REQUEST_FAILED, [0; 4])
                    }
                },
            };
            mem.write(block_gpa + std::mem::offset_of!(Ucall, reply) as u64, reply)?;
            mem.write(
                block_gpa + std::mem::offset_of!(Ucall, status) as u64,
                status,
            )?;
            Ok(UcallResult::Continue)
        }
    }
}

/// The `pthread_t` of a running thread. std hands it out as a `u64` (`RawPthread`), while libc's
/// `pthread_t` is `u64` on glibc and a pointer on musl (the rig's static builds).
#[allow(clippy::unnecessary_cast)] // a no-op on glibc, an integer-to-pointer cast on musl
fn pthread_of<T>(handle: &std::thread::JoinHandle<T>) -> libc::pthread_t {
    handle.as_pthread_t() as libc::pthread_t
}

/// Routes the IOAPIC of a split irqchip reserves (GSIs 0..24); the GSIs our routes use start
/// at 24, as upstream KVM's `irq_test` draws them.
const SPLIT_IRQCHIP_IOAPIC_ROUTES: u64 = 24;

/// Gives the VM an in-kernel local APIC. The full in-kernel irqchip (LAPIC + IOAPIC + PIC,
/// `KVM_CREATE_IRQCHIP`) where the host offers it; otherwise the split irqchip
/// (`KVM_CAP_SPLIT_IRQCHIP`: LAPIC in the kernel, IOAPIC/PIC left to userspace, which this
/// VMM never needs — every interrupt it delivers is an MSI route, an irqfd or
/// `KVM_SIGNAL_MSI`). Kernels built without `CONFIG_KVM_IOAPIC` (7.x) refuse the full one with
/// `ENOTTY`; the split one works there.
fn create_irqchip(kvm: &Kvm, vm: &VmFd) -> Result<()> {
    if kvm.check_extension(Cap::Irqchip) {
        match vm.create_irq_chip() {
            Ok(()) => return Ok(()),
            Err(e) if !kvm.check_extension(Cap::SplitIrqchip) => {
                return Err(kerr("KVM_CREATE_IRQCHIP")(e))
            }
            Err(_) => {}
        }
    }
    if !kvm.check_extension(Cap::SplitIrqchip) {
        return Err(VmError::MissingCapability(
            "KVM_CAP_IRQCHIP or KVM_CAP_SPLIT_IRQCHIP (an in-kernel local APIC)",
        ));
    }
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    cap.args[0] = SPLIT_IRQCHIP_IOAPIC_ROUTES;
    vm.enable_cap(&cap)
        .map_err(kerr("KVM_ENABLE_CAP(SPLIT_IRQCHIP)"))
}
