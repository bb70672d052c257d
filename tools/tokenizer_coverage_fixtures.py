"""Coverage fixtures: tokenizer.json files for every component HF `tokenizers`
defines, and files shaped like the ones real models ship (BERT, T5, ALBERT,
Gemma, cl100k/o200k, Qwen2.5, DeepSeek-V3), trained on the bundled corpus by
HF's trainers or by SentencePiece and written by this script.

Run through `tools/make_tokenizer_fixtures.py --only-coverage` (needs
`tokenizers` and `sentencepiece`; `transformers` for the tokenizer_config
cases). The regex patterns below are the public pre-tokenizer patterns of
those model families.
"""

from __future__ import annotations

import json
import os
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

CL100K_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
O200K_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])
QWEN25_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEEPSEEK_V3_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
]

# Strings that reach the new components' corners (added to the shared cases).
EXTRA_CASES = [
    "HELLO World [NEW] x[NEW]y [NEW]", "Hello World and hello world", "  <mask>  and<mask>x",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ﬁﬂ ① ㍿ ™ …", "Ångström naïve façade résumé ÉCOLE", "ǅungla Ǆ ǆ İstanbul ß ẞ",
    "the-final--countdown, 3-2-1; go|stop|", "phone 555-1234, 12345678901234 and 3.14",
    "どこで生れたかとんと見当がつかぬ。Yes 漢字カタカナ", "Привет мир! Ελληνικά עברית العربية हिन्दी ไทย",
    "tab\there\u00a0nbsp\u2009thin\u200bzw\u3000ideo", "ctrl\x01\x02\x7f\x9fchars\ufffd", "``quoted'' text",
    "averyveryverylongwordthatkeepsgoingandgoing", "a  b   c    d", "x" * 40, "<|im_start|>system\nhi<|im_end|>",
    "<start_of_turn>user\nhi<end_of_turn>", "[CLS] [SEP] [PAD] [MASK] [UNK]", "emoji 🤖 and ZWJ 👩‍💻 and 🏳️‍🌈",
]

EXTRA_ATOMS = ["É", "ﬁ", "①", "Ａ", "ß", "İ", "-", "|", ",", ";", "[NEW]", "Hello World", "<mask>", "ア", "漢", "ж", " ", "1", "23", "\u0301"]


def write_json(path: str, doc) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---- BERT (WordPiece) --------------------------------------------------------

def bert_wordpiece(texts) -> Tokenizer:
    """bert-base-uncased layout: BertNormalizer (lowercase, strip accents),
    BertPreTokenizer, WordPiece, [CLS] $A [SEP], WordPiece decoder; added
    tokens with every flag."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=1200, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.add_tokens([
        AddedToken("[NEW]", single_word=True, normalized=False),
        AddedToken("Hello World", normalized=True),  # matched as "hello world" after lowercasing
    ])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False, special=True)])
    return tok


def bert_cased_wordpiece(texts) -> Tokenizer:
    """bert-base-cased layout: no lowercasing, BertProcessing, short max word."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=12))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=None, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


# ---- SentencePiece unigram (T5, ALBERT) ----------------------------------------

def spm_model(texts, tmp: str, name: str, **options):
    """Trains a SentencePiece model; returns its ModelProto."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    corpus = os.path.join(tmp, f"{name}.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(t.replace("\n", " ") + "\n")
    prefix = os.path.join(tmp, name)
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, minloglevel=2, **options)
    proto = sentencepiece_model_pb2.ModelProto()
    with open(prefix + ".model", "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def charsmap_b64(proto) -> str:
    import base64

    return base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode("ascii")


def unigram_doc(proto, normalizer, pre_tokenizer, post_processor, decoder, byte_fallback=False) -> dict:
    """A tokenizer.json for a SentencePiece unigram model, written field by field."""
    pieces = [[p.piece, p.score] for p in proto.pieces]
    unk_id = next(i for i, p in enumerate(proto.pieces) if p.type == 2)
    control = [(i, p.piece) for i, p in enumerate(proto.pieces) if p.type in (2, 3)]
    added = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, c in control
    ]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor, "decoder": decoder,
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": pieces, "byte_fallback": byte_fallback},
    }


def template(single: list, ids: dict) -> dict:
    items = [{"Sequence": {"id": "A", "type_id": 0}} if s == "$A" else {"SpecialToken": {"id": s, "type_id": 0}} for s in single]
    return {
        "type": "TemplateProcessing", "single": items, "pair": items,
        "special_tokens": {k: {"id": k, "ids": [v], "tokens": [k]} for k, v in ids.items()},
    }


METASPACE_ALWAYS = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
SPACES = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}


def t5_unigram(texts, tmp: str) -> dict:
    """t5-small layout: Precompiled (nmt_nfkc) + collapse spaces, Metaspace,
    Unigram (pad 0, eos 1, unk 2), "$A </s>", Metaspace decoder."""
    proto = spm_model(texts, tmp, "t5", vocab_size=800, model_type="unigram", normalization_rule_name="nmt_nfkc",
                      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=0.995)
    norm = {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": charsmap_b64(proto)}, SPACES]}
    dec = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return unigram_doc(proto, norm, METASPACE_ALWAYS, template(["$A", "</s>"], {"</s>": 1}), dec)


def albert_unigram(texts, tmp: str) -> dict:
    """albert-base-v2 layout: quotes, NFKD, StripAccents, Lowercase,
    Precompiled, collapse spaces; Metaspace; [CLS] $A [SEP]."""
    proto = spm_model([t.lower() for t in texts], tmp, "albert", vocab_size=700, model_type="unigram",
                      normalization_rule_name="nmt_nfkc", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                      pad_piece="<pad>", unk_piece="<unk>", bos_piece="[CLS]", eos_piece="[SEP]", character_coverage=0.99)
    norm = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Replace", "pattern": {"String": "''"}, "content": "\""},
        {"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
        {"type": "Precompiled", "precompiled_charsmap": charsmap_b64(proto)}, SPACES,
    ]}
    dec = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return unigram_doc(proto, norm, METASPACE_ALWAYS, template(["[CLS]", "$A", "[SEP]"], {"[CLS]": 2, "[SEP]": 3}), dec)


def unigram_byte_fallback(texts, tmp: str) -> dict:
    """SentencePiece unigram with byte fallback (<0xHH> pieces), Llama-style
    Metaspace (prepend "first", no split), Nmt normalizer, byte-fallback decoder."""
    proto = spm_model(texts, tmp, "ubf", vocab_size=900, model_type="unigram", byte_fallback=True,
                      normalization_rule_name="identity", character_coverage=0.98)
    pre = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    dec = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ]}
    bos = next(i for i, p in enumerate(proto.pieces) if p.piece == "<s>")
    return unigram_doc(proto, {"type": "Nmt"}, pre, template(["<s>", "$A"], {"<s>": bos}), dec, byte_fallback=True)


# ---- BPE shapes ----------------------------------------------------------------

def bpe_trainer(vocab_size: int, specials: list[str], **kw) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False, **kw)


def byte_level_split(texts, patterns: list[str], specials: list[str], normalizer=None, bos: str | None = None) -> Tokenizer:
    """Sequence[Split(Regex, Isolated)..., ByteLevel(use_regex=False)] as
    Llama-3, Qwen2.5, DeepSeek-V3 and converted tiktoken files ship."""
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns]
    tok.pre_tokenizer = pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, bpe_trainer(1000, specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    steps = [processors.ByteLevel(trim_offsets=False)]
    if bos is not None:
        steps.append(processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(steps)
    return tok


def gemma_style(texts) -> Tokenizer:
    """Gemma layout: SentencePiece BPE with byte fallback, Replace(" ", "▁")
    normalizer (no dummy prefix), no pre-tokenizer, "<bos> $A", chat turn tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", *BYTE_TOKENS]
    tok.train_from_iterator(texts, bpe_trainer(1400, specials, limit_alphabet=150))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
    return tok


def split_behaviours(texts) -> Tokenizer:
    """Char BPE (unk, "##" prefix, "</w>" suffix) behind every Split behaviour,
    invert, CharDelimiterSplit; NFKD + regex Replace; BPEDecoder."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Replace(Regex(r"[0-9]{4,}"), "####")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="removed"),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[0-9]+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[,;.!?]"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[^\W\d_]+"), behavior="merged_with_previous", invert=True),
        pre_tokenizers.CharDelimiterSplit("|"),
    ])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.train_from_iterator(texts, bpe_trainer(900, ["[UNK]"], limit_alphabet=90, continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    return tok


def wordlevel_scripts(texts) -> Tokenizer:
    """WordLevel behind UnicodeScripts, Whitespace, Digits, Punctuation;
    Nmt + NFC + Lowercase; CTC decoder."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.UnicodeScripts(), pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Punctuation(behavior="contiguous"),
    ])
    tok.decoder = decoders.CTC(pad_token="<pad>", word_delimiter_token="|", cleanup=True)
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=900, min_frequency=2, special_tokens=["<pad>", "<unk>", "|"], show_progress=False))
    return tok


def metaspace_never(texts) -> Tokenizer:
    """Metaspace prepend "never" + FixedLength + individual Digits, Strip and
    StripAccents normalizers, Metaspace decoder then Strip; WhitespaceSplit first."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Strip(left=True, right=True), normalizers.NFD(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True),
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.FixedLength(length=6),
    ])
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="never"), decoders.ByteFallback(),
                                     decoders.Strip(content="\n", left=0, right=1)])
    tok.train_from_iterator(texts, bpe_trainer(1300, ["<unk>", *BYTE_TOKENS], limit_alphabet=120))
    return tok


def nfkc_byte_level(texts) -> Tokenizer:
    """A byte-level BPE with an NFKC normalizer (the case the issue reports)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(texts, bpe_trainer(1000, ["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def byte_level_no_regex(texts) -> Tokenizer:
    """ByteLevel(add_prefix_space, use_regex=False) alone after WhitespaceSplit;
    Lowercase + left Strip + regex Replace normalizers; regex Replace decoder."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Strip(left=True, right=False), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"\s+"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(Regex(r"^ "), "")])
    tok.train_from_iterator(texts, bpe_trainer(800, ["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


BATCH_NAMES = ["truncate_pad_fixed", "truncate_left_pad_longest"]


def with_limits(src: str, dst: str, truncation: dict, padding: dict) -> None:
    """A copy of `src` with HF's truncation and padding switched on."""
    tok = Tokenizer.from_file(src)
    tok.enable_truncation(**truncation)
    tok.enable_padding(**padding)
    tok.save(dst)


def byte_level_normalizer(texts) -> Tokenizer:
    """The ByteLevel *normalizer* (bytes -> GPT-2 chars before pre-tokenization),
    then Split on the mapped space, merged with the next piece."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.ByteLevel()
    tok.pre_tokenizer = pre_tokenizers.Split("\u0120", behavior="merged_with_next")
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, bpe_trainer(900, ["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def build(texts, out_dir: str, only: set[str] | None = None) -> list[str]:
    """Writes the coverage fixtures (all, or those named in `only`) into
    `out_dir`; returns their names."""
    if only:
        return build_some(texts, out_dir, only)
    built = {
        "byte_level_normalizer": byte_level_normalizer(texts),
        "bert_wordpiece": bert_wordpiece(texts),
        "bert_cased_wordpiece": bert_cased_wordpiece(texts),
        "gemma_style": gemma_style(texts),
        "split_behaviours": split_behaviours(texts),
        "wordlevel_scripts": wordlevel_scripts(texts),
        "metaspace_never": metaspace_never(texts),
        "nfkc_byte_level": nfkc_byte_level(texts),
        "byte_level_no_regex": byte_level_no_regex(texts),
        "cl100k_style": byte_level_split(texts, [CL100K_PATTERN], ["<|endoftext|>", "<|fim_prefix|>"]),
        "o200k_style": byte_level_split(texts, [O200K_PATTERN], ["<|endoftext|>", "<|endofprompt|>"]),
        "qwen25_style": byte_level_split(texts, [QWEN25_PATTERN], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                         normalizer=normalizers.NFC()),
        "deepseek_v3_style": byte_level_split(texts, DEEPSEEK_V3_SPLITS,
                                              ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"], bos="<｜begin▁of▁sentence｜>"),
    }
    for name, tok in built.items():
        tok.save(os.path.join(out_dir, f"{name}.json"))
    # Gemma/metaspace_never: <0xHH> only in the model vocab, as SentencePiece conversions have them.
    for name in ("gemma_style", "metaspace_never"):
        path = os.path.join(out_dir, f"{name}.json")
        doc = read_json(path)
        doc["added_tokens"] = [t for t in doc["added_tokens"] if t["content"] not in BYTE_TOKENS]
        write_json(path, doc)
    with tempfile.TemporaryDirectory() as tmp:
        docs = {
            "t5_unigram": t5_unigram(texts, tmp),
            "albert_unigram": albert_unigram(texts, tmp),
            "unigram_byte_fallback": unigram_byte_fallback(texts, tmp),
        }
    for name, doc in docs.items():
        write_json(os.path.join(out_dir, f"{name}.json"), doc)
    # truncation/padding set in the file: fixed length, right; and left, to the batch's longest, multiple of 8.
    j = lambda n: os.path.join(out_dir, f"{n}.json")  # noqa: E731
    with_limits(j("bert_wordpiece"), j("truncate_pad_fixed"), {"max_length": 12},
                {"length": 16, "pad_id": 0, "pad_token": "[PAD]"})
    with_limits(j("gemma_style"), j("truncate_left_pad_longest"), {"max_length": 20, "direction": "left"},
                {"pad_id": 0, "pad_token": "<pad>", "pad_to_multiple_of": 8, "direction": "left"})
    return [*built, *docs, *BATCH_NAMES]


def build_some(texts, out_dir: str, only: set[str]) -> list[str]:
    """The named Tokenizer-built fixtures only (the others stay as they are)."""
    builders = {
        "byte_level_normalizer": byte_level_normalizer, "bert_wordpiece": bert_wordpiece,
        "bert_cased_wordpiece": bert_cased_wordpiece, "gemma_style": gemma_style, "split_behaviours": split_behaviours,
        "wordlevel_scripts": wordlevel_scripts, "metaspace_never": metaspace_never, "nfkc_byte_level": nfkc_byte_level,
        "byte_level_no_regex": byte_level_no_regex,
    }
    unknown = only - set(builders)
    if unknown:
        raise SystemExit(f"--only-coverage: no builder for {sorted(unknown)} (choose from {sorted(builders)})")
    for name in sorted(only):
        builders[name](texts).save(os.path.join(out_dir, f"{name}.json"))
    return sorted(only)


def batch_cases(out_dir: str, texts: list[str]) -> None:
    """HF's encode_batch (padding to the batch's longest) for the BATCH_NAMES files."""
    for name in BATCH_NAMES:
        tok = Tokenizer.from_file(os.path.join(out_dir, f"{name}.json"))
        encs = tok.encode_batch(texts)
        doc = {"tokenizer": f"{name}.json", "texts": texts, "ids": [e.ids for e in encs],
               "offsets": [[list(o) for o in e.offsets] for e in encs]}
        write_json(os.path.join(out_dir, f"{name}.batch_cases.json"), doc)


def config_cases(out_dir: str) -> None:
    """tokenizer_config.json variants beside copies of gemma_style.json, and
    what transformers' AutoTokenizer makes of them (ids, specials, length, template)."""
    from transformers import AutoTokenizer

    base = read_json(os.path.join(out_dir, "gemma_style.json"))
    chat = "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    variants = {
        "bos_and_eos": {"add_bos_token": True, "add_eos_token": True},
        "eos_only": {"add_bos_token": False, "add_eos_token": True},
        "none": {"add_bos_token": False, "add_eos_token": False},
        "unset": {},
    }
    texts = ["Hello world", "", "In the beginning God created the heaven and the earth.", "<start_of_turn>user\nhi<end_of_turn>"]
    out = []
    for name, flags in variants.items():
        with tempfile.TemporaryDirectory() as d:
            write_json(os.path.join(d, "tokenizer.json"), base)
            cfg = {"tokenizer_class": "GemmaTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                   "unk_token": "<unk>", "model_max_length": 8192, "chat_template": chat, **flags}
            write_json(os.path.join(d, "tokenizer_config.json"), cfg)
            hf = AutoTokenizer.from_pretrained(d)
            out.append({"name": name, "config": cfg, "cases": [{"text": t, "ids": hf(t)["input_ids"]} for t in texts]})
    write_json(os.path.join(out_dir, "gemma_style.config_cases.json"), {"tokenizer": "gemma_style.json", "variants": out})
