//! The key directory (docs/e2e.md): a device publishes its Olm identity, a signed fallback key
//! and one-time keys; a sender fetches an account's device keys, claiming a one-time key each.

use axum::Json;
use axum::extract::{Path, State};
use sealpost_auth::Authenticated;
use sealpost_proto::{KeyBundles, KeyStock, Problem, PublishKeys};

use super::json::ApiJson;
use crate::error::ApiResult;
use crate::state::AppState;

/// Publishes this device's keys: its Olm identity (fixed once published, bound to the device
/// by its login key's signature), a new signed fallback key, and more one-time keys (at most
/// `chat.max_one_time_keys` held). Answers what the server now holds for the device.
#[utoipa::path(
    put, path = "/v1/keys", tag = "keys",
    request_body = PublishKeys,
    responses(
        (status = 200, description = "Stored", body = KeyStock),
        (status = 400, description = "`invalid-keys` (a key not base64 of 32 bytes, a bad id, an id listed twice, too many keys at once), `invalid-key-signature`, `invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`identity-changed`: this device published another identity; `too-many-one-time-keys`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn publish_keys(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<PublishKeys>,
) -> ApiResult<Json<KeyStock>> {
    Ok(Json(
        state
            .chat
            .publish_keys(&auth.account_id, auth.device_id, req)
            .await?,
    ))
}

/// The keys of an account's devices (those that published keys), each with one one-time key
/// claimed for the caller: a key is handed out once, then gone. A device with none left
/// comes with its fallback key only. Rate limited per calling account
/// (`chat.key_claims_per_minute`).
#[utoipa::path(
    get, path = "/v1/keys/{account_id}", tag = "keys",
    params(("account_id" = String, Path, description = "The account to write to")),
    responses(
        (status = 200, description = "The devices' keys", body = KeyBundles),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-account`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited` (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn claim_keys(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(account_id): Path<String>,
) -> ApiResult<Json<KeyBundles>> {
    Ok(Json(
        state.chat.claim_keys(&auth.account_id, &account_id).await?,
    ))
}
