//! Shared pieces of the benchmarks.

pub mod iperf3;
