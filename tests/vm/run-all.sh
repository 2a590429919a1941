#!/usr/bin/env bash
# The VM boot suite, one guest at a time (2 cores), for each flavour: the real boot test (two
# systemd boots with the lifecycle between them) and the fallback matrix (a boot per failure).
set -euo pipefail
cd "$(dirname "$0")"
./host-deps.sh
start=$SECONDS
for flavour in initramfs-tools dracut; do
    ./boot.sh "$flavour"
    ./fallback.sh "$flavour"
done
echo "VM boot suite: 4 passed, 0 failed ($((SECONDS - start)) s)"
