//! When things go wrong or are looked at: the database going away, the
//! status and the password, a config that cannot be read.

use super::*;
use crate::harness::{START_DEADLINE, create, spec, stdout, wait_until};

both_servers!(an_edit_made_while_the_database_is_down_lands_when_it_is_back);
async fn an_edit_made_while_the_database_is_down_lands_when_it_is_back(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    export(&mut s.sync, SET).await;
    let footer = s.dir("templates", SET).await.join("footer/footer.html");

    s.db.stop();
    backend_when(&s.sync, "the status to say unreachable", |backend| {
        backend.unreachable_since.is_some()
    })
    .await;
    save(
        &footer,
        "<footer>written while the database was down</footer>",
    );
    s.events
        .until("the save to fail for now", |e| {
            e.kind() == K::Failing && e.path == footer.display().to_string()
        })
        .await;
    let failing = status(&mut s.sync).await;
    assert!(failing.failing_count >= 1, "{failing:?}");
    let failure = failing.latest_failure.unwrap_or_default();
    assert!(failure.since.is_some(), "{failure:?}");

    s.db.start_again();
    s.events
        .until("the save to land", |e| about(e, K::Imported, SET, "footer"))
        .await;
    s.events
        .until("the failure to end", |e| {
            e.kind() == K::Recovered && e.path == footer.display().to_string()
        })
        .await;
    // What else failed while the database was away (the poller's hints)
    // is tried again at once and clears too.
    eventually("nothing to fail any more", EVENT_DEADLINE, || {
        let mut sync = s.sync.clone();
        async move { (status(&mut sync).await.failing_count == 0).then_some(()) }
    })
    .await;
    assert_eq!(
        s.value(&format!(
            "SELECT template FROM {templates} WHERE sid = 1 AND title = 'footer'"
        )),
        "<footer>written while the database was down</footer>"
    );
    let backend = status(&mut s.sync).await.backend.unwrap_or_default();
    assert!(backend.unreachable_since.is_none(), "{backend:?}");
}

both_servers!(the_status_names_the_forum_and_nothing_shows_the_password);
async fn the_status_names_the_forum_and_nothing_shows_the_password(server: Server) {
    let Some(db) = Db::start(server, &small()) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    db.write_root(root.path(), Connect::Environment);
    let url = db.url();
    // Given as an argument: the daemon moves it out of its arguments.
    let daemon = Daemon::builder()
        .arg("--mybb")
        .arg(root.path())
        .arg("--mybb-database")
        .arg(&url)
        .start();
    let connection = daemon.connect().await;
    let sync = connection.sync();
    let backend = backend_when(&sync, "the first poll", |backend| {
        backend.last_poll_at.is_some()
    })
    .await;
    assert_eq!(backend.kind, "mybb");
    assert_eq!(backend.database, db.database());
    assert_eq!(backend.table_prefix, db.prefix());
    assert_eq!(backend.forum_root, root.path().display().to_string());
    let product = match server {
        Server::MariaDb(_) => "MariaDB",
        Server::Postgres => "PostgreSQL",
    };
    assert!(backend.server_version.contains(product), "{backend:?}");
    let shown = stdout(&daemon.ctl(&["sync", "status"]));
    assert!(
        shown.contains("mybb") && shown.contains(db.database()),
        "{shown}"
    );

    let cmdline = fs::read(format!("/proc/{}/cmdline", daemon.pid())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("--mybb"), "{cmdline}");
    assert!(!cmdline.contains(db.password()), "{cmdline}");
    assert!(!cmdline.contains("://"), "{cmdline}");

    // Instances started by the daemon do not inherit the URL.
    let env_file = daemon.dir.path().join("instance.env");
    create(
        &connection,
        spec(
            "env",
            "sh",
            &[
                "-c",
                &format!("env > {}; exec sleep 60", env_file.display()),
            ],
        ),
    )
    .await;
    wait_until(
        "the instance to write its environment",
        START_DEADLINE,
        || fs::read_to_string(&env_file).is_ok_and(|env| env.contains("PATH=")),
    );
    let env = fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains("OUTPOST_MYBB_DATABASE"), "{env}");
    assert!(!daemon.log.text().contains(db.password()));
    drop(daemon);

    // A wrong password: the daemon serves, and says why the database
    // cannot be used, without the password.
    let wrong = db.url_with_a_wrong_password();
    let daemon = Daemon::builder()
        .arg("--mybb")
        .arg(root.path())
        .env("OUTPOST_MYBB_DATABASE", &wrong)
        .start();
    let sync = daemon.connect().await.sync();
    let backend = backend_when(&sync, "the status to say unreachable", |backend| {
        backend.unreachable_since.is_some()
    })
    .await;
    let refusal = match server {
        Server::MariaDb(_) => "Access denied",
        Server::Postgres => "password authentication failed",
    };
    assert!(backend.error.contains(refusal), "{backend:?}");
    let shown = stdout(&daemon.ctl(&["sync", "status"]));
    assert!(shown.contains("unreachable since"), "{shown}");
    assert!(!shown.contains("not-the-password"), "{shown}");
    assert!(!daemon.log.text().contains("not-the-password"));
}

#[test]
fn a_config_it_cannot_read_stops_the_start_naming_the_line() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("inc")).unwrap();
    fs::write(
        root.path().join("inc/config.php"),
        "<?php\n$config['database']['type'] = 'mysqli';\n$config['database']['hostname'] = getenv('DB_HOST');\n",
    )
    .unwrap();
    let mut daemon = Daemon::builder().arg("--mybb").arg(root.path()).spawn();
    let status = daemon.wait_exit(START_DEADLINE);
    assert_eq!(status.code(), Some(2));
    let log = daemon.log.text();
    assert!(log.contains("--mybb"), "{log}");
    assert!(log.contains("inc/config.php: line 3"), "{log}");
}
