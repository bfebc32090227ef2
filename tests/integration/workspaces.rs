//! Workspaces against a real daemon: files written the way editors write
//! them, applied as diffs, bad edits rejected without touching what runs,
//! rollback of a spec that cannot start.

use std::{collections::BTreeMap, fs, io::Write, path::Path};

use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, status_event::Change, watch_status_response::Payload},
};
use tonic::Code;

use crate::harness::{
    Daemon, START_DEADLINE, ctl_command, eventually, next, stderr, stdout, watch,
};

/// An editor's safe save: write a temporary file, then rename it over.
pub(crate) fn save(path: &Path, text: &str) {
    let temporary = path.with_extension("toml.tmp~");
    fs::write(&temporary, text).unwrap();
    fs::rename(&temporary, path).unwrap();
}

/// A VS Code style save: truncate, then write in two chunks.
pub(crate) fn save_in_place(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let (first, second) = text.split_at(text.len() / 2);
    file.write_all(first.as_bytes()).unwrap();
    file.flush().unwrap();
    file.write_all(second.as_bytes()).unwrap();
}

/// A workspace file with `sleep` instances; `web` gets `env`.
pub(crate) fn shop(instances: &[&str], web_env: &str) -> String {
    let mut text = String::from("[defaults]\nenv = { SHARED = \"yes\" }\n");
    for name in instances {
        let env = if *name == "web" { web_env } else { "" };
        text.push_str(&format!(
            "\n[instances.{name}]\ncommand = [\"sleep\", \"1000\"]\nenv = {{ {env} }}\n"
        ));
    }
    text
}

/// Instances of workspace `shop` by name, once `done` holds for them.
pub(crate) async fn shop_instances(
    connection: &Connection,
    what: &str,
    done: impl Fn(&BTreeMap<String, pb::Instance>) -> bool,
) -> BTreeMap<String, pb::Instance> {
    eventually(what, START_DEADLINE, || async {
        let list = connection
            .orchestrator()
            .list_instances(pb::ListInstancesRequest {
                workspace: "shop".to_owned(),
                view: pb::InstanceView::Full.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let instances: BTreeMap<String, pb::Instance> = list
            .instances
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        let running = instances
            .values()
            .all(|i| i.state == pb::InstanceState::Running as i32);
        (running && done(&instances)).then_some(instances)
    })
    .await
}

pub(crate) fn pids(instances: &BTreeMap<String, pb::Instance>) -> BTreeMap<String, u32> {
    instances
        .iter()
        .map(|(name, i)| (name.clone(), i.pid))
        .collect()
}

pub(crate) fn workspace_dir(daemon: &Daemon) -> std::path::PathBuf {
    daemon.data_dir.with_file_name("workspaces")
}

#[tokio::test]
async fn edits_apply_as_a_diff_and_touch_only_what_changed() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let file = workspace_dir(&daemon).join("shop.toml");
    save(&file, &shop(&["web", "api", "worker"], "MODE = \"a\""));
    let first = shop_instances(&connection, "three instances", |i| i.len() == 3).await;
    assert_eq!(first["shop.web"].workspace, "shop");

    save_in_place(&file, &shop(&["web", "api", "worker"], "MODE = \"b\""));
    let second = shop_instances(&connection, "web to restart", |i| {
        i["shop.web"].pid != first["shop.web"].pid
    })
    .await;
    assert_eq!(
        second["shop.api"].pid, first["shop.api"].pid,
        "unchanged instances keep their process"
    );
    assert_eq!(second["shop.worker"].pid, first["shop.worker"].pid);
    assert_eq!(second["shop.web"].spec.as_ref().unwrap().env["MODE"], "b");

    save(&file, &shop(&["web", "api", "cache"], "MODE = \"b\""));
    let third = shop_instances(&connection, "worker gone and cache up", |i| {
        i.len() == 3 && i.contains_key("shop.cache")
    })
    .await;
    assert!(!third.contains_key("shop.worker"));
    assert_eq!(third["shop.web"].pid, second["shop.web"].pid);
    assert_eq!(third["shop.api"].pid, second["shop.api"].pid);

    let refused = connection
        .orchestrator()
        .delete_instance(pb::DeleteInstanceRequest {
            instance: "shop.api".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("owned by workspace shop"),
        "{}",
        refused.message()
    );

    fs::remove_file(&file).unwrap();
    shop_instances(&connection, "the workspace to go", BTreeMap::is_empty).await;
}

#[tokio::test]
async fn bad_edits_are_rejected_and_nothing_running_changes() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let file = workspace_dir(&daemon).join("shop.toml");
    let good = shop(&["web", "api"], "");
    save(&file, &good);
    let before = pids(&shop_instances(&connection, "two instances", |i| i.len() == 2).await);
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;

    let bad_edits = [
        (format!("{good}\n[instances.web\n"), "line"),
        (format!("{good}\ncolour = \"red\"\n"), "colour"),
        (
            "[instances.a]\ncommand = [\"sleep\", \"1\"]\nname = \"shop.x\"\n[instances.b]\ncommand = [\"sleep\", \"1\"]\nname = \"shop.x\"\n"
                .to_owned(),
            "used twice",
        ),
        (good.replace("command = [\"sleep\", \"1000\"]\nenv = {  }\n\n[instances.api]", "command = [\"sleep\", \"1000\"]\nidle_timeout = \"-5s\"\n\n[instances.api]"), "idle_timeout"),
    ];
    for (text, problem) in bad_edits {
        save(&file, &text);
        let rejected = loop {
            if let Some(Payload::Events(events)) = next(&mut stream).await.payload {
                let found = events.events.into_iter().find_map(|e| match e.change {
                    Some(Change::WorkspaceRejected(rejected))
                        if rejected.errors.join("\n").contains(problem) =>
                    {
                        Some(rejected)
                    }
                    _ => None,
                });
                if let Some(rejected) = found {
                    break rejected;
                }
            }
        };
        assert_eq!(rejected.workspace, "shop");
        let errors = rejected.errors.join("\n");
        assert!(errors.contains(problem), "{problem:?} not in {errors}");
        assert!(
            errors.contains(&file.display().to_string()),
            "names the file: {errors}"
        );
    }
    let after = pids(&shop_instances(&connection, "still two", |i| i.len() == 2).await);
    assert_eq!(after, before, "running instances were not touched");
}

#[tokio::test]
async fn quick_saves_end_with_the_last_version_and_never_go_back() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let file = workspace_dir(&daemon).join("shop.toml");
    save(&file, &shop(&["web"], "VERSION = \"0\""));
    shop_instances(&connection, "web", |i| i.len() == 1).await;
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;
    for version in 1..=20 {
        save(&file, &shop(&["web"], &format!("VERSION = \"{version}\"")));
    }
    // Versions web was started with, in order, until the last one.
    let mut started = Vec::new();
    while started.last() != Some(&20) {
        let Some(Payload::Events(events)) = next(&mut stream).await.payload else {
            continue;
        };
        for event in events.events {
            if let Some(Change::InstanceChanged(changed)) = event.change
                && changed.instance.as_ref().unwrap().state == pb::InstanceState::Running as i32
            {
                let spec = changed.instance.unwrap().spec.unwrap();
                started.push(spec.env["VERSION"].parse::<u32>().unwrap());
            }
        }
    }
    assert!(
        started.windows(2).all(|pair| pair[0] < pair[1]),
        "applied out of order: {started:?}"
    );
    assert!(
        started.len() < 20,
        "saves in quick succession coalesce: {started:?}"
    );
}

#[tokio::test]
async fn a_changed_command_that_cannot_start_is_rolled_back() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = workspace_dir(&daemon);
    let file = dir.join("shop.toml");
    save(&file, &shop(&["web"], ""));
    let first = shop_instances(&connection, "web", |i| i.len() == 1).await;
    save(
        &file,
        &shop(&["web"], "").replace(
            "\"sleep\", \"1000\"",
            "\"no-such-server\", \"--port\", \"1\"",
        ),
    );
    let restored = shop_instances(&connection, "web back on its old spec", |i| {
        i["shop.web"].pid != first["shop.web"].pid
            && i["shop.web"].spec.as_ref().unwrap().command == "sleep"
    })
    .await;
    assert_eq!(restored.len(), 1);
    let status = eventually("the failure to be reported", START_DEADLINE, || async {
        let workspaces = connection
            .orchestrator()
            .list_workspaces(pb::ListWorkspacesRequest {})
            .await
            .unwrap()
            .into_inner();
        workspaces
            .workspaces
            .into_iter()
            .find(|w| w.name == "shop" && !w.last_errors.is_empty())
    })
    .await;
    let error = status.last_errors.join("\n");
    assert!(
        error.contains("command not found: no-such-server"),
        "{error}"
    );
    assert!(
        error.contains("sleep 1000"),
        "names the previous version: {error}"
    );
    assert!(
        error.contains("no-such-server --port 1"),
        "names the new version: {error}"
    );
}

#[test]
fn check_validates_a_file_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("shop.toml");
    fs::write(&good, shop(&["web"], "")).unwrap();
    let output = ctl_command()
        .args([
            "--addr",
            "unix:///nonexistent/outpostd.sock",
            "workspace",
            "check",
        ])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("workspace shop with 1 instances"));

    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[instances.web]\ncommand = [\"sleep\"]\nport = 70000\nretsart = \"always\"\n",
    )
    .unwrap();
    let output = ctl_command()
        .args(["workspace", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("retsart"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_vim_style_save_never_removes_the_workspace_in_between() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let file = workspace_dir(&daemon).join("shop.toml");
    save(&file, &shop(&["web", "api"], "MODE = \"a\""));
    let before = shop_instances(&connection, "two instances", |i| i.len() == 2).await;
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;

    // vim's default save: rename the file to a backup, create it anew,
    // write it, remove the backup. The file is missing for a moment.
    let backup = file.with_extension("toml~");
    fs::rename(&file, &backup).unwrap();
    save_in_place_new(&file, &shop(&["web", "api"], "MODE = \"b\""));
    fs::remove_file(&backup).unwrap();

    let after = shop_instances(&connection, "web on its new spec", |i| {
        i.get("shop.web")
            .is_some_and(|web| web.spec.as_ref().unwrap().env["MODE"] == "b")
    })
    .await;
    assert_eq!(
        after["shop.api"].pid, before["shop.api"].pid,
        "api was never removed"
    );
    // No event deleted an instance on the way.
    while let Ok(Ok(Some(message))) =
        tokio::time::timeout(std::time::Duration::from_millis(50), stream.message()).await
    {
        if let Some(Payload::Events(events)) = message.payload {
            assert!(
                !events
                    .events
                    .iter()
                    .any(|e| matches!(e.change, Some(Change::InstanceDeleted(_)))),
                "an instance was deleted during the save"
            );
        }
    }
}

/// Creates `path` and writes it in two steps, as an editor creating a file.
fn save_in_place_new(path: &Path, text: &str) {
    fs::write(path, "").unwrap();
    save_in_place(path, text);
}
