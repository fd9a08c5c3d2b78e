//! The crate's error type.

use cairn_protocol::compose::ComposeError;
use cairn_protocol::sysconfig::ShareFileError;

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
    /// A KMS request failed (connection, TLS/attestation, HTTP status, body).
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// Every KMS URL failed; the errors in order.
    #[error("no KMS released keys: {}", .0.iter().map(|(u, e)| format!("{u}: {e}")).collect::<Vec<_>>().join("; "))]
    AllKmsFailed(Vec<(String, KmsError)>),
    /// The KMS root CA does not match the compose's `key_provider_id` pin.
    #[error("KMS root CA key {got} does not match the pinned key_provider_id {pinned}")]
    KeyProviderMismatch {
        /// Pinned SPKI, hex.
        pinned: String,
        /// Presented SPKI, hex.
        got: String,
    },
    /// The KMS response is inconsistent (root CA unparsable, signature wrong, …).
    #[error("KMS response rejected: {0}")]
    BadKmsResponse(String),
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

/// Why one KMS request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The URL is not `https://host[:port]`.
    #[error("bad KMS URL: {0}")]
    BadUrl(String),
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake failed: the KMS certificate is not attested, its evidence is
    /// rejected, its usage is not `kms:rpc`, or it refused our certificate.
    #[error("TLS handshake (KMS attestation): {0}")]
    Handshake(String),
    /// The collateral for the KMS's quote could not be fetched from the PCCS.
    #[error("collateral for the KMS quote: {0}")]
    Collateral(String),
    /// HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// The KMS answered with an error status.
    #[error("KMS returned {status}: {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error code (`denied.compose_hash`, …).
        code: String,
        /// Message (for denials, the contract's reason).
        message: String,
    },
    /// The response body is too large or not the documented JSON.
    #[error("bad response body: {0}")]
    Body(String),
    /// The request did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The KMS's TLS certificate is not issued by the KMS root CA (a TDX VM with a valid
    /// `kms:rpc` quote that is not a node of that KMS), or the root CA is malformed.
    #[error("KMS not rooted in its root CA: {0}")]
    NotRooted(String),
    /// A `sign-cert` chain is not leaf → app CA → the KMS root CA, or its leaf does not
    /// certify the requested key.
    #[error("KMS certificate chain rejected: {0}")]
    BadChain(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
