//! `cryptsetup open` with a key from Vault or a passphrase a person typed, and what a failure
//! means in words an operator can act on. A volume someone else opened meanwhile (an operator
//! over SSH, the other side of the race) counts as opened. Vault's keys for several volumes
//! arrive together and are opened a few at a time, as systemd opens crypttab's volumes in
//! parallel units: much of an open is waiting (process start-up, device-mapper, udev), which
//! overlaps.

use super::volumes::is_open;
use crate::config::{Config, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::{Cryptsetup, OpenError};
use crate::secret::Secret;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many `cryptsetup open` run at once. Each is bounded by timeouts.cryptsetup as alone;
/// memory-hard keyslots are derived one at a time across them (see `Cryptsetup::open`).
const OPENS_AT_ONCE: usize = 4;

/// Where the key handed to cryptsetup came from: it decides the keyslots tried and the words
/// of a refusal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyFrom {
    /// With the keyslot it is expected in (the configuration's or the token's), tried alone.
    Vault { keyslot: Option<u32> },
    /// Any keyslot's passphrase: every keyslot is tried.
    Person,
}

impl KeyFrom {
    fn describe(self) -> &'static str {
        match self {
            KeyFrom::Vault { .. } => "Vault's key",
            KeyFrom::Person => "a typed passphrase",
        }
    }

    fn keyslot(self) -> Option<u32> {
        match self {
            KeyFrom::Vault { keyslot } => keyslot,
            KeyFrom::Person => None,
        }
    }
}

/// One volume to open and its key.
pub struct Job<'a> {
    pub volume: &'a Volume,
    pub key: &'a Secret,
    pub from: KeyFrom,
}

/// Opens every job's volume, up to OPENS_AT_ONCE at a time; each result at its job's place, so
/// failures are reported in the same order whatever finished first.
pub fn open_all(cs: &Cryptsetup, config: &Config, jobs: &[Job]) -> Vec<Result<()>> {
    if let [j] = jobs {
        return vec![open(cs, config, j.volume, j.key, j.from)];
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<()>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(j) = jobs.get(i) else { break };
        let r = attempt(cs, config, j.volume, j.key, j.from, true);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    std::thread::scope(|scope| {
        // This thread is one of the openers: a helper that cannot be started (no threads
        // left) only makes the opens slower, never lost.
        for _ in 1..OPENS_AT_ONCE.min(jobs.len()) {
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    results
        .into_iter()
        .map(|r| r.into_inner().ok().flatten().expect("every job was opened"))
        .collect()
}

/// Opens `v` as /dev/mapper/NAME with `key`, alone.
pub fn open(
    cs: &Cryptsetup,
    config: &Config,
    v: &Volume,
    key: &Secret,
    from: KeyFrom,
) -> Result<()> {
    attempt(cs, config, v, key, from, false)
}

/// `alongside`: other opens run at the same time.
fn attempt(
    cs: &Cryptsetup,
    config: &Config,
    v: &Volume,
    key: &Secret,
    from: KeyFrom,
    alongside: bool,
) -> Result<()> {
    let keyslot = from.keyslot();
    crate::log::info(format_args!(
        "{}: cryptsetup open {} {}{}",
        v.name,
        v.device.display(),
        v.name,
        keyslot.map_or(String::new(), |n| format!(" (keyslot {n})"))
    ));
    let timeout = config.timeouts.cryptsetup;
    let mut result = cs.open(&v.device, &v.name, key, keyslot, alongside, timeout);
    if let (Err(OpenError::KeyRejected | OpenError::Failed(_)), Some(n)) = (&result, keyslot) {
        // A keyslot record gone stale (a keyslot moved or killed by hand: "No usable keyslot",
        // exit 1) must not lock the volume; any other failure comes back the same.
        crate::log::warn(format_args!(
            "{}: keyslot {n} does not take Vault's key: trying every keyslot (correct volumes[].keyslot, or re-enroll to rewrite the token)",
            v.name
        ));
        result = cs.open(&v.device, &v.name, key, None, alongside, timeout);
    }
    match result {
        Ok(()) => {
            crate::log::info(format_args!(
                "{}: unlocked as /dev/mapper/{} with {}",
                v.name,
                v.name,
                from.describe()
            ));
            Ok(())
        }
        // Opened by someone else between our check and this open: done all the same.
        Err(_) if is_open(cs, &v.name) => {
            crate::log::info(format_args!(
                "{}: opened by another process meanwhile",
                v.name
            ));
            Ok(())
        }
        Err(e) => Err(open_error(v, e, from)),
    }
}

/// What a failed `cryptsetup open` means, and what to do.
fn open_error(v: &Volume, e: OpenError, from: KeyFrom) -> Error {
    let device = v.device.display();
    match e {
        OpenError::KeyRejected => Error::failed(
            Step::Cryptsetup,
            format!("{} does not open {device} (no keyslot accepts it)", from.describe()),
            match from {
                KeyFrom::Vault { .. } => "the ciphertext belongs to another volume or its keyslot was removed; unlock with the backup passphrase and re-enroll",
                KeyFrom::Person => "type it again (any keyslot's passphrase works)",
            },
        ),
        OpenError::TimedOut(t) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup open {device} did not finish within {:.0}s", t.as_secs_f64()),
            "raise timeouts.cryptsetup (argon2id keyslots can be slow and memory-hungry)",
        ),
        OpenError::Failed(words) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup open {device}: {words}"),
            "check the device is a LUKS volume and dm_crypt is available",
        ),
        OpenError::Crashed(words) => Error::failed(
            Step::Cryptsetup,
            format!("cryptsetup crashed opening {device}: {words}"),
            "cryptsetup cannot run here: the initramfs lacks a file it loads at run time (libgcc_s.so.1 when glibc names it); rebuild the initramfs with this vault-luks's hook or module, and open the volume by hand meanwhile",
        ),
    }
}
