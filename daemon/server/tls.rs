//! The TLS listeners' certificate: the one given with `--tls-cert` and
//! `--tls-key`, or a self-signed one the daemon makes on its first start
//! and reuses after, so that a client that pinned its fingerprint keeps
//! trusting it. Everything is read and checked at start, where a bad file
//! is one line naming the flag.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use outpost::tls::Fingerprint;

use super::ServerError;
use crate::{
    config::{Config, ConfigError, setting},
    pid_lock::create_private_dir,
};

/// Largest certificate, key or CA file read: bundles of a few hundred CAs fit.
const MAX_PEM: u64 = 1 << 20;
/// How long a client has for its handshake; a silent one is dropped then.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Directory of the self-signed certificate, inside the data directory.
const SELF_SIGNED_DIR: &str = "tls";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// What the TLS listeners serve with.
pub(crate) struct TlsSetup {
    /// tonic's server configuration.
    pub(crate) config: ServerTlsConfig,
    /// The leaf certificate's fingerprint, logged and reported.
    pub(crate) fingerprint: Fingerprint,
}

/// Loads (or makes) the certificate when `config` has a TLS listener.
pub(crate) fn load(config: &Config) -> Result<Option<TlsSetup>, ServerError> {
    let hosts: Vec<IpAddr> = (config.listen.iter())
        .filter(|listen| listen.tls)
        .map(|listen| listen.addr.ip())
        .collect();
    if hosts.is_empty() {
        return Ok(None);
    }
    let (cert_pem, key_pem, cert_setting, key_setting) = match &config.tls.cert_and_key {
        Some((cert, key)) => (
            read(setting::TLS_CERT, cert)?,
            read(setting::TLS_KEY, key)?,
            setting::TLS_CERT,
            setting::TLS_KEY,
        ),
        None => {
            let dir = config.data_dir.join(SELF_SIGNED_DIR);
            let (cert, key) = self_signed(&dir, &hosts)?;
            (
                cert,
                key,
                setting::TLS_SELF_SIGNED,
                setting::TLS_SELF_SIGNED,
            )
        }
    };
    let leaf = CertificateDer::pem_slice_iter(&cert_pem)
        .next()
        .ok_or_else(|| "holds no PEM certificate".to_owned())
        .and_then(|first| first.map_err(|err| format!("is not a PEM certificate: {err}")))
        .map_err(|reason| ConfigError::new(cert_setting, reason))?;
    PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| ConfigError::new(key_setting, format!("is not a PEM private key: {err}")))?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert_pem, &key_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(path) = &config.tls.client_ca {
        let pem = read(setting::TLS_CLIENT_CA, path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                ConfigError::new(
                    setting::TLS_CLIENT_CA,
                    format!("{} is not PEM: {err}", path.display()),
                )
            })?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                setting::TLS_CLIENT_CA,
                format!("{} holds no PEM certificate", path.display()),
            )
            .into());
        }
        // Optional here, required by the access gate (server/access.rs),
        // which can say why.
        tls = tls
            .client_ca_root(Certificate::from_pem(pem))
            .client_auth_optional(true);
    }
    // tonic builds rustls' configuration (and so checks that the key
    // belongs to the certificate) only when serving: try it now, where a
    // mismatch can still be told as a bad setting.
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(|err| {
            ConfigError::new(
                key_setting,
                format!("cannot serve TLS with this certificate and key: {err}"),
            )
        })?;
    Ok(Some(TlsSetup {
        config: tls,
        fingerprint: Fingerprint::of(&leaf),
    }))
}

/// Reads a PEM file named by `setting`.
fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    outpost::bounded_read::read(path, MAX_PEM)
        .map_err(|err| ConfigError::new(setting, format!("cannot read {}: {err}", path.display())))
}

/// The self-signed certificate and key in `dir`, made when there are
/// none. Its names are localhost, 127.0.0.1, ::1 and the listeners' hosts
/// (unspecified ones left out: they name no host).
fn self_signed(dir: &Path, hosts: &[IpAddr]) -> Result<(Vec<u8>, Vec<u8>), ConfigError> {
    let invalid = |reason: String| ConfigError::new(setting::TLS_SELF_SIGNED, reason);
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((
            read(setting::TLS_SELF_SIGNED, &cert_path)?,
            read(setting::TLS_SELF_SIGNED, &key_path)?,
        ));
    }
    create_private_dir(setting::TLS_SELF_SIGNED, dir)?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for host in hosts {
        let name = host.to_string();
        if !host.is_unspecified() && !names.contains(&name) {
            names.push(name);
        }
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|err| invalid(format!("cannot make a self-signed certificate: {err}")))?;
    let cert = made.cert.pem();
    let key = made.signing_key.serialize_pem();
    // The key first, then the certificate: a start that finds only a key
    // (a crash in between) makes both again.
    write_new(&key_path, key.as_bytes(), 0o600)
        .map_err(|err| invalid(format!("cannot write {}: {err}", key_path.display())))?;
    write_new(&cert_path, cert.as_bytes(), 0o644)
        .map_err(|err| invalid(format!("cannot write {}: {err}", cert_path.display())))?;
    tracing::info!(cert = %cert_path.display(), "made a self-signed TLS certificate");
    Ok((cert.into_bytes(), key.into_bytes()))
}

/// Writes `bytes` to `path` through a temporary file created with `mode`
/// (never wider for a moment), made durable, then renamed into place.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut temp = PathBuf::from(path);
    temp.set_extension("pem.tmp");
    match fs::remove_file(&temp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
