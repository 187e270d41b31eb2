//! BAR2 work-queue portals: each WQ owns four consecutive 4 KiB pages.

/// Size of one portal page.
pub const PORTAL_PAGE_SIZE: usize = 0x1000;
/// Bytes of BAR2 per WQ (4 pages): WQ `n` starts at `n * WQ_PORTAL_STRIDE`.
pub const WQ_PORTAL_STRIDE: usize = 0x4000;
/// Submission granularity inside a page (one descriptor).
pub const PORTAL_SLOT: usize = 64;

/// Which of a WQ's four portal pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum PortalKind {
    /// Page 0: unlimited portal, completion interrupts via MSI-X.
    UnlimitedMsix = 0,
    /// Page 1: limited portal, MSI-X.
    LimitedMsix = 1,
    /// Page 2: unlimited portal, interrupts via IMS.
    UnlimitedIms = 2,
    /// Page 3: limited portal, IMS.
    LimitedIms = 3,
}

impl PortalKind {
    /// Decode a page index (only bits 1:0 are used, so every input maps).
    pub const fn from_page(page: usize) -> Self {
        match page & 3 {
            0 => Self::UnlimitedMsix,
            1 => Self::LimitedMsix,
            2 => Self::UnlimitedIms,
            _ => Self::LimitedIms,
        }
    }
    /// Limited portal (bit 0 of the page index).
    pub const fn limited(self) -> bool {
        self as u8 & 1 != 0
    }
    /// IMS interrupts (bit 1 of the page index).
    pub const fn ims(self) -> bool {
        self as u8 & 2 != 0
    }
}

/// BAR2 offset of WQ `wq`'s portal page `kind`.
pub const fn portal_offset(wq: u16, kind: PortalKind) -> usize {
    wq as usize * WQ_PORTAL_STRIDE + kind as usize * PORTAL_PAGE_SIZE
}

/// A decoded BAR2 offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PortalAddress {
    /// WQ index (`offset >> 14`).
    pub wq: usize,
    /// Page kind (`(offset >> 12) & 3`).
    pub kind: PortalKind,
    /// 64-byte slot within the page (`(offset & 0xfff) >> 6`).
    pub slot: usize,
    /// True if the offset is 64-byte aligned.
    pub aligned: bool,
}

/// Decode a BAR2 offset.
pub const fn decode_portal(offset: usize) -> PortalAddress {
    PortalAddress {
        wq: offset >> 14,
        kind: PortalKind::from_page(offset >> 12),
        slot: (offset & 0xfff) >> 6,
        aligned: offset.is_multiple_of(PORTAL_SLOT),
    }
}
