#!/bin/bash
# Benchmark, host only: a herd. N machines (default 500; processes of the static binary, each
# with the test cryptsetup wrapper and its own $VAULT_LUKS_TEST_STATE) unlock at once through
# the Exoscale stand-ins against one real OpenBao whose rate-limit quota lets RATE requests a
# second through (default 20, all paths) and answers 429 to the rest. The herd is
# tests/herd.rs's `herd_bench` (the 50-machine test runs the same code); it prints:
#   unlocked       how many got their key within the deadline (exit 1 unless all did)
#   time to key    p50/p99/max from process start to the mapping request (the wrapper's log)
#   requests       per machine from OpenBao's audit log: login, decrypt, revoke; the
#                  amplification over the ideal 3; how many were answered 429
#   per second     the requests OpenBao saw and its 429s, second by second
# Environment: HERD_DEADLINE (every machine's unlock timeout, 300 s), HERD_RETRY_AFTER=1
# (OpenBao sends Retry-After and X-Ratelimit-* on its answers). Everything listens on
# loopback; the whole run is one process group, killed at HERD_DEADLINE + 120 s or when this
# script exits.
# Usage: benches/herd.sh [N] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
export HERD_MACHINES=${1:-500} HERD_RATE=${2:-20}
export HERD_DEADLINE=${HERD_DEADLINE:-300} HERD_RETRY_AFTER=${HERD_RETRY_AFTER:-0}
if ! [ "$HERD_MACHINES" -ge 1 ] 2>/dev/null || [ "$HERD_MACHINES" -gt 2000 ]; then
	echo "herd: N is 1 to 2000 (a process each), not $HERD_MACHINES" >&2
	exit 2
fi
scripts/setup.sh >&2
VAULT_LUKS_BIN=$PWD/$(scripts/build.sh 2>/dev/null)
export VAULT_LUKS_BIN
cargo test --test herd --no-run >&2

# timeout puts itself and everything under it in a process group of its own and kills that
# group at the limit; the trap kills it on any other way out.
nice -n 10 timeout -k 10 "$((HERD_DEADLINE + 120))" \
	cargo test --test herd -- --ignored --exact herd_bench --nocapture &
group=$!
trap 'kill -TERM -- "-$group" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
wait "$group"
