//! Controlling sync against a running daemon: pause and resume from many
//! callers at once, the start-up rescan of edits made while the daemon was
//! down, the status counters, and the CLI's sync commands. The watcher and
//! reconciler themselves are in `sync_watch.rs`, whose mirrored set these
//! tests share.

use std::{
    fs::{self, File},
    io::{BufRead, BufReader},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, SyncEventKind as K},
};

use crate::{
    harness::{START_DEADLINE, eventually, stderr, stdout},
    stores::{Backend, both_stores},
    sync_support::{
        EVENT_DEADLINE, Mirrored, SyncClient, about, at, counters_reach, key, quiesce, settled,
        status, template,
    },
};

use crate::sync_watch::{LINKS, SET, mirrored, mirrored_on};

/// Makes `call` from 8 tasks at once, each with a client of its own;
/// returns their answers.
async fn from_8_callers<T, F>(connection: &Connection, call: impl Fn(SyncClient) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(call(connection.sync())))
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_are_idempotent_from_concurrent_callers() {
    let mut m = mirrored().await;
    // Exports pause the watcher too; only what follows counts here.
    let mark = m.events.mark();
    let pauses = from_8_callers(&m.connection, |mut sync| async move {
        sync.pause_watcher(pb::PauseWatcherRequest {})
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    let mut first = 0;
    for response in pauses {
        assert_eq!(response.state(), pb::WatcherState::Paused);
        first += usize::from(!response.was_paused);
    }
    assert_eq!(first, 1, "exactly one caller paused a running watcher");
    assert!(status(&mut m.sync).await.paused_by_user);

    let resumes = from_8_callers(&m.connection, |mut sync| async move {
        sync.resume_watcher(pb::ResumeWatcherRequest {})
            .await
            .unwrap()
            .into_inner()
    })
    .await;
    for response in resumes {
        assert_eq!(response.state(), pb::WatcherState::Watching);
    }
    let now = status(&mut m.sync).await;
    assert!(!now.paused_by_user);
    assert_eq!(now.state(), pb::WatcherState::Watching);

    // One pause and one resume happened; the watcher works.
    fs::write(m.file("footer/footer_links.html"), "<a>after</a>").unwrap();
    m.events
        .wait_for("an edit imported after resuming", |e| {
            about(e, K::Imported, SET, "footer_links")
        })
        .await;
    quiesce(&mut m.sync, &mut m.events).await;
    for kind in [K::Paused, K::Resumed] {
        let count = m
            .events
            .matching(|e| e.kind() == kind && e.revision > mark)
            .len();
        assert_eq!(count, 1, "one {kind:?} event");
    }
}

both_stores!(the_start_up_rescan_picks_up_edits_made_while_the_daemon_was_down);
async fn the_start_up_rescan_picks_up_edits_made_while_the_daemon_was_down(backend: Backend) {
    let Some(Mirrored {
        mut store,
        connection,
        sync,
        events,
        dir,
    }) = mirrored_on(backend).await
    else {
        return;
    };
    drop((connection, sync, events));
    store.daemon.signal(Signal::SIGTERM);
    store.daemon.wait_exit(START_DEADLINE);

    fs::write(
        dir.join("header/header_welcome.html"),
        "<b>offline edit</b>",
    )
    .unwrap();
    fs::write(dir.join("header/header_offline.html"), "<b>offline new</b>").unwrap();
    store.daemon.respawn(&[]);
    let mut sync = store.daemon.connect().await.sync();
    eventually("the offline edits imported", EVENT_DEADLINE, || {
        let mut sync = sync.clone();
        async move {
            let edited = sync
                .get_template(pb::GetTemplateRequest {
                    key: key(SET, "header_welcome"),
                })
                .await
                .ok()?
                .into_inner()
                .template?;
            let created = sync
                .get_template(pb::GetTemplateRequest {
                    key: key(SET, "header_offline"),
                })
                .await
                .ok()?
                .into_inner()
                .template?;
            (edited.content == "<b>offline edit</b>" && created.content == "<b>offline new</b>")
                .then_some((edited.version, created.version))
        }
    })
    .await;
    settled(&mut sync).await;
    let now = status(&mut sync).await;
    assert!(now.last_rescan_at.is_some(), "{now:?}");
    assert_eq!(now.state(), pb::WatcherState::Watching);
    assert_eq!(
        template(&mut sync, SET, "footer_links").await.content,
        store.stored(LINKS),
        "untouched"
    );
}

both_stores!(the_status_counts_what_the_reconciler_did);
async fn the_status_counts_what_the_reconciler_did(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = status(&mut m.sync).await;
    assert_eq!(
        Path::new(&before.root),
        m.store.daemon.data_dir.join("sync"),
        "the default root"
    );
    assert_eq!(before.state(), pb::WatcherState::Watching);
    assert_eq!(
        (
            before.active_exports,
            before.dirty_count,
            before.open_conflicts
        ),
        (0, 0, 0)
    );
    assert!(!before.paused_by_user);
    assert!(before.last_rescan_at.is_some(), "the start-up rescan ran");
    assert_eq!(before.last_error, "");
    let counted = before.counters.unwrap();
    assert_eq!(
        (counted.skipped_empty, counted.rejected, counted.conflicts),
        (0, 0, 0)
    );

    let file = m.file("header/header_welcome.html");
    fs::write(&file, "<b>imported</b>").unwrap();
    m.events
        .wait_for("IMPORTED", |e| about(e, K::Imported, SET, "header_welcome"))
        .await;
    let after_import = counters_reach(&mut m.sync, "synced to count it", |c| {
        c.synced > counted.synced
    })
    .await;
    assert_eq!(after_import.synced, counted.synced + 1);

    File::create(&file).unwrap();
    m.events
        .wait_for("SKIPPED_EMPTY", |e| at(e, K::SkippedEmpty, &file))
        .await;
    let after_empty = counters_reach(&mut m.sync, "skipped_empty to count it", |c| {
        c.skipped_empty > 0
    })
    .await;
    assert_eq!(after_empty.skipped_empty, 1);

    fs::write(&file, b"\xff\xfe").unwrap();
    m.events
        .wait_for("REJECTED", |e| at(e, K::Rejected, &file))
        .await;
    let last = counters_reach(&mut m.sync, "rejected to count it", |c| c.rejected > 0).await;
    assert_eq!(
        (last.rejected, last.skipped_empty, last.synced),
        (1, 1, after_import.synced)
    );
}

/// The kinds of the events on one line of `sync events --json` output:
/// a line holds one event, or one batch of them.
fn event_kinds(line: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let events = match json["events"]["events"].as_array() {
        Some(batch) => batch.clone(),
        None => vec![json],
    };
    events
        .iter()
        .filter_map(|event| event["kind"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_cli_shows_pauses_resumes_rescans_and_follows_events() {
    let m = mirrored().await;
    let json = |args: &[&str]| {
        let output = m.store.daemon.ctl(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let shown = json(&["sync", "status", "--json"]);
    assert_eq!(shown["state"], "WATCHER_STATE_WATCHING");
    assert!(shown["root"].as_str().unwrap().ends_with("sync"));
    assert_eq!(shown["paused_by_user"], false);
    assert!(
        shown["counters"]["synced"].is_string(),
        "uint64 as a string"
    );

    assert_eq!(
        json(&["sync", "pause", "--json"]),
        serde_json::json!({"state": "WATCHER_STATE_PAUSED", "was_paused": false})
    );
    assert_eq!(json(&["sync", "pause", "--json"])["was_paused"], true);
    assert_eq!(
        json(&["sync", "resume", "--json"])["state"],
        "WATCHER_STATE_WATCHING"
    );
    let rescan = json(&["sync", "rescan", "--json"]);
    assert_eq!(rescan["imported"], 0);
    assert!(rescan["scanned"].as_u64().unwrap() >= 2, "{rescan}");
    assert_eq!(
        json(&["sync", "conflicts", "--json"])["conflicts"],
        serde_json::json!([])
    );

    let unknown = m
        .store
        .daemon
        .ctl(&["sync", "resolve", "no-such-id", "--keep", "disk"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("not found"),
        "{}",
        stderr(&unknown)
    );
    assert!(stdout(&unknown).is_empty());

    // `sync events` follows live: one line per event as it happens.
    let mut follower = crate::harness::ctl_command()
        .args(["--addr", &m.store.daemon.unix_address().to_string()])
        .args(["sync", "events", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (line_tx, lines) = std::sync::mpsc::channel();
    let output = follower.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    // Edits until one is followed: the follower may subscribe only after
    // the first edit, whose event it then never sees.
    let file = m.file("footer/footer_links.html");
    let mut seen = Vec::new();
    'edits: for attempt in 0..10 {
        fs::write(&file, format!("<a>followed {attempt}</a>")).unwrap();
        let give_up = Instant::now() + Duration::from_secs(3);
        while let Ok(line) = lines.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
            let imported = event_kinds(&line)
                .iter()
                .any(|kind| kind == "SYNC_EVENT_KIND_IMPORTED");
            seen.push(line);
            if imported {
                break 'edits;
            }
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(
        seen.last()
            .is_some_and(|line| line.contains("footer_links.html")),
        "an IMPORTED line: {seen:#?}"
    );
}
