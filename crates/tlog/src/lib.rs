//! `cairn-tlog`: the key-release transparency log of Cairn.
//!
//! Every key release of a Cairn KMS node is appended to this log, and made
//! durable, before the keys leave the node. The log is an RFC 9162 Merkle
//! tree (SHA-256, leaf prefix `0x00`, node prefix `0x01`); its checkpoints
//! are C2SP tlog-checkpoint notes signed with the node's secp256k1 key so a
//! contract can `ecrecover` them; its entries are ABI-encoded
//! [`ReleaseRecord`]s so a contract can `abi.decode` them. The byte formats,
//! with test vectors, are specified in `docs/tlog.md`.
//!
//! ```text
//!  KMS release ──► Log::append ──► sled batch (entries + subtree hashes + size)
//!                                   └─► flush (fsync, shared by a group) ──► index
//!  Log::checkpoint(signer) ──► "origin\nsize\nroot\n\n— origin <sig>\n" ──► chain anchor
//!  light client: verify_inclusion / verify_consistency / CheckpointVerifier::open
//!                Frontier: stream entries, compare the root at each promised size
//! ```
//!
//! What it trusts: the local disk and sled to keep what was flushed; the
//! caller to pass the right signer key and expected signer address. Proof
//! verification ([`verify_inclusion`], [`verify_consistency`]) and checkpoint
//! verification trust nothing but their inputs and need no storage.
//!
//! What it does not do: it does not serve HTTP, anchor checkpoints on chain,
//! decide what to log, or replicate between KMS nodes (each node keeps its
//! own log); those live in `cairn-kms` and `cairn-onchain`. It holds no
//! secrets besides the signing key handed to [`CheckpointSigner`].
//!
//! ```
//! use cairn_tlog::{leaf_hash, verify_inclusion, MemoryTree};
//!
//! let mut tree = MemoryTree::new();
//! for i in 0..5u8 {
//!     tree.push(&[i]);
//! }
//! let proof = tree.inclusion_proof(3, 5)?;
//! verify_inclusion(&leaf_hash(&[3]), 3, 5, &proof, &tree.root())?;
//! # Ok::<(), cairn_tlog::Error>(())
//! ```
//!
//! # Layout
//! - `hash`: [`Hash`](struct@Hash), [`leaf_hash`], [`node_hash`].
//! - `proof`: proof generation over a [`HashReader`], storage-free verification.
//! - `memory`: [`MemoryTree`], the same tree in memory.
//! - `frontier`: [`Frontier`], a tree kept as its complete subtrees: streaming roots,
//!   and a start at any proven size.
//! - `storage`: [`Log`], the durable log on sled.
//! - `sled_open`: [`open_sled`], opening sled when a dropped handle still holds its lock;
//!   [`sync_sled_dir`], fsyncing sled's files and directory.
//! - `group`: group commit for concurrent [`Log::append`] callers.
//! - `checkpoint`: signed checkpoints (C2SP signed note, secp256k1 + keccak256).
//! - `entry`: [`ReleaseRecord`] (versions 1 and 2) and its [`AppBootInfo`], the
//!   ABI-encoded entry.
//! - `error`: [`Error`] and its typed sub-errors.

mod checkpoint;
mod entry;
mod error;
mod frontier;
mod group;
mod hash;
mod memory;
mod proof;
mod sled_open;
mod storage;

// The public interface is:
pub use checkpoint::{
    address_of, key_id, Checkpoint, CheckpointSigner, CheckpointVerifier, NoteSignature,
    SignedCheckpoint, MAX_CHECKPOINT_LEN, MAX_NAME_LEN, MAX_SIGNATURES, SIGNATURE_TYPE,
    SIGNATURE_TYPE_ID,
};
pub use entry::{
    AppBootInfo, RecordVersion, ReleaseKind, ReleaseRecord, MAX_ADVISORY_IDS, MAX_ADVISORY_ID_LEN,
    MAX_RECORD_LEN, MAX_RECORD_V1_LEN, MAX_TCB_STATUS_LEN, RECORD_VERSION, RECORD_VERSION_V1,
};
pub use error::{
    CheckpointError, ConsistencyError, Corruption, EntryError, Error, InclusionError, Result,
};
pub use frontier::Frontier;
pub use hash::{leaf_hash, node_hash, Hash, HASH_SIZE};
pub use memory::MemoryTree;
pub use proof::{
    consistency_proof, inclusion_proof, root_at, verify_consistency, verify_inclusion, HashReader,
};
pub use sled_open::{open_sled, sync_sled_dir, SLED_CACHE_CAPACITY, SLED_LOCK_WAIT};
pub use storage::{Log, MAX_BATCH_LEN, MAX_ENTRIES_PER_READ, MAX_ENTRY_LEN};
