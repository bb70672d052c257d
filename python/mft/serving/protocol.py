"""OpenAI request bodies -> prompts and SamplingOptions; engine results -> OpenAI response objects.

Validation raises ParamError naming the field; the server turns it into a
400 with OpenAI's error JSON. A field that would change the output but is
not implemented (`suffix`, `tools` unless `tool_choice` is "none",
`response_format` other than text, vLLM's guided decoding, ...) is refused
with a 400 naming it (`refuse_unsupported`), never silently dropped; fields
that only label a request (`user`, `metadata`, `store`, ...) are accepted;
any other unknown field is ignored with a warning in the server log, as
vLLM does. `top_k`, `min_p`, `repetition_penalty`, `stop_token_ids` and
`ignore_eos` are accepted as extensions (the openai client sends them via
`extra_body`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mft.serving.sampling import MAX_LOGPROBS, ParamError, SamplingOptions

log = logging.getLogger("mft.serve")

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "n", "logit_bias", "allowed_token_ids")

# Fields every endpoint reads, and labels that change nothing in the output (accepted, not used).
_COMMON = {"model", "stream", "stream_options", "max_tokens", "user", "metadata", "store", "service_tier",
           "request_id", "priority", "parallel_tool_calls", "prediction", "add_special_tokens", *SAMPLING_FIELDS}
KNOWN_FIELDS = {
    "completions": _COMMON | {"prompt", "echo", "logprobs", "best_of", "suffix"},
    "chat": _COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs", "add_generation_prompt", "best_of",
                       "chat_template_kwargs", "tools", "tool_choice", "functions", "function_call", "response_format"},
}


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _empty(value, body) -> bool:
    return value is None or value == [] or value == {}


def _falsy(value, body) -> bool:
    return not value


# (field, endpoints, is the value neutral (changes nothing)?, why it is refused otherwise)
UNSUPPORTED = [
    ("suffix", ("completions",), lambda v, b: v is None or v == "",
     "inserting text after the completion (suffix) is not supported"),
    ("response_format", ("chat",), lambda v, b: v is None or (isinstance(v, dict) and v.get("type") == "text"),
     "only {\"type\": \"text\"} is supported; JSON / JSON-schema output needs guided decoding, which mft serve does not have"),
    ("tools", ("chat",), lambda v, b: _empty(v, b) or b.get("tool_choice") == "none",
     "tool calling is not supported (no tool-call parser); send no tools, or tool_choice \"none\" (the model then sees the "
     "tools through the chat template but no tool call is made, as in OpenAI and vLLM)"),
    ("tool_choice", ("chat",), lambda v, b: v in (None, "none") or (v == "auto" and _empty(b.get("tools"), b)),
     "tool calling is not supported; only \"none\" is accepted"),
    ("functions", ("chat",), lambda v, b: _empty(v, b) or b.get("function_call") == "none",
     "function calling is not supported; send no functions, or function_call \"none\""),
    ("function_call", ("chat",), lambda v, b: v in (None, "none") or (v == "auto" and _empty(b.get("functions"), b)),
     "function calling is not supported; only \"none\" is accepted"),
    ("modalities", ("chat",), lambda v, b: v is None or v == ["text"], "only [\"text\"] output is supported"),
    ("audio", ("chat",), _empty, "audio output is not supported"),
    ("reasoning_effort", ("chat",), _empty, "not supported by this model"),
    ("web_search_options", ("chat",), _empty, "web search is not supported"),
    ("echo", ("chat",), _falsy, "echoing the last message in chat is not supported; use /v1/completions with echo"),
    # vLLM's extensions that change the output
    *[(name, ("completions", "chat"), _empty, "guided decoding is not supported")
      for name in ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs")],
    ("use_beam_search", ("completions", "chat"), _falsy, "beam search is not supported"),
    ("min_tokens", ("completions", "chat"), _falsy, "not supported"),
    ("include_stop_str_in_output", ("completions", "chat"), _falsy, "not supported: the text ends before the stop string"),
    ("bad_words", ("completions", "chat"), _empty, "not supported; use logit_bias"),
    ("prompt_logprobs", ("completions", "chat"), _empty, "not supported; use /v1/completions with echo and logprobs"),
    ("truncate_prompt_tokens", ("completions", "chat"), _empty, "prompts are not truncated; shorten the prompt"),
    ("logits_processors", ("completions", "chat"), _empty, "not supported"),
    ("length_penalty", ("completions", "chat"), lambda v, b: v is None or v == 1, "only matters for beam search, which is not supported"),
    ("skip_special_tokens", ("completions", "chat"), lambda v, b: v is None or v is True, "special tokens are always left out of the text"),
    ("spaces_between_special_tokens", ("completions", "chat"), lambda v, b: v is None or v is True, "not supported"),
    ("return_tokens_as_token_ids", ("completions", "chat"), _falsy, "not supported"),
    ("chat_template", ("chat",), _empty, "a per-request chat template is not supported; the model folder's template is used"),
    ("continue_final_message", ("chat",), _falsy, "not supported"),
    ("documents", ("chat",), _empty, "not supported"),
    ("response_format", ("completions",), lambda v, b: v is None or (isinstance(v, dict) and v.get("type") == "text"),
     "only {\"type\": \"text\"} is supported"),
]
_REFUSED = {kind: [(f, ok, why) for f, kinds, ok, why in UNSUPPORTED if kind in kinds] for kind in ("completions", "chat")}
_warned: set = set()


def refuse_unsupported(body: dict, kind: str) -> None:
    """400 (ParamError) for a field that would change the output and is not implemented; a warning in the log
    (once per field name) for a field this server does not know at all."""
    for name, neutral, why in _REFUSED[kind]:
        if name in body and not neutral(body[name], body):
            raise ParamError(name, f"{name}: {why}")
    refused = {name for name, _, _ in _REFUSED[kind]}
    for name in body:
        if name not in KNOWN_FIELDS[kind] and name not in refused and (kind, name) not in _warned:
            _warned.add((kind, name))
            log.warning("/v1/%s: ignoring the unknown field %r", "chat/completions" if kind == "chat" else kind, name)


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise ParamError("body", "body: the request body must be a JSON object")
    return body


@dataclass
class StreamFlags:
    stream: bool = False
    include_usage: bool = False  # a last chunk with `usage` and no choices; every other chunk has "usage": null
    continuous_usage: bool = False  # vLLM's continuous_usage_stats: each chunk also carries the usage so far


def stream_flags(body: dict) -> StreamFlags:
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ParamError("stream", f"stream: must be a boolean, got {stream!r}")
    so = body.get("stream_options")
    if so is None:
        so = {}
    if not isinstance(so, dict):
        raise ParamError("stream_options", "stream_options: must be an object")
    if so and not stream:
        raise ParamError("stream_options", "stream_options: only allowed when stream is true")
    for key in ("include_usage", "continuous_usage_stats"):
        if so.get(key) is not None and not isinstance(so[key], bool):
            raise ParamError("stream_options", f"stream_options.{key}: must be a boolean")
    for name in sorted(set(so) - {"include_usage", "continuous_usage_stats", "include_obfuscation"}):
        if ("stream_options", name) not in _warned:  # framing options only: the text is the same either way
            _warned.add(("stream_options", name))
            log.warning("ignoring the unknown stream_options field %r", name)
    include = bool(so.get("include_usage"))
    return StreamFlags(bool(stream), include, include and bool(so.get("continuous_usage_stats")))


def sampling_options(body: dict, max_tokens, **extra) -> SamplingOptions:
    kw = {k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None}
    if "ignore_eos" in kw and not isinstance(kw["ignore_eos"], bool):
        raise ParamError("ignore_eos", "ignore_eos: must be a boolean")
    return SamplingOptions(max_tokens=max_tokens, **kw, **extra)


def check_logit_bias(options: SamplingOptions, vocab_size: int) -> None:
    """Token ids of logit_bias / allowed_token_ids inside the vocabulary (400 naming the field)."""
    for name, ids in (("logit_bias", options.logit_bias), ("allowed_token_ids", options.allowed_token_ids or [])):
        bad = [t for t in ids if t >= vocab_size]
        if bad:
            raise ParamError(name, f"{name}: token id {bad[0]} is outside the vocabulary [0, {vocab_size})")


def completion_prompts(body: dict, encode) -> list[list[int]]:
    """`prompt` as a string, a list of strings, a list of ids or a list of id lists."""
    if "prompt" not in body:
        raise ParamError("prompt", "prompt: required")
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return [encode(prompt)]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return [encode(p) for p in prompt]
        if all(_is_int(t) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt):
            return [list(p) for p in prompt]
    raise ParamError("prompt", "prompt: must be a string, a list of strings, a list of token ids or a list of token-id lists (non-empty)")


def completion_options(body: dict, vocab_size: int) -> tuple[SamplingOptions, bool, int | None]:
    """(options, echo, best_of) for /v1/completions. With best_of > n the options ask for best_of sequences
    (and at least the chosen tokens' logprobs, to rank them); the server returns the n best."""
    refuse_unsupported(body, "completions")
    max_tokens = body.get("max_tokens")
    max_tokens = 16 if max_tokens is None else max_tokens
    echo = body.get("echo", False)
    if not isinstance(echo, bool) and echo is not None:
        raise ParamError("echo", "echo: must be a boolean")
    logprobs = body.get("logprobs")
    if logprobs is not None and not _is_int(logprobs):
        raise ParamError("logprobs", f"logprobs: must be an integer for completions, got {logprobs!r}")
    n = body.get("n")
    n = 1 if n is None else n
    best_of = body.get("best_of")
    if best_of is not None:
        if not _is_int(best_of) or not _is_int(n) or not n <= best_of <= 16:
            raise ParamError("best_of", f"best_of: must be an integer in [n, 16], got {best_of!r} with n={n!r}")
        if body.get("stream"):
            raise ParamError("best_of", "best_of: cannot be used with stream (the best sequences are known only at the end)")
        best_of = best_of if best_of > n else None
    fields = dict(body)
    wanted = logprobs
    if best_of is not None:
        fields["n"] = best_of
        wanted = 0 if logprobs is None else logprobs
    options = sampling_options(fields, max_tokens, logprobs=wanted,
                               prompt_logprobs=logprobs if (echo and logprobs is not None) else None)
    check_logit_bias(options, vocab_size)
    return options, bool(echo), best_of


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ParamError("messages", "messages: must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ParamError(f"messages[{i}]", f"messages[{i}]: must be an object with a string 'role'")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}]
            parts = []
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise ParamError(f"messages[{i}].content", f"messages[{i}].content: only text parts are supported")
                parts.append(part["text"])
            content = "".join(parts)
        elif content is not None and not isinstance(content, str):
            raise ParamError(f"messages[{i}].content", f"messages[{i}].content: must be a string or a list of text parts")
        out.append({**m, "content": content if content is not None else ""})
    return out


def chat_template_kwargs(body: dict) -> dict:
    """`chat_template_kwargs` (vLLM's: extra variables for the template, e.g. enable_thinking)."""
    kwargs = body.get("chat_template_kwargs")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ParamError("chat_template_kwargs", "chat_template_kwargs: must be an object")
    taken = {"messages", "add_generation_prompt", "tools", "chat_template"} & set(kwargs)
    if taken:
        raise ParamError("chat_template_kwargs", f"chat_template_kwargs: {sorted(taken)[0]!r} is set by the server")
    return kwargs


def chat_options(body: dict, prompt_len: int, max_model_len: int, vocab_size: int) -> SamplingOptions:
    refuse_unsupported(body, "chat")
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is None:
        if prompt_len >= max_model_len:
            raise ParamError("messages", f"messages: this model's maximum context length is {max_model_len} tokens; "
                                         f"the messages have {prompt_len}", "context_length_exceeded")
        max_tokens = max_model_len - prompt_len
    logprobs = body.get("logprobs", False)
    if not isinstance(logprobs, bool) and logprobs is not None:
        raise ParamError("logprobs", f"logprobs: must be a boolean for chat, got {logprobs!r}")
    top = body.get("top_logprobs")
    if top is not None:
        if not _is_int(top) or not 0 <= top <= MAX_LOGPROBS:
            raise ParamError("top_logprobs", f"top_logprobs: must be an integer in [0, {MAX_LOGPROBS}], got {top!r}")
        if top and not logprobs:
            raise ParamError("top_logprobs", "top_logprobs: needs logprobs=true")
    if body.get("best_of") not in (None, 1, body.get("n") or 1):
        raise ParamError("best_of", "best_of: only /v1/completions ranks several sequences; chat accepts best_of equal to n only")
    options = sampling_options(body, max_tokens, logprobs=(top or 0) if logprobs else None)
    check_logit_bias(options, vocab_size)
    return options


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---- logprob objects ---------------------------------------------------------
LOGPROB_FLOOR = -9999.0  # -inf (a token the model rules out) as vLLM reports it: JSON has no infinities


def _lp(value: float) -> float:
    return value if value > LOGPROB_FLOOR else LOGPROB_FLOOR  # also maps NaN to the floor

def completion_logprobs(entries, token_text, text_start: int = 0) -> dict:
    """OpenAI completions `logprobs` for [(token id, TokenLogprob or None)] (None: the first prompt token);
    `text_offset` counts from `text_start` (the characters of this choice's text before these tokens)."""
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    offset = text_start
    for token_id, entry in entries:
        text = token_text(token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        if entry is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
        else:
            token_logprobs.append(_lp(entry.logprob))
            top = {}
            for tid, lp in entry.top:
                top.setdefault(token_text(tid), _lp(lp))
            top.setdefault(text, _lp(entry.logprob))
            top_logprobs.append(top)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}


def chat_logprobs(entries, token_text) -> dict:
    def item(tid, lp):
        text = token_text(tid)
        return {"token": text, "logprob": _lp(lp), "bytes": list(text.encode("utf-8"))}

    content = []
    for entry in entries:
        d = item(entry.token, entry.logprob)
        d["top_logprobs"] = [item(tid, lp) for tid, lp in entry.top]
        content.append(d)
    return {"content": content, "refusal": None}
