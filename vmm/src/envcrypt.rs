//! Deploy-time env encryption, for every client of the VMM (the CLI, the web page's
//! server side): the VMM only ever receives the result.
//!
//! ```text
//! KMS (RA-TLS, server-only: its evidence and kms:rpc usage verified)
//!   GET /v1/env-pubkey/{app_id} → (X25519 public key, timestamp, root-k256 signature)
//! chain (pinned block) → KmsAuth root k256 key of the current generation
//! signature over (app_id, timestamp, public key) by that key, timestamp fresh
//!   → encrypt (Cairn format: X25519 + HKDF + AES-256-GCM, AAD = app id)
//! ```
//!
//! Trust: the chain endpoint the *caller* configured (never one a VMM suggests: a VMM
//! that picked the chain or the KMS could pick a key it holds) and the caller's
//! attestation trust root for the KMS. The KMS's key is accepted only when the root key
//! registered on chain signed it.

use cairn_kms_client::{KmsClient, KmsConnection};
use cairn_onchain::ChainClient;
use cairn_protocol::env::{encrypt_env_for_app, EnvEncryption, EnvVars};

/// How old an env-pubkey answer may be (seconds).
pub const ENV_PUBKEY_MAX_AGE_SECS: u64 = cairn_protocol::env::DEFAULT_ENV_PUBKEY_MAX_AGE_SECS;

/// Why deploy-time env encryption refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// The chain could not be read.
    #[error("chain: {0}")]
    Chain(#[from] cairn_onchain::Error),
    /// No KMS root key is registered on chain.
    #[error("no KMS root key is registered on chain")]
    NoRootKey,
    /// The KMS could not be reached, failed its attestation, or answered an error.
    #[error("KMS: {0}")]
    Kms(#[from] cairn_kms_client::Error),
    /// The env public key's signature or timestamp does not verify against the root key
    /// registered on chain, or the variables are invalid.
    #[error("env: {0}")]
    Protocol(#[from] cairn_protocol::Error),
}

/// Encrypt `vars` for `app_id` with the key the KMS at `kms_url` serves, accepted only
/// when signed by the root key registered on `chain` and at most
/// [`ENV_PUBKEY_MAX_AGE_SECS`] old at `now` (unix seconds).
pub async fn encrypt_env(
    kms: &KmsClient,
    kms_url: &str,
    chain: &ChainClient,
    app_id: [u8; 20],
    vars: &EnvVars,
    now: u64,
) -> Result<Vec<u8>, EnvError> {
    let mut conn = kms.connect(kms_url, None).await?;
    encrypt_env_over(&mut conn, chain, app_id, vars, now).await
}

/// [`encrypt_env`] over an open KMS connection.
pub async fn encrypt_env_over(
    conn: &mut KmsConnection,
    chain: &ChainClient,
    app_id: [u8; 20],
    vars: &EnvVars,
    now: u64,
) -> Result<Vec<u8>, EnvError> {
    let at = chain.policy_block().await?;
    let root = chain.root_keys(at).await?.ok_or(EnvError::NoRootKey)?;
    let resp = conn.env_pubkey(&app_id).await?;
    // A malformed root key is `InvalidPublicKey`, a key it did not sign a signature
    // error: nothing is encrypted unless every check passed.
    Ok(encrypt_env_for_app(
        &resp,
        &root.k256_pubkey,
        &app_id,
        vars,
        EnvEncryption::new(now),
    )?)
}
