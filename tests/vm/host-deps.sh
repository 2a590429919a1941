#!/usr/bin/env bash
# host-deps.sh — install what the VM harness needs on a Debian host (as root), if anything is missing:
# qemu-system-x86_64, debootstrap, mke2fs/debugfs (e2fsprogs), python3 (http stand-in, free ports),
# openssl (the article's passphrase), flock (util-linux).
set -euo pipefail
declare -A pkg_of=([qemu-system-x86_64]=qemu-system-x86 [debootstrap]=debootstrap [mke2fs]=e2fsprogs
    [debugfs]=e2fsprogs [python3]=python3 [openssl]=openssl [flock]=util-linux)
missing=()
for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 ||
        missing+=("${pkg_of[$cmd]}")
done
if [ ${#missing[@]} = 0 ]; then
    echo "host-deps: all present"
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "host-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
