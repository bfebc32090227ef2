//! The engine's queue of paths to look at: when each is due, whether a
//! writer still has it open, and how many unsettled looks it has had. Pure
//! (time is passed in), so that every rule is tested here; the engine
//! feeds it file events and outcomes and takes what is due.
//!
//! - A path is due the debounce after its last event (`Now`: at once).
//! - A path whose data is being written (modified, no close-write yet) is
//!   held until close-write, at most the settle period.
//! - A look that must be repeated (an empty file, a vanished one, a read
//!   that raced a writer) comes back after a delay with its count of
//!   looks; a newer event about the path decides when, the count stays.
//! - A failing look backs off: the settle period, twice that, … up to a
//!   minute.
//! - While paused, events only accumulate; past [`MAX_PENDING`] paths they
//!   are replaced by one rescan.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::Settings;

/// Paths kept while paused; past this, a rescan replaces them.
pub const MAX_PENDING: usize = 10_000;
/// Longest back-off of a path whose looks keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What an event says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Something happened to it (created, renamed, removed).
    Changed,
    /// Its data is being written.
    Writing,
    /// A writer closed it.
    Closed,
    /// A directory appeared: what is in it may be new.
    Dir,
    /// Look now, without debounce (a database-side change).
    Now,
    /// Look again after a delay, the `tries`-th time.
    Later {
        /// The delay.
        after: Duration,
        /// Looks so far.
        tries: u8,
    },
}

/// A path waiting to be looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// When it is due.
    pub due: Instant,
    /// Since when a writer has it open (data written, not closed yet).
    pub writing_since: Option<Instant>,
    /// Unsettled looks so far.
    pub tries: u8,
}

/// The paths waiting, and whether a rescan is wanted.
#[derive(Debug, Default)]
pub struct Queue {
    paths: HashMap<PathBuf, Pending>,
    rescan: bool,
}

impl Queue {
    /// Takes in an event about `path` at `now`.
    pub fn signal(&mut self, path: PathBuf, signal: Signal, now: Instant, settings: &Settings) {
        let entry = self.paths.entry(path).or_insert(Pending {
            due: now,
            writing_since: None,
            tries: 0,
        });
        match signal {
            Signal::Now => entry.due = now,
            Signal::Later { after, tries } => {
                entry.due = entry.due.max(now + after);
                entry.tries = tries;
            }
            Signal::Writing => {
                entry.writing_since.get_or_insert(now);
                entry.due = now + settings.debounce;
            }
            Signal::Closed | Signal::Changed | Signal::Dir => {
                entry.writing_since = None;
                entry.due = now + settings.debounce;
            }
        }
    }

    /// Asks for a look at everything.
    pub fn request_rescan(&mut self) {
        self.rescan = true;
    }

    /// Whether a rescan was asked for (and forgets the request).
    pub fn take_rescan(&mut self) -> bool {
        std::mem::take(&mut self.rescan)
    }

    /// Paths waiting.
    pub fn waiting(&self) -> usize {
        self.paths.len()
    }

    /// When there is next something to do: at once for a rescan, else when
    /// the earliest path is due.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.rescan {
            return Some(now);
        }
        self.paths.values().map(|pending| pending.due).min()
    }

    /// Takes the paths due at `now`, earliest first. A path a writer still
    /// has open (for less than the settle period) stays, due again after
    /// the debounce.
    pub fn take_due(&mut self, now: Instant, settings: &Settings) -> Vec<(PathBuf, Pending)> {
        let due: Vec<PathBuf> = self
            .paths
            .iter()
            .filter(|(_, pending)| pending.due <= now)
            .map(|(path, _)| path.clone())
            .collect();
        let mut taken = Vec::with_capacity(due.len());
        for path in due {
            let Some(pending) = self.paths.get_mut(&path) else {
                continue;
            };
            if pending
                .writing_since
                .is_some_and(|since| now.saturating_duration_since(since) < settings.settle)
            {
                pending.due = now + settings.debounce;
                continue;
            }
            if let Some(pending) = self.paths.remove(&path) {
                taken.push((path, pending));
            }
        }
        taken.sort_by_key(|(_, pending)| pending.due);
        taken
    }

    /// Puts back a path that was taken but not looked at; an event that
    /// came meanwhile wins.
    pub fn put_back(&mut self, path: PathBuf, pending: Pending) {
        self.paths.entry(path).or_insert(pending);
    }

    /// Looks at `path` again after `after` (the `tries`-th look); an event
    /// that came meanwhile decides when, the count stays.
    pub fn retry(&mut self, path: PathBuf, after: Duration, tries: u8, now: Instant) {
        self.reschedule(path, now + after, tries);
    }

    /// A look at `path` failed after `tries` failures in a row: it is
    /// looked at again after a back-off that doubles with each failure.
    pub fn failed(&mut self, path: PathBuf, tries: u8, now: Instant, settings: &Settings) {
        let after = settings
            .settle
            .saturating_mul(1 << tries.min(6))
            .min(MAX_BACKOFF);
        self.reschedule(path, now + after, tries.saturating_add(1));
    }

    fn reschedule(&mut self, path: PathBuf, due: Instant, tries: u8) {
        self.paths
            .entry(path)
            .and_modify(|pending| pending.tries = tries)
            .or_insert(Pending {
                due,
                writing_since: None,
                tries,
            });
    }

    /// While paused, more than [`MAX_PENDING`] paths are replaced by one
    /// rescan; returns whether they were.
    pub fn bound(&mut self) -> bool {
        if self.paths.len() <= MAX_PENDING {
            return false;
        }
        self.paths.clear();
        self.rescan = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings {
        debounce: Duration::from_millis(100),
        settle: Duration::from_secs(1),
    };

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn path(name: &str) -> PathBuf {
        PathBuf::from(name)
    }

    fn taken(queue: &mut Queue, now: Instant) -> Vec<(String, u8)> {
        queue
            .take_due(now, &SETTINGS)
            .into_iter()
            .map(|(path, pending)| (path.display().to_string(), pending.tries))
            .collect()
    }

    #[test]
    fn a_path_is_due_the_debounce_after_its_last_event() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.signal(path("a"), Signal::Changed, start, &SETTINGS);
        queue.signal(path("a"), Signal::Changed, start + ms(80), &SETTINGS);
        assert_eq!(queue.next_due(start), Some(start + ms(180)));
        assert!(taken(&mut queue, start + ms(179)).is_empty());
        assert_eq!(taken(&mut queue, start + ms(180)), [("a".to_owned(), 0)]);
        assert_eq!(queue.waiting(), 0);
    }

    #[test]
    fn a_database_change_is_due_at_once() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.signal(path("a"), Signal::Changed, start, &SETTINGS);
        queue.signal(path("a"), Signal::Now, start + ms(10), &SETTINGS);
        assert_eq!(taken(&mut queue, start + ms(10)), [("a".to_owned(), 0)]);
    }

    #[test]
    fn a_file_being_written_waits_for_close_write_at_most_the_settle_period() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.signal(path("a"), Signal::Writing, start, &SETTINGS);
        // Due after the debounce, but still open: held, due again later.
        assert!(taken(&mut queue, start + ms(100)).is_empty());
        assert_eq!(queue.next_due(start + ms(100)), Some(start + ms(200)));
        // Closed: the debounce after the close.
        queue.signal(path("a"), Signal::Closed, start + ms(150), &SETTINGS);
        assert_eq!(taken(&mut queue, start + ms(250)), [("a".to_owned(), 0)]);

        // Never closed: looked at once the settle period is over.
        queue.signal(path("b"), Signal::Writing, start, &SETTINGS);
        for step in 1..10 {
            assert!(taken(&mut queue, start + ms(100 * step)).is_empty());
        }
        assert_eq!(taken(&mut queue, start + ms(1000)), [("b".to_owned(), 0)]);
    }

    #[test]
    fn repeated_looks_keep_their_count_and_a_new_event_decides_when() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.retry(path("a"), SETTINGS.settle, 1, start);
        assert_eq!(queue.next_due(start), Some(start + SETTINGS.settle));
        // The editor writes again: looked at after the debounce, still the
        // second look.
        queue.signal(path("a"), Signal::Changed, start + ms(10), &SETTINGS);
        assert_eq!(taken(&mut queue, start + ms(110)), [("a".to_owned(), 1)]);
        // An event that came while the look ran wins over the retry's time.
        queue.signal(path("b"), Signal::Changed, start, &SETTINGS);
        queue.retry(path("b"), ms(5000), 2, start);
        assert_eq!(taken(&mut queue, start + ms(100)), [("b".to_owned(), 2)]);
    }

    #[test]
    fn later_never_moves_a_look_earlier() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.signal(path("a"), Signal::Changed, start, &SETTINGS);
        let later = Signal::Later {
            after: ms(1000),
            tries: 0,
        };
        queue.signal(path("a"), later, start, &SETTINGS);
        assert_eq!(queue.next_due(start), Some(start + ms(1000)));
    }

    #[test]
    fn failing_looks_back_off_up_to_a_minute() {
        let start = Instant::now();
        let mut queue = Queue::default();
        let mut delays = Vec::new();
        let mut tries = 0;
        for _ in 0..9 {
            queue.failed(path("a"), tries, start, &SETTINGS);
            let due = queue.next_due(start).unwrap();
            delays.push((due - start).as_secs());
            let (_, pending) = queue.take_due(due, &SETTINGS).pop().unwrap();
            tries = pending.tries;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(tries, 9);
    }

    #[test]
    fn what_was_not_looked_at_is_put_back_unless_newer_news_came() {
        let start = Instant::now();
        let mut queue = Queue::default();
        let old = Pending {
            due: start,
            writing_since: None,
            tries: 1,
        };
        queue.put_back(path("a"), old);
        assert_eq!(taken(&mut queue, start), [("a".to_owned(), 1)]);
        queue.signal(path("b"), Signal::Changed, start, &SETTINGS);
        queue.put_back(path("b"), old);
        assert_eq!(queue.next_due(start), Some(start + ms(100)));
    }

    #[test]
    fn a_rescan_is_due_at_once_and_replaces_too_many_paths() {
        let start = Instant::now();
        let mut queue = Queue::default();
        for n in 0..=MAX_PENDING {
            queue.signal(path(&n.to_string()), Signal::Changed, start, &SETTINGS);
        }
        assert!(queue.bound());
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.next_due(start), Some(start));
        assert!(queue.take_rescan());
        assert!(!queue.take_rescan());
        assert_eq!(queue.next_due(start), None);
    }
}
