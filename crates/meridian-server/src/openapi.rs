//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Meridian's REST API, version 1.
#[derive(OpenApi)]
#[openapi(
    info(title = "Meridian API", version = "1", description = "Control plane of the Meridian platform"),
    paths(
        routes::health::health,
        routes::tokens::bootstrap,
        routes::tokens::create,
        routes::tokens::list,
        routes::tokens::revoke,
        routes::cluster::get,
        routes::cluster::join,
        routes::cluster::remove,
        routes::regions::create,
        routes::regions::list,
        routes::regions::get,
        routes::regions::patch,
        routes::regions::delete,
        routes::apps::create,
        routes::apps::list,
        routes::apps::get,
        routes::apps::patch,
        routes::apps::delete,
        routes::releases::deploy,
        routes::releases::releases,
        routes::releases::instances,
        routes::releases::plan,
        routes::nodes::list,
        routes::nodes::get,
        routes::nodes::drain,
        routes::audit::list,
        routes::agent::register,
        routes::agent::heartbeat,
        routes::agent::assignments,
        routes::agent::report,
        routes::images::upload,
        routes::images::register,
        routes::images::list,
        routes::images::fetch,
        routes::routing::table,
        routes::routing::register,
        routes::routing::settings,
        routes::routing::patch_settings,
        routes::routing::explain,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
