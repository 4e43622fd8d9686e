//! The test vectors in `fixtures/crypto/`: sealing each vector's plaintext with its key, salt
//! and nonce prefix reproduces its ciphertext byte for byte, and the ciphertext opens. Tink
//! opens the same files (`tests/interop/tink_interop.py open-vectors`), and sealpost opens
//! ciphertexts Tink sealed (`tink.rs`). `SEALPOST_WRITE_VECTORS=1` rewrites the files.

mod common;

use common::{fixtures, plaintext, vector_key, vectors};
use sealpost_crypto::{Header, open, seal};

#[test]
fn sealing_reproduces_every_vector_and_every_vector_opens() {
    let dir = fixtures();
    let write = std::env::var("SEALPOST_WRITE_VECTORS").as_deref() == Ok("1");
    for v in vectors() {
        let header = Header {
            salt: hex::decode(&v.salt)
                .expect("hex")
                .try_into()
                .expect("32 bytes"),
            nonce_prefix: hex::decode(&v.nonce_prefix)
                .expect("hex")
                .try_into()
                .expect("7 bytes"),
        };
        let key = vector_key(&v);
        let sealed = seal(&key, header, &plaintext(v.length));
        let path = dir.join(format!("{}.bin", v.name));
        if write {
            std::fs::write(&path, &sealed).expect("write vector");
        }
        let stored = std::fs::read(&path).expect("vector file");
        assert!(
            sealed == stored,
            "{}: sealing does not reproduce the vector",
            v.name
        );
        assert_eq!(
            sealpost_crypto::ciphertext_len(v.length),
            stored.len() as u64,
            "{}",
            v.name
        );
        assert!(
            open(&key, &stored).expect("opens") == plaintext(v.length),
            "{}",
            v.name
        );
    }
}
