#!/usr/bin/env bash
# The VM boot suite, one guest at a time (2 cores), for each flavour: the real boot test (two
# systemd boots with the lifecycle between them) and the fallback matrix (a boot per failure).
set -euo pipefail
cd "$(dirname "$0")"
./host-deps.sh
start=$SECONDS
# The two boot tests first (about 10 minutes each): a broken integration shows before the
# longer failure matrices run.
for flavour in dracut initramfs-tools; do
    ./boot.sh "$flavour"
done
for flavour in initramfs-tools dracut; do
    ./fallback.sh "$flavour"
done
echo "VM boot suite: 4 passed, 0 failed ($((SECONDS - start)) s)"
