//! Model bandwidth benchmark (filled in below).
