//! `vault-luks check --image`: initramfs images packed here with the real cpio and zstd/gzip
//! (an uncompressed early microcode archive in front, as both frameworks write them), laid out
//! as initramfs-tools and dracut lay them out (merged /usr), complete and with one piece
//! missing at a time. The check must pass the complete ones and name each missing piece with
//! what brings it.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const KVER: &str = "6.12.0-test-amd64";

/// What an image holds, as paths relative to its root, with file contents.
struct Tree {
    files: Vec<(String, Vec<u8>, u32)>,
    links: Vec<(&'static str, &'static str)>,
}

impl Tree {
    fn add(&mut self, path: &str, contents: &[u8], mode: u32) {
        self.files.push((path.to_string(), contents.to_vec(), mode));
    }

    fn without(mut self, path_part: &str) -> Tree {
        self.files.retain(|(p, _, _)| !p.contains(path_part));
        self
    }

    fn with(mut self, path: &str, contents: &[u8], mode: u32) -> Tree {
        self.files.retain(|(p, _, _)| p != path);
        self.add(path, contents, mode);
        self
    }
}

/// A sandbox with a configuration naming a ciphertext and a CA bundle.
struct Setup {
    sb: Sandbox,
    config: PathBuf,
    ciphertext: PathBuf,
    ca: PathBuf,
}

fn setup(name: &str) -> Setup {
    let sb = Sandbox::new(name);
    let ciphertext = sb.write("luks.passphrase", "vault:v1:abcdefghijklmnop\n");
    let ca = sb.write(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let config = sb.write_config(&json!({
        "vault": {"address": "https://vault.example.com:8200", "ca_cert": ca},
        "auth": {"method": "exoscale", "role": "storage"},
        "volumes": [{"name": "luks", "device": "/dev/mapper/vg.flex-lv.luks",
                     "ciphertext_file": ciphertext, "transit": {"key": "luks"}}]
    }));
    Setup {
        sb,
        config,
        ciphertext,
        ca,
    }
}

/// Everything an unlock needs, as `framework` lays it out.
fn complete(s: &Setup, framework: &str) -> Tree {
    let mut t = Tree {
        files: Vec::new(),
        links: vec![("lib", "usr/lib"), ("sbin", "usr/sbin"), ("bin", "usr/bin")],
    };
    t.add("usr/sbin/vault-luks", b"\x7fELF vault-luks", 0o755);
    t.add("usr/sbin/cryptsetup", b"\x7fELF cryptsetup", 0o755);
    t.add(
        "usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
        b"\x7fELF libgcc",
        0o644,
    );
    t.add(
        "etc/vault-luks/config.json",
        &std::fs::read(&s.config).unwrap(),
        0o600,
    );
    for f in [&s.ciphertext, &s.ca] {
        let inside = f.to_str().unwrap().trim_start_matches('/').to_string();
        t.add(&inside, &std::fs::read(f).unwrap(), 0o600);
    }
    let m = format!("usr/lib/modules/{KVER}/kernel");
    t.add(&format!("{m}/drivers/md/dm-mod.ko.zst"), b"ko", 0o644);
    t.add(&format!("{m}/drivers/md/dm-crypt.ko.zst"), b"ko", 0o644);
    t.add(&format!("{m}/crypto/xts.ko.zst"), b"ko", 0o644);
    t.add(
        &format!("{m}/arch/x86/crypto/aesni-intel.ko.zst"),
        b"ko",
        0o644,
    );
    t.add(
        &format!("usr/lib/modules/{KVER}/modules.builtin"),
        b"kernel/crypto/aes_generic.ko\n",
        0o644,
    );
    // The driver of each NIC this machine has, and virtio_net (the check looks at /sys).
    let mut nics = vec!["virtio_net".to_string()];
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path().join("device/driver/module")) {
            nics.push(target.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for n in nics {
        t.add(&format!("{m}/drivers/net/{n}.ko.zst"), b"ko", 0o644);
    }
    match framework {
        "initramfs-tools" => {
            t.add("conf/initramfs.conf", b"MODULES=most\n", 0o644);
            t.add("scripts/local-top/vault-luks", b"#!/bin/sh\n", 0o755);
            t.add("scripts/local-top/ORDER", b"", 0o644);
        }
        _ => {
            t.add(
                "usr/lib/dracut/modules.txt",
                b"systemd\ncrypt\nlvm\nvault-luks\n",
                0o644,
            );
            t.add(
                "usr/lib/systemd/system/vault-luks.service",
                b"[Unit]\n",
                0o644,
            );
            t.add("usr/sbin/vault-luks-initrd", b"#!/bin/sh\n", 0o755);
        }
    }
    t
}

/// Packs `tree` the way the frameworks do: an uncompressed early archive, then the main one
/// compressed with `compress` (e.g. ["zstd", "-q", "-c"]).
fn pack(s: &Setup, tree: &Tree, compress: &[&str]) -> PathBuf {
    let root = s.sb.dir.join("tree");
    let early = s.sb.dir.join("early");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&early);
    for (path, contents, mode) in &tree.files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    for (link, target) in &tree.links {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    std::fs::create_dir_all(early.join("kernel/x86/microcode")).unwrap();
    std::fs::write(
        early.join("kernel/x86/microcode/GenuineIntel.bin"),
        b"ucode",
    )
    .unwrap();
    let image = s.sb.dir.join("initrd.img");
    let sh = format!(
        "set -e; (cd '{}' && find . | cpio -o -H newc --quiet) >'{img}'; \
         (cd '{}' && find . | cpio -o -H newc --quiet | {}) >>'{img}'",
        early.display(),
        root.display(),
        compress.join(" "),
        img = image.display()
    );
    let status = Command::new("sh").arg("-c").arg(&sh).status().unwrap();
    assert!(status.success(), "packing the image failed");
    image
}

fn check(s: &Setup, image: &Path) -> Run {
    s.sb.run(&s.config, &["check", "--image", image.to_str().unwrap()])
}

fn assert_stdout(run: &Run, needle: &str) {
    assert!(
        run.stdout.contains(needle),
        "expected `{needle}` in stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

const ZSTD: &[&str] = &["zstd", "-q", "-c"];

#[test]
fn a_complete_image_of_each_framework_passes() {
    let s = setup("image-complete");
    let run = check(&s, &pack(&s, &complete(&s, "initramfs-tools"), ZSTD));
    run.assert_code(0);
    assert_stdout(&run, "(made by initramfs-tools)");
    assert_stdout(&run, "ok       vault-luks: usr/sbin/vault-luks");
    assert_stdout(&run, "ok       what runs it: scripts/local-top/vault-luks");
    assert_stdout(
        &run,
        "ok       configuration: etc/vault-luks/config.json, mode 600, the same as",
    );
    assert_stdout(
        &run,
        &format!(
            "ok       {}: the same as on this system",
            s.ciphertext.display()
        ),
    );
    assert_stdout(
        &run,
        &format!("ok       {}: the same as on this system", s.ca.display()),
    );
    assert_stdout(
        &run,
        "ok       libgcc_s.so.1: usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
    );
    assert_stdout(&run, "ok       kernel module: dm_crypt");
    assert_stdout(&run, "ok       this machine's NIC driver:");
    assert!(!run.stdout.contains("MISSING"), "{}", run.stdout);

    // dracut's layout, gzip (what dracut falls back to without zstd).
    let run = check(&s, &pack(&s, &complete(&s, "dracut"), &["gzip", "-c"]));
    run.assert_code(0);
    assert_stdout(&run, "(made by dracut)");
    assert_stdout(
        &run,
        "ok       what runs it: usr/lib/systemd/system/vault-luks.service",
    );
}

#[test]
fn an_image_without_libgcc_s_fails_and_says_what_brings_it() {
    let s = setup("image-no-libgcc");
    let tree = complete(&s, "initramfs-tools").without("libgcc_s.so.1");
    let run = check(&s, &pack(&s, &tree, ZSTD));
    run.assert_code(1)
        .assert_stderr("lacks 1 thing the unlock needs at boot");
    assert_stdout(
        &run,
        "MISSING  libgcc_s.so.1: glibc loads it when a thread of cryptsetup's exits",
    );
    assert_stdout(&run, "apt install libgcc-s1");
    assert_stdout(&run, "update-initramfs -u");
}

#[test]
fn a_dracut_image_without_the_module_fails_naming_dracut_network() {
    // What dracut writes when it drops the module ("depends on module ..., which can't be
    // installed"): no binary, no unit, no configuration or ciphertext.
    let s = setup("image-no-module");
    let tree = complete(&s, "dracut")
        .without("vault-luks")
        .without("luks.passphrase")
        .without("ca.pem");
    let run = check(&s, &pack(&s, &tree, ZSTD));
    run.assert_code(1).assert_stderr("lacks 5 things");
    assert_stdout(
        &run,
        "MISSING  vault-luks: dracut left out the vault-luks module",
    );
    assert_stdout(&run, "apt install dracut-network");
    assert_stdout(&run, "MISSING  what runs it at boot:");
    assert_stdout(&run, "MISSING  configuration:");
    assert_stdout(
        &run,
        &format!(
            "MISSING  {}: named in the configuration, not in the image",
            s.ciphertext.display()
        ),
    );
    assert_stdout(&run, "dracut --force");
}

#[test]
fn a_stale_image_is_caught_by_its_configuration_and_ciphertext() {
    // After `vault-luks rotate` without a rebuild: the image's ciphertext is the old one.
    let s = setup("image-stale");
    let inside = s
        .ciphertext
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let tree = complete(&s, "initramfs-tools")
        .with(&inside, b"vault:v1:the-old-one\n", 0o600)
        .with("etc/vault-luks/config.json", b"{}", 0o600);
    let run = check(&s, &pack(&s, &tree, ZSTD));
    run.assert_code(1).assert_stderr("lacks 2 things");
    assert_stdout(&run, &format!("MISSING  configuration: etc/vault-luks/config.json differs from {}: the image is older than the file", s.config.display()));
    assert_stdout(
        &run,
        &format!(
            "MISSING  {}: the image's copy differs from",
            s.ciphertext.display()
        ),
    );
    // A configuration others can read is refused too.
    let tree = complete(&s, "initramfs-tools").with(
        "etc/vault-luks/config.json",
        &std::fs::read(&s.config).unwrap(),
        0o644,
    );
    let run = check(&s, &pack(&s, &tree, ZSTD));
    run.assert_code(1);
    assert_stdout(&run, "is mode 644, readable by others");
}

#[test]
fn missing_modules_and_unreadable_images_are_errors() {
    let s = setup("image-modules");
    let tree = complete(&s, "initramfs-tools")
        .without("dm-crypt")
        .without("drivers/net/");
    let run = check(&s, &pack(&s, &tree, ZSTD));
    run.assert_code(1);
    assert_stdout(&run, &format!("MISSING  kernel module dm_crypt: the integration adds it; is it in the kernel's modules (modinfo -k {KVER} dm_crypt)?"));
    // What this machine's NICs ask for depends on its kernel: a module must be in the image,
    // a built-in driver needs nothing; with no NIC at all any network driver must be there.
    let (mut modules, mut builtin) = (0, 0);
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        if e.path().join("device/driver/module").exists() {
            modules += 1;
        } else if e.path().join("device/driver").exists() {
            builtin += 1;
        }
    }
    if modules > 0 {
        assert_stdout(&run, "MISSING  this machine's NIC driver");
    } else if builtin > 0 {
        assert_stdout(&run, "(built into the running kernel)");
    } else {
        assert_stdout(&run, "MISSING  a network driver");
    }
    // Built into the kernel counts as present.
    let tree = complete(&s, "initramfs-tools").without("aesni-intel").with(
        &format!("usr/lib/modules/{KVER}/modules.builtin"),
        b"kernel/arch/x86/crypto/aesni-intel.ko\n",
        0o644,
    );
    check(&s, &pack(&s, &tree, ZSTD)).assert_code(0);

    let garbage = s.sb.write("garbage.img", "this is not an initramfs");
    check(&s, &garbage)
        .assert_code(1)
        .assert_stderr("cannot list")
        .assert_stderr("unknown data at byte 0");
    check(&s, &s.sb.dir.join("absent.img"))
        .assert_code(1)
        .assert_stderr("cannot read");
}
