//! A herd: every machine of a zone unlocking at once after a power event, against one OpenBao
//! whose rate-limit quota answers 429 to most of them. All must get their key within the
//! deadline, and the retries must stay a small multiple of the ideal three requests per machine
//! (login, decrypt, revoke): a client that retries at once, or without jitter, turns a quota into
//! a storm. The small version of issue 15's herd (the large one is a benchmark).

mod common;

use common::*;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};

const MACHINES: usize = 50;
/// Decrypts per second the quota lets through: a fifth of the herd.
const QUOTA_RATE: usize = 10;

#[test]
fn fifty_machines_at_once_through_a_rate_limit_all_unlock() {
    let sb = Sandbox::new("herd");
    let pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    let vol = sb.article_volume("luks", "luks", &pbkdf2);
    let standin = Standin::start(&[]);
    let mut cfg = config_for(&standin, &[("luks", &vol, "luks")]);
    cfg["timeouts"]["unlock"] = json!(60);
    let config = sb.write_config(&cfg);
    // This test binary has its own OpenBao: the quota limits nobody else.
    bao().run(&[
        "write",
        "sys/quotas/rate-limit/herd",
        &format!("rate={QUOTA_RATE}"),
        "interval=1s",
        "path=transit/",
    ]);

    let start = Instant::now();
    let machines: Vec<_> = (0..MACHINES)
        .map(|i| {
            // Each machine its own device-mapper state.
            let state = sb.dir.join(format!("machine-{i}"));
            std::fs::create_dir_all(&state).unwrap();
            let mut cmd = sb.command(&config, &["unlock", "--no-prompt"]);
            cmd.env("VAULT_LUKS_TEST_STATE", &state)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            (state, cmd.spawn().unwrap())
        })
        .collect();
    let mut throttled = 0;
    for (state, child) in machines {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a machine stayed locked:\n{stderr}");
        assert!(state.join("active-luks").exists());
        throttled += usize::from(stderr.contains("429"));
    }
    let took = start.elapsed();

    let decrypts = standin.requests("/v1/transit/decrypt/luks") as usize;
    let logins = standin.requests("/v1/auth/exoscale/login") as usize;
    let revokes = standin.requests("/v1/auth/token/revoke-self") as usize;
    eprintln!(
        "herd: {MACHINES} machines in {:.1} s; {throttled} throttled; requests: {logins} logins, {decrypts} decrypts, {revokes} revokes",
        took.as_secs_f64()
    );
    // The quota did bite (else this proves nothing), and the herd got through it in time.
    assert!(throttled >= MACHINES / 5, "only {throttled} saw a 429");
    assert!(took < Duration::from_secs(60), "the herd took {took:?}");
    assert_eq!(logins, MACHINES, "one login per machine");
    assert_eq!(revokes, MACHINES, "one revoke per machine");
    // Ideal: 3 requests per machine. Draining 50 through 10/s needs about 5 s of retries;
    // backoff with jitter keeps the extra decrypts to a few per machine.
    let per_machine = (logins + decrypts + revokes) as f64 / MACHINES as f64;
    assert!(
        per_machine <= 3.0 + 4.0,
        "{per_machine:.1} requests per machine (ideal 3): the retries amplify the load"
    );
}
