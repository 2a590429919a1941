#!/bin/bash
# Check a real boot (runs from the IO disk as ./run, in multi-user.target): vault-luks opened the
# volume in the initramfs, and the real root's systemd mounted /luks from fstab before
# local-fs.target. Counts the boots recorded on the volume, leaves a line for the next boot.
#   IO disk input: marker (what provision.sh wrote). Output: kmsg (vault-luks's kernel log lines).
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }
say "luks_source=$(findmnt -n -o SOURCE /luks)"
mount_ts=$(systemctl show luks.mount -p ActiveEnterTimestampMonotonic --value)
lfs_ts=$(systemctl show local-fs.target -p ActiveEnterTimestampMonotonic --value)
if [ "${mount_ts:-0}" -gt 0 ] && [ "$mount_ts" -le "${lfs_ts:-0}" ]; then
    say before_local_fs=yes
else
    say "before_local_fs=no(mount=$mount_ts,local-fs=$lfs_ts)"
fi
if cmp -s /luks/vmtest-marker marker; then say marker=ok; else say marker=bad; fi
previous=0
[ -f /luks/vmtest-boots ] && previous=$(wc -l </luks/vmtest-boots)
say "previous_boots=$previous"
echo "boot $(cat /proc/sys/kernel/random/boot_id)" >>/luks/vmtest-boots
sync
dmesg | grep 'vault-luks\[' >kmsg
say "kmsg_lines=$(wc -l <kmsg)"
if grep -q 'luks: unlocked as /dev/mapper/luks' kmsg; then say kmsg_unlocked=yes; else say kmsg_unlocked=no; fi
say "close_unit=$(systemctl is-active vault-luks-close@luks.service)"
say "config_mode=$(stat -c %a /etc/vault-luks/config.json)"
