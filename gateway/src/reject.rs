//! Why a registration was refused: [`Check`] names the admission step that refused,
//! [`ApiError`] is what the registration endpoint answers (`{"error":{"code","message"}}`).
//!
//! Status mapping (DESIGN.md §5 API style, as `kms/src/reject.rs`): 400 bad input, 403 a
//! denial naming the failed check (for chain denials, the contract's exact reason), 503
//! when a dependency (chain, collateral, the gateway's own standing) is unavailable —
//! retryable, never an admission.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_protocol::api::ErrorBody;

/// A named admission step that can refuse a registration (docs/gateway.md, "Admission").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Step 1: no client certificate chain, or its leaf carries no app id.
    ClientCert,
    /// Step 1: the chain is not leaf → app CA → the KMS root the chain registers, for the
    /// leaf's app id, valid now.
    Chain,
    /// Step 2: the leaf's quote does not verify (signature, collateral, trust root, debug
    /// TD, revoked TCB) or is malformed.
    Quote,
    /// Step 2: the quote's report data does not bind the leaf key.
    ReportData,
    /// Step 2: the event log does not replay to RTMR3, or the app id it measures is not
    /// the certificate's.
    EventLog,
    /// Step 3: MRTD/RTMR0-2 match no OS image this gateway knows, or the measured
    /// `os-image-hash` names another image.
    OsImageMeasurements,
    /// Step 4: the compose text sent is not the measured one (hash), or does not parse.
    Compose,
    /// Step 4: the measured compose does not enable the gateway (`gateway_enabled`).
    GatewayDisabled,
    /// Step 5: `KmsAuth.isAppAllowed` denied at the pinned block.
    Policy(cairn_onchain::Check),
}

impl Check {
    /// The stable error code, e.g. `denied.compose_hash`, `denied.chain`.
    pub fn code(self) -> &'static str {
        match self {
            Check::ClientCert => "denied.client_cert",
            Check::Chain => "denied.chain",
            Check::Quote => "denied.quote",
            Check::ReportData => "denied.report_data",
            Check::EventLog => "denied.event_log",
            Check::OsImageMeasurements => "denied.os_image_measurements",
            Check::Compose => "denied.compose",
            Check::GatewayDisabled => "denied.gateway_disabled",
            Check::Policy(c) => c.code(),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A dependency whose failure makes the gateway answer 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dependency {
    /// The chain RPC (unreachable, timeout, RPC error, reorged policy block).
    Chain,
    /// Attestation collateral (expired, PCCS unreachable or rate-limited).
    Collateral,
    /// The gateway itself is not (or no longer) what the chain allows: its own compose
    /// is revoked, KmsAuth names another gateway app, or the KMS root changed.
    SelfCheck,
}

impl Dependency {
    /// The error code, e.g. `unavailable.chain`.
    pub fn code(self) -> &'static str {
        match self {
            Dependency::Chain => "unavailable.chain",
            Dependency::Collateral => "unavailable.collateral",
            Dependency::SelfCheck => "unavailable.self_check",
        }
    }
}

/// An error answer of the registration API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (bad JSON, oversized, bad port map): 400 / 413.
    #[error("bad request: {message}")]
    BadRequest {
        /// Status to answer.
        status: StatusCode,
        /// What is wrong.
        message: String,
    },
    /// An admission check refused: 403.
    #[error("denied ({check}): {reason}")]
    Denied {
        /// The failed check.
        check: Check,
        /// Why; for policy denials, the contract's exact reason string.
        reason: String,
    },
    /// A dependency is unavailable; retry later: 503.
    #[error("{} unavailable: {reason}", dependency.code())]
    Unavailable {
        /// Which dependency.
        dependency: Dependency,
        /// What happened.
        reason: String,
    },
    /// Unknown path: 404.
    #[error("not found")]
    NotFound,
    /// A failure inside the gateway (logged; the answer is generic): 500.
    #[error("internal error: {0}")]
    Internal(String),
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
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "bad_request.too_large"
            }
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Denied { check, .. } => check.code(),
            ApiError::Unavailable { dependency, .. } => dependency.code(),
            ApiError::NotFound => "not_found",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The body sent to the client (internal details are not disclosed), its message cut
    /// at [`MAX_ERROR_MESSAGE_LEN`](cairn_protocol::api::MAX_ERROR_MESSAGE_LEN) on a char boundary.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::BadRequest { message, .. } => message.clone(),
            ApiError::Denied { reason, .. } => reason.clone(),
            ApiError::Unavailable { reason, .. } => reason.clone(),
            ApiError::NotFound => "not found".to_owned(),
            ApiError::Internal(_) => "internal error".to_owned(),
        };
        cairn_service::error_body(self.code(), message)
    }
}

impl From<cairn_onchain::Error> for ApiError {
    /// A denial keeps its check and the contract's reason (403); every other chain error
    /// is 503 `unavailable.chain`: the gateway cannot tell, so it does not admit.
    fn from(e: cairn_onchain::Error) -> Self {
        match e {
            cairn_onchain::Error::Denied { check, reason } => ApiError::Denied {
                check: Check::Policy(check),
                reason,
            },
            e => ApiError::Unavailable {
                dependency: Dependency::Chain,
                reason: e.to_string(),
            },
        }
    }
}

// Unavailable collateral is 503 (retry); every other evidence step is a 403 naming it.
cairn_service::evidence_answer!(ApiError, Check, Dependency);

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
    use cairn_protocol::api::MAX_ERROR_MESSAGE_LEN;

    use super::*;

    #[test]
    fn chain_denials_are_403_with_the_contracts_reason_and_other_chain_errors_503() {
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
        // a wrong chain id is not an admission either
        let wrong = ApiError::from(cairn_onchain::Error::ChainIdMismatch {
            expected: 1,
            actual: 2,
        });
        assert_eq!(wrong.code(), "unavailable.chain");
        let internal = ApiError::Internal("disk on fire".into());
        assert_eq!(internal.body().error.message, "internal error");
    }

    #[test]
    fn every_check_has_its_own_code() {
        let checks = [
            Check::ClientCert,
            Check::Chain,
            Check::Quote,
            Check::ReportData,
            Check::EventLog,
            Check::OsImageMeasurements,
            Check::Compose,
            Check::GatewayDisabled,
            Check::Policy(cairn_onchain::Check::ComposeHash),
        ];
        let codes: std::collections::BTreeSet<_> = checks.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), checks.len());
        assert!(codes.iter().all(|c| c.starts_with("denied.")));
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let e = ApiError::denied(Check::Quote, "é".repeat(5000));
        let body = e.body();
        assert!(body.error.message.len() <= MAX_ERROR_MESSAGE_LEN);
        assert!(body.error.message.chars().all(|c| c == 'é'));
    }
}
