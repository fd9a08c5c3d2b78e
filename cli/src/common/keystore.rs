//! Web3 Secret Storage v3 keystores (what `cast wallet new|import` and geth write):
//! scrypt or PBKDF2-HMAC-SHA256, a keccak-256 MAC, AES-128-CTR. KDF parameters are
//! bounded so a hostile file cannot ask for gigabytes of memory or hours of CPU.

use aes::cipher::{KeyIvInit as _, StreamCipher as _};
use cairn_onchain::alloy::primitives::keccak256;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Largest scrypt `n` accepted (2^20: 1 GiB at r = 8; geth's "standard" is 2^18).
const MAX_SCRYPT_LOG_N: u8 = 20;
/// Largest scrypt `r` and `p`.
const MAX_SCRYPT_RP: u32 = 16;
/// Largest PBKDF2 iteration count.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// Why a keystore did not open. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Not a v3 keystore JSON.
    #[error("not a keystore (v3 JSON): {0}")]
    Format(String),
    /// A cipher or KDF this reader does not know, or parameters out of bounds.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The MAC did not match: a wrong password (or a corrupted file).
    #[error("wrong password (the keystore's MAC does not match)")]
    WrongPassword,
}

#[derive(Deserialize)]
struct File {
    #[serde(alias = "Crypto")]
    crypto: Crypto,
}

#[derive(Deserialize)]
struct Crypto {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Deserialize)]
struct CipherParams {
    iv: String,
}

#[derive(Deserialize)]
struct Scrypt {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Deserialize)]
struct Pbkdf2 {
    c: u32,
    dklen: usize,
    prf: String,
    salt: String,
}

fn unhex(what: &str, s: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(s.trim_start_matches("0x"))
        .map_err(|_| KeystoreError::Format(format!("{what} is not hex")))
}

/// Decrypt the 32-byte private key of a v3 keystore with `password`.
pub fn decrypt(json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let file: File =
        serde_json::from_slice(json).map_err(|e| KeystoreError::Format(e.to_string()))?;
    let c = file.crypto;
    if c.cipher != "aes-128-ctr" {
        return Err(KeystoreError::Unsupported(format!("cipher {:?}", c.cipher)));
    }
    let mut dk = Zeroizing::new(vec![0u8; 32]);
    match c.kdf.as_str() {
        "scrypt" => {
            let p: Scrypt = serde_json::from_value(c.kdfparams)
                .map_err(|e| KeystoreError::Format(format!("scrypt kdfparams: {e}")))?;
            if p.dklen != 32 || !p.n.is_power_of_two() || p.n < 2 {
                return Err(KeystoreError::Unsupported("scrypt dklen/n".into()));
            }
            let log_n = p.n.trailing_zeros() as u8;
            if log_n > MAX_SCRYPT_LOG_N || p.r > MAX_SCRYPT_RP || p.p > MAX_SCRYPT_RP {
                return Err(KeystoreError::Unsupported(format!(
                    "scrypt n={} r={} p={} (more than this reader allows)",
                    p.n, p.r, p.p
                )));
            }
            let params = scrypt::Params::new(log_n, p.r, p.p, 32)
                .map_err(|e| KeystoreError::Unsupported(format!("scrypt params: {e}")))?;
            let salt = unhex("salt", &p.salt)?;
            scrypt::scrypt(password, &salt, &params, &mut dk)
                .map_err(|e| KeystoreError::Unsupported(format!("scrypt: {e}")))?;
        }
        "pbkdf2" => {
            let p: Pbkdf2 = serde_json::from_value(c.kdfparams)
                .map_err(|e| KeystoreError::Format(format!("pbkdf2 kdfparams: {e}")))?;
            if p.dklen != 32 || p.prf != "hmac-sha256" || p.c == 0 || p.c > MAX_PBKDF2_ROUNDS {
                return Err(KeystoreError::Unsupported(format!(
                    "pbkdf2 prf {:?}, c={}, dklen={}",
                    p.prf, p.c, p.dklen
                )));
            }
            let salt = unhex("salt", &p.salt)?;
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, p.c, &mut dk);
        }
        other => return Err(KeystoreError::Unsupported(format!("kdf {other:?}"))),
    }
    let ciphertext = unhex("ciphertext", &c.ciphertext)?;
    let mac = unhex("mac", &c.mac)?;
    let iv = unhex("iv", &c.cipherparams.iv)?;
    if iv.len() != 16 || mac.len() != 32 || ciphertext.len() != 32 {
        return Err(KeystoreError::Format("iv, mac or ciphertext length".into()));
    }
    let mut mac_input = Vec::with_capacity(16 + ciphertext.len());
    mac_input.extend_from_slice(&dk[16..32]);
    mac_input.extend_from_slice(&ciphertext);
    let expected = keccak256(&mac_input);
    // Constant time: the comparison does not stop at the first differing byte.
    let diff = expected
        .iter()
        .zip(mac.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(KeystoreError::WrongPassword);
    }
    let mut key = Zeroizing::new(ciphertext);
    let mut cipher = ctr::Ctr128BE::<aes::Aes128>::new(dk[..16].into(), iv.as_slice().into());
    cipher.apply_keystream(&mut key);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PBKDF2 test vector of the Web3 Secret Storage definition (password
    /// "testpassword").
    const PBKDF2_VECTOR: &str = r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},"ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2","kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},"mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#;

    #[test]
    fn the_spec_pbkdf2_vector_opens_with_its_password_only() {
        let key = decrypt(PBKDF2_VECTOR.as_bytes(), b"testpassword").unwrap();
        assert_eq!(
            hex::encode(key.as_slice()),
            "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
        );
        assert!(matches!(
            decrypt(PBKDF2_VECTOR.as_bytes(), b"wrong"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_kdf_parameters_are_refused_before_any_work() {
        let huge = PBKDF2_VECTOR
            .replace(r#""kdf":"pbkdf2""#, r#""kdf":"scrypt""#)
            .replace(
                r#"{"c":262144,"dklen":32,"prf":"hmac-sha256","salt""#,
                r#"{"n":4294967296,"r":8,"p":1,"dklen":32,"salt""#,
            );
        assert!(matches!(
            decrypt(huge.as_bytes(), b"testpassword"),
            Err(KeystoreError::Unsupported(_))
        ));
        assert!(matches!(
            decrypt(b"{}", b"x"),
            Err(KeystoreError::Format(_))
        ));
    }
}
