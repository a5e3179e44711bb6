//! The HTTP surface: which routes exist and which layers wrap them.
//!
//! Every route is registered through `routes!` on an `OpenApiRouter`, which takes the path and
//! method from the handler's `#[utoipa::path]`: the served router and the OpenAPI document are
//! made from one list ([`routes`]), so neither can hold a route the other lacks.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{middleware, Router};
use meridian_api::ErrorCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::openapi::{self, Group};
use crate::routes::{
    agent, apps, audit, cluster, health, images, nodes, raft, regions, releases, routing, tokens,
};
use crate::{leader, metrics};

/// Raft RPCs carry log batches and snapshot chunks: allow far more than the public API.
const RAFT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Every route, in the groups whose layers differ. `routes!` takes handlers of one path only.
pub struct Routes {
    /// Served by the leader (forwarded there by any other server).
    pub public: OpenApiRouter<Ctx>,
    /// Image blobs, streamed to and from this server's own disk.
    pub blobs: OpenApiRouter<Ctx>,
    /// Answered by this server itself.
    pub local: OpenApiRouter<Ctx>,
    /// Raft RPCs between servers.
    pub internal: OpenApiRouter<Ctx>,
}

/// The one list of routes.
pub fn routes() -> Routes {
    let public = OpenApiRouter::default()
        .routes(routes!(health::ready))
        .routes(routes!(tokens::bootstrap))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(cluster::get))
        .routes(routes!(routing::settings, routing::patch_settings))
        .routes(routes!(routing::table))
        .routes(routes!(routing::register))
        .routes(routes!(routing::explain))
        .routes(routes!(cluster::join))
        .routes(routes!(cluster::remove))
        .routes(routes!(regions::create, regions::list))
        .routes(routes!(regions::get, regions::patch, regions::delete))
        .routes(routes!(apps::create, apps::list))
        .routes(routes!(apps::get, apps::patch, apps::delete))
        .routes(routes!(releases::deploy))
        .routes(routes!(releases::releases))
        .routes(routes!(releases::instances))
        .routes(routes!(releases::plan))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::drain))
        .routes(routes!(nodes::undrain))
        .routes(routes!(audit::list))
        .routes(routes!(images::register, images::list))
        .routes(routes!(agent::register))
        .routes(routes!(agent::heartbeat))
        .routes(routes!(agent::assignments))
        .routes(routes!(agent::report));
    let blobs = OpenApiRouter::default()
        .routes(routes!(images::upload))
        .routes(routes!(images::fetch))
        .routes(routes!(images::internal_blob));
    let local = OpenApiRouter::default()
        .routes(routes!(health::health))
        .routes(routes!(openapi::serve))
        .routes(routes!(metrics::render));
    let internal = OpenApiRouter::default()
        .routes(routes!(raft::append))
        .routes(routes!(raft::vote))
        .routes(routes!(raft::snapshot));
    Routes {
        public,
        blobs,
        local,
        internal,
    }
}

impl Routes {
    /// One router, its document completed with what each group's layers can answer.
    fn merge(self) -> OpenApiRouter<Ctx> {
        let mut all = OpenApiRouter::with_openapi(openapi::base());
        for (group, mut router) in [
            (Group::Public, self.public),
            (Group::Local, self.local),
            (Group::Blobs, self.blobs),
            (Group::Internal, self.internal),
        ] {
            openapi::complete(router.get_openapi_mut(), group);
            all = all.merge(router);
        }
        all
    }
}

/// The OpenAPI document of the routes [`build`] serves.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().merge().into_openapi()
}

/// Builds the whole router.
pub fn build(ctx: Ctx) -> Router {
    let max_body = ctx.0.max_body;
    let Routes {
        public,
        blobs,
        local,
        internal,
    } = routes();
    let routes = Routes {
        public: public.layer(DefaultBodyLimit::max(max_body)).route_layer(
            middleware::from_fn_with_state(ctx.clone(), leader::route_to_leader),
        ),
        blobs: blobs.layer(DefaultBodyLimit::disable()),
        local,
        internal: internal.layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT)),
    };
    let (router, _) = routes.merge().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), metrics::track))
        .with_state(ctx)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    /// Routes added with `route`, `route_service` or `nest_service` would be served but missing
    /// from the document: this file registers routes only through `routes!`.
    #[test]
    fn routes_are_registered_only_through_the_macro() {
        let source = include_str!("router.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for call in [".route(", ".route_service(", ".nest_service(", ".nest("] {
            assert!(
                !code.contains(call),
                "router.rs calls {call}..): register handlers with routes!(...) so the \
                 OpenAPI document lists them"
            );
        }
    }
}
