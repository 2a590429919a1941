//! The LUKS2 metadata read from the device itself, checked the way cryptsetup checks it
//! (lib/luks2/luks2_disk_metadata.c, hdr_read_disk): two copies of the header, the primary at
//! offset 0 and the secondary right after it, each a 4096-byte binary header (magic, version,
//! size, sequence id, its own offset, checksum) followed by the JSON area; a copy counts when
//! all of it checks out, including the SHA-256 checksum over both parts and JSON that parses;
//! of two that count, the higher sequence id wins (cryptsetup would repair the other on its
//! next write; this is a reader, it writes nothing). One open and a few reads instead of a
//! `cryptsetup luksDump` start-up per volume at boot. Anything else (LUKS1, a checksum
//! algorithm other than sha256, both copies damaged, a read error) is an error with the
//! reason, and the caller asks cryptsetup.

use serde_json::Value;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The binary header; the JSON area follows it.
const BIN_LEN: usize = 4096;
const MAGIC_PRIMARY: &[u8] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8] = b"SKUL\xba\xbe";
/// Where the checksum sits in the binary header (zeroed while it is computed) and its size.
const CSUM_AT: usize = 448;
const CSUM_LEN: usize = 64;
/// Header sizes LUKS2 allows (binary header and JSON area together), which are also where a
/// secondary copy may start: cryptsetup searches them all when the primary cannot say.
const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

/// Why a LUKS1 volume has no copy here: the caller's fallback reads LUKS1 its own way.
const LUKS1: &str = "LUKS1, which has no JSON metadata";

/// One copy of the header that checked out.
struct Copy {
    seqid: u64,
    size: u64,
    json: Value,
}

/// The JSON metadata of `device`'s current LUKS2 header.
pub fn read(device: &Path) -> Result<Value, String> {
    let file = File::open(device).map_err(|e| format!("cannot open {}: {e}", device.display()))?;
    read_from(&file)
}

fn read_from(file: &File) -> Result<Value, String> {
    let primary = read_copy(file, 0, MAGIC_PRIMARY);
    if primary.as_ref().is_err_and(|why| why == LUKS1) {
        return Err(LUKS1.to_string());
    }
    let secondary = match &primary {
        Ok(p) => read_copy(file, p.size, MAGIC_SECONDARY),
        Err(_) => SECONDARY_OFFSETS
            .iter()
            .map(|&at| read_copy(file, at, MAGIC_SECONDARY))
            .find(Result::is_ok)
            .unwrap_or_else(|| Err("none found".to_string())),
    };
    match (primary, secondary) {
        (Ok(p), Ok(s)) if s.seqid > p.seqid => Ok(s.json),
        (Ok(p), _) => Ok(p.json),
        (Err(why), Ok(s)) => {
            crate::log::debug(format_args!(
                "primary LUKS2 header unusable ({why}): reading the secondary"
            ));
            Ok(s.json)
        }
        (Err(p), Err(s)) => Err(format!("primary header: {p}; secondary header: {s}")),
    }
}

/// The copy of the header at `at`, if every check passes.
fn read_copy(file: &File, at: u64, magic: &[u8]) -> Result<Copy, String> {
    let mut bin = vec![0u8; BIN_LEN];
    file.read_exact_at(&mut bin, at)
        .map_err(|e| format!("cannot read {BIN_LEN} bytes at {at}: {e}"))?;
    let be64 = |from: usize| u64::from_be_bytes(bin[from..from + 8].try_into().expect("8 bytes"));
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if at == 0 && &bin[..6] == MAGIC_PRIMARY && version == 1 {
        return Err(LUKS1.to_string());
    }
    if &bin[..6] != magic {
        return Err(format!("no LUKS2 magic at {at}"));
    }
    if version != 2 {
        return Err(format!("version {version}"));
    }
    let (size, seqid, own_offset) = (be64(8), be64(16), be64(256));
    if own_offset != at {
        return Err(format!("says it is at {own_offset}, read at {at}"));
    }
    if !SECONDARY_OFFSETS.contains(&size) {
        return Err(format!("bogus header size {size}"));
    }
    if at != 0 && at != size {
        return Err(format!("secondary at {at} but the header size is {size}"));
    }
    let algorithm = c_string(&bin[72..104]);
    if algorithm != b"sha256" {
        return Err(format!(
            "checksum algorithm {} (only sha256 is checked here)",
            String::from_utf8_lossy(algorithm)
        ));
    }
    let mut area = vec![0u8; size as usize - BIN_LEN];
    file.read_exact_at(&mut area, at + BIN_LEN as u64)
        .map_err(|e| format!("cannot read the JSON area at {at}: {e}"))?;
    let stored: [u8; 32] = bin[CSUM_AT..CSUM_AT + 32].try_into().expect("32 bytes");
    bin[CSUM_AT..CSUM_AT + CSUM_LEN].fill(0);
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    sha.update(&bin);
    sha.update(&area);
    if sha.finish().as_ref() != stored {
        return Err(format!("checksum mismatch at {at}"));
    }
    let json =
        serde_json::from_slice(c_string(&area)).map_err(|e| format!("JSON area at {at}: {e}"))?;
    Ok(Copy { seqid, size, json })
}

/// The bytes before the first NUL (the JSON area and the text fields are NUL-padded).
fn c_string(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |end| &b[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    fn cryptsetup() -> &'static str {
        ["/usr/sbin/cryptsetup", "/sbin/cryptsetup"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("cryptsetup (scripts/setup.sh installs it)")
    }

    /// A LUKS2 (or LUKS1) image file made by the real cryptsetup (`extra`: more luksFormat
    /// options), with a token on LUKS2, in a directory of its own.
    fn image(name: &str, version: u32, extra: &[&str]) -> (PathBuf, PathBuf) {
        let cs = cryptsetup();
        let dir =
            std::env::temp_dir().join(format!("vault-luks-luks2-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("v.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(20 << 20)
            .unwrap();
        let run = |args: &[&str], stdin: &[u8]| {
            let mut c = Command::new(cs)
                .args(args)
                .arg(&img)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut c.stdin.take().unwrap(), stdin).unwrap();
            assert!(c.wait().unwrap().success(), "cryptsetup {args:?}");
        };
        let format = format!("--type=luks{version}");
        let mut args = vec![
            "luksFormat",
            "--batch-mode",
            &format,
            "--pbkdf=pbkdf2",
            "--pbkdf-force-iterations=1000",
            "--key-file=-",
        ];
        args.extend(extra);
        run(&args, b"passphrase");
        if version == 2 {
            let token = br#"{"type":"vault-luks","keyslots":["0"],"ciphertext":"vault:v1:abc"}"#;
            run(&["token", "import", "--json-file=-"], token);
        }
        (dir, img)
    }

    /// What cryptsetup itself says the metadata is.
    fn luks_dump(img: &Path) -> Value {
        let out = Command::new(cryptsetup())
            .args(["luksDump", "--dump-json-metadata"])
            .arg(img)
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn patch(img: &Path, at: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    fn seqid(img: &Path, at: u64) -> u64 {
        let mut b = [0u8; 8];
        File::open(img)
            .unwrap()
            .read_exact_at(&mut b, at + 16)
            .unwrap();
        u64::from_be_bytes(b)
    }

    #[test]
    fn reads_what_cryptsetup_reads() {
        // The default 16 KiB header, and a larger one (its secondary copy further on).
        for (name, extra) in [
            ("16k", &[][..]),
            ("64k", &["--luks2-metadata-size=64k"][..]),
        ] {
            let (dir, img) = image(name, 2, extra);
            let json = read(&img).unwrap();
            assert_eq!(json, luks_dump(&img), "{name}");
            assert_eq!(json["tokens"]["0"]["ciphertext"], "vault:v1:abc");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_damaged_primary_leaves_the_secondary() {
        let (dir, img) = image("primary", 2, &[]);
        // One byte of the primary's JSON area: its checksum no longer matches.
        patch(&img, BIN_LEN as u64 + 10, b"X");
        let json = read(&img).unwrap();
        assert_eq!(json["tokens"]["0"]["ciphertext"], "vault:v1:abc");
        // The primary's magic gone too: the secondary is found by searching.
        patch(&img, 0, b"\0\0\0\0\0\0");
        assert_eq!(read(&img).unwrap(), json);
        // Both damaged: an error that says why, for the caller's fallback.
        patch(&img, 0x4000 + BIN_LEN as u64 + 10, b"X");
        let why = read(&img).unwrap_err();
        assert_eq!(
            why,
            "primary header: no LUKS2 magic at 0; secondary header: none found"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wrong_checksum_is_refused_and_the_higher_seqid_wins() {
        let (dir, img) = image("csum", 2, &[]);
        assert_eq!(seqid(&img, 0), seqid(&img, 0x4000));
        // The primary one write ahead (as if the secondary's update never landed), with a
        // checksum that does not match: the secondary is used.
        let ahead = (seqid(&img, 0) + 1).to_be_bytes();
        patch(&img, 16, &ahead);
        let file = File::open(&img).unwrap();
        let why = read_copy(&file, 0, MAGIC_PRIMARY).err().unwrap();
        assert_eq!(why, "checksum mismatch at 0");
        assert!(read_from(&file).is_ok());
        // The checksum put right: the primary counts again, and its seqid is the higher.
        let mut bin = vec![0u8; 0x4000];
        file.read_exact_at(&mut bin, 0).unwrap();
        bin[CSUM_AT..CSUM_AT + CSUM_LEN].fill(0);
        let sum = ring::digest::digest(&ring::digest::SHA256, &bin);
        patch(&img, CSUM_AT as u64, sum.as_ref());
        assert_eq!(
            read_copy(&file, 0, MAGIC_PRIMARY).unwrap().seqid,
            seqid(&img, 0x4000) + 1
        );
        // Which copy wins shows in the JSON: the secondary's token changed, at a higher seqid.
        let mut second = vec![0u8; 0x4000];
        file.read_exact_at(&mut second, 0x4000).unwrap();
        let text =
            String::from_utf8_lossy(&second[BIN_LEN..]).replace("vault:v1:abc", "vault:v1:xyz");
        second[BIN_LEN..].copy_from_slice(text.as_bytes());
        second[16..24].copy_from_slice(&(seqid(&img, 0) + 1).to_be_bytes());
        second[CSUM_AT..CSUM_AT + CSUM_LEN].fill(0);
        let sum = ring::digest::digest(&ring::digest::SHA256, &second);
        second[CSUM_AT..CSUM_AT + 32].copy_from_slice(sum.as_ref());
        patch(&img, 0x4000, &second);
        assert_eq!(
            read_from(&file).unwrap()["tokens"]["0"]["ciphertext"],
            "vault:v1:xyz"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn luks1_and_not_luks_are_errors_for_the_fallback() {
        let (dir, img) = image("luks1", 1, &[]);
        let why = read(&img).unwrap_err();
        assert!(why.starts_with("LUKS1"), "{why}");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        assert!(read(&img).is_err());
        assert!(read(&dir.join("missing.img"))
            .unwrap_err()
            .contains("cannot open"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
