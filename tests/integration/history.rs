//! History against a real daemon and the real git CLI: every version of a
//! template — saved from a file, written through the API, edited in the
//! forum's database — listed newest first and equal to what `git log`
//! says of its path; `git fsck` clean, also after the daemon is killed
//! while it commits; a restore that goes through the write path (and so
//! through a conflict with an unsaved edit); a workspace rolled back,
//! restarting only what differs; an export of 1,000 templates as one
//! commit; pruning; history off; bad requests.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use nix::sys::signal::Signal;
use outpost::{
    endpoint::{AuthChannel, Connection},
    proto::v1::{self as pb, SyncEventKind as K, history_client::HistoryClient},
};
use tonic::Code;

use crate::{
    harness::{Daemon, START_DEADLINE, eventually, stderr, stdout},
    stores::{Backend, both_stores},
    sync_support::{Mirrored, about, export, files, key, put, sync_builder, sync_daemon, template},
    workspaces::{pids, save, shop, shop_instances, workspace_dir},
};

type History = HistoryClient<AuthChannel>;

fn template_subject(set: &str, title: &str) -> Option<pb::HistorySubject> {
    Some(pb::HistorySubject {
        subject: Some(pb::history_subject::Subject::Template(pb::TemplateKey {
            set: set.into(),
            title: title.into(),
        })),
    })
}

fn workspace_subject(name: &str) -> Option<pb::HistorySubject> {
    Some(pb::HistorySubject {
        subject: Some(pb::history_subject::Subject::Workspace(name.into())),
    })
}

async fn versions(
    history: &mut History,
    subject: Option<pb::HistorySubject>,
) -> Vec<pb::HistoryVersion> {
    history
        .list_history(pb::ListHistoryRequest {
            subject,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .versions
}

/// Waits until `subject` has `count` versions (they are committed in the
/// background, a moment after the change was acknowledged).
async fn versions_reach(
    history: &History,
    subject: Option<pb::HistorySubject>,
    count: usize,
) -> Vec<pb::HistoryVersion> {
    eventually(&format!("{count} versions"), START_DEADLINE, || {
        let (mut history, subject) = (history.clone(), subject.clone());
        async move {
            let found = versions(&mut history, subject).await;
            (found.len() >= count).then_some(found)
        }
    })
    .await
}

async fn content_at(
    history: &mut History,
    subject: Option<pb::HistorySubject>,
    rev: &str,
) -> String {
    history
        .get_history_version(pb::GetHistoryVersionRequest {
            subject,
            rev: rev.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("version {rev}: {status}"))
        .into_inner()
        .content
}

/// The history repository of `daemon`, as its status names it.
async fn repository(connection: &Connection) -> PathBuf {
    let status = connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.history_path.is_empty(), "history is on by default");
    PathBuf::from(status.history_path)
}

/// Runs the real git in `repo`; its stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("git is installed");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `git fsck --full --strict` finds nothing wrong (dangling objects are
/// not errors, and it says nothing else).
fn fsck(repo: &Path) {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .output()
        .expect("git is installed");
    assert!(
        output.status.success() && output.stderr.is_empty() && output.stdout.is_empty(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The revisions `git log` lists for `path`, newest first.
fn git_log(repo: &Path, path: &str) -> Vec<String> {
    git(repo, &["log", "--format=%H", "main", "--", path])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The file of template `title` under its set's directory: its group
/// directory is the store's (MyBB's groups, or the title's prefix).
fn relative_file(m: &Mirrored, title: &str) -> String {
    files(&m.dir)
        .into_iter()
        .find(|file| file.ends_with(&format!("/{title}.html")))
        .unwrap_or_else(|| panic!("the file of {title}"))
}

fn revs(versions: &[pb::HistoryVersion]) -> Vec<String> {
    versions.iter().map(|version| version.rev.clone()).collect()
}

both_stores!(a_template_keeps_every_version_and_git_agrees);
async fn a_template_keeps_every_version_and_git_agrees(backend: Backend) {
    let Some(store) = backend.sync_daemon(&[]) else {
        return;
    };
    let mut m = Mirrored::start(store, "History", &[("page_top", "from the api")]).await;
    let mut history = m.connection.history();
    let subject = || template_subject("History", "page_top");
    let relative = relative_file(&m, "page_top");
    let file = m.file(&relative);
    let path = format!("templates/History/{relative}");

    // A file save.
    fs::write(&file, "from a file").unwrap();
    m.events
        .until("the save imported", |e| {
            about(e, K::Imported, "History", "page_top")
        })
        .await;
    // An API write.
    let current = template(&mut m.sync, "History", "page_top").await.version;
    m.sync
        .put_template(put(
            "History",
            "page_top",
            "from the api again",
            Some(current),
        ))
        .await
        .unwrap();
    m.events
        .until("the api write in the file", |e| {
            about(e, K::Exported, "History", "page_top")
        })
        .await;
    let mut expected = vec![
        ("from the api again", pb::HistorySource::Api),
        ("from a file", pb::HistorySource::FileSave),
        ("from the api", pb::HistorySource::Api),
    ];
    // An edit in the forum's database (the admin panel).
    if let Some(templates) = m.store.table("templates") {
        let sets = m.store.table("templatesets").unwrap();
        m.store.sql(&format!(
            "UPDATE {templates} SET template = 'from the database', dateline = dateline + 1 \
             WHERE title = 'page_top' AND sid = (SELECT sid FROM {sets} WHERE title = 'History')"
        ));
        m.events
            .until("the database edit in the file", |e| {
                about(e, K::Exported, "History", "page_top")
                    && fs::read_to_string(&file).unwrap() == "from the database"
            })
            .await;
        expected.insert(0, ("from the database", pb::HistorySource::Database));
    }

    let listed = versions_reach(&history, subject(), expected.len()).await;
    assert_eq!(listed.len(), expected.len(), "{listed:#?}");
    for (version, (content, source)) in listed.iter().zip(&expected) {
        assert_eq!(version.source(), *source, "{version:?}");
        assert_eq!(
            &content_at(&mut history, subject(), &version.rev).await,
            content
        );
        assert_eq!(version.path, path);
    }
    let oldest = &listed[listed.len() - 1];
    assert!(oldest.actor.contains("unix socket"), "{oldest:?}");
    assert!(
        listed[listed.len() - 2].actor.contains("file owner"),
        "{listed:?}"
    );

    // Plain git gives the same answers.
    let repo = repository(&m.connection).await;
    assert_eq!(git_log(&repo, &path), revs(&listed));
    assert_eq!(
        git(&repo, &["show", &format!("{}:{path}", listed[1].rev)]),
        expected[1].0
    );
    fsck(&repo);

    // And so does the CLI, newest first.
    let output = m
        .store
        .daemon
        .ctl(&["history", "template", "History", "page_top"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(lines.len(), expected.len(), "{}", stdout(&output));
    for (line, version) in lines.iter().zip(&listed) {
        assert!(line.starts_with(&version.rev[..12]), "{line}");
    }
    let shown = m.store.daemon.ctl(&[
        "history",
        "show",
        &listed[2].rev[..10],
        "template",
        "History",
        "page_top",
    ]);
    assert_eq!(stdout(&shown), expected[2].0, "{}", stderr(&shown));
}

#[tokio::test]
async fn a_restore_goes_through_the_write_path_and_meets_an_unsaved_edit_as_a_conflict() {
    let store = Backend::Native.sync_daemon(&[]).unwrap();
    let mut m = Mirrored::start(store, "Restore", &[("header", "first header")]).await;
    let mut history = m.connection.history();
    let subject = || template_subject("Restore", "header");
    m.sync
        .put_template(put("Restore", "header", "second header", None))
        .await
        .unwrap();
    m.events
        .until("the second header in the file", |e| {
            about(e, K::Exported, "Restore", "header")
        })
        .await;
    let listed = versions_reach(&history, subject(), 2).await;
    let first = listed[1].rev.clone();

    // Compare-and-swap: a stale version is refused, nothing written.
    let stale = history
        .restore_content(pb::RestoreContentRequest {
            key: Some(pb::ContentKey {
                key: Some(pb::content_key::Key::Template(
                    key("Restore", "header").unwrap(),
                )),
            }),
            rev: first.clone(),
            expected_version: Some(1),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(
        template(&mut m.sync, "Restore", "header").await.content,
        "second header"
    );

    // An edit on disk the reconciler has not seen (paused), then the
    // restore: both sides changed, so the file gets the restored version
    // and the edit is kept as a conflict copy.
    m.sync
        .pause_watcher(pb::PauseWatcherRequest {})
        .await
        .unwrap();
    let file = m.file(&relative_file(&m, "header"));
    fs::write(&file, "an unsaved edit").unwrap();
    let output = m.store.daemon.ctl(&[
        "restore",
        "template",
        "Restore",
        "header",
        "--to",
        &first[..8],
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("restored to {}", &first[..12])),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        template(&mut m.sync, "Restore", "header").await.content,
        "first header"
    );
    m.sync
        .resume_watcher(pb::ResumeWatcherRequest {})
        .await
        .unwrap();
    let conflict = m
        .events
        .until("the conflict", |e| {
            about(e, K::Conflict, "Restore", "header")
        })
        .await;
    assert_eq!(fs::read_to_string(&file).unwrap(), "first header");
    let copy = fs::read_dir(file.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().contains("outpost-conflict"))
        .unwrap_or_else(|| panic!("a conflict copy: {conflict:?}"));
    assert_eq!(fs::read_to_string(copy).unwrap(), "an unsaved edit");

    let listed = versions_reach(&history, subject(), 3).await;
    assert_eq!(listed[0].source(), pb::HistorySource::Restore);
    assert!(
        listed[0].summary.contains(&format!("to {}", &first[..12])),
        "{}",
        listed[0].summary
    );
    assert_eq!(
        content_at(&mut history, subject(), &listed[0].rev).await,
        "first header"
    );
}

#[tokio::test]
async fn a_stylesheet_has_a_history_and_restores_from_the_cli() {
    let daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    let mut history = connection.history();
    let css = |content: &str| pb::PutStylesheetRequest {
        key: Some(pb::StylesheetKey {
            theme: "Default".into(),
            name: "global.css".into(),
        }),
        content: content.into(),
        expected_version: None,
    };
    let subject = || {
        Some(pb::HistorySubject {
            subject: Some(pb::history_subject::Subject::Stylesheet(
                pb::StylesheetKey {
                    theme: "Default".into(),
                    name: "global.css".into(),
                },
            )),
        })
    };
    sync.put_stylesheet(css("a { color: red }")).await.unwrap();
    sync.put_stylesheet(css("a { color: blue }")).await.unwrap();
    let listed = versions_reach(&history, subject(), 2).await;
    assert_eq!(listed[0].path, "stylesheets/Default/global.css");

    let shown = daemon.ctl(&[
        "history",
        "show",
        &listed[1].rev,
        "stylesheet",
        "Default",
        "global.css",
    ]);
    assert_eq!(stdout(&shown), "a { color: red }", "{}", stderr(&shown));
    let json = daemon.ctl(&[
        "--json",
        "history",
        "stylesheet",
        "Default",
        "global.css",
        "--limit",
        "1",
    ]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["versions"].as_array().unwrap().len(), 1, "{parsed}");
    assert_eq!(parsed["versions"][0]["rev"], listed[0].rev.as_str());

    let restored = daemon.ctl(&[
        "restore",
        "stylesheet",
        "Default",
        "global.css",
        "--to",
        &listed[1].rev,
    ]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let now = sync
        .get_stylesheet(pb::GetStylesheetRequest {
            key: Some(pb::StylesheetKey {
                theme: "Default".into(),
                name: "global.css".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stylesheet
        .unwrap();
    assert_eq!(now.content, "a { color: red }");
    let listed = versions_reach(&history, subject(), 3).await;
    assert_eq!(listed[0].source(), pb::HistorySource::Restore);
    assert_eq!(
        content_at(&mut history, subject(), &listed[0].rev).await,
        "a { color: red }"
    );
}

#[tokio::test]
async fn a_workspace_rolls_back_restarting_only_what_changed() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut history = connection.history();
    let file = workspace_dir(&daemon).join("shop.toml");
    let first_text = shop(&["web", "api"], "MODE = \"a\"");
    save(&file, &first_text);
    let first = shop_instances(&connection, "two instances", |i| i.len() == 2).await;
    save(&file, &shop(&["web", "api"], "MODE = \"b\""));
    let second = shop_instances(&connection, "web restarted", |i| {
        i["shop.web"].pid != first["shop.web"].pid
    })
    .await;
    let listed = versions_reach(&history, workspace_subject("shop"), 2).await;
    assert!(
        listed
            .iter()
            .all(|v| v.source() == pb::HistorySource::WorkspaceApply)
    );
    assert_eq!(
        content_at(&mut history, workspace_subject("shop"), &listed[1].rev).await,
        first_text
    );

    let output = daemon.ctl(&["workspace", "rollback", "shop", "--to", &listed[1].rev]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("restarted [\"shop.web\"]"),
        "{}",
        stdout(&output)
    );
    let third = shop_instances(&connection, "web back to MODE a", |i| {
        i["shop.web"].spec.as_ref().unwrap().env["MODE"] == "a"
    })
    .await;
    assert_ne!(third["shop.web"].pid, second["shop.web"].pid);
    assert_eq!(
        pids(&third)["shop.api"],
        pids(&second)["shop.api"],
        "api did not change"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        first_text,
        "the file is the version"
    );

    let listed = versions_reach(&history, workspace_subject("shop"), 3).await;
    assert_eq!(listed[0].source(), pb::HistorySource::WorkspaceRollback);
    let repo = repository(&connection).await;
    assert_eq!(git_log(&repo, "workspaces/shop.toml"), revs(&listed));
    // Applying the same text again (as the watcher's look at the
    // rewritten file does) keeps nothing new.
    let again = daemon.ctl(&["workspace", "apply", "shop"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let after = versions(&mut history, workspace_subject("shop")).await;
    assert_eq!(revs(&after), revs(&listed));
}

#[tokio::test]
async fn an_export_of_a_thousand_templates_is_one_commit() {
    // The templates exist before history does.
    let mut daemon = sync_builder(&[]).env("OUTPOST_HISTORY", "off").start();
    {
        let mut sync = daemon.connect().await.sync();
        for i in 0..1000 {
            sync.put_template(put(
                "Big",
                &format!("big_{i}"),
                &format!("template {i}"),
                None,
            ))
            .await
            .unwrap();
        }
    }
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    daemon.respawn(&["--history", "on"]);
    let connection = daemon.connect().await;
    let repo = repository(&connection).await;
    let mut sync = connection.sync();
    assert_eq!(export(&mut sync, "Big").await.written, 1000);
    let mut history = connection.history();
    let listed = versions_reach(&history, template_subject("Big", "big_999"), 1).await;
    assert_eq!(listed[0].source(), pb::HistorySource::Export);
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "1");
    let files = git(&repo, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(files.lines().count(), 1000);
    assert_eq!(
        content_at(&mut history, template_subject("Big", "big_7"), "main").await,
        "template 7"
    );
    // Exporting again changes nothing: no commit.
    export(&mut sync, "Big").await;
    sync.put_template(put("Big", "big_0", "changed", None))
        .await
        .unwrap();
    versions_reach(&history, template_subject("Big", "big_0"), 2).await;
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "2");
    fsck(&repo);
}

#[tokio::test]
async fn a_daemon_killed_while_it_commits_leaves_a_sound_repository() {
    let mut daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let repo = repository(&connection).await;
    let mut sync = connection.sync();
    let history = connection.history();
    sync.put_template(put("Kill", "kill_page", "version 0", None))
        .await
        .unwrap();
    versions_reach(&history, template_subject("Kill", "kill_page"), 1).await;
    // Each put is a commit made after the answer: the writer is behind
    // when the last answer comes, and the daemon is killed then.
    for i in 1..400 {
        sync.put_template(put("Kill", "kill_page", &format!("version {i}"), None))
            .await
            .unwrap();
    }
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    drop((sync, history, connection));
    fsck(&repo);
    let committed = git_log(&repo, "templates/Kill/kill/kill_page.html");
    eprintln!(
        "{} of 400 versions committed before the kill",
        committed.len()
    );

    // As if the kill had come while the branch was being moved: the lock
    // file stays behind, and without its removal nothing could commit.
    fs::write(repo.join("refs/heads/main.lock"), "").unwrap();
    daemon.respawn(&[]);
    assert!(!repo.join("refs/heads/main.lock").exists());
    let connection = daemon.connect().await;
    let mut history = connection.history();
    // The index caught up with whatever the branch has, stale lock or not:
    // a new version is committed and listed, and git agrees.
    connection
        .sync()
        .put_template(put("Kill", "kill_page", "after the restart", None))
        .await
        .unwrap();
    let listed = versions_reach(
        &history,
        template_subject("Kill", "kill_page"),
        committed.len() + 1,
    )
    .await;
    assert_eq!(
        content_at(
            &mut history,
            template_subject("Kill", "kill_page"),
            &listed[0].rev
        )
        .await,
        "after the restart"
    );
    assert_eq!(
        git_log(&repo, "templates/Kill/kill/kill_page.html"),
        revs(&listed)
    );
    fsck(&repo);
}

#[tokio::test]
async fn pruning_keeps_the_newest_and_the_state_before_them() {
    let mut daemon = sync_daemon(&[]);
    let connection = daemon.connect().await;
    let mut history = connection.history();
    let mut sync = connection.sync();
    for i in 1..=6 {
        sync.put_template(put("Prune", "prune_me", &format!("version {i}"), None))
            .await
            .unwrap();
    }
    versions_reach(&history, template_subject("Prune", "prune_me"), 6).await;
    let repo = repository(&connection).await;
    drop((sync, connection, history));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);

    daemon.respawn(&["--history-keep", "3"]);
    let connection = daemon.connect().await;
    history = connection.history();
    let listed = versions(&mut history, template_subject("Prune", "prune_me")).await;
    assert_eq!(
        listed.len(),
        4,
        "three kept and the pruned root: {listed:#?}"
    );
    assert_eq!(listed[3].source(), pb::HistorySource::Unspecified);
    assert!(
        listed[3].summary.starts_with("history before"),
        "{}",
        listed[3].summary
    );
    let mut contents = Vec::new();
    for version in &listed {
        contents.push(
            content_at(
                &mut history,
                template_subject("Prune", "prune_me"),
                &version.rev,
            )
            .await,
        );
    }
    assert_eq!(
        contents,
        ["version 6", "version 5", "version 4", "version 3"]
    );
    assert_eq!(git(&repo, &["rev-list", "--count", "main"]).trim(), "4");
    assert_eq!(
        git_log(&repo, "templates/Prune/prune/prune_me.html"),
        revs(&listed)
    );
    fsck(&repo);
    // What nothing reaches any more is gone.
    let loose = git(&repo, &["count-objects", "-v"]);
    let count: usize = loose
        .lines()
        .find_map(|line| line.strip_prefix("count: "))
        .unwrap()
        .parse()
        .unwrap();
    // 4 commits, 4 blobs and 4 × 4 trees; the 6 pruned commits had 36.
    assert!(count <= 24, "{loose}");
}

#[tokio::test]
async fn history_off_and_bad_requests_get_clear_answers() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut history = connection.history();
    let cases: Vec<(pb::ListHistoryRequest, &str)> = vec![
        (
            pb::ListHistoryRequest {
                subject: None,
                limit: 0,
            },
            "subject",
        ),
        (
            pb::ListHistoryRequest {
                subject: template_subject("Set", "t"),
                limit: 10_001,
            },
            "limit",
        ),
        (
            pb::ListHistoryRequest {
                subject: template_subject("../up", "t"),
                limit: 0,
            },
            "set",
        ),
        (
            pb::ListHistoryRequest {
                subject: workspace_subject("a/b"),
                limit: 0,
            },
            "workspace",
        ),
    ];
    for (request, field) in cases {
        let refused = history.list_history(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    for rev in ["", "main\n", &"f".repeat(300)] {
        let refused = history
            .get_history_version(pb::GetHistoryVersionRequest {
                subject: template_subject("Set", "t"),
                rev: rev.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{rev:?}: {refused:?}"
        );
        assert!(
            refused.message().starts_with("rev:"),
            "{}",
            refused.message()
        );
    }
    let missing = history
        .get_history_version(pb::GetHistoryVersionRequest {
            subject: template_subject("Set", "t"),
            rev: "0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let output = daemon.ctl(&["restore", "template", "Set", "t", "--to", "deadbeef"]);
    assert!(!output.status.success());
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));

    let off = sync_daemon(&["--history", "off"]);
    let status = off.ctl(&["status"]);
    let shown = stdout(&status);
    let line = shown.lines().find(|line| line.starts_with("history "));
    assert!(line.is_some_and(|line| line.ends_with(" off")), "{shown}");
    let output = off.ctl(&["history", "template", "Set", "t"]);
    assert!(!output.status.success());
    let line = stderr(&output);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("history is off"), "{line}");
    let mut sync = off.connect().await.sync();
    sync.put_template(put("Set", "t", "kept nowhere", None))
        .await
        .unwrap();
    assert!(!off.data_dir.join("history.git").exists());
}
