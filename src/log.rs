//! One line per event, to stderr (a person at a shell or a unit's journal) and/or /dev/kmsg
//! (the initramfs, where the kernel log is what reaches the console and survives into the
//! journal). With both, a line the kernel prints on the console is not written to stderr when
//! stderr is that console: an operator reads each event once, and `quiet` (which hides info
//! lines from the console) still shows them through stderr. No logging framework: the format
//! is fixed and tiny. Never pass a secret here; `Secret` has no Display, so the type system
//! helps.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Stderr = 0,
    Kmsg = 1,
    Both = 2,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "stderr" => Some(Target::Stderr),
            "kmsg" => Some(Target::Kmsg),
            "both" => Some(Target::Both),
            _ => None,
        }
    }
}

static TARGET: AtomicU8 = AtomicU8::new(Target::Stderr as u8);
static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_target(t: Target) {
    TARGET.store(t as u8, Ordering::Relaxed);
}

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

fn target() -> Target {
    match TARGET.load(Ordering::Relaxed) {
        1 => Target::Kmsg,
        2 => Target::Both,
        _ => Target::Stderr,
    }
}

// syslog levels, as /dev/kmsg expects them in the "<N>" prefix.
const ERR: u8 = 3;
const WARNING: u8 = 4;
const INFO: u8 = 6;
const DEBUG_LEVEL: u8 = 7;

pub fn error(args: Arguments) {
    emit(ERR, "error: ", args);
}

pub fn warn(args: Arguments) {
    emit(WARNING, "warning: ", args);
}

pub fn info(args: Arguments) {
    emit(INFO, "", args);
}

pub fn debug(args: Arguments) {
    if debug_enabled() {
        emit(DEBUG_LEVEL, "debug: ", args);
    }
}

fn emit(level: u8, prefix: &str, args: Arguments) {
    let line = format!("{prefix}{args}");
    let t = target();
    let wrote_kmsg = t != Target::Stderr && write_kmsg(level, &line);
    let stderr = match t {
        Target::Stderr => true,
        Target::Kmsg => !wrote_kmsg,
        Target::Both => !(wrote_kmsg && stderr_is_console() && kernel_prints(level)),
    };
    if stderr {
        let _ = writeln!(std::io::stderr().lock(), "vault-luks: {line}");
    }
}

/// Whether the kernel prints a record of `level` on its consoles: levels below the console
/// log level (the first field of /proc/sys/kernel/printk; `quiet` sets it to 4, `loglevel=`
/// to anything). Read per line: the initramfs may change it (`dmesg -n`).
fn kernel_prints(level: u8) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u8>().ok())
        .is_some_and(|console_level| level < console_level)
}

/// Whether stderr is a console the kernel prints on: /dev/console, or a terminal listed in
/// /proc/consoles (`console=ttyS0` makes ttyS0 one). An SSH session's terminal is not.
fn stderr_is_console() -> bool {
    static IS_CONSOLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS_CONSOLE.get_or_init(|| {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
            return false;
        };
        if !meta.file_type().is_char_device() {
            return false;
        }
        let consoles = std::fs::read_to_string("/proc/consoles").unwrap_or_default();
        is_console_device(
            libc::major(meta.rdev()),
            libc::minor(meta.rdev()),
            &consoles,
        )
    })
}

/// /dev/console is 5:1; each line of /proc/consoles ends with its device's MAJOR:MINOR.
fn is_console_device(major: u32, minor: u32, proc_consoles: &str) -> bool {
    let this = format!("{major}:{minor}");
    (major, minor) == (5, 1)
        || proc_consoles
            .lines()
            .any(|l| l.split_whitespace().last() == Some(this.as_str()))
}

/// One write() per record: /dev/kmsg treats each write as one log line.
fn write_kmsg(level: u8, line: &str) -> bool {
    let record = format!("<{level}>vault-luks[{}]: {line}\n", std::process::id());
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(record.as_bytes()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("kmsg"), Some(Target::Kmsg));
        assert_eq!(Target::parse("both"), Some(Target::Both));
        assert_eq!(Target::parse("stderr"), Some(Target::Stderr));
        assert_eq!(Target::parse("syslog"), None);
    }

    #[test]
    fn consoles_are_dev_console_and_the_listed_terminals() {
        let listed =
            "ttyS0                -W- (EC p a)    4:64\ntty0                 -WU (E  p  )    4:1\n";
        assert!(is_console_device(5, 1, ""));
        assert!(is_console_device(4, 64, listed));
        assert!(is_console_device(4, 1, listed));
        // A pseudo-terminal (an SSH session) and a console's neighbour are not.
        assert!(!is_console_device(136, 0, listed));
        assert!(!is_console_device(4, 65, listed));
        assert!(!is_console_device(4, 6, listed));
    }
}
