//! Tracks calls in progress, so that shutdown waits for those (up to a
//! limit) instead of for every client to close its idle connection — a
//! client that never answers HTTP/2's GOAWAY must not hold the daemon.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio_util::task::TaskTracker;
use tower::{Layer, Service};

/// The calls in progress; a tower layer that tracks them.
#[derive(Clone, Default)]
pub(crate) struct InFlight(TaskTracker);

impl InFlight {
    /// Completes once no call is in progress.
    pub(crate) async fn idle(&self) {
        self.0.close();
        self.0.wait().await;
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

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        Box::pin(self.in_flight.0.track_future(self.inner.call(request)))
    }
}
