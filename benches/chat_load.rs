//! The chat gateway's load generator, against a release `sealpost serve` it starts:
//!
//! 1. **Idle connections**: registers `SEALPOST_BENCH_CONNECTIONS` accounts (default 10,000),
//!    connects one WebSocket each to `/v1/chat`, waits for every `hello`, lets the server settle
//!    and reports its resident memory (`VmRSS`) growth per connection.
//! 2. **Messages**: `SEALPOST_BENCH_CLIENTS` of those accounts (default 1,000) connect again and
//!    send, together, `SEALPOST_BENCH_RATE` messages a second (default 2,000) to random peers
//!    for `SEALPOST_BENCH_SECONDS` (default 30, after a 5 s warm-up); every client acknowledges
//!    what it receives. Reports the messages' end-to-end latency (from the moment a send was
//!    due, so a stalled sender counts its wait: no coordinated omission) to the recipient's
//!    socket, the `sent` answer's latency, the delivered rate, and the server's CPU use.
//!
//! `SEALPOST_BENCH_BUS=kafka://HOST:PORT` runs the server on that Kafka broker (default: the
//! in-process bus), `SEALPOST_BENCH_DATABASE_URL=postgres://…` on that PostgreSQL database
//! (default: SQLite in a temp dir). Generator, server and backing services share the machine.
//!
//! Run: `cargo bench --bench chat_load` (see BENCHMARKS.md).
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    BenchResult, Socket, connect, cpu_seconds, due_of, register, rss_kib, start_server, timed_send,
    write,
};
use futures_util::{StreamExt, stream};
use sealpost_proto::{ClientFrame, ServerFrame};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

const WARM_UP: Duration = Duration::from_secs(5);
/// How long in-flight messages get after the last send.
const DRAIN: Duration = Duration::from_secs(10);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An account of the bench: its id and bearer token.
struct Account {
    id: String,
    token: String,
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let connections = setting("SEALPOST_BENCH_CONNECTIONS", 10_000) as usize;
    let clients = (setting("SEALPOST_BENCH_CLIENTS", 1_000) as usize).min(connections);
    let rate = setting("SEALPOST_BENCH_RATE", 2_000);
    let seconds = setting("SEALPOST_BENCH_SECONDS", 30);

    let dir = tempfile::tempdir()?;
    let mut args = Vec::new();
    let bus = std::env::var("SEALPOST_BENCH_BUS").ok();
    if let Some(bus) = &bus {
        args.extend(["--bus", bus.as_str()]);
    }
    let database = std::env::var("SEALPOST_BENCH_DATABASE_URL").ok();
    if let Some(url) = &database {
        args.extend(["--database-url", url.as_str()]);
    }
    let env = [
        (
            "SEALPOST__AUTH__ATTEMPTS_PER_ADDRESS_PER_MINUTE",
            "100000000",
        ),
        ("SEALPOST__AUTH__ATTEMPTS_PER_PHONE_PER_MINUTE", "100000000"),
        (
            "SEALPOST__AUTH__LOOKUPS_PER_ADDRESS_PER_MINUTE",
            "100000000",
        ),
    ];
    let server = start_server(dir.path(), &args, &env)?;
    let pid = server.child.id();
    let base = server.base.clone();
    println!(
        "server pid {pid} at {base}; bus {}, database {}",
        bus.as_deref().unwrap_or("in-process"),
        database.as_deref().map_or("SQLite", |_| "PostgreSQL")
    );

    let started = Instant::now();
    let http = reqwest::Client::new();
    let run = rand::random::<u32>() % 1_000;
    let accounts: Vec<Account> = stream::iter(0..connections)
        .map(|i| {
            let http = &http;
            let base = &base;
            async move {
                let phone = format!("+1{run:03}{i:07}");
                let (id, token) = register(http, base, &phone).await?;
                BenchResult::Ok(Account { id, token })
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!(
        "registered {connections} accounts in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    idle_connections(&base, pid, &accounts).await?;
    messages(&base, pid, &accounts[..clients], rate, seconds).await?;
    Ok(())
}

/// Part 1: the server's memory per idle connection.
async fn idle_connections(base: &str, pid: u32, accounts: &[Account]) -> BenchResult<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid);
    let started = Instant::now();
    let sockets = connect_all(base, accounts).await?;
    let opened = started.elapsed();
    // Every connection reads on (answering the server's pings) until the part ends.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid);
    let n = accounts.len() as u64;
    println!(
        "idle: {n} connections opened in {:.1} s; server RSS {:.1} MiB before, {:.1} MiB after: \
         {:.1} KiB per connection",
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / n as f64
    );
    for reader in readers {
        reader.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Connects every account, 64 at a time; the sockets in the accounts' order.
async fn connect_all(base: &str, accounts: &[Account]) -> BenchResult<Vec<Socket>> {
    let server: SocketAddr = base.trim_start_matches("http://").parse()?;
    stream::iter(accounts)
        .map(|account| connect(server, &account.token, None))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// What the message part measured, shared by every client's tasks.
#[derive(Default)]
struct Samples {
    /// Due time of a send → its arrival at the recipient, microseconds.
    delivered: Vec<u64>,
    /// Due time of a send → its `sent` answer, microseconds.
    sent: Vec<u64>,
    /// Sends due in the measured window.
    due: u64,
    /// Answers other than `sent`, by code.
    refused: std::collections::BTreeMap<String, u64>,
}

/// Part 2: latency and throughput with `accounts.len()` clients sending `rate` messages a
/// second together.
async fn messages(
    base: &str,
    pid: u32,
    accounts: &[Account],
    rate: u64,
    seconds: u64,
) -> BenchResult<()> {
    let peers: Arc<Vec<String>> = Arc::new(accounts.iter().map(|a| a.id.clone()).collect());
    let sockets = connect_all(base, accounts).await?;
    let clock = Instant::now();
    let window = (
        clock + WARM_UP,
        clock + WARM_UP + Duration::from_secs(seconds),
    );
    let samples = Arc::new(Mutex::new(Samples::default()));
    let interval = Duration::from_secs_f64(accounts.len() as f64 / rate as f64);
    let mut tasks = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let (sink, reader) = socket.split();
        let (out, outgoing) = mpsc::unbounded_channel::<ClientFrame>();
        tasks.push(tokio::spawn(write(sink, outgoing)));
        tasks.push(tokio::spawn(read(
            reader,
            out.clone(),
            clock,
            window,
            samples.clone(),
        )));
        let peers = peers.clone();
        let samples = samples.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the clients' sends over the interval.
            let first = clock + interval.mul_f64(rand::random::<f64>());
            let mut ticks = tokio::time::interval_at(first.into(), interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            loop {
                let due: Instant = ticks.tick().await.into();
                if due >= window.1 {
                    break;
                }
                if due >= window.0 {
                    samples.lock().await.due += 1;
                }
                let due_us = (due - clock).as_micros() as u64;
                n += 1;
                let frame = timed_send(&peers, index, due_us, format!("{due_us}-{n}"));
                if out.send(frame).is_err() {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep_until(window.0.into()).await;
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep_until(window.1.into()).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    tokio::time::sleep(DRAIN).await;
    for task in tasks {
        task.abort();
    }
    let s = samples.lock().await;
    let mut delivered = s.delivered.clone();
    let mut sent = s.sent.clone();
    delivered.sort_unstable();
    sent.sort_unstable();
    let measured = (window.1 - window.0).as_secs_f64();
    println!(
        "messages: {} clients, {rate}/s offered for {seconds} s: {} due, {} answered sent, {} \
         delivered ({:.0}/s), refused {:?}, {} not delivered within {} s",
        accounts.len(),
        s.due,
        sent.len(),
        delivered.len(),
        delivered.len() as f64 / measured,
        s.refused,
        s.due.saturating_sub(delivered.len() as u64),
        DRAIN.as_secs()
    );
    println!("  send → recipient: {}", percentiles(&delivered));
    println!("  send → sent:      {}", percentiles(&sent));
    println!(
        "  server CPU {cpu:.1} s in the {measured:.0} s measured ({:.0} % of one core); RSS \
         {:.1} MiB",
        100.0 * cpu / measured,
        rss_kib(pid) as f64 / 1024.0
    );
    Ok(())
}

/// Reads a client's frames: records latencies and acknowledges what arrives.
async fn read(
    mut reader: futures_util::stream::SplitStream<Socket>,
    out: mpsc::UnboundedSender<ClientFrame>,
    clock: Instant,
    window: (Instant, Instant),
    samples: Arc<Mutex<Samples>>,
) {
    let in_window = |due_us: u64| {
        let due = clock + Duration::from_micros(due_us);
        due >= window.0 && due < window.1
    };
    while let Some(Ok(message)) = reader.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
            continue;
        };
        let now = clock.elapsed().as_micros() as u64;
        match frame {
            ServerFrame::Message { seq, body, .. } => {
                if let Some(due) = due_of(&body).filter(|&d| in_window(d)) {
                    samples.lock().await.delivered.push(now.saturating_sub(due));
                }
                let _ = out.send(ClientFrame::Ack { seq });
            }
            ServerFrame::Sent { id, .. } => {
                let due = id.split('-').next().and_then(|d| d.parse::<u64>().ok());
                if let Some(due) = due.filter(|&d| in_window(d)) {
                    samples.lock().await.sent.push(now.saturating_sub(due));
                }
            }
            ServerFrame::Hello { .. } | ServerFrame::Typing { .. } => {}
            ServerFrame::Group { seq, .. } | ServerFrame::Receipt { seq, .. } => {
                let _ = out.send(ClientFrame::Ack { seq });
            }
            other => {
                let code = match other {
                    ServerFrame::Error { code, .. } => code,
                    _ => format!("{other:?}").chars().take(40).collect(),
                };
                *samples.lock().await.refused.entry(code).or_default() += 1;
            }
        }
    }
}

/// p50, p90, p99, p99.9 and the maximum of sorted microseconds, in milliseconds.
fn percentiles(sorted: &[u64]) -> String {
    if sorted.is_empty() {
        return "no samples".to_owned();
    }
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        sorted[sorted.len() - 1] as f64 / 1000.0
    )
}
