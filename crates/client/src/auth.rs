//! Registration and login with an Ed25519 identity key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;

use crate::{Client, ClientError, check};

impl Client {
    /// POSTs a JSON body; the JSON answer.
    async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let res = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(ClientError::Network)?;
        check(res).await?.json().await.map_err(ClientError::Network)
    }

    /// Registers `phone` with `name` and the identity key `key`; returns the account id.
    ///
    /// # Errors
    /// [`ClientError::Server`] (e.g. `phone-taken`), or network trouble.
    pub async fn register(
        &self,
        phone: &str,
        name: &str,
        key: &SigningKey,
    ) -> Result<String, ClientError> {
        let account = self
            .post_json(
                "/v1/accounts",
                &json!({
                    "phone": phone,
                    "name": name,
                    "identity_key": STANDARD.encode(key.verifying_key().as_bytes()),
                }),
            )
            .await?;
        account["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("registration answer has no id".into()))
    }

    /// Logs in as `phone` by signing a fresh challenge with `key`; keeps and returns the token.
    ///
    /// # Errors
    /// [`ClientError::Server`] (e.g. a wrong key), or network trouble.
    pub async fn login(&mut self, phone: &str, key: &SigningKey) -> Result<String, ClientError> {
        self.login_device(phone, 1, key).await
    }

    /// Logs in as device `device_id` of `phone` (a linked device) with its key `key`; keeps
    /// and returns the token.
    ///
    /// # Errors
    /// [`ClientError::Server`] (e.g. a wrong key), or network trouble.
    pub async fn login_device(
        &mut self,
        phone: &str,
        device_id: u32,
        key: &SigningKey,
    ) -> Result<String, ClientError> {
        let body = self
            .post_json(
                "/v1/auth/challenge",
                &json!({"phone": phone, "device_id": device_id}),
            )
            .await?;
        let challenge = body["challenge"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no challenge".into()))?;
        let bytes = STANDARD
            .decode(challenge)
            .map_err(|_| ClientError::Protocol("challenge is not base64".into()))?;
        let signature = key.sign(&bytes);
        let body = self
            .post_json(
                "/v1/auth/token",
                &json!({
                    "phone": phone,
                    "challenge": challenge,
                    "signature": STANDARD.encode(signature.to_bytes()),
                }),
            )
            .await?;
        let token = body["token"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no token".into()))?
            .to_owned();
        self.token = Some(token.clone());
        self.account_id = body["account_id"].as_str().map(str::to_owned);
        Ok(token)
    }
}
