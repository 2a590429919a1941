#!/bin/bash
# Check boot (runs from the IO disk as ./run, in the real root after the initramfs): the initramfs must
# have left /dev/mapper/luks open. Mounts it, compares the marker, counts boots, closes the mapping.
#   IO disk inputs: marker (what provision.sh wrote). Output: boots (the volume's boot log) on the IO disk.
# Ends with a prompt on the console that the host answers.
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }
if [ ! -e /dev/mapper/luks ]; then
    say root_mapper=no
    exit 1
fi
say root_mapper=yes
say "root_mapper_backing=$(cryptsetup status luks | sed -n 's/^ *device: *//p')"
mkdir -p /luks
mount /dev/mapper/luks /luks || { say root_mount=no; exit 1; }
say root_mount=yes
if cmp -s /luks/vmtest-marker marker; then say marker=ok; else say marker=bad; fi
echo "boot $(cat /proc/sys/kernel/random/boot_id)" >>/luks/vmtest-boots
say "boots=$(wc -l </luks/vmtest-boots)"
cp /luks/vmtest-boots boots
umount /luks
cryptsetup close luks && say closed=yes
# The console is typeable: the host answers this prompt with vm_send (a passphrase prompt works the same).
if read -r -t 120 -p "VMTEST PROMPT: " line; then say "typed=$line"; else say typed=timeout; fi
