//! One line per event, to stderr (a person at a shell or a unit's journal) and/or /dev/kmsg
//! (the initramfs, where the kernel log is what reaches the console and survives into the
//! journal). No logging framework: the format is fixed and tiny. Never pass a secret here;
//! `Secret` has no Display, so the type system helps.

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
    let mut wrote_kmsg = false;
    if matches!(t, Target::Kmsg | Target::Both) {
        wrote_kmsg = write_kmsg(level, &line);
    }
    if t != Target::Kmsg || !wrote_kmsg {
        let _ = writeln!(std::io::stderr().lock(), "vault-luks: {line}");
    }
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
}
