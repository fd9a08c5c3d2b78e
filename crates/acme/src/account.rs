//! The ACME account key, derived from the gateway app's key so every gateway node of the
//! app holds the same account (`docs/gateway.md`, "ACME account key", has the vector).
//!
//! ```text
//! k   = GetKey(path = "cairn/gateway/acme-account", purpose = "acme-account").key   (32 B)
//! prk = HKDF-SHA256-Extract(salt = "cairn-acme/v1", ikm = k)
//! d_i = HKDF-Expand(prk, info = "cairn/v1/acme-account-p256" ‖ u32be(i), 32)   i = 0, 1, …
//! the account key is the first d_i with 0 < d_i < n (P-256 order), as a P-256 scalar
//! ```
//!
//! `GetKey` derives from the app's KMS key and the path only, so the result depends on
//! the app, never on the node or the instance.

use hkdf::Hkdf;
use p256::pkcs8::EncodePrivateKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::consts::{ACCOUNT_KEY_INFO, ACCOUNT_KEY_SALT};
use crate::error::{Error, Result};

/// Counter values tried before giving up (each fails with probability < 2⁻³²).
const MAX_RESAMPLES: u32 = 16;

/// The P-256 ACME account key. `Debug` shows only the public key.
pub struct AccountKey {
    secret: p256::SecretKey,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("public_key", &hex::encode(self.public_key_sec1()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl AccountKey {
    /// Derive the account key from the 32-byte `GetKey` result for
    /// [`crate::consts::ACCOUNT_KEY_PATH`].
    pub fn derive(app_path_key: &[u8; 32]) -> Result<Self> {
        let hk = Hkdf::<Sha256>::new(Some(ACCOUNT_KEY_SALT), app_path_key);
        for counter in 0..MAX_RESAMPLES {
            let mut info = ACCOUNT_KEY_INFO.to_vec();
            info.extend_from_slice(&counter.to_be_bytes());
            let mut okm = Zeroizing::new([0u8; 32]);
            hk.expand(&info, okm.as_mut())
                .map_err(|e| Error::Key(format!("HKDF expand: {e}")))?;
            // from_slice rejects 0 and values ≥ n: resample with the next counter.
            if let Ok(secret) = p256::SecretKey::from_slice(okm.as_ref()) {
                return Ok(AccountKey { secret });
            }
        }
        Err(Error::Key(format!(
            "no P-256 scalar in {MAX_RESAMPLES} HKDF outputs"
        )))
    }

    /// The public key, uncompressed SEC1 (65 bytes).
    pub fn public_key_sec1(&self) -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The secret scalar, big-endian (for the documented test vector).
    pub fn secret_scalar(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The key as instant-acme takes it (ring parses the PKCS#8 document).
    pub(crate) fn to_acme_key(&self) -> Result<(instant_acme::Key, PrivateKeyDer<'static>)> {
        let doc = self
            .secret
            .to_pkcs8_der()
            .map_err(|e| Error::Key(format!("PKCS#8 encoding: {e}")))?;
        let der = PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec());
        let key = instant_acme::Key::from_pkcs8_der(der.clone_key())
            .map_err(Error::acme("loading the account key"))?;
        Ok((key, PrivateKeyDer::Pkcs8(der)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_app_key_gives_the_same_account_key_and_another_gives_another() {
        let a = AccountKey::derive(&[7u8; 32]).unwrap();
        let b = AccountKey::derive(&[7u8; 32]).unwrap();
        let c = AccountKey::derive(&[8u8; 32]).unwrap();
        assert_eq!(a.public_key_sec1(), b.public_key_sec1());
        assert_ne!(a.public_key_sec1(), c.public_key_sec1());
        assert_eq!(a.public_key_sec1().len(), 65);
    }

    #[test]
    fn the_account_key_loads_into_instant_acme() {
        let k = AccountKey::derive(&[1u8; 32]).unwrap();
        k.to_acme_key().unwrap();
    }

    /// docs/gateway.md, "ACME account key": k = 00 01 … 1f (checked independently with
    /// Python's hmac/hashlib HKDF).
    #[test]
    fn known_answer_vector() {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        let a = AccountKey::derive(&k).unwrap();
        assert_eq!(
            hex::encode(a.secret_scalar().as_ref()),
            "c6896aeb3f04c9c829892b9924f61f1e37e08582f14fa66329af0d412e6f8554"
        );
        assert_eq!(
            hex::encode(a.public_key_sec1()),
            "041b71c6be72e86680c96cb7668715354473c2729b1a95a1cf8425db9e0de009b2\
             d1fd664b32a2c29d93dd1b881dd31d1536f18a368b8d3a4027b74105016fa305"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = AccountKey::derive(&[3u8; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(k.secret_scalar().as_ref())));
        assert!(dbg.contains("<redacted>"));
    }
}
