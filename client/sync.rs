//! `outpostctl sync …`: the watcher and reconciler, conflicts, export.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, content_key::Key, watch_sync_events_response::Payload},
};

use crate::{
    failure::Failure,
    output::{self, done},
};

/// `outpostctl sync …`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Show the watcher's state and what the reconciler did
    Status,
    /// Follow sync events, one line each
    Events {
        /// Resume after this revision
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// List unresolved conflicts
    Conflicts,
    /// Resolve a conflict by keeping one side
    Resolve {
        /// The conflict's id (see `sync conflicts`)
        id: String,
        /// Which side wins
        #[arg(long, value_enum)]
        keep: Side,
    },
    /// Pause the watcher; changes are kept and processed on resume
    Pause,
    /// Resume the watcher
    Resume,
    /// Look at every file and synced item now
    Rescan,
    /// Write a template set or theme to the sync root, atomically; files changed on disk are left alone
    Export {
        #[command(subcommand)]
        what: ExportTarget,
    },
}

/// The side of a conflict that wins.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Side {
    /// The disk version (the conflict copy) goes to the database
    Disk,
    /// The database version stays; the conflict copy is removed
    Database,
}

/// What `sync export` writes.
#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// The templates of a template set
    Templates {
        /// The template set
        set: String,
    },
    /// The stylesheets of a theme
    Stylesheets {
        /// The theme
        theme: String,
    },
}

pub async fn run(
    connection: &Connection,
    json: bool,
    command: SyncCommand,
) -> Result<ExitCode, Failure> {
    let mut client = connection.sync();
    match command {
        SyncCommand::Status => {
            let status = client
                .get_sync_status(pb::GetSyncStatusRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&status));
            }
            print_status(&status)
        }
        SyncCommand::Events { since } => {
            let stream = client
                .watch_sync_events(pb::WatchSyncEventsRequest {
                    since_revision: since,
                    kinds: Vec::new(),
                })
                .await?
                .into_inner();
            output::stream(json, stream, print_event).await
        }
        SyncCommand::Conflicts => {
            let response = client
                .list_conflicts(pb::ListConflictsRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            let mut table =
                vec![["ID", "CONTENT", "DB VERSION", "DISK VERSION IN"].map(str::to_owned)];
            table.extend(response.conflicts.into_iter().map(|conflict| {
                [
                    conflict.id,
                    key_name(conflict.key.as_ref()),
                    conflict.database_version.to_string(),
                    conflict.conflict_copy_path,
                ]
            }));
            done(output::table(&table))
        }
        SyncCommand::Resolve { id, keep } => {
            let resolution = match keep {
                Side::Disk => pb::Resolution::KeepDisk,
                Side::Database => pb::Resolution::KeepDatabase,
            };
            let response = client
                .resolve_conflict(pb::ResolveConflictRequest {
                    conflict_id: id.clone(),
                    resolution: resolution as i32,
                })
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            output::outln!(
                "resolved {id}: {} is at version {}",
                key_name(response.key.as_ref()),
                response.version
            );
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Pause => {
            let response = client
                .pause_watcher(pb::PauseWatcherRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            output::outln!(
                "{}",
                if response.was_paused {
                    "already paused"
                } else {
                    "paused: changes are kept until resume"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Resume => {
            let response = client
                .resume_watcher(pb::ResumeWatcherRequest {})
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            output::outln!(
                "{} ({} changes queued)",
                state_name(response.state),
                response.queued_changes
            );
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Rescan => {
            let response = client.rescan(pb::RescanRequest {}).await?.into_inner();
            if json {
                return done(output::json(&response));
            }
            output::outln!(
                "{} scanned: {} imported, {} exported, {} conflicts, {} skipped in {}",
                response.scanned,
                response.imported,
                response.exported,
                response.conflicts,
                response.skipped,
                output::millis(response.elapsed.as_ref())
            );
            Ok(ExitCode::SUCCESS)
        }
        SyncCommand::Export { what } => export(&mut client, json, what).await,
    }
}

async fn export(
    client: &mut pb::sync_client::SyncClient<outpost::endpoint::AuthChannel>,
    json: bool,
    what: ExportTarget,
) -> Result<ExitCode, Failure> {
    let summary = match what {
        ExportTarget::Templates { set } => {
            let response = client
                .export_templates(pb::ExportTemplatesRequest { set })
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            response.summary
        }
        ExportTarget::Stylesheets { theme } => {
            let response = client
                .export_stylesheets(pb::ExportStylesheetsRequest { theme })
                .await?
                .into_inner();
            if json {
                return done(output::json(&response));
            }
            response.summary
        }
    }
    .unwrap_or_default();
    output::outln!(
        "{} written, {} unchanged, {} conflicts (changed on disk, left alone) in {}",
        summary.written,
        summary.unchanged,
        summary.conflicts,
        output::millis(summary.elapsed.as_ref())
    );
    if summary.skipped > 0 {
        output::outln!(
            "{} left out: their names cannot be file names (see the daemon's log)",
            summary.skipped
        );
    }
    Ok(if summary.conflicts > 0 || summary.skipped > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_status(status: &pb::GetSyncStatusResponse) -> Result<ExitCode, Failure> {
    let counters = status.counters.unwrap_or_default();
    let last_rescan = status.last_rescan_at.as_ref().map_or_else(
        || "never".to_owned(),
        |at| format!("{}s ago", output::seconds_since(at.seconds)),
    );
    let mut rows = vec![
        ("state", state_name(status.state)),
        ("root", status.root.clone()),
        ("paused by user", status.paused_by_user.to_string()),
        ("exports running", status.active_exports.to_string()),
        ("waiting", status.dirty_count.to_string()),
        ("last rescan", last_rescan),
        ("synced", counters.synced.to_string()),
        ("skipped (empty)", counters.skipped_empty.to_string()),
        ("rejected", counters.rejected.to_string()),
        (
            "conflicts",
            format!("{} ({} open)", counters.conflicts, status.open_conflicts),
        ),
        ("last error", status.last_error.clone()),
        ("failing", failing(status)),
    ];
    if let Some(failure) = &status.latest_failure {
        rows.extend(failure_rows(failure));
    }
    output::rows(&rows)?;
    if let Some(backend) = &status.backend {
        print_backend(backend)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How many things fail now: "none", or how many and that they are
/// retried.
fn failing(status: &pb::GetSyncStatusResponse) -> String {
    match status.failing_count {
        0 => "none".to_owned(),
        count => format!("{count} (each retried with back-off until it works)"),
    }
}

/// The latest failure: what, why, since when.
fn failure_rows(failure: &pb::SyncFailure) -> Vec<(&'static str, String)> {
    let what = output::word(
        failure.kind,
        pb::SyncFailureKind::as_str_name,
        "SYNC_FAILURE_KIND_",
    )
    .unwrap_or_default();
    let mut rows = vec![("latest failure", failure.message.clone()), ("  of", what)];
    if !failure.path.is_empty() {
        rows.push(("  path", failure.path.clone()));
    }
    if let Some(since) = &failure.since {
        rows.push(("  failing since", ago(since.seconds)));
    }
    rows.push(("  attempts", failure.attempts.to_string()));
    rows
}

/// A time as RFC 3339 and how long ago it was.
fn ago(seconds: i64) -> String {
    let time = outpost::limits::system_time(&pbjson_types::Timestamp { seconds, nanos: 0 });
    format!(
        "{} ({}s ago)",
        humantime::format_rfc3339_seconds(time),
        output::seconds_since(seconds)
    )
}

/// The database behind sync; a forum's connection state when it is one.
fn print_backend(backend: &pb::SyncBackend) -> Result<(), Failure> {
    let mut rows = vec![("backend", backend.kind.clone())];
    if backend.kind != "native" {
        rows.extend([
            ("forum", backend.forum_root.clone()),
            ("database", backend.database.clone()),
            ("table prefix", backend.table_prefix.clone()),
            (
                "server",
                if backend.server_version.is_empty() {
                    "not connected yet".to_owned()
                } else {
                    backend.server_version.clone()
                },
            ),
            (
                "last poll",
                backend
                    .last_poll_at
                    .as_ref()
                    .map_or_else(|| "never".to_owned(), |at| ago(at.seconds)),
            ),
        ]);
    } else {
        rows.push(("database", backend.database.clone()));
    }
    if let Some(since) = &backend.unreachable_since {
        rows.push((
            "database",
            format!(
                "unreachable since {}: {}",
                ago(since.seconds),
                backend.error
            ),
        ));
    }
    output::rows(&rows)?;
    Ok(())
}

/// "watching", "paused" or "stopped"; "unknown" otherwise.
fn state_name(state: i32) -> String {
    output::word(state, pb::WatcherState::as_str_name, "WATCHER_STATE_")
        .filter(|state| state != "unspecified")
        .unwrap_or_else(|| "unknown".to_owned())
}

fn key_name(key: Option<&pb::ContentKey>) -> String {
    match key.and_then(|key| key.key.as_ref()) {
        Some(Key::Template(key)) => format!("template {}/{}", key.set, key.title),
        Some(Key::Stylesheet(key)) => format!("stylesheet {}/{}", key.theme, key.name),
        None => String::new(),
    }
}

/// One `sync events` message: the snapshot's state, or a line per event.
fn print_event(message: pb::WatchSyncEventsResponse) {
    match message.payload {
        Some(Payload::Snapshot(snapshot)) => output::outln!(
            "revision {}: {} ({})",
            snapshot.revision,
            state_name(snapshot.status.as_ref().map_or(0, |s| s.state)),
            if snapshot.kind == pb::SyncSnapshotKind::Resync as i32 {
                "resync: events were skipped"
            } else {
                "live from here"
            }
        ),
        Some(Payload::Events(batch)) => {
            for event in batch.events {
                let kind = output::word(
                    event.kind,
                    pb::SyncEventKind::as_str_name,
                    "SYNC_EVENT_KIND_",
                )
                .unwrap_or_default();
                output::outln!("{:>6}  {kind:<17} {}", event.revision, event.message);
            }
        }
        None => {}
    }
}
