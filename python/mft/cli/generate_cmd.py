"""`mft generate`: load a model folder and stream a continuation of a prompt."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a prompt with a model folder",
        description="Load DIR (config.json, model.safetensors, tokenizer.json) and stream a continuation of the prompt.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model folder (Hugging Face layout), or a training run's output_dir / checkpoints folder (uses checkpoints/latest)")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="text to continue")
    p.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="an image for a vision-language model (repeat for several); each <image> in the prompt stands for one, in order (none in the prompt: one per image is put in front)")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="tokens to generate at most (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="sampling temperature; 0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely tokens (default 0 = off)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling (same seed, same text)")
    p.add_argument("--no-echo", action="store_true", help="print only the continuation, not the prompt before it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mft.errors import MftError

    from mft.training.checkpoint import resolve_model_folder

    args.model = resolve_model_folder(args.model)  # a run's output_dir works too (checkpoints/latest)
    tokenizer_path = os.path.join(args.model, "tokenizer.json")
    if not os.path.isdir(args.model):
        raise MftError(f"{args.model}: not a model folder")
    if not os.path.isfile(tokenizer_path):
        raise MftError(f"{args.model}: no tokenizer.json in this model folder (needed to encode the prompt)")
    for path in args.image:
        if not os.path.isfile(path):
            raise MftError(f"--image {path}: no such file")
    if args.max_new_tokens < 0:
        raise MftError(f"--max-new-tokens={args.max_new_tokens} must be >= 0")

    import mindspore as ms

    ms.set_device("CPU")
    # Synchronous op launch: on a busy 2-core CPU, MindSpore's async PyNative
    # pipeline spins threads against the compute; blocking launch measured
    # ~30x faster for the prompt forward (27 ms vs 800 ms) and faster decode.
    ms.runtime.launch_blocking()
    from mft.inference.streamer import TextStreamer
    from mft.models import AutoModelForCausalLM
    from mft.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    image_inputs = {}
    if args.image:
        from mft.models.auto import load_processor

        processor = load_processor(args.model, model.config, tokenizer)
        ids, image_inputs = processor.model_inputs(args.prompt, args.image)
        prompt_ids = [int(i) for i in ids[0]]
    else:
        prompt_ids = list(tokenizer.encode(args.prompt))
    if not prompt_ids:
        raise MftError("--prompt encodes to no tokens")
    # Stop at the tokenizer's eos and at every eos the model config names (Llama 3 lists several).
    config_eos = model.config.eos_token_id
    stop_ids = [] if config_eos is None else ([config_eos] if isinstance(config_eos, int) else list(config_eos))
    if tokenizer.eos_id is not None and tokenizer.eos_id not in stop_ids:
        stop_ids.insert(0, tokenizer.eos_id)
    streamer = TextStreamer(tokenizer, prompt_ids, stop_ids=stop_ids)
    do_sample = args.temperature > 0
    if not args.no_echo:
        print(args.prompt, end="", flush=True)
    model.generate(
        [prompt_ids],
        max_new_tokens=args.max_new_tokens,
        do_sample=do_sample,
        temperature=args.temperature if do_sample else 1.0,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_token_id=stop_ids or None,
        seed=args.seed,
        streamer=streamer,
        **image_inputs,
    )
    return 0
