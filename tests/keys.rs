//! The key directory: a device publishes its Olm identity (signed by its login key), a signed
//! fallback key and one-time keys; senders claim each one-time key once; every malformed key or
//! signature is refused with its code; claims are rate limited; a device running low is told.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use common::chat::{WAIT, connect, frame, frame_within};
use common::{TestApp, User, phone, rand_bytes};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A device's Olm keys as a test stands them in: an Ed25519 key that signs, and random
/// Curve25519-sized keys (the server checks their size, not their curve).
struct OlmKeys {
    signing: SigningKey,
    curve25519: String,
}

impl OlmKeys {
    fn new() -> Self {
        Self {
            signing: SigningKey::from_bytes(&rand_bytes()),
            curve25519: STANDARD_NO_PAD.encode(rand_bytes()),
        }
    }

    fn ed25519(&self) -> String {
        STANDARD_NO_PAD.encode(self.signing.verifying_key().as_bytes())
    }

    fn identity(&self) -> Value {
        json!({"curve25519": self.curve25519, "ed25519": self.ed25519()})
    }

    /// The identity signed by `login` for `user`'s device `device`.
    fn identity_signature(&self, user: &User, device: u32, login: &SigningKey) -> String {
        let message = format!(
            "sealpost-olm-identity-v1:{}:{device}:{}:{}",
            user.account_id,
            self.curve25519,
            self.ed25519()
        );
        STANDARD.encode(login.sign(message.as_bytes()).to_bytes())
    }

    fn fallback(&self, key_id: &str) -> Value {
        let key = STANDARD_NO_PAD.encode(rand_bytes());
        let message = format!("sealpost-fallback-key-v1:{key_id}:{key}");
        let signature = STANDARD_NO_PAD.encode(self.signing.sign(message.as_bytes()).to_bytes());
        json!({"key_id": key_id, "key": key, "signature": signature})
    }

    /// A publish of the identity, a fallback key and `count` one-time keys named from `first`.
    fn publish(&self, user: &User, first: usize, count: usize) -> Value {
        let one_time: Vec<Value> = (first..first + count)
            .map(|i| json!({"key_id": format!("otk{i}"), "key": STANDARD_NO_PAD.encode(rand_bytes())}))
            .collect();
        json!({
            "identity": self.identity(),
            "identity_signature": self.identity_signature(user, 1, &user.key),
            "fallback_key": self.fallback("fb1"),
            "one_time_keys": one_time,
        })
    }
}

async fn put_keys(app: &TestApp, user: &User, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url("/v1/keys"))
        .bearer_auth(&user.token)
        .json(body)
        .send()
        .await
        .expect("put keys")
}

async fn claim(app: &TestApp, user: &User, account: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/keys/{account}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("claim keys")
}

async fn code_of(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.expect("problem");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn each_one_time_key_is_claimed_once_then_the_fallback_key_serves() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let olm = OlmKeys::new();
    let res = put_keys(&app, &alice, &olm.publish(&alice, 0, 3)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.expect("stock"),
        json!({"one_time_keys": 3, "fallback_key": true})
    );
    let res = app
        .client
        .get(app.url(&format!("/v1/keys/{}?claim=false", alice.account_id)))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("look up");
    let looked: Value = res.json().await.expect("bundles");
    assert_eq!(
        (
            &looked["devices"][0]["identity"],
            &looked["devices"][0]["one_time_key"]
        ),
        (&olm.identity(), &Value::Null),
        "a lookup without a claim"
    );
    let res = app
        .client
        .get(app.url(&format!("/v1/keys/{}?claim=maybe", alice.account_id)))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("bad query");
    assert_eq!(
        code_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid-query".to_owned())
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let res = claim(&app, &bob, &alice.account_id).await;
        assert_eq!(res.status(), StatusCode::OK);
        let bundles: Value = res.json().await.expect("bundles");
        assert_eq!(bundles["account_id"], alice.account_id.as_str());
        let device = &bundles["devices"][0];
        assert_eq!(bundles["devices"].as_array().map(Vec::len), Some(1));
        assert_eq!(device["device_id"], 1);
        assert_eq!(device["identity"], olm.identity());
        assert_eq!(
            device["login_key"],
            STANDARD.encode(alice.key.verifying_key().as_bytes())
        );
        assert_eq!(device["fallback_key"]["key_id"], "fb1");
        seen.push(device["one_time_key"]["key_id"].clone());
    }
    assert_eq!(
        seen,
        [json!("otk0"), json!("otk1"), json!("otk2"), Value::Null]
    );
    // An account whose devices published nothing has no bundles; no account is 404.
    let res = claim(&app, &alice, &bob.account_id).await;
    assert_eq!(
        res.json::<Value>().await.expect("bundles")["devices"],
        json!([])
    );
    assert_eq!(
        code_of(claim(&app, &alice, "nobody").await).await,
        (StatusCode::NOT_FOUND, "no-such-account".to_owned())
    );
    let res = app
        .client
        .get(app.url(&format!("/v1/keys/{}", alice.account_id)))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_keys_and_signatures_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn_with(|s| {
        s.chat.max_one_time_keys = 4;
        s.chat.one_time_keys_low = 1;
    })
    .await;
    let alice = app.user(&phone()).await;
    let olm = OlmKeys::new();
    let refused = |mut body: Value, edit: &dyn Fn(&mut Value)| {
        edit(&mut body);
        body
    };
    let good = olm.publish(&alice, 0, 2);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a short key",
            refused(good.clone(), &|b| {
                b["identity"]["curve25519"] = json!("AAAA")
            }),
            "invalid-keys",
        ),
        (
            "a one-time key that is not base64",
            refused(good.clone(), &|b| {
                b["one_time_keys"][0]["key"] = json!("not base64!")
            }),
            "invalid-keys",
        ),
        (
            "one id twice",
            refused(good.clone(), &|b| {
                b["one_time_keys"][1]["key_id"] = json!("otk0")
            }),
            "invalid-keys",
        ),
        (
            "an empty id",
            refused(good.clone(), &|b| b["fallback_key"]["key_id"] = json!("")),
            "invalid-keys",
        ),
        (
            "the identity signed by another key",
            refused(good.clone(), &|b| {
                b["identity_signature"] = json!(olm.identity_signature(
                    &alice,
                    1,
                    &SigningKey::from_bytes(&rand_bytes())
                ));
            }),
            "invalid-key-signature",
        ),
        (
            "the identity signed for another device",
            refused(good.clone(), &|b| {
                b["identity_signature"] = json!(olm.identity_signature(&alice, 2, &alice.key));
            }),
            "invalid-key-signature",
        ),
        (
            "a fallback key signed by another key",
            refused(good.clone(), &|b| {
                b["fallback_key"] = OlmKeys::new().fallback("fb1")
            }),
            "invalid-key-signature",
        ),
        (
            "more one-time keys at once than a device may hold",
            olm.publish(&alice, 0, 5),
            "invalid-keys",
        ),
    ];
    for (what, body, code) in cases {
        assert_eq!(
            code_of(put_keys(&app, &alice, &body).await).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{what}"
        );
    }
    let bob = app.user(&phone()).await;
    assert_eq!(
        claim(&app, &bob, &alice.account_id)
            .await
            .json::<Value>()
            .await
            .expect("bundles")["devices"],
        json!([]),
        "nothing refused was stored"
    );
    let res = put_keys(&app, &alice, &good).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        code_of(put_keys(&app, &alice, &OlmKeys::new().publish(&alice, 10, 0)).await).await,
        (StatusCode::CONFLICT, "identity-changed".to_owned())
    );
    assert_eq!(
        code_of(put_keys(&app, &alice, &olm.publish(&alice, 10, 3)).await).await,
        (StatusCode::CONFLICT, "too-many-one-time-keys".to_owned()),
        "2 held and 3 more is over 4"
    );
    let res = put_keys(&app, &alice, &olm.publish(&alice, 10, 2)).await;
    assert_eq!(
        res.json::<Value>().await.expect("stock")["one_time_keys"],
        4
    );
}

#[tokio::test]
async fn claims_are_rate_limited_per_asking_account() {
    let app = TestApp::spawn_with(|s| s.chat.key_claims_per_minute = 2).await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    for _ in 0..2 {
        assert_eq!(
            claim(&app, &bob, &alice.account_id).await.status(),
            StatusCode::OK
        );
    }
    let res = claim(&app, &bob, &alice.account_id).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        code_of(res).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate-limited".to_owned())
    );
    assert_eq!(
        claim(&app, &alice, &bob.account_id).await.status(),
        StatusCode::OK,
        "another account has its own budget"
    );
}

#[tokio::test]
async fn many_askers_cannot_drain_one_account_s_one_time_keys() {
    let app = TestApp::spawn_with(|s| s.chat.key_claims_per_target_per_minute = 2).await;
    let alice = app.user(&phone()).await;
    let olm = OlmKeys::new();
    let res = put_keys(&app, &alice, &olm.publish(&alice, 0, 10)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut taken = Vec::new();
    for _ in 0..4 {
        // A fresh account each time: the asker's own budget is not what stops them.
        let asker = app.user(&phone()).await;
        let res = claim(&app, &asker, &alice.account_id).await;
        assert_eq!(res.status(), StatusCode::OK);
        let device = res.json::<Value>().await.expect("bundles")["devices"][0].clone();
        assert_eq!(device["fallback_key"]["key_id"], "fb1", "{device}");
        taken.push(!device["one_time_key"].is_null());
    }
    assert_eq!(taken, [true, true, false, false]);
    let stock = put_keys(&app, &alice, &olm.publish(&alice, 10, 0)).await;
    assert_eq!(
        stock.json::<Value>().await.expect("stock")["one_time_keys"],
        8,
        "the device keeps the rest"
    );
}

#[tokio::test]
async fn a_device_running_low_on_one_time_keys_is_told() {
    let app = TestApp::spawn_with(|s| s.chat.one_time_keys_low = 2).await;
    let (alice, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let olm = OlmKeys::new();
    assert_eq!(
        put_keys(&app, &alice, &olm.publish(&alice, 0, 2))
            .await
            .status(),
        StatusCode::OK
    );
    let mut socket = connect(&app, &alice.token).await;
    assert_eq!(frame(&mut socket).await["type"], "hello");
    assert_eq!(
        frame_within(&mut socket, std::time::Duration::from_millis(300)).await,
        None,
        "two keys are not under two"
    );
    assert_eq!(
        claim(&app, &bob, &alice.account_id).await.status(),
        StatusCode::OK
    );
    let low = tokio::time::timeout(WAIT, frame(&mut socket))
        .await
        .expect("keys_low");
    assert_eq!(low, json!({"type": "keys_low", "one_time_keys": 1}));
    drop(socket);
    let mut socket = connect(&app, &alice.token).await;
    assert_eq!(frame(&mut socket).await["type"], "hello");
    assert_eq!(
        frame(&mut socket).await,
        json!({"type": "keys_low", "one_time_keys": 1}),
        "and again when it connects"
    );
}
