//! `vault-luks status`: per volume, what is there right now. Reads only; never contacts Vault.

use crate::config::Config;
use crate::luks::Cryptsetup;
use crate::unlock::{key_version, read_ciphertext};
use serde_json::{json, Value};
use std::time::Duration;

pub fn collect(config: &Config, cs: Option<&Cryptsetup>) -> Value {
    let volumes: Vec<Value> = config
        .volumes
        .iter()
        .map(|v| {
            let active = cs.and_then(|cs| cs.is_active(&v.name, Duration::from_secs(10)).ok());
            let ciphertext = read_ciphertext(cs, v);
            json!({
                "name": v.name,
                "device": v.device,
                "device_present": v.device.exists(),
                "mapping": format!("/dev/mapper/{}", v.name),
                "active": active,
                "ciphertext_file": v.ciphertext_file,
                "ciphertext_ok": ciphertext.is_ok(),
                "key_version": ciphertext.ok().as_deref().and_then(key_version),
                "transit_key": format!("{}/{}", v.transit.mount, v.transit.key),
            })
        })
        .collect();
    json!({ "config": config.origin, "volumes": volumes })
}

pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    for v in status["volumes"].as_array().into_iter().flatten() {
        let yes_no = |b: &Value| match b.as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown (cryptsetup not found)",
        };
        let version = v["key_version"]
            .as_u64()
            .map_or("-".to_string(), |n| format!("v{n}"));
        out.push_str(&format!(
            "{}: device {} present: {}; open: {}; ciphertext {} readable: {} (key {}, version {})\n",
            v["name"].as_str().unwrap_or("?"),
            v["device"].as_str().unwrap_or("?"),
            yes_no(&v["device_present"]),
            yes_no(&v["active"]),
            v["ciphertext_file"].as_str().unwrap_or("(LUKS2 token)"),
            yes_no(&v["ciphertext_ok"]),
            v["transit_key"].as_str().unwrap_or("?"),
            version
        ));
    }
    out
}
