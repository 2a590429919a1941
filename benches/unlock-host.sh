#!/bin/bash
# Benchmark, host only: what vault-luks itself costs in an unlock, against a real local OpenBao
# behind the Exoscale stand-ins (metadata, login, one transit batch, revoke), the way the host
# tests run it: the `cryptsetup` it calls is the test wrapper, which checks each key against the
# real header (`open --test-passphrase`, PBKDF2 keyslots) and records when each of its calls
# started and ended, when each mapping was requested, and vault-luks's peak RSS (VmHWM) then.
#
# One volume and 16 volumes (one transit key: one batch), interleaved (1, 16, 1, 16, ...: this
# machine drifts; only same-run ratios count), ROUNDS rounds (default 11). Per run:
#   to mapping  process start -> the last mapping requested, minus the time during which a
#               cryptsetup call was running before it (the union of the wrapper's call
#               intervals, cut at that moment: cryptsetup's cost, which the target excludes).
#               vault-luks opens up to four volumes at once, so calls overlap: summing their
#               lengths would count overlapping time twice and subtract more than passed.
#               What stays in is the time when no cryptsetup ran: vault-luks's own work, and
#               each call's start-up (fork, exec, the wrapper's bash: ~2 ms) unless another
#               call was running meanwhile. vault-luks asks cryptsetup only to open: whether a
#               volume is open comes from sysfs (the wrapper's emulated one here), the LUKS2
#               header is read from the image.
#   wall        process start -> the last mapping requested, nothing subtracted (shown, not a
#               target: the wrapper's own cost, bash and a real --test-passphrase, is in it)
#   peak RSS    vault-luks's VmHWM when it requested the last mapping
# Prints the medians, the ratio 16/1, and each against its target (issue 17): to mapping
# <= 50 ms, peak RSS <= 8 MiB, 16 volumes <= 1.5x one. Exit 1 when a target is missed.
# Usage: benches/unlock-host.sh [ROUNDS]; VAULT_LUKS_BIN=PATH measures that binary (an older
# build, for a before/after) instead of building this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-11}
scripts/setup.sh >&2
bin=${VAULT_LUKS_BIN:-$(scripts/build.sh 2>/dev/null)}

# shellcheck source=tests/fixtures/host-vault.sh
. tests/fixtures/host-vault.sh
host_vault_start vault-luks-bench

echo "bench: 16 LUKS2 volumes made the article's way (PBKDF2 keyslots: the open is not measured)" >&2
volumes=()
for i in $(seq 16); do
	tests/fixtures/article-volume.sh "$work/v$i.img" "$work/v$i.passphrase" luks \
		--pbkdf pbkdf2 --pbkdf-force-iterations 1000 >/dev/null
	volumes+=("$(jq -nc --arg n "v$i" --arg d "$work/v$i.img" --arg c "$work/v$i.passphrase" \
		'{name: $n, device: $d, ciphertext_file: $c, transit: {key: "luks"}}')")
done
config() { # N -> a config with the first N volumes
	jq -n --argjson vols "$(printf '%s\n' "${volumes[@]:0:$1}" | jq -s .)" \
		--arg vault "http://127.0.0.1:$vault_port" --arg md "http://127.0.0.1:$metadata_port/1.0/meta-data/" \
		'{vault: {address: $vault, allow_http: true}, auth: {method: "exoscale", role: "storage"},
		  metadata: {url: $md}, volumes: $vols}' >"$work/config-$1.json"
}
config 1
config 16
mkdir -p "$work/bin"
ln -s "$PWD/tests/fixtures/cryptsetup-wrapper" "$work/bin/cryptsetup"

# run N -> "to_mapping_ms wall_ms peak_rss_kib" for one unlock of N volumes
run() {
	local state=$work/state-$1 t0 last rss
	rm -rf "$state"
	mkdir -p "$state/sys/block"
	t0=$EPOCHREALTIME
	env -i PATH="$work/bin:$PATH" VAULT_LUKS_TEST_STATE="$state" VAULT_LUKS_SYSFS="$state/sys" \
		VAULT_LUKS_PROC_CMDLINE=/dev/null \
		"$bin" --config "$work/config-$1.json" unlock --no-prompt 2>"$state/stderr" ||
		{
			cat "$state/stderr" >&2
			exit 1
		}
	[ "$(wc -l <"$state/opens.log")" = "$1" ] || {
		echo "bench: $1 volumes, $(wc -l <"$state/opens.log") opens" >&2
		exit 1
	}
	# The last mapping request (opens run concurrently: the latest, not the last line), and
	# the peak RSS then.
	read -r last _ rss < <(sort -n "$state/opens.log" | tail -n 1)
	# Each call's interval cut at that moment, sorted by start, merged: the time some
	# cryptsetup call was running.
	awk -v last="$last" '$2 < last { print $2, ($3 < last ? $3 : last) }' "$state/calls.log" |
		sort -n |
		awk -v t0="$t0" -v last="$last" -v rss="$rss" '
			NR == 1 || $1 > end { busy += end - start; start = $1; end = $2; next }
			$2 > end { end = $2 }
			END {
				busy += end - start
				printf "%.1f %.1f %d\n", (last - t0 - busy) * 1000, (last - t0) * 1000, rss
			}'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: >"$work/r1"
: >"$work/r16"
for ((r = 1; r <= rounds; r++)); do
	run 1 >>"$work/r1"
	run 16 >>"$work/r16"
done
t1=$(cut -d' ' -f1 "$work/r1" | median)
t16=$(cut -d' ' -f1 "$work/r16" | median)
w1=$(cut -d' ' -f2 "$work/r1" | median)
w16=$(cut -d' ' -f2 "$work/r16" | median)
m1=$(cut -d' ' -f3 "$work/r1" | sort -n | tail -n 1)
m16=$(cut -d' ' -f3 "$work/r16" | sort -n | tail -n 1)
printf 'vault-luks unlock on this host, %d rounds interleaved (%s, %d cores)\n' "$rounds" "$(uname -r)" "$(nproc)"
printf '%-8s %24s %18s %16s\n' volumes "to mapping (median ms)" "wall (median ms)" "peak RSS (max)"
printf '%-8s %24s %18s %12s KiB\n' 1 "$t1" "$w1" "$m1" 16 "$t16" "$w16" "$m16"
awk -v t1="$t1" -v t16="$t16" -v m1="$m1" -v m16="$m16" 'BEGIN {
	ratio = t16 / t1; peak = (m16 > m1 ? m16 : m1)
	printf "16 volumes / 1: %.2fx (target <= 1.5x)\n", ratio
	printf "targets: to mapping %s ms <= 50: %s; peak RSS %.1f MiB <= 8: %s; 16/1 %.2fx <= 1.5: %s\n",
		t1, (t1 <= 50 ? "met" : "MISSED"), peak / 1024, (peak <= 8192 ? "met" : "MISSED"),
		ratio, (ratio <= 1.5 ? "met" : "MISSED")
	exit (t1 <= 50 && peak <= 8192 && ratio <= 1.5) ? 0 : 1
}'
