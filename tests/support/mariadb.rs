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
//! This file is included by path from more than one crate (the daemon's
//! unit tests and the black-box tests), so it uses only std and crates the
//! daemon depends on, never `crate::`. It blocks: it is test code, and
//! blocking keeps it usable from any test, async or not.

use std::{
    env,
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::TcpListener,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, geteuid},
};
use tempfile::TempDir;

/// How long the server may take to start or stop: generous, because tests
/// run in parallel on loaded machines; waits poll, so a fast server is not
/// slowed down by it.
const DEADLINE: Duration = Duration::from_secs(30);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(10);

/// How many free ports a start tries: another process may take the port
/// between our probe and the server's bind.
const PORT_ATTEMPTS: usize = 5;

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
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
        // The server may already have exited; waiting below tells.
        let _ = kill(pid, Signal::SIGTERM);
        let end = Instant::now() + DEADLINE;
        loop {
            if child
                .try_wait()
                .expect("cannot wait for mariadbd")
                .is_some()
            {
                return;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mariadbd did not stop within {DEADLINE:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            thread::sleep(POLL);
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
        script.push_str(&seed(&forum));
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
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("cannot wait for mariadbd") {
                self.child = None;
                return Err(format!("mariadbd exited ({status}):\n{}", self.log()));
            }
            if greets(&self.socket_path) {
                return Ok(());
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(format!(
                    "mariadbd did not answer within {DEADLINE:?}:\n{}",
                    self.log()
                ));
            }
            thread::sleep(POLL);
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

/// The password of every forum's account: `@`, `:`, `/` and `%` must be
/// percent-encoded in a URL, and `'` backslash-escaped in `config.php`.
pub const FORUM_PASSWORD: &str = "p@ss:w/rd%1'";

impl Forum {
    /// Writes a forum's root directory the way MyBB's installer leaves one,
    /// as far as the store reads it: `inc/config.php` in the installer's
    /// format (`install/index.php`, `$configdata`, then the admin step's
    /// `secret_pin`) naming this forum's database, prefix, account and
    /// encoding, with `hostname` written as given (`localhost`,
    /// `127.0.0.1:<port>`, …); `inc/class_core.php` with MyBB 1.8.37's
    /// version; and an empty `cache/themes/` for the stylesheet files.
    pub fn write_root(&self, dir: &Path, hostname: &str) {
        fs::create_dir_all(dir.join("inc")).expect("cannot create inc/");
        fs::create_dir_all(dir.join("cache/themes")).expect("cannot create cache/themes/");
        fs::write(dir.join("inc/config.php"), self.config_php(hostname))
            .expect("cannot write inc/config.php");
        fs::write(dir.join("inc/class_core.php"), CLASS_CORE_PHP)
            .expect("cannot write inc/class_core.php");
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

    fn config_php(&self, hostname: &str) -> String {
        let value = |v: &str| php_quote(v);
        format!(
            "{CONFIG_HEAD}\
             $config['database']['type'] = 'mysqli';\n\
             $config['database']['database'] = {database};\n\
             $config['database']['table_prefix'] = {prefix};\n\
             \n\
             $config['database']['hostname'] = {hostname};\n\
             $config['database']['username'] = {username};\n\
             $config['database']['password'] = {password};\n\
             {CONFIG_MIDDLE}\
             $config['database']['encoding'] = {encoding};\n\
             {CONFIG_TAIL}",
            database = value(&self.database),
            prefix = value(&self.prefix),
            hostname = value(hostname),
            username = value(&self.user),
            password = value(&self.password),
            encoding = value(self.charset.config_name()),
        )
    }
}

/// Titles every forum's master templates include, whatever their number:
/// the page frame (`header`, `index`, `footer`, `headerinclude`), titles in
/// several template groups, `nav` (content starting with a newline),
/// `htmldoctype` (a real ungrouped title) and `zzcustom_widget` (a prefix
/// no template group has, holding a quote and backslashes).
pub const MASTER_TITLES_ALWAYS: &[&str] = &[
    "header",
    "index",
    "footer",
    "headerinclude",
    "zzcustom_widget",
    "header_welcomeblock_guest",
    "header_welcomeblock_member",
    "index_boardstats",
    "postbit_author_user",
    "nav",
    "htmldoctype",
];

/// The fixed past time every seeded row carries (2023-11-14), so that a
/// test can tell a row the store wrote.
pub const SEED_TIME: u64 = 1_700_000_000;

/// Master templates: [`MASTER_TITLES_ALWAYS`] first, then more real MyBB
/// titles; content small, plausible and already `rtrim`med, as MyBB stores
/// it.
const MASTER_TEMPLATES: &[(&str, &str)] = &[
    (
        "header",
        "<div id=\"container\">\n\t<a name=\"top\" id=\"top\"></a>\n\t<div id=\"header\">\n\t\t<div id=\"logo\">\n\t\t\t<a href=\"{$mybb->settings['bburl']}/index.php\"><img src=\"{$theme['logo']}\" alt=\"{$mybb->settings['bbname']}\" /></a>\n\t\t</div>\n\t\t{$welcomeblock}\n\t</div>\n\t<div id=\"content\">\n\t\t<div class=\"wrapper\">\n\t\t\t{$pm_notice}\n\t\t\t<navigation>",
    ),
    (
        "index",
        "<html>\n<head>\n<title>{$mybb->settings['bbname']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$forums}\n{$boardstats}\n{$footer}\n</body>\n</html>",
    ),
    (
        "footer",
        "\t\t</div>\n\t</div>\n\t<div id=\"footer\">\n\t\t<span id=\"copyright\">{$lang->powered_by} <a href=\"https://mybb.com\">MyBB</a> — © 2002-{$copy_year} MyBB Group</span>\n\t</div>\n</div>",
    ),
    (
        "headerinclude",
        "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"{$lang->latest_threads} (RSS 2.0)\" href=\"{$mybb->settings['bburl']}/syndication.php\" />\n<script type=\"text/javascript\" src=\"{$mybb->asset_url}/jscripts/jquery.js?ver=1823\"></script>\n<script type=\"text/javascript\">\n<!--\n\tvar my_post_key = \"{$mybb->post_code}\";\n// -->\n</script>\n{$stylesheets}",
    ),
    (
        "zzcustom_widget",
        "<div class=\"zz_widget\" title='{$lang->welcome_back}'>C:\\forum\\new \\\\ {$mybb->user['username']}</div>",
    ),
    (
        "header_welcomeblock_guest",
        "<span class=\"welcome\">{$lang->welcome_guest} <a href=\"{$mybb->settings['bburl']}/member.php?action=login\">{$lang->welcome_login}</a> &mdash; <a href=\"{$mybb->settings['bburl']}/member.php?action=register\">{$lang->welcome_register}</a></span>",
    ),
    (
        "header_welcomeblock_member",
        "<span class=\"welcome\">{$lang->welcome_back} <a href=\"{$mybb->settings['bburl']}/usercp.php\">{$lang->welcome_usercp}</a></span>",
    ),
    (
        "index_boardstats",
        "<table border=\"0\" cellspacing=\"{$theme['borderwidth']}\" cellpadding=\"{$theme['tablespace']}\" class=\"tborder\">\n<tr>\n<td class=\"thead\"><strong>{$lang->boardstats}</strong></td>\n</tr>\n{$whosonline}\n{$forumstats}\n</table>",
    ),
    (
        "postbit_author_user",
        "{$lang->postbit_posts} {$post['postnum']}<br />\n{$lang->postbit_threads} {$post['threadnum']}<br />\n{$lang->postbit_joined} {$post['userregdate']}",
    ),
    (
        "nav",
        "\n<div class=\"navigation\">\n{$nav}{$activesep}{$activebit}\n</div>",
    ),
    ("htmldoctype", "<!DOCTYPE html>"),
    (
        "index_stats",
        "<tr>\n<td class=\"trow1\"><span class=\"smalltext\">{$lang->stats_posts_threads}<br />{$lang->stats_numusers}</span></td>\n</tr>",
    ),
    (
        "index_whosonline",
        "<tr>\n<td class=\"tcat\"><span class=\"smalltext\"><strong>{$lang->whos_online}</strong> [<a href=\"online.php\">{$lang->complete_list}</a>]</span></td>\n</tr>\n<tr>\n<td class=\"trow1\"><span class=\"smalltext\">{$lang->online_note}<br />{$onlinemembers}</span></td>\n</tr>",
    ),
    (
        "postbit",
        "<a name=\"pid{$post['pid']}\" id=\"pid{$post['pid']}\"></a>\n<div class=\"post {$unapproved_shade}\" id=\"post_{$post['pid']}\">\n<div class=\"post_author\">{$post['useravatar']}{$post['profilelink']}</div>\n<div class=\"post_body\" id=\"pid_{$post['pid']}\">{$post['message']}</div>\n</div>",
    ),
    (
        "postbit_avatar",
        "<div class=\"author_avatar\"><a href=\"{$post['profilelink_plain']}\"><img src=\"{$useravatar['image']}\" alt=\"\" {$useravatar['width_height']} /></a></div>",
    ),
    (
        "postbit_signature",
        "<div class=\"signature scaleimages\">\n{$post['signature']}\n</div>",
    ),
    (
        "forumbit_depth1_cat",
        "<table border=\"0\" cellspacing=\"{$theme['borderwidth']}\" cellpadding=\"{$theme['tablespace']}\" class=\"tborder\">\n<thead>\n<tr>\n<td class=\"thead\" colspan=\"5\"><strong><a href=\"{$forum_url}\">{$forum['name']}</a></strong></td>\n</tr>\n</thead>\n<tbody>\n{$sub_forums}\n</tbody>\n</table>\n<br />",
    ),
    (
        "forumbit_depth2_forum",
        "<tr>\n<td class=\"{$bgcolor}\"><strong><a href=\"{$forum_url}\">{$forum['name']}</a></strong><div class=\"smalltext\">{$forum['description']}</div></td>\n<td class=\"{$bgcolor}\" align=\"center\">{$threads}</td>\n</tr>",
    ),
    (
        "forumdisplay",
        "<html>\n<head>\n<title>{$mybb->settings['bbname']} - {$foruminfo['name']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$threadslist}\n{$footer}\n</body>\n</html>",
    ),
    (
        "forumdisplay_thread",
        "<tr class=\"inline_row\">\n\t<td class=\"{$bgcolor}{$thread_type_class}\"><span class=\"{$new_class}\">{$thread['threadprefix']}{$thread['subject']}</span></td>\n</tr>",
    ),
    (
        "showthread",
        "<html>\n<head>\n<title>{$thread['subject']}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<div id=\"posts\">\n{$posts}\n</div>\n{$footer}\n</body>\n</html>",
    ),
    (
        "showthread_newreply",
        "<a href=\"newreply.php?tid={$tid}\" class=\"button new_reply_button\"><span>{$lang->new_reply}</span></a>&nbsp;",
    ),
    (
        "usercp",
        "<html>\n<head>\n<title>{$lang->user_cp}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n{$usercpnav}\n{$latest_subscribed}\n{$footer}\n</body>\n</html>",
    ),
    (
        "usercp_nav_messenger_folder",
        "<div><a href=\"private.php?fid={$folder_id}\" class=\"usercp_nav_item {$class}\">{$folder_name}</a></div>",
    ),
    (
        "member_profile",
        "<html>\n<head>\n<title>{$lang->profile}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<fieldset><span class=\"largetext\"><strong>{$formattedname}</strong></span></fieldset>\n{$footer}\n</body>\n</html>",
    ),
    (
        "memberlist_user",
        "<tr>\n<td class=\"{$alt_bg}\">{$user['avatar']}{$user['profilelink']}</td>\n<td class=\"{$alt_bg}\" align=\"center\">{$user['regdate']}</td>\n</tr>",
    ),
    (
        "calendar_select",
        "<option value=\"{$calendar_option['cid']}\"{$selected}>{$calendar_option['name']}</option>",
    ),
    (
        "modcp_nav_modqueue",
        "<tr><td class=\"trow1 smalltext\"><a href=\"modcp.php?action=modqueue\" class=\"modcp_nav_item modcp_nav_modqueue\">{$lang->mcp_nav_modqueue}</a></td></tr>",
    ),
    (
        "private_move",
        "<input type=\"hidden\" value=\"{$from_fid}\" name=\"fromfid\" />\n<select name=\"fid\">\n{$folderoplist_folder}\n</select>",
    ),
    (
        "portal_announcement_icon",
        "<img src=\"{$icon['path']}\" alt=\"{$icon['name']}\" title=\"{$icon['name']}\" />",
    ),
    (
        "search_orderarrow",
        "<span class=\"smalltext\">[<a href=\"{$sorturl}&amp;sortby={$sortby}&amp;order={$oppsortnext}\">{$oppsort}</a>]</span>",
    ),
    (
        "misc_helpresults_noresults",
        "<tr>\n\t<td class=\"trow1\">{$lang->no_help_results}</td>\n</tr>",
    ),
    (
        "error",
        "<html>\n<head>\n<title>{$title}</title>\n{$headerinclude}\n</head>\n<body>\n{$header}\n<div class=\"error\">{$error}</div>\n{$footer}\n</body>\n</html>",
    ),
    (
        "global_pm_alert",
        "<div class=\"pm_alert\" id=\"pm_notice\">\n\t<div>{$privatemessage_text}</div>\n</div>",
    ),
    (
        "multipage_start",
        "<a href=\"{$page_url}\" class=\"pagination_first\">1</a> {$lang->multipage_link_start}",
    ),
    (
        "footer_contactus",
        "<li><a href=\"{$mybb->settings['contactlink']}\">{$lang->bottomlinks_contactus}</a></li>",
    ),
    (
        "forumjump_bit",
        "<option value=\"{$forum['fid']}\" {$optionselected}>{$depth} {$forum['name']}</option>",
    ),
    (
        "video_youtube_embed",
        "<iframe width=\"560\" height=\"315\" src=\"//www.youtube-nocookie.com/embed/{$id}\" frameborder=\"0\" allowfullscreen></iframe>",
    ),
    (
        "redirect",
        "<html>\n<head>\n<title>{$title}</title>\n<meta http-equiv=\"refresh\" content=\"2;URL={$url}\" />\n{$headerinclude}\n</head>\n<body>\n<div class=\"trow1\">{$message}</div>\n</body>\n</html>",
    ),
    (
        "stats_topforum",
        "<a href=\"{$forum['link']}\">{$forum['name']}</a>",
    ),
    (
        "xmlhttp_buddyselect_online",
        "<li class=\"online\"><label><input type=\"checkbox\" class=\"checkbox\" value=\"{$buddy['username']}\" /> {$buddy['avatar']} {$buddy['username']}</label></li>",
    ),
    (
        "mycode_code",
        "<div class=\"codeblock\"><div class=\"title\">{$lang->code}</div><div class=\"body\" dir=\"ltr\"><code>{$code}</code></div></div>",
    ),
    (
        "reputation_vote",
        "<tr>\n\t<td class=\"trow1 {$status_class}\">{$vote['username']} <span class=\"smalltext\">{$vote['comments']}</span></td>\n</tr>",
    ),
    (
        "warnings_warn_pm",
        "<tr>\n\t<td class=\"trow1\" colspan=\"2\"><input type=\"checkbox\" name=\"send_pm\" value=\"1\" /> {$lang->send_pm}</td>\n</tr>",
    ),
];

/// MyBB's template groups, as its installer inserts them
/// (`install/resources/mysql_db_inserts.php`): prefix and the language key
/// of the title, in `gid` order.
const TEMPLATE_GROUPS: &[(&str, &str)] = &[
    ("calendar", "group_calendar"),
    ("editpost", "group_editpost"),
    ("forumbit", "group_forumbit"),
    ("forumjump", "group_forumjump"),
    ("forumdisplay", "group_forumdisplay"),
    ("index", "group_index"),
    ("error", "group_error"),
    ("memberlist", "group_memberlist"),
    ("multipage", "group_multipage"),
    ("private", "group_private"),
    ("portal", "group_portal"),
    ("postbit", "group_postbit"),
    ("posticons", "group_posticons"),
    ("showthread", "group_showthread"),
    ("usercp", "group_usercp"),
    ("online", "group_online"),
    ("moderation", "group_moderation"),
    ("nav", "group_nav"),
    ("search", "group_search"),
    ("showteam", "group_showteam"),
    ("reputation", "group_reputation"),
    ("newthread", "group_newthread"),
    ("newreply", "group_newreply"),
    ("member", "group_member"),
    ("warnings", "group_warning"),
    ("global", "group_global"),
    ("header", "group_header"),
    ("managegroup", "group_managegroup"),
    ("misc", "group_misc"),
    ("modcp", "group_modcp"),
    ("announcement", "group_announcement"),
    ("polls", "group_polls"),
    ("post", "group_post"),
    ("printthread", "group_printthread"),
    ("report", "group_report"),
    ("smilieinsert", "group_smilieinsert"),
    ("stats", "group_stats"),
    ("xmlhttp", "group_xmlhttp"),
    ("footer", "group_footer"),
    ("video", "group_video"),
    ("sendthread", "group_sendthread"),
    ("mycode", "group_mycode"),
];

/// A seeded stylesheet: `(name, owning theme, attachedto, css)`, in `sid`
/// order. Theme 1 (the master style) owns three of MyBB's sheets, which
/// every theme inherits; theme 2 (Default) owns a colour sheet, which
/// theme 3 (Child) inherits.
const STYLESHEETS: &[(&str, u32, &str, &str)] = &[
    (
        "global.css",
        1,
        "",
        "body {\n\tbackground: #fff;\n\tcolor: #333;\n\tfont-family: Tahoma, Verdana, Arial, Sans-Serif;\n\tfont-size: 13px;\n}\n\na:link {\n\tcolor: #0072BC;\n\ttext-decoration: none;\n}\n\n.thead {\n\tbackground: #0066a2 url(images/thead.png) top left repeat-x;\n\tcolor: #ffffff;\n}",
    ),
    (
        "usercp.css",
        1,
        "usercp.php|private.php",
        ".usercp_nav_item {\n\tdisplay: block;\n\tpadding: 1px 0 1px 23px;\n\tbackground-image: url(images/usercp_sprite.png);\n}",
    ),
    (
        "css3.css",
        1,
        "",
        "tr td.trow1:first-child,\ntr td.trow2:first-child {\n\tborder-left: 0;\n}\n\n.tborder {\n\t-moz-border-radius: 7px;\n\tborder-radius: 7px;\n}",
    ),
    (
        "color_black.css",
        2,
        "black",
        "a:link,\na:visited,\na:hover,\na:active {\n\tcolor: #202020;\n}\n\n#logo {\n\tbackground: #202020 url(../../../images/colors/black_header.png) top left repeat-x;\n}",
    ),
];

/// The themes: `(tid, name, pid, def)`.
const THEMES: &[(u32, &str, u32, bool)] = &[
    (1, "MyBB Master Style", 0, false),
    (2, "Default", 1, true),
    (3, "Child", 2, false),
];

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

/// The rows of a fresh install, small: see [`ForumSpec`] and the constants
/// above.
fn seed(forum: &Forum) -> String {
    let t = |name: &str| forum.table(name);
    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "INSERT INTO {} (sid, title) VALUES (1, 'Default Templates');",
        t("templatesets")
    );
    for (gid, (prefix, lang)) in TEMPLATE_GROUPS.iter().enumerate() {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (gid, prefix, title, isdefault) VALUES ('{}', '{prefix}', '<lang:{lang}>', '1');",
            t("templategroups"),
            gid + 1
        );
    }
    for title in &forum.master_titles {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (title, template, sid, version, status, dateline) VALUES ({}, {}, -2, '1837', '', {SEED_TIME});",
            t("templates"),
            quote(title),
            quote(&master_content(title)),
        );
    }
    for (name, tid, attachedto, css) in STYLESHEETS {
        let _ = writeln!(
            sql,
            "INSERT INTO {} (name, tid, attachedto, stylesheet, cachefile, lastmodified) VALUES ({}, {tid}, {}, {}, {}, {SEED_TIME});",
            t("themestylesheets"),
            quote(name),
            quote(attachedto),
            quote(css),
            quote(name),
        );
    }
    let themes = themes();
    for (tid, name, pid, def) in THEMES {
        let (properties, stylesheets) = &themes[*tid as usize - 1];
        let _ = writeln!(
            sql,
            "INSERT INTO {} (tid, name, pid, def, properties, stylesheets, allowedgroups) VALUES ({tid}, {}, {pid}, {}, {}, {}, 'all');",
            t("themes"),
            quote(name),
            u8::from(*def),
            quote(properties),
            quote(stylesheets),
        );
    }
    // `update_default_theme` (inc/class_datacache.php): the default theme's
    // row as the driver fetched it (every column a string), serialized.
    let (properties, stylesheets) = &themes[1];
    let default_theme = Php::map([
        ("name", Php::str("Default")),
        ("tid", Php::str("2")),
        ("properties", Php::str(properties)),
        ("stylesheets", Php::str(stylesheets)),
    ]);
    let _ = writeln!(
        sql,
        "INSERT INTO {} (title, cache) VALUES ('default_theme', {});",
        t("datacache"),
        quote(&default_theme.serialize())
    );
    sql
}

/// The first `count` master titles: [`MASTER_TITLES_ALWAYS`], the other
/// titles of [`MASTER_TEMPLATES`], then made-up titles spread over the
/// template groups.
fn master_titles(count: usize) -> Vec<String> {
    assert!(
        count >= MASTER_TITLES_ALWAYS.len(),
        "a forum has at least {} master templates (MASTER_TITLES_ALWAYS)",
        MASTER_TITLES_ALWAYS.len()
    );
    MASTER_TEMPLATES
        .iter()
        .map(|(title, _)| (*title).to_owned())
        .chain((0..).map(|n| {
            let (prefix, _) = TEMPLATE_GROUPS[n % TEMPLATE_GROUPS.len()];
            format!("{prefix}_extra_{n}")
        }))
        .take(count)
        .collect()
}

/// A master template's content: [`MASTER_TEMPLATES`]'s, or for a made-up
/// title a line naming it.
fn master_content(title: &str) -> String {
    match MASTER_TEMPLATES.iter().find(|(t, _)| *t == title) {
        Some((_, content)) => (*content).to_owned(),
        None => {
            format!("<div class=\"{title}\">{{$lang->{title}}} {{$mybb->user['username']}}</div>")
        }
    }
}

/// Each theme's `properties` and `stylesheets` columns (serialized), by
/// `tid` − 1, as MyBB leaves them:
///
/// - theme 1: `import_theme_xml` of `mybb_theme.xml` (its properties,
///   strings but `templateset`, the master set −2 its templates went to),
///   then `update_theme_stylesheet_list` (`disporder` in sheet order,
///   integers);
/// - theme 2: `build_new_theme("Default", null, 1)` (the parent's
///   properties, each marked `inherited` from 1) and the installer's
///   changes (`templateset` its new set's id, an integer, no longer
///   inherited; `colors`; the colour sheet appended to `disporder`);
/// - theme 3: `build_new_theme("Child", null, 2)` (the parent's properties,
///   `inherited` from where the parent has them);
///
/// and every `stylesheets` column as `update_theme_stylesheet_list` builds
/// it when no cached file exists (the forum root's `cache/themes/` is
/// empty): every URL `css.php?stylesheet={sid}`.
fn themes() -> Vec<(String, String)> {
    let base = [
        // The XML says "1", but the import of its templates as the master
        // set (`templateset` -2) sets it to that set's id.
        ("templateset", Php::Int(-2)),
        ("imgdir", Php::str("images")),
        ("logo", Php::str("images/logo.png")),
        ("tablespace", Php::str("5")),
        ("borderwidth", Php::str("0")),
        ("editortheme", Php::str("mybb.css")),
    ];
    // Each theme's sheets in `sid` order (theme 1's, then the colour sheet
    // the installer appends), numbered from 1.
    let disporder = |tid: u32| {
        let mut sheets = visible_sheets(tid);
        sheets.sort_by_key(|sheet| sheet.3);
        Php::Array(
            sheets
                .iter()
                .enumerate()
                .map(|(i, sheet)| (Php::str(sheet.0), Php::Int(i as i64 + 1)))
                .collect(),
        )
    };
    // Theme 1.
    let mut one = Php::map(base.clone());
    one.set("disporder", disporder(1));
    // Theme 2: the parent's properties, `inherited` inserted after the
    // first one.
    let mut two = Php::map([]);
    for (i, (key, value)) in base.iter().enumerate() {
        two.set(key, value.clone());
        if i == 0 {
            two.set("inherited", Php::map([]));
        }
        if *key != "templateset" {
            two.get_mut("inherited").set(key, Php::Int(1));
        }
    }
    two.set("templateset", Php::Int(1));
    two.get_mut("inherited").set("disporder", Php::Int(1));
    two.set("disporder", disporder(2));
    two.set("colors", Php::map([("black", Php::str("Black"))]));
    // Theme 3.
    let mut three = Php::map([]);
    let Php::Array(parent) = &two else {
        unreachable!()
    };
    for (i, (key, value)) in parent
        .iter()
        .filter(|(k, _)| *k != Php::str("inherited"))
        .enumerate()
    {
        let Php::Str(key) = key else { unreachable!() };
        three.set(key, value.clone());
        if i == 0 {
            three.set("inherited", Php::map([]));
        }
        let from = two
            .get("inherited")
            .and_then(|inherited| inherited.get(key))
            .cloned()
            .unwrap_or(Php::Int(2));
        three.get_mut("inherited").set(key, from);
    }
    three.set("disporder", disporder(3));
    [one, two, three]
        .iter()
        .zip(1..)
        .map(|(properties, tid)| (properties.serialize(), stylesheet_list(tid).serialize()))
        .collect()
}

/// The ids of a theme and its ancestors, the theme first
/// (`make_parent_theme_list`).
fn theme_chain(tid: u32) -> Vec<u32> {
    let mut chain = vec![tid];
    let mut at = tid;
    while let Some((_, _, pid, _)) = THEMES.iter().find(|t| t.0 == at && t.2 != 0) {
        chain.push(*pid);
        at = *pid;
    }
    chain
}

/// The sheets a theme shows, as `update_theme_stylesheet_list` reads them:
/// the chain's rows by `tid` descending (then `sid`), the first of each
/// name winning; with `sid` (1-based).
fn visible_sheets(tid: u32) -> Vec<(&'static str, u32, &'static str, u32)> {
    let chain = theme_chain(tid);
    let mut rows: Vec<_> = STYLESHEETS
        .iter()
        .enumerate()
        .filter(|(_, sheet)| chain.contains(&sheet.1))
        .map(|(i, (name, owner, attachedto, _))| (*name, *owner, *attachedto, i as u32 + 1))
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    let mut seen = Vec::new();
    rows.retain(|row| {
        let new = !seen.contains(&row.0);
        seen.push(row.0);
        new
    });
    rows
}

/// A theme's `stylesheets` column (`update_theme_stylesheet_list`):
/// `[file][action][] = url`, and for inherited sheets
/// `['inherited']["{file}_{action}"][url] = owner tid` (a string, as the
/// driver fetched it).
fn stylesheet_list(tid: u32) -> Php {
    let mut list = Php::map([]);
    for (_, owner, attachedto, sid) in visible_sheets(tid) {
        let url = format!("css.php?stylesheet={sid}");
        let attachedto = if attachedto.is_empty() {
            "global"
        } else {
            attachedto
        };
        for attached in attachedto.split('|') {
            let (file, actions) = match attached.split_once('?') {
                Some((file, actions)) => (file, actions.split(',').collect::<Vec<_>>()),
                None => (attached, vec!["global"]),
            };
            for action in actions {
                list.get_or_insert(file)
                    .get_or_insert(action)
                    .push(Php::str(&url));
                if owner != tid {
                    list.get_or_insert("inherited")
                        .get_or_insert(&format!("{file}_{action}"))
                        .set(&url, Php::Str(owner.to_string()));
                }
            }
        }
    }
    list
}

/// A PHP value, for building what MyBB stores serialized
/// (`my_serialize`, which writes what PHP's `serialize` does for these).
#[derive(Clone, Debug, PartialEq)]
enum Php {
    Int(i64),
    Str(String),
    /// An ordered array, as PHP's.
    Array(Vec<(Php, Php)>),
}

impl Php {
    fn str(s: &str) -> Php {
        Php::Str(s.to_owned())
    }

    fn map<const N: usize>(entries: [(&str, Php); N]) -> Php {
        Php::Array(entries.into_iter().map(|(k, v)| (Php::str(k), v)).collect())
    }

    fn entries(&mut self) -> &mut Vec<(Php, Php)> {
        match self {
            Php::Array(entries) => entries,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<&Php> {
        match self {
            Php::Array(entries) => entries
                .iter()
                .find(|(k, _)| *k == Php::str(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> &mut Php {
        self.entries()
            .iter_mut()
            .find(|(k, _)| *k == Php::str(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key:?}"))
    }

    /// `$a[key]`, created as an empty array if missing.
    fn get_or_insert(&mut self, key: &str) -> &mut Php {
        if self.get(key).is_none() {
            self.entries().push((Php::str(key), Php::map([])));
        }
        self.get_mut(key)
    }

    /// `$a[key] = value`: in place if the key exists, else at the end.
    fn set(&mut self, key: &str, value: Php) {
        match self.entries().iter_mut().find(|(k, _)| *k == Php::str(key)) {
            Some((_, v)) => *v = value,
            None => self.entries().push((Php::str(key), value)),
        }
    }

    /// `$a[] = value`.
    fn push(&mut self, value: Php) {
        let next = self
            .entries()
            .iter()
            .filter_map(|(k, _)| match k {
                Php::Int(i) => Some(i + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        self.entries().push((Php::Int(next), value));
    }

    fn serialize(&self) -> String {
        match self {
            Php::Int(i) => format!("i:{i};"),
            Php::Str(s) => format!("s:{}:\"{s}\";", s.len()),
            Php::Array(entries) => {
                let mut out = format!("a:{}:{{", entries.len());
                for (k, v) in entries {
                    out.push_str(&k.serialize());
                    out.push_str(&v.serialize());
                }
                out.push('}');
                out
            }
        }
    }
}

/// `inc/config.php` up to the database settings, as MyBB's installer
/// writes it.
const CONFIG_HEAD: &str = "<?php
/**
 * Database configuration
 *
 * Please see the MyBB Docs for advanced
 * database configuration for larger installations
 * https://docs.mybb.com/
 */

";

/// `inc/config.php` between the database settings and the encoding.
const CONFIG_MIDDLE: &str = "
/**
 * Admin CP directory
 *  For security reasons, it is recommended you
 *  rename your Admin CP directory. You then need
 *  to adjust the value below to point to the
 *  new directory.
 */

$config['admin_dir'] = 'admin';

/**
 * Hide all Admin CP links
 *  If you wish to hide all Admin CP links
 *  on the front end of the board after
 *  renaming your Admin CP directory, set this
 *  to 1.
 */

$config['hide_admin_links'] = 0;

/**
 * Data-cache configuration
 *  The data cache is a temporary cache
 *  of the most commonly accessed data in MyBB.
 *  By default, the database is used to store this data.
 *
 *  If you wish to use the file system (cache/ directory), MemCache (or MemCached), xcache, APC, APCu, eAccelerator or Redis
 *  you can change the value below to 'files', 'memcache', 'memcached', 'xcache', 'apc', 'apcu', 'eaccelerator' or 'redis' from 'db'.
 */

$config['cache_store'] = 'db';

/**
 * Memcache configuration
 *  If you are using memcache or memcached as your
 *  data-cache, you need to configure the hostname
 *  and port of your memcache server below.
 *
 * If not using memcache, ignore this section.
 */

$config['memcache']['host'] = 'localhost';
$config['memcache']['port'] = 11211;

/**
 * Redis configuration
 *  If you are using Redis as your data-cache
 *  you need to configure the hostname and port
 *  of your redis server below. If you want
 *  to connect via unix sockets, use the full
 *  path to the unix socket as host and leave
 *  the port setting unconfigured or false.
 */

$config['redis']['host'] = 'localhost';
$config['redis']['port'] = 6379;

/**
 * Super Administrators
 *  A comma separated list of user IDs who cannot
 *  be edited, deleted or banned in the Admin CP.
 *  The administrator permissions for these users
 *  cannot be altered either.
 */

$config['super_admins'] = '1';

/**
 * Database Encoding
 *  If you wish to set an encoding for MyBB uncomment
 *  the line below (if it isn't already) and change
 *  the current value to the mysql charset:
 *  http://dev.mysql.com/doc/refman/5.1/en/charset-mysql.html
 */

";

/// `inc/config.php` after the encoding: the installer's log pruning and
/// remote hosts, two blank lines, and the admin step's appended secret PIN
/// (empty), without a final newline.
const CONFIG_TAIL: &str = "
/**
 * Automatic Log Pruning
 *  The MyBB task system can automatically prune
 *  various log files created by MyBB.
 *  To enable this functionality for the logs below, set the
 *  the number of days before each log should be pruned.
 *  If you set the value to 0, the logs will not be pruned.
 */

$config['log_pruning'] = array(
	'admin_logs' => 365, // Administrator logs
	'mod_logs' => 365, // Moderator logs
	'task_logs' => 30, // Scheduled task logs
	'mail_logs' => 180, // Mail error logs
	'user_mail_logs' => 180, // User mail logs
	'promotion_logs' => 180 // Promotion logs
);

/**
 * Disallowed Remote Hosts
 *  List of hosts the fetch_remote_file() function will not
 *  perform requests to.
 *  It is recommended that you enter hosts resolving to the
 *  forum server here to prevent Server Side Request
 *  Forgery attacks.
 */

$config['disallowed_remote_hosts'] = array(
	'localhost',
);

/**
 * Disallowed Remote Addresses
 *  List of IPv4 addresses the fetch_remote_file() function
 *  will not perform requests to.
 *  It is recommended that you enter addresses resolving to
 *  the forum server here to prevent Server Side Request
 *  Forgery attacks.
 *  Removing all values disables resolving hosts in that
 *  function.
 */

$config['disallowed_remote_addresses'] = array(
	'127.0.0.1',
	'10.0.0.0/8',
	'172.16.0.0/12',
	'192.168.0.0/16',
);

/**
 * Admin CP Secret PIN
 *  If you wish to request a PIN
 *  when someone tries to login
 *  on your Admin CP, enter it below.
 */

$config['secret_pin'] = '';";

/// The start of MyBB 1.8.37's `inc/class_core.php`, where its version is.
const CLASS_CORE_PHP: &str = "<?php
/**
 * MyBB 1.8
 * Copyright 2014 MyBB Group, All Rights Reserved
 *
 * Website: http://www.mybb.com
 * License: http://www.mybb.com/about/license
 *
 */

class MyBB {
	/**
	 * The friendly version number of MyBB we're running.
	 *
	 * @var string
	 */
	public $version = \"1.8.37\";

	/**
	 * The version code of MyBB we're running.
	 *
	 * @var integer
	 */
	public $version_code = 1837;
}
";

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

/// Whether MariaDB is required (`OUTPOST_REQUIRE_REAL` set, not empty or
/// `0`).
fn require_real() -> bool {
    env::var_os("OUTPOST_REQUIRE_REAL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// None with a reason on stderr, or a panic if MariaDB is required.
fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        !require_real(),
        "{reason} (and OUTPOST_REQUIRE_REAL is set)"
    );
    eprintln!("skipping: {reason}");
    None
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

/// A program on `PATH`, or in the sbin directories where distributions put
/// `mariadbd` and which a non-root `PATH` often lacks.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A TCP port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind a free port")
        .port()
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

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

/// Runs `command` with `input` on its stdin, written by a thread so that a
/// large input cannot deadlock with a large output.
fn run_with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = thread::spawn(move || {
        // A client that exits early (an error) closes the pipe: its status
        // says why.
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child
        .wait_with_output()
        .expect("cannot wait for the client");
    let _ = writer.join();
    output
}

/// The start of a long SQL script, for failure messages.
fn excerpt(sql: &str) -> String {
    match sql.char_indices().nth(2000) {
        Some((at, _)) => format!("{}…", &sql[..at]),
        None => sql.to_owned(),
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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

/// A PHP single-quoted string holding `s` exactly: `'` and `\` escaped
/// with a backslash. (MyBB's installer escapes only `'`, which reads back
/// the same unless a value holds `\\` or ends with `\`.)
fn php_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `s` percent-encoded for a URL: everything but unreserved characters and
/// those in `keep`.
fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
