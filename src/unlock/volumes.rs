//! The local half of an unlock, before anyone is asked: which configured volumes, whether each
//! is open already, its device (waited for), and its ciphertext (the article's file, or the
//! volume's LUKS2 token). Nothing here talks to the network.

use crate::config::{Config, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::wait_for_device;
use crate::luks::header::{Binding, Header};
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use std::path::Path;
use std::time::Duration;

/// How long `cryptsetup status` may take (asked only without sysfs): it only reads
/// device-mapper state.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Volumes that stayed locked, each with why.
pub type Failures = Vec<(String, Error)>;

/// A volume to unlock, its ciphertext, and the keyslot Vault's key is expected in. Owned: the
/// Vault side may run in a thread of its own.
pub struct Pending {
    pub volume: Volume,
    pub ciphertext: String,
    pub keyslot: Option<u32>,
}

/// The configured volumes named on the command line (all when none are named).
pub fn select<'c>(config: &'c Config, names: &[String]) -> Result<Vec<&'c Volume>> {
    if config.volumes.is_empty() {
        return Err(Error::Usage(format!(
            "no volumes configured in {}: add one with `vault-luks enroll`",
            config.origin
        )));
    }
    if names.is_empty() {
        return Ok(config.volumes.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.volumes.iter().find(|v| &v.name == n).ok_or_else(|| {
                let known: Vec<&str> = config.volumes.iter().map(|v| v.name.as_str()).collect();
                Error::Usage(format!(
                    "no volume named `{n}` in {} (configured: {})",
                    config.origin,
                    known.join(", ")
                ))
            })
        })
        .collect()
}

pub fn locate_cryptsetup() -> Result<Cryptsetup> {
    Cryptsetup::locate().ok_or_else(|| {
        Error::failed(
            Step::Cryptsetup,
            "cryptsetup not found on PATH, in /sbin or in /usr/sbin",
            "install cryptsetup (Debian: cryptsetup-bin), or include it in the initramfs",
        )
    })
}

/// Whether `name` is open as /dev/mapper/NAME (a failed check counts as not open).
pub fn is_open(cs: &Cryptsetup, name: &str) -> bool {
    crate::luks::mapper::is_active(Some(cs), name, STATUS_TIMEOUT).unwrap_or(false)
}

/// Local checks; `None` when there is nothing to do for this volume.
pub fn prepare(
    cs: &Cryptsetup,
    config: &Config,
    v: &Volume,
    deadline: &Deadline,
) -> Result<Option<Pending>> {
    if is_open(cs, &v.name) {
        crate::log::info(format_args!(
            "{}: already open as /dev/mapper/{}, nothing to do",
            v.name, v.name
        ));
        return Ok(None);
    }
    let wait = config.timeouts.device.min(deadline.remaining());
    if !v.device.exists() {
        crate::log::info(format_args!(
            "{}: waiting up to {:.0}s for {}",
            v.name,
            wait.as_secs_f64(),
            v.device.display()
        ));
    }
    if !wait_for_device(&v.device, wait) {
        return Err(Error::failed(
            Step::Device,
            format!("{} does not exist (waited {:.0}s)", v.device.display(), wait.as_secs_f64()),
            "check that the volume group is active (vgchange -ay) and the device path in the configuration",
        ));
    }
    // One header read serves both the token's ciphertext and its keyslot (a few milliseconds,
    // no key derivation); none when the configuration names both.
    let binding = if v.ciphertext_file.is_none() || v.keyslot.is_none() {
        token_binding(Some(cs), v)
    } else {
        Err("not read: the configuration names the file and the keyslot".to_string())
    };
    let ciphertext = match &v.ciphertext_file {
        Some(file) => ciphertext_from_file(file)?,
        None => binding
            .as_ref()
            .map(|b| b.ciphertext.clone())
            .map_err(|why| token_error(why))?,
    };
    let keyslot = v.keyslot.or(binding.ok().map(|b| b.keyslot));
    Ok(Some(Pending {
        volume: v.clone(),
        ciphertext,
        keyslot,
    }))
}

/// The ciphertext as the article stores it (`vault:vN:...` in a file, surrounding whitespace
/// trimmed), or, when the config names no file, from the volume's `vault-luks` LUKS2 token.
pub fn read_ciphertext(cs: Option<&Cryptsetup>, v: &Volume) -> Result<String> {
    match &v.ciphertext_file {
        Some(file) => ciphertext_from_file(file),
        None => token_binding(cs, v)
            .map(|b| b.ciphertext)
            .map_err(|m| token_error(&m)),
    }
}

fn ciphertext_from_file(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::failed(
            Step::Ciphertext,
            format!("cannot read {}: {e}", file.display()),
            "check volumes[].ciphertext_file (in the initramfs: that the file was included)",
        )
    })?;
    let text = text.trim();
    if !text.starts_with("vault:v") || text.contains(char::is_whitespace) {
        return Err(Error::failed(
            Step::Ciphertext,
            format!(
                "{} does not hold a Vault transit ciphertext (vault:vN:...)",
                file.display()
            ),
            "restore the file from a backup, or unlock with the backup passphrase",
        ));
    }
    Ok(text.to_string())
}

/// The binding `vault-luks enroll` stored in the volume's LUKS2 token: its ciphertext and
/// keyslot. A volume made with the article's commands has none.
fn token_binding(cs: Option<&Cryptsetup>, v: &Volume) -> std::result::Result<Binding, String> {
    let cs = cs.ok_or_else(|| "cryptsetup is not available".to_string())?;
    Header::read(cs, &v.device)?
        .binding()
        .map(|(_, b)| b)
        .ok_or_else(|| format!("{} has no vault-luks token", v.device.display()))
}

fn token_error(why: &str) -> Error {
    Error::failed(
        Step::Ciphertext,
        format!("no ciphertext_file configured, and the header's token cannot be used: {why}"),
        "set volumes[].ciphertext_file, or enroll the volume with vault-luks enroll",
    )
}

/// The ciphertext's key version (`vault:v3:...` is 3), for status and logs.
pub fn key_version(ciphertext: &str) -> Option<u32> {
    ciphertext
        .strip_prefix("vault:v")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_version_reads_the_prefix() {
        assert_eq!(key_version("vault:v1:abc"), Some(1));
        assert_eq!(key_version("vault:v12:abc"), Some(12));
        assert_eq!(key_version("vault:vx:abc"), None);
        assert_eq!(key_version("abc"), None);
    }
}
