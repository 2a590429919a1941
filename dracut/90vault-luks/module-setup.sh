#!/bin/bash
# shellcheck disable=SC2154 # moddir, initdir, systemdsystemunitdir, SYSTEMCTL come from dracut
# dracut module: vault-luks, its configuration and every file the configuration names, with
# cryptsetup and dm-crypt. One module for both kinds of initrd: in a systemd initrd a unit
# ordered after network-online.target and before cryptsetup.target; in a plain dracut initrd a
# pre-mount hook; both run vault-luks-initrd (LVM activation, then unlock).
# Networking comes from dracut's network module (rd.neednet=1 ip=dhcp in the image's cmdline.d).

vault_luks_config() {
    echo "${VAULT_LUKS_CONFIG:-/etc/vault-luks/config.json}"
}

# scripts/install.sh puts it in /usr/local/sbin, which dracut's PATH may not have.
vault_luks_bin() {
    command -v vault-luks || echo /usr/local/sbin/vault-luks
}

# Included whenever vault-luks is configured; 255 ("only when asked") otherwise.
check() {
    [[ -x "$(vault_luks_bin)" ]] || return 1
    require_binaries cryptsetup || return 1
    [[ -e "$(vault_luks_config)" ]] && return 0
    return 255
}

depends() {
    echo network crypt lvm
    return 0
}

installkernel() {
    instmods dm_crypt aesni_intel xts
}

install() {
    local config bin f
    config=$(vault_luks_config)
    bin=$(vault_luks_bin)
    if ! "$bin" --no-cmdline check --config "$config" >/dev/null; then
        dfatal "vault-luks: $config is invalid (see above)"
        return 1
    fi
    inst_binary "$bin" /usr/sbin/vault-luks
    inst_script "$moddir/vault-luks-initrd.sh" /usr/sbin/vault-luks-initrd
    inst_multiple cryptsetup
    # The fallback prompt asks through systemd's password agents (console, plymouth, SSH).
    inst_multiple -o systemd-ask-password systemd-tty-ask-password-agent
    inst_multiple -o lvm
    inst_simple "$config" /etc/vault-luks/config.json
    chmod 0600 "${initdir}/etc/vault-luks/config.json"
    while read -r f; do
        [[ $f ]] || continue
        if [[ ! -r $f ]]; then
            dfatal "vault-luks: $f (named in $config) does not exist or is not readable"
            return 1
        fi
        inst_simple "$f"
        chmod 0600 "${initdir}${f}"
    done < <("$bin" --no-cmdline check --files --config "$config")

    if dracut_module_included systemd; then
        inst_simple "$moddir/vault-luks.service" "$systemdsystemunitdir/vault-luks.service"
        $SYSTEMCTL -q --root "$initdir" enable vault-luks.service
    else
        inst_hook pre-mount 50 "$moddir/vault-luks-pre-mount.sh"
    fi

    # Until vault-luks raises the network itself, ask dracut's network module for DHCP: on the
    # image's command line (network-legacy, NetworkManager) and as a .network file (the
    # systemd-networkd handler reads ip= only from the kernel's command line).
    mkdir -p "${initdir}/etc/cmdline.d"
    echo "rd.neednet=1 ip=dhcp" >"${initdir}/etc/cmdline.d/90vault-luks.conf"
    if dracut_module_included systemd-networkd; then
        inst_simple "$moddir/90-vault-luks.network" /etc/systemd/network/90-vault-luks.network
    fi
    dracut_need_initqueue
}
