#!/bin/bash
# One boot of the boot benchmark (benches/boot.sh; runs from the IO disk as ./run, in
# multi-user.target): when each phase of this boot ended, in seconds since the kernel started
# (the kernel log's clock), as "VMTEST RESULT t_PHASE=SECONDS" lines; a phase that did not
# happen in this boot (no vault-luks in a guest without encryption) is not reported.
#   t_init      the kernel ran the initramfs's /init
#   t_start     vault-luks's first line
#   t_network   its network ready (its own DHCP lease, or the framework's found configured)
#   t_key       the key in hand (its first `cryptsetup open` line)
#   t_unlocked  `luks: unlocked as /dev/mapper/luks`
#   t_switch    the real root's systemd started (switch_root)
#   t_mounted   /luks mounted (its mount unit active)
# The last two come from systemd (CLOCK_MONOTONIC); they are moved onto the kernel log's clock by
# the offset between the two, measured here with a line written to /dev/kmsg between two reads of
# /proc/uptime (10 ms resolution).
set -uo pipefail
say() { echo "VMTEST RESULT $1"; }

u1=$(cut -d ' ' -f 1 /proc/uptime)
echo "vmtest-bench: clock sync" >/dev/kmsg
u2=$(cut -d ' ' -f 1 /proc/uptime)
log=$(dmesg)
# stamp REGEX: the kernel-log time of the first line matching REGEX (empty if none).
# (sed's delimiter is '#': the patterns hold '/' and '|'.)
stamp() { sed -n -E "s#^\[ *([0-9]+\.[0-9]+)\] .*$1.*#\1#p" <<<"$log" | head -n 1; }
sync_at=$(stamp 'vmtest-bench: clock sync')
offset=$(awk -v k="$sync_at" -v a="$u1" -v b="$u2" 'BEGIN { printf "%.3f", k - (a + b) / 2 }')
# mono_to_log MICROSECONDS: a systemd monotonic timestamp on the kernel log's clock.
mono_to_log() { awk -v us="$1" -v o="$offset" 'BEGIN { printf "%.3f", us / 1e6 + o }'; }

report() { [ -z "$2" ] || say "t_$1=$2"; }
report init "$(stamp 'Run /init as init process')"
report start "$(stamp 'vault-luks\[[0-9]+\]: ')"
report network "$(stamp 'vault-luks\[[0-9]+\]: network: ([a-z0-9]+: DHCP lease|already configured)')"
report key "$(stamp 'vault-luks\[[0-9]+\]: luks: cryptsetup open ')"
report unlocked "$(stamp 'vault-luks\[[0-9]+\]: luks: unlocked as /dev/mapper/luks')"
report switch "$(mono_to_log "$(systemctl show -p UserspaceTimestampMonotonic --value)")"
report mounted "$(mono_to_log "$(systemctl show -p ActiveEnterTimestampMonotonic --value luks.mount)")"
say "clock_offset=$offset"
say "luks_source=$(findmnt -n -o SOURCE /luks)"
if cmp -s /luks/vmtest-marker marker; then say marker=ok; else say marker=bad; fi
