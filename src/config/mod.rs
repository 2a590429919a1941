//! One validated `Config` from three layers, later ones winning: the JSON file, the vault CLI's
//! environment variables (BAO_* before VAULT_*), and `rd.vault-luks.*` on the kernel command
//! line. Malformed harmless options are warned about and ignored; anything that weakens
//! security (plain http, skipped TLS checks) must be spelled out in the file and is warned about.

mod cmdline;
mod network;
mod reader;
mod url;

pub use cmdline::{parse_cmdline, CmdlineOverrides};
pub use network::{NetworkConfig, StaticAddress};
pub use reader::parse_seconds_text;
pub use url::Url;

use crate::error::{Error, Result};
use reader::Obj;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/vault-luks/config.json";
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254/1.0/meta-data/";
pub const DEFAULT_EXOSCALE_MOUNT: &str = "exoscale";
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";
/// Where distributions keep the system CA bundle (Debian/Ubuntu, then Fedora/RHEL).
pub const SYSTEM_CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: String,
    pub vault: VaultConfig,
    pub auth: AuthConfig,
    pub metadata: MetadataConfig,
    pub timeouts: Timeouts,
    pub network: NetworkConfig,
    pub volumes: Vec<Volume>,
    /// Things the operator should know (insecure options, ignored settings). Printed by callers.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VaultAddress {
    pub url: Url,
    /// Where it came from, for messages: "vault.address", "VAULT_ADDR", "rd.vault-luks.address".
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub addresses: Vec<VaultAddress>,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub namespace: Option<String>,
    pub tls_server_name: Option<String>,
    pub allow_http: bool,
    pub tls_skip_verify: bool,
}

impl VaultConfig {
    /// The CA certificates that verify Vault: vault.ca_cert, else the system bundle if any.
    pub fn ca_bundle(&self) -> Option<PathBuf> {
        self.ca_cert.clone().or_else(|| {
            SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// exoscale/vault-plugin-auth-exoscale: the instance proves who it is by its id.
    Exoscale { role: String, approle_mode: bool },
    /// Vault's AppRole: role_id in the config, secret_id in a file.
    AppRole {
        role_id: String,
        secret_id_file: PathBuf,
    },
    /// A token handed over directly (token_file, or VAULT_TOKEN / BAO_TOKEN).
    Token { token_file: Option<PathBuf> },
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub method: AuthMethod,
    pub mount: String,
    /// Revoke the token when done. Default: yes for tokens we logged in for, no for given ones.
    pub revoke: bool,
    /// Set when VAULT_TOKEN/BAO_TOKEN is present: the name of the variable, read at use.
    pub token_env: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// Base URL ending in '/'; keys are appended.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole unlock: metadata, login, decrypt, with all retries.
    pub unlock: Duration,
    /// One HTTP request, connect included.
    pub request: Duration,
    /// How long to wait for a device node that is not there yet.
    pub device: Duration,
    /// One cryptsetup run (argon2id can take seconds and a lot of memory).
    pub cryptsetup: Duration,
    /// How long the passphrase prompt stays up after the unlock deadline; zero: no prompt.
    pub prompt: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            unlock: Duration::from_secs(60),
            request: Duration::from_secs(10),
            device: Duration::from_secs(30),
            cryptsetup: Duration::from_secs(120),
            prompt: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// The transit `plaintext` field as Vault returns it (base64 text): what the article's
    /// `vault write -field=plaintext ... | cryptsetup open --key-file=-` pipeline feeds cryptsetup.
    Base64Text,
    /// The decoded bytes of `plaintext`, for volumes keyed that way.
    Raw,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub device: PathBuf,
    /// Where the ciphertext is; `None`: in the volume's `vault-luks` LUKS2 token.
    pub ciphertext_file: Option<PathBuf>,
    pub transit: Transit,
    pub key_format: KeyFormat,
    /// The keyslot Vault's key opens, when the configuration names it (else the token's).
    pub keyslot: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transit {
    pub mount: String,
    pub key: String,
    /// Base64 context for derived keys.
    pub context: Option<String>,
}

impl Config {
    /// Reads and validates the file, then applies the environment. The kernel command line is
    /// applied separately (`apply_cmdline`) because only some commands honour it.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(&origin, "", format!("cannot read the file: {e}")))?;
        let mut config = Self::parse(&origin, &text)?;
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Config> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::config(origin, "", format!("not valid JSON: {e}")))?;
        let mut top = Obj::new(origin, "", value)?;
        let mut warnings = Vec::new();

        let vault = parse_vault(
            top.object("vault")?
                .ok_or_else(|| top.err("vault", "is required"))?,
        )?;
        let auth = parse_auth(
            top.object("auth")?
                .ok_or_else(|| top.err("auth", "is required"))?,
        )?;
        let metadata = match top.object("metadata")? {
            Some(o) => parse_metadata(o)?,
            None => MetadataConfig {
                url: DEFAULT_METADATA_URL.to_string(),
            },
        };
        let timeouts = match top.object("timeouts")? {
            Some(o) => parse_timeouts(o)?,
            None => Timeouts::default(),
        };
        let network = match top.object("network")? {
            Some(o) => network::parse_network(o)?,
            None => NetworkConfig::default(),
        };
        // Absent or empty is allowed: `vault-luks enroll` adds volumes to such a file.
        let items = top.array("volumes")?.unwrap_or_default();
        if items.is_empty() {
            warnings
                .push("no volumes configured yet: add one with `vault-luks enroll`".to_string());
        }
        let mut volumes: Vec<Volume> = Vec::new();
        for (path, value) in items {
            let v = parse_volume(Obj::new(origin, &path, value)?)?;
            if volumes.iter().any(|o| o.name == v.name) {
                return Err(Error::config(
                    origin,
                    format!("{path}.name"),
                    format!("`{}` is used by another volume", v.name),
                ));
            }
            volumes.push(v);
        }
        top.finish()?;

        if !matches!(auth.method, AuthMethod::Exoscale { .. })
            && metadata.url != DEFAULT_METADATA_URL
        {
            warnings
                .push("metadata.url is only used by the exoscale auth method; ignored".to_string());
        }
        Ok(Config {
            origin: origin.to_string(),
            vault,
            auth,
            metadata,
            timeouts,
            network,
            volumes,
            warnings,
        })
    }

    /// The vault CLI's variables, OpenBao's BAO_* first. They override the file, as they do
    /// for the vault CLI. VAULT_SKIP_VERIFY is deliberately not honoured: relaxing TLS must be
    /// written in the config.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let get = |name: &str| -> Option<(String, String)> {
            for prefix in ["BAO_", "VAULT_"] {
                let var = format!("{prefix}{name}");
                if let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) {
                    return Some((var, v));
                }
            }
            None
        };
        if let Some((var, addr)) = get("ADDR") {
            self.vault.addresses = vec![parse_address("environment", &var, &addr)?];
        }
        if let Some((_, v)) = get("CACERT") {
            self.vault.ca_cert = Some(PathBuf::from(v));
        }
        if let Some((_, v)) = get("CLIENT_CERT") {
            self.vault.client_cert = Some(PathBuf::from(v));
        }
        if let Some((_, v)) = get("CLIENT_KEY") {
            self.vault.client_key = Some(PathBuf::from(v));
        }
        if let Some((_, v)) = get("NAMESPACE") {
            self.vault.namespace = Some(v);
        }
        if let Some((_, v)) = get("TLS_SERVER_NAME") {
            self.vault.tls_server_name = Some(v);
        }
        // Only the variable's name is kept; the token is read when it is needed, into a Secret.
        for var in ["BAO_TOKEN", "VAULT_TOKEN"] {
            if env(var).is_some_and(|v| !v.trim().is_empty()) {
                self.auth.token_env = Some(var);
                break;
            }
        }
        Ok(())
    }

    /// Kernel command line overrides (`rd.vault-luks.*`). Returns what the caller must act on.
    pub fn apply_cmdline(&mut self, o: &CmdlineOverrides) -> Result<()> {
        if let Some(addrs) = &o.addresses {
            self.vault.addresses = addrs
                .iter()
                .map(|a| parse_address("kernel command line", "rd.vault-luks.address", a))
                .collect::<Result<_>>()?;
        }
        if let Some(t) = o.timeout {
            self.timeouts.unlock = t;
        }
        if let Some(t) = o.prompt_timeout {
            self.timeouts.prompt = t;
        }
        if let Some(on) = o.network {
            self.network.enabled = on;
        }
        self.warnings.extend(o.warnings.iter().cloned());
        self.validate()
    }

    /// Rules that span fields and layers; run after every layer is applied.
    fn validate(&mut self) -> Result<()> {
        let v = &self.vault;
        if v.addresses.is_empty() {
            return Err(Error::config(&self.origin, "vault.address", "no Vault address: set vault.address (or vault.addresses), VAULT_ADDR, or rd.vault-luks.address"));
        }
        for a in &v.addresses {
            if !a.url.https && !v.allow_http {
                return Err(Error::config(
                    &self.origin,
                    &a.origin,
                    format!(
                        "{} is plain http: the token and the key would cross the network in clear text; use https:// or set vault.allow_http to true",
                        a.url.base()
                    ),
                ));
            }
        }
        if v.client_cert.is_some() != v.client_key.is_some() {
            return Err(Error::config(
                &self.origin,
                "vault.client_cert",
                "client_cert and client_key go together: set both or neither",
            ));
        }
        self.warnings.retain(|w| !w.starts_with("insecure:"));
        if v.addresses.iter().any(|a| !a.url.https) {
            self.warnings.push("insecure: vault.allow_http is set and a Vault address is plain http; the token and key travel unencrypted".to_string());
        }
        if v.tls_skip_verify {
            self.warnings.push(
                "insecure: vault.tls_skip_verify is set; any server can pose as Vault".to_string(),
            );
        }
        Ok(())
    }

    /// Every file the config refers to, for the initramfs builders to copy in.
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        let v = &self.vault;
        files.extend(
            [&v.ca_cert, &v.client_cert, &v.client_key]
                .into_iter()
                .flatten()
                .cloned(),
        );
        match &self.auth.method {
            AuthMethod::AppRole { secret_id_file, .. } => files.push(secret_id_file.clone()),
            AuthMethod::Token {
                token_file: Some(f),
            } => files.push(f.clone()),
            _ => {}
        }
        files.extend(
            self.volumes
                .iter()
                .filter_map(|v| v.ciphertext_file.clone()),
        );
        crate::sort::sort(&mut files);
        files.dedup();
        files
    }
}

fn parse_address(origin: &str, field: &str, s: &str) -> Result<VaultAddress> {
    let url = Url::parse(s).map_err(|m| Error::config(origin, field, m))?;
    Ok(VaultAddress {
        url,
        origin: field.to_string(),
    })
}

fn parse_vault(mut o: Obj) -> Result<VaultConfig> {
    let single = o.string("address")?;
    let several = o.string_list("addresses")?;
    let mut addresses = Vec::new();
    match (single, several) {
        (Some(_), Some(_)) => {
            return Err(o.err("addresses", "set either address or addresses, not both"))
        }
        (Some(a), None) => addresses.push(parse_address(o.origin(), &o.field("address"), &a)?),
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(o.err("addresses", "must list at least one address"));
            }
            for (i, a) in list.iter().enumerate() {
                addresses.push(parse_address(
                    o.origin(),
                    &format!("{}[{i}]", o.field("addresses")),
                    a,
                )?);
            }
        }
        (None, None) => {
            // Allowed: VAULT_ADDR or rd.vault-luks.address may supply it; checked in validate().
        }
    }
    let tls_server_name = o.string("tls_server_name")?;
    if let Some(n) = &tls_server_name {
        if Url::parse(&format!("https://{n}"))
            .map(|u| u.host != *n)
            .unwrap_or(true)
        {
            return Err(o.err("tls_server_name", format!("`{n}` is not a host name")));
        }
    }
    let config = VaultConfig {
        addresses,
        ca_cert: o.string("ca_cert")?.map(PathBuf::from),
        client_cert: o.string("client_cert")?.map(PathBuf::from),
        client_key: o.string("client_key")?.map(PathBuf::from),
        namespace: o.string("namespace")?,
        tls_server_name,
        allow_http: o.bool("allow_http")?.unwrap_or(false),
        tls_skip_verify: o.bool("tls_skip_verify")?.unwrap_or(false),
    };
    o.finish()?;
    Ok(config)
}

fn parse_auth(mut o: Obj) -> Result<AuthConfig> {
    let method_name = o
        .string("method")?
        .unwrap_or_else(|| "exoscale".to_string());
    let revoke = o.bool("revoke_token")?;
    let mount = o.string("mount")?;
    let (method, default_mount) = match method_name.as_str() {
        "exoscale" => (
            AuthMethod::Exoscale {
                role: o.required_string("role")?,
                approle_mode: o.bool("approle_mode")?.unwrap_or(false),
            },
            DEFAULT_EXOSCALE_MOUNT,
        ),
        "approle" => (
            AuthMethod::AppRole {
                role_id: o.required_string("role_id")?,
                secret_id_file: PathBuf::from(o.required_string("secret_id_file")?),
            },
            DEFAULT_APPROLE_MOUNT,
        ),
        "token" => (
            AuthMethod::Token {
                token_file: o.string("token_file")?.map(PathBuf::from),
            },
            "token",
        ),
        other => {
            return Err(o.err(
                "method",
                format!("`{other}` is not one of exoscale, approle, token"),
            ));
        }
    };
    let given_token = matches!(method, AuthMethod::Token { .. });
    let mount = mount.unwrap_or_else(|| default_mount.to_string());
    if mount.contains("..") || mount.starts_with('/') || mount.ends_with('/') {
        return Err(o.err(
            "mount",
            format!("`{mount}` is not a mount path (no leading or trailing '/')"),
        ));
    }
    o.finish()?;
    Ok(AuthConfig {
        method,
        mount,
        revoke: revoke.unwrap_or(!given_token),
        token_env: None,
    })
}

fn parse_metadata(mut o: Obj) -> Result<MetadataConfig> {
    let url = o
        .string("url")?
        .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string());
    if let Err(m) = Url::parse(&url) {
        return Err(o.err("url", m));
    }
    let url = if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    };
    o.finish()?;
    Ok(MetadataConfig { url })
}

fn parse_timeouts(mut o: Obj) -> Result<Timeouts> {
    let d = Timeouts::default();
    let t = Timeouts {
        unlock: o.seconds("unlock")?.unwrap_or(d.unlock),
        request: o.seconds("request")?.unwrap_or(d.request),
        device: o.seconds("device")?.unwrap_or(d.device),
        cryptsetup: o.seconds("cryptsetup")?.unwrap_or(d.cryptsetup),
        prompt: o.seconds_or_zero("prompt")?.unwrap_or(d.prompt),
    };
    o.finish()?;
    Ok(t)
}

fn parse_volume(mut o: Obj) -> Result<Volume> {
    let name = o.required_string("name")?;
    // A device-mapper name: also a file name under /dev/mapper.
    if name.len() > 127
        || name.contains('/')
        || name == "."
        || name == ".."
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(o.err("name", format!("`{name}` is not a usable device-mapper name (no '/', whitespace, at most 127 bytes)")));
    }
    let device = PathBuf::from(o.required_string("device")?);
    let ciphertext_file = o.string("ciphertext_file")?.map(PathBuf::from);
    let mut t = o
        .object("transit")?
        .ok_or_else(|| o.err("transit", "is required (at least {\"key\": \"...\"})"))?;
    let transit = Transit {
        mount: t
            .string("mount")?
            .unwrap_or_else(|| DEFAULT_TRANSIT_MOUNT.to_string()),
        key: t.required_string("key")?,
        context: t.string("context")?,
    };
    if let Some(c) = &transit.context {
        if crate::secret::decode_base64(c.as_bytes()).is_none() {
            return Err(t.err("context", "must be base64, as Vault's transit API expects"));
        }
    }
    if transit.key.contains('/') {
        return Err(t.err("key", "a transit key name has no '/'"));
    }
    t.finish()?;
    let key_format = match o.string("key_format")?.as_deref() {
        None | Some("base64") => KeyFormat::Base64Text,
        Some("raw") => KeyFormat::Raw,
        Some(other) => {
            return Err(o.err(
                "key_format",
                format!("`{other}` is not base64 (the article's format, default) or raw"),
            ))
        }
    };
    // LUKS2 has 32 keyslots.
    let keyslot = o.index("keyslot", 31)?;
    o.finish()?;
    Ok(Volume {
        name,
        device,
        ciphertext_file,
        transit,
        key_format,
        keyslot,
    })
}

#[cfg(test)]
mod tests;
