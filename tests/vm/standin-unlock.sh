#!/bin/sh
# Stand-in for `vault-luks unlock`, the smoke test's default unlock program (/bin/vmtest-unlock in the
# initramfs). Reads the instance id from the metadata address, as the real one will, then takes the key
# from the host server too (where the real one asks Vault) and opens the volume with it on a pipe.
# Uses busybox wget: Debian's minbase has no wget or curl, busybox is in both flavours' initramfs.
# Not `wget -T`: bookworm's busybox 1.35 wget segfaults with -T; busybox timeout bounds it instead.
say() { echo "VMTEST RESULT $1" >/dev/console; }
md=http://169.254.169.254
if id=$(busybox timeout 10 busybox wget -q -O - "$md/1.0/meta-data/instance-id"); then
    say "standin_instance_id=$id"
else
    say standin_instance_id=fail
    exit 1
fi
busybox timeout 10 busybox wget -q -O - "$md/vmtest/key" | cryptsetup open --key-file=- /dev/vg.flex/lv.luks luks
[ -e /dev/mapper/luks ]
