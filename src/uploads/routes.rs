//! HTTP handlers for `/v1/uploads` (both protocols) with their OpenAPI descriptions.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sealpost_auth::{Authenticated, rfc3339, unix_now};
use sealpost_db::UploadRow;
use sealpost_proto::{Problem, UploadStatus};

use super::api_doc::{AppendHeaders, BinaryBody, CreateHeaders, ProtocolHeaders};
use super::protocol::{
    Concat, DRAFT_CONTENT_TYPE, Draft, Protocol, TUS_CHECKSUM_ALGORITHMS, TUS_CONTENT_TYPE,
    TUS_EXTENSIONS, TUS_VERSION, content_type, parse_checksum, parse_concat, parse_metadata,
    u64_header, upload_id_is_valid,
};
use super::service::{AppendSpec, CreateSpec, UploadView, expires, is_complete, is_expired};
use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::http::client::ClientAddr;
use crate::http::interim::ClientConn;
use crate::state::AppState;

/// Header carrying the blob id of a completed upload.
pub const BLOB_ID_HEADER: &str = "sealpost-blob-id";

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0)))
}

fn valid_upload_id(id: &str) -> ApiResult<()> {
    if upload_id_is_valid(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such upload"))
    }
}

impl AppState {
    fn location(&self, id: &str) -> String {
        let base = self
            .settings
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/');
        format!("{base}/v1/uploads/{id}")
    }

    /// `Upload-Concat` as tus sends it: `partial`, or `final;` and the parts' URLs.
    fn concat_header(&self, stored: &str) -> String {
        match stored.strip_prefix("final;") {
            Some(ids) => {
                let urls: Vec<String> = ids.split(' ').map(|id| self.location(id)).collect();
                format!("final;{}", urls.join(" "))
            }
            None => stored.to_owned(),
        }
    }

    /// `Upload-Limit`: the size limit and the upload's remaining lifetime, under the key
    /// `lifetime_key` (see [`Draft::lifetime_key`]).
    fn upload_limit(&self, row: Option<&UploadRow>, lifetime_key: &str) -> String {
        let lifetime = row.map_or(self.settings.uploads.ttl.as_secs(), |r| {
            u64::try_from(r.expires_at - unix_now()).unwrap_or(0)
        });
        format!(
            "max-size={}, {lifetime_key}={lifetime}",
            self.settings.uploads.max_size
        )
    }

    /// Headers describing an upload's state in `protocol`'s terms.
    fn state_headers(&self, protocol: Protocol, row: &UploadRow) -> HeaderMap {
        let mut h = HeaderMap::new();
        set(&mut h, "upload-offset", row.offset());
        match (protocol, row.length()) {
            (_, Some(l)) => set(&mut h, "upload-length", l),
            (Protocol::Tus, None) => set(&mut h, "upload-defer-length", 1),
            (Protocol::Draft(_), None) => {}
        }
        match protocol {
            Protocol::Tus => {
                if expires(row) {
                    set(&mut h, "upload-expires", http_date(row.expires_at));
                }
                if let Some(meta) = &row.metadata {
                    set(&mut h, "upload-metadata", meta);
                }
                if let Some(concat) = &row.concat {
                    set(&mut h, "upload-concat", self.concat_header(concat));
                }
            }
            Protocol::Draft(draft) => {
                draft.set_complete(&mut h, is_complete(row));
                set(
                    &mut h,
                    "upload-limit",
                    self.upload_limit(Some(row), draft.lifetime_key()),
                );
            }
        }
        if let Some(blob) = &row.blob_id {
            set(&mut h, BLOB_ID_HEADER, blob);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h
    }
}

fn status_body(row: &UploadRow) -> UploadStatus {
    UploadStatus {
        id: row.id.clone(),
        state: row.upload_state(),
        offset: row.offset(),
        length: row.length(),
        kind: row.upload_kind(),
        filename: row.filename.clone(),
        content_type: row.content_type.clone(),
        blob_id: row.blob_id.clone(),
        error: row.error.clone(),
        created_at: rfc3339(row.created_at),
        expires_at: expires(row).then(|| rfc3339(row.expires_at)),
    }
}

/// Protocol headers on every response of the upload routes, errors included: `Tus-Resumable`
/// for tus; for the draft, its interop version echoed and, from version 7, whether the upload
/// is complete (an error leaves it incomplete).
pub async fn protocol_headers(request: Request<Body>, next: Next) -> Response {
    let asked_draft = request
        .headers()
        .contains_key("upload-draft-interop-version");
    let draft = Draft::requested(request.headers());
    let mut response = next.run(request).await;
    let failed = response.status().is_client_error() || response.status().is_server_error();
    // Only an append to a complete upload finds it complete.
    let complete =
        response.extensions().get::<ProblemCode>() == Some(&ProblemCode("completed-upload"));
    let headers = response.headers_mut();
    match draft {
        Some(draft) => {
            set(headers, "upload-draft-interop-version", draft.version());
            if draft.completeness_on_every_response() && failed {
                draft.set_complete(headers, complete);
            }
        }
        None if !asked_draft => set(headers, "tus-resumable", TUS_VERSION),
        None => {}
    }
    response
}

/// Advertises the protocols, extensions and limits.
#[utoipa::path(
    options, path = "/v1/uploads", tag = "uploads",
    responses((status = 204, description = "Capabilities", headers(
        ("Tus-Version" = String, description = "Supported tus versions: 1.0.0"),
        ("Tus-Extension" = String, description = "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination"),
        ("Tus-Max-Size" = u64, description = "Largest upload in bytes"),
        ("Tus-Checksum-Algorithm" = String, description = "sha1,sha256"),
        ("Upload-Limit" = String, description = "Draft limits: max-size, max-age"),
        ("Accept-Patch" = String, description = "application/offset+octet-stream, application/partial-upload"),
    )))
)]
pub async fn options_uploads(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    set(&mut h, "tus-version", TUS_VERSION);
    set(&mut h, "tus-extension", TUS_EXTENSIONS);
    set(&mut h, "tus-max-size", state.settings.uploads.max_size);
    set(&mut h, "tus-checksum-algorithm", TUS_CHECKSUM_ALGORITHMS);
    let lifetime_key = Draft::requested(&headers).map_or("max-age", Draft::lifetime_key);
    set(
        &mut h,
        "upload-limit",
        state.upload_limit(None, lifetime_key),
    );
    set(
        &mut h,
        "accept-patch",
        format!("{TUS_CONTENT_TYPE}, {DRAFT_CONTENT_TYPE}"),
    );
    (StatusCode::NO_CONTENT, h).into_response()
}

/// Creates an upload, optionally with its first (or only) bytes.
///
/// tus: `Upload-Length` or `Upload-Defer-Length: 1`; a body with
/// `Content-Type: application/offset+octet-stream` is the creation-with-upload extension.
/// Draft: `Upload-Draft-Interop-Version` and `Upload-Complete`; the server sends
/// `104 Upload Resumption Supported` with the `Location` before it reads the body (not through a
/// proxy that cannot pass it on: see `proxies_forward_interim`). An empty body with
/// `Upload-Complete: ?0` is careful creation.
#[utoipa::path(
    post, path = "/v1/uploads", tag = "uploads",
    params(ProtocolHeaders, CreateHeaders),
    request_body(description = "Optional first bytes (tus: application/offset+octet-stream; draft: any type)", content(
        (BinaryBody = "application/offset+octet-stream"),
        (BinaryBody = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Created", body = UploadStatus, headers(
            ("Location" = String, description = "The upload's URL"),
            ("Upload-Offset" = u64, description = "Bytes stored"),
            ("Upload-Expires" = String, description = "When an unfinished upload expires (tus)"),
            ("Sealpost-Blob-Id" = String, description = "Blob id when the upload completed"),
        )),
        (status = 200, description = "Draft: created and complete in one request", body = UploadStatus),
        (status = 400, description = "Bad headers or metadata", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Unsupported protocol version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body with the wrong media type", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was slower than uploads.min_transfer_rate; what arrived was kept (transfer-too-slow)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many unfinished uploads or stored blobs, the account streams its share of the node's uploads already, or made too many upload requests (rate-limited, Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "Checksum mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Busy or shutting down; resume later", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_upload(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
    client: ClientAddr,
    auth: Authenticated,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    state.uploads.admit(&auth.account_id)?;
    let protocol = Protocol::detect(&headers)?;
    let metadata = parse_metadata(&headers)?;
    let checksum = parse_checksum(&headers)?;
    let content_length = u64_header(&headers, "content-length")?;
    let mut length = u64_header(&headers, "upload-length")?;
    let concat = match protocol {
        Protocol::Tus => parse_concat(&headers, state.settings.uploads.max_concat_parts)?,
        Protocol::Draft(_) => None,
    };
    let has_body = content_length != Some(0) && !http_body::Body::is_end_stream(&body);
    if let Some(Concat::Final(parts)) = concat {
        return create_final(&state, &auth, &headers, parts, metadata, has_body).await;
    }
    let complete = match protocol {
        Protocol::Tus => {
            let deferred = headers
                .get("upload-defer-length")
                .map(|v| v.as_bytes() == b"1");
            match (length, deferred) {
                (Some(_), Some(_)) | (None, Some(false)) => {
                    return Err(ApiError::BadRequest(
                        "invalid-header",
                        "send either Upload-Length or Upload-Defer-Length: 1".into(),
                    ));
                }
                (None, None) => {
                    return Err(ApiError::BadRequest(
                        "invalid-header",
                        "Upload-Length or Upload-Defer-Length: 1 is required".into(),
                    ));
                }
                _ => {}
            }
            None
        }
        Protocol::Draft(draft) => {
            let complete = draft.complete(&headers)?.ok_or_else(|| {
                ApiError::BadRequest(
                    "invalid-header",
                    "Upload-Complete (Upload-Incomplete in interop version 3) is required to \
                     create an upload"
                        .into(),
                )
            })?;
            if complete && let Some(cl) = content_length {
                if length.is_some_and(|l| l != cl) {
                    return Err(ApiError::InconsistentLength(format!(
                        "Upload-Length {length:?} differs from Content-Length {cl}"
                    )));
                }
                length = Some(cl);
            }
            Some(complete)
        }
    };
    if protocol == Protocol::Tus
        && has_body
        && content_type(&headers).as_deref() != Some(TUS_CONTENT_TYPE)
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a creation body must be {TUS_CONTENT_TYPE}"
        )));
    }
    let budget = length.unwrap_or(state.settings.uploads.max_size);
    if content_length.is_some_and(|cl| cl > budget) {
        return Err(ApiError::TooLarge(
            "upload-too-large",
            format!("the body is larger than {budget} bytes"),
        ));
    }
    let row = state
        .uploads
        .create(
            &auth.account_id,
            CreateSpec {
                length,
                metadata,
                concat,
            },
        )
        .await?;
    let location = state.location(&row.id);
    // Only on HTTP/1.1 (RFC 9110 forbids 1xx to HTTP/1.0), and through a proxy only when it
    // passes 1xx on: nginx would take the 104 for the final response.
    if let Protocol::Draft(draft) = protocol
        && version == Version::HTTP_11
        && (!client.proxied || state.settings.proxies_forward_interim)
    {
        let interim = [
            ("Location", location.clone()),
            ("Upload-Draft-Interop-Version", draft.version().to_string()),
            (
                "Upload-Limit",
                state.upload_limit(Some(&row), draft.lifetime_key()),
            ),
        ];
        if let Err(e) = conn
            .send_interim(104, "Upload Resumption Supported", &interim)
            .await
        {
            tracing::debug!(error = %e, "could not send 104");
        }
    }
    let row = if has_body || complete == Some(true) {
        let spec = AppendSpec {
            offset: 0,
            body,
            content_length,
            declared_length: None,
            complete,
            checksum,
        };
        match state.uploads.append(&auth.account_id, &row.id, spec).await {
            Ok(row) => row,
            Err(e) => {
                // The upload exists: tell the client where, so it can resume or delete it.
                let mut response = e.into_response();
                set(response.headers_mut(), "location", &location);
                if let Ok(current) = state.uploads.owned(&auth.account_id, &row.id).await {
                    set(response.headers_mut(), "upload-offset", current.offset());
                }
                return Ok(response);
            }
        }
    } else {
        row
    };
    let mut h = state.state_headers(protocol, &row);
    set(&mut h, "location", &location);
    Ok((StatusCode::CREATED, h, axum::Json(status_body(&row))).into_response())
}

/// tus concatenation: creates the final upload that `parts` make, in order, and responds as a
/// creation does once its blob is stored.
async fn create_final(
    state: &AppState,
    auth: &Authenticated,
    headers: &HeaderMap,
    parts: Vec<String>,
    metadata: super::protocol::Metadata,
    has_body: bool,
) -> ApiResult<Response> {
    if headers.contains_key("upload-length") || headers.contains_key("upload-defer-length") {
        return Err(ApiError::BadRequest(
            "invalid-concatenation",
            "a final upload's length is the sum of its parts: send no Upload-Length".into(),
        ));
    }
    if has_body || headers.contains_key("upload-checksum") {
        return Err(ApiError::BadRequest(
            "invalid-concatenation",
            "a final upload takes no body and no Upload-Checksum: its bytes are its partial \
             uploads'"
                .into(),
        ));
    }
    let row = state
        .uploads
        .concatenate(&auth.account_id, parts, metadata)
        .await?;
    let mut h = state.state_headers(Protocol::Tus, &row);
    set(&mut h, "location", state.location(&row.id));
    Ok((StatusCode::CREATED, h, axum::Json(status_body(&row))).into_response())
}

/// Offset retrieval. Stops any request still streaming into the upload first, so the offset
/// returned is durable and the next append at it is accepted.
#[utoipa::path(
    head, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id"), ProtocolHeaders),
    responses(
        (status = 200, description = "tus: upload state", headers(
            ("Upload-Offset" = u64, description = "Bytes durably stored"),
            ("Upload-Length" = u64, description = "Declared length, if known"),
            ("Upload-Defer-Length" = u8, description = "1 while the length is deferred (tus)"),
            ("Upload-Metadata" = String, description = "As sent on creation (tus)"),
            ("Upload-Expires" = String, description = "Expiry of an unfinished upload (tus)"),
            ("Sealpost-Blob-Id" = String, description = "Blob id once complete"),
        )),
        (status = 204, description = "Draft: upload state (Upload-Offset, Upload-Complete, Upload-Length, Upload-Limit)"),
        (status = 400, description = "Malformed header"),
        (status = 401, description = "Not authenticated"),
        (status = 429, description = "Too many upload requests (rate-limited, Retry-After)"),
        (status = 404, description = "No such upload for this account"),
        (status = 409, description = "A newer request took the upload over"),
        (status = 410, description = "The upload expired"),
        (status = 412, description = "Unsupported protocol version"),
    ),
    security(("bearer" = []))
)]
pub async fn head_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.uploads.admit(&auth.account_id)?;
    valid_upload_id(&id)?;
    let protocol = Protocol::detect(&headers)?;
    let row = state
        .uploads
        .head(&auth.account_id, &id, protocol == Protocol::Tus)
        .await?;
    let status = if protocol == Protocol::Tus {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    Ok((status, state.state_headers(protocol, &row)).into_response())
}

/// The upload's status as JSON (no protocol headers needed). With
/// `Upload-Draft-Interop-Version` it carries the draft's state headers too, and from version 9
/// (where GET is an alternative to HEAD) it is offset retrieval: it first stops any request
/// still streaming into the upload.
#[utoipa::path(
    get, path = "/v1/uploads/{id}", tag = "uploads",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Upload-Draft-Interop-Version" = Option<u32>, Header, description = "Optional: answer as the draft's offset retrieval too", minimum = 3, maximum = 9),
    ),
    responses(
        (status = 200, description = "Upload status (with the draft, its state headers too: Upload-Offset, Upload-Complete, Upload-Length, Upload-Limit)", body = UploadStatus),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many upload requests (rate-limited, Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload for this account", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The upload expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.uploads.admit(&auth.account_id)?;
    valid_upload_id(&id)?;
    let draft = Draft::requested(&headers);
    let row = if draft.is_some_and(Draft::gets_offset) {
        state.uploads.head(&auth.account_id, &id, false).await?
    } else {
        let row = state.uploads.owned(&auth.account_id, &id).await?;
        if is_expired(&row, unix_now()) {
            return Err(ApiError::UploadExpired);
        }
        row
    };
    let mut h = draft.map_or_else(HeaderMap::new, |d| {
        state.state_headers(Protocol::Draft(d), &row)
    });
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((h, axum::Json(status_body(&row))).into_response())
}

/// Appends bytes at `Upload-Offset`.
///
/// tus: `Content-Type: application/offset+octet-stream`; the upload completes when its length is
/// reached. Draft: `Content-Type: application/partial-upload` and `Upload-Complete`. A newer
/// request for the same upload takes over from one still streaming, which keeps what it
/// received. Bytes are committed durably every few MiB, so an interrupted request loses at most
/// the uncommitted tail (none when `Upload-Checksum` is sent: then all or nothing).
#[utoipa::path(
    patch, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id"), ProtocolHeaders, AppendHeaders),
    request_body(content(
        (BinaryBody = "application/offset+octet-stream"),
        (BinaryBody = "application/partial-upload"),
    )),
    responses(
        (status = 204, description = "Bytes stored", headers(
            ("Upload-Offset" = u64, description = "New offset"),
            ("Upload-Expires" = String, description = "Expiry (tus)"),
            ("Sealpost-Blob-Id" = String, description = "Blob id if this completed the upload (tus)"),
        )),
        (status = 200, description = "Draft: the upload is complete", body = UploadStatus),
        (status = 400, description = "Bad headers, inconsistent length, completed or failed upload", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload for this account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Upload-Offset mismatch (expected-offset, provided-offset)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The upload expired", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Unsupported protocol version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Past the upload's length or the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was slower than uploads.min_transfer_rate; what arrived was kept (transfer-too-slow)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Wrong Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The account streams its share of the node's uploads already (too-many-transfers), or made too many upload requests (rate-limited, Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "Checksum or SHA-256 mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Busy or shutting down; resume later", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn patch_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    state.uploads.admit(&auth.account_id)?;
    valid_upload_id(&id)?;
    let protocol = Protocol::detect(&headers)?;
    let expected_type = match protocol {
        Protocol::Tus => Some(TUS_CONTENT_TYPE),
        Protocol::Draft(draft) => draft.append_content_type(),
    };
    if let Some(expected) = expected_type
        && content_type(&headers).as_deref() != Some(expected)
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "PATCH bodies must be {expected}"
        )));
    }
    let offset = u64_header(&headers, "upload-offset")?.ok_or_else(|| {
        ApiError::BadRequest("invalid-header", "Upload-Offset is required".into())
    })?;
    let complete = match protocol {
        Protocol::Tus => None,
        Protocol::Draft(draft) => Some(draft.append_complete(&headers)?),
    };
    let spec = AppendSpec {
        offset,
        content_length: u64_header(&headers, "content-length")?,
        declared_length: u64_header(&headers, "upload-length")?,
        complete,
        checksum: parse_checksum(&headers)?,
        body,
    };
    let row = state.uploads.append(&auth.account_id, &id, spec).await?;
    let h = state.state_headers(protocol, &row);
    Ok(match protocol {
        Protocol::Draft(_) if is_complete(&row) => {
            (StatusCode::OK, h, axum::Json(status_body(&row))).into_response()
        }
        Protocol::Draft(draft) => (draft.incomplete_append_status(), h).into_response(),
        Protocol::Tus => (StatusCode::NO_CONTENT, h).into_response(),
    })
}

/// Terminates an upload: stops any request streaming into it and deletes its bytes.
#[utoipa::path(
    delete, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id"), ProtocolHeaders),
    responses(
        (status = 204, description = "Terminated"),
        (status = 400, description = "Malformed header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many upload requests (rate-limited, Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload for this account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A newer request took the upload over", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Unsupported protocol version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    state.uploads.admit(&auth.account_id)?;
    valid_upload_id(&id)?;
    Protocol::detect(&headers)?;
    state.uploads.terminate(&auth.account_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// tus `X-HTTP-Method-Override`: a `POST` whose `X-HTTP-Method-Override` says `PATCH` or `DELETE`
/// is that request, for clients behind proxies that drop those methods (tus-js-client's
/// `overridePatchMethod`).
#[utoipa::path(
    post, path = "/v1/uploads/{id}", tag = "uploads",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("X-HTTP-Method-Override" = String, Header, description = "`PATCH` or `DELETE`"),
        ProtocolHeaders, AppendHeaders,
    ),
    request_body(content(
        (BinaryBody = "application/offset+octet-stream"),
        (BinaryBody = "application/partial-upload"),
    )),
    responses(
        (status = 204, description = "As the overridden method: bytes stored (PATCH) or terminated (DELETE)"),
        (status = 200, description = "Draft PATCH: the upload is complete", body = UploadStatus),
        (status = 400, description = "No override, or one other than PATCH or DELETE; else as the overridden method", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload for this account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Upload-Offset mismatch or taken over", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The upload expired", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Unsupported protocol version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Past the upload's length or the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was slower than uploads.min_transfer_rate; what arrived was kept (transfer-too-slow)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Wrong Content-Type", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The account streams its share of the node's uploads already (too-many-transfers), or made too many upload requests (rate-limited, Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "Checksum or SHA-256 mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Busy or shutting down; resume later", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn override_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let method = headers
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_uppercase());
    match method.as_deref() {
        Some("PATCH") => patch_upload(State(state), auth, Path(id), headers, body).await,
        Some("DELETE") => delete_upload(State(state), auth, Path(id), headers)
            .await
            .map(IntoResponse::into_response),
        _ => Err(ApiError::BadRequest(
            "invalid-method-override",
            "POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE".into(),
        )),
    }
}
