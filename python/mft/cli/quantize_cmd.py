"""`mft quantize`: int8 / int4 weight quantization (and W8A8 SmoothQuant, an int8 KV cache) of a model folder (docs/feature/quantization.md)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="quantize a model folder's linear weights to int8 (w8a16), int4 (w4a16) or int8 weights and activations "
        "(w8a8), and/or its KV cache to int8 (kv8)",
        description="Write a quantized copy of DIR: int8 per-output-channel symmetric weights (w8a16, "
        "compressed-tensors layout), int4 group-wise asymmetric weights (w4a16, GPTQ layout), or int8 "
        "weights with int8 per-token activations (w8a8, compressed-tensors, SmoothQuant folded into the "
        "weights), by round-to-nearest or GPTQ with calibration text; kv8 adds an int8 KV cache with static "
        "per-(layer, kv head) scales calibrated on --calib (compressed-tensors kv_cache_scheme), alone or as "
        "w8a16+kv8 / w8a8+kv8. MoE experts are quantized too (round-to-nearest per expert). "
        "generate/serve/eval load the result directly.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="float model folder (config.json, model.safetensors, tokenizer.json), or a training run's output_dir")
    p.add_argument("--out", "--output", dest="out", required=True, metavar="DIR", help="new folder to write (must not exist or be empty)")
    p.add_argument("--scheme", required=True, metavar="NAME", help="w8a16 (int8 weights), w4a16 (int4 weights), w8a8 (int8 "
                   "weights and activations), kv8 (int8 KV cache, needs --calib), or w8a16+kv8 / w8a8+kv8")
    p.add_argument("--method", default="rtn", metavar="NAME", help="rtn (round to nearest, default), gptq (needs --calib), awq (w4a16, activation-aware "
                   "scales, AutoAWQ layout, needs --calib) or, for w8a8, smoothquant (SmoothQuant smoothing + rtn "
                   "weights, needs --calib; w8a8 gptq smooths too)")
    p.add_argument("--group-size", type=int, default=128, metavar="N", help="w4a16: input columns per scale/zero (multiple of 16 dividing the in-features; -1 = whole row; default 128)")
    p.add_argument("--calib", metavar="FILE", help="gptq / awq / smoothquant / kv8: calibration text (.txt, or .jsonl with a \"text\" field)")
    p.add_argument("--calib-tokens", type=int, default=16384, metavar="N", help="gptq: calibration tokens to use at most (default 16384)")
    p.add_argument("--calib-seq-len", type=int, default=256, metavar="N", help="gptq: tokens per calibration sequence (default 256)")
    p.add_argument("--damp", type=float, default=0.01, help="gptq: Hessian damping as a fraction of its mean diagonal (default 0.01)")
    p.add_argument("--smooth-alpha", type=float, default=0.5, metavar="A",
                   help="w8a8 smoothquant/gptq: migration strength in (0, 1): s = max|x|^A / max|w|^(1-A) (default 0.5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.quant.schemes import QuantOptions, check_options, check_out_dir

    opts = QuantOptions(scheme=args.scheme, method=args.method, group_size=args.group_size, calib=args.calib,
                        calib_tokens=args.calib_tokens, calib_seq_len=args.calib_seq_len, damp=args.damp,
                        smooth_alpha=args.smooth_alpha)
    check_options(opts)  # before MindSpore is imported: bad options fail in a fraction of a second
    check_out_dir(args.out)

    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()
    from mft.quant.writer import quantize_folder
    from mft.training.checkpoint import resolve_model_folder

    quantize_folder(resolve_model_folder(args.model), args.out, opts)
    return 0
