//! Why a request was not served: [`Check`] names the release-path step that refused,
//! [`ApiError`] is what the HTTP layer answers (`{"error":{"code","message"}}`).
//!
//! Status mapping (DESIGN.md §5 API style): 400 bad input, 403 a denial carrying the
//! failed check and (for policy denials) the contract's exact reason, 503 when a
//! dependency (chain, collateral) is unavailable — retryable, never an allow.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_protocol::api::ErrorBody;

use crate::error::Error;

/// A named step of the release path that can deny a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Step 1: no client certificate, or one that is not a well-formed, currently valid
    /// RA-TLS certificate.
    ClientCert,
    /// Step 1: the quote does not verify (signature, PCK chain, collateral, trust root,
    /// debug TD, non-Intel TDX module, revoked TCB) or is malformed.
    Quote,
    /// Step 1: the quote's report data does not bind the certificate key.
    ReportData,
    /// Step 2: the event log does not replay to RTMR3 or its boot events are malformed.
    EventLog,
    /// Step 2: MRTD/RTMR0-2 match no OS image manifest this node knows, or the measured
    /// `os-image-hash` differs from the image the measurements show.
    OsImageMeasurements,
    /// Step 3: the on-chain policy (`KmsAuth.isAppAllowed` / `isKmsAllowed`) denied.
    Policy(cairn_onchain::Check),
    /// `sign-cert`: the CSR does not verify or its key is not the attested client key.
    Csr,
    /// `app-key` with `previous_generation: "required"`: the chain serves no previous key
    /// generation (never rotated with a window, or the window ended: retired).
    KeyGeneration,
}

impl Check {
    /// The stable error code, e.g. `denied.compose_hash`, `denied.quote`.
    pub fn code(self) -> &'static str {
        match self {
            Check::ClientCert => "denied.client_cert",
            Check::Quote => "denied.quote",
            Check::ReportData => "denied.report_data",
            Check::EventLog => "denied.event_log",
            Check::OsImageMeasurements => "denied.os_image_measurements",
            Check::Policy(c) => c.code(),
            Check::Csr => "denied.csr",
            Check::KeyGeneration => "denied.key_generation",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A dependency whose failure makes the node answer 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The chain RPC (unreachable, timeout, RPC error, reorged policy block, too few
    /// endpoints answering for the quorum).
    Chain,
    /// The RPC endpoints gave conflicting answers (block hash or a verdict): one of them
    /// lies or lags; nothing is used.
    ChainDisagreement,
    /// The chain head is older than `chain.max_head_age_secs`: the endpoints are stuck or
    /// lagging, and policy must not freeze at an old block.
    ChainStale,
    /// Attestation collateral (expired, PCCS unreachable).
    Collateral,
    /// The node's own policy self-check: this node is not (or no longer) allowed.
    SelfCheck,
    /// The chain's current key generation is no longer this node's (rotated out).
    KeyGeneration,
    /// This node's address is not a registered KMS node (`KmsAuth.isKmsNode`) at the
    /// pinned block: removed with `removeKmsNode`, or onboarded and never added.
    Registration,
    /// The log is too far ahead of its on-chain anchor (`log.max_unanchored`) or was
    /// last fully anchored too long ago (`log.max_anchor_age_secs`).
    Anchor,
    /// The transparency log cannot make an entry durable (a full disk, an I/O error);
    /// it is reopened in the background until it takes entries again.
    Log,
    /// The request's `min_policy_block` is above this node's policy block and the head
    /// did not reach it within `chain.head_wait_ms` (or it is too far ahead of the chain's
    /// head, or too many requests wait already). Never a denial: retry.
    PolicyHeadBehind,
}

impl Dependency {
    /// The error code, e.g. `unavailable.chain`.
    pub fn code(self) -> &'static str {
        match self {
            Dependency::Chain => "unavailable.chain",
            Dependency::ChainDisagreement => "unavailable.chain_disagreement",
            Dependency::ChainStale => "unavailable.chain_stale",
            Dependency::Collateral => "unavailable.collateral",
            Dependency::SelfCheck => "unavailable.self_check",
            Dependency::KeyGeneration => "unavailable.key_generation",
            Dependency::Registration => "self_check.not_registered",
            Dependency::Anchor => "unavailable.anchor",
            Dependency::Log => "unavailable.log",
            Dependency::PolicyHeadBehind => "unavailable.policy_head_behind",
        }
    }
}

/// An error answer of the KMS API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad query, oversized body…) or its body
    /// arrived too slowly: 400 / 413 / 408.
    #[error("bad request: {message}")]
    BadRequest {
        /// Status to answer (400, 413 for an oversized body, 408 for a slow body).
        status: StatusCode,
        /// What is wrong.
        message: String,
    },
    /// A release-path check denied the request: 403.
    #[error("denied ({check}): {reason}")]
    Denied {
        /// The failed check.
        check: Check,
        /// Why; for policy denials, the contract's exact reason string.
        reason: String,
    },
    /// A dependency is unavailable; retry later or elsewhere: 503.
    #[error("{} unavailable: {reason}", dependency.code())]
    Unavailable {
        /// Which dependency.
        dependency: Dependency,
        /// What happened.
        reason: String,
    },
    /// Not found (unknown path, entry beyond the log): 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// A failure inside the node (storage, signing, a non-retryable chain error). The
    /// detail is logged, the answer is generic: 500.
    #[error("internal error: {0}")]
    Internal(#[source] Box<Error>),
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 403 for `check`.
    pub fn denied(check: Check, reason: impl Into<String>) -> Self {
        ApiError::Denied {
            check,
            reason: reason.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { status, .. } => *status,
            ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "bad_request.too_large"
            }
            ApiError::BadRequest { status, .. } if *status == StatusCode::REQUEST_TIMEOUT => {
                "bad_request.timeout"
            }
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Denied { check, .. } => check.code(),
            ApiError::Unavailable { dependency, .. } => dependency.code(),
            ApiError::NotFound(_) => "not_found",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The body sent to the client (internal details are not disclosed).
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::BadRequest { message, .. } => message.clone(),
            ApiError::Denied { reason, .. } => reason.clone(),
            ApiError::Unavailable { reason, .. } => reason.clone(),
            ApiError::NotFound(m) => m.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        };
        cairn_service::error_body(self.code(), message)
    }
}

impl From<cairn_onchain::Error> for ApiError {
    fn from(e: cairn_onchain::Error) -> Self {
        match e {
            cairn_onchain::Error::Denied { check, reason } => ApiError::Denied {
                check: Check::Policy(check),
                reason,
            },
            e if e.is_retryable() => ApiError::Unavailable {
                dependency: match e.cause() {
                    cairn_onchain::Error::ChainDisagreement { .. } => Dependency::ChainDisagreement,
                    cairn_onchain::Error::StaleHead { .. } => Dependency::ChainStale,
                    _ => Dependency::Chain,
                },
                reason: e.to_string(),
            },
            e => ApiError::Internal(Box::new(Error::Chain(e))),
        }
    }
}

// Unavailable collateral is 503 (retry); every other evidence step is a 403 naming it.
cairn_service::evidence_answer!(ApiError, Check, Dependency);

impl From<Error> for ApiError {
    /// Chain errors keep their mapping (403 denial, 503 when retryable); everything else
    /// is internal.
    fn from(e: Error) -> Self {
        match e {
            Error::Chain(e) => ApiError::from(e),
            e => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<cairn_tlog::Error> for ApiError {
    fn from(e: cairn_tlog::Error) -> Self {
        ApiError::Internal(Box::new(Error::Log(e)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match &self {
            ApiError::Internal(detail) => Some(detail as &dyn std::fmt::Display),
            _ => None,
        };
        cairn_service::json_error(self.status(), self.body(), detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_errors_map_to_403_with_the_reason_or_503() {
        let denied = ApiError::from(cairn_onchain::Error::Denied {
            check: cairn_onchain::Check::ComposeHash,
            reason: "Compose hash not allowed".into(),
        });
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            denied.body(),
            ErrorBody::new("denied.compose_hash", "Compose hash not allowed")
        );
        let down = ApiError::from(cairn_onchain::Error::Timeout {
            op: "eth_call",
            after: std::time::Duration::from_secs(1),
        });
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.code(), "unavailable.chain");
        let wrong = ApiError::from(cairn_onchain::Error::ChainIdMismatch {
            expected: 1,
            actual: 2,
        });
        assert_eq!(wrong.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(wrong.body().error.message, "internal error");
    }

    #[test]
    fn disagreeing_endpoints_and_a_stale_head_are_503_with_their_own_codes() {
        let lie = cairn_onchain::Error::ChainDisagreement {
            endpoints: vec![
                "https://a.example:443".into(),
                "https://b.example:443".into(),
            ],
            what: "isAppAllowed at block 7".into(),
        };
        // Directly, and as the policy head publishes it.
        for e in [
            lie,
            cairn_onchain::Error::PolicyHead {
                source: std::sync::Arc::new(cairn_onchain::Error::ChainDisagreement {
                    endpoints: vec!["https://a.example:443".into()],
                    what: "the hash of block 7".into(),
                }),
            },
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(api.code(), "unavailable.chain_disagreement");
            assert!(api.body().error.message.contains("https://a.example:443"));
        }
        let stale = ApiError::from(cairn_onchain::Error::StaleHead {
            number: 9,
            age: std::time::Duration::from_secs(600),
            max: std::time::Duration::from_secs(120),
        });
        assert_eq!(stale.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stale.code(), "unavailable.chain_stale");
    }

    #[test]
    fn self_check_and_anchor_refusals_are_503_with_their_codes() {
        for (dependency, code) in [
            (Dependency::Registration, "self_check.not_registered"),
            (Dependency::Anchor, "unavailable.anchor"),
            (Dependency::Log, "unavailable.log"),
            (
                Dependency::PolicyHeadBehind,
                "unavailable.policy_head_behind",
            ),
        ] {
            let e = ApiError::Unavailable {
                dependency,
                reason: "why".into(),
            };
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.body(), ErrorBody::new(code, "why"));
        }
        let slow = ApiError::BadRequest {
            status: StatusCode::REQUEST_TIMEOUT,
            message: "slow".into(),
        };
        assert_eq!(
            (slow.status(), slow.code()),
            (StatusCode::REQUEST_TIMEOUT, "bad_request.timeout")
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let e = ApiError::denied(Check::Quote, "é".repeat(5000));
        let body = e.body();
        assert!(body.error.message.len() <= cairn_protocol::api::MAX_ERROR_MESSAGE_LEN);
        assert!(body.error.message.chars().all(|c| c == 'é'));
    }
}
