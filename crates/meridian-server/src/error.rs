//! The one place errors become HTTP: every failure is an `ApiError`, answered as
//! `{"error": {"code", "message", "field"?, "hint"?}}` with a 4xx or 503 status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_api::{ErrorBody, ErrorCode, ErrorDetail};
use meridian_core::ValidationError;
use meridian_state::Refusal;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Sentence for people.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
    /// What to do about it, for people.
    pub hint: Option<String>,
    /// Seconds to send as `Retry-After`, when the client should wait.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            hint: None,
            retry_after: None,
        }
    }

    /// The same error, with advice on what to do about it.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        Self {
            hint: Some(hint.into()),
            ..self
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 400 for one query parameter: missing, malformed or out of range.
    pub fn invalid_query(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery, message)
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::Invalid,
                message,
            )
        }
    }

    /// 503: try again, maybe elsewhere.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// A failure of this server's own storage. Logged here, where it is handled; the client
    /// gets a 503 because another server may well succeed.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "state read failed");
        Self::unavailable(
            ErrorCode::StorageUnavailable,
            "this server cannot read its state right now",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
                hint: self.hint,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let message = e.to_string();
        Self::invalid(e.field, message)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let message = r.to_string();
        match r {
            Refusal::AlreadyBootstrapped => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyBootstrapped,
                message,
            ),
            Refusal::NotFound { .. } => Self::not_found(message),
            Refusal::AlreadyExists { .. } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::AlreadyExists, message)
            }
            Refusal::Invalid { field, .. } => Self::invalid(field, message),
            Refusal::Conflict { .. } => Self::conflict(message),
            Refusal::Stale { .. } => Self::new(StatusCode::CONFLICT, ErrorCode::Stale, message),
        }
    }
}
