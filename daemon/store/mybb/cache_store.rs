//! The forum's cache store (`$config['cache_store']`), which MyBB keeps a
//! copy of some `datacache` rows in. Outpost rewrites a row in the table
//! and then makes the store forget its copy: MyBB finds it missing, reads
//! the table again and puts it back (`inc/class_datacache.php`). The
//! `files` store's copy is `cache/<name>.php`; memcache, memcached and
//! redis keep it under `md5(MYBB_ROOT) . "_" . <name>`
//! (`inc/cachehandlers/`), deleted here with one command over each
//! server's text protocol; apc, apcu, xcache and eaccelerator live in the
//! memory of PHP's own processes, which outpost cannot reach.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use md5::{Digest, Md5};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpStream, UnixStream},
};

use super::php_config::PhpConfig;

/// How long one server may take to accept a connection and answer: a
/// cache server that hangs must not hold a save for long, and a delete on
/// a live one takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(2);

/// memcached's own port, when the config names none.
const MEMCACHE_DEFAULT_PORT: u16 = 11211;

/// Redis's own port, when the config names none.
const REDIS_DEFAULT_PORT: u16 = 6379;

/// Where a cache server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Server::Tcp { host, port } => write!(f, "{host}:{port}"),
            Server::Unix(path) => write!(f, "{} (socket)", path.display()),
        }
    }
}

impl Server {
    /// A server as the PHP extensions take `host` and `port`: a host
    /// starting with '/' (or `unix://`, which memcache's `addServer` also
    /// takes) is a Unix socket; a port that is missing, empty, zero or not
    /// a number means the server's default one.
    fn of(host: &str, port: Option<String>, default_port: u16) -> Self {
        let socket = host.strip_prefix("unix://").unwrap_or(host);
        if socket.starts_with('/') {
            return Server::Unix(PathBuf::from(socket));
        }
        let port = port
            .and_then(|port| port.trim().parse().ok())
            .filter(|&port| port != 0)
            .unwrap_or(default_port);
        Server::Tcp {
            host: host.to_owned(),
            port,
        }
    }
}

/// What the forum caches in, as outpost refreshes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStore {
    /// `db`, or no setting: the `datacache` table is all there is.
    Database,
    /// `files`: `cache/<name>.php` under the forum's root.
    Files,
    /// `memcache` or `memcached` (both read `$config['memcache']`): every
    /// server listed, since the extensions spread keys over them.
    Memcache(Vec<Server>),
    /// `redis`: `$config['redis']`.
    Redis(Server),
    /// A store outpost cannot refresh, and why.
    Unreachable(String),
}

impl CacheStore {
    /// The store a forum's config names, read as MyBB's cache handlers
    /// read it.
    pub fn from_config(config: &PhpConfig) -> Self {
        let store = config.string(&["cache_store"]).unwrap_or_default();
        match store.as_str() {
            "" | "db" => CacheStore::Database,
            "files" => CacheStore::Files,
            "memcache" | "memcached" => memcache_servers(config, &store),
            "redis" => match config.string(&["redis", "host"]).filter(|h| !h.is_empty()) {
                Some(host) => CacheStore::Redis(Server::of(
                    &host,
                    config.string(&["redis", "port"]),
                    REDIS_DEFAULT_PORT,
                )),
                None => CacheStore::Unreachable(
                    "the forum caches in redis but its config.php sets no $config['redis']['host'] (MyBB stops there too)".to_owned(),
                ),
            },
            other => CacheStore::Unreachable(format!(
                "the forum caches in {other:?}, which outpost does not reach (it lives in PHP's own memory)"
            )),
        }
    }

    /// Makes the store forget its copy of the cache `name`, from the
    /// forum at `root`; returns why it could not, per server (nothing
    /// when done or when there is no copy).
    pub async fn forget(&self, root: &Path, name: &str) -> Vec<String> {
        match self {
            CacheStore::Database => Vec::new(),
            CacheStore::Files => {
                let file = root.join(format!("cache/{name}.php"));
                match fs::remove_file(&file) {
                    Ok(()) => Vec::new(),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(err) => vec![format!("cannot remove {} ({err})", file.display())],
                }
            }
            CacheStore::Memcache(servers) => {
                let key = key(root, name);
                let mut failures = Vec::new();
                for server in servers {
                    if let Err(reason) = delete(server, Protocol::Memcache, &key).await {
                        failures.push(format!("memcache server {server}: {reason}"));
                    }
                }
                failures
            }
            CacheStore::Redis(server) => {
                match delete(server, Protocol::Redis, &key(root, name)).await {
                    Ok(()) => Vec::new(),
                    Err(reason) => vec![format!("redis server {server}: {reason}")],
                }
            }
            CacheStore::Unreachable(reason) => vec![reason.clone()],
        }
    }
}

/// `$config['memcache']` as memcache's and memcached's `connect()` read
/// it: one server in `host`/`port`, or a list of `host`/`port` entries.
fn memcache_servers(config: &PhpConfig, store: &str) -> CacheStore {
    let one = config
        .string(&["memcache", "host"])
        .filter(|h| !h.is_empty());
    let entries: Vec<Vec<String>> = match one {
        Some(_) => vec![Vec::new()],
        None => config
            .keys(&["memcache"])
            .into_iter()
            .map(|key| vec![key])
            .collect(),
    };
    let mut servers = Vec::new();
    for entry in entries {
        let path = |field: &str| {
            let mut path: Vec<&str> = vec!["memcache"];
            path.extend(entry.iter().map(String::as_str));
            path.push(field);
            config.string(&path)
        };
        match path("host").filter(|h| !h.is_empty()) {
            Some(host) => servers.push(Server::of(&host, path("port"), MEMCACHE_DEFAULT_PORT)),
            None => {
                return CacheStore::Unreachable(format!(
                    "the forum caches in {store} but its config.php names no host in $config['memcache'] (MyBB stops there too)"
                ));
            }
        }
    }
    if servers.is_empty() {
        return CacheStore::Unreachable(format!(
            "the forum caches in {store} but its config.php sets no $config['memcache']['host'] (MyBB stops there too)"
        ));
    }
    CacheStore::Memcache(servers)
}

/// MyBB's key for the cache `name`: `md5(MYBB_ROOT) . "_" . $name`.
/// `MYBB_ROOT` is `dirname(dirname(__FILE__))."/"` in `inc/init.php`, and
/// PHP resolves symlinks in `__FILE__`: the root as the real path of
/// `inc/init.php` finds it (the root's own real path when the file is
/// missing), so a forum reached through a link gets the key its PHP uses.
fn key(root: &Path, name: &str) -> String {
    key_of_real_root(&real_root(root), name)
}

/// The directory PHP's `__FILE__` puts the forum in.
fn real_root(root: &Path) -> PathBuf {
    fs::canonicalize(root.join("inc/init.php"))
        .ok()
        .and_then(|init| Some(init.parent()?.parent()?.to_owned()))
        .or_else(|| fs::canonicalize(root).ok())
        .unwrap_or_else(|| root.to_owned())
}

/// MyBB's key for the cache `name` of the forum whose `MYBB_ROOT`, less
/// its trailing '/', is `real_root`.
fn key_of_real_root(real_root: &Path, name: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(real_root.as_os_str().as_encoded_bytes());
    hasher.update(b"/");
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}_{name}")
}

/// The text protocols a key is deleted with.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// `delete <key>\r\n`, answered `DELETED` or `NOT_FOUND`.
    Memcache,
    /// RESP `DEL <key>`, answered `:<count>` or `-<error>`.
    Redis,
}

/// Deletes `key` on `server`, within [`DEADLINE`]; the error says why not.
async fn delete(server: &Server, protocol: Protocol, key: &str) -> Result<(), String> {
    let exchange = async {
        match server {
            Server::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|err| format!("cannot connect ({err})"))?;
                exchange(stream, protocol, key).await
            }
            Server::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(|err| format!("cannot connect ({err})"))?;
                exchange(stream, protocol, key).await
            }
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", DEADLINE.as_secs_f32())))
}

/// Sends the delete and reads the one-line answer.
async fn exchange(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    protocol: Protocol,
    key: &str,
) -> Result<(), String> {
    let request = match protocol {
        Protocol::Memcache => format!("delete {key}\r\n"),
        Protocol::Redis => format!("*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n", key.len()),
    };
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("cannot send the delete ({err})"))?;
    let mut reply = String::new();
    stream
        .read_line(&mut reply)
        .await
        .map_err(|err| format!("cannot read the answer ({err})"))?;
    let reply = reply.trim_end_matches(['\r', '\n']);
    let done = match protocol {
        Protocol::Memcache => reply == "DELETED" || reply == "NOT_FOUND",
        Protocol::Redis => reply
            .strip_prefix(':')
            .is_some_and(|count| count.parse::<u64>().is_ok()),
    };
    match reply {
        _ if done => Ok(()),
        "" => Err("the connection closed without an answer".to_owned()),
        error => Err(format!("it answered {error:?}")),
    }
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncReadExt, net::TcpListener};

    use super::*;

    fn store(config: &str) -> CacheStore {
        CacheStore::from_config(&PhpConfig::parse(&format!("<?php\n{config}")).unwrap())
    }

    #[test]
    fn the_store_is_read_as_mybb_reads_it() {
        assert_eq!(store(""), CacheStore::Database);
        assert_eq!(
            store("$config['cache_store'] = 'files';"),
            CacheStore::Files
        );
        let tcp = |host: &str, port| Server::Tcp {
            host: host.to_owned(),
            port,
        };
        assert_eq!(
            store(
                "$config['cache_store'] = 'memcached';\n$config['memcache']['host'] = 'localhost';\n$config['memcache']['port'] = 11311;"
            ),
            CacheStore::Memcache(vec![tcp("localhost", 11311)])
        );
        assert_eq!(
            store(
                "$config['cache_store'] = 'memcache';\n$config['memcache'][0]['host'] = 'a';\n$config['memcache'][1] = ['host' => 'b', 'port' => '11300'];\n$config['memcache'][2]['host'] = 'unix:///run/mc.sock';"
            ),
            CacheStore::Memcache(vec![
                tcp("a", 11211),
                tcp("b", 11300),
                Server::Unix(PathBuf::from("/run/mc.sock"))
            ])
        );
        assert_eq!(
            store(
                "$config['cache_store'] = 'redis';\n$config['redis']['host'] = '/run/redis.sock';\n$config['redis']['port'] = false;"
            ),
            CacheStore::Redis(Server::Unix(PathBuf::from("/run/redis.sock")))
        );
        assert_eq!(
            store("$config['cache_store'] = 'redis';\n$config['redis']['host'] = 'cache';"),
            CacheStore::Redis(tcp("cache", 6379))
        );
        for config in [
            "$config['cache_store'] = 'redis';",
            "$config['cache_store'] = 'memcache';\n$config['memcache'][0]['port'] = 1;",
            "$config['cache_store'] = 'apcu';",
        ] {
            assert!(
                matches!(store(config), CacheStore::Unreachable(_)),
                "{config}"
            );
        }
    }

    #[test]
    fn the_key_is_md5_of_the_real_root_with_a_slash() {
        // `printf '/var/www/forum/' | md5sum`
        assert_eq!(
            key_of_real_root(Path::new("/var/www/forum"), "default_theme"),
            "07fc16473f98ef7c7d64c3e3c7249cdf_default_theme"
        );
        // Through a link, PHP's __FILE__ names the real directory, and
        // a linked inc/ puts the root beside the real inc/.
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap();
        let link = real.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(real_root(&link), real);
        let elsewhere = real.join("elsewhere");
        fs::create_dir_all(elsewhere.join("inc")).unwrap();
        fs::write(elsewhere.join("inc/init.php"), "<?php\n").unwrap();
        fs::create_dir(real.join("forum")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("inc"), real.join("forum/inc")).unwrap();
        assert_eq!(real_root(&real.join("forum")), elsewhere);
    }

    /// A server that reads one request, answers `reply` and returns what
    /// it read.
    async fn fake(reply: &'static str) -> (Server, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 256];
            let n = stream.read(&mut request).await.unwrap();
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(request[..n].to_vec()).unwrap()
        });
        let server = Server::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        };
        (server, served)
    }

    #[tokio::test]
    async fn deletes_speak_each_protocol() {
        for (protocol, reply, request, ok) in [
            (Protocol::Memcache, "DELETED\r\n", "delete k_x\r\n", true),
            (Protocol::Memcache, "NOT_FOUND\r\n", "delete k_x\r\n", true),
            (
                Protocol::Memcache,
                "SERVER_ERROR busy\r\n",
                "delete k_x\r\n",
                false,
            ),
            (
                Protocol::Redis,
                ":0\r\n",
                "*2\r\n$3\r\nDEL\r\n$3\r\nk_x\r\n",
                true,
            ),
            (
                Protocol::Redis,
                "-ERR denied\r\n",
                "*2\r\n$3\r\nDEL\r\n$3\r\nk_x\r\n",
                false,
            ),
        ] {
            let (server, served) = fake(reply).await;
            let result = delete(&server, protocol, "k_x").await;
            assert_eq!(served.await.unwrap(), request);
            match result {
                Ok(()) => assert!(ok, "{reply:?} is an error"),
                Err(reason) => {
                    assert!(!ok, "{reply:?} is fine: {reason}");
                    assert!(reason.contains(reply.trim_end()), "{reason}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_silent_or_missing_server_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Server::Tcp {
            host: "127.0.0.1".to_owned(),
            port,
        };
        // Accepted by the kernel, never answered.
        let reason = delete(&server, Protocol::Redis, "k").await.unwrap_err();
        assert!(reason.contains("no answer within 2 s"), "{reason}");
        drop(listener);
        let store = CacheStore::Redis(server);
        let failures = store
            .forget(Path::new("/nonexistent"), "default_theme")
            .await;
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].starts_with(&format!("redis server 127.0.0.1:{port}: cannot connect")),
            "{failures:?}"
        );
    }
}
