//! Which hash a file's content is checked with, and the running hasher of either.
//!
//! The last part of a file carries the whole file's digest; the receiver hashes what it
//! writes and compares. Up to protocol 5 that digest is SHA-256 (`JobCall::SendFile`).
//! From protocol 6 ([`BLAKE3_VERSION`]) a sender that holds the target's link itself
//! sends BLAKE3 instead (`JobCall::SendFileBlake3`): on this machine SHA-256 runs at
//! ~1.6 GB/s and BLAKE3 at ~5 GB/s, and both ends hash every byte. A file sent through
//! a control node, or to a peer of protocol 5 or older, keeps SHA-256
//! ([`content_hash`]). The receiver hashes each transfer with the algorithm its parts
//! name; a resumed transfer whose parts name another one than its kept `.part` file was
//! hashed with is hashed again from the file ([`crate::transfers::FileOp::Reopen`]).

/// First protocol version whose receivers check a file with BLAKE3 when asked.
pub const BLAKE3_VERSION: u16 = 6;

/// A file content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentHash {
    /// SHA-256: every version.
    #[default]
    Sha256,
    /// BLAKE3 (32-byte output): receivers of protocol [`BLAKE3_VERSION`] and later.
    Blake3,
}

/// The hash a sender uses for a file: BLAKE3 when it sends to the target itself
/// (`target_version`: the protocol version of its link with the target) and the
/// target speaks [`BLAKE3_VERSION`]; SHA-256 otherwise (`None`: the parts go through a
/// control node, whose version, and the target's, the sender does not know).
#[must_use]
pub fn content_hash(target_version: Option<u16>) -> ContentHash {
    match target_version {
        Some(v) if v >= BLAKE3_VERSION => ContentHash::Blake3,
        _ => ContentHash::Sha256,
    }
}

/// The running hash of a file's content, of either kind.
#[derive(Clone)]
pub enum ContentHasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// BLAKE3 (boxed: its state is ~1.9 KB).
    Blake3(Box<blake3::Hasher>),
}

impl std::fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentHasher({:?})", self.kind())
    }
}

impl ContentHasher {
    /// A hasher of `kind` over no bytes yet.
    #[must_use]
    pub fn new(kind: ContentHash) -> Self {
        use sha2::Digest;
        match kind {
            ContentHash::Sha256 => ContentHasher::Sha256(sha2::Sha256::new()),
            ContentHash::Blake3 => ContentHasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> ContentHash {
        match self {
            ContentHasher::Sha256(_) => ContentHash::Sha256,
            ContentHasher::Blake3(_) => ContentHash::Blake3,
        }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            ContentHasher::Sha256(h) => h.update(data),
            ContentHasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest of the bytes fed so far (the hasher can go on).
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        match self {
            ContentHasher::Sha256(h) => h.clone().finalize().into(),
            ContentHasher::Blake3(h) => *h.finalize().as_bytes(),
        }
    }

    /// The digest of `data` alone.
    #[must_use]
    pub fn digest_of(kind: ContentHash, data: &[u8]) -> [u8; 32] {
        let mut h = ContentHasher::new(kind);
        h.update(data);
        h.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_only_to_a_direct_target_of_protocol_6_or_later() {
        assert_eq!(content_hash(None), ContentHash::Sha256);
        for v in 1..=5 {
            assert_eq!(content_hash(Some(v)), ContentHash::Sha256, "{v}");
        }
        assert_eq!(content_hash(Some(6)), ContentHash::Blake3);
        assert_eq!(content_hash(Some(7)), ContentHash::Blake3);
        assert_eq!(
            content_hash(Some(crate::message::PROTOCOL_VERSION)),
            ContentHash::Blake3
        );
    }

    fn hex(d: [u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn both_digests_are_the_standard_ones_fed_at_once_or_in_pieces() {
        // Known answers: SHA-256("abc") and BLAKE3("abc").
        assert_eq!(
            hex(ContentHasher::digest_of(ContentHash::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(ContentHasher::digest_of(ContentHash::Blake3, b"abc")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(
            hex(ContentHasher::digest_of(ContentHash::Blake3, b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for kind in [ContentHash::Sha256, ContentHash::Blake3] {
            let mut h = ContentHasher::new(kind);
            assert_eq!(h.kind(), kind);
            for piece in data.chunks(1024 * 1024 - 3) {
                h.update(piece);
            }
            // Reading the digest does not end the hasher.
            assert_eq!(h.digest(), ContentHasher::digest_of(kind, &data));
            h.update(b"x");
            let mut more = data.clone();
            more.push(b'x');
            assert_eq!(h.digest(), ContentHasher::digest_of(kind, &more));
        }
        assert_ne!(
            ContentHasher::digest_of(ContentHash::Sha256, &data),
            ContentHasher::digest_of(ContentHash::Blake3, &data)
        );
    }
}
