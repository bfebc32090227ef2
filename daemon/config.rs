//! Daemon configuration: command-line flags, each with an `OUTPOST_*`
//! environment variable, resolved into a validated [`Config`].

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::Parser;
use thiserror::Error;

use outpost::{
    limits::{cut, quoted},
    paths,
    token::{TOKEN_ENV, Token},
};

use crate::orchestrator::ports::PortRange;

/// Flags of `outpostd`.
#[derive(Debug, Parser)]
#[command(
    name = "outpostd",
    version,
    about = "The outpost daemon: supervises local server processes and syncs forum content with files.",
    after_help = "TCP and TLS listeners require a bearer token: --token-file FILE, or the token itself in $OUTPOST_TOKEN.\nLog level comes from RUST_LOG (default: info)."
)]
pub struct DaemonArgs {
    /// Directory for state, logs and the database [default: $XDG_STATE_HOME/outpost]
    #[arg(long, env = "OUTPOST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Unix socket to serve on [default: $XDG_RUNTIME_DIR/outpost/outpostd.sock]
    #[arg(long, env = "OUTPOST_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Also serve on TCP or TLS (repeatable; port 0 picks a free port); requires a token
    #[arg(
        long = "listen",
        env = "OUTPOST_LISTEN",
        value_name = "tls://HOST:PORT|tcp://HOST:PORT",
        value_delimiter = ','
    )]
    pub listen: Vec<ListenAddr>,

    /// Allow tcp:// (plaintext) listeners on non-loopback addresses (anyone on that network can read the token)
    #[arg(long, env = "OUTPOST_INSECURE_LISTEN")]
    pub insecure_listen: bool,

    /// Certificate chain (PEM) of the tls:// listeners [default: a self-signed one made in DATA_DIR/tls]
    #[arg(
        long,
        env = "OUTPOST_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert
    #[arg(
        long,
        env = "OUTPOST_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Require TLS clients to present a certificate issued by a CA in this file (PEM): mutual TLS
    #[arg(long, env = "OUTPOST_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve the browser dashboard and the HTTP/JSON API here (port 0 picks a free port)
    #[arg(long, env = "OUTPOST_HTTP", value_name = "HOST:PORT", value_parser = http_address)]
    pub http: Option<SocketAddr>,

    /// Allow --http on a non-loopback address in plain HTTP (anyone on that network can read the traffic)
    #[arg(long, env = "OUTPOST_HTTP_INSECURE")]
    pub http_insecure: bool,

    /// File holding the bearer token for TCP clients
    #[arg(long, env = "OUTPOST_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Pool of ports handed to instances that ask for one
    #[arg(
        long,
        env = "OUTPOST_PORT_RANGE",
        value_name = "START-END",
        default_value = "4100-4199"
    )]
    pub port_range: PortRange,

    /// Most instances the daemon will hold
    #[arg(
        long,
        env = "OUTPOST_MAX_INSTANCES",
        value_name = "N",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_instances: u32,

    /// Root directory of template and stylesheet sync [default: DATA_DIR/sync]
    #[arg(long, env = "OUTPOST_SYNC_ROOT", value_name = "DIR")]
    pub sync_root: Option<PathBuf>,

    /// Quiet time after the last file event before a synced file is read
    #[arg(
        long,
        env = "OUTPOST_SYNC_DEBOUNCE",
        value_name = "DURATION",
        default_value = "100ms",
        value_parser = sync_wait
    )]
    pub sync_debounce: Duration,

    /// How long a synced file that is empty, missing or still being written is waited for
    #[arg(
        long,
        env = "OUTPOST_SYNC_SETTLE",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = sync_wait
    )]
    pub sync_settle: Duration,

    /// Directory of workspace files [default: $XDG_CONFIG_HOME/outpost/workspaces]
    #[arg(long, env = "OUTPOST_WORKSPACES_DIR", value_name = "DIR")]
    pub workspaces_dir: Option<PathBuf>,

    /// Keep every workspace and content version in a git repository (DATA_DIR/history.git): on or off
    #[arg(
        long,
        env = "OUTPOST_HISTORY",
        value_name = "on|off",
        default_value = "on",
        value_parser = ["on", "off"]
    )]
    pub history: String,

    /// Which history is kept: all, the newest N commits (500), or what is younger than an age (90d)
    #[arg(
        long,
        env = "OUTPOST_HISTORY_KEEP",
        value_name = "all|N|AGE",
        default_value = "all",
        value_parser = clap::builder::ValueParser::new(|text: &str| text.parse::<crate::history::Retention>())
    )]
    pub history_keep: crate::history::Retention,

    /// On SIGINT/SIGTERM leave instances running for the next daemon to re-adopt
    #[arg(long, env = "OUTPOST_KEEP_INSTANCES_ON_EXIT")]
    pub keep_instances_on_exit: bool,

    /// Sync templates with this MyBB forum's database (the forum's directory; its inc/config.php is read)
    #[arg(long, env = "OUTPOST_MYBB", value_name = "DIR")]
    pub mybb: Option<PathBuf>,

    /// The forum's database instead of config.php's: mysql://USER:PASSWORD@HOST[:PORT]/DB[?socket=PATH], or postgres://… for a pgsql forum (moved out of the daemon's arguments at start)
    #[arg(long, env = MYBB_DATABASE_ENV, value_name = "URL", hide_env_values = true)]
    pub mybb_database: Option<String>,

    /// File holding the --mybb-database URL
    #[arg(long, env = "OUTPOST_MYBB_DATABASE_FILE", value_name = "FILE")]
    pub mybb_database_file: Option<PathBuf>,

    /// How often the forum's database is polled for changes made there (the admin panel)
    #[arg(
        long,
        env = "OUTPOST_MYBB_POLL",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = poll_interval
    )]
    pub mybb_poll: Duration,
}

/// The variable that carries the forum database's URL.
pub const MYBB_DATABASE_ENV: &str = "OUTPOST_MYBB_DATABASE";

/// Variables of the daemon's environment that hold secrets: never passed
/// on to the processes it starts.
pub const SECRET_ENV: [&str; 2] = [TOKEN_ENV, MYBB_DATABASE_ENV];

/// Where and how to sync with a MyBB forum.
#[derive(Debug)]
pub struct MybbSettings {
    /// The forum's directory.
    pub root: PathBuf,
    /// Its database, if not as config.php says.
    pub database_url: Option<DatabaseUrl>,
    /// How often its database is polled.
    pub poll: Duration,
}

/// A database URL: it holds a password, so it is never shown.
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// A TCP address to listen on, written `tcp://HOST:PORT` (plaintext) or
/// `tls://HOST:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The address.
    pub addr: SocketAddr,
    /// Whether connections are TLS.
    pub tls: bool,
}

impl ListenAddr {
    /// The URI scheme: `tls` or `tcp`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "tls" } else { "tcp" }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "expected tls://HOST:PORT or tcp://HOST:PORT with an IP address or localhost, e.g. tls://127.0.0.1:7443";
        let (tls, rest) = if let Some(rest) = text.strip_prefix("tls://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            (false, rest)
        } else {
            return Err(format!("unsupported scheme: {usage}"));
        };
        host_port(rest, usage).map(|addr| Self { addr, tls })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.addr)
    }
}

/// Where the TLS listeners' certificate comes from, and whom they admit.
#[derive(Debug, Default)]
pub struct TlsSettings {
    /// Certificate chain and key files; `None` makes (or reuses) a
    /// self-signed certificate in `DATA_DIR/tls`.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// CA certificates client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A poll interval: 50 ms at least (a database is not to be hammered).
fn poll_interval(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration < Duration::from_millis(50) || duration > Duration::from_secs(3600) {
        return Err(format!("{} is not between 50ms and 1h", cut(text)));
    }
    Ok(duration)
}

/// A sync wait: a duration of at least 10 ms (shorter ones would have
/// the reconciler spin on a file that is being written).
fn sync_wait(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration < Duration::from_millis(10) {
        return Err(format!("{} is shorter than the 10ms minimum", cut(text)));
    }
    Ok(duration)
}

/// The dashboard's address: `HOST:PORT` with an IP address or localhost.
fn http_address(text: &str) -> Result<SocketAddr, String> {
    host_port(
        text,
        "expected HOST:PORT with an IP address or localhost, e.g. 127.0.0.1:7878",
    )
}

/// `HOST:PORT` with an IP address or localhost; `usage` says what was
/// expected.
fn host_port(text: &str, usage: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, parse_port(port)?)));
    }
    let (_, port) = text.rsplit_once(':').ok_or_else(|| usage.to_owned())?;
    parse_port(port)?;
    text.parse().map_err(|_| usage.to_owned())
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("port {} is not a number from 0 to 65535", quoted(text)))
}

/// A setting that cannot be used, named as the user wrote it.
#[derive(Debug, Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The flag and its environment variable, e.g. `--data-dir (OUTPOST_DATA_DIR)`.
    pub setting: &'static str,
    /// What is wrong, including the bad value.
    pub reason: String,
}

impl ConfigError {
    /// Creates an error for `setting`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

/// Setting names used in error messages.
pub mod setting {
    /// The data directory.
    pub const DATA_DIR: &str = "--data-dir (OUTPOST_DATA_DIR)";
    /// The Unix socket.
    pub const SOCKET: &str = "--socket (OUTPOST_SOCKET)";
    /// The TCP listeners.
    pub const LISTEN: &str = "--listen (OUTPOST_LISTEN)";
    /// The TLS listeners' certificate.
    pub const TLS_CERT: &str = "--tls-cert (OUTPOST_TLS_CERT)";
    /// Its key.
    pub const TLS_KEY: &str = "--tls-key (OUTPOST_TLS_KEY)";
    /// The CA of client certificates.
    pub const TLS_CLIENT_CA: &str = "--tls-client-ca (OUTPOST_TLS_CLIENT_CA)";
    /// The self-signed certificate the daemon makes (in the data directory).
    pub const TLS_SELF_SIGNED: &str = "--data-dir (OUTPOST_DATA_DIR), its tls/ directory";
    /// The dashboard's listener.
    pub const HTTP: &str = "--http (OUTPOST_HTTP)";
    pub const TOKEN: &str = "--token-file (OUTPOST_TOKEN_FILE) or OUTPOST_TOKEN";
    pub const SYNC_ROOT: &str = "--sync-root (OUTPOST_SYNC_ROOT)";
    /// The workspaces directory.
    pub const WORKSPACES_DIR: &str = "--workspaces-dir (OUTPOST_WORKSPACES_DIR)";
    /// The forum.
    pub const MYBB: &str = "--mybb (OUTPOST_MYBB)";
    /// The forum's database.
    pub const MYBB_DATABASE: &str = "--mybb-database (OUTPOST_MYBB_DATABASE) or --mybb-database-file (OUTPOST_MYBB_DATABASE_FILE)";
}

/// The daemon's resolved, validated configuration. Its `Debug` and
/// `Display` never show the token.
#[derive(Debug)]
pub struct Config {
    /// Directory for state, logs and the database.
    pub data_dir: PathBuf,
    /// The Unix socket to serve on.
    pub socket: PathBuf,
    /// TCP and TLS addresses to serve on as well.
    pub listen: Vec<ListenAddr>,
    /// The TLS listeners' certificate and client CA.
    pub tls: TlsSettings,
    /// Token TCP clients must present; always set when `listen` is not empty.
    pub token: Option<Token>,
    /// Where the dashboard and the HTTP/JSON API are served, if anywhere.
    pub http: Option<SocketAddr>,
    /// Port pool for instances.
    pub port_range: PortRange,
    /// Most instances the daemon holds.
    pub max_instances: u32,
    /// Root of content sync.
    pub sync_root: PathBuf,
    /// How the sync engine waits for writers.
    pub sync: crate::sync::engine::Settings,
    /// Directory of workspace files.
    pub workspaces_dir: PathBuf,
    /// Leave instances running at shutdown.
    pub keep_instances_on_exit: bool,
    /// What history keeps; None when it is off.
    pub history: Option<crate::history::Retention>,
    /// The forum to sync with, if any (else the native store).
    pub mybb: Option<MybbSettings>,
}

impl Config {
    /// Resolves defaults, loads the token and checks what can be checked
    /// without touching the file system.
    pub fn resolve(args: DaemonArgs) -> Result<Self, ConfigError> {
        check_listen(&args)?;
        let mybb = mybb_settings(&args)?;
        let data_dir = absolute(setting::DATA_DIR, args.data_dir, paths::default_data_dir)?;
        let socket = absolute(setting::SOCKET, args.socket, paths::default_socket_path)?;
        let sync_root = absolute(setting::SYNC_ROOT, args.sync_root, || {
            Some(data_dir.join("sync"))
        })?;
        let workspaces_dir = absolute(
            setting::WORKSPACES_DIR,
            args.workspaces_dir,
            paths::default_workspaces_dir,
        )?;
        let token = Token::load(args.token_file.as_deref())
            .map_err(|err| ConfigError::new(setting::TOKEN, err.to_string()))?;
        if let (Some(addr), None) = (args.listen.first(), &token) {
            return Err(ConfigError::new(
                setting::LISTEN,
                format!(
                    "{addr} needs a token: pass --token-file FILE or set {TOKEN_ENV} (at least {} characters)",
                    outpost::token::MIN_TOKEN_LEN,
                    addr = cut(&addr.to_string())
                ),
            ));
        }
        if let Some(addr) = args.http
            && !addr.ip().is_loopback()
            && !args.http_insecure
        {
            return Err(ConfigError::new(
                setting::HTTP,
                format!(
                    "{addr} is not a loopback address: the dashboard would be served in plain HTTP, its session cookie readable on the network; use 127.0.0.1 or [::1], or pass --http-insecure"
                ),
            ));
        }
        Ok(Self {
            mybb,
            data_dir,
            socket,
            listen: args.listen,
            tls: TlsSettings {
                cert_and_key: args.tls_cert.zip(args.tls_key),
                client_ca: args.tls_client_ca,
            },
            token,
            http: args.http,
            port_range: args.port_range,
            max_instances: args.max_instances,
            sync_root,
            sync: crate::sync::engine::Settings {
                debounce: args.sync_debounce,
                settle: args.sync_settle,
            },
            workspaces_dir,
            keep_instances_on_exit: args.keep_instances_on_exit,
            history: (args.history == "on").then_some(args.history_keep),
        })
    }
}

/// Plaintext TCP only on loopback unless the user insists; TLS settings
/// only with a TLS listener to use them.
fn check_listen(args: &DaemonArgs) -> Result<(), ConfigError> {
    if let Some(addr) = (args.listen.iter()).find(|addr| !addr.tls && !addr.addr.ip().is_loopback())
        && !args.insecure_listen
    {
        return Err(ConfigError::new(
            setting::LISTEN,
            format!(
                "{addr} is not a loopback address: its token and traffic would cross the network in plain text; use tls://{}, or pass --insecure-listen",
                addr.addr
            ),
        ));
    }
    if !args.listen.iter().any(|addr| addr.tls) {
        let given = [
            (setting::TLS_CERT, args.tls_cert.is_some()),
            (setting::TLS_CLIENT_CA, args.tls_client_ca.is_some()),
        ];
        if let Some((setting, _)) = given.iter().find(|(_, given)| *given) {
            return Err(ConfigError::new(
                setting,
                "is only used with a TLS listener: add --listen tls://HOST:PORT",
            ));
        }
    }
    Ok(())
}

/// Largest `--mybb-database-file` read: it holds one URL.
const MAX_DATABASE_FILE: u64 = 4096;

/// The forum settings, with the database URL from the flag, the
/// environment or its file (read as [`outpost::bounded_read`] reads: a
/// regular file only, a FIFO never blocks the start).
fn mybb_settings(args: &DaemonArgs) -> Result<Option<MybbSettings>, ConfigError> {
    let url = match (&args.mybb_database, &args.mybb_database_file) {
        (Some(url), _) => Some(url.trim().to_owned()),
        (None, Some(file)) => Some(
            outpost::bounded_read::read_to_string(file, MAX_DATABASE_FILE)
                .map_err(|err| {
                    ConfigError::new(
                        setting::MYBB_DATABASE,
                        format!("cannot read {}: {err}", file.display()),
                    )
                })?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let Some(root) = args.mybb.clone() else {
        if url.is_some() {
            return Err(ConfigError::new(
                setting::MYBB_DATABASE,
                "is only used with --mybb DIR (the forum's directory)",
            ));
        }
        return Ok(None);
    };
    let root = absolute(setting::MYBB, Some(root), || None)?;
    Ok(Some(MybbSettings {
        root,
        database_url: url.map(DatabaseUrl),
        poll: args.mybb_poll,
    }))
}

/// Takes `given` or the default, and insists on an absolute path.
fn absolute(
    setting: &'static str,
    given: Option<PathBuf>,
    default: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, ConfigError> {
    let path = given
        .or_else(default)
        .ok_or_else(|| ConfigError::new(setting, "no default: HOME is not set; pass a path"))?;
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(ConfigError::new(
            setting,
            format!(
                "{} is not an absolute path",
                cut(&path.display().to_string())
            ),
        ))
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |path: &Path| path.display().to_string();
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        write!(
            f,
            "data_dir={} socket={} listen=[{}] tls_cert={} tls_client_ca={} http={} token={} port_range={} max_instances={} sync_root={} sync_debounce={:?} sync_settle={:?} workspaces_dir={} keep_instances_on_exit={} history={} mybb={}",
            show(&self.data_dir),
            show(&self.socket),
            listen.join(","),
            self.tls
                .cert_and_key
                .as_ref()
                .map_or_else(|| "self-signed".to_owned(), |(cert, _)| show(cert)),
            self.tls
                .client_ca
                .as_deref()
                .map_or_else(|| "none".to_owned(), show),
            self.http
                .map_or_else(|| "none".to_owned(), |addr| addr.to_string()),
            if self.token.is_some() { "set" } else { "unset" },
            self.port_range,
            self.max_instances,
            show(&self.sync_root),
            self.sync.debounce,
            self.sync.settle,
            show(&self.workspaces_dir),
            self.keep_instances_on_exit,
            self.history
                .map_or_else(|| "off".to_owned(), |keep| format!("keep {keep}")),
            self.mybb
                .as_ref()
                .map_or_else(|| "none".to_owned(), |mybb| show(&mybb.root)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_waits_have_a_floor() {
        assert_eq!(sync_wait("100ms"), Ok(Duration::from_millis(100)));
        assert!(sync_wait("0s").unwrap_err().contains("10ms minimum"));
        assert!(sync_wait("soon").is_err());
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "tcp://127.0.0.1:4200".parse::<ListenAddr>().unwrap().addr,
            "127.0.0.1:4200".parse().unwrap()
        );
        assert_eq!(
            "tcp://[::1]:0".parse::<ListenAddr>().unwrap().addr,
            "[::1]:0".parse().unwrap()
        );
        assert_eq!(
            "tcp://localhost:9".parse::<ListenAddr>().unwrap().addr,
            "127.0.0.1:9".parse().unwrap()
        );
        let tls = "tls://0.0.0.0:7443".parse::<ListenAddr>().unwrap();
        assert!(tls.tls);
        assert_eq!(tls.to_string(), "tls://0.0.0.0:7443");
        assert_eq!(
            http_address("localhost:7878").unwrap(),
            "127.0.0.1:7878".parse().unwrap()
        );
        assert_eq!(http_address("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert!(http_address("example.com:80").is_err());
        for bad in [
            "127.0.0.1:4200",
            "tcp://127.0.0.1:70000",
            "tcp://host:1",
            "tcp://1.2.3.4",
            "https://127.0.0.1:1",
        ] {
            assert!(
                bad.parse::<ListenAddr>().is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
