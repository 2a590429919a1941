//! `vault-luks unlock` end to end: real OpenBao, the Exoscale stand-ins, real cryptsetup on
//! LUKS2 images made with the article's commands.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn an_article_volume_opens_unchanged_and_nothing_leaks() {
    let sb = Sandbox::new("article");
    // The article's exact command: argon2id with cryptsetup's own benchmark.
    let vol = sb.article_volume("luks", "luks", &[]);
    let before = sha256(&vol.image);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));

    let run = sb.run(&config, &["unlock"]);
    run.assert_code(0)
        .assert_stderr("metadata: instance 9a0e0b2c-1f6a-4a4e-9a51-3c7f1e2d4b5a in zone ch-gva-2")
        .assert_stderr("vault login: ok")
        .assert_stderr("transit decrypt: 1 ciphertext(s) with key luks")
        .assert_stderr("token revoke: ok")
        .assert_stderr("luks: unlocked as /dev/mapper/luks");
    assert!(sb.is_open("luks"));
    assert_eq!(
        sha256(&vol.image),
        before,
        "nothing is written to the device"
    );
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 1);
    assert_eq!(standin.requests("/v1/auth/token/revoke-self"), 1);

    // The key (the article's plaintext) and the token reach no argv, environment or log line.
    let key = vol.key("luks");
    assert_eq!(key.len(), 32, "openssl rand -base64 24 is 32 characters");
    let argv = sb.wrapper_log("argv.log");
    let env = sb.wrapper_log("env.log");
    assert!(
        argv.contains(&format!("open --key-file=- {} luks", vol.image.display())),
        "{argv}"
    );
    for (what, text) in [
        ("argv", &argv),
        ("environment", &env),
        ("stderr", &run.stderr),
        ("stdout", &run.stdout),
    ] {
        assert!(!text.contains(&key), "the key leaked into {what}");
        assert_eq!(token_like(text), None, "a token leaked into {what}");
    }
}

/// Secret hygiene observed, not assumed: every syscall that writes or executes anything, of
/// vault-luks and its children (strace -f), during a real unlock. The key appears only in a
/// write to a pipe (cryptsetup's stdin); a token only in writes to the TCP socket to Vault;
/// neither in any execve (argv, environment), file, log line or terminal write.
#[test]
fn strace_sees_the_key_only_in_the_pipe_and_the_token_only_on_the_wire() {
    let sb = Sandbox::new("strace");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let key = vol.key("luks");

    let trace = sb.dir.join("strace.log");
    // -v: execve's environment in full; -yy: each descriptor's kind (pipe, TCP, file path).
    let cmd = sb.command_via(
        &[
            "strace",
            "-f",
            "-v",
            "-yy",
            "-s",
            "1000000",
            "-o",
            trace.to_str().unwrap(),
            "-e",
            "trace=execve,write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,sendmmsg",
            "--",
        ],
        &config,
        &["unlock"],
    );
    sb.run_command(cmd)
        .assert_code(0)
        .assert_stderr("luks: unlocked as /dev/mapper/luks");
    let trace = std::fs::read_to_string(trace).unwrap();

    let writes = |line: &str| {
        [
            "write(",
            "writev(",
            "pwrite64(",
            "pwritev",
            "sendto(",
            "sendmsg(",
            "sendmmsg(",
        ]
        .iter()
        .any(|call| line.contains(call))
    };
    let (mut key_in_pipe, mut token_on_wire) = (0, 0);
    for line in trace.lines() {
        if line.contains(&key) {
            assert!(
                writes(line) && line.contains("<pipe:["),
                "the key outside a pipe write: {line}"
            );
            key_in_pipe += 1;
        }
        if let Some(token) = token_like(line) {
            assert!(
                writes(line) && line.contains("<TCP:["),
                "a token ({token}) outside a write to the socket: {line}"
            );
            token_on_wire += 1;
        }
    }
    // The assertions above ran on lines that exist: the key went to cryptsetup through a pipe,
    // the token to Vault (decrypt, revoke).
    assert_eq!(key_in_pipe, 1, "the key written to cryptsetup's pipe once");
    assert!(
        token_on_wire >= 2,
        "{token_on_wire} token-bearing requests seen"
    );
    assert!(trace.contains("execve("), "strace saw no execve: {trace}");
}

#[test]
fn a_volume_already_open_is_success_without_network() {
    let sb = Sandbox::new("already-open");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    sb.mark_open("luks", &vol.image);
    sb.run(&config, &["unlock"])
        .assert_code(0)
        .assert_stderr("luks: already open as /dev/mapper/luks, nothing to do");
    assert_eq!(
        standin.requests("/v1/auth/exoscale/login"),
        0,
        "no login when nothing needs opening"
    );
    assert!(!sb.wrapper_log("argv.log").contains("open --key-file"));
}

/// The kernel's device-mapper table (sysfs) says what is open, and the LUKS2 header is read
/// from the device: a volume another process opened (only the kernel knows) is left alone, the
/// other opened, and cryptsetup starts for the open alone: no `status`, no `luksDump`.
#[test]
fn a_volume_opened_elsewhere_is_seen_in_sysfs_and_only_open_starts_cryptsetup() {
    let (sb, _standin, config, [_, b]) = volumes_a_and_b("sysfs-open");
    sb.show_in_sysfs("a");
    sb.run(&config, &["unlock"])
        .assert_code(0)
        .assert_stderr("a: already open as /dev/mapper/a, nothing to do")
        .assert_stderr("b: unlocked as /dev/mapper/b");
    assert!(sb.is_open("b"));
    let argv = sb.wrapper_log("argv.log");
    assert_eq!(
        argv,
        format!("open --key-file=- {} b\n", b.image.display()),
        "cryptsetup ran for something else than the open"
    );
}

/// Without sysfs (not mounted: a chroot, a container), `cryptsetup status` answers, for
/// unlock and for close, as before.
#[test]
fn without_sysfs_cryptsetup_status_says_what_is_open() {
    let sb = Sandbox::new("no-sysfs");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let without_sysfs = |args: &[&str]| {
        let mut cmd = sb.command(&config, args);
        cmd.env("VAULT_LUKS_SYSFS", sb.dir.join("not-mounted"));
        sb.run_command(cmd)
    };
    sb.mark_open("luks", &vol.image);
    without_sysfs(&["unlock"])
        .assert_code(0)
        .assert_stderr("luks: already open as /dev/mapper/luks, nothing to do");
    without_sysfs(&["close", "luks"])
        .assert_code(0)
        .assert_stderr("luks: closed");
    assert!(!sb.is_open("luks"));
    let argv = sb.wrapper_log("argv.log");
    assert_eq!(argv.matches("status luks").count(), 2, "{argv}");
}

#[test]
fn volumes_sharing_a_key_are_decrypted_in_one_batch() {
    let sb = Sandbox::new("batch");
    let a = sb.article_volume("a", "luks", FAST_ARGON2);
    let b = sb.article_volume("b", "luks", FAST_ARGON2);
    let c = sb.article_volume("c", "other", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(
        &standin,
        &[("a", &a, "luks"), ("b", &b, "luks"), ("c", &c, "other")],
    ));
    sb.run(&config, &["unlock"])
        .assert_code(0)
        .assert_stderr("transit decrypt: 2 ciphertext(s) with key luks");
    assert!(sb.is_open("a") && sb.is_open("b") && sb.is_open("c"));
    assert_eq!(
        standin.requests("/v1/transit/decrypt/luks"),
        1,
        "one batch request for the shared key"
    );
    assert_eq!(standin.requests("/v1/transit/decrypt/other"), 1);
    assert_eq!(
        standin.requests("/v1/auth/exoscale/login"),
        1,
        "one login for all volumes"
    );
}

/// Vault's keys for several volumes are opened a few at a time (never more than four
/// cryptsetup at once, each told to derive memory-hard keyslots one at a time across them),
/// and the volumes whose key is refused are reported in the configuration's order, whichever
/// open finished first.
#[test]
fn several_volumes_open_a_few_at_a_time_and_failures_keep_their_order() {
    let sb = Sandbox::new("concurrent");
    let vols: Vec<Volume> = (0..6)
        .map(|i| sb.article_volume(&format!("v{i}"), "luks", FAST_ARGON2))
        .collect();
    let names: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
    let standin = Standin::start(&[]);
    let entries: Vec<(&str, &Volume, &str)> = names
        .iter()
        .zip(&vols)
        .map(|(n, v)| (n.as_str(), v, "luks"))
        .collect();
    let mut cfg = config_for(&standin, &entries);
    // v1 and v4 get each other's key; v1's open is slow, so v4's refusal comes first.
    cfg["volumes"][1]["ciphertext_file"] = json!(vols[4].ciphertext_file);
    cfg["volumes"][4]["ciphertext_file"] = json!(vols[1].ciphertext_file);
    std::fs::write(sb.state.join("slow-open-v1"), "1").unwrap();
    let config = sb.write_config(&cfg);
    let run = sb.run(&config, &["unlock"]);
    run.assert_code(1)
        .assert_stderr("2 of 6 volumes stayed locked: v1, v4");
    let v1 = run.stderr.find("error: v1: ").expect("v1's failure");
    let v4 = run.stderr.find("error: v4: ").expect("v4's failure");
    assert!(v1 < v4, "failures out of order:\n{}", run.stderr);
    for ok in ["v0", "v2", "v3", "v5"] {
        assert!(sb.is_open(ok), "{ok} stayed locked:\n{}", run.stderr);
    }
    let argv = sb.wrapper_log("argv.log");
    assert_eq!(
        argv.matches(" --serialize-memory-hard-pbkdf ").count(),
        argv.lines().count(),
        "{argv}"
    );
    // How many cryptsetup ran at once, from the wrapper's call intervals.
    let calls: Vec<(f64, f64)> = sb
        .wrapper_log("calls.log")
        .lines()
        .map(|l| {
            let t: Vec<f64> = l.split(' ').skip(1).map(|x| x.parse().unwrap()).collect();
            (t[0], t[1])
        })
        .collect();
    let most = calls
        .iter()
        .map(|&(start, _)| {
            calls
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert!((2..=4).contains(&most), "{most} cryptsetup at once");
}

/// Volumes `a` and `b` (transit key luks), a stand-in, and a config for both.
fn volumes_a_and_b(name: &str) -> (Sandbox, Standin, std::path::PathBuf, [Volume; 2]) {
    let sb = Sandbox::new(name);
    let a = sb.article_volume("a", "luks", FAST_ARGON2);
    let b = sb.article_volume("b", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(
        &standin,
        &[("a", &a, "luks"), ("b", &b, "luks")],
    ));
    (sb, standin, config, [a, b])
}

#[test]
fn named_volumes_only() {
    let (sb, _standin, config, _) = volumes_a_and_b("named");
    sb.run(&config, &["unlock", "b"]).assert_code(0);
    assert!(sb.is_open("b") && !sb.is_open("a"));
    sb.run(&config, &["unlock", "nope"])
        .assert_code(2)
        .assert_stderr("no volume named `nope`");
}

#[test]
fn one_bad_volume_does_not_stop_the_others() {
    let sb = Sandbox::new("partial");
    let good = sb.article_volume("good", "luks", FAST_ARGON2);
    let bad = sb.article_volume("bad", "luks", FAST_ARGON2);
    std::fs::write(
        &bad.ciphertext_file,
        "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
    )
    .unwrap();
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(
        &standin,
        &[("good", &good, "luks"), ("bad", &bad, "luks")],
    ));
    sb.run(&config, &["unlock"])
        .assert_code(1)
        .assert_stderr("bad: transit decrypt failed: Vault: cipher: message authentication failed")
        .assert_stderr("1 of 2 volumes stayed locked: bad");
    assert!(sb.is_open("good"));
    assert!(!sb.is_open("bad"));
}

#[test]
fn approle_mode_login() {
    let sb = Sandbox::new("approle-mode");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&["--approle-mode"]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["auth"]["approle_mode"] = json!(true);
    sb.run(&sb.write_config(&cfg), &["unlock"]).assert_code(0);
    assert!(sb.is_open("luks"));
    // The same config without approle_mode sends `role`, which this plugin mode refuses.
    let sb2 = Sandbox::new("approle-mode-mismatch");
    cfg["auth"]["approle_mode"] = json!(false);
    sb2.run(&sb2.write_config(&cfg), &["unlock"])
        .assert_code(1)
        .assert_stderr("HTTP 400: missing field: role_id");
}

#[test]
fn a_token_from_the_environment_is_used_and_not_revoked() {
    let sb = Sandbox::new("env-token");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let token = bao().token("transit-luks");
    assert_eq!(
        token_like(&token).as_deref(),
        Some(token.as_str()),
        "the leak check recognises real tokens"
    );
    let mut cmd = sb.command(&config, &["unlock"]);
    cmd.env("VAULT_TOKEN", &token);
    let run = sb.run_command(cmd);
    run.assert_code(0);
    assert!(sb.is_open("luks"));
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 0);
    assert_eq!(
        standin.requests("/v1/auth/token/revoke-self"),
        0,
        "a token handed over is not ours to revoke"
    );
    assert_eq!(standin.requests("/v1/auth/token/create"), 0);
    assert!(
        !sb.wrapper_log("env.log").contains(&token),
        "VAULT_TOKEN is not passed to cryptsetup"
    );
    assert!(!run.stderr.contains(&token));
}

#[test]
fn a_token_file_works() {
    let sb = Sandbox::new("token-file");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let token_file = sb.write("token", &format!("{}\n", bao().token("transit-luks")));
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["auth"] = json!({"method": "token", "token_file": token_file});
    sb.run(&sb.write_config(&cfg), &["unlock"]).assert_code(0);
    assert!(sb.is_open("luks"));
}

#[test]
fn a_derived_key_with_context() {
    let sb = Sandbox::new("derived");
    let image = sb.dir.join("d.img");
    let key = "ZGVyaXZlZC1rZXktZm9yLXRlc3RzLTI0Ynl0ZQ==";
    let context = "dm9sdW1lLTE="; // "volume-1"
    let ciphertext_file = sb.write(
        "d.passphrase",
        &bao().encrypt("derived", key, Some(context)),
    );
    luks_format(&image, key.as_bytes());
    let standin = Standin::start(&[]);
    let vol = Volume {
        image,
        ciphertext_file,
    };
    let mut cfg = config_for(&standin, &[("d", &vol, "derived")]);
    cfg["volumes"][0]["transit"]["context"] = json!(context);
    sb.run(&sb.write_config(&cfg), &["unlock"]).assert_code(0);
    assert!(sb.is_open("d"));
}

#[test]
fn raw_key_format_feeds_the_decoded_bytes() {
    let sb = Sandbox::new("raw");
    let image = sb.dir.join("r.img");
    // 24 bytes, some not printable: the key is the decoded plaintext, not its base64 text.
    let raw: Vec<u8> = (0u8..24)
        .map(|i| i.wrapping_mul(37).wrapping_add(200))
        .collect();
    let b64 = base64_encode(&raw);
    let ciphertext_file = sb.write("r.passphrase", &bao().encrypt("luks", &b64, None));
    luks_format(&image, &raw);
    let standin = Standin::start(&[]);
    let vol = Volume {
        image,
        ciphertext_file,
    };
    let mut cfg = config_for(&standin, &[("r", &vol, "luks")]);
    sb.run(&sb.write_config(&cfg), &["unlock"])
        .assert_code(1)
        .assert_stderr("no keyslot accepts it");
    cfg["volumes"][0]["key_format"] = json!("raw");
    sb.run(&sb.write_config(&cfg), &["unlock"]).assert_code(0);
    assert!(sb.is_open("r"));
}

#[test]
fn ha_moves_on_to_the_next_address() {
    let sb = Sandbox::new("ha");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    cfg["vault"] = json!({"addresses": [dead, standin.vault_url()], "allow_http": true});
    sb.run(&sb.write_config(&cfg), &["unlock"])
        .assert_code(0)
        .assert_stderr("attempt 1 failed")
        .assert_within(Duration::from_secs(10));
    assert!(sb.is_open("luks"));
}

#[test]
fn transient_errors_are_retried() {
    let sb = Sandbox::new("transient");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&["--fault", "transient-503=2", "--fault", "login-429"]);
    let cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    let config = sb.write_config(&cfg);
    // Clear the 429 after the first retries have been seen.
    let handle = {
        let url = standin.vault_url();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2500));
            std::process::Command::new("curl")
                .args([
                    "-sf",
                    "-X",
                    "POST",
                    "-d",
                    r#"{"clear":["login-429"]}"#,
                    &format!("{url}/_standin/faults"),
                ])
                .output()
                .unwrap();
        })
    };
    let run = sb.run(&config, &["unlock"]);
    handle.join().unwrap();
    run.assert_code(0)
        .assert_stderr("HTTP 503: Vault is sealed; retrying in");
    assert!(sb.is_open("luks"));
    // The stand-in's 429 says Retry-After: 1; that is the least the retry waits (our own
    // backoff by then, 1-2 s, may be longer).
    let throttled = "rate limit quota exceeded; retrying in ";
    let waits: Vec<f64> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once(throttled))
        .map(|(_, rest)| rest.split('s').next().unwrap().parse().unwrap())
        .collect();
    assert!(!waits.is_empty(), "no 429 retry:\n{}", run.stderr);
    assert!(
        waits.iter().all(|&w| w >= 1.0),
        "Retry-After: 1 cut short: {waits:?}"
    );
}

#[test]
fn kernel_command_line_can_disable_and_override() {
    let sb = Sandbox::new("cmdline");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["vault"]["address"] = json!(format!("http://127.0.0.1:{}", free_port()));
    let config = sb.write_config(&cfg);

    sb.set_cmdline("root=/dev/vda rd.vault-luks=0");
    sb.run(&config, &["unlock"])
        .assert_code(0)
        .assert_stderr("disabled by rd.vault-luks=0");
    assert!(!sb.is_open("luks"));

    sb.set_cmdline(&format!(
        "root=/dev/vda rd.vault-luks.address={} rd.vault-luks.debug",
        standin.vault_url()
    ));
    sb.run(&config, &["unlock"])
        .assert_code(0)
        .assert_stderr("debug: vault: addresses");
    assert!(sb.is_open("luks"));

    let cmd = sb.command(&config, &["--no-cmdline", "unlock", "--timeout", "2"]);
    sb.run(&config, &["close"]).assert_code(0);
    sb.run_command(cmd)
        .assert_code(1)
        .assert_stderr("cannot connect");
}

fn luks_format(image: &std::path::Path, key: &[u8]) {
    use std::io::Write;
    std::fs::write(image, vec![0u8; 0]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.set_len(32 << 20).unwrap();
    let mut child = std::process::Command::new("cryptsetup")
        .args(["luksFormat", "--batch-mode", "--type", "luks2"])
        .args(FAST_ARGON2)
        .arg(image)
        .arg("--key-file=-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(key).unwrap();
    assert!(child.wait().unwrap().success());
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_namespace_is_sent_with_every_request() {
    let sb = Sandbox::new("namespace");
    let bao = bao();
    let ns_cli = |args: &[&str]| {
        let mut c = bao.cli(args);
        c.env("BAO_NAMESPACE", "team-a");
        c
    };
    assert!(bao
        .cli(&["namespace", "create", "team-a"])
        .status()
        .unwrap()
        .success());
    assert!(ns_cli(&["secrets", "enable", "transit"])
        .status()
        .unwrap()
        .success());
    assert!(ns_cli(&["write", "-f", "transit/keys/luks"])
        .status()
        .unwrap()
        .success());
    let key = "bmFtZXNwYWNlZC1rZXktMjQtYnl0ZXMtbG9uZw==";
    let out = ns_cli(&[
        "write",
        "-field=ciphertext",
        "transit/encrypt/luks",
        &format!("plaintext={key}"),
    ])
    .stdout(std::process::Stdio::piped())
    .output()
    .unwrap();
    let ciphertext_file = sb.write("ns.passphrase", &String::from_utf8(out.stdout).unwrap());
    let image = sb.dir.join("ns.img");
    luks_format(&image, key.as_bytes());
    let vol = Volume {
        image,
        ciphertext_file,
    };
    let standin = Standin::start(&[]);
    let mut cfg = config_for(&standin, &[("ns", &vol, "luks")]);
    cfg["auth"] = json!({"method": "token"});
    let config = sb.write_config(&cfg);
    let run_with_root = |config: &std::path::Path| {
        let mut cmd = sb.command(config, &["unlock"]);
        cmd.env("VAULT_TOKEN", ROOT_TOKEN);
        sb.run_command(cmd)
    };
    // Without the namespace the key is not found (the root namespace has its own `luks` key).
    run_with_root(&config)
        .assert_code(1)
        .assert_stderr("transit decrypt failed");
    cfg["vault"]["namespace"] = json!("team-a");
    run_with_root(&sb.write_config(&cfg)).assert_code(0);
    assert!(sb.is_open("ns"));
}

/// `unlock --late` (vault-luks-late.service in the real root) with the initramfs's record of
/// vault-luks's exit status (`None`: vault-luks did not run there).
fn late(sb: &Sandbox, config: &std::path::Path, initramfs_exit: Option<&str>) -> Run {
    let record = sb.dir.join("initramfs-exit");
    let _ = std::fs::remove_file(&record);
    if let Some(code) = initramfs_exit {
        std::fs::write(&record, format!("{code}\n")).unwrap();
    }
    let mut cmd = sb.command(config, &["unlock", "--late"]);
    cmd.env("VAULT_LUKS_INITRAMFS_EXIT", &record);
    sb.run_command(cmd)
}

#[test]
fn late_unlocks_what_the_initramfs_never_tried_and_says_why() {
    let sb = Sandbox::new("late");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));

    // An image without vault-luks (or no initramfs): no record.
    late(&sb, &config, None)
        .assert_code(0)
        .assert_stderr("luks: not open, and vault-luks did not run in the initramfs")
        .assert_stderr("`vault-luks check --image` names what is missing")
        .assert_stderr("luks: unlocked as /dev/mapper/luks");
    assert!(sb.is_open("luks"));
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 1);

    // Opened by the initramfs: nothing to do, no second login.
    late(&sb, &config, Some("0"))
        .assert_code(0)
        .assert_stderr("all volumes are open (the initramfs opened them): nothing to do")
        .refute_stderr("vault login");
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 1);

    // vault-luks stopped in the initramfs before it could ask anyone (here: killed by SIGABRT).
    sb.mark_closed("luks");
    late(&sb, &config, Some("134"))
        .assert_code(0)
        .assert_stderr("luks: not open: vault-luks ended with status 134 in the initramfs before it could ask anyone")
        .assert_stderr("luks: unlocked as /dev/mapper/luks");
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 2);
}

#[test]
fn late_does_not_repeat_an_initramfs_attempt_that_ran_to_its_end() {
    let sb = Sandbox::new("late-tried");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    late(&sb, &config, Some("1"))
        .assert_code(1)
        .assert_stderr("luks stayed locked in the initramfs: Vault and the passphrase prompt both failed there")
        .assert_stderr("run `vault-luks unlock`")
        .assert_within(Duration::from_secs(5));
    assert!(!sb.is_open("luks"));
    assert_eq!(standin.requests("/v1/auth/exoscale/login"), 0);
}
