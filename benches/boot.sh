#!/usr/bin/env bash
# Benchmark (VM): what vault-luks adds to a boot, side by side with a boot that has no encryption
# at all. For each flavour (initramfs-tools, dracut) two guests of the same image (the minimal
# trixie guest: only what the README tells a user to install) and the same LV layout,
# vg.flex/lv.luks with ext4 mounted at /luks by an ordinary fstab line:
#   none    ext4 directly on the LV; the image's own initramfs;
#   vault   the LV is LUKS2 as the article makes it and enroll leaves it (keyslot 0 a person's
#           passphrase with cryptsetup's default argon2id, keyslot 1 Vault's key with PBKDF2;
#           volumes[].keyslot = 1 in the config, as enroll's token would say), vault-luks
#           installed by scripts/install.sh, its own network, OpenBao behind the Exoscale
#           stand-ins on the host.
# Boots ROUNDS of each (default 3), interleaved (none, vault, vault, none, ...: these machines
# drift; only same-run ratios count), each on pristine disks (writes discarded), and prints per
# flavour the medians of the phases (seconds since the kernel started; tests/vm/guest/
# bench-times.sh says how each is taken), what vault-luks adds at switch_root and at /luks
# mounted, and the ratios vault/none; then the initramfs of both (compressed, unpacked, files) and
# what vault-luks adds, file by file. Target (issue 17): at most 1.5 s added before switch_root;
# the initramfs at most 1.2 MB (1,200,000 bytes) larger compressed. Exit 1 when one is missed.
# Usage: benches/boot.sh [ROUNDS]   (BENCH_FLAVOURS="dracut" for one flavour; VM_KEEP=1 keeps logs)
set -euo pipefail
rounds=${1:-3}
read -r -a flavours <<<"${BENCH_FLAVOURS:-initramfs-tools dracut}"
export VM_RELEASE=${VM_RELEASE:-trixie} VM_VARIANT=${VM_VARIANT-minimal}
# shellcheck source=tests/vm/lib.sh
. "$(dirname "$0")/../tests/vm/lib.sh"
repo=$(cd "$VM_LIB_DIR/../.." && pwd)
vm_init
"$VM_LIB_DIR/host-deps.sh" >&2
bin=$("$repo/scripts/build.sh")
phases=(init start network key unlocked switch mounted)
max_added_s=1.5
max_growth_bytes=1200000

# bench_disks: the two data disks (bench/vault.img, bench/none.img), provisioned once and cached
# like the test suite's data disk, with Vault's key (bench/key, a transit plaintext) and the marker.
bench_disks() {
    local stamp dir lock img kind
    BENCH_DATA=$VM_CACHE/bench
    stamp=$(printf '%s\n' "$VM_DATA_RELEASE" "$(cat "$VM_LIB_DIR/guest/provision-bench.sh")" \
        "$(declare -f bench_disks vm_provision)" | sha256sum | cut -c1-16)
    mkdir -p "$VM_CACHE"
    exec {lock}>"$VM_CACHE/bench.lock"
    flock "$lock"
    if [ "$(cat "$BENCH_DATA/stamp" 2>/dev/null || true)" = "$stamp" ]; then
        exec {lock}>&-
        vm_log "bench disks are current ($stamp): $BENCH_DATA"
        return 0
    fi
    vm_log "provisioning the bench disks ($stamp) with the $VM_DATA_RELEASE initramfs-tools image"
    local VM_RELEASE=$VM_DATA_RELEASE VM_VARIANT=
    vm_ensure_image initramfs-tools
    img=$(vm_image_dir initramfs-tools)
    dir=$VM_CACHE/bench.new
    rm -rf -- "$dir"
    mkdir -p "$dir"
    vm_prepare_root initramfs-tools "$VM_WORK/provision-root"
    vm_mkfs_dir "$VM_WORK/provision-root" "$VM_WORK/provision-root.img" 2G vmroot
    rm -rf -- "$VM_WORK/provision-root"
    vm_new_key >"$dir/key"
    printf 'a person types this %s' "$(openssl rand -hex 8)" >"$dir/passphrase"
    echo "provisioned $(date -u +%FT%TZ) $RANDOM" >"$dir/marker"
    for kind in vault none; do
        vm_blank_disk "$dir/$kind.img" 256M
        # shellcheck disable=SC2046 # no passphrase: no encryption
        VM_PROVISION_SCRIPT=$VM_LIB_DIR/guest/provision-bench.sh vm_provision "$img/vmlinuz" \
            "$img/initrd-stock.img" "$VM_WORK/provision-root.img" "$dir/$kind.img" "$dir/key" "$dir/marker" \
            $([ "$kind" = none ] || echo "$dir/passphrase")
        [ "$kind" = none ] || vm_result slot0 >"$dir/slot0"
    done
    rm -f "$VM_WORK/provision-root.img"
    echo "$stamp" >"$dir/stamp"
    rm -rf -- "$BENCH_DATA"
    mv "$dir" "$BENCH_DATA"
    exec {lock}>&-
}

# assemble FLAVOUR KIND: the guest's root image ($VM_WORK/FLAVOUR-KIND.root.img) and initramfs
# (FLAVOUR-KIND.initrd); the root's unpacked initramfs stays for the accounting.
assemble() {
    local flavour=$1 kind=$2 root=$VM_WORK/$1-$2.root
    vm_prepare_root "$flavour" "$root"
    mkdir -p "$root/luks"
    if [ "$kind" = none ]; then
        echo "/dev/vg.flex/lv.luks /luks ext4 defaults 0 2" >>"$root/etc/fstab"
    else
        install -d -m 0700 "$root/etc/vault-luks"
        install -m 0600 "$VM_WORK/luks.passphrase" "$root/etc/luks.passphrase"
        cat >"$root/etc/vault-luks/config.json" <<JSON
{"vault":   {"address": "http://169.254.0.2:$VM_VAULT_PORT", "allow_http": true},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "volumes": [{"name": "luks", "device": "/dev/mapper/vg.flex-lv.luks", "ciphertext_file": "/etc/luks.passphrase",
              "keyslot": 1, "transit": {"key": "luks"}}]}
JSON
        chmod 0600 "$root/etc/vault-luks/config.json"
        DESTDIR=$root "$repo/scripts/install.sh" "$bin" >&2
        vm_network_mode "$root" own
        echo "/dev/mapper/luks /luks ext4 defaults 0 2" >>"$root/etc/fstab"
    fi
    vm_build_initrd "$root" "$VM_WORK/$flavour-$kind.initrd"
    unpack "$root" "$VM_WORK/$flavour-$kind.initrd" "$VM_WORK/$flavour-$kind.unpacked"
    vm_mkfs_dir "$root" "$VM_WORK/$flavour-$kind.root.img" 2G vmroot
    rm -rf -- "$root"
}

# unpack ROOT IMG DIR: IMG unpacked into DIR by the flavour's own tool, in a chroot of ROOT.
unpack() {
    local root=$1 img=$2 dir=$3
    cp "$img" "$root/tmp/bench-initrd.img"
    mkdir -p "$root/tmp/bench-unpacked"
    vm_chroot_mount "$root"
    case $(cat "$root/etc/vmtest-flavour") in
        initramfs-tools) vm_chroot "$root" unmkinitramfs /tmp/bench-initrd.img /tmp/bench-unpacked ;;
        dracut) vm_chroot "$root" sh -c 'cd /tmp/bench-unpacked && lsinitrd --unpack /tmp/bench-initrd.img' ;;
    esac >/dev/null 2>&1 || vm_die "could not unpack $img"
    vm_chroot_umount "$root"
    rm -rf -- "$dir"
    mv "$root/tmp/bench-unpacked" "$dir"
    rm -f "$root/tmp/bench-initrd.img"
}

# boot FLAVOUR KIND ROUND: one boot; its phases appended to $VM_WORK/FLAVOUR-KIND.times as
# "PHASE SECONDS" lines.
boot() {
    local flavour=$1 kind=$2 name=$1-$2-$3 phase value
    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/bench-times.sh" "$BENCH_DATA/marker"
    VM_SNAPSHOT=2 vm_start "$name" "$(vm_image_dir "$flavour")/vmlinuz" "$VM_WORK/$flavour-$kind.initrd" \
        "$VM_APPEND_BASE vmtest.io" "$VM_WORK/$flavour-$kind.root.img" "$BENCH_DATA/$kind.img" "$VM_WORK/io.img"
    vm_wait_for 'VMTEST DONE' 600
    vm_wait_exit 120
    vm_expect marker ok
    for phase in "${phases[@]}"; do
        value=$(vm_result "t_$phase")
        [ -z "$value" ] || echo "$phase $value" >>"$VM_WORK/$flavour-$kind.times"
    done
    vm_log "$name: $(grep -a -o -E 'VMTEST RESULT t_[a-z]+=[0-9.]+' "$VM_LOG" | cut -d' ' -f3 | tr '\n' ' ')"
}

# median FILE PHASE: the median of PHASE's values in FILE (empty if none).
median() {
    awk -v p="$2" '$1 == p { print $2 }' "$1" | sort -n |
        awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# report_times FLAVOUR: the medians of both guests, side by side; returns 1 if the target is missed.
report_times() {
    local f=$1 none=$VM_WORK/$1-none.times vault=$VM_WORK/$1-vault.times phase a b verdict=0
    printf '\n%s (%s, %s boots each, medians, seconds since the kernel started)\n' "$f" "$VM_RELEASE" "$rounds"
    printf '  %-10s %8s %8s\n' phase none vault-luks
    for phase in "${phases[@]}"; do
        a=$(median "$none" "$phase")
        b=$(median "$vault" "$phase")
        printf '  %-10s %8s %8s\n' "$phase" "${a:--}" "${b:--}"
    done
    for phase in switch mounted; do
        a=$(median "$none" "$phase")
        b=$(median "$vault" "$phase")
        awk -v p="$phase" -v a="$a" -v b="$b" -v max="$max_added_s" 'BEGIN {
            printf "  vault-luks adds %.2f s before %s (ratio %.2fx)", b - a, (p == "switch") ? "switch_root" : "/luks is mounted", b / a
            if (p == "switch") printf ": target <= %.1f s %s", max, (b - a <= max) ? "met" : "MISSED"
            printf "\n"; exit (p == "switch" && b - a > max) }' || verdict=1
    done
    return "$verdict"
}

# report_initramfs FLAVOUR: both images' sizes, and what vault-luks adds, file by file (each
# file's size, and compressed alone with gzip -9 as an indication of its share); returns 1 if the
# growth is over the target.
report_initramfs() {
    local f=$1 none=$VM_WORK/$1-none vault=$VM_WORK/$1-vault verdict=0 side
    printf '\n%s initramfs           compressed     unpacked   files\n' "$f"
    for side in none vault; do
        printf '  %-22s %12s %12s %7s\n' "$side" "$(stat -c %s "$VM_WORK/$f-$side.initrd")" \
            "$(du -s -b "$VM_WORK/$f-$side.unpacked" | cut -f1)" "$(find "$VM_WORK/$f-$side.unpacked" ! -type d | wc -l)"
    done
    awk -v a="$(stat -c %s "$none.initrd")" -v b="$(stat -c %s "$vault.initrd")" -v max="$max_growth_bytes" 'BEGIN {
        printf "  vault-luks adds %d bytes compressed: target <= %d %s\n", b - a, max, (b - a <= max) ? "met" : "MISSED"
        exit (b - a > max) }' || verdict=1
    # File by file: what is in vault-luks's image and not in the other, or larger there.
    (cd "$none.unpacked" && find . ! -type d -printf '%P %s\n' | sort) >"$none.files"
    (cd "$vault.unpacked" && find . ! -type d -printf '%P %s\n' | sort) >"$vault.files"
    printf '  %10s %10s  %s\n' bytes gzip-9 "file (added, or +bytes where it grew)"
    join -a 2 -e 0 -o 0,1.2,2.2 "$none.files" "$vault.files" | awk '$3 > $2' | sort -k3,3nr |
        while read -r path before after; do
            if [ -L "$vault.unpacked/$path" ]; then
                printf '  %10s %10s  %s -> %s\n' "$after" - "$path" "$(readlink "$vault.unpacked/$path")"
            elif [ "$before" = 0 ]; then
                printf '  %10s %10s  %s\n' "$after" "$(gzip -9 -c "$vault.unpacked/$path" 2>/dev/null | wc -c)" "$path"
            else
                printf '  %10s %10s  %s (+%s)\n' "$after" - "$path" "$((after - before))"
            fi
        done
    return "$verdict"
}

vm_ensure_image initramfs-tools
bench_disks
vm_vault_standin
bao write -field=ciphertext transit/encrypt/luks plaintext="$(cat "$BENCH_DATA/key")" >"$VM_WORK/luks.passphrase"
# The root token stays on the host: install.sh's check in the guest's chroot would take it.
unset BAO_ADDR BAO_TOKEN
for f in "${flavours[@]}"; do
    vm_ensure_image "$f"
    assemble "$f" none
    assemble "$f" vault
done
vm_log "bench: keyslot 0 of the vault disk (what a boot trying it first would pay): $(cat "$BENCH_DATA/slot0")"
for ((r = 1; r <= rounds; r++)); do
    for f in "${flavours[@]}"; do
        # Alternate which guest boots first: an order effect cancels out over the rounds.
        if ((r % 2)); then order=(none vault); else order=(vault none); fi
        for kind in "${order[@]}"; do boot "$f" "$kind" "$r"; done
    done
done

verdict=0
echo "== boot benchmark: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), qemu TCG, $VM_RELEASE${VM_VARIANT:+ $VM_VARIANT} guests, $(date -u +%F)"
for f in "${flavours[@]}"; do
    report_times "$f" || verdict=1
    report_initramfs "$f" || verdict=1
done
exit "$verdict"
