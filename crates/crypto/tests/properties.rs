//! Properties of the format over random lengths, chunkings, ranges and damage.

use proptest::prelude::*;
use sealpost_crypto::{
    Decryptor, Encryptor, Header, MediaKey, ciphertext_len, open, resume_at, seal, span,
};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 241).unwrap_or(0) ^ seed)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// However the plaintext is cut into pieces, the ciphertext is the same and opens back,
    /// however the ciphertext is cut.
    #[test]
    fn pieces_never_change_the_ciphertext(
        len in 0usize..300_000,
        seed in any::<u8>(),
        cuts in proptest::collection::vec(1usize..100_000, 1..8),
    ) {
        let key = MediaKey::generate();
        let header = Header::generate();
        let plain = data(len, seed);
        let whole = seal(&key, header, &plain);
        prop_assert_eq!(whole.len() as u64, ciphertext_len(len as u64));
        let mut out = Vec::new();
        let mut encryptor = Encryptor::new(&key, header);
        let mut rest = &plain[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            encryptor.update(piece, &mut out);
            rest = tail;
        }
        encryptor.finish(&mut out);
        prop_assert!(out == whole);
        let mut opened = Vec::new();
        let mut decryptor = Decryptor::new(&key);
        let mut rest = &whole[..];
        for cut in cuts.iter().rev().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            decryptor.update(piece, &mut opened).expect("update");
            rest = tail;
        }
        decryptor.finish(&mut opened).expect("finish");
        prop_assert!(opened == plain);
    }

    /// Any plaintext range comes out of just the segments `span` names.
    #[test]
    fn any_range_opens_from_its_span(len in 1u64..300_000, a in any::<u64>(), b in any::<u64>()) {
        let key = MediaKey::generate();
        let header = Header::generate();
        let plain = data(usize::try_from(len).expect("fits"), 3);
        let sealed = seal(&key, header, &plain);
        let (start, end) = (a % len, b % len);
        let (start, end) = (start.min(end), start.max(end) + 1);
        let s = span(start..end, len).expect("span");
        let lo = usize::try_from(s.ciphertext.start).expect("fits");
        let hi = usize::try_from(s.ciphertext.end).expect("fits");
        let mut out = Vec::new();
        let mut decryptor = Decryptor::from_segment(&key, &header, s.first_segment, sealed.len() as u64);
        decryptor.update(&sealed[lo..hi], &mut out).expect("update");
        decryptor.finish(&mut out).expect("finish");
        let skip = usize::try_from(s.skip).expect("fits");
        let take = usize::try_from(s.take).expect("fits");
        let start = usize::try_from(start).expect("fits");
        prop_assert!(out[skip..skip + take] == plain[start..start + take]);
    }

    /// Resuming at any ciphertext offset reproduces the rest of the ciphertext exactly (what a
    /// resumed upload sends).
    #[test]
    fn resuming_anywhere_reproduces_the_rest(len in 0u64..300_000, at in any::<u64>()) {
        let key = MediaKey::generate();
        let header = Header::generate();
        let plain = data(usize::try_from(len).expect("fits"), 5);
        let whole = seal(&key, header, &plain);
        let offset = at % whole.len() as u64;
        let resume = resume_at(offset);
        let mut out = Vec::new();
        let mut encryptor = Encryptor::resume(&key, header, &resume);
        let from = usize::try_from(resume.plaintext_offset).expect("fits").min(plain.len());
        encryptor.update(&plain[from..], &mut out);
        encryptor.finish(&mut out);
        let skip = usize::try_from(resume.skip).expect("fits");
        let offset = usize::try_from(offset).expect("fits");
        prop_assert!(out[skip..] == whole[offset..], "offset {}", offset);
    }

    /// No single flipped bit anywhere yields plaintext.
    #[test]
    fn any_flipped_bit_is_detected(len in 0usize..200_000, at in any::<usize>(), bit in 0u8..8) {
        let key = MediaKey::generate();
        let mut sealed = seal(&key, Header::generate(), &data(len, 9));
        let at = at % sealed.len();
        sealed[at] ^= 1 << bit;
        prop_assert!(open(&key, &sealed).is_err());
    }
}
