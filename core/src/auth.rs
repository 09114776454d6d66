//! Password keys and handshake proofs.
//!
//! A cluster key `K = PBKDF2-HMAC-SHA256(password, salt(cluster), iterations)` is derived
//! once per password (the slow part, deliberately) and then reused for every connection:
//! each handshake costs two HMACs and a SHA-256 of the transcript. Proofs are
//! `HMAC(K, label || SHA-256(transcript))` and are compared in constant time.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Default PBKDF2 iterations: today's recommendation for PBKDF2-HMAC-SHA256 (OWASP,
/// 600,000). Every node of a cluster and its admin clients must agree (the daemon's
/// `key_iterations` option). A key is derived once per password at start (~0.2 s).
pub const KEY_ITERATIONS: u32 = 600_000;

/// Label of the dialer's proof.
pub const DIALER_LABEL: &[u8] = b"nkcluster/v1 dialer proof";
/// Label of the listener's proof.
pub const LISTENER_LABEL: &[u8] = b"nkcluster/v1 listener proof";

/// A derived cluster key. Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Derives the key for `password` in `cluster` (`iterations` PBKDF2 rounds; use
    /// [`KEY_ITERATIONS`] outside tests).
    pub fn derive(password: &str, cluster: &str, iterations: u32) -> Key {
        let mut salt = Sha256::new();
        salt.update(b"nkcluster/v1 salt\0");
        salt.update(cluster.as_bytes());
        let salt = salt.finalize();
        Key(pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            password.as_bytes(),
            &salt,
            iterations.max(1),
        ))
    }

    /// A key from raw bytes (tests and fuzzing).
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    fn mac(&self, label: &[u8], transcript: &[u8; 32]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(label);
        m.update(transcript);
        m
    }

    /// The proof of knowledge of this key for `label` over `transcript`.
    pub fn prove(&self, label: &[u8], transcript: &[u8; 32]) -> [u8; 32] {
        let out = self.mac(label, transcript).finalize().into_bytes();
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&out);
        mac
    }

    /// Checks a proof in constant time.
    pub fn verify(&self, label: &[u8], transcript: &[u8; 32], proof: &[u8; 32]) -> bool {
        self.mac(label, transcript).verify_slice(proof).is_ok()
    }
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for 32 bytes.
    unreachable!("HMAC-SHA256 accepts 32-byte keys")
}

/// Running hash of everything both sides said during a handshake.
#[derive(Clone)]
pub struct Transcript(Sha256);

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transcript(..)")
    }
}

impl Transcript {
    /// An empty transcript, domain-separated for protocol version 1.
    pub fn new() -> Self {
        let mut h = Sha256::new();
        h.update(b"nkcluster/v1 transcript\0");
        Transcript(h)
    }

    /// Appends a length-prefixed item.
    pub fn absorb(&mut self, item: &[u8]) {
        self.0.update((item.len() as u64).to_be_bytes());
        self.0.update(item);
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 32] {
        let out = self.0.clone().finalize();
        let mut d = [0u8; 32];
        d.copy_from_slice(&out);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_deterministic_and_salted_by_cluster() {
        let a = Key::derive("pw", "c1", 10);
        assert_eq!(a, Key::derive("pw", "c1", 10));
        assert_ne!(a, Key::derive("pw", "c2", 10));
        assert_ne!(a, Key::derive("pw2", "c1", 10));
        assert_ne!(a, Key::derive("pw", "c1", 11));
        assert_eq!(format!("{a:?}"), "Key(..)");
    }

    #[test]
    fn proofs_verify_only_with_same_key_label_and_transcript() {
        let k = Key::from_bytes([1; 32]);
        let t = [9; 32];
        let p = k.prove(DIALER_LABEL, &t);
        assert!(k.verify(DIALER_LABEL, &t, &p));
        assert!(!k.verify(LISTENER_LABEL, &t, &p));
        assert!(!k.verify(DIALER_LABEL, &[8; 32], &p));
        assert!(!Key::from_bytes([2; 32]).verify(DIALER_LABEL, &t, &p));
    }

    #[test]
    fn transcript_items_are_length_prefixed() {
        let mut a = Transcript::new();
        a.absorb(b"ab");
        a.absorb(b"c");
        let mut b = Transcript::new();
        b.absorb(b"a");
        b.absorb(b"bc");
        assert_ne!(a.digest(), b.digest());
    }
}
