//! The command line: subcommands, flags, help text. Hand-written: a dozen flags do not need a
//! parser crate in an initramfs binary.

use crate::error::{Error, Result};
use crate::log::Target;
use std::mem::take;
use std::path::PathBuf;
use std::time::Duration;

mod help;
#[cfg(test)]
mod man_pages;
pub use help::OVERVIEW as HELP;

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
    /// The text to print: the overview, or one command's.
    Help(&'static str),
    Version,
}

/// `--prompt[=HOW]` / `--no-prompt`, or neither (then: prompt when stdin is a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptArg {
    #[default]
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

/// Everything the command line says besides the global options, before it is checked
/// against the command: each `parse_COMMAND` takes what its command uses, and
/// `reject_unused` refuses what is left over.
#[derive(Default)]
struct Words {
    command: Option<String>,
    names: Vec<String>,
    json: bool,
    check_vault: bool,
    files_only: bool,
    image: bool,
    late: bool,
    timeout: Option<Duration>,
    prompt: PromptArg,
    // enroll's
    device: Option<PathBuf>,
    format: bool,
    force: bool,
    recovery: bool,
    key_file: Option<PathBuf>,
    ciphertext_file: Option<PathBuf>,
    transit_key: Option<String>,
    transit_mount: Option<String>,
    context: Option<String>,
    // net-check's
    resolve: Option<String>,
    exec: Option<String>,
}

/// A flag's value: after `=`, else the next argument.
type Value<'a> = dyn FnMut(&str) -> Result<String> + 'a;

/// The global options, then the command's words, then the command that takes them, then
/// what none took.
pub fn parse(args: &[String]) -> Result<Cli> {
    // Its command is decided once all words are read.
    let mut cli = simple(Command::Help(HELP));
    let mut words = Words::default();
    if let Some(help_or_version) = scan(args, &mut cli, &mut words)? {
        return Ok(simple(help_or_version));
    }
    cli.command = parse_command(&mut words)?;
    reject_unused(&words)?;
    Ok(cli)
}

/// Sorts the arguments into the global options (into `cli`) and the command's words; options
/// may stand anywhere. Help and version win: they end the scan.
fn scan(args: &[String], cli: &mut Cli, words: &mut Words) -> Result<Option<Command>> {
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
            "-h" | "--help" => {
                let command = words.command.as_deref().and_then(help::topic);
                return Ok(Some(Command::Help(command.unwrap_or(HELP))));
            }
            "-V" | "--version" => return Ok(Some(Command::Version)),
            _ if global_option(cli, flag, &mut value)? => {}
            _ if words.command_flag(flag, inline.as_deref(), &mut value)? => {}
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(Error::Usage(format!("unknown option `{f}`")))
            }
            word if words.command.is_none() => words.command = Some(word.to_string()),
            word => words.names.push(word.to_string()),
        }
    }
    Ok(None)
}

/// `--config`, `--log`, `--debug`, `--no-cmdline`: whether `flag` is one of them.
fn global_option(cli: &mut Cli, flag: &str, value: &mut Value) -> Result<bool> {
    match flag {
        "-c" | "--config" => cli.config = PathBuf::from(value("--config")?),
        "--log" => {
            let v = value("--log")?;
            cli.log = Target::parse(&v)
                .ok_or_else(|| Error::Usage(format!("--log: `{v}` is not stderr, kmsg or both")))?;
        }
        "--debug" => cli.debug = true,
        "--no-cmdline" => cli.use_cmdline = false,
        _ => return Ok(false),
    }
    Ok(true)
}

impl Words {
    /// Records a command's flag; whether `flag` is one.
    fn command_flag(
        &mut self,
        flag: &str,
        inline: Option<&str>,
        value: &mut Value,
    ) -> Result<bool> {
        match flag {
            "--no-prompt" => self.prompt = PromptArg::Never,
            "--prompt" => self.prompt = prompt_arg(inline.unwrap_or("auto"))?,
            "--json" => self.json = true,
            "--check-vault" => self.check_vault = true,
            "--files" => self.files_only = true,
            "--image" => {
                self.image = true;
                self.names.extend(inline.map(str::to_string));
            }
            "--late" => self.late = true,
            "--timeout" => self.timeout = Some(timeout(&value("--timeout")?)?),
            "--device" => self.device = Some(PathBuf::from(value("--device")?)),
            "--format" => self.format = true,
            "--force" => self.force = true,
            "--recovery" => self.recovery = true,
            "--key-file" => self.key_file = Some(PathBuf::from(value("--key-file")?)),
            "--ciphertext-file" => {
                self.ciphertext_file = Some(PathBuf::from(value("--ciphertext-file")?))
            }
            "--transit-key" => self.transit_key = Some(value("--transit-key")?),
            "--transit-mount" => self.transit_mount = Some(value("--transit-mount")?),
            "--context" => self.context = Some(value("--context")?),
            "--resolve" => self.resolve = Some(value("--resolve")?),
            "--exec" => self.exec = Some(value("--exec")?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn prompt_arg(how: &str) -> Result<PromptArg> {
    crate::prompt::Choice::parse(how)
        .map(PromptArg::Ask)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--prompt={how}: expected auto, systemd, askpass or console"
            ))
        })
}

fn timeout(v: &str) -> Result<Duration> {
    let secs = crate::config::parse_seconds_text(v)
        .ok_or_else(|| Error::Usage(format!("--timeout: `{v}` is not a number of seconds")))?;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(Error::Usage(
            "--timeout must be between 0 and 3600 seconds".into(),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_command(w: &mut Words) -> Result<Command> {
    match w.command.as_deref() {
        None => {
            let commands: Vec<&str> = help::TOPICS.iter().map(|t| t.0).collect();
            Err(Error::Usage(format!(
                "no command given: {} (vault-luks --help)",
                commands.join(", ")
            )))
        }
        Some("unlock") => Ok(parse_unlock(w)),
        Some("ask-console") if w.names.len() == 1 => Ok(Command::AskConsole {
            message: w.names.remove(0),
        }),
        Some("close") => Ok(Command::Close {
            names: take(&mut w.names),
            force: take(&mut w.force),
        }),
        Some("status") => parse_status(w),
        Some("check") => parse_check(w),
        Some("keyscript") => parse_keyscript(w),
        Some("enroll") => parse_enroll(w),
        Some("rewrap") => Ok(Command::Rewrap {
            names: take(&mut w.names),
        }),
        Some("rotate") => parse_rotate(w),
        Some("net-check") => parse_net_check(w),
        Some("help") => parse_help(w),
        Some(other) => Err(Error::Usage(format!("unknown command `{other}`"))),
    }
}

fn parse_unlock(w: &mut Words) -> Command {
    Command::Unlock {
        names: take(&mut w.names),
        timeout: w.timeout.take(),
        prompt: take(&mut w.prompt),
        late: take(&mut w.late),
    }
}

fn parse_status(w: &mut Words) -> Result<Command> {
    no_names(w)?;
    Ok(Command::Status {
        json: take(&mut w.json),
        check_vault: take(&mut w.check_vault),
    })
}

fn parse_check(w: &mut Words) -> Result<Command> {
    if !take(&mut w.image) {
        no_names(w)?;
        return Ok(Command::Check {
            files_only: take(&mut w.files_only),
        });
    }
    if w.files_only || w.names.len() > 1 {
        return Err(Error::Usage(
            "check --image takes at most one image, and not --files".into(),
        ));
    }
    Ok(Command::CheckImage {
        path: w.names.pop().map(PathBuf::from),
    })
}

fn parse_keyscript(w: &mut Words) -> Result<Command> {
    if w.names.len() > 1 {
        return Err(Error::Usage(
            "keyscript takes at most one volume name".into(),
        ));
    }
    Ok(Command::Keyscript {
        name: w.names.pop(),
    })
}

fn parse_enroll(w: &mut Words) -> Result<Command> {
    let name = one_name(w, "enroll takes one volume name")?;
    let device = w
        .device
        .take()
        .ok_or_else(|| Error::Usage("enroll needs --device".into()))?;
    Ok(Command::Enroll(crate::lifecycle::enroll::Options {
        name,
        device,
        format: take(&mut w.format),
        force: take(&mut w.force),
        key_file: w.key_file.take(),
        ciphertext_file: w.ciphertext_file.take(),
        transit: crate::config::Transit {
            mount: w
                .transit_mount
                .take()
                .unwrap_or_else(|| crate::config::DEFAULT_TRANSIT_MOUNT.to_string()),
            key: w.transit_key.take().unwrap_or_else(|| "luks".to_string()),
            context: w.context.take(),
        },
        recovery: take(&mut w.recovery),
    }))
}

fn parse_rotate(w: &mut Words) -> Result<Command> {
    let name = one_name(w, "rotate takes one volume name")?;
    Ok(Command::Rotate { name })
}

fn parse_net_check(w: &mut Words) -> Result<Command> {
    no_names(w)?;
    Ok(Command::NetCheck {
        timeout: w.timeout.take(),
        resolve: w.resolve.take(),
        exec: w.exec.take(),
    })
}

/// `help [COMMAND]`: an unknown COMMAND is a usage error that names the known ones.
fn parse_help(w: &mut Words) -> Result<Command> {
    let text = match w.names.as_slice() {
        [] => HELP,
        [command] => help::topic(command).ok_or_else(|| {
            let known: Vec<&str> = help::TOPICS.iter().map(|t| t.0).collect();
            Error::Usage(format!(
                "help: unknown command `{command}`; the commands are {}",
                known.join(", ")
            ))
        })?,
        _ => return Err(Error::Usage("help takes one command".into())),
    };
    Ok(Command::Help(text))
}

/// A command flag that its command did not take is an error: `unlock --format` must not look
/// as if it did something. (Each command's parser takes what it uses out of `Words`.)
fn reject_unused(w: &Words) -> Result<()> {
    let unused = [
        ("--json", w.json),
        ("--check-vault", w.check_vault),
        ("--files", w.files_only),
        ("--timeout", w.timeout.is_some()),
        ("--image", w.image),
        ("--late", w.late),
        ("--resolve", w.resolve.is_some()),
        ("--exec", w.exec.is_some()),
        ("--prompt", w.prompt != PromptArg::Default),
        ("--device", w.device.is_some()),
        ("--format", w.format),
        ("--force", w.force),
        ("--recovery", w.recovery),
        ("--key-file", w.key_file.is_some()),
        ("--ciphertext-file", w.ciphertext_file.is_some()),
        ("--transit-key", w.transit_key.is_some()),
        ("--transit-mount", w.transit_mount.is_some()),
        ("--context", w.context.is_some()),
    ];
    match unused.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(Error::Usage(format!(
            "{flag} does not apply to this command"
        ))),
        None => Ok(()),
    }
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

fn no_names(w: &Words) -> Result<()> {
    match w.names.first() {
        None => Ok(()),
        Some(n) => Err(Error::Usage(format!("unexpected argument `{n}`"))),
    }
}

fn one_name(w: &mut Words, usage: &str) -> Result<String> {
    match w.names.as_mut_slice() {
        [n] => Ok(take(n)),
        _ => Err(Error::Usage(usage.into())),
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
        // enroll's flags and --force belong to their commands only.
        assert!(msg(&["unlock", "--format"]).contains("--format does not apply"));
        assert!(msg(&["status", "--force"]).contains("--force does not apply"));
        assert!(msg(&["rotate", "luks", "--device", "/dev/x"]).contains("--device does not apply"));
        assert!(p(&["close", "--force"]).is_ok());
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
        assert_eq!(p(&["unlock", "--bogus=x"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            p(&["unlock", "--help", "--bogus"]).unwrap().command,
            Command::Help(help::topic("unlock").unwrap())
        );
        assert_eq!(p(&["-V"]).unwrap().command, Command::Version);
    }

    fn help_of(args: &[&str]) -> &'static str {
        match p(args).unwrap().command {
            Command::Help(text) => text,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn help_per_command() {
        let unlock = help_of(&["help", "unlock"]);
        assert!(unlock.contains("--late") && unlock.contains("--prompt[=HOW]"));
        assert!(!unlock.contains("--recovery"));
        for args in [&["unlock", "--help"][..], &["-c", "x.json", "unlock", "-h"]] {
            assert_eq!(help_of(args), unlock, "{args:?}");
        }
        assert!(help_of(&["enroll", "--help"]).contains("--recovery"));
        // Before the command, or for a command without help: the overview.
        for args in [
            &["help"][..],
            &["--help", "unlock"],
            &["-h"],
            &["help", "-h"],
        ] {
            assert_eq!(help_of(args), HELP, "{args:?}");
        }
        let e = p(&["help", "nosuch"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("unknown command `nosuch`"), "{msg}");
        for (name, _) in help::TOPICS {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
        assert!(p(&["help", "unlock", "close"]).is_err());
    }

    /// Each command's help names each flag its usage line has, and stands in the overview.
    #[test]
    fn each_help_explains_its_flags() {
        for (name, text) in help::TOPICS {
            let usage = text.split("\n\n").next().unwrap();
            let usage_lines = usage.lines().skip(1).map(|l| l.to_string() + "\n");
            assert!(usage_lines.clone().count() >= 1, "{name}");
            for line in usage_lines {
                assert!(HELP.contains(&line), "{name}: the overview lacks {line}");
            }
            let flags = usage
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--"));
            for flag in flags {
                let explained = format!("\n    {flag}");
                assert!(text.contains(&explained), "{name}: {flag} is not explained");
            }
        }
    }

    /// The README's "Command line" section shows the options and every command's help
    /// verbatim: the two cannot drift apart.
    #[test]
    fn readme_shows_the_help_texts() {
        let readme = include_str!("../README.md");
        let options = HELP.split("\nOPTIONS:\n").nth(1).unwrap();
        let options = options.split("\n\n").next().unwrap();
        assert!(
            readme.contains(options),
            "README lacks the OPTIONS:\n{options}"
        );
        for (name, text) in help::TOPICS {
            assert!(
                readme.contains(text),
                "README lacks `{name}`'s help:\n{text}"
            );
        }
    }
}
