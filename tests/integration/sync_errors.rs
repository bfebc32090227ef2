//! Sync against a disk that fails: nothing is dropped, every failure shows
//! in `GetSyncStatus` (and `outpostctl sync status`) with since when, the
//! event stream says when something starts failing and when it works
//! again, and it works again by itself once the cause is gone — no
//! restart, no rescan asked for.
//!
//! The failures are real ones, and the tests run as root, which ignores
//! file permissions: a full disk is a small tmpfs mounted on the
//! templates' directory and filled; an unreadable file or directory is `chmod 000`
//! read by a daemon started without the capabilities that let root ignore
//! it (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`), as a daemon run by an
//! ordinary user would be. When either cannot be arranged the test says
//! why and returns, unless `OUTPOST_REQUIRE_REAL` is set.

use std::{
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use nix::sys::signal::Signal;
use outpost::proto::v1::{self as pb, SyncEventKind as K};
use outpost_test_support::{process::skip, small_disk::SmallDisk};
use tonic::Code;

use crate::{
    harness::{START_DEADLINE, eventually, stderr, stdout},
    stores::{Backend, both_stores},
    sync_support::{
        EVENT_DEADLINE, Mirrored, SyncClient, SyncEvents, about, at, put, status, sync_root,
        template,
    },
};

/// The template set of these tests.
const SET: &str = "Default";

/// Takes from every process this thread starts from now on the power of
/// root to ignore file permissions; None, saying why, where that is not
/// permitted. The test's own thread keeps its powers (it sets the modes
/// back); a test runs in a process of its own (nextest), and libtest runs
/// each test on a thread of its own, so no other test is touched.
fn spawn_without_permission_override() -> Option<()> {
    // From linux/capability.h.
    const CAP_DAC_OVERRIDE: nix::libc::c_ulong = 1;
    const CAP_DAC_READ_SEARCH: nix::libc::c_ulong = 2;
    for capability in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH] {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no
        // memory of ours; it only narrows this thread's bounding set.
        let dropped = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
        if dropped != 0 {
            return skip(&format!(
                "cannot drop capability {capability} from the bounding set: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Some(())
}

/// Sets the permission bits of `path`.
fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The sync status once `wanted` holds of it.
async fn status_when(
    sync: &SyncClient,
    what: &str,
    wanted: impl Fn(&pb::GetSyncStatusResponse) -> bool,
) -> pb::GetSyncStatusResponse {
    let wanted = &wanted;
    eventually(what, EVENT_DEADLINE, || {
        let mut sync = sync.clone();
        async move {
            let now = status(&mut sync).await;
            wanted(&now).then_some(now)
        }
    })
    .await
}

/// A time of the API as (seconds, nanoseconds), which compare in order.
fn time(at: Option<&pbjson_types::Timestamp>) -> (i64, i32) {
    let at = at.expect("a time");
    (at.seconds, at.nanos)
}

/// The latest failure of `status`, checked to have a streak that began
/// no earlier than `before` and no later than its last failure.
fn latest_failure(status: &pb::GetSyncStatusResponse, before: SystemTime) -> pb::SyncFailure {
    let failure = status.latest_failure.clone().expect("a latest failure");
    let before = before.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let before = (before.as_secs() as i64, before.subsec_nanos() as i32);
    let (since, last) = (
        time(failure.since.as_ref()),
        time(failure.last_failed_at.as_ref()),
    );
    assert!(
        before <= since && since <= last,
        "{before:?} <= {since:?} <= {last:?}: {failure:?}"
    );
    failure
}

/// What `outpostctl sync status` prints, and its `--json`.
fn cli_status(m: &Mirrored) -> (String, serde_json::Value) {
    let shown = m.store.daemon.ctl(&["sync", "status"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let json = m.store.daemon.ctl(&["sync", "status", "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    (
        stdout(&shown),
        serde_json::from_slice(&json.stdout).expect("JSON"),
    )
}

/// The file of template `header` (its group directory depends on the
/// store).
async fn header_file(m: &mut Mirrored) -> PathBuf {
    let group = template(&mut m.sync, SET, "header").await.group;
    m.file(&format!("{group}/header.html"))
}

/// Stops the daemon and starts it again on the same data and root.
async fn restart(m: &mut Mirrored) -> SyncClient {
    m.store.daemon.signal(Signal::SIGTERM);
    m.store.daemon.wait_exit(START_DEADLINE);
    m.store.daemon.respawn(&[]);
    m.store.daemon.connect().await.sync()
}

both_stores!(a_write_to_a_full_disk_is_retried_until_there_is_room);
async fn a_write_to_a_full_disk_is_retried_until_there_is_room(backend: Backend) {
    let root = tempfile::Builder::new()
        .prefix("outpost-sync-root")
        .tempdir()
        .unwrap();
    // Every set's directory on a small disk of its own, mounted before the
    // daemon starts watching the root.
    let templates = root.path().join("templates");
    fs::create_dir_all(&templates).unwrap();
    // Declared before the daemon: unmounted after it has stopped.
    let Some(disk) = SmallDisk::mount_on(&templates, 1 << 20) else {
        return;
    };
    let root_arg = root.path().to_str().unwrap();
    let Some(store) = backend.sync_daemon(&["--sync-root", root_arg]) else {
        return;
    };
    let mut m = Mirrored::start(store, SET, &[("header", "<b>one</b>")]).await;
    let file = header_file(&mut m).await;
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        m.store.stored("<b>one</b>")
    );

    let filler = disk.fill();
    let before = SystemTime::now();
    // The database takes the change; the file cannot follow.
    let written = m
        .sync
        .put_template(put(SET, "header", "<b>two</b>", None))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let failing = m
        .events
        .until("the write to fail", |e| at(e, K::Failing, &file))
        .await;
    assert!(failing.message.contains("No space left"), "{failing:?}");
    // An export of the set fails too, and says so to its caller.
    let refused = m
        .sync
        .export_templates(pb::ExportTemplatesRequest {
            set: SET.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("No space left"), "{refused:?}");

    // Both are shown, the export (which started failing last) with since
    // when; both are retried, and its streak keeps its start while its
    // attempts grow.
    let shown = status_when(&m.sync, "the export failing again", |s| {
        s.failing_count == 2
            && s.latest_failure
                .as_ref()
                .is_some_and(|f| f.kind() == pb::SyncFailureKind::Export && f.attempts >= 2)
    })
    .await;
    let failure = latest_failure(&shown, before);
    assert_eq!(failure.path, m.dir.display().to_string());
    assert!(
        time(failure.since.as_ref()) < time(failure.last_failed_at.as_ref()),
        "the streak keeps its start: {failure:?}"
    );
    assert!(failure.message.contains("No space left"), "{failure:?}");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        m.store.stored("<b>one</b>")
    );
    let (text, json) = cli_status(&m);
    assert!(text.contains("failing") && text.contains("2 ("), "{text}");
    assert!(
        text.contains("No space left") && text.contains("failing since"),
        "{text}"
    );
    assert_eq!(json["failing_count"], 2, "{json}");
    assert!(json["latest_failure"]["since"].is_string(), "{json}");

    // Room again: both land, without a restart or a rescan asked for.
    let mark = m.events.mark();
    fs::remove_file(&filler).unwrap();
    for what in ["the path to work again", "the export to work again"] {
        m.events
            .until(what, |e| e.revision > mark && e.kind() == K::Recovered)
            .await;
    }
    // The status shows what the events say once they are sent.
    let healed = status(&mut m.sync).await;
    assert_eq!(
        (healed.failing_count, healed.latest_failure),
        (0, None),
        "cleared"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        m.store.stored("<b>two</b>")
    );
    let (text, json) = cli_status(&m);
    assert!(
        text.contains("none") && !text.contains("latest failure"),
        "{text}"
    );
    assert_eq!(json["failing_count"], 0, "{json}");

    // After a restart: the file, the database and nothing failing or in
    // conflict.
    let mut sync = restart(&mut m).await;
    let after = status_when(&sync, "the start-up rescan", |s| s.last_rescan_at.is_some()).await;
    assert_eq!(
        (after.failing_count, after.open_conflicts),
        (0, 0),
        "{after:?}"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        m.store.stored("<b>two</b>")
    );
    let stored = template(&mut sync, SET, "header").await;
    assert_eq!(
        (stored.content, stored.version),
        (m.store.stored("<b>two</b>"), written.version)
    );
}

both_stores!(an_unreadable_file_is_imported_once_it_can_be_read);
async fn an_unreadable_file_is_imported_once_it_can_be_read(backend: Backend) {
    if spawn_without_permission_override().is_none() {
        return;
    }
    let Some(store) = backend.sync_daemon(&[]) else {
        return;
    };
    let mut m = Mirrored::start(store, SET, &[("header", "<b>one</b>")]).await;
    let file = header_file(&mut m).await;

    // Saved the way editors save (a new file renamed over the old one),
    // but unreadable.
    let before = SystemTime::now();
    let saved = file.with_file_name(".header.html.new");
    fs::write(&saved, "<b>two</b>").unwrap();
    chmod(&saved, 0o000);
    fs::rename(&saved, &file).unwrap();
    let failing = m
        .events
        .until("the read to fail", |e| at(e, K::Failing, &file))
        .await;
    assert!(failing.message.contains("Permission denied"), "{failing:?}");
    let shown = status(&mut m.sync).await;
    assert_eq!(shown.failing_count, 1, "{shown:?}");
    let failure = latest_failure(&shown, before);
    assert_eq!(
        (failure.kind(), failure.path.as_str()),
        (pb::SyncFailureKind::Path, file.to_str().unwrap())
    );
    let key = failure.key.and_then(|key| key.key);
    assert!(
        matches!(&key, Some(pb::content_key::Key::Template(k)) if k.title == "header"),
        "{key:?}"
    );
    let (text, json) = cli_status(&m);
    assert!(
        text.contains("Permission denied") && text.contains(file.to_str().unwrap()),
        "{text}"
    );
    assert_eq!(json["failing_count"], 1, "{json}");
    assert_eq!(
        template(&mut m.sync, SET, "header").await.content,
        m.store.stored("<b>one</b>"),
        "nothing imported yet"
    );

    // Readable again (a change of mode is no event): the retry imports it.
    let mark = m.events.mark();
    chmod(&file, 0o644);
    let imported = m
        .events
        .until("the import", |e| {
            e.revision > mark && about(e, K::Imported, SET, "header")
        })
        .await;
    m.events
        .until("the recovery", |e| {
            e.revision > mark && at(e, K::Recovered, &file)
        })
        .await;
    let healed = status(&mut m.sync).await;
    assert_eq!((healed.failing_count, healed.latest_failure), (0, None));
    assert_eq!(
        template(&mut m.sync, SET, "header").await.content,
        m.store.stored("<b>two</b>")
    );

    let mut sync = restart(&mut m).await;
    let after = status_when(&sync, "the start-up rescan", |s| s.last_rescan_at.is_some()).await;
    assert_eq!(
        (after.failing_count, after.open_conflicts),
        (0, 0),
        "{after:?}"
    );
    let stored = template(&mut sync, SET, "header").await;
    assert_eq!(
        (stored.content, stored.version),
        (m.store.stored("<b>two</b>"), imported.version)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "<b>two</b>");
}

#[tokio::test]
async fn a_rescan_that_cannot_list_a_set_is_retried_and_misses_nothing() {
    if spawn_without_permission_override().is_none() {
        return;
    }
    let Some(store) = Backend::Native.sync_daemon(&[]) else {
        return;
    };
    let mut m = Mirrored::start(store, SET, &[("header", "<b>one</b>")]).await;
    let file = header_file(&mut m).await;

    // Edited while the daemon is down, and the set's directory closed.
    m.store.daemon.signal(Signal::SIGTERM);
    m.store.daemon.wait_exit(START_DEADLINE);
    fs::write(&file, "<b>edited while down</b>").unwrap();
    chmod(&m.dir, 0o000);
    let before = SystemTime::now();
    m.store.daemon.respawn(&[]);
    let connection = m.store.daemon.connect().await;
    let mut sync = connection.sync();
    // The watcher cannot watch that directory either: both are retried.
    let shown = status_when(&sync, "the start-up rescan to fail", |s| {
        s.failing_count == 2
            && s.latest_failure
                .as_ref()
                .is_some_and(|f| f.kind() == pb::SyncFailureKind::Rescan)
    })
    .await;
    assert_eq!(shown.state(), pb::WatcherState::Stopped);
    let failure = latest_failure(&shown, before);
    assert!(
        failure.message.contains("cannot list")
            && failure.message.contains(m.dir.to_str().unwrap()),
        "{failure:?}"
    );
    // Nothing in the set was taken for gone or refused.
    assert_eq!(shown.counters.unwrap_or_default().rejected, 0, "{shown:?}");

    // Listable again: the retried rescan imports the edit by itself.
    let (mut events, _) = SyncEvents::open(&connection, &[]).await;
    chmod(&m.dir, 0o755);
    events
        .until("the edit to be imported", |e| {
            about(e, K::Imported, SET, "header")
        })
        .await;
    // The watcher and the rescan work again (the watcher's may have come
    // before the import).
    let mut recovered = events.matching(|e| e.kind() == K::Recovered).len();
    if recovered < 2 {
        events
            .until("the watcher and the rescan to work again", |e| {
                recovered += usize::from(e.kind() == K::Recovered);
                recovered == 2
            })
            .await;
    }
    let healed = status_when(&sync, "the watcher", |s| s.failing_count == 0).await;
    assert_eq!(healed.state(), pb::WatcherState::Watching);
    // Watched again: an edit now is seen.
    fs::write(&file, "<b>edited after</b>").unwrap();
    events
        .until("the next edit", |e| about(e, K::Imported, SET, "header"))
        .await;
    assert_eq!(
        template(&mut sync, SET, "header").await.content,
        "<b>edited after</b>"
    );
}

#[tokio::test]
async fn a_sync_root_removed_under_the_daemon_is_made_again_and_watched() {
    let mut m = crate::sync_watch::mirrored().await;
    let root = sync_root(&mut m.sync).await;
    let mark = m.events.mark();
    fs::remove_dir_all(&root).unwrap();

    let failing = m
        .events
        .until("the lost root to be reported", |e| {
            e.revision > mark && e.kind() == K::Failing
        })
        .await;
    assert!(failing.message.contains("was removed"), "{failing:?}");
    m.events
        .until("the root to be watched again", |e| {
            e.revision > mark && e.kind() == K::Recovered
        })
        .await;
    let now = status(&mut m.sync).await;
    assert_eq!(now.failing_count, 0);
    assert!(root.is_dir(), "made again");

    // What is written into it now reaches the database.
    let dir = root.join("templates").join(SET).join("header");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("header_after.html"), "<p>after</p>").unwrap();
    m.events
        .until("the new file to be imported", |e| {
            about(e, K::Imported, SET, "header_after")
        })
        .await;
    assert_eq!(
        template(&mut m.sync, SET, "header_after").await.content,
        "<p>after</p>"
    );
}
