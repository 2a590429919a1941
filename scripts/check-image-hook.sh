#!/bin/sh
# After a rebuild of the initramfs, prove the new image can unlock (vault-luks check --image):
# a missing piece fails the rebuild, and with it the kernel package's installation, loudly, at
# install time instead of at the next boot. Installed (the package ships both names,
# scripts/install.sh the one its framework runs) as
#   /etc/initramfs/post-update.d/vault-luks  (initramfs-tools: update-initramfs runs it with
#                                             VERSION IMAGE after every image it writes; so does
#                                             dracut from 106 on, but ignores its status)
#   /etc/kernel/postinst.d/zz-vault-luks     (dracut on Debian: run after /etc/kernel/postinst.d/dracut
#                                             with VERSION /boot/vmlinuz-VERSION)
version=${1:-}
where=${2:-}
# initramfs-tools builds the images here (update-initramfs; PATH may lack /usr/sbin).
initramfs_tools() {
	command -v update-initramfs >/dev/null 2>&1 || [ -x /usr/sbin/update-initramfs ]
}
case $0 in
*/post-update.d/*)
	# dracut >= 106 runs post-update.d too, after every image, and ignores a hook's failure; in a
	# kernel package's hook run (DEB_MAINT_PARAMS) zz-vault-luks follows and fails it: prove
	# there, once.
	if [ -n "${DEB_MAINT_PARAMS:-}" ] && ! initramfs_tools; then
		exit 0
	fi
	;;
*/kernel/postinst.d/*)
	# Under initramfs-tools its post-update.d name proves the image once update-initramfs has
	# written it (from a kernel package, later: its trigger); here there is nothing yet.
	if initramfs_tools; then
		exit 0
	fi
	# As dracut's own hook: from a kernel package's postinst, only at configure.
	if [ -n "${DEB_MAINT_PARAMS:-}" ]; then
		eval set -- "$DEB_MAINT_PARAMS"
		[ "${1:-}" = configure ] || exit 0
	fi
	;;
esac
case $where in
*/vmlinuz-* | *"/vmlinux-"*) image=$(dirname "$where")/initrd.img-$version ;;
*) image=${where:-/boot/initrd.img-$version} ;;
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
