#!/bin/bash
# The whole test suite: lint, unit tests, integration tests against the static binary with a
# real OpenBao and real cryptsetup, then the VM boot tests. Installs what it needs first.
# VAULT_LUKS_SKIP_VM=1 skips the VM boots (for a quick local loop; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== lint"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
mapfile -t scripts < <(git ls-files '*.sh' '.ci/run' 'tests/fixtures/*' 'tests/vm/guest/*' 'dracut/*' 'initramfs-tools/*' | while read -r f; do
	head -c 32 "$f" | grep -q '^#!.*\(ba\)\?sh' && echo "$f"
done)
shellcheck -x "${scripts[@]}"
python3 -m py_compile tests/standins/exoscale_standin.py tests/fixtures/pty-ask.py

echo "== static build"
bin=$(scripts/build.sh)

echo "== unit and integration tests (against the static binary)"
VAULT_LUKS_BIN="$PWD/$bin" cargo test --locked

if [ "${VAULT_LUKS_SKIP_VM:-0}" = 1 ]; then
	echo "== VM boot tests skipped (VAULT_LUKS_SKIP_VM=1)"
elif [ -x tests/vm/run-all.sh ]; then
	echo "== VM boot tests"
	tests/vm/run-all.sh
fi
