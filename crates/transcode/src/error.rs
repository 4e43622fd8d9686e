/// Why a file was refused or could not be processed. Each variant has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The bytes are not a type this build can process (whatever the name or declared type say).
    #[error("the file is not a supported image or media type (found: {0})")]
    Unsupported(&'static str),
    /// Larger than the file-size limit.
    #[error("the file has {size} bytes; the limit is {limit}")]
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// More pixels than allowed (read from the header, before decoding).
    #[error("the image is {width}x{height} pixels; the limit is {limit} pixels in all")]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Pixel limit.
        limit: u64,
    },
    /// A side longer than allowed.
    #[error("the image is {width}x{height}; no side may exceed {limit} pixels")]
    SideTooLong {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Side limit.
        limit: u32,
    },
    /// Decoding would need more memory than allowed.
    #[error("decoding the image would need about {needed} bytes of memory; the limit is {limit}")]
    MemoryLimit {
        /// Bytes the decode would need.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// An animation with more frames than allowed.
    #[error("the animation has more than {limit} frames")]
    TooManyFrames {
        /// Frame limit.
        limit: u32,
    },
    /// Longer than allowed (video, audio).
    #[error("the media lasts {}; the limit is {}", secs(*duration), secs(*limit))]
    TooLong {
        /// Its duration.
        duration: std::time::Duration,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The file is truncated or corrupt.
    #[error("the file is corrupt or truncated: {0}")]
    Corrupt(String),
    /// Encoding a rendition failed (our fault, not the file's).
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Every code [`TranscodeError::code`] gives.
pub const ERROR_CODES: [&str; 8] = [
    "unsupported-media",
    "file-too-large",
    "image-too-large",
    "image-side-too-long",
    "too-many-frames",
    "media-too-long",
    "corrupt-media",
    "processing-failed",
];

impl TranscodeError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "unsupported-media",
            Self::FileTooLarge { .. } => "file-too-large",
            Self::TooManyPixels { .. } | Self::MemoryLimit { .. } => "image-too-large",
            Self::SideTooLong { .. } => "image-side-too-long",
            Self::TooManyFrames { .. } => "too-many-frames",
            Self::TooLong { .. } => "media-too-long",
            Self::Corrupt(_) => "corrupt-media",
            Self::Encode(_) | Self::Io(_) => "processing-failed",
        }
    }

    /// Whether retrying could help (reading failed; everything else would fail the same way).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker keeps only codes in `ERROR_CODES` from a child's report: every code an error
    /// has must be there.
    #[test]
    fn every_code_is_listed() {
        let second = std::time::Duration::from_secs(1);
        let errors = [
            TranscodeError::Unsupported("x"),
            TranscodeError::FileTooLarge { size: 2, limit: 1 },
            TranscodeError::TooManyPixels {
                width: 2,
                height: 2,
                limit: 1,
            },
            TranscodeError::SideTooLong {
                width: 2,
                height: 2,
                limit: 1,
            },
            TranscodeError::MemoryLimit {
                needed: 2,
                limit: 1,
            },
            TranscodeError::TooManyFrames { limit: 1 },
            TranscodeError::TooLong {
                duration: 2 * second,
                limit: second,
            },
            TranscodeError::Corrupt(String::new()),
            TranscodeError::Encode(String::new()),
            TranscodeError::Io(std::io::Error::other("x")),
        ];
        for e in &errors {
            assert!(ERROR_CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
