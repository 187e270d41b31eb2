//! QEMU edu driver (4 KiB DMA buffer, MSI through the raise register).
