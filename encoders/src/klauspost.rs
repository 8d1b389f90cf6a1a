//! klauspost/pgzip over klauspost/compress level 5, bit-exact (being written).
