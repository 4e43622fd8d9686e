//! The format's behaviour: round trips in any chunking, determinism, random access, and a
//! distinct error for each kind of damage.

mod common;

use common::plaintext;
use sealpost_crypto::{
    CryptoError, DecryptingWriter, Decryptor, EncryptingReader, Encryptor, HEADER_LEN, Header,
    MediaKey, SEGMENT_SIZE, ciphertext_len, open, seal, span,
};
use std::io::{Read, Write};

/// Plaintext lengths around every boundary the format has.
const LENGTHS: [u64; 9] = [
    0,
    1,
    65_479,
    65_480,
    65_481,
    131_000,
    131_000 + 20,
    196_520,
    300_001,
];

/// Seals `data` pushing it in pieces of `step` bytes.
fn seal_in_pieces(key: &MediaKey, header: Header, data: &[u8], step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encryptor = Encryptor::new(key, header);
    for piece in data.chunks(step.max(1)) {
        encryptor.update(piece, &mut out);
    }
    encryptor.finish(&mut out);
    out
}

#[test]
fn any_chunking_seals_the_same_bytes_and_opens_back() {
    let key = MediaKey::generate();
    let header = Header::generate();
    for len in LENGTHS {
        let data = plaintext(len);
        let whole = seal(&key, header, &data);
        assert_eq!(whole.len() as u64, ciphertext_len(len));
        for step in [1_usize, 7, 4096, 65_480, 65_536, 1 << 20] {
            if len > 70_000 && step < 4096 {
                continue;
            }
            assert!(
                whole == seal_in_pieces(&key, header, &data, step),
                "len {len} step {step}"
            );
            let mut out = Vec::new();
            let mut decryptor = Decryptor::new(&key);
            for piece in whole.chunks(step) {
                decryptor.update(piece, &mut out).expect("update");
            }
            decryptor.finish(&mut out).expect("finish");
            assert!(out == data, "len {len} step {step}");
        }
    }
}

#[test]
fn the_io_adapters_stream_with_constant_memory() {
    let key = MediaKey::generate();
    let data = plaintext(1_000_000);
    let mut sealed = Vec::new();
    EncryptingReader::new(&data[..], &key, Header::generate())
        .read_to_end(&mut sealed)
        .expect("read");
    assert_eq!(sealed.len() as u64, ciphertext_len(1_000_000));
    let mut writer = DecryptingWriter::new(Vec::new(), Decryptor::new(&key));
    for piece in sealed.chunks(10_000) {
        writer.write_all(piece).expect("write");
    }
    assert!(writer.finish().expect("finish") == data);
}

#[test]
fn fresh_headers_make_different_ciphertexts_and_the_same_header_the_same() {
    let key = MediaKey::generate();
    let data = plaintext(1000);
    let header = Header::generate();
    assert_eq!(seal(&key, header, &data), seal(&key, header, &data));
    assert_ne!(
        seal(&key, header, &data),
        seal(&key, Header::generate(), &data)
    );
    assert_eq!(Header::parse(&header.to_bytes()), Ok(header));
}

#[test]
fn any_plaintext_range_decrypts_from_just_its_segments() {
    let key = MediaKey::generate();
    let header = Header::generate();
    let len = 300_001;
    let data = plaintext(len);
    let sealed = seal(&key, header, &data);
    let total = sealed.len() as u64;
    let parsed = Header::parse(&sealed[..40]).expect("header");
    assert_eq!(HEADER_LEN, 40);
    for (start, end) in [
        (0, 1),
        (0, len),
        (65_479, 65_481),
        (65_480, 65_481),
        (100_000, 250_000),
        (len - 1, len),
        (196_519, 196_521),
    ] {
        let s = span(start..end, len).expect("span");
        let fetched = &sealed[usize::try_from(s.ciphertext.start).expect("fits")
            ..usize::try_from(s.ciphertext.end).expect("fits")];
        let mut out = Vec::new();
        let mut decryptor = Decryptor::from_segment(&key, &parsed, s.first_segment, total);
        decryptor.update(fetched, &mut out).expect("update");
        decryptor.finish(&mut out).expect("finish");
        let skip = usize::try_from(s.skip).expect("fits");
        let take = usize::try_from(s.take).expect("fits");
        let start = usize::try_from(start).expect("fits");
        assert!(
            out[skip..skip + take] == data[start..start + take],
            "range {start}..{end}"
        );
        assert!(
            s.ciphertext.end - s.ciphertext.start <= 2 * SEGMENT_SIZE + (end - start as u64),
            "only the covering segments are fetched"
        );
    }
    assert!(span(5..5, len).is_err());
    assert!(span(0..len + 1, len).is_err());
}

#[test]
fn each_kind_of_damage_has_its_own_error() {
    let key = MediaKey::generate();
    let data = plaintext(4 * 65_520);
    let sealed = seal(&key, Header::generate(), &data);
    let seg = usize::try_from(SEGMENT_SIZE).expect("fits");

    // Truncation at a segment boundary or inside the header; with the expected length (which a
    // MediaRef gives), anywhere.
    for cut in [2 * seg, 20] {
        assert_eq!(
            open(&key, &sealed[..cut]),
            Err(CryptoError::Truncated),
            "cut at {cut}"
        );
    }
    for cut in [2 * seg, 2 * seg + 100, 20, sealed.len() - 1] {
        let mut decryptor = Decryptor::expecting(&key, sealed.len() as u64);
        let mut out = Vec::new();
        let result = decryptor
            .update(&sealed[..cut], &mut out)
            .and_then(|()| decryptor.finish(&mut out));
        assert_eq!(result, Err(CryptoError::Truncated), "cut at {cut}");
    }
    // Reordering: swap segments 1 and 2.
    let mut swapped = sealed.clone();
    swapped[seg..2 * seg].copy_from_slice(&sealed[2 * seg..3 * seg]);
    swapped[2 * seg..3 * seg].copy_from_slice(&sealed[seg..2 * seg]);
    assert_eq!(
        open(&key, &swapped),
        Err(CryptoError::Reordered {
            position: 1,
            found: 2
        })
    );
    // Segments after the last one (whose length leaves segment boundaries where they were).
    let aligned = seal(&key, Header::generate(), &plaintext(65_480 + 2 * 65_520));
    let mut appended = aligned.clone();
    appended.extend_from_slice(&aligned[seg..2 * seg]);
    assert_eq!(
        open(&key, &appended),
        Err(CryptoError::Reordered {
            position: 2,
            found: 2
        })
    );
    // A flipped bit in segment 2.
    let mut flipped = sealed.clone();
    flipped[2 * seg + 500] ^= 0x04;
    assert_eq!(
        open(&key, &flipped),
        Err(CryptoError::Corrupted { segment: 2 })
    );
    // Another key.
    assert_eq!(
        open(&MediaKey::generate(), &sealed),
        Err(CryptoError::WrongKey)
    );
    // Not this format at all.
    let mut foreign = sealed.clone();
    foreign[0] = 24;
    assert_eq!(open(&key, &foreign), Err(CryptoError::BadHeader));
    // The intact ciphertext still opens.
    assert!(open(&key, &sealed).expect("opens") == data);
}
