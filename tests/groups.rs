//! Groups (docs/protocol.md): admins manage members, members leave; every change reaches the
//! member devices as a `group` frame; a group message reaches every other member device,
//! checked against the member devices, in one order for every member; the size is capped.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::chat::{Socket, body, connect, frame, frame_within, put, second_device};
use common::{TestApp, User, assert_problem, phone};
use reqwest::Response;
use serde_json::{Value, json};

/// A `send_group` of `text` to each of `devices`.
fn send_group(id: &str, group: &str, devices: &[(&str, u32)], text: &str) -> Value {
    let envelopes: Vec<Value> = devices
        .iter()
        .map(|(a, d)| json!({"account_id": a, "device_id": d, "body": STANDARD.encode(format!("{text} for {d}"))}))
        .collect();
    json!({"type": "send_group", "id": id, "group": group, "envelopes": envelopes})
}

async fn create(app: &TestApp, user: &User, members: &[&str]) -> Response {
    app.client
        .post(app.url("/v1/groups"))
        .bearer_auth(&user.token)
        .json(&json!({ "members": members }))
        .send()
        .await
        .expect("create")
}

async fn set_member(app: &TestApp, user: &User, group: &str, member: &str, role: &str) -> Response {
    app.client
        .put(app.url(&format!("/v1/groups/{group}/members/{member}")))
        .bearer_auth(&user.token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .expect("set member")
}

async fn remove(app: &TestApp, user: &User, group: &str, member: &str) -> Response {
    app.client
        .delete(app.url(&format!("/v1/groups/{group}/members/{member}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("remove")
}

/// Connects and reads the hello.
async fn online(app: &TestApp, token: &str) -> Socket {
    let mut socket = connect(app, token).await;
    assert_eq!(frame(&mut socket).await["type"], "hello");
    socket
}

/// The next stored frame, acknowledged.
async fn next(socket: &mut Socket) -> Value {
    let frame = frame(socket).await;
    if let Some(seq) = frame["seq"].as_u64() {
        put(socket, json!({"type": "ack", "seq": seq})).await;
    }
    frame
}

/// Reads (and acknowledges) frames until `messages` messages of the group and `sent` answers
/// came; their bodies, and how many answers.
async fn messages_and_sent(
    socket: &mut Socket,
    messages: usize,
    sent: usize,
) -> (Vec<String>, usize) {
    let (mut bodies, mut answers) = (Vec::new(), 0);
    while bodies.len() < messages || answers < sent {
        let frame = next(socket).await;
        if frame["type"] == "message" {
            bodies.push(body(&frame));
        } else {
            assert_eq!(frame["type"], "sent", "{frame}");
            answers += 1;
        }
    }
    (bodies, answers)
}

#[tokio::test]
async fn a_group_message_reaches_every_other_member_device_in_one_order() {
    let app = TestApp::spawn().await;
    let (alice, bob, carol) = (
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    );
    let laptop = second_device(&app, &bob).await;
    let res = create(&app, &alice, &[&bob.account_id, &carol.account_id]).await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.expect("group");
    let id = group["group_id"].as_str().expect("id").to_owned();
    let roles: Vec<(&str, &str)> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| Some((m["account_id"].as_str()?, m["role"].as_str()?)))
        .collect();
    assert!(
        roles.contains(&(alice.account_id.as_str(), "admin")),
        "{roles:?}"
    );
    assert!(
        roles.contains(&(bob.account_id.as_str(), "member")),
        "{roles:?}"
    );
    assert_eq!(group["members"].as_array().map(Vec::len), Some(3));

    let mut a = online(&app, &alice.token).await;
    let (mut b1, mut b2, mut c) = (
        online(&app, &bob.token).await,
        online(&app, &laptop).await,
        online(&app, &carol.token).await,
    );
    for socket in [&mut b1, &mut b2, &mut c] {
        let created = next(socket).await;
        assert_eq!(
            (
                created["type"].as_str(),
                created["change"].as_str(),
                created["group"].as_str()
            ),
            (Some("group"), Some("created"), Some(id.as_str())),
            "{created}"
        );
        assert_eq!(created["from"]["account_id"], alice.account_id.as_str());
    }

    // A wrong device list is answered with the member devices.
    let (b, cr) = (bob.account_id.as_str(), carol.account_id.as_str());
    put(&mut a, send_group("g0", &id, &[(b, 1)], "x")).await;
    let mismatch = frame(&mut a).await;
    assert_eq!(mismatch["type"], "group_mismatch", "{mismatch}");
    assert_eq!(
        mismatch["missing"],
        json!([{"account_id": b, "device_id": 2}, {"account_id": cr, "device_id": 1}])
            .as_array()
            .map(|m| {
                let mut m = m.clone();
                m.sort_by_key(|v| (v["account_id"].to_string(), v["device_id"].as_u64()));
                Value::Array(m)
            })
            .expect("array")
    );
    assert_eq!(mismatch["devices"].as_array().map(Vec::len), Some(3));

    // Alice and Carol both send; every member sees the group's messages in one order.
    let everyone_but_alice = [(b, 1), (b, 2), (cr, 1)];
    let everyone_but_carol = [(alice.account_id.as_str(), 1), (b, 1), (b, 2)];
    put(&mut a, send_group("g1", &id, &everyone_but_alice, "one")).await;
    put(&mut c, send_group("c1", &id, &everyone_but_carol, "two")).await;
    put(&mut a, send_group("g2", &id, &everyone_but_alice, "three")).await;
    let mut order = Vec::new();
    for socket in [&mut b1, &mut b2] {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let message = next(socket).await;
            if message["type"] == "message" {
                assert_eq!(message["group"], id.as_str(), "{message}");
                seen.push(message["server_id"].as_str().expect("id").to_owned());
            }
        }
        order.push(seen);
    }
    assert_eq!(order[0], order[1], "both of Bob's devices see one order");
    // A sender's `sent` answers and the others' messages come in any order.
    let (carol_saw, carol_sent) = messages_and_sent(&mut c, 2, 1).await;
    assert_eq!(carol_saw, ["one for 1", "three for 1"]);
    assert_eq!(carol_sent, 1);
    let (alice_saw, alice_sent) = messages_and_sent(&mut a, 1, 2).await;
    assert_eq!(alice_saw, ["two for 1"]);
    assert_eq!(alice_sent, 2);

    // Typing to the group reaches the other member devices connected now, never the typing
    // one. (On Kafka the first indicators may go stale while the wake-up group forms: send
    // until one lands.)
    let typing = json!({"type": "typing_group", "group": id, "state": "started"});
    for socket in [&mut a, &mut b2, &mut c] {
        let typing = loop {
            put(&mut b1, typing.clone()).await;
            if let Some(frame) = frame_within(socket, Duration::from_secs(1)).await {
                break frame;
            }
        };
        assert_eq!(
            (
                typing["type"].as_str(),
                typing["group"].as_str(),
                typing["from"]["account_id"].as_str(),
                typing["from"]["device_id"].as_u64()
            ),
            (Some("typing"), Some(id.as_str()), Some(b), Some(1)),
            "{typing}"
        );
    }
    assert_eq!(
        frame_within(&mut b1, Duration::from_millis(500)).await,
        None
    );
    // Someone outside the group types to it: no member hears of it.
    let dave = app.user(&phone()).await;
    let mut d = online(&app, &dave.token).await;
    put(
        &mut d,
        json!({"type": "typing_group", "group": id, "state": "started"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(
        &mut d,
        json!({"type": "typing", "to": cr, "state": "stopped"}),
    )
    .await;
    let heard = loop {
        let next = frame(&mut c).await;
        if next["from"]["account_id"] != b {
            break next;
        }
    };
    assert_eq!(
        (
            heard["from"]["account_id"].as_str(),
            heard["state"].as_str(),
            heard["group"].as_str()
        ),
        (Some(dave.account_id.as_str()), Some("stopped"), None),
        "only Dave's typing to Carol herself: {heard}"
    );
}

#[tokio::test]
async fn admins_manage_members_members_only_leave_and_everyone_is_told() {
    let app = TestApp::spawn().await;
    let (alice, bob, carol, dave) = (
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    );
    let group: Value = create(&app, &alice, &[&bob.account_id, &carol.account_id])
        .await
        .json()
        .await
        .expect("group");
    let id = group["group_id"].as_str().expect("id").to_owned();

    // Members may not manage; outsiders do not see the group.
    assert_problem(
        set_member(&app, &bob, &id, &dave.account_id, "member").await,
        403,
        "not-group-admin",
    )
    .await;
    assert_problem(
        remove(&app, &bob, &id, &carol.account_id).await,
        403,
        "not-group-admin",
    )
    .await;
    let outsider = app
        .client
        .get(app.url(&format!("/v1/groups/{id}")))
        .bearer_auth(&dave.token)
        .send()
        .await
        .expect("get");
    assert_problem(outsider, 404, "no-such-group").await;
    assert_problem(
        set_member(&app, &alice, &id, "nobody", "member").await,
        404,
        "no-such-account",
    )
    .await;

    // The admin adds Dave, who is told; then Bob leaves, and everyone left is told.
    let added = set_member(&app, &alice, &id, &dave.account_id, "member").await;
    assert_eq!(added.status(), 200);
    let after: Value = added.json().await.expect("group");
    assert_eq!(after["members"].as_array().map(Vec::len), Some(4));
    let mut d = online(&app, &dave.token).await;
    let told = next(&mut d).await;
    assert_eq!(
        (told["change"].as_str(), told["members"].clone()),
        (Some("added"), json!([dave.account_id])),
        "{told}"
    );
    assert_eq!(remove(&app, &bob, &id, &bob.account_id).await.status(), 204);
    let left = next(&mut d).await;
    assert_eq!(
        (left["change"].as_str(), left["from"]["account_id"].as_str()),
        (Some("left"), Some(bob.account_id.as_str()))
    );
    let mut b = online(&app, &bob.token).await;
    put(
        &mut b,
        send_group("late", &id, &[(&alice.account_id, 1)], "x"),
    )
    .await;
    let mut refused = next(&mut b).await;
    while refused["type"] == "group" {
        refused = next(&mut b).await;
    }
    assert_eq!(refused["code"], "no-such-group", "{refused}");

    // The only admin cannot be demoted; when it leaves, the longest-standing member is admin.
    assert_problem(
        set_member(&app, &alice, &id, &alice.account_id, "member").await,
        409,
        "last-admin",
    )
    .await;
    assert_eq!(
        remove(&app, &alice, &id, &alice.account_id).await.status(),
        204
    );
    let group: Value = app
        .client
        .get(app.url(&format!("/v1/groups/{id}")))
        .bearer_auth(&carol.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("group");
    let roles: Vec<(String, String)> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["account_id"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            (carol.account_id.clone(), "admin".to_owned()),
            (dave.account_id.clone(), "member".to_owned())
        ]
    );
    let mut told = Vec::new();
    while told.len() < 2 {
        told.push(
            next(&mut d).await["change"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(told, ["left", "promoted"]);
    let listed: Value = app
        .client
        .get(app.url("/v1/groups"))
        .bearer_auth(&dave.token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("groups");
    assert_eq!(listed[0]["group_id"], id.as_str());
    assert_eq!(frame_within(&mut d, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_group_has_at_most_its_maximum_of_members() {
    let app = TestApp::spawn_with(|s| s.chat.max_group_members = 3).await;
    let users = [
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    ];
    let ids: Vec<&str> = users.iter().map(|u| u.account_id.as_str()).collect();
    assert_problem(
        create(&app, &users[0], &ids[1..]).await,
        409,
        "group-too-large",
    )
    .await;
    assert_problem(
        create(&app, &users[0], &[ids[1], ids[1]]).await,
        400,
        "invalid-group-request",
    )
    .await;
    let group: Value = create(&app, &users[0], &ids[1..3])
        .await
        .json()
        .await
        .expect("group");
    let id = group["group_id"].as_str().expect("id");
    assert_problem(
        set_member(&app, &users[0], id, ids[3], "member").await,
        409,
        "group-too-large",
    )
    .await;
}

/// Waits until the delivery workers have stored `copies` inbox copies in all.
async fn stored(app: &TestApp, copies: f64) {
    for _ in 0..100 {
        if common::sample(&app.metrics().await, "sealpost_chat_inbox_stored_total") >= copies {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the delivery workers never stored {copies} copies");
}

#[tokio::test]
async fn a_full_inbox_refuses_direct_sends_and_is_skipped_by_group_sends() {
    let app = TestApp::spawn_with(|s| s.chat.max_inbox_messages = 3).await;
    let (ada, ben) = (app.user(&phone()).await, app.user(&phone()).await);
    let res = create(&app, &ada, &[&ben.account_id]).await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.expect("group");
    let group = group["group_id"].as_str().expect("id").to_owned();
    let mut a = online(&app, &ada.token).await;
    // Ben is offline: the group notice and two messages fill his inbox (of 3).
    stored(&app, 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = common::sample(&app.metrics().await, "sealpost_chat_inbox_stored_total");
    for id in ["m1", "m2"] {
        put(&mut a, common::chat::send(id, &ben.account_id, &[1], "x")).await;
        assert_eq!(frame(&mut a).await["type"], "sent");
    }
    stored(&app, base + 2.0).await;
    put(&mut a, common::chat::send("m3", &ben.account_id, &[1], "x")).await;
    let refused = frame(&mut a).await;
    assert_eq!(refused["code"], "recipient-inbox-full", "{refused}");
    // A retry of a send that went through is answered as the first was, full inbox or not.
    put(&mut a, common::chat::send("m2", &ben.account_id, &[1], "x")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    // A group send still goes out; Ben's full device is skipped and told.
    put(
        &mut a,
        send_group("g1", &group, &[(&ben.account_id, 1)], "hi"),
    )
    .await;
    assert_eq!(frame(&mut a).await["type"], "sent");
    // So does a change of the group: its notice skips the full inbox too.
    assert_eq!(
        set_member(&app, &ada, &group, &ben.account_id, "admin")
            .await
            .status(),
        200
    );
    let metrics = app.metrics().await;
    assert_eq!(
        common::sample(&metrics, "sealpost_chat_inbox_full_skipped_total"),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        common::sample(
            &metrics,
            r#"sealpost_chat_errors_total{code="recipient-inbox-full"}"#
        ),
        1.0
    );
    let mut b = connect(&app, &ben.token).await;
    let hello = frame(&mut b).await;
    assert_eq!(
        (hello["pending"].as_u64(), hello["dropped"].as_u64()),
        (Some(3), Some(2)),
        "{hello}"
    );
    // Once Ben has read them, Ada may send again.
    for _ in 0..3 {
        next(&mut b).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&mut a, common::chat::send("m4", &ben.account_id, &[1], "x")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
}

#[tokio::test]
async fn a_removed_devices_full_inbox_no_longer_refuses_sends() {
    let app = TestApp::spawn_with(|s| s.chat.max_inbox_messages = 2).await;
    let (ada, ben) = (app.user(&phone()).await, app.user(&phone()).await);
    second_device(&app, &ben).await;
    let mut a = online(&app, &ada.token).await;
    // Ben's laptop (device 2) never connects; two messages fill its inbox.
    for id in ["m1", "m2"] {
        put(
            &mut a,
            common::chat::send(id, &ben.account_id, &[1, 2], "x"),
        )
        .await;
        assert_eq!(frame(&mut a).await["type"], "sent");
    }
    stored(&app, 4.0).await;
    put(
        &mut a,
        common::chat::send("m3", &ben.account_id, &[1, 2], "x"),
    )
    .await;
    assert_eq!(frame(&mut a).await["code"], "recipient-inbox-full");
    // Ben reads his phone's copies and removes the laptop: its inbox goes with it.
    let mut b = online(&app, &ben.token).await;
    for _ in 0..2 {
        next(&mut b).await;
    }
    let res = app
        .client
        .delete(app.url("/v1/devices/2"))
        .bearer_auth(&ben.token)
        .send()
        .await
        .expect("remove");
    assert_eq!(res.status(), 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&mut a, common::chat::send("m4", &ben.account_id, &[1], "x")).await;
    assert_eq!(frame(&mut a).await["type"], "sent");
}

#[tokio::test]
async fn group_changes_are_rate_limited_per_account_and_per_group() {
    let app = TestApp::spawn_with(|s| {
        s.chat.group_changes_per_account_per_minute = 3;
        s.chat.group_changes_per_group_per_minute = 4;
    })
    .await;
    let (ada, ben, cy) = (
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    );
    let group: Value = create(&app, &ada, &[&ben.account_id])
        .await
        .json()
        .await
        .expect("group");
    let group = group["group_id"].as_str().expect("id").to_owned();
    // Ada's budget: the creation and two changes.
    assert_eq!(
        set_member(&app, &ada, &group, &ben.account_id, "admin")
            .await
            .status(),
        200
    );
    assert_eq!(
        set_member(&app, &ada, &group, &cy.account_id, "member")
            .await
            .status(),
        200
    );
    let res = set_member(&app, &ada, &group, &cy.account_id, "admin").await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "rate-limited").await;
    // Cy, a plain member, cannot demote Ben: his refused attempts spend none of the group's.
    for _ in 0..3 {
        assert_eq!(
            set_member(&app, &cy, &group, &ben.account_id, "member")
                .await
                .status(),
            403
        );
    }
    // Ben has a budget of his own, but the group has two changes left of four.
    assert_eq!(
        set_member(&app, &ben, &group, &cy.account_id, "admin")
            .await
            .status(),
        200
    );
    assert_eq!(
        set_member(&app, &ben, &group, &ada.account_id, "member")
            .await
            .status(),
        200
    );
    assert_problem(
        remove(&app, &ben, &group, &cy.account_id).await,
        429,
        "rate-limited",
    )
    .await;
    // A group someone is not in keys no budget and answers as if it did not exist.
    let outsider = app.user(&phone()).await;
    assert_problem(
        set_member(&app, &outsider, &group, &outsider.account_id, "admin").await,
        404,
        "no-such-group",
    )
    .await;
}

#[tokio::test]
async fn creating_a_large_group_costs_one_change_per_16_members() {
    let app = TestApp::spawn_with(|s| s.chat.group_changes_per_account_per_minute = 2).await;
    let ada = app.user(&phone()).await;
    let mut members = Vec::new();
    for _ in 0..16 {
        members.push(app.user(&phone()).await.account_id);
    }
    let named: Vec<&str> = members.iter().map(String::as_str).collect();
    let res = create(&app, &ada, &named).await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.expect("group");
    let group = group["group_id"].as_str().expect("id").to_owned();
    assert_problem(
        set_member(&app, &ada, &group, &members[0], "admin").await,
        429,
        "rate-limited",
    )
    .await;
}

async fn privacy(app: &TestApp, user: &User, group_adds: &str) {
    let res = app
        .client
        .put(app.url("/v1/groups/privacy"))
        .bearer_auth(&user.token)
        .json(&json!({ "group_adds": group_adds }))
        .send()
        .await
        .expect("privacy");
    assert_eq!(res.status(), 200);
    let now: Value = app
        .client
        .get(app.url("/v1/groups/privacy"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("privacy")
        .json()
        .await
        .expect("json");
    assert_eq!(now["group_adds"], group_adds);
}

fn invited(group: &Value) -> Vec<String> {
    serde_json::from_value(group["invited"].clone()).expect("invited")
}

#[tokio::test]
async fn accounts_choose_who_may_add_them_and_others_invite_them() {
    let app = TestApp::spawn().await;
    let (ada, ben, cy) = (
        app.user(&phone()).await,
        app.user(&phone()).await,
        app.user(&phone()).await,
    );
    privacy(&app, &ben, "nobody").await;
    privacy(&app, &cy, "contacts").await;

    // Ben lets nobody add him: the new group invites him, and he is told.
    let res = create(&app, &ada, &[&ben.account_id]).await;
    assert_eq!(res.status(), 201);
    let group: Value = res.json().await.expect("group");
    let id = group["group_id"].as_str().expect("id").to_owned();
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );
    assert_eq!(invited(&group), std::slice::from_ref(&ben.account_id));
    let mut b = online(&app, &ben.token).await;
    let told = next(&mut b).await;
    assert_eq!(
        (told["change"].as_str(), told["from"]["account_id"].as_str()),
        (Some("invited"), Some(ada.account_id.as_str())),
        "{told}"
    );
    assert_problem(
        app.client
            .get(app.url(&format!("/v1/groups/{id}")))
            .bearer_auth(&ben.token)
            .send()
            .await
            .expect("get"),
        404,
        "no-such-group",
    )
    .await;
    // He joins by adding himself.
    let res = set_member(&app, &ben, &id, &ben.account_id, "member").await;
    assert_eq!(res.status(), 200);
    let group: Value = res.json().await.expect("group");
    assert_eq!(group["members"].as_array().map(Vec::len), Some(2));
    assert!(invited(&group).is_empty());

    // Cy lets contacts add her: Ada is not one yet, so Cy is invited, and declines.
    let group: Value = set_member(&app, &ada, &id, &cy.account_id, "member")
        .await
        .json()
        .await
        .expect("group");
    assert_eq!(invited(&group), std::slice::from_ref(&cy.account_id));
    assert_eq!(remove(&app, &cy, &id, &cy.account_id).await.status(), 204);
    let group: Value = set_member(&app, &ada, &id, &ada.account_id, "admin")
        .await
        .json()
        .await
        .expect("group");
    assert!(invited(&group).is_empty(), "declined");
    assert_problem(
        set_member(&app, &cy, &id, &cy.account_id, "member").await,
        404,
        "no-such-group",
    )
    .await;
    // Once Cy has written to Ada, Ada may add her.
    let mut c = online(&app, &cy.token).await;
    put(
        &mut c,
        common::chat::send("hi", &ada.account_id, &[1], "hello"),
    )
    .await;
    // (Her inbox holds the invitation she declined.)
    while next(&mut c).await["type"] != "sent" {}
    let group: Value = set_member(&app, &ada, &id, &cy.account_id, "member")
        .await
        .json()
        .await
        .expect("group");
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(3),
        "{group}"
    );

    // An admin withdraws an invitation.
    let dee = app.user(&phone()).await;
    privacy(&app, &dee, "nobody").await;
    set_member(&app, &ada, &id, &dee.account_id, "member").await;
    assert_eq!(remove(&app, &ada, &id, &dee.account_id).await.status(), 204);
    // An invitation is used up when its account is added directly: removed later, it cannot
    // rejoin with it.
    set_member(&app, &ada, &id, &dee.account_id, "member").await;
    privacy(&app, &dee, "anyone").await;
    let group: Value = set_member(&app, &ada, &id, &dee.account_id, "member")
        .await
        .json()
        .await
        .expect("group");
    assert!(invited(&group).is_empty(), "{group}");
    assert_eq!(remove(&app, &ada, &id, &dee.account_id).await.status(), 204);
    assert_problem(
        set_member(&app, &dee, &id, &dee.account_id, "member").await,
        404,
        "no-such-group",
    )
    .await;
}
