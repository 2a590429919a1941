#!/bin/bash
# The lifecycle on a live guest, the way an operator runs it (boot 1 of boot.sh, after check-boot.sh;
# runs from the IO disk with /luks mounted by the boot and the host's OpenBao reachable):
#   close refused while /luks is busy; --force unmounts lazily and the mapping goes with its last
#   user; unlock + mount again (the after-boot path);
#   an empty LV enrolled with --format, a file system on it, an fstab line;
#   rewrap after the host rotated the transit key (handshake on the console);
#   rotate both volumes; the repo's install.sh (close unit for the new volume; its initramfs
#   rebuild is replayed on the host, see below).
# The next boot must unlock both with what this left behind.
#   IO disk inputs: data2-marker, install/ (the release binary and the repo's install files).
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }
vl=/usr/local/sbin/vault-luks
io=$PWD

# vault-luks's own lines go to the console too: they are what an operator would read.
run() {
    local out=$1
    shift
    "$vl" "$@" >"$io/$out" 2>&1
    local rc=$?
    sed "s/^/[$out] /" "$io/$out"
    return "$rc"
}
mapped() { [ -e "/dev/mapper/$1" ]; }

# The real root has no network of its own in these guests: the user-mode network's address, on-link
# with both the metadata address and the host.
ip link set ens3 up
ip addr replace 169.254.0.15/16 dev ens3

# --- close: refused while busy, forced lazily, then unlock + mount again -------------------------------
(cd /luks && exec sleep 600) &
holder=$!
sleep 1
if run close-busy close luks; then
    say close_busy=closed
else
    rc=$?
    if grep -q '/luks is busy' "$io/close-busy" && findmnt -n /luks >/dev/null && mapped luks; then
        say "close_busy=refused-rc$rc"
    else
        say "close_busy=unexpected-rc$rc"
    fi
fi
if run close-force close --force luks && ! findmnt -n /luks >/dev/null && mapped luks; then
    kill "$holder"
    wait "$holder" 2>/dev/null
    # The deferred close happens when the last opener (the lazily unmounted file system) lets go.
    for _ in $(seq 50); do mapped luks || break; sleep 0.2; done
    if mapped luks; then say close_force=still-mapped; else say close_force=ok; fi
else
    kill "$holder"
    say close_force=failed
fi
if run unlock-after-boot unlock luks && mount /luks && cmp -s /luks/vmtest-marker marker; then
    say after_boot_unlock=ok
else
    say after_boot_unlock=failed
fi

# --- enroll an empty LV, make it a file system that the boot mounts ------------------------------------
lvcreate -q -y -n lv.data2 -L 64M vg.flex
udevadm settle
if run enroll enroll data2 --device /dev/vg.flex/lv.data2 --format &&
    run unlock-data2 unlock data2 &&
    mkfs.ext4 -q -L data2 /dev/mapper/data2 &&
    mkdir -p /data2 && mount /dev/mapper/data2 /data2 && cp data2-marker /data2/vmtest-marker &&
    umount /data2 && run close-data2 close data2; then
    echo "/dev/mapper/data2 /data2 ext4 defaults 0 2" >>/etc/fstab
    say "enroll=ok($(stat -c %a /etc/vault-luks/data2.passphrase))"
else
    say enroll=failed
fi

# --- rewrap after the transit key's rotation (the host rotates it when asked) --------------------------
echo "VMTEST WAIT rotate-transit-key"
if read -r -t 120 reply && [ "$reply" = rotated ]; then
    run rewrap rewrap
    n=$(grep -c 'rewrapped key version v1 -> v2' "$io/rewrap")
    say "rewrapped=$n"
else
    say rewrapped=no-handshake
fi

# --- rotate both: new keys, new keyslots, the old ones gone --------------------------------------------
for v in luks data2; do
    if run "rotate-$v" rotate "$v" && grep -q "$v: the initramfs holds the old" "$io/rotate-$v"; then
        say "rotate_$v=ok"
    else
        say "rotate_$v=failed"
    fi
done
run status status --json
say "status_volumes=$(sed -n 's/^ *"name": *"\([a-z0-9]*\)".*/\1/p' "$io/status" | tr '\n' ,)"

# --- install again: the close unit for data2 and the initramfs with both volumes ------------------------
# Under TCG the guest takes ~10 minutes to build an initramfs (the host's chroot: seconds), so
# install.sh's rebuild command is recorded by stand-ins first on PATH and boot.sh replays it in a
# chroot of this root after the shutdown.
for tool in update-initramfs dracut; do
    cat >"/usr/local/sbin/$tool" <<STUB
#!/bin/sh
echo "$tool \$*" >>$io/rebuild
STUB
    chmod 755 "/usr/local/sbin/$tool"
done
# The stand-ins rebuild nothing, so /boot still holds the setup's image: install.sh's check of it
# must refuse it as stale (the configuration and luks's ciphertext changed, data2's is not in it),
# and everything else it does is done. The replayed rebuild's image passes the same check.
if PATH=/usr/local/sbin:$PATH install/scripts/install.sh "$io/install/vault-luks" >install.out 2>&1; then
    say install=ok-with-a-stale-image
elif grep -q 'MISSING  configuration: etc/vault-luks/config.json differs from /etc/vault-luks/config.json' install.out &&
    grep -q 'MISSING  /etc/luks.passphrase: the image.s copy differs' install.out &&
    grep -q 'MISSING  /etc/vault-luks/data2.passphrase: named in the configuration, not in the image' install.out &&
    grep -q 'E: vault-luks: 1 of 1 initramfs images cannot unlock at boot' install.out; then
    say install=refused-stale-image
else
    tail -n 30 install.out
    say install=failed
fi
rm -f /usr/local/sbin/update-initramfs /usr/local/sbin/dracut
echo "install.sh asked for: $(cat rebuild 2>/dev/null)"
