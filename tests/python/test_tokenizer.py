"""mft.tokenizer against Hugging Face `tokenizers`' own outputs.

The fixtures (tests/fixtures/tokenizers, made by tools/make_tokenizer_fixtures.py)
hold tokenizer.json files trained by HF, HF's ids and decodes for tricky and
random strings, and HF's ids for a file trained by mft. HF is not needed here.
"""

from __future__ import annotations

import json
import os

import pytest

from mft.errors import MftError
from mft.tokenizer import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")
KJV = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
NAMES = [
    "gpt2_style", "prefix_space_template", "chatml", "mft_trained", "llama3_style", "qwen2_style",
    "llama2_style", "mistral_style", "metaspace_split", "gpt2_trim_offsets", "roberta_trim_offsets",
]


def load_cases(name):
    with open(os.path.join(FIXTURES, f"{name}.cases.json"), encoding="utf-8") as f:
        return json.load(f)


def kjv_texts(lo, hi):
    with open(KJV, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f.readlines()[lo:hi]]


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    doc = load_cases(request.param)
    return doc, Tokenizer.from_file(os.path.join(FIXTURES, doc["tokenizer"]))


def test_encode_matches_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        assert tok.encode(case["text"]) == case["ids"], repr(case["text"])
        assert tok.encode(case["text"], add_special_tokens=False) == case["ids_no_special"], repr(case["text"])


def test_decode_matches_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        assert tok.decode(case["ids"]) == case["decoded"], repr(case["text"])
        assert tok.decode(case["ids"], skip_special_tokens=False) == case["decoded_keep_special"], repr(case["text"])


def test_offsets_match_hf(fixture):
    doc, tok = fixture
    for case in doc["cases"]:
        ids, offsets = tok.encode(case["text"], return_offsets=True)
        assert ids == case["ids"], repr(case["text"])
        assert [list(o) for o in offsets] == case["offsets"], repr(case["text"])
        if "offsets_no_special" in case:  # recorded for the newer fixtures only
            _, offsets = tok.encode(case["text"], add_special_tokens=False, return_offsets=True)
            assert [list(o) for o in offsets] == case["offsets_no_special"], repr(case["text"])
    texts = [c["text"] for c in doc["cases"][:50]]
    batch = tok.encode_batch(texts, return_offsets=True)
    assert [[list(o) for o in offs] for _, offs in batch] == [c["offsets"] for c in doc["cases"][:50]]


def test_decode_batch_matches_hf(fixture):
    doc, tok = fixture
    cases = doc["cases"]
    assert tok.decode_batch([c["ids"] for c in cases]) == [c["decoded"] for c in cases]
    assert tok.decode_batch([c["ids"] for c in cases], skip_special_tokens=False) == [c["decoded_keep_special"] for c in cases]


def test_long_text_matches_hf(fixture):
    doc, tok = fixture
    text = "\n".join(kjv_texts(*doc["long_text_kjv_chapters"]))
    assert tok.encode(text) == doc["long_text_ids"]
    assert tok.vocab_size == doc["hf_vocab_size"]


def test_encode_batch_is_ordered_and_equal_to_encode(fixture):
    doc, tok = fixture
    texts = [c["text"] for c in doc["cases"]]
    assert tok.encode_batch(texts) == [c["ids"] for c in doc["cases"]]
    assert tok.encode_batch(texts, add_special_tokens=False) == [c["ids_no_special"] for c in doc["cases"]]
    ids, offsets = tok.encode_batch_flat(texts)
    assert len(offsets) == len(texts) + 1
    for i, c in enumerate(doc["cases"]):
        assert ids[offsets[i]:offsets[i + 1]].tolist() == c["ids"]


def test_save_round_trip_is_atomic_and_identical(fixture, tmp_path):
    doc, tok = fixture
    out = tmp_path / "tokenizer.json"
    tok.save(out)
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json"]  # no temp file left behind
    again = Tokenizer.from_file(out)
    for case in doc["cases"][:80]:
        assert again.encode(case["text"]) == case["ids"]
        assert again.decode(case["ids"], skip_special_tokens=False) == case["decoded_keep_special"]
    assert again.to_str() == tok.to_str()


def test_round_trip_of_arbitrary_text():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "chatml.json"))
    texts = ["", "x", "  \n\t ", "\x00\uffff\U0010ffff", "é" * 50 + "😀" * 20, "a'b's'LL 12,3"]
    for t in texts:
        assert tok.decode(tok.encode(t, add_special_tokens=False), skip_special_tokens=False) == t


def training_corpus():
    with open(os.path.join(FIXTURES, "training_corpus.json"), encoding="utf-8") as f:
        spec = json.load(f)
    return kjv_texts(0, spec["kjv_first_lines"]) + spec["mixed_repeated_3x"] * 3, spec["min_frequency"]


@pytest.mark.parametrize(
    "name,specials,add_prefix_space",
    [
        ("gpt2_style", ["<|endoftext|>"], False),
        ("prefix_space_template", ["<s>", "</s>", "<pad>", "<unk>"], True),
        ("chatml", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], False),
    ],
)
def test_trainer_reproduces_hf_merges(name, specials, add_prefix_space, tmp_path):
    with open(os.path.join(FIXTURES, f"{name}.json"), encoding="utf-8") as f:
        hf_model = json.load(f)["model"]
    texts, min_frequency = training_corpus()
    tok = Tokenizer.train(texts, vocab_size=len(hf_model["vocab"]), special_tokens=specials,
                          min_frequency=min_frequency, add_prefix_space=add_prefix_space)
    tok.save(tmp_path / "t.json")
    with open(tmp_path / "t.json", encoding="utf-8") as f:
        ours = json.load(f)["model"]
    hf_merges = [m.split(" ") if isinstance(m, str) else m for m in hf_model["merges"]]
    assert ours["merges"] == hf_merges
    assert ours["vocab"] == hf_model["vocab"]


def test_trained_tokenizer_properties():
    tok = Tokenizer.train(["hello world, hello there"] * 5, vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"])
    assert tok.special_tokens == {"<|endoftext|>": 0, "<pad>": 1}
    assert tok.eos_id == 0 and tok.pad_id == 1 and tok.bos_id is None
    ids = tok.encode("hello world<|endoftext|>")
    assert ids[-1] == 0
    assert tok.decode(ids) == "hello world"
    assert tok.decode(ids, skip_special_tokens=False) == "hello world<|endoftext|>"
    assert tok.id_to_token(tok.token_to_id("hello")) == "hello"
    assert tok.token_to_id("no-such-token") is None and tok.id_to_token(10**6) is None


def test_template_bos_eos():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "prefix_space_template.json"))
    assert (tok.bos_id, tok.eos_id) == (tok.token_to_id("<s>"), tok.token_to_id("</s>"))
    ids = tok.encode("Hi")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.encode("Hi", add_special_tokens=False) == ids[1:-1]


def test_train_from_files_txt_and_jsonl(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("one two three\nfour five\n", encoding="utf-8")
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"body": "six seven"}\n\n{"body": "eight"}\n', encoding="utf-8")
    tok = Tokenizer.train([str(txt), str(jsonl)], vocab_size=300, field="body", min_frequency=1)
    assert tok.decode(tok.encode("one two six seven")) == "one two six seven"
    with pytest.raises(MftError, match=r"b\.jsonl:1: no 'text' field"):
        Tokenizer.train([str(jsonl)], vocab_size=300)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(MftError, match=r"bad\.jsonl:2: invalid JSON"):
        Tokenizer.train(str(bad), vocab_size=300)
    with pytest.raises(MftError, match="no such training file"):
        Tokenizer.train([str(txt), str(tmp_path / "missing.txt")], vocab_size=300)


def write(tmp_path, doc, name="tokenizer.json"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return str(p)


def base_doc():
    with open(os.path.join(FIXTURES, "gpt2_style.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["model"].update(type="WordPieceX"), r'unsupported model type "WordPieceX"'),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespacey"}), r'unsupported pre_tokenizer type "Whitespacey"'),
        (lambda d: d["model"].update(type="Unigram"), r"model\.vocab: expected an array"),
        (lambda d: d.update(normalizer={"type": "Lowercasey"}), r'unsupported normalizer type "Lowercasey"'),
        (lambda d: d.update(decoder={"type": "WordPieceX"}), r'unsupported decoder type "WordPieceX"'),
        (lambda d: d.update(post_processor={"type": "Nope"}), r'unsupported post_processor type "Nope"'),
        (lambda d: d.update(truncation={"max_length": "five"}), r"truncation\.max_length: expected a non-negative integer"),
        (lambda d: d.update(padding={"strategy": "Sideways"}), r'padding\.strategy: expected "BatchLongest"'),
        (lambda d: d["model"].update(dropout=0.1), r"model\.dropout"),
        (lambda d: d["model"]["vocab"].update({"Ġthe": "x"}), r'model\.vocab\["Ġthe"\]: expected a token id'),
        (lambda d: d["model"]["merges"].insert(0, ["zz", "q"]), r'model\.merges\[0\]: token "zz" is not in model\.vocab'),
        (lambda d: d["model"]["merges"].insert(0, "a b c"), r"model\.merges\[0\]: expected"),
        (lambda d: d["model"].pop("vocab"), r'missing "model\.vocab"'),
        (lambda d: d["added_tokens"].append({"content": 3}), r"added_tokens\[1\]\.content: expected a string"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, mutate, message):
    doc = base_doc()
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(MftError, match=message) as err:
        Tokenizer.from_file(path)
    assert path in str(err.value)


def test_corrupt_and_missing_files(tmp_path):
    text = json.dumps(base_doc())
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(MftError, match="not valid JSON") as err:
        Tokenizer.from_file(path)
    assert path in str(err.value)
    with pytest.raises(MftError, match="no such tokenizer file"):
        Tokenizer.from_file(tmp_path / "nope.json")
    path = write(tmp_path, b"\xff\xfe".decode("latin-1"), "binary.json")
    with pytest.raises(MftError, match="binary.json"):
        Tokenizer.from_file(path)


def test_bad_arguments_raise_mft_error():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "gpt2_style.json"))
    with pytest.raises(MftError):
        tok.encode(b"bytes")
    with pytest.raises(MftError):
        tok.encode_batch("not a list")
    with pytest.raises(MftError):
        tok.decode([-1])
    with pytest.raises(MftError):
        Tokenizer.train(["x"], vocab_size=0)


def test_pre_tokenize_pieces():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "gpt2_style.json"))
    assert tok.pre_tokenize("Hello  world!! it's\n\n") == ["Hello", " ", " world", "!!", " it", "'s", "\n\n"]


def test_trainer_breaks_ties_like_hf():
    with open(os.path.join(FIXTURES, "tie_heavy.json"), encoding="utf-8") as f:
        hf_model = json.load(f)["model"]
    with open(os.path.join(FIXTURES, "tie_heavy.corpus.json"), encoding="utf-8") as f:
        texts = json.load(f)
    tok = Tokenizer.train(texts, vocab_size=1500, special_tokens=["<|endoftext|>", "<pad>"], min_frequency=1)
    ours = json.loads(tok.to_str())["model"]
    assert ours["merges"] == hf_model["merges"]
    assert ours["vocab"] == hf_model["vocab"]


def test_pickle_round_trip():
    import pickle

    tok = Tokenizer.from_file(os.path.join(FIXTURES, "llama3_style.json"))
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode("Hello <|end_of_text|> world") == tok.encode("Hello <|end_of_text|> world")
    assert (again.bos_id, again.eos_id, again.source) == (tok.bos_id, tok.eos_id, tok.source)
