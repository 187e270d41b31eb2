//! # passthru-models
//!
//! Software devices behind the same seam a real BAR offers.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
