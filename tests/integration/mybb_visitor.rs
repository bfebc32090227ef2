//! What a forum visitor sees after an edit, with the real MyBB 1.8 as the
//! judge: a MyBB source tree (never part of this repository: it comes from
//! `OUTPOST_MYBB_SOURCE`) is installed by driving its own installer with
//! form posts against a private MariaDB, served by `php -S`, and synced by
//! `outpostd --mybb`. After saving a template file the guest's index page
//! shows the new template; after saving a stylesheet file the page links the
//! theme's own cached copy (and, with `minifycss`, the minified one) and
//! that copy holds the new rule; no PHP warning appears; and a template
//! changed in the database the way MyBB does reaches its file.
//!
//! MyBB cannot be had in CI (no registry carries it), so the test is
//! ignored unless asked for: `--run-ignored all` (nextest) or `--ignored`,
//! with `OUTPOST_MYBB_SOURCE` naming a MyBB 1.8 work tree or a bare git
//! clone of MyBB (its `HEAD` is used). Asked for without the variable, it
//! fails. See `docs/mybb-visitor-check.md`.

use std::{
    env,
    ffi::OsString,
    fs::{self, File},
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use outpost::proto::v1::{self as pb, SyncEventKind as K, content_key};
use outpost_test_support::process::{Started, free_port, wait_started};

use crate::{
    harness::{Daemon, START_DEADLINE, eventually},
    mariadb::{MariaDb, SqlMode},
    sync_support::{EVENT_DEADLINE, FAST_SETTLE, SyncEvents, about, export, status},
};

/// Names the MyBB source: a work tree (with `install/index.php`) or a bare
/// git repository of MyBB.
const SOURCE_VAR: &str = "OUTPOST_MYBB_SOURCE";

/// The template set and theme a fresh install has.
const SET: &str = "Default Templates";
const THEME: &str = "Default";

/// The forum's database, user and password (MyBB's installer wants an
/// existing database and a user that can create tables in it).
const DATABASE: &str = "mybb_visitor";
const USER: &str = "mybb_visitor";
const PASSWORD: &str = "visitor-Secret-9";

/// How long one HTTP request may take: the installer's table and theme
/// steps run hundreds of statements on a loaded machine.
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Text MyBB puts on a page that hit a PHP warning or error, or an SQL
/// error (with `errortypemedium` = `both`, which the test sets).
const TROUBLE: [&str; 6] = [
    "The following warnings occurred",
    "php_warning",
    "MyBB Internal Error",
    "MyBB SQL Error",
    "Fatal error",
    "Parse error",
];

#[tokio::test]
#[ignore = "needs a MyBB 1.8 source tree in OUTPOST_MYBB_SOURCE; run with --ignored"]
async fn a_visitor_sees_the_new_template_and_stylesheet() {
    let source = env::var_os(SOURCE_VAR)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{SOURCE_VAR} is not set: this test needs a MyBB 1.8 work tree or bare git \
                 clone (see docs/mybb-visitor-check.md)"
            )
        });
    require_php();
    let Some(db) = MariaDb::start(SqlMode::Strict) else {
        return;
    };
    db.sql(
        "",
        &format!(
            "CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;\n\
             CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
             GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'127.0.0.1';\n"
        ),
    );
    let sql = |query: &str| db.sql(DATABASE, query).trim_end_matches('\n').to_owned();

    let work = tempfile::Builder::new()
        .prefix("outpost-mybb-visitor-")
        .tempdir()
        .unwrap();
    let forum = work.path().join("forum");
    unpack_mybb(&source, &forum);
    let php = PhpServer::start(&forum, &work.path().join("php.log"));
    install(&php, db.port());
    assert!(
        forum.join("install/lock").exists(),
        "the installer locks itself"
    );
    // Warnings on the page, so that anything our writes make PHP trip on
    // shows where the test looks.
    set_setting(&db, &forum, "errortypemedium", "both");

    let master_templates = sql("SELECT COUNT(*) FROM mybb_templates WHERE sid = -2");
    let page = php.get("/index.php").expect_page();
    assert!(
        page.contains("cache/themes/theme1/global.css?t="),
        "a fresh forum links the master style's global.css:\n{page}"
    );

    let daemon = Daemon::builder()
        .arg("--sync-settle")
        .arg(FAST_SETTLE)
        .arg("--mybb")
        .arg(&forum)
        .arg("--mybb-poll")
        .arg("200ms")
        .start();
    let connection = daemon.connect().await;
    let mut sync = connection.sync();
    let (mut events, _) = SyncEvents::open(&connection, &[]).await;
    let root = PathBuf::from(status(&mut sync).await.root);

    let summary = export(&mut sync, SET).await;
    assert_eq!(summary.written.to_string(), master_templates, "{summary:?}");
    assert_eq!(summary.conflicts, 0, "{summary:?}");
    let summary = sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: THEME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    let sheets = sql("SELECT COUNT(DISTINCT name) FROM mybb_themestylesheets WHERE tid IN (1, 2)");
    assert_eq!(summary.written.to_string(), sheets, "{summary:?}");
    let templates = root.join("templates").join(SET);
    let stylesheets = root.join("stylesheets").join(THEME);

    // A template file saved: the guest's page is built from it, evaluated
    // as MyBB evaluates templates.
    let marker = format!("outpost-visitor-{}-{}", std::process::id(), unix_now());
    let index = templates.join("index/index.html");
    let original = fs::read_to_string(&index).unwrap();
    assert!(original.contains("{$header}"), "{original}");
    let edited = original.replacen(
        "{$header}",
        &format!(
            "{{$header}}\n<div id=\"outpost-visitor\">{marker} on {{$mybb->settings['bbname']}}</div>"
        ),
        1,
    );
    fs::write(&index, &edited).unwrap();
    events
        .until("index.html imported", |e| {
            about(e, K::Imported, SET, "index")
        })
        .await;
    let page = php.get("/index.php").expect_page();
    assert!(
        page.contains(&format!(
            "<div id=\"outpost-visitor\">{marker} on Visitor Check</div>"
        )),
        "the guest's page shows the saved template:\n{page}"
    );

    // A stylesheet the default theme inherits from the master style, saved:
    // the page links the theme's own cached copy, which holds the new rule.
    let global = stylesheets.join("global.css");
    let css = fs::read_to_string(&global).unwrap();
    let rule = ".outpost-visitor-check { color: #123456; }";
    fs::write(&global, format!("{css}\n{rule}\n")).unwrap();
    sheet_imported(&mut events, "global.css").await;
    let lastmodified: i64 =
        sql("SELECT lastmodified FROM mybb_themestylesheets WHERE tid = 2 AND name = 'global.css'")
            .parse()
            .unwrap();
    let page = php.get("/index.php").expect_page();
    let href = link(&page, "/cache/themes/theme2/global.css?t=");
    assert!(
        !page.contains("cache/themes/theme1/global.css"),
        "the master's global.css is no longer linked:\n{page}"
    );
    assert!(
        page.contains("/cache/themes/theme1/css3.css?t="),
        "the sheets still inherited are still linked:\n{page}"
    );
    let mtime: i64 = href.rsplit("?t=").next().unwrap().parse().unwrap();
    assert!(
        mtime >= lastmodified,
        "{href}: the cached file is no older than the row ({lastmodified})"
    );
    let served = php.get(&href).expect_ok();
    assert!(
        served.contains(rule),
        "{href} holds the new rule:\n{served}"
    );
    assert!(
        sql("SELECT cache FROM mybb_datacache WHERE title = 'default_theme'")
            .contains("cache/themes/theme2/global.css"),
        "the default_theme cache guests read links the theme's copy"
    );

    // With minified CSS on, MyBB links the .min.css beside it: ours too.
    set_setting(&db, &forum, "minifycss", "1");
    let rule2 = ".outpost-visitor-again { color: #654321; }";
    fs::write(&global, format!("{css}\n{rule}\n{rule2}\n")).unwrap();
    sheet_imported(&mut events, "global.css").await;
    let page = php.get("/index.php").expect_page();
    let href = link(&page, "/cache/themes/theme2/global.min.css?t=");
    let served = php.get(&href).expect_ok();
    for minified in [
        ".outpost-visitor-check{color:#123456}",
        ".outpost-visitor-again{color:#654321}",
    ] {
        assert!(
            served.contains(minified),
            "{href} holds {minified}:\n{served}"
        );
    }
    assert_eq!(
        sql("SELECT COUNT(*) FROM mybb_themestylesheets WHERE name = 'global.css'"),
        "2",
        "the second save updates the theme's copy instead of copying again"
    );

    // The reverse: the template changed in the database as MyBB's admin
    // panel does (its row in the set updated): the file follows, and the
    // page shows it.
    let marker2 = format!("{marker}-from-the-database");
    sql(&format!(
        "UPDATE mybb_templates SET template = REPLACE(template, '{marker}', '{marker2}'), \
         dateline = UNIX_TIMESTAMP() WHERE sid = 1 AND title = 'index'"
    ));
    eventually("index.html to follow the database", EVENT_DEADLINE, || {
        let index = index.clone();
        let marker2 = marker2.clone();
        async move {
            fs::read_to_string(&index)
                .ok()
                .filter(|content| content.contains(&marker2))
        }
    })
    .await;
    let page = php.get("/index.php").expect_page();
    assert!(page.contains(&marker2), "{page}");

    // And a template the set had none of: the admin panel's first save
    // inserts the set's row; the file follows.
    sql(
        "INSERT INTO mybb_templates (title, template, sid, version, status, dateline) \
         SELECT title, CONCAT(template, '<!-- footer from the database -->'), 1, version, '', \
         UNIX_TIMESTAMP() FROM mybb_templates WHERE sid = -2 AND title = 'footer'",
    );
    let footer = templates.join("footer/footer.html");
    eventually("footer.html to follow the database", EVENT_DEADLINE, || {
        let footer = footer.clone();
        async move {
            fs::read_to_string(&footer)
                .ok()
                .filter(|content| content.contains("<!-- footer from the database -->"))
        }
    })
    .await;
    let page = php.get("/index.php").expect_page();
    assert!(page.contains("<!-- footer from the database -->"), "{page}");

    php.assert_quiet();
    drop(daemon);
}

/// Waits for the stylesheet `name` of [`THEME`] to be imported.
async fn sheet_imported(events: &mut SyncEvents, name: &str) {
    events
        .until(&format!("{THEME}/{name} imported"), |event| {
            event.kind() == K::Imported
                && matches!(
                    event.key.as_ref().and_then(|key| key.key.as_ref()),
                    Some(content_key::Key::Stylesheet(key)) if key.theme == THEME && key.name == name
                )
        })
        .await;
}

/// The href of the page's stylesheet link containing `needle`, without
/// the scheme and host.
fn link(page: &str, needle: &str) -> String {
    let at = page
        .find(needle)
        .unwrap_or_else(|| panic!("the page links no {needle}:\n{page}"));
    let start = page[..at].rfind("href=\"").expect("a link's href") + "href=\"".len();
    let end = at + page[at..].find('"').expect("the href's end");
    let href = &page[start..end];
    let path = href.find("/cache/").expect("a path under the forum");
    href[path..].to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Panics unless `php` runs with the extensions MyBB's installer needs.
fn require_php() {
    let output = Command::new("php")
        .arg("-m")
        .output()
        .unwrap_or_else(|err| panic!("{SOURCE_VAR} is set but php cannot run: {err}"));
    let modules = String::from_utf8_lossy(&output.stdout).to_lowercase();
    for module in ["mysqli", "xml"] {
        assert!(
            modules.lines().any(|line| line.trim() == module),
            "php lacks the {module} extension MyBB's installer needs"
        );
    }
}

/// Puts a fresh MyBB tree at `dest`: `git archive HEAD` of a bare clone,
/// or a copy of a work tree (without an earlier install's `inc/config.php`
/// and `install/lock`).
fn unpack_mybb(source: &Path, dest: &Path) {
    fs::create_dir(dest).unwrap();
    if source.join("install/index.php").is_file() {
        let mut from: OsString = source.as_os_str().to_owned();
        from.push("/.");
        run(Command::new("cp").arg("-a").arg(from).arg(dest));
        for leftover in ["inc/config.php", "install/lock"] {
            let _ = fs::remove_file(dest.join(leftover));
        }
    } else if source.join("HEAD").is_file() && source.join("objects").is_dir() {
        let mut archive = Command::new("git")
            .arg("--git-dir")
            .arg(source)
            .args(["archive", "--format=tar", "HEAD"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run git");
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(dest)
            .stdin(archive.stdout.take().unwrap())
            .status()
            .expect("cannot run tar");
        assert!(archive.wait().unwrap().success(), "git archive failed");
        assert!(tar.success(), "tar failed");
    } else {
        panic!(
            "{SOURCE_VAR}={} is neither a MyBB work tree (with install/index.php) nor a bare \
             git clone",
            source.display()
        );
    }
    let core = fs::read_to_string(dest.join("inc/class_core.php"))
        .expect("a MyBB tree has inc/class_core.php");
    assert!(
        core.contains("public $version_code = 18"),
        "{SOURCE_VAR} is not MyBB 1.8"
    );
}

fn run(command: &mut Command) {
    let output = command.output().expect("cannot run a command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One installer step: its `action`, the form's other fields, and what its
/// page says when the step worked.
type Step<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// Drives `install/index.php` through every step with the form posts its
/// pages would send, checking each page says the step worked.
fn install(php: &PhpServer, db_port: u16) {
    let bburl = format!("http://127.0.0.1:{}", php.port);
    let dbhost = format!("127.0.0.1:{db_port}");
    let steps: [Step; 9] = [
        ("license", vec![], "License Agreement"),
        (
            "requirements_check",
            vec![],
            "you meet the requirements to run MyBB",
        ),
        ("database_info", vec![], "Database Configuration"),
        (
            "create_tables",
            vec![
                ("dbengine", "mysqli"),
                ("config[mysqli][dbhost]", &dbhost),
                ("config[mysqli][dbuser]", USER),
                ("config[mysqli][dbpass]", PASSWORD),
                ("config[mysqli][dbname]", DATABASE),
                ("config[mysqli][tableprefix]", "mybb_"),
                ("config[mysqli][encoding]", "utf8mb4"),
            ],
            "The MyBB database tables will now be created",
        ),
        (
            "populate_tables",
            vec![],
            "The default data has successfully been inserted",
        ),
        (
            "templates",
            vec![],
            "The default theme and template sets have been successfully inserted",
        ),
        ("configuration", vec![], "Board Configuration"),
        (
            // The board's settings; `allow_anonymous_info` left out: it
            // would call mybb.com.
            "adminuser",
            vec![
                ("bbname", "Visitor Check"),
                ("bburl", &bburl),
                ("websitename", "Visitor Check"),
                ("websiteurl", &bburl),
                // No dot-prefixed IP: curl and browsers refuse such cookies.
                ("cookiedomain", ""),
                ("cookiepath", "/"),
                ("contactemail", "admin@example.com"),
                ("pin", ""),
            ],
            "Create Administrator Account",
        ),
        (
            "final",
            vec![
                ("adminuser", "admin"),
                ("adminpass", "visitor-admin-9"),
                ("adminpass2", "visitor-admin-9"),
                ("adminemail", "admin@example.com"),
            ],
            "successfully been installed",
        ),
    ];
    for (action, mut fields, expected) in steps {
        fields.insert(0, ("action", action));
        let response = php.post("/install/index.php", &fields);
        assert!(
            response.status == 200 && response.body.contains(expected),
            "installer step {action}: expected {expected:?}, got {}:\n{}",
            response.status,
            response.body
        );
    }
}

/// Sets MyBB setting `name` the way the admin panel does: the row, and
/// the `inc/settings.php` every page reads.
fn set_setting(db: &MariaDb, forum: &Path, name: &str, value: &str) {
    db.sql(
        DATABASE,
        &format!("UPDATE mybb_settings SET value = '{value}' WHERE name = '{name}'"),
    );
    let path = forum.join("inc/settings.php");
    let settings = fs::read_to_string(&path).unwrap();
    let prefix = format!("$settings['{name}'] = \"");
    let start = settings
        .find(&prefix)
        .unwrap_or_else(|| panic!("inc/settings.php has no {name}"))
        + prefix.len();
    let end = start + settings[start..].find('"').unwrap();
    let updated = format!("{}{value}{}", &settings[..start], &settings[end..]);
    fs::write(&path, updated).unwrap();
}

/// `php -S` serving the forum on a free port of 127.0.0.1; killed when
/// dropped.
struct PhpServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PhpServer {
    fn start(root: &Path, log: &Path) -> Self {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let out = File::create(log).unwrap();
            let mut child = Command::new("php")
                // Without opcache: `php -S` uses it (unlike plain CLI), and
                // it would serve `inc/settings.php` as compiled up to
                // `revalidate_freq` seconds before the test rewrote it.
                .args(["-d", "opcache.enable=0"])
                .args(["-d", "log_errors=1", "-d", "display_errors=1", "-S"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-t")
                .arg(root)
                .current_dir(root)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("cannot run php -S");
            match wait_started(&mut child, START_DEADLINE, || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            }) {
                Started::Ready => {
                    return Self {
                        child,
                        port,
                        log: log.to_owned(),
                    };
                }
                Started::Exited(status) => {
                    let text = fs::read_to_string(log).unwrap_or_default();
                    if !(attempt < ATTEMPTS && text.contains("Address already in use")) {
                        panic!("php -S exited ({status}):\n{text}");
                    }
                }
                Started::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("php -S did not listen within {START_DEADLINE:?}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn get(&self, target: &str) -> Response {
        self.request("GET", target, None)
    }

    fn post(&self, target: &str, fields: &[(&str, &str)]) -> Response {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        self.request("POST", target, Some(&body))
    }

    /// One HTTP/1.0 request (the server closes the connection after the
    /// response), as a guest: no cookies.
    fn request(&self, method: &str, target: &str, form: Option<&str>) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
        let mut request = format!(
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nUser-Agent: outpost-test\r\n",
            self.port
        );
        if let Some(form) = form {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|err| panic!("{method} {target}: {err}"));
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{method} {target}: no header end in {raw:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{method} {target}: no status in {head:?}"));
        Response {
            target: target.to_owned(),
            status,
            body: body.to_owned(),
        }
    }

    /// Panics if PHP logged an error or warning MyBB's handler let through.
    fn assert_quiet(&self) {
        let log = fs::read_to_string(&self.log).unwrap();
        let trouble: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("PHP ") && !line.contains("Development Server"))
            .collect();
        assert!(trouble.is_empty(), "php -S logged:\n{}", trouble.join("\n"));
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    target: String,
    status: u16,
    body: String,
}

impl Response {
    /// The body of a 200 response.
    fn expect_ok(self) -> String {
        assert_eq!(self.status, 200, "{}:\n{}", self.target, self.body);
        self.body
    }

    /// The body of a 200 page without PHP warnings or errors on it.
    fn expect_page(self) -> String {
        let target = self.target.clone();
        let body = self.expect_ok();
        for trouble in TROUBLE {
            assert!(
                !body.contains(trouble),
                "{target} shows {trouble:?}:\n{body}"
            );
        }
        body
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char);
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}
