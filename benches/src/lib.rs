//! Support for veritylab's benchmarks and side-by-side comparisons with peer tools.
#![forbid(unsafe_code)]
