//! Sizes and offsets: where each segment lies, how long a ciphertext is, and which ciphertext
//! bytes cover a plaintext range.

use std::ops::Range;

use crate::CryptoError;

/// Ciphertext segment size (every segment but the last; the first one includes the header).
pub const SEGMENT_SIZE: u64 = 65_536;
/// AES-GCM tag length.
pub const TAG_LEN: u64 = TAG_BYTES as u64;
/// Salt length (= the derived key length).
pub(crate) const SALT_LEN: usize = 32;
/// Nonce prefix length.
pub(crate) const NONCE_PREFIX_LEN: usize = 7;
/// Header length in bytes, as a `usize`.
pub(crate) const HEADER_BYTES: usize = 1 + SALT_LEN + NONCE_PREFIX_LEN;
/// Tag length in bytes, as a `usize`.
pub(crate) const TAG_BYTES: usize = 16;
/// Header length: one length byte, the salt and the nonce prefix.
pub const HEADER_LEN: u64 = HEADER_BYTES as u64;
/// Plaintext bytes in the first segment.
pub(crate) const FIRST_PLAINTEXT: u64 = SEGMENT_SIZE - HEADER_LEN - TAG_LEN;
/// Plaintext bytes in every later full segment.
pub(crate) const PLAINTEXT_SEGMENT: u64 = SEGMENT_SIZE - TAG_LEN;

/// The number of segments a plaintext of `len` bytes is sealed into (at least one).
pub fn segment_count(len: u64) -> u64 {
    if len <= FIRST_PLAINTEXT {
        1
    } else {
        1 + (len - FIRST_PLAINTEXT).div_ceil(PLAINTEXT_SEGMENT)
    }
}

/// The ciphertext length for a plaintext of `len` bytes; `u64::MAX` for a length no
/// ciphertext can have (a sender-chosen size cannot make it overflow).
pub fn ciphertext_len(len: u64) -> u64 {
    HEADER_LEN
        .saturating_add(len)
        .saturating_add(TAG_LEN.saturating_mul(segment_count(len)))
}

/// The plaintext length of a ciphertext of `len` bytes.
///
/// # Errors
/// [`CryptoError::Truncated`] when no well-formed ciphertext has that length.
pub fn plaintext_len(len: u64) -> Result<u64, CryptoError> {
    let body = len
        .checked_sub(HEADER_LEN + TAG_LEN)
        .ok_or(CryptoError::Truncated)?;
    if body <= FIRST_PLAINTEXT {
        return Ok(body);
    }
    // Full segments after the first, then a last one of TAG_LEN + 1 ..= SEGMENT_SIZE bytes.
    let rest = len - SEGMENT_SIZE;
    let full = rest / SEGMENT_SIZE;
    let tail = rest % SEGMENT_SIZE;
    match tail {
        0 => Ok(FIRST_PLAINTEXT + full * PLAINTEXT_SEGMENT),
        t if t >= TAG_LEN => Ok(FIRST_PLAINTEXT + full * PLAINTEXT_SEGMENT + t - TAG_LEN),
        _ => Err(CryptoError::Truncated),
    }
}

/// The segment holding plaintext offset `offset`, and the offset within it.
pub(crate) fn segment_of(offset: u64) -> (u64, u64) {
    if offset < FIRST_PLAINTEXT {
        (0, offset)
    } else {
        let past = offset - FIRST_PLAINTEXT;
        (1 + past / PLAINTEXT_SEGMENT, past % PLAINTEXT_SEGMENT)
    }
}

/// Where segment `index` starts in the ciphertext.
pub(crate) fn segment_start(index: u64) -> u64 {
    if index == 0 {
        HEADER_LEN
    } else {
        index.saturating_mul(SEGMENT_SIZE)
    }
}

/// Where plaintext segment `index` starts.
pub(crate) fn plaintext_start(index: u64) -> u64 {
    if index == 0 {
        0
    } else {
        FIRST_PLAINTEXT + (index - 1) * PLAINTEXT_SEGMENT
    }
}

/// Where to restart sealing so as to reproduce a ciphertext from some offset on (a resumed
/// upload): seal from `plaintext_offset` with [`crate::Encryptor::resume`] at `segment`, and
/// drop the first `skip` bytes of what it yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The segment holding the offset (0 also when the offset is inside the header).
    pub segment: u64,
    /// Where that segment's plaintext starts.
    pub plaintext_offset: u64,
    /// Ciphertext bytes the resumed sealer yields before the requested offset.
    pub skip: u64,
    /// Whether the resumed sealer starts with the header (offsets inside it).
    pub with_header: bool,
}

/// How to reproduce the ciphertext from byte `offset` on (an offset inside the ciphertext:
/// at its end there is nothing left to reproduce).
pub fn resume_at(offset: u64) -> Resume {
    if offset < HEADER_LEN {
        return Resume {
            segment: 0,
            plaintext_offset: 0,
            skip: offset,
            with_header: true,
        };
    }
    let segment = offset / SEGMENT_SIZE;
    Resume {
        segment,
        plaintext_offset: plaintext_start(segment),
        skip: offset - segment_start(segment),
        with_header: false,
    }
}

/// What to fetch and decrypt for a plaintext range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The ciphertext bytes to fetch: whole segments, from a segment start.
    pub ciphertext: Range<u64>,
    /// The first segment in it.
    pub first_segment: u64,
    /// Plaintext bytes to drop from the start of what those segments decrypt to.
    pub skip: u64,
    /// Plaintext bytes to keep after that.
    pub take: u64,
}

/// The ciphertext segments that cover `range` of a plaintext of `len` bytes.
///
/// # Errors
/// [`CryptoError::BadRange`] for an empty range or one past the end.
pub fn span(range: Range<u64>, len: u64) -> Result<Span, CryptoError> {
    if range.start >= range.end || range.end > len {
        return Err(CryptoError::BadRange {
            start: range.start,
            end: range.end,
            len,
        });
    }
    let (first, skip) = segment_of(range.start);
    let (last, _) = segment_of(range.end - 1);
    let end = if last + 1 == segment_count(len) {
        ciphertext_len(len)
    } else {
        segment_start(last + 1)
    };
    Ok(Span {
        ciphertext: segment_start(first)..end,
        first_segment: first,
        skip,
        take: range.end - range.start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_around_segment_boundaries() {
        for len in [
            0,
            1,
            FIRST_PLAINTEXT - 1,
            FIRST_PLAINTEXT,
            FIRST_PLAINTEXT + 1,
            FIRST_PLAINTEXT + PLAINTEXT_SEGMENT,
            FIRST_PLAINTEXT + PLAINTEXT_SEGMENT + 1,
            10 * PLAINTEXT_SEGMENT + 12_345,
            1 << 32,
        ] {
            let ct = ciphertext_len(len);
            assert_eq!(plaintext_len(ct), Ok(len), "plaintext length {len}");
            let (last, _) = segment_of(len.saturating_sub(1));
            assert_eq!(last + 1, segment_count(len), "{len}");
        }
        assert_eq!(ciphertext_len(0), HEADER_LEN + TAG_LEN);
        assert_eq!(ciphertext_len(FIRST_PLAINTEXT), SEGMENT_SIZE);
        assert_eq!(
            plaintext_len(HEADER_LEN + TAG_LEN - 1),
            Err(CryptoError::Truncated)
        );
        assert_eq!(plaintext_len(SEGMENT_SIZE + 5), Err(CryptoError::Truncated));
    }

    #[test]
    fn absurd_lengths_saturate_instead_of_overflowing() {
        assert_eq!(ciphertext_len(u64::MAX), u64::MAX);
        assert_eq!(ciphertext_len(u64::MAX - HEADER_LEN), u64::MAX);
        assert!(span(u64::MAX - 2..u64::MAX - 1, u64::MAX).is_ok());
    }

    #[test]
    fn spans_cover_whole_segments() {
        let len = 3 * PLAINTEXT_SEGMENT;
        let s = span(0..1, len).expect("span");
        assert_eq!(
            (s.ciphertext, s.first_segment, s.skip),
            (HEADER_LEN..SEGMENT_SIZE, 0, 0)
        );
        let s = span(FIRST_PLAINTEXT..FIRST_PLAINTEXT + 2, len).expect("span");
        assert_eq!(
            (s.ciphertext, s.first_segment, s.skip),
            (SEGMENT_SIZE..2 * SEGMENT_SIZE, 1, 0)
        );
        let s = span(len - 1..len, len).expect("span");
        assert_eq!(s.ciphertext.end, ciphertext_len(len));
        assert!(span(5..5, len).is_err());
        assert!(span(0..len + 1, len).is_err());
    }
}
