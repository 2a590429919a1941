#!/usr/bin/env bash
# shellcheck disable=SC2154 # flavour, img, repo, vault_port, tls, ... come from suite.sh's setup
# deb.sh FLAVOUR — the Debian package, the way an admin uses it, for one flavour (run on the
# minimal guest: only what the README tells a user to install). suite.sh's setup (OpenBao behind
# the Exoscale stand-ins, the cached data disk), then, on a fresh root of that guest with its
# initramfs in /boot as a real system has it:
#   install: `apt-get install ./vault-luks_V_amd64.deb` (make deb) in a chroot of the guest's
#     root: every file in place, /etc/vault-luks root's alone, no rebuild while nothing is
#     configured (and it says what to do next); the article's volume configured, then
#     `dpkg-reconfigure vault-luks`: the initramfs rebuilt the framework's way and proved
#     (`can unlock`). Boot: luks unlocked in the initramfs, mounted (fstab with nofail), its
#     close unit and vault-luks-late.service pulled in by the generator; on the running guest an
#     empty LV enrolled (data2).
#   upgrade: the next version (scripts/deb.sh --version) installed over it with apt: the
#     configuration kept byte for byte (enroll's data2 in it), the initramfs rebuilt and proved.
#     Boot: both volumes unlocked in the initramfs, mounted, both closed at shutdown.
#   remove: `apt-get remove vault-luks`: the rebuilt initramfs holds nothing of vault-luks.
#     Boot: the system comes up with both volumes closed (nofail), nothing of vault-luks runs.
#   purge: `apt-get purge vault-luks`: no file of the package is left, /etc/vault-luks is gone;
#     the admin's ciphertext file stays.
# The package commands run in a chroot of the guest's root on the host: the maintainer scripts
# are the package's, the framework's tools are the guest's; under TCG the guest itself needs
# ~10 minutes per initramfs build (see boot.sh's lifecycle).
#
# Run directly, it is `VM_VARIANT=minimal suite.sh FLAVOUR deb`; suite.sh sources it for deb_part.

deb_part() {
    vm_part deb-install
    local crate debs first next root kver disks guest files
    debs=$VM_WORK/debs
    mkdir -p "$debs"
    # The next version is the first's (deb.sh holds it to Cargo.toml's) with a suffix.
    if ! first=$(DEB_OUT=$debs "$repo/scripts/deb.sh" 2>"$VM_WORK/deb-build.log") ||
        ! crate=$(dpkg-deb -f "$first" Version) ||
        ! next=$(DEB_OUT=$debs "$repo/scripts/deb.sh" --version "$crate+vmtest1" 2>>"$VM_WORK/deb-build.log"); then
        tail -n 30 "$VM_WORK/deb-build.log" >&2
        vm_die "make deb failed"
    fi
    vm_log "ok   make deb: $(basename "$first") and $(basename "$next"), lintian clean"

    # A fresh root of the guest, as its installer left it: the framework's image in /boot.
    root=$VM_WORK/deb-root
    vm_prepare_root "$flavour" "$root"
    kver=$(vm_guest_kver "$root")
    cp "$img/initrd-stock.img" "$root/boot/initrd.img-$kver"
    cp "$first" "$next" "$root/tmp/"
    vm_chroot_mount "$root"
    deb_apt "$root" install install -y "/tmp/$(basename "$first")"
    grep -q "config.json does not exist yet: .*dpkg-reconfigure vault-luks" "$VM_WORK/deb-install.log" ||
        vm_die "deb install: postinst did not say what to do next"
    if grep -q -E 'update-initramfs: Generating|dracut: Generating' "$VM_WORK/deb-install.log"; then
        vm_die "deb install: the initramfs was rebuilt with nothing configured"
    fi
    for f in usr/sbin/vault-luks usr/sbin/vault-luks-keyscript usr/share/initramfs-tools/hooks/vault-luks \
        usr/share/initramfs-tools/scripts/local-top/vault-luks usr/lib/dracut/modules.d/90vault-luks/module-setup.sh \
        usr/lib/systemd/system/vault-luks-late.service usr/lib/systemd/system/vault-luks-close@.service \
        usr/lib/systemd/system-generators/vault-luks-generator usr/share/man/man8/vault-luks.8.gz \
        usr/share/man/man5/vault-luks.json.5.gz usr/share/bash-completion/completions/vault-luks \
        usr/share/doc/vault-luks/examples/config.json etc/initramfs/post-update.d/vault-luks \
        etc/kernel/postinst.d/zz-vault-luks; do
        [ -e "$root/$f" ] || vm_die "deb install: /$f is not installed"
    done
    [ "$(stat -c %a "$root/etc/vault-luks")" = 700 ] || vm_die "deb install: /etc/vault-luks is not mode 700"
    files=$(vm_chroot "$root" dpkg-query -L vault-luks)

    # Configured as the README says: the article's volume, its ciphertext, the private CA.
    install -m 0600 "$VM_WORK/luks.passphrase" "$root/etc/luks.passphrase"
    install -m 0644 "$tls/ca.pem" "$root/etc/vault-luks/ca.pem"
    write_config '{"unlock": 120}' "$(volume luks /etc/luks.passphrase)"
    mkdir -p "$root/luks"
    echo "/dev/mapper/luks /luks ext4 defaults,nofail 0 2" >>"$root/etc/fstab"
    vm_chroot "$root" dpkg-reconfigure vault-luks >"$VM_WORK/deb-configure.log" 2>&1 ||
        { tail -n 30 "$VM_WORK/deb-configure.log" >&2; vm_die "deb: dpkg-reconfigure vault-luks failed"; }
    grep -q "initrd.img-$kver can unlock (vault-luks check --image)" "$VM_WORK/deb-configure.log" ||
        { tail -n 30 "$VM_WORK/deb-configure.log" >&2; vm_die "deb: dpkg-reconfigure did not rebuild and prove the initramfs"; }
    deb_generator "$root"
    vm_chroot_umount "$root"
    vm_log "ok   deb install: every file in place, nothing rebuilt until configured; dpkg-reconfigure rebuilt the initramfs and proved it"

    disks=$VM_WORK/deb
    mkdir -p "$disks"
    cp "$root/boot/initrd.img-$kver" "$disks/initrd.img"
    cp --sparse=always "$VM_DATA/data.img" "$disks/data.img"
    vm_mkfs_dir "$root" "$disks/root.img" 2G vmroot
    rm -rf -- "$root"

    deb_boot installed
    vm_wait_for 'vault-luks\[[0-9]+\]: luks: unlocked as /dev/mapper/luks' 300
    vm_wait_for 'VMTEST DONE' 600
    vm_wait_for 'vault-luks\[[0-9]+\]: luks: closed[[:space:]]*$' 120
    vm_wait_exit 120
    vm_expect package "$crate:ii"
    vm_expect luks_source /dev/mapper/luks
    vm_expect luks_marker ok
    vm_expect luks_kmsg_unlocked yes
    vm_expect luks_close_unit active
    vm_expect late_unit active
    vm_expect enroll ok
    vm_log "ok   deb boot: luks unlocked and mounted, the units pulled in by the generator, data2 enrolled"

    vm_part deb-upgrade
    guest=$VM_WORK/deb-guest
    deb_mount "$disks/root.img" "$guest"
    local before after
    before=$(sha256sum <"$guest/etc/vault-luks/config.json")
    grep -q '"data2"' "$guest/etc/vault-luks/config.json" || vm_die "deb upgrade: enroll did not add data2 to the configuration"
    deb_apt "$guest" upgrade install -y "/tmp/$(basename "$next")"
    after=$(sha256sum <"$guest/etc/vault-luks/config.json")
    [ "$before" = "$after" ] || vm_die "deb upgrade: the configuration changed"
    grep -q "initrd.img-$kver can unlock (vault-luks check --image)" "$VM_WORK/deb-upgrade.log" ||
        { tail -n 30 "$VM_WORK/deb-upgrade.log" >&2; vm_die "deb upgrade: the initramfs was not rebuilt and proved"; }
    # shellcheck disable=SC2016 # dpkg-query's format
    [ "$(vm_chroot "$guest" dpkg-query -W -f '${Version}' vault-luks)" = "$crate+vmtest1" ] ||
        vm_die "deb upgrade: vault-luks is not at $crate+vmtest1"
    deb_umount "$guest" "$kver" "$disks/initrd.img"
    vm_log "ok   deb upgrade: $crate -> $crate+vmtest1, configuration kept, initramfs rebuilt with data2 and proved"

    deb_boot upgraded
    vm_wait_for 'VMTEST DONE' 600
    vm_wait_exit 120
    for v in luks data2; do
        grep -a -q -E "vault-luks\[[0-9]+\]: $v: closed[[:space:]]*$" "$VM_LOG" || vm_die "deb upgraded: $v was not closed at shutdown"
        vm_expect "${v}_source" "/dev/mapper/$v"
        vm_expect "${v}_marker" ok
        vm_expect "${v}_kmsg_unlocked" yes
        vm_expect "${v}_close_unit" active
    done
    vm_expect package "$crate+vmtest1:ii"
    vm_log "ok   deb boot after the upgrade: luks and data2 unlocked in the initramfs, mounted, closed at shutdown"

    vm_part deb-remove
    deb_mount "$disks/root.img" "$guest"
    deb_apt "$guest" remove remove -y vault-luks
    local listing
    case $flavour in
        initramfs-tools) listing=$(vm_chroot "$guest" lsinitramfs "/boot/initrd.img-$kver") ;;
        dracut) listing=$(vm_chroot "$guest" lsinitrd "/boot/initrd.img-$kver") ;;
    esac
    [ -n "$listing" ] || vm_die "deb remove: cannot list the rebuilt initramfs"
    if grep -q vault-luks <<<"$listing"; then
        vm_die "deb remove: the rebuilt initramfs still holds $(grep -m 1 vault-luks <<<"$listing")"
    fi
    [ -e "$guest/etc/vault-luks/config.json" ] || vm_die "deb remove: the configuration went with the package (only purge removes it)"
    deb_umount "$guest" "$kver" "$disks/initrd.img"
    vm_log "ok   deb remove: the rebuilt initramfs holds nothing of vault-luks; the configuration is kept"

    deb_boot removed
    vm_wait_for 'VMTEST DONE' 600
    vm_wait_exit 120
    vm_expect package "$crate+vmtest1:rc"
    vm_expect luks_mapped no
    vm_expect luks_mounted no
    vm_expect late_unit absent
    vm_expect vault_luks_lines 0
    if grep -a -q 'vault-luks' "$VM_LOG"; then vm_die "deb removed: vault-luks on the console: $(grep -a -m 1 'vault-luks' "$VM_LOG")"; fi
    vm_log "ok   deb boot after remove: up with the volumes closed (nofail), nothing of vault-luks ran"

    vm_part deb-purge
    deb_mount "$disks/root.img" "$guest"
    deb_apt "$guest" purge purge -y vault-luks
    local status
    # shellcheck disable=SC2016 # dpkg-query's format
    status=$(vm_chroot "$guest" dpkg-query -W -f '${db:Status-Abbrev}' vault-luks 2>/dev/null || true)
    case $status in
        "" | un*) ;;
        *) vm_die "deb purge: dpkg still has vault-luks: $(vm_chroot "$guest" dpkg -l vault-luks | tail -n 1)" ;;
    esac
    [ ! -e "$guest/etc/vault-luks" ] || vm_die "deb purge: /etc/vault-luks is left"
    local f left=()
    while read -r f; do
        [ -d "$guest$f" ] || [ ! -e "$guest$f" ] || left+=("$f")
    done <<<"$files"
    [ ${#left[@]} = 0 ] || vm_die "deb purge: left behind: ${left[*]}"
    [ -e "$guest/etc/luks.passphrase" ] || vm_die "deb purge: the admin's ciphertext file went too"
    deb_umount "$guest"
    vm_log "ok   deb purge: none of the package's $(wc -l <<<"$files") paths left, /etc/vault-luks gone, the ciphertext file kept"
}

# deb_generator ROOT: vault-luks-generator, run in a chroot of ROOT as systemd runs it, writes
# what the configuration asks for; a volume whose name systemd escapes (data-x) gets the units
# systemd names for its device (dev-mapper-data\x2dx.device), its close unit the name back
# as %I. The boots prove the units work; this, the names. The configuration is put back.
deb_generator() {
    local root=$1 out=$1/tmp/generator config=$1/etc/vault-luks/config.json
    local wants=$1/tmp/generator/sysinit.target.wants
    rm -rf "$out"
    vm_chroot "$root" /usr/lib/systemd/system-generators/vault-luks-generator /tmp/generator /tmp/generator.early /tmp/generator.late
    if ! { [ -L "$wants/vault-luks-late.service" ] && [ -L "$wants/vault-luks-close@luks.service" ] &&
        grep -q '^After=vault-luks-late.service$' "$out/dev-mapper-luks.device.d/50-vault-luks.conf"; }; then
        find "$out" >&2
        vm_die "deb: vault-luks-generator did not write the late unit, luks's close unit and its device's drop-in"
    fi
    cp -p "$config" "$VM_WORK/config.deb.json"
    write_config '{"unlock": 120}' "$(volume luks /etc/luks.passphrase)" "$(volume data-x /etc/luks.passphrase)"
    rm -rf "$out"
    vm_chroot "$root" /usr/lib/systemd/system-generators/vault-luks-generator /tmp/generator /tmp/generator.early /tmp/generator.late
    if ! { [ -L "$wants/vault-luks-close@data\x2dx.service" ] && [ -e "$out/dev-mapper-data\x2dx.device.d/50-vault-luks.conf" ]; }; then
        find "$out" >&2
        vm_die "deb: vault-luks-generator did not escape data-x as systemd does"
    fi
    cp -p "$VM_WORK/config.deb.json" "$config"
    rm -rf "$out"
    # An invalid configuration: the late unit only (it says what is wrong when it runs).
    echo '{"vault": {}}' >"$config"
    vm_chroot "$root" /usr/lib/systemd/system-generators/vault-luks-generator /tmp/generator /tmp/generator.early /tmp/generator.late
    if ! { [ -L "$wants/vault-luks-late.service" ] && [ -z "$(find "$out" -name 'vault-luks-close@*')" ]; }; then
        find "$out" >&2
        vm_die "deb: with an invalid configuration the generator should pull in only the late unit"
    fi
    cp -p "$VM_WORK/config.deb.json" "$config"
    rm -rf "$out"
}

# deb_apt ROOT LOG APT-ARGS...: apt-get in a chroot of ROOT, its output in $VM_WORK/deb-LOG.log.
deb_apt() {
    local root=$1 log=$VM_WORK/deb-$2.log
    shift 2
    vm_chroot "$root" apt-get "$@" >"$log" 2>&1 ||
        { tail -n 40 "$log" >&2; vm_die "deb: apt-get $* failed in the guest's root"; }
}

# deb_mount IMAGE DIR: the guest's root disk, mounted for a chroot.
deb_mount() {
    mkdir -p "$2"
    mount -o loop "$1" "$2"
    vm_on_exit "mountpoint -q '$2' && umount -l '$2'"
    vm_chroot_mount "$2"
}

# deb_umount DIR [KVER INITRD]: unmount it, taking out the kernel's image for the next boot.
deb_umount() {
    vm_chroot_umount "$1"
    [ -z "${3:-}" ] || cp "$1/boot/initrd.img-$2" "$3"
    umount "$1"
}

# deb_boot STAGE: a full systemd boot of the package test's disks; check-deb.sh runs STAGE.
deb_boot() {
    vm_part "deb-boot-$1"
    printf '%s\n' "$1" >"$VM_WORK/stage"
    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-deb.sh" "$VM_WORK/stage" "$VM_WORK/marker" "$VM_WORK/data2-marker"
    vm_start "deb-$1" "$img/vmlinuz" "$VM_WORK/deb/initrd.img" "$VM_APPEND_BASE vmtest.io" \
        "$VM_WORK/deb/root.img" "$VM_WORK/deb/data.img" "$VM_WORK/io.img"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec "$(dirname "$0")/suite.sh" "${1:-}" deb
fi
