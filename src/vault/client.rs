//! A Vault API client: several addresses (HA: the next one on connection trouble, 5xx or a
//! standby's redirect), the private CA and client certificate, namespace, retries as Vault's own
//! client does them, all inside the caller's deadline.

use crate::config::{Timeouts, Url, VaultConfig};
use crate::error::{Error, Result};
use crate::http::{status_retryable, Http, HttpError, HttpOptions, Method, Reply};
use crate::retry::{self, Attempt, Backoff, Deadline, GaveUp};
use crate::secret::Secret;
use std::cell::Cell;
use std::fmt;
use std::path::Path;

/// Vault answers are small; a batch of a few dozen volumes stays far below this.
const BODY_LIMIT: u64 = 1024 * 1024;

struct Endpoint {
    /// The address as configured: what a redirect's target is compared with.
    url: Url,
    /// What requests go to (host replaced by tls_server_name when set).
    base: String,
    /// The address as configured, for messages.
    shown: String,
    http: Http,
}

pub struct Vault {
    endpoints: Vec<Endpoint>,
    namespace: Option<String>,
    backoff: Backoff,
    /// The endpoint that answered last; HA failover moves it on.
    current: Cell<usize>,
}

/// Why a Vault call did not succeed, with Vault's own words.
#[derive(Debug)]
pub struct VaultFailure {
    pub address: String,
    pub status: Option<u16>,
    /// Vault's `errors` array, or a short excerpt of a body that was not Vault JSON.
    pub errors: Vec<String>,
    pub transport: Option<HttpError>,
    /// Set when the deadline ended the retries.
    pub gave_up_after: Option<u32>,
    /// The body of a non-2xx answer (transit batches report per-item errors in a 400).
    pub body: Option<zeroize::Zeroizing<Vec<u8>>>,
    pub redirect: Option<String>,
    /// What the session knew of its token, for a 403 (see `auth::Session`).
    pub token: TokenNote,
}

/// What a 403 can mean besides a policy that says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenNote {
    /// The token was within its lease (or never expires): the policy said no.
    Fresh,
    /// Past its lease after this long, and no new login could replace it.
    Expired(std::time::Duration),
    /// From a file or the environment: its lease is not known, no login can replace it.
    HandedOver,
}

impl fmt::Display for VaultFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.status, &self.transport) {
            (Some(s), _) => {
                write!(f, "{} answered HTTP {s}", self.address)?;
                if !self.errors.is_empty() {
                    write!(f, ": {}", self.errors.join("; "))?;
                }
                if let Some(loc) = &self.redirect {
                    write!(f, " (redirect to {loc})")?;
                }
            }
            (None, Some(t)) => write!(f, "{}: {t}", self.address)?,
            (None, None) => write!(f, "{}: unknown error", self.address)?,
        }
        if let Some(n) = self.gave_up_after {
            write!(f, " (gave up after {n} attempts: deadline reached)")?;
        }
        Ok(())
    }
}

impl Vault {
    pub fn new(cfg: &VaultConfig, timeouts: &Timeouts, origin: &str) -> Result<Vault> {
        let tls = tls_config(cfg, origin)?;
        let endpoints = cfg
            .addresses
            .iter()
            .map(|a| {
                let (base, connect_to) = match &cfg.tls_server_name {
                    Some(name) if a.url.https => (
                        a.url.base_with_host(name),
                        Some((name.clone(), a.url.host_for_url())),
                    ),
                    _ => (a.url.base(), None),
                };
                Endpoint {
                    url: a.url.clone(),
                    base,
                    shown: a.url.base(),
                    http: Http::new(HttpOptions {
                        request_timeout: timeouts.request,
                        body_limit: BODY_LIMIT,
                        tls: tls.clone(),
                        connect_to,
                        use_env_proxy: true,
                    }),
                }
            })
            .collect();
        Ok(Vault {
            endpoints,
            namespace: cfg.namespace.clone(),
            backoff: Backoff::default(),
            current: Cell::new(0),
        })
    }

    /// POST `body` to `/v1/{path}`; a 2xx reply, or why not. Retries retryable failures,
    /// moving to the next address, until `deadline`.
    pub fn post(
        &self,
        what: &str,
        path: &str,
        token: Option<&Secret>,
        body: &[u8],
        deadline: &Deadline,
    ) -> std::result::Result<Reply, Box<VaultFailure>> {
        let headers = self.headers(token)?;
        let result = retry::run(
            what,
            deadline,
            &self.backoff,
            #[allow(clippy::borrowed_box)]
            |f: &Box<VaultFailure>| f.as_ref().to_string(),
            |attempt, left| self.attempt(what, path, &headers, body, attempt, left),
        );
        match result {
            Ok(r) => Ok(r),
            Err(GaveUp::Final(f)) => Err(f),
            Err(GaveUp::Deadline { mut last, attempts }) => {
                last.gave_up_after = Some(attempts);
                Err(last)
            }
        }
    }

    /// The headers every request carries: Vault's request marker, the namespace, the token
    /// (refused here if it is not text: a header cannot carry it).
    fn headers<'a>(
        &'a self,
        token: Option<&'a Secret>,
    ) -> std::result::Result<Vec<(&'a str, &'a str)>, Box<VaultFailure>> {
        let token = match token.map(|t| std::str::from_utf8(t.expose())) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                return Err(self.failure_without_status(HttpError::Other(
                    "the token is not valid text".into(),
                )))
            }
            None => None,
        };
        let mut headers: Vec<(&str, &str)> = vec![("X-Vault-Request", "true")];
        if let Some(ns) = &self.namespace {
            headers.push(("X-Vault-Namespace", ns));
        }
        if let Some(t) = token {
            headers.push(("X-Vault-Token", t));
        }
        Ok(headers)
    }

    /// One POST to the current address, following at most one redirect to another configured
    /// address: a 2xx reply, or a failure that says whether to retry.
    fn attempt(
        &self,
        what: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        attempt: u32,
        left: std::time::Duration,
    ) -> std::result::Result<Reply, Attempt<Box<VaultFailure>>> {
        let started = std::time::Instant::now();
        let from = self.current.get();
        crate::log::debug(format_args!(
            "{what}: POST {}/v1/{path} (attempt {attempt}, {:.0}s left)",
            self.endpoints[from].shown,
            left.as_secs_f64()
        ));
        let mut at = from;
        let mut result = self.send(from, path, headers, body, left);
        if let Ok(reply) = &result {
            if let Some(to) = self.redirect_target(from, reply) {
                crate::log::info(format_args!(
                    "{what}: {} redirects to {}, a configured address: following",
                    self.endpoints[from].shown, self.endpoints[to].shown
                ));
                at = to;
                let left = left.saturating_sub(started.elapsed());
                result = self.send(to, path, headers, body, left);
            }
        }
        let shown = &self.endpoints[at].shown;
        // A redirect's target that failed too is no better as the next address to try.
        let failed_too = (at != from).then_some(at);
        match result {
            Ok(reply) if (200..300).contains(&reply.status) => {
                self.current.set(at);
                Ok(reply)
            }
            Ok(reply) => {
                // A redirect not followed (to an address not configured, to itself, or a
                // second one) says this node cannot serve us now; another may: a standby
                // redirects to the leader that just died until the election is over.
                let retryable = status_retryable(reply.status) || is_redirect(reply.status);
                let after = reply.retry_after;
                let failure = Box::new(failure_from_reply(shown, reply));
                Err(self.retry_elsewhere_or_stop(retryable, failure, after, failed_too))
            }
            Err(e) => {
                let retryable = e.retryable();
                let failure = transport_failure(shown, e);
                Err(self.retry_elsewhere_or_stop(retryable, failure, None, failed_too))
            }
        }
    }

    fn send(
        &self,
        index: usize,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        left: std::time::Duration,
    ) -> std::result::Result<Reply, HttpError> {
        let ep = &self.endpoints[index];
        let url = format!("{}/v1/{path}", ep.base);
        ep.http.send(Method::Post, &url, headers, body, left)
    }

    /// The configured address a standby's redirect points at, if it is another one.
    ///
    /// An OpenBao/Vault standby that cannot forward a request to the active node (forwarding
    /// failed, e.g. the active just died, or the client asked for no forwarding) answers 307
    /// with the active's `api_addr` in Location. We follow it only to an address in
    /// vault.addresses, compared by scheme, host and port: the request (token included) then
    /// goes where a failover would have sent it anyway, with that address's own TLS settings
    /// (CA, client certificate, tls_server_name), so a redirect can neither carry the token to
    /// a host the operator did not list nor downgrade https to an http the config does not
    /// allow. The Location's path is not used: the request keeps its own. One hop: the caller
    /// follows no redirect from the target.
    fn redirect_target(&self, from: usize, reply: &Reply) -> Option<usize> {
        if !is_redirect(reply.status) {
            return None;
        }
        let to = Url::parse(reply.location.as_deref()?).ok()?;
        self.endpoints
            .iter()
            .position(|e| {
                e.url.https == to.https
                    && e.url.port == to.port
                    && e.url.host.eq_ignore_ascii_case(&to.host)
            })
            .filter(|&i| i != from)
    }

    /// A retryable failure moves on to the next address (HA failover) before the retry, past
    /// `failed_too` when there is a third; any other failure ends the call.
    fn retry_elsewhere_or_stop(
        &self,
        retryable: bool,
        failure: Box<VaultFailure>,
        after: Option<std::time::Duration>,
        failed_too: Option<usize>,
    ) -> Attempt<Box<VaultFailure>> {
        if retryable {
            self.next_endpoint();
            if failed_too == Some(self.current.get()) && self.endpoints.len() > 2 {
                self.next_endpoint();
            }
            Attempt::Retry {
                error: failure,
                after,
            }
        } else {
            Attempt::Final(failure)
        }
    }

    fn next_endpoint(&self) {
        self.current
            .set((self.current.get() + 1) % self.endpoints.len());
    }

    fn failure_without_status(&self, e: HttpError) -> Box<VaultFailure> {
        transport_failure(&self.endpoints[self.current.get()].shown, e)
    }

    pub fn addresses(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.shown.as_str()).collect()
    }
}

fn is_redirect(status: u16) -> bool {
    (300..400).contains(&status)
}

fn transport_failure(address: &str, e: HttpError) -> Box<VaultFailure> {
    Box::new(VaultFailure {
        address: address.to_string(),
        status: None,
        errors: Vec::new(),
        transport: Some(e),
        gave_up_after: None,
        body: None,
        redirect: None,
        token: TokenNote::Fresh,
    })
}

fn failure_from_reply(address: &str, reply: Reply) -> VaultFailure {
    VaultFailure {
        address: address.to_string(),
        status: Some(reply.status),
        errors: vault_errors(&reply.body),
        transport: None,
        gave_up_after: None,
        redirect: reply.location.clone(),
        body: Some(reply.body),
        token: TokenNote::Fresh,
    }
}

/// Vault's `{"errors": [...]}`, or a short printable excerpt of whatever else came back.
pub fn vault_errors(body: &[u8]) -> Vec<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(list) = v.get("errors").and_then(|e| e.as_array()) {
            return list
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        Vec::new()
    } else {
        vec![text.to_string()]
    }
}

fn read_file(origin: &str, field: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(
            origin,
            field,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

fn tls_config(cfg: &VaultConfig, origin: &str) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{parse_pem, ClientCert, PemItem, RootCerts, TlsConfig};
    let mut builder = TlsConfig::builder().disable_verification(cfg.tls_skip_verify);
    // No roots are compiled in (they would cost ~80 KiB and go stale): the private CA from
    // vault.ca_cert, or the system bundle, which the initramfs hooks copy in.
    let https = cfg.addresses.iter().any(|a| a.url.https);
    match cfg.ca_bundle() {
        Some(ca) => {
            let field = if cfg.ca_cert.is_some() {
                "vault.ca_cert"
            } else {
                "vault"
            };
            let certs = certificates(origin, field, &ca, &read_file(origin, field, &ca)?)?;
            builder = builder.root_certs(RootCerts::new_with_certs(&certs));
        }
        None if https && !cfg.tls_skip_verify => {
            return Err(Error::config(
                origin,
                "vault.ca_cert",
                format!("no CA certificates to verify Vault with: set vault.ca_cert, or install the system bundle ({})", crate::config::SYSTEM_CA_BUNDLES.join(" or ")),
            ));
        }
        None => builder = builder.root_certs(RootCerts::new_with_certs(&[])),
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        let cert_pem = read_file(origin, "vault.client_cert", cert)?;
        let chain = certificates(origin, "vault.client_cert", cert, &cert_pem)?;
        let key_pem = zeroize::Zeroizing::new(read_file(origin, "vault.client_key", key)?);
        let key_path = key;
        let key = parse_pem(&key_pem)
            .find_map(|item| match item {
                Ok(PemItem::PrivateKey(k)) => Some(k),
                _ => None,
            })
            .ok_or_else(|| {
                Error::config(
                    origin,
                    "vault.client_key",
                    format!("{} holds no PEM private key", key.display()),
                )
            })?;
        if let Err(why) = check_client_cert(&cert_pem, &key_pem) {
            return Err(Error::config(
                origin,
                "vault.client_cert",
                format!("{} with {}: {why}", cert.display(), key_path.display()),
            ));
        }
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// The certificates in a PEM file; none is a configuration error naming `field`.
fn certificates(
    origin: &str,
    field: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    use ureq::tls::{parse_pem, PemItem};
    let certs: Vec<_> = parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::config(
            origin,
            field,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// What rustls will say of this certificate and key when ureq hands them over, asked first:
/// ureq treats a refusal as a bug and panics.
fn check_client_cert(cert_pem: &[u8], key_pem: &[u8]) -> std::result::Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(|c| c.ok())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_client_auth_cert(certs, key)
    .map(|_| ())
    .map_err(|e| format!("not usable as a TLS client certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_errors_array_is_used_as_is() {
        assert_eq!(
            vault_errors(br#"{"errors":["permission denied"]}"#),
            vec!["permission denied"]
        );
        assert_eq!(vault_errors(br#"{"errors":[]}"#), Vec::<String>::new());
    }

    #[test]
    fn other_bodies_are_excerpted_printably() {
        assert_eq!(
            vault_errors(b"<html>\nBad Gateway\n</html>"),
            vec!["<html> Bad Gateway </html>"]
        );
        assert_eq!(vault_errors(&[b'x'; 500]).remove(0).len(), 200);
        assert!(vault_errors(b"").is_empty());
    }

    use crate::config::VaultAddress;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn vault(addresses: &[&str]) -> Vault {
        let cfg = VaultConfig {
            addresses: addresses
                .iter()
                .map(|a| VaultAddress {
                    url: Url::parse(a).unwrap(),
                    origin: "vault.addresses".into(),
                })
                .collect(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            namespace: None,
            tls_server_name: None,
            allow_http: true,
            tls_skip_verify: true,
        };
        Vault::new(&cfg, &Timeouts::default(), "test").unwrap()
    }

    type Seen = (Vec<String>, std::net::TcpListener);

    /// An HTTP server on loopback that answers its connections with `answers`, one each, and
    /// hands back the request heads it read. Its listener stays open until the handle is
    /// joined: a connection beyond `answers` waits unanswered.
    fn server(answers: Vec<String>) -> (String, std::thread::JoinHandle<Seen>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let handle = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head = loop {
                    let n = conn.read(&mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if req.len() >= end + 4 + length {
                            break text[..end].to_string();
                        }
                    }
                    assert!(n > 0, "the client closed early");
                };
                heads.push(head);
                let reply = format!("{answer}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}");
                conn.write_all(reply.as_bytes()).unwrap();
            }
            (heads, listener)
        });
        (addr, handle)
    }

    fn redirect_to(addr: &str) -> String {
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {addr}/v1/transit/decrypt/luks\r\n")
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

    fn post(
        v: &Vault,
        token: &Secret,
        within: Duration,
    ) -> std::result::Result<Reply, Box<VaultFailure>> {
        v.post(
            "transit decrypt",
            "transit/decrypt/luks",
            Some(token),
            b"{}",
            &Deadline::after(within),
        )
    }

    #[test]
    fn a_standby_redirect_to_a_configured_address_is_followed_with_the_token() {
        let (active, active_seen) = server(vec![OK.into(), OK.into()]);
        let (standby, standby_seen) = server(vec![redirect_to(&active)]);
        let v = vault(&[&standby, &active]);
        let token = Secret::from_string("t0ken".into());
        assert_eq!(
            post(&v, &token, Duration::from_secs(5)).unwrap().status,
            200
        );
        // The active answered: the next request goes straight there.
        assert_eq!(
            post(&v, &token, Duration::from_secs(5)).unwrap().status,
            200
        );
        assert_eq!(standby_seen.join().unwrap().0.len(), 1);
        let heads = active_seen.join().unwrap().0;
        assert_eq!(heads.len(), 2);
        assert!(heads[0].starts_with("POST /v1/transit/decrypt/luks "));
        assert!(heads[0]
            .to_ascii_lowercase()
            .contains("x-vault-token: t0ken"));
    }

    #[test]
    fn a_redirect_to_an_address_not_configured_is_not_followed_the_next_one_is_tried() {
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let elsewhere_addr = format!(
            "http://127.0.0.1:{}",
            elsewhere.local_addr().unwrap().port()
        );
        let (standby, standby_seen) = server(vec![redirect_to(&elsewhere_addr)]);
        let (active, active_seen) = server(vec![OK.into()]);
        let v = vault(&[&standby, &active]);
        let token = Secret::from_string("t0ken".into());
        assert_eq!(
            post(&v, &token, Duration::from_secs(5)).unwrap().status,
            200
        );
        assert_eq!(standby_seen.join().unwrap().0.len(), 1);
        assert_eq!(active_seen.join().unwrap().0.len(), 1);
        let contacted = elsewhere.accept();
        assert!(contacted.is_err(), "the unlisted address was contacted");
        // Nor is a redirect to the same host on another scheme: https is not http.
        let to = Url::parse(&active.replace("http:", "https:"))
            .unwrap()
            .base();
        let reply = |location: &str| Reply {
            status: 307,
            body: zeroize::Zeroizing::new(Vec::new()),
            retry_after: None,
            location: Some(location.into()),
        };
        assert_eq!(v.redirect_target(0, &reply(&to)), None);
        assert_eq!(v.redirect_target(0, &reply(&active)), Some(1));
        let by_name = vault(&["http://Vault-A:8200", "http://vault-b:8200"]);
        assert_eq!(
            by_name.redirect_target(0, &reply("http://VAULT-B:8200/v1/x")),
            Some(1)
        );
        assert_eq!(
            by_name.redirect_target(0, &reply("http://vault-b:8201/v1/x")),
            None
        );
        assert_eq!(v.redirect_target(1, &reply(&active)), None, "not to itself");
        assert_eq!(
            v.redirect_target(0, &reply("/v1/x")),
            None,
            "a relative Location"
        );
    }

    #[test]
    fn after_a_failed_redirect_its_target_is_not_the_next_address_tried() {
        // [a standby redirecting to the leader, the leader (503 once), another node]: the
        // retry skips the leader it just heard fail. Were it asked again, its second
        // connection would wait unanswered past the deadline.
        let (leader, leader_seen) = server(vec!["HTTP/1.1 503 Service Unavailable\r\n".into()]);
        let (standby, standby_seen) = server(vec![redirect_to(&leader)]);
        let (other, other_seen) = server(vec![OK.into()]);
        let v = vault(&[&standby, &leader, &other]);
        let token = Secret::from_string("t".into());
        assert_eq!(
            post(&v, &token, Duration::from_secs(3)).unwrap().status,
            200
        );
        for seen in [standby_seen, leader_seen, other_seen] {
            assert_eq!(seen.join().unwrap().0.len(), 1);
        }
    }

    #[test]
    fn a_second_redirect_is_not_followed() {
        // A standby pointing at another that points on (stale leader information): one hop,
        // then a retryable failure; here the deadline allows one attempt only.
        let (a, a_seen) = server(vec![]);
        drop(a_seen);
        let (b, b_seen) = server(vec![redirect_to(&a)]);
        let (c, c_seen) = server(vec![redirect_to(&b)]);
        let v = vault(&[&c, &b]);
        let token = Secret::from_string("t".into());
        let Err(f) = post(&v, &token, Duration::from_millis(200)) else {
            panic!("the second redirect was followed");
        };
        assert_eq!((f.status, f.gave_up_after), (Some(307), Some(1)));
        assert_eq!(f.address, b);
        assert_eq!(c_seen.join().unwrap().0.len(), 1);
        assert_eq!(b_seen.join().unwrap().0.len(), 1);
    }

    #[test]
    fn failure_reads_like_a_sentence() {
        let f = VaultFailure {
            address: "https://v:8200".into(),
            status: Some(403),
            errors: vec!["permission denied".into()],
            transport: None,
            gave_up_after: None,
            body: None,
            redirect: None,
            token: TokenNote::Fresh,
        };
        assert_eq!(
            f.to_string(),
            "https://v:8200 answered HTTP 403: permission denied"
        );
        let f = VaultFailure {
            status: None,
            errors: vec![],
            transport: Some(HttpError::Connect("Connection refused".into())),
            gave_up_after: Some(4),
            ..f
        };
        assert_eq!(f.to_string(), "https://v:8200: cannot connect: Connection refused (gave up after 4 attempts: deadline reached)");
    }
}
