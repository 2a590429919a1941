#!/bin/bash
# Benchmark: what opening a keyslot costs, for the keyslot vault-luks enroll creates (PBKDF2,
# 1000 iterations: the key is 192 random bits, stretching buys nothing) against the article's
# (argon2id, cryptsetup's benchmarked defaults: ~2 s and up to 1 GiB on the formatting
# machine). Measures `cryptsetup open --test-passphrase` (the whole key derivation and keyslot
# check, no device-mapper) RUNS times each: median wall time and peak memory, and the ratio.
# Usage: benches/keyslot.sh [RUNS]   (needs cryptsetup and GNU time: apt install time)
set -euo pipefail
runs=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key=$(openssl rand -base64 24)

make_volume() { # NAME PBKDF-ARGS...
	local img=$work/$1.img
	shift
	truncate -s 32M "$img"
	printf %s "$key" | cryptsetup luksFormat --batch-mode --type luks2 "$@" "$img" --key-file=-
}

measure() { # NAME -> "median_seconds peak_kib"
	local img=$work/$1.img times=() mem=0 i line
	for ((i = 0; i < runs; i++)); do
		line=$(printf %s "$key" | /usr/bin/time -f '%e %M' cryptsetup open --test-passphrase --key-file=- "$img" 2>&1 >/dev/null | tail -n 1)
		times+=("${line% *}")
		[ "${line#* }" -gt "$mem" ] && mem=${line#* }
	done
	printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")" "$mem"
}

make_volume pbkdf2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000
make_volume argon2id --pbkdf argon2id
read -r t_fast m_fast < <(measure pbkdf2)
read -r t_slow m_slow < <(measure argon2id)
printf '%-34s %10s %12s\n' keyslot "median s" "peak MiB"
printf '%-34s %10s %12s\n' "vault-luks enroll (pbkdf2, 1000)" "$t_fast" "$((m_fast / 1024))"
printf '%-34s %10s %12s\n' "article (argon2id, defaults)" "$t_slow" "$((m_slow / 1024))"
awk -v a="$t_slow" -v b="$t_fast" -v ma="$m_slow" -v mb="$m_fast" 'BEGIN {
	printf "ratio: argon2id takes %.0fx the time (%s s vs %s s) and %.0fx the memory\n", (b > 0 ? a / b : a / 0.01), a, b, ma / mb }'
