"""Instruction data -> tokenized conversations with a loss mask.

`mft data preprocess --format sft` reads JSONL records in one of three shapes
(detected per record):
- OpenAI messages: {"messages": [{"role": system|user|assistant|tool, "content": str, ...}], "tools": [...]?}
- ShareGPT: {"conversations": [{"from": system|human|gpt|tool|function_call|observation, "value": str}], "system": str?}
- Alpaca: {"instruction": str, "input": str?, "output": str, "system": str?}
and renders each conversation with the tokenizer's chat template (or a named
built-in / a template file), then tokenizes the whole text once
(add_special_tokens=False, as transformers tokenizes a rendered chat).

Loss mask: token t is trained on (mask 1) when its first character lies in an
assistant reply. A reply's characters are found by rendering the
conversation up to that reply with `add_generation_prompt=True` and up to and
including it: the reply is what the second adds to the first (so the
template's end-of-turn token after the reply is trained on, the
assistant header before it is not). `loss_on`: `assistant` (every reply,
default), `last` (the final reply only) or `all` (every token).

Output: PREFIX.bin/.idx (tokens, one document per conversation) and
PREFIX_mask.bin/.idx (0/1 per token, the same document lengths), both
Megatron MMIDIDX. A conversation's mask at token t says whether token t is a
prediction target, i.e. whether the label at position t-1 counts.

Truncation (`max_length`, `truncation`): a longer conversation is a bad
record (drop), loses the left end of its prompt (left; refused when that
would cut a reply), or is cut into max_length pieces, each its own document
(split; pieces without a target token are left out).

Bad records (malformed JSON, unknown shape, missing roles, empty turns, wrong
types, no assistant reply, a template that raises or is not prefix-stable)
are reported as file:line with the reason: fatal, or skipped and counted
with `skip_bad`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field as dc_field

import numpy as np

from mft.data.indexed import IndexedDataset, IndexedDatasetBuilder
from mft.data.preprocess import BAD_EXAMPLES, expand_inputs, tokenizer_vocab_size
from mft.errors import MftError
from mft.tokenizer.chat_template import ChatTemplateError, render, resolve_template, special_tokens_of

MASK_SUFFIX = "_mask"
LOSS_ON = ("assistant", "last", "all")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "tool": "tool", "observation": "tool", "function_call": "assistant", "function_response": "tool"}


class BadRecord(ValueError):
    """A record that cannot become a training sample; its message is the reason shown with file:line."""


@dataclass
class SftStats:
    conversations: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    skipped_bad: int = 0
    with_images: int = 0  # documents with images (PREFIX_images.jsonl)
    bad_examples: list[str] = dc_field(default_factory=list)
    seconds: float = 0.0


def mask_prefix(prefix: str) -> str:
    """The loss mask's dataset prefix beside PREFIX: PREFIX_mask."""
    return os.fspath(prefix) + MASK_SUFFIX


def has_loss_mask(prefix: str) -> bool:
    """True when PREFIX_mask.bin and .idx exist (written by mft data preprocess --format sft)."""
    m = mask_prefix(prefix)
    return os.path.isfile(m + ".idx") and os.path.isfile(m + ".bin")


def open_loss_mask(prefix: str, tokens: IndexedDataset | None = None) -> IndexedDataset:
    """PREFIX_mask as an IndexedDataset, checked to have the token dataset's document lengths."""
    tokens = tokens if tokens is not None else IndexedDataset(prefix)
    mask = IndexedDataset(mask_prefix(prefix))
    if len(mask) != len(tokens) or not np.array_equal(mask.sequence_lengths, tokens.sequence_lengths):
        raise MftError(f"{mask.idx_path}: document lengths differ from {tokens.idx_path} (not the same preprocess run)")
    return mask


# ---- records -> messages ------------------------------------------------
def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{where} is {type(value).__name__}, not a string")
    return value


def to_messages(obj) -> tuple[list[dict], list | None]:
    """(messages, tools) of one record; BadRecord with the reason otherwise."""
    if not isinstance(obj, dict):
        raise BadRecord(f"expected a JSON object, got {type(obj).__name__}")
    tools = obj.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRecord(f"'tools' is {type(tools).__name__}, not a list")
    if "messages" in obj:
        raw = obj["messages"]
        if not isinstance(raw, list):
            raise BadRecord(f"'messages' is {type(raw).__name__}, not a list")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise BadRecord(f"messages[{i}] is {type(m).__name__}, not an object")
            if "role" not in m:
                raise BadRecord(f"messages[{i}] has no 'role'")
            role = m["role"]
            if role not in ROLES:
                raise BadRecord(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
            content = m.get("content")
            if content is None and role == "assistant" and m.get("tool_calls"):
                messages.append(dict(m))
                continue
            if "content" not in m:
                raise BadRecord(f"messages[{i}] has no 'content'")
            _text(content, f"messages[{i}].content")
            if not content.strip():
                raise BadRecord(f"messages[{i}] ({role}) is empty")
            messages.append(dict(m))
    elif "conversations" in obj:
        raw = obj["conversations"]
        if not isinstance(raw, list):
            raise BadRecord(f"'conversations' is {type(raw).__name__}, not a list")
        messages = []
        if obj.get("system") is not None:
            messages.append({"role": "system", "content": _text(obj["system"], "'system'")})
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise BadRecord(f"conversations[{i}] is {type(m).__name__}, not an object")
            if "from" not in m or "value" not in m:
                raise BadRecord(f"conversations[{i}] needs 'from' and 'value'")
            who = m["from"]
            if who not in SHAREGPT_ROLES:
                raise BadRecord(f"conversations[{i}].from {who!r} is not one of {', '.join(SHAREGPT_ROLES)}")
            value = _text(m["value"], f"conversations[{i}].value")
            if not value.strip():
                raise BadRecord(f"conversations[{i}] ({who}) is empty")
            messages.append({"role": SHAREGPT_ROLES[who], "content": value})
    elif "instruction" in obj:
        instruction = _text(obj["instruction"], "'instruction'")
        if "output" not in obj:
            raise BadRecord("alpaca record has no 'output'")
        output = _text(obj["output"], "'output'")
        extra = obj.get("input") or ""
        _text(extra, "'input'")
        if not instruction.strip() or not output.strip():
            raise BadRecord("alpaca record has an empty 'instruction' or 'output'")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        messages = []
        if obj.get("system"):
            messages.append({"role": "system", "content": _text(obj["system"], "'system'")})
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    else:
        keys = ", ".join(sorted(obj)[:8])
        raise BadRecord(f"not an SFT record: needs 'messages', 'conversations' or 'instruction'/'output' (keys: {keys})")
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no assistant turn to train on")
    if messages[0]["role"] == "assistant":
        raise BadRecord("the conversation starts with an assistant turn")
    return messages, tools


# ---- messages -> ids + mask ---------------------------------------------
def assistant_spans(template: str, messages: list[dict], tools, specials: dict) -> tuple[str, list[tuple[int, int]]]:
    """(rendered text, [(start, end) character span of each assistant reply])."""
    full = render(template, messages, tools=tools, special_tokens=specials)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(template, messages[:i], add_generation_prompt=True, tools=tools, special_tokens=specials)
        upto = render(template, messages[: i + 1], tools=tools, special_tokens=specials)
        if not upto.startswith(before) or not full.startswith(upto):
            raise BadRecord(f"chat template is not prefix-stable at message {i}: rendering the conversation up to the reply "
                            "does not extend the rendering before it (cannot locate the assistant tokens)")
        spans.append((len(before), len(upto)))
    return full, spans


def encode_conversation(tokenizer, template: str, messages, tools=None, loss_on: str = "assistant", specials=None):
    """(ids int64, mask uint8) of one conversation."""
    specials = special_tokens_of(tokenizer) if specials is None else specials
    text, spans = assistant_spans(template, messages, tools, specials)
    try:
        ids, offsets = tokenizer.encode(text, add_special_tokens=False, return_offsets=True)
    except MftError as e:  # the tokenizer.json's own truncation refusing the text, as HF refuses it
        raise BadRecord(str(e)) from None
    ids = np.asarray(ids, dtype=np.int64)
    if loss_on == "all":
        return ids, np.ones(len(ids), np.uint8)
    if loss_on == "last":
        spans = spans[-1:]
    starts = np.asarray([o[0] for o in offsets], dtype=np.int64)
    mask = np.zeros(len(ids), np.uint8)
    for a, b in spans:
        mask[(starts >= a) & (starts < b)] = 1
    return ids, mask


def load_template(tokenizer, chat_template: str | None) -> str:
    """--chat-template: a built-in name, a .jinja file, or None for the tokenizer's own."""
    if chat_template and os.path.isfile(chat_template):
        with open(chat_template, encoding="utf-8") as f:
            return f.read()
    source = getattr(tokenizer, "source", "tokenizer")
    return resolve_template(chat_template if chat_template else tokenizer.chat_template, source=source)


TRUNCATION = ("drop", "left", "split")


def truncate(ids: np.ndarray, mask: np.ndarray, max_length: int, policy: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pieces of a conversation longer than `max_length` under `policy`:
    drop -> BadRecord; left -> the prompt's left end cut (BadRecord when
    that would cut a target token); split -> consecutive max_length pieces,
    those without a target token left out."""
    n = len(ids)
    if n <= max_length:
        return [(ids, mask)]
    if policy == "drop":
        raise BadRecord(f"{n} tokens exceed --max-length {max_length}")
    if policy == "left":
        cut = n - max_length
        first = int(np.argmax(mask)) if mask.any() else n
        if first < cut:
            raise BadRecord(f"{n} tokens exceed --max-length {max_length} and cutting the prompt's left end would cut a reply")
        return [(ids[cut:], mask[cut:])]
    pieces = [(ids[i:i + max_length], mask[i:i + max_length]) for i in range(0, n, max_length)]
    return [p for p in pieces if p[1].any()]


def preprocess_sft(inputs, tokenizer, output_prefix: str, *, chat_template: str | None = None, loss_on: str = "assistant",
                   skip_bad: bool = False, max_length: int | None = None, truncation: str = "drop",
                   image_dir: str | None = None, image_token: str = "<image>") -> SftStats:
    """Writes PREFIX.bin/.idx and PREFIX_mask.bin/.idx; see the module doc.
    `max_length` with `truncation` (see `truncate`) limits each written document's tokens.
    Records with `image`/`images` (mft.data.sft_images) also write PREFIX_images.jsonl."""
    from mft.data import sft_images
    if loss_on not in LOSS_ON:
        raise MftError(f"loss_on must be one of {', '.join(LOSS_ON)}, got {loss_on!r}")
    if truncation not in TRUNCATION:
        raise MftError(f"truncation must be one of {', '.join(TRUNCATION)}, got {truncation!r}")
    template = load_template(tokenizer, chat_template)
    specials = special_tokens_of(tokenizer)
    paths = expand_inputs(inputs)
    stats = SftStats()
    start = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    tokens = IndexedDatasetBuilder(output_prefix, tokenizer_vocab_size(tokenizer))
    masks = IndexedDatasetBuilder(mask_prefix(output_prefix), 2)
    sidecar = sft_images.SidecarWriter(output_prefix)
    image_id = None

    def bad(where: str) -> None:
        if not skip_bad:
            raise MftError(where + " (use --skip-bad to skip such records)")
        stats.skipped_bad += 1
        if len(stats.bad_examples) < BAD_EXAMPLES:
            stats.bad_examples.append(where)

    try:
        for path in paths:
            try:
                f = open(path, "rb")
            except OSError as e:
                raise MftError(f"{path}: cannot open: {e.strerror}") from None
            with f:
                for lineno, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        bad(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)")
                        continue
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        bad(f"{path}:{lineno}: malformed JSON: {e.msg} at column {e.colno}")
                        continue
                    try:
                        images = sft_images.record_images(obj, path, image_dir)
                        if images:
                            image_id = sft_images.image_token_id(tokenizer, image_token) if image_id is None else image_id
                            obj = sft_images.with_placeholders(obj, len(images), image_token)
                        messages, tools = to_messages(obj)
                        ids, mask = encode_conversation(tokenizer, template, messages, tools, loss_on, specials)
                        if images:
                            is_image = ids == image_id
                            if int(is_image.sum()) != len(images):
                                raise BadRecord(f"{int(is_image.sum())} image tokens ({image_token!r}) after tokenizing, "
                                                f"but {len(images)} image(s)")
                            mask[is_image] = 0  # image tokens are inputs, never targets
                        if not mask.any():
                            raise BadRecord("no token to train on (the reply vanished in tokenization)")
                        pieces = [(ids, mask)] if max_length is None else truncate(ids, mask, max_length, truncation)
                        # which image each piece keeps: the ordinals of its image tokens, cut the same way
                        ordinals = np.where(ids == image_id, np.cumsum(ids == image_id) - 1, -1) if images else np.full(len(ids), -1)
                        kept = [o for o, _ in ([(ordinals, mask)] if max_length is None else truncate(ordinals, mask, max_length, truncation))]
                    except (BadRecord, ChatTemplateError, sft_images.BadImageRecord) as e:
                        bad(f"{path}:{lineno}: {e}")
                        continue
                    for (ids, mask), ords in zip(pieces, kept):  # each piece keeps the images whose token it holds
                        sidecar.add([images[o] for o in ords[ords >= 0]], f"{path}:{lineno}")
                        tokens.add_document(ids)
                        masks.add_document(mask)
                        stats.trained_tokens += int(mask.sum())
        if tokens.documents == 0:
            raise MftError(f"no conversations found in {', '.join(paths)}")
        stats.conversations, stats.tokens = tokens.finish()
        masks.finish()
        sidecar.finish()
        stats.with_images = sidecar.with_images
    except BaseException:
        tokens.abort()
        masks.abort()
        sidecar.abort()
        raise
    stats.seconds = time.perf_counter() - start
    return stats
