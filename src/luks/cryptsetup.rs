//! `cryptsetup open --key-file=- DEVICE NAME` with the key on a pipe, `status` and `close`.
//! The key never reaches argv, the environment or a file; every run has a time limit.

use crate::secret::Secret;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Cryptsetup {
    pub path: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The header has no keyslot this key opens (cryptsetup exit code 2).
    KeyRejected,
    /// Ran longer than allowed and was killed.
    TimedOut(Duration),
    /// Anything else, with cryptsetup's own words.
    Failed(String),
}

/// Environment variables that may hold a Vault token; children never inherit them.
const SECRET_ENV: [&str; 2] = ["VAULT_TOKEN", "BAO_TOKEN"];

struct Output {
    status: ExitStatus,
    stderr: String,
}

impl Cryptsetup {
    /// cryptsetup on PATH, then /sbin and /usr/sbin (a minimal initramfs PATH may lack them).
    pub fn locate() -> Option<Cryptsetup> {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("cryptsetup"))
            .find(|p| is_executable(p))
            .map(|path| Cryptsetup { path })
    }

    fn command(&self, args: &[&std::ffi::OsStr]) -> Command {
        let mut c = Command::new(&self.path);
        c.args(args);
        for var in SECRET_ENV {
            c.env_remove(var);
        }
        c
    }

    /// `cryptsetup status NAME` exits 0 when the mapping is active.
    pub fn is_active(&self, name: &str, timeout: Duration) -> Result<bool, String> {
        let out = run(
            self.command(&["status".as_ref(), name.as_ref()]),
            None,
            timeout,
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(out.status.success())
    }

    pub fn open(
        &self,
        device: &Path,
        name: &str,
        key: &Secret,
        timeout: Duration,
    ) -> Result<(), OpenError> {
        let cmd = self.command(&[
            "open".as_ref(),
            "--key-file=-".as_ref(),
            device.as_os_str(),
            name.as_ref(),
        ]);
        let out = run(cmd, Some(key), timeout)?;
        match out.status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(OpenError::KeyRejected),
            _ => Err(OpenError::Failed(describe(&out))),
        }
    }

    pub fn close(&self, name: &str, timeout: Duration) -> Result<(), String> {
        let out = run(
            self.command(&["close".as_ref(), name.as_ref()]),
            None,
            timeout,
        )
        .map_err(|e| format!("{e:?}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(describe(&out))
        }
    }
}

fn describe(out: &Output) -> String {
    let words = out.stderr.trim();
    let code = out.status.code().map_or_else(
        || "killed by a signal".to_string(),
        |c| format!("exit code {c}"),
    );
    if words.is_empty() {
        code
    } else {
        format!("{words} ({code})")
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs to completion or kills at `timeout`. The key is written to stdin and stdin closed, so
/// cryptsetup reads exactly the key bytes and EOF: no newline is added.
fn run(mut cmd: Command, key: Option<&Secret>, timeout: Duration) -> Result<Output, OpenError> {
    cmd.stdin(if key.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| OpenError::Failed(format!("cannot run cryptsetup: {e}")))?;
    if let (Some(key), Some(mut stdin)) = (key, child.stdin.take()) {
        // A key is far smaller than a pipe buffer, so this cannot block on a child that
        // does not read; a child that exited early gives EPIPE, reported by its exit code.
        let _ = stdin.write_all(key.expose());
    }
    let mut stderr_pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.take(64 * 1024).read_to_string(&mut s);
        }
        s
    });
    let status = wait_bounded(&mut child, timeout)?;
    let stderr = reader.join().unwrap_or_default();
    Ok(Output { status, stderr })
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<ExitStatus, OpenError> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OpenError::TimedOut(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(OpenError::Failed(format!("waiting for cryptsetup: {e}"))),
        }
    }
}

/// Waits, bounded, for a device node to appear (udev and LVM may still be at work).
pub fn wait_for_device(device: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if device.exists() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hanging_child_is_killed_at_the_timeout() {
        let start = Instant::now();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let r = run(cmd, None, Duration::from_millis(200));
        assert!(matches!(r, Err(OpenError::TimedOut(_))));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_key_arrives_on_stdin_without_a_newline() {
        let key = Secret::from_string("abc=".to_string());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "test \"$(od -An -c)\" = '   a   b   c   ='"]);
        let out = run(cmd, Some(&key), Duration::from_secs(5)).unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn a_missing_device_is_waited_for_then_reported() {
        let start = Instant::now();
        assert!(!wait_for_device(
            Path::new("/nonexistent/dev"),
            Duration::from_millis(300)
        ));
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(wait_for_device(Path::new("/"), Duration::from_millis(1)));
    }
}
