#!/usr/bin/env bash
# boot.sh FLAVOUR — the real thing, for one flavour (initramfs-tools or dracut):
#   host: a real OpenBao (transit set up the article's way) behind the Exoscale stand-ins;
#   guest root: vault-luks installed by scripts/install.sh (its hooks or dracut module, the
#     shutdown unit), the article's /etc/luks.passphrase (transit ciphertext), the fstab line
#     `/dev/mapper/luks /luks ext4 defaults 0 2`; the initramfs built in a host chroot;
#   provisioning boot: vg.flex/lv.luks, LUKS2 argon2id keyed with the transit plaintext, ext4;
#   two full systemd boots: each time vault-luks unlocks in the initramfs (metadata at
#     169.254.169.254, login and decrypt at the host's OpenBao), /luks is mounted from
#     /dev/mapper/luks before local-fs.target, the data of the boot before is there, and at
#     shutdown the mount goes, then vault-luks-close@luks closes the mapping;
#   between them, on the running guest (guest/lifecycle.sh): close refused while busy and
#     forced, unlock after boot, an empty LV enrolled, rewrap after the host rotates the transit
#     key, rotate of both volumes, install.sh again (its initramfs rebuild replayed on the host
#     in a chroot of the guest's root); the second boot runs that initramfs and must unlock both
#     volumes with the rotated keys.
# The network: boot 1 has no framework networking at all (no ip=, no rd.neednet, no network
# module or configure_networking): vault-luks raises the NIC, runs DHCP and takes it all down
# again, and the real root finds the network as the kernel made it (net-state.sh). Boot 2's
# initramfs is rebuilt with the integration's opt-in for the framework's networking: vault-luks
# finds the routes and leaves the network alone.
# Also: no key and no token in the initramfs; its config is root-only.
# VM_BOOTS=1 boots once instead of twice; VM_SHOW_CONSOLE=1 shows the guest's console as it
# goes (the demo does both).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

flavour=$(vm_flavour "$@")
repo=$(cd "$VM_LIB_DIR/../.." && pwd)
vm_init
vm_time_start "boot-test:$flavour"
bin=$repo/$("$repo/scripts/build.sh")

vm_ensure_image "$flavour"
img=$(vm_image_dir "$flavour")

# --- host: OpenBao and the stand-ins (loopback only) ---------------------------------------------
vm_vault_standin
vault_port=$VM_VAULT_PORT

# --- the article's key: random passphrase wrapped by transit; the guest only gets the ciphertext --
bao write -field=ciphertext transit/encrypt/luks plaintext="$(openssl rand -base64 24)" >"$VM_WORK/luks.passphrase"
bao write -field=plaintext transit/decrypt/luks ciphertext="$(cat "$VM_WORK/luks.passphrase")" >"$VM_WORK/key"
[ "$(wc -c <"$VM_WORK/key")" = 32 ] || vm_die "the transit plaintext is not the article's 32-character key"
echo "boot-test $(date -u +%FT%TZ) $RANDOM" >"$VM_WORK/marker"
echo "enrolled on the running guest $RANDOM" >"$VM_WORK/data2-marker"
# Only the transit key's rotation needs the root token: keep it (and the address) out of the
# environment of the guest's build.
root_addr=$BAO_ADDR root_token=$BAO_TOKEN
unset BAO_ADDR BAO_TOKEN

# --- guest root: vault-luks installed the documented way ------------------------------------------
vm_time_start assemble
root=$VM_WORK/rootfs
vm_prepare_root "$flavour" "$root"
install -m 0600 "$VM_WORK/luks.passphrase" "$root/etc/luks.passphrase"
install -d -m 0700 "$root/etc/vault-luks"
cat >"$root/etc/vault-luks/config.json" <<JSON
{"vault":   {"address": "http://169.254.0.2:$vault_port", "allow_http": true},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "timeouts":{"unlock": 120},
 "volumes": [{"name": "luks", "device": "/dev/mapper/vg.flex-lv.luks",
              "ciphertext_file": "/etc/luks.passphrase", "transit": {"key": "luks"}}]}
JSON
chmod 0600 "$root/etc/vault-luks/config.json"
DESTDIR=$root "$repo/scripts/install.sh" "$bin" >&2
vm_network_mode "$root" own
mkdir -p "$root/luks"
echo "/dev/mapper/luks /luks ext4 defaults 0 2" >>"$root/etc/fstab"
vm_build_initrd "$root" "$VM_WORK/initrd.img"

# --- the image holds no secret, and no framework networking ---------------------------------------
unpacked=$root/tmp/initrd-unpacked
mkdir -p "$unpacked"
cp "$VM_WORK/initrd.img" "$root/tmp/initrd.img"
vm_chroot_mount "$root"
case $flavour in
    initramfs-tools) vm_chroot "$root" unmkinitramfs /tmp/initrd.img /tmp/initrd-unpacked >/dev/null 2>&1 ;;
    dracut) vm_chroot "$root" sh -c 'cd /tmp/initrd-unpacked && lsinitrd --unpack /tmp/initrd.img' >/dev/null 2>&1 ;;
esac
vm_chroot_umount "$root"
cfg=$(find "$unpacked" -path '*/etc/vault-luks/config.json' | head -n 1)
[ -n "$cfg" ] || vm_die "no /etc/vault-luks/config.json in the initramfs"
[ "$(stat -c %a "$cfg")" = 600 ] || vm_die "the config in the initramfs is mode $(stat -c %a "$cfg"), not 600"
[ -n "$(find "$unpacked" -name luks.passphrase)" ] || vm_die "the ciphertext is not in the initramfs"
[ -n "$(find "$unpacked" -name vault-luks -type f)" ] || vm_die "vault-luks is not in the initramfs"
if grep -r -a -F -q -f "$VM_WORK/key" "$unpacked"; then vm_die "the LUKS key is in the initramfs"; fi
if grep -r -a -q -E '\b(hvs|s)\.[A-Za-z0-9]{20,}' "$unpacked/etc" 2>/dev/null; then vm_die "a token-like string is in the initramfs /etc"; fi
# (initramfs-tools always carries klibc's ipconfig and configure_networking; that nothing calls them
# is checked on the console below.)
if [ "$flavour" = dracut ]; then
    clients=$(find "$unpacked" -name 'systemd-networkd*' -o -name dhclient -o -name 'nm-*' -o -name 'ifup*' | head -n 3)
    [ -z "$clients" ] || vm_die "a framework DHCP client is in the initramfs: $clients"
fi
if cat "$unpacked"/etc/cmdline.d/* 2>/dev/null | grep -q -E '(^| )(ip=|rd.neednet)'; then
    vm_die "the initramfs asks for the framework's network: $(cat "$unpacked"/etc/cmdline.d/*)"
fi
case " $VM_APPEND_BASE " in *" ip="* | *" rd.neednet"*) vm_die "the kernel command line asks for a network" ;; esac
vm_log "ok   initramfs: config mode 600, ciphertext and binary in, no key, no token, no framework networking"
rm -rf -- "$unpacked" "$root/tmp/initrd.img"

# The root keeps its initramfs, as a real system does: install.sh in the guest (lifecycle) updates
# it in place (update-initramfs -u touches only the images that exist).
cp "$VM_WORK/initrd.img" "$root/boot/initrd.img-$(vm_guest_kver "$root")"
vm_mkfs_dir "$root" "$VM_WORK/root.img" 2G vmroot
rm -rf -- "$root"
vm_time_end assemble

# --- provisioning boot, the article's way: LVM, LUKS2 argon2id with the transit plaintext, ext4 ----
vm_blank_disk "$VM_WORK/data.img" 320M
vm_provision "$img/vmlinuz" "$img/initrd-stock.img" "$VM_WORK/root.img" "$VM_WORK/data.img" \
    "$VM_WORK/key" "$VM_WORK/marker"

# --- two real boots ---------------------------------------------------------------------------------
# The lifecycle's inputs: the binary and the repo's install files, as an operator has them.
kit=$VM_WORK/install
mkdir -p "$kit/scripts"
cp "$bin" "$kit/vault-luks"
cp "$repo/scripts/install.sh" "$kit/scripts/"
cp -r "$repo/dracut" "$repo/initramfs-tools" "$repo/systemd" "$kit/"

boots=${VM_BOOTS:-2}
for ((n = 1; n <= boots; n++)); do
    inputs=("$VM_WORK/marker")
    lifecycle=0
    if [ "$n" = 1 ] && [ "$boots" -ge 2 ]; then
        lifecycle=1
        inputs+=("$VM_LIB_DIR/guest/lifecycle.sh" "$VM_WORK/data2-marker" "$kit")
    elif [ "$n" -ge 2 ]; then
        inputs+=("$VM_WORK/data2-marker")
    fi
    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-boot.sh" "${inputs[@]}"
    logins=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log" || true)
    vm_start "boot$n" "$img/vmlinuz" "$VM_WORK/initrd.img" "$VM_APPEND_BASE vmtest.io" \
        "$VM_WORK/root.img" "$VM_WORK/data.img" "$VM_WORK/io.img"
    if [ "${VM_SHOW_CONSOLE:-0}" = 1 ]; then
        tail -n +1 -f "$VM_LOG" &
        console_pid=$!
        vm_on_exit "kill $console_pid 2>/dev/null"
    fi
    vm_wait_for 'vault-luks\[[0-9]+\]: luks: unlocked as /dev/mapper/luks' 300
    vm_wait_for 'VMTEST BEGIN' 300
    # The initramfs logged in once for all its volumes.
    got=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log")
    [ "$got" = $((logins + 1)) ] || vm_die "boot$n: the initramfs logged in $((got - logins)) times, not once"
    if [ "$lifecycle" = 1 ]; then
        vm_wait_for 'VMTEST WAIT rotate-transit-key' 600
        BAO_ADDR=$root_addr BAO_TOKEN=$root_token bao write -f transit/keys/luks/rotate >/dev/null
        vm_send 'rotated\n'
        vm_log "ok   boot$n: transit key luks rotated on the host"
    fi
    vm_wait_for 'VMTEST DONE' 900
    # At shutdown: /luks is unmounted first, then the close unit closes the mapping.
    vm_wait_for 'vault-luks\[[0-9]+\]: luks: closed[[:space:]]*$' 120
    vm_wait_exit 120
    vm_expect luks_source /dev/mapper/luks
    vm_expect before_local_fs yes
    vm_expect marker ok
    vm_expect previous_boots $((n - 1))
    vm_expect kmsg_unlocked yes
    vm_expect close_unit active
    vm_expect config_mode 600
    if [ "$n" -ge 2 ] && [ "$boots" -ge 2 ]; then
        # The initramfs the guest built after enroll, rewrap and rotate: both volumes, new keys.
        vm_expect data2_luks_source /dev/mapper/data2
        vm_expect data2_before_local_fs yes
        vm_expect data2_marker ok
        vm_expect data2_kmsg_unlocked yes
        vm_expect data2_close_unit active
        grep -a -q 'data2: closed' "$VM_LOG" || vm_die "boot$n: data2 was not closed at shutdown"
        vm_log "ok   boot$n: both volumes unlocked with the rotated keys, mounted, closed"
    fi
    if [ "$lifecycle" = 1 ]; then
        vm_expect close_busy refused-rc1
        vm_expect close_force ok
        vm_expect after_boot_unlock ok
        vm_expect enroll 'ok(600)'
        vm_expect rewrapped 2
        vm_expect rotate_luks ok
        vm_expect rotate_data2 ok
        vm_expect status_volumes luks,data2,
        vm_expect install ok
        # install.sh's initramfs rebuild, replayed in a chroot of the guest's root (see lifecycle.sh).
        rebuild=$(vm_disk_cat "$VM_WORK/io.img" /rebuild)
        case $flavour:$rebuild in
            "initramfs-tools:update-initramfs -u -k all" | "dracut:dracut --force --regenerate-all") ;;
            *) vm_die "boot$n: install.sh asked for '$rebuild' to rebuild the initramfs" ;;
        esac
        guest=$VM_WORK/guest-root
        mkdir -p "$guest"
        mount -o loop "$VM_WORK/root.img" "$guest"
        vm_on_exit "mountpoint -q '$guest' && umount -l '$guest'"
        vm_chroot_mount "$guest"
        # An operator who prefers the framework's networking says so before the rebuild.
        vm_network_mode "$guest" framework
        # shellcheck disable=SC2086 # the recorded command line, split into its words
        vm_chroot "$guest" $rebuild >"$VM_WORK/rebuild.log" 2>&1 ||
            { tail -n 30 "$VM_WORK/rebuild.log" >&2; vm_die "boot$n: '$rebuild' failed in the guest's root"; }
        vm_chroot_umount "$guest"
        cp "$guest/boot/initrd.img-$(vm_guest_kver "$guest")" "$VM_WORK/initrd.img"
        umount "$guest"
        vm_log "ok   boot$n: close busy/forced, unlock after boot, enroll, rewrap, rotate, install"
    fi
    if [ "$n" = 1 ]; then
        # vault-luks's own network, and nothing left of it in the real root.
        # (The NIC is eth0 in dracut's initramfs, which has no udev naming rules without the
        # network module, and ens3 in initramfs-tools'; the real root names it ens3, which it can
        # only do to a link that is down.)
        for line in 'network: no route to' 'network: [a-z0-9]+: carrier after' 'network: [a-z0-9]+: DHCP lease' \
            'network: what vault-luks configured is removed'; do
            grep -a -q -E "vault-luks\[[0-9]+\]: $line" "$VM_LOG" || vm_die "boot$n: no '$line' line on the console"
        done
        if grep -a -q -E 'IP-Config:|systemd-networkd' "$VM_LOG"; then
            vm_die "boot$n: the framework's networking ran: $(grep -a -m1 -E 'IP-Config:|systemd-networkd' "$VM_LOG")"
        fi
        vm_expect net_left none
        vm_log "ok   boot$n: vault-luks brought the network up and took it down: $(grep -a -o -E 'network: [a-z0-9]+: DHCP lease.*' "$VM_LOG" | head -n 1)"
    else
        grep -a -q 'network: already configured' "$VM_LOG" ||
            vm_die "boot$n: vault-luks did not find the framework's network"
        vm_log "ok   boot$n: the framework's network was used, vault-luks left it alone"
    fi
    grep -a -q "vault login: ok" "$VM_LOG" || vm_die "boot$n: no login line on the console"
    if grep -a -F -q -f "$VM_WORK/key" "$VM_LOG"; then vm_die "boot$n: the key appeared on the console"; fi
    [ -z "${console_pid:-}" ] || kill "$console_pid" 2>/dev/null || true
    vm_log "ok   boot$n: vault-luks lines in the kernel log: $(vm_result kmsg_lines)"
done
vm_log "ok   one login per initramfs, tokens revoked: $(grep -c 'revoke-self 204' "$VM_WORK/standin.log")"

vm_time_end "boot-test:$flavour"
vm_log "PASS boot $flavour: ${VM_TIMES[*]}"
