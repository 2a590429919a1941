//! `vault-luks rotate NAME`: a new random key in a new keyslot, its ciphertext stored, the old
//! keyslot removed. At every point the ciphertext file names a key that opens a keyslot:
//!   1. stage the new ciphertext beside the file (`FILE.new`)   file: old key, old slot
//!   2. add the new keyslot, authorised by the old key          file: old key, old slot
//!   3. rename FILE.new over FILE                               file: new key, new slot
//!   4. point the LUKS2 token at the new slot and ciphertext
//!   5. remove the old keyslot, authorised by the new key
//!
//! A crash leaves at most a stale FILE.new or an extra keyslot, never a locked volume.

use super::{key_opens, luks_error, new_key, step_done, FAST_PBKDF, LUKS_TIMEOUT};
use crate::config::{Config, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::Input;
use crate::luks::header::{write_binding, Binding, Header};
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use crate::secret::Secret;
use crate::unlock::{read_ciphertext, select};
use crate::vault::{auth::Session, transit};
use std::path::{Path, PathBuf};

pub fn rotate(config: &Config, name: &str, cs: &Cryptsetup) -> Result<()> {
    let v = select(config, &[name.to_string()])?[0];
    let header = Header::read(cs, &v.device).map_err(|m| {
        Error::failed(Step::Rotate, m, "is the device there and a LUKS volume?").for_volume(name)
    })?;
    let old_ciphertext = read_ciphertext(Some(cs), v)?;
    let deadline = Deadline::after(config.timeouts.unlock);
    let session = crate::unlock::connect(config, &deadline)?;
    let rotation = Rotation {
        config,
        name,
        cs,
        v,
        header: &header,
        session: &session,
        deadline: &deadline,
    };
    let result = rotation.run(&old_ciphertext);
    session.finish(&deadline);
    result
}

/// What every step of one rotation works with.
struct Rotation<'a> {
    config: &'a Config,
    name: &'a str,
    cs: &'a Cryptsetup,
    v: &'a Volume,
    header: &'a Header,
    session: &'a Session<'a>,
    deadline: &'a Deadline,
}

impl Rotation<'_> {
    /// The steps of the module's header, in that order: each is done before the next begins.
    fn run(&self, old_ciphertext: &str) -> Result<()> {
        let old_key =
            transit::decrypt_one(self.session, &self.v.transit, old_ciphertext, self.deadline)?;
        let old_slot = self.slot_of_current_key(&old_key)?;
        let new_slot = self.free_slot()?;
        let new_key = new_key()?;
        let new_ciphertext = self.wrap_proven(&new_key)?;
        let staged = self.stage(&new_ciphertext)?;
        self.add_keyslot(new_slot, &old_key, &new_key)?;
        self.switch_file(staged.as_deref())?;
        self.update_token(new_slot, &new_ciphertext)?;
        self.remove_old_keyslot(old_slot, &new_key)?;
        self.report(old_slot, new_slot);
        Ok(())
    }

    /// A rotation error, named for the volume.
    fn fail(&self, detail: String, hint: &str) -> Error {
        Error::failed(Step::Rotate, detail, hint).for_volume(self.name)
    }

    /// The keyslot the current key opens; none means the ciphertext is already stale.
    fn slot_of_current_key(&self, old_key: &Secret) -> Result<u32> {
        find_slot(self.cs, self.v, self.header, old_key)?.ok_or_else(|| {
            self.fail(
                format!("the current key does not open {}", self.v.device.display()),
                "unlock with the backup passphrase and enroll again",
            )
        })
    }

    /// A free keyslot for the new key (both keys hold a slot until the old one is removed).
    fn free_slot(&self) -> Result<u32> {
        self.header.free_keyslot().ok_or_else(|| {
            self.fail(
                format!("{} has no free keyslot", self.v.device.display()),
                "remove an unused one with cryptsetup luksKillSlot",
            )
        })
    }

    /// The new key's ciphertext, proven to decrypt back to it before anything depends on it.
    fn wrap_proven(&self, new_key: &Secret) -> Result<String> {
        let (session, v, deadline) = (self.session, self.v, self.deadline);
        let new_ciphertext = transit::encrypt(session, &v.transit, new_key, deadline)?;
        let decrypted = transit::decrypt_one(session, &v.transit, &new_ciphertext, deadline)?;
        if decrypted.expose() != new_key.expose() {
            return Err(self.fail(
                "the new ciphertext does not decrypt back to the new key".into(),
                "check the transit key and context",
            ));
        }
        Ok(new_ciphertext)
    }

    /// Step 1: writes the new ciphertext to FILE.new; returns that path (none for a volume
    /// whose ciphertext lives only in its token: it has no file to stage or switch).
    fn stage(&self, new_ciphertext: &str) -> Result<Option<PathBuf>> {
        let staged = self
            .v
            .ciphertext_file
            .as_ref()
            .map(|f| PathBuf::from(format!("{}.new", f.display())));
        if let Some(staged) = &staged {
            crate::files::write_atomically(staged, format!("{new_ciphertext}\n").as_bytes(), 0o600)
                .map_err(|e| self.fail(format!("cannot write {}: {e}", staged.display()), ""))?;
        }
        step_done("rotate-staged");
        Ok(staged)
    }

    /// Step 2: the new key gets `new_slot`, authorised by the old key.
    fn add_keyslot(&self, new_slot: u32, old_key: &Secret, new_key: &Secret) -> Result<()> {
        let slot_arg = format!("--key-slot={new_slot}");
        let mut args: Vec<&std::ffi::OsStr> = vec!["luksAddKey".as_ref(), slot_arg.as_ref()];
        args.extend(FAST_PBKDF.iter().map(std::ffi::OsStr::new));
        args.extend([
            "--key-file=-".as_ref(),
            self.v.device.as_os_str(),
            "/dev/fd/3".as_ref(),
        ]);
        self.cs
            .exec(&args, Input::Key(old_key), Some(new_key), LUKS_TIMEOUT)
            .map_err(|e| luks_error(&self.v.device, "luksAddKey", e))?;
        step_done("rotate-keyslot-added");
        Ok(())
    }

    /// Step 3: FILE.new replaces FILE, durably.
    fn switch_file(&self, staged: Option<&Path>) -> Result<()> {
        if let (Some(staged), Some(file)) = (staged, &self.v.ciphertext_file) {
            crate::files::rename_durably(staged, file).map_err(|e| {
                self.fail(
                    format!("cannot replace {}: {e}", file.display()),
                    "the old key still opens the volume; run rotate again",
                )
            })?;
        }
        step_done("rotate-file-switched");
        Ok(())
    }

    /// Step 4 (LUKS2 only): the token names the new keyslot and ciphertext; a header without
    /// a token gets one.
    fn update_token(&self, new_slot: u32, new_ciphertext: &str) -> Result<()> {
        if self.header.version != 2 {
            return Ok(());
        }
        let (id, binding) = match self.header.binding() {
            Some((id, b)) => (Some(id), b),
            None => (
                None,
                Binding::new(self.config, &self.v.transit, new_slot, String::new()),
            ),
        };
        let binding = Binding {
            keyslot: new_slot,
            ciphertext: new_ciphertext.to_string(),
            ..binding
        };
        write_binding(self.cs, &self.v.device, id, &binding).map_err(|m| {
            self.fail(
                format!("cannot update the LUKS2 token: {m}"),
                "the new key is in place; run rotate again to tidy up",
            )
        })?;
        step_done("rotate-token-updated");
        Ok(())
    }

    /// Step 5: the old keyslot goes, authorised by the new key.
    fn remove_old_keyslot(&self, old_slot: u32, new_key: &Secret) -> Result<()> {
        let kill_slot = old_slot.to_string();
        self.cs
            .exec(
                &[
                    "luksKillSlot".as_ref(),
                    "--key-file=-".as_ref(),
                    self.v.device.as_os_str(),
                    kill_slot.as_ref(),
                ],
                Input::Key(new_key),
                None,
                LUKS_TIMEOUT,
            )
            .map_err(|e| luks_error(&self.v.device, "luksKillSlot", e))?;
        step_done("rotate-old-keyslot-removed");
        Ok(())
    }

    /// Says what was rotated, and that the initramfs's copy of the file is now stale.
    fn report(&self, old_slot: u32, new_slot: u32) {
        let name = self.name;
        crate::log::info(format_args!(
            "{name}: rotated: keyslot {old_slot} -> {new_slot}; ciphertext in {}",
            self.v
                .ciphertext_file
                .as_ref()
                .map_or("the LUKS2 token".to_string(), |f| f.display().to_string())
        ));
        // The initramfs carries a copy of the file, whose key no keyslot takes any more: without
        // a rebuild the next boot falls back to the passphrase prompt. (A token travels with the
        // header, so token-only volumes need nothing.)
        if let Some(file) = &self.v.ciphertext_file {
            crate::log::warn(format_args!(
                "{name}: the initramfs holds the old {}: rebuild it now (update-initramfs -u -k all, or dracut --force --regenerate-all), or the next boot asks for a passphrase",
                file.display()
            ));
        }
    }
}

/// The keyslot `key` opens: the token's first (cheap to check), then each other one.
fn find_slot(cs: &Cryptsetup, v: &Volume, header: &Header, key: &Secret) -> Result<Option<u32>> {
    let mut slots = header.keyslots.clone();
    if let Some((_, b)) = header.binding() {
        // The token's keyslot first, the others in their order.
        crate::sort::sort_by(&mut slots, |x, y| *x == b.keyslot && *y != b.keyslot);
    }
    for s in slots {
        if key_opens(cs, &v.device, Some(s), key)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}
