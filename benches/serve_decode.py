"""Single-stream greedy decode: mft's serving engine against MindFormers on the same Llama shape, one run.

mft: `LLMEngine` in process (what `mft serve` runs), one request, greedy,
ignore_eos; its decode steps (paged KV cache, compiled per bucket) are timed
one by one after the prefill step. MindFormers: benches/serve_decode_peer.py
in the peer's venv (its legacy LlamaForCausalLM in graph mode recomputes the
whole sequence per token: its KV cache does not run on CPU). Both get random
weights of the same shape; output lengths are fixed, so trained weights
would time the same. The two alternate for `--rounds` rounds so they share
the machine's load; tok/s = 1 / median per-token time over all rounds.

    python benches/serve_decode.py [--shape tiny|demo] [--tokens 64] [--rounds 2]
        [--attention-backend auto|fused|composed] [--peer PYTHON]

tiny: hidden 128, 2 layers, 4 heads (MHA), intermediate 512, vocabulary 1000,
sequence 128 (the peer's train_legacy_llama.py shape); demo:
configs/tiny/demo.yaml's shape (hidden 256, 4 layers, 4 heads over 2 kv heads,
intermediate 688, vocabulary 4096), sequence 256.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.expanduser("~/.cache/mindformers-peer/bin/python")
SHAPES = {
    "tiny": dict(hidden=128, layers=2, heads=4, kv_heads=4, intermediate=512, vocab=1000, seq=128),
    "demo": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=688, vocab=4096, seq=256),
}


def peer_round(python: str, shape: dict, prompt: int, tokens: int) -> list:
    argv = [python, os.path.join(ROOT, "benches", "serve_decode_peer.py"), "--prompt", str(prompt), "--tokens", str(tokens)]
    for key, value in shape.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"peer failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])["token_s"]


class MftSide:
    def __init__(self, shape: dict, backend: str):
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import mindspore as ms

        import mft.models.llama as llama
        from mft.serving.engine import LLMEngine

        ms.set_device("CPU")
        ms.runtime.launch_blocking()  # as `mft serve` runs
        cfg = llama.CONFIG_CLASS(vocab_size=shape["vocab"], hidden_size=shape["hidden"],
                                 intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                                 num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                                 max_position_embeddings=shape["seq"])
        ms.set_seed(0)
        self.model = llama.MODEL_CLASS(cfg)
        self.model.set_train(False)
        t = time.perf_counter()
        self.engine = LLMEngine(self.model, max_num_seqs=16, max_model_len=shape["seq"], attention_backend=backend)
        self.engine.runner.warmup()  # as `mft serve` does at start-up
        self.startup_s = time.perf_counter() - t
        self.vocab = shape["vocab"]

    def round(self, prompt: int, tokens: int) -> dict:
        import numpy as np

        from mft.serving.sampling import SamplingOptions

        ids = np.random.default_rng(0).integers(3, self.vocab, prompt).tolist()
        request = self.engine.add_request(ids, SamplingOptions(max_tokens=tokens + 1, temperature=0.0, ignore_eos=True))
        steps = []
        t0 = time.perf_counter()
        while self.engine.has_work():
            t = time.perf_counter()
            self.engine.step()
            steps.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        assert len(request.seqs[0].output) == tokens + 1
        return {"token_s": steps[1:], "prefill_s": steps[0], "total_s": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--attention-backend", choices=["auto", "fused", "composed"], default="auto")
    ap.add_argument("--peer", default=PEER, help="the MindFormers venv's python (../shared/peers/mindformers/install.sh)")
    args = ap.parse_args()
    shape = SHAPES[args.shape]
    if args.prompt + args.tokens + 1 > shape["seq"]:
        raise SystemExit(f"--prompt + --tokens must stay below the sequence length {shape['seq']}")
    mft = MftSide(shape, args.attention_backend)
    peer_times, mft_times, mft_prefill = [], [], []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        p = peer_round(args.peer, shape, args.prompt, args.tokens)
        m = mft.round(args.prompt, args.tokens)
        peer_times += p
        mft_times += m["token_s"]
        mft_prefill.append(m["prefill_s"])
        print(json.dumps({"round": r, "load_1min": round(load, 1),
                          "peer_tok_s": round(1 / statistics.median(p), 1),
                          "mft_tok_s": round(1 / statistics.median(m["token_s"]), 1),
                          "mft_prefill_ms": round(m["prefill_s"] * 1e3, 1)}), flush=True)
    peer_tps = 1 / statistics.median(peer_times)
    mft_tps = 1 / statistics.median(mft_times)
    runner = mft.engine.runner
    print(f"\nshape {args.shape} {shape}, prompt {args.prompt}, {args.tokens} new tokens, {args.rounds} rounds, "
          f"load average now {os.getloadavg()[0]:.1f}")
    print(f"mft engine: attention backend {runner.attention_backend}, C++ kernels switched in {runner.fused_kernels}, "
          f"start-up with warm-up {mft.startup_s:.1f} s")
    print(f"{'':<34} {'tok/s':>8} {'ms/token p50':>13} {'p90':>8}")
    for name, times, tps in (("MindFormers (recompute, graph)", peer_times, peer_tps),
                             ("mft serving engine (paged, graph)", mft_times, mft_tps)):
        q = statistics.quantiles(times, n=10)
        print(f"{name:<34} {tps:>8.1f} {statistics.median(times) * 1e3:>13.2f} {q[8] * 1e3:>8.2f}")
    print(f"ratio mft / MindFormers: {mft_tps / peer_tps:.2f}x   (the issue's goal: >= 10x its 39 tok/s = 390 tok/s; "
          f"mft here {mft_tps / 39:.1f}x 39)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
