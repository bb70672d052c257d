"""`mft data preprocess|inspect`: build and look at indexed (.bin/.idx) datasets."""

from __future__ import annotations

import argparse
import os
import sys

from mft.errors import MftError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="tokenize corpora into indexed datasets and inspect them",
        description="Build Megatron-compatible .bin/.idx datasets from text and inspect them.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    pre = dsub.add_parser(
        "preprocess",
        help="tokenize JSONL/Parquet/.txt files into PREFIX.bin/.idx",
        description="Tokenize documents (JSONL: one object per line with a text field; Parquet: a text column, "
        "needs pyarrow; .txt: one document per non-empty line), append the tokenizer's EOS as end-of-document, "
        "and write PREFIX.bin/.idx (Megatron MMIDIDX).",
    )
    pre.add_argument("--input", nargs="+", required=True, metavar="FILE",
                     help=".jsonl/.json/.parquet/.txt files or quoted globs ('data/*.jsonl'), read in order")
    pre.add_argument("--tokenizer", required=True, metavar="TOKENIZER_JSON", help="Hugging Face tokenizer.json")
    pre.add_argument("--output-prefix", required=True, metavar="PREFIX", help="writes PREFIX.bin and PREFIX.idx")
    pre.add_argument("--field", default="text", help="JSON field or Parquet column holding the document text (default: text)")
    pre.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="tokenizer threads")
    pre.add_argument("--skip-bad", action="store_true",
                     help="skip (and count) bad documents - malformed JSON, missing field, non-UTF-8, too large - instead of stopping")
    pre.add_argument("--max-doc-bytes", type=int, default=None, metavar="N",
                     help="a document larger than this is bad input (default 64 MiB)")
    pre.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar with MB/s on stderr (default: when stderr is a terminal)")
    pre.add_argument("--format", choices=("text", "sft"), default="text",
                     help="text: pre-training documents; sft: Alpaca/ShareGPT/OpenAI-messages JSONL rendered with a chat "
                     "template, written with a loss mask as PREFIX_mask.bin/.idx (docs/guide/supervised_fine_tuning.md)")
    pre.add_argument("--chat-template", metavar="NAME_OR_FILE",
                     help="sft: a built-in (chatml, llama3) or a .jinja file instead of the tokenizer's chat_template")
    pre.add_argument("--loss-on", choices=("assistant", "last", "all"), default="assistant",
                     help="sft: which tokens are trained on (default: every assistant reply)")
    pre.add_argument("--max-length", type=int, default=None, metavar="N",
                     help="sft: the most tokens per conversation; longer ones follow --truncation")
    pre.add_argument("--truncation", choices=("drop", "left", "split"), default="drop",
                     help="sft, with --max-length: drop (a bad record), left (cut the prompt's left end) or split into pieces")
    pre.add_argument("--image-dir", metavar="DIR",
                     help="sft: folder that records' image/images paths are relative to (default: the JSONL file's folder)")
    pre.add_argument("--image-token", default="<image>", metavar="TOKEN",
                     help="sft: the tokenizer's image placeholder token each <image> becomes (default <image>)")
    pre.set_defaults(func=run_preprocess)

    ins = dsub.add_parser(
        "inspect",
        help="print counts, token totals and a length histogram of PREFIX.bin/.idx",
        description="Summarize an indexed dataset; with --tokenizer also decode a few documents.",
    )
    ins.add_argument("prefix", help="dataset prefix (PREFIX.bin/.idx)")
    ins.add_argument("--tokenizer", metavar="TOKENIZER_JSON", help="decode sample documents with this tokenizer")
    ins.add_argument("--samples", type=int, default=2, help="documents to decode with --tokenizer (default 2)")
    ins.set_defaults(func=run_inspect)


def run_preprocess(args: argparse.Namespace) -> int:
    from mft.data.preprocess import preprocess
    from mft.tokenizer import Tokenizer

    if args.format == "sft":
        from mft.cli.sft_data_cmd import run_preprocess_sft

        return run_preprocess_sft(args)
    if not os.path.isfile(args.tokenizer):
        raise MftError(f"{args.tokenizer}: no such tokenizer file")
    from mft.data.preprocess import DEFAULT_MAX_DOC_BYTES

    tokenizer = Tokenizer.from_file(args.tokenizer)
    max_doc = DEFAULT_MAX_DOC_BYTES if args.max_doc_bytes is None else args.max_doc_bytes
    if max_doc < 1:
        raise MftError(f"--max-doc-bytes must be positive, got {max_doc}")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    stats = preprocess(args.input, tokenizer, args.output_prefix, args.field, args.workers, args.skip_bad,
                       max_doc_bytes=max_doc, progress=progress)
    print(
        f"wrote {args.output_prefix}.bin/.idx: {stats.documents} documents, {stats.tokens} tokens, "
        f"{stats.input_bytes / 1e6:.2f} MB in {stats.seconds:.2f}s ({stats.mb_per_s:.2f} MB/s)"
    )
    if stats.skipped_bad:
        print(f"skipped {stats.skipped_bad} bad documents (malformed lines), e.g.:")
        for where in stats.bad_examples:
            print(f"  {where}")
    if stats.skipped_empty:
        print(f"skipped {stats.skipped_empty} empty documents")
    return 0


def length_histogram(lengths, buckets: int = 12) -> list[tuple[int, int, int]]:
    """(low, high, count) rows over power-of-two length buckets [low, high]."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return []
    top = int(lengths.max())
    edges = [0, 1]
    while edges[-1] <= top:
        edges.append(edges[-1] * 2)
    counts = np.histogram(lengths, bins=edges)[0]
    return [(edges[i], edges[i + 1] - 1, int(c)) for i, c in enumerate(counts) if c]


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from mft.data.indexed import IndexedDataset

    ds = IndexedDataset(args.prefix)
    lengths = np.asarray(ds.sequence_lengths, dtype=np.int64)
    print(f"dataset   {args.prefix}.bin/.idx")
    print(f"dtype     {ds.dtype}")
    print(f"documents {len(ds)}")
    print(f"tokens    {ds.num_tokens}")
    if len(ds):
        print(
            f"length    min {lengths.min()}  mean {lengths.mean():.1f}  median {int(np.median(lengths))}  max {lengths.max()}"
        )
        rows = length_histogram(lengths)
        width = max(c for _, _, c in rows)
        print("length histogram (tokens per document):")
        for low, high, count in rows:
            bar = "#" * max(1, round(40 * count / width))
            print(f"  {low:>8}-{high:<8} {count:>9}  {bar}")
    if args.tokenizer and len(ds):
        from mft.tokenizer import Tokenizer

        tok = Tokenizer.from_file(args.tokenizer)
        for i in range(min(args.samples, len(ds))):
            text = tok.decode(ds[i].tolist(), skip_special_tokens=False)
            shown = text if len(text) <= 300 else text[:300] + " ..."
            print(f"document {i} ({len(ds[i])} tokens): {shown!r}")
    return 0
