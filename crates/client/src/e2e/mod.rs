//! End-to-end encryption of messages (docs/e2e.md): this device's Olm account and its sessions
//! with other devices, kept in one file encrypted under a key derived from the device's login
//! key. [`E2e::encrypt`] makes one envelope per recipient device, starting a session from the
//! key directory where there is none; [`E2e::decrypt`] opens what arrives, checking that a new
//! session comes from the identity the sending device published. Groups use Megolm
//! (`group.rs`): one group session per sender, its key shared over Olm.
//! [`E2e::open_message`] opens a stored message of either kind, and opens it again when the
//! inbox delivers it again.

mod group;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use reqwest::Method;
use sealpost_crypto::{Header, MediaKey};
use sealpost_proto::{
    DeviceKeyBundle, Envelope, FallbackKey, KeyBundles, KeyStock, OlmIdentity, OneTimeKey,
    PublishKeys, fallback_binding, identity_binding, key_bytes,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vodozemac::olm::{Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionPickle};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use crate::{Client, ClientError, Content, Stored};

/// One-time keys this device keeps published.
const ONE_TIME_KEYS: usize = 50;
/// Sessions kept per peer device (a new one from the peer does not end the older at once).
const SESSIONS_PER_DEVICE: usize = 4;
/// The version of the envelope body and of the saved state.
const VERSION: u32 = 1;
/// One-to-one messages whose plaintext is kept (sealed) to open a redelivered copy again.
const OPENED_KEPT: usize = 64;
/// The most plaintext bytes kept for that.
const OPENED_BYTES: usize = 1 << 20;

/// What an envelope's body holds: one Olm message.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    v: u32,
    /// 0: a pre-key message (starts a session), 1: a normal one.
    #[serde(rename = "type")]
    kind: usize,
    /// The Olm message, standard base64.
    body: String,
}

/// What is saved: the account and sessions as encrypted pickles, and the peers' identities.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    v: u32,
    account: String,
    /// Per peer device (`account/device`), newest first.
    sessions: BTreeMap<String, Vec<String>>,
    /// Per peer device, the Curve25519 identity it published (checked against its login key).
    identities: BTreeMap<String, String>,
    /// One-time keys the server held at the last publish.
    published: usize,
    /// This device's Megolm session per group.
    #[serde(default)]
    outbound: BTreeMap<String, group::SavedOutbound>,
    /// Other devices' Megolm sessions, per `account/device/session id`.
    #[serde(default)]
    inbound: BTreeMap<String, group::SavedInbound>,
    /// The last one-to-one messages opened, oldest first: `account/device/server id` and the
    /// plaintext, sealed under a key derived from the login key (base64).
    #[serde(default)]
    opened: VecDeque<(String, String)>,
}

/// This device's end-to-end state. One process at a time holds it (a lock file next to it):
/// two holders could each advance the same ratchet and overwrite the other's state.
pub struct E2e {
    path: PathBuf,
    /// Locked while this value lives.
    _lock: std::fs::File,
    pickle_key: [u8; 32],
    opened_key: MediaKey,
    account_id: String,
    device_id: u32,
    login: SigningKey,
    account: Account,
    sessions: HashMap<String, Vec<Session>>,
    identities: BTreeMap<String, String>,
    published: usize,
    outbound: BTreeMap<String, group::Outbound>,
    inbound: BTreeMap<String, group::Inbound>,
    opened: VecDeque<(String, String)>,
}

impl std::fmt::Debug for E2e {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2e")
            .field("account_id", &self.account_id)
            .field("device_id", &self.device_id)
            .field("peers", &self.sessions.len())
            .field("groups", &self.outbound.len())
            .finish_non_exhaustive()
    }
}

fn peer(account: &str, device: u32) -> String {
    format!("{account}/{device}")
}

fn failed(what: impl Into<String>) -> ClientError {
    ClientError::E2e(what.into())
}

impl E2e {
    /// Opens (or creates) the state of device `device_id` of `account_id` in `dir`; `login`
    /// is the device's login key, from which the key that encrypts the state is derived.
    ///
    /// # Errors
    /// [`ClientError::StateInUse`] while another process holds it; the state cannot be read,
    /// or does not open with this key.
    pub fn open(
        dir: &Path,
        account_id: &str,
        device_id: u32,
        login: &SigningKey,
    ) -> Result<Self, ClientError> {
        let path = dir.join(format!("e2e-{account_id}-{device_id}.json"));
        std::fs::create_dir_all(dir)?;
        let lock = crate::state::private_options()
            .create(true)
            .truncate(false)
            .open(path.with_extension("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ClientError::StateInUse(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let derive = |purpose: &str| {
            let mut key = [0u8; 32];
            hkdf::Hkdf::<Sha256>::new(None, login.as_bytes())
                .expand(
                    format!("sealpost-e2e-{purpose}-v1:{account_id}:{device_id}").as_bytes(),
                    &mut key,
                )
                .map_err(|_| failed("cannot derive the state key"))?;
            Ok::<_, ClientError>(key)
        };
        let pickle_key = derive("state")?;
        let opened_key = MediaKey::from_bytes(derive("opened")?);
        let mut e2e = Self {
            path,
            _lock: lock,
            pickle_key,
            opened_key,
            account_id: account_id.to_owned(),
            device_id,
            login: login.clone(),
            account: Account::new(),
            sessions: HashMap::new(),
            identities: BTreeMap::new(),
            published: 0,
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            opened: VecDeque::new(),
        };
        match std::fs::read(&e2e.path) {
            Ok(bytes) => e2e.load(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => e2e.save()?,
            Err(e) => return Err(e.into()),
        }
        Ok(e2e)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let saved: Saved = serde_json::from_slice(bytes)
            .map_err(|e| failed(format!("{}: {e}", self.path.display())))?;
        if saved.v != VERSION {
            return Err(failed(format!(
                "{}: state version {} is not {VERSION}",
                self.path.display(),
                saved.v
            )));
        }
        let key = &self.pickle_key;
        let unreadable = |_| {
            failed(format!(
                "{} does not open with this device's key",
                self.path.display()
            ))
        };
        self.account = Account::from_pickle(
            AccountPickle::from_encrypted(&saved.account, key).map_err(unreadable)?,
        );
        for (peer, pickles) in saved.sessions {
            let sessions = pickles
                .iter()
                .map(|p| SessionPickle::from_encrypted(p, key).map(Session::from_pickle))
                .collect::<Result<Vec<_>, _>>()
                .map_err(unreadable)?;
            self.sessions.insert(peer, sessions);
        }
        self.identities = saved.identities;
        self.published = saved.published;
        self.outbound = group::load_outbound(saved.outbound, key).map_err(unreadable)?;
        self.inbound = group::load_inbound(saved.inbound, key).map_err(unreadable)?;
        self.opened = saved.opened;
        Ok(())
    }

    /// Writes the state (atomically, readable by the owner only).
    fn save(&self) -> Result<(), ClientError> {
        let key = &self.pickle_key;
        let saved = Saved {
            v: VERSION,
            account: self.account.pickle().encrypt(key),
            sessions: self
                .sessions
                .iter()
                .map(|(peer, sessions)| {
                    (
                        peer.clone(),
                        sessions.iter().map(|s| s.pickle().encrypt(key)).collect(),
                    )
                })
                .collect(),
            identities: self.identities.clone(),
            published: self.published,
            outbound: group::save_outbound(&self.outbound, key),
            inbound: group::save_inbound(&self.inbound, key),
            opened: self.opened.clone(),
        };
        Ok(crate::write_private_json(&self.path, &saved)?)
    }

    /// This device's Olm identity.
    pub fn identity(&self) -> OlmIdentity {
        OlmIdentity {
            curve25519: self.account.curve25519_key().to_base64(),
            ed25519: self.account.ed25519_key().to_base64(),
        }
    }

    /// Publishes this device's identity and tops its one-time keys up to 50 (and its fallback
    /// key, once); `held` is what the server holds now (from `keys_low`), or `None` to trust
    /// the count of the last publish.
    ///
    /// # Errors
    /// The server refused the keys, or the state cannot be saved.
    pub async fn publish(
        &mut self,
        client: &Client,
        held: Option<u64>,
    ) -> Result<KeyStock, ClientError> {
        let held = held.map_or(self.published, |h| usize::try_from(h).unwrap_or(usize::MAX));
        self.account
            .generate_one_time_keys(ONE_TIME_KEYS.saturating_sub(held));
        if self.account.fallback_key().is_empty() && self.published == 0 {
            self.account.generate_fallback_key();
        }
        let fallback_key = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| {
                let (key_id, key) = (id.to_base64(), key.to_base64());
                let signature = self
                    .account
                    .sign(fallback_binding(&key_id, &key))
                    .to_base64();
                FallbackKey {
                    key_id,
                    key,
                    signature,
                }
            });
        let identity = self.identity();
        let binding = identity_binding(&self.account_id, self.device_id, &identity);
        let request = PublishKeys {
            identity_signature: STANDARD.encode(self.login.sign(binding.as_bytes()).to_bytes()),
            identity,
            fallback_key,
            one_time_keys: self
                .account
                .one_time_keys()
                .into_iter()
                .map(|(id, key)| OneTimeKey {
                    key_id: id.to_base64(),
                    key: key.to_base64(),
                })
                .collect(),
        };
        let stock: KeyStock = client.call(Method::PUT, "/v1/keys", Some(&request)).await?;
        self.account.mark_keys_as_published();
        self.published = usize::try_from(stock.one_time_keys).unwrap_or(usize::MAX);
        self.save()?;
        Ok(stock)
    }

    /// Encrypts `plaintext` for `devices` of `to` (this device is skipped), one envelope
    /// each, starting a session from the key directory with each device this device has
    /// none with.
    ///
    /// # Errors
    /// A device has published no keys, its keys do not check out, or the directory cannot be
    /// reached.
    pub async fn encrypt(
        &mut self,
        client: &Client,
        to: &str,
        devices: &[u32],
        plaintext: &[u8],
    ) -> Result<Vec<Envelope>, ClientError> {
        let sealed = self.seal_for(client, to, devices, plaintext).await?;
        self.save()?;
        sealed
            .into_iter()
            .map(|(device_id, sealed)| {
                Ok(Envelope {
                    device_id,
                    body: sealed.to_body()?,
                })
            })
            .collect()
    }

    /// One Olm message of `plaintext` for each of `devices` of `to` (this device skipped);
    /// the caller saves the state.
    async fn seal_for(
        &mut self,
        client: &Client,
        to: &str,
        devices: &[u32],
        plaintext: &[u8],
    ) -> Result<Vec<(u32, Sealed)>, ClientError> {
        let devices: Vec<u32> = devices
            .iter()
            .copied()
            .filter(|&d| !(to == self.account_id && d == self.device_id))
            .collect();
        let missing: Vec<u32> = devices
            .iter()
            .copied()
            .filter(|&d| self.sessions.get(&peer(to, d)).is_none_or(Vec::is_empty))
            .collect();
        if !missing.is_empty() {
            let bundles = fetch_keys(client, to, true).await?;
            for device in &missing {
                let bundle = bundles
                    .devices
                    .iter()
                    .find(|b| b.device_id == *device)
                    .ok_or_else(|| {
                        failed(format!("device {device} of {to} has published no keys yet"))
                    })?;
                let session = self.outbound(to, bundle)?;
                self.sessions.insert(peer(to, *device), vec![session]);
            }
        }
        let mut sealed = Vec::with_capacity(devices.len());
        for device in devices {
            let session = self
                .sessions
                .get_mut(&peer(to, device))
                .and_then(|s| s.first_mut())
                .ok_or_else(|| failed("no session"))?;
            let message = session
                .encrypt(plaintext)
                .map_err(|e| failed(format!("cannot encrypt: {e}")))?;
            let (kind, body) = message.to_parts();
            sealed.push((
                device,
                Sealed {
                    v: VERSION,
                    kind,
                    body: STANDARD.encode(body),
                },
            ));
        }
        Ok(sealed)
    }

    /// A session with a device, from its keys in the directory, after checking them.
    fn outbound(&mut self, to: &str, bundle: &DeviceKeyBundle) -> Result<Session, ClientError> {
        let identity = self.checked_identity(to, bundle)?;
        let one_time_key = match (&bundle.one_time_key, &bundle.fallback_key) {
            (Some(otk), _) => otk.key.clone(),
            (None, Some(fallback)) => {
                let signing = Ed25519PublicKey::from_base64(&bundle.identity.ed25519)
                    .map_err(|_| failed("a device's Ed25519 key is malformed"))?;
                let signature = Ed25519Signature::from_base64(&fallback.signature)
                    .map_err(|_| failed("a fallback key's signature is malformed"))?;
                signing
                    .verify(
                        fallback_binding(&fallback.key_id, &fallback.key).as_bytes(),
                        &signature,
                    )
                    .map_err(|_| failed("a fallback key's signature does not verify"))?;
                fallback.key.clone()
            }
            (None, None) => {
                return Err(failed(format!(
                    "device {} of {to} has no one-time or fallback key left",
                    bundle.device_id
                )));
            }
        };
        let one_time_key = Curve25519PublicKey::from_base64(&one_time_key)
            .map_err(|_| failed("a one-time key is malformed"))?;
        self.account
            .create_outbound_session(SessionConfig::version_1(), identity, one_time_key)
            .map_err(|e| failed(format!("cannot start a session: {e}")))
    }

    /// A device's Curve25519 identity, checked: signed by its login key, and the same as the
    /// one seen before.
    fn checked_identity(
        &mut self,
        account: &str,
        bundle: &DeviceKeyBundle,
    ) -> Result<Curve25519PublicKey, ClientError> {
        let who = format!("device {} of {account}", bundle.device_id);
        let login = key_bytes::<32>(&bundle.login_key)
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| failed(format!("{who}: its login key is malformed")))?;
        let signature = key_bytes::<64>(&bundle.identity_signature)
            .ok_or_else(|| failed(format!("{who}: its identity signature is malformed")))?;
        login
            .verify_strict(
                identity_binding(account, bundle.device_id, &bundle.identity).as_bytes(),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| {
                failed(format!(
                    "{who}: its identity is not signed by its login key"
                ))
            })?;
        let key = key_bytes::<32>(&bundle.identity.curve25519)
            .map(Curve25519PublicKey::from_bytes)
            .ok_or_else(|| failed(format!("{who}: its identity key is malformed")))?;
        // Kept (and compared) in vodozemac's form, whichever form the device published.
        let known = self
            .identities
            .entry(peer(account, bundle.device_id))
            .or_insert_with(|| key.to_base64());
        if *known != key.to_base64() {
            return Err(failed(format!("{who} shows another identity than before")));
        }
        Ok(key)
    }

    /// Opens a stored message (one-to-one or in a group) from the device that sent it. A copy
    /// delivered again (the inbox hands a message over until it is acknowledged, so a crash
    /// between opening and acknowledging brings it back) opens again: Olm keys are single-use,
    /// so the plaintexts of the last 64 one-to-one messages are kept for this, sealed under a
    /// key derived from the login key.
    ///
    /// # Errors
    /// Not a message, or as [`E2e::decrypt`] and [`E2e::decrypt_group`].
    pub async fn open_message(
        &mut self,
        client: &Client,
        stored: &Stored,
    ) -> Result<Vec<u8>, ClientError> {
        let Content::Message { group, body } = &stored.content else {
            return Err(failed("not a message"));
        };
        let from = &stored.from;
        if let Some(group) = group {
            return self
                .decrypt_group(
                    client,
                    &from.account_id,
                    from.device_id,
                    group,
                    &stored.server_id,
                    body,
                )
                .await;
        }
        let id = format!(
            "{}/{}",
            peer(&from.account_id, from.device_id),
            stored.server_id
        );
        if let Some((_, sealed)) = self.opened.iter().find(|(seen, _)| *seen == id) {
            let bytes = STANDARD
                .decode(sealed)
                .map_err(|_| failed("a kept plaintext is damaged"))?;
            return sealpost_crypto::open(&self.opened_key, &bytes)
                .map_err(|e| failed(format!("a kept plaintext does not open: {e}")));
        }
        let sealed: Sealed = serde_json::from_slice(body)
            .map_err(|_| failed("not an end-to-end encrypted message"))?;
        let plaintext = self
            .open_olm(client, &from.account_id, from.device_id, &sealed)
            .await?;
        let kept = sealpost_crypto::seal(&self.opened_key, Header::generate(), &plaintext);
        self.opened.push_back((id, STANDARD.encode(kept)));
        while self.opened.len() > OPENED_KEPT
            || self.opened.iter().map(|(_, p)| p.len()).sum::<usize>() > OPENED_BYTES
        {
            self.opened.pop_front();
        }
        self.save()?;
        Ok(plaintext)
    }

    /// Decrypts a body from device `from_device` of `from`.
    ///
    /// # Errors
    /// The body is not an Olm message for this device, it does not decrypt, or a new
    /// session's identity is not the one the sending device published.
    pub async fn decrypt(
        &mut self,
        client: &Client,
        from: &str,
        from_device: u32,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let sealed: Sealed = serde_json::from_slice(body)
            .map_err(|_| failed("not an end-to-end encrypted message"))?;
        let plaintext = self.open_olm(client, from, from_device, &sealed).await?;
        self.save()?;
        Ok(plaintext)
    }

    /// Decrypts one Olm message from device `from_device` of `from`; the caller saves the
    /// state.
    async fn open_olm(
        &mut self,
        client: &Client,
        from: &str,
        from_device: u32,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, ClientError> {
        let bytes = sealpost_proto::BASE64
            .decode(&sealed.body)
            .map_err(|_| failed("the Olm message is not standard base64"))?;
        let message = OlmMessage::from_parts(sealed.kind, &bytes)
            .map_err(|e| failed(format!("a damaged message: {e}")))?;
        let key = peer(from, from_device);
        let sessions = self.sessions.entry(key.clone()).or_default();
        for i in 0..sessions.len() {
            if let Ok(plaintext) = sessions[i].decrypt(&message) {
                let session = sessions.remove(i);
                sessions.insert(0, session);
                return Ok(plaintext);
            }
        }
        let OlmMessage::PreKey(pre_key) = message else {
            return Err(failed(format!(
                "a message from device {from_device} of {from} does not decrypt with any session"
            )));
        };
        let known = match self.identities.get(&key) {
            Some(known) => known.clone(),
            None => {
                let bundles = fetch_keys(client, from, false).await?;
                let bundle = bundles
                    .devices
                    .iter()
                    .find(|b| b.device_id == from_device)
                    .ok_or_else(|| {
                        failed(format!(
                            "device {from_device} of {from} has published no keys"
                        ))
                    })?;
                self.checked_identity(from, bundle)?.to_base64()
            }
        };
        if pre_key.identity_key().to_base64() != known {
            return Err(failed(format!(
                "a session offered in the name of device {from_device} of {from} comes from another identity"
            )));
        }
        // A fallback key outlives its first use: the message that started a session this device
        // holds, come again, must not start a second one.
        let session_id = pre_key.session_id();
        if self
            .sessions
            .get(&key)
            .is_some_and(|s| s.iter().any(|s| s.session_id() == session_id))
        {
            return Err(failed(format!(
                "a message from device {from_device} of {from} came again (it opened before)"
            )));
        }
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), pre_key.identity_key(), &pre_key)
            .map_err(|e| failed(format!("cannot open a new session: {e}")))?;
        let sessions = self.sessions.entry(key).or_default();
        sessions.insert(0, created.session);
        sessions.truncate(SESSIONS_PER_DEVICE);
        self.published = self.published.saturating_sub(1);
        Ok(created.plaintext)
    }
}

impl Sealed {
    /// The envelope body: standard base64 of this JSON.
    fn to_body(&self) -> Result<String, ClientError> {
        let json = serde_json::to_vec(self).map_err(|e| failed(e.to_string()))?;
        Ok(STANDARD.encode(json))
    }
}

/// The key directory's entry for `account`, claiming one-time keys if `claim`.
async fn fetch_keys(
    client: &Client,
    account: &str,
    claim: bool,
) -> Result<KeyBundles, ClientError> {
    let path = format!("/v1/keys/{account}?claim={claim}");
    client.call(Method::GET, &path, None::<&()>).await
}
