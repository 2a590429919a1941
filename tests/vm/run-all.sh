#!/usr/bin/env bash
# The VM boot suite: for each flavour, suite.sh on the first release of VM_RELEASES (default trixie,
# Debian's stable: the boot part, then the fallback part, on one setup), then the boot part on each
# other release (default bookworm, oldstable: so that it does not rot). The flavours run side by
# side, one guest each: a TCG guest keeps one core busy and this machine has two (VM_LANES=1: one
# flavour after the other). Each part's time and result go to $VM_RESULTS (make test passes its
# file and prints the summary itself; run alone, this prints it). VM_FLAVOURS="dracut" runs one
# flavour. Each lane's whole output is also in $VM_LOG_DIR/FLAVOUR.log. Each lane ends with one
# boot of the minimal guest of the first release (VM_VARIANT=minimal: only what the README tells a
# user to install; VM_MINIMAL=0 skips it).
set -euo pipefail
cd "$(dirname "$0")"
./host-deps.sh
read -r -a flavours <<<"${VM_FLAVOURS:-dracut initramfs-tools}"
read -r -a releases <<<"${VM_RELEASES:-trixie bookworm}"
lanes=${VM_LANES:-2}
own_results=0
if [ -z "${VM_RESULTS:-}" ]; then
    VM_RESULTS=$(mktemp)
    own_results=1
fi
export VM_RESULTS
VM_LOG_DIR=${VM_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vault-luks-vm-logs.XXXXXX")}
mkdir -p "$VM_LOG_DIR"

minimal_wanted() { [ "${VM_MINIMAL:-1}" = 1 ]; }

# record NAME SECONDS RESULT: a line of the summary for what no part recorded itself.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$VM_RESULTS"; }

# The guest images and the data disk first, one at a time: from a cold cache they download and
# build (debootstrap and apt share one package cache; the data disk needs a provisioning boot).
cache() {
    local f r
    for r in "${releases[@]}"; do
        for f in "${flavours[@]}"; do
            VM_RELEASE=$r ./build-image.sh "$f" >/dev/null || return 1
        done
    done
    if minimal_wanted; then
        for f in "${flavours[@]}"; do
            VM_RELEASE=${releases[0]} VM_VARIANT=minimal ./build-image.sh "$f" >/dev/null || return 1
        done
    fi
    ./suite.sh "${flavours[0]}" cache
}
t0=$SECONDS
if cache; then
    record "vm: guest images and data disk (cache)" $((SECONDS - t0)) pass
else
    record "vm: guest images and data disk (cache)" $((SECONDS - t0)) FAIL
    [ "$own_results" = 0 ] || ../../scripts/summary.sh "$VM_RESULTS"
    exit 1
fi

# lane FLAVOUR: the flavour's suites (all parts on the first release, the boot part on the others),
# their output prefixed on ours and kept in its log.
lane() {
    local f=$1 rc=0 r parts=() late=1
    for r in "${releases[@]}"; do
        # The real root's second chance is booted once, on the first release (boot.sh).
        VM_LATE=$late suite "$f" "$r" "" "${parts[@]}" || rc=1
        parts=(boot)
        late=0
    done
    if minimal_wanted; then
        # One boot: the minimal guest unlocks at boot, its initramfs checked like every other's
        # (libgcc_s.so.1 and the NIC driver there come from our hook or module alone). Then the
        # Debian package on the same guest: what a user installs, on what the README says to have.
        VM_BOOTS=1 suite "$f" "${releases[0]}" minimal boot deb || rc=1
    fi
    return "$rc"
}

# suite FLAVOUR RELEASE VARIANT [PART...]: one suite.sh run in a lane.
suite() {
    local f=$1 r=$2 v=$3 rc=0 t0=$SECONDS name
    shift 3
    name="$r $f${v:+ $v}"
    VM_RELEASE=$r VM_VARIANT=$v ./suite.sh "$f" "$@" > >(tee -a "$VM_LOG_DIR/$f.log" | sed -u "s/^/[$name] /") 2>&1 || rc=$?
    # A suite that died before its first part still shows in the summary.
    if [ "$rc" != 0 ] && ! grep -q "^vm $name: .*FAIL\$" "$VM_RESULTS"; then
        record "vm $name" $((SECONDS - t0)) FAIL
    fi
    return "$rc"
}

start=$SECONDS
pids=()
failed=0
for f in "${flavours[@]}"; do
    if [ "$lanes" -ge 2 ]; then
        lane "$f" &
        pids+=($!)
    else
        lane "$f" || failed=1
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
wall=$((SECONDS - start))
echo "VM boot suite: ${#flavours[@]} flavours in $wall s (lanes: $lanes); logs in $VM_LOG_DIR"
if [ "$own_results" = 1 ]; then
    ../../scripts/summary.sh "$VM_RESULTS"
    rm -f "$VM_RESULTS"
fi
exit "$failed"
