//! The crate's error type.

use cairn_protocol::compose::ComposeError;
use cairn_protocol::sysconfig::ShareFileError;
use cairn_protocol::with_causes;

/// Everything that can stop a boot or fail an agent request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A host-share file is missing, a symlink, not a regular file, or unreadable.
    #[error("host share file {file}: {reason}")]
    ShareFile {
        /// The file name inside the share.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A host-share file is larger than its cap (nothing was parsed).
    #[error("host share file {file} is larger than {max} bytes")]
    ShareFileTooLarge {
        /// The file name inside the share.
        file: String,
        /// The cap.
        max: usize,
    },
    /// `app-compose.json` is invalid.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// `sys-config.json` or `.instance-info` is invalid.
    #[error(transparent)]
    ShareContent(#[from] ShareFileError),
    /// The compose disables the KMS, which a Cairn guest needs for its keys.
    #[error("kms_enabled is false: a Cairn guest gets its keys from a KMS")]
    KmsDisabled,
    /// Outside the simulator the compose must pin its KMS (`key_provider_id`): without a
    /// pin any TDX machine could act as the KMS and hand out keys its operator knows.
    #[error("app-compose.json sets no key_provider_id: outside the simulator a guest only boots with its KMS root CA pinned (docs/guest.md)")]
    KmsPinRequired,
    /// sys-config's `chain.rpc_url` is not a URL.
    #[error("sys-config.json chain.rpc_url")]
    ChainRpcUrl(#[source] url::ParseError),
    /// The chain named in sys-config cannot be read (wrong chain id, no KmsAuth there,
    /// unreachable): the guest cannot check its KMS and does not boot.
    #[error("the chain in sys-config.json")]
    Chain(#[source] cairn_onchain::Error),
    /// sys-config lists no KMS URL.
    #[error("sys-config.json lists no kms_urls")]
    NoKmsUrls,
    /// Measuring an event or producing a quote failed.
    #[error("attestation: {0}")]
    Attestation(#[from] cairn_attestation::Error),
    /// The TEE failed.
    #[error("tee: {0}")]
    Tee(#[from] cairn_attestation::TeeError),
    /// Building an RA-TLS certificate failed.
    #[error("ra-tls: {0}")]
    RaTls(#[from] cairn_attestation::RaTlsError),
    /// A KMS request failed (connection, TLS/attestation, HTTP status, body, chain). The
    /// message spells out the whole cause (agent answers and boot logs show it).
    #[error("{}", with_causes(.0))]
    Kms(#[from] cairn_kms_client::Error),
    /// Every KMS URL failed; the errors in order.
    #[error("no KMS released keys: {}", .0.iter().map(|(u, e)| format!("{u}: {}", with_causes(e))).collect::<Vec<_>>().join("; "))]
    AllKmsFailed(Vec<(String, cairn_kms_client::Error)>),
    /// The KMS root CA does not match the compose's `key_provider_id` pin.
    #[error("KMS root CA key {got} does not match the pinned key_provider_id {pinned}")]
    KeyProviderMismatch {
        /// Pinned SPKI, hex.
        pinned: String,
        /// Presented SPKI, hex.
        got: String,
    },
    /// The KMS response is inconsistent (signature wrong, empty chain, …).
    #[error("KMS response rejected: {0}")]
    BadKmsResponse(String),
    /// The KMS root CA the guest booted with no longer parses.
    #[error("the booted KMS root CA")]
    RootCa(#[source] cairn_attestation::ChainError),
    /// The encrypted env could not be decrypted or parsed.
    #[error("encrypted env: {0}")]
    Env(#[from] cairn_protocol::Error),
    /// Deriving or signing with an app-derived key failed.
    #[error("key derivation or signing: {0}")]
    Signing(cairn_protocol::Error),
    /// Writing the keys directory failed.
    #[error("keys directory {path}: {reason}")]
    KeysDir {
        /// The path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Starting the app failed.
    #[error("starting the app: {0}")]
    Start(String),
    /// The runner could not start, watch or stop the app.
    #[error("runner: {0}")]
    Runner(#[from] crate::runner::RunnerError),
    /// The compose uses `docker-compose` but no Docker engine answers here.
    #[error("runner docker-compose needs a Docker engine, and none answers here ({0}); use runner \"process\" on machines without Docker")]
    DockerUnavailable(String),
    /// An agent request is invalid.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The agent has no app keys (boot did not finish).
    #[error("the guest has no app keys yet")]
    NoKeys,
    /// Local I/O (sockets, files).
    #[error("i/o: {0}")]
    Io(String),
}

impl Error {
    /// What the chain answered when the guest refused to trust its KMS on chain:
    /// sys-config's chain could not be read ([`Error::Chain`]), or the first KMS asked
    /// failed the guest's on-chain check of it (`Denied { check, reason }` when KmsAuth
    /// does not allow it, or why the chain could not be asked). `None` for any other
    /// failure.
    pub fn kms_chain_error(&self) -> Option<&cairn_onchain::Error> {
        match self {
            Error::Chain(e) => Some(e),
            Error::AllKmsFailed(v) => match &v.first()?.1 {
                cairn_kms_client::Error::KmsPolicy { source, .. } => Some(source),
                _ => None,
            },
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
