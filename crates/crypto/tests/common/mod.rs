//! Shared by the format tests: the vectors in `fixtures/crypto/vectors.json` and their
//! plaintext.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use sealpost_crypto::MediaKey;

/// One vector: a key, a header's values and a plaintext length; its ciphertext is
/// `fixtures/crypto/<name>.bin`.
#[derive(Debug, serde::Deserialize)]
pub struct Vector {
    pub name: String,
    pub key: String,
    pub salt: String,
    pub nonce_prefix: String,
    pub length: u64,
}

#[derive(serde::Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/crypto")
}

pub fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(fixtures().join("vectors.json")).expect("vectors.json");
    serde_json::from_str::<File>(&text)
        .expect("vectors")
        .vectors
}

pub fn vector_key(v: &Vector) -> MediaKey {
    MediaKey::from_bytes(
        hex::decode(&v.key)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    )
}

/// The vectors' plaintext: byte i is (31 i + 7) mod 251.
pub fn plaintext(len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((31 * i + 7) % 251).unwrap_or(0))
        .collect()
}
