//! Percentiles, units and the printed lines the benchmarks have in common.

use std::{thread, time::Duration};

use super::load::{LoadStats, ROUNDS, WARM_UP, WINDOW};

/// Target: daemon throughput at least this fraction of the baseline's.
pub const TARGET_RATIO: f64 = 0.70;

/// The nearest-rank percentile (`fraction` in 0..=1) of ascending `sorted`.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied().unwrap_or_default()
}

/// The cores this machine has (0 when it cannot tell).
pub fn cores() -> usize {
    thread::available_parallelism().map_or(0, usize::from)
}

/// Prints what a baseline comparison measures and the column titles.
pub fn print_header() {
    let cpus = cores();
    println!(
        "Unary calls over a Unix socket, {cpus} CPUs; per row: warm-up {:.1} s, \
         then {:.1} s measured in {ROUNDS} slices taking turns with the other server.",
        WARM_UP.as_secs_f64(),
        WINDOW.as_secs_f64()
    );
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9}",
        "server / method", "in flight", "req/s", "p50 µs", "p99 µs"
    );
}

/// Prints one load level of one server.
pub fn print_load(label: &str, in_flight: usize, stats: &LoadStats) {
    println!(
        "{label:<26} {in_flight:>9} {:>10.0} {:>9.1} {:>9.1}",
        stats.throughput(),
        micros(stats.p50),
        micros(stats.p99)
    );
}

/// Prints the throughput ratio daemon/baseline at one load level.
pub fn print_ratio(in_flight: usize, ratio: f64) {
    println!(
        "  throughput daemon/baseline at {in_flight} in flight: {ratio:.2} (target >= {TARGET_RATIO:.2}: {})",
        verdict(ratio >= TARGET_RATIO)
    );
}

/// `duration` in microseconds.
pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// `duration` in milliseconds.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// How a target comparison reads in the output.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
