#!/bin/bash
# The boots of the package test (tests/vm/deb.sh; runs from the IO disk as ./run once the
# system is up). The IO disk's `stage` file says which boot this is:
#   installed: the .deb installed, configured and the initramfs rebuilt by dpkg-reconfigure:
#     luks unlocked in the initramfs and mounted by its fstab line, its close unit pulled in by
#     vault-luks-generator; then, as an operator would next, an empty LV enrolled with
#     --format (a file system, a marker, an fstab line): the upgrade's rebuild must take it in.
#   upgraded: the next version installed over the first: both volumes unlocked in the
#     initramfs, mounted, both close units there.
#   removed: vault-luks removed: nothing of it runs, the volumes stay closed, and the boot got
#     here anyway (nofail).
#   IO disk inputs: stage, marker, data2-marker.
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }
io=$PWD
stage=$(cat stage)
say "stage=$stage"
say "package=$(dpkg-query -W -f '${Version}:${db:Status-Abbrev}' vault-luks 2>/dev/null | tr -d ' ')"

# check_volume NAME MOUNTPOINT MARKER: opened in the initramfs, mounted, the marker there, the
# close unit running (results prefixed with NAME_).
check_volume() {
    local name=$1 dir=$2 marker=$3
    # A nofail mount is not ordered before local-fs.target (nor this script): it comes when its
    # device shows in the real root, which under TCG can take tens of seconds after coldplug.
    for _ in $(seq 180); do
        findmnt -n "$dir" >/dev/null && break
        sleep 0.5
    done
    say "${name}_source=$(findmnt -n -o SOURCE "$dir")"
    if cmp -s "$dir/vmtest-marker" "$marker"; then say "${name}_marker=ok"; else say "${name}_marker=bad"; fi
    say "${name}_close_unit=$(systemctl is-active "vault-luks-close@$name.service")"
    # (Not `dmesg | grep -q`: grep leaving early fails dmesg with SIGPIPE, and pipefail says no.)
    dmesg >"$io/kmsg"
    if grep -q "vault-luks\[[0-9]*\]: $name: unlocked as /dev/mapper/$name" "$io/kmsg"; then
        say "${name}_kmsg_unlocked=yes"
    else
        say "${name}_kmsg_unlocked=no"
    fi
}

case $stage in
installed)
    check_volume luks /luks marker
    say "late_unit=$(systemctl is-active vault-luks-late.service)"
    # The real root has no network of its own in these guests: the user-mode network's address,
    # on-link with both the metadata address and the host.
    ip link set ens3 up
    ip addr replace 169.254.0.15/16 dev ens3
    lvcreate -q -y -n lv.data2 -L 64M vg.flex >/dev/null
    udevadm settle
    if vault-luks enroll data2 --device /dev/vg.flex/lv.data2 --format >enroll.out 2>&1 &&
        vault-luks unlock data2 >>enroll.out 2>&1 &&
        mkfs.ext4 -q -L data2 /dev/mapper/data2 &&
        mkdir -p /data2 && mount /dev/mapper/data2 /data2 && cp data2-marker /data2/vmtest-marker &&
        umount /data2 && vault-luks close data2 >>enroll.out 2>&1; then
        echo "/dev/mapper/data2 /data2 ext4 defaults,nofail 0 2" >>/etc/fstab
        say enroll=ok
    else
        sed 's/^/[enroll] /' enroll.out
        say enroll=failed
    fi
    ip addr flush dev ens3
    ip link set ens3 down
    ;;
upgraded)
    check_volume luks /luks marker
    check_volume data2 /data2 data2-marker
    ;;
removed)
    if [ -e /dev/mapper/luks ]; then say luks_mapped=yes; else say luks_mapped=no; fi
    say "luks_mounted=$(findmnt -n -o SOURCE /luks || echo no)"
    # Nothing of vault-luks is left to run: no units, no generator output, no line in the log.
    if systemctl cat vault-luks-late.service >/dev/null 2>&1; then say late_unit=present; else say late_unit=absent; fi
    say "vault_luks_lines=$(dmesg | grep -c 'vault-luks\[')"
    ;;
*)
    say "unknown_stage=$stage"
    ;;
esac
cd "$io" || exit 1
