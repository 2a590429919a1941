# bash completion for vault-luks(8) and vault-luks-keyscript
#
# Standalone: it uses no bash-completion helper (_init_completion and friends), so it works
# the same whether bash-completion loads it (from /usr/share/bash-completion/completions) or
# someone sources it by hand, and its test needs nothing but bash. The little those helpers
# would do is done here: `--opt=value` split by COMP_WORDBREAKS is put together again, and file
# names are completed with compgen -f.
#
# The commands, their flags and the options are the program's help (src/cli/help.rs);
# tests/completion.sh holds these lists to `vault-luks --help` and `vault-luks help COMMAND`.
# Volume names come from the configuration: `vault-luks --no-cmdline check` prints a line
# `volume NAME: ...` for each (with the --config given on the line, if any). Errors (no
# configuration, not readable without root, no vault-luks) complete nothing, silently.

_vault_luks_commands="unlock close status check keyscript enroll rewrap rotate net-check help"
_vault_luks_options="-c --config --log --debug --no-cmdline -h --help -V --version"

# _vault_luks_flags COMMAND: the flags COMMAND takes besides the options.
_vault_luks_flags() {
	case $1 in
	unlock) echo "--timeout --prompt --no-prompt --late" ;;
	close) echo "--force" ;;
	status) echo "--json --check-vault" ;;
	check) echo "--files --image" ;;
	enroll) echo "--device --format --force --key-file --ciphertext-file --transit-key --transit-mount --context --recovery" ;;
	net-check) echo "--timeout --resolve --exec" ;;
	esac
}

# _vault_luks_dequote WORD: a word as typed ('a b', "a b", a\ b, ~/x) as the shell would pass it.
_vault_luks_dequote() {
	local s=$1 out='' c
	case $s in
	\'*\' | \"*\") out=${s:1:${#s}-2} ;;
	*)
		while [[ -n $s ]]; do
			c=${s:0:1} s=${s:1}
			if [[ $c == \\ ]]; then
				c=${s:0:1} s=${s:1}
			fi
			out+=$c
		done
		;;
	esac
	[[ $out == \~/* ]] && out=$HOME/${out:2}
	printf '%s' "$out"
}

# _vault_luks_volumes PROGRAM CONFIG: the configured volumes' names, one a line; CONFIG empty
# for the program's default ($VAULT_LUKS_CONFIG, else /etc/vault-luks/config.json).
_vault_luks_volumes() {
	local prog=$1 line p
	local -a args=(--no-cmdline check)
	[[ -n $2 ]] && args=(--config "$2" "${args[@]}")
	# As typed, when it names a file; else from PATH, else where the package and
	# scripts/install.sh put it (sbin is not on every user's PATH).
	if [[ $prog != */* ]]; then
		prog=$(type -P -- "$prog") || prog=''
		for p in /usr/sbin/vault-luks /usr/local/sbin/vault-luks; do
			if [[ -z $prog && -x $p ]]; then prog=$p; fi
		done
	fi
	[[ -n $prog && -x $prog ]] || return 0
	"$prog" "${args[@]}" 2>/dev/null </dev/null | while IFS= read -r line; do
		[[ $line == 'volume '*:* ]] || continue
		line=${line#volume }
		printf '%s\n' "${line%%:*}"
	done
}

# _vault_luks_reply WORDS CUR [PREFIX]: COMPREPLY = the WORDS that start with CUR, each after
# PREFIX.
_vault_luks_reply() {
	local w IFS=$' \t\n'
	local -a list
	read -ra list <<<"$1"
	COMPREPLY=()
	for w in "${list[@]}"; do
		if [[ $w == "$2"* ]]; then COMPREPLY+=("${3-}$w"); fi
	done
}

# _vault_luks_files CUR [PREFIX]: file names.
_vault_luks_files() {
	local f
	COMPREPLY=()
	compopt -o filenames 2>/dev/null || :
	while IFS= read -r f; do
		COMPREPLY+=("${2-}$f")
	done < <(compgen -f -- "$1")
}

# _vault_luks_value OPTION CUR [PREFIX]: the values OPTION takes.
_vault_luks_value() {
	case $1 in
	-c | --config | --key-file | --ciphertext-file | --image | --device) _vault_luks_files "$2" "${3-}" ;;
	--log) _vault_luks_reply "stderr kmsg both" "$2" "${3-}" ;;
	--prompt) _vault_luks_reply "auto systemd askpass console" "$2" "${3-}" ;;
	*) COMPREPLY=() ;; # seconds, names, base64, a command: nothing to offer
	esac
}

_vault_luks() {
	local i word cur command='' config='' expect='' last=''
	local -a words=() names=()
	COMPREPLY=()

	# The words up to the cursor, with `--opt`, `=`, `value` (split at COMP_WORDBREAKS's `=`)
	# put together again as `--opt=value`.
	for ((i = 1; i <= COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]-}
		if ((${#words[@]})) && [[ $word == = && ${words[-1]} == --* && ${words[-1]} != *=* ]]; then
			words[-1]+='='
		elif ((${#words[@]})) && [[ ${COMP_WORDS[i - 1]} == = && ${words[-1]} == --*= ]]; then
			words[-1]+=$word
		else
			words+=("$word")
		fi
	done
	((${#words[@]})) || words=('')
	cur=${words[-1]}

	# What the words before it say: the command, the configuration, the names given, and
	# whether the word at the cursor is an option's value.
	for word in "${words[@]:0:${#words[@]}-1}"; do
		last=$word
		if [[ -n $expect ]]; then
			[[ $expect == -c || $expect == --config ]] && config=$(_vault_luks_dequote "$word")
			expect=''
			continue
		fi
		case $word in
		-c | --config | --log | --timeout | --device | --key-file | --ciphertext-file | \
			--transit-key | --transit-mount | --context | --resolve | --exec)
			expect=$word
			;;
		--config=*) config=$(_vault_luks_dequote "${word#--config=}") ;;
		-*) ;;
		*)
			if [[ -z $command ]]; then
				command=$word
			else
				names+=("$word")
			fi
			;;
		esac
	done

	if [[ -n $expect ]]; then
		_vault_luks_value "$expect" "$cur"
		return 0
	fi
	if [[ $cur == --*=* ]]; then
		# With `=` in COMP_WORDBREAKS readline replaces only what follows it.
		local prefix="${cur%%=*}="
		[[ $COMP_WORDBREAKS == *=* ]] && prefix=''
		_vault_luks_value "${cur%%=*}" "${cur#*=}" "$prefix"
		return 0
	fi
	if [[ $cur == -* ]]; then
		_vault_luks_reply "$(_vault_luks_flags "$command") $_vault_luks_options" "$cur"
		return 0
	fi
	if [[ $command == check && $last == --image ]]; then
		_vault_luks_files "$cur"
		return 0
	fi
	case $command in
	'') _vault_luks_reply "$_vault_luks_commands" "$cur" ;;
	help) ((${#names[@]})) || _vault_luks_reply "${_vault_luks_commands% help}" "$cur" ;;
	unlock | close | rewrap | rotate | keyscript | enroll)
		# rotate, keyscript and enroll take one NAME; the others any number, each once.
		case $command in rotate | keyscript | enroll) ((${#names[@]} == 0)) || return 0 ;; esac
		local volume
		local -a volumes=()
		while IFS= read -r volume; do
			[[ " ${names[*]} " == *" $volume "* ]] || volumes+=("$volume")
		done < <(_vault_luks_volumes "$1" "$config")
		_vault_luks_reply "${volumes[*]}" "$cur"
		;;
	esac
	return 0
}

# vault-luks-keyscript ignores its arguments (cryptroot passes the key file field; the volume
# is $CRYPTTAB_NAME): nothing to complete, not even file names.
_vault_luks_keyscript() {
	COMPREPLY=()
}

complete -F _vault_luks vault-luks
complete -F _vault_luks_keyscript vault-luks-keyscript
