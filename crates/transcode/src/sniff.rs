//! A file's real type from its first bytes, never from its name or declared type.

/// What a file is, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG.
    Png,
    /// GIF 87a/89a.
    Gif,
    /// WebP (RIFF `WEBP`).
    WebP,
    /// ISO base media (`ftyp`): MP4, M4A, MOV, HEIF/AVIF by brand.
    IsoMedia {
        /// The major brand, e.g. `isom`, `qt  `, `M4A `, `heic`, `avif`.
        brand: [u8; 4],
    },
    /// Matroska (EBML), or WebM when its document type says so.
    Matroska {
        /// Whether the document type is `webm`.
        webm: bool,
    },
    /// Ogg.
    Ogg,
    /// MP3 (ID3 tag or an MPEG audio frame sync).
    Mp3,
    /// WAV (RIFF `WAVE`).
    Wav,
    /// FLAC.
    Flac,
}

impl MediaType {
    /// Whether the image decoders here take it.
    pub fn is_image(self) -> bool {
        matches!(self, Self::Jpeg | Self::Png | Self::Gif | Self::WebP)
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::WebP => "image/webp",
            Self::IsoMedia { brand } => match &brand {
                b"qt  " => "video/quicktime",
                b"M4A " | b"M4B " => "audio/mp4",
                b"heic" | b"heix" | b"mif1" | b"msf1" => "image/heic",
                b"avif" | b"avis" => "image/avif",
                _ => "video/mp4",
            },
            Self::Matroska { webm: true } => "video/webm",
            Self::Matroska { webm: false } => "video/x-matroska",
            Self::Ogg => "audio/ogg",
            Self::Mp3 => "audio/mpeg",
            Self::Wav => "audio/wav",
            Self::Flac => "audio/flac",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
            Self::IsoMedia { .. } => "ISO media (MP4/MOV/HEIF)",
            Self::Matroska { .. } => "Matroska/WebM",
            Self::Ogg => "Ogg",
            Self::Mp3 => "MP3",
            Self::Wav => "WAV",
            Self::Flac => "FLAC",
        }
    }
}

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: usize = 64;

/// The type of the file at `path`, from its first [`SNIFF_LEN`] bytes.
pub fn sniff_file(path: &std::path::Path) -> std::io::Result<Option<MediaType>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    std::fs::File::open(path)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    Ok(sniff(&head))
}

/// The type of a file starting with `head` (give it at least [`SNIFF_LEN`] bytes when the file
/// has them), or `None` when it is none of the known types.
pub fn sniff(head: &[u8]) -> Option<MediaType> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some(MediaType::Jpeg);
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(MediaType::Png);
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some(MediaType::Gif);
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some(MediaType::WebP);
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some(MediaType::Wav);
    }
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if at(4, b"ftyp") {
        let mut brand: [u8; 4] = head.get(8..12)?.try_into().ok()?;
        // A generic HEIF major brand with AVIF among the compatible brands is AVIF.
        if matches!(&brand, b"mif1" | b"msf1") && contains(b"avif") {
            brand = *b"avif";
        }
        return Some(MediaType::IsoMedia { brand });
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(MediaType::Matroska {
            webm: contains(b"webm"),
        });
    }
    if at(0, b"OggS") {
        return Some(MediaType::Ogg);
    }
    if at(0, b"fLaC") {
        return Some(MediaType::Flac);
    }
    // ID3v2, or an MPEG-1/2 layer III frame sync (11 set bits, layer bits 01).
    if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE6 == 0xE2) {
        return Some(MediaType::Mp3);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        let cases: [(&[u8], Option<MediaType>); 12] = [
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF", Some(MediaType::Jpeg)),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(MediaType::Png)),
            (b"GIF89a\x01\0\x01\0", Some(MediaType::Gif)),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some(MediaType::WebP)),
            (b"RIFF\x10\0\0\0WAVEfmt ", Some(MediaType::Wav)),
            (
                b"\0\0\0\x20ftypisom\0\0\x02\0",
                Some(MediaType::IsoMedia { brand: *b"isom" }),
            ),
            (
                b"\x1A\x45\xDF\xA3\x01\0\0\0",
                Some(MediaType::Matroska { webm: false }),
            ),
            (b"OggS\0\x02", Some(MediaType::Ogg)),
            (b"fLaC\0\0\0\x22", Some(MediaType::Flac)),
            (b"ID3\x04\0\0", Some(MediaType::Mp3)),
            (b"<html><body>", None),
            (b"", None),
        ];
        for (head, expected) in cases {
            assert_eq!(sniff(head), expected, "{head:?}");
        }
        assert_eq!(
            MediaType::IsoMedia { brand: *b"qt  " }.mime(),
            "video/quicktime"
        );
    }
}
