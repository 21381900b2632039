//! Fetching a peer's JWKS: reqwest on a rustls configuration built on the
//! **ring** provider (the one sqlx and mongodb use in this workspace: a
//! binary holding two rustls providers panics on first TLS use, BROKER.md
//! §3.5), web PKI roots, no redirects, one timeout over the whole exchange
//! and a size cap enforced while the body streams in.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::ACCEPT;

use crate::error::IssuerError;

/// A TLS client configuration on the ring provider, trusting the web PKI
/// roots (`webpki-roots`). Use it for any other HTTPS client of the broker
/// too, so that the binary holds one rustls provider.
pub fn tls_config() -> Result<rustls::ClientConfig, IssuerError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    tls_config_with_roots(roots)
}

/// As [`tls_config`], trusting `roots` only (a private CA).
pub fn tls_config_with_roots(
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, IssuerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| IssuerError::Config("no TLS protocol version available".into()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTP client that fetches peers' key sets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerHttp {
    client: reqwest::Client,
}

/// Why a fetch failed (logged and counted; never holds the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// No connection, TLS failure, or a broken response.
    Transport,
    /// The whole exchange did not end within the timeout.
    Timeout,
    /// A status other than 2xx (redirects are not followed).
    Status(u16),
    /// The body is larger than the cap.
    TooLarge,
}

impl FetchError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Transport => "transport error",
            Self::Timeout => "timed out",
            Self::Status(s) if (300..400).contains(&s) => "redirect refused",
            Self::Status(_) => "error status",
            Self::TooLarge => "document too large",
        }
    }
}

impl PeerHttp {
    /// A client with [`tls_config`].
    pub fn new() -> Result<Self, IssuerError> {
        Self::with_tls(tls_config()?)
    }

    /// A client with the given TLS configuration (build it on the ring
    /// provider, see [`tls_config_with_roots`]).
    pub fn with_tls(tls: rustls::ClientConfig) -> Result<Self, IssuerError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("broker-issuer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| IssuerError::Config("the HTTP client cannot be built".into()))?;
        Ok(Self { client })
    }

    /// GET `url` with `Accept: application/json`: the body of a 2xx
    /// answer of at most `cap` bytes, all within `timeout`.
    pub(crate) async fn get(
        &self,
        url: &Url,
        timeout: Duration,
        cap: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let exchange = async {
            let mut response = self
                .client
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let announced = response.content_length().unwrap_or(0);
            if announced > cap as u64 {
                return Err(FetchError::TooLarge);
            }
            let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(cap).min(cap));
            while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
                if body.len() + chunk.len() > cap {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        // reqwest's own timeout covers the same span; this one also bounds
        // anything it does not (a resolver that hangs).
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }
}

fn transport(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Transport
    }
}
