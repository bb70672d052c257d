"""Regenerates tests/fixtures/tokenizers/ with Hugging Face `tokenizers` (run by hand).

    python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install tokenizers sentencepiece protobuf transformers
    /tmp/hfvenv/bin/python tools/make_tokenizer_fixtures.py [--only-coverage [NAME...] | --only-trim-offsets]

`--only-coverage` writes just the files of tools/tokenizer_coverage_fixtures.py
(every normalizer, pre-tokenizer, model, post-processor and decoder HF
defines; BERT/T5/ALBERT/Gemma/cl100k/o200k/Qwen2.5/DeepSeek-V3 shapes).

It trains byte-level BPE tokenizers of several shapes with HF on a slice of
the bundled KJV corpus plus mixed text, records HF's ids and decodes for
tricky strings, and also trains one tokenizer with mft (through the project's
.venv, `MFT_PYTHON` overrides) and records what HF makes of that file. The
tests then check mft against these files without HF installed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "tokenizers")
MFT_PYTHON = os.environ.get("MFT_PYTHON", os.path.join(REPO, ".venv", "bin", "python"))

KJV_TRAIN_LINES = 60  # first chapters of data/kjv/kjv.jsonl used for training
KJV_HELDOUT = (1000, 1010)  # chapters encoded as one long text

MIXED = [
    "The quick brown fox jumps over the lazy dog. It's 10:30am, isn't it?",
    "中文测试：你好，世界！我们今天学习分词。",
    "日本語のテキストも少し。カタカナとひらがな。",
    "한국어 텍스트도 조금 있습니다.",
    "emoji 😀👍🏽 👨‍👩‍👧 and flags 🇺🇸🇫🇷 in text",
    "def train(model, data):\n    for x, y in data:\n        loss = model(x) - y  # residual\n        loss.backward()\n",
    "if (a && b) { c[i] = d->e; } else { return -1; }",
    "Numbers 0 1 22 333 4444 55555 3.14159 1,000,000 ½ Ⅻ ٣٤",
    "  indented   text\twith\ttabs\n\nand blank lines\r\n",
    "Ünïcödé àccents, naïve café, coöperate, e\u0301 combining",
    "URL https://example.com/path?query=1&x=y#frag and email a.b@example.org",
    "<|endoftext|> is not special while training",
]

CASES = [
    "", " ", "  ", "\n", "\n\n", "Hello world", "Hello  world", "  leading spaces",
    "trailing spaces   ", "tabs\tand\t\tmore\ttabs", "line1\nline2\n\nline4\r\nwindows\r\n",
    "don't stop, we're gonna. I'LL say you've 'tis 's", "Numbers: 1234567890 3.14159 1,000,000 ½ Ⅻ ٣",
    "中文测试：你好，世界！", "日本語のテキスト。", "한국어 텍스트", "emoji 😀👍🏽 👨‍👩‍👧 flags 🇺🇸",
    "def foo(x):\n    return x**2  # comment\n", "if (a && b) { c[i] = d->e; }",
    "<|endoftext|>", "text<|endoftext|>more text", "a<|endoftext|><|endoftext|>b",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n", "<s> inside </s> text<pad>",
    "<mask>  spaced   <mask>end", "say hello world twice: hello world",
    "Ünïcödé àccents and combining e\u0301", "decomposed: Cafe\u0301 vs Café, A\u030a",
    "digits 1234567 and 12 345", "I'M YOU'RE it'S CAPS CONTRACTIONS", "\r\n\r\n  \n", "\u00a0nbsp\u3000ideographic space",
    "mixed   \n  \t whitespace   runs\n\n\n", "'''quotes''' \"double\" `back`",
    "URL https://example.com/a?b=c&d=e#f", "ALL CAPS SHOUTING!!!", "a" * 300, "ab" * 200,
    "zero\u200bwidth", "\x00control\x07chars\x1b[0m", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
    "In the beginning God created the heaven and the earth.",
]

RANDOM_ATOMS = [
    " ", "  ", "\n", "\t", "\r\n", "a", "Z", "é", "你", "1", "٣", "!", "'", "'s", "'ll", "'RE",
    "😀", "\u3000", "\u00a0", "-", "x", "the", " the", "<|endoftext|>", "<s>", "\u0301", "?!",
    "<|im_start|>", "hello world", "<mask>", " \n ", "0.5", "_", "ß", "İ",
]


def random_cases(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(RANDOM_ATOMS) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def kjv_texts(lo: int, hi: int) -> list[str]:
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as f:
        lines = f.readlines()[lo:hi]
    return [json.loads(line)["text"] for line in lines]


def training_texts() -> list[str]:
    return kjv_texts(0, KJV_TRAIN_LINES) + MIXED * 3


def bpe_trainer(vocab_size: int, specials: list[str]) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def gpt2_style() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(training_texts(), bpe_trainer(1000, ["<|endoftext|>"]))
    return tok


def prefix_space_template() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_texts(), bpe_trainer(800, ["<s>", "</s>", "<pad>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok


def chatml() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(training_texts(), bpe_trainer(1200, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    # A non-special token matched before pre-tokenization, and one that eats spaces on its left.
    tok.add_tokens([AddedToken("hello world", normalized=True), AddedToken("<mask>", lstrip=True, normalized=False)])
    return tok


LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def split_then_bytes(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def llama3_style() -> Tokenizer:
    """Llama-3 layout: regex Split + ByteLevel(use_regex=False), BOS template, ignore_merges."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = split_then_bytes(LLAMA3_PATTERN)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_texts(), bpe_trainer(900, ["<|begin_of_text|>", "<|end_of_text|>"]))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)]),
    ])
    return tok


def qwen2_style() -> Tokenizer:
    """Qwen2 layout: NFC normalizer, regex Split + ByteLevel(use_regex=False)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = split_then_bytes(QWEN2_PATTERN)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(training_texts(), bpe_trainer(900, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    return tok


BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def sentencepiece_bpe(normalizer, pre_tokenizer, decoder, vocab_size: int) -> Tokenizer:
    """Llama-2/Mistral layout: char-level BPE with byte fallback, <unk>/<s>/</s>,
    the 256 <0xHH> byte tokens in the model vocab, a BOS template. A small
    alphabet (limit_alphabet) makes rare chars fall back to bytes."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pre_tokenizer is not None:
        tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS],
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(training_texts(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


SP_DECODER = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])


def llama2_style() -> Tokenizer:
    """Llama-2 (legacy) files: Prepend + Replace normalizer, no pre-tokenizer."""
    norm = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    return sentencepiece_bpe(norm, None, SP_DECODER, 1300)


def mistral_style() -> Tokenizer:
    """Newer Llama/Mistral files: Metaspace pre-tokenizer (prepend "first", no split)."""
    pre = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    return sentencepiece_bpe(None, pre, decoders.Metaspace(replacement="\u2581", prepend_scheme="first"), 1300)


def metaspace_split() -> Tokenizer:
    """Metaspace with prepend "always" and split on the marker; SentencePiece decoder chain."""
    pre = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    return sentencepiece_bpe(None, pre, SP_DECODER, 1300)


def drop_byte_added_tokens(path: str) -> None:
    """The <0xHH> tokens belong to the model vocab only (as in Llama-2 files)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["added_tokens"] = [t for t in doc["added_tokens"] if t["content"] not in BYTE_TOKENS]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)


TIE_ATOMS = [" ", "  ", "\n", "a", "b", "ab", "ba", "é", "你", "1", "!", "'s", "😀", "the", " the", "<|", "endoftext", "|>"]


def tie_heavy_texts() -> list[str]:
    """Short random texts over few atoms: many pairs with equal counts."""
    rng = random.Random(5)
    return ["".join(rng.choice(TIE_ATOMS) for _ in range(rng.randint(1, 40))) for _ in range(1500)]


def tie_heavy() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=1, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tie_heavy_texts(), trainer)
    return tok


def set_model_option(path: str, key: str, value) -> None:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["model"][key] = value
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)


def with_string_merges(path: str) -> None:
    """Rewrites merges in the legacy "left right" form (HF reads both)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["model"]["merges"] = [f"{a} {b}" for a, b in doc["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)


def record(tok: Tokenizer, texts: list[str]) -> list[dict]:
    out = []
    for t in texts:
        enc = tok.encode(t)
        ids = enc.ids
        out.append({
            "text": t,
            "ids": ids,
            "offsets": [list(o) for o in enc.offsets],
            "offsets_no_special": [list(o) for o in tok.encode(t, add_special_tokens=False).offsets],
            "ids_no_special": tok.encode(t, add_special_tokens=False).ids,
            "decoded": tok.decode(ids),
            "decoded_keep_special": tok.decode(ids, skip_special_tokens=False),
        })
    return out


def write_cases(name: str, tok_file: str, texts: list[str] | None = None) -> None:
    tok = Tokenizer.from_file(os.path.join(OUT, tok_file))  # what HF reads back from the file
    long_text = "\n".join(kjv_texts(*KJV_HELDOUT))
    doc = {
        "tokenizer": tok_file,
        "hf_vocab_size": tok.get_vocab_size(),
        "cases": record(tok, texts if texts is not None else CASES + random_cases(300)),
        "long_text_kjv_chapters": list(KJV_HELDOUT),
        "long_text_ids": tok.encode(long_text).ids,
    }
    with open(os.path.join(OUT, f"{name}.cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)


def train_with_mft(path: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "train.jsonl")
        with open(corpus, "w", encoding="utf-8") as f:
            for t in training_texts():
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        subprocess.run(
            [MFT_PYTHON, "-m", "mft", "tokenizer", "train", "--input", corpus, "--vocab-size", "1000", "--output", path],
            check=True, cwd=REPO,
        )


def trim_offsets_fixtures() -> list[str]:
    """Files whose post-processor trims offsets, made from already trained
    fixtures (same vocab and merges, other stages): GPT-2's own layout
    (ByteLevel post-processor with trim_offsets) and RoBERTa's
    (RobertaProcessing with trim_offsets and add_prefix_space)."""
    gpt2 = Tokenizer.from_file(os.path.join(OUT, "gpt2_style.json"))
    gpt2.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    gpt2.save(os.path.join(OUT, "gpt2_trim_offsets.json"))
    roberta = Tokenizer.from_file(os.path.join(OUT, "prefix_space_template.json"))
    roberta.post_processor = processors.RobertaProcessing(
        ("</s>", roberta.token_to_id("</s>")), ("<s>", roberta.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=True,
    )
    roberta.save(os.path.join(OUT, "roberta_trim_offsets.json"))
    return ["gpt2_trim_offsets", "roberta_trim_offsets"]


def coverage_cases() -> list[str]:
    import tokenizer_coverage_fixtures as cov

    rng = random.Random(99)
    atoms = RANDOM_ATOMS + cov.EXTRA_ATOMS
    randoms = ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 30))) for _ in range(300)]
    return CASES + cov.EXTRA_CASES + randoms


def write_coverage(only: set[str] | None = None) -> None:
    """The files of tools/tokenizer_coverage_fixtures.py, their cases, and
    transformers' reading of tokenizer_config.json beside gemma_style.json
    (`only`: just the named files and their cases)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tokenizer_coverage_fixtures as cov

    for name in cov.build(training_texts(), OUT, only):
        write_cases(name, f"{name}.json", coverage_cases())
    if not only:
        cov.batch_cases(OUT, coverage_cases()[:60])
        cov.config_cases(OUT)


def main() -> int:
    import tokenizers

    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:2] == ["--only-coverage"]:
        # Adds the component-coverage and real-shape files without touching the
        # others; with names after the flag, only those files (and their cases).
        write_coverage(set(sys.argv[2:]))
        return 0
    if sys.argv[1:] == ["--only-trim-offsets"]:
        # Adds the derived files without retraining (and so rewriting) the others.
        for name in trim_offsets_fixtures():
            write_cases(name, f"{name}.json")
        return 0
    built = {
        "gpt2_style": gpt2_style(),
        "prefix_space_template": prefix_space_template(),
        "chatml": chatml(),
        "llama3_style": llama3_style(),
        "qwen2_style": qwen2_style(),
        "llama2_style": llama2_style(),
        "mistral_style": mistral_style(),
        "metaspace_split": metaspace_split(),
    }
    for name, tok in built.items():
        tok.save(os.path.join(OUT, f"{name}.json"))
    with_string_merges(os.path.join(OUT, "chatml.json"))
    for name in ("llama2_style", "mistral_style", "metaspace_split"):
        drop_byte_added_tokens(os.path.join(OUT, f"{name}.json"))
    set_model_option(os.path.join(OUT, "llama3_style.json"), "ignore_merges", True)
    tie_heavy().save(os.path.join(OUT, "tie_heavy.json"))
    with open(os.path.join(OUT, "tie_heavy.corpus.json"), "w", encoding="utf-8") as f:
        json.dump(tie_heavy_texts(), f, ensure_ascii=False)
    train_with_mft(os.path.join(OUT, "mft_trained.json"))
    for name in [*built, "mft_trained", *trim_offsets_fixtures()]:
        write_cases(name, f"{name}.json")
    write_coverage()
    with open(os.path.join(OUT, "training_corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"kjv_first_lines": KJV_TRAIN_LINES, "mixed_repeated_3x": MIXED, "min_frequency": 2}, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
        f.write(
            "# Tokenizer fixtures\n\n"
            f"Made by `tools/make_tokenizer_fixtures.py` with Hugging Face tokenizers {tokenizers.__version__}.\n\n"
            "- `gpt2_style.json`, `prefix_space_template.json`, `chatml.json`: trained by HF's BpeTrainer on\n"
            "  `training_corpus.json` (the first KJV chapters plus mixed text, repeated 3 times).\n"
            "  chatml.json's merges are rewritten in the legacy \"a b\" string form.\n"
            "- `llama3_style.json` (regex Split + ByteLevel, BOS template, ignore_merges) and\n"
            "  `qwen2_style.json` (NFC + regex Split + ByteLevel): the layouts of those model families.\n"
            "- `llama2_style.json` (Prepend+Replace normalizer, no pre-tokenizer), `mistral_style.json`\n"
            "  (Metaspace prepend \"first\", Metaspace decoder), `metaspace_split.json` (Metaspace \"always\" +\n"
            "  split): SentencePiece-style BPE with byte fallback, <0xHH> tokens in the model vocab, BOS template.\n"
            "- `mft_trained.json`: trained by `mft tokenizer train` on the same corpus.\n"
            "- `tie_heavy.json`: HF's BpeTrainer (vocab 1500, min_frequency 1) on `tie_heavy.corpus.json`,\n"
            "  short random texts where many pairs tie: checks the trainer's tie-breaking.\n"
            "- `gpt2_trim_offsets.json` (GPT-2's ByteLevel post-processor with trim_offsets) and\n"
            "  `roberta_trim_offsets.json` (RobertaProcessing, trim_offsets + add_prefix_space): gpt2_style's\n"
            "  and prefix_space_template's vocab with those post-processors (`--only-trim-offsets` adds just these).\n"
            "- Coverage files (`tools/tokenizer_coverage_fixtures.py`, `--only-coverage` writes just these, retraining them (HF's\n"
            "  WordPiece/BPE trainers break ties differently run to run, so the files change); also needs\n"
            "  sentencepiece, protobuf and transformers): `bert_wordpiece`, `bert_cased_wordpiece` (WordPiece, BertNormalizer,\n"
            "  BertPreTokenizer, Bert/Template processing, added tokens with every flag), `t5_unigram`, `albert_unigram`,\n"
            "  `unigram_byte_fallback` (SentencePiece-trained unigram models with their Precompiled charsmaps, NFKD/StripAccents/\n"
            "  Lowercase/Nmt), `gemma_style` (SentencePiece BPE, byte fallback), `split_behaviours` (every Split behaviour, invert,\n"
            "  CharDelimiterSplit, BPE prefix/suffix, BPEDecoder), `wordlevel_scripts` (WordLevel, UnicodeScripts, Whitespace, Digits,\n"
            "  Punctuation, CTC), `metaspace_never` (Metaspace \"never\", FixedLength, Strip), `nfkc_byte_level`, `byte_level_no_regex`,\n"
            "  and `cl100k_style`, `o200k_style`, `qwen25_style`, `deepseek_v3_style` (their public Split regexes + ByteLevel);\n"
            "  `byte_level_normalizer` (the ByteLevel normalizer, Split merged_with_next on the mapped space),\n"
            "  `truncate_pad_fixed`, `truncate_left_pad_longest`: bert_wordpiece/gemma_style with HF's truncation and padding on\n"
            "  (their `*.batch_cases.json`: HF's encode_batch, padded to the longest);\n"
            "  `gemma_style.config_cases.json`: what transformers makes of tokenizer_config.json variants beside gemma_style.json.\n"
            "- `*.cases.json`: HF's ids (with/without special tokens) and decodes for tricky and random\n"
            "  strings (with HF's offsets, with and without special tokens), and the ids of a long held-out KJV text, as HF computes them from that file.\n"
        )
    # Informational: does mft's trainer reproduce HF's merges on this corpus?
    with open(os.path.join(OUT, "gpt2_style.json"), encoding="utf-8") as f:
        hf_model = json.load(f)["model"]
    with open(os.path.join(OUT, "mft_trained.json"), encoding="utf-8") as f:
        mft_model = json.load(f)["model"]
    same = hf_model["vocab"] == mft_model["vocab"] and hf_model["merges"] == mft_model["merges"]
    print(f"mft trainer matches HF trainer on this corpus: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
