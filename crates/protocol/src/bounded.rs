//! Serde helpers for size-capped text fields (`#[serde(with = "bounded::Str::<MAX>")]`),
//! and [`json`]: a JSON document parsed only when it is small enough.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserializer, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A `String` of at most `MAX` bytes.
pub struct Str<const MAX: usize>;

struct StrVisitor<const MAX: usize>;

impl<'de, const MAX: usize> Visitor<'de> for StrVisitor<MAX> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string of at most {MAX} bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v.len() > MAX {
            return Err(E::custom(format_args!(
                "string of {} bytes exceeds the limit of {MAX}",
                v.len()
            )));
        }
        Ok(v.to_owned())
    }
}

impl<const MAX: usize> Str<MAX> {
    /// Serialize unchanged.
    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    /// Deserialize, rejecting more than `MAX` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_str(StrVisitor::<MAX>)
    }
}

/// A `Vec<String>` of at most `ITEMS` strings of at most `MAX` bytes each.
pub struct StrList<const ITEMS: usize, const MAX: usize>;

struct ListVisitor<const ITEMS: usize, const MAX: usize>(PhantomData<()>);

struct Item<const MAX: usize>(String);

impl<'de, const MAX: usize> de::Deserialize<'de> for Item<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor::<MAX>).map(Item)
    }
}

impl<'de, const ITEMS: usize, const MAX: usize> Visitor<'de> for ListVisitor<ITEMS, MAX> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {ITEMS} strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(Item(s)) = seq.next_element::<Item<MAX>>()? {
            if out.len() == ITEMS {
                return Err(de::Error::custom(format_args!("more than {ITEMS} items")));
            }
            out.push(s);
        }
        Ok(out)
    }
}

impl<const ITEMS: usize, const MAX: usize> StrList<ITEMS, MAX> {
    /// Serialize unchanged.
    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(item)?;
        }
        seq.end()
    }

    /// Deserialize, rejecting too many or too long strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(ListVisitor::<ITEMS, MAX>(PhantomData))
    }
}

/// Parses the JSON document `bytes` when it is at most `max` bytes (checked first):
/// `too_large(len, max)` otherwise, `malformed(reason)` when it is not a `T`.
pub(crate) fn json<T, E>(
    bytes: &[u8],
    max: usize,
    too_large: impl FnOnce(usize, usize) -> E,
    malformed: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    T: serde::de::DeserializeOwned,
{
    if bytes.len() > max {
        return Err(too_large(bytes.len(), max));
    }
    serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))
}
