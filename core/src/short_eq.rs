//! Equality of short byte strings (class names) compared inline: on the request path a
//! class name is compared a few times per request (the last class read on a link, the
//! class a link's meter is tallying), and a call to the C library's `memcmp` costs more
//! than comparing two words here.

/// Whether `a` and `b` hold the same bytes (`a == b`). Up to 16 bytes it compares at
/// most two overlapping 8-byte words (or two 4-byte ones), with no call; longer ones
/// go to the slice comparison.
#[inline]
#[must_use]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    if let (Some(a0), Some(b0), Some(a1), Some(b1)) = (
        a.first_chunk::<8>(),
        b.first_chunk::<8>(),
        a.last_chunk::<8>(),
        b.last_chunk::<8>(),
    ) {
        return a0 == b0 && a1 == b1;
    }
    if let (Some(a0), Some(b0), Some(a1), Some(b1)) = (
        a.first_chunk::<4>(),
        b.first_chunk::<4>(),
        a.last_chunk::<4>(),
        b.last_chunk::<4>(),
    ) {
        return a0 == b0 && a1 == b1;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn agrees_with_slice_equality_at_every_length_and_position() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a.clone()), "len {len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "len {len}, differs at {at}");
                assert_eq!(same(&a, &b), a == b);
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(
                !same(&a, &longer) && !same(&longer, &a),
                "len {len} vs {}",
                len + 1
            );
        }
    }
}
