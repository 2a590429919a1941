#!/bin/bash
# Host tests of vault-luks's own network bring-up and teardown, in network namespaces: a
# client namespace (where vault-luks runs, with /etc on a tmpfs of its own so "no
# resolv.conf" is real) joined by veth pairs to a server namespace running dnsmasq. Every
# address is ours (192.0.2.0/24, TEST-NET-1) inside namespaces this script makes.
#
#   tests/net/netns.sh CASE     one case: lease, no-answer, carrier, configured, dns,
#                               resolv-kept, kernel-static, failure-undone, late-nic,
#                               prompt-wins, foreign-up, vault-by-name
#   tests/net/netns.sh all      every case
#
# VAULT_LUKS_BIN: the binary (default: the debug build). Exit 0 pass, 1 fail, 77 when network
# namespaces are unavailable (not root, no CAP_SYS_ADMIN): the caller reports that loudly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${VAULT_LUKS_BIN:-$here/../../target/debug/vault-luks}
id=$$
cli=vlt-c$id
srv=vlt-s$id
work=$(mktemp -d /tmp/vault-luks-net.XXXXXX)
dnsmasq_pid=
bao_pid=

cleanup() {
	[ -n "$dnsmasq_pid" ] && kill "$dnsmasq_pid" 2>/dev/null && wait "$dnsmasq_pid" 2>/dev/null
	[ -n "$bao_pid" ] && kill "$bao_pid" 2>/dev/null && wait "$bao_pid" 2>/dev/null
	ip netns del "$cli" 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/out "$work"/err; do
		[ -s "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}

if ! ip netns add "$cli" 2>/dev/null; then
	echo "network namespaces unavailable here (need root and CAP_SYS_ADMIN)" >&2
	exit 77
fi
ip netns add "$srv"
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || fail "dnsmasq is missing (apt-get install dnsmasq-base; scripts/setup.sh does)"
PATH=$PATH:/usr/sbin

# veth pair NAME: eth NAME in the client, s-NAME in the server namespace.
veth() {
	ip link add "v$id$1" type veth peer name "w$id$1"
	ip link set "v$id$1" netns "$cli" name "$1"
	ip link set "w$id$1" netns "$srv" name "s-$1"
}

# dnsmasq serving DHCP (and DNS: vault.test -> 192.0.2.7) on the server side of eth IFACE.
# --local=/test/: answer the AAAA query for vault.test with "no such data", as a real server
# does; without an upstream dnsmasq would say REFUSED, which musl's resolver (unlike glibc's)
# treats as no answer, timing the whole lookup out.
serve() {
	ip -n "$srv" addr add 192.0.2.1/24 dev "s-$1"
	ip -n "$srv" link set "s-$1" up
	ip netns exec "$srv" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
		--interface="s-$1" --bind-interfaces --except-interface=lo \
		--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h \
		--dhcp-option=option:router,192.0.2.1 --dhcp-option=option:dns-server,192.0.2.1 \
		--host-record=vault.test,192.0.2.7 --local=/test/ --dhcp-leasefile="$work/leases" \
		--pid-file= --log-facility="$work/dnsmasq.log" --log-dhcp --log-queries &
	dnsmasq_pid=$!
	sleep 0.3
}

config() {
	printf '%s\n' "{\"vault\": {\"address\": \"https://vault.test:8200\"}, \"auth\": {\"method\": \"exoscale\", \"role\": \"r\"}${1:-}}" >"$work/config.json"
}

# The client namespace's whole network state (links, addresses, routes of every table). The
# queueing discipline is left out: the kernel attaches one to a link the first time it goes up
# and keeps it (noop -> noqueue); nobody configured it and nothing can take it back.
snapshot() {
	{
		ip -n "$cli" -o link | sed 's/ link-netns.*//; s/ qdisc [a-z_]*//'
		ip -n "$cli" -o addr
		ip -n "$cli" route show table all
	} >"$work/$1"
}

# Runs `vault-luks ARGS` (net-check unless ARGS start with unlock) in the client namespace with /etc a fresh tmpfs: SETUP (a
# shell snippet) runs in there first; afterwards, still in there, /etc is listed into
# $work/etc-after. The kernel command line comes from $work/cmdline.
# Sets rc and secs; stdout in $work/out, stderr in $work/err.
run() {
	local setup=$1
	shift
	[ "${1:-}" = unlock ] || set -- net-check "$@"
	: >>"$work/cmdline"
	local t0
	t0=$(date +%s%N)
	set +e
	# shellcheck disable=SC2016 # expanded by the inner shell
	ip netns exec "$cli" unshare -m sh -c 'mount -t tmpfs tmpfs /etc && eval "$1" || exit 99
		list=$2; shift 2; "$@"; rc=$?; ls -A /etc >"$list"; exit $rc' sh "$setup" "$work/etc-after" \
		env VAULT_LUKS_PROC_CMDLINE="$work/cmdline" "$bin" -c "$work/config.json" "$@" >"$work/out" 2>"$work/err"
	rc=$?
	set -e
	secs=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')
}

# awk's arithmetic comparison, for seconds: `le 3.5 "$secs"`.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

field() { jq -r "$1" <(head -1 "$work/out"); }

unchanged() {
	snapshot after
	diff -u "$work/before" "$work/after" >&2 || fail "$1: the namespace's network state changed"
}

case_lease() {
	veth eth0
	serve eth0
	config
	snapshot before
	run true --exec 'ip -4 -o addr show dev eth0; ip -4 route; cat /etc/resolv.conf' --timeout 20
	[ "$rc" = 0 ] || fail "lease: exit $rc"
	[ "$(field .method)" = dhcp ] || fail "lease: not dhcp"
	addr=$(field .address)
	case $addr in 192.0.2.*/24) ;; *) fail "lease: address $addr" ;; esac
	grep -q "inet $addr " "$work/out" || fail "lease: $addr was not on eth0 while up"
	grep -q '^default via 192.0.2.1 dev eth0' "$work/out" || fail "lease: no default route while up"
	grep -q '^169.254.169.254 via 192.0.2.1 dev eth0' "$work/out" || fail "lease: no metadata route while up"
	grep -q '^nameserver 192.0.2.1$' "$work/out" || fail "lease: resolv.conf not written"
	for line in 'eth0 up' 'eth0: carrier after' 'eth0: DHCP attempt 1' "eth0: DHCP lease ${addr}"; do
		grep -q "network: $line" "$work/err" || fail "lease: no progress line '$line'"
	done
	grep -q 'what vault-luks configured is removed' "$work/err" || fail "lease: no teardown line"
	unchanged lease
}

case_no_answer() {
	veth eth0
	ip -n "$srv" link set s-eth0 up # carrier, but nobody answers
	config
	snapshot before
	run true --timeout 4
	[ "$rc" = 1 ] || fail "no-answer: exit $rc, expected 1"
	grep -q 'error: network failed: no DHCP lease on eth0 after [0-9]* attempts in [0-9.]* s -- check that a DHCP server answers' "$work/err" ||
		fail "no-answer: not the one-line error expected"
	le "$secs" 6 || fail "no-answer: took $secs s for a 4 s deadline"
	le 3.5 "$secs" || fail "no-answer: gave up after $secs s, before the deadline"
	unchanged no-answer
}

case_carrier() {
	veth eth0 # its peer stays down: no carrier
	veth eth1
	serve eth1
	config
	snapshot before
	run true --exec 'ip -o link show eth0' --timeout 20
	[ "$rc" = 0 ] || fail "carrier: exit $rc"
	[ "$(field .interface)" = eth1 ] || fail "carrier: chose $(field .interface), not eth1"
	grep -q 'eth0.*state DOWN' "$work/out" || fail "carrier: eth0 was left up while eth1 was used"
	unchanged carrier
}

# left_alone CASE LINE: with eth0 served by dnsmasq and set up by the caller, net-check
# configures nothing, says LINE, takes no lease and changes nothing.
left_alone() {
	config
	snapshot before
	run true --timeout 10
	[ "$rc" = 0 ] || fail "$1: exit $rc"
	[ "$(field .configured)" = false ] || fail "$1: it configured something"
	grep -q "$2" "$work/err" || fail "$1: no '$2' line"
	[ ! -s "$work/leases" ] || fail "$1: a DHCP lease was taken"
	unchanged "$1"
}

case_configured() {
	veth eth0
	serve eth0
	ip -n "$cli" link set lo up
	ip -n "$cli" link set eth0 up
	ip -n "$cli" addr add 192.0.2.5/24 dev eth0
	ip -n "$cli" route add default via 192.0.2.1
	left_alone configured 'already configured'
}

case_foreign_up() {
	# Someone raised eth0 and gave it an address, but no default route (a running system
	# with routes of its own, a framework half-way): not ours to add to.
	veth eth0
	serve eth0
	ip -n "$cli" link set eth0 up
	ip -n "$cli" addr add 192.0.2.5/24 dev eth0
	left_alone foreign-up 'but eth0 is up: configured by someone else; leaving it as it is'
}

case_dns() {
	veth eth0
	serve eth0
	config
	snapshot before
	run true --resolve vault.test --exec 'test -f /etc/resolv.conf' --timeout 20
	[ "$rc" = 0 ] || fail "dns: exit $rc"
	[ "$(jq -r .addresses[0] <(sed -n 2p "$work/out"))" = 192.0.2.7 ] || fail "dns: vault.test did not resolve to 192.0.2.7"
	[ "$(field .added.resolv_conf)" = /etc/resolv.conf ] || fail "dns: resolv.conf not recorded"
	[ ! -s "$work/etc-after" ] || fail "dns: left in /etc: $(cat "$work/etc-after")"
	unchanged dns
}

case_resolv_kept() {
	veth eth0
	serve eth0
	config
	run 'echo "nameserver 198.51.100.53" >/etc/resolv.conf' --exec 'cat /etc/resolv.conf' --timeout 20
	[ "$rc" = 0 ] || fail "resolv-kept: exit $rc"
	[ "$(field .added.resolv_conf)" = null ] || fail "resolv-kept: claims to have written resolv.conf"
	grep -q '^nameserver 198.51.100.53$' "$work/out" || fail "resolv-kept: the existing resolv.conf was changed"
	grep -q 'resolv.conf exists; left as it is' "$work/err" || fail "resolv-kept: no line saying so"
}

case_kernel_static() {
	veth eth0
	ip -n "$srv" link set s-eth0 up
	echo 'root=/dev/vda ip=192.0.2.20::192.0.2.1:255.255.255.0::eth0:off' >"$work/cmdline"
	config
	snapshot before
	run true --exec 'ip -4 -o addr show dev eth0; ip -4 route' --timeout 10
	[ "$rc" = 0 ] || fail "kernel-static: exit $rc"
	[ "$(field .method)" = static ] || fail "kernel-static: not static"
	grep -q 'inet 192.0.2.20/24 ' "$work/out" || fail "kernel-static: address not configured"
	grep -q '^default via 192.0.2.1 dev eth0' "$work/out" || fail "kernel-static: no default route"
	unchanged kernel-static
}

case_failure_undone() {
	veth eth0
	ip -n "$srv" link set s-eth0 up
	# The gateway is off the subnet: adding the default route fails after the address and
	# the links were changed. All of it must be undone.
	config ', "network": {"address": "192.0.2.20/24", "gateway": "198.51.100.1"}'
	snapshot before
	run true --timeout 10
	[ "$rc" = 1 ] || fail "failure-undone: exit $rc, expected 1"
	grep -q 'error: network failed: cannot add route 0.0.0.0/0 via 198.51.100.1 dev eth0' "$work/err" ||
		fail "failure-undone: not the error expected"
	unchanged failure-undone
	# and a failing --exec after a good bring-up: exit 1, torn down all the same
	config ', "network": {"address": "192.0.2.20/24", "gateway": "192.0.2.1"}'
	run true --exec false --timeout 10
	[ "$rc" = 1 ] || fail "failure-undone: exit $rc after a failed command"
	unchanged failure-undone-exec
}

case_late_nic() {
	# The NIC's driver is still loading when vault-luks starts: the interface appears 2 s later.
	ip link add "v${id}late" type veth peer name "w${id}late"
	ip link set "w${id}late" netns "$srv" name s-eth0
	serve eth0
	config
	snapshot before
	(sleep 2 && ip link set "v${id}late" netns "$cli" name eth0) &
	local mover=$!
	run true --timeout 20
	wait "$mover"
	[ "$rc" = 0 ] || fail "late-nic: exit $rc"
	[ "$(field .interface)" = eth0 ] || fail "late-nic: used $(field .interface)"
	[ "$(field .method)" = dhcp ] || fail "late-nic: not dhcp"
	le 2 "$secs" || fail "late-nic: done after $secs s, before the interface existed"
	snapshot after
	# The interface itself is new; everything on it must be as the kernel made it.
	grep -v 'eth0' "$work/after" | diff -u <(grep -v 'eth0' "$work/before") - >&2 || fail "late-nic: state changed"
	ip -n "$cli" -o link show eth0 | grep -q 'state DOWN' || fail "late-nic: eth0 left up"
	[ -z "$(ip -n "$cli" -o addr show dev eth0)" ] || fail "late-nic: an address left on eth0"
}

# volume KEY: a LUKS2 image $work/vol.img keyed with KEY (fast PBKDF2: the key is tested, not the
# KDF), and a cryptsetup on $work/bin that emulates the mapping (tests/fixtures).
volume() {
	mkdir -p "$work/bin" "$work/state"
	ln -sf "$here/../fixtures/cryptsetup-wrapper" "$work/bin/cryptsetup"
	truncate -s 20M "$work/vol.img"
	printf '%s' "$1" | cryptsetup luksFormat --batch-mode --type luks2 \
		--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file=- "$work/vol.img"
}

case_vault_by_name() {
	# The whole unlock with nothing configured: DHCP, then Vault by its name through the DNS
	# server DHCP gave, a real OpenBao in the server namespace (192.0.2.7, "vault.test"),
	# token login, transit decrypt of the article's key, the volume opened; the namespace's
	# network as before afterwards.
	veth eth0
	serve eth0
	ip -n "$srv" addr add 192.0.2.7/24 dev s-eth0
	ip -n "$srv" link set lo up
	ip netns exec "$srv" bao server -dev -dev-root-token-id=root -dev-no-store-token \
		-dev-listen-address=192.0.2.7:8200 >"$work/bao.log" 2>&1 &
	bao_pid=$!
	sbao() { ip netns exec "$srv" env BAO_ADDR=http://192.0.2.7:8200 BAO_TOKEN=root bao "$@"; }
	for _ in $(seq 150); do sbao status >/dev/null 2>&1 && break; sleep 0.2; done
	sbao status >/dev/null 2>&1 || fail "vault-by-name: OpenBao did not start: $(tail -n 5 "$work/bao.log")"
	sbao secrets enable transit >/dev/null
	sbao write -f transit/keys/luks >/dev/null
	echo 'path "transit/decrypt/luks" { capabilities = ["update"] }' | sbao policy write luks - >/dev/null
	sbao token create -policy=luks -field=token >"$work/token"
	local key
	key=$(openssl rand -base64 24 | tr -d '\n')
	sbao write -field=ciphertext transit/encrypt/luks plaintext="$key" >"$work/ct"
	volume "$key"
	printf '%s\n' "{\"vault\": {\"address\": \"http://vault.test:8200\", \"allow_http\": true},
	 \"auth\": {\"method\": \"token\", \"token_file\": \"$work/token\"}, \"timeouts\": {\"unlock\": 30},
	 \"volumes\": [{\"name\": \"vol\", \"device\": \"$work/vol.img\", \"ciphertext_file\": \"$work/ct\", \"transit\": {\"key\": \"luks\"}}]}" >"$work/config.json"
	snapshot before
	VAULT_LUKS_TEST_STATE=$work/state VAULT_LUKS_SYSFS=$work/state/sys PATH=$work/bin:$PATH run true unlock --no-prompt
	[ "$rc" = 0 ] || fail "vault-by-name: exit $rc"
	grep -q 'network: no route to the internet (default route); configuring it' "$work/err" || fail "vault-by-name: did not configure the network"
	grep -q 'vol: unlocked as /dev/mapper/vol' "$work/err" || fail "vault-by-name: not unlocked"
	grep -q 'what vault-luks configured is removed' "$work/err" || fail "vault-by-name: no teardown line"
	[ -e "$work/state/active-vol" ] || fail "vault-by-name: the mapping was not made"
	grep -q 'query\[A\] vault.test' "$work/dnsmasq.log" || fail "vault-by-name: vault.test was not asked of the DHCP-given DNS server"
	[ ! -s "$work/etc-after" ] || fail "vault-by-name: left in /etc: $(cat "$work/etc-after")"
	unchanged vault-by-name
}

case_prompt_wins() {
	# `unlock --prompt` with no DHCP answer: the person types the passphrase while the Vault
	# thread is still in DHCP; the process exits at once, and what that thread raised is gone.
	veth eth0
	ip -n "$srv" link set s-eth0 up # carrier, but nobody answers
	local state=$work/state fixtures=$here/../fixtures
	volume 'typed at the console'
	printf 'typed at the console\n' >"$state/askpass-answers"
	echo 'vault:v1:bm90IHVzZWQ=' >"$work/ct"
	config ", \"timeouts\": {\"unlock\": 30}, \"volumes\": [{\"name\": \"vol\", \"device\": \"$work/vol.img\", \"ciphertext_file\": \"$work/ct\", \"transit\": {\"key\": \"luks\"}}]"
	snapshot before
	VAULT_LUKS_TEST_STATE=$state VAULT_LUKS_SYSFS=$state/sys VAULT_LUKS_ASKPASS=$fixtures/askpass-fake PATH=$work/bin:$PATH \
		run true unlock --prompt
	[ "$rc" = 0 ] || fail "prompt-wins: exit $rc"
	grep -q 'vol: unlocked as /dev/mapper/vol with a typed passphrase' "$work/err" || fail "prompt-wins: not opened by the typed passphrase"
	grep -q 'network: eth0: DHCP attempt 2' "$work/err" || fail "prompt-wins: the prompt did not wait for DHCP trouble"
	grep -q 'what vault-luks configured is removed' "$work/err" || fail "prompt-wins: no teardown line"
	le "$secs" 15 || fail "prompt-wins: took $secs s: the process waited for the Vault thread"
	[ -e "$state/active-vol" ] || fail "prompt-wins: the mapping was not made"
	unchanged prompt-wins
}

case=${1:?usage: netns.sh CASE|all}
if [ "$case" = all ]; then
	for c in lease no-answer carrier configured dns resolv-kept kernel-static failure-undone late-nic prompt-wins foreign-up vault-by-name; do
		"$0" "$c" || exit 1
	done
	exit 0
fi
fn=case_${case//-/_}
declare -F "$fn" >/dev/null || fail "unknown case $case"
"$fn"
echo "ok: $case ($secs s)"
