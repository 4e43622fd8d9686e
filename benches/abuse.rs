//! Abuse resistance under load, against a release `sealpost serve` it starts on the embedded
//! defaults with default limits. Two phases of `SEALPOST_BENCH_SECONDS` (default 30) each:
//!
//! 1. **Well-behaved traffic alone**, at a fixed rate well under what the machine can serve:
//!    4 uploaders each starting a 4 MiB upload every 200 ms (80 MB/s offered), 4 downloaders
//!    each fetching a 4 MiB blob every 100 ms (160 MB/s), and 100 chat clients sending
//!    `SEALPOST_BENCH_RATE` messages a second together (default 200) to each other.
//! 2. **The same traffic under attack**, every attack of issue 19 at once, each from many
//!    accounts and from many client addresses (127.0.x.y: Linux routes all of 127/8 to
//!    loopback, so per-address limits see distinct clients): half-sent headers (slowloris),
//!    upload bodies trickling a byte a second, typing and sends to made-up accounts, an inbox
//!    flood of 64 KiB messages to one offline account, and phone-number enumeration.
//!
//! Reports the well-behaved upload and download throughput, the chat messages delivered and
//! their latency (from the moment a send was due) in each phase, the ratios, and the server's
//! peak resident memory. `SEALPOST_BENCH_ATTACKS=slowloris,trickle,flood,inbox,lookups` (the
//! default: all) chooses the attacks, to measure one alone. Run: `cargo bench --bench abuse`
//! (see BENCHMARKS.md). The attacks run on threads of their own at `SEALPOST_BENCH_NICE`
//! (default 19; 0 to share the cores evenly).
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{
    BenchResult, Socket, connect, cpu_seconds, create_upload, due_of, patch_whole, peak_rss_kib,
    register, rss_kib, start_server, timed_send, write,
};
use futures_util::{SinkExt, StreamExt, stream};
use sealpost_proto::{ClientFrame, Envelope, ServerFrame, TypingState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Bytes of each well-behaved upload and of the blob the downloaders fetch.
const BLOB: usize = 4 << 20;
/// How often each of the 4 uploaders starts an upload: 80 MB/s offered in all.
const UPLOAD_EVERY: Duration = Duration::from_millis(200);
/// How often each of the 4 downloaders starts a download: 160 MB/s offered in all.
const DOWNLOAD_EVERY: Duration = Duration::from_millis(100);
/// Time the attacks get to build up before the measured window.
const RAMP: Duration = Duration::from_secs(10);
/// Time in-flight messages get after a window.
const DRAIN: Duration = Duration::from_secs(5);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback client address: 127.`group`.`n / 250`.`n % 250 + 1`.
fn address(group: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        group,
        (n / 250) as u8,
        (n % 250 + 1) as u8,
    ))
}

/// An HTTP client whose connections come from `ip`.
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .unwrap_or_default()
}

/// An account of the bench.
#[derive(Clone)]
struct Account {
    id: String,
    token: String,
    phone: String,
}

/// Registers `n` accounts, at most 15 from each address of address group `group` (the
/// server allows 20 registrations and logins a minute from one address).
async fn accounts(base: &str, group: u8, n: usize) -> BenchResult<Vec<Account>> {
    let run = rand::random::<u32>() % 1_000;
    let chunks: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(15)
        .map(<[usize]>::to_vec)
        .collect();
    let registered = stream::iter(chunks.into_iter().enumerate())
        .map(|(chunk, indexes)| async move {
            let client = client_from(address(group, chunk));
            let mut made = Vec::with_capacity(indexes.len());
            for i in indexes {
                let phone = format!("+1{group:03}{run:03}{i:05}");
                let (id, token) = register(&client, base, &phone).await?;
                made.push(Account { id, token, phone });
            }
            BenchResult::Ok(made)
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut all = Vec::with_capacity(n);
    for chunk in registered {
        all.extend(chunk?);
    }
    Ok(all)
}

/// What the well-behaved traffic did in one measured window.
#[derive(Default)]
struct Good {
    upload_bytes: AtomicU64,
    download_bytes: AtomicU64,
    /// Chat sends due in the window.
    due: AtomicU64,
    /// Due time → arrival at the recipient, microseconds, and the second of the window the
    /// send was due in.
    latencies: Mutex<Vec<(u64, u64)>>,
    /// Failed requests and refused frames, by what failed.
    errors: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Good {
    async fn failed(&self, what: impl Into<String>) {
        *self.errors.lock().await.entry(what.into()).or_default() += 1;
    }
}

/// The well-behaved clients.
struct Traffic {
    base: String,
    server: SocketAddr,
    uploaders: Vec<Account>,
    downloaders: Vec<Account>,
    chatters: Vec<Account>,
    blob: String,
    rate: u64,
}

impl Traffic {
    /// Runs every well-behaved client over `window`; what they did in it.
    async fn run(&self, window: (Instant, Instant)) -> BenchResult<Good> {
        let good = Arc::new(Good::default());
        let ip = address(2, 0);
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for account in &self.uploaders {
            tasks.push(tokio::spawn(upload_loop(
                self.base.clone(),
                account.token.clone(),
                window,
                good.clone(),
            )));
        }
        for account in &self.downloaders {
            tasks.push(tokio::spawn(download_loop(
                format!("{}/v1/blobs/{}", self.base, self.blob),
                account.token.clone(),
                window,
                good.clone(),
            )));
        }
        let peers: Arc<Vec<String>> =
            Arc::new(self.chatters.iter().map(|a| a.id.clone()).collect());
        let interval = Duration::from_secs_f64(self.chatters.len() as f64 / self.rate as f64);
        let clock = Instant::now();
        for (index, account) in self.chatters.iter().enumerate() {
            let socket = connect(self.server, &account.token, Some(ip)).await?;
            let (sink, reader) = socket.split();
            let (out, outgoing) = mpsc::unbounded_channel::<ClientFrame>();
            tasks.push(tokio::spawn(write(sink, outgoing)));
            tasks.push(tokio::spawn(read(
                reader,
                out.clone(),
                clock,
                window,
                good.clone(),
            )));
            tasks.push(tokio::spawn(chat_loop(
                out,
                index,
                peers.clone(),
                clock,
                interval,
                window,
                good.clone(),
            )));
        }
        tokio::time::sleep_until((window.1 + DRAIN).into()).await;
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        Ok(Arc::try_unwrap(good).unwrap_or_default())
    }
}

/// Uploads a 4 MiB upload every `UPLOAD_EVERY` (a new one starts when the last is done if that
/// is later); counts the bytes of those completed in the window.
async fn upload_loop(base: String, token: String, window: (Instant, Instant), good: Arc<Good>) {
    let mut ticks = tokio::time::interval(UPLOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let client = client_from(address(2, 1));
    let mut data = vec![0u8; BLOB];
    rand::fill(&mut data[..]);
    for n in 0u64.. {
        ticks.tick().await;
        if Instant::now() >= window.1 {
            break;
        }
        data[..8].copy_from_slice(&n.to_le_bytes());
        data[8..16].copy_from_slice(&rand::random::<u64>().to_le_bytes());
        let body = reqwest::Body::from(Bytes::from(data.clone()));
        let done = async {
            let location = create_upload(&client, &base, &token, BLOB as u64).await?;
            patch_whole(&client, &base, &token, &location, BLOB as u64, body).await
        }
        .await
        .map_err(|e| format!("upload: {e}").chars().take(80).collect::<String>());
        let now = Instant::now();
        if let Err(e) = done {
            good.failed(e).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if now >= window.0 && now < window.1 {
            good.upload_bytes.fetch_add(BLOB as u64, Ordering::Relaxed);
        }
    }
}

/// Downloads the blob every `DOWNLOAD_EVERY` (or when the last is done if that is later);
/// counts the bytes that arrived in the window.
async fn download_loop(url: String, token: String, window: (Instant, Instant), good: Arc<Good>) {
    let client = client_from(address(2, 2));
    let mut ticks = tokio::time::interval(DOWNLOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < window.1 {
        ticks.tick().await;
        let Ok(res) = client.get(&url).bearer_auth(&token).send().await else {
            good.failed("download").await;
            continue;
        };
        let mut body = res.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            let now = Instant::now();
            if now >= window.0 && now < window.1 {
                good.download_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Sends this client's share of the chat rate to random peers until the window ends.
async fn chat_loop(
    out: mpsc::UnboundedSender<ClientFrame>,
    index: usize,
    peers: Arc<Vec<String>>,
    clock: Instant,
    interval: Duration,
    window: (Instant, Instant),
    good: Arc<Good>,
) {
    let first = clock + interval.mul_f64(rand::random::<f64>());
    let mut ticks = tokio::time::interval_at(first.into(), interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0u64.. {
        let due: Instant = ticks.tick().await.into();
        if due >= window.1 {
            break;
        }
        if due >= window.0 {
            good.due.fetch_add(1, Ordering::Relaxed);
        }
        let due_us = (due - clock).as_micros() as u64;
        let frame = timed_send(&peers, index, due_us, format!("g{due_us}-{n}"));
        if out.send(frame).is_err() {
            break;
        }
    }
}

/// Reads a well-behaved client's frames: records latencies, acknowledges what arrives.
async fn read(
    mut reader: futures_util::stream::SplitStream<Socket>,
    out: mpsc::UnboundedSender<ClientFrame>,
    clock: Instant,
    window: (Instant, Instant),
    good: Arc<Good>,
) {
    while let Some(Ok(message)) = reader.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
            continue;
        };
        match frame {
            ServerFrame::Message { seq, body, .. } => {
                let now = clock.elapsed().as_micros() as u64;
                if let Some(due) = due_of(&body) {
                    let at = clock + Duration::from_micros(due);
                    if at >= window.0 && at < window.1 {
                        let second = at.duration_since(window.0).as_secs();
                        good.latencies
                            .lock()
                            .await
                            .push((now.saturating_sub(due), second));
                    }
                }
                let _ = out.send(ClientFrame::Ack { seq });
            }
            ServerFrame::Group { seq, .. } | ServerFrame::Receipt { seq, .. } => {
                let _ = out.send(ClientFrame::Ack { seq });
            }
            ServerFrame::Error { code, .. } => good.failed(format!("chat: {code}")).await,
            _ => {}
        }
    }
}

/// How many times each attack was answered, by what (for the report).
#[derive(Default)]
struct Attacks {
    slowloris_connections: AtomicU64,
    trickle_requests: AtomicU64,
    flood_frames: AtomicU64,
    inbox_sends: AtomicU64,
    lookups: AtomicU64,
}

/// Starts every attack; they run until aborted.
async fn attack(
    base: &str,
    server: SocketAddr,
    victim: &Account,
    counts: &Arc<Attacks>,
) -> BenchResult<Vec<JoinHandle<()>>> {
    let chosen = std::env::var("SEALPOST_BENCH_ATTACKS")
        .unwrap_or_else(|_| "slowloris,trickle,flood,inbox,lookups".into());
    let on = |name: &str| chosen.split(',').any(|c| c.trim() == name);
    let slowloris = if on("slowloris") {
        setting("SEALPOST_BENCH_SLOWLORIS", 2_000) as usize
    } else {
        0
    };
    let mut tasks = Vec::new();
    // Half-sent headers from 200 addresses, one header line every 10 s, again when closed.
    for n in 0..slowloris {
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let _ = half_sent(server, address(10, n % 200), &counts).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    // 32 accounts each keep 8 upload bodies trickling a byte a second, resuming each upload
    // when the server stops a body.
    let trickling = if on("trickle") { 32 } else { 0 };
    for account in accounts(base, 11, trickling).await? {
        for n in 0..8 {
            let (base, token, counts) = (base.to_owned(), account.token.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let client = client_from(address(11, n));
                let location = loop {
                    let created = create_upload(&client, &base, &token, 1 << 20).await.ok();
                    if let Some(location) = created {
                        break location;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                };
                loop {
                    counts.trickle_requests.fetch_add(1, Ordering::Relaxed);
                    let failed = trickle(&client, &base, &token, &location).await.is_err();
                    if failed {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }));
        }
    }
    // 20 accounts send typing frames and messages to made-up accounts, 200 frames a second each.
    let flooding = if on("flood") { 20 } else { 0 };
    for (n, account) in accounts(base, 12, flooding).await?.into_iter().enumerate() {
        let socket = connect(server, &account.token, Some(address(12, n))).await?;
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut reader) = socket.split();
            tokio::spawn(async move { while let Some(Ok(_)) = reader.next().await {} });
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            for i in 0u64.. {
                ticks.tick().await;
                let to = format!("{:032x}", rand::random::<u128>());
                let frame = if i % 2 == 0 {
                    ClientFrame::Typing {
                        to,
                        state: TypingState::Started,
                    }
                } else {
                    ClientFrame::Send {
                        id: format!("f{i}"),
                        to,
                        envelopes: vec![Envelope {
                            device_id: 1,
                            body: STANDARD.encode([0u8; 32]),
                        }],
                    }
                };
                let Ok(text) = serde_json::to_string(&frame) else {
                    break;
                };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                counts.flood_frames.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // 20 accounts flood one offline account's inbox with 64 KiB messages, 10 a second each.
    let body = STANDARD.encode(vec![7u8; 64 << 10]);
    let inbox = if on("inbox") { 20 } else { 0 };
    for (n, account) in accounts(base, 13, inbox).await?.into_iter().enumerate() {
        let socket = connect(server, &account.token, Some(address(13, n))).await?;
        let (counts, victim, body) = (counts.clone(), victim.id.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut reader) = socket.split();
            tokio::spawn(async move { while let Some(Ok(_)) = reader.next().await {} });
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            for i in 0u64.. {
                ticks.tick().await;
                let frame = ClientFrame::Send {
                    id: format!("i{i}"),
                    to: victim.clone(),
                    envelopes: vec![Envelope {
                        device_id: 1,
                        body: body.clone(),
                    }],
                };
                let Ok(text) = serde_json::to_string(&frame) else {
                    break;
                };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                counts.inbox_sends.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // 20 accounts from 20 addresses look up random numbers, 20 a second each.
    let looking = if on("lookups") { 20 } else { 0 };
    for (n, account) in accounts(base, 14, looking).await?.into_iter().enumerate() {
        let (base, counts) = (base.to_owned(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let client = client_from(address(14, n));
            let mut ticks = tokio::time::interval(Duration::from_millis(50));
            loop {
                ticks.tick().await;
                let phone = format!("+1555{:07}", rand::random::<u32>() % 10_000_000);
                let _ = client
                    .get(format!("{base}/v1/accounts/by-phone/{phone}"))
                    .bearer_auth(&account.token)
                    .send()
                    .await;
                counts.lookups.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    Ok(tasks)
}

/// One slowloris connection: half a header, then a header line every 10 s until closed.
async fn half_sent(server: SocketAddr, ip: IpAddr, counts: &Attacks) -> BenchResult<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    let mut tcp = socket.connect(server).await?;
    counts.slowloris_connections.fetch_add(1, Ordering::Relaxed);
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            read = tcp.read(&mut buf) => if read? == 0 { return Ok(()) },
            () = tokio::time::sleep(Duration::from_secs(10)) => tcp.write_all(b"X-Slow: 1\r\n").await?,
        }
    }
}

/// One upload request, from the upload's offset, whose body trickles a byte a second.
async fn trickle(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    location: &str,
) -> BenchResult<()> {
    let url = format!("{base}{location}");
    let head = client
        .head(&url)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await?;
    let offset = head
        .headers()
        .get("upload-offset")
        .ok_or("no offset")?
        .to_str()?
        .to_owned();
    let body = stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
    });
    client
        .patch(&url)
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset)
        .header("Content-Type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    Ok(())
}

/// p50, p99 and the maximum of microseconds, in milliseconds.
fn percentiles(mut samples: Vec<u64>) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    (
        at(0.5),
        at(0.99),
        samples[samples.len() - 1] as f64 / 1000.0,
    )
}

/// The runtime the attacks run on: two threads at `nice` (`SEALPOST_BENCH_NICE`, default 19),
/// so that on a machine the generator shares with the server the attacks take only the CPU
/// the server and the well-behaved clients leave idle, as attackers on machines of their own
/// would; the report says how much attack traffic that still was.
fn attack_runtime(nice: u64) -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attack")
        .enable_all()
        .on_thread_start(move || {
            // Linux applies a thread id's nice value to that thread alone.
            if nice > 0
                && let Ok(me) = std::fs::read_link("/proc/thread-self")
                && let Some(tid) = me.file_name()
            {
                let _ = std::process::Command::new("renice")
                    .args(["-n", &nice.to_string(), "-p"])
                    .arg(tid)
                    .stdout(std::process::Stdio::null())
                    .status();
            }
        })
        .build()?)
}

/// Prints one phase's line; returns (upload MB/s, download MB/s, delivered/s, p99 ms).
async fn report(phase: &str, good: Good, seconds: f64) -> (f64, f64, f64, f64) {
    let mb = |bytes: &AtomicU64| bytes.load(Ordering::Relaxed) as f64 / 1e6 / seconds;
    let (up, down) = (mb(&good.upload_bytes), mb(&good.download_bytes));
    let samples = std::mem::take(&mut *good.latencies.lock().await);
    let delivered = samples.len() as f64 / seconds;
    let (p50, p99, max) = percentiles(samples.iter().map(|&(latency, _)| latency).collect());
    // Which seconds of the window the slowest 1 % were due in: a tail that gathers in a few
    // seconds is a stall, one spread over the window is steady queueing.
    let mut tail = std::collections::BTreeMap::<u64, u64>::new();
    for &(latency, second) in &samples {
        if latency as f64 / 1000.0 >= p99 {
            *tail.entry(second).or_default() += 1;
        }
    }
    println!(
        "{phase}: uploads {up:.1} MB/s, downloads {down:.1} MB/s, chat {} due, {delivered:.0}/s \
         delivered, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; errors {:?}; \
         slowest 1 % by second due {tail:?}",
        good.due.load(Ordering::Relaxed),
        good.errors.lock().await
    );
    (up, down, delivered, p99)
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let seconds = setting("SEALPOST_BENCH_SECONDS", 30);
    let rate = setting("SEALPOST_BENCH_RATE", 200);
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path(), &[], &[])?;
    let pid = server.child.id();
    let base = server.base.clone();
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    println!("server pid {pid} at {base}, default limits");

    let started = Instant::now();
    let good = accounts(&base, 3, 110).await?;
    let victim = good[109].clone();
    let traffic = Traffic {
        base: base.clone(),
        server: addr,
        uploaders: good[0..4].to_vec(),
        downloaders: good[4..8].to_vec(),
        chatters: good[8..108].to_vec(),
        blob: {
            let client = client_from(address(2, 3));
            let token = &good[108].token;
            let location = create_upload(&client, &base, token, BLOB as u64).await?;
            let data = Bytes::from((0..BLOB).map(|i| i as u8).collect::<Vec<u8>>());
            patch_whole(&client, &base, token, &location, BLOB as u64, data.into()).await?
        },
        rate,
    };
    println!(
        "registered 110 well-behaved accounts in {:.1} s (victim {})",
        started.elapsed().as_secs_f64(),
        victim.phone
    );

    let measured = Duration::from_secs(seconds);
    let now = Instant::now() + Duration::from_secs(2);
    let cpu = cpu_seconds(pid);
    let calm = traffic.run((now, now + measured)).await?;
    let cpu_calm = cpu_seconds(pid) - cpu;
    let calm = report("alone", calm, seconds as f64).await;
    let rss_calm = rss_kib(pid);

    let counts = Arc::new(Attacks::default());
    let nice = setting("SEALPOST_BENCH_NICE", 19);
    let attack_runtime = attack_runtime(nice)?;
    let attackers = {
        let (base, victim, counts) = (base.clone(), victim.clone(), counts.clone());
        attack_runtime
            .spawn(async move { attack(&base, addr, &victim, &counts).await })
            .await??
    };
    let now = Instant::now() + RAMP;
    let cpu = cpu_seconds(pid);
    let under = traffic.run((now, now + measured)).await?;
    let cpu_under = cpu_seconds(pid) - cpu;
    let under = report("under attack", under, seconds as f64).await;
    let peak = peak_rss_kib(pid);
    for task in attackers {
        task.abort();
    }
    attack_runtime.shutdown_background();
    println!(
        "attacks: {} slowloris connections opened, {} trickling upload requests, {} flood \
         frames, {} inbox-flood sends, {} lookups",
        counts.slowloris_connections.load(Ordering::Relaxed),
        counts.trickle_requests.load(Ordering::Relaxed),
        counts.flood_frames.load(Ordering::Relaxed),
        counts.inbox_sends.load(Ordering::Relaxed),
        counts.lookups.load(Ordering::Relaxed)
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "ratios under attack: uploads {:.2}×, downloads {:.2}×, chat delivered {:.2}×, chat p99 \
         {:.2}× (targets ≥ 0.8×, ≥ 0.8×, ≥ 0.8×, ≤ 2×)",
        ratio(under.0, calm.0),
        ratio(under.1, calm.1),
        ratio(under.2, calm.2),
        ratio(under.3, calm.3)
    );
    println!(
        "server RSS {:.1} MiB after the calm phase; peak {:.1} MiB (VmHWM); server CPU {:.0} % \
         of one core alone, {:.0} % under attack (the generator shares the machine's cores; \
         the attacks' threads at nice {nice})",
        rss_calm as f64 / 1024.0,
        peak as f64 / 1024.0,
        100.0 * cpu_calm / (seconds as f64 + 2.0 + DRAIN.as_secs_f64()),
        100.0 * cpu_under / (seconds as f64 + RAMP.as_secs_f64() + DRAIN.as_secs_f64())
    );
    Ok(())
}
