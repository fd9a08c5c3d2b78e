//! cairn-kms — the Cairn KMS node (library part).
//!
//! This first part holds the node's secrets: the KDF that derives every key from a key
//! generation's master secret (DESIGN.md §5, `docs/kdf.md`), the root and app keys with
//! their certificates and signatures, and the sled store that keeps the master secret and
//! the node key on disk.
//!
//! What it trusts: the master secret it is given or generates, and the operating system's
//! CSPRNG. What it does **not** do (yet): serve HTTP, verify evidence, read the chain or
//! write the transparency log — those parts of the release path build on this one.
//!
//! # Layout
//! - `kdf` — HKDF labels, `info` encoding, counter resampling, [`MasterSecret`].
//! - `keys` — [`RootKeys`], [`AppKeys`], deterministic CA certificates.
//! - `store` — [`SecretStore`]: bootstrap, install, open, file modes.
//! - `error` — [`Error`].

mod error;
pub mod kdf;
pub mod keys;
pub mod store;

pub use error::{Error, Result};
pub use kdf::{DerivedSecret, MasterSecret};
pub use keys::{AppKeys, CaKeys, P256Signer, RootKeys};
pub use store::{Identity, NodeKey, SecretStore};
