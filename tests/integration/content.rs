//! The database side of sync: templates and stylesheets through the API
//! and the CLI, compare-and-swap, hostile names and content.

use std::io::Write;
use std::process::Stdio;

use nix::sys::signal::Signal;
use outpost::proto::v1 as pb;
use tonic::Code;

use crate::{
    harness::{Daemon, START_DEADLINE, eventually, stderr, stdout},
    sync_support::{export, files, generated, key, put},
};

#[tokio::test]
async fn templates_are_stored_versioned_and_swapped_only_when_expected() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    let created = sync
        .put_template(put("Default", "header_welcome", "<b>hi</b>", Some(0)))
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let template = created.template.unwrap();
    assert_eq!((template.version, template.group.as_str()), (1, "header"));
    assert_eq!(template.sha256.len(), 64);

    let stale = sync
        .put_template(put("Default", "header_welcome", "<b>hey</b>", Some(0)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let updated = sync
        .put_template(put("Default", "header_welcome", "<b>hey</b>", Some(1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.template.unwrap().version, 2);

    let sets = sync
        .list_template_sets(pb::ListTemplateSetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sets.sets.len(), 1);
    assert_eq!(
        (sets.sets[0].name.as_str(), sets.sets[0].template_count),
        ("Default", 1)
    );
    let listed = sync
        .list_templates(pb::ListTemplatesRequest {
            set: "Default".to_owned(),
            include_content: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.templates[0].content, "",
        "listings leave content out unless asked"
    );

    // Stored durably: a new daemon on the same data has it.
    drop(sync);
    drop(connection);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    daemon.respawn(&[]);
    let mut sync = daemon.connect().await.sync();
    let fetched = sync
        .get_template(pb::GetTemplateRequest {
            key: key("Default", "header_welcome"),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(
        (fetched.content.as_str(), fetched.version),
        ("<b>hey</b>", 2)
    );

    let deleted = sync
        .delete_template(pb::DeleteTemplateRequest {
            key: key("Default", "header_welcome"),
            expected_version: Some(2),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_version, 2);
    let gone = sync
        .get_template(pb::GetTemplateRequest {
            key: key("Default", "header_welcome"),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn hostile_names_and_content_are_rejected_with_a_reason() {
    let daemon = Daemon::start();
    let mut sync = daemon.connect().await.sync();
    let cases = [
        (put("../outside", "x", "a", None), "key.set"),
        (put("Default", "../../etc/passwd", "a", None), "key.title"),
        (put("Default", "/absolute", "a", None), "key.title"),
        (put("Default", "nul\0byte", "a", None), "key.title"),
        (put("Default", ".hidden", "a", None), "key.title"),
        (put(&"x".repeat(500), "a", "a", None), "key.set"),
        (put("Default", "empty", "", None), "content"),
        (
            put("Default", "huge", &"x".repeat(10 << 20), None),
            "content",
        ),
    ];
    for (request, field) in cases {
        let status = sync.put_template(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field} not named in {:?}",
            status.message()
        );
    }
    let unknown = sync
        .list_stylesheets(pb::ListStylesheetsRequest {
            theme: "Nope".to_owned(),
            include_content: false,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        sync.list_template_sets(pb::ListTemplateSetsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sets
            .is_empty()
    );
    let root = daemon.data_dir.join("sync");
    assert!(
        !root.exists() || std::fs::read_dir(&root).unwrap().next().is_none(),
        "nothing written to disk"
    );
}

#[test]
fn the_cli_puts_from_stdin_and_gets_the_exact_content_back() {
    let daemon = Daemon::start();
    let address = daemon.unix_address().to_string();
    let css = "body {\n  color: #333;\n}\n";
    let mut put = crate::harness::ctl_command()
        .args([
            "--addr",
            &address,
            "stylesheet",
            "put",
            "Default",
            "global.css",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(css.as_bytes()).unwrap();
    let output = put.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "global.css: created, version 1\n");

    let output = daemon.ctl(&["stylesheet", "get", "Default", "global.css"]);
    assert_eq!(stdout(&output), css, "byte for byte");
    let output = daemon.ctl(&["stylesheet", "ls"]);
    assert!(stdout(&output).contains("Default"), "{}", stdout(&output));
    let output = daemon.ctl(&[
        "stylesheet",
        "rm",
        "Default",
        "global.css",
        "--expect-version",
        "7",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(
            "outpostctl: aborted: stylesheet Default/global.css is at version 1, not 7"
        ),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn export_writes_whole_files_and_never_overwrites_a_disk_edit() {
    let daemon = Daemon::start();
    let mut sync = daemon.connect().await.sync();
    // Export's own decisions, with the reconciler held back.
    sync.pause_watcher(pb::PauseWatcherRequest {})
        .await
        .unwrap();
    for (title, content) in [
        ("header_welcome", "<b>hi</b>"),
        ("header_nav", "<nav/>"),
        ("index", "<main/>"),
    ] {
        sync.put_template(put("Default", title, content, None))
            .await
            .unwrap();
    }
    let root = daemon
        .data_dir
        .join("sync")
        .join("templates")
        .join("Default");
    let summary = export(&mut sync, "Default").await;
    assert_eq!(
        (summary.written, summary.unchanged, summary.conflicts),
        (3, 0, 0)
    );
    assert_eq!(
        files(&root),
        [
            "header/header_nav.html",
            "header/header_welcome.html",
            "ungrouped/index.html"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("header/header_welcome.html")).unwrap(),
        "<b>hi</b>"
    );

    let again = export(&mut sync, "Default").await;
    assert_eq!(
        (again.written, again.unchanged),
        (0, 3),
        "nothing rewritten"
    );

    // Changed only in the database: exported.
    sync.put_template(put("Default", "header_nav", "<nav>2</nav>", None))
        .await
        .unwrap();
    // Changed on disk (and, for index, in the database too): left alone.
    std::fs::write(
        root.join("header/header_welcome.html"),
        "<b>edited on disk</b>",
    )
    .unwrap();
    std::fs::write(root.join("ungrouped/index.html"), "<main>disk</main>").unwrap();
    sync.put_template(put("Default", "index", "<main>db</main>", None))
        .await
        .unwrap();
    let mixed = export(&mut sync, "Default").await;
    assert_eq!((mixed.written, mixed.unchanged, mixed.conflicts), (1, 0, 2));
    assert_eq!(
        std::fs::read_to_string(root.join("header/header_nav.html")).unwrap(),
        "<nav>2</nav>"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("header/header_welcome.html")).unwrap(),
        "<b>edited on disk</b>"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ungrouped/index.html")).unwrap(),
        "<main>disk</main>"
    );
    assert!(
        files(&root).iter().all(|name| !name.contains(".outpost-")),
        "no temp file left"
    );

    let output = daemon.ctl(&["sync", "export", "templates", "Default"]);
    assert_eq!(output.status.code(), Some(1), "conflicts exit 1");
    assert!(
        stdout(&output).contains("2 conflicts"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_an_export_leaves_no_partial_file_and_no_temp() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let writers: Vec<_> = (0..10)
        .map(|client| {
            let mut sync = connection.sync();
            tokio::spawn(async move {
                for i in (client..1000).step_by(10) {
                    sync.put_template(put("Big", &format!("t{i:04}"), &generated(i), None))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let root = daemon.data_dir.join("sync").join("templates").join("Big");
    let mut sync = connection.sync();
    let exporting = tokio::spawn(async move {
        let _ = sync
            .export_templates(pb::ExportTemplatesRequest {
                set: "Big".to_owned(),
            })
            .await;
    });
    eventually("the export to start writing", START_DEADLINE, || async {
        let written = files(&root).len();
        (written > 0).then_some(())
    })
    .await;
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    let _ = exporting.await;

    for name in files(&root)
        .iter()
        .filter(|name| !name.contains(".outpost-"))
    {
        let i: usize = name
            .trim_start_matches("ungrouped/t")
            .trim_end_matches(".html")
            .parse()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join(name)).unwrap(),
            generated(i),
            "{name} is whole"
        );
    }
    daemon.respawn(&[]);
    assert!(
        files(&root).iter().all(|name| !name.contains(".outpost-")),
        "start-up removed the temps: {:?}",
        files(&root)
            .iter()
            .filter(|n| n.contains(".outpost-"))
            .collect::<Vec<_>>()
    );
    let mut sync = daemon.connect().await.sync();
    let listed = sync
        .list_templates(pb::ListTemplatesRequest {
            set: "Big".to_owned(),
            include_content: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.templates.len(), 1000, "the database is intact");
    let finished = export(&mut sync, "Big").await;
    assert_eq!(finished.written + finished.unchanged, 1000);
    assert_eq!(finished.conflicts, 0);
}
