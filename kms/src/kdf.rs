//! Cairn's key-derivation function (DESIGN.md §5, docs/kdf.md).
//!
//! ```text
//! okm = HKDF-SHA256(ikm  = master secret (32 B),
//!                   salt = "cairn-kms/v1",
//!                   info = "cairn/v1/" ‖ label ‖ 0x00 ‖ (u16be(len(part)) ‖ part)*,
//!                   L    = 32)
//! ```
//!
//! When the 32 bytes must be a curve scalar (k256, P-256) and are zero or not below the
//! curve order, the derivation is repeated with one more part, `u32be(n)`, for attempt
//! `n = 1, 2, …` (attempt 0 has no counter part), up to [`MAX_RESAMPLE_ATTEMPTS`]. Every
//! label has a fixed number of parts, so an attempt's `info` never equals another label's.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// HKDF salt of every Cairn KMS derivation.
pub const KDF_SALT: &[u8] = b"cairn-kms/v1";
/// Prefix of every `info`.
pub const INFO_PREFIX: &[u8] = b"cairn/v1/";
/// Attempts (including the first) before resampling gives up.
pub const MAX_RESAMPLE_ATTEMPTS: u32 = 256;
/// Longest part: its length must fit the `u16` prefix.
pub const MAX_PART_LEN: usize = u16::MAX as usize;

/// KDF labels (DESIGN.md §5). The parts each label takes are listed on the constant.
pub mod label {
    /// Root secp256k1 signing key; no parts.
    pub const ROOT_K256: &str = "root-k256";
    /// Root CA P-256 key; no parts.
    pub const ROOT_CA: &str = "root-ca";
    /// App secp256k1 key; parts: app_id (20 B).
    pub const APP_K256: &str = "app-k256";
    /// App CA P-256 key; parts: app_id (20 B).
    pub const APP_CA: &str = "app-ca";
    /// Disk encryption key; parts: app_id (20 B), instance_id (20 B or empty).
    pub const DISK: &str = "disk";
    /// Env-var X25519 key; parts: app_id (20 B).
    pub const ENV_X25519: &str = "env-x25519";
}

/// A generation's 32-byte master secret. Zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterSecret(Zeroizing<[u8; 32]>);

impl MasterSecret {
    /// Wrap 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterSecret(Zeroizing::new(bytes))
    }

    /// A fresh secret from the operating system's CSPRNG.
    pub fn random() -> Self {
        use rand_core::RngCore;
        let mut s = Zeroizing::new([0u8; 32]);
        rand_core::OsRng.fill_bytes(&mut s[..]);
        MasterSecret(s)
    }

    /// The secret bytes (for storage and replication only).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

/// 32 derived secret bytes. Zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct DerivedSecret(Zeroizing<[u8; 32]>);

impl DerivedSecret {
    /// The secret bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DerivedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedSecret(<redacted>)")
    }
}

/// The HKDF `info` for `label` and `parts`.
pub fn info(label: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        INFO_PREFIX.len() + label.len() + 1 + parts.iter().map(|p| 2 + p.len()).sum::<usize>(),
    );
    out.extend_from_slice(INFO_PREFIX);
    out.extend_from_slice(label.as_bytes());
    out.push(0x00);
    for part in parts {
        let len = u16::try_from(part.len()).map_err(|_| Error::KdfPartTooLong {
            len: part.len(),
            max: MAX_PART_LEN,
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// 32 bytes for `label` and `parts` (attempt 0: no counter part).
pub fn derive_bytes(master: &MasterSecret, label: &str, parts: &[&[u8]]) -> Result<DerivedSecret> {
    Ok(expand(master, &info(label, parts)?))
}

fn expand(master: &MasterSecret, info: &[u8]) -> DerivedSecret {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), master.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    // Invariant: expand fails only for outputs over 255 * 32 bytes; this one is 32.
    let _ = hk.expand(info, &mut okm[..]);
    DerivedSecret(okm)
}

/// 32 bytes for `label` and `parts` that `accept` takes, resampling with a `u32be(n)`
/// counter part for attempts `n ≥ 1`. Returns the accepted bytes and the attempt number.
pub fn derive_scalar_bytes(
    master: &MasterSecret,
    label: &'static str,
    parts: &[&[u8]],
    accept: impl Fn(&[u8; 32]) -> bool,
) -> Result<(DerivedSecret, u32)> {
    for attempt in 0..MAX_RESAMPLE_ATTEMPTS {
        let counter = attempt.to_be_bytes();
        let mut all: Vec<&[u8]> = parts.to_vec();
        if attempt > 0 {
            all.push(&counter);
        }
        let okm = expand(master, &info(label, &all)?);
        if accept(okm.expose()) {
            return Ok((okm, attempt));
        }
    }
    Err(exhausted(label))
}

/// Whether 32 big-endian bytes are a valid secp256k1 secret scalar (1 ≤ x < n).
pub fn is_valid_k256_scalar(bytes: &[u8; 32]) -> bool {
    k256::SecretKey::from_bytes(bytes.into()).is_ok()
}

/// Whether 32 big-endian bytes are a valid P-256 secret scalar (1 ≤ x < n).
pub fn is_valid_p256_scalar(bytes: &[u8; 32]) -> bool {
    p256::SecretKey::from_bytes(bytes.into()).is_ok()
}

/// No valid key after [`MAX_RESAMPLE_ATTEMPTS`] draws for `label`.
fn exhausted(label: &'static str) -> Error {
    Error::KdfResampleExhausted {
        label,
        attempts: MAX_RESAMPLE_ATTEMPTS,
    }
}

/// A secp256k1 signing key for `label` and `parts`.
pub fn derive_k256(
    master: &MasterSecret,
    label: &'static str,
    parts: &[&[u8]],
) -> Result<k256::ecdsa::SigningKey> {
    let (okm, _) = derive_scalar_bytes(master, label, parts, is_valid_k256_scalar)?;
    k256::ecdsa::SigningKey::from_bytes(okm.expose().into()).map_err(|_| exhausted(label))
}

/// A P-256 signing key for `label` and `parts`.
pub fn derive_p256(
    master: &MasterSecret,
    label: &'static str,
    parts: &[&[u8]],
) -> Result<p256::ecdsa::SigningKey> {
    let (okm, _) = derive_scalar_bytes(master, label, parts, is_valid_p256_scalar)?;
    p256::ecdsa::SigningKey::from_bytes(okm.expose().into()).map_err(|_| exhausted(label))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn master() -> MasterSecret {
        let mut m = [0u8; 32];
        for (i, b) in m.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        MasterSecret::from_bytes(m)
    }

    #[test]
    fn info_is_length_prefixed() {
        assert_eq!(
            info("disk", &[b"ab", b""]).unwrap(),
            b"cairn/v1/disk\x00\x00\x02ab\x00\x00"
        );
        assert_eq!(info("root-k256", &[]).unwrap(), b"cairn/v1/root-k256\x00");
        let big = vec![0u8; MAX_PART_LEN + 1];
        assert!(matches!(
            info("x", &[&big]),
            Err(Error::KdfPartTooLong { len, max }) if len == MAX_PART_LEN + 1 && max == MAX_PART_LEN
        ));
        assert!(info("x", &[&big[..MAX_PART_LEN]]).is_ok());
    }

    #[test]
    fn parts_are_unambiguous() {
        // ("ab","c") and ("a","bc") must not collide
        let m = master();
        let a = derive_bytes(&m, "x", &[b"ab", b"c"]).unwrap();
        let b = derive_bytes(&m, "x", &[b"a", b"bc"]).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn resampling_appends_a_counter_part() {
        let m = master();
        let rejections = Cell::new(0u32);
        // reject the first two candidates, as if they were out of range
        let (got, attempt) = derive_scalar_bytes(&m, label::APP_K256, &[&[7u8; 20]], |_| {
            rejections.set(rejections.get() + 1);
            rejections.get() > 2
        })
        .unwrap();
        assert_eq!(attempt, 2);
        let expected =
            derive_bytes(&m, label::APP_K256, &[&[7u8; 20], &2u32.to_be_bytes()]).unwrap();
        assert_eq!(got, expected);
        // attempt 0 is the plain derivation
        let (first, attempt) =
            derive_scalar_bytes(&m, label::APP_K256, &[&[7u8; 20]], |_| true).unwrap();
        assert_eq!(attempt, 0);
        assert_eq!(
            first,
            derive_bytes(&m, label::APP_K256, &[&[7u8; 20]]).unwrap()
        );
    }

    #[test]
    fn resampling_gives_up_after_the_limit() {
        let err = derive_scalar_bytes(&master(), label::ROOT_CA, &[], |_| false).unwrap_err();
        assert!(matches!(
            err,
            Error::KdfResampleExhausted {
                label: "root-ca",
                attempts: MAX_RESAMPLE_ATTEMPTS
            }
        ));
    }

    #[test]
    fn scalar_predicates_reject_zero_and_order() {
        let zero = [0u8; 32];
        let ones = [0xff; 32];
        // secp256k1 n
        let n_k = hex_32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
        let n_p = hex_32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        for bad in [zero, ones, n_k] {
            assert!(!is_valid_k256_scalar(&bad));
        }
        for bad in [zero, ones, n_p] {
            assert!(!is_valid_p256_scalar(&bad));
        }
        let mut n_k_minus_1 = n_k;
        n_k_minus_1[31] -= 1;
        assert!(is_valid_k256_scalar(&n_k_minus_1));
        let mut n_p_minus_1 = n_p;
        n_p_minus_1[31] -= 1;
        assert!(is_valid_p256_scalar(&n_p_minus_1));
    }

    fn hex_32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    proptest::proptest! {
        /// Different (label, parts) never give the same `info`: the encoding is injective.
        #[test]
        fn info_encoding_is_injective(
            a in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 0..4),
            b in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 0..4),
            la in "[a-z]{1,3}",
            lb in "[a-z]{1,3}",
        ) {
            let pa: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
            let pb: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
            let same_input = la == lb && a == b;
            proptest::prop_assert_eq!(info(&la, &pa).unwrap() == info(&lb, &pb).unwrap(), same_input);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let m = master();
        assert_eq!(format!("{m:?}"), "MasterSecret(<redacted>)");
        let d = derive_bytes(&m, label::DISK, &[&[0u8; 20], &[]]).unwrap();
        assert_eq!(format!("{d:?}"), "DerivedSecret(<redacted>)");
    }
}
