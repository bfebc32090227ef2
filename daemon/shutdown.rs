//! How the daemon is asked to stop. A signal (SIGINT, SIGTERM) and the
//! `Shutdown` RPC make the same request on one channel; `main` takes the
//! first, stops the daemon the way it asks, and answers every request that
//! waits with how that went. With a single way to stop, the RPC cannot skip
//! a step that a signal takes, nor the other way round.

use tokio::sync::{mpsc, oneshot};

/// Requests that may wait at once; more callers wait for room, and every
/// one of them is answered.
const QUEUE: usize = 16;

/// What becomes of the instances when the daemon stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtExit {
    /// Left running, for the next daemon to re-adopt.
    KeepInstances,
    /// Stopped, dependents first.
    StopInstances,
}

/// How a stop went, told to whoever asked for it.
#[derive(Clone, Debug)]
pub struct Stopped {
    /// Instances that were active (a process alive or meant to be) when
    /// the stop began.
    pub active_instances: u32,
    /// What became of them.
    pub at_exit: AtExit,
    /// Why the state could not be stored, if it could not.
    pub unsaved: Option<String>,
}

/// One request to stop.
#[derive(Debug)]
pub struct Request {
    /// What becomes of the instances.
    pub at_exit: AtExit,
    answer: Option<oneshot::Sender<Stopped>>,
}

impl Request {
    /// A request nobody waits for the answer to: a signal's, or the
    /// daemon's own when a listener fails.
    pub fn from_daemon(at_exit: AtExit) -> Self {
        Self {
            at_exit,
            answer: None,
        }
    }
}

/// The daemon stopped without answering (it was stopping already, and
/// had answered everyone it knew of).
#[derive(Debug, thiserror::Error)]
#[error("the daemon is already shutting down")]
pub struct AlreadyStopping;

/// Asks the daemon to stop; held by the signal handler and the services.
#[derive(Clone, Debug)]
pub struct Shutdown(mpsc::Sender<Request>);

/// The requests to stop, taken by `main`.
#[derive(Debug)]
pub struct Requests(mpsc::Receiver<Request>);

/// A new channel of requests to stop.
pub fn channel() -> (Shutdown, Requests) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (Shutdown(sender), Requests(receiver))
}

impl Shutdown {
    /// Asks the daemon to stop and waits until it has stored its state.
    pub async fn request(&self, at_exit: AtExit) -> Result<Stopped, AlreadyStopping> {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            at_exit,
            answer: Some(answer),
        };
        self.0.send(request).await.map_err(|_| AlreadyStopping)?;
        answered.await.map_err(|_| AlreadyStopping)
    }

    /// Asks the daemon to stop, without waiting for it (a signal has nobody
    /// to tell).
    pub async fn ask(&self, at_exit: AtExit) {
        // Refused only once the daemon stops anyway.
        let _ = self.0.send(Request::from_daemon(at_exit)).await;
    }
}

impl Requests {
    /// The first request to stop.
    pub async fn first(&mut self) -> Request {
        match self.0.recv().await {
            Some(request) => request,
            // Nobody can ask any more (the services are gone and the signal
            // handlers could not be installed): only SIGKILL stops it.
            None => std::future::pending().await,
        }
    }

    /// Answers `first` and every request that came while the daemon
    /// stopped; later ones are refused ([`AlreadyStopping`]).
    pub fn answer(mut self, first: Request, stopped: &Stopped) {
        self.0.close();
        let mut waiting = vec![first];
        while let Ok(request) = self.0.try_recv() {
            waiting.push(request);
        }
        for answer in waiting.into_iter().filter_map(|request| request.answer) {
            let _ = answer.send(stopped.clone());
        }
    }
}
