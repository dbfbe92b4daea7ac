//! kube's `aescbc` provider: AES-CBC with PKCS#7 padding, a random 16-byte IV prepended to the
//! ciphertext; keys of 16, 24 or 32 bytes. Not authenticated (as in kube); k3s's default.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::cipher::{random_bytes, KeyCipher, TransformError};

const BLOCK: usize = 16;

/// One AES-CBC key.
pub struct AesCbc {
    key: Vec<u8>,
}

impl AesCbc {
    /// A cipher for `key`, which must be 16, 24 or 32 bytes long.
    pub fn new(key: &[u8]) -> Option<Self> {
        matches!(key.len(), 16 | 24 | 32).then(|| Self { key: key.to_vec() })
    }

    /// `iv` followed by the padded plaintext encrypted under `iv`.
    fn seal_with_iv(&self, iv: [u8; BLOCK], plain: &[u8]) -> Vec<u8> {
        let pad = BLOCK - plain.len() % BLOCK;
        let mut out = Vec::with_capacity(BLOCK + plain.len() + pad);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plain);
        out.resize(BLOCK + plain.len() + pad, pad as u8);
        let body = &mut out[BLOCK..];
        let len = body.len();
        let done =
            match self.key.len() {
                16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&self.key, &iv)
                    .map(|c| c.encrypt_padded_mut::<NoPadding>(body, len).is_ok()),
                24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&self.key, &iv)
                    .map(|c| c.encrypt_padded_mut::<NoPadding>(body, len).is_ok()),
                _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.key, &iv)
                    .map(|c| c.encrypt_padded_mut::<NoPadding>(body, len).is_ok()),
            };
        assert_eq!(done, Ok(true), "key length checked in new, body padded to whole blocks");
        out
    }
}

impl KeyCipher for AesCbc {
    fn seal(&self, plain: &[u8], _aad: &[u8]) -> Vec<u8> {
        self.seal_with_iv(random_bytes(), plain)
    }

    fn open(&self, sealed: &[u8], _aad: &[u8]) -> Result<Vec<u8>, TransformError> {
        if sealed.len() < BLOCK {
            return Err(TransformError::TooShort);
        }
        let (iv, body) = sealed.split_at(BLOCK);
        if body.len() % BLOCK != 0 {
            return Err(TransformError::NotWholeBlocks);
        }
        let mut out = body.to_vec();
        let ok = match self.key.len() {
            16 => {
                cbc::Decryptor::<aes::Aes128>::new_from_slices(&self.key, iv).map(|c| c.decrypt_padded_mut::<NoPadding>(&mut out).is_ok())
            }
            24 => {
                cbc::Decryptor::<aes::Aes192>::new_from_slices(&self.key, iv).map(|c| c.decrypt_padded_mut::<NoPadding>(&mut out).is_ok())
            }
            _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.key, iv).map(|c| c.decrypt_padded_mut::<NoPadding>(&mut out).is_ok()),
        };
        assert_eq!(ok, Ok(true), "key and IV lengths checked, body is whole blocks");
        unpad(out)
    }
}

/// Strips PKCS#7 padding as kube checks it.
fn unpad(mut data: Vec<u8>) -> Result<Vec<u8>, TransformError> {
    let pad = *data.last().ok_or(TransformError::Pkcs7Data)? as usize;
    if pad == 0 || pad > data.len() {
        return Err(TransformError::Pkcs7Data);
    }
    let keep = data.len() - pad;
    if data[keep..].iter().any(|b| *b as usize != pad) {
        return Err(TransformError::Pkcs7Padding);
    }
    data.truncate(keep);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn matches_nist_sp800_38a_cbc_vectors() {
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let aes256 = AesCbc::new(&hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")).unwrap();
        let sealed = aes256.seal_with_iv(iv, &hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"));
        assert_eq!(&sealed[..16], &iv);
        assert_eq!(sealed[16..48], hex("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"));
        assert_eq!(sealed.len(), 64, "a whole block of padding follows block-aligned data");
        let aes128 = AesCbc::new(&hex("2b7e151628aed2a6abf7158809cf4f3c")).unwrap();
        assert_eq!(aes128.seal_with_iv(iv, &hex("6bc1bee22e409f96e93d7e117393172a"))[16..32], hex("7649abac8119b246cee98e9b12e9197d"));
    }

    #[test]
    fn round_trips_every_key_size_and_length() {
        for size in [16, 24, 32] {
            let c = AesCbc::new(&vec![7u8; size]).unwrap();
            for len in [0, 1, 15, 16, 17, 100] {
                let plain = vec![b'x'; len];
                let sealed = c.seal(&plain, b"k");
                assert_ne!(sealed[16..], plain[..]);
                assert_eq!(c.open(&sealed, b"k").unwrap(), plain);
            }
        }
        assert!(AesCbc::new(&[0u8; 20]).is_none());
    }

    #[test]
    fn refuses_damaged_values_with_kubes_errors() {
        let c = AesCbc::new(&[1u8; 32]).unwrap();
        assert_eq!(c.open(&[0u8; 10], b""), Err(TransformError::TooShort));
        assert_eq!(c.open(&[0u8; 40], b""), Err(TransformError::NotWholeBlocks));
        let other = AesCbc::new(&[2u8; 32]).unwrap();
        let wrong = other.open(&c.seal(b"a secret value", b""), b"");
        assert_ne!(wrong.ok().as_deref(), Some(b"a secret value".as_slice()), "another key must not read the value");
    }
}
