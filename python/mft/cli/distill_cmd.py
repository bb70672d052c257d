"""`mft distill`: a teacher model answers prompts; the answers a checker keeps become an SFT data set.

The sequence-level distillation pipeline is three commands (docs/examples/distillation.md):
`mft distill` (this; mft.finetune.seq_distill), `mft data preprocess --format sft`
on its output, and `mft train` of the student with `finetune.packing: true`.
"""

from __future__ import annotations

import argparse
import json
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="sequence-level distillation data: a teacher answers prompts, filtered answers -> SFT JSONL",
        description="Generate the teacher's responses to the prompts of --input (SFT records: the prompt is the "
                    "conversation before the last assistant reply, which is the reference; or {\"prompt\": TEXT}), drop "
                    "incomplete, too short/long, duplicate and (with --match-reference) wrong ones, and write the kept "
                    "conversations as OpenAI-messages JSONL for `mft data preprocess --format sft`. Prints the exact "
                    "match with the references.",
    )
    p.add_argument("--teacher", required=True, metavar="DIR", help="teacher model folder, or a training run's output_dir (uses checkpoints/latest)")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder (PEFT layout) applied to the teacher")
    p.add_argument("--input", required=True, metavar="FILE.jsonl", help="prompts: SFT records or {\"prompt\": ..., \"reference\": ...}")
    p.add_argument("--output", required=True, metavar="FILE.jsonl", help="kept conversations (OpenAI messages records)")
    p.add_argument("--chat-template", metavar="NAME|FILE", help="chatml, llama3 or a .jinja file (default: the tokenizer's own)")
    p.add_argument("--num-samples", type=int, default=1, metavar="N", help="responses per prompt (default 1; >1 wants --temperature > 0)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="longest response; one that does not end by then is dropped (default 128)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="prompts generated together (default 16)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="sampling temperature; 0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely tokens (default 0 = off)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (batch b uses S + b)")
    p.add_argument("--min-tokens", type=int, default=1, metavar="N", help="drop responses shorter than N tokens (default 1)")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N", help="drop responses longer than N tokens")
    p.add_argument("--no-dedup", action="store_true", help="keep repeated responses to the same prompt")
    p.add_argument("--accept-regex", metavar="REGEX", help="a checker: keep only responses the regex matches whole (e.g. 'Ge [0-9]+:[0-9]+')")
    p.add_argument("--match-reference", action="store_true", help="keep only responses equal to the reference (rejection sampling)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed records instead of stopping")
    p.add_argument("--report", metavar="FILE.json", help="also write the counts (and exact match) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.errors import MftError
    from mft.finetune.seq_distill import DistillStats, filter_responses, read_prompts, summary, write_jsonl
    from mft.training.checkpoint import resolve_model_folder

    if args.num_samples < 1 or args.max_new_tokens < 1 or args.batch_size < 1:
        raise MftError("--num-samples, --max-new-tokens and --batch-size must be >= 1")
    if args.num_samples > 1 and args.temperature <= 0 and not args.no_dedup:
        raise MftError(f"--num-samples {args.num_samples} with greedy decoding gives {args.num_samples} equal responses; "
                       "set --temperature > 0")
    if args.min_tokens < 0 or (args.max_tokens is not None and args.max_tokens < args.min_tokens):
        raise MftError(f"--min-tokens {args.min_tokens} / --max-tokens {args.max_tokens}: need 0 <= min <= max")
    teacher = resolve_model_folder(args.teacher)
    if not os.path.isfile(os.path.join(teacher, "tokenizer.json")):
        raise MftError(f"--teacher {teacher}: no tokenizer.json in this model folder")
    if args.adapter and not os.path.isdir(args.adapter):
        raise MftError(f"--adapter {args.adapter}: not a folder")
    prompts, bad = read_prompts(args.input, skip_bad=args.skip_bad)
    filter_responses([], [], DistillStats(), accept_regex=args.accept_regex)  # a bad regex fails before the model loads

    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()  # as mft generate: synchronous launch is much faster on a busy CPU
    from mft.data.sft import load_template
    from mft.finetune.seq_distill import generate_responses
    from mft.models import AutoModelForCausalLM
    from mft.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(teacher, "tokenizer.json"))
    template = load_template(tokenizer, args.chat_template)
    model = AutoModelForCausalLM.from_pretrained(teacher, **({"adapter": args.adapter} if args.adapter else {}))
    responses, dropped = generate_responses(
        model, tokenizer, template, prompts, num_samples=args.num_samples, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    stats = DistillStats(prompts=len(prompts), skipped_bad=bad, dropped=dropped)
    kept = filter_responses(prompts, responses, stats, min_tokens=args.min_tokens, max_tokens=args.max_tokens,
                            dedup=not args.no_dedup, match_reference=args.match_reference,
                            accept_regex=args.accept_regex)
    print(summary(stats, args.num_samples))
    if args.report:
        write_report(args.report, stats)
    if not kept:
        raise MftError(f"no response was kept, so {args.output} was not written (see the drop counts above)")
    write_jsonl(args.output, kept)
    print(f"wrote {args.output}: {len(kept)} conversations")
    return 0


def write_report(path: str, stats) -> None:
    """The counts as one JSON object, through a temporary name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(stats.as_dict(), f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
