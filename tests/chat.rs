//! The chat gateway and delivery pipeline (docs/protocol.md), on every backend: messages reach
//! every device of the recipient in order, offline ones from the inbox, once each; a send is
//! answered `sent` once durable and never stored twice; the device list is checked; a newer
//! connection replaces an older; two nodes sharing the backends deliver to each other.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::chat::{body, connect, frame, frame_within, put, second_device, send};
use common::{TestApp, node_and_gateway, phone, settings_in};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn a_message_reaches_an_offline_device_from_its_inbox_once_and_in_order() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    assert_eq!(frame(&mut a).await["type"], "hello");
    let mut answers = Vec::new();
    for i in 0..3 {
        put(
            &mut a,
            send(&format!("m{i}"), &bob.account_id, &[1], &format!("hi {i}")),
        )
        .await;
        let sent = frame(&mut a).await;
        assert_eq!(
            (sent["type"].as_str(), sent["id"].as_str()),
            (Some("sent"), Some(format!("m{i}").as_str())),
            "{sent}"
        );
        answers.push(sent);
    }
    // A retry of a send is answered the same and stored once.
    put(&mut a, send("m1", &bob.account_id, &[1], "hi 1")).await;
    assert_eq!(frame(&mut a).await, answers[1]);

    let mut b = connect(&app, &bob.token).await;
    let hello = frame(&mut b).await;
    assert_eq!(
        (hello["type"].as_str(), hello["device_id"].as_u64()),
        (Some("hello"), Some(1))
    );
    let mut seen = Vec::new();
    let mut last_seq = 0;
    for _ in 0..3 {
        let m = frame(&mut b).await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["from"]["account_id"], alice.account_id.as_str());
        assert!(m["seq"].as_u64().expect("seq") > last_seq);
        last_seq = m["seq"].as_u64().expect("seq");
        seen.push(body(&m));
    }
    assert_eq!(seen, ["hi 0 for 1", "hi 1 for 1", "hi 2 for 1"]);
    put(&mut b, json!({"type": "ack", "seq": last_seq})).await;
    // Frames are answered in order: once this one is, the ack is done.
    put(&mut b, json!({"type": "shout"})).await;
    assert_eq!(frame(&mut b).await["code"], "invalid-frame");
    drop(b);
    let mut b = connect(&app, &bob.token).await;
    let hello = frame(&mut b).await;
    assert_eq!(hello["pending"], 0, "{hello}");
}

#[tokio::test]
async fn an_online_device_gets_messages_pushed_and_unacked_ones_again_on_reconnect() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut b = connect(&app, &bob.token).await;
    assert_eq!(frame(&mut b).await["type"], "hello");
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("x", &bob.account_id, &[1], "live")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    let m = frame(&mut b).await;
    assert_eq!(body(&m), "live for 1");
    let server_id = m["server_id"].clone();
    // Not acknowledged: the next connection gets it again, under the same server id.
    drop(b);
    let mut b = connect(&app, &bob.token).await;
    assert_eq!(frame(&mut b).await["pending"], 1);
    let again = frame(&mut b).await;
    assert_eq!(again["server_id"], server_id);
}

#[tokio::test]
async fn every_device_gets_its_own_copy_and_a_wrong_device_list_is_refused() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let laptop = second_device(&app, &bob).await;
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("one", &bob.account_id, &[1], "only one")).await;
    let mismatch = frame(&mut a).await;
    assert_eq!(mismatch["type"], "mismatch", "{mismatch}");
    assert_eq!(
        (mismatch["missing"].clone(), mismatch["extra"].clone()),
        (json!([2]), json!([]))
    );
    assert_eq!(mismatch["devices"].as_array().map(Vec::len), Some(2));
    put(&mut a, send("one", &bob.account_id, &[1, 2], "both")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    for (token, device) in [(&bob.token, 1), (&laptop, 2)] {
        let mut s = connect(&app, token).await;
        assert_eq!(frame(&mut s).await["device_id"], device);
        assert_eq!(body(&frame(&mut s).await), format!("both for {device}"));
    }
    // To one's own account: the other devices, not the sending one.
    let mut phone_socket = connect(&app, &bob.token).await;
    frame(&mut phone_socket).await;
    frame(&mut phone_socket).await;
    put(
        &mut phone_socket,
        send("self", &bob.account_id, &[2], "note to self"),
    )
    .await;
    assert_eq!(frame(&mut phone_socket).await["type"], "sent");
    // `sent` means durable, not yet delivered: the note may come after the hello.
    let mut l = connect(&app, &laptop).await;
    assert_eq!(frame(&mut l).await["type"], "hello");
    assert_eq!(
        body(&frame(&mut l).await),
        "both for 2",
        "the unacked copy first"
    );
    assert_eq!(body(&frame(&mut l).await), "note to self for 2");
}

#[tokio::test]
async fn bad_frames_get_codes_and_a_newer_connection_replaces_the_older() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    let huge = STANDARD.encode(vec![0u8; (64 << 10) + 1]);
    for (request, code) in [
        (json!({"type": "shout"}), "invalid-frame"),
        (send("", &bob.account_id, &[1], "x"), "invalid-id"),
        (send("n", "no-such-account", &[1], "x"), "no-such-account"),
        (
            json!({"type": "send", "id": "big", "to": bob.account_id, "envelopes": [{"device_id": 1, "body": huge}]}),
            "message-too-large",
        ),
    ] {
        put(&mut a, request).await;
        let error = frame(&mut a).await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some(code)),
            "{error}"
        );
    }
    let mut newer = connect(&app, &alice.token).await;
    assert_eq!(frame(&mut newer).await["type"], "hello");
    assert_eq!(frame(&mut a).await, json!({"type": "closed", "code": 4001}));

    // No token, a bad token: refused before the upgrade.
    let request = format!("ws://{}/v1/chat", app.addr)
        .into_client_request()
        .expect("request");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // Browsers: the token as a subprotocol.
    let mut request = format!("ws://{}/v1/chat", app.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("sealpost.v1, bearer.{}", bob.token)
            .parse()
            .expect("header"),
    );
    let (mut browser, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sealpost.v1")
    );
    assert_eq!(
        frame(&mut browser).await["account_id"],
        bob.account_id.as_str()
    );
}

#[tokio::test]
async fn a_device_on_one_node_reaches_a_device_on_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = node_and_gateway(dir.path()).await;
    let (alice, bob) = (one.user(&phone()).await, one.user(&phone()).await);
    let mut b = connect(&two, &bob.token).await;
    assert_eq!(frame(&mut b).await["type"], "hello");
    let mut a = connect(&one, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("far", &bob.account_id, &[1], "across")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    assert_eq!(
        body(&frame(&mut b).await),
        "across for 1",
        "woken on the other node"
    );
    // Bob's device connects to the first node: its connection on the second closes.
    let mut again = connect(&one, &bob.token).await;
    assert_eq!(frame(&mut again).await["type"], "hello");
    assert_eq!(frame(&mut b).await, json!({"type": "closed", "code": 4001}));
    two.shutdown().await;
    one.shutdown().await;
}

#[tokio::test]
async fn receipts_reach_every_device_of_the_sender_and_typing_only_connected_ones() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let laptop = second_device(&app, &alice).await;
    let mut b = connect(&app, &bob.token).await;
    frame(&mut b).await;
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("hi", &bob.account_id, &[1], "hello")).await;
    let sent = frame(&mut a).await;
    let server_id = sent["server_id"].as_str().expect("server id").to_owned();
    let m = frame(&mut b).await;
    assert_eq!(m["server_id"], server_id.as_str());

    let receipt = json!({"type": "receipt", "id": "r1", "to": alice.account_id, "status": "read", "ids": [server_id]});
    put(&mut b, receipt).await;
    assert_eq!(frame(&mut b).await["type"], "sent");
    let got = frame(&mut a).await;
    assert_eq!(
        (
            got["type"].as_str(),
            got["status"].as_str(),
            got["from"]["account_id"].as_str()
        ),
        (Some("receipt"), Some("read"), Some(bob.account_id.as_str())),
        "{got}"
    );
    assert_eq!(got["ids"], json!([server_id]));
    // The laptop was offline: the receipt waits in its inbox.
    let mut l = connect(&app, &laptop).await;
    assert_eq!(frame(&mut l).await["pending"], 1);
    assert_eq!(frame(&mut l).await["type"], "receipt");

    // Typing reaches the devices connected now, and is never stored. (On Kafka the first
    // indicators may go stale while this node's wake-up group forms: send until one lands.)
    let typing = json!({"type": "typing", "to": alice.account_id, "state": "started"});
    for socket in [&mut a, &mut l] {
        let typing = loop {
            put(&mut b, typing.clone()).await;
            if let Some(frame) = frame_within(socket, Duration::from_secs(1)).await {
                break frame;
            }
        };
        assert_eq!(
            (
                typing["type"].as_str(),
                typing["state"].as_str(),
                typing["from"]["device_id"].as_u64()
            ),
            (Some("typing"), Some("started"), Some(1)),
            "{typing}"
        );
    }
    put(
        &mut b,
        json!({"type": "receipt", "id": "r2", "to": alice.account_id, "status": "read", "ids": []}),
    )
    .await;
    let error = frame(&mut b).await;
    assert_eq!(error["code"], "invalid-frame", "{error}");
    drop(l);
    let mut l = connect(&app, &laptop).await;
    assert_eq!(
        frame(&mut l).await["pending"],
        1,
        "only the unacked receipt, no typing"
    );
}

#[tokio::test]
async fn senders_are_rate_limited_per_recipient_and_unread_messages_expire_with_a_count() {
    let app = TestApp::spawn_with(|s| {
        s.chat.messages_per_pair_per_minute = 2;
        s.chat.inbox_retention = Duration::from_secs(2);
        s.chat.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let (alice, bob, carol) = (
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    );
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    for id in ["1", "2"] {
        put(&mut a, send(id, &bob.account_id, &[1], "x")).await;
        assert_eq!(frame(&mut a).await["type"], "sent");
    }
    put(&mut a, send("3", &bob.account_id, &[1], "x")).await;
    let limited = frame(&mut a).await;
    assert_eq!(limited["code"], "rate-limited", "{limited}");
    assert!(
        limited["retry_after"]
            .as_u64()
            .is_some_and(|s| (1..=60).contains(&s))
    );
    put(&mut a, send("4", &carol.account_id, &[1], "x")).await;
    assert_eq!(
        frame(&mut a).await["type"],
        "sent",
        "another recipient has its own budget"
    );

    // Bob never connected: after the retention his two messages are dropped, and counted.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut hello = json!({});
    let mut dropped = 0;
    for _ in 0..60 {
        let mut b = connect(&app, &bob.token).await;
        hello = frame(&mut b).await;
        dropped += hello["dropped"].as_u64().unwrap_or(0);
        if dropped == 2 && hello["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hello["dropped"] = json!(dropped);
    assert_eq!(
        (hello["pending"].as_u64(), hello["dropped"].as_u64()),
        (Some(0), Some(2)),
        "{hello}"
    );
    let mut b = connect(&app, &bob.token).await;
    assert_eq!(frame(&mut b).await["dropped"], 0, "told once");
}

#[tokio::test]
async fn a_device_flooding_frames_is_refused_before_any_other_work_but_acks_are_free() {
    let app = TestApp::spawn_with(|s| s.chat.frames_per_device_per_minute = 3).await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    let mut b = connect(&app, &bob.token).await;
    frame(&mut b).await;
    // Two typing frames (to a made-up account: still a frame) and a send use the three.
    for _ in 0..2 {
        put(
            &mut a,
            json!({"type": "typing", "to": "0".repeat(32), "state": "started"}),
        )
        .await;
    }
    put(&mut a, send("1", &bob.account_id, &[1], "x")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    put(&mut a, send("2", &bob.account_id, &[1], "x")).await;
    let limited = frame(&mut a).await;
    assert_eq!(limited["code"], "rate-limited", "{limited}");
    assert_eq!(limited["id"], "2");
    assert!(
        limited["retry_after"]
            .as_u64()
            .is_some_and(|s| (1..=20).contains(&s))
    );
    // Bob's device has a budget of its own, and acknowledging costs none of it.
    let got = frame(&mut b).await;
    assert_eq!(got["type"], "message");
    for _ in 0..5 {
        put(&mut b, json!({"type": "ack", "seq": got["seq"]})).await;
    }
    put(&mut b, send("b1", &alice.account_id, &[1], "y")).await;
    assert_eq!(frame(&mut b).await["type"], "sent");
}

#[tokio::test]
async fn a_sent_message_the_bus_lost_is_published_again_from_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A gateway whose bus no worker reads (as good as a bus that lost the message), and a
    // node sharing its database that delivers.
    let mut lossy = settings_in(dir.path());
    lossy.role = sealpost::Role::Chat;
    lossy.bus = format!("memory://lost-{}", std::process::id());
    let mut worker = settings_in(dir.path());
    worker.chat.republish_after = Duration::from_secs(1);
    worker.chat.sweep_interval = Duration::from_millis(200);
    let gateway = TestApp::start(lossy).await;
    let node = TestApp::start(worker).await;
    let (alice, bob) = (node.user(&phone()).await, node.user(&phone()).await);
    let mut a = connect(&gateway, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("lost", &bob.account_id, &[1], "still here")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    let mut b = connect(&node, &bob.token).await;
    frame(&mut b).await;
    let m = frame(&mut b).await;
    assert_eq!(body(&m), "still here for 1");
    node.shutdown().await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_reused_id_is_answered_the_same_for_the_same_message_and_refused_for_another() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    put(&mut a, send("m1", &bob.account_id, &[1], "first")).await;
    let sent = frame(&mut a).await;
    assert_eq!(sent["type"], "sent", "{sent}");
    put(&mut a, send("m1", &bob.account_id, &[1], "first")).await;
    assert_eq!(frame(&mut a).await, sent, "a retry gets the same answer");
    put(&mut a, send("m1", &bob.account_id, &[1], "second")).await;
    let refused = frame(&mut a).await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["code"].as_str(),
            refused["id"].as_str()
        ),
        (Some("error"), Some("id-reused"), Some("m1")),
        "{refused}"
    );
    let mut b = connect(&app, &bob.token).await;
    frame(&mut b).await;
    let message = frame(&mut b).await;
    assert_eq!(body(&message), "first for 1");
    assert_eq!(frame_within(&mut b, Duration::from_secs(1)).await, None);
}

#[tokio::test]
async fn a_removed_device_a_revoked_token_and_an_expired_token_lose_their_connection() {
    let app = TestApp::spawn_with(|s| s.auth.token_ttl = Duration::from_secs(3)).await;
    let alice = app.user(&phone()).await;
    let laptop = second_device(&app, &alice).await;
    let mut l = connect(&app, &laptop).await;
    assert_eq!(frame(&mut l).await["device_id"], 2);
    let removed = app
        .client
        .delete(app.url("/v1/devices/2"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("remove");
    assert_eq!(removed.status(), 204);
    assert_eq!(frame(&mut l).await, json!({"type": "closed", "code": 4003}));

    // Logging out closes only the connection made with that token.
    let bob = app.user(&phone()).await;
    let mut b = connect(&app, &bob.token).await;
    frame(&mut b).await;
    let out = app
        .client
        .delete(app.url("/v1/auth/token"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 204);
    assert_eq!(frame(&mut b).await, json!({"type": "closed", "code": 4003}));

    // A token that expires while connected ends its connection (tokens here live 3 s).
    let carol = app.user(&phone()).await;
    let mut c = connect(&app, &carol.token).await;
    frame(&mut c).await;
    assert_eq!(
        frame_within(&mut c, Duration::from_secs(10)).await,
        Some(json!({"type": "closed", "code": 4004}))
    );
}

#[tokio::test]
async fn the_window_holds_unacknowledged_messages_and_budgets_and_frame_sizes_are_enforced() {
    let app = TestApp::spawn_with(|s| {
        s.chat.window = 2;
        s.chat.max_frame = 100 << 10;
        s.chat.bytes_per_device_per_minute = 1_000;
    })
    .await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    let mut b = connect(&app, &bob.token).await;
    frame(&mut b).await;
    for i in 0..3 {
        put(&mut a, send(&format!("w{i}"), &bob.account_id, &[1], "x")).await;
        assert_eq!(frame(&mut a).await["type"], "sent");
    }
    // Two are pushed; the third waits for an ack.
    let first = frame(&mut b).await;
    let second = frame(&mut b).await;
    assert_eq!(second["seq"], 2, "{second}");
    assert_eq!(frame_within(&mut b, Duration::from_secs(1)).await, None);
    put(&mut b, json!({"type": "ack", "seq": first["seq"]})).await;
    assert_eq!(frame(&mut b).await["seq"], 3);

    // 1,000 body bytes a minute from one device: the next send over it is refused.
    let big = STANDARD.encode(vec![7u8; 900]);
    let big_send = |id: &str| {
        json!({"type": "send", "id": id, "to": bob.account_id,
               "envelopes": [{"device_id": 1, "body": big}]})
    };
    put(&mut a, big_send("b1")).await;
    assert_eq!(frame(&mut a).await["type"], "sent", "within the budget");
    put(&mut a, big_send("b2")).await;
    let refused = frame(&mut a).await;
    assert_eq!(
        (refused["code"].as_str(), refused["retry_after"].is_u64()),
        (Some("rate-limited"), true),
        "{refused}"
    );

    // A frame over chat.max_frame ends the connection.
    let huge = "x".repeat(200 << 10);
    put(
        &mut a,
        json!({"type": "typing", "to": huge, "state": "started"}),
    )
    .await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(close))) => return close.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the connection ends");
    assert_ne!(end, Some(1000), "not a normal closure");
}

#[tokio::test]
async fn a_revocation_whose_signal_was_lost_still_ends_the_connection() {
    let app = TestApp::spawn_with(|s| s.chat.ping_interval = Duration::from_secs(3)).await;
    let bob = app.user(&phone()).await;
    // The token row is gone and nobody said so: the connection ends at its next frame, and
    // at the next ping (3 s here) one that sends nothing.
    let dave = app.user(&phone()).await;
    let mut d = connect(&app, &dave.token).await;
    frame(&mut d).await;
    let erin = app.user(&phone()).await;
    let mut e = connect(&app, &erin.token).await;
    frame(&mut e).await;
    let db = sealpost_db::Db::connect(&app.database_url, 2)
        .await
        .expect("db");
    // Past the second a frame may go on the last check.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for token in [&dave.token, &erin.token] {
        assert!(
            db.delete_token(&sealpost_auth::token_hash(token))
                .await
                .expect("delete")
        );
    }
    put(&mut d, send("after-revocation", &bob.account_id, &[1], "x")).await;
    assert_eq!(frame(&mut d).await, json!({"type": "closed", "code": 4003}));
    assert_eq!(
        frame_within(&mut e, Duration::from_secs(60)).await,
        Some(json!({"type": "closed", "code": 4003}))
    );
}

/// Reads `socket` until it ends; returns the text frames read and the close code, if a close
/// frame came.
async fn read_to_end(socket: &mut common::chat::Socket) -> (usize, Option<u16>) {
    let mut texts = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(_))) => texts += 1,
                Some(Ok(Message::Close(close))) => return close.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .map(|code| (texts, code))
    .expect("the connection ends")
}

/// Waits (up to 60 s) until `count` messages wait in inboxes.
async fn wait_until_all_stored(app: &TestApp, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.metric("sealpost_chat_inbox_messages").await < count as f64 {
        assert!(std::time::Instant::now() < deadline, "not all stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_device_that_stops_reading_is_disconnected_and_resumes_from_its_inbox() {
    const MESSAGES: usize = 300;
    let app = TestApp::spawn_with(|s| {
        s.chat.window = 1_000;
        s.chat.write_timeout = Duration::from_millis(500);
        s.chat.messages_per_pair_per_minute = 10_000;
        s.chat.bytes_per_device_per_minute = 1 << 30;
    })
    .await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    let mut b = connect(&app, &bob.token).await;
    assert_eq!(frame(&mut b).await["type"], "hello");
    // Bob reads no more while 300 messages of 64 KiB (about 26 MB of frames, more than the
    // loopback socket buffers hold) are pushed to him.
    let big = STANDARD.encode(vec![7u8; 64 << 10]);
    for i in 0..MESSAGES {
        put(
            &mut a,
            json!({"type": "send", "id": format!("s{i}"), "to": bob.account_id,
                   "envelopes": [{"device_id": 1, "body": big}]}),
        )
        .await;
        assert_eq!(frame(&mut a).await["type"], "sent");
    }
    // Once the delivery worker stored them all (it may trail the sends on a busy machine, and
    // pushes each right after), Bob's buffers are full and the server has given up on him.
    wait_until_all_stored(&app, MESSAGES).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What the buffers held arrives, then the connection ends: the server gave up on it.
    let (read, code) = read_to_end(&mut b).await;
    assert!(
        read < MESSAGES,
        "only what the buffers held arrived: {read}"
    );
    // The close frame (4008) reaches a client only if its buffers had room for it.
    assert!(matches!(code, None | Some(4008)), "{code:?}");
    // Nothing was acknowledged, so the next connection gets every message, from the first.
    let mut b = connect(&app, &bob.token).await;
    let hello = frame(&mut b).await;
    assert_eq!(hello["pending"], MESSAGES, "{hello}");
    let first = frame(&mut b).await;
    assert_eq!(
        (first["seq"].as_u64(), body(&first).len()),
        (Some(1), 64 << 10)
    );
}

#[tokio::test]
async fn a_connection_that_answers_no_ping_is_dropped_and_one_that_does_stays() {
    let app = TestApp::spawn_with(|s| {
        s.chat.ping_interval = Duration::from_millis(200);
        s.chat.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut reading = connect(&app, &alice.token).await;
    frame(&mut reading).await;
    let mut silent = connect(&app, &bob.token).await;
    frame(&mut silent).await;
    // Reading answers the server's pings; the silent socket reads (so answers) nothing.
    assert_eq!(
        frame_within(&mut reading, Duration::from_secs(3)).await,
        None
    );
    let (_, code) = read_to_end(&mut silent).await;
    assert_eq!(code, None, "dropped without a close frame");
    put(&mut reading, json!({"type": "ack", "seq": 0})).await;
    assert_eq!(
        frame_within(&mut reading, Duration::from_millis(500)).await,
        None,
        "the reading connection is still open"
    );
}

#[tokio::test]
async fn the_gateway_counts_connections_frames_and_the_time_to_sent_and_to_the_recipient() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let mut b = connect(&app, &bob.token).await;
    assert_eq!(frame(&mut b).await["type"], "hello");
    let mut a = connect(&app, &alice.token).await;
    frame(&mut a).await;
    assert_eq!(app.metric("sealpost_chat_connections").await, 2.0);
    put(&mut a, send("m", &bob.account_id, &[1], "timed")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    assert_eq!(frame(&mut b).await["type"], "message");
    put(&mut a, json!({"type": "nonsense"})).await;
    assert_eq!(frame(&mut a).await["code"], "invalid-frame");

    // A frame is counted once written: poll a little in case the count trails the frame.
    let mut text = app.metrics().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while common::sample(&text, "sealpost_chat_delivery_latency_seconds_count") < 1.0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = app.metrics().await;
    }
    for (series, at_least) in [
        (r#"sealpost_chat_frames_received_total{type="send"}"#, 1.0),
        (
            r#"sealpost_chat_frames_received_total{type="invalid"}"#,
            1.0,
        ),
        (r#"sealpost_chat_frames_sent_total{type="hello"}"#, 2.0),
        (r#"sealpost_chat_frames_sent_total{type="sent"}"#, 1.0),
        (r#"sealpost_chat_frames_sent_total{type="message"}"#, 1.0),
        (r#"sealpost_chat_errors_total{code="invalid-frame"}"#, 1.0),
        (
            r#"sealpost_chat_send_duration_seconds_count{frame="send"}"#,
            1.0,
        ),
        ("sealpost_chat_delivery_latency_seconds_count", 1.0),
        ("sealpost_chat_inbox_stored_total", 1.0),
    ] {
        assert!(
            common::sample(&text, series) >= at_least,
            "{series} below {at_least}: {text}"
        );
    }
    // Bob has not acknowledged: his message waits in the inbox.
    assert_eq!(common::sample(&text, "sealpost_chat_inbox_messages"), 1.0);

    drop(a);
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.metric("sealpost_chat_connections").await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connections not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        app.metric(r#"sealpost_chat_disconnects_total{reason="gone"}"#)
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_before_its_payload_arrives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|s| s.chat.max_frame = 100 << 10).await;
    let user = app.user(&phone()).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let upgrade = format!(
        "GET /v1/chat HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        app.addr, user.token
    );
    tcp.write_all(upgrade.as_bytes()).await.expect("upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked binary frame announcing 8 MiB, with 4 bytes of it: the rest never comes.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0]);
    tcp.write_all(&frame).await.expect("frame");
    // The server ends the connection without waiting for the payload.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the server waited for an 8 MiB frame's payload"
    );
}
