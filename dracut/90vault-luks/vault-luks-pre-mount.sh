#!/bin/sh
# vault-luks in a plain (non-systemd) dracut initrd, as a pre-mount hook: the initqueue has
# brought the network up (rd.neednet=1) by now. A failure is logged and the boot goes on.
if getargbool 1 rd.vault-luks; then
    /usr/sbin/vault-luks-initrd || warn "vault-luks: automatic unlock failed; the boot goes on"
fi
