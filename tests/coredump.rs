//! Secret hygiene, the core dump half: a real unlock against OpenBao, stopped while vault-luks
//! holds the key (the cryptsetup wrapper waits with the key read from its pipe), then killed
//! with SIGABRT under an unlimited RLIMIT_CORE. vault-luks must leave no core; the wrapper, a
//! dumpable process holding the same key, is killed the same way and must leave one with the
//! key in it, or the test proves nothing.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_core_dump_forced_during_the_unlock_holds_no_key() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let pattern = pattern.trim();
    if pattern.starts_with('|') || pattern.contains('/') {
        // Cores go to a helper (systemd-coredump, apport) or a fixed directory: this test
        // would have to change a setting of the whole machine.
        eprintln!(
            "\n!!!!! SKIPPED: kernel.core_pattern is `{pattern}`; this test reads cores from \
             the crashing process's directory: `sysctl -w kernel.core_pattern=core` to run it !!!!!\n"
        );
        return;
    }
    let sb = Sandbox::new("coredump");
    let vol = sb.article_volume("luks", "luks", FAST_ARGON2);
    let standin = Standin::start(&[]);
    let config = sb.write_config(&config_for(&standin, &[("luks", &vol, "luks")]));
    let key = vol.key("luks");
    std::fs::write(sb.state.join("hold-open"), "").unwrap();
    // The cores' directory: vault-luks's working directory, which the wrapper inherits.
    let cores = sb.dir.join("cores");
    std::fs::create_dir(&cores).unwrap();

    // Without capabilities (root still): the kernel then lets another capability-less root
    // process read its /proc/PID/environ exactly when it is dumpable, the observable below.
    let mut cmd = sb.command_via(
        &["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"],
        &config,
        &["unlock", "--no-prompt"],
    );
    let stderr = sb.dir.join("stderr");
    cmd.current_dir(&cores)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let vault_luks = child.id() as i32;
    let held = sb.state.join("held");
    let start = Instant::now();
    while !held.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&stderr).unwrap();
            panic!("vault-luks ended ({status}) before cryptsetup got the key:\n{log}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no open came");
        std::thread::sleep(Duration::from_millis(20));
    }
    let wrapper: i32 = std::fs::read_to_string(&held)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        parent_of(wrapper),
        vault_luks,
        "the wrapper is vault-luks's child"
    );

    // Both hold the key now: root reads it in their memory.
    assert!(
        in_memory(vault_luks, key.as_bytes()),
        "vault-luks holds the key"
    );
    assert!(
        in_memory(wrapper, key.as_bytes()),
        "the wrapper holds the key"
    );
    // The kernel's non-dumpable mark: /proc/PID/environ is closed to a process of the same
    // user and capabilities (none) that lacks CAP_SYS_PTRACE, open for a dumpable one.
    assert!(
        !readable_without_capabilities(vault_luks),
        "vault-luks is dumpable: root without capabilities reads its /proc/PID/environ"
    );
    assert!(
        readable_without_capabilities(wrapper),
        "the control: root without capabilities reads a dumpable process's environ"
    );

    for pid in [vault_luks, wrapper] {
        unlimited_cores(pid);
    }
    // SAFETY: kill has no memory preconditions; the pid is our child, still unreaped.
    assert_eq!(unsafe { libc::kill(vault_luks, libc::SIGABRT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    if let Some(core) = files_in(&cores).first() {
        let with = if holds(core, &key) { "with" } else { "without" };
        panic!(
            "vault-luks left a core, {with} the key in it: {}",
            core.display()
        );
    }
    assert!(
        !status.core_dumped(),
        "the kernel says vault-luks dumped core"
    );

    // The control, killed the same way: it must leave a core, and the key must be in it.
    // SAFETY: as above; the wrapper (vault-luks's orphan now) still waits for the release.
    assert_eq!(unsafe { libc::kill(wrapper, libc::SIGABRT) }, 0);
    let start = Instant::now();
    while !gone(wrapper) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the wrapper lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = files_in(&cores);
    assert_eq!(left.len(), 1, "the control left no core: {left:?}");
    assert!(
        holds(&left[0], &key),
        "the control's core does not hold the key: the search would see nothing"
    );
    // Not a volume opened half-way: nothing was released.
    assert!(!sb.is_open("luks"));
}

/// The parent pid in /proc/PID/stat (the field after the command's closing parenthesis).
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Exited: reaped, or a zombie (its core, if any, is written by then).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => true,
    }
}

/// Whether `needle` is in any readable mapping of `pid` (/proc/PID/mem, as root).
fn in_memory(pid: i32, needle: &[u8]) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        if !fields.next().unwrap().starts_with('r') {
            return false;
        }
        let (from, to) = range.split_once('-').unwrap();
        let from = u64::from_str_radix(from, 16).unwrap();
        let to = u64::from_str_radix(to, 16).unwrap();
        let mut buf = vec![0; (to - from).min(256 << 20) as usize];
        // Some mappings ([vvar]) cannot be read; they hold no key.
        mem.read_exact_at(&mut buf, from).is_ok() && buf.windows(needle.len()).any(|w| w == needle)
    })
}

fn readable_without_capabilities(pid: i32) -> bool {
    Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "--", "cat"])
        .arg(format!("/proc/{pid}/environ"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("setpriv (util-linux)")
        .success()
}

/// What `prlimit --pid PID --core=unlimited` does.
fn unlimited_cores(pid: i32) {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit to read; no old value asked for.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_CORE, &unlimited, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit {pid}: {}", std::io::Error::last_os_error());
}

fn holds(core: &Path, key: &str) -> bool {
    let core = std::fs::read(core).unwrap();
    core.windows(key.len()).any(|w| w == key.as_bytes())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}
