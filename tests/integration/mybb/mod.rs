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
    harness::{Daemon, eventually},
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

/// `bytes` in upper-case hex, as MySQL's `HEX()` prints it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

mod faults;
mod stylesheets;
mod templates;
