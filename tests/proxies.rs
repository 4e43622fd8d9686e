//! The client address behind proxies (`trusted_proxies`): per-address limits count what a
//! trusted proxy says the client is, and only what it appended; behind the shipped nginx every
//! client has a budget of its own and cannot forge another's. Needs nginx (see
//! tests/common/nginx.rs).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::nginx::Nginx;
use common::*;
use serde_json::json;

/// Asks for a login challenge (for a fresh phone number, so that only the per-address budget
/// counts), with `forwarded_for` as X-Forwarded-For; the status.
async fn challenge(client: &reqwest::Client, base: &str, forwarded_for: Option<&str>) -> u16 {
    let mut req = client
        .post(format!("{base}/v1/auth/challenge"))
        .json(&json!({"phone": phone()}));
    if let Some(value) = forwarded_for {
        req = req.header("x-forwarded-for", value);
    }
    req.send().await.expect("challenge").status().as_u16()
}

fn budget_of_two(s: &mut sealpost::Settings) {
    s.auth.attempts_per_address_per_minute = 2;
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // Nobody trusted: X-Forwarded-For is the client's own word; all is the peer's budget.
    let app = TestApp::spawn_with(budget_of_two).await;
    let client = reqwest::Client::new();
    assert_eq!(
        challenge(&client, &app.base, Some("203.0.113.1")).await,
        200
    );
    assert_eq!(
        challenge(&client, &app.base, Some("203.0.113.2")).await,
        200
    );
    assert_eq!(
        challenge(&client, &app.base, Some("203.0.113.3")).await,
        429
    );

    // The peer trusted: each forwarded client has a budget of its own.
    let app = TestApp::spawn_with(|s| {
        budget_of_two(s);
        s.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            challenge(&client, &app.base, Some("203.0.113.1")).await,
            200
        );
    }
    assert_eq!(
        challenge(&client, &app.base, Some("203.0.113.1")).await,
        429
    );
    // What a client wrote before the proxy's entry is not believed.
    assert_eq!(
        challenge(&client, &app.base, Some("198.51.100.9, 203.0.113.1")).await,
        429
    );
    assert_eq!(
        challenge(&client, &app.base, Some("203.0.113.2")).await,
        200
    );
}

#[tokio::test]
async fn a_trusted_proxies_setting_that_is_no_address_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_in(dir.path());
    settings.trusted_proxies = vec!["nginx".into()];
    let e = sealpost::Application::build(settings)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("trusted_proxies"), "{e}");
}

#[tokio::test]
async fn behind_the_shipped_nginx_each_client_has_its_own_budget_and_cannot_forge_one() {
    let app = TestApp::spawn_with(|s| {
        budget_of_two(s);
        s.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let nginx = Nginx::caching_proxy(&app.addr.to_string()).await;
    // Two clients on addresses of their own (every 127/8 address is this machine's).
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .build()
            .expect("client")
    };
    let (two, three) = (from(2), from(3));
    for i in 0..2 {
        let forged = format!("198.51.100.{i}");
        assert_eq!(challenge(&two, &nginx.base, Some(&forged)).await, 200);
    }
    // A forged X-Forwarded-For does not buy 127.0.0.2 another budget...
    assert_eq!(
        challenge(&two, &nginx.base, Some("198.51.100.7")).await,
        429
    );
    assert_eq!(challenge(&two, &nginx.base, None).await, 429);
    // ...and 127.0.0.3's is its own.
    assert_eq!(challenge(&three, &nginx.base, None).await, 200);
}
