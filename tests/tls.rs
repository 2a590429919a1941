//! TLS to Vault: the private CA, the system bundle that does not know it, and
//! tls_server_name, against an OpenBao serving its own generated certificate (-dev-tls).

mod common;

use common::*;
use serde_json::{json, Value};

fn setup(name: &str) -> (Sandbox, Volume, String) {
    let sb = Sandbox::new(name);
    let vol = sb.article_volume_on(bao_tls(), "luks", "luks", FAST_ARGON2);
    let token = bao_tls().token("transit-luks");
    (sb, vol, token)
}

fn config(vault: Value, vol: &Volume) -> Value {
    json!({
        "vault": vault,
        "auth": {"method": "token"},
        "timeouts": {"unlock": 5, "request": 3},
        "volumes": [{"name": "luks", "device": vol.image, "ciphertext_file": vol.ciphertext_file, "transit": {"key": "luks"}}]
    })
}

fn unlock(sb: &Sandbox, config: &Value, token: &str) -> Run {
    let mut cmd = sb.command(&sb.write_config(config), &["unlock"]);
    cmd.env("BAO_TOKEN", token);
    sb.run_command(cmd)
}

fn ca() -> String {
    bao_tls().ca_cert.as_ref().unwrap().display().to_string()
}

#[test]
fn the_private_ca_verifies_vault() {
    let (sb, vol, token) = setup("tls-ca");
    let run = unlock(
        &sb,
        &config(json!({"address": bao_tls().addr, "ca_cert": ca()}), &vol),
        &token,
    );
    run.assert_code(0)
        .assert_stderr("luks: unlocked as /dev/mapper/luks");
    assert!(sb.is_open("luks"));
    assert!(
        !run.stderr.contains("insecure"),
        "https with a CA is not warned about"
    );
}

#[test]
fn an_unknown_issuer_is_refused_at_once() {
    let (sb, vol, token) = setup("tls-unknown-ca");
    // The system bundle (or none): either way OpenBao's generated CA is not in it.
    let run = unlock(
        &sb,
        &config(json!({"address": bao_tls().addr}), &vol),
        &token,
    );
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        run.assert_code(1)
            .assert_stderr("luks: transit decrypt failed:")
            .assert_stderr("TLS error")
            .assert_stderr("check vault.ca_cert")
            .assert_within(std::time::Duration::from_secs(3));
    } else {
        run.assert_code(2)
            .assert_stderr("no CA certificates to verify Vault with");
    }
    assert!(!sb.is_open("luks"));
}

#[test]
fn tls_server_name_is_what_the_certificate_is_checked_against() {
    let (sb, vol, token) = setup("tls-server-name");
    let wrong = config(
        json!({"address": bao_tls().addr, "ca_cert": ca(), "tls_server_name": "vault.wrong.example"}),
        &vol,
    );
    unlock(&sb, &wrong, &token)
        .assert_code(1)
        .assert_stderr("TLS error");
    let right = config(
        json!({"address": bao_tls().addr, "ca_cert": ca(), "tls_server_name": "localhost"}),
        &vol,
    );
    unlock(&sb, &right, &token).assert_code(0);
    assert!(sb.is_open("luks"));
}

#[test]
fn skipping_verification_must_be_spelled_out_and_is_warned_about() {
    let (sb, vol, token) = setup("tls-skip");
    let run = unlock(
        &sb,
        &config(
            json!({"address": bao_tls().addr, "tls_skip_verify": true}),
            &vol,
        ),
        &token,
    );
    run.assert_code(0)
        .assert_stderr("warning: insecure: vault.tls_skip_verify is set");
}

#[test]
fn vault_cacert_from_the_environment() {
    let (sb, vol, token) = setup("tls-env-ca");
    let mut cmd = sb.command(
        &sb.write_config(&config(
            json!({"address": "https://unused.example:8200"}),
            &vol,
        )),
        &["unlock"],
    );
    cmd.env("VAULT_ADDR", &bao_tls().addr)
        .env("VAULT_CACERT", ca())
        .env("VAULT_TOKEN", &token);
    sb.run_command(cmd).assert_code(0);
    assert!(sb.is_open("luks"));
}

#[test]
fn a_client_certificate_is_presented_when_vault_requires_one() {
    let bao = bao_mtls();
    let m = bao.mtls.as_ref().unwrap();
    let sb = Sandbox::new("mtls");
    let vol = sb.article_volume_on(bao, "luks", "luks", FAST_ARGON2);
    let token = bao.token("transit-luks");
    let without = config(json!({"address": m.addr, "ca_cert": m.ca}), &vol);
    // TLS 1.3: the server's refusal arrives as a closed connection after the handshake.
    unlock(&sb, &without, &token)
        .assert_code(1)
        .assert_stderr("transit decrypt failed");
    let with = config(
        json!({"address": m.addr, "ca_cert": m.ca, "client_cert": m.client_cert, "client_key": m.client_key}),
        &vol,
    );
    unlock(&sb, &with, &token).assert_code(0);
    assert!(sb.is_open("luks"));
}

#[test]
fn an_unusable_client_certificate_is_a_config_error_not_a_crash() {
    let bao = bao_mtls();
    let m = bao.mtls.as_ref().unwrap();
    let sb = Sandbox::new("mtls-v1");
    let vol = sb.article_volume_on(bao, "luks", "luks", FAST_ARGON2);
    // An X.509 v1 certificate, which rustls refuses.
    let dir = m.ca.parent().unwrap();
    let v1 = sb.dir.join("v1.pem");
    let ok = std::process::Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(dir.join("client.csr"))
        .arg("-CA")
        .arg(&m.ca)
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .args(["-CAcreateserial", "-days", "1", "-out"])
        .arg(&v1)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let cfg = config(
        json!({"address": m.addr, "ca_cert": m.ca, "client_cert": v1, "client_key": m.client_key}),
        &vol,
    );
    unlock(&sb, &cfg, "unused")
        .assert_code(2)
        .assert_stderr("vault.client_cert:")
        .assert_stderr("not usable as a TLS client certificate");
}
