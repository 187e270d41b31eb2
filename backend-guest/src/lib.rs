//! # passthru-guest
//!
//! Placeholder for the KVM guest backend: a host-side micro-VMM and a no_std guest
//! runtime that runs `passthru-drivers` inside a tiny guest. **Nothing is implemented yet**; this
//! crate exports no API so that nothing can mistake it for a working backend.
#![no_std]
#![deny(missing_docs)]
