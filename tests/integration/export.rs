//! `outpostctl export` checked offline by each engine's own rules: the
//! Kubernetes objects against the published OpenAPI schemas
//! (`kubernetes-validate --strict`), the Nomad job by an HCL2 parser
//! (`python-hcl2`) and its structure, the systemd units by
//! `systemd-analyze verify`. The validators come from
//! tests/requirements.txt and the systemd package; without them a test
//! skips with the reason, and fails under `OUTPOST_REQUIRE_REAL`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use outpost_test_support::process::{find_program, skip};

use crate::harness::{Daemon, START_DEADLINE, ctl_command, eventually, stderr, stdout};

/// A workspace using every mapping: ports fixed and auto, each kind of
/// check, a one-shot migration others need completed, limits, sd_notify.
const SHOP: &str = r#"
[defaults]
restart = "on-failure"

[instances.db]
command = ["sleep", "600"]
port = 5432
health = { tcp = true }
restart = "always"

[instances.migrate]
command = ["sh", "-c", "echo migrating"]
restart = "never"
depends_on = ["db"]

[instances.web]
command = ["sleep", "{port}"]
port = "auto"
env = { GREETING = "hi $USER 100%" }
health = { http = "/healthz" }
memory_max = "512M"
cpu_max = "50%"
idle_timeout = "30m"
depends_on = { db = "ready", migrate = "completed" }

[instances.worker]
command = ["sleep", "600"]
ready_notify = true
watchdog = "10s"
stop_signal = "SIGINT"
"#;

fn shop_file(dir: &Path) -> PathBuf {
    let file = dir.join("shop.toml");
    std::fs::write(&file, SHOP).unwrap();
    file
}

fn export(args: &[&str]) -> Output {
    let output = ctl_command().arg("export").args(args).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

/// A validator on PATH, or a skip (a failure in CI) naming where it comes from.
fn tool(name: &str, from: &str) -> Option<PathBuf> {
    find_program(name).or_else(|| skip(&format!("{name} is not installed ({from})")))
}

#[test]
fn kubernetes_objects_pass_the_published_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(dir.path());
    let output = export(&["kubernetes", file.to_str().unwrap(), "--image", "shop:dev"]);
    let manifests = stdout(&output);
    let notes = stderr(&output);
    // What does not map is listed, on stderr and in the manifests.
    for lost in [
        "idle_timeout",
        "ready_notify",
        "stop_signal SIGINT",
        "port = \"auto\"",
    ] {
        assert!(notes.contains(lost), "{lost} is not listed: {notes}");
        assert!(manifests.contains(lost), "{lost} is not in the comments");
    }
    assert_eq!(manifests.matches("\n---\n").count(), 6, "{manifests}");
    assert!(manifests.contains("kind: \"Job\"\nmetadata:\n  labels:"));
    assert!(manifests.contains("until nc -z shop-db 5432; do sleep 1; done"));
    assert!(manifests.contains("memory: \"536870912\""));
    assert!(manifests.contains("cpu: \"500m\""));
    assert!(manifests.contains("path: \"/healthz\""));
    assert!(manifests.contains("image: \"shop:dev\""));

    let Some(validate) = tool(
        "kubernetes-validate",
        "pip install -r tests/requirements.txt",
    ) else {
        return;
    };
    let checked = dir.path().join("shop.yaml");
    std::fs::write(&checked, &manifests).unwrap();
    let run = |path: &Path| {
        Command::new(&validate)
            .args(["--strict", "-k", "1.30.0"])
            .arg(path)
            .output()
            .unwrap()
    };
    let verdict = run(&checked);
    assert!(
        verdict.status.success(),
        "{}{}",
        stdout(&verdict),
        stderr(&verdict)
    );
    let report = stdout(&verdict) + &stderr(&verdict);
    for object in [
        "deployment/shop-db",
        "service/shop-db",
        "job/shop-migrate",
        "deployment/shop-web",
        "service/shop-web",
        "deployment/shop-worker",
    ] {
        assert!(
            report.contains(&format!("passed for resource {object}")),
            "{report}"
        );
    }
    // The validator does refuse what the schema does not allow.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, manifests.replacen("containers:", "containerz:", 1)).unwrap();
    assert!(!run(&broken).status.success());
}

#[test]
fn a_nomad_job_parses_with_a_group_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(dir.path());
    let job = stdout(&export(&["nomad", file.to_str().unwrap()]));
    let Some(python) = tool("python3", "apt install python3") else {
        return;
    };
    let hcl = dir.path().join("shop.nomad.hcl");
    std::fs::write(&hcl, &job).unwrap();
    let parsed = Command::new(python)
        .args([
            "-c",
            "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))",
        ])
        .arg(&hcl)
        .output()
        .unwrap();
    if stderr(&parsed).contains("No module named 'hcl2'") {
        skip::<()>("python-hcl2 is not installed (pip install -r tests/requirements.txt)");
        return;
    }
    assert!(parsed.status.success(), "{}", stderr(&parsed));
    let tree: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let job = &tree["job"][0]["\"shop\""];
    assert_eq!(job["type"], "\"service\"");
    let groups: Vec<&str> = (job["group"].as_array().unwrap().iter())
        .flat_map(|group| group.as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert_eq!(
        groups,
        [
            "\"shop-db\"",
            "\"shop-migrate\"",
            "\"shop-web\"",
            "\"shop-worker\""
        ]
    );
    let web = &job["group"][2]["\"shop-web\""];
    let task = &web["task"][0]["\"shop-web\""];
    assert_eq!(task["driver"], "\"raw_exec\"");
    assert_eq!(task["config"][0]["args"][0], "\"${NOMAD_PORT_main}\"");
    assert_eq!(task["resources"][0]["memory"], 512);
    let check = &task["service"][0]["check"][0];
    assert_eq!(check["type"], "\"http\"");
    assert_eq!(check["path"], "\"/healthz\"");
    // It waits for db before it starts.
    let wait = &web["task"][1]["\"wait-shop-db\""];
    assert_eq!(wait["lifecycle"][0]["hook"], "\"prestart\"");
}

#[tokio::test]
async fn systemd_units_of_a_workspace_the_daemon_knows_pass_verification() {
    let daemon = Daemon::start();
    shop_file(&crate::workspaces::workspace_dir(&daemon));
    let out = daemon.dir.path().join("units");
    let exported = eventually(
        "the daemon to know workspace shop",
        START_DEADLINE,
        || async {
            let output = daemon.ctl(&[
                "export",
                "systemd",
                "shop",
                "--output-dir",
                out.to_str().unwrap(),
            ]);
            output.status.success().then_some(output)
        },
    )
    .await;
    assert!(stderr(&exported).contains("shop.web: its health check"));
    let web = std::fs::read_to_string(out.join("shop.web.service")).unwrap();
    for line in [
        "Requires=shop.db.service\nAfter=shop.db.service",
        "Requires=shop.migrate.service\nAfter=shop.migrate.service",
        "Environment=\"GREETING=hi $USER 100%%\"",
        "MemoryMax=536870912",
        "CPUQuota=50%",
        "Restart=on-failure",
    ] {
        assert!(web.contains(line), "{line} missing from:\n{web}");
    }
    let migrate = std::fs::read_to_string(out.join("shop.migrate.service")).unwrap();
    assert!(
        migrate.contains("Type=oneshot\nRemainAfterExit=yes"),
        "{migrate}"
    );
    let worker = std::fs::read_to_string(out.join("shop.worker.service")).unwrap();
    assert!(worker.contains("Type=notify") && worker.contains("WatchdogSec=10000ms"));

    let Some(analyze) = tool("systemd-analyze", "apt install systemd") else {
        return;
    };
    let units: Vec<PathBuf> = ["db", "migrate", "web", "worker"]
        .iter()
        .map(|name| out.join(format!("shop.{name}.service")))
        .collect();
    let verified = Command::new(&analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        !stderr(&verified).contains("Unknown key"),
        "{}",
        stderr(&verified)
    );
    // A unit it cannot start is refused: verification is not a formality.
    let bad = out.join("bad.service");
    let unstartable: String = (web.lines())
        .map(|line| match line.starts_with("ExecStart=") {
            true => "ExecStart=/nonexistent/sleep 1\n".to_owned(),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&bad, unstartable).unwrap();
    let refused = Command::new(&analyze)
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{}", stderr(&refused));
}
