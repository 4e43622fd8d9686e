//! The connection loop: every accepted connection is admitted against the per-node and
//! per-address caps, then served by hyper with a header-read timeout (which also closes a
//! connection left idle between requests), until graceful shutdown. `axum::serve` sets no
//! timer, so hyper's own header timeout never ran and half-sent requests held sockets forever.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use sealpost_auth::address_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::client::TrustedProxies;
use super::interim::{ClientConn, InterimListener};
use crate::config::ConnectionSettings;
use crate::metrics::Metrics;

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `connections.max` are open on this node.
    Node,
    /// `connections.max_per_address` are open from the client's address.
    Address,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Node => "node_limit",
            Self::Address => "address_limit",
        }
    }
}

/// Open connections: in all, and per client address (only addresses with one open, so the
/// map holds at most `max` entries).
#[derive(Debug)]
struct Gate {
    max: usize,
    max_per_address: usize,
    proxies: Arc<TrustedProxies>,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
struct Admission {
    gate: Arc<Gate>,
    address: Option<IpAddr>,
}

impl Gate {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.0 >= self.max {
            return Err(Refusal::Node);
        }
        let address = (!self.proxies.trusts(peer.to_canonical())).then(|| address_key(peer));
        if let Some(address) = address {
            let count = open.1.entry(address).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refusal::Address);
            }
            *count += 1;
        }
        open.0 += 1;
        Ok(Admission {
            gate: self.clone(),
            address,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(address) = self.address
            && let Some(count) = open.1.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                open.1.remove(&address);
            }
        }
    }
}

/// Logs a refusal at most once every 10 s, with how many were refused since the last line.
#[derive(Debug, Default)]
struct RefusalLog {
    last: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    fn note(&self, refusal: Refusal, peer: IpAddr, settings: &ConnectionSettings) {
        let refused = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now = sealpost_auth::unix_now().unsigned_abs();
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since.store(0, Ordering::Relaxed);
            tracing::warn!(
                %peer,
                reason = refusal.label(),
                refused,
                max = settings.max,
                max_per_address = settings.max_per_address,
                "connections refused: at the connection limit (connections.max, connections.max_per_address)"
            );
        }
    }
}

/// Serves `router` on `listener` until `signal`, then stops accepting and lets open
/// connections finish their requests.
///
/// # Errors
/// None today; the listener retries failed accepts itself.
pub async fn serve(
    mut listener: InterimListener,
    router: Router,
    settings: ConnectionSettings,
    proxies: Arc<TrustedProxies>,
    metrics: Arc<Metrics>,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let gate = Arc::new(Gate {
        max: settings.max,
        max_per_address: settings.max_per_address,
        proxies,
        open: Mutex::default(),
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    // CONNECT for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    let refusals = RefusalLog::default();
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut signal = pin!(signal);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let admission = match gate.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                metrics.connection_refused(refusal.label());
                refusals.note(refusal, peer.ip(), &settings);
                continue;
            }
        };
        let conn = ClientConn::new(peer, io.clone());
        let service = router
            .clone()
            .map_request(move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(conn.clone()));
                request
            });
        let builder = builder.clone();
        let stop = stop.clone();
        let metrics = metrics.clone();
        let first_byte = settings.header_read_timeout;
        connections.spawn(async move {
            let _admission = admission;
            // hyper's timer starts once it knows the protocol, which takes a first byte: a
            // connection that never sends one gets the same time.
            if tokio::time::timeout(first_byte, io.readable())
                .await
                .is_err()
            {
                metrics.header_timeouts.inc();
                return;
            }
            metrics.connections_open.inc();
            let mut connection = pin!(builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service)
            ));
            let mut stopping = pin!(stop.cancelled());
            let mut stopped = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            let timed_out = e
                                .downcast_ref::<hyper::Error>()
                                .is_some_and(hyper::Error::is_timeout);
                            if timed_out {
                                metrics.header_timeouts.inc();
                            }
                            tracing::debug!(%peer, error = %e, timed_out, "connection ended");
                        }
                        break;
                    }
                    () = &mut stopping, if !stopped => {
                        stopped = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            metrics.connections_open.dec();
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, max_per_address: usize, proxies: &[&str]) -> Arc<Gate> {
        let proxies: Vec<String> = proxies.iter().map(|p| (*p).to_owned()).collect();
        Arc::new(Gate {
            max,
            max_per_address,
            proxies: Arc::new(TrustedProxies::parse(&proxies).expect("proxies")),
            open: Mutex::default(),
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn caps_per_node_and_per_address_free_their_place_when_a_connection_ends() {
        let g = gate(3, 2, &["10.0.0.1"]);
        let a = g.admit(ip("192.0.2.1")).expect("first");
        let _b = g.admit(ip("192.0.2.1")).expect("second");
        assert_eq!(g.admit(ip("192.0.2.1")).err(), Some(Refusal::Address));
        // One IPv6 subscriber is its /64.
        let _c = g.admit(ip("2001:db8::1")).expect("v6");
        assert_eq!(g.admit(ip("192.0.2.9")).err(), Some(Refusal::Node));
        drop(a);
        let _d = g.admit(ip("192.0.2.1")).expect("a place came free");
        let g = gate(10, 1, &["10.0.0.1"]);
        let _e = g.admit(ip("2001:db8::1")).expect("v6");
        assert_eq!(g.admit(ip("2001:db8::ffff")).err(), Some(Refusal::Address));
        let _f = g.admit(ip("2001:db8:0:1::1")).expect("another /64");
        let proxies: Vec<_> = (0..5).map(|_| g.admit(ip("10.0.0.1"))).collect();
        assert!(
            proxies.iter().all(Result::is_ok),
            "a trusted proxy is not capped"
        );
        drop(proxies);
        assert_eq!(
            g.open.lock().expect("lock").1.len(),
            2,
            "only addresses with connections open are kept"
        );
    }
}
