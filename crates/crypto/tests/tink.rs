//! Ciphertexts sealed by Google Tink (Python) open here: the committed ones in
//! `fixtures/crypto/tink/`, or fresh ones from `SEALPOST_TINK_DIR`, which `scripts/test.sh` has
//! `tests/interop/tink_interop.py seal` write before running this.

mod common;

use common::{fixtures, plaintext, vector_key, vectors};

#[test]
fn ciphertexts_sealed_by_tink_open() {
    let dir = std::env::var_os("SEALPOST_TINK_DIR")
        .map_or_else(|| fixtures().join("tink"), std::path::PathBuf::from);
    let all = vectors();
    assert!(!all.is_empty());
    for v in all {
        let path = dir.join(format!("{}.tink.bin", v.name));
        let sealed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let opened = sealpost_crypto::open(&vector_key(&v), &sealed)
            .unwrap_or_else(|e| panic!("{}: Tink's ciphertext does not open: {e}", v.name));
        assert!(opened == plaintext(v.length), "{}: wrong plaintext", v.name);
    }
}
