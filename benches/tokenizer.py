"""Encode throughput of mft's BPE vs HF `tokenizers` on the bundled KJV corpus.

    python benches/bench_tokenizer.py            # mft only if HF is not installed
    PYTHONPATH=python /tmp/hfvenv/bin/python benches/bench_tokenizer.py   # with the peer

Both tokenizers load the same tokenizer.json (a 4096-vocab byte-level BPE
trained by mft on the corpus). Each thread count runs in its own process
(RAYON_NUM_THREADS is read once per process, by both libraries). Prints
MB/s per mode and the mft/HF ratio measured in the same run. Modes: batch_cold
(first encode_batch, empty word cache), batch_warm (best of 3 later ones),
batch_flat (mft's numpy-array batch output vs HF's list batch), loop_encode
(one `encode` call per text on the calling thread).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")


def texts() -> list[str]:
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def measure(lib: str, tok_path: str) -> dict:
    data = texts()
    mb = sum(len(t.encode()) for t in data) / 1e6
    if lib == "mft":
        from mft.tokenizer import Tokenizer

        tok = Tokenizer.from_file(tok_path)
        one = lambda t: tok.encode(t)
        batch = lambda ts: tok.encode_batch(ts)
        flat = lambda ts: tok.encode_batch_flat(ts)
    else:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tok_path)
        one = lambda t: tok.encode(t).ids
        batch = lambda ts: [e.ids for e in tok.encode_batch(ts)]
        flat = batch  # HF has no array output; its list batch is the peer
    out = {}
    start = time.perf_counter()
    batch(data)
    out["batch_cold"] = mb / (time.perf_counter() - start)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        batch(data)
        best = max(best, mb / (time.perf_counter() - start))
    out["batch_warm"] = best
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        flat(data)
        best = max(best, mb / (time.perf_counter() - start))
    out["batch_flat"] = best
    start = time.perf_counter()
    for t in data:
        one(t)
    out["loop_encode"] = mb / (time.perf_counter() - start)
    return out


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return 0
    sys.path.insert(0, os.path.join(REPO, "python"))
    from mft.tokenizer import Tokenizer

    try:
        import tokenizers  # noqa: F401

        libs = ["mft", "hf"]
    except ImportError:
        libs = ["mft"]
    with tempfile.TemporaryDirectory() as d:
        tok_path = os.path.join(d, "tokenizer.json")
        start = time.perf_counter()
        Tokenizer.train(CORPUS, vocab_size=4096).save(tok_path)
        print(f"mft train 4096 vocab on {CORPUS}: {time.perf_counter() - start:.2f} s")
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
        for threads in ("1", "2"):
            env["RAYON_NUM_THREADS"] = threads
            results = {}
            for lib in libs:
                run = subprocess.run([sys.executable, __file__, "--child", lib, tok_path], env=env,
                                     capture_output=True, text=True, check=True)
                results[lib] = json.loads(run.stdout)
            for mode in ("batch_cold", "batch_warm", "batch_flat", "loop_encode"):
                line = f"threads={threads} {mode:12s} mft {results['mft'][mode]:7.1f} MB/s"
                if "hf" in results:
                    line += f"  hf {results['hf'][mode]:7.1f} MB/s  ratio mft/hf {results['mft'][mode] / results['hf'][mode]:.2f}x"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
