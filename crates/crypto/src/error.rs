/// Why sealed media could not be opened. Each kind of damage has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The header is not this format's (wrong length byte).
    #[error("not a sealed-media ciphertext: bad header")]
    BadHeader,
    /// The ciphertext ends early: inside the header or a segment, or after a segment that was
    /// not the last one.
    #[error("the ciphertext is truncated")]
    Truncated,
    /// A segment authenticates, but at another position than where it was found (segments were
    /// reordered, duplicated, or data follows the last segment).
    #[error("segment {found} of the ciphertext was found at position {position}")]
    Reordered {
        /// Where the segment was found.
        position: u64,
        /// Which segment it is.
        found: u64,
    },
    /// A segment after the first fails authentication: the ciphertext was altered.
    #[error("segment {segment} of the ciphertext was altered")]
    Corrupted {
        /// The damaged segment.
        segment: u64,
    },
    /// The first segment does not authenticate under this key: the key is wrong (or the header
    /// or first segment was altered, which the format cannot tell apart from a wrong key; a
    /// ciphertext whose SHA-256 matches its blob id was not altered).
    #[error("the media key does not open this ciphertext")]
    WrongKey,
    /// A plaintext or ciphertext range outside the data.
    #[error("range {start}..{end} is outside the {len} bytes of data")]
    BadRange {
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
        /// Data length.
        len: u64,
    },
}
