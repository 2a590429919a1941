#!/bin/bash
# Builds the fuzz targets (fuzz/src/bin/*.rs: libFuzzer on the stable toolchain) and runs each,
# one at a time, niced: first a replay of its committed corpus (fuzz/corpus/TARGET) and of every
# input that once crashed it (fuzz/regressions/TARGET), then coverage-guided fuzzing from there.
#
#   fuzz/run.sh [--execs N]   until N executions per target (default 10000000): the benchmark
#   fuzz/run.sh SECONDS       for SECONDS per target
#   fuzz/run.sh --smoke       `make test`'s part: replay, then FUZZ_SMOKE_SECONDS (default 5) each
#
# Prints per target: executions, executions/s, coverage (cov: edges reached, ft: libFuzzer's
# features, corpus: inputs that each add coverage) and crashes. A crash stops that target; its
# input is kept under $TARGET_DIR/fuzz-artifacts/ (shown with the panic message) and the exit
# status is 1. What the fuzzing finds stays in a scratch corpus: the committed one stays small.
set -euo pipefail
cd "$(dirname "$0")"
fuzz=$PWD
limit=(-runs=10000000)
smoke=0
case "${1:-}" in
"") ;;
--execs) limit=(-runs="${2:?--execs needs a number}") ;;
--smoke)
	smoke=1
	limit=(-max_total_time="${FUZZ_SMOKE_SECONDS:-5}")
	;;
*[!0-9]* | 0)
	echo "usage: fuzz/run.sh [SECONDS | --execs N | --smoke]" >&2
	exit 2
	;;
*) limit=(-max_total_time="$1") ;;
esac

# The library is ../src/main.rs: its dependencies must be the program's (same versions and
# features), or the fuzzed code is not the shipped code.
missing=$(sed -n '/^\[dependencies\]/,/^\[/{/^[a-z]/p}' ../Cargo.toml | grep -vxFf Cargo.toml || true)
if [ -n "$missing" ]; then
	printf 'fuzz: fuzz/Cargo.toml lacks these lines of ../Cargo.toml [dependencies]:\n%s\n' "$missing" >&2
	exit 1
fi

t0=$SECONDS
nice -n 10 cargo build --release --locked >&2
echo "fuzz: targets built in $((SECONDS - t0)) s" >&2
bins=${CARGO_TARGET_DIR:-$fuzz/target}/x86_64-unknown-linux-gnu/release
artifacts=${CARGO_TARGET_DIR:-$fuzz/target}/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d /tmp/vault-luks-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

# libFuzzer options for every run: a 5 s hang is a finding.
common=(-timeout=5 -print_final_stats=1)
failed=0
printf '%-14s %12s %10s %6s %7s %7s %8s\n' target execs execs/s cov ft corpus crashes
for src in src/bin/*.rs; do
	t=$(basename "$src" .rs)
	seeds=()
	for d in "corpus/$t" "regressions/$t"; do [ -d "$d" ] && seeds+=("$d"); done
	log=$work/$t.log
	mkdir -p "$work/$t"
	# Replay: every committed input once (-runs=0 runs the seed corpora, nothing else).
	if ! nice -n 10 "$bins/$t" "${common[@]}" -runs=0 -artifact_prefix="$artifacts/$t-" \
		"$work/$t" "${seeds[@]}" >"$log" 2>&1; then
		echo "fuzz: $t: a committed input crashes it:" >&2
		tail -n 30 "$log" >&2
		failed=1
		continue
	fi
	# Fuzz, from the replayed inputs; new ones go to the scratch corpus (the first directory).
	# The code's stderr is closed (the login target logs every token it accepts); libFuzzer
	# keeps its own.
	rc=0
	nice -n 10 "$bins/$t" "${common[@]}" -close_fd_mask=2 "${limit[@]}" -artifact_prefix="$artifacts/$t-" \
		"$work/$t" "${seeds[@]}" >"$log" 2>&1 || rc=$?
	stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
	status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	field() { sed -n "s/.* $1: \([^ ]*\).*/\1/p" <<<"$status"; }
	crash=$(sed -n "s/.*Test unit written to //p" "$log" | tail -n 1)
	printf '%-14s %12s %10s %6s %7s %7s %8s\n' "$t" "$(stat number_of_executed_units)" \
		"$(stat average_exec_per_sec)" "$(field cov)" "$(field ft)" "$(field corp | cut -d/ -f1)" \
		"$([ -n "$crash" ] && echo 1 || echo 0)"
	if [ "$rc" != 0 ]; then
		failed=1
		echo "fuzz: $t failed (exit $rc)${crash:+; input kept in $crash}" >&2
		# The panic message went to the closed stderr: run the input once more to show it.
		[ -n "$crash" ] && "$bins/$t" "$crash" 2>&1 | grep -m 3 -A 2 'panicked' >&2
	fi
done
echo "fuzz: done in $((SECONDS - t0)) s$([ "$smoke" = 1 ] && echo " (smoke run)")" >&2
exit "$failed"
