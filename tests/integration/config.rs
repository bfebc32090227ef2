//! Bad settings stop the daemon at start with a message naming the setting
//! and the bad value.

use std::{fs, path::Path};

use crate::harness::{TOKEN, daemon_command, stderr};

/// Runs outpostd with `args` and `envs`; asserts it fails with exit status
/// 2 and a message containing every one of `expected`.
fn assert_rejected(args: &[&str], envs: &[(&str, &str)], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    assert_rejected_with(&dir.path().join("data"), args, envs, expected);
}

/// [`assert_rejected`] with a given data directory.
fn assert_rejected_with(data_dir: &Path, args: &[&str], envs: &[(&str, &str)], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/s.sock");
    let mut command = daemon_command(data_dir, &socket);
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} {envs:?}: {message}"
    );
    for needle in expected {
        assert!(
            message.contains(needle),
            "{args:?} {envs:?}: {needle:?} not in {message}"
        );
    }
    assert!(!socket.exists(), "no socket after a failed start");
}

#[test]
fn bad_listen_port_names_the_flag() {
    assert_rejected(
        &["--listen", "tcp://127.0.0.1:70000"],
        &[("OUTPOST_TOKEN", TOKEN)],
        &["--listen", "70000", "not a number from 0 to 65535"],
    );
    assert_rejected(
        &[],
        &[("OUTPOST_LISTEN", "udp://1.2.3.4:5")],
        &["--listen", "udp://1.2.3.4:5"],
    );
}

#[test]
fn bad_port_range_names_the_flag() {
    assert_rejected(
        &["--port-range", "5000-4000"],
        &[],
        &["--port-range", "greater than end"],
    );
    assert_rejected(
        &[],
        &[("OUTPOST_PORT_RANGE", "4100")],
        &["--port-range", "START-END"],
    );
}

#[test]
fn bad_max_instances_names_the_flag() {
    assert_rejected(
        &[],
        &[("OUTPOST_MAX_INSTANCES", "0")],
        &["--max-instances", "0"],
    );
    assert_rejected(
        &["--max-instances", "lots"],
        &[],
        &["--max-instances", "lots"],
    );
}

#[test]
fn unwritable_data_dir_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let data_dir = file.join("data");
    assert_rejected_with(
        &data_dir,
        &[],
        &[],
        &[
            "--data-dir (OUTPOST_DATA_DIR)",
            "cannot create directory",
            data_dir.to_str().unwrap(),
        ],
    );
}

#[test]
fn relative_paths_are_rejected() {
    assert_rejected(
        &["--sync-root", "relative/dir"],
        &[],
        &["--sync-root", "not an absolute path"],
    );
}

#[test]
fn bad_tokens_name_the_setting() {
    assert_rejected(
        &["--listen", "tcp://127.0.0.1:0"],
        &[("OUTPOST_TOKEN", "short")],
        &["OUTPOST_TOKEN", "shorter than 16 characters"],
    );
    assert_rejected(
        &["--token-file", "/nonexistent/token"],
        &[],
        &["--token-file", "/nonexistent/token"],
    );
}
