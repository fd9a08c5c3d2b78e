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

use std::fs::File;
use std::ops::Range;
use std::path::Path;
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

/// A durable, append-only Merkle log stored in sled.
///
/// Appends are serialised; reads run concurrently with appends and only ever
/// see committed entries. Share it as `Arc<Log>`.
#[derive(Debug)]
pub struct Log {
    db: sled::Db,
    /// sled's data file, fsynced after every flush: on Linux sled 0.34's
    /// `flush` only calls `sync_file_range`, which neither flushes the
    /// disk's write cache nor the file's metadata.
    data_file: File,
    tree: sled::Tree,
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

impl Log {
    /// Opens (or creates) the log in the directory `path`.
    ///
    /// Recovers exactly the last committed state: entries and hashes beyond
    /// the committed size (there are none unless sled lost its batch
    /// atomicity) are ignored and later overwritten.
    pub fn open(path: impl AsRef<Path>) -> Result<Log> {
        let path = path.as_ref();
        let db = open_sled(path)?;
        let io = |e| Error::Storage(sled::Error::Io(e));
        let data_file = File::open(path.join(SLED_DATA_FILE)).map_err(io)?;
        // Make the creation of sled's files durable too.
        File::open(path)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        Self::from_db(db, data_file)
    }

    fn from_db(db: sled::Db, data_file: File) -> Result<Log> {
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
        let writer = Writer { size, frontier };
        let snapshot = Snapshot {
            size,
            root: writer.root(),
        };
        Ok(Log {
            db,
            data_file,
            tree,
            writer: Mutex::new(writer),
            committed: RwLock::new(snapshot),
            upper: RwLock::new(upper),
            poisoned: AtomicBool::new(false),
            group: GroupCommit::default(),
        })
    }

    /// Runs `f` with a reader of the committed hashes.
    fn with_reader<T>(&self, f: impl FnOnce(&Stored<'_>) -> Result<T>) -> Result<T> {
        // The cache only grows by whole commits; a poisoned lock still holds
        // every hash of the committed size.
        let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
        f(&Stored {
            tree: &self.tree,
            upper: &upper,
        })
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
        let value = self.tree.get(entry_key(index))?.ok_or(Error::Corrupt {
            what: Corruption::MissingEntry,
            index,
        })?;
        Ok(value.to_vec())
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
        for (i, item) in self
            .tree
            .range(entry_key(range.start)..entry_key(range.end))
            .enumerate()
        {
            let (_, value) = item?;
            out.push(value.to_vec());
            debug_assert!((i as u64) < count);
        }
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
    /// reopen the log to learn what reached the disk.
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
        let committed = self
            .tree
            .apply_batch(batch)
            .map_err(Error::from)
            .and_then(|()| self.db.flush().map(drop).map_err(Error::from))
            .and_then(|()| {
                self.data_file
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
