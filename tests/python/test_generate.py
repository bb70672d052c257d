"""Sampling, eos handling, incremental text streaming and `mft generate`."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.inference.sampling import SamplingParams, sample, warp
from mft.inference.streamer import IncrementalDecoder
from mft.models import AutoModelForCausalLM

ms.set_device("CPU")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURE, "reference.npz"))


# ---- sampling on plain arrays ------------------------------------------------

def test_top_k_keeps_ties_and_masks_the_rest():
    logits = np.array([[1.0, 3.0, 2.0, 3.0, 0.0]], np.float32)
    out = warp(logits, SamplingParams(do_sample=True, top_k=2))
    assert np.isfinite(out).tolist() == [[False, True, False, True, False]]
    out = warp(logits, SamplingParams(do_sample=True, top_k=3))
    assert np.isfinite(out).sum() == 3


def test_top_p_keeps_smallest_set_reaching_p():
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = np.log(probs).astype(np.float32)
    assert np.isfinite(warp(logits, SamplingParams(do_sample=True, top_p=0.7))).tolist() == [[True, True, False, False]]
    assert np.isfinite(warp(logits, SamplingParams(do_sample=True, top_p=0.5))).tolist() == [[True, False, False, False]]
    assert np.isfinite(warp(logits, SamplingParams(do_sample=True, top_p=0.01))).sum() == 1


def test_sampling_follows_the_distribution_and_is_seeded():
    logits = np.array([[np.log(0.7), np.log(0.2), np.log(0.1), -np.inf]], np.float32)
    params = SamplingParams(do_sample=True)
    draws = np.array([sample(logits, params, np.random.default_rng(s))[0] for s in range(2000)])
    assert 3 not in draws  # zero probability never drawn
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert abs(freq[0] - 0.7) < 0.05 and abs(freq[1] - 0.2) < 0.05
    a = [sample(logits, params, np.random.default_rng(7))[0] for _ in range(3)]
    assert len(set(a)) == 1


def test_bad_sampling_parameters_are_errors():
    for kw in (dict(temperature=-1.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(MftError):
            SamplingParams(do_sample=True, **kw)


# ---- generate with the model -------------------------------------------------

def test_same_seed_same_sample_and_degenerate_samplers_equal_greedy(model, reference):
    prompt = reference["input_ids"]
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95)
    a = model.generate(prompt, seed=123, **kw)
    b = model.generate(prompt, seed=123, **kw)
    c = model.generate(prompt, seed=124, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy = reference["greedy"][:, :32]
    np.testing.assert_array_equal(model.generate(prompt, max_new_tokens=8, do_sample=True, top_k=1, seed=5), greedy)
    np.testing.assert_array_equal(model.generate(prompt, max_new_tokens=8, do_sample=True, temperature=0.0), greedy)


def test_eos_stops_each_sequence_and_pads(model, reference):
    prompt, greedy = reference["input_ids"], reference["greedy"]
    eos = int(greedy[0, 24 + 2])  # the third new token of sequence 0
    out = model.generate(prompt, max_new_tokens=16, eos_token_id=eos, pad_token_id=0)
    row0 = greedy[0, 24:]
    stop = int(np.argmax(row0 == eos))
    np.testing.assert_array_equal(out[0, 24 : 24 + stop + 1], row0[: stop + 1])
    assert (out[0, 24 + stop + 1 :] == 0).all()
    # sequence 1 keeps its greedy tokens until it also hits eos (or the end)
    row1 = greedy[1, 24:]
    hits = np.nonzero(row1 == eos)[0]
    end = hits[0] + 1 if len(hits) else 16
    np.testing.assert_array_equal(out[1, 24 : 24 + end], row1[:end])
    # when every sequence has finished, generation stops early
    single = model.generate(prompt[:1], max_new_tokens=16, eos_token_id=eos)
    assert single.shape == (1, 24 + stop + 1)


def test_streamer_receives_every_new_token(model, reference):
    class Collect:
        def __init__(self):
            self.steps, self.ended = [], False

        def put(self, ids):
            self.steps.append(np.array(ids))

        def end(self):
            self.ended = True

    s = Collect()
    out = model.generate(reference["input_ids"], max_new_tokens=5, streamer=s)
    assert s.ended and len(s.steps) == 5
    np.testing.assert_array_equal(np.stack(s.steps, axis=1), out[:, 24:])


def test_zero_new_tokens_returns_the_prompt(model, reference):
    np.testing.assert_array_equal(model.generate(reference["input_ids"], max_new_tokens=0), reference["input_ids"])


def test_generate_rejects_bad_input(model):
    with pytest.raises(MftError, match="at least one token"):
        model.generate([[1, 2], []], max_new_tokens=2)
    with pytest.raises(MftError, match="integer ids"):
        model.generate([[0.5, 1.5]], max_new_tokens=2)
    with pytest.raises(MftError):
        model.generate([[1, 2]], max_new_tokens=-1)


# ---- incremental decoding ------------------------------------------------------

def byte_tokens(text):
    """One token per UTF-8 byte: the hardest case for streaming multi-byte characters."""
    return list(text.encode("utf-8"))


def byte_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def test_incremental_decoder_never_emits_half_characters():
    text = "héllo 世界 🙂!"
    dec = IncrementalDecoder(byte_decode, byte_tokens("say: "))
    pieces = [dec.push([t]) for t in byte_tokens(text)] + [dec.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[byte_tokens(text).index(0xE4)] == ""  # first byte of 世 waits for the rest


def test_incremental_decoder_flushes_a_dangling_byte():
    dec = IncrementalDecoder(byte_decode)
    assert dec.push([0xE4]) == ""
    assert dec.flush() == "\ufffd"


# ---- the CLI -------------------------------------------------------------------

def run_cli(argv):
    """`mft generate ...` in its own process (the command sets process-wide MindSpore options)."""
    proc = subprocess.run([sys.executable, "-m", "mft", "generate"] + argv, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_without_tokenizer_is_a_clear_error():
    code, out, err = run_cli(["--model", FIXTURE, "--prompt", "hi"])
    assert code == 2 and out == ""
    assert "tokenizer.json" in err and FIXTURE in err and "Traceback" not in err


def test_cli_streams_the_greedy_continuation(tmp_path, model):
    from mft.tokenizer import Tokenizer

    folder = tmp_path / "m"
    shutil.copytree(FIXTURE, folder)
    corpus = ["In the beginning God created the heaven and the earth. 天地玄黄 宇宙洪荒"] * 20
    tok = Tokenizer.train(corpus, vocab_size=300, min_frequency=1)
    assert tok.vocab_size <= 512
    tok.save(str(folder / "tokenizer.json"))
    prompt = "In the beginning 天"
    code, text, err = run_cli(["--model", str(folder), "--prompt", prompt, "--max-new-tokens", "12"])
    assert code == 0, err
    ids = tok.encode(prompt)
    stops = [tok.eos_id, model.config.eos_token_id]
    out = model.generate([ids], max_new_tokens=12, eos_token_id=stops)[0, len(ids):].tolist()
    for i, t in enumerate(out):
        if t in stops:
            out = out[:i]
            break
    assert text == prompt + tok.decode(out) + "\n"
    code, text, err = run_cli(["--model", str(folder), "--prompt", prompt, "--max-new-tokens", "12", "--no-echo"])
    assert code == 0 and text == tok.decode(out) + "\n", err
    sampled = [run_cli(["--model", str(folder), "--prompt", prompt, "--max-new-tokens", "12",
                        "--temperature", "1.2", "--top-p", "0.9", "--top-k", "50", "--seed", "3"]) for _ in range(2)]
    assert sampled[0][0] == 0 and sampled[0][1] == sampled[1][1]


def test_unequal_prompts_generate_as_if_alone(model, reference):
    long, short = reference["input_ids"][0].tolist(), reference["input_ids"][1, :15].tolist()
    out = model.generate([long, short], max_new_tokens=6, pad_token_id=0)
    assert out.shape == (2, 30)
    assert (out[1, :9] == 0).all() and out[1, 9:24].tolist() == short
    np.testing.assert_array_equal(out[0], reference["greedy"][0, :30])
    alone = model.generate([short], max_new_tokens=6)
    np.testing.assert_array_equal(out[1, 9:], alone[0])
    no_cache = model.generate([long, short], max_new_tokens=6, use_cache=False)
    np.testing.assert_array_equal(no_cache, out)


def test_left_padded_logits_equal_unpadded(model, reference):
    ids = reference["input_ids"][1, :15]
    full = model(ms.Tensor(ids[None])).asnumpy()[0]
    padded = np.concatenate([np.zeros(9, np.int64), ids])[None]
    logits, _, _ = model.forward_step(ms.Tensor(padded, ms.int32), None, None, None, False, ms.Tensor([9], ms.int32))
    np.testing.assert_allclose(logits.asnumpy()[0, 9:], full, atol=1e-5)
