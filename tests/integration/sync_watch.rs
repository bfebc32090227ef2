//! The sync watcher and reconciler against a running daemon: what a change
//! of a file does to the database and back, what is refused or ignored,
//! events queued during a pause, exports with the watcher on, deletes on
//! either side. Pause and resume from many callers, the start-up rescan,
//! the status and the CLI are in `sync_control.rs`.
//!
//! What a store could change runs on both content stores
//! ([`both_stores!`]): the native one and a MyBB forum's database. What
//! only the native store can do (a set or theme created by putting into
//! it) and what does not depend on the store (exports racing a reader,
//! pause and resume, the CLI) runs on the native store.

use std::{
    fs::{self, File},
    io::{Read, Seek},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
};

use outpost::proto::v1::{self as pb, SyncEventKind as K};
use tonic::Code;

use crate::{
    harness::{START_DEADLINE, eventually, wait_until},
    stores::{Backend, both_stores},
    sync_support::{
        EVENT_DEADLINE, Mirrored, SyncClient, SyncEvents, about, at, export, files, key, put,
        quiesce, status, sync_daemon, sync_root, template, templates,
    },
};

/// The template set most tests use.
pub(crate) const SET: &str = "Default";
/// The original content of `header_welcome`.
const WELCOME: &str = "<b>welcome</b>\n";
/// The original content of `footer_links`.
pub(crate) const LINKS: &str = "<a href=\"/\">home</a>\n";

/// A daemon on `backend` with [`SET`] mirrored: `header_welcome` and
/// `footer_links`; None if the store cannot be had
/// ([`Backend::start_with`]).
pub(crate) async fn mirrored_on(backend: Backend) -> Option<Mirrored> {
    let store = backend.sync_daemon(&[])?;
    Some(
        Mirrored::start(
            store,
            SET,
            &[("header_welcome", WELCOME), ("footer_links", LINKS)],
        )
        .await,
    )
}

/// [`mirrored_on`] the native store.
pub(crate) async fn mirrored() -> Mirrored {
    mirrored_on(Backend::Native)
        .await
        .expect("the native store is always there")
}

/// The version of `header_welcome` of [`SET`].
async fn welcome_version(m: &mut Mirrored) -> u64 {
    template(&mut m.sync, SET, "header_welcome").await.version
}

/// The titles of [`SET`] without the master templates a MyBB set shows.
async fn own_titles(m: &mut Mirrored) -> Vec<String> {
    let titles = templates(&mut m.sync, SET)
        .await
        .into_iter()
        .map(|t| t.key.unwrap().title);
    m.store.own(titles)
}

/// Whether `sync` reports template `title` of [`SET`] as absent.
async fn absent(sync: &mut SyncClient, title: &str) -> bool {
    let result = sync
        .get_template(pb::GetTemplateRequest {
            key: key(SET, title),
        })
        .await;
    matches!(result, Err(status) if status.code() == Code::NotFound)
}

both_stores!(empty_file_rejected);
async fn empty_file_rejected(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    let new = m.file("header/header_new.html");
    // Truncated to 0 bytes, as an interrupted save leaves a file, and a
    // new file created empty.
    File::create(&file).unwrap();
    File::create(&new).unwrap();
    for path in [&file, &new] {
        let event = m
            .events
            .wait_for(&format!("SKIPPED_EMPTY of {}", path.display()), |e| {
                at(e, K::SkippedEmpty, path)
            })
            .await;
        assert!(Path::new(&event.path).is_absolute());
    }
    quiesce(&mut m.sync, &mut m.events).await;

    let kept = template(&mut m.sync, SET, "header_welcome").await;
    assert_eq!(
        (kept.content, kept.version),
        (m.store.stored(WELCOME), before)
    );
    assert!(absent(&mut m.sync, "header_new").await, "no empty template");
    assert!(
        m.events.matching(|e| e.kind() == K::Imported).is_empty(),
        "nothing imported: {:#?}",
        m.events.seen
    );
}

both_stores!(tiny_file_accepted);
async fn tiny_file_accepted(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    fs::write(&file, "x").unwrap();
    let imported = m
        .events
        .wait_for("the 1-byte file imported", |e| {
            about(e, K::Imported, SET, "header_welcome")
        })
        .await;
    assert_eq!(Path::new(&imported.path), file);
    assert_ne!(imported.version, before, "a new version");
    let stored = template(&mut m.sync, SET, "header_welcome").await;
    assert_eq!(
        (stored.content.as_str(), stored.version),
        ("x", imported.version)
    );

    fs::write(m.file("header/header_one.html"), "y").unwrap();
    let created = m
        .events
        .wait_for("a new 1-byte file imported", |e| {
            about(e, K::Imported, SET, "header_one")
        })
        .await;
    let one = template(&mut m.sync, SET, "header_one").await;
    assert_eq!((one.content.as_str(), one.version), ("y", created.version));
}

both_stores!(file_deleted_during_processing);
async fn file_deleted_during_processing(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let file = m.file("header/header_welcome.html");
    let ghost = m.file("header/header_ghost.html");
    // Each file changes and is gone before the debounce has passed: the
    // reconciler's read finds nothing.
    fs::write(&file, "<b>changed, then deleted</b>").unwrap();
    fs::remove_file(&file).unwrap();
    fs::write(&ghost, "<b>here for a moment</b>").unwrap();
    fs::remove_file(&ghost).unwrap();

    m.events
        .wait_for("ORPHANED of the deleted file", |e| {
            about(e, K::Orphaned, SET, "header_welcome") && Path::new(&e.path) == file
        })
        .await;
    quiesce(&mut m.sync, &mut m.events).await;

    let kept = template(&mut m.sync, SET, "header_welcome").await;
    assert!(
        [
            m.store.stored(WELCOME),
            "<b>changed, then deleted</b>".to_owned()
        ]
        .contains(&kept.content),
        "content kept whole: {kept:?}"
    );
    assert!(absent(&mut m.sync, "header_ghost").await);
    assert!(
        m.events
            .matching(|e| matches!(e.kind(), K::WatcherError | K::Failing))
            .is_empty()
    );
    let now = status(&mut m.sync).await;
    assert_eq!(now.last_error, "", "handled without error");
    assert_eq!(now.failing_count, 0, "{:?}", now.latest_failure);
    assert_eq!(now.state(), pb::WatcherState::Watching);

    // Still watching.
    fs::write(m.file("footer/footer_links.html"), "<a>later</a>").unwrap();
    m.events
        .wait_for("a later edit imported", |e| {
            about(e, K::Imported, SET, "footer_links")
        })
        .await;
}

both_stores!(validation_logs_warning);
async fn validation_logs_warning(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    // "café" in Latin-1: not UTF-8.
    fs::write(&file, b"<b>caf\xe9</b>\n").unwrap();
    let rejected = m
        .events
        .wait_for("REJECTED of the non-UTF-8 file", |e| {
            at(e, K::Rejected, &file)
        })
        .await;
    assert!(
        rejected.message.to_lowercase().contains("utf"),
        "the reason names UTF-8: {:?}",
        rejected.message
    );
    quiesce(&mut m.sync, &mut m.events).await;
    let kept = template(&mut m.sync, SET, "header_welcome").await;
    assert_eq!(
        (kept.content, kept.version),
        (m.store.stored(WELCOME), before)
    );
    assert!(m.events.matching(|e| e.kind() == K::Imported).is_empty());
    wait_until("a warning naming the file", START_DEADLINE, || {
        m.store
            .daemon
            .log
            .text()
            .lines()
            .any(|line| line.contains("WARN") && line.contains("header_welcome.html"))
    });
}

both_stores!(events_queue_during_pause);
async fn events_queue_during_pause(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    // Exports pause the watcher too; only what follows counts here.
    let mark = m.events.mark();
    let paused = m
        .sync
        .pause_watcher(pb::PauseWatcherRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state(), pb::WatcherState::Paused);
    assert!(!paused.was_paused);
    let during = status(&mut m.sync).await;
    assert!(during.paused_by_user);
    assert_eq!(during.state(), pb::WatcherState::Paused);

    fs::write(m.file("header/header_welcome.html"), "<b>edited</b>").unwrap();
    fs::write(m.file("header/header_queued.html"), "<b>new</b>").unwrap();
    // Once the engine holds both paths, it has seen the changes and,
    // paused, acted on neither.
    let connection = m.connection.clone();
    eventually("both changes queued", START_DEADLINE, || {
        let mut sync = connection.sync();
        async move { (status(&mut sync).await.dirty_count >= 2).then_some(()) }
    })
    .await;
    let still = template(&mut m.sync, SET, "header_welcome").await;
    assert_eq!(
        (still.content, still.version),
        (m.store.stored(WELCOME), before)
    );
    assert!(absent(&mut m.sync, "header_queued").await);

    let resumed = m
        .sync
        .resume_watcher(pb::ResumeWatcherRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.state(), pb::WatcherState::Watching);
    assert!(resumed.queued_changes >= 2, "{resumed:?}");
    let resumed_at = m
        .events
        .wait_for("RESUMED", |e| e.kind() == K::Resumed && e.revision > mark)
        .await
        .revision;
    for title in ["header_welcome", "header_queued"] {
        let imported = m
            .events
            .wait_for(&format!("{title} imported"), |e| {
                about(e, K::Imported, SET, title)
            })
            .await;
        assert!(imported.revision > resumed_at, "imported only after resume");
    }
    assert_eq!(
        template(&mut m.sync, SET, "header_welcome").await.content,
        "<b>edited</b>"
    );
    assert_eq!(
        template(&mut m.sync, SET, "header_queued").await.content,
        "<b>new</b>"
    );
    let paused_at = m
        .events
        .wait_for("PAUSED", |e| e.kind() == K::Paused && e.revision > mark)
        .await
        .revision;
    assert!(paused_at < resumed_at);
}

both_stores!(watcher_ignores_tmp_files);
async fn watcher_ignores_tmp_files(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let header = m.file("header");
    let ignored = [
        ".outpost-1-2-header_welcome.html.tmp",
        "header_welcome.html.outpost-conflict-abc123",
        "header_welcome.html~",
        ".#header_welcome.html",
        "#header_welcome.html#",
        ".header_welcome.html.swp",
        ".header_welcome.html.swx",
        "4913",
        "header_welcome.html___jb_tmp___",
        "header_welcome.html___jb_old___",
        "sedAbC123",
        ".goutputstream-XJ3K2Z",
    ];
    for name in ignored {
        fs::write(header.join(name), "<p>junk</p>").unwrap();
    }
    // Renamed and removed as editors do, too.
    fs::rename(header.join("4913"), header.join("4914")).unwrap();
    fs::remove_file(header.join("sedAbC123")).unwrap();
    // A real change after them: once it is in, they have been looked at.
    fs::write(m.file("header/header_marker.html"), "<i>marker</i>").unwrap();
    m.events
        .wait_for("the marker imported", |e| {
            about(e, K::Imported, SET, "header_marker")
        })
        .await;
    let rescan = quiesce(&mut m.sync, &mut m.events).await;
    assert_eq!((rescan.imported, rescan.conflicts), (0, 0), "{rescan:?}");

    let named_ignored = |event: &pb::SyncEvent| {
        let name = Path::new(&event.path).file_name().unwrap_or_default();
        ignored
            .iter()
            .chain(&["4914"])
            .any(|ignored| name == *ignored)
    };
    assert!(
        m.events.matching(named_ignored).is_empty(),
        "no event about an ignored file: {:#?}",
        m.events.seen
    );
    assert_eq!(
        own_titles(&mut m).await,
        ["footer_links", "header_marker", "header_welcome"]
    );
    assert_eq!(
        template(&mut m.sync, SET, "header_welcome").await.content,
        m.store.stored(WELCOME)
    );
    assert_eq!(status(&mut m.sync).await.counters.unwrap().rejected, 0);
}

/// Content `round` of generated template `i`: recognisable whole.
fn round_content(round: usize, i: usize) -> String {
    format!(
        "<!-- round {round} of {i} -->\n{}\n<!-- end {round} of {i} -->\n",
        "y".repeat(4000 + i)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_uses_atomic_pattern() {
    const COUNT: usize = 100;
    let daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    for i in 0..COUNT {
        sync.put_template(put(
            "Atomic",
            &format!("page_{i:03}"),
            &round_content(1, i),
            None,
        ))
        .await
        .unwrap();
    }
    let dir = sync_root(&mut sync).await.join("templates/Atomic/page");
    let paths: Vec<PathBuf> = (0..COUNT)
        .map(|i| dir.join(format!("page_{i:03}.html")))
        .collect();

    // A reader that looks at every file over and over while exports run:
    // each read must be a whole version, and a file, once there, never
    // goes missing.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (paths, stop, reads) = (paths.clone(), Arc::clone(&stop), Arc::clone(&reads));
        thread::spawn(move || {
            let mut present = vec![false; paths.len()];
            while !stop.load(Ordering::Relaxed) {
                for (i, path) in paths.iter().enumerate() {
                    match fs::read(path) {
                        Ok(bytes) => {
                            let text = String::from_utf8(bytes).expect("whole UTF-8");
                            assert!(
                                text == round_content(1, i) || text == round_content(2, i),
                                "{} read partial: {} bytes",
                                path.display(),
                                text.len()
                            );
                            present[i] = true;
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                            assert!(!present[i], "{} went missing", path.display());
                        }
                        Err(err) => panic!("{}: {err}", path.display()),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    assert_eq!(export(&mut sync, "Atomic").await.written as usize, COUNT);
    let mut old: Vec<File> = paths.iter().map(|p| File::open(p).unwrap()).collect();
    // The set is mirrored: the new content flows to disk by itself, and
    // an export at the same time writes what is still missing.
    for i in 0..COUNT {
        sync.put_template(put(
            "Atomic",
            &format!("page_{i:03}"),
            &round_content(2, i),
            None,
        ))
        .await
        .unwrap();
    }
    let summary = export(&mut sync, "Atomic").await;
    assert_eq!(summary.conflicts, 0, "{summary:?}");
    assert_eq!((summary.written + summary.unchanged) as usize, COUNT);
    eventually("every file to hold round 2", EVENT_DEADLINE, || {
        let done = paths
            .iter()
            .enumerate()
            .all(|(i, p)| fs::read_to_string(p).is_ok_and(|t| t == round_content(2, i)));
        async move { done.then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("no partial or missing file was read");
    assert!(reads.load(Ordering::Relaxed) >= COUNT, "the reader ran");

    // Each old file was replaced by a rename, never written in place: an
    // open descriptor still reads the old content whole, from an inode
    // that no name links to any more.
    for (i, file) in old.iter_mut().enumerate() {
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, round_content(1, i), "page_{i:03} written in place");
        assert_eq!(file.metadata().unwrap().nlink(), 0, "page_{i:03} replaced");
    }
    assert!(
        files(&dir).iter().all(|name| name.ends_with(".html")),
        "no temp left: {:?}",
        files(&dir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_with_watcher_active_no_corruption() {
    const COUNT: usize = 200;
    const ROUNDS: usize = 4;
    let daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    let (mut events, _) = SyncEvents::open(&connection, &[]).await;
    let mut versions = vec![0; COUNT];
    for round in 0..ROUNDS {
        // New content in the database (flowing to disk by itself once the
        // set is mirrored), then an export racing with that.
        for (i, version) in versions.iter_mut().enumerate() {
            let written = sync
                .put_template(put(
                    "Race",
                    &format!("t_{i:03}"),
                    &round_content(round, i),
                    None,
                ))
                .await
                .unwrap()
                .into_inner();
            *version = written.template.unwrap().version;
        }
        let summary = export(&mut sync, "Race").await;
        assert_eq!(summary.conflicts, 0, "round {round}: {summary:?}");
    }
    let finished = |events: &SyncEvents| events.matching(|e| e.kind() == K::ExportFinished).len();
    while finished(&events) < ROUNDS {
        events
            .until("EXPORT_FINISHED of every export", |e| {
                e.kind() == K::ExportFinished
            })
            .await;
    }
    quiesce(&mut sync, &mut events).await;

    let echoes = events.matching(|e| e.kind() == K::Imported);
    assert!(
        echoes.is_empty(),
        "the exports' own writes came back: {echoes:#?}"
    );
    for kind in [K::Conflict, K::SkippedEmpty, K::Rejected, K::Orphaned] {
        assert!(events.matching(|e| e.kind() == kind).is_empty(), "{kind:?}");
    }
    let stored = templates(&mut sync, "Race").await;
    assert_eq!(stored.len(), COUNT, "none lost");
    let dir = sync_root(&mut sync).await.join("templates/Race/t");
    for (i, template) in stored.iter().enumerate() {
        let expected = round_content(ROUNDS - 1, i);
        assert_eq!(
            template.content, expected,
            "t_{i:03} intact in the database"
        );
        assert_eq!(template.version, versions[i], "t_{i:03} not rewritten");
        let on_disk = fs::read_to_string(dir.join(format!("t_{i:03}.html"))).unwrap();
        assert_eq!(on_disk, expected, "t_{i:03} whole on disk");
    }
}

both_stores!(database_changes_flow_to_mirrored_sets_only);
async fn database_changes_flow_to_mirrored_sets_only(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let file = m.file("header/header_welcome.html");
    let changed = m
        .sync
        .put_template(put(
            SET,
            "header_welcome",
            "<b>from the admin panel</b>",
            None,
        ))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let exported = m
        .events
        .wait_for("EXPORTED of the change", |e| {
            about(e, K::Exported, SET, "header_welcome")
        })
        .await;
    assert_eq!(
        (Path::new(&exported.path), exported.version),
        (&*file, changed.version)
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "<b>from the admin panel</b>"
    );
    m.events
        .wait_for("CONTENT_CHANGED of the put", |e| {
            about(e, K::ContentChanged, SET, "header_welcome")
        })
        .await;

    m.store.create_set("Unmirrored");
    m.sync
        .put_template(put("Unmirrored", "header_x", "<b>db only</b>", None))
        .await
        .unwrap();
    m.sync
        .put_template(put(SET, "header_added", "<b>added</b>", None))
        .await
        .unwrap();
    m.events
        .wait_for("EXPORTED of the new template", |e| {
            about(e, K::Exported, SET, "header_added")
        })
        .await;
    assert_eq!(
        fs::read_to_string(m.file("header/header_added.html")).unwrap(),
        "<b>added</b>"
    );
    quiesce(&mut m.sync, &mut m.events).await;
    let root = sync_root(&mut m.sync).await;
    assert!(
        !root.join("templates/Unmirrored").exists(),
        "a set without a directory is not mirrored"
    );

    // Stylesheets alike.
    let css = |content: &str| pb::PutStylesheetRequest {
        key: Some(pb::StylesheetKey {
            theme: "Default".to_owned(),
            name: "global.css".to_owned(),
        }),
        content: content.to_owned(),
        expected_version: None,
    };
    m.sync.put_stylesheet(css("a { }")).await.unwrap();
    m.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Default".to_owned(),
        })
        .await
        .unwrap();
    m.sync.put_stylesheet(css("b { }")).await.unwrap();
    let sheet = root.join("stylesheets/Default/global.css");
    m.events
        .wait_for("EXPORTED of the stylesheet", |e| at(e, K::Exported, &sheet))
        .await;
    assert_eq!(fs::read_to_string(&sheet).unwrap(), "b { }");
}

#[tokio::test]
async fn new_files_create_templates_sets_and_stylesheets() {
    let daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    let (mut events, _) = SyncEvents::open(&connection, &[]).await;
    let root = sync_root(&mut sync).await;
    let set = root.join("templates/NewSet");
    fs::create_dir_all(set.join("header")).unwrap();
    fs::write(set.join("header/header_new.html"), "<b>new</b>").unwrap();
    let imported = events
        .wait_for("the new file imported", |e| {
            about(e, K::Imported, "NewSet", "header_new")
        })
        .await;
    assert_eq!(imported.version, 1);
    let sets = sync
        .list_template_sets(pb::ListTemplateSetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sets;
    assert!(sets.iter().any(|s| s.name == "NewSet"), "{sets:?}");
    assert_eq!(
        template(&mut sync, "NewSet", "header_new").await.content,
        "<b>new</b>"
    );

    // In the wrong group's directory: refused.
    fs::create_dir_all(set.join("footer")).unwrap();
    let misplaced = set.join("footer/header_misplaced.html");
    fs::write(&misplaced, "<b>lost?</b>").unwrap();
    let rejected = events
        .wait_for("REJECTED of the misplaced file", |e| {
            at(e, K::Rejected, &misplaced)
        })
        .await;
    assert!(!rejected.message.is_empty());

    let theme = root.join("stylesheets/NewTheme");
    fs::create_dir_all(&theme).unwrap();
    let sheet = theme.join("global.css");
    fs::write(&sheet, "body { color: red }").unwrap();
    events
        .wait_for("the new stylesheet imported", |e| {
            at(e, K::Imported, &sheet)
        })
        .await;
    let stored = sync
        .get_stylesheet(pb::GetStylesheetRequest {
            key: Some(pb::StylesheetKey {
                theme: "NewTheme".to_owned(),
                name: "global.css".to_owned(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stylesheet
        .unwrap();
    assert_eq!(stored.content, "body { color: red }");

    quiesce(&mut sync, &mut events).await;
    let titles: Vec<String> = templates(&mut sync, "NewSet")
        .await
        .into_iter()
        .map(|t| t.key.unwrap().title)
        .collect();
    assert_eq!(titles, ["header_new"], "the misplaced file created nothing");
}

both_stores!(a_file_deleted_on_disk_is_orphaned_and_its_content_kept);
async fn a_file_deleted_on_disk_is_orphaned_and_its_content_kept(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    fs::remove_file(&file).unwrap();
    let orphaned = m
        .events
        .wait_for("ORPHANED", |e| about(e, K::Orphaned, SET, "header_welcome"))
        .await;
    assert_eq!(Path::new(&orphaned.path), file);
    quiesce(&mut m.sync, &mut m.events).await;
    let kept = template(&mut m.sync, SET, "header_welcome").await;
    assert_eq!(
        (kept.content, kept.version),
        (m.store.stored(WELCOME), before)
    );
    assert_eq!(own_titles(&mut m).await, ["footer_links", "header_welcome"]);
}

both_stores!(an_api_delete_removes_the_unchanged_file);
async fn an_api_delete_removes_the_unchanged_file(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    m.sync
        .delete_template(pb::DeleteTemplateRequest {
            key: key(SET, "header_welcome"),
            expected_version: Some(before),
        })
        .await
        .unwrap();
    m.events
        .wait_for("CONTENT_CHANGED of the delete", |e| {
            about(e, K::ContentChanged, SET, "header_welcome")
        })
        .await;
    wait_until("the file to be removed", EVENT_DEADLINE, || !file.exists());
    quiesce(&mut m.sync, &mut m.events).await;
    assert!(
        absent(&mut m.sync, "header_welcome").await,
        "not re-imported"
    );
    assert!(m.file("footer/footer_links.html").exists());
}

both_stores!(content_deleted_and_created_again_at_the_same_version_reaches_the_file);
async fn content_deleted_and_created_again_at_the_same_version_reaches_the_file(backend: Backend) {
    let Some(mut m) = mirrored_on(backend).await else {
        return;
    };
    let before = welcome_version(&mut m).await;
    let file = m.file("header/header_welcome.html");
    // Both API calls land before the reconciler looks: natively the row is
    // back at version 1, with other content (a MyBB version token differs,
    // but the new content must reach the file all the same).
    m.sync
        .pause_watcher(pb::PauseWatcherRequest {})
        .await
        .unwrap();
    m.sync
        .delete_template(pb::DeleteTemplateRequest {
            key: key(SET, "header_welcome"),
            expected_version: Some(before),
        })
        .await
        .unwrap();
    let again = m
        .sync
        .put_template(put(SET, "header_welcome", "<b>born again</b>", Some(0)))
        .await
        .unwrap()
        .into_inner();
    if backend == Backend::Native {
        assert_eq!(again.template.unwrap().version, before, "the same version");
    }
    m.sync
        .resume_watcher(pb::ResumeWatcherRequest {})
        .await
        .unwrap();
    m.events
        .wait_for("the new content exported", |e| {
            about(e, K::Exported, SET, "header_welcome")
        })
        .await;
    assert_eq!(fs::read_to_string(&file).unwrap(), "<b>born again</b>");
}
