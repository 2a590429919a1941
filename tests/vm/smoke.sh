#!/usr/bin/env bash
# smoke.sh FLAVOUR — the VM harness end to end for one flavour (initramfs-tools or dracut):
#   1. the cached guest image (build-image.sh builds it when missing or stale);
#   2. a root disk from a copy of it with the stand-in unlock step in the initramfs (built on the host);
#   3. provisioning boot: the guest makes vg.flex/lv.luks, LUKS2 (argon2id), ext4 and a marker file;
#   4. smoke boot: in the initramfs the step finds the LV active, has the network up, fetches the
#      instance id and the key from 169.254.169.254 (a host http server on 127.0.0.1) and opens
#      /dev/mapper/luks; the real root (init=) mounts it, checks the marker, closes it.
# Results are "VMTEST RESULT key=value" lines on the serial console. VM_KEEP=1 keeps the work dir;
# VM_SMOKE_SYSTEMD=1 boots the real root with systemd for step 4; VM_SMOKE_APPEND adds kernel arguments.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

flavour=$(vm_flavour "$@")
vm_init
vm_time_start "smoke:$flavour"

vm_time_start image
vm_ensure_image "$flavour"
vm_time_end image
img=$(vm_image_dir "$flavour")

vm_time_start assemble
root=$VM_WORK/rootfs
vm_prepare_root "$flavour" "$root"
vm_time_start initrd
vm_install_standin_step "$root" "$VM_LIB_DIR/standin-unlock.sh"
vm_build_initrd "$root" "$VM_WORK/initrd.img"
vm_time_end initrd
vm_mkfs_dir "$root" "$VM_WORK/root.img" 2G vmroot
rm -rf -- "$root"
vm_time_end assemble
vm_log "initrd $(du -h "$VM_WORK/initrd.img" | cut -f1), root.img $(du -h "$VM_WORK/root.img" | cut -f1) used"

# The article's passphrase: 24 random bytes as base64 text, used as-is (no newline) as the LUKS key.
openssl rand -base64 24 | tr -d '\n' >"$VM_WORK/key"
echo "smoke $(date -u +%FT%TZ) $RANDOM" >"$VM_WORK/marker"
vm_blank_disk "$VM_WORK/data.img" 256M
vm_provision "$img/vmlinuz" "$img/initrd-stock.img" "$VM_WORK/root.img" "$VM_WORK/data.img" \
    "$VM_WORK/key" "$VM_WORK/marker"

# The metadata stand-in: instance id at the Exoscale path, and the key where the stand-in looks.
meta=$VM_WORK/meta
mkdir -p "$meta/1.0/meta-data" "$meta/vmtest"
instance_id=$(cat /proc/sys/kernel/random/uuid)
printf '%s' "$instance_id" >"$meta/1.0/meta-data/instance-id"
cp "$VM_WORK/key" "$meta/vmtest/key"
vm_http_serve "$meta"

vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-unlocked.sh" "$VM_WORK/marker"
# No ip=, rd.neednet or rd.lvm on the kernel command line: the initramfs must carry what it needs.
# VM_SMOKE_SYSTEMD=1: the real root boots with systemd (vmtest.service runs the check) instead of init=.
if [ "${VM_SMOKE_SYSTEMD:-0}" = 1 ]; then
    append="$VM_APPEND_BASE vmtest.io"
else
    append="$VM_APPEND_BASE init=/vmtest/init"
fi
append+=" ${VM_SMOKE_APPEND:-}"
vm_start smoke "$img/vmlinuz" "$VM_WORK/initrd.img" "$append" \
    "$VM_WORK/root.img" "$VM_WORK/data.img" "$VM_WORK/io.img"
vm_wait_for 'VMTEST RESULT initrd_mapper=' 240
vm_wait_for 'VMTEST PROMPT: ' 120
typed="typed-by-host-$RANDOM"
vm_send "$typed\n"
vm_wait_for 'VMTEST DONE' 60
vm_wait_exit 60

vm_expect initrd "$flavour"               # our initramfs ran our step
vm_expect initrd_lv yes                   # the framework's LVM activated vg.flex/lv.luks in the initramfs
vm_expect standin_instance_id "$instance_id" # 169.254.169.254:80 reached the host's 127.0.0.1 server
vm_expect initrd_unlock_rc 0
vm_expect initrd_mapper yes               # cryptsetup opened /dev/mapper/luks in the initramfs
vm_expect root_mapper yes                 # ... and it survived switch_root
vm_expect marker ok                       # the provisioning boot's ext4 and file are intact
vm_expect closed yes
vm_expect typed "$typed"                  # vm_send reached a prompt on the serial console
net=$(vm_result initrd_net)
[[ $net == *@169.254.* ]] || vm_die "no 169.254.x address in the initramfs (got '$net')"
vm_log "ok   initrd_net=$net"
[ "$(vm_disk_cat "$VM_WORK/io.img" /boots | wc -l)" = 1 ] || vm_die "result file boots not read back from the IO disk"
vm_log "ok   result file read back from the IO disk"

vm_time_end "smoke:$flavour"
vm_log "PASS smoke $flavour: ${VM_TIMES[*]}"
