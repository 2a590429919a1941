//! Vault HA on a real cluster (issue 15): three OpenBao nodes with integrated (raft) storage on
//! loopback; transit, a policy and AppRole on them; vault-luks's `vault.addresses` listing all
//! three. Each case breaks the cluster the way a fleet meets it: the leader killed, the leader
//! stopped (it accepts connections and never answers), a dead address first, a standby first
//! (it forwards), a standby first while the leader has just died (it redirects to the dead
//! leader, then says no leader is found, until the election is over). Each must unlock within
//! the deadline, with the failover in the log; each prints its time to key. One cluster serves
//! every case, healed to three healthy voters before each (starting one costs ~10 s).

mod common;

use common::raft::Cluster;
use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// timeouts.request: how long vault-luks gives one request before the next address.
const REQUEST_TIMEOUT: u64 = 2;
/// timeouts.unlock.
const DEADLINE: u64 = 30;

struct Harness {
    cluster: Cluster,
    sb: Sandbox,
    volume: Volume,
    role_id: String,
    secret_id_file: PathBuf,
}

impl Harness {
    /// A config listing `addresses` in this order, for the volume at `device`.
    fn config(&self, case: &str, addresses: &[&str], device: &Path) -> PathBuf {
        let cfg = json!({
            "vault": {"addresses": addresses, "allow_http": true},
            "auth": {"method": "approle", "role_id": self.role_id, "secret_id_file": self.secret_id_file},
            "timeouts": {"unlock": DEADLINE, "request": REQUEST_TIMEOUT, "device": 20, "cryptsetup": 60},
            "volumes": [{
                "name": "luks",
                "device": device,
                "ciphertext_file": self.volume.ciphertext_file,
                "transit": {"key": "luks"},
            }],
        });
        self.sb.write(
            &format!("config-{case}.json"),
            &serde_json::to_string_pretty(&cfg).unwrap(),
        )
    }

    /// `vault-luks --debug unlock --no-prompt`, its log read as it comes; its own
    /// device-mapper state.
    fn unlock(&self, case: &str, config: &Path) -> Unlock {
        let state = self.sb.dir.join(format!("state-{case}"));
        std::fs::create_dir_all(&state).unwrap();
        let mut cmd = self
            .sb
            .command(config, &["--debug", "unlock", "--no-prompt"]);
        cmd.env("VAULT_LUKS_TEST_STATE", &state)
            .stdout(std::process::Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send((start.elapsed(), line)).is_err() {
                    break;
                }
            }
        });
        Unlock {
            child,
            lines,
            start,
            seen: Vec::new(),
            state,
        }
    }
}

struct Unlock {
    child: Child,
    lines: Receiver<(Duration, String)>,
    start: Instant,
    seen: Vec<(Duration, String)>,
    state: PathBuf,
}

impl Unlock {
    /// Waits (bounded) for a log line holding `needle`.
    fn wait_for(&mut self, needle: &str) {
        let end = Instant::now() + Duration::from_secs(DEADLINE);
        while !self.seen.iter().any(|(_, l)| l.contains(needle)) {
            match self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no `{needle}` in the log:\n{}", text(&self.seen)),
            }
        }
    }

    /// The end of the run: killed if it outlives its deadline by 10 s.
    fn finish(mut self) -> Outcome {
        let end = self.start + Duration::from_secs(DEADLINE + 10);
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.start.elapsed();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(2)) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the log did not end"),
            }
        }
        eprintln!("{}", text(&self.seen));
        Outcome {
            code,
            lines: std::mem::take(&mut self.seen),
            took,
            unlocked: self.state.join("active-luks").exists(),
        }
    }
}

/// A case that failed half-way does not leave vault-luks running to its deadline.
impl Drop for Unlock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    code: Option<i32>,
    lines: Vec<(Duration, String)>,
    took: Duration,
    /// The cryptsetup wrapper's active mapping: the volume was opened.
    unlocked: bool,
}

fn text(lines: &[(Duration, String)]) -> String {
    lines
        .iter()
        .map(|(t, l)| format!("{:6.2}s {l}\n", t.as_secs_f64()))
        .collect()
}

impl Outcome {
    fn log(&self) -> String {
        text(&self.lines)
    }

    /// When the first line holding `needle` came.
    fn at(&self, needle: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    fn assert_unlocked(&self) -> &Self {
        assert!(
            self.code == Some(0) && self.unlocked && self.took < Duration::from_secs(DEADLINE),
            "not unlocked within {DEADLINE} s (exit {:?}, active mapping: {}, {:.1} s):\n{}",
            self.code,
            self.unlocked,
            self.took.as_secs_f64(),
            self.log()
        );
        self
    }

    fn assert_line(&self, needle: &str) -> &Self {
        assert!(
            self.at(needle).is_some(),
            "expected `{needle}` in the log:\n{}",
            self.log()
        );
        self
    }

    fn refute_line(&self, needle: &str) -> &Self {
        assert!(
            self.at(needle).is_none(),
            "did not expect `{needle}` in the log:\n{}",
            self.log()
        );
        self
    }

    /// From the start to the key handed to cryptsetup (Vault done: login, decrypt, revoke).
    fn time_to_key(&self) -> Duration {
        self.at("luks: cryptsetup open")
            .expect("the key reached cryptsetup")
    }
}

/// What a case reports: time to key, and what else it measured.
type Report = String;

/// A line of the run's figures, written past libtest's output capture: they are what a run
/// of this test is for (each unlock's own log is captured, and shown when the test fails).
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "ha: {line}");
}
type Case = fn(&mut Harness) -> Report;

#[test]
fn unlocks_through_a_three_node_raft_cluster_whatever_happens_to_its_nodes() {
    let start = Instant::now();
    let cluster = Cluster::start("ha");
    let startup: Vec<String> = cluster
        .startup
        .iter()
        .map(|(what, took)| format!("{what} {:.1}s", took.as_secs_f64()))
        .collect();
    say(format!(
        "cluster up in {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        startup.join(", ")
    ));

    let bao = cluster.bao();
    bao.setup_transit();
    bao.run(&["auth", "enable", "approle"]);
    bao.run(&[
        "write",
        "auth/approle/role/luks",
        "token_policies=transit-luks",
        "token_ttl=5m",
    ]);
    let role_id = bao
        .run(&["read", "-field=role_id", "auth/approle/role/luks/role-id"])
        .trim()
        .to_string();
    let sb = Sandbox::new("ha");
    let secret_id = bao.run(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/luks/secret-id",
    ]);
    let secret_id_file = sb.write("secret-id", secret_id.trim());
    let pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    let volume = sb.article_volume_on(&bao, "luks", "luks", &pbkdf2);
    let mut h = Harness {
        cluster,
        sb,
        volume,
        role_id,
        secret_id_file,
    };
    say(format!(
        "transit, AppRole, volume set up at {:.1} s",
        start.elapsed().as_secs_f64()
    ));

    let cases: [(&str, Case); 6] = [
        ("first address refuses connections", closed_port_first),
        ("a standby first: it forwards", standby_first_forwards),
        ("the leader killed, listed first", leader_killed),
        ("a standby first, the leader just killed", standby_redirects),
        (
            "the same, nodes listed by another name",
            standby_redirects_elsewhere,
        ),
        ("the leader stopped during the unlock", leader_stopped),
    ];
    let mut failed = Vec::new();
    for (name, case) in cases {
        let healed = h.cluster.heal();
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| case(&mut h))) {
            Ok(report) => say(format!(
                "{name}: {report} (case {:.1} s; cluster healed in {:.1} s before it)",
                t.elapsed().as_secs_f64(),
                healed.as_secs_f64()
            )),
            Err(_) => {
                say(format!("{name}: FAILED"));
                failed.push(name);
            }
        }
    }
    say(format!(
        "all done in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// A closed port first: refused at once, the next address answers.
fn closed_port_first(h: &mut Harness) -> Report {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let c = &h.cluster;
    let config = h.config(
        "closed",
        &[&closed, c.addr(0), c.addr(1), c.addr(2)],
        &h.volume.image,
    );
    let run = h.unlock("closed", &config).finish();
    run.assert_unlocked()
        .assert_line(&format!(
            "vault login: attempt 1 failed: {closed}: cannot connect"
        ))
        .assert_line("vault login: ok");
    format!("key in {:.2} s", run.time_to_key().as_secs_f64())
}

/// A healthy standby first: OpenBao's standby forwards the writes (login, revoke) to the
/// active node over the cluster port and serves the decrypt from its own copy: no failover.
fn standby_first_forwards(h: &mut Harness) -> Report {
    let c = &h.cluster;
    let (leader, standby) = (c.leader(), c.standbys()[0]);
    let config = h.config(
        "forward",
        &[c.addr(standby), c.addr(leader)],
        &h.volume.image,
    );
    let run = h.unlock("forward", &config).finish();
    let s = c.addr(standby);
    run.assert_unlocked()
        .assert_line(&format!(
            "vault login: POST {s}/v1/auth/approle/login (attempt 1"
        ))
        .assert_line(&format!(
            "transit decrypt: POST {s}/v1/transit/decrypt/luks (attempt 1"
        ))
        .assert_line(&format!(
            "token revoke: POST {s}/v1/auth/token/revoke-self (attempt 1"
        ))
        .assert_line("token revoke: ok")
        .refute_line("failed")
        .refute_line("redirect");
    format!("key in {:.2} s", run.time_to_key().as_secs_f64())
}

/// SIGKILL the leader, then unlock with it listed first: refused, and the standbys answer
/// 307 to the dead leader (it is still their leader until the election), then 500 "active
/// cluster node not found", until one of them is the active node.
fn leader_killed(h: &mut Harness) -> Report {
    let c = &mut h.cluster;
    let leader = c.leader();
    let mut order = vec![leader];
    order.extend(c.standbys());
    let addrs: Vec<String> = order.iter().map(|&i| c.addr(i).to_string()).collect();
    c.kill(leader);
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let config = h.config("killed", &addrs, &h.volume.image);
    let run = h.unlock("killed", &config).finish();
    run.assert_unlocked().assert_line(&format!(
        "vault login: attempt 1 failed: {}: cannot connect",
        addrs[0]
    ));
    format!("key in {:.2} s", run.time_to_key().as_secs_f64())
}

/// A standby listed first while the leader has just been killed: it cannot forward and
/// redirects to the leader it still knows. A configured address: followed once (refused
/// there), then on to the next address, until the new active node answers.
fn standby_redirects(h: &mut Harness) -> Report {
    let (run, addrs) = standby_first_leader_killed(h, "redirect", "127.0.0.1");
    run.assert_unlocked().assert_line(&format!(
        "vault login: {} redirects to {}, a configured address: following",
        addrs[0], addrs[1]
    ));
    format!("key in {:.2} s", run.time_to_key().as_secs_f64())
}

/// The same, with the nodes listed by another name (localhost) than the api_addr they
/// advertise (127.0.0.1): the redirect points at no configured address and is not followed
/// (the token stays with the addresses listed); the next address is tried instead.
fn standby_redirects_elsewhere(h: &mut Harness) -> Report {
    let (run, addrs) = standby_first_leader_killed(h, "elsewhere", "localhost");
    let api_addr = addrs[1].replace("localhost", "127.0.0.1");
    run.assert_unlocked()
        .assert_line(&format!(
            "vault login: attempt 1 failed: {} answered HTTP 307 (redirect to {api_addr}/v1/auth/approle/login)",
            addrs[0]
        ))
        .refute_line("a configured address: following");
    format!("key in {:.2} s", run.time_to_key().as_secs_f64())
}

/// Kills the leader, then unlocks with [a standby, the dead leader, the other standby], each
/// written with `host`.
fn standby_first_leader_killed(h: &mut Harness, case: &str, host: &str) -> (Outcome, Vec<String>) {
    let c = &mut h.cluster;
    let leader = c.leader();
    let standbys = c.standbys();
    let addrs: Vec<String> = [standbys[0], leader, standbys[1]]
        .iter()
        .map(|&i| c.addr(i).replace("127.0.0.1", host))
        .collect();
    c.kill(leader);
    let listed: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let config = h.config(case, &listed, &h.volume.image);
    (h.unlock(case, &config).finish(), addrs)
}

/// SIGSTOP the leader while vault-luks waits for its device (so every request it makes meets
/// the stopped node first): a connection that opens and never answers, cut at
/// timeouts.request; then the standbys, whose forwarding hangs on the stopped leader too
/// until the others elect a new one. Resumed when the case ends, failed or not.
fn leader_stopped(h: &mut Harness) -> Report {
    let c = &h.cluster;
    let leader = c.leader();
    let mut order = vec![leader];
    order.extend(c.standbys());
    let addrs: Vec<&str> = order.iter().map(|&i| c.addr(i)).collect();
    let late = h.sb.dir.join("late.img");
    let _ = std::fs::remove_file(&late);
    let config = h.config("stopped", &addrs, &late);
    let mut unlock = h.unlock("stopped", &config);
    unlock.wait_for("luks: waiting up to");
    let _resume = c.stop(leader);
    let stopped_at = unlock.start.elapsed();
    std::fs::hard_link(&h.volume.image, &late).unwrap();
    let run = unlock.finish();
    run.assert_unlocked().assert_line(&format!(
        "vault login: attempt 1 failed: {}: no answer within {REQUEST_TIMEOUT}.0s",
        addrs[0]
    ));
    format!(
        "key in {:.2} s after the stop",
        run.time_to_key().saturating_sub(stopped_at).as_secs_f64()
    )
}
