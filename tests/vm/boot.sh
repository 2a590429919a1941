#!/usr/bin/env bash
# shellcheck disable=SC2154 # flavour, img, bin, repo, backup, ... come from suite.sh's setup
# boot.sh FLAVOUR — the real thing, for one flavour (initramfs-tools or dracut): suite.sh's setup
# (OpenBao behind the Exoscale stand-ins, the cached data disk, the guest root with vault-luks
# installed by scripts/install.sh and its initramfs checked), then this part:
#   two full systemd boots: each time vault-luks unlocks in the initramfs (metadata at
#     169.254.169.254, login and decrypt at the host's OpenBao), /luks is mounted from
#     /dev/mapper/luks before local-fs.target, the data of the boot before is there, and at
#     shutdown the mount goes, then vault-luks-close@luks closes the mapping;
#   between them, on the running guest (guest/lifecycle.sh): close refused while busy and
#     forced, unlock after boot, an empty LV enrolled, rewrap after the host rotates the transit
#     key, rotate of both volumes, install.sh again (its initramfs rebuild replayed on the host
#     in a chroot of the guest's root); the second boot runs that initramfs and must unlock both
#     volumes with the rotated keys.
# The network: boot 1 has no framework networking at all (no ip=, no rd.neednet, no network
# module or configure_networking): vault-luks raises the NIC, runs DHCP and takes it all down
# again, and the real root finds the network as the kernel made it (net-state.sh). Boot 2's
# initramfs is rebuilt with the integration's opt-in for the framework's networking: vault-luks
# finds the routes and leaves the network alone.
# VM_BOOTS=1 boots once instead of twice; VM_SHOW_CONSOLE=1 shows the guest's console as it
# goes (the demo does both).
#
# Run directly, it is `suite.sh FLAVOUR boot`; suite.sh sources it for boot_part.

# boot_part: the two boots, on copies of the setup's root and data disks (the fallback part boots
# the pristine ones).
boot_part() {
    vm_part boot1
    local disks=$VM_WORK/boot
    mkdir -p "$disks"
    cp --sparse=always "$VM_WORK/root.img" "$disks/root.img"
    cp --sparse=always "$VM_DATA/data.img" "$disks/data.img"
    cp "$VM_WORK/initrd.img" "$disks/initrd.img"

    # The lifecycle's inputs: the binary and the repo's install files, as an operator has them.
    local kit=$VM_WORK/install
    mkdir -p "$kit/scripts"
    cp "$bin" "$kit/vault-luks"
    cp "$repo/scripts/install.sh" "$repo/scripts/check-image-hook.sh" "$kit/scripts/"
    cp -r "$repo/dracut" "$repo/initramfs-tools" "$repo/systemd" "$kit/"

    local boots=${VM_BOOTS:-2} n inputs lifecycle logins got console_pid=
    for ((n = 1; n <= boots; n++)); do
        [ "$n" = 1 ] || vm_part "boot$n"
        inputs=("$VM_WORK/marker")
        lifecycle=0
        if [ "$n" = 1 ] && [ "$boots" -ge 2 ]; then
            lifecycle=1
            inputs+=("$VM_LIB_DIR/guest/lifecycle.sh" "$VM_WORK/data2-marker" "$kit")
        elif [ "$n" -ge 2 ]; then
            inputs+=("$VM_WORK/data2-marker")
        fi
        vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-boot.sh" "${inputs[@]}"
        logins=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log" || true)
        vm_start "boot$n" "$img/vmlinuz" "$disks/initrd.img" "$VM_APPEND_BASE vmtest.io" \
            "$disks/root.img" "$disks/data.img" "$VM_WORK/io.img"
        if [ "${VM_SHOW_CONSOLE:-0}" = 1 ]; then
            tail -n +1 -f "$VM_LOG" &
            console_pid=$!
            vm_on_exit "kill $console_pid 2>/dev/null"
        fi
        vm_wait_for 'vault-luks\[[0-9]+\]: luks: unlocked as /dev/mapper/luks' 300
        vm_wait_for 'VMTEST BEGIN' 300
        # The initramfs logged in once for all its volumes.
        got=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log")
        [ "$got" = $((logins + 1)) ] || vm_die "boot$n: the initramfs logged in $((got - logins)) times, not once"
        if [ "$lifecycle" = 1 ]; then
            vm_wait_for 'VMTEST WAIT rotate-transit-key' 600
            BAO_ADDR=$root_addr BAO_TOKEN=$root_token bao write -f transit/keys/luks/rotate >/dev/null
            vm_send 'rotated\n'
            vm_log "ok   boot$n: transit key luks rotated on the host"
        fi
        vm_wait_for 'VMTEST DONE' 900
        # At shutdown: /luks is unmounted first, then the close unit closes the mapping.
        vm_wait_for 'vault-luks\[[0-9]+\]: luks: closed[[:space:]]*$' 120
        vm_wait_exit 120
        vm_expect luks_source /dev/mapper/luks
        vm_expect before_local_fs yes
        vm_expect marker ok
        vm_expect previous_boots $((n - 1))
        vm_expect kmsg_unlocked yes
        vm_expect close_unit active
        vm_expect config_mode 600
        if [ "$n" -ge 2 ] && [ "$boots" -ge 2 ]; then
            # The initramfs the guest built after enroll, rewrap and rotate: both volumes, new keys.
            vm_expect data2_luks_source /dev/mapper/data2
            vm_expect data2_before_local_fs yes
            vm_expect data2_marker ok
            vm_expect data2_kmsg_unlocked yes
            vm_expect data2_close_unit active
            grep -a -q 'data2: closed' "$VM_LOG" || vm_die "boot$n: data2 was not closed at shutdown"
            vm_log "ok   boot$n: both volumes unlocked with the rotated keys, mounted, closed"
        fi
        if [ "$n" = 1 ]; then
            boot_own_network "$n"
        else
            grep -a -q 'network: already configured' "$VM_LOG" ||
                vm_die "boot$n: vault-luks did not find the framework's network"
            vm_log "ok   boot$n: the framework's network was used, vault-luks left it alone"
        fi
        grep -a -q "vault login: ok" "$VM_LOG" || vm_die "boot$n: no login line on the console"
        boot_console_once "$n"
        if grep -a -F -q -f "$VM_WORK/key" "$VM_LOG"; then vm_die "boot$n: the key appeared on the console"; fi
        [ -z "$console_pid" ] || kill "$console_pid" 2>/dev/null || true
        vm_log "ok   boot$n: vault-luks lines in the kernel log: $(vm_result kmsg_lines)"
        if [ "$lifecycle" = 1 ]; then
            boot_lifecycle_results "$n" "$disks"
        fi
    done
    vm_log "ok   one login per initramfs, tokens revoked: $(grep -c 'revoke-self 204' "$VM_WORK/standin.log")"
    if [ "${VM_LATE:-1}" = 1 ] && [ "$flavour" = initramfs-tools ] && [ "$boots" -ge 2 ]; then
        boot_late "$disks"
    fi
}

# boot_console_once N: each vault-luks event of the initramfs is on the console once: the
# kernel prints the kmsg record (`vault-luks[PID]: ...`), and the same line is not written to
# stderr (`vault-luks: ...`), which is that console too.
boot_console_once() {
    local early times stderr_lines
    early=$(awk '/VMTEST BEGIN/ { exit } { print }' "$VM_LOG")
    times=$(grep -a -c -E 'vault-luks\[[0-9]+\]: luks: unlocked as /dev/mapper/luks' <<<"$early" || true)
    stderr_lines=$(grep -a -c -E '^vault-luks: ' <<<"$early" || true)
    [ "$times" = 1 ] || vm_die "boot$1: 'luks: unlocked' is on the console $times times, not once"
    [ "$stderr_lines" = 0 ] || vm_die "boot$1: $stderr_lines vault-luks lines printed twice on the console (kernel log and stderr)"
    vm_log "ok   boot$1: each vault-luks event once on the console"
}

# boot_late DISKS: the real root's second chance. The root after boot 2 (luks and data2
# configured) loses the initramfs-tools hook: update-initramfs must fail loudly (post-update.d's
# check), and the image it wrote anyway boots: nothing unlocks in the initramfs, and
# vault-luks-late.service says why, logs in once and opens both volumes before local-fs.target,
# where the plain fstab lines mount them.
boot_late() {
    local disks=$1 guest kver logins got
    vm_part late
    guest=$VM_WORK/guest-root
    mkdir -p "$guest"
    mount -o loop "$disks/root.img" "$guest"
    vm_on_exit "mountpoint -q '$guest' && umount -l '$guest'"
    kver=$(vm_guest_kver "$guest")
    mv "$guest/etc/initramfs-tools/hooks/vault-luks" "$guest/root/vault-luks.hook"
    vm_chroot_mount "$guest"
    if vm_chroot "$guest" update-initramfs -u -k "$kver" >"$VM_WORK/late-rebuild.log" 2>&1; then
        vm_die "late: update-initramfs succeeded, writing an image without vault-luks"
    fi
    if ! grep -q 'MISSING  vault-luks: the hook /etc/initramfs-tools/hooks/vault-luks did not add it' "$VM_WORK/late-rebuild.log" ||
        ! grep -q 'E: vault-luks: .* cannot unlock at boot' "$VM_WORK/late-rebuild.log"; then
        tail -n 30 "$VM_WORK/late-rebuild.log" >&2
        vm_die "late: the failed rebuild did not say what is missing"
    fi
    vm_log "ok   late: update-initramfs without the hook failed: $(grep -c MISSING "$VM_WORK/late-rebuild.log") pieces MISSING, 'cannot unlock at boot'"
    vm_chroot_umount "$guest"
    cp "$guest/boot/initrd.img-$kver" "$disks/initrd.img"
    umount "$guest"

    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-boot.sh" "$VM_WORK/marker" "$VM_WORK/data2-marker"
    logins=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log" || true)
    vm_start late "$img/vmlinuz" "$disks/initrd.img" "$VM_APPEND_BASE vmtest.io" \
        "$disks/root.img" "$disks/data.img" "$VM_WORK/io.img"
    vm_wait_for 'vault-luks\[[0-9]+\]: warning: luks, data2: not open, and vault-luks did not run in the initramfs' 300
    vm_wait_for 'VMTEST DONE' 600
    # The two open together (up to four opens at a time): their lines come in either order.
    for v in luks data2; do
        grep -a -q -E "vault-luks\[[0-9]+\]: $v: unlocked as /dev/mapper/$v" "$VM_LOG" ||
            vm_die "late: no '$v: unlocked as /dev/mapper/$v' line on the console"
    done
    vm_wait_for 'vault-luks\[[0-9]+\]: luks: closed[[:space:]]*$' 120
    vm_wait_exit 120
    got=$(grep -c 'POST /v1/auth/exoscale/login 200' "$VM_WORK/standin.log")
    [ "$got" = $((logins + 1)) ] || vm_die "late: the real root logged in $((got - logins)) times, not once"
    if grep -a -q 'unlocking volumes with Vault' "$VM_LOG"; then vm_die "late: vault-luks ran in the initramfs"; fi
    vm_expect luks_source /dev/mapper/luks
    vm_expect before_local_fs yes
    vm_expect marker ok
    vm_expect previous_boots 2
    vm_expect data2_luks_source /dev/mapper/data2
    vm_expect data2_before_local_fs yes
    vm_expect data2_marker ok
    vm_expect kmsg_unlocked yes
    vm_expect net_left none
    vm_log "ok   late: no vault-luks in the initramfs; vault-luks-late.service said so, logged in once, opened luks and data2 before local-fs.target, fstab mounted them, the network it raised is gone"
}

# boot_lifecycle_results N DISKS: what lifecycle.sh reported, then install.sh's initramfs rebuild
# replayed in a chroot of the guest's root (under TCG the guest needs ~10 minutes for it).
boot_lifecycle_results() {
    local n=$1 disks=$2 rebuild guest
    vm_expect close_busy refused-rc1
    vm_expect close_force ok
    vm_expect after_boot_unlock ok
    vm_expect enroll 'ok(600)'
    vm_expect rewrapped 2
    vm_expect rotate_luks ok
    vm_expect rotate_data2 ok
    vm_expect status_volumes luks,data2,
    vm_expect install refused-stale-image
    rebuild=$(vm_disk_cat "$VM_WORK/io.img" /rebuild)
    case $flavour:$rebuild in
        "initramfs-tools:update-initramfs -u -k all" | "dracut:dracut --force --regenerate-all") ;;
        *) vm_die "boot$n: install.sh asked for '$rebuild' to rebuild the initramfs" ;;
    esac
    vm_part rebuild
    guest=$VM_WORK/guest-root
    mkdir -p "$guest"
    mount -o loop "$disks/root.img" "$guest"
    vm_on_exit "mountpoint -q '$guest' && umount -l '$guest'"
    vm_chroot_mount "$guest"
    # An operator who prefers the framework's networking says so before the rebuild.
    vm_network_mode "$guest" framework
    # shellcheck disable=SC2086 # the recorded command line, split into its words
    vm_chroot "$guest" $rebuild >"$VM_WORK/rebuild.log" 2>&1 ||
        { tail -n 30 "$VM_WORK/rebuild.log" >&2; vm_die "boot$n: '$rebuild' failed in the guest's root"; }
    # What install.sh runs after its rebuild (initramfs-tools' post-update.d hook ran it too).
    vm_chroot "$guest" /usr/local/sbin/vault-luks --no-cmdline check --image "/boot/initrd.img-$(vm_guest_kver "$guest")" \
        >"$VM_WORK/rebuild-check.log" 2>&1 ||
        { cat "$VM_WORK/rebuild-check.log" >&2; vm_die "boot$n: the rebuilt initramfs fails vault-luks check --image"; }
    vm_chroot_umount "$guest"
    cp "$guest/boot/initrd.img-$(vm_guest_kver "$guest")" "$disks/initrd.img"
    umount "$guest"
    vm_log "ok   boot$n: close busy/forced, unlock after boot, enroll, rewrap, rotate, install"
}

# boot_own_network N: vault-luks's own network in the initramfs, and nothing left of it in the
# real root. (The NIC is eth0 in dracut's initramfs, which has no udev naming rules without the
# network module, and ens3 in initramfs-tools'; the real root names it ens3, which it can only do
# to a link that is down.)
boot_own_network() {
    local n=$1 line
    for line in 'network: no route to' 'network: [a-z0-9]+: carrier after' 'network: [a-z0-9]+: DHCP lease' \
        'network: what vault-luks configured is removed'; do
        grep -a -q -E "vault-luks\[[0-9]+\]: $line" "$VM_LOG" || vm_die "boot$n: no '$line' line on the console"
    done
    if grep -a -q -E 'IP-Config:|systemd-networkd' "$VM_LOG"; then
        vm_die "boot$n: the framework's networking ran: $(grep -a -m1 -E 'IP-Config:|systemd-networkd' "$VM_LOG")"
    fi
    vm_expect net_left none
    vm_log "ok   boot$n: vault-luks brought the network up and took it down: $(grep -a -o -E 'network: [a-z0-9]+: DHCP lease.*' "$VM_LOG" | head -n 1)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec "$(dirname "$0")/suite.sh" "${1:-}" boot
fi
