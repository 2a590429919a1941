#!/bin/bash
# The real root (init=) after a fallback-test boot: which volumes the initramfs left open, the
# marker on luks (mounted read-only), and the network state the initramfs left (net-state.sh).
# Closes everything again. IO disk input: marker. (That the boot wrote nothing to the data disk,
# LUKS headers included, the host checks on the disk image afterwards: a checksum of its own of
# 64 MiB would take this guest a minute under TCG.)
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }
/vmtest/net-state.sh
if cryptsetup status luks >/dev/null 2>&1; then say luks_open=yes; else say luks_open=no; fi
mkdir -p /luks
if mount -o ro /dev/mapper/luks /luks 2>/dev/null; then
    if cmp -s /luks/vmtest-marker marker; then say marker=ok; else say marker=bad; fi
    umount /luks
else
    say marker=unmountable
fi
for lv in /dev/vg.flex/lv.*; do
    name=${lv##*/lv.}
    if [ "$name" != luks ]; then
        if cryptsetup status "$name" >/dev/null 2>&1; then say "${name}_open=yes"; else say "${name}_open=no"; fi
    fi
    cryptsetup close "$name" 2>/dev/null
done
vgchange -q -an vg.flex >/dev/null 2>&1
