//! The dashboard in a real headless Chromium against a real daemon: the
//! browser logs in through the one-time URL `outpostctl dashboard` prints,
//! and every check is made on what the page shows (its `data-*` hooks),
//! against what /proc, the CLI and the daemon's API say is true.
//!
//! Without Chromium and chromedriver these tests skip (saying why), unless
//! `OUTPOST_REQUIRE_REAL` is set, as in CI.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nix::{
    sys::{
        signal::{Signal, kill},
        stat::Mode,
    },
    unistd::{Pid, mkfifo},
};
use outpost::proto::v1 as pb;
use outpost_test_support::browser::{Browser, Key};
use serde_json::{Value, json};

use crate::{
    harness::{
        Daemon, DaemonBuilder, START_DEADLINE, assert_no_stray_processes, exists, marked_processes,
        stderr, stdout, wait_until,
    },
    stores::Backend,
    sync_support::{Mirrored, put, status, sync_builder, template},
    workspaces::{save, workspace_dir},
};

/// How soon after the CLI created an instance the page must show it.
const SHOWN_WITHIN: Duration = Duration::from_secs(1);

/// A daemon builder that also serves the dashboard on a free port. Set by
/// the environment, so that a restart can name the port it bound with
/// `--http`, which overrides it.
fn with_dashboard(builder: DaemonBuilder) -> DaemonBuilder {
    builder.env("OUTPOST_HTTP", "127.0.0.1:0")
}

/// The dashboard's `http://127.0.0.1:PORT`, from the log line that says
/// the daemon serves.
fn dashboard_url(daemon: &Daemon) -> String {
    let log = daemon.log.text();
    let serving = log
        .lines()
        .find(|line| line.contains(" serving "))
        .expect("the daemon serves");
    let (_, after) = serving
        .split_once(" http=")
        .expect("no dashboard in the log");
    after
        .trim_start_matches('"')
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

/// A one-time login URL, as `outpostctl dashboard` prints it.
fn login_url(daemon: &Daemon) -> String {
    let output = daemon.ctl(&["dashboard"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let url = stdout(&output).trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/login?code=", dashboard_url(daemon))),
        "{url}"
    );
    url
}

/// A browser logged in to `daemon`'s dashboard, with the page's status
/// stream open; None when there is no browser (and that may be skipped).
async fn logged_in(daemon: &Daemon) -> Option<Browser> {
    let browser = Browser::start().await?;
    browser.goto(&login_url(daemon)).await;
    // The code was spent and the browser sent on: the URL it keeps in its
    // history holds nothing that logs anyone in.
    let url = browser.client().current_url().await.unwrap();
    assert_eq!(
        (url.path(), url.query()),
        ("/", None),
        "the login redirects to the page"
    );
    browser
        .wait_attribute("#connection", "data-connection", "live")
        .await;
    Some(browser)
}

/// The CSS selector of `name`'s row.
fn row(name: &str) -> String {
    format!("tr[data-instance=\"{name}\"]")
}

/// The selector of `name`'s row in `state`.
fn row_in(name: &str, state: &str) -> String {
    format!("tr[data-instance=\"{name}\"][data-state=\"{state}\"]")
}

/// The selector of `name`'s `action` button.
fn button(name: &str, action: &str) -> String {
    format!("{} button[data-action=\"{action}\"]", row(name))
}

/// `outpostctl --json ARGS…`, which must succeed.
fn ctl_json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = daemon.ctl(&all);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("JSON from outpostctl")
}

/// Now, in ms since the epoch: comparable with the page's `Date.now()`
/// (the browser runs on this machine).
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[tokio::test]
async fn an_instance_made_with_the_cli_shows_up_live_and_stop_stops_its_tree() {
    let daemon = with_dashboard(Daemon::builder()).start();
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    // A reload would lose this: the row must come by the event stream.
    browser
        .run("window.outpostTestMark = 'same page'", vec![])
        .await;

    // A tree: the shell and two children in its group.
    let created = ctl_json(
        &daemon,
        &[
            "run",
            "web",
            "--port",
            "auto",
            "--",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & wait",
        ],
    );
    let created_at = now_ms();
    let instance = &created["instance"];
    let id = instance["id"].as_str().unwrap().to_owned();
    let pid = u32::try_from(instance["pid"].as_u64().unwrap()).unwrap();
    let port = instance["port"].as_u64().unwrap();
    let shown_at = browser.wait_present(&row_in("web", "running")).await;
    let latency = Duration::from_secs_f64((shown_at - created_at).max(0.0) / 1000.0);
    eprintln!("the row appeared {latency:?} after the create");
    assert!(
        latency <= SHOWN_WITHIN,
        "the row appeared {latency:?} after the create"
    );
    assert_eq!(
        browser.run("return window.outpostTestMark", vec![]).await,
        json!("same page"),
        "the page was not reloaded"
    );
    let cells = browser
        .texts(&format!("{} th, {} td", row("web"), row("web")))
        .await;
    assert_eq!(cells[0], "web", "{cells:?}");
    assert_eq!(cells[2], pid.to_string(), "{cells:?}");
    let link = browser
        .find(&format!("{} a", row("web")))
        .await
        .attr("href")
        .await
        .unwrap();
    assert_eq!(link.as_deref(), Some(&*format!("http://127.0.0.1:{port}/")));

    wait_until("the shell's two children", START_DEADLINE, || {
        marked_processes()
            .get(&id)
            .is_some_and(|pids| pids.len() == 3)
    });
    browser.click(&button("web", "stop")).await;
    browser.wait_present(&row_in("web", "stopped")).await;
    assert!(!exists(pid), "the shell {pid} is gone");
    assert_eq!(
        marked_processes().get(&id),
        None,
        "no process of the instance remains"
    );
    let connection = daemon.connect().await;
    assert_no_stray_processes(&daemon, &connection).await;
    let state = ctl_json(&daemon, &["get", "web"])["instance"]["state"].clone();
    assert_eq!(state, json!("INSTANCE_STATE_STOPPED"));
    browser
        .wait_text("#events", "web: stopping → stopped")
        .await;

    // Started again from the page: a new process.
    browser.click(&button("web", "start")).await;
    browser.wait_present(&row_in("web", "running")).await;
    let restarted = ctl_json(&daemon, &["get", "web"])["instance"]["pid"].clone();
    assert_ne!(restarted, json!(pid));
    assert!(restarted.as_u64().is_some_and(|pid| exists(pid as u32)));

    // Delete asks first, in the page; confirmed, the row goes.
    browser.click(&button("web", "delete")).await;
    browser.wait_present("#delete-dialog[open]").await;
    browser
        .click("button[data-action=\"confirm-delete\"]")
        .await;
    browser.wait_absent(&row("web")).await;
    let gone = daemon.ctl(&["get", "web"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stdout(&gone));
    assert_no_stray_processes(&daemon, &connection).await;
}

/// Most bytes the page may cost a browser to load, everything included.
const PAGE_BUDGET: u64 = 100 * 1024;

#[tokio::test]
async fn several_tabs_leave_room_for_their_requests() {
    let daemon = with_dashboard(Daemon::builder()).start();
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    ctl_json(&daemon, &["run", "web", "--", "sleep", "1000"]);
    // A browser holds six HTTP/1.1 connections per host across its tabs;
    // a page that held several streams open would leave none for a click.
    let client = browser.client();
    let url = dashboard_url(&daemon);
    for _ in 0..4 {
        let tab = client.new_window(false).await.unwrap();
        client.switch_to_window(tab.handle).await.unwrap();
        browser.goto(&url).await;
        browser
            .wait_attribute("#connection", "data-connection", "live")
            .await;
    }
    browser.wait_present(&row_in("web", "running")).await;
    browser.click(&button("web", "stop")).await;
    browser.wait_present(&row_in("web", "stopped")).await;
    let shown = ctl_json(&daemon, &["get", "web"]);
    assert_eq!(shown["instance"]["state"], "INSTANCE_STATE_STOPPED");
}

#[tokio::test]
async fn the_page_is_small_and_self_contained() {
    let daemon = with_dashboard(Daemon::builder()).start();
    ctl_json(&daemon, &["run", "web", "--", "sleep", "1000"]);
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    browser.wait_present(&row_in("web", "running")).await;
    let (loaded, _) = browser
        .wait_until(
            "the table's first snapshot",
            "const [first] = performance.getEntriesByName('outpost-first-snapshot'); \
             const [page] = performance.getEntriesByType('navigation'); \
             return first && { \
                 firstSnapshotMs: first.startTime, \
                 resources: [page, ...performance.getEntriesByType('resource')] \
                     .map((e) => ({ name: e.name, bytes: e.transferSize })), \
             };",
            json!({}),
        )
        .await;
    let origin = dashboard_url(&daemon);
    let resources = loaded["resources"].as_array().unwrap();
    let mut total = 0;
    for resource in resources {
        let name = resource["name"].as_str().unwrap();
        assert!(
            name.starts_with(&origin),
            "a request off the daemon: {name}"
        );
        total += resource["bytes"].as_u64().unwrap();
    }
    let names: Vec<&str> = resources
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for asset in ["/assets/app.js", "/assets/app.css"] {
        assert!(names.iter().any(|name| name.ends_with(asset)), "{names:?}");
    }
    assert!(total <= PAGE_BUDGET, "{total} bytes: {resources:#?}");
    eprintln!(
        "page: {total} bytes transferred; first snapshot shown {:.0} ms after navigation",
        loaded["firstSnapshotMs"].as_f64().unwrap()
    );
}

#[tokio::test]
async fn a_refused_delete_shows_the_daemons_message() {
    let daemon = with_dashboard(Daemon::builder()).start();
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    save(
        &workspace_dir(&daemon).join("shop.toml"),
        "[instances.api]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    browser.wait_present(&row_in("shop.api", "running")).await;
    browser
        .wait_text("#events", "workspace shop: applied")
        .await;

    // By keyboard: Enter on delete opens the dialog with the focus on
    // cancel, Escape closes it and nothing happens.
    let enter = char::from(Key::Enter).to_string();
    browser
        .type_into(&button("shop.api", "delete"), &enter)
        .await;
    browser.wait_present("#delete-dialog[open]").await;
    assert_eq!(browser.focused().await, "delete-cancel");
    browser
        .type_here(&char::from(Key::Escape).to_string())
        .await;
    browser.wait_present("#delete-dialog:not([open])").await;
    browser.find(&row_in("shop.api", "running")).await;

    // Tab to the dialog's delete and Enter: a workspace owns the instance,
    // so the daemon refuses a delete without force.
    browser
        .type_into(&button("shop.api", "delete"), &enter)
        .await;
    browser.wait_present("#delete-dialog[open]").await;
    browser.type_here(&char::from(Key::Tab).to_string()).await;
    assert_eq!(browser.focused().await, "confirm-delete");
    browser.type_here(&enter).await;
    let notice = browser
        .wait_text("#notice", "owned by workspace shop")
        .await;
    assert!(notice.starts_with("delete shop.api: "), "{notice}");
    // The button is usable again, and the instance still runs.
    browser
        .wait_until(
            "the delete button enabled again",
            "return !document.querySelector(args.css).disabled;",
            json!({ "css": button("shop.api", "delete") }),
        )
        .await;
    browser.find(&row_in("shop.api", "running")).await;
    let state = ctl_json(&daemon, &["get", "shop.api"])["instance"]["state"].clone();
    assert_eq!(state, json!("INSTANCE_STATE_RUNNING"));
}

#[tokio::test]
async fn the_log_panel_follows_lines_written_after_it_opened() {
    let daemon = with_dashboard(Daemon::builder()).start();
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    // The instance echoes what the test writes to its FIFO, on stdout and
    // stderr; held open read-write, the FIFO never reads end-of-file.
    let fifo = daemon.dir.path().join("input");
    mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!(
        "exec 3<>'{}'; echo ready; while read -r line <&3; do echo \"out $line\"; echo \"err $line\" >&2; done",
        fifo.display()
    );
    ctl_json(&daemon, &["run", "echo", "--", "sh", "-c", &script]);
    browser.wait_present(&row_in("echo", "running")).await;

    browser
        .click(&format!("{} button[data-action=\"logs\"]", row("echo")))
        .await;
    browser.wait_attribute("#logs", "data-stream", "open").await;
    browser.wait_text("#logs", "ready").await;
    let mut input = OpenOptions::new().write(true).open(&fifo).unwrap();
    for i in 0..300 {
        writeln!(input, "after-{i}").unwrap();
    }
    input.flush().unwrap();
    browser.wait_text("#logs", "out after-299").await;
    browser.wait_text("#logs", "err after-299").await;
    let lines = browser.texts("#logs .log-line").await;
    let out: Vec<&String> = lines.iter().filter(|l| l.starts_with("out ")).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("out after-{i}")).collect();
    assert_eq!(
        out,
        expected.iter().collect::<Vec<_>>(),
        "every line once, in order"
    );
    let stderr_lines = browser.texts("#logs .log-line.stderr").await;
    assert_eq!(stderr_lines.len(), 300, "{stderr_lines:?}");
    assert!(stderr_lines.iter().all(|l| l.starts_with("err ")));
    // The panel was at the bottom, so it stayed there.
    let at_bottom = browser
        .run(
            "const e = document.getElementById('logs'); \
             return e.scrollHeight > e.clientHeight \
                 && e.scrollTop + e.clientHeight >= e.scrollHeight - 4;",
            vec![],
        )
        .await;
    assert_eq!(at_bottom, json!(true), "the panel scrolled with the lines");
}

#[tokio::test]
async fn after_a_daemon_crash_the_page_reconnects_and_shows_the_true_state() {
    let mut daemon = with_dashboard(Daemon::builder()).start();
    let Some(browser) = logged_in(&daemon).await else {
        return;
    };
    let created = ctl_json(&daemon, &["run", "mortal", "--", "sleep", "1000"]);
    let pid = u32::try_from(created["instance"]["pid"].as_u64().unwrap()).unwrap();
    browser.wait_present(&row_in("mortal", "running")).await;
    let url = dashboard_url(&daemon);
    let port = url.rsplit(':').next().unwrap().to_owned();

    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(START_DEADLINE);
    browser
        .wait_attribute("#connection", "data-connection", "reconnecting")
        .await;
    // While no daemon watches, the instance dies.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_until("the process to vanish", START_DEADLINE, || !exists(pid));

    // Same data (and session key), same address: the page's cookie and
    // origin still hold.
    daemon.respawn(&["--http", &format!("127.0.0.1:{port}")]);
    assert_eq!(dashboard_url(&daemon), url);
    browser
        .wait_attribute("#connection", "data-connection", "live")
        .await;
    let truth = ctl_json(&daemon, &["get", "mortal"])["instance"]["state"].clone();
    assert_eq!(truth, json!("INSTANCE_STATE_FAILED"));
    browser.wait_present(&row_in("mortal", "failed")).await;
    let pid_cell = browser
        .texts(&format!("{} td", row("mortal")))
        .await
        .remove(1);
    assert_eq!(pid_cell, "—", "no process is shown for it");

    // And it is live: a change after the restart arrives too.
    ctl_json(&daemon, &["run", "newborn", "--", "sleep", "1000"]);
    browser.wait_present(&row_in("newborn", "running")).await;
}

/// The sync test's template set, title, and its file under the set.
const SET: &str = "Dashboard";
const TITLE: &str = "header_welcome";
const FILE: &str = "header/header_welcome.html";

#[tokio::test]
async fn a_conflict_is_compared_and_resolved_from_the_page() {
    // A long debounce: the database's save lands before the watcher looks
    // at the disk's, so both sides changed since the last sync.
    let builder = with_dashboard(sync_builder(&["--sync-debounce", "2s"]));
    let store = Backend::Native
        .start_with(builder)
        .expect("the native store is always there");
    let mut m = Mirrored::start(store, SET, &[(TITLE, "<b>welcome</b>\n")]).await;
    let Some(browser) = logged_in(&m.store.daemon).await else {
        return;
    };
    browser
        .wait_attribute("#sync", "data-watcher", "watching")
        .await;
    browser.wait_present("#no-conflicts:not([hidden])").await;

    let before = template(&mut m.sync, SET, TITLE).await.version;
    let (disk, database) = (
        "<b>saved in the editor</b>\n",
        "<b>saved in the admin panel</b>\n",
    );
    fs::write(m.file(FILE), disk).unwrap();
    m.sync
        .put_template(put(SET, TITLE, database, Some(before)))
        .await
        .unwrap();

    let item = "#conflicts li[data-conflict]";
    browser.wait_present(item).await;
    let id = browser
        .find(item)
        .await
        .attr("data-conflict")
        .await
        .unwrap()
        .unwrap();
    let listed = m
        .sync
        .list_conflicts(pb::ListConflictsRequest {})
        .await
        .unwrap()
        .into_inner()
        .conflicts;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].id, id);
    browser
        .wait_text("#conflicts", &format!("template {SET}/{TITLE}"))
        .await;
    wait_fact(&browser, "open-conflicts", "1").await;

    let this = format!("li[data-conflict=\"{id}\"]");
    browser
        .click(&format!("{this} button[data-action=\"compare\"]"))
        .await;
    browser
        .wait_present(&format!("{this} .compare:not([hidden])"))
        .await;
    let sides = browser.texts(&format!("{this} .compare pre")).await;
    assert_eq!(sides, [disk, database], "disk left, database right");

    browser
        .click(&format!("{this} button[data-action=\"keep-disk\"]"))
        .await;
    browser.wait_absent(&this).await;
    browser.wait_present("#no-conflicts:not([hidden])").await;
    let kept = template(&mut m.sync, SET, TITLE).await;
    assert_eq!(kept.content, disk, "the disk's side won");
    assert_eq!(status(&mut m.sync).await.open_conflicts, 0);
    browser
        .wait_text("#events", "sync: conflict resolved")
        .await;
    wait_fact(&browser, "open-conflicts", "0").await;
    let (file, copy) = (m.file(FILE), &listed[0].conflict_copy_path);
    wait_until(
        "the file to hold the disk's side, without a copy",
        START_DEADLINE,
        || fs::read_to_string(&file).is_ok_and(|text| text == disk) && !Path::new(copy).exists(),
    );
}

/// Waits until the sync panel's fact `name` reads `value`.
async fn wait_fact(browser: &Browser, name: &str, value: &str) {
    browser
        .wait_until(
            &format!("{name} = {value} in the sync panel"),
            "const e = document.querySelector(`#sync-status dd[data-fact=\"${args.name}\"]`); \
             return e !== null && e.textContent === args.value;",
            json!({ "name": name, "value": value }),
        )
        .await;
}
