//! The crate's error type.

use std::path::PathBuf;

/// Errors of the KMS node: key derivation, certificates, root-secret storage, startup
/// checks, chain, log and attestation failures.
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
    Certificate(#[from] rcgen::Error),
    /// Encoding a private key as PKCS#8 failed.
    #[error("PKCS#8 encoding of a private key failed: {0}")]
    KeyEncoding(#[source] p256::pkcs8::Error),
    /// A signature primitive failed.
    #[error("signature: {0}")]
    Signature(#[from] cairn_protocol::Error),
    /// The store already holds an identity; bootstrapping again would replace it.
    #[error("the data directory already holds a KMS identity (generation {generation})")]
    AlreadyBootstrapped {
        /// Generation of the identity found.
        generation: u64,
    },
    /// The store already holds this key generation.
    #[error("the secret store already holds key generation {generation}")]
    GenerationHeld {
        /// The generation.
        generation: u64,
    },
    /// The store does not hold this key generation.
    #[error("the secret store does not hold key generation {generation}")]
    GenerationNotHeld {
        /// The generation.
        generation: u64,
    },
    /// The store would hold more generations than it may.
    #[error("the secret store holds generations {held:?}; at most {max} at once (erase one first: wait for the transition window to end)")]
    TooManyGenerations {
        /// The generations held.
        held: Vec<u64>,
        /// The limit.
        max: usize,
    },
    /// The only generation a store holds cannot be erased (the node would lose its
    /// identity).
    #[error("key generation {generation} is the only one this node holds; it cannot be erased")]
    LastGeneration {
        /// The generation.
        generation: u64,
    },
    /// A log append reported fewer entries than it was given (a bug, never expected).
    #[error("the log returned fewer receipts than entries appended")]
    LogAppendLost,
    /// A generation asked for at onboarding is neither the chain's current one nor the
    /// previous one in its transition window.
    #[error("key generation {generation} is not served on chain (neither current nor in a transition window)")]
    GenerationNotServed {
        /// The generation.
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
    /// A configuration value is missing, malformed or inconsistent.
    #[error("config {key}: {reason}")]
    Config {
        /// The configuration key (e.g. `chain.kms_auth`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The chain client failed (connect, chain id, reads, transactions).
    #[error("chain: {0}")]
    Chain(#[from] cairn_onchain::Error),
    /// The transparency log failed.
    #[error("log: {0}")]
    Log(#[from] cairn_tlog::Error),
    /// Attestation (verification, collateral, TEE) failed.
    #[error("attestation: {0}")]
    Attestation(#[from] cairn_attestation::Error),
    /// Building or checking an RA-TLS certificate failed.
    #[error("RA-TLS: {0}")]
    RaTls(#[from] cairn_attestation::RaTlsError),
    /// The node's own evidence does not pass its own checks (steps 1-2); the source is
    /// the answer a peer with the same evidence would get.
    #[error("this node's own evidence was rejected: {0}")]
    SelfAttestation(#[source] crate::reject::ApiError),
    /// The root keys registered on chain differ from the ones this node derives.
    #[error("root keys on chain (generation {generation}) differ from this node's")]
    RootKeysMismatch {
        /// The generation compared.
        generation: u64,
    },
    /// No KMS root keys are registered on chain: register them before serving.
    #[error("no KMS root keys are registered on chain (this node holds generation {node}); register them before serving (docs/operator.md)")]
    NoRootKeysRegistered {
        /// This node's key generation.
        node: u64,
    },
    /// The chain's current key generation is not this node's.
    #[error("the chain's current key generation is {chain} but this node holds generation {node}; refusing to serve")]
    KeyGenerationMismatch {
        /// The generation registered on chain (`KmsAuth.keyGeneration`).
        chain: u64,
        /// This node's generation.
        node: u64,
    },
    /// The local log does not extend the checkpoint this node anchored on chain.
    #[error("the local log (size {local_size}) does not extend the on-chain anchor (size {anchored_size}): {reason}; refusing to serve")]
    LogBehindAnchor {
        /// The local log's size.
        local_size: u64,
        /// The anchored tree size.
        anchored_size: u64,
        /// What differs.
        reason: String,
    },
    /// TLS setup or a TLS connection failed.
    #[error("TLS")]
    Tls(#[source] rustls::Error),
    /// Talking to another KMS node failed (onboarding): connection, its evidence, its
    /// answer.
    #[error("KMS client")]
    KmsClient(#[from] cairn_kms_client::Error),
    /// Encoding or decoding JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A blocking task (log append, checkpoint signing) panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The node's key generation does not fit the log record's `uint32` field.
    #[error("key generation {generation} exceeds the log record's u32 range")]
    KeyGenerationTooLarge {
        /// The generation.
        generation: u64,
    },
    /// The node's clock reads a time that a certificate cannot carry.
    #[error("clock time {now} is outside the range of certificate dates")]
    ClockOutOfRange {
        /// The clock's reading, seconds since the Unix epoch.
        now: u64,
    },
    /// An address (`host:port`) did not resolve.
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        /// The address as given.
        address: String,
        /// Why (timed out, unknown name, no address).
        source: std::io::Error,
    },
    /// The source node refused onboarding with an API error.
    #[error("onboarding refused: {status} {code}: {message}")]
    OnboardRefused {
        /// HTTP status.
        status: u16,
        /// The error code, e.g. `denied.kms_mr`.
        code: String,
        /// The message (the contract's reason for denials).
        message: String,
    },
    /// The source node's evidence fails release-path steps 1-2 (its OS image is unknown
    /// here, …); the source is the answer a peer with that evidence would get.
    #[error("the source node's evidence is rejected")]
    SourceEvidence(#[source] crate::reject::ApiError),
    /// The source node's TLS certificate is not issued by the root CA of the master
    /// secret it sent.
    #[error("the source node is not rooted in the root CA of the secret it sent")]
    SourceNotRooted(#[source] cairn_attestation::ChainError),
    /// No KMS root keys are registered on chain, so a received secret cannot be checked.
    #[error(
        "no KMS root keys are registered on chain; a received master secret cannot be checked"
    )]
    NoRootKeysOnChain,
}

impl From<cairn_service::ConfigError> for Error {
    fn from(e: cairn_service::ConfigError) -> Self {
        Error::Config {
            key: e.key,
            reason: e.reason,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
