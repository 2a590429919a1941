#!/bin/bash
# Check a real boot (runs from the IO disk as ./run, in multi-user.target): vault-luks opened the
# volume in the initramfs, and the real root's systemd mounted /luks from fstab before
# local-fs.target. Counts the boots recorded on the volume, leaves a line for the next boot.
#   IO disk inputs: marker (what provision.sh wrote); data2-marker (with lifecycle.sh: for it to
#   enroll data2; without: data2 was enrolled before this boot, /data2 is checked like /luks);
#   lifecycle.sh, run after the checks when present. Output: kmsg (vault-luks's kernel log lines).
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }

# check_volume NAME MOUNTPOINT MARKER: mounted from its mapping before local-fs.target, and the
# marker written when it was made is there. Results are prefixed with NAME unless it is luks.
check_volume() {
    local name=$1 dir=$2 marker=$3 p=
    [ "$name" = luks ] || p=${name}_
    say "${p}luks_source=$(findmnt -n -o SOURCE "$dir")"
    local unit mount_ts lfs_ts
    unit=$(systemd-escape -p --suffix=mount "$dir")
    mount_ts=$(systemctl show "$unit" -p ActiveEnterTimestampMonotonic --value)
    lfs_ts=$(systemctl show local-fs.target -p ActiveEnterTimestampMonotonic --value)
    if [ "${mount_ts:-0}" -gt 0 ] && [ "$mount_ts" -le "${lfs_ts:-0}" ]; then
        say "${p}before_local_fs=yes"
    else
        say "${p}before_local_fs=no(mount=$mount_ts,local-fs=$lfs_ts)"
    fi
    if cmp -s "$dir/vmtest-marker" "$marker"; then say "${p}marker=ok"; else say "${p}marker=bad"; fi
    say "${p}close_unit=$(systemctl is-active "vault-luks-close@$name.service")"
}

# First, before lifecycle.sh configures a network for its own work: what the initramfs left.
/vmtest/net-state.sh
check_volume luks /luks marker
# data2 is enrolled by lifecycle.sh: checked on the boots after it.
data2=no
[ -f data2-marker ] && [ ! -f lifecycle.sh ] && data2=yes
[ "$data2" = yes ] && check_volume data2 /data2 data2-marker
previous=0
[ -f /luks/vmtest-boots ] && previous=$(wc -l </luks/vmtest-boots)
say "previous_boots=$previous"
echo "boot $(cat /proc/sys/kernel/random/boot_id)" >>/luks/vmtest-boots
sync
dmesg | grep 'vault-luks\[' >kmsg
say "kmsg_lines=$(wc -l <kmsg)"
if grep -q 'luks: unlocked as /dev/mapper/luks' kmsg; then say kmsg_unlocked=yes; else say kmsg_unlocked=no; fi
if [ "$data2" = yes ]; then
    if grep -q 'data2: unlocked as /dev/mapper/data2' kmsg; then say data2_kmsg_unlocked=yes; else say data2_kmsg_unlocked=no; fi
fi
say "config_mode=$(stat -c %a /etc/vault-luks/config.json)"
if [ -f lifecycle.sh ]; then bash ./lifecycle.sh; fi
