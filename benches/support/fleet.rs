//! Many calls at once: creating fleets of instances, and the outcome of a
//! batch of calls.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use outpost::{endpoint::Connection, proto::v1 as pb};
use tokio::task::JoinSet;

use super::{
    BoxError,
    report::{millis, percentile},
};

/// `CreateInstance` calls kept in flight while creating a fleet.
pub const CREATE_IN_FLIGHT: usize = 16;

/// The outcome of a batch of calls.
pub struct Calls {
    /// What each call returned, in the order the calls were numbered.
    pub instances: Vec<pb::Instance>,
    /// Each call's latency, ascending.
    pub latencies: Vec<Duration>,
    /// From the first call until the last one completed.
    pub wall: Duration,
    /// How many calls were kept in flight.
    pub in_flight: usize,
}

impl Calls {
    /// Prints the batch: wall time, and per-call p50 and p99.
    pub fn print(&self, what: &str) {
        println!(
            "{what} {} instances, {} calls in flight: {:.3} s (per call p50 {:.2} ms, p99 {:.2} ms)",
            self.instances.len(),
            self.in_flight,
            self.wall.as_secs_f64(),
            millis(percentile(&self.latencies, 0.50)),
            millis(percentile(&self.latencies, 0.99)),
        );
    }
}

/// Creates `count` instances named `PREFIX-NNNN` with the specs `spec`
/// makes from those names, [`CREATE_IN_FLIGHT`] calls at a time; each must
/// be in state `expected` when its creation returns. Instances expected
/// STOPPED are only stored, never started.
pub async fn create_fleet(
    connection: &Connection,
    prefix: &'static str,
    count: usize,
    spec: fn(&str) -> pb::InstanceSpec,
    expected: pb::InstanceState,
) -> Result<Calls, BoxError> {
    let orchestrator = connection.orchestrator();
    run_calls(count, CREATE_IN_FLIGHT, move |index| {
        let mut orchestrator = orchestrator.clone();
        async move {
            let request = pb::CreateInstanceRequest {
                spec: Some(spec(&format!("{prefix}-{index:04}"))),
                start: Some(expected != pb::InstanceState::Stopped),
            };
            let response = orchestrator.create_instance(request).await?.into_inner();
            let instance = response
                .instance
                .ok_or("CreateInstance returned no instance")?;
            expect_state(&instance, expected)?;
            Ok(instance)
        }
    })
    .await
}

/// The spec of an instance named `name` running `sleep 1000`.
pub fn sleeper(name: &str) -> pb::InstanceSpec {
    pb::InstanceSpec {
        name: name.to_owned(),
        command: "sleep".to_owned(),
        args: vec!["1000".to_owned()],
        ..Default::default()
    }
}

/// An error unless `instance` is in `state`.
pub fn expect_state(instance: &pb::Instance, state: pb::InstanceState) -> Result<(), BoxError> {
    if instance.state == state as i32 {
        return Ok(());
    }
    Err(format!(
        "instance {} is {:?}, expected {state:?} ({})",
        instance.name,
        pb::InstanceState::try_from(instance.state),
        instance.last_error
    )
    .into())
}

/// Makes calls numbered `0..count` with `call`, keeping `in_flight` of
/// them going at once.
pub async fn run_calls<F, Fut>(count: usize, in_flight: usize, call: F) -> Result<Calls, BoxError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<pb::Instance, BoxError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..in_flight.min(count) {
        let (next, call) = (Arc::clone(&next), call.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<_, BoxError>(done);
                }
                let sent = Instant::now();
                let instance = call(index).await?;
                done.push((index, instance, sent.elapsed()));
            }
        });
    }
    let mut done = Vec::with_capacity(count);
    while let Some(worker) = workers.join_next().await {
        done.extend(worker??);
    }
    let wall = start.elapsed();
    done.sort_unstable_by_key(|(index, _, _)| *index);
    let mut latencies: Vec<Duration> = done.iter().map(|(_, _, latency)| *latency).collect();
    latencies.sort_unstable();
    Ok(Calls {
        instances: done.into_iter().map(|(_, instance, _)| instance).collect(),
        latencies,
        wall,
        in_flight,
    })
}
