//! Registration, login challenges, tokens, revocation and rate limits.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

#[tokio::test]
async fn register_login_use_and_revoke_a_token() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let res = app
        .client
        .get(app.url("/v1/uploads/00000000000000000000000000000000"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_problem(res, 404, "not-found").await;

    let res = app
        .client
        .delete(app.url("/v1/auth/token"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .delete(app.url("/v1/auth/token"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("again");
    let res_status = res.status();
    assert_eq!(header(&res, "www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(res_status, 401);
    assert_problem(
        app.client
            .delete(app.url("/v1/auth/token"))
            .send()
            .await
            .expect("none"),
        401,
        "missing-token",
    )
    .await;
    assert_problem(
        app.client
            .delete(app.url("/v1/auth/token"))
            .header("Authorization", "Basic abc")
            .send()
            .await
            .expect("basic"),
        401,
        "invalid-token",
    )
    .await;
}

#[tokio::test]
async fn registration_validates_its_input() {
    let app = TestApp::spawn().await;
    let key = STANDARD.encode(
        SigningKey::from_bytes(&rand_bytes())
            .verifying_key()
            .as_bytes(),
    );
    let post = |body: Value| app.client.post(app.url("/v1/accounts")).json(&body).send();
    let p = phone();
    assert_problem(
        post(json!({"phone": "0151 123", "name": "A", "identity_key": key}))
            .await
            .expect("r"),
        400,
        "invalid-phone",
    )
    .await;
    assert_problem(
        post(json!({"phone": p, "name": "", "identity_key": key}))
            .await
            .expect("r"),
        400,
        "invalid-name",
    )
    .await;
    assert_problem(
        post(json!({"phone": p, "name": "A", "identity_key": "AAAA"}))
            .await
            .expect("r"),
        400,
        "invalid-identity-key",
    )
    .await;
    assert_problem(
        post(json!({"phone": p})).await.expect("r"),
        400,
        "invalid-json",
    )
    .await;
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .body("{}")
        .send()
        .await
        .expect("no content type");
    assert_problem(res, 415, "unsupported-media-type").await;
    assert_eq!(
        post(json!({"phone": p, "name": "A", "identity_key": key}))
            .await
            .expect("r")
            .status(),
        201
    );
    assert_problem(
        post(json!({"phone": p, "name": "B", "identity_key": key}))
            .await
            .expect("r"),
        409,
        "phone-taken",
    )
    .await;
}

#[tokio::test]
async fn challenges_are_single_use_and_signatures_must_verify() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let c = app.challenge(&user.phone).await;
    let raw = STANDARD.decode(&c).expect("b64");
    assert!(raw.starts_with(b"sealpost-auth-v1\n") && raw.len() == 17 + 32);
    let stranger = SigningKey::from_bytes(&rand_bytes());
    assert_problem(
        app.token_request(&user.phone, &c, &stranger).await,
        401,
        "invalid-signature",
    )
    .await;
    // A failed attempt used the challenge up.
    assert_problem(
        app.token_request(&user.phone, &c, &user.key).await,
        401,
        "invalid-challenge",
    )
    .await;
    let c = app.challenge(&user.phone).await;
    assert_eq!(
        app.token_request(&user.phone, &c, &user.key).await.status(),
        200
    );
    assert_problem(
        app.token_request(&user.phone, &c, &user.key).await,
        401,
        "invalid-challenge",
    )
    .await;
    // Unknown numbers get a challenge too, which never verifies.
    let unknown = phone();
    let c = app.challenge(&unknown).await;
    assert_problem(
        app.token_request(&unknown, &c, &user.key).await,
        401,
        "invalid-challenge",
    )
    .await;
}

#[tokio::test]
async fn challenges_and_tokens_expire() {
    // Expiry is kept in whole seconds: a 3 s challenge lives at least 2 s, enough to log in
    // on a loaded machine, and 4.1 s later both it and the 4 s token are surely expired.
    let app = TestApp::spawn_with(|s| {
        s.auth.challenge_ttl = Duration::from_secs(3);
        s.auth.token_ttl = Duration::from_secs(4);
    })
    .await;
    let user = app.user(&phone()).await;
    let stale = app.challenge(&user.phone).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_problem(
        app.token_request(&user.phone, &stale, &user.key).await,
        401,
        "invalid-challenge",
    )
    .await;
    let res = app
        .client
        .get(app.url("/v1/uploads/00000000000000000000000000000000"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    assert_problem(res, 401, "invalid-token").await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_phone_and_address() {
    let app = TestApp::spawn_with(|s| {
        s.auth.attempts_per_phone_per_minute = 3;
        s.auth.attempts_per_address_per_minute = 6;
    })
    .await;
    let p = phone();
    for _ in 0..3 {
        app.challenge(&p).await;
    }
    let res = app
        .client
        .post(app.url("/v1/auth/challenge"))
        .json(&json!({"phone": p}))
        .send()
        .await
        .expect("4th");
    let retry: u64 = header(&res, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry));
    assert_problem(res, 429, "rate-limited").await;
    // Another phone from the same address still has budget, until the address limit.
    let other = phone();
    for _ in 0..2 {
        app.challenge(&other).await;
    }
    let res = app
        .client
        .post(app.url("/v1/auth/challenge"))
        .json(&json!({"phone": phone()}))
        .send()
        .await
        .expect("addr");
    assert_problem(res, 429, "rate-limited").await;
}

#[tokio::test]
async fn lookups_and_registrations_share_one_budget_per_client_address() {
    let app = TestApp::spawn_with(|s| s.auth.lookups_per_address_per_minute = 4).await;
    // Two registrations take two answers from this address's budget.
    let (ada, bob) = (app.user(&phone()).await, app.user(&phone()).await);
    let lookup = |user: &User, phone: &str| {
        app.client
            .get(app.url(&format!("/v1/accounts/by-phone/{phone}")))
            .bearer_auth(&user.token)
            .send()
    };
    assert_eq!(
        lookup(&ada, &bob.phone).await.expect("lookup").status(),
        200
    );
    assert_eq!(
        lookup(&bob, &ada.phone).await.expect("lookup").status(),
        200
    );
    // Each account is far from its own limit; the address is at its.
    assert_problem(
        lookup(&ada, &bob.phone).await.expect("lookup"),
        429,
        "rate-limited",
    )
    .await;
    let res = app
        .client
        .post(app.url("/v1/accounts"))
        .json(&json!({"phone": ada.phone, "name": "Probe", "identity_key": STANDARD.encode([7u8; 32])}))
        .send()
        .await
        .expect("register");
    assert_problem(res, 429, "rate-limited").await;
}
