//! Header grammar of the two upload protocols spoken on `/v1/uploads`: tus 1.0.0 and the IETF
//! resumable-upload draft (selected per request by `Upload-Draft-Interop-Version`).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use sealpost_proto::UploadKind;

use crate::error::{ApiError, ApiResult};

/// The tus protocol version served.
pub const TUS_VERSION: &str = "1.0.0";
/// tus extensions served.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation";
/// tus checksum algorithms served.
pub const TUS_CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The oldest draft interop version served: 3, draft-ietf-httpbis-resumable-upload-01, which
/// Apple's `URLSession` speaks on iOS 17 and macOS 14.
pub const DRAFT_OLDEST: u32 = 3;
/// The newest draft interop version served: 9, draft-ietf-httpbis-resumable-upload-12.
pub const DRAFT_NEWEST: u32 = 9;
/// The media type of tus PATCH bodies.
pub const TUS_CONTENT_TYPE: &str = "application/offset+octet-stream";
/// The media type of draft append bodies.
pub const DRAFT_CONTENT_TYPE: &str = "application/partial-upload";

/// Which protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// tus 1.0.0.
    Tus,
    /// The IETF draft at this interop version.
    Draft(Draft),
}

/// An interop version of the IETF draft, and what differs between versions (the table in
/// docs/uploads.md). Each request is answered in the version it carries: an upload created at
/// one version can be resumed at another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draft(u32);

impl Draft {
    /// The version number.
    pub fn version(self) -> u32 {
        self.0
    }

    /// Reads the completeness of a request: `Upload-Incomplete` (`?1` = more to come) in
    /// version 3, `Upload-Complete` (`?1` = this is the end) from version 4.
    pub fn complete(self, headers: &HeaderMap) -> ApiResult<Option<bool>> {
        if self.0 == 3 {
            Ok(sf_bool(headers, "upload-incomplete")?.map(|incomplete| !incomplete))
        } else {
            sf_bool(headers, "upload-complete")
        }
    }

    /// The completeness of an append: through version 6 a missing header means the append
    /// completes the upload; from version 7 the header is required.
    pub fn append_complete(self, headers: &HeaderMap) -> ApiResult<bool> {
        match self.complete(headers)? {
            Some(complete) => Ok(complete),
            None if self.0 <= 6 => Ok(true),
            None => Err(ApiError::BadRequest(
                "invalid-header",
                "Upload-Complete is required".into(),
            )),
        }
    }

    /// Writes the completeness header of this version.
    pub fn set_complete(self, h: &mut HeaderMap, complete: bool) {
        let (name, value) = match (self.0, complete) {
            (3, done) => ("upload-incomplete", !done),
            (_, done) => ("upload-complete", done),
        };
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(if value { "?1" } else { "?0" }),
        );
    }

    /// The media type appends must have: `application/partial-upload` from version 6; none
    /// (any) before.
    pub fn append_content_type(self) -> Option<&'static str> {
        (self.0 >= 6).then_some(DRAFT_CONTENT_TYPE)
    }

    /// The status of an append that leaves the upload incomplete: 201 through version 6 (which
    /// require it), 204 from version 7.
    pub fn incomplete_append_status(self) -> StatusCode {
        if self.0 <= 6 {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        }
    }

    /// The `Upload-Limit` key for the upload's remaining lifetime in seconds: `expires` in
    /// version 6, `max-age` from version 7 (clients ignore keys they do not know).
    pub fn lifetime_key(self) -> &'static str {
        if self.0 <= 6 { "expires" } else { "max-age" }
    }

    /// Whether every response about an append, errors included, says whether the upload is
    /// complete (version 7 on).
    pub fn completeness_on_every_response(self) -> bool {
        self.0 >= 7
    }

    /// Whether GET is offset retrieval, like HEAD (version 9 on).
    pub fn gets_offset(self) -> bool {
        self.0 >= 9
    }

    /// The version a request names in `Upload-Draft-Interop-Version`, if it is one served.
    pub fn requested(headers: &HeaderMap) -> Option<Self> {
        let v = headers.get("upload-draft-interop-version")?.to_str().ok()?;
        v.trim()
            .parse()
            .ok()
            .filter(|n| (DRAFT_OLDEST..=DRAFT_NEWEST).contains(n))
            .map(Self)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::trim).map_err(|_| {
                ApiError::BadRequest("invalid-header", format!("{name} is not visible ASCII"))
            })
        })
        .transpose()
}

/// Parses a non-negative integer header (`Upload-Offset`, `Upload-Length`).
pub fn u64_header(headers: &HeaderMap, name: &str) -> ApiResult<Option<u64>> {
    header(headers, name)?
        .map(|v| {
            let ok = !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| v.parse().ok()).flatten().ok_or_else(|| {
                ApiError::BadRequest(
                    "invalid-header",
                    format!("{name} must be a non-negative integer"),
                )
            })
        })
        .transpose()
}

impl Protocol {
    /// Picks the protocol from the request's headers: the draft when
    /// `Upload-Draft-Interop-Version` is present, else tus (which needs `Tus-Resumable: 1.0.0`).
    pub fn detect(headers: &HeaderMap) -> ApiResult<Self> {
        if let Some(v) = header(headers, "upload-draft-interop-version")? {
            return Draft::requested(headers).map(Self::Draft).ok_or_else(|| {
                ApiError::UnsupportedVersion(format!(
                    "Upload-Draft-Interop-Version {v} is not supported; this server speaks \
                     {DRAFT_OLDEST} to {DRAFT_NEWEST}"
                ))
            });
        }
        match header(headers, "tus-resumable")? {
            Some(TUS_VERSION) => Ok(Self::Tus),
            Some(other) => Err(ApiError::UnsupportedVersion(format!(
                "Tus-Resumable {other} is not supported; this server speaks {TUS_VERSION}"
            ))),
            None => Err(ApiError::UnsupportedVersion(format!(
                "send Tus-Resumable: {TUS_VERSION} (tus) or Upload-Draft-Interop-Version: \
                 {DRAFT_OLDEST} to {DRAFT_NEWEST} (IETF draft)"
            ))),
        }
    }
}

/// Parses a structured-field boolean (`?1` / `?0`), as in `Upload-Complete`.
pub fn sf_bool(headers: &HeaderMap, name: &str) -> ApiResult<Option<bool>> {
    header(headers, name)?
        .map(|v| match v {
            "?1" => Ok(true),
            "?0" => Ok(false),
            _ => Err(ApiError::BadRequest(
                "invalid-header",
                format!("{name} must be ?1 or ?0"),
            )),
        })
        .transpose()
}

/// The recognised keys of `Upload-Metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `filename`.
    pub filename: Option<String>,
    /// `content_type` (or tus-js-client's `filetype`).
    pub content_type: Option<String>,
    /// `sha256`, as lowercase hex.
    pub sha256: Option<String>,
    /// `kind`.
    pub kind: Option<UploadKind>,
    /// The raw header, echoed back on HEAD.
    pub raw: Option<String>,
}

const MAX_METADATA_LEN: usize = 4096;

fn meta_err(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest("invalid-metadata", detail.into())
}

/// Parses `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
pub fn parse_metadata(headers: &HeaderMap) -> ApiResult<Metadata> {
    let Some(raw) = header(headers, "upload-metadata")? else {
        return Ok(Metadata::default());
    };
    if raw.len() > MAX_METADATA_LEN {
        return Err(meta_err(format!(
            "Upload-Metadata is longer than {MAX_METADATA_LEN} bytes"
        )));
    }
    let mut meta = Metadata {
        raw: Some(raw.to_owned()),
        ..Metadata::default()
    };
    let mut seen = std::collections::HashSet::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once(' ')
            .map_or((pair, None), |(k, v)| (k, Some(v.trim())));
        if key.is_empty() || key.bytes().any(|b| b.is_ascii_whitespace() || b == b',') {
            return Err(meta_err(format!("bad Upload-Metadata key {key:?}")));
        }
        if !seen.insert(key.to_owned()) {
            return Err(meta_err(format!(
                "Upload-Metadata key {key:?} appears twice"
            )));
        }
        let bytes = value
            .map(|v| {
                STANDARD.decode(v).map_err(|_| {
                    meta_err(format!("Upload-Metadata value of {key:?} is not base64"))
                })
            })
            .transpose()?;
        let text = || {
            bytes
                .as_ref()
                .map(|b| {
                    String::from_utf8(b.clone())
                        .map_err(|_| meta_err(format!("{key} must be UTF-8")))
                })
                .transpose()
        };
        match key {
            "filename" => meta.filename = text()?,
            "content_type" | "filetype" => meta.content_type = text()?,
            "kind" => {
                let value = text()?.unwrap_or_default();
                meta.kind = Some(UploadKind::parse(&value).ok_or_else(|| {
                    meta_err(format!("kind must be encrypted or preview, not {value:?}"))
                })?);
            }
            "sha256" => {
                let digest = bytes.as_deref().and_then(sha256_digest).ok_or_else(|| {
                    meta_err(
                        "sha256 must be the SHA-256 of the whole upload: its 32 bytes, or the text \
                         of its hex (64 digits) or base64 (with or without padding)",
                    )
                })?;
                meta.sha256 = Some(hex::encode(digest));
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// The digest a `sha256` metadata value carries, in any of the forms clients send: the raw 32
/// bytes (byte-oriented clients), or as text, what string-based metadata APIs (tus-js-client,
/// tuspy, Uppy, `URLSession`) can send: hex (64 digits, either case) or base64 (standard or
/// URL-safe alphabet, padded or not). The lengths (32, 64, 43/44) tell the forms apart.
fn sha256_digest(value: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(value) {
        return Some(raw);
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    let decoded = match text.len() {
        64 => hex::decode(text).ok()?,
        43 | 44 => {
            let unpadded = text.trim_end_matches('=');
            let engine = if unpadded.contains(['-', '_']) {
                &URL_SAFE_NO_PAD
            } else {
                &STANDARD_NO_PAD
            };
            engine.decode(unpadded).ok()?
        }
        _ => return None,
    };
    decoded.try_into().ok()
}

/// tus concatenation (`Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    /// `partial`: an upload that only a final upload uses.
    Partial,
    /// `final;<url> <url> …`: the concatenation of these partial uploads (their ids), in order.
    Final(Vec<String>),
}

impl Concat {
    /// The value stored with the upload (`partial`, or `final;<id> <id> …`).
    pub fn stored(&self) -> String {
        match self {
            Self::Partial => "partial".into(),
            Self::Final(parts) => format!("final;{}", parts.join(" ")),
        }
    }
}

/// `400 invalid-concatenation`.
pub fn concat_err(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest("invalid-concatenation", detail.into())
}

/// Parses `Upload-Concat`: `partial`, or `final;` and the partial uploads' URLs (absolute, or
/// paths) separated by spaces, at most `max_parts` of them.
pub fn parse_concat(headers: &HeaderMap, max_parts: usize) -> ApiResult<Option<Concat>> {
    let Some(raw) = header(headers, "upload-concat")? else {
        return Ok(None);
    };
    if raw == "partial" {
        return Ok(Some(Concat::Partial));
    }
    let Some(urls) = raw.strip_prefix("final;") else {
        return Err(concat_err(
            "Upload-Concat must be 'partial' or 'final;<url> <url> …'",
        ));
    };
    let parts = urls
        .split_ascii_whitespace()
        .map(|url| {
            let path = url.split(['?', '#']).next().unwrap_or_default();
            path.rsplit_once("/v1/uploads/")
                .map(|(_, id)| id.trim_end_matches('/'))
                .filter(|id| upload_id_is_valid(id))
                .map(str::to_owned)
                .ok_or_else(|| concat_err(format!("{url:?} is not the URL of an upload")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut distinct = parts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != parts.len() {
        return Err(concat_err("a final upload names each partial upload once"));
    }
    if parts.is_empty() || parts.len() > max_parts {
        return Err(concat_err(format!(
            "a final upload concatenates 1 to {max_parts} partial uploads, not {}",
            parts.len()
        )));
    }
    Ok(Some(Concat::Final(parts)))
}

/// Whether `id` has the form of an upload id (32 lowercase hex digits).
pub fn upload_id_is_valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A per-request checksum (`Upload-Checksum: <algorithm> <base64 digest>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The expected digest.
    pub digest: Vec<u8>,
}

/// Checksum algorithms for `Upload-Checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// SHA-1 (tus makes it mandatory).
    Sha1,
    /// SHA-256.
    Sha256,
}

/// Parses `Upload-Checksum`.
pub fn parse_checksum(headers: &HeaderMap) -> ApiResult<Option<Checksum>> {
    let Some(raw) = header(headers, "upload-checksum")? else {
        return Ok(None);
    };
    let (alg, digest) = raw.split_once(' ').ok_or_else(|| {
        ApiError::BadRequest(
            "invalid-checksum",
            "Upload-Checksum must be '<algorithm> <base64>'".into(),
        )
    })?;
    let (algorithm, len) = match alg {
        "sha1" => (ChecksumAlgorithm::Sha1, 20),
        "sha256" => (ChecksumAlgorithm::Sha256, 32),
        other => {
            return Err(ApiError::UnsupportedChecksum(format!(
                "checksum algorithm {other:?} is not supported; use one of {TUS_CHECKSUM_ALGORITHMS}"
            )));
        }
    };
    let digest = STANDARD
        .decode(digest.trim())
        .ok()
        .filter(|d| d.len() == len)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-checksum",
                format!("the {alg} digest must be base64 of {len} bytes"),
            )
        })?;
    Ok(Some(Checksum { algorithm, digest }))
}

/// The request's media type without parameters, lowercased.
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn protocol_detection() {
        assert_eq!(
            Protocol::detect(&headers(&[("tus-resumable", "1.0.0")])).ok(),
            Some(Protocol::Tus)
        );
        assert_eq!(
            Protocol::detect(&headers(&[("upload-draft-interop-version", "8")])).ok(),
            Some(Protocol::Draft(Draft(8)))
        );
        for bad in [
            vec![],
            vec![("tus-resumable", "0.2.2")],
            vec![("upload-draft-interop-version", "2")],
            vec![("upload-draft-interop-version", "10")],
        ] {
            assert!(matches!(
                Protocol::detect(&headers(&bad)),
                Err(ApiError::UnsupportedVersion(_))
            ));
        }
    }

    #[test]
    fn metadata_parsing() {
        let sha = STANDARD.encode([0xab; 32]);
        let raw = format!(
            "filename cGhvdG8uanBn,kind cHJldmlldw==,sha256 {sha},filetype aW1hZ2UvanBlZw==,flag"
        );
        let m = parse_metadata(&headers(&[("upload-metadata", &raw)])).expect("valid");
        assert_eq!(m.filename.as_deref(), Some("photo.jpg"));
        assert_eq!(m.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(m.kind, Some(UploadKind::Preview));
        assert_eq!(m.sha256, Some("ab".repeat(32)));
        // The digest as text, the way string-based metadata APIs send it.
        let digest = [0xab_u8; 32];
        for text in [
            hex::encode(digest),
            hex::encode_upper(digest),
            STANDARD.encode(digest),
            STANDARD_NO_PAD.encode(digest),
            URL_SAFE_NO_PAD.encode([0xfb_u8; 32]),
        ] {
            let raw = format!("sha256 {}", STANDARD.encode(text.as_bytes()));
            let m = parse_metadata(&headers(&[("upload-metadata", &raw)])).expect(&text);
            let want = if text.contains(['-', '_']) {
                "fb"
            } else {
                "ab"
            };
            assert_eq!(m.sha256, Some(want.repeat(32)), "{text}");
        }
        let too_short = STANDARD.encode(hex::encode([0xab_u8; 31]));
        let not_hex = STANDARD.encode("g".repeat(64));
        for bad in [
            "kind Ym9ndXM=",
            "sha256 YWJj",
            &format!("sha256 {too_short}"),
            &format!("sha256 {not_hex}"),
            "sha256",
            "filename !!!",
            "a YQ==,a YQ==",
        ] {
            assert!(
                parse_metadata(&headers(&[("upload-metadata", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn draft_versions_differ_in_completeness_and_media_type() {
        let v3 = Draft(3);
        let v5 = Draft(5);
        let v7 = Draft(7);
        let incomplete = headers(&[("upload-incomplete", "?1")]);
        assert_eq!(v3.complete(&incomplete).ok(), Some(Some(false)));
        assert_eq!(v5.complete(&incomplete).ok(), Some(None), "not a v5 header");
        let none = HeaderMap::new();
        assert_eq!(v5.append_complete(&none).ok(), Some(true));
        assert!(v7.append_complete(&none).is_err());
        let mut h = HeaderMap::new();
        v3.set_complete(&mut h, true);
        assert_eq!(
            h.get("upload-incomplete").map(|v| v.as_bytes()),
            Some(&b"?0"[..])
        );
        assert_eq!(v5.append_content_type(), None);
        assert_eq!(Draft(6).append_content_type(), Some(DRAFT_CONTENT_TYPE));
        assert_eq!(Draft(6).lifetime_key(), "expires");
        assert_eq!(v7.lifetime_key(), "max-age");
    }

    #[test]
    fn concatenation_headers() {
        let id = "0123456789abcdef0123456789abcdef";
        let parse = |v: &str| parse_concat(&headers(&[("upload-concat", v)]), 3);
        assert_eq!(parse("partial").ok(), Some(Some(Concat::Partial)));
        let other = "00000000000000000000000000000000";
        let urls = format!("final;https://m.example/v1/uploads/{id} /v1/uploads/{other}?x=1");
        assert_eq!(
            parse(&urls).ok(),
            Some(Some(Concat::Final(vec![id.into(), other.into()])))
        );
        for bad in [
            "partial;",
            "final;",
            "final;/v1/uploads/nothex",
            &format!("final;/v1/blobs/{id}"),
            &format!("final;/v1/uploads/{id} /v1/uploads/{id}"),
            &format!(
                "final;/v1/uploads/{id} /v1/uploads/{other} /v1/uploads/{} /v1/uploads/{}",
                "1".repeat(32),
                "2".repeat(32)
            ),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_concat(&HeaderMap::new(), 3).ok(), Some(None));
    }

    #[test]
    fn numbers_booleans_and_checksums() {
        let h = headers(&[
            ("upload-offset", "42"),
            ("upload-complete", "?1"),
            ("upload-checksum", "sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0="),
        ]);
        assert_eq!(u64_header(&h, "upload-offset").ok(), Some(Some(42)));
        assert_eq!(sf_bool(&h, "upload-complete").ok(), Some(Some(true)));
        assert_eq!(
            parse_checksum(&h).expect("checksum").map(|c| c.algorithm),
            Some(ChecksumAlgorithm::Sha1)
        );
        for bad in ["-1", "1e3", "", "99999999999999999999999"] {
            assert!(
                u64_header(&headers(&[("upload-offset", bad)]), "upload-offset").is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_checksum(&headers(&[("upload-checksum", "md5 AAAA")])),
            Err(ApiError::UnsupportedChecksum(_))
        ));
    }
}
