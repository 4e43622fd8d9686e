//! An account's devices: a new device joins with a single-use code from one it has, logs in
//! with its own key, and is removed by the first device (or itself), which revokes its tokens.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{TestApp, User, phone, rand_bytes};
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn link_code(app: &TestApp, user: &User) -> String {
    let res = app
        .client
        .post(app.url("/v1/devices/link-codes"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("link code");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    body["code"].as_str().expect("code").to_owned()
}

async fn link(app: &TestApp, phone: &str, code: &str, key: &SigningKey) -> reqwest::Response {
    app.client
        .post(app.url("/v1/devices"))
        .json(&json!({
            "phone": phone,
            "code": code,
            "name": "Laptop",
            "identity_key": STANDARD.encode(key.verifying_key().as_bytes()),
        }))
        .send()
        .await
        .expect("link")
}

/// Logs device `device_id` in with `key`; returns the token response.
async fn login_device(
    app: &TestApp,
    phone: &str,
    device_id: u32,
    key: &SigningKey,
) -> reqwest::Response {
    let challenge = app.device_challenge(phone, device_id).await;
    app.token_request(phone, &challenge, key).await
}

async fn code_of(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("problem");
    body["code"].as_str().unwrap_or_default().to_owned()
}

async fn devices(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/devices"))
        .bearer_auth(token)
        .send()
        .await
        .expect("devices")
}

async fn remove(app: &TestApp, token: &str, device: u32) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/devices/{device}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("remove")
}

#[tokio::test]
async fn a_linked_device_logs_in_with_its_own_key_and_can_be_removed() {
    let app = TestApp::spawn().await;
    let user = app.user(&phone()).await;
    let laptop = SigningKey::from_bytes(&rand_bytes());
    let code = link_code(&app, &user).await;
    let res = link(&app, &user.phone, &code, &laptop).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let device: Value = res.json().await.expect("json");
    assert_eq!(
        (device["device_id"].as_u64(), device["name"].as_str()),
        (Some(2), Some("Laptop"))
    );
    let again = link(
        &app,
        &user.phone,
        &code,
        &SigningKey::from_bytes(&rand_bytes()),
    )
    .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        code_of(again).await,
        "invalid-link-code",
        "a code is used once"
    );

    // The laptop signs for device 2; the phone's key does not.
    let wrong = login_device(&app, &user.phone, 2, &user.key).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let res = login_device(&app, &user.phone, 2, &laptop).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token: Value = res.json().await.expect("json");
    assert_eq!(token["device_id"], 2);
    assert_eq!(token["account_id"], user.account_id.as_str());
    let laptop_token = token["token"].as_str().expect("token").to_owned();

    let listed: Value = devices(&app, &laptop_token)
        .await
        .json()
        .await
        .expect("json");
    let numbers: Vec<u64> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["device_id"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2]);

    // Only the first device removes others; nobody removes the first.
    let res = remove(&app, &laptop_token, 1).await;
    assert_eq!(
        (res.status(), code_of(res).await.as_str()),
        (StatusCode::FORBIDDEN, "device-forbidden")
    );
    let res = remove(&app, &user.token, 7).await;
    assert_eq!(
        (res.status(), code_of(res).await.as_str()),
        (StatusCode::NOT_FOUND, "no-such-device")
    );
    assert_eq!(
        remove(&app, &user.token, 2).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        devices(&app, &laptop_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "a removed device's tokens are revoked"
    );
    let res = login_device(&app, &user.phone, 2, &laptop).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "and it cannot log in again"
    );
}

#[tokio::test]
async fn links_are_limited_per_account_bound_to_their_account_and_expire() {
    let app = TestApp::spawn_with(|s| {
        s.auth.max_devices_per_account = 2;
        s.auth.link_code_ttl = std::time::Duration::from_secs(3);
    })
    .await;
    let user = app.user(&phone()).await;
    let other = app.user(&phone()).await;
    let key = || SigningKey::from_bytes(&rand_bytes());

    let code = link_code(&app, &user).await;
    let res = link(&app, &other.phone, &code, &key()).await;
    assert_eq!(
        (res.status(), code_of(res).await.as_str()),
        (StatusCode::FORBIDDEN, "invalid-link-code"),
        "a code joins only its own account"
    );

    let code = link_code(&app, &user).await;
    assert_eq!(
        link(&app, &user.phone, &code, &key()).await.status(),
        StatusCode::CREATED
    );
    let code = link_code(&app, &user).await;
    let res = link(&app, &user.phone, &code, &key()).await;
    assert_eq!(
        (res.status(), code_of(res).await.as_str()),
        (StatusCode::CONFLICT, "too-many-devices")
    );

    let code = link_code(&app, &other).await;
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let res = link(&app, &other.phone, &code, &key()).await;
    assert_eq!(
        (res.status(), code_of(res).await.as_str()),
        (StatusCode::FORBIDDEN, "invalid-link-code"),
        "expired"
    );

    let res = link(&app, &user.phone, "x", &key()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .client
        .post(app.url("/v1/devices"))
        .json(&json!({"phone": user.phone, "code": "x", "name": "", "identity_key": "AAAA"}))
        .send()
        .await
        .expect("bad");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
