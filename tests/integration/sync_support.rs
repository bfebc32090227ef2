//! What the sync tests share: content requests, the files under a sync
//! root, the sync event stream, and waiting until the reconciler has
//! nothing left to do.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::Duration,
};

use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, content_key, watch_sync_events_response::Payload},
};
use tonic::Streaming;

use crate::{
    harness::{Daemon, DaemonBuilder, START_DEADLINE, eventually},
    stores::Store,
};

/// A client of the Sync service.
pub type SyncClient = pb::sync_client::SyncClient<outpost::endpoint::AuthChannel>;

/// How long a test waits for one expected sync event or state: generous,
/// because the tests run side by side on a loaded 2-core machine.
pub const EVENT_DEADLINE: Duration = START_DEADLINE;

/// The key of template `title` in set `set`.
pub fn key(set: &str, title: &str) -> Option<pb::TemplateKey> {
    Some(pb::TemplateKey {
        set: set.to_owned(),
        title: title.to_owned(),
    })
}

/// A `PutTemplate` request.
pub fn put(
    set: &str,
    title: &str,
    content: &str,
    expected_version: Option<u64>,
) -> pb::PutTemplateRequest {
    pb::PutTemplateRequest {
        key: key(set, title),
        content: content.to_owned(),
        expected_version,
    }
}

/// Every file under `dir`, recursively, relative to it.
pub fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

/// Exports template set `set`, panicking on error.
pub async fn export(sync: &mut SyncClient, set: &str) -> pb::ExportSummary {
    sync.export_templates(pb::ExportTemplatesRequest {
        set: set.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
    .summary
    .unwrap()
}

/// The content of generated template `i`: about 5 KiB, recognisable whole.
pub fn generated(i: usize) -> String {
    format!(
        "<!-- start {i} -->\n{}\n<!-- end {i} -->\n",
        "x".repeat(5000)
    )
}

/// The sync status.
pub async fn status(sync: &mut SyncClient) -> pb::GetSyncStatusResponse {
    sync.get_sync_status(pb::GetSyncStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The sync root, as the daemon reports it.
pub async fn sync_root(sync: &mut SyncClient) -> PathBuf {
    PathBuf::from(status(sync).await.root)
}

/// One template with its content, panicking on error.
pub async fn template(sync: &mut SyncClient, set: &str, title: &str) -> pb::Template {
    sync.get_template(pb::GetTemplateRequest {
        key: key(set, title),
    })
    .await
    .unwrap_or_else(|status| panic!("get {set}/{title}: {status}"))
    .into_inner()
    .template
    .unwrap()
}

/// The templates of `set` with their content, by title.
pub async fn templates(sync: &mut SyncClient, set: &str) -> Vec<pb::Template> {
    sync.list_templates(pb::ListTemplatesRequest {
        set: set.to_owned(),
        include_content: true,
    })
    .await
    .unwrap_or_else(|status| panic!("list {set}: {status}"))
    .into_inner()
    .templates
}

/// The template an event is about, if any.
pub fn template_of(event: &pb::SyncEvent) -> Option<&pb::TemplateKey> {
    match event.key.as_ref()?.key.as_ref()? {
        content_key::Key::Template(key) => Some(key),
        content_key::Key::Stylesheet(_) => None,
    }
}

/// Whether `event` is of `kind` and about template `set`/`title`.
pub fn about(event: &pb::SyncEvent, kind: pb::SyncEventKind, set: &str, title: &str) -> bool {
    event.kind() == kind
        && template_of(event).is_some_and(|key| key.set == set && key.title == title)
}

/// Whether `event` is of `kind` and concerns the file `path`.
pub fn at(event: &pb::SyncEvent, kind: pb::SyncEventKind, path: &Path) -> bool {
    event.kind() == kind && Path::new(&event.path) == path
}

/// A `WatchSyncEvents` stream and every event read from it so far.
pub struct SyncEvents {
    stream: Streaming<pb::WatchSyncEventsResponse>,
    /// Events received but not looked at yet.
    pending: VecDeque<pb::SyncEvent>,
    /// The events looked at so far, in revision order.
    pub seen: Vec<pb::SyncEvent>,
}

impl SyncEvents {
    /// Subscribes to events of `kinds` (all when empty) and reads the
    /// INITIAL snapshot; returns the stream and the snapshot.
    pub async fn open(
        connection: &Connection,
        kinds: &[pb::SyncEventKind],
    ) -> (Self, pb::SyncSnapshot) {
        let mut stream = connection
            .sync()
            .watch_sync_events(pb::WatchSyncEventsRequest {
                since_revision: 0,
                kinds: kinds.iter().map(|&kind| kind as i32).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        let Some(Payload::Snapshot(snapshot)) = next_message(&mut stream).await.payload else {
            panic!("a sync event stream starts with a snapshot");
        };
        assert_eq!(snapshot.kind(), pb::SyncSnapshotKind::Initial);
        let events = Self {
            stream,
            pending: VecDeque::new(),
            seen: Vec::new(),
        };
        (events, snapshot)
    }

    /// Reads events not seen before until one satisfies `done` and returns
    /// it; panics with `what` and the events seen after [`EVENT_DEADLINE`].
    /// A RESYNC snapshot fails the test: it would mean events were skipped.
    pub async fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&pb::SyncEvent) -> bool,
    ) -> pb::SyncEvent {
        let read = async {
            loop {
                while let Some(event) = self.pending.pop_front() {
                    self.seen.push(event.clone());
                    if done(&event) {
                        return event;
                    }
                }
                match next_message(&mut self.stream).await.payload {
                    Some(Payload::Events(batch)) => self.pending.extend(batch.events),
                    other => panic!("expected events, got {other:?}"),
                }
            }
        };
        match tokio::time::timeout(EVENT_DEADLINE, read).await {
            Ok(event) => event,
            Err(_) => panic!(
                "no event for {what} within {EVENT_DEADLINE:?}; seen: {:#?}",
                self.seen
            ),
        }
    }

    /// The first event seen so far that satisfies `wanted`, or else the
    /// next one to arrive (as [`Self::until`]).
    pub async fn wait_for(
        &mut self,
        what: &str,
        wanted: impl Fn(&pb::SyncEvent) -> bool,
    ) -> pb::SyncEvent {
        match self.seen.iter().find(|event| wanted(event)) {
            Some(event) => event.clone(),
            None => self.until(what, wanted).await,
        }
    }

    /// The revision of the last event seen (0 before any): later events
    /// are newer than this mark.
    pub fn mark(&self) -> u64 {
        self.seen.last().map_or(0, |event| event.revision)
    }

    /// The events seen so far that satisfy `wanted`.
    pub fn matching(&self, wanted: impl Fn(&pb::SyncEvent) -> bool) -> Vec<&pb::SyncEvent> {
        self.seen.iter().filter(|event| wanted(event)).collect()
    }
}

/// The next message of a sync event stream, within [`EVENT_DEADLINE`].
async fn next_message(
    stream: &mut Streaming<pb::WatchSyncEventsResponse>,
) -> pb::WatchSyncEventsResponse {
    tokio::time::timeout(EVENT_DEADLINE, stream.message())
        .await
        .expect("a sync event within the deadline")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

/// Waits until the reconciler has no path left to look at (dirty count
/// 0), then runs a rescan as a barrier and reads `events` (which must
/// include RESCANNED) up to its event, so that every event of what came
/// before has been read. Returns the rescan's counts.
pub async fn quiesce(sync: &mut SyncClient, events: &mut SyncEvents) -> pb::RescanResponse {
    settled(sync).await;
    let rescan = sync
        .rescan(pb::RescanRequest {})
        .await
        .unwrap()
        .into_inner();
    events
        .until("the barrier rescan", |event| {
            event.kind() == pb::SyncEventKind::Rescanned
        })
        .await;
    rescan
}

/// Waits until the reconciler has no path left to look at.
pub async fn settled(sync: &mut SyncClient) {
    eventually("the dirty count to reach 0", EVENT_DEADLINE, || {
        let mut sync = sync.clone();
        async move { (status(&mut sync).await.dirty_count == 0).then_some(()) }
    })
    .await;
}

/// SHA-256 of `content`, lowercase hex.
pub fn sha256(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(content)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `--sync-settle` of [`sync_daemon`]: shorter than the default (1 s) so
/// that empty, vanished and orphaned files are decided on sooner.
pub const FAST_SETTLE: &str = "300ms";

/// Starts a daemon with [`FAST_SETTLE`] and `extra` arguments.
pub fn sync_daemon(extra: &[&str]) -> Daemon {
    sync_builder(extra).start()
}

/// A builder of a daemon with [`FAST_SETTLE`] and `extra` arguments, for
/// a test that adds more (a store: [`crate::stores::Backend::sync_daemon`]).
pub fn sync_builder(extra: &[&str]) -> DaemonBuilder {
    let mut builder = Daemon::builder().arg("--sync-settle").arg(FAST_SETTLE);
    for arg in extra {
        builder = builder.arg(arg);
    }
    builder
}

/// A daemon with one mirrored template set, and a sync event stream
/// opened before the set was put and exported.
pub struct Mirrored {
    /// The daemon and its store.
    pub store: Store,
    /// A connection to it.
    pub connection: Connection,
    /// A Sync client on that connection.
    pub sync: SyncClient,
    /// Every sync event since before the set was put.
    pub events: SyncEvents,
    /// The set's directory under the sync root.
    pub dir: PathBuf,
}

impl Mirrored {
    /// Creates set `set` in `store` ([`Store::create_set`]), puts `items`
    /// (title, content) into it, exports it — so that it is mirrored under
    /// the sync root — and waits until the reconciler is idle.
    pub async fn start(store: Store, set: &str, items: &[(&str, &str)]) -> Self {
        let connection = store.daemon.connect().await;
        let mut sync = connection.sync();
        let (mut events, _) = SyncEvents::open(&connection, &[]).await;
        store.create_set(set);
        for (title, content) in items {
            sync.put_template(put(set, title, content, None))
                .await
                .unwrap_or_else(|status| panic!("put {set}/{title}: {status}"));
        }
        let summary = export(&mut sync, set).await;
        // A MyBB set shows (so exports) the master templates it has no row
        // of its own for, too.
        let inherited = store
            .masters()
            .iter()
            .filter(|master| !items.iter().any(|(title, _)| title == master))
            .count();
        let shown = items.len() + inherited;
        assert_eq!(summary.written as usize, shown, "{summary:?}");
        let dir = sync_root(&mut sync).await.join("templates").join(set);
        quiesce(&mut sync, &mut events).await;
        Self {
            store,
            connection,
            sync,
            events,
            dir,
        }
    }

    /// A file of the set, by its path relative to the set's directory.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Waits until the sync counters satisfy `wanted` (they may be updated
/// just after the event that reports the change); returns them.
pub async fn counters_reach(
    sync: &mut SyncClient,
    what: &str,
    wanted: impl Fn(&pb::SyncCounters) -> bool,
) -> pb::SyncCounters {
    let wanted = &wanted;
    eventually(what, EVENT_DEADLINE, || {
        let mut sync = sync.clone();
        async move {
            let counters = status(&mut sync).await.counters.unwrap_or_default();
            wanted(&counters).then_some(counters)
        }
    })
    .await
}
