#!/usr/bin/env bash
# suite.sh FLAVOUR [PART...] — the VM tests of one flavour (initramfs-tools or dracut) on the guests
# of $VM_RELEASE (trixie unless told otherwise; or bookworm), every part on one setup. PARTs: boot
# (boot.sh: two systemd boots with the lifecycle between them), fallback (fallback.sh: the
# failure matrix) and deb (deb.sh: the Debian package installed, upgraded, removed and purged,
# three boots; its own root, from the same cached guest); the default is boot and fallback.
#
# The setup, shared by the parts:
#   host: a real OpenBao (transit set up the article's way) behind the Exoscale stand-ins, a second
#     transit key the policy does not cover, and a TLS server whose certificate names another host;
#   the data disk: provisioned once and cached (vm_data_disk: vg.flex/lv.luks the article's way,
#     LUKS2 argon2id keyed with a transit plaintext, a backup passphrase, and the per-volume rows'
#     volumes); this run's OpenBao wraps the cached plaintexts into the guest's ciphertexts;
#   the guest root: vault-luks installed by scripts/install.sh (its hooks or dracut module and the
#     shutdown unit), the article's /etc/luks.passphrase, a private CA for Vault, the fstab line
#     `/dev/mapper/luks /luks ext4 defaults 0 2`, no framework networking; its initramfs built in
#     a host chroot, checked (no key, no token, root-only config, no framework networking); for the
#     fallback part also the same root's initramfs with three more volumes configured.
# VM_RESULTS=FILE collects each part's time and result (see vm_part); run-all.sh sets it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=boot.sh
. "$VM_LIB_DIR/boot.sh"
# shellcheck source-path=SCRIPTDIR source=fallback.sh
. "$VM_LIB_DIR/fallback.sh"
# shellcheck source-path=SCRIPTDIR source=deb.sh
. "$VM_LIB_DIR/deb.sh"

flavour=$(vm_flavour "${1:-}")
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(boot fallback)
for part in "${parts[@]}"; do
    [[ $part =~ ^(boot|fallback|deb|cache)$ ]] || { echo "usage: $0 initramfs-tools|dracut [boot] [fallback] [deb] | cache" >&2; exit 2; }
done
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }
repo=$(cd "$VM_LIB_DIR/../.." && pwd)
VM_PART_PREFIX="vm $VM_RELEASE $flavour${VM_VARIANT:+ $VM_VARIANT}: "
vm_init

# `cache`: only make the cached guest image and data disk current (run-all.sh does it first).
if [ "${parts[*]}" = cache ]; then
    vm_ensure_image "$flavour"
    vm_data_disk "$flavour"
    exit 0
fi

# --- setup: host side ---------------------------------------------------------------------------------
vm_part setup
bin=$("$repo/scripts/build.sh")
vm_ensure_image "$flavour"
img=$(vm_image_dir "$flavour")
vm_data_disk "$flavour"

vm_vault_standin
vault_port=$VM_VAULT_PORT
bao write -f transit/keys/other >/dev/null
faults() {
    curl -sf --max-time 10 -X POST -d "$1" "http://127.0.0.1:$vault_port/_standin/faults" >/dev/null ||
        vm_die "the stand-in did not take the faults $1 (see its log: $VM_WORK/standin.log)"
}

tls=$VM_WORK/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=vmtest-ca -keyout "$tls/ca.key" \
    -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=wrong.example -keyout "$tls/srv.key" -out "$tls/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:wrong.example\n' >"$tls/ext"
openssl x509 -req -in "$tls/srv.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext" -out "$tls/srv.pem" 2>/dev/null
tls_port=$(vm_free_port)
openssl s_server -quiet -accept "127.0.0.1:$tls_port" -cert "$tls/srv.pem" -key "$tls/srv.key" -www \
    >"$VM_WORK/tls.log" 2>&1 &
vm_on_exit "kill $! 2>/dev/null"
closed_port=$(vm_free_port)

# The article's ciphertext: the cached plaintext wrapped by transit; the bao CLI's plaintext of it
# is exactly the key the volume was formatted with (32 characters, no newline).
cp "$VM_DATA/key" "$VM_DATA/marker" "$VM_DATA/backup" "$VM_WORK/"
backup=$(cat "$VM_WORK/backup")
encrypt() { bao write -field=ciphertext "transit/encrypt/$1" plaintext="$2"; }
encrypt luks "$(cat "$VM_WORK/key")" >"$VM_WORK/luks.passphrase"
bao write -field=plaintext transit/decrypt/luks ciphertext="$(cat "$VM_WORK/luks.passphrase")" >"$VM_WORK/plaintext"
cmp -s "$VM_WORK/plaintext" "$VM_WORK/key" || vm_die "the transit plaintext is not the volume's key"
# The per-volume rows: a transit key outside the policy, a ciphertext transit cannot decrypt, a key
# the header does not know.
encrypt other "$(cat "$VM_DATA/key-denied")" >"$VM_WORK/denied.passphrase"
echo "vault:v1:bm90IGEgY2lwaGVydGV4dCBhdCBhbGw=" >"$VM_WORK/invalid.passphrase"
encrypt luks "$(vm_new_key)" >"$VM_WORK/rejected.passphrase"
echo "enrolled on the running guest $RANDOM" >"$VM_WORK/data2-marker"
# Only the transit key's rotation (boot part) needs the root token: keep it (and the address) out
# of the environment of the guest's build.
root_addr=$BAO_ADDR root_token=$BAO_TOKEN
unset BAO_ADDR BAO_TOKEN

# --- setup: the guest root, vault-luks installed the documented way ------------------------------------
vm_part assemble
root=$VM_WORK/rootfs
vm_prepare_root "$flavour" "$root"
install -m 0600 "$VM_WORK/luks.passphrase" "$root/etc/luks.passphrase"
install -d -m 0700 "$root/etc/vault-luks"
install -m 0644 "$tls/ca.pem" "$root/etc/vault-luks/ca.pem"
# volume NAME CIPHERTEXT_FILE [TRANSIT_KEY]: one entry of the config's volumes.
volume() {
    printf '{"name": "%s", "device": "/dev/mapper/vg.flex-lv.%s", "ciphertext_file": "%s", "transit": {"key": "%s"}}' \
        "$1" "$1" "$2" "${3:-luks}"
}
# write_config TIMEOUTS VOLUME_JSON...
write_config() {
    local timeouts=$1 volumes
    shift
    volumes=$(IFS=,; echo "$*")
    cat >"$root/etc/vault-luks/config.json" <<JSON
{"vault":   {"address": "http://169.254.0.2:$vault_port", "allow_http": true, "ca_cert": "/etc/vault-luks/ca.pem"},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "timeouts":$timeouts,
 "volumes": [$volumes]}
JSON
    chmod 0600 "$root/etc/vault-luks/config.json"
}
write_config '{"unlock": 120}' "$(volume luks /etc/luks.passphrase)"
DESTDIR=$root "$repo/scripts/install.sh" "$bin" >&2
vm_network_mode "$root" own
mkdir -p "$root/luks"
echo "/dev/mapper/luks /luks ext4 defaults 0 2" >>"$root/etc/fstab"
vm_build_initrd "$root" "$VM_WORK/initrd.img"

# The image holds no secret, and no framework networking.
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
[ -n "$(find "$unpacked" -path '*/etc/vault-luks/ca.pem')" ] || vm_die "the CA certificate vault.ca_cert names is not in the initramfs"
[ -n "$(find "$unpacked" -name vault-luks -type f)" ] || vm_die "vault-luks is not in the initramfs"
# What the unlock loads at run time, which no ldd-based copy sees: libgcc_s (glibc dlopens it when a
# thread exits), device-mapper and dm-crypt, the modules of LUKS2's default cipher aes-xts-plain64,
# and the guest NIC's driver (all modules in Debian's kernels).
[ -n "$(find "$unpacked" -name libgcc_s.so.1)" ] || vm_die "libgcc_s.so.1 is not in the initramfs (cryptsetup aborts without it)"
for module in dm-mod dm-crypt xts aesni-intel virtio_net; do
    [ -n "$(find "$unpacked" -name "$module.ko*")" ] || vm_die "the kernel module $module is not in the initramfs"
done
if grep -r -a -F -q -f "$VM_WORK/key" "$unpacked"; then vm_die "the LUKS key is in the initramfs"; fi
if grep -r -a -q -E '\b(hvs|s)\.[A-Za-z0-9]{20,}' "$unpacked/etc" 2>/dev/null; then vm_die "a token-like string is in the initramfs /etc"; fi
# (initramfs-tools always carries klibc's ipconfig and configure_networking; that nothing calls them
# is checked on the console of the boot part's first boot.)
if [ "$flavour" = dracut ]; then
    clients=$(find "$unpacked" -name 'systemd-networkd*' -o -name dhclient -o -name 'nm-*' -o -name 'ifup*' | head -n 3)
    [ -z "$clients" ] || vm_die "a framework DHCP client is in the initramfs: $clients"
    # The module adds the clouds' NIC drivers and this machine's, not every wired Ethernet
    # driver (8.5 MB compressed in a generic image); the minimal guest has no dracut-network,
    # whose kernel-network-modules would add them.
    if [ "${VM_VARIANT:-}" = minimal ] && [ -n "$(find "$unpacked" -name 'mlx5_core.ko*' -o -name 'ice.ko*' | head -n 1)" ]; then
        vm_die "every wired Ethernet driver is in the initramfs (mlx5_core, ice): only the clouds' NICs and this machine's belong there"
    fi
fi
if cat "$unpacked"/etc/cmdline.d/* 2>/dev/null | grep -q -E '(^| )(ip=|rd.neednet)'; then
    vm_die "the initramfs asks for the framework's network: $(cat "$unpacked"/etc/cmdline.d/*)"
fi
case " $VM_APPEND_BASE " in *" ip="* | *" rd.neednet"*) vm_die "the kernel command line asks for a network" ;; esac
vm_log "ok   initramfs: config mode 600, ciphertext, CA, binary, libgcc_s, dm-mod, dm-crypt, xts, aesni-intel and virtio_net in, no key, no token, no framework networking"
rm -rf -- "$unpacked" "$root/tmp/initrd.img"
vm_log "ok   initramfs: vault-luks check --image passed it: $(grep -c '^  ok ' "$VM_WORK/initrd-check.log") pieces"

if [ "${VM_VARIANT:-}" = minimal ] && [ "$flavour" = dracut ]; then
    # vault_luks_network="dracut" where dracut-network is not installed: the module says why it
    # is left out while dracut builds, and the check the install runs refuses the image.
    vm_network_mode "$root" framework
    vm_chroot_mount "$root"
    vm_chroot "$root" dracut --force --no-hostonly --kver "$(vm_guest_kver "$root")" /tmp/initrd-dracut-mode.img \
        >"$VM_WORK/dracut-mode.log" 2>&1 || true
    grep -q "needs dracut's network module, which dracut-network ships: apt install dracut-network" "$VM_WORK/dracut-mode.log" ||
        { tail -n 20 "$VM_WORK/dracut-mode.log" >&2; vm_die "dracut did not say that vault_luks_network=dracut needs dracut-network"; }
    if vm_chroot "$root" /usr/local/sbin/vault-luks --no-cmdline check --image /tmp/initrd-dracut-mode.img >"$VM_WORK/dracut-mode-check.log" 2>&1; then
        vm_die "vault-luks check --image passed an image dracut built without vault-luks"
    fi
    grep -q 'MISSING  vault-luks: dracut left out the vault-luks module' "$VM_WORK/dracut-mode-check.log" ||
        { cat "$VM_WORK/dracut-mode-check.log" >&2; vm_die "check --image did not name the missing module"; }
    vm_chroot_umount "$root"
    rm -f "$root/tmp/initrd-dracut-mode.img"
    vm_network_mode "$root" own
    vm_log "ok   vault_luks_network=dracut without dracut-network: dracut said so, and check --image refused the image"
    # An image for other hardware: vault_luks_nic_drivers adds drivers by name, and a name the
    # kernel has no module for is a warning while dracut builds.
    echo 'vault_luks_nic_drivers="ena no_such_nic"' >"$root/etc/dracut.conf.d/91-vmtest-nics.conf"
    vm_chroot_mount "$root"
    vm_chroot "$root" dracut --force --no-hostonly --kver "$(vm_guest_kver "$root")" /tmp/initrd-nics.img \
        >"$VM_WORK/dracut-nics.log" 2>&1 || { tail -n 20 "$VM_WORK/dracut-nics.log" >&2; vm_die "dracut failed with vault_luks_nic_drivers set"; }
    vm_chroot "$root" lsinitrd /tmp/initrd-nics.img >"$VM_WORK/dracut-nics.list" 2>&1
    vm_chroot_umount "$root"
    rm -f "$root/tmp/initrd-nics.img" "$root/etc/dracut.conf.d/91-vmtest-nics.conf"
    grep -q '/ena\.ko' "$VM_WORK/dracut-nics.list" || vm_die "vault_luks_nic_drivers=\"ena ...\" did not put ena into the image"
    grep -q 'vault_luks_nic_drivers names no_such_nic, which this kernel has no module for' "$VM_WORK/dracut-nics.log" ||
        { grep -i nic "$VM_WORK/dracut-nics.log" >&2; vm_die "dracut did not warn about the unknown NIC driver"; }
    vm_log "ok   vault_luks_nic_drivers: ena added by name, no_such_nic named in a warning"
fi

if wants fallback; then
    # The fallback part's per-volume boot: the same root with three more volumes configured,
    # its initramfs built by the same hook; then the root is put back as the boot part needs it.
    cp -p "$root/etc/vault-luks/config.json" "$VM_WORK/config.boot.json"
    for f in denied invalid rejected; do
        install -m 0600 "$VM_WORK/$f.passphrase" "$root/etc/vault-luks/$f.passphrase"
    done
    write_config '{"unlock": 30, "request": 4, "prompt": 240}' "$(volume luks /etc/luks.passphrase)" \
        "$(volume denied /etc/vault-luks/denied.passphrase other)" \
        "$(volume invalid /etc/vault-luks/invalid.passphrase)" "$(volume rejected /etc/vault-luks/rejected.passphrase)"
    vm_build_initrd "$root" "$VM_WORK/initrd-four.img"
    cp -p "$VM_WORK/config.boot.json" "$root/etc/vault-luks/config.json"
    rm -f "$root"/etc/vault-luks/{denied,invalid,rejected}.passphrase
fi

# The root keeps its initramfs, as a real system does: install.sh in the guest (lifecycle) updates
# it in place (update-initramfs -u touches only the images that exist).
cp "$VM_WORK/initrd.img" "$root/boot/initrd.img-$(vm_guest_kver "$root")"
vm_mkfs_dir "$root" "$VM_WORK/root.img" 2G vmroot
rm -rf -- "$root"

# --- the parts ----------------------------------------------------------------------------------------
# Each part on its own: a failure in one does not keep the next from running (the fallback part
# needs nothing the boot part makes). Inside a part, what follows a failure needs what it made.
for part in "${parts[@]}"; do
    vm_isolated "${part}_part"
done
[ "$VM_FAILED" = 0 ] || vm_die "$VM_RELEASE $flavour: $VM_FAILED failed (see FAIL above)"
vm_log "PASS $VM_RELEASE $flavour: ${parts[*]}"
