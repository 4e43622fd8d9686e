//! An account's devices: linking a new one with a code from a device it has, listing,
//! removing.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealpost_auth::Authenticated;
use sealpost_proto::{Device, LinkCode, LinkDevice, Problem};

use super::client::ClientAddr;
use super::json::ApiJson;
use crate::error::ApiResult;
use crate::state::AppState;

/// Makes a single-use code (valid 10 minutes by default) with which a new device joins this
/// account: carry it to the new device (apps show it as a QR code) and send it with
/// `POST /v1/devices`.
#[utoipa::path(
    post, path = "/v1/devices/link-codes", tag = "devices",
    responses(
        (status = 201, description = "The code", body = LinkCode),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_link_code(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<(StatusCode, Json<LinkCode>)> {
    let code = state.auth.create_link_code(&auth.account_id).await?;
    Ok((StatusCode::CREATED, Json(code)))
}

/// Links a new device, with its own Ed25519 identity key, to the account a link code belongs
/// to. The new device then logs in with `POST /v1/auth/challenge {phone, device_id}`.
#[utoipa::path(
    post, path = "/v1/devices", tag = "devices",
    request_body = LinkDevice,
    responses(
        (status = 201, description = "Linked", body = Device),
        (status = 400, description = "Invalid phone, name or key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`invalid-link-code`: unknown, used, expired or for another account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`too-many-devices`: the account is at its limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn link_device(
    State(state): State<AppState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<LinkDevice>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    let device = state.auth.link_device(req, client.ip).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

/// The account's devices, by number.
#[utoipa::path(
    get, path = "/v1/devices", tag = "devices",
    responses(
        (status = 200, description = "The devices", body = [Device]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_devices(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<Vec<Device>>> {
    Ok(Json(state.auth.devices(&auth.account_id).await?))
}

/// Removes a device and revokes its tokens (its chat connection closes with 4003): the first
/// device may remove any other, any other device only itself. The first device cannot be
/// removed.
#[utoipa::path(
    delete, path = "/v1/devices/{device_id}", tag = "devices",
    params(("device_id" = u32, Path, description = "The device's number")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`device-forbidden`: not this device's to remove", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-device`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn remove_device(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(device_id): Path<String>,
) -> ApiResult<StatusCode> {
    // Not a number: no such device (rather than a bare 400 from the path extractor).
    let device_id = device_id
        .parse()
        .map_err(|_| sealpost_auth::AuthError::NoSuchDevice)?;
    state
        .auth
        .remove_device(&auth.account_id, auth.device_id, device_id)
        .await?;
    state.chat.revoked(&auth.account_id, device_id, None).await;
    Ok(StatusCode::NO_CONTENT)
}
