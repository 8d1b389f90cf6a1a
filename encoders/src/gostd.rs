//! Go `compress/gzip` at its default level, bit-exact (being written).
