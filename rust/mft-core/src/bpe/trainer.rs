//! Byte-level BPE training, merge-for-merge identical to HF's `BpeTrainer`
//! with `initial_alphabet = ByteLevel.alphabet()`.
//!
//! HF's order: special tokens get the first ids, then the 256 byte chars
//! sorted by code point, then one id per merge. Each step merges the pair
//! with the highest count; ties go to the smallest (left id, right id).
//! Counts are updated incrementally: merging a pair in a word only touches
//! its neighbours, and a heap entry whose count went stale is re-queued
//! with the current count when it surfaces (HF's lazy update).

use super::added::{AddedToken, AddedVocab};
use super::byte_level::{alphabet_sorted, byte_to_char};
use super::components::{Decoder, Normalizer, PostProcessor, PreTokenizer};
use super::error::{Error, Result};
use super::model::{BpeModel, BpeOptions};
use super::models::Model;
use super::pretokenize::for_each_piece;
use super::tokenizer::{RawStages, Tokenizer};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde_json::json;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Debug)]
pub struct TrainerConfig {
    pub vocab_size: usize,
    /// Pairs seen fewer times than this are never merged.
    pub min_frequency: u64,
    pub special_tokens: Vec<String>,
    pub add_prefix_space: bool,
}

/// Counts pre-tokenized words from fed text, then learns merges.
pub struct Trainer {
    config: TrainerConfig,
    /// Raw (not yet byte-mapped) piece -> occurrences.
    word_counts: FxHashMap<String, u64>,
}

type Pair = (u32, u32);

struct Entry {
    pair: Pair,
    count: u64,
    words: Vec<u32>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.pair == other.pair
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap on count; among equal counts the smaller pair first.
        self.count
            .cmp(&other.count)
            .then_with(|| other.pair.cmp(&self.pair))
    }
}

impl Trainer {
    pub fn new(config: TrainerConfig) -> Result<Self> {
        if config.vocab_size == 0 {
            return Err(Error::Invalid("vocab_size must be at least 1".into()));
        }
        for (i, t) in config.special_tokens.iter().enumerate() {
            if t.is_empty() {
                return Err(Error::Invalid(format!("special_tokens[{i}] is empty")));
            }
        }
        Ok(Trainer {
            config,
            word_counts: FxHashMap::default(),
        })
    }

    /// Pre-tokenizes and counts `texts` (in parallel); call as often as needed.
    pub fn feed<S: AsRef<str> + Sync>(&mut self, texts: &[S]) {
        let add_prefix_space = self.config.add_prefix_space;
        let counts = super::pool::pool().install(|| {
            texts
                .par_chunks(256)
                .map(|chunk| {
                    let mut local: FxHashMap<&str, u64> = FxHashMap::default();
                    let mut prefixed = Vec::new();
                    for t in chunk {
                        let t = t.as_ref();
                        if add_prefix_space && !t.is_empty() && !t.starts_with(' ') {
                            prefixed.push(format!(" {t}"));
                        } else {
                            for_each_piece(t, |p| *local.entry(p).or_default() += 1);
                        }
                    }
                    let mut owned: FxHashMap<String, u64> =
                        local.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    for t in &prefixed {
                        for_each_piece(t, |p| *owned.entry(p.to_string()).or_default() += 1);
                    }
                    owned
                })
                .reduce(FxHashMap::default, |mut a, b| {
                    if a.len() < b.len() {
                        return merge_counts(b, a);
                    }
                    for (k, v) in b {
                        *a.entry(k).or_default() += v;
                    }
                    a
                })
        });
        self.word_counts = merge_counts(std::mem::take(&mut self.word_counts), counts);
    }

    pub fn distinct_words(&self) -> usize {
        self.word_counts.len()
    }

    pub fn train(&self) -> Result<Tokenizer> {
        super::pool::pool().install(|| self.train_inner())
    }

    fn train_inner(&self) -> Result<Tokenizer> {
        let cfg = &self.config;
        let mut id_to_word: Vec<String> = Vec::with_capacity(cfg.vocab_size);
        let mut word_to_id: FxHashMap<String, u32> = FxHashMap::default();
        let mut add = |s: String, id_to_word: &mut Vec<String>| -> u32 {
            if let Some(&id) = word_to_id.get(&s) {
                return id;
            }
            let id = id_to_word.len() as u32;
            word_to_id.insert(s.clone(), id);
            id_to_word.push(s);
            id
        };
        for t in &cfg.special_tokens {
            add(t.clone(), &mut id_to_word);
        }
        for c in alphabet_sorted() {
            add(c.to_string(), &mut id_to_word);
        }
        let mut byte_id = [0u32; 256];
        for b in 0..=255u8 {
            byte_id[b as usize] = add(byte_to_char(b).to_string(), &mut id_to_word);
        }

        let mut words: Vec<Vec<u32>> = Vec::with_capacity(self.word_counts.len());
        let mut counts: Vec<i64> = Vec::with_capacity(self.word_counts.len());
        for (w, &c) in &self.word_counts {
            words.push(w.bytes().map(|b| byte_id[b as usize]).collect());
            counts.push(c as i64);
        }

        let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
        let mut where_to_update: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
        for (i, w) in words.iter().enumerate() {
            for win in w.windows(2) {
                let pair = (win[0], win[1]);
                *pair_counts.entry(pair).or_default() += counts[i];
                push_unique(where_to_update.entry(pair).or_default(), i as u32);
            }
        }
        let mut queue: BinaryHeap<Entry> = BinaryHeap::with_capacity(pair_counts.len());
        flush_updates(&mut where_to_update, &pair_counts, &mut queue);

        let mut merges: Vec<(Pair, u32)> = Vec::new();
        let mut changes: Vec<(Pair, i64, u32)> = Vec::new();
        while id_to_word.len() < cfg.vocab_size {
            let Some(mut top) = queue.pop() else { break };
            let current = pair_counts[&top.pair] as u64;
            if top.count != current {
                top.count = current;
                queue.push(top);
                continue;
            }
            if top.count < 1 || cfg.min_frequency > top.count {
                break;
            }
            let merged = format!(
                "{}{}",
                id_to_word[top.pair.0 as usize], id_to_word[top.pair.1 as usize]
            );
            let new_id = add(merged, &mut id_to_word);
            merges.push((top.pair, new_id));

            changes.clear();
            for &w in &top.words {
                merge_in_word(&mut words[w as usize], top.pair, new_id, w, &mut changes);
            }
            for &(pair, change, w) in &changes {
                *pair_counts.entry(pair).or_default() += change * counts[w as usize];
                if change > 0 {
                    push_unique(where_to_update.entry(pair).or_default(), w);
                }
            }
            flush_updates(&mut where_to_update, &pair_counts, &mut queue);
        }

        // HF keeps merges in a map, so a pair merged twice keeps its last rank.
        let mut last_rank: FxHashMap<Pair, usize> = FxHashMap::default();
        for (i, (pair, _)) in merges.iter().enumerate() {
            last_rank.insert(*pair, i);
        }
        let merge_strings: Vec<(String, String)> = merges
            .iter()
            .enumerate()
            .filter(|(i, (pair, _))| last_rank[pair] == *i)
            .map(|(_, ((a, b), _))| {
                (
                    id_to_word[*a as usize].clone(),
                    id_to_word[*b as usize].clone(),
                )
            })
            .collect();

        let specials: Vec<AddedToken> = cfg
            .special_tokens
            .iter()
            .map(|t| AddedToken::special(word_to_id[t], t))
            .collect();
        let vocab: Vec<(String, u32)> = id_to_word
            .into_iter()
            .enumerate()
            .map(|(i, w)| (w, i as u32))
            .collect();
        let model = BpeModel::new(vocab, merge_strings, BpeOptions::default())?;
        Ok(Tokenizer {
            model: Model::Bpe(model),
            added: AddedVocab::new(specials)?,
            normalizer: Normalizer::none(),
            pre_tokenizer: PreTokenizer::byte_level(cfg.add_prefix_space),
            post_processor: PostProcessor::Identity,
            decoder: Decoder::byte_level(),
            raw: RawStages {
                normalizer: serde_json::Value::Null,
                pre_tokenizer: json!({"type": "ByteLevel", "add_prefix_space": cfg.add_prefix_space, "trim_offsets": true, "use_regex": true}),
                post_processor: json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}),
                decoder: json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
                model: serde_json::Value::Null,
                truncation: serde_json::Value::Null,
                padding: serde_json::Value::Null,
            },
            limits: Default::default(),
        })
    }
}

fn merge_counts(
    mut a: FxHashMap<String, u64>,
    b: FxHashMap<String, u64>,
) -> FxHashMap<String, u64> {
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
    a
}

/// Words are visited one at a time, so a repeat is always the last element.
fn push_unique(v: &mut Vec<u32>, w: u32) {
    if v.last() != Some(&w) {
        v.push(w);
    }
}

fn flush_updates(
    where_to_update: &mut FxHashMap<Pair, Vec<u32>>,
    pair_counts: &FxHashMap<Pair, i64>,
    queue: &mut BinaryHeap<Entry>,
) {
    for (pair, words) in where_to_update.drain() {
        let count = pair_counts[&pair];
        if count > 0 {
            queue.push(Entry {
                pair,
                count: count as u64,
                words,
            });
        }
    }
}

/// HF's `Word::merge`: merges every (a, b) left to right and records the
/// neighbour pairs that disappear (-1) and appear (+1).
fn merge_in_word(
    sym: &mut Vec<u32>,
    (a, b): Pair,
    new_id: u32,
    w: u32,
    changes: &mut Vec<(Pair, i64, u32)>,
) {
    let mut i = 0;
    while i < sym.len() {
        if sym[i] == a && i + 1 < sym.len() && sym[i + 1] == b {
            if i > 0 {
                changes.push(((sym[i - 1], a), -1, w));
                changes.push(((sym[i - 1], new_id), 1, w));
            }
            sym[i] = new_id;
            sym.remove(i + 1);
            if i + 1 < sym.len() {
                changes.push(((b, sym[i + 1]), -1, w));
                changes.push(((new_id, sym[i + 1]), 1, w));
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(texts: &[&str], vocab_size: usize, min_frequency: u64) -> Tokenizer {
        let mut t = Trainer::new(TrainerConfig {
            vocab_size,
            min_frequency,
            special_tokens: vec!["<|endoftext|>".into()],
            add_prefix_space: false,
        })
        .unwrap();
        t.feed(texts);
        t.train().unwrap()
    }

    #[test]
    fn specials_then_bytes_then_merges() {
        let tok = train(&["aaa aaa aaa bb"], 270, 1);
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        assert_eq!(tok.token_to_id("!"), Some(1)); // smallest code point of the alphabet
        assert_eq!(tok.model.vocab_len(), 257 + tok.model.merge_list().len());
        // "aa" (count 3 words x 2 pairs... ) is the most frequent pair.
        assert_eq!(
            tok.model.merge_list()[0],
            ("a".to_string(), "a".to_string())
        );
        assert_eq!(
            tok.encode("aaa", false),
            vec![tok.token_to_id("aaa").unwrap()]
        );
    }

    #[test]
    fn min_frequency_stops_merging() {
        let tok = train(&["ab ab cd"], 1000, 2);
        let merges = tok.model.merge_list();
        assert!(merges.contains(&("a".into(), "b".into())));
        assert!(!merges.contains(&("c".into(), "d".into())));
    }
}
