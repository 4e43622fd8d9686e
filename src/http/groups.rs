//! Groups: create, list, read, add or remove members, leave. Messages to a group go over
//! the chat WebSocket (`send_group`); its name and picture travel end-to-end encrypted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealpost_auth::Authenticated;
use sealpost_proto::{CreateGroup, Group, Privacy, Problem, SetGroupMember};

use super::json::ApiJson;
use crate::error::ApiResult;
use crate::state::AppState;

/// Creates a group with this account as its admin and `members` as members. Every member
/// device is told with a `group` frame (`change: created`).
#[utoipa::path(
    post, path = "/v1/groups", tag = "groups",
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = Group),
        (status = 400, description = "`invalid-group-request`: a member listed twice, or the creator listed; `invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-account`: a member has no account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`group-too-large`: more than `chat.max_group_members`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: too many group changes by this account (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_group(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let group = state
        .chat
        .create_group(&auth.account_id, auth.device_id, req.members)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// The groups this account is in.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    responses(
        (status = 200, description = "The groups", body = [Group]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_groups(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.chat.groups(&auth.account_id).await?))
}

/// A group this account is in, with its members.
#[utoipa::path(
    get, path = "/v1/groups/{group_id}", tag = "groups",
    params(("group_id" = String, Path, description = "The group")),
    responses(
        (status = 200, description = "The group", body = Group),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-group`: none, or this account is not in it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_group(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(group_id): Path<String>,
) -> ApiResult<Json<Group>> {
    Ok(Json(state.chat.group(&auth.account_id, &group_id).await?))
}

/// Adds an account to the group, or sets a member's role (admins only). Members are told
/// with a `group` frame (`added`, `promoted` or `demoted`). An account whose `group_adds`
/// setting does not let this admin add it is invited instead (`invited` in the answer; it and
/// the members get a `group` frame with `change: invited`); it joins by naming itself here.
#[utoipa::path(
    put, path = "/v1/groups/{group_id}/members/{account_id}", tag = "groups",
    params(
        ("group_id" = String, Path, description = "The group"),
        ("account_id" = String, Path, description = "The member's account"),
    ),
    request_body = SetGroupMember,
    responses(
        (status = 200, description = "The group after the change", body = Group),
        (status = 400, description = "`invalid-json`: the body is not a SetGroupMember", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`not-group-admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-group` or `no-such-account`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`group-too-large`, or `last-admin`: the only admin cannot be demoted", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: too many group changes by this account or to this group (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn set_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((group_id, account_id)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetGroupMember>,
) -> ApiResult<Json<Group>> {
    let group = state
        .chat
        .set_member(
            &auth.account_id,
            auth.device_id,
            &group_id,
            &account_id,
            req.role,
        )
        .await?;
    Ok(Json(group))
}

/// Removes a member (admins), or leaves (any member, naming itself); for an invited account,
/// declines the invitation (the account itself) or withdraws it (admins). When the last admin
/// leaves, the longest-standing member becomes admin; when the last member leaves, the group
/// is gone. Members, and the one removed, are told with a `group` frame.
#[utoipa::path(
    delete, path = "/v1/groups/{group_id}/members/{account_id}", tag = "groups",
    params(
        ("group_id" = String, Path, description = "The group"),
        ("account_id" = String, Path, description = "The member's account (your own to leave)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`not-group-admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-such-group` or `not-a-member`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate-limited`: too many group changes by this account or to this group (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((group_id, account_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .remove_member(&auth.account_id, auth.device_id, &group_id, &account_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This account's privacy settings: who may add it to groups.
#[utoipa::path(
    get, path = "/v1/groups/privacy", tag = "groups",
    responses(
        (status = 200, description = "The settings", body = Privacy),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_privacy(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<Privacy>> {
    Ok(Json(state.chat.privacy(&auth.account_id).await?))
}

/// Sets who may add this account to groups: `anyone`, `contacts` (accounts it has sent a
/// direct message to) or `nobody`; others invite it instead.
#[utoipa::path(
    put, path = "/v1/groups/privacy", tag = "groups",
    request_body = Privacy,
    responses(
        (status = 200, description = "The settings now", body = Privacy),
        (status = 400, description = "`invalid-json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_privacy(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<Privacy>,
) -> ApiResult<Json<Privacy>> {
    Ok(Json(state.chat.set_privacy(&auth.account_id, req).await?))
}
