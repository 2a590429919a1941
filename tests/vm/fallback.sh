#!/usr/bin/env bash
# shellcheck disable=SC2154 # flavour, img, bin, repo, backup, ... come from suite.sh's setup
# fallback.sh FLAVOUR — the failure matrix at boot, for one flavour (initramfs-tools or dracut):
# suite.sh's setup, then boots where the automatic unlock fails: the initramfs prints the failure
# on the console, brings up the passphrase prompt (cryptroot's askpass / systemd-ask-password),
# saying so while it keeps retrying; the harness types the backup passphrase on the serial
# console, and the boot goes on with the volume open (the real root, init=, mounts it and checks
# its marker); the data disk, LUKS headers included, is byte-identical to what provisioning made; nothing of
# vault-luks's network is left in the real root (net-state.sh), also where the typed passphrase
# won while Vault was still retried. Every boot's initramfs has no framework networking, and
# every boot starts from the pristine root and data disks; after it, the data disk must be byte
# for byte what provisioning made (no header, metadata or file system block written).
#
# The rows, five boots:
#   sequence (four volumes): the stand-in's fault changes while the prompt for luks is up:
#     metadata down -> Vault sealed (503) -> Vault accepting and never answering -> healthy:
#     each fault's retry line, the prompt saying Vault is still retried, then Vault comes back:
#     its key opens luks and the prompt is withdrawn with nobody typing. In the same boot the
#     per-volume failures: decrypt refused (403: a transit key the policy does not cover),
#     invalid ciphertext (400), a key the header rejects; each prompted in turn and opened with
#     the typed passphrase.
#   vault-down: nothing listens at the address; the typed passphrase wins while Vault is still
#     retried (the process ends with the Vault thread still at work).
#   login-403, tls (a certificate for another name): final refusals, the prompt at once.
#   no-network: no NIC at all: vault-luks waits 10 s for one, then the prompt.
# VM_FALLBACK_ROWS="vault-down sequence ..." runs only those boots (the sequence's own rows,
# metadata-down sealed hang comes-back per-volume, select it too).
#
# Run directly, it is `suite.sh FLAVOUR fallback`; suite.sh sources it for fallback_part.

# fallback_boot ROW INITRD CMDLINE_EXTRA: start a boot whose real root (init=) checks the volumes,
# on the setup's pristine root (writes discarded) and a fresh copy of the data disk.
fallback_boot() {
    local row=$1 initrd=$2 extra=$3
    vm_io_disk "$VM_WORK/io.img" "$VM_LIB_DIR/guest/check-fallback.sh" "$VM_WORK/marker"
    cp --sparse=always "$VM_DATA/data.img" "$VM_WORK/fallback-data.img"
    VM_SNAPSHOT=1 vm_start "$row" "$img/vmlinuz" "$initrd" "$VM_APPEND_BASE init=/vmtest/init $extra" \
        "$VM_WORK/root.img" "$VM_WORK/fallback-data.img" "$VM_WORK/io.img"
}

# fallback_answer NAME RETRYING: the prompt for NAME is on the console (saying Vault is still
# being retried when RETRYING is yes); type the backup passphrase; the volume opens with it.
fallback_answer() {
    local name=$1 retrying=$2
    vm_wait_for "Passphrase for $name" 300
    if [ "$retrying" = yes ] &&
        ! grep -a -q "Passphrase for $name (Vault not answering, still retrying)" "$VM_LOG"; then
        vm_die "$VM_NAME: the prompt for $name did not say Vault is still retried"
    fi
    vm_send "$backup\\n"
    vm_wait_for "$name: unlocked as /dev/mapper/$name with a typed passphrase" 120
}

# fallback_finish: the boot reached the real root with luks open and mountable, nothing written to
# the data disk (every LUKS header as provisioning left it), nothing of the network left, no
# secret on the console.
fallback_finish() {
    vm_wait_for 'VMTEST DONE' 300
    vm_wait_exit 60
    vm_expect luks_open yes
    vm_expect marker ok
    vm_data_untouched "$VM_WORK/fallback-data.img"
    # vault-luks's own network is gone, also when the prompt won while Vault was still retried.
    vm_expect net_left none
    if grep -a -F -q "$backup" "$VM_LOG"; then vm_die "$VM_NAME: the passphrase was echoed on the console"; fi
    if grep -a -F -q -f "$VM_WORK/key" "$VM_LOG"; then vm_die "$VM_NAME: the key appeared on the console"; fi
}

# fallback_row NAME FAULTS MESSAGE_REGEX CMDLINE_EXTRA RETRYING: one global failure on the one-volume
# initramfs, the stand-in's faults set to FAULTS; RETRYING: the prompt must say Vault is still retried.
fallback_row() {
    local name=$1 message=$3 extra=$4 retrying=$5 how="prompt while retrying"
    [ "$retrying" = yes ] || how="prompt"
    vm_part "fallback $name"
    faults "$2"
    fallback_boot "$name" "$VM_WORK/initrd.img" "rd.vault-luks.timeout=30 $extra"
    vm_wait_for "vault-luks(\\[[0-9]+\\])?: $message" 300
    fallback_answer luks "$retrying"
    fallback_finish
    vm_log "ok   $name: '$message', $how, backup passphrase typed, /luks mounted"
}

# fallback_wait_seen REGEX TIMEOUT: like vm_wait_for, but anywhere in the log (a prompt and a kernel log
# line written at the same moment reach the serial console in either order); the position is kept.
fallback_wait_seen() {
    local re=$1 deadline=$((SECONDS + $2))
    until grep -a -q -E -- "$re" "$VM_LOG"; do
        ((SECONDS < deadline)) || { vm_tail_log; vm_die "$VM_NAME: /$re/ did not appear within $2s"; }
        kill -0 "$VM_PID" 2>/dev/null || { vm_tail_log; vm_die "$VM_NAME: guest stopped before /$re/ appeared"; }
        sleep 0.5
    done
}

fallback_sequence() {
    local name line
    vm_part "fallback sequence"
    faults '{"clear_all": true, "set": ["metadata-down"]}'
    # The deadline only bounds the boot: the harness moves from fault to fault as soon as each
    # one's line is on the console.
    fallback_boot sequence "$VM_WORK/initrd-four.img" "rd.vault-luks.timeout=150"
    vm_wait_for 'vault-luks(\[[0-9]+\])?: metadata instance-id: attempt [0-9]+ failed: cannot connect' 300
    fallback_wait_seen 'Passphrase for luks \(Vault not answering, still retrying\)' 120
    vm_log "ok   sequence: metadata down: its line, the prompt for luks saying Vault is still retried"
    faults '{"clear_all": true, "set": ["sealed"]}'
    vm_wait_for 'vault-luks(\[[0-9]+\])?: vault login: attempt [0-9]+ failed: .*HTTP 503: Vault is sealed' 120
    vm_log "ok   sequence: sealed: its line, still retried behind the prompt"
    faults '{"clear_all": true, "set": ["vault-hang"]}'
    vm_wait_for 'vault-luks(\[[0-9]+\])?: vault login: attempt [0-9]+ failed: .*no answer within' 120
    vm_log "ok   sequence: a Vault that never answers: its line, still retried behind the prompt"
    faults '{"clear_all": true}'
    vm_wait_for 'luks: unlocked as /dev/mapper/luks with Vault.s key' 120
    # Until Vault's key opened luks, its one prompt stayed up: no other prompt, nothing typed.
    fallback_wait_seen 'luks: passphrase prompt withdrawn' 30
    if grep -a -q 'luks: unlocked as /dev/mapper/luks with a typed passphrase' "$VM_LOG"; then
        vm_die "sequence: luks was opened with a typed passphrase, not by Vault coming back"
    fi
    vm_log "ok   sequence: Vault came back while the prompt was up: luks opened with its key, the prompt withdrawn"
    # The per-volume failures, prompted in turn once Vault has said its last word on each.
    for name in denied invalid rejected; do fallback_answer "$name" no; done
    fallback_finish
    for line in 'denied: transit decrypt failed: .*HTTP 403' 'invalid: transit decrypt failed: .*(HTTP 400|message authentication failed)' \
        'rejected: cryptsetup failed: Vault.s key does not open'; do
        grep -a -E -q "$line" "$VM_LOG" || vm_die "sequence: no /$line/ on the console"
    done
    for name in denied invalid rejected; do vm_expect "${name}_open" yes; done
    vm_log "ok   sequence: decrypt 403, invalid ciphertext 400, header rejects; each prompted and opened"
}

fallback_part() {
    local selected=${VM_FALLBACK_ROWS:-sequence vault-down login-403 tls no-network}
    # The sequence's own rows select it.
    [[ " $selected " =~ \ (metadata-down|sealed|hang|comes-back|per-volume)\  ]] && selected+=" sequence"
    wanted() { [[ " $selected " == *" $1 "* ]]; }
    # Each boot on its own (vm_isolated): one that fails does not keep the others from running.
    if wanted sequence; then vm_isolated fallback_sequence; fi
    if wanted vault-down; then
        vm_isolated fallback_row vault-down '{"clear_all": true}' 'vault login: attempt 1 failed: .*cannot connect' \
            "rd.vault-luks.address=http://169.254.0.2:$closed_port" yes
    fi
    if wanted login-403; then
        vm_isolated fallback_row login-403 '{"clear_all": true, "set": ["login-403"]}' \
            'error: luks: vault login failed: .*HTTP 403: permission denied' '' no
    fi
    if wanted tls; then
        vm_isolated fallback_row tls '{"clear_all": true}' 'error: luks: vault login failed: .*TLS error' \
            "rd.vault-luks.address=https://169.254.0.2:$tls_port" no
    fi
    if wanted no-network; then
        # No interface ever appears: vault-luks waits network.carrier_timeout (10 s) for one, gives up
        # and the prompt comes up (Vault is not retried: nothing could reach it).
        VM_NO_NET=1 vm_isolated fallback_row no-network '{"clear_all": true}' \
            'error: luks: network failed: no Ethernet interface found \(waited 10' '' no
    fi
    ((VM_FAILED == 0)) || { vm_log "fallback: $VM_FAILED of its boots failed"; exit 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec "$(dirname "$0")/suite.sh" "${1:-}" fallback
fi
