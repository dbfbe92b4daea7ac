//! kube's `aesgcm` provider: AES-GCM with a random 12-byte nonce prepended and the store key as
//! additional authenticated data (a value moved to another key does not open). ring does the
//! cipher; it has AES-128 and AES-256 only, so 24-byte keys are refused.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};

use super::cipher::{random_bytes, KeyCipher, TransformError};

/// One AES-GCM key.
pub struct AesGcm {
    key: LessSafeKey,
}

impl AesGcm {
    /// A cipher for `key`, which must be 16 or 32 bytes long.
    pub fn new(key: &[u8]) -> Option<Self> {
        let algorithm = match key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return None,
        };
        UnboundKey::new(algorithm, key).ok().map(|k| Self { key: LessSafeKey::new(k) })
    }

    fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + self.key.algorithm().tag_len());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .expect("AES-GCM seals any value under 64 GiB");
        out.extend_from_slice(&body);
        out
    }
}

impl KeyCipher for AesGcm {
    fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(random_bytes(), plain, aad)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, TransformError> {
        if sealed.len() < NONCE_LEN {
            return Err(TransformError::TooShort);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| TransformError::TooShort)?;
        let mut body = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(aad), &mut body).map_err(|_| TransformError::Authentication)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn matches_the_gcm_spec_test_cases() {
        // McGrew & Viega's GCM test cases 2 (AES-128) and 14 (AES-256): zero key, IV, block.
        let sealed = AesGcm::new(&[0u8; 16]).unwrap().seal_with_nonce([0u8; 12], &[0u8; 16], b"");
        assert_eq!(sealed[12..], hex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf"));
        let sealed = AesGcm::new(&[0u8; 32]).unwrap().seal_with_nonce([0u8; 12], &[0u8; 16], b"");
        assert_eq!(sealed[12..], hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"));
    }

    #[test]
    fn round_trips_and_binds_the_store_key() {
        let c = AesGcm::new(&[9u8; 32]).unwrap();
        let sealed = c.seal(b"hunter2", b"/registry/core/secrets/default/a");
        assert_eq!(c.open(&sealed, b"/registry/core/secrets/default/a").unwrap(), b"hunter2");
        assert_eq!(c.open(&sealed, b"/registry/core/secrets/default/b"), Err(TransformError::Authentication));
        assert_eq!(
            AesGcm::new(&[8u8; 32]).unwrap().open(&sealed, b"/registry/core/secrets/default/a"),
            Err(TransformError::Authentication)
        );
        assert_eq!(c.open(&[1, 2, 3], b""), Err(TransformError::TooShort));
        assert!(AesGcm::new(&[0u8; 24]).is_none());
    }
}
