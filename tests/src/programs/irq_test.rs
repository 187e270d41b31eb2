//! `irq_test`: interrupt delivery into a KVM guest through irqfd and MSI GSI routes, compatible
//! with Linux's `tools/testing/selftests/kvm/irq_test.c` (7.3): same options, same output lines,
//! same checks, kselftest exit codes.
//!
//! One GSI (random in `[24, 4095]`) and one guest vector (random in `[32, 255]`) are drawn; an
//! eventfd is bound to the GSI with `KVM_IRQFD`. For each IRQ `i` the GSI is (re-)routed as an
//! MSI to vCPU `i mod N` — an NMI instead if `-n` and bit 2 of `i` is set, after an empty
//! routing table if `-e` and bit 3 of `i` is set — every vCPU's IRQ and NMI flags must be clear,
//! the eventfd is signalled (by the device itself with `-d`: its driver's `send_msi`), and the
//! target's flag must be set by its guest handler within the timeout (2 s). The guest's
//! runtime counts interrupts per vector in guest memory; the host reads and clears them with no
//! exit.
//!
//! Beyond upstream: `-b` (vCPUs wait in `HLT`, the posted-interrupt wakeup path), `--seed N`
//! (printed; the same seed gives the same GSI, vector and choices), `--timeout SECS`, latency
//! percentiles of trigger → guest handler (observed by the host polling guest memory), host-side
//! evidence deltas (the device's `/proc/interrupts` row, Intel `PIN:`/`PIW:`, AMD GA-log
//! interrupts), and `--expect-posted` (with `-d`: the host must handle ~none of the device's
//! interrupts; SKIP where the host has no posted-interrupt support). Every failure names the
//! IRQ index, vCPU, GSI, vector, NMI and empty-routing state and the host CPU.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use passthru_core::driver::{CheckedDriver, Driver, DriverState, Match};
use passthru_core::mmio::IrqKind;
use passthru_guest::{GsiRoute, MsiMessage, Vm, VmConfig, VmError};
use passthru_linux::{DmaBuffer, Iommu, IommuMode, MonotonicClock, VfioPciDevice};

use super::proc_interrupts::{Evidence, Interrupts};
use super::util::{outcome, Outcome};
use crate::harness::rng::{random_seed, Rng};
use crate::harness::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP};
use crate::suite::vfio::{probe, DriverKind, SharedDevice, VfioDsa, VfioEdu, VfioIgb, VfioIoat};

/// The program name.
pub const PROGRAM: &str = "irq_test";
/// Lowest GSI drawn (0–15 are ISA, 16–23 IOAPIC-only).
pub const GSI_MIN: u32 = 24;
/// Highest GSI drawn (`KVM_MAX_IRQ_ROUTES - 1`).
pub const GSI_MAX: u32 = 4095;
/// Lowest vector drawn.
pub const VECTOR_MIN: u8 = 32;
/// Default per-IRQ timeout (upstream's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of IRQs (upstream's).
pub const DEFAULT_NR_IRQS: u64 = 1000;
/// The NMI vector.
const NMI: u8 = 2;
/// Guest-main arguments (see the image's `irq_wait`).
const ARG_APIC_MODE: usize = 0;
const ARG_HLT: usize = 1;

/// The usage text (`-h`, or any bad option).
pub const USAGE: &str = "\
usage: irq_test [-a] [-b] [-d BDF] [-e] [-h] [-i nr_irqs] [-m] [-n] [-t iommu_type] [-v nr_vcpus] [-x]
                [--seed N] [--timeout SECS] [--expect-posted]

  -a            before each IRQ, set the device's host IRQ affinity to a random CPU (needs -d)
  -b            vCPUs wait for interrupts blocked in HLT instead of spinning
  -d BDF        fire the IRQs from this VFIO device (its passthru driver's send_msi); without
                it the host writes the eventfd
  -e            install an empty GSI routing table before the IRQs whose index has bit 3 set
  -h            print this help and exit
  -i nr_irqs    number of IRQs (default 1000)
  -m            before each IRQ, pin the target vCPU's thread to a random allowed CPU
  -n            deliver the IRQs whose index has bit 2 set as NMIs
  -t iommu_type IOMMU mode for -d: vfio_type1_iommu, vfio_type1v2_iommu, iommufd_compat_type1,
                iommufd_compat_type1v2 or iommufd (default: iommufd if /dev/iommu opens, else
                vfio_type1_iommu)
  -v nr_vcpus   number of vCPUs (default 1); IRQ i targets vCPU i mod nr_vcpus
  -x            the guest uses xAPIC instead of x2APIC (at most 255 vCPUs)
  --seed N      random seed (decimal or 0x-hex; printed either way)
  --timeout S   seconds to wait for each IRQ (default 2)
  --expect-posted  with -d: fail unless the host handled ~none of the device's interrupts
                (posted delivery); SKIP where the host has no posted-interrupt support
";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-a`.
    pub affinity: bool,
    /// `-b`.
    pub hlt: bool,
    /// `-d BDF`.
    pub bdf: Option<String>,
    /// `-e`.
    pub empty_routing: bool,
    /// `-i N`.
    pub nr_irqs: u64,
    /// `-m`.
    pub migrate: bool,
    /// `-n`.
    pub nmi: bool,
    /// `-t MODE`.
    pub iommu_mode: Option<IommuMode>,
    /// `-v N`.
    pub nr_vcpus: u32,
    /// `-x`.
    pub xapic: bool,
    /// `--seed N`.
    pub seed: Option<u64>,
    /// `--timeout SECS`.
    pub timeout: Duration,
    /// `--expect-posted`.
    pub expect_posted: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            affinity: false,
            hlt: false,
            bdf: None,
            empty_routing: false,
            nr_irqs: DEFAULT_NR_IRQS,
            migrate: false,
            nmi: false,
            iommu_mode: None,
            nr_vcpus: 1,
            xapic: false,
            seed: None,
            timeout: DEFAULT_TIMEOUT,
            expect_posted: false,
        }
    }
}

/// Why the command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `-h`: print the usage, exit 1 (as upstream).
    #[error("help requested")]
    Help,
    /// An unknown option or a missing/bad value: usage, exit 1.
    #[error("{0}")]
    Usage(String),
    /// A well-formed but invalid combination (upstream asserts): exit 1 with the message.
    #[error("{0}")]
    Invalid(String),
}

fn parse_u64(what: &str, s: &str) -> Result<u64, ParseError> {
    let s = s.trim();
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| ParseError::Usage(format!("{what}: `{s}` is not a number")))
}

impl Options {
    /// Parses getopt-style arguments (`-ne`, `-i50`, `-i 50`) and the long options.
    pub fn parse(args: &[String]) -> Result<Self, ParseError> {
        let mut o = Options::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let mut value = |what: &str| -> Result<String, ParseError> {
                    if let Some(v) = inline.clone() {
                        return Ok(v);
                    }
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| ParseError::Usage(format!("--{what} needs a value")))?;
                    i += 1;
                    Ok(v)
                };
                match name {
                    "seed" => o.seed = Some(parse_u64("--seed", &value("seed")?)?),
                    "timeout" => {
                        let v = value("timeout")?;
                        let secs: f64 = v.parse().map_err(|_| {
                            ParseError::Usage(format!("--timeout: `{v}` is not a number"))
                        })?;
                        if !(secs > 0.0 && secs.is_finite()) {
                            return Err(ParseError::Invalid(format!(
                                "--timeout must be positive, got {v}"
                            )));
                        }
                        o.timeout = Duration::from_secs_f64(secs);
                    }
                    "expect-posted" if inline.is_none() => o.expect_posted = true,
                    "help" => return Err(ParseError::Help),
                    _ => return Err(ParseError::Usage(format!("unknown option `{arg}`"))),
                }
                continue;
            }
            let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
                return Err(ParseError::Usage(format!("unexpected argument `{arg}`")));
            };
            for (pos, c) in flags.char_indices() {
                let takes_value = matches!(c, 'd' | 'i' | 't' | 'v');
                let value = if takes_value {
                    let rest = &flags[pos + c.len_utf8()..];
                    let v = if rest.is_empty() {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            ParseError::Usage(format!("option -{c} needs a value"))
                        })?;
                        i += 1;
                        v
                    } else {
                        rest.to_string()
                    };
                    Some(v)
                } else {
                    None
                };
                match (c, value) {
                    ('a', None) => o.affinity = true,
                    ('b', None) => o.hlt = true,
                    ('e', None) => o.empty_routing = true,
                    ('h', None) => return Err(ParseError::Help),
                    ('m', None) => o.migrate = true,
                    ('n', None) => o.nmi = true,
                    ('x', None) => o.xapic = true,
                    ('d', Some(v)) => o.bdf = Some(v),
                    ('i', Some(v)) => o.nr_irqs = parse_u64("-i", &v)?,
                    ('t', Some(v)) => {
                        o.iommu_mode = Some(v.parse().map_err(|_| {
                            ParseError::Usage(format!(
                                "-t: unknown IOMMU mode `{v}` (one of: {})",
                                IommuMode::ALL.map(|m| m.name()).join(", ")
                            ))
                        })?)
                    }
                    ('v', Some(v)) => {
                        let n = parse_u64("-v", &v)?;
                        if n == 0 || n > u32::MAX as u64 {
                            return Err(ParseError::Invalid(format!(
                                "-v: the number of vCPUs must be positive, got {v}"
                            )));
                        }
                        o.nr_vcpus = n as u32;
                    }
                    _ => return Err(ParseError::Usage(format!("unknown option -{c}"))),
                }
                if takes_value {
                    break;
                }
            }
        }
        if o.affinity && o.bdf.is_none() {
            return Err(ParseError::Invalid(
                "-a (host IRQ affinity) needs a device (-d BDF)".into(),
            ));
        }
        if o.expect_posted && o.bdf.is_none() {
            return Err(ParseError::Invalid(
                "--expect-posted needs a device (-d BDF): only device interrupts can be posted"
                    .into(),
            ));
        }
        if o.xapic && o.nr_vcpus > 255 {
            return Err(ParseError::Invalid(format!(
                "-x: xAPIC supports at most 255 vCPUs, got {}",
                o.nr_vcpus
            )));
        }
        Ok(o)
    }
}

/// The MSI route of IRQ `index` for the vCPU with APIC id `apic_id` (`nmi`: NMI delivery).
pub fn route_for(gsi: u32, apic_id: u32, vector: u8, nmi: bool) -> Result<GsiRoute, VmError> {
    let msi = if nmi {
        MsiMessage::nmi(apic_id)
    } else {
        MsiMessage::fixed(apic_id, vector)?
    };
    Ok(GsiRoute { gsi, msi })
}

/// What IRQ `index` does under `opts`: (target vCPU index, NMI, empty routing first).
pub fn irq_plan(opts: &Options, index: u64) -> (usize, bool, bool) {
    (
        (index % opts.nr_vcpus as u64) as usize,
        opts.nmi && index & (1 << 2) != 0,
        opts.empty_routing && index & (1 << 3) != 0,
    )
}

/// The GSI and vector of a run, drawn from the seeded generator.
pub fn draw_gsi_vector(rng: &mut Rng) -> (u32, u8) {
    let gsi = GSI_MIN + rng.below((GSI_MAX - GSI_MIN + 1) as u64) as u32;
    let vector = VECTOR_MIN + rng.below(256 - VECTOR_MIN as u64) as u8;
    (gsi, vector)
}

/// The outcome of a run: exit code, already-printed output aside.
enum Failure {
    Skip(String),
    Fail(String),
}

impl From<VmError> for Failure {
    fn from(e: VmError) -> Self {
        match e {
            VmError::KvmUnavailable(_) | VmError::MissingCapability(_) => {
                Failure::Skip(e.to_string())
            }
            e => Failure::Fail(e.to_string()),
        }
    }
}

/// Percentile `p` (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
        .unwrap_or_default()
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.trim().parse::<usize>().ok()),
        }
    }
    cpus
}

/// Whether this host can post device interrupts into guests, or why not.
pub fn posted_interrupt_support(ints: &Interrupts) -> Result<&'static str, String> {
    let param = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| matches!(s.trim(), "Y" | "1"))
            .unwrap_or(false)
    };
    if param("/sys/module/kvm_intel/parameters/enable_apicv") && ints.row("PIN").is_some() {
        return Ok("Intel APICv with VT-d posted interrupts");
    }
    if param("/sys/module/kvm_amd/parameters/avic") && ints.amd_ga_log_rows().next().is_some() {
        return Ok("AMD AVIC with IOMMU guest virtual APIC");
    }
    Err(
        "no posted-interrupt support on this host (kvm_intel enable_apicv with a PIN row, or \
         kvm_amd avic with an AMD-Vi GA log, is required)"
            .into(),
    )
}

/// The device side of `-d`: the driver that fires the MSI, and the eventfd it signals.
trait Trigger {
    fn fire(&mut self) -> Result<(), String>;
}

struct DeviceSide<D: Driver<'static, Function = SharedDevice, Clock = MonotonicClock>> {
    // Field order is drop order: the driver (removed in Drop), the mapping, then the memory.
    driver: CheckedDriver<'static, D>,
    mapping: (u64, u64),
    _buf: DmaBuffer,
    device: Arc<VfioPciDevice>,
    iommu: Arc<Iommu>,
}

impl<D: Driver<'static, Function = SharedDevice, Clock = MonotonicClock>> Trigger
    for DeviceSide<D>
{
    fn fire(&mut self) -> Result<(), String> {
        self.driver.send_msi().map_err(|e| format!("send_msi: {e}"))
    }
}

impl<D: Driver<'static, Function = SharedDevice, Clock = MonotonicClock>> Drop for DeviceSide<D> {
    fn drop(&mut self) {
        if self.driver.state() == DriverState::Ready {
            let _ = self.driver.remove();
        }
        let _ = self.iommu.unmap(self.mapping.0, self.mapping.1);
        let _ = &self.device;
    }
}

struct Device {
    trigger: Box<dyn Trigger>,
    device: Arc<VfioPciDevice>,
    kind: IrqKind,
    vector: u32,
    bdf: String,
}

impl Device {
    fn eventfd(&self) -> Option<RawFd> {
        self.device.irq_eventfd(self.kind, self.vector)
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            IrqKind::MsiX => "msix",
            IrqKind::Msi => "msi",
            _ => "intx",
        }
    }
}

fn open_side<D: Driver<'static, Function = SharedDevice, Clock = MonotonicClock> + 'static>(
    device: Arc<VfioPciDevice>,
    iommu: Arc<Iommu>,
    matched: Match,
) -> Result<(Box<dyn Trigger>, u16), Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Failure::Fail(format!("{what}: {e}"));
    // Upstream maps a 2 MiB region for the driver; more if the driver asks for it.
    let len = (matched.region_size as u64)
        .max(2 << 20)
        .next_power_of_two();
    let buf = DmaBuffer::anonymous_shared(len).map_err(|e| fail("driver region", &e))?;
    let iova = iommu
        .iova_allocator()
        .and_then(|mut a| a.alloc(len))
        .map_err(|e| fail("IOVA for the driver region", &e))?;
    iommu
        .map_buffer(&buf, iova)
        .map_err(|e| fail("map driver region", &e))?;
    // SAFETY: the buffer lives in the DeviceSide, which removes the driver before dropping it,
    // and the region never leaves it.
    let region = unsafe { buf.region_unbounded(iova) };
    let mut driver = CheckedDriver::<D>::new(
        SharedDevice(Arc::clone(&device)),
        MonotonicClock::new(),
        region,
    )
    .map_err(|e| fail("probe", &e))?;
    let limits = match driver.init() {
        Ok(l) => l,
        Err(e) => {
            let _ = iommu.unmap(iova, len);
            return Err(fail("driver init", &e));
        }
    };
    Ok((
        Box::new(DeviceSide {
            driver,
            mapping: (iova, len),
            _buf: buf,
            device,
            iommu,
        }),
        limits.msi_vector,
    ))
}

fn default_mode() -> IommuMode {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/iommu")
        .is_ok()
    {
        IommuMode::Iommufd
    } else {
        IommuMode::VfioType1Iommu
    }
}

fn open_device(bdf: &str, mode: Option<IommuMode>) -> Result<Device, Failure> {
    let parsed = passthru_linux::bdf::Bdf::parse(bdf)
        .map_err(|e| Failure::Fail(format!("-d {bdf}: {e}")))?;
    let mode = mode.unwrap_or_else(default_mode);
    let iommu = Iommu::open(mode).map_err(|e| match outcome(&e) {
        Outcome::Skip => Failure::Skip(format!("{}: {e}", mode.name())),
        _ => Failure::Fail(format!("{}: {e}", mode.name())),
    })?;
    let device = Arc::new(
        VfioPciDevice::open(parsed, &iommu).map_err(|e| match outcome(&e) {
            Outcome::Skip => Failure::Skip(format!("{bdf}: {e}")),
            _ => Failure::Fail(format!("{bdf}: {e}")),
        })?,
    );
    let Some((kind, matched)) = probe(&SharedDevice(Arc::clone(&device))) else {
        return Err(Failure::Skip(format!(
            "{bdf}: no passthru driver with send_msi for this device"
        )));
    };
    let d = Arc::clone(&device);
    let (trigger, vector) = match kind {
        DriverKind::Dsa => open_side::<VfioDsa>(d, iommu, matched)?,
        DriverKind::Ioat => open_side::<VfioIoat>(d, iommu, matched)?,
        DriverKind::Igb => open_side::<VfioIgb>(d, iommu, matched)?,
        DriverKind::Edu => open_side::<VfioEdu>(d, iommu, matched)?,
    };
    let vector = u32::from(vector);
    let kind = if device.irq_eventfd(IrqKind::MsiX, vector).is_some() {
        IrqKind::MsiX
    } else if device.irq_eventfd(IrqKind::Msi, vector).is_some() {
        IrqKind::Msi
    } else {
        return Err(Failure::Fail(format!(
            "{bdf}: the driver enabled no MSI-X or MSI eventfd for its vector {vector}"
        )));
    };
    Ok(Device {
        trigger,
        device,
        kind,
        vector,
        bdf: parsed.to_string(),
    })
}

/// Runs the program with `args` (without the program name), printing to `out`/`err`;
/// returns the kselftest exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(ParseError::Help) => {
            let _ = write!(out, "{USAGE}");
            return KSFT_FAIL;
        }
        Err(ParseError::Usage(m)) => {
            let _ = writeln!(err, "irq_test: {m}");
            let _ = write!(out, "{USAGE}");
            return KSFT_FAIL;
        }
        Err(ParseError::Invalid(m)) => {
            let _ = writeln!(err, "irq_test: {m}");
            return KSFT_FAIL;
        }
    };
    match run_opts(&opts, out) {
        Ok(()) => KSFT_PASS,
        Err(Failure::Skip(reason)) => {
            let _ = writeln!(out, "SKIP: {reason}");
            KSFT_SKIP
        }
        Err(Failure::Fail(msg)) => {
            let _ = writeln!(out, "FAIL: {msg}");
            let _ = writeln!(err, "irq_test: FAIL: {msg}");
            KSFT_FAIL
        }
    }
}

/// State shared by the checks of one run, for failure messages.
struct Ctx<'a> {
    opts: &'a Options,
    gsi: u32,
    vector: u8,
    host_irq: Option<u32>,
    affined_cpu: Option<usize>,
}

impl Ctx<'_> {
    fn describe(&self, vm: &Vm, index: u64, vcpu: usize, nmi: bool, empty: bool) -> String {
        let host_cpu = match (self.affined_cpu, self.host_irq) {
            (Some(c), _) => format!("host IRQ affined to CPU {c}"),
            (None, Some(irq)) => {
                std::fs::read_to_string(format!("/proc/irq/{irq}/effective_affinity_list"))
                    .map(|s| format!("host IRQ {irq} on CPU {}", s.trim()))
                    .unwrap_or_else(|_| format!("host IRQ {irq}"))
            }
            (None, None) => match vm.vcpu_host_cpu(vcpu) {
                Some(c) => format!("vCPU thread last on host CPU {c}"),
                None => "host CPU unknown".into(),
            },
        };
        format!(
            "IRQ {index}/{n}: vCPU {vcpu} (APIC id {id}), {kind}, GSI {gsi}, vector {vec:#x}, \
             empty routing before: {empty}, {host_cpu}",
            n = self.opts.nr_irqs,
            id = vm.vcpu_id(vcpu).unwrap_or(0),
            kind = if nmi { "NMI" } else { "IRQ" },
            gsi = self.gsi,
            vec = self.vector,
            empty = if empty { "yes" } else { "no" },
        )
    }
}

fn run_opts(opts: &Options, out: &mut dyn Write) -> Result<(), Failure> {
    passthru_guest::kvm_available().map_err(Failure::Skip)?;
    let seed = opts.seed.unwrap_or_else(random_seed);
    let _ = writeln!(out, "Random seed: {seed:#x}");
    let mut rng = Rng::new(seed);
    let (gsi, vector) = draw_gsi_vector(&mut rng);

    let mut device = match &opts.bdf {
        Some(bdf) => Some(open_device(bdf, opts.iommu_mode)?),
        None => None,
    };
    let mut host_irq = None;
    if let Some(d) = &device {
        let ints =
            Interrupts::read().map_err(|e| Failure::Fail(format!("/proc/interrupts: {e}")))?;
        host_irq = ints
            .vfio_row(d.kind_name(), d.vector, &d.bdf)
            .and_then(|r| r.irq());
        let irq = host_irq.map_or("?".to_string(), |i| i.to_string());
        let kind = if d.kind == IrqKind::MsiX {
            "MSI-X"
        } else {
            "MSI"
        };
        let _ = writeln!(
            out,
            "Using device {} {kind}[{}] (IRQ-{irq})",
            d.bdf, d.vector
        );
    }

    let config = VmConfig::new("irq_wait")
        .vcpus(opts.nr_vcpus)
        .arg(ARG_APIC_MODE, if opts.xapic { 1 } else { 2 })
        .arg(ARG_HLT, opts.hlt as u64);
    let mut vm = Vm::new(config)?;
    let own_eventfd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .map_err(|e| Failure::Fail(format!("eventfd: {e}")))?;
    let irqfd = match &device {
        Some(d) => {
            let fd = d.eventfd().ok_or_else(|| {
                Failure::Fail(format!("{}: the device's eventfd went away", d.bdf))
            })?;
            // SAFETY: the eventfd belongs to the open device, which outlives this call;
            // `assign_irqfd` duplicates it and never closes the original.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            vm.assign_irqfd(fd, gsi)?
        }
        None => vm.assign_irqfd(own_eventfd.as_fd(), gsi)?,
    };
    vm.start()?;
    vm.wait_ready(Duration::from_secs(10).max(opts.timeout))?;

    let _ = writeln!(
        out,
        "Injecting interrupts for GSI {gsi} (guest vector {vector:#x}) {} times",
        opts.nr_irqs
    );
    let cpus = allowed_cpus();
    let before = Interrupts::read()
        .map(|i| Evidence::collect(&i, host_irq))
        .unwrap_or_default();
    let mut ctx = Ctx {
        opts,
        gsi,
        vector,
        host_irq,
        affined_cpu: None,
    };
    let n = vm.nr_vcpus();
    let mut latencies = Vec::with_capacity(opts.nr_irqs.min(1 << 20) as usize);
    for index in 0..opts.nr_irqs {
        let (vcpu, nmi, empty) = irq_plan(opts, index);
        if empty {
            vm.set_gsi_routes(&[])?;
        }
        let apic_id = vm.vcpu_id(vcpu).unwrap_or(0);
        vm.set_gsi_routes(&[route_for(gsi, apic_id, vector, nmi)?])?;
        if opts.affinity {
            if let (Some(irq), false) = (host_irq, cpus.is_empty()) {
                let cpu = cpus[rng.below(cpus.len() as u64) as usize];
                std::fs::write(
                    format!("/proc/irq/{irq}/smp_affinity_list"),
                    cpu.to_string(),
                )
                .map_err(|e| {
                    Failure::Fail(format!(
                        "set /proc/irq/{irq}/smp_affinity_list to {cpu}: {e}"
                    ))
                })?;
                ctx.affined_cpu = Some(cpu);
            } else if host_irq.is_none() {
                return Err(Failure::Fail(
                    "-a: the device's host IRQ is not in /proc/interrupts".into(),
                ));
            }
        }
        if opts.migrate && !cpus.is_empty() {
            let cpu = cpus[rng.below(cpus.len() as u64) as usize];
            vm.pin_vcpu(vcpu, cpu)?;
        }
        for v in 0..n {
            for (vec, what) in [(vector, "IRQ"), (NMI, "NMI")] {
                let c = vm.irq_count(v, vec)?;
                if c != 0 {
                    return Err(Failure::Fail(format!(
                        "{}: vCPU {v} has a stray {what} flag set ({c}) before the trigger",
                        ctx.describe(&vm, index, vcpu, nmi, empty)
                    )));
                }
            }
        }
        let counter = vm.irq_counter(vcpu, if nmi { NMI } else { vector })?;
        let start = Instant::now();
        match device.as_mut() {
            Some(d) => d.trigger.fire().map_err(|e| {
                Failure::Fail(format!(
                    "{}: {e}",
                    ctx.describe(&vm, index, vcpu, nmi, empty)
                ))
            })?,
            None => {
                own_eventfd
                    .write(1)
                    .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))?;
            }
        }
        let mut spins = 0u32;
        loop {
            if counter.read() != 0 {
                latencies.push(start.elapsed());
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > opts.timeout {
                return Err(Failure::Fail(format!(
                    "{}: not received within {:?}",
                    ctx.describe(&vm, index, vcpu, nmi, empty),
                    opts.timeout
                )));
            }
            // Spin briefly (the common, fast case), then yield: on a busy host a spinning
            // poller can keep the vCPU thread it waits for off the CPU.
            if spins < 256 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        counter.write(0);
    }
    // A delivery to the wrong vCPU after the last trigger would go unseen otherwise.
    std::thread::sleep(Duration::from_millis(1));
    for v in 0..n {
        for (vec, what) in [(vector, "IRQ"), (NMI, "NMI")] {
            let c = vm.irq_count(v, vec)?;
            if c != 0 {
                return Err(Failure::Fail(format!(
                    "after the last IRQ: vCPU {v} has a stray {what} flag set ({c}); GSI {gsi}, vector {vector:#x}"
                )));
            }
        }
    }
    let after = Interrupts::read()
        .map(|i| Evidence::collect(&i, host_irq))
        .unwrap_or_default();

    vm.user_var::<u64>(0)?.write(1);
    if opts.hlt {
        // Wake the vCPUs blocked in HLT so they see `done`.
        for v in 0..n {
            let id = vm.vcpu_id(v).unwrap_or(0);
            vm.signal_msi(&MsiMessage::fixed(id, vector)?)?;
        }
    }
    drop(irqfd);
    vm.run_until_done(Duration::from_secs(10))?;

    latencies.sort();
    if !latencies.is_empty() {
        let _ = writeln!(
            out,
            "# latency trigger -> guest handler (host-observed, us): n={} p50={} p90={} p99={} max={}",
            latencies.len(),
            us(percentile(&latencies, 50.0)),
            us(percentile(&latencies, 90.0)),
            us(percentile(&latencies, 99.0)),
            us(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
    }
    let delta = before.delta(&after);
    let _ = writeln!(out, "# host evidence: {}", delta.describe());
    if opts.expect_posted {
        let ints = Interrupts::read().unwrap_or_default();
        let how = posted_interrupt_support(&ints).map_err(Failure::Skip)?;
        let handled = delta.device_irq.ok_or_else(|| {
            Failure::Fail("--expect-posted: the device's host IRQ row was not found".into())
        })?;
        let allowed = (opts.nr_irqs / 100).max(1);
        if handled > allowed {
            return Err(Failure::Fail(format!(
                "--expect-posted ({how}): the host handled {handled} of {} device interrupts \
                 (allowed {allowed}): delivery was not posted",
                opts.nr_irqs
            )));
        }
        let _ = writeln!(
            out,
            "# posted: host handled {handled} of {} ({how})",
            opts.nr_irqs
        );
    }
    Ok(())
}

/// The process entry point of the `irq_test` binary.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = run(&args, &mut std::io::stdout(), &mut std::io::stderr());
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, ParseError> {
        Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_are_upstreams() {
        let o = p(&[]).unwrap();
        assert_eq!(o.nr_irqs, 1000);
        assert_eq!(o.nr_vcpus, 1);
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert!(!o.xapic && !o.nmi && !o.empty_routing && !o.hlt && o.bdf.is_none());
    }

    #[test]
    fn getopt_forms_are_accepted() {
        let o = p(&["-v", "2", "-n", "-e", "-i50"]).unwrap();
        assert_eq!(
            (o.nr_vcpus, o.nr_irqs, o.nmi, o.empty_routing),
            (2, 50, true, true)
        );
        let o = p(&["-ne", "-xv2", "-i", "7"]).unwrap();
        assert!(o.nmi && o.empty_routing && o.xapic);
        assert_eq!((o.nr_vcpus, o.nr_irqs), (2, 7));
        let o = p(&[
            "-d",
            "0000:00:03.0",
            "-a",
            "-m",
            "-b",
            "-t",
            "iommufd_compat_type1v2",
        ])
        .unwrap();
        assert_eq!(o.bdf.as_deref(), Some("0000:00:03.0"));
        assert!(o.affinity && o.migrate && o.hlt);
        assert_eq!(o.iommu_mode, Some(IommuMode::IommufdCompatType1v2));
        for m in IommuMode::ALL {
            assert_eq!(p(&["-t", m.name()]).unwrap().iommu_mode, Some(m));
        }
    }

    #[test]
    fn long_options() {
        let o = p(&[
            "--seed",
            "0x2a",
            "--timeout=0.5",
            "-d",
            "x",
            "--expect-posted",
        ])
        .unwrap();
        assert_eq!(o.seed, Some(42));
        assert_eq!(o.timeout, Duration::from_millis(500));
        assert!(o.expect_posted);
        assert_eq!(p(&["--seed=17"]).unwrap().seed, Some(17));
    }

    #[test]
    fn help_unknown_and_invalid() {
        assert_eq!(p(&["-h"]), Err(ParseError::Help));
        assert!(matches!(p(&["-q"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["--bogus"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["-i"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["-i", "many"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["-t", "vfio"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["stray"]), Err(ParseError::Usage(_))));
        assert!(matches!(p(&["-a"]), Err(ParseError::Invalid(_))));
        assert!(matches!(
            p(&["--expect-posted"]),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(p(&["-v", "0"]), Err(ParseError::Invalid(_))));
        assert!(matches!(
            p(&["-x", "-v", "256"]),
            Err(ParseError::Invalid(_))
        ));
        assert!(p(&["-x", "-v", "255"]).is_ok());
        assert!(matches!(
            p(&["--timeout", "0"]),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn help_prints_usage_on_stdout_and_exits_1() {
        for args in [vec!["-h".to_string()], vec!["-Z".to_string()]] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(run(&args, &mut out, &mut err), KSFT_FAIL);
            assert!(String::from_utf8(out)
                .unwrap()
                .starts_with("usage: irq_test"));
        }
    }

    #[test]
    fn routes_encode_like_upstream() {
        // address_lo = 0xFEE00000 | (id & 0xff) << 12, address_hi = id & ~0xff, data = vector.
        let r = route_for(100, 1, 0x41, false).unwrap();
        assert_eq!(r.gsi, 100);
        assert_eq!(
            (r.msi.address_lo, r.msi.address_hi, r.msi.data),
            (0xfee0_1000, 0, 0x41)
        );
        let r = route_for(24, 0x1ff, 0xff, false).unwrap();
        assert_eq!((r.msi.address_lo, r.msi.address_hi), (0xfeef_f000, 0x100));
        // NMI: data = 2 | 4 << 8, whatever the vector.
        let r = route_for(4095, 3, 0x41, true).unwrap();
        assert_eq!((r.msi.address_lo, r.msi.data), (0xfee0_3000, 0x402));
    }

    #[test]
    fn plan_is_round_robin_with_nmi_on_bit_2_and_empty_on_bit_3() {
        let o = p(&["-v", "3", "-n", "-e"]).unwrap();
        let plan: Vec<_> = (0..16).map(|i| irq_plan(&o, i)).collect();
        assert_eq!(plan[0], (0, false, false));
        assert_eq!(plan[4], (1, true, false));
        assert_eq!(plan[8], (2, false, true));
        assert_eq!(plan[12], (0, true, true));
        assert_eq!(plan[13], (1, true, true));
        let plain = p(&["-v", "2"]).unwrap();
        assert!((0..16).all(|i| !irq_plan(&plain, i).1 && !irq_plan(&plain, i).2));
    }

    #[test]
    fn gsi_and_vector_ranges_and_seed_reproducibility() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let (g, v) = draw_gsi_vector(&mut rng);
            assert!((GSI_MIN..=GSI_MAX).contains(&g));
            assert!(v >= VECTOR_MIN);
        }
        assert_eq!(
            draw_gsi_vector(&mut Rng::new(9)),
            draw_gsi_vector(&mut Rng::new(9))
        );
    }

    #[test]
    fn cpu_lists_and_percentiles() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        let d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_micros(51));
        assert_eq!(percentile(&d, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&d, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
