#!/bin/bash
# Install vault-luks on this machine, or remove it:
#   scripts/install.sh [BINARY]     binary -> /usr/local/sbin, example config (if none),
#                                   the initramfs integration this system uses, the shutdown
#                                   unit for each configured volume; rebuilds the initramfs.
#   scripts/install.sh --uninstall  removes all of it (keeps /etc/vault-luks) and rebuilds.
# DESTDIR=/path installs into another root (image building) and skips the rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${DESTDIR:-}
sbin=$root/usr/local/sbin
config=$root/etc/vault-luks/config.json

flavour() {
	if [ -d "$root/usr/lib/dracut/modules.d" ]; then
		echo dracut
	elif [ -d "$root/usr/share/initramfs-tools" ]; then
		echo initramfs-tools
	else
		echo none
	fi
}

rebuild() {
	[ -z "$root" ] || return 0
	case "$(flavour)" in
	dracut) dracut --force --regenerate-all ;;
	initramfs-tools) update-initramfs -u -k all ;;
	esac
}

volumes() {
	"$sbin/vault-luks" --no-cmdline check --config "$config" | sed -n 's/^volume \([^:]*\):.*/\1/p'
}

if [ "${1:-}" = --uninstall ]; then
	if [ -x "$sbin/vault-luks" ] && [ -e "$config" ]; then
		for v in $(volumes); do
			systemctl --root="${root:-/}" disable "vault-luks-close@$v.service" >/dev/null 2>&1 || true
		done
	fi
	rm -f "$sbin/vault-luks" "$sbin/vault-luks-keyscript" \
		"$root/etc/systemd/system/vault-luks-close@.service" \
		"$root/etc/initramfs-tools/hooks/vault-luks" \
		"$root/etc/initramfs-tools/scripts/init-premount/vault-luks" \
		"$root/etc/initramfs-tools/scripts/local-top/vault-luks" \
		"$root/etc/initramfs-tools/scripts/local-bottom/vault-luks"
	rm -rf "$root/usr/lib/dracut/modules.d/90vault-luks"
	rebuild
	echo "vault-luks removed; /etc/vault-luks is kept"
	exit 0
fi

bin=${1:-target/x86_64-unknown-linux-musl/release/vault-luks}
[ -x "$bin" ] || bin=$(scripts/build.sh)
install -D -m 0755 "$bin" "$sbin/vault-luks"
ln -sf vault-luks "$sbin/vault-luks-keyscript"
if [ ! -e "$config" ]; then
	install -D -m 0600 /dev/null "$config"
	cat >"$config" <<'JSON'
{"vault":   {"address": "https://vault.example.com:8200"},
 "auth":    {"method": "exoscale", "role": "storage"},
 "metadata":{"url": "http://169.254.169.254/1.0/meta-data/"},
 "volumes": [{"name": "luks", "device": "/dev/mapper/vg.flex-lv.luks",
              "ciphertext_file": "/etc/luks.passphrase", "transit": {"key": "luks"}}]}
JSON
	echo "wrote an example $config: edit it, then run this again"
	exit 0
fi
"$sbin/vault-luks" --no-cmdline check --config "$config"

case "$(flavour)" in
dracut)
	install -D -m 0755 dracut/90vault-luks/module-setup.sh "$root/usr/lib/dracut/modules.d/90vault-luks/module-setup.sh"
	install -m 0755 dracut/90vault-luks/vault-luks-pre-mount.sh dracut/90vault-luks/vault-luks-initrd.sh "$root/usr/lib/dracut/modules.d/90vault-luks/"
	install -m 0644 dracut/90vault-luks/vault-luks.service dracut/90vault-luks/vault-luks-network-online.conf dracut/90vault-luks/90-vault-luks.network "$root/usr/lib/dracut/modules.d/90vault-luks/"
	;;
initramfs-tools)
	install -D -m 0755 initramfs-tools/hooks/vault-luks "$root/etc/initramfs-tools/hooks/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/init-premount/vault-luks "$root/etc/initramfs-tools/scripts/init-premount/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/local-top/vault-luks "$root/etc/initramfs-tools/scripts/local-top/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/local-bottom/vault-luks "$root/etc/initramfs-tools/scripts/local-bottom/vault-luks"
	;;
*)
	echo "neither dracut nor initramfs-tools is installed: nothing unlocks at boot" >&2
	exit 1
	;;
esac
install -D -m 0644 systemd/vault-luks-close@.service "$root/etc/systemd/system/vault-luks-close@.service"
for v in $(volumes); do
	if ! systemctl --root="${root:-/}" enable "vault-luks-close@$v.service" >/dev/null 2>&1; then
		mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
		ln -sf /etc/systemd/system/vault-luks-close@.service "$root/etc/systemd/system/sysinit.target.wants/vault-luks-close@$v.service"
	fi
done
rebuild
echo "vault-luks installed ($(flavour)); volumes: $(volumes | tr '\n' ' ')"
