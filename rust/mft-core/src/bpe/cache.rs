//! Word -> ids cache, one per (thread, tokenizer).
//!
//! Natural text repeats words constantly, so most pieces skip the merge
//! loop. A shared locked map made two threads slower than one (every hit
//! writes the lock's cache line; a lock-free-on-hit second level was measured
//! slower too), so each thread keeps its own maps, for its few most recently
//! used tokenizers. Memory stays bounded on endless input by two
//! generations: when the current maps are full they become the old ones (the
//! previous old ones are dropped) and a hit in the old maps moves the entry
//! back. Text with a large vocabulary of distinct words (source code,
//! multilingual text) fills the maps quickly; clearing them outright, as
//! before, also threw away the frequent words every 65k new ones.
//!
//! Lookups were ~60% of encode time with string keys on the heap (a pointer
//! chase and a memcmp per piece). Pieces of up to 15 bytes - nearly every
//! word - are now keyed by one 128-bit integer (their bytes and length) with
//! up to three ids stored in the table itself: a hit hashes and compares two
//! words and touches one table slot. Longer pieces keep string keys. An
//! encoder takes the thread's maps once per text (`with_local`), not per piece.

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_ENTRIES: usize = 1 << 16;
/// Tokenizers remembered per thread (least recently used goes first).
const MAX_TOKENIZERS: usize = 4;
/// Longer pieces are rare and would only bloat the cache.
const MAX_KEY_BYTES: usize = 128;
/// Pieces up to this long get an integer key.
const SHORT_KEY_BYTES: usize = 15;
const INLINE_IDS: usize = 3;

/// A short piece's bytes packed into 16 bytes, its length in the last one.
type ShortKey = [u64; 2];

/// The key of a piece of up to 15 bytes: its bytes in order (for 1-3 bytes:
/// the first, middle and last) and its length, so two keys are equal only
/// for equal pieces.
/// Built from overlapping loads, not a byte copy into a buffer (reading such
/// a buffer back stalled on store forwarding).
#[inline]
fn short_key(b: &[u8]) -> Option<ShortKey> {
    let n = b.len();
    let load8 = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let load4 = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes")) as u64;
    let (lo, hi) = match n {
        0 => (0, 0),
        1..=3 => (
            b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16,
            0,
        ),
        4..=7 => (
            load4(&b[..4]) | (load4(&b[n - 4..]) >> (8 * (8 - n))) << 32,
            0,
        ),
        8 => (load8(b), 0),
        9..=SHORT_KEY_BYTES => (load8(&b[..8]), load8(&b[n - 8..]) >> (8 * (16 - n))),
        _ => return None,
    };
    Some([lo, hi | (n as u64) << 56])
}

/// A piece's ids: a few inline, more on the heap.
enum Ids {
    Inline(u8, [u32; INLINE_IDS]),
    Heap(Box<[u32]>),
}

impl Ids {
    fn new(ids: &[u32]) -> Ids {
        if ids.len() <= INLINE_IDS {
            let mut inline = [0; INLINE_IDS];
            inline[..ids.len()].copy_from_slice(ids);
            Ids::Inline(ids.len() as u8, inline)
        } else {
            Ids::Heap(ids.into())
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::Inline(n, ids) => &ids[..*n as usize],
            Ids::Heap(ids) => ids,
        }
    }
}

/// One generation of entries.
#[derive(Default)]
struct Maps {
    short: FxHashMap<ShortKey, Ids>,
    long: FxHashMap<Box<str>, Box<[u32]>>,
}

impl Maps {
    #[inline]
    fn get(&self, piece: &str, key: Option<&ShortKey>) -> Option<&[u32]> {
        match key {
            Some(k) => self.short.get(k).map(Ids::as_slice),
            None if piece.len() <= MAX_KEY_BYTES => self.long.get(piece).map(|ids| &ids[..]),
            None => None,
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }
}

/// Entries of the front table (a power of two): 8192 x 32 bytes stays in a
/// core's L2 cache, where the maps (MBs) cost a memory access per lookup.
const FRONT_BITS: u32 = 13;
/// A key no piece has (its length byte is over 15): an empty slot.
const EMPTY_KEY: ShortKey = [u64::MAX, u64::MAX];

/// One slot of the front table: a short piece and its (at most three) ids.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct FrontEntry {
    key: ShortKey,
    n: u32,
    ids: [u32; INLINE_IDS],
}

impl FrontEntry {
    const EMPTY: FrontEntry = FrontEntry {
        key: EMPTY_KEY,
        n: 0,
        ids: [0; INLINE_IDS],
    };
}

/// Slot of `key` in the front table.
#[inline(always)]
fn front_slot(key: &ShortKey) -> usize {
    let h = (key[0] ^ key[1].rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - FRONT_BITS)) as usize
}

/// Appends `ids[..n]` (n <= 3) to `out` without a memcpy call.
#[inline(always)]
fn push_inline(out: &mut Vec<u32>, ids: &[u32; INLINE_IDS], n: usize) {
    debug_assert!(n <= INLINE_IDS);
    out.reserve(INLINE_IDS);
    let len = out.len();
    // SAFETY: `reserve` made room for INLINE_IDS more elements; all three are
    // written (initialised) and only the first `n <= INLINE_IDS` are kept.
    unsafe {
        std::ptr::copy_nonoverlapping(ids.as_ptr(), out.as_mut_ptr().add(len), INLINE_IDS);
        out.set_len(len + n);
    }
}

/// One thread's cache for one tokenizer, plus the merge loop's scratch
/// buffers (a miss then allocates nothing but its cache entry).
///
/// Lookups go first to a direct-mapped front table of short pieces with up
/// to three ids (the frequent words: ~80% of held-out pieces hit it), then
/// to the two generations of maps. Front entries never go stale: a piece's
/// ids are fixed for the tokenizer.
pub struct LocalCache {
    front: Box<[FrontEntry]>,
    current: Maps,
    old: Maps,
    pub(crate) symbols: Vec<u32>,
    pub(crate) ranks: Vec<(u32, u32)>,
}

impl Default for LocalCache {
    fn default() -> Self {
        LocalCache {
            front: vec![FrontEntry::EMPTY; 1 << FRONT_BITS].into_boxed_slice(),
            current: Maps::default(),
            old: Maps::default(),
            symbols: Vec::new(),
            ranks: Vec::new(),
        }
    }
}

impl LocalCache {
    /// Appends the cached ids of `piece` to `out`; false on a miss.
    #[inline]
    pub fn get_into(&mut self, piece: &str, out: &mut Vec<u32>) -> bool {
        let key = short_key(piece.as_bytes());
        if let Some(k) = &key {
            let e = &self.front[front_slot(k)];
            if e.key == *k {
                push_inline(out, &e.ids, e.n as usize);
                return true;
            }
        }
        if let Some(ids) = self.current.get(piece, key.as_ref()) {
            out.extend_from_slice(ids);
            if let Some(k) = &key {
                Self::remember_front(&mut self.front, k, ids);
            }
            return true;
        }
        if self.old.len() == 0 {
            return false;
        }
        let start = out.len();
        match self.old.get(piece, key.as_ref()) {
            Some(ids) => out.extend_from_slice(ids),
            None => return false,
        }
        // Still in use: back into the current generation.
        let ids = out[start..].to_vec();
        self.insert(piece, &ids);
        true
    }

    #[inline]
    fn remember_front(front: &mut [FrontEntry], key: &ShortKey, ids: &[u32]) {
        if ids.len() <= INLINE_IDS {
            let mut e = FrontEntry {
                key: *key,
                n: ids.len() as u32,
                ids: [0; INLINE_IDS],
            };
            e.ids[..ids.len()].copy_from_slice(ids);
            front[front_slot(key)] = e;
        }
    }

    /// Remembers `piece` -> `ids` (pieces over MAX_KEY_BYTES are not kept).
    pub fn insert(&mut self, piece: &str, ids: &[u32]) {
        if piece.len() > MAX_KEY_BYTES {
            return;
        }
        if self.current.len() >= MAX_ENTRIES {
            // Sized like the last one: the next generation will fill up too.
            let next = Maps {
                short: FxHashMap::with_capacity_and_hasher(
                    self.current.short.len(),
                    Default::default(),
                ),
                long: FxHashMap::with_capacity_and_hasher(
                    self.current.long.len(),
                    Default::default(),
                ),
            };
            self.old = std::mem::replace(&mut self.current, next);
        }
        let Maps { short, long } = &mut self.current;
        match short_key(piece.as_bytes()) {
            Some(k) => {
                Self::remember_front(&mut self.front, &k, ids);
                short.insert(k, Ids::new(ids));
            }
            None => {
                long.insert(piece.into(), ids.into());
            }
        }
    }
}

thread_local! {
    /// (tokenizer uid, its cache), most recently used last.
    static LOCAL: RefCell<Vec<(u64, LocalCache)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// A tokenizer's handle on its per-thread caches.
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
    /// Runs `f` with this thread's cache for this tokenizer. Not re-entrant:
    /// `f` must not call `with_local` again (encoders pass the cache down).
    pub fn with_local<R>(&self, f: impl FnOnce(&mut LocalCache) -> R) -> R {
        LOCAL.with(|cell| {
            let mut caches = cell.borrow_mut();
            if caches.last().map(|(u, _)| *u) != Some(self.uid) {
                match caches.iter().position(|(u, _)| *u == self.uid) {
                    Some(i) => {
                        let entry = caches.remove(i);
                        caches.push(entry);
                    }
                    None => {
                        if caches.len() >= MAX_TOKENIZERS {
                            caches.remove(0);
                        }
                        caches.push((self.uid, LocalCache::default()));
                    }
                }
            }
            f(&mut caches.last_mut().expect("just pushed").1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_exactly_bytes_and_length() {
        // Every piece of 0..=15 bytes maps to its bytes zero-padded plus its length.
        for n in 0..=SHORT_KEY_BYTES {
            let piece: Vec<u8> = (0..n as u8).map(|i| 0xA0 ^ i.wrapping_mul(37)).collect();
            let mut buf = [0u8; 16];
            if n >= 4 || n == 0 {
                buf[..n].copy_from_slice(&piece);
            } else {
                buf[..3].copy_from_slice(&[piece[0], piece[n / 2], piece[n - 1]]);
            }
            buf[15] = n as u8;
            let want = [
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                u64::from_le_bytes(buf[8..].try_into().unwrap()),
            ];
            assert_eq!(short_key(&piece), Some(want), "length {n}");
        }
        assert_eq!(short_key(&[0u8; 16]), None);
        // Same prefix, different lengths or trailing NULs: different keys.
        assert_ne!(short_key(b"ab"), short_key(b"ab\0"));
        assert_ne!(short_key(b"abcdefgh"), short_key(b"abcdefgh\0"));
    }

    #[test]
    fn short_and_long_pieces_round_trip_and_never_collide() {
        let mut c = LocalCache::default();
        let pieces = [
            "a",
            "a\0",
            "\0",
            "",
            "ab",
            "exactly15bytes!",
            "sixteen bytes!!!",
            &"x".repeat(100),
        ];
        for (i, p) in pieces.iter().enumerate() {
            let ids: Vec<u32> = (0..i as u32 + 1).collect(); // 1..8 ids: inline and heap
            c.insert(p, &ids);
        }
        for (i, p) in pieces.iter().enumerate() {
            let mut out = vec![99];
            assert!(c.get_into(p, &mut out), "{p:?}");
            assert_eq!(out[1..], (0..i as u32 + 1).collect::<Vec<_>>()[..], "{p:?}");
        }
        let mut out = Vec::new();
        assert!(!c.get_into("b", &mut out) && out.is_empty());
        c.insert(&"y".repeat(MAX_KEY_BYTES + 1), &[1]);
        assert!(!c.get_into(&"y".repeat(MAX_KEY_BYTES + 1), &mut out));
    }

    #[test]
    fn front_table_collisions_keep_every_answer_exact() {
        let mut c = LocalCache::default();
        // Far more short pieces than front slots: many share a slot.
        let n = 5 * (1u32 << FRONT_BITS);
        let ids_of = |i: u32| -> Vec<u32> { (0..i % 5).map(|j| i * 7 + j).collect() };
        for i in 0..n {
            c.insert(&format!("p{i}"), &ids_of(i));
        }
        for round in 0..2 {
            for i in (0..n).rev() {
                let mut out = vec![u32::MAX];
                assert!(c.get_into(&format!("p{i}"), &mut out), "p{i} round {round}");
                assert_eq!(out[1..], ids_of(i)[..], "p{i} round {round}");
            }
        }
        let mut out = Vec::new();
        assert!(!c.get_into("q1", &mut out) && out.is_empty());
    }

    #[test]
    fn words_in_use_survive_generations() {
        let mut c = LocalCache::default();
        c.insert("the", &[7]);
        let mut out = Vec::new();
        // Many distinct words pass through; "the" keeps being used.
        for i in 0..3 * MAX_ENTRIES as u32 {
            c.insert(&format!("w{i}"), &[i]);
            if i % 1000 == 0 {
                out.clear();
                assert!(c.get_into("the", &mut out), "evicted at {i}");
                assert_eq!(out, [7]);
            }
        }
        // A word not used for a whole generation is gone from the maps (the
        // fixed-size front table may still hold it); memory stays bounded.
        let k = short_key(b"w0");
        assert!(c.current.get("w0", k.as_ref()).is_none() && c.old.get("w0", k.as_ref()).is_none());
        assert!(c.current.len() <= MAX_ENTRIES && c.old.len() <= MAX_ENTRIES);
        out.clear();
        assert!(c.get_into(&format!("w{}", 3 * MAX_ENTRIES - 1), &mut out));
    }
}
