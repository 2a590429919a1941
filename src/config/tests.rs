use super::*;

const ARTICLE: &str = r#"{"vault":   {"address": "https://vault.example.com:8200"},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "volumes": [{"name": "luks", "device": "/dev/mapper/vg.flex-lv.luks",
              "ciphertext_file": "/etc/luks.passphrase", "transit": {"key": "luks"}}]}"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config> {
    let mut c = Config::parse("c.json", text)?;
    c.apply_env(&no_env)?;
    c.validate()?;
    Ok(c)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_volume_may_name_vaults_keyslot() {
    let c = parse(&ARTICLE.replace(
        r#""transit": {"key": "luks"}"#,
        r#""transit": {"key": "luks"}, "keyslot": 31"#,
    ))
    .unwrap();
    assert_eq!(c.volumes[0].keyslot, Some(31));
    assert_eq!(parse(ARTICLE).unwrap().volumes[0].keyslot, None);
}

#[test]
fn the_issue_example_works_with_defaults() {
    let c = parse(ARTICLE).unwrap();
    assert_eq!(
        c.vault.addresses[0].url.base(),
        "https://vault.example.com:8200"
    );
    assert_eq!(
        c.auth.method,
        AuthMethod::Exoscale {
            role: "storage".into(),
            approle_mode: false
        }
    );
    assert_eq!(c.auth.mount, "exoscale");
    assert!(c.auth.revoke);
    assert_eq!(c.metadata.url, DEFAULT_METADATA_URL);
    let v = &c.volumes[0];
    assert_eq!(
        v.transit,
        Transit {
            mount: "transit".into(),
            key: "luks".into(),
            context: None
        }
    );
    assert_eq!(v.key_format, KeyFormat::Base64Text);
    assert_eq!(c.timeouts, Timeouts::default());
    assert!(c.warnings.is_empty());
    assert_eq!(
        c.referenced_files(),
        vec![PathBuf::from("/etc/luks.passphrase")]
    );
}

#[test]
fn every_option_is_read() {
    let c = parse(r#"{"vault": {"addresses": ["https://a:8200", "https://b:8200"], "ca_cert": "/etc/vault-luks/ca.pem",
        "client_cert": "/c.pem", "client_key": "/k.pem", "namespace": "ops", "tls_server_name": "vault.internal"},
      "auth": {"method": "exoscale", "role": "r", "mount": "exo", "approle_mode": true, "revoke_token": false},
      "metadata": {"url": "http://127.0.0.1:9/1.0/meta-data"},
      "timeouts": {"unlock": 30, "request": 2.5, "device": 5, "cryptsetup": 60},
      "volumes": [{"name": "a", "device": "/dev/x", "ciphertext_file": "/a", "transit": {"mount": "tr", "key": "k", "context": "Y3R4"}, "key_format": "raw"},
                  {"name": "b", "device": "/dev/y", "ciphertext_file": "/b", "transit": {"key": "k"}}]}"#).unwrap();
    assert_eq!(c.vault.addresses.len(), 2);
    assert_eq!(c.vault.addresses[1].origin, "vault.addresses[1]");
    assert_eq!(c.vault.namespace.as_deref(), Some("ops"));
    assert_eq!(c.auth.mount, "exo");
    assert!(!c.auth.revoke);
    assert_eq!(c.metadata.url, "http://127.0.0.1:9/1.0/meta-data/");
    assert_eq!(c.timeouts.request, Duration::from_millis(2500));
    assert_eq!(c.volumes[0].key_format, KeyFormat::Raw);
    assert_eq!(c.volumes[0].transit.context.as_deref(), Some("Y3R4"));
    assert_eq!(
        c.referenced_files(),
        ["/a", "/b", "/c.pem", "/etc/vault-luks/ca.pem", "/k.pem"]
            .map(PathBuf::from)
            .to_vec()
    );
}

#[test]
fn plain_http_must_be_spelled_out_and_is_warned_about() {
    let text = ARTICLE.replace("https://vault.example.com:8200", "http://127.0.0.1:8200");
    let e = err(&text);
    assert!(
        e.contains("c.json: vault.address: http://127.0.0.1:8200 is plain http"),
        "{e}"
    );
    let allowed = text.replace(r#""address""#, r#""allow_http": true, "address""#);
    let c = parse(&allowed).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.starts_with("insecure:")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn tls_skip_verify_is_warned_about() {
    let c =
        parse(&ARTICLE.replace(r#""address""#, r#""tls_skip_verify": true, "address""#)).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("tls_skip_verify")));
}

#[test]
fn errors_name_the_file_the_field_and_the_problem() {
    let cases = [
        (ARTICLE.replace(r#""role": "storage""#, r#""rol": "storage""#), "auth.role: is required"),
        (ARTICLE.replace(r#""key": "luks""#, r#""key": "luks", "kye": 1"#), "volumes[0].transit.kye: unknown key"),
        (ARTICLE.replace(r#""device": "/dev/mapper/vg.flex-lv.luks""#, r#""device": 5"#), "volumes[0].device: expected a string, found a number"),
        (ARTICLE.replace(r#""name": "luks""#, r#""name": "a/b""#), "volumes[0].name: `a/b` is not a usable device-mapper name"),
        (ARTICLE.replace(r#""method": "exoscale""#, r#""method": "kerberos""#), "auth.method: `kerberos` is not one of exoscale, approle, token"),
        (ARTICLE.replace("https://vault.example.com:8200", "vault.example.com:8200"), "vault.address: `vault.example.com:8200` is not an http:// or https:// URL"),
        (ARTICLE.replace(r#""transit": {"key": "luks"}"#, r#""transit": {"key": "luks", "context": "not base64!"}"#), "volumes[0].transit.context: must be base64"),
        (r#"{"vault": {}, "auth": {"role": "r"}, "volumes": [{"name":"a","device":"/d","ciphertext_file":"/c","transit":{"key":"k"}}]}"#.to_string(), "no Vault address"),
        (ARTICLE.replace(r#""volumes": [{"#, r#""volumes": 3, "x": [{"#), "volumes: expected an array, found a number"),
        ("{".to_string(), "c.json: not valid JSON"),
        (ARTICLE.replace(r#""vault":"#, r#""valt":"#), "vault: is required"),
        (ARTICLE.replace(r#""transit": {"key": "luks"}"#, r#""transit": {"key": "luks"}, "keyslot": 32"#), "volumes[0].keyslot: expected a whole number from 0 to 31, found 32"),
        (ARTICLE.replace(r#""transit": {"key": "luks"}"#, r#""transit": {"key": "luks"}, "keyslot": "1""#), "volumes[0].keyslot: expected a whole number from 0 to 31, found a string"),
        (ARTICLE.replace(r#""transit": {"key": "luks"}"#, r#""transit": {"key": "luks"}, "keyslot": 1.5"#), "volumes[0].keyslot: expected a whole number from 0 to 31, found 1.5"),
    ];
    for (text, expected) in cases {
        let e = err(&text);
        assert!(e.contains(expected), "expected `{expected}` in `{e}`");
        assert!(e.starts_with("invalid configuration in c.json"), "{e}");
    }
}

#[test]
fn duplicate_volume_names_are_refused() {
    let text = r#"{"vault": {"address": "https://v"}, "auth": {"role": "r"}, "volumes": [
        {"name":"a","device":"/d","ciphertext_file":"/c","transit":{"key":"k"}},
        {"name":"a","device":"/e","ciphertext_file":"/f","transit":{"key":"k"}}]}"#;
    assert!(err(text).contains("volumes[1].name: `a` is used by another volume"));
}

#[test]
fn environment_overrides_the_file_bao_first() {
    let mut c = Config::parse("c.json", ARTICLE).unwrap();
    let env = |name: &str| match name {
        "BAO_ADDR" => Some("https://bao:8200".to_string()),
        "VAULT_ADDR" => Some("https://vault:8200".to_string()),
        "VAULT_NAMESPACE" => Some("team".to_string()),
        "VAULT_TOKEN" => Some("s.secret".to_string()),
        _ => None,
    };
    c.apply_env(&env).unwrap();
    assert_eq!(c.vault.addresses[0].url.host, "bao");
    assert_eq!(c.vault.addresses[0].origin, "BAO_ADDR");
    assert_eq!(c.vault.namespace.as_deref(), Some("team"));
    assert_eq!(c.auth.token_env, Some("VAULT_TOKEN"));
    assert!(
        !format!("{c:?}").contains("s.secret"),
        "the token value is never kept in Config"
    );
}

#[test]
fn cmdline_overrides_and_is_validated_like_the_file() {
    let mut c = parse(ARTICLE).unwrap();
    c.apply_cmdline(&parse_cmdline(
        "rd.vault-luks.address=https://x:1,https://y:2 rd.vault-luks.timeout=5 rd.vault-luks.bogus",
    ))
    .unwrap();
    assert_eq!(c.vault.addresses.len(), 2);
    assert_eq!(c.vault.addresses[0].origin, "rd.vault-luks.address");
    assert_eq!(c.timeouts.unlock, Duration::from_secs(5));
    assert!(c.warnings.iter().any(|w| w.contains("rd.vault-luks.bogus")));
    let e = c
        .apply_cmdline(&parse_cmdline("rd.vault-luks.address=http://evil:80"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is plain http"), "{e}");
}

#[test]
fn approle_and_token_methods() {
    let c = parse(&ARTICLE.replace(
        r#""method": "exoscale", "role": "storage""#,
        r#""method": "approle", "role_id": "rid", "secret_id_file": "/etc/vault-luks/secret-id""#,
    ))
    .unwrap();
    assert_eq!(c.auth.mount, "approle");
    assert!(c
        .referenced_files()
        .contains(&PathBuf::from("/etc/vault-luks/secret-id")));
    let c = parse(&ARTICLE.replace(
        r#""method": "exoscale", "role": "storage""#,
        r#""method": "token""#,
    ))
    .unwrap();
    assert!(!c.auth.revoke, "a token handed over is not ours to revoke");
}

#[test]
fn a_config_without_volumes_is_valid_and_says_so() {
    let c = parse(r#"{"vault": {"address": "https://v"}, "auth": {"role": "r"}}"#).unwrap();
    assert!(c.volumes.is_empty());
    assert!(c.warnings.iter().any(|w| w.contains("vault-luks enroll")));
}

#[test]
fn network_defaults_to_auto_dhcp() {
    let c = parse(ARTICLE).unwrap();
    assert_eq!(c.network, NetworkConfig::default());
    assert!(c.network.enabled);
    assert_eq!(c.network.carrier_timeout, Duration::from_secs(10));
}

#[test]
fn network_static_address_and_off() {
    let c = parse(
        r#"{"vault": {"address": "https://v:8200"}, "auth": {"role": "r"},
        "network": {"interface": "ens3", "address": "192.0.2.10/24", "gateway": "192.0.2.1",
                    "dns": ["192.0.2.53"], "carrier_timeout": 3}}"#,
    )
    .unwrap();
    let n = &c.network;
    assert_eq!(n.interface.as_deref(), Some("ens3"));
    assert_eq!(n.carrier_timeout, Duration::from_secs(3));
    assert_eq!(
        n.address,
        Some(StaticAddress {
            address: "192.0.2.10".parse().unwrap(),
            prefix: 24,
            gateway: Some("192.0.2.1".parse().unwrap()),
            dns: vec!["192.0.2.53".parse().unwrap()],
        })
    );
    let off = parse(r#"{"vault": {"address": "https://v:8200"}, "auth": {"role": "r"}, "network": {"mode": "off"}}"#).unwrap();
    assert!(!off.network.enabled);
}

#[test]
fn network_errors_name_the_field() {
    let base = |n: &str| {
        err(&format!(
            r#"{{"vault": {{"address": "https://v:8200"}}, "auth": {{"role": "r"}}, "network": {n}}}"#
        ))
    };
    assert!(base(r#"{"mode": "manual"}"#).contains("network.mode: `manual` is not auto"));
    assert!(base(r#"{"address": "192.0.2.10"}"#)
        .contains("network.address: `192.0.2.10`: write it as ADDRESS/PREFIX"));
    assert!(base(r#"{"address": "192.0.2.10/33"}"#).contains("the prefix must be 1 to 32"));
    assert!(base(r#"{"address": "192.0.2.300/24"}"#).contains("is not an IPv4 address"));
    assert!(base(r#"{"gateway": "192.0.2.1"}"#)
        .contains("network.gateway: applies to a static address"));
    assert!(base(r#"{"interface": "a/b"}"#).contains("is not an interface name"));
    assert!(base(r#"{"adress": "x"}"#).contains("did you mean `address`?"));
}
