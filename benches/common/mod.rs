//! What the benches share: a release `sealpost serve` in a child process, an account with a
//! token, chat connections, and reading a process's CPU time and memory from /proc. Each bench
//! uses some of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use sealpost_proto::{ClientFrame, Envelope, ServerFrame};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A chat connection.
pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A running `sealpost serve` and its base URL.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary (or the one `SEALPOST_BENCH_SERVER` names, to compare builds) on
/// a free port with its data in `data_dir`, `args` added and the environment `env`
/// (`SEALPOST__…` settings). It logs as a deployment does by default, one access line a request
/// included, into `SEALPOST_BENCH_LOG` when that is set.
pub(crate) fn start_server(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> BenchResult<Server> {
    let server = std::env::var_os("SEALPOST_BENCH_SERVER")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sealpost").into());
    let mut child = Command::new(server)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .env("SEALPOST__LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,sealpost::app=info,sealpost::access=info")
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().ok_or("stderr")?).lines();
    let base = loop {
        let line = lines.next().ok_or("server exited")??;
        if let Some(at) = line.find("http://127.0.0.1:") {
            let rest = &line[at..];
            break rest[..rest.find('"').unwrap_or(rest.len())].to_owned();
        }
    };
    // The server's log goes to `SEALPOST_BENCH_LOG` (a file) if set.
    let mut log =
        std::env::var_os("SEALPOST_BENCH_LOG").and_then(|path| std::fs::File::create(path).ok());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(file) = log.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    });
    Ok(Server { child, base })
}

/// Registers an account and logs in; returns its bearer token.
pub(crate) async fn login(client: &reqwest::Client, base: &str) -> BenchResult<String> {
    Ok(register(client, base, "+15550000001").await?.1)
}

/// Registers an account for `phone` and logs its first device in; returns the account's id
/// and the bearer token.
pub(crate) async fn register(
    client: &reqwest::Client,
    base: &str,
    phone: &str,
) -> BenchResult<(String, String)> {
    let key = SigningKey::from_bytes(&rand::random());
    let account: Value = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"phone": phone, "name": "bench", "identity_key": STANDARD.encode(key.verifying_key().as_bytes())}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let c: Value = client
        .post(format!("{base}/v1/auth/challenge"))
        .json(&json!({"phone": phone}))
        .send()
        .await?
        .json()
        .await?;
    let challenge = c["challenge"].as_str().ok_or("challenge")?;
    let sig = key.sign(&STANDARD.decode(challenge)?);
    let t: Value = client
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"phone": phone, "challenge": challenge, "signature": STANDARD.encode(sig.to_bytes())}))
        .send()
        .await?
        .json()
        .await?;
    let token = t["token"].as_str().ok_or("token")?.to_owned();
    Ok((
        account["id"].as_str().ok_or("account id")?.to_owned(),
        token,
    ))
}

/// Creates a tus upload of `length` bytes; returns its URL path.
pub(crate) async fn create_upload(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    length: u64,
) -> BenchResult<String> {
    let created = client
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(created
        .headers()
        .get("location")
        .ok_or("no Location")?
        .to_str()?
        .to_owned())
}

/// Sends all `length` bytes of the upload at `location` in one PATCH; returns the blob id.
pub(crate) async fn patch_whole(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    location: &str,
    length: u64,
    body: reqwest::Body,
) -> BenchResult<String> {
    let res = client
        .patch(format!("{base}{location}"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Content-Length", length.to_string())
        .body(body)
        .send()
        .await?
        .error_for_status()?;
    Ok(res
        .headers()
        .get("sealpost-blob-id")
        .ok_or("no blob id")?
        .to_str()?
        .to_owned())
}

/// Peak resident memory of a process (VmHWM), KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

/// Resident memory of a process now (VmRSS), KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds the process has used (`/proc/PID/stat`, 100 ticks a second).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    #[allow(clippy::cast_precision_loss)]
    let seconds = (ticks(11) + ticks(12)) as f64 / 100.0;
    seconds
}

/// Opens a chat connection to `server` (from the local address `from`, if given) and waits for
/// its `hello`.
pub(crate) async fn connect(
    server: SocketAddr,
    token: &str,
    from: Option<IpAddr>,
) -> BenchResult<Socket> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(server).await?;
    let mut request = format!("ws://{server}/v1/chat").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await?;
    loop {
        match socket.next().await.ok_or("closed before hello")?? {
            Message::Text(text) => {
                if let ServerFrame::Hello { .. } = serde_json::from_str(&text)? {
                    return Ok(socket);
                }
            }
            Message::Close(close) => return Err(format!("closed before hello: {close:?}").into()),
            _ => {}
        }
    }
}

/// Writes a client's frames to its socket.
pub(crate) async fn write(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<ClientFrame>,
) {
    while let Some(frame) = outgoing.recv().await {
        let Ok(text) = serde_json::to_string(&frame) else {
            break;
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
}

/// Bytes of each timed chat message's body (a short text message's ciphertext is about this
/// size).
const TIMED_BODY: usize = 160;

/// A message under `id` to a random one of `peers` other than `me`, whose body carries
/// `due_us` (when it was due, microseconds on the sender's clock) in its first 8 bytes.
pub(crate) fn timed_send(peers: &[String], me: usize, due_us: u64, id: String) -> ClientFrame {
    let mut peer = rand::random::<u32>() as usize % peers.len();
    if peer == me {
        peer = (peer + 1) % peers.len();
    }
    let mut body = vec![0u8; TIMED_BODY];
    body[..8].copy_from_slice(&due_us.to_le_bytes());
    ClientFrame::Send {
        id,
        to: peers[peer].clone(),
        envelopes: vec![Envelope {
            device_id: 1,
            body: STANDARD.encode(&body),
        }],
    }
}

/// When a message [`timed_send`] made was due, from its (base64) body.
pub(crate) fn due_of(body: &str) -> Option<u64> {
    let body = STANDARD.decode(body).ok()?;
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}
