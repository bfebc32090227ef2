//! Test support: a private, real PostgreSQL server per test, and synthetic
//! MyBB 1.8.37 forums in it — the PostgreSQL counterpart of `mariadb.rs`.
//!
//! Each [`Postgres`] owns a temporary directory holding a fresh cluster
//! (`initdb`), the server's log and its Unix socket, and a `postgres` child
//! listening on that socket and on a free TCP port of 127.0.0.1; it is
//! stopped when dropped. A forum ([`Postgres::create_forum`]) holds only
//! MyBB's content tables, with MyBB's PostgreSQL definitions
//! (`install/resources/pgsql_db_tables.php`: `serial` ids, `numeric`
//! stylesheet owner and time, no secondary indexes) in a UTF8 database
//! owned by the forum's own role, seeded with the same content as the
//! MariaDB harness's forums (`mybb_data.rs`).
//!
//! PostgreSQL refuses to run as root: when the tests do (CI does), the
//! cluster belongs to the `postgres` system user the distribution's
//! package creates, and `initdb` and the server run as it.
//!
//! This file is included by path, so it uses only std and crates the
//! daemon depends on, never `crate::`. It blocks: it is test code, and
//! blocking keeps it usable from any test, async or not.

use std::{
    env,
    fmt::Write as _,
    fs::{self, File},
    io::{Read, Write},
    os::unix::{fs::chown, net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::Signal,
    unistd::{Gid, Uid, User, geteuid},
};
use tempfile::TempDir;

pub use crate::mybb_data::{FORUM_PASSWORD, MASTER_TITLES_ALWAYS, SEED_TIME};
use crate::{
    mybb_data::master_titles,
    mybb_root::ConfigDb,
    process::{
        DEADLINE, PORT_ATTEMPTS, Started, excerpt, free_port, is_identifier, percent_encode, run,
        run_with_input, skip, stop_server, wait_started,
    },
};

/// The cluster's superuser, let in without a password over the socket
/// only.
const SUPERUSER: &str = "postgres";

/// The system user the cluster belongs to when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// The server's settings: small and fast (nothing here needs to survive a
/// crash), and no log lines but warnings and errors.
const SERVER_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "wal_level=minimal",
    "max_wal_senders=0",
    "shared_buffers=16MB",
    "max_connections=50",
    "logging_collector=off",
];

/// The programs a server needs, found on this machine.
struct Programs {
    postgres: PathBuf,
    initdb: PathBuf,
    psql: PathBuf,
}

/// Who the cluster's files and processes belong to: the `postgres` system
/// user when running as root, else whoever runs the tests.
#[derive(Clone, Copy)]
struct Owner {
    uid: Uid,
    gid: Gid,
}

/// A private PostgreSQL server: its own cluster, socket directory and TCP
/// port, owned by the test. Dropping it stops the server (SIGQUIT, an
/// immediate shutdown: the cluster goes too, so nothing needs a clean one)
/// and removes the directory.
pub struct Postgres {
    child: Option<Child>,
    programs: Programs,
    owner: Option<Owner>,
    port: u16,
    // Last, so that it is removed after the server is dead.
    dir: TempDir,
}

impl Postgres {
    /// Creates a cluster and starts a server on it, or returns None (after
    /// printing a one-line reason to stderr) when PostgreSQL is not
    /// installed, so that a developer without it can still run the rest of
    /// the suite. When the environment variable `OUTPOST_REQUIRE_REAL` is
    /// set to a non-empty value other than `0` (as CI does), a missing
    /// PostgreSQL panics instead: there, a skipped test would be a silent
    /// hole. Any other failure panics with the server's log.
    pub fn start() -> Option<Postgres> {
        let programs = match find_programs() {
            Ok(programs) => programs,
            Err(reason) => return skip(&reason),
        };
        let owner = if geteuid().is_root() {
            match User::from_name(SYSTEM_USER) {
                Ok(Some(user)) => Some(Owner {
                    uid: user.uid,
                    gid: user.gid,
                }),
                _ => {
                    return skip(&format!(
                        "PostgreSQL refuses to run as root and there is no {SYSTEM_USER:?} \
                         user to run it as"
                    ));
                }
            }
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("outpost-pg-")
            .tempdir()
            .expect("cannot create a temporary directory");
        if let Some(owner) = owner {
            chown(
                dir.path(),
                Some(owner.uid.as_raw()),
                Some(owner.gid.as_raw()),
            )
            .expect("cannot give the temporary directory to the postgres user");
        }
        let mut server = Postgres {
            child: None,
            programs,
            owner,
            port: 0,
            dir,
        };
        server.init();
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return Some(server),
                Err(log) if attempt < PORT_ATTEMPTS && port_taken(&log) => continue,
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.<port>`), what
    /// libpq's `host` takes for a socket: the superuser is let in there
    /// without a password, forum roles with theirs.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port the server listens on at 127.0.0.1 (and the number in
    /// its socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shuts the server down as `pg_ctl stop` does by default (SIGINT, a
    /// fast shutdown: sessions are ended, data is flushed), then waits for
    /// it to exit: tests of a store that loses its database mid-way use it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !stop_server(&mut child, Signal::SIGINT) {
            panic!(
                "postgres did not stop within {DEADLINE:?} of SIGINT:\n{}",
                self.log()
            );
        }
    }

    /// Starts the server again after [`Postgres::stop`], on the same
    /// cluster, socket directory and port, and waits until it answers:
    /// what was written before the stop is still there.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        if let Err(log) = self.launch() {
            panic!("postgres did not start again:\n{log}");
        }
    }

    /// Runs `sql` (any number of statements, and psql's meta-commands) with
    /// `psql` as the superuser over the socket, in `database` (`postgres`
    /// if empty), and returns its output: rows without a header or footer,
    /// fields separated by a tab, values as PostgreSQL prints them (a NULL
    /// empty, a newline in a value as is); no command tags. Panics with
    /// psql's error if a statement fails.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        match self.try_sql(database, sql) {
            Ok(out) => out,
            Err(err) => panic!("SQL failed: {err}\n{}", excerpt(sql)),
        }
    }

    /// [`Postgres::sql`], with psql's error instead of a panic: for
    /// statements a test expects the server to refuse. The script stops at
    /// the first error (`ON_ERROR_STOP`).
    pub fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut command = self.client();
        command
            .arg("--host")
            .arg(self.socket_dir())
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={SUPERUSER}"))
            .arg(format!(
                "--dbname={}",
                if database.is_empty() {
                    "postgres"
                } else {
                    database
                }
            ));
        let output = run_with_input(&mut command, sql);
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).expect("psql's output is UTF-8"))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `psql`, reading no `~/.psqlrc` and no `PG*` variable of the
    /// environment, talking UTF-8 and printing like [`Postgres::sql`] — but
    /// with no host, port, user or database yet: for tests that connect as
    /// someone else, over TCP or with a connection string or URL.
    pub fn client(&self) -> Command {
        let mut command = Command::new(&self.programs.psql);
        clear_pg_env(&mut command);
        command
            .env("PGCLIENTENCODING", "UTF8")
            // No password prompt: a missing or wrong one is an error.
            .arg("--no-password")
            .args([
                "--no-psqlrc",
                "--no-align",
                "--tuples-only",
                "--quiet",
                "--field-separator=\t",
                "--set=ON_ERROR_STOP=1",
            ]);
        command
    }

    /// Creates the forum `spec` describes: its role if missing (named after
    /// the database, with [`FORUM_PASSWORD`], stored as SCRAM), its
    /// database if missing (UTF8, owned by that role, which alone may
    /// connect to it besides the superuser), then MyBB's six content tables
    /// with the forum's prefix, created by that role and seeded like a
    /// fresh install (see [`PgForumSpec`]). Forums in other databases or
    /// with other prefixes can live in the same server.
    pub fn create_forum(&self, spec: &PgForumSpec) -> PgForum {
        assert!(
            is_lower_identifier(&spec.database) && spec.database.len() <= 63,
            "database name {:?}: lowercase letters, digits and _ only",
            spec.database
        );
        assert!(
            spec.prefix.is_empty() || is_lower_identifier(&spec.prefix),
            "table prefix {:?}: lowercase letters, digits and _ only (MyBB's queries do \
             not quote names, which PostgreSQL folds to lowercase)",
            spec.prefix
        );
        let forum = PgForum {
            database: spec.database.clone(),
            prefix: spec.prefix.clone(),
            user: spec.database.clone(),
            password: FORUM_PASSWORD.to_owned(),
            master_titles: master_titles(spec.master_templates),
        };
        let exists = |catalog: &str, column: &str, name: &str| {
            self.sql(
                "",
                &format!(
                    "SELECT count(*) FROM {catalog} WHERE {column} = {}",
                    quote(name)
                ),
            ) == "1\n"
        };
        if !exists("pg_roles", "rolname", &forum.user) {
            self.sql(
                "",
                &format!(
                    "SET password_encryption = 'scram-sha-256';\n\
                     CREATE ROLE \"{}\" LOGIN PASSWORD {};",
                    forum.user,
                    quote(&forum.password)
                ),
            );
        }
        if !exists("pg_database", "datname", &forum.database) {
            // CREATE DATABASE cannot run in a transaction: a script of its
            // own.
            self.sql(
                "",
                &format!(
                    "CREATE DATABASE \"{db}\" OWNER \"{user}\" ENCODING 'UTF8' TEMPLATE template0;\n\
                     REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC;",
                    db = forum.database,
                    user = forum.user,
                ),
            );
        }
        let mut script = format!("SET ROLE \"{}\";\nBEGIN;\n", forum.user);
        script.push_str(&schema(&forum.prefix));
        script.push_str(&crate::mybb_data::seed(
            &|name| forum.table(name),
            &quote,
            &forum.master_titles,
        ));
        // The rows above with explicit ids leave the sequences behind, and
        // the next insert would take an id in use: move them on, as
        // MyBB's installer does for the template groups.
        for (table, id) in [
            ("templatesets", "sid"),
            ("templategroups", "gid"),
            ("themes", "tid"),
        ] {
            let table = forum.table(table);
            let _ = writeln!(
                script,
                "SELECT FROM setval(pg_get_serial_sequence('{table}', '{id}'), (SELECT max({id}) FROM {table}));"
            );
        }
        script.push_str("COMMIT;\n");
        self.sql(&forum.database, &script);
        forum
    }

    /// Creates the cluster in `<dir>/data` as its owner: UTF8, C locale,
    /// the superuser [`SUPERUSER`]; then the client authentication rules.
    fn init(&self) {
        let mut initdb = self.as_owner(&self.programs.initdb);
        initdb
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg(format!("--username={SUPERUSER}"))
            .args([
                "--encoding=UTF8",
                "--locale=C",
                // Nothing here needs to survive a crash.
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ]);
        let output = run(&mut initdb);
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The superuser needs no password over the socket (tests run as
        // root, or as whoever owns the cluster: no peer authentication
        // fits both); every other role needs its password, over the socket
        // as over TCP, as on a host whose forum has an account of its own.
        let hba = self.data_dir().join("pg_hba.conf");
        fs::write(
            &hba,
            format!(
                "local all {SUPERUSER} trust\n\
                 local all all scram-sha-256\n\
                 host all all 127.0.0.1/32 scram-sha-256\n\
                 host all all ::1/128 scram-sha-256\n"
            ),
        )
        .expect("cannot write pg_hba.conf");
        if let Some(owner) = self.owner {
            chown(&hba, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .expect("cannot give pg_hba.conf to the postgres user");
        }
    }

    /// Starts `postgres` on the cluster and the current port, and waits
    /// until it lets the superuser in over its socket; on failure returns
    /// the log.
    fn launch(&mut self) -> Result<(), String> {
        let log = File::create(self.log_path()).expect("cannot create the server's log");
        let mut command = self.as_owner(&self.programs.postgres);
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-h", "127.0.0.1"]);
        for setting in SERVER_SETTINGS {
            command.args(["-c", setting]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let socket = self.socket_dir().join(format!(".s.PGSQL.{}", self.port));
        let child = command.spawn().expect("cannot run postgres");
        let child = self.child.insert(child);
        match wait_started(child, DEADLINE, || accepts(&socket)) {
            Started::Ready => Ok(()),
            Started::Exited(status) => {
                self.child = None;
                Err(format!("postgres exited ({status}):\n{}", self.log()))
            }
            Started::TimedOut => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                Err(format!(
                    "postgres did not answer within {DEADLINE:?}:\n{}",
                    self.log()
                ))
            }
        }
    }

    /// `program` run as the cluster's owner, in the temporary directory
    /// (the test's own may be closed to that user), with no `PG*`
    /// variables and the C locale.
    fn as_owner(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        clear_pg_env(&mut command);
        command
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("LANG");
        if let Some(owner) = self.owner {
            // std drops root's supplementary groups when it changes the
            // uid.
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
        }
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log, for failure messages.
    fn log(&self) -> String {
        fs::read_to_string(self.log_path())
            .unwrap_or_else(|err| format!("(no log at {}: {err})", self.log_path().display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An immediate shutdown: the postmaster ends its children and
            // exits without a checkpoint. SIGKILL would leave the children
            // running until they notice.
            stop_server(&mut child, Signal::SIGQUIT);
        }
    }
}

/// What forum to create.
#[derive(Clone, Debug)]
pub struct PgForumSpec {
    /// The database, created if missing (another forum may share it with
    /// another prefix), and the name of the forum's role.
    pub database: String,
    /// The table prefix (`mybb_` by default, as MyBB's installer suggests).
    pub prefix: String,
    /// How many master templates (`sid` −2) to create: at least
    /// [`MASTER_TITLES_ALWAYS`]'s, which come first. A real install has 974;
    /// tests want few, or many to measure.
    pub master_templates: usize,
}

impl Default for PgForumSpec {
    fn default() -> Self {
        PgForumSpec {
            database: "forum".to_owned(),
            prefix: "mybb_".to_owned(),
            master_templates: 40,
        }
    }
}

/// A forum created by [`Postgres::create_forum`], and the database account
/// its `inc/config.php` names.
#[derive(Clone, Debug)]
pub struct PgForum {
    pub database: String,
    pub prefix: String,
    /// The forum's own role, named after its database, which it owns along
    /// with its tables: the store must work with what a forum's config
    /// gives it, not the superuser. Shared by forums in the same database.
    pub user: String,
    /// [`FORUM_PASSWORD`]: it needs escaping in a URL and in PHP.
    pub password: String,
    master_titles: Vec<String>,
}

impl PgForum {
    /// Writes a forum's root directory the way MyBB's installer leaves one
    /// for PostgreSQL (see [`mybb_root::write_root`]): its `inc/config.php`
    /// has the type `pgsql`, this forum's database, prefix and account,
    /// `hostname` written as given (`localhost`, `127.0.0.1:<port>`, a
    /// socket directory, …) and the encoding commented out, as the
    /// installer writes it for pgsql.
    pub fn write_root(&self, dir: &Path, hostname: &str) {
        crate::mybb_root::write_root(
            dir,
            &ConfigDb {
                kind: "pgsql",
                database: &self.database,
                table_prefix: &self.prefix,
                hostname,
                username: &self.user,
                password: &self.password,
                encoding: None,
            },
        );
    }

    /// A `postgres://` URL that reaches this forum's database as its role
    /// over TCP (user and password percent-encoded):
    /// `postgres://<user>:<password>@127.0.0.1:<port>/<db>`.
    pub fn url(&self, pg: &Postgres) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            percent_encode(&self.user, ""),
            percent_encode(&self.password, ""),
            pg.port(),
            self.database,
        )
    }

    /// The titles of the master templates, in creation (`tid`) order.
    pub fn master_titles(&self) -> Vec<String> {
        self.master_titles.clone()
    }

    /// This forum's table `name` with its prefix (`templates` →
    /// `mybb_templates`).
    pub fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The six content tables, exactly as `install/resources/pgsql_db_tables.php`
/// defines them (no secondary indexes: MyBB creates none on PostgreSQL),
/// with the forum's prefix.
fn schema(prefix: &str) -> String {
    let tables = [
        (
            "datacache",
            "title varchar(50) NOT NULL default '',
  cache text NOT NULL default '',
  PRIMARY KEY (title)",
        ),
        (
            "templategroups",
            "gid serial,
  prefix varchar(50) NOT NULL default '',
  title varchar(100) NOT NULL default '',
  isdefault smallint NOT NULL default '0',
  PRIMARY KEY (gid)",
        ),
        (
            "templates",
            "tid serial,
  title varchar(120) NOT NULL default '',
  template text NOT NULL default '',
  sid smallint NOT NULL default '0',
  version varchar(20) NOT NULL default '0',
  status varchar(10) NOT NULL default '',
  dateline int NOT NULL default '0',
  PRIMARY KEY (tid)",
        ),
        (
            "templatesets",
            "sid serial,
  title varchar(120) NOT NULL default '',
  PRIMARY KEY (sid)",
        ),
        (
            "themes",
            "tid serial,
  name varchar(100) NOT NULL default '',
  pid smallint NOT NULL default '0',
  def smallint NOT NULL default '0',
  properties text NOT NULL default '',
  stylesheets text NOT NULL default '',
  allowedgroups text NOT NULL default '',
  PRIMARY KEY (tid)",
        ),
        (
            "themestylesheets",
            "sid serial,
	name varchar(30) NOT NULL default '',
	tid numeric(10,0) NOT NULL default '0',
	attachedto text NOT NULL,
	stylesheet text NOT NULL,
	cachefile varchar(100) NOT NULL default '',
	lastmodified numeric(30,0) NOT NULL default '0',
	PRIMARY KEY(sid)",
        ),
    ];
    let mut sql = String::new();
    for (name, columns) in tables {
        let _ = writeln!(
            sql,
            "DROP TABLE IF EXISTS {prefix}{name};\nCREATE TABLE {prefix}{name} (\n  {columns}\n);"
        );
    }
    sql
}

/// The server's programs: from the directory of a `postgres` on `PATH`,
/// else from the newest of the versioned directories distributions use
/// (Debian's `/usr/lib/postgresql/<version>/bin`, the PGDG RPMs'
/// `/usr/pgsql-<version>/bin`); `psql` from there or from `PATH` (Debian's
/// `/usr/bin/psql` is a wrapper script, slower to start).
fn find_programs() -> Result<Programs, String> {
    let path = env::var_os("PATH").unwrap_or_default();
    let bindir = env::split_paths(&path)
        .find(|dir| dir.join("postgres").is_file() && dir.join("initdb").is_file())
        .or_else(|| {
            newest_versioned("/usr/lib/postgresql", "", "bin")
                .or_else(|| newest_versioned("/usr", "pgsql-", "bin"))
        })
        .ok_or_else(|| "PostgreSQL is not installed (apt-get install postgresql)".to_owned())?;
    let psql = Some(bindir.join("psql"))
        .filter(|psql| psql.is_file())
        .or_else(|| {
            env::split_paths(&path)
                .map(|dir| dir.join("psql"))
                .find(|psql| psql.is_file())
        })
        .ok_or_else(|| "psql is not installed (apt-get install postgresql-client)".to_owned())?;
    Ok(Programs {
        postgres: bindir.join("postgres"),
        initdb: bindir.join("initdb"),
        psql,
    })
}

/// `<parent>/<prefix><version>/<sub>` with the highest version holding
/// `postgres` and `initdb`.
fn newest_versioned(parent: &str, prefix: &str, sub: &str) -> Option<PathBuf> {
    fs::read_dir(parent)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let version: f64 = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            let dir = entry.path().join(sub);
            (dir.join("postgres").is_file() && dir.join("initdb").is_file())
                .then_some((version, dir))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, dir)| dir)
}

/// Removes libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
/// `PGPASSWORD`, `PGDATA`, …) from `command`'s environment: a developer's
/// would point it elsewhere.
fn clear_pg_env(command: &mut Command) {
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(|key| key.starts_with("PG")) {
            command.env_remove(&key);
        }
    }
}

/// Whether a failed start's log says that the port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// Whether the server at `socket` lets the superuser in: a startup
/// message, answered by an authentication request (`R`; trust makes it
/// AuthenticationOk) once the server accepts connections, by an error
/// (`E`, "the database system is starting up") before. Cheaper than
/// running `pg_isready` or `psql` in a loop.
fn accepts(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes()); // protocol 3.0
    for (key, value) in [("user", SUPERUSER), ("database", "postgres")] {
        for s in [key, value] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut message = u32::try_from(body.len() + 4)
        .expect("a small message")
        .to_be_bytes()
        .to_vec();
    message.extend_from_slice(&body);
    let mut reply = [0u8; 1];
    let ok = stream.write_all(&message).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply[0] == b'R';
    // Terminate, so that the server does not log an unexpected EOF.
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
    ok
}

/// [`is_identifier`] without uppercase letters: a name PostgreSQL keeps as
/// written whether quoted or not.
fn is_lower_identifier(name: &str) -> bool {
    is_identifier(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// A PostgreSQL string literal holding `s` exactly (standard-conforming
/// strings, the default since 9.1: only `'` is special, doubled). Text
/// cannot hold NUL.
fn quote(s: &str) -> String {
    assert!(!s.contains('\0'), "PostgreSQL text cannot hold NUL: {s:?}");
    format!("'{}'", s.replace('\'', "''"))
}
