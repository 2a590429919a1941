#!/bin/bash
# Build the static vault-luks binary and check it against its budget: fully static, <= 1.75 MiB.
# Prints the binary's absolute path (under CARGO_TARGET_DIR when that is set).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
cargo build --release --locked --target "$target" >&2
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
bin=$target_dir/$target/release/vault-luks
budget=$((7 * 1024 * 1024 / 4))
size=$(stat -c %s "$bin")
kind=$(file -b "$bin")
case "$kind" in
*"statically linked"* | *"static-pie linked"*) ;;
*)
	echo "build: $bin is not statically linked: $kind" >&2
	exit 1
	;;
esac
# Packed relocations (.cargo/config.toml) are applied by musl's start-up code: prove it runs.
if ! "$bin" --version >/dev/null; then
	echo "build: $bin does not start (packed relocations need the musl of Rust >= 1.93)" >&2
	exit 1
fi
if [ "$size" -gt "$budget" ]; then
	echo "build: $bin is $size bytes, over the 1.75 MiB budget" >&2
	exit 1
fi
echo "build: $bin: $size bytes ($((size * 100 / budget))% of the 1.75 MiB budget), static" >&2
echo "$bin"
