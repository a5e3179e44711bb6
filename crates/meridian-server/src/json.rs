//! A JSON body extractor whose every rejection is an `ApiError`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use meridian_api::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, but malformed or oversized bodies get the JSON error body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(rejection_error(rejection)),
        }
    }
}

/// A JSON body read but not decoded yet: a handler decodes it ([`JsonBody::parse`]) after it
/// has checked the caller, so a caller who may not make the request is refused the same way
/// whatever it sent, and learns nothing from how its body would have been judged.
pub struct JsonBody<T> {
    read: Result<axum::body::Bytes, ApiError>,
    json: bool,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_lite::Mime>().ok())
            .is_some_and(|m| m.is_json());
        let read = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| rejection_error(JsonRejection::BytesRejection(e)));
        Ok(Self {
            read,
            json,
            _t: std::marker::PhantomData,
        })
    }
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// The body decoded, or the 4xx that says why it cannot be.
    pub fn parse(self) -> Result<T, ApiError> {
        if !self.json {
            return Err(rejection_error(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = self.read?;
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(v)| v)
            .map_err(rejection_error)
    }
}

/// Just enough of a media type to tell JSON: `application/json` or `application/*+json`.
mod mime_lite {
    pub struct Mime {
        essence: String,
    }

    impl std::str::FromStr for Mime {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Self { essence })
            } else {
                Err(())
            }
        }
    }

    impl Mime {
        pub fn is_json(&self) -> bool {
            self.essence == "application/json"
                || (self.essence.starts_with("application/") && self.essence.ends_with("+json"))
        }
    }
}

fn rejection_error(r: JsonRejection) -> ApiError {
    let detail = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Invalid, detail)
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                detail,
            )
        }
        other => ApiError::new(other.status(), ErrorCode::BadRequest, detail),
    }
}
