//! Where a block device is mounted, from /proc/self/mountinfo, matched by device number (the
//! kernel's own answer, whatever name the mount was made with).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Mount points of `device` (e.g. /dev/mapper/luks), deepest first, so unmounting in this
/// order never trips over a mount below another.
pub fn mount_points(device: &Path) -> Vec<String> {
    let Ok(meta) = std::fs::metadata(device) else {
        return Vec::new();
    };
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points = parse(&info, major, minor);
    let depth = |p: &String| p.matches('/').count();
    crate::sort::sort_by(&mut points, |a, b| depth(a) > depth(b));
    points
}

fn parse(mountinfo: &str, major: u32, minor: u32) -> Vec<String> {
    let wanted = format!("{major}:{minor}");
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_id, _parent, dev, _root, point) =
                (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            (dev == wanted).then(|| unescape(point))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
        35 22 253:1 / /luks rw,relatime shared:20 - ext4 /dev/mapper/luks rw\n\
        36 35 253:1 /sub /luks/in\\040here rw - ext4 /dev/mapper/luks rw\n\
        37 22 253:10 / /other rw - ext4 /dev/mapper/other rw\n";

    #[test]
    fn finds_every_mount_of_the_device_by_number() {
        assert_eq!(parse(SAMPLE, 253, 1), vec!["/luks", "/luks/in here"]);
        assert_eq!(parse(SAMPLE, 253, 10), vec!["/other"]);
        assert!(parse(SAMPLE, 8, 0).is_empty());
    }

    #[test]
    fn a_device_that_is_not_there_is_mounted_nowhere() {
        assert!(mount_points(Path::new("/dev/mapper/does-not-exist")).is_empty());
    }
}
