//! Cross-module tests: HF fixture parity, round trips on arbitrary text,
//! the scanner against a real regex engine, and no panics on broken files.

use super::*;
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizers")
}

/// xorshift: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Strings mixing ASCII, whitespace kinds, contractions, CJK, emoji,
/// combining marks and arbitrary code points.
fn random_text(rng: &mut Rng) -> String {
    const ATOMS: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "a",
        "Zq",
        "é",
        "ß",
        "你好",
        "1",
        "42",
        "٣",
        "½",
        "!",
        "'",
        "'s",
        "'ll",
        "'ve",
        "'D",
        "😀",
        "👍🏽",
        "\u{301}",
        "-",
        "the",
        " the",
        "?!",
        "\0",
        "\u{200b}",
        "𝔘",
        "<|endoftext|>",
    ];
    let mut s = String::new();
    for _ in 0..1 + rng.below(25) {
        if rng.below(8) == 0 {
            // Any scalar value.
            let c = loop {
                if let Some(c) = char::from_u32((rng.next() % 0x11_0000) as u32) {
                    break c;
                }
            };
            s.push(c);
        } else {
            s.push_str(ATOMS[rng.below(ATOMS.len())]);
        }
    }
    s
}

fn fixture_tokenizer(name: &str) -> Tokenizer {
    from_file(&fixtures().join(name)).expect("fixture tokenizer loads")
}

#[test]
fn hf_fixture_cases_match() {
    for name in [
        "gpt2_style",
        "prefix_space_template",
        "chatml",
        "mft_trained",
        "llama3_style",
        "qwen2_style",
        "llama2_style",
        "mistral_style",
        "metaspace_split",
        // Coverage files (tools/tokenizer_coverage_fixtures.py).
        "bert_wordpiece",
        "bert_cased_wordpiece",
        "t5_unigram",
        "albert_unigram",
        "unigram_byte_fallback",
        "gemma_style",
        "split_behaviours",
        "wordlevel_scripts",
        "metaspace_never",
        "nfkc_byte_level",
        "byte_level_no_regex",
        "cl100k_style",
        "o200k_style",
        "qwen25_style",
        "deepseek_v3_style",
        "truncate_pad_fixed",
        "truncate_left_pad_longest",
        "byte_level_normalizer",
    ] {
        let text = std::fs::read_to_string(fixtures().join(format!("{name}.cases.json"))).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let tok = fixture_tokenizer(doc["tokenizer"].as_str().unwrap());
        let ids = |v: &Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        for case in doc["cases"].as_array().unwrap() {
            let t = case["text"].as_str().unwrap();
            assert_eq!(tok.encode(t, true), ids(&case["ids"]), "{name}: {t:?}");
            assert_eq!(
                tok.encode(t, false),
                ids(&case["ids_no_special"]),
                "{name}: {t:?}"
            );
            assert_eq!(
                tok.decode(&ids(&case["ids"]), true),
                case["decoded"].as_str().unwrap(),
                "{name}: {t:?}"
            );
            assert_eq!(
                tok.decode(&ids(&case["ids"]), false),
                case["decoded_keep_special"].as_str().unwrap(),
                "{name}: {t:?}"
            );
            let (with_off, offsets) = tok.encode_with_offsets(t, true);
            assert_eq!(with_off, ids(&case["ids"]), "{name}: {t:?}");
            let want: Vec<(usize, usize)> = case["offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    (
                        o[0].as_u64().unwrap() as usize,
                        o[1].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            assert_eq!(offsets, want, "{name} offsets: {t:?}");
        }
    }
}

#[test]
fn decode_encode_round_trips_arbitrary_text() {
    let trained = {
        let mut t = Trainer::new(TrainerConfig {
            vocab_size: 400,
            min_frequency: 1,
            special_tokens: vec!["<|endoftext|>".into()],
            add_prefix_space: false,
        })
        .unwrap();
        let mut rng = Rng(7);
        let corpus: Vec<String> = (0..300).map(|_| random_text(&mut rng)).collect();
        t.feed(&corpus);
        t.train().unwrap()
    };
    let toks = [
        fixture_tokenizer("gpt2_style.json"),
        fixture_tokenizer("chatml.json"),
        trained,
    ];
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let s = random_text(&mut rng);
        for tok in &toks {
            assert_eq!(tok.decode(&tok.encode(&s, false), false), s);
        }
    }
    // A long single piece takes the heap merge path.
    let long = "你好".repeat(500) + &"ab".repeat(300);
    for tok in &toks {
        assert_eq!(tok.decode(&tok.encode(&long, false), false), long);
    }
}

#[test]
fn batch_equals_single_and_keeps_order() {
    let tok = fixture_tokenizer("chatml.json");
    let mut rng = Rng(5);
    let texts: Vec<String> = (0..500).map(|_| random_text(&mut rng)).collect();
    let batch = tok.encode_batch(&texts, true);
    for (t, ids) in texts.iter().zip(&batch) {
        assert_eq!(&tok.encode(t, true), ids);
    }
}

#[test]
fn scanner_matches_the_gpt2_regex() {
    let re = fancy_regex::Regex::new(
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    )
    .unwrap();
    let mut rng = Rng(2024);
    for _ in 0..5000 {
        let s = random_text(&mut rng);
        // Skip rare code points where Unicode table versions may differ.
        if s.chars()
            .any(|c| c as u32 > 0x2FFFF && !matches!(c, '😀' | '👍' | '🏽' | '𝔘'))
        {
            continue;
        }
        let expected: Vec<&str> = re.find_iter(&s).map(|m| m.unwrap().as_str()).collect();
        assert_eq!(pieces(&s), expected, "{s:?}");
    }
}

#[test]
fn broken_files_are_errors_not_panics() {
    let good = std::fs::read_to_string(fixtures().join("chatml.json")).unwrap();
    assert!(from_json_str(&good).is_ok());
    let mut rng = Rng(11);
    let bytes = good.as_bytes();
    for _ in 0..300 {
        let mut b = bytes.to_vec();
        match rng.below(3) {
            0 => b.truncate(rng.below(b.len())),
            1 => {
                let i = rng.below(b.len());
                b[i] = b"{}[]\",:0 x"[rng.below(10)];
            }
            _ => {
                let i = rng.below(b.len());
                b.drain(i..(i + 1 + rng.below(40)).min(b.len()));
            }
        }
        let _ = from_json_str(&String::from_utf8_lossy(&b));
    }
    for (doc, want) in [
        ("[]", "the top level: expected an object"),
        ("{}", "missing \"model\""),
        (
            r#"{"model": {"type": "Nope"}}"#,
            "unsupported model type \"Nope\" at model.type (mft supports BPE, WordPiece, Unigram, WordLevel)",
        ),
        (r#"{"model": {"type": "Unigram"}}"#, "missing \"model.vocab\""),
        (
            r#"{"model": {"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 3}}"#,
            "model.unk_id 3 is outside model.vocab",
        ),
        (
            r#"{"model": {"type": "WordLevel", "vocab": {}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "Split", "pattern": {"Regex": "(?<!"}, "behavior": "Removed"}]}}"#,
            "pre_tokenizer.pretokenizers[1].pattern.Regex: mft's regex engine",
        ),
        (
            r#"{"model": {"type": "WordLevel", "vocab": {}}, "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Weird"}]}}"#,
            "unsupported normalizer.normalizers[1] type \"Weird\" (mft supports NFC, NFD",
        ),
        (
            r#"{"model": {"type": "WordLevel", "vocab": {}}, "pre_tokenizer": {"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"}}"#,
            "pre_tokenizer.behavior: expected \"Removed\"",
        ),
        (
            r#"{"model": {"vocab": {"a": 0}, "merges": [["a", "b"]]}}"#,
            "model.merges[0]: token \"b\"",
        ),
        (
            r#"{"model": {"vocab": {"a": 0, "b": 0}}}"#,
            "id 0 is used by both",
        ),
    ] {
        let err = from_json_str(doc).err().expect(doc).to_string();
        assert!(err.contains(want), "{doc}: {err}");
    }
}

#[test]
fn saved_json_reloads_identically() {
    let tok = fixture_tokenizer("prefix_space_template.json");
    let text = to_json_string(&tok);
    let again = from_json_str(&text).unwrap();
    assert_eq!(to_json_string(&again), text);
    let mut rng = Rng(3);
    for _ in 0..200 {
        let s = random_text(&mut rng);
        assert_eq!(again.encode(&s, true), tok.encode(&s, true));
    }
}

/// `cargo test --release -- --ignored --nocapture encode_throughput`: MB/s on the KJV corpus.
#[test]
#[ignore]
fn encode_throughput() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/kjv/kjv.jsonl");
    let texts: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mb = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 1e6;
    let start = std::time::Instant::now();
    let mut trainer = Trainer::new(TrainerConfig {
        vocab_size: 4096,
        min_frequency: 2,
        special_tokens: vec!["<|endoftext|>".into()],
        add_prefix_space: false,
    })
    .unwrap();
    trainer.feed(&texts);
    let tok = trainer.train().unwrap();
    println!("train 4096: {:.3} s", start.elapsed().as_secs_f64());
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for pass in 0..3 {
            let start = std::time::Instant::now();
            let n: usize = pool
                .install(|| tok.encode_batch(&texts, true))
                .iter()
                .map(Vec::len)
                .sum();
            println!(
                "threads={threads} pass {pass}: {:.1} MB/s ({n} ids)",
                mb / start.elapsed().as_secs_f64()
            );
        }
    }
}

const COVERAGE: &[&str] = &[
    "bert_wordpiece",
    "bert_cased_wordpiece",
    "t5_unigram",
    "albert_unigram",
    "unigram_byte_fallback",
    "gemma_style",
    "split_behaviours",
    "wordlevel_scripts",
    "metaspace_never",
    "nfkc_byte_level",
    "byte_level_no_regex",
    "cl100k_style",
    "o200k_style",
    "qwen25_style",
    "deepseek_v3_style",
    "byte_level_normalizer",
];

#[test]
fn every_component_survives_arbitrary_text() {
    // Any scalar values, controls, marks and added-token fragments: no panic,
    // offsets inside the text and ordered, the same ids with and without offsets.
    let mut rng = Rng(77);
    for name in COVERAGE {
        let tok = fixture_tokenizer(&format!("{name}.json"));
        for _ in 0..150 {
            let s = random_text(&mut rng);
            let n_chars = s.chars().count();
            let ids = tok.encode(&s, true);
            let (ids2, offsets) = tok.encode_with_offsets(&s, true);
            assert_eq!(ids, ids2, "{name}: {s:?}");
            assert_eq!(offsets.len(), ids.len(), "{name}: {s:?}");
            for &(a, b) in &offsets {
                assert!(a <= b && b <= n_chars, "{name}: {s:?} {offsets:?}");
            }
            let _ = tok.decode(&ids, true);
            let random_ids: Vec<u32> = (0..8).map(|_| rng.below(3000) as u32).collect();
            let _ = tok.decode(&random_ids, false);
        }
    }
}

#[test]
fn broken_coverage_files_are_errors_not_panics() {
    let mut rng = Rng(5);
    for name in ["bert_wordpiece", "t5_unigram", "split_behaviours", "wordlevel_scripts"] {
        let good = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
        let bytes = good.as_bytes();
        for _ in 0..80 {
            let mut b = bytes.to_vec();
            let i = rng.below(b.len());
            match rng.below(3) {
                0 => b.truncate(i),
                1 => b[i] = b"{}[]\",:0 x\\"[rng.below(11)],
                _ => {
                    b.drain(i..(i + 1 + rng.below(40)).min(b.len()));
                }
            }
            if let Ok(tok) = from_json_str(&String::from_utf8_lossy(&b)) {
                let _ = tok.encode_with_offsets("Hello World, ﬁrst 12 漢字 <mask>", true);
            }
        }
    }
}

#[test]
fn onig_word_class_is_spelled_out() {
    // `\w` as Onig reads it (HF 0.23.3's offsets): letter numbers (Ⅻ) and the
    // Latin-1 ½ are word chars, the zero-width joiner is not.
    let doc = r#"{"model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Removed", "invert": true}}"#;
    let tok = from_json_str(doc).unwrap();
    let (_, offsets) = tok.encode_with_offsets("ab\u{200d}cⅫd_e ½\u{2153}", false);
    assert_eq!(offsets, vec![(0, 2), (3, 8), (9, 10)]);
    // POSIX brackets are Unicode classes in Onig: [:punct:] holds symbols too.
    let doc = r#"{"model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[[:punct:]]+|[[:^alpha:][:digit:]]"}, "behavior": "Removed", "invert": true}}"#;
    let tok = from_json_str(doc).unwrap();
    let (_, offsets) = tok.encode_with_offsets("a¡€!bⅫ 7", false);
    assert_eq!(offsets, vec![(1, 4), (6, 7), (7, 8)]);
}

#[test]
fn line_anchors_are_onig_line_anchors() {
    // Onig (Ruby syntax) reads `^`/`$` as line anchors: after the ByteLevel
    // decoder joins the tokens, "^ " drops the space after every "\n" too.
    let doc = r#"{"model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "\u010a": 2, "\u0120b": 3}, "unk_token": "<unk>"},
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteLevel"},
                    {"type": "Replace", "pattern": {"Regex": "^ |b$"}, "content": ""}]}}"#;
    let tok = from_json_str(doc).unwrap();
    assert_eq!(tok.decode(&[3, 1, 2, 3, 2, 3, 1], false), "ba\n\nba");
}

#[test]
fn dropped_chars_shift_later_offsets_as_in_hf() {
    // No unk token: chars the vocab lacks are dropped; HF's word offsets add
    // up the kept symbols, so what follows moves left (HF 0.23.3: (0, 2)).
    let doc = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}"#;
    let tok = from_json_str(doc).unwrap();
    assert_eq!(tok.encode_with_offsets("a b", false), (vec![2], vec![(0, 2)]));
    assert_eq!(tok.encode_with_offsets("x a?b", false), (vec![2], vec![(0, 2)]));
}
