//! TLS on the client: the flags that say how an `https://` daemon is
//! verified, the pins `outpostctl trust` keeps (like ssh's known_hosts),
//! and one readable line for each way a handshake fails.

use std::{
    error::Error as StdError,
    fs,
    io::{self, BufRead, IsTerminal, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args;
use outpost::{
    endpoint::{Address, ConnectOptions, Connection},
    paths,
    tls::{
        AlertDescription, CLIENT_CERT_REQUIRED, CertificateRefused, ClientIdentity, ClientTls,
        Fingerprint, ServerTrust, TlsError, TlsProblem, tls_problem,
    },
};

use crate::failure::Failure;

/// Largest PEM file or known_hosts read.
const MAX_FILE: u64 = 1 << 20;

/// How an `https://` address is verified (without one of these: a pin
/// from `outpostctl trust`, else the system's roots).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Verify an https:// daemon against the CA certificates in this file (PEM)
    #[arg(long, env = "OUTPOST_TLS_CA", global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Accept exactly the https:// daemon certificate with this SHA-256 fingerprint
    #[arg(
        long,
        env = "OUTPOST_TLS_FINGERPRINT",
        global = true,
        value_name = "SHA256-HEX"
    )]
    tls_fingerprint: Option<Fingerprint>,

    /// Client certificate (PEM) for a daemon that requires one (mutual TLS)
    #[arg(
        long = "tls-cert",
        env = "OUTPOST_TLS_CLIENT_CERT",
        global = true,
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert
    #[arg(
        long = "tls-key",
        env = "OUTPOST_TLS_CLIENT_KEY",
        global = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

/// `outpostctl trust https://HOST:PORT`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The daemon's https:// address
    address: Address,
    /// Pin without asking (for scripts; check the fingerprint another way, or pass --tls-fingerprint)
    #[arg(long)]
    yes: bool,
}

/// The TLS settings for `address` from the flags and the pins.
pub fn client_tls(args: &TlsArgs, address: &Address) -> Result<ClientTls, Failure> {
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ClientIdentity {
            cert: read("--tls-cert", cert)?,
            key: read("--tls-key", key)?,
        }),
        _ => None,
    };
    let trust = if let Some(expected) = args.tls_fingerprint {
        ServerTrust::Fingerprint {
            expected,
            pinned: false,
        }
    } else if let Some(ca) = &args.tls_ca {
        ServerTrust::Ca(read("--tls-ca", ca)?)
    } else if !matches!(address, Address::Tls(_)) {
        ServerTrust::SystemRoots
    } else {
        match KnownHosts::load()?.pin(address) {
            Some(expected) => ServerTrust::Fingerprint {
                expected,
                pinned: true,
            },
            None => ServerTrust::SystemRoots,
        }
    };
    Ok(ClientTls { trust, identity })
}

/// `outpostctl trust`: learns the certificate's fingerprint from a
/// handshake, shows it, asks, and pins it.
pub async fn trust(
    args: TrustArgs,
    tls: &TlsArgs,
    timeout: std::time::Duration,
) -> Result<ExitCode, Failure> {
    let address = args.address;
    if !matches!(address, Address::Tls(_)) {
        return Err(Failure::Input(format!(
            "trust: {address} is not an https:// address; only TLS daemons have a certificate to pin"
        )));
    }
    let mut client = client_tls(tls, &address)?;
    client.trust = ServerTrust::Inspect;
    let options = ConnectOptions {
        connect_timeout: timeout,
        request_timeout: Some(timeout),
        tls: client,
    };
    let presented = match Connection::open(&address, None, &options).await {
        Err(err) => match tls_problem(&err) {
            Some(TlsProblem::Refused(refused)) => refused.presented,
            _ => {
                return Err(Failure::Connect {
                    address,
                    source: err,
                });
            }
        },
        Ok(_) => {
            return Err(Failure::Input(format!(
                "trust: {address} completed a handshake without a certificate to pin"
            )));
        }
    };
    if let Some(expected) = tls.tls_fingerprint
        && expected != presented
    {
        return Err(Failure::Input(format!(
            "trust: {address} presents certificate {presented}, not the --tls-fingerprint {expected}; nothing pinned"
        )));
    }
    let mut known = KnownHosts::load()?;
    let previous = known.pin(&address);
    if previous == Some(presented) {
        crate::output::outln!("{address} is already trusted: SHA-256 {presented}");
        return Ok(ExitCode::SUCCESS);
    }
    crate::output::outln!(
        "{address} presents a certificate with SHA-256 fingerprint\n  {presented}"
    );
    if let Some(previous) = previous {
        crate::output::outln!("It replaces the one pinned before:\n  {previous}");
    }
    if !args.yes && tls.tls_fingerprint.is_none() && !confirm()? {
        return Err(Failure::Input("trust: not pinned".to_owned()));
    }
    known.set(&address, presented);
    known.save()?;
    crate::output::outln!("pinned in {}", known.path.display());
    Ok(ExitCode::SUCCESS)
}

/// Asks y/N on the terminal; without one, the user must say --yes.
fn confirm() -> Result<bool, Failure> {
    if !io::stdin().is_terminal() {
        return Err(Failure::Input(
            "trust: no terminal to ask on; compare the fingerprint with the daemon's log or `outpostctl status` and pass --yes (or --tls-fingerprint)".to_owned(),
        ));
    }
    eprint!("Trust it? [y/N] ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The pins: one line per daemon, `https://HOST:PORT FINGERPRINT`; lines
/// starting with `#` and blank lines are kept as they are.
struct KnownHosts {
    path: PathBuf,
    lines: Vec<String>,
}

impl KnownHosts {
    fn load() -> Result<Self, Failure> {
        let path = paths::default_known_hosts().ok_or_else(|| {
            Failure::Input(
                "known_hosts: HOME is not set; pass --tls-ca or --tls-fingerprint".to_owned(),
            )
        })?;
        let text = match outpost::bounded_read::read_to_string(&path, MAX_FILE) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(Failure::Input(format!(
                    "cannot read {}: {err}",
                    path.display()
                )));
            }
        };
        Ok(Self {
            path,
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    /// The fingerprint pinned for `address`; a line that does not parse
    /// pins nothing.
    fn pin(&self, address: &Address) -> Option<Fingerprint> {
        let name = address.to_string();
        self.lines.iter().find_map(|line| {
            let (host, fingerprint) = line.trim().split_once(char::is_whitespace)?;
            (host == name).then(|| fingerprint.trim().parse().ok())?
        })
    }

    fn set(&mut self, address: &Address, fingerprint: Fingerprint) {
        let name = address.to_string();
        let line = format!("{name} {fingerprint}");
        let mine = |line: &String| line.split_whitespace().next() == Some(name.as_str());
        match self.lines.iter_mut().find(|line| mine(line)) {
            Some(existing) => *existing = line,
            None => self.lines.push(line),
        }
    }

    /// Writes the file through a temporary one and a rename, so that a
    /// failed write never loses the other pins.
    fn save(&self) -> Result<(), Failure> {
        let failed =
            |err: io::Error| Failure::Input(format!("cannot write {}: {err}", self.path.display()));
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(failed)?;
        }
        let temp = self.path.with_extension("tmp");
        let mut text = self.lines.join("\n");
        text.push('\n');
        let write = |path: &Path| -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        write(&temp).map_err(failed)?;
        fs::rename(&temp, &self.path).map_err(failed)
    }
}

/// Reads a PEM file named by `flag`.
fn read(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    outpost::bounded_read::read(path, MAX_FILE)
        .map_err(|err| Failure::Input(format!("{flag}: cannot read {}: {err}", path.display())))
}

/// One line for a TLS failure found in `err`'s chain, naming what to do;
/// `None` when it is not a TLS failure.
pub fn explain(err: &(dyn StdError + 'static), address: Option<&Address>) -> Option<String> {
    let retrust = address.map_or_else(
        || "outpostctl trust https://HOST:PORT".to_owned(),
        |address| format!("outpostctl trust {address}"),
    );
    Some(match tls_problem(err)? {
        TlsProblem::Refused(CertificateRefused {
            presented,
            expected: Some(expected),
            pinned: true,
        }) => format!(
            "THE DAEMON'S CERTIFICATE CHANGED: pinned {expected}, presented {presented}; refusing to connect. If the change is expected (a new certificate), run `{retrust}` again"
        ),
        TlsProblem::Refused(refused) => format!(
            "{refused}; refusing to connect (--tls-fingerprint)"
        ),
        TlsProblem::Tls(TlsError::InvalidCertificate(cause)) => format!(
            "the daemon's certificate is not trusted ({cause:?}): pass --tls-ca FILE or --tls-fingerprint SHA256-HEX, or pin it with `{retrust}`"
        ),
        TlsProblem::Tls(TlsError::InvalidMessage(_)) => format!(
            "no TLS at this address (is it a tcp:// listener? use http://HOST:PORT for those): {}",
            tls_problem_text(err)
        ),
        TlsProblem::Tls(TlsError::AlertReceived(AlertDescription::CertificateRequired)) => {
            "the daemon requires a client certificate (mutual TLS): pass --tls-cert FILE --tls-key FILE".to_owned()
        }
        TlsProblem::Tls(TlsError::AlertReceived(alert)) => format!(
            "the daemon ended the TLS handshake ({alert:?}); if it requires client certificates, check --tls-cert and --tls-key"
        ),
        TlsProblem::Tls(other) => format!("TLS: {other}"),
    })
}

/// One line for a call that failed in the transport: a TLS failure, or
/// a connection the daemon closed unanswered, which is what a plaintext
/// client sees from a TLS listener (its HTTP/2 preface is no handshake).
pub fn explain_status(status: &tonic::Status) -> Option<String> {
    if status.code() == tonic::Code::Unauthenticated && status.message() == CLIENT_CERT_REQUIRED {
        return Some(
            "the daemon requires a client certificate (mutual TLS): pass --tls-cert FILE --tls-key FILE"
                .to_owned(),
        );
    }
    // A TLS listener may answer a plaintext client's HTTP/2 preface with an
    // alert record before closing, which HTTP/2 reads as a broken frame.
    if status.code() == tonic::Code::Internal && status.message().contains("h2 protocol error") {
        return Some(format!(
            "the daemon's answer is not HTTP/2 ({}); if the address is its tls:// listener, use --addr https://HOST:PORT",
            status.message()
        ));
    }
    if !matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Unavailable
    ) {
        return None;
    }
    let source = status.source()?;
    if let Some(line) = explain(source, None) {
        return Some(line);
    }
    let mut next = Some(source);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // h2 keeps only the kind and the text of an I/O error, so a
            // TLS alert that arrives after the handshake is known by its
            // words alone.
            let text = io.to_string();
            if text.contains("received fatal alert") {
                return Some(format!(
                    "the daemon ended the TLS session ({text}); if it requires client certificates, check --tls-cert and --tls-key"
                ));
            }
            if matches!(
                io.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
            ) {
                return Some(format!(
                    "the daemon closed the connection without answering ({io}); if the address is its tls:// listener, use --addr https://HOST:PORT"
                ));
            }
        }
        next = err.source();
    }
    // A connection that ended in the middle of HTTP/2 without saying why:
    // what a plaintext client also sees from a TLS listener at times.
    (status.code() == tonic::Code::Unknown && status.message() == "transport error").then(|| {
        "the connection ended without an answer (transport error); if the address is the \
         daemon's tls:// listener, use --addr https://HOST:PORT"
            .to_owned()
    })
}

/// rustls' own words for the problem in `err`.
fn tls_problem_text(err: &(dyn StdError + 'static)) -> String {
    match tls_problem(err) {
        Some(TlsProblem::Tls(tls)) => tls.to_string(),
        Some(TlsProblem::Refused(refused)) => refused.to_string(),
        None => err.to_string(),
    }
}
