//! What jobs share — the content store, the ledger, the root, the board —
//! and how a job is run: one kind of work each, reported back to the
//! engine's task when done. The work itself is in [`apply`](super::apply)
//! (one entity), [`rescan`](super::rescan), [`export`](super::export) and
//! [`resolve`](super::resolve); file writes and bases, which they share,
//! are here.

use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{oneshot, watch};

use super::{
    Hint, RescanSummary, Resolved, Settings,
    export::{self, ExportSummary},
    failures::{Fault, Subject},
    queue::{Pending, Signal},
};
use crate::history::{self, Change, History, Origin, Source};
use crate::sync::{
    ContentError, ContentStore, Item, Key, Kind,
    atomic::Batch,
    events::{EventKind, Notice, SyncBoard},
    file::{self, Stat},
    layout::{self, Layout, Target},
    ledger::Ledger,
    reconcile::Base,
};

/// How a job answers whoever asked for it.
pub(super) type Reply<T> = oneshot::Sender<Result<T, ContentError>>;

/// A job: work that needs the root to itself.
pub(super) enum Work {
    /// Look at these due paths.
    Reconcile(Vec<(PathBuf, Pending)>),
    /// Look at everything; answer `reply` if a user asked.
    Rescan(Option<Reply<RescanSummary>>),
    /// Export a collection; answer `reply` if a user asked (else it is
    /// the retry of one that failed).
    Export {
        kind: Kind,
        collection: String,
        reply: Option<Reply<ExportSummary>>,
    },
    Resolve {
        id: String,
        keep_disk: bool,
        reply: Reply<Resolved>,
    },
}

/// What the running job is told.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Hold {
    /// A user paused: reconciling stops before the next path.
    pub paused: bool,
    /// The daemon stops: every job stops before its next entity.
    pub stopping: bool,
}

/// What a path needs after a job looked at it (or did not).
#[derive(Debug)]
pub(super) enum Next {
    /// Look again after `after`, the `tries`-th time.
    Retry { after: Duration, tries: u8 },
    /// The look failed (its fault is among the results): back off; the
    /// looks so far stay `tries`.
    Failed { tries: u8 },
    /// Not looked at (paused or stopping): as it was.
    PutBack(Pending),
}

/// What a job reports when it is done.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// The missing files reported so far, lent to the job.
    pub orphans: HashSet<Key>,
    /// Paths that need another look.
    pub next: Vec<(PathBuf, Next)>,
    /// Paths or rescans the job found necessary.
    pub hints: Vec<Hint>,
    /// What was attempted and whether it worked: a failure is tried again
    /// with back-off, a success ends a streak of failures.
    pub results: Vec<(Subject, Result<(), Fault>)>,
    /// Versions that took effect, and what made each: kept in the history
    /// when the job is done.
    pub history: Vec<(Origin, Change)>,
}

/// What one look at an entity came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    Nothing,
    Imported,
    Exported,
    Conflict,
    Skipped,
}

/// Whether an entity is settled or must be looked at again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Settled(Effect),
    Retry { after: Duration, tries: u8 },
}

/// What every job needs.
pub(super) struct Worker<C, L> {
    pub content: Arc<C>,
    pub ledger: Arc<L>,
    pub layout: Layout,
    pub settings: Settings,
    pub board: Arc<SyncBoard>,
    pub history: History,
}

/// Runs blocking file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("file work does not panic")
}

pub(super) fn storage(err: impl std::fmt::Display) -> ContentError {
    ContentError::Storage(err.to_string())
}

/// A job's result as an attempt: only a storage error (a file, a
/// directory or the database failing) is worth another try. Any other
/// error (no such collection, a link in the way) will not go away by
/// itself; whoever asked heard of it, and it ends a streak of failures.
fn attempt<T>(result: &Result<T, ContentError>, what: &str) -> Result<(), Fault> {
    match result {
        Err(err @ ContentError::Storage(_)) => Err(Fault::new(format!("{what} failed: {err}"))),
        _ => Ok(()),
    }
}

impl<C: ContentStore, L: Ledger> Worker<C, L> {
    /// Does `work` with the missing files reported so far (`orphans`),
    /// stopping early when `hold` says so.
    pub(super) async fn run(
        &self,
        work: Work,
        orphans: HashSet<Key>,
        hold: watch::Receiver<Hold>,
    ) -> Report {
        let mut report = Report {
            orphans,
            ..Report::default()
        };
        // A rescan or an export is one burst: one commit.
        let burst = match &work {
            Work::Rescan(_) => Some(Source::Rescan),
            Work::Export { .. } => Some(Source::Export),
            Work::Reconcile(_) | Work::Resolve { .. } => None,
        };
        match work {
            Work::Reconcile(paths) => self.reconcile_due(paths, &hold, &mut report).await,
            Work::Rescan(reply) => {
                let result = self.rescan(&hold, &mut report).await;
                report
                    .results
                    .push((Subject::Rescan, attempt(&result, "the rescan")));
                match (&result, reply) {
                    (_, Some(reply)) => {
                        let _ = reply.send(result);
                    }
                    (Ok(summary), None) => tracing::info!(?summary, "sync rescan"),
                    (Err(_), None) => {}
                }
            }
            Work::Export {
                kind,
                collection,
                reply,
            } => {
                let result = export::export(
                    &*self.content,
                    &*self.ledger,
                    &self.layout,
                    kind,
                    &collection,
                )
                .await
                .map(|(summary, kept)| {
                    let origin = Origin::daemon(Source::Export);
                    report
                        .history
                        .extend(kept.into_iter().map(|change| (origin.clone(), change)));
                    summary
                });
                self.announce_export(&collection, &result);
                let what = format!("the export of {collection}");
                let mut tried = attempt(&result, &what);
                if let Err(fault) = &mut tried {
                    fault.path = Some(layout::collection_dir(
                        self.layout.root(),
                        kind,
                        &collection,
                    ));
                }
                report
                    .results
                    .push((Subject::Export(kind, collection), tried));
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Work::Resolve {
                id,
                keep_disk,
                reply,
            } => {
                let _ = reply.send(self.resolve(&id, keep_disk, &mut report).await);
            }
        }
        self.keep_history(burst, &mut report);
        report
    }

    /// Sends what took effect to the history: a burst as one batch, else
    /// one batch per source, in the order they came.
    fn keep_history(&self, burst: Option<Source>, report: &mut Report) {
        let changes = std::mem::take(&mut report.history);
        if let Some(source) = burst {
            self.history.record(history::Batch {
                origin: Origin::daemon(source),
                changes: changes.into_iter().map(|(_, change)| change).collect(),
            });
            return;
        }
        for group in changes.chunk_by(|(a, _), (b, _)| a == b) {
            self.history.record(history::Batch {
                origin: group[0].0.clone(),
                changes: group.iter().map(|(_, change)| change.clone()).collect(),
            });
        }
    }

    /// A file save, by the file's owner.
    pub(super) fn saved(path: &Path) -> Origin {
        use std::os::unix::fs::MetadataExt;
        Origin {
            source: Source::FileSave,
            actor: std::fs::metadata(path).map_or_else(
                |_| "file owner unknown".to_owned(),
                |meta| format!("uid {} (file owner)", meta.uid()),
            ),
            note: None,
        }
    }

    /// An edit made in the database itself, which the file now follows.
    pub(super) fn from_database() -> Origin {
        Origin {
            source: Source::Database,
            actor: "database".into(),
            note: None,
        }
    }

    /// `key`'s new content (None: deleted) as the history keeps it.
    pub(super) fn change(&self, key: &Key, content: Option<&str>) -> Change {
        Change {
            path: self.layout.relative(key),
            content: content.map(str::to_owned),
        }
    }

    /// Looks at the due `paths` one after the other.
    async fn reconcile_due(
        &self,
        paths: Vec<(PathBuf, Pending)>,
        hold: &watch::Receiver<Hold>,
        report: &mut Report,
    ) {
        for (path, pending) in paths {
            let held = *hold.borrow();
            if held.paused || held.stopping {
                // The rest waits for the resume.
                report.next.push((path, Next::PutBack(pending)));
                continue;
            }
            let subject = Subject::Path(path.clone());
            match self.look_at(&path, pending.tries, report).await {
                Ok(outcome) => {
                    report.results.push((subject, Ok(())));
                    if let Outcome::Retry { after, tries } = outcome {
                        report.next.push((path, Next::Retry { after, tries }));
                    }
                }
                Err(err) => {
                    report.results.push((subject, Err(self.fault(&path, &err))));
                    report.next.push((
                        path,
                        Next::Failed {
                            tries: pending.tries,
                        },
                    ));
                }
            }
        }
    }

    /// Why reconciling `path` failed.
    pub(super) fn fault(&self, path: &Path, err: &ContentError) -> Fault {
        Fault {
            message: format!("cannot sync {}: {err}", path.display()),
            path: Some(path.to_owned()),
            key: match self.layout.classify(path) {
                Target::Item(key) => Some(key),
                _ => None,
            },
        }
    }

    fn announce_export(&self, collection: &str, result: &Result<ExportSummary, ContentError>) {
        let message = match result {
            Ok(summary) => format!(
                "exported {collection}: {} written, {} unchanged, {} conflicts",
                summary.written, summary.unchanged, summary.conflicts
            ),
            Err(err) => format!("export of {collection} failed: {err}"),
        };
        self.board
            .publish(Notice::new(EventKind::ExportFinished, message));
    }

    /// Publishes that `path` is not synced, and why.
    pub(super) fn reject(&self, path: &Path, reason: &str) {
        self.board.publish(
            Notice::new(
                EventKind::Rejected,
                format!("{} {reason}: not synced", path.display()),
            )
            .path(path),
        );
    }

    /// Records `item`, now also in the file with `stat`, as the base.
    pub(super) async fn agree(
        &self,
        key: &Key,
        item: &Item,
        stat: Stat,
    ) -> Result<(), ContentError> {
        let base = Base {
            sha256: item.sha256.clone(),
            db_version: item.version,
            stat,
        };
        self.ledger.set_bases(&[(key.clone(), base)]).await
    }

    /// Writes `item` to `path` atomically (and `copy` beside it), if the
    /// file still has stat `expected` (None: missing). Returns the new
    /// stat, or None when the file changed first.
    pub(super) async fn write(
        &self,
        path: &Path,
        item: &Item,
        expected: Option<Stat>,
        copy: Option<(PathBuf, String)>,
    ) -> Result<Option<Stat>, ContentError> {
        let (path, content) = (path.to_owned(), item.content.clone());
        let shown = path.display().to_string();
        blocking(move || {
            let mut batch = Batch::default();
            if let Some((copy_path, text)) = &copy {
                batch.stage(copy_path, text.as_bytes())?;
            }
            batch.stage(&path, content.as_bytes())?;
            let left_alone =
                batch.commit_if(|target| target != path || file::stat(&path).ok() == expected)?;
            if !left_alone.is_empty() {
                return Ok(None);
            }
            file::stat(&path).map(Some)
        })
        .await
        .map_err(|err: io::Error| storage(format!("cannot write {shown}: {err}")))
    }

    /// Looks at `path` again soon, without debounce.
    pub(super) fn look_again_now(path: PathBuf, report: &mut Report) {
        report.hints.push(Hint::Path(path, Signal::Now));
    }
}
