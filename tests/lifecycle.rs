//! enroll, rewrap and rotate on LUKS2 image files with the real cryptsetup and OpenBao; each
//! refusal with its message; rotate killed between every pair of steps still leaves a volume
//! Vault opens.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A config with no volumes yet, pointing at a stand-in, and an empty 32 MiB image.
fn fresh(name: &str, standin: &Standin) -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new(name);
    let mut cfg = config_for(standin, &[]);
    cfg.as_object_mut().unwrap().remove("volumes");
    let config = sb.write_config(&cfg);
    let image = sb.dir.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    (sb, config, image)
}

fn enroll(sb: &Sandbox, config: &Path, image: &Path, extra: &[&str]) -> Run {
    let ct = sb.dir.join("data.passphrase");
    let mut args = vec![
        "enroll",
        "data",
        "--device",
        image.to_str().unwrap(),
        "--ciphertext-file",
        ct.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sb.run(config, &args)
}

fn dump(image: &Path) -> Value {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn opens(image: &Path, key: &str) -> bool {
    let mut child = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-"])
        .arg(image)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

fn ciphertext(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.dir.join("data.passphrase"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn enroll_format_makes_a_volume_vault_opens() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("enroll-format", &standin);
    enroll(&sb, &config, &image, &["--format"])
        .assert_code(0)
        .assert_stderr("data: keyslot 0 opens with Vault's key")
        .assert_stderr("Vault's key is the only keyslot");
    let ct = sb.dir.join("data.passphrase");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ct).unwrap().permissions())
            & 0o777,
        0o600
    );
    let key = bao().decrypt("luks", &ciphertext(&sb));
    assert_eq!(key.len(), 32, "the article's key format");
    assert!(opens(&image, &key));
    let d = dump(&image);
    assert_eq!(
        d["keyslots"]["0"]["kdf"]["type"], "pbkdf2",
        "a high-entropy key needs no argon2id"
    );
    let token = &d["tokens"]["0"];
    assert_eq!(token["type"], "vault-luks");
    assert_eq!(token["keyslots"], json!(["0"]));
    assert_eq!(token["ciphertext"], ciphertext(&sb));
    assert_eq!(token["transit_key"], "luks");
    assert_eq!(token["auth_role"], "storage");
    // The config now has the volume, and unlock opens it.
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(cfg["volumes"][0]["name"], "data");
    assert_eq!(
        cfg["vault"]["allow_http"], true,
        "the rest of the config is kept"
    );
    sb.run(&config, &["unlock", "data"]).assert_code(0);
    assert!(sb.is_open("data"));
}

#[test]
fn enroll_format_refuses_a_luks_header_or_a_file_system() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("enroll-refuse", &standin);
    let luks = sb.article_volume("old", "luks", FAST_ARGON2);
    let before = sha256(&luks.image);
    enroll(&sb, &config, &luks.image, &["--format"])
        .assert_code(1)
        .assert_stderr("already holds a LUKS header; refusing to format it");
    assert_eq!(sha256(&luks.image), before);
    assert!(Command::new("mke2fs")
        .args(["-q", "-t", "ext4"])
        .arg(&image)
        .status()
        .unwrap()
        .success());
    let before = sha256(&image);
    enroll(&sb, &config, &image, &["--format"])
        .assert_code(1)
        .assert_stderr("holds a ext4 signature; refusing to format it");
    assert_eq!(sha256(&image), before);
    enroll(&sb, &config, &image, &[])
        .assert_code(1)
        .assert_stderr("is not a LUKS volume")
        .assert_stderr("add --format");
    enroll(&sb, &config, &image, &["--format", "--force"]).assert_code(0);
}

#[test]
fn enroll_adds_a_keyslot_beside_the_articles_passphrase() {
    let standin = Standin::start(&[]);
    let (sb, config, _) = fresh("enroll-add", &standin);
    let vol = sb.article_volume("article", "luks", FAST_ARGON2);
    let backup = vol.key("luks");
    let wrong = sb.write("wrong", "not the passphrase");
    let before = sha256(&vol.image);
    enroll(
        &sb,
        &config,
        &vol.image,
        &["--key-file", wrong.to_str().unwrap()],
    )
    .assert_code(1)
    .assert_stderr("the existing passphrase does not open");
    assert_eq!(
        sha256(&vol.image),
        before,
        "a refused enroll writes nothing to the device"
    );
    let right = sb.write("right", &backup);
    enroll(
        &sb,
        &config,
        &vol.image,
        &["--key-file", right.to_str().unwrap(), "--force"],
    )
    .assert_code(0)
    .assert_stderr("keyslot 1 opens");
    let d = dump(&vol.image);
    assert_eq!(
        d["keyslots"]["0"]["kdf"]["type"], "argon2id",
        "the article's keyslot is untouched"
    );
    assert_eq!(d["keyslots"]["1"]["kdf"]["type"], "pbkdf2");
    assert!(opens(&vol.image, &backup), "the old passphrase still works");
    assert!(opens(&vol.image, &bao().decrypt("luks", &ciphertext(&sb))));
    sb.run(&config, &["unlock", "data"]).assert_code(0);
}

/// `cryptsetup open --test-passphrase` of `image` with `key`: (seconds, peak RSS in KiB),
/// measured by GNU time.
fn open_cost(image: &Path, key: &str, extra: &[&str]) -> (f64, u64) {
    let mut child = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%e %M",
            "cryptsetup",
            "open",
            "--test-passphrase",
            "--key-file=-",
        ])
        .args(extra)
        .arg(image)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the key does not open {}",
        image.display()
    );
    parse_cost(String::from_utf8_lossy(&out.stderr).lines().last().unwrap())
}

/// "SECONDS PEAK_RSS_KB", as GNU time's `-f '%e %M'` writes it.
fn parse_cost(line: &str) -> (f64, u64) {
    let mut f = line.split_whitespace();
    let secs = f.next().and_then(|s| s.parse().ok());
    let rss = f.next().and_then(|s| s.parse().ok());
    (secs.unwrap(), rss.unwrap())
}

/// The volume the README's way: the article's argon2id passphrase in keyslot 0 (256 MiB to
/// derive), Vault's key enrolled beside it in a PBKDF2 keyslot. The unlock tries that keyslot
/// alone: no argon2id derivation, measured against the same key with every keyslot tried.
#[test]
fn vault_key_is_tried_in_its_keyslot_alone() {
    let standin = Standin::start(&[]);
    let (sb, config, _) = fresh("keyslot-alone", &standin);
    let argon2_256m = [
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "262144",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-parallel",
        "1",
    ];
    let vol = sb.article_volume("article", "luks", &argon2_256m);
    let backup = vol.key("luks");
    let backup_file = sb.write("backup", &backup);
    enroll(
        &sb,
        &config,
        &vol.image,
        &["--key-file", backup_file.to_str().unwrap(), "--force"],
    )
    .assert_code(0)
    .assert_stderr("keyslot 1 opens");

    sb.run(&config, &["unlock", "data"])
        .assert_code(0)
        .assert_stderr("data: cryptsetup open")
        .assert_stderr("(keyslot 1)");
    assert!(sb.is_open("data"));
    assert!(
        sb.wrapper_log("argv.log")
            .contains("open --key-file=- --key-slot=1 "),
        "the token's keyslot was not passed to cryptsetup"
    );
    let opens = sb.wrapper_log("open-cost.log");
    let (fast_secs, fast_rss) = parse_cost(opens.lines().last().unwrap());

    // The control, in the same run: the same key, every keyslot tried in order.
    let key = bao().decrypt("luks", &ciphertext(&sb));
    let (slow_secs, slow_rss) = open_cost(&vol.image, &key, &[]);
    assert!(
        slow_rss > 200 * 1024,
        "the control did not derive the argon2id keyslot ({slow_rss} KiB)"
    );
    assert!(
        fast_rss < 64 * 1024,
        "vault-luks's open derived more than its PBKDF2 keyslot: {fast_rss} KiB (all keyslots: {slow_rss} KiB)"
    );
    assert!(
        fast_secs * 3.0 < slow_secs,
        "vault-luks's open took {fast_secs} s, every keyslot {slow_secs} s"
    );
}

/// A keyslot record gone stale (Vault's keyslot moved by hand) costs time, not the volume:
/// the named keyslot refuses the key, every keyslot is tried, and the operator is told.
#[test]
fn a_stale_keyslot_falls_back_to_every_keyslot() {
    let standin = Standin::start(&[]);
    let sb = Sandbox::new("keyslot-stale");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    // The article's key is in keyslot 0; keyslot 5 is empty, keyslot 1 holds another
    // passphrase.
    vol.add_passphrase("another passphrase", Some(1));
    for stale in [5, 1] {
        cfg["volumes"][0]["keyslot"] = json!(stale);
        let config = sb.write_config(&cfg);
        sb.run(&config, &["unlock"])
            .assert_code(0)
            .assert_stderr(&format!(
                "luks: keyslot {stale} does not take Vault's key: trying every keyslot"
            ))
            .assert_stderr("luks: unlocked as /dev/mapper/luks with Vault's key");
        assert!(sb.is_open("luks"));
        sb.mark_closed("luks");
    }
}

#[test]
fn enroll_with_recovery_prints_a_passphrase_that_opens_the_volume() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("enroll-recovery", &standin);
    let run = enroll(&sb, &config, &image, &["--format", "--recovery"]);
    run.assert_code(0);
    let recovery = run.stdout.lines().nth(1).unwrap().trim().to_string();
    assert_eq!(recovery.len(), 39, "{}", run.stdout);
    assert!(opens(&image, &recovery));
    assert!(
        !run.stderr.contains(&recovery),
        "printed once, on stdout only"
    );
    assert_eq!(
        dump(&image)["keyslots"]["1"]["kdf"]["type"],
        "argon2id",
        "a typed passphrase gets argon2id"
    );
}

#[test]
fn enroll_when_vault_refuses_encrypt_changes_nothing() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("enroll-403", &standin);
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    cfg["auth"]["role"] = json!("decrypt-only");
    let config = sb.write_config(&cfg);
    let before = sha256(&image);
    enroll(&sb, &config, &image, &["--format"])
        .assert_code(1)
        .assert_stderr("transit encrypt failed:")
        .assert_stderr("HTTP 403")
        .assert_stderr("do not allow update on transit/encrypt/luks");
    assert_eq!(sha256(&image), before);
    assert!(!sb.dir.join("data.passphrase").exists());
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert!(cfg.get("volumes").is_none(), "the config is untouched");
}

#[test]
fn rewrap_moves_to_the_latest_key_version_in_file_and_token() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("rewrap", &standin);
    enroll(&sb, &config, &image, &["--format", "--transit-key", "rot"]).assert_code(0);
    let v1 = ciphertext(&sb);
    bao().run(&["write", "-f", "transit/keys/rot/rotate"]);
    let run = sb.run(&config, &["rewrap"]);
    run.assert_code(0)
        .assert_stderr("data: rewrapped key version v");
    let v2 = ciphertext(&sb);
    assert_ne!(v1, v2);
    assert_eq!(dump(&image)["tokens"]["0"]["ciphertext"], v2);
    assert_eq!(
        bao().decrypt("rot", &v1),
        bao().decrypt("rot", &v2),
        "same key, new wrapping"
    );
    sb.run(&config, &["rewrap"])
        .assert_code(0)
        .assert_stderr("already at key version");
    sb.run(&config, &["unlock"]).assert_code(0);
}

#[test]
fn rotate_replaces_the_key_and_its_keyslot() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("rotate", &standin);
    enroll(&sb, &config, &image, &["--format", "--recovery"]).assert_code(0);
    let old_key = bao().decrypt("luks", &ciphertext(&sb));
    sb.run(&config, &["rotate", "data"])
        .assert_code(0)
        .assert_stderr("data: rotated: keyslot 0 -> 2")
        .assert_stderr("data: the initramfs holds the old");
    let new_key = bao().decrypt("luks", &ciphertext(&sb));
    assert_ne!(old_key, new_key);
    assert!(!opens(&image, &old_key), "the old keyslot is gone");
    assert!(opens(&image, &new_key));
    let d = dump(&image);
    assert!(d["keyslots"].get("0").is_none());
    assert!(
        d["keyslots"].get("1").is_some(),
        "the recovery keyslot is kept"
    );
    assert_eq!(d["tokens"]["0"]["keyslots"], json!(["2"]));
    assert_eq!(d["tokens"]["0"]["ciphertext"], ciphertext(&sb));
    sb.run(&config, &["unlock"]).assert_code(0);
}

/// Kill rotate after each of its steps (abort: no cleanup, like a power cut): Vault's key must
/// open the volume every time, and a second rotate must finish the job.
#[test]
fn rotate_is_crash_safe_at_every_step() {
    let standin = Standin::start(&[]);
    for step in [
        "rotate-staged",
        "rotate-keyslot-added",
        "rotate-file-switched",
        "rotate-token-updated",
        "rotate-old-keyslot-removed",
    ] {
        let (sb, config, image) = fresh(&format!("crash-{step}"), &standin);
        enroll(&sb, &config, &image, &["--format"]).assert_code(0);
        let mut cmd = sb.command(&config, &["--debug", "rotate", "data"]);
        cmd.env("VAULT_LUKS_CRASH_AFTER", step);
        let run = sb.run_command(cmd);
        assert_ne!(run.code, 0, "{step}: the process was killed");
        assert!(
            run.stderr
                .contains(&format!("VAULT_LUKS_CRASH_AFTER={step}")),
            "{step}: {}",
            run.stderr
        );
        sb.run(&config, &["unlock", "data"]).assert_code(0);
        assert!(sb.is_open("data"), "{step}: Vault's key opens the volume");
        sb.run(&config, &["close", "data"]).assert_code(0);
        sb.run(&config, &["rotate", "data"]).assert_code(0);
        sb.run(&config, &["unlock", "data"]).assert_code(0);
        // A crash between adding the new keyslot and removing the old one leaves one stale
        // keyslot behind (documented); never more.
        let stale = matches!(
            step,
            "rotate-keyslot-added" | "rotate-file-switched" | "rotate-token-updated"
        );
        assert_eq!(
            dump(&image)["keyslots"].as_object().unwrap().len(),
            1 + usize::from(stale),
            "{step}"
        );
    }
}

/// The volume carries its own binding: with no ciphertext_file in the config, unlock reads the
/// ciphertext from the LUKS2 token, and rotate and rewrap keep the token current.
#[test]
fn a_volume_with_only_its_token_unlocks_rotates_and_rewraps() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("token-only", &standin);
    enroll(&sb, &config, &image, &["--format", "--transit-key", "rot"]).assert_code(0);
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    cfg["volumes"][0]
        .as_object_mut()
        .unwrap()
        .remove("ciphertext_file");
    let config = sb.write_config(&cfg);
    std::fs::remove_file(sb.dir.join("data.passphrase")).unwrap();
    sb.run(&config, &["check"]).assert_code(0);
    sb.run(&config, &["unlock"]).assert_code(0);
    sb.run(&config, &["close"]).assert_code(0);
    sb.run(&config, &["rotate", "data"])
        .assert_code(0)
        .assert_stderr("ciphertext in the LUKS2 token")
        .refute_stderr("initramfs");
    bao().run(&["write", "-f", "transit/keys/rot/rotate"]);
    sb.run(&config, &["rewrap"])
        .assert_code(0)
        .assert_stderr("rewrapped key version");
    sb.run(&config, &["unlock"]).assert_code(0);
    assert!(sb.is_open("data"));
    assert!(
        !sb.dir.join("data.passphrase").exists(),
        "no file was written"
    );
}

#[test]
fn status_shows_the_binding_and_checks_vault_without_opening() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("status-check", &standin);
    enroll(&sb, &config, &image, &["--format"]).assert_code(0);
    let run = sb.run(&config, &["status", "--json", "--check-vault"]);
    run.assert_code(0);
    let s: Value = serde_json::from_str(&run.stdout).unwrap();
    let v = &s["volumes"][0];
    assert_eq!(v["luks_version"], 2);
    assert_eq!(v["vault_keyslot"], 0);
    assert_eq!(v["vault_token"], 0);
    assert_eq!(v["key_version"], 1);
    assert_eq!(v["active"], false);
    assert_eq!(v["mounted_at"], json!([]));
    assert_eq!(v["vault_check"], "ok");
    assert!(!sb.is_open("data"), "--check-vault opens nothing");
    // A ciphertext of another key: Vault decrypts it, the header refuses it.
    let other = bao().encrypt("luks", "b3RoZXIta2V5LW9mLTI0LWJ5dGVzLWxvbmch", None);
    std::fs::write(sb.dir.join("data.passphrase"), other).unwrap();
    let run = sb.run(&config, &["status", "--check-vault"]);
    run.assert_code(1).assert_stderr("a Vault check failed");
    assert!(
        run.stdout
            .contains("data: vault check: the key from Vault does not open"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("LUKS2; vault keyslot 0 (token 0)"),
        "{}",
        run.stdout
    );
}

/// LUKS1 volumes keep working: unlock with the article's ciphertext file, and enroll adds a
/// keyslot (LUKS1 has no tokens: the file is the only binding).
#[test]
fn luks1_volumes_unlock_and_enroll_without_a_token() {
    let standin = Standin::start(&[]);
    let (sb, config, image) = fresh("luks1", &standin);
    let key = bao().decrypt(
        "luks",
        &bao().encrypt("luks", "bHVrczEta2V5LW9mLTI0LWJ5dGVzLWxvbmch", None),
    );
    let mut child = Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks1",
            "--pbkdf-force-iterations",
            "1000",
        ])
        .arg(&image)
        .arg("--key-file=-")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let old = sb.write("old", &key);
    enroll(&sb, &config, &image, &["--key-file", old.to_str().unwrap()])
        .assert_code(0)
        .assert_stderr("keyslot 1 opens");
    assert!(opens(&image, &bao().decrypt("luks", &ciphertext(&sb))));
    let _ = std::fs::remove_file(sb.state.join("argv.log"));
    sb.run(&config, &["unlock"]).assert_code(0);
    // LUKS1 has no JSON metadata to read from the device: cryptsetup reads the header.
    assert!(sb.wrapper_log("argv.log").contains("luksDump"));
    let run = sb.run(&config, &["status", "--json"]);
    let s: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(s["volumes"][0]["luks_version"], 1);
    assert_eq!(s["volumes"][0]["vault_token"], Value::Null);
}
