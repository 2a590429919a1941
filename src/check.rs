//! `vault-luks check`: the resolved settings, after file, environment and kernel command line,
//! so an operator (or the initramfs hook) sees what a boot will do. Never prints a secret.

use crate::config::{AuthMethod, Config, KeyFormat, Volume};
use std::fmt::Write;

/// One section a line or a few, in the order of the configuration's own sections; writing to
/// a String cannot fail, so each `writeln!`'s result is dropped.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "config: {}", config.origin);
    vault(w, config);
    auth(w, config);
    timeouts(w, config);
    network(w, config);
    for vol in &config.volumes {
        volume(w, vol);
    }
    for warning in &config.warnings {
        let _ = writeln!(w, "warning: {warning}");
    }
    out
}

/// A path setting, or `-` when it is not set.
fn path_or_dash(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or("-".to_string(), |p| p.display().to_string())
}

/// Each Vault address with where it came from, then the TLS and namespace settings.
fn vault(w: &mut String, config: &Config) {
    for a in &config.vault.addresses {
        let _ = writeln!(w, "vault.address: {} (from {})", a.url.base(), a.origin);
    }
    let v = &config.vault;
    let _ = writeln!(w, "vault.ca_cert: {}", path_or_dash(&v.ca_cert));
    let _ = writeln!(w, "vault.client_cert: {}", path_or_dash(&v.client_cert));
    let _ = writeln!(
        w,
        "vault.namespace: {}",
        v.namespace.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        w,
        "vault.tls_server_name: {}",
        v.tls_server_name.as_deref().unwrap_or("-")
    );
}

/// The auth method and where its credentials come from (never their values).
fn auth(w: &mut String, config: &Config) {
    let a = &config.auth;
    match &a.method {
        AuthMethod::Exoscale { role, approle_mode } => {
            let _ = writeln!(
                w,
                "auth: exoscale at auth/{}, role {role}{}",
                a.mount,
                if *approle_mode { " (approle_mode)" } else { "" }
            );
            let _ = writeln!(w, "metadata.url: {}", config.metadata.url);
        }
        AuthMethod::AppRole {
            role_id,
            secret_id_file,
        } => {
            let _ = writeln!(
                w,
                "auth: approle at auth/{}, role_id {role_id}, secret_id from {}",
                a.mount,
                secret_id_file.display()
            );
        }
        AuthMethod::Token { token_file } => {
            let _ = writeln!(w, "auth: token from {}", path_or_dash(token_file));
        }
    }
    if let Some(var) = a.token_env {
        let _ = writeln!(w, "auth: the token in {var} is used instead (value hidden)");
    }
    let _ = writeln!(w, "auth.revoke_token: {}", a.revoke);
}

/// The four time limits, in seconds.
fn timeouts(w: &mut String, config: &Config) {
    let t = &config.timeouts;
    let _ = writeln!(
        w,
        "timeouts: unlock {}s, request {}s, device {}s, cryptsetup {}s",
        t.unlock.as_secs_f64(),
        t.request.as_secs_f64(),
        t.device.as_secs_f64(),
        t.cryptsetup.as_secs_f64()
    );
}

/// What the network step will do when there is no route, and on which interface.
fn network(w: &mut String, config: &Config) {
    let n = &config.network;
    let how = match (&n.address, n.enabled) {
        (_, false) => "off (never touched)".to_string(),
        (None, true) => "auto: DHCP when there is no route".to_string(),
        (Some(s), true) => format!(
            "auto: {}/{}{} when there is no route",
            s.address,
            s.prefix,
            s.gateway.map_or(String::new(), |g| format!(" via {g}"))
        ),
    };
    let _ = writeln!(
        w,
        "network: {how}, interface {}",
        n.interface
            .as_deref()
            .unwrap_or("ip=/BOOTIF=, else the first with a carrier")
    );
}

/// One volume: its device, where its ciphertext is, its transit key and its key format.
fn volume(w: &mut String, vol: &Volume) {
    let _ = writeln!(
        w,
        "volume {}: device {}, ciphertext {}, transit {}/{}{}, key {}, keyslot {}",
        vol.name,
        vol.device.display(),
        vol.ciphertext_file
            .as_ref()
            .map_or("in the LUKS2 token".to_string(), |f| f
                .display()
                .to_string()),
        vol.transit.mount,
        vol.transit.key,
        if vol.transit.context.is_some() {
            " (with context)"
        } else {
            ""
        },
        match vol.key_format {
            KeyFormat::Base64Text => "base64 text (as the article)",
            KeyFormat::Raw => "raw decoded bytes",
        },
        vol.keyslot.map_or(
            "the token's (without a token, every keyslot)".to_string(),
            |n| n.to_string()
        )
    );
}
