//! Encrypted environment variables (DESIGN.md §7, FORMATS.md "Encrypted environment").
//!
//! Two blob formats, both decrypted with the app's env X25519 secret (which the KMS
//! releases with the app key):
//!
//! ```text
//! Cairn (preferred):  "CAIRNENV1" ‖ eph_pk (32) ‖ nonce (12) ‖ AES-256-GCM(ct ‖ tag)
//!                     key = HKDF-SHA256(ikm = X25519(eph, recipient), salt = none,
//!                                       info = eph_pk ‖ recipient_pk)
//!                     AAD = app_id (20 bytes)
//! dstack legacy:      eph_pk (32) ‖ iv (12) ‖ AES-256-GCM(ct ‖ tag)
//!                     key = raw X25519 shared secret, no AAD
//! ```
//!
//! A blob that starts with the magic is *only* tried as the Cairn format; there is no
//! fallback from a failed Cairn decryption to the legacy format. The all-zero shared secret
//! (a low-order ephemeral key) is rejected in both formats.
//!
//! The plaintext is JSON `{"env":[{"key":"NAME","value":"..."}]}`. Names must match
//! `^[A-Za-z_][A-Za-z0-9_]*$`; duplicates are rejected; only names listed in the compose's
//! `allowed_envs` reach the app ([`EnvVars::filter_allowed`]).
//!
//! A deployer encrypts with [`encrypt_env_for_app`]: it takes the KMS's signed answer to
//! `GET /v1/env-pubkey/{app_id}` and the root k256 key **registered on chain**, checks the
//! signature and its timestamp, and only then encrypts to that key — so a host or proxy
//! between the deployer and the KMS cannot substitute its own key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::api::EnvPubkeyResponse;
use crate::bounded;
use crate::error::{Error, Result};

/// Magic prefix of Cairn's env blob format.
pub const MAGIC: &[u8; 9] = b"CAIRNENV1";
/// Largest encrypted env blob accepted (either format).
pub const MAX_ENCRYPTED_ENV_LEN: usize = 256 * 1024;
/// Most env vars in one blob.
pub const MAX_ENV_VARS: usize = 1024;
/// Longest env var name, in bytes.
pub const MAX_ENV_NAME_LEN: usize = 256;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// X25519 public key length.
pub const X25519_LEN: usize = 32;

/// Which format a blob was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFormat {
    /// Cairn's format (magic, KDF, app id bound).
    Cairn,
    /// dstack's legacy format (raw shared secret, no AAD).
    DstackLegacy,
}

/// One environment variable. `Debug` redacts the value; both fields are zeroized on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// The variable name.
    pub key: String,
    /// The value.
    pub value: String,
}

redacted_debug!(EnvVar {
    key,
    value: redacted
});

/// The plaintext document `{"env":[...]}`, validated: names well formed and unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVars {
    /// The variables, in input order.
    pub env: Vec<EnvVar>,
}

/// Whether `name` matches `^[A-Za-z_][A-Za-z0-9_]*$` and is at most [`MAX_ENV_NAME_LEN`].
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && name.len() <= MAX_ENV_NAME_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl EnvVars {
    /// Build and validate.
    pub fn new(env: Vec<EnvVar>) -> Result<Self> {
        let vars = EnvVars { env };
        vars.validate()?;
        Ok(vars)
    }

    /// Check count, name syntax and uniqueness.
    pub fn validate(&self) -> Result<()> {
        if self.env.len() > MAX_ENV_VARS {
            return Err(Error::EnvTooManyVars {
                count: self.env.len(),
                max: MAX_ENV_VARS,
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(self.env.len());
        for var in &self.env {
            if !is_valid_env_name(&var.key) {
                return Err(Error::EnvInvalidName(var.key.clone()));
            }
            if !seen.insert(var.key.as_str()) {
                return Err(Error::EnvDuplicateName(var.key.clone()));
            }
        }
        Ok(())
    }

    /// Parse and validate the plaintext JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let too_big = |len, max| Error::EnvTooLarge { len, max };
        let vars: EnvVars = bounded::json(bytes, MAX_ENCRYPTED_ENV_LEN, too_big, Error::EnvJson)?;
        vars.validate()?;
        Ok(vars)
    }

    /// Serialize to the plaintext JSON.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        serde_json::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| Error::EnvJson(e.to_string()))
    }

    /// Keep only the variables named in `allowed`; returns them and the names dropped.
    pub fn filter_allowed<S: AsRef<str>>(&self, allowed: &[S]) -> (Vec<EnvVar>, Vec<String>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for var in &self.env {
            if allowed.iter().any(|a| a.as_ref() == var.key) {
                kept.push(var.clone());
            } else {
                dropped.push(var.key.clone());
            }
        }
        (kept, dropped)
    }
}

fn shared_secret(secret: &StaticSecret, peer: &[u8; X25519_LEN]) -> Result<Zeroizing<[u8; 32]>> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(Error::EnvLowOrderKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The Cairn AES key: `HKDF-SHA256(ikm = shared, salt = none, info = eph_pk ‖ recipient_pk)`.
fn cairn_key(
    shared: &[u8; 32],
    eph_pk: &[u8; X25519_LEN],
    recipient_pk: &[u8; X25519_LEN],
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, shared);
    let mut info = [0u8; 2 * X25519_LEN];
    info[..X25519_LEN].copy_from_slice(eph_pk);
    info[X25519_LEN..].copy_from_slice(recipient_pk);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    let _ = hk.expand(&info, &mut key[..]);
    key
}

/// Encrypt `vars` for an app in Cairn's format with a fresh ephemeral key and nonce.
pub fn encrypt(
    recipient_pk: &[u8; X25519_LEN],
    app_id: &[u8; 20],
    vars: &EnvVars,
) -> Result<Vec<u8>> {
    let (ephemeral, nonce) = fresh();
    encrypt_with(ephemeral, nonce, recipient_pk, app_id, vars)
}

/// What both formats seal: the validated plaintext, the ephemeral public key, and the
/// X25519 secret shared with the recipient.
type Sealing = (Zeroizing<Vec<u8>>, [u8; X25519_LEN], Zeroizing<[u8; 32]>);

fn sealing(
    ephemeral: &StaticSecret,
    recipient_pk: &[u8; X25519_LEN],
    vars: &EnvVars,
) -> Result<Sealing> {
    vars.validate()?;
    let plaintext = vars.to_json()?;
    let eph_pk = PublicKey::from(ephemeral).to_bytes();
    let shared = shared_secret(ephemeral, recipient_pk)?;
    Ok((plaintext, eph_pk, shared))
}

/// A fresh ephemeral secret and nonce, both from the OS.
fn fresh() -> (StaticSecret, [u8; NONCE_LEN]) {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    (StaticSecret::random_from_rng(OsRng), nonce)
}

/// Encrypt with a caller-chosen ephemeral secret and nonce (for test vectors).
///
/// Never reuse an ephemeral secret: [`encrypt`] draws both from the OS.
pub fn encrypt_with(
    ephemeral: StaticSecret,
    nonce: [u8; NONCE_LEN],
    recipient_pk: &[u8; X25519_LEN],
    app_id: &[u8; 20],
    vars: &EnvVars,
) -> Result<Vec<u8>> {
    let (plaintext, eph_pk, shared) = sealing(&ephemeral, recipient_pk, vars)?;
    let key = cairn_key(&shared, &eph_pk, recipient_pk);
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| Error::EnvDecrypt)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: app_id,
            },
        )
        .map_err(|_| Error::EnvDecrypt)?;
    let mut out = Vec::with_capacity(MAGIC.len() + X25519_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&eph_pk);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    if out.len() > MAX_ENCRYPTED_ENV_LEN {
        return Err(Error::EnvTooLarge {
            len: out.len(),
            max: MAX_ENCRYPTED_ENV_LEN,
        });
    }
    Ok(out)
}

/// Default bound on the age of a KMS env-pubkey signature accepted by
/// [`encrypt_env_for_app`], in seconds.
pub const DEFAULT_ENV_PUBKEY_MAX_AGE_SECS: u64 = 600;

/// How [`encrypt_env_for_app`] encrypts, and how fresh the KMS's signed key must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvEncryption {
    /// The blob format: Cairn's (default), or dstack's legacy one for guests that only
    /// read that.
    pub format: EnvFormat,
    /// The caller's clock, seconds since the Unix epoch.
    pub now: u64,
    /// Oldest acceptable env-pubkey signature, in seconds.
    pub max_age: u64,
}

impl EnvEncryption {
    /// Cairn's format, signatures up to [`DEFAULT_ENV_PUBKEY_MAX_AGE_SECS`] old at `now`.
    pub fn new(now: u64) -> Self {
        Self {
            format: EnvFormat::Cairn,
            now,
            max_age: DEFAULT_ENV_PUBKEY_MAX_AGE_SECS,
        }
    }

    /// Sets the blob format.
    pub fn with_format(mut self, format: EnvFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the oldest acceptable signature age.
    pub fn with_max_age(mut self, max_age: u64) -> Self {
        self.max_age = max_age;
        self
    }
}

/// Encrypt `vars` for `app_id` the way a deployer must: check the KMS's signature over
/// the app's env public key against `root_k256` (the root k256 public key registered on
/// chain, SEC1 bytes — never the KMS's own word for it) and its timestamp
/// ([`EnvPubkeyResponse::verify`]), then encrypt to that key in `how.format`.
///
/// Errors: [`Error::InvalidPublicKey`] for a malformed root key, [`Error::WrongSigner`]
/// (or another signature error) when the key was not signed by that root for this app,
/// [`Error::StaleTimestamp`] / [`Error::FutureTimestamp`] for a signature outside the
/// window, and the encryption errors of [`encrypt`]. Nothing is encrypted unless every
/// check passed.
pub fn encrypt_env_for_app(
    env_pubkey: &EnvPubkeyResponse,
    root_k256: &[u8],
    app_id: &[u8; 20],
    vars: &EnvVars,
    how: EnvEncryption,
) -> Result<Vec<u8>> {
    let root = k256::ecdsa::VerifyingKey::from_sec1_bytes(root_k256)
        .map_err(|_| Error::InvalidPublicKey)?;
    let recipient = env_pubkey.verify(app_id, &root, how.now, how.max_age)?;
    match how.format {
        EnvFormat::Cairn => encrypt(&recipient, app_id, vars),
        EnvFormat::DstackLegacy => encrypt_legacy(&recipient, vars),
    }
}

/// Encrypt in dstack's legacy format with a fresh ephemeral key and nonce (for guests
/// that only read it; prefer [`encrypt`]).
pub fn encrypt_legacy(recipient_pk: &[u8; X25519_LEN], vars: &EnvVars) -> Result<Vec<u8>> {
    let (ephemeral, nonce) = fresh();
    encrypt_legacy_with(ephemeral, nonce, recipient_pk, vars)
}

/// Encrypt in dstack's legacy format (for compatibility tests; prefer [`encrypt`]).
pub fn encrypt_legacy_with(
    ephemeral: StaticSecret,
    nonce: [u8; NONCE_LEN],
    recipient_pk: &[u8; X25519_LEN],
    vars: &EnvVars,
) -> Result<Vec<u8>> {
    let (plaintext, eph_pk, shared) = sealing(&ephemeral, recipient_pk, vars)?;
    let cipher = Aes256Gcm::new_from_slice(&shared[..]).map_err(|_| Error::EnvDecrypt)?;
    let ct = cipher
        .encrypt(&Nonce::from(nonce), plaintext.as_slice())
        .map_err(|_| Error::EnvDecrypt)?;
    let mut out = Vec::with_capacity(X25519_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(&eph_pk);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Split `eph_pk ‖ nonce ‖ ct` (after the magic, if any).
fn split(body: &[u8]) -> Result<([u8; X25519_LEN], [u8; NONCE_LEN], &[u8])> {
    if body.len() < X25519_LEN + NONCE_LEN + TAG_LEN {
        return Err(Error::EnvTruncated);
    }
    let (pk, rest) = body.split_at(X25519_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let mut eph = [0u8; X25519_LEN];
    eph.copy_from_slice(pk);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok((eph, n, ct))
}

/// Decrypt a blob in either format with the app's env secret, then parse and validate the
/// plaintext. `app_id` is checked (as AAD) only by the Cairn format.
pub fn decrypt(
    secret: &StaticSecret,
    app_id: &[u8; 20],
    blob: &[u8],
) -> Result<(EnvVars, EnvFormat)> {
    if blob.len() > MAX_ENCRYPTED_ENV_LEN {
        return Err(Error::EnvTooLarge {
            len: blob.len(),
            max: MAX_ENCRYPTED_ENV_LEN,
        });
    }
    let (plaintext, format) = match blob.strip_prefix(&MAGIC[..]) {
        Some(body) => {
            let (eph_pk, nonce, ct) = split(body)?;
            let recipient_pk = PublicKey::from(secret).to_bytes();
            let shared = shared_secret(secret, &eph_pk)?;
            let key = cairn_key(&shared, &eph_pk, &recipient_pk);
            let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| Error::EnvDecrypt)?;
            let pt = cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ct,
                        aad: app_id,
                    },
                )
                .map_err(|_| Error::EnvDecrypt)?;
            (Zeroizing::new(pt), EnvFormat::Cairn)
        }
        None => {
            let (eph_pk, nonce, ct) = split(blob)?;
            let shared = shared_secret(secret, &eph_pk)?;
            let cipher = Aes256Gcm::new_from_slice(&shared[..]).map_err(|_| Error::EnvDecrypt)?;
            let pt = cipher
                .decrypt(&Nonce::from(nonce), ct)
                .map_err(|_| Error::EnvDecrypt)?;
            (Zeroizing::new(pt), EnvFormat::DstackLegacy)
        }
    };
    Ok((EnvVars::from_json(&plaintext)?, format))
}

#[cfg(test)]
mod tests;
