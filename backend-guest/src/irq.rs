//! Interrupt plumbing: MSI messages (x86 format, x2APIC ids through `address_hi`), GSI routes,
//! irqfds.
//!
//! MSI format (Intel SDM Vol. 3A §11.11, "Message Signalled Interrupts"): address
//! `0xFEE0_0000 | dest_id[7:0] << 12` (physical destination mode, no redirection hint), data
//! `vector | delivery_mode << 8` (edge). With `KVM_CAP_X2APIC_API`'s 32-bit ids enabled, KVM
//! takes bits 31:8 of the destination id from `address_hi[31:8]`.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::sync::Arc;

use kvm_bindings::{kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use crate::error::{kerr, Result, VmError};

/// Number of GSIs KVM routes (`KVM_MAX_IRQ_ROUTES`); valid GSIs are `0..MAX_GSI_ROUTES`.
pub const MAX_GSI_ROUTES: u32 = 4096;
/// MSI delivery mode: fixed.
pub const DELIVERY_FIXED: u32 = 0;
/// MSI delivery mode: NMI.
pub const DELIVERY_NMI: u32 = 4;
/// The NMI vector (what the data's vector field carries for an NMI).
pub const NMI_VECTOR: u8 = 2;

/// An MSI message as KVM routes and injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    /// Address bits 31:0.
    pub address_lo: u32,
    /// Address bits 63:32 (bits 31:8 of an x2APIC destination id under KVM's x2APIC API).
    pub address_hi: u32,
    /// Data.
    pub data: u32,
}

impl MsiMessage {
    /// A fixed-delivery MSI of `vector` to the APIC with id `dest_apic_id` (physical mode).
    /// Vectors 0–15 are reserved for fixed delivery and rejected.
    pub fn fixed(dest_apic_id: u32, vector: u8) -> Result<Self> {
        if vector < 16 {
            return Err(VmError::Config(format!(
                "vector {vector} is reserved (fixed-delivery vectors are 16..=255)"
            )));
        }
        Ok(Self::with_data(
            dest_apic_id,
            vector as u32 | DELIVERY_FIXED << 8,
        ))
    }

    /// An NMI-delivery MSI to the APIC with id `dest_apic_id`.
    pub fn nmi(dest_apic_id: u32) -> Self {
        Self::with_data(dest_apic_id, NMI_VECTOR as u32 | DELIVERY_NMI << 8)
    }

    fn with_data(dest: u32, data: u32) -> Self {
        Self {
            address_lo: 0xfee0_0000 | (dest & 0xff) << 12,
            address_hi: dest & !0xff,
            data,
        }
    }

    /// The destination APIC id encoded in the message.
    pub fn dest_apic_id(&self) -> u32 {
        (self.address_hi & !0xff) | ((self.address_lo >> 12) & 0xff)
    }

    /// The vector (data bits 7:0).
    pub fn vector(&self) -> u8 {
        self.data as u8
    }

    /// True for NMI delivery.
    pub fn is_nmi(&self) -> bool {
        (self.data >> 8) & 7 == DELIVERY_NMI
    }

    pub(crate) fn kvm_msi(&self) -> kvm_msi {
        kvm_msi {
            address_lo: self.address_lo,
            address_hi: self.address_hi,
            data: self.data,
            ..Default::default()
        }
    }
}

/// One GSI routed as an MSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsiRoute {
    /// The GSI (`0..MAX_GSI_ROUTES`).
    pub gsi: u32,
    /// The message the GSI delivers.
    pub msi: MsiMessage,
}

/// Builds the `KVM_SET_GSI_ROUTING` table for `routes` (empty = no route at all).
pub fn routing_table(routes: &[GsiRoute]) -> Result<KvmIrqRouting> {
    let mut entries = Vec::with_capacity(routes.len());
    for r in routes {
        if r.gsi >= MAX_GSI_ROUTES {
            return Err(VmError::Config(format!(
                "GSI {} out of range (KVM routes 0..{MAX_GSI_ROUTES})",
                r.gsi
            )));
        }
        let mut e = kvm_irq_routing_entry {
            gsi: r.gsi,
            type_: KVM_IRQ_ROUTING_MSI,
            ..Default::default()
        };
        e.u.msi.address_lo = r.msi.address_lo;
        e.u.msi.address_hi = r.msi.address_hi;
        e.u.msi.data = r.msi.data;
        entries.push(e);
    }
    KvmIrqRouting::from_entries(&entries).map_err(|e| {
        VmError::Config(format!(
            "GSI routing table of {} entries: {e:?}",
            routes.len()
        ))
    })
}

/// An eventfd bound to a GSI with `KVM_IRQFD`: each write to the eventfd injects the GSI's
/// route. Dropping it deassigns (errors ignored); [`IrqFd::deassign`] reports them.
#[derive(Debug)]
pub struct IrqFd {
    vm: Arc<VmFd>,
    // A dup of the caller's eventfd, in the type kvm-ioctls takes.
    efd: EventFd,
    gsi: u32,
    assigned: bool,
}

impl IrqFd {
    pub(crate) fn assign(vm: Arc<VmFd>, fd: BorrowedFd<'_>, gsi: u32) -> Result<Self> {
        if gsi >= MAX_GSI_ROUTES {
            return Err(VmError::Config(format!(
                "GSI {gsi} out of range (KVM routes 0..{MAX_GSI_ROUTES})"
            )));
        }
        let dup = fd.try_clone_to_owned().map_err(|source| VmError::Os {
            op: "dup of the irqfd eventfd",
            source,
        })?;
        let raw = dup.as_raw_fd();
        std::mem::forget(dup);
        // SAFETY: `raw` is a freshly duplicated descriptor that nothing else owns (the OwnedFd
        // was forgotten above); the EventFd takes sole ownership and closes it on drop.
        let efd = unsafe { EventFd::from_raw_fd(raw) };
        vm.register_irqfd(&efd, gsi)
            .map_err(kerr("KVM_IRQFD assign"))?;
        Ok(Self {
            vm,
            efd,
            gsi,
            assigned: true,
        })
    }

    /// The GSI this irqfd injects.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Deassigns the irqfd (`KVM_IRQFD` with `KVM_IRQFD_FLAG_DEASSIGN`); after it returns,
    /// writes to the eventfd no longer reach the guest.
    pub fn deassign(mut self) -> Result<()> {
        self.assigned = false;
        self.vm
            .unregister_irqfd(&self.efd, self.gsi)
            .map_err(kerr("KVM_IRQFD deassign"))
    }
}

impl Drop for IrqFd {
    fn drop(&mut self) {
        if self.assigned {
            let _ = self.vm.unregister_irqfd(&self.efd, self.gsi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_msi_encodes_xapic_and_x2apic_destinations() {
        let m = MsiMessage::fixed(1, 0x41).unwrap();
        assert_eq!((m.address_lo, m.address_hi, m.data), (0xfee0_1000, 0, 0x41));
        let m = MsiMessage::fixed(0x1234_5678, 0xff).unwrap();
        assert_eq!(m.address_lo, 0xfee7_8000);
        assert_eq!(m.address_hi, 0x1234_5600);
        assert_eq!(m.dest_apic_id(), 0x1234_5678);
        assert_eq!(m.vector(), 0xff);
        assert!(!m.is_nmi());
        assert!(MsiMessage::fixed(0, 15).is_err());
        assert!(MsiMessage::fixed(0, 16).is_ok());
    }

    #[test]
    fn nmi_msi_uses_delivery_mode_4() {
        let m = MsiMessage::nmi(300);
        assert_eq!(m.data, 2 | 4 << 8);
        assert_eq!(m.address_lo, 0xfee0_0000 | (300 & 0xff) << 12);
        assert_eq!(m.address_hi, 0x100);
        assert!(m.is_nmi());
    }

    #[test]
    fn routing_table_carries_every_route_and_rejects_bad_gsis() {
        let routes = [
            GsiRoute {
                gsi: 24,
                msi: MsiMessage::fixed(0, 32).unwrap(),
            },
            GsiRoute {
                gsi: 4095,
                msi: MsiMessage::nmi(1),
            },
        ];
        let t = routing_table(&routes).unwrap();
        let e = t.as_slice();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].gsi, 4095);
        assert_eq!(e[1].type_, KVM_IRQ_ROUTING_MSI);
        // SAFETY: reading the `msi` member of a union this test wrote as MSI routes.
        assert_eq!(unsafe { e[1].u.msi.data }, 0x402);
        assert_eq!(routing_table(&[]).unwrap().as_slice().len(), 0);
        let bad = [GsiRoute {
            gsi: 4096,
            msi: MsiMessage::nmi(0),
        }];
        assert!(routing_table(&bad).is_err());
    }
}
