"""mft.serving decode path: compiled graphs called directly (graph_call.py) and the C++ RMSNorm/RoPE
kernels switched in for the fused backend (decode_kernels.py) give the composed path's logits."""

import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.ops import paged_attention
from mft.graph_call import GraphCaller
from mft.serving.paged_runner import PagedRunner

ms.set_device("CPU")
ms.runtime.launch_blocking()
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


def test_graph_caller_runs_compiled_graph_directly_with_same_results():
    model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    runner = PagedRunner(model, 17 * 8, 8, 4, 64, attention_backend="composed")
    caller = runner._graph
    assert isinstance(caller, GraphCaller) and caller.direct
    ctx = list(range(8, 8 + 21))
    first = runner.decode([5, 9], [ctx, ctx[:7]], [40, 41])
    assert len(caller.phases) == 1  # the bucket's phase recorded after its compile
    # Same graph, now called directly: identical logits; a fresh token writes the pools in place too.
    again = runner.decode([5, 9], [ctx, ctx[:7]], [40, 41])
    np.testing.assert_array_equal(first, again)
    ordinary = GraphCaller(runner.forward, direct=False)
    runner._graph = ordinary
    np.testing.assert_array_equal(first, runner.decode([5, 9], [ctx, ctx[:7]], [40, 41]))
    assert not ordinary.phases
    # The new keys/values really landed in the pools (scatter in the directly-called graph).
    runner._graph = caller
    logits_ctx = runner.decode([3], [ctx + [40]], [42])
    runner._graph = ordinary
    np.testing.assert_array_equal(logits_ctx, runner.decode([3], [ctx + [40]], [42]))


@pytest.mark.skipif(not paged_attention.kernel_available(), reason="mft's C++ kernels do not load here")
def test_fused_backend_switches_rmsnorm_and_rope_and_matches_composed():
    composed = PagedRunner(AutoModelForCausalLM.from_pretrained(FIXTURE), 17 * 8, 8, 4, 64, attention_backend="composed")
    fused_model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    fused = PagedRunner(fused_model, 17 * 8, 8, 4, 64, attention_backend="fused")
    layers = fused_model.config.num_hidden_layers
    assert composed.fused_kernels == {"rms_norm": 0, "rope": 0}
    assert fused.fused_kernels == {"rms_norm": 2 * layers + 1, "rope": layers}
    rng = np.random.default_rng(0)
    prompt = rng.integers(3, fused_model.config.vocab_size, 13).tolist()
    slots = list(range(8, 8 + 13))
    for runner in (composed, fused):  # same prompt prefilled into both pools
        runner.prefill(prompt, [], slots, all_logits=False)
    a = composed.decode([7], [slots], [21])
    b = fused.decode([7], [slots], [21])
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    assert int(np.argmax(a)) == int(np.argmax(b))


@pytest.mark.skipif(not paged_attention.kernel_available(), reason="mft's C++ kernels do not load here")
def test_prefill_chunks_through_the_paged_kernel_match_composed():
    """A prompt prefilled in two chunks (the second reads the first from the pools through the kernel)
    gives the composed path's logits for every position, and the same next-token decode."""
    model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    composed = PagedRunner(model, 17 * 8, 8, 4, 64, attention_backend="composed")
    fused = PagedRunner(AutoModelForCausalLM.from_pretrained(FIXTURE), 17 * 8, 8, 4, 64, attention_backend="fused")
    prompt = np.random.default_rng(1).integers(3, model.config.vocab_size, 19).tolist()
    slots = list(range(16, 16 + 24))  # blocks 2, 3, 4 (block size 8)
    out = {}
    for name, runner in (("composed", composed), ("fused", fused)):
        first = runner.prefill(prompt[:11], [], slots[:11], all_logits=True)
        second = runner.prefill(prompt[11:], slots[:11], slots[11:19], all_logits=True)
        out[name] = (np.concatenate([first, second]), runner.decode([5], [slots[:19]], [slots[19]]))
    assert out["fused"][0].shape == (19, model.config.vocab_size)
    np.testing.assert_allclose(out["fused"][0], out["composed"][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["fused"][1], out["composed"][1], rtol=1e-4, atol=1e-4)
