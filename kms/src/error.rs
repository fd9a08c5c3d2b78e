//! The crate's error type.

use std::path::PathBuf;

/// Errors of key derivation, certificates and root-secret storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A KDF part is longer than the `u16` length prefix can describe.
    #[error("KDF part of {len} bytes exceeds the limit of {max}")]
    KdfPartTooLong {
        /// Length of the part.
        len: usize,
        /// The limit (`u16::MAX`).
        max: usize,
    },
    /// Every resampling attempt produced an out-of-range scalar (never expected to happen).
    #[error("KDF resampling for label {label:?} gave no valid scalar in {attempts} attempts")]
    KdfResampleExhausted {
        /// The KDF label.
        label: &'static str,
        /// Attempts made.
        attempts: u32,
    },
    /// Building or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// A signature primitive failed.
    #[error("signature: {0}")]
    Signature(#[from] cairn_protocol::Error),
    /// The store already holds an identity; bootstrapping again would replace it.
    #[error("the data directory already holds a KMS identity (generation {generation})")]
    AlreadyBootstrapped {
        /// Generation of the identity found.
        generation: u64,
    },
    /// The store holds no identity yet.
    #[error("the data directory holds no KMS identity; run bootstrap or onboard first")]
    NotBootstrapped,
    /// A stored value is missing or malformed.
    #[error("stored secret {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The record that failed.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// A filesystem operation on the data directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
