//! The key directory (docs/e2e.md): a device publishes its Olm identity, a signed fallback key
//! and one-time keys; a sender fetches an account's device keys, claiming a one-time key each.

use axum::Json;
use axum::extract::{Path, Query, State};
use sealpost_auth::Authenticated;
use sealpost_proto::{KeyBundles, KeyStock, Problem, PublishKeys};
use serde::Deserialize;

use super::json::ApiJson;
use crate::error::{ApiError, ApiResult};
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

/// Whether to claim one-time keys.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ClaimQuery {
    /// `false`: only the identities and fallback keys, claiming nothing (for a recipient
    /// checking who a session came from). Default `true`.
    #[param(value_type = Option<bool>)]
    claim: Option<String>,
}

/// The keys of an account's devices (those that published keys), each with one one-time key
/// claimed for the caller: a key is handed out once, then gone. A device with none left
/// comes with its fallback key only. Rate limited per calling account
/// (`chat.key_claims_per_minute`).
#[utoipa::path(
    get, path = "/v1/keys/{account_id}", tag = "keys",
    params(("account_id" = String, Path, description = "The account to write to"), ClaimQuery),
    responses(
        (status = 200, description = "The devices' keys", body = KeyBundles),
        (status = 400, description = "`invalid-query`: `claim` is not true or false", body = Problem, content_type = "application/problem+json"),
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
    Query(query): Query<ClaimQuery>,
) -> ApiResult<Json<KeyBundles>> {
    let claim = match query.claim.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "invalid-query",
                "claim must be true or false".into(),
            ));
        }
    };
    Ok(Json(
        state
            .chat
            .claim_keys(&auth.account_id, &account_id, claim)
            .await?,
    ))
}
