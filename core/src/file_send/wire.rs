//! A file part's request body without copying its bytes: the sender reads the file
//! straight into the body ([`PartBody`]), the receiver takes the part's bytes as a slice
//! of the frame it arrived in ([`decode_part`]). The encoding is exactly that of
//! `encode_body(&JobCall::SendFile(part))` (SHA-256) or
//! `encode_body(&JobCall::SendFileBlake3(part))` (BLAKE3, protocol 6): the two differ
//! only in the variant index.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

use super::ContentHash;
use crate::cluster::FilePart;

/// `JobCall::SendFile`'s variant index (postcard: one varint byte).
const SEND_FILE: u8 = 13;
/// `JobCall::SendFileBlake3`'s variant index.
const SEND_FILE_BLAKE3: u8 = 15;

fn variant(hash: ContentHash) -> u8 {
    match hash {
        ContentHash::Sha256 => SEND_FILE,
        ContentHash::Blake3 => SEND_FILE_BLAKE3,
    }
}

/// A `JobCall::SendFile` body being built: the header is written, the caller fills the
/// data in place ([`data_mut`](Self::data_mut)), then [`finish`](Self::finish)es it
/// with the hash.
#[derive(Debug)]
pub struct PartBody {
    buf: BytesMut,
    /// Where the data starts.
    data_at: usize,
    len: usize,
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

impl PartBody {
    /// The body of the part of `path` at `offset` (of a file of `total` bytes) carrying
    /// `len` bytes, with room for them (zeroed) and for the hash; `hash`: the file's
    /// content hash, which names the request (`SendFile` or `SendFileBlake3`).
    #[must_use]
    pub fn new(hash: ContentHash, path: &str, offset: u64, total: u64, len: usize) -> PartBody {
        let mut buf = BytesMut::with_capacity(path.len() + len + 64);
        buf.put_u8(variant(hash));
        put_varint(&mut buf, path.len() as u64);
        buf.put_slice(path.as_bytes());
        put_varint(&mut buf, offset);
        put_varint(&mut buf, total);
        put_varint(&mut buf, len as u64);
        let data_at = buf.len();
        buf.resize(data_at + len, 0);
        PartBody { buf, data_at, len }
    }

    /// The part's bytes, to fill.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.data_at..self.data_at + self.len]
    }

    /// The part's bytes.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data_at..self.data_at + self.len]
    }

    /// The finished body, with the whole file's hash when known.
    #[must_use]
    pub fn finish(mut self, sha256: Option<[u8; 32]>) -> Bytes {
        match sha256 {
            None => self.buf.put_u8(0),
            Some(h) => {
                self.buf.put_u8(1);
                self.buf.put_slice(&h);
            }
        }
        self.buf.freeze()
    }
}

#[derive(Deserialize)]
struct PartRef<'a> {
    path: String,
    offset: u64,
    total: u64,
    data: &'a [u8],
    sha256: Option<[u8; 32]>,
}

/// A `JobCall::SendFile` or `JobCall::SendFileBlake3` body decoded with its bytes left
/// in `body` (no copy), with the content hash its variant names; `None` when `body` is
/// anything else or malformed (the ordinary decoder then says why).
#[must_use]
pub fn decode_part(body: &Bytes) -> Option<(FilePart, ContentHash)> {
    let (&first, rest) = body.split_first()?;
    let hash = match first {
        SEND_FILE => ContentHash::Sha256,
        SEND_FILE_BLAKE3 => ContentHash::Blake3,
        _ => return None,
    };
    match postcard::take_from_bytes::<PartRef<'_>>(rest) {
        Ok((p, [])) => Some((
            FilePart {
                path: p.path,
                offset: p.offset,
                total: p.total,
                data: body.slice_ref(p.data),
                sha256: p.sha256,
            },
            hash,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{JobCall, encode_body};

    fn part(path: &str, offset: u64, total: u64, len: usize, sha: Option<[u8; 32]>) -> FilePart {
        FilePart {
            path: path.into(),
            offset,
            total,
            data: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
            sha256: sha,
        }
    }

    #[test]
    fn a_part_built_in_place_is_byte_for_byte_the_encoded_job_call() {
        for (path, offset, total, len, sha) in [
            ("a", 0, 5, 5, Some([9u8; 32])),
            ("dir/big.bin", 1 << 20, 3 << 30, 1 << 20, Some([1; 32])),
            ("x".repeat(200).as_str(), 127, 128, 1, None),
            ("", 0, 0, 0, None),
            ("p", u64::MAX, u64::MAX, 300, None),
        ] {
            for hash in [ContentHash::Sha256, ContentHash::Blake3] {
                let p = part(path, offset, total, len, sha);
                let mut b = PartBody::new(hash, path, offset, total, len);
                b.data_mut().copy_from_slice(&p.data);
                assert_eq!(b.data(), &p.data[..]);
                let built = b.finish(sha);
                let call = match hash {
                    ContentHash::Sha256 => JobCall::SendFile(p.clone()),
                    ContentHash::Blake3 => JobCall::SendFileBlake3(p.clone()),
                };
                let want = encode_body(&call).expect("encodes");
                assert_eq!(built, want, "{path} {offset} {len} {hash:?}");
                // And back, sharing the body's memory.
                let (got, got_hash) = decode_part(&built).expect("a part");
                assert_eq!((&got, got_hash), (&p, hash));
                if len > 0 {
                    assert!(built.as_ptr_range().contains(&got.data.as_ptr()));
                }
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_the_ordinary_decoder() {
        let other = encode_body(&JobCall::GetInfo).expect("encodes");
        assert_eq!(decode_part(&other), None);
        assert_eq!(decode_part(&Bytes::new()), None);
        let status = encode_body(&JobCall::FileStatus(crate::cluster::FileQuery {
            path: "a".into(),
            total: 4,
            sha256: [0; 32],
        }))
        .expect("encodes");
        assert_eq!(decode_part(&status), None);
        let mut b = PartBody::new(ContentHash::Sha256, "a", 0, 4, 4)
            .finish(None)
            .to_vec();
        b.push(0); // trailing byte
        assert_eq!(decode_part(&Bytes::from(b.clone())), None);
        b.truncate(5); // cut short
        assert_eq!(decode_part(&Bytes::from(b)), None);
    }
}
