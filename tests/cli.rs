//! The command line around unlock: help, version, check, status, close, and the process
//! hardening that keeps secrets out of core dumps.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

fn plain(args: &[&str]) -> Run {
    let sb = Sandbox::new("plain");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sb.run_command(cmd)
}

#[test]
fn help_and_version() {
    let run = plain(&["--help"]);
    run.assert_code(0);
    for needle in [
        "unlock",
        "close",
        "status",
        "check",
        "EXIT CODES",
        "rd.vault-luks.address",
        "VAULT_TOKEN",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
    let run = plain(&["--version"]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("vault-luks {}", env!("CARGO_PKG_VERSION"))
    );
    plain(&[]).assert_code(2).assert_stderr("no command given");
    plain(&["frobnicate"])
        .assert_code(2)
        .assert_stderr("unknown command `frobnicate`");
}

#[test]
fn help_per_command() {
    let general = plain(&["help"]);
    general.assert_code(0);
    assert_eq!(general.stdout, plain(&["--help"]).stdout);
    assert!(general.stdout.contains("EXIT CODES") && general.stdout.contains("help COMMAND"));

    let unlock = plain(&["help", "unlock"]);
    unlock.assert_code(0);
    assert!(unlock.stdout.contains("--late") && unlock.stdout.contains("--prompt"));
    assert!(!unlock.stdout.contains("--recovery"), "{}", unlock.stdout);
    assert_ne!(unlock.stdout, general.stdout);
    for args in [&["unlock", "--help"][..], &["unlock", "-h"]] {
        let run = plain(args);
        run.assert_code(0);
        assert_eq!(run.stdout, unlock.stdout, "{args:?}");
    }

    let enroll = plain(&["enroll", "--help"]);
    enroll.assert_code(0);
    assert!(enroll.stdout.contains("--recovery"), "{}", enroll.stdout);

    let nosuch = plain(&["help", "nosuch"]);
    nosuch
        .assert_code(2)
        .assert_stderr("unknown command `nosuch`");
    for known in ["unlock", "close", "status", "check", "enroll", "net-check"] {
        nosuch.assert_stderr(known);
    }
    assert!(nosuch.stdout.is_empty());
}

fn sample(sb: &Sandbox) -> (Volume, Value) {
    let vol = Volume {
        image: sb.write("luks.img", ""),
        ciphertext_file: sb.write("luks.passphrase", "vault:v3:c29tZSBjaXBoZXJ0ZXh0\n"),
    };
    let config = json!({
        "vault": {"addresses": ["https://vault-a.example.com:8200", "https://vault-b.example.com:8200"], "ca_cert": sb.write("ca.pem", "")},
        "auth": {"method": "exoscale", "role": "storage"},
        "volumes": [{"name": "luks", "device": vol.image, "ciphertext_file": vol.ciphertext_file, "transit": {"key": "luks"}},
                    {"name": "gone", "device": "/dev/mapper/vg.flex-lv.gone", "ciphertext_file": "/nonexistent", "transit": {"key": "luks"}}]
    });
    (vol, config)
}

#[test]
fn check_prints_resolved_settings_and_never_a_secret() {
    let sb = Sandbox::new("check");
    let (vol, config) = sample(&sb);
    let path = sb.write_config(&config);
    let mut cmd = sb.command(&path, &["check"]);
    cmd.env("VAULT_TOKEN", "s.ThisIsASecretTokenValue123");
    let run = sb.run_command(cmd);
    run.assert_code(0);
    for needle in [
        "vault.address: https://vault-a.example.com:8200 (from vault.addresses[0])",
        "vault.address: https://vault-b.example.com:8200 (from vault.addresses[1])",
        "auth: exoscale at auth/exoscale, role storage",
        "metadata.url: http://169.254.169.254/1.0/meta-data/",
        "auth: the token in VAULT_TOKEN is used instead (value hidden)",
        "timeouts: unlock 60s, request 10s, device 30s, cryptsetup 120s",
        "network: auto: DHCP when there is no route, interface ip=/BOOTIF=, else the first with a carrier",
        "volume luks: device",
        "transit transit/luks, key base64 text (as the article)",
    ] {
        assert!(
            run.stdout.contains(needle),
            "missing `{needle}` in:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("ThisIsASecret") && !run.stderr.contains("ThisIsASecret"));

    let run = sb.run(&path, &["check", "--files"]);
    run.assert_code(0);
    let files: Vec<&str> = run.stdout.lines().collect();
    let expected = [
        sb.dir.join("ca.pem"),
        vol.ciphertext_file.clone(),
        "/nonexistent".into(),
    ];
    for f in &expected {
        assert!(
            files.contains(&f.to_str().unwrap()),
            "--files lacks {}: {files:?}",
            f.display()
        );
    }
    assert_eq!(files.len(), expected.len(), "{files:?}");
    assert!(
        run.stderr.is_empty(),
        "--files output is for scripts: no warnings mixed in"
    );
}

#[test]
fn check_applies_the_kernel_command_line() {
    let sb = Sandbox::new("check-cmdline");
    let (_, config) = sample(&sb);
    let path = sb.write_config(&config);
    sb.set_cmdline("quiet rd.vault-luks.address=https://10.0.0.5:8200 rd.vault-luks.timeout=15 rd.vault-luks.frob=1");
    let run = sb.run(&path, &["check"]);
    run.assert_code(0)
        .assert_stderr("ignoring unknown kernel command line option `rd.vault-luks.frob=1`");
    assert!(
        run.stdout
            .contains("vault.address: https://10.0.0.5:8200 (from rd.vault-luks.address)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("timeouts: unlock 15s"));
    let run = sb.run(&path, &["--no-cmdline", "check"]);
    assert!(run.stdout.contains("vault-a.example.com"));
}

#[test]
fn status_text_and_json() {
    let sb = Sandbox::new("status");
    let (vol, config) = sample(&sb);
    let path = sb.write_config(&config);
    sb.mark_open("luks", &vol.image);
    let run = sb.run(&path, &["status", "--json"]);
    run.assert_code(0);
    let s: Value = serde_json::from_str(&run.stdout).unwrap();
    let luks = &s["volumes"][0];
    assert_eq!(luks["name"], "luks");
    assert_eq!(luks["device_present"], true);
    assert_eq!(luks["active"], true);
    assert_eq!(luks["ciphertext_ok"], true);
    assert_eq!(luks["key_version"], 3);
    let gone = &s["volumes"][1];
    assert_eq!(gone["device_present"], false);
    assert_eq!(gone["active"], false);
    assert_eq!(gone["ciphertext_ok"], false);
    assert_eq!(gone["key_version"], Value::Null);

    let run = sb.run(&path, &["status"]);
    run.assert_code(0);
    assert!(run.stdout.contains("luks: device"));
    assert!(run.stdout.contains("open: yes"));
    assert!(run.stdout.contains("version v3"));
    assert!(
        run.stdout.contains("gone: device /dev/mapper/vg.flex-lv.gone present: no; no LUKS header read; vault keyslot - (token -); open: no; mounted: no"),
        "{}",
        run.stdout
    );
}

#[test]
fn close_closes_reports_busy_and_accepts_already_closed() {
    let sb = Sandbox::new("close");
    let (vol, config) = sample(&sb);
    let path = sb.write_config(&config);
    sb.mark_open("luks", &vol.image);
    std::fs::write(sb.state.join("busy-luks"), "").unwrap();
    sb.run(&path, &["close", "luks"])
        .assert_code(1)
        .assert_stderr("luks: cryptsetup close: Device luks is still in use.")
        .assert_stderr("stop what uses the file system");
    assert!(sb.is_open("luks"));
    // --force closes deferred: the mapping goes when its last user does.
    sb.run(&path, &["close", "--force", "luks"]).assert_code(0);
    assert!(sb.wrapper_log("argv.log").contains("close --deferred luks"));
    sb.mark_open("luks", &vol.image);
    std::fs::remove_file(sb.state.join("busy-luks")).unwrap();
    sb.run(&path, &["close", "luks"])
        .assert_code(0)
        .assert_stderr("luks: closed");
    assert!(!sb.is_open("luks"));
    sb.run(&path, &["close"])
        .assert_code(0)
        .assert_stderr("luks: not open, nothing to do")
        .assert_stderr("gone: not open");
    sb.run(&path, &["close", "nope"]).assert_code(2);
    // Closed by someone else between our status and our close: that is closed, not a failure.
    sb.mark_open("luks", &vol.image);
    std::fs::write(sb.state.join("vanish-luks"), "").unwrap();
    sb.run(&path, &["close", "luks"])
        .assert_code(0)
        .assert_stderr("luks: closed meanwhile by another process");
}

#[test]
fn logs_can_go_to_the_kernel_log_instead_of_stderr() {
    let sb = Sandbox::new("kmsg");
    let (_, config) = sample(&sb);
    let path = sb.write_config(&config);
    let run = sb.run(&path, &["--log", "kmsg", "close", "luks"]);
    run.assert_code(0);
    if std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .is_ok()
    {
        assert!(
            !run.stderr.contains("not open"),
            "with --log kmsg, lines go to the kernel log: {}",
            run.stderr
        );
    } else {
        assert!(
            run.stderr.contains("not open"),
            "without /dev/kmsg, stderr is the fallback"
        );
    }
}

/// A non-dumpable process's /proc/PID files belong to root, whoever runs it: the kernel's
/// sign that it will write no core dump and that other users cannot ptrace or read it.
#[test]
fn the_process_is_not_dumpable() {
    if !nix_is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        panic!("this test needs root and setpriv (util-linux), as CI has");
    }
    let sb = Sandbox::new("dumpable");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = sb.write(
        "c.json",
        &json!({"vault": {"address": format!("http://127.0.0.1:{port}"), "allow_http": true},
                "auth": {"method": "token"},
                "timeouts": {"unlock": 3},
                "volumes": [{"name": "x", "device": "/", "ciphertext_file": sb.write("ct", "vault:v1:eA=="), "transit": {"key": "luks"}}]})
        .to_string(),
    );
    std::fs::set_permissions(&sb.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--no-cmdline",
            "unlock",
        ])
        .env_clear()
        .env("VAULT_TOKEN", "s.NotARealTokenButLongEnough1234")
        .env("VAULT_LUKS_PROC_CMDLINE", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The decrypt request goes to a listener that never answers: the process lives ~3 s.
    let pid = child.id();
    // Poll: between exec and the prctl in main the process is briefly still dumpable.
    let mut owner = None;
    for _ in 0..400 {
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/status")) {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe == binary().canonicalize().unwrap() {
                owner = Some(std::os::unix::fs::MetadataExt::uid(&m));
                if owner == Some(0) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(listener);
    assert_eq!(
        owner,
        Some(0),
        "a non-dumpable process's /proc files are owned by root, not by uid 65534"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}
