"""mft.serving prefill: bounded call shapes and several sequences' chunks in one call.

PyNative keeps compiled code per input shape, so the engine only ever prefills in the runner's
fixed (rows, width) set (PrefillShapes), which warm-up runs once; a step's text chunks - new prompts,
continued chunks of long prompts, prompts starting after a prefix-cache hit - go in as few calls as
that set allows, right-padded. Greedy output stays equal to model.generate on both attention backends.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.ops import paged_attention
from mft.serving.engine import LLMEngine
from mft.serving.paged_runner import PrefillShapes
from mft.serving.sampling import SamplingOptions
from mft.graph_call import GraphCaller

ms.set_device("CPU")
ms.runtime.launch_blocking()
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


def test_prefill_shape_set_is_small_and_bounded():
    shapes = PrefillShapes(max_rows=64, max_len=256, max_batched_tokens=512)
    assert shapes.widths == [16, 32, 64, 128, 256]
    assert shapes.rows == [1, 2, 4, 8, 16, 32, 64]
    assert all(b * w <= 1024 for b, w in shapes.all()) and len(shapes.all()) == 25
    assert shapes.width(1) == 16 and shapes.width(17) == 32 and shapes.batch(5) == 8
    assert not shapes.fits(33, 32) and shapes.fits(32, 32)
    odd = PrefillShapes(max_rows=6, max_len=100, max_batched_tokens=40)  # rows capped at max_num_seqs
    assert odd.rows == [1, 2, 4, 6] and odd.widths == [16, 32, 64]


@pytest.mark.parametrize("backend,prefill_mode", [("composed", "pynative"), ("fused", "pynative"), ("fused", "rows")])
def test_mixed_chunks_prefilled_together_in_known_shapes_equal_generate(model, backend, prefill_mode):
    assert backend == "composed" or paged_attention.kernel_available()  # the kernels ship in the wheel
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, model.config.vocab_size, n).tolist() for n in (5, 30, 12, 3, 41, 9)]
    prompts.append(prompts[1][:24] + [7, 8, 9])  # shares three full blocks with prompt 1: a prefix-cache hit
    # 40 tokens per step: long prompts prefill in chunks, the continued chunks joining other prompts' calls.
    engine = LLMEngine(model, block_size=8, max_num_seqs=4, max_model_len=64, max_num_batched_tokens=40,
                       decode_mode="graph" if prefill_mode == "rows" else "pynative", attention_backend=backend,
                       prefill_mode=prefill_mode)
    runner = engine.runner
    assert runner.attention_backend == backend
    assert runner.rows_prefill == (prefill_mode == "rows")
    greedy = SamplingOptions(max_tokens=6, temperature=0.0, ignore_eos=True)
    first = engine.generate(prompts[:6], greedy)
    last = engine.generate(prompts[6:], greedy)
    assert engine.blocks.prefix_hits >= 24
    for prompt, request in zip(prompts, first + last):
        assert request.seqs[0].output == model.generate([prompt], max_new_tokens=6)[0, len(prompt):].tolist()
    assert runner.prefill_seen <= set(runner.prefill_shapes.all())
    assert engine.batched_prefills > 0
    if prefill_mode == "rows":  # every prefill token ran as a row of a compiled step, one graph per row bucket
        assert not runner.prefill_seen
        assert {rows for rows, _ in runner.compiled_shapes} <= set(runner.row_sizes) == {1, 4, 16, 40}
        assert len(GraphCaller.of(runner.forward).phases) == len(runner.compiled_shapes)


def test_serve_limits_malloc_arenas_unless_the_environment_does():
    import subprocess
    import sys

    code = ("import ctypes, os; from mft.serving.malloc_arenas import limit_arenas; print(limit_arenas())")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    glibc = subprocess.run([sys.executable, "-c", "import platform; print(platform.libc_ver()[0])"], capture_output=True,
                           text=True, env=env).stdout.strip() == "glibc"
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert ours == ("True" if glibc else "False")
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "MALLOC_ARENA_MAX": "4"},
                            check=True).stdout.strip()
    assert theirs == "False"  # the operator's MALLOC_ARENA_MAX is left alone
