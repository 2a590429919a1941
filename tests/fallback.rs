//! The person at the console: `unlock --prompt` asks for a passphrase (here through a stand-in
//! asker, VAULT_LUKS_ASKPASS) as soon as Vault fails or is slow, keeps retrying Vault while
//! the prompt is up, and whichever arrives first opens the volume.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BACKUP: &str = "correct horse battery staple";

struct Case {
    sb: Sandbox,
    vol: Volume,
    standin: Standin,
    config: Value,
}

impl Case {
    fn new(name: &str, faults: &[&str]) -> Case {
        let sb = Sandbox::new(name);
        let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
        // The backup passphrase the article tells users to keep: a second keyslot.
        vol.add_passphrase(BACKUP, None);
        let mut args = Vec::new();
        for f in faults {
            args.push("--fault");
            args.push(f);
        }
        let standin = Standin::start(&args);
        let mut config = config_for(&standin, &[("luks", &vol, "luks")]);
        config["timeouts"] =
            json!({"unlock": 30, "request": 2, "device": 1, "cryptsetup": 60, "prompt": 30});
        Case {
            sb,
            vol,
            standin,
            config,
        }
    }

    /// The person's answers, one per prompt; after the last one they never answer.
    fn answers(&self, lines: &[&str]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(self.sb.state.join("askpass-answers"), text).unwrap();
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut args = vec!["unlock"];
        args.extend_from_slice(extra);
        let mut cmd = self.sb.command(&self.sb.write_config(&self.config), &args);
        cmd.env(
            "VAULT_LUKS_ASKPASS",
            repo_path("tests/fixtures/askpass-fake"),
        );
        cmd
    }

    fn run(&self, extra: &[&str]) -> Run {
        let before = sha256(&self.vol.image);
        let run = self.sb.run_command(self.command(extra));
        assert_eq!(
            sha256(&self.vol.image),
            before,
            "the image (its LUKS header included) was written to"
        );
        assert!(!run.stderr.contains(BACKUP), "the passphrase was logged");
        run
    }

    /// `unlock --prompt`, and `meanwhile` once the first prompt is up.
    fn run_with_prompt_up(&self, meanwhile: impl FnOnce()) -> Run {
        std::thread::scope(|s| {
            let runner = s.spawn(|| self.run(&["--prompt"]));
            let start = Instant::now();
            while self.prompts().is_empty() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no prompt came up"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            meanwhile();
            runner.join().unwrap()
        })
    }

    /// Each prompt: (pid, volume, question).
    fn prompts(&self) -> Vec<(u32, String, String)> {
        self.sb
            .wrapper_log("askpass.log")
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                (
                    parts.next().unwrap().parse().unwrap(),
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

fn repo_path(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[test]
fn vault_down_the_prompt_comes_up_at_once_and_the_passphrase_opens() {
    let mut case = Case::new("prompt-vault-down", &[]);
    case.config["vault"]["address"] = json!(closed_port_url());
    // Vault's keyslot is named, but a typed passphrase may be any keyslot's: the backup is
    // in keyslot 1, and only an open that tries every keyslot takes it.
    case.config["volumes"][0]["keyslot"] = json!(0);
    case.answers(&[BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("vault login: attempt 1 failed")
        .assert_stderr("cannot connect")
        .assert_stderr("luks: asking for a passphrase through")
        .assert_stderr("luks: unlocked as /dev/mapper/luks with a typed passphrase")
        // At the first failure, not at the 30 s deadline.
        .assert_within(Duration::from_secs(15));
    assert!(case.sb.is_open("luks"));
    assert!(
        !case.sb.wrapper_log("argv.log").contains("--key-slot"),
        "a typed passphrase was tried in one keyslot"
    );
    let prompts = case.prompts();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].1, "luks", "CRYPTTAB_NAME names the volume");
    assert_eq!(
        prompts[0].2,
        "Passphrase for luks (Vault not answering, still retrying):"
    );
}

#[test]
fn a_wrong_passphrase_is_refused_and_asked_again() {
    let mut case = Case::new("prompt-wrong", &[]);
    case.config["vault"]["address"] = json!(closed_port_url());
    case.answers(&["not it", BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("luks: cryptsetup failed: a typed passphrase does not open")
        .assert_stderr("type it again")
        .assert_stderr("with a typed passphrase");
    assert_eq!(case.prompts().len(), 2);
    assert!(case.sb.is_open("luks"));
}

/// Vault sealed at first, unsealed while the prompt is up: Vault's key opens the volume with
/// nobody typing, and the prompt is taken away.
#[test]
fn vault_coming_back_while_the_prompt_is_up_wins() {
    let mut case = Case::new("prompt-comes-back", &["sealed"]);
    // Vault's key goes to its keyslot alone, also when it wins the race.
    case.config["volumes"][0]["keyslot"] = json!(0);
    case.answers(&[]);
    let run = case.run_with_prompt_up(|| case.standin.set_faults(r#"{"clear_all": true}"#));
    run.assert_code(0)
        .assert_stderr("503")
        .assert_stderr("luks: unlocked as /dev/mapper/luks with Vault's key")
        .assert_stderr("luks: passphrase prompt withdrawn: the volume is open");
    assert!(case.sb.is_open("luks"));
    assert!(
        case.sb
            .wrapper_log("argv.log")
            .contains("open --key-file=- --key-slot=0 "),
        "Vault's key was not tried in its keyslot alone"
    );
    let prompts = case.prompts();
    assert_eq!(prompts.len(), 1);
    assert!(!alive(prompts[0].0), "the asker was stopped");
}

/// Opened by someone else while the prompt is up (an operator over SSH): the kernel's
/// device-mapper table (sysfs) shows it, the prompt is taken away, and that is success.
#[test]
fn a_volume_opened_elsewhere_during_the_prompt_ends_it() {
    let mut case = Case::new("prompt-opened-elsewhere", &[]);
    case.config["vault"]["address"] = json!(closed_port_url());
    case.answers(&[]);
    let run = case.run_with_prompt_up(|| case.sb.show_in_sysfs("luks"));
    run.assert_code(0)
        .assert_stderr("luks: opened by another process meanwhile")
        .assert_stderr("luks: passphrase prompt withdrawn: the volume is open")
        // Seen at the next check (every 2 s), not at the 30 s deadline.
        .assert_within(Duration::from_secs(15));
    let argv = case.sb.wrapper_log("argv.log");
    assert!(!argv.contains("status"), "{argv}");
    assert!(!alive(case.prompts()[0].0), "the asker was stopped");
}

#[test]
fn nobody_answering_ends_at_the_prompt_deadline_with_vaults_reason() {
    let mut case = Case::new("prompt-nobody", &[]);
    case.config["vault"]["address"] = json!(closed_port_url());
    case.config["timeouts"]["unlock"] = json!(2);
    case.config["timeouts"]["prompt"] = json!(2);
    case.answers(&[]);
    case.run(&["--prompt"])
        .assert_code(1)
        .assert_stderr("luks: vault login failed")
        .assert_stderr("cannot connect")
        .assert_within(Duration::from_secs(10));
    assert!(!case.sb.is_open("luks"));
    let prompts = case.prompts();
    assert_eq!(prompts.len(), 1);
    assert!(!alive(prompts[0].0), "the asker was stopped");
}

/// A final answer from Vault (here: a ciphertext it cannot decrypt) brings the prompt up at
/// once, with Vault's own words on the line before it.
#[test]
fn a_final_refusal_prompts_at_once() {
    let case = Case::new("prompt-bad-ciphertext", &[]);
    std::fs::write(
        &case.vol.ciphertext_file,
        "vault:v1:bm90IGEgY2lwaGVydGV4dA==\n",
    )
    .unwrap();
    case.answers(&[BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("luks: transit decrypt failed")
        .assert_stderr("with a typed passphrase")
        .assert_within(Duration::from_secs(10));
}

#[test]
fn rd_vault_luks_prompt_skips_vault() {
    let case = Case::new("prompt-only", &[]);
    case.sb.set_cmdline("root=/dev/vda rd.vault-luks=prompt");
    case.answers(&[BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("rd.vault-luks=prompt: not asking Vault")
        .assert_stderr("with a typed passphrase");
    assert_eq!(case.standin.requests("/v1/auth/exoscale/login"), 0);
    assert_eq!(
        case.prompts()[0].2,
        "Passphrase for luks:",
        "no retrying is promised"
    );
}

#[test]
fn no_prompt_without_the_flag_or_with_a_zero_prompt_timeout() {
    let mut case = Case::new("prompt-off", &[]);
    case.config["vault"]["address"] = json!(closed_port_url());
    case.config["timeouts"]["unlock"] = json!(2);
    case.answers(&[BACKUP]);
    // stdin is not a terminal: no prompt unless asked for.
    case.run(&[]).assert_code(1);
    case.config["timeouts"]["prompt"] = json!(0);
    case.run(&["--prompt"])
        .assert_code(1)
        .assert_stderr("no passphrase prompt: timeouts.prompt is 0");
    assert!(case.prompts().is_empty());
    assert!(!case.sb.is_open("luks"));
}

/// Vault answers normally: no prompt at all.
#[test]
fn a_healthy_vault_never_prompts() {
    let case = Case::new("prompt-healthy", &[]);
    case.answers(&[BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("with Vault's key")
        .refute_stderr("asking for a passphrase");
    assert!(case.prompts().is_empty());
}

/// Several locked volumes are asked for one after the other; each answer opens its own.
#[test]
fn each_locked_volume_gets_its_own_prompt() {
    let mut case = Case::new("prompt-two", &[]);
    let data = case.sb.article_volume("data", "luks", FAST_ARGON2);
    data.add_passphrase(BACKUP, None);
    case.config = config_for(
        &case.standin,
        &[("luks", &case.vol, "luks"), ("data", &data, "luks")],
    );
    case.config["vault"]["address"] = json!(closed_port_url());
    case.config["timeouts"] = json!({"unlock": 30, "request": 2, "device": 1, "prompt": 30});
    case.answers(&[BACKUP, BACKUP]);
    case.run(&["--prompt"])
        .assert_code(0)
        .assert_stderr("luks: unlocked as /dev/mapper/luks with a typed passphrase")
        .assert_stderr("data: unlocked as /dev/mapper/data with a typed passphrase");
    let asked: Vec<String> = case.prompts().into_iter().map(|p| p.1).collect();
    assert_eq!(asked, ["luks", "data"]);
    assert!(case.sb.is_open("luks") && case.sb.is_open("data"));
}

/// vault-luks's own prompt (where neither systemd-ask-password nor askpass exists): on the
/// terminal, echo off while it waits, the answer on stdout only; withdrawn with SIGTERM, it
/// puts echo back.
#[test]
fn the_builtin_console_prompt_hides_the_passphrase_and_restores_the_terminal() {
    let drive = |args: &[&str]| -> Value {
        let out = Command::new(repo_path("tests/fixtures/pty-ask.py"))
            .arg(binary())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let answered = drive(&["answer", BACKUP]);
    assert!(
        answered["screen"]
            .as_str()
            .unwrap()
            .contains("Passphrase for luks:"),
        "{answered}"
    );
    assert!(
        !answered["screen"].as_str().unwrap().contains(BACKUP),
        "echoed: {answered}"
    );
    assert_eq!(answered["echo_while_asking"], false);
    assert_eq!(answered["stdout"], BACKUP);
    assert_eq!(answered["status"], 0);
    assert_eq!(answered["echo_after"], true);

    let withdrawn = drive(&["withdraw"]);
    assert_eq!(withdrawn["stdout"], "");
    assert_eq!(withdrawn["echo_after"], true, "{withdrawn}");
}
