#!/usr/bin/env bash
# The VM boot suite, one guest at a time (2 cores): the real boot test for each flavour.
set -euo pipefail
cd "$(dirname "$0")"
./host-deps.sh
start=$SECONDS
for flavour in initramfs-tools dracut; do
    ./boot.sh "$flavour"
done
echo "VM boot suite: 2 passed, 0 failed ($((SECONDS - start)) s)"
