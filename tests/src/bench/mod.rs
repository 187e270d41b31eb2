//! Benchmarks behind `passthru bench`.

pub mod map;
