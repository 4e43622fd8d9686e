//! Signed download links: `?expires=UNIX&kid=KEY&sig=SIG` on a blob's URL, where `SIG` is the
//! unpadded base64url HMAC-SHA256, under the key named `KEY`, of
//! `sealpost-link-v1\n{blob_id}\n{expires}\n{kid}`. Several keys verify at once, so keys rotate
//! without breaking live links; the first signs.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

/// Shortest accepted signing secret, in bytes.
const MIN_SECRET: usize = 32;
/// The key id of the key generated in the data directory when none is configured.
const LOCAL_KID: &str = "local";

/// A signed link's query parameters: all three, or none (and a bearer token instead).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkParams {
    /// Signed link: Unix seconds it expires at.
    pub expires: Option<String>,
    /// Signed link: the signing key's id.
    pub kid: Option<String>,
    /// Signed link: the base64url HMAC-SHA256 signature.
    pub sig: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LinkParams {
    type Rejection = crate::error::ApiError;

    /// A query that is not a well-formed link (a parameter twice, say) is an invalid link.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Self>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(params)| params)
            .map_err(|_| crate::error::ApiError::LinkInvalid)
    }
}

impl LinkParams {
    /// Whether the request carries (any part of) a link.
    pub fn present(&self) -> bool {
        self.expires.is_some() || self.kid.is_some() || self.sig.is_some()
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Incomplete, altered, forged, or signed by a key no longer accepted.
    Invalid,
    /// Genuine but past its expiry.
    Expired,
}

/// The keys that sign and verify links.
pub struct LinkKeys {
    /// `(kid, secret)`; the first signs.
    keys: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("LinkKeys").field("kids", &kids).finish()
    }
}

impl LinkKeys {
    /// Parses `KID:BASE64_SECRET` entries (the first signs). With none, uses the key in
    /// `data_dir/link-key`, creating it (mode 0600) on first use: enough for one node; nodes
    /// behind one load balancer must share configured keys.
    pub fn load(entries: &[Secret], data_dir: &Path) -> anyhow::Result<Self> {
        if entries.is_empty() {
            return Ok(Self {
                keys: vec![(LOCAL_KID.to_owned(), local_secret(data_dir)?)],
            });
        }
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in entries {
            let (kid, secret) = entry.expose().split_once(':').with_context(
                || "each link key must be KID:BASE64_SECRET (the secret itself is not shown)",
            )?;
            anyhow::ensure!(
                valid_kid(kid),
                "link key id {kid:?} must be 1 to 32 ASCII letters, digits, '-' or '_'"
            );
            anyhow::ensure!(
                keys.iter().all(|(k, _)| k != kid),
                "link key id {kid:?} is listed twice"
            );
            let secret = [STANDARD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(secret.trim()).ok())
                .with_context(|| format!("the secret of link key {kid:?} is not base64"))?;
            anyhow::ensure!(
                secret.len() >= MIN_SECRET,
                "the secret of link key {kid:?} has {} bytes; it needs at least {MIN_SECRET} \
                 (e.g. `openssl rand -base64 32`)",
                secret.len()
            );
            keys.push((kid.to_owned(), secret));
        }
        Ok(Self { keys })
    }

    /// Signs a link to `blob` that expires at `expires` (Unix seconds): `(kid, sig)`.
    pub fn sign(&self, blob: &str, expires: i64) -> (String, String) {
        let (kid, secret) = &self.keys[0];
        let tag = mac(secret, blob, expires, kid).finalize().into_bytes();
        (kid.clone(), URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks a link to `blob` at time `now`: signature first (so that a forger learns
    /// nothing), then expiry. Returns the link's expiry (Unix seconds).
    pub fn verify(&self, blob: &str, params: &LinkParams, now: i64) -> Result<i64, LinkRefusal> {
        let (Some(raw), Some(kid), Some(sig)) = (&params.expires, &params.kid, &params.sig) else {
            return Err(LinkRefusal::Invalid);
        };
        // Only the canonical spelling (no sign, no leading zeros): one signature, one URL, so
        // that caches keyed by URL see one link as one link.
        let expires: i64 = raw.parse().map_err(|_| LinkRefusal::Invalid)?;
        if *raw != expires.to_string() {
            return Err(LinkRefusal::Invalid);
        }
        let (_, secret) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or(LinkRefusal::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| LinkRefusal::Invalid)?;
        mac(secret, blob, expires, kid)
            .verify_slice(&sig)
            .map_err(|_| LinkRefusal::Invalid)?;
        if expires <= now {
            return Err(LinkRefusal::Expired);
        }
        Ok(expires)
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=32).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(secret: &[u8], blob: &str, expires: i64, kid: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("sealpost-link-v1\n{blob}\n{expires}\n{kid}").as_bytes());
    mac
}

/// The generated key in the data directory, created on first use.
fn local_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("link-key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = STANDARD
                .decode(text.trim())
                .with_context(|| format!("{} is not base64", path.display()))?;
            anyhow::ensure!(
                secret.len() >= MIN_SECRET,
                "{} holds a key shorter than {MIN_SECRET} bytes",
                path.display()
            );
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            write_private(&path, STANDARD.encode(secret).as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a link-signing key");
            Ok(secret.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates `path` with `bytes`, readable by its owner only; fails if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &[&str]) -> LinkKeys {
        let entries: Vec<Secret> = entries.iter().map(|e| (*e).into()).collect();
        LinkKeys::load(&entries, Path::new("/nonexistent")).expect("keys")
    }

    const K1: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const K2: &str = "k2:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    fn params(expires: i64, kid: &str, sig: &str) -> LinkParams {
        LinkParams {
            expires: Some(expires.to_string()),
            kid: Some(kid.to_owned()),
            sig: Some(sig.to_owned()),
        }
    }

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_blob() {
        let keys = keys(&[K1]);
        let (kid, sig) = keys.sign("ab", 100);
        assert_eq!(kid, "k1");
        assert_eq!(keys.verify("ab", &params(100, &kid, &sig), 99), Ok(100));
        let padded = LinkParams {
            expires: Some("0100".into()),
            ..params(100, &kid, &sig)
        };
        assert_eq!(keys.verify("ab", &padded, 99), Err(LinkRefusal::Invalid));
        assert_eq!(
            keys.verify("ab", &params(100, &kid, &sig), 100),
            Err(LinkRefusal::Expired)
        );
        for (blob, p) in [
            ("cd", params(100, &kid, &sig)),
            ("ab", params(101, &kid, &sig)),
            ("ab", params(100, "k2", &sig)),
            ("ab", params(100, &kid, "AAAA")),
            ("ab", params(100, &kid, "%%%")),
            ("ab", LinkParams::default()),
        ] {
            assert_eq!(keys.verify(blob, &p, 0), Err(LinkRefusal::Invalid), "{p:?}");
        }
    }

    #[test]
    fn rotation_keeps_old_links_valid_and_the_first_key_signs() {
        let old = keys(&[K1]);
        let (kid, sig) = old.sign("ab", 100);
        let rotated = keys(&[K2, K1]);
        assert_eq!(rotated.verify("ab", &params(100, &kid, &sig), 0), Ok(100));
        assert_eq!(rotated.sign("ab", 100).0, "k2");
        let retired = keys(&[K2]);
        assert_eq!(
            retired.verify("ab", &params(100, &kid, &sig), 0),
            Err(LinkRefusal::Invalid)
        );
    }

    #[test]
    fn bad_key_entries_are_refused_without_echoing_secrets() {
        for entry in ["nokid", "k1:short", "bad kid:AAAA", "k1:***"] {
            let err = LinkKeys::load(&[(*entry).into()], Path::new("/x"))
                .expect_err(entry)
                .to_string();
            assert!(!err.contains("short") && !err.contains("***"), "{err}");
        }
        assert!(LinkKeys::load(&[K1.into(), K1.into()], Path::new("/x")).is_err());
    }

    #[test]
    fn the_local_key_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LinkKeys::load(&[], dir.path()).expect("create");
        let b = LinkKeys::load(&[], dir.path()).expect("reuse");
        assert_eq!(a.sign("ab", 1), b.sign("ab", 1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("link-key"))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
