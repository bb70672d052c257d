"""Every component HF `tokenizers` defines, against HF's own outputs.

The files (tests/fixtures/tokenizers, made by tools/make_tokenizer_fixtures.py
--only-coverage from tools/tokenizer_coverage_fixtures.py) are BERT, T5,
ALBERT, Gemma, cl100k/o200k, Qwen2.5 and DeepSeek-V3 shapes plus files built
to reach every normalizer, pre-tokenizer, model, post-processor and decoder;
the cases hold HF's ids, offsets and decodes. HF is not needed here.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from mft.errors import MftError
from mft.tokenizer import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")
KJV = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
NAMES = [
    "bert_wordpiece", "bert_cased_wordpiece", "t5_unigram", "albert_unigram", "unigram_byte_fallback", "gemma_style",
    "split_behaviours", "wordlevel_scripts", "metaspace_never", "nfkc_byte_level", "byte_level_no_regex",
    "cl100k_style", "o200k_style", "qwen25_style", "deepseek_v3_style",
    "truncate_pad_fixed", "truncate_left_pad_longest",  # truncation/padding set in the file
    "byte_level_normalizer",
]


def read(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    doc = read(f"{request.param}.cases.json")
    return doc, Tokenizer.from_file(os.path.join(FIXTURES, doc["tokenizer"]))


def test_ids_match_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        assert tok.encode(case["text"]) == case["ids"], repr(case["text"])
        assert tok.encode(case["text"], add_special_tokens=False) == case["ids_no_special"], repr(case["text"])
    if doc["tokenizer"] != "truncate_left_pad_longest.json":  # pads a batch to its longest (tested below)
        texts = [c["text"] for c in doc["cases"]]
        assert tok.encode_batch(texts) == [c["ids"] for c in doc["cases"]]


def test_offsets_match_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        ids, offsets = tok.encode(case["text"], return_offsets=True)
        assert ids == case["ids"], repr(case["text"])
        assert [list(o) for o in offsets] == case["offsets"], repr(case["text"])
        _, offsets = tok.encode(case["text"], add_special_tokens=False, return_offsets=True)
        assert [list(o) for o in offsets] == case["offsets_no_special"], repr(case["text"])


def test_decode_matches_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        assert tok.decode(case["ids"]) == case["decoded"], repr(case["text"])
        assert tok.decode(case["ids"], skip_special_tokens=False) == case["decoded_keep_special"], repr(case["text"])


def test_long_text_and_vocab_size_match_hf(fixture):
    doc, tok = fixture
    with open(KJV, encoding="utf-8") as f:
        lo, hi = doc["long_text_kjv_chapters"]
        text = "\n".join(json.loads(line)["text"] for line in f.readlines()[lo:hi])
    assert tok.encode(text) == doc["long_text_ids"]
    assert tok._tok.vocab_size == doc["hf_vocab_size"]
    assert tok.model_type == read(doc["tokenizer"])["model"]["type"]


def test_saved_file_encodes_the_same(fixture, tmp_path):
    doc, tok = fixture
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    again = Tokenizer.from_file(path)
    texts = [c["text"] for c in doc["cases"][:80]]
    assert again.encode_batch(texts) == tok.encode_batch(texts)
    assert again.decode_batch([c["ids"] for c in doc["cases"][:80]]) == [c["decoded"] for c in doc["cases"][:80]]


@pytest.mark.parametrize("name", ["truncate_pad_fixed", "truncate_left_pad_longest"])
def test_batches_are_padded_as_hf_pads_them(name):
    doc = read(f"{name}.batch_cases.json")
    tok = Tokenizer.from_file(os.path.join(FIXTURES, doc["tokenizer"]))
    assert tok.encode_batch(doc["texts"]) == doc["ids"]
    got = tok.encode_batch(doc["texts"], return_offsets=True)
    assert [ids for ids, _ in got] == doc["ids"]
    assert [[list(o) for o in offs] for _, offs in got] == doc["offsets"]
    assert len({len(r) for r in doc["ids"]}) == 1  # the case is a real padded batch
    with pytest.raises(MftError, match="sets its own truncation/padding"):
        tok.encode_batch(doc["texts"], max_length=8)


def component_types(node, out):
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            out.add(node["type"])
        for v in node.values():
            component_types(v, out)
    elif isinstance(node, list):
        for v in node:
            component_types(v, out)


def test_the_fixtures_reach_every_component_hf_defines():
    """Guards the list above: dropping a fixture must not silently drop a component."""
    seen: dict[str, set] = {k: set() for k in ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder")}
    flags = set()
    for name in os.listdir(FIXTURES):
        if not name.endswith(".json") or name.endswith("cases.json") or "corpus" in name:
            continue
        doc = read(name)
        for key, found in seen.items():
            component_types(doc.get(key), found)
        model = doc["model"]
        flags |= {k for k in ("byte_fallback", "fuse_unk", "ignore_merges") if model.get(k)}
        flags |= {k for k in ("continuing_subword_prefix", "end_of_word_suffix") if model.get("type") == "BPE" and model.get(k)}
        for t in doc.get("added_tokens", []):
            flags |= {k for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if t.get(k)}
    assert seen["normalizer"] >= {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "Replace", "Prepend",
                                  "BertNormalizer", "Precompiled", "Nmt", "ByteLevel", "Sequence"}
    assert seen["pre_tokenizer"] >= {"ByteLevel", "Split", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits", "Metaspace",
                                     "CharDelimiterSplit", "UnicodeScripts", "BertPreTokenizer", "FixedLength", "Sequence"}
    assert seen["model"] >= {"BPE", "WordPiece", "Unigram", "WordLevel"}
    assert seen["post_processor"] >= {"TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel", "Sequence"}
    assert seen["decoder"] >= {"ByteLevel", "Metaspace", "WordPiece", "BPEDecoder", "CTC", "ByteFallback", "Fuse", "Strip",
                               "Replace", "Sequence"}
    assert flags >= {"byte_fallback", "fuse_unk", "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix",
                     "single_word", "lstrip", "rstrip", "normalized", "special"}


# ---- tokenizer_config.json ------------------------------------------------

CONFIG_CASES = read("gemma_style.config_cases.json")


@pytest.mark.parametrize("variant", CONFIG_CASES["variants"], ids=lambda v: v["name"])
def test_tokenizer_config_is_read_as_transformers_reads_it(variant, tmp_path):
    shutil.copy(os.path.join(FIXTURES, CONFIG_CASES["tokenizer"]), tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(variant["config"]), encoding="utf-8")
    tok = Tokenizer.from_file(tmp_path)
    for case in variant["cases"]:
        assert tok.encode(case["text"]) == case["ids"], (variant["name"], case["text"])
    cfg = variant["config"]
    assert tok.add_bos_token == cfg.get("add_bos_token")
    assert tok.add_eos_token == cfg.get("add_eos_token")
    assert tok.model_max_length == 8192
    assert tok.chat_template == cfg["chat_template"]
    assert tok.bos_id == tok.token_to_id("<bos>") and tok.eos_id == tok.token_to_id("<eos>")
    assert tok.pad_id == tok.token_to_id("<pad>")


def test_chat_template_file_and_named_templates(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "gemma_style.json"), tmp_path / "tokenizer.json")
    cfg = {"chat_template": [{"name": "default", "template": "A"}, {"name": "tool_use", "template": "B"}],
           "model_max_length": 1e30}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    tok = Tokenizer.from_file(tmp_path)
    assert tok.chat_template == {"default": "A", "tool_use": "B"}
    assert tok.model_max_length is None and tok.add_bos_token is None
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    assert Tokenizer.from_file(tmp_path).chat_template == "{{ messages }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": 3}), encoding="utf-8")
    with pytest.raises(MftError, match="tokenizer_config.json: chat_template must be"):
        Tokenizer.from_file(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1]", encoding="utf-8")
    with pytest.raises(MftError, match="tokenizer_config.json: expected a JSON object"):
        Tokenizer.from_file(tmp_path)


# ---- bad input --------------------------------------------------------------

def bert_doc():
    return read("bert_wordpiece.json")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "Nope"}]}),
         r'unsupported pre_tokenizer\.pretokenizers\[1\] type "Nope" \(mft supports ByteLevel, Split, Whitespace'),
        (lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?<=a+)b"}, "behavior": "Isolated", "invert": False}]}),
         r"pre_tokenizer\.pretokenizers\[0\]\.pattern\.Regex: mft's regex engine .* cannot compile"),
        (lambda d: d.update(normalizer={"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Replace",
            "pattern": {"Regex": "(unclosed"}, "content": ""}]}),
         r"normalizer\.normalizers\[1\]\.pattern\.Regex: mft's regex engine"),
        (lambda d: d.update(normalizer={"type": "Sequence", "normalizers": [{"type": "Unidecode"}]}),
         r'unsupported normalizer\.normalizers\[0\] type "Unidecode" \(mft supports NFC, NFD, NFKC, NFKD, Lowercase'),
        (lambda d: d.update(decoder={"type": "Sequence", "decoders": [{"type": "WordPiece"}, {"type": "Nope"}]}),
         r'unsupported decoder\.decoders\[1\] type "Nope" \(mft supports ByteLevel, Metaspace, WordPiece, BPEDecoder, CTC'),
        (lambda d: d.update(post_processor={"type": "Sequence", "processors": [{"type": "Nope"}]}),
         r'unsupported post_processor\.processors\[0\] type "Nope"'),
        (lambda d: d["model"].update(type="Nope"), r'unsupported model type "Nope" at model\.type \(mft supports BPE, WordPiece'),
        (lambda d: d.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "!!notbase64"}),
         r"normalizer\.precompiled_charsmap: not a base64 SentencePiece charsmap"),
        (lambda d: d.update(pre_tokenizer={"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"}),
         r'pre_tokenizer\.behavior: expected "Removed", "Isolated"'),
        (lambda d: d["model"].update(max_input_chars_per_word="many"), r"model\.max_input_chars_per_word: expected a non-negative"),
    ],
)
def test_bad_components_name_file_path_and_what_is_supported(tmp_path, mutate, message):
    doc = bert_doc()
    mutate(doc)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(MftError, match=message) as err:
        Tokenizer.from_file(path)
    assert str(path) in str(err.value)


def test_bad_unigram_and_bpe_dropout(tmp_path):
    doc = read("t5_unigram.json")
    doc["model"]["vocab"][5] = ["x", "high"]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(MftError, match=r"model\.vocab\[5\]: expected \[piece, score\]"):
        Tokenizer.from_file(path)
    doc = read("gemma_style.json")
    doc["model"]["dropout"] = 0.1
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(MftError, match=r"model\.dropout is 0\.1; mft supports only null"):
        Tokenizer.from_file(path)
