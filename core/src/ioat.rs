//! Intel Crystal Beach DMA (I/OAT v3.x, CBDMA): global and per-channel registers, CHANERR,
//! descriptors and builders.
