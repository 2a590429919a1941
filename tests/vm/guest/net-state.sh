#!/bin/bash
# The guest's network state in the real root, before anything there configures the network (these
# guests have no network manager): what the initramfs left behind. Prints
#   VMTEST RESULT net_left=none            when no link but lo is up, no IPv4 or global IPv6
#                                          address is on any other link, the main routing table
#                                          is empty and the root has no /etc/resolv.conf;
#   VMTEST RESULT net_left=<what is left>  otherwise (each item, separated by "; ").
set -uo pipefail
left=()
while read -r _ name _; do
    name=${name%%:*} name=${name%%@*}
    [ "$name" = lo ] || left+=("link $name up")
done < <(ip -o link show up)
while read -r _ name _ addr _; do
    [ "$name" = lo ] || left+=("address $addr on $name")
done < <(ip -o -4 addr show; ip -o -6 addr show scope global)
while read -r route; do
    left+=("route $route")
done < <(ip -4 route show table main; ip -6 route show table main | grep -v '^fe80::/64\|^ff00::/8\|^::1 ')
[ -e /etc/resolv.conf ] && left+=("/etc/resolv.conf")
if [ "${#left[@]}" = 0 ]; then
    echo "VMTEST RESULT net_left=none"
else
    (IFS=';'; echo "VMTEST RESULT net_left=${left[*]}")
fi
