use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::{AuthError, AuthService};

/// The account and device behind a request's `Authorization: Bearer` token.
#[derive(Clone)]
pub struct Authenticated {
    /// Immutable account id.
    pub account_id: String,
    /// The device the token was issued to.
    pub device_id: u32,
    /// The presented token (for revocation).
    pub token: String,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("account_id", &self.account_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<AuthService>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?.to_owned();
        let service = Arc::<AuthService>::from_ref(state);
        let (account_id, device_id) = service.authenticate(&token).await?;
        Ok(Self {
            account_id,
            device_id,
            token,
        })
    }
}

/// The token of a request's `Authorization: Bearer` header (not yet checked).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let header = headers.get(AUTHORIZATION).ok_or(AuthError::MissingToken)?;
    let value = header.to_str().map_err(|_| AuthError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::InvalidToken);
    }
    Ok(token.trim())
}
