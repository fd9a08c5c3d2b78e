//! Console log capture: the guest's stdout and stderr go straight to `console.log`
//! (opened for appending, so the guest keeps writing across VMM restarts — no pipe
//! through the VMM that would break when it restarts), and the VMM rotates it by size.
//!
//! Rotation is copy-then-truncate: `console.log` is copied to `console.log.1` (replacing
//! it) and truncated to zero; the guest's next append lands at the new end. What is on
//! disk stays below `2 × max_bytes` plus what the guest writes in one check interval;
//! lines written between the copy and the truncate are lost (at most one interval's
//! worth, documented in docs/vmm.md).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// How often a follower looks for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Largest chunk a follower sends at once.
pub const FOLLOW_CHUNK: usize = 64 * 1024;

/// Open `path` for the guest's stdout/stderr (append, created 0600).
pub fn open_for_guest(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

/// Rotate `current` into `old` when it is larger than `max`. Returns whether it rotated.
pub fn rotate_if_needed(current: &Path, old: &Path, max: u64) -> Result<bool> {
    let len = match std::fs::metadata(current) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("stat", current, e)),
    };
    if len <= max {
        return Ok(false);
    }
    let mut tmp = old.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(current, &tmp).map_err(|e| Error::io("copy", current, e))?;
    std::fs::rename(&tmp, old).map_err(|e| Error::io("rename", old, e))?;
    OpenOptions::new()
        .write(true)
        .open(current)
        .and_then(|f| f.set_len(0))
        .map_err(|e| Error::io("truncate", current, e))?;
    Ok(true)
}

/// The last `lines` lines of the rotated and current log, at most `max_bytes` bytes
/// (the end is kept).
pub fn tail(current: &Path, old: &Path, lines: usize, max_bytes: u64) -> Result<Vec<u8>> {
    let mut buf = read_end(current, max_bytes)?;
    if count_lines(&buf) < lines && (buf.len() as u64) < max_bytes {
        let mut older = read_end(old, max_bytes - buf.len() as u64)?;
        older.extend_from_slice(&buf);
        buf = older;
    }
    Ok(last_lines(&buf, lines).to_vec())
}

fn read_end(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("seek", path, e))?;
    let mut buf = Vec::new();
    f.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(buf)
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// The suffix of `b` holding its last `n` lines (a final unterminated line counts).
pub fn last_lines(b: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = b.strip_suffix(b"\n").unwrap_or(b);
    let mut seen = 0;
    for (i, c) in body.iter().enumerate().rev() {
        if *c == b'\n' {
            seen += 1;
            if seen == n {
                return &b[i + 1..];
            }
        }
    }
    b
}

/// A reader that follows `console.log` from an offset, noticing rotation (the file got
/// shorter than the offset: start over from 0).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    /// Follow `path` from its current end.
    pub fn from_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Follower {
            path: path.to_owned(),
            offset,
        }
    }

    /// New bytes since the last call (at most [`FOLLOW_CHUNK`]), empty when none.
    pub fn poll(&mut self) -> Result<Vec<u8>> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("open", &self.path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        if len < self.offset {
            self.offset = 0; // rotated (truncated)
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io("seek", &self.path, e))?;
        let mut buf = Vec::new();
        f.take(FOLLOW_CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &self.path, e))?;
        self.offset += buf.len() as u64;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A console log in a temp dir (kept while the dir lives): its path, the rotated
    /// file's path, and the guest's append-only handle.
    fn console() -> (tempfile::TempDir, PathBuf, PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let cur = dir.path().join("console.log");
        let old = dir.path().join("console.log.1");
        let guest = open_for_guest(&cur).unwrap();
        (dir, cur, old, guest)
    }

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\n", 5), b"a\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }

    #[test]
    fn rotation_bounds_the_file_and_keeps_appending() {
        let (_dir, cur, old, mut guest) = console();
        guest.write_all(&[b'x'; 5000]).unwrap();
        assert!(rotate_if_needed(&cur, &old, 4096).unwrap());
        assert_eq!(std::fs::metadata(&cur).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(&old).unwrap().len(), 5000);
        // The guest's next write lands at the start of the truncated file (O_APPEND).
        guest.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read(&cur).unwrap(), b"after\n");
        assert!(!rotate_if_needed(&cur, &old, 4096).unwrap());
        let t = tail(&cur, &old, 1, 1 << 20).unwrap();
        assert_eq!(t, b"after\n");
    }

    #[test]
    fn a_follower_sees_appends_and_survives_rotation() {
        let (_dir, cur, old, mut guest) = console();
        guest.write_all(b"before\n").unwrap();
        let mut f = Follower::from_end(&cur);
        assert!(f.poll().unwrap().is_empty());
        guest.write_all(&[b'y'; 5000]).unwrap();
        assert_eq!(f.poll().unwrap().len(), 5000);
        rotate_if_needed(&cur, &old, 4096).unwrap();
        guest.write_all(b"new\n").unwrap();
        assert_eq!(f.poll().unwrap(), b"new\n");
    }
}
