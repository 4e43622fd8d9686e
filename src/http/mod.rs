//! The HTTP surface: router assembly, middleware, and the small endpoint groups.

pub mod accounts;
pub mod blobs;
pub mod client;
pub mod devices;
pub mod groups;
pub mod interim;
pub mod json;
pub mod keys;
pub mod media;
pub mod ops;
pub mod range;
pub mod server;
pub mod usage;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, State};
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::client::ClientAddr;
use self::interim::ClientConn;
use crate::error::ApiError;
use crate::metrics::{RequestLabels, RouteLabels, method_label};
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
            uploads::delete_upload,
            uploads::override_upload
        ))
        .layer(middleware::from_fn(uploads::protocol_headers));
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
        .routes(routes!(usage::get_usage))
        .merge(upload_routes)
}

/// The chat gateway and groups (`--role chat`).
fn chat_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sealpost_chat::upgrade))
        .routes(routes!(groups::create_group, groups::list_groups))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::set_member, groups::remove_member))
        .routes(routes!(groups::get_privacy, groups::put_privacy))
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

/// The request headers browser clients send: both upload protocols (every draft version, tus
/// concatenation and method override) and conditional or partial downloads.
const CORS_REQUEST_HEADERS: [&str; 16] = [
    "authorization",
    "content-type",
    "tus-resumable",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-metadata",
    "upload-checksum",
    "upload-concat",
    "upload-complete",
    "upload-incomplete",
    "upload-draft-interop-version",
    "x-http-method-override",
    "range",
    "if-range",
    "if-none-match",
];
/// Every response header a browser script may need to read that is not CORS-safelisted
/// (`tests/ops.rs` checks this against what the upload and download routes send).
const CORS_RESPONSE_HEADERS: [&str; 21] = [
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-expires",
    "upload-metadata",
    "upload-concat",
    "upload-complete",
    "upload-incomplete",
    "upload-limit",
    "upload-draft-interop-version",
    "sealpost-blob-id",
    "etag",
    "content-range",
    "accept-ranges",
    "retry-after",
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
        .layer(middleware::from_fn_with_state(state.clone(), observe))
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

/// Per request: resolves the client's address (for handlers and the log), counts the request
/// and times it to the response head, and logs one access line once the response body has
/// gone out (or the client left).
async fn observe(
    State(state): State<AppState>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let peer = request
        .extensions()
        .get::<ConnectInfo<ClientConn>>()
        .map(|ConnectInfo(conn)| conn.addr.ip());
    let client = peer.map(|peer| ClientAddr::resolve(&state.proxies, peer, request.headers()));
    if let Some(client) = client {
        request.extensions_mut().insert(client);
    }
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let label = method_label(&method);
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: label,
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: label,
            status,
        })
        .inc();
    let (parts, body) = response.into_parts();
    let line = AccessLine {
        method,
        route,
        status,
        client: client.map(|c| c.ip),
        started,
        bytes: 0,
    };
    Response::from_parts(parts, Body::new(Logged { body, line }))
}

/// What the access log says of a request.
struct AccessLine {
    method: Method,
    route: String,
    status: u16,
    client: Option<std::net::IpAddr>,
    started: Instant,
    bytes: u64,
}

/// A response body that counts what it sends and logs the request's access line when it is
/// done with (sent, or dropped when the client left).
struct Logged {
    body: Body,
    line: AccessLine,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.line.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let line = &self.line;
        // The route, never the path's query: it may hold a token or a link's signature.
        tracing::info!(
            target: "sealpost::access",
            method = %line.method,
            route = %line.route,
            status = line.status,
            duration_ms = line.started.elapsed().as_secs_f64() * 1000.0,
            bytes = line.bytes,
            client = %line.client.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            "request"
        );
    }
}
