//! The hardware-level TEE interface: extend RTMR3, produce a quote.
//!
//! Two backends implement [`Tee`]: the in-process simulator (`crate::simulator`) and
//! [`TdxTee`], which talks to a real Intel TDX guest kernel through two Linux ABIs:
//!
//! - **Quotes: configfs-tsm** (`Documentation/ABI/testing/configfs-tsm-report`, Linux ≥ 6.7).
//!   A report is a directory `<tsm_root>/report/<name>` created with `mkdir`; the kernel
//!   fills it with attributes. We read `provider` (must be `tdx_guest`), read
//!   `generation`, write the 64 report-data bytes to `inblob`, read `outblob` (the quote),
//!   read `generation` again and require it to be exactly one more than before: the ABI
//!   says the counter "increments each time @inblob or any option is written", so any
//!   other value means a concurrent writer changed the request under us and the quote
//!   may not carry our report data. The directory is removed afterwards (`rmdir`).
//!   Each call uses its own, fresh directory, which is what the ABI recommends to avoid
//!   conflicts in the first place; the generation check is the second line of defence.
//! - **RTMR extension: tdx_guest sysfs** (`Documentation/ABI/testing/
//!   sysfs-devices-virtual-misc-tdx_guest`, Linux ≥ 6.16). Writing exactly 48 bytes at
//!   offset 0 of `<sysfs_root>/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384`
//!   extends RTMR3 with them (`TDG.MR.RTMR.EXTEND`); a partial write fails with `EINVAL`.
//!   Older kernels only offer the `/dev/tdx_guest` ioctl, which needs `unsafe` and is
//!   deliberately not supported (the error says so).
//!
//! Both roots are configurable ([`TdxTee::with_roots`]) so tests run against a fake tree.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Error from a TEE backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// An I/O error talking to the TEE interface.
    #[error("tee i/o: {0}")]
    Io(String),
    /// The operation is not supported by this backend or platform.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Quote generation failed.
    #[error("quote generation failed: {0}")]
    Quote(String),
    /// The configfs-tsm `generation` counter did not advance by exactly one while we
    /// produced a quote: another writer touched the report, so the quote is discarded.
    #[error("configfs-tsm generation changed from {before} to {after}, expected {expected}: concurrent writer")]
    GenerationRace {
        /// Counter read before writing `inblob`.
        before: u64,
        /// Counter read after reading `outblob`.
        after: u64,
        /// The only acceptable value of `after` (`before + 1`).
        expected: u64,
    },
    /// The kernel returned a quote larger than [`TdxTee::MAX_OUTBLOB_LEN`].
    #[error("configfs-tsm outblob exceeds {limit} bytes")]
    OutblobTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The configfs-tsm provider is not the TDX guest driver (e.g. an SEV-SNP guest).
    #[error("configfs-tsm provider is {0:?}, expected \"tdx_guest\"")]
    WrongProvider(String),
}

/// A trusted execution environment that can extend RTMR3 and produce quotes.
pub trait Tee: Send + Sync {
    /// Extend RTMR3 with a 48-byte digest.
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<(), TeeError>;
    /// Produce a quote over 64 bytes of report data.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError>;
    /// Whether this TEE is a simulation whose quotes prove nothing about hardware
    /// ([`crate::simulator::SimTdx`]). Only development shortcuts key on it (a guest on
    /// the simulator may boot without a KMS pin); the default is `false`, so every other
    /// backend gets the production rules.
    fn is_simulated(&self) -> bool {
        false
    }
}

/// Largest `generation` / `provider` attribute read (they are short text).
const MAX_TSM_ATTR_LEN: usize = 64;

/// The real TDX backend: configfs-tsm for quotes, tdx_guest sysfs for RTMR3.
#[derive(Debug)]
pub struct TdxTee {
    tsm_root: PathBuf,
    sysfs_root: PathBuf,
    /// Makes report directory names unique within this process.
    counter: AtomicU64,
}

impl Default for TdxTee {
    fn default() -> Self {
        Self::new()
    }
}

impl TdxTee {
    /// Default configfs-tsm root (`/sys/kernel/config/tsm`); reports live under `report/`.
    pub const DEFAULT_TSM_ROOT: &'static str = "/sys/kernel/config/tsm";
    /// Default sysfs root.
    pub const DEFAULT_SYSFS_ROOT: &'static str = "/sys";
    /// Path of the RTMR3 measurement attribute, relative to the sysfs root.
    pub const RTMR3_SYSFS_PATH: &'static str =
        "devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384";
    /// The configfs-tsm `provider` value of the TDX guest driver.
    pub const TSM_PROVIDER: &'static str = "tdx_guest";
    /// Largest quote read from `outblob`. The kernel itself caps outblobs at 32 KiB
    /// (`TSM_REPORT_OUTBLOB_MAX`); a TDX v4 quote with its PCK chain is about 5 KB.
    pub const MAX_OUTBLOB_LEN: usize = 64 * 1024;

    /// The backend with the kernel's default paths ([`Self::DEFAULT_TSM_ROOT`],
    /// [`Self::DEFAULT_SYSFS_ROOT`]).
    pub fn new() -> Self {
        Self::with_roots(Self::DEFAULT_TSM_ROOT, Self::DEFAULT_SYSFS_ROOT)
    }

    /// The backend with other roots, e.g. a fake tree in tests or a configfs mounted elsewhere.
    /// `tsm_root` is the directory that contains `report/`; `sysfs_root` the one that
    /// contains `devices/`.
    pub fn with_roots(tsm_root: impl Into<PathBuf>, sysfs_root: impl Into<PathBuf>) -> Self {
        Self {
            tsm_root: tsm_root.into(),
            sysfs_root: sysfs_root.into(),
            counter: AtomicU64::new(0),
        }
    }

    fn report_root(&self) -> PathBuf {
        self.tsm_root.join("report")
    }

    fn rtmr3_path(&self) -> PathBuf {
        self.sysfs_root.join(Self::RTMR3_SYSFS_PATH)
    }

    /// A directory name no other call (in this or another process) uses concurrently.
    fn fresh_report_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("cairn-{}-{n}", std::process::id())
    }
}

impl Tee for TdxTee {
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<(), TeeError> {
        let path = self.rtmr3_path();
        // No `create`, no `truncate`: the attribute must exist, and sysfs rejects both.
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TeeError::Unsupported(format!(
                    "{} not found: RTMR extension needs the tdx_guest measurements sysfs \
                     interface (Linux >= 6.16) in a TDX guest",
                    path.display()
                )))
            }
            Err(e) => return Err(io_err("open", &path, e)),
        };
        // One write of exactly 48 bytes: the kernel treats anything else as EINVAL, and
        // `write_all` could split the buffer into partial writes.
        let n = file.write(digest).map_err(|e| io_err("write", &path, e))?;
        if n != digest.len() {
            return Err(TeeError::Io(format!(
                "short write to {}: {n} of {} bytes",
                path.display(),
                digest.len()
            )));
        }
        Ok(())
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
        let root = self.report_root();
        if !root.is_dir() {
            return Err(TeeError::Unsupported(format!(
                "{} is not a directory: quotes need configfs-tsm (Linux >= 6.7, configfs \
                 mounted at /sys/kernel/config) in a TDX guest",
                root.display()
            )));
        }
        let dir = root.join(self.fresh_report_name());
        fs::create_dir(&dir).map_err(|e| io_err("mkdir", &dir, e))?;
        let _guard = RemoveDirOnDrop(&dir);
        generate_report(&dir, report_data)
    }
}

/// Removes a configfs report directory (`rmdir`; configfs drops its attributes with it).
struct RemoveDirOnDrop<'a>(&'a Path);

impl Drop for RemoveDirOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove configfs-tsm report directory");
        }
    }
}

/// Runs one report request in an existing configfs-tsm report directory `dir`.
fn generate_report(dir: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
    let provider = read_attr(&dir.join("provider"))?;
    if provider != TdxTee::TSM_PROVIDER {
        return Err(TeeError::WrongProvider(provider));
    }

    let generation_path = dir.join("generation");
    let before = read_generation(&generation_path)?;

    let inblob = dir.join("inblob");
    let mut file = OpenOptions::new()
        .write(true)
        .open(&inblob)
        .map_err(|e| io_err("open", &inblob, e))?;
    let n = file
        .write(report_data)
        .map_err(|e| io_err("write", &inblob, e))?;
    if n != report_data.len() {
        return Err(TeeError::Io(format!(
            "short write to {}: {n} of 64 bytes",
            inblob.display()
        )));
    }
    drop(file);

    let outblob = dir.join("outblob");
    let quote = read_capped(&outblob, TdxTee::MAX_OUTBLOB_LEN)
        .map_err(|e| io_err("read", &outblob, e))?
        .ok_or(TeeError::OutblobTooLarge {
            limit: TdxTee::MAX_OUTBLOB_LEN,
        })?;

    let after = read_generation(&generation_path)?;
    let expected = before
        .checked_add(1)
        .ok_or_else(|| TeeError::Quote(format!("generation counter {before} cannot advance")))?;
    if after != expected {
        return Err(TeeError::GenerationRace {
            before,
            after,
            expected,
        });
    }
    if quote.is_empty() {
        return Err(TeeError::Quote(format!("{} is empty", outblob.display())));
    }
    Ok(quote)
}

/// Reads at most `limit` bytes; `None` when the file is longer.
fn read_capped(path: &Path, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut buf)?;
    Ok((buf.len() <= limit).then_some(buf))
}

/// Reads a short text attribute, trimmed of trailing whitespace.
fn read_attr(path: &Path) -> Result<String, TeeError> {
    let bytes = read_capped(path, MAX_TSM_ATTR_LEN)
        .map_err(|e| io_err("read", path, e))?
        .ok_or_else(|| {
            TeeError::Io(format!(
                "{} is longer than {MAX_TSM_ATTR_LEN} bytes",
                path.display()
            ))
        })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| TeeError::Io(format!("{} is not UTF-8", path.display())))?;
    Ok(text.trim_end().to_owned())
}

fn read_generation(path: &Path) -> Result<u64, TeeError> {
    let text = read_attr(path)?;
    text.parse::<u64>().map_err(|_| {
        TeeError::Io(format!(
            "{} holds {text:?}, not a decimal counter",
            path.display()
        ))
    })
}

fn io_err(op: &str, path: &Path, e: io::Error) -> TeeError {
    TeeError::Io(format!("{op} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    //! The fake kernel: `generation` and `outblob` are FIFOs served by a thread, so every
    //! read blocks until the "kernel" answers, exactly as it observes our writes (no sleeps).

    use std::process::Command;
    use std::thread;

    use super::*;

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    /// How the fake kernel misbehaves, if at all.
    #[derive(Clone, Copy)]
    enum Kernel {
        Honest,
        /// Someone else writes an option between our reads of `generation`.
        Racing,
        /// Returns an outblob of this many bytes.
        Outblob(usize),
    }

    /// Creates a report directory whose attributes a thread serves like configfs-tsm would.
    fn fake_report_dir(dir: &Path, kernel: Kernel) -> thread::JoinHandle<Vec<u8>> {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("provider"), "tdx_guest\n").unwrap();
        fs::write(dir.join("inblob"), b"").unwrap();
        mkfifo(&dir.join("generation"));
        mkfifo(&dir.join("outblob"));
        let dir = dir.to_owned();
        thread::spawn(move || {
            // Opening a FIFO for writing blocks until the reader opens it; write errors
            // (EPIPE when the reader stops early) are expected in the oversized case.
            let serve = |name: &str, bytes: &[u8]| {
                let mut f = OpenOptions::new().write(true).open(dir.join(name)).unwrap();
                let _ = f.write_all(bytes);
            };
            serve("generation", b"7\n");
            // The reader opens outblob only after its inblob write returned, so once this
            // open (which waits for the reader) succeeds, inblob holds the request.
            let mut outblob = OpenOptions::new()
                .write(true)
                .open(dir.join("outblob"))
                .unwrap();
            let inblob = fs::read(dir.join("inblob")).unwrap();
            let out = match kernel {
                Kernel::Outblob(len) => vec![0xAB; len],
                _ => [b"QUOTE:".as_slice(), &inblob].concat(),
            };
            let _ = outblob.write_all(&out);
            drop(outblob);
            if let Kernel::Outblob(len) = kernel {
                if len > TdxTee::MAX_OUTBLOB_LEN {
                    return inblob;
                }
            }
            let after: &[u8] = match kernel {
                Kernel::Racing => b"9\n",
                _ => b"8\n",
            };
            serve("generation", after);
            inblob
        })
    }

    #[test]
    fn quote_request_writes_report_data_and_returns_outblob() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("report/r0");
        let kernel = fake_report_dir(&dir, Kernel::Honest);
        let report_data = [0x5A; 64];
        let quote = generate_report(&dir, &report_data).unwrap();
        assert_eq!(kernel.join().unwrap(), report_data.to_vec());
        assert_eq!(quote, [b"QUOTE:".as_slice(), &report_data].concat());
    }

    #[test]
    fn quote_is_discarded_when_generation_shows_a_concurrent_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("report/r0");
        let kernel = fake_report_dir(&dir, Kernel::Racing);
        let err = generate_report(&dir, &[1; 64]).unwrap_err();
        kernel.join().unwrap();
        assert!(
            matches!(
                err,
                TeeError::GenerationRace {
                    before: 7,
                    after: 9,
                    expected: 8
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn oversized_outblob_is_rejected_without_reading_it_all() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("report/r0");
        let kernel = fake_report_dir(&dir, Kernel::Outblob(TdxTee::MAX_OUTBLOB_LEN + 1));
        let err = generate_report(&dir, &[1; 64]).unwrap_err();
        kernel.join().unwrap();
        assert!(
            matches!(
                err,
                TeeError::OutblobTooLarge {
                    limit: TdxTee::MAX_OUTBLOB_LEN
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn outblob_of_exactly_the_limit_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("report/r0");
        let kernel = fake_report_dir(&dir, Kernel::Outblob(TdxTee::MAX_OUTBLOB_LEN));
        let quote = generate_report(&dir, &[1; 64]).unwrap();
        kernel.join().unwrap();
        assert_eq!(quote.len(), TdxTee::MAX_OUTBLOB_LEN);
    }

    #[test]
    fn non_tdx_provider_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r0");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("provider"), "sev_guest\n").unwrap();
        let err = generate_report(&dir, &[1; 64]).unwrap_err();
        assert!(
            matches!(&err, TeeError::WrongProvider(p) if p == "sev_guest"),
            "{err:?}"
        );
    }

    #[test]
    fn quote_without_configfs_tsm_is_unsupported() {
        let tmp = tempfile::tempdir().unwrap();
        let tee = TdxTee::with_roots(tmp.path().join("tsm"), tmp.path());
        let err = tee.quote(&[0; 64]).unwrap_err();
        assert!(
            matches!(&err, TeeError::Unsupported(m) if m.contains("configfs-tsm")),
            "{err:?}"
        );
    }

    #[test]
    fn quote_removes_its_report_directory_even_on_failure() {
        // A `report/` directory without a kernel behind it: mkdir works, but no
        // attributes appear, so the request fails — and must not leave the directory.
        let tmp = tempfile::tempdir().unwrap();
        let report = tmp.path().join("tsm/report");
        fs::create_dir_all(&report).unwrap();
        let tee = TdxTee::with_roots(tmp.path().join("tsm"), tmp.path());
        let err = tee.quote(&[0; 64]).unwrap_err();
        assert!(
            matches!(&err, TeeError::Io(m) if m.contains("provider")),
            "{err:?}"
        );
        assert_eq!(fs::read_dir(&report).unwrap().count(), 0);
    }

    #[test]
    fn extend_rtmr3_writes_the_digest_in_one_48_byte_write() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(TdxTee::RTMR3_SYSFS_PATH);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, [0u8; 48]).unwrap();
        let tee = TdxTee::with_roots(tmp.path().join("tsm"), tmp.path());
        let digest = [0xC3; 48];
        tee.extend_rtmr3(&digest).unwrap();
        assert_eq!(fs::read(&path).unwrap(), digest.to_vec());
    }

    #[test]
    fn extend_rtmr3_without_measurement_sysfs_is_unsupported() {
        let tmp = tempfile::tempdir().unwrap();
        let tee = TdxTee::with_roots(tmp.path().join("tsm"), tmp.path());
        let err = tee.extend_rtmr3(&[0; 48]).unwrap_err();
        assert!(
            matches!(&err, TeeError::Unsupported(m) if m.contains("rtmr3:sha384")),
            "{err:?}"
        );
    }

    #[test]
    fn report_names_are_unique_per_call() {
        let tee = TdxTee::new();
        assert_ne!(tee.fresh_report_name(), tee.fresh_report_name());
    }
}
