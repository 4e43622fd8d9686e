//! What an account uses of its storage and upload quotas.

use axum::Json;
use axum::extract::State;
use sealpost_auth::Authenticated;
use sealpost_proto::{Problem, Usage};

use crate::error::ApiResult;
use crate::state::AppState;

/// The caller's account: blobs it holds within the retention and unfinished uploads, each
/// beside its limit.
#[utoipa::path(
    get, path = "/v1/usage", tag = "uploads",
    responses(
        (status = 200, description = "Usage and limits", body = Usage),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_usage(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<Usage>> {
    Ok(Json(state.uploads.usage(&auth.account_id).await?))
}
