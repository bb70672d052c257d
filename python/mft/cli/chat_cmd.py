"""`mft chat`: an interactive terminal chat with a model folder (and optionally a LoRA adapter)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

HELP = "commands: /reset (forget the conversation), /exit (or Ctrl-D) quits; Ctrl-C stops a reply"
PROMPT = ">>> "


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="chat with a model in the terminal (its chat template, streaming, history)",
        description="Load DIR (and --adapter) and chat: each reply is generated from the whole conversation rendered "
                    "with the model's chat template and streamed as it is produced. " + HELP + ".",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model folder, or a training run's output_dir / checkpoints folder (uses checkpoints/latest)")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder (PEFT layout) applied at load")
    p.add_argument("--system", metavar="TEXT", help="system prompt kept at the start of the conversation")
    p.add_argument("--chat-template", metavar="NAME|FILE", help="chatml, llama3 or a .jinja file (default: the tokenizer's own)")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="longest reply in tokens (default 256)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="sampling temperature; 0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely tokens (default 0 = off)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    p.set_defaults(func=run)


def load_session(args):
    from mft.errors import MftError
    from mft.training.checkpoint import resolve_model_folder

    model_dir = resolve_model_folder(args.model)
    if not os.path.isdir(model_dir):
        raise MftError(f"--model {args.model}: not a model folder")
    tokenizer_path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.isfile(tokenizer_path):
        raise MftError(f"--model {model_dir}: no tokenizer.json in this model folder")
    if args.adapter and not os.path.isdir(args.adapter):
        raise MftError(f"--adapter {args.adapter}: not a folder")
    import mindspore as ms

    ms.set_device("CPU")
    ms.runtime.launch_blocking()  # as mft generate: synchronous launch is much faster on a busy CPU
    from mft.data.sft import load_template
    from mft.inference.chat import ChatSession
    from mft.models import AutoModelForCausalLM
    from mft.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    template = load_template(tokenizer, args.chat_template)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **({"adapter": args.adapter} if args.adapter else {}))
    return ChatSession(model, tokenizer, template, system=args.system, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)


@contextlib.contextmanager
def _ctrl_c_flag():
    """While a reply is generated, Ctrl-C sets a flag the streamer checks between tokens, so the
    reply stops cleanly instead of interrupting MindSpore mid-kernel or mid-compile. MindSpore's
    graph runtime replaces the SIGINT handler when it runs (see training/fault.py), so the
    handler is put back at every check."""
    hit = [False]

    def handler(signum, frame):
        hit[0] = True

    previous = signal.getsignal(signal.SIGINT)

    def stop() -> bool:
        if signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)
        return hit[0]

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    from mft.inference.chat import ReplyStopped

    session = load_session(args)
    try:
        import readline  # noqa: F401  line editing and history for input()
    except ImportError:
        pass
    out = sys.stdout
    out.write(f"mft chat: {args.model}{' + ' + args.adapter if args.adapter else ''}. {HELP}.\n")
    out.flush()
    while True:
        try:
            line = input(PROMPT)
        except EOFError:  # Ctrl-D
            out.write("\n")
            return 0
        except KeyboardInterrupt:
            out.write("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            session.reset()
            out.write("(conversation cleared)\n")
            continue
        if text.startswith("/") and " " not in text:
            out.write(f"unknown command {text}; {HELP}\n")
            continue
        dropped = session.dropped_turns
        try:
            with _ctrl_c_flag() as stop:
                session.reply(line, write=lambda s: (out.write(s), out.flush()), stop=stop)
        except (KeyboardInterrupt, ReplyStopped):
            out.write("\n(reply stopped; it is not kept in the conversation)\n")
            continue
        out.write("\n")
        if session.dropped_turns > dropped:
            out.write(f"(the oldest {session.dropped_turns - dropped} exchange(s) were dropped to fit the context)\n")
        out.flush()
