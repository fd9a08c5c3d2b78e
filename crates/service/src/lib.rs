//! What the three Cairn services (the KMS node, the gateway and the VMM) have in common
//! at their edges, written once: a TOML config file with `CAIRN_<SERVICE>_*` environment
//! overrides and bounded file reads; per-source connection counting (an IPv4 address or
//! an IPv6 /64) and the accept loop's admission; the Prometheus text exposition; the JSON error body every rejection is answered
//! with; and which step a failed attestation refuses at.
//!
//! Trust: nothing here decides policy. Config values are only parsed (each service
//! validates its own struct); connection counting is a resource bound, not an access
//! control; the error body never carries an internal error's detail (the caller logs it);
//! an attestation error is only classified after it refused, and one not named is a quote
//! denial (fail closed).
//!
//! It does not hold any service's config struct, error enum, metrics or listener: those
//! stay with their service, which converts [`ConfigError`] into its own error type.
//!
//! # Layout
//! - `config`: [`parse_with_env`] and [`apply_env`] (with [`EnvKinds`]), [`read_bounded`], [`read_text`],
//!   [`hex32`] and the typed [`ConfigError`].
//! - `evidence`: [`EvidenceFailure`], an attestation error as the [`EvidenceStep`] that
//!   refused (or unavailable collateral) and the reason a client is told; the
//!   [`evidence_answer!`] macro turns it into a service's own error answer.
//! - `limits`: [`source_of`], [`Sources`] and the [`SourceSlot`] guard.
//! - `listen`: the accept loop's [`ConnectionGate`] (in all and per source, with the
//!   [`Refusal`] that names the limit), [`accept_admitted`] and [`accept_failed`]'s back-off.
//! - `metrics`: the Prometheus text [`Exposition`] and the [`GaugeGuard`] of a gauge.
//! - `reject`: [`error_body`], [`json_error`] and [`cut_message`].

#![forbid(unsafe_code)]

mod config;
mod evidence;
mod limits;
mod listen;
mod metrics;
mod reject;

// The public interface is:
pub use config::{
    apply_env, hex32, parse_with_env, read_bounded, read_text, ConfigError, EnvKind, EnvKinds,
};
pub use evidence::{EvidenceFailure, EvidenceStep};
pub use limits::{source_of, SourceSlot, Sources};
pub use listen::{
    accept_admitted, accept_failed, Admitted, ConnectionGate, Refusal, ACCEPT_BACKOFF,
};
pub use metrics::{Exposition, GaugeGuard};
pub use reject::{cut_message, error_body, json_error};
