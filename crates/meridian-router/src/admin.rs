//! The router's own endpoints, on a separate listener: `/metrics` (Prometheus text) and
//! `/health`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Router;

/// Serves `/metrics` and `/health` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    let (status, content_type, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            router.metrics_text(),
                        ),
                        "/health" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "only /metrics and /health here\n".to_string(),
                        ),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
