"""Expert parallelism in one process: the MoE layer's dispatch / combine arithmetic with ranks simulated.

Each simulated rank builds its MoE inside `expert_parallel(ep_group, token_group)`
(so it holds E/ep experts), and its collectives are replaced by `_SimCollective`
cells that exchange numpy arrays between the simulated ranks. One forward pass
per rank can only see the other ranks' inputs to an exchange from the previous
pass, so the ranks run in passes until every exchange sees the same inputs as in the pass
before (then every rank computed with its peers' true inputs). The result
must equal the single-rank layer (all experts) on each rank's tokens, and the
balance loss / load must be those of all ranks' tokens together.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.common.moe import MoE, TopKRouter
from mft.parallel import expert_parallel as epar
from mft.parallel.groups import Group

E, K, H, I = 4, 2, 8, 16
B, S = 2, 6


class _Store:
    def __init__(self):
        self.prev: dict = {}
        self.cur: dict = {}

    def next_pass(self) -> bool:
        """Starts a pass; True when every exchange saw the same inputs as in the pass before (then each
        rank's outputs used its peers' true inputs: the result is exact)."""
        settled = self.prev.keys() == self.cur.keys() and all(
            self.prev[k].keys() == self.cur[k].keys() and all(np.array_equal(self.prev[k][r], self.cur[k][r]) for r in self.cur[k])
            for k in self.cur)
        self.prev, self.cur = self.cur, {}
        return settled


class _SimCollective(nn.Cell):
    """all_to_all (split/concat dim 0) or all_reduce sum between simulated ranks, through a shared store."""

    def __init__(self, store: _Store, site: str, rank: int, size: int, kind: str):
        super().__init__()
        self.store, self.site, self.rank, self.size, self.kind = store, site, rank, size, kind
        self.calls = 0

    def construct(self, x):
        key = (self.site, self.calls)
        self.calls += 1
        arr = x.asnumpy()
        self.store.cur.setdefault(key, {})[self.rank] = arr
        seen = self.store.prev.get(key, {})
        if len(seen) < self.size or any(seen[r].shape != arr.shape for r in seen):
            return ms.Tensor(np.zeros_like(arr))
        if self.kind == "sum":
            return ms.Tensor(sum(seen[r] for r in range(self.size)))
        pieces = [np.split(seen[s], self.size, axis=0)[self.rank] for s in range(self.size)]
        return ms.Tensor(np.concatenate(pieces, axis=0))


def _router(seed):
    r = TopKRouter(H, E, K, norm_topk_prob=True)
    r.weight.set_data(ms.Tensor(np.random.default_rng(seed).normal(0, 0.5, (E, H)).astype(np.float32)))
    return r


def _weights(seed):
    rng = np.random.default_rng(seed)
    return {"gate": rng.normal(0, 0.2, (E, I, H)), "up": rng.normal(0, 0.2, (E, I, H)), "down": rng.normal(0, 0.2, (E, H, I))}


def _set_experts(moe, weights, first, count):
    for name in ("gate", "up", "down"):
        getattr(moe.experts, f"{name}_proj").weight.set_data(
            ms.Tensor(weights[name][first:first + count].astype(np.float32)))


def _build(fused, capacity_factor, rank=None, ep=1):
    """A MoE layer: the single-rank one (rank None) or simulated ep rank `rank` of `ep`."""
    if rank is None:
        return MoE(H, I, _router(0), capacity_factor=capacity_factor, fused=fused)
    ranks = tuple(range(ep))
    with epar.expert_parallel(Group("ep", ranks, rank, "mft_ep_sim"), Group("dp", ranks, rank, "mft_dp_sim")):
        return MoE(H, I, _router(0), capacity_factor=capacity_factor, fused=fused)


def _simulate(fused, capacity_factor, xs, weights, ep):
    store = _Store()
    layers = []
    for r in range(ep):
        moe = _build(fused, capacity_factor, r, ep)
        assert moe.experts.gate_proj.weight.shape[0] == E // ep
        assert moe.expert_offset == r * (E // ep)
        _set_experts(moe, weights, moe.expert_offset, E // ep)
        moe.ep_dispatch.exchange = _SimCollective(store, "rows", r, ep, "a2a")
        if fused:
            moe.ep_dispatch.count_exchange = _SimCollective(store, "counts", r, ep, "a2a")
        moe.count_sum = _SimCollective(store, "load", r, ep, "sum")
        layers.append(moe)
    for _ in range(8):
        outs = []
        for moe, x in zip(layers, xs):
            for cell in moe.cells():
                if isinstance(cell, _SimCollective):
                    cell.calls = 0
            for cell in moe.ep_dispatch.cells():
                if isinstance(cell, _SimCollective):
                    cell.calls = 0
            outs.append([t.asnumpy() for t in moe(ms.Tensor(x))])
        if store.next_pass():
            return outs
    raise AssertionError("simulated ranks did not settle")


@pytest.mark.parametrize("fused,capacity_factor", [(True, 0.0), (False, 0.0), (False, 1.0)],
                         ids=["sorted-dropless", "capacity-dropless", "capacity-1.0"])
def test_ep_moe_equals_single_rank(fused, capacity_factor):
    ep = 4 if fused else 2
    rng = np.random.default_rng(7)
    xs = [rng.normal(0, 1, (B, S, H)).astype(np.float32) for _ in range(ep)]
    xs[0][0, :3] += 2.0  # skew the routing a little: uneven counts per expert and rank
    weights = _weights(3)
    outs = _simulate(fused, capacity_factor, xs, weights, ep)

    single = _build(fused, capacity_factor)
    _set_experts(single, weights, 0, E)
    for r in range(ep):  # each rank's output = the single-rank layer on that rank's tokens
        ref = single(ms.Tensor(xs[r]))[0].asnumpy()
        np.testing.assert_allclose(outs[r][0], ref, rtol=1e-5, atol=1e-6)
    # balance loss and load over all ranks' tokens, as one batch
    whole = single(ms.Tensor(np.concatenate(xs, axis=0)))
    load = whole[3].asnumpy()
    assert load.sum() == ep * B * S * K
    for r in range(ep):
        np.testing.assert_array_equal(outs[r][3], load)
    balance = np.mean([outs[r][1] for r in range(ep)])  # the dp mean of the per-rank losses
    np.testing.assert_allclose(balance, whole[1].asnumpy(), rtol=1e-6)
    assert len({round(float(outs[r][1]), 7) for r in range(ep)}) > 1  # per-rank P_e differ: the test can see them


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")


def _wire(model, store, rank, ep):
    """Every MoE layer of `model` exchanges through the simulated collectives (sites named by layer)."""
    for name, cell in model.cells_and_names():
        if isinstance(cell, MoE):
            cell.ep_dispatch.exchange = _SimCollective(store, f"{name}.rows", rank, ep, "a2a")
            if cell.fused:
                cell.ep_dispatch.count_exchange = _SimCollective(store, f"{name}.counts", rank, ep, "a2a")
            cell.count_sum = _SimCollective(store, f"{name}.load", rank, ep, "sum")


def _run_passes(models, inputs, store):
    for _ in range(16):
        outs = []
        for model, x in zip(models, inputs):
            for _, cell in model.cells_and_names():
                if isinstance(cell, _SimCollective):
                    cell.calls = 0
            outs.append(model(ms.Tensor(x)).asnumpy())
        if store.next_pass():
            return outs
    raise AssertionError("simulated ranks did not settle")


@pytest.mark.parametrize("family", ["qwen3_moe", "deepseek_v3"])
def test_fixture_model_at_ep2_loads_owned_experts_and_matches_logits(family):
    """HF folder -> ep ranks keep only their experts; logits equal the one-rank model (DeepSeek: MLA, shared
    expert, grouped sigmoid routing); the gathered stacks give back the full HF state dict."""
    folder = os.path.join(FIXTURES, family)
    full = AutoModelForCausalLM.from_pretrained(folder)
    ids = np.load(os.path.join(folder, "reference.npz"))["input_ids"].astype(np.int32)
    ranks = []
    for r in range(2):
        with epar.expert_parallel(Group("ep", (0, 1), r, "mft_ep_sim"), Group("dp", (0, 1), r, "mft_dp_sim")):
            ranks.append(AutoModelForCausalLM.from_pretrained(folder))
    offset = 0
    for r, model in enumerate(ranks):
        stacks = epar.expert_param_names(model)
        assert stacks
        for name, cell in stacks.items():
            want = dict(full.parameters_and_names())[name].asnumpy()
            local = cell.weight.shape[0]
            assert local * 2 == want.shape[0]
            np.testing.assert_array_equal(cell.weight.asnumpy(), want[r * local:(r + 1) * local])
        assert "holds experts" in epar.describe(model)
    if family == "deepseek_v3":  # (qwen3_moe's forward under ep is the msrun test's)
        store = _Store()
        for r, model in enumerate(ranks):
            _wire(model, store, r, 2)
        batch = [ids[:1], ids[1:2] if len(ids) > 1 else ids[:1]]
        outs = _run_passes(ranks, batch, store)
        for r in range(2):
            np.testing.assert_allclose(outs[r], full(ms.Tensor(batch[r])).asnumpy(), rtol=1e-4, atol=1e-5)
    # save: the stacks of both ranks side by side are the full HF tensors
    gathered = {name: np.concatenate([dict(m.parameters_and_names())[name].asnumpy() for m in ranks])
                for name in epar.expert_param_names(ranks[0])}
    values = {p.name: p.asnumpy() for p in ranks[0].get_parameters()}
    values.update(gathered)
    saved = ranks[0].hf_state_dict(values)
    reference = full.hf_state_dict()
    assert set(saved) == set(reference)
    for name in reference:
        np.testing.assert_array_equal(saved[name], reference[name])
    with pytest.raises(MftError, match="share of the experts"):
        ranks[1].hf_state_dict()


def test_send_capacity_is_the_dropless_worst_case():
    # every token may send min(k, E/ep) rows to one rank, never more (its k experts are distinct)
    assert epar.send_capacity(10, 2, 4) == 20
    assert epar.send_capacity(10, 8, 4) == 40
    assert epar.send_capacity(10, 2, 1) == 10


def test_owned_experts_and_errors():
    g = Group("ep", (0, 1, 2, 3), 2, "x")
    assert epar.owned_experts(8, g) == (4, 2)
    with pytest.raises(MftError, match="parallel.ep=4 must divide"):
        epar.owned_experts(6, g)


def test_expert_stacks_gather_and_shard_values():
    ep = 2
    weights = _weights(5)
    layers = []
    for r in range(ep):
        moe = _build(False, 0.0, r, ep)
        _set_experts(moe, weights, moe.expert_offset, E // ep)
        layers.append(moe)
    full = {"experts.gate_proj.weight": weights["gate"].astype(np.float32), "gate.weight": np.ones((E, H), np.float32)}
    for r, moe in enumerate(layers):
        mine = epar.shard_values(moe, full)
        np.testing.assert_array_equal(mine["experts.gate_proj.weight"], weights["gate"][r * 2:r * 2 + 2].astype(np.float32))
        np.testing.assert_array_equal(mine["gate.weight"], full["gate.weight"])
        with pytest.raises(MftError, match="full stack of 4 experts"):
            epar.shard_values(moe, {"experts.gate_proj.weight": weights["gate"][:2]})
    assert epar.global_numel(layers[0], layers[0].trainable_params(),
                             sum(int(np.prod(p.shape)) for p in layers[0].trainable_params())) == (
        E * H + 3 * E * H * I)


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.mark.parametrize("overrides,match", [
    (["parallel.dp=2", "parallel.ep=2", "parallel.tp=2"], "parallel.ep=2 with parallel.tp=2"),
    (["parallel.dp=2", "parallel.ep=2", "parallel.cp=2"], "parallel.ep=2 with parallel.cp=2"),
    (["parallel.ep=2"], r"parallel.ep=2 must divide parallel.dp=1"),
    (["parallel.dp=3", "parallel.ep=3"], r"parallel.ep=3 must divide model.num_experts=8"),
    (["parallel.dp=2", "parallel.ep=2", "parallel.zero=1"], "parallel.zero=1"),
    (["parallel.dp=2", "parallel.ep=2", "train.optimizer.name=muon"], "train.optimizer.name=muon"),
    (["parallel.dp=2", "parallel.ep=2", "monitor.layer_norms=true"], "monitor.layer_norms"),
], ids=["tp", "cp", "dp", "experts", "zero", "muon", "layer_norms"])
def test_refusals_name_the_keys(overrides, match):
    from mft.config import load_config

    cfg = load_config(os.path.join(REPO, "configs", "qwen3_moe", "tiny_pretrain.yaml"), overrides)
    with pytest.raises(MftError, match=match):
        epar.check_config(cfg)


def test_dense_model_and_valid_layout():
    from mft.config import load_config

    dense = load_config(os.path.join(REPO, "configs", "llama", "tiny_pretrain.yaml"), ["parallel.dp=2", "parallel.ep=2"])
    with pytest.raises(MftError, match="mixture-of-experts model .* not model.arch=llama"):
        epar.check_config(dense)
    ok = load_config(os.path.join(REPO, "configs", "qwen3_moe", "tiny_pretrain.yaml"), ["parallel.dp=4", "parallel.ep=2"])
    epar.check_config(ok)  # no error
