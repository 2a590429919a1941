//! Asking a person for a passphrase when Vault cannot give the key, through the boot's own
//! password machinery where there is one, so that the console, plymouth and the remote tools
//! (systemd-tty-ask-password-agent over SSH, cryptroot's passfifo) all work:
//!   systemd   `systemd-ask-password`: systemd initramfs (dracut) and running systems
//!   askpass   `/lib/cryptsetup/askpass`: initramfs-tools (console, plymouth, passfifo)
//!   console   our own prompt on the terminal (echo off) where neither exists
//!   program   `VAULT_LUKS_ASKPASS=PROGRAM`: any program that prints the passphrase
//! Each runs as a child that prints the passphrase on a pipe to us, so a prompt can be
//! withdrawn at any moment by killing it: a late Vault success never races with a person.

use crate::secret::Secret;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Systemd(PathBuf),
    Askpass(PathBuf),
    Console,
    Program(PathBuf),
}

/// What `--prompt=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Systemd,
    Askpass,
    Console,
}

impl Choice {
    pub fn parse(s: &str) -> Option<Choice> {
        Some(match s {
            "auto" => Choice::Auto,
            "systemd" => Choice::Systemd,
            "askpass" => Choice::Askpass,
            "console" => Choice::Console,
            _ => return None,
        })
    }
}

const ASKPASS: &str = "/lib/cryptsetup/askpass";

impl Method {
    /// The method for `choice` on this system; `None` when the one asked for is not here.
    pub fn find(choice: Choice) -> Option<Method> {
        if let Some(p) = std::env::var_os("VAULT_LUKS_ASKPASS").filter(|p| !p.is_empty()) {
            return Some(Method::Program(PathBuf::from(p)));
        }
        let systemd = || {
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join("systemd-ask-password"))
                .find(|p| p.exists())
        };
        let askpass = || Some(PathBuf::from(ASKPASS)).filter(|p| p.exists());
        match choice {
            Choice::Systemd => systemd().map(Method::Systemd),
            Choice::Askpass => askpass().map(Method::Askpass),
            Choice::Console => Some(Method::Console),
            // systemd's agents only answer when systemd is PID 1.
            Choice::Auto => Path::new("/run/systemd/system")
                .exists()
                .then(systemd)
                .flatten()
                .map(Method::Systemd)
                .or_else(|| askpass().map(Method::Askpass))
                .or(Some(Method::Console)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Method::Systemd(_) => {
                "systemd-ask-password (console, plymouth, systemd-tty-ask-password-agent)".into()
            }
            Method::Askpass(_) => {
                format!("{ASKPASS} (console, plymouth, /lib/cryptsetup/passfifo)")
            }
            Method::Console => "the terminal".into(),
            Method::Program(p) => p.display().to_string(),
        }
    }

    fn command(&self, volume: &str, message: &str) -> std::io::Result<Command> {
        let mut c = match self {
            Method::Systemd(p) => {
                let mut c = Command::new(p);
                c.arg(format!("--id=vault-luks:{volume}"))
                    .arg("--icon=drive-harddisk")
                    .arg("--timeout=0")
                    .arg(message);
                c
            }
            Method::Askpass(p) | Method::Program(p) => {
                let mut c = Command::new(p);
                c.arg(message);
                c
            }
            Method::Console => {
                // Ourselves, in the hidden `ask-console` mode: a child we can kill like the others.
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("ask-console").arg(message);
                c
            }
        };
        c.env("CRYPTTAB_NAME", volume)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // askpass's console method, our own and a user's program ask on the terminal they are
        // given (the console, in an initramfs). systemd-ask-password asks on a terminal when
        // it has one (an operator's SSH shell) and otherwise through the password agents
        // (console, plymouth: the initramfs unit, whose stdin is not a terminal).
        if !matches!(self, Method::Systemd(_))
            || std::io::IsTerminal::is_terminal(&std::io::stdin())
        {
            c.stdin(Stdio::inherit());
        }
        Ok(c)
    }
}

/// A prompt on screen: a child whose stdout will carry the passphrase.
pub struct Prompt {
    pub volume: String,
    child: Child,
}

impl Prompt {
    pub fn start(method: &Method, volume: &str, message: &str) -> std::io::Result<Prompt> {
        let child = method.command(volume, message)?.spawn()?;
        Ok(Prompt {
            volume: volume.to_string(),
            child,
        })
    }

    /// The child's stdout, for a reader thread; `None` when already taken.
    pub fn take_output(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Withdraw the prompt (the volume was opened another way). SIGTERM lets the asker tidy up
    /// (systemd-ask-password removes its request, askpass restores the terminal).
    pub fn withdraw(mut self) {
        // SAFETY: signalling our own child, which has not been reaped yet (so the pid is its).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reap a prompt whose output has ended.
    pub fn finish(mut self) {
        let _ = self.child.wait();
    }
}

/// Reads what the asker printed: the passphrase, without the one newline some askers add.
/// `None` when it printed nothing (cancelled, timed out, killed).
pub fn read_answer(mut out: impl Read) -> Option<Secret> {
    let mut answer = Secret::with_capacity(MAX_PASSPHRASE);
    let mut byte = [0u8; 1];
    let complete = loop {
        match out.read(&mut byte) {
            Ok(0) => break true,
            // Longer than cryptsetup takes from a prompt: an asker gone mad.
            Ok(_) if !answer.extend_within(&byte) => break false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    zeroize::Zeroize::zeroize(&mut byte);
    answer.strip_newline();
    (complete && !answer.expose().is_empty()).then_some(answer)
}

/// cryptsetup's own limit for a passphrase read from a terminal.
const MAX_PASSPHRASE: usize = 512;

/// `vault-luks ask-console MESSAGE`: our own prompt, on the controlling terminal or else the
/// console, with echo off; the answer on stdout. Withdrawn with SIGTERM, it restores echo first.
pub fn ask_console(message: &str) -> std::io::Result<()> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/console")
        })?;
    catch_sigterm();
    let _guard = TerminalGuard::echo_off(&tty);
    (&tty).write_all(format!("{message} ").as_bytes())?;
    let mut answer = Secret::with_capacity(MAX_PASSPHRASE);
    let mut byte = [0u8; 1];
    loop {
        match (&tty).read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' || byte[0] == b'\r' => break,
            Ok(_) => {
                if !answer.extend_within(&byte) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && terminated() => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    zeroize::Zeroize::zeroize(&mut byte);
    (&tty).write_all(b"\n")?;
    let mut out = std::io::stdout().lock();
    out.write_all(answer.expose())?;
    out.flush()
}

static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn terminated() -> bool {
    TERMINATED.load(std::sync::atomic::Ordering::SeqCst)
}

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// SIGTERM (the prompt withdrawn) interrupts the read instead of killing us, so the terminal
/// guard restores echo on the way out. No SA_RESTART: the read must return EINTR.
fn catch_sigterm() {
    // SAFETY: a zeroed sigaction with a handler that only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Turns terminal echo off and restores the terminal's settings when dropped.
pub struct TerminalGuard {
    fd: std::os::fd::RawFd,
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    pub fn echo_off(tty: &std::fs::File) -> TerminalGuard {
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data; fd is open for the guard's lifetime (the caller's File).
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(fd, &mut t) == 0).then_some(t)
        };
        if let Some(mut t) = saved {
            t.c_lflag &= !(libc::ECHO | libc::ECHONL);
            t.c_lflag |= libc::ICANON;
            // SAFETY: as above.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        }
        TerminalGuard { fd, saved }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the settings read in echo_off on the same fd.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_lose_one_trailing_newline_only() {
        assert_eq!(read_answer(&b"pass\n"[..]).unwrap().expose(), b"pass");
        assert_eq!(read_answer(&b"pass"[..]).unwrap().expose(), b"pass");
        assert_eq!(read_answer(&b"pa ss\n\n"[..]).unwrap().expose(), b"pa ss\n");
        assert!(read_answer(&b""[..]).is_none());
        assert!(read_answer(&b"\n"[..]).is_none());
    }

    #[test]
    fn choices_parse() {
        assert_eq!(Choice::parse("auto"), Some(Choice::Auto));
        assert_eq!(Choice::parse("askpass"), Some(Choice::Askpass));
        assert_eq!(Choice::parse("plymouth"), None);
    }
}
