//! The help texts: the overview (`vault-luks --help`) and one text per command
//! (`vault-luks help COMMAND`, `vault-luks COMMAND --help`). The README's "Command line"
//! section shows these texts verbatim; a test holds the two together.

/// Each command's help, by the name the command line uses, in the overview's order (the
/// hidden commands have none).
pub const TOPICS: &[(&str, &str)] = &[
    ("unlock", UNLOCK),
    ("close", CLOSE),
    ("status", STATUS),
    ("check", CHECK),
    ("keyscript", KEYSCRIPT),
    ("enroll", ENROLL),
    ("rewrap", REWRAP),
    ("rotate", ROTATE),
    ("net-check", NET_CHECK),
];

/// The help of `command`, if it has one.
pub fn topic(command: &str) -> Option<&'static str> {
    TOPICS.iter().find(|t| t.0 == command).map(|t| t.1)
}

pub const OVERVIEW: &str = "\
vault-luks: unlock LUKS volumes with keys wrapped by Vault (or OpenBao) transit

USAGE:
    vault-luks [OPTIONS] unlock [--timeout SECONDS] [--prompt[=HOW] | --no-prompt] [--late] [NAME...]
    vault-luks [OPTIONS] close [--force] [NAME...]
    vault-luks [OPTIONS] status [--json] [--check-vault]
    vault-luks [OPTIONS] check [--files | --image [PATH]]
    vault-luks [OPTIONS] keyscript [NAME]      (or run as vault-luks-keyscript)
    vault-luks [OPTIONS] enroll NAME --device DEV [--format [--force]] [--key-file FILE]
                         [--ciphertext-file FILE] [--transit-key KEY] [--transit-mount MOUNT]
                         [--context BASE64] [--recovery]
    vault-luks [OPTIONS] rewrap [NAME...]
    vault-luks [OPTIONS] rotate NAME
    vault-luks [OPTIONS] net-check [--timeout SECONDS] [--resolve NAME] [--exec COMMAND]
    vault-luks help [COMMAND]

COMMANDS:
    unlock    Log into Vault, decrypt each volume's key with transit and open it with
              cryptsetup; --prompt also asks for a passphrase when Vault fails or is slow
    close     Unmount what is mounted from each volume, then close its mapping
    status    Show each volume: device, keyslot and token, mapping, mounts, key version
    check     Validate the configuration and print the resolved settings; --image proves an
              initramfs can unlock
    keyscript For crypttab's keyscript= (cryptroot): print a volume's key to stdout
    enroll    Give a volume a new random key of Vault's, in a keyslot of its own
    rewrap    Rewrap each ciphertext to the transit key's latest version
    rotate    Replace a volume's key with a new one, in a crash-safe order
    net-check Bring the network up as an unlock would, report, and remove it again
    help      Show this help, or a command's

OPTIONS:
    -c, --config PATH   Configuration file [default: $VAULT_LUKS_CONFIG, else
                        /etc/vault-luks/config.json]
        --log TARGET    Where log lines go: stderr, kmsg (kernel log), both (kmsg, and
                        stderr too unless stderr is the console the kernel prints the line
                        on: one line per event there) [default: stderr]
        --debug         More log lines
        --no-cmdline    Ignore rd.vault-luks.* options on the kernel command line
    -h, --help          Show this help (after a command: that command's)
    -V, --version       Show the version

ENVIRONMENT (BAO_* is read before VAULT_*; both override the file):
    VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE,
    VAULT_TLS_SERVER_NAME, VAULT_TOKEN (used instead of logging in; never revoked)

KERNEL COMMAND LINE (override the file and the environment):
    rd.vault-luks=0                 do not unlock on this boot (unlock exits 0, does nothing)
    rd.vault-luks=prompt            do not ask Vault on this boot: the passphrase prompt at once
    rd.vault-luks.address=URL[,URL] Vault address(es)
    rd.vault-luks.timeout=SECONDS   unlock deadline
    rd.vault-luks.prompt-timeout=SECONDS  how long the prompt stays up (0: no prompt)
    rd.vault-luks.network=off|auto  network.mode for this boot
    rd.vault-luks.debug             more log lines

EXIT CODES:
    0  success (or nothing to do)
    1  a volume could not be unlocked or closed; status --check-vault or check --image
       found a problem
    2  usage error or invalid configuration

`vault-luks help COMMAND` (or `vault-luks COMMAND --help`) for a command's flags.
";

const UNLOCK: &str = "\
USAGE:
    vault-luks [OPTIONS] unlock [--timeout SECONDS] [--prompt[=HOW] | --no-prompt] [--late] [NAME...]

Log into Vault, decrypt each volume's key with transit and open it with cryptsetup: all
configured volumes, or the NAMEs given. A volume already open is success, left alone, with
no network. Volumes fail on their own: one that cannot be opened keeps no other locked.

FLAGS:
    --timeout SECONDS   The deadline of the whole unlock (metadata, login, decrypt, retries),
                        at most 3600 [default: timeouts.unlock, or rd.vault-luks.timeout]
    --prompt[=HOW]      When Vault fails or is slow, also ask for a passphrase (any keyslot's)
                        while Vault is retried; the first to arrive opens the volume. HOW: auto
                        (default), systemd (systemd-ask-password), askpass (cryptroot's,
                        /lib/cryptsetup/askpass), console. The default on a terminal;
                        $VAULT_LUKS_ASKPASS names a program to ask instead. Never with
                        timeouts.prompt = 0.
    --no-prompt         Never ask for a passphrase, not even on a terminal
    --late              The real root's second chance (vault-luks-late.service): only when
                        vault-luks did not run to its end in the initramfs (an image without
                        it, no initramfs, a crash), and saying so; volumes open already are
                        left alone, with no login.
";

const CLOSE: &str = "\
USAGE:
    vault-luks [OPTIONS] close [--force] [NAME...]

The article's `stop`: unmount what is mounted from each volume (all configured volumes, or
the NAMEs given), then close its mapping. A volume that is not open is success.

FLAGS:
    --force             Close a volume whose mount is busy (what uses it: fuser -vm MOUNT):
                        a lazy unmount, and a deferred close that completes when the last
                        user goes. Without it a busy mount is refused.
";

const STATUS: &str = "\
USAGE:
    vault-luks [OPTIONS] status [--json] [--check-vault]

Show each volume: device present, LUKS version, vault-luks's keyslot and token, the other
keyslots, mapping open, mount points, ciphertext readable, transit key and key version.

FLAGS:
    --json              The same as JSON, for scripts
    --check-vault       Also have Vault decrypt each key and test it against the header
                        (cryptsetup open --test-passphrase), opening nothing; exit 1 if a
                        check fails
";

const CHECK: &str = "\
USAGE:
    vault-luks [OPTIONS] check [--files | --image [PATH]]

Validate the configuration and print the resolved settings (file, environment and kernel
command line), never a secret.

FLAGS:
    --files             Print only the files the configuration needs (ciphertexts, CA bundle,
                        client certificate), one per line, for the initramfs builders
    --image [PATH]      Check an initramfs (default: the running kernel's,
                        /boot/initrd.img-VERSION) for everything the unlock needs at boot:
                        vault-luks and what runs it, the configuration and its files (the
                        same as in /etc), cryptsetup, libgcc_s.so.1, the dm-crypt and cipher
                        modules, this machine's NIC driver. Exit 1 when a piece is missing,
                        named with what brings it. The install runs it after every rebuild
                        of the initramfs.
";

const KEYSCRIPT: &str = "\
USAGE:
    vault-luks [OPTIONS] keyscript [NAME]      (or run as vault-luks-keyscript)

For crypttab's keyscript= (cryptroot): print the key of volume NAME (default:
$CRYPTTAB_NAME) to stdout, for cryptroot to pipe into cryptsetup. Installed as
vault-luks-keyscript (a link to vault-luks), it needs no arguments and logs with --log both.
cryptroot gives a keyscript no passphrase fallback: it retries it, then gives up.

FLAGS: none
";

const ENROLL: &str = "\
USAGE:
    vault-luks [OPTIONS] enroll NAME --device DEV [--format [--force]] [--key-file FILE]
                         [--ciphertext-file FILE] [--transit-key KEY] [--transit-mount MOUNT]
                         [--context BASE64] [--recovery]

Give volume NAME a key of Vault's: a new random key (24 bytes, base64, as the article),
wrapped by transit, checked to decrypt back, written to the ciphertext file (mode 0600),
given a PBKDF2 keyslot of its own, stored in a LUKS2 token too, and added to the
configuration.

FLAGS:
    --device DEV        The volume's block device (required)
    --format            Make DEV a new LUKS2 volume, with Vault's key only; refused on a
                        device with a LUKS header or a file system. Without it the keyslot
                        is added beside the existing passphrases, authorised by one.
    --force             Format anyway, and replace an existing ciphertext file
    --key-file FILE     The existing passphrase that authorises the new keyslot [default:
                        cryptsetup asks for one]
    --ciphertext-file FILE
                        Where the wrapped key goes [default: /etc/vault-luks/NAME.passphrase]
    --transit-key KEY   The transit key that wraps it [default: luks]
    --transit-mount MOUNT
                        Where transit is mounted [default: transit]
    --context BASE64    The transit context, for a derived key
    --recovery          Also add an argon2id recovery passphrase (abcd-efgh-..., 160 bits)
                        and print it once, on stdout: store it offline
";

const REWRAP: &str = "\
USAGE:
    vault-luks [OPTIONS] rewrap [NAME...]

After the transit key is rotated (transit/keys/KEY/rotate): have Vault rewrap each
ciphertext (all configured volumes, or the NAMEs given) to the key's latest version, the
plaintext never leaving Vault; write the file atomically, then update the token, reporting
the versions before and after. The policy needs update on transit/rewrap/KEY.

FLAGS: none
";

const ROTATE: &str = "\
USAGE:
    vault-luks [OPTIONS] rotate NAME

Replace the key of volume NAME: a new key in a new keyslot, its ciphertext stored, the old
keyslot removed, in an order where a crash at any point leaves the volume openable by Vault.
Recovery keyslots are kept.

FLAGS: none
";

const NET_CHECK: &str = "\
USAGE:
    vault-luks [OPTIONS] net-check [--timeout SECONDS] [--resolve NAME] [--exec COMMAND]

Bring the network up as an unlock would when nothing else has (link, DHCP or a static
address, routes, resolv.conf), print what was done as JSON, resolve NAME, run COMMAND, then
remove exactly what was added. For trying the network settings from a rescue shell without
unlocking anything; does nothing when routes to the metadata server and Vault exist.

FLAGS:
    --timeout SECONDS   The deadline, at most 3600 [default: timeouts.unlock]
    --resolve NAME      Resolve NAME as the HTTP client would, and print its addresses
    --exec COMMAND      Run COMMAND (sh -c) while the network is up
";
