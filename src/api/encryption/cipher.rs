//! One key of one provider: the [`KeyCipher`] seam every provider (aescbc, aesgcm, secretbox)
//! implements, and the errors of reading stored values, worded as kube-apiserver words them.

use rand::RngCore;

/// Why a stored value could not be read (kube-apiserver's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the stored data was shorter than the required size")]
    TooShort,
    #[error("the stored data is not a multiple of the block size")]
    NotWholeBlocks,
    #[error("invalid PKCS7 data (empty or not padded)")]
    Pkcs7Data,
    #[error("invalid padding on input")]
    Pkcs7Padding,
    #[error("cipher: message authentication failed")]
    Authentication,
    /// kube's secretbox transformer says this when the box does not open.
    #[error("output array was not large enough for encryption")]
    SecretboxOpen,
    /// The value names a key the provider does not have (`AES` or `Secretbox`).
    #[error("no matching key was found for the provided {0} transformer")]
    NoMatchingKey(&'static str),
    /// Several providers matched and none could read the value (kube's aggregate error).
    #[error("[{0}]")]
    Several(String),
    #[error("no matching prefix found")]
    NoMatchingPrefix,
}

/// Encrypts and decrypts values with one key.
///
/// Contract: `open(seal(p, aad), aad) == Ok(p)` for every `p`; `seal` is randomised (a fresh
/// IV or nonce each call, carried in its output); `open` never panics on any input.
pub trait KeyCipher: Send + Sync {
    /// The sealed form of `plain`; `aad` (the store key) is authenticated where the cipher can.
    fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8>;
    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, TransformError>;
}

/// `N` random bytes from the operating system (IVs and nonces).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}
