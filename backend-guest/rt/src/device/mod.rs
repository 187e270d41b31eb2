//! PCI functions a VMM gives a guest: the request protocol both sides speak ([`request`]) and,
//! inside the guest, the seam implementation the drivers run on ([`guest`]).

pub mod request;

#[cfg(target_arch = "x86_64")]
pub mod guest;
