"""mft.tokenizer.chat_template against strings transformers rendered
(tests/fixtures/chat_templates/cases.json, from tools/make_chat_template_fixtures.py)."""

from __future__ import annotations

import json
import os

import pytest

from mft.errors import MftError
from mft.tokenizer.chat_template import BUILTIN_TEMPLATES, ChatTemplateError, render, resolve_template

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "chat_templates", "cases.json")
with open(FIXTURES, encoding="utf-8") as _f:
    DATA = json.load(_f)


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{c['template']}-{len(c['messages'])}msg-{'-'.join(sorted(c['kwargs']))}")
def test_matches_transformers(case):
    template = DATA["templates"][case["template"]]
    kwargs = dict(case["kwargs"])
    agp = kwargs.pop("add_generation_prompt", False)
    tools = kwargs.pop("tools", None)
    if "error" in case:
        with pytest.raises(ChatTemplateError, match="raised: " + case["error"][:40].replace("(", r"\(").replace(".", r"\.")):
            render(template, case["messages"], add_generation_prompt=agp, tools=tools, special_tokens=DATA["special_tokens"], **kwargs)
        return
    got = render(template, case["messages"], add_generation_prompt=agp, tools=tools, special_tokens=DATA["special_tokens"], **kwargs)
    assert got == case["expected"]


def test_fixture_covers_errors_and_generation():
    kinds = {c["template"] for c in DATA["cases"]}
    assert {"qwen2_5_style", "llama3_style", "mistral_style", "generation_style"} <= kinds
    assert any("error" in c for c in DATA["cases"])


def test_generation_spans_recorded():
    tpl = DATA["templates"]["generation_style"]
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    text, spans = render(tpl, msgs, return_generation_spans=True)
    assert spans == ["a1<|im_end|>\n", "a2<|im_end|>\n"]
    assert all(s in text for s in spans)


def test_builtins():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": " A "}]
    assert render("chatml", msgs, add_generation_prompt=True) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n A <|im_end|>\n<|im_start|>assistant\n")
    assert render("llama3", msgs, special_tokens={"bos_token": "<|begin_of_text|>"}) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>")
    assert set(BUILTIN_TEMPLATES) == {"chatml", "llama3"}


def test_sandbox_and_errors():
    with pytest.raises(ChatTemplateError, match="failed"):
        render("{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}", [])
    with pytest.raises(ChatTemplateError, match="failed"):  # immutable sandbox: no in-place list edits
        render("{{ messages.append(1) }}", [])
    with pytest.raises(ChatTemplateError, match="does not compile"):
        render("{% for m in messages %}", [])
    with pytest.raises(ChatTemplateError, match="underscore"):
        render("{% set ns = namespace(_x=1) %}", [])
    with pytest.raises(ChatTemplateError, match="message 0"):
        render("chatml", ["not a dict"])


def test_resolve_template():
    assert resolve_template("chatml") == BUILTIN_TEMPLATES["chatml"]
    assert resolve_template({"default": "D", "tool_use": "T"}, "tool_use") == "T"
    assert resolve_template({"default": "D"}) == "D"
    with pytest.raises(MftError, match="no chat_template"):
        resolve_template(None, source="x/tokenizer.json")
    with pytest.raises(MftError, match="no chat template named 'rag'"):
        resolve_template({"default": "D"}, "rag")


def test_apply_with_tokenizer(tmp_path):
    import shutil

    from mft.tokenizer import Tokenizer
    from mft.tokenizer.chat_template import apply_chat_template

    src = os.path.join(os.path.dirname(FIXTURES), "..", "tokenizers", "chatml.json")
    shutil.copy(src, tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ bos_token }}|{{ eos_token }}|{{ messages[0].content }}", "bos_token": "<s>", "eos_token": "<|im_end|>"}))
    tok = Tokenizer.from_file(str(tmp_path))
    assert apply_chat_template(tok, [{"role": "user", "content": "x"}]) == "<s>|<|im_end|>|x"
    assert apply_chat_template(tok, [{"role": "user", "content": "x"}], chat_template="chatml").startswith("<|im_start|>user")
