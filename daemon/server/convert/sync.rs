//! Translation between the Sync service's messages and the sync domain
//! (content, the engine's summaries and status, events, conflicts).

use std::sync::Arc;

use tonic::Status;

use outpost::{
    limits::{self, MAX_FILTER_ITEMS, MAX_NAME_LEN},
    proto::v1 as pb,
};

use super::{invalid, timestamp};
use crate::sync::{
    Backend, Collection, Conflict, ContentError, Item, Key, Kind,
    engine::{ExportSummary, Failure, RescanSummary, Subject, WatcherState},
    events::{EventKind, SyncEvent},
    service::{ConflictSides, SyncStatus},
};

impl From<ContentError> for Status {
    fn from(err: ContentError) -> Self {
        let message = err.to_string();
        match err {
            ContentError::Invalid { .. } => Status::invalid_argument(message),
            ContentError::NotFound(_) => Status::not_found(message),
            ContentError::VersionMismatch { .. } => Status::aborted(message),
            ContentError::Refused(_) => Status::failed_precondition(message),
            ContentError::Storage(_) => Status::unavailable(message),
        }
    }
}

/// A template's key from a request.
pub fn template_key(key: Option<pb::TemplateKey>) -> Result<Key, Status> {
    let key = key.ok_or_else(|| invalid("key", "is required"))?;
    Ok(Key::template(key.set, key.title)?)
}

/// A stylesheet's key from a request.
pub fn stylesheet_key(key: Option<pb::StylesheetKey>) -> Result<Key, Status> {
    let key = key.ok_or_else(|| invalid("key", "is required"))?;
    Ok(Key::stylesheet(key.theme, key.name)?)
}

/// Which side a `ResolveConflict` keeps: true for the disk's.
pub fn keeps_disk(resolution: i32) -> Result<bool, Status> {
    match pb::Resolution::try_from(resolution) {
        Ok(pb::Resolution::KeepDisk) => Ok(true),
        Ok(pb::Resolution::KeepDatabase) => Ok(false),
        _ => Err(invalid("resolution", "must be KEEP_DISK or KEEP_DATABASE")),
    }
}

/// A conflict's id from a request: ids are short, so a longer one is
/// refused before it is looked up (and quoted back).
pub fn conflict_id(id: &str) -> Result<&str, Status> {
    limits::length("conflict_id", id, MAX_NAME_LEN)
        .map_err(|err| invalid(&err.field, err.reason))?;
    Ok(id)
}

/// The event kinds a `WatchSyncEvents` request asks for (empty: all).
pub fn event_kinds(kinds: &[i32]) -> Result<Vec<i32>, Status> {
    limits::count("kinds", kinds.len() as u64, MAX_FILTER_ITEMS as u64)
        .map_err(|err| invalid(&err.field, err.reason))?;
    kinds
        .iter()
        .map(|&kind| match pb::SyncEventKind::try_from(kind) {
            Ok(pb::SyncEventKind::Unspecified) | Err(_) => {
                Err(invalid("kinds", format!("{kind} is not a sync event kind")))
            }
            Ok(kind) => Ok(kind as i32),
        })
        .collect()
}

pub fn template_set(set: Collection) -> pb::TemplateSet {
    pb::TemplateSet {
        name: set.name,
        template_count: set.items,
        updated_at: set.updated_at.map(timestamp),
    }
}

pub fn theme(theme: Collection) -> pb::Theme {
    pb::Theme {
        name: theme.name,
        stylesheet_count: theme.items,
        updated_at: theme.updated_at.map(timestamp),
    }
}

/// A template, in group directory `group`.
pub fn template(item: Item, group: String) -> pb::Template {
    pb::Template {
        group,
        key: Some(pb::TemplateKey {
            set: item.key.collection,
            title: item.key.name,
        }),
        content: item.content,
        version: item.version,
        updated_at: Some(timestamp(item.updated_at)),
        size_bytes: item.size,
        sha256: item.sha256,
    }
}

pub fn stylesheet(item: Item) -> pb::Stylesheet {
    pb::Stylesheet {
        key: Some(pb::StylesheetKey {
            theme: item.key.collection,
            name: item.key.name,
        }),
        content: item.content,
        version: item.version,
        updated_at: Some(timestamp(item.updated_at)),
        size_bytes: item.size,
        sha256: item.sha256,
    }
}

/// What an export did.
pub fn export_summary(summary: ExportSummary) -> pb::ExportSummary {
    pb::ExportSummary {
        written: summary.written,
        unchanged: summary.unchanged,
        conflicts: summary.conflicts,
        elapsed: Some(summary.elapsed.into()),
        skipped: summary.skipped,
    }
}

/// What a rescan did.
pub fn rescan(summary: RescanSummary) -> pb::RescanResponse {
    pb::RescanResponse {
        scanned: summary.scanned,
        imported: summary.imported,
        exported: summary.exported,
        conflicts: summary.conflicts,
        skipped: summary.skipped,
        elapsed: Some(summary.elapsed.into()),
    }
}

/// The watcher's state.
pub fn watcher_state(state: WatcherState) -> pb::WatcherState {
    match state {
        WatcherState::Watching => pb::WatcherState::Watching,
        WatcherState::Paused => pb::WatcherState::Paused,
        WatcherState::Stopped => pb::WatcherState::Stopped,
    }
}

/// The status report, at the sync root `root`.
pub fn status(status: SyncStatus, root: &std::path::Path) -> pb::GetSyncStatusResponse {
    let tally = status.tally;
    pb::GetSyncStatusResponse {
        state: watcher_state(status.engine.state).into(),
        root: root.display().to_string(),
        paused_by_user: status.engine.paused_by_user,
        active_exports: status.engine.exports,
        dirty_count: status.engine.queued as u32,
        last_rescan_at: tally.last_rescan_at.map(timestamp),
        counters: Some(pb::SyncCounters {
            synced: tally.synced,
            skipped_empty: tally.skipped_empty,
            rejected: tally.rejected,
            conflicts: tally.conflicts,
        }),
        open_conflicts: tally.open_conflicts,
        last_error: tally.last_error.unwrap_or_default(),
        backend: Some(backend(status.backend)),
        failing_count: status.engine.failing.count,
        latest_failure: status.engine.failing.latest.map(failure),
    }
}

fn failure(failure: Failure) -> pb::SyncFailure {
    let kind = match failure.subject {
        Subject::Path(_) => pb::SyncFailureKind::Path,
        Subject::Rescan => pb::SyncFailureKind::Rescan,
        Subject::Export(..) => pb::SyncFailureKind::Export,
        Subject::Watcher => pb::SyncFailureKind::Watcher,
    };
    pb::SyncFailure {
        kind: kind.into(),
        path: failure
            .fault
            .path
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        key: failure.fault.key.as_ref().map(content_key),
        message: failure.fault.message,
        since: Some(timestamp(failure.since)),
        last_failed_at: Some(timestamp(failure.last)),
        attempts: failure.attempts,
    }
}

fn backend(backend: Backend) -> pb::SyncBackend {
    pb::SyncBackend {
        kind: backend.kind.to_owned(),
        server_version: backend.server_version,
        database: backend.database,
        table_prefix: backend.prefix,
        forum_root: backend
            .forum_root
            .map(|root| root.display().to_string())
            .unwrap_or_default(),
        last_poll_at: backend.last_poll.map(timestamp),
        unreachable_since: backend.unreachable_since.map(timestamp),
        error: backend.error,
    }
}

fn content_key(key: &Key) -> pb::ContentKey {
    let key_message = match key.kind {
        Kind::Template => pb::content_key::Key::Template(pb::TemplateKey {
            set: key.collection.clone(),
            title: key.name.clone(),
        }),
        Kind::Stylesheet => pb::content_key::Key::Stylesheet(pb::StylesheetKey {
            theme: key.collection.clone(),
            name: key.name.clone(),
        }),
    };
    pb::ContentKey {
        key: Some(key_message),
    }
}

/// The key of a resolved conflict and its version after.
pub fn resolved(key: &Key, version: u64) -> pb::ResolveConflictResponse {
    pb::ResolveConflictResponse {
        key: Some(content_key(key)),
        version,
    }
}

/// An open conflict.
pub fn conflict(conflict: Conflict) -> pb::Conflict {
    pb::Conflict {
        key: Some(content_key(&conflict.key)),
        id: conflict.id,
        path: conflict.path.display().to_string(),
        conflict_copy_path: conflict.copy_path.display().to_string(),
        database_version: conflict.db_version,
        database_sha256: conflict.db_sha256,
        disk_sha256: conflict.disk_sha256,
        detected_at: Some(timestamp(conflict.detected_at)),
    }
}

pub fn conflict_sides(sides: ConflictSides) -> pb::GetConflictResponse {
    let (disk_content, disk_unavailable) = match sides.disk {
        Ok(text) => (text, String::new()),
        Err(reason) => (String::new(), reason),
    };
    pb::GetConflictResponse {
        conflict: Some(conflict(sides.conflict)),
        disk_content,
        database_deleted: sides.database.is_none(),
        database_content: sides.database.unwrap_or_default(),
        disk_unavailable,
    }
}

fn event_kind(kind: EventKind) -> pb::SyncEventKind {
    match kind {
        EventKind::Imported => pb::SyncEventKind::Imported,
        EventKind::Exported => pb::SyncEventKind::Exported,
        EventKind::SkippedEmpty => pb::SyncEventKind::SkippedEmpty,
        EventKind::Rejected => pb::SyncEventKind::Rejected,
        EventKind::Conflict => pb::SyncEventKind::Conflict,
        EventKind::ConflictResolved => pb::SyncEventKind::ConflictResolved,
        EventKind::Orphaned => pb::SyncEventKind::Orphaned,
        EventKind::Paused => pb::SyncEventKind::Paused,
        EventKind::Resumed => pb::SyncEventKind::Resumed,
        EventKind::Rescanned => pb::SyncEventKind::Rescanned,
        EventKind::ExportFinished => pb::SyncEventKind::ExportFinished,
        EventKind::WatcherError => pb::SyncEventKind::WatcherError,
        EventKind::ContentChanged => pb::SyncEventKind::ContentChanged,
        EventKind::Warning => pb::SyncEventKind::Warning,
        EventKind::Failing => pb::SyncEventKind::Failing,
        EventKind::Recovered => pb::SyncEventKind::Recovered,
    }
}

fn sync_event(event: &SyncEvent) -> pb::SyncEvent {
    let notice = &event.notice;
    pb::SyncEvent {
        revision: event.revision,
        time: Some(timestamp(event.time)),
        kind: event_kind(notice.kind) as i32,
        key: notice.key.as_ref().map(content_key),
        path: notice
            .path
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        version: notice.version,
        message: notice.message.clone(),
    }
}

/// A snapshot of the status as a `WatchSyncEvents` message.
pub fn status_snapshot(
    revision: u64,
    resync: bool,
    status: pb::GetSyncStatusResponse,
) -> pb::WatchSyncEventsResponse {
    let kind = if resync {
        pb::SyncSnapshotKind::Resync
    } else {
        pb::SyncSnapshotKind::Initial
    };
    pb::WatchSyncEventsResponse {
        payload: Some(pb::watch_sync_events_response::Payload::Snapshot(
            pb::SyncSnapshot {
                revision,
                kind: kind as i32,
                status: Some(status),
            },
        )),
    }
}

/// The events of `kinds` (all when empty) as one `WatchSyncEvents`
/// message; None if none.
pub fn events(events: &[Arc<SyncEvent>], kinds: &[i32]) -> Option<pb::WatchSyncEventsResponse> {
    let events: Vec<pb::SyncEvent> = events
        .iter()
        .map(|event| sync_event(event))
        .filter(|event| kinds.is_empty() || kinds.contains(&event.kind))
        .collect();
    if events.is_empty() {
        return None;
    }
    Some(pb::WatchSyncEventsResponse {
        payload: Some(pb::watch_sync_events_response::Payload::Events(
            pb::SyncEvents { events },
        )),
    })
}
