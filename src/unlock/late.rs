//! `unlock --late`: the real root's second chance (vault-luks-late.service, before
//! local-fs-pre.target). When a configured volume is still locked as the real root starts, the
//! initramfs either never ran vault-luks (an image built without it, a boot without an
//! initramfs), or ran it and it stopped before it could ask anyone (a crash, a configuration
//! error), or ran it to its end: Vault and the passphrase prompt both failed. The initramfs
//! scripts leave vault-luks's exit status in /run/vault-luks/initramfs-exit (/run survives the
//! switch to the real root). The first two get the same unlock again, here: deadline, own
//! network raised and removed, prompt. The last is said and left alone: asking again would
//! double the boot's wait for a Vault that was just tried.

use super::volumes::{is_open, locate_cryptsetup, select};
use crate::config::Config;
use crate::error::{Error, Result, Step};

/// Written by the initramfs-tools local-top script and dracut's vault-luks-initrd.
pub const INITRAMFS_EXIT: &str = "/run/vault-luks/initramfs-exit";
/// Tests point it elsewhere.
const INITRAMFS_EXIT_ENV: &str = "VAULT_LUKS_INITRAMFS_EXIT";
/// vault-luks's exit code when it tried everything and a volume stayed locked.
const TRIED_EVERYTHING: i32 = crate::error::EXIT_FAILED;

/// The volumes the real root unlocks now, after saying why; `None` when there is nothing to
/// do. An error when the initramfs tried everything already.
pub fn still_locked(config: &Config, names: &[String]) -> Result<Option<Vec<String>>> {
    let cs = locate_cryptsetup()?;
    let locked: Vec<String> = select(config, names)?
        .iter()
        .filter(|v| !is_open(&cs, &v.name))
        .map(|v| v.name.clone())
        .collect();
    if locked.is_empty() {
        crate::log::info(format_args!(
            "all volumes are open (the initramfs opened them): nothing to do"
        ));
        return Ok(None);
    }
    let list = locked.join(", ");
    match initramfs_exit() {
        None => crate::log::warn(format_args!(
            "{list}: not open, and vault-luks did not run in the initramfs (an image without it: `vault-luks check --image` names what is missing; or a boot without an initramfs): unlocking now, in the real root"
        )),
        Some(TRIED_EVERYTHING) => {
            return Err(Error::failed(
                Step::Unlock,
                format!("{list} stayed locked in the initramfs: Vault and the passphrase prompt both failed there (its lines are earlier in this boot's log); not tried again, which would double the wait"),
                "once Vault answers, run `vault-luks unlock` (it asks for a passphrase on a terminal), then mount",
            ));
        }
        Some(code) => crate::log::warn(format_args!(
            "{list}: not open: vault-luks ended with status {code} in the initramfs before it could ask anyone (its lines are earlier in this boot's log): unlocking now, in the real root"
        )),
    }
    Ok(Some(locked))
}

/// vault-luks's exit status in the initramfs, when it ran there.
fn initramfs_exit() -> Option<i32> {
    let path = std::env::var(INITRAMFS_EXIT_ENV).unwrap_or_else(|_| INITRAMFS_EXIT.to_string());
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
