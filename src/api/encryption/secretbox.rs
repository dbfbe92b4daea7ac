//! kube's `secretbox` provider: NaCl's secretbox (XSalsa20-Poly1305) with a random 24-byte
//! nonce prepended to the box (Poly1305 tag first, as NaCl and Go's `secretbox.Seal` write it);
//! 32-byte keys; no additional data, as in kube.

use crypto_secretbox::aead::generic_array::GenericArray;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;

use super::cipher::{random_bytes, KeyCipher, TransformError};

const NONCE_LEN: usize = 24;

/// One secretbox key.
pub struct Secretbox {
    cipher: XSalsa20Poly1305,
}

impl Secretbox {
    /// A cipher for `key`, which must be 32 bytes long.
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() == 32).then(|| Self { cipher: XSalsa20Poly1305::new(GenericArray::from_slice(key)) })
    }

    fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let sealed = self.cipher.encrypt(GenericArray::from_slice(&nonce), plain).expect("secretbox seals any value");
        [nonce.as_slice(), &sealed].concat()
    }
}

impl KeyCipher for Secretbox {
    fn seal(&self, plain: &[u8], _aad: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(random_bytes(), plain)
    }

    fn open(&self, sealed: &[u8], _aad: &[u8]) -> Result<Vec<u8>, TransformError> {
        if sealed.len() < NONCE_LEN {
            return Err(TransformError::TooShort);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(GenericArray::from_slice(nonce), body).map_err(|_| TransformError::SecretboxOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn matches_nacls_secretbox_vector() {
        // NaCl's tests/secretbox.c: key "firstkey", nonce "nonce"; the stream part of the box for
        // the first 32 bytes of its message (the tag covers the whole message, so it differs).
        let key = hex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389");
        let nonce: [u8; 24] = hex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37").try_into().unwrap();
        let sealed =
            Secretbox::new(&key).unwrap().seal_with_nonce(nonce, &hex("be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc"));
        assert_eq!(sealed[..24], nonce);
        assert_eq!(sealed[24 + 16..], hex("8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a"));
    }

    #[test]
    fn round_trips_and_refuses_other_keys() {
        let c = Secretbox::new(&[3u8; 32]).unwrap();
        let sealed = c.seal(b"hunter2", b"");
        assert_eq!(c.open(&sealed, b"").unwrap(), b"hunter2");
        assert_eq!(Secretbox::new(&[4u8; 32]).unwrap().open(&sealed, b""), Err(TransformError::SecretboxOpen));
        assert_eq!(c.open(&[0u8; 5], b""), Err(TransformError::TooShort));
        assert!(Secretbox::new(&[0u8; 16]).is_none());
    }
}
