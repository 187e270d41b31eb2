//! Intel VT-d debugfs page-table walk (mapping sizes). Filled in below.
