//! What is failing now: every path, rescan and export whose last attempt
//! failed, and the watcher if it could not start — a file that cannot be read or written, a directory that
//! cannot be listed, a database write — with when its streak of failures
//! began and how many attempts it has had. Nothing that fails is dropped:
//! the engine's task (which owns this) tries each again with back-off
//! until it succeeds, and a status report shows how many fail and the
//! latest failure. Pure (time is passed in), so that its rules are tested
//! here.

use std::{collections::HashMap, path::PathBuf, time::SystemTime};

use crate::sync::{Key, Kind};

/// What an attempt was at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Reconciling what a path stands for.
    Path(PathBuf),
    /// A rescan of the whole root.
    Rescan,
    /// Exporting a collection.
    Export(Kind, String),
    /// Watching the root (the watcher failed to start).
    Watcher,
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub message: String,
    /// The file or directory concerned, when there is one.
    pub path: Option<PathBuf>,
    /// The content concerned, when there is one.
    pub key: Option<Key>,
}

impl Fault {
    /// A fault saying `message`, about nothing in particular.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            path: None,
            key: None,
        }
    }
}

/// A streak of failed attempts at one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What keeps failing.
    pub subject: Subject,
    /// Why, the last time.
    pub fault: Fault,
    /// When the first attempt of the streak failed.
    pub since: SystemTime,
    /// When the last one did.
    pub last: SystemTime,
    /// Failed attempts in a row.
    pub attempts: u32,
}

/// What a status report shows of the failures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failing {
    /// Subjects failing now.
    pub count: u32,
    /// The one that started failing last, with its last error: it stays
    /// the one shown while every failing subject keeps being retried.
    pub latest: Option<Failure>,
}

/// Every subject failing now.
#[derive(Debug, Default)]
pub struct Failures {
    /// Each failing subject's streak, and its place in the order the
    /// streaks started.
    streaks: HashMap<Subject, (Failure, u64)>,
    /// Streaks started so far.
    started: u64,
    /// The subject whose streak started last.
    latest: Option<Subject>,
}

impl Failures {
    /// Records that an attempt at `subject` failed at `now`; returns its
    /// streak (`attempts` is 1 when it starts failing now).
    pub fn failed(&mut self, subject: Subject, fault: Fault, now: SystemTime) -> &Failure {
        let (failure, _) = self.streaks.entry(subject.clone()).or_insert_with(|| {
            // A new streak: the latest one from now on.
            self.started += 1;
            self.latest = Some(subject.clone());
            let failure = Failure {
                subject,
                fault: fault.clone(),
                since: now,
                last: now,
                attempts: 0,
            };
            (failure, self.started)
        });
        failure.fault = fault;
        failure.last = now;
        failure.attempts = failure.attempts.saturating_add(1);
        failure
    }

    /// Records that an attempt at `subject` succeeded (or is no longer
    /// needed); returns the streak of failures it ends, if it was failing.
    pub fn succeeded(&mut self, subject: &Subject) -> Option<Failure> {
        let (failure, _) = self.streaks.remove(subject)?;
        if self.latest.as_ref() == Some(subject) {
            self.latest = self
                .streaks
                .iter()
                .max_by_key(|(_, (_, order))| *order)
                .map(|(subject, _)| subject.clone());
        }
        Some(failure)
    }

    /// Failed attempts in a row at `subject` (0: it is not failing).
    pub fn attempts(&self, subject: &Subject) -> u32 {
        self.streaks
            .get(subject)
            .map_or(0, |(failure, _)| failure.attempts)
    }

    /// The paths failing now.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.streaks.keys().filter_map(|subject| match subject {
            Subject::Path(path) => Some(path),
            _ => None,
        })
    }

    /// How many subjects fail, and the latest failure.
    pub fn failing(&self) -> Failing {
        Failing {
            count: u32::try_from(self.streaks.len()).unwrap_or(u32::MAX),
            latest: self
                .latest
                .as_ref()
                .and_then(|subject| self.streaks.get(subject))
                .map(|(failure, _)| failure.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn path(name: &str) -> Subject {
        Subject::Path(PathBuf::from(name))
    }

    #[test]
    fn a_streak_keeps_its_start_and_counts_its_attempts() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut failures = Failures::default();
        assert_eq!(failures.failing(), Failing::default());
        let first = failures.failed(path("a"), Fault::new("disk full"), start);
        assert_eq!((first.attempts, first.since), (1, start));
        let later = start + Duration::from_secs(5);
        let again = failures.failed(path("a"), Fault::new("still full"), later);
        assert_eq!((again.attempts, again.since, again.last), (2, start, later));
        assert_eq!(again.fault.message, "still full");
        assert_eq!(failures.attempts(&path("a")), 2);

        let ended = failures.succeeded(&path("a")).unwrap();
        assert_eq!(ended.attempts, 2);
        assert_eq!(failures.failing(), Failing::default());
        assert_eq!(failures.succeeded(&path("a")), None, "ended once");
        // A new streak starts afresh.
        let anew = failures.failed(path("a"), Fault::new("full again"), later);
        assert_eq!((anew.attempts, anew.since), (1, later));
    }

    #[test]
    fn the_latest_failure_is_the_last_streak_started() {
        let now = SystemTime::UNIX_EPOCH;
        let mut failures = Failures::default();
        failures.failed(path("a"), Fault::new("a"), now);
        failures.failed(Subject::Rescan, Fault::new("rescan"), now);
        failures.failed(
            Subject::Export(Kind::Template, "Default".to_owned()),
            Fault::new("export"),
            now,
        );
        // Another attempt of an older streak does not change which.
        failures.failed(path("a"), Fault::new("a again"), now);
        let failing = failures.failing();
        assert_eq!(failing.count, 3);
        assert_eq!(failing.latest.unwrap().fault.message, "export");
        // The latest recovers: the one started before it is the latest now.
        let export = Subject::Export(Kind::Template, "Default".to_owned());
        failures.succeeded(&export);
        let failing = failures.failing();
        assert_eq!(failing.count, 2);
        assert_eq!(failing.latest.unwrap().fault.message, "rescan");
        assert_eq!(failures.paths().collect::<Vec<_>>(), [&PathBuf::from("a")]);
        failures.succeeded(&Subject::Rescan);
        assert_eq!(failures.failing().latest.unwrap().fault.message, "a again");
    }
}
