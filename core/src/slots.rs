//! A bounded table of a node's running things by key (OS processes, container tasks):
//! what the job classes that start them admit, find and release. Full and taken keys are
//! refused with the class's own error code and words.
//!
//! ```
//! use nkcluster_core::error::ErrorCode;
//! use nkcluster_core::slots::{Slots, SlotWords};
//! const WORDS: SlotWords = SlotWords {
//!     one: "process",
//!     many: "processes",
//!     full: ErrorCode::TooManyProcesses,
//! };
//! let mut t = Slots::new(1, WORDS);
//! assert_eq!(t.admit(1, "a"), Ok(()));
//! assert_eq!(t.admit(2, "b").map_err(|e| e.message),
//!            Err("the node runs 1 processes, its limit".to_owned()));
//! assert_eq!(t.release(1), Some("a"));
//! ```

use std::collections::BTreeMap;

use crate::error::ErrorCode;
use crate::message::RemoteError;

/// How a table names its entries in its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWords {
    /// One entry (`process`, `container task`).
    pub one: &'static str,
    /// Several (`processes`, `containers`).
    pub many: &'static str,
    /// The code when full.
    pub full: ErrorCode,
}

/// At most `max` entries by key.
#[derive(Debug)]
pub struct Slots<H> {
    max: usize,
    words: SlotWords,
    entries: BTreeMap<u64, H>,
}

impl<H> Slots<H> {
    /// An empty table of at most `max`.
    pub fn new(max: usize, words: SlotWords) -> Self {
        Slots {
            max,
            words,
            entries: BTreeMap::new(),
        }
    }

    /// Adds `key`: the table's `full` code when full, `already_started` when taken.
    pub fn admit(&mut self, key: u64, h: H) -> Result<(), RemoteError> {
        if self.entries.contains_key(&key) {
            return Err(RemoteError::new(
                ErrorCode::AlreadyStarted,
                format!("{} {key} exists", self.words.one),
            ));
        }
        if self.entries.len() >= self.max {
            return Err(RemoteError::new(
                self.words.full.clone(),
                format!("the node runs {} {}, its limit", self.max, self.words.many),
            ));
        }
        self.entries.insert(key, h);
        Ok(())
    }

    /// Removes `key`.
    pub fn release(&mut self, key: u64) -> Option<H> {
        self.entries.remove(&key)
    }

    /// The entry of `key`.
    pub fn entry(&self, key: u64) -> Option<&H> {
        self.entries.get(&key)
    }

    /// Every entry, by key.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &H)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
