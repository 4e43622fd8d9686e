//! Blob downloads with CDN-grade HTTP semantics (ranges, validators, immutable caching), signed
//! links, redirect mode, and the authorisation check a caching proxy asks before serving a hit.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use sealpost_auth::Authenticated;
use sealpost_proto::{LinkRequest, Problem, SignedLink};

use super::range::{self, Wanted};
use crate::blobs::links::LinkParams;
use crate::blobs::{Access, BlobService};
use crate::config::DownloadMode;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Blobs are opaque bytes: a browser must never run or render them as a page.
const SANDBOX: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Streams a stored blob, or one byte range of it.
#[utoipa::path(
    get, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob"),
        LinkParams,
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`) for a 206; several ranges or an unparsable header get the whole blob (200)"),
        ("If-Range" = Option<String>, Header, description = "Serve the range only if the blob's ETag is this"),
        ("If-None-Match" = Option<String>, Header, description = "304 when it lists the blob's ETag (or `*`)"),
    ),
    responses(
        (status = 200, description = "The blob's bytes", content_type = "application/octet-stream", body = crate::uploads::api_doc::BinaryBody, headers(
            ("ETag" = String, description = "The blob id, quoted (strong)"),
            ("Accept-Ranges" = String, description = "bytes"),
            ("Cache-Control" = String, description = "public, max-age=31536000, immutable; with a signed link, max-age is the seconds the link has left"),
            ("Content-Length" = u64, description = "Always sent"),
        )),
        (status = 206, description = "The requested bytes", content_type = "application/octet-stream", body = crate::uploads::api_doc::BinaryBody, headers(
            ("Content-Range" = String, description = "bytes A-B/SIZE"),
            ("ETag" = String, description = "The blob id, quoted (strong)"),
        )),
        (status = 304, description = "The client's copy (If-None-Match) is current"),
        (status = 307, description = "Redirect mode: fetch the bytes from the `Location` (a CDN or presigned store URL, short-lived)"),
        (status = 401, description = "No link and no valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`link-invalid`: the link was altered, forged or signed by a retired key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such blob", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`link-expired`, or `blob-expired`: the blob outlived its retention (uploading the same bytes revives it)", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the blob (`Content-Range: bytes */SIZE`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_blob(
    State(state): State<AppState>,
    Path(blob_id): Path<String>,
    link: LinkParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, &blob_id, &link, &headers, &Method::GET).await
}

/// A blob's headers (size, ETag, caching) without its bytes.
#[utoipa::path(
    head, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob"),
        LinkParams,
        ("Range" = Option<String>, Header, description = "As for GET"),
        ("If-None-Match" = Option<String>, Header, description = "As for GET"),
    ),
    responses(
        (status = 200, description = "The headers a GET would send; no body", headers(
            ("Content-Length" = u64, description = "The blob's size"),
            ("ETag" = String, description = "The blob id, quoted"),
        )),
        (status = 206, description = "The headers of the range a GET would send"),
        (status = 304, description = "The client's copy is current"),
        (status = 401, description = "No link and no valid bearer token"),
        (status = 403, description = "The link is not valid"),
        (status = 404, description = "No such blob"),
        (status = 410, description = "The link or the blob expired"),
        (status = 416, description = "The range is outside the blob"),
    ),
    security(("bearer" = []), ())
)]
pub async fn head_blob(
    State(state): State<AppState>,
    Path(blob_id): Path<String>,
    link: LinkParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, &blob_id, &link, &headers, &Method::HEAD).await
}

async fn serve(
    state: &AppState,
    blob_id: &str,
    link: &LinkParams,
    headers: &HeaderMap,
    method: &Method,
) -> ApiResult<Response> {
    let access = state.blobs.authorize(blob_id, headers, link).await?;
    let (id, row) = state.blobs.live(blob_id).await?;
    let size = u64::try_from(row.size).unwrap_or(0);
    let etag = format!("\"{id}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| lists_etag(v, &etag))
    {
        state.metrics.download("not_modified");
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(response.headers_mut(), &etag, access);
        return Ok(response);
    }
    if *method == Method::GET
        && state.settings.downloads == DownloadMode::Redirect
        && state.blobs.redirects(access)
    {
        let target = state.blobs.redirect_target(&id, &row).await?;
        state.metrics.download("redirect");
        let location =
            HeaderValue::from_str(&target).map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                ),
            ],
        )
            .into_response());
    }
    // If-Range with another validator (or a date: blobs have no Last-Modified): the client's
    // copy is stale, send everything.
    let current = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let wanted = if current {
        range::wanted(headers.get(header::RANGE), size)
    } else {
        Wanted::Full
    };
    let (status, bytes, outcome) = match wanted {
        // A range asked for with a stale If-Range: the whole blob instead.
        Wanted::Full if !current && headers.contains_key(header::RANGE) => {
            (StatusCode::OK, 0..size, "if_range_stale")
        }
        Wanted::Full => (StatusCode::OK, 0..size, "full"),
        Wanted::Part(bytes) => (StatusCode::PARTIAL_CONTENT, bytes, "partial"),
        Wanted::Unsatisfiable => {
            state.metrics.download("unsatisfiable");
            return Err(ApiError::RangeNotSatisfiable(size));
        }
    };
    state.metrics.download(outcome);
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        let sent = state.metrics.download_bytes.clone();
        let stream = state.store.read(&row.storage_key, bytes.clone()).await?;
        Body::from_stream(stream.inspect_ok(move |chunk| {
            sent.inc_by(chunk.len() as u64);
        }))
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    cache_headers(h, &etag, access);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.end - bytes.start),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", bytes.start, bytes.end - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// The validator and caching headers every successful blob response carries.
fn cache_headers(h: &mut HeaderMap, etag: &str, access: Access) {
    if let Ok(etag) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(value) = HeaderValue::from_str(&BlobService::cache_control(access)) {
        h.insert(header::CACHE_CONTROL, value);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// Whether an `If-None-Match` value lists `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn lists_etag(value: &HeaderValue, etag: &str) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

/// Mints a signed, expiring link to a blob, which anyone holding it can download (and a CDN
/// can cache by blob id). Restarts the blob's retention.
#[utoipa::path(
    post, path = "/v1/blobs/{blob_id}/links", tag = "blobs",
    params(("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob")),
    request_body(content = Option<LinkRequest>, content_type = "application/json", description = "Optional; `{}` or no body for the default lifetime"),
    responses(
        (status = 201, description = "The link", body = SignedLink),
        (status = 400, description = "`invalid-expiry`: expires_in is 0 or above the maximum", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such blob", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`blob-expired`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_link(
    State(state): State<AppState>,
    _auth: Authenticated,
    Path(blob_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let request: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest("invalid-json", format!("invalid JSON body: {e}")))?
    };
    let (query, expires) = state.blobs.mint_link(&blob_id, request.expires_in).await?;
    let base = state
        .settings
        .blobs
        .cdn_base_url
        .as_deref()
        .or(state.settings.public_url.as_deref())
        .unwrap_or("")
        .trim_end_matches('/');
    let link = SignedLink {
        url: format!("{base}/v1/blobs/{blob_id}?{query}"),
        expires_at: sealpost_auth::rfc3339(expires),
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(link),
    )
        .into_response())
}

/// The check a caching proxy makes before serving a request from its cache (nginx
/// `auth_request`): 204 when the request's link or bearer token may read the blob now and the
/// blob is live; otherwise 401 or 403, with `Sealpost-Refusal` naming the precise problem code
/// (a proxy forwards the original request to learn the full answer). Never sends blob bytes.
#[utoipa::path(
    get, path = "/v1/blobs/{blob_id}/authorize", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "Lowercase hex SHA-256 of the blob"),
        LinkParams,
    ),
    responses(
        (status = 204, description = "May read the blob", headers(("Sealpost-Cache-Control" = String, description = "The Cache-Control a download with these credentials gets (a link: no longer than it is valid); a caching proxy sends it to the client"))),
        (status = 401, description = "No link and no valid bearer token", body = Problem, content_type = "application/problem+json",
            headers(("Sealpost-Refusal" = String, description = "The problem code"))),
        (status = 403, description = "Anything else: bad or expired link, unknown or expired blob", body = Problem, content_type = "application/problem+json",
            headers(("Sealpost-Refusal" = String, description = "The problem code: link-invalid, link-expired, not-found, blob-expired"))),
    ),
    security(("bearer" = []), ())
)]
pub async fn authorize_blob(
    State(state): State<AppState>,
    Path(blob_id): Path<String>,
    link: LinkParams,
    headers: HeaderMap,
) -> Response {
    let check = async {
        let access = state.blobs.authorize(&blob_id, &headers, &link).await?;
        state.blobs.live(&blob_id).await.map(|_| access)
    };
    let e = match check.await {
        Ok(access) => {
            state.metrics.authorization("allowed");
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(&BlobService::cache_control(access)) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static("sealpost-cache-control"), value);
            }
            return response;
        }
        Err(e) => e,
    };
    let (status, code) = e.status_code();
    if status >= 500 {
        return e.into_response();
    }
    state.metrics.authorization("refused");
    let mut problem = e.to_problem();
    if status != 401 {
        problem.status = 403;
    }
    let mut response = problem.into_response();
    response.headers_mut().insert(
        HeaderName::from_static("sealpost-refusal"),
        HeaderValue::from_static(code),
    );
    response
}
