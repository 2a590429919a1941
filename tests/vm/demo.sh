#!/usr/bin/env bash
# The demo: one real boot of a Debian guest whose LUKS volume vault-luks unlocks from the
# initramfs, with the guest's console shown as it boots. Everything (OpenBao, the Exoscale
# stand-ins, the guest image) is built and started here; the first run takes a few minutes more
# to build the guest image. FLAVOUR: initramfs-tools (default) or dracut.
set -euo pipefail
cd "$(dirname "$0")"
"../../scripts/setup.sh"
./host-deps.sh
VM_SHOW_CONSOLE=1 VM_BOOTS=1 exec ./boot.sh "${1:-initramfs-tools}"
