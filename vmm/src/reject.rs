//! Error mapping as data: one table from [`Error`] to HTTP status and error code, the
//! contract's reason passed through (DESIGN.md §5 API style, like `kms/src/reject.rs`).
//!
//! | error | status | code |
//! |---|---|---|
//! | `Invalid`, `UnknownImage`, `Body` | 400 | `bad_request`, `bad_request.unknown_image` |
//! | `Body { too_large }`, `ComposeTooLarge` | 413 | `bad_request.too_large`, `bad_request.compose_too_large` |
//! | `Unauthorized` | 401 | `unauthorized` |
//! | `Denied` | 403 | `denied.<check>` (message: the contract's reason) |
//! | `NotFound`, `NoRoute` | 404 | `not_found` |
//! | `Conflict` | 409 | `conflict.<kind>` |
//! | `Chain` (retryable), `Busy` | 503 | `unavailable.chain`, `unavailable.busy` |
//! | everything else | 500 | `internal` (detail logged, not sent) |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_protocol::api::ErrorBody;

use crate::error::Error;

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid { .. } | Error::UnknownImage { .. } => StatusCode::BAD_REQUEST,
            Error::Body {
                too_large: true, ..
            }
            | Error::ComposeTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Body { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::NotFound(_) | Error::NoRoute(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Chain(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "bad_request",
            Error::UnknownImage { .. } => "bad_request.unknown_image",
            Error::Body {
                too_large: true, ..
            } => "bad_request.too_large",
            Error::Body { .. } => "bad_request",
            Error::ComposeTooLarge { .. } => "bad_request.compose_too_large",
            Error::Unauthorized => "unauthorized",
            Error::Denied { check, .. } => check.code(),
            Error::NotFound(_) | Error::NoRoute(_) => "not_found",
            Error::Conflict { kind, .. } => kind.code(),
            Error::Busy(_) => "unavailable.busy",
            Error::Chain(e) if e.is_retryable() => "unavailable.chain",
            _ => "internal",
        }
    }

    /// The body sent to the client: the error in words, except for internal errors,
    /// whose detail is logged and not disclosed; denials carry the contract's reason.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Denied { reason, .. } => reason.clone(),
            e if e.status() == StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_owned(),
            e => e.to_string(),
        };
        cairn_service::error_body(self.code(), message)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let internal = self.status() == StatusCode::INTERNAL_SERVER_ERROR;
        let detail: Option<&dyn std::fmt::Display> = if internal { Some(&self) } else { None };
        cairn_service::json_error(self.status(), self.body(), detail)
    }
}

#[cfg(test)]
mod tests {
    use cairn_protocol::api::MAX_ERROR_MESSAGE_LEN;

    use super::*;
    use crate::error::Conflict;
    use cairn_onchain::Check;

    #[test]
    fn denials_carry_the_contract_reason_and_name_the_check() {
        let e = Error::Denied {
            check: Check::ComposeHash,
            reason: "Compose hash not allowed".into(),
        };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.body(),
            ErrorBody::new("denied.compose_hash", "Compose hash not allowed")
        );
        let e = Error::Denied {
            check: Check::AppNotRegistered,
            reason: "App not registered".into(),
        };
        assert_eq!(e.body().error.code, "denied.app_not_registered");
    }

    #[test]
    fn client_errors_name_what_is_wrong_and_internal_errors_do_not_leak() {
        let e = Error::conflict(Conflict::Port, "host port 20001 is in use");
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.body().error.code, "conflict.port");
        assert!(e.body().error.message.contains("20001"));
        let e = Error::ComposeTooLarge { len: 300, max: 200 };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = Error::io(
            "write",
            "/secret/path",
            std::io::Error::other("disk on fire"),
        );
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body().error.message, "internal error");
        let down = Error::Chain(cairn_onchain::Error::Timeout {
            op: "eth_call",
            after: std::time::Duration::from_secs(1),
        });
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.code(), "unavailable.chain");
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let e = Error::invalid("name", "é".repeat(MAX_ERROR_MESSAGE_LEN));
        let m = e.body().error.message;
        assert!(m.len() <= MAX_ERROR_MESSAGE_LEN);
    }
}
