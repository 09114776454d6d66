//! A node's data registry (`get_data`, `put_data`, `del_data`): keys and values that
//! peers store on it, under a size limit counted as the bytes of every key and value.

use std::collections::HashMap;

use bytes::Bytes;
use thiserror::Error;

/// Why a value was not stored (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("too_large: the data registry holds at most {limit} bytes")]
pub struct TooLarge {
    /// The limit.
    pub limit: usize,
}

impl TooLarge {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        "too_large"
    }
}

/// The registry.
#[derive(Debug, Default)]
pub struct DataRegistry {
    values: HashMap<String, Bytes>,
    size: usize,
    limit: usize,
}

impl DataRegistry {
    /// An empty registry holding at most `limit` bytes of keys and values.
    pub fn new(limit: usize) -> Self {
        DataRegistry {
            values: HashMap::new(),
            size: 0,
            limit,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Bytes> {
        self.values.get(key)
    }

    /// Stores `value` under `key` (replacing the old one), unless the registry would
    /// exceed its limit.
    pub fn put(&mut self, key: String, value: Bytes) -> Result<(), TooLarge> {
        let old = self.values.get(&key).map_or(0, |v| key.len() + v.len());
        let size = self.size - old + key.len() + value.len();
        if size > self.limit {
            return Err(TooLarge { limit: self.limit });
        }
        self.size = size;
        self.values.insert(key, value);
        Ok(())
    }

    /// Deletes `key` (absent is fine).
    pub fn delete(&mut self, key: &str) {
        if let Some(v) = self.values.remove(key) {
            self.size -= key.len() + v.len();
        }
    }

    /// Bytes held (keys and values).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes it may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_keys_and_values_and_replacing_frees_the_old_value() {
        let mut d = DataRegistry::new(10);
        assert_eq!(d.put("ab".into(), Bytes::from_static(b"123456")), Ok(()));
        assert_eq!(d.size(), 8);
        assert_eq!(
            d.put("cd".into(), Bytes::from_static(b"1")),
            Err(TooLarge { limit: 10 })
        );
        assert_eq!(d.size(), 8);
        // Replacing counts the new value only.
        assert_eq!(d.put("ab".into(), Bytes::from_static(b"12345678")), Ok(()));
        assert_eq!(d.size(), 10);
        assert_eq!(d.get("ab").map(|v| v.len()), Some(8));
        d.delete("ab");
        d.delete("ab");
        assert_eq!((d.size(), d.get("ab")), (0, None));
    }
}
