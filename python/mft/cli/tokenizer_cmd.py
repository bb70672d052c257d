"""`mft tokenizer train|encode`: learn a byte-level BPE tokenizer, or run one."""

from __future__ import annotations

import argparse
import os
import sys
import time

from mft.errors import MftError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer, or encode with any Hugging Face tokenizer.json",
        description="Train a byte-level BPE tokenizer or encode/decode with one.",
    )
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    sub.required = True

    train = sub.add_parser(
        "train",
        help="train byte-level BPE on text files",
        description="Train byte-level BPE (GPT-2 pre-tokenizer, 256-byte alphabet, same merges as "
        "HF tokenizers' BpeTrainer) and write a tokenizer.json that HF loads.",
    )
    train.add_argument("--input", nargs="+", required=True, metavar="FILE",
                       help="training files: .jsonl (one JSON object per line) or plain text (one text per line)")
    train.add_argument("--vocab-size", type=int, required=True, metavar="N", help="final vocabulary size, special tokens included")
    train.add_argument("--output", required=True, metavar="PATH", help="tokenizer.json to write (atomically)")
    train.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"], metavar="TOKEN",
                       help="special tokens, given the first ids (default: <|endoftext|>, used as eos and pad)")
    train.add_argument("--field", default="text", help="JSON field holding the text in .jsonl files (default: text)")
    train.add_argument("--min-frequency", type=int, default=2, metavar="N",
                       help="never merge pairs seen fewer than N times (default: 2)")
    train.add_argument("--add-prefix-space", action="store_true",
                       help="prepend a space to each text before pre-tokenizing (GPT-2/RoBERTa style)")
    train.set_defaults(func=_train)

    enc = sub.add_parser(
        "encode",
        help="print the ids of a text (or, with --decode, the text of ids)",
        description="Encode TEXT to ids (printed space-separated), or with --decode turn ids back into text.",
    )
    enc.add_argument("--tokenizer", required=True, metavar="PATH", help="a tokenizer.json (or a directory holding one)")
    enc.add_argument("--text", required=True,
                     help="text to encode ('-' reads stdin); with --decode, ids separated by spaces or commas")
    enc.add_argument("--decode", action="store_true", help="treat --text as ids and print the decoded text")
    enc.add_argument("--no-special-tokens", action="store_true",
                     help="encode: skip the post-processor's BOS/EOS; decode: keep special tokens in the text")
    enc.set_defaults(func=_encode)


def _train(args: argparse.Namespace) -> int:
    from mft.tokenizer import Tokenizer, iter_texts

    if args.vocab_size < 1:
        raise MftError(f"--vocab-size must be positive, got {args.vocab_size}")
    start = time.perf_counter()
    seen = {"texts": 0}

    def counted(texts):
        for t in texts:
            if t.strip():
                seen["texts"] += 1
            yield t

    tok = Tokenizer.train(
        counted(iter_texts(args.input, args.field)),
        vocab_size=args.vocab_size,
        special_tokens=args.special_tokens,
        min_frequency=args.min_frequency,
        add_prefix_space=args.add_prefix_space,
    )
    if seen["texts"] == 0:
        raise MftError(f"empty corpus: no text found in {', '.join(args.input)}; nothing to train on")
    parent = os.path.dirname(os.path.abspath(args.output))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise MftError(f"{args.output}: cannot create directory {parent}: {e.strerror}") from None
    tok.save(args.output)
    took = time.perf_counter() - start
    print(f"wrote {args.output}: vocab size {tok.vocab_size}, special tokens {list(tok.special_tokens)} ({took:.1f} s)")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from mft.tokenizer import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    text = sys.stdin.read() if args.text == "-" else args.text
    if args.decode:
        try:
            ids = [int(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise MftError(f"--decode expects integer ids, got {text[:40]!r}") from None
        print(tok.decode(ids, skip_special_tokens=not args.no_special_tokens))
    else:
        print(" ".join(str(i) for i in tok.encode(text, add_special_tokens=not args.no_special_tokens)))
    return 0
