//! Entry points for the fuzz targets in fuzz/: one function per decoder of untrusted input, each
//! taking raw bytes and driving the decoder the way the program does (and what the program does
//! next with its result). A decoder must never panic: the release binary aborts on a panic
//! (panic = "abort"), at boot, before the passphrase prompt. Where a cheap invariant holds
//! (a round trip, a range), it is asserted, so a wrong answer is a crash too.
//!
//! Not part of the program: nothing else calls these, and link-time optimisation drops them from
//! the binary. Adding a target is one function here and one three-line file in fuzz/src/bin/.

use crate::config::{parse_cmdline, Config};
use crate::net::{cmdline, dhcp, link, netlink, route};
use crate::vault::{auth, client, transit};
use std::net::Ipv4Addr;

/// The configuration file (`Config::parse`), then the layers and checks `Config::load` runs
/// after it, with no environment and an empty kernel command line.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut c) = Config::parse("fuzz.json", text) {
        if c.apply_env(&|_| None).is_ok() && c.apply_cmdline(&Default::default()).is_ok() {
            let _ = c.referenced_files();
        }
    }
}

/// The kernel command line: `rd.vault-luks.*` (applied to a valid configuration, as
/// `Setup::load` does, which parses the addresses it names) and `ip=` / `BOOTIF=`.
pub fn cmdline(data: &[u8]) {
    // Read with read_to_string: a command line that is not UTF-8 is read as empty.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides = parse_cmdline(text);
    let mut c = base_config();
    let _ = c.apply_cmdline(&overrides);
    let _ = cmdline::parse(text);
}

/// A Vault login answer (`auth.client_token`, its lease against a deadline).
pub fn vault_login(data: &[u8]) {
    let deadline = crate::retry::Deadline::after(std::time::Duration::from_secs(60));
    let _ = auth::token_from_answer(data, &deadline);
}

/// A transit answer: the first byte says how many ciphertexts were sent (modulo 4, plus 1: `0`
/// for a single decrypt, `1`..`3` for a batch of 2..4), the rest is the body; the same body
/// also as an encrypt/rewrap answer.
pub fn vault_transit(data: &[u8]) {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 4) + 1;
    if let Some(results) = transit::decrypt_answer(body, n) {
        assert_eq!(results.len(), n, "one result per ciphertext sent");
    }
    let _ = transit::ciphertext_of(body, "transit/encrypt/fuzz", crate::error::Step::Encrypt);
}

/// The body of a failed Vault request: its `errors`, or an excerpt of whatever came back.
pub fn vault_errors(data: &[u8]) {
    for e in client::vault_errors(data) {
        assert!(!e.is_empty() && e.trim() == e, "{e:?}");
    }
}

/// `cryptsetup luksDump --dump-json-metadata`: keyslots, tokens, the vault-luks binding, which
/// must survive the round trip through the token it is written back as.
pub fn luks2_header(data: &[u8]) {
    let Ok(h) = crate::luks::header::parse_luks2(data) else {
        return;
    };
    let _ = h.free_keyslot();
    if let Some((_, b)) = h.binding() {
        let back = crate::luks::header::Binding::from_token(&b.to_token());
        assert_eq!(back.as_ref(), Some(&b));
    }
}

/// `cryptsetup luksDump` of a LUKS1 volume (text; read lossily, as `Header::read` does).
pub fn luks1_dump(data: &[u8]) {
    let h = crate::luks::header::parse_luks1(&String::from_utf8_lossy(data));
    let _ = h.free_keyslot();
}

/// A DHCP reply as received on the socket, turned into a lease when it decodes, and the lease's
/// subnet checked against the metadata server as `net::configure` does.
pub fn dhcp(data: &[u8]) {
    let Some(reply) = dhcp::decode(data) else {
        return;
    };
    let lease = dhcp::lease_from(&reply, Ipv4Addr::new(192, 0, 2, 1), 1);
    assert!((1..=32).contains(&lease.prefix), "{lease:?}");
    let _ = route::in_subnet(
        Ipv4Addr::new(169, 254, 169, 254),
        lease.address,
        lease.prefix,
    );
}

/// A datagram from the kernel on the rtnetlink socket: the first 4 bytes are the sequence
/// number the request was sent with, the rest the datagram.
pub fn netlink(data: &[u8]) {
    let Some((seq, datagram)) = data.split_first_chunk::<4>() else {
        return;
    };
    let _ = netlink::ack_for(datagram, u32::from_ne_bytes(*seq));
}

/// sysfs text about a link: a MAC address (`address`, `BOOTIF=`) and hexadecimal `flags`.
pub fn link(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = link::hex(text);
    if let Some(mac) = link::parse_mac(text) {
        assert_eq!(link::parse_mac(&link::format_mac(&mac)), Some(mac));
    }
}

/// A valid configuration to apply kernel command lines to (built once).
fn base_config() -> Config {
    static BASE: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let text = r#"{"vault": {"address": "https://vault.example.com:8200"},
            "auth": {"role": "storage"},
            "volumes": [{"name": "luks", "device": "/dev/vg/luks", "transit": {"key": "luks"}}]}"#;
        Config::parse("fuzz.json", text).expect("the base configuration is valid")
    })
    .clone()
}
