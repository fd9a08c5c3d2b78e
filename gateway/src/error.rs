//! The crate's error type: what stops a gateway node from starting or serving.
//! Per-request refusals are [`crate::ApiError`] (registration) or a TLS alert (proxy).

use cairn_attestation::{ChainError, RaTlsError};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the gateway cannot start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or wrong; `key` names it (`chain.rpc_url`).
    #[error("config {key}: {reason}")]
    Config {
        /// The dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The chain could not be read (or denied the gateway itself).
    #[error("chain: {0}")]
    Chain(#[from] cairn_onchain::Error),
    /// The gateway's own guest agent failed (identity, ACME account key).
    #[error("guest agent: {0}")]
    Agent(#[source] cairn_acme::Error),
    /// The ACME certificate source could not be set up.
    #[error("ACME: {0}")]
    Acme(#[source] cairn_acme::Error),
    /// The certificate chain the agent returned for the gateway is not a KMS-issued app
    /// chain.
    #[error("the gateway's own certificate chain: {0}")]
    IdentityChain(#[source] ChainError),
    /// The gateway's own certificate carries no verifiable evidence.
    #[error("the gateway's own RA-TLS evidence: {0}")]
    IdentityEvidence(#[source] RaTlsError),
    /// The agent's answer for the gateway's identity is unusable.
    #[error("the gateway's identity: {0}")]
    Identity(String),
    /// KmsAuth names another app (or none) as the gateway: this CVM is not the gateway.
    #[error("KmsAuth's gatewayAppId is {on_chain}, this CVM is app 0x{}", hex::encode(.ours))]
    NotGatewayApp {
        /// This CVM's app id.
        ours: [u8; 20],
        /// What KmsAuth says (`none` when unset).
        on_chain: String,
    },
    /// The KMS root CA that issued the gateway's chain is not the one KmsAuth registers.
    #[error("the gateway's KMS root CA is not the root registered on chain ({0})")]
    RootMismatch(String),
    /// A TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The serving certificate file is unusable.
    #[error("certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Setting up quote verification (PCCS client, simulator PKI) failed.
    #[error("attestation: {0}")]
    Attestation(#[source] cairn_attestation::Error),
}

impl From<cairn_service::ConfigError> for Error {
    fn from(e: cairn_service::ConfigError) -> Self {
        Error::Config {
            key: e.key,
            reason: e.reason,
        }
    }
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
