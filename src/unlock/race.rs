//! Vault and a person, racing. The automatic path (metadata, login, decrypt) runs in a thread
//! and only fetches keys; this thread owns every `cryptsetup open`, so a key from Vault and a
//! typed passphrase can never race for a volume: whichever arrives first opens it, and the
//! other finds it open. The prompt comes up at the first sign of trouble (a failed attempt, a
//! volume Vault could not unlock) while the retries go on until the unlock deadline; it stays
//! up until the prompt deadline after that. A volume opened by someone else meanwhile (an
//! operator over SSH running `vault-luks unlock` or cryptsetup) ends its prompt too.

use super::keys;
use super::open::{open, open_all, Job, KeyFrom};
use super::volumes::{is_open, Failures, Pending};
use crate::config::{Config, Volume};
use crate::error::{Error, Step};
use crate::luks::Cryptsetup;
use crate::prompt::{read_answer, Method, Prompt};
use crate::retry::{trouble_seen, Deadline};
use crate::secret::Secret;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a person may be asked (`--prompt[=HOW]`), and whether Vault is asked at all.
pub struct Fallback {
    pub method: Method,
    /// `rd.vault-luks=prompt`: go straight to the prompt, do not ask Vault.
    pub prompt_only: bool,
}

enum Event {
    /// Vault's keys, all that one fetch brought, opened together: each volume's name, key and
    /// the keyslot it is expected in.
    Keys(Vec<(String, Secret, Option<u32>)>),
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
/// Prompts that end without a passphrase (Enter on an empty line, Ctrl-D, a closed agent)
/// before the person is no longer asked.
const EMPTY_ANSWERS_ALLOWED: u32 = 3;

/// Unlocks `pending`, Vault and a person racing; the volumes that stay locked, each with why.
pub fn unlock(
    config: &Config,
    cs: &Cryptsetup,
    pending: Vec<Pending>,
    fallback: &Fallback,
) -> Failures {
    let start = Instant::now();
    let race = Race {
        config,
        cs,
        fallback,
        queue: Arc::default(),
        start,
        prompt_until: start + config.timeouts.unlock + config.timeouts.prompt,
        locked: pending.iter().map(|p| (p.volume.clone(), None)).collect(),
        auto_running: !fallback.prompt_only,
        prompt: None,
        empty_answers: 0,
        next_prompt: start,
        next_check: start + OPENED_ELSEWHERE_CHECK,
    };
    if fallback.prompt_only {
        crate::log::info(format_args!(
            "rd.vault-luks=prompt: not asking Vault on this boot"
        ));
    } else {
        spawn_automatic(config.clone(), pending, race.queue.clone());
    }
    race.run()
}

/// The state of one race: what is still locked (with Vault's failure for it, if any), the
/// prompt that is up, and when to look again.
struct Race<'a> {
    config: &'a Config,
    cs: &'a Cryptsetup,
    fallback: &'a Fallback,
    queue: Sender,
    start: Instant,
    /// The unlock deadline plus the prompt's time: a person is asked until then.
    prompt_until: Instant,
    locked: Vec<(Volume, Option<Error>)>,
    /// The Vault thread has not finished.
    auto_running: bool,
    prompt: Option<Prompt>,
    empty_answers: u32,
    next_prompt: Instant,
    next_check: Instant,
}

impl Race<'_> {
    fn run(mut self) -> Failures {
        while !self.locked.is_empty() {
            let now = Instant::now();
            if now >= self.prompt_until && !self.auto_running {
                break;
            }
            self.maybe_prompt(now);
            if self.nobody_left_to_ask(now) {
                break;
            }
            if now >= self.next_check {
                self.check_opened_elsewhere(now);
                continue;
            }
            if let Some(event) = self.queue.recv_timeout(self.wait(now)) {
                self.handle(event);
            }
        }
        self.finish()
    }

    /// Puts a prompt up for the first locked volume at the first sign of trouble, unless one
    /// is up, events are waiting (a prompt says whether Vault is still being asked for its
    /// volume), or the person stopped answering.
    fn maybe_prompt(&mut self, now: Instant) {
        let trouble = self.fallback.prompt_only
            || trouble_seen()
            || !self.auto_running
            || self.locked.iter().any(|(_, e)| e.is_some());
        if self.prompt.is_some()
            || !trouble
            || now < self.next_prompt
            || self.empty_answers >= EMPTY_ANSWERS_ALLOWED
            || !self.queue.is_empty()
        {
            return;
        }
        let (v, failed) = &self.locked[0];
        let message = if self.auto_running && failed.is_none() {
            format!(
                "Passphrase for {} (Vault not answering, still retrying):",
                v.name
            )
        } else {
            format!("Passphrase for {}:", v.name)
        };
        let method = &self.fallback.method;
        match start_prompt(method, &v.name, &message, &self.queue) {
            Ok(p) => {
                let left = self.prompt_until.saturating_duration_since(now);
                crate::log::warn(format_args!(
                    "{}: asking for a passphrase through {} (for {:.0}s); any keyslot's passphrase opens it",
                    v.name,
                    method.describe(),
                    left.as_secs_f64()
                ));
                self.prompt = Some(p);
            }
            Err(e) => {
                crate::log::error(format_args!(
                    "{}: cannot ask for a passphrase through {}: {e}",
                    v.name,
                    method.describe()
                ));
                self.empty_answers = EMPTY_ANSWERS_ALLOWED;
            }
        }
    }

    /// Vault has finished and no prompt is up: the person stopped answering, or their time
    /// is over.
    fn nobody_left_to_ask(&self, now: Instant) -> bool {
        self.prompt.is_none()
            && !self.auto_running
            && (self.empty_answers >= EMPTY_ANSWERS_ALLOWED || now >= self.prompt_until)
    }

    /// Drops the volumes someone else opened meanwhile (an operator over SSH).
    fn check_opened_elsewhere(&mut self, now: Instant) {
        self.next_check = now + OPENED_ELSEWHERE_CHECK;
        let cs = self.cs;
        self.locked.retain(|(v, _)| {
            let open = is_open(cs, &v.name);
            if open {
                crate::log::info(format_args!(
                    "{}: opened by another process meanwhile",
                    v.name
                ));
            }
            !open
        });
        self.withdraw_if_done();
    }

    /// How long to wait for an event: until the next check or the prompt's end.
    fn wait(&self, now: Instant) -> Duration {
        self.next_check
            .min(self.prompt_until.max(now))
            .saturating_duration_since(now)
            .max(Duration::from_millis(50))
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Keys(keys) => self.keys_from_vault(&keys),
            Event::AutoFailed(name, e) => {
                if let Some(i) = self.position(&name) {
                    crate::log::error(format_args!("{}", e.clone().for_volume(&name)));
                    self.locked[i].1 = Some(e);
                }
            }
            Event::AutoDone => self.auto_running = false,
            Event::Typed(name, passphrase) => self.typed(&name, &passphrase),
            Event::PromptEnded(name) => self.prompt_ended(&name),
        }
    }

    /// Opens, together, the volumes still locked that Vault's keys are for.
    fn keys_from_vault(&mut self, keys: &[(String, Secret, Option<u32>)]) {
        let volumes: Vec<(Volume, &Secret, Option<u32>)> = keys
            .iter()
            .filter_map(|(name, key, keyslot)| {
                let i = self.position(name)?;
                Some((self.locked[i].0.clone(), key, *keyslot))
            })
            .collect();
        let jobs: Vec<Job> = volumes
            .iter()
            .map(|(volume, key, keyslot)| Job {
                volume,
                key,
                from: KeyFrom::Vault { keyslot: *keyslot },
            })
            .collect();
        for (job, result) in jobs.iter().zip(open_all(self.cs, self.config, &jobs)) {
            let name = &job.volume.name;
            let Some(i) = self.position(name) else {
                continue;
            };
            match result {
                Ok(()) => {
                    self.locked.remove(i);
                }
                Err(e) => {
                    crate::log::error(format_args!("{}", e.clone().for_volume(name)));
                    self.locked[i].1 = Some(e);
                }
            }
        }
        self.withdraw_if_done();
    }

    fn typed(&mut self, name: &str, passphrase: &Secret) {
        self.finish_prompt(name);
        self.empty_answers = 0;
        let Some(i) = self.position(name) else {
            return;
        };
        match open(
            self.cs,
            self.config,
            &self.locked[i].0,
            passphrase,
            KeyFrom::Person,
        ) {
            Ok(()) => {
                self.locked.remove(i);
            }
            Err(e) => crate::log::error(format_args!("{}", e.for_volume(name))),
        }
    }

    fn prompt_ended(&mut self, name: &str) {
        // A withdrawn prompt ends too: only the current one's end counts.
        if self.finish_prompt(name) && self.position(name).is_some() {
            self.empty_answers += 1;
            crate::log::info(format_args!(
                "{name}: the prompt ended without a passphrase"
            ));
            self.next_prompt = Instant::now() + Duration::from_secs(1);
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.locked.iter().position(|(v, _)| v.name == name)
    }

    /// The prompt for `name` has answered or ended: reap it. False when it was not the current
    /// prompt (one withdrawn earlier, whose reader reports late).
    fn finish_prompt(&mut self, name: &str) -> bool {
        match self.prompt.take() {
            Some(p) if p.volume == name => {
                p.finish();
                true
            }
            other => {
                self.prompt = other;
                false
            }
        }
    }

    /// The prompt's volume is open (by Vault, or by someone else): take the question away.
    fn withdraw_if_done(&mut self) {
        if let Some(p) = self.prompt.take() {
            if self.position(&p.volume).is_some() {
                self.prompt = Some(p);
            } else {
                crate::log::info(format_args!(
                    "{}: passphrase prompt withdrawn: the volume is open",
                    p.volume
                ));
                p.withdraw();
            }
        }
    }

    /// The race is over: the prompt goes, the network the Vault thread raised goes, and each
    /// volume still locked says why.
    fn finish(mut self) -> Failures {
        if let Some(p) = self.prompt.take() {
            p.withdraw();
        }
        // The Vault thread may still be at work (every volume was opened by a passphrase): what
        // it configured of the network goes now, and it can configure nothing more.
        crate::net::teardown();
        let waited = self.start.elapsed().as_secs_f64();
        self.locked
            .into_iter()
            .map(|(v, e)| {
                let e = e.unwrap_or_else(|| {
                    Error::failed(
                        Step::Unlock,
                        format!("no key from Vault and no passphrase within {waited:.0}s"),
                        "unlock later with `vault-luks unlock` (it asks for a passphrase on a terminal), or cryptsetup open",
                    )
                });
                (v.name, e)
            })
            .collect()
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
/// expires on its own: the login's TTL; the network it raised is taken down by the race).
fn spawn_automatic(config: Config, pending: Vec<Pending>, tx: Sender) {
    std::thread::spawn(move || {
        let deadline = Deadline::after(config.timeouts.unlock);
        let fetched = keys::fetch(&config, &pending, &deadline);
        let keys = fetched.keys.into_iter();
        tx.send(Event::Keys(
            keys.map(|(p, key)| (p.volume.name.clone(), key, p.keyslot))
                .collect(),
        ));
        for (name, e) in fetched.failures {
            tx.send(Event::AutoFailed(name, e));
        }
        tx.send(Event::AutoDone);
    });
}
