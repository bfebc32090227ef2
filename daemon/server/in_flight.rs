//! Counts calls in progress, so that shutdown waits for those (up to a
//! limit) instead of for every client to close its idle connection — a
//! client that never answers HTTP/2's GOAWAY must not hold the daemon.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use tokio::sync::Notify;
use tower::{Layer, Service};

#[derive(Default)]
struct Counter {
    calls: AtomicUsize,
    idle: Notify,
}

/// The number of calls in progress; a tower layer that maintains it.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Counter>);

/// Marks one call in progress until dropped.
struct Guard(Arc<Counter>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Completes once no call is in progress.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.0.calls.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<S> Layer<S> for InFlight {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            in_flight: self.clone(),
        }
    }
}

/// A service whose calls are counted while they run.
#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S, R> Service<R> for Counted<S>
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
        let counter = self.in_flight.0.clone();
        counter.calls.fetch_add(1, Ordering::AcqRel);
        let guard = Guard(counter);
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(guard);
            response
        })
    }
}
