//! TLS listeners (issue 21): the self-signed certificate of a first start
//! and its reuse, pinning with `outpostctl trust` and the refusal of a
//! changed certificate, verification against a CA (through the system
//! roots and `--tls-ca`), mutual TLS, the token still required, the lines
//! a client gets at the wrong kind of port, and grpcurl over TLS.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use nix::sys::signal::Signal;
use outpost::{
    endpoint::{Address, ConnectOptions, Connection},
    proto::v1::{GetDaemonStatusRequest, GetDaemonStatusResponse},
    tls::{ClientTls, Fingerprint, ServerTrust},
    token::Token,
};
use outpost_test_support::process::free_port;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tempfile::TempDir;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::{
    harness::{Daemon, START_DEADLINE, TOKEN, ctl_command, daemon_command, stderr, stdout},
    polyglot::{GRPCURL_MAX_SECONDS, run},
};

/// A test CA and files it issued, in a directory of their own.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`; its certificate is `ca.pem`.
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("outpost-pki")
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for `names`, written to `NAME.pem` and
    /// `NAME.key` (0600); returns their paths.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        (cert_path, key_path)
    }
}

/// The fingerprint of the first certificate in a PEM file.
fn fingerprint_of(pem: &Path) -> Fingerprint {
    let der = CertificateDer::from_pem_file(pem).unwrap();
    Fingerprint::of(&der)
}

/// The daemon's status over its socket.
async fn status(daemon: &Daemon) -> GetDaemonStatusResponse {
    daemon
        .connect()
        .await
        .orchestrator()
        .get_daemon_status(GetDaemonStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// `outpostctl --addr ADDRESS ARGS…` with the token and `config` as its
/// XDG_CONFIG_HOME (where known_hosts lives).
fn ctl(config: &Path, address: &Address, args: &[&str]) -> Output {
    ctl_command()
        .env("XDG_CONFIG_HOME", config)
        .env("OUTPOST_TOKEN", TOKEN)
        .args(["--addr", &address.to_string()])
        .args(args)
        .output()
        .unwrap()
}

/// Asserts that `output` failed with one line on stderr holding every one
/// of `needles`.
fn assert_refused(output: &Output, needles: &[&str]) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(message.lines().count(), 1, "not one line: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} missing in: {message}");
    }
}

/// A TLS connection from the test itself with `trust`.
async fn open(address: &Address, token: Option<&str>, trust: ServerTrust) -> Connection {
    let options = ConnectOptions {
        tls: ClientTls {
            trust,
            identity: None,
        },
        ..ConnectOptions::default()
    };
    let token = token.map(|text| Token::parse(text).unwrap());
    Connection::open(address, token.as_ref(), &options)
        .await
        .unwrap()
}

/// A daemon with TLS on a fixed free port, so that it keeps its address
/// (the key of a pin) when it restarts.
fn tls_on_a_fixed_port() -> Daemon {
    Daemon::builder()
        .env("OUTPOST_TOKEN", TOKEN)
        .arg("--listen")
        .arg(format!("tls://127.0.0.1:{}", free_port()))
        .start()
}

#[tokio::test]
async fn self_signed_certificate_is_made_once_pinned_and_kept() {
    let mut daemon = tls_on_a_fixed_port();
    let key = daemon.data_dir.join("tls/key.pem");
    let cert = daemon.data_dir.join("tls/cert.pem");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fingerprint = fingerprint_of(&cert);
    assert!(
        daemon.log.text().contains(&fingerprint.to_string()),
        "the fingerprint is logged at start"
    );
    assert_eq!(
        status(&daemon).await.tls_fingerprint,
        fingerprint.to_string()
    );

    let address = daemon.tls_address();
    let config = daemon.dir.path().join("config");
    // Unpinned, a self-signed certificate is not trusted by the roots.
    let refused = ctl(&config, &address, &["status"]);
    assert_refused(&refused, &["not trusted", "outpostctl trust"]);
    // Without a terminal, trust insists on --yes and pins nothing.
    let unasked = ctl(&config, &address, &["trust", &address.to_string()]);
    assert_refused(&unasked, &["--yes"]);
    assert!(!config.join("outpost/known_hosts").exists());

    let pinned = ctl(&config, &address, &["trust", &address.to_string(), "--yes"]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    assert!(stdout(&pinned).contains(&fingerprint.to_string()));
    let known = fs::read_to_string(config.join("outpost/known_hosts")).unwrap();
    assert_eq!(known.trim(), format!("{address} {fingerprint}"));
    let shown = ctl(&config, &address, &["status"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).contains(&fingerprint.to_string()));

    // A restart reuses the certificate: the pin still holds.
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    daemon.respawn(&[]);
    assert_eq!(fingerprint_of(&cert), fingerprint);
    assert_eq!(
        status(&daemon).await.tls_fingerprint,
        fingerprint.to_string()
    );
    let again = ctl(&config, &daemon.tls_address(), &["status"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[tokio::test]
async fn a_changed_certificate_is_refused_until_trusted_again() {
    let mut daemon = tls_on_a_fixed_port();
    let address = daemon.tls_address();
    let config = daemon.dir.path().join("config");
    let pinned = ctl(&config, &address, &["trust", &address.to_string(), "--yes"]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let old = fingerprint_of(&daemon.data_dir.join("tls/cert.pem"));

    // A new certificate on the same address.
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(START_DEADLINE);
    fs::remove_dir_all(daemon.data_dir.join("tls")).unwrap();
    daemon.respawn(&[]);
    let new = fingerprint_of(&daemon.data_dir.join("tls/cert.pem"));
    assert_ne!(old, new);

    let refused = ctl(&config, &address, &["status"]);
    assert_refused(
        &refused,
        &[
            "CERTIFICATE CHANGED",
            &old.to_string(),
            &new.to_string(),
            &format!("outpostctl trust {address}"),
        ],
    );
    // A wrong --tls-fingerprint is refused the same way, naming both.
    let flag = ctl(
        &config,
        &address,
        &["--tls-fingerprint", &old.to_string(), "status"],
    );
    assert_refused(&flag, &[&old.to_string(), &new.to_string()]);

    let retrusted = ctl(&config, &address, &["trust", &address.to_string(), "--yes"]);
    assert!(retrusted.status.success(), "{}", stderr(&retrusted));
    assert!(
        stdout(&retrusted).contains(&old.to_string()),
        "the replaced pin is shown"
    );
    let shown = ctl(&config, &address, &["status"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
}

#[test]
fn a_given_certificate_is_verified_by_system_roots_and_tls_ca() {
    let pki = Pki::new("outpost test CA");
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"]);
    let daemon = Daemon::builder()
        .tls()
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .start();
    assert!(
        !daemon.data_dir.join("tls").exists(),
        "no self-signed certificate is made when one is given"
    );
    let address = daemon.tls_address();
    let config = daemon.dir.path().join("config");

    // The system roots, as rustls-native-certs reads them: SSL_CERT_FILE
    // stands in for the distribution's bundle.
    let with_roots = |roots: &Path| {
        ctl_command()
            .env("XDG_CONFIG_HOME", &config)
            .env("OUTPOST_TOKEN", TOKEN)
            .env("SSL_CERT_FILE", roots)
            .args(["--addr", &address.to_string(), "status"])
            .output()
            .unwrap()
    };
    let trusted = with_roots(&pki.ca_file());
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert!(stdout(&trusted).contains(&fingerprint_of(&cert).to_string()));
    let other = Pki::new("another CA");
    assert_refused(&with_roots(&other.ca_file()), &["not trusted"]);

    let ca = pki.ca_file();
    let by_flag = ctl(
        &config,
        &address,
        &["--tls-ca", ca.to_str().unwrap(), "health"],
    );
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    let wrong_ca = other.ca_file();
    let refused = ctl(
        &config,
        &address,
        &["--tls-ca", wrong_ca.to_str().unwrap(), "health"],
    );
    assert_refused(&refused, &["not trusted"]);
}

#[test]
fn mutual_tls_admits_a_client_certificate_and_refuses_none() {
    let pki = Pki::new("outpost test CA");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let (client_cert, client_key) = pki.issue("client", &["alice"]);
    let daemon = Daemon::builder()
        .tls()
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--tls-client-ca")
        .arg(pki.ca_file())
        .start();
    let address = daemon.tls_address();
    let config = daemon.dir.path().join("config");
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();

    let admitted = ctl(
        &config,
        &address,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            client_cert.to_str().unwrap(),
            "--tls-key",
            client_key.to_str().unwrap(),
            "status",
        ],
    );
    assert!(admitted.status.success(), "{}", stderr(&admitted));

    let refused = ctl(&config, &address, &["--tls-ca", ca, "status"]);
    assert_refused(&refused, &["client certificate", "--tls-cert"]);

    // A certificate from another CA is no better than none.
    let stranger = Pki::new("another CA");
    let (cert, key) = stranger.issue("mallory", &["mallory"]);
    let refused = ctl(
        &config,
        &address,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "status",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));

    // The certificate does not replace the token.
    let without_token = ctl_command()
        .args(["--addr", &address.to_string(), "--tls-ca", ca])
        .arg("--tls-cert")
        .arg(&client_cert)
        .arg("--tls-key")
        .arg(&client_key)
        .arg("status")
        .output()
        .unwrap();
    assert_refused(&without_token, &["unauthenticated"]);
}

#[tokio::test]
async fn the_token_is_still_required_over_tls() {
    let daemon = Daemon::builder().tls().start();
    let address = daemon.tls_address();
    let pin = ServerTrust::Fingerprint {
        expected: fingerprint_of(&daemon.data_dir.join("tls/cert.pem")),
        pinned: false,
    };
    let code = |connection: Connection| async move {
        match (connection.orchestrator())
            .get_daemon_status(GetDaemonStatusRequest {})
            .await
        {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    };
    let none = open(&address, None, pin.clone()).await;
    assert_eq!(code(none.clone()).await, Code::Unauthenticated);
    none.health()
        .check(HealthCheckRequest::default())
        .await
        .expect("health is open, as on TCP");
    let wrong = open(&address, Some("test-token-wrong-wrong-wrong"), pin.clone()).await;
    assert_eq!(code(wrong).await, Code::Unauthenticated);
    let right = open(&address, Some(TOKEN), pin).await;
    assert_eq!(code(right).await, Code::Ok);
}

#[test]
fn the_wrong_kind_of_client_fails_in_one_clear_line() {
    let daemon = Daemon::builder().tls().tcp().start();
    let config = daemon.dir.path().join("config");
    let tls_port = daemon.tls_address().to_string();
    let tls_port = tls_port.rsplit(':').next().unwrap();
    let plaintext_to_tls: Address = format!("http://127.0.0.1:{tls_port}").parse().unwrap();
    let output = ctl(&config, &plaintext_to_tls, &["status"]);
    assert_refused(&output, &["tls:// listener", "https://"]);

    let tcp_port = daemon.tcp_address().to_string();
    let tcp_port = tcp_port.rsplit(':').next().unwrap();
    let tls_to_plaintext: Address = format!("https://127.0.0.1:{tcp_port}").parse().unwrap();
    let fingerprint = fingerprint_of(&daemon.data_dir.join("tls/cert.pem")).to_string();
    let output = ctl(
        &config,
        &tls_to_plaintext,
        &["--tls-fingerprint", &fingerprint, "status"],
    );
    assert_refused(&output, &["no TLS at this address", "http://"]);
}

#[test]
fn settings_are_checked_at_start() {
    let dir = tempfile::Builder::new()
        .prefix("outpost-test")
        .tempdir()
        .unwrap();
    let start = |args: &[&str]| {
        daemon_command(
            &dir.path().join("data"),
            &dir.path().join("run/outpostd.sock"),
        )
        .env("OUTPOST_TOKEN", TOKEN)
        .args(args)
        .output()
        .unwrap()
    };
    let assert_setting = |output: Output, needles: &[&str]| {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        let line = message
            .lines()
            .find(|line| line.starts_with("outpostd: "))
            .unwrap_or_else(|| panic!("no error line: {message}"));
        for needle in needles {
            assert!(line.contains(needle), "{needle:?} missing in: {line}");
        }
    };
    assert_setting(
        start(&["--listen", "tcp://0.0.0.0:0"]),
        &[
            "--listen",
            "not a loopback address",
            "--insecure-listen",
            "tls://",
        ],
    );
    // Insisting lets it start (start() waits until it serves).
    drop(
        Daemon::builder()
            .tcp()
            .arg("--listen")
            .arg("tcp://0.0.0.0:0")
            .arg("--insecure-listen")
            .start(),
    );

    let junk = dir.path().join("junk.pem");
    fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    assert_setting(
        start(&[
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            junk,
            "--tls-key",
            junk,
        ]),
        &["--tls-cert", "no PEM certificate"],
    );
    let pki = Pki::new("outpost test CA");
    let (cert, _) = pki.issue("server", &["127.0.0.1"]);
    let (_, other_key) = pki.issue("other", &["127.0.0.1"]);
    assert_setting(
        start(&[
            "--listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            other_key.to_str().unwrap(),
        ]),
        &["--tls-key"],
    );
    assert_setting(
        start(&["--tls-client-ca", junk]),
        &["--tls-client-ca", "TLS listener"],
    );
}

#[test]
fn grpcurl_calls_over_tls_with_the_certificate_as_ca() {
    let daemon = Daemon::builder().tls().start();
    let target = daemon.tls_address().to_string();
    let target = target.strip_prefix("https://").unwrap().to_owned();
    let cert = daemon.data_dir.join("tls/cert.pem");
    let grpcurl = |flags: &[&str]| {
        run(Command::new("grpcurl")
            .args(["-max-time", GRPCURL_MAX_SECONDS])
            .args(flags)
            .arg(&target)
            .arg("outpost.v1.Orchestrator/GetDaemonStatus"))
    };
    let cacert = cert.to_str().unwrap();
    let bearer = format!("authorization: Bearer {TOKEN}");
    let output = grpcurl(&["-cacert", cacert, "-H", &bearer]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["tlsFingerprint"],
        fingerprint_of(&cert).to_string(),
        "{json}"
    );
    // Without the certificate grpcurl does not trust the daemon, and
    // without the token the daemon does not answer it.
    assert!(!grpcurl(&["-H", &bearer]).status.success());
    let unauthenticated = grpcurl(&["-cacert", cacert]);
    assert!(!unauthenticated.status.success());
    assert!(
        stderr(&unauthenticated).contains("Unauthenticated"),
        "{}",
        stderr(&unauthenticated)
    );
}
