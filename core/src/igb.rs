//! Intel 82576 Gigabit Ethernet (8086:10c9, also QEMU's `igb`): registers and descriptors used by
//! the loopback memcpy driver.
