//! Root-secret storage (DESIGN.md §5 "Root secrets").
//!
//! One sled database in the node's data directory, tree [`SECRETS_TREE`], records:
//!
//! | key | value |
//! |---|---|
//! | `format` | `[1]` (this layout) |
//! | `master` | the generation's 32-byte master secret |
//! | `generation` | `u64be` key generation |
//! | `node_key` | the node's own 32-byte secp256k1 secret (never shared) |
//!
//! All four are written in one sled transaction, then made durable before
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
/// Version of the record layout.
pub const FORMAT_VERSION: u8 = 1;

const KEY_FORMAT: &str = "format";
const KEY_MASTER: &str = "master";
const KEY_GENERATION: &str = "generation";
const KEY_NODE: &str = "node_key";

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

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("master", &self.master)
            .field("generation", &self.generation)
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

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Set 0700 on `dir` and every directory below it, 0600 on every file. Symlinks are not
/// followed.
fn restrict(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err("chmod", dir))?;
    for entry in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
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

impl SecretStore {
    /// Open (creating if needed) the store in `dir`. The directory is created with mode
    /// 0700, and each directory created is fsynced into its parent; an existing one is
    /// tightened to 0700 and its files to 0600.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
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

    /// The stored identity. [`Error::NotBootstrapped`] if none was ever written;
    /// [`Error::Corrupt`] if it is partial or malformed.
    pub fn identity(&self) -> Result<Identity> {
        let format = self.tree.get(KEY_FORMAT)?;
        let master = self.tree.get(KEY_MASTER)?;
        let generation = self.tree.get(KEY_GENERATION)?;
        let node = self.tree.get(KEY_NODE)?;
        if format.is_none() && master.is_none() && generation.is_none() && node.is_none() {
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
        if format.as_ref() != [FORMAT_VERSION] {
            return Err(Error::Corrupt {
                key: KEY_FORMAT,
                reason: "unknown format version",
            });
        }
        let master = master.ok_or_else(|| missing(KEY_MASTER))?;
        let master: [u8; 32] = master
            .as_ref()
            .try_into()
            .map_err(|_| wrong_len(KEY_MASTER))?;
        let master = MasterSecret::from_bytes(master);
        let generation = generation.ok_or_else(|| missing(KEY_GENERATION))?;
        let generation = u64::from_be_bytes(
            generation
                .as_ref()
                .try_into()
                .map_err(|_| wrong_len(KEY_GENERATION))?,
        );
        let node = node.ok_or_else(|| missing(KEY_NODE))?;
        let node: Zeroizing<[u8; 32]> =
            Zeroizing::new(node.as_ref().try_into().map_err(|_| wrong_len(KEY_NODE))?);
        let node_key =
            k256::ecdsa::SigningKey::from_bytes((&*node).into()).map_err(|_| Error::Corrupt {
                key: KEY_NODE,
                reason: "not a valid secp256k1 scalar",
            })?;
        Ok(Identity {
            master,
            generation,
            node_key: NodeKey(node_key),
        })
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

#[cfg(test)]
mod tests;
