//! Client connections: a request header that does not arrive in time closes the connection
//! (slowloris), and connections over the per-node or per-address cap are closed as they are
//! accepted, with a metric; a trusted proxy is not capped per address.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closes `tcp` within `wait` (reading whatever it sends first).
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A whole request on a fresh connection answers 200.
async fn served(app: &TestApp) -> bool {
    let Ok(mut tcp) = TcpStream::connect(app.addr).await else {
        return false;
    };
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    read.is_ok() && answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn a_header_that_does_not_arrive_in_time_closes_the_connection() {
    let app = TestApp::spawn_with(|s| {
        s.connections.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    // Half a request line, then nothing: slowloris.
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow:")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)).await,
        "the half-sent request kept its connection"
    );
    // A connection that never sends a byte goes the same way.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    assert!(served(&app).await, "whole requests are still served");
    assert!(app.metric("sealpost_http_header_timeouts_total").await >= 2.0);
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_as_they_are_accepted() {
    let app = TestApp::spawn_with(|s| {
        s.connections.max = 4;
        s.connections.max_per_address = 2;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    // 127.0.0.1 holds its two: a third from it is closed at once.
    let mut third = TcpStream::connect(app.addr).await.expect("connect");
    assert!(closed_within(&mut third, Duration::from_secs(5)).await);
    let series = "sealpost_http_connections_refused_total{reason=\"address_limit\"}";
    // The metrics request itself needs a place: free one first.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.metric(series).await >= 1.0, "{series}");
    // Once one closes, a request is served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(served(&app).await);
}

#[tokio::test]
async fn the_node_cap_holds_for_a_trusted_proxy_that_the_address_cap_spares() {
    let app = TestApp::spawn_with(|s| {
        s.connections.max = 3;
        s.connections.max_per_address = 1;
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    // Three from the proxy's address are past the per-address cap but allowed; a fourth
    // connection is over the node's cap.
    for tcp in &mut held {
        assert!(!closed_within(tcp, Duration::from_millis(300)).await);
    }
    let mut fourth = TcpStream::connect(app.addr).await.expect("connect");
    assert!(closed_within(&mut fourth, Duration::from_secs(5)).await);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let series = "sealpost_http_connections_refused_total{reason=\"node_limit\"}";
    assert!(app.metric(series).await >= 1.0, "{series}");
}
