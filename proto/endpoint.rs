//! Client side of the transport: parses daemon addresses and opens tonic
//! channels over a Unix socket, TCP or TLS, with the bearer token attached.
//! Used by `outpostctl`, the tests and the benchmarks.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::health_client::HealthClient;

use crate::{
    proto::v1::{
        history_client::HistoryClient, orchestrator_client::OrchestratorClient,
        sync_client::SyncClient,
    },
    tls::{ClientTls, FingerprintVerifier, ServerTrust},
    token::Token,
};

/// Largest Sync response a client accepts: a listing with content of
/// 10,000 templates of 5 KiB.
pub const MAX_SYNC_RESPONSE: usize = 64 << 20;
/// Where a daemon listens: `unix:///path/to/sock`, `http://host:port` or
/// `https://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP endpoint as an `http://host:port` URI.
    Tcp(String),
    /// A TLS endpoint as an `https://host:port` URI.
    Tls(String),
}

impl Address {
    /// The host of a TCP or TLS address, without the brackets of an IPv6
    /// address (the name a certificate must carry).
    pub fn host(&self) -> Option<&str> {
        let (Self::Tcp(uri) | Self::Tls(uri)) = self else {
            return None;
        };
        let rest = uri.split_once("://").map_or(uri.as_str(), |(_, rest)| rest);
        let (host, _) = rest.rsplit_once(':')?;
        Some(host.trim_start_matches('[').trim_end_matches(']'))
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{text:?}: a unix address needs an absolute path, e.g. unix:///run/outpostd.sock"
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        for (scheme, tls) in [("http", false), ("https", true)] {
            let Some(rest) = text
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
            else {
                continue;
            };
            let usage = || format!("{text:?}: expected {scheme}://HOST:PORT");
            let (host, port) = rest
                .trim_end_matches('/')
                .rsplit_once(':')
                .ok_or_else(usage)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(usage());
            }
            let uri = format!("{scheme}://{host}:{port}");
            return Ok(if tls { Self::Tls(uri) } else { Self::Tcp(uri) });
        }
        Err(format!(
            "{text:?}: expected unix:///PATH, http://HOST:PORT or https://HOST:PORT"
        ))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(uri) | Self::Tls(uri) => f.write_str(uri),
        }
    }
}

/// Adds `authorization: Bearer …` to every request when a token is set.
#[derive(Clone, Default)]
pub struct BearerAuth(Option<AsciiMetadataValue>);

impl BearerAuth {
    /// Attaches `token` (if any) to requests.
    pub fn new(token: Option<&Token>) -> Self {
        // A validated token is printable ASCII, so it is a valid header value.
        Self(token.and_then(|token| token.header_value().parse().ok()))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel with the token interceptor, as the generated clients take it.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// An open connection to a daemon.
#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    auth: BearerAuth,
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Limit for establishing the connection.
    pub connect_timeout: Duration,
    /// Deadline of every request, if any (leave unset for long streams).
    pub request_timeout: Option<Duration>,
    /// How an `https://` address is verified, and the client certificate.
    pub tls: ClientTls,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            tls: ClientTls::default(),
        }
    }
}

impl Connection {
    /// Connects to `address`. The connection window is raised to the
    /// maximum so that a fast stream of small messages cannot make h2 drop
    /// the connection (`too_many_data_frames`).
    pub async fn open(
        address: &Address,
        token: Option<&Token>,
        options: &ConnectOptions,
    ) -> Result<Self, tonic::transport::Error> {
        let uri = match address {
            // The URI is not used to connect; it only fills :authority.
            Address::Unix(_) => "http://localhost".to_owned(),
            Address::Tcp(uri) | Address::Tls(uri) => uri.clone(),
        };
        let mut endpoint = Endpoint::from_shared(uri)?
            .connect_timeout(options.connect_timeout)
            .initial_connection_window_size(Some((1 << 31) - 1))
            .initial_stream_window_size(Some(16 << 20))
            .tcp_nodelay(true);
        if let Some(timeout) = options.request_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        let channel = match address {
            Address::Unix(path) => {
                let path = path.clone();
                endpoint
                    .connect_with_connector(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await?
            }
            Address::Tcp(_) => endpoint.connect().await?,
            Address::Tls(_) => {
                let host = address.host().unwrap_or_default();
                tls_endpoint(endpoint, host, &options.tls, options.connect_timeout)?
                    .connect()
                    .await?
            }
        };
        Ok(Self {
            channel,
            auth: BearerAuth::new(token),
        })
    }

    /// The channel with the token attached, for a client of any service.
    pub fn intercepted(&self) -> AuthChannel {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    /// A client of the Orchestrator service.
    pub fn orchestrator(&self) -> OrchestratorClient<AuthChannel> {
        OrchestratorClient::new(self.intercepted())
    }

    /// A client of the Sync service. It accepts responses up to
    /// [`MAX_SYNC_RESPONSE`]: a listing with content of a large template
    /// set is bigger than tonic's default 4 MiB.
    pub fn sync(&self) -> SyncClient<AuthChannel> {
        SyncClient::new(self.intercepted()).max_decoding_message_size(MAX_SYNC_RESPONSE)
    }

    /// A client of the History service; a version's content is as large
    /// as the Sync service's.
    pub fn history(&self) -> HistoryClient<AuthChannel> {
        HistoryClient::new(self.intercepted()).max_decoding_message_size(MAX_SYNC_RESPONSE)
    }

    /// A client of `grpc.health.v1.Health`.
    pub fn health(&self) -> HealthClient<AuthChannel> {
        HealthClient::new(self.intercepted())
    }
}

/// `endpoint` with TLS as `tls` says. Fingerprints replace rustls'
/// verifier; the other modes keep it (chain and host name checked).
fn tls_endpoint(
    endpoint: Endpoint,
    host: &str,
    tls: &ClientTls,
    handshake_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    let mut config = ClientTlsConfig::new()
        .domain_name(host)
        .timeout(handshake_timeout);
    if let Some(identity) = &tls.identity {
        config = config.identity(Identity::from_pem(&identity.cert, &identity.key));
    }
    match &tls.trust {
        ServerTrust::SystemRoots => endpoint.tls_config(config.with_native_roots()),
        ServerTrust::Ca(pem) => {
            endpoint.tls_config(config.ca_certificate(Certificate::from_pem(pem)))
        }
        ServerTrust::Fingerprint { expected, pinned } => endpoint.tls_config_with_verifier(
            config,
            Arc::new(FingerprintVerifier::new(Some(*expected), *pinned)),
        ),
        ServerTrust::Inspect => endpoint
            .tls_config_with_verifier(config, Arc::new(FingerprintVerifier::new(None, false))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        for text in [
            "unix:///run/outpost/outpostd.sock",
            "http://127.0.0.1:4200",
            "https://[::1]:7443",
        ] {
            assert_eq!(text.parse::<Address>().unwrap().to_string(), text);
        }
        assert_eq!(
            "https://[::1]:7443".parse::<Address>().unwrap().host(),
            Some("::1")
        );
        for bad in [
            "unix://relative.sock",
            "http://nohost",
            "https://:1",
            "tcp://127.0.0.1:1",
            "/abs/path",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad} should be rejected");
        }
    }
}
