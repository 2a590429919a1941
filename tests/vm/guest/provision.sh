#!/bin/bash
# Provisioning boot (runs from the IO disk as ./run): the article's volume on the data disk.
#   IO disk inputs: key (the LUKS passphrase, exact bytes), data-dev (the blank data disk, /dev/vdb).
# Makes PV + vg.flex + lv.luks, LUKS2 with argon2id, ext4, a marker file; closes everything.
set -euo pipefail
say() { echo "VMTEST RESULT $1"; }
dev=$(cat data-dev)
pvcreate -q -y "$dev"
vgcreate -q vg.flex "$dev"
lvcreate -q -y -n lv.luks -l 100%FREE vg.flex
# argon2id benchmarked under TCG can take minutes per open; the test volume gets fixed cheap costs
# (64 MiB, 4 iterations, 1 thread). Real volumes keep cryptsetup's benchmarked defaults.
cryptsetup luksFormat -q --batch-mode --type luks2 --pbkdf argon2id \
    --pbkdf-memory 65536 --pbkdf-force-iterations 4 --pbkdf-parallel 1 \
    --key-file key /dev/vg.flex/lv.luks
cryptsetup open --key-file key /dev/vg.flex/lv.luks luks
mkfs.ext4 -q -L luks /dev/mapper/luks
mkdir -p /luks
mount /dev/mapper/luks /luks
cat marker >/luks/vmtest-marker
umount /luks
cryptsetup close luks
say "luks_uuid=$(cryptsetup luksUUID /dev/vg.flex/lv.luks)"
vgchange -q -an vg.flex
say "provisioned=yes"
