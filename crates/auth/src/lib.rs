//! Accounts, login challenges and bearer tokens, plus the axum extractor every authenticated
//! endpoint uses. Identity is the immutable account id, never the phone number.

mod error;
mod extract;
mod limiter;
mod service;
mod validate;

pub use error::AuthError;
pub use extract::Authenticated;
pub use limiter::RateLimiter;
pub use service::{AuthConfig, AuthService};
pub use validate::{validate_name, validate_phone};

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
