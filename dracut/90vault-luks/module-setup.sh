#!/bin/bash
# shellcheck disable=SC2154 # moddir, initdir, systemdsystemunitdir, SYSTEMCTL come from dracut
# dracut module: vault-luks, its configuration and every file the configuration names, with
# cryptsetup and dm-crypt. One module for both kinds of initrd: in a systemd initrd a unit
# ordered after the initqueue (udev settled) and before cryptsetup.target; in a plain dracut
# initrd a pre-mount hook; both run vault-luks-initrd (LVM activation, then unlock).
# The network: vault-luks brings it up itself when it finds no route to the metadata server or
# Vault (and takes it down again), so dracut's network module is not needed, nor dracut-network's
# kernel-network-modules: installkernel adds the NIC drivers itself. Who prefers it sets
# vault_luks_network="dracut" in a dracut.conf.d file: the module is then required, DHCP is asked
# for on the image's command line, and the unit waits for network-online.target.

vault_luks_config() {
    echo "${VAULT_LUKS_CONFIG:-/etc/vault-luks/config.json}"
}

# scripts/install.sh puts it in /usr/local/sbin, which dracut's PATH may not have.
vault_luks_bin() {
    command -v vault-luks || echo /usr/local/sbin/vault-luks
}

# Included whenever vault-luks is configured; 255 ("only when asked") otherwise. What stops it
# is said as an error: dracut itself only warns and writes the image without the module (the
# install's `vault-luks check --image` then fails).
check() {
    if [[ ! -x "$(vault_luks_bin)" ]]; then
        derror "vault-luks: $(vault_luks_bin) is not installed: vault-luks is left out of the image"
        return 1
    fi
    if ! require_binaries cryptsetup; then
        derror "vault-luks: cryptsetup is not installed (apt install cryptsetup-bin): vault-luks is left out of the image"
        return 1
    fi
    # The framework's network is dracut-network's network module, which `dracut` alone lacks.
    if [[ $(vault_luks_network_mode) == dracut ]] && ! compgen -G "${dracutbasedir:-/usr/lib/dracut}/modules.d/[0-9][0-9]network" >/dev/null; then
        derror "vault-luks: vault_luks_network=\"dracut\" needs dracut's network module, which dracut-network ships: apt install dracut-network (or drop the setting: vault-luks brings the network up itself); vault-luks is left out of the image"
        return 1
    fi
    [[ -e "$(vault_luks_config)" ]] && return 0
    return 255
}

# own (default) or dracut; set in dracut.conf.d, which dracut sources before calling us.
vault_luks_network_mode() {
    case ${vault_luks_network:-own} in
        own | dracut) echo "${vault_luks_network:-own}" ;;
        *)
            derror "vault-luks: vault_luks_network=\"$vault_luks_network\" is not own or dracut; using own"
            echo own
            ;;
    esac
}

depends() {
    if [[ $(vault_luks_network_mode) == dracut ]]; then
        echo network crypt lvm
    else
        # vault-luks raises the link and runs DHCP itself: it needs only the NIC drivers, which
        # installkernel adds (dracut's kernel-network-modules ships in dracut-network, which a
        # system with only `dracut` does not have).
        echo crypt lvm
    fi
    return 0
}

# The drivers bound to this machine's network interfaces (what `vault-luks check --image`, run
# after every build, requires in the image).
vault_luks_local_nic_drivers() {
    local module
    for module in /sys/class/net/*/device/driver/module; do
        [[ -e $module ]] && basename "$(readlink -f "$module")"
    done
}

installkernel() {
    instmods dm_crypt aesni_intel xts
    if [[ $(vault_luks_network_mode) == own ]]; then
        # virtio (the KVM clouds: Exoscale, OpenStack, ...) and this machine's NICs, which the
        # check after every build requires. Not every wired Ethernet driver: in a generic image
        # (Debian's default, hostonly="no") those are 8.5 MB compressed, six times what
        # vault-luks and cryptsetup add, and the other clouds' virtual NICs (ENA, gVNIC, MANA,
        # Hyper-V, VMware, Xen) another 0.3 MB (benches/boot.sh). An image made on one machine
        # for other hardware names its drivers in a dracut.conf.d file:
        # vault_luks_nic_drivers="ena ixgbe", or "all" for every wired Ethernet driver.
        local driver
        # shellcheck disable=SC2046 # one module name per word
        instmods virtio_net af_packet $(vault_luks_local_nic_drivers)
        for driver in ${vault_luks_nic_drivers:-}; do
            if [[ $driver == all ]]; then
                instmods '=drivers/net/ethernet'
            elif ! instmods -c -s "$driver"; then
                dwarn "vault-luks: vault_luks_nic_drivers names $driver, which this kernel has no module for"
            fi
        done
    fi
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
    # glibc loads libgcc_s.so.1 with dlopen when a thread of cryptsetup's exits: no ldd-based
    # install sees it (Debian bug #1032221), and without it cryptsetup aborts at boot
    # ("libgcc_s.so.1 must be installed for pthread_exit to work"). It lives beside the libc.
    local libc
    libc=$(ldd "$(command -v cryptsetup)" | sed -n 's/.*=> \(\/[^ ]*\/libc\.so\.6\) .*/\1/p')
    if [[ ! -e ${libc%/*}/libgcc_s.so.1 ]]; then
        dfatal "vault-luks: libgcc_s.so.1 not found beside '${libc:-libc.so.6}': cryptsetup needs it at run time (apt install libgcc-s1)"
        return 1
    fi
    # (inst, not inst_library: dracut 106 has no inst_library; it printed "command not found"
    # and went on, and the image had libgcc_s only where something else brought it.)
    if ! inst "${libc%/*}/libgcc_s.so.1"; then
        dfatal "vault-luks: cannot install ${libc%/*}/libgcc_s.so.1 into the image"
        return 1
    fi
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

    if [[ $(vault_luks_network_mode) == dracut ]]; then
        # DHCP from dracut's network module: on the image's command line (network-legacy,
        # NetworkManager) and as a .network file (the systemd-networkd handler reads ip= only
        # from the kernel's command line); the unit waits for it.
        mkdir -p "${initdir}/etc/cmdline.d"
        echo "rd.neednet=1 ip=dhcp" >"${initdir}/etc/cmdline.d/90vault-luks.conf"
        if dracut_module_included systemd-networkd; then
            inst_simple "$moddir/90-vault-luks.network" /etc/systemd/network/90-vault-luks.network
        fi
        if dracut_module_included systemd; then
            inst_simple "$moddir/vault-luks-network-online.conf" \
                "$systemdsystemunitdir/vault-luks.service.d/network-online.conf"
        fi
    fi
    dracut_need_initqueue
}
