#!/bin/bash
# Install vault-luks on this machine, or remove it:
#   scripts/install.sh [BINARY]     binary -> /usr/local/sbin, example config (if none),
#                                   the initramfs integration this system uses, the hook that
#                                   checks every rebuilt image, the real root's units and the
#                                   generator that pulls them in for the configured volumes
#                                   (vault-luks-late.service, vault-luks-close@NAME.service);
#                                   rebuilds the initramfs and proves each image can unlock
#                                   (vault-luks check --image): exit 1, loudly, when one cannot.
#   scripts/install.sh --uninstall  removes all of it (keeps /etc/vault-luks) and rebuilds.
# DESTDIR=/path installs into another root (image building) and skips the rebuild.
# This is the way for systems without the Debian package (make deb); do not mix the two.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${DESTDIR:-}
sbin=$root/usr/local/sbin
units=$root/etc/systemd/system
generator=$root/usr/local/lib/systemd/system-generators/vault-luks-generator
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

# Each installed kernel's image must be able to unlock; a kernel without one boots without an
# initramfs, and then vault-luks-late.service unlocks in the real root.
prove_images() {
	[ -z "$root" ] || return 0
	local modules kver image failed=0 checked=0
	for modules in /lib/modules/*/; do
		kver=$(basename "$modules")
		image=/boot/initrd.img-$kver
		[ -e "/boot/vmlinuz-$kver" ] || continue
		if [ ! -e "$image" ]; then
			echo "vault-luks: no initramfs for $kver ($image): in a boot without one, vault-luks-late.service unlocks in the real root" >&2
			continue
		fi
		checked=$((checked + 1))
		if ! "$sbin/vault-luks" --no-cmdline check --image "$image" --config "$config"; then
			failed=$((failed + 1))
		fi
	done
	if [ "$failed" -gt 0 ]; then
		echo "E: vault-luks: $failed of $checked initramfs images cannot unlock at boot (MISSING above): fix that before rebooting" >&2
		exit 1
	fi
}

# The unit a device-mapper name's device has in systemd (dev-mapper-NAME.device, escaped).
device_unit() {
	systemd-escape --path --suffix=device "/dev/mapper/$1"
}

volumes() {
	"$sbin/vault-luks" --no-cmdline check --config "$config" | sed -n 's/^volume \([^:]*\):.*/\1/p'
}

# What installs before the generator wrote by hand: enable links and device drop-ins.
remove_enabled_units() {
	local v
	if [ -x "$sbin/vault-luks" ] && [ -e "$config" ]; then
		for v in $(volumes); do
			rm -f "$units/sysinit.target.wants/vault-luks-close@$v.service" \
				"$units/$(device_unit "$v").d/vault-luks.conf"
			rmdir "$units/$(device_unit "$v").d" 2>/dev/null || true
		done
	fi
	rm -f "$units/sysinit.target.wants/vault-luks-late.service"
}

if [ "${1:-}" = --uninstall ]; then
	remove_enabled_units
	rm -f "$sbin/vault-luks" "$sbin/vault-luks-keyscript" "$generator" \
		"$units/vault-luks-close@.service" "$units/vault-luks-late.service" \
		"$root/etc/initramfs/post-update.d/vault-luks" \
		"$root/etc/kernel/postinst.d/zz-vault-luks" \
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
	install -D -m 0600 examples/config.json "$config"
	echo "wrote an example $config: edit it, then run this again"
	exit 0
fi
"$sbin/vault-luks" --no-cmdline check --config "$config"

case "$(flavour)" in
dracut)
	install -D -m 0755 dracut/90vault-luks/module-setup.sh "$root/usr/lib/dracut/modules.d/90vault-luks/module-setup.sh"
	install -m 0755 dracut/90vault-luks/vault-luks-pre-mount.sh dracut/90vault-luks/vault-luks-initrd.sh "$root/usr/lib/dracut/modules.d/90vault-luks/"
	install -m 0644 dracut/90vault-luks/vault-luks.service dracut/90vault-luks/vault-luks-network-online.conf dracut/90vault-luks/90-vault-luks.network "$root/usr/lib/dracut/modules.d/90vault-luks/"
	# After /etc/kernel/postinst.d/dracut builds a new kernel's image.
	install -D -m 0755 scripts/check-image-hook.sh "$root/etc/kernel/postinst.d/zz-vault-luks"
	;;
initramfs-tools)
	install -D -m 0755 initramfs-tools/hooks/vault-luks "$root/etc/initramfs-tools/hooks/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/init-premount/vault-luks "$root/etc/initramfs-tools/scripts/init-premount/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/local-top/vault-luks "$root/etc/initramfs-tools/scripts/local-top/vault-luks"
	install -D -m 0755 initramfs-tools/scripts/local-bottom/vault-luks "$root/etc/initramfs-tools/scripts/local-bottom/vault-luks"
	# After every image update-initramfs writes (kernel installs included).
	install -D -m 0755 scripts/check-image-hook.sh "$root/etc/initramfs/post-update.d/vault-luks"
	;;
*)
	echo "neither dracut nor initramfs-tools is installed: nothing unlocks at boot" >&2
	exit 1
	;;
esac
# The units name the package's /usr/sbin/vault-luks; here it lives in /usr/local/sbin.
for unit in vault-luks-close@.service vault-luks-late.service; do
	mkdir -p "$units"
	sed 's|/usr/sbin/vault-luks|/usr/local/sbin/vault-luks|g' "systemd/$unit" >"$units/$unit"
	chmod 0644 "$units/$unit"
done
# vault-luks-late.service and each volume's close unit are pulled in by the generator at
# every boot and daemon-reload, from the configuration: nothing to enable, nothing to forget
# when `enroll` adds a volume.
install -D -m 0755 systemd/vault-luks-generator "$generator"
remove_enabled_units
[ -n "$root" ] || systemctl daemon-reload >/dev/null 2>&1 || true
rebuild
prove_images
echo "vault-luks installed ($(flavour)); volumes: $(volumes | tr '\n' ' ')"
