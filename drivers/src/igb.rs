//! Intel 82576 / QEMU igb driver (MAC loopback memcpy, MSI-X through EICS).
