//! Several daemons from one client: named contexts in the client's config,
//! `--context`, the context in use, and `ls` over all of them at once
//! while one machine is down — a row saying so, not a failed command.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Output};

use crate::harness::{Daemon, TOKEN, create, ctl_command, spec, stderr, stdout};

/// `outpostctl ARGS…` with its config in `config` and no `--addr`.
fn ctl(config: &Path, args: &[&str]) -> Output {
    ctl_command()
        .env("XDG_CONFIG_HOME", config)
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[tokio::test]
async fn one_client_lists_several_daemons_and_survives_one_down() {
    let laptop = Daemon::start();
    let lab = Daemon::builder().tcp().start();
    create(&laptop.connect().await, spec("editor", "sleep", &["600"])).await;
    create(&lab.connect().await, spec("builder", "sleep", &["600"])).await;
    let config = tempfile::tempdir().unwrap();
    let token = config.path().join("lab.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let laptop_address = laptop.unix_address().to_string();
    let lab_address = lab.tcp_address().to_string();
    ok(ctl(
        config.path(),
        &["context", "add", "laptop", &laptop_address],
    ));
    ok(ctl(
        config.path(),
        &[
            "context",
            "add",
            "lab",
            &lab_address,
            "--token-file",
            token.to_str().unwrap(),
        ],
    ));
    ok(ctl(
        config.path(),
        &[
            "context",
            "add",
            "gone",
            "unix:///nonexistent/outpostd.sock",
        ],
    ));
    let file = config.path().join("outpost/contexts.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Without a context in use, the default socket (none here) is asked.
    let before = ctl(config.path(), &["ls"]);
    assert!(!before.status.success());
    ok(ctl(config.path(), &["context", "use", "laptop"]));
    let listed = ok(ctl(config.path(), &["context", "ls"]));
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with('*') && line.contains("laptop")),
        "{listed}"
    );
    assert!(ok(ctl(config.path(), &["ls"])).contains("editor"));
    // --context picks another, with its token file.
    let on_lab = ok(ctl(config.path(), &["--context", "lab", "ls"]));
    assert!(
        on_lab.contains("builder") && !on_lab.contains("editor"),
        "{on_lab}"
    );
    // --addr wins over any context.
    let direct = ok(ctl(
        config.path(),
        &[
            "--addr",
            &lab_address,
            "--token-file",
            token.to_str().unwrap(),
            "ls",
        ],
    ));
    assert!(direct.contains("builder"));

    let all = ctl(config.path(), &["--timeout", "2s", "ls", "--all-contexts"]);
    let table = ok(all);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("CONTEXT"), "{table}");
    let row = |context: &str| {
        rows.iter()
            .find(|row| row.split_whitespace().next() == Some(context))
            .unwrap_or_else(|| panic!("no {context} row in:\n{table}"))
            .to_owned()
    };
    assert!(row("laptop").contains("editor") && row("laptop").contains("running"));
    assert!(row("lab").contains("builder"));
    assert!(row("gone").contains("unreachable") && row("gone").contains("no such file"));

    let some = ok(ctl(
        config.path(),
        &["ls", "--contexts", "lab,gone", "--json"],
    ));
    let json: serde_json::Value = serde_json::from_str(&some).unwrap();
    assert_eq!(json["lab"]["instances"][0]["name"], "builder");
    assert!(
        json["gone"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    assert!(json.get("laptop").is_none());

    let unknown = ctl(config.path(), &["--context", "nope", "ls"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no context named nope"),
        "{}",
        stderr(&unknown)
    );
    ok(ctl(config.path(), &["context", "rm", "laptop"]));
    let after = ok(ctl(config.path(), &["context", "ls"]));
    assert!(!after.contains("laptop") && !after.contains('*'), "{after}");
}
