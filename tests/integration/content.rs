//! The database side of sync: templates and stylesheets through the API
//! and the CLI, compare-and-swap, hostile names and content.

use std::io::Write;
use std::process::Stdio;

use nix::sys::signal::Signal;
use outpost::proto::v1 as pb;
use tonic::Code;

use crate::harness::{Daemon, START_DEADLINE, stderr, stdout};

fn key(set: &str, title: &str) -> Option<pb::TemplateKey> {
    Some(pb::TemplateKey {
        set: set.to_owned(),
        title: title.to_owned(),
    })
}

fn put(
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
