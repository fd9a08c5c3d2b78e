use sha2::Digest as _;
use std::os::unix::fs::PermissionsExt;

use super::*;

/// A data dir `kms` inside a fresh temporary directory (removed when the guard drops).
fn kms_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    (tmp, dir)
}

/// A store opened in a fresh temporary directory (removed when the guard drops).
fn temp_store() -> (tempfile::TempDir, SecretStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
    (tmp, store)
}

/// `dir` is [`DIR_MODE`] and everything in it [`DIR_MODE`] (directories) or [`FILE_MODE`].
fn assert_private(dir: &Path) {
    let dir_mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, DIR_MODE, "{}", dir.display());
    let mut seen = Vec::new();
    modes(dir, &mut seen);
    assert!(seen.iter().any(|(_, _, d)| !d), "sled wrote no files?");
    for (path, mode, is_dir) in seen {
        let want = if is_dir { DIR_MODE } else { FILE_MODE };
        assert_eq!(mode, want, "{}", path.display());
    }
}

fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((entry.path(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[test]
fn bootstrap_then_reopen_returns_the_same_identity() {
    let (_tmp, dir) = kms_dir();
    let created = {
        let store = SecretStore::open(&dir).unwrap();
        assert!(matches!(store.identity(), Err(Error::NotBootstrapped)));
        store.bootstrap(3).unwrap()
    };
    let store = SecretStore::open(&dir).unwrap();
    let loaded = store.identity().unwrap();
    assert_eq!(loaded.master, created.master);
    assert_eq!(loaded.generation, 3);
    assert_eq!(loaded.node_key.address(), created.node_key.address());
}

#[test]
fn bootstrap_refuses_to_overwrite_an_identity() {
    let (_tmp, store) = temp_store();
    let first = store.bootstrap(1).unwrap();
    assert!(matches!(
        store.bootstrap(2),
        Err(Error::AlreadyBootstrapped { generation: 1 })
    ));
    assert!(matches!(
        store.install(MasterSecret::from_bytes([9; 32]), 5),
        Err(Error::AlreadyBootstrapped { generation: 1 })
    ));
    assert_eq!(store.identity().unwrap().master, first.master);
}

#[test]
fn install_keeps_the_given_master_with_a_fresh_node_key() {
    let tmp = tempfile::tempdir().unwrap();
    let a = SecretStore::open(tmp.path().join("a")).unwrap();
    let b = SecretStore::open(tmp.path().join("b")).unwrap();
    let ida = a.bootstrap(7).unwrap();
    let idb = b.install(ida.master.clone(), ida.generation).unwrap();
    assert_eq!(idb.master, ida.master);
    assert_eq!(idb.generation, 7);
    assert_ne!(idb.node_key.address(), ida.node_key.address());
}

#[test]
fn data_dir_is_0700_and_files_are_0600() {
    let (_tmp, dir) = kms_dir();
    let store = SecretStore::open(&dir).unwrap();
    store.bootstrap(1).unwrap();
    drop(store);
    // loosen everything, then reopen: open() must tighten it again
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mut seen = Vec::new();
    modes(&dir, &mut seen);
    for (path, _, is_dir) in &seen {
        let mode = if *is_dir { 0o755 } else { 0o644 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let _store = SecretStore::open(&dir).unwrap();
    assert_private(&dir);
}

#[test]
fn fresh_data_dir_is_created_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("kms");
    let store = SecretStore::open(&dir).unwrap();
    store.bootstrap(1).unwrap();
    assert_private(&dir);
}

#[test]
fn corrupt_or_partial_records_are_typed_errors() {
    let cases: [(&str, Option<&[u8]>, &str, &str); 7] = [
        (KEY_MASTER, Some(&[1, 2, 3]), KEY_MASTER, "wrong length"),
        (KEY_MASTER, None, KEY_MASTER, "missing"),
        (
            KEY_GENERATION,
            Some(&[0; 7]),
            KEY_GENERATION,
            "wrong length",
        ),
        (
            KEY_NODE,
            Some(&[0; 32]),
            KEY_NODE,
            "not a valid secp256k1 scalar",
        ),
        (KEY_NODE, None, KEY_NODE, "missing"),
        (KEY_FORMAT, Some(&[3]), KEY_FORMAT, "unknown format version"),
        // Format 2 keeps masters under `master/<generation>`, never the format-1 records.
        (
            KEY_FORMAT,
            Some(&[FORMAT_VERSION_GENERATIONS]),
            KEY_MASTER,
            "a single-generation record in a multi-generation store",
        ),
    ];
    for (key, value, want_key, want_reason) in cases {
        let (_tmp, store) = temp_store();
        store.bootstrap(1).unwrap();
        match value {
            Some(v) => store.raw_insert(key, v).unwrap(),
            None => store.raw_remove(key).unwrap(),
        }
        match store.identity() {
            Err(Error::Corrupt { key, reason }) => {
                assert_eq!((key, reason), (want_key, want_reason));
            }
            other => panic!("{key}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn partial_identity_blocks_bootstrap() {
    let (_tmp, store) = temp_store();
    store.raw_insert(KEY_MASTER, &[1; 32]).unwrap();
    assert!(matches!(
        store.bootstrap(1),
        Err(Error::Corrupt {
            key: KEY_GENERATION,
            reason: "partial identity present"
        })
    ));
}

#[test]
fn debug_never_shows_secrets() {
    let (_tmp, store) = temp_store();
    let id = store
        .install(MasterSecret::from_bytes([0xab; 32]), 1)
        .unwrap();
    let s = format!("{id:?}");
    assert!(!s.contains(&"ab".repeat(32)), "{s}");
    assert!(s.contains("<redacted>"));
    let node_hex = hex::encode(id.node_key.signing_key().to_bytes());
    assert!(!s.contains(&node_hex), "{s}");
}

#[test]
fn bootstrap_and_install_fsync_the_data_file_conf_and_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, op) in [("bootstrap", 0), ("install", 1)] {
        let dir = tmp.path().join(name);
        let store = SecretStore::open(&dir).unwrap();
        assert!(store.last_synced().is_empty());
        if op == 0 {
            store.bootstrap(1).unwrap();
        } else {
            store.install(MasterSecret::from_bytes([5; 32]), 2).unwrap();
        }
        let synced = store.last_synced();
        for file in ["db", "conf"] {
            assert!(
                synced.contains(&dir.join(file)),
                "{name}: {file} not fsynced: {synced:?}"
            );
        }
        assert_eq!(synced.last(), Some(&dir), "{name}: the directory last");
    }
}

const CRASH_DIR_VAR: &str = "CAIRN_KMS_STORE_CRASH_DIR";

/// Bootstraps, reports the identity on stdout, then blocks until killed. Does nothing
/// unless started by `identity_survives_sigkill_right_after_bootstrap`.
#[test]
#[ignore = "helper process for identity_survives_sigkill_right_after_bootstrap"]
fn bootstrap_then_wait_for_sigkill_child() {
    use std::io::{BufRead as _, Write as _};
    let Ok(dir) = std::env::var(CRASH_DIR_VAR) else {
        return;
    };
    let store = SecretStore::open(&dir).expect("child opens the store");
    let id = store.bootstrap(4).expect("bootstrap");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "bootstrapped {} {}",
        hex::encode(id.node_key.address()),
        hex::encode(sha2::Sha256::digest(id.master.expose()))
    )
    .expect("stdout");
    out.flush().expect("stdout");
    // Block (no timer) until the parent kills this process; stdin is a pipe it holds.
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

#[test]
fn identity_survives_sigkill_right_after_bootstrap() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("secrets");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "store::tests::bootstrap_then_wait_for_sigkill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_VAR, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // libtest may print the test's name on the same line first.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let found = BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
            .find_map(|l| l.split_once("bootstrapped ").map(|(_, id)| id.to_owned()));
        let _ = tx.send(found);
    });
    let reported = rx.recv_timeout(std::time::Duration::from_secs(120));
    child.kill().unwrap();
    let reported = reported
        .expect("the child reports before the deadline")
        .expect("the child reports its identity");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not exited");
    reader.join().unwrap();

    let store = SecretStore::open(&dir).unwrap();
    let id = store.identity().unwrap();
    assert_eq!(id.generation, 4);
    assert_eq!(
        reported,
        format!(
            "{} {}",
            hex::encode(id.node_key.address()),
            hex::encode(sha2::Sha256::digest(id.master.expose()))
        )
    );
    // Modes after the restart: directory 0700, every file 0600.
    let mut seen = Vec::new();
    modes(&dir, &mut seen);
    assert!(seen.iter().any(|(_, _, d)| !d));
    for (path, mode, is_dir) in seen {
        let want = if is_dir { DIR_MODE } else { FILE_MODE };
        assert_eq!(mode, want, "{}", path.display());
    }
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        DIR_MODE
    );
}

/// Every byte of every file below `dir` (to look for a secret on disk).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_added_generation_survives_a_reopen_beside_the_first() {
    let (_tmp, dir) = kms_dir();
    let first = SecretStore::open(&dir).unwrap().bootstrap(1).unwrap();
    {
        let store = SecretStore::open(&dir).unwrap();
        store
            .add_generation(MasterSecret::from_bytes([0x5a; 32]), 2)
            .unwrap();
    }
    let store = SecretStore::open(&dir).unwrap();
    let held = store.held().unwrap();
    assert_eq!(held.masters.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(held.masters[&1], first.master);
    assert_eq!(held.masters[&2], MasterSecret::from_bytes([0x5a; 32]));
    assert_eq!(held.node_key.address(), first.node_key.address());
    // identity() names the highest generation held.
    assert_eq!(store.identity().unwrap().generation, 2);
}

#[test]
fn adding_a_held_generation_or_a_fourth_one_is_refused() {
    let (_tmp, store) = temp_store();
    store.bootstrap(1).unwrap();
    assert!(matches!(
        store.add_generation(MasterSecret::from_bytes([1; 32]), 1),
        Err(Error::GenerationHeld { generation: 1 })
    ));
    store
        .add_generation(MasterSecret::from_bytes([2; 32]), 2)
        .unwrap();
    store
        .add_generation(MasterSecret::from_bytes([3; 32]), 3)
        .unwrap();
    match store.add_generation(MasterSecret::from_bytes([4; 32]), 4) {
        Err(Error::TooManyGenerations { held, max }) => {
            assert_eq!((held, max), (vec![1, 2, 3], MAX_HELD_GENERATIONS))
        }
        other => panic!("{other:?}"),
    }
    // Nothing of the refused generation was written.
    assert_eq!(store.held().unwrap().masters.len(), 3);
}

#[test]
fn adding_a_generation_to_an_empty_store_is_not_bootstrapped() {
    let (_tmp, store) = temp_store();
    assert!(matches!(
        store.add_generation(MasterSecret::from_bytes([1; 32]), 2),
        Err(Error::NotBootstrapped)
    ));
}

#[test]
fn an_erased_generation_is_gone_from_the_store_and_its_files() {
    let (_tmp, dir) = kms_dir();
    let old = [0xc3u8; 32];
    let node = {
        let store = SecretStore::open(&dir).unwrap();
        let id = store.install(MasterSecret::from_bytes(old), 1).unwrap();
        store
            .add_generation(MasterSecret::from_bytes([0x3c; 32]), 2)
            .unwrap();
        assert!(
            contains(&all_bytes(&dir), &old),
            "the old master is on disk"
        );
        id.node_key.address()
    };
    let store = SecretStore::open(&dir).unwrap();
    let store = store.erase_generation(1).unwrap();
    let held = store.held().unwrap();
    assert_eq!(held.masters.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(held.node_key.address(), node, "the node key is kept");
    drop(store);
    assert!(
        !contains(&all_bytes(&dir), &old),
        "no file of the store still holds the erased master"
    );
    let (rewrite, erased) = side_dirs(&dir);
    assert!(!rewrite.exists() && !erased.exists());
    // Back to the one-generation layout, and reopened as such.
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(store.identity().unwrap().generation, 2);
    assert_eq!(
        store.tree.get(KEY_FORMAT).unwrap().unwrap().as_ref(),
        [FORMAT_VERSION]
    );
}

#[test]
fn erasing_the_only_or_an_unheld_generation_is_refused() {
    let (_tmp, dir) = kms_dir();
    let store = SecretStore::open(&dir).unwrap();
    store.bootstrap(4).unwrap();
    let store = match store.erase_generation(4) {
        Err(Error::LastGeneration { generation: 4 }) => SecretStore::open(&dir).unwrap(),
        other => panic!("{:?}", other.map(|_| ())),
    };
    match store.erase_generation(3) {
        Err(Error::GenerationNotHeld { generation: 3 }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(
        SecretStore::open(&dir)
            .unwrap()
            .identity()
            .unwrap()
            .generation,
        4
    );
}

/// A store in `dir` bootstrapped with generation 1 and holding generation 2 too (closed).
fn two_generations_in(dir: &Path) {
    let store = SecretStore::open(dir).unwrap();
    store.bootstrap(1).unwrap();
    store
        .add_generation(MasterSecret::from_bytes([7; 32]), 2)
        .unwrap();
}

/// The generations `store` holds, in order.
fn held_generations(store: &SecretStore) -> Vec<u64> {
    store.held().unwrap().masters.keys().copied().collect()
}

#[test]
fn an_erasure_interrupted_after_the_swap_finishes_at_open() {
    let (_tmp, dir) = kms_dir();
    let (rewrite, erased) = side_dirs(&dir);
    two_generations_in(&dir);
    // A crash after the old store was renamed away, before the new one moved in.
    {
        let held = SecretStore::open(&dir).unwrap().held().unwrap();
        let fresh = SecretStore::open(&rewrite).unwrap();
        fresh
            .write_all(&[(2, &held.masters[&2])], &held.node_key)
            .unwrap();
    }
    fs::rename(&dir, &erased).unwrap();
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(held_generations(&store), vec![2]);
    assert!(!rewrite.exists() && !erased.exists());
}

#[test]
fn a_half_written_rewrite_is_discarded_at_open() {
    let (_tmp, dir) = kms_dir();
    let (rewrite, _) = side_dirs(&dir);
    two_generations_in(&dir);
    // A crash while the new store was being written: the old one is still in place.
    drop(SecretStore::open(&rewrite).unwrap());
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(held_generations(&store), vec![1, 2]);
    assert!(!rewrite.exists());
}
