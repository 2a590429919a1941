//! The unlock, as data flows through it: local checks (already open? device there? ciphertext
//! readable?), then identity, login, transit decrypt (one batch per key), token revoke, and
//! cryptsetup open. Network steps share one deadline; each volume fails or succeeds on its own.

use crate::config::{Config, KeyFormat, Transit, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::wait_for_device;
use crate::luks::{Cryptsetup, OpenError};
use crate::metadata::{ExoscaleMetadata, IdentitySource};
use crate::retry::Deadline;
use crate::secret::{decode_base64, Secret};
use crate::vault::{auth, transit, Vault};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long `cryptsetup status` may take: it only reads device-mapper state.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

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

struct Pending<'c> {
    volume: &'c Volume,
    ciphertext: String,
}

/// Unlocks the named volumes (all when none are named). With a `fallback`, a person may type a
/// passphrase while Vault is retried (see `fallback`); without, Vault alone.
pub fn unlock(
    config: &Config,
    names: &[String],
    fallback: Option<&crate::fallback::Fallback>,
) -> Result<()> {
    let volumes = select(config, names)?;
    let cs = locate_cryptsetup()?;
    let deadline = Deadline::after(config.timeouts.unlock);
    let list: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    crate::log::info(format_args!(
        "unlocking {} (deadline {:.0}s)",
        list.join(", "),
        config.timeouts.unlock.as_secs_f64()
    ));

    let total = volumes.len();
    let mut failures: Vec<(String, Error)> = Vec::new();
    let mut pending = Vec::new();
    for v in volumes {
        match prepare(&cs, config, v, &deadline) {
            Ok(Some(p)) => pending.push(p),
            Ok(None) => {}
            Err(e) => failures.push((v.name.clone(), e)),
        }
    }

    if let (Some(fallback), false) = (fallback, pending.is_empty()) {
        let owned = pending
            .into_iter()
            .map(|p| (p.volume.clone(), p.ciphertext))
            .collect();
        crate::fallback::unlock(config, &cs, owned, fallback, &mut failures);
    } else if !pending.is_empty() {
        match fetch_keys(config, &pending, &deadline, &mut failures) {
            Ok(keys) => {
                for (p, key) in keys {
                    if let Err(e) = open(&cs, config, p.volume, key) {
                        failures.push((p.volume.name.clone(), e));
                    }
                }
            }
            Err(e) => {
                for p in &pending {
                    failures.push((p.volume.name.clone(), e.clone()));
                }
            }
        }
    }
    report(failures, total)
}

/// crypttab `keyscript=` mode: the key of one volume on stdout, for cryptroot to pipe into
/// cryptsetup. Nothing else is written to stdout; log lines go to stderr or the kernel log.
pub fn keyscript(config: &Config, name: &str) -> Result<()> {
    use std::io::Write;
    let volume = select(config, &[name.to_string()])?[0];
    let deadline = Deadline::after(config.timeouts.unlock);
    crate::log::info(format_args!(
        "{name}: fetching the key for cryptroot (deadline {:.0}s)",
        config.timeouts.unlock.as_secs_f64()
    ));
    let pending = [Pending {
        volume,
        ciphertext: read_ciphertext(Cryptsetup::locate().as_ref(), volume)?,
    }];
    let mut failures = Vec::new();
    let keys = fetch_keys(config, &pending, &deadline, &mut failures)?;
    if let Some((_, e)) = failures.pop() {
        return Err(e.for_volume(name));
    }
    let (_, key) = keys
        .into_iter()
        .next()
        .expect("one key per pending volume without a failure");
    let mut out = std::io::stdout().lock();
    out.write_all(key.expose())
        .and_then(|_| out.flush())
        .map_err(|e| {
            Error::failed(
                Step::Cryptsetup,
                format!("cannot write the key to stdout: {e}"),
                "keyscript mode must run with stdout piped to cryptsetup",
            )
        })
}

/// Local checks; `None` when there is nothing to do for this volume.
fn prepare<'c>(
    cs: &Cryptsetup,
    config: &Config,
    v: &'c Volume,
    deadline: &Deadline,
) -> Result<Option<Pending<'c>>> {
    if cs.is_active(&v.name, STATUS_TIMEOUT).unwrap_or(false) {
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
    let ciphertext = read_ciphertext(Some(cs), v)?;
    Ok(Some(Pending {
        volume: v,
        ciphertext,
    }))
}

/// The ciphertext as the article stores it (`vault:vN:...` in a file, surrounding whitespace
/// trimmed), or, when the config names no file, from the volume's `vault-luks` LUKS2 token.
pub fn read_ciphertext(cs: Option<&Cryptsetup>, v: &Volume) -> Result<String> {
    let Some(file) = &v.ciphertext_file else {
        let from_token = cs
            .ok_or_else(|| "cryptsetup is not available".to_string())
            .and_then(|cs| crate::luks::header::Header::read(cs, &v.device))
            .and_then(|h| {
                h.binding()
                    .map(|(_, b)| b.ciphertext)
                    .ok_or_else(|| format!("{} has no vault-luks token", v.device.display()))
            });
        return from_token.map_err(|m| {
            Error::failed(
                Step::Ciphertext,
                format!(
                    "no ciphertext_file configured, and the header's token cannot be used: {m}"
                ),
                "set volumes[].ciphertext_file, or enroll the volume with vault-luks enroll",
            )
        });
    };
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

/// The ciphertext's key version (`vault:v3:...` is 3), for status and logs.
pub fn key_version(ciphertext: &str) -> Option<u32> {
    ciphertext
        .strip_prefix("vault:v")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// Identity (when the auth method needs it) and login: a Vault client and a token.
pub fn connect(config: &Config, deadline: &Deadline) -> Result<(Vault, auth::Token)> {
    let identity = if auth::needs_identity(&config.auth) {
        let source = ExoscaleMetadata::new(&config.metadata.url, config.timeouts.request);
        crate::log::info(format_args!(
            "metadata: asking the {} ({:.0}s left)",
            source.describe(),
            deadline.remaining().as_secs_f64()
        ));
        let id = source.fetch(deadline)?;
        crate::log::info(format_args!(
            "metadata: instance {} in zone {}",
            id.instance_id, id.zone
        ));
        Some(id)
    } else {
        None
    };
    let vault = Vault::new(&config.vault, &config.timeouts, &config.origin)?;
    crate::log::debug(format_args!(
        "vault: addresses {}",
        vault.addresses().join(", ")
    ));
    let token = auth::login(&vault, &config.auth, identity.as_ref(), deadline)?;
    Ok((vault, token))
}

/// Identity, login, one transit decrypt per key, revoke: the key of each pending volume (in
/// its configured format), or that volume's failure in `failures`.
fn fetch_keys<'p, 'c>(
    config: &Config,
    pending: &'p [Pending<'c>],
    deadline: &Deadline,
    failures: &mut Vec<(String, Error)>,
) -> Result<Vec<(&'p Pending<'c>, Secret)>> {
    // Up only while Vault is asked: dropped (torn down) on every way out of here.
    let network = crate::net::bring_up(config, deadline.instant())?;
    let (vault, token) = connect(config, deadline)?;

    // One request per transit key; volumes sharing a key go in one batch.
    let mut groups: BTreeMap<(&str, &str), Vec<&Pending>> = BTreeMap::new();
    for p in pending {
        groups
            .entry((&p.volume.transit.mount, &p.volume.transit.key))
            .or_default()
            .push(p);
    }
    let mut keys: Vec<(&Pending, Secret)> = Vec::new();
    for ((mount, key), members) in groups {
        let transit_key = Transit {
            mount: mount.to_string(),
            key: key.to_string(),
            context: None,
        };
        let items: Vec<transit::Ciphertext> = members
            .iter()
            .map(|p| transit::Ciphertext {
                text: &p.ciphertext,
                context: p.volume.transit.context.as_deref(),
            })
            .collect();
        match transit::decrypt(&vault, &token.secret, &transit_key, &items, deadline) {
            Ok(results) => {
                for (p, r) in members.into_iter().zip(results) {
                    match r
                        .map_err(|msg| transit::item_error(&msg, &transit_key))
                        .and_then(|pt| key_bytes(p.volume, pt))
                    {
                        Ok(key) => keys.push((p, key)),
                        Err(e) => failures.push((p.volume.name.clone(), e)),
                    }
                }
            }
            Err(e) => {
                for p in members {
                    failures.push((p.volume.name.clone(), e.clone()));
                }
            }
        }
    }
    auth::finish(&vault, token, deadline);
    drop(network);
    Ok(keys)
}

/// Volumes that stayed locked, each with why.
pub type Failures = Vec<(String, Error)>;

/// `fetch_keys` for a thread of its own: owned inputs, keys and failures by volume name.
pub fn fetch_owned(
    config: &Config,
    pending: &[(Volume, String)],
    deadline: &Deadline,
) -> (Vec<(String, Secret)>, Failures) {
    let pending: Vec<Pending> = pending
        .iter()
        .map(|(volume, ciphertext)| Pending {
            volume,
            ciphertext: ciphertext.clone(),
        })
        .collect();
    let mut failures = Vec::new();
    match fetch_keys(config, &pending, deadline, &mut failures) {
        Ok(keys) => (
            keys.into_iter()
                .map(|(p, key)| (p.volume.name.clone(), key))
                .collect(),
            failures,
        ),
        Err(e) => (
            Vec::new(),
            pending
                .iter()
                .map(|p| (p.volume.name.clone(), e.clone()))
                .collect(),
        ),
    }
}

/// One volume's key, for checks: its ciphertext decrypted and put in its key format.
pub fn key_for(
    cs: &Cryptsetup,
    vault: &Vault,
    token: &Secret,
    v: &Volume,
    deadline: &Deadline,
) -> Result<Secret> {
    let ciphertext = read_ciphertext(Some(cs), v)?;
    let items = [transit::Ciphertext {
        text: &ciphertext,
        context: v.transit.context.as_deref(),
    }];
    match transit::decrypt(vault, token, &v.transit, &items, deadline)?.pop() {
        Some(Ok(plaintext)) => key_bytes(v, plaintext),
        Some(Err(msg)) => Err(transit::item_error(&msg, &v.transit)),
        None => Err(Error::failed(
            Step::Decrypt,
            "Vault returned no plaintext",
            "",
        )),
    }
}

/// The bytes cryptsetup gets: the plaintext text as Vault returns it, or its decoding.
fn key_bytes(v: &Volume, plaintext: Secret) -> Result<Secret> {
    match v.key_format {
        KeyFormat::Base64Text => Ok(plaintext),
        KeyFormat::Raw => decode_base64(plaintext.expose())
            .map(Secret::new)
            .ok_or_else(|| {
                Error::failed(
                    Step::Decrypt,
                    "the transit plaintext is not base64",
                    "set key_format to base64 for this volume",
                )
            }),
    }
}

fn open(cs: &Cryptsetup, config: &Config, v: &Volume, key: Secret) -> Result<()> {
    crate::log::info(format_args!(
        "{}: cryptsetup open {} {}",
        v.name,
        v.device.display(),
        v.name
    ));
    match cs.open(&v.device, &v.name, &key, config.timeouts.cryptsetup) {
        Ok(()) => {
            crate::log::info(format_args!(
                "{}: unlocked as /dev/mapper/{}",
                v.name, v.name
            ));
            Ok(())
        }
        Err(e) => Err(open_error(v, e)),
    }
}

/// What a failed `cryptsetup open` with Vault's key means, and what to do.
pub fn open_error(v: &Volume, e: OpenError) -> Error {
    match e {
        OpenError::KeyRejected => Error::failed(
            Step::Cryptsetup,
            format!("the key from Vault does not open {} (no keyslot accepts it)", v.device.display()),
            "the ciphertext belongs to another volume or its keyslot was removed; unlock with the backup passphrase and re-enroll",
        ),
        OpenError::TimedOut(t) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup open {} did not finish within {:.0}s", v.device.display(), t.as_secs_f64()),
            "raise timeouts.cryptsetup (argon2id keyslots can be slow and memory-hungry)",
        ),
        OpenError::Failed(words) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup open {}: {words}", v.device.display()),
            "check the device is a LUKS volume and dm_crypt is available",
        ),
        OpenError::Crashed(words) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup crashed opening {}: {words}", v.device.display()),
            "cryptsetup cannot run here: the initramfs lacks a file it loads at run time (libgcc_s.so.1 when glibc names it); rebuild the initramfs with this vault-luks's hook or module, and open the volume by hand meanwhile",
        ),
    }
}

/// One volume's failure is returned as it is; with several volumes each failure is logged on
/// its own line and the summary says how many stayed locked.
fn report(mut failures: Vec<(String, Error)>, total: usize) -> Result<()> {
    // A configuration problem found on the way (e.g. an unreadable CA file) is exit 2 for all.
    if let Some(i) = failures
        .iter()
        .position(|(_, e)| matches!(e, Error::Config { .. }))
    {
        return Err(failures.swap_remove(i).1);
    }
    if failures.is_empty() {
        return Ok(());
    }
    if total == 1 {
        let (name, e) = failures.remove(0);
        return Err(e.for_volume(&name));
    }
    let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
    for (name, e) in failures {
        crate::log::error(format_args!("{}", e.for_volume(&name)));
    }
    Err(Error::failed(
        Step::Unlock,
        format!(
            "{} of {total} volumes stayed locked: {}",
            names.len(),
            names.join(", ")
        ),
        "see the lines above",
    ))
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
