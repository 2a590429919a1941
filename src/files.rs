//! Writing files so that a crash leaves either the old file or the new one, never a torn one:
//! write a temporary file beside it, fsync, rename over, fsync the directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory holding `path` ("." for a bare file name, whose parent is "").
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Rename `from` over `to` and make the rename itself durable (fsync the directory).
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    std::fs::File::open(dir_of(to))?.sync_all()
}

pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = dir_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.vault-luks-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        rename_durably(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_the_given_mode_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("vault-luks-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("luks.passphrase");
        std::fs::write(&p, "old").unwrap();
        write_atomically(&p, b"vault:v2:new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "vault:v2:new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bare_file_name_renames_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("luks.passphrase")), PathBuf::from("."));
        assert_eq!(
            dir_of(Path::new("/etc/luks.passphrase")),
            PathBuf::from("/etc")
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let p = Path::new("/nonexistent-dir/file");
        assert!(write_atomically(p, b"x", 0o600).is_err());
    }
}
