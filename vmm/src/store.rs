//! What the VMM keeps on disk per CVM, and how it writes it.
//!
//! ```text
//! <state_dir>/vmm.lock             exclusive lock: one VMM per state directory
//! <state_dir>/cvms/<id>/
//!   manifest.json                  Manifest: app id, exact compose, image, resources,
//!                                  ports, encrypted env (ciphertext), KMS/gateway URLs
//!   state.json                     Persisted: state machine, process (pid, start time,
//!                                  boot id), guest reports, a pending upgrade
//!   shared/                        the host share: app-compose.json, sys-config.json,
//!                                  .encrypted-env, .instance-info
//!   console.log, console.log.1     the guest's stdout+stderr (rotated by size)
//!   host-api.sock                  the guest → host channel (process backend)
//!   keys/, work/, agent.sock       the guest's own files (process backend only)
//! ```
//!
//! **Atomic writes**: a file is written to `<name>.tmp` (0600), fsynced, renamed over
//! `<name>`, and the directory fsynced, so a crash leaves the old or the new file, never
//! a torn one. A new CVM is assembled in `cvms/.new-<id>/` and renamed into place, so a
//! crash never leaves a half-created CVM (leftover `.new-*` directories are removed at
//! startup). Every file read is size-bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use cairn_protocol::hex0x;
use cairn_protocol::vmm::{CvmState, GuestEvent, PortMapping, UpgradeStatus};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the manifest and state formats.
pub const FORMAT_VERSION: u32 = 1;
/// Largest `manifest.json` / `state.json` read (a compose and an env of 256 KiB each,
/// hex-encoded, twice for a pending upgrade, fit).
pub const MAX_RECORD_LEN: u64 = 4 * 1024 * 1024;
/// The CVMs' directory inside the state directory.
pub const CVMS_DIR: &str = "cvms";
/// Prefix of a CVM directory being assembled.
pub const NEW_PREFIX: &str = ".new-";

/// A CVM's configuration, as deployed (rewritten by an upgrade).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The CVM id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The app id.
    #[serde(with = "hex0x::fixed")]
    pub app_id: [u8; 20],
    /// The exact `app-compose.json` text.
    pub compose: String,
    /// The OS image `NAME:VERSION`.
    pub image: String,
    /// The image's hash at deploy time.
    #[serde(with = "hex0x::fixed")]
    pub os_image_hash: [u8; 32],
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// `.encrypted-env` ciphertext.
    #[serde(default, with = "opt_hex", skip_serializing_if = "Option::is_none")]
    pub encrypted_env: Option<Vec<u8>>,
    /// KMS URLs.
    pub kms_urls: Vec<String>,
    /// Gateway URLs.
    pub gateway_urls: Vec<String>,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// The vsock CID (qemu backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_cid: Option<u32>,
}

impl Manifest {
    /// SHA-256 of the compose text.
    pub fn compose_hash(&self) -> [u8; 32] {
        cairn_protocol::compose::compose_hash(self.compose.as_bytes())
    }
}

/// A guest process (or QEMU) the VMM started, identified beyond its pid so a reused pid
/// is never mistaken for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRef {
    /// Its pid (also its session id: it runs in its own session).
    pub pid: u32,
    /// Its start time, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// The host's boot id when it started (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
}

/// An upgrade waiting for the chain, with the manifest it will apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingUpgrade {
    /// Progress, as shown.
    pub status: UpgradeStatus,
    /// The manifest to apply once allowed.
    pub target: Manifest,
}

/// A CVM's persisted state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Lifecycle state.
    pub state: CvmState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the state last changed, unix seconds.
    pub changed_at: u64,
    /// The running guest, while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRef>,
    /// Guest reports of the current (or last) boot.
    #[serde(default)]
    pub events: Vec<GuestEvent>,
    /// An upgrade, pending or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<PendingUpgrade>,
}

impl Persisted {
    /// A freshly created CVM.
    pub fn created(now: u64) -> Self {
        Persisted {
            version: FORMAT_VERSION,
            state: CvmState::Created,
            reason: None,
            changed_at: now,
            process: None,
            events: Vec::new(),
            upgrade: None,
        }
    }
}

/// The paths of one CVM directory.
#[derive(Clone, Debug)]
pub struct CvmDir {
    /// The directory.
    pub root: PathBuf,
}

impl CvmDir {
    /// The directory of CVM `id` under `state_dir`.
    pub fn new(state_dir: &Path, id: &str) -> Self {
        CvmDir {
            root: state_dir.join(CVMS_DIR).join(id),
        }
    }
}

/// One accessor of [`CvmDir`] a row: `name => path below the CVM's directory`.
macro_rules! cvm_dir_paths {
    ($($(#[$doc:meta])* $name:ident => $rel:literal;)*) => {
        impl CvmDir {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> PathBuf {
                    self.root.join($rel)
                }
            )*
        }
    };
}

cvm_dir_paths! {
    /// `manifest.json`.
    manifest => "manifest.json";
    /// `state.json`.
    state => "state.json";
    /// The host share.
    shared => "shared";
    /// The console log.
    console => "console.log";
    /// The rotated console log.
    console_old => "console.log.1";
    /// The host-API socket.
    host_api => "host-api.sock";
    /// The guest's keys directory (process backend).
    keys => "keys";
    /// The guest's work directory (process backend).
    work => "work";
    /// The guest agent's socket (process backend).
    agent_socket => "agent.sock";
}

/// Write `bytes` to `path` atomically (temp file 0600 + fsync + rename + dir fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::io("write", path, std::io::Error::other("no parent directory")))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::io("write", path, std::io::Error::other("no file name")))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    sync_dir(dir)
}

/// fsync a directory (makes renames and creations in it durable).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync", dir, e))
}

/// Serialize `value` as JSON and write it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: format!("cannot serialize: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// Read `path` (at most `max` bytes).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    if buf.len() as u64 > max {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            reason: format!("larger than {max} bytes"),
        });
    }
    Ok(buf)
}

/// Read and parse a JSON record written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = read_bounded(path, MAX_RECORD_LEN)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `Option<Vec<u8>>` as `0x` hex.
mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&cairn_protocol::hex0x::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => {
                cairn_protocol::hex0x::decode_capped(&s, cairn_protocol::env::MAX_ENCRYPTED_ENV_LEN)
                    .map(Some)
                    .map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn atomic_writes_replace_whole_files_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_leftover_temp_file_does_not_change_what_is_read() {
        // A crash after writing the temp file but before the rename leaves the old file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_json(&path, &Persisted::created(1)).unwrap();
        std::fs::write(dir.path().join("state.json.tmp"), b"{torn").unwrap();
        let p: Persisted = read_json(&path).unwrap();
        assert_eq!(p.state, CvmState::Created);
        write_json(&path, &Persisted::created(2)).unwrap();
        let p: Persisted = read_json(&path).unwrap();
        assert_eq!(p.changed_at, 2);
    }

    #[test]
    fn corrupt_and_oversized_records_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, b"{\"version\":1}").unwrap();
        assert!(matches!(
            read_json::<Manifest>(&path).unwrap_err(),
            Error::Corrupt { .. }
        ));
        let f = File::create(&path).unwrap();
        f.set_len(MAX_RECORD_LEN + 1).unwrap();
        let e = read_json::<Manifest>(&path).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { ref reason, .. } if reason.contains("larger")),
            "{e}"
        );
        assert!(matches!(
            read_json::<Manifest>(&dir.path().join("missing")).unwrap_err(),
            Error::Io { op: "open", .. }
        ));
    }
}
