//! Getting a token: the Exoscale auth plugin (normal and approle_mode), Vault's AppRole, or a
//! token handed over (token_file, VAULT_TOKEN/BAO_TOKEN). The token lives in a Secret, is sent
//! only in the X-Vault-Token header, and is revoked when we are done unless told to keep it.

use super::client::{Vault, VaultFailure};
use crate::config::{AuthConfig, AuthMethod};
use crate::error::{Error, Result, Step};
use crate::metadata::Identity;
use crate::retry::Deadline;
use crate::secret::Secret;
use std::time::Duration;
use zeroize::Zeroizing;

pub struct Token {
    pub secret: Secret,
    /// Whether `finish` revokes it.
    pub revoke: bool,
    /// For the log: where it came from.
    pub source: String,
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
    Ok(Token {
        secret: token_from_answer(&reply.body)?,
        revoke: auth.revoke,
        source,
    })
}

/// The token in the environment variable `var`, never revoked (it is someone else's).
fn token_from_env(var: &str) -> Token {
    // Read only now, straight into a Secret; it stays out of the environment of children.
    // The copy std::env::var makes is zeroized too; only the trimmed bytes are kept.
    let value = Zeroizing::new(std::env::var(var).unwrap_or_default());
    Token {
        secret: Secret::new(value.trim().as_bytes().to_vec()),
        revoke: false,
        source: format!("the token in {var}"),
    }
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
    Ok(Token {
        secret,
        revoke: auth.revoke,
        source: format!("the token in {}", file.display()),
    })
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

/// The client token in a login answer; logs the policies and lease it came with.
pub fn token_from_answer(body: &[u8]) -> Result<Secret> {
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
    crate::log::info(format_args!(
        "vault login: ok (policies: {}; lease {lease}s)",
        policies.join(", ")
    ));
    Ok(token)
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
pub fn finish(vault: &Vault, token: Token, deadline: &Deadline) {
    if !token.revoke {
        crate::log::debug(format_args!("token revoke: keeping {}", token.source));
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
