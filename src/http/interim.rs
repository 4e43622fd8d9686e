//! A listener whose connections can carry HTTP/1.1 informational (1xx) responses, which hyper
//! cannot send itself: the socket is shared between hyper and the request handler, which writes
//! an interim response head before hyper has written anything for the current request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections as [`SharedStream`]s.
#[derive(Debug)]
pub struct InterimListener(TcpListener);

impl InterimListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for InterimListener {
    type Io = SharedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    return (SharedStream(Arc::new(Mutex::new(stream))), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that hyper reads and writes and that handlers can also write interim responses
/// to. The mutex is held only inside each poll, never across an await.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<Mutex<TcpStream>>);

impl SharedStream {
    /// Waits until the stream has a byte to read (or has ended), without reading it.
    pub async fn readable(&self) -> io::Result<()> {
        let mut byte = [0u8; 1];
        std::future::poll_fn(|cx| {
            self.with(|s| s.poll_peek(cx, &mut ReadBuf::new(&mut byte)))
                .map_ok(drop)
        })
        .await
    }

    fn with<R>(&self, f: impl FnOnce(Pin<&mut TcpStream>) -> R) -> R {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(Pin::new(&mut *stream))
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_shutdown(cx))
    }
}

/// Per-connection info for handlers: the peer address and a way to send interim responses.
#[derive(Debug, Clone)]
pub struct ClientConn {
    /// The peer's address.
    pub addr: SocketAddr,
    stream: Option<SharedStream>,
}

impl ClientConn {
    /// Connection info for a connection accepted by [`InterimListener`].
    pub fn new(addr: SocketAddr, stream: SharedStream) -> Self {
        Self {
            addr,
            stream: Some(stream),
        }
    }

    /// Connection info without interim support (for tests and other listeners).
    pub fn detached(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// Writes an interim response (`status` 100–199 with `headers`) on an HTTP/1.1 connection.
    /// Call it only before the request's body is read and before the final response.
    pub async fn send_interim(
        &self,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
    ) -> io::Result<()> {
        let Some(stream) = &self.stream else {
            return Ok(());
        };
        let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut rest = head.as_bytes();
        while !rest.is_empty() {
            let n = std::future::poll_fn(|cx| stream.with(|s| s.poll_write(cx, rest))).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = &rest[n..];
        }
        Ok(())
    }
}
