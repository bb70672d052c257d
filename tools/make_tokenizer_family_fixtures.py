"""Model-family fixtures: tokenizer.json files shaped like the ones real model
families ship (same normalizer / pre-tokenizer / model options / post-processor
/ decoder / added-token layout, small vocab trained by HF's trainers on the
bundled corpus), and HF's outputs on a multilingual / edge-case text set.

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_family_fixtures.py [NAME...]

Writes tests/fixtures/tokenizers/families/NAME.json and NAME.cases.json (ids
with and without special tokens, offsets, decodes skipping and keeping special
tokens, decodes of random id lists, pairs with type ids). Checked by
tests/python/test_tokenizer_families.py without HF. The shapes follow the
public tokenizer.json files of each family as of 2025; vocabularies are small
and trained here, so the ids are not the real models' ids.
"""

from __future__ import annotations

import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as base  # noqa: E402
import tokenizer_coverage_fixtures as cov  # noqa: E402

OUT = os.path.join(base.OUT, "families")
SP = "\u2581"
BYTE_TOKENS = base.BYTE_TOKENS

# ---- texts --------------------------------------------------------------------

TEXTS = [
    "", " ", "   ", "\n", "\r\n", "\t", "Hello world", "Hello  world   x", " leading", "trailing  ",
    "line1\nline2\r\nline3\n\nend", "a\r\n\r\nb\r", "don't I'LL we've 's", "中文测试：你好，世界！",
    "日本語のテキスト。カタカナ", "한국어 텍스트", "emoji 😀👍🏽 👨‍👩‍👧 🇺🇸!", "e\u0301 combining A\u030a cafe\u0301 n\u0303",
    "Ünïcödé àccents naïve", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ﬁ ① ™ …", "Numbers 1234567890 3.14 1,000,000 ٣٤ ½ 12 345",
    "x=1; y = x**2  # c", "def f(a, b):\n    return a+b\n", "tab\there\u00a0nbsp\u3000ideo\u200bzw\u2009thin",
    "ctrl\x00\x07\x1b\x7f chars\ufffd", "   \n\t  \r\n ", "ALL CAPS!!! ... ?!", "https://example.com/a?b=c&d=e#f",
    "a" * 40, "In the beginning God created the heaven and the earth.", "Привет мир! Ελληνικά עברית العربية हिन्दी ไทย",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", f"{SP}already{SP}metaspace {SP}{SP}", "Ġalready Ċbyte ĠĠ", "<unk> <s> </s> literal",
    "   multiple   spaces   between   ", "1 22 333 4444 55555 666666", "İstanbul ß ẞ ǅ", "``quoted'' \"text\"",
]
ATOMS = [" ", "  ", "\n", "\t", "\r\n", "a", "Z", "é", "你", "1", "23", "٣", "!", "'", "'s", "😀", "\u3000", "\u00a0",
         "-", "the", " the", "\u0301", "?!", "ß", "İ", SP, "ア", "ж", "hello", " world"]
PAIRS = [("Hello world", "How are you?"), ("", "x"), ("中文", " emoji 😀"), ("line\r\n", "  spaced  "), ("a", "")]


def family_texts(name: str, specials: list[str], extra: list[str]) -> list[str]:
    """The shared texts, the family's own special-token texts (alone, glued to
    text, spaced, repeated, between lines) and random strings over atoms plus
    the specials."""
    out = list(TEXTS) + list(extra)
    for s in specials[:6]:
        out += [f"text{s}more", f" {s} spaced ", f"{s}{s}", f"a\n{s}\nb"]
    rng = random.Random(name)
    atoms = ATOMS + specials[:8]
    out += ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 24))) for _ in range(8)]
    return out


# ---- builders -----------------------------------------------------------------

def trainer(vocab: int, specials: list[str], **kw) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=specials, show_progress=False, **kw)


def to_doc(tok: Tokenizer) -> dict:
    return json.loads(tok.to_str())


def added(content: str, special: bool = True, normalized: bool = False, lstrip: bool = False, rstrip: bool = False,
          single_word: bool = False) -> dict:
    return {"id": None, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def add_tokens(doc: dict, tokens: list[dict], in_vocab: bool = False) -> dict:
    """Appends added tokens. A content already in the model vocab keeps its
    id; others get the next ids after the vocab, and with `in_vocab` also go
    into the model vocab (GPT-NeoX's space runs), else they are added-only
    (Phi-3's chat tokens, DeBERTa-v3's [MASK], Whisper's timestamps)."""
    vocab = doc["model"]["vocab"]
    by_content = {t["content"]: t for t in doc["added_tokens"]}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    next_id = max([*ids, *(t["id"] for t in doc["added_tokens"])]) + 1
    for t in tokens:
        if t["content"] in by_content:
            by_content[t["content"]].update({k: v for k, v in t.items() if k != "id"})
            continue
        if isinstance(vocab, dict) and t["content"] in vocab:
            t["id"] = vocab[t["content"]]
        else:
            t["id"] = next_id
            next_id += 1
            if in_vocab and isinstance(vocab, dict):
                vocab[t["content"]] = t["id"]
            elif in_vocab:
                vocab.append([t["content"], 0.0])
        doc["added_tokens"].append(t)
        by_content[t["content"]] = t
    return doc


def template(single: str, pair: str | None, doc: dict) -> dict:
    ids = {t["content"]: t["id"] for t in doc["added_tokens"]}
    names = {w.split(":")[0] for w in (single + " " + (pair or "")).split() if not w.startswith("$")}
    tp = processors.TemplateProcessing(single=single, pair=pair, special_tokens=[(n, ids[n]) for n in sorted(names)])
    return json.loads(tp.__getstate__())


def sp_bpe(specials: list[str], normalizer, pre_tokenizer, vocab: int = 700) -> dict:
    """SentencePiece-converted BPE (Llama-2, Mistral, Gemma, Phi-3, Yi,
    InternLM2, Baichuan, MiniCPM): char-level BPE, byte fallback, fuse_unk,
    <0xHH> only in the model vocab."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pre_tokenizer is not None:
        tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(base.training_texts(), trainer(vocab, [*specials, *BYTE_TOKENS], limit_alphabet=110))
    doc = to_doc(tok)
    doc["added_tokens"] = [t for t in doc["added_tokens"] if t["content"] not in BYTE_TOKENS]
    return doc


SP_DECODER = [
    {"type": "Replace", "pattern": {"String": SP}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
]
LEGACY_NORMALIZER = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])


def llama2() -> tuple[dict, list[str]]:
    """Llama-2 / Mistral v0.1 / MiniCPM (legacy converter): Prepend + Replace,
    no pre-tokenizer, "<s> $A" and "<s> $A <s> $B"."""
    doc = sp_bpe(["<unk>", "<s>", "</s>"], LEGACY_NORMALIZER, None)
    doc["post_processor"] = template("<s>:0 $A:0", "<s>:0 $A:0 <s>:1 $B:1", doc)
    doc["decoder"] = {"type": "Sequence", "decoders": SP_DECODER}
    return doc, ["<s>", "</s>", "<unk>"]


MISTRAL_CONTROL = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                   "[/TOOL_RESULTS]", *[f"[control_{i}]" for i in range(8, 40)]]


def mistral_v03() -> tuple[dict, list[str]]:
    """Mistral-7B v0.3: Metaspace(prepend first, split false) pre-tokenizer,
    no normalizer, control tokens in the model vocab right after </s>."""
    pre = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="first", split=False)
    doc = sp_bpe(["<unk>", "<s>", "</s>", *MISTRAL_CONTROL], None, pre)
    doc["post_processor"] = template("<s>:0 $A:0", "<s>:0 $A:0 <s>:1 $B:1", doc)
    doc["decoder"] = {"type": "Sequence", "decoders": SP_DECODER}
    return doc, ["[INST]", "[/INST]", "<s>", "</s>", "[TOOL_CALLS]"]


TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                   "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
                   "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
                   *[f"<SPECIAL_{i}>" for i in range(20, 60)]]


def byte_bpe(pre_tokenizer, specials: list[str], normalizer=None, vocab: int = 700, **kw) -> dict:
    tok = Tokenizer(models.BPE(**{k: v for k, v in kw.items() if k in ("continuing_subword_prefix", "end_of_word_suffix", "unk_token")}))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    tkw = {k: v for k, v in kw.items() if k in ("continuing_subword_prefix", "end_of_word_suffix")}
    tok.train_from_iterator(base.training_texts(), trainer(vocab, specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **tkw))
    return to_doc(tok)


def split_bytes(*patterns: str):
    return pre_tokenizers.Sequence([*(pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])


def tekken() -> tuple[dict, list[str]]:
    """Mistral Nemo / Pixtral (tekken): o200k-like Split without contractions,
    single digits, ByteLevel(use_regex false), 1000 specials first (60 here)."""
    doc = byte_bpe(split_bytes(TEKKEN_PATTERN), TEKKEN_SPECIALS)
    doc["post_processor"] = template("<s>:0 $A:0", "<s>:0 $A:0 <s>:1 $B:1", doc)
    return doc, ["[INST]", "[/INST]", "<s>", "</s>", "[IMG]", "<SPECIAL_20>"]


def phi3() -> tuple[dict, list[str]]:
    """Phi-3 / Phi-3.5 mini: Llama-2 layout plus chat tokens after the vocab,
    the role/end tokens with rstrip (they eat the newline after them)."""
    doc, _ = llama2()
    doc = add_tokens(doc, [added("<|endoftext|>"), added("<|assistant|>", rstrip=True),
                           *[added(f"<|placeholder{i}|>", rstrip=True) for i in range(1, 7)],
                           added("<|system|>", rstrip=True), added("<|end|>", rstrip=True), added("<|user|>", rstrip=True)])
    doc["post_processor"] = template("<s>:0 $A:0", "<s>:0 $A:0 <s>:1 $B:1", doc)
    return doc, ["<|user|>", "<|end|>", "<|assistant|>", "<|endoftext|>", "<|system|>", "<s>"]


GEMMA_HTML = ["<table>", "<caption>", "<thead>", "<tbody>", "<tr>", "<td>", "<h1>", "</h1>", "<b>", "</b>", "<br>"]


def gemma() -> tuple[dict, list[str]]:
    """Gemma-2 / Gemma-3: Replace(" ", "▁"), no pre-tokenizer, byte fallback,
    <pad>/<eos>/<bos>/<unk>/<mask> first, many non-special added tokens
    (whitespace runs, ▁ runs, HTML tags) and image/turn specials."""
    runs = ["\n\n", "\n\n\n", "\t\t", SP * 2, SP * 3, SP * 4]
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]", *[f"<unused{i}>" for i in range(12)],
                "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    doc = sp_bpe(specials, normalizers.Replace(" ", SP), None, vocab=800)
    doc = add_tokens(doc, [added(s, special=False) for s in runs + GEMMA_HTML])
    doc["post_processor"] = template("<bos>:0 $A:0", "<bos>:0 $A:0 <bos>:1 $B:1", doc)
    doc["decoder"] = {"type": "Sequence", "decoders": SP_DECODER[:3]}
    return doc, ["<start_of_turn>", "<end_of_turn>", "<bos>", "<table>", SP * 2, "\n\n", "<image_soft_token>"]


STARCODER_SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>",
                      "<file_sep>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
                      "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>",
                      "<code_to_intermediate>", "<intermediate_to_code>", "<pr>", "<pr_status>", "<pr_is_merged>"]
DIGITS_BYTES = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])


def starcoder2() -> tuple[dict, list[str]]:
    """StarCoder2: Digits(individual) then ByteLevel(regex), ByteLevel
    post-processor and decoder, code specials."""
    doc = byte_bpe(DIGITS_BYTES, STARCODER_SPECIALS)
    doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return doc, ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<|endoftext|>", "<file_sep>", "<repo_name>"]


SMOLLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
                   "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
                   "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>"]


def smollm() -> tuple[dict, list[str]]:
    """SmolLM / SmolLM2: StarCoder-style Digits + ByteLevel, ChatML specials,
    ByteLevel post-processor with trim_offsets."""
    doc = byte_bpe(DIGITS_BYTES, SMOLLM_SPECIALS)
    doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return doc, ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<filename>"]


def gpt_neox() -> tuple[dict, list[str]]:
    """GPT-NeoX-20B / Pythia: NFC, ByteLevel(add_prefix_space false, trim
    offsets), ByteLevel post-processor with trim_offsets; runs of spaces as
    normalized, non-special added tokens at the vocab's end."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    doc = byte_bpe(pre, ["<|endoftext|>", "<|padding|>"], normalizer=normalizers.NFC())
    doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    doc = add_tokens(doc, [added(" " * n, special=False, normalized=True) for n in (24, 16, 8, 4, 3, 2)], in_vocab=True)
    return doc, ["<|endoftext|>", "<|padding|>", "    ", "  "]


def olmo() -> tuple[dict, list[str]]:
    """OLMo-1 (hf): GPT-NeoX layout with PII placeholders, EOS appended by the template."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    doc = byte_bpe(pre, ["|||IP_ADDRESS|||", "<|padding|>", "<|endoftext|>"])
    doc = add_tokens(doc, [added("|||EMAIL_ADDRESS|||", special=False, normalized=True),
                           added("|||PHONE_NUMBER|||", special=False, normalized=True)])
    doc["post_processor"] = template("$A:0 <|endoftext|>:0", "$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1", doc)
    return doc, ["|||IP_ADDRESS|||", "|||EMAIL_ADDRESS|||", "<|endoftext|>", "<|padding|>"]


FALCON_SPECIALS = [">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<", ">>SUMMARY<<", ">>COMMENT<<", ">>ANSWER<<",
                   ">>QUESTION<<", ">>DOMAIN<<", ">>PREFIX<<", ">>SUFFIX<<", ">>MIDDLE<<", "<|endoftext|>"]


def falcon() -> tuple[dict, list[str]]:
    """Falcon: Punctuation(contiguous), ByteLevel(regex), Digits, Split of
    three digits; ByteLevel post-processor and decoder."""
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False),
    ])
    doc = byte_bpe(pre, FALCON_SPECIALS)
    doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return doc, [">>TITLE<<", ">>ANSWER<<", "<|endoftext|>", ">>QUESTION<<"]


BLOOM_PATTERN = " ?[^(\\s|[.,!?…。，、।۔،])]+"


def bloom() -> tuple[dict, list[str]]:
    """BLOOM: Split(" ?[^(\\s|[.,!?…。，、।۔،])]+", isolated) then ByteLevel
    without its regex; <unk>/<s>/</s>/<pad>; ByteLevel post-processor."""
    doc = byte_bpe(split_bytes(BLOOM_PATTERN), ["<unk>", "<s>", "</s>", "<pad>"])
    doc["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": False}
    return doc, ["<s>", "</s>", "<pad>", "<unk>"]


GLM4_SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                 "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
                 "<|end_of_video|>"]


def glm4() -> tuple[dict, list[str]]:
    """GLM-4 (hf): cl100k-style Split + ByteLevel(use_regex false),
    "[gMASK] <sop> $A" template, ChatGLM role tokens."""
    doc = byte_bpe(split_bytes(cov.CL100K_PATTERN), GLM4_SPECIALS)
    doc["post_processor"] = template("[gMASK]:0 <sop>:0 $A:0", "[gMASK]:0 <sop>:0 $A:0 $B:1", doc)
    return doc, ["[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|endoftext|>", "<|observation|>"]


WHISPER_LANGS = ["en", "zh", "de", "es", "ru", "ko", "fr", "ja"]


def whisper() -> tuple[dict, list[str]]:
    """Whisper: ByteLevel(add_prefix_space false), template
    "<|startoftranscript|> <|notimestamps|> $A <|endoftext|>", language/task
    specials, timestamps as non-special added tokens (0.00-1.00 here)."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    doc = byte_bpe(pre, ["<|endoftext|>"])
    toks = ["<|startoftranscript|>", *[f"<|{lang}|>" for lang in WHISPER_LANGS], "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    doc = add_tokens(doc, [added(t) for t in toks] + [added(f"<|{i / 50:.2f}|>", special=False) for i in range(51)])
    doc["post_processor"] = template("<|startoftranscript|>:0 <|notimestamps|>:0 $A:0 <|endoftext|>:0",
                                     "<|startoftranscript|>:0 <|notimestamps|>:0 $A:0 $B:1 <|endoftext|>:1", doc)
    return doc, ["<|startoftranscript|>", "<|en|>", "<|0.00|>", "<|0.52|>", "<|endoftext|>", "<|notimestamps|>"]


def clip() -> tuple[dict, list[str]]:
    """CLIP: NFC + collapse whitespace + Lowercase; Split(invert, removed) of
    CLIP's regex then ByteLevel(use_regex false); BPE with "</w>" end-of-word
    suffix; RobertaProcessing with <|startoftext|>/<|endoftext|>."""
    norm = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    doc = byte_bpe(pre, ["<|startoftext|>", "<|endoftext|>"], normalizer=norm, continuing_subword_prefix="",
                   end_of_word_suffix="</w>", unk_token="<|endoftext|>")
    doc["model"]["unk_token"] = "<|endoftext|>"
    doc["model"]["continuing_subword_prefix"] = ""
    doc["post_processor"] = {"type": "RobertaProcessing", "sep": ["<|endoftext|>", doc["model"]["vocab"]["<|endoftext|>"]],
                             "cls": ["<|startoftext|>", doc["model"]["vocab"]["<|startoftext|>"]],
                             "trim_offsets": False, "add_prefix_space": False}
    return doc, ["<|startoftext|>", "<|endoftext|>"]


def roberta() -> tuple[dict, list[str]]:
    """roberta-base: ByteLevel(add_prefix_space false), RobertaProcessing
    (trim_offsets, no prefix space), <mask> with lstrip."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    doc = byte_bpe(pre, ["<s>", "<pad>", "</s>", "<unk>"])
    doc = add_tokens(doc, [added("<mask>", lstrip=True)])
    doc["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True,
                             "add_prefix_space": False}
    return doc, ["<mask>", "<s>", "</s>", "<pad>"]


def charsmap() -> str:
    with open(os.path.join(base.OUT, "t5_unigram.json"), encoding="utf-8") as f:
        return json.load(f)["normalizer"]["normalizers"][0]["precompiled_charsmap"]


def unigram(specials: list[str], unk: str, vocab: int = 700) -> dict:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always", split=True)
    tok.train_from_iterator(base.training_texts(), trainers.UnigramTrainer(
        vocab_size=vocab, special_tokens=specials, unk_token=unk, show_progress=False, max_piece_length=12))
    doc = to_doc(tok)
    # transformers' SpmConverter normalizer: Precompiled, right Strip, runs of spaces to one ▁.
    doc["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": charsmap()},
        {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": SP},
    ]}
    doc["decoder"] = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "always", "split": True}
    return doc


def deberta_v3() -> tuple[dict, list[str]]:
    """DeBERTa-v3: Unigram with the SentencePiece charsmap, Metaspace,
    "[CLS] $A [SEP]" / "[CLS] $A [SEP] $B:1 [SEP]:1", [MASK] after the vocab."""
    doc = unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]")
    doc = add_tokens(doc, [added("[MASK]")])
    doc["post_processor"] = template("[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", doc)
    return doc, ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"]


def xlm_r() -> tuple[dict, list[str]]:
    """XLM-RoBERTa: Unigram (<s> <pad> </s> <unk> first), charsmap,
    "<s> $A </s>" / "<s> $A </s> </s> $B </s>", <mask> (lstrip) at the end."""
    doc = unigram(["<s>", "<pad>", "</s>", "<unk>"], "<unk>")
    doc = add_tokens(doc, [added("<mask>", lstrip=True)])
    doc["post_processor"] = template("<s>:0 $A:0 </s>:0", "<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0", doc)
    return doc, ["<mask>", "<s>", "</s>", "<pad>"]


def yi() -> tuple[dict, list[str]]:
    """Yi / Baichuan2 (no dummy prefix): Replace(" ", "▁") only, no
    post-processor, decoder without the leading-space Strip, ChatML specials."""
    doc = sp_bpe(["<unk>", "<|startoftext|>", "<|endoftext|>"], normalizers.Replace(" ", SP), None)
    doc = add_tokens(doc, [added("<|im_start|>"), added("<|im_end|>"), added("<|im_sep|>")])
    doc["post_processor"] = None
    doc["decoder"] = {"type": "Sequence", "decoders": SP_DECODER[:3]}
    return doc, ["<|im_start|>", "<|im_end|>", "<|startoftext|>", "<|endoftext|>", "<|im_sep|>"]


def internlm2() -> tuple[dict, list[str]]:
    """InternLM2: Llama-2 legacy layout, ChatML and tool tokens (special,
    some with lstrip/rstrip false and normalized false), "<s> $A"."""
    doc, _ = llama2()
    doc = add_tokens(doc, [added(t) for t in ("<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>",
                                              "<|im_end|>", "<|im_start|>")])
    doc["post_processor"] = template("<s>:0 $A:0", "<s>:0 $A:0 <s>:1 $B:1", doc)
    return doc, ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<s>"]


def llama2_normalized_specials() -> tuple[dict, list[str]]:
    """Llama-2 / Vicuna files from older transformers conversions: <unk>,
    <s>, </s> with "normalized": true (matched after the Prepend + Replace
    normalizer, decoded from their normalized form "▁<s>")."""
    doc, specials = llama2()
    for t in doc["added_tokens"]:
        t["normalized"] = True
    return doc, specials


MODERNBERT_SPECIALS = ["|||IP_ADDRESS|||", "<|padding|>", "<|endoftext|>", "[UNK]", "[CLS]", "[SEP]", "[PAD]"]


def modernbert() -> tuple[dict, list[str]]:
    """ModernBERT: the OLMo/NeoX byte-level BPE with BERT's [CLS]/[SEP]
    template, [MASK] with lstrip after the vocab."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    doc = byte_bpe(pre, MODERNBERT_SPECIALS)
    doc = add_tokens(doc, [added("[MASK]", lstrip=True), *[added(f"[unused{i}]", special=False) for i in range(4)]])
    doc["post_processor"] = template("[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", doc)
    return doc, ["[MASK]", "[CLS]", "[SEP]", "[unused0]", "<|endoftext|>"]


COHERE_SPECIALS = ["<PAD>", "<UNK>", "<CLS>", "<SEP>", "<MASK_TOKEN>", "<BOS_TOKEN>", "<EOS_TOKEN>", "<EOP_TOKEN>",
                   "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
                   "<|SYSTEM_TOKEN|>"]


def cohere() -> tuple[dict, list[str]]:
    """Command-R (Cohere): NFC, Digits(individual) + ByteLevel(regex),
    "<BOS_TOKEN> $A" template, turn tokens."""
    doc = byte_bpe(DIGITS_BYTES, COHERE_SPECIALS, normalizer=normalizers.NFC())
    doc["post_processor"] = template("<BOS_TOKEN>:0 $A:0", "<BOS_TOKEN>:0 $A:0 <BOS_TOKEN>:1 $B:1", doc)
    return doc, ["<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<BOS_TOKEN>", "<EOS_TOKEN>"]


def funnel() -> tuple[dict, list[str]]:
    """Funnel Transformer: BERT uncased WordPiece with "<cls>" of type id 2
    ("<cls>:2 $A:0 <sep>:0"), <mask> and <s>/</s> specials."""
    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "<s>", "</s>"]
    tok.train_from_iterator(base.training_texts(), trainers.WordPieceTrainer(vocab_size=700, special_tokens=specials,
                                                                               show_progress=False))
    doc = to_doc(tok)
    doc["post_processor"] = template("<cls>:2 $A:0 <sep>:0", "<cls>:2 $A:0 <sep>:0 $B:1 <sep>:1", doc)
    return doc, ["<mask>", "<cls>", "<sep>", "<s>"]


FAMILIES = {
    "llama2": llama2, "mistral_v03": mistral_v03, "tekken": tekken, "phi3": phi3, "gemma": gemma,
    "starcoder2": starcoder2, "smollm": smollm, "gpt_neox": gpt_neox, "olmo": olmo, "falcon": falcon, "bloom": bloom,
    "glm4": glm4, "whisper": whisper, "clip": clip, "roberta": roberta, "deberta_v3": deberta_v3, "xlm_r": xlm_r,
    "yi": yi, "internlm2": internlm2, "llama2_normalized_specials": llama2_normalized_specials,
    "modernbert": modernbert, "cohere": cohere, "funnel": funnel,
}
EXTRA = {
    "mistral_v03": ["[INST] Hello [/INST] Hi</s>[INST]again[/INST]", "<s>[INST]x[/INST]"],
    "tekken": ["<s>[INST]Hello[/INST]Hi</s>", "[SYSTEM_PROMPT]be brief[/SYSTEM_PROMPT]"],
    "phi3": ["<|user|>\nHello<|end|>\n<|assistant|>\nHi<|end|>\n", "<|system|>  \n  sys<|end|>"],
    "gemma": ["<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n", "a  b   c\n\n\nd\t\te",
              "<table><tr><td>x</td></tr></table>", "img <start_of_image><image_soft_token><end_of_image>"],
    "glm4": ["[gMASK]<sop><|user|>\nHello<|assistant|>\nHi", "<|system|>\nsys<|observation|>"],
    "whisper": ["<|startoftranscript|><|en|><|transcribe|><|0.00|> Hello<|0.52|><|endoftext|>"],
    "smollm": ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"],
    "starcoder2": ["<fim_prefix>def f(x):\n<fim_suffix>\n    return y<fim_middle>", "<repo_name>a/b<file_sep>x.py\n123456"],
    "internlm2": ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"],
    "yi": ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"],
    "gpt_neox": ["def f():\n        return   1\n" + " " * 30 + "x"],
    "falcon": [">>QUESTION<<What?>>ANSWER<<Yes...", "12345678 1,234,567"],
    "clip": ["A Photo   of a CAT.  \n", "a photo of 2 dogs!!!"],
    "cohere": ["<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|>"],
    "modernbert": ["The capital of France is [MASK].", "x [MASK][MASK] y"],
    "funnel": ["The capital of France is <mask>.", "HeLLo WoRLD 中文"],
}


# ---- HF's outputs -------------------------------------------------------------------

def encode_record(tok: Tokenizer, text, pair=None, special=True) -> dict:
    try:
        enc = tok.encode(text, pair, add_special_tokens=special) if pair is not None else tok.encode(text, add_special_tokens=special)
    except Exception as e:  # noqa: BLE001 - the error is the expected outcome
        return {"error": str(e)}
    return {"ids": enc.ids, "offsets": [list(o) for o in enc.offsets], "type_ids": enc.type_ids}


def record(name: str, path: str, specials: list[str]) -> dict:
    tok = Tokenizer.from_file(path)
    texts = family_texts(name, specials, EXTRA.get(name, []))
    cases = []
    for t in texts:
        with_sp, no_sp = encode_record(tok, t), encode_record(tok, t, special=False)
        case = {
            "text": t, "ids": with_sp["ids"], "offsets": with_sp["offsets"], "ids_no_special": no_sp["ids"],
            "offsets_no_special": no_sp["offsets"], "decoded": tok.decode(with_sp["ids"]),
        }
        keep = tok.decode(with_sp["ids"], skip_special_tokens=False)
        if keep != case["decoded"]:  # absent: the same as "decoded" (keeps the files small)
            case["decoded_keep_special"] = keep
        cases.append(case)
    rng = random.Random(name + "ids")
    size = tok.get_vocab_size()
    id_lists = [[rng.randrange(size) for _ in range(rng.randint(0, 12))] for _ in range(8)]
    decodes = [{"ids": ids, "decoded": tok.decode(ids), "decoded_keep_special": tok.decode(ids, skip_special_tokens=False)}
               for ids in id_lists]
    for d in decodes:
        if d["decoded_keep_special"] == d["decoded"]:
            del d["decoded_keep_special"]
    pairs = [(a, b) for a, b in PAIRS] + [(f"{specials[0]}hi", f"there{specials[-1]}")]
    pair_cases = []
    for a, b in pairs:
        for special in (True, False):
            pair_cases.append({"text": a, "pair": b, "add_special_tokens": special, **encode_record(tok, a, b, special)})
    return {"tokenizer": f"{name}.json", "hf_vocab_size": size, "cases": cases, "decodes": decodes, "pairs": pair_cases}


# Texts that once split mft from HF on the coverage files one level up:
# Metaspace "first" after a normalizer that drops the input's first chars
# (no "▁" is prepended: HF prepends only at original offset 0), and
# Metaspace's split of a run of "▁" (each one its own piece).
REGRESSIONS = {
    "unigram_byte_fallback": ["\x1bHello world", "\x0b\x0c x", "\x7f\x01 two words", "\x1b", "\x1b\x85a", "a\x1bb"],
    # Onig's \w holds letter numbers (〇, Ⅻ) and the Latin-1 ½; UnicodeScripts
    # drops "any"-script chars (private use, unassigned) before the first script.
    "split_behaviours": ["〇K]", "〇a", "xⅫy ½ a\u200db", "Ⓐb_c"],
    "wordlevel_scripts": ["\ue000b", "\r\x1c\ue000", "\u0378", "  ab", "\ue000 a\u0378b",
                          # HF's script table is Unicode 9.0's: later chars (🥰, Armenian ՠ) are any-script,
                          # and a few chars have their 9.0 script (U+0589 Common, U+0953 Devanagari).
                          "a🥰b", "xՠyֆ\u0588z", "ֆ\u0589ֆ", "\u061b\u061c\u061d\u061e", "\u0952\u0953\u0954\u0955 क"],
    "metaspace_never": ["a\u2581\u2581\u2581b", "\u2581\u2581/abcdefghij", "x  \u2581\u2581 y", "abcdefg\u2581\u2581hij",
                        "Σ𝟘\u0308\u2581\u2581/\ufeff\"\x1b>&|'sthenk>Ġ{"],
}


# Id lists whose decode split mft from HF: byte_level_no_regex's decoder runs
# Replace("^ ") on the ByteLevel-joined text, and Onig's "^" is a line anchor.
DECODE_REGRESSIONS = {
    "byte_level_no_regex": [[0, 199, 0, 0, 448, 3, 0, 27, 0], [82, 0, 0, 0, 9, 604, 206, 141, 199, 665],
                            [231, 315, 0, 0, 199, 486, 563, 760, 92, 306, 0, 306, 0]],
}


def write_regressions() -> None:
    for name, id_lists in DECODE_REGRESSIONS.items():
        tok = Tokenizer.from_file(os.path.join(base.OUT, f"{name}.json"))
        doc = {"tokenizer": f"../{name}.json", "hf_vocab_size": tok.get_vocab_size(), "cases": [], "pairs": [],
               "decodes": [{"ids": ids, "decoded": tok.decode(ids), "decoded_keep_special": tok.decode(ids, skip_special_tokens=False)}
                           for ids in id_lists]}
        with open(os.path.join(OUT, f"regress_{name}.cases.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
    for name, texts in REGRESSIONS.items():
        path = os.path.join(base.OUT, f"{name}.json")
        cases = record(name, path, ["<unk>"])
        keep = {t: c for c in cases["cases"] if (t := c["text"]) in texts}
        tok = Tokenizer.from_file(path)
        for t in texts:
            if t not in keep:
                enc, plain = tok.encode(t), tok.encode(t, add_special_tokens=False)
                keep[t] = {"text": t, "ids": enc.ids, "offsets": [list(o) for o in enc.offsets], "ids_no_special": plain.ids,
                           "offsets_no_special": [list(o) for o in plain.offsets], "decoded": tok.decode(enc.ids),
                           "decoded_keep_special": tok.decode(enc.ids, skip_special_tokens=False)}
        cases.update({"tokenizer": f"../{name}.json", "cases": list(keep.values()), "decodes": cases["decodes"][:3],
                      "pairs": cases["pairs"][:2]})
        with open(os.path.join(OUT, f"regress_{name}.cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))


# Regex syntax as HF's Oniguruma reads it (Ruby syntax), each pattern split
# (Isolated) over texts that reach where other engines differ.
REGEX_TEXT = "ab xab ab½ ab\u200d Ⅻ〇 ²³ Ⓐb 0aFgG a\nb\r\nc\u2028d \u0085 e\u0301x straße STRASSE 12٣ αβ!"
REGEX_PATTERNS = [
    r"\w+", r"\W+", r"[\w-]+", r"[^\W\d_]+", r"\bab\b", r"\Bb", r"\p{Word}+", r"\p{^L}+", r"[[:punct:]]+", r"[[:alpha:]]+",
    r"[[:^space:]]+", r"[[:alnum:][:punct:]]+", r"\h+", r"^.", r"\S$", r"b\Z", r"\R", r"\N+", r"\O", r"(?m).+", r"(?i:a|s)+",
    r"\d+", r"\s+", r"\p{N}+", r"[a-z&&[^aeiou]]+", r"(?x) a b ",
]


SCRIPT_TEXTS = ["a🥰b", "xՠyֆ\u0588z", "ֆ\u0589ֆ", "\u061b\u061c\u061d\u061e", "\u0952\u0953\u0954\u0955 क",
                "  ab", "\ue000a\u0378b \ue000", "どこで生れ。Yes", "αβγ abc 123 🤖 \U0001fae0 x"]


def write_regex_cases() -> None:
    out = []
    for pattern in REGEX_PATTERNS:
        doc = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
               "pre_tokenizer": {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}}
        enc = Tokenizer.from_str(json.dumps(doc)).encode(REGEX_TEXT)
        out.append({"pattern": pattern, "offsets": [list(o) for o in enc.offsets]})
    # UnicodeScripts alone: HF's Unicode 9.0 script table (later chars any-script, a few older scripts).
    scripts_doc = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
                   "pre_tokenizer": {"type": "UnicodeScripts"}}
    stok = Tokenizer.from_str(json.dumps(scripts_doc))
    scripts = [{"text": t, "offsets": [list(o) for o in stok.encode(t).offsets]} for t in SCRIPT_TEXTS]
    with open(os.path.join(base.OUT, "onig_regex.cases.json"), "w", encoding="utf-8") as f:
        json.dump({"text": REGEX_TEXT, "cases": out, "unicode_scripts": scripts}, f, ensure_ascii=False, indent=0)


def main() -> int:
    import tokenizers

    os.makedirs(OUT, exist_ok=True)
    names = sys.argv[1:] or list(FAMILIES)
    if names == ["--regressions"]:
        write_regressions()
        write_regex_cases()
        return 0
    for name in names:
        doc, specials = FAMILIES[name]()
        path = os.path.join(OUT, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        cases = record(name, path, specials)
        cases["hf_tokenizers_version"] = tokenizers.__version__
        with open(os.path.join(OUT, f"{name}.cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))
        print(name, os.path.getsize(path), os.path.getsize(os.path.join(OUT, f"{name}.cases.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
