"""OpenAI request bodies -> prompts and SamplingOptions; engine results -> OpenAI response objects.

Validation raises ParamError naming the field; the server turns it into a
400 with OpenAI's error JSON. Fields the engine does not use (`user`,
`suffix`-less defaults, ...) are ignored as OpenAI-compatible servers do;
`top_k`, `min_p`, `repetition_penalty`, `stop_token_ids` and `ignore_eos`
are accepted as extensions (the openai client sends them via `extra_body`).
"""

from __future__ import annotations

from mft.serving.sampling import ParamError, SamplingOptions

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "n")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise ParamError("body", "body: the request body must be a JSON object")
    return body


def stream_flags(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ParamError("stream", f"stream: must be a boolean, got {stream!r}")
    so = body.get("stream_options") or {}
    if not isinstance(so, dict):
        raise ParamError("stream_options", "stream_options: must be an object")
    return bool(stream), bool(so.get("include_usage", False))


def sampling_options(body: dict, max_tokens, **extra) -> SamplingOptions:
    kw = {k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None}
    if "ignore_eos" in kw and not isinstance(kw["ignore_eos"], bool):
        raise ParamError("ignore_eos", "ignore_eos: must be a boolean")
    best_of = body.get("best_of")
    if best_of is not None and best_of != kw.get("n", 1):
        raise ParamError("best_of", "best_of: only best_of equal to n is supported")
    return SamplingOptions(max_tokens=max_tokens, **kw, **extra)


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


def completion_options(body: dict) -> tuple[SamplingOptions, bool]:
    """(options, echo) for /v1/completions."""
    max_tokens = body.get("max_tokens")
    max_tokens = 16 if max_tokens is None else max_tokens
    echo = body.get("echo", False)
    if not isinstance(echo, bool) and echo is not None:
        raise ParamError("echo", "echo: must be a boolean")
    logprobs = body.get("logprobs")
    if logprobs is not None and not _is_int(logprobs):
        raise ParamError("logprobs", f"logprobs: must be an integer for completions, got {logprobs!r}")
    options = sampling_options(body, max_tokens, logprobs=logprobs,
                               prompt_logprobs=logprobs if (echo and logprobs is not None) else None)
    return options, bool(echo)


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


def chat_options(body: dict, prompt_len: int, max_model_len: int) -> SamplingOptions:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = max(max_model_len - prompt_len, 0)
    logprobs = body.get("logprobs", False)
    if not isinstance(logprobs, bool) and logprobs is not None:
        raise ParamError("logprobs", f"logprobs: must be a boolean for chat, got {logprobs!r}")
    top = body.get("top_logprobs")
    if top is not None and not logprobs:
        raise ParamError("top_logprobs", "top_logprobs: needs logprobs=true")
    return sampling_options(body, max_tokens, logprobs=(top or 0) if logprobs else None)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---- logprob objects ---------------------------------------------------------

def completion_logprobs(entries, token_text, text_start: int = 0) -> dict:
    """OpenAI completions `logprobs` for [TokenLogprob or None] (None: the first prompt token)."""
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
            token_logprobs.append(entry.logprob)
            top = {}
            for tid, lp in entry.top:
                top.setdefault(token_text(tid), lp)
            top.setdefault(text, entry.logprob)
            top_logprobs.append(top)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}


def chat_logprobs(entries, token_text) -> dict:
    def item(tid, lp):
        text = token_text(tid)
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    content = []
    for entry in entries:
        d = item(entry.token, entry.logprob)
        d["top_logprobs"] = [item(tid, lp) for tid, lp in entry.top]
        content.append(d)
    return {"content": content}
