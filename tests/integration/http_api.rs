//! The dashboard's HTTP front against a real daemon: who may call it
//! (login codes, sessions, bearer tokens, Host and Origin), the JSON API
//! answering as the gRPC services do, and the event stream resuming after
//! the last event a client saw.

use hyper::{Method, StatusCode};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{
    harness::{Daemon, TOKEN, exists, stdout},
    http_client::{Answer, Call, Events, dashboard_host},
};

fn dashboard() -> Daemon {
    Daemon::builder().arg("--http").arg("127.0.0.1:0").start()
}

/// A fresh login URL from `outpostctl dashboard`, as path and query.
fn login_path(daemon: &Daemon, host: &str) -> String {
    let output = daemon.ctl(&["dashboard"]);
    assert!(output.status.success(), "{output:?}");
    let url = stdout(&output).trim().to_owned();
    let path = url
        .strip_prefix(&format!("http://{host}"))
        .unwrap_or_else(|| panic!("{url} is not on {host}"));
    assert!(path.starts_with("/login?code="), "{url}");
    path.to_owned()
}

/// Logs in: the answer carries the session cookie.
async fn log_in(daemon: &Daemon, host: &str) -> Answer {
    let login = Call::get(host, &login_path(daemon, host)).send().await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    assert_eq!(login.headers["location"], "/");
    let cookie = login.headers["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    login
}

#[tokio::test]
async fn nothing_without_a_login_and_a_code_works_once() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);

    let api = Call::get(&host, "/api/v1/instances").send().await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["code"], "UNAUTHENTICATED");
    let page = Call::get(&host, "/").send().await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("outpostctl dashboard"), "{}", page.body);

    let path = login_path(&daemon, &host);
    let login = Call::get(&host, &path).send().await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let again = Call::get(&host, &path).send().await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a code works once");
    assert!(again.headers.get("set-cookie").is_none());
    let forged = Call::get(&host, "/login?code=00112233").send().await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let page = Call::get(&host, "/").cookie(&login).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("/assets/app.js"), "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let api = Call::get(&host, "/api/v1/instances")
        .cookie(&login)
        .send()
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);

    let forged_cookie = Call::get(&host, "/api/v1/instances")
        .header(
            "cookie",
            &format!("outpost_session_{}=99999999999", port(&host)),
        )
        .send()
        .await;
    assert_eq!(forged_cookie.status, StatusCode::UNAUTHORIZED);
}

fn port(host: &str) -> &str {
    host.rsplit_once(':').unwrap().1
}

#[tokio::test]
async fn the_bearer_token_works_for_scripts() {
    let daemon = Daemon::builder()
        .tcp()
        .arg("--http")
        .arg("127.0.0.1:0")
        .start();
    let host = dashboard_host(&daemon);
    let bearer = format!("Bearer {TOKEN}");
    let status = Call::get(&host, "/api/v1/daemon/status")
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.json()["http_address"], format!("http://{host}"));
    let wrong = Call::get(&host, "/api/v1/daemon/status")
        .header("authorization", "Bearer not-the-token-0123456789")
        .send()
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    // A script's write needs no Origin.
    let created = Call::post(&host, "/api/v1/instances")
        .header("authorization", &bearer)
        .json(&json!({"spec": {"name": "job", "command": "sleep", "args": ["600"]}}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(
        created.json()["instance"]["state"],
        "INSTANCE_STATE_RUNNING"
    );
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    let web = crate::harness::create(
        &daemon.connect().await,
        crate::harness::spec("web", "sleep", &["600"]),
    )
    .await;

    // DNS rebinding: a name that resolves here, in the Host header.
    for other in [
        format!("evil.example:{}", port(&host)),
        format!("localhost.evil.example:{}", port(&host)),
        "127.0.0.1:1".to_owned(),
    ] {
        let answer = Call::get(&host, "/api/v1/instances")
            .header("host", &other)
            .cookie(&login)
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "Host {other}");
        let page = Call::get(&host, "/").header("host", &other).send().await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "Host {other}");
    }

    // A write from another site's page, with and without a session.
    for call in [
        Call::post(&host, "/api/v1/instances/web/stop").cookie(&login),
        Call::post(&host, "/api/v1/instances/web/stop")
            .header("authorization", &format!("Bearer {TOKEN}")),
        Call::post(&host, "/api/v1/instances/web/stop"),
        Call::new(&host, Method::DELETE, "/api/v1/instances/web").cookie(&login),
    ] {
        let answer = call.header("origin", "http://evil.example").send().await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert_eq!(answer.json()["code"], "PERMISSION_DENIED");
    }
    // A session's write without any Origin.
    let bare = Call::post(&host, "/api/v1/instances/web/stop")
        .cookie(&login)
        .send()
        .await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    assert!(exists(web.pid), "no refused write reached the instance");

    let stopped = Call::post(&host, "/api/v1/instances/web/stop")
        .cookie(&login)
        .same_origin()
        .send()
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(
        stopped.json()["instance"]["state"],
        "INSTANCE_STATE_STOPPED"
    );
    assert!(!exists(web.pid));
}

#[tokio::test]
async fn the_api_answers_as_the_grpc_services_do() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    let call =
        |method: Method, path: &str| Call::new(&host, method, path).cookie(&login).same_origin();

    let bad = call(Method::POST, "/api/v1/instances")
        .json(&json!({"spec": {"name": "bad name!", "command": "sleep"}}))
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert_eq!(bad.json()["code"], "INVALID_ARGUMENT");
    assert!(
        bad.json()["message"].as_str().unwrap().contains("name"),
        "{}",
        bad.body
    );
    let garbage = call(Method::POST, "/api/v1/instances")
        .json(&json!({"spec": {"name": 5}}))
        .send()
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST, "{}", garbage.body);
    let nowhere = call(Method::GET, "/api/v1/nothing/here").send().await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.json()["code"], "NOT_FOUND");
    let missing = call(Method::GET, "/api/v1/instances/nobody").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["code"], "NOT_FOUND");

    let script = "echo first; echo second >&2; exec sleep 600";
    let created = call(Method::POST, "/api/v1/instances")
        .json(&json!({"spec": {"name": "web", "command": "sh", "args": ["-c", script]}}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let taken = call(Method::POST, "/api/v1/instances")
        .json(&json!({"spec": {"name": "web", "command": "true"}}))
        .send()
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!(taken.json()["code"], "ALREADY_EXISTS");

    let listed = call(Method::GET, "/api/v1/instances?state=running")
        .send()
        .await;
    let instances = listed.json()["instances"].as_array().unwrap().clone();
    assert_eq!(instances.len(), 1, "{}", listed.body);
    assert_eq!(instances[0]["name"], "web");
    let none = call(Method::GET, "/api/v1/instances?state=stopped")
        .send()
        .await;
    assert_eq!(none.json()["instances"], json!([]));

    let mut followed = call(
        Method::GET,
        "/api/v1/instances/web/logs?follow=true&tail=10",
    )
    .events()
    .await;
    let mut texts = Vec::new();
    while !(texts.contains(&json!("first")) && texts.contains(&json!("second"))) {
        let event = followed.next().await;
        assert_eq!(event.kind, "lines", "{event:?}");
        for line in event.data["lines"].as_array().unwrap() {
            texts.push(line["text"].clone());
        }
    }
    let tail = call(Method::GET, "/api/v1/instances/web/logs?tail=10")
        .send()
        .await;
    assert!(
        tail.body.contains("first") && tail.body.contains("second"),
        "{}",
        tail.body
    );
    let stderr = call(Method::GET, "/api/v1/instances/web/logs?stream=stderr")
        .send()
        .await;
    assert!(stderr.body.contains("second") && !stderr.body.contains("first"));
    let bad_stream = call(Method::GET, "/api/v1/instances/web/logs?stream=both")
        .send()
        .await;
    assert_eq!(bad_stream.status, StatusCode::BAD_REQUEST);

    let restarted = call(Method::POST, "/api/v1/instances/web/restart")
        .send()
        .await;
    assert_eq!(restarted.status, StatusCode::OK, "{}", restarted.body);
    let touched = call(Method::POST, "/api/v1/instances/web/touch")
        .send()
        .await;
    assert_eq!(touched.status, StatusCode::OK, "{}", touched.body);
    let deleted = call(Method::DELETE, "/api/v1/instances/web").send().await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let gone = call(Method::GET, "/api/v1/instances/web").send().await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

/// The revision of an SSE event.
fn revision(event: &crate::http_client::Event) -> u64 {
    event.id.as_deref().expect("an id").parse().unwrap()
}

/// The next `status` event for instance `name` in state `state`.
async fn until_state(events: &mut Events, name: &str, state: &str) -> u64 {
    loop {
        let event = events.next().await;
        let changed = &event.data["instance_changed"]["instance"];
        if event.kind == "status" && changed["name"] == name && changed["state"] == state {
            return revision(&event);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_resumes_without_a_gap() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    let connection = daemon.connect().await;
    let events = || Call::get(&host, "/api/v1/events").cookie(&login);

    let mut first = events().events().await;
    let snapshot = first.next().await;
    assert_eq!(snapshot.kind, "snapshot");
    assert_eq!(snapshot.data["kind"], "SNAPSHOT_KIND_INITIAL");
    assert_eq!(snapshot.id.as_deref(), snapshot.data["revision"].as_str());

    crate::harness::create(&connection, crate::harness::spec("a", "sleep", &["600"])).await;
    let seen = until_state(&mut first, "a", "INSTANCE_STATE_RUNNING").await;
    drop(first);

    // Changes while the client is away…
    crate::harness::stop(&connection, "a").await;
    crate::harness::create(&connection, crate::harness::spec("b", "sleep", &["600"])).await;

    // …arrive after a reconnect with Last-Event-ID, the first one next.
    let mut resumed = events()
        .header("last-event-id", &seen.to_string())
        .events()
        .await;
    let next = resumed.next().await;
    assert_eq!(next.kind, "status", "no snapshot on a resume: {next:?}");
    assert_eq!(
        revision(&next),
        seen + 1,
        "the first event missed comes first"
    );
    assert_eq!(next.data["instance_changed"]["instance"]["name"], "a");
    let mut last = revision(&next);
    let mut states = vec![next.data["instance_changed"]["instance"]["state"].clone()];
    while states.last() != Some(&json!("INSTANCE_STATE_RUNNING")) || last == revision(&next) {
        let event = resumed.next().await;
        assert_eq!(revision(&event), last + 1, "every event, in revision order");
        last = revision(&event);
        states.push(event.data["instance_changed"]["instance"]["state"].clone());
    }
    assert!(
        states.contains(&json!("INSTANCE_STATE_STOPPED")),
        "{states:?}"
    );

    // A revision from before this daemon's history gets a fresh snapshot.
    let mut stale = events().header("last-event-id", "1").events().await;
    let resync = stale.next().await;
    assert_eq!(resync.kind, "snapshot");
    assert_eq!(resync.data["kind"], "SNAPSHOT_KIND_RESYNC");
    assert_eq!(resync.data["instances"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_one_stream_resumes_both_buses() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    let connection = daemon.connect().await;
    let stream = || Call::get(&host, "/api/v1/stream").cookie(&login);

    let mut first = stream().events().await;
    let mut kinds = Vec::new();
    let mut last_id = String::new();
    while kinds.len() < 2 {
        let event = first.next().await;
        last_id = event.id.clone().expect("every bus event has an id");
        kinds.push(event.kind);
    }
    kinds.sort();
    assert_eq!(kinds, ["snapshot", "sync-snapshot"]);
    let (status, sync) = last_id.split_once(':').expect("STATUS:SYNC");
    assert!(status.parse::<u64>().unwrap() > 0 && sync.parse::<u64>().unwrap() > 0);
    drop(first);

    crate::harness::create(&connection, crate::harness::spec("a", "sleep", &["600"])).await;
    let mut resumed = stream().header("last-event-id", &last_id).events().await;
    let next = resumed.next().await;
    assert_eq!(next.kind, "status", "resumed, no snapshot: {next:?}");
    assert_eq!(next.data["instance_changed"]["instance"]["name"], "a");
    let id = next.id.unwrap();
    assert_eq!(
        id,
        format!("{}:{sync}", next.data["revision"].as_str().unwrap()),
        "the sync bus's revision is carried along"
    );

    let bad = stream().header("last-event-id", "12").send().await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let mut usage = Call::get(&host, "/api/v1/stream?usage=1")
        .cookie(&login)
        .events()
        .await;
    let mut seen = Vec::new();
    while !seen.contains(&"usage".to_owned()) {
        seen.push(usage.next().await.kind);
    }
}

#[tokio::test]
async fn usage_is_pushed_while_the_stream_is_open() {
    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    crate::harness::create(
        &daemon.connect().await,
        crate::harness::spec("web", "sleep", &["600"]),
    )
    .await;
    let mut usage = Call::get(&host, "/api/v1/usage?every=1")
        .cookie(&login)
        .events()
        .await;
    for _ in 0..2 {
        let sample = usage.next().await;
        assert_eq!(sample.kind, "usage");
        let instances = sample.data["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{sample:?}");
        assert_eq!(instances[0]["name"], "web");
        assert!(instances[0]["spec"].is_null(), "no specs: {sample:?}");
    }
    let bad = Call::get(&host, "/api/v1/usage?every=0")
        .cookie(&login)
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("every:")
    );
}

#[tokio::test]
async fn a_session_survives_a_daemon_restart() {
    let host = format!("127.0.0.1:{}", outpost_test_support::process::free_port());
    let mut daemon = Daemon::builder().arg("--http").arg(&host).start();
    let login = log_in(&daemon, &host).await;
    let key = daemon.data_dir.join("dashboard-session.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(crate::http_client::DEADLINE);
    daemon.respawn(&[]);
    let answer = Call::get(&host, "/api/v1/instances")
        .cookie(&login)
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn open_streams_end_and_do_not_hold_a_stopping_daemon() {
    streams_end_when_the_daemon_stops(|daemon| daemon.signal(Signal::SIGTERM)).await;
}

#[tokio::test]
async fn open_streams_end_on_the_shutdown_rpc_too() {
    streams_end_when_the_daemon_stops(|daemon| {
        let output = daemon.ctl(&["shutdown"]);
        assert!(output.status.success(), "{output:?}");
    })
    .await;
}

/// Opens both event streams, has `stop` stop the daemon, and checks that
/// it exits 0 and the streams end.
async fn streams_end_when_the_daemon_stops(stop: impl FnOnce(&Daemon)) {
    let mut daemon = dashboard();
    let host = dashboard_host(&daemon);
    let login = log_in(&daemon, &host).await;
    let mut events = Call::get(&host, "/api/v1/events")
        .cookie(&login)
        .events()
        .await;
    assert_eq!(events.next().await.kind, "snapshot");
    let mut sync = Call::get(&host, "/api/v1/sync/events")
        .cookie(&login)
        .events()
        .await;
    assert_eq!(sync.next().await.kind, "snapshot");

    stop(&daemon);
    let status = daemon.wait_exit(crate::http_client::DEADLINE);
    assert!(status.success(), "{status:?}");
    events.ended().await;
    sync.ended().await;
}

#[test]
fn a_network_address_needs_consent() {
    let output = crate::harness::daemon_command(
        &std::env::temp_dir().join("outpost-http-unused"),
        &std::env::temp_dir().join("outpost-http-unused.sock"),
    )
    .arg("--http")
    .arg("0.0.0.0:0")
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--http") && stderr.contains("--http-insecure"),
        "{stderr}"
    );
}

#[test]
fn status_and_the_cli_name_the_dashboard() {
    let plain = Daemon::start();
    let refused = plain.ctl(&["dashboard"]);
    assert!(!refused.status.success());
    let message = crate::harness::stderr(&refused);
    assert!(message.contains("--http"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");

    let daemon = dashboard();
    let host = dashboard_host(&daemon);
    let status = stdout(&daemon.ctl(&["status"]));
    assert!(status.contains(&format!("http://{host}")), "{status}");
}
