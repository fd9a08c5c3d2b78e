//! Reading the host share: the directory the (untrusted) host hands the CVM.
//!
//! | file | required | cap |
//! |---|---|---|
//! | `app-compose.json` | yes | [`MAX_APP_COMPOSE_LEN`] |
//! | `sys-config.json` | yes | [`MAX_SYS_CONFIG_LEN`] |
//! | `.instance-info` | no | [`MAX_INSTANCE_INFO_LEN`] |
//! | `.encrypted-env` | no | [`MAX_ENCRYPTED_ENV_LEN`] |
//!
//! Every file must be a regular file, not a symlink: the name is checked with
//! `symlink_metadata` and the opened file's device and inode must equal it (so a swap
//! between the check and the open is caught). At most `cap + 1` bytes are read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cairn_protocol::compose::{compose_hash, AppCompose, MAX_APP_COMPOSE_LEN};
use cairn_protocol::env::MAX_ENCRYPTED_ENV_LEN;
use cairn_protocol::sysconfig::{
    InstanceInfo, SysConfig, MAX_INSTANCE_INFO_LEN, MAX_SYS_CONFIG_LEN,
};

use crate::error::{Error, Result};

/// `app-compose.json`.
pub const APP_COMPOSE: &str = "app-compose.json";
/// `sys-config.json`.
pub const SYS_CONFIG: &str = "sys-config.json";
/// `.instance-info`.
pub const INSTANCE_INFO: &str = ".instance-info";
/// `.encrypted-env`.
pub const ENCRYPTED_ENV: &str = ".encrypted-env";

/// The host share, read and validated.
#[derive(Debug, Clone)]
pub struct HostShare {
    /// The share directory.
    pub dir: PathBuf,
    /// The exact bytes of `app-compose.json` (hashed as they are).
    pub compose_bytes: Vec<u8>,
    /// SHA-256 of [`Self::compose_bytes`].
    pub compose_hash: [u8; 32],
    /// The parsed, validated compose.
    pub compose: AppCompose,
    /// `sys-config.json`.
    pub sys_config: SysConfig,
    /// `.instance-info`, if present.
    pub instance_info: Option<InstanceInfo>,
    /// `.encrypted-env`, if present.
    pub encrypted_env: Option<Vec<u8>>,
}

impl HostShare {
    /// Read and validate every file of the share in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let compose_bytes = read_capped(dir, APP_COMPOSE, MAX_APP_COMPOSE_LEN)?
            .ok_or_else(|| missing(APP_COMPOSE))?;
        let compose = AppCompose::parse(&compose_bytes)?;
        let sys_config = SysConfig::parse(
            &read_capped(dir, SYS_CONFIG, MAX_SYS_CONFIG_LEN)?
                .ok_or_else(|| missing(SYS_CONFIG))?,
        )?;
        let instance_info = read_capped(dir, INSTANCE_INFO, MAX_INSTANCE_INFO_LEN)?
            .map(|b| InstanceInfo::parse(&b))
            .transpose()?;
        let encrypted_env =
            read_capped(dir, ENCRYPTED_ENV, MAX_ENCRYPTED_ENV_LEN)?.filter(|b| !b.is_empty());
        Ok(HostShare {
            dir: dir.to_owned(),
            compose_hash: compose_hash(&compose_bytes),
            compose_bytes,
            compose,
            sys_config,
            instance_info,
            encrypted_env,
        })
    }
}

fn missing(file: &str) -> Error {
    Error::ShareFile {
        file: file.to_owned(),
        reason: "missing".to_owned(),
    }
}

/// Read `dir/name` if it exists: a regular file (no symlink) of at most `max` bytes.
pub fn read_capped(dir: &Path, name: &str, max: usize) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let err = |reason: String| Error::ShareFile {
        file: name.to_owned(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(err("is a symlink (not followed)".to_owned()));
    }
    if !meta.file_type().is_file() {
        return Err(err("is not a regular file".to_owned()));
    }
    let file = File::open(&path).map_err(|e| err(e.to_string()))?;
    let opened = file.metadata().map_err(|e| err(e.to_string()))?;
    if opened.dev() != meta.dev() || opened.ino() != meta.ino() || !opened.file_type().is_file() {
        return Err(err("changed while being opened".to_owned()));
    }
    let mut buf = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if buf.len() > max {
        return Err(Error::ShareFileTooLarge {
            file: name.to_owned(),
            max,
        });
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE: &str = r#"{"manifest_version":2,"name":"demo","runner":"process","process":{"command":["/bin/true"]},"kms_enabled":true}"#;

    fn share() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(APP_COMPOSE), COMPOSE).unwrap();
        std::fs::write(
            d.path().join(SYS_CONFIG),
            r#"{"kms_urls":["https://127.0.0.1:1"]}"#,
        )
        .unwrap();
        d
    }

    #[test]
    fn a_complete_share_reads() {
        let d = share();
        let s = HostShare::read(d.path()).unwrap();
        assert_eq!(s.compose_bytes, COMPOSE.as_bytes());
        assert_eq!(s.compose_hash, compose_hash(COMPOSE.as_bytes()));
        assert!(s.instance_info.is_none() && s.encrypted_env.is_none());
    }

    /// `break_share` applied to a complete share makes [`HostShare::read`] refuse it with
    /// an error `is_expected` accepts (the error is printed when it does not).
    fn assert_refused(break_share: fn(&Path), is_expected: fn(&Error) -> bool) {
        let d = share();
        break_share(d.path());
        match HostShare::read(d.path()) {
            Ok(_) => panic!("the share was read"),
            Err(e) => assert!(is_expected(&e), "{e}"),
        }
    }

    /// The broken shares, one test each: `name: how the share is broken => the error it
    /// must be refused with,` (each refused naming the file and what is wrong).
    macro_rules! broken_shares_are_refused {
        ($($name:ident: $break_share:expr => $expected:pat $(if $guard:expr)?,)+) => {$(
            #[test]
            fn $name() {
                assert_refused($break_share, |e| matches!(e, $expected $(if $guard)?));
            }
        )+};
    }

    broken_shares_are_refused! {
        a_symlinked_share_file_is_refused: |d| {
            let outside = d.join("elsewhere.json");
            std::fs::rename(d.join(APP_COMPOSE), &outside).unwrap();
            std::os::unix::fs::symlink(&outside, d.join(APP_COMPOSE)).unwrap();
        } => Error::ShareFile { file, reason } if file == APP_COMPOSE && reason.contains("symlink"),

        an_oversized_share_file_is_refused_without_reading_it_all: |d| {
            let oversized = vec![0u8; MAX_ENCRYPTED_ENV_LEN + 1];
            std::fs::write(d.join(ENCRYPTED_ENV), oversized).unwrap();
        } => Error::ShareFileTooLarge { file, max } if file == ENCRYPTED_ENV && *max == MAX_ENCRYPTED_ENV_LEN,

        a_missing_compose_is_refused: |d| std::fs::remove_file(d.join(APP_COMPOSE)).unwrap()
            => Error::ShareFile { reason, .. } if reason == "missing",

        a_directory_for_the_compose_is_refused: |d| {
            std::fs::remove_file(d.join(APP_COMPOSE)).unwrap();
            std::fs::create_dir(d.join(APP_COMPOSE)).unwrap();
        } => Error::ShareFile { reason, .. } if reason.contains("regular"),

        a_malformed_compose_is_a_compose_error: |d| {
            let compose = r#"{"manifest_version":2,"name":"x","runner":"podman"}"#;
            std::fs::write(d.join(APP_COMPOSE), compose).unwrap();
        } => Error::Compose(cairn_protocol::compose::ComposeError::UnknownRunner(r)) if r == "podman",
    }
}
