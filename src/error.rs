//! What can go wrong, in words an operator at a boot console can act on. Each failure names the
//! step, what happened (the server's own words where there are any) and what to do next.

use std::fmt;

/// Exit codes, documented in --help and the README.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone)]
pub enum Error {
    /// Bad command line: exit 2.
    Usage(String),
    /// Invalid configuration: exit 2. `origin` is the file (or "kernel command line", "environment").
    Config {
        origin: String,
        field: String,
        message: String,
    },
    /// A step of unlock/close/status failed: exit 1.
    Failed(Failure),
}

#[derive(Debug, Clone)]
pub struct Failure {
    /// The volume this is about, when it is about one.
    pub volume: Option<String>,
    pub step: Step,
    pub detail: String,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Metadata,
    Login,
    Decrypt,
    Encrypt,
    Rewrap,
    Enroll,
    Rotate,
    Device,
    Ciphertext,
    Cryptsetup,
    Close,
    Unlock,
    Network,
    Image,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Metadata => "metadata",
            Step::Login => "vault login",
            Step::Decrypt => "transit decrypt",
            Step::Encrypt => "transit encrypt",
            Step::Rewrap => "transit rewrap",
            Step::Enroll => "enroll",
            Step::Rotate => "rotate",
            Step::Device => "device",
            Step::Ciphertext => "ciphertext",
            Step::Cryptsetup => "cryptsetup",
            Step::Close => "close",
            Step::Unlock => "unlock",
            Step::Network => "network",
            Step::Image => "initramfs image",
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config { .. } => EXIT_USAGE,
            Error::Failed(_) => EXIT_FAILED,
        }
    }

    pub fn config(
        origin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            origin: origin.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, said about one volume.
    pub fn for_volume(self, name: &str) -> Self {
        match self {
            Error::Failed(f) => Error::Failed(Failure {
                volume: Some(name.to_string()),
                ..f
            }),
            other => other,
        }
    }

    pub fn failed(step: Step, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Failed(Failure {
            volume: None,
            step,
            detail: detail.into(),
            hint: hint.into(),
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = &self.volume {
            write!(f, "{v}: ")?;
        }
        write!(f, "{} failed: {}", self.step.name(), self.detail)?;
        if !self.hint.is_empty() {
            write!(f, " -- {}", self.hint)?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m} (see vault-luks --help)"),
            Error::Config {
                origin,
                field,
                message,
            } => {
                if field.is_empty() {
                    write!(f, "invalid configuration in {origin}: {message}")
                } else {
                    write!(f, "invalid configuration in {origin}: {field}: {message}")
                }
            }
            Error::Failed(failure) => failure.fmt(f),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_contract() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::config("f", "vault.address", "bad").exit_code(), 2);
        assert_eq!(Error::failed(Step::Login, "403", "").exit_code(), 1);
    }

    #[test]
    fn config_error_names_file_field_and_problem() {
        let e = Error::config(
            "/etc/vault-luks/config.json",
            "volumes[0].device",
            "expected a string",
        );
        assert_eq!(
            e.to_string(),
            "invalid configuration in /etc/vault-luks/config.json: volumes[0].device: expected a string"
        );
    }

    #[test]
    fn failure_names_step_detail_and_hint() {
        let e = Error::failed(
            Step::Decrypt,
            "HTTP 403: permission denied",
            "check the role's policies",
        );
        assert_eq!(
            e.to_string(),
            "transit decrypt failed: HTTP 403: permission denied -- check the role's policies"
        );
    }
}
