//! The processing status of plaintext previews.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sealpost_auth::Authenticated;
use sealpost_db::{MediaRow, RenditionRow};
use sealpost_proto::{MediaState, MediaStatus, Problem, Rendition};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where the processing of a `preview` upload's blob is, and its renditions once ready (each a
/// blob of its own, fetched with `GET /v1/blobs/{blob_id}`). Poll until `status` is not
/// `pending`.
#[utoipa::path(
    get, path = "/v1/media/{blob_id}", tag = "media",
    params(("blob_id" = String, Path, description = "The preview's blob id (lowercase hex SHA-256)")),
    responses(
        (status = 200, description = "Its status", body = MediaStatus, headers(
            ("Cache-Control" = String, description = "no-store: the status changes"),
        )),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such preview: the blob was not uploaded with `kind=preview`, or it expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_media(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(blob_id): Path<String>,
) -> ApiResult<Response> {
    let row = state
        .db
        .media(&blob_id)
        .await?
        .ok_or(ApiError::NotFound("no such preview"))?;
    let renditions = if row.state == "ready" {
        state.db.media_renditions(&blob_id).await?
    } else {
        Vec::new()
    };
    let mut response = Json(status(row, renditions)?).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn status(row: MediaRow, renditions: Vec<RenditionRow>) -> ApiResult<MediaStatus> {
    let status = match row.state.as_str() {
        "pending" => MediaState::Pending,
        "ready" => MediaState::Ready,
        "failed" => MediaState::Failed,
        other => return Err(ApiError::Internal(format!("unknown media state {other:?}"))),
    };
    // 0 stands for "none" (the height of audio, the frames of a video).
    let dimension = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0);
    Ok(MediaStatus {
        blob_id: row.blob_id,
        status,
        code: row.code,
        message: row.detail,
        mime: row.mime,
        width: dimension(row.width),
        height: dimension(row.height),
        frames: dimension(row.frames),
        duration_ms: row.duration_ms.and_then(|ms| u64::try_from(ms).ok()),
        blurhash: row.blurhash.filter(|b| !b.is_empty()),
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        renditions: renditions
            .into_iter()
            .map(|r| Rendition {
                name: r.name,
                mime: r.mime,
                width: u32::try_from(r.width).unwrap_or(0),
                height: u32::try_from(r.height).unwrap_or(0),
                size: u64::try_from(r.size).unwrap_or(0),
                blob_id: r.rendition_id,
            })
            .collect(),
    })
}
