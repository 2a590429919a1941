//! vault-luks: parse the command line, load the configuration, dispatch, map errors to exit
//! codes. Nothing else happens here.

mod check;
mod cli;
mod close;
mod config;
mod error;
mod files;
mod http;
mod image;
mod lifecycle;
mod log;
mod luks;
mod metadata;
mod net;
mod prompt;
mod retry;
mod secret;
mod sort;
mod status;
mod unlock;
mod vault;

use cli::Command;
use config::{parse_cmdline, Config};
use error::{Error, Result, EXIT_OK};

/// Where the kernel command line is read from; tests point it at a file of their own.
const CMDLINE_ENV: &str = "VAULT_LUKS_PROC_CMDLINE";

fn main() {
    // Before any secret exists: no core dumps, no ptrace by other users.
    secret::harden_process();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // Installed as crypttab's keyscript=, cryptroot runs us with the key file field as the
    // only argument and the volume in CRYPTTAB_NAME.
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.rsplit('/').next() == Some("vault-luks-keyscript") {
        args = vec!["--log".into(), "both".into(), "keyscript".into()];
    }
    let code = match run(&args) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error(format_args!("{e}"));
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Whether and how `unlock` may ask a person: `--prompt[=HOW]`, or by default when stdin is a
/// terminal; never with timeouts.prompt = 0 (unless rd.vault-luks=prompt asks for nothing else).
fn fallback_for(
    arg: cli::PromptArg,
    config: &Config,
    prompt_only: bool,
) -> Result<Option<unlock::Fallback>> {
    use std::io::IsTerminal;
    let choice = match arg {
        cli::PromptArg::Never => return Ok(None),
        cli::PromptArg::Ask(c) => c,
        cli::PromptArg::Default if std::io::stdin().is_terminal() => prompt::Choice::Auto,
        cli::PromptArg::Default => return Ok(None),
    };
    if config.timeouts.prompt.is_zero() {
        log::info(format_args!("no passphrase prompt: timeouts.prompt is 0"));
        return Ok(None);
    }
    let method = prompt::Method::find(choice).ok_or_else(|| {
        Error::failed(
            error::Step::Unlock,
            format!("--prompt={choice:?}: that way of asking is not installed here"),
            "use --prompt=auto or --prompt=console",
        )
    })?;
    Ok(Some(unlock::Fallback {
        method,
        prompt_only,
    }))
}

fn run(args: &[String]) -> Result<()> {
    let cli = cli::parse(args)?;
    log::set_target(cli.log);
    log::set_debug(cli.debug);
    match cli.command {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Command::Version => {
            println!("vault-luks {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::AskConsole { message } => {
            return prompt::ask_console(&message).map_err(|e| {
                Error::failed(
                    error::Step::Unlock,
                    format!("cannot ask on the terminal: {e}"),
                    "",
                )
            });
        }
        _ => {}
    }

    let mut config = Config::load(&cli.config, &|name| std::env::var(name).ok())?;
    let cmdline = if cli.use_cmdline {
        read_cmdline()
    } else {
        String::new()
    };
    let overrides = parse_cmdline(&cmdline);
    config.apply_cmdline(&overrides)?;
    config.network.kernel_cmdline = cmdline;
    if overrides.debug {
        log::set_debug(true);
    }
    // Warnings matter where Vault is contacted, and in `check`; not at every `close` at shutdown,
    // nor in `check --files`, whose output scripts read.
    let talks_to_vault = match &cli.command {
        Command::Close { .. }
        | Command::Check { files_only: true }
        | Command::CheckImage { .. } => false,
        Command::Status { check_vault, .. } => *check_vault,
        _ => true,
    };
    if talks_to_vault {
        for w in &config.warnings {
            log::warn(format_args!("{w}"));
        }
    }

    match cli.command {
        Command::Unlock {
            names,
            timeout,
            prompt,
            late,
        } => {
            if overrides.disabled {
                log::info(format_args!("disabled by rd.vault-luks=0 on the kernel command line; nothing done (run with --no-cmdline to unlock anyway)"));
                return Ok(());
            }
            if let Some(t) = timeout {
                config.timeouts.unlock = t;
            }
            let fallback = fallback_for(prompt, &config, overrides.prompt_only)?;
            // The real root's second chance: only what is still locked, when it should be tried.
            let names = if late {
                match unlock::late::still_locked(&config, &names)? {
                    Some(locked) => locked,
                    None => return Ok(()),
                }
            } else {
                names
            };
            unlock::unlock(&config, &names, fallback.as_ref())
        }
        Command::Close { names, force } => close::close(&config, &names, force),
        Command::Enroll(options) => lifecycle::enroll::enroll(
            &config,
            &cli.config,
            &options,
            &unlock::locate_cryptsetup()?,
        ),
        Command::Rewrap { names } => {
            lifecycle::rewrap::rewrap(&config, &names, &unlock::locate_cryptsetup()?)
        }
        Command::Rotate { name } => {
            lifecycle::rotate::rotate(&config, &name, &unlock::locate_cryptsetup()?)
        }
        Command::Keyscript { name } => {
            if overrides.disabled {
                return Err(error::Error::failed(
                    error::Step::Unlock,
                    "disabled by rd.vault-luks=0 on the kernel command line",
                    "unlock with the passphrase instead",
                ));
            }
            let name = name
                .or_else(|| std::env::var("CRYPTTAB_NAME").ok())
                .ok_or_else(|| {
                    Error::Usage(
                        "keyscript needs a volume name, or CRYPTTAB_NAME in the environment".into(),
                    )
                })?;
            unlock::keyscript(&config, &name)
        }
        Command::Status { json, check_vault } => {
            let cs = luks::Cryptsetup::locate();
            let mut s = status::collect(&config, cs.as_ref());
            let checked = match (&cs, check_vault) {
                (Some(cs), true) => status::check_vault(&config, cs, &mut s),
                (None, true) => {
                    return Err(unlock::locate_cryptsetup()
                        .err()
                        .expect("cryptsetup is missing"))
                }
                (_, false) => true,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).map_err(|e| Error::Usage(e.to_string()))?
                );
            } else {
                print!("{}", status::render_text(&s));
            }
            if checked {
                Ok(())
            } else {
                Err(error::Error::failed(
                    error::Step::Unlock,
                    "a Vault check failed (see vault_check above)",
                    "fix what it names before the next boot",
                ))
            }
        }
        Command::Check { files_only: true } => {
            for f in config.referenced_files() {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Check { files_only: false } => {
            print!("{}", check::render(&config));
            Ok(())
        }
        Command::CheckImage { path } => image::check(&config, &cli.config, path.as_deref()),
        Command::NetCheck {
            timeout,
            resolve,
            exec,
        } => net::check(
            &config,
            timeout.unwrap_or(config.timeouts.unlock),
            resolve.as_deref(),
            exec.as_deref(),
        ),
        Command::Help | Command::Version | Command::AskConsole { .. } => {
            unreachable!("handled above")
        }
    }
}

fn read_cmdline() -> String {
    let path = std::env::var(CMDLINE_ENV).unwrap_or_else(|_| "/proc/cmdline".to_string());
    std::fs::read_to_string(path).unwrap_or_default()
}
