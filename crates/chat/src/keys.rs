//! The key directory: devices publish their Olm identity, a signed fallback key and one-time
//! keys; a sender claims one one-time key per device of the account it writes to. The server
//! checks every key and signature it can, so a device cannot be handed junk, and tells a device
//! when its one-time keys run low.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use sealpost_db::{ClaimedKeys, NewDeviceKeys, Published};
use sealpost_proto::{
    DeviceKeyBundle, FallbackKey, KeyBundles, KeyStock, OlmIdentity, OneTimeKey, Problem,
    PublishKeys, ServerFrame, fallback_binding, identity_binding, key_bytes,
};

use crate::delivery::Signal;
use crate::send::valid_id;
use crate::{Chat, unix_millis};

/// Why a key request failed. Each variant has one status and one stable code.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key, id or signature is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A signature does not verify.
    #[error("{0}")]
    BadSignature(&'static str),
    /// The device published another identity before.
    #[error(
        "this device published other identity keys before; they cannot change (link a new \
         device instead)"
    )]
    IdentityChanged,
    /// The device would hold more one-time keys than allowed.
    #[error("a device holds at most {max} one-time keys; the server holds {held} for this one")]
    TooManyKeys {
        /// The limit.
        max: usize,
        /// What the device holds.
        held: u64,
    },
    /// No such account.
    #[error("the account does not exist")]
    NoSuchAccount,
    /// Too many claims; retry after this many seconds.
    #[error("too many key requests; retry in {0} s")]
    RateLimited(u64),
    /// The server failed.
    #[error("internal: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sealpost_db::DbError> for KeyError {
    fn from(e: sealpost_db::DbError) -> Self {
        Self::Internal(e.into())
    }
}

impl KeyError {
    /// HTTP status and stable code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::Invalid(_) => (400, "invalid-keys"),
            Self::BadSignature(_) => (400, "invalid-key-signature"),
            Self::IdentityChanged => (409, "identity-changed"),
            Self::TooManyKeys { .. } => (409, "too-many-one-time-keys"),
            Self::NoSuchAccount => (404, "no-such-account"),
            Self::RateLimited(_) => (429, "rate-limited"),
            Self::Internal(_) => (500, "internal"),
        }
    }

    /// The problem body; internal details are logged here and never sent.
    pub fn to_problem(&self) -> Problem {
        let (status, code) = self.status_code();
        if status >= 500 {
            tracing::error!(error = %self, "key request failed");
            return Problem::new(status, code, "internal error; see server logs");
        }
        Problem::new(status, code, self.to_string())
    }

    /// Seconds to wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// The 32 bytes a key's base64 stands for.
fn key32(what: &str, key: &str) -> Result<[u8; 32], KeyError> {
    key_bytes(key).ok_or_else(|| KeyError::Invalid(format!("{what} is not base64 of 32 bytes")))
}

/// Checks an Ed25519 signature (base64) by `key` over `message`.
fn verify(
    key: &[u8; 32],
    message: &str,
    signature: &str,
    failure: &'static str,
) -> Result<(), KeyError> {
    let signature = key_bytes::<64>(signature).ok_or(KeyError::BadSignature(failure))?;
    VerifyingKey::from_bytes(key)
        .and_then(|key| key.verify_strict(message.as_bytes(), &Signature::from_bytes(&signature)))
        .map_err(|_| KeyError::BadSignature(failure))
}

fn valid_key_id(what: &str, id: &str) -> Result<(), KeyError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "{what} must be 1 to 64 characters"
        )))
    }
}

impl Chat {
    /// Publishes the keys of `device` of `account` (`PUT /v1/keys`).
    pub async fn publish_keys(
        &self,
        account: &str,
        device: u32,
        keys: PublishKeys,
    ) -> Result<KeyStock, KeyError> {
        let max = self.config.max_one_time_keys;
        if keys.one_time_keys.len() > max {
            return Err(KeyError::Invalid(format!(
                "at most {max} one-time keys at a time"
            )));
        }
        let login_key = self
            .db
            .devices(account)
            .await?
            .into_iter()
            .find(|d| d.device_id == i64::from(device))
            .and_then(|d| <[u8; 32]>::try_from(d.identity_key).ok())
            .ok_or_else(|| KeyError::Internal(anyhow::anyhow!("device without a login key")))?;
        key32("identity.curve25519", &keys.identity.curve25519)?;
        let olm_signing = key32("identity.ed25519", &keys.identity.ed25519)?;
        verify(
            &login_key,
            &identity_binding(account, device, &keys.identity),
            &keys.identity_signature,
            "identity_signature is not this device's login key's signature over its identity",
        )?;
        if let Some(fallback) = &keys.fallback_key {
            valid_key_id("fallback_key.key_id", &fallback.key_id)?;
            key32("fallback_key.key", &fallback.key)?;
            verify(
                &olm_signing,
                &fallback_binding(&fallback.key_id, &fallback.key),
                &fallback.signature,
                "fallback_key.signature is not identity.ed25519's signature over the key",
            )?;
        }
        let mut seen = std::collections::HashSet::new();
        for key in &keys.one_time_keys {
            valid_key_id("a one-time key's key_id", &key.key_id)?;
            key32("a one-time key", &key.key)?;
            if !seen.insert(key.key_id.as_str()) {
                return Err(KeyError::Invalid(format!(
                    "one-time key id {:?} is listed twice",
                    key.key_id
                )));
            }
        }
        let one_time: Vec<(&str, &str)> = keys
            .one_time_keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.key.as_str()))
            .collect();
        let published = self
            .db
            .publish_keys(NewDeviceKeys {
                account,
                device: i64::from(device),
                curve25519: &keys.identity.curve25519,
                ed25519: &keys.identity.ed25519,
                identity_signature: &keys.identity_signature,
                fallback: keys
                    .fallback_key
                    .as_ref()
                    .map(|f| (f.key_id.as_str(), f.key.as_str(), f.signature.as_str())),
                one_time_keys: &one_time,
                now_ms: unix_millis(),
                max_one_time_keys: i64::try_from(max).unwrap_or(i64::MAX),
            })
            .await?;
        match published {
            Published::Stored {
                one_time_keys,
                fallback_key,
            } => Ok(KeyStock {
                one_time_keys: u64::try_from(one_time_keys).unwrap_or(0),
                fallback_key,
            }),
            Published::IdentityChanged => Err(KeyError::IdentityChanged),
            Published::TooManyKeys { held } => Err(KeyError::TooManyKeys {
                max,
                held: u64::try_from(held).unwrap_or(0),
            }),
        }
    }

    /// The keys of the devices of `target` for a sender in `account`, claiming one one-time
    /// key per device if `claim` (`GET /v1/keys/{account_id}`); rate limited per asking
    /// account. A device left with few one-time keys is told so.
    pub async fn claim_keys(
        &self,
        account: &str,
        target: &str,
        claim: bool,
    ) -> Result<KeyBundles, KeyError> {
        if !valid_id(target) {
            return Err(KeyError::NoSuchAccount);
        }
        self.key_claims
            .take(account, 1)
            .map_err(KeyError::RateLimited)?;
        // Past the target's budget a claim takes no one-time key: the sender starts its
        // session from the fallback key, and the device keeps its one-time keys.
        let claim = claim && self.target_claims.check(target).is_ok();
        let claimed = self.db.claim_keys(target, claim).await?;
        // Only an empty answer needs telling "no keys yet" from "no such account".
        if claimed.is_empty() && self.db.devices(target).await?.is_empty() {
            return Err(KeyError::NoSuchAccount);
        }
        let low = i64::try_from(self.config.one_time_keys_low).unwrap_or(0);
        let mut devices = Vec::with_capacity(claimed.len());
        for ClaimedKeys {
            keys,
            one_time_key,
            left,
        } in claimed
        {
            let device = u32::try_from(keys.device_id).unwrap_or(0);
            if one_time_key.is_some() && left < low {
                let left = u64::try_from(left).unwrap_or(0);
                let frame = ServerFrame::KeysLow {
                    one_time_keys: left,
                };
                self.registry.ephemeral_to(target, device, &frame);
                let signal = Signal::KeysLow {
                    account: target.to_owned(),
                    device,
                    left,
                    node: self.node.clone(),
                };
                self.signal(target, &signal).await;
            }
            let fallback_key = match (
                keys.fallback_key_id,
                keys.fallback_key,
                keys.fallback_signature,
            ) {
                (Some(key_id), Some(key), Some(signature)) => Some(FallbackKey {
                    key_id,
                    key,
                    signature,
                }),
                _ => None,
            };
            devices.push(DeviceKeyBundle {
                device_id: device,
                login_key: STANDARD.encode(&keys.login_key),
                identity: OlmIdentity {
                    curve25519: keys.curve25519,
                    ed25519: keys.ed25519,
                },
                identity_signature: keys.identity_signature,
                one_time_key: one_time_key.map(|(key_id, key)| OneTimeKey { key_id, key }),
                fallback_key,
            });
        }
        Ok(KeyBundles {
            account_id: target.to_owned(),
            devices,
        })
    }
}
