//! Intel Data Streaming Accelerator (driver name "idxd"): BAR0 registers, WQCFG/GRPCFG,
//! commands, descriptors, completion records and descriptor builders.
