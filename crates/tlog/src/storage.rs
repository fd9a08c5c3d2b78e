//! The durable log on sled: entries, complete-subtree hashes and the
//! committed size, written together in one atomic batch and made durable
//! with one `flush` (fsync) per batch.
//!
//! Key layout inside the sled tree `cairn-tlog` (all integers big-endian):
//!
//! | key                              | value                         |
//! |----------------------------------|-------------------------------|
//! | `m:format`                       | `cairn-tlog/v1`               |
//! | `m:size`                         | committed size, `u64`         |
//! | `e` ‖ `u64 index`                | entry bytes                   |
//! | `h` ‖ `u64 first leaf` ‖ `u8 level` | subtree hash, levels 0..=7, 32 B |
//! | `u` ‖ `u8 level` ‖ `u64 index`   | subtree hash, levels 8..=63, 32 B |
//!
//! Low levels are keyed by their first leaf, so the low part of a proof
//! (levels 0..=7, all inside one 256-leaf block) reads neighbouring keys.
//! Levels 8 and up (one hash per 128 entries in total) are also kept in
//! memory, loaded at open, so a proof costs at most 8 point reads plus the
//! right edge of the tree.
//!
//! A commit that fails (the disk is full, an I/O error) poisons the handle: the
//! outcome on disk is unknown and sled keeps the error. [`Log::recover`] reopens
//! the storage in place and recovers the last durable state, so a service keeps
//! its `Log` and resumes once the disk takes writes again.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use crate::checkpoint::{Checkpoint, CheckpointSigner, SignedCheckpoint};
use crate::error::{Corruption, Error, Result};
use crate::group::GroupCommit;
use crate::hash::{leaf_hash, node_hash, Hash};
use crate::proof::{self, HashReader};
use crate::sled_open::{open_sled, SLED_DATA_FILE};

/// Largest entry [`Log::append_batch`] accepts, in bytes.
pub const MAX_ENTRY_LEN: usize = 64 * 1024;
/// Most entries one [`Log::append_batch`] call (one commit) accepts.
pub const MAX_BATCH_LEN: usize = 4096;
/// Most entries one [`Log::entries`] call returns.
pub const MAX_ENTRIES_PER_READ: u64 = 1024;

const TREE_NAME: &[u8] = b"cairn-tlog";
/// The file sled 0.34 keeps its log-structured data in, inside the directory.
const FORMAT_KEY: &[u8] = b"m:format";
const FORMAT_VALUE: &[u8] = b"cairn-tlog/v1";
const SIZE_KEY: &[u8] = b"m:size";

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Subtree levels at or above this one are also held in memory.
const CACHED_LEVEL: u8 = 8;

fn hash_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    if level < CACHED_LEVEL {
        k[0] = b'h';
        // The first leaf of a complete subtree below 2^64 leaves fits a u64.
        k[1..9].copy_from_slice(&(index << level).to_be_bytes());
        k[9] = level;
    } else {
        k[0] = b'u';
        k[1] = level;
        k[2..].copy_from_slice(&index.to_be_bytes());
    }
    k
}

/// In-memory copy of the subtree hashes at levels >= [`CACHED_LEVEL`]:
/// `upper[l - CACHED_LEVEL][i]` is the hash of `(l, i)`.
type Upper = Vec<Vec<Hash>>;

fn cache_insert(upper: &mut Upper, level: u8, index: u64, hash: Hash) -> Result<()> {
    let l = usize::from(level - CACHED_LEVEL);
    while upper.len() <= l {
        upper.push(Vec::new());
    }
    if upper[l].len() as u64 != index {
        return Err(Error::Corrupt {
            what: Corruption::MissingHash,
            index,
        });
    }
    upper[l].push(hash);
    Ok(())
}

/// State owned by the single writer: the committed size and the frontier
/// (the complete subtrees whose concatenation is the whole tree, largest
/// first). Appending leaf `n` only needs the frontier.
#[derive(Debug, Clone)]
struct Writer {
    size: u64,
    frontier: Vec<(u8, Hash)>,
}

impl Writer {
    fn root(&self) -> Hash {
        let mut iter = self.frontier.iter().rev();
        let Some((_, last)) = iter.next() else {
            return Hash::EMPTY_ROOT;
        };
        iter.fold(*last, |acc, (_, left)| node_hash(left, &acc))
    }

    /// Adds one leaf, inserting its leaf hash and every subtree it completes
    /// into `batch`.
    fn push(
        &mut self,
        entry: &[u8],
        batch: &mut sled::Batch,
        upper: &mut Vec<(u8, u64, Hash)>,
    ) -> Result<()> {
        let index = self.size;
        let mut h = leaf_hash(entry);
        batch.insert(&entry_key(index), entry);
        batch.insert(&hash_key(0, index), &h.0);
        let mut level = 0u8;
        let mut idx = index;
        while idx & 1 == 1 {
            let (left_level, left) = self.frontier.pop().ok_or(Error::Corrupt {
                what: Corruption::MissingHash,
                index,
            })?;
            debug_assert_eq!(left_level, level);
            h = node_hash(&left, &h);
            level += 1;
            idx >>= 1;
            batch.insert(&hash_key(level, idx), &h.0);
            if level >= CACHED_LEVEL {
                upper.push((level, idx, h));
            }
        }
        self.frontier.push((level, h));
        self.size = index.checked_add(1).ok_or(Error::SizeOverflow)?;
        Ok(())
    }
}

/// What readers see: only committed (durable) state.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    size: u64,
    root: Hash,
}

/// The sled database of a [`Log`], its tree, and its data file.
#[derive(Debug)]
struct Store {
    db: sled::Db,
    /// sled's data file, fsynced after every flush: on Linux sled 0.34's
    /// `flush` only calls `sync_file_range`, which neither flushes the
    /// disk's write cache nor the file's metadata.
    data_file: File,
    tree: sled::Tree,
}

/// Everything [`Log::open`] and [`Log::recover`] read from disk.
struct Loaded {
    store: Store,
    writer: Writer,
    upper: Upper,
}

/// A durable, append-only Merkle log stored in sled.
///
/// Appends are serialised; reads run concurrently with appends and only ever
/// see committed entries. Share it as `Arc<Log>`.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    /// `None` only while [`Log::recover`] reopens the storage, and after a
    /// recovery that failed (reads then fail with [`Error::Poisoned`]).
    store: RwLock<Option<Store>>,
    writer: Mutex<Writer>,
    committed: RwLock<Snapshot>,
    upper: RwLock<Upper>,
    poisoned: AtomicBool,
    group: GroupCommit,
}

/// Reads subtree hashes from the in-memory upper levels or from sled.
struct Stored<'a> {
    tree: &'a sled::Tree,
    upper: &'a Upper,
}

impl HashReader for Stored<'_> {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash> {
        let missing = Error::Corrupt {
            what: Corruption::MissingHash,
            index,
        };
        if level >= CACHED_LEVEL {
            return self
                .upper
                .get(usize::from(level - CACHED_LEVEL))
                .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
                .copied()
                .ok_or(missing);
        }
        let value = self
            .tree
            .get(hash_key(level, index))?
            .ok_or(missing.clone())?;
        Hash::from_slice(&value).ok_or(missing)
    }
}

/// Loads the committed subtree hashes of levels >= [`CACHED_LEVEL`].
fn load_upper(tree: &sled::Tree, size: u64) -> Result<Upper> {
    let mut upper = Upper::new();
    for level in CACHED_LEVEL..64 {
        let complete = size >> level;
        if complete == 0 {
            break;
        }
        let from = hash_key(level, 0);
        let to = hash_key(level, complete);
        for item in tree.range(from..to) {
            let (key, value) = item?;
            let index = key
                .get(2..10)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(Error::Corrupt {
                    what: Corruption::MissingHash,
                    index: 0,
                })?;
            let hash = Hash::from_slice(&value).ok_or(Error::Corrupt {
                what: Corruption::MissingHash,
                index,
            })?;
            cache_insert(&mut upper, level, index, hash)?;
        }
        let have = upper
            .get(usize::from(level - CACHED_LEVEL))
            .map_or(0, |l| l.len() as u64);
        if have != complete {
            return Err(Error::Corrupt {
                what: Corruption::MissingHash,
                index: have,
            });
        }
    }
    Ok(upper)
}

/// Opens (or creates) the log's storage in `path` and recovers its last
/// committed state.
fn load(path: &Path) -> Result<Loaded> {
    let db = open_sled(path)?;
    let io = |e| Error::Storage(sled::Error::Io(e));
    let data_file = File::open(path.join(SLED_DATA_FILE)).map_err(io)?;
    // Make the creation of sled's files durable too.
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    from_db(db, data_file)
}

fn from_db(db: sled::Db, data_file: File) -> Result<Loaded> {
    let tree = db.open_tree(TREE_NAME)?;
    match tree.get(FORMAT_KEY)? {
        Some(v) if v.as_ref() == FORMAT_VALUE => {}
        Some(_) => {
            return Err(Error::Corrupt {
                what: Corruption::FormatMarker,
                index: 0,
            })
        }
        None if tree.is_empty() => {
            let mut batch = sled::Batch::default();
            batch.insert(FORMAT_KEY, FORMAT_VALUE);
            batch.insert(SIZE_KEY, &0u64.to_be_bytes());
            tree.apply_batch(batch)?;
            db.flush()?;
            data_file.sync_all().map_err(sled::Error::Io)?;
        }
        None => {
            return Err(Error::Corrupt {
                what: Corruption::FormatMarker,
                index: 0,
            })
        }
    }
    let size = match tree.get(SIZE_KEY)? {
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt {
                what: Corruption::CommittedSize,
                index: 0,
            })?,
        None => {
            return Err(Error::Corrupt {
                what: Corruption::CommittedSize,
                index: 0,
            })
        }
    };
    let upper = load_upper(&tree, size)?;
    let reader = Stored {
        tree: &tree,
        upper: &upper,
    };
    let mut frontier = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1u64 << level) != 0 {
            frontier.push((level, reader.subtree_hash(level, start >> level)?));
            start += 1u64 << level;
        }
    }
    if size > 0 {
        let last = size - 1;
        let entry = tree.get(entry_key(last))?.ok_or(Error::Corrupt {
            what: Corruption::MissingEntry,
            index: last,
        })?;
        if leaf_hash(&entry) != reader.subtree_hash(0, last)? {
            return Err(Error::Corrupt {
                what: Corruption::LeafHashMismatch,
                index: last,
            });
        }
    }
    Ok(Loaded {
        store: Store {
            db,
            data_file,
            tree,
        },
        writer: Writer { size, frontier },
        upper,
    })
}

impl Log {
    /// Opens (or creates) the log in the directory `path`.
    ///
    /// Recovers exactly the last committed state: entries and hashes beyond
    /// the committed size (there are none unless sled lost its batch
    /// atomicity) are ignored and later overwritten.
    pub fn open(path: impl AsRef<Path>) -> Result<Log> {
        let path = path.as_ref();
        let Loaded {
            store,
            writer,
            upper,
        } = load(path)?;
        let snapshot = Snapshot {
            size: writer.size,
            root: writer.root(),
        };
        Ok(Log {
            path: path.to_owned(),
            store: RwLock::new(Some(store)),
            writer: Mutex::new(writer),
            committed: RwLock::new(snapshot),
            upper: RwLock::new(upper),
            poisoned: AtomicBool::new(false),
            group: GroupCommit::default(),
        })
    }

    /// Whether a commit failed since the log was opened or last recovered:
    /// appends fail with [`Error::Poisoned`] until [`Log::recover`] succeeds.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// After a failed commit, reopens the storage in place and recovers its
    /// last durable state; appends work again once it returns `Ok`. Returns
    /// `Ok(false)` (and does nothing) when the log is not poisoned.
    ///
    /// Appends wait while it runs, reads fail with [`Error::Poisoned`]. The
    /// recovered log must hold the committed tree unchanged: fewer entries, or
    /// another root at the committed size, is [`Corruption::Rewritten`] and the
    /// log stays poisoned. It may hold *more*: the entries of the failed commit,
    /// when they reached the disk after all (never acknowledged to a caller, so
    /// the log over-reports, never under-reports). When reopening fails (the
    /// disk still refuses, sled cannot open), the log stays poisoned and a
    /// later call tries again.
    pub fn recover(&self) -> Result<bool> {
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        if !self.is_poisoned() {
            return Ok(false);
        }
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        // sled locks its files: the failed database goes before it is opened again.
        *store = None;
        let loaded = load(&self.path)?;
        let old = self.snapshot();
        let rewritten = Error::Corrupt {
            what: Corruption::Rewritten,
            index: old.size,
        };
        if loaded.writer.size < old.size {
            return Err(rewritten);
        }
        let root = proof::root_at(
            &Stored {
                tree: &loaded.store.tree,
                upper: &loaded.upper,
            },
            old.size,
        )?;
        if root != old.root {
            return Err(rewritten);
        }
        let Loaded {
            store: fresh,
            writer: recovered,
            upper,
        } = loaded;
        let snapshot = Snapshot {
            size: recovered.size,
            root: recovered.root(),
        };
        *store = Some(fresh);
        *self.upper.write().unwrap_or_else(|e| e.into_inner()) = upper;
        *writer = recovered;
        *self.committed.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.poisoned.store(false, Ordering::Release);
        Ok(true)
    }

    /// Runs `f` with a reader of the committed hashes.
    fn with_reader<T>(&self, f: impl FnOnce(&Stored<'_>) -> Result<T>) -> Result<T> {
        self.with_store(|store| {
            // The cache only grows by whole commits; a poisoned lock still holds
            // every hash of the committed size.
            let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
            f(&Stored {
                tree: &store.tree,
                upper: &upper,
            })
        })
    }

    /// Runs `f` with the storage ([`Error::Poisoned`] while it is being
    /// recovered, or after a recovery failed).
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        f(store.as_ref().ok_or(Error::Poisoned)?)
    }

    fn snapshot(&self) -> Snapshot {
        // The snapshot is plain data, so a poisoned lock still holds a valid value.
        *self.committed.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed number of entries.
    pub fn size(&self) -> u64 {
        self.snapshot().size
    }

    /// The root hash of the committed tree.
    pub fn root(&self) -> Hash {
        self.snapshot().root
    }

    /// The committed size and root, read atomically together.
    pub fn head(&self) -> (u64, Hash) {
        let s = self.snapshot();
        (s.size, s.root)
    }

    fn check_size(&self, size: u64) -> Result<Snapshot> {
        let snap = self.snapshot();
        if size > snap.size {
            return Err(Error::SizeOutOfRange {
                requested: size,
                committed: snap.size,
            });
        }
        Ok(snap)
    }

    /// The root hash of the first `size` entries (`size` ≤ [`Log::size`]).
    /// Reads at most `log₂ size + 1` hashes.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        let snap = self.check_size(size)?;
        if size == snap.size {
            return Ok(snap.root);
        }
        self.with_reader(|r| proof::root_at(r, size))
    }

    /// The entry at `index` (< [`Log::size`]).
    pub fn entry(&self, index: u64) -> Result<Vec<u8>> {
        let size = self.size();
        if index >= size {
            return Err(Error::IndexOutOfRange { index, size });
        }
        self.read_entry(index)
    }

    fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        self.with_store(|store| {
            let value = store.tree.get(entry_key(index))?.ok_or(Error::Corrupt {
                what: Corruption::MissingEntry,
                index,
            })?;
            Ok(value.to_vec())
        })
    }

    /// The committed entries in `range`; at most [`MAX_ENTRIES_PER_READ`].
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>> {
        let size = self.size();
        if range.end > size {
            return Err(Error::SizeOutOfRange {
                requested: range.end,
                committed: size,
            });
        }
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let count = range.end - range.start;
        if count > MAX_ENTRIES_PER_READ {
            return Err(Error::RangeTooLarge {
                requested: count,
                max: MAX_ENTRIES_PER_READ,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        self.with_store(|store| {
            for (i, item) in store
                .tree
                .range(entry_key(range.start)..entry_key(range.end))
                .enumerate()
            {
                let (_, value) = item?;
                out.push(value.to_vec());
                debug_assert!((i as u64) < count);
            }
            Ok(())
        })?;
        if out.len() as u64 != count {
            return Err(Error::Corrupt {
                what: Corruption::MissingEntry,
                index: range.start + out.len() as u64,
            });
        }
        Ok(out)
    }

    /// Inclusion proof of entry `index` in the tree of the first `size`
    /// entries (RFC 9162 §2.1.3.1). O(log n) reads.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        self.with_reader(|r| proof::inclusion_proof(r, index, size))
    }

    /// Consistency proof from the first `old` to the first `new` entries
    /// (RFC 9162 §2.1.4.1). O(log n) reads.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        self.with_reader(|r| proof::consistency_proof(r, old, new))
    }

    /// A checkpoint of the committed tree, signed by `signer`.
    pub fn checkpoint(&self, signer: &CheckpointSigner) -> Result<SignedCheckpoint> {
        let (size, root) = self.head();
        let checkpoint = Checkpoint::new(signer.origin(), size, root)?;
        Ok(signer.sign(checkpoint)?)
    }

    /// Appends `entries` as one commit and returns the index of the first.
    ///
    /// Entries, subtree hashes and the new size go to sled in one atomic
    /// batch, then the database is flushed and its data file fsynced once. When this returns
    /// `Ok`, every entry is durable; readers see none of them before that.
    /// After a failed commit the handle is poisoned ([`Error::Poisoned`]):
    /// [`Log::recover`] (or reopening the log) learns what reached the disk.
    pub fn append_batch<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<u64> {
        if entries.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if entries.len() > MAX_BATCH_LEN {
            return Err(Error::BatchTooLarge {
                len: entries.len(),
                max: MAX_BATCH_LEN,
            });
        }
        if let Some(e) = entries.iter().find(|e| e.as_ref().len() > MAX_ENTRY_LEN) {
            return Err(Error::EntryTooLarge {
                len: e.as_ref().len(),
                max: MAX_ENTRY_LEN,
            });
        }
        let mut writer = self.writer.lock().map_err(|_| Error::Poisoned)?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let first = writer.size;
        let mut next = writer.clone();
        let mut batch = sled::Batch::default();
        let mut new_upper = Vec::new();
        for entry in entries {
            next.push(entry.as_ref(), &mut batch, &mut new_upper)?;
        }
        batch.insert(SIZE_KEY, &next.size.to_be_bytes());
        let committed = self.with_store(|store| {
            store.tree.apply_batch(batch)?;
            store.db.flush()?;
            store
                .data_file
                .sync_all()
                .map_err(|e| Error::Storage(sled::Error::Io(e)))
        });
        if let Err(e) = committed {
            self.poisoned.store(true, Ordering::Release);
            return Err(e);
        }
        {
            let mut upper = self.upper.write().unwrap_or_else(|e| e.into_inner());
            for (level, index, hash) in new_upper {
                if let Err(e) = cache_insert(&mut upper, level, index, hash) {
                    self.poisoned.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        let snapshot = Snapshot {
            size: next.size,
            root: next.root(),
        };
        *writer = next;
        *self.committed.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        Ok(first)
    }

    /// Appends one entry durably, sharing the commit (and its fsync) with
    /// every other caller waiting at the same time (group commit). Returns
    /// the entry's index once it is durable.
    ///
    /// One caller becomes the leader, takes every queued entry (up to
    /// [`MAX_BATCH_LEN`]) and commits them with [`Log::append_batch`]; the
    /// others wait for that commit. If it fails, every entry of the group
    /// gets the error.
    pub fn append(&self, entry: Vec<u8>) -> Result<u64> {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(Error::EntryTooLarge {
                len: entry.len(),
                max: MAX_ENTRY_LEN,
            });
        }
        self.group.submit(entry, |batch| self.append_batch(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Log {
        /// Marks the log as after a failed commit (what a full disk does).
        fn poison(&self) {
            self.poisoned.store(true, Ordering::Release);
        }
    }

    fn filled(path: &Path, n: u8) -> Log {
        let log = Log::open(path).expect("open");
        for i in 0..n {
            log.append(vec![i; 8]).expect("append");
        }
        log
    }

    #[test]
    fn recover_does_nothing_on_a_healthy_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = filled(dir.path(), 3);
        assert!(!log.is_poisoned());
        assert!(!log.recover().expect("recover"));
        assert_eq!(log.size(), 3);
    }

    #[test]
    fn a_poisoned_log_refuses_appends_until_recovered_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = filled(dir.path(), 5);
        let head = log.head();
        log.poison();
        assert!(matches!(log.append(vec![9]), Err(Error::Poisoned)));
        assert!(log.recover().expect("recover"));
        assert!(!log.is_poisoned());
        assert_eq!(log.head(), head, "the committed tree is kept");
        assert_eq!(log.append(vec![9]).expect("append after recovery"), 5);
        assert_eq!(log.entry(5).expect("read"), vec![9]);
        assert_eq!(log.entries(0..6).expect("read").len(), 6);
        log.inclusion_proof(2, 6).expect("proof");
        drop(log);
        assert_eq!(Log::open(dir.path()).expect("reopen").size(), 6);
    }

    #[test]
    fn storage_that_lost_committed_entries_is_not_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (long, short) = (dir.path().join("long"), dir.path().join("short"));
        drop(filled(&short, 3));
        drop(filled(&long, 5));
        // The log lives behind a link; its target is swapped for a shorter log
        // while the handle is poisoned (storage that lost acknowledged entries).
        let link = dir.path().join("log");
        std::os::unix::fs::symlink(&long, &link).expect("symlink");
        let log = Log::open(&link).expect("open");
        log.poison();
        std::fs::remove_file(&link).expect("unlink");
        std::os::unix::fs::symlink(&short, &link).expect("symlink");
        match log.recover() {
            Err(Error::Corrupt {
                what: Corruption::Rewritten,
                index: 5,
            }) => {}
            other => panic!("expected Rewritten, got {other:?}"),
        }
        assert!(log.is_poisoned());
        assert!(matches!(log.append(vec![1]), Err(Error::Poisoned)));
        assert!(matches!(log.entry(0), Err(Error::Poisoned)));
        // Storage that holds the committed tree again recovers.
        std::fs::remove_file(&link).expect("unlink");
        std::os::unix::fs::symlink(&long, &link).expect("symlink");
        assert!(log.recover().expect("recover"));
        assert_eq!(log.size(), 5);
    }
}
