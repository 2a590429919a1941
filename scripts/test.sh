#!/bin/bash
# The whole test suite: lint, unit tests, integration tests against the static binary with a
# real OpenBao and real cryptsetup, then the VM boot tests. Installs what it needs first.
# Every part runs even when one before it failed (unless it needs what that part made); the end
# is a summary: each part, its time and result, and the line "N passed, N failed". Exit status 1
# when anything failed.
# VAULT_LUKS_SKIP_VM=1 skips the VM boots (for a quick local loop; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
results=$(mktemp)
trap 'rm -f "$results"' EXIT
export VM_RESULTS=$results

# record NAME SECONDS pass|FAIL
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
# part NAME CMD...: CMD as one part of the summary; a failure is recorded and the run goes on.
part() {
	local name=$1 t0=$SECONDS
	shift
	echo "== $name"
	if "$@"; then
		record "$name" $((SECONDS - t0)) pass
	else
		record "$name" $((SECONDS - t0)) FAIL
		return 1
	fi
}

# (The parts' functions are called through `part`.)
# shellcheck disable=SC2317
shell_scripts() {
	git ls-files '*.sh' '.ci/run' 'tests/fixtures/*' 'tests/vm/guest/*' 'dracut/*' 'initramfs-tools/*' 'systemd/*' 'debian/*' | while read -r f; do
		head -c 32 "$f" | grep -q '^#!.*\(ba\)\?sh' && echo "$f"
	done
}
# shellcheck disable=SC2317
lint_scripts() {
	local scripts
	mapfile -t scripts < <(shell_scripts)
	shellcheck -x "${scripts[@]}" &&
		shellcheck -s bash completion/vault-luks.bash &&
		python3 -m py_compile tests/standins/exoscale_standin.py tests/fixtures/pty-ask.py
}
# shellcheck disable=SC2317
static_build() { bin=$(scripts/build.sh); }

# host_tests: every test binary, each one a part of the summary (its time is the harness's
# "finished in"); all of them run even when one fails.
host_tests() {
	local log rc=0
	log=$(mktemp)
	VAULT_LUKS_BIN="$bin" cargo test --locked --no-fail-fast 2>&1 | tee "$log" || rc=$?
	awk '
		/^ *Running / { name = ($2 == "unittests") ? "unit tests (" $3 ")" : $2 }
		/^test result:/ {
			secs = $0; sub(/.*finished in /, "", secs); sub(/s$/, "", secs)
			printf "host tests: %s\t%.0f\t%s\n", name, secs, ($3 == "ok.") ? "pass" : "FAIL"
		}' "$log" >>"$results"
	rm -f "$log"
	# A test binary that died without its result line still fails the run.
	if [ "$rc" != 0 ] && ! grep -q '^host tests: .*FAIL$' "$results"; then
		record "host tests" 0 FAIL
	fi
	return "$rc"
}

failed=0
part "setup (packages, toolchain)" scripts/setup.sh || failed=1
part "lint: rustfmt" cargo fmt --check || failed=1
part "lint: clippy" cargo clippy --locked --all-targets -- -D warnings || failed=1
part "lint: shellcheck, python" lint_scripts || failed=1
part "docs: man pages render without warnings" tests/man.sh || failed=1
part "fuzz: corpus replay + 5 s per target" fuzz/run.sh --smoke || failed=1
if part "static build (1.75 MiB budget, static)" static_build; then
	part "host tests: build" cargo test --locked --no-run || failed=1
	part "package: make deb, lintian clean" scripts/deb.sh || failed=1
	echo "== host tests (against the static binary)"
	host_tests || failed=1
	part "completion: bash, against the static binary" tests/completion.sh "$bin" || failed=1
	if [ "${VAULT_LUKS_SKIP_VM:-0}" = 1 ]; then
		echo "== VM boot tests skipped (VAULT_LUKS_SKIP_VM=1)"
	else
		echo "== VM boot tests"
		if ! tests/vm/run-all.sh; then
			failed=1
			grep -q '^vm.*FAIL$' "$results" || record "vm suite" 0 FAIL
		fi
	fi
else
	failed=1
fi

scripts/summary.sh "$results" $((SECONDS - start))
exit "$failed"
