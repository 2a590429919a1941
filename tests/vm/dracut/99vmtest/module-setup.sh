#!/bin/bash
# shellcheck disable=SC2154 # moddir, initdir, systemdsystemunitdir, SYSTEMCTL come from dracut
# Smoke-test-only dracut module (not the project's real one): the unlock step (vmtest-step + the
# pluggable unlock program /etc/vmtest/unlock), the files listed in /etc/vmtest/initrd-files, busybox for
# wget. Systemd initrd: vmtest-unlock.service after network-online.target, before cryptsetup.target.
# Plain dracut initrd: a pre-mount hook. Added by vm_install_standin_step via add_dracutmodules.

check() {
    return 255
}

depends() {
    echo network lvm crypt
}

install() {
    inst_simple /etc/vmtest/step /bin/vmtest-step
    inst_simple /etc/vmtest/unlock /bin/vmtest-unlock
    inst_multiple busybox cryptsetup ip head tr cut awk
    local f
    if [[ -f /etc/vmtest/initrd-files ]]; then
        while read -r f; do
            [[ $f ]] && inst "$f"
        done </etc/vmtest/initrd-files
    fi
    # The image's own command line (dracut reads /etc/cmdline.d): dracut activates only the LVs named
    # by rd.lvm.lv/rd.lvm.vg (no-hostonly: none at all; it then also waits for them), and brings the
    # network up only when asked. The systemd-networkd handler ignores ip= there: it gets a .network.
    mkdir -p "$initdir/etc/cmdline.d"
    echo "rd.lvm.lv=vg.flex/lv.luks rd.neednet=1 ip=dhcp" >"$initdir/etc/cmdline.d/90vmtest.conf"
    if dracut_module_included systemd-networkd; then
        inst_simple "$moddir/90-vmtest.network" /etc/systemd/network/90-vmtest.network
    fi
    if dracut_module_included systemd; then
        inst_simple "$moddir/vmtest-unlock.service" "$systemdsystemunitdir/vmtest-unlock.service"
        $SYSTEMCTL -q --root "$initdir" enable vmtest-unlock.service
    else
        inst_hook pre-mount 90 "$moddir/vmtest-pre-mount.sh"
    fi
}
