"""Chat templates: Hugging Face `chat_template` strings rendered with Jinja2.

The rendering follows transformers' `apply_chat_template`: an
`ImmutableSandboxedEnvironment` with `trim_blocks`/`lstrip_blocks`, the
loop-controls extension and a `{% generation %}` block (rendered through,
its text spans recorded), globals `raise_exception(msg)` and
`strftime_now(fmt)`, a `tojson` filter that keeps non-ASCII text (json.dumps
with ensure_ascii=False), and the variables `messages`, `tools`,
`documents`, `add_generation_prompt` plus the tokenizer's special-token
strings (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...), then any
extra keyword arguments.

Named built-ins (`BUILTIN_TEMPLATES`): `chatml` (<|im_start|>role ... <|im_end|>)
and `llama3` (<|start_header_id|>role<|end_header_id|> ... <|eot_id|>).

A template that raises (`raise_exception`, a sandbox violation, a Jinja
syntax error) becomes `ChatTemplateError` (an MftError) with the reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from mft.errors import MftError

BUILTIN_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}

SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class ChatTemplateError(MftError):
    """The template failed to compile or raised while rendering."""


class _TemplateException(Exception):
    """Raised by a template's own `raise_exception(message)` call."""


def _raise_exception(message):
    raise _TemplateException(str(message))


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def _generation_extension():
    """`{% generation %}...{% endgeneration %}`: renders its body, recording where it lands."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTracker(Extension):
        tags = {"generation"}

        def __init__(self, environment):
            super().__init__(environment)
            environment.extend(_spans=None)

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            call = self.call_method("_mark", [], [], lineno=lineno)
            return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            text = caller()
            spans = self.environment._spans
            if spans is not None:
                spans.append(text)
            return text

    return GenerationTracker


class _SafeDict:
    """`dict(...)` inside templates without exposing the dict type itself."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


@lru_cache(maxsize=1)
def _namespace_class():
    import jinja2
    from jinja2.utils import Namespace

    def check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates may not set underscore attributes on a namespace ({name!r})")

    class GuardedNamespace(Namespace):
        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                check(name)
            Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            check(name)
            Namespace.__setitem__(self, name, value)

    return GuardedNamespace


REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def normalize_messages(messages: list) -> list[dict]:
    """As transformers prepares a chat: keys whose value is None dropped; a
    message's reasoning (under any of REASONING_KEYS) also offered as
    `thinking` and `reasoning_content`."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatTemplateError(f"message {i} is {type(message).__name__}, not an object")
        message = {k: v for k, v in message.items() if v is not None}
        reasoning = next((message[k] for k in REASONING_KEYS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


@lru_cache(maxsize=32)
def _compile(source: str):
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:  # pragma: no cover - jinja2 is a runtime requirement
        raise MftError("chat templates need jinja2 >= 3.1.6 (pip install 'mft[finetune]' or jinja2)") from None
    if tuple(int(p) for p in jinja2.__version__.split(".")[:3] if p.isdigit()) < (3, 1, 6):
        raise MftError(f"chat templates need jinja2 >= 3.1.6 (older releases have sandbox escapes); found {jinja2.__version__}")
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_generation_extension(), "jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _SafeDict()
    env.globals["namespace"] = _namespace_class()
    try:
        return env, env.from_string(source)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template does not compile: {e}") from None


def resolve_template(template: str | dict | None, name: str | None = None, source: str = "tokenizer") -> str:
    """The template text: a built-in name (`chatml`, `llama3`), a named entry of
    a tokenizer's template dict (`default` when `name` is None), or the string itself."""
    if template is None:
        raise MftError(f"{source}: has no chat_template; pass one (built-ins: {', '.join(BUILTIN_TEMPLATES)})")
    if isinstance(template, dict):
        key = name or "default"
        if key not in template:
            raise MftError(f"{source}: no chat template named {key!r} (has {', '.join(sorted(template))})")
        return template[key]
    if template in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[template]
    return template


def special_tokens_of(tokenizer) -> dict[str, str]:
    """bos_token/eos_token/... strings from a tokenizer's tokenizer_config.json (HF names)."""
    config = getattr(tokenizer, "_config", None) or {}
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    if "bos_token" not in out and getattr(tokenizer, "bos_id", None) is not None:
        out["bos_token"] = tokenizer.id_to_token(tokenizer.bos_id)
    if "eos_token" not in out and getattr(tokenizer, "eos_id", None) is not None:
        out["eos_token"] = tokenizer.id_to_token(tokenizer.eos_id)
    return out


def render(
    template: str,
    messages: list,
    *,
    add_generation_prompt: bool = False,
    tools: list | None = None,
    documents: list | None = None,
    special_tokens: dict | None = None,
    return_generation_spans: bool = False,
    **kwargs,
):
    """Renders `messages` as transformers' apply_chat_template(tokenize=False) does.

    With `return_generation_spans`: (text, [texts of {% generation %} blocks in order])."""
    template = BUILTIN_TEMPLATES.get(template, template)
    env, compiled = _compile(template)
    variables = dict(special_tokens or {})
    variables.update(kwargs)
    spans: list[str] = []
    env._spans = spans
    try:
        text = compiled.render(
            messages=normalize_messages(messages), tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **variables
        )
    except _TemplateException as e:
        raise ChatTemplateError(f"chat template raised: {e}") from None
    except Exception as e:  # jinja2's sandbox/undefined/type errors inside the template
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
    finally:
        env._spans = None
    return (text, spans) if return_generation_spans else text


def apply_chat_template(tokenizer, messages: list, *, chat_template: str | None = None, add_generation_prompt: bool = False, tools=None, **kwargs) -> str:
    """`tokenizer`'s own template (or `chat_template`: a built-in name or a template string) rendered."""
    template = resolve_template(chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None),
                                source=getattr(tokenizer, "source", "tokenizer"))
    return render(template, messages, add_generation_prompt=add_generation_prompt, tools=tools,
                  special_tokens=special_tokens_of(tokenizer), **kwargs)
