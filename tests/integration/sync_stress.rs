//! Sync under load and under attack: exports repeated while files are
//! edited and the database changes, then symlinks pointing out of the sync
//! root, oversized files and NUL bytes. The hostile files run on both
//! content stores ([`both_stores!`]); the load, on the native one.

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use outpost::proto::v1::{self as pb, SyncEventKind as K};
use tokio::task::JoinSet;

use crate::{
    harness::eventually,
    stores::{Backend, both_stores},
    sync_support::{
        Mirrored, SyncClient, about, at, counters_reach, export, files, put, quiesce, status,
        sync_daemon, sync_root, template, templates,
    },
};

/// Templates in the stress set.
const COUNT: usize = 1000;
/// Exports of the whole set.
const EXPORTS: usize = 20;
/// Templates changed in the database before each export.
const DB_CHANGES_PER_EXPORT: usize = 50;
/// At most this many disk edits (fewer when the exports finish first).
const MAX_EDITS: usize = 1000;
/// The editing user's pause between two saves.
const EDIT_PACE: Duration = Duration::from_millis(10);
/// How long everything may take to settle after the load.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// A xorshift64* generator: enough randomness to pick files, and
/// reproducible from the seed a failing run prints.
struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock; prints the seed.
    fn from_clock() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("random seed {seed}");
        Self(seed)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
    }
}

/// The title of stress template `i`. Even ones change only in the
/// database, odd ones only on disk.
fn title(i: usize) -> String {
    format!("t_{i:04}")
}

/// About 5 KiB, whole only with both markers: `<!-- LABEL -->` first and
/// `<!-- end LABEL -->` last.
fn marked(label: &str) -> String {
    format!(
        "<!-- {label} -->\n{}\n<!-- end {label} -->\n",
        "x".repeat(5000)
    )
}

/// Whether `content` is one whole [`marked`] text.
fn whole(content: &str) -> bool {
    let mut lines = content.lines();
    let first = lines.next().and_then(|line| line.strip_prefix("<!-- "));
    let last = lines.last().and_then(|line| line.strip_prefix("<!-- end "));
    first.is_some() && first == last && content.ends_with("-->\n")
}

/// The database content of template `i` after `round` changes.
fn db_content(round: usize, i: usize) -> String {
    marked(&format!("db {round} of {i}"))
}

/// The content of disk edit number `edit`, of template `i`.
fn disk_content(edit: usize, i: usize) -> String {
    marked(&format!("disk {edit} of {i}"))
}

/// Saves `content` to `path` as an editor would: rewritten in place
/// (truncate, then two writes) or written aside and renamed over it.
fn save(path: &Path, content: &str, in_place: bool) {
    let bytes = content.as_bytes();
    if in_place {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.write_all(&bytes[..bytes.len() / 2]).unwrap();
        file.write_all(&bytes[bytes.len() / 2..]).unwrap();
    } else {
        let mut aside = path.as_os_str().to_owned();
        aside.push("___jb_tmp___");
        fs::write(&aside, bytes).unwrap();
        fs::rename(&aside, path).unwrap();
    }
}

/// Keeps saving random odd templates under `dir` until `stop` is set or
/// [`MAX_EDITS`] were made; returns the last content saved to each.
fn edit_until(dir: PathBuf, stop: Arc<AtomicBool>, mut rng: Rng) -> HashMap<usize, String> {
    let mut last = HashMap::new();
    for edit in 0..MAX_EDITS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = rng.below(COUNT / 2) * 2 + 1;
        let content = disk_content(edit, i);
        save(
            &dir.join(format!("{}.html", title(i))),
            &content,
            rng.below(2) == 0,
        );
        last.insert(i, content);
        // The user's pause between saves: the scenario, not a wait.
        thread::sleep(EDIT_PACE);
    }
    last
}

/// Puts `content(i)` for each of `indices` into set `Stress`, eight calls
/// at a time; returns each one's new version.
async fn put_all(
    sync: &SyncClient,
    indices: Vec<usize>,
    content: impl Fn(usize) -> String,
) -> Vec<(usize, u64)> {
    let mut calls = JoinSet::new();
    for chunk in indices.chunks(indices.len().div_ceil(8)) {
        let mut sync = sync.clone();
        let requests: Vec<_> = chunk
            .iter()
            .map(|&i| (i, put("Stress", &title(i), &content(i), None)))
            .collect();
        calls.spawn(async move {
            let mut versions = Vec::new();
            for (i, request) in requests {
                let put = sync.put_template(request).await.unwrap().into_inner();
                versions.push((i, put.template.unwrap().version));
            }
            versions
        });
    }
    let mut versions = Vec::new();
    while let Some(done) = calls.join_next().await {
        versions.extend(done.unwrap());
    }
    versions
}

/// Conflict copies of `file`, by content.
fn conflict_copies(file: &Path) -> Vec<String> {
    let prefix = format!(
        "{}.outpost-conflict-",
        file.file_name().unwrap().to_string_lossy()
    );
    fs::read_dir(file.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| fs::read_to_string(entry.path()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_repeated_while_files_are_edited_lose_nothing() {
    let daemon = sync_daemon(&[]);
    let mut sync = daemon.connect().await.sync();
    let mut rng = Rng::from_clock();
    let mut db = vec![(0, 0); COUNT];
    for (i, version) in put_all(&sync, (0..COUNT).collect(), |i| db_content(0, i)).await {
        db[i] = (0, version);
    }
    assert_eq!(export(&mut sync, "Stress").await.written as usize, COUNT);
    let dir = sync_root(&mut sync).await.join("templates/Stress/t");

    let stop = Arc::new(AtomicBool::new(false));
    let editor = {
        let (dir, stop, rng) = (dir.clone(), Arc::clone(&stop), Rng(rng.0 ^ 0x9e37));
        thread::spawn(move || edit_until(dir, stop, rng))
    };
    for round in 1..=EXPORTS {
        let mut changed: Vec<usize> = (0..DB_CHANGES_PER_EXPORT)
            .map(|_| rng.below(COUNT / 2) * 2)
            .collect();
        // Each at most once, so that the version recorded is the last.
        changed.sort_unstable();
        changed.dedup();
        for (i, version) in put_all(&sync, changed, |i| db_content(round, i)).await {
            db[i] = (round, version);
        }
        let summary = export(&mut sync, "Stress").await;
        assert_eq!(
            (summary.written + summary.unchanged + summary.conflicts) as usize,
            COUNT,
            "export {round}: {summary:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let edits = editor.join().unwrap();
    assert!(!edits.is_empty(), "the editor ran");

    // Each template in the database equals its file; an edited one holds
    // its last edit, or that edit waits in a conflict copy.
    let matches_disk = |stored: &[pb::Template]| {
        stored.iter().all(|template| {
            let i: usize = template.key.as_ref().unwrap().title[2..].parse().unwrap();
            let file = dir.join(format!("{}.html", title(i)));
            let on_disk = fs::read_to_string(&file).unwrap_or_default();
            let last_edit_kept = edits.get(&i).is_none_or(|edit| {
                template.content == *edit || conflict_copies(&file).contains(edit)
            });
            on_disk == template.content && last_edit_kept
        })
    };
    let stored = eventually(
        "the database and the files to agree",
        SETTLE_DEADLINE,
        || {
            let mut sync = sync.clone();
            async move {
                if status(&mut sync).await.dirty_count > 0 {
                    return None;
                }
                let stored = templates(&mut sync, "Stress").await;
                matches_disk(&stored).then_some(stored)
            }
        },
    )
    .await;

    assert_eq!(stored.len(), COUNT, "none lost, none added");
    for (i, template) in stored.iter().enumerate() {
        assert_eq!(template.key.as_ref().unwrap().title, title(i));
        assert!(whole(&template.content), "{} whole", title(i));
        if i % 2 == 0 {
            let (round, version) = db[i];
            assert!(
                template.content == db_content(round, i),
                "{} kept",
                title(i)
            );
            assert_eq!(template.version, version, "{}: no write echoed", title(i));
        } else if !edits.contains_key(&i) {
            assert!(template.content == db_content(0, i), "{} kept", title(i));
        }
    }
    let counters = status(&mut sync).await.counters.unwrap();
    assert_eq!((counters.skipped_empty, counters.rejected), (0, 0));
    let left: Vec<String> = files(&dir)
        .into_iter()
        .filter(|name| name.ends_with(".tmp") || name.ends_with("___jb_tmp___"))
        .collect();
    assert!(left.is_empty(), "temps left: {left:?}");
}

/// A daemon on `backend` with set `Default` mirrored: `header_welcome`
/// and `footer_links`; None if the store cannot be had
/// ([`Backend::start_with`]).
async fn mirrored(backend: Backend) -> Option<Mirrored> {
    let store = backend.sync_daemon(&[])?;
    Some(
        Mirrored::start(
            store,
            "Default",
            &[
                ("header_welcome", "<b>welcome</b>"),
                ("footer_links", "<a>home</a>"),
            ],
        )
        .await,
    )
}

both_stores!(symlinks_inside_the_root_are_never_followed);
async fn symlinks_inside_the_root_are_never_followed(backend: Backend) {
    let Some(mut m) = mirrored(backend).await else {
        return;
    };
    let outside = m.store.daemon.dir.path().join("outside");
    fs::create_dir_all(outside.join("set/header")).unwrap();
    fs::write(outside.join("outside.html"), "secret").unwrap();
    fs::write(outside.join("set/header/header_x.html"), "<b>outside</b>").unwrap();
    let before = files(&outside);

    let evil = m.file("header/header_evil.html");
    symlink(outside.join("outside.html"), &evil).unwrap();
    let linked_set = sync_root(&mut m.sync).await.join("templates/Linked");
    symlink(outside.join("set"), &linked_set).unwrap();

    let rejected = m
        .events
        .wait_for("REJECTED of the symlinked file", |e| {
            at(e, K::Rejected, &evil)
        })
        .await;
    assert!(rejected.message.contains("link"), "{:?}", rejected.message);
    m.events
        .wait_for("REJECTED of the symlinked set", |e| {
            e.kind() == K::Rejected && Path::new(&e.path).starts_with(&linked_set)
        })
        .await;

    // Database changes to what the links name are never written through
    // them.
    m.store.create_set("Linked");
    for (set, title) in [
        ("Default", "header_evil"),
        ("Linked", "header_x"),
        ("Linked", "header_y"),
    ] {
        m.sync
            .put_template(put(set, title, "<b>from the database</b>", None))
            .await
            .unwrap();
        m.events
            .wait_for("CONTENT_CHANGED", |e| {
                about(e, K::ContentChanged, set, title)
            })
            .await;
    }
    let rescan = quiesce(&mut m.sync, &mut m.events).await;
    assert_eq!(rescan.imported, 0, "{rescan:?}");

    assert_eq!(files(&outside), before, "nothing written outside the root");
    assert_eq!(
        fs::read_to_string(outside.join("outside.html")).unwrap(),
        "secret"
    );
    assert_eq!(
        fs::read_to_string(outside.join("set/header/header_x.html")).unwrap(),
        "<b>outside</b>"
    );
    assert!(m.events.matching(|e| e.kind() == K::Imported).is_empty());
    for (set, title) in [
        ("Default", "header_evil"),
        ("Linked", "header_x"),
        ("Linked", "header_y"),
    ] {
        let stored = template(&mut m.sync, set, title).await;
        assert_eq!(stored.content, "<b>from the database</b>", "nothing read");
    }
}

both_stores!(oversized_and_nul_files_are_rejected);
async fn oversized_and_nul_files_are_rejected(backend: Backend) {
    let Some(mut m) = mirrored(backend).await else {
        return;
    };
    let versions = |templates: Vec<pb::Template>| -> Vec<(String, String, u64)> {
        templates
            .into_iter()
            .map(|t| (t.key.unwrap().title, t.content, t.version))
            .collect()
    };
    let before = versions(
        m.store
            .own_templates(templates(&mut m.sync, "Default").await),
    );
    assert_eq!(before.len(), 2);
    let huge = format!("<p>{}</p>", "x".repeat(10 << 20));
    let (welcome, new, links) = (
        m.file("header/header_welcome.html"),
        m.file("header/header_huge.html"),
        m.file("footer/footer_links.html"),
    );
    fs::write(&welcome, &huge).unwrap();
    fs::write(&new, &huge).unwrap();
    fs::write(&links, "<a>\0</a>").unwrap();
    for path in [&welcome, &new, &links] {
        let rejected = m
            .events
            .wait_for(&format!("REJECTED of {}", path.display()), |e| {
                at(e, K::Rejected, path)
            })
            .await;
        assert!(!rejected.message.is_empty());
    }
    // Read before the barrier's rescan, which may look at them again.
    let counted = counters_reach(&mut m.sync, "rejected to count them", |c| c.rejected >= 3).await;
    assert_eq!(counted.rejected, 3);
    quiesce(&mut m.sync, &mut m.events).await;
    assert!(m.events.matching(|e| e.kind() == K::Imported).is_empty());
    let stored = versions(
        m.store
            .own_templates(templates(&mut m.sync, "Default").await),
    );
    assert_eq!(stored, before, "nothing changed");
    assert_eq!(
        [
            stored[0].0.as_str(),
            &stored[0].1,
            &stored[1].0,
            &stored[1].1
        ],
        [
            "footer_links",
            "<a>home</a>",
            "header_welcome",
            "<b>welcome</b>"
        ]
    );
}
