#!/bin/bash
# Build the Debian package (make deb): target/deb/vault-luks_VERSION_amd64.deb (DEB_OUT=DIR:
# there instead), then lintian on it (fails on any warning or error; each override in
# debian/vault-luks.lintian-overrides says why). Prints the package's absolute path.
#   scripts/deb.sh [--version VERSION]
# --version builds VERSION instead of debian/changelog's, with a changelog entry for it (the VM
# tests build a next version to upgrade to). The build runs in a copy of the tree (its tracked
# and new files, nothing git ignores, modification times kept) so the tree is left as it was;
# the copy is always at the same place for one cargo build cache (target/, or
# CARGO_TARGET_DIR), so a second build of the same sources compiles nothing. One build at a
# time: the others wait for its lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$PWD
version=
case ${1:-} in
--version)
	version=${2:?--version needs a VERSION}
	;;
"") ;;
*)
	echo "usage: scripts/deb.sh [--version VERSION]" >&2
	exit 2
	;;
esac

# The package's version is the crate's: the two are one release.
crate=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
changelog=$(dpkg-parsechangelog -S Version)
if [ "$changelog" != "$crate" ]; then
	echo "deb: debian/changelog is at $changelog, Cargo.toml at $crate: add a changelog entry for $crate" >&2
	exit 1
fi

target_dir=${CARGO_TARGET_DIR:-$tree/target}
case "$target_dir" in /*) ;; *) target_dir=$tree/$target_dir ;; esac
out_dir=${DEB_OUT:-$tree/target/deb}
mkdir -p "$target_dir" "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
exec {lock}>"$target_dir/deb-build.lock"
flock "$lock"
# Not under the tree: cargo would apply the tree's .cargo/config.toml on top of the copy's.
work=${TMPDIR:-/tmp}/vault-luks-deb.$(printf '%s' "$target_dir" | md5sum | cut -c 1-12)
rm -rf "$work"
mkdir -p "$work/src"
# (A tracked file deleted in the tree is left out, as a commit would leave it.)
while IFS= read -r -d '' f; do
	[ -e "$f" ] && printf '%s\0' "$f"
done < <(git ls-files -z --cached --others --exclude-standard) | tar -c --null -T - | tar -x -C "$work/src"
if [ -n "$version" ]; then
	# Newer than the entry below it, as lintian requires.
	when=$(date +%s)
	top=$(dpkg-parsechangelog -S Timestamp)
	[ "$when" -gt "$top" ] || when=$((top + 1))
	{
		printf 'vault-luks (%s) unstable; urgency=medium\n\n  * Built as %s by scripts/deb.sh --version.\n\n -- %s  %s\n\n' \
			"$version" "$version" "$(dpkg-parsechangelog -S Maintainer)" "$(date -R -d "@$when")"
		cat debian/changelog
	} >"$work/src/debian/changelog"
fi
(cd "$work/src" && CARGO_TARGET_DIR=$target_dir dpkg-buildpackage --build=binary --no-sign >&2)
deb=$(ls "$work"/vault-luks_*_amd64.deb)
out=$out_dir/$(basename "$deb")
cp "$deb" "$out"
# --display-info: the informational tags are shown too; only warnings and errors fail.
lintian --fail-on error,warning --display-info "$out" >&2
echo "$out"
