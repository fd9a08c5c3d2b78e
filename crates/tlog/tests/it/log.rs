//! The durable log: append, read, reopen, limits, corruption and concurrency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_tlog::{
    leaf_hash, verify_consistency, verify_inclusion, Corruption, Error, Hash, Log, MemoryTree,
    MAX_BATCH_LEN, MAX_ENTRIES_PER_READ, MAX_ENTRY_LEN,
};

use crate::support::{memory_tree, vector_entry};

/// Change the log's sled tree under `dir` behind the log's back (the log closed), durably.
fn tamper(dir: &std::path::Path, f: impl FnOnce(&sled::Tree)) {
    let db = sled::open(dir).expect("sled");
    let tree = db.open_tree(b"cairn-tlog").expect("tree");
    f(&tree);
    db.flush().expect("flush");
}

/// A log of the first `n` vector entries, written and closed; its directory.
fn closed_log_of(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    log.append_batch(&entries(0..n)).expect("append");
    dir
}

/// The sled key of record `prefix` (`e` entry, `h` hash) at `index`.
fn stored_key(prefix: u8, index: u64) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// What and where opening the log in `dir` found corrupt (it must refuse to open).
fn corruption(dir: &std::path::Path) -> (Corruption, u64) {
    match Log::open(dir) {
        Err(Error::Corrupt { what, index }) => (what, index),
        other => panic!("expected a corrupt log, got {:?}", other.map(|l| l.size())),
    }
}

fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(vector_entry).collect()
}

#[test]
fn empty_log_has_empty_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    assert_eq!(log.size(), 0);
    assert_eq!(log.root(), Hash::EMPTY_ROOT);
    assert_eq!(log.root_at(0).expect("root"), Hash::EMPTY_ROOT);
    assert_eq!(
        log.entries(0..0).expect("empty range"),
        Vec::<Vec<u8>>::new()
    );
}

#[test]
fn appended_entries_are_readable_and_provable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    assert_eq!(log.append_batch(&entries(0..5)).expect("append"), 0);
    assert_eq!(log.append_batch(&entries(5..6)).expect("append"), 5);
    assert_eq!(log.append(vector_entry(6)).expect("append"), 6);
    let mem = memory_tree(7);
    assert_eq!(log.size(), 7);
    assert_eq!(log.root(), mem.root());
    assert_eq!(log.entries(2..7).expect("range"), entries(2..7));
    assert_eq!(log.entry(6).expect("entry"), vector_entry(6));
    for size in 1..=7 {
        let root = log.root_at(size).expect("root");
        assert_eq!(root, mem.root_at(size).expect("root"));
        for index in 0..size {
            let proof = log.inclusion_proof(index, size).expect("proof");
            verify_inclusion(&leaf_hash(&vector_entry(index)), index, size, &proof, &root)
                .expect("verifies");
        }
    }
}

#[test]
fn reopening_recovers_exactly_the_committed_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (size, root) = {
        let log = Log::open(dir.path()).expect("open");
        log.append_batch(&entries(0..100)).expect("append");
        log.append_batch(&entries(100..133)).expect("append");
        log.head()
    };
    let log = Log::open(dir.path()).expect("reopen");
    assert_eq!(log.head(), (size, root));
    assert_eq!(root, memory_tree(133).root());
    // Appending after a reopen continues the same tree.
    assert_eq!(log.append_batch(&entries(133..140)).expect("append"), 133);
    assert_eq!(log.root(), memory_tree(140).root());
    let proof = log.consistency_proof(133, 140).expect("proof");
    verify_consistency(133, 140, &root, &log.root(), &proof).expect("append-only");
}

/// `r` refuses size 11 of a log that has committed 10 entries.
#[track_caller]
fn assert_eleven_of_ten<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(
        matches!(
            r,
            Err(Error::SizeOutOfRange {
                requested: 11,
                committed: 10
            })
        ),
        "{r:?}"
    );
}

#[test]
fn reads_beyond_the_committed_size_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    log.append_batch(&entries(0..10)).expect("append");
    assert!(matches!(
        log.entry(10),
        Err(Error::IndexOutOfRange {
            index: 10,
            size: 10
        })
    ));
    assert_eleven_of_ten(log.entries(5..11));
    assert_eleven_of_ten(log.root_at(11));
    assert_eleven_of_ten(log.inclusion_proof(3, 11));
    assert!(matches!(
        log.inclusion_proof(10, 10),
        Err(Error::IndexOutOfRange {
            index: 10,
            size: 10
        })
    ));
    assert_eleven_of_ten(log.consistency_proof(3, 11));
    assert!(matches!(
        log.consistency_proof(8, 7),
        Err(Error::SizesDecreasing { old: 8, new: 7 })
    ));
}

#[test]
fn batch_and_read_limits_are_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    let none: [Vec<u8>; 0] = [];
    assert!(matches!(log.append_batch(&none), Err(Error::EmptyBatch)));
    let too_many = vec![vec![0u8]; MAX_BATCH_LEN + 1];
    assert!(matches!(
        log.append_batch(&too_many),
        Err(Error::BatchTooLarge { len, max: MAX_BATCH_LEN }) if len == MAX_BATCH_LEN + 1
    ));
    let huge = vec![vec![0u8; MAX_ENTRY_LEN + 1]];
    assert!(matches!(
        log.append_batch(&huge),
        Err(Error::EntryTooLarge {
            max: MAX_ENTRY_LEN,
            ..
        })
    ));
    assert!(matches!(
        log.append(vec![0u8; MAX_ENTRY_LEN + 1]),
        Err(Error::EntryTooLarge {
            max: MAX_ENTRY_LEN,
            ..
        })
    ));
    // Nothing was committed by the refused calls.
    assert_eq!(log.size(), 0);
    log.append_batch(&vec![vec![1u8]; MAX_BATCH_LEN])
        .expect("max batch");
    assert!(matches!(
        log.entries(0..MAX_ENTRIES_PER_READ + 1),
        Err(Error::RangeTooLarge { requested, max: MAX_ENTRIES_PER_READ }) if requested == MAX_ENTRIES_PER_READ + 1
    ));
    assert_eq!(
        log.entries(0..MAX_ENTRIES_PER_READ)
            .expect("max read")
            .len() as u64,
        MAX_ENTRIES_PER_READ
    );
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    tamper(dir.path(), |tree| {
        tree.insert(b"m:format", b"something-else/v9".as_slice())
            .expect("insert");
    });
    assert!(matches!(
        corruption(dir.path()),
        (Corruption::FormatMarker, _)
    ));
}

#[test]
fn a_missing_subtree_hash_is_reported_as_corruption() {
    let dir = closed_log_of(6);
    tamper(dir.path(), |tree| {
        // Size 6 = subtree (level 2, index 0) ‖ (level 1, index 2).
        let mut key = stored_key(b'h', 0);
        key.push(2);
        assert!(tree.remove(key).expect("remove").is_some());
    });
    assert_eq!(corruption(dir.path()), (Corruption::MissingHash, 0));
}

#[test]
fn a_rewritten_last_entry_is_reported_as_corruption() {
    let dir = closed_log_of(6);
    tamper(dir.path(), |tree| {
        let key = stored_key(b'e', 5);
        tree.insert(key, b"rewritten".as_slice()).expect("insert");
    });
    assert_eq!(corruption(dir.path()), (Corruption::LeafHashMismatch, 5));
}

#[test]
fn concurrent_appenders_share_commits_and_get_unique_indices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path()).expect("open"));
    let threads = 8u64;
    let per_thread = 40u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let entry = format!("thread {t} entry {i}").into_bytes();
                        let index = log.append(entry.clone()).expect("append");
                        (index, entry)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort();
    let indices: Vec<u64> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..threads * per_thread).collect::<Vec<_>>());
    // Each acknowledged index holds exactly the entry its caller appended.
    let mut mem = MemoryTree::new();
    for (index, entry) in &all {
        assert_eq!(&log.entry(*index).expect("entry"), entry);
        mem.push(entry);
    }
    assert_eq!(log.root(), mem.root());
    drop(log);
    let reopened = Log::open(dir.path()).expect("reopen");
    assert_eq!(reopened.root(), mem.root());
}

#[test]
fn readers_only_ever_see_consistent_committed_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path()).expect("open"));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut prev = (0u64, Hash::EMPTY_ROOT);
            let mut checks = 0u32;
            while !done.load(Ordering::Acquire) || checks == 0 {
                let (size, root) = log.head();
                let proof = log.consistency_proof(prev.0, size).expect("proof");
                verify_consistency(prev.0, size, &prev.1, &root, &proof).expect("append-only");
                if size > 0 {
                    let last = size - 1;
                    let entry = log.entry(last).expect("committed entry is readable");
                    let proof = log.inclusion_proof(last, size).expect("proof");
                    verify_inclusion(&leaf_hash(&entry), last, size, &proof, &root)
                        .expect("included");
                }
                prev = (size, root);
                checks += 1;
            }
            checks
        })
    };
    for start in (0..600u64).step_by(20) {
        log.append_batch(&entries(start..start + 20))
            .expect("append");
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().expect("reader") > 0);
}

#[test]
fn a_missing_upper_level_hash_is_reported_as_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (size, root) = {
        let log = Log::open(dir.path()).expect("open");
        log.append_batch(&entries(0..600)).expect("append");
        log.head()
    };
    // Reopening loads the in-memory upper levels and keeps the same head.
    assert_eq!(Log::open(dir.path()).expect("reopen").head(), (size, root));
    tamper(dir.path(), |tree| {
        // Subtree (level 8, index 1) covers leaves 256..512.
        let mut key = vec![b'u', 8];
        key.extend_from_slice(&1u64.to_be_bytes());
        assert!(tree.remove(key).expect("remove").is_some());
    });
    assert_eq!(corruption(dir.path()), (Corruption::MissingHash, 1));
}
