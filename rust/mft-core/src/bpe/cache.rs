//! Word -> ids cache, one per (thread, tokenizer).
//!
//! Natural text repeats words constantly, so most pieces skip the merge
//! loop. A shared locked map made two threads slower than one (every hit
//! writes the lock's cache line), so each thread keeps its own maps, for
//! its few most recently used tokenizers. A full map is simply cleared,
//! which keeps memory bounded on endless input.

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_ENTRIES: usize = 1 << 16;
/// Tokenizers remembered per thread (least recently used goes first).
const MAX_TOKENIZERS: usize = 4;
/// Longer pieces are rare and would only bloat the cache.
pub const MAX_KEY_BYTES: usize = 128;

type Map = FxHashMap<Box<str>, Box<[u32]>>;

thread_local! {
    /// (tokenizer uid, its map), most recently used last.
    static LOCAL: RefCell<Vec<(u64, Map)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

pub struct WordCache {
    uid: u64,
}

impl Default for WordCache {
    fn default() -> Self {
        WordCache {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl WordCache {
    fn with_map<R>(&self, f: impl FnOnce(&mut Map) -> R) -> R {
        LOCAL.with(|cell| {
            let mut maps = cell.borrow_mut();
            if maps.last().map(|(u, _)| *u) != Some(self.uid) {
                match maps.iter().position(|(u, _)| *u == self.uid) {
                    Some(i) => {
                        let entry = maps.remove(i);
                        maps.push(entry);
                    }
                    None => {
                        if maps.len() >= MAX_TOKENIZERS {
                            maps.remove(0);
                        }
                        maps.push((self.uid, Map::default()));
                    }
                }
            }
            let map = &mut maps.last_mut().expect("just pushed").1;
            f(map)
        })
    }

    /// Appends the cached ids of `key` to `out`; false on a miss.
    pub fn get_into(&self, key: &str, out: &mut Vec<u32>) -> bool {
        self.with_map(|map| match map.get(key) {
            Some(ids) => {
                out.extend_from_slice(ids);
                true
            }
            None => false,
        })
    }

    pub fn insert(&self, key: &str, ids: &[u32]) {
        self.with_map(|map| {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key.into(), ids.into());
        })
    }
}
