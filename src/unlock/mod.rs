//! The unlock, as data flows through it, one way down this folder:
//! `volumes` (local checks: already open? device there? ciphertext readable?), then either
//! `keys` (identity, login, one transit batch per key, revoke) and `open` (cryptsetup), or,
//! when a person may be asked, `race` (Vault in a thread, a prompt here, the first key opens).
//! `late` is the real root's second chance. Network steps share one deadline; each volume
//! fails or succeeds on its own. No module here imports this one.

mod keys;
pub mod late;
mod open;
mod race;
mod volumes;

pub use keys::{connect, key_for};
pub use race::Fallback;
pub use volumes::{key_version, locate_cryptsetup, read_ciphertext, select, STATUS_TIMEOUT};

use crate::config::Config;
use crate::error::{Error, Result, Step};
use crate::luks::Cryptsetup;
use crate::retry::Deadline;
use open::{open_all, Job, KeyFrom};
use volumes::{prepare, Failures, Pending};

/// Unlocks the named volumes (all when none are named). With a `fallback`, a person may type a
/// passphrase while Vault is retried (see `race`); without, Vault alone.
pub fn unlock(config: &Config, names: &[String], fallback: Option<&Fallback>) -> Result<()> {
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
    let mut failures = Failures::new();
    let mut pending = Vec::new();
    for v in volumes {
        match prepare(&cs, config, v, &deadline) {
            Ok(Some(p)) => pending.push(p),
            Ok(None) => {}
            Err(e) => failures.push((v.name.clone(), e)),
        }
    }
    if !pending.is_empty() {
        failures.extend(match fallback {
            Some(fallback) => race::unlock(config, &cs, pending, fallback),
            None => with_vault_alone(config, &cs, &pending, &deadline),
        });
    }
    report(failures, total)
}

/// Keys from Vault, each volume opened with its own; no one is asked.
fn with_vault_alone(
    config: &Config,
    cs: &Cryptsetup,
    pending: &[Pending],
    deadline: &Deadline,
) -> Failures {
    let fetched = keys::fetch(config, pending, deadline);
    let mut failures = fetched.failures;
    let jobs: Vec<Job> = fetched
        .keys
        .iter()
        .map(|(p, key)| Job {
            volume: &p.volume,
            key,
            from: KeyFrom::Vault { keyslot: p.keyslot },
        })
        .collect();
    for (job, result) in jobs.iter().zip(open_all(cs, config, &jobs)) {
        if let Err(e) = result {
            failures.push((job.volume.name.clone(), e));
        }
    }
    failures
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
        volume: volume.clone(),
        ciphertext: read_ciphertext(Cryptsetup::locate().as_ref(), volume)?,
        // cryptroot opens the volume with what is printed, as it decides.
        keyslot: None,
    }];
    let mut fetched = keys::fetch(config, &pending, &deadline);
    if let Some((_, e)) = fetched.failures.pop() {
        return Err(e.for_volume(name));
    }
    let (_, key) = fetched
        .keys
        .pop()
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

/// One volume's failure is returned as it is; with several volumes each failure is logged on
/// its own line and the summary says how many stayed locked.
fn report(mut failures: Failures, total: usize) -> Result<()> {
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
