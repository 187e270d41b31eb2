//! Intel CBDMA / I/OAT v3 driver (one channel, descriptor ring, CHANSTS write-back).
