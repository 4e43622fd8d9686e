//! The WebSocket gateway at `/v1/chat`: authenticates the device, registers its connection
//! (replacing an older one), says `hello`, pushes its inbox in order with at most
//! `window` messages unacknowledged, and answers `send` and `ack` frames.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sealpost_auth::{Session, bearer_token};
use sealpost_db::InboxRow;
use sealpost_proto::{ClientFrame, Problem, Sender, ServerFrame};
use serde::Deserialize;

use crate::Chat;
use crate::registry::Kick;
use crate::send::{GroupBody, ReceiptBody, limited};

/// The subprotocol the server speaks.
pub const SUBPROTOCOL: &str = "sealpost.v1";
/// Close codes (docs/protocol.md).
const CLOSE_REPLACED: u16 = 4001;
const CLOSE_REVOKED: u16 = 4003;
const CLOSE_TOKEN_EXPIRED: u16 = 4004;
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_RESTARTING: u16 = 1012;
const CLOSE_UNSUPPORTED: u16 = 1003;
/// What a connection reads from its socket at a time. The WebSocket library's default
/// (128 KiB, zero-filled on the first read) would make every idle connection cost that much;
/// a larger frame grows the buffer as it arrives.
const READ_BUFFER: usize = 4 << 10;

/// `?token=` for clients that can set neither a header nor a subprotocol.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct TokenQuery {
    /// The bearer token (last resort: URLs end up in logs).
    token: Option<String>,
}

impl std::fmt::Debug for TokenQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenQuery")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Opens the chat WebSocket of one device (docs/protocol.md). Authenticate with
/// `Authorization: Bearer`, the subprotocols `sealpost.v1, bearer.<token>`, or `?token=`.
#[utoipa::path(
    get, path = "/v1/chat", tag = "chat",
    params(TokenQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket; frames are ClientFrame and ServerFrame"),
        (status = 400, description = "Not a WebSocket upgrade", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`missing-token` or `invalid-token`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ())
)]
pub async fn upgrade(
    State(chat): State<Arc<Chat>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let offered = protocol_token(&headers);
    let token = match (bearer_token(&headers), &offered, &query.token) {
        (Ok(token), _, _) => token.to_owned(),
        (Err(_), Some(token), _) | (Err(_), None, Some(token)) => token.clone(),
        (Err(e), None, None) => return e.into_response(),
    };
    let session = match chat.auth.session(&token).await {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    let Ok(ws) = ws else {
        return Problem::new(
            400,
            "not-a-websocket",
            "GET /v1/chat must be a WebSocket upgrade",
        )
        .into_response();
    };
    let ws = if offered.is_some() {
        ws.protocols([SUBPROTOCOL])
    } else {
        ws
    };
    // Both: a frame's length is checked when its header arrives, so nothing over the limit is
    // buffered (tungstenite's default frame limit is 16 MiB).
    ws.max_message_size(chat.config.max_frame)
        .max_frame_size(chat.config.max_frame)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move { chat.serve(socket, session).await })
}

/// The token in a `Sec-WebSocket-Protocol: sealpost.v1, bearer.<token>` offer.
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer."))
        .map(str::to_owned)
}

/// Why a connection ends.
enum End {
    /// The client went away or broke the protocol; nothing more to say.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

impl End {
    /// The reason as the disconnect metric names it, from the close code.
    fn reason(&self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Close(code, _) => match *code {
                CLOSE_REPLACED => "replaced",
                CLOSE_REVOKED => "revoked",
                CLOSE_TOKEN_EXPIRED => "token_expired",
                CLOSE_TOO_SLOW => "too_slow",
                CLOSE_RESTARTING => "restarting",
                CLOSE_UNSUPPORTED => "unsupported",
                _ => "internal",
            },
        }
    }
}

/// How long a frame may be handled on the strength of the last token check.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// One device's connection.
struct Connection {
    account: String,
    device: u32,
    sink: SplitSink<WebSocket, Message>,
    /// Sequence numbers pushed and not yet acknowledged, oldest first.
    in_flight: VecDeque<u64>,
    /// The highest sequence number pushed on this connection.
    pushed: u64,
    /// The window filled before the inbox was pushed to its end: an ack pushes on.
    stalled: bool,
    /// When it connected, Unix milliseconds: messages sent since reach it live.
    since: i64,
    /// The token it connected with (its SHA-256), and when it was last found still valid.
    token_hash: String,
    checked: tokio::time::Instant,
}

impl Chat {
    async fn serve(self: Arc<Self>, socket: WebSocket, session: Session) {
        let Session {
            account_id: account,
            device_id: device,
            expires_at,
            token_hash,
        } = session;
        let now = crate::unix_millis();
        let _open = self.metrics.connected();
        let mut registration = self.registry.register(&account, device, &token_hash, now);
        let checked = tokio::time::Instant::now();
        self.connected(&account, device, now).await;
        let (sink, stream) = socket.split();
        let mut connection = Connection {
            account: account.clone(),
            device,
            sink,
            in_flight: VecDeque::new(),
            pushed: 0,
            stalled: false,
            since: now,
            token_hash,
            checked,
        };
        tracing::debug!(account, device, "chat connected");
        let expiry = tokio::time::Instant::now()
            + std::time::Duration::from_millis(
                u64::try_from(expires_at.saturating_mul(1000).saturating_sub(now)).unwrap_or(0),
            );
        let end = match self
            .run(&mut connection, stream, &mut registration, expiry)
            .await
        {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "chat connection failed");
                End::Close(1011, "internal error")
            }
        };
        self.metrics.disconnected(end.reason());
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = tokio::time::timeout(
                self.config.write_timeout,
                connection.sink.send(Message::Close(Some(frame))),
            )
            .await;
        }
        self.registry
            .unregister(&account, device, registration.connection);
        tracing::debug!(account, device, "chat disconnected");
    }

    async fn run(
        &self,
        c: &mut Connection,
        mut stream: SplitStream<WebSocket>,
        registration: &mut crate::registry::Registration,
        expiry: tokio::time::Instant,
    ) -> anyhow::Result<End> {
        let pending = self.db.inbox_count(&c.account, i64::from(c.device)).await?;
        let dropped = self
            .db
            .take_dropped(&c.account, i64::from(c.device))
            .await?;
        let hello = ServerFrame::Hello {
            account_id: c.account.clone(),
            device_id: c.device,
            pending: u64::try_from(pending).unwrap_or(0),
            dropped: u64::try_from(dropped).unwrap_or(0),
        };
        if !self.write(c, &hello).await {
            return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
        }
        if let Some(left) = self
            .db
            .one_time_key_count(&c.account, i64::from(c.device))
            .await?
            && left < i64::try_from(self.config.one_time_keys_low).unwrap_or(0)
        {
            let low = ServerFrame::KeysLow {
                one_time_keys: u64::try_from(left).unwrap_or(0),
            };
            if !self.write(c, &low).await {
                return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
            }
        }
        if !self.push(c).await? {
            return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
        }
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.reset();
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                kick = registration.kicker.kicked() => return Ok(match kick {
                    Kick::Replaced => End::Close(CLOSE_REPLACED, "replaced"),
                    Kick::Revoked => End::Close(CLOSE_REVOKED, "revoked"),
                }),
                () = tokio::time::sleep_until(expiry) => return Ok(End::Close(CLOSE_TOKEN_EXPIRED, "token-expired")),
                () = self.shutdown.cancelled() => return Ok(End::Close(CLOSE_RESTARTING, "restarting")),
                Some(frame) = registration.ephemeral.recv() => {
                    if !self.write(c, &frame).await {
                        return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                    }
                }
                () = registration.wake.notified() => {
                    if !self.push(c).await? {
                        return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.config.idle_timeout {
                        return Ok(End::Gone);
                    }
                    if !self.token_valid(c, Duration::ZERO).await? {
                        return Ok(End::Close(CLOSE_REVOKED, "revoked"));
                    }
                    if !self.send_raw(c, Message::Ping(Default::default())).await {
                        return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                    }
                    // Also catches what a lost wake-up left in the inbox.
                    if !self.push(c).await? {
                        return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                    }
                }
                message = stream.next() => {
                    last_heard = tokio::time::Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => return Ok(End::Close(CLOSE_UNSUPPORTED, "text frames only")),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(End::Gone),
                    };
                    if !self.token_valid(c, RECHECK_AFTER).await? {
                        return Ok(End::Close(CLOSE_REVOKED, "revoked"));
                    }
                    let started = std::time::Instant::now();
                    let (kind, answer) = self.handle(c, text.as_str()).await?;
                    self.metrics.received(kind);
                    if let Some(answer) = answer {
                        if !self.write(c, &answer).await {
                            return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                        }
                        if matches!(answer, ServerFrame::Sent { .. }) {
                            self.metrics.send_took(kind, started.elapsed().as_secs_f64());
                        }
                    }
                    // New messages come with a wake-up; only an ack that opened a full
                    // window needs the inbox read here.
                    if c.stalled && !self.push(c).await? {
                        return Ok(End::Close(CLOSE_TOO_SLOW, "too-slow"));
                    }
                }
            }
        }
    }

    /// Whether the connection's token still stands, asking the database unless it did within
    /// `fresh`: the signal that a revocation or a device's removal sends may be lost, and then
    /// this is what ends the connection (at the next ping, or the next frame after `fresh`).
    async fn token_valid(&self, c: &mut Connection, fresh: Duration) -> anyhow::Result<bool> {
        if c.checked.elapsed() < fresh {
            return Ok(true);
        }
        let valid = self
            .db
            .token_device(&c.token_hash, sealpost_auth::unix_now())
            .await?
            .is_some();
        c.checked = tokio::time::Instant::now();
        Ok(valid)
    }

    /// Handles one client frame; returns its type (`invalid` when it is none) and the answer,
    /// if it has one.
    async fn handle(
        &self,
        c: &mut Connection,
        text: &str,
    ) -> anyhow::Result<(&'static str, Option<ServerFrame>)> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                let refusal = ServerFrame::Error {
                    id: None,
                    code: "invalid-frame".to_owned(),
                    message: format!("not a frame of protocol v1: {e}"),
                    retry_after: None,
                };
                return Ok(("invalid", Some(refusal)));
            }
        };
        let kind = frame.kind();
        if let Some(seconds) = self.over_frame_budget(c, &frame) {
            let refusal = match &frame {
                ClientFrame::Send { id, .. }
                | ClientFrame::SendGroup { id, .. }
                | ClientFrame::Receipt { id, .. } => {
                    Some(limited(id, "frames from this device", seconds))
                }
                _ => None,
            };
            return Ok((kind, refusal));
        }
        let answer = self.answer(c, frame).await?;
        Ok((kind, answer))
    }

    /// Takes one of the device's frames a minute (acknowledgements are free), before any
    /// other work; `Some(seconds until the next)` when the frame is over the budget (it is
    /// refused if it has an id, dropped if it is a typing indicator).
    fn over_frame_budget(&self, c: &Connection, frame: &ClientFrame) -> Option<u64> {
        if matches!(frame, ClientFrame::Ack { .. }) {
            return None;
        }
        self.per_device_frames
            .check(&format!("{}/{}", c.account, c.device))
            .err()
    }

    /// What one client frame asks, done; the answer, if it has one.
    async fn answer(
        &self,
        c: &mut Connection,
        frame: ClientFrame,
    ) -> anyhow::Result<Option<ServerFrame>> {
        match frame {
            ClientFrame::Send { id, to, envelopes } => Ok(Some(
                self.send(&c.account, c.device, id, to, envelopes).await,
            )),
            ClientFrame::SendGroup {
                id,
                group,
                envelopes,
            } => Ok(Some(
                self.send_group(&c.account, c.device, id, group, envelopes)
                    .await,
            )),
            ClientFrame::Receipt {
                id,
                to,
                status,
                ids,
            } => {
                let body = ReceiptBody { status, ids };
                Ok(Some(self.receipt(&c.account, c.device, id, to, body).await))
            }
            ClientFrame::Typing { to, state } => {
                if self.may_signal(&c.account, &to).await? {
                    self.typing(&c.account, c.device, &to, state).await;
                }
                Ok(None)
            }
            ClientFrame::TypingGroup { group, state } => {
                if let Some(members) = self.typing_audience(&c.account, &group).await? {
                    self.typing_group(&c.account, c.device, &group, members, state)
                        .await;
                }
                Ok(None)
            }
            ClientFrame::Ack { seq } => {
                // Only what this connection pushed can be acknowledged.
                let seq = i64::try_from(seq.min(c.pushed)).unwrap_or(i64::MAX);
                self.db
                    .ack_inbox(&c.account, i64::from(c.device), seq)
                    .await?;
                while c
                    .in_flight
                    .front()
                    .is_some_and(|&s| i64::try_from(s).unwrap_or(i64::MAX) <= seq)
                {
                    c.in_flight.pop_front();
                }
                Ok(None)
            }
        }
    }

    /// Pushes inbox messages past the last one pushed, while the window has room; false when
    /// the device does not read fast enough.
    async fn push(&self, c: &mut Connection) -> anyhow::Result<bool> {
        loop {
            let room = self.config.window.saturating_sub(c.in_flight.len());
            c.stalled = room == 0;
            if c.stalled {
                return Ok(true);
            }
            let rows = self
                .db
                .inbox_after(
                    &c.account,
                    i64::from(c.device),
                    i64::try_from(c.pushed).unwrap_or(i64::MAX),
                    i64::try_from(room).unwrap_or(i64::MAX),
                )
                .await?;
            if rows.is_empty() {
                return Ok(true);
            }
            for row in rows {
                let seq = u64::try_from(row.seq).unwrap_or(0);
                let sent_at = row.sent_at;
                let frame = inbox_frame(row);
                if !self.write(c, &frame).await {
                    return Ok(false);
                }
                if sent_at >= c.since {
                    let waited = crate::unix_millis().saturating_sub(sent_at);
                    // Clocks of two nodes may disagree by a little: never below zero.
                    self.metrics.delivered_after(waited.max(0) as f64 / 1000.0);
                }
                c.pushed = seq;
                c.in_flight.push_back(seq);
            }
        }
    }

    /// Writes a frame; false when the device did not take it within the write timeout.
    async fn write(&self, c: &mut Connection, frame: &ServerFrame) -> bool {
        let Ok(text) = serde_json::to_string(frame) else {
            return false;
        };
        let written = self.send_raw(c, Message::Text(text.into())).await;
        if written {
            let code = match frame {
                ServerFrame::Error { code, .. } => Some(code.as_str()),
                _ => None,
            };
            self.metrics.sent(frame.kind(), code);
        }
        written
    }

    async fn send_raw(&self, c: &mut Connection, message: Message) -> bool {
        matches!(
            tokio::time::timeout(self.config.write_timeout, c.sink.send(message)).await,
            Ok(Ok(()))
        )
    }
}

/// The frame an inbox entry is pushed as: a message, or a receipt or group change (whose
/// body the server made).
fn inbox_frame(row: InboxRow) -> ServerFrame {
    let seq = u64::try_from(row.seq).unwrap_or(0);
    let from = Sender {
        account_id: row.sender_account,
        device_id: u32::try_from(row.sender_device).unwrap_or(0),
    };
    if row.kind == "receipt"
        && let Ok(receipt) = serde_json::from_slice::<ReceiptBody>(&row.body)
    {
        return ServerFrame::Receipt {
            seq,
            server_id: row.server_id,
            from,
            timestamp: row.sent_at,
            status: receipt.status,
            ids: receipt.ids,
        };
    }
    if row.kind == "group"
        && let Ok(change) = serde_json::from_slice::<GroupBody>(&row.body)
    {
        return ServerFrame::Group {
            seq,
            server_id: row.server_id,
            from,
            timestamp: row.sent_at,
            group: row.group_id,
            change: change.change,
            members: change.members,
            version: change.version,
        };
    }
    ServerFrame::Message {
        seq,
        server_id: row.server_id,
        from,
        timestamp: row.sent_at,
        group: (!row.group_id.is_empty()).then_some(row.group_id),
        body: STANDARD.encode(&row.body),
    }
}
