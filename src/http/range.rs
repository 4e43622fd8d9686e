//! `Range` requests on stored blobs (RFC 9110 §14): one byte range is served as 206 Partial
//! Content; several ranges, or a header that is not a valid byte range, get the whole blob
//! (200), as the RFC allows; a range that starts past the end is 416. An empty blob is always
//! sent whole.

use std::ops::Range;

use axum::http::HeaderValue;

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole blob.
    Full,
    /// These bytes.
    Part(Range<u64>),
    /// A range that does not overlap the blob.
    Unsatisfiable,
}

/// Reads a `Range` header for a blob of `size` bytes.
pub fn wanted(header: Option<&HeaderValue>, size: u64) -> Wanted {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return Wanted::Full;
    };
    // An empty blob has no byte to select: send it whole (RFC 9110 lets a server ignore Range),
    // so that a cache filling slices of it gets the empty blob rather than a 416.
    if size == 0 {
        return Wanted::Full;
    }
    if spec.contains(',') {
        return Wanted::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Full;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Full,
        },
        // bytes=A-: from A to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => Wanted::Part(a..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        // bytes=A-B, both inclusive.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Wanted::Full,
            (Some(a), Some(_)) if a >= size => Wanted::Unsatisfiable,
            (Some(a), Some(b)) => Wanted::Part(a..b.saturating_add(1).min(size)),
            _ => Wanted::Full,
        },
        (true, true) => Wanted::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(h: &str, size: u64) -> Wanted {
        wanted(Some(&HeaderValue::from_str(h).expect("header")), size)
    }

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(wanted(None, 10), Wanted::Full);
        assert_eq!(parse("bytes=0-0", 10), Wanted::Part(0..1));
        assert_eq!(parse("bytes=2-5", 10), Wanted::Part(2..6));
        assert_eq!(parse("bytes=8-100", 10), Wanted::Part(8..10));
        assert_eq!(parse("bytes=7-", 10), Wanted::Part(7..10));
        assert_eq!(parse("bytes=-3", 10), Wanted::Part(7..10));
        assert_eq!(parse("bytes=-30", 10), Wanted::Part(0..10));
        assert_eq!(parse("bytes=10-", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=10-12", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Wanted::Full);
        assert_eq!(parse("bytes=0-", 0), Wanted::Full);
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=x-y",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(parse(ignored, 10), Wanted::Full, "{ignored}");
        }
    }
}
