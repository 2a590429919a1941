//! `vault-luks close`: close the mappings, as the article's unit did on stop. A mapping that is
//! not open is already closed: success. A busy one (mounted) is cryptsetup's refusal, reported.

use crate::config::Config;
use crate::error::{Error, Result, Step};
use crate::unlock::{locate_cryptsetup, select};
use std::time::Duration;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn close(config: &Config, names: &[String]) -> Result<()> {
    let volumes = select(config, names)?;
    let cs = locate_cryptsetup()?;
    let mut failed = Vec::new();
    for v in volumes {
        match cs.is_active(&v.name, CLOSE_TIMEOUT) {
            Ok(false) => crate::log::info(format_args!("{}: not open, nothing to do", v.name)),
            Ok(true) => match cs.close(&v.name, CLOSE_TIMEOUT) {
                Ok(()) => crate::log::info(format_args!("{}: closed", v.name)),
                Err(words) => {
                    crate::log::error(format_args!("{}: cryptsetup close: {words}", v.name));
                    failed.push(v.name.clone());
                }
            },
            Err(words) => {
                crate::log::error(format_args!("{}: cryptsetup status: {words}", v.name));
                failed.push(v.name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::failed(
            Step::Close,
            format!("could not close {}", failed.join(", ")),
            "unmount the file system first (umount), then close again",
        ))
    }
}
