//! Serde helpers for byte strings as `0x`-prefixed lowercase hex (DESIGN.md §5 API style).
//!
//! Every byte field of a Cairn wire type goes through this module:
//!
//! - [`fixed`] for `[u8; N]` (exactly `2 N` hex digits),
//! - [`Capped`] for `Vec<u8>` with a maximum length (`#[serde(with = "hex0x::Capped::<MAX>")]`),
//! - [`CappedSecret`] for [`zeroize::Zeroizing`] byte vectors.
//!
//! Decoding is strict: the `0x` prefix is required, digits may be upper or lower case, the
//! length is checked against the cap *before* any byte is decoded, and odd lengths are
//! rejected. Encoding always writes lowercase.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use zeroize::Zeroizing;

/// Encode bytes as `0x` + lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    s.push_str(&hex::encode(bytes));
    s
}

/// Why a hex string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string does not start with `0x`.
    #[error("hex string must start with 0x")]
    MissingPrefix,
    /// Odd number of digits or a non-hex character.
    #[error("invalid hex digits")]
    InvalidDigits,
    /// Wrong length for a fixed-size field.
    #[error("expected {expected} bytes, got {got}")]
    WrongLength {
        /// Required length in bytes.
        expected: usize,
        /// Length of the input in bytes (rounded down).
        got: usize,
    },
    /// Longer than the cap of a variable-size field.
    #[error("{got} bytes exceed the limit of {max}")]
    TooLong {
        /// The cap in bytes.
        max: usize,
        /// Length of the input in bytes (rounded down).
        got: usize,
    },
}

fn strip(s: &str) -> Result<&str, HexError> {
    s.strip_prefix("0x").ok_or(HexError::MissingPrefix)
}

/// Decode a `0x`-prefixed hex string of at most `max` bytes.
pub fn decode_capped(s: &str, max: usize) -> Result<Vec<u8>, HexError> {
    let digits = strip(s)?;
    if digits.len() / 2 > max {
        return Err(HexError::TooLong {
            max,
            got: digits.len() / 2,
        });
    }
    hex::decode(digits).map_err(|_| HexError::InvalidDigits)
}

/// Decode a `0x`-prefixed hex string of exactly `N` bytes.
pub fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let digits = strip(s)?;
    if digits.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: N,
            got: digits.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|_| HexError::InvalidDigits)?;
    Ok(out)
}

/// A visitor that hands the borrowed or owned string to `f` without copying it first.
struct StrVisitor<F, T>(F, &'static str, PhantomData<T>);

impl<'de, F, T> Visitor<'de> for StrVisitor<F, T>
where
    F: FnOnce(&str) -> Result<T, HexError>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

/// `[u8; N]` as `0x` hex of exactly `N` bytes.
pub mod fixed {
    use super::*;

    /// Serialize as `0x` + lowercase hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }

    /// Deserialize exactly `N` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        d.deserialize_str(StrVisitor(
            decode_fixed::<N>,
            "a 0x-prefixed hex string",
            PhantomData,
        ))
    }
}

/// `Vec<u8>` as `0x` hex of at most `MAX` bytes: `#[serde(with = "hex0x::Capped::<MAX>")]`.
pub struct Capped<const MAX: usize>;

impl<const MAX: usize> Capped<MAX> {
    /// Serialize as `0x` + lowercase hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }

    /// Deserialize at most `MAX` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| decode_capped(s, MAX),
            "a 0x-prefixed hex string",
            PhantomData,
        ))
    }
}

/// [`Zeroizing`] `Vec<u8>` as `0x` hex of at most `MAX` bytes (secrets in responses).
pub struct CappedSecret<const MAX: usize>;

impl<const MAX: usize> CappedSecret<MAX> {
    /// Serialize as `0x` + lowercase hex.
    pub fn serialize<S: Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(encode(v));
        s.serialize_str(&text)
    }

    /// Deserialize at most `MAX` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| decode_capped(s, MAX).map(Zeroizing::new),
            "a 0x-prefixed hex string",
            PhantomData,
        ))
    }
}

/// [`Zeroizing`] `[u8; N]` secrets as `0x` hex of exactly `N` bytes.
pub mod secret {
    use super::*;

    /// Serialize as `0x` + lowercase hex.
    pub fn serialize<S: Serializer, const N: usize>(
        v: &Zeroizing<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(encode(&v[..]));
        s.serialize_str(&text)
    }

    /// Deserialize exactly `N` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Zeroizing<[u8; N]>, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| decode_fixed::<N>(s).map(Zeroizing::new),
            "a 0x-prefixed hex string",
            PhantomData,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct T {
        #[serde(with = "fixed")]
        a: [u8; 4],
        #[serde(with = "Capped::<3>")]
        b: Vec<u8>,
    }

    #[test]
    fn round_trips_lowercase_with_prefix() {
        let t = T {
            a: [0xde, 0xad, 0xbe, 0xef],
            b: vec![0xAB],
        };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"a":"0xdeadbeef","b":"0xab"}"#);
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
        // upper-case digits are accepted on input
        let u: T = serde_json::from_str(r#"{"a":"0xDEADBEEF","b":"0x"}"#).unwrap();
        assert_eq!(u.a, t.a);
        assert!(u.b.is_empty());
    }

    #[test]
    fn rejects_missing_prefix_wrong_length_and_oversize() {
        assert_eq!(decode_fixed::<2>("abcd"), Err(HexError::MissingPrefix));
        assert_eq!(
            decode_fixed::<2>("0xabcdef"),
            Err(HexError::WrongLength {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(decode_fixed::<2>("0xabzz"), Err(HexError::InvalidDigits));
        assert_eq!(decode_capped("0xabc", 4), Err(HexError::InvalidDigits));
        assert_eq!(
            decode_capped("0x0102030405", 4),
            Err(HexError::TooLong { max: 4, got: 5 })
        );
        let err = serde_json::from_str::<T>(r#"{"a":"0xdeadbeef","b":"0x01020304"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceed the limit of 3"), "{err}");
        let err = serde_json::from_str::<T>(r#"{"a":"deadbeef","b":"0x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must start with 0x"), "{err}");
    }
}
