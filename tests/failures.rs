//! Every failure the issue lists: exit code, the message an operator reads, and a bound on the
//! time it takes. Nothing is ever written to the device.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A volume, a stand-in with `faults`, and a config with a short deadline; returns the run.
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
        let mut args = Vec::new();
        for f in faults {
            args.push("--fault");
            args.push(f);
        }
        let standin = Standin::start(&args);
        let mut config = config_for(&standin, &[("luks", &vol, "luks")]);
        config["timeouts"] = json!({"unlock": 4, "request": 2, "device": 1, "cryptsetup": 60});
        Case {
            sb,
            vol,
            standin,
            config,
        }
    }

    fn run(&self) -> Run {
        let before = sha256(&self.vol.image);
        let run = self
            .sb
            .run(&self.sb.write_config(&self.config), &["unlock"]);
        assert_eq!(sha256(&self.vol.image), before, "the device was written to");
        assert!(!self.sb.is_open("luks"));
        run
    }
}

const BOUND: Duration = Duration::from_secs(9);

#[test]
fn metadata_server_down() {
    let case = Case::new("metadata-down", &["metadata-down"]);
    case.run()
        .assert_code(1)
        .assert_stderr("luks: metadata failed: GET http://127.0.0.1:")
        .assert_stderr("instance-id: cannot connect")
        .assert_stderr("gave up after")
        .assert_stderr("Private-network instances have no metadata server")
        .assert_within(BOUND);
    assert_eq!(case.standin.requests("/v1/auth/exoscale/login"), 0);
}

#[test]
fn metadata_404_is_final_at_once() {
    let case = Case::new("metadata-404", &["metadata-404"]);
    case.run()
        .assert_code(1)
        .assert_stderr("instance-id: HTTP 404 --")
        .assert_stderr("check metadata.url")
        .assert_within(Duration::from_secs(2));
}

#[test]
fn metadata_server_too_slow() {
    let case = Case::new("metadata-slow", &["metadata-slow=30"]);
    case.run()
        .assert_code(1)
        .assert_stderr("metadata instance-id: attempt 1 failed: no answer within 2.0s")
        .assert_within(BOUND);
}

/// A server that answers something that is not HTTP and hangs up (a proxy or a restarting
/// server in the way): retried like a refused connection, as Vault's own client does.
#[test]
fn a_server_answering_garbage_is_retried() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(b"SSH-2.0-not-vault\r\n\r\n");
        }
    });
    let mut case = Case::new("vault-hangs-up", &[]);
    case.config["vault"]["address"] = json!(format!("http://127.0.0.1:{port}"));
    case.run()
        .assert_code(1)
        .assert_stderr("vault login: attempt 1 failed")
        .assert_stderr("no HTTP answer")
        .assert_stderr("attempt 3 failed")
        .assert_within(BOUND);
}

#[test]
fn vault_down() {
    let mut case = Case::new("vault-down", &[]);
    case.config["vault"]["address"] = json!(format!("http://127.0.0.1:{}", free_port()));
    case.run()
        .assert_code(1)
        .assert_stderr("luks: vault login failed: http://127.0.0.1:")
        .assert_stderr("cannot connect")
        .assert_stderr("check vault.address, that Vault is running")
        .assert_within(BOUND);
}

#[test]
fn vault_sealed() {
    let case = Case::new("sealed", &["sealed"]);
    case.run()
        .assert_code(1)
        .assert_stderr("answered HTTP 503: Vault is sealed")
        .assert_stderr("retrying in")
        .assert_stderr("Vault is sealed: unseal it")
        .assert_within(BOUND);
}

#[test]
fn login_refused_for_an_unknown_instance() {
    // Real plugin path: the instance is not one "the Exoscale API" knows.
    let case = Case::new("login-403", &[]);
    let standin = Standin::start(&["--instance", "00000000-0000-0000-0000-000000000000"]);
    let mut config = case.config.clone();
    config["vault"]["address"] = json!(standin.vault_url());
    let run = case.sb.run(&case.sb.write_config(&config), &["unlock"]);
    run.assert_code(1)
        .assert_stderr("vault login failed:")
        .assert_stderr("answered HTTP 403: permission denied")
        .assert_stderr("Vault refused this instance")
        .assert_stderr("public IPv4")
        .assert_within(Duration::from_secs(3));
    assert_eq!(
        standin.requests("/v1/auth/exoscale/login"),
        1,
        "403 is final: no retry"
    );
}

#[test]
fn login_with_an_unknown_role() {
    let mut case = Case::new("unknown-role", &[]);
    case.config["auth"]["role"] = json!("nope");
    case.run()
        .assert_code(1)
        .assert_stderr("answered HTTP 400: role \"nope\" not found")
        .assert_stderr("check auth.role (`nope`)")
        .assert_within(Duration::from_secs(3));
}

#[test]
fn decrypt_refused_by_policy() {
    let mut case = Case::new("decrypt-403", &[]);
    case.config["auth"]["role"] = json!("encrypt-only");
    case.run()
        .assert_code(1)
        .assert_stderr("luks: transit decrypt failed:")
        .assert_stderr("HTTP 403")
        .assert_stderr("permission denied")
        .assert_stderr("do not allow update on transit/decrypt/luks")
        .assert_within(Duration::from_secs(3));
    assert_eq!(
        case.standin.requests("/v1/transit/decrypt/luks"),
        1,
        "403 is final: no retry"
    );
    assert_eq!(
        case.standin.requests("/v1/auth/token/revoke-self"),
        1,
        "the token is revoked on failure too"
    );
    // The token was well within its lease (the stand-in's 60 s): no second login.
    assert_eq!(case.standin.state()["logins"], 1);
}

/// A login token whose lease runs out while the decrypt is still being retried (a throttled
/// Vault, here the stand-in's 429s, 0.25+0.5+1+2 s of backoff at least, past a 2 s TTL):
/// OpenBao answers the late decrypt 403, vault-luks logs in once more and gets the key.
#[test]
fn a_token_expired_while_retrying_is_replaced_by_a_new_login() {
    let sb = Sandbox::new("token-expired");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&["--token-ttl", "2s", "--fault", "transit-429=4"]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["timeouts"] = json!({"unlock": 30, "request": 2, "device": 1, "cryptsetup": 60});
    let run = sb.run(&sb.write_config(&cfg), &["unlock"]);
    run.assert_code(0)
        .assert_stderr("lease 2s, shorter than the ")
        .assert_stderr("rate limit quota exceeded; retrying in")
        .assert_stderr("vault login: the token expired after ")
        .assert_stderr("while retrying; logging in again")
        .assert_within(Duration::from_secs(20));
    assert!(sb.is_open("luks"));
    let state = standin.state();
    assert_eq!(state["logins"], 2, "one login more for one expiry");
    assert_eq!(state["tokens_minted"], 2);
    // Four 429s, the expired token's 403, the new token's 200.
    assert_eq!(standin.requests("/v1/transit/decrypt/luks"), 6);
    // Only the new token is revoked: the expired one Vault revoked itself at its TTL.
    assert_eq!(standin.requests("/v1/auth/token/revoke-self"), 1);
}

/// The same expiry, but the second login is refused: the message says the token expired,
/// not that the policy lacks the path.
#[test]
fn a_token_expired_and_a_refused_login_says_the_token_expired() {
    let sb = Sandbox::new("token-expired-relogin-403");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&["--token-ttl", "2s", "--fault", "transit-429=4"]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["timeouts"] = json!({"unlock": 30, "request": 2, "device": 1, "cryptsetup": 60});
    let child = {
        let mut cmd = sb.command(&sb.write_config(&cfg), &["unlock"]);
        cmd.stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    // The first login is through; its decrypt waits at least 3.75 s behind the 429s.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while standin.state()["tokens_minted"] != 1 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    standin.set_faults(r#"{"set":["login-403"]}"#);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "logging in again",
        "vault login failed",
        "transit decrypt failed",
        "HTTP 403: permission denied -- the token expired after ",
        "make the role's token_ttl at least timeouts.unlock",
    ] {
        assert!(stderr.contains(needle), "no `{needle}` in:\n{stderr}");
    }
    assert_eq!(standin.state()["logins"], 2, "one login more, no loop");
    assert!(!sb.is_open("luks"));
}

/// A token handed over cannot be replaced by a login: its 403 says it may have expired.
#[test]
fn an_expired_token_handed_over_says_so() {
    let case = Case::new("token-file-expired", &[]);
    let token = bao().run(&[
        "token",
        "create",
        "-field=token",
        "-policy=transit-luks",
        "-ttl=1s",
    ]);
    let token_file = case.sb.write("token", &token);
    let mut config = case.config.clone();
    config["auth"] = json!({"method": "token", "token_file": token_file});
    std::thread::sleep(Duration::from_millis(1500));
    let run = case.sb.run(&case.sb.write_config(&config), &["unlock"]);
    run.assert_code(1)
        .assert_stderr("HTTP 403")
        .assert_stderr("or the token handed over has expired or was revoked")
        .refute_stderr("logging in again")
        .assert_within(Duration::from_secs(3));
    assert!(!case.sb.is_open("luks"));
}

#[test]
fn invalid_ciphertext() {
    let case = Case::new("bad-ciphertext", &[]);
    std::fs::write(
        &case.vol.ciphertext_file,
        "vault:v1:bm90IGEgY2lwaGVydGV4dA==\n",
    )
    .unwrap();
    case.run()
        .assert_code(1)
        .assert_stderr("luks: transit decrypt failed:")
        .assert_stderr("answered HTTP 400")
        .assert_stderr("could not decrypt the ciphertext with transit key `luks`")
        .assert_within(Duration::from_secs(3));
}

#[test]
fn not_a_ciphertext_at_all() {
    let case = Case::new("garbage-file", &[]);
    std::fs::write(&case.vol.ciphertext_file, "hello\n").unwrap();
    case.run()
        .assert_code(1)
        .assert_stderr("does not hold a Vault transit ciphertext (vault:vN:...)");
    assert_eq!(
        case.standin.requests("/v1/auth/exoscale/login"),
        0,
        "nothing to decrypt: no login"
    );
}

#[test]
fn a_key_the_header_rejects() {
    // The ciphertext of another volume: Vault decrypts it, the LUKS header refuses the key.
    let case = Case::new("wrong-key", &[]);
    let other = case.sb.article_volume("other", "luks", FAST_ARGON2);
    std::fs::copy(&other.ciphertext_file, &case.vol.ciphertext_file).unwrap();
    case.run()
        .assert_code(1)
        .assert_stderr("luks: cryptsetup failed: Vault's key does not open")
        .assert_stderr("unlock with the backup passphrase")
        .assert_within(BOUND);
}

#[test]
fn cryptsetup_crashing_is_told_apart_from_a_volume_problem() {
    // What a cryptsetup whose initramfs lacks libgcc_s.so.1 does (Debian bug #1032221): glibc
    // prints why and aborts. The operator must read that cryptsetup could not run, not that the
    // device may not be a LUKS volume.
    let case = Case::new("cryptsetup-crash", &[]);
    std::fs::write(case.sb.state.join("crash-open"), "").unwrap();
    case.run()
        .assert_code(1)
        .assert_stderr("luks: cryptsetup failed: cryptsetup crashed opening")
        .assert_stderr(
            "libgcc_s.so.1 must be installed for pthread_exit to work (killed by signal 6)",
        )
        .assert_stderr("the initramfs lacks a file it loads at run time")
        .refute_stderr("check the device is a LUKS volume")
        .assert_within(BOUND);
}

#[test]
fn a_server_that_never_answers_cannot_hold_the_deadline() {
    let case = Case::new("vault-hang", &["vault-hang"]);
    case.run()
        .assert_code(1)
        .assert_stderr("no answer within")
        .assert_stderr("deadline reached")
        .assert_within(BOUND);
}

#[test]
fn metadata_that_never_answers() {
    let case = Case::new("metadata-hang", &["metadata-hang"]);
    case.run()
        .assert_code(1)
        .assert_stderr("metadata failed")
        .assert_stderr("no answer within")
        .assert_within(BOUND);
}

#[test]
fn an_oversized_response_is_refused() {
    let case = Case::new("oversize", &["vault-oversize"]);
    case.run()
        .assert_code(1)
        .assert_stderr("response larger than 1048576 bytes, refused")
        .assert_stderr("is vault.address really Vault?")
        .assert_within(Duration::from_secs(5));
}

#[test]
fn login_server_error_is_retried_then_reported() {
    let case = Case::new("login-500", &["login-500"]);
    case.run()
        .assert_code(1)
        .assert_stderr("answered HTTP 500: internal error")
        .assert_stderr("retrying in")
        .assert_within(BOUND);
    assert!(
        case.standin.requests("/v1/auth/exoscale/login") >= 2,
        "500 is retried"
    );
}

#[test]
fn a_missing_device_is_waited_for_then_reported() {
    let mut case = Case::new("missing-device", &[]);
    case.config["volumes"][0]["device"] = json!("/dev/mapper/vg.flex-lv.nothere");
    let run = case.run();
    run.assert_code(1)
        .assert_stderr("waiting up to 1s for /dev/mapper/vg.flex-lv.nothere")
        .assert_stderr(
            "luks: device failed: /dev/mapper/vg.flex-lv.nothere does not exist (waited 1s)",
        )
        .assert_stderr("vgchange -ay")
        .assert_within(Duration::from_secs(4));
    assert!(run.elapsed >= Duration::from_secs(1), "it waited");
    assert_eq!(case.standin.requests("/v1/auth/exoscale/login"), 0);
}

#[test]
fn a_bad_config_exits_2_naming_file_and_field() {
    let sb = Sandbox::new("bad-config");
    let config = sb.write(
        "config.json",
        r#"{"vault": {"adress": "https://v:8200"}, "auth": {"role": "r"}, "volumes": []}"#,
    );
    let run = sb.run(&config, &["unlock"]);
    run.assert_code(2)
        .assert_stderr(&format!(
            "invalid configuration in {}: vault.adress: unknown key",
            config.display()
        ))
        .assert_stderr("did you mean `address`?");
    sb.run(&sb.dir.join("missing.json"), &["unlock"])
        .assert_code(2)
        .assert_stderr("missing.json: cannot read the file");
    let plain = sb.write("plain.json", r#"{"vault": {"address": "http://v:8200"}, "auth": {"role": "r"}, "volumes": [{"name":"a","device":"/d","ciphertext_file":"/c","transit":{"key":"k"}}]}"#);
    sb.run(&plain, &["unlock"])
        .assert_code(2)
        .assert_stderr("vault.address: http://v:8200 is plain http");
}
