//! Media processing for Sealpost: sniffing a file's real type from its magic bytes, checking it
//! against limits before decoding, making the thumbnail set (WebP and JPEG) and a BlurHash
//! from images, and probing, posters and web renditions (H.264/AAC MP4) of video and audio. Pure and blocking: callers run it off the async executor (the server runs it in
//! a child process, since the decoders see untrusted input).

mod error;
pub mod image;
mod limits;
pub mod sniff;
pub mod video;

pub use error::{ERROR_CODES, TranscodeError};
pub use limits::{ImageLimits, VideoLimits};
pub use sniff::{MediaType, sniff};
