//! Getting a token: the Exoscale auth plugin (normal and approle_mode), Vault's AppRole, or a
//! token handed over (token_file, VAULT_TOKEN/BAO_TOKEN). The token lives in a Secret, is sent
//! only in the X-Vault-Token header, and is revoked when we are done unless told to keep it.

use super::client::{TokenNote, Vault, VaultFailure};
use crate::config::{AuthConfig, AuthMethod};
use crate::error::{Error, Result, Step};
use crate::http::Reply;
use crate::metadata::Identity;
use crate::retry::Deadline;
use crate::secret::Secret;
use std::cell::RefCell;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub struct Token {
    pub secret: Secret,
    /// Whether `finish` revokes it.
    pub revoke: bool,
    /// For the log: where it came from.
    pub source: String,
    /// The login answer's lease_duration, counted from `issued`; None when it never expires
    /// or is not known (a token handed over).
    lease: Option<Duration>,
    issued: Instant,
    /// From a file or the environment: no login can replace it.
    handed_over: bool,
}

impl Token {
    fn handed_over(secret: Secret, revoke: bool, source: String) -> Token {
        Token {
            secret,
            revoke,
            source,
            lease: None,
            issued: Instant::now(),
            handed_over: true,
        }
    }

    /// Its age, when its lease has run out or is about to: `margin` covers the login's round
    /// trip, as Vault counts the lease from before its answer reached us.
    fn expired(&self, margin: Duration) -> Option<Duration> {
        let lease = self.lease?;
        let age = self.issued.elapsed();
        (age + margin.min(lease / 10) >= lease).then_some(age)
    }
}

/// How close to its lease's end a token refused 403 counts as expired (at most a tenth of it).
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// A Vault client and the token it works with. A login token whose lease runs out while a
/// request is still retried (a rate-limited or slow Vault) is refused 403 "permission denied":
/// the session then logs in again, once per expiry, and repeats the request, all within the
/// caller's deadline. A 403 for a token still valid is final (a policy that says no).
pub struct Session<'c> {
    pub vault: Vault,
    auth: &'c AuthConfig,
    identity: Option<Identity>,
    token: RefCell<Token>,
}

impl<'c> Session<'c> {
    pub fn start(
        vault: Vault,
        auth: &'c AuthConfig,
        identity: Option<Identity>,
        deadline: &Deadline,
    ) -> Result<Session<'c>> {
        let token = login(&vault, auth, identity.as_ref(), deadline)?;
        Ok(Session {
            vault,
            auth,
            identity,
            token: RefCell::new(token),
        })
    }

    /// `Vault::post` with the session's token; see `Session` for a 403.
    pub fn post(
        &self,
        what: &str,
        path: &str,
        body: &[u8],
        deadline: &Deadline,
    ) -> std::result::Result<Reply, Box<VaultFailure>> {
        loop {
            let mut f = match self.post_once(what, path, body, deadline) {
                Err(f) if f.status == Some(403) => f,
                other => return other,
            };
            let token = self.token.borrow();
            if token.handed_over {
                f.token = TokenNote::HandedOver;
                return Err(f);
            }
            let Some(age) = token.expired(EXPIRY_MARGIN) else {
                return Err(f);
            };
            drop(token);
            crate::log::info(format_args!(
                "vault login: the token expired after {:.0}s while retrying; logging in again",
                age.as_secs_f64()
            ));
            match login(&self.vault, self.auth, self.identity.as_ref(), deadline) {
                // The old token is dropped, not revoked: past its lease, Vault has revoked it.
                Ok(fresh) => *self.token.borrow_mut() = fresh,
                Err(e) => {
                    crate::log::warn(format_args!("{e}"));
                    f.token = TokenNote::Expired(age);
                    return Err(f);
                }
            }
        }
    }

    fn post_once(
        &self,
        what: &str,
        path: &str,
        body: &[u8],
        deadline: &Deadline,
    ) -> std::result::Result<Reply, Box<VaultFailure>> {
        let token = self.token.borrow();
        self.vault
            .post(what, path, Some(&token.secret), body, deadline)
    }

    /// Revoke the token (see `finish`).
    pub fn finish(self, deadline: &Deadline) {
        revoke(&self.vault, self.token.into_inner(), deadline);
    }
}

/// The hint for a 403: `policy` (what to add to the token's policies), unless the token had
/// expired or was handed over.
pub fn denied_hint(f: &VaultFailure, policy: String) -> String {
    match f.token {
        TokenNote::Expired(age) => format!(
            "the token expired after {}s while Vault was retried, and logging in again failed (see above): make the role's token_ttl at least timeouts.unlock",
            age.as_secs()
        ),
        TokenNote::HandedOver => format!(
            "{policy}; or the token handed over has expired or was revoked: give a new one"
        ),
        TokenNote::Fresh => policy,
    }
}

/// Builds `{"k":"v",...}` straight into a zeroizing buffer: login bodies can hold a secret_id.
pub fn json_object(fields: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b'}');
    out
}

/// The identity is needed only by the exoscale method; callers fetch it first when
/// `needs_identity` says so.
pub fn needs_identity(auth: &AuthConfig) -> bool {
    auth.token_env.is_none() && matches!(auth.method, AuthMethod::Exoscale { .. })
}

/// A token handed over is used as it is; the other methods log in with a body of their own
/// and take the token from Vault's answer.
pub fn login(
    vault: &Vault,
    auth: &AuthConfig,
    identity: Option<&Identity>,
    deadline: &Deadline,
) -> Result<Token> {
    if let Some(var) = auth.token_env {
        return Ok(token_from_env(var));
    }
    let (body, source) = match &auth.method {
        AuthMethod::Token { token_file } => return token_from_file(token_file.as_deref(), auth),
        AuthMethod::Exoscale { role, approle_mode } => exoscale_login(
            role,
            *approle_mode,
            identity.expect("the exoscale method is given an identity"),
        ),
        AuthMethod::AppRole {
            role_id,
            secret_id_file,
        } => approle_login(role_id, secret_id_file)?,
    };
    let path = format!("auth/{}/login", auth.mount);
    crate::log::info(format_args!(
        "vault login: {source} at {path} ({:.0}s left)",
        deadline.remaining().as_secs_f64()
    ));
    let reply = vault
        .post("vault login", &path, None, &body, deadline)
        .map_err(|f| login_error(&f, auth))?;
    let issued = Instant::now();
    let (secret, lease) = token_from_answer(&reply.body, deadline)?;
    Ok(Token {
        secret,
        revoke: auth.revoke,
        source,
        lease,
        issued,
        handed_over: false,
    })
}

/// The token in the environment variable `var`, never revoked (it is someone else's).
fn token_from_env(var: &str) -> Token {
    // Read only now, straight into a Secret; it stays out of the environment of children.
    // The copy std::env::var makes is zeroized too; only the trimmed bytes are kept.
    let value = Zeroizing::new(std::env::var(var).unwrap_or_default());
    let secret = Secret::new(value.trim().as_bytes().to_vec());
    Token::handed_over(secret, false, format!("the token in {var}"))
}

/// The token in auth.token_file; the method needs one when no environment variable gave it.
fn token_from_file(token_file: Option<&std::path::Path>, auth: &AuthConfig) -> Result<Token> {
    let Some(file) = token_file else {
        return Err(Error::failed(
            Step::Login,
            "auth.method is token but no token was given",
            "set auth.token_file, or VAULT_TOKEN / BAO_TOKEN in the environment",
        ));
    };
    let secret = read_secret_file(file)?;
    let source = format!("the token in {}", file.display());
    Ok(Token::handed_over(secret, auth.revoke, source))
}

/// The Exoscale plugin's login body for this instance, and what it is for the log.
fn exoscale_login(role: &str, approle_mode: bool, id: &Identity) -> (Zeroizing<Vec<u8>>, String) {
    let body = if approle_mode {
        json_object(&[("role_id", role), ("secret_id", &id.instance_id)])
    } else {
        // v0.2.0 ignores zone (it moved to the backend config); v0.1.x requires it.
        json_object(&[
            ("role", role),
            ("instance", &id.instance_id),
            ("zone", &id.zone),
        ])
    };
    (
        body,
        format!(
            "exoscale login as role {role} for instance {}",
            id.instance_id
        ),
    )
}

/// AppRole's login body, with the secret_id read from its file, and what it is for the log.
fn approle_login(
    role_id: &str,
    secret_id_file: &std::path::Path,
) -> Result<(Zeroizing<Vec<u8>>, String)> {
    let secret_id = read_secret_file(secret_id_file)?;
    let secret_id = std::str::from_utf8(secret_id.expose()).map_err(|_| {
        Error::failed(
            Step::Login,
            format!("{} is not text", secret_id_file.display()),
            "write the AppRole secret_id into it",
        )
    })?;
    Ok((
        json_object(&[("role_id", role_id), ("secret_id", secret_id)]),
        format!("approle login as {role_id}"),
    ))
}

/// The client token in a login answer and its lease (None: never expires); logs the policies
/// and the lease, and whether the lease ends before `deadline`.
pub fn token_from_answer(body: &[u8], deadline: &Deadline) -> Result<(Secret, Option<Duration>)> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        Error::failed(
            Step::Login,
            "the login answer is not JSON",
            "is vault.address really a Vault server?",
        )
    })?;
    let token = match value
        .pointer_mut("/auth/client_token")
        .map(serde_json::Value::take)
    {
        Some(serde_json::Value::String(t)) if !t.is_empty() => Secret::from_string(t),
        _ => {
            return Err(Error::failed(
                Step::Login,
                "the login answer has no auth.client_token",
                "check the auth mount (auth.mount) is the Exoscale plugin",
            ))
        }
    };
    let lease = value
        .pointer("/auth/lease_duration")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let policies: Vec<&str> = value
        .pointer("/auth/policies")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    let left = deadline.remaining().as_secs();
    let short = if lease > 0 && lease < left {
        format!(", shorter than the {left}s left: a retry that outlasts it logs in again")
    } else {
        String::new()
    };
    crate::log::info(format_args!(
        "vault login: ok (policies: {}; lease {lease}s{short})",
        policies.join(", ")
    ));
    Ok((token, (lease > 0).then(|| Duration::from_secs(lease))))
}

fn read_secret_file(path: &std::path::Path) -> Result<Secret> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::failed(
            Step::Login,
            format!("cannot read {}: {e}", path.display()),
            "check the file exists and is readable by root",
        )
    })?;
    let bytes = Zeroizing::new(bytes);
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(Error::failed(
            Step::Login,
            format!("{} is empty", path.display()),
            "",
        ));
    }
    Ok(Secret::new(trimmed.to_vec()))
}

fn login_error(f: &VaultFailure, auth: &AuthConfig) -> Error {
    let role = match &auth.method {
        AuthMethod::Exoscale { role, .. } => role.clone(),
        AuthMethod::AppRole { role_id, .. } => role_id.clone(),
        AuthMethod::Token { .. } => String::new(),
    };
    let hint = match f.status {
        Some(400) => format!("Vault rejected the login request: check auth.role (`{role}`) exists in auth/{}/role and auth.mount is right", auth.mount),
        Some(403) => format!(
            "Vault refused this instance: check that role `{role}` allows it; the plugin's default validator requires the login to come from the instance's public IPv4 (NAT or private networks need another validator)"
        ),
        Some(404) => format!("no auth method is mounted at auth/{}: check auth.mount", auth.mount),
        _ => vault_hint(f),
    };
    Error::failed(Step::Login, f.to_string(), hint)
}

/// The hint for failures any Vault call can have.
pub fn vault_hint(f: &VaultFailure) -> String {
    use crate::http::HttpError;
    match (f.status, &f.transport) {
        (Some(503), _) if f.errors.iter().any(|e| e.contains("sealed")) => "Vault is sealed: unseal it (bao/vault operator unseal), or enter the passphrase".to_string(),
        (Some(s), _) if (300..400).contains(&s) => "a Vault standby redirected the request to an address not in vault.addresses (redirects are followed only to those): list every node by its api_addr".to_string(),
        (Some(429), _) => "Vault is rate-limiting this client: try again later".to_string(),
        (Some(s), _) if s >= 500 => "Vault reports a server-side problem: check its logs".to_string(),
        (_, Some(HttpError::Tls(_))) => "the TLS connection failed: check vault.ca_cert and that the certificate is valid for the address (or vault.tls_server_name)".to_string(),
        (_, Some(HttpError::TooLarge(_))) => "the server sent far more than a Vault answer: is vault.address really Vault?".to_string(),
        (_, Some(_)) => "check vault.address, that Vault is running, and that the network and firewall let this machine reach it".to_string(),
        _ => String::new(),
    }
}

/// Revoke our token (auth/token/revoke-self): best effort, bounded even past the deadline so
/// a slow Vault cannot hold the boot; a failure is a warning, never an unlock failure.
fn revoke(vault: &Vault, token: Token, deadline: &Deadline) {
    if !token.revoke {
        crate::log::debug(format_args!("token revoke: keeping {}", token.source));
        return;
    }
    if token.expired(Duration::ZERO).is_some() {
        crate::log::info(format_args!(
            "token revoke: not needed, its lease has run out"
        ));
        return;
    }
    let grace = Deadline::after(
        deadline
            .remaining()
            .max(Duration::from_secs(5))
            .min(Duration::from_secs(10)),
    );
    match vault.post(
        "token revoke",
        "auth/token/revoke-self",
        Some(&token.secret),
        b"{}",
        &grace,
    ) {
        Ok(_) => crate::log::info(format_args!("token revoke: ok")),
        Err(f) => crate::log::warn(format_args!(
            "token revoke failed: {f}; the token expires at the end of its lease"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_escapes_and_orders_fields() {
        let body = json_object(&[("role", "st\"orage"), ("instance", "x")]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"role":"st\"orage","instance":"x"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["role"], "st\"orage");
    }
}
