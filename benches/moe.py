"""MoE layer (router + SwiGLU experts), fused-permute path vs composed dispatch, CPU, one run.

composed = mft.models.common.moe.MoE as the models run it: softmax router,
one-hot (T, k, E) dispatch, dropless capacity (every expert gets a T-row
slot block), (E, T, H) batched matmuls, segment-sum combine.
fused    = mft.ops.moe_routing: C++ gating, C++ permute into expert-sorted rows
(T*k, H), each expert's SwiGLU on its own block of rows, C++ weighted unpermute.
Same weights, same input; both forward+backward (value_and_grad w.r.t. x and
the expert/router weights) in PyNative (the fused path reads tokens_per_expert
on the host to slice blocks). Outputs are checked equal before timing.
Rounds alternate the two paths; medians are printed. Note what the ratio
measures: dropless composed dispatch runs every expert on all T token slots
(E*T rows), the permuted path only on the T*k routed rows, so most of the gap
is expert FLOPs saved by routing to exact-size blocks, not kernel speed alone.
The second line times the routing alone against the composed references in
mft.ops.moe_routing (sort/gather/segment-sum).

    .venv/bin/python benches/moe.py [--tokens 1024] [--hidden 256] [--inter 512] [--experts 8] [--topk 2] [--rounds 5]
"""

import argparse
import statistics
import time

import numpy as np

import mindspore as ms
from mindspore import Tensor, mint, ops

from mft.models.common.moe import MoE, TopKRouter
from mft.ops.moe_routing import moe_gating, moe_permute, moe_unpermute


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--inter", type=int, default=512)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    ms.set_device("CPU")
    ms.runtime.launch_blocking()
    t, h, e, k = a.tokens, a.hidden, a.experts, a.topk
    router = TopKRouter(h, e, k, scoring="softmax", norm_topk_prob=True)
    moe = MoE(h, a.inter, router, capacity_factor=0.0)
    ex = moe.experts
    params = [router.weight, ex.gate_proj.weight, ex.up_proj.weight, ex.down_proj.weight]
    x = Tensor(np.random.default_rng(0).standard_normal((1, t, h)).astype(np.float32))

    def composed(x, *ws):
        return (moe(x)[0] ** 2).sum()

    def fused(x, rw, gw, uw, dw):
        flat = x.reshape(t, h)
        w, ids = moe_gating(mint.nn.functional.linear(flat, rw), k, norm_topk_prob=True)
        xs, row_map, counts = moe_permute(flat, ids, e)
        blocks, start = [], 0
        for i, n in enumerate(counts.asnumpy().tolist()):
            rows = xs[start:start + n]
            act = mint.nn.functional.silu(mint.matmul(rows, gw[i].swapaxes(0, 1))) * mint.matmul(rows, uw[i].swapaxes(0, 1))
            blocks.append(mint.matmul(act, dw[i].swapaxes(0, 1)))
            start += n
        return (moe_unpermute(mint.cat(blocks, 0), row_map, w) ** 2).sum()

    steps = {
        "composed": ms.value_and_grad(composed, grad_position=0, weights=params),
        "fused": ms.value_and_grad(fused, grad_position=(0, 1, 2, 3, 4)),
    }
    vc, (gxc, gwc) = steps["composed"](x, *params)
    vf, gf = steps["fused"](x, *params)
    np.testing.assert_allclose(vf.asnumpy(), vc.asnumpy(), rtol=1e-4)
    np.testing.assert_allclose(gf[0].asnumpy(), gxc.asnumpy(), rtol=1e-3, atol=1e-5)
    for g, r in zip(gf[1:], gwc):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-3, atol=1e-5)

    times = {name: [] for name in steps}
    for _ in range(a.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            value, grads = step(x, *params)
            ops.stop_gradient(value).asnumpy()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    print(f"MoE fwd+bwd, T={t} H={h} I={a.inter} E={e} k={k}, PyNative CPU, median of {a.rounds}")
    for name in steps:
        print(f"  {name:9s} {med[name]:9.1f} ms")
    print(f"  composed / fused = {med['composed'] / med['fused']:.2f}x  (expert rows: composed {e * t}, fused {t * k})")

    # Routing alone (no experts): gating + permute + unpermute vs the composed router + dispatch/combine.
    logits = mint.nn.functional.linear(x.reshape(t, h), router.weight)
    rt = {"fused": [], "composed": []}
    for _ in range(a.rounds):
        for name in rt:
            fz = name == "fused"
            t0 = time.perf_counter()
            w, ids = moe_gating(logits, k, norm_topk_prob=True, fused=fz)
            xs, row_map, _ = moe_permute(x.reshape(t, h), ids, e, fused=fz)
            moe_unpermute(xs, row_map, w, fused=fz).asnumpy()
            rt[name].append(time.perf_counter() - t0)
    rmed = {n: statistics.median(v) * 1e3 for n, v in rt.items()}
    print(f"routing forward only (gating+permute+unpermute): fused {rmed['fused']:.2f} ms, "
          f"composed reference {rmed['composed']:.2f} ms, ratio {rmed['composed'] / rmed['fused']:.2f}x")


if __name__ == "__main__":
    main()
