"""`mft serve`: an OpenAI-compatible HTTP server for a model folder (continuous batching, paged KV cache)."""

from __future__ import annotations

import argparse
import json
import os

API_KEY_ENV = "MFT_API_KEY"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model folder over an OpenAI-compatible HTTP API",
        description="Load DIR (config.json, model.safetensors, tokenizer.json[, tokenizer_config.json]) and serve "
                    "OpenAI's /v1/models, /v1/completions and /v1/chat/completions, vLLM's /tokenize, /detokenize, "
                    "/tokenizer_info, /version and /ping, /health and /metrics. See docs/guide/deployment.md.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model folder, or a training run's output_dir (uses checkpoints/latest)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="serve a LoRA adapter (PEFT folder) over the base model, chosen by the request's `model` NAME "
                        "(repeatable; a bare DIR is named after its folder); /v1/models lists them")
    p.add_argument("--served-model-name", nargs="+", default=None, metavar="NAME",
                   help="the `model` name(s) clients may send; responses carry the first (default: the folder's name)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on every /v1 request (default: the {API_KEY_ENV} environment "
                        "variable; neither set: no key)")
    p.add_argument("--allowed-origins", type=_json_list, default=["*"], metavar="JSON",
                   help='CORS: origins browsers may call from, a JSON list (default ["*"])')
    p.add_argument("--allowed-methods", type=_json_list, default=["*"], metavar="JSON", help='CORS: allowed methods (default ["*"])')
    p.add_argument("--allowed-headers", type=_json_list, default=["*"], metavar="JSON", help='CORS: allowed headers (default ["*"])')
    p.add_argument("--allow-credentials", action="store_true", help="CORS: allow credentials (cookies, Authorization)")
    p.add_argument("--max-num-seqs", type=int, default=16, metavar="N", help="sequences decoded together at most (default 16)")
    p.add_argument("--block-size", type=int, default=16, metavar="N", help="tokens per KV-cache block, a power of two (default 16)")
    p.add_argument("--num-blocks", type=int, default=None, metavar="N", help="KV-cache blocks (default: max-num-seqs full-length sequences)")
    p.add_argument("--max-model-len", type=int, default=None, metavar="N", help="prompt + output tokens at most (default: the config's max_position_embeddings)")
    p.add_argument("--max-num-batched-tokens", type=int, default=512, metavar="N", help="tokens per engine step (decodes + prefill chunks; default 512)")
    p.add_argument("--decode-mode", choices=["graph", "jit", "pynative"], default="graph",
                   help="decode steps as a graph-mode Cell call (default), ms.jit in PyNative, or op by op")
    p.add_argument("--attention-backend", choices=["auto", "fused", "composed"], default="auto",
                   help="decode attention: the C++ paged-attention kernel over the block tables (fused), gathered "
                        "caches and MindSpore ops (composed), or fused where the kernel runs (auto, default)")
    p.add_argument("--no-prefix-caching", action="store_true",
                   help="do not share the KV-cache blocks of common prompt prefixes between requests")
    p.add_argument("--prefill-mode", choices=["rows", "pynative"], default="rows",
                   help="rows (default): with the fused attention backend, text prefill tokens join the step's "
                        "compiled graph as rows beside the decode tokens (one graph per row bucket, compiled at "
                        "warm-up; memory stays flat); pynative: prefill chunks op by op (start-up a little shorter)")
    p.add_argument("--no-warmup", action="store_true",
                   help="compile decode graphs and run prefill shapes on first use instead of at start-up")
    p.set_defaults(func=run)


def _json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise argparse.ArgumentTypeError(f"expected a JSON list of strings such as '[\"*\"]', got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from mft.serving.malloc_arenas import limit_arenas

    limit_arenas()  # before MindSpore's threads: the engine thread's freed memory stays reusable (flat RSS)
    from mft.errors import MftError
    from mft.training.checkpoint import resolve_model_folder

    args.model = resolve_model_folder(args.model)
    if not os.path.isdir(args.model):
        raise MftError(f"{args.model}: not a model folder")
    tokenizer_path = os.path.join(args.model, "tokenizer.json")
    if not os.path.isfile(tokenizer_path):
        raise MftError(f"{args.model}: no tokenizer.json in this model folder (the server encodes prompts and decodes text)")
    if not 0 <= args.port <= 65535:
        raise MftError(f"--port={args.port} must be in [0, 65535]")
    for name in ("max_num_seqs", "max_num_batched_tokens"):
        if getattr(args, name) < 1:
            raise MftError(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    from mft.serving.adapters import parse_adapter_args

    adapters = parse_adapter_args(args.adapter)  # before the heavy imports: a bad flag fails at once
    names = args.served_model_name or [os.path.basename(os.path.normpath(args.model))]
    name = names[0]
    for base_name in names:
        if base_name in dict(adapters):
            raise MftError(f"--adapter {base_name}=...: {base_name!r} is the base model's name; choose another")
    api_key = args.api_key if args.api_key is not None else os.environ.get("MFT_API_KEY")
    if api_key is not None and not api_key.strip():
        raise MftError("--api-key / MFT_API_KEY is empty; give a key or leave both unset")
    try:
        import uvicorn
    except ImportError:
        raise MftError("mft serve needs starlette and uvicorn (pip install 'mft[serve]')") from None

    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()  # see `mft generate`: much faster PyNative ops on a busy CPU
    from mft.models import AutoModelForCausalLM
    from mft.serving.engine import LLMEngine
    from mft.serving.server import Server
    from mft.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    engine = LLMEngine(model, tokenizer, block_size=args.block_size, num_blocks=args.num_blocks,
                       max_num_seqs=args.max_num_seqs, max_model_len=args.max_model_len,
                       max_num_batched_tokens=args.max_num_batched_tokens, decode_mode=args.decode_mode,
                       adapters=adapters, enable_prefix_caching=not args.no_prefix_caching,
                       attention_backend=args.attention_backend, prefill_mode=args.prefill_mode)
    if not args.no_warmup and args.decode_mode != "pynative":
        engine.runner.warmup()
    cors = {"origins": args.allowed_origins, "methods": args.allowed_methods, "headers": args.allowed_headers,
            "credentials": args.allow_credentials}
    server = Server(engine, tokenizer, name, aliases=names[1:], api_keys=[api_key] if api_key else None, cors=cors)
    if getattr(model.config, "text_config", None) is not None:  # a vision-language model: image_url parts are read
        from mft.models.auto import load_processor

        server.processor = load_processor(args.model, model.config, tokenizer)
    uvicorn.run(server.app(), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)
    return 0
