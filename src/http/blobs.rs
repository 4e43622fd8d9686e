//! Blob downloads (minimal: whole blobs to authenticated accounts).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealpost_auth::Authenticated;
use sealpost_proto::Problem;
use sealpost_store::BlobId;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Streams a stored blob.
#[utoipa::path(
    get, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob")),
    responses(
        (status = 200, description = "The blob's bytes", content_type = "application/octet-stream", body = crate::uploads::api_doc::BinaryBody,
            headers(("ETag" = String, description = "The blob id, quoted"))),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such blob", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_blob(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(blob_id): Path<String>,
) -> ApiResult<Response> {
    let id: BlobId = blob_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such blob"))?;
    let row = state
        .db
        .blob(id.as_str())
        .await?
        .ok_or(ApiError::NotFound("no such blob"))?;
    let size = u64::try_from(row.size).unwrap_or(0);
    let stream = state.store.read(&row.storage_key, 0..size).await?;
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, etag);
    }
    Ok(response)
}
