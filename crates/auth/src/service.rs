use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::Rng;
use sealpost_db::{AccountRow, Db, DbError};
use sealpost_proto::{
    Account, AccountKeys, ChallengeRequest, ChallengeResponse, Device, DeviceKey, LinkCode,
    LinkDevice, RegisterAccount, TokenRequest, TokenResponse,
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
    /// Devices one account may have at once.
    pub max_devices_per_account: u32,
    /// How long a device-link code lives.
    pub link_code_ttl: Duration,
    /// Phone-number lookups one account may make a minute.
    pub lookups_per_account_per_minute: u32,
    /// Answers about phone numbers (lookups by any account, and registrations, which tell
    /// whether a number is taken) one client address may get a minute.
    pub lookups_per_address_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            challenge_ttl: Duration::from_secs(60),
            attempts_per_phone_per_minute: 10,
            attempts_per_address_per_minute: 60,
            max_devices_per_account: 5,
            link_code_ttl: Duration::from_secs(600),
            lookups_per_account_per_minute: 60,
            lookups_per_address_per_minute: 120,
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
    lookups: RateLimiter,
    /// Lookups and registrations per client address.
    lookups_by_address: RateLimiter,
}

/// What a valid bearer token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The account.
    pub account_id: String,
    /// The device the token was issued to.
    pub device_id: u32,
    /// When the token expires, Unix seconds.
    pub expires_at: i64,
    /// The token's SHA-256, hex (how it is stored, and named when it is revoked).
    pub token_hash: String,
}

/// The SHA-256 of a bearer token, hex: how tokens are stored and named.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn decode_fixed<const N: usize>(b64: &str) -> Option<[u8; N]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// A base64 Ed25519 public key, checked.
fn identity_key(b64: &str) -> Result<[u8; 32], AuthError> {
    let key = decode_fixed::<32>(b64).ok_or(AuthError::InvalidIdentityKey)?;
    VerifyingKey::from_bytes(&key).map_err(|_| AuthError::InvalidIdentityKey)?;
    Ok(key)
}

/// A device number as the API spells it (numbers are small and positive).
fn device_number(device_id: i64) -> u32 {
    u32::try_from(device_id).unwrap_or(0)
}

impl AuthService {
    /// A service over `db` with `config`.
    pub fn new(db: Db, config: AuthConfig) -> Self {
        let by_phone = RateLimiter::new(u64::from(config.attempts_per_phone_per_minute));
        let by_address = RateLimiter::new(u64::from(config.attempts_per_address_per_minute));
        let lookups = RateLimiter::new(u64::from(config.lookups_per_account_per_minute));
        let lookups_by_address = RateLimiter::new(u64::from(config.lookups_per_address_per_minute));
        Self {
            db,
            config,
            by_phone,
            by_address,
            lookups,
            lookups_by_address,
        }
    }

    fn limit(&self, phone: Option<&str>, address: IpAddr) -> Result<(), AuthError> {
        self.by_address
            .check(&crate::address_key(address).to_string())
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
        // `phone-taken` answers what a lookup would: it comes out of the same budget.
        self.lookup_budget(address)?;
        let key = identity_key(&req.identity_key)?;
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
        let device_id = i64::from(req.device_id.unwrap_or(1));
        if let Some(account) = self.db.account_by_phone(&req.phone).await?
            && self.db.device(&account.id, device_id).await?.is_some()
        {
            self.db
                .insert_challenge(&sha256_hex(&challenge), &account.id, device_id, expires_at)
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
        let (account_id, device_id, expires_at) = self
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
        let device = self
            .db
            .device(&account.id, device_id)
            .await?
            .ok_or(AuthError::InvalidChallenge)?;
        let key_bytes: [u8; 32] = device
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
            .insert_token(
                &sha256_hex(token.as_bytes()),
                &account.id,
                device_id,
                now,
                expires_at,
            )
            .await?;
        tracing::info!(account = %account.id, device = device_id, "token issued");
        Ok(TokenResponse {
            token,
            token_type: "Bearer".to_owned(),
            expires_at: rfc3339(expires_at),
            account_id: account.id,
            device_id: device_number(device_id),
        })
    }

    /// The account and device a bearer token authenticates.
    pub async fn authenticate(&self, token: &str) -> Result<(String, u32), AuthError> {
        let session = self.session(token).await?;
        Ok((session.account_id, session.device_id))
    }

    /// What a bearer token authenticates, and until when.
    pub async fn session(&self, token: &str) -> Result<Session, AuthError> {
        let token_hash = sha256_hex(token.as_bytes());
        let (account_id, device, expires_at) = self
            .db
            .token_device(&token_hash, unix_now())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        Ok(Session {
            account_id,
            device_id: device_number(device),
            expires_at,
            token_hash,
        })
    }

    /// Makes a single-use code with which a new device can join `account`'s devices.
    pub async fn create_link_code(&self, account: &str) -> Result<LinkCode, AuthError> {
        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        let code = URL_SAFE_NO_PAD.encode(raw);
        let expires_at = unix_now() + secs(self.config.link_code_ttl);
        self.db
            .insert_link_code(&sha256_hex(code.as_bytes()), account, expires_at)
            .await?;
        Ok(LinkCode {
            code,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Adds a device to the account of `req.phone` with a link code one of its devices made.
    pub async fn link_device(&self, req: LinkDevice, address: IpAddr) -> Result<Device, AuthError> {
        validate_phone(&req.phone)?;
        self.limit(Some(&req.phone), address)?;
        validate_name(&req.name)?;
        let key = identity_key(&req.identity_key)?;
        let (account_id, expires_at) = self
            .db
            .take_link_code(&sha256_hex(req.code.as_bytes()))
            .await?
            .ok_or(AuthError::InvalidLinkCode)?;
        let now = unix_now();
        let account = self.db.account_by_phone(&req.phone).await?;
        if expires_at <= now || account.is_none_or(|a| a.id != account_id) {
            return Err(AuthError::InvalidLinkCode);
        }
        let max = self.config.max_devices_per_account;
        let device_id = self
            .db
            .add_device(&account_id, &req.name, &key, now, i64::from(max))
            .await?
            .ok_or(AuthError::TooManyDevices(max))?;
        tracing::info!(account = %account_id, device = device_id, "device linked");
        Ok(Device {
            device_id: device_number(device_id),
            name: req.name,
            identity_key: STANDARD.encode(key),
            created_at: rfc3339(now),
        })
    }

    /// An account's devices.
    pub async fn devices(&self, account: &str) -> Result<Vec<Device>, AuthError> {
        Ok(self
            .db
            .devices(account)
            .await?
            .into_iter()
            .map(|d| Device {
                device_id: device_number(d.device_id),
                name: d.name,
                identity_key: STANDARD.encode(&d.identity_key),
                created_at: rfc3339(d.created_at),
            })
            .collect())
    }

    /// Removes device `target` of the account, as device `acting` asks: the first device may
    /// remove any other, any other device only itself; the first device stays. Its tokens are
    /// revoked.
    pub async fn remove_device(
        &self,
        account: &str,
        acting: u32,
        target: u32,
    ) -> Result<(), AuthError> {
        if target == 1 {
            return Err(AuthError::DeviceForbidden(
                "the device the account registered with cannot be removed",
            ));
        }
        if acting != 1 && acting != target {
            return Err(AuthError::DeviceForbidden(
                "only the first device may remove another device",
            ));
        }
        if !self
            .db
            .remove_device(account, i64::from(target), unix_now())
            .await?
        {
            return Err(AuthError::NoSuchDevice);
        }
        tracing::info!(account, device = target, "device removed");
        Ok(())
    }

    /// Takes one answer about a phone number from the client address's budget.
    fn lookup_budget(&self, address: IpAddr) -> Result<(), AuthError> {
        self.lookups_by_address
            .check(&crate::address_key(address).to_string())
            .map_err(AuthError::RateLimited)
    }

    /// The account with phone number `phone` and its devices' identity keys, as `asking`
    /// (an account, rate-limited, and so is the client `address`) looks it up to write to it.
    pub async fn lookup(
        &self,
        asking: &str,
        phone: &str,
        address: IpAddr,
    ) -> Result<AccountKeys, AuthError> {
        validate_phone(phone)?;
        self.lookups.check(asking).map_err(AuthError::RateLimited)?;
        self.lookup_budget(address)?;
        let account = self
            .db
            .account_by_phone(phone)
            .await?
            .ok_or(AuthError::NoSuchAccount)?;
        let devices = self
            .db
            .devices(&account.id)
            .await?
            .into_iter()
            .map(|d| DeviceKey {
                device_id: device_number(d.device_id),
                identity_key: STANDARD.encode(&d.identity_key),
            })
            .collect();
        Ok(AccountKeys {
            account_id: account.id,
            devices,
        })
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
