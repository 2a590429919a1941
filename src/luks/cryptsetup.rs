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
    /// Killed by a signal we did not send: cryptsetup could not run here at all (in an
    /// initramfs, typically glibc aborting because a library it loads with dlopen, libgcc_s.so.1,
    /// was left out of the image). With cryptsetup's own words.
    Crashed(String),
}

/// Environment variables that may hold a Vault token; children never inherit them.
const SECRET_ENV: [&str; 2] = ["VAULT_TOKEN", "BAO_TOKEN"];

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

    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.path);
        c.args(args);
        for var in SECRET_ENV {
            c.env_remove(var);
        }
        c
    }

    /// Runs cryptsetup; a non-zero exit is returned as `Failed` with its words, except exit
    /// code 2 (no keyslot accepts the key), which is `KeyRejected`, and death by a signal,
    /// which is `Crashed`.
    pub fn exec<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        input: Input,
        fd3: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Output, OpenError> {
        let out = run(self.command(args), input, fd3, timeout)?;
        match out.status.code() {
            Some(0) => Ok(out),
            Some(2) => Err(OpenError::KeyRejected),
            Some(_) => Err(OpenError::Failed(describe(&out))),
            None => Err(OpenError::Crashed(describe(&out))),
        }
    }

    /// `cryptsetup status NAME` exits 0 when the mapping is active.
    pub fn is_active(&self, name: &str, timeout: Duration) -> Result<bool, String> {
        let out = run(
            self.command(&["status", name]),
            Input::Nothing,
            None,
            timeout,
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(out.status.success())
    }

    /// `cryptsetup open` with `key` on stdin. With a `keyslot`, only that keyslot is tried:
    /// cryptsetup otherwise derives every keyslot's key in order, and an argon2id passphrase
    /// before Vault's PBKDF2 keyslot costs seconds and hundreds of MiB for nothing. `alongside`:
    /// other opens run at the same time, so cryptsetup derives memory-hard (argon2) keyslot
    /// keys one at a time across all of them (`--serialize-memory-hard-pbkdf`, made for boots
    /// that activate devices in parallel): concurrent opens never need more memory than one.
    pub fn open(
        &self,
        device: &Path,
        name: &str,
        key: &Secret,
        keyslot: Option<u32>,
        alongside: bool,
        timeout: Duration,
    ) -> Result<(), OpenError> {
        let keyslot = keyslot.map(|n| format!("--key-slot={n}"));
        let mut args: Vec<&std::ffi::OsStr> = vec!["open".as_ref(), "--key-file=-".as_ref()];
        args.extend(keyslot.as_deref().map(std::ffi::OsStr::new));
        if alongside {
            args.push("--serialize-memory-hard-pbkdf".as_ref());
        }
        args.extend([device.as_os_str(), name.as_ref()]);
        self.exec(&args, Input::Key(key), None, timeout).map(|_| ())
    }
}

fn describe(out: &Output) -> String {
    let words = out.stderr.trim();
    let code = exit_text(out.status);
    if words.is_empty() {
        code
    } else {
        format!("{words} ({code})")
    }
}

/// `exit code N` or `killed by signal N`.
pub fn exit_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "killed by a signal".to_string(),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a cryptsetup run reads on stdin.
pub enum Input<'a> {
    Nothing,
    /// A key: written to the pipe, which is then closed, so cryptsetup reads exactly these
    /// bytes and EOF (no newline is added).
    Key(&'a Secret),
    /// Not secret (token JSON).
    Text(&'a [u8]),
    /// The terminal: cryptsetup asks the person itself (and its prompt goes to our stderr).
    Terminal,
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs to completion or kills at `timeout`. `fd3` is a second key, on a pipe at file
/// descriptor 3 (`/dev/fd/3` on cryptsetup's command line), for commands that take two.
pub fn run(
    mut cmd: Command,
    input: Input,
    fd3: Option<&Secret>,
    timeout: Duration,
) -> Result<Output, OpenError> {
    set_stdio(&mut cmd, &input);
    let second = match fd3 {
        Some(_) => Some(pipe_at_fd3(&mut cmd)?),
        None => None,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| OpenError::Failed(format!("cannot run cryptsetup: {e}")))?;
    feed_keys(&mut child, input, second, fd3);
    let (out_reader, err_reader) = read_outputs(&mut child);
    let status = wait_bounded(&mut child, timeout)?;
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// stdin as `input` asks; stdout and stderr piped to us, except that a terminal run leaves
/// stderr on the terminal (cryptsetup's prompt goes there).
fn set_stdio(cmd: &mut Command, input: &Input) {
    let terminal = matches!(input, Input::Terminal);
    cmd.stdin(match input {
        Input::Nothing => Stdio::null(),
        Input::Terminal => Stdio::inherit(),
        Input::Key(_) | Input::Text(_) => Stdio::piped(),
    })
    .stdout(Stdio::piped())
    .stderr(if terminal {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
}

/// A pipe whose reading end the child gets as file descriptor 3. Both ends are returned: the
/// reading end must stay open in the parent until the child is spawned.
fn pipe_at_fd3(cmd: &mut Command) -> Result<(std::io::PipeReader, std::io::PipeWriter), OpenError> {
    let (reader, writer) = std::io::pipe().map_err(|e| OpenError::Failed(format!("pipe: {e}")))?;
    use std::os::fd::AsRawFd;
    let fd = reader.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it only renumbers a descriptor we own.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            // dup2 onto itself keeps close-on-exec set, so clear it in that case.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if ok < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((reader, writer))
}

/// Writes the key (or text) to stdin and the second key to fd 3, closing each pipe after it.
fn feed_keys(
    child: &mut Child,
    input: Input,
    second: Option<(std::io::PipeReader, std::io::PipeWriter)>,
    fd3: Option<&Secret>,
) {
    // Keys are far smaller than a pipe buffer, so these writes cannot block on a child that
    // does not read; a child that exited early gives EPIPE, reported by its exit code.
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = match input {
            Input::Key(k) => k.expose(),
            Input::Text(t) => t,
            _ => &[],
        };
        let _ = stdin.write_all(bytes);
    }
    if let (Some((reader, mut writer)), Some(key)) = (second, fd3) {
        drop(reader);
        let _ = writer.write_all(key.expose());
    }
}

/// Threads that read stdout (up to 4 MiB) and stderr (up to 64 KiB) while the child runs,
/// so that neither pipe fills and blocks it.
fn read_outputs(
    child: &mut Child,
) -> (
    std::thread::JoinHandle<Vec<u8>>,
    std::thread::JoinHandle<String>,
) {
    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = stdout_pipe {
            let _ = p.take(4 * 1024 * 1024).read_to_end(&mut v);
        }
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stderr_pipe {
            let _ = p.take(64 * 1024).read_to_string(&mut s);
        }
        s
    });
    (out_reader, err_reader)
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<ExitStatus, OpenError> {
    let start = Instant::now();
    let exited = ExitSignal::open(child.id());
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OpenError::TimedOut(timeout));
            }
            Ok(None) => exited.wait(timeout.saturating_sub(start.elapsed())),
            Err(e) => return Err(OpenError::Failed(format!("waiting for cryptsetup: {e}"))),
        }
    }
}

/// Wakes the waiter the moment a child exits: a pidfd (Linux >= 5.3) polled with the time
/// left. Without one (an older kernel), a 20 ms sleep: every cryptsetup call then ends up to
/// 20 ms late, which is what polling cost before (per call, three per volume at boot).
struct ExitSignal(Option<std::os::fd::OwnedFd>);

impl ExitSignal {
    fn open(pid: u32) -> ExitSignal {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a non-negative return is a descriptor this process now owns alone.
        ExitSignal((fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Returns when the child has exited, `left` has passed, or a signal interrupted.
    fn wait(&self, left: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else {
            std::thread::sleep(left.min(Duration::from_millis(20)));
            return;
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
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
        let r = run(cmd, Input::Nothing, None, Duration::from_millis(200));
        assert!(matches!(r, Err(OpenError::TimedOut(_))));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_key_arrives_on_stdin_without_a_newline() {
        let key = Secret::from_string("abc=".to_string());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "test \"$(od -An -c)\" = '   a   b   c   ='"]);
        let out = run(cmd, Input::Key(&key), None, Duration::from_secs(5)).unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn a_second_key_arrives_on_fd_3() {
        let first = Secret::from_string("one".to_string());
        let second = Secret::from_string("two".to_string());
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "test \"$(cat)\" = one && test \"$(cat /dev/fd/3)\" = two",
        ]);
        let out = run(
            cmd,
            Input::Key(&first),
            Some(&second),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(out.status.success(), "{}", out.stderr);
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
