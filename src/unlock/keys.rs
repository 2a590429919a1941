//! Vault's half of an unlock: identity (when the auth method needs it), one login, one transit
//! decrypt per key for all the volumes that share it, the token revoked, and each plaintext put
//! in the volume's key format. The network vault-luks raises for this is up only meanwhile.

use super::volumes::{read_ciphertext, Failures, Pending};
use crate::config::{Config, KeyFormat, Transit, Volume};
use crate::error::{Error, Result, Step};
use crate::luks::Cryptsetup;
use crate::metadata::{ExoscaleMetadata, IdentitySource};
use crate::retry::Deadline;
use crate::secret::{decode_base64, Secret};
use crate::vault::{auth, transit, Vault};
use auth::Session;
use std::collections::BTreeMap;

/// Identity (when the auth method needs it) and login: a Vault client and a token.
pub fn connect<'c>(config: &'c Config, deadline: &Deadline) -> Result<Session<'c>> {
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
    Session::start(vault, &config.auth, identity, deadline)
}

/// What Vault gave: the keys (in each volume's format), and why each other volume got none.
#[derive(Default)]
pub struct Fetched<'p> {
    pub keys: Vec<(&'p Pending, Secret)>,
    pub failures: Failures,
}

/// The key of each pending volume, or that volume's failure. A failure before the decrypt
/// (network, metadata, login) is every volume's.
pub fn fetch<'p>(config: &Config, pending: &'p [Pending], deadline: &Deadline) -> Fetched<'p> {
    let mut fetched = Fetched::default();
    if let Err(e) = fetch_into(config, pending, deadline, &mut fetched) {
        let all = pending.iter().map(|p| (p.volume.name.clone(), e.clone()));
        fetched.failures.extend(all);
    }
    fetched
}

/// Network, identity, login, a batch per transit key, revoke, teardown; an error only before
/// the first batch.
fn fetch_into<'p>(
    config: &Config,
    pending: &'p [Pending],
    deadline: &Deadline,
    fetched: &mut Fetched<'p>,
) -> Result<()> {
    // Up only while Vault is asked: dropped (torn down) on every way out of here.
    let network = crate::net::bring_up(config, deadline.instant())?;
    let session = connect(config, deadline)?;
    for (transit_key, members) in by_transit_key(pending) {
        decrypt_batch(&session, &transit_key, members, deadline, fetched);
    }
    session.finish(deadline);
    drop(network);
    Ok(())
}

/// Volumes sharing a transit key go in one request.
fn by_transit_key(pending: &[Pending]) -> Vec<(Transit, Vec<&Pending>)> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Pending>> = BTreeMap::new();
    for p in pending {
        let t = &p.volume.transit;
        groups.entry((&t.mount, &t.key)).or_default().push(p);
    }
    groups
        .into_iter()
        .map(|((mount, key), members)| {
            let transit_key = Transit {
                mount: mount.to_string(),
                key: key.to_string(),
                context: None,
            };
            (transit_key, members)
        })
        .collect()
}

/// One transit decrypt for `members`: each key, or each refusal, into `fetched`.
fn decrypt_batch<'p>(
    session: &Session,
    transit_key: &Transit,
    members: Vec<&'p Pending>,
    deadline: &Deadline,
    fetched: &mut Fetched<'p>,
) {
    let items: Vec<transit::Ciphertext> = members
        .iter()
        .map(|p| transit::Ciphertext {
            text: &p.ciphertext,
            context: p.volume.transit.context.as_deref(),
        })
        .collect();
    let results = match transit::decrypt(session, transit_key, &items, deadline) {
        Ok(results) => results,
        Err(e) => {
            let all = members.iter().map(|p| (p.volume.name.clone(), e.clone()));
            fetched.failures.extend(all);
            return;
        }
    };
    for (p, r) in members.into_iter().zip(results) {
        match r
            .map_err(|msg| transit::item_error(&msg, transit_key))
            .and_then(|pt| key_bytes(&p.volume, pt))
        {
            Ok(key) => fetched.keys.push((p, key)),
            Err(e) => fetched.failures.push((p.volume.name.clone(), e)),
        }
    }
}

/// One volume's key, for checks: its ciphertext decrypted and put in its key format.
pub fn key_for(
    cs: &Cryptsetup,
    session: &Session,
    v: &Volume,
    deadline: &Deadline,
) -> Result<Secret> {
    let ciphertext = read_ciphertext(Some(cs), v)?;
    key_bytes(
        v,
        transit::decrypt_one(session, &v.transit, &ciphertext, deadline)?,
    )
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
