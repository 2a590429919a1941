#!/usr/bin/env bash
# The VM boot suite: for each flavour, suite.sh (the boot part, then the fallback part) on one
# setup. The flavours run side by side, one guest each: a TCG guest keeps one core busy and this
# machine has two (VM_LANES=1: one flavour after the other). Each part's time and result go to
# $VM_RESULTS (make test passes its file and prints the summary itself; run alone, this prints it).
# VM_FLAVOURS="dracut" runs one flavour. Each lane's whole output is also in $VM_LOG_DIR/FLAVOUR.log.
set -euo pipefail
cd "$(dirname "$0")"
./host-deps.sh
read -r -a flavours <<<"${VM_FLAVOURS:-dracut initramfs-tools}"
lanes=${VM_LANES:-2}
own_results=0
if [ -z "${VM_RESULTS:-}" ]; then
    VM_RESULTS=$(mktemp)
    own_results=1
fi
export VM_RESULTS
VM_LOG_DIR=${VM_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vault-luks-vm-logs.XXXXXX")}
mkdir -p "$VM_LOG_DIR"

# record NAME SECONDS RESULT: a line of the summary for what no part recorded itself.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$VM_RESULTS"; }

# The guest images and the data disk first, one at a time: from a cold cache they download and
# build (debootstrap and apt share one package cache; the data disk needs a provisioning boot).
cache() {
    local f
    for f in "${flavours[@]}"; do
        ./build-image.sh "$f" >/dev/null || return 1
    done
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

# lane FLAVOUR: the flavour's suite, its output prefixed on ours and kept in its log.
lane() {
    local f=$1 rc=0 t0=$SECONDS
    ./suite.sh "$f" > >(tee "$VM_LOG_DIR/$f.log" | sed -u "s/^/[$f] /") 2>&1 || rc=$?
    # A lane that died before its first part still shows in the summary.
    if [ "$rc" != 0 ] && ! grep -q "^vm $f: .*FAIL\$" "$VM_RESULTS"; then
        record "vm $f" $((SECONDS - t0)) FAIL
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
