//! Capability walks over configuration spaces written down as bytes.
//!
//! The edu and e1000e spaces are reconstructed from QEMU's source (hw/misc/edu.c,
//! hw/net/e1000e.c, hw/pci/pci.c, hw/pci/pcie.c as of QEMU 10) and QEMU 10.0.2 runs (edu, igb, e1000e)
//! observations: QEMU's `pci_add_capability` puts each new capability at the *head* of the list,
//! so the list order is the reverse of the order the device model adds them. BAR addresses are
//! example firmware assignments; only their flag bits come from the devices.

extern crate std;

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

struct Space(Vec<u8>);

impl Space {
    fn new(len: usize) -> Self {
        Self(vec![0; len])
    }
    fn put8(&mut self, off: usize, v: u8) -> &mut Self {
        self.0[off] = v;
        self
    }
    fn put16(&mut self, off: usize, v: u16) -> &mut Self {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn put32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn cap(&mut self, off: usize, id: u8, next: u8) -> &mut Self {
        self.put8(off, id).put8(off + 1, next)
    }
    fn ext(&mut self, off: usize, id: u16, ver: u8, next: u16) -> &mut Self {
        self.put32(
            off,
            (u32::from(next) << 20) | (u32::from(ver) << 16) | u32::from(id),
        )
    }
    fn access(&self) -> ConfigBytes<'_> {
        ConfigBytes(&self.0)
    }
}

/// QEMU edu (1234:11e8 rev 0x10, class 0x00ff): one capability, MSI at 0x40 (QEMU's first free
/// slot), 64-bit, one vector, no masking; BAR0 32-bit non-prefetchable memory (1 MiB); INTA.
fn edu() -> Space {
    let mut s = Space::new(256);
    s.put16(0x00, 0x1234)
        .put16(0x02, 0x11e8)
        .put16(0x06, Status::CAPABILITIES_LIST.bits())
        .put32(0x08, 0x00ff_0010)
        .put32(0x10, 0xfea0_0000)
        .put16(0x2c, 0x1af4) // QEMU's default subsystem vendor (Red Hat)
        .put16(0x2e, 0x1100) // and subsystem id
        .put8(0x34, 0x40)
        .put8(0x3d, 1)
        .cap(0x40, cap_id::MSI, 0)
        .put16(0x42, msi::CTRL_64BIT);
    s
}

/// QEMU e1000e (8086:10d3, 82574L) on the q35 root bus. Added in the order MSI-X (0xa0), PCIe
/// (0xe0, v1, root-complex integrated endpoint because the bus is a root bus), MSI (0xd0,
/// 64-bit, 1 vector, no masking), PM (0xc8, PMC = version 1.1 | DSI), so the list runs
/// 0xc8 -> 0xd0 -> 0xe0 -> 0xa0. MSI-X: 5 vectors, table at BAR3+0, PBA at BAR3+0x2000.
/// Extended: AER (v2) at 0x100, then the device serial number at 0x140.
fn e1000e() -> Space {
    let mut s = Space::new(4096);
    s.put16(0x00, 0x8086)
        .put16(0x02, 0x10d3)
        .put16(0x06, Status::CAPABILITIES_LIST.bits())
        .put32(0x08, 0x0200_0000)
        .put8(0x0c, 0x10)
        .put32(0x10, 0xfebc_0000) // BAR0 MMIO 128 KiB
        .put32(0x14, 0xfeba_0000) // BAR1 flash 128 KiB
        .put32(0x18, 0x0000_c001) // BAR2 I/O 32 bytes
        .put32(0x1c, 0xfebe_0000) // BAR3 MSI-X 16 KiB
        .put16(0x2c, 0x8086)
        .put8(0x34, 0xc8)
        .put8(0x3d, 1)
        .cap(0xa0, cap_id::MSIX, 0x00)
        .put16(0xa2, 5 - 1)
        .put32(0xa4, 0x0000_0003)
        .put32(0xa8, 0x0000_2003)
        .cap(0xe0, cap_id::PCI_EXPRESS, 0xa0)
        .put16(0xe2, (0x9 << 4) | 1)
        .put32(0xe4, pcie::DEVCAP_RBER)
        .cap(0xd0, cap_id::MSI, 0xe0)
        .put16(0xd2, msi::CTRL_64BIT)
        .cap(0xc8, cap_id::POWER_MANAGEMENT, 0xd0)
        .put16(0xca, pm::PMC_DSI | 0b010)
        .ext(0x100, ext_cap_id::AER, 2, 0x140)
        .ext(0x140, ext_cap_id::DEVICE_SERIAL_NUMBER, 1, 0);
    s
}

/// A synthetic DSA-like function (8086:0b25, class 0x0880): PCIe v2 endpoint with FLR at 0x40,
/// MSI-X (9 vectors, table BAR0+0x600, PBA BAR0+0x700, enabled and function-masked) at 0x80, PM
/// at 0x90 (PMCSR No_Soft_Reset). Extended: ATS, PASID, PRI, DVSEC. Not a recording.
fn dsa_synthetic() -> Space {
    let mut s = Space::new(4096);
    s.put16(0x00, 0x8086)
        .put16(0x02, 0x0b25)
        .put16(0x04, (Command::MEMORY_SPACE | Command::BUS_MASTER).bits())
        .put16(0x06, Status::CAPABILITIES_LIST.bits())
        .put32(0x08, 0x0880_0000)
        .put32(0x10, 0x0000_000c) // BAR0 64-bit prefetchable
        .put32(0x18, 0x0000_000c) // BAR2 64-bit prefetchable
        .put8(0x34, 0x40)
        .cap(0x40, cap_id::PCI_EXPRESS, 0x80)
        .put16(0x42, 2)
        .put32(0x44, pcie::DEVCAP_FLR | pcie::DEVCAP_RBER | 0b010)
        .cap(0x80, cap_id::MSIX, 0x90)
        .put16(0x82, msix::CTRL_ENABLE | msix::CTRL_FUNCTION_MASK | (9 - 1))
        .put32(0x84, 0x0000_0600)
        .put32(0x88, 0x0000_0700)
        .cap(0x90, cap_id::POWER_MANAGEMENT, 0)
        .put16(0x92, 0b011)
        .put16(0x94, pm::PMCSR_NO_SOFT_RESET)
        .ext(0x100, ext_cap_id::ATS, 1, 0x110)
        .ext(0x110, ext_cap_id::PASID, 1, 0x120)
        .ext(0x120, ext_cap_id::PRI, 1, 0x140)
        .ext(0x140, ext_cap_id::DVSEC, 1, 0);
    s
}

fn ids<A: ConfigAccess>(a: &A) -> Vec<(u8, u16)> {
    capabilities(a)
        .map(|c| c.map(|c| (c.id, c.offset)))
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ext_ids<A: ConfigAccess>(a: &A) -> Vec<(u16, u8, u16)> {
    ext_capabilities(a)
        .map(|c| c.map(|c| (c.id, c.version, c.offset)))
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn header_offsets_match_the_pci_spec() {
    assert_eq!(COMMAND, 0x04);
    assert_eq!(STATUS, 0x06);
    assert_eq!(CAPABILITIES_POINTER, 0x34);
    assert_eq!(INTERRUPT_PIN, 0x3d);
    assert_eq!(bar_offset(0), Some(0x10));
    assert_eq!(bar_offset(5), Some(0x24));
    assert_eq!(bar_offset(6), None);
    assert_eq!(Command::BUS_MASTER.bits(), 0x4);
    assert_eq!(Command::INTX_DISABLE.bits(), 0x400);
    assert_eq!(Status::CAPABILITIES_LIST.bits(), 0x10);
    assert_eq!(MAX_CAPABILITIES, 48);
    assert_eq!(MAX_EXT_CAPABILITIES, 960);
}

#[test]
fn edu_header_and_msi() {
    let s = edu();
    let a = s.access();
    assert_eq!(read_ids(&a).unwrap(), (0x1234, 0x11e8));
    let (class, rev) = ClassCode::from_class_revision(a.read32(0x08).unwrap());
    assert_eq!(rev, 0x10);
    assert_eq!(class.as_u32(), 0x00ff00);
    assert_eq!((class.base, class.sub), (0x00, 0xff));
    assert_eq!(
        BarKind::decode(a.read32(BAR0).unwrap()),
        BarKind::Memory32 {
            prefetchable: false
        }
    );
    assert_eq!(a.read8(INTERRUPT_PIN).unwrap(), 1);
    assert_eq!(ids(&a), vec![(cap_id::MSI, 0x40)]);
    let m = Msi::find(&a).unwrap().unwrap();
    assert_eq!(m.offset, 0x40);
    assert!(m.is_64bit());
    assert!(!m.per_vector_masking());
    assert!(!m.enabled());
    assert_eq!(m.vectors_capable(), 1);
    assert_eq!(m.data_offset(), 0x4c);
    assert_eq!(m.mask_offset(), None);
    assert_eq!(m.size(), 14);
    assert_eq!(MsiX::find(&a).unwrap(), None);
    assert_eq!(
        PciExpress::find(&a).unwrap(),
        None,
        "edu is conventional PCI"
    );
    assert_eq!(PowerManagement::find(&a).unwrap(), None);
    assert_eq!(
        ext_capabilities(&a).count(),
        0,
        "256-byte space has no extended caps"
    );
    assert_eq!(
        supported_device(0x1234, 0x11e8).map(|d| d.family),
        Some(DeviceFamily::Edu)
    );
}

#[test]
fn e1000e_capability_list_in_qemu_order() {
    let s = e1000e();
    let a = s.access();
    assert_eq!(
        ids(&a),
        vec![
            (cap_id::POWER_MANAGEMENT, 0xc8),
            (cap_id::MSI, 0xd0),
            (cap_id::PCI_EXPRESS, 0xe0),
            (cap_id::MSIX, 0xa0),
        ]
    );
    let x = MsiX::find(&a).unwrap().unwrap();
    assert_eq!(x.offset, 0xa0);
    assert_eq!(x.table_size(), 5);
    assert_eq!(x.table, BarLocation { bir: 3, offset: 0 });
    assert_eq!(
        x.pba,
        BarLocation {
            bir: 3,
            offset: 0x2000
        }
    );
    assert!(!x.enabled() && !x.function_masked());
    assert_eq!(x.table_bytes(), 80);
    assert_eq!(x.pba_bytes(), 8);
    let m = Msi::find(&a).unwrap().unwrap();
    assert_eq!(
        (m.offset, m.is_64bit(), m.vectors_capable()),
        (0xd0, true, 1)
    );
    let e = PciExpress::find(&a).unwrap().unwrap();
    assert_eq!(e.version(), 1);
    assert_eq!(e.port_type(), Ok(PortType::RcIntegratedEndpoint));
    assert!(
        !e.flr_capable(),
        "QEMU's e1000e does not offer FLR (resets via PM)"
    );
    let p = PowerManagement::find(&a).unwrap().unwrap();
    assert_eq!(p.version(), 2);
    assert!(p.dsi());
    assert_eq!(p.power_state(), 0);
    assert!(!p.no_soft_reset());
    assert_eq!(
        ext_ids(&a),
        vec![
            (ext_cap_id::AER, 2, 0x100),
            (ext_cap_id::DEVICE_SERIAL_NUMBER, 1, 0x140)
        ]
    );
    assert_eq!(
        find_ext_capability(&a, ext_cap_id::DEVICE_SERIAL_NUMBER).unwrap(),
        Some(0x140)
    );
    assert_eq!(find_ext_capability(&a, ext_cap_id::SRIOV).unwrap(), None);
    assert_eq!(
        BarKind::decode(a.read32(bar_offset(2).unwrap()).unwrap()),
        BarKind::Io
    );
    assert_eq!(BarKind::address_bits(0x0000_c001), 0xc000);
    assert_eq!(
        supported_device(0x8086, 0x10d3).map(|d| d.family),
        Some(DeviceFamily::E1000e)
    );
}

#[test]
fn synthetic_dsa_msix_pcie_pm_and_extended() {
    let s = dsa_synthetic();
    let a = s.access();
    let x = MsiX::find(&a).unwrap().unwrap();
    assert_eq!(x.table_size(), 9);
    assert!(x.enabled());
    assert!(x.function_masked());
    assert_eq!(
        x.table,
        BarLocation {
            bir: 0,
            offset: 0x600
        }
    );
    assert_eq!(x.pba.offset, 0x700);
    let e = PciExpress::find(&a).unwrap().unwrap();
    assert!(e.flr_capable());
    assert_eq!(e.version(), 2);
    assert_eq!(e.port_type(), Ok(PortType::Endpoint));
    assert_eq!(e.max_payload_supported(), 512);
    assert_eq!(e.devctl_offset(), 0x48);
    let p = PowerManagement::find(&a).unwrap().unwrap();
    assert!(p.no_soft_reset());
    assert_eq!(
        BarKind::decode(a.read32(BAR0).unwrap()),
        BarKind::Memory64 { prefetchable: true }
    );
    let (class, _) = ClassCode::from_class_revision(a.read32(0x08).unwrap());
    assert_eq!(class.as_u32(), 0x088000);
    assert_eq!(
        ext_ids(&a).iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
        vec![
            ext_cap_id::ATS,
            ext_cap_id::PASID,
            ext_cap_id::PRI,
            ext_cap_id::DVSEC
        ]
    );
    let known = supported_device(0x8086, 0x0b25).unwrap();
    assert_eq!(known.family, DeviceFamily::Dsa);
}

#[test]
fn msi_decoder_variants() {
    let mut s = Space::new(256);
    s.put16(0x06, Status::CAPABILITIES_LIST.bits())
        .put8(0x34, 0x50)
        .cap(0x50, cap_id::MSI, 0)
        // 32-bit, per-vector masking, MMC = 8 vectors, MME = 4 vectors, enabled.
        .put16(
            0x52,
            msi::CTRL_PER_VECTOR_MASK | (3 << msi::CTRL_MMC_SHIFT) | (2 << msi::CTRL_MME_SHIFT) | 1,
        );
    let m = Msi::find(&s.access()).unwrap().unwrap();
    assert!(m.enabled() && !m.is_64bit() && m.per_vector_masking());
    assert_eq!((m.vectors_capable(), m.vectors_enabled()), (8, 4));
    assert_eq!(m.data_offset(), 0x58);
    assert_eq!(m.mask_offset(), Some(0x5c));
    assert_eq!(m.pending_offset(), Some(0x60));
    assert_eq!(m.size(), 20);
    // Reserved MMC encodings clamp instead of overflowing the shift.
    s.put16(
        0x52,
        7 << msi::CTRL_MMC_SHIFT | msi::CTRL_64BIT | msi::CTRL_PER_VECTOR_MASK,
    );
    let m = Msi::find(&s.access()).unwrap().unwrap();
    assert_eq!(m.vectors_capable(), 32);
    assert_eq!(m.mask_offset(), Some(0x60));
    assert_eq!(m.pending_offset(), Some(0x64));
}

#[test]
fn decoding_the_wrong_capability_is_an_error() {
    let s = edu();
    assert_eq!(
        MsiX::read(&s.access(), 0x40),
        Err(CapabilityError::WrongId {
            offset: 0x40,
            expected: cap_id::MSIX.into(),
            found: cap_id::MSI.into()
        })
    );
}

#[test]
fn no_capability_list_bit_means_no_capabilities() {
    let mut s = edu();
    s.put16(0x06, 0);
    assert_eq!(capabilities(&s.access()).count(), 0);
    assert_eq!(find_capability(&s.access(), cap_id::MSI), Ok(None));
}

#[test]
fn looping_capability_list_terminates_with_loop_error() {
    let mut s = edu();
    s.cap(0x40, cap_id::MSI, 0x50)
        .cap(0x50, cap_id::VENDOR_SPECIFIC, 0x40);
    let all: Vec<_> = capabilities(&s.access()).collect();
    assert_eq!(
        all,
        vec![
            Ok(Capability {
                id: cap_id::MSI,
                offset: 0x40
            }),
            Ok(Capability {
                id: cap_id::VENDOR_SPECIFIC,
                offset: 0x50
            }),
            Err(CapabilityError::Loop { offset: 0x40 }),
        ]
    );
    assert_eq!(
        find_capability(&s.access(), cap_id::MSIX),
        Err(CapabilityError::Loop { offset: 0x40 })
    );
    // A self-loop, with the reserved low pointer bits set (they are masked off).
    s.cap(0x40, cap_id::MSI, 0x43);
    assert_eq!(
        find_capability(&s.access(), cap_id::PCI_EXPRESS),
        Err(CapabilityError::Loop { offset: 0x40 })
    );
}

#[test]
fn pointer_into_header_is_rejected() {
    let mut s = edu();
    s.cap(0x40, cap_id::MSI, 0x10);
    assert_eq!(
        find_capability(&s.access(), cap_id::MSIX),
        Err(CapabilityError::BadPointer {
            from: 0x41,
            to: 0x10
        })
    );
    s.put8(0x34, 0x3c);
    assert_eq!(
        capabilities(&s.access()).next(),
        Some(Err(CapabilityError::BadPointer {
            from: 0x34,
            to: 0x3c
        }))
    );
}

#[test]
fn extended_loop_and_bad_pointer_terminate() {
    let mut s = e1000e();
    s.ext(0x140, ext_cap_id::DEVICE_SERIAL_NUMBER, 1, 0x100);
    let all: Vec<_> = ext_capabilities(&s.access()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2], Err(CapabilityError::Loop { offset: 0x100 }));
    s.ext(0x140, ext_cap_id::DEVICE_SERIAL_NUMBER, 1, 0x0fc);
    assert_eq!(
        find_ext_capability(&s.access(), ext_cap_id::SRIOV),
        Err(CapabilityError::BadPointer {
            from: 0x140,
            to: 0xfc
        })
    );
    // An all-ones header at 0x100 means "no extended space".
    s.put32(0x100, u32::MAX);
    assert_eq!(ext_capabilities(&s.access()).count(), 0);
}

#[test]
fn read_past_the_end_is_a_config_error() {
    // A 0x44-byte space whose MSI capability is cut off.
    let s = edu();
    let short = ConfigBytes(&s.0[..0x43]);
    assert_eq!(
        Msi::find(&short),
        Err(CapabilityError::Config(FunctionError::ConfigOutOfRange {
            offset: 0x42
        }))
    );
}

#[test]
fn supported_device_table() {
    assert_eq!(
        supported_device(0x8086, 0x2021).map(|d| d.family),
        Some(DeviceFamily::Ioat)
    );
    assert_eq!(
        supported_device(0x8086, 0x0e2f).map(|d| d.family),
        Some(DeviceFamily::Ioat)
    );
    assert_eq!(
        supported_device(0x8086, 0x1a38).map(|d| d.family),
        Some(DeviceFamily::IoatLegacy)
    );
    assert_eq!(
        supported_device(0x8086, 0x11fb).map(|d| d.family),
        Some(DeviceFamily::Dsa)
    );
    assert_eq!(
        supported_device(0x8086, 0x0cfe).map(|d| d.family),
        Some(DeviceFamily::Iaa)
    );
    assert_eq!(
        supported_device(0x8086, 0x10c9).map(|d| d.family),
        Some(DeviceFamily::Igb)
    );
    assert_eq!(supported_device(0x1234, 0x10c9), None);
    assert_eq!(supported_device(0xffff, 0xffff), None);
    // No duplicates.
    for (i, a) in KNOWN_DEVICES.iter().enumerate() {
        for b in &KNOWN_DEVICES[i + 1..] {
            assert!((a.vendor, a.device) != (b.vendor, b.device), "{a:?}");
        }
    }
}

#[test]
fn port_type_round_trips() {
    for raw in 0u8..16 {
        if let Ok(t) = PortType::try_from(raw) {
            assert_eq!(u8::from(t), raw);
        } else {
            assert!(matches!(raw, 2 | 3 | 0xb..=0xf));
        }
    }
}

fn walk_everything(a: &ConfigBytes<'_>) -> (usize, usize) {
    let n = capabilities(a).take(1000).count();
    let m = ext_capabilities(a).take(5000).count();
    // Decoders on whatever the walk found must not panic either.
    for c in capabilities(a).flatten() {
        let _ = Msi::read(a, c.offset).map(|m| (m.data_offset(), m.size(), m.pending_offset()));
        let _ = MsiX::read(a, c.offset).map(|x| (x.table_bytes(), x.pba_bytes()));
        let _ = PciExpress::read(a, c.offset).map(|e| (e.port_type(), e.max_payload_supported()));
        let _ = PowerManagement::read(a, c.offset);
    }
    (n, m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_256_byte_spaces_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 256)) {
        bytes[0x06] |= 0x10;
        let a = ConfigBytes(&bytes);
        let (n, m) = walk_everything(&a);
        // At most MAX_CAPABILITIES entries plus one error.
        prop_assert!(n <= MAX_CAPABILITIES + 1);
        prop_assert_eq!(m, 0);
    }

    #[test]
    fn arbitrary_4096_byte_spaces_never_panic(bytes in proptest::collection::vec(any::<u8>(), 4096)) {
        let a = ConfigBytes(&bytes);
        let (n, m) = walk_everything(&a);
        prop_assert!(n <= MAX_CAPABILITIES + 1);
        prop_assert!(m <= MAX_EXT_CAPABILITIES + 1);
    }

    #[test]
    fn linked_lists_through_random_pointers_terminate(
        ptrs in proptest::collection::vec(0x40u8..=0xff, 1..64),
    ) {
        // Build a list that follows arbitrary (possibly repeating) pointers.
        let mut s = Space::new(256);
        s.put16(0x06, Status::CAPABILITIES_LIST.bits()).put8(0x34, ptrs[0]);
        for w in ptrs.windows(2) {
            let at = usize::from(w[0] & !3);
            s.put8(at, cap_id::VENDOR_SPECIFIC).put8(at + 1, w[1]);
        }
        let all: Vec<_> = capabilities(&s.access()).collect();
        prop_assert!(all.len() <= MAX_CAPABILITIES + 1);
        // Only the last item may be an error.
        for item in &all[..all.len().saturating_sub(1)] {
            prop_assert!(item.is_ok());
        }
    }
}

#[test]
fn update_command_sets_and_clears() {
    use core::cell::Cell;
    struct Cmd(Cell<u16>, Cell<u32>);
    struct NoBar;
    impl crate::mmio::RegisterIo for NoBar {
        fn len(&self) -> usize {
            0
        }
        fn read8(&self, _: usize) -> u8 {
            0
        }
        fn read16(&self, _: usize) -> u16 {
            0
        }
        fn read32(&self, _: usize) -> u32 {
            0
        }
        fn read64(&self, _: usize) -> u64 {
            0
        }
        fn write8(&self, _: usize, _: u8) {}
        fn write16(&self, _: usize, _: u16) {}
        fn write32(&self, _: usize, _: u32) {}
        fn write64(&self, _: usize, _: u64) {}
        fn submit64(&self, _: usize, _: &[u8; 64]) -> Result<(), crate::mmio::PortalError> {
            Ok(())
        }
    }
    impl PciFunction for Cmd {
        type Bar = NoBar;
        fn bar(&self, i: u8) -> Result<NoBar, FunctionError> {
            Err(FunctionError::NoSuchBar(i))
        }
        fn config_read8(&self, _: u16) -> Result<u8, FunctionError> {
            Ok(0)
        }
        fn config_read16(&self, o: u16) -> Result<u16, FunctionError> {
            assert_eq!(o, COMMAND);
            Ok(self.0.get())
        }
        fn config_read32(&self, _: u16) -> Result<u32, FunctionError> {
            Ok(0)
        }
        fn config_write8(&self, _: u16, _: u8) -> Result<(), FunctionError> {
            Ok(())
        }
        fn config_write16(&self, o: u16, v: u16) -> Result<(), FunctionError> {
            assert_eq!(o, COMMAND);
            self.0.set(v);
            self.1.set(self.1.get() + 1);
            Ok(())
        }
        fn config_write32(&self, _: u16, _: u32) -> Result<(), FunctionError> {
            Ok(())
        }
        fn irq_enable(&self, _: crate::mmio::IrqKind, _: u32, _: u32) -> Result<(), FunctionError> {
            Ok(())
        }
        fn irq_disable(&self, _: crate::mmio::IrqKind) -> Result<(), FunctionError> {
            Ok(())
        }
        fn reset(&self) -> Result<(), FunctionError> {
            Ok(())
        }
    }
    let f = Cmd(Cell::new(Command::INTX_DISABLE.bits()), Cell::new(0));
    let c = update_command(
        &f,
        Command::BUS_MASTER | Command::MEMORY_SPACE,
        Command::empty(),
    )
    .unwrap();
    assert_eq!(c.bits(), 0x406);
    assert_eq!(f.1.get(), 1);
    update_command(&f, Command::BUS_MASTER, Command::empty()).unwrap();
    assert_eq!(f.1.get(), 1, "no change, no write");
    let c = update_command(&f, Command::empty(), Command::BUS_MASTER).unwrap();
    assert_eq!(c.bits(), 0x402);
    assert_eq!(f.0.get(), 0x402);
}

#[test]
fn read_bar_decodes_32_and_64_bit_bars() {
    let s = e1000e();
    let a = s.access();
    assert_eq!(
        read_bar(&a, 0).unwrap(),
        Some(BarInfo {
            kind: BarKind::Memory32 {
                prefetchable: false
            },
            address: 0xfebc_0000
        })
    );
    assert_eq!(read_bar(&a, 2).unwrap().unwrap().kind, BarKind::Io);
    assert_eq!(read_bar(&a, 2).unwrap().unwrap().address, 0xc000);
    assert_eq!(read_bar(&a, 6).unwrap(), None);
    let mut d = dsa_synthetic();
    d.put32(0x10, 0xc000_000c).put32(0x14, 0x0000_0038);
    assert_eq!(
        read_bar(&d.access(), 0).unwrap(),
        Some(BarInfo {
            kind: BarKind::Memory64 { prefetchable: true },
            address: 0x38_c000_0000
        })
    );
    d.put32(0x24, 0x0000_0004);
    assert_eq!(
        read_bar(&d.access(), 5).unwrap(),
        None,
        "64-bit BAR5 has no upper half"
    );
}
