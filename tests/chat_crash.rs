//! The chat pipeline and the SDK's chat client when a component dies in the middle of a
//! stream of messages: a server killed with `kill -9` and started again on the same address,
//! or the Kafka broker killed and restarted. Either way no message answered `sent` is lost,
//! and the receiving app sees each message once, in order.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::child::Server;
use common::tansu::Broker;
use common::{TestApp, phone};
use sealpost_client::{Answer, ChatEvent, ChatOptions, Client, Content, Retry};
use sealpost_proto::Envelope;

const MESSAGES: usize = 40;

fn options() -> ChatOptions {
    ChatOptions {
        backoff: Retry {
            attempts: u32::MAX,
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
        },
        ..ChatOptions::default()
    }
}

/// A free port on 127.0.0.1 (the restarted server takes the same one).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// Alice streams `MESSAGES` messages to Bob through the server at `base`; when Bob has seen a
/// quarter of them, `disrupt` runs, and Alice sends the second half only after it (so Bob
/// cannot already hold every message when the disruption comes). Asserts Bob sees every message Alice was answered `sent`
/// for, once and in order, and nothing more; returns how often Bob's session was cut.
async fn stream_through(base: &str, disrupt: impl FnOnce()) -> usize {
    let app = TestApp::external(base);
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let sender = Client::new(base).with_token(&alice.token);
    let receiver = Client::new(base).with_token(&bob.token);
    let alice_chat = sender.chat(options()).await.expect("alice connects");
    let mut bob_chat = receiver.chat(options()).await.expect("bob connects");

    let to = bob.account_id.clone();
    let disrupted = std::sync::Arc::new(tokio::sync::Notify::new());
    let resume = disrupted.clone();
    let sending = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..MESSAGES {
            if i == MESSAGES / 2 {
                resume.notified().await;
            }
            let envelope = Envelope {
                device_id: 1,
                body: STANDARD.encode(format!("message {i}")),
            };
            match alice_chat.send(&format!("m{i}"), &to, vec![envelope]).await {
                Ok(Answer::Sent { server_id, .. }) => sent.push(server_id),
                other => panic!("message {i}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        alice_chat.close().await.expect("alice closes");
        sent
    });

    let mut seen = Vec::new();
    let mut disrupt = Some(disrupt);
    let mut disconnects = 0;
    while seen.len() < MESSAGES {
        let event = tokio::time::timeout(Duration::from_secs(90), bob_chat.next())
            .await
            .expect("an event within 90 s")
            .expect("the session goes on");
        match event {
            ChatEvent::Stored(stored) => {
                if let Content::Message { body, .. } = &stored.content {
                    seen.push((
                        stored.server_id.clone(),
                        String::from_utf8_lossy(body).into_owned(),
                    ));
                }
                bob_chat.ack(stored.seq);
            }
            ChatEvent::Disconnected { .. } => disconnects += 1,
            ChatEvent::Connected { .. } | ChatEvent::Typing { .. } | ChatEvent::KeysLow { .. } => {}
        }
        if seen.len() == MESSAGES / 4
            && let Some(disrupt) = disrupt.take()
        {
            disrupt();
            disrupted.notify_one();
        }
    }
    let sent = sending.await.expect("alice sent everything");
    let texts: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "each message once, in order");
    let ids: Vec<&String> = seen.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, sent.iter().collect::<Vec<_>>());
    // Nothing more comes: no duplicate reaches the app later.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let Some(ChatEvent::Stored(s)) = bob_chat.next().await {
                    return s;
                }
            }
        })
        .await
        .is_err()
    );
    bob_chat.close().await.expect("bob closes");
    disconnects
}

#[tokio::test]
async fn a_server_killed_mid_stream_loses_no_sent_message_and_the_app_sees_each_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_address();
    // Lost sends are looked for every second (a send the bus held when the server died).
    let env = [
        ("SEALPOST__CHAT__REPUBLISH_AFTER", "1s"),
        ("SEALPOST__CHAT__SWEEP_INTERVAL", "1s"),
    ];
    let mut server = Server::start_with(dir.path(), &listen, &env);
    let base = server.base.clone();
    let mut restarted = None;
    let disconnects = stream_through(&base, || {
        server.child.kill().expect("kill -9");
        server.child.wait().expect("reaped");
        std::thread::sleep(Duration::from_millis(300));
        restarted = Some(Server::start_with(dir.path(), &listen, &env));
    })
    .await;
    assert!(disconnects > 0, "the clients noticed the crash");
    drop(restarted);
}

/// On a broker of the test's own (whatever `SEALPOST_TEST_BUS` says), killed with `kill -9`
/// and back a second later with the records and consumer offsets it had stored.
#[tokio::test]
async fn a_kafka_broker_restarted_mid_stream_loses_no_sent_message_and_the_app_sees_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start(broker_dir.path());
    let bus = format!("kafka://{}?partitions=4&namespace=restart", broker.address);
    let server = Server::start_on_bus(dir.path(), "127.0.0.1:0", &[], &bus);
    stream_through(&server.base, || broker.restart(Duration::from_secs(1))).await;
}
