use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::Rng;
use sealpost_db::{AccountRow, Db, DbError};
use sealpost_proto::{
    Account, ChallengeRequest, ChallengeResponse, RegisterAccount, TokenRequest, TokenResponse,
};
use sha2::{Digest, Sha256};

use crate::{AuthError, RateLimiter, rfc3339, secs, unix_now, validate_name, validate_phone};

/// Every challenge starts with this, so a signature over it can never be replayed as a
/// signature over anything else the identity key signs.
const CHALLENGE_PREFIX: &[u8] = b"sealpost-auth-v1\n";

/// Lifetimes and limits for accounts and tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long a bearer token lives.
    pub token_ttl: Duration,
    /// How long a login challenge lives.
    pub challenge_ttl: Duration,
    /// Attempts a minute per phone number (challenge and token requests).
    pub attempts_per_phone_per_minute: u32,
    /// Attempts a minute per client address (registration, challenge and token requests).
    pub attempts_per_address_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            challenge_ttl: Duration::from_secs(60),
            attempts_per_phone_per_minute: 10,
            attempts_per_address_per_minute: 60,
        }
    }
}

/// Registration, login and token checks.
#[derive(Debug)]
pub struct AuthService {
    db: Db,
    config: AuthConfig,
    by_phone: RateLimiter,
    by_address: RateLimiter,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn decode_fixed<const N: usize>(b64: &str) -> Option<[u8; N]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

impl AuthService {
    /// A service over `db` with `config`.
    pub fn new(db: Db, config: AuthConfig) -> Self {
        let by_phone = RateLimiter::new(config.attempts_per_phone_per_minute);
        let by_address = RateLimiter::new(config.attempts_per_address_per_minute);
        Self {
            db,
            config,
            by_phone,
            by_address,
        }
    }

    fn limit(&self, phone: Option<&str>, address: IpAddr) -> Result<(), AuthError> {
        self.by_address
            .check(&address.to_string())
            .map_err(AuthError::RateLimited)?;
        if let Some(phone) = phone {
            self.by_phone.check(phone).map_err(AuthError::RateLimited)?;
        }
        Ok(())
    }

    /// Registers an account with its first device's identity key.
    pub async fn register(
        &self,
        req: RegisterAccount,
        address: IpAddr,
    ) -> Result<Account, AuthError> {
        self.limit(None, address)?;
        validate_phone(&req.phone)?;
        validate_name(&req.name)?;
        let key = decode_fixed::<32>(&req.identity_key).ok_or(AuthError::InvalidIdentityKey)?;
        VerifyingKey::from_bytes(&key).map_err(|_| AuthError::InvalidIdentityKey)?;
        let row = AccountRow {
            id: uuid::Uuid::new_v4().to_string(),
            phone: req.phone,
            name: req.name,
            identity_key: key.to_vec(),
            created_at: unix_now(),
        };
        self.db.insert_account(&row).await.map_err(|e| match e {
            DbError::Conflict => AuthError::PhoneTaken,
            other => other.into(),
        })?;
        tracing::info!(account = %row.id, "account registered");
        Ok(Account {
            id: row.id,
            phone: row.phone,
            name: row.name,
            created_at: rfc3339(row.created_at),
        })
    }

    /// Issues a single-use challenge. Unknown numbers get one too (never stored), so the
    /// endpoint does not reveal who is registered.
    pub async fn challenge(
        &self,
        req: ChallengeRequest,
        address: IpAddr,
    ) -> Result<ChallengeResponse, AuthError> {
        validate_phone(&req.phone)?;
        self.limit(Some(&req.phone), address)?;
        let mut challenge = CHALLENGE_PREFIX.to_vec();
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        challenge.extend_from_slice(&nonce);
        let expires_at = unix_now() + secs(self.config.challenge_ttl);
        if let Some(account) = self.db.account_by_phone(&req.phone).await? {
            self.db
                .insert_challenge(&sha256_hex(&challenge), &account.id, expires_at)
                .await?;
        }
        Ok(ChallengeResponse {
            challenge: STANDARD.encode(&challenge),
            expires_at: rfc3339(expires_at),
        })
    }

    /// Exchanges a signed challenge for a bearer token.
    pub async fn token(
        &self,
        req: TokenRequest,
        address: IpAddr,
    ) -> Result<TokenResponse, AuthError> {
        validate_phone(&req.phone)?;
        self.limit(Some(&req.phone), address)?;
        let challenge = STANDARD
            .decode(&req.challenge)
            .map_err(|_| AuthError::InvalidChallenge)?;
        let signature = decode_fixed::<64>(&req.signature).ok_or(AuthError::InvalidSignature)?;
        let (account_id, expires_at) = self
            .db
            .take_challenge(&sha256_hex(&challenge))
            .await?
            .ok_or(AuthError::InvalidChallenge)?;
        let now = unix_now();
        let account = self
            .db
            .account_by_phone(&req.phone)
            .await?
            .ok_or(AuthError::InvalidChallenge)?;
        if expires_at <= now || account.id != account_id {
            return Err(AuthError::InvalidChallenge);
        }
        let key_bytes: [u8; 32] = account
            .identity_key
            .as_slice()
            .try_into()
            .map_err(|_| AuthError::InvalidSignature)?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| AuthError::InvalidSignature)?;
        key.verify_strict(&challenge, &Signature::from_bytes(&signature))
            .map_err(|_| AuthError::InvalidSignature)?;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let expires_at = now + secs(self.config.token_ttl);
        self.db
            .insert_token(&sha256_hex(token.as_bytes()), &account.id, now, expires_at)
            .await?;
        tracing::info!(account = %account.id, "token issued");
        Ok(TokenResponse {
            token,
            token_type: "Bearer".to_owned(),
            expires_at: rfc3339(expires_at),
            account_id: account.id,
        })
    }

    /// The account a bearer token authenticates.
    pub async fn authenticate(&self, token: &str) -> Result<String, AuthError> {
        self.db
            .token_account(&sha256_hex(token.as_bytes()), unix_now())
            .await?
            .ok_or(AuthError::InvalidToken)
    }

    /// Revokes a bearer token.
    pub async fn revoke(&self, token: &str) -> Result<(), AuthError> {
        self.db.delete_token(&sha256_hex(token.as_bytes())).await?;
        Ok(())
    }

    /// Deletes expired challenges and tokens.
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        Ok(self.db.purge_expired_credentials(unix_now()).await?)
    }
}
