"""`mft data preprocess --format sft`: conversations -> tokens + loss mask (mft.data.sft)."""

from __future__ import annotations

import argparse
import os

from mft.errors import MftError


def run_preprocess_sft(args: argparse.Namespace) -> int:
    from mft.data.sft import mask_prefix, preprocess_sft
    from mft.tokenizer import Tokenizer

    if not os.path.exists(args.tokenizer):
        raise MftError(f"{args.tokenizer}: no such tokenizer file or folder")
    if args.max_length is not None and args.max_length < 1:
        raise MftError(f"--max-length must be positive, got {args.max_length}")
    tokenizer = Tokenizer.from_file(args.tokenizer)
    stats = preprocess_sft(args.input, tokenizer, args.output_prefix, chat_template=args.chat_template,
                           loss_on=args.loss_on, skip_bad=args.skip_bad, max_length=args.max_length,
                           truncation=args.truncation, image_dir=getattr(args, "image_dir", None),
                           image_token=getattr(args, "image_token", "<image>"))
    share = stats.trained_tokens / stats.tokens if stats.tokens else 0.0
    print(f"wrote {args.output_prefix}.bin/.idx and {mask_prefix(args.output_prefix)}.bin/.idx: "
          f"{stats.conversations} documents, {stats.tokens} tokens, {stats.trained_tokens} trained on "
          f"({share:.1%}, loss on {args.loss_on}) in {stats.seconds:.2f}s")
    if stats.with_images:
        from mft.data.sft_images import images_path

        print(f"{stats.with_images} documents have images, listed in {images_path(args.output_prefix)} (read at training time)")
    if stats.skipped_bad:
        print(f"skipped {stats.skipped_bad} bad records, e.g.:")
        for where in stats.bad_examples:
            print(f"  {where}")
    return 0
