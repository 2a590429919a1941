//! Exoscale's metadata server: `GET <url>instance-id` and `<url>availability-zone`, plain text,
//! no headers, no DNS (169.254.169.254). Private instances have none; the error says so.

use super::{Identity, IdentitySource};
use crate::error::{Error, Result, Step};
use crate::http::{status_retryable, Http, HttpError, HttpOptions, Method};
use crate::retry::{self, Attempt, Backoff, Deadline, GaveUp};
use std::time::Duration;

/// Metadata values are a few dozen bytes.
const BODY_LIMIT: u64 = 4096;

pub struct ExoscaleMetadata {
    url: String,
    http: Http,
    backoff: Backoff,
}

impl ExoscaleMetadata {
    pub fn new(url: &str, request_timeout: Duration) -> Self {
        ExoscaleMetadata {
            url: url.to_string(),
            http: Http::new(HttpOptions {
                request_timeout,
                body_limit: BODY_LIMIT,
                tls: Default::default(),
                connect_to: None,
                use_env_proxy: false,
            }),
            backoff: Backoff::default(),
        }
    }

    fn get(&self, key: &str, deadline: &Deadline) -> Result<String> {
        let url = format!("{}{key}", self.url);
        let what = format!("metadata {key}");
        let result = retry::run(
            &what,
            deadline,
            &self.backoff,
            |e: &String| e.clone(),
            |_, left| match self.http.send(Method::Get, &url, &[], b"", left) {
                Ok(r) if r.status == 200 => Ok(r),
                Ok(r) if status_retryable(r.status) => Err(Attempt::Retry {
                    error: format!("HTTP {}", r.status),
                    after: r.retry_after,
                }),
                Ok(r) => Err(Attempt::Final(format!("HTTP {}", r.status))),
                Err(e @ (HttpError::Connect(_) | HttpError::Timeout(_))) => Err(Attempt::Retry {
                    error: e.to_string(),
                    after: None,
                }),
                Err(e) => Err(Attempt::Final(e.to_string())),
            },
        );
        let reply = match result {
            Ok(r) => r,
            Err(GaveUp::Final(e)) => {
                return Err(Error::failed(
                    Step::Metadata,
                    format!("GET {url}: {e}"),
                    hint(&e),
                ));
            }
            Err(GaveUp::Deadline { last, attempts }) => {
                return Err(Error::failed(
                    Step::Metadata,
                    format!(
                        "GET {url}: {last} (gave up after {attempts} attempts: deadline reached)"
                    ),
                    hint(&last),
                ));
            }
        };
        let value = String::from_utf8_lossy(&reply.body).trim().to_string();
        let printable =
            !value.is_empty() && value.len() <= 256 && value.chars().all(|c| c.is_ascii_graphic());
        if !printable {
            return Err(Error::failed(
                Step::Metadata,
                format!("GET {url}: the answer is not a plain value"),
                "metadata.url must point at the metadata service's meta-data/ directory",
            ));
        }
        Ok(value)
    }
}

fn hint(error: &str) -> String {
    if error.contains("HTTP 404") {
        "the metadata server does not know this key: check metadata.url (it must end in /1.0/meta-data/)".to_string()
    } else {
        "is this an Exoscale instance with a public network interface, and is the network up? Private-network instances have no metadata server".to_string()
    }
}

impl IdentitySource for ExoscaleMetadata {
    fn describe(&self) -> String {
        format!("Exoscale metadata server {}", self.url)
    }

    fn fetch(&self, deadline: &Deadline) -> Result<Identity> {
        Ok(Identity {
            instance_id: self.get("instance-id", deadline)?,
            zone: self.get("availability-zone", deadline)?,
        })
    }
}
