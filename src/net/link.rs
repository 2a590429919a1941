//! Network interfaces: what there is (read from /proc/net/dev and /sys/class/net), which one to
//! use, and whether it has a carrier.

use std::path::Path;

pub const SYS_NET: &str = "/sys/class/net";
const PROC_NET_DEV: &str = "/proc/net/dev";
const IFF_UP: u32 = 0x1;
const ARPHRD_ETHER: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub up: bool,
}

fn read(name: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(SYS_NET).join(name).join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A hexadecimal number of 1 to 8 digits (sysfs's `flags`, the octets of a MAC address, cpio
/// header fields). By hand: std's from_str_radix is instantiated once per integer type.
pub fn hex(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    s.chars()
        .try_fold(0u32, |n, c| Some(n << 4 | c.to_digit(16)?))
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        *b = u8::try_from(hex(parts.next()?)?).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One interface by name, any type (loopback included).
pub fn get(name: &str) -> Option<Link> {
    let index = read(name, "ifindex")?.parse().ok()?;
    let flags = read(name, "flags")?;
    let flags = hex(flags.strip_prefix("0x").unwrap_or(&flags))?;
    Some(Link {
        name: name.to_string(),
        index,
        mac: read(name, "address")
            .and_then(|a| parse_mac(&a))
            .unwrap_or_default(),
        up: flags & IFF_UP != 0,
    })
}

/// The Ethernet interfaces (virtual NICs included), by interface index. The names come from
/// /proc/net/dev (`  name: counters...` after two header lines), the same list as the
/// directory /sys/class/net, read as a file: listing a directory would bring std's directory
/// reading into the binary for this one call.
pub fn ethernet() -> Vec<Link> {
    let dev = std::fs::read_to_string(PROC_NET_DEV).unwrap_or_default();
    let mut links = Vec::new();
    for line in dev.lines() {
        let Some((name, _)) = line.split_once(':') else {
            continue; // a header line
        };
        let name = name.trim();
        if name == "lo" || read(name, "type").and_then(|t| t.parse().ok()) != Some(ARPHRD_ETHER) {
            continue;
        }
        links.extend(get(name));
    }
    crate::sort::sort_by(&mut links, |a, b| a.index < b.index);
    links
}

/// Carrier of a link that is up (the kernel refuses to say for one that is down).
pub fn has_carrier(name: &str) -> bool {
    read(name, "carrier").as_deref() == Some("1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_both_spellings() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(
            parse_mac("52-54-00-12-34-5A"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x5a])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:"), None);
        assert_eq!(parse_mac("52:54:00:12:34:100"), None);
        assert_eq!(
            (hex("1003"), hex(""), hex("123456789")),
            (Some(0x1003), None, None)
        );
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0x5a]),
            "52:54:00:12:34:5a"
        );
    }

    #[test]
    fn loopback_is_there_and_not_ethernet() {
        let lo = get("lo").expect("every Linux has lo");
        assert!(lo.index > 0);
        assert!(ethernet().iter().all(|l| l.name != "lo"));
    }
}
