"""Train-step throughput and model-FLOPs utilisation (MFU) on CPU.

Measured in one run, on the same model and batches:
  - numpy sgemm (2048^3, fp32): the machine's compute ceiling for MFU;
  - mft's TrainStep (ms.jit: forward, backward, clip, AdamW);
  - the stock MindSpore recipe: nn.TrainOneStepCell(WithLossCell, nn.AdamWeightDecay)
    in graph mode, which does not clip gradients ("stock"), and the same cell
    with ops.clip_by_global_norm(grads, 1.0) as MindFormers clips ("stock+clip",
    the same work as mft's step). Ratios printed are mft / each.
MindFormers' legacy Llama was measured on this kind of machine at ~5,200
tokens/s (batch 1) and ~5,700 (batch 8) on shape (a); printed for reference.

    python benches/train_step.py [--steps 20] [--only a|demo]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

MINDFORMERS_REFERENCE = {1: 5200.0, 8: 5700.0}  # tokens/s, shape (a), measured elsewhere on this machine kind

SHAPES = {
    "a": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=1000, seq=128, batches=(1, 8)),
    "demo": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, seq=128, batches=(16,)),
}


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token(shape: dict, seq: int, tied: bool) -> float:
    """6 x matmul parameters (fwd+bwd) + causal attention scores/values."""
    h, i, layers, v = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"], shape["vocab_size"]
    hd = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i  # q, o, k, v, gate/up/down
    matmul_params = layers * per_layer + v * h  # + lm_head
    attention = layers * 2 * 2 * seq * h / 2  # QK^T and AV, causal half
    return 6 * matmul_params + 3 * attention


def build(shape: dict, seed: int = 0):
    import mindspore as ms

    from mft.models import AutoModelForCausalLM

    ms.set_seed(seed)
    cfg = {k: v for k, v in shape.items() if k not in ("seq", "batches")}
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"], max_position_embeddings=512, tie_word_embeddings=True, hidden_act="silu")
    return AutoModelForCausalLM.from_config(cfg)


def time_interleaved(runners: dict, steps: int, rounds: int = 3) -> dict:
    """Best per-step time of each runner over `rounds`, alternating runners so a
    noisy neighbour on this shared machine hurts both sides alike."""
    for run in runners.values():  # compile + warm up
        run()
        run()
    best = {name: float("inf") for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            t = time.perf_counter()
            for _ in range(steps):
                run()
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
    return best


def mft_runner(shape, data):
    from mft.training.optimizer import AdamW
    from mft.training.train_step import TrainStep

    model = build(shape)
    opt = AdamW(model.trainable_params(), weight_decay=0.1)
    step = TrainStep(model, opt, clip_grad_norm=1.0, accum_steps=1)
    x, y = data[None, :, :-1], data[None, :, 1:]
    return lambda: step.step(x, y, 1e-3)


def stock_runner(shape, data, clip: bool = False):
    import mindspore as ms
    from mindspore import nn, ops

    from mft.training.loss import causal_lm_loss

    model = build(shape)

    class ClippedStep(nn.TrainOneStepCell):
        """TrainOneStepCell plus global-norm clipping before the update."""

        def construct(self, x, y):
            loss = self.network(x, y)
            grads = self.grad(self.network, self.weights)(x, y, ops.ones_like(loss))
            grads = ops.clip_by_global_norm(grads, 1.0)
            return ops.depend(loss, self.optimizer(grads))

    class WithLoss(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def construct(self, x, y):
            return causal_lm_loss(self.net(x), y)

    opt = nn.AdamWeightDecay(model.trainable_params(), learning_rate=1e-3, weight_decay=0.1)
    cell = (ClippedStep if clip else nn.TrainOneStepCell)(WithLoss(model), opt)
    cell.set_train()
    step = ms.jit(cell.construct) if hasattr(ms, "jit") else cell
    x, y = ms.Tensor(data[:, :-1]), ms.Tensor(data[:, 1:])

    def run():
        step(x, y).asnumpy()

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", choices=sorted(SHAPES))
    args = ap.parse_args()
    import mindspore as ms

    ms.set_device("CPU")
    peak = sgemm_gflops()
    print(f"numpy sgemm ceiling: {peak:.1f} GFLOP/s")
    print(f"{'shape':<6} {'batch':>5} {'mft tok/s':>10} {'stock tok/s':>11} {'mft/stock':>9} {'+clip tok/s':>11} "
          f"{'mft/+clip':>9} {'MFU':>6} {'vs MindFormers':>15}")
    for name, shape in SHAPES.items():
        if args.only and name != args.only:
            continue
        seq = shape["seq"]
        for batch in shape["batches"]:
            data = np.random.default_rng(batch).integers(0, shape["vocab_size"], (batch, seq + 1)).astype(np.int32)
            runners = {"mft": mft_runner(shape, data), "stock": stock_runner(shape, data),
                       "stock+clip": stock_runner(shape, data, clip=True)}
            times = time_interleaved(runners, args.steps)
            tokens = batch * seq
            mft_tps, stock_tps, clip_tps = (tokens / times[k] for k in ("mft", "stock", "stock+clip"))
            mfu = mft_tps * flops_per_token(shape, seq, True) / (peak * 1e9)
            ref = MINDFORMERS_REFERENCE.get(batch) if name == "a" else None
            ref_s = f"{mft_tps / ref:.2f}x of {ref:.0f}" if ref else "-"
            print(f"{name:<6} {batch:>5} {mft_tps:>10.0f} {stock_tps:>11.0f} {mft_tps / stock_tps:>8.2f}x {clip_tps:>11.0f} "
                  f"{mft_tps / clip_tps:>8.2f}x {mfu:>6.1%} {ref_s:>15}")


if __name__ == "__main__":
    main()
