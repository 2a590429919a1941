//! The one place that talks HTTP: ureq with rustls, a per-request timeout that never outlives
//! the caller's deadline, a cap on every response body, no redirects followed here (a redirect
//! could carry the token to another host: the Vault client decides, see
//! `vault::client::Vault::redirect_target`), and errors sorted into retryable and final.

use std::fmt;
use std::time::Duration;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use zeroize::Zeroizing;

pub struct Http {
    agent: ureq::Agent,
    request_timeout: Duration,
    body_limit: u64,
}

/// A response of any status. The body is zeroized on drop: it may hold a token or a key.
pub struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
    pub retry_after: Option<Duration>,
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Could not connect, or the connection broke: worth retrying.
    Connect(String),
    /// No complete answer in time: worth retrying while the deadline allows.
    Timeout(Duration),
    /// The server sent more than we accept.
    TooLarge(u64),
    /// TLS failed: certificate not trusted, wrong name, handshake refused. Final.
    Tls(String),
    /// Anything else ureq reports (bad URL, protocol error). Final.
    Other(String),
}

impl HttpError {
    pub fn retryable(&self) -> bool {
        matches!(self, HttpError::Connect(_) | HttpError::Timeout(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(m) => write!(f, "cannot connect: {m}"),
            HttpError::Timeout(d) => write!(f, "no answer within {:.1}s", d.as_secs_f64()),
            HttpError::TooLarge(n) => write!(f, "response larger than {n} bytes, refused"),
            HttpError::Tls(m) => write!(f, "TLS error: {m}"),
            HttpError::Other(m) => write!(f, "{m}"),
        }
    }
}

/// Vault's retry rule for an HTTP status (its api client's DefaultRetryPolicy).
pub fn status_retryable(status: u16) -> bool {
    status == 412 || status == 429 || (status >= 500 && status != 501)
}

pub enum Method {
    Get,
    Post,
}

/// Connect somewhere else than the URL says, keeping the URL's host for TLS (SNI and
/// certificate check): how `tls_server_name` works.
#[derive(Debug)]
struct ConnectTo {
    name: String,
    real: String,
    inner: DefaultResolver,
}

impl Resolver for ConnectTo {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if uri.host() == Some(self.name.as_str()) {
            let port = uri.port_u16().unwrap_or(443);
            let real: ureq::http::Uri = format!("https://{}:{port}/", self.real)
                .parse()
                .map_err(|_| ureq::Error::BadUri(self.real.clone()))?;
            return self.inner.resolve(&real, config, timeout);
        }
        self.inner.resolve(uri, config, timeout)
    }
}

pub struct HttpOptions {
    pub request_timeout: Duration,
    pub body_limit: u64,
    pub tls: ureq::tls::TlsConfig,
    /// (name in the URL, host to connect to) for `tls_server_name`.
    pub connect_to: Option<(String, String)>,
    /// Honour HTTP(S)_PROXY from the environment (Vault yes, link-local metadata no).
    pub use_env_proxy: bool,
}

impl Http {
    pub fn new(o: HttpOptions) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("vault-luks/", env!("CARGO_PKG_VERSION")))
            .tls_config(o.tls)
            .proxy(if o.use_env_proxy {
                ureq::Proxy::try_from_env()
            } else {
                None
            })
            .build();
        let agent = match o.connect_to {
            Some((name, real)) => ureq::Agent::with_parts(
                config,
                DefaultConnector::default(),
                ConnectTo {
                    name,
                    real,
                    inner: DefaultResolver::default(),
                },
            ),
            None => ureq::Agent::new_with_config(config),
        };
        Http {
            agent,
            request_timeout: o.request_timeout,
            body_limit: o.body_limit,
        }
    }

    /// One request, bounded by min(request timeout, `time_left`).
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time_left: Duration,
    ) -> Result<Reply, HttpError> {
        let timeout = self.request_timeout.min(time_left);
        if timeout.is_zero() {
            return Err(HttpError::Timeout(timeout));
        }
        fn prepare<B>(
            req: ureq::RequestBuilder<B>,
            headers: &[(&str, &str)],
            timeout: Duration,
        ) -> ureq::RequestBuilder<B> {
            let req = req.config().timeout_global(Some(timeout)).build();
            headers.iter().fold(req, |req, (k, v)| req.header(*k, *v))
        }
        let result = match method {
            Method::Get => prepare(self.agent.get(url), headers, timeout).call(),
            Method::Post => prepare(self.agent.post(url), headers, timeout)
                .header("Content-Type", "application/json")
                .send(body),
        };
        let mut response = result.map_err(|e| classify(e, timeout, self.body_limit))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after").and_then(|v| crate::retry::parse_retry_after(&v));
        let location = header("location");
        let body = response
            .body_mut()
            .with_config()
            .limit(self.body_limit)
            .read_to_vec()
            .map_err(|e| classify(e, timeout, self.body_limit))?;
        Ok(Reply {
            status,
            body: Zeroizing::new(body),
            retry_after,
            location,
        })
    }
}

fn classify(e: ureq::Error, timeout: Duration, limit: u64) -> HttpError {
    match e {
        ureq::Error::Timeout(_) => HttpError::Timeout(timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            HttpError::Timeout(timeout)
        }
        // rustls reports handshake and certificate failures as InvalidData I/O errors: they
        // are configuration problems, not something a retry fixes.
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            HttpError::Tls(io.to_string())
        }
        ureq::Error::Io(io) => HttpError::Connect(io.to_string()),
        // The connection closed without an answer, or with something that is not HTTP: a
        // server restarting or a proxy dropping us. Vault's client retries these (any
        // transport error), and so do we.
        ureq::Error::Protocol(p) => HttpError::Connect(format!("no HTTP answer ({p})")),
        ureq::Error::ConnectionFailed => HttpError::Connect("connection failed".to_string()),
        ureq::Error::HostNotFound => HttpError::Connect("host name not found".to_string()),
        ureq::Error::BodyExceedsLimit(_) => HttpError::TooLarge(limit),
        ureq::Error::LargeResponseHeader(..) => HttpError::TooLarge(limit),
        ureq::Error::Tls(m) => HttpError::Tls(m.to_string()),
        ureq::Error::Rustls(r) => HttpError::Tls(r.to_string()),
        ureq::Error::Pem(p) => HttpError::Tls(format!("bad PEM: {p}")),
        other => HttpError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_retry_policy_matches_vaults_client() {
        for s in [412, 429, 500, 502, 503, 504] {
            assert!(status_retryable(s), "{s}");
        }
        for s in [200, 204, 307, 400, 401, 403, 404, 405, 501] {
            assert!(!status_retryable(s), "{s}");
        }
    }

    #[test]
    fn connection_trouble_is_retryable_tls_trouble_is_not() {
        assert!(HttpError::Connect("refused".into()).retryable());
        assert!(HttpError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!HttpError::Tls("UnknownIssuer".into()).retryable());
        assert!(!HttpError::TooLarge(10).retryable());
    }
}
