//! `vault-luks check --image [PATH]`: proves an initramfs image can unlock before anyone reboots
//! into it. Lists the image (cpio.rs) and looks for every piece the unlock needs at boot: the
//! binary and what runs it, the configuration and each file it names (byte for byte the ones
//! in /etc, so a stale image is caught), cryptsetup and libgcc_s.so.1 (which glibc loads with
//! dlopen, invisible to ldd-based copies), the device-mapper and cipher modules, and a driver
//! for this machine's NIC. A missing piece is named with what brings it. The install script and
//! the kernel hooks run it after every rebuild.

mod cpio;

use crate::config::Config;
use crate::error::{Error, Result, Step};
use cpio::{Kind, Listing};
use std::path::{Path, PathBuf};

/// Where an image keeps the configuration, whatever the file's path on the system.
const IMAGE_CONFIG: &str = "etc/vault-luks/config.json";
/// The modules every unlock loads: device-mapper, dm-crypt and LUKS2's default aes-xts-plain64.
const MODULES: &[&str] = &["dm_mod", "dm_crypt", "xts", "aesni_intel"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framework {
    InitramfsTools,
    Dracut,
    Unknown,
}

/// The running kernel's image, where Debian (or Fedora) keeps it.
pub fn default_path() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let debian = PathBuf::from(format!("/boot/initrd.img-{release}"));
    let fedora = PathBuf::from(format!("/boot/initramfs-{release}.img"));
    if !debian.exists() && fedora.exists() {
        fedora
    } else {
        debian
    }
}

/// Checks `image` (default: the running kernel's); prints one line per piece; fails when one
/// is missing. `config_path` is the file `config` was read from.
pub fn check(config: &Config, config_path: &Path, image: Option<&Path>) -> Result<()> {
    let path = image.map_or_else(default_path, Path::to_path_buf);
    let fail = |detail: String, hint: &str| Error::failed(Step::Image, detail, hint);
    let bytes = std::fs::read(&path).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", path.display()),
            "name the image: vault-luks check --image /boot/initrd.img-VERSION",
        )
    })?;
    let referenced: Vec<String> = config
        .referenced_files()
        .iter()
        .map(|f| cpio::normalise(&f.to_string_lossy()))
        .collect();
    let keep = |p: &str| {
        p == IMAGE_CONFIG || p.ends_with("/modules.builtin") || referenced.iter().any(|f| f == p)
    };
    let listing = cpio::list(&bytes, &keep).map_err(|e| {
        fail(
            format!("cannot list {}: {e}", path.display()),
            "is it an initramfs image? lsinitramfs or lsinitrd should list it",
        )
    })?;
    drop(bytes);
    let image = Image { listing };
    let mut report = Report::default();
    image.check_pieces(config, config_path, &mut report);
    print!("{}", report.render(&path, image.framework()));
    match report.missing {
        0 => Ok(()),
        n => Err(fail(
            format!(
                "{} lacks {n} thing{} the unlock needs at boot (MISSING above)",
                path.display(),
                if n == 1 { "" } else { "s" }
            ),
            "do what each line says, rebuild the initramfs, and check again before rebooting",
        )),
    }
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    missing: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.lines.push(format!("  ok       {what}: {detail}"));
    }

    fn missing(&mut self, what: &str, why_and_fix: impl std::fmt::Display) {
        self.missing += 1;
        self.lines.push(format!("  MISSING  {what}: {why_and_fix}"));
    }

    fn render(&self, path: &Path, framework: Framework) -> String {
        let made_by = match framework {
            Framework::InitramfsTools => "made by initramfs-tools",
            Framework::Dracut => "made by dracut",
            Framework::Unknown => "made by neither initramfs-tools nor dracut",
        };
        let mut out = format!("initramfs {} ({made_by}):\n", path.display());
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

struct Image {
    listing: Listing,
}

impl Image {
    fn framework(&self) -> Framework {
        if self.file("conf/initramfs.conf").is_some() {
            Framework::InitramfsTools
        } else if self
            .listing
            .keys()
            .any(|p| p.starts_with("usr/lib/dracut/"))
        {
            Framework::Dracut
        } else {
            Framework::Unknown
        }
    }

    /// The entry at `path`, following symbolic links in its directories (merged /usr: lib ->
    /// usr/lib) and at its end.
    fn resolve(&self, path: &str) -> Option<(String, &cpio::Entry)> {
        let mut path = cpio::normalise(path);
        for _ in 0..16 {
            let mut moved = false;
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..=parts.len() {
                let prefix = parts[..i].join("/");
                let Some(e) = self.listing.get(&prefix) else {
                    continue;
                };
                if e.kind != Kind::Symlink {
                    continue;
                }
                let target = String::from_utf8_lossy(e.data.as_deref().map_or(&[][..], |d| d));
                let base = if target.starts_with('/') {
                    String::new()
                } else {
                    parts[..i - 1].join("/")
                };
                let joined = cpio::normalise(&format!("{base}/{target}"));
                let rest = parts[i..].join("/");
                path = if rest.is_empty() {
                    joined
                } else {
                    format!("{joined}/{rest}")
                };
                moved = true;
                break;
            }
            if !moved {
                return self.listing.get(&path).map(|e| (path, e));
            }
        }
        None
    }

    fn file(&self, path: &str) -> Option<(String, &cpio::Entry)> {
        self.resolve(path).filter(|(_, e)| e.kind == Kind::File)
    }

    /// The first regular file (in path order) named `name`, in any directory.
    fn find_named(&self, name: &str) -> Option<&str> {
        self.listing
            .iter()
            .find(|(p, e)| e.kind == Kind::File && p.rsplit('/').next() == Some(name))
            .map(|(p, _)| p.as_str())
    }

    /// The kernel version whose modules the image holds.
    fn kernel_version(&self) -> Option<&str> {
        self.listing.keys().find_map(|p| {
            let rest = p
                .strip_prefix("usr/lib/modules/")
                .or_else(|| p.strip_prefix("lib/modules/"))?;
            let (version, _) = rest.split_once('/')?;
            Some(version)
        })
    }

    /// Module names (dashes as underscores) present as files, and built into the kernel.
    fn modules(&self) -> (Vec<String>, Vec<String>) {
        let mut files = Vec::new();
        let mut builtin = Vec::new();
        for (p, e) in &self.listing {
            if !(p.starts_with("usr/lib/modules/") || p.starts_with("lib/modules/")) {
                continue;
            }
            if p.ends_with("/modules.builtin") {
                let text = String::from_utf8_lossy(e.data.as_deref().map_or(&[][..], |d| d));
                builtin.extend(text.lines().filter_map(module_name));
            } else if e.kind == Kind::File {
                if let Some(m) = module_name(p) {
                    files.push(m);
                }
            }
        }
        (files, builtin)
    }

    /// Every piece the unlock needs at boot, in the order of the printed lines: what the
    /// integration adds, the configuration and its files, the tools, the kernel modules.
    fn check_pieces(&self, config: &Config, config_path: &Path, r: &mut Report) {
        let framework = self.framework();
        let rebuild = match framework {
            Framework::Dracut => "dracut --force",
            _ => "update-initramfs -u",
        };
        let mut left_out = LeftOut::new(framework);
        self.check_integration(framework, r, &mut left_out);
        self.check_configuration(config, config_path, rebuild, r, &mut left_out);
        self.check_tools(rebuild, r);
        self.check_modules(rebuild, r);
    }

    /// The binary and what runs it at boot (the framework's hook or unit).
    fn check_integration(&self, framework: Framework, r: &mut Report, left_out: &mut LeftOut) {
        match ["usr/sbin/vault-luks", "sbin/vault-luks"]
            .iter()
            .find_map(|p| self.file(p))
        {
            Some((p, _)) => r.ok("vault-luks", p),
            None => left_out.missing(r, "vault-luks"),
        }
        let runners: &[&str] = match framework {
            Framework::InitramfsTools => &["scripts/local-top/vault-luks"],
            _ => &[
                "usr/lib/systemd/system/vault-luks.service",
                "usr/lib/dracut/hooks/pre-mount/50-vault-luks-pre-mount.sh",
                "var/lib/dracut/hooks/pre-mount/50-vault-luks-pre-mount.sh",
            ],
        };
        match runners.iter().find_map(|p| self.file(p)) {
            Some((p, _)) => r.ok("what runs it", p),
            None => left_out.missing(r, "what runs it at boot"),
        }
    }

    /// The configuration (mode 600, byte for byte the system's) and each file it names: a
    /// difference means the image is stale.
    fn check_configuration(
        &self,
        config: &Config,
        config_path: &Path,
        rebuild: &str,
        r: &mut Report,
        left_out: &mut LeftOut,
    ) {
        let stale = format!("the image is older than the file: rebuild it ({rebuild})");
        match self.file(IMAGE_CONFIG) {
            None => left_out.missing(r, "configuration"),
            Some((_, e)) if e.mode & 0o077 != 0 => r.missing(
                "configuration",
                format!("{IMAGE_CONFIG} is mode {:o}, readable by others: the integration makes it 600; rebuild the image ({rebuild})", e.mode),
            ),
            Some((_, e)) => match same_as(e, config_path) {
                Ok(()) => r.ok("configuration", format!("{IMAGE_CONFIG}, mode 600, the same as {}", config_path.display())),
                Err(why) => r.missing("configuration", format!("{IMAGE_CONFIG} {why} {}: {stale}", config_path.display())),
            },
        }
        for f in config.referenced_files() {
            let shown = f.display();
            match self.file(&f.to_string_lossy()) {
                None => r.missing(
                    &shown.to_string(),
                    format!("named in the configuration, not in the image: {stale}"),
                ),
                Some((_, e)) => match same_as(e, &f) {
                    Ok(()) => r.ok(&shown.to_string(), "the same as on this system"),
                    Err(why) => r.missing(
                        &shown.to_string(),
                        format!("the image's copy {why} {shown}: {stale}"),
                    ),
                },
            }
        }
    }

    /// cryptsetup, and libgcc_s.so.1, which glibc loads with dlopen (ldd-based copies miss it).
    fn check_tools(&self, rebuild: &str, r: &mut Report) {
        match self.find_named("cryptsetup") {
            Some(p) => r.ok("cryptsetup", p),
            None => r.missing(
                "cryptsetup",
                format!("apt install cryptsetup-bin, then rebuild the image ({rebuild})"),
            ),
        }
        match self.find_named("libgcc_s.so.1") {
            Some(p) => r.ok("libgcc_s.so.1", p),
            None => r.missing("libgcc_s.so.1", format!("glibc loads it when a thread of cryptsetup's exits, and cryptsetup aborts without it; vault-luks's integration copies it (apt install libgcc-s1): rebuild the image ({rebuild})")),
        }
    }

    /// The device-mapper and cipher modules every unlock loads, then a driver for the NIC.
    fn check_modules(&self, rebuild: &str, r: &mut Report) {
        let (files, builtin) = self.modules();
        let kernel = self.kernel_version().unwrap_or("?");
        let has = |m: &str| files.iter().chain(&builtin).any(|f| f == m);
        for m in MODULES {
            if has(m) {
                r.ok("kernel module", m);
            } else {
                r.missing(&format!("kernel module {m}"), format!("the integration adds it; is it in the kernel's modules (modinfo -k {kernel} {m})? Then rebuild the image ({rebuild})"));
            }
        }
        check_nic_drivers(&files, &has, rebuild, r);
    }
}

/// This machine's NIC drivers in the image (`has` says whether a module is, as a file or
/// built in); where /sys shows no NIC, any common network driver among `files`.
fn check_nic_drivers(files: &[String], has: &dyn Fn(&str) -> bool, rebuild: &str, r: &mut Report) {
    let nics = nic_drivers();
    if nics.is_empty() {
        // No NIC with a driver here (a container, a chroot): any network driver.
        match files.iter().find(|m| NETWORK_DRIVERS.contains(&m.as_str())) {
            Some(m) => r.ok("a network driver", m),
            None => r.missing("a network driver", format!("vault-luks reaches Vault over the network, and the image has no NIC driver: rebuild it ({rebuild}; initramfs-tools: MODULES=most)")),
        }
    }
    for nic in nics {
        match nic {
            Nic::Module(m) if !has(&m) => r.missing(&format!("this machine's NIC driver {m}"), format!("vault-luks reaches Vault through this NIC: rebuild the image ({rebuild}; initramfs-tools: MODULES=most, or add {m} to /etc/initramfs-tools/modules; dracut: add_drivers+=\" {m} \")")),
            Nic::Module(m) => r.ok("this machine's NIC driver", m),
            Nic::BuiltIn(d) => r.ok("this machine's NIC driver", format!("{d} (built into the running kernel)")),
        }
    }
}

/// The three pieces the integration adds together (the binary, what runs it, the
/// configuration) are missing together: the reason, for this framework, is said once.
struct LeftOut {
    why: &'static str,
    said: bool,
}

impl LeftOut {
    /// Why the integration's pieces would be missing from an image of `framework`.
    fn new(framework: Framework) -> LeftOut {
        let why = match framework {
            Framework::InitramfsTools => "the hook /etc/initramfs-tools/hooks/vault-luks did not add it: is vault-luks installed (scripts/install.sh)? `update-initramfs -u` shows the hook's errors",
            Framework::Dracut => "dracut left out the vault-luks module: `dracut --force` names the reason in its lines about vault-luks (vault_luks_network=\"dracut\" needs the network module: apt install dracut-network)",
            Framework::Unknown => "vault-luks integrates with initramfs-tools and dracut only",
        };
        LeftOut { why, said: false }
    }

    /// Reports `what` missing: with the reason the first time, pointing to it after.
    fn missing(&mut self, r: &mut Report, what: &str) {
        let why = if self.said {
            "left out with vault-luks (above)"
        } else {
            self.why
        };
        self.said = true;
        r.missing(what, why);
    }
}

/// The drivers of the virtual and common NICs (a sample, for when /sys shows no NIC).
const NETWORK_DRIVERS: &[&str] = &[
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "ena",
    "vmxnet3",
    "hv_netvsc",
    "xen_netfront",
    "mlx5_core",
];

/// Whether the image's copy has the file's content: `Ok`, or why not ("differs from ...").
fn same_as(entry: &cpio::Entry, file: &Path) -> std::result::Result<(), &'static str> {
    let on_disk =
        zeroize::Zeroizing::new(std::fs::read(file).map_err(|_| "cannot be compared with")?);
    match &entry.data {
        Some(d) if d[..] == on_disk[..] => Ok(()),
        _ => Err("differs from"),
    }
}

/// `kernel/drivers/md/dm-mod.ko.zst` -> `dm_mod`; None for what is not a module.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|s| file.strip_suffix(s))?;
    Some(stem.replace('-', "_"))
}

enum Nic {
    /// The module that drives it (dashes as underscores).
    Module(String),
    /// A driver compiled into the running kernel.
    BuiltIn(String),
}

/// The drivers of this machine's Ethernet interfaces (net::link's list), from sysfs.
fn nic_drivers() -> Vec<Nic> {
    let mut seen: Vec<String> = Vec::new();
    let mut nics = Vec::new();
    let base = |p: &Path| -> Option<String> {
        let target = std::fs::read_link(p).ok()?;
        Some(target.file_name()?.to_string_lossy().replace('-', "_"))
    };
    for link in crate::net::link::ethernet() {
        let device = Path::new(crate::net::link::SYS_NET)
            .join(&link.name)
            .join("device");
        let nic = match (
            base(&device.join("driver/module")),
            base(&device.join("driver")),
        ) {
            (Some(m), _) => Nic::Module(m),
            (None, Some(d)) => Nic::BuiltIn(d),
            (None, None) => continue, // virtual: a bridge, a veth, a tunnel
        };
        let (Nic::Module(name) | Nic::BuiltIn(name)) = &nic;
        if !seen.contains(name) {
            seen.push(name.clone());
            nics.push(nic);
        }
    }
    nics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_ignore_compression_and_dashes() {
        assert_eq!(
            module_name("lib/modules/6.1/kernel/drivers/md/dm-mod.ko.zst").as_deref(),
            Some("dm_mod")
        );
        assert_eq!(
            module_name("kernel/arch/x86/crypto/aesni-intel.ko").as_deref(),
            Some("aesni_intel")
        );
        assert_eq!(module_name("lib/modules/6.1/modules.dep"), None);
    }
}
