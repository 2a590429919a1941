//! vault-luks: parse the command line, load the configuration, dispatch, map errors to exit
//! codes. Nothing else happens here. The fuzz targets (fuzz/) build this file as a library and
//! call the decoders through [`fuzz`], its only public module.

mod check;
mod cli;
mod close;
mod config;
mod error;
mod files;
pub mod fuzz;
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
    // Each command that needs the configuration reads it in its arm: help, version and the
    // console prompt must work without one.
    let warn = talks_to_vault(&cli.command);
    let configured = || Setup::load(&cli.config, cli.use_cmdline, warn);
    match cli.command {
        Command::Help(text) => print_out(text),
        Command::Version => print_out(concat!("vault-luks ", env!("CARGO_PKG_VERSION"), "\n")),
        Command::AskConsole { message } => cmd_ask_console(&message),
        Command::Unlock {
            names,
            timeout,
            prompt,
            late,
        } => cmd_unlock(configured()?, names, timeout, prompt, late),
        Command::Close { names, force } => close::close(&configured()?.config, &names, force),
        Command::Enroll(options) => cmd_enroll(&configured()?.config, &cli.config, &options),
        Command::Rewrap { names } => cmd_rewrap(&configured()?.config, &names),
        Command::Rotate { name } => cmd_rotate(&configured()?.config, &name),
        Command::Keyscript { name } => cmd_keyscript(configured()?, name),
        Command::Status { json, check_vault } => {
            cmd_status(&configured()?.config, json, check_vault)
        }
        Command::Check { files_only } => cmd_check(&configured()?.config, files_only),
        Command::CheckImage { path } => {
            image::check(&configured()?.config, &cli.config, path.as_deref())
        }
        Command::NetCheck {
            timeout,
            resolve,
            exec,
        } => cmd_net_check(&configured()?.config, timeout, resolve, exec),
    }
}

/// What the commands that act on volumes need: the configuration with the environment and
/// the kernel command line applied, and what the command line said about this boot.
struct Setup {
    config: Config,
    overrides: config::CmdlineOverrides,
}

impl Setup {
    /// `warn`: print the configuration's warnings.
    fn load(path: &std::path::Path, use_cmdline: bool, warn: bool) -> Result<Setup> {
        let mut config = Config::load(path, &|name| std::env::var(name).ok())?;
        let cmdline = if use_cmdline {
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
        if warn {
            for w in &config.warnings {
                log::warn(format_args!("{w}"));
            }
        }
        Ok(Setup { config, overrides })
    }
}

/// Warnings matter where Vault is contacted, and in `check`; not at every `close` at shutdown,
/// nor in `check --files`, whose output scripts read.
fn talks_to_vault(command: &Command) -> bool {
    match command {
        Command::Close { .. }
        | Command::Check { files_only: true }
        | Command::CheckImage { .. } => false,
        Command::Status { check_vault, .. } => *check_vault,
        _ => true,
    }
}

fn print_out(text: &str) -> Result<()> {
    print!("{text}");
    Ok(())
}

fn cmd_ask_console(message: &str) -> Result<()> {
    prompt::ask_console(message).map_err(|e| {
        Error::failed(
            error::Step::Unlock,
            format!("cannot ask on the terminal: {e}"),
            "",
        )
    })
}

fn cmd_unlock(
    setup: Setup,
    names: Vec<String>,
    timeout: Option<std::time::Duration>,
    prompt: cli::PromptArg,
    late: bool,
) -> Result<()> {
    let Setup {
        mut config,
        overrides,
    } = setup;
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

fn cmd_enroll(
    config: &Config,
    config_path: &std::path::Path,
    options: &lifecycle::enroll::Options,
) -> Result<()> {
    lifecycle::enroll::enroll(config, config_path, options, &unlock::locate_cryptsetup()?)
}

fn cmd_rewrap(config: &Config, names: &[String]) -> Result<()> {
    lifecycle::rewrap::rewrap(config, names, &unlock::locate_cryptsetup()?)
}

fn cmd_rotate(config: &Config, name: &str) -> Result<()> {
    lifecycle::rotate::rotate(config, name, &unlock::locate_cryptsetup()?)
}

fn cmd_keyscript(setup: Setup, name: Option<String>) -> Result<()> {
    let Setup { config, overrides } = setup;
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

fn cmd_status(config: &Config, json: bool, check_vault: bool) -> Result<()> {
    let cs = luks::Cryptsetup::locate();
    let mut s = status::collect(config, cs.as_ref());
    let checked = match (&cs, check_vault) {
        (Some(cs), true) => status::check_vault(config, cs, &mut s),
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

fn cmd_check(config: &Config, files_only: bool) -> Result<()> {
    if files_only {
        for f in config.referenced_files() {
            println!("{}", f.display());
        }
    } else {
        print!("{}", check::render(config));
    }
    Ok(())
}

fn cmd_net_check(
    config: &Config,
    timeout: Option<std::time::Duration>,
    resolve: Option<String>,
    exec: Option<String>,
) -> Result<()> {
    net::check(
        config,
        timeout.unwrap_or(config.timeouts.unlock),
        resolve.as_deref(),
        exec.as_deref(),
    )
}

fn read_cmdline() -> String {
    let path = std::env::var(CMDLINE_ENV).unwrap_or_else(|_| "/proc/cmdline".to_string());
    std::fs::read_to_string(path).unwrap_or_default()
}
