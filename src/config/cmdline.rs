//! `rd.vault-luks.*` on the kernel command line: the operator's say for this one boot.
//! As systemd-cryptsetup does with its options: a malformed value is warned about and ignored;
//! an address is validated like any other (plain http still needs vault.allow_http in the file).

use super::reader::{parse_seconds_text, parse_seconds_value};
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CmdlineOverrides {
    /// `rd.vault-luks=0`: do not unlock automatically on this boot.
    pub disabled: bool,
    /// `rd.vault-luks.debug`: verbose log lines.
    pub debug: bool,
    /// `rd.vault-luks.address=URL[,URL...]`
    pub addresses: Option<Vec<String>>,
    /// `rd.vault-luks.timeout=SECONDS`: the unlock deadline.
    pub timeout: Option<Duration>,
    /// `rd.vault-luks=prompt`: skip Vault on this boot and ask for a passphrase at once.
    pub prompt_only: bool,
    /// `rd.vault-luks.prompt-timeout=SECONDS`: how long the prompt stays up (0: no prompt).
    pub prompt_timeout: Option<Duration>,
    /// `rd.vault-luks.network=off|auto`: network.mode for this boot.
    pub network: Option<bool>,
    pub warnings: Vec<String>,
}

/// The `rd.vault-luks*` words of `cmdline`; anything malformed or unknown becomes a warning.
/// Kept as one flat table, an arm per option: each arm holds what its option accepts and the
/// warning for what it does not, side by side, which helpers per option would pull apart.
pub fn parse_cmdline(cmdline: &str) -> CmdlineOverrides {
    let mut o = CmdlineOverrides::default();
    for word in split_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match key {
            "rd.vault-luks" if value == Some("prompt") => {
                o.prompt_only = true;
                o.disabled = false;
            }
            "rd.vault-luks" => match value.map(parse_bool) {
                Some(Some(on)) => {
                    o.disabled = !on;
                    o.prompt_only = false;
                }
                _ => o.warnings.push(format!(
                    "ignoring `{word}` on the kernel command line: expected rd.vault-luks=0, =1 or =prompt"
                )),
            },
            "rd.vault-luks.debug" => match value.map(parse_bool).unwrap_or(Some(true)) {
                Some(on) => o.debug = on,
                None => o.warnings.push(format!(
                    "ignoring `{word}`: expected rd.vault-luks.debug, =0 or =1"
                )),
            },
            "rd.vault-luks.address" => match value.filter(|v| !v.is_empty()) {
                Some(v) => {
                    o.addresses = Some(
                        v.split(',')
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                }
                None => o.warnings.push(format!(
                    "ignoring `{word}`: expected rd.vault-luks.address=https://HOST:PORT"
                )),
            },
            "rd.vault-luks.timeout" => match value
                .and_then(parse_seconds_text)
                .map(parse_seconds_value)
            {
                Some(Ok(d)) => o.timeout = Some(d),
                _ => o.warnings.push(format!(
                    "ignoring `{word}`: expected rd.vault-luks.timeout=SECONDS (1 to 3600)"
                )),
            },
            "rd.vault-luks.prompt-timeout" => match value.and_then(parse_seconds_text) {
                Some(0.0) => o.prompt_timeout = Some(Duration::ZERO),
                Some(secs) => match parse_seconds_value(secs) {
                    Ok(d) => o.prompt_timeout = Some(d),
                    Err(_) => o.warnings.push(format!(
                        "ignoring `{word}`: expected rd.vault-luks.prompt-timeout=SECONDS (0 to 3600)"
                    )),
                },
                None => o.warnings.push(format!(
                    "ignoring `{word}`: expected rd.vault-luks.prompt-timeout=SECONDS (0 to 3600)"
                )),
            },
            "rd.vault-luks.network" => match value {
                Some("auto") => o.network = Some(true),
                Some("off") => o.network = Some(false),
                _ => o.warnings.push(format!(
                    "ignoring `{word}`: expected rd.vault-luks.network=auto or =off"
                )),
            },
            k if k.starts_with("rd.vault-luks.") => {
                o.warnings.push(format!(
                    "ignoring unknown kernel command line option `{word}`"
                ));
            }
            _ => {}
        }
    }
    o
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "yes" | "y" | "true" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Kernel-style splitting: whitespace separates, double quotes group (`opt="a b"`).
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_options() {
        let o = parse_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet rd.vault-luks.address=https://a:8200,https://b:8200 rd.vault-luks.timeout=15 rd.vault-luks.debug\n");
        assert!(!o.disabled);
        assert!(o.debug);
        assert_eq!(
            o.addresses.as_deref(),
            Some(&["https://a:8200".to_string(), "https://b:8200".to_string()][..])
        );
        assert_eq!(o.timeout, Some(Duration::from_secs(15)));
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn disable_switch_and_last_one_wins() {
        assert!(parse_cmdline("rd.vault-luks=0").disabled);
        assert!(parse_cmdline("rd.vault-luks=off").disabled);
        assert!(!parse_cmdline("rd.vault-luks=0 rd.vault-luks=1").disabled);
        let o = parse_cmdline("rd.vault-luks=prompt rd.vault-luks.prompt-timeout=0");
        assert!(o.prompt_only && !o.disabled);
        assert_eq!(o.prompt_timeout, Some(Duration::ZERO));
        let o = parse_cmdline("rd.vault-luks.prompt-timeout=90 rd.vault-luks.prompt-timeout=x");
        assert_eq!(o.prompt_timeout, Some(Duration::from_secs(90)));
        assert_eq!(o.warnings.len(), 1);
        assert!(!parse_cmdline("rd.vault-luks.debug rd.vault-luks.debug=0").debug);
    }

    #[test]
    fn malformed_values_are_warned_about_and_ignored() {
        let o = parse_cmdline("rd.vault-luks=maybe rd.vault-luks.timeout=soon rd.vault-luks.timeout=0 rd.vault-luks.adress=x rd.vault-luks.address=");
        assert!(!o.disabled);
        assert_eq!(o.timeout, None);
        assert_eq!(o.addresses, None);
        assert_eq!(o.warnings.len(), 5, "{:?}", o.warnings);
        assert!(
            o.warnings[3].contains("unknown kernel command line option `rd.vault-luks.adress=x`")
        );
    }

    #[test]
    fn network_switch() {
        assert_eq!(
            parse_cmdline("rd.vault-luks.network=off").network,
            Some(false)
        );
        let o = parse_cmdline("rd.vault-luks.network=off rd.vault-luks.network=auto");
        assert_eq!(o.network, Some(true));
        let o = parse_cmdline("rd.vault-luks.network=0 rd.vault-luks.network");
        assert_eq!(o.network, None);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(split_words(r#"a="b c" d"#), vec!["a=b c", "d"]);
    }

    #[test]
    fn unrelated_options_are_not_ours() {
        let o = parse_cmdline("rd.luks.uuid=x vault-luks.address=https://x rd.vault-lukss=1");
        assert_eq!(o, CmdlineOverrides::default());
    }
}
