//! The VFIO environment (filled in below).
