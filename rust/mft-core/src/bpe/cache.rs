//! A sharded word -> ids cache shared by all encoding threads.
//!
//! Natural text repeats words constantly, so most pieces skip the merge loop.
//! Shards keep lock contention low under `encode_batch`; a full shard is
//! simply cleared (cheap, and keeps memory bounded on endless input).

use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

const SHARDS: usize = 64;
const PER_SHARD: usize = 4096;
/// Longer pieces are rare and would only bloat the cache.
pub const MAX_KEY_BYTES: usize = 128;

pub struct WordCache {
    shards: Vec<Mutex<FxHashMap<Box<str>, Box<[u32]>>>>,
}

impl Default for WordCache {
    fn default() -> Self {
        WordCache { shards: (0..SHARDS).map(|_| Mutex::new(FxHashMap::default())).collect() }
    }
}

impl WordCache {
    fn shard(&self, key: &str) -> &Mutex<FxHashMap<Box<str>, Box<[u32]>>> {
        let mut h = FxHasher::default();
        key.hash(&mut h);
        &self.shards[(h.finish() >> 32) as usize % SHARDS]
    }

    /// Appends the cached ids of `key` to `out`; false on a miss.
    pub fn get_into(&self, key: &str, out: &mut Vec<u32>) -> bool {
        let map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(ids) => {
                out.extend_from_slice(ids);
                true
            }
            None => false,
        }
    }

    pub fn insert(&self, key: &str, ids: &[u32]) {
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PER_SHARD {
            map.clear();
        }
        map.insert(key.into(), ids.into());
    }
}
