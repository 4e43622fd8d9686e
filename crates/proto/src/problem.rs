use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of problem details bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body (`application/problem+json`), sent with every 4xx and 5xx.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` or an IANA-registered type).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Stable machine-readable kebab-case code, e.g. `mismatching-upload-offset`.
    #[schema(example = "mismatching-upload-offset")]
    pub code: String,
    /// Human-readable explanation of this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The offset the server expected (offset conflicts only).
    #[serde(rename = "expected-offset", skip_serializing_if = "Option::is_none")]
    pub expected_offset: Option<u64>,
    /// The offset the request carried (offset conflicts only).
    #[serde(rename = "provided-offset", skip_serializing_if = "Option::is_none")]
    pub provided_offset: Option<u64>,
}

impl Problem {
    /// A problem of type `about:blank` with the status's reason phrase as title.
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: "about:blank".to_owned(),
            title: reason(status).to_owned(),
            status,
            code: code.to_owned(),
            detail: Some(detail.into()),
            expected_offset: None,
            provided_offset: None,
        }
    }

    /// Sets an IANA-registered problem type (`https://iana.org/assignments/http-problem-types#…`).
    pub fn with_iana_type(mut self, name: &str) -> Self {
        self.type_uri = format!("https://iana.org/assignments/http-problem-types#{name}");
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        460 => "Checksum Mismatch",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // A problem is about one request: never to be stored by a CDN or browser cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
