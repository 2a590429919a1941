//! `vault-luks rewrap [NAME...]`: after `transit/keys/KEY/rotate`, re-encrypt each ciphertext
//! under the key's latest version (`transit/rewrap`: Vault never shows us the plaintext), in the
//! ciphertext file and the LUKS2 token. File first, then token: both stay decryptable in between.

use super::step_done;
use crate::config::{Config, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::header::{write_binding, Header};
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use crate::unlock::{key_version, read_ciphertext, select};
use crate::vault::{auth::Session, transit};

pub fn rewrap(config: &Config, names: &[String], cs: &Cryptsetup) -> Result<()> {
    let volumes = select(config, names)?;
    let deadline = Deadline::after(config.timeouts.unlock);
    let session = crate::unlock::connect(config, &deadline)?;
    let mut failed = Vec::new();
    for v in volumes {
        if let Err(e) = rewrap_one(v, cs, &session, &deadline) {
            crate::log::error(format_args!("{}", e.clone().for_volume(&v.name)));
            failed.push(v.name.clone());
        }
    }
    session.finish(&deadline);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::failed(
            Step::Rewrap,
            format!("could not rewrap {}", failed.join(", ")),
            "see the lines above; the old ciphertexts are untouched",
        ))
    }
}

fn rewrap_one(v: &Volume, cs: &Cryptsetup, session: &Session, deadline: &Deadline) -> Result<()> {
    let old = read_ciphertext(Some(cs), v)?;
    let new = transit::rewrap(session, &v.transit, &old, deadline)?;
    let (before, after) = (
        key_version(&old).unwrap_or(0),
        key_version(&new).unwrap_or(0),
    );
    if new == old || before == after {
        crate::log::info(format_args!("{}: already at key version v{after}", v.name));
        return Ok(());
    }
    if let Some(file) = &v.ciphertext_file {
        crate::files::write_atomically(file, format!("{new}\n").as_bytes(), 0o600).map_err(
            |e| {
                Error::failed(
                    Step::Rewrap,
                    format!("cannot write {}: {e}", file.display()),
                    "",
                )
            },
        )?;
        step_done("rewrap-file");
    }
    if let Ok(header) = Header::read(cs, &v.device) {
        if let Some((id, mut binding)) = header.binding() {
            binding.ciphertext = new.clone();
            write_binding(cs, &v.device, Some(id), &binding).map_err(|m| {
                Error::failed(
                    Step::Rewrap,
                    format!("cannot update the LUKS2 token: {m}"),
                    "the file is rewrapped; run rewrap again",
                )
            })?;
        }
    }
    crate::log::info(format_args!(
        "{}: rewrapped key version v{before} -> v{after}",
        v.name
    ));
    Ok(())
}
