//! Sync against a real MyBB forum: a private database server per test —
//! MariaDB with MyBB 1.8's tables (MyISAM, prefixed, utf8mb3 or utf8mb4,
//! strict or not), or PostgreSQL with MyBB's pgsql schema — and
//! `outpostd --mybb`. What the admin panel does on a save is what the
//! store must do — master rows never change, the first save inserts the
//! set's own row, rtrim, version_code; stylesheets copied into the theme,
//! cached files and the theme's list — and what MyBB or the column would
//! refuse or mangle never reaches the database. Changes made in the
//! database reach the files; a database that goes away loses no edit; the
//! password shows nowhere. A test that holds on both servers is written
//! once and run on each ([`both_servers!`]); the MySQL modes and
//! character sets are tested on MariaDB only.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use outpost::proto::v1::{self as pb, SyncEventKind as K, content_key};
use outpost_test_support::process::free_port;
use tempfile::TempDir;
use tonic::Code;

use crate::{
    cache_servers::{CacheServer, Kind},
    harness::{Daemon, START_DEADLINE, create, eventually, spec, stdout, wait_until},
    mariadb::{self, Charset, ForumSpec, MariaDb, SEED_TIME, SqlMode},
    postgres::{PgForum, PgForumSpec, Postgres},
    sync_support::{
        EVENT_DEADLINE, FAST_SETTLE, SyncClient, SyncEvents, about, export, put, quiesce, sha256,
        status,
    },
};

/// The set a fresh forum has.
const SET: &str = "Default Templates";

/// Which server holds a test's forum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// MariaDB, in `mode`.
    MariaDb(SqlMode),
    Postgres,
}

/// How the daemon is told where the forum's database is.
#[derive(Clone, Copy)]
enum Connect {
    /// As `inc/config.php` says: over TCP (`hostname =
    /// '127.0.0.1:PORT'`) for MariaDB; for PostgreSQL through its socket
    /// directory (`hostname = '/path/to/dir:PORT'`), which MyBB's pgsql
    /// driver passes to libpq as `host`.
    Config,
    /// `OUTPOST_MYBB_DATABASE` with a URL naming the server's socket (a
    /// stopped server's socket is gone: the store learns at once that it
    /// is down, where a refused TCP connection is retried for a while).
    Environment,
}

/// A running server and the forum created in it.
enum Db {
    MariaDb(MariaDb, mariadb::Forum),
    Postgres(Postgres, PgForum),
}

impl Db {
    /// Starts `server` and creates the forum `spec` describes (its
    /// character set applies to MariaDB only); None where the server is
    /// not installed (and that is allowed).
    fn start(server: Server, spec: &ForumSpec) -> Option<Db> {
        Some(match server {
            Server::MariaDb(mode) => {
                let db = MariaDb::start(mode)?;
                let forum = db.create_forum(spec);
                Db::MariaDb(db, forum)
            }
            Server::Postgres => {
                let db = Postgres::start()?;
                let forum = db.create_forum(&PgForumSpec {
                    database: spec.database.clone(),
                    prefix: spec.prefix.clone(),
                    master_templates: spec.master_templates,
                });
                Db::Postgres(db, forum)
            }
        })
    }

    /// One value of a query's first row (or the rows, tab-separated),
    /// run as the server's superuser in the forum's database.
    fn value(&self, sql: &str) -> String {
        let out = match self {
            Db::MariaDb(db, forum) => db.sql(&forum.database, sql),
            Db::Postgres(db, forum) => db.sql(&forum.database, sql),
        };
        out.trim_end_matches('\n').to_owned()
    }

    /// The forum's table `name`, with its prefix.
    fn table(&self, name: &str) -> String {
        match self {
            Db::MariaDb(_, forum) => forum.table(name),
            Db::Postgres(_, forum) => forum.table(name),
        }
    }

    fn database(&self) -> &str {
        match self {
            Db::MariaDb(_, forum) => &forum.database,
            Db::Postgres(_, forum) => &forum.database,
        }
    }

    fn prefix(&self) -> &str {
        match self {
            Db::MariaDb(_, forum) => &forum.prefix,
            Db::Postgres(_, forum) => &forum.prefix,
        }
    }

    fn password(&self) -> &str {
        match self {
            Db::MariaDb(_, forum) => &forum.password,
            Db::Postgres(_, forum) => &forum.password,
        }
    }

    fn stop(&mut self) {
        match self {
            Db::MariaDb(db, _) => db.stop(),
            Db::Postgres(db, _) => db.stop(),
        }
    }

    fn start_again(&mut self) {
        match self {
            Db::MariaDb(db, _) => db.start_again(),
            Db::Postgres(db, _) => db.start_again(),
        }
    }

    /// Writes the forum's root into `dir`, its config reaching the
    /// database as `connect` says.
    fn write_root(&self, dir: &Path, connect: Connect) {
        match (self, connect) {
            (Db::MariaDb(db, forum), Connect::Config) => {
                forum.write_root(dir, &format!("127.0.0.1:{}", db.port()));
            }
            (Db::Postgres(db, forum), Connect::Config) => {
                forum.write_root(dir, &format!("{}:{}", db.socket_dir().display(), db.port()));
            }
            // The URL decides; the config names the usual place.
            (Db::MariaDb(_, forum), Connect::Environment) => forum.write_root(dir, "localhost"),
            (Db::Postgres(_, forum), Connect::Environment) => forum.write_root(dir, "localhost"),
        }
    }

    /// A URL reaching the forum's database as its account through the
    /// server's socket.
    fn url(&self) -> String {
        match self {
            Db::MariaDb(db, forum) => forum.socket_url(db),
            Db::Postgres(db, forum) => {
                let tcp = forum.url(db);
                let (without_host, database) = tcp.rsplit_once('/').unwrap();
                let (credentials, _) = without_host.rsplit_once('@').unwrap();
                format!(
                    "{credentials}@localhost/{database}?host={}&port={}",
                    db.socket_dir().display(),
                    db.port()
                )
            }
        }
    }

    /// A URL with a wrong password (PostgreSQL's over TCP).
    fn url_with_a_wrong_password(&self) -> String {
        match self {
            Db::MariaDb(db, forum) => format!(
                "mysql://{}:not-the-password@localhost/{}?socket={}",
                forum.user,
                forum.database,
                db.socket().display()
            ),
            Db::Postgres(db, forum) => format!(
                "postgres://{}:not-the-password@127.0.0.1:{}/{}",
                forum.user,
                db.port(),
                forum.database
            ),
        }
    }

    /// SQL for the lowercase hex SHA-256 of text column `column`.
    fn sha256_of(&self, column: &str) -> String {
        match self {
            Db::MariaDb(..) => format!("SHA2({column}, 256)"),
            Db::Postgres(..) => format!("encode(sha256(convert_to({column}, 'UTF8')), 'hex')"),
        }
    }

    /// SQL for the upper-case hex of text column `column`'s bytes.
    fn hex_of(&self, column: &str) -> String {
        match self {
            Db::MariaDb(..) => format!("HEX({column})"),
            Db::Postgres(..) => format!("upper(encode(convert_to({column}, 'UTF8'), 'hex'))"),
        }
    }

    /// SQL for now, in Unix seconds.
    fn now(&self) -> &'static str {
        match self {
            Db::MariaDb(..) => "UNIX_TIMESTAMP()",
            Db::Postgres(..) => "CAST(EXTRACT(EPOCH FROM now()) AS int)",
        }
    }
}

/// A forum, its database and a daemon syncing with it. Fields drop in
/// order: the daemon before the server it talks to.
struct Synced {
    /// Kept running for the test.
    _daemon: Daemon,
    sync: SyncClient,
    events: SyncEvents,
    root: TempDir,
    db: Db,
}

impl Synced {
    /// Starts `server`, a forum of `spec`, and a daemon on it; None where
    /// the server is not installed (and that is allowed).
    async fn start(server: Server, spec: ForumSpec, connect: Connect) -> Option<Self> {
        Self::start_with_config(server, spec, connect, |config| config).await
    }

    /// As [`Self::start`], with the forum's `inc/config.php` as `config`
    /// makes it of the one written for the server.
    async fn start_with_config(
        server: Server,
        spec: ForumSpec,
        connect: Connect,
        config: impl FnOnce(String) -> String,
    ) -> Option<Self> {
        let db = Db::start(server, &spec)?;
        let root = tempfile::tempdir().unwrap();
        db.write_root(root.path(), connect);
        let config_path = root.path().join("inc/config.php");
        fs::write(
            &config_path,
            config(fs::read_to_string(&config_path).unwrap()),
        )
        .unwrap();
        let mut builder = Daemon::builder()
            .arg("--sync-settle")
            .arg(FAST_SETTLE)
            .arg("--mybb")
            .arg(root.path())
            .arg("--mybb-poll")
            .arg("100ms");
        if let Connect::Environment = connect {
            builder = builder.env("OUTPOST_MYBB_DATABASE", &db.url());
        }
        let daemon = builder.start();
        let connection = daemon.connect().await;
        let sync = connection.sync();
        let (events, _) = SyncEvents::open(&connection, &[]).await;
        Some(Self {
            _daemon: daemon,
            sync,
            events,
            root,
            db,
        })
    }

    /// One value of a query's first row.
    fn value(&self, sql: &str) -> String {
        self.db.value(sql)
    }

    fn table(&self, name: &str) -> String {
        self.db.table(name)
    }

    /// The set's (or theme's) directory under the sync root.
    async fn dir(&mut self, kind: &str, collection: &str) -> PathBuf {
        let root = status(&mut self.sync).await.root;
        Path::new(&root).join(kind).join(collection)
    }

    /// Waits for the event of `kind` about stylesheet `theme`/`name`.
    async fn sheet_event(&mut self, kind: K, theme: &str, name: &str) -> pb::SyncEvent {
        self.events
            .until(&format!("{kind:?} of {theme}/{name}"), |event| {
                event.kind() == kind
                    && matches!(
                        event.key.as_ref().and_then(|key| key.key.as_ref()),
                        Some(content_key::Key::Stylesheet(key)) if key.theme == theme && key.name == name
                    )
            })
            .await
    }
}

/// Runs the test body `$name` (an `async fn` taking a [`Server`]) on a
/// strict MariaDB and on PostgreSQL, as the tests `$name::mariadb` and
/// `$name::postgres`: one body, so both servers are held to the same
/// promises.
macro_rules! both_servers {
    ($name:ident) => {
        mod $name {
            use super::{Server, SqlMode};

            #[tokio::test]
            async fn mariadb() {
                super::$name(Server::MariaDb(SqlMode::Strict)).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(Server::Postgres).await;
            }
        }
    };
}

/// A forum with few master templates, for tests that need only some.
fn small() -> ForumSpec {
    ForumSpec {
        master_templates: 20,
        ..ForumSpec::default()
    }
}

/// Waits until the backend's status satisfies `wanted`; returns it.
async fn backend_when(
    sync: &SyncClient,
    what: &str,
    wanted: impl Fn(&pb::SyncBackend) -> bool,
) -> pb::SyncBackend {
    let wanted = &wanted;
    eventually(what, EVENT_DEADLINE, || {
        let mut sync = sync.clone();
        async move {
            let backend = status(&mut sync).await.backend.unwrap_or_default();
            wanted(&backend).then_some(backend)
        }
    })
    .await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Rewrites `path` in place, as most editors save.
fn save(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
}

both_servers!(a_set_exports_and_saves_as_the_admin_panel_does);
async fn a_set_exports_and_saves_as_the_admin_panel_does(server: Server) {
    let spec = ForumSpec {
        master_templates: 300,
        ..ForumSpec::default()
    };
    let Some(mut s) = Synced::start(server, spec, Connect::Config).await else {
        return;
    };
    let templates = s.table("templates");
    let started = unix_now();

    // The set shows every master template, in MyBB's groups.
    let summary = export(&mut s.sync, SET).await;
    assert_eq!((summary.written, summary.conflicts), (300, 0));
    let dir = s.dir("templates", SET).await;
    for (file, title) in [
        ("header/header.html", "header"),
        (
            "header/header_welcomeblock_guest.html",
            "header_welcomeblock_guest",
        ),
        ("index/index.html", "index"),
        ("ungrouped/zzcustom_widget.html", "zzcustom_widget"),
        ("ungrouped/htmldoctype.html", "htmldoctype"),
    ] {
        let on_disk = fs::read(dir.join(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
        let in_db = s.value(&format!(
            "SELECT {} FROM {templates} WHERE sid = -2 AND title = '{title}'",
            s.db.sha256_of("template")
        ));
        assert_eq!(sha256(&on_disk), in_db, "{file} holds the master template");
    }

    // The first save inserts the set's own row: trimmed, version_code,
    // status '', dateline now; the master row stays as it was.
    let header = dir.join("header/header.html");
    save(
        &header,
        "<div id=\"header\">{$lang->welcome}</div>\n\n\t \n",
    );
    s.events
        .until("the header imported", |e| {
            about(e, K::Imported, SET, "header")
        })
        .await;
    let rows = s.value(&format!(
        "SELECT sid, {}, version, CONCAT('[', status, ']'), \
         CASE WHEN dateline >= {started} THEN 1 ELSE 0 END \
         FROM {templates} WHERE title = 'header' ORDER BY sid",
        s.db.hex_of("template")
    ));
    let master = s.value(&format!(
        "SELECT COUNT(*) FROM {templates} WHERE sid = -2 AND dateline = {SEED_TIME}"
    ));
    assert_eq!(master, "300", "no master row changed");
    let own: Vec<&str> = rows.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert_eq!(own[0], "1");
    assert_eq!(
        own[1],
        hex(b"<div id=\"header\">{$lang->welcome}</div>"),
        "stored without trailing whitespace"
    );
    assert_eq!(&own[2..], ["1837", "[]", "1"]);

    // A later save updates that row; no third row appears.
    save(&header, "<div id=\"header\">v2</div>");
    s.events
        .until("the second save imported", |e| {
            about(e, K::Imported, SET, "header")
        })
        .await;
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*), MAX(template) FROM {templates} WHERE title = 'header'"
        )),
        "2\t<div id=\"header\">v2</div>"
    );

    // An editor adding a final newline changes nothing in the database.
    let before = s.value(&format!(
        "SELECT dateline FROM {templates} WHERE title = 'header' AND sid = 1"
    ));
    let mark = s.events.mark();
    save(&header, "<div id=\"header\">v2</div>\n");
    quiesce(&mut s.sync, &mut s.events).await;
    assert!(
        s.events
            .matching(|e| e.revision > mark && about(e, K::Imported, SET, "header"))
            .is_empty(),
        "a final newline is no change"
    );
    assert_eq!(
        s.value(&format!(
            "SELECT dateline FROM {templates} WHERE title = 'header' AND sid = 1"
        )),
        before
    );

    // Deleting the set's row through the API reverts to the master, and
    // the file follows; the master itself cannot be deleted.
    let key = pb::TemplateKey {
        set: SET.to_owned(),
        title: "header".to_owned(),
    };
    s.sync
        .delete_template(pb::DeleteTemplateRequest {
            key: Some(key.clone()),
            expected_version: None,
        })
        .await
        .unwrap();
    let master_sha = s.value(&format!(
        "SELECT {} FROM {templates} WHERE sid = -2 AND title = 'header'",
        s.db.sha256_of("template")
    ));
    eventually("the file to hold the master again", EVENT_DEADLINE, || {
        let ok = fs::read(&header).is_ok_and(|content| sha256(&content) == master_sha);
        async move { ok.then_some(()) }
    })
    .await;
    let refused = s
        .sync
        .delete_template(pb::DeleteTemplateRequest {
            key: Some(key),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("master"),
        "{}",
        refused.message()
    );
}

/// `bytes` in upper-case hex, as MySQL's `HEX()` prints it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// What MyBB's `check_template`, a utf8mb3 column or TEXT's size would
/// refuse or mangle is refused with the reason — whatever the server's
/// mode, since without strict mode MySQL would store it cut short or with
/// `?` for the characters it cannot hold.
async fn refusals(mode: SqlMode) {
    let spec = ForumSpec {
        charset: Charset::Utf8mb3,
        master_templates: 20,
        ..ForumSpec::default()
    };
    let Some(mut s) = Synced::start(Server::MariaDb(mode), spec, Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    for (content, reason) in [
        ("<p>{$config['database']['password']}</p>", "check_template"),
        ("<script>let a = `${b}`;</script>", "check_template"),
        ("<p>{$mybb->user->delete()}</p>", "check_template"),
        ("<p>smile \u{1F600}</p>", "U+1F600"),
        (&"x".repeat(70_000), "65535"),
    ] {
        let err = s
            .sync
            .put_template(put(SET, "index", content, None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("content: "), "{}", err.message());
        assert!(err.message().contains(reason), "{}", err.message());
    }
    // The same from a file: REJECTED with the reason, nothing written.
    export(&mut s.sync, SET).await;
    let index = s.dir("templates", SET).await.join("index/index.html");
    save(&index, "<p>smile \u{1F600}</p>\n");
    let rejected = s
        .events
        .until("the emoji file rejected", |e| {
            e.kind() == K::Rejected && e.path == index.display().to_string()
        })
        .await;
    assert!(rejected.message.contains("U+1F600"), "{}", rejected.message);
    // A set the forum does not have (sets are made in its admin panel).
    let elsewhere = index
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .with_file_name("No Such Set")
        .join("header/header.html");
    fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    save(&elsewhere, "<p>lost?</p>");
    let rejected = s
        .events
        .until("the file of an unknown set rejected", |e| {
            e.kind() == K::Rejected && e.path == elsewhere.display().to_string()
        })
        .await;
    assert!(
        rejected.message.contains("no template set"),
        "{}",
        rejected.message
    );
    assert_eq!(
        s.value(&format!("SELECT COUNT(*) FROM {templates} WHERE sid <> -2")),
        "0",
        "nothing reached the database"
    );
}

#[tokio::test]
async fn refusals_in_strict_mode() {
    refusals(SqlMode::Strict).await;
}

#[tokio::test]
async fn refusals_without_strict_mode() {
    refusals(SqlMode::NonStrict).await;
}

both_servers!(database_edits_reach_the_files_and_duplicates_are_reported);
async fn database_edits_reach_the_files_and_duplicates_are_reported(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    let now = s.db.now();
    export(&mut s.sync, SET).await;
    let dir = s.dir("templates", SET).await;

    // Another tool changes a master row: every set showing it follows.
    s.value(&format!(
        "UPDATE {templates} SET template = 'new footer', dateline = {now} \
         WHERE sid = -2 AND title = 'footer'"
    ));
    s.events
        .until("the footer written", |e| {
            about(e, K::Exported, SET, "footer")
        })
        .await;
    assert_eq!(
        fs::read_to_string(dir.join("footer/footer.html")).unwrap(),
        "new footer"
    );

    // The admin panel saves the set's own copy of index.
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) \
         VALUES ('index', 'own index', 1, '1837', '', {now})"
    ));
    s.events
        .until("the index written", |e| about(e, K::Exported, SET, "index"))
        .await;
    assert_eq!(
        fs::read_to_string(dir.join("index/index.html")).unwrap(),
        "own index"
    );

    // A second own row: reported, and the title is synced no more.
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) \
         VALUES ('index', 'another index', 1, '1837', '', {now})"
    ));
    let warning = s
        .events
        .until("the duplicate reported", |e| {
            e.kind() == K::Warning && e.message.contains("\"index\"")
        })
        .await;
    assert!(warning.message.contains("2 rows"), "{}", warning.message);
    save(&dir.join("index/index.html"), "mine");
    let rejected = s
        .events
        .until("the duplicated title rejected", |e| {
            e.kind() == K::Rejected && e.path.ends_with("index/index.html")
        })
        .await;
    assert!(
        rejected.message.contains("2 own rows"),
        "{}",
        rejected.message
    );
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*) FROM {templates} WHERE title = 'index' AND template = 'mine'"
        )),
        "0"
    );
}

both_servers!(titles_that_cannot_be_file_names_are_never_written);
async fn titles_that_cannot_be_file_names_are_never_written(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) VALUES \
         ('../../../escaped', 'x', -2, '1837', '', 1), ('a/b', 'y', 1, '1837', '', 1)"
    ));
    let summary = export(&mut s.sync, SET).await;
    assert_eq!((summary.written, summary.skipped), (20, 2));
    // Changes to them in the database reach no file either.
    s.value(&format!(
        "UPDATE {templates} SET template = 'z', dateline = 2 WHERE title IN ('../../../escaped', 'a/b')"
    ));
    quiesce(&mut s.sync, &mut s.events).await;
    let root = PathBuf::from(status(&mut s.sync).await.root);
    let outside = root.parent().unwrap();
    assert!(!outside.join("escaped.html").exists());
    let files = crate::sync_support::files(&root);
    assert_eq!(files.len(), 20, "{files:?}");
}

both_servers!(stylesheets_save_as_the_admin_panel_does);
async fn stylesheets_save_as_the_admin_panel_does(server: Server) {
    let Some(mut s) = Synced::start(server, ForumSpec::default(), Connect::Environment).await
    else {
        return;
    };
    let sheets = s.table("themestylesheets");
    let themes = s.table("themes");
    let started = unix_now();
    let summary = s
        .sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Child".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(summary.written, 4, "the child shows every inherited sheet");
    let child = s.dir("stylesheets", "Child").await;

    // Saving a sheet the child inherits copies it into the child first.
    save(
        &child.join("color_black.css"),
        "#logo { background: url(images/mine.png) }\n",
    );
    s.sheet_event(K::Imported, "Child", "color_black.css").await;
    let row = s.value(&format!(
        "SELECT sid, attachedto, cachefile, CASE WHEN lastmodified >= {started} THEN 1 ELSE 0 END, {} \
         FROM {sheets} WHERE tid = 3 AND name = 'color_black.css'",
        s.db.hex_of("stylesheet")
    ));
    let row: Vec<&str> = row.split('\t').collect();
    assert_eq!(&row[1..4], ["black", "color_black.css", "1"], "{row:?}");
    assert_eq!(
        row[4],
        hex(b"#logo { background: url(images/mine.png) }\n"),
        "stylesheets keep their trailing whitespace"
    );
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*) FROM {sheets} WHERE tid = 2 AND name = 'color_black.css' AND lastmodified = {SEED_TIME}"
        )),
        "1",
        "the parent's row is untouched"
    );

    // The cached copies MyBB serves, no older than the row.
    let cache = s.root.path().join("cache/themes/theme3");
    let lastmodified: u64 = s
        .value(&format!(
            "SELECT lastmodified FROM {sheets} WHERE tid = 3 AND name = 'color_black.css'"
        ))
        .parse()
        .unwrap();
    for (file, content) in [
        (
            "color_black.css",
            "#logo { background: url(../../../images/mine.png) }\n",
        ),
        (
            "color_black.min.css",
            "#logo{background:url(../../../images/mine.png)}",
        ),
    ] {
        let path = cache.join(file);
        assert_eq!(fs::read_to_string(&path).unwrap(), content, "{file}");
        let mtime = fs::metadata(&path).unwrap().mtime() as u64;
        assert!(
            mtime >= lastmodified,
            "{file}: mtime {mtime} < {lastmodified}"
        );
    }
    // The theme's list links the cached file.
    let list = s.value(&format!("SELECT stylesheets FROM {themes} WHERE tid = 3"));
    assert!(
        list.contains("cache/themes/theme3/color_black.css"),
        "{list}"
    );

    // A sheet of the default theme: visitors' cached copy of it follows.
    let default = s.dir("stylesheets", "Default").await;
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Default".to_owned(),
        })
        .await
        .unwrap();
    save(&default.join("global.css"), "body { color: red }");
    s.sheet_event(K::Imported, "Default", "global.css").await;
    let cached_theme = s.value(&format!(
        "SELECT cache FROM {} WHERE title = 'default_theme'",
        s.table("datacache")
    ));
    assert!(
        cached_theme.contains("cache/themes/theme2/global.css"),
        "{cached_theme}"
    );

    // The master style is read-only.
    let err = s
        .sync
        .put_stylesheet(pb::PutStylesheetRequest {
            key: Some(pb::StylesheetKey {
                theme: "MyBB Master Style".to_owned(),
                name: "global.css".to_owned(),
            }),
            content: "body {}".to_owned(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("master style"), "{}", err.message());
}

both_servers!(a_cache_that_cannot_be_written_falls_back_to_css_php_and_warns);
async fn a_cache_that_cannot_be_written_falls_back_to_css_php_and_warns(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let sheets = s.table("themestylesheets");
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Child".to_owned(),
        })
        .await
        .unwrap();
    // Where the theme's cache directory should be, a file: nothing can
    // be written under it (permissions would not stop root).
    let cache = s.root.path().join("cache/themes/theme3");
    fs::write(&cache, "not a directory").unwrap();
    let child = s.dir("stylesheets", "Child").await;
    save(&child.join("global.css"), "body { color: blue }");
    let warning = s.sheet_event(K::Warning, "Child", "global.css").await;
    assert!(
        warning.message.contains("css.php?stylesheet="),
        "{}",
        warning.message
    );
    s.sheet_event(K::Imported, "Child", "global.css").await;
    let row = s.value(&format!(
        "SELECT sid, cachefile FROM {sheets} WHERE tid = 3 AND name = 'global.css'"
    ));
    let (sid, cachefile) = row.split_once('\t').unwrap();
    assert_eq!(cachefile, format!("css.php?stylesheet={sid}"));
    let list = s.value(&format!(
        "SELECT stylesheets FROM {} WHERE tid = 3",
        s.table("themes")
    ));
    assert!(
        list.contains(&format!("css.php?stylesheet={sid}")),
        "{list}"
    );
}

/// `config.php` as the installer writes it, caching in `store` (one of
/// `redis`, `memcache`, `memcached`) on 127.0.0.1:`port`.
fn caching_in(store: &str, port: u16) -> impl FnOnce(String) -> String {
    let section = if store == "redis" {
        "redis"
    } else {
        "memcache"
    };
    let default_port = if store == "redis" { 6379 } else { 11211 };
    move |config: String| {
        let edited = config
            .replace(
                "$config['cache_store'] = 'db';",
                &format!("$config['cache_store'] = '{store}';"),
            )
            .replace(
                &format!("$config['{section}']['host'] = 'localhost';"),
                &format!("$config['{section}']['host'] = '127.0.0.1';"),
            )
            .replace(
                &format!("$config['{section}']['port'] = {default_port};"),
                &format!("$config['{section}']['port'] = {port};"),
            );
        assert_eq!(
            edited.matches("127.0.0.1").count(),
            config.matches("127.0.0.1").count() + 1,
            "the installer's {section} lines changed"
        );
        edited
    }
}

/// MyBB's key for the forum's `default_theme` cache: md5 of its root's
/// real path with a trailing '/', as PHP's `__FILE__` gives it.
fn default_theme_key(root: &Path) -> String {
    use md5::{Digest, Md5};
    let real = fs::canonicalize(root).unwrap();
    let digest = Md5::digest(format!("{}/", real.display()).as_bytes());
    format!("{}_default_theme", hex(&digest).to_lowercase())
}

/// Saves a sheet of the default theme; returns the first WARNING or
/// IMPORTED event about it.
async fn save_a_default_sheet(s: &mut Synced) -> pb::SyncEvent {
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Default".to_owned(),
        })
        .await
        .unwrap();
    let default = s.dir("stylesheets", "Default").await;
    save(&default.join("global.css"), "body { color: teal }");
    s.events
        .until("the save of Default/global.css", |event| {
            matches!(event.kind(), K::Warning | K::Imported)
                && matches!(
                    event.key.as_ref().and_then(|key| key.key.as_ref()),
                    Some(content_key::Key::Stylesheet(key)) if key.theme == "Default" && key.name == "global.css"
                )
        })
        .await
}

/// A forum caching in redis, memcache or memcached: a save of a sheet of
/// the default theme deletes MyBB's copy of the `default_theme` cache
/// there, so that its next page reads the new row from `datacache`.
async fn a_default_sheet_save_clears_the_cache_server(kind: Kind, store: &str) {
    let Some(cache) = CacheServer::start(kind) else {
        return;
    };
    let Some(mut s) = Synced::start_with_config(
        Server::MariaDb(SqlMode::Strict),
        small(),
        Connect::Environment,
        caching_in(store, cache.port),
    )
    .await
    else {
        return;
    };
    let key = default_theme_key(s.root.path());
    cache.set(&key, "a:1:{s:3:\"tid\";i:2;}");
    let other = key.replace("default_theme", "settings");
    cache.set(&other, "kept");
    let event = save_a_default_sheet(&mut s).await;
    assert_eq!(event.kind(), K::Imported, "{}", event.message);
    assert!(!cache.has(&key), "{store}: the default_theme key is gone");
    assert!(cache.has(&other), "{store}: other caches stay");
}

#[tokio::test]
async fn a_default_sheet_save_clears_redis() {
    a_default_sheet_save_clears_the_cache_server(Kind::Redis, "redis").await;
}

#[tokio::test]
async fn a_default_sheet_save_clears_memcached() {
    a_default_sheet_save_clears_the_cache_server(Kind::Memcached, "memcached").await;
}

#[tokio::test]
async fn a_default_sheet_save_clears_memcache() {
    a_default_sheet_save_clears_the_cache_server(Kind::Memcached, "memcache").await;
}

/// A cache server that is down: the save lands, with a warning naming
/// the server, since guests keep the old stylesheet list until the
/// cache is rebuilt.
#[tokio::test]
async fn a_cache_server_that_is_down_is_named_in_a_warning() {
    let port = free_port();
    let Some(mut s) = Synced::start_with_config(
        Server::MariaDb(SqlMode::Strict),
        small(),
        Connect::Environment,
        caching_in("redis", port),
    )
    .await
    else {
        return;
    };
    let warning = save_a_default_sheet(&mut s).await;
    assert_eq!(warning.kind(), K::Warning, "{}", warning.message);
    assert!(
        warning
            .message
            .contains(&format!("redis server 127.0.0.1:{port}: cannot connect")),
        "{}",
        warning.message
    );
    s.sheet_event(K::Imported, "Default", "global.css").await;
}

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
            e.kind() == K::WatcherError && e.path == footer.display().to_string()
        })
        .await;

    s.db.start_again();
    s.events
        .until("the save to land", |e| about(e, K::Imported, SET, "footer"))
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

/// What PostgreSQL's columns hold: UTF-8 throughout, so a 4-byte
/// character is stored exactly (where a utf8mb3 MySQL column refuses
/// it); and a `varchar(n)` counts characters, so a longer stylesheet name
/// is refused with the reason before PostgreSQL would fail the statement.
#[tokio::test]
async fn postgres_stores_any_character_and_refuses_names_its_column_cannot_hold() {
    let Some(mut s) = Synced::start(Server::Postgres, small(), Connect::Config).await else {
        return;
    };
    let templates = s.table("templates");
    s.sync
        .put_template(put(SET, "index", "<p>smile \u{1F600}</p>", None))
        .await
        .unwrap();
    assert_eq!(
        s.value(&format!(
            "SELECT template FROM {templates} WHERE sid = 1 AND title = 'index'"
        )),
        "<p>smile \u{1F600}</p>"
    );
    let sheet = |name: String| pb::PutStylesheetRequest {
        key: Some(pb::StylesheetKey {
            theme: "Child".to_owned(),
            name,
        }),
        content: "body {}".to_owned(),
        expected_version: None,
    };
    // varchar(30): thirty characters, sixty bytes.
    let fits = format!("{}.css", "é".repeat(26));
    s.sync.put_stylesheet(sheet(fits)).await.unwrap();
    let err = s
        .sync
        .put_stylesheet(sheet(format!("{}.css", "é".repeat(27))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("31 characters") && err.message().contains("at most 30"),
        "{}",
        err.message()
    );
}
