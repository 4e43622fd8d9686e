use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where the processing of a plaintext preview is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaState {
    /// Queued or being processed.
    Pending,
    /// Processed: the renditions are stored.
    Ready,
    /// Refused for good (see `code`); a preview is never processed twice.
    Failed,
}

/// One rendition of a preview, stored as a blob of its own (`GET /v1/blobs/{blob_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rendition {
    /// What it is: `crop-32`, `crop-96` (square crops), `fit-320x240`, `fit-640x480`,
    /// `fit-800x600` (scaled to fit, never upscaled; of a video's poster frame), or `web`
    /// (a video as H.264 + AAC MP4 with faststart, or audio as AAC M4A).
    #[schema(example = "fit-320x240")]
    pub name: String,
    /// Its media type (`image/webp`, `image/jpeg`, `video/mp4` or `audio/mp4`).
    #[schema(example = "image/webp")]
    pub mime: String,
    /// Width in pixels (0 for audio).
    pub width: u32,
    /// Height in pixels (0 for audio).
    pub height: u32,
    /// Size in bytes.
    pub size: u64,
    /// The rendition's blob id.
    pub blob_id: String,
}

/// The processing status of a plaintext preview (`GET /v1/media/{blob_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaStatus {
    /// The preview's blob id.
    pub blob_id: String,
    /// Where processing is.
    pub status: MediaState,
    /// Failed: the stable reason code (`unsupported-media`, `image-too-large`,
    /// `corrupt-media`, `processing-timeout`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Failed: what happened, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready: the real media type, from the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Ready: displayed width (after EXIF orientation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Ready: displayed height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Ready, images: animation frames (1 for a still image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    /// Ready, video and audio: duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Ready: a BlurHash (of the image, or of a video's poster frame) to show while a
    /// rendition loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blurhash: Option<String>,
    /// Processing attempts so far.
    pub attempts: u32,
    /// Ready: the renditions, by name then type.
    pub renditions: Vec<Rendition>,
}
