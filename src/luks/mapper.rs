//! Whether a mapping is active, from the kernel's own device-mapper table in sysfs
//! (`/sys/block/dm-N/dm/name`), the way lsblk and udev read it: a few small file reads instead
//! of a `cryptsetup status` start-up per question (one per volume at boot, more in the race
//! and at close). Both initramfs frameworks mount sysfs before anything of ours runs; without
//! it (a chroot, a container), `cryptsetup status` answers as before.

use super::cryptsetup::Cryptsetup;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where sysfs is mounted; tests point it at an emulated tree their cryptsetup keeps.
const SYSFS_ENV: &str = "VAULT_LUKS_SYSFS";

/// Whether a device-mapper device called `name` exists (/dev/mapper/NAME), whoever made it.
/// `cs` answers when sysfs cannot; an error when neither can.
pub fn is_active(cs: Option<&Cryptsetup>, name: &str, timeout: Duration) -> Result<bool, String> {
    is_active_in(&sysfs_root(), cs, name, timeout)
}

fn is_active_in(
    root: &Path,
    cs: Option<&Cryptsetup>,
    name: &str,
    timeout: Duration,
) -> Result<bool, String> {
    match names(root) {
        Ok(names) => Ok(names.iter().any(|n| n == name)),
        Err(why) => {
            crate::log::debug(format_args!("{why}: asking cryptsetup status {name}"));
            cs.ok_or_else(|| format!("{why}, and cryptsetup was not found"))?
                .is_active(name, timeout)
        }
    }
}

fn sysfs_root() -> PathBuf {
    std::env::var_os(SYSFS_ENV).map_or_else(|| PathBuf::from("/sys"), PathBuf::from)
}

/// The names of the device-mapper devices the kernel has now. An error only when sysfs has no
/// block directory at all (not mounted); no dm-N entry means none (dm_mod not even loaded).
fn names(root: &Path) -> Result<Vec<String>, String> {
    let block = root.join("block");
    let entries =
        std::fs::read_dir(&block).map_err(|e| format!("cannot list {}: {e}", block.display()))?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b"dm-"))
        // A device removed between the listing and this read was not there.
        .filter_map(|e| std::fs::read_to_string(e.path().join("dm/name")).ok())
        .map(|n| n.strip_suffix('\n').unwrap_or(&n).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(devices: &[(&str, Option<&str>)]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let root =
            std::env::temp_dir().join(format!("vault-luks-sysfs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("block")).unwrap();
        for (dev, name) in devices {
            let dir = root.join("block").join(dev);
            std::fs::create_dir_all(dir.join("dm")).unwrap();
            if let Some(name) = name {
                std::fs::write(dir.join("dm/name"), format!("{name}\n")).unwrap();
            }
        }
        root
    }

    #[test]
    fn reads_the_names_of_dm_devices_only() {
        let root = tree(&[
            ("dm-0", Some("vg.flex-lv")),
            ("dm-3", Some("luks")),
            // Not device-mapper, even with a name file; and a dm device half gone.
            ("loop0", Some("impostor")),
            ("dm-7", None),
        ]);
        let mut found = names(&root).unwrap();
        found.sort();
        assert_eq!(found, vec!["luks", "vg.flex-lv"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_name_is_matched_whole() {
        let root = tree(&[("dm-0", Some("luks-data"))]);
        let found = names(&root).unwrap();
        assert!(!found.iter().any(|n| n == "luks"));
        assert!(found.iter().any(|n| n == "luks-data"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn sysfs_answers_without_starting_cryptsetup() {
        let root = tree(&[("dm-0", Some("luks"))]);
        let absent = Cryptsetup {
            path: PathBuf::from("/nonexistent/cryptsetup"),
        };
        let t = Duration::from_secs(5);
        assert_eq!(is_active_in(&root, Some(&absent), "luks", t), Ok(true));
        assert_eq!(is_active_in(&root, Some(&absent), "other", t), Ok(false));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn without_sysfs_cryptsetup_status_answers() {
        let no_sysfs = Path::new("/nonexistent-sysfs");
        let t = Duration::from_secs(5);
        // `status NAME` exits 0 for an active mapping, non-zero otherwise.
        let says = |answer: &str| Cryptsetup {
            path: PathBuf::from(answer),
        };
        assert_eq!(
            is_active_in(no_sysfs, Some(&says("/bin/true")), "luks", t),
            Ok(true)
        );
        assert_eq!(
            is_active_in(no_sysfs, Some(&says("/bin/false")), "luks", t),
            Ok(false)
        );
    }

    #[test]
    fn no_block_directory_is_no_answer() {
        assert!(names(Path::new("/nonexistent-sysfs")).is_err());
        // Neither sysfs nor cryptsetup: an error, not a guess.
        let r = is_active_in(
            Path::new("/nonexistent-sysfs"),
            None,
            "luks",
            Duration::from_secs(1),
        );
        assert!(r.unwrap_err().contains("cryptsetup was not found"));
    }
}
