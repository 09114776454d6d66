//! Room in the process's descriptor table for the links a listening node will hold.
//!
//! Linux grows a process's descriptor table by doubling it when a new descriptor does not
//! fit (64, 256, 512, 1,024, ... slots); in a multi-threaded process each growth waits
//! for an RCU grace period, during which the thread that opens the descriptor (a
//! `socket` or `accept` of a link) sleeps and every other thread opening one waits for
//! it: a stall of milliseconds to tens of milliseconds per doubling, in the middle of a
//! join storm. The table never shrinks, so a listening node makes its room once, at its
//! first bind, by duplicating a descriptor to [`room_descriptor`]'s number and closing
//! the copy: one growth, before any link, instead of one per doubling while links
//! arrive. The shell performs it; this module decides the number.
//!
//! ```
//! use nkcluster_core::descriptors::{room_descriptor, DESCRIPTOR_ROOM};
//! assert_eq!(room_descriptor(None), Some(DESCRIPTOR_ROOM - 1));
//! assert_eq!(room_descriptor(Some(1_024)), Some(1_023));
//! assert_eq!(room_descriptor(Some(64)), None);
//! ```

/// Descriptors a listening node makes room for: a control node with ten thousand
/// workers (one descriptor per link) and some to spare. The table costs the kernel
/// 8 bytes a slot (128 KiB here), which the links would need anyway.
pub const DESCRIPTOR_ROOM: u64 = 16_384;

/// Slots every process's table starts with: room below this needs no growth.
pub const INITIAL_SLOTS: u64 = 64;

/// The descriptor number to duplicate to (and close) so that the table holds
/// [`DESCRIPTOR_ROOM`] slots, or as many as the process may open (`soft_limit`, the
/// `RLIMIT_NOFILE` soft limit; `None` when unlimited): a descriptor must stay below it.
/// `None` when the room would fit the initial table: nothing to do.
pub fn room_descriptor(soft_limit: Option<u64>) -> Option<u64> {
    let slots = soft_limit.map_or(DESCRIPTOR_ROOM, |l| l.min(DESCRIPTOR_ROOM));
    (slots > INITIAL_SLOTS).then(|| slots - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_bounded_by_the_soft_limit_and_skipped_when_it_fits_the_initial_table() {
        assert_eq!(room_descriptor(None), Some(16_383));
        assert_eq!(room_descriptor(Some(1_048_576)), Some(16_383));
        assert_eq!(room_descriptor(Some(16_384)), Some(16_383));
        assert_eq!(room_descriptor(Some(16_385)), Some(16_383));
        assert_eq!(room_descriptor(Some(20_000)), Some(16_383));
        assert_eq!(room_descriptor(Some(1_024)), Some(1_023));
        assert_eq!(room_descriptor(Some(65)), Some(64));
        assert_eq!(room_descriptor(Some(64)), None);
        assert_eq!(room_descriptor(Some(0)), None);
    }
}
