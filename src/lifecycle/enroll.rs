//! `vault-luks enroll NAME --device DEV`: a new random key in the article's format, wrapped by
//! transit, given a keyslot of its own (on a new LUKS2 volume with --format, or beside the
//! existing passphrases), recorded in the ciphertext file, a LUKS2 token and the config.
//!
//! Order, so a crash never loses access: the ciphertext is stored (and proven to decrypt back
//! to the key) before the key gets a keyslot; an existing volume keeps its passphrases.

use super::{key_opens, luks_error, new_key, step_done, FAST_PBKDF, LUKS_TIMEOUT};
use crate::config::{Config, Transit};
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::Input;
use crate::luks::header::{write_binding, Binding, Header};
use crate::luks::{Cryptsetup, OpenError};
use crate::retry::Deadline;
use crate::secret::Secret;
use crate::vault::{auth::Session, transit};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub name: String,
    pub device: PathBuf,
    /// Create a new LUKS2 volume (refused on a device holding a LUKS header or a file system
    /// unless `force`).
    pub format: bool,
    pub force: bool,
    /// An existing passphrase, from a file, to authorise the new keyslot (else cryptsetup
    /// asks on the terminal).
    pub key_file: Option<PathBuf>,
    pub ciphertext_file: Option<PathBuf>,
    pub transit: Transit,
    /// Also add a recovery passphrase (argon2id keyslot) and print it, once.
    pub recovery: bool,
}

pub fn enroll(config: &Config, config_path: &Path, o: &Options, cs: &Cryptsetup) -> Result<()> {
    refuse_a_name_taken_or_no_device(config, o)?;
    let ciphertext_file = ciphertext_file(o)?;
    refuse_a_device_not_fit(o, cs)?;
    let deadline = Deadline::after(config.timeouts.unlock);
    let session = crate::unlock::connect(config, &deadline)?;
    let key = new_key()?;
    let result = Enrollment {
        config,
        config_path,
        o,
        cs,
        session: &session,
        key: &key,
        ciphertext_file: &ciphertext_file,
        deadline: &deadline,
    }
    .wrap_and_store();
    session.finish(&deadline);
    result?;
    if o.recovery {
        add_recovery_passphrase(o, cs, &key)?;
    } else if o.format {
        warn_vault_is_the_only_key(o, &ciphertext_file);
    }
    crate::log::info(format_args!("{}: enrolled; `vault-luks unlock {}` opens it, and so will the boot once the initramfs is rebuilt", o.name, o.name));
    Ok(())
}

/// An enroll error (the volume is not in the config yet, so it names no volume).
fn fail(detail: String, hint: &str) -> Error {
    Error::failed(Step::Enroll, detail, hint)
}

/// Refuses a name the config already has, and a device that does not exist.
fn refuse_a_name_taken_or_no_device(config: &Config, o: &Options) -> Result<()> {
    if config.volumes.iter().any(|v| v.name == o.name) {
        return Err(fail(
            format!("`{}` is already in {}", o.name, config.origin),
            "pick another name, or use `vault-luks rotate` for a new key",
        ));
    }
    if !o.device.exists() {
        return Err(fail(
            format!("{} does not exist", o.device.display()),
            "check --device",
        ));
    }
    Ok(())
}

/// Where the ciphertext goes (--ciphertext-file, else /etc/vault-luks/NAME.passphrase); an
/// existing file is replaced only with --force.
fn ciphertext_file(o: &Options) -> Result<PathBuf> {
    let ciphertext_file = o
        .ciphertext_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/etc/vault-luks/{}.passphrase", o.name)));
    if ciphertext_file.exists() && !o.force {
        return Err(fail(
            format!("{} already exists", ciphertext_file.display()),
            "choose another --ciphertext-file, or --force to replace it",
        ));
    }
    Ok(ciphertext_file)
}

/// With --format, refuses a device holding a LUKS header or a file system (unless --force);
/// without it, refuses a device that is not LUKS.
fn refuse_a_device_not_fit(o: &Options, cs: &Cryptsetup) -> Result<()> {
    let is_luks = cs
        .exec(
            &["isLuks".as_ref(), o.device.as_os_str()],
            Input::Nothing,
            None,
            LUKS_TIMEOUT,
        )
        .is_ok();
    if o.format {
        if is_luks && !o.force {
            return Err(fail(
                format!(
                    "{} already holds a LUKS header; refusing to format it",
                    o.device.display()
                ),
                "enroll without --format to add a keyslot, or --force to destroy it",
            ));
        }
        if let Some(fs) = signature(&o.device).filter(|_| !o.force && !is_luks) {
            return Err(fail(
                format!(
                    "{} holds a {fs} signature; refusing to format it",
                    o.device.display()
                ),
                "--force to destroy it",
            ));
        }
    } else if !is_luks {
        return Err(fail(
            format!("{} is not a LUKS volume", o.device.display()),
            "add --format to create one",
        ));
    }
    Ok(())
}

/// Adds a recovery passphrase (argon2id: a person types it) authorised by Vault's key, and
/// prints it, once.
fn add_recovery_passphrase(o: &Options, cs: &Cryptsetup, key: &Secret) -> Result<()> {
    let recovery = recovery_passphrase()?;
    let args = [
        "luksAddKey".as_ref(),
        "--pbkdf".as_ref(),
        "argon2id".as_ref(),
        "--key-file=-".as_ref(),
        o.device.as_os_str(),
        "/dev/fd/3".as_ref(),
    ];
    cs.exec(&args, Input::Key(key), Some(&recovery), LUKS_TIMEOUT)
        .map_err(|e| luks_error(&o.device, "luksAddKey (recovery)", e))?;
    println!(
        "Recovery passphrase for {} (shown once; store it offline):",
        o.name
    );
    println!("{}", String::from_utf8_lossy(recovery.expose()));
    Ok(())
}

/// A volume formatted without --recovery opens only through Vault: says so, and how to add
/// a passphrase.
fn warn_vault_is_the_only_key(o: &Options, ciphertext_file: &Path) {
    crate::log::warn(format_args!(
        "{}: Vault's key is the only keyslot: without Vault this volume cannot be opened. Add a recovery passphrase with `cryptsetup luksAddKey {}` (it asks for a passphrase: get the current key with `vault write -field=plaintext {}/decrypt/{} ciphertext=@{}`), or enroll again with --recovery next time",
        o.name,
        o.device.display(),
        o.transit.mount,
        o.transit.key,
        ciphertext_file.display()
    ));
}

/// What every step of storing the new key works with, once Vault is connected.
struct Enrollment<'a> {
    config: &'a Config,
    config_path: &'a Path,
    o: &'a Options,
    cs: &'a Cryptsetup,
    session: &'a Session<'a>,
    key: &'a Secret,
    ciphertext_file: &'a Path,
    deadline: &'a Deadline,
}

impl Enrollment<'_> {
    /// The module header's order: the ciphertext is stored (and proven) before the key gets
    /// a keyslot, the keyslot proven before the config names the volume.
    fn wrap_and_store(&self) -> Result<()> {
        let ciphertext = self.wrap_proven()?;
        self.store_ciphertext(&ciphertext)?;
        let keyslot = if self.o.format {
            self.format_volume()?
        } else {
            self.add_keyslot()?
        };
        step_done("keyslot-added");
        self.store_token(keyslot, &ciphertext)?;
        self.prove_keyslot(keyslot)?;
        add_to_config(self.config_path, self.o, self.ciphertext_file)?;
        step_done("config-updated");
        crate::log::info(format_args!(
            "{}: keyslot {keyslot} opens with Vault's key; ciphertext in {}",
            self.o.name,
            self.ciphertext_file.display()
        ));
        Ok(())
    }

    /// The key's ciphertext, proven to decrypt back to it before anything depends on it (a
    /// wrong context would not).
    fn wrap_proven(&self) -> Result<String> {
        let (session, transit, deadline) = (self.session, &self.o.transit, self.deadline);
        let ciphertext = transit::encrypt(session, transit, self.key, deadline)?;
        let back = transit::decrypt(
            session,
            transit,
            &[transit::Ciphertext {
                text: &ciphertext,
                context: transit.context.as_deref(),
            }],
            deadline,
        )?;
        if !matches!(back.first(), Some(Ok(k)) if k.expose() == self.key.expose()) {
            return Err(fail(
                "the new ciphertext does not decrypt back to the key".into(),
                "check the transit key and context",
            ));
        }
        Ok(ciphertext)
    }

    /// Writes the ciphertext file, atomically.
    fn store_ciphertext(&self, ciphertext: &str) -> Result<()> {
        let file = self.ciphertext_file;
        crate::files::write_atomically(file, format!("{ciphertext}\n").as_bytes(), 0o600)
            .map_err(|e| fail(format!("cannot write {}: {e}", file.display()), ""))?;
        step_done("ciphertext-stored");
        Ok(())
    }

    /// --format: a new LUKS2 volume whose keyslot 0 is the key's.
    fn format_volume(&self) -> Result<u32> {
        let device = &self.o.device;
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "luksFormat".as_ref(),
            "--batch-mode".as_ref(),
            "--type".as_ref(),
            "luks2".as_ref(),
            "--key-slot".as_ref(),
            "0".as_ref(),
        ];
        args.extend(FAST_PBKDF.iter().map(std::ffi::OsStr::new));
        args.extend(["--key-file=-".as_ref(), device.as_os_str()]);
        self.cs
            .exec(&args, Input::Key(self.key), None, LUKS_TIMEOUT)
            .map_err(|e| luks_error(device, "luksFormat", e))?;
        Ok(0)
    }

    /// An existing volume: the key gets a free keyslot, authorised by an existing passphrase
    /// (--key-file, else cryptsetup asks on the terminal).
    fn add_keyslot(&self) -> Result<u32> {
        let device = &self.o.device;
        let header =
            Header::read(self.cs, device).map_err(|m| Error::failed(Step::Cryptsetup, m, ""))?;
        let slot = header.free_keyslot().ok_or_else(|| {
            fail(
                format!("{} has no free keyslot", device.display()),
                "remove one with cryptsetup luksKillSlot",
            )
        })?;
        let slot_arg = format!("--key-slot={slot}");
        let mut args: Vec<std::ffi::OsString> = vec!["luksAddKey".into(), slot_arg.into()];
        args.extend(FAST_PBKDF.iter().map(std::ffi::OsString::from));
        let input = match &self.o.key_file {
            Some(f) => {
                args.push(format!("--key-file={}", f.display()).into());
                Input::Nothing
            }
            None => Input::Terminal,
        };
        args.extend([device.as_os_str().into(), "/dev/fd/3".into()]);
        self.cs
            .exec(&args, input, Some(self.key), LUKS_TIMEOUT)
            .map_err(|e| match e {
                OpenError::KeyRejected => fail(
                    format!("the existing passphrase does not open {}", device.display()),
                    "give a passphrase of one of its keyslots (prompt or --key-file)",
                ),
                other => luks_error(device, "luksAddKey", other),
            })?;
        Ok(slot)
    }

    /// LUKS2 only: a token naming the keyslot and holding the ciphertext.
    fn store_token(&self, keyslot: u32, ciphertext: &str) -> Result<()> {
        let version = Header::read(self.cs, &self.o.device)
            .map(|h| h.version)
            .unwrap_or(1);
        if version != 2 {
            return Ok(());
        }
        let binding = Binding::new(
            self.config,
            &self.o.transit,
            keyslot,
            ciphertext.to_string(),
        );
        write_binding(self.cs, &self.o.device, None, &binding)
            .map_err(|m| fail(format!("cannot store the LUKS2 token: {m}"), ""))?;
        step_done("token-stored");
        Ok(())
    }

    /// Proves the key opens its keyslot before the config names the volume.
    fn prove_keyslot(&self, keyslot: u32) -> Result<()> {
        if !key_opens(self.cs, &self.o.device, Some(keyslot), self.key)? {
            return Err(fail(
                format!("keyslot {keyslot} does not open with the new key"),
                "report this: nothing was added to the config",
            ));
        }
        Ok(())
    }
}

/// Appends the volume to the config file, keeping everything else in it as it was.
fn add_to_config(path: &Path, o: &Options, ciphertext_file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::failed(
            Step::Enroll,
            format!("cannot read {}: {e}", path.display()),
            "",
        )
    })?;
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(path.display().to_string(), "", e.to_string()))?;
    let mut transit = serde_json::json!({ "key": o.transit.key });
    if o.transit.mount != crate::config::DEFAULT_TRANSIT_MOUNT {
        transit["mount"] = o.transit.mount.clone().into();
    }
    if let Some(c) = &o.transit.context {
        transit["context"] = c.clone().into();
    }
    let entry = serde_json::json!({
        "name": o.name,
        "device": o.device,
        "ciphertext_file": ciphertext_file,
        "transit": transit,
    });
    match v.get_mut("volumes").and_then(|a| a.as_array_mut()) {
        Some(list) => list.push(entry),
        None => v["volumes"] = serde_json::json!([entry]),
    }
    let new_text =
        serde_json::to_string_pretty(&v).expect("serializing a JSON value cannot fail") + "\n";
    Config::parse(&path.display().to_string(), &new_text)?;
    crate::files::write_atomically(path, new_text.as_bytes(), 0o600).map_err(|e| {
        Error::failed(
            Step::Enroll,
            format!("cannot write {}: {e}", path.display()),
            "",
        )
    })
}

/// A passphrase a person can type: 8 groups of 4 from an alphabet without look-alikes
/// (32 symbols: 160 bits).
fn recovery_passphrase() -> Result<Secret> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(raw.as_mut())
        .map_err(|e| Error::failed(Step::Enroll, format!("no randomness: {e}"), ""))?;
    let mut out = Vec::with_capacity(39);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(b'-');
        }
        out.push(ALPHABET[usize::from(*b) % 32]);
    }
    Ok(Secret::new(out))
}

/// A file-system or RAID signature on the device, by blkid if it is there (bounded: a sick
/// device must not hang enroll).
fn signature(device: &Path) -> Option<String> {
    let mut cmd = std::process::Command::new("blkid");
    cmd.args(["-p", "-o", "value", "-s", "TYPE"]).arg(device);
    let out = crate::luks::cryptsetup::run(
        cmd,
        Input::Nothing,
        None,
        std::time::Duration::from_secs(30),
    )
    .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_passphrases_are_typeable_and_differ() {
        let a = recovery_passphrase().unwrap();
        let b = recovery_passphrase().unwrap();
        let text = std::str::from_utf8(a.expose()).unwrap();
        assert_eq!(text.len(), 39);
        assert_eq!(text.matches('-').count(), 7);
        assert!(text
            .chars()
            .all(|c| c == '-' || "abcdefghijkmnpqrstuvwxyz23456789".contains(c)));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn new_keys_have_the_articles_format() {
        let k = new_key().unwrap();
        assert_eq!(k.expose().len(), 32);
        assert_eq!(crate::secret::decode_base64(k.expose()).unwrap().len(), 24);
    }
}
