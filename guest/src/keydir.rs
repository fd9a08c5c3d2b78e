//! Writing the released keys: a `0700` directory of `0600` files, each written to a
//! temporary name and renamed into place (a reader never sees a partial key).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::state::AppSecrets;

/// The app k256 secret, 32 raw bytes.
pub const APP_KEY_FILE: &str = "app.key";
/// The disk key, 32 raw bytes.
pub const DISK_KEY_FILE: &str = "disk.key";
/// The KMS root CA certificate, PEM.
pub const ROOT_CA_FILE: &str = "root-ca.pem";
/// The release receipt, JSON.
pub const RECEIPT_FILE: &str = "receipt.json";

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::KeysDir {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Create (or tighten) `dir` as a real directory with mode `0700`.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => return Err(err(dir, "is a symlink")),
        Ok(m) if !m.is_dir() => return Err(err(dir, "is not a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(dir, e))?,
        Err(e) => return Err(err(dir, e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| err(dir, e))
}

/// Write `bytes` to `dir/name` with mode `0600`, atomically.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    fs::rename(&tmp, &dst).map_err(|e| err(&dst, e))
}

/// Write every released key and the receipt into `dir`.
pub fn write_keys(dir: &Path, secrets: &AppSecrets) -> Result<()> {
    ensure_private_dir(dir)?;
    write_private(dir, APP_KEY_FILE, &secrets.app_key[..])?;
    write_private(dir, DISK_KEY_FILE, &secrets.disk_key[..])?;
    write_private(dir, ROOT_CA_FILE, secrets.root_ca_cert.as_bytes())?;
    let receipt = serde_json::to_vec_pretty(&secrets.receipt).map_err(|e| err(dir, e))?;
    write_private(dir, RECEIPT_FILE, &receipt)
}
