//! The one error body every failing request gets, and the codes it carries.

use std::fmt;

use meridian_core::route::NoRoute;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The parts of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code such as `not_found` or `invalid`.
    #[schema(value_type = String, example = "not_found")]
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// The input field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to do about it, when something helps: a sentence for people, shown on its own
    /// line after the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Declares the known codes once: the enum, and its text both ways.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)+) => {
        /// A stable, machine-readable error code: the `code` of every error body, and the
        /// `Meridian-Route` header of a router's own refusals. On the wire it is a
        /// snake_case string; a code this version does not know is kept as
        /// [`ErrorCode::Other`], so a newer server's answers still read.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
            /// A code this version does not know, as sent.
            Other(String),
        }

        impl ErrorCode {
            /// Every code this version knows.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as sent on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                    ErrorCode::Other(text) => text,
                }
            }

            /// The code for `text` as sent on the wire; never fails.
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => ErrorCode::$variant,)+
                    other => ErrorCode::Other(other.to_string()),
                }
            }
        }
    };
}

error_codes! {
    /// The request is malformed (400).
    BadRequest = "bad_request",
    /// A query parameter is missing, malformed or out of range (400, with `field`).
    InvalidQuery = "invalid_query",
    /// No valid token (401).
    Unauthorized = "unauthorized",
    /// The token's role may not do this (403).
    Forbidden = "forbidden",
    /// Too many failed authentications from this address or with this token; wait the
    /// `Retry-After` seconds (429).
    RateLimited = "rate_limited",
    /// No such object (404).
    NotFound = "not_found",
    /// The method is not served on this path (405).
    MethodNotAllowed = "method_not_allowed",
    /// The change conflicts with the state (409).
    Conflict = "conflict",
    /// A field is invalid (422, with `field`).
    Invalid = "invalid",
    /// The body is larger than allowed (413).
    PayloadTooLarge = "payload_too_large",
    /// The body is not JSON (415).
    UnsupportedMediaType = "unsupported_media_type",
    /// Auth was bootstrapped before (409).
    AlreadyBootstrapped = "already_bootstrapped",
    /// The name is taken (409).
    AlreadyExists = "already_exists",
    /// The object changed between reading and writing it (409); read again and retry.
    Stale = "stale",
    /// Leadership moved while the request was handled (503).
    NotLeader = "not_leader",
    /// The cluster has no leader right now (503).
    NoLeader = "no_leader",
    /// This server cannot reach the leader (503).
    LeaderUnreachable = "leader_unreachable",
    /// The leader cannot reach a quorum (503).
    NoQuorum = "no_quorum",
    /// The write was not committed in time; its outcome is unknown (503).
    CommitTimeout = "commit_timeout",
    /// Raft is not accepting writes (503).
    RaftUnavailable = "raft_unavailable",
    /// This server cannot read its own state (503).
    StorageUnavailable = "storage_unavailable",
    /// This server cannot produce its metrics (503).
    MetricsUnavailable = "metrics_unavailable",
    /// The server is stopping (503).
    ShuttingDown = "shutting_down",
    /// No server holding the image could be reached (503).
    HolderUnreachable = "holder_unreachable",
    /// No copy of the image can be served (503).
    ImageUnavailable = "image_unavailable",
    /// A router serves no app at the request's host (404).
    UnknownApp = "unknown_app",
    /// The request names no host (400, router).
    MissingHost = "missing_host",
    /// The request's host is unusable (400, router).
    BadHost = "bad_host",
    /// No region the app's residency allows holds a healthy instance (503, router).
    NoHealthyInstance = "no_healthy_instance",
    /// No region inside the client's origin-bound jurisdictions may serve (503, router).
    OriginBound = "origin_bound",
    /// No instance of the region accepted a connection: nothing reached the app (502,
    /// router).
    InstanceUnreachable = "instance_unreachable",
    /// No router of the winning region could be reached (502, router).
    RegionUnreachable = "region_unreachable",
    /// The instance or router took the request and failed before answering (502, router).
    BadGateway = "bad_gateway",
    /// The instance or router did not answer in time (504, router).
    GatewayTimeout = "gateway_timeout",
    /// A request forwarded by another region's router may not be served here (508, router).
    ForwardLoop = "forward_loop",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
    }
}

impl From<&NoRoute> for ErrorCode {
    fn from(no_route: &NoRoute) -> Self {
        match no_route {
            NoRoute::NoHealthyInstance { .. } => ErrorCode::NoHealthyInstance,
            NoRoute::OriginBound { .. } => ErrorCode::OriginBound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back_as_themselves() {
        for code in ErrorCode::KNOWN {
            let text = code.as_str();
            assert!(
                !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text:?}"
            );
            assert_eq!(ErrorCode::parse(text), *code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
        }
        let texts: std::collections::BTreeSet<_> =
            ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        assert_eq!(
            texts.len(),
            ErrorCode::KNOWN.len(),
            "a code is listed twice"
        );
    }

    #[test]
    fn the_body_keeps_its_wire_form() {
        let json = r#"{"error":{"code":"stale","message":"changed meanwhile"}}"#;
        let body: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.error.code, ErrorCode::Stale);
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
    }

    #[test]
    fn hints_are_optional_both_ways() {
        let json = r#"{"error":{"code":"forbidden","message":"m","hint":"h"}}"#;
        let body: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.error.hint.as_deref(), Some("h"));
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
        let plain: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"forbidden","message":"m"}}"#).unwrap();
        assert_eq!(plain.error.hint, None);
    }

    #[test]
    fn unknown_codes_are_kept_as_sent() {
        let json = r#"{"error":{"code":"from_the_future","message":"m","field":"f"}}"#;
        let body: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.error.code, ErrorCode::Other("from_the_future".into()));
        assert_eq!(body.error.code.to_string(), "from_the_future");
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
    }

    #[test]
    fn no_route_codes_match_core() {
        let no_route = NoRoute::NoHealthyInstance {
            residency: "EU".into(),
        };
        assert_eq!(ErrorCode::from(&no_route).as_str(), no_route.code());
        let no_route = NoRoute::OriginBound {
            jurisdictions: Vec::new(),
            country: meridian_core::CountryCode::parse("DE").unwrap(),
        };
        assert_eq!(ErrorCode::from(&no_route).as_str(), no_route.code());
    }
}
