//! The receiver: parts in order, refusals, limits, ownership: exact outputs.

use super::*;
use sha2::Digest;

fn sha(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

fn part<'a>(
    path: &'a str,
    offset: u64,
    total: u64,
    data: &'static [u8],
    last: Option<&[u8]>,
) -> Part<'a> {
    Part {
        path,
        offset,
        total,
        data: Bytes::from_static(data),
        sha256: last.map(sha),
        hash: crate::file_send::ContentHash::Sha256,
    }
}

fn t() -> Transfers {
    Transfers::new(
        Path::new("/f"),
        TransfersConfig {
            max_open: 2,
            idle_expiry: Duration::from_secs(10),
        },
    )
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn parts_in_order_make_the_file_then_it_is_renamed() {
    let mut t = t();
    let now = Instant::ZERO;
    let out = t.handle_part(now, "c1", part("d/x", 0, 6, b"abc", None));
    assert_eq!(
        out,
        PartOutcome {
            ops: vec![
                FileOp::Create {
                    tmp: p("/f/d/x.part"),
                    hash: crate::file_send::ContentHash::Sha256,
                },
                FileOp::Append {
                    tmp: p("/f/d/x.part"),
                    data: Bytes::from_static(b"abc")
                },
            ],
            result: Ok(Received::Part),
        }
    );
    let out = t.handle_part(now, "c1", part("d/x", 3, 6, b"def", Some(b"abcdef")));
    assert_eq!(
        out,
        PartOutcome {
            ops: vec![
                FileOp::Append {
                    tmp: p("/f/d/x.part"),
                    data: Bytes::from_static(b"def")
                },
                FileOp::Digest {
                    tmp: p("/f/d/x.part")
                },
            ],
            result: Ok(Received::Checking),
        }
    );
    // Waiting for its digest: still open, and no part may follow (not even an empty
    // one at the end).
    assert_eq!(t.open(), 1);
    // (Without an identity on its first part there is nothing to resume.)
    assert_eq!(t.status(now, "d/x", 6, &sha(b"abcdef")), Ok((0, vec![])));
    // The shell's digest of the written bytes matches: renamed into place.
    assert_eq!(
        t.handle_digest("d/x", sha(b"abcdef")),
        PartOutcome {
            ops: vec![FileOp::Rename {
                tmp: p("/f/d/x.part"),
                to: p("/f/d/x")
            }],
            result: Ok(Received::File {
                path: p("/f/d/x"),
                bytes: 6
            }),
        }
    );
    assert_eq!(t.open(), 0);
    // A second digest finds nothing to decide.
    assert_eq!(
        t.handle_digest("d/x", sha(b"abcdef")),
        PartOutcome {
            ops: vec![],
            result: Err(TransferError::Ended { path: "d/x".into() }),
        }
    );
    // An empty file is one part with no bytes.
    let out = t.handle_part(now, "c1", part("e", 0, 0, b"", Some(b"")));
    assert_eq!(
        out.ops,
        [
            FileOp::Create {
                tmp: p("/f/e.part"),
                hash: crate::file_send::ContentHash::Sha256,
            },
            FileOp::Digest {
                tmp: p("/f/e.part")
            }
        ]
    );
    assert_eq!(
        t.handle_digest("e", sha(b"")).ops,
        [FileOp::Rename {
            tmp: p("/f/e.part"),
            to: p("/f/e")
        }]
    );
}

#[test]
fn a_transfer_waiting_for_its_digest_takes_no_part_and_ends_like_any_other() {
    let mut t = t();
    let now = Instant::ZERO;
    let _ = t.handle_part(now, "c1", part("x", 0, 3, b"abc", Some(b"abc")));
    // An empty part at the end is refused and ends it.
    let out = t.handle_part(now, "c1", part("x", 3, 3, b"", Some(b"abc")));
    assert_eq!(
        out,
        PartOutcome {
            ops: vec![FileOp::Remove {
                tmp: p("/f/x.part")
            }],
            result: Err(TransferError::BadOffset {
                path: "x".into(),
                got: 3,
                expected: 3
            }),
        }
    );
    assert_eq!(
        t.handle_digest("x", sha(b"abc")).result,
        Err(TransferError::Ended { path: "x".into() })
    );
    // Its link closes while it waits: removed, not kept for a resume (it is whole),
    // though it has an identity.
    let _ = t.handle_part(now, "c1", part("y", 0, 3, b"abc", Some(b"abc")));
    assert_eq!(
        t.handle_link_closed(now, "c1"),
        [FileOp::Remove {
            tmp: p("/f/y.part")
        }]
    );
    assert_eq!(t.kept(), 0);
    assert_eq!(
        t.handle_digest("y", sha(b"abc")),
        PartOutcome {
            ops: vec![],
            result: Err(TransferError::Ended { path: "y".into() }),
        }
    );
    // A last part without a SHA-256 can never pass: refused at once, no digest asked.
    let out = t.handle_part(now, "c1", part("z", 0, 3, b"abc", None));
    assert_eq!(
        out.ops,
        [
            FileOp::Create {
                tmp: p("/f/z.part"),
                hash: crate::file_send::ContentHash::Sha256,
            },
            FileOp::Append {
                tmp: p("/f/z.part"),
                data: Bytes::from_static(b"abc")
            },
            FileOp::Remove {
                tmp: p("/f/z.part")
            },
        ]
    );
    assert_eq!(
        out.result,
        Err(TransferError::ChecksumMismatch { path: "z".into() })
    );
    assert_eq!(t.open(), 0);
    // A path outside the files directory is never waiting.
    assert_eq!(
        t.handle_digest("../x", [0; 32])
            .result
            .map_err(|e| e.code()),
        Err("transfer_ended")
    );
}

#[test]
fn a_wrong_checksum_or_offset_ends_the_transfer_and_removes_the_part_file() {
    let mut t = t();
    let now = Instant::ZERO;
    let out = t.handle_part(now, "c1", part("x", 0, 3, b"abc", Some(b"zzz")));
    assert_eq!(
        out.ops.last(),
        Some(&FileOp::Digest {
            tmp: p("/f/x.part")
        })
    );
    assert_eq!(
        t.handle_digest("x", sha(b"abc")),
        PartOutcome {
            ops: vec![FileOp::Remove {
                tmp: p("/f/x.part")
            }],
            result: Err(TransferError::ChecksumMismatch { path: "x".into() })
        }
    );
    let _ = t.handle_part(now, "c1", part("y", 0, 9, b"abc", None));
    let out = t.handle_part(now, "c1", part("y", 6, 9, b"ghi", None));
    assert_eq!(
        out.ops,
        [FileOp::Remove {
            tmp: p("/f/y.part")
        }]
    );
    assert_eq!(
        out.result,
        Err(TransferError::BadOffset {
            path: "y".into(),
            got: 6,
            expected: 3
        })
    );
    // No transfer open: a later part is refused, nothing to clean.
    let out = t.handle_part(now, "c1", part("z", 5, 9, b"x", None));
    assert_eq!(out.ops, []);
    assert_eq!(out.result.map_err(|e| e.code()), Err("bad_offset"));
    // Past the announced size.
    let _ = t.handle_part(now, "c1", part("w", 0, 2, b"a", None));
    let out = t.handle_part(now, "c1", part("w", 1, 2, b"bc", None));
    assert_eq!(out.result.map_err(|e| e.code()), Err("bad_offset"));
    assert_eq!(t.open(), 0);
}

#[test]
fn at_most_max_open_and_abandoned_transfers_expire() {
    let mut t = t();
    let _ = t.handle_part(Instant::ZERO, "c1", part("a", 0, 9, b"1", None));
    let _ = t.handle_part(
        Instant::from_millis(5_000),
        "c1",
        part("b", 0, 9, b"1", None),
    );
    let out = t.handle_part(
        Instant::from_millis(5_000),
        "c1",
        part("c", 0, 9, b"1", None),
    );
    assert_eq!(out.ops, []);
    assert_eq!(out.result, Err(TransferError::TooMany { max: 2 }));
    assert_eq!(t.poll_timeout(), Some(Instant::from_millis(10_000)));
    // `a` is idle for 10 s: it expires, and `c` takes its slot.
    let out = t.handle_part(
        Instant::from_millis(10_000),
        "c1",
        part("c", 0, 9, b"1", None),
    );
    assert_eq!(
        out.ops,
        [
            FileOp::Remove {
                tmp: p("/f/a.part")
            },
            FileOp::Create {
                tmp: p("/f/c.part"),
                hash: crate::file_send::ContentHash::Sha256,
            },
            FileOp::Append {
                tmp: p("/f/c.part"),
                data: Bytes::from_static(b"1")
            },
        ]
    );
    assert_eq!(out.result, Ok(Received::Part));
    assert_eq!(
        t.handle_timeout(Instant::from_millis(15_000)),
        [FileOp::Remove {
            tmp: p("/f/b.part")
        }]
    );
    assert_eq!(
        t.handle_io_error("c"),
        [FileOp::Remove {
            tmp: p("/f/c.part")
        }]
    );
    assert_eq!(t.handle_io_error("c"), []);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn a_transfer_belongs_to_its_peer_and_ends_when_its_links_close() {
    let mut t = t();
    let now = Instant::ZERO;
    let _ = t.handle_part(now, "admin-1", part("a", 0, 9, b"1", None));
    let _ = t.handle_part(now, "admin-1", part("b", 0, 9, b"1", None));
    // Another peer may neither continue nor restart it; nothing changes.
    for offset in [0, 1] {
        let out = t.handle_part(now, "admin-2", part("a", offset, 9, b"2", None));
        assert_eq!(out.ops, []);
        assert_eq!(out.result, Err(TransferError::Busy { path: "a".into() }));
    }
    assert_eq!(
        TransferError::Busy { path: "a".into() }.to_string(),
        "transfer_busy: a is being received from another peer"
    );
    // The owner goes on.
    let out = t.handle_part(now, "admin-1", part("a", 1, 9, b"2", None));
    assert_eq!(out.result, Ok(Received::Part));
    // Another peer's link closing changes nothing; the owner's ends both.
    assert_eq!(t.handle_link_closed(now, "admin-2"), []);
    assert_eq!(
        t.handle_link_closed(now, "admin-1"),
        [
            FileOp::Remove {
                tmp: p("/f/a.part")
            },
            FileOp::Remove {
                tmp: p("/f/b.part")
            },
        ]
    );
    assert_eq!((t.open(), t.poll_timeout()), (0, None));
    // The slots are free: another peer starts at once.
    let out = t.handle_part(now, "admin-2", part("a", 0, 9, b"1", None));
    assert_eq!(out.result, Ok(Received::Part));
    // A big file (its whole-file SHA-256 on every part) is kept for resuming when its
    // peer's links close, and another peer resumes it where it stopped.
    let id = Some(&b"123456789"[..]);
    let out = t.handle_part(now, "admin-3", part("big", 0, 9, b"123", id));
    assert_eq!(out.result, Ok(Received::Part));
    assert_eq!(
        t.handle_link_closed(now, "admin-3"),
        [FileOp::Close {
            tmp: p("/f/big.part")
        }]
    );
    assert_eq!(
        t.status(now, "big", 9, &sha(b"123456789")).map(|(o, _)| o),
        Ok(3)
    );
    let out = t.handle_part(now, "admin-4", part("big", 3, 9, b"4", id));
    assert_eq!(out.result, Ok(Received::Part));
    assert_eq!(
        out.ops[0],
        FileOp::Reopen {
            tmp: p("/f/big.part"),
            len: 3,
            hash: crate::file_send::ContentHash::Sha256,
        }
    );
}

#[test]
fn paths_outside_the_files_directory_are_refused_before_anything_happens() {
    let mut t = t();
    let out = t.handle_part(Instant::ZERO, "c1", part("../x", 0, 1, b"a", None));
    assert_eq!(out.ops, []);
    assert_eq!(out.result.map_err(|e| e.code()), Err("forbidden_path"));
    assert_eq!(t.open(), 0);
}
