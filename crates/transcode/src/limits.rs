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
