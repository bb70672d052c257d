"""`mft data preprocess --format sft`: formats, loss masks, bad records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mft.data.indexed import IndexedDataset
from mft.data.sft import encode_conversation, has_loss_mask, open_loss_mask, preprocess_sft, to_messages, BadRecord
from mft.errors import MftError
from mft.tokenizer import Tokenizer
from mft.tokenizer.chat_template import BUILTIN_TEMPLATES

TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizers", "chatml.json")

ALPACA = {"instruction": "Quote Genesis 1:3.", "input": "", "output": "And God said, Let there be light."}
SHAREGPT = {"conversations": [{"from": "human", "value": "Who said it?"}, {"from": "gpt", "value": "God."},
                              {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "Genesis 1."}]}
OPENAI = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Verse?"},
                       {"role": "assistant", "content": "Genesis 1:1."}]}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    shutil.copy(TOKENIZER, d / "tokenizer.json")
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": BUILTIN_TEMPLATES["chatml"], "eos_token": "<|im_end|>"}))
    return str(d)


def _decode_masked(tok, ids, mask):
    return tok.decode(ids[mask.astype(bool)].tolist(), skip_special_tokens=False)


def test_formats_to_messages():
    assert to_messages(ALPACA)[0] == [{"role": "user", "content": "Quote Genesis 1:3."}, {"role": "assistant", "content": ALPACA["output"]}]
    m = to_messages({**ALPACA, "input": "KJV", "system": "S"})[0]
    assert m[0] == {"role": "system", "content": "S"} and m[1]["content"] == "Quote Genesis 1:3.\n\nKJV"
    assert [x["role"] for x in to_messages(SHAREGPT)[0]] == ["user", "assistant", "user", "assistant"]
    assert to_messages(OPENAI)[0] == OPENAI["messages"]


@pytest.mark.parametrize("record,reason", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"messages": [{"content": "hi"}]}, "has no 'role'"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "role 'wizard'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "is empty"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}, "int, not a string"),
    ({"conversations": [{"from": "human"}]}, "needs 'from' and 'value'"),
    ({"instruction": "x"}, "no 'output'"),
    ({"text": "x"}, "not an SFT record"),
    ([1], "expected a JSON object"),
])
def test_bad_records(record, reason):
    with pytest.raises(BadRecord, match=reason):
        to_messages(record)


def test_mask_assistant_last_all(tok_dir):
    tok = Tokenizer.from_file(tok_dir)
    msgs = to_messages(SHAREGPT)[0]
    tpl = BUILTIN_TEMPLATES["chatml"]
    ids, mask = encode_conversation(tok, tpl, msgs, loss_on="assistant")
    # the rendered text, tokenized whole
    full = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
    assert ids.tolist() == tok.encode(full, add_special_tokens=False)
    assert _decode_masked(tok, ids, mask) == "God.<|im_end|>\nGenesis 1.<|im_end|>\n"
    ids2, last = encode_conversation(tok, tpl, msgs, loss_on="last")
    assert np.array_equal(ids, ids2) and _decode_masked(tok, ids, last) == "Genesis 1.<|im_end|>\n"
    _, everything = encode_conversation(tok, tpl, msgs, loss_on="all")
    assert everything.all() and 0 < mask.sum() < len(mask)


def test_preprocess_files_and_cli(tok_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    lines = [json.dumps(ALPACA), json.dumps(SHAREGPT), "", json.dumps(OPENAI), "{broken", json.dumps({"messages": [{"role": "user", "content": "q"}]})]
    data.write_text("\n".join(lines) + "\n")
    prefix = str(tmp_path / "out" / "sft")
    with pytest.raises(MftError, match=r"chat\.jsonl:5: malformed JSON"):
        preprocess_sft([str(data)], Tokenizer.from_file(tok_dir), prefix)
    assert not os.path.exists(prefix + ".bin") and not has_loss_mask(prefix)
    stats = preprocess_sft([str(data)], Tokenizer.from_file(tok_dir), prefix, skip_bad=True)
    assert stats.conversations == 3 and stats.skipped_bad == 2
    assert "chat.jsonl:6: no assistant turn" in stats.bad_examples[1]
    toks = IndexedDataset(prefix)
    mask = open_loss_mask(prefix)
    assert has_loss_mask(prefix) and len(toks) == 3
    tok = Tokenizer.from_file(tok_dir)
    assert _decode_masked(tok, np.asarray(toks[2]), np.asarray(mask[2])) == "Genesis 1:1.<|im_end|>\n"
    assert stats.trained_tokens == int(sum(np.asarray(mask[i]).sum() for i in range(3)))

    # the CLI: a tokenizer folder, the built-in llama3 template, last-turn loss
    out = str(tmp_path / "cli")
    r = subprocess.run([sys.executable, "-m", "mft", "data", "preprocess", "--format", "sft", "--input", str(data),
                        "--tokenizer", tok_dir, "--output-prefix", out, "--chat-template", "llama3", "--loss-on", "last", "--skip-bad"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 documents" in r.stdout and "skipped 2 bad records" in r.stdout and "chat.jsonl:5" in r.stdout
    t2, m2 = IndexedDataset(out), open_loss_mask(out)
    assert tok.decode(np.asarray(t2[1])[np.asarray(m2[1]).astype(bool)].tolist(), skip_special_tokens=False) == "Genesis 1.<|eot_id|>"
    r = subprocess.run([sys.executable, "-m", "mft", "data", "preprocess", "--format", "sft", "--input", str(data),
                        "--tokenizer", tok_dir, "--output-prefix", out + "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "chat.jsonl:5: malformed JSON" in r.stderr and "--skip-bad" in r.stderr


def test_template_raising_is_a_bad_record(tok_dir, tmp_path):
    tpl = tmp_path / "strict.jinja"
    tpl.write_text("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
                   "{{ m.role }}: {{ m.content }}\n{% endfor %}")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(OPENAI) + "\n" + json.dumps(ALPACA) + "\n")
    with pytest.raises(MftError, match=r"d\.jsonl:1: chat template raised: no system role"):
        preprocess_sft([str(data)], Tokenizer.from_file(tok_dir), str(tmp_path / "o"), chat_template=str(tpl))
    stats = preprocess_sft([str(data)], Tokenizer.from_file(tok_dir), str(tmp_path / "o"), chat_template=str(tpl), skip_bad=True)
    assert stats.conversations == 1 and stats.skipped_bad == 1


def test_mask_lengths_checked(tok_dir, tmp_path):
    from mft.data.indexed import write_indexed_dataset

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(ALPACA) + "\n")
    prefix = str(tmp_path / "o")
    preprocess_sft([str(data)], Tokenizer.from_file(tok_dir), prefix)
    write_indexed_dataset(prefix + "_mask", [[1, 1]], 2)
    with pytest.raises(MftError, match="document lengths differ"):
        open_loss_mask(prefix)


def test_truncation_policies():
    from mft.data.sft import truncate

    ids = np.arange(10)
    mask = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1], np.uint8)
    assert truncate(ids, mask, 10, "drop")[0][0] is ids
    with pytest.raises(BadRecord, match="exceed --max-length 8"):
        truncate(ids, mask, 8, "drop")
    (t, m), = truncate(ids, mask, 6, "left")
    assert t.tolist() == [4, 5, 6, 7, 8, 9] and m.tolist() == [1, 1, 0, 0, 1, 1]
    with pytest.raises(BadRecord, match="would cut a reply"):
        truncate(ids, mask, 5, "left")
    pieces = truncate(ids, mask, 4, "split")  # [0..3] has no target: left out
    assert [p[0].tolist() for p in pieces] == [[4, 5, 6, 7], [8, 9]]


def test_max_length_split_in_preprocess(tok_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(SHAREGPT) + "\n")
    tok = Tokenizer.from_file(tok_dir)
    whole = preprocess_sft([str(data)], tok, str(tmp_path / "whole"))
    n = whole.tokens
    split = preprocess_sft([str(data)], tok, str(tmp_path / "split"), max_length=n // 2 + 1, truncation="split")
    assert split.conversations == 2 and split.tokens == n and split.trained_tokens == whole.trained_tokens
    assert max(IndexedDataset(str(tmp_path / "split")).sequence_lengths) <= n // 2 + 1
    with pytest.raises(MftError, match=r"d\.jsonl:1: \d+ tokens exceed --max-length"):
        preprocess_sft([str(data)], tok, str(tmp_path / "drop"), max_length=n - 1)
