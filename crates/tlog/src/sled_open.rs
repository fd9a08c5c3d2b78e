//! Opening a sled database when a previous handle was just dropped.
//!
//! sled 0.34 takes an exclusive `flock` on its data file and releases it when the last
//! reference to its internal state goes away. Its background threads hold such a
//! reference for a moment after the last `Db` is dropped, so an immediate reopen in the
//! same process (a service restarted in-process, a test reopening a log) can fail with
//! "could not acquire lock". [`open_sled`] waits for that lock, up to [`SLED_LOCK_WAIT`],
//! before opening. A lock still held after the wait (another live handle or process) is
//! left for sled to report as its usual error.
//!
//! [`sync_sled_dir`] makes what sled wrote durable: sled 0.34's `flush` only calls
//! `sync_file_range` on Linux (neither the disk's write cache nor the file's metadata) and
//! never syncs its `conf` file or the directory.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`open_sled`] waits for a lingering lock of a dropped handle.
pub const SLED_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The most memory sled's page cache may take, per database (sled's default is 1 GiB).
///
/// A log is appended once and read mostly near its end (new entries, recent proofs), so
/// a small cache costs little: a cold read of an old entry goes to the file. With the
/// default, a node's RSS grew with the volume it appended (20 → 185 MB in the 10-minute
/// soak): heaptrack shows sled's cached entry values (`IVec`s) as the part that grows,
/// next to a fixed ~21 MB of sled's own metrics. With this bound the cache levels off
/// (docs/benchmarks.md "KMS cluster soak").
pub const SLED_CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

/// The file sled locks inside its directory.
pub(crate) const SLED_DATA_FILE: &str = "db";

/// Opens (or creates) the sled database in `path`, first waiting up to
/// [`SLED_LOCK_WAIT`] for a lock left by a handle that was just dropped. Its page cache
/// is bounded by [`SLED_CACHE_CAPACITY`].
pub fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    wait_for_unlocked(&path.join(SLED_DATA_FILE))?;
    sled::Config::new()
        .path(path)
        .cache_capacity(SLED_CACHE_CAPACITY)
        .open()
}

/// Fsyncs every regular file under the sled directory `path` (the data file `db`,
/// `conf`, snapshots, blobs), then each directory, `path` last. Call it after
/// `sled::Db::flush`: together they make everything flushed survive a power loss, not
/// only a process crash. Returns the paths synced, in order. Symlinks are not followed.
pub fn sync_sled_dir(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut synced = Vec::new();
    sync_tree(path, &mut synced)?;
    Ok(synced)
}

fn sync_tree(dir: &Path, synced: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort();
    for path in entries {
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            sync_tree(&path, synced)?;
        } else if kind.is_file() {
            File::open(&path)?.sync_all()?;
            synced.push(path);
        }
    }
    File::open(dir)?.sync_all()?;
    synced.push(dir.to_owned());
    Ok(())
}

fn wait_for_unlocked(data_file: &Path) -> io::Result<()> {
    let file = match File::open(data_file) {
        Ok(f) => f,
        // A new database: nothing holds a lock yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        match file.try_lock() {
            // Dropping `file` releases the probe's own lock before sled takes it.
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Still held: let sled report it with its own error.
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_right_after_drop_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..20 {
            let db = open_sled(dir.path()).expect("open");
            db.insert(b"k", b"v").expect("insert");
            db.flush().expect("flush");
            drop(db);
        }
        let db = open_sled(dir.path()).expect("open");
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn sync_covers_the_data_file_conf_and_the_directory_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_sled(dir.path()).expect("open");
        db.insert(b"k", b"v").expect("insert");
        db.flush().expect("flush");
        let synced = sync_sled_dir(dir.path()).expect("sync");
        for name in [SLED_DATA_FILE, "conf"] {
            assert!(
                synced.contains(&dir.path().join(name)),
                "{name} not synced: {synced:?}"
            );
        }
        assert_eq!(synced.last(), Some(&dir.path().to_path_buf()));
    }

    #[test]
    fn a_live_handle_still_excludes_a_second_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _db = open_sled(dir.path()).expect("open");
        let err = open_sled(dir.path()).expect_err("second open while the first is live");
        assert!(matches!(err, sled::Error::Io(_)), "{err:?}");
    }
}
