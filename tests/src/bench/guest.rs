//! `passthru bench guest`: the guest backend against raw `kvm-ioctls` sequences doing the
//! minimum, measured in the same run, interleaved (alternating which goes first).
//!
//! * **boot**: VM create → guest main → DONE seen by the host. passthru: `Vm::new` (irqchip,
//!   x2APIC API, memslot, image, page tables, GDT/IDT/TSS, vCPU, CPUID, SREGS/REGS) +
//!   `run_until_done` (vCPU thread, ucall DONE) of the `noop` main. Raw: open `/dev/kvm`, create
//!   the VM, one memslot, the in-kernel irqchip, three page-table pages and a 6-byte guest
//!   (`out; hlt`), one vCPU with CPUID, SREGS and REGS, `KVM_RUN` on the calling thread until the
//!   `out` exit. Teardown is not timed.
//! * **irq**: eventfd write → irqfd → MSI route → guest ISR → the host sees the ISR's store in
//!   guest memory (polling, no exit). Both guests wait in `HLT` with x2APIC enabled; passthru's
//!   runtime stub counts the vector and EOIs, the raw ISR is 9 hand-assembled instructions doing
//!   the same. The host clears the count after each IRQ.
//!
//! Each figure is the median and p99 over the samples; the ratio is passthru / raw (target
//! ≤ [`TARGET_RATIO`]).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_segment, kvm_userspace_memory_region, KvmIrqRouting,
    KVM_IRQ_ROUTING_MSI, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use nix::sys::eventfd::{EfdFlags, EventFd};
use passthru_guest::{GsiRoute, GuestMemory, MsiMessage, Vm, VmConfig};

use crate::harness::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
use crate::programs::irq_test::percentile;

/// The ratio (passthru / raw) the guest backend should stay under.
pub const TARGET_RATIO: f64 = 1.2;

const USAGE: &str = "usage: passthru bench guest [--boots N] [--irqs N]
  --boots N  VM boots per side (default 60)
  --irqs N   interrupts per side (default 2000)";

/// Raw guest: GPA of the code, counter, stop flag, stack, page tables, GDT, IDT.
const RAW_CODE: u64 = 0x6000;
const RAW_BOOT: u64 = 0x6100;
const RAW_ISR: u64 = 0x7000;
const RAW_COUNTER: u64 = 0x8000;
const RAW_STOP: u64 = 0x8008;
const RAW_STACK_TOP: u64 = 0x10000;
const RAW_PML4: u64 = 0x1000;
const RAW_GDT: u64 = 0x4000;
const RAW_IDT: u64 = 0x5000;
const RAW_PORT: u16 = 0x10;
const RAW_RAM: u64 = 4 << 20;

/// x2APIC on (APIC_BASE |= EN | EXTD; SVR = 0x1ff), `sti`, `out` (ready), then
/// `hlt` until the stop flag is set, `out` (stopped), `cli; hlt`.
const RAW_MAIN: &[u8] = &[
    0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f, 0x32, 0x0d, 0x00, 0x0c, 0x00, 0x00, 0x0f, 0x30, 0xb9, 0x0f,
    0x08, 0x00, 0x00, 0xb8, 0xff, 0x01, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30, 0xfb, 0x66, 0xba, 0x10,
    0x00, 0xee, 0xf4, 0x48, 0x83, 0x3c, 0x25, 0x08, 0x80, 0x00, 0x00, 0x00, 0x74, 0xf4, 0xee, 0xfa,
    0xf4, 0xeb, 0xfc,
];
/// `mov dx, 0x10; out dx, al; hlt`.
const RAW_BOOT_CODE: &[u8] = &[0x66, 0xba, 0x10, 0x00, 0xee, 0xf4];
/// `push rax/rcx/rdx; lock inc qword [0x8000]; x2APIC EOI (wrmsr 0x80b); pop; iretq`.
const RAW_ISR_CODE: &[u8] = &[
    0x50, 0x51, 0x52, 0xf0, 0x48, 0xff, 0x04, 0x25, 0x00, 0x80, 0x00, 0x00, 0xb9, 0x0b, 0x08, 0x00,
    0x00, 0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x30, 0x5a, 0x59, 0x58, 0x48, 0xcf,
];

/// Median and p99 of one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Median.
    pub median: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Samples.
    pub n: usize,
}

impl Stats {
    /// From unsorted samples.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self {
            median: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            n: samples.len(),
        }
    }
}

/// passthru / raw.
pub fn ratio(ours: Duration, raw: Duration) -> f64 {
    ours.as_secs_f64() / raw.as_secs_f64().max(1e-12)
}

fn verdict(r: f64) -> &'static str {
    if r <= TARGET_RATIO {
        "ok"
    } else {
        "over target"
    }
}

fn e(what: &str) -> impl Fn(kvm_ioctls::Error) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// A raw VM: the minimum kvm-ioctls sequence, in long mode at `rip`.
struct RawVm {
    // Field order is drop order: vCPU and VM fds before the memory they map.
    vcpu: VcpuFd,
    vm: kvm_ioctls::VmFd,
    mem: GuestMemory,
}

fn raw_vm(kvm: &Kvm, cpuid: &kvm_bindings::CpuId, rip: u64, code: &[u8]) -> Result<RawVm, String> {
    let vm = kvm.create_vm().map_err(e("KVM_CREATE_VM"))?;
    let mem = GuestMemory::new(RAW_RAM as usize).map_err(|x| x.to_string())?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: RAW_RAM,
        userspace_addr: mem.host_ptr() as u64,
    };
    // SAFETY: `mem` is a live mapping of RAW_RAM bytes, dropped after the VM fd (field order).
    unsafe { vm.set_user_memory_region(region) }.map_err(e("KVM_SET_USER_MEMORY_REGION"))?;
    // After the memslot, as passthru-guest does (the other order is far slower).
    // Where the full irqchip is refused (7.x without CONFIG_KVM_IOAPIC), the split one, as
    // passthru-guest does.
    if vm.create_irq_chip().is_err() {
        let mut cap = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        cap.args[0] = 24;
        vm.enable_cap(&cap)
            .map_err(e("KVM_ENABLE_CAP(SPLIT_IRQCHIP)"))?;
    }
    // PML4[0] → PDPT, PDPT[0] → PD, PD[0..2] = 2 MiB pages (present, writable, PS).
    let w = |gpa: u64, v: u64| mem.write(gpa, v).map_err(|x| x.to_string());
    w(RAW_PML4, (RAW_PML4 + 0x1000) | 3)?;
    w(RAW_PML4 + 0x1000, (RAW_PML4 + 0x2000) | 3)?;
    w(RAW_PML4 + 0x2000, 0x83)?;
    w(RAW_PML4 + 0x2008, 0x20_0000 | 0x83)?;
    mem.write_bytes(rip, code).map_err(|x| x.to_string())?;
    let vcpu = vm.create_vcpu(0).map_err(e("KVM_CREATE_VCPU"))?;
    vcpu.set_cpuid2(cpuid).map_err(e("KVM_SET_CPUID2"))?;
    let mut s = vcpu.get_sregs().map_err(e("KVM_GET_SREGS"))?;
    let code_seg = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 8,
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
        selector: 0x10,
        type_: 3,
        db: 1,
        l: 0,
        ..code_seg
    };
    s.cs = code_seg;
    (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
    s.gdt.base = RAW_GDT;
    s.gdt.limit = 23;
    s.idt.base = RAW_IDT;
    s.idt.limit = 4095;
    s.cr0 = 0x8005_0033;
    s.cr3 = RAW_PML4;
    s.cr4 = 0x620;
    s.efer = 0x500;
    vcpu.set_sregs(&s).map_err(e("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip,
        rsp: RAW_STACK_TOP,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(e("KVM_SET_REGS"))?;
    Ok(RawVm { vcpu, vm, mem })
}

fn run_to_out(vcpu: &mut VcpuFd) -> Result<(), String> {
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(RAW_PORT, _)) => return Ok(()),
            Ok(VcpuExit::Intr) => {}
            Ok(other) => return Err(format!("raw guest: unexpected exit {other:?}")),
            Err(err) if err.errno() == libc::EINTR || err.errno() == libc::EAGAIN => {}
            Err(err) => return Err(format!("KVM_RUN: {err}")),
        }
    }
}

fn raw_boot(kvm_cpuid: &kvm_bindings::CpuId) -> Result<Duration, String> {
    let t = Instant::now();
    let kvm = Kvm::new().map_err(e("open /dev/kvm"))?;
    let mut raw = raw_vm(&kvm, kvm_cpuid, RAW_BOOT, RAW_BOOT_CODE)?;
    run_to_out(&mut raw.vcpu)?;
    Ok(t.elapsed())
}

fn ours_boot() -> Result<Duration, String> {
    let t = Instant::now();
    let mut vm = Vm::new(VmConfig::new("noop")).map_err(|x| x.to_string())?;
    vm.run_until_done(Duration::from_secs(10))
        .map_err(|x| x.to_string())?;
    let d = t.elapsed();
    drop(vm);
    Ok(d)
}

/// Times `n` eventfd → ISR → host-sees-it round trips, polling `count` (cleared after each).
fn irq_loop(
    n: usize,
    efd: &EventFd,
    read: &dyn Fn() -> u64,
    clear: &dyn Fn(),
) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        efd.write(1).map_err(|x| format!("eventfd write: {x}"))?;
        let mut spins = 0u32;
        while read() == 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && t.elapsed() > Duration::from_secs(2) {
                return Err(format!("IRQ {i} not seen within 2 s"));
            }
            if spins < 256 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        out.push(t.elapsed());
        clear();
    }
    Ok(out)
}

fn ours_irqs(n: usize) -> Result<Vec<Duration>, String> {
    let s = |x: passthru_guest::VmError| x.to_string();
    let mut vm = Vm::new(VmConfig::new("irq_wait").arg(0, 2).arg(1, 1)).map_err(s)?;
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(|x| x.to_string())?;
    let gsi = 100;
    let vector = 0x40;
    let irqfd = vm.assign_irqfd(efd.as_fd(), gsi).map_err(s)?;
    vm.set_gsi_routes(&[GsiRoute {
        gsi,
        msi: MsiMessage::fixed(0, vector).map_err(s)?,
    }])
    .map_err(s)?;
    vm.start().map_err(s)?;
    vm.wait_ready(Duration::from_secs(10)).map_err(s)?;
    let counter = vm.irq_counter(0, vector).map_err(s)?;
    let samples = irq_loop(n, &efd, &|| counter.read(), &|| counter.write(0))?;
    vm.user_var::<u64>(0).map_err(s)?.write(1);
    vm.signal_msi(&MsiMessage::fixed(0, vector).map_err(s)?)
        .map_err(s)?;
    drop(irqfd);
    vm.run_until_done(Duration::from_secs(10)).map_err(s)?;
    Ok(samples)
}

fn raw_irqs(kvm: &Kvm, cpuid: &kvm_bindings::CpuId, n: usize) -> Result<Vec<Duration>, String> {
    let raw = raw_vm(kvm, cpuid, RAW_CODE, RAW_MAIN)?;
    let RawVm { mut vcpu, vm, mem } = raw;
    let mem = Arc::new(mem);
    mem.write_bytes(RAW_ISR, RAW_ISR_CODE)
        .map_err(|x| x.to_string())?;
    // GDT: null, 64-bit code (0x08), data (0x10) — iretq reloads CS and SS from it.
    mem.write(RAW_GDT + 8, 0x00af_9b00_0000_ffffu64)
        .map_err(|x| x.to_string())?;
    mem.write(RAW_GDT + 16, 0x00cf_9300_0000_ffffu64)
        .map_err(|x| x.to_string())?;
    // IDT gate for vector 0x40: interrupt gate, present, DPL0, selector 0x08, offset RAW_ISR.
    let vector = 0x40u64;
    let lo = (RAW_ISR & 0xffff) | 0x08 << 16 | 0x8e << 40 | ((RAW_ISR >> 16) & 0xffff) << 48;
    mem.write(RAW_IDT + vector * 16, lo)
        .map_err(|x| x.to_string())?;
    mem.write(RAW_IDT + vector * 16 + 8, RAW_ISR >> 32)
        .map_err(|x| x.to_string())?;

    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(|x| x.to_string())?;
    let dup = efd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|x| x.to_string())?;
    // SAFETY: `dup` is a fresh descriptor that only this EventFd will own and close.
    let vmm_efd = unsafe {
        <vmm_sys_util::eventfd::EventFd as std::os::fd::FromRawFd>::from_raw_fd(
            std::os::fd::IntoRawFd::into_raw_fd(dup),
        )
    };
    let gsi = 100;
    vm.register_irqfd(&vmm_efd, gsi).map_err(e("KVM_IRQFD"))?;
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = 0xfee0_0000;
    entry.u.msi.data = vector as u32;
    let table = KvmIrqRouting::from_entries(&[entry]).map_err(|x| format!("{x:?}"))?;
    vm.set_gsi_routing(&table)
        .map_err(e("KVM_SET_GSI_ROUTING"))?;

    let ready = Arc::new(AtomicBool::new(false));
    let r2 = ready.clone();
    let thread = std::thread::spawn(move || -> Result<(), String> {
        run_to_out(&mut vcpu)?;
        r2.store(true, Ordering::Release);
        run_to_out(&mut vcpu)
    });
    let t = Instant::now();
    while !ready.load(Ordering::Acquire) {
        if t.elapsed() > Duration::from_secs(10) || thread.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let counter = mem.shared::<u64>(RAW_COUNTER).map_err(|x| x.to_string())?;
    let samples = irq_loop(n, &efd, &|| counter.read(), &|| counter.write(0));
    mem.write(RAW_STOP, 1u64).map_err(|x| x.to_string())?;
    let _ = efd.write(1);
    let joined = thread
        .join()
        .map_err(|_| "raw vCPU thread panicked".to_string())?;
    let samples = samples?;
    joined?;
    let _ = vm.unregister_irqfd(&vmm_efd, gsi);
    Ok(samples)
}

fn parse(args: &[String]) -> Result<(usize, usize), String> {
    let (mut boots, mut irqs) = (60usize, 2000usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--boots" => boots = num("--boots")?,
            "--irqs" => irqs = num("--irqs")?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok((boots, irqs))
}

fn line(what: &str, ours: &Stats, raw: &Stats) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let r50 = ratio(ours.median, raw.median);
    let r99 = ratio(ours.p99, raw.p99);
    println!(
        "{what:<34} passthru median {:>9.1} us p99 {:>9.1} us | raw median {:>9.1} us p99 {:>9.1} us | ratio median {r50:.2}x ({}) p99 {r99:.2}x (n={})",
        us(ours.median),
        us(ours.p99),
        us(raw.median),
        us(raw.p99),
        verdict(r50),
        ours.n.min(raw.n),
    );
}

/// `passthru bench guest [--boots N] [--irqs N]`.
pub fn bench_guest_main(args: &[String]) -> i32 {
    let (boots, irqs) = match parse(args) {
        Ok(v) => v,
        Err(m) => {
            eprintln!("passthru bench guest: {m}\n{USAGE}");
            return KSFT_FAIL;
        }
    };
    if let Err(reason) = passthru_guest::kvm_available() {
        println!("SKIP: {reason}");
        return KSFT_SKIP;
    }
    match bench(boots, irqs) {
        Ok(()) => KSFT_PASS,
        Err(m) => {
            eprintln!("passthru bench guest: {m}");
            KSFT_FAIL
        }
    }
}

fn bench(boots: usize, irqs: usize) -> Result<(), String> {
    let kvm = Kvm::new().map_err(e("open /dev/kvm"))?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(e("KVM_GET_SUPPORTED_CPUID"))?;
    // Warm up both (first VM of a process is slower; the image is parsed once).
    ours_boot()?;
    raw_boot(&cpuid)?;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for i in 0..boots {
        if i % 2 == 0 {
            ours.push(ours_boot()?);
            raw.push(raw_boot(&cpuid)?);
        } else {
            raw.push(raw_boot(&cpuid)?);
            ours.push(ours_boot()?);
        }
    }
    println!("# passthru bench guest: passthru-guest vs a raw kvm-ioctls sequence, same run");
    line(
        "VM create -> guest main -> DONE",
        &Stats::of(ours),
        &Stats::of(raw),
    );

    let rounds = 4;
    let per = irqs.div_ceil(rounds);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            ours.extend(ours_irqs(per)?);
            raw.extend(raw_irqs(&kvm, &cpuid, per)?);
        } else {
            raw.extend(raw_irqs(&kvm, &cpuid, per)?);
            ours.extend(ours_irqs(per)?);
        }
    }
    line(
        "eventfd -> irqfd -> ISR -> host (HLT)",
        &Stats::of(ours),
        &Stats::of(raw),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_ratios() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse(&s(&[])).unwrap(), (60, 2000));
        assert_eq!(parse(&s(&["--boots", "3", "--irqs", "9"])).unwrap(), (3, 9));
        assert!(parse(&s(&["--boots", "0"])).is_err());
        assert!(parse(&s(&["--nope"])).is_err());
        let us = Duration::from_micros;
        assert!((ratio(us(120), us(100)) - 1.2).abs() < 1e-9);
        assert_eq!(verdict(1.2), "ok");
        assert_eq!(verdict(1.21), "over target");
        let st = Stats::of((1..=100).map(us).rev().collect());
        assert_eq!((st.median, st.p99, st.n), (us(51), us(99), 100));
    }

    #[test]
    fn raw_guests_run_on_kvm() {
        if passthru_guest::kvm_available().is_err() {
            eprintln!("SKIP: no /dev/kvm");
            return;
        }
        let kvm = Kvm::new().unwrap();
        let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
        raw_boot(&cpuid).unwrap();
        assert_eq!(raw_irqs(&kvm, &cpuid, 5).unwrap().len(), 5);
        assert_eq!(ours_irqs(5).unwrap().len(), 5);
    }
}
