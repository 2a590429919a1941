#!/bin/bash
# completion/vault-luks.bash: shellcheck-clean, and what it offers is what the program takes.
# The expected lists are read from the static binary's own help (`--help`, `help COMMAND`), so
# a command or flag added there and not here fails this test; volume names come from a real
# configuration through `vault-luks check`.
# Usage: tests/completion.sh [BINARY]   (default: $VAULT_LUKS_BIN, else scripts/build.sh's,
# which builds under $CARGO_TARGET_DIR when set)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-${VAULT_LUKS_BIN:-}}
[ -n "$bin" ] || bin=$(scripts/build.sh)
[ -x "$bin" ] || {
	echo "completion: $bin is not an executable" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A failure is a file, not a variable: `comp` runs in command substitutions (subshells).
fail() {
	echo "completion: FAIL: $*" >&2
	: >"$tmp/failed"
}
# `vault-luks` on the line is this binary.
PATH="$(dirname "$bin"):$PATH"

shellcheck -s bash completion/vault-luks.bash || fail "shellcheck -s bash completion/vault-luks.bash"

# shellcheck source=completion/vault-luks.bash
. completion/vault-luks.bash
# Exactly these: no -o default (readline's file names when the function offers nothing).
for spec in "complete -F _vault_luks vault-luks" "complete -F _vault_luks_keyscript vault-luks-keyscript"; do
	[ "$(complete -p "${spec##* }" 2>&1)" = "$spec" ] || fail "not registered as \`$spec\`: $(complete -p "${spec##* }" 2>&1)"
done

# comp WORD... : what completing the last WORD offers (sorted, one line), as bash would call
# the function: COMP_WORDS split at COMP_WORDBREAKS (so `--log=` is `--log` `=`). Anything the
# function prints (it must print nothing) is kept in $tmp/stderr.
comp() {
	local fn=_vault_luks
	[ "$1" = vault-luks-keyscript ] && fn=_vault_luks_keyscript
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" >"$tmp/stdout" 2>"$tmp/stderr"
	[ -s "$tmp/stdout" ] && fail "$*: the function wrote to stdout: $(cat "$tmp/stdout")"
	[ -s "$tmp/stderr" ] && fail "$*: the function wrote to stderr: $(cat "$tmp/stderr")"
	printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | paste -sd' '
}
# expect WHAT GOT WANT: the same words, in any order.
expect() {
	local want
	want=$(tr ' ' '\n' <<<"$3" | sed '/^$/d' | sort | paste -sd' ')
	if [ "$2" = "$want" ]; then
		echo "completion: ok: $1"
	else
		fail "$1: offered [$2], expected [$want]"
	fi
}

# The program's own lists.
overview=$("$bin" --help)
block() { awk -v h="$1:" '$0 == h { on = 1; next } on && /^$/ { exit } on' <<<"$2"; }
commands=$(block COMMANDS "$overview" | awk '/^    [a-z]/ { print $1 }' | paste -sd' ')
[ -n "$commands" ] || fail "no COMMANDS in vault-luks --help"
# Each option line's flags, before the two spaces that start its description.
options=$(block OPTIONS "$overview" | sed -n 's/^ *\(-[^ ].*\)/\1/p' | sed 's/  .*//' |
	tr -s ', ' '\n' | grep '^-' | paste -sd' ')
long_options=$(tr ' ' '\n' <<<"$options" | grep '^--' | paste -sd' ')
[ -n "$long_options" ] || fail "no OPTIONS in vault-luks --help"
topics=''
for c in $commands; do
	"$bin" help "$c" >/dev/null 2>&1 && topics+=" $c"
done
# A command's flags: its help's FLAGS lines, `--prompt[=HOW]` as `--prompt`.
flags() {
	local text
	text=$("$bin" help "$1")
	block FLAGS "$text" | sed -n 's/^    \(--[a-z-]*\).*/\1/p' | paste -sd' '
}

expect "commands" "$(comp vault-luks '')" "$commands"
expect "commands after an option" "$(comp vault-luks --debug '')" "$commands"
expect "options before the command" "$(comp vault-luks -)" "$options"
expect "help COMMAND" "$(comp vault-luks help '')" "$topics"
expect "help takes one command" "$(comp vault-luks help unlock '')" ""
for c in $topics; do
	expect "$c --" "$(comp vault-luks "$c" --)" "$(flags "$c") $long_options"
done
[[ " $(flags enroll) " == *" --recovery "* ]] || fail "vault-luks help enroll lists no --recovery"

# --log's and --prompt's values, each accepted by the program (a wrong one is refused first,
# before --version or --help end the parse: the check has teeth).
for v in $(comp vault-luks --log ''); do
	"$bin" --log "$v" --version >/dev/null || fail "--log $v is offered but refused"
done
"$bin" --log bogus --version >/dev/null 2>&1 && fail "--log bogus is accepted: the check above proves nothing"
expect "--log VALUE" "$(comp vault-luks --log '')" "stderr kmsg both"
expect "--log=VALUE" "$(comp vault-luks --log = '')" "stderr kmsg both"
expect "--log=k" "$(comp vault-luks --log = k)" "kmsg"
prompts=$(comp vault-luks unlock --prompt = '')
for v in $prompts; do
	"$bin" unlock --prompt="$v" --help >/dev/null || fail "--prompt=$v is offered but refused"
done
"$bin" unlock --prompt=bogus --help >/dev/null 2>&1 && fail "--prompt=bogus is accepted: the check above proves nothing"
expect "--prompt=HOW" "$prompts" "auto systemd askpass console"
expect "--timeout takes seconds" "$(comp vault-luks unlock --timeout '')" ""

# File names for the options that take a file.
mkdir "$tmp/with space"
config="$tmp/with space/config.json"
cat >"$config" <<'EOF'
{"vault": {"address": "https://vault.test:8200"},
 "auth": {"method": "exoscale", "role": "r"},
 "volumes": [{"name": "luks", "device": "/dev/x", "transit": {"key": "luks"}},
             {"name": "data-2", "device": "/dev/y", "transit": {"key": "luks"}}]}
EOF
"$bin" --no-cmdline check --config "$config" | grep -q '^volume data-2: ' ||
	fail "vault-luks check prints no \`volume NAME:\` line: the completion reads those"
for opt in --config -c --key-file --ciphertext-file; do
	expect "$opt FILE" "$(comp vault-luks enroll "$opt" "$tmp/with space/con")" "$config"
done
expect "--config=FILE" "$(comp vault-luks --config = "$tmp/with space/con")" "$config"
expect "check --image FILE" "$(comp vault-luks check --image "$tmp/with space/con")" "$config"

# Volume names from the configuration named on the line, in each way it can be written.
escaped=${config// /\\ }
expect "unlock NAME (--config FILE)" "$(comp vault-luks --config "$escaped" unlock '')" "luks data-2"
expect "unlock NAME (-c FILE, after the command)" "$(comp vault-luks unlock -c "$escaped" d)" "data-2"
expect "unlock NAME (--config=FILE)" "$(comp vault-luks --config = "'$config'" unlock '')" "luks data-2"
expect "unlock a second NAME" "$(comp vault-luks --config "$escaped" unlock luks '')" "data-2"
for c in close rewrap rotate keyscript enroll; do
	expect "$c NAME" "$(comp vault-luks --config "$escaped" "$c" '')" "luks data-2"
done
expect "rotate takes one NAME" "$(comp vault-luks --config "$escaped" rotate luks '')" ""
expect "status takes no NAME" "$(comp vault-luks --config "$escaped" status '')" ""
# The configuration from $VAULT_LUKS_CONFIG (the program's default).
expect "unlock NAME (VAULT_LUKS_CONFIG)" \
	"$(VAULT_LUKS_CONFIG=$config comp vault-luks unlock '')" "luks data-2"
# The program as typed.
expect "unlock NAME (the program as typed)" "$(comp "$bin" --config "$escaped" unlock '')" "luks data-2"
# Silent when there is nothing to read (comp fails the test on any output).
expect "no configuration" "$(comp vault-luks --config "$tmp/none.json" unlock '')" ""
echo '{"vault": {' >"$tmp/broken.json"
expect "a broken configuration" "$(comp vault-luks --config "$tmp/broken.json" unlock '')" ""
expect "no vault-luks" "$(comp /nonexistent/vault-luks unlock '')" ""
# vault-luks-keyscript ignores its arguments: nothing to offer, not even file names.
expect "vault-luks-keyscript" "$(comp vault-luks-keyscript '')" ""

[ ! -e "$tmp/failed" ] || exit 1
echo "completion: all passed"
