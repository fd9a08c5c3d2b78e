//! The JSON error body (`{"error":{"code","message"}}`, [`ErrorBody`]) every service
//! answers a rejection with.

use std::fmt::Display;

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use cairn_protocol::api::{ErrorBody, MAX_ERROR_MESSAGE_LEN};

/// `s` cut to at most `max` bytes, at a char boundary.
pub fn cut_message(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// The body of a rejection: `code` and `message`, the message cut at
/// [`MAX_ERROR_MESSAGE_LEN`] on a char boundary.
pub fn error_body(code: &str, message: String) -> ErrorBody {
    ErrorBody::new(code, cut_message(message, MAX_ERROR_MESSAGE_LEN))
}

/// The response for a rejection: `status` with `body` as JSON. An `internal` detail is
/// logged, never sent (the body has a generic message for it).
pub fn json_error(status: StatusCode, body: ErrorBody, internal: Option<&dyn Display>) -> Response {
    if let Some(detail) = internal {
        tracing::error!(%detail, "internal error");
    }
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let s = cut_message("é".repeat(10), 5);
        assert_eq!(s, "éé");
        assert_eq!(cut_message("short".to_owned(), 5), "short");
    }

    #[test]
    fn the_body_carries_the_code_and_the_cut_message() {
        let body = error_body(
            "denied.compose_hash",
            "x".repeat(MAX_ERROR_MESSAGE_LEN + 10),
        );
        assert_eq!(body.error.code, "denied.compose_hash");
        assert_eq!(body.error.message.len(), MAX_ERROR_MESSAGE_LEN);
        let r = json_error(StatusCode::FORBIDDEN, body, None);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }
}
