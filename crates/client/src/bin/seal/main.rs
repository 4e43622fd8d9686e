//! `seal`: end-to-end encrypted media from the command line.
//!
//! ```text
//! seal register --phone +15551234567 --name Ada     # new identity key, kept in the config dir
//! seal login                                         # a fresh token
//! seal upload photo.jpg > photo.ref.json             # seal + resumable upload; prints the MediaRef
//! seal download photo.ref.json -o photo.jpg          # download, verify, open
//! seal send --to +15557654321 --text "hi"            # an end-to-end encrypted text
//! seal send --to +15557654321 --file clip.mp4        # a sealed file, end-to-end encrypted
//! seal listen --save-to received/                    # print what arrives, save attachments
//! seal group create --member +15557654321            # a group; seal send --group ID …
//! seal device code                                   # link another device: on it,
//! seal device link --phone +15551234567 --code CODE  #   in a config dir of its own
//! ```
//!
//! Every command takes `--server URL` (or `SEAL_SERVER`, or `server = "…"` in
//! `<config dir>/config.toml`). The config dir (`--config-dir`, `SEAL_CONFIG_DIR`, default
//! `$XDG_CONFIG_HOME/seal` or `~/.config/seal`) holds the identity key and the token, readable by
//! the owner only, and the state of unfinished uploads.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use sealpost_client::{Client, ClientError, E2e, MediaRef, Progress, write_private_json};
use sealpost_proto::Plaintext;
use serde::{Deserialize, Serialize};

mod chat;
mod directory;

#[derive(Debug, Parser)]
#[command(
    name = "seal",
    version,
    about = "End-to-end encrypted media for Sealpost"
)]
struct Cli {
    /// The Sealpost server, e.g. https://media.example.com
    #[arg(long, env = "SEAL_SERVER", global = true)]
    server: Option<String>,
    /// Where keys, the token and upload state live
    #[arg(long, env = "SEAL_CONFIG_DIR", global = true)]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates an account with a new identity key, and logs in
    Register {
        /// Phone number in E.164 form, e.g. +15551234567
        #[arg(long)]
        phone: String,
        /// Display name
        #[arg(long)]
        name: String,
    },
    /// Gets a fresh token with the stored identity key
    Login,
    /// Seals FILE and uploads it (resumable: run it again after an interruption); prints the
    /// MediaRef JSON to send to the recipient
    Upload {
        /// The file to send
        file: PathBuf,
        /// Upload at most this many bytes per second
        #[arg(long)]
        limit_rate: Option<u64>,
        /// Do not attach thumbnails (by default an image gets a tiny inline JPEG, a BlurHash
        /// and a sealed 320 px thumbnail)
        #[arg(long)]
        no_thumbnail: bool,
    },
    /// Downloads the media a MediaRef JSON file names, verifies and opens it
    Download {
        /// The MediaRef JSON (from `seal upload`, or from a message)
        reference: PathBuf,
        /// Where to write the opened file
        #[arg(short, long)]
        output: PathBuf,
        /// Only these plaintext bytes: START-END (END included) or START- (to the end);
        /// fetches just the segments that hold them
        #[arg(long)]
        range: Option<String>,
    },
    /// Sends a message, end-to-end encrypted, to every device of the account with a phone
    /// number or of a group's members: a text, or a file (sealed and uploaded first,
    /// resumably) with an optional caption; prints its server id
    Send {
        /// The recipient's phone number in E.164 form
        #[arg(long, required_unless_present = "group", conflicts_with = "group")]
        to: Option<String>,
        /// The group (an id from `seal group create` or `seal group list`)
        #[arg(long)]
        group: Option<String>,
        /// The message
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// A photo, video or any file to send
        #[arg(long)]
        file: Option<PathBuf>,
        /// The file's caption
        #[arg(long, requires = "file")]
        caption: Option<String>,
        /// Do not attach thumbnails to the file
        #[arg(long, requires = "file")]
        no_thumbnail: bool,
        /// The server id of the message this one answers
        #[arg(long)]
        reply_to: Option<String>,
    },
    /// Prints messages, receipts and group changes as they arrive (the offline ones first),
    /// answering each message with a `delivered` receipt
    Listen {
        /// Stop after this many (messages, receipts and group changes)
        #[arg(long)]
        count: Option<u64>,
        /// One JSON object a line
        #[arg(long)]
        json: bool,
        /// Download, verify and open each attachment into this directory (with its MediaRef
        /// next to it, for `seal download --range`), then send a `read` receipt
        #[arg(long)]
        save_to: Option<PathBuf>,
    },
    /// Links another device to this account, or this config dir to an account
    #[command(subcommand)]
    Device(directory::DeviceCommand),
    /// Creates groups, adds members, lists groups
    #[command(subcommand)]
    Group(directory::GroupCommand),
    /// Shows what this account uses of its storage quota and unfinished uploads
    Usage {
        /// The server's JSON as is
        #[arg(long)]
        json: bool,
    },
}

/// The stored identity.
#[derive(Serialize, Deserialize)]
struct Identity {
    phone: String,
    /// This device's number in the account (1: the one that registered).
    #[serde(default = "first_device")]
    device_id: u32,
    /// Standard base64 of the Ed25519 secret key.
    secret_key: String,
}

fn first_device() -> u32 {
    1
}

/// The stored session.
#[derive(Serialize, Deserialize)]
struct Session {
    server: String,
    token: String,
}

/// A failure with the message to show and the exit code.
struct Failure(String, u8);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let message = match &e {
            ClientError::Network(_) => format!("{e}. Is the server running and the URL right?"),
            ClientError::Server { status: 401, .. } => {
                "the session has expired or was revoked: run `seal login`".to_owned()
            }
            ClientError::NotLoggedIn => "not logged in: run `seal login`".to_owned(),
            ClientError::HashMismatch { .. } => {
                format!("{e}: the download is not the file that was sent; nothing was written")
            }
            ClientError::Tampered(_) | ClientError::PlaintextMismatch => {
                format!("{e}: the file was altered or the key is wrong; nothing was written")
            }
            ClientError::StateInUse(_) => {
                format!("{e} (a running `seal listen`?): stop it, or wait for it to finish")
            }
            ClientError::Interrupted => {
                return Self(
                    "stopped. Run the same command again to resume.".to_owned(),
                    130,
                );
            }
            _ => e.to_string(),
        };
        Self(message, 1)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string(), 1)
    }
}

fn config_dir(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| {
            Failure(
                "no config dir: set --config-dir or SEAL_CONFIG_DIR".into(),
                2,
            )
        })?;
    Ok(base.join("seal"))
}

/// Writes `value` as JSON in the config dir, which only its owner may enter.
fn write_private(path: &Path, value: &impl Serialize) -> Result<(), Failure> {
    write_private_json(path, value)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, missing: &str) -> Result<T, Failure> {
    let text = std::fs::read_to_string(path).map_err(|_| Failure(missing.to_owned(), 2))?;
    serde_json::from_str(&text).map_err(|e| Failure(format!("{}: {e}", path.display()), 2))
}

fn server(flag: Option<String>, dir: &Path) -> Result<String, Failure> {
    if let Some(server) = flag {
        return Ok(server);
    }
    let file = dir.join("config.toml");
    let configured = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| toml_server(&t));
    configured.ok_or_else(|| {
        Failure(
            format!(
                "no server: pass --server URL, set SEAL_SERVER, or put server = \"URL\" in {}",
                file.display()
            ),
            2,
        )
    })
}

/// Reads `server = "…"` from the config file.
fn toml_server(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "server").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Parses `START-END` (END included) or `START-` for a file of `size` bytes.
fn parse_range(spec: &str, size: u64) -> Result<std::ops::Range<u64>, Failure> {
    let bad = || {
        Failure(
            format!(
                "--range {spec:?}: use START-END (END included) or START-, within the file's {size} bytes"
            ),
            2,
        )
    };
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end = match end.trim() {
        "" => size,
        end => end
            .parse::<u64>()
            .map_err(|_| bad())?
            .saturating_add(1)
            .min(size),
    };
    if start >= end {
        return Err(bad());
    }
    Ok(start..end)
}

/// Shows progress on a terminal: bytes, rate, time left.
struct Bar {
    started: Instant,
    on: bool,
}

impl Bar {
    fn show(&mut self, p: Progress) {
        if !self.on || p.total == 0 {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let done = p.sent.saturating_sub(p.resumed_at) as f64;
        let rate = done / secs;
        let left = p.total.saturating_sub(p.sent) as f64;
        let eta = if rate > 0.0 { left / rate } else { 0.0 };
        let mib = |b: f64| b / (1 << 20) as f64;
        eprint!(
            "\r{:5.1}%  {:.1}/{:.1} MiB  {:.1} MiB/s  ETA {:.0}s   ",
            100.0 * p.sent as f64 / p.total as f64,
            mib(p.sent as f64),
            mib(p.total as f64),
            mib(rate),
            eta
        );
    }

    fn end(&self) {
        if self.on {
            eprintln!();
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let dir = config_dir(cli.config_dir)?;
    let identity_path = dir.join("identity.json");
    let session_path = dir.join("session.json");
    match cli.command {
        Command::Register { phone, name } => {
            let server = server(cli.server, &dir)?;
            if identity_path.exists() {
                return Err(Failure(
                    format!("{} already holds an identity", identity_path.display()),
                    2,
                ));
            }
            let key = SigningKey::from_bytes(&rand::random());
            let mut client = Client::new(&server);
            client.register(&phone, &name, &key).await?;
            write_private(
                &identity_path,
                &Identity {
                    phone: phone.clone(),
                    device_id: 1,
                    secret_key: STANDARD.encode(key.to_bytes()),
                },
            )?;
            let token = client.login(&phone, &key).await?;
            write_private(&session_path, &Session { server, token })?;
            // The first device's end-to-end keys, so others can write to it at once.
            publish_keys(&client, &dir, 1, &key).await?;
            eprintln!(
                "registered {phone}; key kept in {}",
                identity_path.display()
            );
        }
        Command::Login => {
            let server = server(cli.server, &dir)?;
            let (phone, device, key) = load_identity(&identity_path)?;
            let mut client = Client::new(&server);
            let token = client.login_device(&phone, device, &key).await?;
            write_private(&session_path, &Session { server, token })?;
            eprintln!("logged in as {phone}");
            publish_keys(&client, &dir, device, &key).await?;
        }
        Command::Upload {
            file,
            limit_rate,
            no_thumbnail,
        } => {
            let client = logged_in(cli.server, &session_path)?
                .with_rate_limit(limit_rate)
                .with_thumbnails(!no_thumbnail);
            let media = upload(&client, &file, &dir).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&media).map_err(std::io::Error::other)?
            );
        }
        Command::Download {
            reference,
            output,
            range,
        } => {
            let session: Session = read_json(&session_path, "not logged in: run `seal login`")?;
            let server = cli.server.unwrap_or(session.server);
            let text = std::fs::read_to_string(&reference)?;
            let media: MediaRef = serde_json::from_str(&text).map_err(|e| {
                Failure(format!("{} is not a MediaRef: {e}", reference.display()), 2)
            })?;
            media.validate().map_err(|e| Failure(e.to_string(), 2))?;
            let client = Client::new(&server).with_token(session.token);
            match range {
                Some(spec) => {
                    let bytes = parse_range(&spec, media.size)?;
                    let len = bytes.end - bytes.start;
                    client
                        .download_decrypted_range(&media, bytes, &output)
                        .await?;
                    eprintln!(
                        "wrote {} ({len} bytes of {}, each segment authenticated)",
                        output.display(),
                        media.size
                    );
                }
                None => {
                    client.download_decrypted(&media, &output).await?;
                    eprintln!(
                        "wrote {} ({} bytes, verified)",
                        output.display(),
                        media.size
                    );
                }
            }
        }
        Command::Send {
            to,
            group,
            text,
            file,
            caption,
            no_thumbnail,
            reply_to,
        } => {
            let (_, _, key) = load_identity(&identity_path)?;
            let client = logged_in(cli.server, &session_path)?.with_thumbnails(!no_thumbnail);
            let mut message = match file {
                Some(file) => Plaintext {
                    v: 1,
                    text: caption,
                    attachments: vec![upload(&client, &file, &dir).await?],
                    reply_to: None,
                },
                None => Plaintext::text(text.unwrap_or_default()),
            };
            message.reply_to = reply_to;
            let to = match (to, group) {
                (_, Some(group)) => chat::To::Group(group),
                (Some(phone), None) => chat::To::Phone(phone),
                (None, None) => return Err(Failure("--to or --group is needed".to_owned(), 2)),
            };
            chat::send(&client, &dir, &key, &to, &message).await?;
        }
        Command::Listen {
            count,
            json,
            save_to,
        } => {
            let (_, _, key) = load_identity(&identity_path)?;
            let client = logged_in(cli.server, &session_path)?;
            let listening = chat::Listening {
                count,
                json,
                save_to,
            };
            chat::listen(&client, &dir, &key, listening).await?;
        }
        Command::Device(command) => directory::device(command, cli.server, &dir).await?,
        Command::Group(command) => {
            let (phone, _, _) = load_identity(&identity_path)?;
            let client = logged_in(cli.server, &session_path)?;
            directory::group(command, &client, &phone).await?;
        }
        Command::Usage { json } => {
            let usage = logged_in(cli.server, &session_path)?.usage().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&usage).map_err(std::io::Error::other)?
                );
            } else {
                let (stored, open) = (&usage.stored, &usage.unfinished);
                println!(
                    "stored: {} of {} blobs, {} of {} bytes (each counted for {} days after its upload)",
                    stored.blobs,
                    stored.max_blobs,
                    stored.bytes,
                    stored.max_bytes,
                    stored.counted_for / 86_400
                );
                println!(
                    "unfinished uploads: {} of {}, {} of {} bytes",
                    open.uploads, open.max_uploads, open.bytes, open.max_bytes
                );
            }
        }
    }
    Ok(())
}

/// Seals `file` and uploads it, resumably (state in `dir/uploads`), showing progress on a
/// terminal; Ctrl-C stops it so that the same command resumes.
async fn upload(client: &Client, file: &Path, dir: &Path) -> Result<MediaRef, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let mut bar = Bar {
        started: Instant::now(),
        on: std::io::stderr().is_terminal(),
    };
    let mut announced = false;
    let result = client
        .upload_encrypted(file, &dir.join("uploads"), |p| {
            if !announced && p.resumed_at > 0 {
                announced = true;
                eprintln!("resuming at byte {} of {}", p.resumed_at, p.total);
            }
            bar.show(p);
            if stop.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
    bar.end();
    watcher.abort();
    Ok(result?)
}

/// Publishes this device's end-to-end keys (topping its one-time keys up), unless another
/// process of this device holds its state (and publishes them itself).
async fn publish_keys(
    client: &Client,
    dir: &Path,
    device: u32,
    key: &SigningKey,
) -> Result<(), Failure> {
    let account = client
        .account_id()
        .ok_or_else(|| Failure("the login answer names no account".to_owned(), 1))?;
    match E2e::open(&dir.join("e2e"), account, device, key) {
        Ok(mut e2e) => {
            e2e.publish(client, None).await?;
        }
        Err(ClientError::StateInUse(_)) => {
            eprintln!("keys not published now: another seal process of this device holds them");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The stored phone number, device number and identity key.
fn load_identity(path: &Path) -> Result<(String, u32, SigningKey), Failure> {
    let identity: Identity = read_json(path, "no identity yet: run `seal register` first")?;
    let secret: [u8; 32] = STANDARD
        .decode(&identity.secret_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| Failure(format!("{} is damaged", path.display()), 2))?;
    Ok((
        identity.phone,
        identity.device_id,
        SigningKey::from_bytes(&secret),
    ))
}

/// A client with the stored session's token.
fn logged_in(server: Option<String>, session_path: &Path) -> Result<Client, Failure> {
    let session: Session = read_json(session_path, "not logged in: run `seal login`")?;
    Ok(Client::new(&server.unwrap_or(session.server)).with_token(session.token))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("seal: {message}");
            ExitCode::from(code)
        }
    }
}
