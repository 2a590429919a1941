//! `vault-luks close`: the article's `stop`: unmount what is mounted from the volume, then close
//! the mapping. A busy mount is refused with what to do, unless --force (lazy unmount, and a
//! deferred close that completes when the last user lets go). A mapping that is not open is
//! already closed: success.

use crate::config::Config;
use crate::error::{Error, Result, Step};
use crate::luks::cryptsetup::{run, Input};
use crate::luks::mapper::is_active;
use crate::luks::mounts::mount_points;
use crate::unlock::{locate_cryptsetup, select};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn close(config: &Config, names: &[String], force: bool) -> Result<()> {
    let volumes = select(config, names)?;
    let cs = locate_cryptsetup()?;
    let mut failed = Vec::new();
    for v in volumes {
        match is_active(Some(&cs), &v.name, CLOSE_TIMEOUT) {
            Ok(false) => crate::log::info(format_args!("{}: not open, nothing to do", v.name)),
            Ok(true) => {
                let mapping = format!("/dev/mapper/{}", v.name);
                if let Err(why) = unmount_all(Path::new(&mapping), force) {
                    crate::log::error(format_args!("{}: {why}", v.name));
                    failed.push(v.name.clone());
                    continue;
                }
                let args: &[&str] = if force {
                    &["close", "--deferred", &v.name]
                } else {
                    &["close", &v.name]
                };
                match cs.exec(args, Input::Nothing, None, CLOSE_TIMEOUT) {
                    Ok(_) => crate::log::info(format_args!("{}: closed", v.name)),
                    // Someone else (blkdeactivate at shutdown, an operator) closed it meanwhile.
                    Err(_) if is_active(Some(&cs), &v.name, CLOSE_TIMEOUT) == Ok(false) => {
                        crate::log::info(format_args!(
                            "{}: closed meanwhile by another process, nothing to do",
                            v.name
                        ))
                    }
                    Err(e) => {
                        crate::log::error(format_args!(
                            "{}: cryptsetup close: {}",
                            v.name,
                            describe(e)
                        ));
                        failed.push(v.name.clone());
                    }
                }
            }
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
            "stop what uses the file system (fuser -vm MOUNTPOINT), then close again; --force unmounts lazily and closes when the last user is gone",
        ))
    }
}

fn describe(e: crate::luks::OpenError) -> String {
    match e {
        crate::luks::OpenError::Failed(words) | crate::luks::OpenError::Crashed(words) => words,
        other => format!("{other:?}"),
    }
}

fn unmount_all(mapping: &Path, force: bool) -> std::result::Result<(), String> {
    for point in mount_points(mapping) {
        let mut cmd = Command::new("umount");
        if force {
            cmd.arg("--lazy");
        }
        cmd.arg(&point);
        let out = run(cmd, Input::Nothing, None, CLOSE_TIMEOUT)
            .map_err(|e| format!("umount {point}: {e:?}"))?;
        if !out.status.success() {
            return Err(format!(
                "{point} is busy or cannot be unmounted: {}",
                out.stderr.trim()
            ));
        }
        crate::log::info(format_args!(
            "unmounted {point}{}",
            if force { " (lazily)" } else { "" }
        ));
    }
    Ok(())
}
