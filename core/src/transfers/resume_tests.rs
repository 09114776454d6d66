//! Resuming interrupted transfers: exact outputs.

use super::*;
use sha2::Digest;

fn sha(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

const WHOLE: &[u8] = b"abcdefghi";

/// A part of WHOLE with the identity on it (as a big-file sender sends).
fn part(path: &str, offset: u64) -> Part<'_> {
    let o = offset as usize;
    Part {
        path,
        offset,
        total: WHOLE.len() as u64,
        data: Bytes::copy_from_slice(&WHOLE[o..o + 3]),
        sha256: Some(sha(WHOLE)),
        hash: crate::file_send::ContentHash::Sha256,
    }
}

fn new() -> Transfers {
    let mut t = Transfers::new(
        Path::new("/f"),
        TransfersConfig {
            max_open: 2,
            idle_expiry: Duration::from_secs(10),
        },
    );
    t.set_resume(ResumeConfig {
        keep_max: 2,
        keep_bytes: 100,
        keep_for: Duration::from_secs(100),
    });
    t
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn at(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

#[test]
fn an_abandoned_transfer_with_an_identity_is_kept_and_resumes_at_its_offset() {
    let mut t = new();
    let id = sha(WHOLE);
    let _ = t.handle_part(at(0), "c1", part("x", 0));
    let _ = t.handle_part(at(0), "c1", part("x", 3));
    assert_eq!(t.status(at(1), "x", 9, &id), Ok((6, vec![])));
    // Another size or hash is another file: start from 0.
    assert_eq!(t.status(at(1), "x", 10, &id), Ok((0, vec![])));
    assert_eq!(t.status(at(1), "x", 9, &[0; 32]), Ok((0, vec![])));
    // Idle for 10 s: kept (closed), not removed.
    assert_eq!(
        t.handle_timeout(at(10)),
        [FileOp::Close {
            tmp: p("/f/x.part")
        }]
    );
    assert_eq!((t.open(), t.kept()), (0, 1));
    assert_eq!(t.status(at(11), "x", 9, &id), Ok((6, vec![])));
    // A part elsewhere than the confirmed offset does not resume it (nor remove it).
    let out = t.handle_part(at(12), "c2", part("x", 3));
    assert_eq!(out.ops, []);
    assert_eq!(
        out.result,
        Err(TransferError::BadOffset {
            path: "x".into(),
            got: 3,
            expected: 0
        })
    );
    assert_eq!(t.kept(), 1);
    // The part at the offset, over another link: reopened (the shell's running hash
    // taken up at 6 bytes), appended, digested; the digest matches: renamed.
    let out = t.handle_part(at(12), "c2", part("x", 6));
    assert_eq!(
        out,
        PartOutcome {
            ops: vec![
                FileOp::Reopen {
                    tmp: p("/f/x.part"),
                    len: 6,
                    hash: crate::file_send::ContentHash::Sha256,
                },
                FileOp::Append {
                    tmp: p("/f/x.part"),
                    data: Bytes::from_static(b"ghi")
                },
                FileOp::Digest {
                    tmp: p("/f/x.part")
                },
            ],
            result: Ok(Received::Checking),
        }
    );
    assert_eq!(
        t.handle_digest("x", id),
        PartOutcome {
            ops: vec![FileOp::Rename {
                tmp: p("/f/x.part"),
                to: p("/f/x")
            }],
            result: Ok(Received::File {
                path: p("/f/x"),
                bytes: 9
            }),
        }
    );
    assert_eq!((t.open(), t.kept()), (0, 0));
    assert_eq!(t.status(at(13), "x", 9, &id), Ok((0, vec![])));
}

#[test]
fn released_transfers_without_an_identity_are_removed_and_a_fresh_start_replaces_a_kept_one() {
    let mut t = new();
    let id = sha(WHOLE);
    let mut small = part("s", 0);
    small.sha256 = None;
    let _ = t.handle_part(at(0), "c1", small);
    assert_eq!(
        t.release(at(1), Path::new("/f/s")),
        [FileOp::Remove {
            tmp: p("/f/s.part")
        }]
    );
    let _ = t.handle_part(at(0), "c1", part("x", 0));
    assert_eq!(
        t.release(at(1), Path::new("/f/x")),
        [FileOp::Close {
            tmp: p("/f/x.part")
        }]
    );
    assert_eq!(t.release(at(1), Path::new("/f/x")), []);
    // Starting over at 0 forgets the kept one (Create truncates its file).
    let out = t.handle_part(at(2), "c1", part("x", 0));
    assert_eq!(
        out.ops[0],
        FileOp::Create {
            tmp: p("/f/x.part"),
            hash: crate::file_send::ContentHash::Sha256,
        }
    );
    assert_eq!((t.open(), t.kept()), (1, 0));
    assert_eq!(t.status(at(2), "x", 9, &id), Ok((3, vec![])));
    // An I/O failure forgets it too.
    let _ = t.release(at(3), Path::new("/f/x"));
    assert_eq!(
        t.handle_io_error("x"),
        [FileOp::Remove {
            tmp: p("/f/x.part")
        }]
    );
    assert_eq!(t.kept(), 0);
    assert_eq!(
        t.status(at(3), "../x", 9, &id).map_err(|e| e.code()),
        Err("forbidden_path")
    );
}

#[test]
fn kept_transfers_are_bounded_in_count_and_bytes_and_expire() {
    let mut t = new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let _ = t.handle_part(at(i as u64), "c1", part(name, 0));
    }
    // The open ones at most 2: "c" was refused.
    assert_eq!(t.open(), 2);
    assert_eq!(
        t.release(at(20), Path::new("/f/a")),
        [FileOp::Close {
            tmp: p("/f/a.part")
        }]
    );
    assert_eq!(
        t.release(at(21), Path::new("/f/b")),
        [FileOp::Close {
            tmp: p("/f/b.part")
        }]
    );
    let _ = t.handle_part(at(22), "c1", part("c", 0));
    // A third kept one: the oldest ("a") goes.
    assert_eq!(
        t.release(at(22), Path::new("/f/c")),
        [
            FileOp::Close {
                tmp: p("/f/c.part")
            },
            FileOp::Remove {
                tmp: p("/f/a.part")
            }
        ]
    );
    assert_eq!(t.kept(), 2);
    assert_eq!(t.poll_timeout(), Some(at(121)));
    assert_eq!(
        t.handle_timeout(at(121)),
        [FileOp::Remove {
            tmp: p("/f/b.part")
        }]
    );
    assert_eq!(
        t.handle_timeout(at(122)),
        [FileOp::Remove {
            tmp: p("/f/c.part")
        }]
    );
    assert_eq!(t.poll_timeout(), None);
    // Bytes: 100 at most; a kept 60-byte prefix and another evict the older.
    let mut t = new();
    let big = |path: &'static str, offset: u64, total: u64| Part {
        path,
        offset,
        total,
        data: Bytes::from(vec![7u8; 60]),
        sha256: Some([1; 32]),
        hash: crate::file_send::ContentHash::Sha256,
    };
    let _ = t.handle_part(at(0), "c1", big("m", 0, 200));
    let _ = t.handle_part(at(0), "c1", big("n", 0, 200));
    let _ = t.release(at(1), Path::new("/f/m"));
    assert_eq!(
        t.release(at(2), Path::new("/f/n")),
        [
            FileOp::Close {
                tmp: p("/f/n.part")
            },
            FileOp::Remove {
                tmp: p("/f/m.part")
            }
        ]
    );
    // The open-transfer limit holds for a resume too.
    let _ = t.handle_part(at(3), "c1", big("o", 0, 200));
    let _ = t.handle_part(at(3), "c1", big("q", 0, 200));
    let out = t.handle_part(at(3), "c1", big("n", 60, 200));
    assert_eq!(out.result, Err(TransferError::TooMany { max: 2 }));
    assert_eq!(t.kept(), 1);
}

#[test]
fn a_transfer_resumed_with_another_content_hash_is_hashed_again_in_that_one() {
    use crate::file_send::ContentHash;
    let with = |offset, hash| {
        let mut x = part("x", offset);
        x.hash = hash;
        x
    };
    // Started with SHA-256 (an older sender), kept, resumed with BLAKE3: reopened with
    // BLAKE3 (the shell hashes the kept 6 bytes again), and the digest is BLAKE3's.
    let mut t = new();
    let id = sha(WHOLE);
    let out = t.handle_part(at(0), "c1", with(0, ContentHash::Sha256));
    assert_eq!(
        out.ops[0],
        FileOp::Create {
            tmp: p("/f/x.part"),
            hash: ContentHash::Sha256
        }
    );
    let _ = t.release(at(1), Path::new("/f/x"));
    assert_eq!(t.status(at(2), "x", 9, &id), Ok((3, vec![])));
    let out = t.handle_part(at(2), "c2", with(3, ContentHash::Blake3));
    assert_eq!(
        out.ops[0],
        FileOp::Reopen {
            tmp: p("/f/x.part"),
            len: 3,
            hash: ContentHash::Blake3
        }
    );
    assert_eq!((out.ops.len(), out.result), (2, Ok(Received::Part)));
    let mut last = with(6, ContentHash::Blake3);
    let blake = crate::file_send::ContentHasher::digest_of(ContentHash::Blake3, WHOLE);
    last.sha256 = Some(blake);
    let out = t.handle_part(at(2), "c2", last);
    assert_eq!(out.ops.len(), 2, "append and digest: {:?}", out.ops);
    assert_eq!(out.result, Ok(Received::Checking));
    assert!(t.handle_digest("x", blake).result.is_ok());

    // Still open (its link up) when a new attempt continues it with another hash: the
    // hash changes before the append (Reopen at the confirmed length), once.
    let mut t = new();
    let _ = t.handle_part(at(0), "c1", with(0, ContentHash::Blake3));
    let out = t.handle_part(at(0), "c1", with(3, ContentHash::Sha256));
    assert_eq!(
        out.ops,
        [
            FileOp::Reopen {
                tmp: p("/f/x.part"),
                len: 3,
                hash: ContentHash::Sha256
            },
            FileOp::Append {
                tmp: p("/f/x.part"),
                data: Bytes::from_static(b"def")
            }
        ]
    );
    let out = t.handle_part(at(0), "c1", with(6, ContentHash::Sha256));
    assert_eq!(out.ops.len(), 2, "no second reopen: {:?}", out.ops);
    assert!(t.handle_digest("x", id).result.is_ok());
}
