//! /etc/resolv.conf for the DNS servers we were given: written only when there is none (the
//! static musl resolver reads it at every lookup), removed again only if it is still ours.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

pub const PATH: &str = "/etc/resolv.conf";

pub fn content(dns: &[Ipv4Addr]) -> String {
    let mut s = String::from("# written by vault-luks for the unlock; removed when it is done\n");
    for d in dns.iter().take(3) {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

/// Writes the file if nothing (not even a dangling link) is there. Ok(false): left alone.
pub fn write_if_absent(path: &Path, dns: &[Ipv4Addr]) -> std::io::Result<bool> {
    if path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    f.write_all(content(dns).as_bytes())?;
    Ok(true)
}

/// Removes the file if it still holds what we wrote. Ok(false): someone changed it; kept.
pub fn remove_if_ours(path: &Path, dns: &[Ipv4Addr]) -> std::io::Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(s) if s == content(dns) => std::fs::remove_file(path).map(|_| true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_only_when_absent_and_removed_only_when_ours() {
        let dir = std::env::temp_dir().join(format!("vault-luks-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        let _ = std::fs::remove_file(&path);
        let dns = [Ipv4Addr::new(192, 0, 2, 53)];
        assert!(write_if_absent(&path, &dns).unwrap());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("nameserver 192.0.2.53\n"));
        assert!(!write_if_absent(&path, &dns).unwrap(), "never overwritten");
        assert!(remove_if_ours(&path, &dns).unwrap());
        assert!(!path.exists());
        std::fs::write(&path, "nameserver 198.51.100.1\n").unwrap();
        assert!(!write_if_absent(&path, &dns).unwrap());
        assert!(
            !remove_if_ours(&path, &dns).unwrap(),
            "someone else's file stays"
        );
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/nonexistent/stub-resolv.conf", &path).unwrap();
        assert!(
            !write_if_absent(&path, &dns).unwrap(),
            "a dangling link is someone's too"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
