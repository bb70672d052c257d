"""Weight-only quantization on the demo model, one run: perplexity change vs
fp32 on held-out text per scheme/method, checkpoint size, decode tokens/s vs
fp32, and the int8/int4 kernels' GEMV time vs fp32 matmul at a real size.

    make demo   # or any model folder with tokenizer.json; see benches/README.md
    .venv/bin/python benches/quant.py --model runs/demo/train --held-out-docs 24

Held-out text: the last --held-out-docs documents of data/kjv/kjv.jsonl (the
demo trains with `data.split: 98,2,0`, whose last 2% of documents it never
sees); calibration text for GPTQ: the first documents (training text).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _docs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _ppl(model, tokenizer, docs, max_length, stride):
    from mft.eval.ppl import score_documents
    from mft.eval.scorer import TokenScorer

    scorer = TokenScorer(model, batch_size=8, max_length=max_length)
    return score_documents(scorer, [tokenizer.encode(d) for d in docs], max_length, stride)["ppl"]


def _decode_tps(model, prompt, new_tokens, runs):
    import mindspore as ms

    ids = ms.Tensor(np.asarray([prompt], np.int32))
    model.generate(ids, max_new_tokens=new_tokens)  # compile
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens)
        times.append(time.perf_counter() - t)
    return new_tokens / float(np.median(times))


def _best(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemv(n, k, reps):
    """Seconds per (1, k) x (n, k)^T product: numpy fp32, MindSpore fp32 MatMul, int8 and int4 kernels."""
    import mindspore as ms
    from mindspore import ops

    from mft import _kernels
    from mft.ops.quant_matmul import quant_matmul_int4, quant_matmul_int8
    from mft.quant import layout, rtn

    rng = np.random.default_rng(0)
    w = (0.02 * rng.standard_normal((n, k))).astype(np.float32)
    x = rng.standard_normal((1, k)).astype(np.float32)
    q8, s8 = rtn.quantize_int8(w)
    q4, s4, z4 = rtn.quantize_int4(w, 128)
    p4 = layout.kernel_int4(q4)
    xt, wt = ms.Tensor(x), ms.Tensor(w)
    mm = ops.MatMul(transpose_b=True)
    q8t, s8t = ms.Tensor(q8), ms.Tensor(s8)
    p4t, s4t, z4t = ms.Tensor(p4), ms.Tensor(s4), ms.Tensor(z4)
    return {
        "numpy_fp32": _best(lambda: x @ w.T, reps),
        "mindspore_fp32": _best(lambda: mm(xt, wt).asnumpy(), reps),
        "kernel_int8": _best(lambda: _kernels.quant_matmul_int8(x, q8, s8), reps),
        "kernel_int4": _best(lambda: _kernels.quant_matmul_int4(x, p4, s4, z4), reps),
        "aot_int8": _best(lambda: quant_matmul_int8(xt, q8t, s8t).asnumpy(), reps),
        "aot_int4": _best(lambda: quant_matmul_int4(xt, p4t, s4t, z4t).asnumpy(), reps),
        "isa": _kernels.quant_matmul_isa(),
    }


_KEEP = []


def big_decode(hidden, layers, work, new_tokens, runs, log):
    """Decode tok/s of a random-weight Llama big enough that a decode step is
    memory-bound (fp32 vs w8a16 vs w4a16 RTN); perplexity is meaningless here."""
    from mft.models import AutoModelForCausalLM
    from mft.quant.schemes import QuantOptions
    from mft.quant.writer import quantize_folder

    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": hidden * 11 // 4 // 16 * 16, "num_hidden_layers": layers,
           "num_attention_heads": hidden // 128, "num_key_value_heads": hidden // 128 // 4 or 1, "head_dim": 128,
           "vocab_size": 4096, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    src = os.path.join(work, f"big-{hidden}x{layers}")
    AutoModelForCausalLM.from_config(cfg).save_pretrained(src)
    out = {}
    prompt = list(range(3, 19))
    for scheme, group in (("fp32", None), ("w8a16", None), ("w4a16", 128)):
        path = src
        if scheme != "fp32":
            path = src + "-" + scheme
            quantize_folder(src, path, QuantOptions(scheme=scheme, group_size=group or 128), log=log)
        model = AutoModelForCausalLM.from_pretrained(path)
        model.set_train(False)
        out[scheme] = {"decode_tok_s": _decode_tps(model, prompt, new_tokens, runs),
                       "bytes": os.path.getsize(os.path.join(path, "model.safetensors"))}
        # Kept alive: a freed model's address reused by the next one made MindSpore's jit
        # reuse stale compile state (decode failed to compile for the third model in a process).
        _KEEP.append(model)
        log(json.dumps({scheme: out[scheme]}))
    return cfg, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="float model folder or training run (checkpoints/latest)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "data", "kjv", "kjv.jsonl"))
    ap.add_argument("--held-out-docs", type=int, default=24)
    ap.add_argument("--calib-docs", type=int, default=40)
    ap.add_argument("--calib-tokens", type=int, default=16384)
    ap.add_argument("--group-sizes", default="16,-1", help="w4a16 group sizes to run (comma-separated)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gemv", default="4096x4096", help="NxK of the kernel GEMV comparison ('' to skip)")
    ap.add_argument("--big", default="2048x2", help="HIDDENxLAYERS of a random Llama for memory-bound decode ('' to skip)")
    ap.add_argument("--skip-demo", action="store_true", help="only the kernel GEMV and the big-model decode")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one scheme:method:group:workdir:calib, prints a JSON row
    args = ap.parse_args(argv)

    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()
    from mft.models import AutoModelForCausalLM
    from mft.quant.schemes import QuantOptions
    from mft.quant.writer import quantize_folder
    from mft.tokenizer import Tokenizer
    from mft.training.checkpoint import resolve_model_folder

    folder = resolve_model_folder(args.model)
    tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    docs = _docs(args.corpus)
    held_out = docs[-args.held_out_docs:]
    prompt = tokenizer.encode("And the LORD said unto Moses, Speak unto the children of Israel")
    if args.variant:
        scheme, method, group, work, calib = args.variant.split(":", 4)
        group = None if group == "None" else int(group)
        path = folder
        if scheme != "fp32":
            path = os.path.join(work, f"{scheme}-{method}-g{group}")
            opts = QuantOptions(scheme=scheme, method=method, group_size=group or 128,
                                calib=calib if method == "gptq" else None, calib_tokens=args.calib_tokens)
            quantize_folder(folder, path, opts, log=lambda *a: print(*a, file=sys.stderr))
        model = AutoModelForCausalLM.from_pretrained(path)
        model.set_train(False)
        ppl = _ppl(model, tokenizer, held_out, args.max_length, args.stride)
        tps = _decode_tps(model, prompt, args.new_tokens, args.runs)
        size = os.path.getsize(os.path.join(path, "model.safetensors"))
        print(json.dumps({"scheme": scheme, "method": method if method != "None" else "-",
                          "group_size": group if scheme == "w4a16" else None, "ppl": ppl, "bytes": size, "decode_tok_s": tps}))
        return 0
    work = tempfile.mkdtemp(prefix="mft-quant-bench-")
    calib = os.path.join(work, "calib.jsonl")
    with open(calib, "w", encoding="utf-8") as f:
        for d in docs[: args.calib_docs]:
            f.write(json.dumps({"text": d}) + "\n")

    variants = [("fp32", None, None, None), ("w8a16", "rtn", None, None), ("w8a16", "gptq", None, None)]
    for g in (int(s) for s in args.group_sizes.split(",") if s):
        variants += [("w4a16", "rtn", g, None), ("w4a16", "gptq", g, None)]
    rows = []
    for scheme, method, group, _ in ([] if args.skip_demo else variants):
        # One process per variant: each compiles its own graphs from a clean MindSpore state.
        cmd = [sys.executable, os.path.abspath(__file__), "--model", folder, "--corpus", args.corpus,
               "--held-out-docs", str(args.held_out_docs), "--calib-tokens", str(args.calib_tokens),
               "--max-length", str(args.max_length), "--stride", str(args.stride), "--new-tokens", str(args.new_tokens),
               "--runs", str(args.runs), "--variant", f"{scheme}:{method}:{group}:{work}:{calib}"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            raise SystemExit(f"variant {scheme} {method} {group} failed")
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"rows": rows}
    if rows:
        _print_rows(args, folder, rows)
    if args.big:
        hidden, layers = (int(v) for v in args.big.lower().split("x"))
        cfg, big = big_decode(hidden, layers, work, args.new_tokens, args.runs, lambda *a: print(*a, file=sys.stderr))
        result["big"] = {"config": cfg, **big}
        print(f"\nDecode, random-weight Llama hidden {hidden}, {layers} layers, intermediate {cfg['intermediate_size']}, "
              f"{args.new_tokens} tokens, median of {args.runs}:")
        print("| weights | model.safetensors | decode tok/s | vs fp32 |")
        print("|---|---|---|---|")
        for name, r in big.items():
            print(f"| {name} | {r['bytes'] / 1e6:.1f} MB | {r['decode_tok_s']:.2f} | {r['decode_tok_s'] / big['fp32']['decode_tok_s']:.2f}x |")
    return _finish(args, result)


def _print_rows(args, folder, rows):
    base = rows[0]
    print(f"model {folder}; held-out: last {args.held_out_docs} documents of {os.path.basename(args.corpus)}; "
          f"window {args.max_length} stride {args.stride}; decode {args.new_tokens} tokens, median of {args.runs}")
    print("| scheme | method | group | ppl | vs fp32 | model.safetensors | decode tok/s | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scheme']} | {r['method']} | {r['group_size'] if r['group_size'] is not None else '-'} | "
              f"{r['ppl']:.3f} | {100 * (r['ppl'] / base['ppl'] - 1):+.2f}% | {r['bytes'] / 1e6:.2f} MB | "
              f"{r['decode_tok_s']:.1f} | {r['decode_tok_s'] / base['decode_tok_s']:.2f}x |")


def _finish(args, result):
    if args.gemv:
        n, k = (int(v) for v in args.gemv.lower().split("x"))
        g = gemv(n, k, reps=20)
        result["gemv"] = g
        print(f"\nGEMV (1, {k}) x ({n}, {k})^T, best of 20, kernel path {g['isa']}:")
        print("| implementation | ms | vs numpy fp32 | vs MindSpore fp32 |")
        print("|---|---|---|---|")
        for name in ("numpy_fp32", "mindspore_fp32", "kernel_int8", "kernel_int4", "aot_int8", "aot_int4"):
            print(f"| {name} | {1e3 * g[name]:.3f} | {g['numpy_fp32'] / g[name]:.2f}x | {g['mindspore_fp32'] / g[name]:.2f}x |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
