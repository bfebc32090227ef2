//! A real headless Chromium for end-to-end tests of the dashboard, driven
//! over WebDriver: a private chromedriver per test, on a free port, in a
//! process group of its own, and a fantoccini session on it with a fresh
//! profile. Dropping the [`Browser`] kills that group — chromedriver and
//! every Chromium process it started; killing chromedriver alone would
//! leave the browser running.
//!
//! Waits happen in the page: [`Browser::wait_until`] runs a condition in
//! the browser each time the document changes (a `MutationObserver`) and
//! answers as soon as it holds, so a test neither sleeps nor polls over
//! the wire.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    elements::Element,
    wd::{Capabilities, TimeoutConfiguration, WebDriverCompatibleCommand},
};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Keys beyond text (Enter, Tab, Escape, …), as chars for the typing helpers.
pub use fantoccini::key::Key;

use crate::process::{
    DEADLINE, PORT_ATTEMPTS, Started, find_program, free_port, skip, wait_started,
};

/// How long one wait in the page may take: the same as a server's start,
/// generous for a loaded machine; a wait answers as soon as its condition
/// holds.
pub const WAIT_DEADLINE: Duration = DEADLINE;

/// Chromium's flags: headless, as root (no sandbox), no GPU, and nothing
/// that talks to the network on its own or waits for a first-run dialog.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// The programs: chromedriver and the browser it drives.
struct Programs {
    driver: PathBuf,
    chromium: PathBuf,
}

/// The Debian names first (apt's `chromium chromium-driver`), then others'.
fn find_programs() -> Result<Programs, String> {
    let first = |names: &[&str]| names.iter().find_map(|name| find_program(name));
    let missing =
        |what: &str| format!("{what} is not installed (apt-get install chromium chromium-driver)");
    Ok(Programs {
        driver: first(&["chromedriver"]).ok_or_else(|| missing("chromedriver"))?,
        chromium: first(&["chromium", "chromium-browser", "google-chrome"])
            .ok_or_else(|| missing("chromium"))?,
    })
}

/// chromedriver, the leader of its own process group; the group is killed
/// when this is dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers; a
    /// port taken between the probe and its bind makes it exit, and the
    /// next port is tried.
    fn start(program: &Path) -> Driver {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
            let mut driver = Driver { child, port };
            let answers = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            match wait_started(&mut driver.child, DEADLINE, answers) {
                Started::Ready => return driver,
                Started::Exited(_) => continue,
                Started::TimedOut => panic!("chromedriver did not answer within {DEADLINE:?}"),
            }
        }
        panic!("chromedriver found no free port in {PORT_ATTEMPTS} attempts");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A headless Chromium with one window, driven by a private chromedriver.
pub struct Browser {
    client: Client,
    // After the client: the session's connection goes before the driver.
    _driver: Driver,
    // Last: removed once every Chromium process is dead.
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and opens a session with a fresh profile, or
    /// returns None (after printing why) when Chromium or chromedriver is
    /// not installed — unless `OUTPOST_REQUIRE_REAL` is set, which makes
    /// that a failure. It blocks while chromedriver starts: test code.
    pub async fn start() -> Option<Browser> {
        let programs = match find_programs() {
            Ok(programs) => programs,
            Err(reason) => return skip(&reason),
        };
        let profile = tempfile::Builder::new()
            .prefix("outpost-chromium-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let driver = Driver::start(&programs.driver);
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&flag| flag.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": programs.chromium, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|err| panic!("cannot open a Chromium session: {err}"));
        // A wait's script runs for up to WAIT_DEADLINE; the session must
        // not cut it off first.
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(WAIT_DEADLINE + Duration::from_secs(10)),
                Some(WAIT_DEADLINE),
                Some(Duration::ZERO),
            ))
            .await
            .expect("cannot set the session's timeouts");
        Some(Browser {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// The WebDriver session, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Has `source` run in every document loaded from now on, before the
    /// page's own scripts (a benchmark's observer of the page's first
    /// render).
    pub async fn before_every_page(&self, source: &str) {
        self.client
            .issue_cmd(BeforeEveryPage(source.to_owned()))
            .await
            .unwrap_or_else(|err| panic!("cannot add a script to every page: {err}"));
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("cannot load {url}: {err}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns its value.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// The element `css` selects, which must exist now.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no element {css}: {err}"))
    }

    /// Clicks the element `css` selects, as a user would (WebDriver moves
    /// the pointer there; a hidden or covered element is an error).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|err| panic!("cannot click {css}: {err}"));
    }

    /// Types `keys` (text, or [`fantoccini::key::Key`]s as chars) into the
    /// element `css` selects, which gets the focus first.
    pub async fn type_into(&self, css: &str, keys: &str) {
        self.find(css)
            .await
            .send_keys(keys)
            .await
            .unwrap_or_else(|err| panic!("cannot type into {css}: {err}"));
    }

    /// Types `keys` into whatever has the focus.
    pub async fn type_here(&self, keys: &str) {
        self.client
            .active_element()
            .await
            .expect("an element has the focus")
            .send_keys(keys)
            .await
            .unwrap_or_else(|err| panic!("cannot type into the focused element: {err}"));
    }

    /// What has the focus, as its `id` or `data-action`.
    pub async fn focused(&self) -> String {
        let script = "const e = document.activeElement; \
                      return e.id || e.getAttribute('data-action') || e.tagName;";
        self.run(script, vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `condition` — the body of a JavaScript function of
    /// `args` (as `args`) — returns a truthy value, and returns that value
    /// with the time the page saw it (ms since the epoch, the page's
    /// `Date.now()`). It is checked at once and after every change of the
    /// document; a condition about anything but the document (a timer's
    /// result) is not looked at again until the document changes. Panics
    /// with `what` and the page's text after [`WAIT_DEADLINE`].
    pub async fn wait_until(&self, what: &str, condition: &str, args: Value) -> (Value, f64) {
        let script = format!(
            r#"
            const [args, deadlineMs, done] = arguments;
            const check = (args) => {{ {condition} }};
            let finished = false;
            let observer = null;
            let timer = null;
            let lastError = null;
            const finish = (answer) => {{
                finished = true;
                if (observer) observer.disconnect();
                clearTimeout(timer);
                done(answer);
            }};
            const attempt = () => {{
                if (finished) return;
                let value = null;
                let error = null;
                try {{ value = check(args); }} catch (e) {{ error = String(e); }}
                if (value) finish({{ ok: true, value, at: Date.now() }});
                else lastError = error;
            }};
            observer = new MutationObserver(attempt);
            observer.observe(document, {{
                subtree: true, childList: true, attributes: true, characterData: true,
            }});
            timer = setTimeout(() => finish({{
                ok: false,
                error: lastError,
                page: document.body ? document.body.innerText.slice(0, 6000) : '',
            }}), deadlineMs);
            attempt();
            "#
        );
        let deadline = u64::try_from(WAIT_DEADLINE.as_millis()).expect("a deadline fits in u64");
        let answer = self
            .client
            .execute_async(&script, vec![args, json!(deadline)])
            .await
            .unwrap_or_else(|err| panic!("waiting for {what}: {err}"));
        if answer["ok"] != json!(true) {
            panic!(
                "no {what} within {WAIT_DEADLINE:?} (last error: {}); the page shows:\n{}",
                answer["error"],
                answer["page"].as_str().unwrap_or_default()
            );
        }
        let at = answer["at"].as_f64().expect("the page's time");
        (answer["value"].clone(), at)
    }

    /// Waits until the element `css` selects has attribute `name` equal
    /// to `value`; returns the page's time then (see [`Self::wait_until`]).
    pub async fn wait_attribute(&self, css: &str, name: &str, value: &str) -> f64 {
        let what = format!("{css} with {name}={value:?}");
        let condition = "const e = document.querySelector(args.css); \
                         return e !== null && e.getAttribute(args.name) === args.value;";
        self.wait_until(
            &what,
            condition,
            json!({ "css": css, "name": name, "value": value }),
        )
        .await
        .1
    }

    /// Waits until the element `css` selects exists; returns the page's
    /// time then.
    pub async fn wait_present(&self, css: &str) -> f64 {
        let condition = "return document.querySelector(args.css) !== null;";
        self.wait_until(css, condition, json!({ "css": css }))
            .await
            .1
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_absent(&self, css: &str) {
        let condition = "return document.querySelector(args.css) === null;";
        self.wait_until(&format!("no {css}"), condition, json!({ "css": css }))
            .await;
    }

    /// Waits until the text of the element `css` selects contains
    /// `needle`; returns that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let condition = "const e = document.querySelector(args.css); \
                         return e !== null && e.textContent.includes(args.needle) \
                                && e.textContent;";
        let what = format!("{needle:?} in {css}");
        let (text, _) = self
            .wait_until(&what, condition, json!({ "css": css, "needle": needle }))
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// The text of every element `css` selects, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let texts = self
            .run(
                "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(texts).expect("a list of strings")
    }
}

/// Chrome DevTools' `Page.addScriptToEvaluateOnNewDocument`, through
/// chromedriver's `goog/cdp/execute`: not a W3C command, so fantoccini
/// sends it as a command of ours.
#[derive(Debug)]
struct BeforeEveryPage(String);

impl WebDriverCompatibleCommand for BeforeEveryPage {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": { "source": self.0 },
        });
        (http::Method::POST, Some(body.to_string()))
    }
}
