//! Video and audio (FFmpeg through ffmpeg-next): what a file holds (container, codecs,
//! duration, size, rotation) under limits, a poster frame, and the web rendition: H.264 + AAC
//! in MP4 with `faststart`, at most `max_height` lines, upright, bitrate-capped; audio alone
//! becomes AAC in M4A. Only the demuxers and the `file` protocol a phone's media needs are
//! enabled, so a crafted file cannot make FFmpeg open playlists, other files or the network.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use ff::{Dictionary, Rational, codec, filter, format, frame, media};
use ffmpeg_next as ff;
use image::{DynamicImage, RgbImage};

use crate::sniff::{MediaType, sniff};
use crate::{TranscodeError, VideoLimits};

/// Demuxers a preview may use: MP4/MOV/3GP, Matroska/WebM, Ogg, MP3, WAV, FLAC.
const DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,ogg,mp3,wav,flac";
/// The longest side of a decoded poster frame.
const POSTER_SIDE: u32 = 1280;
/// The AAC frame size.
const AAC_FRAME: u32 = 1024;

/// One stream's codec, by FFmpeg's short name (`h264`, `hevc`, `vp9`, `aac`, `opus`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    /// The codec.
    pub codec: String,
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Clockwise rotation to apply for display: 0, 90, 180 or 270.
    pub rotation: u32,
}

impl VideoStream {
    /// Width and height as displayed (rotation applied).
    pub fn displayed(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// What a probed video or audio file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Its real type, from its bytes.
    pub media_type: MediaType,
    /// The demuxer that read it.
    pub container: String,
    /// Duration.
    pub duration: Duration,
    /// The main video stream, if any (cover art in audio files does not count).
    pub video: Option<VideoStream>,
    /// The main audio stream's codec, if any.
    pub audio: Option<String>,
}

/// The web rendition a transcode wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRendition {
    /// Width (0 for audio).
    pub width: u32,
    /// Height (0 for audio).
    pub height: u32,
    /// Whether it has video (MP4) or is audio alone (M4A).
    pub has_video: bool,
}

impl WebRendition {
    /// Its MIME type.
    pub fn mime(self) -> &'static str {
        if self.has_video {
            "video/mp4"
        } else {
            "audio/mp4"
        }
    }
}

fn init() -> Result<(), TranscodeError> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = ff::init().map_err(|e| TranscodeError::Encode(format!("FFmpeg: {e}")));
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
    result
}

/// Whether this module takes files of `media_type`.
pub fn handles(media_type: MediaType) -> bool {
    match media_type {
        MediaType::IsoMedia { brand } => !matches!(
            &brand,
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"avif" | b"avis"
        ),
        MediaType::Matroska { .. }
        | MediaType::Ogg
        | MediaType::Mp3
        | MediaType::Wav
        | MediaType::Flac => true,
        _ => false,
    }
}

/// Reads what the file at `path` holds, refusing it if it breaks `limits`.
pub fn probe(path: &Path, limits: &VideoLimits) -> Result<MediaInfo, TranscodeError> {
    Opened::open(path, limits).map(|opened| opened.info)
}

/// A poster frame of the video at `path` (the frame at one second, or the last one before it
/// in a shorter video), upright, at most 1280 pixels on its long side.
pub fn poster(
    path: &Path,
    limits: &VideoLimits,
) -> Result<(MediaInfo, DynamicImage), TranscodeError> {
    let Opened { info, mut input } = Opened::open(path, limits)?;
    let video = info
        .video
        .clone()
        .ok_or(TranscodeError::Unsupported("audio without video"))?;
    let stream = input
        .streams()
        .best(media::Type::Video)
        .ok_or(TranscodeError::Unsupported("no video stream"))?;
    let index = stream.index();
    let time_base = stream.time_base();
    let mut decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(corrupt)?;
    let target = seconds_to_pts(1.0, time_base);
    let (width, height) = fit_within(video.displayed(), POSTER_SIDE);
    let spec = format!(
        "{}scale={width}:{height}:flags=bilinear,format=rgb24",
        rotation_filter(video.rotation)
    );
    let mut graph = video_graph(&decoder, time_base, &spec)?;
    let mut decoded = frame::Video::empty();
    let mut best: Option<frame::Video> = None;
    let mut take = |decoder: &mut ff::decoder::Video, best: &mut Option<frame::Video>| -> bool {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded.timestamp().unwrap_or(0);
            if best.is_none() || pts <= target {
                *best = Some(decoded.clone());
            }
            if pts >= target {
                return true;
            }
        }
        false
    };
    let mut done = false;
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        if take(&mut decoder, &mut best) {
            done = true;
            break;
        }
    }
    if !done {
        let _ = decoder.send_eof();
        take(&mut decoder, &mut best);
    }
    let mut chosen =
        best.ok_or_else(|| TranscodeError::Corrupt("no decodable video frame".into()))?;
    chosen.set_pts(Some(0));
    push(&mut graph, Some(&chosen))?;
    let mut rgb = frame::Video::empty();
    if !pull(&mut graph, &mut rgb) {
        return Err(TranscodeError::Encode(
            "the poster filter gave no frame".into(),
        ));
    }
    Ok((info, DynamicImage::ImageRgb8(to_rgb_image(&rgb)?)))
}

/// Transcodes the file at `path` into `output` (MP4, `faststart`): H.264 (libx264, `veryfast`,
/// CRF 23, capped at `limits.video_bitrate`) + AAC (`limits.audio_bitrate`), at most
/// `limits.max_height` lines and upright; audio alone becomes AAC in M4A.
pub fn transcode(
    path: &Path,
    output: &Path,
    limits: &VideoLimits,
) -> Result<(MediaInfo, WebRendition), TranscodeError> {
    let Opened { info, mut input } = Opened::open(path, limits)?;
    let mut out = format::output_as(&output, "mp4").map_err(encode)?;
    let global_header = out.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let mut size = (0, 0);
    let mut video = match (&info.video, input.streams().best(media::Type::Video)) {
        (Some(v), Some(stream)) => {
            let (lane, frame_size) = video_lane(&stream, v, &mut out, limits, global_header)?;
            size = frame_size;
            Some(lane)
        }
        _ => None,
    };
    let mut audio = match input.streams().best(media::Type::Audio) {
        Some(stream) => Some(audio_lane(&stream, &mut out, limits, global_header)?),
        None => None,
    };
    if video.is_none() && audio.is_none() {
        return Err(TranscodeError::Unsupported("no audio or video stream"));
    }
    let mut options = Dictionary::new();
    options.set("movflags", "+faststart");
    out.write_header_with(options).map_err(encode)?;
    let time_bases: Vec<Rational> = out.streams().map(|s| s.time_base()).collect();
    // The container's duration can lie: the packets themselves are held to the limit too.
    let limit = limits.max_duration.as_secs_f64() + 1.0;
    for (stream, packet) in input.packets() {
        let base = stream.time_base();
        if let Some(pts) = packet.pts()
            && base.denominator() > 0
        {
            #[allow(clippy::cast_precision_loss)]
            let at = pts as f64 * f64::from(base.numerator()) / f64::from(base.denominator());
            if at > limit {
                return Err(TranscodeError::TooLong {
                    duration: Duration::from_secs_f64(at.max(0.0)),
                    limit: limits.max_duration,
                });
            }
        }
        let ours = |lane_input: usize| stream.index() == lane_input;
        if let Some(lane) = video.as_mut().filter(|l| ours(l.input)) {
            lane.feed(&packet, &mut out, &time_bases)?;
        } else if let Some(lane) = audio.as_mut().filter(|l| ours(l.input)) {
            lane.feed(&packet, &mut out, &time_bases)?;
        }
    }
    let rendition = WebRendition {
        width: size.0,
        height: size.1,
        has_video: video.is_some(),
    };
    for lane in video.iter_mut().chain(audio.iter_mut()) {
        lane.finish(&mut out, &time_bases)?;
    }
    out.write_trailer().map_err(encode)?;
    Ok((info, rendition))
}

/// An input opened and checked against the limits.
struct Opened {
    info: MediaInfo,
    input: format::context::Input,
}

impl Opened {
    fn open(path: &Path, limits: &VideoLimits) -> Result<Self, TranscodeError> {
        let size = std::fs::metadata(path)?.len();
        if size > limits.max_bytes {
            return Err(TranscodeError::FileTooLarge {
                size,
                limit: limits.max_bytes,
            });
        }
        let mut head = [0u8; crate::sniff::SNIFF_LEN];
        let read = read_head(path, &mut head)?;
        let media_type = sniff(&head[..read]).ok_or(TranscodeError::Unsupported("unknown"))?;
        if !handles(media_type) {
            return Err(TranscodeError::Unsupported(media_type.name()));
        }
        init()?;
        let mut options = Dictionary::new();
        options.set("format_whitelist", DEMUXERS);
        options.set("protocol_whitelist", "file");
        let input = format::input_with_dictionary(&path, options).map_err(corrupt)?;
        let duration = Duration::from_micros(u64::try_from(input.duration()).unwrap_or(0));
        if duration > limits.max_duration {
            return Err(TranscodeError::TooLong {
                duration,
                limit: limits.max_duration,
            });
        }
        let video = match input.streams().best(media::Type::Video) {
            Some(stream) if !is_cover_art(&stream) => Some(video_stream(&stream, limits)?),
            _ => None,
        };
        let audio = input
            .streams()
            .best(media::Type::Audio)
            .map(|s| s.parameters().id().name().to_owned());
        if video.is_none() && audio.is_none() {
            return Err(TranscodeError::Corrupt(
                "the container holds no readable audio or video stream".into(),
            ));
        }
        let container = input.format().name().to_owned();
        Ok(Self {
            info: MediaInfo {
                media_type,
                container,
                duration,
                video,
                audio,
            },
            input,
        })
    }
}

fn read_head(path: &Path, head: &mut [u8]) -> Result<usize, TranscodeError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// An attached picture (an MP3's or M4A's cover) is not a video.
fn is_cover_art(stream: &format::stream::Stream<'_>) -> bool {
    stream
        .disposition()
        .contains(format::stream::Disposition::ATTACHED_PIC)
}

fn video_stream(
    stream: &format::stream::Stream<'_>,
    limits: &VideoLimits,
) -> Result<VideoStream, TranscodeError> {
    let decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(corrupt)?;
    let (width, height) = (decoder.width(), decoder.height());
    if width == 0 || height == 0 {
        return Err(TranscodeError::Corrupt(
            "the video has no frame size".into(),
        ));
    }
    crate::limits::check_frame(width, height, limits.max_side, limits.max_pixels)?;
    Ok(VideoStream {
        codec: stream.parameters().id().name().to_owned(),
        width,
        height,
        rotation: rotation(stream),
    })
}

/// The clockwise rotation a stream's display matrix asks for, rounded to a quarter turn.
fn rotation(stream: &format::stream::Stream<'_>) -> u32 {
    let matrix = stream
        .side_data()
        .find(|d| d.kind() == codec::packet::side_data::Type::DisplayMatrix)
        .map(|d| d.data().to_vec());
    let Some(matrix) = matrix.filter(|m| m.len() >= 36) else {
        return 0;
    };
    let at = |i: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&matrix[i * 4..i * 4 + 4]);
        f64::from(i32::from_ne_bytes(word))
    };
    let (a, b, c, d) = (at(0), at(1), at(3), at(4));
    let (scale0, scale1) = (a.hypot(c), b.hypot(d));
    if scale0 == 0.0 || scale1 == 0.0 {
        return 0;
    }
    // FFmpeg's av_display_rotation_get is counter-clockwise; display needs its opposite.
    let degrees = (b / scale1).atan2(a / scale0).to_degrees();
    let quarter = (degrees / 90.0).round().rem_euclid(4.0);
    if quarter >= 3.0 {
        270
    } else if quarter >= 2.0 {
        180
    } else if quarter >= 1.0 {
        90
    } else {
        0
    }
}

/// Filters that turn a frame upright.
fn rotation_filter(rotation: u32) -> &'static str {
    match rotation {
        90 => "transpose=clock,",
        180 => "hflip,vflip,",
        270 => "transpose=cclock,",
        _ => "",
    }
}

/// `(width, height)` scaled to fit `side` on its long side (never up), both even.
fn fit_within((width, height): (u32, u32), side: u32) -> (u32, u32) {
    let long = width.max(height);
    let (w, h) = if long <= side {
        (width, height)
    } else {
        let scale = f64::from(side) / f64::from(long);
        (
            scaled(f64::from(width) * scale),
            scaled(f64::from(height) * scale),
        )
    };
    (even(w), even(h))
}

/// The frame size of the web rendition: at most `max_height` lines on the short side of a
/// portrait or landscape video (720p means 1280×720 or 720×1280), never upscaled, even.
fn web_size((width, height): (u32, u32), max_height: u32) -> (u32, u32) {
    let short = width.min(height);
    if short <= max_height {
        return (even(width), even(height));
    }
    let scale = f64::from(max_height) / f64::from(short);
    (
        even(scaled(f64::from(width) * scale)),
        even(scaled(f64::from(height) * scale)),
    )
}

fn scaled(v: f64) -> u32 {
    // Frame sizes are far below u32::MAX; the cast only drops the fraction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rounded = v.round().max(2.0) as u32;
    rounded
}

fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

fn seconds_to_pts(seconds: f64, time_base: Rational) -> i64 {
    if time_base.numerator() == 0 {
        return 0;
    }
    let ticks = seconds * f64::from(time_base.denominator()) / f64::from(time_base.numerator());
    #[allow(clippy::cast_possible_truncation)]
    let ticks = ticks.round() as i64;
    ticks
}

/// A graph from a buffer source fed with `decoder`'s frames through `spec` to a sink.
fn video_graph(
    decoder: &ff::decoder::Video,
    time_base: Rational,
    spec: &str,
) -> Result<filter::Graph, TranscodeError> {
    let mut graph = filter::Graph::new();
    let aspect = decoder.aspect_ratio();
    let aspect = if aspect.numerator() > 0 {
        aspect
    } else {
        Rational(1, 1)
    };
    let pixel = decoder
        .format()
        .descriptor()
        .map(|d| d.name())
        .ok_or_else(|| TranscodeError::Corrupt("unknown pixel format".into()))?;
    let args = format!(
        "video_size={}x{}:pix_fmt={pixel}:time_base={}/{}:pixel_aspect={}/{}",
        decoder.width(),
        decoder.height(),
        time_base.numerator(),
        time_base.denominator().max(1),
        aspect.numerator(),
        aspect.denominator()
    );
    build_graph(&mut graph, "buffer", &args, "buffersink", spec)?;
    Ok(graph)
}

fn build_graph(
    graph: &mut filter::Graph,
    source: &str,
    args: &str,
    sink: &str,
    spec: &str,
) -> Result<(), TranscodeError> {
    let find = |name: &str| {
        filter::find(name)
            .ok_or_else(|| TranscodeError::Encode(format!("FFmpeg lacks the {name} filter")))
    };
    graph.add(&find(source)?, "in", args).map_err(corrupt)?;
    graph.add(&find(sink)?, "out", "").map_err(encode)?;
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(spec))
        .map_err(encode)?;
    graph.validate().map_err(encode)
}

/// Feeds a frame (or, with `None`, the end) to a graph's input.
fn push(graph: &mut filter::Graph, frame: Option<&ff::Frame>) -> Result<(), TranscodeError> {
    let mut input = graph
        .get("in")
        .ok_or_else(|| TranscodeError::Encode("filter graph without input".into()))?;
    let mut source = input.source();
    match frame {
        Some(frame) => source.add(frame).map_err(corrupt),
        None => source.flush().map_err(encode),
    }
}

/// Takes the next frame out of a graph; false when it has none now.
fn pull(graph: &mut filter::Graph, frame: &mut ff::Frame) -> bool {
    graph
        .get("out")
        .is_some_and(|mut output| output.sink().frame(frame).is_ok())
}

fn to_rgb_image(frame: &frame::Video) -> Result<RgbImage, TranscodeError> {
    let (width, height) = (frame.width(), frame.height());
    let stride = frame.stride(0);
    let data = frame.data(0);
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let line = data
            .get(y * stride..y * stride + row)
            .ok_or_else(|| TranscodeError::Encode("short RGB frame".into()))?;
        pixels.extend_from_slice(line);
    }
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| TranscodeError::Encode("RGB frame of the wrong size".into()))
}

/// A scratch frame of a lane's kind.
enum Scratch {
    Video(frame::Video),
    Audio(frame::Audio),
}

impl Scratch {
    fn frame(&mut self) -> &mut ff::Frame {
        match self {
            Self::Video(f) => f,
            Self::Audio(f) => f,
        }
    }
}

/// Decode → filter → encode → mux for one stream.
struct Lane {
    input: usize,
    output: usize,
    decoder: ff::decoder::Opened,
    graph: filter::Graph,
    encoder: ff::encoder::Encoder,
    time_base: Rational,
    decoded: Scratch,
    filtered: Scratch,
}

/// The video lane (upright, scaled to at most `max_height`, H.264) and its frame size.
fn video_lane(
    stream: &format::stream::Stream<'_>,
    info: &VideoStream,
    out: &mut format::context::Output,
    limits: &VideoLimits,
    global_header: bool,
) -> Result<(Lane, (u32, u32)), TranscodeError> {
    let decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(corrupt)?;
    let time_base = stream.time_base();
    let (width, height) = web_size(info.displayed(), limits.max_height);
    let spec = format!(
        "{}scale={width}:{height}:flags=bicubic,format=yuv420p",
        rotation_filter(info.rotation)
    );
    let graph = video_graph(&decoder, time_base, &spec)?;
    let h264 = ff::encoder::find_by_name("libx264")
        .or_else(|| ff::encoder::find(codec::Id::H264))
        .ok_or_else(|| TranscodeError::Encode("FFmpeg has no H.264 encoder".into()))?;
    let mut ost = out.add_stream(h264).map_err(encode)?;
    let output = ost.index();
    let mut encoder = codec::context::Context::new_with_codec(h264)
        .encoder()
        .video()
        .map_err(encode)?;
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(format::Pixel::YUV420P);
    encoder.set_time_base(time_base);
    encoder.set_aspect_ratio(Rational(1, 1));
    if let Some(rate) = stream_rate(stream) {
        encoder.set_frame_rate(Some(rate));
    }
    encoder.set_max_bit_rate(usize::try_from(limits.video_bitrate).unwrap_or(usize::MAX));
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut options = Dictionary::new();
    options.set("preset", "veryfast");
    options.set("crf", "23");
    options.set("maxrate", &limits.video_bitrate.to_string());
    options.set("bufsize", &(limits.video_bitrate * 2).to_string());
    options.set("profile", "high");
    let encoder = encoder.open_as_with(h264, options).map_err(encode)?;
    ost.set_parameters(&encoder);
    ost.set_time_base(time_base);
    let lane = Lane {
        input: stream.index(),
        output,
        decoder: decoder.0,
        graph,
        encoder: encoder.0.0,
        time_base,
        decoded: Scratch::Video(frame::Video::empty()),
        filtered: Scratch::Video(frame::Video::empty()),
    };
    Ok((lane, (width, height)))
}

/// The audio lane: resampled to stereo float planes, AAC in 1024-sample frames.
fn audio_lane(
    stream: &format::stream::Stream<'_>,
    out: &mut format::context::Output,
    limits: &VideoLimits,
    global_header: bool,
) -> Result<Lane, TranscodeError> {
    let decoder = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .map_err(corrupt)?;
    let aac = ff::encoder::find(codec::Id::AAC)
        .ok_or_else(|| TranscodeError::Encode("FFmpeg has no AAC encoder".into()))?;
    let mut ost = out.add_stream(aac).map_err(encode)?;
    let output = ost.index();
    let mut encoder = codec::context::Context::new_with_codec(aac)
        .encoder()
        .audio()
        .map_err(encode)?;
    let rate = if decoder.rate() > 0 && decoder.rate() <= 48_000 {
        decoder.rate()
    } else {
        48_000
    };
    let rate = i32::try_from(rate).unwrap_or(48_000);
    encoder.set_rate(rate);
    encoder.set_channel_layout(ff::ChannelLayout::STEREO);
    encoder.set_channels(2);
    encoder.set_format(format::Sample::F32(format::sample::Type::Planar));
    encoder.set_bit_rate(usize::try_from(limits.audio_bitrate).unwrap_or(128_000));
    let time_base = Rational(1, rate);
    encoder.set_time_base(time_base);
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let encoder = encoder.open_as(aac).map_err(encode)?;
    ost.set_parameters(&encoder);
    ost.set_time_base(time_base);

    let layout = if decoder.channel_layout().bits() == 0 {
        ff::ChannelLayout::default(i32::from(decoder.channels().max(1)))
    } else {
        decoder.channel_layout()
    };
    let in_base = stream.time_base();
    let args = format!(
        "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        in_base.numerator(),
        in_base.denominator().max(1),
        decoder.rate(),
        decoder.format().name(),
        layout.bits()
    );
    let spec = format!("aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo");
    let mut graph = filter::Graph::new();
    build_graph(&mut graph, "abuffer", &args, "abuffersink", &spec)?;
    if let Some(mut sink) = graph.get("out") {
        sink.sink().set_frame_size(AAC_FRAME);
    }
    Ok(Lane {
        input: stream.index(),
        output,
        decoder: decoder.0,
        graph,
        encoder: encoder.0.0,
        time_base,
        decoded: Scratch::Audio(frame::Audio::empty()),
        filtered: Scratch::Audio(frame::Audio::empty()),
    })
}

impl Lane {
    /// Takes one packet of the lane's stream. A packet the decoder refuses is skipped, as
    /// players do; a file with nothing decodable fails at the end.
    fn feed(
        &mut self,
        packet: &ff::Packet,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        if self.decoder.send_packet(packet).is_ok() {
            self.drain_decoder(out, time_bases)?;
        }
        Ok(())
    }

    /// Flushes decoder, graph and encoder at the end of the input.
    fn finish(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(out, time_bases)?;
        push(&mut self.graph, None)?;
        self.drain_graph(out, time_bases)?;
        self.encoder.send_eof().map_err(encode)?;
        self.drain_encoder(out, time_bases)
    }

    fn drain_decoder(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        while self.decoder.receive_frame(self.decoded.frame()).is_ok() {
            let decoded = self.decoded.frame();
            decoded.set_pts(decoded.timestamp());
            push(&mut self.graph, Some(decoded))?;
            self.drain_graph(out, time_bases)?;
        }
        Ok(())
    }

    fn drain_graph(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        while pull(&mut self.graph, self.filtered.frame()) {
            if let Scratch::Video(frame) = &mut self.filtered {
                // The encoder picks its own keyframes rather than copying the source's.
                frame.set_kind(ff::picture::Type::None);
            }
            self.encoder
                .send_frame(self.filtered.frame())
                .map_err(encode)?;
            self.drain_encoder(out, time_bases)?;
        }
        Ok(())
    }

    fn drain_encoder(
        &mut self,
        out: &mut format::context::Output,
        time_bases: &[Rational],
    ) -> Result<(), TranscodeError> {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.output);
            packet.rescale_ts(self.time_base, time_bases[self.output]);
            packet.write_interleaved(out).map_err(encode)?;
        }
        Ok(())
    }
}

fn stream_rate(stream: &format::stream::Stream<'_>) -> Option<Rational> {
    [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
}

fn corrupt(e: ff::Error) -> TranscodeError {
    TranscodeError::Corrupt(e.to_string())
}

fn encode(e: ff::Error) -> TranscodeError {
    TranscodeError::Encode(e.to_string())
}
