//! The volume lifecycle around unlock: enroll a volume, rewrap its ciphertext after a transit
//! key rotation, rotate its key. Each is ordered so that a crash at any point leaves the volume
//! openable by Vault (and by any passphrase it had).

pub mod enroll;
pub mod rewrap;
pub mod rotate;

use crate::error::{Error, Result, Step};
use crate::luks::{Cryptsetup, OpenError};
use crate::secret::Secret;
use std::path::Path;
use std::time::Duration;

/// Cheap PBKDF2 for the keyslot Vault's key opens: the key is 192 random bits, so key
/// stretching buys nothing, and argon2id would cost seconds and up to a GiB in the initramfs
/// (systemd-cryptenroll does the same for TPM2 and FIDO2 keys). 1000 is cryptsetup's minimum.
pub const FAST_PBKDF: [&str; 4] = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];

const LUKS_TIMEOUT: Duration = Duration::from_secs(300);

/// A new key in the article's format: 24 random bytes, base64: 32 ASCII characters.
pub fn new_key() -> Result<Secret> {
    use base64::Engine;
    let mut raw = zeroize::Zeroizing::new([0u8; 24]);
    getrandom::getrandom(raw.as_mut())
        .map_err(|e| Error::failed(Step::Enroll, format!("no randomness: {e}"), ""))?;
    Ok(Secret::from_string(
        base64::engine::general_purpose::STANDARD.encode(raw.as_ref()),
    ))
}

/// Test hook for the crash-safety tests: `VAULT_LUKS_CRASH_AFTER=STEP` ends the process
/// abruptly (no cleanup, as a power cut would) right after STEP. Harmless when unset.
pub fn step_done(step: &str) {
    crate::log::debug(format_args!("step done: {step}"));
    if std::env::var("VAULT_LUKS_CRASH_AFTER").is_ok_and(|s| s == step) {
        crate::log::warn(format_args!("VAULT_LUKS_CRASH_AFTER={step}: stopping here"));
        std::process::abort();
    }
}

/// Does `key` open `device` (optionally: through `keyslot`)? Writes nothing.
pub fn key_opens(
    cs: &Cryptsetup,
    device: &Path,
    keyslot: Option<u32>,
    key: &Secret,
) -> Result<bool> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "open".into(),
        "--test-passphrase".into(),
        "--key-file=-".into(),
    ];
    if let Some(s) = keyslot {
        args.push(format!("--key-slot={s}").into());
    }
    args.push(device.as_os_str().into());
    match cs.exec(
        &args,
        crate::luks::cryptsetup::Input::Key(key),
        None,
        LUKS_TIMEOUT,
    ) {
        Ok(_) => Ok(true),
        Err(OpenError::KeyRejected) => Ok(false),
        Err(e) => Err(luks_error(device, "open --test-passphrase", e)),
    }
}

pub fn luks_error(device: &Path, what: &str, e: OpenError) -> Error {
    let detail = match e {
        OpenError::KeyRejected => "no keyslot accepts the key".to_string(),
        OpenError::TimedOut(t) => format!("did not finish within {}s", t.as_secs()),
        OpenError::Failed(words) => words,
        OpenError::Crashed(words) => format!("crashed: {words}"),
    };
    Error::failed(
        Step::Cryptsetup,
        format!("cryptsetup {what} {}: {detail}", device.display()),
        "",
    )
}
