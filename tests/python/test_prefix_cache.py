"""Prefix sharing in the paged KV cache: full blocks reused by hash, ref-counted; outputs unchanged."""

import os

import numpy as np
import pytest

from mft.serving.block_manager import BlockManager

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")


def test_blocks_registered_matched_ref_counted_and_evicted():
    bm = BlockManager(6, 4, prefix_caching=True)  # blocks 1..5
    prompt = list(range(10, 21))  # 11 tokens: 2 full blocks + 3
    assert bm.match_prefix(1, prompt) == 0
    bm.reserve(1, len(prompt))
    bm.register(1, prompt, len(prompt))
    a = bm.tables[1]
    assert bm.num_cached == 2  # only full blocks are registered
    # same first 8 tokens, then different: shares both full blocks; at most len - 1 tokens (one is left to compute)
    assert bm.match_prefix(2, prompt[:8] + [99, 98]) == 8 and bm.tables[2] == a[:2]
    assert bm.match_prefix(3, prompt[:8]) == 4 and bm.tables[3] == a[:1]
    assert bm.num_shared == 2 and bm.num_used == 3
    # another adapter's keys differ: no match
    assert bm.match_prefix(4, prompt, adapter=1) == 0
    # a different first block: the chain breaks at once, even where a later block's tokens agree
    assert bm.match_prefix(5, [0, 0, 0, 0] + prompt[4:]) == 0
    for seq in (1, 2, 3, 4, 5):
        bm.free(seq)
    assert bm.num_used == 0 and bm.num_cached == 2  # freed, still cached
    assert bm.match_prefix(6, prompt) == 8 and bm.tables[6] == a[:2] and bm.num_used == 2  # revived from the pool
    bm.free(6)
    bm.reserve(7, 5 * 4)  # the whole pool: cached blocks are reused for other tokens
    assert bm.num_cached == 0
    bm.free(7)
    assert bm.match_prefix(8, prompt) == 0
    bm.note_lookup(11, 0)
    bm.note_lookup(11, 8)
    assert bm.hit_rate() == pytest.approx(8 / 22)


@pytest.fixture(scope="module")
def model():
    import mindspore as ms

    ms.set_device("CPU")
    from mft.models import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "llama"))


def run(engine, prompts, options):
    reqs = [engine.add_request(p, options) for p in prompts]
    while engine.has_work():
        engine.step()
    return reqs


def test_shared_prefix_outputs_unchanged_and_blocks_shared(model):
    from mft.serving.engine import LLMEngine
    from mft.serving.sampling import SamplingOptions

    kw = dict(block_size=4, max_num_seqs=4, max_model_len=48, decode_mode="pynative")
    cached = LLMEngine(model, **kw)
    plain = LLMEngine(model, enable_prefix_caching=False, **kw)
    rng = np.random.default_rng(0)
    system = rng.integers(3, 500, 13).tolist()  # a common 13-token prefix: 3 full blocks
    prompts = [system + rng.integers(3, 500, n).tolist() for n in (2, 5, 1)]
    greedy = SamplingOptions(max_tokens=4, temperature=0, ignore_eos=True)
    first = run(cached, prompts[:1], greedy)[0]  # computes and registers the prefix blocks
    reqs = [cached.add_request(p, greedy) for p in prompts[1:]]
    cached.step()  # both admitted and prefilled from the cached prefix
    tables = [cached.blocks.tables[r.seqs[0].seq_id] for r in reqs]
    assert tables[0][:3] == tables[1][:3] and cached.blocks.num_shared >= 3
    while cached.has_work():
        cached.step()
    want = run(plain, prompts, greedy)
    assert [first.seqs[0].output] + [r.seqs[0].output for r in reqs] == [r.seqs[0].output for r in want]
    stats = cached.stats()
    assert stats["prefix_cache_hit_tokens"] == 2 * 12 and stats["prefix_cache_query_tokens"] == sum(map(len, prompts))
    assert stats["prefix_cache_hit_rate"] == pytest.approx(24 / sum(map(len, prompts)), abs=1e-4)
    assert stats["blocks_used"] == 0 and plain.stats()["prefix_cache_hit_tokens"] == 0
    # echo (prompt logprobs) needs every prompt position's logits: no sharing, same numbers
    echo = SamplingOptions(max_tokens=1, temperature=0, logprobs=1, prompt_logprobs=1)
    a = run(cached, prompts[1:2], echo)[0]
    b = run(plain, prompts[1:2], echo)[0]
    assert cached.stats()["prefix_cache_hit_tokens"] == 24
    assert [e.logprob for e in a.prompt_logprobs[1:]] == pytest.approx([e.logprob for e in b.prompt_logprobs[1:]], abs=1e-5)
