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
use sealpost_proto::MemberDevice;

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

/// A chat session of `person`'s device.
async fn connect(person: &Person) -> ChatSession {
    person
        .client
        .chat(ChatOptions::default())
        .await
        .expect("chat")
}

/// The next stored message, not acknowledged (other frames before it are).
async fn next_message(chat: &mut ChatSession) -> sealpost_client::Stored {
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(60), chat.next())
            .await
            .expect("a message within the wait")
            .expect("session on");
        if let ChatEvent::Stored(stored) = event {
            if matches!(stored.content, Content::Message { .. }) {
                return stored;
            }
            chat.ack(stored.seq);
        }
    }
}

/// The next message, acknowledged: sender, device, server id and body.
async fn receive_stored(chat: &mut ChatSession) -> (String, u32, String, Vec<u8>) {
    let stored = next_message(chat).await;
    chat.ack(stored.seq);
    let Content::Message { body, .. } = stored.content else {
        unreachable!("a message")
    };
    (
        stored.from.account_id,
        stored.from.device_id,
        stored.server_id,
        body,
    )
}

/// The next message's body, acknowledged.
async fn receive(chat: &mut ChatSession) -> (String, u32, Vec<u8>) {
    let (from, device, _, body) = receive_stored(chat).await;
    (from, device, body)
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
    let alice_chat = connect(&alice).await;
    let mut bob_chat = connect(&bob).await;

    let bob_id = bob.account_id.clone();
    send(&mut alice, &alice_chat, &bob_id, "meet at noon").await;
    send(&mut alice, &alice_chat, &bob_id, "meet at the station").await;
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet at noon");
    assert_eq!(open(&mut bob, &mut bob_chat).await, "meet at the station");

    // One process at a time holds a device's state.
    let twice = E2e::open(bob.dir.path(), &bob.account_id, 1, &bob.key);
    assert!(
        matches!(twice, Err(ClientError::StateInUse(_))),
        "{twice:?}"
    );
    // Bob's device restarts: its state comes back from disk, and only with its key.
    let stopped = bob.e2e;
    drop(stopped);
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
    let alice_chat = connect(&alice).await;
    let mut bob_chat = connect(&bob).await;
    let bob_id = bob.account_id.clone();
    send(&mut alice, &alice_chat, &bob_id, "meet by the fallback").await;
    let (from, device, body) = receive(&mut bob_chat).await;
    let opened = bob
        .e2e
        .decrypt(&bob.client, &from, device, &body)
        .await
        .expect("decrypt");
    assert_eq!(opened, b"meet by the fallback");
    // The fallback key outlives its use: the same message again (a replay) must not open.
    let replay = bob.e2e.decrypt(&bob.client, &from, device, &body).await;
    assert!(
        matches!(&replay, Err(ClientError::E2e(e)) if e.contains("came again")),
        "{replay:?}"
    );
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

/// Sends `text` to `group` with the sender's group session, following the server's
/// `group_mismatch`; the session id the envelopes name.
async fn send_group(from: &mut Person, chat: &ChatSession, group: &str, text: &str) -> String {
    let id = format!("{:032x}", rand::random::<u128>());
    let mut devices = from.e2e.group_devices(group);
    for _ in 0..3 {
        let envelopes = from
            .e2e
            .encrypt_group(&from.client, group, &devices, text.as_bytes())
            .await
            .expect("encrypt");
        match chat
            .send_group(&id, group, envelopes.clone())
            .await
            .expect("send")
        {
            Answer::Sent { .. } => {
                from.e2e.group_sent(group, &envelopes).expect("sent");
                let body = base64_decode(&envelopes[0].body);
                let sealed: serde_json::Value = serde_json::from_slice(&body).expect("json");
                return sealed["session_id"]
                    .as_str()
                    .expect("session id")
                    .to_owned();
            }
            Answer::GroupMismatch { devices: now, .. } => {
                devices = now.into_iter().map(MemberDevice::from).collect();
            }
            other @ Answer::Mismatch { .. } => panic!("{other:?}"),
        }
    }
    panic!("the member devices kept changing")
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test]
async fn group_messages_use_megolm_and_a_removed_member_cannot_read_what_follows() {
    let app = TestApp::spawn().await;
    let (mut alice, mut bob, mut carol) =
        (person(&app).await, person(&app).await, person(&app).await);
    let group = alice
        .client
        .create_group(vec![bob.account_id.clone(), carol.account_id.clone()])
        .await
        .expect("create group")
        .group_id;
    let alice_chat = connect(&alice).await;
    let mut bob_chat = connect(&bob).await;
    let mut carol_chat = connect(&carol).await;

    let first = send_group(&mut alice, &alice_chat, &group, "meet at the harbour").await;
    let mut carol_first = None;
    for (person, chat) in [(&mut bob, &mut bob_chat), (&mut carol, &mut carol_chat)] {
        let (from, device, server_id, body) = receive_stored(chat).await;
        let plaintext = person
            .e2e
            .decrypt_group(&person.client, &from, device, &group, &server_id, &body)
            .await
            .expect("decrypt");
        assert_eq!(plaintext, b"meet at the harbour");
        // Delivered again, with the session key whose Olm message was spent: it opens.
        let again = person
            .e2e
            .decrypt_group(&person.client, &from, device, &group, &server_id, &body)
            .await
            .expect("a redelivery with the key opens");
        assert_eq!(again, b"meet at the harbour");
        // Carol's, once the loop is done.
        carol_first = Some((from, device, server_id, body));
    }
    // The same session, its key not sent again.
    let again = send_group(&mut alice, &alice_chat, &group, "meet at six").await;
    assert_eq!(again, first);
    let (from, device, server_id, body) = receive_stored(&mut bob_chat).await;
    let sealed: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(sealed.get("room_key").is_none(), "{sealed}");
    let opened = bob
        .e2e
        .decrypt_group(&bob.client, &from, device, &group, &server_id, &body)
        .await
        .expect("decrypt");
    assert_eq!(opened, b"meet at six");
    // Delivered again (after a crash before the ack): it opens again. Under another server
    // id (a replay): refused.
    let redelivered = bob
        .e2e
        .decrypt_group(&bob.client, &from, device, &group, &server_id, &body)
        .await
        .expect("a redelivery opens");
    assert_eq!(redelivered, b"meet at six");
    let replay = bob
        .e2e
        .decrypt_group(&bob.client, &from, device, &group, "another-id", &body)
        .await;
    assert!(
        matches!(&replay, Err(ClientError::E2e(e)) if e.contains("replay")),
        "{replay:?}"
    );

    // Carol is removed: Alice's next message comes from a new session Carol never gets.
    alice
        .client
        .remove_member(&group, &carol.account_id)
        .await
        .expect("remove");
    let after = send_group(&mut alice, &alice_chat, &group, "meet without Carol").await;
    assert_ne!(after, first, "a new session after the removal");
    let (from, device, server_id, body) = receive_stored(&mut bob_chat).await;
    let opened = bob
        .e2e
        .decrypt_group(&bob.client, &from, device, &group, &server_id, &body)
        .await
        .expect("decrypt");
    assert_eq!(opened, b"meet without Carol");
    // Even given the ciphertext, Carol cannot open it.
    let mut sealed: serde_json::Value = serde_json::from_slice(&body).expect("json");
    sealed.as_object_mut().expect("object").remove("room_key");
    let leaked = serde_json::to_vec(&sealed).expect("json");
    let refused = carol
        .e2e
        .decrypt_group(&carol.client, &from, device, &group, &server_id, &leaked)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::E2e(e)) if e.contains("never reached")),
        "{refused:?}"
    );
    // Out of the group, Carol forgets its keys: even what she once read no longer opens.
    carol.e2e.forget_group(&group).expect("forget");
    let (from, device, server_id, body) = carol_first.expect("Carol's first message");
    let forgotten = carol
        .e2e
        .decrypt_group(&carol.client, &from, device, &group, &server_id, &body)
        .await;
    assert!(forgotten.is_err(), "{forgotten:?}");
}

#[tokio::test]
async fn a_message_delivered_again_after_a_crash_opens_again() {
    let app = TestApp::spawn().await;
    let (mut alice, mut bob) = (person(&app).await, person(&app).await);
    let alice_chat = connect(&alice).await;
    let bob_id = bob.account_id.clone();
    send(&mut alice, &alice_chat, &bob_id, "meet at the gate").await;

    // Bob opens it and stops before acknowledging it.
    let mut bob_chat = connect(&bob).await;
    let stored = next_message(&mut bob_chat).await;
    let first = bob
        .e2e
        .open_message(&bob.client, &stored)
        .await
        .expect("open");
    assert_eq!(first, b"meet at the gate");
    bob_chat.close().await.expect("close");

    // Back, his inbox hands it over again: its Olm keys are spent, yet it opens.
    let stopped = bob.e2e;
    drop(stopped);
    bob.e2e = E2e::open(bob.dir.path(), &bob.account_id, 1, &bob.key).expect("reopen");
    let mut bob_chat = connect(&bob).await;
    let again = next_message(&mut bob_chat).await;
    assert_eq!(again.server_id, stored.server_id);
    let Content::Message { body, .. } = &again.content else {
        unreachable!("a message")
    };
    let spent = bob
        .e2e
        .decrypt(&bob.client, &alice.account_id, 1, body)
        .await;
    assert!(spent.is_err(), "Olm opens a message once: {spent:?}");
    let reopened = bob
        .e2e
        .open_message(&bob.client, &again)
        .await
        .expect("opens again");
    assert_eq!(reopened, first);
    bob_chat.ack(again.seq);
}
