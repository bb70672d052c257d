"""`mft chat` used as a person would: in a tmux pane, keys sent, the pane read back.

Each reply on screen must equal what `mft generate` prints (greedy) for the
same conversation rendered with the model's chat template; /reset forgets
the history (the first question gets the first answer again); /exit and
Ctrl-D end the program. The model is a tiny random one, so the replies are
arbitrary tokens: what is checked is that chat and generate agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from mft.inference.chat import visible
from mft.tokenizer.chat_template import render

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NEW_TOKENS = 10
SYSTEM = "You quote scripture."

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (make test-tmux installs it with apt-get as root)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import mindspore as ms

    from mft.models import AutoModelForCausalLM
    from mft.models.llama import LlamaConfig
    from mft.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("chat")
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(3), f)]
    tok = Tokenizer.train(texts, vocab_size=400, special_tokens=SPECIALS)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"chat_template": "chatml", "eos_token": "<|im_end|>"}))
    # the tokenizer's file name must be tokenizer.json beside tokenizer_config.json; chatml is resolved as a built-in
    end_ids = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    ms.set_seed(7)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=end_ids))
    model.save_pretrained(str(root))
    return root


def generate_output(model_dir, messages) -> str:
    """What `mft generate --no-echo` prints (greedy) for the conversation rendered with add_generation_prompt."""
    from mft.cli.main import main

    prompt = render("chatml", messages, add_generation_prompt=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["generate", "--model", str(model_dir), "--prompt", prompt, "--no-echo",
                     "--max-new-tokens", str(NEW_TOKENS)]) == 0
    text = out.getvalue()
    assert text.endswith("\n")
    return text[:-1]


class Pane:
    def __init__(self, name: str, command: list[str]):
        self.name = name
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        # GLOG_v=3: MindSpore logs errors only, so no warning lands between the replies on screen
        shell = "env GLOG_v=3 PYTHONUNBUFFERED=1 " + " ".join(_quote(c) for c in command) + "; echo EXITED $?; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "220", "-y", "60", shell], check=True)

    def text(self) -> str:
        """The pane's history and screen, wrapped lines joined, trailing blanks dropped per line."""
        out = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name], capture_output=True, text=True)
        return "\n".join(line.rstrip() for line in out.stdout.split("\n"))

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, predicate, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"timed out; the pane shows:\n{self.text()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def replies(pane_text: str) -> list[tuple[str, str]]:
    """(typed line, reply text) for every exchange on screen: a line starting with the prompt opens one,
    the reply is every line up to the next prompt (or the shell's EXITED line)."""
    out = []
    for line in pane_text.split("\n"):
        if line.startswith(">>>") or line.startswith("EXITED"):
            if line.startswith(">>> "):
                out.append([line[4:], []])
            else:
                out.append(None)
        elif out and out[-1] is not None:
            out[-1][1].append(line)
    return [(typed, "\n".join(lines)) for typed, lines in filter(None, out)]


def screen_form(text: str) -> str:
    """Text as the pane shows it: tabs expanded, trailing blanks dropped per line."""
    return "\n".join(line.expandtabs(8).rstrip() for line in visible(text).split("\n"))


def test_chat_in_a_terminal_matches_generate(model_dir):
    u1, u2 = "Quote Genesis 1:3.", "And the next verse?"
    a1 = generate_output(model_dir, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": u1}])
    a2 = generate_output(model_dir, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": u1},
                                     {"role": "assistant", "content": a1}, {"role": "user", "content": u2}])
    pane = Pane(f"mftchat{os.getpid()}", [sys.executable, "-m", "mft.cli.main", "chat", "--model", str(model_dir),
                                          "--system", SYSTEM, "--max-new-tokens", str(NEW_TOKENS)])
    try:
        def prompts(n):  # n prompts on screen and the last one waiting for input (the reply before it is done)
            return lambda t: sum(line.startswith(">>>") for line in t.split("\n")) >= n and t.rstrip().endswith(">>>")

        pane.wait_for(lambda t: t.rstrip().endswith(">>>") and "mft chat:" in t)
        pane.send(u1, "Enter")
        pane.wait_for(prompts(2))
        pane.send(u2, "Enter")
        pane.wait_for(prompts(3))
        pane.send("/reset", "Enter")
        pane.wait_for(lambda t: "(conversation cleared)" in t and t.rstrip().endswith(">>>"))
        pane.send(u1, "Enter")
        pane.wait_for(prompts(5))
        pane.send("C-d")
        text = pane.wait_for(lambda t: "EXITED" in t)
    finally:
        pane.close()
    got = [(typed, reply) for typed, reply in replies(text) if typed != "/reset"]
    assert [g[0] for g in got[:3]] == [u1, u2, u1], text
    screen = [r.rstrip("\n") for _, r in got[:3]]
    assert screen[0] == screen_form(a1), (screen[0], a1)
    assert screen[1].split("\n(the oldest")[0].rstrip() == screen_form(a2), (screen[1], a2)
    assert screen[2] == screen[0]  # after /reset the history is gone: the same question, the same answer
    assert screen_form(a1) != screen_form(a2) or a1 == ""  # turn 2 saw the history
    assert "EXITED 0" in text  # Ctrl-D ends the program with status 0


def test_exit_command(model_dir):
    pane = Pane(f"mftchatx{os.getpid()}", [sys.executable, "-m", "mft.cli.main", "chat", "--model", str(model_dir)])
    try:
        pane.wait_for(lambda t: t.rstrip().endswith(">>>"))
        pane.send("/nope", "Enter")
        pane.wait_for(lambda t: "unknown command /nope" in t)
        pane.send("/exit", "Enter")
        text = pane.wait_for(lambda t: "EXITED" in t)
    finally:
        pane.close()
    assert "EXITED 0" in text
