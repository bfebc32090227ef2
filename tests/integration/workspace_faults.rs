//! Hostile workspace input against a real daemon: files that are not
//! regular files or are too large, names that try to leave the workspaces
//! directory, applies over the instance limit and applies that fail half
//! way. Each test also restarts the daemon and looks at what it holds.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    time::Duration,
};

use nix::{sys::stat::Mode, unistd::mkfifo};
use outpost::{endpoint::Connection, proto::v1 as pb};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{
    harness::{
        Daemon, START_DEADLINE, changed, ctl_command, events, eventually, marked_processes, next,
        stderr, watch,
    },
    workspaces::{save, workspace_dir},
};

/// How long a health check may take while the daemon is being fed bad
/// files (generous for a loaded 2-core machine, far below "never").
const HEALTH_DEADLINE: Duration = Duration::from_secs(5);

/// A workspace file with one `sleep` instance per name.
fn sleepers(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("[instances.{name}]\ncommand = [\"sleep\", \"1000\"]\n"))
        .collect()
}

/// The daemon answers a health check within [`HEALTH_DEADLINE`].
async fn assert_healthy(connection: &Connection) {
    let answer = tokio::time::timeout(
        HEALTH_DEADLINE,
        connection.health().check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("a health answer within the deadline")
    .expect("a health answer");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
}

/// The problems reported for each workspace, once `done` holds for them.
async fn problems(
    connection: &Connection,
    what: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    eventually(what, START_DEADLINE, || async {
        let listed = connection
            .orchestrator()
            .list_workspaces(pb::ListWorkspacesRequest {})
            .await
            .unwrap()
            .into_inner();
        let problems = listed
            .workspaces
            .into_iter()
            .map(|w| (w.name, w.last_errors.join("\n")))
            .collect();
        done(&problems).then_some(problems)
    })
    .await
}

/// Names of every instance the daemon holds.
async fn instance_names(connection: &Connection) -> BTreeSet<String> {
    connection
        .orchestrator()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances
        .into_iter()
        .map(|i| i.name)
        .collect()
}

async fn apply_file(
    connection: &Connection,
    file: &Path,
) -> Result<pb::ApplyWorkspaceResponse, tonic::Status> {
    connection
        .orchestrator()
        .apply_workspace(pb::ApplyWorkspaceRequest {
            source: Some(pb::apply_workspace_request::Source::File(
                file.display().to_string(),
            )),
            dry_run: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn apply_name(connection: &Connection, name: &str) -> tonic::Status {
    connection
        .orchestrator()
        .apply_workspace(pb::ApplyWorkspaceRequest {
            source: Some(pb::apply_workspace_request::Source::Name(name.to_owned())),
            dry_run: false,
        })
        .await
        .expect_err("refused")
}

/// Stops the daemon gracefully and starts it again on the same state.
async fn restart(daemon: &mut Daemon) -> Connection {
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    daemon.respawn(&[]);
    daemon.connect().await
}

#[tokio::test]
async fn fifos_devices_and_oversized_files_are_refused_and_the_daemon_keeps_answering() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = workspace_dir(&daemon);
    mkfifo(&dir.join("x.toml"), Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml")).unwrap();
    // Valid TOML all the way: only its size is wrong.
    let big = format!("{}\n{}", sleepers(&["web"]), "# padding\n".repeat(210_000));
    assert!(big.len() > 2 << 20);
    fs::write(dir.join("big.toml"), &big).unwrap();
    save(&dir.join("shop.toml"), &sleepers(&["web"]));
    assert_healthy(&connection).await;

    let refused = |problems: &BTreeMap<String, String>| {
        ["x", "zero", "big"]
            .iter()
            .all(|name| problems.get(*name).is_some_and(|p| !p.is_empty()))
    };
    let found = problems(&connection, "the three files to be refused", refused).await;
    assert!(found["x"].contains("a FIFO"), "{}", found["x"]);
    assert!(
        found["zero"].contains("a character device"),
        "{}",
        found["zero"]
    );
    assert!(
        found["big"].contains("larger than the limit of 1048576 bytes"),
        "{}",
        found["big"]
    );
    for (name, problem) in &found {
        if name != "shop" {
            assert!(
                problem.contains(&dir.join(format!("{name}.toml")).display().to_string()),
                "names the file: {problem}"
            );
        }
    }
    assert_healthy(&connection).await;

    // Asked for by name or by path: refused at once, with the reason.
    let by_name = apply_name(&connection, "x").await;
    assert_eq!(by_name.code(), Code::InvalidArgument);
    assert!(
        by_name.message().starts_with("name: "),
        "{}",
        by_name.message()
    );
    assert!(
        by_name.message().contains("a FIFO"),
        "{}",
        by_name.message()
    );
    let by_path = apply_file(&connection, &dir.join("zero.toml"))
        .await
        .unwrap_err();
    assert_eq!(by_path.code(), Code::InvalidArgument);
    assert!(by_path.message().contains("a character device"));
    assert_healthy(&connection).await;
    let expected = BTreeSet::from(["shop.web".to_owned()]);
    eventually("shop.web", START_DEADLINE, || async {
        (instance_names(&connection).await == expected).then_some(())
    })
    .await;

    // After a restart the files are refused again, and no instance of
    // theirs exists.
    let connection = restart(&mut daemon).await;
    assert_healthy(&connection).await;
    let found = problems(&connection, "the files refused after a restart", refused).await;
    assert!(found["x"].contains("a FIFO"), "{}", found["x"]);
    assert_eq!(instance_names(&connection).await, expected);
}

#[tokio::test]
async fn workspace_names_stay_one_path_component() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = workspace_dir(&daemon);
    let outside = dir.with_file_name("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("x.toml"), sleepers(&["web"])).unwrap();
    let listing = |path: &Path| -> BTreeSet<String> {
        fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let outside_before = listing(&outside);

    let long = "a".repeat(129);
    for name in [
        "../outside/x",
        "a/b",
        "..",
        ".hidden",
        "x\0y",
        long.as_str(),
    ] {
        let status = apply_name(&connection, name).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert!(
            status.message().starts_with("name: "),
            "{}",
            status.message()
        );
        let status = connection
            .orchestrator()
            .get_workspace(pb::GetWorkspaceRequest {
                name: name.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
    }
    let too_long = apply_name(&connection, &long).await;
    assert!(
        too_long.message().contains("128"),
        "names the limit: {}",
        too_long.message()
    );

    // The CLI refuses the same names before sending anything: one line,
    // a usage error. Run from the workspaces directory, where the name
    // would lead out of it.
    for args in [
        ["workspace", "apply", "../outside/x"],
        ["workspace", "show", "../outside/x"],
    ] {
        let output = ctl_command()
            .current_dir(&dir)
            .arg("--addr")
            .arg(daemon.unix_address().to_string())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("workspace name"),
            "{}",
            stderr(&output)
        );
    }

    let nothing = |names: BTreeSet<String>| names.is_empty();
    assert!(nothing(instance_names(&connection).await));
    assert_eq!(listing(&outside), outside_before, "nothing written outside");
    let connection = restart(&mut daemon).await;
    assert!(nothing(instance_names(&connection).await));
    assert_eq!(listing(&outside), outside_before);
    assert!(
        listing(&dir).is_empty(),
        "nothing written into the directory"
    );
}

#[tokio::test]
async fn an_apply_over_the_instance_limit_creates_nothing() {
    let mut daemon = Daemon::builder().arg("--max-instances").arg("30").start();
    let connection = daemon.connect().await;
    let names: Vec<String> = (0..200).map(|i| format!("i{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let text = sleepers(&names);
    let file = daemon.dir.path().join("many.toml");
    fs::write(&file, &text).unwrap();

    for dry_run in [true, false] {
        let refused = connection
            .orchestrator()
            .apply_workspace(pb::ApplyWorkspaceRequest {
                source: Some(pb::apply_workspace_request::Source::File(
                    file.display().to_string(),
                )),
                dry_run,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let message = refused.message();
        for part in [
            "create 200",
            "limit of 30",
            "--max-instances",
            "nothing was changed",
        ] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }
    assert!(instance_names(&connection).await.is_empty());

    // The same file in the workspaces directory: refused as a whole too.
    save(&workspace_dir(&daemon).join("many.toml"), &text);
    let found = problems(&connection, "the file to be refused", |p| {
        p.get("many").is_some_and(|p| p.contains("limit of 30"))
    })
    .await;
    assert!(found["many"].contains("create 200"), "{}", found["many"]);
    assert!(instance_names(&connection).await.is_empty());

    let connection = restart(&mut daemon).await;
    problems(&connection, "the file refused after a restart", |p| {
        p.get("many").is_some_and(|p| p.contains("limit of 30"))
    })
    .await;
    assert!(instance_names(&connection).await.is_empty());
}

#[tokio::test]
async fn a_step_that_fails_rolls_back_the_whole_apply() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let file = workspace_dir(&daemon).join("shop.toml");
    let first = sleepers(&["a", "b"]);
    save(&file, &first);
    let before = eventually("shop.a and shop.b to run", START_DEADLINE, || async {
        let running: BTreeMap<String, pb::Instance> = connection
            .orchestrator()
            .list_instances(pb::ListInstancesRequest {
                workspace: "shop".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .instances
            .into_iter()
            .filter(|i| i.state == pb::InstanceState::Running as i32)
            .map(|i| (i.name.clone(), i))
            .collect();
        (running.len() == 2).then_some(running)
    })
    .await;
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;

    // b removed, c and d new, e new and impossible: created in name order,
    // so c and d exist when e fails.
    let second = format!(
        "{}[instances.e]\ncommand = [\"no-such-program-here\"]\n",
        sleepers(&["a", "c", "d"])
    );
    let other = daemon.dir.path().join("shop.toml");
    fs::write(&other, &second).unwrap();
    let failed = apply_file(&connection, &other).await.unwrap_err();
    assert_eq!(failed.code(), Code::FailedPrecondition);
    let message = failed.message();
    for part in [
        "creating shop.e failed",
        "no-such-program-here",
        "rolled back: removed shop.d, removed shop.c, restored shop.b",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }

    // The processes c and d had are gone.
    let mut created = BTreeMap::new();
    while created.len() < 2 {
        for event in events(next(&mut stream).await) {
            if let Some(instance) = changed(&event).and_then(|c| c.instance.as_ref())
                && ["shop.c", "shop.d"].contains(&instance.name.as_str())
            {
                created.insert(instance.name.clone(), instance.id.clone());
            }
        }
    }
    eventually(
        "the processes of c and d to be gone",
        START_DEADLINE,
        || async {
            let marked = marked_processes();
            created
                .values()
                .all(|id| !marked.contains_key(id))
                .then_some(())
        },
    )
    .await;
    let expected = BTreeSet::from(["shop.a".to_owned(), "shop.b".to_owned()]);
    assert_eq!(instance_names(&connection).await, expected);
    let after = connection
        .orchestrator()
        .get_instance(pb::GetInstanceRequest {
            instance: "shop.a".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(after.pid, before["shop.a"].pid, "a was never touched");

    // The same version saved over the workspace's file: refused whole,
    // reported, and the previous version still runs.
    save(&file, &second);
    let found = problems(&connection, "the failure to be reported", |p| {
        p.get("shop")
            .is_some_and(|p| p.contains("creating shop.e failed"))
    })
    .await;
    assert!(found["shop"].contains("rolled back"), "{}", found["shop"]);
    assert_eq!(instance_names(&connection).await, expected);

    let connection = restart(&mut daemon).await;
    problems(&connection, "the failure reported after a restart", |p| {
        p.get("shop")
            .is_some_and(|p| p.contains("creating shop.e failed"))
    })
    .await;
    assert_eq!(instance_names(&connection).await, expected);
}
