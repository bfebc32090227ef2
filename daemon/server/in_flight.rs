//! Tracks calls in progress, so that shutdown waits for those (up to a
//! limit) instead of for every client to close its idle connection — a
//! client that never answers HTTP/2's GOAWAY must not hold the daemon.
//! `Shutdown` calls are tracked apart: they wait for the shutdown, so the
//! shutdown cannot wait for them before it stops the daemon, only after.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio_util::task::TaskTracker;
use tonic::codegen::http::Request;
use tower::{Layer, Service};

/// The path of the `Shutdown` RPC.
const SHUTDOWN: &str = "/outpost.v1.Orchestrator/Shutdown";

/// The calls in progress; a tower layer that tracks them.
#[derive(Clone, Default)]
pub(crate) struct InFlight {
    calls: TaskTracker,
    shutdowns: TaskTracker,
}

impl InFlight {
    /// Completes once no call is in progress but `Shutdown` calls.
    pub(crate) async fn idle(&self) {
        self.calls.close();
        self.calls.wait().await;
    }

    /// Completes once every `Shutdown` call has its answer.
    pub(crate) async fn answered(&self) {
        self.shutdowns.close();
        self.shutdowns.wait().await;
    }
}

impl<S> Layer<S> for InFlight {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracked {
            inner,
            in_flight: self.clone(),
        }
    }
}

/// A service whose calls are tracked while they run.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S, B> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let tracker = if request.uri().path() == SHUTDOWN {
            &self.in_flight.shutdowns
        } else {
            &self.in_flight.calls
        };
        Box::pin(tracker.track_future(self.inner.call(request)))
    }
}
