//! The OpenAPI 3 document, generated from the handlers' annotations by the same route list
//! that builds the served router (`router::routes`). A copy is committed as `openapi.json`
//! beside this crate's Cargo.toml; `tests/openapi.rs` keeps the two equal.
//!
//! Handlers declare the answers only they give (201, 404, 409, 422...). What the layers and
//! extractors in front of them can answer is added here, per group, from facts the document
//! already holds: its security scheme, its query parameters, its JSON body, and whether the
//! group is forwarded to the leader.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use meridian_api::ErrorBody;
use utoipa::openapi::path::{
    HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, Required, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

/// The bearer scheme: a JWT from `POST /v1/tokens` or the bootstrap.
pub const BEARER: &str = "bearer";
/// The scheme of server-to-server calls: the cluster secret in a header.
pub const CLUSTER_SECRET: &str = "cluster_secret";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token this cluster issued. With TLS, agent and router routes also \
                         need the client certificate of that agent (its node) or router, from \
                         the cluster's CA: none is 401, another's 403",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            CLUSTER_SECRET,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                meridian_api::CLUSTER_SECRET_HEADER,
                "The cluster secret every server is started with; for servers only. With TLS the \
                 call must also come with a server's certificate of the cluster's CA: none is \
                 401, another role's 403",
            ))),
        );
    }
}

/// Meridian's REST API, version 1: what the document holds before any route is added.
#[derive(OpenApi)]
#[openapi(
    info(title = "Meridian API", version = "1", description = "Control plane of the Meridian platform"),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The document's info, security schemes and shared schemas, without routes.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed and served: pretty-printed, keys in a stable order, one final
/// newline.
pub fn to_json(doc: &utoipa::openapi::OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let text = JSON.get_or_init(|| to_json(&crate::router::document()));
    ([(CONTENT_TYPE, "application/json")], text.clone()).into_response()
}

/// Which layers stand in front of a group of routes (see `router::build`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Forwarded to the leader by `leader::route_to_leader`, bodies limited to `max_body`.
    Public,
    /// Image blobs: no body limit, answered by this server.
    Blobs,
    /// Health, metrics and this document.
    Local,
    /// Raft RPCs.
    Internal,
}

/// Adds to every operation of `doc` the answers its group's layers and its extractors can give,
/// the `stale` parameter the leader forwarding honours on reads, and an operation id unique
/// in the document (`<tag>_<handler>`).
pub fn complete(doc: &mut utoipa::openapi::OpenApi, group: Group) {
    for item in doc.paths.paths.values_mut() {
        for (method, op) in operations(item) {
            complete_operation(op, method, group);
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, &mut item.get),
        (HttpMethod::Head, &mut item.head),
        (HttpMethod::Post, &mut item.post),
        (HttpMethod::Put, &mut item.put),
        (HttpMethod::Patch, &mut item.patch),
        (HttpMethod::Delete, &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

fn complete_operation(op: &mut Operation, method: HttpMethod, group: Group) {
    let read = matches!(method, HttpMethod::Get | HttpMethod::Head);
    // utoipa names an operation after its handler, and handlers of different resources share
    // names (`create`, `list`); one handler may also serve GET and HEAD.
    if let (Some(tag), Some(id)) = (
        op.tags.as_ref().and_then(|t| t.first()),
        op.operation_id.as_ref(),
    ) {
        let suffix = if method == HttpMethod::Head {
            "_head"
        } else {
            ""
        };
        op.operation_id = Some(format!("{tag}_{id}{suffix}"));
    }
    if group == Group::Public && read {
        add_parameter(op, stale_parameter());
    }

    let schemes = security_schemes(op);
    if !schemes.is_empty() {
        add(
            op,
            429,
            "`rate_limited`: too many failed authentications from this address or with this \
             credential; wait `Retry-After` seconds",
        );
    }
    if schemes.iter().any(|s| s == BEARER) {
        add(
            op,
            401,
            "`unauthorized`: no bearer token, or one that is malformed, badly signed, expired, \
             unknown or revoked; or the cluster is not bootstrapped yet; or, on an agent or \
             router route over TLS, no client certificate",
        );
        add(
            op,
            403,
            "`forbidden`: the token's role (or app list) does not allow this; or, on an agent \
             or router route over TLS, the client certificate is not that agent's or router's",
        );
    }
    if schemes.iter().any(|s| s == CLUSTER_SECRET) {
        add(
            op,
            401,
            "`unauthorized`: missing or wrong cluster secret, or (over TLS) no client \
             certificate",
        );
        add(
            op,
            403,
            "`forbidden`: (over TLS) the client certificate is not a server's",
        );
    }
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    if has_query {
        add(
            op,
            400,
            "`invalid_query`: a query parameter is missing, malformed or out of range; \
             `field` names it",
        );
    }
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    if json_body {
        add(op, 400, "`bad_request`: the body is not JSON");
        add(
            op,
            413,
            "`payload_too_large`: the body is over the server's limit",
        );
        add(
            op,
            415,
            "`unsupported_media_type`: the body is not sent as application/json",
        );
        add(
            op,
            422,
            "`invalid`: the body does not fit the schema (a field missing, unknown or of the \
             wrong type)",
        );
    }
    if group == Group::Public {
        if read {
            add(
                op,
                503,
                "`no_leader`: no leader is reachable; `no_quorum`: the leader cannot confirm \
                 its leadership with a quorum; `raft_unavailable`; `storage_unavailable`: this \
                 server cannot read its state. Retry, maybe elsewhere",
            );
        } else {
            add(
                op,
                413,
                "`payload_too_large`: the body is over the server's limit",
            );
            add(
                op,
                503,
                "`no_leader`: no leader is reachable (nothing was done); `not_leader`: \
                 leadership moved while writing; `leader_unreachable` and `commit_timeout`: \
                 the outcome is unknown; `raft_unavailable`; `storage_unavailable`. Retry, \
                 maybe elsewhere",
            );
        }
    }
}

/// Names of the security schemes an operation accepts.
fn security_schemes(op: &Operation) -> Vec<String> {
    op.security
        .iter()
        .flatten()
        .filter_map(|req| serde_json::to_value(req).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect()
}

fn stale_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("stale")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "`true`: answer from this server's applied state without asking the leader (it \
             may lag behind); `false` (the default): a linearizable read through the leader. \
             Only `true` and `false` are accepted",
        ))
        .schema(Some(Object::with_type(Type::Boolean)))
        .build()
}

fn add_parameter(op: &mut Operation, param: Parameter) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    if !params
        .iter()
        .any(|p| p.name == param.name && p.parameter_in == param.parameter_in)
    {
        params.push(param);
    }
}

/// Adds an error answer with the JSON error body, or appends to the one the handler declared.
fn add(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    let responses = &mut op.responses.responses;
    match responses.get_mut(&key) {
        Some(utoipa::openapi::RefOr::T(existing)) => {
            if !existing.description.contains(description) {
                existing.description = format!("{}. {description}", existing.description);
            }
        }
        Some(utoipa::openapi::RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            responses.insert(key, response.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    fn doc() -> Value {
        serde_json::to_value(crate::router::document()).expect("document as JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = doc();
        let mut seen = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                seen.insert(id.clone()),
                "{method} {path}: operationId {id} twice"
            );
        }
    }

    #[test]
    fn every_operation_names_its_security() {
        let doc = doc();
        // Reachable without credentials, by design.
        let open = [
            "/v1/health",
            "/v1/ready",
            "/v1/openapi.json",
            "/metrics",
            "/v1/auth/bootstrap",
        ];
        for (path, method, op) in operations(&doc) {
            let schemes: Vec<String> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|o| o.keys().cloned())
                .collect();
            if open.contains(&path.as_str()) {
                assert!(schemes.is_empty(), "{method} {path} should be open");
            } else {
                assert_eq!(schemes.len(), 1, "{method} {path}: security {schemes:?}");
                let has_401 = op["responses"]["401"].is_object();
                assert!(has_401, "{method} {path} does not document 401");
            }
            if path.starts_with("/v1/internal/") || path == "/v1/cluster/join" {
                assert_eq!(schemes, ["cluster_secret"], "{method} {path}");
            }
        }
    }

    #[test]
    fn declared_limits_are_the_enforced_ones() {
        let doc = doc();
        let max = |path: &str, param: &str| -> Option<u64> {
            doc["paths"][path]["get"]["parameters"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == param)?["schema"]["maximum"]
                .as_u64()
        };
        let watch = Some(meridian_api::agent::MAX_WATCH_MS);
        assert_eq!(max("/v1/agent/nodes/{name}/assignments", "wait_ms"), watch);
        assert_eq!(max("/v1/router/table", "wait_ms"), watch);
        assert_eq!(
            max("/v1/audit", "limit"),
            Some(crate::routes::audit::MAX_LIMIT)
        );
    }
}
