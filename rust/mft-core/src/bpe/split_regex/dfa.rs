//! Split regexes without a hand-written scanner, on `regex-automata`'s meta
//! engine (lazy DFA, no backtracking) whenever its syntax allows.
//!
//! tiktoken-style patterns end in `\s+(?!\S)|\s+`, a look-ahead the DFA
//! cannot run. Together the two branches mean "the whitespace run, minus its
//! last char when a non-space follows and the run is longer than one char",
//! so the pattern is searched as two patterns (the rest, then `\s+`, earlier
//! ones winning at the same start as in the alternation) and a match of the
//! second is shortened afterwards.

use regex_automata::meta::{Cache, Regex};
use regex_automata::Input;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

const TAILS: [&str; 2] = [r"|\s+(?!\S)|\s+", r"|\s+(?!\S)|\s"];

#[derive(Clone, Debug)]
pub struct Dfa {
    re: Regex,
    /// The second pattern is the `\s+(?!\S)|\s+` tail.
    ws_tail: bool,
    /// Key of this regex's per-thread search caches.
    uid: u64,
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CACHES: RefCell<Vec<(u64, Cache)>> = const { RefCell::new(Vec::new()) };
}

impl Dfa {
    /// The DFA form of `source`, if it has one with the same matches.
    pub fn new(source: &str) -> Option<Dfa> {
        if has_possessive(source) {
            return None;
        }
        let uid = NEXT_UID.fetch_add(1, Ordering::Relaxed);
        if let Ok(re) = Regex::new(source) {
            return never_empty(source).then_some(Dfa {
                re,
                ws_tail: false,
                uid,
            });
        }
        let rest = TAILS.iter().find_map(|t| source.strip_suffix(t))?;
        // An escaped `|` would mean the tail is not a top-level branch.
        if rest.is_empty() || rest.ends_with('\\') {
            return None;
        }
        let re = Regex::new_many(&[rest, r"\s+"]).ok()?;
        never_empty(rest).then_some(Dfa {
            re,
            ws_tail: true,
            uid,
        })
    }

    /// Calls `f(start, end)` for every (non-empty) match, in order.
    pub fn for_each_match(&self, text: &str, f: &mut dyn FnMut(usize, usize)) {
        let mut cache = self.take_cache();
        let mut pos = 0;
        while pos < text.len() {
            let input = Input::new(text).span(pos..text.len());
            let Some(m) = self.re.search_with(&mut cache, &input) else {
                break;
            };
            let (start, mut end) = (m.start(), m.end());
            if self.ws_tail && m.pattern().as_usize() == 1 && end < text.len() {
                let last = text[start..end]
                    .char_indices()
                    .next_back()
                    .map_or(0, |(i, _)| i);
                if last > 0 {
                    end = start + last;
                }
            }
            f(start, end);
            pos = end;
        }
        self.put_cache(cache);
    }

    /// This thread's cache for this regex, taken out (a nested search of the
    /// same regex from inside `f` then simply makes its own).
    fn take_cache(&self) -> Cache {
        CACHES
            .with(|c| {
                let mut c = c.borrow_mut();
                let i = c.iter().position(|(u, _)| *u == self.uid)?;
                Some(c.swap_remove(i).1)
            })
            .unwrap_or_else(|| self.re.create_cache())
    }

    fn put_cache(&self, cache: Cache) {
        CACHES.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= 8 {
                c.remove(0);
            }
            c.push((self.uid, cache));
        })
    }
}

/// True when `source` cannot match the empty string (empty matches would
/// need the engines' differing rules for where the next search starts).
fn never_empty(source: &str) -> bool {
    regex_syntax::Parser::new()
        .parse(source)
        .is_ok_and(|h| h.properties().minimum_len().is_some_and(|n| n > 0))
}

/// True when `source` has a possessive quantifier (`x++`, `x*+`, `x?+`,
/// `x{n}+`): regex-syntax would read it as a repeated repetition instead.
fn has_possessive(source: &str) -> bool {
    let b = source.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                // `\p{..}`, `\x{..}`, `\u{..}` end at their brace; others are two chars.
                if matches!(b.get(i + 1), Some(b'p' | b'P' | b'x' | b'u'))
                    && b.get(i + 2) == Some(&b'{')
                {
                    i += b[i..]
                        .iter()
                        .position(|&c| c == b'}')
                        .unwrap_or(b.len() - i);
                } else {
                    i += 1;
                }
            }
            b'[' => in_class = true,
            b']' => in_class = false,
            b'+' | b'*' | b'?' | b'}' if !in_class && b.get(i + 1) == Some(&b'+') => return true,
            _ => {}
        }
        i += 1;
    }
    false
}
