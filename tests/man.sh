#!/bin/bash
# The man pages render without a warning, as lintian checks them: its exact `man --warnings`
# command (lintian's manpage-has-errors-from-man; any line on stderr fails), lexgrog's whatis
# parse of NAME (bad-whatis-entry), and a .TH section that matches the file name
# (manpage-section-mismatch). Their words are held to the code by src/cli/man_pages.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
	echo "man: $*" >&2
	failed=1
}

for page in doc/vault-luks.8 doc/vault-luks.json.5; do
	[ -s "$page" ] || {
		fail "$page is missing"
		continue
	}
	if ! warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
		man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null); then
		fail "$page: man failed: $warnings"
	elif [ -n "$warnings" ]; then
		fail "$page: warnings from man (lintian reports them):"$'\n'"$warnings"
	fi
	if ! whatis=$(lexgrog "$page" 2>&1) || ! grep -q ': ".* - .*"$' <<<"$whatis"; then
		fail "$page: lexgrog cannot parse its NAME section: $whatis"
	fi
	section=${page##*.}
	th=$(sed -n 's/^\.TH [^ ]* \([^ ]*\).*/\1/p' "$page")
	[ "$th" = "$section" ] || fail "$page: .TH says section '$th', the file name '$section'"
done
[ "$failed" = 0 ] && echo "man: doc/vault-luks.8, doc/vault-luks.json.5 render without warnings"
exit "$failed"
