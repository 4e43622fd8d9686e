//! Account registration and login.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealpost_auth::Authenticated;
use sealpost_proto::{
    Account, AccountKeys, ChallengeRequest, ChallengeResponse, Problem, RegisterAccount,
    TokenRequest, TokenResponse,
};

use super::client::ClientAddr;
use super::json::ApiJson;
use crate::error::ApiResult;
use crate::state::AppState;

/// Registers an account with its first device's Ed25519 identity key.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    request_body = RegisterAccount,
    responses(
        (status = 201, description = "Registered", body = Account),
        (status = 400, description = "Invalid phone, name or key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Phone number taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<RegisterAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((
        StatusCode::CREATED,
        Json(state.auth.register(req, client.ip).await?),
    ))
}

/// Issues a single-use login challenge (valid 60 s by default).
#[utoipa::path(
    post, path = "/v1/auth/challenge", tag = "accounts",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "Challenge to sign", body = ChallengeResponse),
        (status = 400, description = "Invalid phone", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn challenge(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> ApiResult<Json<ChallengeResponse>> {
    Ok(Json(state.auth.challenge(req, client.ip).await?))
}

/// Exchanges a challenge signed with the identity key for a bearer token.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "accounts",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Bearer token", body = TokenResponse),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad challenge or signature", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(state.auth.token(req, client.ip).await?))
}

/// Revokes the bearer token this request carries; a chat connection made with it closes
/// (4003).
#[utoipa::path(
    delete, path = "/v1/auth/token", tag = "accounts",
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<StatusCode> {
    state.auth.revoke(&auth.token).await?;
    let token_hash = sealpost_auth::token_hash(&auth.token);
    state
        .chat
        .revoked(&auth.account_id, auth.device_id, Some(token_hash))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The account with this phone number and its devices' identity keys, to write to it
/// (rate-limited per asking account: `auth.lookups_per_account_per_minute`).
#[utoipa::path(
    get, path = "/v1/accounts/by-phone/{phone}", tag = "accounts",
    params(("phone" = String, Path, description = "E.164 phone number, e.g. +15551234567")),
    responses(
        (status = 200, description = "The account", body = AccountKeys),
        (status = 400, description = "`invalid-phone`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-account`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn lookup(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientAddr,
    Path(phone): Path<String>,
) -> ApiResult<Json<AccountKeys>> {
    Ok(Json(
        state
            .auth
            .lookup(&auth.account_id, &phone, client.ip)
            .await?,
    ))
}
