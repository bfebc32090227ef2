//! Real writers' save patterns, reproduced syscall by syscall (DESIGN §7,
//! "Editor save patterns") against a running daemon: whatever a watcher
//! sees in between — a truncated file, a prefix, a missing file, temp and
//! backup files — the database ends with exactly the saved content,
//! imported once, and nothing is deleted, orphaned or imported from a
//! dropping. Last, the same template changed in the database and on disk
//! at once becomes one conflict that keeps both versions.
//!
//! Each test runs on both content stores ([`both_stores!`]): the native
//! one and a MyBB forum's database.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, symlink},
    path::Path,
    process::Command,
    time::Duration,
};

use outpost::proto::v1::{self as pb, SyncEventKind as K};
use tonic::Code;

use crate::{
    harness::{Daemon, DaemonBuilder, eventually},
    stores::{Backend, both_stores},
    sync_support::{
        EVENT_DEADLINE, Mirrored, about, generated, put, quiesce, sha256, status, sync_builder,
        template, templates,
    },
};

/// The set edited.
const SET: &str = "Editors";
/// The template edited.
const TITLE: &str = "header_welcome";
/// Its file, relative to the set's directory.
const FILE: &str = "header/header_welcome.html";
/// The content of the other template, which no save touches.
const LINKS: &str = "<a href=\"/\">home</a>\n";

/// The template's content before the save: about 3 KiB.
fn original() -> String {
    format!(
        "<div class=\"welcome\">\n{}</div>\n",
        "<p>old</p>\n".repeat(280)
    )
}

/// The saved content: a different length, with multi-byte characters.
fn saved() -> String {
    format!(
        "<div class=\"welcome\">\n{}</div>\n",
        "<p>naïve café — ünïcödé</p>\n".repeat(400)
    )
}

/// A daemon (from `builder`, on `backend`) with [`SET`] mirrored:
/// [`TITLE`] holding [`original`], and `footer_links`; and [`TITLE`]'s
/// version. None if the store cannot be had ([`Backend::start_with`]).
async fn editing(backend: Backend, builder: DaemonBuilder) -> Option<(Mirrored, u64)> {
    let store = backend.start_with(builder)?;
    let mut m = Mirrored::start(store, SET, &[(TITLE, &original()), ("footer_links", LINKS)]).await;
    let version = template(&mut m.sync, SET, TITLE).await.version;
    Some((m, version))
}

/// Checks the outcome of one save of `content` made after event revision
/// `mark` to [`TITLE`] at version `before`: imported exactly once, with
/// exactly that content (as the store keeps it); nothing deleted,
/// orphaned, emptied, rejected or in conflict; no event about any of the
/// `droppings` (file names beside the file), and no template made from
/// one.
async fn assert_saved_once(
    m: &mut Mirrored,
    mark: u64,
    before: u64,
    content: &str,
    droppings: &[&str],
) {
    let newer = |event: &pb::SyncEvent| event.revision > mark;
    m.events
        .wait_for("the save imported", |e| {
            newer(e) && about(e, K::Imported, SET, TITLE)
        })
        .await;
    quiesce(&mut m.sync, &mut m.events).await;

    let imports = m.events.matching(|e| newer(e) && e.kind() == K::Imported);
    assert_eq!(imports.len(), 1, "imported once: {imports:#?}");
    let stored = template(&mut m.sync, SET, TITLE).await;
    assert_eq!(stored.version, imports[0].version, "the imported version");
    assert_ne!(stored.version, before, "a new version");
    assert!(
        stored.content == m.store.stored(content),
        "the database holds the save whole"
    );
    assert_eq!(fs::read_to_string(m.file(FILE)).unwrap(), content);
    for kind in [K::Orphaned, K::SkippedEmpty, K::Rejected, K::Conflict] {
        let unexpected = m.events.matching(|e| newer(e) && e.kind() == kind);
        assert!(unexpected.is_empty(), "{unexpected:#?}");
    }
    let about_dropping = m.events.matching(|e| {
        let name = Path::new(&e.path).file_name().unwrap_or_default();
        newer(e) && droppings.iter().any(|dropping| name == *dropping)
    });
    assert!(about_dropping.is_empty(), "{about_dropping:#?}");
    let titles: Vec<String> = templates(&mut m.sync, SET)
        .await
        .into_iter()
        .map(|t| t.key.unwrap().title)
        .collect();
    assert_eq!(
        titles.len(),
        2 + m.store.masters().len(),
        "nothing added or deleted: {titles:?}"
    );
    assert_eq!(
        m.store.own(titles),
        ["footer_links", TITLE],
        "nothing added or deleted"
    );
    assert_eq!(
        template(&mut m.sync, SET, "footer_links").await.content,
        m.store.stored(LINKS)
    );
}

both_stores!(vscode_truncate_then_chunks_never_puts_a_prefix_in_the_database);
async fn vscode_truncate_then_chunks_never_puts_a_prefix_in_the_database(backend: Backend) {
    // The default debounce (100 ms) and settle period (1 s).
    let Some((mut m, before)) = editing(backend, Daemon::builder()).await else {
        return;
    };
    let mark = m.events.mark();
    let content = saved();
    let bytes = content.as_bytes();
    // Four chunks; the first cut splits the two bytes of a 'ï', so the
    // first prefix is not even valid UTF-8.
    let split_char = content.find('ï').unwrap() + 1;
    let cuts = [
        0,
        split_char,
        bytes.len() / 3,
        bytes.len() * 2 / 3,
        bytes.len(),
    ];
    // The writer's pauses between chunks: shorter than the settle period.
    let pauses = [60, 150, 100].map(Duration::from_millis);

    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.file(FILE))
        .unwrap();
    for (n, chunk) in cuts.windows(2).enumerate() {
        if n > 0 {
            // The writer pausing mid-save: the scenario, not a wait for a
            // result.
            tokio::time::sleep(pauses[n - 1]).await;
            let meanwhile = template(&mut m.sync, SET, TITLE).await;
            assert!(
                meanwhile.version == before && meanwhile.content == m.store.stored(&original()),
                "chunk {} of 4 not written yet, and the database has version {} of {} bytes",
                n + 1,
                meanwhile.version,
                meanwhile.size_bytes
            );
        }
        file.write_all(&bytes[chunk[0]..chunk[1]]).unwrap();
    }
    drop(file);
    assert_saved_once(&mut m, mark, before, &content, &[]).await;
}

both_stores!(vim_default_renames_to_a_backup_and_writes_a_new_file);
async fn vim_default_renames_to_a_backup_and_writes_a_new_file(backend: Backend) {
    let Some((mut m, before)) = editing(backend, sync_builder(&[])).await else {
        return;
    };
    let mark = m.events.mark();
    let dir = m.file("header");
    let (file, backup, swap) = (
        m.file(FILE),
        dir.join("header_welcome.html~"),
        dir.join(".header_welcome.html.swp"),
    );
    // Opening the file for editing creates the swap file.
    fs::write(&swap, b"b0VIM 9.1\0\0\0\0\x10\0\0swap").unwrap();
    // :w — probe whether the directory is writable with "4913".
    let probe = dir.join("4913");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&probe)
        .unwrap();
    fs::remove_file(&probe).unwrap();
    // Back up by renaming, then write the file anew.
    fs::rename(&file, &backup).unwrap();
    let mut new = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&file)
        .unwrap();
    new.write_all(saved().as_bytes()).unwrap();
    new.sync_all().unwrap();
    drop(new);
    // The write succeeded: the backup goes ('writebackup'), and on :q the
    // swap file.
    fs::remove_file(&backup).unwrap();
    fs::remove_file(&swap).unwrap();
    assert_saved_once(
        &mut m,
        mark,
        before,
        &saved(),
        &["header_welcome.html~", ".header_welcome.html.swp", "4913"],
    )
    .await;
}

both_stores!(jetbrains_safe_write_swaps_in_a_temp_file);
async fn jetbrains_safe_write_swaps_in_a_temp_file(backend: Backend) {
    let Some((mut m, before)) = editing(backend, sync_builder(&[])).await else {
        return;
    };
    let mark = m.events.mark();
    let file = m.file(FILE);
    let dir = m.file("header");
    let temp = dir.join("header_welcome.html___jb_tmp___");
    let old = dir.join("header_welcome.html___jb_old___");
    fs::write(&temp, saved()).unwrap();
    fs::rename(&file, &old).unwrap();
    fs::rename(&temp, &file).unwrap();
    fs::remove_file(&old).unwrap();
    assert_saved_once(
        &mut m,
        mark,
        before,
        &saved(),
        &[
            "header_welcome.html___jb_tmp___",
            "header_welcome.html___jb_old___",
        ],
    )
    .await;
}

both_stores!(emacs_locks_backs_up_by_renaming_and_writes_a_new_file);
async fn emacs_locks_backs_up_by_renaming_and_writes_a_new_file(backend: Backend) {
    let Some((mut m, before)) = editing(backend, sync_builder(&[])).await else {
        return;
    };
    let mark = m.events.mark();
    let file = m.file(FILE);
    let dir = m.file("header");
    let (lock, autosave, backup) = (
        dir.join(".#header_welcome.html"),
        dir.join("#header_welcome.html#"),
        dir.join("header_welcome.html~"),
    );
    // The first change locks the file (a dangling symlink naming the
    // editing user and process); auto-save writes the buffer aside.
    symlink("user@host.4242:1763800000", &lock).unwrap();
    fs::write(&autosave, saved()).unwrap();
    // C-x C-s: the first save backs up by renaming, then writes anew.
    fs::rename(&file, &backup).unwrap();
    let mut new = File::create(&file).unwrap();
    new.write_all(saved().as_bytes()).unwrap();
    drop(new);
    fs::remove_file(&autosave).unwrap();
    fs::remove_file(&lock).unwrap();
    assert_saved_once(
        &mut m,
        mark,
        before,
        &saved(),
        &[
            ".#header_welcome.html",
            "#header_welcome.html#",
            "header_welcome.html~",
        ],
    )
    .await;
    assert_eq!(
        fs::read_to_string(&backup).unwrap(),
        m.store.stored(&original()),
        "the backup (of the file as exported) stays, untouched"
    );
}

both_stores!(sed_in_place_renames_its_temp_over_the_file);
async fn sed_in_place_renames_its_temp_over_the_file(backend: Backend) {
    let Some((mut m, before)) = editing(backend, sync_builder(&[])).await else {
        return;
    };
    let mark = m.events.mark();
    let temp = m.file("header/sedAbC123");
    let edited = original().replace("old", "new");
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .unwrap();
    out.write_all(edited.as_bytes()).unwrap();
    drop(out);
    fs::rename(&temp, m.file(FILE)).unwrap();
    assert_saved_once(&mut m, mark, before, &edited, &["sedAbC123"]).await;
}

/// Templates in the `git checkout` test.
const CHECKOUT_FILES: usize = 200;

/// The title of template `i` of the `git checkout` test: in group `misc`,
/// which MyBB has too, so that its file is in the same directory (see
/// [`checkout_file`]) on both stores.
fn checkout_title(i: usize) -> String {
    format!("misc_page_{i:03}")
}

/// The file of template `i` of the `git checkout` test, relative to the
/// set's directory.
fn checkout_file(i: usize) -> String {
    format!("misc/{}.html", checkout_title(i))
}

/// The checked-out content of template `i`.
fn checked_out(i: usize) -> String {
    format!("<!-- branch b -->\n{}", generated(i))
}

/// Runs `git ARGS…` on the repository `git_dir` with work tree
/// `work_tree`, isolated from any user or system configuration.
fn git(git_dir: &Path, work_tree: &Path, args: &[&str]) {
    let output = Command::new("git")
        .env("GIT_DIR", git_dir)
        .env("GIT_WORK_TREE", work_tree)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether `git` can be run.
fn have_git() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Checks out a branch in which every file of `set_dir` (holding what
/// the export of [`generated`] content wrote) holds [`checked_out`]
/// content: with real `git`
/// when it is installed (history kept outside the sync root), else by
/// doing what it does to each file: unlink, create, write, close.
fn checkout(history: &Path, set_dir: &Path) {
    let names: Vec<String> = (0..CHECKOUT_FILES).map(checkout_file).collect();
    if !have_git() {
        for (i, name) in names.iter().enumerate() {
            let path = set_dir.join(name);
            fs::remove_file(&path).unwrap();
            let mut file = File::create_new(&path).unwrap();
            file.write_all(checked_out(i).as_bytes()).unwrap();
        }
        return;
    }
    // Both branches are built in a scratch work tree outside the root.
    let (repo, scratch) = (history.join("repo.git"), history.join("scratch"));
    fs::create_dir_all(scratch.join("misc")).unwrap();
    git(&repo, &scratch, &["init", "-q"]);
    // Branch a is what the export wrote (a MyBB store strips trailing
    // whitespace), so that git finds the work tree clean.
    let exported = |i: usize| fs::read_to_string(set_dir.join(checkout_file(i))).unwrap();
    let branches: [(&str, &dyn Fn(usize) -> String); 2] = [("a", &exported), ("b", &checked_out)];
    for (branch, content) in branches {
        for (i, name) in names.iter().enumerate() {
            fs::write(scratch.join(name), content(i)).unwrap();
        }
        git(&repo, &scratch, &["add", "-A"]);
        git(&repo, &scratch, &["commit", "-q", "-m", branch]);
        git(&repo, &scratch, &["tag", branch]);
    }
    git(&repo, &scratch, &["reset", "-q", "--hard", "a"]);
    // The set's directory holds branch a: adopt it as the work tree, then
    // switch to b there.
    git(&repo, set_dir, &["update-index", "-q", "--refresh"]);
    git(&repo, set_dir, &["checkout", "-q", "b"]);
}

both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    git_checkout_of_200_files
);
async fn git_checkout_of_200_files(backend: Backend) {
    let Some(store) = backend.start_with(sync_builder(&[])) else {
        return;
    };
    let items: Vec<(String, String)> = (0..CHECKOUT_FILES)
        .map(|i| (checkout_title(i), generated(i)))
        .collect();
    let borrowed: Vec<(&str, &str)> = items
        .iter()
        .map(|(title, content)| (title.as_str(), content.as_str()))
        .collect();
    let mut m = Mirrored::start(store, "Git", &borrowed).await;
    let before: Vec<u64> = m
        .store
        .own_templates(templates(&mut m.sync, "Git").await)
        .iter()
        .map(|template| template.version)
        .collect();
    assert_eq!(before.len(), CHECKOUT_FILES);
    let mark = m.events.mark();
    let history = m.store.daemon.dir.path().join("history");
    checkout(&history, &m.dir);

    let newer = |event: &pb::SyncEvent| event.revision > mark;
    let imported = |m: &Mirrored| {
        m.events
            .matching(|e| newer(e) && e.kind() == K::Imported)
            .len()
    };
    while imported(&m) < CHECKOUT_FILES {
        m.events
            .until("an import of each checked-out file", |e| {
                e.kind() == K::Imported
            })
            .await;
    }
    quiesce(&mut m.sync, &mut m.events).await;
    assert_eq!(imported(&m), CHECKOUT_FILES, "each file imported once");
    for kind in [K::Orphaned, K::SkippedEmpty, K::Rejected, K::Conflict] {
        let unexpected = m.events.matching(|e| newer(e) && e.kind() == kind);
        assert!(unexpected.is_empty(), "{unexpected:#?}");
    }
    let listed = templates(&mut m.sync, "Git").await;
    assert_eq!(
        listed.len(),
        CHECKOUT_FILES + m.store.masters().len(),
        "nothing deleted or added"
    );
    let stored = m.store.own_templates(listed);
    assert_eq!(stored.len(), CHECKOUT_FILES, "nothing deleted or added");
    for (i, template) in stored.iter().enumerate() {
        let title = checkout_title(i);
        assert_eq!(template.key.as_ref().unwrap().title, title);
        assert!(
            template.content == m.store.stored(&checked_out(i)),
            "{title} whole"
        );
        let imports: Vec<u64> = m
            .events
            .matching(|e| newer(e) && about(e, K::Imported, "Git", &title))
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(imports, [template.version], "{title} imported once");
        assert_ne!(template.version, before[i], "{title} changed");
    }
}

both_stores!(a_template_changed_in_the_database_and_on_disk_at_once_is_one_conflict);
async fn a_template_changed_in_the_database_and_on_disk_at_once_is_one_conflict(backend: Backend) {
    // A long debounce: the admin's save lands before the watcher looks at
    // the editor's, as when both happen within the debounce.
    let Some((mut m, before)) = editing(backend, sync_builder(&["--sync-debounce", "2s"])).await
    else {
        return;
    };
    let mark = m.events.mark();
    let newer = |event: &pb::SyncEvent| event.revision > mark;
    let file = m.file(FILE);
    let (disk, database) = (
        "<b>saved in the editor</b>",
        "<b>saved in the admin panel</b>",
    );
    fs::write(&file, disk).unwrap();
    let admin = m
        .sync
        .put_template(put(SET, TITLE, database, Some(before)))
        .await
        .expect("the admin panel read the version before")
        .into_inner();
    let admin_version = admin.template.unwrap().version;
    assert_ne!(admin_version, before);

    let detected = m
        .events
        .wait_for("CONFLICT", |e| {
            newer(e) && about(e, K::Conflict, SET, TITLE)
        })
        .await;
    assert_eq!(Path::new(&detected.path), file);
    quiesce(&mut m.sync, &mut m.events).await;
    let conflicts = m.events.matching(|e| newer(e) && e.kind() == K::Conflict);
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    let imports = m.events.matching(|e| newer(e) && e.kind() == K::Imported);
    assert!(
        imports.is_empty(),
        "the disk version never overwrote the database"
    );

    // Both versions are kept: the database's in the database and the
    // file, the disk's in the conflict copy.
    let stored = template(&mut m.sync, SET, TITLE).await;
    assert_eq!(
        (stored.content.as_str(), stored.version),
        (database, admin_version)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), database);
    let listed = m
        .sync
        .list_conflicts(pb::ListConflictsRequest {})
        .await
        .unwrap()
        .into_inner()
        .conflicts;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let conflict = &listed[0];
    assert_eq!(
        conflict.key.as_ref().and_then(|k| k.key.clone()),
        Some(pb::content_key::Key::Template(pb::TemplateKey {
            set: SET.to_owned(),
            title: TITLE.to_owned(),
        }))
    );
    assert_eq!(Path::new(&conflict.path), file);
    let copy = format!("{}.outpost-conflict-{}", file.display(), conflict.id);
    assert_eq!(conflict.conflict_copy_path, copy);
    assert_eq!(fs::read_to_string(&copy).unwrap(), disk);
    assert_eq!(conflict.database_version, admin_version);
    assert_eq!(conflict.database_sha256, sha256(database.as_bytes()));
    assert_eq!(conflict.disk_sha256, sha256(disk.as_bytes()));
    assert!(conflict.detected_at.is_some());
    // Both sides, for a side-by-side view.
    let sides = m
        .sync
        .get_conflict(pb::GetConflictRequest {
            conflict_id: conflict.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (sides.disk_content.as_str(), sides.database_content.as_str()),
        (disk, database)
    );
    assert!(sides.disk_unavailable.is_empty() && !sides.database_deleted);
    assert_eq!(sides.conflict.as_ref(), Some(conflict));
    let unknown = m
        .sync
        .get_conflict(pb::GetConflictRequest {
            conflict_id: "no-such-conflict".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let now = status(&mut m.sync).await;
    assert_eq!(now.open_conflicts, 1);
    assert_eq!(now.counters.unwrap().conflicts, 1);

    // Resolving needs a side and an existing conflict.
    let resolve = |id: &str, resolution: pb::Resolution| pb::ResolveConflictRequest {
        conflict_id: id.to_owned(),
        resolution: resolution as i32,
    };
    let unspecified = m
        .sync
        .resolve_conflict(resolve(&conflict.id, pb::Resolution::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument, "{unspecified:?}");
    let unknown = m
        .sync
        .resolve_conflict(resolve("no-such-conflict", pb::Resolution::KeepDisk))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let resolved = m
        .sync
        .resolve_conflict(resolve(&conflict.id, pb::Resolution::KeepDisk))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(resolved.version, admin_version);
    m.events
        .wait_for("CONFLICT_RESOLVED", |e| {
            newer(e) && about(e, K::ConflictResolved, SET, TITLE)
        })
        .await;
    let kept = template(&mut m.sync, SET, TITLE).await;
    assert_eq!(
        (kept.content.as_str(), kept.version),
        (disk, resolved.version)
    );
    eventually("the file and copy to follow", EVENT_DEADLINE, || {
        let done =
            fs::read_to_string(&file).is_ok_and(|text| text == disk) && !Path::new(&copy).exists();
        async move { done.then_some(()) }
    })
    .await;
    let after = m
        .sync
        .list_conflicts(pb::ListConflictsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(after.conflicts.is_empty());
    assert_eq!(status(&mut m.sync).await.open_conflicts, 0);
    let again = m
        .sync
        .resolve_conflict(resolve(&conflict.id, pb::Resolution::KeepDatabase))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "resolved once only");
}
