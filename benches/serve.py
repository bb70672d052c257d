"""`mft serve` under load: continuous batching against the same server forced to one sequence at a time.

One run. The server is a real `mft serve` process on 127.0.0.1 driven by
mft's load generator (`mft.eval.loadgen`, what `mft eval --serving` runs:
asyncio clients over the official `openai` client), streaming so time to
first token (TTFT) and time per output token (TPOT) are seen by the client. Requests draw prompt and output lengths from a
seeded spread (prompts 4-64 tokens, outputs 8-96 tokens, ignore_eos so the
lengths hold). For each client count it prints output tokens/s, TTFT and
TPOT p50/p99, errors, and the server's resident memory (VmRSS): sampled
every second over each run by a thread (min / max / at the end), against its
value after warm-up; then the throughput ratio of each batched run to the
one-at-a-time server (`--max-num-seqs 1`) at 1 client.

    python benches/serve.py [--model DIR | --demo-shape] [--requests 1000] [--clients 1,16,32,64]

Without --model it serves the llama test fixture (h64, 2 layers) with a
tokenizer trained on the spot; --demo-shape serves a randomly initialised
model of configs/tiny/demo.yaml's shape (hidden 256, 4 layers, 4 heads over
2 kv heads, vocabulary 4096) with a 4096-token BPE trained on data/kjv
(output lengths are forced by ignore_eos, so trained weights would time the
same).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "hf", "llama")
WORDS = "in the beginning god created the heaven and the earth and the earth was without form and void".split()


def tiny_model(folder: str) -> str:
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from mft.tokenizer import Tokenizer

    shutil.copytree(FIXTURE, folder)
    Tokenizer.train([" ".join(WORDS)] * 20, vocab_size=300, min_frequency=1).save(os.path.join(folder, "tokenizer.json"))
    return folder


def demo_shape_model(folder: str) -> str:
    """configs/tiny/demo.yaml's Llama shape, random weights, and a KJV tokenizer of its vocabulary size."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import mindspore as ms

    import mft.models.llama as llama
    from mft.tokenizer import Tokenizer

    cfg = llama.CONFIG_CLASS(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             tie_word_embeddings=True)
    ms.set_seed(0)
    llama.MODEL_CLASS(cfg).save_pretrained(folder)
    Tokenizer.train(os.path.join(ROOT, "data", "kjv", "kjv.jsonl"), vocab_size=4096).save(os.path.join(folder, "tokenizer.json"))
    return folder


class RssSampler:
    """VmRSS of `pid` every `period` seconds on a thread, between start() and stop()."""

    def __init__(self, pid: int, period: float = 1.0):
        self.pid, self.period, self.samples = pid, period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append(rss_mb(self.pid))
            self._stop.wait(self.period)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> list:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb(self.pid))
        return self.samples


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(model: str, max_num_seqs: int, attention_backend: str = "auto", prefill_mode: str = "rows"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mft", "serve", "--model", model, "--port", str(port),
                             "--max-num-seqs", str(max_num_seqs), "--max-model-len", "256",
                             "--attention-backend", attention_backend, "--prefill-mode", prefill_mode],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mft serve exited {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if json.loads(r.read())["status"] == "ok":
                    return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mft serve did not start in 600 s")


def workload(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 64))), rng.randint(8, 96)) for _ in range(n)]


def run(base: str, model_name: str, requests, clients: int) -> dict:
    """One closed-loop run of `clients` streaming clients through mft's own load generator (`mft eval --serving`)."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from mft.eval.load_requests import LoadRequest
    from mft.eval.loadgen import LoadRunner

    runner = LoadRunner(base, model_name)
    _, results, summary = runner.run([LoadRequest(prompt=p, max_tokens=n) for p, n in requests], clients)
    errors = [r.error for r in results if not r.ok]
    return {"clients": clients, "tokens_per_s": summary["output_throughput"], "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "ttft_p50_ms": summary["ttft_ms"]["p50"], "ttft_p99_ms": summary["ttft_ms"]["p99"],
            "tpot_p50_ms": summary["tpot_ms"]["p50"], "tpot_p99_ms": summary["tpot_ms"]["p99"],
            "itl_p50_ms": summary["itl_ms"]["p50"], "e2e_p50_ms": summary["e2e_ms"]["p50"], "wall_s": summary["duration_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder with tokenizer.json (default: the llama fixture + a fresh tokenizer)")
    ap.add_argument("--demo-shape", action="store_true", help="serve a random-weight model of the demo's shape (see above)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", default="1,16,32,64")
    ap.add_argument("--baseline-requests", type=int, default=0,
                    help="run the one-client rows (both servers) on only the first N requests (0: all); "
                         "the workload is one seeded spread, so a prefix has the same distribution")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--attention-backend", choices=["auto", "fused", "composed"], default="auto",
                    help="mft serve --attention-backend of both servers (decode attention: C++ paged kernel or composed ops)")
    ap.add_argument("--prefill-mode", choices=["rows", "pynative"], default="rows",
                    help="mft serve --prefill-mode of both servers (rows: prefill tokens as rows of the compiled step)")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = args.model
        elif args.demo_shape:
            model = demo_shape_model(os.path.join(tmp, "demo-shape"))
        else:
            model = tiny_model(os.path.join(tmp, "tiny-llama"))
        name = os.path.basename(os.path.normpath(model))
        requests = workload(args.requests)
        rows = []
        for label, max_seqs, client_counts in (("one at a time", 1, [1]), ("continuous batching", args.max_num_seqs, clients)):
            proc, base = start(model, max_seqs, args.attention_backend, args.prefill_mode)
            try:
                run(base, name, requests[:4], 1)  # first requests: prefill paths
                rss_start = rss_mb(proc.pid)
                for c in client_counts:
                    sampler = RssSampler(proc.pid).start()
                    subset = requests[:args.baseline_requests] if c == 1 and args.baseline_requests else requests
                    row = run(base, name, subset, c)
                    row["requests"] = len(subset)
                    samples = sampler.stop()
                    row.update(server=label, rss_start_mb=rss_start, rss_end_mb=samples[-1], rss_min_mb=min(samples),
                               rss_max_mb=max(samples), rss_samples=len(samples))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        base_tps = rows[0]["tokens_per_s"]
        print(f"\n{'server':<20} {'clients':>7} {'requests':>8} {'tok/s':>8} {'x 1-at-a-time':>13} {'TTFT p50/p99 ms':>17} {'TPOT p50/p99 ms':>17} {'errors':>6} {'RSS MB warm/min/max/end':>24}")
        for r in rows:
            print(f"{r['server']:<20} {r['clients']:>7} {r['requests']:>8} {r['tokens_per_s']:>8.1f} {r['tokens_per_s'] / base_tps:>13.2f} "
                  f"{r['ttft_p50_ms']:>8.0f}/{r['ttft_p99_ms']:<8.0f} {r['tpot_p50_ms']:>8.1f}/{r['tpot_p99_ms']:<8.1f} "
                  f"{r['errors']:>6} {r['rss_start_mb']:>6.0f}/{r['rss_min_mb']:.0f}/{r['rss_max_mb']:.0f}/{r['rss_end_mb']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
