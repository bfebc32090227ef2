//! Test support: a private, real MariaDB server per test, and synthetic
//! MyBB 1.8.37 forums in it.
//!
//! The MyBB content store talks to a forum's own database, whose behaviour
//! (MyISAM without transactions, utf8mb3 columns, strict or non-strict SQL
//! modes, sockets and TCP, grants) no fake reproduces, so its tests run
//! against the real server: each [`MariaDb`] owns a temporary data
//! directory and a `mariadbd` child listening on a socket inside it and on
//! a free TCP port of 127.0.0.1, and is killed when dropped. A forum
//! ([`MariaDb::create_forum`]) holds only MyBB's content tables, created
//! and seeded the way MyBB's installer does (`docs/mybb-semantics.md`), but
//! small.
//!
//! The forum's content comes from `mybb_data.rs` and its directory from
//! `mybb_root.rs`, both shared with `postgres.rs`. It blocks: it is test
//! code, and blocking keeps it usable from any test, async or not.

use std::{
    fmt::Write as _,
    fs,
    io::Read,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::geteuid};
use tempfile::TempDir;

pub use crate::mybb_data::{FORUM_PASSWORD, MASTER_TITLES_ALWAYS, SEED_TIME};
use crate::{
    mybb_data::master_titles,
    mybb_root::ConfigDb,
    process::{
        DEADLINE, PORT_ATTEMPTS, Started, excerpt, find_program, free_port, is_identifier,
        percent_encode, run, run_with_input, skip, stop_server, wait_started,
    },
};

/// The SQL mode the server runs with. MyBB sets none itself, so a forum
/// gets whatever its server is configured with, and both kinds exist in
/// the wild: tests of the store run against both to show that it checks
/// what it writes instead of relying on the server to refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlMode {
    /// MariaDB's default (`STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,
    /// NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION`): a value a column
    /// cannot hold is an error — but on MyISAM, which cannot roll back, only
    /// in a statement's first row; later rows are changed with a warning.
    Strict,
    /// `sql_mode = ''`, as many shared hosts run: a value a column cannot
    /// hold is silently changed (a 4-byte character in a utf8mb3 column
    /// becomes `?`, a too long text is cut) with only a warning.
    NonStrict,
}

/// The programs a server needs, found on this machine.
struct Programs {
    mariadbd: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
}

/// A private MariaDB server: its own data directory, socket and TCP port,
/// owned by the test. Dropping it kills the server (SIGKILL: the data
/// directory goes too, so nothing needs a clean shutdown) and removes the
/// directory.
pub struct MariaDb {
    child: Option<Child>,
    programs: Programs,
    mode: SqlMode,
    port: u16,
    socket_path: PathBuf,
    // Last, so that it is removed after the server is dead.
    dir: TempDir,
}

impl MariaDb {
    /// Creates a data directory and starts a server on it, or returns None
    /// (after printing a one-line reason to stderr) when MariaDB is not
    /// installed, so that a developer without it can still run the rest of
    /// the suite. When the environment variable `OUTPOST_REQUIRE_REAL` is
    /// set to a non-empty value other than `0` (as CI does), a missing
    /// MariaDB panics instead: there, a skipped test would be a silent hole.
    /// Any other failure panics with the server's log.
    pub fn start(mode: SqlMode) -> Option<MariaDb> {
        let programs = match find_programs() {
            Ok(programs) => programs,
            Err(reason) => return skip(&reason),
        };
        let dir = tempfile::Builder::new()
            .prefix("outpost-mariadb-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let data = dir.path().join("data");
        fs::create_dir(dir.path().join("tmp")).expect("cannot create the server's tmpdir");
        let mut install = Command::new(&programs.install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(tmpdir_arg(dir.path()))
            .args([
                // Root is let in over the socket without a password: tests
                // run as root (CI does).
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .args(user_args())
            .args(SIZE_ARGS);
        let output = run(&mut install);
        assert!(
            output.status.success(),
            "mariadb-install-db failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = MariaDb {
            child: None,
            programs,
            mode,
            port: 0,
            // In the data's directory: short enough for a socket path
            // wherever the temporary directory is.
            socket_path: dir.path().join("mysqld.sock"),
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return Some(server),
                Err(log) if attempt < PORT_ATTEMPTS && port_taken(&log) => continue,
                Err(log) => panic!("mariadbd did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The server's Unix socket, where root is let in without a password.
    pub fn socket(&self) -> &Path {
        &self.socket_path
    }

    /// The TCP port the server listens on at 127.0.0.1, for tests of
    /// connections that go over TCP (a forum whose `hostname` is
    /// `127.0.0.1:<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shuts the server down gracefully (SIGTERM, then waits for it to
    /// exit), as an administrator restarting the database would: tests of
    /// a store that loses its database mid-way use it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !stop_server(&mut child, Signal::SIGTERM) {
            panic!(
                "mariadbd did not stop within {DEADLINE:?} of SIGTERM:\n{}",
                self.log()
            );
        }
    }

    /// Starts the server again after [`MariaDb::stop`], on the same data,
    /// socket and port, and waits until it answers: what was written before
    /// the stop is still there.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        if let Err(log) = self.launch() {
            panic!("mariadbd did not start again:\n{log}");
        }
    }

    /// Runs `sql` (any number of statements) with the `mariadb` client as
    /// root over the socket, in `database` (none if empty), and returns its
    /// output: tab-separated rows without a header, values escaped the way
    /// `--batch` does (`\n`, `\t`, `\\`, `NULL`). Panics with the client's
    /// error if a statement fails.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        match self.try_sql(database, sql) {
            Ok(out) => out,
            Err(err) => panic!("SQL failed: {err}\n{}", excerpt(sql)),
        }
    }

    /// [`MariaDb::sql`], with the client's error instead of a panic: for
    /// statements a test expects the server to refuse.
    pub fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut command = self.client();
        command
            .arg(format!("--socket={}", self.socket_path.display()))
            .arg("--user=root");
        if !database.is_empty() {
            command.arg(format!("--database={database}"));
        }
        let output = run_with_input(&mut command, sql);
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).expect("the client's output is UTF-8"))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The `mariadb` client, with no options files read, talking UTF-8
    /// (utf8mb4) and printing like [`MariaDb::sql`] — but with no user,
    /// socket or host yet: for tests that connect as someone else or over
    /// TCP.
    pub fn client(&self) -> Command {
        let mut command = Command::new(&self.programs.client);
        command.args([
            "--no-defaults",
            "--default-character-set=utf8mb4",
            "--batch",
            "--skip-column-names",
        ]);
        command
    }

    /// Creates the forum `spec` describes: the database if missing, MyBB's
    /// six content tables with the forum's prefix, seeded like a fresh
    /// install (see [`ForumSpec`]), and a user of its own (shared by forums
    /// in the same database) with every right on that database and none
    /// elsewhere. Forums in other databases or with other prefixes can
    /// live in the same server.
    pub fn create_forum(&self, spec: &ForumSpec) -> Forum {
        assert!(
            is_identifier(&spec.database) && spec.database.len() <= 64,
            "database name {:?}: letters, digits and _ only",
            spec.database
        );
        assert!(
            spec.prefix.is_empty() || is_identifier(&spec.prefix),
            "table prefix {:?}: letters, digits and _ only (MyBB's installer requires it)",
            spec.prefix
        );
        let titles = master_titles(spec.master_templates);
        let forum = Forum {
            database: spec.database.clone(),
            prefix: spec.prefix.clone(),
            user: spec.database.clone(),
            password: FORUM_PASSWORD.to_owned(),
            charset: spec.charset,
            master_titles: titles,
        };
        let (charset, collation) = spec.charset.sql();
        let mut script = format!(
            "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET {charset} COLLATE {collation};\n\
             USE `{db}`;\n",
            db = spec.database
        );
        script.push_str(&schema(&spec.prefix, spec.charset));
        script.push_str(&crate::mybb_data::seed(
            &|name| forum.table(name),
            &quote,
            &forum.master_titles,
        ));
        for host in ["localhost", "127.0.0.1"] {
            let _ = write!(
                script,
                "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED VIA mysql_native_password \
                 USING PASSWORD({password});\n\
                 GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'{host}';\n",
                user = forum.user,
                password = quote(&forum.password),
                db = forum.database,
            );
        }
        self.sql("", &script);
        forum
    }

    /// Starts `mariadbd` on the data directory and the current port, and
    /// waits until it answers on its socket; on failure returns the log.
    fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        // A previous run's log would be read as this one's.
        let _ = fs::remove_file(self.log_path());
        let mut command = Command::new(&self.programs.mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(tmpdir_arg(dir))
            .arg(format!("--socket={}", self.socket_path.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                // Debian's packaged configuration: a forum's tables name
                // their character set, but new databases and connections
                // that set none get this one.
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ])
            .args(user_args())
            .args(SIZE_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.mode == SqlMode::NonStrict {
            command.arg("--sql-mode=");
        }
        let child = command.spawn().expect("cannot run mariadbd");
        let child = self.child.insert(child);
        match wait_started(child, DEADLINE, || greets(&self.socket_path)) {
            Started::Ready => Ok(()),
            Started::Exited(status) => {
                self.child = None;
                Err(format!("mariadbd exited ({status}):\n{}", self.log()))
            }
            Started::TimedOut => {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                Err(format!(
                    "mariadbd did not answer within {DEADLINE:?}:\n{}",
                    self.log()
                ))
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("err.log")
    }

    /// The server's error log, for failure messages.
    fn log(&self) -> String {
        fs::read_to_string(self.log_path())
            .unwrap_or_else(|err| format!("(no log at {}: {err})", self.log_path().display()))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A forum's character set: MyBB's installer offers both, and a utf8mb3
/// forum cannot hold 4-byte characters (emoji), which the store must refuse
/// itself since a non-strict server would silently change them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// MySQL's 3-byte `utf8`, which MyBB still calls `utf8`.
    Utf8mb3,
    Utf8mb4,
}

impl Charset {
    /// The character set and collation MyBB's installer gives its tables
    /// (`build_create_table_collation`: `utf8` with `utf8_general_ci`, which
    /// MariaDB 10.11 reads as utf8mb3).
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Charset::Utf8mb3 => ("utf8", "utf8_general_ci"),
            Charset::Utf8mb4 => ("utf8mb4", "utf8mb4_general_ci"),
        }
    }

    /// The name `inc/config.php` gives it (`$config['database']['encoding']`).
    fn config_name(self) -> &'static str {
        self.sql().0
    }
}

/// What forum to create.
#[derive(Clone, Debug)]
pub struct ForumSpec {
    /// The database, created if missing (another forum may share it with
    /// another prefix).
    pub database: String,
    /// The table prefix (`mybb_` by default, as MyBB's installer suggests).
    pub prefix: String,
    pub charset: Charset,
    /// How many master templates (`sid` −2) to create: at least
    /// [`MASTER_TITLES_ALWAYS`]'s, which come first. A real install has 974;
    /// tests want few, or many to measure.
    pub master_templates: usize,
}

impl Default for ForumSpec {
    fn default() -> Self {
        ForumSpec {
            database: "forum".to_owned(),
            prefix: "mybb_".to_owned(),
            charset: Charset::Utf8mb4,
            master_templates: 40,
        }
    }
}

/// A forum created by [`MariaDb::create_forum`], and the database account
/// its `inc/config.php` names.
#[derive(Clone, Debug)]
pub struct Forum {
    pub database: String,
    pub prefix: String,
    /// The forum's own account, `'<database>'@'localhost'` and
    /// `'<database>'@'127.0.0.1'` (socket and TCP), with
    /// `mysql_native_password` and every right on the forum's database
    /// only: the store must work with what a forum's config gives it, not
    /// root.
    pub user: String,
    /// [`FORUM_PASSWORD`]: it needs escaping in a URL and in PHP.
    pub password: String,
    charset: Charset,
    master_titles: Vec<String>,
}

impl Forum {
    /// Writes a forum's root directory the way MyBB's installer leaves one
    /// (see [`mybb_root::write_root`]): its `inc/config.php` names this
    /// forum's database, prefix, account and encoding, with `hostname`
    /// written as given (`localhost`, `127.0.0.1:<port>`, …).
    pub fn write_root(&self, dir: &Path, hostname: &str) {
        crate::mybb_root::write_root(
            dir,
            &ConfigDb {
                kind: "mysqli",
                database: &self.database,
                table_prefix: &self.prefix,
                hostname,
                username: &self.user,
                password: &self.password,
                encoding: Some(self.charset.config_name()),
            },
        );
    }

    /// A `mysql://` URL that reaches this forum's database as its account
    /// over the server's socket (the password percent-encoded):
    /// `mysql://<user>:<password>@localhost/<db>?socket=<path>`.
    pub fn socket_url(&self, db: &MariaDb) -> String {
        format!(
            "mysql://{}:{}@localhost/{}?socket={}",
            percent_encode(&self.user, ""),
            percent_encode(&self.password, ""),
            self.database,
            percent_encode(&db.socket().to_string_lossy(), "/"),
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

/// The six content tables, exactly as `install/resources/mysql_db_tables.php`
/// defines them, with the forum's prefix and the character set the
/// installer appends to each.
fn schema(prefix: &str, charset: Charset) -> String {
    let (charset, collation) = charset.sql();
    let tables = [
        "CREATE TABLE mybb_datacache (
  title varchar(50) NOT NULL default '',
  cache mediumtext NOT NULL,
  PRIMARY KEY (title)
) ENGINE=MyISAM",
        "CREATE TABLE mybb_templategroups (
  gid int unsigned NOT NULL auto_increment,
  prefix varchar(50) NOT NULL default '',
  title varchar(100) NOT NULL default '',
  isdefault tinyint(1) NOT NULL default '0',
  PRIMARY KEY (gid)
) ENGINE=MyISAM",
        "CREATE TABLE mybb_templates (
  tid int unsigned NOT NULL auto_increment,
  title varchar(120) NOT NULL default '',
  template text NOT NULL,
  sid smallint NOT NULL default '0',
  version varchar(20) NOT NULL default '0',
  status varchar(10) NOT NULL default '',
  dateline int unsigned NOT NULL default '0',
  KEY sid (sid, title),
  PRIMARY KEY (tid)
) ENGINE=MyISAM",
        "CREATE TABLE mybb_templatesets (
  sid smallint unsigned NOT NULL auto_increment,
  title varchar(120) NOT NULL default '',
  PRIMARY KEY (sid)
) ENGINE=MyISAM",
        "CREATE TABLE mybb_themes (
  tid smallint unsigned NOT NULL auto_increment,
  name varchar(100) NOT NULL default '',
  pid smallint unsigned NOT NULL default '0',
  def tinyint(1) NOT NULL default '0',
  properties text NOT NULL,
  stylesheets text NOT NULL,
  allowedgroups text NOT NULL,
  PRIMARY KEY (tid)
) ENGINE=MyISAM",
        "CREATE TABLE mybb_themestylesheets (
	sid int unsigned NOT NULL auto_increment,
	name varchar(30) NOT NULL default '',
	tid smallint unsigned NOT NULL default '0',
	attachedto text NOT NULL,
	stylesheet longtext NOT NULL,
	cachefile varchar(100) NOT NULL default '',
	lastmodified int unsigned NOT NULL default '0',
	KEY tid (tid),
	PRIMARY KEY (sid)
) ENGINE=MyISAM",
    ];
    let mut sql = String::new();
    for table in tables {
        let table = table.replacen("CREATE TABLE mybb_", &format!("CREATE TABLE {prefix}"), 1);
        let name = table["CREATE TABLE ".len()..]
            .split(' ')
            .next()
            .unwrap_or_default();
        let _ = writeln!(
            sql,
            "DROP TABLE IF EXISTS {name};\n{table} CHARACTER SET {charset} COLLATE {collation};"
        );
    }
    sql
}
/// The options sizing a server for tests: InnoDB (which MyBB's tables do
/// not use) as small as it goes, so that a data directory is ~20 MB and
/// created in half a second instead of ~110 MB and two.
const SIZE_ARGS: &[&str] = &["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M"];

/// The server's own temporary directory (`<dir>/tmp`). The default, the
/// system's, is shared, and a starting `mariadbd` (even the bootstrap run
/// by `mariadb-install-db`) deletes every `#sql*` file in it: a parallel
/// test's temporary tables vanish under it ("Could not remove temporary
/// table … error: 2", and the install fails).
fn tmpdir_arg(dir: &Path) -> String {
    format!("--tmpdir={}", dir.join("tmp").display())
}

/// `--user=root` when running as root: mariadbd refuses to run as root
/// without it, and warns with it when not root.
fn user_args() -> &'static [&'static str] {
    if geteuid().is_root() {
        &["--user=root"]
    } else {
        &[]
    }
}

fn find_programs() -> Result<Programs, String> {
    let find = |name: &str| {
        find_program(name).ok_or_else(|| {
            format!("{name} is not installed (apt-get install mariadb-server mariadb-client)")
        })
    };
    Ok(Programs {
        mariadbd: find("mariadbd")?,
        install_db: find("mariadb-install-db")?,
        client: find("mariadb")?,
    })
}

/// Whether a failed start's log says that the port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Do you already have another")
}

/// Whether a server answers on `socket` with its greeting (protocol 10):
/// it does only once it accepts connections. Cheaper than running
/// `mariadb-admin ping` in a loop.
fn greets(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}

/// A MariaDB string literal holding `s` exactly (default SQL mode:
/// backslash escapes).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
