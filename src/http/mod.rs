//! The HTTP surface: router assembly, middleware, and the small endpoint groups.

pub mod accounts;
pub mod blobs;
pub mod devices;
pub mod groups;
pub mod interim;
pub mod json;
pub mod keys;
pub mod media;
pub mod ops;
pub mod range;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::metrics::RequestLabels;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::uploads::routes as uploads;

/// Every route with its OpenAPI description; the spec is generated from this one table.
pub fn api() -> OpenApiRouter<AppState> {
    media_routes().merge(chat_routes()).merge(ops_routes())
}

/// The media API: accounts, devices, uploads, downloads, preview status (`--role media`).
fn media_routes() -> OpenApiRouter<AppState> {
    let upload_routes = OpenApiRouter::new()
        .routes(routes!(uploads::options_uploads, uploads::create_upload))
        .routes(routes!(
            uploads::head_upload,
            uploads::get_upload,
            uploads::patch_upload,
            uploads::delete_upload
        ))
        .layer(middleware::from_fn(uploads::tus_resumable_header));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::lookup))
        .routes(routes!(accounts::challenge))
        .routes(routes!(accounts::issue_token, accounts::revoke_token))
        .routes(routes!(devices::link_device, devices::list_devices))
        .routes(routes!(devices::create_link_code))
        .routes(routes!(devices::remove_device))
        .routes(routes!(blobs::get_blob, blobs::head_blob))
        .routes(routes!(blobs::create_link))
        .routes(routes!(blobs::authorize_blob))
        .routes(routes!(media::get_media))
        .merge(upload_routes)
}

/// The chat gateway and groups (`--role chat`).
fn chat_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sealpost_chat::upgrade))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::set_member, groups::remove_member))
        .routes(routes!(keys::publish_keys))
        .routes(routes!(keys::claim_keys))
}

/// What every role serves: health, readiness, metrics.
fn ops_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The request and response headers a browser client of the upload protocols needs.
const CORS_REQUEST_HEADERS: [&str; 10] = [
    "authorization",
    "content-type",
    "tus-resumable",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-metadata",
    "upload-checksum",
    "upload-complete",
    "upload-draft-interop-version",
];
const CORS_RESPONSE_HEADERS: [&str; 13] = [
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "upload-complete",
    "upload-limit",
    "sealpost-blob-id",
];

/// CORS for the configured origins, or `None` when none are configured.
fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names = |list: &[&'static str]| {
        list.iter()
            .map(|h| HeaderName::from_static(h))
            .collect::<Vec<_>>()
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(names(&CORS_REQUEST_HEADERS))
            .expose_headers(names(&CORS_RESPONSE_HEADERS))
            .max_age(std::time::Duration::from_secs(3600)),
    ))
}

/// The application router: the parts of the API this node's role serves, and the operations
/// endpoints every role serves.
pub fn router(state: AppState) -> anyhow::Result<Router> {
    let cors = cors(&state.settings.cors_origins)?;
    let role = state.settings.role;
    let mut routes = ops_routes();
    if role.serves_api() {
        routes = routes.merge(media_routes());
    }
    if role.serves_chat() {
        routes = routes.merge(chat_routes());
    }
    let router = if role.serves_api() {
        // The reference documents everything, whichever part this node serves.
        let (_, spec) = api().split_for_parts();
        routes.split_for_parts().0.merge(ops::docs(spec))
    } else {
        routes.split_for_parts().0
    };
    let router = router
        .fallback(|| async { ApiError::NotFound("no such endpoint").into_response() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed.into_response() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            // The path only: a query may hold a token (`/v1/chat?token=`) or a link signature.
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state);
    Ok(match cors {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

async fn count_requests(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    response
}
