//! Recoverable secp256k1 signatures and the dstack-compatible app-key signature chain
//! (FORMATS.md "App key signature chain").
//!
//! ```text
//! KMS root k256 ──signs──▶ keccak256("dstack-kms-issued:" ‖ app_id ‖ app_pubkey33)
//! app k256      ──signs──▶ keccak256(purpose ‖ ":" ‖ hex(derived_pubkey33))
//! derived key   = HKDF-SHA256(ikm = app secret, salt = "RATLS", info = path)
//! ```
//!
//! An ed25519 derived key (dstack's guest agent, `GetKey` with `algorithm: "ed25519"`)
//! uses the same 32 HKDF bytes as its seed; the app key then signs
//! `keccak256(purpose ‖ ":" ‖ hex(ed25519 pubkey, 32 B))` the same way.
//!
//! A verifier recovers the app public key from the purpose signature, then the KMS root
//! public key from the KMS signature, and compares the latter with the key registered on
//! chain. The env-pubkey signature of Cairn's KMS (docs/protocol.md) uses the same
//! recoverable-signature encoding.

use alloy_primitives::keccak256;
use hkdf::Hkdf;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Literal prefix of the message a KMS signs over an app key (part of dstack's format).
pub const KMS_ISSUED_PREFIX: &[u8] = b"dstack-kms-issued:";
/// HKDF salt of keys derived from the app key for a path.
pub const DERIVED_KEY_SALT: &[u8] = b"RATLS";
/// Prefix of the message the KMS signs over an env public key (Cairn's own).
pub const ENV_PUBKEY_PREFIX: &[u8] = b"cairn-env-pubkey:";
/// Length of a recoverable signature `r ‖ s ‖ v`.
pub const RECOVERABLE_SIGNATURE_LEN: usize = 65;
/// Length of a compressed SEC1 secp256k1 public key.
pub const COMPRESSED_PUBKEY_LEN: usize = 33;

/// A 65-byte recoverable secp256k1 signature `r ‖ s ‖ v`, `v ∈ {0, 1}`.
pub type RecoverableSignature = [u8; RECOVERABLE_SIGNATURE_LEN];

/// Sign a 32-byte prehash; `s` is normalised low, `v` is the recovery id (0 or 1).
/// Deterministic (RFC 6979).
pub fn sign_recoverable(key: &SigningKey, prehash: &[u8; 32]) -> Result<RecoverableSignature> {
    let (sig, recid) = key
        .sign_prehash_recoverable(prehash)
        .map_err(|_| Error::Signing)?;
    let mut out = [0u8; RECOVERABLE_SIGNATURE_LEN];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = recid.to_byte();
    Ok(out)
}

/// Recover the signer of a 32-byte prehash. Rejects `v ∉ {0, 1}` and high-`s` signatures.
pub fn recover_signer(prehash: &[u8; 32], sig: &RecoverableSignature) -> Result<VerifyingKey> {
    let v = sig[64];
    if v > 1 {
        return Err(Error::MalformedSignature);
    }
    let recid = RecoveryId::from_byte(v).ok_or(Error::MalformedSignature)?;
    let signature = Signature::from_slice(&sig[..64]).map_err(|_| Error::MalformedSignature)?;
    if signature.normalize_s().is_some() {
        return Err(Error::MalformedSignature);
    }
    VerifyingKey::recover_from_prehash(prehash, &signature, recid)
        .map_err(|_| Error::RecoveryFailed)
}

/// The compressed SEC1 encoding (33 bytes) of a public key.
pub fn compressed(key: &VerifyingKey) -> [u8; COMPRESSED_PUBKEY_LEN] {
    let point = key.to_encoded_point(true);
    let mut out = [0u8; COMPRESSED_PUBKEY_LEN];
    out.copy_from_slice(point.as_bytes());
    out
}

/// The Ethereum address of a public key: `keccak256(uncompressed[1..])[12..]`.
pub fn eth_address(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    out
}

/// The message a KMS signs over an app key:
/// `keccak256("dstack-kms-issued:" ‖ app_id (20 B) ‖ compressed app pubkey (33 B))`.
pub fn kms_app_key_message(
    app_id: &[u8; 20],
    app_pubkey: &[u8; COMPRESSED_PUBKEY_LEN],
) -> [u8; 32] {
    let mut msg = Vec::with_capacity(KMS_ISSUED_PREFIX.len() + 20 + COMPRESSED_PUBKEY_LEN);
    msg.extend_from_slice(KMS_ISSUED_PREFIX);
    msg.extend_from_slice(app_id);
    msg.extend_from_slice(app_pubkey);
    keccak256(&msg).0
}

/// Recover the KMS root public key from its signature over an app key.
pub fn recover_kms_app_key_signer(
    app_id: &[u8; 20],
    app_pubkey: &[u8; COMPRESSED_PUBKEY_LEN],
    kms_signature: &RecoverableSignature,
) -> Result<VerifyingKey> {
    recover_signer(&kms_app_key_message(app_id, app_pubkey), kms_signature)
}

/// Check a KMS signature over an app key against the expected KMS root public key.
pub fn verify_kms_app_key_signature(
    app_id: &[u8; 20],
    app_pubkey: &[u8; COMPRESSED_PUBKEY_LEN],
    kms_signature: &RecoverableSignature,
    kms_root: &VerifyingKey,
) -> Result<()> {
    if recover_kms_app_key_signer(app_id, app_pubkey, kms_signature)? == *kms_root {
        Ok(())
    } else {
        Err(Error::WrongSigner)
    }
}

/// The key derived from the app key for `path`:
/// `HKDF-SHA256(ikm = app secret, salt = "RATLS", info = path)`, 32 bytes, used as a
/// secp256k1 scalar. Fails (instead of resampling, to stay bit-exact with dstack) in the
/// negligible case that the output is zero or not below the curve order.
pub fn derive_path_key(app_secret: &[u8; 32], path: &[u8]) -> Result<SigningKey> {
    let okm = derive_path_secret(app_secret, path)?;
    SigningKey::from_bytes((&*okm).into()).map_err(|_| Error::DerivedKeyOutOfRange)
}

/// The message the app key signs over a derived key:
/// `keccak256(purpose ‖ ":" ‖ lowercase hex(compressed derived pubkey))`.
pub fn purpose_message(purpose: &str, derived_pubkey: &[u8; COMPRESSED_PUBKEY_LEN]) -> [u8; 32] {
    purpose_message_for(purpose, derived_pubkey)
}

/// The derived 32 bytes for `path`: `HKDF-SHA256(ikm = app secret, salt = "RATLS",
/// info = path)` (dstack's `derive_key(app_key, [path], 32)`).
pub fn derive_path_secret(app_secret: &[u8; 32], path: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let hk = Hkdf::<Sha256>::new(Some(DERIVED_KEY_SALT), app_secret);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(path, &mut okm[..])
        .map_err(|_| Error::DerivedKeyOutOfRange)?;
    Ok(okm)
}

/// The message the app key signs over a derived public key of any algorithm:
/// `keccak256(purpose ‖ ":" ‖ lowercase hex(public key bytes))` — compressed SEC1 for
/// secp256k1, the 32 raw bytes for ed25519.
pub fn purpose_message_for(purpose: &str, derived_pubkey: &[u8]) -> [u8; 32] {
    let mut msg = Vec::with_capacity(purpose.len() + 1 + 2 * derived_pubkey.len());
    msg.extend_from_slice(purpose.as_bytes());
    msg.push(b':');
    msg.extend_from_slice(hex::encode(derived_pubkey).as_bytes());
    keccak256(&msg).0
}

/// A derived ed25519 key and its signature chain `[app signature, KMS signature]`.
#[derive(Clone)]
pub struct DerivedEd25519Key {
    /// The derived ed25519 key (seed = [`derive_path_secret`]).
    pub key: ed25519_dalek::SigningKey,
    /// `signature_chain[0]`: the app key's signature over [`purpose_message_for`] of the
    /// 32-byte ed25519 public key.
    pub app_signature: RecoverableSignature,
    /// `signature_chain[1]`: the KMS signature over the app key.
    pub kms_signature: RecoverableSignature,
}

impl std::fmt::Debug for DerivedEd25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedEd25519Key")
            .field("key", &"<redacted>")
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

/// Derive the ed25519 key for `path` and sign its public key for `purpose` with the app
/// key (guest agent `GetKey`/`Sign` with `ed25519`, as dstack's guest agent does).
pub fn derive_signed_ed25519_key(
    app_secret: &[u8; 32],
    path: &[u8],
    purpose: &str,
    kms_signature: RecoverableSignature,
) -> Result<DerivedEd25519Key> {
    let app_key =
        SigningKey::from_bytes(app_secret.into()).map_err(|_| Error::DerivedKeyOutOfRange)?;
    let seed = derive_path_secret(app_secret, path)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let msg = purpose_message_for(purpose, key.verifying_key().as_bytes());
    let app_signature = sign_recoverable(&app_key, &msg)?;
    Ok(DerivedEd25519Key {
        key,
        app_signature,
        kms_signature,
    })
}

/// Verify an ed25519 `GetKey` signature chain: recover the app key from `app_signature`
/// over the 32-byte public key, then the KMS root, which must equal `kms_root`. Returns
/// the app key.
pub fn verify_ed25519_signature_chain(
    app_id: &[u8; 20],
    purpose: &str,
    derived_pubkey: &[u8; 32],
    app_signature: &RecoverableSignature,
    kms_signature: &RecoverableSignature,
    kms_root: &VerifyingKey,
) -> Result<VerifyingKey> {
    let app_key = recover_signer(&purpose_message_for(purpose, derived_pubkey), app_signature)?;
    verify_kms_app_key_signature(app_id, &compressed(&app_key), kms_signature, kms_root)?;
    Ok(app_key)
}

/// A derived key and its signature chain `[app signature, KMS signature]`.
#[derive(Clone)]
pub struct DerivedKey {
    /// The derived secp256k1 key.
    pub key: SigningKey,
    /// `signature_chain[0]`: the app key's signature over [`purpose_message`].
    pub app_signature: RecoverableSignature,
    /// `signature_chain[1]`: the KMS signature over the app key.
    pub kms_signature: RecoverableSignature,
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("key", &"<redacted>")
            .field(
                "public_key",
                &hex::encode(compressed(self.key.verifying_key())),
            )
            .finish_non_exhaustive()
    }
}

/// Derive the key for `path` and sign it for `purpose` with the app key (guest agent
/// `GetKey`). `kms_signature` is the KMS signature the guest received with its app key.
pub fn derive_signed_key(
    app_secret: &[u8; 32],
    path: &[u8],
    purpose: &str,
    kms_signature: RecoverableSignature,
) -> Result<DerivedKey> {
    let app_key =
        SigningKey::from_bytes(app_secret.into()).map_err(|_| Error::DerivedKeyOutOfRange)?;
    let key = derive_path_key(app_secret, path)?;
    let msg = purpose_message(purpose, &compressed(key.verifying_key()));
    let app_signature = sign_recoverable(&app_key, &msg)?;
    Ok(DerivedKey {
        key,
        app_signature,
        kms_signature,
    })
}

/// Verify a `GetKey` signature chain: recover the app key from `app_signature`, then the KMS
/// root from `kms_signature`, and require it to equal `kms_root`. Returns the app key.
pub fn verify_signature_chain(
    app_id: &[u8; 20],
    purpose: &str,
    derived_pubkey: &[u8; COMPRESSED_PUBKEY_LEN],
    app_signature: &RecoverableSignature,
    kms_signature: &RecoverableSignature,
    kms_root: &VerifyingKey,
) -> Result<VerifyingKey> {
    let app_key = recover_signer(&purpose_message(purpose, derived_pubkey), app_signature)?;
    verify_kms_app_key_signature(app_id, &compressed(&app_key), kms_signature, kms_root)?;
    Ok(app_key)
}

/// The message the KMS root k256 key signs for an app's env public key:
/// `keccak256("cairn-env-pubkey:" ‖ app_id (20 B) ‖ u64be(timestamp) ‖ X25519 pubkey (32 B))`.
pub fn env_pubkey_message(app_id: &[u8; 20], timestamp: u64, public_key: &[u8; 32]) -> [u8; 32] {
    let mut msg = Vec::with_capacity(ENV_PUBKEY_PREFIX.len() + 20 + 8 + 32);
    msg.extend_from_slice(ENV_PUBKEY_PREFIX);
    msg.extend_from_slice(app_id);
    msg.extend_from_slice(&timestamp.to_be_bytes());
    msg.extend_from_slice(public_key);
    keccak256(&msg).0
}

/// Check an env-pubkey signature against the expected KMS root public key.
pub fn verify_env_pubkey_signature(
    app_id: &[u8; 20],
    timestamp: u64,
    public_key: &[u8; 32],
    signature: &RecoverableSignature,
    kms_root: &VerifyingKey,
) -> Result<()> {
    let signer = recover_signer(
        &env_pubkey_message(app_id, timestamp, public_key),
        signature,
    )?;
    if signer == *kms_root {
        Ok(())
    } else {
        Err(Error::WrongSigner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes((&[byte; 32]).into()).unwrap()
    }

    /// A root key, an app secret and its app key, the app id, and the root's (KMS)
    /// signature over that app key for that app id.
    fn app_key_signed_by_root() -> (
        SigningKey,
        [u8; 32],
        SigningKey,
        [u8; 20],
        RecoverableSignature,
    ) {
        let root = key(7);
        let app = key(9);
        let app_id = [0x22; 20];
        let kms_sig = sign_recoverable(
            &root,
            &kms_app_key_message(&app_id, &compressed(app.verifying_key())),
        )
        .unwrap();
        (root, [9u8; 32], app, app_id, kms_sig)
    }

    /// Known answer computed independently (Python `hmac` HKDF-SHA256 and
    /// `cryptography`'s Ed25519) for app secret `[0x11; 32]`, path `wallet/sol`.
    #[test]
    fn ed25519_derivation_matches_an_independent_implementation() {
        let d = derive_signed_ed25519_key(&[0x11; 32], b"wallet/sol", "solana", [0; 65]).unwrap();
        assert_eq!(
            hex::encode(d.key.to_bytes()),
            "9ce96989c8f0a834dde1b4683ccd332e3d480e58751950731d047515590cc5f7"
        );
        assert_eq!(
            hex::encode(d.key.verifying_key().as_bytes()),
            "7fdc0c0ae63054660586e32ec349d58bbbcae9300a68f63b133e1fc142fbd4e3"
        );
        use ed25519_dalek::Signer;
        assert_eq!(
            hex::encode(d.key.sign(b"hello cairn").to_bytes()),
            "8ae4061462e338f6ed5c7591c9ae68f34f1758ba0a34ccee61b7f25116d9bbb0\
             b926feb51dfe1ed7eed6c249d10a5b5db2909226b12c6e9e9890667d028cea02"
        );
        // the seed is the secp256k1 derivation's bytes: one KDF for both algorithms
        assert_eq!(
            <[u8; 32]>::from(
                derive_path_key(&[0x11; 32], b"wallet/sol")
                    .unwrap()
                    .to_bytes()
            ),
            d.key.to_bytes()
        );
    }

    #[test]
    fn ed25519_signature_chain_verifies_and_binds_purpose_and_app() {
        let (root, app_secret, app, app_id, kms_sig) = app_key_signed_by_root();
        let d = derive_signed_ed25519_key(&app_secret, b"p", "solana", kms_sig).unwrap();
        let pk = *d.key.verifying_key().as_bytes();
        let got = verify_ed25519_signature_chain(
            &app_id,
            "solana",
            &pk,
            &d.app_signature,
            &d.kms_signature,
            root.verifying_key(),
        )
        .unwrap();
        assert_eq!(got, *app.verifying_key());
        // another purpose recovers another "app key", which the KMS never signed
        assert_eq!(
            verify_ed25519_signature_chain(
                &app_id,
                "other",
                &pk,
                &d.app_signature,
                &d.kms_signature,
                root.verifying_key(),
            ),
            Err(Error::WrongSigner)
        );
        // another app id
        assert_eq!(
            verify_ed25519_signature_chain(
                &[0x23; 20],
                "solana",
                &pk,
                &d.app_signature,
                &d.kms_signature,
                root.verifying_key(),
            ),
            Err(Error::WrongSigner)
        );
    }

    #[test]
    fn kms_signature_recovers_to_root_and_rejects_other_app() {
        let root = key(7);
        let app = key(9);
        let app_id = [0x11; 20];
        let app_pk = compressed(app.verifying_key());
        let sig = sign_recoverable(&root, &kms_app_key_message(&app_id, &app_pk)).unwrap();
        assert!(sig[64] <= 1);
        verify_kms_app_key_signature(&app_id, &app_pk, &sig, root.verifying_key()).unwrap();
        // the same signature presented for another app id recovers some other key
        assert_eq!(
            verify_kms_app_key_signature(&[0x12; 20], &app_pk, &sig, root.verifying_key()),
            Err(Error::WrongSigner)
        );
    }

    #[test]
    fn recover_rejects_bad_v_and_high_s() {
        let root = key(7);
        let msg = [5u8; 32];
        let mut sig = sign_recoverable(&root, &msg).unwrap();
        let mut bad_v = sig;
        bad_v[64] = 27;
        assert_eq!(recover_signer(&msg, &bad_v), Err(Error::MalformedSignature));
        // flip s to n - s (the high twin) and v: a malleated signature must be rejected
        let s = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s_scalar) = s.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s_scalar).to_bytes()).unwrap();
        sig[..64].copy_from_slice(&high.to_bytes());
        sig[64] ^= 1;
        assert_eq!(recover_signer(&msg, &sig), Err(Error::MalformedSignature));
        let zero = [0u8; 65];
        assert_eq!(recover_signer(&msg, &zero), Err(Error::MalformedSignature));
    }

    #[test]
    fn signature_chain_verifies_and_detects_wrong_purpose_and_root() {
        let (root, app_secret, app, app_id, kms_sig) = app_key_signed_by_root();
        let d = derive_signed_key(&app_secret, b"/wallet/0", "ethereum", kms_sig).unwrap();
        let dpk = compressed(d.key.verifying_key());
        let recovered = verify_signature_chain(
            &app_id,
            "ethereum",
            &dpk,
            &d.app_signature,
            &d.kms_signature,
            root.verifying_key(),
        )
        .unwrap();
        assert_eq!(recovered, *app.verifying_key());
        assert_eq!(
            verify_signature_chain(
                &app_id,
                "solana",
                &dpk,
                &d.app_signature,
                &d.kms_signature,
                root.verifying_key()
            ),
            Err(Error::WrongSigner)
        );
        assert_eq!(
            verify_signature_chain(
                &app_id,
                "ethereum",
                &dpk,
                &d.app_signature,
                &d.kms_signature,
                key(8).verifying_key()
            ),
            Err(Error::WrongSigner)
        );
        // different paths give different keys; same path is stable
        let d2 = derive_path_key(&app_secret, b"/wallet/1").unwrap();
        assert_ne!(d2.to_bytes(), d.key.to_bytes());
        assert_eq!(
            derive_path_key(&app_secret, b"/wallet/0")
                .unwrap()
                .to_bytes(),
            d.key.to_bytes()
        );
        assert!(format!("{d:?}").contains("<redacted>"));
    }

    #[test]
    fn env_pubkey_signature_binds_app_timestamp_and_key() {
        let root = key(3);
        let app_id = [1u8; 20];
        let pk = [2u8; 32];
        let sig = sign_recoverable(&root, &env_pubkey_message(&app_id, 100, &pk)).unwrap();
        verify_env_pubkey_signature(&app_id, 100, &pk, &sig, root.verifying_key()).unwrap();
        for (a, t, p) in [
            ([9u8; 20], 100, pk),
            (app_id, 101, pk),
            (app_id, 100, [3u8; 32]),
        ] {
            assert_eq!(
                verify_env_pubkey_signature(&a, t, &p, &sig, root.verifying_key()),
                Err(Error::WrongSigner)
            );
        }
    }

    #[test]
    fn eth_address_matches_known_vector() {
        // secret key 1 → address 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf (well known)
        let mut one = [0u8; 32];
        one[31] = 1;
        let k = SigningKey::from_bytes((&one).into()).unwrap();
        assert_eq!(
            hex::encode(eth_address(k.verifying_key())),
            "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }
}
