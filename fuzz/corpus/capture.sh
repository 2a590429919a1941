#!/bin/bash
# Regenerates the real samples of the fuzz corpus (fuzz/corpus/TARGET/real-*) from the real
# programs: OpenBao's answers (dev server on loopback: approle login, transit encrypt, decrypt,
# batch decrypt, errors, sealed), `cryptsetup luksDump` of LUKS2 and LUKS1 image files, a DHCP
# exchange with dnsmasq and rtnetlink acknowledgements from the kernel (in network namespaces
# of its own), and sysfs link files. Needs root (namespaces) and what scripts/setup.sh
# installs. The hand-written samples (README examples, forms from the tests) are not touched.
#
# Input layouts (src/fuzz.rs): vault_transit = one byte, '0'..'3' for 1..4 ciphertexts sent,
# then the body; netlink = the request's sequence number (4 bytes, native order), then the
# datagram.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PATH=$PATH:/usr/sbin:/sbin
work=$(mktemp -d /tmp/vault-luks-corpus.XXXXXX)
ns=vlc$$
bao_pid="" dnsmasq_pid=""
cleanup() {
	[ -n "$bao_pid" ] && kill "$bao_pid" 2>/dev/null && wait "$bao_pid" 2>/dev/null
	[ -n "$dnsmasq_pid" ] && kill "$dnsmasq_pid" 2>/dev/null && wait "$dnsmasq_pid" 2>/dev/null
	ip netns del "$ns-c" 2>/dev/null || true
	ip netns del "$ns-s" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
out() { mkdir -p "$here/$1" && cat >"$here/$1/real-$2"; }

# --- OpenBao (dev server: in memory, root token "root") ---
port=$((20000 + $$ % 20000))
export BAO_ADDR=http://127.0.0.1:$port BAO_TOKEN=root
bao server -dev -dev-listen-address="127.0.0.1:$port" -dev-root-token-id=root >"$work/bao.log" 2>&1 &
bao_pid=$!
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
bao secrets enable transit >/dev/null
bao write -f transit/keys/luks >/dev/null
bao auth enable approle >/dev/null
bao write auth/approle/role/storage token_policies=default token_ttl=5m >/dev/null
# api METHOD PATH [BODY] [TOKEN]: the raw answer body, whatever the status.
api() {
	curl -sS -X "$1" -H "X-Vault-Token: ${4-root}" -H 'X-Vault-Request: true' \
		${3:+--data "$3"} "$BAO_ADDR/v1/$2"
}
role_id=$(bao read -field=role_id auth/approle/role/storage/role-id)
secret_id=$(bao write -f -field=secret_id auth/approle/role/storage/secret-id)
api POST auth/approle/login "{\"role_id\":\"$role_id\",\"secret_id\":\"$secret_id\"}" '' | out vault_login approle-login
api POST auth/token/create '{"policies":["default"],"ttl":"5m"}' | out vault_login token-create
key=dGhpcyBpcyAyNCBieXRlcyBsb25nIQ==
api POST transit/encrypt/luks "{\"plaintext\":\"$key\"}" >"$work/enc"
ct=$(jq -r .data.ciphertext "$work/enc")
{ printf 0 && cat "$work/enc"; } | out vault_transit encrypt
{ printf 0 && api POST transit/decrypt/luks "{\"ciphertext\":\"$ct\"}"; } | out vault_transit decrypt
{ printf 1 && api POST transit/decrypt/luks "{\"batch_input\":[{\"ciphertext\":\"$ct\"},{\"ciphertext\":\"$ct\"}]}"; } |
	out vault_transit decrypt-batch
# A batch with one damaged item: 400, per-item errors.
api POST transit/decrypt/luks "{\"batch_input\":[{\"ciphertext\":\"$ct\"},{\"ciphertext\":\"vault:v1:AAAA\"}]}" >"$work/b400"
{ printf 1 && cat "$work/b400"; } | out vault_transit decrypt-batch-item-error
out vault_errors batch-item-error <"$work/b400"
api POST transit/decrypt/luks '{"ciphertext":"vault:v1:AAAA"}' | out vault_errors decrypt-400
api POST transit/decrypt/luks "{\"ciphertext\":\"$ct\"}" not-a-token | out vault_errors permission-denied-403
api POST transit/decrypt/nokey "{\"ciphertext\":\"$ct\"}" | out vault_errors key-not-found
api POST auth/approle/login "{\"role_id\":\"$role_id\",\"secret_id\":\"wrong\"}" '' | out vault_errors login-400
api GET sys/nothing-here | out vault_errors unsupported-path-404
bao operator seal >/dev/null
api POST transit/decrypt/luks "{\"ciphertext\":\"$ct\"}" | out vault_errors sealed-503

# --- LUKS headers (image files; cheap PBKDF2 keyslots) ---
fast=(--batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000)
truncate -s 20M "$work/l2.img" "$work/l1.img"
printf pass1 | cryptsetup luksFormat --type luks2 "${fast[@]}" --key-file=- "$work/l2.img"
printf pass2 >"$work/k2"
printf pass1 | cryptsetup luksAddKey "${fast[@]}" --key-file=- --key-slot 3 "$work/l2.img" "$work/k2"
cryptsetup luksDump --dump-json-metadata "$work/l2.img" | out luks2_header no-token
printf '%s' '{"type":"vault-luks","keyslots":["3"],"vault_address":"https://vault.example.com:8200","auth_method":"exoscale","auth_role":"storage","transit_mount":"transit","transit_key":"luks","ciphertext":"'"$ct"'"}' |
	cryptsetup token import --json-file=- "$work/l2.img"
cryptsetup luksDump --dump-json-metadata "$work/l2.img" | out luks2_header vault-luks-token
printf pass1 | cryptsetup luksFormat --type luks1 "${fast[@]}" --key-file=- "$work/l1.img"
printf pass1 | cryptsetup luksAddKey "${fast[@]}" --key-file=- --key-slot 5 "$work/l1.img" "$work/k2"
cryptsetup luksDump "$work/l1.img" | out luks1_dump two-keyslots

# --- DHCP from dnsmasq, netlink from the kernel (namespaces joined by a veth pair) ---
ip netns add "$ns-c"
ip netns add "$ns-s"
ip link add "c$$" type veth peer name "s$$"
ip link set "c$$" netns "$ns-c" name eth0
ip link set "s$$" netns "$ns-s" name eth0
ip -n "$ns-s" addr add 192.0.2.1/24 dev eth0
ip -n "$ns-s" link set eth0 up
ip -n "$ns-c" link set eth0 up
ip netns exec "$ns-s" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--interface=eth0 --bind-interfaces --except-interface=lo --dhcp-authoritative \
	--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h \
	--dhcp-option=option:router,192.0.2.1 --dhcp-option=option:dns-server,192.0.2.1 \
	--dhcp-leasefile="$work/leases" --pid-file= --log-facility="$work/dnsmasq.log" &
dnsmasq_pid=$!
sleep 0.5
# The client messages are src/net/dhcp.rs's encode(), byte for byte.
ip netns exec "$ns-c" python3 - "$here" <<'EOF'
import socket, struct, sys, os
here = sys.argv[1]
mac = open("/sys/class/net/eth0/address").read().strip()
hw = bytes.fromhex(mac.replace(":", ""))
def encode(kind, xid, request=None):
    m = bytearray(236)
    m[0:4] = bytes([1, 1, 6, 0]); m[4:8] = struct.pack(">I", xid); m[10:12] = b"\x80\x00"
    m[28:34] = hw
    m += bytes([99, 130, 83, 99, 53, 1, kind, 61, 7, 1]) + hw
    if request:
        m += bytes([50, 4]) + socket.inet_aton(request[0]) + bytes([54, 4]) + socket.inet_aton(request[1])
    m += bytes([57, 2, 5, 220, 55, 4, 1, 3, 6, 51, 255])
    return bytes(m.ljust(300, b"\0"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind(("0.0.0.0", 68)); s.settimeout(10)
def exchange(msg, name, want):
    s.sendto(msg, ("255.255.255.255", 67))
    while True:
        data = s.recv(1500)
        if data[4:8] == msg[4:8] and data[242] == want:
            os.makedirs(f"{here}/dhcp", exist_ok=True)
            open(f"{here}/dhcp/real-{name}", "wb").write(data)
            return data
offer = exchange(encode(1, 0x1234abcd), "offer", 2)
yiaddr = socket.inet_ntoa(offer[16:20])
exchange(encode(3, 0x1234abcd, (yiaddr, "192.0.2.1")), "ack", 5)
exchange(encode(3, 0x5678, ("198.51.100.9", "192.0.2.1")), "nak", 6)
os.makedirs(f"{here}/link", exist_ok=True)
open(f"{here}/link/real-veth-address", "w").write(mac + "\n")
open(f"{here}/link/real-veth-flags", "w").write(open("/sys/class/net/eth0/flags").read())
EOF
# rtnetlink: the kernel's answers to requests shaped as src/net/netlink.rs's.
ip netns exec "$ns-c" python3 - "$here" <<'EOF'
import socket, struct, sys, os
here = sys.argv[1]
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.settimeout(5)
def attr(kind, payload):
    b = struct.pack("=HH", 4 + len(payload), kind) + payload
    return b + b"\0" * (-len(b) % 4)
def ask(name, kind, flags, seq, body):
    s.send(struct.pack("=IHHII", 16 + len(body), kind, 0x1 | 0x4 | flags, seq, 0) + body)
    data = s.recv(65536)
    os.makedirs(f"{here}/netlink", exist_ok=True)
    open(f"{here}/netlink/real-{name}", "wb").write(struct.pack("=I", seq) + data)
lo = socket.if_nametoindex("lo")
eth = socket.if_nametoindex("eth0")
ask("link-up-ack", 16, 0, 1, struct.pack("=BBHiII", 0, 0, 0, lo, 1, 1))
addr = lambda ip, p, i: struct.pack("=BBBBI", 2, p, 0, 0, i) + attr(2, socket.inet_aton(ip)) + attr(1, socket.inet_aton(ip))
ask("address-exists", 20, 0x400 | 0x200, 2, addr("127.0.0.1", 8, lo))
route = struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 3, 253, 1, 0) + attr(1, socket.inet_aton("169.254.169.254")) + attr(4, struct.pack("=I", eth))
ask("route-delete-missing", 25, 0, 3, route)
ask("link-dump", 18, 0x300, 4, struct.pack("=BBHiII", 0, 0, 0, 0, 0, 0))
EOF
out link lo-address </sys/class/net/lo/address
printf '%s' "$(cat /sys/class/net/lo/flags)" | out link lo-flags
echo "corpus: real samples written under $here" >&2
