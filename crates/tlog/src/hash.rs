//! SHA-256 hashes and the RFC 9162 leaf and node hash functions.

use core::fmt;

use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the log (SHA-256).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
///
/// Equality (`==`) is constant time, so comparing a computed root with an
/// expected one does not leak how many leading bytes matched.
#[derive(Clone, Copy, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
    pub const EMPTY_ROOT: Hash = Hash([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// Parses a hash from exactly [`HASH_SIZE`] bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_SIZE]>::try_from(bytes).ok().map(Hash)
    }

    /// Lower-case hex, without a `0x` prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        // Constant time: OR together the XOR of every byte pair.
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        core::hint::black_box(diff) == 0
    }
}

impl Eq for Hash {}

impl core::hash::Hash for Hash {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Hash {
    /// Serialises as a `0x`-prefixed lower-case hex string (Cairn's API style).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("0x{}", self.to_hex()))
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    /// Accepts exactly `0x` followed by 64 hex digits.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0x followed by 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hash, E> {
                let digits = v
                    .strip_prefix("0x")
                    .filter(|d| d.len() == 2 * HASH_SIZE)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))?;
                let mut out = [0u8; HASH_SIZE];
                hex::decode_to_slice(digits, &mut out)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))?;
                Ok(Hash(out))
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

impl From<[u8; HASH_SIZE]> for Hash {
    fn from(bytes: [u8; HASH_SIZE]) -> Self {
        Hash(bytes)
    }
}

/// The hash of a log entry: `SHA-256(0x00 ‖ entry)` (RFC 9162 §2.1.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)` (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(Hash::EMPTY_ROOT, Hash(Sha256::digest(b"").into()));
    }

    #[test]
    fn equality_sees_every_byte() {
        let a = Hash([7; 32]);
        for i in 0..HASH_SIZE {
            let mut b = a;
            b.0[i] ^= 0x80;
            assert_ne!(a, b, "byte {i}");
        }
        assert_eq!(a, Hash([7; 32]));
    }

    #[test]
    fn serde_uses_0x_hex_and_rejects_anything_else() {
        let h = Hash([0xab; 32]);
        let json = serde_json::to_string(&h).expect("serialise");
        assert_eq!(json, format!("\"0x{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Hash>(&json).expect("round trip"), h);
        for bad in [
            format!("\"{}\"", "ab".repeat(32)),
            format!("\"0x{}\"", "ab".repeat(31)),
            format!("\"0x{}\"", "ab".repeat(33)),
            format!("\"0x{}zz\"", "ab".repeat(31)),
            "42".to_owned(),
        ] {
            assert!(serde_json::from_str::<Hash>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_slice_requires_exact_length() {
        assert_eq!(Hash::from_slice(&[1; 32]), Some(Hash([1; 32])));
        assert_eq!(Hash::from_slice(&[1; 31]), None);
        assert_eq!(Hash::from_slice(&[1; 33]), None);
    }
}
