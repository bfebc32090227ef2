//! Dashboard sessions: a cookie holding its own expiry, signed (HMAC) with
//! a key kept in the data directory, so that a session survives a daemon
//! restart and nothing about it is held in memory. The cookie is HttpOnly
//! (no script reads it) and SameSite=Strict (no other site's page sends
//! it); its name carries the port, because browsers share cookies between
//! the ports of one host and two daemons must not log each other out.

use std::{
    fs, io,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};

use super::logins::random_bytes;

/// How long a login lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The signing key's file in the data directory.
const KEY_FILE: &str = "dashboard-session.key";
/// The key's length: what HMAC-SHA512 signing in `cookie` asks for.
const KEY_LEN: usize = 64;

/// Issues and checks session cookies.
#[derive(Clone)]
pub(crate) struct Sessions {
    key: Key,
    cookie_name: String,
}

impl Sessions {
    /// The sessions of the dashboard on `port`, signed with the key in
    /// `data_dir` (made on first use, 0600).
    pub(crate) fn load(data_dir: &Path, port: u16) -> io::Result<Self> {
        let key = load_key(&data_dir.join(KEY_FILE))?;
        Ok(Self {
            key,
            cookie_name: format!("outpost_session_{port}"),
        })
    }

    /// The cookies of a response that logs the browser in.
    pub(crate) fn login(&self) -> SignedCookieJar {
        let expires = SystemTime::now() + SESSION_TTL;
        let seconds = expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let cookie = Cookie::build((self.cookie_name.clone(), seconds.to_string()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::seconds(SESSION_TTL.as_secs() as i64));
        SignedCookieJar::new(self.key.clone()).add(cookie)
    }

    /// The cookies of a response that logs the browser out.
    pub(crate) fn logout(&self) -> SignedCookieJar {
        SignedCookieJar::new(self.key.clone())
            .remove(Cookie::build(self.cookie_name.clone()).path("/"))
    }

    /// Whether the request carries a session cookie this daemon signed
    /// that has not expired.
    pub(crate) fn is_valid(&self, headers: &HeaderMap) -> bool {
        let jar = SignedCookieJar::from_headers(headers, self.key.clone());
        let Some(cookie) = jar.get(&self.cookie_name) else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        cookie
            .value()
            .parse::<u64>()
            .is_ok_and(|expires| expires > now)
    }
}

/// The key in `path`, or a new one written there first. A file of the
/// wrong length (truncated by a full disk, say) is replaced, which logs
/// every browser out rather than failing the daemon.
fn load_key(path: &Path) -> io::Result<Key> {
    match fs::read(path) {
        Ok(bytes) if bytes.len() == KEY_LEN => {
            if let Ok(key) = Key::try_from(bytes.as_slice()) {
                return Ok(key);
            }
        }
        Ok(bytes) => tracing::warn!(
            path = %path.display(),
            len = bytes.len(),
            "the dashboard's session key is damaged; making a new one (browsers must log in again)"
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let bytes = random_bytes::<KEY_LEN>()
        .ok_or_else(|| io::Error::other("the kernel gave no random bytes for the session key"))?;
    write_private(path, &bytes)?;
    Key::try_from(bytes.as_slice()).map_err(io::Error::other)
}

/// Writes `bytes` to `path` durably, readable by the owner alone, never
/// leaving a half-written key behind.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = PathBuf::from(format!("{}.tmp", path.display()));
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use axum::{
        http::header::{COOKIE, SET_COOKIE},
        response::IntoResponse,
    };

    use super::*;

    /// The headers of a request carrying the cookies `jar` sets, as a
    /// browser sends them back.
    fn request_with(jar: &SignedCookieJar) -> HeaderMap {
        let response = (jar.clone(), ()).into_response();
        let mut headers = HeaderMap::new();
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            headers.append(COOKIE, pair.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_session_survives_a_restart_and_is_bound_to_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(dir.path(), 7878).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let headers = request_with(&sessions.login());
        assert!(sessions.is_valid(&headers));
        let restarted = Sessions::load(dir.path(), 7878).unwrap();
        assert!(restarted.is_valid(&headers), "the key is kept");

        let other_dir = tempfile::tempdir().unwrap();
        let other = Sessions::load(other_dir.path(), 7878).unwrap();
        assert!(!other.is_valid(&headers), "another daemon's key");
        let other_port = Sessions::load(dir.path(), 7879).unwrap();
        assert!(!other_port.is_valid(&headers), "another port's cookie");
    }

    #[test]
    fn a_forged_or_expired_cookie_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::load(dir.path(), 1).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "outpost_session_1=99999999999".parse().unwrap());
        assert!(!sessions.is_valid(&headers), "unsigned");
        let expired = SignedCookieJar::new(sessions.key.clone())
            .add(Cookie::new("outpost_session_1", "1000"));
        assert!(!sessions.is_valid(&request_with(&expired)), "expired");
        assert!(!sessions.is_valid(&request_with(&sessions.logout())));
    }

    #[test]
    fn a_damaged_key_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        Sessions::load(dir.path(), 1).unwrap();
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap().len(), KEY_LEN);
    }
}
