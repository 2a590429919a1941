#!/usr/bin/env bash
# build-image.sh FLAVOUR — a Debian guest root (release $VM_RELEASE: trixie, or bookworm) for the VM
# boot tests, cached outside the repo.
#
# FLAVOUR is initramfs-tools or dracut (the two conflict as packages). The result is
#   ${VAULT_LUKS_CACHE:-/var/cache/vault-luks-vm}/RELEASE-FLAVOUR/{rootfs/,vmlinuz,stamp}
# plus initrd-stock.img (the flavour's initramfs as installed, for provisioning boots), and is rebuilt
# only when the package list or the configuration below changes (stamp = their hash), or with --force.
# Prints the image directory. Tests build their own initramfs on the host in a chroot of a copy of
# rootfs/ (vm_build_initrd), with their hooks in it.
#
# Environment: VAULT_LUKS_CACHE, VAULT_LUKS_MIRROR (default: the Debian mirror this machine's apt uses).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 [--force] initramfs-tools|dracut" >&2; exit 2; }
force=0
[ "${1:-}" = --force ] && { force=1; shift; }
[ $# = 1 ] || usage
flavour=$1

# What every guest has. minbase brings apt, bash, coreutils, util-linux, mount; no network tools, no
# wget/curl: the guest fetches over HTTP with busybox wget (busybox is in both flavours' initramfs).
# zstd: without it both flavours fall back to gzip, and dracut's gzip -9 of a no-hostonly image takes
# over a minute on the host (zstd -T0: seconds), and the guest unpacks it slower too.
common=(linux-image-amd64 systemd-sysv udev kmod lvm2 e2fsprogs iproute2 busybox zstd)
case $flavour in
    initramfs-tools) packages=("${common[@]}" initramfs-tools cryptsetup-bin cryptsetup-initramfs) ;;
    # dracut-network holds dracut's network modules in bookworm and always adds one (its
    # /etc/dracut.conf.d/11-ifcfg.conf); with systemd present the handler is systemd-networkd, which needs
    # dbus in the initramfs, so dbus is in (without it every dracut run fails).
    dracut) packages=("${common[@]}" dracut dracut-network cryptsetup dbus) ;;
    *) usage ;;
esac
# VM_VARIANT=minimal: only what the README's support table tells a user to install, no recommends,
# nothing the other guests carry for convenience (a package there can hide a file our hooks forget:
# cryptsetup-initramfs hid libgcc_s.so.1, dracut-network the NIC drivers). iproute2 is the
# harness's (net-state.sh reads the real root's links and routes with it).
case ${VM_VARIANT:-} in
    '') ;;
    minimal) packages=(linux-image-amd64 systemd-sysv udev kmod lvm2 e2fsprogs "$flavour" cryptsetup-bin iproute2) ;;
    *) vm_die "VM_VARIANT=$VM_VARIANT: empty or minimal" ;;
esac

# configure_minimal_root ROOT FLAVOUR: what the minimal guest needs beside configure_guest_root.
configure_minimal_root() {
    local root=$1 flavour=$2
    # No zstd without recommends: dracut compresses with its default instead.
    if [ "$flavour" = dracut ]; then sed -i '/^compress=/d' "$root/etc/dracut.conf.d/10-vmtest.conf"; fi
}
case $VM_RELEASE in
    bookworm) ;;
    # trixie split systemd-cryptsetup out of systemd (systemd recommends it: an installed system has it).
    trixie) [ "$flavour" = initramfs-tools ] || packages+=(systemd-cryptsetup) ;;
    *) vm_die "VM_RELEASE=$VM_RELEASE: bookworm or trixie" ;;
esac

# configure_guest_root ROOT FLAVOUR: everything done to the root after the packages are in. Its text is
# part of the cache key, so editing it rebuilds the image.
configure_guest_root() {
    local root=$1 flavour=$2
    echo "$flavour" >"$root/etc/vmtest-flavour"
    echo vmtest >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 vmtest\n' >"$root/etc/hosts"
    printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
    # A person on the serial console of a test guest logs in as root without a password.
    chroot "$root" passwd -d root >/dev/null
    # Nothing in the guest may reach past the host: no DNS, no timers that fetch.
    rm -f "$root/etc/resolv.conf"
    rm -f "$root"/etc/systemd/system/timers.target.wants/apt-daily*.timer
    case $flavour in
        initramfs-tools)
            # MODULES=most: the image is built in a chroot, so `dep` would look at the host.
            sed -i 's/^MODULES=.*/MODULES=most/' "$root/etc/initramfs-tools/initramfs.conf" ;;
        dracut)
            # A chroot is not the guest: never build host-only images here. zstd -3: dracut's own
            # choice for zstd is -15.
            printf 'hostonly="no"\ncompress="zstd -q -3 -T0"\n' >"$root/etc/dracut.conf.d/10-vmtest.conf" ;;
    esac
    # Tests build their own initramfs; the one the kernel package made would only take space.
    rm -f "$root"/boot/initrd.img-*
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
}

mirror=${VAULT_LUKS_MIRROR:-}
if [ -z "$mirror" ]; then
    # The first Debian archive URI apt uses on this machine (deb822 or one-line format).
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -o -E 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
fi

key=$(printf '%s\n' "$VM_RELEASE" ${VM_VARIANT:+"variant $VM_VARIANT" "$(declare -f configure_minimal_root)"} "$mirror" "${packages[@]}" "$(declare -f configure_guest_root vm_build_initrd)" |
    sha256sum | cut -c1-16)
dir=$(vm_image_dir "$flavour")
mkdir -p "$VM_CACHE"

# One builder per flavour at a time; a second caller waits, then finds the image current.
exec {lock}>"$dir.lock"
flock "$lock"
if [ "$force" = 0 ] && [ "$(cat "$dir/stamp" 2>/dev/null || true)" = "$key" ] && [ -f "$dir/initrd-stock.img" ]; then
    vm_log "image $VM_RELEASE $flavour${VM_VARIANT:+ $VM_VARIANT} is current ($key): $dir"
    echo "$dir"
    exit 0
fi

vm_init
vm_time_start "build-image:$VM_RELEASE-$flavour"
vm_log "building $VM_RELEASE $flavour${VM_VARIANT:+ $VM_VARIANT} image ($key) from $mirror"
new=$dir.new
rm -rf -- "$new"
mkdir -p "$new" "$VM_CACHE/debs"
vm_on_exit "rm -rf -- '$new'"

# Stage 1: minbase. Stage 2: the rest with apt inside the chroot, because debootstrap's own resolver
# takes initramfs-tools for linux-image-amd64 even when dracut is asked for.
debootstrap --variant=minbase --cache-dir="$VM_CACHE/debs" "$VM_RELEASE" "$new/rootfs" "$mirror" \
    >"$VM_WORK/debootstrap.log" 2>&1 ||
    { tail -n 40 "$VM_WORK/debootstrap.log" >&2; vm_die "debootstrap failed"; }
root=$new/rootfs
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
vm_chroot_mount "$root"
# apt's downloads go to the same cache as debootstrap's, so a rebuild downloads only what changed.
# INITRD=No: the kernel's postinst and dracut's trigger build no initramfs (the stock one is made below,
# once, after configure_guest_root).
mount --bind "$VM_CACHE/debs" "$root/var/cache/apt/archives"
vm_on_exit "umount -l '$root/var/cache/apt/archives' 2>/dev/null"
{
    vm_chroot "$root" apt-get update &&
        vm_chroot "$root" env INITRD=No apt-get install -y --no-install-recommends "${packages[@]}"
} >"$VM_WORK/apt.log" 2>&1 || { tail -n 40 "$VM_WORK/apt.log" >&2; vm_die "apt-get install in the guest root failed"; }
umount "$root/var/cache/apt/archives"
vm_chroot_umount "$root"
rm -f "$root/usr/sbin/policy-rc.d"
configure_guest_root "$root" "$flavour"
[ -z "${VM_VARIANT:-}" ] || configure_minimal_root "$root" "$flavour"

kver=$(vm_guest_kver "$root")
cp "$root/boot/vmlinuz-$kver" "$new/vmlinuz"
# The flavour's stock initramfs (no unlock integration), for provisioning boots: the same for every test.
vm_build_initrd "$root" "$new/initrd-stock.img"
echo "$key" >"$new/stamp"
rm -rf -- "$dir"
mv "$new" "$dir"
vm_time_end "build-image:$VM_RELEASE-$flavour"
vm_log "image $VM_RELEASE $flavour${VM_VARIANT:+ $VM_VARIANT} ($kver, $(du -sh "$dir" | cut -f1)): $dir"
echo "$dir"
