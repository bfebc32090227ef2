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
//! - A failing look backs off ([`backoff`]): the settle period, twice
//!   that, … up to a minute; so does a failed rescan or export, which waits
//!   here for its next attempt too. Something that works again after
//!   failing brings every other failing attempt forward ([`Queue::hurry`]):
//!   the cause (a full disk, a database away) is often shared.
//! - While paused, events only accumulate; past [`MAX_PENDING`] paths they
//!   are replaced by one rescan.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use super::Settings;
use crate::sync::Kind;

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

/// How long to wait after the `failures`-th failure in a row before
/// trying again: the settle period, doubling with each failure, at most a
/// minute.
pub fn backoff(settings: &Settings, failures: u32) -> Duration {
    settings
        .settle
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(MAX_BACKOFF)
}

/// The paths waiting, whether a rescan is wanted, and the failed rescan
/// and exports waiting for their next attempt.
#[derive(Debug, Default)]
pub struct Queue {
    paths: HashMap<PathBuf, Pending>,
    rescan: bool,
    /// When a failed rescan is tried again.
    rescan_at: Option<Instant>,
    /// When each failed export is tried again.
    exports: BTreeMap<(Kind, String), Instant>,
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

    /// Tries a failed rescan again at `at`.
    pub fn rescan_later(&mut self, at: Instant) {
        self.rescan_at = Some(at);
    }

    /// Whether a rescan was asked for or is due again at `now` (and
    /// forgets both: the rescan about to run supersedes them).
    pub fn take_rescan(&mut self, now: Instant) -> bool {
        let due = self.rescan_at.is_some_and(|at| at <= now);
        if std::mem::take(&mut self.rescan) || due {
            self.rescan_at = None;
            return true;
        }
        false
    }

    /// Tries a failed export of `collection` again at `at`.
    pub fn export_later(&mut self, kind: Kind, collection: String, at: Instant) {
        self.exports.insert((kind, collection), at);
    }

    /// Forgets a failed export waiting to be tried again (an export of
    /// the same collection is about to run, or has just succeeded).
    pub fn forget_export(&mut self, kind: Kind, collection: &str) {
        self.exports.remove(&(kind, collection.to_owned()));
    }

    /// A failed export due again at `now`, if any (forgotten here).
    pub fn take_export(&mut self, now: Instant) -> Option<(Kind, String)> {
        let due = self
            .exports
            .iter()
            .find(|(_, at)| **at <= now)
            .map(|(export, _)| export.clone())?;
        self.exports.remove(&due);
        Some(due)
    }

    /// Brings the attempts at `paths`, the failed rescan and the failed
    /// exports forward to `now` (something failing works again: so may
    /// these). A path's looks keep their count.
    pub fn hurry<'a>(&mut self, paths: impl IntoIterator<Item = &'a PathBuf>, now: Instant) {
        for path in paths {
            if let Some(pending) = self.paths.get_mut(path) {
                pending.due = pending.due.min(now);
            }
        }
        if let Some(at) = &mut self.rescan_at {
            *at = (*at).min(now);
        }
        for at in self.exports.values_mut() {
            *at = (*at).min(now);
        }
    }

    /// Whether `path` is waiting to be looked at.
    pub fn contains(&self, path: &std::path::Path) -> bool {
        self.paths.contains_key(path)
    }

    /// Paths waiting.
    pub fn waiting(&self) -> usize {
        self.paths.len()
    }

    /// When there is next something to do: at once for a rescan, else when
    /// the earliest path, failed rescan or failed export is due.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.rescan {
            return Some(now);
        }
        self.paths
            .values()
            .map(|pending| pending.due)
            .chain(self.rescan_at)
            .chain(self.exports.values().copied())
            .min()
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
    use std::path::Path;

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
        let delays: Vec<u64> = (1..=10)
            .map(|failures| backoff(&SETTINGS, failures).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(backoff(&SETTINGS, u32::MAX), MAX_BACKOFF);
        // A failing path waits for its back-off; its looks keep their
        // count (a failure is no look at settled content).
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.retry(path("a"), backoff(&SETTINGS, 3), 1, start);
        assert!(taken(&mut queue, start + ms(3999)).is_empty());
        assert_eq!(taken(&mut queue, start + ms(4000)), [("a".to_owned(), 1)]);
    }

    #[test]
    fn failed_rescans_and_exports_wait_for_their_back_off() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.rescan_later(start + ms(600));
        queue.export_later(Kind::Template, "Default".to_owned(), start + ms(300));
        assert_eq!(queue.next_due(start), Some(start + ms(300)));
        assert!(!queue.take_rescan(start + ms(599)));
        assert_eq!(queue.take_export(start + ms(299)), None);
        assert_eq!(
            queue.take_export(start + ms(300)),
            Some((Kind::Template, "Default".to_owned()))
        );
        assert_eq!(queue.take_export(start + ms(300)), None);
        assert!(queue.take_rescan(start + ms(600)));
        assert_eq!(queue.next_due(start), None);
        // A rescan asked for meanwhile supersedes the failed one.
        queue.rescan_later(start + ms(600));
        queue.request_rescan();
        assert!(queue.take_rescan(start));
        assert!(!queue.take_rescan(start + ms(600)));
        // An export asked for again supersedes its retry.
        queue.export_later(Kind::Stylesheet, "Default".to_owned(), start);
        queue.forget_export(Kind::Stylesheet, "Default");
        assert_eq!(queue.take_export(start), None);
    }

    #[test]
    fn something_working_again_brings_the_failing_forward() {
        let start = Instant::now();
        let mut queue = Queue::default();
        queue.retry(path("a"), ms(8000), 0, start);
        queue.retry(path("b"), ms(8000), 2, start);
        queue.retry(path("c"), ms(8000), 0, start);
        queue.rescan_later(start + ms(16_000));
        queue.export_later(Kind::Template, "Default".to_owned(), start + ms(4000));
        let later = start + ms(1000);
        queue.hurry([&path("a"), &path("b"), &path("gone")], later);
        let mut hurried = taken(&mut queue, later);
        hurried.sort();
        assert_eq!(hurried, [("a".to_owned(), 0), ("b".to_owned(), 2)]);
        assert!(queue.contains(Path::new("c")), "only the failing ones");
        assert!(!queue.contains(Path::new("gone")), "nothing new is queued");
        assert!(queue.take_rescan(later));
        assert!(queue.take_export(later).is_some());
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
        assert!(queue.take_rescan(start));
        assert!(!queue.take_rescan(start));
        assert_eq!(queue.next_due(start), None);
    }
}
