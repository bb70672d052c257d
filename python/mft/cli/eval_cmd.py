"""`mft eval`: perplexity (`--task ppl`), multiple-choice log-likelihood (`--task mc`), and a load run
against an OpenAI-compatible endpoint (`--serving URL`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEFAULT_MAX_LENGTH = 2048


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model (perplexity, multiple choice) or load-test an OpenAI-compatible endpoint",
        description="Score a model folder on local data. --task ppl: perplexity with HF's sliding window "
                    "(each document on its own, its first token not scored). --task mc: multiple-choice "
                    "items scored by log-likelihood (acc, acc_norm) as lm-evaluation-harness does. See docs/feature/evaluation.md.",
    )
    p.add_argument("--model", metavar="DIR", help="model folder (or a run's output_dir: checkpoints/latest); with --serving: "
                   "the served model name (default: the first one /v1/models lists)")
    p.add_argument("--task", choices=["ppl", "mc"], help="ppl: perplexity; mc: multiple choice")
    p.add_argument("--data", metavar="FILE",
                   help="ppl: .jsonl (text in --field), .txt (whole file = one document) or an indexed dataset PREFIX.idx; mc: .jsonl items; "
                        "--serving: the request mix, .jsonl with prompt|messages and max_tokens per line (default: synthetic)")
    p.add_argument("--field", default="text", help="JSONL field holding the text (ppl; default text)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help=f"window / context length in tokens (default: the model's max_position_embeddings, at most {DEFAULT_MAX_LENGTH})")
    p.add_argument("--stride", type=int, default=None, metavar="S", help="ppl: tokens the window moves by (default max-length/2)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="rows per compiled forward (default 8)")
    p.add_argument("--no-bos", action="store_true", help="add no special tokens (default: the tokenizer's own rule)")
    p.add_argument("--num-fewshot", type=int, default=0, metavar="K", help="mc: examples drawn from the other items before each one")
    p.add_argument("--seed", type=int, default=1234, help="mc: seed of the few-shot draw (default 1234)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N documents / items")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="parameter and compute dtype (default float32)")
    p.add_argument("--no-compile", action="store_true", help="run PyNative instead of compiled graphs (slower; for debugging)")
    p.add_argument("--per-document", action="store_true", help="ppl: also write each document's nll and token count")
    p.add_argument("--output", "--out", metavar="FILE.json", help="write the results as JSON")
    g = p.add_argument_group("load run against an OpenAI-compatible endpoint (--serving URL)")
    g.add_argument("--serving", metavar="URL", help="base URL of the server (http://HOST:PORT or .../v1): measure TTFT, TPOT, "
                   "inter-token and end-to-end latency percentiles and throughput instead of scoring a model folder")
    g.add_argument("--concurrency", default="1", metavar="N[,N...]", help="concurrent clients; several values run one after another (default 1)")
    g.add_argument("--request-rate", type=float, default=None, metavar="R",
                   help="requests arrive as a Poisson process at R/s (seeded by --seed), --concurrency at most in flight "
                        "(default: closed loop, each client sends its next request when one ends)")
    g.add_argument("--num-requests", type=int, default=64, metavar="N", help="requests per run (default 64; cycles --data if it has fewer)")
    g.add_argument("--prompt-len", default="16:64", metavar="LO:HI", help="synthetic prompts: words per prompt (default 16:64)")
    g.add_argument("--max-tokens", default="16:64", metavar="LO:HI", help="synthetic max_tokens per request (default 16:64)")
    g.add_argument("--endpoint", choices=["completions", "chat"], default="completions", help="/v1/completions (default) or /v1/chat/completions")
    g.add_argument("--no-stream", action="store_true", help="non-streaming requests (TTFT then equals end-to-end latency)")
    g.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos (a vLLM/mft extension; outputs may end early)")
    g.add_argument("--no-token-logprobs", action="store_true", help="do not ask for logprobs to count tokens per streamed chunk")
    g.add_argument("--warmup", type=int, default=0, metavar="N", help="requests sent one by one before each timed run (default 0)")
    g.add_argument("--api-key", default="", help="bearer token for the endpoint (default: none)")
    g.add_argument("--request-timeout", type=float, default=600.0, metavar="S", help="per-request timeout in seconds (default 600)")
    g.add_argument("--per-request", action="store_true", help="--serving: also write every request's timings to the JSON")
    p.set_defaults(func=run)


def _check(args) -> None:
    from mft.errors import MftError

    if args.batch_size < 1:
        raise MftError(f"--batch-size={args.batch_size} must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise MftError(f"--limit={args.limit} must be >= 1")
    if args.max_length is not None and args.max_length < 2:
        raise MftError(f"--max-length={args.max_length} must be at least 2")
    if args.task != "ppl" and (args.stride is not None or args.per_document):
        raise MftError("--stride and --per-document apply to --task ppl only")
    if args.task != "mc" and args.num_fewshot:
        raise MftError("--num-fewshot applies to --task mc only")
    if args.output and os.path.isdir(args.output):
        raise MftError(f"--output {args.output}: is a folder, expected a .json file path")


def load(args):
    """(model folder, model, tokenizer or None)."""
    from mft.errors import MftError
    from mft.training.checkpoint import resolve_model_folder

    folder = resolve_model_folder(args.model)
    if not os.path.isdir(folder):
        raise MftError(f"--model {args.model}: not a model folder")
    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()  # PyNative pieces (--no-compile, loading) do not spin against compute; see generate_cmd
    from mft.models import AutoModelForCausalLM
    from mft.tokenizer import Tokenizer

    tok_path = os.path.join(folder, "tokenizer.json")
    tokenizer = Tokenizer.from_file(tok_path) if os.path.isfile(tok_path) else None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype={"float32": ms.float32, "float16": ms.float16}[args.dtype])
    model.set_train(False)
    return folder, model, tokenizer


def run(args: argparse.Namespace) -> int:
    from mft.errors import MftError

    if args.serving:
        return run_serving(args)
    for name in ("model", "task", "data"):
        if getattr(args, name) is None:
            raise MftError(f"--{name} is required (or --serving URL for a load run)")
    _check(args)
    if not args.data.endswith((".idx", ".bin")) and not os.path.isfile(args.data):
        raise MftError(f"--data {args.data}: no such file")
    folder, model, tokenizer = load(args)
    max_pos = model.config.max_position_embeddings
    max_length = args.max_length or min(max_pos, DEFAULT_MAX_LENGTH)
    if max_length > max_pos:
        raise MftError(f"--max-length={max_length} exceeds the model's max_position_embeddings={max_pos}")
    from mft.eval.scorer import TokenScorer

    scorer = TokenScorer(model, batch_size=args.batch_size, max_length=max_length, jit=not args.no_compile)
    start = time.perf_counter()
    if args.task == "ppl":
        result = _ppl(args, tokenizer, scorer, max_length)
    else:
        result = _mc(args, tokenizer, scorer, max_length)
    seconds = time.perf_counter() - start
    result.update({"model": folder, "data": args.data, "max_length": max_length, "batch_size": args.batch_size,
                   "dtype": args.dtype, "forwards": scorer.forwards, "compiled_shapes": sorted(map(list, scorer.buckets)),
                   "seconds": round(seconds, 3)})
    if args.task == "ppl":
        result["tokens_per_s"] = round(result["tokens"] / seconds, 1) if seconds > 0 else None
    _print(result)
    if args.output:
        _write_json(args.output, result)
    return 0


def _write_json(path: str, result: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")


def run_serving(args: argparse.Namespace) -> int:
    """`--serving URL`: one load run per --concurrency value over the same request list."""
    from mft.errors import MftError
    from mft.eval.load_requests import parse_range, read_requests, synthetic_requests
    from mft.eval.loadgen import LoadRunner

    if args.task is not None:
        raise MftError("--task does not apply with --serving (a load run measures latency and throughput)")
    try:
        levels = [int(c) for c in str(args.concurrency).split(",")]
    except ValueError:
        raise MftError(f"--concurrency {args.concurrency!r}: expected N or N,N,...") from None
    if not levels or min(levels) < 1:
        raise MftError(f"--concurrency {args.concurrency!r}: every value must be >= 1")
    if args.num_requests < 1:
        raise MftError(f"--num-requests={args.num_requests} must be >= 1")
    if args.warmup < 0:
        raise MftError(f"--warmup={args.warmup} must be >= 0")
    if args.output and os.path.isdir(args.output):
        raise MftError(f"--output {args.output}: is a folder, expected a .json file path")
    lo_hi = parse_range(args.max_tokens, "--max-tokens")
    if args.data:
        pool = read_requests(args.data, lo_hi[1])
        requests = [pool[i % len(pool)] for i in range(args.num_requests)]
        mix = {"data": args.data}
    else:
        prompt_len = parse_range(args.prompt_len, "--prompt-len")
        requests = synthetic_requests(args.num_requests, prompt_len, lo_hi, args.seed)
        mix = {"synthetic": {"prompt_words": list(prompt_len), "max_tokens": list(lo_hi), "seed": args.seed}}
    runner = LoadRunner(args.serving, args.model, args.endpoint, stream=not args.no_stream, ignore_eos=not args.no_ignore_eos,
                        api_key=args.api_key, timeout=args.request_timeout, token_logprobs=not args.no_token_logprobs)
    runs, model = [], args.model
    for c in levels:
        model, results, summary = runner.run(requests, c, args.warmup, args.request_rate, args.seed)
        if args.per_request:
            summary["per_request"] = [{"ok": r.ok, "error": r.error, "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens,
                                       "ttft_s": r.ttft, "e2e_s": r.e2e, "itl_s": r.itl} for r in results]
        runs.append(summary)
    result = {"task": "serving", "url": runner.base, "model": model, "endpoint": args.endpoint, "stream": not args.no_stream,
              "ignore_eos": not args.no_ignore_eos, "num_requests": args.num_requests, "request_rate": args.request_rate, "request_mix": mix,
              "max_tokens_requested": sum(r.max_tokens for r in requests), "runs": runs}
    _print_serving(result)
    if args.output:
        _write_json(args.output, result)
    return 0 if all(r["errors"] == 0 for r in runs) else 1


def _print_serving(result: dict) -> None:
    from mft.eval.table import format_table

    headers = ["conc", "ok", "err", "req/s", "out tok/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "ITL p50/p99 ms",
               "E2E p50/p90/p99 ms"]

    def trio(d, keys=("p50", "p90", "p99")):
        return "/".join("-" if d[k] is None else f"{d[k]:.1f}" for k in keys)

    rows = [[r["concurrency"], r["completed"], r["errors"], r["request_throughput"], r["output_throughput"], trio(r["ttft_ms"]),
             trio(r["tpot_ms"]), trio(r["itl_ms"], ("p50", "p99")), trio(r["e2e_ms"])] for r in result["runs"]]
    print(f"{result['url']}  model {result['model']}  /{result['endpoint']}  stream={result['stream']}")
    print(format_table(headers, rows))
    for r in result["runs"]:
        for e in r["error_samples"]:
            print(f"  concurrency {r['concurrency']}: error: {e}")
    sys.stdout.flush()


def _need_tokenizer(tokenizer, folder_hint: str):
    from mft.errors import MftError

    if tokenizer is None:
        raise MftError(f"--model {folder_hint}: no tokenizer.json in the model folder (needed to encode --data)")


def _ppl(args, tokenizer, scorer, max_length: int) -> dict:
    from mft.errors import MftError
    from mft.eval.data import read_documents
    from mft.eval.ppl import score_documents
    from mft.eval.tokens import special_token_info

    stride = args.stride if args.stride is not None else max(1, max_length // 2)
    kind, docs = read_documents(args.data, args.field)
    if args.limit:
        docs = docs[:args.limit]
    if not docs:
        raise MftError(f"--data {args.data}: no documents")
    if kind == "text":
        _need_tokenizer(tokenizer, args.model)
        info = special_token_info(tokenizer, args.no_bos)
        ids = tokenizer.encode_batch(docs, add_special_tokens=not args.no_bos)
    else:
        info = {"bos": None, "add_special_tokens": None, "bos_rule": "indexed dataset: token ids used as stored"}
        ids = [d.tolist() for d in docs]
    vocab = scorer.model.config.vocab_size
    for i, d in enumerate(ids):
        if d and (max(d) >= vocab or min(d) < 0):
            raise MftError(f"--data {args.data}: document {i} has token id {max(d)} outside the model's vocab_size={vocab}")
    r = score_documents(scorer, ids, max_length, stride)
    out = {"task": "ppl", "tokens": r["tokens"], "mean_nll": r["mean_nll"], "ppl": r["ppl"], **info,
           "documents": r["documents"], "scored_documents": r["scored_documents"], "windows": r["windows"], "stride": stride}
    if args.per_document:
        out["per_document"] = [{"nll": n, "tokens": t} for n, t in zip(r["doc_nll"], r["doc_tokens"])]
    return out


def _mc(args, tokenizer, scorer, max_length: int) -> dict:
    from mft.eval.data import read_mc_items
    from mft.eval.mc import build_rows, fewshot_prefixes, mc_metrics
    from mft.eval.tokens import special_token_info

    _need_tokenizer(tokenizer, args.model)
    items = read_mc_items(args.data)
    prefixes = fewshot_prefixes(items, args.num_fewshot, args.seed)  # drawn from all items, then --limit
    if args.limit:
        items, prefixes = items[:args.limit], prefixes[:args.limit]
    info = special_token_info(tokenizer, args.no_bos)
    rows = build_rows(tokenizer, items, prefixes, max_length, tokenizer.bos_id if info["bos"] else None, tokenizer.eos_id)
    m = mc_metrics(items, scorer.score(rows))
    details = m.pop("details")
    return {"task": "mc", **m, "num_fewshot": args.num_fewshot, "seed": args.seed, **info, "requests": len(rows),
            "details": details}


def _print(result: dict) -> None:
    from mft.eval.table import format_table

    if result["task"] == "ppl":
        headers = ["task", "documents", "tokens", "mean_nll", "ppl", "bos", "windows", "tokens/s"]
        row = ["ppl", result["documents"], result["tokens"], result["mean_nll"], result["ppl"], result["bos"],
               result["windows"], result["tokens_per_s"]]
    else:
        headers = ["task", "items", "shots", "acc", "±", "acc_norm", "±", "chance", "bos"]
        row = ["mc", result["items"], result["num_fewshot"], result["acc"], result["acc_stderr"], result["acc_norm"],
               result["acc_norm_stderr"], result["chance"], result["bos"]]
    print(format_table(headers, [row]))
    sys.stdout.flush()
