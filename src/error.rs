//! The one place server errors become HTTP responses: each variant has a status and a stable
//! kebab-case code; internal details are logged, never sent.

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use sealpost_auth::AuthError;
use sealpost_db::DbError;
use sealpost_proto::Problem;
use sealpost_store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Authentication or account errors.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Group errors.
    #[error(transparent)]
    Group(#[from] sealpost_chat::GroupError),
    /// Key-directory errors.
    #[error(transparent)]
    Keys(#[from] sealpost_chat::KeyError),
    /// A malformed header, body or parameter.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// The route exists but not with this method.
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    /// No such resource for this account (also for other accounts' uploads).
    #[error("{0}")]
    NotFound(&'static str),
    /// The upload expired or was terminated.
    #[error("the upload expired; start a new one")]
    UploadExpired,
    /// `Upload-Offset` does not match the stored offset.
    #[error("Upload-Offset {provided} does not match the upload's offset {expected}")]
    OffsetMismatch {
        /// The stored offset.
        expected: u64,
        /// The request's offset.
        provided: u64,
    },
    /// A declared length contradicts an earlier one or the data.
    #[error("{0}")]
    InconsistentLength(String),
    /// The upload is already complete.
    #[error("the upload is already complete")]
    CompletedUpload,
    /// A tus final upload takes no appends: it is the concatenation of its partial uploads.
    #[error("a final upload is the concatenation of its partial uploads and takes no PATCH")]
    FinalUpload,
    /// A final upload is reading this partial upload.
    #[error(
        "a final upload is joining this partial upload; it is deleted when the final upload is \
         stored"
    )]
    PartInUse,
    /// The upload failed earlier (e.g. its SHA-256 did not match).
    #[error("the upload failed earlier ({0}); start a new one")]
    UploadFailed(String),
    /// A newer request took the upload over while this one was streaming.
    #[error("a newer request took this upload over")]
    Superseded,
    /// Concurrent requests wrote different bytes at one offset; the upload failed.
    #[error(
        "two requests wrote different bytes at the same offset of this upload, so it cannot be \
         completed; nothing was stored, start a new upload"
    )]
    UploadConflict,
    /// The blob outlived its retention and was deleted.
    #[error(
        "this blob expired and was deleted; ask the sender to upload it again (the same bytes \
         revive it)"
    )]
    BlobExpired,
    /// A signed link is incomplete, altered, forged or signed by a retired key.
    #[error("this link is not valid: it was altered, or its signing key was retired")]
    LinkInvalid,
    /// A genuine signed link past its expiry.
    #[error("this link has expired; ask for a new one")]
    LinkExpired,
    /// The requested byte range lies outside the blob of this size.
    #[error("the requested range is outside the blob's {0} bytes")]
    RangeNotSatisfiable(u64),
    /// The protocol version is missing or unsupported.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The body is larger than allowed.
    #[error("{1}")]
    TooLarge(&'static str, String),
    /// The request's media type is not accepted here.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The per-request checksum did not match; nothing from this request was kept.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// The upload's bytes do not hash to the declared `sha256`; the upload failed.
    #[error("the uploaded bytes do not match the declared sha256 metadata; nothing was stored")]
    Sha256Mismatch,
    /// An upload body slower than `uploads.min_transfer_rate`; what arrived was kept.
    #[error("{0}")]
    TooSlow(String),
    /// Per-account limits on unfinished uploads and streaming requests.
    #[error("{1}")]
    Quota(&'static str, String),
    /// The checksum algorithm is not supported.
    #[error("{0}")]
    UnsupportedChecksum(String),
    /// The node is at its concurrent-transfer limit or shutting down.
    #[error("{1}")]
    Unavailable(&'static str, String),
    /// The metadata database failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Store(StoreError),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// Status and stable code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::Auth(e) => e.status_code(),
            Self::Group(e) => e.status_code(),
            Self::Keys(e) => e.status_code(),
            Self::BadRequest(code, _) => (400, code),
            Self::NotFound(_) => (404, "not-found"),
            Self::MethodNotAllowed => (405, "method-not-allowed"),
            Self::UploadExpired => (410, "upload-expired"),
            Self::OffsetMismatch { .. } => (409, "mismatching-upload-offset"),
            Self::InconsistentLength(_) => (400, "inconsistent-upload-length"),
            Self::CompletedUpload => (400, "completed-upload"),
            Self::FinalUpload => (403, "final-upload"),
            Self::PartInUse => (409, "partial-upload-in-use"),
            Self::UploadFailed(_) => (400, "upload-failed"),
            Self::Superseded => (409, "upload-superseded"),
            Self::UploadConflict => (409, "upload-conflict"),
            Self::BlobExpired => (410, "blob-expired"),
            Self::LinkInvalid => (403, "link-invalid"),
            Self::LinkExpired => (410, "link-expired"),
            Self::RangeNotSatisfiable(_) => (416, "range-not-satisfiable"),
            Self::UnsupportedVersion(_) => (412, "unsupported-version"),
            Self::TooLarge(code, _) => (413, code),
            Self::UnsupportedMediaType(_) => (415, "unsupported-media-type"),
            Self::ChecksumMismatch(_) => (460, "checksum-mismatch"),
            Self::Sha256Mismatch => (460, "sha256-mismatch"),
            Self::TooSlow(_) => (408, "transfer-too-slow"),
            Self::Quota(code, _) => (429, code),
            Self::UnsupportedChecksum(_) => (400, "unsupported-checksum-algorithm"),
            Self::Unavailable(code, _) => (503, code),
            Self::Db(_) | Self::Store(_) | Self::Internal(_) => (500, "internal"),
        }
    }

    /// The problem details body.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Auth(e) => return e.to_problem(),
            Self::Group(e) => return e.to_problem(),
            Self::Keys(e) => return e.to_problem(),
            _ => {}
        }
        let (status, code) = self.status_code();
        if status >= 500 && !matches!(self, Self::Unavailable(..)) {
            tracing::error!(error = %self, "request failed");
            return Problem::new(
                status,
                code,
                "internal error; the server logged the details",
            );
        }
        let problem = Problem::new(status, code, self.to_string());
        match self {
            Self::OffsetMismatch { expected, provided } => Problem {
                expected_offset: Some(*expected),
                provided_offset: Some(*provided),
                ..problem.with_iana_type("mismatching-upload-offset")
            },
            Self::InconsistentLength(_) => problem.with_iana_type("inconsistent-upload-length"),
            Self::CompletedUpload => problem.with_iana_type("completed-upload"),
            _ => problem,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Auth(e) = self {
            return e.into_response();
        }
        let mut response = self.to_problem().into_response();
        response
            .extensions_mut()
            .insert(ProblemCode(self.status_code().1));
        let headers = response.headers_mut();
        match &self {
            Self::OffsetMismatch { expected, .. } => {
                headers.insert(
                    HeaderName::from_static("upload-offset"),
                    HeaderValue::from(*expected),
                );
            }
            Self::RangeNotSatisfiable(size) => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(axum::http::header::CONTENT_RANGE, value);
                }
            }
            Self::UnsupportedVersion(_) => {
                headers.insert(
                    HeaderName::from_static("tus-version"),
                    HeaderValue::from_static("1.0.0"),
                );
            }
            Self::Group(e) => {
                if let Some(seconds) = e.retry_after() {
                    headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            Self::Keys(e) => {
                if let Some(seconds) = e.retry_after() {
                    headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            Self::Unavailable(..) | Self::Quota("too-many-transfers", _) => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from_static("5"),
                );
            }
            _ => {}
        }
        response
    }
}

/// The stable code of an error response, for middleware that adds headers by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => Self::Unavailable(
                "upload-busy",
                "an earlier request still holds this upload; retry shortly".into(),
            ),
            other => Self::Store(other),
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
