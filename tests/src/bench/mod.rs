//! Benchmarks behind `passthru bench`.

pub mod guest;
pub mod map;
