//! A revisioned event bus, shared by the instance status board and the
//! sync board: every event gets the next revision, is kept in a bounded
//! history and broadcast. A subscriber resumes from a revision without a
//! gap while the history still holds everything after it, and is told to
//! start from a snapshot otherwise. The owner keeps the bus behind its own
//! lock, together with the state its snapshots show.
//!
//! Revisions continue from the wall clock (nanoseconds since the epoch)
//! rather than from 1, so that a later daemon's revisions are above an
//! earlier one's: a client resuming with a revision of a daemon that has
//! since restarted gets a RESYNC snapshot, never events of another run
//! mistaken for the ones it missed.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::broadcast::{self, Receiver, error::RecvError, error::TryRecvError};

/// An event that knows its revision.
pub trait Revisioned {
    fn revision(&self) -> u64;
}

/// A snapshot of a bus owner's state: the revision it reflects.
pub trait Snapshot {
    /// The revision of the last event it includes.
    fn revision(&self) -> u64;
}

/// How a subscription starts.
#[derive(Debug)]
pub enum Start<E, S> {
    /// With a snapshot of the owner's state.
    Snapshot(S),
    /// With the events after the asked-for revision.
    Replay(Vec<Arc<E>>),
}

/// A live subscription: its start, then everything from `events`.
pub struct Subscription<E, S> {
    /// What to send first.
    pub start: Start<E, S>,
    /// Events after the start; may repeat revisions already covered.
    pub events: Receiver<Arc<E>>,
}

pub struct Bus<E> {
    revision: u64,
    history: VecDeque<Arc<E>>,
    capacity: usize,
    sender: broadcast::Sender<Arc<E>>,
}

impl<E: Revisioned> Bus<E> {
    /// A bus keeping `capacity` events (also the broadcast buffer), whose
    /// revisions continue from the wall clock.
    pub fn new(capacity: usize) -> Self {
        Self::after(capacity, clock())
    }

    /// A bus keeping `capacity` events whose first event has revision
    /// `revision + 1`.
    pub fn after(capacity: usize, revision: u64) -> Self {
        Self {
            revision,
            history: VecDeque::with_capacity(capacity),
            capacity,
            sender: broadcast::channel(capacity).0,
        }
    }

    /// The revision of the last event.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Publishes the event `make` builds for the next revision.
    pub fn publish(&mut self, make: impl FnOnce(u64) -> E) -> Arc<E> {
        self.revision += 1;
        let event = Arc::new(make(self.revision));
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(event.clone());
        event
    }

    /// Subscribes; `since` resumes after that revision when the history
    /// still holds every event after it, else the subscription starts with
    /// `snapshot(resync)`, the owner's state at this revision (`resync`
    /// when events the subscriber asked for are no longer held). The owner
    /// calls this under the lock that also guards that state.
    pub fn subscribe<S>(
        &self,
        since: Option<u64>,
        snapshot: impl FnOnce(bool) -> S,
    ) -> Subscription<E, S> {
        let events = self.sender.subscribe();
        let oldest = self
            .history
            .front()
            .map_or(self.revision + 1, |event| event.revision());
        let start = match since {
            Some(since) if since <= self.revision && since + 1 >= oldest => Start::Replay(
                self.history
                    .iter()
                    .filter(|event| event.revision() > since)
                    .cloned()
                    .collect(),
            ),
            _ => Start::Snapshot(snapshot(since.is_some())),
        };
        Subscription { start, events }
    }
}

/// Nanoseconds since the epoch: a restart takes far longer than the
/// revisions a daemon can use up in the meantime.
fn clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Live events for one subscriber.
pub struct Batch<E> {
    /// Events after the last one delivered, in order.
    pub events: Vec<Arc<E>>,
    /// The subscriber fell behind and events were lost: send a snapshot.
    pub lagged: bool,
}

/// Waits for the next events after revision `last` (at most `max`) and
/// advances `last`; None once the bus is gone.
pub async fn next_batch<E: Revisioned>(
    events: &mut Receiver<Arc<E>>,
    last: &mut u64,
    max: usize,
) -> Option<Batch<E>> {
    let mut batch = Batch {
        events: Vec::new(),
        lagged: false,
    };
    match events.recv().await {
        Ok(event) => batch.events.push(event),
        Err(RecvError::Lagged(_)) => batch.lagged = true,
        Err(RecvError::Closed) => return None,
    }
    while !batch.lagged && batch.events.len() < max {
        match events.try_recv() {
            Ok(event) => batch.events.push(event),
            Err(TryRecvError::Lagged(_)) => batch.lagged = true,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    // Events up to `last` were delivered already (by the replay).
    batch.events.retain(|event| event.revision() > *last);
    if let Some(event) = batch.events.last() {
        *last = event.revision();
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbered(u64);

    impl Revisioned for Numbered {
        fn revision(&self) -> u64 {
            self.0
        }
    }

    /// How a subscription from `since` starts: the replayed revisions, or
    /// whether the snapshot is a resync.
    fn start(bus: &Bus<Numbered>, since: Option<u64>) -> Result<Vec<u64>, bool> {
        match bus.subscribe(since, |resync| resync).start {
            Start::Replay(events) => Ok(events.iter().map(|e| e.0).collect()),
            Start::Snapshot(resync) => Err(resync),
        }
    }

    #[test]
    fn subscribers_resume_without_a_gap_or_are_told_to_resync() {
        let mut bus = Bus::after(4, 0);
        for _ in 0..6 {
            bus.publish(Numbered);
        }
        assert_eq!(start(&bus, Some(2)), Ok(vec![3, 4, 5, 6]));
        assert_eq!(start(&bus, Some(1)), Err(true));
        assert_eq!(start(&bus, None), Err(false));
        assert_eq!(start(&bus, Some(6)), Ok(vec![]));
    }

    #[test]
    fn a_new_bus_continues_from_the_clock_and_resyncs_older_revisions() {
        let before = clock();
        assert!(Bus::<Numbered>::new(4).revision() >= before);
        // A revision of an earlier run is below everything a later bus
        // holds: the subscriber is told to resync.
        let mut later = Bus::after(4, 1_000);
        later.publish(Numbered);
        assert_eq!(start(&later, Some(10)), Err(true));
    }

    #[tokio::test]
    async fn batches_skip_what_was_replayed_and_report_lag() {
        let mut bus = Bus::after(2, 0);
        let mut events = bus.subscribe(None, |_| ()).events;
        bus.publish(Numbered);
        bus.publish(Numbered);
        let mut last = 1;
        let batch = next_batch(&mut events, &mut last, 10).await.unwrap();
        assert_eq!(batch.events.iter().map(|e| e.0).collect::<Vec<_>>(), [2]);
        assert_eq!(last, 2);
        for _ in 0..3 {
            bus.publish(Numbered);
        }
        assert!(next_batch(&mut events, &mut last, 10).await.unwrap().lagged);
    }
}
