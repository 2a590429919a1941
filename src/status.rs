//! `vault-luks status`: per volume, what is there right now: device, LUKS version, the keyslot
//! and token that belong to vault-luks, mapping, mount points, ciphertext and key version.
//! Reads only. With --check-vault it also asks Vault to decrypt the key and checks the header
//! accepts it (`open --test-passphrase`), still without opening anything.

use crate::config::{Config, Volume};
use crate::luks::header::Header;
use crate::luks::mounts::mount_points;
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use crate::unlock::{key_version, read_ciphertext};
use serde_json::{json, Value};
use std::path::Path;

pub fn collect(config: &Config, cs: Option<&Cryptsetup>) -> Value {
    let volumes: Vec<Value> = config.volumes.iter().map(|v| volume(v, cs)).collect();
    json!({ "config": config.origin, "volumes": volumes })
}

fn volume(v: &Volume, cs: Option<&Cryptsetup>) -> Value {
    let active = crate::luks::mapper::is_active(cs, &v.name, crate::unlock::STATUS_TIMEOUT).ok();
    let header = cs
        .filter(|_| v.device.exists())
        .and_then(|cs| Header::read(cs, &v.device).ok());
    let binding = header.as_ref().and_then(Header::binding);
    let ciphertext = read_ciphertext(cs, v);
    let mapping = format!("/dev/mapper/{}", v.name);
    json!({
        "name": v.name,
        "device": v.device,
        "device_present": v.device.exists(),
        "luks_version": header.as_ref().map(|h| h.version),
        "keyslots": header.as_ref().map(|h| h.keyslots.clone()),
        "vault_keyslot": binding.as_ref().map(|(_, b)| b.keyslot),
        "vault_token": binding.as_ref().map(|(id, _)| *id),
        "mapping": mapping,
        "active": active,
        "mounted_at": mount_points(Path::new(&mapping)),
        "ciphertext_file": v.ciphertext_file,
        "ciphertext_ok": ciphertext.is_ok(),
        "key_version": ciphertext.ok().as_deref().and_then(key_version),
        "transit_key": format!("{}/{}", v.transit.mount, v.transit.key),
    })
}

/// Decrypts each volume's key and tests it against the header; adds `vault_check` ("ok" or
/// what failed) to each volume. Returns whether all passed.
pub fn check_vault(config: &Config, cs: &Cryptsetup, status: &mut Value) -> bool {
    let deadline = Deadline::after(config.timeouts.unlock);
    let session = crate::unlock::connect(config, &deadline);
    let mut all_ok = true;
    for (v, s) in config
        .volumes
        .iter()
        .zip(status["volumes"].as_array_mut().into_iter().flatten())
    {
        let verdict = match &session {
            Err(e) => e.to_string(),
            Ok(session) => match crate::unlock::key_for(cs, session, v, &deadline) {
                Err(e) => e.to_string(),
                Ok(key) => match crate::lifecycle::key_opens(cs, &v.device, None, &key) {
                    Ok(true) => "ok".to_string(),
                    Ok(false) => {
                        format!("the key from Vault does not open {}", v.device.display())
                    }
                    Err(e) => e.to_string(),
                },
            },
        };
        all_ok &= verdict == "ok";
        s["vault_check"] = json!(verdict);
    }
    if let Ok(session) = session {
        session.finish(&deadline);
    }
    all_ok
}

pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    for v in status["volumes"].as_array().into_iter().flatten() {
        let yes_no = |b: &Value| match b.as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown (cryptsetup not found)",
        };
        let or_dash = |x: &Value| {
            if x.is_null() {
                "-".to_string()
            } else {
                x.to_string()
            }
        };
        let version = v["key_version"]
            .as_u64()
            .map_or("-".to_string(), |n| format!("v{n}"));
        let mounts: Vec<&str> = v["mounted_at"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "{}: device {} present: {}; {}; vault keyslot {} (token {}); open: {}; mounted: {}; ciphertext {} readable: {} (key {}, version {})\n",
            v["name"].as_str().unwrap_or("?"),
            v["device"].as_str().unwrap_or("?"),
            yes_no(&v["device_present"]),
            v["luks_version"].as_u64().map_or("no LUKS header read".to_string(), |n| format!("LUKS{n}")),
            or_dash(&v["vault_keyslot"]),
            or_dash(&v["vault_token"]),
            yes_no(&v["active"]),
            if mounts.is_empty() { "no".to_string() } else { mounts.join(", ") },
            v["ciphertext_file"].as_str().unwrap_or("(LUKS2 token)"),
            yes_no(&v["ciphertext_ok"]),
            v["transit_key"].as_str().unwrap_or("?"),
            version
        ));
        if let Some(check) = v["vault_check"].as_str() {
            out.push_str(&format!(
                "{}: vault check: {check}\n",
                v["name"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}
