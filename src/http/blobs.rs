//! Blob downloads to authenticated accounts: whole blobs or one byte range.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealpost_auth::Authenticated;
use sealpost_proto::Problem;
use sealpost_store::BlobId;

use super::range::{self, Wanted};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Streams a stored blob, or one byte range of it.
#[utoipa::path(
    get, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob"),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`) for a 206; several ranges or an unparsable header get the whole blob"),
        ("If-Range" = Option<String>, Header, description = "Serve the range only if the blob's ETag is this"),
    ),
    responses(
        (status = 200, description = "The blob's bytes", content_type = "application/octet-stream", body = crate::uploads::api_doc::BinaryBody,
            headers(("ETag" = String, description = "The blob id, quoted"), ("Accept-Ranges" = String, description = "bytes"))),
        (status = 206, description = "The requested bytes", content_type = "application/octet-stream", body = crate::uploads::api_doc::BinaryBody,
            headers(("Content-Range" = String, description = "bytes A-B/SIZE"), ("ETag" = String, description = "The blob id, quoted"))),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such blob", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the blob (`Content-Range: bytes */SIZE`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_blob(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(blob_id): Path<String>,
    headers: HeaderMap,
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
    let etag = format!("\"{id}\"");
    // If-Range with another validator: the client's copy is stale, send everything.
    let current = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let wanted = if current {
        range::wanted(headers.get(header::RANGE), size)
    } else {
        Wanted::Full
    };
    let (status, bytes) = match wanted {
        Wanted::Full => (StatusCode::OK, 0..size),
        Wanted::Part(bytes) => (StatusCode::PARTIAL_CONTENT, bytes),
        Wanted::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(size)),
    };
    let stream = state.store.read(&row.storage_key, bytes.clone()).await?;
    let mut response = (status, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.end - bytes.start),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", bytes.start, bytes.end - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    Ok(response)
}
