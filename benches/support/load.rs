//! Unary load: keeps a number of calls in flight for a window of time and
//! records every call's latency; compares a server against the baseline in
//! alternating slices.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use outpost::endpoint::AuthChannel;
use tokio::task::JoinSet;
use tonic::Status;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{BoxError, report::percentile};

/// Calls made, unmeasured, before each measuring window.
pub const WARM_UP: Duration = Duration::from_millis(500);
/// How long each load level is measured, per server.
pub const WINDOW: Duration = Duration::from_secs(3);
/// Slices each window is cut into; the two servers take turns by slice.
pub const ROUNDS: u32 = 6;

/// One unary call of the method under test; clones share one connection.
pub trait UnaryCall: Clone + Send + 'static {
    /// Makes one call and discards the response.
    fn call(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
}

/// The baseline's method: `Health/Check`.
impl UnaryCall for HealthClient<AuthChannel> {
    async fn call(&mut self) -> Result<(), Status> {
        self.check(HealthCheckRequest::default()).await.map(drop)
    }
}

/// Throughput and latency of one load level.
pub struct LoadStats {
    /// Calls completed in the measuring window.
    pub calls: usize,
    /// Time under load: from the first call of each slice until its last
    /// call completed, summed.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl LoadStats {
    /// Completed calls per second.
    pub fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Measures one load level on both servers: a warm-up each, then [`ROUNDS`]
/// slices of `WINDOW / ROUNDS` each, alternating which server goes first, so
/// that a machine whose speed drifts affects both sides of the ratio alike.
pub async fn compare_at<B: UnaryCall, D: UnaryCall>(
    in_flight: usize,
    baseline: &B,
    daemon: &D,
) -> Result<(LoadStats, LoadStats), BoxError> {
    drive(baseline, in_flight, WARM_UP).await?;
    drive(daemon, in_flight, WARM_UP).await?;
    let slice = WINDOW / ROUNDS;
    let (mut base, mut ours) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            base.add(baseline, in_flight, slice).await?;
            ours.add(daemon, in_flight, slice).await?;
        } else {
            ours.add(daemon, in_flight, slice).await?;
            base.add(baseline, in_flight, slice).await?;
        }
    }
    Ok((base.into_stats(), ours.into_stats()))
}

/// Latencies and loaded time gathered over one or more slices of load.
#[derive(Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Samples {
    /// Adds a slice of `window` with `in_flight` calls going on `client`.
    pub async fn add<C: UnaryCall>(
        &mut self,
        client: &C,
        in_flight: usize,
        window: Duration,
    ) -> Result<(), BoxError> {
        let (latencies, elapsed) = drive(client, in_flight, window).await?;
        self.latencies.extend(latencies);
        self.elapsed += elapsed;
        Ok(())
    }

    /// Throughput and latency percentiles of everything added.
    pub fn into_stats(mut self) -> LoadStats {
        self.latencies.sort_unstable();
        LoadStats {
            calls: self.latencies.len(),
            elapsed: self.elapsed,
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
        }
    }
}

/// Runs `in_flight` tasks that call back to back until `window` has passed;
/// returns every call's latency and the time until the last call completed.
async fn drive<C: UnaryCall>(
    client: &C,
    in_flight: usize,
    window: Duration,
) -> Result<(Vec<Duration>, Duration), BoxError> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        tasks.spawn(call_until(client.clone(), deadline));
    }
    let mut latencies = Vec::new();
    while let Some(task) = tasks.join_next().await {
        latencies.extend(task??);
    }
    Ok((latencies, start.elapsed()))
}

/// Calls back to back until `deadline`; returns each call's latency.
async fn call_until<C: UnaryCall>(
    mut client: C,
    deadline: Instant,
) -> Result<Vec<Duration>, Status> {
    let mut latencies = Vec::with_capacity(1 << 16);
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return Ok(latencies);
        }
        client.call().await?;
        latencies.push(sent.elapsed());
    }
}
