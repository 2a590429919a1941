#!/bin/sh
# /bin/vmtest-step FLAVOUR: the framework-neutral part of the smoke test's unlock step, run inside the
# initramfs by the flavour's glue (initramfs-tools/scripts/local-top/vmtest, dracut/99vmtest) once the
# network is up. Reports what the framework did (LV active? address?), then runs the pluggable unlock
# program /bin/vmtest-unlock (see vm_prepare_root) and reports its exit code and the mapping.
say() { echo "VMTEST RESULT $1" >/dev/console; }
say "initrd=$1"
lv=/dev/mapper/vg.flex-lv.luks
i=0
while [ ! -e "$lv" ] && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e "$lv" ]; then say initrd_lv=yes; else say initrd_lv=no; fi
say "initrd_net=$(ip -4 -o addr show scope global | head -n 1 | tr -s ' ' | cut -d ' ' -f 2,4 | tr ' ' @)"
t0=$(cut -d ' ' -f 1 /proc/uptime)
/bin/vmtest-unlock
rc=$?
say "initrd_unlock_rc=$rc"
say "initrd_unlock_seconds=$(awk -v t0="$t0" '{ printf "%.1f", $1 - t0 }' /proc/uptime)"
if [ -e /dev/mapper/luks ]; then say initrd_mapper=yes; else say initrd_mapper=no; fi
