//! cairn-protocol — the wire formats every Cairn component shares.
//!
//! - [`api`]: request/response types of the KMS HTTP API (DESIGN.md §5), byte strings as
//!   `0x` hex, errors as `{"error":{"code","message"}}`;
//! - [`sig`]: recoverable secp256k1 signatures, the dstack-compatible app-key signature
//!   chain (FORMATS.md) and the KMS env-pubkey signature;
//! - [`env`](mod@env): env-var encryption, Cairn's format and dstack's legacy one (DESIGN.md §7);
//! - [`compose`], [`sysconfig`]: the host share of a CVM (`app-compose.json`,
//!   `sys-config.json`, `.instance-info`);
//! - [`agent`]: the dstack-compatible guest-agent API;
//! - [`vmm`]: the VMM's HTTP API; [`hostapi`]: the guest → VMM boot-progress channel.
//! - [`gateway`]: the gateway's registration and status API.
//!
//! What it does **not** do: networking, key storage, or trusting anything. Verification
//! helpers take the expected key from the caller (normally read from the chain).
//! Byte layouts and test vectors: `docs/protocol.md`.
//!
//! # Layout
//! - `hex0x` — serde helpers for `0x` hex (fixed, capped, secret).
//! - `bounded` — serde helpers for capped strings and lists.
//! - `redact` — [`redacted_debug!`], the `Debug` impls of the types that hold secrets
//!   (exported: `cairn-acme` and `cairn-kms-client` use it too).
//! - `api` — KMS API wire types.
//! - `gateway` — gateway API wire types.
//! - `sig` — signatures and the app-key chain.
//! - `env` — encrypted environment.
//! - `vmm`, `hostapi` — the VMM's API and its guest → host channel.
//!
//! # Feature flags
//! - `openapi`: derives `utoipa::ToSchema` on the [`vmm`] types; changes nothing else.
//! - `error` — [`Error`]; [`with_causes`], an error and its `source()` chain as one line.

#[macro_use]
mod redact;

pub mod agent;
pub mod api;
pub mod bounded;
pub mod compose;
pub mod env;
mod error;
pub mod gateway;
pub mod hex0x;
pub mod hostapi;
pub mod sig;
pub mod sysconfig;
pub mod vmm;

pub use error::{with_causes, Error, Result};
#[doc(hidden)]
pub use redact::bare_hex as __bare_hex;
