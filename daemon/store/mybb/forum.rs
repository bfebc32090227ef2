//! A forum as outpost finds it on disk: its database settings in
//! `inc/config.php`, the `version_code` MyBB writes into every template it
//! saves in `inc/class_core.php`, and how to reach its database — as
//! PHP's mysqli or MyBB's pgsql driver would, or as a `mysql://` or
//! `postgres://` URL given instead.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use sqlx::{mysql::MySqlConnectOptions, postgres::PgConnectOptions};

use super::{
    cache_store::CacheStore,
    database::{Dialect, Options},
    php_config::PhpConfig,
    theme_list::Driver,
};

/// Where mysqli looks for the server's socket when the host is
/// `localhost`: the paths distributions build it with.
const DEFAULT_SOCKETS: [&str; 5] = [
    "/run/mysqld/mysqld.sock",
    "/var/run/mysqld/mysqld.sock",
    "/var/lib/mysql/mysql.sock",
    "/tmp/mysql.sock",
    "/tmp/mysqld.sock",
];

/// MySQL's own port, when the config names none.
const DEFAULT_PORT: u16 = 3306;

/// Where libpq looks for PostgreSQL's socket when the config names no
/// host (as Debian and most distributions build it).
const PG_DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// PostgreSQL's own port, when the config names none.
const PG_DEFAULT_PORT: u16 = 5432;

/// Connection character sets the store reads and writes correctly: the
/// UTF-8 ones (MyBB's installer offers these for new forums).
const ENCODINGS: [&str; 3] = ["utf8", "utf8mb3", "utf8mb4"];

/// A forum's settings, as the store needs them.
pub struct Forum {
    /// The forum's directory.
    pub root: PathBuf,
    /// `version_code` of the MyBB running it (1837 for 1.8.37).
    pub version_code: u32,
    /// The table prefix, checked to be safe to splice into SQL.
    pub prefix: String,
    /// The database's name.
    pub database: String,
    /// The connection's character set: the forum's configured one, so
    /// that text means what it means to MyBB (MySQL; PostgreSQL
    /// connections are always UTF-8, converted by the server).
    pub encoding: String,
    /// Where the server is, for messages (never a password).
    pub server: String,
    /// The database layer MyBB uses, which decides how it writes numbers
    /// into serialized values.
    pub driver: Driver,
    /// Where MyBB keeps its cache (`db`, `files`, `memcache`, …) and
    /// how to reach it.
    pub cache_store: CacheStore,
    /// How to connect (holds the password: never printed).
    pub connect: Options,
}

impl fmt::Debug for Forum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forum")
            .field("root", &self.root)
            .field("version_code", &self.version_code)
            .field("prefix", &self.prefix)
            .field("database", &self.database)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Forum {
    /// Reads the forum at `root`. `database_url` (a `mysql://` or
    /// `postgres://` URL, for the forum's kind of server) replaces the connection settings of its config, not the prefix or
    /// the encoding. Errors name the file and, for the config, the line.
    pub fn open(root: &Path, database_url: Option<&str>) -> Result<Self, String> {
        let config_path = root.join("inc/config.php");
        let text = fs::read_to_string(&config_path)
            .map_err(|err| format!("cannot read {}: {err}", config_path.display()))?;
        let config = PhpConfig::parse(&text)
            .map_err(|err| format!("cannot read {}: {err}", config_path.display()))?;
        let setting = |key: &str| config.string(&["database", key]).unwrap_or_default();
        let kind = setting("type");
        let (driver, dialect) = match kind.as_str() {
            "mysqli" | "mysql" => (Driver::Mysqli, Dialect::Mysql),
            "mysql_pdo" => (Driver::MysqlPdo, Dialect::Mysql),
            "pgsql" => (Driver::Pgsql, Dialect::Postgres),
            "pgsql_pdo" | "sqlite" => {
                return Err(format!(
                    "{}: database type {kind:?} is not one outpost can sync with yet: use MyBB's own {} driver instead",
                    config_path.display(),
                    if kind == "sqlite" {
                        "mysqli or pgsql"
                    } else {
                        "pgsql"
                    }
                ));
            }
            other => {
                return Err(format!(
                    "{}: database type {other:?} is not one outpost can sync with (mysqli, mysql, mysql_pdo, pgsql)",
                    config_path.display()
                ));
            }
        };
        let prefix = setting("table_prefix");
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "{}: table_prefix {prefix:?} must be letters, digits and '_'",
                config_path.display()
            ));
        }
        let encoding = match setting("encoding") {
            // MyBB's installer comments it out for PostgreSQL: the
            // database's encoding is what counts, and sqlx talks UTF-8.
            _ if dialect == Dialect::Postgres => "UTF8".to_owned(),
            none if none.is_empty() => "utf8mb4".to_owned(),
            encoding if ENCODINGS.contains(&encoding.to_lowercase().as_str()) => {
                encoding.to_lowercase()
            }
            other => {
                return Err(format!(
                    "{}: encoding {other:?} is not one outpost syncs with (utf8, utf8mb4)",
                    config_path.display()
                ));
            }
        };
        let version_code = version_code(root)?;
        if !(1800..1900).contains(&version_code) {
            return Err(format!(
                "{}: version_code {version_code} is not MyBB 1.8, whose rules outpost follows",
                root.join("inc/class_core.php").display()
            ));
        }
        // A config split into read and write servers: writes go to the
        // (first) write server, as MyBB's own.
        let server_setting = |key: &str| {
            [
                &["database", "write", key][..],
                &["database", "write", "0", key],
                &["database", key],
            ]
            .iter()
            .find_map(|path| config.string(path))
            .unwrap_or_default()
        };
        let (connect, server) = match database_url {
            Some(url) => from_url(url, dialect)?,
            None => {
                let (hostname, username, password) = (
                    server_setting("hostname"),
                    server_setting("username"),
                    server_setting("password"),
                );
                match dialect {
                    Dialect::Mysql => {
                        let (options, server) = from_config(&hostname, &username, &password);
                        (Options::Mysql(options), server)
                    }
                    Dialect::Postgres => {
                        let (options, server) = from_pg_config(&hostname, &username, &password);
                        (Options::Postgres(options), server)
                    }
                }
            }
        };
        let connect = match connect.database() {
            Some(_) => connect,
            None => connect.with_database(&setting("database")),
        };
        let database = connect.database().unwrap_or_default().to_owned();
        if database.is_empty() {
            return Err(format!(
                "{}: no database name (database) is set",
                config_path.display()
            ));
        }
        Ok(Self {
            root: root.to_owned(),
            version_code,
            prefix,
            database,
            connect: match connect {
                Options::Mysql(options) => Options::Mysql(options.charset(&encoding)),
                postgres => postgres,
            },
            encoding,
            server,
            driver,
            cache_store: CacheStore::from_config(&config),
        })
    }

    /// Whether the connection carries only 3-byte UTF-8: characters
    /// beyond U+FFFF cannot pass it, whatever the column holds.
    pub fn narrow_connection(&self) -> bool {
        matches!(self.connect, Options::Mysql(_)) && self.encoding != "utf8mb4"
    }
}

/// `version_code` from `inc/class_core.php`.
fn version_code(root: &Path) -> Result<u32, String> {
    let path = root.join("inc/class_core.php");
    let text = fs::read_to_string(&path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    text.lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("public $version_code")?;
            let value = rest.trim_start().strip_prefix('=')?.trim();
            value.strip_suffix(';')?.trim().parse().ok()
        })
        .ok_or_else(|| {
            format!(
                "{}: no `public $version_code = N;` line (is this MyBB 1.8?)",
                path.display()
            )
        })
}

/// The connection mysqli makes of the config's `hostname`: split at the
/// first ':' into host and port; `localhost` means the default socket.
fn from_config(hostname: &str, username: &str, password: &str) -> (MySqlConnectOptions, String) {
    let (host, port) = match hostname.split_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(DEFAULT_PORT)),
        None => (hostname, DEFAULT_PORT),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let options = MySqlConnectOptions::new()
        .username(username)
        .password(password);
    // A socket path (`/run/mysqld/mysqld.sock`, `localhost:/run/…`):
    // mysqli itself cannot take one there, but it says what is meant.
    if let Some(socket) = [
        hostname,
        hostname.split_once(':').map_or("", |(_, rest)| rest),
    ]
    .into_iter()
    .find(|part| part.starts_with('/'))
    {
        return (options.socket(socket), format!("localhost via {socket}"));
    }
    if host == "localhost" {
        if let Some(socket) = DEFAULT_SOCKETS.iter().find(|path| Path::new(path).exists()) {
            let server = format!("localhost via {socket}");
            return (options.socket(socket), server);
        }
        let server = format!("127.0.0.1:{DEFAULT_PORT} (no socket at the usual paths)");
        return (options.host("127.0.0.1").port(DEFAULT_PORT), server);
    }
    (options.host(host).port(port), format!("{host}:{port}"))
}

/// The connection MyBB's pgsql driver makes of the config's `hostname`
/// (libpq's rules): split at the first ':' into host and port; no host
/// means libpq's default socket directory, a host starting with '/' is a
/// socket directory, and anything else — `localhost` too — is reached
/// over TCP.
fn from_pg_config(hostname: &str, username: &str, password: &str) -> (PgConnectOptions, String) {
    let (host, port) = match hostname.split_once(':') {
        Some((host, port)) => {
            let port = port.split(':').next().unwrap_or_default();
            (host, port.parse().unwrap_or(PG_DEFAULT_PORT))
        }
        None => (hostname, PG_DEFAULT_PORT),
    };
    // Not `new()`: that reads ~/.pgpass, which MyBB never sees.
    let options = PgConnectOptions::new_without_pgpass()
        .username(username)
        .password(password)
        .port(port);
    let socket_dir = match host {
        "" => Some(PG_DEFAULT_SOCKET_DIR),
        dir if dir.starts_with('/') => Some(dir),
        _ => None,
    };
    match socket_dir {
        Some(dir) => (
            options.socket(dir),
            format!("{dir}/.s.PGSQL.{port} (socket)"),
        ),
        None => (options.host(host), format!("{host}:{port}")),
    }
}

/// The connection a `mysql://` or `postgres://` URL names, which must be
/// the kind of server the forum's config says it uses (the SQL differs).
fn from_url(url: &str, dialect: Dialect) -> Result<(Options, String), String> {
    let usage = match dialect {
        Dialect::Mysql => {
            "a mysql://USER:PASSWORD@HOST[:PORT]/DATABASE URL (?socket=PATH for a Unix socket)"
        }
        Dialect::Postgres => {
            "a postgres://USER:PASSWORD@HOST[:PORT]/DATABASE URL (?host=DIRECTORY for a Unix socket)"
        }
    };
    if url.parse::<Dialect>() != Ok(dialect) {
        return Err(format!(
            "--mybb-database: the forum's config.php names a {} database: expected {usage}",
            match dialect {
                Dialect::Mysql => "MySQL/MariaDB",
                Dialect::Postgres => "PostgreSQL",
            }
        ));
    }
    // sqlx's own message may quote the URL: only say what was wrong.
    let invalid = |_| {
        format!(
            "--mybb-database: not valid as {usage} (percent-encode special characters in the password)"
        )
    };
    Ok(match dialect {
        Dialect::Mysql => {
            let options = MySqlConnectOptions::from_str(url).map_err(invalid)?;
            let server = match options.get_socket() {
                Some(socket) => format!("{} via {}", options.get_host(), socket.display()),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            };
            (Options::Mysql(options), server)
        }
        Dialect::Postgres => {
            let options = PgConnectOptions::from_str(url).map_err(invalid)?;
            let server = match options.get_socket() {
                Some(dir) => format!("{}/.s.PGSQL.{} (socket)", dir.display(), options.get_port()),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            };
            (Options::Postgres(options), server)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forum(config: &str) -> (tempfile::TempDir, Result<Forum, String>) {
        forum_with_version(config, 1837)
    }

    fn forum_with_version(
        config: &str,
        version_code: u32,
    ) -> (tempfile::TempDir, Result<Forum, String>) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("inc")).unwrap();
        fs::write(dir.path().join("inc/config.php"), config).unwrap();
        fs::write(
            dir.path().join("inc/class_core.php"),
            format!("<?php\nclass MyBB {{\n\tpublic $version_code = {version_code};\n}}\n"),
        )
        .unwrap();
        let opened = Forum::open(dir.path(), None);
        (dir, opened)
    }

    const CONFIG: &str = "<?php\n$config['database']['type'] = 'mysqli';\n$config['database']['database'] = 'forum';\n$config['database']['table_prefix'] = 'mybb_';\n$config['database']['hostname'] = 'db.example:3307';\n$config['database']['username'] = 'u';\n$config['database']['password'] = 'p\\'w';\n$config['database']['encoding'] = 'utf8';\n";

    #[test]
    fn a_forum_is_read_from_its_config() {
        let (_dir, forum) = forum(CONFIG);
        let forum = forum.unwrap();
        assert_eq!(forum.version_code, 1837);
        assert_eq!(forum.prefix, "mybb_");
        assert_eq!(forum.database, "forum");
        assert_eq!(forum.server, "db.example:3307");
        let Options::Mysql(connect) = &forum.connect else {
            panic!("a mysqli forum connects to MySQL");
        };
        assert_eq!(connect.get_port(), 3307);
        assert_eq!(connect.get_username(), "u");
        assert!(forum.narrow_connection());
        assert!(!format!("{forum:?}").contains("p'w"));
    }

    #[test]
    fn localhost_means_a_socket_or_the_default_port() {
        let (options, server) = from_config("localhost", "u", "p");
        match options.get_socket() {
            Some(socket) => assert!(DEFAULT_SOCKETS.contains(&socket.to_str().unwrap())),
            None => {
                assert_eq!(
                    (options.get_host(), options.get_port()),
                    ("127.0.0.1", 3306)
                );
                assert!(server.starts_with("127.0.0.1:3306"));
            }
        }
        let (options, _) = from_config("10.0.0.5", "u", "p");
        assert_eq!((options.get_host(), options.get_port()), ("10.0.0.5", 3306));
        for socket in ["/srv/db.sock", "localhost:/srv/db.sock"] {
            let (options, server) = from_config(socket, "u", "p");
            assert_eq!(options.get_socket().unwrap(), Path::new("/srv/db.sock"));
            assert_eq!(server, "localhost via /srv/db.sock");
        }
    }

    #[test]
    fn a_split_config_writes_to_its_write_server() {
        let split = "<?php\n$config['database']['type'] = 'mysqli';\n$config['database']['database'] = 'forum';\n$config['database']['table_prefix'] = 'mybb_';\n$config['database']['read'][0]['hostname'] = 'replica';\n$config['database']['write'][0]['hostname'] = 'primary:3310';\n$config['database']['write'][0]['username'] = 'w';\n$config['database']['write'][0]['password'] = 'pw';\n";
        let (_dir, forum) = forum(split);
        let forum = forum.unwrap();
        assert_eq!(forum.server, "primary:3310");
        let Options::Mysql(connect) = &forum.connect else {
            panic!("a mysqli forum connects to MySQL");
        };
        assert_eq!(connect.get_username(), "w");
        let (_dir, old) = forum_with_version(CONFIG, 1604);
        assert!(old.unwrap_err().contains("not MyBB 1.8"));
    }

    #[test]
    fn bad_configs_are_named() {
        let (_dir, opened) = forum(&CONFIG.replace("'mybb_'", "'my-bb'"));
        assert!(opened.unwrap_err().contains("table_prefix"));
        let (_dir, opened) = forum(&CONFIG.replace("mysqli", "pgsql_pdo"));
        assert!(opened.unwrap_err().contains("\"pgsql_pdo\""));
        let (_dir, opened) = forum(&CONFIG.replace("'utf8'", "'latin1'"));
        assert!(opened.unwrap_err().contains("latin1"));
        let (_dir, opened) = forum("<?php\n$config['database']['type'] = SOME_CONSTANT;\n");
        assert!(opened.unwrap_err().contains("line 2"), "names the line");
    }

    #[test]
    fn a_url_replaces_the_connection() {
        let (options, server) = from_url(
            "mysql://u:s%40cret@localhost/other?socket=/tmp/x.sock",
            Dialect::Mysql,
        )
        .unwrap();
        assert_eq!(options.database(), Some("other"));
        assert_eq!(server, "localhost via /tmp/x.sock");
        let err = from_url("mysql://u:secret@[bad", Dialect::Mysql)
            .err()
            .unwrap();
        assert!(!err.contains("secret"));
        let err = from_url("postgres://u:secret@db/forum", Dialect::Mysql)
            .err()
            .unwrap();
        assert!(
            err.contains("MySQL/MariaDB") && !err.contains("secret"),
            "{err}"
        );

        let (options, server) = from_url(
            "postgresql://u:s%40cret@db.example:5433/f",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(options.database(), Some("f"));
        assert_eq!(server, "db.example:5433");
        let (_, server) = from_url(
            "postgres://u@localhost/f?host=/run/pg&port=5999",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(server, "/run/pg/.s.PGSQL.5999 (socket)");
        let err = from_url("mysql://u:secret@db/forum", Dialect::Postgres)
            .err()
            .unwrap();
        assert!(
            err.contains("PostgreSQL") && !err.contains("secret"),
            "{err}"
        );
    }

    const PG_CONFIG: &str = "<?php\n$config['database']['type'] = 'pgsql';\n$config['database']['database'] = 'forum';\n$config['database']['table_prefix'] = 'mybb_';\n$config['database']['hostname'] = 'db.example:5433';\n$config['database']['username'] = 'u';\n$config['database']['password'] = 'p\\'w';\n// $config['database']['encoding'] = 'utf8';\n";

    #[test]
    fn a_postgresql_forum_connects_as_its_pgsql_driver_does() {
        let (_dir, forum) = forum(PG_CONFIG);
        let forum = forum.unwrap();
        assert_eq!(forum.driver, Driver::Pgsql);
        assert_eq!(
            (forum.database.as_str(), forum.server.as_str()),
            ("forum", "db.example:5433")
        );
        assert!(!forum.narrow_connection(), "PostgreSQL talks UTF-8");
        let Options::Postgres(connect) = &forum.connect else {
            panic!("a pgsql forum connects to PostgreSQL");
        };
        assert_eq!(connect.get_username(), "u");
        assert!(!format!("{forum:?}").contains("p'w"));

        // localhost is TCP for libpq; no host its default socket
        // directory; a path a socket directory.
        let (options, server) = from_pg_config("localhost", "u", "p");
        assert_eq!(
            (options.get_socket(), server.as_str()),
            (None, "localhost:5432")
        );
        let (options, server) = from_pg_config("", "u", "p");
        assert_eq!(
            options.get_socket().unwrap().to_str(),
            Some("/var/run/postgresql")
        );
        assert_eq!(server, "/var/run/postgresql/.s.PGSQL.5432 (socket)");
        let (options, server) = from_pg_config("/tmp/pg:5999", "u", "p");
        assert_eq!(options.get_socket().unwrap().to_str(), Some("/tmp/pg"));
        assert_eq!(server, "/tmp/pg/.s.PGSQL.5999 (socket)");
    }
}
