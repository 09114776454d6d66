//! TLS whose randomness comes from the simulation's seed, so a TLS scenario still replays
//! bit for bit.
//!
//! [`seeded_provider`] is rustls's ring provider with two parts replaced:
//! - `secure_random`, which rustls draws hello randoms, session ids and ticket nonces
//!   from (and the node its generated certificate's key), is a seeded ChaCha stream;
//! - the key exchange: ring's groups take their ephemeral keys from the OS and cannot be
//!   handed a generator, so the only group offered is X25519 computed by `x25519-dalek`
//!   with keys drawn from that same stream.
//!
//! Everything else (ciphers, signature checks, key loading) stays ring's. Signing stays
//! ring's too, which is deterministic only for Ed25519: the nodes' generated certificates
//! are Ed25519 (see `nkcluster::transport`), whereas an ECDSA or RSA key configured from a
//! file would sign with OS randomness and its handshakes would not replay.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::{Error, NamedGroup, PeerMisbehaved};

/// A seeded random stream behind rustls's [`SecureRandom`].
#[derive(Debug)]
pub struct SeededRandom(Mutex<StdRng>);

impl SeededRandom {
    /// A stream that is a function of `seed` alone.
    pub fn new(seed: u64) -> Self {
        SeededRandom(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fill_bytes(buf);
        Ok(())
    }
}

/// X25519 key exchange with ephemeral keys from a [`SeededRandom`].
#[derive(Debug)]
struct SeededX25519 {
    random: &'static SeededRandom,
}

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut secret = [0u8; 32];
        self.random.fill(&mut secret)?;
        let public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One side's half of an X25519 exchange in progress.
struct X25519Exchange {
    secret: [u8; 32],
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = x25519_dalek::x25519(self.secret, peer);
        // A low-order peer point yields all zeros: refuse it, as ring does (RFC 7748 §6.1).
        if shared == [0u8; 32] {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// A ring-based provider whose every random byte and ephemeral key comes from `seed`.
///
/// rustls wants `'static` randomness and groups, so each call leaks one random stream
/// and one group (a few hundred bytes): fine for simulated nodes, not for a loop.
pub fn seeded_provider(seed: u64) -> Arc<CryptoProvider> {
    let random: &'static SeededRandom = Box::leak(Box::new(SeededRandom::new(seed)));
    let x25519: &'static SeededX25519 = Box::leak(Box::new(SeededX25519 { random }));
    Arc::new(CryptoProvider {
        kx_groups: vec![x25519],
        secure_random: random,
        ..rustls::crypto::ring::default_provider()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_stream() {
        let (a, b, c) = (
            SeededRandom::new(1),
            SeededRandom::new(1),
            SeededRandom::new(2),
        );
        let mut x = [0u8; 48];
        let mut y = [0u8; 48];
        let mut z = [0u8; 48];
        for (r, buf) in [(&a, &mut x), (&b, &mut y), (&c, &mut z)] {
            r.fill(buf).expect("fill");
        }
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn both_sides_agree_and_keys_follow_the_seed() {
        let p1 = seeded_provider(5);
        let p2 = seeded_provider(6);
        let a = p1.kx_groups[0].start().expect("start a");
        let b = p2.kx_groups[0].start().expect("start b");
        let (pa, pb) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        assert_ne!(pa, pb);
        let sa = a.complete(&pb).expect("complete a");
        let sb = b.complete(&pa).expect("complete b");
        assert_eq!(sa.secret_bytes(), sb.secret_bytes());
        // The same seed gives the same first key again.
        let again = seeded_provider(5).kx_groups[0].start().expect("start");
        assert_eq!(again.pub_key(), pa.as_slice());
    }

    #[test]
    fn refuses_bad_peer_keys() {
        let p = seeded_provider(7);
        let short = p.kx_groups[0].start().expect("start");
        assert!(short.complete(&[9u8; 31]).is_err());
        // The identity point (order 1) makes the shared secret all zeros.
        let low = p.kx_groups[0].start().expect("start");
        assert!(low.complete(&[0u8; 32]).is_err());
    }
}
