//! Reads the file list of an initramfs image: uncompressed cpio archives (the early microcode
//! part) followed by one compressed archive, as both initramfs-tools and dracut write them.
//! Decompression is left to the tool that made the image (zstd, gzip, xz, ...), which the
//! machine that built it has; only "newc" cpio headers are parsed here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long the decompressor may take: a large image decompresses in seconds.
const DECOMPRESS_TIMEOUT: Duration = Duration::from_secs(120);
/// Larger files are listed but never kept in memory (the ones we compare are small).
const KEEP_LIMIT: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (mode & 0o7777).
    pub mode: u32,
    /// A symlink's target; the content of a regular file the caller asked to keep.
    pub data: Option<Zeroizing<Vec<u8>>>,
}

/// Paths without a leading "/" or "./", as the kernel unpacks them under /.
pub type Listing = BTreeMap<String, Entry>;

/// Lists `image`; `keep` names the (normalised) paths whose content is kept.
pub fn list(image: &[u8], keep: &dyn Fn(&str) -> bool) -> Result<Listing, String> {
    let mut listing = Listing::new();
    let mut rest = image;
    loop {
        while let [0, tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return Ok(listing);
        }
        if rest.starts_with(b"070701") || rest.starts_with(b"070702") {
            let mut slice = rest;
            let mut reader = Counted::new(&mut slice);
            read_archive(&mut reader, &mut listing, keep)?;
            rest = &rest[reader.count as usize..];
            continue;
        }
        let (tool, args) = decompressor(rest).ok_or_else(|| {
            format!(
                "unknown data at byte {} of the image (not cpio, nor a compression vault-luks knows)",
                image.len() - rest.len()
            )
        })?;
        decompress_and_read(tool, args, rest, &mut listing, keep)?;
        return Ok(listing);
    }
}

/// The tool that decompresses data starting with these bytes.
fn decompressor(data: &[u8]) -> Option<(&'static str, &'static [&'static str])> {
    const TABLE: &[(&[u8], &str, &[&str])] = &[
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd", &["-d", "-c", "-q"]),
        (&[0x1f, 0x8b], "gzip", &["-d", "-c"]),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz", &["-d", "-c"]),
        (&[0x02, 0x21, 0x4c, 0x18], "lz4", &["-d", "-c"]),
        (b"BZh", "bzip2", &["-d", "-c"]),
        (&[0x89, b'L', b'Z', b'O'], "lzop", &["-d", "-c"]),
        (&[0x5d, 0, 0], "xz", &["--format=lzma", "-d", "-c"]),
    ];
    TABLE
        .iter()
        .find(|(magic, _, _)| data.starts_with(magic))
        .map(|(_, tool, args)| (*tool, *args))
}

fn decompress_and_read(
    tool: &str,
    args: &[&str],
    data: &[u8],
    listing: &mut Listing,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {tool} to decompress the image: {e}"))?;
    let pid = child.id() as i32;
    let done = AtomicBool::new(false);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (result, status, killed) = std::thread::scope(|scope| {
        // The bound: a decompressor that stops producing is killed, which ends the read below.
        let watchdog = scope.spawn(|| {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() >= DECOMPRESS_TIMEOUT {
                    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        // A child that exits early gives EPIPE here; its exit status says why.
        scope.spawn(move || {
            let _ = stdin.write_all(data);
        });
        let mut buffered = std::io::BufReader::with_capacity(1 << 16, stdout);
        let mut reader = Counted::new(&mut buffered);
        let mut result = Ok(());
        // A compressed part may hold several archives back to back.
        while result.is_ok() {
            match skip_zeros(&mut reader) {
                Ok(true) => result = read_archive(&mut reader, listing, keep),
                Ok(false) => break,
                Err(e) => result = Err(e),
            }
        }
        // Drain, so the decompressor is never stuck writing to a pipe nobody reads.
        let _ = skip(&mut reader, u64::MAX);
        let status = child.wait().map_err(|e| format!("waiting for {tool}: {e}"));
        done.store(true, Ordering::Relaxed);
        (result, status, watchdog.join().unwrap_or(false))
    });
    if killed {
        return Err(format!(
            "{tool} did not finish decompressing the image within {}s",
            DECOMPRESS_TIMEOUT.as_secs()
        ));
    }
    let status = status?;
    if !status.success() {
        return Err(format!(
            "{tool} could not decompress the image ({})",
            crate::luks::cryptsetup::exit_text(status)
        ));
    }
    result
}

/// Skips the zero padding between archives; false at the end of the data.
fn skip_zeros(r: &mut Counted) -> Result<bool, String> {
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) => return Ok(false),
            Ok(_) if b[0] == 0 => continue,
            Ok(_) => {
                r.pushed_back = Some(b[0]);
                r.count -= 1;
                return Ok(true);
            }
            Err(e) => return Err(format!("reading the image: {e}")),
        }
    }
}

/// Reads and drops up to `n` bytes; how many there were.
fn skip(r: &mut Counted, n: u64) -> std::io::Result<u64> {
    let mut buf = [0u8; 8192];
    let mut done = 0;
    while done < n {
        let want = (n - done).min(buf.len() as u64) as usize;
        match r.read(&mut buf[..want])? {
            0 => break,
            got => done += got as u64,
        }
    }
    Ok(done)
}

/// One cpio "newc" archive, up to and including its TRAILER!!! entry.
fn read_archive(
    r: &mut Counted,
    listing: &mut Listing,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    loop {
        let mut header = [0u8; 110];
        r.read_exact(&mut header)
            .map_err(|e| format!("cpio header at byte {}: {e}", r.count))?;
        if &header[..6] != b"070701" && &header[..6] != b"070702" {
            return Err(format!(
                "not a cpio (newc) header at byte {}",
                r.count - 110
            ));
        }
        let field = |i: usize| -> Result<u64, String> {
            let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap_or("");
            crate::net::link::hex(text)
                .map(u64::from)
                .ok_or_else(|| format!("bad cpio header field `{text}`"))
        };
        let (mode, size, name_size) = (field(1)?, field(6)?, field(11)?);
        if name_size == 0 || name_size > 4096 {
            return Err(format!("bad cpio name length {name_size}"));
        }
        let mut name = vec![0u8; name_size as usize];
        r.read_exact(&mut name)
            .map_err(|e| format!("cpio name: {e}"))?;
        r.align4()?;
        name.pop(); // the NUL
        let name = String::from_utf8_lossy(&name).into_owned();
        if name == "TRAILER!!!" {
            return Ok(());
        }
        let path = normalise(&name);
        let kind = match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            _ => Kind::Other,
        };
        let wanted = kind == Kind::Symlink || (kind == Kind::File && keep(&path));
        let data = if wanted && size <= KEEP_LIMIT {
            let mut v = Zeroizing::new(vec![0u8; size as usize]);
            r.read_exact(&mut v)
                .map_err(|e| format!("cpio data of {name}: {e}"))?;
            Some(v)
        } else {
            if skip(r, size).map_err(|e| format!("cpio data of {name}: {e}"))? != size {
                return Err(format!("the image ends inside {name}"));
            }
            None
        };
        r.align4()?;
        if !path.is_empty() {
            listing.insert(
                path,
                Entry {
                    kind,
                    mode: (mode & 0o7777) as u32,
                    data,
                },
            );
        }
    }
}

/// "./usr/bin/x", "/usr/bin/x", "usr/lib/../bin/x" and "usr/bin/x" are the same file: the
/// path as the kernel unpacks it under /, without a leading "/" ("" for the root itself).
pub fn normalise(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

/// A reader that counts what it has read (cpio pads to 4-byte boundaries of the archive).
/// Over `dyn Read`: one copy of the parser for the image file and the decompressor's pipe.
struct Counted<'r> {
    inner: &'r mut dyn Read,
    count: u64,
    pushed_back: Option<u8>,
}

impl<'r> Counted<'r> {
    fn new(inner: &'r mut dyn Read) -> Self {
        Counted {
            inner,
            count: 0,
            pushed_back: None,
        }
    }

    fn align4(&mut self) -> Result<(), String> {
        let pad = (4 - self.count % 4) % 4;
        let mut buf = [0u8; 3];
        self.read_exact(&mut buf[..pad as usize])
            .map_err(|e| format!("cpio padding: {e}"))
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.pushed_back.take() {
            buf[0] = b;
            self.count += 1;
            return Ok(1);
        }
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One newc entry, as cpio -H newc writes it.
    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, mode, data) in entries {
            entry(&mut out, name, *mode, data);
        }
        entry(&mut out, "TRAILER!!!", 0, b"");
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn reads_back_to_back_archives_with_kinds_modes_and_kept_content() {
        let mut image = archive(&[
            ("kernel", 0o40755, b""),
            ("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"ucode"),
        ]);
        image.extend(archive(&[
            (".", 0o40755, b""),
            ("./etc/vault-luks/config.json", 0o100600, b"{\"x\":1}"),
            ("lib", 0o120777, b"usr/lib"),
            ("usr/lib/big", 0o100644, &[7u8; 1000]),
        ]));
        let l = list(&image, &|p| p == "etc/vault-luks/config.json").unwrap();
        assert_eq!(l["kernel/x86/microcode/GenuineIntel.bin"].kind, Kind::File);
        let config = &l["etc/vault-luks/config.json"];
        assert_eq!((config.kind, config.mode), (Kind::File, 0o600));
        assert_eq!(
            config.data.as_deref().map(|d| &d[..]),
            Some(&b"{\"x\":1}"[..])
        );
        assert_eq!(l["lib"].kind, Kind::Symlink);
        assert_eq!(
            l["lib"].data.as_deref().map(|d| &d[..]),
            Some(&b"usr/lib"[..])
        );
        assert!(
            l["usr/lib/big"].data.is_none(),
            "content not asked for is not kept"
        );
        assert!(!l.contains_key(""), "the root entry is not a path");
    }

    #[test]
    fn truncated_and_foreign_data_are_errors_not_short_listings() {
        let image = archive(&[("etc/a", 0o100644, b"abcdef")]);
        let cut = &image[..120];
        let err = list(cut, &|_| false).unwrap_err();
        assert!(err.contains("ends inside etc/a"), "{err}");
        let err = list(&image[..60], &|_| false).unwrap_err();
        assert!(err.contains("cpio header"), "{err}");
        let err = list(b"\x7fELF not an image", &|_| false).unwrap_err();
        assert!(err.contains("unknown data at byte 0"), "{err}");
    }

    #[test]
    fn paths_are_normalised_as_the_kernel_unpacks_them() {
        assert_eq!(normalise("./etc/x"), "etc/x");
        assert_eq!(normalise("/usr/lib/../lib/./x"), "usr/lib/x");
        assert_eq!(normalise("a/b/../../c"), "c");
        assert_eq!(normalise("."), "");
    }

    #[test]
    fn each_compression_is_recognised_by_its_magic() {
        assert_eq!(
            decompressor(&[0x28, 0xb5, 0x2f, 0xfd, 1]).unwrap().0,
            "zstd"
        );
        assert_eq!(decompressor(&[0x1f, 0x8b, 8]).unwrap().0, "gzip");
        assert_eq!(decompressor(b"\xfd7zXZ\0rest").unwrap().0, "xz");
        assert_eq!(decompressor(b"BZh91AY").unwrap().0, "bzip2");
        assert!(decompressor(b"070701").is_none());
    }
}
