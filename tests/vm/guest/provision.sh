#!/bin/bash
# Provisioning boot (runs from the IO disk as ./run): the article's volume on the data disk.
#   IO disk inputs: key (the LUKS passphrase, exact bytes), data-dev (the blank data disk, /dev/vdb);
#   optional: backup (the backup passphrase the article tells users to keep: a second keyslot on
#   every volume), extra (one volume NAME per line: lv.NAME, LUKS2 keyed with key-NAME, no file
#   system; the fallback test's per-volume failures).
# Makes PV + vg.flex + lv.luks, LUKS2 with argon2id, ext4, a marker file; closes everything.
set -euo pipefail
say() { echo "VMTEST RESULT $1"; }
dev=$(cat data-dev)
pvcreate -q -y "$dev"
vgcreate -q vg.flex "$dev"
# Room is left in vg.flex for the volume the lifecycle test enrolls.
lvcreate -q -y -n lv.luks -L 192M vg.flex
# argon2id benchmarked under TCG can take minutes per open; the test volume gets fixed cheap costs
# (64 MiB, 4 iterations). Parallel 4: what cryptsetup picks on a server with 4 or more CPUs, where
# the article's volumes are formatted (opening it may run argon2 threads).
cryptsetup luksFormat -q --batch-mode --type luks2 --pbkdf argon2id \
    --pbkdf-memory 65536 --pbkdf-force-iterations 4 --pbkdf-parallel 4 \
    --key-file key /dev/vg.flex/lv.luks
# Cheap keyslots for the rest (PBKDF2, 1000 iterations): only the test's time is at stake.
fast=(--batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000)
[ -f backup ] && cryptsetup luksAddKey "${fast[@]}" --key-file key /dev/vg.flex/lv.luks backup
cryptsetup open --key-file key /dev/vg.flex/lv.luks luks
mkfs.ext4 -q -L luks /dev/mapper/luks
mkdir -p /luks
mount /dev/mapper/luks /luks
cat marker >/luks/vmtest-marker
umount /luks
cryptsetup close luks
if [ -f extra ]; then
    while read -r name; do
        lvcreate -q -y -n "lv.$name" -L 32M vg.flex
        cryptsetup luksFormat -q --type luks2 "${fast[@]}" --key-file "key-$name" "/dev/vg.flex/lv.$name"
        cryptsetup luksAddKey "${fast[@]}" --key-file "key-$name" "/dev/vg.flex/lv.$name" backup
    done <extra
fi
say "luks_uuid=$(cryptsetup luksUUID /dev/vg.flex/lv.luks)"
vgchange -q -an vg.flex
say "provisioned=yes"
