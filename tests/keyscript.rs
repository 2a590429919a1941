//! crypttab `keyscript=` mode: the key on stdout, byte for byte what the article's pipeline
//! gives cryptsetup, and nothing else there.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn the_key_goes_to_stdout_exactly_and_opens_the_volume() {
    let sb = Sandbox::new("keyscript");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let out = sb
        .command(&config, &["keyscript", "luks"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = vol.key("luks");
    assert_eq!(
        String::from_utf8(out.stdout.clone()).unwrap(),
        expected,
        "stdout is the key and nothing else, no newline"
    );
    // cryptroot pipes it into cryptsetup: the real header accepts it.
    let mut check = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-"])
        .arg(&vol.image)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    assert!(check.wait().unwrap().success());
    assert_eq!(standin.requests("/v1/auth/token/revoke-self"), 1);
}

#[test]
fn as_vault_luks_keyscript_it_reads_cryptroots_environment() {
    let sb = Sandbox::new("keyscript-link");
    let vol = sb.article_volume("data", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("data", &vol, "luks")]));
    let link = sb.dir.join("vault-luks-keyscript");
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    // cryptroot: the key file field as the argument, the volume in CRYPTTAB_NAME.
    let as_cryptroot = || {
        Command::new(&link)
            .arg("none")
            .env_clear()
            .env("CRYPTTAB_NAME", "data")
            .env("VAULT_LUKS_CONFIG", &config)
            .env("VAULT_LUKS_PROC_CMDLINE", &sb.cmdline)
            .output()
            .unwrap()
    };
    let out = as_cryptroot();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32);

    sb.set_cmdline("rd.vault-luks=0");
    let out = as_cryptroot();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_failure_writes_nothing_to_stdout() {
    let sb = Sandbox::new("keyscript-fail");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&["--fault", "login-403"]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let out = sb
        .command(&config, &["keyscript", "luks"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "cryptroot would take stdout as a key"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("vault login failed"));
}
