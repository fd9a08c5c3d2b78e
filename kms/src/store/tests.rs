use std::os::unix::fs::PermissionsExt;

use super::*;

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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
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
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
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
    let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, DIR_MODE);
    let mut seen = Vec::new();
    modes(&dir, &mut seen);
    assert!(seen.iter().any(|(_, _, d)| !d), "sled wrote no files?");
    for (path, mode, is_dir) in seen {
        let want = if is_dir { DIR_MODE } else { FILE_MODE };
        assert_eq!(mode, want, "{}", path.display());
    }
}

#[test]
fn fresh_data_dir_is_created_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("kms");
    let store = SecretStore::open(&dir).unwrap();
    store.bootstrap(1).unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        DIR_MODE
    );
    let mut seen = Vec::new();
    modes(&dir, &mut seen);
    for (path, mode, is_dir) in seen {
        let want = if is_dir { DIR_MODE } else { FILE_MODE };
        assert_eq!(mode, want, "{}", path.display());
    }
}

#[test]
fn corrupt_or_partial_records_are_typed_errors() {
    let cases: [(&str, Option<&[u8]>, &str, &str); 6] = [
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
        (KEY_FORMAT, Some(&[2]), KEY_FORMAT, "unknown format version"),
    ];
    for (key, value, want_key, want_reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::open(tmp.path()).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
    let id = store
        .install(MasterSecret::from_bytes([0xab; 32]), 1)
        .unwrap();
    let s = format!("{id:?}");
    assert!(!s.contains(&"ab".repeat(32)), "{s}");
    assert!(s.contains("<redacted>"));
    let node_hex = hex::encode(id.node_key.signing_key().to_bytes());
    assert!(!s.contains(&node_hex), "{s}");
}
