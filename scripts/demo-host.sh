#!/bin/bash
# The unlock on this host, no VM: a real OpenBao dev server with transit set up the article's
# way, the Exoscale stand-ins in front of it, a LUKS2 image made with the article's commands,
# and the static vault-luks opening it. This host has no device-mapper, so the `cryptsetup`
# vault-luks runs is the test wrapper: it checks the key against the real header
# (`cryptsetup open --test-passphrase`) instead of creating /dev/mapper/luks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=$(scripts/build.sh)

# shellcheck source=tests/fixtures/host-vault.sh
. tests/fixtures/host-vault.sh
echo "demo: starting OpenBao, transit the article's way: transit/keys/luks, policy transit-luks,"
echo "demo: and the Exoscale metadata and auth-plugin stand-ins (role storage -> transit-luks)"
host_vault_start vault-luks-demo

echo "demo: a LUKS2 volume made with the article's commands (argon2id)"
tests/fixtures/article-volume.sh "$work/lv.luks.img" "$work/luks.passphrase" luks
echo "demo: /etc/luks.passphrase holds only the Vault ciphertext: $(cut -c1-24 "$work/luks.passphrase")..."

cat >"$work/config.json" <<JSON
{"vault":   {"address": "http://127.0.0.1:$vault_port", "allow_http": true},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://127.0.0.1:$metadata_port/1.0/meta-data/"},
 "volumes": [{"name": "luks", "device": "$work/lv.luks.img",
              "ciphertext_file": "$work/luks.passphrase", "transit": {"key": "luks"}}]}
JSON

mkdir -p "$work/bin" "$work/state"
ln -s "$PWD/tests/fixtures/cryptsetup-wrapper" "$work/bin/cryptsetup"
echo
echo "demo: vault-luks unlock"
# As at boot: no token and no address in the environment (they would override the login).
run() {
	env -u BAO_ADDR -u BAO_TOKEN PATH="$work/bin:$PATH" VAULT_LUKS_TEST_STATE="$work/state" VAULT_LUKS_SYSFS="$work/state/sys" \
		VAULT_LUKS_PROC_CMDLINE=/dev/null "$bin" --config "$work/config.json" "$@"
}
run unlock
echo
run status
echo "demo: done: the key Vault unwrapped opened the article's volume (checked against its header)"
