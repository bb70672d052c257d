"""Held-out inputs for benches/tokenizer.py --held-out: a corpus that is not the
bundled one and does not repeat, and byte-level tokenizer files shaped like the
ones real models ship (the same trained vocab and merges, each model family's
`Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)]` pre-tokenizer).

Corpus: text files found on this machine (documentation, Python and Rust
sources; each distinct file once, in a shuffled order), plus generated
multilingual text whose words are random syllables in eight scripts (so most
words are new and a word cache cannot live off repetition). One part trains the
vocab, the other - disjoint - part is encoded.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import random

DOC_ROOTS = ["/usr/share/doc", "/usr/lib/python3*", os.path.expanduser("~/.cargo/registry/src"), "/usr/include"]
TEXT_EXT = (".py", ".rs", ".md", ".txt", ".rst", ".h", ".c", ".toml", ".html", ".gz", "", ".json", ".cfg")

# Each family's split regex(es) as its tokenizer.json spells them (public facts).
GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
CL100K = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
# DeepSeek-V3 chains three splits; its file holds raw CR/LF chars in the third.
DEEPSEEK_V3 = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
FAMILIES = {"gpt2": [GPT2], "llama3": [LLAMA3], "cl100k": [CL100K], "qwen2": [QWEN2], "o200k": [O200K],
            "deepseek_v3": DEEPSEEK_V3}

SCRIPTS = {  # (consonant-ish, vowel-ish) inventories; words are random syllables
    "ru": ("бвгджзклмнпрстфхцчшщ", "аеиоуыэюя"),
    "el": ("βγδζθκλμνξπρστφχψ", "αεηιουω"),
    "hi": ("कखगघचछजझटठडढतथदधनपफबभमयरलवशसह", "ािीुूेैोौ"),
    "ar": ("بتثجحخدذرزسشصضطظعغفقكلمنهوي", "اوي"),
    "ko": None,  # Hangul syllables composed from jamo indices
    "zh": None,  # CJK ideographs
    "ja": ("かきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわ", "ーアイウエオッ"),
    "fr": ("bcdfghjlmnprstvz", "aeiouéèàùâêîôûç"),
}


def _word(rng: random.Random, script: str) -> str:
    n = rng.choice([1, 2, 2, 3, 3, 4, 5])
    if script == "ko":
        return "".join(chr(0xAC00 + rng.randrange(19 * 21 * 28)) for _ in range(n))
    if script == "zh":
        return "".join(chr(0x4E00 + int(rng.paretovariate(1.2) * 40) % 20900) for _ in range(n))
    cons, vows = SCRIPTS[script]
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(n))


def generated_document(rng: random.Random) -> str:
    script = rng.choice(list(SCRIPTS))
    sep = "" if script in ("zh", "ja") else " "
    out = []
    for _ in range(rng.randint(20, 200)):
        r = rng.random()
        if r < 0.06:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif r < 0.12:
            out.append(rng.choice([",", ".", "!", "?", "：", "，", "。", "(", ")", "\n", "\n\n", "  ", "—", "'s"]))
        else:
            out.append(_word(rng, script))
    return sep.join(out)


def _files():
    for root in DOC_ROOTS:
        for top in sorted(glob.glob(root)):
            for dirpath, _, names in os.walk(top):
                for name in sorted(names):
                    if os.path.splitext(name)[1] in TEXT_EXT:
                        yield os.path.join(dirpath, name)


def _read(path: str) -> str | None:
    try:
        if os.path.islink(path) or not 200 < os.path.getsize(path) < 2_000_000:
            return None
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(4_000_000)
        if b"\0" in data:
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def build(work: str, mb: float, train_mb: float) -> tuple[str, list[str]]:
    """(eval corpus JSONL, training texts): distinct documents, shuffled, disjoint."""
    path = os.path.join(work, f"held_out_{mb:g}mb.jsonl")
    train_path = os.path.join(work, f"held_out_train_{train_mb:g}mb.jsonl")
    if os.path.isfile(path) and os.path.isfile(train_path):
        with open(train_path, encoding="utf-8") as f:
            return path, [json.loads(line)["text"] for line in f]
    os.makedirs(work, exist_ok=True)
    rng = random.Random(1234)
    seen, docs = set(), []
    for p in _files():
        text = _read(p)
        if text is None:
            continue
        digest = hashlib.sha1(text.encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        # Long files become ~8 KB documents (the unit tokenizers are fed).
        for i in range(0, len(text), 8000):
            docs.append(text[i:i + 8000])
    target = (mb + train_mb) * 1e6
    rng.shuffle(docs)
    found, size = [], 0
    for d in docs:  # three quarters found text ...
        if size >= 0.75 * target:
            break
        found.append(d)
        size += len(d.encode())
    docs = found
    while size < target:  # ... and a quarter generated multilingual text
        d = generated_document(rng)
        docs.append(d)
        size += len(d.encode())
    rng.shuffle(docs)
    train, evaluation, got = [], [], 0
    for d in docs:
        n = len(d.encode())
        if got < train_mb * 1e6:
            train.append(d)
        elif got < target:
            evaluation.append(d)
        else:
            break
        got += n
    for p, part in ((path, evaluation), (train_path, train)):
        with open(p + ".tmp", "w", encoding="utf-8") as f:
            for d in part:
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        os.replace(p + ".tmp", p)
    return path, train


def family_files(trained_path: str, work: str) -> dict[str, str]:
    """One tokenizer.json per family: the trained vocab/merges with its pre-tokenizer."""
    with open(trained_path, encoding="utf-8") as f:
        base = json.load(f)
    out = {}
    for name, patterns in FAMILIES.items():
        tok = dict(base)
        tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            *({"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in patterns),
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]}
        path = os.path.join(work, f"held_out_{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
        out[name] = path
    return out


def tiktoken_pattern(tok_path: str) -> str | None:
    """The file's split regex for tiktoken (which runs one regex: chained splits
    are joined as one alternation, so their pieces can differ slightly)."""
    with open(tok_path, encoding="utf-8") as f:
        pre = json.load(f)["pre_tokenizer"]
    if pre.get("type") != "Sequence":
        return None
    pats = [p["pattern"]["Regex"] for p in pre["pretokenizers"] if p.get("type") == "Split"]
    return "|".join(pats) if pats else None


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "tokenizers")
# name -> (fixture file whose normalizer/pre-tokenizer/decoder/post-processor the
# trained file keeps, model trained by HF's trainer on the training texts)
SP_FAMILIES = {"gemma": "gemma_style.json", "t5": "t5_unigram.json", "bert": "bert_wordpiece.json"}


def sentencepiece_family_files(train_texts: list[str], work: str, vocab: int = 32000, train_mb: float = 4) -> dict[str, str]:
    """Gemma (SentencePiece BPE, byte fallback, no pre-tokenizer), T5 (Unigram,
    Precompiled, Metaspace) and BERT (WordPiece) files with a `vocab`-sized
    model trained by HF `tokenizers` on the first `train_mb` MB of the
    training texts (disjoint from the corpus); the other sections are the
    fixture files' (the shapes those families ship). Cached in `work`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts, size = [], 0
    for t in train_texts:
        if size >= train_mb * 1e6:
            break
        texts.append(t)
        size += len(t.encode())
    out = {}
    for name, fixture in SP_FAMILIES.items():
        path = os.path.join(work, f"held_out_{name}_{vocab}.json")
        out[name] = path
        if os.path.isfile(path):
            continue
        with open(os.path.join(FIXTURES, fixture), encoding="utf-8") as f:
            shape = json.load(f)
        tok = Tokenizer.from_str(json.dumps(shape))
        specials = [t["content"] for t in shape["added_tokens"]]
        if name == "gemma":
            # SentencePiece does not merge across spaces: train on ▁-split words.
            tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)
            tok.model = models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True)
            trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False)
        elif name == "t5":
            trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials, unk_token="<unk>",
                                              show_progress=False)
        else:
            trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer)
        doc = json.loads(tok.to_str())
        if name == "gemma":  # byte fallback needs <0xHH> pieces in the vocab
            v = doc["model"]["vocab"]
            for b in range(256):
                v.setdefault(f"<0x{b:02X}>", len(v))
        for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
            doc[key] = shape[key]
        # An added token the trainer also put in the model vocab keeps the model's id (HF
        # would use that one; the fixture's own id now belongs to another piece).
        vocab_ids = doc["model"]["vocab"]
        if isinstance(vocab_ids, dict):
            for t in doc["added_tokens"]:
                t["id"] = vocab_ids.get(t["content"], t["id"])
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        os.replace(path + ".tmp", path)
    return out
