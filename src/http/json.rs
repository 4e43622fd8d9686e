//! A JSON body extractor whose rejections are problem details.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, but a bad body is a 400/415 problem with a stable code.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "send Content-Type: application/json".into(),
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::TooLarge(
                "body-too-large",
                "the JSON body is too large".into(),
            )),
            Err(e) => Err(ApiError::BadRequest("invalid-json", e.body_text())),
        }
    }
}
