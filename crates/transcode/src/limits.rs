/// What an image may be before it is decoded. Checked from the file size and the header, so a
/// small file claiming a huge canvas is refused without allocating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest file, bytes.
    pub max_bytes: u64,
    /// Most pixels (width × height).
    pub max_pixels: u64,
    /// Longest side, pixels.
    pub max_side: u32,
    /// Most frames of an animation (GIF, WebP).
    pub max_frames: u32,
    /// Most memory one decode may allocate, bytes.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 50 << 20,
            max_pixels: 50_000_000,
            max_side: 16_384,
            max_frames: 1_000,
            max_alloc: 512 << 20,
        }
    }
}

/// What a video or audio file may be, and what its web rendition may become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoLimits {
    /// Largest file, bytes.
    pub max_bytes: u64,
    /// Longest duration.
    pub max_duration: std::time::Duration,
    /// Most pixels in a frame.
    pub max_pixels: u64,
    /// Longest frame side, pixels.
    pub max_side: u32,
    /// The rendition's short side at most (720 for 720p), never upscaled.
    pub max_height: u32,
    /// The rendition's video bitrate cap, bits per second.
    pub video_bitrate: u64,
    /// The rendition's audio bitrate, bits per second.
    pub audio_bitrate: u64,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_duration: std::time::Duration::from_secs(300),
            max_pixels: 8192 * 4320,
            max_side: 8192,
            max_height: 720,
            video_bitrate: 2_500_000,
            audio_bitrate: 128_000,
        }
    }
}

/// Refuses a `width`×`height` frame with a side over `max_side` or more than `max_pixels`.
pub(crate) fn check_frame(
    width: u32,
    height: u32,
    max_side: u32,
    max_pixels: u64,
) -> Result<(), crate::TranscodeError> {
    if width.max(height) > max_side {
        return Err(crate::TranscodeError::SideTooLong {
            width,
            height,
            limit: max_side,
        });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(crate::TranscodeError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}
