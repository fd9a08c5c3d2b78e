//! Root-secret storage (DESIGN.md §5 "Root secrets").
//!
//! One sled database in the node's data directory, tree [`SECRETS_TREE`]. A node holding
//! one key generation (format 1, the layout of every store before rotation existed):
//!
//! | key | value |
//! |---|---|
//! | `format` | `[1]` |
//! | `master` | the generation's 32-byte master secret |
//! | `generation` | `u64be` key generation |
//! | `node_key` | the node's own 32-byte secp256k1 secret (never shared) |
//!
//! A node holding several generations during a rotation (format 2; at most
//! [`MAX_HELD_GENERATIONS`]: the previous, the current and a pending one):
//!
//! | key | value |
//! |---|---|
//! | `format` | `[2]` |
//! | `master/` ‖ `u64be` generation | that generation's 32-byte master secret |
//! | `node_key` | as above |
//!
//! [`SecretStore::add_generation`] converts format 1 to 2 in one transaction; erasing a
//! generation ([`SecretStore::erase_generation`]) writes a store with format 1 again when
//! one generation is left. Which held generation a node uses is the chain's decision
//! (`KmsAuth.keyGeneration`, `transitionWindow`), never the store's.
//!
//! **Erasure.** sled is log-structured: a removed value stays in its segment on disk until
//! sled happens to reuse it. So erasing a generation rewrites the store instead: the
//! remaining records go to a fresh store beside it (`<dir>.rewrite`, made durable), the old
//! directory is renamed away (`<dir>.erased`) and the new one renamed into place (each
//! rename fsynced in the parent), then every file of the old store is overwritten with
//! zeros, fsynced and unlinked. [`SecretStore::open`] finishes an interrupted erasure
//! first, so a crash at any step leaves either the old store (erasure not done) or the new
//! one, and no `.erased` leftovers once the store is opened again.
//!
//! All records are written in one sled transaction, then made durable before
//! [`SecretStore::bootstrap`] or [`SecretStore::install`] returns: sled's `flush`, then an
//! fsync of every file sled keeps in the directory (its data file `db`, `conf`, snapshots)
//! and of the directory itself ([`cairn_tlog::sync_sled_dir`]; sled's own flush is only
//! `sync_file_range`, which survives a process crash but not a power loss). A crash or power
//! loss therefore leaves either no identity or a whole one, and never loses an identity
//! whose public keys were already printed (and maybe registered on chain). Directories that
//! [`SecretStore::open`] creates are made durable in their parents too.
//! Writing over an existing identity is refused. The data directory is created with mode
//! 0700 and every file in it is set to 0600 after opening and after each write; because the
//! directory itself is 0700, files sled creates later are unreachable to other users too.

use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_protocol::sig;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kdf::MasterSecret;

/// Name of the sled tree holding the secrets.
pub const SECRETS_TREE: &str = "secrets";
/// Mode of the data directory and its subdirectories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;
/// Version of the record layout with one generation.
pub const FORMAT_VERSION: u8 = 1;
/// Version of the record layout with several generations.
pub const FORMAT_VERSION_GENERATIONS: u8 = 2;
/// Most key generations a store holds at once: the previous one (in its transition
/// window), the current one and a pending one (generated or onboarded before the chain
/// made it current).
pub const MAX_HELD_GENERATIONS: usize = 3;

const KEY_FORMAT: &str = "format";
const KEY_MASTER: &str = "master";
const KEY_GENERATION: &str = "generation";
const KEY_NODE: &str = "node_key";
const PREFIX_MASTER: &[u8] = b"master/";

fn generation_key(generation: u64) -> Vec<u8> {
    [PREFIX_MASTER, &generation.to_be_bytes()[..]].concat()
}

/// The node's own secp256k1 key: its address is registered in KmsAuth; it signs log
/// checkpoints and anchoring transactions. `Debug` prints only the address.
#[derive(Clone)]
pub struct NodeKey(k256::ecdsa::SigningKey);

impl NodeKey {
    /// A fresh random key.
    pub fn random() -> Self {
        NodeKey(k256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// The signing key.
    pub fn signing_key(&self) -> &k256::ecdsa::SigningKey {
        &self.0
    }

    /// The node's Ethereum address.
    pub fn address(&self) -> [u8; 20] {
        sig::eth_address(self.0.verifying_key())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(address=0x{})", hex::encode(self.address()))
    }
}

/// What the store holds: the generation's master secret, its number, and the node key.
#[derive(Clone)]
pub struct Identity {
    /// The shared master secret of the current key generation.
    pub master: MasterSecret,
    /// The key generation.
    pub generation: u64,
    /// This node's own key.
    pub node_key: NodeKey,
}

cairn_protocol::redacted_debug!(Identity {
    master,
    generation,
    node_key
});

/// Every key generation a store holds, and the node key.
#[derive(Clone)]
pub struct Held {
    /// Master secrets by generation, ascending (at least one).
    pub masters: std::collections::BTreeMap<u64, MasterSecret>,
    /// This node's own key.
    pub node_key: NodeKey,
}

impl Held {
    /// The highest generation held and its master.
    pub fn newest(&self) -> (u64, &MasterSecret) {
        // `held()` never returns an empty map.
        match self.masters.iter().next_back() {
            Some((g, m)) => (*g, m),
            None => unreachable!("a held store has at least one generation"),
        }
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("generations", &self.masters.keys().collect::<Vec<_>>())
            .field("node_key", &self.node_key)
            .finish()
    }
}

/// The on-disk secret store of one KMS node.
pub struct SecretStore {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    /// The paths fsynced by the last durable write (tests check the fsync happens).
    #[cfg(test)]
    synced: std::sync::Mutex<Vec<PathBuf>>,
}

cairn_protocol::redacted_debug!(SecretStore { dir, .. });

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// `dir`'s entries, read one at a time, each with its path and its own (unfollowed)
/// file type: the walk `restrict` and `wipe` share.
fn entries(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<(fs::DirEntry, PathBuf, fs::FileType)>> + '_> {
    let read = fs::read_dir(dir).map_err(io_err("read dir", dir))?;
    Ok(read.map(move |entry| {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        Ok((entry, path, kind))
    }))
}

/// Set 0700 on `dir` and every directory below it, 0600 on every file. Symlinks are not
/// followed.
fn restrict(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err("chmod", dir))?;
    for entry in entries(dir)? {
        let (_, path, kind) = entry?;
        if kind.is_dir() {
            restrict(&path)?;
        } else if kind.is_file() {
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                .map_err(io_err("chmod", &path))?;
        }
    }
    Ok(())
}

/// Fsync the directory `dir` (its entries, e.g. a newly created subdirectory).
fn sync_dir(dir: &Path) -> Result<()> {
    // `Path::parent` of a relative one-component path is "".
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// The directory `dir` lives in (`.` for a bare relative name).
fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<dir>.rewrite` (the store being written without an erased generation) and
/// `<dir>.erased` (the old store, being wiped).
fn side_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secrets".to_owned());
    (
        dir.with_file_name(format!("{name}.rewrite")),
        dir.with_file_name(format!("{name}.erased")),
    )
}

/// Finish an erasure interrupted by a crash (see the module docs): the old store renamed
/// away but the new one not yet in place → move it in; a half-written new store beside
/// the old one → wipe it; an old store being wiped → wipe it.
fn recover_erasure(dir: &Path) -> Result<()> {
    let (rewrite, erased) = side_dirs(dir);
    if rewrite.exists() {
        if dir.exists() {
            tracing::warn!(dir = %rewrite.display(), "wiping an unfinished secret-store rewrite");
            wipe(&rewrite)?;
        } else {
            tracing::warn!(dir = %dir.display(), "finishing an interrupted key-generation erasure");
            fs::rename(&rewrite, dir).map_err(io_err("rename", &rewrite))?;
            sync_dir(parent_of(dir))?;
        }
    }
    if erased.exists() {
        tracing::warn!(dir = %erased.display(), "wiping an erased secret store left by a crash");
        wipe(&erased)?;
    }
    Ok(())
}

/// Overwrite every file below `dir` with zeros (fsynced), unlink it, remove the
/// directories, and fsync `dir`'s parent. Symlinks are unlinked, never followed.
/// Best effort against the storage below (see docs/security.md "Key rotation").
fn wipe(dir: &Path) -> Result<()> {
    use std::io::Write as _;
    for entry in entries(dir)? {
        let (entry, path, kind) = entry?;
        if kind.is_dir() {
            wipe(&path)?;
            continue;
        }
        if kind.is_file() {
            let len = entry.metadata().map_err(io_err("stat", &path))?.len();
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let zeros = [0u8; 8192];
            let mut left = len;
            while left > 0 {
                let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
                f.write_all(&zeros[..n])
                    .map_err(io_err("zero-fill", &path))?;
                left -= n as u64;
            }
            f.sync_all().map_err(io_err("fsync", &path))?;
        }
        fs::remove_file(&path).map_err(io_err("unlink", &path))?;
    }
    fs::remove_dir(dir).map_err(io_err("remove dir", dir))?;
    sync_dir(parent_of(dir))
}

impl SecretStore {
    /// Open (creating if needed) the store in `dir`. The directory is created with mode
    /// 0700, and each directory created is fsynced into its parent; an existing one is
    /// tightened to 0700 and its files to 0600.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        recover_erasure(&dir)?;
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(io_err("create dir", &dir))?;
        // Each new directory's entry is made durable in its parent.
        for d in &created {
            if let Some(parent) = d.parent() {
                sync_dir(parent)?;
            }
        }
        restrict(&dir)?;
        let db = cairn_tlog::open_sled(&dir)?;
        let tree = db.open_tree(SECRETS_TREE)?;
        restrict(&dir)?;
        Ok(SecretStore {
            dir,
            db,
            tree,
            #[cfg(test)]
            synced: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Flush sled, tighten the modes, then fsync every file of the store and its
    /// directory (see the module docs).
    fn make_durable(&self) -> Result<()> {
        self.db.flush()?;
        restrict(&self.dir)?;
        let synced = cairn_tlog::sync_sled_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        tracing::debug!(dir = %self.dir.display(), files = synced.len(), "secret store durable");
        #[cfg(test)]
        {
            *self.synced.lock().unwrap_or_else(|p| p.into_inner()) = synced;
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create a new identity: a random master secret for `generation` and a random node
    /// key. Refused if the store already holds an identity.
    pub fn bootstrap(&self, generation: u64) -> Result<Identity> {
        self.install(MasterSecret::random(), generation)
    }

    /// Store a master secret received from another node (onboarding) with a fresh node
    /// key. Refused if the store already holds an identity.
    pub fn install(&self, master: MasterSecret, generation: u64) -> Result<Identity> {
        if let Ok(held) = self.held() {
            return Err(Error::AlreadyBootstrapped {
                generation: held.newest().0,
            });
        }
        let identity = Identity {
            master,
            generation,
            node_key: NodeKey::random(),
        };
        let node_secret = Zeroizing::new(<[u8; 32]>::from(identity.node_key.0.to_bytes()));
        let result = self.tree.transaction(|tx| {
            if let Some(existing) = tx.get(KEY_GENERATION)? {
                return Err(ConflictableTransactionError::Abort(existing));
            }
            if tx.get(KEY_MASTER)?.is_some() || tx.get(KEY_NODE)?.is_some() {
                return Err(ConflictableTransactionError::Abort(sled::IVec::default()));
            }
            tx.insert(KEY_FORMAT, &[FORMAT_VERSION][..])?;
            tx.insert(KEY_MASTER, &identity.master.expose()[..])?;
            tx.insert(KEY_GENERATION, &generation.to_be_bytes()[..])?;
            tx.insert(KEY_NODE, &node_secret[..])?;
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(existing)) => {
                return Err(match <[u8; 8]>::try_from(existing.as_ref()) {
                    Ok(be) => Error::AlreadyBootstrapped {
                        generation: u64::from_be_bytes(be),
                    },
                    Err(_) => Error::Corrupt {
                        key: KEY_GENERATION,
                        reason: "partial identity present",
                    },
                });
            }
            Err(TransactionError::Storage(e)) => return Err(Error::Storage(e)),
        }
        self.make_durable()?;
        Ok(identity)
    }

    /// The stored identity: the node key and the **highest** generation held (with one
    /// generation, the only one). [`Error::NotBootstrapped`] if none was ever written;
    /// [`Error::Corrupt`] if it is partial or malformed. A node decides which generation
    /// to use from the chain ([`SecretStore::held`]).
    pub fn identity(&self) -> Result<Identity> {
        let held = self.held()?;
        let (generation, master) = held.newest();
        Ok(Identity {
            master: master.clone(),
            generation,
            node_key: held.node_key,
        })
    }

    /// Every generation held and the node key. [`Error::NotBootstrapped`] if no identity
    /// was ever written; [`Error::Corrupt`] if a record is partial or malformed.
    pub fn held(&self) -> Result<Held> {
        let format = self.tree.get(KEY_FORMAT)?;
        let master = self.tree.get(KEY_MASTER)?;
        let generation = self.tree.get(KEY_GENERATION)?;
        let node = self.tree.get(KEY_NODE)?;
        let has_generations = self.tree.scan_prefix(PREFIX_MASTER).next().is_some();
        if format.is_none()
            && master.is_none()
            && generation.is_none()
            && node.is_none()
            && !has_generations
        {
            return Err(Error::NotBootstrapped);
        }
        let missing = |key| Error::Corrupt {
            key,
            reason: "missing",
        };
        let wrong_len = |key| Error::Corrupt {
            key,
            reason: "wrong length",
        };
        let format = format.ok_or_else(|| missing(KEY_FORMAT))?;
        let mut masters = std::collections::BTreeMap::new();
        match format.as_ref() {
            [FORMAT_VERSION] => {
                let master = master.ok_or_else(|| missing(KEY_MASTER))?;
                let master: [u8; 32] = master
                    .as_ref()
                    .try_into()
                    .map_err(|_| wrong_len(KEY_MASTER))?;
                let generation = generation.ok_or_else(|| missing(KEY_GENERATION))?;
                let generation = u64::from_be_bytes(
                    generation
                        .as_ref()
                        .try_into()
                        .map_err(|_| wrong_len(KEY_GENERATION))?,
                );
                masters.insert(generation, MasterSecret::from_bytes(master));
            }
            [FORMAT_VERSION_GENERATIONS] => {
                if master.is_some() || generation.is_some() {
                    return Err(Error::Corrupt {
                        key: KEY_MASTER,
                        reason: "a single-generation record in a multi-generation store",
                    });
                }
                for entry in self.tree.scan_prefix(PREFIX_MASTER) {
                    let (key, value) = entry?;
                    let generation = key
                        .get(PREFIX_MASTER.len()..)
                        .and_then(|g| <[u8; 8]>::try_from(g).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| wrong_len(KEY_GENERATION))?;
                    let master: [u8; 32] = value
                        .as_ref()
                        .try_into()
                        .map_err(|_| wrong_len(KEY_MASTER))?;
                    masters.insert(generation, MasterSecret::from_bytes(master));
                }
                if masters.is_empty() {
                    return Err(missing(KEY_MASTER));
                }
                if masters.len() > MAX_HELD_GENERATIONS {
                    return Err(Error::Corrupt {
                        key: KEY_MASTER,
                        reason: "more generations than a store holds",
                    });
                }
            }
            _ => {
                return Err(Error::Corrupt {
                    key: KEY_FORMAT,
                    reason: "unknown format version",
                })
            }
        }
        let node = node.ok_or_else(|| missing(KEY_NODE))?;
        let node: Zeroizing<[u8; 32]> =
            Zeroizing::new(node.as_ref().try_into().map_err(|_| wrong_len(KEY_NODE))?);
        let node_key =
            k256::ecdsa::SigningKey::from_bytes((&*node).into()).map_err(|_| Error::Corrupt {
                key: KEY_NODE,
                reason: "not a valid secp256k1 scalar",
            })?;
        Ok(Held {
            masters,
            node_key: NodeKey(node_key),
        })
    }

    /// Add the master secret of another key generation to an existing identity (a
    /// rotation: generated by `cairn-kms rotate`, or received by onboarding), made durable
    /// before returning. Refused when the generation is already held
    /// ([`Error::GenerationHeld`]) or the store would hold more than
    /// [`MAX_HELD_GENERATIONS`] ([`Error::TooManyGenerations`]).
    pub fn add_generation(&self, master: MasterSecret, generation: u64) -> Result<()> {
        let held = self.held()?;
        if held.masters.contains_key(&generation) {
            return Err(Error::GenerationHeld { generation });
        }
        if held.masters.len() >= MAX_HELD_GENERATIONS {
            return Err(Error::TooManyGenerations {
                held: held.masters.keys().copied().collect(),
                max: MAX_HELD_GENERATIONS,
            });
        }
        let single = held.masters.len() == 1;
        let old: Vec<(u64, Zeroizing<[u8; 32]>)> = held
            .masters
            .iter()
            .map(|(g, m)| (*g, Zeroizing::new(*m.expose())))
            .collect();
        let new_key = generation_key(generation);
        let new_master = Zeroizing::new(*master.expose());
        self.tree
            .transaction(|tx| {
                // The layout read above must still be the one on disk.
                let format = tx.get(KEY_FORMAT)?;
                let want = if single {
                    [FORMAT_VERSION]
                } else {
                    [FORMAT_VERSION_GENERATIONS]
                };
                if format.as_deref() != Some(&want[..]) || tx.get(&new_key[..])?.is_some() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                if single {
                    tx.remove(KEY_MASTER)?;
                    tx.remove(KEY_GENERATION)?;
                    for (g, m) in &old {
                        tx.insert(generation_key(*g), &m[..])?;
                    }
                    tx.insert(KEY_FORMAT, &[FORMAT_VERSION_GENERATIONS][..])?;
                }
                tx.insert(&new_key[..], &new_master[..])?;
                Ok(())
            })
            .map_err(aborted("the store changed while a generation was added"))?;
        self.make_durable()?;
        tracing::info!(generation, "key generation added to the secret store");
        Ok(())
    }

    /// Erase the master secret of `generation` (see the module docs: the store is
    /// rewritten without it and the old files are zero-filled and unlinked). Consumes this
    /// handle and returns the store reopened. Refused when the generation is not held
    /// ([`Error::GenerationNotHeld`]) or is the only one ([`Error::LastGeneration`]).
    pub fn erase_generation(self, generation: u64) -> Result<SecretStore> {
        let held = self.held()?;
        if !held.masters.contains_key(&generation) {
            return Err(Error::GenerationNotHeld { generation });
        }
        if held.masters.len() == 1 {
            return Err(Error::LastGeneration { generation });
        }
        let dir = self.dir.clone();
        let (rewrite, erased) = side_dirs(&dir);
        if rewrite.exists() {
            wipe(&rewrite)?;
        }
        {
            let fresh = SecretStore::open(&rewrite)?;
            let keep: Vec<(u64, &MasterSecret)> = held
                .masters
                .iter()
                .filter(|(g, _)| **g != generation)
                .map(|(g, m)| (*g, m))
                .collect();
            fresh.write_all(&keep, &held.node_key)?;
        }
        drop(self);
        let parent = parent_of(&dir);
        fs::rename(&dir, &erased).map_err(io_err("rename", &dir))?;
        sync_dir(parent)?;
        fs::rename(&rewrite, &dir).map_err(io_err("rename", &rewrite))?;
        sync_dir(parent)?;
        wipe(&erased)?;
        tracing::info!(generation, dir = %dir.display(), "key generation erased from the secret store");
        SecretStore::open(&dir)
    }

    /// Write a whole identity into this (empty) store: format 1 with one generation,
    /// format 2 with more; made durable.
    fn write_all(&self, masters: &[(u64, &MasterSecret)], node_key: &NodeKey) -> Result<()> {
        let node_secret = Zeroizing::new(<[u8; 32]>::from(node_key.0.to_bytes()));
        let masters: Vec<(u64, Zeroizing<[u8; 32]>)> = masters
            .iter()
            .map(|(g, m)| (*g, Zeroizing::new(*m.expose())))
            .collect();
        self.tree
            .transaction(|tx| {
                if tx.get(KEY_FORMAT)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                match masters.as_slice() {
                    [(g, m)] => {
                        tx.insert(KEY_FORMAT, &[FORMAT_VERSION][..])?;
                        tx.insert(KEY_MASTER, &m[..])?;
                        tx.insert(KEY_GENERATION, &g.to_be_bytes()[..])?;
                    }
                    many => {
                        tx.insert(KEY_FORMAT, &[FORMAT_VERSION_GENERATIONS][..])?;
                        for (g, m) in many {
                            tx.insert(generation_key(*g), &m[..])?;
                        }
                    }
                }
                tx.insert(KEY_NODE, &node_secret[..])?;
                Ok(())
            })
            .map_err(aborted("rewrite target is not empty"))?;
        self.make_durable()
    }

    /// The paths fsynced by the last durable write (tests only).
    #[cfg(test)]
    pub(crate) fn last_synced(&self) -> Vec<PathBuf> {
        self.synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Write a raw record, bypassing every check (tests of corruption handling only).
    #[cfg(test)]
    pub(crate) fn raw_insert(&self, key: &str, value: &[u8]) -> Result<()> {
        self.tree.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Remove a raw record (tests of corruption handling only).
    #[cfg(test)]
    pub(crate) fn raw_remove(&self, key: &str) -> Result<()> {
        self.tree.remove(key)?;
        self.db.flush()?;
        Ok(())
    }
}

/// A transaction's error: a storage error as it is, an abort (the transaction found the
/// store in another state than it checked) as [`Error::Corrupt`] with `reason`.
fn aborted(reason: &'static str) -> impl FnOnce(TransactionError<()>) -> Error {
    move |e| match e {
        TransactionError::Abort(()) => Error::Corrupt {
            key: KEY_FORMAT,
            reason,
        },
        TransactionError::Storage(e) => Error::Storage(e),
    }
}

#[cfg(test)]
mod tests;
