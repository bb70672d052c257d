"""Sequence-level distillation data (mft.finetune.seq_distill, `mft distill`).

The teacher is a random tiny Llama with a ChatML tokenizer (as test_chat_cli's): its batched,
left-padded answers must equal what `mft chat`'s ChatSession answers for each prompt alone;
the filters are checked on responses made by hand.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mindspore as ms

ms.set_device("CPU")

from mft.errors import MftError
from mft.finetune.seq_distill import (DistillStats, Prompt, Response, filter_responses, generate_responses, read_prompts,
                                      summary)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QUESTIONS = ["Quote Ge 1:1.", "Which verse says: \"And God saw the light\"?", "Quote Ge 1:3.", "Who made the heaven?",
             "Quote Ge 2:7."]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from mft.models import AutoModelForCausalLM
    from mft.models.llama import LlamaConfig
    from mft.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("teacher")
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(3), f)]
    tok = Tokenizer.train(texts, vocab_size=400, special_tokens=SPECIALS)
    tok.save(str(root / "tokenizer.json"))
    ms.set_seed(11)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, eos_token_id=[tok.token_to_id("<|im_end|>")]))
    model.save_pretrained(str(root))
    prompts = root / "prompts.jsonl"
    with open(prompts, "w", encoding="utf-8") as f:
        for i, q in enumerate(QUESTIONS):
            # prompts stay under 58 tokens, so every decode fits one cache bucket (one compile per batch size)
            rec = {"instruction": q, "output": f"answer {i}"} if i % 2 else {"messages": [
                {"role": "user", "content": q}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"},
                {"role": "assistant", "content": f"answer {i}"}]}
            f.write(json.dumps(rec) + "\n")
        f.write(json.dumps({"prompt": "In the beginning", "reference": "God"}) + "\n")
    return str(root), AutoModelForCausalLM.from_pretrained(str(root)), tok, str(prompts)


def test_read_prompts_takes_the_conversation_before_the_last_reply(teacher, tmp_path):
    _, _, _, path = teacher
    prompts, bad = read_prompts(path)
    assert len(prompts) == 6 and bad == 0
    assert [m["role"] for m in prompts[0].messages] == ["user", "assistant", "user"]
    assert prompts[0].reference == "answer 0" and prompts[1].reference == "answer 1"
    assert prompts[5].messages == [{"role": "user", "content": "In the beginning"}] and prompts[5].reference == "God"
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"instruction": "q", "output": "a"}\n{"messages": [{"role": "user"}]}\n')
    with pytest.raises(MftError, match=r"bad.jsonl:2: messages\[0\] has no 'content'"):
        read_prompts(str(bad_file))
    prompts, bad = read_prompts(str(bad_file), skip_bad=True)
    assert len(prompts) == 1 and bad == 1


def test_batched_responses_equal_chat_replies(teacher):
    from mft.inference.chat import ChatSession

    _, model, tok, path = teacher
    prompts, _ = read_prompts(path)
    # batch 4 over 6 prompts: two batches, the second filled up with copies; left padding in both
    responses, dropped = generate_responses(model, tok, "chatml", prompts, max_new_tokens=6, batch_size=4)
    assert not dropped and [r.prompt for r in responses] == list(range(6))
    for p, r in zip(prompts, responses):
        session = ChatSession(model, tok, "chatml", max_new_tokens=6)
        session.turns = p.messages[:-1]
        assert r.text == session.reply(p.messages[-1]["content"])
        assert r.complete == (r.tokens < 6)
    # too long for max_position_embeddings (128): dropped before generation, counted per sample
    _, dropped = generate_responses(model, tok, "chatml", prompts[:1], max_new_tokens=120, num_samples=2)
    assert dropped == {"prompt too long": 2}


def test_sampling_is_seeded(teacher):
    _, model, tok, path = teacher
    prompts, _ = read_prompts(path)
    run = lambda seed: [r.text for r in generate_responses(model, tok, "chatml", prompts[:2], num_samples=2, max_new_tokens=6,
                                                          temperature=1.0, batch_size=4, seed=seed)[0]]
    first = run(3)
    assert len(first) == 4 and first == run(3) and first != run(4)


def test_filters_and_exact_match():
    prompts = [Prompt(1, [{"role": "user", "content": "a"}], reference="yes"), Prompt(2, [{"role": "user", "content": "b"}])]
    responses = [Response(0, "yes", 1, True), Response(0, " yes ", 1, True), Response(0, "no  way", 2, True),
                 Response(0, "yes and more", 9, False), Response(1, "", 0, True), Response(1, "short", 1, True),
                 Response(1, "a long answer here", 4, True), Response(1, "just right", 2, True)]
    stats = DistillStats(prompts=2)
    kept = filter_responses(prompts, responses, stats, min_tokens=2, max_tokens=3)
    assert [r["messages"][-1]["content"] for r in kept] == ["no  way", "just right"]
    assert kept[0]["messages"][:-1] == prompts[0].messages and kept[0]["messages"][-1]["role"] == "assistant"
    assert dict(stats.dropped) == {"too short": 3, "incomplete": 1, "empty": 1, "too long": 1}
    assert (stats.responses, stats.kept, stats.with_reference, stats.reference_matches) == (8, 2, 4, 2)
    assert stats.exact_match == 0.5
    stats = DistillStats(prompts=2)
    kept = filter_responses(prompts, responses, stats, match_reference=True)
    assert [r["messages"][-1]["content"] for r in kept] == ["yes"]
    assert dict(stats.dropped) == {"duplicate": 1, "reference mismatch": 1, "no reference": 3, "incomplete": 1, "empty": 1}
    assert "exact match with the reference: 2 of 4 responses (50.0%)" in summary(stats, 1)
    stats = DistillStats(prompts=2)
    kept = filter_responses(prompts, responses, stats, accept_regex=r"[a-z]+ [a-z]+")
    assert [r["messages"][-1]["content"] for r in kept] == ["just right"]
    assert dict(stats.dropped) == {"rejected by checker": 5, "incomplete": 1, "empty": 1}
    with pytest.raises(MftError, match=r"--accept-regex '\(' does not compile"):
        filter_responses(prompts, responses, DistillStats(), accept_regex="(")


def test_cli_refuses_bad_options_before_loading(teacher, tmp_path, capsys):
    """The CLI end to end (kept file, report) runs in docs/examples/distillation.md's runnable blocks."""
    from mft.cli.main import main

    folder, _, _, path = teacher
    args = ["distill", "--teacher", folder, "--input", path, "--output", str(tmp_path / "kept.jsonl")]
    assert main(args + ["--num-samples", "2"]) == 2  # greedy twice: the same answer twice
    assert "set --temperature > 0" in capsys.readouterr().err
    assert main(args + ["--accept-regex", "("]) == 2
    assert "--accept-regex '(' does not compile" in capsys.readouterr().err
    assert main(args + ["--min-tokens", "5", "--max-tokens", "2"]) == 2
    assert main(["distill", "--teacher", str(tmp_path), "--input", path, "--output", "x.jsonl"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
    assert not (tmp_path / "kept.jsonl").exists()
