"""`mft compare`: where two runs of a model diverge, layer by layer (precision comparison)."""

from __future__ import annotations

import argparse
import json
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two models / precisions / op paths layer by layer",
        description="Run the same prompts through run A (--model) and run B (--model-b, default the same folder), "
                    "each a model folder or an activation dump (.npz from --dump), and print per layer the max/mean "
                    "absolute and relative error, the first layer past --tol, and for the logits top-1 agreement and KL. "
                    "See docs/advanced/precision_comparison.md.",
    )
    p.add_argument("--model", required=True, metavar="DIR|DUMP.npz", help="run A, the reference")
    p.add_argument("--model-b", metavar="DIR|DUMP.npz", help="run B (default: the --model folder)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="run A's dtype (default float32)")
    p.add_argument("--dtype-b", choices=["float32", "float16"], help="run B's dtype (default: --dtype)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for run A, e.g. fused_attention=false (repeatable)")
    p.add_argument("--override-b", action="append", default=[], metavar="KEY=VALUE", help="config override for run B")
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    p.add_argument("--data", metavar="FILE", help="prompts from a .jsonl (--field) or .txt (one per line)")
    p.add_argument("--field", default="text", help="JSONL field (default text)")
    p.add_argument("--limit", type=int, default=8, metavar="N", help="at most N prompts from --data (default 8)")
    p.add_argument("--random-tokens", type=int, metavar="N", help="no text: one prompt of N random token ids (--seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-tokens")
    p.add_argument("--max-length", type=int, default=256, metavar="N", help="cut prompts to N tokens (default 256)")
    p.add_argument("--tol", type=float, default=1e-2, help="relative L2 error that counts as divergence (default 1e-2)")
    p.add_argument("--grads", action="store_true",
                   help="also compare a training step's gradients (LM loss on each prompt), per layer")
    p.add_argument("--dump", metavar="FILE.npz", help="also save run A's activations")
    p.add_argument("--dump-b", metavar="FILE.npz", help="also save run B's activations")
    p.add_argument("--output", metavar="FILE.json", help="write the comparison as JSON")
    p.set_defaults(func=run)


def _overrides(items: list[str], flag: str) -> dict:
    from mft.errors import MftError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MftError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def _load_model(folder: str, dtype: str, overrides: dict, flag: str):
    import dataclasses

    import mindspore as ms

    from mft.errors import MftError
    from mft.models import AutoModelForCausalLM
    from mft.training.checkpoint import resolve_model_folder

    folder = resolve_model_folder(folder)
    if not os.path.isdir(folder):
        raise MftError(f"{flag} {folder}: not a model folder or .npz dump")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype={"float32": ms.float32, "float16": ms.float16}[dtype], **overrides)
    except TypeError as e:  # dataclasses.replace with an unknown field
        raise MftError(f"{flag.replace('model', 'override')}: {e}") from None
    model.set_train(False)
    assert dataclasses.is_dataclass(model.config)
    return folder, model


def _prompts(args, folder_a: str | None) -> list[list[int]]:
    import numpy as np

    from mft.errors import MftError

    sources = sum(bool(x) for x in (args.prompt, args.data, args.random_tokens))
    if sources != 1:
        raise MftError("give exactly one of --prompt, --data or --random-tokens (or a dump as --model)")
    if args.random_tokens:
        if args.random_tokens < 1:
            raise MftError(f"--random-tokens={args.random_tokens} must be >= 1")
        return [args.random_tokens]  # resolved to ids once the vocab is known
    from mft.tokenizer import Tokenizer

    tok_path = os.path.join(folder_a or "", "tokenizer.json")
    if folder_a is None or not os.path.isfile(tok_path):
        raise MftError(f"--model {args.model}: no tokenizer.json to encode the prompts (use --random-tokens)")
    tok = Tokenizer.from_file(tok_path)
    texts = list(args.prompt)
    if args.data:
        from mft.tokenizer.corpus import iter_texts

        if not os.path.isfile(args.data):
            raise MftError(f"--data {args.data}: no such file")
        for t in iter_texts([args.data], args.field):
            if t.strip():
                texts.append(t)
            if len(texts) >= args.limit:
                break
    ids = [list(tok.encode(t))[:args.max_length] for t in texts]
    if not ids or any(len(i) == 0 for i in ids):
        raise MftError("a prompt encodes to no tokens")
    return ids


def run(args: argparse.Namespace) -> int:
    import mindspore as ms
    import numpy as np

    from mft.errors import MftError
    from mft.eval.activations import collect, gradients, load_dump, save_dump
    from mft.eval.compare import compare_runs

    if args.tol <= 0:
        raise MftError(f"--tol={args.tol} must be > 0")
    if args.max_length < 1:
        raise MftError(f"--max-length={args.max_length} must be >= 1")
    spec_b = args.model_b or args.model
    overrides = {"--model": _overrides(args.override, "--override"), "--model-b": _overrides(args.override_b, "--override-b")}
    ms.set_device("CPU")
    ms.runtime.launch_blocking()
    runs = []
    prompts = None
    for flag, spec, dtype in (("--model", args.model, args.dtype), ("--model-b", spec_b, args.dtype_b or args.dtype)):
        if spec.endswith(".npz"):
            if not os.path.isfile(spec):
                raise MftError(f"{flag} {spec}: no such dump")
            ids, acts = load_dump(spec)
            if prompts is not None and ids != prompts:
                raise MftError(f"{flag} {spec}: the dump's prompts differ from run A's")
            prompts = ids
            runs.append({"source": spec, "dump": True, "acts": acts})
            continue
        folder, model = _load_model(spec, dtype, overrides[flag], flag)
        if prompts is None:
            prompts = _prompts(args, folder)
        if len(prompts) == 1 and isinstance(prompts[0], int):
            prompts = [np.random.default_rng(args.seed).integers(0, model.config.vocab_size, prompts[0]).tolist()]
        if max(max(p) for p in prompts) >= model.config.vocab_size:
            raise MftError(f"{flag} {spec}: prompt token ids exceed its vocab_size={model.config.vocab_size}")
        runs.append({"source": folder, "dump": False, "dtype": dtype, "overrides": overrides[flag],
                     "acts": [collect(model, p) + (gradients(model, p) if args.grads else []) for p in prompts]})
    for path, r in ((args.dump, runs[0]), (args.dump_b, runs[1])):
        if path:
            save_dump(path, prompts, r["acts"])
    result = compare_runs(runs[0]["acts"], runs[1]["acts"], args.tol)
    result["runs"] = [{k: v for k, v in r.items() if k != "acts"} for r in runs]
    result["prompts"] = len(prompts)
    result["tokens"] = sum(len(p) for p in prompts)
    _print(result)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def _print(result: dict) -> None:
    from mft.eval.table import format_table

    rows = [[r["name"], r["max_abs"], r["mean_abs"], r["rel"], r["max_rel"],
             "<- first > tol" if r["name"] in (result["first_divergence"], result["first_grad_divergence"]) else ""]
            for r in result["tensors"]]
    print(format_table(["tensor", "max_abs", "mean_abs", "rel", "max_rel", ""], rows))
    first = result["first_divergence"]
    print(f"first divergence (rel > {result['tol']:g}): {first or 'none'}")
    if any(r["name"].startswith("grad.") for r in result["tensors"]):
        print(f"first gradient divergence: {result['first_grad_divergence'] or 'none'}")
    print(f"logits: top-1 agreement {result['top1_agreement']:.4f} over {result['positions']} positions, "
          f"KL mean {result['kl_mean']:.3g} max {result['kl_max']:.3g} nats")
