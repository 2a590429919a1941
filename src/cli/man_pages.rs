//! The man pages (doc/vault-luks.8, doc/vault-luks.json.5) are hand-written roff that restates
//! what the code knows; these tests hold them to it: the help texts word for word, every key
//! the configuration reader knows, every `rd.vault-luks` switch the kernel command line parser
//! knows. Nothing is retyped here: the help texts are `help`'s, the keys are asked of the reader
//! itself (the "known keys here" list of its unknown-key error, for each object), the switches
//! are read from the parser's source.

use super::help::{OVERVIEW, TOPICS};
use crate::config::{parse_cmdline, Config};
use crate::error::Error;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PAGE_8: &str = include_str!("../../doc/vault-luks.8");
const PAGE_5: &str = include_str!("../../doc/vault-luks.json.5");
const CMDLINE_RS: &str = include_str!("../config/cmdline.rs");

/// A roff text line as it reads: the escapes the pages use undone. Any other escape fails the
/// test, so a new one is added here rather than compared as its source.
fn unescape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('e') | Some('\\') => out.push('\\'),
            Some('&') => {}
            // A font change (\fB, \fI, \fR, \fP) is no text.
            Some('f') => {
                chars.next();
            }
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                out.push(match name.as_str() {
                    "aq" => '\'',
                    "ga" => '`',
                    "dq" => '"',
                    other => panic!("unknown roff character \\({other} in: {line}"),
                });
            }
            other => panic!("unknown roff escape \\{other:?} in: {line}"),
        }
    }
    out
}

/// The text of a request's arguments (`.B a b`, `.BR a " (b" )`): quoted arguments kept
/// whole; alternating-font requests (BR, IR, BI, ...) join theirs without a space.
fn request_text(line: &str) -> String {
    let (request, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    let alternating = [".BR", ".BI", ".IR", ".IB", ".RB", ".RI"].contains(&request);
    let sep = if alternating { "" } else { " " };
    unescape(&args.join(sep))
}

/// The page's no-fill blocks (`.nf` ... `.fi`), their lines as they read, each block framed by
/// an empty marker line so that no text can match across a block's end or a request in it.
fn no_fill_text(page: &str) -> String {
    let mut out = vec![String::from("\0")];
    let mut no_fill = false;
    for line in page.lines() {
        if line.starts_with(".nf") {
            no_fill = true;
        } else if line.starts_with(".fi") {
            no_fill = false;
            out.push("\0".into());
        } else if no_fill && (line.starts_with('.') || line.starts_with('\'')) {
            out.push("\0".into());
        } else if no_fill {
            out.push(unescape(line));
        }
    }
    out.push("\0".into());
    out.join("\n")
}

/// Whether `text`'s lines stand, in order and whole, in one of the page's no-fill blocks.
fn in_no_fill_block(page: &str, text: &str) -> bool {
    no_fill_text(page).contains(&format!("\n{}\n", text.trim_end_matches('\n')))
}

/// The source lines of section `name` (`.SH name` up to the next `.SH`).
fn section<'p>(page: &'p str, name: &str) -> Vec<&'p str> {
    let heading = format!(".SH {name}");
    page.lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .take_while(|l| !l.starts_with(".SH "))
        .collect()
}

/// The tags of a section's `.TP` entries (the line after each `.TP`), as they read.
fn entry_tags(lines: &[&str]) -> Vec<String> {
    lines
        .windows(2)
        .filter(|w| w[0].trim_end() == ".TP")
        .map(|w| {
            if w[1].starts_with('.') {
                request_text(w[1])
            } else {
                unescape(w[1])
            }
        })
        .collect()
}

/// A section's text as it reads, requests' arguments included, in single spaces.
fn section_words(lines: &[&str]) -> String {
    let text: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with(".\\\""))
        .map(|l| {
            if l.starts_with('.') {
                request_text(l)
            } else {
                unescape(l)
            }
        })
        .collect();
    text.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A block of the overview (`USAGE`, `OPTIONS`, ...), without its heading and the four
/// spaces its lines are indented by.
fn overview_block(heading: &str) -> String {
    let block = OVERVIEW
        .split(&format!("\n{heading}:\n"))
        .nth(1)
        .or_else(|| OVERVIEW.split(&format!("{heading}:\n")).nth(1))
        .unwrap_or_else(|| panic!("the overview has no {heading}:"));
    let block = block.split("\n\n").next().unwrap();
    block
        .lines()
        .map(|l| {
            l.strip_prefix("    ")
                .unwrap_or_else(|| panic!("`{l}` is not indented"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line of `text` that the page's no-fill blocks lack, for the failure message.
fn first_missing_line(page: &str, text: &str) -> String {
    let have = no_fill_text(page);
    let have: BTreeSet<&str> = have.lines().collect();
    text.lines()
        .find(|l| !have.contains(l))
        .unwrap_or("(every line is there, not in this order or not in one block)")
        .to_string()
}

#[test]
fn vault_luks_8_shows_the_help_texts_word_for_word() {
    let mut texts: Vec<(String, String)> = TOPICS
        .iter()
        .map(|(name, text)| (format!("`{name}`'s help"), text.to_string()))
        .collect();
    texts.push((
        "the overview's USAGE (SYNOPSIS)".into(),
        overview_block("USAGE"),
    ));
    texts.push(("the overview's OPTIONS".into(), overview_block("OPTIONS")));
    for (what, text) in texts {
        assert!(
            in_no_fill_block(PAGE_8, &text),
            "doc/vault-luks.8 lacks {what} (src/cli/help.rs) word for word in a .nf block; \
             the first line it lacks:\n{}",
            first_missing_line(PAGE_8, &text)
        );
    }
}

#[test]
fn vault_luks_8_exit_status_is_the_overviews() {
    let page = section_words(&section(PAGE_8, "EXIT STATUS"));
    let codes = overview_block("EXIT CODES");
    assert!(!codes.is_empty());
    for line in codes.lines() {
        let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            page.contains(&words),
            "doc/vault-luks.8's EXIT STATUS lacks `{words}`"
        );
    }
}

/// The smallest valid configuration with every object the reader knows of present, `auth`
/// given. The names in it are only what a valid file needs; the keys are asked of the reader.
fn skeleton(auth: &Value) -> Value {
    json!({
        "vault": {"address": "https://vault.test:8200"},
        "auth": auth,
        "metadata": {},
        "timeouts": {},
        "network": {},
        "volumes": [{"name": "v", "device": "/dev/v", "transit": {"key": "k"}}],
    })
}

/// The reader's answer to `config`: its field and message when it is a configuration error.
fn parse_error(config: &Value) -> Option<(String, String)> {
    match Config::parse("t.json", &config.to_string()) {
        Ok(_) => None,
        Err(Error::Config { field, message, .. }) => Some((field, message)),
        Err(e) => panic!("{e}"),
    }
}

/// Each auth method the reader knows (from its error for one it does not), with the fields
/// it requires filled in (from its "is required" errors).
fn auth_objects() -> Vec<Value> {
    let (field, message) = parse_error(&skeleton(&json!({"method": "?"}))).unwrap();
    assert_eq!(field, "auth.method");
    let methods = message
        .split_once("is not one of ")
        .unwrap_or_else(|| panic!("auth.method: {message}"))
        .1;
    methods
        .split(", ")
        .map(|method| {
            let mut auth = json!({ "method": method });
            while let Some((field, message)) = parse_error(&skeleton(&auth)) {
                let key = field
                    .strip_prefix("auth.")
                    .filter(|_| message == "is required");
                let key = key.unwrap_or_else(|| panic!("auth method {method}: {field}: {message}"));
                auth[key] = json!("x");
            }
            auth
        })
        .collect()
}

/// Every object in `value` with its path as the reader names it (`volumes[0].transit`).
fn objects(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(path.to_string());
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                objects(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                objects(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every key the configuration reader knows, written as the page writes them
/// (`volumes[].transit.key`): for each auth method, each object of a valid file is given a key
/// nobody knows, and the reader's error lists the keys it knows there.
fn known_config_keys() -> BTreeSet<String> {
    const STRANGER: &str = "zz_no_such_key";
    let mut keys = BTreeSet::new();
    for auth in auth_objects() {
        let config = skeleton(&auth);
        let mut paths = Vec::new();
        objects(&config, "", &mut paths);
        for path in paths {
            let mut bad = config.clone();
            let target = path
                .split('.')
                .filter(|p| !p.is_empty())
                .fold(&mut bad, |v, part| match part.split_once('[') {
                    Some((k, i)) => &mut v[k][i.trim_end_matches(']').parse::<usize>().unwrap()],
                    None => &mut v[part],
                });
            target[STRANGER] = json!(true);
            let (field, message) = parse_error(&bad).expect("a key nobody knows is an error");
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}.")
            };
            assert_eq!(field, format!("{prefix}{STRANGER}"), "{message}");
            let known = message
                .split_once("(known keys here: ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .unwrap_or_else(|| panic!("{field}: {message}"))
                .0;
            let doc_prefix = prefix.replace("[0]", "[]");
            keys.extend(known.split(", ").map(|k| format!("{doc_prefix}{k}")));
        }
    }
    keys
}

#[test]
fn vault_luks_json_5_has_an_entry_for_every_configuration_key() {
    let known = known_config_keys();
    // The reader must have answered for every section: a sanity check on the discovery.
    assert!(known.contains("volumes[].transit.key"), "{known:?}");
    let tags = entry_tags(&section(PAGE_5, "KEYS"));
    let documented: BTreeSet<String> = tags.iter().cloned().collect();
    assert_eq!(
        documented.len(),
        tags.len(),
        "a key with two entries: {tags:?}"
    );
    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "doc/vault-luks.json.5's KEYS has no entry (.TP, then .B KEY) for {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "doc/vault-luks.json.5's KEYS has entries for keys the reader does not know: {unknown:?}"
    );
}

/// The `rd.vault-luks*` switches: the arms of `parse_cmdline`'s match, each with the value its
/// guard requires (`"rd.vault-luks" if value == Some("prompt") =>`), if any.
fn cmdline_switches() -> Vec<(String, Option<String>)> {
    let switches: Vec<_> = CMDLINE_RS
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("\"rd.vault-luks") && l.contains("=>"))
        .map(|l| {
            let name = l[1..].split('"').next().unwrap().to_string();
            let guard = l
                .split_once("Some(\"")
                .filter(|(before, _)| before.contains(" if "))
                .map(|(_, rest)| rest.split('"').next().unwrap().to_string());
            (name, guard)
        })
        .collect();
    assert!(
        !switches.is_empty(),
        "no rd.vault-luks arms found in src/config/cmdline.rs"
    );
    for (name, _) in &switches {
        let o = parse_cmdline(&format!("{name}=1"));
        assert!(
            !o.warnings.iter().any(|w| w.contains("unknown")),
            "{name} read from cmdline.rs is not an option: {:?}",
            o.warnings
        );
    }
    switches
}

#[test]
fn vault_luks_8_has_an_entry_for_every_kernel_command_line_switch() {
    let switches = cmdline_switches();
    let tags = entry_tags(&section(PAGE_8, "KERNEL COMMAND LINE"));
    // Which switch a tag is: `S=VALUE` for an arm guarded by that value, else `S`, `S=...`.
    let starts = |tag: &str, s: &str| {
        tag.strip_prefix(s)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['=', ' ']))
    };
    let owner = |tag: &str| {
        switches
            .iter()
            .find(|(s, g)| g.as_ref().is_some_and(|g| starts(tag, &format!("{s}={g}"))))
            .or_else(|| switches.iter().find(|(s, g)| g.is_none() && starts(tag, s)))
    };
    for tag in &tags {
        assert!(
            owner(tag).is_some(),
            "doc/vault-luks.8's KERNEL COMMAND LINE has `{tag}`, which src/config/cmdline.rs does not read"
        );
    }
    for switch in &switches {
        assert!(
            tags.iter().any(|t| owner(t) == Some(switch)),
            "doc/vault-luks.8's KERNEL COMMAND LINE has no entry (.TP, then the switch) for {}{}",
            switch.0,
            switch.1.as_ref().map_or(String::new(), |g| format!("={g}"))
        );
    }
}

#[test]
fn roff_escapes_are_undone() {
    assert_eq!(
        unescape(r"\-\-log \e \&.x \(aq\(dq \fBb\fR"),
        r#"--log \ .x '" b"#
    );
    assert_eq!(
        request_text(r#".BR rd.vault\-luks=1 " (or " =0 )"#),
        "rd.vault-luks=1 (or =0)"
    );
    assert_eq!(request_text(r".B vault.address"), "vault.address");
    let page = ".nf\na\nb\n.fi\nc\n.nf\nd\n.B e\nf\n.fi\n";
    assert!(in_no_fill_block(page, "a\nb\n"));
    assert!(!in_no_fill_block(page, "b\nc"));
    assert!(!in_no_fill_block(page, "d\nf"));
    assert!(!in_no_fill_block(page, "c"));
}
