//! # passthru (test programs and CLI)
//!
//! The kselftest-compatible VFIO test programs, their harness, the `passthru` command and the
//! QEMU rig.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod harness;
pub mod lava;
pub mod programs;
pub mod rig;
pub mod state;
pub mod suite;
