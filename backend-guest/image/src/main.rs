//! The passthru guest image: the runtime (`passthru-guest-rt`), the drivers, and the guest mains
//! a host test selects by name (`passthru_guest::VmConfig::main`).
//!
//! Add a main with `passthru_guest_rt::guest_main!(STATIC, "name", function)` in any module of
//! this crate; the host finds it in the image's main table.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

// The drivers are linked into the image; mains that run them live next to the ones below.
use passthru_drivers as _;

mod irq_test;
mod selftest;
