//! Vault and a person, racing. The automatic path (metadata, login, decrypt) runs in a thread
//! and only fetches keys; this thread owns every `cryptsetup open`, so a key from Vault and a
//! typed passphrase can never race for a volume: whichever arrives first opens it, and the
//! other finds it open. The prompt comes up at the first sign of trouble (a failed attempt, a
//! volume Vault could not unlock) while the retries go on until the unlock deadline; it stays
//! up until the prompt deadline after that. A volume opened by someone else meanwhile (an
//! operator over SSH running `vault-luks unlock` or cryptsetup) ends its prompt too.

use crate::config::{Config, Volume};
use crate::error::Error;
use crate::luks::{Cryptsetup, OpenError};
use crate::prompt::{read_answer, Method, Prompt};
use crate::retry::{trouble_seen, Deadline};
use crate::secret::Secret;
use crate::unlock::STATUS_TIMEOUT;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct Fallback {
    pub method: Method,
    /// `rd.vault-luks=prompt`: go straight to the prompt, do not ask Vault.
    pub prompt_only: bool,
}

enum Event {
    Key(String, Secret),
    AutoFailed(String, Error),
    AutoDone,
    Typed(String, Secret),
    PromptEnded(String),
}

/// Events from the Vault thread and the prompt readers. A mutex and a condvar: std's mpsc
/// channel would cost binary size for nothing we need here.
#[derive(Default)]
struct Queue {
    events: Mutex<VecDeque<Event>>,
    ready: Condvar,
}

type Sender = Arc<Queue>;

impl Queue {
    fn send(&self, e: Event) {
        if let Ok(mut q) = self.events.lock() {
            q.push_back(e);
            self.ready.notify_one();
        }
    }

    fn is_empty(&self) -> bool {
        self.events.lock().map(|q| q.is_empty()).unwrap_or(true)
    }

    fn recv_timeout(&self, wait: Duration) -> Option<Event> {
        let q = self.events.lock().ok()?;
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, wait, |q| q.is_empty())
            .ok()?;
        q.pop_front()
    }
}

/// How often volumes still locked are checked for having been opened by someone else.
const OPENED_ELSEWHERE_CHECK: Duration = Duration::from_secs(2);

/// Unlocks `pending` (volume, ciphertext), Vault and prompt racing; failures of the volumes
/// that stay locked go to `failures`.
pub fn unlock(
    config: &Config,
    cs: &Cryptsetup,
    pending: Vec<(Volume, String)>,
    fallback: &Fallback,
    failures: &mut Vec<(String, Error)>,
) {
    let start = Instant::now();
    let prompt_until = start + config.timeouts.unlock + config.timeouts.prompt;
    let queue: Sender = Arc::default();
    let mut locked: Vec<(Volume, Option<Error>)> =
        pending.iter().map(|(v, _)| (v.clone(), None)).collect();
    let mut auto_running = !fallback.prompt_only;
    if fallback.prompt_only {
        crate::log::info(format_args!(
            "rd.vault-luks=prompt: not asking Vault on this boot"
        ));
    } else {
        spawn_automatic(config.clone(), pending, queue.clone());
    }

    let mut prompt: Option<Prompt> = None;
    let mut empty_answers = 0u32;
    let mut next_prompt = start;
    let mut next_check = start + OPENED_ELSEWHERE_CHECK;
    while !locked.is_empty() {
        let now = Instant::now();
        if now >= prompt_until && !auto_running {
            break;
        }
        let want_prompt = fallback.prompt_only
            || trouble_seen()
            || !auto_running
            || locked.iter().any(|(_, e)| e.is_some());
        // Events first: a prompt says whether Vault is still being asked for its volume.
        if prompt.is_none()
            && want_prompt
            && now >= next_prompt
            && empty_answers < 3
            && queue.is_empty()
        {
            let (v, failed) = &locked[0];
            let message = if auto_running && failed.is_none() {
                format!(
                    "Passphrase for {} (Vault not answering, still retrying):",
                    v.name
                )
            } else {
                format!("Passphrase for {}:", v.name)
            };
            match start_prompt(&fallback.method, &v.name, &message, &queue) {
                Ok(p) => {
                    let left = prompt_until.saturating_duration_since(now);
                    crate::log::warn(format_args!(
                        "{}: asking for a passphrase through {} (for {:.0}s); any keyslot's passphrase opens it",
                        v.name,
                        fallback.method.describe(),
                        left.as_secs_f64()
                    ));
                    prompt = Some(p);
                }
                Err(e) => {
                    crate::log::error(format_args!(
                        "{}: cannot ask for a passphrase through {}: {e}",
                        v.name,
                        fallback.method.describe()
                    ));
                    empty_answers = 3;
                }
            }
        }
        if prompt.is_none() && !auto_running && (empty_answers >= 3 || now >= prompt_until) {
            break;
        }
        if now >= next_check {
            next_check = now + OPENED_ELSEWHERE_CHECK;
            locked.retain(|(v, _)| {
                let open = cs.is_active(&v.name, STATUS_TIMEOUT).unwrap_or(false);
                if open {
                    crate::log::info(format_args!(
                        "{}: opened by another process meanwhile",
                        v.name
                    ));
                }
                !open
            });
            withdraw_if_done(&mut prompt, &locked);
            continue;
        }
        let wait = next_check
            .min(prompt_until.max(now))
            .saturating_duration_since(now)
            .max(Duration::from_millis(50));
        let Some(event) = queue.recv_timeout(wait) else {
            continue;
        };
        match event {
            Event::Key(name, key) => {
                if let Some(i) = position(&locked, &name) {
                    match open(cs, config, &locked[i].0, &key, "Vault's key") {
                        Ok(()) => {
                            locked.remove(i);
                        }
                        Err(e) => {
                            crate::log::error(format_args!("{}", e.clone().for_volume(&name)));
                            locked[i].1 = Some(e);
                        }
                    }
                    withdraw_if_done(&mut prompt, &locked);
                }
            }
            Event::AutoFailed(name, e) => {
                if let Some(i) = position(&locked, &name) {
                    crate::log::error(format_args!("{}", e.clone().for_volume(&name)));
                    locked[i].1 = Some(e);
                }
            }
            Event::AutoDone => auto_running = false,
            Event::Typed(name, passphrase) => {
                finish_prompt(&mut prompt, &name);
                empty_answers = 0;
                if let Some(i) = position(&locked, &name) {
                    match open(cs, config, &locked[i].0, &passphrase, "a typed passphrase") {
                        Ok(()) => {
                            locked.remove(i);
                        }
                        Err(e) => crate::log::error(format_args!("{}", e.for_volume(&name))),
                    }
                }
            }
            Event::PromptEnded(name) => {
                // A withdrawn prompt ends too: only the current one's end counts.
                if finish_prompt(&mut prompt, &name) && position(&locked, &name).is_some() {
                    empty_answers += 1;
                    crate::log::info(format_args!(
                        "{name}: the prompt ended without a passphrase"
                    ));
                    next_prompt = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }
    if let Some(p) = prompt.take() {
        p.withdraw();
    }
    // The Vault thread may still be at work (every volume was opened by a passphrase): what
    // it configured of the network goes now, and it can configure nothing more.
    crate::net::teardown();
    for (v, e) in locked {
        let e = e.unwrap_or_else(|| {
            Error::failed(
                crate::error::Step::Unlock,
                format!(
                    "no key from Vault and no passphrase within {:.0}s",
                    start.elapsed().as_secs_f64()
                ),
                "unlock later with `vault-luks unlock` (it asks for a passphrase on a terminal), or cryptsetup open",
            )
        });
        failures.push((v.name.clone(), e));
    }
}

fn position(locked: &[(Volume, Option<Error>)], name: &str) -> Option<usize> {
    locked.iter().position(|(v, _)| v.name == name)
}

/// The prompt for `name` has answered or ended: reap it. False when it was not the current
/// prompt (one withdrawn earlier, whose reader reports late).
fn finish_prompt(prompt: &mut Option<Prompt>, name: &str) -> bool {
    match prompt.take() {
        Some(p) if p.volume == name => {
            p.finish();
            true
        }
        other => {
            *prompt = other;
            false
        }
    }
}

/// The prompt's volume is open (by Vault, or by someone else): take the question away.
fn withdraw_if_done(prompt: &mut Option<Prompt>, locked: &[(Volume, Option<Error>)]) {
    if let Some(p) = prompt.take() {
        if position(locked, &p.volume).is_some() {
            *prompt = Some(p);
        } else {
            crate::log::info(format_args!(
                "{}: passphrase prompt withdrawn: the volume is open",
                p.volume
            ));
            p.withdraw();
        }
    }
}

fn start_prompt(
    method: &Method,
    volume: &str,
    message: &str,
    tx: &Sender,
) -> std::io::Result<Prompt> {
    let mut p = Prompt::start(method, volume, message)?;
    let out = p.take_output().expect("a new prompt's stdout is piped");
    let (tx, name) = (tx.clone(), volume.to_string());
    std::thread::spawn(move || {
        tx.send(match read_answer(out) {
            Some(passphrase) => Event::Typed(name, passphrase),
            None => Event::PromptEnded(name),
        });
    });
    Ok(p)
}

/// The automatic path in its own thread: it fetches keys and never opens anything. When every
/// volume is open before it finishes, the process ends without waiting for it (its token
/// expires on its own: the login's TTL; the network it raised is taken down by `unlock`).
fn spawn_automatic(config: Config, pending: Vec<(Volume, String)>, tx: Sender) {
    std::thread::spawn(move || {
        let deadline = Deadline::after(config.timeouts.unlock);
        let (keys, failures) = crate::unlock::fetch_owned(&config, &pending, &deadline);
        for (name, key) in keys {
            tx.send(Event::Key(name, key));
        }
        for (name, e) in failures {
            tx.send(Event::AutoFailed(name, e));
        }
        tx.send(Event::AutoDone);
    });
}

fn open(
    cs: &Cryptsetup,
    config: &Config,
    v: &Volume,
    key: &Secret,
    what: &str,
) -> Result<(), Error> {
    match cs.open(&v.device, &v.name, key, config.timeouts.cryptsetup) {
        Ok(()) => {
            crate::log::info(format_args!(
                "{}: unlocked as /dev/mapper/{} with {what}",
                v.name, v.name
            ));
            Ok(())
        }
        // Opened by someone else between our check and this open: done all the same.
        Err(_) if cs.is_active(&v.name, STATUS_TIMEOUT).unwrap_or(false) => {
            crate::log::info(format_args!(
                "{}: opened by another process meanwhile",
                v.name
            ));
            Ok(())
        }
        Err(OpenError::KeyRejected) => Err(Error::failed(
            crate::error::Step::Cryptsetup,
            format!(
                "{what} does not open {} (no keyslot accepts it)",
                v.device.display()
            ),
            if what == "Vault's key" {
                "the ciphertext belongs to another volume or its keyslot was removed; type the backup passphrase"
            } else {
                "type it again (any keyslot's passphrase works)"
            },
        )),
        Err(e) => Err(crate::unlock::open_error(v, e)),
    }
}
