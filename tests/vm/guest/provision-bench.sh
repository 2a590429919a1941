#!/bin/bash
# Provisioning boot of the boot benchmark (benches/boot.sh; runs from the IO disk as ./run): the
# blank disk /dev/vdb gets the LV layout every test boots, vg.flex/lv.luks (192 MiB), and ext4
# holding `marker`:
#   with the input `passphrase`: LUKS2 as the article makes it and `vault-luks enroll` leaves it:
#     keyslot 0 a person's passphrase with cryptsetup's defaults (argon2id, benchmarked on this
#     guest), keyslot 1 Vault's key (`key`, the article's 32-character transit plaintext) with
#     PBKDF2 at 1000 iterations, as enroll adds it; ext4 inside;
#   without: no encryption, ext4 directly on lv.luks.
set -euo pipefail
say() { echo "VMTEST RESULT $1"; }
pvcreate -q -y /dev/vdb
vgcreate -q vg.flex /dev/vdb
lvcreate -q -y -n lv.luks -L 192M vg.flex
fs=/dev/vg.flex/lv.luks
if [ -f passphrase ]; then
    cryptsetup luksFormat -q --batch-mode --type luks2 --key-file passphrase /dev/vg.flex/lv.luks
    cryptsetup luksAddKey -q --batch-mode --key-file passphrase --new-key-slot 1 \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 /dev/vg.flex/lv.luks key
    cryptsetup open --key-file key --key-slot 1 /dev/vg.flex/lv.luks luks
    fs=/dev/mapper/luks
    # What a boot that tried keyslot 0 first would pay: its PBKDF and costs.
    say "slot0=$(cryptsetup luksDump /dev/vg.flex/lv.luks |
        awk '/^  0: luks2/ { s = 1 } /^  1: luks2/ { s = 0 } s && /PBKDF:|Memory:|Time cost:|Threads:/ { printf "%s%s", sep, $NF; sep = "," }')"
fi
mkfs.ext4 -q -L luks "$fs"
mkdir -p /luks
mount "$fs" /luks
cat marker >/luks/vmtest-marker
umount /luks
[ "$fs" = /dev/vg.flex/lv.luks ] || cryptsetup close luks
vgchange -q -an vg.flex
say "provisioned=yes"
