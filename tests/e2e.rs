//! End-to-end encryption in the SDK against the real server: two devices publish their keys,
//! start Olm sessions from the key directory, exchange messages the server stores only as
//! ciphertext, keep their sessions across restarts, and fall back to the fallback key when the
//! one-time keys run out.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use sealpost_client::{
    Answer, ChatEvent, ChatOptions, ChatSession, Client, ClientError, Content, E2e,
};

/// A registered, logged-in device with its end-to-end state in `dir`.
struct Person {
    client: Client,
    account_id: String,
    key: SigningKey,
    dir: tempfile::TempDir,
    e2e: E2e,
}

async fn person(app: &TestApp) -> Person {
    let key = SigningKey::from_bytes(&rand_bytes());
    let phone = phone();
    let mut client = Client::new(&app.base);
    let account_id = client
        .register(&phone, "E2e", &key)
        .await
        .expect("register");
    client.login(&phone, &key).await.expect("login");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e2e = E2e::open(dir.path(), &account_id, 1, &key).expect("open state");
    let stock = e2e.publish(&client, None).await.expect("publish");
    assert_eq!((stock.one_time_keys, stock.fallback_key), (50, true));
    Person {
        client,
        account_id,
        key,
        dir,
        e2e,
    }
}

async fn send(from: &mut Person, chat: &ChatSession, to: &str, text: &str) {
    let envelopes = from
        .e2e
        .encrypt(&from.client, to, &[1], text.as_bytes())
        .await
        .expect("encrypt");
    let id = format!("{:032x}", rand::random::<u128>());
    let answer = chat.send(&id, to, envelopes).await.expect("send");
    assert!(matches!(answer, Answer::Sent { .. }), "{answer:?}");
}

/// The next message's body, acknowledged.
async fn receive(chat: &mut ChatSession) -> (String, u32, Vec<u8>) {
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(60), chat.next())
            .await
            .expect("a message within the wait")
            .expect("session on");
        if let ChatEvent::Stored(stored) = event {
            chat.ack(stored.seq);
            if let Content::Message { body, .. } = stored.content {
                return (stored.from.account_id, stored.from.device_id, body);
            }
        }
    }
}

async fn open(person: &mut Person, chat: &mut ChatSession) -> String {
    let (from, device, body) = receive(chat).await;
    assert!(
        !String::from_utf8_lossy(&body).contains("meet"),
        "the server hands over ciphertext"
    );
    let plaintext = person
        .e2e
        .decrypt(&person.client, &from, device, &body)
        .await
        .expect("decrypt");
    String::from_utf8(plaintext).expect("utf-8")
}

#[tokio::test]
async fn two_devices_talk_end_to_end_and_keep_their_sessions_across_restarts() {
    let app = TestApp::spawn().await;
    let (mut alice, mut bob) = (person(&app).await, person(&app).await);
    let alice_chat = alice
        .client
        .chat(ChatOptions::default())
        .await
        .expect("chat");
    let mut bob_chat = bob.client.chat(ChatOptions::default()).await.expect("chat");

    let bob_id = bob.account_id.clone();
    send(&mut alice, &alice_chat, &bob_id, "meet at noon").await;
    send(&mut alice, &alice_chat, &bob_id, "meet at the station").await;
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet at noon");
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet at the station");

    // Bob's device restarts: its state comes back from disk, and only with its key.
    let wrong = E2e::open(
        bob.dir.path(),
        &bob.account_id,
        1,
        &SigningKey::from_bytes(&rand_bytes()),
    );
    assert!(matches!(wrong, Err(ClientError::E2e(_))), "{wrong:?}");
    bob.e2e = E2e::open(bob.dir.path(), &bob.account_id, 1, &bob.key).expect("reopen");
    let alice_id = alice.account_id.clone();
    let mut alice_chat = alice_chat;
    send(&mut bob, &bob_chat, &alice_id, "meet you there").await;
    assert_eq!(open(&mut alice, &mut alice_chat).await, "meet you there");
    send(&mut alice, &alice_chat, &bob_id, "meet soon").await;
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet soon");
}

#[tokio::test]
async fn with_no_one_time_key_left_a_session_starts_from_the_fallback_key() {
    let app = TestApp::spawn().await;
    let (mut alice, mut bob) = (person(&app).await, person(&app).await);
    let carol = person(&app).await;
    // Someone else claims all of Bob's one-time keys.
    for _ in 0..50 {
        let res = app
            .client
            .get(app.url(&format!("/v1/keys/{}", bob.account_id)))
            .bearer_auth(carol.client.token().expect("token"))
            .send()
            .await
            .expect("claim");
        assert!(res.status().is_success());
    }
    let alice_chat = alice
        .client
        .chat(ChatOptions::default())
        .await
        .expect("chat");
    let mut bob_chat = bob.client.chat(ChatOptions::default()).await.expect("chat");
    let bob_id = bob.account_id.clone();
    send(&mut alice, &alice_chat, &bob_id, "meet by the fallback").await;
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet by the fallback");
}

#[tokio::test]
async fn keys_another_client_published_padded_or_not_start_a_session() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use ed25519_dalek::Signer;

    let app = TestApp::spawn().await;
    let alice = person(&app).await;
    // Bob's client writes its keys padded and its identity signature unpadded (the directory
    // takes either form).
    let bob = app.user(&phone()).await;
    let olm = SigningKey::from_bytes(&rand_bytes());
    let (curve, ed) = (
        STANDARD.encode(rand_bytes()),
        STANDARD.encode(olm.verifying_key().as_bytes()),
    );
    let binding = format!("sealpost-olm-identity-v1:{}:1:{curve}:{ed}", bob.account_id);
    let (fallback_id, fallback) = ("AAAAAQ", STANDARD.encode(rand_bytes()));
    let fallback_signature =
        olm.sign(format!("sealpost-fallback-key-v1:{fallback_id}:{fallback}").as_bytes());
    let res = app
        .client
        .put(app.url("/v1/keys"))
        .bearer_auth(&bob.token)
        .json(&serde_json::json!({
            "identity": {"curve25519": curve, "ed25519": ed},
            "identity_signature": STANDARD_NO_PAD.encode(bob.key.sign(binding.as_bytes()).to_bytes()),
            "fallback_key": {"key_id": fallback_id, "key": fallback,
                             "signature": STANDARD.encode(fallback_signature.to_bytes())},
            "one_time_keys": [{"key_id": "AAAAAg", "key": STANDARD.encode(rand_bytes())}],
        }))
        .send()
        .await
        .expect("publish");
    assert!(res.status().is_success());
    // The one-time key, then (with none left) the fallback key start sessions: each from a
    // fresh sender state, which has no session with Bob yet.
    for _ in 0..2 {
        let state = tempfile::tempdir().expect("tempdir");
        let mut sender =
            E2e::open(state.path(), &alice.account_id, 1, &alice.key).expect("sender state");
        let envelopes = sender
            .encrypt(&alice.client, &bob.account_id, &[1], b"hello")
            .await
            .expect("a session from padded keys");
        assert_eq!(envelopes.len(), 1);
    }
}
