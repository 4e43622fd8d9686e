//! Layered configuration: built-in defaults, then a TOML file, then `SEALPOST__…` environment
//! variables (`__` separates sections: `SEALPOST__UPLOADS__MAX_SIZE=1048576`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// A setting that holds a credential (a database URL with its password, a link-signing key):
/// used as given, never shown by `Debug`, so no log line or panic message prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything `sealpost serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory for the embedded defaults (SQLite file, blobs).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://<data_dir>/sealpost.db`.
    pub database_url: Option<Secret>,
    /// `file:///PATH` or `s3://BUCKET?endpoint=URL&region=REGION`; defaults to
    /// `file://<data_dir>/blobs`.
    pub blob_store: Option<String>,
    /// `memory://` (in this process) or `kafka://HOST:PORT[,HOST:PORT…]`.
    pub bus: String,
    /// Absolute base URL clients reach this server at, for `Location` headers; relative
    /// locations are sent when unset.
    pub public_url: Option<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Origins (e.g. `https://web.example.com`) whose pages may call the API from a browser;
    /// empty disables CORS.
    pub cors_origins: Vec<String>,
    /// Proxies in front of this server (addresses or CIDR blocks) whose `X-Forwarded-For` is
    /// believed: a request from one of them comes from the last address there that is not a
    /// trusted proxy. Empty: every request comes from its TCP peer.
    pub trusted_proxies: Vec<String>,
    /// Whether the proxies in front pass 1xx interim responses on (HAProxy and Caddy do;
    /// nginx does not, and takes one for the final response). A request that came through a
    /// proxy gets `104 Upload Resumption Supported` only when this is set.
    pub proxies_forward_interim: bool,
    /// Client connections: header timeout and caps.
    pub connections: ConnectionSettings,
    /// Database pool size.
    pub database_max_connections: u32,
    /// How long shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Upload limits and lifetimes.
    pub uploads: UploadSettings,
    /// How blob downloads are served.
    pub downloads: DownloadMode,
    /// Blob retention, signed links and download redirects.
    pub blobs: BlobSettings,
    /// Account and token settings.
    pub auth: AuthSettings,
    /// Which parts of the service this process runs.
    pub role: Role,
    /// Processing of plaintext previews.
    pub media: MediaSettings,
    /// The chat server's limits and timings.
    pub chat: ChatSettings,
}

/// Client connections (docs/operations.md, "Limits").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// A client must send a request's whole header within this long, and a connection idle
    /// between requests is closed after it (HTTP/1; slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections open at once on this node; more are closed as they are accepted.
    pub max: usize,
    /// Connections open at once from one client address (an IPv6 client's /64); a
    /// `trusted_proxies` address is not limited.
    pub max_per_address: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max: 10_000,
            max_per_address: 256,
        }
    }
}

impl ConnectionSettings {
    /// Refuses limits that would refuse every connection.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max > 0 && self.max_per_address > 0,
            "connections.max and connections.max_per_address must be at least 1"
        );
        anyhow::ensure!(
            self.header_read_timeout > Duration::ZERO,
            "connections.header_read_timeout must be more than 0"
        );
        Ok(())
    }
}

/// The chat server's limits and timings (docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatSettings {
    /// Largest message body (decoded), bytes.
    pub max_body: usize,
    /// Largest frame a client may send, bytes.
    pub max_frame: usize,
    /// Messages pushed to a device before it must acknowledge.
    pub window: usize,
    /// How often the server pings a connection.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection silent this long is dropped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A device that does not take a frame within this long is disconnected (4008).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Sends and receipts one account may address to one account a minute.
    pub messages_per_pair_per_minute: u64,
    /// Body bytes one device may send a minute.
    pub bytes_per_device_per_minute: u64,
    /// Frames but acknowledgements one device may send a minute, all at once at most (more
    /// are refused `rate-limited` before any other work; typing indicators are dropped).
    pub frames_per_device_per_minute: u64,
    /// How long a message waits in an inbox before it is dropped unread.
    #[serde(with = "humantime_serde")]
    pub inbox_retention: Duration,
    /// A send no delivery worker stored after this long is published again (the bus lost it).
    #[serde(with = "humantime_serde")]
    pub republish_after: Duration,
    /// How often sends the bus lost are published again and expired inbox messages dropped.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Most members a group may have.
    pub max_group_members: usize,
    /// Delivery workers per worker node (members of the `chat-delivery` consumer group).
    pub delivery_workers: usize,
    /// Most one-time keys a device may hold in the key directory (and publish at once).
    pub max_one_time_keys: usize,
    /// Under this many one-time keys a device is told to publish more (`keys_low`).
    pub one_time_keys_low: usize,
    /// Key-directory claims (`GET /v1/keys/{account}`) one account may make a minute.
    pub key_claims_per_minute: u64,
    /// One-time keys of one account that claims may take a minute, whoever asks; past it,
    /// claims get the fallback keys.
    pub key_claims_per_target_per_minute: u64,
    /// Unacknowledged messages one device's inbox may hold: a send to an account with a
    /// device this full is refused (`recipient-inbox-full`); a group send skips that device.
    pub max_inbox_messages: u64,
    /// Unacknowledged body bytes one device's inbox may hold (as `max_inbox_messages`).
    pub max_inbox_bytes: u64,
    /// Group changes (creations, members added, removed or given a role, leaving) one account
    /// may make a minute.
    pub group_changes_per_account_per_minute: u64,
    /// Changes one group may take a minute, whoever makes them.
    pub group_changes_per_group_per_minute: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        let chat = sealpost_chat::ChatConfig::default();
        Self {
            max_body: chat.max_body,
            max_frame: chat.max_frame,
            window: chat.window,
            ping_interval: chat.ping_interval,
            idle_timeout: chat.idle_timeout,
            write_timeout: chat.write_timeout,
            messages_per_pair_per_minute: chat.messages_per_pair_per_minute,
            bytes_per_device_per_minute: chat.bytes_per_device_per_minute,
            frames_per_device_per_minute: chat.frames_per_device_per_minute,
            inbox_retention: chat.inbox_retention,
            republish_after: chat.republish_after,
            sweep_interval: Duration::from_secs(30),
            max_group_members: chat.max_group_members,
            delivery_workers: chat.delivery_workers,
            max_one_time_keys: chat.max_one_time_keys,
            one_time_keys_low: chat.one_time_keys_low,
            key_claims_per_minute: chat.key_claims_per_minute,
            key_claims_per_target_per_minute: chat.key_claims_per_target_per_minute,
            max_inbox_messages: chat.max_inbox_messages,
            max_inbox_bytes: chat.max_inbox_bytes,
            group_changes_per_account_per_minute: chat.group_changes_per_account_per_minute,
            group_changes_per_group_per_minute: chat.group_changes_per_group_per_minute,
        }
    }
}

impl ChatSettings {
    /// The chat server's configuration.
    pub fn config(&self) -> sealpost_chat::ChatConfig {
        sealpost_chat::ChatConfig {
            max_body: self.max_body,
            max_frame: self.max_frame,
            window: self.window,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            messages_per_pair_per_minute: self.messages_per_pair_per_minute,
            bytes_per_device_per_minute: self.bytes_per_device_per_minute,
            frames_per_device_per_minute: self.frames_per_device_per_minute,
            inbox_retention: self.inbox_retention,
            republish_after: self.republish_after,
            max_group_members: self.max_group_members,
            delivery_workers: self.delivery_workers,
            max_one_time_keys: self.max_one_time_keys,
            one_time_keys_low: self.one_time_keys_low,
            key_claims_per_minute: self.key_claims_per_minute,
            key_claims_per_target_per_minute: self.key_claims_per_target_per_minute,
            max_inbox_messages: self.max_inbox_messages,
            max_inbox_bytes: self.max_inbox_bytes,
            group_changes_per_account_per_minute: self.group_changes_per_account_per_minute,
            group_changes_per_group_per_minute: self.group_changes_per_group_per_minute,
        }
    }

    /// Refuses settings that would stop delivery or pinging.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zero = Duration::ZERO;
        anyhow::ensure!(self.window > 0, "chat.window must be at least 1");
        anyhow::ensure!(
            self.delivery_workers > 0,
            "chat.delivery_workers must be at least 1"
        );
        anyhow::ensure!(
            self.max_one_time_keys > 0 && self.one_time_keys_low <= self.max_one_time_keys,
            "chat.max_one_time_keys must be at least 1, and chat.one_time_keys_low at most that"
        );
        anyhow::ensure!(
            self.max_group_members >= 2,
            "chat.max_group_members must be at least 2"
        );
        anyhow::ensure!(
            self.max_frame > self.max_body,
            "chat.max_frame must be more than chat.max_body"
        );
        anyhow::ensure!(
            self.ping_interval > zero
                && self.idle_timeout > self.ping_interval
                && self.write_timeout > zero
                && self.sweep_interval > zero
                && self.republish_after > zero
                && self.inbox_retention > zero,
            "chat timings must be more than 0, and chat.idle_timeout more than chat.ping_interval"
        );
        Ok(())
    }
}

/// Which parts of the service one process runs; every role needs the same backends, and
/// nothing one role needs lives only in another's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process.
    #[default]
    All,
    /// The HTTP API (accounts, devices, uploads, downloads, media status) and its sweeps.
    Media,
    /// The chat gateway (`/v1/chat`).
    Chat,
    /// The media workers (and the sweep that requeues lost media jobs) and the chat delivery
    /// worker; serves only `/healthz`, `/readyz` and `/metrics`.
    Worker,
}

impl Role {
    /// The role's name, as `--role` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Media => "media",
            Self::Chat => "chat",
            Self::Worker => "worker",
        }
    }

    /// Whether this role serves the media API.
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Media)
    }

    /// Whether this role serves the chat gateway.
    pub fn serves_chat(self) -> bool {
        matches!(self, Self::All | Self::Chat)
    }

    /// Whether this role runs the workers (media processing, chat delivery).
    pub fn runs_workers(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

/// Processing of plaintext previews by the media workers: what they accept, the limits the
/// decoding child process runs under, retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSettings {
    /// Jobs one node processes at once (each in its own child process). On the in-process
    /// bus jobs are taken one at a time whatever this says.
    pub concurrency: usize,
    /// Largest image preview processed, bytes.
    pub max_bytes: u64,
    /// Most pixels an image may have.
    pub max_pixels: u64,
    /// Longest side an image may have, pixels.
    pub max_side: u32,
    /// Most animation frames.
    pub max_frames: u32,
    /// Most memory one image decode may allocate, checked before decoding, bytes.
    pub max_alloc: u64,
    /// Largest video or audio preview processed, bytes.
    pub max_video_bytes: u64,
    /// Longest video or audio.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Most pixels of a video frame.
    pub max_video_pixels: u64,
    /// Longest side of a video frame, pixels.
    pub max_video_side: u32,
    /// The web rendition's short side at most (720: 720p), never upscaled.
    pub max_height: u32,
    /// The web rendition's video bitrate cap, bits per second.
    pub video_bitrate: u64,
    /// The web rendition's audio bitrate, bits per second.
    pub audio_bitrate: u64,
    /// Address space the child process may map (`prlimit --as`), bytes; the kernel stops it
    /// beyond.
    pub memory_limit: u64,
    /// CPU time the child may use (`prlimit --cpu`).
    #[serde(with = "humantime_serde")]
    pub cpu_limit: Duration,
    /// Wall-clock time the child may take before it is killed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts at one preview before it fails for good (only transient failures retry).
    pub max_attempts: u32,
    /// Wait before the first retry; it doubles with each attempt, up to a minute.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// A preview pending this long has lost its job (or its worker) and is queued again.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// How often pending previews are checked for lost jobs.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// The `sealpost` executable the child runs (`sealpost transcode`); defaults to
    /// this process's own.
    pub transcoder: Option<PathBuf>,
    /// Directory for the child's input and output files; defaults to the system's.
    pub work_dir: Option<PathBuf>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        let image = sealpost_transcode::ImageLimits::default();
        let video = sealpost_transcode::VideoLimits::default();
        Self {
            concurrency: 2,
            max_bytes: image.max_bytes,
            max_pixels: image.max_pixels,
            max_side: image.max_side,
            max_frames: image.max_frames,
            max_alloc: image.max_alloc,
            max_video_bytes: video.max_bytes,
            max_duration: video.max_duration,
            max_video_pixels: video.max_pixels,
            max_video_side: video.max_side,
            max_height: video.max_height,
            video_bitrate: video.video_bitrate,
            audio_bitrate: video.audio_bitrate,
            memory_limit: 2 << 30,
            cpu_limit: Duration::from_secs(900),
            timeout: Duration::from_secs(600),
            max_attempts: 5,
            retry_backoff: Duration::from_secs(1),
            stale_after: Duration::from_secs(1800),
            sweep_interval: Duration::from_secs(60),
            transcoder: None,
            work_dir: None,
        }
    }
}

impl MediaSettings {
    /// The video and audio limits the child checks.
    pub fn video_limits(&self) -> sealpost_transcode::VideoLimits {
        sealpost_transcode::VideoLimits {
            max_bytes: self.max_video_bytes,
            max_duration: self.max_duration,
            max_pixels: self.max_video_pixels,
            max_side: self.max_video_side,
            max_height: self.max_height,
            video_bitrate: self.video_bitrate,
            audio_bitrate: self.audio_bitrate,
        }
    }

    /// The largest file the child may be given.
    pub fn max_file(&self) -> u64 {
        self.max_bytes.max(self.max_video_bytes)
    }

    /// The image limits the child checks before decoding.
    pub fn image_limits(&self) -> sealpost_transcode::ImageLimits {
        sealpost_transcode::ImageLimits {
            max_bytes: self.max_bytes,
            max_pixels: self.max_pixels,
            max_side: self.max_side,
            max_frames: self.max_frames,
            max_alloc: self.max_alloc,
        }
    }

    /// Refuses settings that would stop processing, or let a job be requeued while its
    /// worker may still be on it.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zero = Duration::ZERO;
        anyhow::ensure!(self.concurrency > 0, "media.concurrency must be at least 1");
        anyhow::ensure!(
            self.max_attempts > 0,
            "media.max_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.cpu_limit >= Duration::from_secs(1) && self.timeout > zero,
            "media.cpu_limit must be at least 1s and media.timeout more than 0"
        );
        anyhow::ensure!(
            self.sweep_interval > zero,
            "media.sweep_interval must be more than 0"
        );
        anyhow::ensure!(
            self.memory_limit > self.max_alloc,
            "media.memory_limit ({}) must be more than media.max_alloc ({}): the child needs \
             room beside the decoded image",
            self.memory_limit,
            self.max_alloc
        );
        // One attempt: the child's time, plus copying and storing, plus at most a minute of
        // backoff before the next attempt restarts the clock.
        let attempt = self.timeout + Duration::from_secs(120);
        anyhow::ensure!(
            self.stale_after > attempt,
            "media.stale_after ({}) must be longer than media.timeout + 2 minutes ({}), or a \
             job would be queued again while it runs",
            humantime::format_duration(self.stale_after),
            humantime::format_duration(attempt)
        );
        Ok(())
    }
}

/// How `GET /v1/blobs/{id}` delivers bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DownloadMode {
    /// Stream the bytes from the blob store through this server.
    #[default]
    Proxy,
    /// Answer an authorised request with a 307 to a short-lived URL on the CDN base URL or a
    /// presigned S3 URL, so bytes never pass through this server.
    Redirect,
}

/// Blob retention, signed links and download redirects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobSettings {
    /// How long a blob is kept after its last upload or link mint.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often expired blobs are looked for and deleted.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Lifetime of a signed link when the request names none.
    #[serde(with = "humantime_serde")]
    pub link_ttl: Duration,
    /// Longest lifetime a link can ask for.
    #[serde(with = "humantime_serde")]
    pub max_link_ttl: Duration,
    /// Link-signing keys as `KID:BASE64_SECRET` (secrets of at least 32 bytes); the first
    /// signs, all verify. Empty: a key generated in the data directory (one node only).
    pub link_keys: Vec<Secret>,
    /// Base URL of a CDN (or caching proxy) in front of this server: signed links point there,
    /// and redirect mode sends downloads there.
    pub cdn_base_url: Option<String>,
    /// Lifetime of the URL a redirect-mode download is sent to.
    #[serde(with = "humantime_serde")]
    pub redirect_ttl: Duration,
}

impl BlobSettings {
    /// Refuses settings that would delete blobs at once, stop the sweep, or let a link
    /// outlive the blob it points to.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zero = Duration::ZERO;
        anyhow::ensure!(self.retention > zero, "blobs.retention must be more than 0");
        anyhow::ensure!(
            self.sweep_interval > zero,
            "blobs.sweep_interval must be more than 0"
        );
        anyhow::ensure!(
            self.link_ttl > zero && self.redirect_ttl > zero,
            "blobs.link_ttl and blobs.redirect_ttl must be more than 0"
        );
        anyhow::ensure!(
            self.link_ttl <= self.max_link_ttl,
            "blobs.link_ttl ({}) is longer than blobs.max_link_ttl ({})",
            humantime::format_duration(self.link_ttl),
            humantime::format_duration(self.max_link_ttl)
        );
        anyhow::ensure!(
            self.max_link_ttl <= self.retention && self.redirect_ttl <= self.retention,
            "blobs.max_link_ttl and blobs.redirect_ttl must not be longer than blobs.retention \
             ({}): a link would outlive its blob",
            humantime::format_duration(self.retention)
        );
        Ok(())
    }
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            sweep_interval: Duration::from_secs(300),
            link_ttl: Duration::from_secs(3600),
            max_link_ttl: Duration::from_secs(7 * 24 * 3600),
            link_keys: Vec::new(),
            cdn_base_url: None,
            redirect_ttl: Duration::from_secs(300),
        }
    }
}

/// Upload limits and lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// Largest upload in bytes.
    pub max_size: u64,
    /// How long an unfinished upload lives after its last progress.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long rows of finished or expired uploads are kept (so clients get 410, not 404).
    #[serde(with = "humantime_serde")]
    pub finished_retention: Duration,
    /// Unfinished uploads one account may have at once.
    pub max_active_per_account: u32,
    /// Sum of declared lengths of one account's unfinished uploads.
    pub max_active_bytes_per_account: u64,
    /// Blobs one account may hold: uploaded (or uploaded again) within the blob retention,
    /// unfinished uploads included; a blob counts for every account that uploaded it.
    pub max_stored_blobs_per_account: u64,
    /// Their bytes.
    pub max_stored_bytes_per_account: u64,
    /// Previews (`kind=preview` uploads) one account may have uploading or waiting for the
    /// media worker at once; more get 429.
    pub max_previews_per_account: u32,
    /// Partial uploads one tus final upload may concatenate (unjoined parts also count in
    /// `max_active_per_account`, so the lower of the two is what a client can use).
    pub max_concat_parts: usize,
    /// Bytes between durable checkpoints while a request streams in.
    pub checkpoint_bytes: u64,
    /// Upload requests streaming at once on this node; more get 503.
    pub max_concurrent_transfers: usize,
    /// Upload requests one account may stream at once on a node (only one each while a quarter
    /// of the node's transfer slots or fewer are free); more get 429.
    pub max_transfers_per_account: usize,
    /// Upload requests (creations, appends, offset checks, terminations) one account may make
    /// a minute on a node, all at once at most; each MiB a request stores gives one back, so
    /// only requests that move little count. More get 429 `rate-limited` (0: no limit).
    pub requests_per_account_per_minute: u64,
    /// A request that sends no bytes for this long is treated as interrupted.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Bytes a second a body must bring on average over each `transfer_rate_window` to keep
    /// its slot (0: no minimum); slower ones get 408 and keep what arrived.
    pub min_transfer_rate: u64,
    /// The window over which `min_transfer_rate` is measured.
    #[serde(with = "humantime_serde")]
    pub transfer_rate_window: Duration,
    /// How often a streaming request checks that no request on another node took its upload
    /// over (takeovers on the same node are immediate).
    #[serde(with = "humantime_serde")]
    pub lease_check_interval: Duration,
    /// How often expired uploads are swept.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

/// Account and token settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer token lifetime.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Login challenge lifetime.
    #[serde(with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// Login attempts a minute per phone number.
    pub attempts_per_phone_per_minute: u32,
    /// Registration and login attempts a minute per client address.
    pub attempts_per_address_per_minute: u32,
    /// Devices one account may have at once.
    pub max_devices_per_account: u32,
    /// How long a device-link code lives.
    #[serde(with = "humantime_serde")]
    pub link_code_ttl: Duration,
    /// Phone-number lookups one account may make a minute.
    pub lookups_per_account_per_minute: u32,
    /// Answers about phone numbers (lookups by any account, and registrations) one client
    /// address may get a minute.
    pub lookups_per_address_per_minute: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            blob_store: None,
            bus: "memory://".into(),
            public_url: None,
            log_format: LogFormat::Text,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            proxies_forward_interim: false,
            connections: ConnectionSettings::default(),
            database_max_connections: 16,
            shutdown_grace: Duration::from_secs(30),
            uploads: UploadSettings::default(),
            downloads: DownloadMode::Proxy,
            blobs: BlobSettings::default(),
            auth: AuthSettings::default(),
            role: Role::All,
            media: MediaSettings::default(),
            chat: ChatSettings::default(),
        }
    }
}

impl UploadSettings {
    /// Refuses limits that would refuse every upload.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_concat_parts > 0,
            "uploads.max_concat_parts must be at least 1"
        );
        anyhow::ensure!(
            self.max_transfers_per_account > 0,
            "uploads.max_transfers_per_account must be at least 1"
        );
        anyhow::ensure!(
            !self.transfer_rate_window.is_zero(),
            "uploads.transfer_rate_window must be longer than 0 s"
        );
        Ok(())
    }
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            max_size: 2 << 30,
            ttl: Duration::from_secs(24 * 3600),
            finished_retention: Duration::from_secs(7 * 24 * 3600),
            max_active_per_account: 20,
            max_active_bytes_per_account: 10 << 30,
            max_stored_blobs_per_account: 20_000,
            max_stored_bytes_per_account: 50 << 30,
            max_previews_per_account: 10,
            max_concat_parts: 16,
            checkpoint_bytes: 8 << 20,
            max_concurrent_transfers: 256,
            max_transfers_per_account: 8,
            requests_per_account_per_minute: 300,
            idle_timeout: Duration::from_secs(60),
            min_transfer_rate: 1024,
            transfer_rate_window: Duration::from_secs(30),
            lease_check_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        let auth = sealpost_auth::AuthConfig::default();
        Self {
            token_ttl: auth.token_ttl,
            challenge_ttl: auth.challenge_ttl,
            attempts_per_phone_per_minute: auth.attempts_per_phone_per_minute,
            attempts_per_address_per_minute: auth.attempts_per_address_per_minute,
            max_devices_per_account: auth.max_devices_per_account,
            link_code_ttl: auth.link_code_ttl,
            lookups_per_account_per_minute: auth.lookups_per_account_per_minute,
            lookups_per_address_per_minute: auth.lookups_per_address_per_minute,
        }
    }
}

/// Values given as command-line flags; unset ones leave lower layers alone.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded SQLite database and blobs [default: ./data]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<Secret>,
    /// Blob store URL: file:///PATH or s3://BUCKET?endpoint=URL&region=REGION
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_store: Option<String>,
    /// Bus URL: memory:// or kafka://HOST:PORT [default: memory://]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// Downloads: stream through this server, or redirect to a CDN / presigned URL [default: proxy]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads: Option<DownloadMode>,
    /// Which parts of the service to run [default: all]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Log format
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Merges the layers: defaults, `file` (if any), `SEALPOST__` environment, `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    file.display()
                ))));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("SEALPOST__").split("__"))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .as_ref()
            .map(|url| url.expose().to_owned())
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("sealpost.db").display()))
    }

    /// The blob store URL, defaulting to files in the data directory.
    pub fn blob_store_url(&self) -> String {
        self.blob_store
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("blobs").display()))
    }

    /// The auth service's configuration.
    pub fn auth_config(&self) -> sealpost_auth::AuthConfig {
        sealpost_auth::AuthConfig {
            token_ttl: self.auth.token_ttl,
            challenge_ttl: self.auth.challenge_ttl,
            attempts_per_phone_per_minute: self.auth.attempts_per_phone_per_minute,
            attempts_per_address_per_minute: self.auth.attempts_per_address_per_minute,
            max_devices_per_account: self.auth.max_devices_per_account,
            link_code_ttl: self.auth.link_code_ttl,
            lookups_per_account_per_minute: self.auth.lookups_per_account_per_minute,
            lookups_per_address_per_minute: self.auth.lookups_per_address_per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sealpost.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from-file\"\n[uploads]\nmax_size = 10\nttl = \"2h\"\n",
            )?;
            jail.set_env("SEALPOST__DATA_DIR", "/from-env");
            jail.set_env("SEALPOST__UPLOADS__MAX_SIZE", "20");
            let flags = Overrides {
                data_dir: Some("/from-flag".into()),
                ..Overrides::default()
            };
            let s = Settings::load(Some(Path::new("sealpost.toml")), &flags).map_err(|e| *e)?;
            assert_eq!(s.listen.port(), 9000);
            assert_eq!(s.data_dir, PathBuf::from("/from-flag"));
            assert_eq!(s.uploads.max_size, 20);
            assert_eq!(s.uploads.ttl, Duration::from_secs(7200));
            assert_eq!(s.database_url(), "sqlite:///from-flag/sealpost.db");
            Ok(())
        });
    }

    #[test]
    fn a_concatenation_limit_refusing_every_final_upload_is_refused() {
        assert!(UploadSettings::default().validate().is_ok());
        let bad = UploadSettings {
            max_concat_parts: 0,
            ..UploadSettings::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn blob_settings_that_would_lose_blobs_or_outlive_them_are_refused() {
        assert!(BlobSettings::default().validate().is_ok());
        let hour = Duration::from_secs(3600);
        for bad in [
            BlobSettings {
                retention: Duration::ZERO,
                ..BlobSettings::default()
            },
            BlobSettings {
                sweep_interval: Duration::ZERO,
                ..BlobSettings::default()
            },
            BlobSettings {
                link_ttl: 2 * hour,
                max_link_ttl: hour,
                ..BlobSettings::default()
            },
            BlobSettings {
                retention: hour,
                ..BlobSettings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chat_settings_that_would_stop_delivery_or_pinging_are_refused() {
        assert!(ChatSettings::default().validate().is_ok());
        let defaults = ChatSettings::default;
        for bad in [
            ChatSettings {
                window: 0,
                ..defaults()
            },
            ChatSettings {
                delivery_workers: 0,
                ..defaults()
            },
            ChatSettings {
                max_group_members: 1,
                ..defaults()
            },
            ChatSettings {
                max_frame: defaults().max_body,
                ..defaults()
            },
            ChatSettings {
                idle_timeout: defaults().ping_interval,
                ..defaults()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_settings_that_would_stop_processing_or_requeue_running_jobs_are_refused() {
        assert!(MediaSettings::default().validate().is_ok());
        let defaults = MediaSettings::default;
        for bad in [
            MediaSettings {
                concurrency: 0,
                ..defaults()
            },
            MediaSettings {
                max_attempts: 0,
                ..defaults()
            },
            MediaSettings {
                memory_limit: defaults().max_alloc,
                ..defaults()
            },
            MediaSettings {
                stale_after: defaults().timeout,
                ..defaults()
            },
            MediaSettings {
                cpu_limit: Duration::from_millis(500),
                ..defaults()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "lisen = \"127.0.0.1:1\"\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            assert!(
                Settings::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err()
            );
            Ok(())
        });
    }
}
