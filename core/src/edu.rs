//! QEMU's `edu` educational PCI device (1234:11e8): BAR0 registers.
