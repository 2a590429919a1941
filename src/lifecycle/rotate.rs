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
use crate::config::Config;
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::Input;
use crate::luks::header::{write_binding, Binding, Header};
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use crate::secret::Secret;
use crate::unlock::{read_ciphertext, select};
use crate::vault::{auth, transit};
use std::path::PathBuf;

pub fn rotate(config: &Config, name: &str, cs: &Cryptsetup) -> Result<()> {
    let v = select(config, &[name.to_string()])?[0];
    let fail =
        |detail: String, hint: &str| Error::failed(Step::Rotate, detail, hint).for_volume(name);
    let header = Header::read(cs, &v.device)
        .map_err(|m| fail(m, "is the device there and a LUKS volume?"))?;
    let old_ciphertext = read_ciphertext(Some(cs), v)?;
    let deadline = Deadline::after(config.timeouts.unlock);
    let (vault, token) = crate::unlock::connect(config, &deadline)?;
    let result = (|| {
        let old_key = decrypt_one(&vault, &token.secret, v, &old_ciphertext, &deadline)?;
        let old_slot = find_slot(cs, v, &header, &old_key)?.ok_or_else(|| {
            fail(
                format!("the current key does not open {}", v.device.display()),
                "unlock with the backup passphrase and enroll again",
            )
        })?;
        let new_slot = header.free_keyslot().ok_or_else(|| {
            fail(
                format!("{} has no free keyslot", v.device.display()),
                "remove an unused one with cryptsetup luksKillSlot",
            )
        })?;

        let new_key = new_key()?;
        let new_ciphertext =
            transit::encrypt(&vault, &token.secret, &v.transit, &new_key, &deadline)?;
        if decrypt_one(&vault, &token.secret, v, &new_ciphertext, &deadline)?.expose()
            != new_key.expose()
        {
            return Err(fail(
                "the new ciphertext does not decrypt back to the new key".into(),
                "check the transit key and context",
            ));
        }
        // A volume whose ciphertext lives only in its token has no file to stage or switch.
        let staged = v
            .ciphertext_file
            .as_ref()
            .map(|f| PathBuf::from(format!("{}.new", f.display())));
        if let Some(staged) = &staged {
            crate::files::write_atomically(staged, format!("{new_ciphertext}\n").as_bytes(), 0o600)
                .map_err(|e| fail(format!("cannot write {}: {e}", staged.display()), ""))?;
        }
        step_done("rotate-staged");

        let slot_arg = format!("--key-slot={new_slot}");
        let mut args: Vec<&std::ffi::OsStr> = vec!["luksAddKey".as_ref(), slot_arg.as_ref()];
        args.extend(FAST_PBKDF.iter().map(std::ffi::OsStr::new));
        args.extend([
            "--key-file=-".as_ref(),
            v.device.as_os_str(),
            "/dev/fd/3".as_ref(),
        ]);
        cs.exec(&args, Input::Key(&old_key), Some(&new_key), LUKS_TIMEOUT)
            .map_err(|e| luks_error(&v.device, "luksAddKey", e))?;
        step_done("rotate-keyslot-added");

        if let (Some(staged), Some(file)) = (&staged, &v.ciphertext_file) {
            crate::files::rename_durably(staged, file).map_err(|e| {
                fail(
                    format!("cannot replace {}: {e}", file.display()),
                    "the old key still opens the volume; run rotate again",
                )
            })?;
        }
        step_done("rotate-file-switched");

        if header.version == 2 {
            let (id, binding) = match header.binding() {
                Some((id, b)) => (Some(id), b),
                None => (
                    None,
                    Binding::new(config, &v.transit, new_slot, String::new()),
                ),
            };
            let binding = Binding {
                keyslot: new_slot,
                ciphertext: new_ciphertext.clone(),
                ..binding
            };
            write_binding(cs, &v.device, id, &binding).map_err(|m| {
                fail(
                    format!("cannot update the LUKS2 token: {m}"),
                    "the new key is in place; run rotate again to tidy up",
                )
            })?;
            step_done("rotate-token-updated");
        }

        let kill_slot = old_slot.to_string();
        cs.exec(
            &[
                "luksKillSlot".as_ref(),
                "--key-file=-".as_ref(),
                v.device.as_os_str(),
                kill_slot.as_ref(),
            ],
            Input::Key(&new_key),
            None,
            LUKS_TIMEOUT,
        )
        .map_err(|e| luks_error(&v.device, "luksKillSlot", e))?;
        step_done("rotate-old-keyslot-removed");
        crate::log::info(format_args!(
            "{name}: rotated: keyslot {old_slot} -> {new_slot}; ciphertext in {}",
            v.ciphertext_file
                .as_ref()
                .map_or("the LUKS2 token".to_string(), |f| f.display().to_string())
        ));
        // The initramfs carries a copy of the file, whose key no keyslot takes any more: without
        // a rebuild the next boot falls back to the passphrase prompt. (A token travels with the
        // header, so token-only volumes need nothing.)
        if let Some(file) = &v.ciphertext_file {
            crate::log::warn(format_args!(
                "{name}: the initramfs holds the old {}: rebuild it now (update-initramfs -u -k all, or dracut --force --regenerate-all), or the next boot asks for a passphrase",
                file.display()
            ));
        }
        Ok(())
    })();
    auth::finish(&vault, token, &deadline);
    result
}

fn decrypt_one(
    vault: &crate::vault::Vault,
    token: &Secret,
    v: &crate::config::Volume,
    ciphertext: &str,
    deadline: &Deadline,
) -> Result<Secret> {
    let items = [transit::Ciphertext {
        text: ciphertext,
        context: v.transit.context.as_deref(),
    }];
    match transit::decrypt(vault, token, &v.transit, &items, deadline)?.pop() {
        Some(Ok(k)) => Ok(k),
        Some(Err(msg)) => Err(transit::item_error(&msg, &v.transit)),
        None => Err(Error::failed(Step::Decrypt, "no plaintext", "")),
    }
}

/// The keyslot `key` opens: the token's first (cheap to check), then each other one.
fn find_slot(
    cs: &Cryptsetup,
    v: &crate::config::Volume,
    header: &Header,
    key: &Secret,
) -> Result<Option<u32>> {
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
