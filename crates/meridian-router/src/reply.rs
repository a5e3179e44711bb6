//! The router's own answers: a refusal with its reason, as JSON, or as a small HTML page for
//! clients that prefer one.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use meridian_api::{ErrorBody, ErrorCode, ErrorDetail};
use meridian_core::Name;

use crate::body::ProxyBody;

/// A request the router answers itself, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    /// Stable, for programs: `unknown_app`, `no_healthy_instance`...
    pub(crate) code: ErrorCode,
    /// For people.
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// No instance of `app` in `region` accepted a connection: nothing reached the app, so a
    /// forwarding router may try the next region.
    pub(crate) fn instance_unreachable(app: &Name, region: &Name) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::InstanceUnreachable,
            format!("no instance of {app} in {region} accepted a connection"),
        )
    }

    /// The instance of `app` in `region` took the request and failed before answering.
    pub(crate) fn instance_broken(app: &Name, region: &Name) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::BadGateway,
            format!("the instance of {app} in {region} failed before answering"),
        )
    }

    /// An app answered `101` to a request that asked for no upgrade.
    pub(crate) fn switched_protocols() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::BadGateway,
            "the app switched protocols without being asked to",
        )
    }

    /// `region` did not answer for `app` within `timeout`.
    pub(crate) fn gateway_timeout(app: &Name, region: &Name, timeout: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::GatewayTimeout,
            format!(
                "{region} did not answer for {app} within {} s",
                timeout.as_secs_f64()
            ),
        )
    }

    /// `{"error":{"code":..,"message":..}}`, or a page when `html`.
    pub(crate) fn into_response(self, html: bool) -> Response<ProxyBody> {
        let (content_type, body) = self.render(html);
        let mut response = Response::new(ProxyBody::full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The body's content type and text.
    pub(crate) fn render(&self, html: bool) -> (&'static str, String) {
        if html {
            ("text/html; charset=utf-8", self.page())
        } else {
            let body = ErrorBody {
                error: ErrorDetail {
                    code: self.code.clone(),
                    message: self.message.clone(),
                    field: None,
                    hint: None,
                },
            };
            // Plain strings and a code: nothing here can fail to serialise.
            let json = serde_json::to_string(&body).unwrap_or_default();
            ("application/json", json)
        }
    }

    fn page(&self) -> String {
        let status = self.status;
        let title = escape(status.canonical_reason().unwrap_or("Error"));
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{code} {title}</title></head>\n<body><h1>{code} {title}</h1>\n\
             <p>{message}</p>\n<p><small>Meridian: {kind}</small></p></body></html>\n",
            code = status.as_u16(),
            message = escape(&self.message),
            kind = escape(self.code.as_str()),
        )
    }
}

/// Escapes text for HTML: messages quote the request's host.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(r: Response<ProxyBody>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_by_default_html_on_request() {
        let r = Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownApp,
            "no app is served at <x>",
        );
        let json = r.clone().into_response(false);
        assert_eq!(json.status(), 404);
        assert_eq!(json.headers()[CONTENT_TYPE], "application/json");
        let sent = text(json).await;
        assert_eq!(
            sent,
            r#"{"error":{"code":"unknown_app","message":"no app is served at <x>"}}"#
        );
        let body: ErrorBody = serde_json::from_str(&sent).unwrap();
        assert_eq!(body.error.code, ErrorCode::UnknownApp);
        let page = text(r.into_response(true)).await;
        assert!(page.contains("404 Not Found"));
        assert!(page.contains("no app is served at &lt;x&gt;"));
    }
}
