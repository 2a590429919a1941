//! The command line: subcommands, flags, help text. Hand-written: a dozen flags do not need a
//! parser crate in an initramfs binary.

use crate::error::{Error, Result};
use crate::log::Target;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
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

COMMANDS:
    unlock    Log into Vault, decrypt each volume's key with transit and open it with
              cryptsetup (all configured volumes, or the NAMEs given). Volumes already open
              are left alone. --prompt: when Vault fails or is slow, also ask for a
              passphrase (any keyslot's) while Vault is retried; the first to arrive opens
              the volume. HOW: auto (default), systemd (systemd-ask-password), askpass
              (cryptroot's, /lib/cryptsetup/askpass), console. On a terminal --prompt is the
              default; $VAULT_LUKS_ASKPASS names a program to ask instead. --late: the
              real root's second chance (vault-luks-late.service): only when vault-luks did
              not run to its end in the initramfs (an image without it, no initramfs, a
              crash), and saying so; volumes open already are left alone, with no login.
    close     Unmount what is mounted from each volume (or the NAMEs given), then close its
              mapping. A busy mount is refused unless --force (lazy unmount, deferred close).
    status    Show each volume: device, LUKS version, vault-luks's keyslot and token, mapping,
              mount points, ciphertext and key version. --check-vault also has Vault decrypt
              each key and tests it against the header, opening nothing (exit 1 if one fails).
    check     Validate the configuration and print the resolved settings (never a secret).
              --files prints only the files the configuration refers to, one per line.
              --image checks an initramfs (default: the running kernel's) for everything the
              unlock needs at boot: vault-luks and what runs it, the configuration and its
              files (the same as in /etc), cryptsetup, libgcc_s.so.1, the dm-crypt and cipher
              modules, this machine's NIC driver. Exit 1 when a piece is missing, named with
              what brings it. The install runs it after every rebuild of the initramfs.
    enroll    A new random key (24 bytes, base64, as the article), wrapped by transit into
              FILE (default /etc/vault-luks/NAME.passphrase, mode 0600), given a PBKDF2
              keyslot of its own: on a new LUKS2 volume (--format; refused on a device with
              a LUKS header or a file system unless --force), or beside the existing
              passphrases (authorised by one: prompt, or --key-file). Stored in a LUKS2 token
              too, and added to the configuration. --recovery adds an argon2id recovery
              passphrase and prints it once.
    rewrap    After transit/keys/KEY/rotate: rewrap each ciphertext to the latest key version
              (file and token), reporting the versions before and after.
    rotate    A new key in a new keyslot, its ciphertext stored, the old keyslot removed, in
              an order where a crash at any point leaves the volume openable by Vault.
    keyscript For crypttab's keyscript= (cryptroot): print the key of volume NAME (default:
              $CRYPTTAB_NAME) to stdout, for cryptroot to pipe into cryptsetup. Installed as
              vault-luks-keyscript (a link to vault-luks), it needs no arguments.
    net-check Bring the network up as an unlock would when nothing else has (link, DHCP or
              a static address, routes, resolv.conf), print what was done as JSON, resolve
              NAME, run COMMAND (sh -c), then remove exactly what was added. For testing the
              network settings; does nothing when routes to the metadata server and Vault exist.

OPTIONS:
    -c, --config PATH   Configuration file [default: $VAULT_LUKS_CONFIG, else
                        /etc/vault-luks/config.json]
        --log TARGET    Where log lines go: stderr, kmsg (kernel log), both [default: stderr]
        --debug         More log lines
        --no-cmdline    Ignore rd.vault-luks.* options on the kernel command line
    -h, --help          Show this help
    -V, --version       Show the version

ENVIRONMENT (BAO_* is read before VAULT_*; both override the file):
    VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE,
    VAULT_TLS_SERVER_NAME, VAULT_TOKEN (used instead of logging in; never revoked)

KERNEL COMMAND LINE (override the file and the environment):
    rd.vault-luks=0                 do not unlock on this boot (unlock exits 0, does nothing)
    rd.vault-luks.address=URL[,URL] Vault address(es)
    rd.vault-luks.timeout=SECONDS   unlock deadline
    rd.vault-luks.debug             more log lines

EXIT CODES:
    0  success (or nothing to do)
    1  a volume could not be unlocked or closed
    2  usage error or invalid configuration
";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Unlock {
        names: Vec<String>,
        timeout: Option<Duration>,
        prompt: PromptArg,
        /// The real root's second chance (see `late.rs`).
        late: bool,
    },
    /// Hidden: our own console prompt, run as a child of `unlock` (see prompt.rs).
    AskConsole {
        message: String,
    },
    Close {
        names: Vec<String>,
        force: bool,
    },
    Status {
        json: bool,
        check_vault: bool,
    },
    Check {
        files_only: bool,
    },
    /// `check --image [PATH]`: None is the running kernel's image.
    CheckImage {
        path: Option<PathBuf>,
    },
    Keyscript {
        name: Option<String>,
    },
    Enroll(crate::lifecycle::enroll::Options),
    Rewrap {
        names: Vec<String>,
    },
    Rotate {
        name: String,
    },
    NetCheck {
        timeout: Option<Duration>,
        resolve: Option<String>,
        exec: Option<String>,
    },
    Help,
    Version,
}

/// `--prompt[=HOW]` / `--no-prompt`, or neither (then: prompt when stdin is a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptArg {
    Default,
    Never,
    Ask(crate::prompt::Choice),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    pub command: Command,
    pub config: PathBuf,
    pub log: Target,
    pub debug: bool,
    pub use_cmdline: bool,
}

pub fn parse(args: &[String]) -> Result<Cli> {
    let mut config = default_config();
    let mut log = Target::Stderr;
    let mut debug = false;
    let mut use_cmdline = true;
    let mut command: Option<String> = None;
    let mut names: Vec<String> = Vec::new();
    let mut json = false;
    let mut check_vault = false;
    let mut files_only = false;
    let mut image = false;
    let mut late = false;
    let mut timeout = None;
    let mut prompt = PromptArg::Default;
    // enroll's options
    let mut device: Option<PathBuf> = None;
    let (mut format, mut force, mut recovery) = (false, false, false);
    let mut key_file: Option<PathBuf> = None;
    let mut ciphertext_file: Option<PathBuf> = None;
    let mut transit_key: Option<String> = None;
    let mut transit_mount: Option<String> = None;
    let mut context: Option<String> = None;
    // net-check's options
    let mut resolve: Option<String> = None;
    let mut exec: Option<String> = None;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| Error::Usage(format!("{name} needs a value")))
        };
        match flag {
            "-h" | "--help" => return Ok(simple(Command::Help)),
            "-V" | "--version" => return Ok(simple(Command::Version)),
            "-c" | "--config" => config = PathBuf::from(value("--config")?),
            "--log" => {
                let v = value("--log")?;
                log = Target::parse(&v).ok_or_else(|| {
                    Error::Usage(format!("--log: `{v}` is not stderr, kmsg or both"))
                })?;
            }
            "--debug" => debug = true,
            "--no-prompt" => prompt = PromptArg::Never,
            "--prompt" => {
                let how = inline.as_deref().unwrap_or("auto");
                prompt = PromptArg::Ask(crate::prompt::Choice::parse(how).ok_or_else(|| {
                    Error::Usage(format!(
                        "--prompt={how}: expected auto, systemd, askpass or console"
                    ))
                })?);
            }
            "--no-cmdline" => use_cmdline = false,
            "--json" => json = true,
            "--check-vault" => check_vault = true,
            "--files" => files_only = true,
            "--image" => {
                image = true;
                names.extend(inline.clone());
            }
            "--late" => late = true,
            "--device" => device = Some(PathBuf::from(value("--device")?)),
            "--format" => format = true,
            "--force" => force = true,
            "--recovery" => recovery = true,
            "--key-file" => key_file = Some(PathBuf::from(value("--key-file")?)),
            "--ciphertext-file" => {
                ciphertext_file = Some(PathBuf::from(value("--ciphertext-file")?))
            }
            "--transit-key" => transit_key = Some(value("--transit-key")?),
            "--transit-mount" => transit_mount = Some(value("--transit-mount")?),
            "--context" => context = Some(value("--context")?),
            "--resolve" => resolve = Some(value("--resolve")?),
            "--exec" => exec = Some(value("--exec")?),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs = crate::config::parse_seconds_text(&v).ok_or_else(|| {
                    Error::Usage(format!("--timeout: `{v}` is not a number of seconds"))
                })?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err(Error::Usage(
                        "--timeout must be between 0 and 3600 seconds".into(),
                    ));
                }
                timeout = Some(Duration::from_secs_f64(secs));
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(Error::Usage(format!("unknown option `{f}`")))
            }
            word if command.is_none() => command = Some(word.to_string()),
            word => names.push(word.to_string()),
        }
    }

    let command = match command.as_deref() {
        None => {
            return Err(Error::Usage(
                "no command given: unlock, close, status or check".into(),
            ))
        }
        Some("unlock") => Command::Unlock {
            names,
            timeout,
            prompt,
            late: std::mem::take(&mut late),
        },
        Some("ask-console") if names.len() == 1 => Command::AskConsole {
            message: names.remove(0),
        },
        Some("close") => Command::Close {
            names,
            force: std::mem::take(&mut force),
        },
        Some("status") => no_names(Command::Status { json, check_vault }, &names)?,
        Some("check") if image && !files_only && names.len() <= 1 => Command::CheckImage {
            path: names.pop().map(PathBuf::from),
        },
        Some("check") if image => {
            return Err(Error::Usage(
                "check --image takes at most one image, and not --files".into(),
            ))
        }
        Some("check") => no_names(Command::Check { files_only }, &names)?,
        Some("keyscript") if names.len() <= 1 => Command::Keyscript { name: names.pop() },
        Some("keyscript") => {
            return Err(Error::Usage(
                "keyscript takes at most one volume name".into(),
            ))
        }
        Some("enroll") => {
            let name = match names.as_slice() {
                [n] => n.clone(),
                _ => return Err(Error::Usage("enroll takes one volume name".into())),
            };
            let device = device
                .take()
                .ok_or_else(|| Error::Usage("enroll needs --device".into()))?;
            Command::Enroll(crate::lifecycle::enroll::Options {
                name,
                device,
                format,
                force,
                key_file: key_file.take(),
                ciphertext_file: ciphertext_file.take(),
                transit: crate::config::Transit {
                    mount: transit_mount
                        .take()
                        .unwrap_or_else(|| crate::config::DEFAULT_TRANSIT_MOUNT.to_string()),
                    key: transit_key.take().unwrap_or_else(|| "luks".to_string()),
                    context: context.take(),
                },
                recovery,
            })
        }
        Some("rewrap") => Command::Rewrap { names },
        Some("rotate") => match names.as_slice() {
            [n] => Command::Rotate { name: n.clone() },
            _ => return Err(Error::Usage("rotate takes one volume name".into())),
        },
        Some("net-check") => no_names(
            Command::NetCheck {
                timeout: timeout.take(),
                resolve: resolve.take(),
                exec: exec.take(),
            },
            &names,
        )?,
        Some("help") => Command::Help,
        Some(other) => return Err(Error::Usage(format!("unknown command `{other}`"))),
    };
    let only_for = |flag: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "{flag} does not apply to this command"
            )))
        }
    };
    only_for("--json", !json || matches!(command, Command::Status { .. }))?;
    only_for(
        "--check-vault",
        !check_vault || matches!(command, Command::Status { .. }),
    )?;
    only_for(
        "--files",
        !files_only || matches!(command, Command::Check { .. }),
    )?;
    only_for(
        "--timeout",
        timeout.is_none() || matches!(command, Command::Unlock { .. }),
    )?;
    only_for(
        "--image",
        !image || matches!(command, Command::CheckImage { .. }),
    )?;
    only_for("--late", !late)?;
    only_for("--resolve", resolve.is_none())?;
    only_for("--exec", exec.is_none())?;
    only_for(
        "--prompt",
        prompt == PromptArg::Default || matches!(command, Command::Unlock { .. }),
    )?;
    Ok(Cli {
        command,
        config,
        log,
        debug,
        use_cmdline,
    })
}

fn simple(command: Command) -> Cli {
    Cli {
        command,
        config: default_config(),
        log: Target::Stderr,
        debug: false,
        use_cmdline: true,
    }
}

/// VAULT_LUKS_CONFIG, else /etc/vault-luks/config.json. The variable is how the keyscript
/// link (which gets no options from cryptroot) and the initramfs hooks find another file.
fn default_config() -> PathBuf {
    std::env::var_os("VAULT_LUKS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
}

fn no_names(c: Command, names: &[String]) -> Result<Command> {
    match names.first() {
        None => Ok(c),
        Some(n) => Err(Error::Usage(format!("unexpected argument `{n}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn unlock_with_names_and_options_anywhere() {
        let c = p(&[
            "--config",
            "/tmp/c.json",
            "unlock",
            "luks",
            "--log=kmsg",
            "data",
            "--timeout",
            "30",
        ])
        .unwrap();
        assert_eq!(c.config, PathBuf::from("/tmp/c.json"));
        assert_eq!(c.log, Target::Kmsg);
        assert_eq!(
            c.command,
            Command::Unlock {
                names: vec!["luks".into(), "data".into()],
                timeout: Some(Duration::from_secs(30)),
                prompt: PromptArg::Default,
                late: false,
            }
        );
    }

    #[test]
    fn defaults() {
        let c = p(&["status"]).unwrap();
        assert_eq!(c.config, PathBuf::from("/etc/vault-luks/config.json"));
        assert_eq!(
            c.command,
            Command::Status {
                json: false,
                check_vault: false
            }
        );
        assert!(c.use_cmdline);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let msg = |a: &[&str]| p(a).unwrap_err().to_string();
        assert!(msg(&[]).contains("no command given"));
        assert!(msg(&["open"]).contains("unknown command `open`"));
        assert!(msg(&["unlock", "--bogus"]).contains("unknown option `--bogus`"));
        assert!(msg(&["unlock", "--config"]).contains("--config needs a value"));
        assert!(msg(&["unlock", "--json"]).contains("--json does not apply"));
        assert!(msg(&["status", "luks"]).contains("unexpected argument `luks`"));
        assert!(msg(&["unlock", "--timeout", "0"]).contains("between 0 and 3600"));
        assert!(msg(&["unlock", "--log", "syslog"]).contains("not stderr, kmsg or both"));
        assert_eq!(p(&["x"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn keyscript_takes_an_optional_name() {
        assert_eq!(
            p(&["keyscript"]).unwrap().command,
            Command::Keyscript { name: None }
        );
        assert_eq!(
            p(&["keyscript", "luks"]).unwrap().command,
            Command::Keyscript {
                name: Some("luks".into())
            }
        );
        assert!(p(&["keyscript", "a", "b"]).is_err());
    }

    #[test]
    fn net_check_takes_its_own_options_only() {
        assert_eq!(
            p(&[
                "net-check",
                "--timeout",
                "5",
                "--resolve",
                "vault.test",
                "--exec=true"
            ])
            .unwrap()
            .command,
            Command::NetCheck {
                timeout: Some(Duration::from_secs(5)),
                resolve: Some("vault.test".into()),
                exec: Some("true".into())
            }
        );
        assert!(p(&["unlock", "--resolve", "x"]).is_err());
        assert!(p(&["status", "--exec", "x"]).is_err());
        assert!(p(&["net-check", "eth0"]).is_err());
    }

    #[test]
    fn check_image_takes_an_optional_path() {
        assert_eq!(
            p(&["check", "--image"]).unwrap().command,
            Command::CheckImage { path: None }
        );
        let with_path = Command::CheckImage {
            path: Some(PathBuf::from("/boot/initrd.img-6.12")),
        };
        assert_eq!(
            p(&["check", "--image", "/boot/initrd.img-6.12"])
                .unwrap()
                .command,
            with_path
        );
        assert_eq!(
            p(&["check", "--image=/boot/initrd.img-6.12"])
                .unwrap()
                .command,
            with_path
        );
        assert!(p(&["check", "--image", "a", "b"]).is_err());
        assert!(p(&["check", "--image", "--files"]).is_err());
        assert!(p(&["status", "--image"]).is_err());
    }

    #[test]
    fn late_is_for_unlock_only() {
        match p(&["unlock", "--late", "--prompt"]).unwrap().command {
            Command::Unlock { late, .. } => assert!(late),
            other => panic!("{other:?}"),
        }
        assert!(p(&["close", "--late"])
            .unwrap_err()
            .to_string()
            .contains("--late does not apply"));
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(p(&["unlock", "--help"]).unwrap().command, Command::Help);
        assert_eq!(p(&["-V"]).unwrap().command, Command::Version);
    }
}
