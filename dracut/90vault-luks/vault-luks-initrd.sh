#!/bin/sh
# vault-luks in a dracut initrd (unit or pre-mount hook): activate LVM so the LV exists (dracut
# activates only the LVs named by rd.lvm.lv=, and naming one makes every boot wait for it), then
# unlock; when Vault fails or is slow a passphrase prompt comes up (systemd-ask-password: the
# console, plymouth, systemd-tty-ask-password-agent over SSH) while Vault is retried.
# Exits with vault-luks's status; the boot goes on either way.
if command -v lvm >/dev/null 2>&1; then
    lvm vgchange -aay --sysinit >/dev/null 2>&1
fi
/usr/sbin/vault-luks --log kmsg unlock --prompt
status=$?
# For the real root's vault-luks-late.service (/run survives the switch): vault-luks ran here,
# and how it ended.
mkdir -p /run/vault-luks
echo "$status" >/run/vault-luks/initramfs-exit
exit "$status"
