"""mft.serving engine: paged KV cache, continuous batching, preemption, sampling options."""

import os

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.serving.block_manager import BlockManager
from mft.serving.engine import LLMEngine
from mft.serving.sampling import ParamError, SamplingOptions

ms.set_device("CPU")
ms.runtime.launch_blocking()  # as `mft generate`/`mft serve` run: synchronous op launch is much faster on a busy CPU
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "llama"))


@pytest.fixture(scope="module")
def engine(model):
    """One compiled engine for the llama tests (its decode graphs compile once)."""
    return LLMEngine(model, block_size=8, max_num_seqs=8, max_model_len=64)


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURES, "llama", "reference.npz"))


def greedy(max_tokens, **kw):
    return SamplingOptions(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **kw)


def mixed_prompts(reference):
    ids = reference["input_ids"]
    return [ids[0].tolist(), ids[1, :15].tolist(), ids[1].tolist(), ids[0, 3:9].tolist(), ids[1, 5:6].tolist()]


def alone(model, prompt, n):
    return model.generate([prompt], max_new_tokens=n)[0, len(prompt):].tolist()


def test_block_manager_tables_and_pool():
    bm = BlockManager(5, 4)
    bm.reserve(1, 5)
    assert bm.tables[1] == [1, 2] and bm.num_free == 2
    assert bm.slots(1, 3, 6) == [7, 8, 9]
    assert not bm.can_hold(2, 9) and bm.can_hold(2, 8)
    bm.free(1)
    assert bm.num_free == 4 and 1 not in bm.tables
    with pytest.raises(MftError):
        BlockManager(5, 3)
    with pytest.raises(MftError):
        bm.reserve(3, 100)


def test_mixed_batch_greedy_equals_generate_and_hf(model, engine, reference):
    prompts = mixed_prompts(reference)
    requests = engine.generate(prompts, greedy(16))
    assert requests[0].seqs[0].output == reference["greedy"][0, 24:].tolist()
    assert requests[2].seqs[0].output == reference["greedy"][1, 24:].tolist()
    for prompt, request in zip(prompts, requests):
        assert request.seqs[0].output == alone(model, prompt, 16)
        assert request.seqs[0].finish_reason == "length"
    assert engine.blocks.num_used == 0  # every block back in the pool
    assert any(b > 1 for b, _ in engine.stats()["decode_shapes"])  # really batched
    assert engine.batched_prefills > 0  # new prompts prefilled together, left-padded


def test_jit_decode_mode_gives_the_same_greedy_ids(model, reference):
    engine = LLMEngine(model, block_size=8, max_num_seqs=4, max_model_len=64, decode_mode="jit")
    prompts = mixed_prompts(reference)[:3]
    for prompt, request in zip(prompts, engine.generate(prompts, greedy(6))):
        assert request.seqs[0].output == alone(model, prompt, 6)


def test_requests_join_running_batch_and_leave_at_once(model, engine, reference):
    prompts = mixed_prompts(reference)
    first = engine.add_request(prompts[0], greedy(12))
    short = engine.add_request(prompts[3], greedy(3))
    for _ in range(4):
        engine.step()
    assert short.finished and not first.finished
    assert len(engine.scheduler.running) == 1  # the short one left as soon as it was done
    late = engine.add_request(prompts[1], greedy(8))
    engine.step()
    assert {s.request for s in engine.scheduler.running} == {first, late}  # joined mid-run
    while engine.has_work():
        engine.step()
    assert first.seqs[0].output == alone(model, prompts[0], 12)
    assert late.seqs[0].output == alone(model, prompts[1], 8)
    assert short.seqs[0].output == alone(model, prompts[3], 3)


def test_preemption_and_chunked_prefill_keep_greedy_output(model, reference):
    # 9 usable blocks of 4 slots: five sequences of up to 40 tokens cannot all fit, so some are preempted and recomputed.
    engine = LLMEngine(model, block_size=4, num_blocks=11, max_num_seqs=5, max_model_len=40,
                       max_num_batched_tokens=10, decode_mode="pynative")
    prompts = mixed_prompts(reference)
    requests = engine.generate(prompts, greedy(14))
    assert engine.scheduler.num_preemptions > 0
    for prompt, request in zip(prompts, requests):
        assert request.seqs[0].output == alone(model, prompt, 14)
    assert engine.blocks.num_used == 0


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"])
def test_other_families_match_hf_greedy(family):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, family))
    ref = np.load(os.path.join(FIXTURES, family, "reference.npz"))
    engine = LLMEngine(m, block_size=8, max_num_seqs=4, max_model_len=64, decode_mode="pynative")
    requests = engine.generate([r.tolist() for r in ref["input_ids"]], greedy(16))
    for row, request in enumerate(requests):
        assert request.seqs[0].output == ref["greedy"][row, 24:].tolist()


# ---- sampling options ---------------------------------------------------------

def test_seeded_sampling_repeats_and_n_sequences_differ(model, engine, reference):
    prompt = reference["input_ids"][0, :10].tolist()
    opts = dict(max_tokens=10, temperature=1.3, top_p=0.95, top_k=50, min_p=0.01, seed=7, n=3, ignore_eos=True)
    a = engine.generate([prompt], SamplingOptions(**opts))[0]
    b = engine.generate([prompt], SamplingOptions(**opts))[0]
    assert [s.output for s in a.seqs] == [s.output for s in b.seqs]
    assert len({tuple(s.output) for s in a.seqs}) > 1
    c = engine.generate([prompt], SamplingOptions(**{**opts, "seed": 8}))[0]
    assert [s.output for s in c.seqs] != [s.output for s in a.seqs]
    # top_k=1 and a near-zero min_p-free temperature reduce to greedy
    d = engine.generate([prompt], SamplingOptions(max_tokens=10, temperature=0.8, top_k=1, seed=1, ignore_eos=True))[0]
    assert d.seqs[0].output == alone(model, prompt, 10)


def test_penalties_change_greedy_choice(model, engine, reference):
    prompt = reference["input_ids"][0].tolist()
    plain = engine.generate([prompt], greedy(16))[0].seqs[0].output
    assert len(set(plain)) < len(plain)  # the reference continuation repeats tokens
    for kw in (dict(frequency_penalty=2.0), dict(presence_penalty=2.0), dict(repetition_penalty=5.0)):
        out = engine.generate([prompt], greedy(16, **kw))[0].seqs[0].output
        assert out != plain, kw
    strong = engine.generate([prompt], greedy(16, presence_penalty=2.0))[0].seqs[0].output
    assert len(set(strong)) > len(set(plain))


def test_stop_token_ids_logprobs_and_prompt_logprobs(model, engine, reference):
    prompt = reference["input_ids"][0].tolist()
    expected = reference["greedy"][0, 24:].tolist()
    stop_at = expected[5]
    r = engine.generate([prompt], greedy(16, stop_token_ids=[stop_at]))[0]
    assert r.seqs[0].output == expected[:expected.index(stop_at)] and r.seqs[0].finish_reason == "stop"
    r = engine.generate([prompt], greedy(4, logprobs=3, prompt_logprobs=2))[0]
    full = model(ms.Tensor(np.asarray([prompt + r.seqs[0].output[:3]]))).asnumpy()[0].astype(np.float64)
    lp = full - np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1, keepdims=True)) - full.max(-1, keepdims=True)
    assert r.prompt_logprobs[0] is None and len(r.prompt_logprobs) == len(prompt)
    for i in range(1, len(prompt)):
        entry = r.prompt_logprobs[i]
        assert entry.token == prompt[i] and abs(entry.logprob - lp[i - 1, prompt[i]]) < 1e-4
        assert len(entry.top) == 2 and entry.top[0][0] == int(np.argmax(lp[i - 1]))


def test_prompt_logprobs_survive_chunked_prefill(model, engine, reference):
    prompt = reference["input_ids"][1].tolist()
    whole = engine.generate([prompt], greedy(2, prompt_logprobs=1))[0]
    chunked = LLMEngine(model, block_size=4, max_num_seqs=2, max_model_len=40, max_num_batched_tokens=7, decode_mode="pynative")
    parts = chunked.generate([prompt], greedy(2, prompt_logprobs=1))[0]
    assert chunked.steps >= 4  # 24 prompt tokens in chunks of at most 7
    assert parts.seqs[0].output == whole.seqs[0].output
    for a, b in zip(whole.prompt_logprobs[1:], parts.prompt_logprobs[1:]):
        assert a.token == b.token and abs(a.logprob - b.logprob) < 1e-4 and a.top[0][0] == b.top[0][0]
    # fused backend: echo chunks ran as rows of compiled steps (every row's logits out), none in PyNative
    assert engine.runner.rows_prefill and chunked.runner.rows_prefill
    assert not engine.runner.prefill_seen and not chunked.runner.prefill_seen
    assert (7, 7) in chunked.runner.compiled_shapes  # a 7-token echo chunk: all 7 rows out (others: 4 at most)
    # 24 tokens in a chunk of 23: the last prompt token is scheduled like a decode step and still ends the prompt
    odd = LLMEngine(model, block_size=4, max_num_seqs=2, max_model_len=40, max_num_batched_tokens=23, decode_mode="pynative")
    last = odd.generate([prompt], greedy(2, prompt_logprobs=1))[0]
    assert last.seqs[0].output == whole.seqs[0].output and len(last.prompt_logprobs) == len(prompt)
    for a, b in zip(whole.prompt_logprobs[1:], last.prompt_logprobs[1:]):
        assert a.token == b.token and abs(a.logprob - b.logprob) < 1e-4


def test_logprobs_of_generated_tokens_match_full_forward(model, engine, reference):
    prompt = reference["input_ids"][1, :12].tolist()
    got = []
    request = engine.add_request(prompt, greedy(5, logprobs=2), on_update=lambda req, u: got.extend(u.logprobs))
    while engine.has_work():
        engine.step()
    out = request.seqs[0].output
    full = model(ms.Tensor(np.asarray([prompt + out]))).asnumpy()[0].astype(np.float64)
    for j, entry in enumerate(got):
        row = full[len(prompt) - 1 + j]
        lp = row - row.max() - np.log(np.exp(row - row.max()).sum())
        assert entry.token == out[j] and abs(entry.logprob - lp[out[j]]) < 1e-4
        assert entry.top[0] == (out[j], pytest.approx(entry.logprob))


def test_bad_options_and_requests_name_the_field(model):
    for kw, field in ((dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"), (dict(n=0), "n"),
                      (dict(max_tokens=-2), "max_tokens"), (dict(min_p=2), "min_p"), (dict(logprobs=99), "logprobs"),
                      (dict(stop=[""]), "stop"), (dict(presence_penalty=3), "presence_penalty"), (dict(seed="x"), "seed")):
        with pytest.raises(ParamError) as e:
            SamplingOptions(**kw)
        assert e.value.param == field and field in str(e.value)
    engine = LLMEngine(model, block_size=8, max_num_seqs=2, max_model_len=32)
    with pytest.raises(ParamError) as e:
        engine.add_request([1] * 30, SamplingOptions(max_tokens=8))
    assert e.value.param == "max_tokens" and "32" in str(e.value)
    with pytest.raises(ParamError) as e:
        engine.add_request([1, 99999], SamplingOptions())
    assert e.value.param == "prompt"
    with pytest.raises(MftError):
        LLMEngine(model, block_size=8, num_blocks=3, max_model_len=64)
