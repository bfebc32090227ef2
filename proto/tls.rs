//! TLS as both ends see it: the SHA-256 fingerprint a certificate is
//! known by, how a client decides the server is the daemon it means, and
//! how a failed handshake is told apart from other transport errors so
//! that it can be explained in one line.

use std::{error::Error as StdError, fmt, io, str::FromStr, sync::Arc};

use rustls::{
    DigitallySignedStruct, Error as RustlsError, OtherError, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use sha2::{Digest, Sha256};

/// rustls' words for what went wrong, for clients that explain failures.
pub use rustls::{AlertDescription, Error as TlsError};

/// The SHA-256 digest of a certificate's DER encoding: what `openssl x509
/// -noout -fingerprint -sha256` prints, and how a pinned daemon is known.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of the DER-encoded certificate `der`.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

/// Colon-separated pairs of upper-case hex digits, as openssl prints them,
/// so that the two can be compared by eye.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// 64 hex digits in either case, with or without colons between pairs,
/// optionally after `SHA256:` or `sha256=` (how tools label it).
impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "expected a SHA-256 fingerprint: 64 hex digits, colons between pairs allowed";
        let trimmed = text.trim();
        let body = ["sha256:", "sha256=", "sha256 fingerprint="]
            .iter()
            .find_map(|prefix| {
                trimmed
                    .get(..prefix.len())
                    .filter(|head| head.eq_ignore_ascii_case(prefix))
                    .map(|_| &trimmed[prefix.len()..])
            })
            .unwrap_or(trimmed);
        let digits: String = body.chars().filter(|&c| c != ':').collect();
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(usage.to_owned());
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| usage.to_owned())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| usage.to_owned())?;
        }
        Ok(Self(bytes))
    }
}

/// The message of the UNAUTHENTICATED status a daemon that requires client
/// certificates answers a TLS call without one with.
pub const CLIENT_CERT_REQUIRED: &str = "this daemon requires a client certificate (mutual TLS): present one issued by its --tls-client-ca";

/// How a client decides that the server it reached is the daemon it means.
#[derive(Clone, Debug, Default)]
pub enum ServerTrust {
    /// A chain to the system's roots (the OS store, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`) with the address's host name in the certificate.
    #[default]
    SystemRoots,
    /// A chain to one of these CA certificates (PEM), host name checked.
    Ca(Vec<u8>),
    /// Exactly the certificate with this fingerprint, whatever its issuer
    /// and names: one given on the command line, or pinned before.
    Fingerprint {
        /// The fingerprint the server's certificate must have.
        expected: Fingerprint,
        /// Whether it was pinned with `outpostctl trust` (not given as a flag).
        pinned: bool,
    },
    /// No certificate is accepted: the handshake fails with
    /// [`CertificateRefused`] naming what the server presented (how
    /// `outpostctl trust` learns the fingerprint before pinning it).
    Inspect,
}

/// A client certificate and its key, both PEM, for mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain (PEM).
    pub cert: Vec<u8>,
    /// Its private key (PEM).
    pub key: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(..)")
    }
}

/// TLS settings of a client connection (used with `https://` addresses).
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// How the server is verified.
    pub trust: ServerTrust,
    /// The client's own certificate, when the daemon requires one.
    pub identity: Option<ClientIdentity>,
}

/// Why a server certificate was refused by fingerprint.
#[derive(Clone, Debug)]
pub struct CertificateRefused {
    /// What the server presented.
    pub presented: Fingerprint,
    /// What was expected; `None` when only inspecting.
    pub expected: Option<Fingerprint>,
    /// Whether the expected one was pinned (rather than given as a flag).
    pub pinned: bool,
}

impl fmt::Display for CertificateRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expected {
            Some(expected) => write!(
                f,
                "the server's certificate has fingerprint {} but {expected} was expected",
                self.presented
            ),
            None => write!(
                f,
                "the server presents a certificate with fingerprint {}",
                self.presented
            ),
        }
    }
}

impl StdError for CertificateRefused {}

/// Accepts exactly the certificate with the expected fingerprint; the
/// handshake's signatures are still checked against it, so a server has
/// to hold the certificate's key, not just show the certificate.
#[derive(Debug)]
pub(crate) struct FingerprintVerifier {
    expected: Option<Fingerprint>,
    pinned: bool,
    provider: Arc<CryptoProvider>,
}

impl FingerprintVerifier {
    /// A verifier for `expected`; `None` refuses every certificate, naming it.
    #[expect(
        deprecated,
        reason = "ring is the provider tonic's tls-ring feature builds on; only its signature checks are used here, key exchange stays tonic's"
    )]
    pub(crate) fn new(expected: Option<Fingerprint>, pinned: bool) -> Self {
        Self {
            expected,
            pinned,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        let presented = Fingerprint::of(end_entity);
        if self.expected == Some(presented) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(RustlsError::Other(OtherError(Arc::new(
            CertificateRefused {
                presented,
                expected: self.expected,
                pinned: self.pinned,
            },
        ))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What went wrong in a TLS handshake, found in an error's chain.
#[derive(Debug)]
pub enum TlsProblem<'a> {
    /// The certificate was refused by fingerprint (or only inspected).
    Refused(&'a CertificateRefused),
    /// Any other TLS error, as rustls reports it.
    Tls(&'a RustlsError),
}

/// Looks through `err` and its sources for a TLS failure. The I/O errors
/// rustls returns hide their payload from `source()`, so they are opened
/// here.
pub fn tls_problem<'a>(err: &'a (dyn StdError + 'static)) -> Option<TlsProblem<'a>> {
    let mut next = Some(err);
    while let Some(current) = next {
        let inner = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map(|inner| inner as &(dyn StdError + 'static));
        for candidate in [Some(current), inner].into_iter().flatten() {
            if let Some(refused) = candidate.downcast_ref::<CertificateRefused>() {
                return Some(TlsProblem::Refused(refused));
            }
            if let Some(tls) = candidate.downcast_ref::<RustlsError>() {
                if let RustlsError::Other(OtherError(other)) = tls
                    && let Some(refused) = other.downcast_ref::<CertificateRefused>()
                {
                    return Some(TlsProblem::Refused(refused));
                }
                return Some(TlsProblem::Tls(tls));
            }
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_as_openssl_and_parse_leniently() {
        let print = Fingerprint::of(b"certificate").to_string();
        assert_eq!(print.len(), 32 * 3 - 1);
        assert!(print.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
        for text in [
            print.clone(),
            print.to_lowercase(),
            print.replace(':', ""),
            format!("SHA256:{print}"),
            format!("sha256 Fingerprint={print}"),
        ] {
            assert_eq!(
                text.parse::<Fingerprint>().unwrap(),
                Fingerprint::of(b"certificate")
            );
        }
        for bad in ["", "abc", &print[3..], &"G".repeat(64)] {
            assert!(
                bad.parse::<Fingerprint>().is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn refusals_are_found_behind_io_errors() {
        let refused = CertificateRefused {
            presented: Fingerprint::of(b"a"),
            expected: Some(Fingerprint::of(b"b")),
            pinned: true,
        };
        let tls = RustlsError::Other(OtherError(Arc::new(refused)));
        let io = io::Error::new(io::ErrorKind::InvalidData, tls);
        match tls_problem(&io) {
            Some(TlsProblem::Refused(found)) => assert_eq!(found.presented, Fingerprint::of(b"a")),
            other => panic!("not found: {other:?}"),
        }
        assert!(tls_problem(&io::Error::other("plain")).is_none());
    }
}
