//! The optional state directory: the serving chain (`cert.pem`), its key (`key.pem`,
//! mode 0600) and the published document (`acme-info.json`), so a restarted node serves
//! its certificate again instead of ordering a new one (CAs rate-limit duplicates).
//! Each file is written to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use crate::attest::AcmeInfo;
use crate::error::{Error, Result};
use crate::store::ServingCert;

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
const INFO_FILE: &str = "acme-info.json";
/// Largest state file read.
const MAX_STATE_FILE_LEN: u64 = 8 * 1024 * 1024;

/// A state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Read a file of at most [`MAX_STATE_FILE_LEN`] bytes; `None` if it does not exist.
fn read_bounded(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_STATE_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    if buf.len() as u64 > MAX_STATE_FILE_LEN {
        return Err(corrupt(path, "larger than the bound"));
    }
    Ok(Some(buf))
}

impl StateDir {
    /// Use (and create, mode 0700) `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The saved certificate, if both files exist (a half-written pair is an error).
    pub(crate) fn load_cert(&self) -> Result<Option<ServingCert>> {
        let cert_path = self.dir.join(CERT_FILE);
        let key_path = self.dir.join(KEY_FILE);
        let (cert, key) = match (read_bounded(&cert_path)?, read_bounded(&key_path)?) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => return Err(corrupt(&self.dir, "cert.pem and key.pem must both exist")),
        };
        let chain = std::str::from_utf8(&cert).map_err(|_| corrupt(&cert_path, "not UTF-8"))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(&key)
            .map_err(|e| corrupt(&key_path, format!("not a PKCS#8 PEM key: {e}")))?;
        ServingCert::from_pem(chain, key.secret_pkcs8_der())
            .map(Some)
            .map_err(|e| corrupt(&cert_path, e.to_string()))
    }

    /// The saved published document, if any.
    pub(crate) fn load_info(&self) -> Result<Option<AcmeInfo>> {
        let path = self.dir.join(INFO_FILE);
        match read_bounded(&path)? {
            None => Ok(None),
            Some(bytes) => AcmeInfo::parse(&bytes)
                .map(Some)
                .map_err(|e| corrupt(&path, e.to_string())),
        }
    }

    /// Save the key (0600) and then the chain.
    pub(crate) fn save_cert(&self, cert: &ServingCert) -> Result<()> {
        let key_pem = Zeroizing::new(pem_encode("PRIVATE KEY", cert.key_pkcs8()));
        self.write_atomic(KEY_FILE, key_pem.as_bytes())?;
        self.write_atomic(CERT_FILE, cert.chain_pem().as_bytes())
    }

    /// Save the published document.
    pub(crate) fn save_info(&self, info: &AcmeInfo) -> Result<()> {
        let json = serde_json::to_vec_pretty(info)
            .map_err(|e| corrupt(&self.dir.join(INFO_FILE), e.to_string()))?;
        self.write_atomic(INFO_FILE, &json)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
