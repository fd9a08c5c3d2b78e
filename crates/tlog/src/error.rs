//! Error types: one [`Error`] for the crate, with typed sub-errors for proof
//! verification, checkpoints and entries so a light client can match them.

use alloy_primitives::Address;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in `cairn-tlog`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sled database failed (I/O, or sled's own corruption detection).
    #[error("log storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// The database opened but its content breaks an invariant of the log
    /// (a missing hash or entry below the committed size, a malformed value).
    #[error("log storage is corrupt: {what} at index {index}")]
    Corrupt {
        /// Which record is broken.
        what: Corruption,
        /// The entry index, or the node index for a stored hash.
        index: u64,
    },
    /// A leaf index is not below the tree size it was asked for.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the index was checked against.
        size: u64,
    },
    /// A tree size larger than the committed size of the log was requested.
    #[error("tree size {requested} exceeds the committed log size {committed}")]
    SizeOutOfRange {
        /// The requested size.
        requested: u64,
        /// The committed size of the log.
        committed: u64,
    },
    /// A consistency proof was asked from a larger to a smaller tree.
    #[error("consistency proof requested from size {old} to smaller size {new}")]
    SizesDecreasing {
        /// The old (first) size.
        old: u64,
        /// The new (second) size.
        new: u64,
    },
    /// An entry range asked for more entries than one read may return.
    #[error("range of {requested} entries exceeds the limit of {max} per read")]
    RangeTooLarge {
        /// Entries requested.
        requested: u64,
        /// [`crate::MAX_ENTRIES_PER_READ`].
        max: u64,
    },
    /// `append_batch` was called with no entries.
    #[error("empty batch")]
    EmptyBatch,
    /// A batch holds more entries than one commit accepts.
    #[error("batch of {len} entries exceeds the limit of {max}")]
    BatchTooLarge {
        /// Entries in the batch.
        len: usize,
        /// [`crate::MAX_BATCH_LEN`].
        max: usize,
    },
    /// An entry is larger than the log accepts.
    #[error("entry of {len} bytes exceeds the limit of {max}")]
    EntryTooLarge {
        /// Entry length.
        len: usize,
        /// [`crate::MAX_ENTRY_LEN`].
        max: usize,
    },
    /// A previous commit failed after reaching sled; the outcome on disk is
    /// unknown, so the handle refuses further appends (and, while it is being
    /// recovered, reads). `Log::recover` (or reopening the log) clears it.
    #[error("a previous commit failed; recover or reopen the log before appending")]
    Poisoned,
    /// The log is full (2^63 entries). Not reachable in practice.
    #[error("log size would overflow")]
    SizeOverflow,
    /// An inclusion proof did not verify.
    #[error(transparent)]
    Inclusion(#[from] InclusionError),
    /// A consistency proof did not verify.
    #[error(transparent)]
    Consistency(#[from] ConsistencyError),
    /// A checkpoint could not be parsed, signed or verified.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A release record could not be encoded or decoded.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// Which stored record was found broken; see [`Error::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The format marker is missing or names another format.
    FormatMarker,
    /// The committed-size record is not 8 bytes, or entries exist without it.
    CommittedSize,
    /// An entry below the committed size is missing.
    MissingEntry,
    /// A subtree hash below the committed size is missing or not 32 bytes.
    MissingHash,
    /// The stored leaf hash of the last entry does not match the entry.
    LeafHashMismatch,
    /// Storage reopened after a failed commit no longer holds the committed
    /// tree (fewer entries, or another root at the committed size).
    Rewritten,
}

impl core::fmt::Display for Corruption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Corruption::FormatMarker => "format marker",
            Corruption::CommittedSize => "committed size",
            Corruption::MissingEntry => "missing entry",
            Corruption::MissingHash => "missing subtree hash",
            Corruption::LeafHashMismatch => "leaf hash mismatch",
            Corruption::Rewritten => "committed tree not found after recovery",
        })
    }
}

/// Why an inclusion proof failed (RFC 9162 §2.1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InclusionError {
    /// The leaf index is not below the tree size.
    #[error("inclusion: leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for this index and size.
    #[error("inclusion: proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes an honest proof has.
        expected: usize,
    },
    /// The proof does not lead from the leaf to the expected root.
    #[error("inclusion: computed root does not match the expected root")]
    RootMismatch,
}

/// Why a consistency proof failed (RFC 9162 §2.1.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsistencyError {
    /// The old tree is larger than the new one.
    #[error("consistency: old size {old} is larger than new size {new}")]
    OldTreeLarger {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("consistency: proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes an honest proof has.
        expected: usize,
    },
    /// The proof does not reproduce the old root: the old tree is not a
    /// prefix of the new one (or the old root is wrong). For equal sizes this
    /// means the two roots differ: a fork.
    #[error("consistency: old root does not match (fork or wrong old root)")]
    OldRootMismatch,
    /// The proof reproduces the old root but not the new root.
    #[error("consistency: new root does not match")]
    NewRootMismatch,
}

/// Why a checkpoint could not be parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is longer than [`crate::MAX_CHECKPOINT_LEN`].
    #[error("checkpoint of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Note length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The note is not UTF-8, or contains a control character other than `\n`.
    #[error("checkpoint is not UTF-8 text without control characters")]
    NotText,
    /// No blank line separates the body from the signatures.
    #[error("checkpoint has no blank line before its signatures")]
    MissingSignatureBlock,
    /// The body is not exactly origin, size and root lines.
    #[error("checkpoint body must be exactly 3 lines (origin, size, root), got {lines}")]
    BodyLines {
        /// Lines found.
        lines: usize,
    },
    /// The origin (or a key name) is empty, too long, or has a forbidden character.
    #[error("invalid origin or key name")]
    InvalidName,
    /// The size line is not a canonical decimal `u64`.
    #[error("tree size is not a canonical decimal number")]
    InvalidSize,
    /// The root line is not canonical base64 of 32 bytes.
    #[error("root hash is not canonical base64 of 32 bytes")]
    InvalidRoot,
    /// A signature line is malformed.
    #[error("malformed signature line {line}")]
    InvalidSignatureLine {
        /// 0-based signature line number.
        line: usize,
    },
    /// The note has no signature lines, or more than [`crate::MAX_SIGNATURES`].
    #[error("checkpoint has {count} signatures; 1..={max} allowed")]
    SignatureCount {
        /// Signature lines found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two signature lines carry the same key name and key ID.
    #[error("duplicate signature for one key")]
    DuplicateSignature,
    /// The checkpoint's origin is not the expected one (or not the signer's).
    #[error("checkpoint origin does not match the expected origin")]
    OriginMismatch,
    /// No signature line carries the verifier's key name and key ID.
    #[error("no signature by the expected key")]
    NoMatchingSignature,
    /// The matching signature is not 65 bytes (r ‖ s ‖ v).
    #[error("signature is {len} bytes, expected 65")]
    SignatureLength {
        /// Length found.
        len: usize,
    },
    /// The recovery byte `v` is not 27 or 28.
    #[error("signature recovery byte {v} is not 27 or 28")]
    InvalidRecoveryByte {
        /// The byte found.
        v: u8,
    },
    /// `s` is in the upper half of the curve order (malleable form).
    #[error("signature s is not in the lower half of the curve order")]
    HighS,
    /// r or s is out of range, or no public key can be recovered.
    #[error("signature is invalid")]
    InvalidSignature,
    /// The signature is valid but recovers to another address.
    #[error("checkpoint signed by {recovered}, expected {expected}")]
    SignerMismatch {
        /// The expected signer.
        expected: Address,
        /// The address the signature recovers to.
        recovered: Address,
    },
    /// The signing key failed to sign (not expected with a valid key).
    #[error("signing failed")]
    Signing,
}

/// Why a release record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The encoded record is longer than [`crate::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Record length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too short to hold the version word.
    #[error("record is truncated")]
    Truncated,
    /// The version field names a version this code does not know.
    #[error("unsupported record version {version}")]
    UnsupportedVersion {
        /// The version found (saturated at 255 if the word is larger).
        version: u8,
    },
    /// The ABI decoder rejected the bytes.
    #[error("record ABI decoding failed: {0}")]
    Abi(#[from] alloy_sol_types::Error),
    /// The bytes decode but are not the canonical encoding (trailing bytes,
    /// dirty padding, unusual offsets).
    #[error("record encoding is not canonical")]
    NonCanonical,
    /// The kind field is not a known [`crate::ReleaseKind`].
    #[error("unknown release kind {kind}")]
    UnknownKind {
        /// The value found.
        kind: u8,
    },
    /// The TCB status string is longer than [`crate::MAX_TCB_STATUS_LEN`].
    #[error("TCB status of {len} bytes exceeds the limit of {max}")]
    TcbStatusTooLong {
        /// Length found.
        len: usize,
        /// The limit.
        max: usize,
    },
}
