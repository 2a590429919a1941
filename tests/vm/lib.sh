# shellcheck shell=bash
# Shared functions of the VM boot-test harness. Source it from a bash script that runs `set -euo pipefail`:
#
#   . "$(dirname "$0")/lib.sh"
#   vm_init                      # work dir + EXIT trap (cleanup runs LIFO)
#
# Everything runs on the host as root: debootstrap, chroot, mke2fs, qemu-system-x86_64 under TCG. The host
# has no device-mapper and no loop devices are used: LVM and LUKS are made inside a guest boot.
#
# Guest network (user-mode, verified): the guest sees the host as 169.254.0.2 (so the host's
# 127.0.0.1:PORT is 169.254.0.2:PORT in the guest) and 169.254.169.254:80 is forwarded to the host's
# 127.0.0.1:VM_META_PORT (through guestfwd-relay.sh). The guest NIC is ens3 (its PCI slot is pinned).

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CACHE=${VAULT_LUKS_CACHE:-/var/cache/vault-luks-vm}
# The Debian release of the guests (VM_RELEASE=bookworm|trixie): trixie, the stable release, unless
# told otherwise. The cached data disk is provisioned on one release whatever the guests run
# (VM_DATA_RELEASE), so every suite boots the same disk.
VM_RELEASE=${VM_RELEASE:-trixie}
VM_DATA_RELEASE=bookworm
# VM_VARIANT=minimal: the guest has only what the README tells a user to install (build-image.sh).
VM_VARIANT=${VM_VARIANT:-}
VM_MEM=${VM_MEM:-1024}

# --- logging, cleanup ---------------------------------------------------------------------------------

vm_log() { printf '%s [vm] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
vm_die() { printf '%s [vm] FAIL: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

VM_CLEANUPS=()
# vm_on_exit CMD...: run CMD (one string, eval'd) at exit, last registered first.
vm_on_exit() { VM_CLEANUPS+=("$*"); }
vm_run_cleanups() {
    local rc=$? i
    set +e
    trap - ERR
    if [ "$rc" = 0 ]; then vm_part_end pass; else vm_part_end FAIL; fi
    for ((i = ${#VM_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${VM_CLEANUPS[i]}"
    done
    VM_CLEANUPS=()
    return "$rc"
}

# vm_err STATUS LINE COMMAND (the ERR trap): say which command ended the script under `set -e`, so that
# a failure outside vm_die (curl, cp, a chroot step) is not a silent exit in a CI log.
vm_err() { printf '%s [vm] FAIL: %s:%s: "%s" exited with %s\n' "$(date +%H:%M:%S)" "${BASH_SOURCE[1]##*/}" "$2" "$3" "$1" >&2; }
# shellcheck disable=SC2016 # expanded when the trap runs
vm_err_trace() { trap 'vm_err $? $LINENO "$BASH_COMMAND"' ERR; }

# vm_init: a work dir (VM_WORK; kept when VM_KEEP=1), the EXIT trap and the ERR trace. Call once, at the top.
vm_init() {
    trap vm_run_cleanups EXIT
    trap 'exit 130' INT TERM
    set -E
    vm_err_trace
    [ "$(id -u)" = 0 ] || vm_die "run as root (debootstrap, chroot, mount)"
    VM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/vault-luks-vm.XXXXXX")
    if [ "${VM_KEEP:-0}" = 1 ]; then
        vm_on_exit "vm_log 'kept work dir $VM_WORK'"
    else
        vm_on_exit "rm -rf -- '$VM_WORK'"
    fi
}

# vm_time_start NAME / vm_time_end NAME: print and remember (VM_TIMES) the wall time of a step.
declare -A VM_T0=()
VM_TIMES=()
vm_time_start() { VM_T0[$1]=$(date +%s.%N); }
vm_time_end() {
    local t
    t=$(awk -v a="${VM_T0[$1]}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    VM_TIMES+=("$1=${t}s")
    vm_log "time $1: ${t}s"
}

# vm_part NAME: a named part of the script begins; the one before it, if any, ends as passed. Each
# part's wall time and result go to $VM_RESULTS when it is set (a line "NAME<TAB>SECONDS<TAB>pass"
# or "...FAIL", NAME prefixed with $VM_PART_PREFIX): run-all.sh and `make test` print them as their
# summary. A part still running when the script exits passed if the exit status is 0, else failed.
VM_PART=
vm_part() {
    vm_part_end pass
    VM_PART=$1
    VM_PART_T0=$(date +%s.%N)
    vm_log "-- ${VM_PART_PREFIX:-}$1"
}
vm_part_end() {
    [ -n "${VM_PART:-}" ] || return 0
    local t
    t=$(awk -v a="$VM_PART_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    [ -z "${VM_RESULTS:-}" ] || printf '%s\t%s\t%s\n' "${VM_PART_PREFIX:-}$VM_PART" "$t" "$1" >>"$VM_RESULTS"
    vm_log "-- ${VM_PART_PREFIX:-}$VM_PART: $1 (${t} s)"
    VM_PART=
}

# vm_isolated CMD...: run CMD (a part, or several: it calls vm_part) in a subshell with cleanups of its
# own, so that a failure -- vm_die, or any command under `set -e` -- ends CMD alone: its VM is stopped,
# its running part is recorded FAIL, and the caller goes on with the next part. VM_FAILED counts the
# failed ones; the caller exits non-zero at its end when it is not 0.
VM_FAILED=0
vm_isolated() {
    local rc=0
    vm_part_end pass
    # Not `( ... ) || rc=$?`: bash ignores `set -e` in a subshell whose status is tested. The ERR trace
    # is off around it here, on inside it: the failure is reported once, where it happened.
    set +e
    trap - ERR
    (
        set -e
        vm_err_trace
        VM_CLEANUPS=()
        trap vm_run_cleanups EXIT
        trap 'exit 130' INT TERM
        "$@"
    )
    rc=$?
    vm_err_trace
    set -e
    [ "$rc" = 0 ] || VM_FAILED=$((VM_FAILED + 1))
    # Interrupted: stop here too.
    [ "$rc" != 130 ] || exit 130
}

# --- chroot on the host -------------------------------------------------------------------------------

# vm_chroot_mount ROOT: bind /dev, /proc, /sys into ROOT (unmounted by vm_chroot_umount or at exit).
vm_chroot_mount() {
    local root=$1 d
    for d in dev proc sys; do
        mkdir -p "$root/$d"
        mount --bind "/$d" "$root/$d"
    done
    vm_on_exit "vm_chroot_umount '$root'"
}
vm_chroot_umount() {
    local root=$1 d
    for d in sys proc dev; do
        if mountpoint -q "$root/$d"; then umount -l "$root/$d"; fi
    done
}

# vm_chroot ROOT CMD...: run CMD in ROOT with a clean environment (needs vm_chroot_mount).
vm_chroot() {
    local root=$1
    shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        chroot "$root" "$@"
}

# vm_guest_kver ROOT: the one kernel version installed in ROOT.
vm_guest_kver() {
    local d
    d=$(find "$1/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)
    [ -n "$d" ] || vm_die "no kernel in $1"
    printf '%s\n' "$d"
}

# --- images -------------------------------------------------------------------------------------------

# vm_image_dir FLAVOUR: the cached image of $VM_RELEASE (made by build-image.sh): rootfs/, vmlinuz,
# initrd-stock.img (the flavour's initramfs as installed: for provisioning boots), stamp.
vm_image_dir() { printf '%s/%s-%s%s\n' "$VM_CACHE" "$VM_RELEASE" "$1" "${VM_VARIANT:+-$VM_VARIANT}"; }

# vm_ensure_image FLAVOUR: build the cached image of $VM_RELEASE (and $VM_VARIANT) unless it is
# current (build-image.sh decides).
vm_ensure_image() { VM_RELEASE=$VM_RELEASE VM_VARIANT=$VM_VARIANT "$VM_LIB_DIR/build-image.sh" "$1" >&2; }

# vm_copy_root FLAVOUR DEST: a private copy of the cached rootfs to change (hooks, test files).
vm_copy_root() {
    local src
    src=$(vm_image_dir "$1")/rootfs
    [ -d "$src" ] || vm_die "no image for $1 (run tests/vm/build-image.sh $1)"
    rm -rf -- "$2"
    cp -a --reflink=auto "$src" "$2"
}

# vm_prepare_root FLAVOUR ROOT: a private copy of the cached rootfs with the guest side of the harness:
# /vmtest/init (PID 1 for init= boots), /vmtest/vmtest-run, /vmtest/net-state.sh, and vmtest.service
# (full systemd boots with vmtest.io on the command line). Both run the boot's script from the IO disk (vm_io_disk).
vm_prepare_root() {
    local flavour=$1 root=$2
    vm_copy_root "$flavour" "$root"
    install -d -m 755 "$root/vmtest"
    install -m 755 "$VM_LIB_DIR/guest/init" "$VM_LIB_DIR/guest/vmtest-run" "$VM_LIB_DIR/guest/net-state.sh" "$root/vmtest/"
    install -m 644 "$VM_LIB_DIR/guest/vmtest.service" "$root/etc/systemd/system/"
    install -d -m 755 "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/vmtest.service "$root/etc/systemd/system/multi-user.target.wants/"
}

# vm_install_standin_step ROOT UNLOCK_PROGRAM [FILE...]: the smoke test's unlock step, in ROOT's flavour
# (tests/vm/initramfs-tools or tests/vm/dracut/99vmtest). UNLOCK_PROGRAM becomes /bin/vmtest-unlock in
# the initramfs and runs once the network is up (default: standin-unlock.sh; a wrapper script can call
# the real `vault-luks unlock`); each FILE (absolute path inside ROOT) is copied in too, binaries with
# their libraries.
vm_install_standin_step() {
    local root=$1 program=$2 flavour
    shift 2
    flavour=$(cat "$root/etc/vmtest-flavour")
    install -d -m 755 "$root/etc/vmtest"
    install -m 755 "$VM_LIB_DIR/initrd-step.sh" "$root/etc/vmtest/step"
    install -m 755 "$program" "$root/etc/vmtest/unlock"
    printf '%s\n' "$@" >"$root/etc/vmtest/initrd-files"
    case $flavour in
        initramfs-tools)
            install -m 755 "$VM_LIB_DIR/initramfs-tools/hooks/vmtest" "$root/etc/initramfs-tools/hooks/"
            install -m 755 "$VM_LIB_DIR/initramfs-tools/scripts/local-top/vmtest" \
                "$root/etc/initramfs-tools/scripts/local-top/" ;;
        dracut)
            cp -r "$VM_LIB_DIR/dracut/99vmtest" "$root/usr/lib/dracut/modules.d/"
            printf 'add_dracutmodules+=" vmtest "\n' >"$root/etc/dracut.conf.d/90-vmtest.conf" ;;
    esac
}

# vm_network_mode ROOT own|framework: who brings the network up in the initramfs built from ROOT.
#   own: vault-luks alone, the default install; the framework's networking is not in the image at
#     all (the dracut image has dracut-network, whose ifcfg module would pull the network module
#     in: omitted, as on a system without dracut-network).
#   framework: the integration's documented opt-in (dracut: vault_luks_network="dracut";
#     initramfs-tools: VAULT_LUKS_NETWORK=initramfs-tools).
vm_network_mode() {
    local root=$1 mode=$2 flavour
    flavour=$(cat "$root/etc/vmtest-flavour")
    rm -f "$root/etc/dracut.conf.d/90-vmtest-network.conf" "$root/etc/initramfs-tools/conf.d/vault-luks"
    case $flavour:$mode in
        dracut:own) echo 'omit_dracutmodules+=" network ifcfg "' >"$root/etc/dracut.conf.d/90-vmtest-network.conf" ;;
        dracut:framework) echo 'vault_luks_network="dracut"' >"$root/etc/dracut.conf.d/90-vmtest-network.conf" ;;
        initramfs-tools:own) ;;
        initramfs-tools:framework) echo 'VAULT_LUKS_NETWORK=initramfs-tools' >"$root/etc/initramfs-tools/conf.d/vault-luks" ;;
        *) vm_die "vm_network_mode: $flavour:$mode" ;;
    esac
}

# vm_build_initrd ROOT OUT: build the initramfs of ROOT's flavour in a chroot of ROOT on the host, copy it
# to OUT. The flavour's own config and whatever hooks/modules were put into ROOT beforehand are used.
vm_build_initrd() {
    local root=$1 out=$2 kver flavour
    kver=$(vm_guest_kver "$root")
    flavour=$(cat "$root/etc/vmtest-flavour")
    vm_chroot_mount "$root"
    case $flavour in
        initramfs-tools)
            vm_chroot "$root" update-initramfs -c -k "$kver" >"$VM_WORK/initrd-build.log" 2>&1 ||
                { tail -n 40 "$VM_WORK/initrd-build.log" >&2; vm_die "update-initramfs failed"; } ;;
        dracut)
            vm_chroot "$root" dracut --force --no-hostonly --kver "$kver" "/boot/initrd.img-$kver" \
                >"$VM_WORK/initrd-build.log" 2>&1 ||
                { tail -n 40 "$VM_WORK/initrd-build.log" >&2; vm_die "dracut failed"; } ;;
        *) vm_die "unknown flavour '$flavour' in $root/etc/vmtest-flavour" ;;
    esac
    # With vault-luks installed, the image must pass the check the install runs (for
    # initramfs-tools update-initramfs has run it already, through post-update.d); for dracut,
    # the kernel hook a kernel upgrade runs after dracut's must pass too.
    if [ -x "$root/usr/local/sbin/vault-luks" ] && [ -e "$root/etc/vault-luks/config.json" ]; then
        vm_chroot "$root" /usr/local/sbin/vault-luks --no-cmdline check --image "/boot/initrd.img-$kver" \
            >"$VM_WORK/initrd-check.log" 2>&1 ||
            { cat "$VM_WORK/initrd-check.log" >&2; vm_die "vault-luks check --image refused the initramfs"; }
        if [ "$flavour" = dracut ]; then
            if ! vm_chroot "$root" /etc/kernel/postinst.d/zz-vault-luks "$kver" "/boot/vmlinuz-$kver" \
                >"$VM_WORK/postinst.log" 2>&1 || ! grep -q 'can unlock' "$VM_WORK/postinst.log"; then
                cat "$VM_WORK/postinst.log" >&2
                vm_die "the kernel hook zz-vault-luks did not pass the image"
            fi
        fi
    fi
    vm_chroot_umount "$root"
    cp "$root/boot/initrd.img-$kver" "$out"
    # The guest boots the initrd given to qemu; a copy in the root image would only take space.
    rm -f "$root/boot/initrd.img-$kver"
}

# vm_mkfs_dir DIR IMG SIZE [LABEL]: an ext4 image holding DIR's tree, made without a loop device.
vm_mkfs_dir() {
    local dir=$1 img=$2 size=$3 label=${4:-}
    rm -f "$img"
    mke2fs -q -F -t ext4 -E root_owner=0:0 ${label:+-L "$label"} -d "$dir" "$img" "$size" >/dev/null ||
        vm_die "mke2fs -d $dir $img failed"
}

# vm_blank_disk IMG SIZE: a sparse raw disk (e.g. the data disk the guest turns into LVM).
vm_blank_disk() { rm -f "$1" && truncate -s "$2" "$1"; }

# vm_disk_cat IMG PATH: print a file from an ext4 image (read back a result disk; no mount needed).
vm_disk_cat() { debugfs -R "cat $2" "$1" 2>/dev/null; }

# vm_io_disk IMG RUN_SCRIPT [FILE...]: the IO disk (ext4, label VMTEST-IO) of one boot: RUN_SCRIPT as
# ./run plus the input FILEs or directories (basenames kept). The guest runs it with the disk mounted at /vmtest/io and
# may leave result files there; read them back with vm_disk_cat IMG /NAME.
vm_io_disk() {
    local img=$1 run=$2 dir
    shift 2
    dir=$(mktemp -d "$VM_WORK/io.XXXXXX")
    install -m 755 "$run" "$dir/run"
    [ $# = 0 ] || cp -r -- "$@" "$dir/"
    vm_mkfs_dir "$dir" "$img" 16M VMTEST-IO
    rm -rf -- "$dir"
}

# --- host-side servers (loopback only) ----------------------------------------------------------------

# vm_flavour "$@": the one argument every test script takes, initramfs-tools or dracut; usage
# message and exit 2 otherwise. Prints the flavour.
vm_flavour() {
    if [ $# != 1 ] || ! [[ $1 =~ ^(initramfs-tools|dracut)$ ]]; then
        echo "usage: $0 initramfs-tools|dracut" >&2
        exit 2
    fi
    printf '%s\n' "$1"
}

# vm_vault_standin: a real OpenBao (transit set up the article's way: tests/fixtures/openbao-dev.sh)
# with the Exoscale stand-ins in front of it (role storage -> policy transit-luks, a random
# instance id), loopback only, both stopped at exit. Sets BAO_ADDR, BAO_TOKEN and BAO_PID (root
# access, for the host's own setup), VM_META_PORT (exported, for vm_start) and VM_VAULT_PORT (the
# stand-in's Vault port; its fault API is at /_standin/faults). Logs: bao.log, standin.log.
vm_vault_standin() {
    local repo standin_pid
    repo=$(cd "$VM_LIB_DIR/../.." && pwd)
    eval "$("$repo/tests/fixtures/openbao-dev.sh" "$VM_WORK/bao.log")"
    vm_on_exit "kill $BAO_PID 2>/dev/null"
    "$repo/tests/standins/exoscale_standin.py" --upstream "$BAO_ADDR" --role storage=transit-luks \
        --instance-id "$(cat /proc/sys/kernel/random/uuid)" >"$VM_WORK/ports" 2>"$VM_WORK/standin.log" &
    standin_pid=$!
    vm_on_exit "kill $standin_pid 2>/dev/null; wait $standin_pid 2>/dev/null"
    for _ in $(seq 100); do [ -s "$VM_WORK/ports" ] && break; sleep 0.1; done
    [ -s "$VM_WORK/ports" ] || vm_die "the Exoscale stand-in did not start (see $VM_WORK/standin.log)"
    VM_META_PORT=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata_port"])' <"$VM_WORK/ports")
    # shellcheck disable=SC2034 # for the scripts that source this file
    VM_VAULT_PORT=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["vault_port"])' <"$VM_WORK/ports")
    export VM_META_PORT
}

# vm_free_port: a free TCP port on 127.0.0.1.
vm_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# vm_http_serve DIR: serve DIR read-only on 127.0.0.1:VM_META_PORT (a new free port); stopped at exit.
# The guest reaches it as http://169.254.169.254/ once VM_META_PORT is passed to vm_start.
vm_http_serve() {
    local dir=$1 i
    VM_META_PORT=$(vm_free_port)
    python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$VM_META_PORT" \
        >"$VM_WORK/http-$VM_META_PORT.log" 2>&1 &
    local pid=$!
    vm_on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    for ((i = 0; i < 50; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$VM_META_PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    vm_die "http server on 127.0.0.1:$VM_META_PORT did not start"
}

# --- booting ------------------------------------------------------------------------------------------
#
# vm_start NAME KERNEL INITRD APPEND DISK...   boot in the background; serial log in VM_LOG
# vm_send TEXT                                  type TEXT (printf %b escapes: "secret\n") on the console
# vm_wait_for REGEX TIMEOUT                     wait for an extended regex in the log, after the last match
# vm_wait_exit TIMEOUT                          wait for the guest to power off; prints the boot's time
# vm_result KEY                                 value of the last "VMTEST RESULT KEY=VALUE" line
# vm_kill                                       stop qemu now (also done at exit)
#
# Disks are virtio raw images: the first is /dev/vda, then vdb, vdc, ... Options via environment:
#   VM_META_PORT=PORT       forward 169.254.169.254:80 in the guest to 127.0.0.1:PORT on the host
#   VAULT_LUKS_VM_KVM=1     use KVM instead of TCG (guests hung under KVM on the machine we measured)
#   VM_QEMU_EXTRA="..."     more qemu arguments (word-split)
#   VM_NO_NET=1             no network card
#   VM_SNAPSHOT=N           the first N disks are booted with writes discarded (the image is untouched)
#   VM_SMP=N                virtual CPUs (default 1)

# The kernel command line every boot starts from. panic=1 + qemu's -no-reboot: a guest that panics
# (e.g. init= exits) ends the run at once instead of waiting for a timeout.
# shellcheck disable=SC2034 # used by the scripts that source this file
VM_APPEND_BASE="root=/dev/vda rw console=ttyS0 panic=1"

# vm_provision KERNEL INITRD ROOT_IMG DATA_IMG KEY_FILE MARKER_FILE [FILE...]: the provisioning boot
# (init=): the blank DATA_IMG becomes PV + vg.flex/lv.luks + LUKS2 (argon2id, key = KEY_FILE's exact
# bytes) + ext4 holding MARKER_FILE as /vmtest-marker; FILEs are more inputs of guest/provision.sh
# (backup, extra, key-NAME). VM_PROVISION_SCRIPT: another guest script in its place (the boot
# benchmark's guest/provision-bench.sh). Its results (header_NAME) stay readable with vm_result. Give it the flavour's stock initramfs (built before any unlock
# integration is put into the root): an initramfs that expects the volume waits for it (dracut with
# rd.lvm.lv= in its cmdline.d waits for the LV for minutes) or tries to unlock it.
vm_provision() {
    local kernel=$1 initrd=$2 rootimg=$3 data=$4 key=$5 marker=$6 dir
    shift 6
    dir=$(mktemp -d "$VM_WORK/prov.XXXXXX")
    cp "$key" "$dir/key"
    cp "$marker" "$dir/marker"
    echo /dev/vdb >"$dir/data-dev"
    [ $# = 0 ] || cp -- "$@" "$dir/"
    vm_io_disk "$VM_WORK/provision-io.img" "${VM_PROVISION_SCRIPT:-$VM_LIB_DIR/guest/provision.sh}" "$dir"/*
    rm -rf -- "$dir"
    vm_start provision "$kernel" "$initrd" "$VM_APPEND_BASE init=/vmtest/init" \
        "$rootimg" "$data" "$VM_WORK/provision-io.img"
    vm_wait_for 'VMTEST DONE' 300
    vm_wait_exit 60
    vm_expect provisioned yes
    rm -f "$VM_WORK/provision-io.img"
}

# vm_data_disk FLAVOUR: the data disk every test boots, provisioned once and cached in
# $VM_CACHE/data/ (a provisioning boot with FLAVOUR's kernel and stock initramfs when the cache
# is cold or its inputs changed). It holds vg.flex with
#   lv.luks      192 MiB, LUKS2, keyslot 0 argon2id keyed with `key` (the article's 32-character
#                transit plaintext), keyslot 1 PBKDF2 with `backup`; ext4 holding `marker`;
#   lv.denied, lv.invalid, lv.rejected   32 MiB, LUKS2 (PBKDF2) keyed with key-NAME and backup;
#   room for the 64 MiB lv.data2 the lifecycle enrolls.
# Sets VM_DATA to the cache dir (data.img and its data.sha256, key, backup, key-NAME, marker).
# Tests boot copies of data.img, or data.img itself with writes discarded (VM_SNAPSHOT); nothing
# writes to the cached file. The keys are transit plaintexts: each
# run wraps them with its own OpenBao's transit key, as the article's `transit/encrypt` did.
vm_data_disk() {
    local flavour=$1 stamp dir lock img
    VM_DATA=$VM_CACHE/data
    stamp=$(printf '%s\n' "$VM_DATA_RELEASE" "$(cat "$VM_LIB_DIR/guest/provision.sh")" \
        "$(declare -f vm_data_disk vm_provision)" | sha256sum | cut -c1-16)
    mkdir -p "$VM_CACHE"
    exec {lock}>"$VM_CACHE/data.lock"
    flock "$lock"
    if [ "$(cat "$VM_DATA/stamp" 2>/dev/null || true)" = "$stamp" ]; then
        exec {lock}>&-
        vm_log "data disk is current ($stamp): $VM_DATA"
        return 0
    fi
    vm_time_start "provision:data-disk"
    vm_log "provisioning the data disk ($stamp) with the $VM_DATA_RELEASE $flavour image"
    local VM_RELEASE=$VM_DATA_RELEASE VM_VARIANT=
    vm_ensure_image "$flavour"
    img=$(vm_image_dir "$flavour")
    dir=$VM_CACHE/data.new
    rm -rf -- "$dir" "$VM_WORK/provision-root"
    mkdir -p "$dir"
    vm_prepare_root "$flavour" "$VM_WORK/provision-root"
    vm_mkfs_dir "$VM_WORK/provision-root" "$VM_WORK/provision-root.img" 2G vmroot
    rm -rf -- "$VM_WORK/provision-root"
    vm_new_key >"$dir/key"
    printf 'vmtest backup %s' "$(openssl rand -hex 8)" >"$dir/backup"
    printf '%s\n' denied invalid rejected >"$dir/extra"
    for name in denied invalid rejected; do vm_new_key >"$dir/key-$name"; done
    echo "provisioned $(date -u +%FT%TZ) $RANDOM" >"$dir/marker"
    vm_blank_disk "$dir/data.img" 400M
    vm_provision "$img/vmlinuz" "$img/initrd-stock.img" "$VM_WORK/provision-root.img" "$dir/data.img" \
        "$dir/key" "$dir/marker" "$dir/backup" "$dir/extra" "$dir"/key-*
    sha256sum <"$dir/data.img" | cut -c1-64 >"$dir/data.sha256"
    rm -f "$VM_WORK/provision-root.img"
    echo "$stamp" >"$dir/stamp"
    rm -rf -- "$VM_DATA"
    mv "$dir" "$VM_DATA"
    exec {lock}>&-
    vm_time_end "provision:data-disk"
}

# vm_new_key: a key the article's way (`openssl rand -base64 24`: 32 characters, no newline).
vm_new_key() { openssl rand -base64 24 | tr -d '\n'; }

# vm_data_untouched IMG: fail unless IMG (a copy of the data disk a boot ran on) is byte for byte
# the disk provisioning made: no LUKS header, LVM metadata or file system block was written.
vm_data_untouched() {
    [ "$(sha256sum <"$1" | cut -c1-64)" = "$(cat "$VM_DATA/data.sha256")" ] ||
        vm_die "$VM_NAME: the boot wrote to the data disk (its sha256 is not provisioning's)"
    vm_log "ok   data disk untouched: every LUKS header, the LVM metadata and the file systems as provisioning left them"
}

vm_start() {
    local name=$1 kernel=$2 initrd=$3 append=$4
    shift 4
    [ -z "${VM_PID:-}" ] || vm_die "a VM is already running (pid $VM_PID); one at a time"
    VM_NAME=$name
    VM_LOG=$VM_WORK/$name.serial.log
    VM_LOG_POS=0
    local fifo=$VM_WORK/$name.serial
    rm -f "$fifo.in" "$fifo.out" "$VM_LOG"
    mkfifo "$fifo.in" "$fifo.out"
    : >"$VM_LOG"

    local accel=tcg
    [ "${VAULT_LUKS_VM_KVM:-0}" = 1 ] && accel=kvm
    local net="user,id=n0,net=169.254.0.0/16,host=169.254.0.2"
    if [ -n "${VM_META_PORT:-}" ]; then
        # cmd: one relay per connection (a tcp: chardev target serves only the first connection).
        [[ $VM_LIB_DIR != *,* ]] || vm_die "the harness path may not contain a comma (qemu option syntax)"
        net+=",guestfwd=tcp:169.254.169.254:80-cmd:$VM_LIB_DIR/guestfwd-relay.sh $VM_META_PORT"
    fi
    # shellcheck disable=SC2054 # the commas are qemu's, inside single arguments
    local args=(-accel "$accel" -machine pc -cpu max -m "$VM_MEM" -smp "${VM_SMP:-1}"
        -nodefaults -display none -no-reboot
        -chardev "pipe,id=ser0,path=$fifo" -serial chardev:ser0
        -kernel "$kernel" -initrd "$initrd" -append "$append"
        -device virtio-rng-pci)
    # VM_NO_NET=1: no network card at all (the "no network" boot).
    # shellcheck disable=SC2054 # the commas are qemu's
    [ "${VM_NO_NET:-0}" = 1 ] || args+=(-netdev "$net" -device virtio-net-pci,netdev=n0,addr=3)
    local d n=0
    for d in "$@"; do
        # VM_SNAPSHOT=N: the first N disks take no writes (qemu keeps them in a temporary overlay).
        local snap=off
        ((n++ < ${VM_SNAPSHOT:-0})) && snap=on
        [[ $d != *,* ]] || vm_die "a disk path may not contain a comma (qemu option syntax): $d"
        args+=(-drive "file=$d,format=raw,if=virtio,cache=unsafe,snapshot=$snap")
    done
    # shellcheck disable=SC2206 # word-splitting of the extra arguments is the point
    [ -n "${VM_QEMU_EXTRA:-}" ] && args+=($VM_QEMU_EXTRA)

    # qemu's pipe chardev reads $fifo.in and writes $fifo.out. We hold $fifo.in open read-write so that
    # vm_send never blocks, and drain $fifo.out into the log.
    exec {VM_IN_FD}<>"$fifo.in"
    cat "$fifo.out" >>"$VM_LOG" &
    VM_CAT_PID=$!
    vm_time_start "boot:$name"
    qemu-system-x86_64 "${args[@]}" >"$VM_WORK/$name.qemu.log" 2>&1 &
    VM_PID=$!
    vm_on_exit "vm_kill"
    vm_log "booting $name (pid $VM_PID, $accel): $append"
}

vm_send() {
    [ -n "${VM_PID:-}" ] || vm_die "vm_send: no VM running"
    printf '%b' "$1" >&"$VM_IN_FD"
}

vm_tail_log() {
    vm_log "last 40 lines of the serial log $VM_LOG:"
    tail -n 40 "$VM_LOG" | sed 's/^/    | /' >&2
    if [ -s "$VM_WORK/$VM_NAME.qemu.log" ]; then
        vm_log "qemu said:"
        sed 's/^/    | /' "$VM_WORK/$VM_NAME.qemu.log" >&2
    fi
    if [ -s "$VM_WORK/standin.log" ]; then
        vm_log "last 20 lines of the Exoscale stand-in's log:"
        tail -n 20 "$VM_WORK/standin.log" | sed 's/^/    | /' >&2
    fi
}

vm_wait_for() {
    local re=$1 timeout=$2 deadline line
    deadline=$((SECONDS + timeout))
    while :; do
        # Only what came after the previous match counts, so the same prompt can be awaited twice.
        line=$(tail -c +"$((VM_LOG_POS + 1))" "$VM_LOG" | grep -a -n -m 1 -E -- "$re" | cut -d: -f1 || true)
        if [ -n "$line" ]; then
            VM_LOG_POS=$((VM_LOG_POS + $(tail -c +"$((VM_LOG_POS + 1))" "$VM_LOG" | head -n "$line" | wc -c)))
            return 0
        fi
        if ! kill -0 "$VM_PID" 2>/dev/null; then
            vm_tail_log
            vm_die "$VM_NAME: guest stopped before /$re/ appeared"
        fi
        if ((SECONDS >= deadline)); then
            vm_tail_log
            vm_die "$VM_NAME: /$re/ did not appear within ${timeout}s"
        fi
        sleep 0.5
    done
}

vm_wait_exit() {
    local timeout=$1 deadline rc=0
    deadline=$((SECONDS + timeout))
    while kill -0 "$VM_PID" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            vm_tail_log
            vm_kill
            vm_die "$VM_NAME: guest did not power off within ${timeout}s"
        fi
        sleep 0.5
    done
    wait "$VM_PID" || rc=$?
    vm_time_end "boot:$VM_NAME"
    vm_stop_log_reader
    VM_PID=
    if [ "$rc" != 0 ]; then
        vm_tail_log
        vm_die "$VM_NAME: qemu exited with $rc"
    fi
}

vm_kill() {
    [ -n "${VM_PID:-}" ] || return 0
    kill "$VM_PID" 2>/dev/null || true
    wait "$VM_PID" 2>/dev/null || true
    vm_stop_log_reader
    VM_PID=
}

# The log reader ends by itself when qemu closes the pipe; not if qemu died before opening it.
vm_stop_log_reader() {
    local i
    for ((i = 0; i < 20; i++)); do
        kill -0 "$VM_CAT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$VM_CAT_PID" 2>/dev/null || true
    wait "$VM_CAT_PID" 2>/dev/null || true
    # (A bare `exec ... 2>/dev/null` would silence this shell's stderr for good.)
    if [ -n "${VM_IN_FD:-}" ]; then
        exec {VM_IN_FD}>&-
        VM_IN_FD=
    fi
}

# vm_result KEY [LOG]: the value of the last "VMTEST RESULT KEY=VALUE" line (CR stripped); empty if none.
# The value ends at a space or a '[': the kernel prints on the same serial console, and a printk
# record ("[   52.1] ...") can land right after the value, before the guest's newline (seen: 'yes[').
# No value the guests report holds a '['.
vm_result() {
    grep -a -o -E "VMTEST RESULT $1=[^[[:space:]]*" "${2:-$VM_LOG}" | tail -n 1 | cut -d= -f2- || true
}

# vm_expect KEY VALUE: fail unless the guest reported KEY=VALUE.
vm_expect() {
    local got
    got=$(vm_result "$1")
    if [ "$got" = "$2" ]; then
        vm_log "ok   $1=$got"
    else
        vm_tail_log
        vm_die "$VM_NAME: expected $1=$2, guest reported '${got:-nothing}'"
    fi
}
