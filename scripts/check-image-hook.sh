#!/bin/sh
# After a rebuild of the initramfs, prove the new image can unlock (vault-luks check --image):
# a missing piece fails the rebuild, and with it the kernel package's installation, loudly, at
# install time instead of at the next boot. scripts/install.sh installs it as
#   /etc/initramfs/post-update.d/vault-luks  (initramfs-tools: update-initramfs runs it with
#                                             VERSION IMAGE after every image it writes)
#   /etc/kernel/postinst.d/zz-vault-luks     (dracut on Debian: run after /etc/kernel/postinst.d/dracut
#                                             with VERSION /boot/vmlinuz-VERSION)
version=${1:-}
case ${2:-} in
*/vmlinuz-* | *"/vmlinux-"*) image=$(dirname "$2")/initrd.img-$version ;;
*) image=${2:-/boot/initrd.img-$version} ;;
esac
config=${VAULT_LUKS_CONFIG:-/etc/vault-luks/config.json}
bin=$(command -v vault-luks || echo /usr/local/sbin/vault-luks)

# Not configured (or removed): nothing to prove. No image (INITRD=No): nothing to check.
[ -e "$config" ] && [ -x "$bin" ] || exit 0
[ -n "$version" ] && [ -e "$image" ] || exit 0
if out=$("$bin" --no-cmdline check --image "$image" 2>&1); then
	echo "vault-luks: $image can unlock (vault-luks check --image)" >&2
	exit 0
fi
echo "$out" >&2
echo "E: vault-luks: $image cannot unlock at boot: fix what is MISSING above and rebuild it; rebooting into it would leave the volumes locked" >&2
exit 1
