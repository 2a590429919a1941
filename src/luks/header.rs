//! What the LUKS header says: version, keyslots in use, and the
//! `vault-luks` LUKS2 token that records a volume's own binding (Vault address, auth, transit
//! key, ciphertext, keyslot), as clevis and systemd-cryptenroll record theirs. LUKS2 is read
//! from the device directly (`luks2`); LUKS1, and anything that read does not vouch for, through
//! `cryptsetup luksDump`.

use super::cryptsetup::{Cryptsetup, Input, OpenError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub const TOKEN_TYPE: &str = "vault-luks";
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub keyslots: Vec<u32>,
    /// LUKS2 tokens: id and JSON.
    pub tokens: Vec<(u32, Value)>,
}

/// The binding stored in the token. Field names are the token's JSON keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub keyslot: u32,
    pub ciphertext: String,
    pub transit_mount: String,
    pub transit_key: String,
    pub vault_address: String,
    pub auth_method: String,
    pub auth_role: String,
}

impl Binding {
    /// The binding of a volume configured in `config`, through `keyslot`, wrapped as `ciphertext`.
    pub fn new(
        config: &crate::config::Config,
        transit: &crate::config::Transit,
        keyslot: u32,
        ciphertext: String,
    ) -> Binding {
        use crate::config::AuthMethod;
        let (auth_method, auth_role) = match &config.auth.method {
            AuthMethod::Exoscale { role, .. } => ("exoscale", role.clone()),
            AuthMethod::AppRole { role_id, .. } => ("approle", role_id.clone()),
            AuthMethod::Token { .. } => ("token", String::new()),
        };
        Binding {
            keyslot,
            ciphertext,
            transit_mount: transit.mount.clone(),
            transit_key: transit.key.clone(),
            vault_address: config
                .vault
                .addresses
                .first()
                .map(|a| a.url.base())
                .unwrap_or_default(),
            auth_method: auth_method.to_string(),
            auth_role,
        }
    }

    pub fn to_token(&self) -> Value {
        json!({
            "type": TOKEN_TYPE,
            "keyslots": [self.keyslot.to_string()],
            "vault_address": self.vault_address,
            "auth_method": self.auth_method,
            "auth_role": self.auth_role,
            "transit_mount": self.transit_mount,
            "transit_key": self.transit_key,
            "ciphertext": self.ciphertext,
        })
    }

    pub fn from_token(v: &Value) -> Option<Binding> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if s("type")?.as_str() != TOKEN_TYPE {
            return None;
        }
        let keyslot = v
            .get("keyslots")?
            .as_array()?
            .first()?
            .as_str()?
            .parse()
            .ok()?;
        Some(Binding {
            keyslot,
            ciphertext: s("ciphertext")?,
            transit_mount: s("transit_mount")?,
            transit_key: s("transit_key")?,
            vault_address: s("vault_address").unwrap_or_default(),
            auth_method: s("auth_method").unwrap_or_default(),
            auth_role: s("auth_role").unwrap_or_default(),
        })
    }
}

impl Header {
    pub fn read(cs: &Cryptsetup, device: &Path) -> Result<Header, String> {
        match super::luks2::read(device) {
            Ok(json) => return Ok(from_luks2(&json)),
            Err(why) => crate::log::debug(format_args!(
                "{}: LUKS2 header not read directly ({why}): asking cryptsetup luksDump",
                device.display()
            )),
        }
        let dev = device.as_os_str();
        match cs.exec(
            &["luksDump".as_ref(), "--dump-json-metadata".as_ref(), dev],
            Input::Nothing,
            None,
            TIMEOUT,
        ) {
            Ok(out) => parse_luks2(&out.stdout),
            Err(_) => {
                // LUKS1 has no JSON area: read the text dump.
                let out = cs
                    .exec(&["luksDump".as_ref(), dev], Input::Nothing, None, TIMEOUT)
                    .map_err(|e| describe(&e, device))?;
                Ok(parse_luks1(&String::from_utf8_lossy(&out.stdout)))
            }
        }
    }

    pub fn binding(&self) -> Option<(u32, Binding)> {
        self.tokens
            .iter()
            .find_map(|(id, v)| Binding::from_token(v).map(|b| (*id, b)))
    }

    /// The lowest keyslot not in use.
    pub fn free_keyslot(&self) -> Option<u32> {
        let max = if self.version == 1 { 8 } else { 32 };
        (0..max).find(|s| !self.keyslots.contains(s))
    }
}

/// Stores the binding in the token with id `id` (replacing it), or a new token.
pub fn write_binding(
    cs: &Cryptsetup,
    device: &Path,
    id: Option<u32>,
    binding: &Binding,
) -> Result<(), String> {
    let json = binding.to_token().to_string();
    let mut args: Vec<std::ffi::OsString> =
        vec!["token".into(), "import".into(), "--json-file=-".into()];
    if let Some(id) = id {
        args.push(format!("--token-id={id}").into());
        args.push("--token-replace".into());
    }
    args.push(device.as_os_str().into());
    cs.exec(&args, Input::Text(json.as_bytes()), None, TIMEOUT)
        .map(|_| ())
        .map_err(|e| describe(&e, device))
}

fn describe(e: &OpenError, device: &Path) -> String {
    match e {
        OpenError::Failed(words) | OpenError::Crashed(words) => {
            format!("{}: {words}", device.display())
        }
        other => format!("{}: {other:?}", device.display()),
    }
}

/// `cryptsetup luksDump --dump-json-metadata`'s text (also the fuzz target's way in).
pub fn parse_luks2(json: &[u8]) -> Result<Header, String> {
    serde_json::from_slice(json)
        .map(|v| from_luks2(&v))
        .map_err(|e| format!("cannot read the LUKS2 metadata: {e}"))
}

fn from_luks2(v: &Value) -> Header {
    let ids = |key: &str| -> Vec<u32> {
        let mut ids: Vec<u32> = v
            .get(key)
            .and_then(Value::as_object)
            .map(|o| o.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default();
        crate::sort::sort(&mut ids);
        ids
    };
    let tokens = ids("tokens")
        .into_iter()
        .map(|id| (id, v["tokens"][id.to_string()].clone()))
        .collect();
    Header {
        version: 2,
        keyslots: ids("keyslots"),
        tokens,
    }
}

pub fn parse_luks1(dump: &str) -> Header {
    let keyslots = dump
        .lines()
        .filter_map(|l| l.strip_prefix("Key Slot "))
        .filter(|l| l.ends_with("ENABLED"))
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect();
    Header {
        version: 1,
        keyslots,
        tokens: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luks2_metadata_gives_keyslots_and_tokens() {
        let h = from_luks2(
            &json!({"keyslots":{"0":{},"2":{}},"tokens":{"1":{"type":"vault-luks","keyslots":["2"],"ciphertext":"vault:v1:x","transit_mount":"transit","transit_key":"luks"}}}),
        );
        assert_eq!(h.keyslots, vec![0, 2]);
        assert_eq!(h.free_keyslot(), Some(1));
        let (id, b) = h.binding().unwrap();
        assert_eq!((id, b.keyslot, b.ciphertext.as_str()), (1, 2, "vault:v1:x"));
    }

    #[test]
    fn luks1_text_dump_gives_keyslots() {
        let dump = "LUKS header information for l1.img\n\nVersion:       \t1\nKey Slot 0: ENABLED\n\tIterations: 1000\nKey Slot 1: DISABLED\nKey Slot 2: ENABLED\n";
        let h = parse_luks1(dump);
        assert_eq!(h.keyslots, vec![0, 2]);
        assert_eq!(h.version, 1);
        assert!(h.binding().is_none());
    }

    #[test]
    fn binding_round_trips_through_the_token() {
        let b = Binding {
            keyslot: 3,
            ciphertext: "vault:v2:abc".into(),
            transit_mount: "transit".into(),
            transit_key: "luks".into(),
            vault_address: "https://v:8200".into(),
            auth_method: "exoscale".into(),
            auth_role: "storage".into(),
        };
        assert_eq!(Binding::from_token(&b.to_token()), Some(b));
        assert_eq!(
            Binding::from_token(&json!({"type": "systemd-tpm2", "keyslots": ["0"]})),
            None
        );
    }
}
