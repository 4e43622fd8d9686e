//! Health, readiness, metrics and the API reference.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealpost_proto::Problem;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database, the blob store and the bus answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String),
        (status = 503, description = "A backend is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: database");
        return ApiError::Unavailable(
            "database-unavailable",
            "the database does not answer".into(),
        )
        .into_response();
    }
    if let Err(e) = state.store.check().await {
        tracing::warn!(error = %e, "readiness: blob store");
        return ApiError::Unavailable("store-unavailable", "the blob store does not answer".into())
            .into_response();
    }
    if let Err(e) = state.bus.check().await {
        tracing::warn!(error = %e, "readiness: bus");
        return ApiError::Unavailable("bus-unavailable", "the message bus does not answer".into())
            .into_response();
    }
    "ready".into_response()
}

/// Prometheus metrics: OpenMetrics text when the `Accept` header asks for it (as Prometheus
/// does), the classic Prometheus text format otherwise. docs/operations.md lists them.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Metrics", content(
    (String = "application/openmetrics-text"),
    (String = "text/plain"),
))))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let role = state.settings.role;
    if role.serves_api()
        && let Ok(n) = state.db.active_upload_count().await
    {
        state.metrics.uploads_in_progress.set(n);
    }
    if role.runs_workers()
        && let Err(e) = state.chat.refresh_metrics().await
    {
        tracing::warn!(error = %format!("{e:#}"), "metrics: cannot count the inbox messages");
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            state.metrics.encode_classic(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `/openapi.json` and the reference page at `/docs` (Swagger UI, bundled in the binary).
pub fn docs(spec: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
}
