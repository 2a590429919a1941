#!/usr/bin/env bash
# fallback.sh FLAVOUR — the failure matrix at boot, for one flavour (initramfs-tools or dracut):
# for each way the automatic unlock can fail, a boot where the initramfs prints the failure on the
# console, brings up the passphrase prompt (cryptroot's askpass / systemd-ask-password) while it
# keeps retrying, the harness types the backup passphrase on the serial console, and the boot
# goes on with the volume open (the real root, init=, mounts it and checks its marker); the LUKS
# header areas are byte-identical to what provisioning made. One more boot: Vault comes back
# while the prompt is up, and the boot completes with nobody typing.
# Every boot's initramfs has no framework networking: vault-luks brings the network up itself, and
# the real root must find nothing of it left (net-state.sh).
#   Rows: no network (no NIC), metadata server down, Vault down, Vault sealed (503), login
#   refused (403), TLS certificate for another name, Vault accepting and never answering; then
#   one boot with four volumes for the per-volume rows: decrypt refused (403: a transit key the
#   policy does not cover), invalid ciphertext (400), a key the header rejects (and the healthy
#   volume opened by Vault beside them).
# VM_FALLBACK_ROWS="vault-down sealed ..." runs only those rows.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

flavour=$(vm_flavour "$@")
repo=$(cd "$VM_LIB_DIR/../.." && pwd)
vm_init
vm_time_start "fallback:$flavour"
bin=$repo/$("$repo/scripts/build.sh")
vm_ensure_image "$flavour"
img=$(vm_image_dir "$flavour")

# --- host: OpenBao, the stand-ins, a TLS server whose certificate names another host --------------
vm_vault_standin
vault_port=$VM_VAULT_PORT
bao write -f transit/keys/other >/dev/null
faults() { curl -sf -X POST -d "$1" "http://127.0.0.1:$vault_port/_standin/faults" >/dev/null; }

tls=$VM_WORK/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=vmtest-ca -keyout "$tls/ca.key" \
    -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=wrong.example -keyout "$tls/srv.key" -out "$tls/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:wrong.example\n' >"$tls/ext"
openssl x509 -req -in "$tls/srv.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext" -out "$tls/srv.pem" 2>/dev/null
tls_port=$(vm_free_port)
openssl s_server -quiet -accept "127.0.0.1:$tls_port" -cert "$tls/srv.pem" -key "$tls/srv.key" -www \
    >"$VM_WORK/tls.log" 2>&1 &
vm_on_exit "kill $! 2>/dev/null"
closed_port=$(vm_free_port)

# --- keys: the article's volume, the backup passphrase, the per-volume rows' volumes ---------------
new_key() { openssl rand -base64 24 | tr -d '\n'; }
encrypt() { bao write -field=ciphertext "transit/encrypt/$1" plaintext="$2"; }
key=$(new_key)
printf '%s' "$key" >"$VM_WORK/key"
encrypt luks "$key" >"$VM_WORK/luks.passphrase"
backup="vmtest backup $RANDOM$RANDOM"
printf '%s' "$backup" >"$VM_WORK/backup"
printf '%s\n' denied invalid rejected >"$VM_WORK/extra"
for name in denied invalid rejected; do new_key >"$VM_WORK/key-$name"; done
encrypt other "$(cat "$VM_WORK/key-denied")" >"$VM_WORK/denied.passphrase"
echo "vault:v1:bm90IGEgY2lwaGVydGV4dCBhdCBhbGw=" >"$VM_WORK/invalid.passphrase"
encrypt luks "$(new_key)" >"$VM_WORK/rejected.passphrase" # not the key lv.rejected was made with
echo "fallback-test $(date -u +%FT%TZ) $RANDOM" >"$VM_WORK/marker"
unset BAO_ADDR BAO_TOKEN

# --- guest root: vault-luks installed; two initramfs images (one volume / four volumes) ------------
vm_time_start assemble
root=$VM_WORK/rootfs
vm_prepare_root "$flavour" "$root"
install -d -m 0700 "$root/etc/vault-luks"
for f in luks denied invalid rejected; do
    install -m 0600 "$VM_WORK/$f.passphrase" "$root/etc/vault-luks/$f.passphrase"
done
install -m 0644 "$tls/ca.pem" "$root/etc/vault-luks/ca.pem"
volume() { # NAME [TRANSIT_KEY]
    printf '{"name": "%s", "device": "/dev/mapper/vg.flex-lv.%s", "ciphertext_file": "/etc/vault-luks/%s.passphrase", "transit": {"key": "%s"}}' \
        "$1" "$1" "$1" "${2:-luks}"
}
write_config() { # VOLUME_JSON...
    local volumes
    volumes=$(IFS=,; echo "$*")
    cat >"$root/etc/vault-luks/config.json" <<JSON
{"vault":   {"address": "http://169.254.0.2:$vault_port", "allow_http": true, "ca_cert": "/etc/vault-luks/ca.pem"},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "timeouts":{"unlock": 30, "request": 4, "prompt": 240},
 "volumes": [$volumes]}
JSON
    chmod 0600 "$root/etc/vault-luks/config.json"
}
write_config "$(volume luks)"
DESTDIR=$root "$repo/scripts/install.sh" "$bin" >/dev/null 2>&1
vm_network_mode "$root" own
vm_build_initrd "$root" "$VM_WORK/initrd-one.img"
write_config "$(volume luks)" "$(volume denied other)" "$(volume invalid)" "$(volume rejected)"
vm_build_initrd "$root" "$VM_WORK/initrd-four.img"
vm_mkfs_dir "$root" "$VM_WORK/root.img" 2G vmroot
rm -rf -- "$root"
vm_time_end assemble

vm_blank_disk "$VM_WORK/data.img" 320M
vm_provision "$img/vmlinuz" "$img/initrd-stock.img" "$VM_WORK/root.img" "$VM_WORK/data.img" \
    "$VM_WORK/key" "$VM_WORK/marker" "$VM_WORK/backup" "$VM_WORK/extra" "$VM_WORK"/key-*
declare -A header=()
for name in luks denied invalid rejected; do
    header[$name]=$(vm_result "header_$name")
    [ -n "${header[$name]}" ] || vm_die "provisioning reported no header hash for $name"
done

# --- the boots --------------------------------------------------------------------------------------
# boot ROW INITRD CMDLINE_EXTRA: start a boot whose real root (init=) checks the volumes.
boot() {
    local row=$1 initrd=$2 extra=$3
    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-fallback.sh" "$VM_WORK/marker"
    vm_start "$row" "$img/vmlinuz" "$initrd" \
        "$VM_APPEND_BASE init=/vmtest/init rd.vault-luks.timeout=30 $extra" \
        "$VM_WORK/root.img" "$VM_WORK/data.img" "$VM_WORK/io.img"
}

# answer NAME RETRYING: the prompt for NAME is on the console (saying Vault is still being retried
# when RETRYING is yes); type the backup passphrase; the volume opens with it.
answer() {
    local name=$1 retrying=$2
    vm_wait_for "Passphrase for $name" 300
    if [ "$retrying" = yes ] &&
        ! grep -a -q "Passphrase for $name (Vault not answering, still retrying)" "$VM_LOG"; then
        vm_die "$VM_NAME: the prompt for $name did not say Vault is still retried"
    fi
    vm_send "$backup\\n"
    vm_wait_for "$name: unlocked as /dev/mapper/$name with a typed passphrase" 120
}

# finish NAME...: the boot reached the real root with these volumes open, their headers untouched.
finish() {
    vm_wait_for 'VMTEST DONE' 300
    vm_wait_exit 60
    vm_expect luks_open yes
    vm_expect marker ok
    local name
    for name in "$@"; do
        vm_expect "header_$name" "${header[$name]}"
    done
    # vault-luks's own network is gone, also when the prompt won while Vault was still retried.
    vm_expect net_left none
    if grep -a -F -q "$backup" "$VM_LOG"; then vm_die "$VM_NAME: the passphrase was echoed on the console"; fi
    if grep -a -F -q -f "$VM_WORK/key" "$VM_LOG"; then vm_die "$VM_NAME: the key appeared on the console"; fi
}

# row NAME MESSAGE_REGEX [CMDLINE_EXTRA [RETRYING]]: one global failure; the faults are set by the
# caller. RETRYING (default yes): the prompt must say Vault is still being retried.
row() {
    local name=$1 message=$2 extra=${3:-} retrying=${4:-yes} how="prompt while retrying"
    [ "$retrying" = yes ] || how="prompt"
    boot "$name" "$VM_WORK/initrd-one.img" "$extra"
    vm_wait_for "vault-luks(\\[[0-9]+\\])?: $message" 300
    answer luks "$retrying"
    finish luks
    vm_log "ok   $name: '$message', $how, backup passphrase typed, /luks mounted"
}

selected() { [ -z "${VM_FALLBACK_ROWS:-}" ] || [[ " $VM_FALLBACK_ROWS " == *" $1 "* ]]; }
rows=0
if selected no-network; then
    # No interface ever appears: vault-luks waits network.carrier_timeout (10 s) for one, gives up
    # and the prompt comes up (Vault is not retried: nothing could reach it).
    VM_NO_NET=1 row no-network 'error: luks: network failed: no Ethernet interface found \(waited 10' '' no
    rows=$((rows + 1))
fi
if selected metadata-down; then
    faults '{"clear_all": true, "set": ["metadata-down"]}'
    row metadata-down 'metadata instance-id: attempt 1 failed: cannot connect'
    rows=$((rows + 1))
fi
if selected vault-down; then
    faults '{"clear_all": true}'
    row vault-down 'vault login: attempt 1 failed: .*cannot connect' \
        "rd.vault-luks.address=http://169.254.0.2:$closed_port"
    rows=$((rows + 1))
fi
if selected sealed; then
    faults '{"clear_all": true, "set": ["sealed"]}'
    row sealed 'vault login: attempt 1 failed: .*HTTP 503: Vault is sealed'
    rows=$((rows + 1))
fi
if selected login-403; then
    faults '{"clear_all": true, "set": ["login-403"]}'
    boot login-403 "$VM_WORK/initrd-one.img" ""
    vm_wait_for 'luks: vault login failed: .*HTTP 403: permission denied' 300
    answer luks no
    finish luks
    vm_log "ok   login-403: the refusal, prompt, backup passphrase typed, /luks mounted"
    rows=$((rows + 1))
fi
if selected tls; then
    faults '{"clear_all": true}'
    boot tls "$VM_WORK/initrd-one.img" "rd.vault-luks.address=https://169.254.0.2:$tls_port"
    vm_wait_for 'luks: vault login failed: .*TLS error' 300
    answer luks no
    finish luks
    vm_log "ok   tls: the certificate error, prompt, backup passphrase typed, /luks mounted"
    rows=$((rows + 1))
fi
if selected hang; then
    faults '{"clear_all": true, "set": ["vault-hang"]}'
    row hang 'vault login: attempt 1 failed: .*no answer within'
    rows=$((rows + 1))
fi
if selected per-volume; then
    # decrypt refused, invalid ciphertext, a key the header rejects; luks opens with Vault's key.
    faults '{"clear_all": true}'
    boot per-volume "$VM_WORK/initrd-four.img" ""
    vm_wait_for 'luks: unlocked as /dev/mapper/luks with Vault.s key' 300
    for name in denied invalid rejected; do answer "$name" no; done
    finish luks denied invalid rejected
    for line in 'denied: transit decrypt failed: .*HTTP 403' 'invalid: transit decrypt failed: .*(HTTP 400|message authentication failed)' \
        'rejected: cryptsetup failed: Vault.s key does not open'; do
        grep -a -E -q "$line" "$VM_LOG" || vm_die "per-volume: no /$line/ on the console"
    done
    for name in denied invalid rejected; do vm_expect "${name}_open" yes; done
    vm_log "ok   per-volume: decrypt 403, invalid ciphertext 400, header rejects; each prompted and opened"
    rows=$((rows + 3))
fi
if selected comes-back; then
    faults '{"clear_all": true, "set": ["sealed"]}'
    boot comes-back "$VM_WORK/initrd-one.img" ""
    vm_wait_for 'Passphrase for luks' 300
    faults '{"clear_all": true}'
    vm_log "     comes-back: the prompt is up; Vault unsealed, nobody types"
    vm_wait_for 'luks: unlocked as /dev/mapper/luks with Vault.s key' 120
    finish luks
    grep -a -q 'luks: passphrase prompt withdrawn' "$VM_LOG" || vm_die "comes-back: the prompt was not withdrawn"
    vm_log "ok   comes-back: Vault answered while the prompt was up; the boot went on with nobody typing"
    rows=$((rows + 1))
fi

vm_time_end "fallback:$flavour"
vm_log "PASS fallback $flavour: $rows rows: ${VM_TIMES[*]}"
