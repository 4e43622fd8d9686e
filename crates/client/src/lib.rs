//! The Sealpost client SDK: accounts, and sealed media that is encrypted on this device before
//! it leaves and decrypted after it arrives. The server only ever sees ciphertext.
//!
//! * [`Client::upload_encrypted`] seals a file under a fresh media key while it streams it to
//!   the server (tus), resumable across process restarts, and returns the [`MediaRef`] to send
//!   to the recipient;
//! * [`Client::chat`] opens a chat session (docs/protocol.md) that reconnects by itself,
//!   resumes from the server's inbox and hands over each stored message once;
//! * [`Client::download_decrypted`] fetches a blob, checks it against its id, opens it and checks
//!   the plaintext's SHA-256.

mod auth;
mod chat;
mod directory;
mod download;
mod e2e;
mod error;
mod retry;
mod state;
mod upload;

use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use chat::{Answer, ChatEvent, ChatOptions, ChatSession, Content, Stored};
pub use e2e::E2e;
pub use error::ClientError;
pub use retry::Retry;
pub use sealpost_proto::MediaRef;
pub use state::write_private_json;
pub use upload::Progress;

/// A connection to one Sealpost server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// The account of the last login.
    account_id: Option<String>,
    retry: Retry,
    /// Upload rate cap in bytes per second.
    rate: Option<u64>,
    /// Whether uploads of images attach client-made thumbnails.
    thumbnails: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("account_id", &self.account_id)
            .field("logged_in", &self.token.is_some())
            .field("retry", &self.retry)
            .field("rate", &self.rate)
            .field("thumbnails", &self.thumbnails)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            account_id: None,
            retry: Retry::default(),
            rate: None,
            thumbnails: true,
        }
    }

    /// Uses `token` for requests (from an earlier [`Client::login`]).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Retries transient failures with this policy.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Sends uploads at no more than `bytes_per_second` (none: as fast as possible).
    #[must_use]
    pub fn with_rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate = bytes_per_second.filter(|r| *r > 0);
        self
    }

    /// Whether [`Client::upload_encrypted`] makes and attaches thumbnails of images (default:
    /// yes).
    #[must_use]
    pub fn with_thumbnails(mut self, thumbnails: bool) -> Self {
        self.thumbnails = thumbnails;
        self
    }

    /// The bearer token in use, if logged in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The account this client logged in to (set by [`Client::login`]).
    pub fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn bearer(&self) -> Result<&str, ClientError> {
        self.token.as_deref().ok_or(ClientError::NotLoggedIn)
    }

    /// Sends an authenticated request with an optional JSON body; the JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.bearer()?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let res = request.send().await.map_err(ClientError::Network)?;
        check(res).await?.json().await.map_err(ClientError::Network)
    }
}

/// Turns a non-success response into [`ClientError::Server`] with the problem's code.
async fn check(res: Response) -> Result<Response, ClientError> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let problem: serde_json::Value = res.json().await.unwrap_or_default();
    let text = |k: &str| problem[k].as_str().map(str::to_owned);
    Err(ClientError::Server {
        status: status.as_u16(),
        code: text("code").unwrap_or_else(|| "unknown".into()),
        detail: text("detail").unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned()
        }),
    })
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn is_gone(e: &ClientError) -> bool {
    matches!(e, ClientError::Server { status, .. }
        if *status == StatusCode::NOT_FOUND.as_u16() || *status == StatusCode::GONE.as_u16())
}
