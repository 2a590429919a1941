//! Transit decrypt: one request per transit key, batched when several volumes share the key.
//! The plaintext is kept exactly as Vault returns it (base64 text): that string is the LUKS
//! passphrase the article's pipeline gives cryptsetup.

use super::auth::{denied_hint, vault_hint, Session};
use super::client::VaultFailure;
use crate::config::Transit;
use crate::error::{Error, Result, Step};
use crate::retry::Deadline;
use crate::secret::Secret;
use serde_json::{json, Value};

pub struct Ciphertext<'a> {
    pub text: &'a str,
    pub context: Option<&'a str>,
}

/// The plaintext of each item, in order, or that item's own error.
pub type ItemResults = Vec<std::result::Result<Secret, String>>;

pub fn decrypt(
    session: &Session,
    transit: &Transit,
    items: &[Ciphertext],
    deadline: &Deadline,
) -> Result<ItemResults> {
    let path = format!("{}/decrypt/{}", transit.mount, transit.key);
    let item_json = |c: &Ciphertext| {
        let mut o = json!({ "ciphertext": c.text });
        if let Some(ctx) = c.context {
            o["context"] = json!(ctx);
        }
        o
    };
    let batch = items.len() > 1;
    let body = if batch {
        json!({ "batch_input": items.iter().map(item_json).collect::<Vec<_>>() })
    } else {
        item_json(&items[0])
    };
    crate::log::info(format_args!(
        "transit decrypt: {} ciphertext(s) with key {} at {path} ({:.0}s left)",
        items.len(),
        transit.key,
        deadline.remaining().as_secs_f64()
    ));
    let body = serde_json::to_vec(&body).expect("serializing a JSON value cannot fail");
    let reply = match session.post("transit decrypt", &path, &body, deadline) {
        Ok(r) => r,
        // A batch with a failing item is answered 400 with per-item errors: use them.
        Err(f) if batch && f.status == Some(400) => match f
            .body
            .as_deref()
            .and_then(|b| batch_results(b, items.len()))
        {
            Some(results) => return Ok(results),
            None => return Err(decrypt_error(&f, transit, &path)),
        },
        Err(f) => return Err(decrypt_error(&f, transit, &path)),
    };
    decrypt_answer(&reply.body, items.len()).ok_or_else(|| {
        Error::failed(
            Step::Decrypt,
            format!("the answer from {path} has no plaintext"),
            "is transit mounted at that path?",
        )
    })
}

/// One ciphertext's plaintext (with `transit`'s context); its item error is the error.
pub fn decrypt_one(
    session: &Session,
    transit: &Transit,
    ciphertext: &str,
    deadline: &Deadline,
) -> Result<Secret> {
    let items = [Ciphertext {
        text: ciphertext,
        context: transit.context.as_deref(),
    }];
    match decrypt(session, transit, &items, deadline)?.pop() {
        Some(Ok(plaintext)) => Ok(plaintext),
        Some(Err(msg)) => Err(item_error(&msg, transit)),
        // `decrypt` answers one result per item or an error.
        None => Err(Error::failed(
            Step::Decrypt,
            "Vault returned no plaintext",
            "",
        )),
    }
}

/// The results in a successful decrypt answer to `n` ciphertexts (a batch when n > 1).
pub fn decrypt_answer(body: &[u8], n: usize) -> Option<ItemResults> {
    if n > 1 {
        return batch_results(body, n);
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    // get_mut, not v["data"]: indexing a JSON value that is not an object panics.
    take_plaintext(v.get_mut("data")?).map(|p| vec![Ok(p)])
}

fn batch_results(body: &[u8], n: usize) -> Option<ItemResults> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let results = v.pointer_mut("/data/batch_results")?.as_array_mut()?;
    if results.len() != n {
        return None;
    }
    Some(
        results
            .iter_mut()
            .map(|item| match item.get("error").and_then(Value::as_str) {
                Some(e) if !e.is_empty() => Err(e.to_string()),
                _ => take_plaintext(item)
                    .ok_or_else(|| "no plaintext in the batch result".to_string()),
            })
            .collect(),
    )
}

/// Moves the `plaintext` string out of the JSON value into a Secret, without a copy.
fn take_plaintext(v: &mut Value) -> Option<Secret> {
    match v.get_mut("plaintext").map(Value::take) {
        Some(Value::String(s)) if !s.is_empty() => Some(Secret::from_string(s)),
        _ => None,
    }
}

fn decrypt_error(f: &VaultFailure, transit: &Transit, path: &str) -> Error {
    let hint = match f.status {
        Some(400) => format!(
            "Vault could not decrypt the ciphertext with transit key `{}`: the file is damaged, belongs to another key, or the key version was trimmed (use the backup passphrase)",
            transit.key
        ),
        Some(403) => denied_hint(f, format!("the token's policies do not allow update on {path}: add it to the role's policy (the article's transit-luks)")),
        Some(404) => format!("nothing at {path}: check transit.mount and transit.key"),
        _ => vault_hint(f),
    };
    Error::failed(Step::Decrypt, f.to_string(), hint)
}

/// Wrap a new key: `transit/encrypt/KEY` with the key text as `plaintext` (which is base64,
/// as the article's `openssl rand -base64 24` is), so decrypt later returns that same text.
pub fn encrypt(
    session: &Session,
    transit: &Transit,
    key_text: &Secret,
    deadline: &Deadline,
) -> Result<String> {
    let path = format!("{}/encrypt/{}", transit.mount, transit.key);
    let text = std::str::from_utf8(key_text.expose())
        .map_err(|_| Error::failed(Step::Encrypt, "the key is not text", ""))?;
    let body = match &transit.context {
        Some(ctx) => super::auth::json_object(&[("plaintext", text), ("context", ctx)]),
        None => super::auth::json_object(&[("plaintext", text)]),
    };
    crate::log::info(format_args!("transit encrypt: {path}"));
    let reply = session.post("transit encrypt", &path, &body, deadline).map_err(|f| {
        let hint = match f.status {
            Some(403) => denied_hint(&f, format!("the token's policies do not allow update on {path} (the article's transit-luks policy has it)")),
            Some(400) | Some(404) => format!("check the transit key `{}` exists at {}", transit.key, transit.mount),
            _ => vault_hint(&f),
        };
        Error::failed(Step::Encrypt, f.to_string(), hint)
    })?;
    ciphertext_of(&reply.body, &path, Step::Encrypt)
}

/// `transit/rewrap/KEY`: the same plaintext under the key's latest version.
pub fn rewrap(
    session: &Session,
    transit: &Transit,
    ciphertext: &str,
    deadline: &Deadline,
) -> Result<String> {
    let path = format!("{}/rewrap/{}", transit.mount, transit.key);
    let mut body = json!({ "ciphertext": ciphertext });
    if let Some(ctx) = &transit.context {
        body["context"] = json!(ctx);
    }
    let body = serde_json::to_vec(&body).expect("serializing a JSON value cannot fail");
    let reply = session.post("transit rewrap", &path, &body, deadline).map_err(|f| {
        let hint = match f.status {
            Some(403) => denied_hint(&f, format!("the token's policies do not allow update on {path}: add it to the role's policy")),
            _ => vault_hint(&f),
        };
        Error::failed(Step::Rewrap, f.to_string(), hint)
    })?;
    ciphertext_of(&reply.body, &path, Step::Rewrap)
}

pub fn ciphertext_of(body: &[u8], path: &str, step: Step) -> Result<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v.pointer("/data/ciphertext").and_then(Value::as_str) {
        Some(c) if c.starts_with("vault:v") => Ok(c.to_string()),
        _ => Err(Error::failed(
            step,
            format!("the answer from {path} has no ciphertext"),
            "is transit mounted at that path?",
        )),
    }
}

/// A per-item error from a batch, in the same words as a whole-request failure.
pub fn item_error(message: &str, transit: &Transit) -> Error {
    Error::failed(
        Step::Decrypt,
        format!("Vault: {message}"),
        format!("the ciphertext does not decrypt with transit key `{}`: the file is damaged or belongs to another key (use the backup passphrase)", transit.key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::client::vault_errors;

    #[test]
    fn batch_results_keep_order_and_item_errors() {
        let body = br#"{"data":{"batch_results":[{"plaintext":"QUJD"},{"error":"cipher: message authentication failed"}]}}"#;
        let r = batch_results(body, 2).unwrap();
        assert_eq!(r[0].as_ref().unwrap().expose(), b"QUJD");
        assert_eq!(
            r[1].as_ref().err().unwrap(),
            "cipher: message authentication failed"
        );
    }

    #[test]
    fn batch_results_must_match_the_request() {
        assert!(
            batch_results(br#"{"data":{"batch_results":[{"plaintext":"QUJD"}]}}"#, 2).is_none()
        );
        assert!(batch_results(br#"{"errors":["x"]}"#, 1).is_none());
        assert_eq!(vault_errors(br#"{"errors":["x"]}"#), vec!["x"]);
    }

    #[test]
    fn an_answer_that_is_not_an_object_has_no_plaintext() {
        // Found by the fuzzer (fuzz/regressions/vault_transit/): a 200 answer `6` panicked.
        for body in [
            &b"6"[..],
            b"[]",
            b"\"data\"",
            b"null",
            b"{\"data\":[1]}",
            b"not json",
        ] {
            assert!(decrypt_answer(body, 1).is_none(), "{body:?}");
        }
        let ok = decrypt_answer(br#"{"data":{"plaintext":"QUJD"}}"#, 1).unwrap();
        assert_eq!(ok[0].as_ref().unwrap().expose(), b"QUJD");
    }

    #[test]
    fn plaintext_is_taken_verbatim() {
        let mut v: Value =
            serde_json::from_str(r#"{"plaintext":"dGhpcyBpcyAyNCBieXRlcyBsb25nIQ=="}"#).unwrap();
        let s = take_plaintext(&mut v).unwrap();
        assert_eq!(s.expose(), b"dGhpcyBpcyAyNCBieXRlcyBsb25nIQ==");
        assert_eq!(v["plaintext"], Value::Null, "moved out, not copied");
    }
}
