//! A typed walk over a JSON object that remembers where it is, so every error names the file,
//! the field path (`volumes[0].transit.key`) and what is wrong, and every key nobody asked for
//! is reported instead of silently ignored.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::time::Duration;

pub struct Obj<'o> {
    origin: &'o str,
    path: String,
    map: Map<String, Value>,
    known: Vec<&'static str>,
}

/// Longest configurable wait: an hour. Anything longer is a typo, not a plan.
const MAX_SECONDS: f64 = 3600.0;

impl<'o> Obj<'o> {
    pub fn new(origin: &'o str, path: &str, value: Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Obj {
                origin,
                path: path.to_string(),
                map,
                known: Vec::new(),
            }),
            other => Err(Error::config(
                origin,
                path,
                format!("expected an object, found {}", kind(&other)),
            )),
        }
    }

    pub fn origin(&self) -> &'o str {
        self.origin
    }

    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::config(self.origin, self.field(key), message)
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        match self.map.remove(key) {
            // An explicit null means "not set", as it does for most JSON config readers.
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(self.err(key, "must not be empty"))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, format!("expected a string, found {}", kind(&other)))),
        }
    }

    pub fn required_string(&mut self, key: &'static str) -> Result<String> {
        self.string(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.err(
                key,
                format!("expected true or false, found {}", kind(&other)),
            )),
        }
    }

    /// A whole number from 0 to `max` (a LUKS2 keyslot: 0 to 31).
    pub fn index(&mut self, key: &'static str, max: u32) -> Result<Option<u32>> {
        let found = match self.take(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(i) if i <= u64::from(max) => return Ok(Some(i as u32)),
                _ => n.to_string(),
            },
            Some(other) => kind(&other).to_string(),
        };
        Err(self.err(
            key,
            format!("expected a whole number from 0 to {max}, found {found}"),
        ))
    }

    pub fn seconds(&mut self, key: &'static str) -> Result<Option<Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let secs = n.as_f64().unwrap_or(-1.0);
                parse_seconds_value(secs)
                    .map(Some)
                    .map_err(|m| self.err(key, m))
            }
            Some(other) => Err(self.err(
                key,
                format!("expected a number of seconds, found {}", kind(&other)),
            )),
        }
    }

    /// Like `seconds`, but 0 is allowed: it switches the thing off.
    pub fn seconds_or_zero(&mut self, key: &'static str) -> Result<Option<Duration>> {
        if self.map.get(key).and_then(Value::as_f64) == Some(0.0) {
            self.take(key);
            return Ok(Some(Duration::ZERO));
        }
        self.seconds(key)
    }

    pub fn object(&mut self, key: &'static str) -> Result<Option<Obj<'o>>> {
        let field = self.field(key);
        match self.take(key) {
            None => Ok(None),
            Some(v) => Obj::new(self.origin, &field, v).map(Some),
        }
    }

    /// The elements of an array, each with its path (`volumes[2]`).
    pub fn array(&mut self, key: &'static str) -> Result<Option<Vec<(String, Value)>>> {
        let field = self.field(key);
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{field}[{i}]"), v))
                    .collect(),
            )),
            Some(other) => Err(self.err(key, format!("expected an array, found {}", kind(&other)))),
        }
    }

    pub fn string_list(&mut self, key: &'static str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) if !s.trim().is_empty() => Ok(s),
                other => Err(Error::config(
                    self.origin,
                    path,
                    format!("expected a non-empty string, found {}", kind(&other)),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Every key must have been asked for: a typo (`adress`) is an error, not a silent default.
    pub fn finish(self) -> Result<()> {
        let Some(unknown) = self.map.keys().next() else {
            return Ok(());
        };
        let mut known = self.known.clone();
        crate::sort::sort(&mut known);
        known.dedup();
        let hint = match closest(unknown, &known) {
            Some(k) => format!("; did you mean `{k}`?"),
            None => String::new(),
        };
        Err(Error::config(
            self.origin,
            self.field(unknown),
            format!("unknown key (known keys here: {}){hint}", known.join(", ")),
        ))
    }
}

/// A number of seconds as written on a command line: digits with an optional sign and decimal
/// point (`30`, `2.5`, `.5`, `-1`); None for anything else (exponents and `inf` included).
/// By hand: std's float parser brings about 15 KiB of code and tables into the binary for the
/// three options that read seconds from text (JSON numbers are serde_json's own). The digits
/// become one integer and one power of ten, both exact in an f64, so the one division rounds
/// as std's parser does.
pub fn parse_seconds_text(s: &str) -> Option<f64> {
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let value = if int.len() > 15 {
        f64::INFINITY // far out of any range, as std would have it
    } else {
        // At most 15 digits in all (exact in an f64); later fraction digits are below a
        // nanosecond for any number in range.
        let frac = &frac[..frac.len().min(15 - int.len())];
        let n = int
            .bytes()
            .chain(frac.bytes())
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        n as f64 / 10f64.powi(frac.len() as i32)
    };
    Some(if negative { -value } else { value })
}

pub fn parse_seconds_value(secs: f64) -> std::result::Result<Duration, String> {
    if !(secs > 0.0 && secs <= MAX_SECONDS) {
        return Err(format!(
            "must be a number of seconds between 0 and {MAX_SECONDS} (exclusive of 0)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The known key within edit distance 2 of `word`, if any: enough to catch common typos.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj<'static> {
        Obj::new("test.json", "vault", v).unwrap()
    }

    #[test]
    fn typo_is_reported_with_a_suggestion() {
        let mut o = obj(json!({"adress": "https://x"}));
        assert_eq!(o.string("address").unwrap(), None);
        let e = o.finish().unwrap_err().to_string();
        assert!(e.contains("vault.adress: unknown key"), "{e}");
        assert!(e.contains("did you mean `address`?"), "{e}");
    }

    #[test]
    fn wrong_type_names_field_and_types() {
        let mut o = obj(json!({"address": 8200}));
        let e = o.string("address").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid configuration in test.json: vault.address: expected a string, found a number"
        );
    }

    #[test]
    fn empty_string_is_rejected() {
        let mut o = obj(json!({"address": "  "}));
        assert!(o
            .string("address")
            .unwrap_err()
            .to_string()
            .contains("must not be empty"));
    }

    #[test]
    fn null_means_unset() {
        let mut o = obj(json!({"namespace": null}));
        assert_eq!(o.string("namespace").unwrap(), None);
        o.finish().unwrap();
    }

    #[test]
    fn seconds_are_bounded() {
        let mut o = obj(json!({"a": 0, "b": 1.5, "c": 99999, "d": "5"}));
        assert!(o.seconds("a").is_err());
        assert_eq!(o.seconds("b").unwrap(), Some(Duration::from_millis(1500)));
        assert!(o.seconds("c").is_err());
        assert!(o
            .seconds("d")
            .unwrap_err()
            .to_string()
            .contains("expected a number of seconds"));
        let mut o = obj(json!({"a": 0, "b": 2, "c": -1}));
        assert_eq!(o.seconds_or_zero("a").unwrap(), Some(Duration::ZERO));
        assert_eq!(
            o.seconds_or_zero("b").unwrap(),
            Some(Duration::from_secs(2))
        );
        assert!(o.seconds_or_zero("c").is_err());
    }

    #[test]
    fn array_elements_carry_their_index() {
        let mut o = obj(json!({"addresses": ["https://a", 3]}));
        let e = o.string_list("addresses").unwrap_err().to_string();
        assert!(
            e.contains("vault.addresses[1]: expected a non-empty string"),
            "{e}"
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("role", "role"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn seconds_text_parses_as_std_does_for_decimal_forms() {
        let exact =
            "0 1 30 3600 2.5 .5 5. 0.1 0.3 1.05 +7 -1 -0.5 007.250 3600.000000001 0.000000001";
        for t in exact.split(' ') {
            assert_eq!(parse_seconds_text(t), t.parse::<f64>().ok(), "{t}");
        }
        // Past 15 digits the rest is dropped: far below a nanosecond, or far out of range.
        for t in ["0.1234567890123456789", "3599.999999999999999"] {
            let (ours, std) = (parse_seconds_text(t).unwrap(), t.parse::<f64>().unwrap());
            assert!((ours - std).abs() < 1e-9, "{t}");
        }
        for t in ["12345678.123456789", "99999999999999999999"] {
            assert!(
                parse_seconds_value(parse_seconds_text(t).unwrap()).is_err(),
                "{t}"
            );
        }
        for t in [
            "", ".", "+", "-", "1e3", "inf", "NaN", "1.2.3", " 1", "1 ", "0x10", "1,5", "--1",
        ] {
            assert_eq!(parse_seconds_text(t), None, "{t}");
        }
        let mut seed = 0x2545f491u32;
        for _ in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let t = format!(
                "{}.{:0w$}",
                seed % 4000,
                seed / 7 % 1_000_000,
                w = (seed % 7) as usize
            );
            assert_eq!(parse_seconds_text(&t), t.parse::<f64>().ok(), "{t}");
        }
    }
}
