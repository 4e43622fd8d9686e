//! Chat test helpers: WebSocket connections, frames, sends, a second device.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{TestApp, User, rand_bytes};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Generous: a Kafka consumer group takes a few seconds to form.
pub const WAIT: Duration = Duration::from_secs(60);

pub async fn connect(app: &TestApp, token: &str) -> Socket {
    let mut request = format!("ws://{}/v1/chat", app.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    socket
}

/// The next frame within `wait`, if one comes.
pub async fn frame_within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, frame(socket)).await.ok()
}

/// The next frame that is not a ping.
pub async fn frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame within the wait")
            .expect("open")
            .expect("frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Close(close) => {
                return json!({"type": "closed", "code": close.map(|c| u16::from(c.code))});
            }
            _ => {}
        }
    }
}

pub async fn put(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

/// A `send` of `text` to each of `devices` of account `to`.
pub fn send(id: &str, to: &str, devices: &[u32], text: &str) -> Value {
    let envelopes: Vec<Value> = devices
        .iter()
        .map(|d| json!({"device_id": d, "body": STANDARD.encode(format!("{text} for {d}"))}))
        .collect();
    json!({"type": "send", "id": id, "to": to, "envelopes": envelopes})
}

pub fn body(frame: &Value) -> String {
    String::from_utf8(
        STANDARD
            .decode(frame["body"].as_str().expect("body"))
            .expect("base64"),
    )
    .expect("utf-8")
}

/// Links a second device to `user` and logs it in; returns its token.
pub async fn second_device(app: &TestApp, user: &User) -> String {
    let code: Value = app
        .client
        .post(app.url("/v1/devices/link-codes"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("code")
        .json()
        .await
        .expect("json");
    let key = SigningKey::from_bytes(&rand_bytes());
    let res = app
        .client
        .post(app.url("/v1/devices"))
        .json(
            &json!({"phone": user.phone, "code": code["code"], "name": "Laptop",
                      "identity_key": STANDARD.encode(key.verifying_key().as_bytes())}),
        )
        .send()
        .await
        .expect("link");
    assert_eq!(res.status(), 201);
    let challenge = app.device_challenge(&user.phone, 2).await;
    let token: Value = app
        .token_request(&user.phone, &challenge, &key)
        .await
        .json()
        .await
        .expect("json");
    token["token"].as_str().expect("token").to_owned()
}
