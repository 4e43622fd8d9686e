//! The chat client (docs/protocol.md): one WebSocket to `/v1/chat` that reconnects by itself
//! with exponential backoff and full jitter, resumes from the server's inbox cursor, sends
//! again what was not yet answered (the same id, so nothing is stored twice), and hands the app
//! each stored message once.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use sealpost_proto::{
    AccountKeys, ClientFrame, DeviceKey, Envelope, GroupChange, GroupEnvelope, MemberDevice,
    MemberDeviceKey, ReceiptStatus, Sender, ServerFrame, TypingState,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::{Client, ClientError, Retry};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a chat session behaves.
#[derive(Debug, Clone, Copy)]
pub struct ChatOptions {
    /// Backoff between reconnection attempts (its `attempts` is ignored: a session tries
    /// until it is closed or its token stops working).
    pub backoff: Retry,
    /// A connection the server has not been heard on for this long is given up and made
    /// again (the server pings every 30 s).
    pub silence: Duration,
    /// How many recent message ids the session remembers to drop copies it was sent again.
    pub remembered: usize,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self {
            backoff: Retry {
                attempts: u32::MAX,
                base: Duration::from_millis(250),
                max: Duration::from_secs(30),
            },
            silence: Duration::from_secs(75),
            remembered: 10_000,
        }
    }
}

/// Something that happened on a chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// The server holds few one-time keys for this device: publish more (`PUT /v1/keys`).
    KeysLow {
        /// How many it still holds.
        one_time_keys: u64,
    },
    /// Connected (again): `pending` stored frames follow; `dropped` expired unread.
    Connected {
        /// This account.
        account_id: String,
        /// This device.
        device_id: u32,
        /// Frames waiting in this device's inbox.
        pending: u64,
        /// Messages that expired unread since the last connection.
        dropped: u64,
    },
    /// A stored frame for this device: keep it, then [`ChatSession::ack`] its `seq`.
    Stored(Stored),
    /// Someone is typing to this account.
    Typing {
        /// Who.
        from: Sender,
        /// The group typed to; `None` when typing to this account.
        group: Option<String>,
        /// Started or stopped.
        state: TypingState,
    },
    /// The connection dropped; the session connects again after `retry_in`.
    Disconnected {
        /// What happened.
        reason: String,
        /// The pause before the next attempt.
        retry_in: Duration,
    },
}

/// A stored frame: a message, a receipt, or a change of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its place in this device's inbox; acknowledge by it.
    pub seq: u64,
    /// Its id, the same in every device's copy.
    pub server_id: String,
    /// Who sent it.
    pub from: Sender,
    /// When the server accepted it, Unix milliseconds.
    pub timestamp: i64,
    /// What it is.
    pub content: Content,
}

/// What a stored frame holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A message: the sender's ciphertext for this device.
    Message {
        /// The group it was sent to, if any.
        group: Option<String>,
        /// The body, decoded from base64.
        body: Vec<u8>,
    },
    /// Messages this account sent were delivered or read.
    Receipt {
        /// Delivered or read.
        status: ReceiptStatus,
        /// The messages' server ids.
        ids: Vec<String>,
    },
    /// A group changed.
    Group {
        /// The group.
        group: String,
        /// What changed.
        change: GroupChange,
        /// The accounts it changed.
        members: Vec<String>,
        /// The group's version after it.
        version: u64,
    },
}

/// The server's answer to a send or receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Durable; it will reach every device named.
    Sent {
        /// The message's id.
        server_id: String,
        /// When the server accepted it, Unix milliseconds.
        timestamp: i64,
    },
    /// The devices named are not the recipient's: encrypt for `devices` and send again.
    Mismatch {
        /// The recipient's devices now.
        devices: Vec<DeviceKey>,
    },
    /// The devices named are not the group's member devices.
    GroupMismatch {
        /// Member devices left out.
        missing: Vec<MemberDevice>,
        /// Every member device now (but the sending one).
        devices: Vec<MemberDeviceKey>,
    },
}

enum Command {
    Request {
        id: String,
        frame: String,
        answer: oneshot::Sender<Result<Answer, ClientError>>,
    },
    Ack(u64),
    Typing(String),
    Close(oneshot::Sender<()>),
}

/// A chat session of this device: events come from [`ChatSession::next`]; sends are answered
/// once durable, across reconnects.
#[derive(Debug)]
pub struct ChatSession {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<ChatEvent>,
    task: tokio::task::JoinHandle<Result<(), ClientError>>,
}

impl Client {
    /// Opens a chat session for the logged-in device.
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`]; the first connection's refusal (a bad token) or network
    /// trouble.
    pub async fn chat(&self, options: ChatOptions) -> Result<ChatSession, ClientError> {
        let token = self.bearer()?.to_owned();
        let url = chat_url(&self.base)?;
        let first = connect(&url, &token).await?;
        let (commands, inbox) = mpsc::unbounded_channel();
        let (events, receiver) = mpsc::channel(256);
        let driver = Driver {
            url,
            token,
            options,
            events,
            inbox,
            pending: BTreeMap::new(),
            order: 0,
            seen: Seen::new(options.remembered),
            acked: 0,
        };
        let task = tokio::spawn(driver.run(first));
        Ok(ChatSession {
            commands,
            events: receiver,
            task,
        })
    }

    /// The account with phone number `phone` and its devices' identity keys.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`no-such-account`, `rate-limited`), or network trouble.
    pub async fn lookup(&self, phone: &str) -> Result<AccountKeys, ClientError> {
        let path = format!("/v1/accounts/by-phone/{phone}");
        self.call(reqwest::Method::GET, &path, None::<&()>).await
    }
}

impl ChatSession {
    /// The next event; `None` once the session ended ([`ChatSession::close`] says why).
    pub async fn next(&mut self) -> Option<ChatEvent> {
        self.events.recv().await
    }

    /// Sends a message to every device of `to` (one envelope each) under the client's `id`;
    /// resolves once the server answered, sending again after reconnects.
    ///
    /// # Errors
    /// [`ClientError::Chat`] for a refusal (e.g. `rate-limited`), or the session ended.
    pub async fn send(
        &self,
        id: &str,
        to: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<Answer, ClientError> {
        self.request(
            id,
            &ClientFrame::Send {
                id: id.to_owned(),
                to: to.to_owned(),
                envelopes,
            },
        )
        .await
    }

    /// Sends a message to every member device of `group` (but this one).
    ///
    /// # Errors
    /// As [`ChatSession::send`].
    pub async fn send_group(
        &self,
        id: &str,
        group: &str,
        envelopes: Vec<GroupEnvelope>,
    ) -> Result<Answer, ClientError> {
        self.request(
            id,
            &ClientFrame::SendGroup {
                id: id.to_owned(),
                group: group.to_owned(),
                envelopes,
            },
        )
        .await
    }

    /// Tells every device of `to` that its messages `ids` were delivered or read.
    ///
    /// # Errors
    /// As [`ChatSession::send`].
    pub async fn receipt(
        &self,
        id: &str,
        to: &str,
        status: ReceiptStatus,
        ids: Vec<String>,
    ) -> Result<Answer, ClientError> {
        self.request(
            id,
            &ClientFrame::Receipt {
                id: id.to_owned(),
                to: to.to_owned(),
                status,
                ids,
            },
        )
        .await
    }

    /// Tells the connected devices of `to` that this one started or stopped typing (dropped
    /// while disconnected).
    pub fn typing(&self, to: &str, state: TypingState) {
        self.ephemeral(&ClientFrame::Typing {
            to: to.to_owned(),
            state,
        });
    }

    /// Tells the connected member devices of `group` that this one started or stopped
    /// typing (dropped while disconnected).
    pub fn typing_group(&self, group: &str, state: TypingState) {
        self.ephemeral(&ClientFrame::TypingGroup {
            group: group.to_owned(),
            state,
        });
    }

    fn ephemeral(&self, frame: &ClientFrame) {
        if let Ok(frame) = serde_json::to_string(frame) {
            let _ = self.commands.send(Command::Typing(frame));
        }
    }

    /// Acknowledges every stored frame up to `seq`: the server forgets them.
    pub fn ack(&self, seq: u64) {
        let _ = self.commands.send(Command::Ack(seq));
    }

    /// Closes the session; why it ended, if not because it was asked to.
    ///
    /// # Errors
    /// The reason the session had stopped by itself: the token no longer works
    /// ([`ClientError::Chat`] `revoked`, `token-expired`), the device connected elsewhere
    /// (`replaced`).
    pub async fn close(self) -> Result<(), ClientError> {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
        self.task
            .await
            .map_err(|e| ClientError::Protocol(format!("the chat task failed: {e}")))?
    }

    async fn request(&self, id: &str, frame: &ClientFrame) -> Result<Answer, ClientError> {
        let frame = serde_json::to_string(frame)
            .map_err(|e| ClientError::Protocol(format!("cannot write a frame: {e}")))?;
        let (answer, answered) = oneshot::channel();
        self.commands
            .send(Command::Request {
                id: id.to_owned(),
                frame,
                answer,
            })
            .map_err(|_| ended())?;
        answered.await.map_err(|_| ended())?
    }
}

fn ended() -> ClientError {
    ClientError::Chat {
        code: "session-ended".to_owned(),
        message: "the chat session has ended".to_owned(),
        retry_after: None,
    }
}

/// Recently seen message ids, oldest forgotten first.
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Seen {
    fn new(capacity: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `id`; false when it was seen already.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// A send waiting for its answer.
struct Pending {
    id: String,
    frame: String,
    answer: oneshot::Sender<Result<Answer, ClientError>>,
}

/// Why a connection ended.
enum Outcome {
    /// The app closed the session.
    Closed,
    /// The session cannot go on.
    Fatal(ClientError),
    /// Connect again.
    Retry(String),
}

/// The task behind a session: owns the connection.
struct Driver {
    url: String,
    token: String,
    options: ChatOptions,
    events: mpsc::Sender<ChatEvent>,
    inbox: mpsc::UnboundedReceiver<Command>,
    /// Sends not yet answered, in the order they were made.
    pending: BTreeMap<u64, Pending>,
    order: u64,
    seen: Seen,
    /// The highest `seq` the app acknowledged.
    acked: u64,
}

impl Driver {
    async fn run(mut self, first: Socket) -> Result<(), ClientError> {
        let mut socket = Some(first);
        let mut attempt = 1u32;
        loop {
            let outcome = match socket.take() {
                Some(s) => self.serve(s, &mut attempt).await,
                None => match connect(&self.url, &self.token).await {
                    Ok(s) => self.serve(s, &mut attempt).await,
                    Err(e) if e.is_transient() => Outcome::Retry(e.to_string()),
                    Err(e) => Outcome::Fatal(e),
                },
            };
            match outcome {
                Outcome::Closed => return Ok(()),
                Outcome::Fatal(e) => {
                    self.fail_pending(&e);
                    return Err(e);
                }
                Outcome::Retry(reason) => {
                    attempt = attempt.saturating_add(1);
                    let retry_in = self.options.backoff.delay(attempt);
                    let _ = self
                        .events
                        .send(ChatEvent::Disconnected { reason, retry_in })
                        .await;
                    if let Some(outcome) = self.wait(retry_in).await {
                        return outcome;
                    }
                }
            }
        }
    }

    /// Waits out a backoff while taking commands; `Some` when the session ends.
    async fn wait(&mut self, pause: Duration) -> Option<Result<(), ClientError>> {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                command = self.inbox.recv() => match command {
                    None => return Some(Ok(())),
                    Some(Command::Close(done)) => {
                        let _ = done.send(());
                        return Some(Ok(()));
                    }
                    // Sends wait for the next connection; typing indicators are dropped.
                    Some(command) => drop(self.take(command)),
                },
            }
        }
    }

    /// Keeps what a command leaves for later connections (a send until it is answered, the
    /// highest ack); returns the frame it sends now.
    fn take(&mut self, command: Command) -> Option<String> {
        match command {
            Command::Request { id, frame, answer } => {
                self.order += 1;
                self.pending.insert(
                    self.order,
                    Pending {
                        id,
                        frame: frame.clone(),
                        answer,
                    },
                );
                Some(frame)
            }
            Command::Ack(seq) => {
                self.acked = self.acked.max(seq);
                Some(ack_frame(seq))
            }
            Command::Typing(frame) => Some(frame),
            Command::Close(_) => None,
        }
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, mut socket: Socket, attempt: &mut u32) -> Outcome {
        // What was not answered is sent again under the same ids; acks the app made while
        // disconnected go first.
        let mut resend = Vec::new();
        if self.acked > 0 {
            resend.push(ack_frame(self.acked));
        }
        resend.extend(self.pending.values().map(|p| p.frame.clone()));
        for frame in resend {
            if let Err(e) = socket.send(Message::Text(frame.into())).await {
                return Outcome::Retry(e.to_string());
            }
        }
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(heard + self.options.silence) => {
                    return Outcome::Retry("the server went silent".to_owned());
                }
                command = self.inbox.recv() => {
                    let Some(command) = command else {
                        let _ = socket.close(None).await;
                        return Outcome::Closed;
                    };
                    if let Command::Close(done) = command {
                        let _ = socket.close(None).await;
                        let _ = done.send(());
                        return Outcome::Closed;
                    }
                    if let Some(frame) = self.take(command)
                        && let Err(e) = socket.send(Message::Text(frame.into())).await
                    {
                        return Outcome::Retry(e.to_string());
                    }
                }
                message = socket.next() => {
                    heard = tokio::time::Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(close))) => return closed(close.as_ref()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Outcome::Retry(e.to_string()),
                        None => return Outcome::Retry("the connection closed".to_owned()),
                    };
                    let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
                        continue;
                    };
                    if matches!(frame, ServerFrame::Hello { .. }) {
                        *attempt = 1;
                    }
                    if let Some(reply) = self.on_frame(frame).await
                        && let Err(e) = socket.send(Message::Text(reply.into())).await
                    {
                        return Outcome::Retry(e.to_string());
                    }
                }
            }
        }
    }

    /// Acts on a frame from the server; returns a frame to send back, if any.
    async fn on_frame(&mut self, frame: ServerFrame) -> Option<String> {
        let event = match frame {
            ServerFrame::Hello {
                account_id,
                device_id,
                pending,
                dropped,
            } => ChatEvent::Connected {
                account_id,
                device_id,
                pending,
                dropped,
            },
            ServerFrame::Message {
                seq,
                server_id,
                from,
                timestamp,
                group,
                body,
            } => {
                let body = sealpost_proto::BASE64.decode(body).unwrap_or_default();
                let content = Content::Message { group, body };
                return self.stored(seq, server_id, from, timestamp, content).await;
            }
            ServerFrame::Receipt {
                seq,
                server_id,
                from,
                timestamp,
                status,
                ids,
            } => {
                let content = Content::Receipt { status, ids };
                return self.stored(seq, server_id, from, timestamp, content).await;
            }
            ServerFrame::Group {
                seq,
                server_id,
                from,
                timestamp,
                group,
                change,
                members,
                version,
            } => {
                let content = Content::Group {
                    group,
                    change,
                    members,
                    version,
                };
                return self.stored(seq, server_id, from, timestamp, content).await;
            }
            ServerFrame::Typing { from, group, state } => ChatEvent::Typing { from, group, state },
            ServerFrame::KeysLow { one_time_keys } => ChatEvent::KeysLow { one_time_keys },
            ServerFrame::Sent {
                id,
                server_id,
                timestamp,
            } => {
                self.answer(
                    &id,
                    Ok(Answer::Sent {
                        server_id,
                        timestamp,
                    }),
                );
                return None;
            }
            ServerFrame::Mismatch { id, devices, .. } => {
                self.answer(&id, Ok(Answer::Mismatch { devices }));
                return None;
            }
            ServerFrame::GroupMismatch {
                id,
                missing,
                devices,
                ..
            } => {
                self.answer(&id, Ok(Answer::GroupMismatch { missing, devices }));
                return None;
            }
            ServerFrame::Error {
                id,
                code,
                message,
                retry_after,
            } => {
                if let Some(id) = id {
                    self.answer(
                        &id,
                        Err(ClientError::Chat {
                            code,
                            message,
                            retry_after,
                        }),
                    );
                }
                return None;
            }
        };
        let _ = self.events.send(event).await;
        None
    }

    /// Hands a stored frame to the app once: a copy sent again (after a reconnect) is
    /// dropped, and acknowledged again if the app had acknowledged it.
    async fn stored(
        &mut self,
        seq: u64,
        server_id: String,
        from: Sender,
        timestamp: i64,
        content: Content,
    ) -> Option<String> {
        if !self.seen.insert(&server_id) {
            return (seq <= self.acked).then(|| ack_frame(seq));
        }
        let stored = Stored {
            seq,
            server_id,
            from,
            timestamp,
            content,
        };
        let _ = self.events.send(ChatEvent::Stored(stored)).await;
        None
    }

    /// Resolves the oldest send waiting under `id`.
    fn answer(&mut self, id: &str, answer: Result<Answer, ClientError>) {
        let key = self
            .pending
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(k, _)| *k);
        if let Some(pending) = key.and_then(|k| self.pending.remove(&k)) {
            let _ = pending.answer.send(answer);
        }
    }

    fn fail_pending(&mut self, e: &ClientError) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            let _ = pending.answer.send(Err(ClientError::Chat {
                code: "session-ended".to_owned(),
                message: e.to_string(),
                retry_after: None,
            }));
        }
    }
}

fn ack_frame(seq: u64) -> String {
    serde_json::to_string(&ClientFrame::Ack { seq }).unwrap_or_default()
}

/// What a close frame from the server means for the session (docs/protocol.md).
fn closed(close: Option<&CloseFrame>) -> Outcome {
    let code = close.map_or(1005, |c| u16::from(c.code));
    let fatal = |code: &str, message: &str| {
        Outcome::Fatal(ClientError::Chat {
            code: code.to_owned(),
            message: message.to_owned(),
            retry_after: None,
        })
    };
    match code {
        4001 => fatal(
            "replaced",
            "this device connected again elsewhere; this session gave way",
        ),
        4003 => fatal(
            "revoked",
            "this device was removed or its token revoked; log in again",
        ),
        4004 => fatal("token-expired", "the token expired; log in again"),
        1003 => fatal("unsupported", "the server refused a frame of this client"),
        _ => Outcome::Retry(format!("the server closed the connection ({code})")),
    }
}

/// The WebSocket URL of the chat endpoint of the server at `base`.
fn chat_url(base: &str) -> Result<String, ClientError> {
    if let Some(rest) = base.strip_prefix("https://") {
        Ok(format!("wss://{rest}/v1/chat"))
    } else if let Some(rest) = base.strip_prefix("http://") {
        Ok(format!("ws://{rest}/v1/chat"))
    } else {
        Err(ClientError::Protocol(format!(
            "the server URL {base:?} must start with http:// or https://"
        )))
    }
}

async fn connect(url: &str, token: &str) -> Result<Socket, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Protocol(format!("bad chat URL: {e}")))?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Protocol("the token is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let problem: serde_json::Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            Err(ClientError::Server {
                status,
                code: problem["code"].as_str().unwrap_or("unknown").to_owned(),
                detail: problem["detail"]
                    .as_str()
                    .unwrap_or("the chat connection was refused")
                    .to_owned(),
            })
        }
        Err(e) => Err(ClientError::Socket(e.to_string())),
    }
}
